/*
 * Durable timers: finding the next one and firing those that are due.
 *
 * Timers are rows, written in the transaction of the transition that set
 * them.  Firing one deletes its row in the same transaction as the
 * transition it causes, so a timer fires exactly once even if the process
 * dies between two timers.  The engine never loads timers into memory: it
 * asks for the earliest pending due time (one row of a partial index) and
 * fires due timers in bounded batches, so a database with a million
 * pending timers opens at once and a long backlog does not freeze the
 * loop.
 *
 * A timer whose event is refused (the handler threw, the data became
 * invalid, the state does not accept the event) has no caller to return
 * the error to: it becomes an incident, kept with its message, listed by
 * flow_case_timers(), and reported to the listener.
 */
#include "engine/engine.h"

#include <string.h>


int
flow__engine_clock_fixed(const flow_engine *e)
{
  return e->fixed_now != INT64_MIN;
}

void
flow__engine_kick(flow_engine *e)
{
  if (e->loop_kick)
    e->loop_kick(e);
}

int
flow__engine_sweep(flow_engine *e, flow__err *err)
{
  if (e->nsweep == 0)
    return 0;
  e->writes++;
  int rc = e->vt->timer_sweep_cases(e->store, e->sweep_ids, e->nsweep, err);
  /* A failed sweep keeps its notes: the transaction it was in rolls back,
     and the next sweep tries them again. */
  if (rc == 0)
    e->nsweep = 0;
  return rc;
}

int
flow__engine_sweep_later(flow_engine *e, int64_t case_id, flow__err *err)
{
  if (e->nsweep == 0 || e->sweep_ids[e->nsweep - 1] != case_id) {
    /* Still full after a failed sweep: try it first, or refuse. */
    int rc = e->nsweep == FLOW__SWEEP_BATCH ? flow__engine_sweep(e, err) : 0;
    if (rc != 0)
      return rc;
    e->sweep_ids[e->nsweep++] = case_id;
  }
  return e->nsweep == FLOW__SWEEP_BATCH ? flow__engine_sweep(e, err) : 0;
}

int
flow__engine_wake_check(flow_engine *e)
{
  flow__err err;
  flow__err_clear(&err);
  int changed = 0;
  if (e->vt->changed_elsewhere(e->store, &changed, &err) != 0)
    return 0; /* asked again at the next poll */
  if (changed) {
    e->next_due = INT64_MIN;
    e->msg_next = INT64_MIN;
  }
  return changed;
}

int64_t
flow__engine_next_due(flow_engine *e)
{
  if (e->next_due != INT64_MIN)
    return e->next_due;
  flow__err err;
  flow__err_clear(&err);
  int64_t due;
  if (e->vt->timer_next_due(e->store, &due, &err) != 0)
    return INT64_MAX; /* try again at the next kick */
  int64_t act = flow__engine_actions_next_due(e);
  if (act < due)
    due = act;
  int64_t msg = flow__messages_next_due(e);
  if (msg < due)
    due = msg;
  e->next_due = due;
  return due;
}

/* A copy of a due timer row: the store's strings die with its cursor. */
typedef struct due_timer {
  int64_t id, case_id, due_at;
  char *kind, *event, *payload, *target;
} due_timer;

typedef struct due_batch {
  flow_engine *e;
  due_timer *items;
  size_t n, cap;
} due_batch;

static int
collect_due(void *ctx, const flow__timer_row *r)
{
  due_batch *b = ctx;
  const flow__allocator *a = &b->e->alloc;
  if (b->n == b->cap)
    return FLOW_ENOMEM; /* cap is the batch size: cannot happen */
  due_timer *t = &b->items[b->n];
  t->id = r->id;
  t->case_id = r->case_id;
  t->due_at = r->due_at;
  t->kind = flow__strdup(a, r->kind);
  t->event = flow__strdup(a, r->event);
  t->payload = flow__strdup(a, r->payload);
  t->target = r->target ? flow__strdup(a, r->target) : NULL;
  b->n++;
  if (!t->kind || !t->event || !t->payload || (r->target && !t->target))
    return FLOW_ENOMEM;
  return 0;
}

