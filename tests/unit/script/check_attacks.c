/*
 * Attacks on the sandbox: what service scripts written to escape, hang,
 * crash or poison it run into.  Every test is one attack, run as the
 * handler of an event (or while loading, or in an eval) in a sandbox with
 * small budgets, and checks three things:
 *
 *   1. the exact outcome: refused (which code, which message), killed
 *      (which budget ran out), or no effect (what the script then sees);
 *   2. that the run ended within twice its CPU budget (measured with the
 *      thread's CPU clock around the whole run);
 *   3. that the same sandbox then runs a normal event correctly.
 *
 * Many attacks come from how real Lua sandboxes were broken; the comment
 * above each test names the source:
 *
 *   - Redis: CVE-2015-4335 (loadstring of crafted bytecode), issue #2854
 *     (setmetatable(_G, nil) undoing the globals protection), issue #11030
 *     (a returned table whose __index raises, read by the host),
 *     CVE-2021-32626 (scripts returning huge numbers of values),
 *     CVE-2022-24735 and CVE-2025-46818 (changing shared globals or the
 *     metatables of basic types to run code in another user's context),
 *     CVE-2022-24834 (huge strings through the JSON encoder),
 *     CVE-2022-36021 (patterns that take forever), CVE-2025-46817
 *     (unpack with a range that overflows), CVE-2025-49844 (the parser
 *     under memory pressure).
 *   - Wikimedia Scribunto / LuaSandbox: pcall and xpcall must not catch
 *     the timeout, tostring must not show addresses, string.match must be
 *     interruptible.
 *   - Roblox Luau: built-in libraries and globals are read-only so that one
 *     script cannot wrap print or string functions to spy on another;
 *     string.rep and table.concat as memory and time bombs.
 *   - lua-users "SandBoxes", OpenComputers (the shared string metatable),
 *     and the Lua reference manual's own notes on __gc, __close and
 *     coroutines.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attack_util.h"

#define READ_ONLY "attempt to change a read-only table"

/* ---- escapes ------------------------------------------------------------- */

/* lua-users SandBoxes: the dangerous libraries are simply not there. */
START_TEST(test_attacks_no_io_os_debug_package)
{
  result r = attack("case.data.s = table.concat({ type(io), type(os), "
                    "type(debug), type(package), type(require), "
                    "type(dofile), type(loadfile), type(collectgarbage), "
                    "type(string.dump), type(rawequal) }, ',')");
  no_effect(&r, "{\"s\":\"nil,nil,nil,nil,nil,nil,nil,nil,nil,function\"}");
}
END_TEST

START_TEST(test_attacks_os_execute_is_a_nil_call)
{
  result r = attack("os.execute('touch /tmp/pwned')");
  refused_with(&r, FLOW_ESCRIPT, "attempt to index a nil value (global "
                                 "'os')");
}
END_TEST

/* Redis CVE-2015-4335: loadstring of crafted bytecode reads and writes
   memory at will.  Asking for binary mode changes nothing. */
START_TEST(test_attacks_load_bytecode_mode_b)
{
  result r = attack("local f, e = load('\\27Lua\\84\\0\\25\\147\\r\\n\\26"
                    "\\n', 'x', 'b') case.data.s = tostring(f) .. ': ' .. e");
  no_effect(&r, "{\"s\":\"nil: attempt to load a binary chunk (mode is "
                "'t')\"}");
}
END_TEST

START_TEST(test_attacks_load_bytecode_from_reader)
{
  result r = attack("local parts = { '\\27', 'Lua', '\\84' } local i = 0 "
                    "local f, e = load(function() i = i + 1 return parts[i] "
                    "end, 'x', 'bt') case.data.s = e");
  no_effect(&r, "{\"s\":\"attempt to load a binary chunk (mode is 't')\"}");
}
END_TEST

/* string.dump would hand out bytecode to tamper with and reload. */
START_TEST(test_attacks_string_dump_is_gone)
{
  result r = attack("return string.dump(function() end)");
  refused_with(&r, FLOW_ESCRIPT, "attempt to call a nil value (field "
                                 "'dump')");
}
END_TEST

/* load with an environment: the chunk gets only what it is given, and
   the default environment is the frozen globals. */
START_TEST(test_attacks_load_env_tricks)
{
  result r = attack("local f = load('return string, print', 'c', 't', {}) "
                    "local a, b = f() "
                    "local env = load('return _ENV')() "
                    "case.data.s = tostring(a) .. tostring(b) .. "
                    "tostring(env == _G) "
                    "load('x = 1')()");
  refused_with(&r, FLOW_ESCRIPT, READ_ONLY);
}
END_TEST

/* OpenComputers #236, Redis CVE-2025-46818: the string metatable is
   shared by every string; changing it changes what other code runs. */
START_TEST(test_attacks_string_metatable_index)
{
  result r = attack("getmetatable('').__index = { upper = function() "
                    "return 'pwned' end }");
  refused_with(&r, FLOW_ESCRIPT, READ_ONLY);
}
END_TEST

START_TEST(test_attacks_string_library_reached_through_a_string)
{
  result r = attack("local lib = getmetatable('').__index "
                    "lib.upper = function() return 'pwned' end");
  refused_with(&r, FLOW_ESCRIPT, READ_ONLY);
}
END_TEST

START_TEST(test_attacks_string_metatable_arithmetic)
{
  result r = attack("getmetatable('').__add = function() return 'pwned' "
                    "end");
  refused_with(&r, FLOW_ESCRIPT, READ_ONLY);
}
END_TEST

