/*
 * flow.sla: the case's service level from a handler or hook.
 *
 *   flow.sla.pause("waiting for the resident's evidence")
 *   flow.sla.resume()
 *   flow.sla.restart("20 working days")
 *   flow.sla.restart{ within = "20 working days", warn = "15 working days" }
 *   flow.sla.stop()      the promise is kept (or broken) now, though the
 *                        case stays open: met, or breached when late
 *
 * Each is checked at its call, so a mistake names its line, and queued
 * with the transition's other requests; the engine applies them in order
 * when it commits (engine_sla.c).  Pausing a clock that is stopped, or
 * resuming one that runs, changes nothing.
 */
#include "script/script_int.h"

#include <lauxlib.h>
#include <string.h>

#define MAX_REASON 200

static flow__sandbox *
sla_sb(lua_State *L)
{
  return *(flow__sandbox **)lua_getextraspace(L);
}

/* Queues req (owned) as flow.sla.<fn>, charged like a timer. */
static int
queue(lua_State *L, const char *fn, json_t *req)
{
  flow__sandbox *sb = sla_sb(L);
  if (sb->calls == NULL) {
    json_decref(req);
    return luaL_error(L,
                      "flow.sla.%s: the service level can only change while "
                      "a case handles an event (in a handler or hook)",
                      fn);
  }
  if (sb->ntimers >= FLOW__MAX_TIMERS_PER_RUN) {
    json_decref(req);
    return luaL_error(L,
                      "flow.sla.%s: an event may set at most %d timers and "
                      "service-level changes",
                      fn, FLOW__MAX_TIMERS_PER_RUN);
  }
  if (req == NULL || json_array_append_new(sb->calls, req) != 0) {
    sb->enomem = 1;
    return luaL_error(L, "out of memory");
  }
  sb->ntimers++;
  sb->extra += 160;
  if (sb->limit_on && sb->mem + sb->extra > sb->mem_limit)
    return flow__sb_kill_mem(L);
  return 0;
}

static const char *
duration_arg(lua_State *L, int idx, const char *what)
{
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L,
               "flow.sla.restart: %s must be a duration like \"20 working "
               "days\", not a %s",
               what, luaL_typename(L, idx));
  const char *s = lua_tostring(L, idx);
  flow__duration d;
  flow__err perr;
  flow__err_clear(&perr);
  if (strlen(s) != lua_rawlen(L, idx) ||
      flow__duration_parse(s, &d, &perr) != 0)
    luaL_error(L, "flow.sla.restart: %s: %s", what,
               perr.msg[0] ? perr.msg : "not a duration");
  return s;
}

static int
sla_restart(lua_State *L)
{
  const char *within, *warn = NULL;
  if (lua_type(L, 1) == LUA_TTABLE) {
    flow__frozen_thaw_arg(L, 1);
    static const char *const known[] = { "within", "warn", NULL };
    flow__sb_known_keys(L, 1, known, "flow.sla.restart", "key",
                        "it takes within and warn");
    if (lua_getfield(L, 1, "within") == LUA_TNIL)
      return luaL_error(L, "flow.sla.restart needs within = \"<duration>\", "
                           "like \"20 working days\"");
    within = duration_arg(L, -1, "within");
    if (lua_getfield(L, 1, "warn") != LUA_TNIL)
      warn = duration_arg(L, -1, "warn");
  } else {
    within = duration_arg(L, 1, "the argument");
  }
  return queue(L, "restart",
               json_pack("{s:s, s:s, s:s?}", "sla", "restart", "within",
                         within, "warn", warn));
}

static int
sla_pause(lua_State *L)
{
  const char *reason = NULL;
  size_t n = 0;
  if (!lua_isnoneornil(L, 1)) {
    reason = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &n) : NULL;
    if (reason == NULL || n == 0 || n > MAX_REASON || memchr(reason, 0, n) ||
        !flow__utf8_valid(reason, n))
      return luaL_error(L,
                        "flow.sla.pause: the reason must be text of at most "
                        "%d bytes, like \"waiting for evidence\"",
                        MAX_REASON);
  }
  return queue(L, "pause",
               json_pack("{s:s, s:s?}", "sla", "pause", "reason", reason));
}

static int
sla_resume(lua_State *L)
{
  if (!lua_isnoneornil(L, 1))
    return luaL_error(L, "flow.sla.resume takes no arguments");
  return queue(L, "resume", json_pack("{s:s}", "sla", "resume"));
}

static int
sla_stop(lua_State *L)
{
  if (!lua_isnoneornil(L, 1))
    return luaL_error(L, "flow.sla.stop takes no arguments");
  return queue(L, "stop", json_pack("{s:s}", "sla", "stop"));
}

static const luaL_Reg sla_funcs[] = {
  { "pause", sla_pause },
  { "stop", sla_stop },
  { "resume", sla_resume },
  { "restart", sla_restart },
  { NULL, NULL },
};

const luaL_Reg *
flow__sb_sla_funcs(void)
{
  return sla_funcs;
}

void
flow__sb_push_sla(lua_State *L)
{
  luaL_newlib(L, sla_funcs);
}
