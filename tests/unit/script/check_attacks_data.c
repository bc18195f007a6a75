/*
 * Data the engine must never take unless it can read it back, and runs
 * that must not depend on what ran before them: a NUL character in case
 * data or in a state name, the Lua stack one case grew, the locale a host
 * set, the order a script's problems were found in.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* setenv, mkdtemp */

#include <check.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attack_util.h"

/* ---- NUL characters -------------------------------------------------------- */

/* Stored, a NUL made the case unreadable for ever (both JSON readers
   refuse \u0000): refused at the transition, naming the field. */
START_TEST(test_attacks_data_nul_in_case_data)
{
  result r = attack("case.data.s = 'x\\0y'");
  refused_with(&r, FLOW_ESCRIPT, "data.s: text with a NUL character (\\0) "
                                 "in it cannot be stored");
  r = attack("case.data.extra = { ['a\\0b'] = 1 }");
  refused_with(&r, FLOW_ESCRIPT, "a key with a NUL character (\\0)");
  r = attack("case.data.list = { 'ok', 'no\\0' }");
  refused_with(&r, FLOW_ESCRIPT, "data.list[2]: text with a NUL");
  r = attack("flow.call('notify.sms', { to = '\\0' })");
  refused_with(&r, FLOW_ESCRIPT, "args.to: text with a NUL");
}
END_TEST

/* A state name is a C string to the engine: "b\0c" was state b. */
START_TEST(test_attacks_data_nul_in_state_name)
{
  result r = attack("return 'open\\0closed'");
  refused_with(&r, FLOW_ESCRIPT, "a handler returned a state name with a "
                                 "NUL character");
}
END_TEST

/* ---- what one run leaves for the next ------------------------------------ */

/* Deep recursion grows the Lua stack; what it grew must not count
   against the next case, which succeeds alone and must succeed after. */
START_TEST(test_attacks_data_stack_grown_by_an_earlier_case)
{
  const char *body =
      "if ev.payload.deep then\n"
      "  local function f(n) if n == 0 then return 0 end return 1 + f(n - 1) "
      "end\n"
      "  case.data.n = f(35000)\n"
      "else\n"
      "  local t = {} for i = 1, 90000 do t[i] = i end case.data.n = #t\n"
      "end";
  /* Alone, in a fresh sandbox: the second kind fits. */
  ck_assert_int_eq(compile_target("", body), 0);
  result alone = run_event("attack");
  ck_assert_msg(alone.rc == 0, "%s", alone.msg);
  /* After a deep one: the same. */
  static const char *const roles[] = { "crew" };
  static const flow_actor actor = { "sam", roles, 1 };
  flow__case_view cv = { "1", "target", 1, "open", "open",
                         0,   0,        INT64_MIN, 1, 42 };
  for (int deep = 1; deep >= 0; deep--) {
    json_t *data = json_object();
    json_t *payload = json_pack("{s:b}", "deep", deep);
    flow__event_view ev = { .name = "attack",
                            .payload = payload,
                            .actor = &actor,
                            .at = 1795770000000 };
    flow__err e;
    flow__err_clear(&e);
    int rc = flow__run_begin(sb, svc, &cv, data, &ev, &e);
    char *next = NULL;
    if (rc == 0)
      rc = flow__run_invoke(sb, trans("attack")->handler, &next, NULL, &e);
    json_t *out = NULL, *calls = NULL;
    if (rc == 0)
      rc = flow__run_end(sb, &out, &calls, &e);
    else
      flow__run_abort(sb);
    /* Both fit the budget alone; before, the stack the deep one grew
       stayed on the main thread and the shallow one ran out of memory. */
    ck_assert_msg(rc == 0, "the %s case: %s", deep ? "deep" : "shallow",
                  e.msg);
    flow__free(&al, next);
    json_decref(out);
    json_decref(calls);
    json_decref(data);
    json_decref(payload);
  }
}
END_TEST

/* A host that sets a German locale: numbers print with a comma and
   strings compare by the locale's rules, unless the sandbox keeps the C
   locale for scripts. */
START_TEST(test_attacks_data_host_locale)
{
  /* The locale is made here from Debian's definitions (package locales),
     so that the test needs no locale installed system-wide. */
  char dir[] = "/tmp/flow-locale-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1",
           dir);
  ck_assert_msg(system(cmd) == 0, "localedef failed (is the package "
                                  "'locales' installed?)");
  setenv("LOCPATH", dir, 1);
  ck_assert_ptr_nonnull(setlocale(LC_ALL, "de_DE.UTF-8"));
  char probe[16];
  snprintf(probe, sizeof probe, "%.1f", 1.5);
  ck_assert_str_eq(probe, "1,5"); /* the host really is German now */
  result r = attack("case.data.s = tostring(1.5) .. ' ' .. "
                    "string.format('%.2f', 2.25) .. ' ' .. "
                    "tostring(tonumber('3.5')) .. ' ' .. "
                    "tostring('a' < 'B') .. ' ' .. tostring(2^0.5)");
  setlocale(LC_ALL, "C");
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
  no_effect(&r, "{\"s\":\"1.5 2.25 3.5 false 1.4142135623731\"}");
}
END_TEST

static Suite *
attacks_data_suite(void)
{
  Suite *s = suite_create("attacks_data");
  TCase *tc = tcase_create("data");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_attacks_data_nul_in_case_data);
  tcase_add_test(tc, test_attacks_data_nul_in_state_name);
  tcase_add_test(tc, test_attacks_data_stack_grown_by_an_earlier_case);
  tcase_add_test(tc, test_attacks_data_host_locale);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(attacks_data_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
