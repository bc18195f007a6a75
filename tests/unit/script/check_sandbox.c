/*
 * The sandbox: what a script can and cannot reach, the budgets (and that
 * pcall and coroutines cannot dodge them), the flow module, and transition
 * runs against a compiled service.  Every test builds its sandbox on the
 * counting allocator and the teardown checks that nothing leaked.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "script/script_int.h"
#include "testutil.h"

static test_alloc ta;
static flow__allocator al;
static flow__sandbox *sb;
static flow__service *svc;
static flow__err err;

static int log_calls, log_level;
static char log_msg[8192];

static void
capture_log(flow_engine *e, int level, const char *msg, void *payload)
{
  (void)e;
  (void)payload;
  log_calls++;
  log_level = level;
  snprintf(log_msg, sizeof log_msg, "%s", msg);
}

static void
setup(void)
{
  memset(&ta, 0, sizeof ta);
  al = test_allocator(&ta);
  sb = NULL;
  svc = NULL;
  flow__err_clear(&err);
  log_calls = 0;
  log_level = -1;
  log_msg[0] = 0;
}

static void
teardown(void)
{
  flow__service_free(&al, svc);
  flow__sandbox_free(sb);
  ck_assert_int_eq(ta.live_blocks, 0);
  ck_assert_uint_eq(ta.live_bytes, 0);
}

static flow__sandbox *
new_sb(size_t mem, uint64_t instr)
{
  flow__sandbox_config cfg = { &al, mem, instr, capture_log, NULL, NULL,
                                0, 0, 0, 0, 0 };
  flow__sandbox *s = NULL;
  int rc = flow__sandbox_new(&s, &cfg, &err);
  ck_assert_msg(rc == 0, "sandbox_new: %d %s", rc, err.msg);
  return s;
}

/* Evaluates code in sb; returns the rc, *out the compact JSON (or ""). */
static int
eval(const char *code, const char *name, char *out, size_t outlen)
{
  json_t *j = NULL;
  flow__err_clear(&err);
  int rc = flow__sandbox_eval(sb, code, strlen(code), name, &j, &err);
  if (out) {
    out[0] = 0;
    if (rc == 0) {
      char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
      snprintf(out, outlen, "%s", s);
      free(s);
    }
  }
  json_decref(j);
  return rc;
}

static void
eval_is(const char *code, const char *want)
{
  char got[4096];
  int rc = eval(code, "t", got, sizeof got);
  ck_assert_msg(rc == 0, "%s -> %d %s", code, rc, err.msg);
  ck_assert_msg(strcmp(got, want) == 0, "%s -> %s, want %s", code, got, want);
}

static void
eval_fails(const char *code, int want_rc, const char *want_msg)
{
  int rc = eval(code, "t", NULL, 0);
  ck_assert_msg(rc == want_rc, "%s -> %d (%s), want %d", code, rc, err.msg,
                want_rc);
  if (want_msg)
    ck_assert_msg(strcmp(err.msg, want_msg) == 0, "%s -> '%s', want '%s'",
                  code, err.msg, want_msg);
}

/* ---- the environment ---------------------------------------------------- */

START_TEST(test_sandbox_new_and_free)
{
  sb = new_sb(0, 0);
  /* Everything the Lua state holds is counted, and it came from the
     engine allocator. */
  ck_assert_uint_gt(flow__sandbox_mem(sb), 10000);
  ck_assert_uint_lt(flow__sandbox_mem(sb), ta.live_bytes);
}
END_TEST

START_TEST(test_sandbox_globals_are_whitelisted)
{
  sb = new_sb(0, 0);
  eval_is("local names = {} for k in pairs(_G) do names[#names + 1] = k end "
          "table.sort(names) return table.concat(names, ',')",
          "\"_G,_VERSION,assert,coroutine,error,flow,getmetatable,ipairs,"
          "load,math,next,pairs,pcall,print,rawequal,rawget,rawlen,rawset,"
          "select,setmetatable,string,table,tonumber,tostring,type,utf8,"
          "xpcall\"");
  eval_is("local names = {} for k in pairs(flow) do names[#names + 1] = k "
          "end table.sort(names) return table.concat(names, ',')",
          "\"add,after,at,before,call,cancel_task,date,fail,is_working_day,list,local_time,"
          "log,now,"
          "null,open,signal,sla,task\"");
}
END_TEST

START_TEST(test_sandbox_escapes_are_nil)
{
  static const char *const gone[] = {
    "io",          "os",       "debug",          "package",
    "require",     "dofile",   "loadfile",       "collectgarbage",
    "string.dump", "warn",     "math.randomseed", "loadstring",
    "module",      "setfenv",  "getfenv",        "unpack",
  };
  sb = new_sb(0, 0);
  for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) {
    char code[128];
    snprintf(code, sizeof code, "return type(%s)", gone[i]);
    eval_is(code, "\"nil\"");
  }
  /* Calling one fails like calling any nil. */
  eval_fails("os.exit(1)", FLOW_ESCRIPT,
             "t:1: attempt to index a nil value (global 'os')");
  eval_fails("require('io')", FLOW_ESCRIPT,
             "t:1: attempt to call a nil value (global 'require')");
}
END_TEST

