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
               "end)\n"
               "test('open not refused', function()\n"
               "  expect_open_refused('door', {}, 'FLOW_EDATA')\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"refused\",\"status\":\"pass\"");
  has("\"line\":11,\"message\":\"expected the call to be refused with "
      "FLOW_EDATA, but it was accepted\"");
  /* What got through is shown. */
  has("\"line\":14,\"message\":\"opening a case of door should have been "
      "refused with FLOW_EDATA, but it was accepted; the case is now "
      "{\\\"data\\\":{}");
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
  has("\"line\":1,\"message\":\"there is no mock.task: mock.action answers "
      "actions; a test does a case's tasks itself (c:claim, c:complete)");
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
               "end)\n"
               "test('filtered', function()\n"
               "  mock.action('notify.sms', { result = {} })\n"
               "  local c = open('bell')\n"
               "  c:signal('ring')\n"
               "  expect(#c:actions('notify.sms')).to_be(1)\n"
               "  expect(#c:actions('notify.email')).to_be(0)\n"
               "  expect(#c:actions({ status = 'done' })).to_be(1)\n"
               "  expect(#c:actions({ status = 'failed' })).to_be(0)\n"
               "end)\n"
               "test('only an argument differs', function()\n"
               "  local c = open('bell')\n"
               "  c:signal('ring')\n"
               "  c:expect_actions({ { action = 'notify.sms', args = { to = '2' } } })\n"
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
  has("\"name\":\"filtered\",\"status\":\"pass\"");
  /* Summaries that read the same are followed by where they differ. */
  has("; request 1 differs: args.to is \\\"1\\\", not \\\"2\\\"");
}
END_TEST

/* A service with a task, a correlated message, an action whose answer it
   refuses, and a timer whose event it refuses. */
static const char *const PARCEL =
    "return {\n"
    "  name = 'parcel', version = 1,\n"
    "  fields = { ref = { type = 'string' }, by = { type = 'string' },\n"
    "             bay = { type = 'integer' } },\n"
    "  correlate = { arrived = 'ref' },\n"
    "  initial = 'waiting',\n"
    "  states = {\n"
    "    waiting = { on = {\n"
    "      arrived = function(case, ev)\n"
    "        case.data.by = ev.payload.by\n"
    "        return 'sorting'\n"
    "      end,\n"
    "      ring = function(case)\n"
    "        flow.call('notify.sms', {}, { reply = 'rang' })\n"
    "      end,\n"
    "      rang = function(case) flow.fail('nobody home') end,\n"
    "      arm = function(case) flow.after('1h', 'poke') end,\n"
    "      poke = function(case) flow.fail('too early') end,\n"
    "    } },\n"
    "    sorting = {\n"
    "      enter = function(case)\n"
    "        flow.task{ name = 'sort', title = 'Sort it', team = 'depot',\n"
    "          due = '1 working day', done = 'sorted',\n"
    "          form = { bay = { type = 'integer', required = true, min = 1,\n"
    "                           max = 9 },\n"
    "                   note = { type = 'string', max = 5 } } }\n"
    "      end,\n"
    "      on = { sorted = function(case, ev)\n"
    "               case.data.bay = ev.payload.outcome.bay\n"
    "               return 'done'\n"
    "             end,\n"
    "             back = 'waiting' },\n"
    "    },\n"
    "    done = { final = true },\n"
    "  },\n"
    "}\n";

