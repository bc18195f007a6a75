/*
 * Cases: opening and applying events -- the transition.  Reading cases back
 * is engine_case_read.c, actors are engine_actor.c.
 *
 * A transition locks its case from the moment it reads it until it
 * commits (store.h: case_lock), so two processes signalling the same case
 * cannot lose an update.  Inside the lock the handler runs in the sandbox on a
 * copy of the data, the result is validated, and the case row, one history
 * row and the queued actions are written together.  Every refusal rolls
 * back, so the database is exactly as it was.
 */
#include "engine/engine.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---------------------------------------------------- */

int
flow__parse_id(flow_engine *e, const char *text, const char *what,
               int64_t *out)
{
  if (text == NULL)
    return flow__engine_fail(e, FLOW_EMISUSE, "%s id is NULL", what);
  const char *p = text;
  int64_t v = 0;
  if (*p < '1' || *p > '9')
    goto bad;
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || v > (INT64_MAX - (*p - '0')) / 10)
      goto bad;
    v = v * 10 + (*p - '0');
  }
  *out = v;
  return 0;
bad:
  /* Echo the id only when it is plain text: the message may end up in
     JSON, which cannot carry arbitrary bytes. */
  for (p = text; *p && p - text < 40; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
      return flow__engine_fail(e, FLOW_EINVAL,
                               "that is not %s %s id (%s ids are whole "
                               "numbers like 42)",
                               strchr("aeiou", what[0]) ? "an" : "a", what,
                               what);
  return flow__engine_fail(e, FLOW_EINVAL,
                           "'%.40s' is not %s %s id (%s ids are whole "
                           "numbers like 42)",
                           text, strchr("aeiou", what[0]) ? "an" : "a", what,
                           what);
}

int
flow__case_parse_id(flow_engine *e, const char *text, int64_t *out)
{
  return flow__parse_id(e, text, "case", out);
}

