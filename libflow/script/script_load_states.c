/*
 * The service loader, part 3: states = { ... } -- each state's events
 * (targets, roles, guards, handlers), enter and exit hooks, `after`
 * timers, in the order the author wrote them (script_load.h has the plan
 * of the loader).
 */
#include "script/script_load.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- states ------------------------------------------------------------ */

static const char *const state_keys[] = {
  "on", "enter", "exit", "final", "after", "title", "sla", NULL,
};
static const char *const trans_keys[] = {
  "to", "roles", "guard", "handler", "internal", NULL,
};
static const char *const after_keys[] = { "to", "event", "payload", NULL };

typedef struct placed {
  long pos;       /* token index where it is written, LONG_MAX unknown */
  const char *name;
  size_t idx;
} placed;

static int
placed_cmp(const void *pa, const void *pb)
{
  const placed *a = pa, *b = pb;
  if (a->pos != b->pos)
    return a->pos < b->pos ? -1 : 1;
  return strcmp(a->name, b->name);
}

static int
trans_cmp(const void *pa, const void *pb)
{
  const flow__trans *a = pa, *b = pb;
  return strcmp(a->event, b->event);
}

static void
unknown_target(loader *ld, int line, const char *what, const char *target)
{
  flow__ld_problem(ld, line, "%s goes to state '%.60s', which does not exist "
              "(states: %s)", what, target, ld->state_list);
}

/* One entry of a state's `on`: key at -2, value at -1. */
static void
read_trans(loader *ld, flow__state *st, flow__trans *tr, int line)
{
  lua_State *L = ld->L;
  int v = lua_gettop(L);
  char what[200];
  snprintf(what, sizeof what, "event '%s' in state '%s'", tr->event,
           st->name);
  tr->line = line;
  switch (lua_type(L, v)) {
  case LUA_TSTRING:
    tr->target = flow__ld_strdup(ld, lua_tostring(L, v));
    if (!flow__ld_has_state(ld, tr->target))
      unknown_target(ld, line, what, tr->target);
    return;
  case LUA_TFUNCTION:
    tr->line = flow__ld_function_line(L, v);
    tr->handler = flow__ld_keep_function(L, v);
    return;
  case LUA_TTABLE:
    break;
  default:
    flow__ld_problem(ld, line, "%s must be a state name, a function(case, ev) or "
                "a table like { to = \"closed\", roles = { \"crew\" } }, not "
                "a %s", what, flow__ld_type_at(L, v));
    return;
  }
  const char *prefix[] = { "states", st->name, "on", tr->event };
  lua_pushnil(L);
  while (lua_next(L, v)) {
    flow__ld_tick(ld);
    flow__ld_check_key(ld, trans_keys, flow__ld_key_line(ld, prefix, 4), what);
    lua_pop(L, 1);
  }
  int kline = LOCATE(ld, "states", st->name, "on", tr->event, "to");
  int ty = flow__ld_rawfield(L, v, "to");
  if (ty == LUA_TSTRING) {
    tr->target = flow__ld_strdup(ld, lua_tostring(L, -1));
    if (!flow__ld_has_state(ld, tr->target))
      unknown_target(ld, kline, what, tr->target);
  } else if (ty != LUA_TNIL) {
    flow__ld_problem(ld, kline, "to of %s must be a state name (a string), not a "
                "%s", what, flow__ld_type_at(L, -1));
  }
  lua_pop(L, 1);

  kline = LOCATE(ld, "states", st->name, "on", tr->event, "roles");
  ty = flow__ld_rawfield(L, v, "roles");
  if (ty == LUA_TTABLE) {
    if (flow__ld_string_list(ld, lua_gettop(L), &tr->roles, &tr->nroles) < 0)
      flow__ld_problem(ld, kline, "roles of %s must be a list of strings like "
                  "{ \"crew\", \"supervisor\" }", what);
  } else if (ty != LUA_TNIL) {
    flow__ld_problem(ld, kline, "roles of %s must be a list of strings like "
                "{ \"crew\" }, not a %s", what, flow__ld_type_at(L, -1));
  }
  lua_pop(L, 1);

  /* internal = true: only the engine sends it (a timer, an action's
     answer, a task, a message); no actor may. */
  ty = flow__ld_rawfield(L, v, "internal");
  if (ty == LUA_TBOOLEAN)
    tr->internal = lua_toboolean(L, -1);
  else if (ty != LUA_TNIL)
    flow__ld_problem(ld, LOCATE(ld, "states", st->name, "on", tr->event,
                                "internal"),
                     "internal of %s must be true or false, not a %s", what,
                     flow__ld_type_at(L, -1));
  lua_pop(L, 1);
  if (tr->internal && tr->nroles)
    flow__ld_problem(ld, kline, "%s is internal (only the engine sends it): "
                     "roles would never be asked for; remove one of them",
                     what);

  static const char *const fkeys[] = { "guard", "handler" };
  for (size_t i = 0; i < 2; i++) {
    ty = flow__ld_rawfield(L, v, fkeys[i]);
    if (ty == LUA_TFUNCTION) {
      int ref = flow__ld_keep_function(L, lua_gettop(L));
      if (i == 0)
        tr->guard = ref;
      else
        tr->handler = ref;
    } else if (ty != LUA_TNIL) {
      flow__ld_problem(ld, LOCATE(ld, "states", st->name, "on", tr->event,
                             fkeys[i]),
                  "%s of %s must be a function(case, ev), not a %s", fkeys[i],
                  what, flow__ld_type_at(L, -1));
    }
    lua_pop(L, 1);
  }
  int has_to = (flow__ld_rawfield(L, v, "to") != LUA_TNIL);
  int has_handler = (flow__ld_rawfield(L, v, "handler") != LUA_TNIL);
  lua_pop(L, 2);
  if (!has_to && !has_handler)
    flow__ld_problem(ld, line, "%s needs `to = \"<state>\"` or `handler = "
                "function(case, ev) ... end`", what);
}