/* Luau: a script wraps a global function to spy on what others pass. */
START_TEST(test_attacks_replace_global_function)
{
  result r = attack("local real = flow.log flow.log = function(...) "
                    "return real('spied', ...) end");
  refused_with(&r, FLOW_ESCRIPT, READ_ONLY);
}
END_TEST

START_TEST(test_attacks_g_g_write)
{
  result r = attack("_G._G._G.x = 1");
  refused_with(&r, FLOW_ESCRIPT, READ_ONLY);
}
END_TEST

/* Redis #2854: setmetatable(_G, nil) lifted the globals protection. */
START_TEST(test_attacks_setmetatable_on_globals)
{
  result r = attack("setmetatable(_G, nil)");
  refused_with(&r, FLOW_ESCRIPT, "cannot change a protected metatable");
}
END_TEST

START_TEST(test_attacks_getmetatable_of_frozen_is_locked)
{
  result r = attack("case.data.s = tostring(getmetatable(_G)) .. ',' .. "
                    "tostring(getmetatable(string)) .. ',' .. "
                    "tostring(getmetatable(flow))");
  no_effect(&r, "{\"s\":\"false,false,false\"}");
}
END_TEST

START_TEST(test_attacks_rawset_into_frozen)
{
  result r = attack("rawset(string, 'upper', function() return 'x' end)");
  refused_with(&r, FLOW_ESCRIPT, READ_ONLY);
}
END_TEST

/* Frozen tables read as their contents through every raw function, and
   no table reachable from the globals can be written. */
START_TEST(test_attacks_every_reachable_table_is_read_only)
{
  result r = attack(
      "local seen, tables, writable = {}, 0, 0\n"
      "local function walk(t)\n"
      "  if seen[t] then return end\n"
      "  seen[t] = true tables = tables + 1\n"
      "  if pcall(rawset, t, '__probe', 1) then writable = writable + 1 end\n"
      "  if pcall(function() t.__probe = 1 end) then writable = writable + 1 "
      "end\n"
      "  for k, v in pairs(t) do\n"
      "    if type(v) == 'table' then walk(v) end\n"
      "  end\n"
      "  local mt = getmetatable(t)\n"
      "  if type(mt) == 'table' then walk(mt) end\n"
      "end\n"
      "walk(_G) walk(getmetatable(''))\n"
      "case.data.s = writable .. ' of ' .. tostring(tables >= 8) .. ' ' .. "
      "rawlen(table.pack(1, 2)) .. ' ' .. tostring(rawget(string, "
      "'upper') == string.upper) .. ' ' .. tostring(next(math) ~= nil)");
  no_effect(&r, "{\"s\":\"0 of true 2 true true\"}");
}
END_TEST

/* The Lua manual: a __gc runs whenever the collector chooses, outside any
   budget (even while the state closes).  Finalizers are refused, even
   __gc = false, which would mark the object for one added later. */
START_TEST(test_attacks_gc_finalizer)
{
  result r = attack("setmetatable({}, { __gc = function() while true do "
                    "end end })");
  refused_with(&r, FLOW_ESCRIPT, "__gc finalizers are not available");
}
END_TEST

START_TEST(test_attacks_gc_marked_then_set)
{
  result r = attack("local mt = { __gc = false } setmetatable({}, mt) "
                    "mt.__gc = function() while true do end end");
  refused_with(&r, FLOW_ESCRIPT, "__gc finalizers are not available");
}
END_TEST

/* A class made while loading, its __gc added after setmetatable (which
   Lua does not mark): the first setmetatable made Class read-only, so the
   __gc cannot be added, and the script is refused at that line. */
START_TEST(test_attacks_gc_through_a_frozen_class)
{
  int rc = compile_target(
      "local Class = {} Class.__index = Class\n"
      "local first = setmetatable({}, Class)\n"
      "Class.__gc = function() while true do end end\n"
      "function Class.new() return setmetatable({}, Class) end\n",
      "Class.new()");
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_msg(strstr(err.msg, "target.lua:3: attempt to change a "
                                "metatable") != NULL,
                "%s", err.msg);
  /* A frozen class with a __gc it was given before its first use as a
     metatable is refused where a handler makes an object of it. */
  result r = attack_with(
      "local Class = { __gc = function() while true do end end }\n"
      "function Class.new() return setmetatable({}, Class) end\n",
      "Class.new()");
  refused_with(&r, FLOW_ESCRIPT, "__gc finalizers are not available");
}
END_TEST

/* A coroutine made while loading would carry its stack (and any state in
   it) from one case to the next: refused at load. */
START_TEST(test_attacks_coroutine_kept_from_load)
{
  int rc = compile_target(
      "local counter = coroutine.wrap(function()\n"
      "  local n = 0\n"
      "  while true do n = n + 1 coroutine.yield(n) end\n"
      "end)\n"
      "counter()\n",
      "case.data.n = counter()");
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg, "target.lua:3: a coroutine made while loading "
                            "cannot be kept for later events (create it "
                            "inside the handler that uses it)");
  /* So is a gmatch iterator, which keeps its position. */
  rc = compile_target("local words = ('a b c'):gmatch('%a')",
                      "case.data.s = words()");
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_msg(strstr(err.msg, "an iterator made while loading") != NULL,
                "%s", err.msg);
  /* And the same service without them loads and serves events. */
  ck_assert_int_eq(compile_target("", "case.data.s = 'x'"), 0);
  normal_event_works();
}
END_TEST

/* ---- nothing survives from one case to the next -------------------------- */

START_TEST(test_attacks_upvalue_counter_reset)
{
  /* `count` changes during a run but every case starts from 0. */
  compile_target("local count = 0\nlocal seen = {}\n",
                 "count = count + 1 seen = { count } "
                 "case.data.n = count * 10 + #seen");
  for (int i = 0; i < 3; i++) {
    result r = run_event("attack");
    no_effect(&r, "{\"n\":11}");
  }
  normal_event_works();
}
END_TEST

