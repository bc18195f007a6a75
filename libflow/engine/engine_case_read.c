/*
 * Cases read back: the case object every call returns, and the public
 * reads -- flow_case_get, flow_case_history, flow_case_timers and
 * flow_case_list.  Reads take no lock: each sees the database as last
 * committed.
 */
#include "engine/engine.h"

#include <string.h>

json_t *
flow__time_json(int64_t ms)
{
  if (ms == FLOW__NO_TIME)
    return json_null();
  char buf[32];
  flow__time_format(buf, sizeof buf, ms);
  return json_string(buf);
}

/*
 * Writes the case object as text, keys sorted like all the engine's JSON.
 * data_text is the case data as the engine stores it: compact JSON with
 * sorted keys, written by flow__json_dump, so it goes in as it is rather
 * than being parsed and printed again.
 */
void
flow__case_text(flow__buf *b, const flow__case_row *row, const char *data_text)
{
  flow__buf_adds(b, "{\"data\":");
  flow__buf_adds(b, data_text);
  flow__buf_adds(b, ",\"due_at\":");
  flow__json_add_time(b, row->due_at);
  flow__buf_adds(b, ",\"id\":\"");
  flow__buf_addi64(b, row->id);
  flow__buf_adds(b, "\",\"opened_at\":");
  flow__json_add_time(b, row->opened_at);
  flow__buf_adds(b, ",\"seq\":");
  flow__buf_addi64(b, row->seq);
  flow__buf_adds(b, ",\"service\":");
  flow__json_add_string(b, row->service);
  if (row->paused_at != FLOW__NO_TIME) {
    flow__buf_adds(b, ",\"sla_paused_at\":");
    flow__json_add_time(b, row->paused_at);
  }
  flow__buf_adds(b, ",\"state\":");
  flow__json_add_string(b, row->state);
  flow__buf_adds(b, row->closed ? ",\"status\":\"closed\""
                                : ",\"status\":\"open\"");
  flow__buf_adds(b, ",\"updated_at\":");
  flow__json_add_time(b, row->updated_at);
  flow__buf_adds(b, ",\"version\":");
  flow__buf_addi64(b, row->version);
  flow__buf_addc(b, '}');
}

/*
 * Parses the data read back from the database (into *keep when keep is
 * not NULL).  The engine only ever stores JSON objects it printed itself,
 * so only a database changed by hand fails with FLOW_EIO; such a case is
 * reported, never passed on as broken text.
 */
int
flow__case_stored_data(const flow__case_row *row, json_t **keep, flow__err *err)
{
  json_error_t je;
  json_t *j = json_loads(row->data, JSON_REJECT_DUPLICATES, &je);
  if (j == NULL && json_error_code(&je) == json_error_out_of_memory)
    return flow__err_set(err, FLOW_ENOMEM, "out of memory reading case %lld",
                         (long long)row->id);
  if (!json_is_object(j)) {
    json_decref(j);
    return flow__err_set(err, FLOW_EIO,
                         "case %lld: its stored data is not a JSON object "
                         "(was the database changed by hand?)",
                         (long long)row->id);
  }
  if (keep)
    *keep = j;
  else
    json_decref(j);
  return 0;
}

