/*
 * Attacks on the sandbox's own C code and on the work the engine does on
 * a script's behalf: walks over tables whose keys all collide, tables
 * whose every resize is quadratic, case data and payloads that would be
 * gigabytes of JSON, timer payloads converted while loading.  Every one
 * must be charged to a budget or stopped by a documented limit before the
 * work is done, not after.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attack_util.h"

/* Builds, in Lua, a table of n integer keys that all fall in one chain of
   a hash part of n nodes (multiples of n - 1; n a power of two), without
   the quadratic resize: the table is made with its final size. */
static void
push_colliding(lua_State *L, int n)
{
  lua_createtable(L, 0, n);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, i * (n - 1));
  }
}

/* Puts a colliding table in the (frozen) globals as T, from C, as if it
   had been built over many events' budgets. */
static void
global_colliding(void)
{
  lua_State *L = sb->L;
  sb->limit_on = 0;
  lua_pushglobaltable(L);
  ck_assert(flow__frozen_contents(L, -1, NULL));
  push_colliding(L, FLOW__TABLE_MAX_HASH);
  lua_setfield(L, -2, "T");
  lua_pop(L, 2);
  sb->limit_on = 1;
}

/* ---- walks over colliding keys ------------------------------------------ */

/* pairs() sorts the keys when a walk starts: one lua_next on a chain of
   16,384 costs the chain, so the walk is charged key by key. */
START_TEST(test_attacks_host_pairs_over_colliding_keys)
{
  ck_assert_int_eq(compile_target("", "local n = 0 for k in pairs(T) do "
                                      "n = n + 1 end case.data.n = n"),
                   0);
  global_colliding();
  result r = run_event("attack");
  ck_assert_msg(r.rc == FLOW_ELIMIT || r.rc == 0, "%d %s", r.rc, r.msg);
}
END_TEST

/* The same through the JSON conversion of case.data, and through next()
   used as a __close handler while a kill unwinds. */
START_TEST(test_attacks_host_json_over_colliding_keys)
{
  ck_assert_int_eq(compile_target("", "local t = T case.data.extra = { t = "
                                      "t }"),
                   0);
  global_colliding();
  result r = run_event("attack");
  /* Integer keys that are not 1..n: refused, but only after the walk. */
  ck_assert_msg(r.rc != 0, "%s", r.data);
}
END_TEST

START_TEST(test_attacks_host_close_handler_walks)
{
  result r = attack("local t = {} for i = 1, 16000 do t['k' .. i] = i end "
                    "local c <close> = setmetatable({}, { __close = next }) "
                    "while true do end");
  killed_by(&r, "instructions");
}
END_TEST

/* ---- quadratic resizes --------------------------------------------------- */

/* Keys chosen to collide at the table's next size: each resize is one VM
   instruction of quadratic work.  Refused at the first hash part past the
   limit, before that resize. */
START_TEST(test_attacks_host_colliding_integer_keys)
{
  result r = eval_with("local t = {} local c = (1 << 17) - 1 "
                       "for i = 1, 1 << 17 do t[i * c] = true end",
                       64 << 20, 150, 100000000);
  ck_assert_int_eq(r.rc, FLOW_ELIMIT);
  ck_assert_msg(strstr(r.msg, "a table with more than 16384 keys outside "
                              "its list part") != NULL,
                "%s", r.msg);
  /* Floats the same way. */
  r = eval_with("local t = {} for i = 1, 40000 do t[i + 0.5] = true end",
                64 << 20, 150, 100000000);
  ck_assert_int_eq(r.rc, FLOW_ELIMIT);
  /* Lists, strings of any size and 16,384 named keys are fine. */
  r = eval_with("local t = {} for i = 1, 300000 do t[i] = i end "
                "local s = string.rep('x', 1536 * 1024) "
                "local u = {} for i = 1, 16384 do u['k' .. i] = i end "
                "return #t + #s + #u", 64 << 20, 1000, 100000000);
  ck_assert_msg(r.rc == 0, "%s", r.msg);
  ck_assert_str_eq(r.data, "1872864");
}
END_TEST

/* ---- conversions to JSON --------------------------------------------------- */

/* One long string five hundred times in case.data: refused as soon as it
   is certain the JSON would pass 1 MiB, not after building 50 MB. */
