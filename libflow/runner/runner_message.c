/*
 * Messages in a test (`flow test`): the test is the host that sends them.
 *
 *   local m = send("payment_received", "PAY-1", { amount = 35 })
 *   m.status          -- "delivered", "buffered" or "incident"
 *   send("payment_received", "PAY-2", {}, { ttl = "1h" })
 *   messages("expired"), messages({ name = "payment_received" })
 *
 * A message goes to the open case whose correlated field holds its key,
 * or waits ("buffered") until a case takes the key or its time to live
 * runs out on the test's virtual clock ("expired").  A delivery the case
 * refuses is an incident of the case (c:incidents()), not a test error:
 * the test sees it in the message's status.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/runner_int.h"

/* The time to live a duration at idx gives, in ms from now; raises when
   it is not one. */
static int64_t
ttl_of(lua_State *L, runner *r, int idx)
{
  flow__duration d;
  flow__err err;
  flow__err_clear(&err);
  const char *text = lua_tostring(L, idx);
  int64_t now = flow_engine_now(r->e), until;
  if (lua_type(L, idx) != LUA_TSTRING ||
      flow__duration_parse(text, &d, &err) != 0)
    flow__runner_raise_at(L, r, "send: ttl: %s",
                          err.msg[0] ? err.msg
                                     : "must be a duration like \"2d\"");
  if (flow__calendar_add(&r->e->cal, now, &d, &until) || until - now <= 0)
    flow__runner_raise_at(L, r, "send: ttl '%s' is not a time to live",
                          text);
  return until - now;
}

int
flow__runner_l_send(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "send");
  if (lua_type(L, 1) != LUA_TSTRING ||
      (lua_type(L, 2) != LUA_TSTRING && !lua_isinteger(L, 2)))
    return flow__runner_raise_at(L, r,
                                 "send needs the message's name and its "
                                 "key: send(\"payment_received\", "
                                 "\"PAY-1\", { amount = 35 })");
  const char *name = lua_tostring(L, 1);
  const char *key = lua_tostring(L, 2); /* a number becomes its text */
  int64_t ttl = 0;
  if (lua_type(L, 4) == LUA_TSTRING) {
    ttl = ttl_of(L, r, 4);
  } else if (lua_istable(L, 4)) {
    lua_pushnil(L);
    while (lua_next(L, 4)) {
      lua_pop(L, 1);
      const char *k =
          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
      if (strcmp(k, "ttl") != 0 && strcmp(k, "at") != 0)
        return flow__runner_raise_at(L, r,
                                     "send: unknown option '%.60s' "
                                     "(options are ttl and at)",
                                     k);
    }
    if (lua_getfield(L, 4, "at") != LUA_TNIL)
      flow__runner_move_clock(L, r, flow__runner_check_time(L, r, -1, "at"));
    if (lua_getfield(L, 4, "ttl") != LUA_TNIL)
      ttl = ttl_of(L, r, -1);
    lua_pop(L, 2);
  } else if (!lua_isnoneornil(L, 4)) {
    return flow__runner_raise_at(L, r,
                                 "send: the options are a table like { ttl "
                                 "= \"1h\" } (or the time to live, like "
                                 "\"1h\"), not a %s",
                                 luaL_typename(L, 4));
  }
  char what[128];
  snprintf(what, sizeof what, "send '%.60s'", name);
  char *payload = flow__runner_object_text(L, r, 3, "payload"); /* last */
  char *out = NULL;
  int rc = flow_message_send(&out, r->e, name, key, payload, ttl);
  free(payload);
  if (rc != 0)
    return flow__runner_engine_error(L, r, rc, what);
  json_t *m = json_loads(out, 0, NULL);
  flow_free(out);
  if (m == NULL)
    return luaL_error(L, "out of memory");
  const char *c = json_string_value(json_object_get(m, "case"));
  if (c)
    snprintf(r->last_case, sizeof r->last_case, "%s", c);
  flow__json_push(L, m);
  json_decref(m);
  flow__runner_answer(L, r); /* what the delivery asked of mocks */
  return 1;
}

int
flow__runner_l_messages(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "messages");
  const char *name = NULL, *key = NULL, *status = NULL;
  if (lua_type(L, 1) == LUA_TSTRING) {
    status = lua_tostring(L, 1);
  } else if (lua_istable(L, 1)) {
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      lua_pop(L, 1);
      const char *k =
          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
      if (strcmp(k, "name") != 0 && strcmp(k, "key") != 0 &&
          strcmp(k, "status") != 0)
        return flow__runner_raise_at(L, r,
                                     "messages: unknown filter '%.60s' "
                                     "(filters are name, key and status)",
                                     k);
    }
    lua_getfield(L, 1, "name");
    lua_getfield(L, 1, "key");
    lua_getfield(L, 1, "status");
    name = lua_tostring(L, -3); /* kept on the stack */
    key = lua_tostring(L, -2);
    status = lua_tostring(L, -1);
  } else if (!lua_isnoneornil(L, 1)) {
    return flow__runner_raise_at(L, r,
                                 "messages takes a status (\"buffered\") or "
                                 "a filter like { name = "
                                 "\"payment_received\" }, not a %s",
                                 luaL_typename(L, 1));
  }
  char *out = NULL;
  int rc = flow_messages_list(&out, r->e, name, key, status);
  if (rc != 0)
    return flow__runner_engine_error(L, r, rc, "messages");
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  if (j == NULL)
    return luaL_error(L, "out of memory");
  flow__json_push(L, j);
  json_decref(j);
  return 1;
}
