/*
 * The Lua sandbox a service runs in: one lua_State per service version (and
 * a fresh one per eval), holding only what a service author needs -- the
 * string, table, math, utf8 and coroutine libraries, the safe base
 * functions and the `flow` module -- under four budgets per unit of work
 * (instructions, CPU time, memory, log output; script_budget.c).  It also
 * runs transitions: it builds the `case` and `ev` tables a handler sees,
 * calls the handler, guard and hook functions the loader kept as registry
 * references, and turns case.data and the actions requested with
 * flow.call back into JSON.
 *
 * The host side is written so that nothing a script does can crash or hang
 * the engine, or carry anything from one case to the next:
 *
 *   - Every call into Lua goes through lua_pcall, and anything that builds
 *     Lua values (which may raise "not enough memory") runs inside a
 *     protected C function.
 *   - The host never runs a script's metamethods: values coming back are
 *     read with raw access and lua_type checks.
 *   - A budget that runs out kills the unit for good (script_budget.c);
 *     library functions that work in C are bounded (script_lib.c,
 *     script_pattern.c).
 *   - Once a service is loaded, everything its handlers can reach that
 *     outlives a run is frozen, and its upvalues are put back after every
 *     run (script_freeze.c).  An eval freezes the fresh environment before
 *     its chunk runs, so a chunk sees exactly what a handler sees.
 */
#include "script/script_int.h"

#include <inttypes.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_LINE_MAX 4096

/* Registry keys (their addresses): the library functions the sandbox
   keeps for itself before scripts can replace or lose them. */
static const char find_key = 'f';
static const char randomseed_key = 'r';

static flow__sandbox *
sb_of(lua_State *L)
{
  return *(flow__sandbox **)lua_getextraspace(L);
}

/* ---- helpers the loader shares --------------------------------------- */

void
flow__sb_push_find(lua_State *L)
{
  lua_rawgetp(L, LUA_REGISTRYINDEX, &find_key);
}

static int
seed_p(lua_State *L)
{
  const uint64_t *seed = lua_touserdata(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &randomseed_key);
  lua_pushinteger(L, (lua_Integer)*seed);
  lua_call(L, 1, 0);
  return 0;
}

void
flow__sb_seed(flow__sandbox *sb, uint64_t seed)
{
  if (flow__sb_protect(sb, seed_p, &seed) != LUA_OK)
    lua_pop(sb->L, 1);
}

int64_t
flow__sb_clock(flow__sandbox *sb)
{
  return sb->log_engine ? flow_engine_now(sb->log_engine)
                        : flow__time_real();
}

/* ---- base functions the sandbox replaces ------------------------------ */

/*
 * Formats the arguments of print and flow.log into one line without
 * calling tostring (which would run a script's __tostring): strings,
 * numbers, booleans and nil as themselves, anything else as its type.
 * Control characters become spaces so the line stays one line, and a cut
 * at LOG_LINE_MAX never splits a UTF-8 sequence.
 */
static void
log_args(lua_State *L, const char *sep)
{
  flow__sandbox *sb = sb_of(L);
  flow__sb_charge(L, (uint64_t)lua_gettop(L) + 1);
  char line[LOG_LINE_MAX];
  size_t n = 0, seplen = strlen(sep);
  int top = lua_gettop(L), full = 0;
  for (int i = 1; i <= top && !full; i++) {
    char num[64];
    const char *s;
    size_t len;
    switch (lua_type(L, i)) {
    case LUA_TSTRING:
      s = lua_tolstring(L, i, &len);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, i)) {
        snprintf(num, sizeof num, LUA_INTEGER_FMT, lua_tointeger(L, i));
      } else {
        snprintf(num, sizeof num, LUA_NUMBER_FMT, lua_tonumber(L, i));
        if (num[strspn(num, "-0123456789")] == 0)
          strcat(num, ".0"); /* as Lua prints it: 2.0, not 2 */
      }
      s = num;
      len = strlen(num);
      break;
    case LUA_TBOOLEAN:
      s = lua_toboolean(L, i) ? "true" : "false";
      len = strlen(s);
      break;
    default:
      s = lua_typename(L, lua_type(L, i));
      len = strlen(s);
      break;
    }
    if (i > 1) {
      if (n + seplen >= sizeof line)
        break;
      memcpy(line + n, sep, seplen);
      n += seplen;
    }
    if (n + len >= sizeof line) {
      len = sizeof line - 1 - n;
      while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
        len--;
      full = 1;
    }
    for (size_t k = 0; k < len; k++) {
      unsigned char ch = (unsigned char)s[k];
      line[n++] = (ch < 0x20 && ch != '\t') || ch == 0x7f ? ' ' : (char)ch;
    }
  }
  line[n] = 0;
  /* Counted whether or not the host keeps a log, so that a script runs
     the same everywhere. */
  if (sb->counting && n + 1 > sb->log_limit - sb->log_bytes) {
    sb->log_bytes = sb->log_limit;
    if (sb->killed == FLOW__KILL_NONE)
      sb->killed = FLOW__KILL_LOG;
    sb->damaged = 1;
    flow__sb_check(L);
  }
  sb->log_bytes += n + 1;
  if (sb->log != NULL)
    sb->log(sb->log_engine, FLOW_LOG_INFO, line, sb->log_payload);
}

static int
sb_print(lua_State *L)
{
  log_args(L, "\t");
  return 0;
}

static int
flow_log(lua_State *L)
{
  log_args(L, " ");
  return 0;
}

#define LOAD_RESERVED 5 /* stack slot that keeps the reader's last piece */

static const char *
load_reader(lua_State *L, void *ud, size_t *size)
{
  (void)ud;
  luaL_checkstack(L, 2, "too many nested functions");
  lua_pushvalue(L, 1);
  lua_call(L, 0, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    *size = 0;
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "reader function must return a string");
  lua_replace(L, LOAD_RESERVED);
  const char *s = lua_tolstring(L, LOAD_RESERVED, size);
  flow__sb_charge(L, *size);
  return s;
}

/*
 * load(chunk [, chunkname [, mode [, env]]]) as in Lua, except that only
 * text is accepted whatever mode says (bytecode can break the VM), and
 * compiling charges the chunk's size to the instruction budget, since the
 * parser runs in C where the hook cannot see it.
 */
static int
sb_load(lua_State *L)
{
  int status;
  size_t len;
  int env = !lua_isnone(L, 4) ? 4 : 0;
  if (lua_type(L, 1) == LUA_TSTRING) {
    const char *s = lua_tolstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, s);
    flow__sb_charge(L, len);
    status = luaL_loadbufferx(L, s, len, name, "t");
  } else {
    const char *name = luaL_optstring(L, 2, "=(load)");
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, LOAD_RESERVED);
    status = lua_load(L, load_reader, NULL, name, "t");
  }
  /* The parser runs protected: a kill inside the reader must not end up
     as a message the script can read and carry on from. */
  flow__sb_check(L);
  if (status == LUA_OK) {
    /* Code this Lua cannot run safely is refused like a syntax error. */
    char msg[FLOW__ERRMSG_MAX];
    int line;
    int rc = flow__bytecode_check(L, sb_of(L), &line, msg, sizeof msg);
    flow__sb_check(L);
    if (rc == FLOW_ENOMEM)
      return luaL_error(L, "not enough memory");
    if (rc != 0) {
      lua_pop(L, 1);
      lua_pushstring(L, msg);
      status = LUA_ERRSYNTAX;
    }
  }
  if (status != LUA_OK) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env != 0) {
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1))
      lua_pop(L, 1);
  }
  return 1;
}

/* ---- the flow module -------------------------------------------------- */

/*
 * flow.fail(msg): refuses the event with msg for the person who sent it.
 * The refusal is recorded before raising, so a script that catches the
 * error with pcall still has its run refused.
 */
