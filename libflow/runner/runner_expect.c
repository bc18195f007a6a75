/*
 * Assertions on plain values (`flow test`): expect_equal, expect(value)
 * and its methods (to_be, to_equal, to_contain, to_be_nil, to_be_truthy),
 * fail, expect_refused around a function, and what `mock` says of names
 * it does not have.
 * Values are compared as JSON by flow__runner_json_match, which the case
 * assertions use too.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/runner_int.h"

/* ---- matching values ----------------------------------------------------- */

/* 1 when actual matches expected: numbers by value, objects as a subset
   of actual when subset is set (recursively), everything else equal. */
int
flow__runner_json_match(json_t *expected, json_t *actual, int subset)
{
  if (expected == NULL || actual == NULL)
    return expected == actual;
  if (json_is_number(expected) && json_is_number(actual))
    return json_number_value(expected) == json_number_value(actual);
  if (json_is_object(expected) && json_is_object(actual)) {
    if (!subset && json_object_size(expected) != json_object_size(actual))
      return 0;
    const char *k;
    json_t *v;
    json_object_foreach(expected, k, v)
    {
      if (!flow__runner_json_match(v, json_object_get(actual, k), subset))
        return 0;
    }
    return 1;
  }
  if (json_is_array(expected) && json_is_array(actual)) {
    if (json_array_size(expected) != json_array_size(actual))
      return 0;
    for (size_t i = 0; i < json_array_size(expected); i++)
      if (!flow__runner_json_match(json_array_get(expected, i),
                                   json_array_get(actual, i), subset))
        return 0;
    return 1;
  }
  /* An empty Lua table reads as {} or []: either matches an empty one. */
  if ((json_is_array(expected) || json_is_object(expected)) &&
      (json_is_array(actual) || json_is_object(actual)))
    return json_array_size(expected) + json_object_size(expected) == 0 &&
           json_array_size(actual) + json_object_size(actual) == 0;
  return json_equal(expected, actual);
}

/* Where actual first fails to match expected, an object compared as a
   subset: "error is \"x\", not \"y\"" for its first key that differs
   (nested keys joined with dots), into buf.  Nothing when they match. */
void
flow__runner_json_diff(json_t *expected, json_t *actual, char *buf,
                       size_t len)
{
  buf[0] = 0;
  if (!json_is_object(expected) || !json_is_object(actual))
    return;
  const char *k;
  json_t *v;
  json_object_foreach(expected, k, v)
  {
    json_t *a = json_object_get(actual, k);
    if (flow__runner_json_match(v, a, 1))
      continue;
    if (json_is_object(v) && json_is_object(a)) {
      char inner[256];
      flow__runner_json_diff(v, a, inner, sizeof inner);
      snprintf(buf, len, "%s.%s", k, inner);
      return;
    }
    char *vt = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char *at = a ? json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS |
                                     JSON_ENCODE_ANY)
                 : NULL;
    snprintf(buf, len, "%s is %.120s, not %.120s", k, at ? at : "not set",
             vt ? vt : "?");
    free(vt);
    free(at);
    return;
  }
}

/* ---- plain values -------------------------------------------------------- */

/* The value at idx as short text for a message, never running a
   metamethod: JSON when it is JSON, else its type. */
static void
describe(runner *r, lua_State *L, int idx, char *buf, size_t len)
{
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    snprintf(buf, len, "nil");
    return;
  case LUA_TBOOLEAN:
  case LUA_TNUMBER:
  case LUA_TSTRING:
  case LUA_TTABLE: {
    json_t *j = NULL;
    char msg[128];
    if (flow__json_from_lua(L, idx, "value", &r->alloc, &j, msg,
                            sizeof msg) == 0 &&
        j != NULL) {
      char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS |
                                  JSON_ENCODE_ANY);
      json_decref(j);
      if (s) {
        if (strlen(s) > 300)
          snprintf(buf, len, "%.297s...", s);
        else
          snprintf(buf, len, "%s", s);
        free(s);
        return;
      }
    }
    json_decref(j);
    snprintf(buf, len, "a %s", luaL_typename(L, idx));
    return;
  }
  default:
    snprintf(buf, len, "a %s", luaL_typename(L, idx));
  }
}

/* 1 when the values at a and b are equal (tables compared as JSON). */
static int
values_equal(lua_State *L, runner *r, int a, int b)
{
  if (lua_type(L, a) == LUA_TTABLE && lua_type(L, b) == LUA_TTABLE) {
    json_t *x = NULL, *y = NULL;
    char msg[128];
    int ok = flow__json_from_lua(L, a, "value", &r->alloc, &x, msg,
                                 sizeof msg) == 0 &&
             flow__json_from_lua(L, b, "value", &r->alloc, &y, msg,
                                 sizeof msg) == 0 &&
             flow__runner_json_match(x, y, 0);
    if (x == NULL || y == NULL)
      ok = lua_rawequal(L, a, b);
    json_decref(x);
    json_decref(y);
    return ok;
  }
  return lua_rawequal(L, a, b);
}

