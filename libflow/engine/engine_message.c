/*
 * Messages sent to cases by name and correlation key.
 *
 * A service says which data field holds the key of each message it
 * waits for (`correlate`).  Every transition of such a service compares
 * the fields before and after: a new key is recorded in the store's
 * correlation index (refused, before anything is written, when another
 * open case holds it), an old one dropped, and all of a case's keys go
 * when it closes.
 *
 * flow_message_send looks the key up: an open case gets the message at
 * once, as the event of the message's name, in the same transaction that
 * records the message as delivered -- so it is delivered once.  With no
 * case the message is buffered until its time to live runs out.  A
 * transition that gives a case a key some buffered messages wait for
 * delivers them in its own transaction, after itself (at most
 * FLOW__MESSAGE_BATCH; the loop takes the rest).  A delivery the case
 * refuses becomes an incident, and the transition that caused it stands.
 */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The key a data value makes: text as it is, a whole number in decimal;
   anything else (absent, null, other types) is no key.  0 when there is
   one. */
static int
key_of(json_t *data, const char *field, char *buf, size_t len)
{
  json_t *v = data ? json_object_get(data, field) : NULL;
  if (json_is_string(v) && json_string_length(v) > 0 &&
      json_string_length(v) <= FLOW__MAX_MESSAGE_KEY) {
    snprintf(buf, len, "%s", json_string_value(v));
    return 0;
  }
  if (json_is_integer(v)) {
    snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    return 0;
  }
  return -1;
}

typedef struct keys {
  int has_old, has_new;
  char old[FLOW__MAX_MESSAGE_KEY + 1], now[FLOW__MAX_MESSAGE_KEY + 1];
} keys;

static int
old_data(const char *text, json_t **out, flow__err *err)
{
  *out = NULL;
  if (text == NULL)
    return 0;
  if ((*out = json_loads(text, 0, NULL)) == NULL)
    return flow__err_set(err, FLOW_EIO, "a case's stored data is not JSON");
  return 0;
}

/* Reads the entry's key before and after; 1 when it changed. */
static int
compare(const flow__correlate *c, json_t *before, json_t *after, keys *k)
{
  k->has_old = key_of(before, c->field, k->old, sizeof k->old) == 0;
  k->has_new = key_of(after, c->field, k->now, sizeof k->now) == 0;
  return k->has_old != k->has_new ||
         (k->has_old && strcmp(k->old, k->now) != 0);
}

int
flow__correlate_check(flow_engine *e, const flow__service *svc,
                      const flow__case_row *row, const char *old_text,
                      json_t *data, flow__err *err)
{
  json_t *before = NULL;
  int rc = old_data(old_text, &before, err);
  for (size_t i = 0; rc == 0 && i < svc->ncorrelate; i++) {
    const flow__correlate *c = &svc->correlate[i];
    keys k;
    if (!compare(c, before, data, &k) || !k.has_new)
      continue;
    int64_t holder = 0;
    rc = e->vt->correl_find(e->store, c->message, k.now, &holder, err);
    if (rc == FLOW_ENOTFOUND) {
      rc = 0;
    } else if (rc == 0 && holder != row->id) {
      rc = flow__err_set(err, FLOW_ECONFLICT,
                         "%s:%d: case %lld already waits for message '%s' "
                         "with %s '%s'; a key names one open case (give this "
                         "case another %s, or close case %lld first)",
                         svc->chunkname, c->line, (long long)holder,
                         c->message, c->field, k.now, c->field,
                         (long long)holder);
    }
  }
  json_decref(before);
  return rc;
}

/* Queues the buffered messages waiting for (name, key) for case_id. */
typedef struct queue_ctx {
  flow_engine *e;
  int64_t case_id;
} queue_ctx;

static int
queue_one(void *ctx, const flow__message_row *m)
{
  queue_ctx *q = ctx;
  flow_engine *e = q->e;
  for (size_t i = 0; i < e->ndeliveries; i++)
    if (e->deliveries[i].message_id == m->id)
      return 0;
  if (e->ndeliveries == FLOW__MESSAGE_BATCH) {
    e->msg_sweep = 1; /* the loop delivers the rest */
    return 0;
  }
  e->deliveries[e->ndeliveries].case_id = q->case_id;
  e->deliveries[e->ndeliveries].message_id = m->id;
  e->ndeliveries++;
  return 0;
}

