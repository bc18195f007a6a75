/*
 * flow.open(service, data): a handler or hook opens another case -- of
 * its own service or another -- with the transition.  The engine checks
 * the data against that service's fields here, so a mistake is reported
 * at the line of the call, and gives the new case its id at once, so the
 * script can keep it (case.data.contacts[n].case_id = id).  The case
 * itself opens when the transition is written, in the same transaction:
 * if it cannot (its own scripts refuse), the whole transition is refused
 * and nothing of either case is written.
 */
#include "script/script_int.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

static flow__sandbox *
open_sb(lua_State *L)
{
  return *(flow__sandbox **)lua_getextraspace(L);
}

int
flow__sb_open(lua_State *L)
{
  flow__sandbox *sb = open_sb(L);
  size_t n = 0;
  const char *service = lua_type(L, 1) == LUA_TSTRING
                            ? lua_tolstring(L, 1, &n)
                            : NULL;
  if (service == NULL || n == 0 || n > FLOW__MAX_NAME ||
      !flow__name_ok(service, n, 0))
    return luaL_error(L, "flow.open: the first argument must be a service "
                         "name, like flow.open(\"trace_contact\", { ... })");
  char who[96];
  snprintf(who, sizeof who, "flow.open('%s')", service);
  int dt = lua_type(L, 2);
  if (dt != LUA_TTABLE)
    return luaL_error(L, "%s: the second argument must be the new case's "
                         "data, a table like { phone = \"...\" }, not a %s",
                      who, lua_typename(L, dt));
  if (sb->calls == NULL || sb->opener == NULL)
    return luaL_error(L, "%s: cases can only be opened while a case "
                         "handles an event (in a handler or hook)",
                      who);
  if (sb->nopens >= FLOW__MAX_OPENS_PER_RUN)
    return luaL_error(L, "%s: an event may open at most %d cases (open "
                         "the rest in a later event)",
                      who, FLOW__MAX_OPENS_PER_RUN);
  flow__sb_charge(L, 2000); /* the field checks and the id, done in C */
  size_t held = 0;
  json_t *data = flow__sb_object_arg(L, sb, 2, "data", who,
                                     "the data must be a table with named "
                                     "keys ({ phone = ... }), not a list",
                                     &held);
  char msg[600];
  msg[0] = 0;
  int64_t id = 0;
  int rc = sb->opener(sb->opener_ctx, service, data, &id, msg, sizeof msg);
  if (rc != 0) {
    json_decref(data);
    if (rc == FLOW_ENOMEM) {
      sb->enomem = 1;
      return luaL_error(L, "out of memory");
    }
    if (rc == FLOW_EDATA && !sb->refused) {
      /* The sender's data, most likely: refused as data, like the
         case's own (FLOW_EDATA), at this line. */
      luaL_where(L, 1);
      snprintf(sb->refuse_where, sizeof sb->refuse_where, "%s",
               lua_tostring(L, -1));
      lua_pop(L, 1);
      snprintf(sb->refuse_msg, sizeof sb->refuse_msg, "%s %s: %s",
               sb->refuse_where, who, msg);
      sb->refused = 2;
      return luaL_error(L, "%s", sb->refuse_msg);
    }
    return luaL_error(L, "%s: %s", who, msg);
  }
  /* Where the call is, for the engine's message if the case cannot open
     when the transition is written. */
  lua_Debug ar;
  int line = 0;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar))
    line = ar.currentline;
  json_t *req = json_pack("{s:s, s:I, s:o, s:i}", "open", service, "id",
                          (json_int_t)id, "data", data, "line", line);
  if (req == NULL || json_array_append_new(sb->calls, req) != 0) {
    sb->enomem = 1;
    return luaL_error(L, "out of memory");
  }
  sb->nopens++;
  sb->extra += held + 128;
  if (sb->limit_on && sb->mem + sb->extra > sb->mem_limit)
    return flow__sb_kill_mem(L);
  char idtext[24];
  snprintf(idtext, sizeof idtext, "%lld", (long long)id);
  lua_pushstring(L, idtext);
  return 1;
}

/*
 * flow.signal(case_id, event, payload): sends an event to another case,
 * after this transition commits.  It is written with the transition as a
 * timer of that case, due now, so it is never lost and never sent twice;
 * the loop fires it like any timer, and a case that refuses it (a state
 * that does not take the event, a handler that fails) gets an incident,
 * while this case's change stands.  A case that has closed by then gets
 * nothing.  The case must exist when the transition is written.
 */
int
flow__sb_signal(lua_State *L)
{
  flow__sandbox *sb = open_sb(L);
  const char *id = NULL;
  char idbuf[24];
  if (lua_type(L, 1) == LUA_TSTRING) {
    id = lua_tostring(L, 1);
  } else if (lua_isinteger(L, 1)) {
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)lua_tointeger(L, 1));
    id = idbuf;
  }
  int ok = id != NULL && *id != 0 && strlen(id) <= 19;
  for (const char *p = id; ok && *p; p++)
    ok = *p >= '0' && *p <= '9';
  if (!ok || *id == '0')
    return luaL_error(L, "flow.signal: the first argument must be a case "
                         "id, like flow.signal(contact.case_id, "
                         "\"index_withdrawn\", { ... })");
  size_t n = 0;
  const char *event = lua_type(L, 2) == LUA_TSTRING
                          ? lua_tolstring(L, 2, &n)
                          : NULL;
  if (event == NULL || n == 0 || n > FLOW__MAX_NAME ||
      !flow__name_ok(event, n, 0))
    return luaL_error(L, "flow.signal(%s): the second argument must be an "
                         "event name, like \"index_withdrawn\"",
                      id);
  char who[128];
  snprintf(who, sizeof who, "flow.signal(%s, '%s')", id, event);
  int pt = lua_type(L, 3);
  if (pt != LUA_TNONE && pt != LUA_TNIL && pt != LUA_TTABLE)
    return luaL_error(L, "%s: the payload must be a table, not a %s", who,
                      lua_typename(L, pt));
  if (sb->calls == NULL)
    return luaL_error(L, "%s: events can only be sent while a case "
                         "handles an event (in a handler or hook)",
                      who);
  if (sb->ntimers >= FLOW__MAX_TIMERS_PER_RUN)
    return luaL_error(L, "%s: an event may set at most %d timers and "
                         "signals",
                      who, FLOW__MAX_TIMERS_PER_RUN);
  size_t held = 0;
  json_t *payload = flow__sb_object_arg(L, sb, 3, "payload", who,
                                        "the payload must be a table with "
                                        "named keys, not a list",
                                        &held);
  lua_Debug ar;
  int line = 0;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar))
    line = ar.currentline;
  json_t *req = json_pack("{s:s, s:s, s:o, s:i}", "signal_case", id,
                          "event", event, "payload", payload, "line", line);
  if (req == NULL || json_array_append_new(sb->calls, req) != 0) {
    sb->enomem = 1;
    return luaL_error(L, "out of memory");
  }
  sb->ntimers++;
  sb->extra += held + 128;
  if (sb->limit_on && sb->mem + sb->extra > sb->mem_limit)
    return flow__sb_kill_mem(L);
  return 0;
}
