/*
 * Cases in tests (`flow test`): open() and the handles it returns, with
 * their methods (signal, get, state, data, history, timers) and their
 * assertions (expect_state, expect_data, expect_field, expect_history,
 * expect_timers, expect_sla, expect_refused), and expect_open_refused for
 * an opening that should be refused.  The methods for actions, tasks and
 * incidents live in runner_action.c and runner_task.c.  A handle is a table holding the
 * case id under a metatable of the runner's; every method checks both.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/runner_int.h"

#define MAX_ROLES FLOW__RUNNER_MAX_ROLES

/* ---- cases --------------------------------------------------------------- */

static const char case_mt_key = 'c';

/* Lua value at idx (a table or nil) as JSON object text, malloc'd. */
char *
flow__runner_object_text(lua_State *L, runner *r, int idx, const char *what)
{
  if (lua_isnoneornil(L, idx))
    return NULL;
  if (!lua_istable(L, idx))
    flow__runner_raise_at(L, r, "%s must be a table, not a %s", what,
                          luaL_typename(L, idx));
  json_t *j = NULL;
  char msg[256];
  int rc = flow__json_from_lua(L, idx, what, &r->alloc, &j, msg, sizeof msg);
  if (rc != 0)
    flow__runner_raise_at(L, r, "%s", msg);
  if (json_is_array(j) && json_array_size(j) == 0) {
    json_decref(j);
    j = json_object();
  }
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (s == NULL)
    luaL_error(L, "out of memory");
  /* Handed to the engine, which wants a string it may read until the
     call returns; the Lua side keeps nothing. */
  return s;
}

/* The actor an options table at idx describes, or a string there (the
   actor's id, with no roles).  Its strings stay on the Lua stack, which
   the caller keeps until the call is over. */
void
flow__runner_read_actor(lua_State *L, runner *r, int idx, flow_actor *actor,
                        const char **roles)
{
  actor->id = "tester";
  actor->roles = roles;
  actor->nroles = 0;
  if (lua_isnoneornil(L, idx))
    return;
  if (lua_type(L, idx) == LUA_TSTRING) {
    actor->id = lua_tostring(L, idx);
    return;
  }
  if (!lua_istable(L, idx))
    flow__runner_raise_at(L, r,
                          "options must be a table like { actor = \"sam\", "
                          "roles = { \"crew\" } } (or the actor's id, like "
                          "\"sam\"), not a %s",
                          luaL_typename(L, idx));
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strcmp(k, "actor") != 0 && strcmp(k, "roles") != 0 &&
        strcmp(k, "at") != 0)
      flow__runner_raise_at(L, r,
                            "unknown option '%s' (options are actor, roles "
                            "and at)",
                            k);
    lua_pop(L, 1);
  }
  if (lua_getfield(L, idx, "actor") == LUA_TSTRING)
    actor->id = lua_tostring(L, -1); /* kept: the table holds it */
  else if (!lua_isnil(L, -1))
    flow__runner_raise_at(L, r, "actor must be a string (an id like \"sam\")");
  lua_pop(L, 1);
  int t = lua_getfield(L, idx, "roles");
  if (t == LUA_TSTRING) {
    roles[actor->nroles++] = lua_tostring(L, -1);
  } else if (t == LUA_TTABLE) {
    for (lua_Integer i = 1; i <= MAX_ROLES; i++) {
      if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
        lua_pop(L, 1);
        break;
      }
      roles[actor->nroles++] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  } else if (t != LUA_TNIL) {
    flow__runner_raise_at(L, r,
                          "roles must be a list of strings like { \"crew\" }");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "at") != LUA_TNIL)
    flow__runner_move_clock(L, r, flow__runner_check_time(L, r, -1, "at"));
  lua_pop(L, 1);
}

static void
push_case(lua_State *L, const char *id)
{
  lua_createtable(L, 0, 1);
  lua_pushstring(L, id);
  lua_setfield(L, -2, "id");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &case_mt_key);
  lua_setmetatable(L, -2);
}

