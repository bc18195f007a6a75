/*
 * The library functions the sandbox rewrites or wraps (script_lib.c,
 * script_freeze.c) behave as stock Lua 5.4's: the same expressions run in
 * a plain Lua state and in a sandbox give the same values and the same
 * error messages.  Only what the sandbox changes on purpose differs, and
 * that is tested on its own: tostring of tables and functions, %p, the
 * order of pairs and next, table.sort with equal elements, and the
 * read-only globals.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script/script_int.h"
#include "testutil.h"

static test_alloc ta;
static flow__allocator al;
static flow__sandbox *sb;
static flow__err err;

static void
setup(void)
{
  memset(&ta, 0, sizeof ta);
  al = test_allocator(&ta);
  flow__sandbox_config cfg = { &al,  64u << 20, 200000000, NULL, NULL, NULL,
                               20000, 0,         0,         0,    0 };
  flow__err_clear(&err);
  ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
}

static void
teardown(void)
{
  flow__sandbox_free(sb);
  ck_assert_int_eq(ta.live_blocks, 0);
}

/* Every expression, in both, shown one per line. */
static const char driver[] =
    "local out = {}\n"
    "local function show(v)\n"
    "  if type(v) == 'string' then return ('%q'):format(v) end\n"
    "  if type(v) == 'table' or type(v) == 'function' or\n"
    "     type(v) == 'thread' then return type(v) end\n"
    "  return tostring(v)\n"
    "end\n"
    "for i, e in ipairs(EXPRS) do\n"
    "  local f = assert(load('return ' .. e, '=expr'))\n"
    "  local r = table.pack(pcall(f))\n"
    "  local t = {}\n"
    "  for k = 1, r.n do t[k] = show(r[k]) end\n"
    "  out[i] = e .. '  ->  ' .. table.concat(t, ' ')\n"
    "end\n"
    "return (table.concat(out, '\\n'):gsub('[\\128-\\255]', function(c)\n"
    "  return ('<%02X>'):format(c:byte()) end))\n";

static char *
stock(const char *code)
{
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  int rc = luaL_dostring(L, code);
  ck_assert_msg(rc == LUA_OK, "stock: %s", lua_tostring(L, -1));
  char *out = strdup(lua_tostring(L, -1));
  lua_close(L);
  return out;
}

static char *
ours(const char *code)
{
  json_t *j = NULL;
  int rc = flow__sandbox_eval(sb, code, strlen(code), "t", &j, &err);
  ck_assert_msg(rc == 0, "sandbox: %d %s", rc, err.msg);
  char *out = strdup(json_string_value(j));
  json_decref(j);
  return out;
}

static void
same_as_lua(const char *const *exprs)
{
  size_t n = sizeof driver + 64;
  for (size_t i = 0; exprs[i]; i++)
    n += strlen(exprs[i]) * 2 + 8;
  char *code = malloc(n), *p = code;
  p += sprintf(p, "local EXPRS = {\n");
  for (size_t i = 0; exprs[i]; i++) {
    *p++ = '"';
    for (const char *e = exprs[i]; *e; e++) {
      if (*e == '"' || *e == '\\')
        *p++ = '\\';
      *p++ = *e;
    }
    p += sprintf(p, "\",\n");
  }
  p += sprintf(p, "}\n%s", driver);
  char *a = stock(code), *b = ours(code);
  char *la = a, *lb = b;
  while (*la || *lb) {
    size_t na = strcspn(la, "\n"), nb = strcspn(lb, "\n");
    ck_assert_msg(na == nb && memcmp(la, lb, na) == 0,
                  "differs from stock Lua:\n  lua:  %.*s\n  ours: %.*s",
                  (int)na, la, (int)nb, lb);
    la += na + (la[na] != 0);
    lb += nb + (lb[nb] != 0);
  }
  free(a);
  free(b);
  free(code);
}

