/*
 * The test runner (flow_test_file) through the public API: passing,
 * failing, erroring and runaway test files, with the exact results it
 * reports.  Each test writes a service and a test file into a fresh
 * temporary directory.  The JSON is compact with sorted keys, so a test
 * can look for exact pieces of it.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const SERVICE =
    "return {\n"
    "  name = 'door', version = 1,\n"
    "  fields = { who = { type = 'string' } },\n"
    "  initial = 'shut',\n"
    "  sla = { within = '1 working day' },\n"
    "  states = {\n"
    "    shut = {\n"
    "      after = { ['2h'] = 'ajar' },\n"
    "      on = { unlock = { to = 'wide', roles = { 'keyholder' } },\n"
    "             knock = function(case, ev) case.data.who = ev.payload.who "
    "end },\n"
    "    },\n"
    "    ajar = { on = { push = 'wide' } },\n"
    "    wide = { final = true },\n"
    "  },\n"
    "}\n";

static char dir[256];
static char *out;

static void
write_file(const char *name, const char *text)
{
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

static void
setup(void)
{
  snprintf(dir, sizeof dir, "%s/flow-testrunner.XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  write_file("door.lua", SERVICE);
  out = NULL;
}

static void
teardown(void)
{
  char cmd[600];
  flow_free(out);
  out = NULL;
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}

/* Runs door_test.lua holding text; returns flow_test_file's code. */
static int
run_with(const char *text, const flow_test_options *opts)
{
  char path[512];
  write_file("door_test.lua", text);
  snprintf(path, sizeof path, "%s/door_test.lua", dir);
  flow_free(out);
  out = NULL;
  return flow_test_file(&out, path, opts);
}

static void
has(const char *piece)
{
  ck_assert_msg(out && strstr(out, piece), "'%s' not in %s", piece,
                out ? out : "(null)");
}

static void
lacks(const char *piece)
{
  ck_assert_msg(out && !strstr(out, piece), "'%s' in %s", piece,
                out ? out : "(null)");
}

