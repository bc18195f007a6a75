/*
 * Asynchronous calls and group commit.
 *
 * flow_case_open_async, flow_case_signal_async and flow_message_send_async
 * copy their arguments into a queue and return.  Once per loop round the loop calls
 * flow__engine_flush_async, which applies every queued call inside one
 * SQLite transaction, commits once, and only then runs the callbacks.  One
 * commit (one WAL append, one fsync with synchronous=FULL) is shared by the
 * whole group, which is where the throughput comes from; no callback hears
 * "done" before its transition is durable.
 *
 * A refused call must leave no trace and must not disturb the others.
 * Almost every refusal (a guard, a handler error, a budget, validation)
 * happens before the call writes anything, so the calls run without a
 * savepoint each: a savepoint makes SQLite copy every page the call touches
 * into a statement journal, which cost a fifth of a group's time.  The
 * store counts the rows each call changed; when a call fails after it has
 * written (a timer whose due time overflows, memory running out between
 * two statements), the whole transaction is rolled back and the group runs
 * again in careful mode, one savepoint per call, without that call.  The
 * calls before it run their scripts a second time then, which is safe
 * because nothing of the first run was kept or reported.
 */
#include "engine/engine.h"

#include <stdint.h>
#include <string.h>

enum { ASYNC_OPEN, ASYNC_SIGNAL, ASYNC_MESSAGE };

typedef struct flow__async {
  int kind;
  char *target;  /* service name, case id or message name */
  char *event;   /* signal: the event; message: the key */
  int64_t ttl;   /* message only */
  char *json;    /* data or payload, may be NULL */
  char *actor_id;
  char **roles;
  size_t nroles;
  flow_case_cb cb;
  void *payload;
  /* outcome */
  int status;
  char *result;  /* owned JSON (flow_free) */
  char *errmsg;  /* copy of the engine message on failure */
  struct flow__async *next;
} flow__async;

/* The call's strings and the role list live in its own block, after the
   struct: one allocation a call, where one each cost a fifth of the
   queueing. */
static void
async_free(flow_engine *e, flow__async *a)
{
  const flow__allocator *al = &e->alloc;
  flow_free(a->result);
  flow__free(al, a->errmsg);
  flow__free(al, a);
}

/* Copies s into *at and returns the copy, or NULL for s NULL. */
static char *
pack(char **at, const char *s, size_t n)
{
  if (s == NULL)
    return NULL;
  char *d = *at;
  memcpy(d, s, n + 1);
  *at += n + 1;
  return d;
}

static int
enqueue(flow_engine *e, int kind, const char *target, const char *event,
        const char *json, const flow_actor *actor, flow_case_cb cb,
        void *payload)
{
  const flow__allocator *al = &e->alloc;
  size_t nroles = actor && actor->roles ? actor->nroles : 0;
  const char *actor_id = actor ? actor->id : NULL;
  size_t ltarget = strlen(target);
  size_t levent = event ? strlen(event) : 0;
  size_t ljson = json ? strlen(json) : 0;
  size_t lactor = actor_id ? strlen(actor_id) : 0;
  /* Sizes are bounded by what the caller could hold in memory; the sum
     is checked all the same. */
  size_t total = sizeof(flow__async) + nroles * sizeof(char *);
  size_t parts[4] = { ltarget, levent, ljson, lactor };
  int oom = nroles > SIZE_MAX / (2 * sizeof(char *));
  for (int i = 0; i < 4 && !oom; i++) {
    if (parts[i] > SIZE_MAX - total - 1)
      oom = 1;
    else
      total += parts[i] + 1;
  }
  for (size_t i = 0; !oom && i < nroles; i++) {
    size_t n = strlen(actor->roles[i]);
    if (n > SIZE_MAX - total - 1)
      oom = 1;
    else
      total += n + 1;
  }
  flow__async *a = oom ? NULL : flow__malloc(al, total);
  if (a == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory queueing a call");
  memset(a, 0, sizeof *a);
  a->kind = kind;
  a->cb = cb;
  a->payload = payload;
  a->roles = nroles ? (char **)(a + 1) : NULL;
  a->nroles = nroles;
  char *at = (char *)(a + 1) + nroles * sizeof(char *);
  a->target = pack(&at, target, ltarget);
  a->event = pack(&at, event, levent);
  a->json = pack(&at, json, ljson);
  a->actor_id = pack(&at, actor_id, lactor);
  for (size_t i = 0; i < nroles; i++)
    a->roles[i] = pack(&at, actor->roles[i], strlen(actor->roles[i]));
  if (e->async_tail)
    e->async_tail->next = a;
  else
    e->async_head = a;
  e->async_tail = a;
  e->async_count++;
  flow__err_clear(&e->err);
  flow__engine_kick(e);
  return 0;
}

int
flow_case_open_async(flow_engine *engine, const char *service,
                     const char *data_json, const flow_actor *actor,
                     flow_case_cb cb, void *payload)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  if (service == NULL)
    return flow__engine_fail(engine, FLOW_EMISUSE, "service is NULL");
  int rc = flow__case_check_actor(engine, actor);
  if (rc != 0)
    return rc;
  return enqueue(engine, ASYNC_OPEN, service, NULL, data_json, actor, cb,
                 payload);
}