static void
read_on(loader *ld, flow__state *st, int on, int line)
{
  lua_State *L = ld->L;
  if (lua_type(L, on) != LUA_TTABLE) {
    flow__ld_problem(ld, line, "on in state '%s' must be a table of event names "
                "like { collect = \"closed\" }, not a %s", st->name,
                flow__ld_type_at(L, on));
    return;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, on)) {
    flow__ld_tick(ld);
    n++;
    lua_pop(L, 1);
  }
  if (n == 0)
    return;
  if (n > FLOW__MAX_EVENTS) {
    flow__ld_problem(ld, line, "on in state '%s' has %zu events; a state may take "
                "at most %d", st->name, n, FLOW__MAX_EVENTS);
    return;
  }
  if ((st->on = flow__calloc(ld->a, n, sizeof *st->on)) == NULL)
    flow__ld_oom(ld);
  const char *prefix[] = { "states", st->name, "on" };
  lua_pushnil(L);
  while (lua_next(L, on)) {
    flow__ld_tick(ld);
    int kline = flow__ld_key_line(ld, prefix, 3);
    char kt[96];
    if (lua_type(L, -2) != LUA_TSTRING) {
      flow__ld_problem(ld, kline, "on in state '%s' has a key %s; events must be "
                  "named, like collect = \"closed\"", st->name,
                  flow__ld_key_text(L, -2, kt, sizeof kt));
    } else {
      size_t klen;
      const char *ev = lua_tolstring(L, -2, &klen);
      if (!flow__name_ok(ev, klen, 0) || klen > FLOW__MAX_NAME) {
        flow__ld_problem(ld, kline, "event name '%.60s' in state '%s' must start "
                    "with a lower-case letter and use only a-z, 0-9 and _",
                    ev, st->name);
      } else if (strcmp(ev, "open") == 0) {
        flow__ld_problem(ld, kline, "event name 'open' in state '%s' is reserved "
                    "(it is the event that opens a case); use another name",
                    st->name);
      } else {
        flow__trans *tr = &st->on[st->non++];
        tr->handler = tr->guard = FLOW__NOREF;
        tr->event = flow__ld_strdup(ld, ev);
        read_trans(ld, st, tr, kline);
      }
    }
    lua_pop(L, 1);
  }
  if (st->non > 1)
    qsort(st->on, st->non, sizeof *st->on, trans_cmp);
}