START_TEST(test_testrunner_passing)
{
  ck_assert_int_eq(
      run_with("load('door.lua')\n"
               "test('opens', function()\n"
               "  local c = open('door', { who = 'ann' })\n"
               "  c:expect_state('shut')\n"
               "  c:signal('unlock', {}, { actor = 'kay', roles = { "
               "'keyholder' } })\n"
               "  c:expect_state('wide')\n"
               "  c:expect_history({ 'open', 'unlock' })\n"
               "  c:expect_data({ who = 'ann' })\n"
               "  c:expect_field('who', 'ann')\n"
               "  c:expect_sla('met')\n"
               "  expect(c:state()).to_be('wide')\n"
               "  expect_equal({ 1, 2 }, { 1, 2 })\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"opens\",\"status\":\"pass\"");
  has("\"line\":2,");
  lacks("\"message\"");
  lacks("\"coverage\"");
}
END_TEST

START_TEST(test_testrunner_failing)
{
  ck_assert_int_eq(run_with("load('door.lua')\n"
                            "test('stays shut', function()\n"
                            "  local c = open('door')\n"
                            "  c:signal('knock', { who = 'bo' })\n"
                            "  c:expect_state('wide')\n"
                            "end)\n"
                            "test('next one runs', function() end)\n",
                            NULL),
                   0);
  has("{\"history\":[\"1 2026-02-02T09:00:00Z open: (opened) -> shut "
      "(tester)\",\"2 2026-02-02T09:00:00Z knock: shut -> shut (tester)\"],"
      "\"line\":5,\"message\":\"expect_state: case 1 should be in state "
      "'wide', but it is in 'shut'\",\"ms\":");
  has("\"name\":\"stays shut\",\"status\":\"fail\"");
  has("\"name\":\"next one runs\",\"status\":\"pass\"");
}
END_TEST

START_TEST(test_testrunner_assertions_fail_with_what_was_found)
{
  ck_assert_int_eq(
      run_with("load('door.lua')\n"
               "test('data', function()\n"
               "  open('door', { who = 'ann' }):expect_data({ who = 'bo' })\n"
               "end)\n"
               "test('plain', function() expect(1 + 1).to_be(3) end)\n"
               "test('history', function()\n"
               "  open('door'):expect_history({ 'open', 'knock' })\n"
               "end)\n"
               "test('swallowed', function()\n"
               "  pcall(function() expect_equal('a', 'b') end)\n"
               "end)\n"
               "test('wrong code', function()\n"
               "  open('door'):expect_refused('unlock', 'FLOW_EEVENT')\n"
               "end)\n"
               "test('timers', function()\n"
               "  open('door'):expect_timers({ 'after' })\n"
               "end)\n",
               NULL),
      0);
  has("\"line\":3,\"message\":\"expect_data: case 1: data.who should be "
      "\\\"bo\\\", but it is \\\"ann\\\"\"");
  has("\"line\":5,\"message\":\"expected 3, got 2\"");
  has("\"line\":7,\"message\":\"expect_history: case 1 should have the "
      "events {open, knock}, but it has {open}\"");
  has("\"line\":10,\"message\":\"expect_equal: got \\\"a\\\", expected "
      "\\\"b\\\"\"");
  has("\"message\":\"event 'unlock' on case 1 should have been refused with "
      "FLOW_EEVENT, but it was refused with FLOW_EPERM: ");
  has("\"message\":\"expect_timers: case 1 should have the timers {after}, "
      "but it has after -> ajar at 2026-02-02T11:00:00Z; sla_breached at "
      "2026-02-03T09:00:00Z\"");
  lacks("\"status\":\"pass\"");
}
END_TEST

START_TEST(test_testrunner_erroring)
{
  ck_assert_int_eq(run_with("load('door.lua')\n"
                            "test('throws', function()\n"
                            "  error('boom')\n"
                            "end)\n"
                            "test('refused', function()\n"
                            "  local c = open('door')\n"
                            "  c:signal('push')\n"
                            "end)\n"
                            "test('bad data', function()\n"
                            "  open('door', { colour = 'red' })\n"
                            "end)\n",
                            NULL),
                   0);
  has("\"line\":3,\"message\":\"boom\",\"ms\":");
  has("\"name\":\"throws\",\"status\":\"error\"");
  has("\"line\":7,\"message\":\"signal 'push' was refused: FLOW_EEVENT: case 1 is "
      "in state 'shut', which does not accept 'push'");
  has("\"line\":10,\"message\":\"open was refused: FLOW_EDATA: ");
}
END_TEST

START_TEST(test_testrunner_runaway_loop)
{
  flow_test_options o = FLOW_TEST_OPTIONS_INIT;
  o.instruction_limit = 100000;
  ck_assert_int_eq(run_with("test('loops', function()\n"
                            "  while true do end\n"
                            "end)\n"
                            "test('after it', function() end)\n",
                            &o),
                   0);
  has("\"line\":1,\"message\":\"budget exceeded: the test 'loops' ran more "
      "than 100000 instructions (an endless loop?)\",\"ms\":");
  has("\"name\":\"loops\",\"status\":\"error\"");
  has("\"name\":\"after it\",\"status\":\"pass\"");
}
END_TEST

START_TEST(test_testrunner_runaway_pcall_cannot_catch)
{
  flow_test_options o = FLOW_TEST_OPTIONS_INIT;
  o.instruction_limit = 100000;
  ck_assert_int_eq(run_with("test('hides', function()\n"
                            "  for i = 1, 10 do pcall(function() while true "
                            "do end end) end\n"
                            "end)\n",
                            &o),
                   0);
  has("budget exceeded: the test 'hides' ran more than 100000 "
      "instructions");
}
END_TEST

START_TEST(test_testrunner_memory_hog)
{
  flow_test_options o = FLOW_TEST_OPTIONS_INIT;
  o.memory_limit = 8u << 20;
  o.instruction_limit = 1000000000;
  ck_assert_int_eq(run_with("test('eats', function()\n"
                            "  local t = {}\n"
                            "  for i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i "
                            "end\n"
                            "end)\n",
                            &o),
                   0);
  has("\"line\":1,\"message\":\"budget exceeded: the test 'eats' used more "
      "than 8 MiB of memory\"");
}
END_TEST

START_TEST(test_testrunner_file_errors)
{
  ck_assert_int_eq(run_with("test('x', function() end\n", NULL), 0);
  has("\"status\":\"error\"");
  has("\"line\":2,\"message\":\"')' expected (to close '(' at line 1) near <eof>");
  ck_assert_int_eq(run_with("load('missing.lua')\n", NULL), 0);
  has("\"line\":1,\"message\":\"load: cannot read 'missing.lua'");
  write_file("broken.lua", "return { name = 'broken', version = 1 }\n");
  ck_assert_int_eq(run_with("load('broken.lua')\n", NULL), 0);
  has("load('broken.lua') failed:");
  has("broken.lua:1: ");
  char path[512];
  snprintf(path, sizeof path, "%s/nothing_test.lua", dir);
  flow_free(out);
  ck_assert_int_eq(flow_test_file(&out, path, NULL), FLOW_ENOTFOUND);
  ck_assert_ptr_null(out);
  flow_test_options o = FLOW_TEST_OPTIONS_INIT;
  o.start = "yesterday";
  ck_assert_int_eq(run_with("", &o), FLOW_EINVAL);
}
END_TEST

START_TEST(test_testrunner_clock_and_timers)
{
  ck_assert_int_eq(
      run_with("load('door.lua')\n"
               "test.start = '2026-02-06T16:30:00Z'\n"
               "test('friday', function()\n"
               "  expect(now()).to_be('2026-02-06T16:30:00Z')\n"
               "  local c = open('door')\n"
               "  c:expect_sla('due', '2026-02-09T16:30:00Z')\n"
               "  c:expect_timers({ { event = 'after', at = "
               "'2026-02-06T18:30:00Z' }, 'sla_breached' })\n"
               "  advance('119m')\n"
               "  c:expect_state('shut')\n"
               "end)\n"
               "test('at', { at = '2026-12-24T12:00:00Z' }, function()\n"
               "  local c = open('door')\n"
               "  advance('2h')\n"
               "  c:expect_state('ajar')\n"
               "  expect(now()).to_be('2026-12-24T14:00:00Z')\n"
               "  c:expect_sla('due', '2026-12-29T12:00:00Z')\n"
               "  advance('3 working days')\n"
               "  c:expect_sla('breached')\n"
               "  c:expect_history({ 'open', 'after', 'sla_breached' })\n"
               "end)\n",
               NULL),
      0);
  lacks("\"fail\"");
  lacks("\"error\"");
  has("\"name\":\"friday\",\"status\":\"pass\"");
  has("\"name\":\"at\",\"status\":\"pass\"");
}
END_TEST

START_TEST(test_testrunner_refusals)
{
  ck_assert_int_eq(
      run_with("load('door.lua')\n"
               "test('refused', function()\n"
               "  local c = open('door')\n"
               "  c:expect_refused('unlock', {}, { actor = 'x' }, "
               "'FLOW_EPERM')\n"
               "  c:expect_refused('push', 'EEVENT')\n"
               "  expect_refused(function() c:signal('unlock') end, "
               "'FLOW_EPERM')\n"
               "  expect_open_refused('door', { who = 1 }, nil, "
               "'FLOW_EDATA')\n"
               "  expect_open_refused('nope', {}, 'FLOW_ENOTFOUND')\n"
               "end)\n"
               "test('not refused', function()\n"
               "  expect_refused(function() open('door') end, "
               "'FLOW_EDATA')\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"refused\",\"status\":\"pass\"");
  has("\"line\":11,\"message\":\"expected the call to be refused with "
      "FLOW_EDATA, but it was accepted\"");
}
END_TEST

START_TEST(test_testrunner_filter_and_coverage)
{
  flow_test_options o = FLOW_TEST_OPTIONS_INIT;
  o.filter = "knock";
  o.coverage = 1;
  ck_assert_int_eq(run_with("load('door.lua')\n"
                            "test('knock knock', function()\n"
                            "  open('door'):signal('knock', { who = 'x' })\n"
                            "end)\n"
                            "test('skipped', function() error('no') end)\n",
                            &o),
                   0);
  lacks("skipped");
  has("\"coverage\":{\"door\":{\"states\":{\"ajar\":0,\"shut\":1,\"wide\":0},"
      "\"transitions\":{\"ajar.push\":0,\"shut.after 2h\":0,\"shut.knock\":1,"
      "\"shut.unlock\":0}}}");
}
END_TEST

START_TEST(test_testrunner_outside_a_test)
{
  ck_assert_int_eq(run_with("open('door')\n", NULL), 0);
  has("\"line\":1,\"message\":\"open() works only inside a test");
  ck_assert_int_eq(run_with("test('x', function() mock.task() end)\n",
                            NULL),
                   0);
  has("mock.task is not available yet");
}
END_TEST

/* Mocks of actions: the mistakes a tester can make are named, at the line,
   and an assertion on the actions says what was asked. */
START_TEST(test_testrunner_action_mocks)
{
  write_file("bell.lua",
             "return { name = 'bell', version = 1, initial = 'a',\n"
             "  states = { a = { on = { ring = function(case, ev)\n"
             "    flow.call('notify.sms', { to = '1' }, { reply = 'rang' })\n"
             "  end, rang = 'b' } }, b = { final = true } } }\n");
  ck_assert_int_eq(
      run_with("load('bell.lua')\n"
               "test('answered', function()\n"
               "  mock.action('notify.sms', { result = {} })\n"
               "  local c = open('bell')\n"
               "  c:signal('ring')\n"
               "  c:expect_state('b')\n"
               "  c:expect_actions({ { action = 'notify.sms', status = 'done' } })\n"
               "end)\n"
               "test('wrong expectation', function()\n"
               "  local c = open('bell')\n"
               "  c:signal('ring')\n"
               "  c:expect_actions({ { action = 'notify.sms', status = 'done' } })\n"
               "end)\n"
               "test('bad answer', function()\n"
               "  mock.action('notify.sms', { reslut = {} })\n"
               "end)\n"
               "test('both', function()\n"
               "  mock.action('notify.sms', { result = {}, fail = 'x' })\n"
               "end)\n"
               "test('a mock function that fails', function()\n"
               "  mock.action('notify.sms', function(args) error('boom') end)\n"
               "  open('bell'):signal('ring')\n"
               "end)\n"
               "test('a mock function that returns nothing', function()\n"
               "  mock.action('notify.sms', function(args) end)\n"
               "  open('bell'):signal('ring')\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"answered\",\"status\":\"pass\"");
  has("\"line\":12,\"message\":\"expect_actions: case 1 should have asked "
      "for notify.sms (done), but it asked for notify.sms (waiting)");
  has("\"line\":15,\"message\":\"mock.action('notify.sms'): the answer "
      "has no 'reslut' (it takes result, fail, retry, after and silent)");
  has("\"line\":18,\"message\":\"mock.action('notify.sms'): an answer is "
      "a result or a failure, not both");
  has("\"message\":\"boom\"");
  has("the answer must be a table like { result = { ... } }");
}
END_TEST

static Suite *
suite(void)
{
  Suite *s = suite_create("testrunner");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_testrunner_passing);
  tcase_add_test(tc, test_testrunner_failing);
  tcase_add_test(tc, test_testrunner_assertions_fail_with_what_was_found);
  tcase_add_test(tc, test_testrunner_erroring);
  tcase_add_test(tc, test_testrunner_runaway_loop);
  tcase_add_test(tc, test_testrunner_runaway_pcall_cannot_catch);
  tcase_add_test(tc, test_testrunner_memory_hog);
  tcase_add_test(tc, test_testrunner_file_errors);
  tcase_add_test(tc, test_testrunner_clock_and_timers);
  tcase_add_test(tc, test_testrunner_refusals);
  tcase_add_test(tc, test_testrunner_filter_and_coverage);
  tcase_add_test(tc, test_testrunner_outside_a_test);
  tcase_add_test(tc, test_testrunner_action_mocks);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