static int
flow_fail(lua_State *L)
{
  flow__sandbox *sb = sb_of(L);
  const char *msg = "refused by the service";
  int ty = lua_type(L, 1);
  if (ty == LUA_TSTRING || ty == LUA_TNUMBER)
    msg = lua_tostring(L, 1);
  if (!sb->refused) {
    sb->refused = 1;
    snprintf(sb->refuse_msg, sizeof sb->refuse_msg, "%s", msg);
    luaL_where(L, 1);
    snprintf(sb->refuse_where, sizeof sb->refuse_where, "%s",
             lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  if (ty != LUA_TSTRING)
    lua_pushstring(L, msg);
  return lua_error(L);
}

static int
flow_now(lua_State *L)
{
  char buf[40];
  flow__time_format(buf, sizeof buf, sb_of(L)->now);
  lua_pushstring(L, buf);
  return 1;
}

/* ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$: names joined by dots. */
static int
action_name_ok(const char *s, size_t len)
{
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && s[i] != '.')
      continue;
    if (!flow__name_ok(s + start, i - start, 0))
      return 0;
    start = i + 1;
  }
  return 1;
}

/*
 * The optional table argument at idx of flow.call, flow.after or flow.at as
 * a JSON object (an empty one when absent).  Converted at the call, so a
 * mistake is reported at that line and later changes to the table do not
 * leak into the request.  Raises the Lua error itself; *held grows by what
 * the object holds outside Lua, which counts against the memory budget.
 */
void
flow__sb_known_keys(lua_State *L, int t, const char *const *known,
                    const char *who, const char *noun, const char *which)
{
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    int ok = lua_type(L, -1) == LUA_TSTRING;
    for (int i = 0; ok && known[i]; i++)
      if (strcmp(lua_tostring(L, -1), known[i]) == 0)
        ok = 2;
    if (ok != 2) {
      char k[64];
      snprintf(k, sizeof k, "%.60s",
               lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
      luaL_error(L, "%s: unknown %s '%s' (%s)", who, noun, k, which);
    }
  }
}

json_t *
flow__sb_object_arg(lua_State *L, flow__sandbox *sb, int idx,
                    const char *root, const char *who,
                    const char *not_object, size_t *held)
{
  json_t *obj = NULL;
  if (lua_type(L, idx) == LUA_TTABLE) {
    char msg[512];
    int rc = flow__json_from_lua_sb(L, idx, root, sb, &obj, held, msg,
                                    sizeof msg);
    if (rc == FLOW_ELIMIT)
      flow__sb_check(L);
    if (rc == FLOW_ENOMEM) {
      sb->enomem = 1;
      luaL_error(L, "out of memory");
    }
    if (rc != 0)
      luaL_error(L, "%s: %s", who, msg);
    if (!json_is_object(obj)) {
      json_decref(obj);
      luaL_error(L, "%s: %s", who, not_object);
    }
    return obj;
  }
  if ((obj = json_object()) == NULL) {
    sb->enomem = 1;
    luaL_error(L, "out of memory");
  }
  return obj;
}

/* An event name given to flow.call's reply or fail: *out gets it, or
   NULL when the option is absent; raises at the call's line otherwise. */
static void
call_event_opt(lua_State *L, const char *who, const char *opt,
               const char **out)
{
  *out = NULL;
  lua_pushstring(L, opt);
  int t = lua_rawget(L, 3);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  size_t n;
  const char *s = t == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  if (s == NULL || n == 0 || n > FLOW__MAX_NAME || !flow__name_ok(s, n, 0))
    luaL_error(L,
               "%s: %s must be the name of an event of this service, like "
               "\"sms_sent\"",
               who, opt);
  *out = s; /* kept alive by the options table until the call returns */
  lua_pop(L, 1);
}

/* An elapsed duration option ("30s", "1h"): its milliseconds, or 0 when
   absent. */
static int64_t
call_duration_opt(lua_State *L, int t, const char *who, const char *opt)
{
  lua_pushstring(L, opt);
  int ty = lua_rawget(L, t);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  flow__duration d;
  flow__err perr;
  flow__err_clear(&perr);
  if (ty != LUA_TSTRING)
    luaL_error(L, "%s: %s must be a duration like \"30s\" or \"1h\", not "
                  "a %s",
               who, opt, luaL_typename(L, -1));
  if (flow__duration_parse(lua_tostring(L, -1), &d, &perr) != 0)
    luaL_error(L, "%s: %s: %s", who, opt, perr.msg);
  if (d.unit != FLOW__DUR_ELAPSED)
    luaL_error(L,
               "%s: %s counts real time, not working time: write it like "
               "\"30s\", \"15m\" or \"2h\"",
               who, opt);
  lua_pop(L, 1);
  return d.amount;
}

/* flow.call's options, read before anything is allocated (a mistake
   raises, and must leak nothing).  Strings point into the options table,
   which stays at stack index 3 for the whole call. */
typedef struct call_opts {
  const char *reply, *fail, *key;
  size_t klen;
  lua_Integer retry_max;
  int64_t backoff_ms, timeout_ms;
} call_opts;

/*
 * flow.call's third argument, { reply, fail, retry = { max, backoff },
 * timeout, key }, checked here so that a mistake is reported at the line
 * of the call.
 */
static void
call_options(lua_State *L, const char *who, call_opts *o)
{
  memset(o, 0, sizeof *o);
  int t = lua_type(L, 3);
  if (t == LUA_TNONE || t == LUA_TNIL)
    return;
  if (t != LUA_TTABLE)
    luaL_error(L,
               "%s: the options must be a table like { reply = "
               "\"sms_sent\" }, not a %s",
               who, lua_typename(L, t));
  flow__frozen_thaw_arg(L, 3);
  static const char *const known[] = { "reply", "fail", "retry", "timeout",
                                       "key", NULL };
  flow__sb_known_keys(L, 3, known, who, "option",
                      "the options are reply, fail, retry, timeout and key");
  call_event_opt(L, who, "reply", &o->reply);
  call_event_opt(L, who, "fail", &o->fail);
  o->timeout_ms = call_duration_opt(L, 3, who, "timeout");
  lua_Integer max = 0;
  int64_t backoff = 0;
  lua_pushliteral(L, "retry");
  int rt = lua_rawget(L, 3);
  if (rt == LUA_TTABLE) {
    flow__frozen_thaw_arg(L, -1);
    int r = lua_gettop(L);
    lua_pushliteral(L, "max");
    int isnum = 0;
    if (lua_rawget(L, r) != LUA_TNIL)
      max = lua_tointegerx(L, -1, &isnum);
    else
      isnum = 1, max = 0;
    if (!isnum || max < 0 || max > FLOW__MAX_RETRIES)
      luaL_error(L,
                 "%s: retry.max must be a whole number of retries from 0 "
                 "to %d",
                 who, FLOW__MAX_RETRIES);
    lua_pop(L, 1);
    backoff = call_duration_opt(L, r, who, "backoff");
    if (backoff == 0)
      backoff = 30 * 1000; /* the documented default */
  } else if (rt != LUA_TNIL) {
    luaL_error(L,
               "%s: retry must be a table like { max = 5, backoff = "
               "\"30s\" }, not a %s",
               who, lua_typename(L, rt));
  }
  o->retry_max = max;
  o->backoff_ms = backoff;
  lua_pop(L, 1);
  lua_pushliteral(L, "key");
  int kt = lua_rawget(L, 3);
  size_t klen = 0;
  const char *key = kt == LUA_TSTRING ? lua_tolstring(L, -1, &klen) : NULL;
  if (kt != LUA_TNIL &&
      (key == NULL || klen == 0 || klen > FLOW__MAX_ACTION_KEY ||
       memchr(key, 0, klen) != NULL || !flow__utf8_valid(key, klen)))
    luaL_error(L,
               "%s: key must be text of 1 to %d bytes (it names the request "
               "to the host, which uses it to do the work once)",
               who, FLOW__MAX_ACTION_KEY);
  lua_pop(L, 1);
  o->key = key;
  o->klen = klen;
}

/* The options into the request; 0, or -1 out of memory. */
static int
call_options_set(json_t *req, const call_opts *o)
{
  int bad = 0;
  if (o->reply)
    bad |= json_object_set_new(req, "reply", json_string(o->reply)) != 0;
  if (o->fail)
    bad |= json_object_set_new(req, "fail", json_string(o->fail)) != 0;
  if (o->retry_max > 0) {
    bad |= json_object_set_new(req, "retry_max",
                               json_integer(o->retry_max)) != 0;
    bad |= json_object_set_new(req, "backoff_ms",
                               json_integer(o->backoff_ms)) != 0;
  }
  if (o->timeout_ms)
    bad |= json_object_set_new(req, "timeout_ms",
                               json_integer(o->timeout_ms)) != 0;
  if (o->key)
    bad |= json_object_set_new(req, "key", json_stringn(o->key, o->klen)) != 0;
  return bad ? -1 : 0;
}