START_TEST(test_sandbox_load_refuses_bytecode)
{
  sb = new_sb(0, 0);
  eval_is("local f, e = load('\\27Lua\\84\\0') return { f == nil, e }",
          "[true,\"attempt to load a binary chunk (mode is 't')\"]");
  /* Asking for binary mode does not help. */
  eval_is("local f, e = load('\\27Lua\\84\\0', 'x', 'b') return e",
          "\"attempt to load a binary chunk (mode is 't')\"");
  /* Nor does a reader function. */
  eval_is("local done = false local f, e = load(function() if done then "
          "return nil end done = true return '\\27Lua' end) return e",
          "\"attempt to load a binary chunk (mode is 't')\"");
  /* The whole chunk given to eval is text-only too. */
  eval_fails("\033Lua\x54", FLOW_ESCRIPT,
             "attempt to load a binary chunk (mode is 't')");
}
END_TEST

START_TEST(test_sandbox_load_text)
{
  sb = new_sb(0, 0);
  eval_is("return load('return 40 + 2')()", "42");
  eval_is("return load('return flow ~= nil and string ~= nil')()", "true");
  eval_is("local parts, i = { 'return ', '6 * ', '7' }, 0 "
          "return load(function() i = i + 1 return parts[i] end)()",
          "42");
  eval_is("return load('return x', 'c', 't', { x = 5 })()", "5");
  eval_is("local f, e = load('return +', 'chunky') return e",
          "\"[string \\\"chunky\\\"]:1: unexpected symbol near '+'\"");
}
END_TEST

START_TEST(test_sandbox_gc_metamethod_refused)
{
  sb = new_sb(0, 0);
  eval_fails("setmetatable({}, { __gc = function() end })", FLOW_ESCRIPT,
             "t:1: setmetatable: __gc finalizers are not available in "
             "service scripts");
  eval_is("return getmetatable(setmetatable({}, { __index = {} })) ~= nil",
          "true");
}
END_TEST

/* ---- budgets ------------------------------------------------------------- */

START_TEST(test_sandbox_endless_loop_is_killed)
{
  sb = new_sb(0, 100000);
  int rc = eval("while true do end", "loop", NULL, 0);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the chunk loop ran more than "
                            "100000 instructions (an endless loop?)");
  /* The kill is over with the eval: the next one runs normally. */
  eval_is("local n = 0 for i = 1, 1000 do n = n + i end return n", "500500");
}
END_TEST

START_TEST(test_sandbox_pcall_cannot_swallow_the_kill)
{
  sb = new_sb(0, 100000);
  eval_fails("while true do pcall(function() while true do end end) end",
             FLOW_ELIMIT, NULL);
  /* Even when the script would finish after catching it. */
  eval_fails("for i = 1, 3 do pcall(function() while true do end end) end "
             "return 1",
             FLOW_ELIMIT, NULL);
  eval_fails("while true do xpcall(function() while true do end end, "
             "function(m) return m end) end",
             FLOW_ELIMIT, NULL);
  eval_fails("local ok = pcall(error, {}) while true do end", FLOW_ELIMIT,
             NULL);
}
END_TEST

START_TEST(test_sandbox_coroutines_are_budgeted)
{
  sb = new_sb(0, 100000);
  eval_fails("coroutine.wrap(function() while true do end end)()",
             FLOW_ELIMIT, NULL);
  eval_fails("local co = coroutine.create(function() while true do end end) "
             "while true do coroutine.resume(co) end",
             FLOW_ELIMIT, NULL);
  eval_fails("local co = coroutine.create(function() while true do end end) "
             "local ok = coroutine.resume(co) return ok",
             FLOW_ELIMIT, NULL);
  /* A coroutine that yields in a loop shares the one budget. */
  eval_fails("local co = coroutine.wrap(function() while true do "
             "coroutine.yield() end end) while true do co() end",
             FLOW_ELIMIT, NULL);
  eval_is("local co = coroutine.wrap(function(a) local b = coroutine.yield(a "
          "+ 1) return b * 2 end) return { co(1), co(5) }",
          "[2,10]");
}
END_TEST

START_TEST(test_sandbox_memory_hog_is_killed)
{
  sb = new_sb(2 * 1024 * 1024, 0);
  int rc = eval("local t = {} for i = 1, 1e8 do t[i] = i end", "hog", NULL, 0);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the chunk hog used more than "
                            "2 MiB of memory");
  ck_assert_uint_le(flow__sandbox_mem(sb), 2 * 1024 * 1024);
  eval_fails("return #string.rep('x', 1e8)", FLOW_ELIMIT, NULL);
  /* Caught by pcall, still killed. */
  eval_fails("local ok = pcall(function() local t = {} for i = 1, 1e8 do "
             "t[i] = i end end) return ok",
             FLOW_ELIMIT, NULL);
  eval_fails("local s = 'x' while true do local ok = pcall(function() s = s "
             ".. s end) end",
             FLOW_ELIMIT, NULL);
  /* Garbage is not a hog: the collector runs before the cap bites. */
  eval_is("local n = 0 for i = 1, 20000 do local t = { i, i, i, i } "
          "n = n + #t end return n",
          "80000");
  eval_is("return 1 + 1", "2");
}
END_TEST