const char *
flow__runner_case_id(lua_State *L, runner *r)
{
  if (!lua_istable(L, 1))
    flow__runner_raise_at(L, r,
                          "call case methods with a colon: c:signal(...), "
                          "not c.signal(...)");
  int ok = 0;
  if (lua_getmetatable(L, 1)) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &case_mt_key);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  lua_pushliteral(L, "id");
  lua_rawget(L, 1);
  const char *id = lua_tostring(L, -1);
  lua_pop(L, 1); /* the table still holds it */
  if (!ok || id == NULL)
    flow__runner_raise_at(L, r, "not a case: use what open() returned");
  snprintf(r->last_case, sizeof r->last_case, "%s", id);
  return id;
}

/* The case as JSON (new reference), or NULL with *rc set. */
static json_t *
fetch_case(runner *r, const char *id, int *rc)
{
  char *out = NULL;
  *rc = flow_case_get(&out, r->e, id);
  if (*rc != 0)
    return NULL;
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  if (j == NULL)
    *rc = FLOW_ENOMEM;
  return j;
}

/* The case as JSON (new reference); raises when the engine refuses. */
static json_t *
get_case(lua_State *L, runner *r, const char *id)
{
  char *out = NULL;
  int rc = flow_case_get(&out, r->e, id);
  if (rc != 0)
    flow__runner_engine_error(L, r, rc, "reading the case");
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  if (j == NULL)
    luaL_error(L, "out of memory");
  return j;
}

/* Calls open; returns 0 or the refusal, leaving the id in idbuf. */
static int
do_open(lua_State *L, runner *r, int first, char *idbuf, size_t len)
{
  const char *service = luaL_checkstring(L, first);
  const char *roles[MAX_ROLES];
  flow_actor actor;
  flow__runner_read_actor(L, r, first + 2, &actor, roles);
  /* last: may raise */
  char *data = flow__runner_object_text(L, r, first + 1, "data");
  char *out = NULL;
  int rc = flow_case_open(&out, r->e, service, data, &actor);
  free(data);
  if (rc == 0) {
    json_t *j = json_loads(out, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "id"));
    snprintf(idbuf, len, "%s", id ? id : "");
    json_array_append_new(r->cases, json_string(idbuf));
    snprintf(r->last_case, sizeof r->last_case, "%s", idbuf);
    json_decref(j);
    flow_free(out);
  }
  return rc;
}

int
flow__runner_l_open(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "open");
  char id[24];
  int rc = do_open(L, r, 1, id, sizeof id);
  if (rc != 0)
    return flow__runner_engine_error(L, r, rc, "open");
  flow__runner_answer(L, r); /* what the opening asked of mocks */
  push_case(L, id);
  return 1;
}

/* case_of(id): the case with that id, for a case the test did not open
   itself (one a script opened with flow.open, or a message opened). */
int
flow__runner_l_case_of(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "case_of");
  if (lua_type(L, 1) != LUA_TSTRING && !lua_isinteger(L, 1))
    return flow__runner_raise_at(L, r,
                                 "case_of needs a case id, like "
                                 "case_of(c:data().contact_case)");
  const char *id = lua_tostring(L, 1);
  json_t *j = get_case(L, r, id); /* raises when there is none */
  json_decref(j);
  snprintf(r->last_case, sizeof r->last_case, "%s", id);
  push_case(L, id);
  return 1;
}

static int
do_signal(lua_State *L, runner *r, const char *id, int first)
{
  const char *event = luaL_checkstring(L, first);
  const char *roles[MAX_ROLES];
  flow_actor actor;
  flow__runner_read_actor(L, r, first + 2, &actor, roles);
  /* may raise */
  char *payload = flow__runner_object_text(L, r, first + 1, "payload");
  int rc = flow_case_signal(NULL, r->e, id, event, payload, &actor);
  free(payload);
  return rc;
}

static int
c_signal(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "signal");
  const char *id = flow__runner_case_id(L, r);
  int rc = do_signal(L, r, id, 2);
  if (rc != 0) {
    char what[128];
    snprintf(what, sizeof what, "signal '%.60s'", lua_tostring(L, 2));
    return flow__runner_engine_error(L, r, rc, what);
  }
  lua_settop(L, 1);
  flow__runner_answer(L, r); /* what the event asked of mocks */
  return 1;
}

static int
c_get(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "get");
  json_t *j = get_case(L, r, flow__runner_case_id(L, r));
  flow__json_push(L, j);
  json_decref(j);
  return 1;
}

