/*
 * Incidents: events that no caller could be told of (a timer's, an
 * action's reply or fail, a message) and that the case refused.  The case
 * stays as it was; the incident keeps the event, where it came from and
 * why it was refused, until someone retries it (the event is applied
 * again, to the case and service version as they are then) or dismisses
 * it.  The source keeps its own record too: a timer stays with status
 * "incident", a request with status "incident", a message with status
 * "incident", and settling the incident settles them.
 */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
set_time(json_t *o, const char *key, int64_t t)
{
  json_object_set_new(o, key, flow__time_json(t));
}

static json_t *
incident_json(const flow__incident_row *r)
{
  char id[24], cid[24], sid[24];
  snprintf(id, sizeof id, "%lld", (long long)r->id);
  snprintf(cid, sizeof cid, "%lld", (long long)r->case_id);
  snprintf(sid, sizeof sid, "%lld", (long long)r->source_id);
  json_t *payload = json_loads(r->payload, 0, NULL);
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:i}",
                        "id", id, "case", cid, "source", r->source,
                        "source_id", sid, "event", r->event, "payload",
                        payload ? payload : json_object(), "code", r->code,
                        "error", r->error, "status", r->status, "attempts",
                        r->attempts);
  if (o == NULL)
    return NULL;
  set_time(o, "raised_at", r->raised_at);
  set_time(o, "finished_at", r->finished_at);
  json_object_set_new(o, "finished_by", r->finished_by
                                            ? json_string(r->finished_by)
                                            : json_null());
  return o;
}

int
flow__incident_raise(flow_engine *e, const flow__incident_row *row,
                     json_t *fields, int64_t *id)
{
  flow__err err;
  flow__err_clear(&err);
  int64_t iid = 0;
  /* flow.fail's message is for the sender; an incident's reader also
     needs where the script said it. */
  flow__incident_row r = *row;
  char where[FLOW__ERRMSG_MAX + 200];
  if (strcmp(r.code, "FLOW_EREFUSED") == 0 && e->refused_at[0] &&
      strncmp(r.error, e->refused_at, strlen(e->refused_at)) != 0) {
    snprintf(where, sizeof where, "%sflow.fail: %s", e->refused_at,
             r.error);
    r.error = where;
  }
  row = &r;
  int rc = e->vt->incident_add(e->store, row, &iid, &err);
  if (rc != 0) {
    json_decref(fields);
    return flow__engine_fail_err(e, &err);
  }
  if (id)
    *id = iid;
  if (!flow__engine_listened(e, 0)) {
    json_decref(fields);
    return 0;
  }
  char sid[24], cid[24], at[32];
  snprintf(sid, sizeof sid, "%lld", (long long)iid);
  snprintf(cid, sizeof cid, "%lld", (long long)row->case_id);
  flow__time_format(at, sizeof at, row->raised_at);
  json_t *n = fields ? fields : json_object();
  json_t *add = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type",
                          "incident", "incident", sid, "case", cid, "source",
                          row->source, "event", row->event, "error",
                          row->code, "message", row->error, "at", at);
  if (n && add)
    json_object_update_missing(n, add);
  json_decref(add);
  flow__engine_note(e, n);
  return 0;
}

/* ---- the API ------------------------------------------------------------- */

typedef struct list_ctx {
  json_t *arr;
} list_ctx;

static int
list_item(void *ctx, const flow__incident_row *r)
{
  list_ctx *l = ctx;
  json_t *o = incident_json(r);
  return o && json_array_append_new(l->arr, o) == 0 ? 0 : FLOW_ENOMEM;
}