START_TEST(test_sandbox_c_loops_are_charged)
{
  sb = new_sb(0, 100000);
  eval_is("return #string.rep('', 1e15)", "0");
  eval_is("return string.rep('ab', 3, ',')", "\"ab,ab,ab\"");
  eval_fails("table.move({}, 1, 1e12, 2)", FLOW_ELIMIT, NULL);
  eval_fails("table.insert(setmetatable({}, { __len = function() return "
             "1e12 end }), 1, 'x')",
             FLOW_ELIMIT, NULL);
  /* table.concat stops at the first missing item, as Lua's does. */
  eval_fails("table.concat({}, '', 1, 1e12)", FLOW_ESCRIPT,
             "t:1: invalid value (nil) at index 1 in table for 'concat'");
  eval_fails("local t = setmetatable({}, { __index = function() return "
             "'x' end }) return #table.concat(t, '', 1, 1e12)",
             FLOW_ELIMIT, NULL);
  eval_is("local t = { 3, 1, 2 } table.sort(t) table.insert(t, 4) "
          "return table.concat(table.move(t, 1, 4, 1, {}), ',')",
          "\"1,2,3,4\"");
}
END_TEST

START_TEST(test_sandbox_cpu_budget)
{
  flow__sandbox_config cfg = { &al, 0, 0, NULL, NULL, NULL, 30, 0, 0, 0, 0 };
  ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
  /* Few, slow instructions: one comparison of two 1 MiB strings each. */
  int rc = eval("local a = 'x' for i = 1, 20 do a = a .. a end "
                "local b = a .. 'y' while a < b do end",
                "slow", NULL, 0);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the chunk slow used more than "
                            "30 ms of cpu time (an endless loop, or too much "
                            "work for one event?)");
  ck_assert(flow__sandbox_damaged(sb));
  eval_is("return ('ok'):upper()", "\"OK\"");
}
END_TEST

START_TEST(test_sandbox_log_budget)
{
  flow__sandbox_config cfg = { &al, 0, 0, capture_log, NULL, NULL,
                               0,   1000, 0, 0, 0 };
  ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
  /* Each line counts its bytes and a newline, whatever the host does
     with it; the line that would pass the budget is not written. */
  eval_is("for i = 1, 9 do flow.log(string.rep('x', 99)) end", "null");
  ck_assert_int_eq(log_calls, 9);
  int rc = eval("for i = 1, 11 do print(string.rep('y', 99)) end", "noisy",
                NULL, 0);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the chunk noisy: flow.log "
                            "wrote more than 1000 bytes of log output");
  ck_assert_int_eq(log_calls, 19);
  /* The budget is per unit. */
  eval_is("flow.log('again')", "null");
  ck_assert_str_eq(log_msg, "again");
}
END_TEST

START_TEST(test_sandbox_damaged_only_after_a_kill)
{
  sb = new_sb(2 * 1024 * 1024, 100000);
  ck_assert_int_eq(flow__sandbox_damaged(sb), 0);
  eval_fails("error('a script error is not a kill')", FLOW_ESCRIPT, NULL);
  eval_fails("flow.fail('nor is a refusal')", FLOW_EREFUSED, NULL);
  ck_assert_int_eq(flow__sandbox_damaged(sb), 0);
  eval_fails("local s = 'x' while true do s = s .. s end", FLOW_ELIMIT,
             NULL);
  ck_assert_int_eq(flow__sandbox_damaged(sb), 1);
  /* It stays so: the engine decides when to replace the sandbox. */
  eval_is("return 1", "1");
  ck_assert_int_eq(flow__sandbox_damaged(sb), 1);
}
END_TEST

START_TEST(test_sandbox_host_out_of_memory)
{
  /* Fail each allocation in turn: every outcome is clean, none leaks. */
  for (long n = 1;; n++) {
    memset(&ta, 0, sizeof ta);
    ta.fail_at = n;
    flow__sandbox_config cfg = { &al, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0, 0 };
    flow__sandbox *s = NULL;
    int rc = flow__sandbox_new(&s, &cfg, &err);
    if (rc == 0) {
      json_t *j = NULL;
      const char *code = "return { a = { 1, 2 } }";
      rc = flow__sandbox_eval(s, code, strlen(code), "oom", &j, &err);
      ck_assert_msg(rc == 0 || rc == FLOW_ENOMEM, "rc %d %s", rc, err.msg);
      json_decref(j);
      flow__sandbox_free(s);
    } else {
      ck_assert_msg(rc == FLOW_ENOMEM, "at %ld: rc %d %s", n, rc, err.msg);
      ck_assert_ptr_null(s);
    }
    ck_assert_int_eq(ta.live_blocks, 0);
    if (ta.failures == 0)
      break;
  }
}
END_TEST

START_TEST(test_sandbox_tiny_memory_limit)
{
  flow__sandbox_config cfg = { &al, 1024, 0, NULL, NULL, NULL, 0, 0, 0, 0, 0 };
  flow__sandbox *s = NULL;
  int rc = flow__sandbox_new(&s, &cfg, &err);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_ptr_null(s);
}
END_TEST

/* ---- eval --------------------------------------------------------------- */

START_TEST(test_sandbox_eval_results)
{
  sb = new_sb(0, 0);
  eval_is("return { a = 1, b = { 1, 2.5, 'x' }, c = true }",
          "{\"a\":1,\"b\":[1,2.5,\"x\"],\"c\":true}");
  eval_is("local x = 1", "null");
  eval_is("return nil", "null");
  eval_is("return 'one', 'two'", "\"one\"");
  int rc = eval("return { cb = print }", "f", NULL, 0);
  ck_assert_int_eq(rc, FLOW_EINVAL);
  ck_assert_str_eq(err.msg, "f: result.cb: a function cannot be stored as "
                            "JSON (use strings, numbers, booleans and "
                            "tables)");
}
END_TEST