/* Tasks, messages and incidents: a test file that uses all of it passes. */
START_TEST(test_testrunner_tasks_and_messages)
{
  write_file("parcel.lua", PARCEL);
  ck_assert_int_eq(
      run_with(
          "load('parcel.lua')\n"
          "test('sorted', function()\n"
          "  local c = open('parcel', { ref = 'P1' })\n"
          "  c:expect_tasks({})\n"
          "  local m = send('arrived', 'P1', { by = 'van' })\n"
          "  expect(m.status).to_be('delivered')\n"
          "  expect(m.case).to_be(c.id)\n"
          "  c:expect_state('sorting')\n"
          "  c:expect_tasks({ { name = 'sort', team = 'depot',\n"
          "                     due = '2026-02-03T09:00:00Z' } })\n"
          "  c:expect_tasks({ 'sort' })\n"
          "  local t = c:tasks('sort')[1]\n"
          "  expect(t.status).to_be('open')\n"
          "  expect(t.title).to_be('Sort it')\n"
          "  expect(t.assignee).to_be_nil()\n"
          "  c:claim(t, 'ann')\n"
          "  c:expect_tasks({ { status = 'claimed', claimed_by = 'ann' } })\n"
          "  c:expect_claim_refused('sort', 'bob', 'FLOW_ECONFLICT')\n"
          "  local why = c:expect_complete_refused('sort', { bay = 12,\n"
          "    note = 'too long' }, 'ann', 'FLOW_EDATA')\n"
          "  expect(why).to_contain('bay: ')\n"
          "  expect(why).to_contain('note: ')\n"
          "  expect(expect_refused(function() c:complete('sort', {}, 'ann') "
          "end,\n"
          "    'FLOW_EDATA')).to_contain('bay: is required')\n"
          "  c:release('sort', 'ann')\n"
          "  c:complete(t.id, { bay = 4 }, { actor = 'bob', roles = { "
          "'depot' } })\n"
          "  c:expect_state('done')\n"
          "  c:expect_field('bay', 4)\n"
          "  c:expect_tasks({})\n"
          "  expect(c:tasks({ status = 'done' })[1].finished_by)."
          "to_be('bob')\n"
          "  expect(c:tasks()[1].outcome).to_be({ bay = 4 })\n"
          "  c:expect_complete_refused('sort', { bay = 1 }, 'FLOW_ECONFLICT')\n"
          "  expect_refused(function() c:claim('weigh') end, 'ENOTFOUND')\n"
          "  c:expect_history({ 'open', 'arrived', 'sorted' })\n"
          "end)\n"
          "test('buffered, delivered on open, expired', function()\n"
          "  expect(send('arrived', 'P2', {}).status).to_be('buffered')\n"
          "  send('arrived', 'P3', {}, { ttl = '1h' })\n"
          "  send('arrived', 'P4', {}, '2h')\n"
          "  expect(#messages('buffered')).to_be(3)\n"
          "  local c = open('parcel', { ref = 'P2' })\n"
          "  c:expect_state('sorting')\n"
          "  expect(messages({ key = 'P2' })[1].status).to_be('delivered')\n"
          "  advance('59m')\n"
          "  expect(#messages('expired')).to_be(0)\n"
          "  advance('1m')\n"
          "  expect(messages('expired')[1].key).to_be('P3')\n"
          "  advance_to('2026-02-02T11:00:00Z')\n"
          "  expect(#messages('expired')).to_be(2)\n"
          "  expect(#messages('buffered')).to_be(0)\n"
          "  c:signal('back')\n"
          "  expect(c:tasks()[1].status).to_be('cancelled')\n"
          "  c:expect_tasks({})\n"
          "end)\n"
          "test('a refused message is an incident, not an error', "
          "function()\n"
          "  local c = open('parcel', { ref = 'P5' })\n"
          "  send('arrived', 'P5', {})\n"
          "  local m = send('arrived', 'P5', {})\n"
          "  expect(m.status).to_be('incident')\n"
          "  local i = c:incidents()[1]\n"
          "  expect(i.id).to_be(m.incident)\n"
          "  expect(i.source).to_be('message')\n"
          "  expect(i.code).to_be('FLOW_EEVENT')\n"
          "  expect(#c:incidents('open')).to_be(1)\n"
          "  expect(#c:incidents('resolved')).to_be(0)\n"
          "end)\n"
          "test('a refused answer is an incident, not an error', "
          "function()\n"
          "  mock.action('notify.sms', { result = {} })\n"
          "  local c = open('parcel')\n"
          "  c:signal('ring')\n"
          "  advance('1h')\n"
          "  c:expect_state('waiting')\n"
          "  expect(c:incidents()[1].source).to_be('action')\n"
          "  expect(c:incidents()[1].error).to_contain('nobody home')\n"
          "end)\n"
          "test('overdue', function()\n"
          "  local c = open('parcel', { ref = 'P6' })\n"
          "  send('arrived', 'P6', {})\n"
          "  advance_to('2026-02-03T08:59:59Z')\n"
          "  c:expect_tasks({ { name = 'sort', overdue = false } })\n"
          "  advance('1s')\n" /* its due moment: overdue from now on */
          "  c:expect_tasks({ { name = 'sort', overdue = true } })\n"
          "  expect(#c:tasks({ overdue = true })).to_be(1)\n"
          "end)\n"
          "test('a refused timer is still an error', function()\n"
          "  local c = open('parcel')\n"
          "  c:signal('arm')\n"
          "  advance('2h')\n"
          "end)\n",
          NULL),
      0);
  has("\"name\":\"sorted\",\"status\":\"pass\"");
  has("\"name\":\"buffered, delivered on open, expired\",\"status\":\"pass\"");
  has("\"name\":\"a refused message is an incident, not an error\","
      "\"status\":\"pass\"");
  has("\"name\":\"a refused answer is an incident, not an error\","
      "\"status\":\"pass\"");
  has("\"name\":\"overdue\",\"status\":\"pass\"");
  has("\"line\":88,\"message\":\"the timer 'poke' of case 1 was refused "
      "when it fired (an incident): ");
  has("too early");
  has("\"name\":\"a refused timer is still an error\",\"output\":"
      "\"timer 1 of case 1: too early\\n\",\"status\":\"error\"");
}
END_TEST

