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

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script/script_inspect.h"
#include "script/script_lex.h"

/* ---- the checks --------------------------------------------------------- */

/* Warnings kept for one script (FLOW__MAX_WARNINGS): a 250-byte script
   can make millions (a table of timers shared by every state), and each is
   work and output. */

typedef struct lint {
  flow_engine *e;
  const flow__service *svc;
  flow__sandbox *sb; /* where svc's functions live */
  json_t *warnings;
  unsigned char *warned; /* per `on` entry (trans_slot): told to be
                            internal already */
  size_t *trans_base;    /* state i's entries start at trans_base[i] */
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
  size_t top = 0;
  int anywhere = 0;
  /* Every state an opening may enter; none known: cannot tell. */
  size_t ninit = svc->initial_fn != FLOW__NOREF ? svc->ninitial : 1;
  for (size_t i = 0; stack && i < ninit; i++) {
    size_t init = state_index(svc, svc->initial_fn != FLOW__NOREF
                                       ? svc->initial_states[i]
                                       : svc->initial);
    if (init == (size_t)-1 || seen[init])
      continue;
    seen[init] = 1;
    stack[top++] = init;
  }
  if (stack == NULL || top == 0) {
    flow__free(al, stack);
    memset(seen, 1, n); /* cannot tell: warn about nothing */
    return 1;
  }
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
             "from the initial state '%s'%s (add an event that goes there, "
             "or remove the state)",
             svc->states[i].name, svc->initial,
             svc->ninitial > 1 ? " or the others initial may choose" : "");
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
      if (strcmp(tr->event, "sla_warning") == 0 && !flow__sla_may(svc, 1))
        warn(l, tr->line,
             "state '%s' handles sla_warning, which never comes: the service "
             "sets no warning (add `warn = \"...\"` to `sla`)",
             st->name);
      if (strcmp(tr->event, "sla_breached") == 0 && !flow__sla_may(svc, 0))
        warn(l, tr->line,
             "state '%s' handles sla_breached, which never comes: the "
             "service has no service level (add `sla = { within = \"...\" }`)",
             st->name);
    }
  }
}

