/*
 * libflow - an embeddable case and workflow engine.
 *
 * This umbrella header is the whole public API.  Hosts include <flow.h>
 * and link -lflow (pkg-config --cflags --libs libflow).  See docs/ for the
 * service-author guide and docs/embedding.md for hosts.
 */
#ifndef FLOW_H
#define FLOW_H

#include "flow/common.h"
#include "flow/engine.h"
#include "flow/service.h"
#include "flow/case.h"
#include "flow/loop.h"
#include "flow/action.h"
#include "flow/task.h"
#include "flow/test.h"

#endif /* FLOW_H */