/* Tasks and messages: what goes wrong is said, at the line. */
START_TEST(test_testrunner_tasks_failing)
{
  write_file("parcel.lua", PARCEL);
  ck_assert_int_eq(
      run_with("load('parcel.lua')\n"
               "local function arrive(ref)\n"
               "  local c = open('parcel', { ref = ref })\n"
               "  send('arrived', ref, {})\n"
               "  return c\n"
               "end\n"
               "test('wrong team', function()\n"
               "  local c = arrive('P1')\n"
               "  c:expect_tasks({ { name = 'sort', team = 'office' } })\n"
               "end)\n"
               "test('none expected', function()\n"
               "  arrive('P1'):expect_tasks({})\n"
               "end)\n"
               "test('a bad outcome', function()\n"
               "  arrive('P1'):complete('sort', { bay = 0, note = 'far too "
               "long' }, 'ann')\n"
               "end)\n"
               "test('accepted after all', function()\n"
               "  arrive('P1'):expect_complete_refused('sort', { bay = 2 }, "
               "'FLOW_EDATA')\n"
               "end)\n"
               "test('refused otherwise', function()\n"
               "  local c = arrive('P1')\n"
               "  c:claim('sort', 'ann')\n"
               "  c:expect_claim_refused('sort', 'bob', 'FLOW_EPERM')\n"
               "end)\n"
               "test('no such task', function()\n"
               "  arrive('P1'):claim('weigh', 'ann')\n"
               "end)\n"
               "test('a mistyped key', function()\n"
               "  arrive('P1'):expect_tasks({ { name = 'sort', tema = 'x' } "
               "})\n"
               "end)\n"
               "test('a bad status', function()\n"
               "  arrive('P1'):tasks({ status = 'opened' })\n"
               "end)\n"
               "test('a bad message', function()\n"
               "  send('Arrived', 'P1')\n"
               "end)\n"
               "test('a bad ttl', function()\n"
               "  send('arrived', 'P1', {}, { ttl = 'soon' })\n"
               "end)\n",
               NULL),
      0);
  has("\"line\":9,\"message\":\"expect_tasks: case 1 should have the open "
      "tasks sort (team office), but it has sort (open, team depot, due "
      "2026-02-03T09:00:00Z)\"");
  has("\"history\":[\"1 2026-02-02T09:00:00Z open: (opened) -> waiting "
      "(tester)\",\"2 2026-02-02T09:00:00Z arrived: waiting -> sorting "
      "(engine [system])\"],\"line\":9,");
  has("\"line\":12,\"message\":\"expect_tasks: case 1 should have the open "
      "tasks (none), but it has sort (open, team depot, due "
      "2026-02-03T09:00:00Z)\"");
  has("\"line\":15,\"message\":\"complete 'sort' was refused: FLOW_EDATA: "
      "the outcome of task 1 (sort) is not valid: bay: ");
  has("; note: ");
  has("\"name\":\"a bad outcome\",\"status\":\"error\"");
  has("\"line\":18,\"message\":\"completing task 'sort' of case 1 should "
      "have been refused with FLOW_EDATA, but it was accepted\"");
  has("\"line\":23,\"message\":\"claiming task 'sort' of case 1 should have "
      "been refused with FLOW_EPERM, but it was refused with "
      "FLOW_ECONFLICT: task 1 is claimed by ann already\"");
  has("\"line\":26,\"message\":\"claim 'weigh' was refused: FLOW_ENOTFOUND: "
      "case 1 has no task 'weigh' (its tasks: sort (open))\"");
  has("\"line\":29,\"message\":\"expect_tasks: a task has no 'tema'");
  has("\"line\":32,\"message\":\"tasks: 'opened' is not a task status");
  has("\"line\":35,\"message\":\"send 'Arrived' was refused: FLOW_EINVAL: ");
  has("\"line\":38,\"message\":\"send: ttl: ");
  lacks("\"status\":\"pass\"");
}
END_TEST