/*
 * flow.call(action, args, opts): asks for an action to run after the
 * transition commits.  args is converted to JSON right here, so a mistake
 * in it is reported at the line of the call and later changes to the
 * table do not leak into the request.
 */
static int
flow_call(lua_State *L)
{
  flow__sandbox *sb = sb_of(L);
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L,
                      "flow.call: the first argument must be an action "
                      "name like \"notify.sms\", not a %s",
                      luaL_typename(L, 1));
  size_t alen;
  const char *action = lua_tolstring(L, 1, &alen);
  if (!action_name_ok(action, alen)) {
    char shown[64]; /* lua_pushfstring knows no precision */
    snprintf(shown, sizeof shown, "%.60s", action);
    return luaL_error(L,
                      "flow.call: '%s' is not an action name (use "
                      "lower-case words joined by dots, like \"notify.sms\")",
                      shown);
  }
  int at = lua_type(L, 2);
  if (at != LUA_TNONE && at != LUA_TNIL && at != LUA_TTABLE)
    return luaL_error(L,
                      "flow.call('%s'): the arguments must be a table, not "
                      "a %s",
                      action, lua_typename(L, at));
  if (sb->calls == NULL)
    return luaL_error(L,
                      "flow.call('%s'): actions can only be requested while "
                      "a case handles an event (in a handler or hook)",
                      action);
  if (sb->ncalls >= FLOW__MAX_CALLS_PER_RUN)
    return luaL_error(L,
                      "flow.call('%s'): an event may request at most %d "
                      "actions (send one action that does the whole batch)",
                      action, FLOW__MAX_CALLS_PER_RUN);
  size_t held = 0;
  char who[96];
  snprintf(who, sizeof who, "flow.call('%.60s')", action);
  call_opts opts;
  call_options(L, who, &opts);
  json_t *args = flow__sb_object_arg(L, sb, 2, "args", who,
                            "the arguments must be a table with named keys "
                            "({ to = ..., template = ... }), not a list",
                            &held);
  json_t *req = json_object();
  json_t *name = json_stringn(action, alen);
  int bad = req == NULL || name == NULL ||
            json_object_set_new(req, "action", name) != 0;
  name = NULL; /* set_new took it, or it is NULL */
  if (!bad)
    bad = json_object_set_new(req, "args", args) != 0;
  else
    json_decref(args);
  if (!bad)
    bad = call_options_set(req, &opts) != 0;
  if (!bad && json_array_append_new(sb->calls, req) != 0) {
    bad = 1;
    req = NULL; /* append_new freed it */
  } else if (bad) {
    json_decref(req);
    req = NULL;
  }
  if (bad) {
    sb->enomem = 1;
    return luaL_error(L, "out of memory");
  }
  /* The request is held outside Lua until the run ends: it counts
     against the memory budget like anything the script holds. */
  sb->ncalls++;
  held += 128 + alen;
  sb->extra += held;
  if (sb->limit_on && sb->mem + sb->extra > sb->mem_limit)
    return flow__sb_kill_mem(L);
  return 0;
}

/*
 * flow.after(duration, event, payload, opts) and flow.at(time, event,
 * payload, opts): ask for a timer, written with the transition.  Both are
 * checked here, so a bad duration or time is reported at the line of the
 * call; the engine computes the due time on its calendar when it commits.
 * opts = { keep = true } keeps the timer when the case leaves the state.
 */
static int
timer_request(lua_State *L, const char *fn, int is_at)
{
  flow__sandbox *sb = sb_of(L);
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L,
                      is_at ? "flow.at: the first argument must be a time "
                              "like \"2026-12-01T09:00:00Z\", not a %s"
                            : "flow.after: the first argument must be a "
                              "duration like \"2 working days\", not a %s",
                      luaL_typename(L, 1));
  const char *when = lua_tostring(L, 1);
  if (is_at) {
    int64_t t;
    if (flow__time_parse(when, &t) != 0)
      return luaL_error(L,
                        "flow.at: '%s' is not a time with an offset (write "
                        "it like \"2026-12-01T09:00:00Z\")",
                        when);
  } else {
    flow__duration d;
    flow__err perr;
    flow__err_clear(&perr);
    if (flow__duration_parse(when, &d, &perr) != 0)
      return luaL_error(L, "flow.after: %s", perr.msg);
  }
  size_t elen;
  const char *event = lua_type(L, 2) == LUA_TSTRING
                          ? lua_tolstring(L, 2, &elen)
                          : NULL;
  int okname = event && elen > 0 && elen <= 64 && event[0] >= 'a' &&
               event[0] <= 'z';
  for (size_t i = 0; okname && i < elen; i++)
    okname = (event[i] >= 'a' && event[i] <= 'z') ||
             (event[i] >= '0' && event[i] <= '9') || event[i] == '_';
  if (!okname)
    return luaL_error(L,
                      "%s: the second argument must be the event to send, "
                      "a name like \"remind\"",
                      fn);
  int pt = lua_type(L, 3);
  if (pt != LUA_TNONE && pt != LUA_TNIL && pt != LUA_TTABLE)
    return luaL_error(L, "%s: the payload must be a table, not a %s", fn,
                      lua_typename(L, pt));
  int keep = 0;
  if (lua_type(L, 4) == LUA_TTABLE) {
    flow__frozen_thaw_arg(L, 4);
    lua_pushliteral(L, "keep");
    keep = lua_rawget(L, 4) != LUA_TNIL && lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, 4)) {
    return luaL_error(L, "%s: options must be a table like { keep = true }",
                      fn);
  }
  if (sb->calls == NULL)
    return luaL_error(L,
                      "%s: timers can only be set while a case handles an "
                      "event (in a handler or hook)",
                      fn);
  /* Each timer's due time is a walk of the calendar at commit, work the
     engine does for the script: bounded here. */
  if (sb->ntimers >= FLOW__MAX_TIMERS_PER_RUN)
    return luaL_error(L,
                      "%s: an event may set at most %d timers (one timer "
                      "whose handler sets the next does the same)",
                      fn, FLOW__MAX_TIMERS_PER_RUN);
  size_t held = 0;
  json_t *payload = flow__sb_object_arg(L, sb, 3, "payload", fn,
                               "the payload must be a table with named keys",
                               &held);
  json_t *req = json_pack("{s:s, s:s%, s:o, s:b}", is_at ? "at" : "after",
                          when, "event", event, elen, "payload", payload,
                          "keep", keep);
  if (req == NULL || json_array_append_new(sb->calls, req) != 0) {
    sb->enomem = 1;
    return luaL_error(L, "out of memory");
  }
  sb->ntimers++;
  held += 128 + elen;
  sb->extra += held;
  if (sb->limit_on && sb->mem + sb->extra > sb->mem_limit)
    return flow__sb_kill_mem(L);
  return 0;
}

static int
flow_after(lua_State *L)
{
  return timer_request(L, "flow.after", 0);
}

static int
flow_at(lua_State *L)
{
  return timer_request(L, "flow.at", 1);
}

/* flow.list(t) marks t as a JSON array; flow.list() is a new empty one. */
static int
flow_list(lua_State *L)
{
  if (lua_isnoneornil(L, 1)) {
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {
      flow__json_push_list_mt(L);
      int same = lua_rawequal(L, -1, -2);
      lua_pop(L, 2);
      if (!same)
        return luaL_error(L, "flow.list: the table already has a "
                             "metatable of its own");
    }
  }
  flow__json_push_list_mt(L);
  lua_setmetatable(L, -2);
  return 1;
}