/* The case object as an owned string for the host in *out. */
int
flow__case_emit(flow_engine *e, char **out, const flow__case_row *row,
          const char *data_text)
{
  flow__buf b;
  flow__buf_init(&b, &e->alloc);
  flow__case_text(&b, row, data_text);
  *out = b.oom ? NULL : flow__owned_strndup(&e->alloc, b.p, b.len);
  flow__buf_free(&b);
  if (*out == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  return 0;
}

int
flow_case_get(char **out, flow_engine *engine, const char *case_id)
{
  if (engine == NULL || out == NULL)
    return flow__engine_misuse(engine, "out is NULL");
  *out = NULL;
  int64_t id = 0;
  int rc = flow__case_parse_id(engine, case_id, &id);
  if (rc != 0)
    return rc;
  flow__case_row row;
  flow__err err;
  flow__err_clear(&err);
  if ((rc = engine->vt->case_get(engine->store, id, &row, &err)) != 0)
    return flow__engine_fail_err(engine, &err);
  rc = flow__case_stored_data(&row, NULL, &err) == 0
           ? flow__case_emit(engine, out, &row, row.data)
           : flow__engine_fail_err(engine, &err);
  flow__case_row_clear(&engine->alloc, &row);
  if (rc == 0)
    flow__err_clear(&engine->err);
  return rc;
}

static int
history_item(void *ctx, const flow__history_row *r)
{
  json_t *arr = ctx;
  json_t *actor = json_loads(r->actor, 0, NULL);
  json_t *payload = json_loads(r->payload, 0, NULL);
  json_t *o = json_pack("{s:I, s:o, s:o*, s:s, s:o*, s:s?, s:s}", "seq",
                        (json_int_t)r->seq, "at", flow__time_json(r->at), "actor",
                        actor, "event", r->event, "payload", payload, "from",
                        r->from, "to", r->to);
  if (o == NULL || json_array_append_new(arr, o) != 0)
    return FLOW_ENOMEM;
  return 0;
}

/* Fails with ENOTFOUND when the case does not exist. */
static int
case_exists(flow_engine *e, int64_t id)
{
  flow__err err;
  flow__err_clear(&err);
  flow__case_row row;
  int rc = e->vt->case_get(e->store, id, &row, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  flow__case_row_clear(&e->alloc, &row);
  return 0;
}

/*
 * The shared shape of flow_case_history and flow_case_timers: check the id
 * and that the case exists, let `collect` fill a JSON array from the
 * store, hand it to the host.
 */
static int
case_rows(char **out, flow_engine *engine, const char *case_id,
          int (*collect)(flow_engine *e, int64_t id, json_t *arr,
                         flow__err *err))
{
  if (engine == NULL || out == NULL)
    return flow__engine_misuse(engine, "out is NULL");
  *out = NULL;
  int64_t id = 0;
  int rc = flow__case_parse_id(engine, case_id, &id);
  if (rc != 0 || (rc = case_exists(engine, id)) != 0)
    return rc;
  flow__err err;
  flow__err_clear(&err);
  json_t *arr = json_array();
  if (arr == NULL)
    return flow__engine_fail(engine, FLOW_ENOMEM, "out of memory");
  if ((rc = collect(engine, id, arr, &err)) != 0) {
    json_decref(arr);
    return flow__engine_fail_err(engine, &err);
  }
  rc = flow__engine_owned_json(engine, out, arr);
  if (rc == 0)
    flow__err_clear(&engine->err);
  return rc;
}

/* The history row of seq in arr (rows are in seq order from 1). */
static json_t *
row_of_seq(json_t *arr, int64_t seq)
{
  json_t *o = seq >= 1 ? json_array_get(arr, (size_t)(seq - 1)) : NULL;
  if (o && json_integer_value(json_object_get(o, "seq")) == seq)
    return o;
  size_t i;
  json_array_foreach(arr, i, o) if (json_integer_value(json_object_get(
                                        o, "seq")) == seq) return o;
  return NULL;
}

/* Adds item to the list key of the history row of seq. */
static int
attach(json_t *arr, int64_t seq, const char *key, json_t *item)
{
  json_t *row = row_of_seq(arr, seq);
  if (item == NULL)
    return FLOW_ENOMEM;
  if (row == NULL) {
    json_decref(item);
    return 0;
  }
  json_t *list = json_object_get(row, key);
  if (list == NULL) {
    list = json_array();
    if (list == NULL || json_object_set_new(row, key, list) != 0) {
      json_decref(item);
      return FLOW_ENOMEM;
    }
  }
  return json_array_append_new(list, item) == 0 ? 0 : FLOW_ENOMEM;
}

/* What a transition requested, with how it went so far. */
static int
history_request(void *ctx, const flow__request_row *r)
{
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)r->id);
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i}", "id", id, "action",
                        r->action, "key", r->key, "status", r->status,
                        "attempts", r->attempts);
  if (o && r->error)
    json_object_set_new(o, "error", json_string(r->error));
  if (o && r->finished_at != FLOW__NO_TIME)
    json_object_set_new(o, "finished_at", flow__time_json(r->finished_at));
  return attach(ctx, r->seq, "requested", o);
}

static int
history_task(void *ctx, const flow__task_row *r)
{
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)r->id);
  json_t *o = json_pack("{s:s, s:s, s:s}", "id", id, "name", r->name,
                        "status", r->status);
  return attach(ctx, r->seq, "tasks", o);
}

/* A change of the service level, on the row of the event that made it. */
static int
history_sla(void *ctx, int64_t seq, const char *change, int64_t at,
            int64_t due_at, const char *detail)
{
  json_t *o = json_loads(detail, 0, NULL);
  if (!json_is_object(o)) {
    json_decref(o);
    o = json_object();
  }
  if (o == NULL || json_object_set_new(o, "change", json_string(change)) ||
      json_object_set_new(o, "at", flow__time_json(at)) ||
      json_object_set_new(o, "due_at", due_at == FLOW__NO_TIME
                                           ? json_null()
                                           : flow__time_json(due_at))) {
    json_decref(o);
    return FLOW_ENOMEM;
  }
  return attach(ctx, seq, "sla", o);
}

/* The case's events, each with the actions it requested and the tasks it
   created, and where they stand now. */
static int
collect_history(flow_engine *e, int64_t id, json_t *arr, flow__err *err)
{
  int rc = e->vt->history_each(e->store, id, history_item, arr, err);
  if (rc == 0)
    rc = e->vt->outbox_list(e->store, id, NULL, FLOW__MAX_LIST,
                            history_request, arr, err);
  flow__task_query q = { .case_id = id };
  if (rc == 0)
    rc = e->vt->task_list(e->store, &q, FLOW__MAX_LIST, history_task, arr,
                          err);
  if (rc == 0)
    rc = e->vt->sla_log_each(e->store, id, history_sla, arr, err);
  return rc;
}