static int
c_field(lua_State *L, const char *key)
{
  runner *r = flow__runner_need_test(L, key);
  json_t *j = get_case(L, r, flow__runner_case_id(L, r));
  flow__json_push(L, json_object_get(j, key));
  json_decref(j);
  return 1;
}

static int
c_state(lua_State *L)
{
  return c_field(L, "state");
}

static int
c_data(lua_State *L)
{
  return c_field(L, "data");
}

static int
rows(lua_State *L, int timers)
{
  runner *r = flow__runner_need_test(L, timers ? "timers" : "history");
  const char *id = flow__runner_case_id(L, r);
  char *out = NULL;
  int rc = timers ? flow_case_timers(&out, r->e, id)
                  : flow_case_history(&out, r->e, id);
  if (rc != 0)
    return flow__runner_engine_error(L, r, rc, timers ? "timers" : "history");
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  flow__json_push(L, j);
  json_decref(j);
  return 1;
}

static int
c_history(lua_State *L)
{
  return rows(L, 0);
}

static int
c_timers(lua_State *L)
{
  return rows(L, 1);
}

/* ---- case assertions ----------------------------------------------------- */

static void
describe_json(json_t *j, char *buf, size_t len)
{
  if (j == NULL) {
    snprintf(buf, len, "nothing");
    return;
  }
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  snprintf(buf, len, "%s", s ? s : "?");
  free(s);
}

/* The Lua value at idx as JSON (new reference), or raises. */
static json_t *
to_json(lua_State *L, runner *r, int idx, const char *what)
{
  if (lua_isnoneornil(L, idx))
    return json_null();
  json_t *j = NULL;
  char msg[256];
  if (flow__json_from_lua(L, idx, what, &r->alloc, &j, msg, sizeof msg) != 0)
    flow__runner_raise_at(L, r, "%s", msg);
  return j;
}

static int
c_expect_state(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_state");
  const char *id = flow__runner_case_id(L, r);
  const char *want = luaL_checkstring(L, 2);
  json_t *c = get_case(L, r, id);
  char got[128];
  snprintf(got, sizeof got, "%s",
           json_string_value(json_object_get(c, "state")));
  json_decref(c);
  if (strcmp(got, want) != 0)
    return flow__runner_fail_at(L, r,
                                "expect_state: case %s should be in state "
                                "'%s', but it is in '%s'",
                                id, want, got);
  lua_settop(L, 1);
  return 1;
}

static int
c_expect_data(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_data");
  const char *id = flow__runner_case_id(L, r);
  luaL_checktype(L, 2, LUA_TTABLE);
  json_t *want = to_json(L, r, 2, "expected");
  int rc;
  json_t *c = fetch_case(r, id, &rc);
  if (c == NULL) {
    json_decref(want);
    return flow__runner_engine_error(L, r, rc, "reading the case");
  }
  json_t *data = json_object_get(c, "data");
  char msg[MSG_MAX] = "";
  size_t n = 0;
  const char *k;
  json_t *v;
  if (json_is_object(want)) {
    json_object_foreach(want, k, v)
    {
      json_t *got = json_object_get(data, k);
      if (flow__runner_json_match(v, got, 1))
        continue;
      char a[400], b[400];
      describe_json(v, a, sizeof a);
      describe_json(got, b, sizeof b);
      int w = snprintf(msg + n, sizeof msg - n, "%sdata.%s should be %s, "
                       "but it is %s",
                       n ? "; " : "", k, a, got ? b : "not set");
      if (w > 0)
        n += (size_t)w < sizeof msg - n ? (size_t)w : sizeof msg - n - 1;
    }
  }
  json_decref(want);
  json_decref(c);
  if (n > 0)
    return flow__runner_fail_at(L, r, "expect_data: case %s: %s", id, msg);
  lua_settop(L, 1);
  return 1;
}

static int
c_expect_field(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_field");
  const char *id = flow__runner_case_id(L, r);
  const char *field = luaL_checkstring(L, 2);
  json_t *want = to_json(L, r, 3, "expected");
  int rc;
  json_t *c = fetch_case(r, id, &rc);
  if (c == NULL) {
    json_decref(want);
    return flow__runner_engine_error(L, r, rc, "reading the case");
  }
  json_t *got = json_object_get(json_object_get(c, "data"), field);
  int ok =
      json_is_null(want) ? got == NULL : flow__runner_json_match(want, got, 0);
  char a[400], b[400];
  describe_json(want, a, sizeof a);
  describe_json(got, b, sizeof b);
  json_decref(want);
  json_decref(c);
  if (!ok)
    return flow__runner_fail_at(L, r,
                                "expect_field: data.%s of case %s should be "
                                "%s, but it is %s",
                                field, id, a, got ? b : "not set");
  lua_settop(L, 1);
  return 1;
}