START_TEST(test_attacks_global_written_by_one_case)
{
  result r = attack("leaked = 'from case 1'");
  refused_with(&r, FLOW_ESCRIPT, READ_ONLY);
  ck_assert_msg(strstr(r.msg, "target.lua:") == r.msg, "%s", r.msg);
}
END_TEST

START_TEST(test_attacks_table_from_load_changed_by_a_case)
{
  result r = attack_with("local defaults = { crew = 'north' }\n",
                         "defaults.crew = 'south'");
  refused_with(&r, FLOW_ESCRIPT, READ_ONLY);
  /* Reading it, and copying it into the case, still works. */
  compile_target("local defaults = { crew = 'north', list = { 1, 2 } }\n",
                 "case.data.s = defaults.crew case.data.list = "
                 "defaults.list");
  r = run_event("attack");
  no_effect(&r, "{\"list\":[1,2],\"s\":\"north\"}");
}
END_TEST

/* Two services, two states: what one does to its own libraries while
   loading is not seen by the other (Redis CVE-2022-24735). */
START_TEST(test_attacks_cross_service_library_poisoning)
{
  compile_target("string.upper = function() return 'pwned' end\n"
                 "string.x = 'leak'\n"
                 "getmetatable('').__index = function(s, k) return "
                 "function() return 'pwned' end end\n",
                 "case.data.s = ('a'):upper()");
  result r = run_event("attack");
  no_effect(&r, "{\"s\":\"pwned\"}");
  /* The service poisoned only itself: its normal event sees its own
     string.upper, for every case. */
  r = run_event("normal");
  ck_assert_msg(strstr(r.data, "\"s\":\"pwned5\"") != NULL, "%s", r.data);
  /* Another service in its own sandbox. */
  flow__sandbox *other = make_sb();
  flow__service *osvc = flow__calloc(&al, 1, sizeof *osvc);
  const char *src = "return { name = 'other', version = 1, initial = 'a', "
                    "states = { a = { final = true } } }";
  ck_assert_int_eq(
      flow__service_compile(osvc, other, src, strlen(src), "o.lua", &err), 0);
  json_t *j = NULL;
  const char *code = "return { ('a'):upper(), tostring(string.x) }";
  /* Eval runs in a fresh sandbox normally; use the other service's. */
  ck_assert_int_eq(flow__sandbox_eval(other, code, strlen(code), "o", &j,
                                      &err),
                   0);
  char *d = json_dumps(j, JSON_COMPACT);
  ck_assert_str_eq(d, "[\"A\",\"nil\"]");
  free(d);
  json_decref(j);
  flow__service_free(&al, osvc);
  flow__sandbox_free(other);
}
END_TEST

/* ---- CPU in Lua code ----------------------------------------------------- */

START_TEST(test_attacks_endless_loop)
{
  result r = attack("while true do end");
  killed_by(&r, "instructions");
}
END_TEST

/* Scribunto: pcall must not catch the timeout. */
START_TEST(test_attacks_pcall_wrapped_loop)
{
  result r = attack("while true do pcall(function() while true do end "
                    "end) end");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_pcall_then_carry_on)
{
  result r = attack("local ok, e = pcall(function() while true do end end) "
                    "case.data.s = 'survived: ' .. tostring(e)");
  killed_by(&r, "instructions");
}
END_TEST

/* The kill is raised inside the count hook, where Lua would run xpcall's
   message handler with hooks off: a looping handler would never stop. */
START_TEST(test_attacks_xpcall_handler_loops)
{
  result r = attack("xpcall(function() while true do end end, "
                    "function(e) while true do end end) "
                    "case.data.s = 'survived'");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_close_handler_loops)
{
  result r = attack("local guard <close> = setmetatable({}, { __close = "
                    "function() while true do end end }) "
                    "while true do end");
  killed_by(&r, "instructions");
}
END_TEST

/* A coroutine killed by the hook dies with hooks off; closing it (as
   coroutine.wrap does on an error) would run its __close unbudgeted. */
START_TEST(test_attacks_coroutine_close_after_kill)
{
  result r = attack(
      "local co = coroutine.create(function()\n"
      "  local guard <close> = setmetatable({}, { __close = function()\n"
      "    while true do end end })\n"
      "  while true do end\n"
      "end)\n"
      "pcall(coroutine.resume, co)\n"
      "pcall(coroutine.close, co)\n"
      "local w = coroutine.wrap(function()\n"
      "  local g <close> = setmetatable({}, { __close = function()\n"
      "    while true do end end })\n"
      "  while true do end\n"
      "end)\n"
      "pcall(w)\n"
      "case.data.s = 'survived'");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_coroutine_loops)
{
  result r = attack("local co = coroutine.wrap(function() while true do "
                    "pcall(coroutine.yield) end end) "
                    "while true do pcall(co) end");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_deep_recursion)
{
  result r = attack("local function f(n) return 1 + f(n + 1) end f(1)");
  killed_by(&r, "memory");
}
END_TEST

START_TEST(test_attacks_recursion_through_pcall)
{
  /* Each level is a C call: Lua stops at its C-stack limit, pcall catches
     that, and everything unwinds normally. */
  result r = attack("local depth = 0 local function f() depth = depth + 1 "
                    "pcall(f) end f() case.data.n = depth > 100 and 1 or 0");
  no_effect(&r, "{\"n\":1}");
}
END_TEST