START_TEST(test_sandbox_eval_errors_name_chunk_and_line)
{
  sb = new_sb(0, 0);
  int rc = eval("local a = 1\nreturn +", "bad.lua", NULL, 0);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg, "bad.lua:2: unexpected symbol near '+'");
  rc = eval("\n\nerror('boom')", "e", NULL, 0);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg, "e:3: boom");
  rc = eval("error({ code = 1 })", "e", NULL, 0);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg,
                   "error object of type table (use error(\"message\"))");
  /* The error object's metamethods are never run by the host. */
  rc = eval("error(setmetatable({}, { __tostring = function() while true do "
            "end end }))", "e", NULL, 0);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
}
END_TEST

START_TEST(test_sandbox_log_and_print)
{
  sb = new_sb(0, 0);
  eval_is("print('a', 1, 2.0, true, nil, {}, print)", "null");
  ck_assert_int_eq(log_calls, 1);
  ck_assert_int_eq(log_level, FLOW_LOG_INFO);
  ck_assert_str_eq(log_msg, "a\t1\t2.0\ttrue\tnil\ttable\tfunction");
  eval_is("flow.log('crew', 'c1', 'line\\nbreak')", "null");
  ck_assert_str_eq(log_msg, "crew c1 line break");
  /* __tostring is not called. */
  eval_is("flow.log(setmetatable({}, { __tostring = function() error('no') "
          "end }))",
          "null");
  ck_assert_str_eq(log_msg, "table");
  /* One line of at most 4095 bytes, cut on a character boundary. */
  eval_is("flow.log(string.rep('x', 4094) .. '\\u{e9}' .. string.rep('y', "
          "100))",
          "null");
  ck_assert_uint_eq(strlen(log_msg), 4094);
  ck_assert_int_eq(log_calls, 4);
}
END_TEST

START_TEST(test_sandbox_flow_now_in_eval)
{
  sb = new_sb(0, 0);
  char got[64];
  ck_assert_int_eq(eval("return flow.now()", "t", got, sizeof got), 0);
  /* "YYYY-MM-DDTHH:MM:SS(.mmm)Z" from the real clock (no engine). */
  ck_assert_uint_ge(strlen(got), 22);
  ck_assert_int_eq(got[11], 'T');
  ck_assert_int_eq(got[strlen(got) - 2], 'Z');
}
END_TEST

/* The date and working-day helpers, on the default calendar and on one
   the engine sets (a council closed on 28 December). */
START_TEST(test_sandbox_date_helpers)
{
  sb = new_sb(0, 0);
  char got[256];
  ck_assert_int_eq(
      eval("return { flow.add('1 working day', '2026-12-24T12:00:00Z'),"
           " flow.add('48h', '2026-12-24T12:00:00Z'),"
           " flow.date('2026-06-03T23:30:00Z'),"
           " flow.date('2026-06-03T23:30:00Z', 'long'),"
           " flow.is_working_day('2026-12-25'),"
           " flow.is_working_day('2026-12-28T10:00:00Z'),"
           " flow.before('2026-01-01T00:00:00.5Z', '2026-01-01T00:00:01Z'),"
           " flow.before('2026-01-01T00:00:01Z', '2026-01-01T00:00:00.5Z') }",
           "d", got, sizeof got),
      0);
  /* 23:30Z on 3 June is 00:30 on the 4th in London (summer time); Boxing
     Day 2026 is a Saturday, so Monday 28 December is its substitute. */
  ck_assert_str_eq(got, "[\"2026-12-29T12:00:00Z\",\"2026-12-26T12:00:00Z\","
                        "\"2026-06-04\",\"Thursday 4 June 2026\",false,false,"
                        "true,false]");
  flow__calendar cal;
  flow__calendar_default(&cal);
  int64_t closed = flow__days_from_civil(2026, 12, 29);
  cal.extra_holidays = &closed;
  cal.nextra = 1;
  flow__sandbox_set_calendar(sb, &cal);
  ck_assert_int_eq(eval("return { flow.add('1 working day',"
                        " '2026-12-24T12:00:00Z'),"
                        " flow.is_working_day('2026-12-29') }",
                        "d", got, sizeof got),
                   0);
  ck_assert_str_eq(got, "[\"2026-12-30T12:00:00Z\",false]");
  /* Local times of day, and dates as their local midnight, across the
     clock changes: 10:00 in June is 09:00Z; 01:30 on the spring-forward
     night does not exist and reads as GMT; on the autumn night it comes
     twice and the first (BST) is taken. */
  ck_assert_int_eq(eval("return { flow.local_time('2026-06-01', '10:00'),"
                        " flow.local_time('2026-12-01T23:00:00Z', '10:00'),"
                        " flow.local_time('2026-03-29', '01:30'),"
                        " flow.local_time('2026-10-25', '01:30'),"
                        " flow.date('2026-02-11', 'long') }",
                        "d", got, sizeof got),
                   0);
  ck_assert_str_eq(got, "[\"2026-06-01T09:00:00Z\",\"2026-12-01T10:00:00Z\","
                        "\"2026-03-29T01:30:00Z\",\"2026-10-25T00:30:00Z\","
                        "\"Wednesday 11 February 2026\"]");
  ck_assert_int_eq(eval("return flow.local_time('2026-06-01', '25:00')", "d",
                        NULL, 0),
                   FLOW_ESCRIPT);
  ck_assert_ptr_nonnull(strstr(err.msg, "is not a time of day"));
  /* Mistakes name the function and say what to write. */
  ck_assert_int_eq(eval("return flow.add('3 wrking days')", "d", NULL, 0),
                   FLOW_ESCRIPT);
  ck_assert_ptr_nonnull(strstr(err.msg, "flow.add: "));
  ck_assert_int_eq(eval("return flow.date('yesterday')", "d", NULL, 0),
                   FLOW_ESCRIPT);
  ck_assert_ptr_nonnull(strstr(err.msg, "'yesterday' is not a time"));
  ck_assert_int_eq(eval("return flow.is_working_day('2026-02-30')", "d",
                        NULL, 0),
                   FLOW_ESCRIPT);
  ck_assert_ptr_nonnull(strstr(err.msg, "is not a date"));
  ck_assert_int_eq(eval("return flow.date(nil, 'short')", "d", NULL, 0),
                   FLOW_ESCRIPT);
  ck_assert_ptr_nonnull(strstr(err.msg, "the style is"));
  ck_assert_int_eq(eval("return flow.before('2026-01-01T00:00:00Z')", "d",
                        NULL, 0),
                   FLOW_ESCRIPT);
  ck_assert_ptr_nonnull(strstr(err.msg, "needs two times"));
  flow__sandbox_set_calendar(sb, NULL);
}
END_TEST

