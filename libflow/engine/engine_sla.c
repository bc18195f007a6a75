/*
 * Service levels: the case's clock (docs/time.md, "Service levels").
 *
 * A case has at most one clock at a time.  It starts when the case opens
 * (the service's `sla`, or its first state's own), starts again when the
 * case enters a state with an `sla` of its own or a handler calls
 * flow.sla.restart, stops with flow.sla.pause and goes on with
 * flow.sla.resume, and is settled for good by flow.sla.stop (met or
 * breached as it stands then; the case may stay open).  Its due time is cases.due_at; its warning and breach
 * are two timers kept across states (kinds sla_warning and sla_breached),
 * which wait as 'paused' while the clock is stopped and move on at resume
 * by the time that was stopped, counted the way the service level is
 * written (flow__calendar_shift).  Every start after the opening, pause
 * and resume is logged for the case's history, in the transition's own
 * history row (history.sla, through flow__sla_after's log).
 *
 * A start is worked out in two steps: the durations, which may be
 * functions of the case, while the transition's script run is open
 * (flow__sla_compute); the due time before the case row is written
 * (flow__sla_before); the timers, the requested changes and the log after
 * (flow__sla_after).
 */
#include "engine/engine.h"

#include <string.h>

int
flow__sla_may(const flow__service *svc, int warn)
{
  const flow__sla *s = &svc->sla;
  if (s->set && (!warn || s->warn || s->warn_fn != FLOW__NOREF))
    return 1;
  for (size_t i = 0; i < svc->nstates; i++) {
    s = &svc->states[i].sla;
    if (s->set && (!warn || s->warn || s->warn_fn != FLOW__NOREF))
      return 1;
  }
  /* flow.sla.restart may start one: a mention of flow.sla is enough not
     to claim it never comes. */
  return svc->source && strstr(svc->source, "flow.sla") != NULL;
}

void
flow__sla_start_init(flow__sla_start *st, const flow__sla *src)
{
  memset(st, 0, sizeof *st);
  st->src = src;
}

void
flow__sla_start_clear(flow_engine *e, flow__sla_start *st)
{
  flow__free(&e->alloc, st->within);
  flow__free(&e->alloc, st->warn);
  st->within = st->warn = NULL;
}

int
flow__sla_needs_lua(const flow__sla_start *st)
{
  return st->src && (st->src->within_fn != FLOW__NOREF ||
                     st->src->warn_fn != FLOW__NOREF);
}

/* One duration of a start: the function's text, checked, into *out. */
static int
compute_one(flow_engine *e, flow__sandbox *sb, const flow__service *svc,
            int ref, const char *what, char **out, flow__err *err)
{
  if (ref == FLOW__NOREF)
    return 0;
  int rc = flow__run_invoke_text(sb, ref, what,
                                 "a duration like \"10 working days\" (or "
                                 "nil: none for this case)",
                                 out, err);
  if (rc != 0 || *out == NULL)
    return rc;
  flow__duration d;
  flow__err perr;
  flow__err_clear(&perr);
  if (flow__duration_parse(*out, &d, &perr) != 0) {
    rc = flow__err_set(err, FLOW_ESCRIPT,
                       "%s: %s returned '%.60s', which is not a duration: "
                       "%s",
                       svc->chunkname, what, *out, perr.msg);
    flow__free(&e->alloc, *out);
    *out = NULL;
  }
  return rc;
}

int
flow__sla_compute(flow_engine *e, flow__sandbox *sb, const flow__service *svc,
                  flow__sla_start *st, flow__err *err)
{
  if (!flow__sla_needs_lua(st))
    return 0;
  st->computed = 1;
  int rc = compute_one(e, sb, svc, st->src->within_fn, "sla within",
                       &st->within, err);
  if (rc == 0)
    rc = compute_one(e, sb, svc, st->src->warn_fn, "sla warn", &st->warn,
                     err);
  return rc;
}

/* The durations a start uses: computed, or as written. */
static const char *
start_within(const flow__sla_start *st)
{
  return st->src->within_fn != FLOW__NOREF ? st->within : st->src->within;
}

static const char *
start_warn(const flow__sla_start *st)
{
  return st->src->warn_fn != FLOW__NOREF ? st->warn : st->src->warn;
}