/* splitmix64: a well-mixed seed from the case id and opening time. */
static uint64_t
case_seed(int64_t id, int64_t opened_at)
{
  uint64_t z = (uint64_t)id * 0x9E3779B97F4A7C15ull ^ (uint64_t)opened_at;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static char *
state_list(const flow__service *svc, char *buf, size_t len)
{
  flow__join j;
  flow__join_init(&j, buf, len);
  for (size_t i = 0; i < svc->nstates; i++)
    flow__join_add(&j, ", ", svc->states[i].name);
  return buf;
}

static char *
event_list(const flow__state *st, char *buf, size_t len)
{
  flow__join j;
  flow__join_init(&j, buf, len);
  if (st->non == 0)
    flow__join_text(&j, "no events");
  for (size_t i = 0; i < st->non; i++)
    flow__join_add(&j, ", ", st->on[i].event);
  return buf;
}

/* ---- the transition --------------------------------------------------- */

/*
 * What one transition needs.  `row` is the case before (for an opening: a
 * row with seq 0 and the initial state), `data` its data (owned).
 */
typedef struct transition {
  flow_engine *e;
  flow__compiled *comp;     /* the service version and its sandbox */
  const flow__service *svc; /* comp->svc */
  flow__case_row *row;
  json_t *data;             /* owned; NULL: not parsed yet, see row->data */
  const char *event;
  json_t *payload;
  const flow_actor *actor;
  const flow__trans *trans; /* the `on` entry, or NULL */
  const char *target;       /* forced target (an `after` timer), or NULL */
  json_t *origin;           /* ev.action, ev.task, ev.message, or NULL */
  const char *origin_key;   /* "action", "task" or "message" */
  const char *cause;        /* "call", "timer", "action", "task" or
                               "message", for notes */
  int opening;
  int checked;              /* data passed the field checks and no script
                               has changed it since */
  int64_t now;
  flow__sla_start sla;      /* a service level that starts, if any */
  /* results */
  const flow__state *next;
  json_t *calls;
  flow__buf *datatext; /* the data as persisted, for the result */
} transition;

/* Runs guard, handler, exit and enter hooks as the transition needs. */
/* The service level that starts when the case goes from cur to next (an
   opening enters next): the state's own, else at opening the service's. */
static void
pick_sla(transition *t, const flow__state *cur, const flow__state *next)
{
  const flow__sla *src = NULL;
  if (next->final)
    src = NULL;
  else if ((t->opening || next != cur) && next->sla.set)
    src = &next->sla;
  else if (t->opening && t->svc->sla.set)
    src = &t->svc->sla;
  flow__sla_start_init(&t->sla, src);
}

/* An initial function's answer: the state the opening enters. */
static int
initial_state(transition *t, const char *name, const flow__state **out)
{
  flow_engine *e = t->e;
  const flow__service *svc = t->svc;
  char states[512];
  if (name == NULL)
    return flow__engine_fail(e, FLOW_ESTATE,
                             "%s:%d: initial returned nothing: it must return "
                             "the name of the first state (states: %s)",
                             svc->chunkname, svc->initial_line,
                             state_list(svc, states, sizeof states));
  const flow__state *st = flow__service_state(svc, name);
  int listed = svc->ninitial == 0;
  for (size_t i = 0; st && i < svc->ninitial; i++)
    listed |= strcmp(svc->initial_states[i], name) == 0;
  if (st == NULL || !listed) {
    flow__join j;
    flow__join_init(&j, states, sizeof states);
    for (size_t i = 0; i < svc->ninitial; i++)
      flow__join_add(&j, ", ", svc->initial_states[i]);
    if (svc->ninitial == 0)
      state_list(svc, states, sizeof states);
    return flow__engine_fail(
        e, FLOW_ESTATE,
        "%s:%d: initial returned '%.60s', which is %s (it may return: %s)",
        svc->chunkname, svc->initial_line, name,
        st ? "not in initial_states" : "not a state of the service", states);
  }
  *out = st;
  return 0;
}

static int
run_scripts(transition *t)
{
  flow_engine *e = t->e;
  const flow__service *svc = t->svc;
  int pick_first = t->opening && svc->initial_fn != FLOW__NOREF;
  const flow__state *cur =
      pick_first ? NULL : flow__service_state(svc, t->row->state);
  const flow__trans *tr = t->trans;
  char *ret = NULL;
  int rc;
  e->refused_at[0] = 0;

  if (cur == NULL && !pick_first)
    return flow__engine_fail(e, FLOW_ESTATE,
                             "case %lld is in state '%s', which version %lld "
                             "of %s does not have",
                             (long long)t->row->id, t->row->state,
                             (long long)svc->version, svc->name);

  /* Decide the target without Lua when no function is involved. */
  const flow__state *next = cur;
  if (pick_first)
    ; /* the initial function decides, in the run */
  else if (t->target)
    next = flow__service_state(svc, t->target);
  else if (tr && tr->target && tr->handler == FLOW__NOREF)
    next = flow__service_state(svc, tr->target);
  if (next == NULL && !pick_first)
    return flow__engine_fail(e, FLOW_ESTATE,
                             "%s: state '%s' does not exist in version %lld",
                             svc->chunkname, t->target ? t->target : "?",
                             (long long)svc->version);
  int needs_lua;
  if (pick_first)
    needs_lua = 1;
  else if (t->opening)
    needs_lua = cur->enter != FLOW__NOREF;
  else
    needs_lua = (tr && (tr->guard != FLOW__NOREF ||
                        tr->handler != FLOW__NOREF)) ||
                (next != cur &&
                 (cur->exit != FLOW__NOREF || next->enter != FLOW__NOREF));
  if (!pick_first) {
    pick_sla(t, cur, next);
    needs_lua |= flow__sla_needs_lua(&t->sla);
  }
  if (!needs_lua) {
    /* The data as stored goes on unchanged, but persist validates and
       prints a Jansson value. */
    flow__err serr;
    flow__err_clear(&serr);
    if (t->data == NULL && flow__case_stored_data(t->row, &t->data, &serr) != 0)
      return flow__engine_fail_err(e, &serr);
    t->next = next;
    return 0;
  }

  flow__case_view cv = {
    NULL,          t->row->service, t->row->version,      t->row->state,
    "open",        t->row->opened_at, t->row->updated_at, t->row->due_at,
    t->row->seq,   (uint64_t)t->row->seed + (uint64_t)t->row->seq,
  };
  char idbuf[24];
  snprintf(idbuf, sizeof idbuf, "%lld", (long long)t->row->id);
  cv.id = idbuf;
  flow__event_view ev = { .name = t->event,
                          .payload = t->payload,
                          .actor = t->actor,
                          .at = t->now,
                          .origin_key = t->origin ? t->origin_key : NULL,
                          .origin = t->origin };
  flow__err err;
  flow__err_clear(&err);
  flow__sandbox *sb = t->comp->sb;

  /* Stored data goes from its text straight into the script's table. */
  rc = t->data ? flow__run_begin(sb, svc, &cv, t->data, &ev, &err)
               : flow__run_begin_text(sb, svc, &cv, t->row->data, &ev, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);

  if (t->opening) {
    if (pick_first) {
      if ((rc = flow__run_invoke_text(sb, svc->initial_fn, "initial",
                                      "the first state's name", &ret,
                                      &err)) != 0)
        goto fail;
      rc = initial_state(t, ret, &cur);
      flow__free(&e->alloc, ret);
      ret = NULL;
      if (rc != 0) {
        flow__run_abort(sb);
        return rc;
      }
      next = cur;
      t->row->state = (char *)cur->name; /* borrowed, as svc->initial is */
      flow__run_set_state(sb, cur->name);
      pick_sla(t, cur, next);
    }
    if ((rc = flow__run_invoke(sb, cur->enter, NULL, NULL, &err)) != 0)
      goto fail;
  } else {
    if (tr && tr->guard != FLOW__NOREF) {
      int truth = 0;
      if ((rc = flow__run_invoke(sb, tr->guard, NULL, &truth, &err)) != 0)
        goto fail;
      if (!truth) {
        flow__run_abort(sb);
        return flow__engine_fail(e, FLOW_EREFUSED,
                                 "%s:%d: event '%s' was refused by its guard "
                                 "in state '%s'",
                                 svc->chunkname, tr->line, t->event,
                                 cur->name);
      }
    }
    if (tr && tr->handler != FLOW__NOREF) {
      if ((rc = flow__run_invoke(sb, tr->handler, &ret, NULL, &err)) != 0)
        goto fail;
      const char *target = ret ? ret : tr->target;
      next = target ? flow__service_state(svc, target) : cur;
      if (next == NULL) {
        char states[512];
        flow__run_abort(sb);
        rc = flow__engine_fail(
            e, FLOW_ESTATE,
            "%s:%d: the handler for '%s' in state '%s' returned '%.60s', "
            "which is not a state of %s (states: %s)",
            svc->chunkname, tr->line, t->event, cur->name, target, svc->name,
            state_list(svc, states, sizeof states));
        flow__free(&e->alloc, ret);
        return rc;
      }
      flow__free(&e->alloc, ret);
      ret = NULL;
    }
    if (next != cur) {
      if (cur->exit != FLOW__NOREF &&
          (rc = flow__run_invoke(sb, cur->exit, NULL, NULL, &err)) != 0)
        goto fail;
      flow__run_set_state(sb, next->name);
      if (next->enter != FLOW__NOREF &&
          (rc = flow__run_invoke(sb, next->enter, NULL, NULL, &err)) != 0)
        goto fail;
    }
  }

  if (!t->opening && next != cur)
    pick_sla(t, cur, next);
  if ((rc = flow__sla_compute(e, sb, svc, &t->sla, &err)) != 0)
    goto fail;
  json_t *newdata = NULL, *calls = NULL;
  if ((rc = flow__run_end(sb, &newdata, &calls, &err)) != 0)
    goto fail;
  json_decref(t->data);
  t->data = newdata;
  t->checked = 0;
  t->calls = calls;
  t->next = next;
  return 0;
fail:
  flow__free(&e->alloc, ret);
  if (rc == FLOW_EREFUSED)
    snprintf(e->refused_at, sizeof e->refused_at, "%s",
             flow__sandbox_refused_at(sb));
  flow__run_abort(sb);
  return flow__engine_fail_err(e, &err);
}

/* The key the host sees for request c, the n-th of the transition that
   row records: the script's, or one that names the request (case,
   transition, place), the same at every attempt and restart. */
static void
request_key(char *buf, size_t len, json_t *c, const flow__case_row *row,
            int n)
{
  const char *given = json_string_value(json_object_get(c, "key"));
  if (given)
    snprintf(buf, len, "%s", given);
  else
    snprintf(buf, len, "%lld-%lld-%d", (long long)row->id,
             (long long)row->seq, n);
}

/* The notes a persisted transition leaves for the subscribers, told once
   its transaction commits: opened or transition, closed, and each action
   it asked for. */
static void
note_transition(const transition *t, const char *from, json_t *calls)
{
  flow_engine *e = t->e;
  const flow__case_row *row = t->row;
  char id[24], at[32];
  snprintf(id, sizeof id, "%lld", (long long)row->id);
  flow__time_format(at, sizeof at, t->now);
  const char *who = t->actor && t->actor->id ? t->actor->id : "anonymous";
  json_t *n = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:s, s:s}",
                        "type", t->opening ? "opened" : "transition", "case",
                        id, "service", row->service, "version",
                        (json_int_t)row->version, "event", t->event, "to",
                        t->next->name, "seq", (json_int_t)row->seq, "at", at,
                        "actor", who, "cause", t->cause);
  if (n && from)
    json_object_set_new(n, "from", json_string(from));
  flow__engine_note(e, n);
  if (t->next->final)
    flow__engine_note(e, json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s}",
                                   "type", "closed", "case", id, "service",
                                   row->service, "state", t->next->name,
                                   "seq", (json_int_t)row->seq, "at", at,
                                   "cause", t->cause));
  int nact = 0;
  for (size_t i = 0; calls && i < json_array_size(calls); i++) {
    json_t *c = json_array_get(calls, i);
    const char *action = json_string_value(json_object_get(c, "action"));
    if (action == NULL)
      continue;
    char key[FLOW__MAX_ACTION_KEY + 1];
    request_key(key, sizeof key, c, row, nact++);
    flow__engine_note(e, json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s}",
                                   "type", "action_requested", "case", id,
                                   "action", action, "key", key, "seq",
                                   (json_int_t)row->seq, "at", at, "cause",
                                   t->cause));
  }
}