static const luaL_Reg flow_funcs[] = {
  { "log", flow_log },   { "fail", flow_fail }, { "now", flow_now },
  { "call", flow_call }, { "list", flow_list }, { "after", flow_after },
  { "at", flow_at },     { "task", flow__sb_task },
  { "cancel_task", flow__sb_cancel_task }, { "open", flow__sb_open },
  { "signal", flow__sb_signal },
  { "add", flow__sb_add }, { "date", flow__sb_date },
  { "is_working_day", flow__sb_is_working_day },
  { "before", flow__sb_before }, { "local_time", flow__sb_local_time },
  { NULL, NULL },
};

int
flow__sandbox_has_name(const char *table, const char *name,
                       const char **closest)
{
  const char *words[32];
  size_t n = 0;
  const luaL_Reg *r = strcmp(table, "flow") == 0 ? flow_funcs
                                                 : flow__sb_sla_funcs();
  for (; r->name && n + 3 < sizeof words / sizeof *words; r++)
    words[n++] = r->name;
  if (strcmp(table, "flow") == 0) {
    words[n++] = "null"; /* the values setup_p adds */
    words[n++] = "sla";
  }
  words[n] = NULL;
  *closest = NULL;
  for (size_t i = 0; i < n; i++)
    if (strcmp(words[i], name) == 0)
      return 1;
  *closest = flow__closest_word(name, words);
  return 0;
}

/* ---- building the sandbox -------------------------------------------- */

/*
 * __index of flow and flow.sla (upvalue 1: the table's name): a name they
 * do not have is a typo, said at the line with the closest name, instead
 * of a later "attempt to call a nil value".
 */
static int
name_cmp(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int
strict_index(lua_State *L)
{
  if (lua_type(L, 2) != LUA_TSTRING) {
    lua_pushnil(L);
    return 1;
  }
  const char *owner = lua_tostring(L, lua_upvalueindex(1));
  const char *key = lua_tostring(L, 2);
  int t = 1;
  if (flow__frozen_contents(L, 1, NULL))
    t = lua_gettop(L);
  const char *names[33];
  size_t n = 0;
  lua_pushnil(L);
  while (n + 1 < sizeof names / sizeof *names && lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) /* the key stays alive in t */
      names[n++] = lua_tostring(L, -1);
  }
  lua_settop(L, t);
  names[n] = NULL;
  const char *best = flow__closest_word(key, names);
  char shown[64], hint[400];
  snprintf(shown, sizeof shown, "%.60s", key); /* pushfstring: no %.60s */
  if (best) {
    snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
  } else {
    qsort(names, n, sizeof *names, name_cmp); /* the table's order is not */
    flow__join j;
    flow__join_init(&j, hint, sizeof hint);
    flow__join_text(&j, " (it has ");
    for (size_t i = 0; i < n; i++)
      flow__join_add(&j, ", ", names[i]);
    flow__join_text(&j, ")");
  }
  luaL_where(L, 2); /* the line that used the name */
  lua_pushfstring(L, "%s has no '%s'%s", owner, shown, hint);
  lua_concat(L, 2);
  return lua_error(L);
}

static void
make_strict(lua_State *L, const char *name)
{
  lua_createtable(L, 0, 2);
  lua_pushstring(L, name);
  lua_pushcclosure(L, strict_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0); /* getmetatable(flow) is false, as for _G */
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

/* The globals a script keeps; everything else the base library defines
   (dofile, loadfile, collectgarbage, warn, ...) is removed. */
static const char *const keep_globals[] = {
  "assert",   "error",   "ipairs",       "next",         "pairs",
  "pcall",    "rawequal", "rawget",      "rawlen",       "rawset",
  "select",   "setmetatable", "getmetatable", "tonumber", "tostring",
  "type",     "xpcall",  "_VERSION",     "_G",           "print",
  "load",     "string",  "table",        "math",         "utf8",
  "coroutine", NULL,
};

static int
kept(const char *name)
{
  for (size_t i = 0; keep_globals[i]; i++)
    if (strcmp(keep_globals[i], name) == 0)
      return 1;
  return 0;
}

static void make_run_keys(lua_State *L);

static int
setup_p(lua_State *L)
{
  static const luaL_Reg libs[] = {
    { LUA_GNAME, luaopen_base },         { LUA_STRLIBNAME, luaopen_string },
    { LUA_TABLIBNAME, luaopen_table },   { LUA_MATHLIBNAME, luaopen_math },
    { LUA_UTF8LIBNAME, luaopen_utf8 },   { LUA_COLIBNAME, luaopen_coroutine },
    { NULL, NULL },
  };
  /* sizeof(Node) of this Lua: the size of the hash part of a table of
     1024 keys, over 1024 (see FLOW__TABLE_MAX_HASH). */
  flow__sandbox *sb = lua_touserdata(L, 1);
  sb->probing = 1;
  sb->probe_max = 0;
  lua_createtable(L, 0, 1024);
  sb->probing = 0;
  sb->node_size = sb->probe_max / 1024;
  lua_pop(L, 1);
  /* The first luaL_Buffer box makes the boxes' metatable, allocating
     between the box and its buffer: have it made now. */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_prepbuffsize(&b, 4 * LUAL_BUFFERSIZE);
  luaL_pushresult(&b);
  lua_pop(L, 1);
  for (const luaL_Reg *lib = libs; lib->func; lib++) {
    luaL_requiref(L, lib->name, lib->func, 1);
    lua_pop(L, 1);
  }
  flow__json_setup(L);
  make_run_keys(L);

  lua_pushglobaltable(L);
  /* Clearing fields during a traversal is allowed; adding is not. */
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || !kept(lua_tostring(L, -1))) {
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, -4);
    }
  }
  lua_pushcfunction(L, sb_print);
  lua_setfield(L, -2, "print");
  lua_pushcfunction(L, sb_load);
  lua_setfield(L, -2, "load");
  /* Scripts draw from a generator seeded per case at each run, so a case
     replays the same way; only the sandbox may reseed it. */
  lua_getfield(L, -1, LUA_MATHLIBNAME);
  lua_getfield(L, -1, "randomseed");
  /* The generator's state is an upvalue of random and randomseed; it is
     reseeded before every run, so it may stay shared. */
  if (lua_getupvalue(L, -1, 1) != NULL) {
    if (lua_type(L, -1) == LUA_TUSERDATA)
      flow__freeze_allow(L, -1);
    lua_pop(L, 1);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &randomseed_key);
  lua_pushnil(L);
  lua_setfield(L, -2, "randomseed");
  lua_pop(L, 1);

  flow__freeze_install(L);
  flow__lib_install(L);
  lua_pushcfunction(L, flow__pattern_find);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &find_key);

  luaL_newlib(L, flow_funcs);
  flow__json_push_null(L);
  lua_setfield(L, -2, "null");
  flow__sb_push_sla(L);
  make_strict(L, "flow.sla");
  lua_setfield(L, -2, "sla");
  make_strict(L, "flow");
  lua_setfield(L, -2, "flow");
  lua_pop(L, 1);
  return 0;
}