static int
c_expect_history(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_history");
  const char *id = flow__runner_case_id(L, r);
  luaL_checktype(L, 2, LUA_TTABLE);
  char *out = NULL;
  int rc = flow_case_history(&out, r->e, id);
  if (rc != 0)
    return flow__runner_engine_error(L, r, rc, "history");
  json_t *h = json_loads(out, 0, NULL);
  flow_free(out);
  char want[MSG_MAX], got[MSG_MAX];
  flow__join jw, jg;
  flow__join_init(&jw, want, sizeof want);
  flow__join_init(&jg, got, sizeof got);
  int ok = 1;
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    const char *ev = lua_tostring(L, -1);
    const char *hv = json_string_value(
        json_object_get(json_array_get(h, (size_t)(i - 1)), "event"));
    if (ev == NULL || hv == NULL || strcmp(ev, hv) != 0)
      ok = 0;
    flow__join_add(&jw, ", ", ev);
    lua_pop(L, 1);
  }
  if ((size_t)n != json_array_size(h))
    ok = 0;
  for (size_t i = 0; i < json_array_size(h); i++)
    flow__join_add(
        &jg, ", ",
        json_string_value(json_object_get(json_array_get(h, i), "event")));
  json_decref(h);
  if (!ok)
    return flow__runner_fail_at(L, r,
                                "expect_history: case %s should have the "
                                "events {%s}, but it has {%s}",
                                id, want, got);
  lua_settop(L, 1);
  return 1;
}

static void
timer_text(json_t *t, char *buf, size_t len)
{
  const char *ev = json_string_value(json_object_get(t, "event"));
  const char *target = json_string_value(json_object_get(t, "target"));
  snprintf(buf, len, "%s%s%s at %s", ev ? ev : "?", target ? " -> " : "",
           target ? target : "",
           json_string_value(json_object_get(t, "due_at")));
}

/* 1 when the expected timer at stack index w (an event name, or a table
   of event, at, target and kind) matches the pending timer t. */
static int
timer_matches(lua_State *L, int w, json_t *t)
{
  if (lua_type(L, w) == LUA_TSTRING) {
    const char *tev = json_string_value(json_object_get(t, "event"));
    return tev != NULL && strcmp(tev, lua_tostring(L, w)) == 0;
  }
  static const char *const keys[] = { "event", "at", "target", "kind" };
  static const char *const jkeys[] = { "event", "due_at", "target", "kind" };
  int ok = 1;
  for (size_t k = 0; k < 4 && ok; k++) {
    if (lua_getfield(L, w, keys[k]) == LUA_TSTRING) {
      const char *v = lua_tostring(L, -1);
      const char *tv = json_string_value(json_object_get(t, jkeys[k]));
      if (k == 1) {
        int64_t a, b;
        ok = tv != NULL && flow_time_parse(&a, v) == 0 &&
             flow_time_parse(&b, tv) == 0 && a == b;
      } else {
        ok = tv != NULL && strcmp(tv, v) == 0;
      }
    }
    lua_pop(L, 1);
  }
  return ok;
}

/* One step of a matching (Kuhn's augmenting path): finds a timer for the
   expected entry i among the timers lo..hi-1, moving others along. */
static int
augment(lua_State *L, json_t *ts, size_t i, size_t lo, size_t hi,
        size_t *owner, unsigned char *seen)
{
  for (size_t j = lo; j < hi; j++) {
    if (seen[j - lo])
      continue;
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    int m = timer_matches(L, lua_gettop(L), json_array_get(ts, j));
    lua_pop(L, 1);
    if (!m)
      continue;
    seen[j - lo] = 1;
    if (owner[j] == (size_t)-1 ||
        augment(L, ts, owner[j], lo, hi, owner, seen)) {
      owner[j] = i;
      return 1;
    }
  }
  return 0;
}

