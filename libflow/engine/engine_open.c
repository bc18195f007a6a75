/*
 * Cases that open other cases.
 *
 * flow.open(service, data) in a handler or hook: flow__open_reserve
 * checks the data against that service's fields and hands out the id
 * the case will have, while the script runs, so the script can keep it.
 * The cases open after the transition that asked for them is written,
 * in its transaction (engine_case.c, open_children): all of them and the
 * transition, or, when one cannot open, none.  A case opened so may not
 * open others while it opens, so one event opens at most
 * FLOW__MAX_OPENS_PER_RUN cases.
 *
 * A message that opens cases: a service's `correlate` entry with
 * opens = true.  flow_message_send asks flow__message_opener which
 * service that is when no open case holds the message's key.
 */
#include "engine/engine.h"

#include <stdio.h>
#include <string.h>

int
flow__open_reserve(void *ctx, const char *service, json_t *data,
                   int64_t *id, char *msg, size_t len)
{
  flow_engine *e = ctx;
  const flow__case_row *parent = e->open_parent;
  if (parent == NULL) {
    snprintf(msg, len, "cases can only be opened while a case handles an "
                       "event (in a handler or hook)");
    return FLOW_EMISUSE;
  }
  if (e->open_depth > 0) {
    snprintf(msg, len, "this case was opened by another case's flow.open, "
                       "and a case opened so cannot open others while it "
                       "opens (open them in a later event of this case)");
    return FLOW_ELIMIT;
  }
  /* Finding (or compiling) the service must not leave its error on the
     engine as if the running call had failed. */
  flow__err saved = e->err;
  flow__compiled *c = NULL;
  int rc = flow__engine_service(e, service, 0, &c);
  if (rc != 0) {
    if (rc == FLOW_ENOTFOUND)
      snprintf(msg, len, "there is no service '%s' (load it first, like "
                         "flow load %s.lua)",
               service, service);
    else
      snprintf(msg, len, "%s", e->err.msg);
    e->err = saved;
    return rc;
  }
  e->err = saved;
  /* The fields as far as they can be checked now: patterns and the
     service's own rules run when the case opens, in its own sandbox. */
  flow__err err;
  flow__err_clear(&err);
  rc = flow__fields_validate(c->svc, data, NULL, NULL, &err);
  if (rc != 0) {
    snprintf(msg, len, "the data does not suit %s: %s", service, err.msg);
    return rc;
  }
  int64_t next = 0;
  if ((rc = e->vt->case_new_id(e->store, &next, &err)) != 0) {
    snprintf(msg, len, "%s", err.msg);
    return rc;
  }
  /* Not inserted yet: the running case (when it opens too) and the ids
     given before come first. */
  if (e->open_parent_opening && next <= parent->id)
    next = parent->id + 1;
  if (next <= e->open_last)
    next = e->open_last + 1;
  e->open_last = next;
  *id = next;
  return 0;
}

static const flow__correlate *
opens_on(const flow__service *svc, const char *message)
{
  for (size_t i = 0; i < svc->ncorrelate; i++)
    if (svc->correlate[i].opens &&
        strcmp(svc->correlate[i].message, message) == 0)
      return &svc->correlate[i];
  return NULL;
}

int
flow__message_opener(flow_engine *e, const char *message,
                     flow__compiled **out, const flow__correlate **c)
{
  *out = NULL;
  *c = NULL;
  json_t *list = NULL;
  flow__err err;
  flow__err_clear(&err);
  int rc = e->vt->service_list(e->store, &list, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  /* Ordered by name, then version: a name's last row is its newest. */
  size_t n = json_array_size(list);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    json_t *row = json_array_get(list, i);
    const char *name = json_string_value(json_object_get(row, "name"));
    json_t *next = i + 1 < n ? json_array_get(list, i + 1) : NULL;
    if (next && strcmp(name, json_string_value(json_object_get(next,
                                                               "name"))) == 0)
      continue;
    flow__compiled *comp;
    rc = flow__engine_service(e, name,
                              json_integer_value(json_object_get(row,
                                                                 "version")),
                              &comp);
    if (rc != 0)
      break;
    const flow__correlate *entry = opens_on(comp->svc, message);
    if (entry == NULL)
      continue;
    if (*out) {
      rc = flow__engine_fail(e, FLOW_ECONFLICT,
                             "both %s and %s open a case on message '%s'; "
                             "a message opens cases of one service (take "
                             "opens = true out of one of them)",
                             (*out)->svc->name, comp->svc->name, message);
      break;
    }
    *out = comp;
    *c = entry;
  }
  json_decref(list);
  if (rc != 0) {
    *out = NULL;
    *c = NULL;
  }
  return rc;
}