START_TEST(test_lib_tables)
{
  static const char *const exprs[] = {
    "table.concat({ 1, 2, 'x' }, '-')",
    "table.concat({}, ',')",
    "table.concat({ 1, 2, 3 }, ',', 2)",
    "table.concat({ 1, 2, 3 }, ',', 2, 3)",
    "table.concat({ 1, 2, 3 }, ',', 3, 2)",
    "table.concat({ 1, {}, 3 })",
    "table.concat({ 1.5, 2^53, -0.0 }, ' ')",
    "table.concat({ 'a', 'b' }, ', ', 1, 5)",
    "table.concat(setmetatable({}, { __index = function(t, i) return i end "
    "}), '', 1, 4)",
    "(function() local t = { 1, 2, 3 } table.insert(t, 1, 0) "
    "return table.concat(t, ',') end)()",
    "(function() local t = { 1, 2, 3 } table.insert(t, 4, 9) "
    "return table.concat(t, ',') end)()",
    "(function() local t = { 1, 2, 3 } table.insert(t, 'x') "
    "return table.concat(t, ',') end)()",
    "table.insert({ 1 }, 3, 2)",
    "table.insert({ 1 }, 0, 2)",
    "table.insert({}, 1, 2, 3)",
    "table.insert({})",
    "table.insert(nil, 1)",
    "(function() local t = { 1, 2, 3 } local v = table.remove(t) "
    "return v, #t end)()",
    "(function() local t = { 1, 2, 3 } local v = table.remove(t, 1) "
    "return v, table.concat(t, ',') end)()",
    "(function() local t = { 1, 2 } return table.remove(t, 3), #t end)()",
    "table.remove({}, 0)",
    "table.remove({})",
    "table.unpack({ 1, 2, 3 })",
    "table.unpack({ 1, 2, 3 }, 2)",
    "table.unpack({ 1, 2, 3 }, -1, 1)",
    "table.unpack({}, 1, 3)",
    "select('#', table.unpack({}, 5, 4))",
    "table.unpack({ 1, 2 }, 1, 1e8)",
    "(function() local t = { 5, 2, 8, 1, 9, 3 } table.sort(t) "
    "return table.concat(t, ',') end)()",
    "(function() local t = { 'b', 'a', 'c', 'B' } table.sort(t, "
    "function(a, b) return a > b end) return table.concat(t, ',') end)()",
    "(function() local t = { 3, 1, 2 } table.sort(t, nil) "
    "return table.concat(t, ',') end)()",
    "table.sort({ 1, 'x' })",
    "table.sort({ 1, 2 }, 3)",
    "table.sort({ {}, {} })",
    "table.concat(table.move({ 1, 2, 3 }, 1, 3, 2), ',')",
    "table.concat(table.move({ 1, 2, 3 }, 1, 3, 1, {}), ',')",
    "table.pack(1, nil, 3).n",
    "#table.pack()",
    NULL,
  };
  same_as_lua(exprs);
}
END_TEST

START_TEST(test_lib_strings)
{
  static const char *const exprs[] = {
    "('ab'):rep(3, ',')", "('x'):rep(0)", "('x'):rep(-1)", "(''):rep(5)",
    "('x'):rep(2.0)", "('x'):rep('3')", "('x'):rep(1.5)",
    "string.format('%5.2f|%-5d|%05d|%x|%X|%o', 3.14159, 42, 7, 255, 255, 8)",
    "string.format('%q', 'a\\nb\\0c\"')", "string.format('%q', 1/0)",
    "string.format('%q', math.mininteger)", "string.format('%s %s', 1, 2.5)",
    "string.format('%10s|%-10s|', 'hi', 'there')", "string.format('%c%c', 72, 105)",
    "string.format('%i', 42)", "string.format('%a', 1)", "string.format('%g', 1e20)",
    "string.format('%%')", "string.format('%d', 3.5)", "string.format('%d', '7')",
    "string.format('%s')", "string.format('%y', 1)", "string.format('%5.3s', 'abcdef')",
    "string.format('%s', nil)", "string.format('%s', true)",
    "string.format('%.3q', 'x')", "string.format('%099d', 1)",
    "string.format('%.99f', 1)",
    "('hello'):byte()", "('hello'):byte(2, 4)", "('hello'):byte(-2, -1)",
    "('hello'):byte(10)", "('hello'):byte(0)", "('hello'):byte(3, 2)",
    "('hello'):sub(2, 3)", "('hello'):sub(-3)", "('hello'):sub(0)",
    "('hello'):sub(4, 100)", "('hello'):sub(-100, 2)", "('hello'):sub(3, -3)",
    "('hello'):sub(2^53)", "string.char(72, 105)", "string.char()",
    "string.char(256)", "('MiXeD'):upper()", "('MiXeD'):lower()",
    "('abc'):reverse()", "(''):reverse()", "string.upper(12)",
    "string.len('\\0a')", "string.upper()",
    "string.pack('i4', 7):len()", "string.unpack('i4', string.pack('i4', 7))",
    "string.packsize('i4i8')", "string.pack('z', 'x'):len()",
    NULL,
  };
  same_as_lua(exprs);
}
END_TEST

