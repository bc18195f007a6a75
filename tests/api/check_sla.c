/*
 * Service levels that depend on the case, a state's own service level,
 * restarting and stopping the clock, and a first state chosen from the
 * data (issue 14, items 1-3), through the public API on the virtual clock.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_util.h"

static const char *const SERVICE =
    "return {\n"
    "  name = 'graffiti', version = 1,\n"
    "  fields = {\n"
    "    offensive = { type = 'boolean' },\n"
    "    land = { type = 'enum', values = { 'council', 'private' } },\n"
    "    stage = { type = 'integer' },\n"
    "  },\n"
    "  initial = function(case)\n"                              /* 8 */
    "    if case.data.land == 'private' then return 'await_consent' end\n"
    "    return 'assign'\n"
    "  end,\n"
    "  sla = {\n"
    "    within = function(case)\n"                              /* 13 */
    "      if case.data.offensive then return '1 working day' end\n"
    "      return '10 working days'\n"
    "    end,\n"
    "    warn = function(case)\n"
    "      if not case.data.offensive then return '8 working days' end\n"
    "    end,\n"
    "  },\n"
    "  states = {\n"
    "    await_consent = { on = {\n"
    "      consent = 'assign',\n"
    "      wait = function(case) flow.sla.pause('waiting for the owner') end,\n"
    "      back = function(case) flow.sla.resume() end,\n"
    "    } },\n"
    "    assign = { on = {\n"
    "      hold = function(case, ev) flow.sla.pause(ev.payload.why) end,\n"
    "      resume = function(case) flow.sla.resume() end,\n"
    "      hold_twice = function(case)\n"
    "        flow.sla.pause(); flow.sla.pause(); flow.sla.resume()\n"
    "      end,\n"
    "      restart = function(case)\n"
    "        flow.sla.restart{ within = '2 working days', warn = '1 working "
    "day' }\n"
    "      end,\n"
    "      escalate = 'stage2',\n"
    "      done = 'closed',\n"
    "      sla_breached = function(case) case.data.stage = 9 end,\n"
    "    } },\n"
    "    stage2 = { sla = { within = '20 working days' }, on = {\n"
    "      done = 'closed',\n"
    "      hold = function(case) flow.sla.pause() end,\n"
    "      resume = function(case) flow.sla.resume() end,\n"
    "    } },\n"
    "    closed = { final = true },\n"
    "  },\n"
    "}\n";

static flow_engine *E;
static char dir[64], path[96];

static void
open_engine(void)
{
  char err[256];
  ck_assert_msg(flow_engine_open(&E, path, NULL, err, sizeof err) == 0, "%s",
                err);
}

static void
setup(void)
{
  api_db_make("sla", dir, path);
  open_engine();
  ck_assert_msg(flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE),
                                         "graffiti.lua") == 0,
                "%s", flow_errmsg(E));
  flow_engine_set_time(E, at("2026-11-27T09:00:00Z")); /* a Friday */
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
  api_db_remove(dir);
}

static void
now(const char *iso)
{
  flow_engine_set_time(E, at(iso));
}

static char *
get(const char *id)
{
  char *out;
  ck_assert_int_eq(flow_case_get(&out, E, id), 0);
  return out;
}

static void
assert_case_has(const char *id, const char *want)
{
  char *c = get(id);
  assert_has(c, want);
  flow_free(c);
}

static void
assert_case_lacks(const char *id, const char *want)
{
  char *c = get(id);
  ck_assert_msg(strstr(c, want) == NULL, "did not want %s in %s", want, c);
  flow_free(c);
}

static void
sig(const char *id, const char *event, const char *payload)
{
  ck_assert_msg(flow_case_signal(NULL, E, id, event, payload, NULL) == 0,
                "%s: %s", event, flow_errmsg(E));
}

static size_t
fire(const char *iso)
{
  size_t n = 0;
  now(iso);
  ck_assert_msg(flow_engine_fire_due(E, &n) == 0, "%s", flow_errmsg(E));
  return n;
}

static char *
timers(const char *id)
{
  char *out;
  ck_assert_int_eq(flow_case_timers(&out, E, id), 0);
  return out;
}