int
flow__sandbox_new(flow__sandbox **out, const flow__sandbox_config *cfg,
                  flow__err *err)
{
  *out = NULL;
  flow__sandbox *sb = flow__calloc(cfg->alloc, 1, sizeof *sb);
  if (sb == NULL)
    return flow__err_set(err, FLOW_ENOMEM,
                         "out of memory creating a script sandbox");
  sb->alloc = cfg->alloc;
  flow__pool_init(&sb->pool, cfg->alloc);
  flow__calendar_default(&sb->default_cal);
  sb->mem_limit = cfg->mem_limit ? cfg->mem_limit : FLOW__DEFAULT_MEMORY;
  sb->instr_limit = cfg->instr_limit ? cfg->instr_limit : FLOW__DEFAULT_INSTRUCTIONS;
  sb->cpu_ms = cfg->cpu_ms ? cfg->cpu_ms : FLOW__DEFAULT_CPU_MS;
  sb->log_limit = cfg->log_limit ? cfg->log_limit : FLOW__DEFAULT_LOG;
  sb->mem_max = cfg->mem_max ? cfg->mem_max : FLOW__DEFAULT_MEMORY_MAX;
  sb->instr_max = cfg->instr_max ? cfg->instr_max : FLOW__DEFAULT_INSTRUCTIONS_MAX;
  sb->cpu_ms_max = cfg->cpu_ms_max ? cfg->cpu_ms_max : FLOW__DEFAULT_CPU_MS_MAX;
  if (sb->mem_max < sb->mem_limit)
    sb->mem_max = sb->mem_limit;
  if (sb->instr_max < sb->instr_limit)
    sb->instr_max = sb->instr_limit;
  if (sb->cpu_ms_max < sb->cpu_ms)
    sb->cpu_ms_max = sb->cpu_ms;
  sb->pace = FLOW__HOOK_EVERY;
  sb->limit_on = 1;
  sb->log = cfg->log;
  sb->log_engine = cfg->log_engine;
  sb->log_payload = cfg->log_payload;
  sb->case_ref = sb->ev_ref = sb->run_ref = LUA_NOREF;
  snprintf(sb->what, sizeof sb->what, "setting up the sandbox");
  sb->L = lua_newstate(flow__sb_alloc, sb);
  if (sb->L == NULL) {
    int capped = sb->pend_reason == 1; /* over the cap */
    flow__pool_release(&sb->pool);
    flow__free(cfg->alloc, sb);
    if (capped)
      return flow__err_set(err, FLOW_ELIMIT,
                           "budget exceeded: the script memory limit is too "
                           "small to start a sandbox");
    return flow__err_set(err, FLOW_ENOMEM,
                         "out of memory creating a script sandbox");
  }
  *(flow__sandbox **)lua_getextraspace(sb->L) = sb;
  flow__sb_start(sb, "setting up the sandbox");
  int st = flow__sb_protect(sb, setup_p, sb);
  int rc = flow__sb_outcome(sb, st, NULL, err);
  flow__sb_stop(sb);
  if (rc != 0) {
    flow__sandbox_free(sb);
    return rc;
  }
  lua_settop(sb->L, 0);
  /* Generational collection: a run's tables and strings die young, the
     frozen service lives for ever; incremental mode kept re-marking the
     old ones to free the young. */
  lua_gc(sb->L, LUA_GCGEN, 0, 0);
  *out = sb;
  return 0;
}

void
flow__sandbox_free(flow__sandbox *sb)
{
  if (sb == NULL)
    return;
  json_decref(sb->calls);
  sb->calls = NULL;
  /* Nothing a script left behind may run while the state closes. */
  sb->killed = FLOW__KILL_CLOSE;
  sb->counting = 1;
  sb->limit_on = 0;
  lua_sethook(sb->L, flow__sb_hook, LUA_MASKCOUNT, 1);
  lua_close(sb->L);
  flow__pool_release(&sb->pool);
  flow__free(sb->alloc, sb);
}

void
flow__sandbox_set_calendar(flow__sandbox *sb, const flow__calendar *cal)
{
  sb->cal = cal;
}

void
flow__sandbox_set_opener(flow__sandbox *sb, flow__open_fn fn, void *ctx)
{
  sb->opener = fn;
  sb->opener_ctx = ctx;
}

lua_State *
flow__sandbox_lua(flow__sandbox *sb)
{
  return sb->L;
}

size_t
flow__sandbox_mem(const flow__sandbox *sb)
{
  return sb ? sb->mem : 0;
}

/* ---- transition runs -------------------------------------------------- */

typedef struct begin_args {
  flow__sandbox *sb;
  const flow__case_view *cv;
  json_t *data;
  const char *data_text; /* instead of data, when not NULL */
  const flow__event_view *ev;
  int text_status;       /* FLOW__TEXT_* of data_text */
} begin_args;

/*
 * The names of the fields of `case` and `event`, made into Lua strings
 * once per sandbox and kept in a registry table: a run fetches them by
 * position instead of hashing each name again.  KEYS is the stack index
 * of that table during begin_p.
 */
static const char run_keys_key = 'K';
enum {
  K_ID = 1, K_SERVICE, K_VERSION, K_STATE, K_STATUS, K_DATA, K_OPENED_AT,
  K_UPDATED_AT, K_DUE_AT, K_SEQ, K_NAME, K_PAYLOAD, K_ACTOR, K_ROLES, K_AT,
  K_COUNT
};
static const char *const run_key_names[K_COUNT] = {
  NULL,         "id",         "service", "version", "state",
  "status",     "data",       "opened_at", "updated_at", "due_at",
  "seq",        "name",       "payload", "actor",   "roles",
  "at",
};
#define KEYS 2

static void
make_run_keys(lua_State *L)
{
  lua_createtable(L, K_COUNT - 1, 0);
  for (int k = 1; k < K_COUNT; k++) {
    lua_pushstring(L, run_key_names[k]);
    lua_rawseti(L, -2, k);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &run_keys_key);
}

static void
push_key(lua_State *L, int k)
{
  lua_rawgeti(L, KEYS, k);
}

/* t[k] = v for the table at the top, raw; nothing when v is NULL. */
static void
set_str(lua_State *L, int k, const char *v)
{
  if (v == NULL)
    return;
  push_key(L, k);
  lua_pushstring(L, v);
  lua_rawset(L, -3);
}

static void
set_int(lua_State *L, int k, int64_t v)
{
  push_key(L, k);
  lua_pushinteger(L, (lua_Integer)v);
  lua_rawset(L, -3);
}

/* An ISO 8601 time, or nothing for INT64_MIN. */
static void
set_time(lua_State *L, int k, int64_t ms)
{
  char buf[40];
  if (ms == INT64_MIN)
    return;
  flow__time_format(buf, sizeof buf, ms);
  set_str(L, k, buf);
}

/* Pushes a JSON object as a table; NULL or a non-object as {}. */
static void
push_object(lua_State *L, json_t *j)
{
  if (j != NULL && json_is_object(j))
    flow__json_push(L, j);
  else
    lua_newtable(L);
}