START_TEST(test_sandbox_eval_random_is_repeatable)
{
  sb = new_sb(0, 0);
  char a[64], b[64];
  ck_assert_int_eq(eval("return { math.random(1e9), math.random() }", "r",
                        a, sizeof a),
                   0);
  ck_assert_int_eq(eval("return { math.random(1e9), math.random() }", "r",
                        b, sizeof b),
                   0);
  ck_assert_str_eq(a, b);
}
END_TEST

START_TEST(test_sandbox_flow_list_and_null)
{
  sb = new_sb(0, 0);
  eval_is("return flow.list()", "[]");
  eval_is("local t = { 1, 2 } return flow.list(t) == t", "true");
  eval_is("return getmetatable(flow.list())", "\"flow.list\"");
  eval_is("return { flow.null, 2 }", "[null,2]");
  eval_is("return type(flow.null)", "\"userdata\"");
  eval_fails("flow.list(setmetatable({}, {}))", FLOW_ESCRIPT,
             "t:1: flow.list: the table already has a metatable of its own");
}
END_TEST

START_TEST(test_sandbox_match)
{
  sb = new_sb(0, 0);
  ck_assert_int_eq(flow__sandbox_match(sb, "123", 3, "^%d+$"), 1);
  ck_assert_int_eq(flow__sandbox_match(sb, "12a", 3, "^%d+$"), 0);
  ck_assert_int_eq(flow__sandbox_match(sb, "a\0b", 3, "^a%zb$"), 1);
  ck_assert_int_eq(flow__sandbox_match(sb, "x", 1, "[a-"), FLOW_ESCRIPT);
  ck_assert_int_eq(flow__sandbox_match(sb, "x", 1, "%"), FLOW_ESCRIPT);
  /* A script cannot replace string.find at run time... */
  eval_fails("string.find = function() return 1 end", FLOW_ESCRIPT,
             "t:1: attempt to change a read-only table (service globals "
             "are frozen after loading; keep per-case values in "
             "case.data)");
}
END_TEST

START_TEST(test_sandbox_match_ignores_a_replaced_find)
{
  /* ... and one that replaces it while loading does not change what the
     engine matches field patterns with. */
  static const char src[] =
      "string.find = function() return 1 end\n"
      "return { name = 'p', version = 1, initial = 'a',\n"
      "  states = { a = { final = true } } }\n";
  sb = new_sb(0, 0);
  svc = flow__calloc(&al, 1, sizeof *svc);
  int rc = flow__service_compile(svc, sb, src, strlen(src), "p.lua", &err);
  ck_assert_msg(rc == 0, "compile: %s", err.msg);
  ck_assert_int_eq(flow__sandbox_match(sb, "abc", 3, "^%d+$"), 0);
  ck_assert_int_eq(flow__sandbox_match(sb, "123", 3, "^%d+$"), 1);
}
END_TEST

/* ---- transition runs ----------------------------------------------------- */

static const char service_src[] =
    "return {\n"                                                     /* 1 */
    "  name = 'bins', version = 2,\n"                                /* 2 */
    "  fields = { crew = { type = 'string' }, tags = { type = 'list' },\n"
    "             seen = { type = 'object' }, r = { type = 'list' } },\n"
    "  initial = 'reported',\n"                                      /* 5 */
    "  states = {\n"                                                 /* 6 */
    "    reported = { on = {\n"                                      /* 7 */
    "      assign = function(case, ev)\n"                            /* 8 */
    "        case.data.crew = ev.payload.crew\n"                     /* 9 */
    "        case.data.seen = { id = case.id, state = case.state,\n"
    "          version = case.version, seq = case.seq, ev = ev.name,\n"
    "          actor = ev.actor.id, role = ev.actor.roles[1],\n"
    "          at = ev.at, now = flow.now(), opened = case.opened_at,\n"
    "          due = case.due_at, status = case.status }\n"          /* 14 */
    "        flow.call('notify.sms', { to = '0123', n = 1 })\n"      /* 15 */
    "        return 'assigned'\n"                                    /* 16 */
    "      end,\n"                                                   /* 17 */
    "      refuse = function(case) pcall(flow.fail, 'no crew available')\n"
    "        return 'assigned' end,\n"                               /* 19 */
    "      bad = function() return 42 end,\n"                        /* 20 */
    "      spin = function() while true do end end,\n"               /* 21 */
    "      wreck = function(case) case.data = 'gone' end,\n"         /* 22 */
    "      empty = function(case) case.data.tags = {} end,\n"        /* 23 */
    "      dice = function(case) case.data.r = { math.random(1e6),\n"
    "        math.random(1e6), math.random(1e6) } end,\n"            /* 25 */
    "      badcall = function() flow.call('Notify SMS') end,\n"      /* 26 */
    "      boom = function() error('kaput') end,\n"                  /* 27 */
    "      gated = { to = 'assigned', guard = function(case, ev)\n"  /* 28 */
    "        return ev.payload.ok end },\n"                          /* 29 */
    "    } },\n"                                                     /* 30 */
    "    assigned = { enter = function(case)\n"                      /* 31 */
    "      case.data.crew = 'entered ' .. case.state end },\n"       /* 32 */
    "  },\n"                                                         /* 33 */
    "}\n";