START_TEST(test_attacks_recursion_through_metamethods)
{
  result r = attack("local t = setmetatable({}, { __index = function(t, k) "
                    "return t[k .. 'x'] end }) return t.a");
  refused_with(&r, FLOW_ESCRIPT, "stack overflow");
}
END_TEST

/* Expensive instructions: one comparison of two 1 MiB strings is a
   single instruction; only the CPU clock sees them. */
START_TEST(test_attacks_cpu_long_string_compare)
{
  result r = attack("local a = 'x' for i = 1, 20 do a = a .. a end "
                    "local b = a .. 'y' while a < b do end");
  killed_by(&r, "cpu time");
}
END_TEST

/* A for loop converts a numeric string limit in the VM, uncharged. */
START_TEST(test_attacks_cpu_for_limit_conversion)
{
  result r = attack("local s = '1' for i = 1, 20 do s = s .. s end "
                    "while true do for i = 1, s do break end end");
  killed_by(&r, "cpu time");
}
END_TEST

/* ---- CPU inside library functions ---------------------------------------- */

/* Redis CVE-2022-36021, Scribunto: a pattern that backtracks forever. */
START_TEST(test_attacks_pattern_backtracking)
{
  result r = attack("string.find(('a'):rep(5000), ('a*'):rep(50) .. 'b')");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_pattern_backtracking_in_match_and_gsub)
{
  result r = attack("local s = ('a'):rep(3000) "
                    "pcall(string.match, s, ('a?'):rep(3000) .. "
                    "('a'):rep(3000)) "
                    "s:gsub(('.-'):rep(30) .. 'b', 'x')");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_plain_find_long_needle)
{
  result r = attack("local hay = ('a'):rep(200000) "
                    "local needle = ('a'):rep(1000) .. 'b' "
                    "case.data.s = tostring(hay:find(needle, 1, true))");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_gsub_huge_n)
{
  result r = attack("local s = ('ab'):rep(10000) while true do "
                    "s:gsub('', '-', math.maxinteger) end");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_gmatch_loop)
{
  result r = attack("local s = ('word '):rep(10000) while true do "
                    "for w in s:gmatch('%a+') do end end");
  killed_by(&r, "instructions");
}
END_TEST

/* Luau: table.concat of a big table is one call. */
START_TEST(test_attacks_table_concat_huge)
{
  result r = attack("local t = {} for i = 1, 20000 do t[i] = 'xxxxxxxxxx' "
                    "end while true do table.concat(t, ',') end");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_table_sort_slow_comparator)
{
  result r = attack("local t = {} for i = 1, 5000 do t[i] = i * 7919 % "
                    "5003 end "
                    "table.sort(t, function(a, b) for i = 1, 50 do end "
                    "return a < b end)");
  killed_by(&r, "instructions");
}
END_TEST

/* A comparator that lies makes stock Lua's quicksort read past the end
   of the array or raise; the merge sort finishes, in n log n steps. */
START_TEST(test_attacks_table_sort_inconsistent_comparator)
{
  result r = attack("local t = {} for i = 1, 500 do t[i] = i % 7 end "
                    "table.sort(t, function(a, b) return true end) "
                    "table.sort(t, function(a, b) return math.random() < "
                    "0.5 end) case.data.n = #t");
  no_effect(&r, "{\"n\":500}");
}
END_TEST

START_TEST(test_attacks_table_move_huge_range)
{
  result r = attack("table.move({}, 1, math.maxinteger, 2)");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_string_format_huge_width)
{
  result r = attack("return string.format('%099999d', 1)");
  refused_with(&r, FLOW_ESCRIPT, "invalid conversion");
}
END_TEST

START_TEST(test_attacks_string_format_big_strings)
{
  result r = attack("local s = ('x'):rep(100000) while true do "
                    "string.format('%s%s', s, s) end");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_utf8_huge_input)
{
  result r = attack("local s = ('\\u{10FFFF}'):rep(50000) while true do "
                    "utf8.len(s) for _, c in utf8.codes(s) do end end");
  killed_by(&r, "instructions");
}
END_TEST

START_TEST(test_attacks_tostring_of_huge_numbers)
{
  /* Numbers print in a bounded space; converting a huge numeric string
     is charged by its length. */
  result r = attack("case.data.s = tostring(1e308) .. ' ' .. "
                    "string.format('%.99f', 1e308):len() .. ' ' .. "
                    "tostring(-0.0) .. ' ' .. tostring(math.mininteger)");
  no_effect(&r, "{\"s\":\"1e+308 409 -0.0 -9223372036854775808\"}");
  r = attack("local s = ('9'):rep(200000) while true do "
             "local n = tonumber(s) + s end");
  killed_by(&r, "instructions");
}
END_TEST

/* ---- memory -------------------------------------------------------------- */

START_TEST(test_attacks_string_doubling)
{
  result r = attack("local s = 'x' while true do s = s .. s end");
  killed_by(&r, "memory");
}
END_TEST

START_TEST(test_attacks_table_growth)
{
  result r = attack("local t = {} local i = 0 while true do i = i + 1 "
                    "t[i] = {} end");
  killed_by(&r, "memory");
}
END_TEST

START_TEST(test_attacks_closures)
{
  result r = attack("local t = {} while true do local x = #t "
                    "t[#t + 1] = function() return x end end");
  killed_by(&r, "memory");
}
END_TEST

START_TEST(test_attacks_coroutine_stacks)
{
  result r = attack("local t = {} while true do "
                    "t[#t + 1] = coroutine.create(function() end) end");
  killed_by(&r, "memory");
}
END_TEST

/* Luau: string.rep as a memory bomb is refused before it allocates. */
START_TEST(test_attacks_string_rep_huge)
{
  result r = attack("local s = string.rep('x', 1e12)");
  killed_by(&r, "memory");
}
END_TEST