int
flow__runner_l_expect_equal(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_equal");
  lua_settop(L, 2);
  if (!values_equal(L, r, 1, 2)) {
    char a[400], b[400];
    describe(r, L, 1, a, sizeof a);
    describe(r, L, 2, b, sizeof b);
    return flow__runner_fail_at(L, r, "expect_equal: got %s, expected %s", a,
                                b);
  }
  return 0;
}

/* expect(value).to_be(x) and friends: closures over (runner, value), so
   they are called with a dot, the value in upvalue 2. */
static int
x_to_be(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "to_be");
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  if (!values_equal(L, r, 2, 1)) {
    char a[400], b[400];
    describe(r, L, 2, a, sizeof a);
    describe(r, L, 1, b, sizeof b);
    return flow__runner_fail_at(L, r, "expected %s, got %s", b, a);
  }
  return 0;
}

static int
x_to_contain(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "to_contain");
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  int ok = 0;
  if (lua_type(L, 2) == LUA_TSTRING && lua_type(L, 1) == LUA_TSTRING) {
    ok = strstr(lua_tostring(L, 2), lua_tostring(L, 1)) != NULL;
  } else if (lua_type(L, 2) == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    for (lua_Integer i = 1; i <= n && !ok; i++) {
      lua_rawgeti(L, 2, i);
      ok = values_equal(L, r, -1, 1);
      lua_pop(L, 1);
    }
  }
  if (!ok) {
    char a[400], b[400];
    describe(r, L, 2, a, sizeof a);
    describe(r, L, 1, b, sizeof b);
    return flow__runner_fail_at(L, r, "expected %s to contain %s", a, b);
  }
  return 0;
}

static int
x_to_be_nil(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "to_be_nil");
  lua_pushvalue(L, lua_upvalueindex(2));
  if (!lua_isnil(L, -1)) {
    char a[400];
    describe(r, L, -1, a, sizeof a);
    return flow__runner_fail_at(L, r, "expected nil, got %s", a);
  }
  return 0;
}

static int
x_to_be_truthy(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "to_be_truthy");
  lua_pushvalue(L, lua_upvalueindex(2));
  if (!lua_toboolean(L, -1)) {
    char a[400];
    describe(r, L, -1, a, sizeof a);
    return flow__runner_fail_at(L, r, "expected a true value, got %s", a);
  }
  return 0;
}

static const luaL_Reg expect_methods[] = {
  { "to_be", x_to_be },
  { "to_equal", x_to_be },
  { "to_contain", x_to_contain },
  { "to_be_nil", x_to_be_nil },
  { "to_be_truthy", x_to_be_truthy },
  { NULL, NULL },
};

int
flow__runner_l_expect(lua_State *L)
{
  lua_settop(L, 1);
  lua_createtable(L, 0, 5);
  for (const luaL_Reg *m = expect_methods; m->name; m++) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, m->func, 2);
    lua_setfield(L, -2, m->name);
  }
  return 1;
}

int
flow__runner_l_fail(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "fail");
  return flow__runner_fail_at(L, r, "%s", luaL_optstring(L, 1, "failed"));
}

int
flow__runner_l_expect_refused(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_refused");
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int want = flow__runner_check_code_arg(L, r, 2);
  r->last_code = 0;
  lua_pushvalue(L, 1);
  int st = lua_pcall(L, 0, 0, 0);
  flow__sb_check(L); /* a budget that ran out is not a refusal */
  if (r->failed)
    return lua_error(L); /* an assertion inside failed: keep it */
  if (st == LUA_OK)
    return flow__runner_fail_at(L, r,
                                "expected the call to be refused with %s, but "
                                "it was accepted",
                                flow_err_name(want));
  if (r->last_code == 0) {
    char msg[512];
    flow__sb_errobj(L, -1, msg, sizeof msg);
    return flow__runner_fail_at(L, r,
                                "expected the call to be refused with %s, but "
                                "it threw: %s",
                                flow_err_name(want), msg);
  }
  if (r->last_code != want) {
    char msg[512];
    flow__sb_errobj(L, -1, msg, sizeof msg);
    return flow__runner_fail_at(L, r,
                                "expected the call to be refused with %s, "
                                "but: %s",
                                flow_err_name(want), msg);
  }
  r->last_code = 0;
  /* The refusal's message, without the "FILE:LINE: " it was raised
     with, for checks of what it says. */
  const char *m = lua_tostring(L, -1);
  size_t n = strlen(r->path);
  if (m && strncmp(m, r->path, n) == 0 && m[n] == ':') {
    const char *p = strchr(m + n + 1, ':');
    if (p && p[1] == ' ')
      m = p + 2;
  }
  lua_pushstring(L, m ? m : "");
  return 1;
}

/* mock.anything but action: there is nothing else to mock.  The test is
   the person who does a task and the host that sends a message. */
int
flow__runner_l_mock_index(lua_State *L)
{
  runner *r = flow__runner_of(L);
  return flow__runner_raise_at(
      L, r,
      "there is no mock.%s: mock.action answers actions; a test does a "
      "case's tasks itself (c:claim, c:complete) and sends messages with "
      "send(name, key, payload)",
      lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
}