static void
compile_service(size_t mem, uint64_t instr)
{
  sb = new_sb(mem, instr);
  svc = flow__calloc(&al, 1, sizeof *svc);
  int rc = flow__service_compile(svc, sb, service_src, strlen(service_src),
                                 "t.lua", &err);
  ck_assert_msg(rc == 0, "compile: %s", err.msg);
}

static const flow__trans *
trans(const char *state, const char *event)
{
  const flow__state *st = flow__service_state(svc, state);
  ck_assert_ptr_nonnull(st);
  const flow__trans *tr = flow__state_trans(st, event);
  ck_assert_ptr_nonnull(tr);
  return tr;
}

static const char *const roles[] = { "crew", "supervisor" };
static const flow_actor actor = { "sam", roles, 2 };

/* 2026-11-27T09:00:00Z */
#define AT ((int64_t)1795770000000)

static int
begin(const char *event, const char *payload, uint64_t seed)
{
  flow__case_view cv = { "17",      "bins", 2, "reported", "open",
                         AT - 1000, AT - 1, INT64_MIN, 3, seed };
  json_t *data = json_pack("{s:s}", "crew", "none");
  json_t *pl = json_loads(payload ? payload : "{}", 0, NULL);
  flow__event_view ev = { .name = event,
                          .payload = pl,
                          .actor = &actor,
                          .at = AT };
  flow__err_clear(&err);
  int rc = flow__run_begin(sb, svc, &cv, data, &ev, &err);
  json_decref(data);
  json_decref(pl);
  return rc;
}

static char *
dump(json_t *j)
{
  return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

START_TEST(test_sandbox_run_handler)
{
  compile_service(0, 0);
  ck_assert_int_eq(begin("assign", "{\"crew\":\"c1\"}", 1), 0);
  char *next = NULL;
  ck_assert_int_eq(
      flow__run_invoke(sb, trans("reported", "assign")->handler, &next, NULL,
                       &err),
      0);
  ck_assert_str_eq(next, "assigned");
  flow__free(&al, next);
  json_t *data = NULL, *calls = NULL;
  ck_assert_int_eq(flow__run_end(sb, &data, &calls, &err), 0);
  char *d = dump(data), *c = dump(calls);
  ck_assert_str_eq(d, "{\"crew\":\"c1\",\"seen\":{\"actor\":\"sam\","
                      "\"at\":\"2026-11-27T09:00:00Z\",\"ev\":\"assign\","
                      "\"id\":\"17\",\"now\":\"2026-11-27T09:00:00Z\","
                      "\"opened\":\"2026-11-27T08:59:59Z\",\"role\":\"crew\","
                      "\"seq\":3,\"state\":\"reported\",\"status\":\"open\","
                      "\"version\":2}}");
  ck_assert_str_eq(c, "[{\"action\":\"notify.sms\",\"args\":{\"n\":1,"
                      "\"to\":\"0123\"}}]");
  free(d);
  free(c);
  json_decref(data);
  json_decref(calls);
}
END_TEST

START_TEST(test_sandbox_run_fail_refuses_even_when_caught)
{
  compile_service(0, 0);
  ck_assert_int_eq(begin("refuse", NULL, 1), 0);
  char *next = NULL;
  int rc = flow__run_invoke(sb, trans("reported", "refuse")->handler, &next,
                            NULL, &err);
  ck_assert_int_eq(rc, FLOW_EREFUSED);
  ck_assert_str_eq(err.msg, "no crew available");
  ck_assert_ptr_null(next);
  /* The run stays refused. */
  json_t *data = NULL;
  ck_assert_int_eq(flow__run_end(sb, &data, NULL, &err), FLOW_EREFUSED);
  ck_assert_ptr_null(data);
}
END_TEST

START_TEST(test_sandbox_run_handler_must_return_a_name)
{
  compile_service(0, 0);
  ck_assert_int_eq(begin("bad", NULL, 1), 0);
  char *next = NULL;
  int rc = flow__run_invoke(sb, trans("reported", "bad")->handler, &next,
                            NULL, &err);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg, "t.lua:20: a handler must return the next "
                            "state's name (a string) or nothing, not a "
                            "number");
  flow__run_abort(sb);

  ck_assert_int_eq(begin("boom", NULL, 1), 0);
  rc = flow__run_invoke(sb, trans("reported", "boom")->handler, &next, NULL,
                        &err);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg, "t.lua:27: kaput");
  flow__run_abort(sb);
}
END_TEST