START_TEST(test_attacks_memory_error_caught_by_pcall)
{
  result r = attack("local ok, e = pcall(function() local s = 'x' "
                    "while true do s = s .. s end end) "
                    "case.data.s = 'survived: ' .. tostring(e)");
  killed_by(&r, "memory");
}
END_TEST

/* Every byte gsub writes is charged, so a result that would outgrow the
   memory budget runs out of instructions first. */
START_TEST(test_attacks_gsub_result_grows)
{
  result r = attack("local s = ('a'):rep(100000) "
                    "s = s:gsub('a', ('b'):rep(100))");
  killed_by(&r, "instructions");
}
END_TEST

/* flow.call requests are held outside Lua; they count anyway.  (Big
   ones, so that memory runs out before the count of actions an event may
   request, which stops a flood of small ones.) */
START_TEST(test_attacks_flow_call_flood)
{
  result r = attack("local args = { text = ('x'):rep(60000) } "
                    "while true do flow.call('notify.sms', args) end");
  killed_by(&r, "memory");
  r = attack("while true do flow.call('notify.sms', { n = 1 }) end");
  refused_with(&r, FLOW_ESCRIPT, "an event may request at most 100 "
                                 "actions");
}
END_TEST

/* Redis CVE-2025-49844: the parser under memory pressure. */
START_TEST(test_attacks_parser_under_memory_pressure)
{
  result r = attack("local a = 'x' for i = 1, 20 do a = a .. a end "
                    "local b, c = a .. 'b', a .. 'c' "
                    "local src = 'return {' .. ('{},'):rep(60000) .. '}' "
                    "local f = load(src) case.data.n = #f()");
  killed_by(&r, "memory");
}
END_TEST

/* ---- stack exhaustion and hostile values --------------------------------- */

/* Redis CVE-2021-32626, CVE-2025-46817: too many values on the stack,
   and unpack with a range that overflows a C int. */
START_TEST(test_attacks_unpack_overflow)
{
  result r = attack("local ok1, e1 = pcall(table.unpack, {}, -2147483648, "
                    "2147483647) "
                    "local ok2, e2 = pcall(table.unpack, {}, "
                    "math.mininteger, math.maxinteger) "
                    "case.data.s = e1 .. '; ' .. e2");
  no_effect(&r, "{\"s\":\"too many results to unpack; too many results to "
                "unpack\"}");
}
END_TEST

START_TEST(test_attacks_string_byte_many_results)
{
  /* 300,000 results need a Lua stack bigger than the memory budget. */
  result r = attack("local s = ('x'):rep(300000) "
                    "local ok, e = pcall(string.byte, s, 1, -1) "
                    "case.data.s = tostring(e)");
  killed_by(&r, "memory");
}
END_TEST

START_TEST(test_attacks_deep_table_as_data)
{
  result r = attack("local t = {} for i = 1, 10000 do t = { t } end "
                    "case.data.extra = { deep = t }");
  refused_with(&r, FLOW_ESCRIPT, "nested more than 100 levels");
}
END_TEST

START_TEST(test_attacks_cyclic_table_to_flow_call)
{
  result r = attack("local t = {} t.self = t flow.call('notify.sms', t)");
  refused_with(&r, FLOW_ESCRIPT, "refers to itself");
}
END_TEST

/* Redis #11030: the host read a returned table through its __index,
   which raised outside any pcall.  Everything leaving the sandbox is read
   raw: metamethods are not run, a lying __pairs or __len is ignored. */
START_TEST(test_attacks_data_with_hostile_metamethods)
{
  result r = attack("case.data.extra = setmetatable({ a = 1 }, { "
                    "__index = function() while true do end end, "
                    "__pairs = function() error('no') end, "
                    "__len = function() return 1e9 end })");
  no_effect(&r, "{\"extra\":{\"a\":1}}");
}
END_TEST

START_TEST(test_attacks_error_object_tostring_loops)
{
  result r = attack("error(setmetatable({}, { __tostring = function() "
                    "while true do end end, __index = function() "
                    "while true do end end }))");
  refused_with(&r, FLOW_ESCRIPT, "target.lua:7: error object of type table "
                                 "(use error(\"message\"))");
}
END_TEST

START_TEST(test_attacks_error_with_table_and_nil)
{
  result r = attack("error({ code = 42 })");
  refused_with(&r, FLOW_ESCRIPT, "error object of type table");
  compile_target("", "error(nil)");
  r = run_event("attack");
  refused_with(&r, FLOW_ESCRIPT, "error object of type nil");
  normal_event_works();
}
END_TEST

/* A megabyte of error message: the library's message is cut to its
   buffer, still says where the error was, stays one line, and is not cut
   in the middle of a character (each \u00e9 is two bytes, and the cut
   falls on an odd byte). */
START_TEST(test_attacks_huge_error_message)
{
  result r = attack("error(('\\u{E9}'):rep(500000))");
  ck_assert_int_eq(r.rc, FLOW_ESCRIPT);
  ck_assert_uint_lt(r.msg_len, FLOW__ERRMSG_MAX); /* ended in its buffer */
  ck_assert_uint_gt(r.msg_len, FLOW__ERRMSG_MAX / 2); /* and not emptied */
  ck_assert_msg(strncmp(r.msg, "target.lua:", 11) == 0, "%.80s", r.msg);
  ck_assert_msg(strchr(r.msg, '\n') == NULL, "more than one line");
  ck_assert_msg(utf8_ok(r.msg), "cut inside a character: ...%s",
                r.msg + r.msg_len - 8);
  ck_assert(strstr(r.msg, "\xC3\xA9\xC3\xA9\xC3\xA9") != NULL);
}
END_TEST

