/*
 * The flow module's date and working-day helpers (DESIGN.md promises
 * them beside flow.now): what a script needs to tell a resident a date,
 * or to work out a deadline the way the engine's own timers do, on the
 * engine's calendar.
 *
 *   flow.add(duration [, from])        from (an ISO time; default now)
 *                                      plus the duration: "10 working
 *                                      days", "48h"...; an ISO time
 *   flow.date([time [, "long"]])       the calendar's local date of time
 *                                      (default now): "2026-02-16", or
 *                                      "Monday 16 February 2026"
 *   flow.is_working_day([day])         whether a date ("2026-12-25") or
 *                                      the local date of a time is one
 *   flow.before(a, b)                  whether time a is earlier than b
 *   flow.local_time(day, "10:00")      the instant of that time of day on
 *                                      the calendar's clock, on the local
 *                                      date of day (a date or a time)
 *
 * Wherever a time is taken, a date alone ("2026-12-01") means its local
 * midnight.
 *
 * Times are compared by flow.before, not as text: the engine prints
 * milliseconds when there are some ("...09:00:00.500Z"), and "." sorts
 * before "Z", so such a time reads as earlier than the whole second
 * before it.
 */
#include "script/script_int.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MS_PER_DAY 86400000LL

static flow__sandbox *
time_sb(lua_State *L)
{
  return *(flow__sandbox **)lua_getextraspace(L);
}

static const flow__calendar *
calendar(lua_State *L)
{
  flow__sandbox *sb = time_sb(L);
  return sb->cal ? sb->cal : &sb->default_cal;
}

/* luaL_error with printf's formats (Lua's own take no precision). */
static int
time_error(lua_State *L, const char *fmt, ...) FLOW__PRINTF(2, 3);

static int
time_error(lua_State *L, const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return luaL_error(L, "%s", msg);
}

/* The time at idx (ISO text), or flow.now() when absent (a test file's
   flow.now is its virtual clock); raises naming fn. */
static int64_t
time_arg(lua_State *L, int idx, const char *fn)
{
  int64_t t;
  if (lua_isnoneornil(L, idx)) {
    lua_getglobal(L, "flow");
    lua_getfield(L, -1, "now");
    lua_call(L, 0, 1);
    int bad = flow__time_parse(lua_tostring(L, -1) ? lua_tostring(L, -1) : "",
                               &t);
    lua_pop(L, 2);
    if (bad)
      time_error(L, "%s: flow.now() did not give a time", fn);
    return t;
  }
  if (lua_type(L, idx) != LUA_TSTRING)
    time_error(L, "%s: a time is text like \"2026-12-01T09:30:00Z\", not a %s",
          fn, luaL_typename(L, idx));
  /* A date alone is its local midnight on the calendar. */
  int y, m, d;
  if (lua_rawlen(L, idx) == 10 &&
      flow__date_parse(lua_tostring(L, idx), &y, &m, &d) == 0)
    return flow__calendar_local_to_utc(calendar(L),
                                       flow__days_from_civil(y, m, d) *
                                           MS_PER_DAY);
  if (flow__time_parse(lua_tostring(L, idx), &t) != 0)
    time_error(L,
          "%s: '%.60s' is not a time (write it like "
          "\"2026-12-01T09:30:00Z\", with its offset or Z, or a date "
          "like \"2026-12-01\")",
          fn, lua_tostring(L, idx));
  return t;
}

/* Days since 1970-01-01 of the calendar's local date at instant t. */
static int64_t
local_day(const flow__calendar *cal, int64_t t)
{
  int64_t local = t + (int64_t)flow__calendar_offset(cal, t) * 60000;
  int64_t d = local / MS_PER_DAY;
  return local % MS_PER_DAY < 0 ? d - 1 : d;
}

int
flow__sb_add(lua_State *L)
{
  const char *what = luaL_checkstring(L, 1);
  int64_t from = time_arg(L, 2, "flow.add");
  flow__duration d;
  flow__err err;
  flow__err_clear(&err);
  if (flow__duration_parse(what, &d, &err) != 0)
    return time_error(L, "flow.add: %s", err.msg);
  int64_t out;
  if (flow__calendar_add(calendar(L), from, &d, &out) != 0)
    return time_error(L, "flow.add: '%.60s' from that time is too far off",
                      what);
  char buf[40];
  flow__time_format(buf, sizeof buf, out);
  lua_pushstring(L, buf);
  return 1;
}

int
flow__sb_date(lua_State *L)
{
  static const char *const wd[] = { "Thursday", "Friday",  "Saturday",
                                    "Sunday",   "Monday",  "Tuesday",
                                    "Wednesday" };
  static const char *const mon[] = { "January",   "February", "March",
                                     "April",     "May",      "June",
                                     "July",      "August",   "September",
                                     "October",   "November", "December" };
  int64_t t = time_arg(L, 1, "flow.date");
  const char *style = luaL_optstring(L, 2, "iso");
  int long_form = strcmp(style, "long") == 0;
  if (!long_form && strcmp(style, "iso") != 0)
    return time_error(L,
                 "flow.date: the style is \"iso\" (2026-02-16) or \"long\" "
                 "(Monday 16 February 2026), not '%.20s'",
                 style);
  int64_t day = local_day(calendar(L), t);
  int y, m, dd;
  flow__civil_from_days(day, &y, &m, &dd);
  char buf[64];
  if (long_form)
    snprintf(buf, sizeof buf, "%s %d %s %d",
             wd[((day % 7) + 7) % 7], dd, mon[m - 1], y);
  else
    snprintf(buf, sizeof buf, "%04d-%02d-%02d", y, m, dd);
  lua_pushstring(L, buf);
  return 1;
}

int
flow__sb_is_working_day(lua_State *L)
{
  const flow__calendar *cal = calendar(L);
  int64_t day;
  if (lua_type(L, 1) == LUA_TSTRING && lua_rawlen(L, 1) == 10) {
    int y, m, d;
    if (flow__date_parse(lua_tostring(L, 1), &y, &m, &d) != 0)
      return time_error(L,
                   "flow.is_working_day: '%.20s' is not a date (write it "
                   "like \"2026-12-25\")",
                   lua_tostring(L, 1));
    day = flow__days_from_civil(y, m, d);
  } else {
    day = local_day(cal, time_arg(L, 1, "flow.is_working_day"));
  }
  lua_pushboolean(L, flow__calendar_is_working_day(cal, day));
  return 1;
}

int
flow__sb_before(lua_State *L)
{
  if (lua_gettop(L) < 2)
    return luaL_error(L, "flow.before needs two times: flow.before(a, b) is "
                         "true when a is earlier than b");
  int64_t a = time_arg(L, 1, "flow.before");
  int64_t b = time_arg(L, 2, "flow.before");
  lua_pushboolean(L, a < b);
  return 1;
}

int
flow__sb_local_time(lua_State *L)
{
  int64_t day_start = time_arg(L, 1, "flow.local_time");
  const char *clock = luaL_optstring(L, 2, "00:00");
  int minutes;
  if (flow__clock_time_parse(clock, &minutes) != 0)
    return time_error(L,
                 "flow.local_time: '%.20s' is not a time of day (write it "
                 "like \"10:00\" or \"17:30\")",
                 clock);
  const flow__calendar *cal = calendar(L);
  int64_t day = local_day(cal, day_start);
  int64_t at = flow__calendar_local_to_utc(cal, day * MS_PER_DAY +
                                                    (int64_t)minutes * 60000);
  char buf[40];
  flow__time_format(buf, sizeof buf, at);
  lua_pushstring(L, buf);
  return 1;
}