/*
 * The pending timers against the list at index 2, both in due order.
 * Timers due at the same moment are listed in the order they were set,
 * but compared in any order: the expected entries at the places of such
 * a run must match the timers of the run, one each.
 */
static int
timers_match(lua_State *L, runner *r, json_t *ts)
{
  size_t n = json_array_size(ts);
  size_t *owner = flow__malloc(&r->alloc, (n ? n : 1) * sizeof *owner);
  unsigned char *seen = flow__malloc(&r->alloc, n ? n : 1);
  int ok = owner != NULL && seen != NULL;
  for (size_t j = 0; ok && j < n; j++)
    owner[j] = (size_t)-1;
  for (size_t lo = 0, hi; ok && lo < n; lo = hi) {
    const char *due = json_string_value(
        json_object_get(json_array_get(ts, lo), "due_at"));
    for (hi = lo + 1; hi < n; hi++) {
      const char *d = json_string_value(
          json_object_get(json_array_get(ts, hi), "due_at"));
      if (due == NULL || d == NULL || strcmp(d, due) != 0)
        break;
    }
    for (size_t i = lo; ok && i < hi; i++) {
      memset(seen, 0, hi - lo);
      ok = augment(L, ts, i, lo, hi, owner, seen);
    }
  }
  flow__free(&r->alloc, owner);
  flow__free(&r->alloc, seen);
  return ok;
}

static int
c_expect_timers(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_timers");
  const char *id = flow__runner_case_id(L, r);
  luaL_checktype(L, 2, LUA_TTABLE);
  char *out = NULL;
  int rc = flow_case_timers(&out, r->e, id);
  if (rc != 0)
    return flow__runner_engine_error(L, r, rc, "timers");
  json_t *all = json_loads(out, 0, NULL), *ts = json_array();
  flow_free(out);
  for (size_t i = 0; i < json_array_size(all); i++) {
    json_t *t = json_array_get(all, i);
    const char *st = json_string_value(json_object_get(t, "status"));
    if (st == NULL || strcmp(st, "pending") == 0)
      json_array_append(ts, t);
  }
  json_decref(all);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  char want[MSG_MAX];
  flow__join jw;
  flow__join_init(&jw, want, sizeof want);
  for (lua_Integer i = 1; i <= n; i++) {
    int ty = lua_rawgeti(L, 2, i);
    char one[256];
    if (ty == LUA_TSTRING) {
      snprintf(one, sizeof one, "%s", lua_tostring(L, -1));
    } else if (ty == LUA_TTABLE) {
      static const char *const keys[] = { "event", "at", "target", "kind" };
      flow__join jo;
      flow__join_init(&jo, one, sizeof one);
      for (size_t k = 0; k < 4; k++) {
        if (lua_getfield(L, -1, keys[k]) == LUA_TSTRING) {
          flow__join_add(&jo, " ", keys[k]);
          flow__join_text(&jo, "=");
          flow__join_text(&jo, lua_tostring(L, -1));
        }
        lua_pop(L, 1);
      }
    } else {
      json_decref(ts);
      return flow__runner_raise_at(L, r,
                                   "expect_timers: each timer is an event "
                                   "name or a table like { event = \"after\", "
                                   "at = \"2026-02-04T09:00:00Z\" }");
    }
    lua_pop(L, 1);
    flow__join_add(&jw, ", ", "{");
    flow__join_text(&jw, one);
    flow__join_text(&jw, "}");
  }
  int ok = (size_t)n == json_array_size(ts) && timers_match(L, r, ts);
  char got[MSG_MAX];
  flow__join jg;
  flow__join_init(&jg, got, sizeof got);
  for (size_t i = 0; i < json_array_size(ts); i++) {
    char one[256];
    timer_text(json_array_get(ts, i), one, sizeof one);
    flow__join_add(&jg, "; ", one);
  }
  json_decref(ts);
  if (!ok)
    return flow__runner_fail_at(L, r,
                                "expect_timers: case %s should have the timers "
                                "%s, but it has %s",
                                id, jw.count ? want : "(none)",
                                jg.count ? got : "none");
  lua_settop(L, 1);
  return 1;
}

/*
 * The service-level status of case c: "none" (no sla), "due" (open, not
 * yet due), "warned" (sla_warning has come), "paused" (its clock is
 * stopped, not breached before), "breached" (sla_breached has
 * come, or the case closed after its due time), "met" (closed in time).
 */