/* Issue 14 item 8: what a test and its service write is kept with the
   test, passing or not (flow test shows it with --verbose); timers due
   at the same moment are listed in the order they were set and compared
   by expect_timers in any order. */
static const char *const TALK =
    "return {\n"
    "  name = 'talk', version = 1, initial = 'a',\n"
    "  states = {\n"
    "    a = { on = {\n"
    "      go = function(case, ev)\n"
    "        flow.log('service says', 42)\n"
    "        flow.after('1d', 'remind')\n"
    "        flow.after('1d', 'chase')\n"
    "        flow.after('2d', 'late')\n"
    "        return 'b'\n"
    "      end } },\n"
    "    b = { on = { remind = { to = 'b', internal = true },\n"
    "                 chase = { to = 'b', internal = true },\n"
    "                 late = { to = 'c', internal = true } } },\n"
    "    c = { final = true },\n"
    "  },\n"
    "}\n";

START_TEST(test_testrunner_output_of_passing_tests)
{
  write_file("talk.lua", TALK);
  ck_assert_int_eq(run_with("load('talk.lua')\n"
                            "test('talks', function()\n"
                            "  print('test says')\n"
                            "  open('talk'):signal('go')\n"
                            "end)\n"
                            "test('quiet', function() end)\n",
                            NULL),
                   0);
  has("\"name\":\"talks\",\"output\":\"test says\\nservice says 42\\n\","
      "\"status\":\"pass\"");
  has("\"name\":\"quiet\",\"status\":\"pass\"");
}
END_TEST