/* 1 when st's entry tr was already told to be internal; marks it told. */
static int
told_internal(lint *l, size_t state, const flow__trans *tr)
{
  if (l->warned == NULL)
    return 0;
  size_t k = l->trans_base[state] + (size_t)(tr - l->svc->states[state].on);
  int was = l->warned[k];
  l->warned[k] = 1;
  return was;
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
      if (tr && !tr->internal && !told_internal(l, i, tr))
        warn(l, tr->line,
             "'%s' in state '%s' comes from its timer; mark it `internal = "
             "true` so that no person can send it (or, if people send it "
             "too, give the timer an event of its own)",
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
      if (!tr->internal && !told_internal(l, i, tr))
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

/* ---- events the script names in its calls -------------------------------
 *
 * flow.after/flow.at send an event later, flow.call's reply and fail and
 * flow.task's done send one when the host answers or a person completes
 * the task.  The script's tokens say which, when they are written plainly
 * (flow__lua_event_uses); where they do not, nothing is said.  Where a
 * timer fires depends on where the case goes: a handler's plain `return
 * "name"`s say where it may go, one with no `return` of a value always
 * stays, and a handler that returns anything else is not followed.  So
 * every state named in a warning is one the script itself leads to.
 */

typedef struct use {
  flow__lua_event_use u;
  char name[FLOW__MAX_NAME + 1]; /* "" when the source does not say */
} use;

/* A function the loader kept for a state: where its code is. */
typedef struct site {
  size_t state;
  const flow__trans *tr; /* the `on` entry, or NULL for enter and exit */
  int exit;              /* 1: the state's exit hook */
  int first, last;
} site;

typedef struct script_events {
  lint *l;
  flow__lua_tokens tk;
  use *uses;
  size_t nuses, cap;
  site *sites;
  size_t nsites;
  size_t *succ, *succ_base; /* each state's next states, as the code says */
  int any_unknown;
} script_events;

static void
each_use(void *ctx, const flow__lua_event_use *u)
{
  script_events *se = ctx;
  if (se->l->oom)
    return;
  if (se->nuses == se->cap) {
    size_t cap = se->cap ? se->cap * 2 : 16;
    use *v = flow__realloc(&se->l->e->alloc, se->uses, cap * sizeof *v);
    if (v == NULL) {
      se->l->oom = 1;
      return;
    }
    se->uses = v;
    se->cap = cap;
  }
  use *x = &se->uses[se->nuses++];
  x->u = *u;
  x->name[0] = 0;
  if (u->name && u->len > 0 && u->len <= FLOW__MAX_NAME) {
    memcpy(x->name, u->name, u->len);
    x->name[u->len] = 0;
  }
  if (x->name[0] == 0)
    se->any_unknown = 1;
}

/* Collects the states a handler's lines return by name, each once. */
typedef struct found_states {
  const flow__service *svc;
  size_t *v;
  size_t n, cap;
} found_states;

static void
found_add(found_states *f, size_t k)
{
  for (size_t i = 0; i < f->n; i++)
    if (f->v[i] == k)
      return;
  if (f->n < f->cap)
    f->v[f->n++] = k;
}

static void
each_return(void *ctx, const char *text, size_t len)
{
  found_states *f = ctx;
  char name[FLOW__MAX_NAME + 1];
  if (len > FLOW__MAX_NAME)
    return;
  memcpy(name, text, len);
  name[len] = 0;
  size_t k = state_index(f->svc, name);
  if (k != (size_t)-1)
    found_add(f, k);
}

/* Where the `on` entry tr of state st may end: added to f. */
static void
trans_ends(script_events *se, size_t st, const flow__trans *tr,
           found_states *f)
{
  const flow__service *svc = se->l->svc;
  size_t stay = tr->target ? state_index(svc, tr->target) : st;
  int first, last, lit, bare, other;
  if (tr->handler == FLOW__NOREF) {
    if (stay != (size_t)-1)
      found_add(f, stay);
    return;
  }
  if (flow__sandbox_func_lines(se->l->sb, tr->handler, &first, &last) != 0)
    return;
  flow__lua_return_kinds(&se->tk, first, last, &lit, &bare, &other);
  if (lit == 0 && other == 0 && stay != (size_t)-1)
    found_add(f, stay); /* it never returns a state: it stays */
  else if (bare > 0 && stay != (size_t)-1)
    found_add(f, stay);
  flow__lua_literal_returns(&se->tk, first, last, each_return, f);
}

static int
build_succ(script_events *se)
{
  const flow__service *svc = se->l->svc;
  const flow__allocator *al = &se->l->e->alloc;
  size_t n = svc->nstates, total = 0;
  size_t *tmp = flow__calloc(al, n ? n : 1, sizeof *tmp);
  se->succ_base = flow__calloc(al, n + 1, sizeof *se->succ_base);
  se->succ = flow__calloc(al, 1, sizeof *se->succ);
  if (tmp == NULL || se->succ_base == NULL || se->succ == NULL) {
    flow__free(al, tmp);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    const flow__state *st = &svc->states[i];
    found_states f = { svc, tmp, 0, n };
    for (size_t j = 0; j < st->non; j++)
      trans_ends(se, i, &st->on[j], &f);
    for (size_t j = 0; j < st->nafter; j++) {
      size_t k = st->after[j].target ? state_index(svc, st->after[j].target)
                                     : (size_t)-1;
      if (k != (size_t)-1)
        found_add(&f, k);
    }
    size_t *v = flow__realloc(al, se->succ, (total + f.n + 1) * sizeof *v);
    if (v == NULL) {
      flow__free(al, tmp);
      return -1;
    }
    se->succ = v;
    memcpy(se->succ + total, f.v, f.n * sizeof *v);
    se->succ_base[i] = total;
    total += f.n;
  }
  se->succ_base[n] = total;
  flow__free(al, tmp);
  return 0;
}

static int
build_sites(script_events *se)
{
  const flow__service *svc = se->l->svc;
  size_t n = 0;
  for (size_t i = 0; i < svc->nstates; i++)
    n += svc->states[i].non + 2;
  se->sites = flow__calloc(&se->l->e->alloc, n ? n : 1, sizeof *se->sites);
  if (se->sites == NULL)
    return -1;
  for (size_t i = 0; i < svc->nstates; i++) {
    const flow__state *st = &svc->states[i];
    for (size_t j = 0; j < st->non + 2; j++) {
      site s = { i, NULL, 0, 0, 0 };
      int ref;
      if (j < st->non) {
        s.tr = &st->on[j];
        ref = s.tr->handler;
      } else {
        s.exit = j == st->non + 1;
        ref = s.exit ? st->exit : st->enter;
      }
      if (ref != FLOW__NOREF &&
          flow__sandbox_func_lines(se->l->sb, ref, &s.first, &s.last) == 0)
        se->sites[se->nsites++] = s;
    }
  }
  return 0;
}

static int
takes_anywhere(const flow__service *svc, const char *event)
{
  for (size_t i = 0; i < svc->nstates; i++)
    if (flow__state_trans(&svc->states[i], event))
      return 1;
  return 0;
}

static const char *
use_what(const use *x, char *buf, size_t len)
{
  if (x->u.opt)
    snprintf(buf, len, "%s's %s event '%s'", x->u.fn, x->u.opt, x->name);
  else
    snprintf(buf, len, "the %s event '%s'", x->u.fn, x->name);
  return buf;
}

/* Where an event comes from, for "'x' in state 's' comes from ...". */
static const char *
use_source(const use *x, char *buf, size_t len)
{
  if (x->u.opt == NULL)
    snprintf(buf, len, "a timer set with %s", x->u.fn);
  else
    snprintf(buf, len, "%s's %s", x->u.fn, x->u.opt);
  return buf;
}

/* An event a call names that no state takes: it can only be an incident. */
static void
check_untaken(script_events *se, const use *x)
{
  char what[160];
  const char *when = x->u.opt == NULL ? "when the timer fires"
                     : strcmp(x->u.opt, "done") == 0
                         ? "when the task is completed"
                         : "when the action answers";
  warn(se->l, x->u.line,
       "%s is taken by no state: %s, it raises an incident (add '%s' to the "
       "`on` of the state that waits for it)",
       use_what(x, what, sizeof what), when, x->name);
}

/* Marks in[] the states where a timer set by the code at x may fire:
   those its transition may end in, and for a kept timer every state the
   case can reach from them while open.  Returns 0, -1 when it cannot be
   told, -2 out of memory. */
static int
timer_states(script_events *se, const use *x, unsigned char *in)
{
  const flow__service *svc = se->l->svc;
  size_t n = svc->nstates;
  const site *best = NULL;
  int ambiguous = 0;
  for (size_t i = 0; i < se->nsites; i++) {
    const site *s = &se->sites[i];
    if (x->u.line < s->first || x->u.line > s->last)
      continue;
    if (best == NULL || s->last - s->first < best->last - best->first) {
      best = s;
      ambiguous = 0;
    } else if (s->last - s->first == best->last - best->first) {
      ambiguous = 1;
    }
  }
  if (best == NULL)
    return -1; /* in no handler or hook: a helper, or code at load */
  /* Two one-line functions on one line cannot be told apart; the same
     function kept twice (a local used by two events) can: union them. */
  if (ambiguous && best->first == best->last)
    return -1;
  memset(in, 0, n);
  size_t *tmp = flow__calloc(&se->l->e->alloc, n ? n : 1, sizeof *tmp);
  if (tmp == NULL)
    return -2;
  found_states f = { svc, tmp, 0, n };
  for (size_t i = 0; i < se->nsites; i++) {
    const site *s = &se->sites[i];
    if (s->first != best->first || s->last != best->last)
      continue;
    if (s->tr)
      trans_ends(se, s->state, s->tr, &f);
    else if (!s->exit)
      found_add(&f, s->state); /* enter: the transition ends here */
    else
      for (size_t k = se->succ_base[s->state];
           k < se->succ_base[s->state + 1]; k++)
        if (se->succ[k] != s->state)
          found_add(&f, se->succ[k]);
  }
  for (size_t i = 0; i < f.n; i++)
    in[f.v[i]] = 1;
  size_t nfound = f.n;
  if (x->u.keep == 1) {
    /* Kept: wherever the case can go from there while it is open. */
    size_t top = 0;
    for (size_t i = 0; i < f.n; i++)
      tmp[top++] = f.v[i];
    while (top > 0) {
      size_t k = tmp[--top];
      if (svc->states[k].final)
        continue;
      for (size_t e = se->succ_base[k]; e < se->succ_base[k + 1]; e++)
        if (!in[se->succ[e]]) {
          in[se->succ[e]] = 1;
          tmp[top++] = se->succ[e];
        }
    }
  }
  flow__free(&se->l->e->alloc, tmp);
  return nfound > 0 ? 0 : -1;
}

static void
check_timer_use(script_events *se, const use *x, unsigned char *in)
{
  const flow__service *svc = se->l->svc;
  int rc = timer_states(se, x, in);
  if (rc == -2) {
    se->l->oom = 1;
    return;
  }
  if (rc != 0)
    return;
  char list[512];
  size_t len = 0, bad = 0;
  list[0] = 0;
  for (size_t i = 0; i < svc->nstates; i++) {
    const flow__state *st = &svc->states[i];
    if (!in[i] || st->final || flow__state_trans(st, x->name))
      continue;
    if (len < sizeof list - 80) {
      int w = snprintf(list + len, sizeof list - len, "%s'%s'",
                       bad ? ", " : "", st->name);
      if (w > 0)
        len += (size_t)w;
    } else if (len < sizeof list - 5) {
      snprintf(list + len, sizeof list - len, ", ...");
      len = sizeof list;
    }
    bad++;
  }
  if (bad == 0)
    return;
  if (x->u.keep == 1)
    warn(se->l, x->u.line,
         "%s sets a kept timer for '%s' (keep = true), but %s %s, which a "
         "case can reach after it is set, %s not take '%s': if it fires "
         "there it raises an incident (add '%s' to %s `on`, or set the "
         "timer without keep)",
         x->u.fn, x->name, bad > 1 ? "states" : "state", list,
         bad > 1 ? "do" : "does", x->name, x->name,
         bad > 1 ? "their" : "its");
  else
    warn(se->l, x->u.line,
         "%s sets a timer for '%s' that fires in %s %s, which %s not take "
         "it: when it fires it raises an incident (add '%s' to %s `on`, or "
         "pass { keep = true } if it is meant for a later state)",
         x->u.fn, x->name, bad > 1 ? "states" : "state", list,
         bad > 1 ? "do" : "does", x->name, bad > 1 ? "their" : "its");
}

/* An event only the engine sends, taken without internal = true. */
static void
check_use_internal(script_events *se, const use *x)
{
  const flow__service *svc = se->l->svc;
  char what[160];
  for (size_t i = 0; i < svc->nstates; i++) {
    const flow__trans *tr = flow__state_trans(&svc->states[i], x->name);
    if (tr == NULL || tr->internal || told_internal(se->l, i, tr))
      continue;
    warn(se->l, tr->line,
         "'%s' in state '%s' comes from %s (line %d); mark it `internal = "
         "true` so that no person can send it (or, if people send it too, "
         "give that its own event)",
         x->name, svc->states[i].name, use_source(x, what, sizeof what),
         x->u.line);
  }
}

/* Is event sent by anything this service says: a state's `after`, a
   correlated message, the service level, a call of the script? */
static int
sent_by_engine(const script_events *se, const char *event)
{
  const flow__service *svc = se->l->svc;
  if (strcmp(event, "sla_warning") == 0 || strcmp(event, "sla_breached") == 0)
    return 1; /* check_timers says when they never come */
  for (size_t i = 0; i < svc->nstates; i++)
    for (size_t j = 0; j < svc->states[i].nafter; j++)
      if (svc->states[i].after[j].event &&
          strcmp(svc->states[i].after[j].event, event) == 0)
        return 1;
  for (size_t c = 0; c < svc->ncorrelate; c++)
    if (strcmp(svc->correlate[c].message, event) == 0)
      return 1;
  for (size_t u = 0; u < se->nuses; u++)
    if (strcmp(se->uses[u].name, event) == 0)
      return 1;
  return 0;
}

/* ---- flow.NAME and flow.sla.NAME ---------------------------------------- */

typedef struct flow_names {
  lint *l;
  int restarts;        /* flow.sla.restart is used: it may start a level */
  int stops[8];        /* lines of flow.sla.pause and resume, the first few */
  size_t nstops;
} flow_names;

static void
each_flow_name(void *ctx, const char *table, const flow__token *t)
{
  flow_names *fn = ctx;
  char name[65];
  if (t->len >= sizeof name)
    return;
  memcpy(name, t->p, t->len);
  name[t->len] = 0;
  const char *closest;
  if (!flow__sandbox_has_name(table, name, &closest)) {
    char hint[96] = "";
    if (closest)
      snprintf(hint, sizeof hint, " (did you mean %s.%s?)", table, closest);
    warn(fn->l, t->line, "%s has no '%s'%s: this line fails when it runs",
         table, name, hint);
  } else if (strcmp(table, "flow.sla") == 0) {
    if (strcmp(name, "restart") == 0)
      fn->restarts = 1;
    else if (fn->nstops < sizeof fn->stops / sizeof *fn->stops)
      fn->stops[fn->nstops++] = t->line;
  }
}

/* Misspelt names, and a clock stopped in a service that has none. */
static void
check_flow_names(lint *l, const flow__lua_tokens *tk)
{
  flow_names fn = { l, 0, { 0 }, 0 };
  flow__lua_flow_names(tk, each_flow_name, &fn);
  const flow__service *svc = l->svc;
  int any = svc->sla.set || fn.restarts;
  for (size_t i = 0; i < svc->nstates && !any; i++)
    any = svc->states[i].sla.set;
  for (size_t i = 0; i < fn.nstops && !any; i++)
    warn(l, fn.stops[i], "flow.sla.pause and flow.sla.resume do nothing "
         "here: the service has no service level (add sla = { within = "
         "\"...\" } to the service or to a state)");
}

static void
check_script_events(lint *l)
{
  const flow__service *svc = l->svc;
  script_events se;
  memset(&se, 0, sizeof se);
  se.l = l;
  if (svc->source == NULL)
    return;
  if (flow__lua_lex(&se.tk, &l->e->alloc, svc->source, svc->source_len) !=
          0 ||
      build_sites(&se) != 0 || build_succ(&se) != 0) {
    l->oom = 1;
    goto done;
  }
  check_flow_names(l, &se.tk);
  flow__lua_event_uses(&se.tk, 1, INT_MAX, each_use, &se);
  unsigned char *in = flow__calloc(&l->e->alloc,
                                   svc->nstates ? svc->nstates : 1, 1);
  if (in == NULL)
    l->oom = 1;
  for (size_t u = 0; u < se.nuses && !l->oom; u++) {
    const use *x = &se.uses[u];
    if (x->name[0] == 0)
      continue;
    if (!takes_anywhere(svc, x->name)) {
      check_untaken(&se, x);
      continue;
    }
    check_use_internal(&se, x);
    if (x->u.opt == NULL && x->u.keep >= 0)
      check_timer_use(&se, x, in);
  }
  flow__free(&l->e->alloc, in);
  /* internal = true on an event nothing sends: no one can ever send it. */
  for (size_t i = 0; i < svc->nstates && !l->oom && !se.any_unknown; i++) {
    const flow__state *st = &svc->states[i];
    for (size_t j = 0; j < st->non; j++)
      if (st->on[j].internal && !sent_by_engine(&se, st->on[j].event))
        warn(l, st->on[j].line,
             "'%s' in state '%s' is internal = true, but nothing in the "
             "service sends it (no timer, flow.call reply or fail, task "
             "done or correlated message names it), so it can never happen "
             "(send it from one, or drop internal = true; an event another "
             "case sends with flow.signal takes roles instead, like roles "
             "= { \"system\" })",
             st->on[j].event, st->name);
  }
done:
  flow__lua_tokens_free(&se.tk);
  flow__free(&l->e->alloc, se.uses);
  flow__free(&l->e->alloc, se.sites);
  flow__free(&l->e->alloc, se.succ);
  flow__free(&l->e->alloc, se.succ_base);
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
  lint l = { .e = engine, .svc = svc, .sb = c->sb,
             .warnings = json_array() };
  size_t ntrans = 0;
  for (size_t i = 0; i < svc->nstates; i++)
    ntrans += svc->states[i].non;
  l.trans_base = flow__calloc(&engine->alloc, svc->nstates + 1,
                              sizeof *l.trans_base);
  l.warned = flow__calloc(&engine->alloc, ntrans ? ntrans : 1, 1);
  if (l.warnings == NULL || l.trans_base == NULL || l.warned == NULL)
    l.oom = 1;
  for (size_t i = 0, k = 0; !l.oom && i < svc->nstates; i++) {
    l.trans_base[i] = k;
    k += svc->states[i].non;
  }
  if (!l.oom) {
    if (svc->initial_fn != FLOW__NOREF && svc->ninitial == 0)
      warn(&l, svc->initial_line,
           "initial is a function and flow check cannot tell which states "
           "it returns, so it checks no reachability: list them with "
           "`initial_states = { \"...\", ... }`");
    check_reach(&l);
    check_stuck(&l);
    check_timers(&l);
    check_engine_events(&l);
    check_script_events(&l);
  }
  flow__free(&engine->alloc, l.trans_base);
  flow__free(&engine->alloc, l.warned);
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