int
flow_case_signal_async(flow_engine *engine, const char *case_id,
                       const char *event, const char *payload_json,
                       const flow_actor *actor, flow_case_cb cb,
                       void *payload)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  if (event == NULL)
    return flow__engine_fail(engine, FLOW_EMISUSE, "event is NULL");
  int64_t id;
  int rc;
  if ((rc = flow__case_parse_id(engine, case_id, &id)) != 0 ||
      (rc = flow__case_check_actor(engine, actor)) != 0)
    return rc;
  return enqueue(engine, ASYNC_SIGNAL, case_id, event, payload_json, actor,
                 cb, payload);
}

int
flow_message_send_async(flow_engine *engine, const char *name,
                        const char *key, const char *payload_json,
                        int64_t ttl_ms, flow_case_cb cb, void *payload)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  if (name == NULL || key == NULL)
    return flow__engine_fail(engine, FLOW_EMISUSE,
                             "flow_message_send_async: %s is NULL",
                             name ? "key" : "name");
  int rc = enqueue(engine, ASYNC_MESSAGE, name, key, payload_json, NULL, cb,
                   payload);
  if (rc == 0)
    engine->async_tail->ttl = ttl_ms;
  return rc;
}

int
flow__engine_async_pending(const flow_engine *e)
{
  return e->async_head != NULL;
}

/* Applies one call inside the group's transaction; in careful mode
   inside its own savepoint. */
static int
apply_one(flow_engine *e, flow__async *a, int careful)
{
  flow_actor actor = { a->actor_id, (const char *const *)a->roles,
                       a->nroles };
  flow__err err;
  flow__err_clear(&err);
  size_t mark = flow__engine_notes_mark(e);
  int rc = careful ? e->vt->savepoint(e->store, &err) : 0;
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  if (a->kind == ASYNC_OPEN) {
    rc = flow__case_open_txn(e, a->target, a->json, &actor, &a->result);
  } else if (a->kind == ASYNC_MESSAGE) {
    rc = flow__message_send_txn(e, a->target, a->event, a->json, a->ttl,
                                &a->result);
  } else {
    int64_t id = 0;
    json_t *payload = NULL;
    rc = flow__case_parse_id(e, a->target, &id);
    if (rc == 0 &&
        (rc = flow__json_parse_object(a->json, "the event payload", &payload,
                                      &err)) != 0)
      flow__engine_fail_err(e, &err);
    if (rc == 0)
      rc = flow__case_apply_txn(e, id, a->event, payload, &actor,
                                FLOW__APPLY_SIGNAL, NULL, NULL, &a->result);
    json_decref(payload);
  }
  if (careful && rc == 0 && (rc = e->vt->release(e->store, &err)) != 0)
    flow__engine_fail_err(e, &err);
  if (rc != 0) {
    if (careful)
      e->vt->rollback_to(e->store);
    flow__engine_notes_drop(e, mark);
    flow_free(a->result);
    a->result = NULL;
  }
  return rc;
}

static void
set_failure(flow_engine *e, flow__async *a, int code, const char *msg)
{
  a->status = code;
  flow_free(a->result);
  a->result = NULL;
  flow__free(&e->alloc, a->errmsg);
  a->errmsg = flow__strdup(&e->alloc, msg);
}