/* now + text on the engine calendar. */
static int
due_of(flow_engine *e, const flow__service *svc, int64_t now,
       const char *text, const char *what, int64_t *out, flow__err *err)
{
  flow__duration d;
  if (flow__duration_parse(text, &d, err) != 0 ||
      flow__calendar_add(&e->cal, now, &d, out) != 0)
    return flow__err_set(err, FLOW_EINVAL, "%s: the service level's %s '%s' "
                         "overflows the calendar",
                         svc->chunkname, what, text);
  return 0;
}

int
flow__sla_before(flow_engine *e, const flow__service *svc,
                 flow__case_row *row, flow__sla_start *st, int64_t now,
                 flow__err *err)
{
  if (st->src == NULL)
    return 0;
  const char *within = start_within(st);
  row->paused_at = FLOW__NO_TIME;
  row->due_at = FLOW__NO_TIME;
  return within ? due_of(e, svc, now, within, "within", &row->due_at, err)
                : 0;
}

/* The warning and breach timers of a clock that starts now. */
static int
add_timers(flow_engine *e, const flow__service *svc, const flow__case_row *row,
           const char *within, const char *warn, int64_t now,
           flow__err *err)
{
  int rc = 0;
  if (within && row->due_at != FLOW__NO_TIME) {
    json_t *p = json_pack("{s:s}", "within", within);
    char *text = flow__json_owned(&e->alloc, p);
    json_decref(p);
    if (text == NULL)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory setting a timer");
    flow__timer_row r = { 0,    row->id, row->due_at, "sla_breached",
                          "sla_breached", text, NULL, NULL, "pending", NULL,
                          row->seq };
    rc = e->vt->timer_insert(e->store, &r, err);
    flow_free(text);
  }
  if (rc == 0 && warn && within) {
    int64_t due;
    if ((rc = due_of(e, svc, now, warn, "warn", &due, err)) != 0)
      return rc;
    json_t *p = json_pack("{s:s}", "warn", warn);
    char *text = flow__json_owned(&e->alloc, p);
    json_decref(p);
    if (text == NULL)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory setting a timer");
    flow__timer_row r = { 0,    row->id, due, "sla_warning", "sla_warning",
                          text, NULL,    NULL, "pending",   NULL,
                          row->seq };
    rc = e->vt->timer_insert(e->store, &r, err);
    flow_free(text);
  }
  e->next_due = INT64_MIN;
  return rc;
}

/* Logs one change in log, the entries of the transition's history row
   (history.sla): [n, change, at, due_at or null, detail]; detail is
   borrowed. */
static int
log_change(flow__buf *log, const flow__case_row *row, int *n,
           const char *change, int64_t now, json_t *detail, flow__err *err)
{
  flow__buf_addc(log, log->len == 0 ? '[' : ',');
  flow__buf_addc(log, '[');
  flow__buf_addi64(log, (*n)++);
  flow__buf_addc(log, ',');
  flow__json_add_string(log, change);
  flow__buf_addc(log, ',');
  flow__buf_addi64(log, now);
  flow__buf_addc(log, ',');
  if (row->due_at == FLOW__NO_TIME)
    flow__buf_adds(log, "null");
  else
    flow__buf_addi64(log, row->due_at);
  flow__buf_addc(log, ',');
  int rc = flow__json_dump(detail, log);
  flow__buf_addc(log, ']');
  if (rc != 0 || log->oom)
    return flow__err_set(err, FLOW_ENOMEM, "out of memory logging a "
                         "service-level change");
  return 0;
}

typedef struct shift_ctx {
  flow_engine *e;
  flow__case_row *row;
  int64_t now;
} shift_ctx;

/* Where a paused timer goes at resume; the breach moves the due time. */
static int
shift_timer(void *ctx, int64_t due, const char *payload, int64_t *out)
{
  shift_ctx *c = ctx;
  json_t *p = json_loads(payload, 0, NULL);
  const char *text = json_string_value(json_object_get(p, "within"));
  int breach = text != NULL;
  if (text == NULL)
    text = json_string_value(json_object_get(p, "warn"));
  flow__duration d = { FLOW__DUR_ELAPSED, 0 };
  if (text)
    flow__duration_parse(text, &d, NULL);
  json_decref(p);
  int rc = flow__calendar_shift(&c->e->cal, due, c->row->paused_at, c->now,
                                d.unit, out);
  if (rc == 0 && breach)
    c->row->due_at = *out;
  return rc;
}

