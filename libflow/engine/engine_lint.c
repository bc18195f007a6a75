/*
 * Static checks of a service script: what `flow check` warns about once a
 * script has loaded without errors (flow_service_lint).
 *
 * The loader already refuses what cannot work (a target state that does
 * not exist, an `after` in a final state, a timer event the state does not
 * handle).  What is left are scripts that load but cannot do what their
 * author meant: a state nothing leads to, a state a case can get stuck in,
 * a timer another timer always beats.  The analysis follows the static
 * shape only: `on` targets, `after` targets and the events timers fire.
 * A handler that returns a state name could go anywhere, so a state with
 * such a handler is taken to reach every state -- a warning is only ever
 * given when it is certain.
 */
#include "engine/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the checks --------------------------------------------------------- */

/* Warnings kept for one script (FLOW__MAX_WARNINGS): a 250-byte script
   can make millions (a table of timers shared by every state), and each is
   work and output. */

typedef struct lint {
  flow_engine *e;
  const flow__service *svc;
  json_t *warnings;
  int oom;
  size_t more; /* warnings past FLOW__MAX_WARNINGS, only counted */
} lint;

static void warn(lint *l, int line, const char *fmt, ...) FLOW__PRINTF(3, 4);

static void
warn(lint *l, int line, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  if (json_array_size(l->warnings) >= FLOW__MAX_WARNINGS) {
    l->more++;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_t *w = json_pack("{s:i, s:s}", "line", line > 0 ? line : 1, "message",
                        msg);
  if (w == NULL || json_array_append_new(l->warnings, w) != 0)
    l->oom = 1;
}

static size_t
state_index(const flow__service *svc, const char *name)
{
  for (size_t i = 0; i < svc->nstates; i++)
    if (strcmp(svc->states[i].name, name) == 0)
      return i;
  return (size_t)-1;
}

/* Marks what the initial state reaches; returns 1 when some reachable
   state has a handler (which may go anywhere). */
static int
reach(const flow__allocator *al, const flow__service *svc,
      unsigned char *seen)
{
  size_t n = svc->nstates, *stack = flow__calloc(al, n ? n : 1, sizeof *stack);
  size_t top = 0, init = state_index(svc, svc->initial);
  int anywhere = 0;
  if (stack == NULL || init == (size_t)-1) {
    flow__free(al, stack);
    memset(seen, 1, n); /* cannot tell: warn about nothing */
    return 1;
  }
  seen[init] = 1;
  stack[top++] = init;
  while (top > 0) {
    const flow__state *st = &svc->states[stack[--top]];
    for (size_t i = 0; i < st->non + st->nafter; i++) {
      const char *to;
      if (i < st->non) {
        const flow__trans *tr = &st->on[i];
        if (tr->handler != FLOW__NOREF)
          anywhere = 1;
        to = tr->target;
      } else {
        to = st->after[i - st->non].target;
      }
      size_t k = to ? state_index(svc, to) : (size_t)-1;
      if (k != (size_t)-1 && !seen[k]) {
        seen[k] = 1;
        stack[top++] = k;
      }
    }
  }
  flow__free(al, stack);
  return anywhere;
}

static void
check_reach(lint *l)
{
  const flow__service *svc = l->svc;
  unsigned char *seen =
      flow__calloc(&l->e->alloc, svc->nstates ? svc->nstates : 1, 1);
  if (seen == NULL) {
    l->oom = 1;
    return;
  }
  if (!reach(&l->e->alloc, svc, seen)) {
    for (size_t i = 0; i < svc->nstates; i++)
      if (!seen[i])
        warn(l, svc->states[i].line,
             "state '%s' cannot be reached: no event or timer leads to it "
             "from the initial state '%s' (add an event that goes there, or "
             "remove the state)",
             svc->states[i].name, svc->initial);
  }
  flow__free(&l->e->alloc, seen);
}

static void
check_stuck(lint *l)
{
  for (size_t i = 0; i < l->svc->nstates; i++) {
    const flow__state *st = &l->svc->states[i];
    if (!st->final && st->non == 0 && st->nafter == 0)
      warn(l, st->line,
           "state '%s' is not final but has no events and no timers, so a "
           "case that gets there is stuck (add `on`, `after`, or "
           "`final = true`)",
           st->name);
  }
}

static int
leaves(const flow__state *st, const flow__after *a)
{
  return a->target != NULL && strcmp(a->target, st->name) != 0;
}

static void
check_timers(lint *l)
{
  const flow__service *svc = l->svc;
  for (size_t i = 0; i < svc->nstates; i++) {
    const flow__state *st = &svc->states[i];
    for (size_t j = 0; j < st->nafter; j++) {
      const flow__after *a = &st->after[j];
      for (size_t k = 0; k < st->nafter; k++) {
        const flow__after *b = &st->after[k];
        if (k == j || a->dur.unit != b->dur.unit)
          continue;
        /* Report a pair once, at the later line. */
        if (a->dur.amount == b->dur.amount) {
          if (k < j)
            warn(l, a->line,
                 "after '%s' and after '%s' (line %d) in state '%s' fall "
                 "due at the same moment, so only one of them can take "
                 "effect (merge them or make one later)",
                 a->duration, b->duration, b->line, st->name);
        } else if (b->dur.amount < a->dur.amount && leaves(st, b))
          warn(l, a->line,
               "after '%s' in state '%s' can never fire: after '%s' (line "
               "%d) leaves the state for '%s' sooner, which cancels it "
               "(shorten it, or lengthen the other)",
               a->duration, st->name, b->duration, b->line, b->target);
      }
    }
    for (size_t j = 0; j < st->non; j++) {
      const flow__trans *tr = &st->on[j];
      if (strcmp(tr->event, "sla_warning") == 0 && svc->sla_warn == NULL)
        warn(l, tr->line,
             "state '%s' handles sla_warning, which never comes: the service "
             "sets no warning (add `warn = \"...\"` to `sla`)",
             st->name);
      if (strcmp(tr->event, "sla_breached") == 0 && svc->sla_within == NULL)
        warn(l, tr->line,
             "state '%s' handles sla_breached, which never comes: the "
             "service has no service level (add `sla = { within = \"...\" }`)",
             st->name);
    }
  }
}

/* Events the engine sends (a state's `after` event, a correlated
   message): a state that takes them without internal = true lets a
   person send them too; a message no state takes is always refused. */
static void
check_engine_events(lint *l)
{
  const flow__service *svc = l->svc;
  for (size_t i = 0; i < svc->nstates; i++) {
    const flow__state *st = &svc->states[i];
    for (size_t j = 0; j < st->nafter; j++) {
      const flow__after *a = &st->after[j];
      if (a->event == NULL)
        continue;
      /* (The loader refuses a timer event its state does not take.) */
      const flow__trans *tr = flow__state_trans(st, a->event);
      if (tr && !tr->internal)
        warn(l, tr->line,
             "'%s' in state '%s' comes from its timer; mark it `internal = "
             "true` so that no person can send it",
             a->event, st->name);
    }
  }
  for (size_t c = 0; c < svc->ncorrelate; c++) {
    const char *msg = svc->correlate[c].message;
    int taken = 0;
    for (size_t i = 0; i < svc->nstates; i++) {
      const flow__trans *tr = flow__state_trans(&svc->states[i], msg);
      if (tr == NULL)
        continue;
      taken = 1;
      if (!tr->internal)
        warn(l, tr->line,
             "'%s' in state '%s' is a correlated message; mark it `internal "
             "= true` so that no person can send it with flow signal",
             msg, svc->states[i].name);
    }
    if (!taken)
      warn(l, svc->correlate[c].line,
           "correlate names message '%s', which no state takes: every "
           "delivery would be an incident (add it to a state's `on`)",
           msg);
  }
}

static int
warning_cmp(const void *a, const void *b)
{
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  json_int_t lx = json_integer_value(json_object_get(x, "line"));
  json_int_t ly = json_integer_value(json_object_get(y, "line"));
  if (lx != ly)
    return lx < ly ? -1 : 1;
  return strcmp(json_string_value(json_object_get(x, "message")),
                json_string_value(json_object_get(y, "message")));
}

static json_t *
sorted(const flow__allocator *al, json_t *arr)
{
  size_t n = json_array_size(arr);
  json_t **v = flow__calloc(al, n ? n : 1, sizeof *v);
  json_t *out = json_array();
  if (v == NULL || out == NULL) {
    flow__free(al, v);
    json_decref(out);
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    v[i] = json_array_get(arr, i);
  qsort(v, n, sizeof *v, warning_cmp);
  for (size_t i = 0; i < n; i++)
    json_array_append(out, v[i]);
  flow__free(al, v);
  return out;
}

int
flow_service_lint(char **out, flow_engine *engine, const char *source,
                  size_t len, const char *chunkname)
{
  if (out)
    *out = NULL;
  if (engine == NULL)
    return FLOW_EMISUSE;
  if (out == NULL || source == NULL)
    return flow__engine_fail(engine, FLOW_EMISUSE,
                             "flow_service_lint: out or source is NULL");
  const char *name = chunkname ? chunkname : "service";
  flow__compiled *c;
  int rc = flow__engine_compile(engine, source, len, name, &c);
  if (rc != 0)
    return rc;
  const flow__service *svc = c->svc;
  lint l = { .e = engine, .svc = svc, .warnings = json_array() };
  if (l.warnings == NULL)
    l.oom = 1;
  if (!l.oom) {
    check_reach(&l);
    check_stuck(&l);
    check_timers(&l);
    check_engine_events(&l);
  }
  json_t *list = l.oom ? NULL : sorted(&engine->alloc, l.warnings);
  json_decref(l.warnings);
  if (list != NULL && l.more > 0) {
    json_t *last = json_array_get(list, json_array_size(list) - 1);
    char msg[128];
    snprintf(msg, sizeof msg,
             "%zu more warnings like these are not shown: fix these first",
             l.more);
    json_t *w = json_pack("{s:O, s:s}", "line", json_object_get(last, "line"),
                          "message", msg);
    if (w == NULL || json_array_append_new(list, w) != 0) {
      json_decref(list);
      list = NULL;
    }
  }
  flow__compiled_free(engine, c);
  if (list == NULL)
    return flow__engine_fail(engine, FLOW_ENOMEM, "out of memory");
  json_t *j = json_pack("{s:s, s:o}", "file", name, "warnings", list);
  rc = flow__engine_owned_json(engine, out, j);
  if (rc == 0)
    flow__err_clear(&engine->err);
  return rc;
}
