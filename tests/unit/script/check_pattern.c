/*
 * The sandbox's own Lua patterns (script_pattern.c) against stock Lua: the
 * same calls of string.find, match, gmatch and gsub run in a plain Lua
 * state and in a sandbox, on the manual's examples and on thousands of
 * generated subjects and well-formed patterns, and must give the same
 * results.  Malformed patterns give Lua's messages.  Matching is charged:
 * a pattern that backtracks forever is killed like an endless loop.
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
  flow__sandbox_config cfg = { &al,  64u << 20, 2000000000, NULL, NULL, NULL,
                                60000, 0,    0,          0,    0 };
  flow__err_clear(&err);
  ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
}

static void
teardown(void)
{
  flow__sandbox_free(sb);
  ck_assert_int_eq(ta.live_blocks, 0);
}

/* The string code returns, run by stock Lua; malloc'd. */
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

/* The same in the sandbox. */
static char *
ours(const char *code)
{
  json_t *j = NULL;
  flow__err_clear(&err);
  int rc = flow__sandbox_eval(sb, code, strlen(code), "t", &j, &err);
  ck_assert_msg(rc == 0, "sandbox: %d %s", rc, err.msg);
  ck_assert(json_is_string(j));
  char *out = strdup(json_string_value(j));
  json_decref(j);
  return out;
}

/* Runs the driver over the cases in both and compares line by line. */
static const char driver[] =
    "local out = {}\n"
    "local function show(v)\n"
    "  return type(v) == 'string' and ('%q'):format(v) or tostring(v)\n"
    "end\n"
    "local function add(...)\n"
    "  local t = {}\n"
    "  for i = 1, select('#', ...) do t[i] = show((select(i, ...))) end\n"
    "  out[#out + 1] = table.concat(t, ' ')\n"
    "end\n"
    "local function ok(f, ...)\n"
    "  local r = table.pack(pcall(f, ...))\n"
    "  if not r[1] then return 'error' end\n"
    "  return table.unpack(r, 2, r.n)\n"
    "end\n"
    "local rep = { a = 'A', b = false, ['('] = 7 }\n"
    "local function fn(a, b) if a == 'b' then return nil end\n"
    "  return (tostring(a) .. '/' .. tostring(b)) end\n"
    "for i, c in ipairs(CASES) do\n"
    "  local s, p, init = c[1], c[2], c[3]\n"
    "  add(i, ok(string.find, s, p, init))\n"
    "  add(i, ok(string.find, s, p, init, true))\n"
    "  add(i, ok(string.match, s, p, init))\n"
    "  local good, it = pcall(string.gmatch, s, p, init)\n"
    "  if good then\n"
    "    local got, n = {}, 0\n"
    "    local g2, e = pcall(function()\n"
    "      for a, b in it do n = n + 1\n"
    "        got[n] = show(a) .. ',' .. show(b)\n"
    "        if n > 40 then break end end end)\n"
    "    add(i, 'gmatch', g2, table.concat(got, ';'))\n"
    "  else add(i, 'gmatch error') end\n"
    "  add(i, ok(string.gsub, s, p, '<%0>'))\n"
    "  add(i, ok(string.gsub, s, p, '%1-%%', 2))\n"
    "  add(i, ok(string.gsub, s, p, rep))\n"
    "  add(i, ok(string.gsub, s, p, fn, 3))\n"
    "end\n"
    "return table.concat(out, '\\n')\n";