int
flow__sla_after(flow_engine *e, const flow__service *svc, flow__case_row *row,
                int opening, flow__sla_start *st, json_t *calls, int64_t now,
                flow__buf *log, flow__err *err)
{
  int rc = 0, n = 0, changed = 0;
  if (st->src) {
    if (!opening) {
      changed = 1;
      rc = e->vt->sla_timers_drop(e->store, row->id, err);
    }
    if (rc == 0)
      rc = add_timers(e, svc, row, start_within(st), start_warn(st), now,
                      err);
    /* The opening's own start is the case's due_at; a computed one, or
       one of a state, is worth a line of history. */
    if (rc == 0 && (!opening || st->computed || st->src != &svc->sla)) {
      json_t *d = json_pack("{s:s?, s:s?}", "within", start_within(st),
                            "warn", start_warn(st));
      rc = log_change(log, row, &n, "started", now, d, err);
      json_decref(d);
    }
  }
  for (size_t i = 0; rc == 0 && calls && i < json_array_size(calls); i++) {
    json_t *c = json_array_get(calls, i);
    const char *op = json_string_value(json_object_get(c, "sla"));
    if (op == NULL)
      continue;
    if (strcmp(op, "restart") == 0) {
      const char *within = json_string_value(json_object_get(c, "within"));
      const char *warn = json_string_value(json_object_get(c, "warn"));
      row->paused_at = FLOW__NO_TIME;
      if ((rc = due_of(e, svc, now, within, "within", &row->due_at, err)) ||
          (rc = e->vt->sla_timers_drop(e->store, row->id, err)) ||
          (rc = add_timers(e, svc, row, within, warn, now, err)))
        break;
      json_t *d = json_pack("{s:s, s:s?}", "within", within, "warn", warn);
      rc = log_change(log, row, &n, "restarted", now, d, err);
      json_decref(d);
      changed = 1;
    } else if (strcmp(op, "pause") == 0) {
      if (row->due_at == FLOW__NO_TIME || row->paused_at != FLOW__NO_TIME)
        continue; /* no clock, or stopped already */
      if ((rc = e->vt->sla_timers_pause(e->store, row->id, err)) != 0)
        break;
      row->paused_at = now;
      json_t *d = json_pack("{s:s?}", "reason",
                            json_string_value(json_object_get(c, "reason")));
      rc = log_change(log, row, &n, "paused", now, d, err);
      json_decref(d);
      changed = 1;
    } else if (strcmp(op, "stop") == 0) {
      /* The promise is settled now, though the case stays open (an FOI
         request answered, with a review still possible): met when it
         came in time -- when the clock stopped, for a stopped one --
         breached otherwise.  Its timers go and so does the due time, so
         nothing warns, breaches or lists it as overdue after this. */
      if (row->due_at == FLOW__NO_TIME)
        continue; /* no clock */
      int64_t judged = row->paused_at != FLOW__NO_TIME ? row->paused_at : now;
      if ((rc = e->vt->sla_timers_drop(e->store, row->id, err)) != 0)
        break;
      json_t *d = json_pack("{s:s}", "result",
                            judged <= row->due_at ? "met" : "breached");
      rc = log_change(log, row, &n, "stopped", now, d, err);
      json_decref(d);
      row->due_at = row->paused_at = FLOW__NO_TIME;
      changed = 1;
      e->next_due = INT64_MIN;
    } else if (strcmp(op, "resume") == 0) {
      if (row->paused_at == FLOW__NO_TIME)
        continue; /* it runs */
      int64_t stopped;
      if (flow__calendar_working_ms(&e->cal, row->paused_at, now,
                                    &stopped) != 0)
        stopped = now - row->paused_at;
      shift_ctx sc = { e, row, now };
      if ((rc = e->vt->sla_timers_resume(e->store, row->id, shift_timer, &sc,
                                         err)) != 0)
        break;
      json_t *d = json_pack("{s:o, s:I, s:I}", "paused_at",
                            flow__time_json(row->paused_at), "stopped_ms",
                            (json_int_t)(now - row->paused_at),
                            "working_ms", (json_int_t)stopped);
      row->paused_at = FLOW__NO_TIME;
      rc = log_change(log, row, &n, "resumed", now, d, err);
      json_decref(d);
      changed = 1;
      e->next_due = INT64_MIN;
    }
  }
  if (rc == 0 && changed)
    rc = e->vt->case_sla(e->store, row, err);
  return rc;
}