/* A storage failure poisons the transaction: nothing after it can run. */
static int
poisons(int rc)
{
  return rc == FLOW_EIO || rc == FLOW_EBUSY;
}

/*
 * Applies the calls from head on, in one transaction, and commits.  Calls
 * already decided (status set by an earlier attempt) are skipped.  Returns
 * 1 when a call failed after writing and the caller must roll back and
 * run the group again carefully; otherwise the group's outcome (0, or the
 * storage failure every undecided call was failed with).
 */
enum { GROUP_REDO = 1 };

static int
apply_group(flow_engine *e, flow__async *head, int careful)
{
  flow__err err;
  flow__err_clear(&err);
  int rc = e->vt->begin(e->store, &err);
  if (rc != 0) {
    for (flow__async *a = head; a; a = a->next)
      if (a->status == 0)
        set_failure(e, a, rc, err.msg);
    return rc;
  }
  for (flow__async *a = head; a; a = a->next) {
    if (a->status != 0)
      continue; /* refused in an earlier attempt */
    uint64_t before = e->writes;
    int st = apply_one(e, a, careful);
    if (st == 0)
      continue;
    set_failure(e, a, st, e->err.msg);
    if (poisons(st)) {
      rc = st;
      for (flow__async *b = a->next; b; b = b->next)
        set_failure(e, b, rc, e->err.msg);
      break;
    }
    if (!careful && e->writes != before) {
      /* Refused after writing: undo everything, keep only the verdict. */
      e->vt->rollback(e->store);
      flow__engine_notes_drop(e, 0);
      for (flow__async *b = head; b != a; b = b->next)
        if (b->status == 0) {
          flow_free(b->result);
          b->result = NULL;
        }
      e->next_due = INT64_MIN;
      return GROUP_REDO;
    }
  }
  /* The group's cancelled timers go in its commit: their pages are
     shared. */
  if (rc != 0)
    flow__err_set(&err, rc, "%s", e->err.msg);
  else if ((rc = flow__engine_sweep(e, &err)) == 0)
    rc = e->vt->commit(e->store, &err);
  if (rc != 0) {
    e->vt->rollback(e->store);
    flow__engine_notes_drop(e, 0);
    for (flow__async *a = head; a; a = a->next)
      if (a->status == 0)
        set_failure(e, a, rc, err.msg);
  }
  e->next_due = INT64_MIN;
  return rc;
}

int
flow__engine_flush_async(flow_engine *e)
{
  flow__async *head = e->async_head;
  if (head == NULL)
    return 0;
  /* Calls queued by the callbacks below go to the next group. */
  e->async_head = e->async_tail = NULL;
  e->async_count = 0;

  int rc = apply_group(e, head, 0);
  if (rc == GROUP_REDO)
    rc = apply_group(e, head, 1);

  /* Only now, with the group durable (or not), tell the callers. */
  int was = e->in_callback;
  e->in_callback = 1;
  while (head) {
    flow__async *a = head;
    head = a->next;
    if (a->status == 0)
      flow__err_clear(&e->err);
    else
      flow__err_set(&e->err, a->status, "%s",
                    a->errmsg ? a->errmsg : flow_strerror(a->status));
    if (a->cb)
      a->cb(e, a->status, a->result, a->payload);
    async_free(e, a);
  }
  e->in_callback = was;
  flow__engine_notes_flush(e); /* what the group did, now durable */
  flow__engine_kick(e);
  return rc;
}

/* At close: calls never applied get their callback with an error, so
   hosts can release what their payload holds. */
void
flow__engine_async_drop(flow_engine *e)
{
  flow__async *a = e->async_head;
  e->in_callback = 1;
  while (a) {
    flow__async *next = a->next;
    flow__err_set(&e->err, FLOW_ECANCELED,
                  "the engine was closed before this call was applied");
    if (a->cb)
      a->cb(e, FLOW_ECANCELED, NULL, a->payload);
    async_free(e, a);
    a = next;
  }
  e->in_callback = 0;
  e->async_head = e->async_tail = NULL;
  e->async_count = 0;
}