static size_t
count(const char *text, const char *needle)
{
  size_t n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* ---- item 1: a service level from the case ---------------------------- */

START_TEST(test_within_from_the_case)
{
  char *c;
  ck_assert_int_eq(flow_case_open(&c, E, "graffiti", "{\"offensive\": true}",
                                  NULL),
                   0);
  /* 1 working day from Friday 09:00 is Monday 09:00; no warning. */
  assert_has(c, "\"due_at\":\"2026-11-30T09:00:00Z\"");
  assert_has(c, "\"state\":\"assign\"");
  flow_free(c);
  c = timers("1");
  ck_assert_uint_eq(count(c, "\"event\":\"sla_breached\""), 1);
  ck_assert_uint_eq(count(c, "\"event\":\"sla_warning\""), 0);
  assert_has(c, "{\"within\":\"1 working day\"}");
  flow_free(c);

  ck_assert_int_eq(flow_case_open(&c, E, "graffiti", "{\"offensive\": false}",
                                  NULL),
                   0);
  assert_has(c, "\"due_at\":\"2026-12-11T09:00:00Z\"");
  flow_free(c);
  c = timers("2");
  assert_has(c, "\"due_at\":\"2026-12-09T09:00:00Z\",\"event\":\"sla_warning\"");
  flow_free(c);

  /* The computed start is in the history. */
  ck_assert_int_eq(flow_case_history(&c, E, "2"), 0);
  assert_has(c, "\"change\":\"started\"");
  assert_has(c, "\"within\":\"10 working days\"");
  flow_free(c);

  /* Overdue follows it: case 1 is due on Monday, case 2 is not. */
  now("2026-11-30T10:00:00Z");
  flow_case_query q = { .version = 2, .overdue = 1 };
  ck_assert_int_eq(flow_case_list(&c, E, &q), 0);
  assert_has(c, "\"id\":\"1\"");
  ck_assert_ptr_null(strstr(c, "\"id\":\"2\""));
  flow_free(c);
  ck_assert_uint_eq(fire("2026-11-30T09:00:00Z"), 1);
  assert_case_has("1", "\"stage\":9");
}
END_TEST

static const char *const BAD_SLA =
    "return {\n"
    "  name = 'bad', version = 1,\n"
    "  fields = { mode = { type = 'string' } },\n"
    "  initial = 'open',\n"
    "  sla = { within = function(case)\n"                           /* 5 */
    "    local m = case.data.mode\n"
    "    if m == 'number' then return 5 end\n"
    "    if m == 'words' then return 'soon' end\n"
    "    if m == 'throw' then error('no level for this') end\n"      /* 9 */
    "    if m == 'loop' then while true do end end\n"
    "    if m == 'none' then return nil end\n"
    "    return '2d'\n"
    "  end },\n"
    "  states = { open = { on = { done = 'closed' } },\n"
    "             closed = { final = true } },\n"
    "}\n";

START_TEST(test_within_refusals)
{
  ck_assert_msg(flow_service_load_string(NULL, E, BAD_SLA, strlen(BAD_SLA),
                                         "bad.lua") == 0,
                "%s", flow_errmsg(E));
  char *c = NULL;
  ck_assert_int_eq(
      flow_case_open(&c, E, "bad", "{\"mode\": \"number\"}", NULL),
      FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "bad.lua:5: sla within must return a duration");
  assert_has(flow_errmsg(E), "not a number");
  ck_assert_int_eq(flow_case_open(&c, E, "bad", "{\"mode\": \"words\"}", NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "returned 'soon', which is not a duration");
  ck_assert_int_eq(flow_case_open(&c, E, "bad", "{\"mode\": \"throw\"}", NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "bad.lua:9:");
  assert_has(flow_errmsg(E), "no level for this");
  ck_assert_int_eq(flow_case_open(&c, E, "bad", "{\"mode\": \"loop\"}", NULL),
                   FLOW_ELIMIT);
  /* Nothing was written by any of them. */
  flow_case_query q = { .version = 2 };
  ck_assert_int_eq(flow_case_list(&c, E, &q), 0);
  ck_assert_str_eq(c, "[]");
  flow_free(c);
  /* nil: no service level for this case. */
  ck_assert_int_eq(flow_case_open(&c, E, "bad", "{\"mode\": \"none\"}", NULL),
                   0);
  assert_has(c, "\"due_at\":null");
  flow_free(c);
  ck_assert_int_eq(flow_case_timers(&c, E, "1"), 0);
  ck_assert_str_eq(c, "[]");
  flow_free(c);
}
END_TEST

START_TEST(test_state_level_and_restart)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "graffiti", "{}", NULL), 0);
  now("2026-11-30T09:00:00Z");
  sig("1", "restart", NULL);
  /* 2 working days from Monday 09:00: Wednesday; warning Tuesday. */
  assert_case_has("1", "\"due_at\":\"2026-12-02T09:00:00Z\"");
  char *c = timers("1");
  ck_assert_uint_eq(count(c, "\"event\":\"sla_breached\""), 1);
  ck_assert_uint_eq(count(c, "\"event\":\"sla_warning\""), 1);
  assert_has(c, "\"due_at\":\"2026-12-01T09:00:00Z\",\"event\":\"sla_warning\"");
  flow_free(c);

  now("2026-12-01T09:00:00Z");
  sig("1", "escalate", NULL);
  /* Stage 2 has 20 working days of its own, from Tuesday 1 December:
     the 25th and 28th are bank holidays. */
  assert_case_has("1", "\"due_at\":\"2026-12-31T09:00:00Z\"");
  c = timers("1");
  ck_assert_uint_eq(count(c, "\"event\":\"sla_breached\""), 1);
  ck_assert_uint_eq(count(c, "\"event\":\"sla_warning\""), 0);
  assert_has(c, "{\"within\":\"20 working days\"}");
  flow_free(c);
  ck_assert_int_eq(flow_case_history(&c, E, "1"), 0);
  assert_has(c, "\"change\":\"restarted\"");
  ck_assert_uint_eq(count(c, "\"change\":\"started\""), 2);
  flow_free(c);
  /* The old warning is gone: nothing fires on the 1st or 2nd. */
  ck_assert_uint_eq(fire("2026-12-02T09:00:00Z"), 0);
}
END_TEST