/* Redis CVE-2022-24834: a huge string through the JSON encoder comes out
   whole and exact. */
START_TEST(test_attacks_huge_string_to_json)
{
  result r = attack("case.data.s = ('\\u{E9}'):rep(400000)");
  ck_assert_msg(r.rc == 0, "%s", r.msg);
  ck_assert_uint_eq(r.s_len, 800000);
  ck_assert(r.s_all_e_acute);
  ck_assert_uint_eq(r.data_len, strlen("{\"s\":\"\"}") + 800000);
}
END_TEST

/* ---- log output ---------------------------------------------------------- */

START_TEST(test_attacks_log_flood)
{
  result r = attack("while true do flow.log(('x'):rep(1000)) end");
  killed_by(&r, "log output");
  ck_assert_str_eq(strstr(r.msg, "flow.log"),
                   "flow.log wrote more than 64 KiB of log output");
  ck_assert_int_le(log_lines, 66);
}
END_TEST

START_TEST(test_attacks_print_flood_caught)
{
  result r = attack("for i = 1, 1e6 do pcall(print, ('y'):rep(2000)) end "
                    "case.data.s = 'survived'");
  killed_by(&r, "log output");
}
END_TEST

/* ---- determinism --------------------------------------------------------- */

/* Scribunto: tostring shows no addresses. */
START_TEST(test_attacks_tostring_shows_no_address)
{
  result r = attack("case.data.s = table.concat({ tostring({}), "
                    "tostring(print), tostring(function() end), "
                    "tostring(coroutine.create(print)), tostring(flow.null), "
                    "string.format('%s', {}), tostring(setmetatable({}, "
                    "{ __name = 'Thing' })) }, ',')");
  no_effect(&r, "{\"s\":\"table,function,function,thread,userdata,table,"
                "Thing\"}");
}
END_TEST

START_TEST(test_attacks_format_p_refused)
{
  result r = attack("return string.format('%p', {})");
  refused_with(&r, FLOW_ESCRIPT, "%p is not available in service scripts");
}
END_TEST

/* What a handler computes from pairs order, table.sort of equal keys and
   math.random, in one process. */
static const char order_body[] =
    "local t = {}\n"
    "for i = 1, 200 do t['key' .. i] = i t[i * 7] = i end\n"
    "t[true] = 1 t[2.5] = 1 t[-3] = 1\n"
    "local seen = {}\n"
    "for k, v in pairs(t) do seen[#seen + 1] = tostring(k) end\n"
    "local recs = {}\n"
    "for i = 1, 300 do recs[i] = { k = i % 3, i = i } end\n"
    "table.sort(recs, function(a, b) return a.k < b.k end)\n"
    "for i = 1, 300, 37 do seen[#seen + 1] = recs[i].i end\n"
    "local k, v = next(t)\n"
    "seen[#seen + 1] = tostring(k) .. math.random(1000000)\n"
    "case.data.s = table.concat(seen, ',')\n";

/* Runs the order attack in this process and writes case.data.s, then the
   first keys of a stock Lua table in raw order, to fd. */
static void
order_child(int fd, int perturb)
{
  /* Lua seeds its string hashes with the address of the state (and the
     time): states made after a few others get other seeds. */
  flow__sandbox *extra[4];
  lua_State *stock_extra[4];
  for (int i = 0; i < perturb; i++) {
    extra[i] = make_sb();
    stock_extra[i] = luaL_newstate();
  }
  ck_assert_int_eq(compile_target("", order_body), 0);
  result r = run_event("attack");
  ck_assert_msg(r.rc == 0, "%s", r.msg);
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_dostring(L, "local t = {} for i = 1, 200 do t['key' .. i] = i end "
                   "local s = {} for k in next, t do s[#s + 1] = k "
                   "if #s == 20 then break end end "
                   "return table.concat(s, ',')");
  char line[8192];
  int n = snprintf(line, sizeof line, "%s\n%s\n", r.data, lua_tostring(L, -1));
  ck_assert(write(fd, line, (size_t)n) == n);
  lua_close(L);
  for (int i = 0; i < perturb; i++) {
    flow__sandbox_free(extra[i]);
    lua_close(stock_extra[i]);
  }
}

static char *
read_all(int fd)
{
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  ssize_t got;
  while ((got = read(fd, buf + n, cap - 1 - n)) > 0)
    n += (size_t)got;
  buf[n] = 0;
  return buf;
}

/* The same handler, in two processes whose Lua hash seeds differ, gives
   the same case.data: pairs/next visit keys in a fixed order, table.sort
   is stable, math.random is seeded by the case. */
START_TEST(test_attacks_same_output_in_two_processes)
{
  char *out[2];
  for (int i = 0; i < 2; i++) {
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      close(p[0]);
      order_child(p[1], i == 0 ? 0 : 3);
      close(p[1]);
      flow__service_free(&al, svc);
      svc = NULL;
      flow__sandbox_free(sb);
      sb = NULL;
      _exit(0);
    }
    close(p[1]);
    out[i] = read_all(p[0]);
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  char *nl0 = strchr(out[0], '\n'), *nl1 = strchr(out[1], '\n');
  ck_assert_ptr_nonnull(nl0);
  ck_assert_ptr_nonnull(nl1);
  *nl0 = *nl1 = 0;
  /* Ours: identical. */
  ck_assert_str_eq(out[0], out[1]);
  ck_assert_msg(strstr(out[0], "\"s\":\"-3,2.5,7,14,21,") != NULL, "%s",
                out[0]);
  /* Stock Lua's raw order really differs between the two processes, so
     the comparison above means something. */
  ck_assert_str_ne(nl0 + 1, nl1 + 1);
  free(out[0]);
  free(out[1]);
  /* And this process can still run the normal event. */
  compile_target("", "return");
  normal_event_works();
}
END_TEST