START_TEST(test_testrunner_timers_due_at_the_same_moment)
{
  write_file("talk.lua", TALK);
  ck_assert_int_eq(
      run_with("load('talk.lua')\n"
               "test('set order', function()\n"
               "  local c = open('talk'):signal('go')\n"
               "  local t = c:timers()\n"
               "  expect(t[1].event).to_be('remind')\n"
               "  expect(t[2].event).to_be('chase')\n"
               "  expect(t[3].event).to_be('late')\n"
               "end)\n"
               "test('as set', function()\n"
               "  open('talk'):signal('go'):expect_timers({ 'remind', "
               "'chase', 'late' })\n"
               "end)\n"
               "test('any order', function()\n"
               "  open('talk'):signal('go'):expect_timers({ 'chase', "
               "{ event = 'remind', at = '2026-02-03T09:00:00Z' }, 'late' })\n"
               "end)\n"
               "test('later ones still in order', function()\n"
               "  open('talk'):signal('go'):expect_timers({ 'late', "
               "'remind', 'chase' })\n"
               "end)\n"
               "test('one entry per timer', function()\n"
               "  open('talk'):signal('go'):expect_timers({ 'chase', "
               "'chase', 'late' })\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"set order\",\"output\":\"service says 42\\n\",\"status\":\"pass\"");
  has("\"name\":\"as set\",\"output\":\"service says 42\\n\",\"status\":\"pass\"");
  has("\"name\":\"any order\",\"output\":\"service says 42\\n\",\"status\":\"pass\"");
  has("\"message\":\"expect_timers: case 1 should have the timers {late}, "
      "{remind}, {chase}, but it has remind at 2026-02-03T09:00:00Z; chase "
      "at 2026-02-03T09:00:00Z; late at 2026-02-04T09:00:00Z\",\"ms\":");
  has("\"name\":\"later ones still in order\",\"output\":\"service says 42\\n\",\"status\":\"fail\"");
  has("\"name\":\"one entry per timer\",\"output\":\"service says 42\\n\",\"status\":\"fail\"");
}
END_TEST

/* What service authors met writing the worked examples (issue 16): a
   refusal's message from c:expect_refused, a case closed while its
   service-level clock was stopped judged at the stop, a slow host's
   answer after the timeout ignored as in production, and a task overdue
   from its due moment on. */
START_TEST(test_testrunner_authors_findings)
{
  write_file("wait.lua",
             "return { name = 'wait', version = 1,\n"
             "  sla = { within = '2 working days' },\n"
             "  fields = { id = { type = 'string' } },\n"
             "  initial = 'a',\n"
             "  states = {\n"
             "    a = { on = {\n"
             "      wait = function(case) flow.sla.pause('asked') end,\n"
             "      go = function(case)\n"
             "        flow.call('slow.thing', {}, { reply = 'done',\n"
             "          fail = 'gave_up', timeout = '10m' })\n"
             "      end,\n"
             "      done = { internal = true, handler = function(case, ev)\n"
             "        case.data.id = ev.payload.id; return 'b' end },\n"
             "      gave_up = { internal = true, to = 'c' },\n"
             "      work = function(case)\n"
             "        flow.task{ name = 'look', team = 't', due = '1h' }\n"
             "      end,\n"
             "      book = function(case)\n"
             "        flow.task{ name = 'collect', team = 't',\n"
             "          due = flow.local_time('2026-06-03', '17:00') }\n"
             "      end,\n"
             "      withdraw = 'c' } },\n"
             "    b = { final = true }, c = { final = true } } }\n");
  ck_assert_int_eq(
      run_with("load('wait.lua')\n"
               "test('message', function()\n"
               "  local m = open('wait'):expect_refused('nope', 'FLOW_EEVENT')\n"
               "  expect(m).to_contain(\"'nope'\")\n"
               "end)\n"
               "test('paused then closed', function()\n"
               "  local c = open('wait')\n"
               "  c:signal('wait')\n"
               "  advance('10 working days')\n"
               "  c:signal('withdraw')\n"
               "  c:expect_sla('met')\n"
               "end)\n"
               "test('late answer', function()\n"
               "  mock.action('slow.thing', { result = { id = 'x' }, after = '30m' })\n"
               "  local c = open('wait')\n"
               "  c:signal('go')\n"
               "  advance('1h')\n"
               "  c:expect_state('c')\n"
               "  c:expect_field('id', nil)\n"
               "end)\n"
               "test('due at a time', function()\n"
               "  local c = open('wait')\n"
               "  c:signal('book')\n"
               "  c:expect_tasks({ { name = 'collect', due = '2026-06-03T16:00:00Z' } })\n"
               "end)\n"
               "test('due now is overdue', function()\n"
               "  local c = open('wait')\n"
               "  c:signal('work')\n"
               "  advance('1h')\n"
               "  c:expect_tasks({ { name = 'look', overdue = true } })\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"message\",\"status\":\"pass\"");
  has("\"name\":\"paused then closed\",\"status\":\"pass\"");
  has("\"name\":\"late answer\",\"status\":\"pass\"");
  has("\"name\":\"due now is overdue\",\"status\":\"pass\"");
  has("\"name\":\"due at a time\",\"status\":\"pass\"");
}
END_TEST

/* Options kept in tables at the top of a script (frozen once the script
   has loaded) are read like options written in the call: they read as
   empty to the engine's C code and were silently ignored. */
START_TEST(test_testrunner_frozen_options)
{
  write_file("fr.lua",
             "local RETRY = { max = 3, backoff = '5m' }\n"
             "local OPTS = { retry = RETRY, fail = 'gave_up' }\n"
             "local KEEP = { keep = true }\n"
             "local TASK = { name = 'look', team = 't', due = '1h' }\n"
             "local RESTART = { within = '3 working days' }\n"
             "return { name = 'fr', version = 1, initial = 'a',\n"
             "  sla = { within = '1 working day' },\n"
             "  states = {\n"
             "    a = { on = {\n"
             "      go = function(case)\n"
             "        flow.call('notify.sms', { to = '1' }, OPTS) end,\n"
             "      gave_up = { internal = true, to = 'b' },\n"
             "      tick = function(case)\n"
             "        flow.after('1h', 'ping', nil, KEEP) end,\n"
             "      move = 'c',\n"
             "      work = function(case) flow.task(TASK) end,\n"
             "      again = function(case) flow.sla.restart(RESTART) end } },\n"
             "    b = { final = true },\n"
             "    c = { on = { ping = function() end } } } }\n");
  ck_assert_int_eq(
      run_with("load('fr.lua')\n"
               "test('retry', function()\n"
               "  mock.action('notify.sms', { fail = 'down', retry = true })\n"
               "  local c = open('fr')\n"
               "  c:signal('go')\n"
               "  advance('2h')\n"
               "  c:expect_actions({ { status = 'failed', attempts = 4 } })\n"
               "  c:expect_state('b')\n"
               "end)\n"
               "test('keep', function()\n"
               "  local c = open('fr')\n"
               "  c:signal('tick')\n"
               "  c:signal('move')\n"
               "  c:expect_timers({ 'ping', 'sla_breached' })\n"
               "end)\n"
               "test('task', function()\n"
               "  local c = open('fr')\n"
               "  c:signal('work')\n"
               "  c:expect_tasks({ { name = 'look', team = 't' } })\n"
               "end)\n"
               "test('restart', function()\n"
               "  local c = open('fr')\n"
               "  c:signal('again')\n"
               "  c:expect_sla('due', '2026-02-05T09:00:00Z')\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"retry\",\"status\":\"pass\"");
  has("\"name\":\"keep\",\"status\":\"pass\"");
  has("\"name\":\"task\",\"status\":\"pass\"");
  has("\"name\":\"restart\",\"status\":\"pass\"");
}
END_TEST

/* The fail event says why the request ended, so that a script can tell
   the host's "no" from nobody answering. */
START_TEST(test_testrunner_fail_reason)
{
  write_file("why.lua",
             "return { name = 'why', version = 1, initial = 'a',\n"
             "  fields = { reason = { type = 'string' } },\n"
             "  states = {\n"
             "    a = { on = {\n"
             "      go = function(case)\n"
             "        flow.call('address.lookup', { uprn = '1' },\n"
             "          { fail = 'lost', retry = { max = 2, backoff = '1m' },\n"
             "            timeout = '5m' })\n"
             "      end,\n"
             "      lost = { internal = true, handler = function(case, ev)\n"
             "        case.data.reason = ev.payload.reason; return 'b' end } } },\n"
             "    b = { final = true } } }\n");
  ck_assert_int_eq(
      run_with("load('why.lua')\n"
               "local function reason(answer)\n"
               "  mock.action('address.lookup', answer)\n"
               "  local c = open('why')\n"
               "  c:signal('go')\n"
               "  advance('1h')\n"
               "  return c:data().reason\n"
               "end\n"
               "test('refused', function()\n"
               "  expect(reason({ fail = 'no such property' })).to_be('refused')\n"
               "end)\n"
               "test('exhausted', function()\n"
               "  expect(reason({ fail = 'busy', retry = true })).to_be('retries_exhausted')\n"
               "end)\n"
               "test('timed out', function()\n"
               "  expect(reason({ silent = true })).to_be('timed_out')\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"refused\",\"status\":\"pass\"");
  has("\"name\":\"exhausted\",\"status\":\"pass\"");
  has("\"name\":\"timed out\",\"status\":\"pass\"");
}
END_TEST

/* A test retries or dismisses an incident as the staff member who looks
   at it would. */
START_TEST(test_testrunner_incident_retry_dismiss)
{
  write_file("inc.lua",
             "return { name = 'inc', version = 1, initial = 'a',\n"
             "  fields = { done = { type = 'boolean' } },\n"
             "  states = { a = { on = {\n"
             "    go = function(case)\n"
             "      flow.call('foi.publish', {}, { reply = 'published' }) end,\n"
             "    published = { internal = true, handler = function(case)\n"
             "      case.data.done = true return 'b' end } } },\n"
             "    b = { final = true } } }\n");
  ck_assert_int_eq(
      run_with("load('inc.lua')\n"
               "test('retried', function()\n"
               "  mock.action('foi.publish', { fail = 'down' })\n"
               "  local c = open('inc')\n"
               "  c:signal('go')\n"
               "  expect(#c:incidents('open')).to_be(1)\n"
               "  mock.action('foi.publish', { result = {} })\n"
               "  c:retry(nil, 'amy')\n"
               "  c:expect_state('b')\n"
               "  expect(c:incidents()[1].status).to_be('resolved')\n"
               "end)\n"
               "test('dismissed', function()\n"
               "  mock.action('foi.publish', { fail = 'down' })\n"
               "  local c = open('inc')\n"
               "  c:signal('go')\n"
               "  c:dismiss(c:incidents('open')[1], 'amy')\n"
               "  expect(c:incidents()[1].status).to_be('dismissed')\n"
               "  c:expect_state('a')\n"
               "end)\n"
               "test('none to retry', function()\n"
               "  open('inc'):retry()\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"retried\",\"status\":\"pass\"");
  has("\"name\":\"dismissed\",\"status\":\"pass\"");
  has("c:retry(): case 1 has 0 open incidents; say which");
}
END_TEST

/* flow.sla.stop settles the service level while the case stays open. */
START_TEST(test_testrunner_sla_stop)
{
  write_file("st.lua",
             "return { name = 'st', version = 1,\n"
             "  sla = { within = '2 working days', warn = '1 working day' },\n"
             "  initial = 'a',\n"
             "  states = {\n"
             "    a = { on = {\n"
             "      answer = function(case) flow.sla.stop() return 'answered' end,\n"
             "      wait = function(case) flow.sla.pause('asked') end } },\n"
             "    answered = { on = {\n"
             "      review = function(case) flow.sla.restart('1 working day')\n"
             "        return 'reviewing' end,\n"
             "      close = 'done' } },\n"
             "    reviewing = { on = { close = 'done' } },\n"
             "    done = { final = true } } }\n");
  /* Without a clock, flow.sla.stop changes nothing. */
  write_file("nosla.lua",
             "return { name = 'nosla', version = 1, initial = 'a',\n"
             "  states = { a = { on = { answer = function(case)\n"
             "    flow.sla.stop() return 'b' end } },\n"
             "    b = { on = { close = 'c' } }, c = { final = true } } }\n");
  ck_assert_int_eq(
      run_with("load('st.lua')\n"
               "load('nosla.lua')\n"
               "test('no clock', function()\n"
               "  local c = open('nosla')\n"
               "  c:signal('answer')\n"
               "  c:expect_state('b')\n"
               "  c:expect_sla('none')\n"
               "  expect(#c:history()).to_be(2)\n"
               "end)\n"
               "test('met and stays met', function()\n"
               "  local c = open('st')\n"
               "  advance('1 working day')\n"
               "  c:signal('answer')\n"
               "  c:expect_sla('met')\n"
               "  c:expect_timers({})\n"
               "  advance('10 working days')\n"
               "  c:expect_sla('met')\n"
               "  expect(c:get().due_at).to_be_nil()\n"
               "  c:signal('close')\n"
               "  c:expect_sla('met')\n"
               "end)\n"
               "test('late', function()\n"
               "  local c = open('st')\n"
               "  advance('3 working days')\n"
               "  c:signal('answer')\n"
               "  c:expect_sla('breached')\n"
               "end)\n"
               "test('paused', function()\n"
               "  local c = open('st')\n"
               "  advance('1 working day')\n"
               "  c:signal('wait')\n"
               "  advance('10 working days')\n"
               "  c:signal('answer')\n"
               "  c:expect_sla('met')\n"
               "end)\n"
               "test('restarted', function()\n"
               "  local c = open('st')\n"
               "  c:signal('answer')\n"
               "  c:signal('review')\n"
               "  c:expect_sla('due')\n"
               "  advance('2 working days')\n"
               "  c:expect_sla('breached')\n"
               "  expect(c:history()[2].sla[1].result).to_be('met')\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"no clock\",\"status\":\"pass\"");
  has("\"name\":\"met and stays met\",\"status\":\"pass\"");
  has("\"name\":\"late\",\"status\":\"pass\"");
  has("\"name\":\"paused\",\"status\":\"pass\"");
  has("\"name\":\"restarted\",\"status\":\"pass\"");
}
END_TEST

/* flow.cancel_task: a supervisor hands a crew's job to another crew
   without leaving the state. */
START_TEST(test_testrunner_cancel_task)
{
  write_file("ct.lua",
             "return { name = 'ct', version = 1, initial = 'with_crew',\n"
             "  fields = { crew = { type = 'string' } },\n"
             "  states = {\n"
             "    with_crew = {\n"
             "      enter = function(case)\n"
             "        flow.task{ name = 'collect', team = case.data.crew,\n"
             "          due = '1 working day', done = 'collected' } end,\n"
             "      on = {\n"
             "        reassign = function(case, ev)\n"
             "          flow.cancel_task('collect')\n"
             "          case.data.crew = ev.payload.crew\n"
             "          flow.task{ name = 'collect', team = ev.payload.crew,\n"
             "            due = '1 working day', done = 'collected' }\n"
             "        end,\n"
             "        drop = function(case) flow.cancel_task('collect') end,\n"
             "        bad = function(case) flow.cancel_task('No!') end,\n"
             "        collected = { internal = true, to = 'done' } } },\n"
             "    done = { final = true } } }\n");
  ck_assert_int_eq(
      run_with("load('ct.lua')\n"
               "test('handed over', function()\n"
               "  local c = open('ct', { crew = 'north-1' })\n"
               "  c:claim('collect', 'kim')\n"
               "  c:signal('reassign', { crew = 'south-2' })\n"
               "  c:expect_tasks({ { name = 'collect', team = 'south-2',\n"
               "                     status = 'open' } })\n"
               "  expect(c:tasks({ team = 'north-1' })[1].status).to_be('cancelled')\n"
               "  c:complete('collect', {}, 'lee')\n"
               "  c:expect_state('done')\n"
               "end)\n"
               "test('dropped', function()\n"
               "  local c = open('ct', { crew = 'north-1' })\n"
               "  c:signal('drop')\n"
               "  c:expect_tasks({})\n"
               "end)\n"
               "test('bad name', function()\n"
               "  local c = open('ct', { crew = 'north-1' })\n"
               "  c:signal('bad')\n"
               "end)\n",
               NULL),
      0);
  has("\"name\":\"handed over\",\"status\":\"pass\"");
  has("\"name\":\"dropped\",\"status\":\"pass\"");
  has("flow.cancel_task: give the task's name");
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
  tcase_add_test(tc, test_testrunner_output_of_passing_tests);
  tcase_add_test(tc, test_testrunner_timers_due_at_the_same_moment);
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
  tcase_add_test(tc, test_testrunner_tasks_and_messages);
  tcase_add_test(tc, test_testrunner_tasks_failing);
  tcase_add_test(tc, test_testrunner_authors_findings);
  tcase_add_test(tc, test_testrunner_frozen_options);
  tcase_add_test(tc, test_testrunner_fail_reason);
  tcase_add_test(tc, test_testrunner_incident_retry_dismiss);
  tcase_add_test(tc, test_testrunner_sla_stop);
  tcase_add_test(tc, test_testrunner_cancel_task);
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