int
flow__correlate_write(flow_engine *e, const flow__service *svc,
                      const flow__case_row *row, const char *old_text,
                      json_t *data, flow__err *err)
{
  if (row->closed)
    return e->vt->correl_drop(e->store, row->id, NULL, err);
  json_t *before = NULL;
  int rc = old_data(old_text, &before, err);
  for (size_t i = 0; rc == 0 && i < svc->ncorrelate; i++) {
    const flow__correlate *c = &svc->correlate[i];
    keys k;
    if (!compare(c, before, data, &k))
      continue;
    if (k.has_old)
      rc = e->vt->correl_drop(e->store, row->id, c->message, err);
    if (rc == 0 && k.has_new)
      rc = e->vt->correl_put(e->store, c->message, k.now, row->id, err);
    if (rc == 0 && k.has_new) {
      queue_ctx q = { e, row->id };
      flow__message_query mq = { .name = c->message, .key = k.now,
                                 .status = "buffered" };
      rc = e->vt->message_list(e->store, &mq, FLOW__MESSAGE_BATCH, queue_one,
                               &q, err);
    }
  }
  json_decref(before);
  return rc;
}

/* ---- delivering ---------------------------------------------------------- */

static json_t *
message_json(const flow__message_row *m)
{
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)m->id);
  json_t *payload = json_loads(m->payload, 0, NULL);
  json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s}", "id", id, "name",
                        m->name, "key", m->key, "payload",
                        payload ? payload : json_object(), "status",
                        m->status);
  if (o == NULL)
    return NULL;
  char t[24];
  snprintf(t, sizeof t, "%lld", (long long)m->case_id);
  json_object_set_new(o, "case", m->case_id ? json_string(t) : json_null());
  json_object_set_new(o, "created_at", flow__time_json(m->created_at));
  json_object_set_new(o, "expires_at", flow__time_json(m->expires_at));
  json_object_set_new(o, "finished_at", flow__time_json(m->finished_at));
  return o;
}

/* A message's note; own: the engine did it on its own (an expiry, a
   delivery of the loop's), not a host's call. */
static void
note_message(flow_engine *e, const char *type, json_t *m, int own)
{
  if (!flow__engine_listened(e, !own) || m == NULL)
    return;
  json_t *n = json_pack("{s:s, s:O, s:O, s:O, s:O}", "type", type, "message",
                        json_object_get(m, "id"), "name",
                        json_object_get(m, "name"), "key",
                        json_object_get(m, "key"), "case",
                        json_object_get(m, "case"));
  flow__engine_note(e, n);
}

/*
 * Applies message m (its JSON; status and case are updated in it) to
 * case_id inside the caller's transaction.  The case refusing it raises an
 * incident (*incident gets its id) and is not an error; an error that
 * leaves writes behind is returned, as are storage errors.
 */