static const char *
sla_status(runner *r, json_t *c, const char *id)
{
  const char *due = json_string_value(json_object_get(c, "due_at"));
  int warned = 0, breached = 0;
  const char *settled = NULL; /* what flow.sla.stop settled it as */
  char *out = NULL;
  if (flow_case_history(&out, r->e, id) == 0) {
    json_t *h = json_loads(out, 0, NULL);
    for (size_t i = 0; i < json_array_size(h); i++) {
      json_t *row = json_array_get(h, i);
      const char *ev = json_string_value(json_object_get(row, "event"));
      /* A clock that starts again (a state's own, a restart) forgets
         what the one before it did. */
      json_t *changes = json_object_get(row, "sla");
      for (size_t k = 0; k < json_array_size(changes); k++) {
        const char *ch = json_string_value(
            json_object_get(json_array_get(changes, k), "change"));
        if (ch && (strcmp(ch, "started") == 0 || strcmp(ch, "restarted") == 0)) {
          warned = breached = 0;
          settled = NULL;
        } else if (ch && strcmp(ch, "stopped") == 0) {
          const char *res = json_string_value(
              json_object_get(json_array_get(changes, k), "result"));
          settled = res && strcmp(res, "met") == 0 ? "met" : "breached";
        }
      }
      breached |= ev && strcmp(ev, "sla_breached") == 0;
      warned |= ev && strcmp(ev, "sla_warning") == 0;
    }
    json_decref(h);
    flow_free(out);
  }
  if (due == NULL)
    return settled ? settled : "none";
  int64_t d, u, now = flow_engine_now(r->e);
  flow_time_parse(&d, due);
  const char *st = json_string_value(json_object_get(c, "status"));
  if (st && strcmp(st, "closed") == 0) {
    flow_time_parse(&u, json_string_value(json_object_get(c, "updated_at")));
    /* A case closed while its clock was stopped is judged at the moment
       the clock stopped: the due time would have moved on with the wait. */
    const char *paused = json_string_value(json_object_get(c, "sla_paused_at"));
    if (paused)
      flow_time_parse(&u, paused);
    return breached || u > d ? "breached" : "met";
  }
  if (breached)
    return "breached";
  if (json_is_string(json_object_get(c, "sla_paused_at")))
    return "paused";
  if (now > d)
    return "breached";
  return warned ? "warned" : "due";
}

static int
c_expect_sla(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_sla");
  const char *id = flow__runner_case_id(L, r);
  const char *want = luaL_checkstring(L, 2);
  static const char *const known[] = { "none",   "due", "warned", "breached",
                                       "met",    "paused", NULL };
  int k = 0;
  while (known[k] && strcmp(known[k], want) != 0)
    k++;
  if (known[k] == NULL)
    return flow__runner_raise_at(L, r,
                                 "expect_sla: '%s' is not a service-level "
                                 "status (use due, warned, paused, "
                                 "breached, met or none)",
                                 want);
  json_t *c = get_case(L, r, id);
  const char *got = sla_status(r, c, id);
  char due[40];
  snprintf(due, sizeof due, "%s",
           json_is_string(json_object_get(c, "due_at"))
               ? json_string_value(json_object_get(c, "due_at"))
               : "none");
  json_decref(c);
  if (strcmp(got, want) != 0)
    return flow__runner_fail_at(L, r,
                                "expect_sla: the service level of case %s "
                                "should be '%s', but it is '%s' (due %s)",
                                id, want, got, due);
  if (!lua_isnoneornil(L, 3)) {
    int64_t a, b;
    const char *wd = luaL_checkstring(L, 3);
    if (flow_time_parse(&a, wd) != 0 || flow_time_parse(&b, due) != 0 ||
        a != b)
      return flow__runner_fail_at(L, r,
                                  "expect_sla: case %s should be due at %s, "
                                  "but it is due at %s",
                                  id, wd, due);
  }
  lua_settop(L, 1);
  return 1;
}

/* An expected refusal: rc as the call returned it.  When the call was
   accepted after all, the failure shows the case as it left it (case_id),
   so the author sees which data got through. */