static int
trans_key_cmp(const void *key, const void *elem)
{
  return strcmp(key, ((const flow__trans *)elem)->event);
}

/* st->on is sorted by event by the time `after` is read. */
static int
handles(const flow__state *st, const char *event)
{
  if (st->non == 0)
    return 0; /* st->on is NULL, which bsearch must not be given */
  return bsearch(event, st->on, st->non, sizeof *st->on, trans_key_cmp) !=
         NULL;
}

/* One entry of a state's `after`: key at -2, value at -1. */
static void
read_after_entry(loader *ld, flow__state *st, flow__after *af, int line)
{
  lua_State *L = ld->L;
  int v = lua_gettop(L);
  char what[200];
  snprintf(what, sizeof what, "after '%s' in state '%s'", af->duration,
           st->name);
  af->line = line;
  flow__err perr;
  flow__err_clear(&perr);
  if (flow__duration_parse(af->duration, &af->dur, &perr) != 0)
    flow__ld_problem(ld, line, "%s: %s", what, perr.msg);
  if (lua_type(L, v) == LUA_TSTRING) {
    af->target = flow__ld_strdup(ld, lua_tostring(L, v));
    if (!flow__ld_has_state(ld, af->target))
      unknown_target(ld, line, what, af->target);
    return;
  }
  if (lua_type(L, v) != LUA_TTABLE) {
    flow__ld_problem(ld, line, "%s must be a state name or a table like "
                "{ event = \"remind\" }, not a %s", what, flow__ld_type_at(L, v));
    return;
  }
  const char *prefix[] = { "states", st->name, "after", af->duration };
  lua_pushnil(L);
  while (lua_next(L, v)) {
    flow__ld_tick(ld);
    flow__ld_check_key(ld, after_keys, flow__ld_key_line(ld, prefix, 4), what);
    lua_pop(L, 1);
  }
  int ty = flow__ld_rawfield(L, v, "to");
  if (ty == LUA_TSTRING) {
    af->target = flow__ld_strdup(ld, lua_tostring(L, -1));
    if (!flow__ld_has_state(ld, af->target))
      unknown_target(ld, line, what, af->target);
  } else if (ty != LUA_TNIL) {
    flow__ld_problem(ld, line, "to of %s must be a state name, not a %s", what,
                flow__ld_type_at(L, -1));
  }
  lua_pop(L, 1);
  ty = flow__ld_rawfield(L, v, "event");
  if (ty == LUA_TSTRING) {
    size_t elen;
    const char *ev = lua_tolstring(L, -1, &elen);
    af->event = flow__ld_strdup(ld, ev);
    if (!flow__name_ok(ev, elen, 0))
      flow__ld_problem(ld, line, "%s fires event '%.60s', which is not an event "
                  "name (a-z, 0-9 and _)", what, ev);
    else if (!handles(st, ev))
      flow__ld_problem(ld, line, "%s fires event '%s', which state '%s' does not "
                  "handle (add it to the state's `on`)", what, ev, st->name);
  } else if (ty != LUA_TNIL) {
    flow__ld_problem(ld, line, "event of %s must be an event name, not a %s", what,
                flow__ld_type_at(L, -1));
  }
  lua_pop(L, 1);
  ty = flow__ld_rawfield(L, v, "payload");
  if (ty == LUA_TTABLE) {
    char msg[512];
    int rc = flow__json_from_lua_sb(L, -1, "payload", ld->sb, &af->payload,
                                    NULL, msg, sizeof msg);
    if (rc == FLOW_ENOMEM)
      flow__ld_oom(ld);
    if (rc == FLOW_ELIMIT)
      flow__sb_check(L); /* the load's budget is gone: stop it here */
    if (rc != 0)
      flow__ld_problem(ld, line, "%s: %s", what, msg);
    else if (!json_is_object(af->payload))
      flow__ld_problem(ld, line, "payload of %s must be a table with named keys",
                  what);
    if (af->event == NULL)
      flow__ld_problem(ld, line, "%s has a payload but no event to carry it",
                  what);
  } else if (ty != LUA_TNIL) {
    flow__ld_problem(ld, line, "payload of %s must be a table, not a %s", what,
                flow__ld_type_at(L, -1));
  }
  lua_pop(L, 1);
  if (af->target && af->event)
    flow__ld_problem(ld, line, "%s has both `to` and `event`; use one", what);
  else if (!af->target && !af->event)
    flow__ld_problem(ld, line, "%s needs `to = \"<state>\"` or `event = "
                "\"<name>\"`", what);
}