static int
deliver(flow_engine *e, json_t *m, int64_t case_id, int64_t *incident,
        int own)
{
  flow__err err;
  flow__err_clear(&err);
  int64_t mid = strtoll(json_string_value(json_object_get(m, "id")), NULL, 10);
  const char *name = json_string_value(json_object_get(m, "name"));
  json_t *origin = json_pack("{s:O, s:O, s:O}", "id", json_object_get(m, "id"),
                             "name", json_object_get(m, "name"), "key",
                             json_object_get(m, "key"));
  if (origin == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  uint64_t writes = e->writes;
  size_t mark = flow__engine_notes_mark(e);
  int was = e->delivering;
  e->delivering = 1;
  int rc = flow__case_apply_txn(e, case_id, name,
                                json_object_get(m, "payload"),
                                &flow__system_actor, FLOW__APPLY_MESSAGE,
                                NULL, origin, NULL);
  e->delivering = was;
  const char *status = "delivered";
  if (rc != 0) {
    if (e->writes != writes || rc == FLOW_EIO || rc == FLOW_EBUSY ||
        rc == FLOW_ENOMEM) {
      json_decref(origin);
      return rc;
    }
    flow__engine_notes_drop(e, mark);
    status = "incident";
    char *payload = flow__json_owned(&e->alloc, json_object_get(m, "payload"));
    char *otext = flow__json_owned(&e->alloc, origin);
    flow__incident_row r = {
      .case_id = case_id, .source = "message", .source_id = mid,
      .kind = FLOW__APPLY_MESSAGE, .event = name, .payload = payload,
      .origin = otext, .code = flow_err_name(rc), .error = e->err.msg,
      .raised_at = flow_engine_now(e),
    };
    rc = payload && otext ? flow__incident_raise(
                                e, &r,
                                json_pack("{s:O}", "message_id",
                                          json_object_get(m, "id")),
                                incident)
                          : flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
    flow_free(payload);
    flow_free(otext);
  }
  json_decref(origin);
  if (rc != 0)
    return rc;
  int set = 0;
  const char *from = json_string_value(json_object_get(m, "status"));
  if ((rc = e->vt->message_set(e->store, mid, from, status, case_id,
                               flow_engine_now(e), &set, &err)) != 0)
    return flow__engine_fail_err(e, &err);
  if (!set && strcmp(from, "new") != 0)
    return flow__engine_fail(e, FLOW_EBUSY,
                             "message %lld was delivered by another engine "
                             "meanwhile",
                             (long long)mid);
  e->writes++;
  char cid[24];
  snprintf(cid, sizeof cid, "%lld", (long long)case_id);
  json_object_set_new(m, "status", json_string(status));
  json_object_set_new(m, "case", json_string(cid));
  json_object_set_new(m, "finished_at", flow__time_json(flow_engine_now(e)));
  if (strcmp(status, "delivered") == 0)
    note_message(e, "message_delivered", m, own);
  return 0;
}

typedef struct get_ctx {
  json_t *m;
} get_ctx;

static int
get_one(void *ctx, const flow__message_row *r)
{
  get_ctx *g = ctx;
  json_decref(g->m);
  g->m = message_json(r);
  return g->m ? 0 : FLOW_ENOMEM;
}

int
flow__messages_deliver(flow_engine *e)
{
  int rc = 0;
  e->delivering = 1;
  for (size_t i = 0; rc == 0 && i < e->ndeliveries; i++) {
    struct flow__delivery d = e->deliveries[i];
    flow__err err;
    flow__err_clear(&err);
    get_ctx g = { NULL };
    flow__message_query q = { .id = d.message_id, .status = "buffered" };
    rc = e->vt->message_list(e->store, &q, 1, get_one, &g, &err);
    if (rc != 0)
      rc = flow__engine_fail_err(e, &err);
    else if (g.m) /* still buffered: nobody took it meanwhile */
      rc = deliver(e, g.m, d.case_id, NULL, 0);
    json_decref(g.m);
  }
  e->ndeliveries = 0;
  e->delivering = 0;
  return rc;
}

/* ---- the loop's share ------------------------------------------------------ */

typedef struct work_ctx {
  flow_engine *e;
  json_t *arr;
} work_ctx;

static int
collect(void *ctx, const flow__message_row *r)
{
  work_ctx *w = ctx;
  json_t *m = message_json(r);
  return m && json_array_append_new(w->arr, m) == 0 ? 0 : FLOW_ENOMEM;
}

int
flow__messages_work(flow_engine *e, size_t max, size_t *done)
{
  *done = 0;
  int64_t now = flow_engine_now(e);
  int64_t next = flow__messages_next_due(e);
  if (next > now && e->msg_sweep <= 0)
    return 0;
  flow__err err;
  flow__err_clear(&err);
  int rc = flow__engine_begin(e);
  if (rc != 0)
    return rc;
  work_ctx w = { e, json_array() };
  if (w.arr == NULL)
    return flow__engine_end_txn(e, flow__engine_fail(e, FLOW_ENOMEM,
                                                     "out of memory"));
  /* Expired: still listed, with status "expired". */
  if ((rc = e->vt->message_expire(e->store, now, max, collect, &w, &err)))
    rc = flow__engine_fail_err(e, &err);
  size_t i;
  json_t *m;
  json_array_foreach(w.arr, i, m) note_message(e, "message_expired", m, 1);
  *done += json_array_size(w.arr);
  if (rc == 0 && e->msg_sweep > 0) {
    /* Left matched by a crash, or past one transaction's batch. */
    json_array_clear(w.arr);
    if ((rc = e->vt->message_matched(e->store, max, collect, &w, &err)))
      rc = flow__engine_fail_err(e, &err);
    json_array_foreach(w.arr, i, m) {
      if (rc != 0)
        break;
      rc = deliver(e, m, strtoll(json_string_value(json_object_get(m,
                                                                   "case")),
                                 NULL, 10),
                   NULL, 1);
    }
    *done += json_array_size(w.arr);
    if (rc == 0 && json_array_size(w.arr) < max)
      e->msg_sweep = 0;
  }
  json_decref(w.arr);
  e->next_due = INT64_MIN;
  e->msg_next = INT64_MIN;
  return flow__engine_end_txn(e, rc);
}

static int
count_one(void *ctx, const flow__message_row *r)
{
  (void)r;
  *(int *)ctx = 1;
  return 0;
}

int64_t
flow__messages_next_due(flow_engine *e)
{
  flow__err err;
  flow__err_clear(&err);
  if (e->msg_sweep < 0) {
    /* Once per engine: did a crash leave a message matched to a case
       but not delivered?  (One index step when none is buffered.) */
    int found = 0;
    if (e->vt->message_matched(e->store, 1, count_one, &found, &err) != 0)
      return INT64_MAX;
    e->msg_sweep = found;
  }
  if (e->msg_sweep)
    return INT64_MIN + 1;
  if (e->msg_next != INT64_MIN)
    return e->msg_next;
  int64_t next = INT64_MAX;
  if (e->vt->message_next_expiry(e->store, &next, &err) != 0)
    return INT64_MAX;
  e->msg_next = next;
  return next;
}

/* ---- a message that opens a case ---------------------------------------- */

/* The data of the case message r opens: its key in the correlated field
   (a whole number for an integer field), and each payload value whose
   name is one of the service's other fields. */
static json_t *
opening_data(const flow__service *svc, const flow__correlate *c,
             const flow__message_row *r, json_t *payload)
{
  json_t *data = json_object();
  if (data == NULL)
    return NULL;
  const char *k;
  json_t *v;
  json_object_foreach(payload, k, v) {
    if (strcmp(k, c->field) != 0 && flow__service_field(svc, k) &&
        json_object_set(data, k, v) != 0) {
      json_decref(data);
      return NULL;
    }
  }
  const flow__field *f = flow__service_field(svc, c->field);
  json_t *key = NULL;
  char *end = NULL;
  long long n = f && f->type == FLOW__F_INTEGER ? strtoll(r->key, &end, 10)
                                                : 0;
  if (end && *end == 0 && end != r->key)
    key = json_integer(n);
  else
    key = json_string(r->key);
  if (key == NULL || json_object_set_new(data, c->field, key) != 0) {
    json_decref(data);
    return NULL;
  }
  return data;
}

/* Opens a case of svc for message r (buffered, just added), which the
   opening then delivers to it; *m is read again to say how that went.
   A case that cannot open refuses the message: the sender hears why,
   and nothing stays. */
static int
open_for(flow_engine *e, const flow__service *svc, const flow__correlate *c,
         const flow__message_row *r, json_t **m)
{
  json_t *payload = json_loads(r->payload, 0, NULL);
  json_t *data = payload ? opening_data(svc, c, r, payload) : NULL;
  json_decref(payload);
  json_t *origin = json_pack("{s:O, s:s, s:s}", "id",
                             json_object_get(*m, "id"), "name", r->name,
                             "key", r->key);
  if (data == NULL || origin == NULL) {
    json_decref(data);
    json_decref(origin);
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  }
  int rc = flow__case_open_with(e, svc->name, data, 0, &flow__system_actor,
                                "message", origin, "message", NULL);
  json_decref(origin);
  if (rc != 0) {
    char why[sizeof e->err.msg];
    snprintf(why, sizeof why, "%s", e->err.msg);
    return flow__engine_fail(e, rc,
                             "message '%s' with key '%s' opens a case of "
                             "%s (%s:%d), and the case could not open: %s",
                             r->name, r->key, svc->name, svc->chunkname,
                             c->line, why);
  }
  flow__err err;
  flow__err_clear(&err);
  get_ctx g = { NULL };
  flow__message_query q = { .id = r->id };
  if ((rc = e->vt->message_list(e->store, &q, 1, get_one, &g, &err)) != 0)
    return flow__engine_fail_err(e, &err);
  if (g.m == NULL)
    return flow__engine_fail(e, FLOW_EIO, "message %lld vanished",
                             (long long)r->id);
  json_object_set_new(g.m, "opened", json_true());
  json_decref(*m);
  *m = g.m;
  return 0;
}

/* ---- the API ------------------------------------------------------------- */

static int
message_name_ok(const char *s)
{
  return flow__engine_identifier(s);
}

int
flow__message_send_txn(flow_engine *e, const char *name, const char *key,
                       const char *payload_json, int64_t ttl_ms, char **out)
{
  if (name == NULL || key == NULL)
    return flow__engine_fail(e, FLOW_EMISUSE, "flow_message_send: %s is NULL",
                             name ? "key" : "name");
  if (!message_name_ok(name))
    return flow__engine_fail(e, FLOW_EINVAL,
                             "'%.40s' is not a message name (names are "
                             "lower-case, like payment_received)",
                             name);
  size_t klen = strlen(key);
  if (klen == 0 || klen > FLOW__MAX_MESSAGE_KEY ||
      !flow__utf8_valid(key, klen))
    return flow__engine_fail(e, FLOW_EINVAL,
                             "a message key must be text of 1 to %d bytes",
                             FLOW__MAX_MESSAGE_KEY);
  if (ttl_ms < 0 || ttl_ms > FLOW__MESSAGE_TTL_MAX_MS)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "a message's time to live must be between 0 "
                             "(the default, 7 days) and 366 days");
  json_t *payload = NULL;
  flow__err err;
  flow__err_clear(&err);
  int rc = flow__json_parse_object(payload_json, "the message payload",
                                   &payload, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  char *ptext = flow__json_owned(&e->alloc, payload);
  json_decref(payload);
  if (ptext == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  if (strlen(ptext) > FLOW__MAX_DOCUMENT) {
    flow_free(ptext);
    return flow__engine_fail(e, FLOW_EDATA,
                             "the message payload is over %d KiB",
                             FLOW__MAX_DOCUMENT / 1024);
  }
  int64_t now = flow_engine_now(e);
  flow__message_row r = {
    .name = name, .key = key, .payload = ptext, .status = "buffered",
    .created_at = now,
    .expires_at = now + (ttl_ms ? ttl_ms : FLOW__MESSAGE_TTL_MS),
    .finished_at = FLOW__NO_TIME,
  };
  int64_t holder = 0, incident = 0;
  json_t *m = NULL;
  rc = e->vt->correl_find(e->store, name, key, &holder, &err);
  if (rc == FLOW_ENOTFOUND)
    rc = 0, holder = 0;
  if (rc == 0)
    rc = e->vt->message_add(e->store, &r, &r.id, &err);
  if (rc != 0) {
    rc = flow__engine_fail_err(e, &err);
    goto done;
  }
  e->writes++;
  if ((m = message_json(&r)) == NULL) {
    rc = flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
    goto done;
  }
  flow__compiled *opener = NULL;
  const flow__correlate *entry = NULL;
  if (holder == 0)
    rc = flow__message_opener(e, name, &opener, &entry);
  if (rc != 0)
    goto done;
  if (holder)
    rc = deliver(e, m, holder, &incident, 0);
  else if (opener)
    rc = open_for(e, opener->svc, entry, &r, &m);
  else
    note_message(e, "message_buffered", m, 0);
  if (rc == 0 && incident) {
    char iid[24];
    snprintf(iid, sizeof iid, "%lld", (long long)incident);
    json_object_set_new(m, "incident", json_string(iid));
  }
  e->next_due = INT64_MIN;
  e->msg_next = INT64_MIN;
done:
  flow_free(ptext);
  if (rc == 0)
    return flow__engine_owned_json(e, out, m);
  json_decref(m);
  return rc;
}

int
flow_message_send(char **out, flow_engine *engine, const char *name,
                  const char *key, const char *payload_json, int64_t ttl_ms)
{
  if (out)
    *out = NULL;
  if (engine == NULL)
    return FLOW_EMISUSE;
  flow_engine *e = engine;
  int rc = flow__engine_begin(e);
  if (rc != 0)
    return rc;
  char *text = NULL;
  rc = flow__message_send_txn(e, name, key, payload_json, ttl_ms, &text);
  rc = flow__engine_finish(e, rc, &text);
  if (out)
    *out = text;
  else
    flow_free(text);
  return rc;
}

int
flow_messages_list(char **out, flow_engine *engine, const char *name,
                   const char *key, const char *status)
{
  if (out)
    *out = NULL;
  if (engine == NULL || out == NULL)
    return flow__engine_misuse(engine, "flow_messages_list: out is NULL");
  flow_engine *e = engine;
  static const char *const statuses[] = { "buffered", "delivered", "expired",
                                          "incident", "dismissed", NULL };
  int known = status == NULL;
  for (int i = 0; !known && statuses[i]; i++)
    known = strcmp(status, statuses[i]) == 0;
  if (!known)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "'%.40s' is not a message status (buffered, "
                             "delivered, expired, incident or dismissed)",
                             status);
  work_ctx w = { e, json_array() };
  if (w.arr == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  flow__err err;
  flow__err_clear(&err);
  flow__message_query q = { .name = name, .key = key, .status = status };
  int rc = e->vt->message_list(e->store, &q, FLOW__MAX_LIST, collect, &w,
                               &err);
  if (rc != 0) {
    json_decref(w.arr);
    return flow__engine_fail_err(e, &err);
  }
  flow__err_clear(&e->err);
  return flow__engine_owned_json(e, out, w.arr);
}