START_TEST(test_lib_numbers_and_conversions)
{
  static const char *const exprs[] = {
    "tostring(1e15)", "tostring(2^63)", "tostring(-0.0)", "tostring(1/0)",
    "tostring(0.1)", "tostring(1e100)", "tostring(3)", "tostring(3.0)",
    "tostring(nil)", "tostring(true)", "tostring('x')", "tostring()",
    "tostring(setmetatable({}, { __tostring = function() return 'T' end }))",
    "tostring(setmetatable({}, { __tostring = function() return 1 end }))",
    "tonumber('0x10')", "tonumber(' 12 ')", "tonumber('1e2')",
    "tonumber('z', 36)", "tonumber('10', 2)", "tonumber('')",
    "tonumber('12a')", "tonumber(nil)", "tonumber('ff', 16)",
    "tonumber('8', 8)", "tonumber(12, 10)", "tonumber('1', 99)",
    "'10' + 1", "'3' * '4'", "'2' ^ 2", "-'2'", "'10' // 3", "'7' % 3",
    "'1.5' - 1", "'0x10' + 0", "'10' / '4'", "'a' + 1", "1 + 'a'",
    "'1' + {}", "{} + '1'", "'10' + setmetatable({}, { __add = function(a, "
    "b) return 'meta' end })",
    "math.floor('3.7')", "math.max(1, '5')", "math.type(1)",
    "math.tointeger('8')", "math.abs('-2')", "math.fmod(7, '3')",
    "math.ult(1, 2)", "math.huge", "math.pi", "math.floor({})",
    "select('#', 1, 2, 3)", "select(2, 'a', 'b', 'c')",
    "select(-1, 'a', 'b')", "select('2', 'a', 'b')", "select(0, 1)",
    "utf8.char(72, 228, 8364)", "utf8.len('h\\u{E4}ll\\u{20AC}')",
    "utf8.codepoint('h\\u{E4}ll\\u{20AC}', 1, -1)",
    "utf8.offset('h\\u{E4}ll\\u{20AC}', 3)", "utf8.len('\\xff')",
    "utf8.len('abc', 5)", "utf8.codepoint('abc', 4)",
    "utf8.charpattern",
    "(function() local t = {} for p, c in utf8.codes('a\\u{E4}') do "
    "t[#t + 1] = p .. ':' .. c end return table.concat(t, ' ') end)()",
    NULL,
  };
  same_as_lua(exprs);
}
END_TEST

START_TEST(test_lib_calls_and_coroutines)
{
  static const char *const exprs[] = {
    "pcall(error, 'x')", "pcall(error, 'x', 0)", "pcall(error)",
    "pcall(error, { 1 })", "pcall()", "pcall(42)",
    "select('#', pcall(function() return 1, 2, 3 end))",
    "xpcall(function() error('e', 0) end, function(m) return 'handled ' "
    ".. m end)",
    "xpcall(function(a, b) return a + b end, print, 2, 3)",
    "xpcall(error)",
    "xpcall(function() error('e') end, function(m) error('again') end)",
    "coroutine.wrap(function(a) local b = coroutine.yield(a + 1) "
    "return b * 2 end)(1)",
    "pcall(coroutine.wrap(function() error('boom') end))",
    "pcall(coroutine.wrap(function() error({}) end))",
    "(function() local f = coroutine.wrap(function() end) f() "
    "return pcall(f) end)()",
    "coroutine.close(coroutine.create(function() end))",
    "coroutine.resume(coroutine.create(function() return 1, 2 end))",
    "coroutine.resume(coroutine.create(function() error('in co') end))",
    "(function() local co = coroutine.create(function() "
    "coroutine.yield() end) coroutine.resume(co) "
    "return coroutine.status(co), coroutine.close(co), "
    "coroutine.status(co) end)()",
    "coroutine.resume(coroutine.running())",
    "(function() local co co = coroutine.wrap(function() return pcall(co) "
    "end) return co() end)()",
    "(function() local r = {} local co = coroutine.wrap(function() "
    "for i = 1, 3 do pcall(coroutine.yield, i) end end) "
    "for i = 1, 3 do r[i] = co() end return table.concat(r, ',') end)()",
    "select('#', load('return 1, 2')())", "load('syntax error here')",
    "load(function() return nil end)", "rawequal({}, {})",
    "rawlen({ 1, 2 })", "rawlen('abc')", "rawlen(5)", "rawget({ a = 1 }, 'a')",
    "rawset({}, nil, 1)", "rawset({}, 0/0, 1)",
    "next({})", "type(next)",
    "setmetatable({}, 5)", "getmetatable(setmetatable({}, { __metatable = "
    "'locked' }))", "setmetatable(setmetatable({}, { __metatable = 1 }), "
    "{})", "getmetatable('').__index == string",
    NULL,
  };
  same_as_lua(exprs);
}
END_TEST