/* ---- item 2: stopping the clock -------------------------------------- */

START_TEST(test_pause_over_a_weekend)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "graffiti", "{}", NULL), 0);
  /* Due Friday 11 December 09:00, warning Wednesday 9th. */
  now("2026-11-27T15:00:00Z");
  sig("1", "hold", "{\"why\": \"asked the resident for a photo\"}");
  assert_case_has("1", "\"sla_paused_at\":\"2026-11-27T15:00:00Z\"");
  char *c = timers("1");
  ck_assert_uint_eq(count(c, "\"status\":\"paused\""), 2);
  flow_free(c);
  now("2026-11-30T11:00:00Z");
  sig("1", "resume", NULL);
  /* Stopped for Friday 15:00-17:00 and Monday 09:00-11:00: 4 working
     hours, so both move on by 4 working hours. */
  assert_case_has("1", "\"due_at\":\"2026-12-11T13:00:00Z\"");
  assert_case_lacks("1", "sla_paused_at");
  c = timers("1");
  assert_has(c, "\"due_at\":\"2026-12-09T13:00:00Z\",\"event\":\"sla_warning\"");
  ck_assert_uint_eq(count(c, "\"status\":\"paused\""), 0);
  flow_free(c);
  ck_assert_int_eq(flow_case_history(&c, E, "1"), 0);
  assert_has(c, "\"change\":\"paused\"");
  assert_has(c, "\"reason\":\"asked the resident for a photo\"");
  assert_has(c, "\"change\":\"resumed\"");
  assert_has(c, "\"working_ms\":14400000");
  flow_free(c);
  ck_assert_uint_eq(fire("2026-12-09T12:59:59Z"), 0);
  ck_assert_uint_eq(fire("2026-12-09T13:00:00Z"), 1);
}
END_TEST

START_TEST(test_pause_over_christmas)
{
  now("2026-12-24T09:00:00Z");
  ck_assert_int_eq(flow_case_open(NULL, E, "graffiti", "{}", NULL), 0);
  /* 10 working days from Thursday 24 December: the 25th, 28th and 1
     January are bank holidays, so Tuesday 12 January. */
  assert_case_has("1", "\"due_at\":\"2027-01-12T09:00:00Z\"");
  now("2026-12-24T16:00:00Z");
  sig("1", "hold", "{}");
  /* A breach or warning due while paused does not fire. */
  ck_assert_uint_eq(fire("2027-02-01T09:00:00Z"), 0);
  now("2026-12-29T10:00:00Z");
  sig("1", "resume", NULL);
  /* Stopped 24th 16:00-17:00 and 29th 09:00-10:00: 2 working hours. */
  assert_case_has("1", "\"due_at\":\"2027-01-12T11:00:00Z\"");
}
END_TEST