static int
begin_p(lua_State *L)
{
  begin_args *a = lua_touserdata(L, 1);
  flow__sandbox *sb = a->sb;
  const flow__case_view *cv = a->cv;
  const flow__event_view *ev = a->ev;

  lua_pushcfunction(L, seed_p);
  lua_pushlightuserdata(L, (void *)&cv->seed);
  lua_call(L, 1, 0);

  lua_settop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &run_keys_key); /* at KEYS */
  lua_createtable(L, 0, 10);
  set_str(L, K_ID, cv->id);
  set_str(L, K_SERVICE, cv->service);
  set_int(L, K_VERSION, cv->version);
  set_str(L, K_STATE, cv->state);
  set_str(L, K_STATUS, cv->status);
  push_key(L, K_DATA);
  if (a->data_text) {
    a->text_status =
        flow__json_push_text(L, a->data_text, FLOW__JSON_MAX_DEPTH);
    if (a->text_status != FLOW__TEXT_OK)
      return 0;
  } else {
    push_object(L, a->data);
  }
  lua_rawset(L, -3);
  set_time(L, K_OPENED_AT, cv->opened_at);
  set_time(L, K_UPDATED_AT, cv->updated_at);
  set_time(L, K_DUE_AT, cv->due_at);
  set_int(L, K_SEQ, cv->seq);
  sb->case_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  /* Handlers run on a thread of the run's own: whatever stack a deep
     recursion grows goes with it (the collector frees the whole thread,
     the emergency collection included), instead of staying on the main
     thread for the next case to run out of memory over. */
  sb->run_L = lua_newthread(L);
  sb->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_createtable(L, 0, 4);
  set_str(L, K_NAME, ev->name);
  push_key(L, K_PAYLOAD);
  push_object(L, ev->payload);
  lua_rawset(L, -3);
  push_key(L, K_ACTOR);
  lua_createtable(L, 0, 2);
  const flow_actor *actor = ev->actor;
  set_str(L, K_ID, actor ? actor->id : NULL);
  push_key(L, K_ROLES);
  size_t nroles = actor && actor->roles ? actor->nroles : 0;
  lua_createtable(L, nroles > 64 ? 64 : (int)nroles, 0);
  for (size_t i = 0; i < nroles; i++) {
    lua_pushstring(L, actor->roles[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  flow__json_push_list_mt(L);
  lua_setmetatable(L, -2);
  lua_rawset(L, -3);
  lua_rawset(L, -3);
  set_time(L, K_AT, ev->at);
  if (ev->origin_key && ev->origin) {
    lua_pushstring(L, ev->origin_key);
    push_object(L, ev->origin);
    lua_rawset(L, -3);
  }
  sb->ev_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int
run_begin(flow__sandbox *sb, const flow__service *svc,
          const flow__case_view *cv, json_t *data, const char *data_text,
          const flow__event_view *ev, flow__err *err)
{
  flow__run_abort(sb);
  lua_State *L = sb->L;
  const char *chunk = svc && svc->chunkname ? svc->chunkname : "the service";
  /* Input too deep for a script is the sender's mistake, not the
     script's: refuse it before anything runs. */
  if (!flow__json_depth_ok(ev->payload, FLOW__JSON_MAX_DEPTH - 1) ||
      (data_text == NULL &&
       !flow__json_depth_ok(data, FLOW__JSON_MAX_DEPTH - 1)))
    return flow__err_set(err, FLOW_EINVAL,
                         "the %s of event '%.64s' is nested more than %d "
                         "levels deep",
                         flow__json_depth_ok(ev->payload,
                                             FLOW__JSON_MAX_DEPTH - 1)
                             ? "case data"
                             : "payload",
                         ev->name ? ev->name : "?", FLOW__JSON_MAX_DEPTH);
  flow__sb_start_as(sb, FLOW__WHAT_EVENT, ev->name ? ev->name : "?", chunk,
                    0);
  sb->svc = svc;
  sb->now = ev->at;
  sb->calls = json_array();
  sb->ncalls = sb->ntimers = sb->ntasks = sb->nopens = 0;
  if (sb->calls == NULL) {
    flow__sb_stop(sb);
    return flow__err_set(err, FLOW_ENOMEM, "out of memory starting a run");
  }
  sb->run_active = 1;
  begin_args args = { sb, cv, data, data_text, ev, FLOW__TEXT_OK };
  int st = flow__sb_protect(sb, begin_p, &args);
  int rc = flow__sb_outcome(sb, st, NULL, err);
  if (rc == 0 && args.text_status == FLOW__TEXT_DEEP)
    rc = flow__err_set(err, FLOW_EINVAL,
                       "the case data of event '%.64s' is nested more than "
                       "%d levels deep",
                       ev->name ? ev->name : "?", FLOW__JSON_MAX_DEPTH);
  else if (rc == 0 && args.text_status != FLOW__TEXT_OK)
    rc = flow__err_set(err, FLOW_EIO,
                       "case %s: its stored data is not a JSON object (was "
                       "the database changed by hand?)",
                       cv->id ? cv->id : "?");
  lua_settop(L, 0);
  if (rc != 0)
    flow__run_abort(sb);
  return rc;
}

int
flow__run_begin(flow__sandbox *sb, const flow__service *svc,
                const flow__case_view *cv, json_t *data,
                const flow__event_view *ev, flow__err *err)
{
  return run_begin(sb, svc, cv, data, NULL, ev, err);
}

int
flow__run_begin_text(flow__sandbox *sb, const flow__service *svc,
                     const flow__case_view *cv, const char *data_text,
                     const flow__event_view *ev, flow__err *err)
{
  return run_begin(sb, svc, cv, NULL, data_text, ev, err);
}

void
flow__sb_describe_ref(const flow__sandbox *sb, int ref, char *buf,
                      size_t len)
{
  const flow__service *svc = ref > 0 ? sb->svc : NULL;
  if (svc && !svc->is_form) {
    const char *top = ref == svc->validate_fn    ? "the validate function"
                      : ref == svc->initial_fn   ? "the initial function"
                      : ref == svc->sla.within_fn ? "the sla.within function"
                      : ref == svc->sla.warn_fn   ? "the sla.warn function"
                                                  : NULL;
    if (top) {
      snprintf(buf, len, "%s", top);
      return;
    }
  }
  for (size_t i = 0; svc && i < svc->nstates; i++) {
    const flow__state *st = &svc->states[i];
    if (st->enter == ref) {
      snprintf(buf, len, "the enter hook of state '%s'", st->name);
      return;
    }
    if (st->exit == ref) {
      snprintf(buf, len, "the exit hook of state '%s'", st->name);
      return;
    }
    for (size_t j = 0; j < st->non; j++) {
      if (st->on[j].handler == ref) {
        snprintf(buf, len, "the handler for '%s'", st->on[j].event);
        return;
      }
      if (st->on[j].guard == ref) {
        snprintf(buf, len, "the guard for '%s'", st->on[j].event);
        return;
      }
    }
    if (st->sla.within_fn == ref || st->sla.warn_fn == ref) {
      snprintf(buf, len, "the sla.%s function of state '%s'",
               st->sla.within_fn == ref ? "within" : "warn", st->name);
      return;
    }
  }
  snprintf(buf, len, "a function");
}

/* The chunk a function comes from, as messages name it ("@x" -> "x"). */
static void
source_name(const lua_Debug *ar, char *buf, size_t len)
{
  const char *s = ar->source ? ar->source : "?";
  if (*s == '@' || *s == '=')
    s++;
  snprintf(buf, len, "%s", s);
}

/* "missed_bin.lua:42": where the function ref is defined. */
static void
func_where(lua_State *L, int ref, char *buf, size_t len)
{
  char chunk[256];
  lua_Debug ar;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getinfo(L, ">S", &ar);
  source_name(&ar, chunk, sizeof chunk);
  snprintf(buf, len, "%s:%d", chunk, ar.linedefined);
}

/* Calls the function ref with (case, ev) and leaves its one result on top
   of the run's stack; where (of size WHERE_LEN) gets where it is defined
   when something went wrong. */
#define WHERE_LEN 300
static int
invoke_call(flow__sandbox *sb, int ref, char *where, flow__err *err)
{
  if (!sb->run_active)
    return flow__err_set(err, FLOW_EMISUSE,
                         "flow__run_invoke: no run has begun");
  lua_State *L = sb->run_L;
  lua_settop(L, 0);
  /* A run that was already killed or refused stays so. */
  int rc = flow__sb_outcome(sb, LUA_OK, NULL, err);
  if (rc != 0)
    return rc;
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, ref) != LUA_TFUNCTION) {
    lua_settop(L, 0);
    return flow__err_set(err, FLOW_EMISUSE,
                         "flow__run_invoke: reference %d is not a function",
                         ref);
  }
  flow__sb_describe(sb, FLOW__WHAT_FUNC, NULL,
                    sb->svc && sb->svc->chunkname ? sb->svc->chunkname
                                                  : "the service",
                    ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, sb->case_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, sb->ev_ref);
  int st = lua_pcall(L, 2, 1, 0);
  /* Where the function is defined, for an error that does not say: only
     worked out when something went wrong. */
  if (st != LUA_OK) {
    func_where(L, ref, where, WHERE_LEN);
    /* The outcome reads the error object on the main thread. */
    lua_settop(sb->L, 0);
    lua_xmove(L, sb->L, 1);
  }
  rc = flow__sb_outcome(sb, st, st != LUA_OK ? where : NULL, err);
  if (rc != 0)
    lua_settop(L, 0);
  return rc;
}

int
flow__run_invoke(flow__sandbox *sb, int ref, char **ret, int *truth,
                 flow__err *err)
{
  if (ret)
    *ret = NULL;
  if (truth)
    *truth = 0;
  if (sb->run_active &&
      (ref == FLOW__NOREF || ref == LUA_NOREF || ref == LUA_REFNIL))
    return flow__sb_outcome(sb, LUA_OK, NULL, err);
  char where[WHERE_LEN];
  int rc = invoke_call(sb, ref, where, err);
  if (rc != 0)
    return rc;
  lua_State *L = sb->run_L;
  int ty = lua_type(L, -1);
  if (truth)
    *truth = lua_toboolean(L, -1);
  if (ret && ty == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (memchr(s, 0, len) != NULL) {
      /* Cut at the NUL it would name another state. */
      func_where(L, ref, where, sizeof where);
      rc = flow__err_set(err, FLOW_ESCRIPT,
                         "%s: a handler returned a state name with a NUL "
                         "character (\\0) in it",
                         where);
    } else if ((*ret = flow__strndup(sb->alloc, s, len)) == NULL) {
      rc = flow__err_set(err, FLOW_ENOMEM, "out of memory");
    }
  } else if (ret && !truth && ty != LUA_TNIL) {
    /* Guards (truth wanted) may return anything; a handler may not. */
    func_where(L, ref, where, sizeof where);
    rc = flow__err_set(err, FLOW_ESCRIPT,
                       "%s: a handler must return the next state's name "
                       "(a string) or nothing, not a %s",
                       where, lua_typename(L, ty));
  }
  lua_settop(L, 0);
  return rc;
}

int
flow__run_invoke_text(flow__sandbox *sb, int ref, const char *what,
                      const char *expect, char **ret, flow__err *err)
{
  *ret = NULL;
  char where[WHERE_LEN];
  int rc = invoke_call(sb, ref, where, err);
  if (rc != 0)
    return rc;
  lua_State *L = sb->run_L;
  int ty = lua_type(L, -1);
  size_t len = 0;
  const char *s = ty == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  if (ty == LUA_TNIL) {
    rc = 0;
  } else if (s == NULL || memchr(s, 0, len) != NULL || len > 200) {
    func_where(L, ref, where, sizeof where);
    rc = flow__err_set(err, FLOW_ESCRIPT, "%s: %s must return %s, not %s%s",
                       where, what, expect,
                       s ? "text" : "a ", s ? " with a zero byte or over 200 "
                                             "bytes" : lua_typename(L, ty));
  } else if ((*ret = flow__strndup(sb->alloc, s, len)) == NULL) {
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory");
  }
  lua_settop(L, 0);
  return rc;
}

typedef struct state_args {
  flow__sandbox *sb;
  const char *state;
} state_args;

static int
set_state_p(lua_State *L)
{
  state_args *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->sb->case_ref);
  lua_pushliteral(L, "state");
  lua_pushstring(L, a->state);
  lua_rawset(L, -3);
  return 0;
}