static void
read_after(loader *ld, flow__state *st, int after, int line)
{
  lua_State *L = ld->L;
  if (lua_type(L, after) != LUA_TTABLE) {
    flow__ld_problem(ld, line, "after in state '%s' must be a table like "
                "{ [\"2 working days\"] = \"escalated\" }, not a %s",
                st->name, flow__ld_type_at(L, after));
    return;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, after)) {
    flow__ld_tick(ld);
    n++;
    lua_pop(L, 1);
  }
  if (n == 0)
    return;
  /* Each entry is a timer set, a calendar walk done, whenever a case
     enters the state. */
  if (n > FLOW__MAX_AFTER) {
    flow__ld_problem(ld, line, "after in state '%s' has %zu entries; a state may "
                "have at most %d (one timer whose event sets the next does "
                "the same)", st->name, n, FLOW__MAX_AFTER);
    return;
  }
  if ((st->after = flow__calloc(ld->a, n, sizeof *st->after)) == NULL)
    flow__ld_oom(ld);
  placed *order = flow__ld_scratch(ld, n * sizeof *order);
  const char *prefix[] = { "states", st->name, "after" };
  lua_pushnil(L);
  while (lua_next(L, after)) {
    flow__ld_tick(ld);
    char kt[96];
    if (lua_type(L, -2) != LUA_TSTRING) {
      flow__ld_problem(ld, line, "after in state '%s' has a key %s; keys are "
                  "durations like [\"2 working days\"]", st->name,
                  flow__ld_key_text(L, -2, kt, sizeof kt));
    } else {
      size_t i = st->nafter++;
      flow__after *af = &st->after[i];
      af->duration = flow__ld_strdup(ld, lua_tostring(L, -2));
      if (strlen(af->duration) != lua_rawlen(L, -2))
        flow__ld_problem(ld, line, "after in state '%s' has a key with a zero "
                    "byte in it; keys are durations like "
                    "[\"2 working days\"]", st->name);
      const char *path[] = { prefix[0], prefix[1], prefix[2], af->duration };
      long pos;
      int kline = flow__ld_locate(ld, path, 4, &pos);
      order[i].pos = pos >= 0 && kline > 0 ? pos : LONG_MAX;
      order[i].name = af->duration;
      order[i].idx = i;
      read_after_entry(ld, st, af, kline);
    }
    lua_pop(L, 1);
  }
  /* As written, so timers are listed the way the author reads them. */
  if (st->nafter > 1) {
    qsort(order, st->nafter, sizeof *order, placed_cmp);
    flow__after *tmp = flow__ld_scratch(ld, st->nafter * sizeof *tmp);
    memcpy(tmp, st->after, st->nafter * sizeof *tmp);
    for (size_t i = 0; i < st->nafter; i++)
      st->after[i] = tmp[order[i].idx];
  }
}