/* What the sandbox changes on purpose. */
static void
eval_is(const char *code, const char *want)
{
  json_t *j = NULL;
  int rc = flow__sandbox_eval(sb, code, strlen(code), "t", &j, &err);
  ck_assert_msg(rc == 0, "%s -> %s", code, err.msg);
  char *got = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  ck_assert_msg(strcmp(got, want) == 0, "%s -> %s, want %s", code, got,
                want);
  free(got);
  json_decref(j);
}

START_TEST(test_lib_pairs_order)
{
  /* Numbers ascending (integers and floats together), then strings by
     their bytes, then false and true. */
  eval_is("local t = { z = 1, a = 1, B = 1, [10] = 1, [2] = 1, [-1.5] = 1, "
          "[true] = 1, [false] = 1, [2.5] = 1, ['10'] = 1, [''] = 1 } "
          "local ks = {} for k in pairs(t) do ks[#ks + 1] = tostring(k) end "
          "return table.concat(ks, ' ')",
          "\"-1.5 2 2.5 10  10 B a z false true\"");
  /* Integers and floats are ordered exactly, even past 2^53. */
  eval_is("local t = { [math.maxinteger] = 1, [2^63] = 1, [-2^64] = 1, "
          "[math.mininteger] = 1, [1.5] = 1, [2^53] = 1, "
          "[9007199254740993] = 1 } "
          "local ks = {} for k in pairs(t) do ks[#ks + 1] = "
          "math.type(k) == 'integer' and ('%d'):format(k) or "
          "('%.17g'):format(k) end return table.concat(ks, ' ')",
          "\"-1.8446744073709552e+19 -9223372036854775808 1.5 "
          "9007199254740992 9007199254740993 9223372036854775807 "
          "9.2233720368547758e+18\"");
  /* Clearing fields while traversing, and next from a key that is gone. */
  eval_is("local t = { a = 1, b = 2, c = 3, d = 4 } local seen = {} "
          "for k in pairs(t) do seen[#seen + 1] = k t[k] = nil end "
          "local u = { a = 1, c = 3 } "
          "return { table.concat(seen), next(t) == nil, next(u, 'b') }",
          "[\"abcd\",true,\"c\",3]");
  /* Nested traversals of one table. */
  eval_is("local t = { x = 1, y = 2 } local n = 0 "
          "for a in pairs(t) do for b in pairs(t) do n = n + 1 end end "
          "return n",
          "4");
  eval_is("return select(2, pcall(next, {}, {}))", "\"invalid key to 'next'\"");
}
END_TEST

START_TEST(test_lib_deliberate_differences)
{
  /* Stock Lua 5.4.4 names the wrong argument here. */
  eval_is("return select(2, pcall(table.remove, { 1 }, 3))",
          "\"bad argument #2 to '?' (position out of bounds)\"");
  /* next from a key that is not in the table: stock Lua raises; here it
     is the next key in the fixed order. */
  eval_is("return { next({ a = 1, c = 3 }, 'b') }", "[\"c\",3]");
  /* A malformed pattern is an error even where the subject fails first. */
  eval_is("return select(2, pcall(string.find, 'b', 'a['))",
          "\"malformed pattern (missing ']')\"");
}
END_TEST

START_TEST(test_lib_sort_is_stable)
{
  eval_is("local t = {} for i = 1, 200 do t[i] = { k = i % 3, i = i } end "
          "table.sort(t, function(a, b) return a.k < b.k end) "
          "local ok = true for i = 2, 200 do local p, q = t[i - 1], t[i] "
          "if p.k == q.k and p.i > q.i then ok = false end end "
          "return { ok, t[1].i, t[200].i }",
          "[true,3,200]");
}
END_TEST