void
flow__run_set_state(flow__sandbox *sb, const char *state)
{
  if (sb == NULL || !sb->run_active || state == NULL)
    return;
  state_args a = { sb, state };
  int st = flow__sb_protect(sb, set_state_p, &a);
  if (st != LUA_OK) {
    /* Only memory can fail here; let the next invoke or end report it. */
    flow__err ignored;
    flow__sb_outcome(sb, st, NULL, &ignored);
    if (sb->killed == FLOW__KILL_NONE && !sb->enomem)
      sb->enomem = 1;
  }
  lua_settop(sb->L, 0);
}

enum { END_OK = 0, END_NOT_TABLE = 1 };

typedef struct end_args {
  flow__sandbox *sb;
  json_t *data;
  int rc;
  const char *type;
  char msg[512];
} end_args;

static int
end_p(lua_State *L)
{
  end_args *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->sb->case_ref);
  lua_pushliteral(L, "data");
  int ty = lua_rawget(L, -2);
  if (ty != LUA_TTABLE) {
    a->rc = END_NOT_TABLE;
    a->type = lua_typename(L, ty);
    return 0;
  }
  a->rc = flow__json_from_lua_sb(L, -1, "data", a->sb, &a->data, NULL,
                                 a->msg, sizeof a->msg);
  return 0;
}

/* Fields of type list hold [] even when the script left an empty table,
   which on its own would read as {}. */
static int
fix_empty_lists(const flow__service *svc, json_t *data)
{
  for (size_t i = 0; svc && i < svc->nfields; i++) {
    const flow__field *f = &svc->fields[i];
    if (f->type != FLOW__F_LIST)
      continue;
    json_t *v = json_object_get(data, f->name);
    if (v && json_is_object(v) && json_object_size(v) == 0) {
      json_t *arr = json_array();
      if (arr == NULL || json_object_set_new(data, f->name, arr) != 0)
        return FLOW_ENOMEM;
    }
  }
  return 0;
}

int
flow__run_end(flow__sandbox *sb, json_t **data_out, json_t **calls_out,
              flow__err *err)
{
  if (data_out)
    *data_out = NULL;
  if (calls_out)
    *calls_out = NULL;
  if (!sb->run_active)
    return flow__err_set(err, FLOW_EMISUSE, "flow__run_end: no run has begun");
  lua_State *L = sb->L;
  const char *chunk =
      sb->svc && sb->svc->chunkname ? sb->svc->chunkname : "the service";
  lua_settop(L, 0);
  int rc = flow__sb_outcome(sb, LUA_OK, NULL, err);
  if (rc != 0)
    goto done;

  end_args a;
  memset(&a, 0, sizeof a);
  a.sb = sb;
  int st = flow__sb_protect(sb, end_p, &a);
  if ((rc = flow__sb_outcome(sb, st, NULL, err)) != 0)
    goto done;
  if (a.rc == END_NOT_TABLE) {
    rc = flow__err_set(err, FLOW_ESCRIPT,
                       "%s: case.data must stay a table (a handler set it "
                       "to a %s)",
                       chunk, a.type);
  } else if (a.rc == FLOW_ENOMEM) {
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory converting case.data");
  } else if (a.rc == FLOW_ELIMIT) {
    rc = flow__sb_outcome(sb, LUA_OK, NULL, err);
  } else if (a.rc == FLOW_EDATA) {
    rc = flow__err_set(err, FLOW_EDATA, "%s: %s", chunk, a.msg);
  } else if (a.rc != 0) {
    rc = flow__err_set(err, FLOW_ESCRIPT, "%s: %s", chunk, a.msg);
  } else if (!json_is_object(a.data)) {
    rc = flow__err_set(err, FLOW_ESCRIPT,
                       "%s: case.data must stay a table with named keys, "
                       "not a list",
                       chunk);
  } else if (fix_empty_lists(sb->svc, a.data) != 0) {
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory converting case.data");
  }
  if (rc != 0) {
    json_decref(a.data);
    goto done;
  }
  if (data_out)
    *data_out = a.data;
  else
    json_decref(a.data);
  if (calls_out) {
    *calls_out = sb->calls;
    sb->calls = NULL;
    sb->extra = 0;
  }
done:
  flow__run_abort(sb);
  return rc;
}

static int
unref_p(lua_State *L)
{
  flow__sandbox *sb = lua_touserdata(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, sb->case_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, sb->ev_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, sb->run_ref);
  return 0;
}

void
flow__run_abort(flow__sandbox *sb)
{
  if (sb == NULL)
    return;
  json_decref(sb->calls);
  sb->calls = NULL;
  sb->extra = 0;
  if (sb->run_active) {
    /* Cleaning up must not fail for want of the budget the run used. */
    sb->limit_on = 0;
    if (flow__sb_protect(sb, unref_p, sb) != LUA_OK)
      lua_pop(sb->L, 1);
    sb->limit_on = 1;
  }
  sb->run_active = 0;
  sb->case_ref = sb->ev_ref = sb->run_ref = LUA_NOREF;
  sb->run_L = NULL;
  sb->svc = NULL;
  flow__sb_stop(sb);
  lua_settop(sb->L, 0);
  /* Whatever the run did to the upvalues of the script's functions is
     undone, so the next case starts where every case starts. */
  flow__freeze_restore(sb->L);
}

/* ---- patterns and eval ------------------------------------------------ */

typedef struct match_args {
  const char *s;
  size_t len;
  const char *pattern;
  int found;
} match_args;

static int
match_p(lua_State *L)
{
  match_args *a = lua_touserdata(L, 1);
  flow__sb_push_find(L);
  lua_pushlstring(L, a->s, a->len);
  lua_pushstring(L, a->pattern);
  lua_call(L, 2, 1);
  a->found = !lua_isnil(L, -1);
  return 0;
}