START_TEST(test_pause_over_the_clock_change)
{
  /* Thursday 25 March 2027; Good Friday is the 26th, the clocks go
     forward on Sunday 28th, Easter Monday is the 29th. */
  now("2027-03-25T09:00:00Z");
  ck_assert_int_eq(flow_case_open(NULL, E, "graffiti", "{}", NULL), 0);
  /* 10 working days: Monday 12 April at 09:00 summer time. */
  assert_case_has("1", "\"due_at\":\"2027-04-12T08:00:00Z\"");
  now("2027-03-25T15:00:00Z");
  sig("1", "hold", "{}");
  now("2027-03-30T09:00:00Z"); /* 10:00 summer time */
  sig("1", "resume", NULL);
  /* Stopped 15:00-17:00 on the 25th and 09:00-10:00 (local) on the
     30th: 3 working hours. */
  assert_case_has("1", "\"due_at\":\"2027-04-12T11:00:00Z\"");
}
END_TEST

START_TEST(test_pause_whole_days_lands_on_an_opening)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "graffiti", "{}", NULL), 0);
  sig("1", "restart", NULL); /* 2 working days: Tuesday 1 Dec 09:00 */
  assert_case_has("1", "\"due_at\":\"2026-12-01T09:00:00Z\"");
  now("2026-11-30T09:00:00Z");
  sig("1", "hold", "{}");
  now("2026-12-02T09:00:00Z");
  sig("1", "resume", NULL);
  /* Two whole working days stopped: the due time is two working days
     later at the same time of day, Thursday 09:00, not Wednesday 17:00. */
  assert_case_has("1", "\"due_at\":\"2026-12-03T09:00:00Z\"");
}
END_TEST

START_TEST(test_pause_twice_and_overdue)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "graffiti", "{\"offensive\": true}",
                                  NULL),
                   0);
  /* Pausing twice keeps the first pause; resuming in the same event
     stops nothing. */
  sig("1", "hold_twice", NULL);
  assert_case_has("1", "\"due_at\":\"2026-11-30T09:00:00Z\"");
  assert_case_lacks("1", "sla_paused_at");
  sig("1", "hold", "{}");
  now("2026-12-01T09:00:00Z");
  /* Past its due time while paused: not overdue. */
  char *c;
  flow_case_query q = { .version = 2, .overdue = 1 };
  ck_assert_int_eq(flow_case_list(&c, E, &q), 0);
  ck_assert_str_eq(c, "[]");
  flow_free(c);
  /* A second resume, or a resume of a running clock, changes nothing. */
  sig("1", "resume", NULL);
  sig("1", "resume", NULL);
  /* Stopped Friday 09:00 to Tuesday 09:00: 2 working days. */
  assert_case_has("1", "\"due_at\":\"2026-12-02T09:00:00Z\"");
  now("2026-12-02T10:00:00Z");
  ck_assert_int_eq(flow_case_list(&c, E, &q), 0);
  assert_has(c, "\"id\":\"1\"");
  flow_free(c);
}
END_TEST

START_TEST(test_pause_survives_a_restart)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "graffiti",
                                  "{\"land\": \"private\"}", NULL),
                   0);
  assert_case_has("1", "\"state\":\"await_consent\"");
  now("2026-11-27T13:00:00Z");
  sig("1", "wait", NULL);
  flow_engine_close(E);
  open_engine();
  assert_case_has("1", "\"sla_paused_at\":\"2026-11-27T13:00:00Z\"");
  ck_assert_uint_eq(fire("2027-01-01T09:00:00Z"), 0);
  now("2026-11-30T09:00:00Z");
  sig("1", "back", NULL);
  /* Stopped Friday 13:00-17:00: 4 working hours. */
  assert_case_has("1", "\"due_at\":\"2026-12-11T13:00:00Z\"");
  /* Closing drops what is left of the clock. */
  sig("1", "consent", NULL);
  sig("1", "done", NULL);
  char *c = timers("1");
  ck_assert_str_eq(c, "[]");
  flow_free(c);
}
END_TEST