START_TEST(test_attacks_pairs_refuses_unordered_keys)
{
  result r = attack("local t = { [{}] = 1 } for k in pairs(t) do end");
  refused_with(&r, FLOW_ESCRIPT, "cannot visit the keys of this table in a "
                                 "fixed order: one of them is a table");
}
END_TEST

/* ---- budgets from the script --------------------------------------------- */

START_TEST(test_attacks_load_time_endless_loop)
{
  int rc = compile_target("while true do end", "return");
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the script target.lua ran "
                            "more than 1000000 instructions (an endless "
                            "loop?)");
  ck_assert_int_eq(compile_target("", "return"), 0);
  normal_event_works();
}
END_TEST

START_TEST(test_attacks_budget_above_ceiling)
{
  /* A script cannot give itself more than the host allows. */
  const char *src =
      "return { name = 'greedy', version = 1, initial = 'a',\n"
      "  budget = { cpu_ms = 50,\n"
      "             instructions = 1e12 },\n"
      "  states = { a = { final = true } } }\n";
  sb = make_sb();
  svc = flow__calloc(&al, 1, sizeof *svc);
  int rc = flow__service_compile(svc, sb, src, strlen(src), "g.lua", &err);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg, "g.lua:3: budget.instructions is "
                            "1000000000000, more than this engine allows "
                            "(100000000); lower it, or ask the host to "
                            "raise script_instruction_max");
  flow__service_free(&al, svc);
  svc = NULL;
  flow__sandbox_free(sb);
  sb = NULL;
  ck_assert_int_eq(compile_target("", "return"), 0);
  normal_event_works();
}
END_TEST

START_TEST(test_attacks_budget_lowered_applies)
{
  const char *src =
      "return { name = 'frugal', version = 1, initial = 'a',\n"
      "  budget = { instructions = 5000, memory_mb = 2 },\n"
      "  states = { a = { on = { go = function() while true do end end,\n"
      "    ok = function(case) case.data.n = 1 end } } },\n"
      "  fields = { n = { type = 'integer' } } }\n";
  sb = make_sb();
  svc = flow__calloc(&al, 1, sizeof *svc);
  int rc = flow__service_compile(svc, sb, src, strlen(src), "f.lua", &err);
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert_uint_eq(sb->instr_limit, 5000);
  ck_assert_uint_eq(sb->mem_limit, (size_t)2 << 20);
  flow__case_view cv = { "1", "frugal", 1, "a", "open",
                         0,   0,        INT64_MIN, 1, 1 };
  json_t *data = json_object(), *pl = json_object();
  flow__event_view ev = { .name = "go", .payload = pl, .actor = NULL, .at = 0 };
  double t0 = cpu_ms();
  ck_assert_int_eq(flow__run_begin(sb, svc, &cv, data, &ev, &err), 0);
  const flow__state *st = flow__service_state(svc, "a");
  rc = flow__run_invoke(sb, flow__state_trans(st, "go")->handler, NULL, NULL,
                        &err);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the handler for 'go' in "
                            "f.lua ran more than 5000 instructions (an "
                            "endless loop?)");
  flow__run_abort(sb);
  ck_assert(cpu_ms() - t0 < 2 * CPU_MS);
  ev.name = "ok";
  ck_assert_int_eq(flow__run_begin(sb, svc, &cv, data, &ev, &err), 0);
  ck_assert_int_eq(flow__run_invoke(sb, flow__state_trans(st, "ok")->handler,
                                    NULL, NULL, &err),
                   0);
  ck_assert_int_eq(flow__run_end(sb, NULL, NULL, &err), 0);
  json_decref(data);
  json_decref(pl);
}
END_TEST

/* ---- eval ---------------------------------------------------------------- */

/* A 100,000-deep table returned from a chunk is a clear error, and the
   sandbox goes on. */
START_TEST(test_attacks_eval_returns_deep_table)
{
  /* 100,000 nested tables need more than the usual 4 MiB. */
  flow__sandbox_config cfg = { &al,   (size_t)32 << 20, INSTR, NULL, NULL,
                               NULL,  CPU_MS,           0,     0,    0,
                               0 };
  ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
  json_t *j = NULL;
  const char *code = "local t = {} for i = 1, 100000 do t = { t } end "
                     "return t";
  double t0 = cpu_ms();
  int rc = flow__sandbox_eval(sb, code, strlen(code), "deep", &j, &err);
  ck_assert(cpu_ms() - t0 < 2 * CPU_MS);
  ck_assert_int_eq(rc, FLOW_EINVAL);
  ck_assert_msg(strncmp(err.msg, "deep: result[1][1][1]", 21) == 0, "%s",
                err.msg);
  ck_assert_msg(strstr(err.msg, "...: nested more than 100 levels (or "
                                "refers to itself)") != NULL,
                "%s", err.msg);
  code = "return { ok = ('ok'):upper() }";
  ck_assert_int_eq(flow__sandbox_eval(sb, code, strlen(code), "e", &j, &err),
                   0);
  ck_assert_str_eq(json_string_value(json_object_get(j, "ok")), "OK");
  json_decref(j);
}
END_TEST