START_TEST(test_lib_frozen_globals_still_behave)
{
  /* A service whose top level builds classes, lookup tables and lists:
     after freezing they read and behave as before. */
  static const char src[] =
      "local Account = {}\n"
      "Account.__index = Account\n"
      "function Account.new(n) return setmetatable({ balance = n }, "
      "Account) end\n"
      "function Account:deposit(v) self.balance = self.balance + v "
      "return self end\n"
      "local Base = { kind = function() return 'base' end }\n"
      "local Derived = setmetatable({}, { __index = Base })\n"
      "local Lazy = setmetatable({}, { __index = function(t, k) return k .. "
      "'!' end })\n"
      "local Callable = setmetatable({}, { __call = function(self, x) return "
      "x * 2 end, __tostring = function() return 'callable' end })\n"
      "local LIST = flow.list({ 'a', 'b' })\n"
      "local CONST = { 1, 2, 3 }\n"
      "local NAMES = { crew = 'north', lead = 'sam' }\n"
      "function helper(x) return x + 1 end\n"
      "return { name = 'oop', version = 1, initial = 'a',\n"
      "  fields = { n = { type = 'integer' }, s = { type = 'string' },\n"
      "    list = { type = 'list' }, names = { type = 'object' } },\n"
      "  states = { a = { on = { go = function(case)\n"
      "    local acct = Account.new(5):deposit(3)\n"
      "    case.data.n = helper(acct.balance)\n"
      "    local keys = {} for k, v in pairs(NAMES) do keys[#keys + 1] = k .. "
      "'=' .. v end\n"
      "    for i, v in ipairs(CONST) do keys[#keys + 1] = v end\n"
      "    case.data.s = table.concat({ Derived.kind(), Lazy.x, "
      "tostring(Callable), Callable(21), tostring(getmetatable(acct) == "
      "Account), #CONST, table.concat(CONST, ','), rawlen(CONST), "
      "select('#', table.unpack(CONST)), table.concat(keys, ','), "
      "tostring(next(CONST)), getmetatable(LIST) }, ' ')\n"
      "    case.data.list = LIST\n"
      "    case.data.names = NAMES\n"
      "  end } } } }\n";
  flow__service *svc = flow__calloc(&al, 1, sizeof *svc);
  flow__sandbox *s2;
  flow__sandbox_config cfg = { &al, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0, 0 };
  ck_assert_int_eq(flow__sandbox_new(&s2, &cfg, &err), 0);
  int rc = flow__service_compile(svc, s2, src, strlen(src), "oop.lua", &err);
  ck_assert_msg(rc == 0, "%s", err.msg);
  flow__case_view cv = { "1", "oop", 1, "a", "open", 0, 0, INT64_MIN, 1, 1 };
  json_t *data = json_object(), *pl = json_object();
  flow__event_view ev = { .name = "go", .payload = pl, .actor = NULL, .at = 0 };
  ck_assert_int_eq(flow__run_begin(s2, svc, &cv, data, &ev, &err), 0);
  const flow__state *st = flow__service_state(svc, "a");
  rc = flow__run_invoke(s2, flow__state_trans(st, "go")->handler, NULL, NULL,
                        &err);
  ck_assert_msg(rc == 0, "%s", err.msg);
  json_t *out = NULL;
  ck_assert_int_eq(flow__run_end(s2, &out, NULL, &err), 0);
  char *d = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
  ck_assert_str_eq(d, "{\"list\":[\"a\",\"b\"],\"n\":9,\"names\":{\"crew\":"
                      "\"north\",\"lead\":\"sam\"},\"s\":\"base x! callable "
                      "42 true 3 1,2,3 3 3 crew=north,lead=sam,1,2,3 1 "
                      "flow.list\"}");
  free(d);
  json_decref(out);
  json_decref(data);
  json_decref(pl);
  flow__service_free(&al, svc);
  flow__sandbox_free(s2);
}
END_TEST

static Suite *
lib_suite(void)
{
  Suite *s = suite_create("lib");
  TCase *tc = tcase_create("lib");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_lib_tables);
  tcase_add_test(tc, test_lib_strings);
  tcase_add_test(tc, test_lib_numbers_and_conversions);
  tcase_add_test(tc, test_lib_calls_and_coroutines);
  tcase_add_test(tc, test_lib_pairs_order);
  tcase_add_test(tc, test_lib_deliberate_differences);
  tcase_add_test(tc, test_lib_sort_is_stable);
  tcase_add_test(tc, test_lib_frozen_globals_still_behave);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(lib_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