START_TEST(test_sla_call_refusals)
{
  static const char *const SRC =
      "return { name = 'calls', version = 1, initial = 'a',\n"
      "  states = { a = { on = {\n"
      "    bad = function(case) flow.sla.restart('soonish') end,\n"
      "    worse = function(case) flow.sla.pause(42) end,\n"
      "    keys = function(case) flow.sla.restart{ within = '2d', warm = "
      "'1d' } end,\n"
      "    typo = function(case) flow.sla.puase('x') end,\n"
      "    other = function(case) return flow.zzz end,\n"
      "  } } } }\n";
  ck_assert_int_eq(flow_service_load_string(NULL, E, SRC, strlen(SRC),
                                            "calls.lua"),
                   0);
  ck_assert_int_eq(flow_case_open(NULL, E, "calls", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "bad", NULL, NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "calls.lua:3: flow.sla.restart");
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "worse", NULL, NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "calls.lua:4: flow.sla.pause: the reason");
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "keys", NULL, NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "calls.lua:5:");
  assert_has(flow_errmsg(E), "warm");
  /* A misspelt name is said at its line, with the closest one. */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "typo", NULL, NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "calls.lua:6: flow.sla has no 'puase' (did you "
                             "mean 'pause'?)");
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "other", NULL, NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "calls.lua:7: flow has no 'zzz' (it has add, "
                             "after, at, before, call, cancel_task, date, fail, "
                             "is_working_day, list, local_time, log, now, "
                             "null, open, signal, sla, "
                             "task)");
  assert_case_has("1", "\"seq\":1");
}
END_TEST

/* ---- item 3: the first state from the data ---------------------------- */

START_TEST(test_initial_from_the_data)
{
  char *c;
  ck_assert_int_eq(flow_case_open(&c, E, "graffiti", "{\"land\": \"council\"}",
                                  NULL),
                   0);
  assert_has(c, "\"state\":\"assign\"");
  flow_free(c);
  ck_assert_int_eq(flow_case_open(&c, E, "graffiti", "{\"land\": \"private\"}",
                                  NULL),
                   0);
  assert_has(c, "\"state\":\"await_consent\"");
  flow_free(c);
  ck_assert_int_eq(flow_case_history(&c, E, "2"), 0);
  assert_has(c, "\"to\":\"await_consent\"");
  flow_free(c);
}
END_TEST

static const char *const BAD_INITIAL =
    "return {\n"
    "  name = 'pick', version = 1,\n"
    "  fields = { mode = { type = 'string' } },\n"
    "  initial = function(case)\n"                                 /* 4 */
    "    local m = case.data.mode\n"
    "    if m == 'closed' then return 'closed' end\n"
    "    if m == 'none' then return nil end\n"
    "    if m == 'number' then return 3 end\n"
    "    if m == 'throw' then error('cannot pick') end\n"
    "    return m\n"
    "  end,\n"
    "  initial_states = { 'a', 'b' },\n"
    "  states = { a = { on = { go = 'b' } }, b = { on = { go = 'closed' } },\n"
    "             closed = { final = true } },\n"
    "}\n";