static void
read_state(loader *ld, flow__state *st, int t)
{
  lua_State *L = ld->L;
  char owner[160];
  snprintf(owner, sizeof owner, "state '%s'", st->name);
  const char *prefix[] = { "states", st->name };
  lua_pushnil(L);
  while (lua_next(L, t)) {
    flow__ld_tick(ld);
    flow__ld_check_key(ld, state_keys, flow__ld_key_line(ld, prefix, 2), owner);
    lua_pop(L, 1);
  }
  int line, ty;

  line = LOCATE(ld, "states", st->name, "final");
  ty = flow__ld_rawfield(L, t, "final");
  if (ty == LUA_TBOOLEAN)
    st->final = lua_toboolean(L, -1);
  else if (ty != LUA_TNIL)
    flow__ld_problem(ld, line, "final in state '%s' must be true or false, not a "
                "%s", st->name, flow__ld_type_at(L, -1));
  lua_pop(L, 1);

  line = LOCATE(ld, "states", st->name, "title");
  ty = flow__ld_rawfield(L, t, "title");
  if (ty != LUA_TNIL && ty != LUA_TSTRING)
    flow__ld_problem(ld, line, "title of state '%s' must be a string, not a %s",
                st->name, flow__ld_type_at(L, -1));
  else if (ty == LUA_TSTRING && !flow__ld_utf8_at(L, -1))
    flow__ld_problem(ld, line, "title of state '%s' is not valid UTF-8 text",
                st->name);
  lua_pop(L, 1);

  static const char *const hooks[] = { "enter", "exit" };
  for (size_t i = 0; i < 2; i++) {
    line = LOCATE(ld, "states", st->name, hooks[i]);
    ty = flow__ld_rawfield(L, t, hooks[i]);
    if (ty == LUA_TFUNCTION) {
      int ref = flow__ld_keep_function(L, lua_gettop(L));
      if (i == 0)
        st->enter = ref;
      else
        st->exit = ref;
    } else if (ty != LUA_TNIL) {
      flow__ld_problem(ld, line, "%s in state '%s' must be a function(case), not "
                  "a %s", hooks[i], st->name, flow__ld_type_at(L, -1));
    }
    lua_pop(L, 1);
  }

  /* `on` first: `after` may fire one of its events. */
  line = LOCATE(ld, "states", st->name, "on");
  ty = flow__ld_rawfield(L, t, "on");
  if (ty != LUA_TNIL) {
    read_on(ld, st, lua_gettop(L), line);
    if (st->final && ty == LUA_TTABLE && st->non > 0)
      flow__ld_problem(ld, line, "state '%s' is final, so it cannot have `on` "
                  "events (remove them or drop `final = true`)", st->name);
  }
  lua_pop(L, 1);

  ty = flow__ld_rawfield(L, t, "sla");
  if (ty != LUA_TNIL) {
    flow__ld_read_sla(ld, lua_gettop(L), &st->sla, st->name);
    if (st->final)
      flow__ld_problem(ld, LOCATE(ld, "states", st->name, "sla"),
                       "state '%s' is final: the case closes there, so it "
                       "has no service level (remove its sla)", st->name);
  }
  lua_pop(L, 1);

  line = LOCATE(ld, "states", st->name, "after");
  ty = flow__ld_rawfield(L, t, "after");
  if (ty != LUA_TNIL) {
    read_after(ld, st, lua_gettop(L), line);
    if (st->final && ty == LUA_TTABLE && st->nafter > 0)
      flow__ld_problem(ld, line, "state '%s' is final, so it cannot have `after` "
                  "timers", st->name);
  }
  lua_pop(L, 1);
}

