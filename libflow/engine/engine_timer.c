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

/* Queues n (for after the commit) at position at of the notes: a timer's
   own notes come before those of the transition it caused. */
static void
note_at(flow_engine *e, size_t at, json_t *n)
{
  if (n == NULL)
    return;
  if (e->notes == NULL || at >= json_array_size(e->notes))
    flow__engine_note(e, n);
  else /* out of memory: the note is lost (and freed), the transition
          is not */
    (void)json_array_insert_new(e->notes, at, n);
}

/* The notes a fired timer leaves, before those of its transition. */
static void
note_fired(flow_engine *e, size_t mark, const due_timer *t, int kind,
           int64_t now)
{
  note_at(e, mark, timer_note("timer", t, now));
  if (kind == FLOW__APPLY_SLA && flow__engine_listened(e, 0)) {
    json_t *n = timer_note(t->kind, t, now);
    if (n)
      json_object_del(n, "timer"), json_object_del(n, "kind");
    note_at(e, mark + 1, n);
  }
}

/*
 * Fires one timer inside the batch's transaction.  The batch first runs
 * without savepoints (each costs a statement journal, a quarter of the
 * time of a backlog); a refusal then returns FIRE_REDO, and the batch is
 * rolled back and run again carefully, each timer under a savepoint of
 * its own so that a refusal undoes only that timer.  The timer is claimed
 * first: it was live when the batch was read, but an earlier timer of the
 * batch may have moved or closed its case since, and another engine on
 * the same database may have fired it.  Only a claimed timer fires.  A
 * refused event keeps the timer as an incident (*incident set, the
 * message in msg).  *fired says whether it fired or became an incident.
 * Returns 0, or a storage failure, after which the whole transaction must
 * be rolled back.
 */
enum { FIRE_REDO = 1 };