static void
free_batch(due_batch *b)
{
  const flow__allocator *a = &b->e->alloc;
  for (size_t i = 0; i < b->n; i++) {
    flow__free(a, b->items[i].kind);
    flow__free(a, b->items[i].event);
    flow__free(a, b->items[i].payload);
    flow__free(a, b->items[i].target);
  }
  flow__free(a, b->items);
}

static int
is_storage_error(int rc)
{
  return rc == FLOW_EIO || rc == FLOW_EBUSY || rc == FLOW_ENOMEM;
}

static json_t *
timer_note(const char *type, const due_timer *t, int64_t now)
{
  char cid[24], tid[24], due[32], at[32];
  snprintf(cid, sizeof cid, "%lld", (long long)t->case_id);
  snprintf(tid, sizeof tid, "%lld", (long long)t->id);
  flow__time_format(due, sizeof due, t->due_at);
  flow__time_format(at, sizeof at, now);
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type", type,
                   "case", cid, "timer", tid, "kind", t->kind, "event",
                   t->event, "due_at", due, "at", at);
}

/*
 * Fires one timer in its own transaction; incidents are recorded.  The
 * timer is claimed first, in that transaction: it was live when the batch
 * was read, but an earlier timer of the batch may have moved or closed its
 * case since, and another engine on the same database may have fired it.
 * Only a claimed timer fires; *fired says whether this one did.
 */
static int
fire_one(flow_engine *e, const due_timer *t, int64_t now, int *fired)
{
  flow__err err;
  flow__err_clear(&err);
  int kind = strcmp(t->kind, "after") == 0   ? FLOW__APPLY_AFTER
             : strcmp(t->kind, "timer") == 0 ? FLOW__APPLY_TIMER
                                             : FLOW__APPLY_SLA;
  char *out = NULL;
  int claimed = 0;
  *fired = 0;
  e->next_due = INT64_MIN;
  int rc = e->vt->begin(e->store, &err);
  if (rc == 0)
    rc = e->vt->timer_claim(e->store, t->id, &claimed, &err);
  if (rc != 0) {
    e->vt->rollback(e->store);
    return flow__engine_fail_err(e, &err);
  }
  if (!claimed) {
    /* Maybe a dead row removed: keep that. */
    if ((rc = e->vt->commit(e->store, &err)) != 0) {
      e->vt->rollback(e->store);
      return flow__engine_fail_err(e, &err);
    }
    return 0;
  }
  json_t *payload = json_loads(t->payload, 0, NULL);
  if (payload == NULL)
    payload = json_object();
  if (strcmp(t->kind, "task_due") == 0) {
    /* A task's due time: no event for the case, a note if the task is
       still open or claimed. */
    rc = flow__task_due(e, t->case_id, payload, now);
    json_decref(payload);
    if ((rc = flow__engine_end_txn(e, rc)) == 0)
      *fired = 1;
    return is_storage_error(rc) ? rc : 0;
  }
  rc = flow__case_apply_txn(e, t->case_id, t->event, payload, &flow__system_actor,
                            kind, t->target, NULL, &out);
  json_decref(payload);
  if (rc == 0 && (rc = e->vt->commit(e->store, &err)) != 0)
    flow__engine_fail_err(e, &err);
  flow_free(out);
  if (rc == 0) {
    *fired = 1;
    flow__engine_notify(e, timer_note("timer", t, now));
    if (kind == FLOW__APPLY_SLA && flow__engine_listened(e, 0)) {
      json_t *n = timer_note(t->kind, t, now);
      if (n)
        json_object_del(n, "timer"), json_object_del(n, "kind");
      flow__engine_notify(e, n);
    }
    flow__engine_notes_flush(e); /* the transition it caused */
    return 0;
  }
  e->vt->rollback(e->store);
  flow__engine_notes_drop(e, 0);
  if (is_storage_error(rc))
    return rc;

  /* The event was refused: keep the timer as an incident, unless another
     engine fired it, or its case moved on, while this one held no lock. */
  char msg[FLOW__ERRMSG_MAX];
  int code = rc, marked = 0;
  snprintf(msg, sizeof msg, "%s", e->err.msg);
  int src = e->vt->begin(e->store, &err);
  if (src == 0)
    src = e->vt->timer_incident(e->store, t->id, msg, &marked, &err);
  if (src != 0) {
    e->vt->rollback(e->store);
    return flow__engine_fail_err(e, &err);
  }
  if (marked) {
    flow__incident_row ir = {
      .case_id = t->case_id, .source = "timer", .source_id = t->id,
      .kind = kind, .event = t->event, .payload = t->payload,
      .target = t->target, .code = flow_err_name(code), .error = msg,
      .raised_at = now,
    };
    json_t *n = flow__engine_listened(e, 0) ? timer_note("incident", t, now)
                                             : NULL;
    src = flow__incident_raise(e, &ir, n, NULL);
  }
  if ((src = flow__engine_end_txn(e, src)) != 0)
    return src;
  if (!marked)
    return 0;
  *fired = 1;
  if (e->opts.log) {
    char line[FLOW__ERRMSG_MAX + 128];
    snprintf(line, sizeof line, "timer %lld of case %lld: %s",
             (long long)t->id, (long long)t->case_id, msg);
    e->opts.log(e, FLOW_LOG_ERROR, line, e->opts.log_payload);
  }
  return 0;
}