static void
unit_save(const flow__sandbox *sb, unit_state *u)
{
  u->instr_count = sb->instr_count;
  u->instr_limit = sb->instr_limit;
  u->counting = sb->counting;
  u->killed = sb->killed;
  u->enomem = sb->enomem;
  u->refused = sb->refused;
  u->pace = sb->pace;
  u->log_bytes = sb->log_bytes;
  u->cpu_start = sb->cpu_start;
  u->tick_wall = sb->tick_wall;
  u->tick_cpu = sb->tick_cpu;
  u->tick_instr = sb->tick_instr;
  u->what_kind = sb->what_kind;
  u->what_a = sb->what_a;
  u->what_b = sb->what_b;
  u->what_ref = sb->what_ref;
  if (sb->what_kind == FLOW__WHAT_TEXT)
    memcpy(u->what, sb->what, sizeof u->what);
  if (sb->refused)
    memcpy(u->refuse_msg, sb->refuse_msg, sizeof u->refuse_msg);
}

static void
unit_restore(flow__sandbox *sb, const unit_state *u)
{
  sb->instr_count = u->instr_count;
  sb->instr_limit = u->instr_limit;
  sb->counting = u->counting;
  sb->killed = u->killed;
  sb->enomem = u->enomem;
  sb->refused = u->refused;
  sb->pace = u->pace;
  sb->log_bytes = u->log_bytes;
  sb->cpu_start = u->cpu_start;
  sb->tick_wall = u->tick_wall;
  sb->tick_cpu = u->tick_cpu;
  sb->tick_instr = u->tick_instr;
  sb->what_kind = u->what_kind;
  sb->what_a = u->what_a;
  sb->what_b = u->what_b;
  sb->what_ref = u->what_ref;
  if (u->what_kind == FLOW__WHAT_TEXT)
    memcpy(sb->what, u->what, sizeof u->what);
  if (u->refused)
    memcpy(sb->refuse_msg, u->refuse_msg, sizeof u->refuse_msg);
}

int
flow__sandbox_match(void *ctx, const char *s, size_t len,
                    const char *pattern)
{
  flow__sandbox *sb = ctx;
  if (sb != NULL && s == NULL && pattern == NULL) {
    sb->match_unit_on = 0; /* a validation begins */
    return 0;
  }
  if (sb == NULL || s == NULL || pattern == NULL)
    return FLOW_EMISUSE;
  /* A run may be open around the validation; its budget is its own.
     The validation's patterns share one unit, kept aside between them.
     (Saved on the stack: an allocation here could fail where the check
     itself would not.) */
  unit_state saved;
  unit_state *u = &saved;
  unit_save(sb, u);
  lua_settop(sb->L, 0);
  if (sb->match_unit_on) {
    unit_restore(sb, &sb->match_unit);
    lua_sethook(sb->L, flow__sb_hook, LUA_MASKCOUNT, sb->pace);
  } else {
    flow__sb_start_as(sb, FLOW__WHAT_PATTERN, pattern, NULL, 0);
  }
  flow__sb_describe(sb, FLOW__WHAT_PATTERN, pattern, NULL, 0);
  match_args a = { s, len, pattern, 0 };
  int st = flow__sb_protect(sb, match_p, &a);
  flow__err err;
  int rc = flow__sb_outcome(sb, st, NULL, &err);
  unit_save(sb, &sb->match_unit);
  sb->match_unit_on = 1;
  unit_restore(sb, u);
  lua_sethook(sb->L, flow__sb_hook, LUA_MASKCOUNT, sb->pace);
  lua_settop(sb->L, 0);
  if (rc != 0)
    return rc == FLOW_EREFUSED ? FLOW_ESCRIPT : rc;
  return a.found;
}

typedef struct result_args {
  flow__sandbox *sb;
  json_t *json;
  int rc;
  char msg[512];
} result_args;

/* Converts its first argument; the second is the result_args. */
static int
result_p(lua_State *L)
{
  result_args *a = lua_touserdata(L, 2);
  a->rc = flow__json_from_lua_sb(L, 1, "result", a->sb, &a->json, NULL,
                                 a->msg, sizeof a->msg);
  return 0;
}

typedef struct freeze_args {
  int def; /* 1 when the definition is the second argument */
  int refused, line;
  char msg[256];
} freeze_args;

static int
freeze_p(lua_State *L)
{
  freeze_args *a = lua_touserdata(L, 1);
  a->refused =
      flow__freeze(L, a->def ? 2 : 0, &a->line, a->msg, sizeof a->msg);
  return 0;
}

int
flow__sb_freeze(flow__sandbox *sb, int def, int *line, char *msg,
                size_t len, flow__err *err)
{
  if (sb->frozen)
    return 0;
  freeze_args a;
  memset(&a, 0, sizeof a);
  a.def = def != 0;
  def = def ? lua_absindex(sb->L, def) : 0;
  lua_pushcfunction(sb->L, freeze_p);
  lua_pushlightuserdata(sb->L, &a);
  if (def)
    lua_pushvalue(sb->L, def);
  int st = lua_pcall(sb->L, def ? 2 : 1, 0, 0);
  int rc = flow__sb_outcome(sb, st, NULL, err);
  if (rc != 0)
    return rc;
  if (a.refused) {
    *line = a.line;
    snprintf(msg, len, "%s", a.msg);
    return FLOW_ESCRIPT;
  }
  sb->frozen = 1;
  return 0;
}

int
flow__sandbox_eval(flow__sandbox *sb, const char *code, size_t len,
                   const char *chunkname, json_t **out, flow__err *err)
{
  *out = NULL;
  lua_State *L = sb->L;
  const char *name = chunkname ? chunkname : "eval";
  char cname[512];
  snprintf(cname, sizeof cname, "=%s", name);

  flow__run_abort(sb);
  flow__sb_start(sb, "the chunk %s", name);
  sb->now = flow__sb_clock(sb);
  flow__sb_seed(sb, 0);
  /* flow.call works as in a handler; the requests are dropped. */
  sb->calls = json_array();
  sb->ncalls = sb->ntimers = sb->ntasks = sb->nopens = 0;
  int rc = 0, line;
  char msg[FLOW__ERRMSG_MAX];
  if (sb->calls == NULL) {
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory");
    goto done;
  }
  /* A chunk sees what a handler sees: frozen globals. */
  if ((rc = flow__sb_freeze(sb, 0, &line, msg, sizeof msg, err)) != 0) {
    if (rc == FLOW_ESCRIPT)
      rc = flow__err_set(err, FLOW_ESCRIPT, "%s:%d: %s", name, line, msg);
    goto done;
  }
  int st = luaL_loadbufferx(L, code, len, cname, "t");
  if (st == LUA_OK &&
      (rc = flow__bytecode_check(L, sb, &line, msg, sizeof msg)) != 0) {
    if (rc == FLOW_ELIMIT)
      rc = flow__sb_outcome(sb, LUA_OK, NULL, err);
    else
      rc = flow__err_set(err, rc, "%s", msg);
    goto done;
  }
  if (st == LUA_OK)
    st = lua_pcall(L, 0, 1, 0);
  if ((rc = flow__sb_outcome(sb, st, NULL, err)) != 0)
    goto done;
  result_args a;
  memset(&a, 0, sizeof a);
  a.sb = sb;
  lua_pushcfunction(L, result_p);
  lua_pushvalue(L, -2);
  lua_pushlightuserdata(L, &a);
  st = lua_pcall(L, 2, 0, 0);
  if ((rc = flow__sb_outcome(sb, st, NULL, err)) != 0) {
    json_decref(a.json);
    goto done;
  }
  if (a.rc == FLOW_ENOMEM)
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory");
  else if (a.rc == FLOW_ELIMIT)
    rc = flow__sb_outcome(sb, LUA_OK, NULL, err);
  else if (a.rc != 0)
    rc = flow__err_set(err, FLOW_EINVAL, "%s: %s", name, a.msg);
  else
    *out = a.json;
done:
  json_decref(sb->calls);
  sb->calls = NULL;
  sb->extra = 0;
  flow__sb_stop(sb);
  lua_settop(L, 0);
  flow__freeze_restore(L);
  return rc;
}

int
flow__sandbox_damaged(const flow__sandbox *sb)
{
  /* A kill stopped a script at an instruction of the budget's choosing.
     Frozen globals and restored upvalues leave it nothing shared to
     damage, but the state also holds whatever the killed run left for the
     collector, and a fresh state costs one compile: the engine should not
     trust this one. */
  return sb != NULL && sb->damaged;
}

const char *
flow__sandbox_refused_at(const flow__sandbox *sb)
{
  return sb->refuse_where;
}