START_TEST(test_attacks_host_repeated_string_in_data)
{
  result r = eval_with("", 0, 0, 0); /* warm up the CPU clock */
  r = attack("local s = ('x'):rep(100000) local t = {} "
             "for i = 1, 500 do t[i] = s end case.data.extra = { t = t }");
  refused_with(&r, FLOW_EDATA, "data: more than 1024 KiB as JSON");
  ck_assert_uint_lt(ta.live_bytes, 16u << 20); /* nothing big was built */
  /* And in flow.call's arguments and a timer's payload. */
  r = attack("local s = ('x'):rep(600000) "
             "flow.call('notify.sms', { a = s, b = s })");
  refused_with(&r, FLOW_ESCRIPT, "args: more than 1024 KiB as JSON");
  r = attack("local s = ('x'):rep(600000) "
             "flow.after('1h', 'remind', { a = s, b = s })");
  refused_with(&r, FLOW_ESCRIPT, "payload: more than 1024 KiB as JSON");
}
END_TEST

/* A timer payload is converted while the script loads: charged to the
   load, and bounded like any other. */
START_TEST(test_attacks_host_after_payload_at_load)
{
  result r = load_with(
      "local s = ('x'):rep(500000) local p = {} "
      "for i = 1, 2000 do p['k' .. i] = s end\n"
      "return { name = 'p', version = 1, initial = 'a', states = {\n"
      "  a = { after = { ['1h'] = { event = 'go', payload = p } },\n"
      "        on = { go = function() end } } } }\n",
      64 << 20, 150);
  ck_assert_int_eq(r.rc, FLOW_ESCRIPT);
  ck_assert_msg(strstr(r.msg, "more than 1024 KiB as JSON") != NULL, "%s",
                r.msg);
  /* A table shared a million times over: the value count and the budget
     stop it, whatever the text. */
  r = load_with(
      "local t = {} for i = 1, 24 do t = { t, t } end\n"
      "return { name = 'p', version = 1, initial = 'a', states = {\n"
      "  a = { after = { ['1h'] = { event = 'go', payload = { x = t } } },\n"
      "        on = { go = function() end } } } }\n",
      64 << 20, 150);
  ck_assert_msg(r.rc == FLOW_ESCRIPT || r.rc == FLOW_ELIMIT, "%d %s", r.rc,
                r.msg);
}
END_TEST

/* ---- the engine's calendar work ------------------------------------------ */

/* Each timer is a calendar walk when the transition commits: ten
   thousand hundred-year ones held the host for 45 s.  An event may set
   100, a state have 64 `after` entries; and a walk is cheap. */
START_TEST(test_attacks_host_timer_flood)
{
  result r = attack("for i = 1, 10000 do flow.after('876000 working "
                    "hours', 'tick') end");
  refused_with(&r, FLOW_ESCRIPT, "target.lua:");
  refused_with(&r, FLOW_ESCRIPT, "flow.after: an event may set at most 100 "
                                 "timers");
  r = attack("for i = 1, 101 do flow.at('2090-01-01T00:00:00Z', 'tick') "
             "end");
  refused_with(&r, FLOW_ESCRIPT, "flow.at: an event may set at most 100");
  /* 100 are fine. */
  r = attack("for i = 1, 100 do flow.after('876000 working hours', "
             "'tick') end");
  ck_assert_msg(r.rc == 0, "%s", r.msg);
}
END_TEST

START_TEST(test_attacks_host_after_entries)
{
  char pre[8192];
  size_t n = (size_t)snprintf(pre, sizeof pre, "AFTER = {");
  for (int i = 1; i <= 65; i++)
    n += (size_t)snprintf(pre + n, sizeof pre - n,
                          "['%d working hours'] = 'open', ", 1000 + i);
  snprintf(pre + n, sizeof pre - n, "}");
  char src[16384];
  snprintf(src, sizeof src,
           "local %s\nreturn { name = 'a', version = 1, initial = 'open',\n"
           "  states = { open = { after = AFTER }, b = { final = true } } }\n",
           pre);
  result r = load_with(src, 0, 0);
  ck_assert_int_eq(r.rc, FLOW_ESCRIPT);
  ck_assert_msg(strstr(r.msg, "after in state 'open' has 65 entries; a "
                              "state may have at most 64") != NULL,
                "%s", r.msg);
}
END_TEST

static Suite *
attacks_host_suite(void)
{
  Suite *s = suite_create("attacks_host");
  TCase *tc = tcase_create("host");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_attacks_host_pairs_over_colliding_keys);
  tcase_add_test(tc, test_attacks_host_json_over_colliding_keys);
  tcase_add_test(tc, test_attacks_host_close_handler_walks);
  tcase_add_test(tc, test_attacks_host_colliding_integer_keys);
  tcase_add_test(tc, test_attacks_host_repeated_string_in_data);
  tcase_add_test(tc, test_attacks_host_after_payload_at_load);
  tcase_add_test(tc, test_attacks_host_timer_flood);
  tcase_add_test(tc, test_attacks_host_after_entries);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(attacks_host_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