int
flow__engine_fire_batch(flow_engine *e, size_t max, size_t *fired,
                        size_t *seen)
{
  *fired = 0;
  *seen = 0;
  int64_t now = flow_engine_now(e);
  if (flow__engine_next_due(e) > now)
    return 0;
  flow__err err;
  flow__err_clear(&err);
  /* The noted cases' cancelled timers go first, in one transaction;
     cancelled rows the notes missed (a crash, a rollback) are removed by
     the claims below as the batch meets them. */
  int rc = e->vt->begin(e->store, &err);
  if (rc == 0 && (rc = flow__engine_sweep(e, &err)) == 0)
    rc = e->vt->commit(e->store, &err);
  if (rc != 0) {
    e->vt->rollback(e->store);
    return flow__engine_fail_err(e, &err);
  }
  due_batch b = { e, NULL, 0, max };
  b.items = flow__calloc(&e->alloc, max ? max : 1, sizeof *b.items);
  if (b.items == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory firing timers");
  rc = e->vt->timer_due(e->store, now, max, collect_due, &b, &err);
  if (rc != 0) {
    free_batch(&b);
    return flow__engine_fail_err(e, &err);
  }
  *seen = b.n;
  for (size_t i = 0; i < b.n && rc == 0; i++) {
    int one = 0;
    rc = fire_one(e, &b.items[i], now, &one);
    *fired += (size_t)one;
  }
  free_batch(&b);
  return rc;
}

int
flow__engine_work_batch(flow_engine *e, size_t max, size_t *done,
                        size_t *seen)
{
  size_t fired = 0, tseen = 0, sent = 0, aseen = 0;
  int rc = flow__engine_fire_batch(e, max, &fired, &tseen);
  if (rc == 0 && tseen < max)
    rc = flow__engine_dispatch_batch(e, max - tseen, &sent, &aseen);
  size_t msgs = 0;
  if (rc == 0 && tseen + aseen < max)
    rc = flow__messages_work(e, max - tseen - aseen, &msgs);
  *done = fired + sent + msgs;
  *seen = tseen + aseen + msgs;
  return rc;
}