void
flow__ld_read_states(loader *ld, int states)
{
  lua_State *L = ld->L;
  flow__service *svc = ld->svc;
  int line = LOCATE(ld, "states");
  if (lua_type(L, states) == LUA_TNIL) {
    flow__ld_problem(ld, 1, "the service needs states: add `states = { "
                "<name> = { ... }, ... }`");
    return;
  }
  if (lua_type(L, states) != LUA_TTABLE) {
    flow__ld_problem(ld, line, "states must be a table of state names to tables, "
                "not a %s", flow__ld_type_at(L, states));
    return;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, states)) {
    flow__ld_tick(ld);
    n++;
    lua_pop(L, 1);
  }
  if (n == 0) {
    flow__ld_problem(ld, line, "states is empty: a service needs at least one "
                "state");
    return;
  }
  if (n > FLOW__MAX_STATES) {
    flow__ld_problem(ld, line, "states has %zu states; a service may have at most "
                "%d (split it into services)", n, FLOW__MAX_STATES);
    return;
  }

  /* Pass 1: the names, in the order they are written. */
  placed *order = flow__ld_scratch(ld, n * sizeof *order);
  size_t good = 0;
  const char *prefix[] = { "states" };
  lua_pushnil(L);
  while (lua_next(L, states)) {
    flow__ld_tick(ld);
    int kline = flow__ld_key_line(ld, prefix, 1);
    char kt[96];
    if (lua_type(L, -2) != LUA_TSTRING) {
      flow__ld_problem(ld, line, "states has a key %s; states must be named, like "
                  "closed = { final = true }", flow__ld_key_text(L, -2, kt, sizeof kt));
    } else {
      size_t klen;
      const char *name = lua_tolstring(L, -2, &klen);
      if (!flow__name_ok(name, klen, 0) || klen > FLOW__MAX_NAME) {
        flow__ld_problem(ld, kline, "state name '%.60s' must start with a "
                    "lower-case letter and use only a-z, 0-9 and _ (at most "
                    "64)", name);
      } else if (lua_type(L, -1) != LUA_TTABLE) {
        flow__ld_problem(ld, kline, "state '%s' must be a table (like `%s = { "
                    "final = true }`), not a %s", name, name, flow__ld_type_at(L, -1));
      } else {
        const char *path[] = { "states", name };
        long pos;
        flow__ld_locate(ld, path, 2, &pos);
        /* The key string stays alive: the states table holds it. */
        order[good].pos = pos >= 0 ? pos : LONG_MAX;
        order[good].name = name;
        order[good].idx = good;
        good++;
      }
    }
    lua_pop(L, 1);
  }
  if (good == 0)
    return;
  qsort(order, good, sizeof *order, placed_cmp);
  if ((svc->states = flow__calloc(ld->a, good, sizeof *svc->states)) == NULL)
    flow__ld_oom(ld);
  flow__join listed;
  flow__join_init(&listed, ld->state_list, sizeof ld->state_list);
  for (size_t i = 0; i < good; i++) {
    flow__state *st = &svc->states[svc->nstates++];
    st->enter = st->exit = FLOW__NOREF;
    st->sla.within_fn = st->sla.warn_fn = FLOW__NOREF;
    st->name = flow__ld_strdup(ld, order[i].name);
    st->line = LOCATE(ld, "states", st->name);
    flow__join_add(&listed, ", ", st->name);
  }
  ld->state_index = flow__ld_scratch(ld, svc->nstates * sizeof *ld->state_index);
  for (size_t i = 0; i < svc->nstates; i++)
    ld->state_index[i] = svc->states[i].name;
  qsort(ld->state_index, svc->nstates, sizeof *ld->state_index, flow__ld_str_cmp);
  ld->have_states = 1;

  /* Pass 2: what each state holds, now that every target can be checked. */
  for (size_t i = 0; i < svc->nstates; i++) {
    flow__state *st = &svc->states[i];
    lua_pushstring(L, st->name);
    lua_rawget(L, states);
    read_state(ld, st, lua_gettop(L));
    lua_pop(L, 1);
  }
}