int
flow_incidents_list(char **out, flow_engine *engine, const char *case_id,
                    const char *status)
{
  if (out)
    *out = NULL;
  if (engine == NULL || out == NULL)
    return flow__engine_misuse(engine, "flow_incidents_list: out is NULL");
  flow_engine *e = engine;
  int64_t cid = 0;
  int rc;
  if (case_id && (rc = flow__case_parse_id(e, case_id, &cid)) != 0)
    return rc;
  if (status && strcmp(status, "open") != 0 &&
      strcmp(status, "resolved") != 0 && strcmp(status, "dismissed") != 0)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "'%.40s' is not an incident status (open, "
                             "resolved or dismissed)",
                             status);
  list_ctx l = { json_array() };
  if (l.arr == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  flow__err err;
  flow__err_clear(&err);
  if ((rc = e->vt->incident_list(e->store, 0, cid, status, FLOW__MAX_LIST,
                                 list_item, &l, &err)) != 0) {
    json_decref(l.arr);
    return flow__engine_fail_err(e, &err);
  }
  flow__err_clear(&e->err);
  return flow__engine_owned_json(e, out, l.arr);
}

/* Reads an open incident inside the caller's transaction. */
typedef struct one_ctx {
  json_t *j;
  int kind;
  char *origin, *target;
  const flow__allocator *a;
} one_ctx;

static int
one_item(void *ctx, const flow__incident_row *r)
{
  one_ctx *o = ctx;
  o->j = incident_json(r);
  o->kind = r->kind;
  o->origin = r->origin ? flow__strdup(o->a, r->origin) : NULL;
  o->target = r->target ? flow__strdup(o->a, r->target) : NULL;
  if (o->j == NULL || (r->origin && !o->origin) || (r->target && !o->target))
    return FLOW_ENOMEM;
  return 0;
}

static void
one_clear(one_ctx *o)
{
  json_decref(o->j);
  flow__free(o->a, o->origin);
  flow__free(o->a, o->target);
}

static int
read_open(flow_engine *e, const char *incident_id, int64_t *id, one_ctx *o)
{
  int rc = flow__parse_id(e, incident_id, "incident", id);
  if (rc != 0)
    return rc;
  flow__err err;
  flow__err_clear(&err);
  if ((rc = e->vt->incident_list(e->store, *id, 0, NULL, 1, one_item, o,
                                 &err)) != 0)
    return flow__engine_fail_err(e, &err);
  if (o->j == NULL)
    return flow__engine_fail(e, FLOW_ENOTFOUND, "there is no incident %lld",
                             (long long)*id);
  const char *status = json_string_value(json_object_get(o->j, "status"));
  if (strcmp(status, "open") != 0)
    return flow__engine_fail(e, FLOW_ECONFLICT, "incident %lld is %s already",
                             (long long)*id, status);
  return 0;
}

static const char *
jstr(json_t *o, const char *key)
{
  return json_string_value(json_object_get(o, key));
}

/* Settles incident id and its source; a note for the subscribers. */
static int
settle(flow_engine *e, int64_t id, json_t *j, const char *status,
       const char *source_status, const char *by, int64_t now)
{
  flow__err err;
  flow__err_clear(&err);
  const char *source = jstr(j, "source");
  int64_t sid = strtoll(jstr(j, "source_id"), NULL, 10);
  int set = 0, rc;
  if ((rc = e->vt->incident_set(e->store, id, status, NULL, NULL, by, now,
                                &set, &err)) == 0 && set)
    rc = e->vt->incident_source_done(e->store, source, sid, source_status,
                                     now, &err);
  if (rc == 0 && !set)
    return flow__engine_fail(e, FLOW_ECONFLICT,
                             "incident %lld changed while it was settled",
                             (long long)id);
  if (rc == 0 && strcmp(source, "message") == 0) {
    int mset = 0;
    rc = e->vt->message_set(e->store, sid, "incident", source_status,
                            strtoll(jstr(j, "case"), NULL, 10), now, &mset,
                            &err);
  }
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  e->writes++;
  if (flow__engine_listened(e, 1)) {
    char iid[24], at[32];
    snprintf(iid, sizeof iid, "%lld", (long long)id);
    flow__time_format(at, sizeof at, now);
    flow__engine_note(e, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type",
                                   strcmp(status, "resolved") == 0
                                       ? "incident_resolved"
                                       : "incident_dismissed",
                                   "incident", iid, "case", jstr(j, "case"),
                                   "source", source, "by", by, "at", at));
  }
  return 0;
}