static void
compare(const char *cases)
{
  size_t n = strlen(cases) + sizeof driver + 32;
  char *code = malloc(n);
  snprintf(code, n, "local CASES = %s\n%s", cases, driver);
  char *a = stock(code), *b = ours(code);
  if (strcmp(a, b) != 0) {
    /* Show the first line that differs. */
    const char *pa = a, *pb = b;
    while (*pa && *pa == *pb) {
      pa++;
      pb++;
    }
    while (pa > a && pa[-1] != '\n') {
      pa--;
      pb--;
    }
    char la[300], lb[300];
    snprintf(la, sizeof la, "%.*s", (int)strcspn(pa, "\n"), pa);
    snprintf(lb, sizeof lb, "%.*s", (int)strcspn(pb, "\n"), pb);
    ck_abort_msg("differs from stock Lua:\n  lua:  %s\n  ours: %s", la, lb);
  }
  free(a);
  free(b);
  free(code);
}

START_TEST(test_pattern_manual_examples)
{
  compare("{\n"
          " { 'hello world', '(%w+)' },\n"
          " { 'hello world from Lua', '(%w+)%s*(%w+)' },\n"
          " { 'home = $HOME, user = $USER', '%$(%w+)' },\n"
          " { '4+5 = $return 4+5$', '%$(.-)%$' },\n"
          " { '$name-$version.tar.gz', '%$(%w+)' },\n"
          " { 'THE (quick) fox', '%f[%a]%a+' },\n"
          " { 'THE (quick) fox', '%f[%a]%u+%f[%A]' },\n"
          " { 'x = (a(b)c) + (d)', '%b()' },\n"
          " { 'hello', '()ll()' }, { 'hello', '()' }, { 'hello', '' },\n"
          " { 'abc', '' , 4 }, { 'abc', '', 5 }, { 'abc', 'c', -1 },\n"
          " { 'abc', 'a', -10 }, { 'abc', 'b', 0 }, { 'aaa', 'a-' },\n"
          " { 'aaab', 'a-b' }, { 'aaab', '^a-$' }, { 'aaa', '^a*$' },\n"
          " { ' key = value ', '(%w+)%s*=%s*(%w+)' },\n"
          " { 'a.b.c', '.', 1 }, { 'a.b.c', '%.', 1 }, { 'a+b', 'a+b' },\n"
          " { '[x]', '[]]' }, { '[x]', '[^]]+' }, { 'a-b', '[a-]+' },\n"
          " { 'x^y', 'x^y' }, { '^x', '^^x' }, { 'a$b', 'a$b' },\n"
          " { 'abcabc', '(abc)%1' }, { 'abab', '(a)(b)%1%2' },\n"
          " { 'hello world', 'o', 6 }, { 'hello', 'l+' },\n"
          " { 'THE (quick) fox', '%f[%l]' }, { 'x', '%f[%z]' },\n"
          " { 'a\\0b', '%z' }, { 'a\\0b', 'a%zb' }, { 'a\\0b', '[%z]' },\n"
          " { '  trim me  ', '^%s*(.-)%s*$' },\n"
          " { 'one;two;;three', '([^;]*)' },\n"
          " { '2026-11-27', '^(%d%d%d%d)-(%d%d)-(%d%d)$' },\n"
          " { '07700 900123', '^%+?[%d ]+$' }, { 'abc', '^(a)(b)(c)$' },\n"
          " { 'f(a(b)c)', '%b()' }, { 'ab', '%bab' }, { 'aab', '%baa' },\n"
          " { 'a,b,,c', '[^,]*' }, { 'abc', '[a-c]+' }, { 'ABC', '[%u]+' },\n"
          " { 'a1_b', '[%w_]+' }, { '\\195\\169', '[\\128-\\255]+' },\n"
          " { 'aaa', 'a?a?a?aaa' }, { 'xyz', '.-$' }, { 'xyz', 'y?' },\n"
          "}");
}
END_TEST

/* A small deterministic generator, so a failure can be replayed. */
static uint64_t rng_state;

static unsigned
rnd(unsigned n)
{
  rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
  return (unsigned)((rng_state >> 33) % n);
}

static void
put(char **p, const char *s)
{
  size_t n = strlen(s);
  memcpy(*p, s, n);
  *p += n;
}