static int
refusal_result(lua_State *L, runner *r, int rc, int want, const char *what,
               const char *case_id)
{
  if (rc == 0) {
    char *now = NULL;
    if (case_id && case_id[0])
      flow_case_get(&now, r->e, case_id);
    char shown[400];
    snprintf(shown, sizeof shown, "%s", now ? now : "");
    if (now && strlen(now) >= sizeof shown)
      memcpy(shown + sizeof shown - 4, "...", 4);
    flow_free(now);
    return flow__runner_fail_at(L, r,
                                "%s should have been refused with %s, but it "
                                "was accepted%s%s",
                                what, flow_err_name(want),
                                shown[0] ? "; the case is now " : "", shown);
  }
  if (rc != want)
    return flow__runner_fail_at(L, r,
                                "%s should have been refused with %s, but it "
                                "was refused with %s: %s",
                                what, flow_err_name(want), flow_err_name(rc),
                                flow_errmsg(r->e));
  return 0;
}

static int
c_expect_refused(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_refused");
  const char *id = flow__runner_case_id(L, r);
  int top = lua_gettop(L);
  if (top < 3)
    return flow__runner_raise_at(L, r,
                                 "expect_refused needs an event and an error "
                                 "name: c:expect_refused(\"collect\", payload, "
                                 "opts, \"FLOW_EPERM\")");
  int want = flow__runner_check_code_arg(L, r, top);
  lua_settop(L, top - 1);
  lua_settop(L, 4); /* event, payload, opts (nil when not given) */
  char what[128];
  snprintf(what, sizeof what, "event '%.60s' on case %s",
           luaL_checkstring(L, 2), id);
  int rc = do_signal(L, r, id, 2);
  refusal_result(L, r, rc, want, what, id);
  /* The refusal's message, as expect_refused and expect_open_refused
     give it, for checks of what it says. */
  lua_pushstring(L, flow_errmsg(r->e));
  return 1;
}

int
flow__runner_l_expect_open_refused(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_open_refused");
  int top = lua_gettop(L);
  if (top < 2)
    return flow__runner_raise_at(L, r,
                                 "expect_open_refused needs a service and an "
                                 "error name: expect_open_refused("
                                 "\"missed_bin\", data, opts, \"FLOW_EDATA\")");
  int want = flow__runner_check_code_arg(L, r, top);
  lua_settop(L, top - 1);
  lua_settop(L, 3);
  char what[128], id[24];
  snprintf(what, sizeof what, "opening a case of %.60s",
           luaL_checkstring(L, 1));
  id[0] = 0;
  int rc = do_open(L, r, 1, id, sizeof id);
  refusal_result(L, r, rc, want, what, id);
  lua_pushstring(L, flow_errmsg(r->e)); /* for checks of what it says */
  return 1;
}

static const luaL_Reg case_methods[] = {
  { "signal", c_signal },
  { "get", c_get },
  { "state", c_state },
  { "data", c_data },
  { "history", c_history },
  { "timers", c_timers },
  { "actions", flow__runner_c_actions },
  { "tasks", flow__runner_c_tasks },
  { "incidents", flow__runner_c_incidents },
  { "retry", flow__runner_c_retry },
  { "dismiss", flow__runner_c_dismiss },
  { "claim", flow__runner_c_claim },
  { "release", flow__runner_c_release },
  { "complete", flow__runner_c_complete },
  { "cancel", flow__runner_c_cancel },
  { "expect_state", c_expect_state },
  { "expect_data", c_expect_data },
  { "expect_field", c_expect_field },
  { "expect_history", c_expect_history },
  { "expect_timers", c_expect_timers },
  { "expect_actions", flow__runner_c_expect_actions },
  { "expect_tasks", flow__runner_c_expect_tasks },
  { "expect_claim_refused", flow__runner_c_expect_claim_refused },
  { "expect_complete_refused", flow__runner_c_expect_complete_refused },
  { "expect_sla", c_expect_sla },
  { "expect_refused", c_expect_refused },
  { NULL, NULL },
};

/* The case metatable: methods through __index, read-only handles. */
void
flow__runner_case_install(lua_State *L, runner *r)
{
  lua_createtable(L, 0, 2);
  lua_createtable(L, 0, 32);
  lua_pushlightuserdata(L, r);
  luaL_setfuncs(L, case_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "case");
  lua_setfield(L, -2, "__name");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &case_mt_key);
}
