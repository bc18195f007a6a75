/*
 * Read-only looks at what a compiled service's sandbox holds, for the
 * static views of a script (the state diagram).  Nothing here runs script
 * code.
 */
#ifndef LIBFLOW_SCRIPT_SCRIPT_INSPECT_H
#define LIBFLOW_SCRIPT_SCRIPT_INSPECT_H

#include "script/script.h"

/*
 * The source lines a function reference (a handler, guard or hook the
 * loader kept) spans: *first is where `function` is written, *last where
 * its `end` is.  Returns 0, or -1 when ref is not a Lua function.
 */
int flow__sandbox_func_lines(flow__sandbox *sb, int ref, int *first,
                             int *last);

#endif /* LIBFLOW_SCRIPT_SCRIPT_INSPECT_H */