START_TEST(test_initial_refusals)
{
  ck_assert_msg(flow_service_load_string(NULL, E, BAD_INITIAL,
                                         strlen(BAD_INITIAL), "pick.lua") == 0,
                "%s", flow_errmsg(E));
  char *c = NULL;
  ck_assert_int_eq(flow_case_open(&c, E, "pick", "{\"mode\": \"b\"}", NULL),
                   0);
  assert_has(c, "\"state\":\"b\"");
  flow_free(c);
  ck_assert_int_eq(flow_case_open(&c, E, "pick", "{\"mode\": \"closed\"}",
                                  NULL),
                   FLOW_ESTATE);
  assert_has(flow_errmsg(E), "pick.lua:4: initial returned 'closed', which "
                             "is not in initial_states (it may return: a, b)");
  ck_assert_int_eq(flow_case_open(&c, E, "pick", "{\"mode\": \"nope\"}", NULL),
                   FLOW_ESTATE);
  assert_has(flow_errmsg(E), "not a state of the service");
  ck_assert_int_eq(flow_case_open(&c, E, "pick", "{\"mode\": \"none\"}", NULL),
                   FLOW_ESTATE);
  assert_has(flow_errmsg(E), "pick.lua:4: initial returned nothing");
  ck_assert_int_eq(flow_case_open(&c, E, "pick", "{\"mode\": \"number\"}",
                                  NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "initial must return the first state's name");
  ck_assert_int_eq(flow_case_open(&c, E, "pick", "{\"mode\": \"throw\"}",
                                  NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "cannot pick");
  flow_case_query q = { .version = 2 };
  ck_assert_int_eq(flow_case_list(&c, E, &q), 0);
  ck_assert_uint_eq(count(c, "\"id\""), 1);
  flow_free(c);
}
END_TEST

static void
assert_load_fails(const char *src, const char *want)
{
  ck_assert_int_ne(
      flow_service_load_string(NULL, E, src, strlen(src), "load.lua"), 0);
  assert_has(flow_errmsg(E), want);
}

START_TEST(test_initial_load_errors)
{
  assert_load_fails("return { name = 'x', version = 1, initial = 'a',\n"
                    "  initial_states = { 'a' },\n"
                    "  states = { a = { final = true } } }\n",
                    "load.lua:2: initial_states is for an initial function");
  assert_load_fails("return { name = 'x', version = 1,\n"
                    "  initial = function(case) return 'a' end,\n"
                    "  initial_states = { 'a', 'zz' },\n"
                    "  states = { a = { final = true } } }\n",
                    "load.lua:3: initial_states names 'zz', which is not a "
                    "state");
  assert_load_fails("return { name = 'x', version = 1,\n"
                    "  initial = function(case) return 'b' end,\n"
                    "  states = { a = { final = true } } }\n",
                    "load.lua:2: initial returns 'b', which is not a state");
  assert_load_fails("return { name = 'x', version = 1, initial = 'a',\n"
                    "  states = { a = { sla = { within = 7 }, on = { x = 'b' } },\n"
                    "             b = { final = true, sla = { within = '1d' } } } }\n",
                    "load.lua:2: sla of state 'a' within must be a duration");
  assert_load_fails("return { name = 'x', version = 1, initial = 'a',\n"
                    "  states = { a = { on = { x = 'b' } },\n"
                    "             b = { final = true, sla = { within = '1d' } } } }\n",
                    "state 'b' is final");
  assert_load_fails("return { name = 'x', version = 1, initial = 'a',\n"
                    "  sla = { within = '1d', wran = '2h' },\n"
                    "  states = { a = { final = true } } }\n",
                    "did you mean 'warn'");
}
END_TEST

START_TEST(test_initial_check_and_graph)
{
  char *out;
  /* The literals it returns are the states it may enter: both drawn. */
  ck_assert_int_eq(flow_service_graph(&out, E, SERVICE, strlen(SERVICE),
                                      "graffiti.lua", "mermaid"),
                   0);
  assert_has(out, "[*] --> assign: initial");
  assert_has(out, "[*] --> await_consent: initial");
  flow_free(out);
  ck_assert_int_eq(flow_service_lint(&out, E, SERVICE, strlen(SERVICE),
                                     "graffiti.lua"),
                   0);
  ck_assert_msg(strstr(out, "cannot be reached") == NULL, "%s", out);
  ck_assert_msg(strstr(out, "never comes") == NULL, "%s", out);
  flow_free(out);
  /* One it cannot read gets a warning asking for initial_states. */
  static const char *const VAGUE =
      "return { name = 'v', version = 1,\n"
      "  fields = { first = { type = 'string' } },\n"
      "  initial = function(case) return case.data.first end,\n"
      "  states = { a = { on = { go = 'b' } }, b = { final = true } } }\n";
  ck_assert_int_eq(flow_service_lint(&out, E, VAGUE, strlen(VAGUE), "v.lua"),
                   0);
  assert_has(out, "\"line\":3");
  assert_has(out, "initial_states");
  flow_free(out);
  ck_assert_int_eq(flow_service_graph(&out, E, VAGUE, strlen(VAGUE), "v.lua",
                                      NULL),
                   0);
  assert_has(out, "initial decides");
  flow_free(out);
}
END_TEST

static Suite *
sla_suite(void)
{
  Suite *s = suite_create("sla");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_within_from_the_case);
  tcase_add_test(tc, test_within_refusals);
  tcase_add_test(tc, test_state_level_and_restart);
  tcase_add_test(tc, test_pause_over_a_weekend);
  tcase_add_test(tc, test_pause_over_christmas);
  tcase_add_test(tc, test_pause_over_the_clock_change);
  tcase_add_test(tc, test_pause_whole_days_lands_on_an_opening);
  tcase_add_test(tc, test_pause_twice_and_overdue);
  tcase_add_test(tc, test_pause_survives_a_restart);
  tcase_add_test(tc, test_sla_call_refusals);
  tcase_add_test(tc, test_initial_from_the_data);
  tcase_add_test(tc, test_initial_refusals);
  tcase_add_test(tc, test_initial_load_errors);
  tcase_add_test(tc, test_initial_check_and_graph);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(sla_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
