/*
 * A service's rule across fields: `validate = function(data)`, run on
 * new case data after the handlers are done, as a unit of work of its own
 * with the service's budgets.  It gets a copy of the data (what it does
 * to it is not kept) and may not request actions, timers or tasks: those
 * belong to the events.
 */
#include "script/script_int.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"
#include "util/util_limits.h"

/* The most a message from validate may hold: it is shown to people. */
#define RULE_MESSAGE_MAX 200

enum { V_OK, V_NOT_TABLE, V_KEY, V_VALUE, V_NOMEM };

typedef struct validate_args {
  flow__sandbox *sb;
  const flow__service *svc;
  json_t *data;
  int ref;
  lua_State *T;      /* the thread it runs on */
  json_t *rules;     /* out: field -> message, or NULL for none */
  int bad;           /* V_* */
  char detail[160];
} validate_args;

/* Makes the thread and puts the function and a copy of the data on it. */
static int
setup_p(lua_State *L)
{
  validate_args *a = lua_touserdata(L, 1);
  a->T = lua_newthread(L); /* stays on the main stack while it runs */
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
  flow__json_push(L, a->data);
  if (!lua_checkstack(a->T, 4))
    return luaL_error(L, "out of memory");
  lua_xmove(L, a->T, 2);
  return 0;
}

/* Reads the function's result (on T) into a->rules. */
static int
collect_p(lua_State *L)
{
  validate_args *a = lua_touserdata(L, 1);
  lua_State *T = a->T;
  int ty = lua_type(T, -1);
  if (ty == LUA_TNIL || ty == LUA_TNONE)
    return 0;
  if (ty != LUA_TTABLE) {
    a->bad = V_NOT_TABLE;
    snprintf(a->detail, sizeof a->detail, "%s", lua_typename(T, ty));
    return 0;
  }
  json_t *rules = json_object();
  if (rules == NULL) {
    a->bad = V_NOMEM;
    return 0;
  }
  lua_pushnil(T);
  while (lua_next(T, -2)) {
    flow__sb_charge(T, 1);
    const char *key = lua_type(T, -2) == LUA_TSTRING ? lua_tostring(T, -2)
                                                     : NULL;
    const flow__field *f = key ? flow__service_field(a->svc, key) : NULL;
    size_t mlen = 0;
    const char *msg = lua_type(T, -1) == LUA_TSTRING
                          ? lua_tolstring(T, -1, &mlen)
                          : NULL;
    if (f == NULL) {
      a->bad = V_KEY;
      if (key)
        snprintf(a->detail, sizeof a->detail, "'%.60s', which is not a field",
                 key);
      else
        snprintf(a->detail, sizeof a->detail, "a key of type %s",
                 lua_typename(T, lua_type(T, -2)));
    } else if (msg == NULL || mlen == 0 || mlen > RULE_MESSAGE_MAX ||
               memchr(msg, 0, mlen) != NULL ||
               !flow__utf8_valid(msg, mlen)) {
      a->bad = V_VALUE;
      snprintf(a->detail, sizeof a->detail, "%s", f->name);
    } else if (json_object_set_new(rules, f->name, json_string(msg)) != 0) {
      a->bad = V_NOMEM;
    }
    lua_pop(T, 1);
    if (a->bad) {
      lua_pop(T, 1);
      json_decref(rules);
      return 0;
    }
  }
  if (json_object_size(rules) == 0)
    json_decref(rules);
  else
    a->rules = rules;
  return 0;
}

int
flow__sandbox_validate(flow__sandbox *sb, const flow__service *svc,
                       json_t *data, int64_t now, json_t **rules,
                       flow__err *err)
{
  *rules = NULL;
  if (!FLOW__HAS_VALIDATE(svc))
    return 0;
  if (sb->run_active)
    return flow__err_set(err, FLOW_EMISUSE,
                         "flow__sandbox_validate: a run is open");
  lua_State *L = sb->L;
  const char *chunk = svc->chunkname ? svc->chunkname : "the service";
  char where[300];
  snprintf(where, sizeof where, "%s:%d", chunk, svc->validate_line);
  lua_settop(L, 0);
  sb->svc = svc;
  sb->now = now;
  flow__sb_start_as(sb, FLOW__WHAT_FUNC, NULL, chunk, svc->validate_fn);
  validate_args a;
  memset(&a, 0, sizeof a);
  a.sb = sb;
  a.svc = svc;
  a.data = data;
  a.ref = svc->validate_fn;
  int st = flow__sb_protect(sb, setup_p, &a);
  int rc = flow__sb_outcome(sb, st, NULL, err);
  if (rc == 0) {
    st = lua_pcall(a.T, 1, 1, 0);
    if (st != LUA_OK)
      lua_xmove(a.T, L, 1); /* the outcome reads it on the main thread */
    rc = flow__sb_outcome(sb, st, where, err);
  }
  if (rc == 0) {
    st = flow__sb_protect(sb, collect_p, &a);
    rc = flow__sb_outcome(sb, st, NULL, err);
  }
  if (rc == FLOW_EREFUSED) {
    rc = flow__err_set(err, FLOW_ESCRIPT,
                       "%s: validate refused with flow.fail(\"%.100s\"); "
                       "return { field = \"message\" } instead, so the "
                       "message names its field",
                       where, sb->refuse_msg);
  } else if (rc == 0 && a.bad == V_NOMEM) {
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory reading what %s "
                       "returned", where);
  } else if (rc == 0 && a.bad == V_NOT_TABLE) {
    rc = flow__err_set(err, FLOW_ESCRIPT,
                       "%s: validate must return nothing, or a table of "
                       "field = message like { end_date = \"must be after "
                       "the start date\" }, not a %s",
                       where, a.detail);
  } else if (rc == 0 && a.bad == V_KEY) {
    rc = flow__err_set(err, FLOW_ESCRIPT,
                       "%s: validate returned a message for %s of %s (use "
                       "the name of the field the message is about)",
                       where, a.detail, svc->name);
  } else if (rc == 0 && a.bad == V_VALUE) {
    rc = flow__err_set(err, FLOW_ESCRIPT,
                       "%s: validate's message for %s must be text of 1 to "
                       "%d bytes",
                       where, a.detail, RULE_MESSAGE_MAX);
  }
  if (rc == 0)
    *rules = a.rules;
  else
    json_decref(a.rules);
  flow__sb_stop(sb);
  lua_settop(L, 0);
  sb->svc = NULL;
  /* Whatever it did to the upvalues of the script's functions is undone,
     as after a run. */
  flow__freeze_restore(L);
  return rc;
}