START_TEST(test_sandbox_run_guard_truth)
{
  compile_service(0, 0);
  const flow__trans *tr = trans("reported", "gated");
  ck_assert_int_ne(tr->guard, FLOW__NOREF);
  ck_assert_str_eq(tr->target, "assigned");
  int truth = -1;
  ck_assert_int_eq(begin("gated", "{\"ok\":false}", 1), 0);
  ck_assert_int_eq(flow__run_invoke(sb, tr->guard, NULL, &truth, &err), 0);
  ck_assert_int_eq(truth, 0);
  flow__run_abort(sb);
  ck_assert_int_eq(begin("gated", "{\"ok\":1}", 1), 0);
  ck_assert_int_eq(flow__run_invoke(sb, tr->guard, NULL, &truth, &err), 0);
  ck_assert_int_eq(truth, 1);
  flow__run_abort(sb);
}
END_TEST

START_TEST(test_sandbox_run_budget_message)
{
  compile_service(0, 100000);
  ck_assert_int_eq(begin("spin", NULL, 1), 0);
  char *next = NULL;
  int rc = flow__run_invoke(sb, trans("reported", "spin")->handler, &next,
                            NULL, &err);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the handler for 'spin' in "
                            "t.lua ran more than 100000 instructions (an "
                            "endless loop?)");
  flow__run_abort(sb);
  /* The next run starts with a clean slate. */
  ck_assert_int_eq(begin("assign", "{\"crew\":\"c2\"}", 1), 0);
  ck_assert_int_eq(flow__run_invoke(sb, trans("reported", "assign")->handler,
                                    &next, NULL, &err),
                   0);
  ck_assert_str_eq(next, "assigned");
  flow__free(&al, next);
  ck_assert_int_eq(flow__run_end(sb, NULL, NULL, &err), 0);
}
END_TEST

START_TEST(test_sandbox_run_data_must_stay_a_table)
{
  compile_service(0, 0);
  ck_assert_int_eq(begin("wreck", NULL, 1), 0);
  ck_assert_int_eq(flow__run_invoke(sb, trans("reported", "wreck")->handler,
                                    NULL, NULL, &err),
                   0);
  json_t *data = NULL;
  ck_assert_int_eq(flow__run_end(sb, &data, NULL, &err), FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg, "t.lua: case.data must stay a table (a handler "
                            "set it to a string)");
  ck_assert_ptr_null(data);
}
END_TEST

START_TEST(test_sandbox_run_empty_list_field)
{
  compile_service(0, 0);
  ck_assert_int_eq(begin("empty", NULL, 1), 0);
  ck_assert_int_eq(flow__run_invoke(sb, trans("reported", "empty")->handler,
                                    NULL, NULL, &err),
                   0);
  json_t *data = NULL, *calls = NULL;
  ck_assert_int_eq(flow__run_end(sb, &data, &calls, &err), 0);
  char *d = dump(data), *c = dump(calls);
  ck_assert_str_eq(d, "{\"crew\":\"none\",\"tags\":[]}");
  ck_assert_str_eq(c, "[]");
  free(d);
  free(c);
  json_decref(data);
  json_decref(calls);
}
END_TEST

static char *
dice(uint64_t seed)
{
  ck_assert_int_eq(begin("dice", NULL, seed), 0);
  ck_assert_int_eq(flow__run_invoke(sb, trans("reported", "dice")->handler,
                                    NULL, NULL, &err),
                   0);
  json_t *data = NULL;
  ck_assert_int_eq(flow__run_end(sb, &data, NULL, &err), 0);
  char *d = dump(json_object_get(data, "r"));
  json_decref(data);
  return d;
}

START_TEST(test_sandbox_run_random_is_seeded_per_case)
{
  compile_service(0, 0);
  char *a = dice(42), *b = dice(42), *c = dice(43);
  ck_assert_str_eq(a, b);
  ck_assert_str_ne(a, c);
  free(a);
  free(b);
  free(c);
}
END_TEST

START_TEST(test_sandbox_run_bad_action_name)
{
  compile_service(0, 0);
  ck_assert_int_eq(begin("badcall", NULL, 1), 0);
  int rc = flow__run_invoke(sb, trans("reported", "badcall")->handler, NULL,
                            NULL, &err);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg, "t.lua:26: flow.call: 'Notify SMS' is not an "
                            "action name (use lower-case words joined by "
                            "dots, like \"notify.sms\")");
  flow__run_abort(sb);
}
END_TEST

START_TEST(test_sandbox_run_enter_sees_new_state)
{
  compile_service(0, 0);
  ck_assert_int_eq(begin("assign", "{\"crew\":\"c1\"}", 1), 0);
  flow__run_set_state(sb, "assigned");
  const flow__state *st = flow__service_state(svc, "assigned");
  ck_assert_int_eq(flow__run_invoke(sb, st->enter, NULL, NULL, &err), 0);
  json_t *data = NULL;
  ck_assert_int_eq(flow__run_end(sb, &data, NULL, &err), 0);
  ck_assert_str_eq(json_string_value(json_object_get(data, "crew")),
                   "entered assigned");
  json_decref(data);
}
END_TEST