static Suite *
attacks_suite(void)
{
  Suite *s = suite_create("attacks");
  TCase *tc = tcase_create("attacks");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  /* escapes */
  tcase_add_test(tc, test_attacks_no_io_os_debug_package);
  tcase_add_test(tc, test_attacks_os_execute_is_a_nil_call);
  tcase_add_test(tc, test_attacks_load_bytecode_mode_b);
  tcase_add_test(tc, test_attacks_load_bytecode_from_reader);
  tcase_add_test(tc, test_attacks_string_dump_is_gone);
  tcase_add_test(tc, test_attacks_load_env_tricks);
  tcase_add_test(tc, test_attacks_string_metatable_index);
  tcase_add_test(tc, test_attacks_string_library_reached_through_a_string);
  tcase_add_test(tc, test_attacks_string_metatable_arithmetic);
  tcase_add_test(tc, test_attacks_replace_global_function);
  tcase_add_test(tc, test_attacks_g_g_write);
  tcase_add_test(tc, test_attacks_setmetatable_on_globals);
  tcase_add_test(tc, test_attacks_getmetatable_of_frozen_is_locked);
  tcase_add_test(tc, test_attacks_rawset_into_frozen);
  tcase_add_test(tc, test_attacks_every_reachable_table_is_read_only);
  tcase_add_test(tc, test_attacks_gc_finalizer);
  tcase_add_test(tc, test_attacks_gc_marked_then_set);
  tcase_add_test(tc, test_attacks_gc_through_a_frozen_class);
  tcase_add_test(tc, test_attacks_coroutine_kept_from_load);
  /* leakage */
  tcase_add_test(tc, test_attacks_upvalue_counter_reset);
  tcase_add_test(tc, test_attacks_global_written_by_one_case);
  tcase_add_test(tc, test_attacks_table_from_load_changed_by_a_case);
  tcase_add_test(tc, test_attacks_cross_service_library_poisoning);
  /* CPU in Lua */
  tcase_add_test(tc, test_attacks_endless_loop);
  tcase_add_test(tc, test_attacks_pcall_wrapped_loop);
  tcase_add_test(tc, test_attacks_pcall_then_carry_on);
  tcase_add_test(tc, test_attacks_xpcall_handler_loops);
  tcase_add_test(tc, test_attacks_close_handler_loops);
  tcase_add_test(tc, test_attacks_coroutine_close_after_kill);
  tcase_add_test(tc, test_attacks_coroutine_loops);
  tcase_add_test(tc, test_attacks_deep_recursion);
  tcase_add_test(tc, test_attacks_recursion_through_pcall);
  tcase_add_test(tc, test_attacks_recursion_through_metamethods);
  tcase_add_test(tc, test_attacks_cpu_long_string_compare);
  tcase_add_test(tc, test_attacks_cpu_for_limit_conversion);
  /* CPU in library functions */
  tcase_add_test(tc, test_attacks_pattern_backtracking);
  tcase_add_test(tc, test_attacks_pattern_backtracking_in_match_and_gsub);
  tcase_add_test(tc, test_attacks_plain_find_long_needle);
  tcase_add_test(tc, test_attacks_gsub_huge_n);
  tcase_add_test(tc, test_attacks_gmatch_loop);
  tcase_add_test(tc, test_attacks_table_concat_huge);
  tcase_add_test(tc, test_attacks_table_sort_slow_comparator);
  tcase_add_test(tc, test_attacks_table_sort_inconsistent_comparator);
  tcase_add_test(tc, test_attacks_table_move_huge_range);
  tcase_add_test(tc, test_attacks_string_format_huge_width);
  tcase_add_test(tc, test_attacks_string_format_big_strings);
  tcase_add_test(tc, test_attacks_utf8_huge_input);
  tcase_add_test(tc, test_attacks_tostring_of_huge_numbers);
  /* memory */
  tcase_add_test(tc, test_attacks_string_doubling);
  tcase_add_test(tc, test_attacks_table_growth);
  tcase_add_test(tc, test_attacks_closures);
  tcase_add_test(tc, test_attacks_coroutine_stacks);
  tcase_add_test(tc, test_attacks_string_rep_huge);
  tcase_add_test(tc, test_attacks_memory_error_caught_by_pcall);
  tcase_add_test(tc, test_attacks_gsub_result_grows);
  tcase_add_test(tc, test_attacks_flow_call_flood);
  tcase_add_test(tc, test_attacks_parser_under_memory_pressure);
  /* stack and hostile values */
  tcase_add_test(tc, test_attacks_unpack_overflow);
  tcase_add_test(tc, test_attacks_string_byte_many_results);
  tcase_add_test(tc, test_attacks_deep_table_as_data);
  tcase_add_test(tc, test_attacks_cyclic_table_to_flow_call);
  tcase_add_test(tc, test_attacks_data_with_hostile_metamethods);
  tcase_add_test(tc, test_attacks_error_object_tostring_loops);
  tcase_add_test(tc, test_attacks_error_with_table_and_nil);
  tcase_add_test(tc, test_attacks_huge_error_message);
  tcase_add_test(tc, test_attacks_huge_string_to_json);
  /* log */
  tcase_add_test(tc, test_attacks_log_flood);
  tcase_add_test(tc, test_attacks_print_flood_caught);
  /* determinism */
  tcase_add_test(tc, test_attacks_tostring_shows_no_address);
  tcase_add_test(tc, test_attacks_format_p_refused);
  tcase_add_test(tc, test_attacks_same_output_in_two_processes);
  tcase_add_test(tc, test_attacks_pairs_refuses_unordered_keys);
  /* budgets */
  tcase_add_test(tc, test_attacks_load_time_endless_loop);
  tcase_add_test(tc, test_attacks_budget_above_ceiling);
  tcase_add_test(tc, test_attacks_budget_lowered_applies);
  tcase_add_test(tc, test_attacks_eval_returns_deep_table);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(attacks_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