static int
fire_in_txn(flow_engine *e, const due_timer *t, int64_t now, int careful,
            int *fired, int *incident, char *msg, size_t msglen)
{
  flow__err err;
  flow__err_clear(&err);
  int kind = strcmp(t->kind, "after") == 0   ? FLOW__APPLY_AFTER
             : strcmp(t->kind, "timer") == 0 ? FLOW__APPLY_TIMER
                                             : FLOW__APPLY_SLA;
  int claimed = 0;
  *fired = *incident = 0;
  size_t mark = flow__engine_notes_mark(e);
  int rc = careful ? e->vt->savepoint(e->store, &err) : 0;
  if (rc == 0)
    rc = e->vt->timer_claim(e->store, t->id, &claimed, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  if (!claimed) /* maybe a dead row removed: keep that */
    return careful && e->vt->release(e->store, &err)
               ? flow__engine_fail_err(e, &err)
               : 0;
  json_t *payload = json_loads(t->payload, 0, NULL);
  if (payload == NULL)
    payload = json_object();
  if (strcmp(t->kind, "task_due") == 0) {
    /* A task's due time: no event for the case, a note if the task is
       still open or claimed. */
    rc = flow__task_due(e, t->case_id, payload, now);
  } else {
    rc = flow__case_apply_txn(e, t->case_id, t->event, payload,
                              &flow__system_actor, kind, t->target, NULL,
                              NULL);
  }
  json_decref(payload);
  if (rc == 0) {
    if (careful && (rc = e->vt->release(e->store, &err)) != 0)
      return flow__engine_fail_err(e, &err);
    *fired = 1;
    if (strcmp(t->kind, "task_due") != 0)
      note_fired(e, mark, t, kind, now);
    return 0;
  }
  if (is_storage_error(rc))
    return rc;
  /* Refused: the claim (and maybe more) must be undone, which needs the
     savepoint the fast pass goes without. */
  if (!careful)
    return FIRE_REDO;
  e->vt->rollback_to(e->store);
  flow__engine_notes_drop(e, mark);
  if (strcmp(t->kind, "task_due") == 0)
    return 0; /* as before: a task's due time has no incident */

  /* The event was refused: keep the timer as an incident, unless another
     engine fired it, or its case moved on (the claim was undone with the
     rest, so the row is as it was). */
  int code = rc, marked = 0;
  snprintf(msg, msglen, "%s", e->err.msg);
  if ((rc = e->vt->timer_incident(e->store, t->id, msg, &marked, &err)) != 0)
    return flow__engine_fail_err(e, &err);
  if (!marked)
    return 0;
  flow__incident_row ir = {
    .case_id = t->case_id, .source = "timer", .source_id = t->id,
    .kind = kind, .event = t->event, .payload = t->payload,
    .target = t->target, .code = flow_err_name(code), .error = msg,
    .raised_at = now,
  };
  json_t *n = flow__engine_listened(e, 0) ? timer_note("incident", t, now)
                                           : NULL;
  if ((rc = flow__incident_raise(e, &ir, n, NULL)) != 0)
    return rc;
  *fired = *incident = 1;
  return 0;
}

/*
 * Fires up to max due timers in one transaction: a weekend's backlog
 * pays one commit (one fsync with synchronous=FULL) per batch instead of
 * one per timer.  A storage failure rolls the whole batch back; its
 * timers stay pending and fire in a later round.
 */
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
  due_batch b = { e, NULL, 0, max };
  b.items = flow__calloc(&e->alloc, max ? max : 1, sizeof *b.items);
  if (b.items == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory firing timers");
  /* The noted cases' cancelled timers go first; cancelled rows the notes
     missed (a crash, a rollback) are removed by the claims below as the
     batch meets them. */
  int rc = e->vt->begin(e->store, &err);
  if (rc == 0 && (rc = flow__engine_sweep(e, &err)) == 0)
    rc = e->vt->timer_due(e->store, now, max, collect_due, &b, &err);
  if (rc != 0) {
    e->vt->rollback(e->store);
    free_batch(&b);
    return flow__engine_fail_err(e, &err);
  }
  *seen = b.n;
  e->next_due = INT64_MIN;
  /* Incidents are logged once they are durable. */
  char (*msgs)[FLOW__ERRMSG_MAX] =
      e->opts.log && b.n ? flow__calloc(&e->alloc, b.n, sizeof *msgs) : NULL;
  unsigned char *raised = msgs ? flow__calloc(&e->alloc, b.n, 1) : NULL;
  size_t n = 0;
  for (int careful = 0; careful < 2; careful++) {
    n = 0;
    for (size_t i = 0; i < b.n && rc == 0; i++) {
      int one = 0, inc = 0;
      char scratch[FLOW__ERRMSG_MAX];
      rc = fire_in_txn(e, &b.items[i], now, careful, &one, &inc,
                       msgs ? msgs[i] : scratch, FLOW__ERRMSG_MAX);
      n += (size_t)one;
      if (raised)
        raised[i] = (unsigned char)inc;
    }
    if (rc != FIRE_REDO)
      break;
    /* Nothing of the fast pass is kept or told: start again. */
    e->vt->rollback(e->store);
    flow__engine_notes_drop(e, 0);
    e->next_due = INT64_MIN;
    if ((rc = e->vt->begin(e->store, &err)) != 0) {
      flow__engine_fail_err(e, &err);
      break;
    }
  }
  rc = flow__engine_end_txn(e, rc);
  if (rc == 0) {
    *fired = n;
    for (size_t i = 0; raised && i < b.n; i++) {
      if (!raised[i])
        continue;
      char line[FLOW__ERRMSG_MAX + 128];
      snprintf(line, sizeof line, "timer %lld of case %lld: %s",
               (long long)b.items[i].id, (long long)b.items[i].case_id,
               msgs[i]);
      e->opts.log(e, FLOW_LOG_ERROR, line, e->opts.log_payload);
    }
  }
  flow__free(&e->alloc, msgs);
  flow__free(&e->alloc, raised);
  free_batch(&b);
  return is_storage_error(rc) ? rc : 0;
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