/* One single-character class. */
static void
gen_class(char **p)
{
  static const char *const classes[] = {
    "a",    "b",     "x",     ".",      "%a",   "%d",   "%s",  "%w",
    "%p",   "%A",    "%l",    "%u",     "%x",   "%%",   "%.",  "%(",
    "[ab]", "[^a]",  "[a-c]", "[%d_]",  "[]a]", "[^]]", "1",   " ",
    "(",    ")",
  };
  const char *c = classes[rnd(sizeof classes / sizeof *classes)];
  /* Bare parentheses belong to captures; use them escaped. */
  if (c[0] == '(' || c[0] == ')') {
    put(p, "%");
  }
  put(p, c);
}

/* A well-formed pattern: items, captures balanced, back-references only
   to closed captures. */
static void
gen_pattern(char *buf)
{
  char *p = buf;
  int ncap = 0, closed[9] = { 0 }, open[9], nopen = 0;
  if (rnd(4) == 0)
    put(&p, "^");
  int items = 1 + (int)rnd(6);
  for (int i = 0; i < items; i++) {
    unsigned k = rnd(14);
    if (k < 2 && ncap < 8) {
      open[nopen++] = ncap++;
      put(&p, "(");
      continue;
    }
    if (k == 2 && nopen > 0) {
      closed[open[--nopen]] = 1;
      put(&p, ")");
      continue;
    }
    if (k == 3 && ncap < 8) {
      closed[ncap++] = 1;
      put(&p, "()");
      continue;
    }
    if (k == 4) {
      put(&p, rnd(2) ? "%b()" : "%bab");
      continue;
    }
    if (k == 5) {
      put(&p, rnd(2) ? "%f[%w]" : "%f[%W]");
      continue;
    }
    if (k == 6) {
      for (int c = 0; c < ncap; c++)
        if (closed[c]) {
          char ref[16];
          snprintf(ref, sizeof ref, "%%%d", c + 1);
          put(&p, ref);
          break;
        }
      continue;
    }
    gen_class(&p);
    static const char *const quants[] = { "", "", "*", "+", "-", "?" };
    put(&p, quants[rnd(6)]);
  }
  while (nopen > 0) {
    nopen--;
    put(&p, ")");
  }
  if (rnd(5) == 0)
    put(&p, "$");
  *p = 0;
}

static void
gen_subject(char *buf)
{
  static const char alphabet[] = "aabbx (1)_ .%";
  int n = (int)rnd(14);
  for (int i = 0; i < n; i++)
    buf[i] = alphabet[rnd(sizeof alphabet - 1)];
  buf[n] = 0;
}

/* Appends s as a Lua string literal. */
static void
put_quoted(char **p, const char *s)
{
  put(p, "'");
  for (; *s; s++) {
    if (*s == '\'' || *s == '\\')
      *(*p)++ = '\\';
    *(*p)++ = *s;
  }
  put(p, "'");
}

START_TEST(test_pattern_generated_cases)
{
  /* Several batches, each seeded, each compared as a whole. */
  for (uint64_t seed = 1; seed <= 6; seed++) {
    rng_state = seed;
    size_t cap = 1 << 20;
    char *cases = malloc(cap), *p = cases;
    put(&p, "{\n");
    for (int i = 0; i < 500; i++) {
      char pat[200], subj[40];
      gen_pattern(pat);
      gen_subject(subj);
      put(&p, "{ ");
      put_quoted(&p, subj);
      put(&p, ", ");
      put_quoted(&p, pat);
      char init[32];
      static const int inits[] = { 1, 1, 1, 2, 3, -2, 0, 20 };
      snprintf(init, sizeof init, ", %d },\n", inits[rnd(8)]);
      put(&p, init);
    }
    put(&p, "}");
    *p = 0;
    compare(cases);
    free(cases);
  }
}
END_TEST

/* The error message for pattern p on subject s, from code run in L (stock)
   or in the sandbox. */
