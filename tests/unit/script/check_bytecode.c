/*
 * The check of compiled code (script_bytecode.c): it reads every shape of
 * chunk Lua 5.4 makes without refusing ordinary code, finds the two
 * patterns it is there for, and names their lines right, also where the
 * debug information switches to absolute lines.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script/script_int.h"
#include "testutil.h"

static test_alloc ta;
static flow__allocator al;
static flow__sandbox *sb;

static void
setup(void)
{
  memset(&ta, 0, sizeof ta);
  al = test_allocator(&ta);
  flow__sandbox_config cfg = { &al, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0, 0 };
  flow__err err;
  flow__err_clear(&err);
  ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
}

static void
teardown(void)
{
  flow__sandbox_free(sb);
  ck_assert_int_eq(ta.live_blocks, 0);
}

/* Compiles src as chunk "@t.lua" and checks it; msg gets the message. */
static int
check(const char *src, int *line, char *msg, size_t len)
{
  lua_State *L = sb->L;
  ck_assert_int_eq(luaL_loadbufferx(L, src, strlen(src), "@t.lua", "t"),
                   LUA_OK);
  msg[0] = 0;
  int rc = flow__bytecode_check(L, sb, line, msg, len);
  lua_pop(L, 1);
  return rc;
}

static void
ok(const char *src)
{
  char msg[512];
  int line;
  int rc = check(src, &line, msg, sizeof msg);
  ck_assert_msg(rc == 0, "refused: %s\n%s", msg, src);
}

static void
refused(const char *src, const char *want)
{
  char msg[512];
  int line;
  int rc = check(src, &line, msg, sizeof msg);
  ck_assert_msg(rc == FLOW_ESCRIPT && strstr(msg, want) != NULL,
                "want '%s', got %d '%s'", want, rc, msg);
}

/* Chunks of every kind: constants of every type, nested functions with
   upvalues, varargs, methods, loops, to-be-closed variables, gotos. */
START_TEST(test_bytecode_reads_ordinary_code)
{
  ok("");
  ok("return 1");
  ok("local a, b, c = nil, true, false local d = 1.5 local e = 2^63 "
     "local s = 'short' local l = ('long string'):rep(1) .. [[" 
     "a long literal string that is longer than forty characters to be a "
     "long string]] return a, b, c, d, e, s, l, -0.0, 1e308, math.pi");
  ok("local up = {} local function f(...) local t = { ... } "
     "local function g(x) up[x] = #t return function() return up, t, x end "
     "end return g end return f(1, 2, 3)(4)()");
  ok("local o = { n = 0 } function o:inc(k) self.n = self.n + (k or 1) "
     "return self end return o:inc():inc(2).n");
  ok("local s = 0 for i = 1, 10 do s = s + i end for k, v in pairs({}) do "
     "end while s > 100 do s = s - 1 end repeat s = s + 1 until s > 60 "
     "do local x <close> = nil end goto done ::done:: return s");
  ok("local t = {} for i = 1, 300 do t[i] = i * 2 end "
     "return t[1] < t[2], t[1] == t[2] and 'y' or 'n', not (t[1] > 0)");
  ok("local k = 1 < 2 local T = {} local function f(a, b) local c = a < b "
     "T[c] = 1 return T[a] end return f(1, 2), { [1 < 2] = 1 }");
  /* Many constants (more than fit an instruction's argument). */
  char big[20000];
  size_t n = (size_t)snprintf(big, sizeof big, "local t = {");
  for (int i = 0; i < 600; i++)
    n += (size_t)snprintf(big + n, sizeof big - n, "'k%d', %d.5, ", i, i);
  snprintf(big + n, sizeof big - n, "} return t");
  ok(big);
}
END_TEST

/* Lines: far apart lines and long functions make Lua write absolute
   lines; the finding still names its own line. */
START_TEST(test_bytecode_lines)
{
  char src[40000];
  size_t n = 0;
  n += (size_t)snprintf(src + n, sizeof src - n, "local t = {} t.x = t\n");
  for (int i = 0; i < 300; i++)
    n += (size_t)snprintf(src + n, sizeof src - n, "t[%d] = %d\n", i, i);
  for (int i = 0; i < 400; i++)
    src[n++] = '\n';
  n += (size_t)snprintf(src + n, sizeof src - n, "return t");
  for (int i = 0; i < 70; i++)
    n += (size_t)snprintf(src + n, sizeof src - n, ".x");
  snprintf(src + n, sizeof src - n, "\n");
  char msg[512];
  int line;
  ck_assert_int_eq(check(src, &line, msg, sizeof msg), FLOW_ESCRIPT);
  ck_assert_int_eq(line, 702);
  ck_assert_msg(strncmp(msg, "t.lua:702: more than 64 field accesses", 38) ==
                    0,
                "%s", msg);
}
END_TEST

/* The chain is counted through registers, whatever the syntax. */
START_TEST(test_bytecode_chains)
{
  char src[4000];
  size_t n = (size_t)snprintf(src, sizeof src, "local t = {} return t");
  for (int i = 0; i < 65; i++)
    n += (size_t)snprintf(src + n, sizeof src - n, i % 3 == 0 ? "['x']"
                                                  : i % 3 == 1 ? ".x"
                                                               : "[1]");
  refused(src, "more than 64 field accesses in a row");
  /* A chain broken by a call, or stored in locals, is fine. */
  n = (size_t)snprintf(src, sizeof src, "local t = {} local a = t");
  for (int i = 0; i < 40; i++)
    n += (size_t)snprintf(src + n, sizeof src - n, ".x");
  n += (size_t)snprintf(src + n, sizeof src - n, " local b = a");
  for (int i = 0; i < 40; i++)
    n += (size_t)snprintf(src + n, sizeof src - n, ".x");
  snprintf(src + n, sizeof src - n, " return b");
  ok(src);
  /* Inside a nested function, too. */
  n = (size_t)snprintf(src, sizeof src,
                       "local t = {} return function() return t");
  for (int i = 0; i < 70; i++)
    n += (size_t)snprintf(src + n, sizeof src - n, ".x");
  snprintf(src + n, sizeof src - n, " end");
  refused(src, "more than 64 field accesses in a row");
}
END_TEST

START_TEST(test_bytecode_index_by_comparison)
{
  refused("local T = {} local function f(a, b) T[a < b] = 1 end",
          "t.lua:1: t[a < b] with t an upvalue");
  refused("local T = {} local function f(a, b) return T[a >= b] end",
          "t[a < b]");
  refused("local function f(a) return _ENV[a == 1] end", "t[a < b]");
  refused("local T = {} return function(a, b) return T[not (a ~= b)] end",
          "t[a < b]");
  /* A local table, a key in a local, and ternaries are fine. */
  ok("local function f(a, b) local T = {} T[a < b] = 1 return T end");
  ok("local T = {} local function f(a, b) local k = a < b T[k] = 1 end");
  ok("local T = {} local function f(a, b) return T[a < b and 1 or 2] end");
  ok("local u local function f(a, b) return a < b or u end");
}
END_TEST

static Suite *
bytecode_suite(void)
{
  Suite *s = suite_create("bytecode");
  TCase *tc = tcase_create("check");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_bytecode_reads_ordinary_code);
  tcase_add_test(tc, test_bytecode_lines);
  tcase_add_test(tc, test_bytecode_chains);
  tcase_add_test(tc, test_bytecode_index_by_comparison);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(bytecode_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