/* Inserts one timer; due computed on the engine calendar. */
static int
add_timer(flow_engine *e, int64_t case_id, int64_t set_seq, int64_t due,
          const char *kind, const char *event, json_t *payload,
          const char *target, const char *state, flow__err *err)
{
  char *text = flow__json_owned(&e->alloc, payload);
  if (text == NULL)
    return flow__err_set(err, FLOW_ENOMEM, "out of memory setting a timer");
  flow__timer_row r = { 0,    case_id, due,    kind,      event,
                        text, target,  state, "pending", NULL,  set_seq };
  int rc = e->vt->timer_insert(e->store, &r, err);
  flow_free(text);
  e->next_due = INT64_MIN;
  return rc;
}

/* The `after` entries of the state just entered. */
static int
add_state_timers(transition *t, flow__err *err)
{
  flow_engine *e = t->e;
  const flow__state *st = t->next;
  for (size_t i = 0; i < st->nafter; i++) {
    const flow__after *a = &st->after[i];
    int64_t due;
    if (flow__calendar_add(&e->cal, t->now, &a->dur, &due) != 0)
      return flow__err_set(err, FLOW_EINVAL,
                           "%s:%d: the timer '%s' in state '%s' overflows",
                           t->svc->chunkname, a->line, a->duration, st->name);
    json_t *payload = a->event ? (a->payload ? json_incref(a->payload)
                                             : json_object())
                               : json_pack("{s:s}", "after", a->duration);
    int rc = add_timer(e, t->row->id, t->row->seq, due,
                       a->event ? "timer" : "after",
                       a->event ? a->event : "after", payload, a->target,
                       st->name, err);
    json_decref(payload);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* Timers a handler asked for with flow.after / flow.at. */
static int
add_requested_timer(transition *t, json_t *req, flow__err *err)
{
  flow_engine *e = t->e;
  const char *event = json_string_value(json_object_get(req, "event"));
  const char *after = json_string_value(json_object_get(req, "after"));
  const char *at = json_string_value(json_object_get(req, "at"));
  int keep = json_is_true(json_object_get(req, "keep"));
  json_t *payload = json_object_get(req, "payload");
  int64_t due;
  if (event == NULL)
    return flow__err_set(err, FLOW_ESCRIPT, "%s: a timer needs an event",
                         t->svc->chunkname);
  if (after) {
    flow__duration d;
    if (flow__duration_parse(after, &d, err) != 0)
      return flow__err_set(err, FLOW_ESCRIPT, "%s: flow.after: %s",
                           t->svc->chunkname, err->msg);
    if (flow__calendar_add(&e->cal, t->now, &d, &due) != 0)
      return flow__err_set(err, FLOW_ESCRIPT, "%s: flow.after('%s') overflows",
                           t->svc->chunkname, after);
  } else if (at == NULL || flow__time_parse(at, &due) != 0) {
    return flow__err_set(err, FLOW_ESCRIPT,
                         "%s: flow.at needs a time with an offset, like "
                         "\"2026-12-01T09:00:00Z\"",
                         t->svc->chunkname);
  }
  json_t *p = payload ? json_incref(payload) : json_object();
  int rc = add_timer(e, t->row->id, t->row->seq, due, "timer", event, p,
                     NULL, keep ? NULL : t->next->name, err);
  json_decref(p);
  return rc;
}

/*
 * The service's validate function, after the built-in checks gave
 * builtin (0 or FLOW_EDATA, its message in err): run when the case opens
 * and whenever the data changed (data the case already holds was
 * accepted, and a rule that reads flow.now() must not refuse a timer
 * later).  A refusal names every field, the built-in problems first; a
 * function that throws on data the built-in checks refused already is
 * not reported (it was given data of the wrong shape).
 */
static int
check_rules(transition *t, int builtin, flow__err *err)
{
  flow_engine *e = t->e;
  const flow__service *svc = t->svc;
  if (!FLOW__HAS_VALIDATE(svc) ||
      (!t->opening && strcmp(t->datatext->p, t->row->data) == 0))
    return builtin ? flow__engine_fail(e, builtin, "%s", err->msg) : 0;
  json_t *rules = NULL;
  flow__err verr;
  flow__err_clear(&verr);
  int rc = flow__sandbox_validate(t->comp->sb, svc, t->data, t->now, &rules,
                                  &verr);
  if (rc != 0 && builtin == 0)
    return flow__engine_fail_err(e, &verr);
  if (rules == NULL)
    return builtin ? flow__engine_fail(e, builtin, "%s", err->msg) : 0;
  /* Once more with the rules, for one message naming every field. */
  rc = flow__fields_validate_rules(svc, t->data, flow__sandbox_match,
                                   t->comp->sb, rules, err);
  json_decref(rules);
  return flow__engine_fail(e, rc ? rc : FLOW_EDATA, "%s", err->msg);
}

/* The values of the fields the database indexes, as cases.keys holds
   them (compact JSON, sorted keys), or NULL when data has none; and
   which of them differ from oldkeys (the row's, NULL when it had none),
   as flow__case_row.keys_changed says. */
static int
case_keys(flow_engine *e, json_t *data, const char *oldkeys, char **out,
          uint64_t *changed, flow__err *err)
{
  *out = NULL;
  *changed = 0;
  const char *const *names;
  size_t n;
  int rc = e->vt->key_fields(e->store, &names, &n, err);
  if (rc != 0 || n == 0)
    return rc;
  json_t *k = json_object();
  if (k == NULL)
    return flow__err_set(err, FLOW_ENOMEM, "out of memory saving case");
  for (size_t i = 0; i < n; i++) {
    json_t *v = json_object_get(data, names[i]);
    if (v && json_object_set(k, names[i], v) != 0) {
      json_decref(k);
      return flow__err_set(err, FLOW_ENOMEM, "out of memory saving case");
    }
  }
  if (json_object_size(k) > 0) {
    flow__buf b;
    flow__buf_init(&b, &e->alloc);
    if (flow__json_dump(k, &b) != 0 ||
        (*out = flow__strdup(&e->alloc, flow__buf_str(&b))) == NULL)
      rc = flow__err_set(err, FLOW_ENOMEM, "out of memory saving case");
    flow__buf_free(&b);
  }
  /* Same text, same values (both are printed the one way). */
  int same = (oldkeys == NULL) == (*out == NULL) &&
             (oldkeys == NULL || strcmp(oldkeys, *out) == 0);
  if (rc == 0 && !same) {
    json_t *old = oldkeys ? json_loads(oldkeys, 0, NULL) : NULL;
    for (size_t i = 0; i < n; i++) {
      json_t *a = old ? json_object_get(old, names[i]) : NULL;
      json_t *b = json_object_get(k, names[i]);
      if ((a == NULL) != (b == NULL) || (a && !json_equal(a, b)))
        *changed |= (uint64_t)1 << (i < 63 ? i : 63);
    }
    if (oldkeys && old == NULL)
      *changed = UINT64_MAX; /* unreadable: write them all */
    json_decref(old);
  }
  json_decref(k);
  return rc;
}

/* flow.signal: each case it names must exist (before anything is
   written, so that the refusal names the line and changes nothing). */
static int
check_signals(transition *t)
{
  flow_engine *e = t->e;
  for (size_t i = 0; t->calls && i < json_array_size(t->calls); i++) {
    json_t *c = json_array_get(t->calls, i);
    const char *id = json_string_value(json_object_get(c, "signal_case"));
    if (id == NULL)
      continue;
    flow__err err;
    flow__err_clear(&err);
    flow__case_row row;
    int rc = e->vt->case_get(e->store, strtoll(id, NULL, 10), &row, &err);
    if (rc == FLOW_ENOTFOUND)
      return flow__engine_fail(
          e, FLOW_ENOTFOUND, "%s:%d: flow.signal(%s, '%s'): there is no case "
          "%s (a case opened by flow.open in the same step can be signalled "
          "from its next one)",
          t->svc->chunkname,
          (int)json_integer_value(json_object_get(c, "line")), id,
          json_string_value(json_object_get(c, "event")), id);
    if (rc != 0)
      return flow__engine_fail_err(e, &err);
    flow__case_row_clear(&e->alloc, &row);
  }
  return 0;
}

/* Validates, then writes case, history, timers and actions; in a txn. */
static int
persist(transition *t)
{
  flow_engine *e = t->e;
  flow__err err;
  flow__err_clear(&err);
  int rc = t->checked ? 0
                      : flow__fields_validate(t->svc, t->data,
                                              flow__sandbox_match,
                                              t->comp->sb, &err);
  if (rc != 0 && rc != FLOW_EDATA)
    return flow__engine_fail(e, rc, "%s", err.msg);

  flow__buf payload, actor;
  flow__buf *datatext = t->datatext;
  flow__buf_init(&payload, &e->alloc);
  flow__buf_init(&actor, &e->alloc);
  flow__actor_text(&actor, t->actor);
  if (flow__json_dump(t->data, datatext) != 0 ||
      flow__json_dump(t->payload, &payload) != 0 || actor.oom) {
    rc = flow__engine_fail(e, FLOW_ENOMEM, "out of memory saving case");
    goto done;
  }
  if ((rc = check_rules(t, rc, &err)) != 0)
    goto done;
  if (datatext->len > FLOW__MAX_DOCUMENT) {
    rc = flow__engine_fail(e, FLOW_EDATA,
                           "case data would be %zu bytes; the most a case "
                           "holds is %d KiB (keep large content in the "
                           "host's store and put its reference in the case)",
                           datatext->len, FLOW__MAX_DOCUMENT / 1024);
    goto done;
  }

  flow__case_row *row = t->row;
  /* Refusals come before the first write. */
  if (row->seq >= FLOW__MAX_CASE_SEQ) {
    rc = flow__engine_fail(e, FLOW_ELIMIT,
                           "case %lld has had %d events, the most one case "
                           "keeps: close it and open a new case for what "
                           "follows",
                           (long long)row->id, FLOW__MAX_CASE_SEQ);
    goto done;
  }
  if ((rc = check_signals(t)) != 0)
    goto done;
  if (t->svc->ncorrelate &&
      (rc = flow__correlate_check(e, t->svc, row,
                                  t->opening ? NULL : row->data, t->data,
                                  &err)) != 0) {
    flow__engine_fail_err(e, &err);
    goto done;
  }
  const flow__state *cur = t->opening ? NULL
                                      : flow__service_state(t->svc, row->state);
  int moved = t->opening || t->next != cur;
  const char *from = t->opening ? NULL : row->state;
  char *oldstate = row->state;
  char *olddata = row->data;
  char *oldkeys = row->keys, *newkeys = NULL;
  if ((rc = case_keys(e, t->data, t->opening ? NULL : oldkeys, &newkeys,
                      &row->keys_changed, &err)) != 0) {
    flow__engine_fail_err(e, &err);
    goto done;
  }
  row->keys = newkeys;
  row->state = t->next->name;
  row->data = datatext->p;
  row->closed = t->next->final;
  row->updated_at = t->now;
  row->seq += 1;
  if (!row->closed &&
      (rc = flow__sla_before(e, t->svc, row, &t->sla, t->now, &err)) != 0) {
    row->state = oldstate;
    row->data = olddata;
    row->keys = oldkeys;
    flow__free(&e->alloc, newkeys);
    flow__engine_fail_err(e, &err);
    goto done;
  }
  int had_tasks = row->has_tasks;
  for (size_t i = 0; !row->closed && t->calls && i < json_array_size(t->calls);
       i++)
    if (json_object_get(json_array_get(t->calls, i), "task"))
      row->has_tasks = 1;
  /* From here on the store may have been written: one count covers this
     transition's writes, all made below. */
  e->writes++;
  rc = t->opening ? e->vt->case_insert(e->store, row, &err)
                  : e->vt->case_update(e->store, row,
                                       moved ? oldstate : NULL, &err);
  /* Timers: leaving a state cancels its own, closing cancels all.  The
     case row just written says so (state, closed, entered_seq); the rows
     themselves go later, in a batch (flow__engine_sweep_later). */
  if (rc == 0 && (row->closed || (moved && !t->opening)))
    rc = flow__engine_sweep_later(e, row->id, &err);
  if (rc == 0 && moved && !row->closed)
    rc = add_state_timers(t, &err);
  /* The history row last, with the service-level changes in it. */
  flow__buf slalog;
  flow__buf_init(&slalog, &e->alloc);
  if (rc == 0 && !row->closed)
    rc = flow__sla_after(e, t->svc, row, t->opening, &t->sla, t->calls,
                         t->now, &slalog, &err);
  if (slalog.len > 0)
    flow__buf_addc(&slalog, ']');
  flow__history_row h = { row->id,  row->seq,  t->now,       actor.p,
                          t->event, payload.p, from,         t->next->name,
                          slalog.len > 0 ? flow__buf_str(&slalog) : NULL };
  if (rc == 0 && slalog.oom)
    rc = flow__err_set(&err, FLOW_ENOMEM, "out of memory saving case");
  if (rc == 0)
    rc = e->vt->history_append(e->store, &h, &err);
  flow__buf_free(&slalog);
  if (moved)
    e->next_due = INT64_MIN;
  int nact = 0;
  for (size_t i = 0; rc == 0 && t->calls && i < json_array_size(t->calls);
       i++) {
    json_t *c = json_array_get(t->calls, i);
    const char *action = json_string_value(json_object_get(c, "action"));
    const char *to = json_string_value(json_object_get(c, "signal_case"));
    if (to) {
      /* A kept timer of that case, due now: fired after this commits. */
      rc = add_timer(e, strtoll(to, NULL, 10), 0, t->now, "timer",
                     json_string_value(json_object_get(c, "event")),
                     json_object_get(c, "payload"), NULL, NULL, &err);
      continue;
    }
    if (action == NULL) {
      if (!row->closed && json_object_get(c, "task") == NULL &&
          json_object_get(c, "sla") == NULL &&
          json_object_get(c, "cancel_task") == NULL &&
          json_object_get(c, "open") == NULL)
        rc = add_requested_timer(t, c, &err);
      continue;
    }
    char *args = flow__json_owned(&e->alloc, json_object_get(c, "args"));
    if (args == NULL) {
      rc = flow__err_set(&err, FLOW_ENOMEM, "out of memory queueing action");
      break;
    }
    char key[FLOW__MAX_ACTION_KEY + 1];
    request_key(key, sizeof key, c, row, nact);
    flow__request_row r = {
      .case_id = row->id,
      .seq = row->seq,
      .n = nact++,
      .action = action,
      .args = args,
      .key = key,
      .reply = json_string_value(json_object_get(c, "reply")),
      .fail = json_string_value(json_object_get(c, "fail")),
      .retry_max = (int)json_integer_value(json_object_get(c, "retry_max")),
      .backoff_ms = json_integer_value(json_object_get(c, "backoff_ms")),
      .timeout_ms = json_integer_value(json_object_get(c, "timeout_ms")),
      .created_at = t->now,
    };
    rc = e->vt->outbox_add(e->store, &r, &err);
    e->next_due = INT64_MIN; /* a request to dispatch */
    flow_free(args);
  }
  if (rc == 0)
    rc = flow__tasks_persist(e, row, t->next->name, moved && !t->opening,
                             had_tasks, t->calls, t->now, t->cause, &err);
  if (rc == 0 && t->svc->ncorrelate)
    rc = flow__correlate_write(e, t->svc, row, t->opening ? NULL : olddata,
                               t->data, &err);
  /* Put the row back as it was; the caller reports from t->next. */
  row->state = oldstate;
  row->data = olddata;
  row->keys = oldkeys;
  flow__free(&e->alloc, newkeys);
  if (rc != 0)
    flow__engine_fail_err(e, &err);
  else if (flow__engine_listened(e, strcmp(t->cause, "call") == 0))
    note_transition(t, from, t->calls);
done:
  flow__buf_free(&payload);
  flow__buf_free(&actor);
  return rc;
}

/* ---- cases a transition opens (flow.open) ---------------------------- */

static size_t
count_opens(json_t *calls)
{
  size_t n = 0;
  for (size_t i = 0; calls && i < json_array_size(calls); i++)
    n += json_object_get(json_array_get(calls, i), "open") != NULL;
  return n;
}

/* What a refused transition that opened cases must take back besides
   the store's writes. */
typedef struct opens_mark {
  uint64_t writes;
  size_t notes, ndeliveries;
} opens_mark;

static int
opens_begin(flow_engine *e, opens_mark *m)
{
  flow__err err;
  flow__err_clear(&err);
  m->writes = e->writes;
  m->notes = flow__engine_notes_mark(e);
  m->ndeliveries = e->ndeliveries;
  if (e->vt->savepoint(e->store, &err) != 0)
    return flow__engine_fail_err(e, &err);
  return 0;
}

static int
opens_end(flow_engine *e, opens_mark *m, int rc)
{
  if (rc == 0) {
    flow__err err;
    flow__err_clear(&err);
    if (e->vt->release(e->store, &err) == 0)
      return 0;
    rc = flow__engine_fail_err(e, &err);
  }
  /* Nothing was written after all: a timer's, an action's or a
     message's transition then becomes an incident, as any refusal. */
  e->vt->rollback_to(e->store);
  e->writes = m->writes;
  flow__engine_notes_drop(e, m->notes);
  e->ndeliveries = m->ndeliveries;
  e->next_due = INT64_MIN;
  return rc;
}

/* Opens the cases t's scripts asked for, in order, after t is written.
   Their own deliveries wait for t's (the caller's deliver_after). */
static int
open_children(transition *t)
{
  flow_engine *e = t->e;
  char parent[24];
  snprintf(parent, sizeof parent, "%lld", (long long)t->row->id);
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < json_array_size(t->calls); i++) {
    json_t *c = json_array_get(t->calls, i);
    const char *service = json_string_value(json_object_get(c, "open"));
    if (service == NULL)
      continue;
    int64_t id = json_integer_value(json_object_get(c, "id"));
    int line = (int)json_integer_value(json_object_get(c, "line"));
    json_t *data = json_object_get(c, "data");
    json_t *origin = json_pack("{s:s, s:s, s:I}", "case", parent, "service",
                               t->svc->name, "seq",
                               (json_int_t)t->row->seq);
    if (origin == NULL || data == NULL)
      return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
    json_incref(data);
    int was = e->delivering;
    e->open_depth++;
    e->delivering = 1;
    rc = flow__case_open_with(e, service, data, id, t->actor, "parent",
                              origin, t->cause, NULL);
    e->delivering = was;
    e->open_depth--;
    json_decref(origin);
    if (rc != 0) {
      char why[sizeof e->err.msg];
      snprintf(why, sizeof why, "%s", e->err.msg);
      flow__engine_fail(e, rc,
                        "%s:%d: flow.open('%s') could not open case %lld, "
                        "so case %s's event '%s' is refused: %s",
                        t->svc->chunkname, line, service, (long long)id,
                        parent, t->event, why);
    }
  }
  return rc;
}

/* Runs and persists t; on success *out (if out) gets the case JSON.
   Consumes t->data; the caller holds the transaction. */
static int
transition_run(transition *t, char **out)
{
  flow_engine *e = t->e;
  if (e->open_depth == 0)
    e->open_last = 0;
  e->open_parent = t->row;
  e->open_parent_opening = t->opening;
  int rc = run_scripts(t);
  e->open_parent = NULL;
  if (rc != 0 && flow__sandbox_damaged(t->comp->sb)) {
    flow__engine_evict(e, t->comp);
    t->comp = NULL;
    t->svc = NULL;
  }
  flow__buf datatext;
  flow__buf_init(&datatext, &e->alloc);
  t->datatext = &datatext;
  /* A transition that opens cases writes them, and itself, in a
     savepoint: when one of them cannot open, none of it stays. */
  opens_mark m;
  int opens = rc == 0 && count_opens(t->calls) > 0;
  if (opens)
    rc = opens_begin(e, &m);
  if (rc == 0 && (rc = persist(t)) != 0 && t->comp &&
      flow__sandbox_damaged(t->comp->sb)) {
    /* validate (or a pattern) was killed */
    flow__engine_evict(e, t->comp);
    t->comp = NULL;
    t->svc = NULL;
  }
  if (opens && rc == 0)
    rc = open_children(t);
  if (opens)
    rc = opens_end(e, &m, rc);
  json_decref(t->calls);
  t->calls = NULL;
  json_decref(t->data);
  t->data = NULL;
  flow__sla_start_clear(e, &t->sla);
  if (rc == 0 && out) {
    /* Report the row as persisted: persist() advanced seq and time. */
    char *old = t->row->state;
    t->row->state = t->next->name;
    t->row->closed = t->next->final;
    rc = flow__case_emit(e, out, t->row, datatext.p);
    t->row->state = old;
  }
  flow__buf_free(&datatext);
  return rc;
}

/* ---- opening and applying, inside a transaction ----------------------- */

/* Delivers the messages the transition of case id queued, then gives the
   caller (out, when not NULL) the case as it is after them. */
static int
deliver_after(flow_engine *e, int64_t id, char **out)
{
  int rc = flow__messages_deliver(e);
  if (rc != 0 || out == NULL)
    return rc;
  flow__err err;
  flow__err_clear(&err);
  flow__case_row row;
  if ((rc = e->vt->case_get(e->store, id, &row, &err)) != 0)
    return flow__engine_fail_err(e, &err);
  flow_free(*out);
  *out = NULL;
  rc = flow__case_emit(e, out, &row, row.data);
  flow__case_row_clear(&e->alloc, &row);
  return rc;
}

int
flow__case_open_txn(flow_engine *e, const char *service,
                    const char *data_json, const flow_actor *actor,
                    char **out)
{
  flow__err err;
  flow__err_clear(&err);
  json_t *data = NULL;
  if (!flow__engine_identifier(service))
    return flow__engine_fail(e, FLOW_EINVAL,
                             "'%.40s' is not a service name (names are "
                             "lower-case, like missed_bin)",
                             service);
  if (flow__json_parse_object(data_json, "case data", &data, &err) != 0)
    return flow__engine_fail_err(e, &err);
  return flow__case_open_with(e, service, data, 0, actor, NULL, NULL, "call",
                              out);
}

int
flow__case_open_with(flow_engine *e, const char *service, json_t *data,
                     int64_t id, const flow_actor *actor,
                     const char *origin_key, json_t *origin,
                     const char *cause, char **out)
{
  flow__err err;
  flow__err_clear(&err);
  json_t *payload = NULL;
  flow__compiled *comp;
  int rc;
  if ((rc = flow__engine_service(e, service, 0, &comp)) != 0)
    goto done;
  const flow__service *svc = comp->svc;
  if ((payload = json_deep_copy(data)) == NULL) {
    rc = flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
    goto done;
  }
  int64_t now = flow_engine_now(e);
  flow__case_row row;
  memset(&row, 0, sizeof row);
  row.service = svc->name;
  row.version = svc->version;
  row.state = svc->initial;
  row.opened_at = row.updated_at = now;
  row.due_at = row.paused_at = FLOW__NO_TIME;
  row.id = id;
  if (id == 0 && (rc = e->vt->case_new_id(e->store, &row.id, &err)) != 0) {
    flow__engine_fail_err(e, &err);
    goto done;
  }
  row.seed = (int64_t)case_seed(row.id, now);
  transition t = {
    .e = e,
    .comp = comp,
    .svc = svc,
    .row = &row,
    .data = data,
    .event = "open",
    .payload = payload,
    .actor = actor,
    .origin = origin,
    .origin_key = origin_key,
    .opening = 1,
    .cause = cause,
    .now = now,
  };
  data = NULL; /* t owns it now */
  /* The sender's data is checked before any script sees it, so that an
     initial function or an enter hook may rely on the declared fields
     (a missing required field is the sender's mistake, not a script
     error at the line that read it).  It is checked again after the
     scripts only if they ran. */
  err.code = 0;
  rc = flow__fields_validate(svc, t.data, flow__sandbox_match, comp->sb,
                             &err);
  if (rc == FLOW_EDATA) {
    rc = check_rules(&t, rc, &err); /* with the service's own rules */
    json_decref(t.data);
    goto done;
  }
  if (rc != 0) {
    rc = flow__engine_fail(e, rc, "%s", err.msg);
    json_decref(t.data);
    goto done;
  }
  t.checked = 1;
  rc = transition_run(&t, out);
  if (rc == 0 && e->ndeliveries && !e->delivering)
    rc = deliver_after(e, row.id, out);
done:
  json_decref(data);
  json_decref(payload);
  return rc;
}

int
flow__case_apply_txn(flow_engine *e, int64_t id, const char *event,
                     json_t *payload, const flow_actor *actor, int kind,
                     const char *target, json_t *origin, char **out)
{
  flow__err err;
  flow__err_clear(&err);
  flow__case_row row;
  json_t *data = NULL;
  int rc;
  if ((rc = e->vt->case_lock(e->store, id, &row, &err)) != 0)
    return flow__engine_fail_err(e, &err);
  if (row.closed) {
    rc = flow__engine_fail(e, FLOW_ECLOSED,
                           "case %lld is closed (state '%s'): it accepts no "
                           "more events",
                           (long long)id, row.state);
    goto done;
  }
  flow__compiled *comp;
  if ((rc = flow__engine_service(e, row.service, row.version, &comp)) != 0)
    goto done;
  const flow__service *svc = comp->svc;
  const flow__state *st = flow__service_state(svc, row.state);
  const flow__trans *tr = st && kind != FLOW__APPLY_AFTER
                              ? flow__state_trans(st, event)
                              : NULL;
  if (st && tr == NULL &&
      (kind == FLOW__APPLY_SIGNAL || kind == FLOW__APPLY_TIMER ||
       kind == FLOW__APPLY_ACTION || kind == FLOW__APPLY_TASK ||
       kind == FLOW__APPLY_MESSAGE)) {
    char evs[512];
    /* Echo the name only when it is plain text (messages go into JSON). */
    int plain = 1;
    for (const char *p = event; *p; p++)
      if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
        plain = 0;
    rc = flow__engine_fail(e, FLOW_EEVENT,
                           "case %lld is in state '%s', which does not "
                           "accept '%.60s' (it accepts: %s)",
                           (long long)id, row.state,
                           plain ? event : "(an event name that is not text)",
                           event_list(st, evs, sizeof evs));
    goto done;
  }
  if (kind == FLOW__APPLY_SIGNAL && tr && tr->internal) {
    rc = flow__engine_fail(e, FLOW_EPERM,
                           "%s:%d: event '%s' in state '%s' is internal: only "
                           "the engine sends it (from a timer, an action, a "
                           "task or a message), no actor may",
                           svc->chunkname, tr->line, event, row.state);
    goto done;
  }
  if (kind == FLOW__APPLY_SIGNAL && tr && tr->nroles) {
    int ok = 0;
    for (size_t i = 0; i < tr->nroles && !ok; i++)
      ok = flow__actor_has_role(actor, tr->roles[i]);
    if (!ok) {
      char need[256], has[256];
      flow__join jn, jh;
      flow__join_init(&jn, need, sizeof need);
      flow__join_init(&jh, has, sizeof has);
      for (size_t i = 0; i < tr->nroles; i++)
        flow__join_add(&jn, " or ", tr->roles[i]);
      for (size_t i = 0; actor && i < actor->nroles; i++)
        flow__join_add(&jh, ", ", actor->roles[i]);
      rc = flow__engine_fail(e, FLOW_EPERM,
                             "event '%s' in state '%s' needs the role %s, "
                             "and actor '%s' has %s%s",
                             event, row.state, need,
                             actor && actor->id ? actor->id : "anonymous",
                             has[0] ? "only " : "no roles", has);
      goto done;
    }
  }
  /* data stays NULL: run_scripts reads row.data, the stored text. */
  transition t = {
    .e = e,
    .comp = comp,
    .svc = svc,
    .row = &row,
    .data = data,
    .event = event,
    .payload = payload,
    .actor = actor,
    .trans = tr,
    .target = target,
    .origin = origin,
    .origin_key = kind == FLOW__APPLY_TASK ||
                          kind == FLOW__APPLY_TASK_DONE
                      ? "task"
                  : kind == FLOW__APPLY_MESSAGE ? "message"
                                                : "action",
    .cause = kind == FLOW__APPLY_SIGNAL    ? "call"
             : kind == FLOW__APPLY_ACTION  ? "action"
             : kind == FLOW__APPLY_TASK ||
                       kind == FLOW__APPLY_TASK_DONE
                 ? "task"
             : kind == FLOW__APPLY_MESSAGE ? "message"
                                           : "timer",
    .now = flow_engine_now(e),
  };
  data = NULL;
  rc = transition_run(&t, out);
  if (rc == 0 && e->ndeliveries && !e->delivering)
    rc = deliver_after(e, row.id, out);
done:
  flow__case_row_clear(&e->alloc, &row);
  json_decref(data);
  return rc;
}

/* ---- public entry points --------------------------------------------- */

int
flow__engine_begin(flow_engine *e)
{
  flow__err err;
  flow__err_clear(&err);
  int rc = e->vt->begin(e->store, &err);
  return rc ? flow__engine_fail_err(e, &err) : 0;
}

int
flow__engine_begin_as(flow_engine *e, const flow_actor *actor)
{
  int rc = flow__case_check_actor(e, actor);
  return rc != 0 ? rc : flow__engine_begin(e);
}

int
flow__engine_finish(flow_engine *e, int rc, char **out)
{
  if ((rc = flow__engine_end_txn(e, rc)) != 0) {
    if (out) {
      flow_free(*out);
      *out = NULL;
    }
    e->next_due = INT64_MIN;
    return rc;
  }
  flow__err_clear(&e->err); /* a subscriber's calls may have set it */
  flow__engine_kick(e);
  return 0;
}

int
flow_case_open(char **out, flow_engine *engine, const char *service,
               const char *data_json, const flow_actor *actor)
{
  if (out)
    *out = NULL;
  if (engine == NULL)
    return FLOW_EMISUSE;
  if (service == NULL)
    return flow__engine_fail(engine, FLOW_EMISUSE, "service is NULL");
  int rc = flow__case_check_actor(engine, actor);
  if (rc != 0)
    return rc;
  flow__err err;
  flow__err_clear(&err);
  if ((rc = engine->vt->begin(engine->store, &err)) != 0)
    return flow__engine_fail_err(engine, &err);
  rc = flow__case_open_txn(engine, service, data_json, actor, out);
  return flow__engine_finish(engine, rc, out);
}

int
flow_case_signal(char **out, flow_engine *engine, const char *case_id,
                 const char *event, const char *payload_json,
                 const flow_actor *actor)
{
  if (out)
    *out = NULL;
  if (engine == NULL)
    return FLOW_EMISUSE;
  flow_engine *e = engine;
  if (event == NULL)
    return flow__engine_fail(e, FLOW_EMISUSE, "event is NULL");
  int64_t id = 0;
  int rc;
  if ((rc = flow__case_parse_id(e, case_id, &id)) != 0 ||
      (rc = flow__case_check_actor(e, actor)) != 0)
    return rc;
  flow__err err;
  flow__err_clear(&err);
  json_t *payload = NULL;
  if ((rc = flow__json_parse_object(payload_json, "the event payload",
                                    &payload, &err)))
    return flow__engine_fail_err(e, &err);
  if ((rc = e->vt->begin(e->store, &err)) != 0) {
    json_decref(payload);
    return flow__engine_fail_err(e, &err);
  }
  rc = flow__case_apply_txn(e, id, event, payload, actor, FLOW__APPLY_SIGNAL,
                            NULL, NULL, out);
  json_decref(payload);
  return flow__engine_finish(e, rc, out);
}