START_TEST(test_sandbox_run_memory_limit)
{
  compile_service(4 * 1024 * 1024, 0);
  /* A payload larger than the script's memory is refused, not crashed. */
  json_t *big = json_array();
  for (int i = 0; i < 200000; i++)
    json_array_append_new(big, json_string("some text to fill the sandbox"));
  json_t *pl = json_pack("{s:o}", "items", big);
  flow__case_view cv = { "1", "bins", 2, "reported", "open", AT, AT,
                         INT64_MIN, 1, 1 };
  flow__event_view ev = { .name = "assign",
                          .payload = pl,
                          .actor = &actor,
                          .at = AT };
  int rc = flow__run_begin(sb, svc, &cv, NULL, &ev, &err);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  json_decref(pl);
  /* And the sandbox still works afterwards. */
  ck_assert_int_eq(begin("empty", NULL, 1), 0);
  ck_assert_int_eq(flow__run_invoke(sb, trans("reported", "empty")->handler,
                                    NULL, NULL, &err),
                   0);
  ck_assert_int_eq(flow__run_end(sb, NULL, NULL, &err), 0);
}
END_TEST

START_TEST(test_sandbox_run_refuses_deep_input)
{
  compile_service(0, 0);
  json_t *deep = json_integer(1);
  for (int i = 0; i < 150; i++)
    deep = json_pack("{s:o}", "k", deep);
  flow__case_view cv = { "1", "bins", 2, "reported", "open", AT, AT,
                         INT64_MIN, 1, 1 };
  flow__event_view ev = { .name = "assign",
                          .payload = deep,
                          .actor = &actor,
                          .at = AT };
  int rc = flow__run_begin(sb, svc, &cv, NULL, &ev, &err);
  ck_assert_int_eq(rc, FLOW_EINVAL);
  ck_assert_str_eq(err.msg, "the payload of event 'assign' is nested more "
                            "than 100 levels deep");
  json_decref(deep);
  ck_assert_int_eq(begin("empty", NULL, 1), 0);
  flow__run_abort(sb);
}
END_TEST

START_TEST(test_sandbox_run_misuse)
{
  compile_service(0, 0);
  ck_assert_int_eq(flow__run_invoke(sb, 1, NULL, NULL, &err), FLOW_EMISUSE);
  ck_assert_int_eq(flow__run_end(sb, NULL, NULL, &err), FLOW_EMISUSE);
  flow__run_abort(sb);
  flow__run_abort(NULL);
  /* eval accepts flow.call as a handler would, and drops the request. */
  ck_assert_int_eq(eval("flow.call('a.b')", "t", NULL, 0), 0);
}
END_TEST

static Suite *
sandbox_suite(void)
{
  Suite *s = suite_create("sandbox");
  TCase *tc = tcase_create("env");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_sandbox_new_and_free);
  tcase_add_test(tc, test_sandbox_globals_are_whitelisted);
  tcase_add_test(tc, test_sandbox_escapes_are_nil);
  tcase_add_test(tc, test_sandbox_load_refuses_bytecode);
  tcase_add_test(tc, test_sandbox_load_text);
  tcase_add_test(tc, test_sandbox_gc_metamethod_refused);
  tcase_add_test(tc, test_sandbox_endless_loop_is_killed);
  tcase_add_test(tc, test_sandbox_pcall_cannot_swallow_the_kill);
  tcase_add_test(tc, test_sandbox_coroutines_are_budgeted);
  tcase_add_test(tc, test_sandbox_memory_hog_is_killed);
  tcase_add_test(tc, test_sandbox_c_loops_are_charged);
  tcase_add_test(tc, test_sandbox_cpu_budget);
  tcase_add_test(tc, test_sandbox_log_budget);
  tcase_add_test(tc, test_sandbox_damaged_only_after_a_kill);
  tcase_add_test(tc, test_sandbox_host_out_of_memory);
  tcase_add_test(tc, test_sandbox_tiny_memory_limit);
  tcase_add_test(tc, test_sandbox_eval_results);
  tcase_add_test(tc, test_sandbox_eval_errors_name_chunk_and_line);
  tcase_add_test(tc, test_sandbox_log_and_print);
  tcase_add_test(tc, test_sandbox_flow_now_in_eval);
  tcase_add_test(tc, test_sandbox_date_helpers);
  tcase_add_test(tc, test_sandbox_eval_random_is_repeatable);
  tcase_add_test(tc, test_sandbox_flow_list_and_null);
  tcase_add_test(tc, test_sandbox_match);
  tcase_add_test(tc, test_sandbox_match_ignores_a_replaced_find);
  tcase_add_test(tc, test_sandbox_run_handler);
  tcase_add_test(tc, test_sandbox_run_fail_refuses_even_when_caught);
  tcase_add_test(tc, test_sandbox_run_handler_must_return_a_name);
  tcase_add_test(tc, test_sandbox_run_guard_truth);
  tcase_add_test(tc, test_sandbox_run_budget_message);
  tcase_add_test(tc, test_sandbox_run_data_must_stay_a_table);
  tcase_add_test(tc, test_sandbox_run_empty_list_field);
  tcase_add_test(tc, test_sandbox_run_random_is_seeded_per_case);
  tcase_add_test(tc, test_sandbox_run_bad_action_name);
  tcase_add_test(tc, test_sandbox_run_enter_sees_new_state);
  tcase_add_test(tc, test_sandbox_run_memory_limit);
  tcase_add_test(tc, test_sandbox_run_refuses_deep_input);
  tcase_add_test(tc, test_sandbox_run_misuse);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(sandbox_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