static void
error_is(const char *s, const char *p, const char *want)
{
  char code[512];
  snprintf(code, sizeof code,
           "local ok, e = pcall(string.match, %s, %s) return tostring(e)", s,
           p);
  char *a = stock(code), *b = ours(code);
  ck_assert_msg(strcmp(b, want) == 0, "%s: ours '%s', want '%s'", p, b, want);
  /* Ours may say more ("... in pattern"), never something else. */
  ck_assert_msg(strncmp(b, a, strlen(a)) == 0, "%s: lua '%s', ours '%s'",
                p, a, b);
  free(a);
  free(b);
}

START_TEST(test_pattern_malformed)
{
  error_is("'a'", "'[a'", "malformed pattern (missing ']')");
  error_is("'a'", "'%'", "malformed pattern (ends with '%')");
  error_is("'a'", "'a)'", "invalid pattern capture");
  error_is("'a'", "'(a'", "unfinished capture");
  error_is("'a'", "'%b'", "malformed pattern (missing arguments to '%b')");
  error_is("'a'", "'%f'", "missing '[' after '%f' in pattern");
  error_is("'a'", "'%1'", "invalid capture index %1 in pattern");
  error_is("'aa'", "'(a%1)'", "invalid capture index %1 in pattern");
  error_is("'a'", "string.rep('()', 33)", "too many captures");
  /* Unlike stock Lua, a malformed pattern is an error even when the
     subject fails before the bad part: the pattern is compiled first. */
  char *b = ours("return tostring(select(2, pcall(string.find, 'b', 'a[')))");
  ck_assert_str_eq(b, "malformed pattern (missing ']')");
  free(b);
  /* Replacement strings. */
  b = ours("return tostring(select(2, pcall(string.gsub, 'a', 'a', '%2')))");
  ck_assert_str_eq(b, "invalid capture index %2 in replacement string");
  free(b);
  b = ours("return tostring(select(2, pcall(string.gsub, 'a', 'a', '%x')))");
  ck_assert_str_eq(b, "invalid use of '%' in replacement string");
  free(b);
  b = ours("return tostring(select(2, pcall(string.gsub, 'a', 'a', {a = "
           "{}})))");
  ck_assert_str_eq(b, "invalid replacement value (a table)");
  free(b);
}
END_TEST

START_TEST(test_pattern_matching_is_charged)
{
  flow__sandbox_free(sb);
  flow__sandbox_config cfg = { &al, 8u << 20, 2000000, NULL, NULL, NULL,
                               5000, 0,       0,       0,    0 };
  ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
  const char *code = "return string.find(('a'):rep(5000), ('a*'):rep(50) .. "
                     "'b')";
  json_t *j = NULL;
  int rc = flow__sandbox_eval(sb, code, strlen(code), "t", &j, &err);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the chunk t ran more than "
                            "2000000 instructions (an endless loop?)");
  /* A plain search is charged by the bytes it looks at. */
  code = "local s = ('a'):rep(100000) local n = 0 for i = 1, 100 do "
         "n = n + (s:find('b', 1, true) or 0) end return n";
  rc = flow__sandbox_eval(sb, code, strlen(code), "t", &j, &err);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  /* Ordinary matching is cheap. */
  code = "local n = 0 for i = 1, 1000 do if ('100023336956'):find('^%d+$') "
         "then n = n + 1 end end return n";
  rc = flow__sandbox_eval(sb, code, strlen(code), "t", &j, &err);
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert_int_eq(json_integer_value(j), 1000);
  json_decref(j);
}
END_TEST

static Suite *
pattern_suite(void)
{
  Suite *s = suite_create("pattern");
  TCase *tc = tcase_create("pattern");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_pattern_manual_examples);
  tcase_add_test(tc, test_pattern_generated_cases);
  tcase_add_test(tc, test_pattern_malformed);
  tcase_add_test(tc, test_pattern_matching_is_charged);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(pattern_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