int
flow_case_history(char **out, flow_engine *engine, const char *case_id)
{
  return case_rows(out, engine, case_id, collect_history);
}

static int
timer_item(void *ctx, const flow__timer_row *r)
{
  json_t *arr = ctx;
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)r->id);
  json_t *payload = json_loads(r->payload, 0, NULL);
  json_t *o = json_pack("{s:s, s:o, s:s, s:s, s:o*, s:s?, s:s?, s:s}", "id",
                        id, "due_at", flow__time_json(r->due_at), "kind", r->kind,
                        "event", r->event, "payload", payload, "state",
                        r->state, "target", r->target, "status",
                        strcmp(r->status, "pending") == 0  ? "pending"
                        : strcmp(r->status, "paused") == 0 ? "paused"
                                                           : "incident");
  if (o && r->state == NULL)
    json_object_set_new(o, "state", json_null());
  if (o && r->error)
    json_object_set_new(o, "error", json_string(r->error));
  if (o == NULL || json_array_append_new(arr, o) != 0)
    return FLOW_ENOMEM;
  return 0;
}

static int
collect_timers(flow_engine *e, int64_t id, json_t *arr, flow__err *err)
{
  return e->vt->timer_list(e->store, id, timer_item, arr, err);
}

int
flow_case_timers(char **out, flow_engine *engine, const char *case_id)
{
  return case_rows(out, engine, case_id, collect_timers);
}

typedef struct list_ctx {
  flow_engine *e;
  flow__err *err;
  flow__buf b;
  size_t n;
} list_ctx;

static int
list_item(void *ctx, const flow__case_row *row)
{
  list_ctx *l = ctx;
  int rc = flow__case_stored_data(row, NULL, l->err);
  if (rc != 0)
    return rc;
  flow__buf_addc(&l->b, l->n++ ? ',' : '[');
  flow__case_text(&l->b, row, row->data);
  return l->b.oom ? FLOW_ENOMEM : 0;
}

int
flow_case_list(char **out, flow_engine *engine, const flow_case_query *query)
{
  if (engine == NULL || out == NULL)
    return flow__engine_misuse(engine, "out is NULL");
  *out = NULL;
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  if (query) {
    if (query->version < 1 || query->version > FLOW_CASE_QUERY_VERSION)
      return flow__engine_fail(engine, FLOW_EINVAL,
                               "query version %u is not supported "
                               "(initialise with FLOW_CASE_QUERY_INIT)",
                               query->version);
    /* A version 1 struct ends before `overdue`. */
    memcpy(&q, query, query->version == 1 ? offsetof(flow_case_query, overdue)
                                          : sizeof q);
  }
  if (q.status && strcmp(q.status, "open") != 0 &&
      strcmp(q.status, "closed") != 0)
    return flow__engine_fail(engine, FLOW_EINVAL,
                             "status must be 'open' or 'closed', not '%.40s'",
                             q.status);
  if (q.nwhere && q.where == NULL)
    return flow__engine_fail(engine, FLOW_EMISUSE, "nwhere without where");
  for (size_t i = 0; i < q.nwhere; i++) {
    if (!flow__engine_identifier(q.where[i].field))
      return flow__engine_fail(engine, FLOW_EINVAL,
                               "'%.40s' is not a field name (fields are "
                               "lower-case names like uprn)",
                               q.where[i].field ? q.where[i].field : "");
    if (q.where[i].value_json == NULL)
      return flow__engine_fail(engine, FLOW_EINVAL,
                               "where %s: value is NULL", q.where[i].field);
    if (strlen(q.where[i].value_json) > 65536)
      return flow__engine_fail(engine, FLOW_EINVAL,
                               "where %s: the value is longer than 64 KiB",
                               q.where[i].field);
  }
  if (q.limit > 100000)
    q.limit = 100000;
  flow__err err;
  flow__err_clear(&err);
  list_ctx l = { engine, &err, { 0 }, 0 };
  flow__buf_init(&l.b, &engine->alloc);
  int rc = engine->vt->case_list(engine->store, &q, flow_engine_now(engine),
                                 list_item, &l, &err);
  if (rc == 0) {
    flow__buf_adds(&l.b, l.n ? "]" : "[]");
    *out = l.b.oom ? NULL : flow__owned_strndup(&engine->alloc, l.b.p, l.b.len);
    if (*out == NULL)
      rc = flow__err_set(&err, FLOW_ENOMEM, "out of memory listing cases");
  }
  flow__buf_free(&l.b);
  if (rc != 0)
    return flow__engine_fail_err(engine, &err);
  flow__err_clear(&engine->err);
  return 0;
}