int
flow_incident_retry(char **out, flow_engine *engine, const char *incident_id,
                    const flow_actor *actor)
{
  if (out)
    *out = NULL;
  if (engine == NULL)
    return FLOW_EMISUSE;
  flow_engine *e = engine;
  int rc = flow__engine_begin_as(e, actor);
  if (rc != 0)
    return rc;
  const char *by = actor && actor->id ? actor->id : "anonymous";
  int64_t id = 0, now = flow_engine_now(e);
  one_ctx o = { NULL, 0, NULL, NULL, &e->alloc };
  json_t *origin = NULL;
  flow__err err;
  flow__err_clear(&err);
  if ((rc = read_open(e, incident_id, &id, &o)) != 0)
    goto done;
  const char *source = jstr(o.j, "source");
  const char *event = jstr(o.j, "event");
  int64_t cid = strtoll(jstr(o.j, "case"), NULL, 10);
  if (event[0] == 0) {
    /* A request that failed for good with no fail event: one more
       attempt; a new incident follows if that fails too. */
    rc = settle(e, id, o.j, "resolved", "pending", by, now);
    e->next_due = INT64_MIN;
    goto done;
  }
  if (o.origin && (origin = json_loads(o.origin, 0, NULL)) == NULL) {
    rc = flow__engine_fail(e, FLOW_EIO, "incident %lld: its origin is not "
                           "JSON", (long long)id);
    goto done;
  }
  uint64_t writes = e->writes;
  size_t mark = flow__engine_notes_mark(e);
  rc = flow__case_apply_txn(e, cid, event, json_object_get(o.j, "payload"),
                            actor ? actor : &flow__system_actor, o.kind,
                            o.target, origin, out);
  if (rc == 0) {
    const char *src_status =
        strcmp(source, "message") == 0 ? "delivered"
        : strcmp(source, "action") == 0 &&
                json_object_get(json_object_get(o.j, "payload"), "error")
            ? "failed"
            : "done";
    rc = settle(e, id, o.j, "resolved", src_status, by, now);
  } else if (e->writes == writes && rc != FLOW_EIO && rc != FLOW_EBUSY &&
             rc != FLOW_ENOMEM) {
    /* Refused again: counted, kept open, and the caller told why. */
    flow__engine_notes_drop(e, mark);
    flow__err why = e->err;
    int set = 0;
    if (e->vt->incident_set(e->store, id, "open", flow_err_name(why.code),
                            why.msg, NULL, now, &set, &err) != 0) {
      rc = flow__engine_fail_err(e, &err);
    } else {
      flow__engine_end_txn(e, 0);
      e->err = why;
      one_clear(&o);
      json_decref(origin);
      if (out) {
        flow_free(*out);
        *out = NULL;
      }
      return why.code;
    }
  }
done:
  one_clear(&o);
  json_decref(origin);
  return flow__engine_finish(e, rc, out);
}

int
flow_incident_dismiss(flow_engine *engine, const char *incident_id,
                      const flow_actor *actor)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  flow_engine *e = engine;
  int rc = flow__engine_begin_as(e, actor);
  if (rc != 0)
    return rc;
  const char *by = actor && actor->id ? actor->id : "anonymous";
  int64_t id = 0;
  one_ctx o = { NULL, 0, NULL, NULL, &e->alloc };
  if ((rc = read_open(e, incident_id, &id, &o)) == 0)
    rc = settle(e, id, o.j, "dismissed",
                strcmp(jstr(o.j, "source"), "message") == 0 ? "dismissed"
                                                            : "failed",
                by, flow_engine_now(e));
  one_clear(&o);
  return flow__engine_finish(e, rc, NULL);
}
