/*
 * The JSON <-> Lua bridge: what survives a round trip (1 and 1.0, {} and
 * [], nulls in lists), what a script cannot store (invalid UTF-8, cycles,
 * functions, mixed tables, NaN), and that the host reads a script's tables
 * raw, in a deterministic key order, within depth and size limits.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script/script_int.h"
#include "testutil.h"

static test_alloc ta;
static flow__allocator al;
static flow__sandbox *sb;
static flow__err err;
static char msg[512];

static void
setup(void)
{
  memset(&ta, 0, sizeof ta);
  al = test_allocator(&ta);
  flow__sandbox_config cfg = { &al, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0, 0 };
  flow__err_clear(&err);
  ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
}

static void
teardown(void)
{
  flow__sandbox_free(sb);
  ck_assert_int_eq(ta.live_blocks, 0);
}

static char *
dump(json_t *j)
{
  return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* Sets the global x to the Lua value of the JSON text, in protected mode
   as the engine does. */
static json_t *push_in;

static int
push_p(lua_State *L)
{
  flow__json_push(L, push_in);
  lua_setglobal(L, "x");
  return 0;
}

static int
set_x(const char *text)
{
  json_error_t jerr;
  push_in = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  ck_assert_msg(push_in != NULL, "%s: %s", text, jerr.text);
  lua_pushcfunction(sb->L, push_p);
  int st = lua_pcall(sb->L, 0, 0, 0);
  if (st != LUA_OK)
    lua_pop(sb->L, 1);
  json_decref(push_in);
  return st;
}

/* Runs code and converts its result as "data", the way run_end does. */
static int
data_of(const char *code, json_t **out)
{
  lua_State *L = sb->L;
  ck_assert_int_eq(luaL_loadstring(L, code), LUA_OK);
  ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
  int rc = flow__json_from_lua(L, -1, "data", &al, out, msg, sizeof msg);
  lua_settop(L, 0);
  return rc;
}

static void
data_is(const char *code, const char *want)
{
  json_t *j = NULL;
  int rc = data_of(code, &j);
  ck_assert_msg(rc == 0, "%s -> %d %s", code, rc, msg);
  char *got = dump(j);
  ck_assert_msg(strcmp(got, want) == 0, "%s -> %s, want %s", code, got, want);
  free(got);
  json_decref(j);
}

static void
data_refused(const char *code, const char *want)
{
  json_t *j = NULL;
  int rc = data_of(code, &j);
  ck_assert_msg(rc == FLOW_EINVAL, "%s -> %d", code, rc);
  ck_assert_ptr_null(j);
  ck_assert_msg(strcmp(msg, want) == 0, "%s -> '%s', want '%s'", code, msg,
                want);
}

/* JSON text -> Lua -> JSON text. */
static void
round_trip(const char *text, const char *want)
{
  ck_assert_int_eq(set_x(text), LUA_OK);
  data_is("return x", want);
}

START_TEST(test_script_json_numbers_keep_their_kind)
{
  round_trip("[1, 1.0, -3, 2.5, 0, -0.0, 9007199254740993, 1e300]",
             "[1,1.0,-3,2.5,0,-0.0,9007199254740993,1.0000000000000001e300]");
  ck_assert_int_eq(
      set_x("{\"i\": 1, \"f\": 1.0, \"big\": 9223372036854775807}"), 0);
  data_is("return { math.type(x.i), math.type(x.f), x.big == math.maxinteger }",
          "[\"integer\",\"float\",true]");
  data_is("return { 2 / 2, 3 // 1, 2^53 }", "[1.0,3,9007199254740992.0]");
}
END_TEST

START_TEST(test_script_json_empty_object_vs_array)
{
  round_trip("{\"a\": {}, \"b\": [], \"c\": [[]], \"d\": [{}], "
             "\"e\": [[], {}]}",
             "{\"a\":{},\"b\":[],\"c\":[[]],\"d\":[{}],\"e\":[[],{}]}");
  /* An array stays one after the script empties it. */
  ck_assert_int_eq(set_x("{\"tags\": [\"a\", \"b\"]}"), 0);
  data_is("x.tags[2] = nil x.tags[1] = nil return x", "{\"tags\":[]}");
  /* A fresh empty table reads as an object. */
  data_is("return {}", "{}");
}
END_TEST

START_TEST(test_script_json_nested)
{
  round_trip("{\"a\": {\"b\": {\"c\": [1, {\"d\": [true, false, \"x\"]}]}}}",
             "{\"a\":{\"b\":{\"c\":[1,{\"d\":[true,false,\"x\"]}]}}}");
  round_trip("[[1, [2, [3, []]]], \"\\u00e9z\"]",
             "[[1,[2,[3,[]]]],\"\xc3\xa9z\"]");
  /* A NUL character comes in (a host may hand one over) but is refused
     on the way back: stored, no reader of the engine takes it back. */
  ck_assert_int_eq(set_x("[\"\\u00e9\\u0000z\"]"), LUA_OK);
  json_t *j = NULL;
  ck_assert_int_eq(data_of("return x", &j), FLOW_EINVAL);
  ck_assert_ptr_nonnull(strstr(msg, "data[1]: text with a NUL character"));
}
END_TEST

START_TEST(test_script_json_nulls)
{
  /* In a list a null keeps its place; in an object the key goes. */
  round_trip("[null, 1, null]", "[null,1,null]");
  round_trip("{\"a\": null, \"b\": 1}", "{\"b\":1}");
  ck_assert_int_eq(set_x("[null, 2]"), 0);
  data_is("return { x[1] == flow.null, #x }", "[true,2]");
  data_is("return { a = flow.null }", "{\"a\":null}");
  round_trip("null", "null");
}
END_TEST

START_TEST(test_script_json_keys_are_sorted)
{
  json_t *j = NULL;
  ck_assert_int_eq(data_of("return { b = 1, a = 2, c = 3, aa = 4, [''] = 5 }",
                           &j),
                   0);
  /* Jansson keeps insertion order, so this is the converter's order. */
  char *s = dump(j);
  ck_assert_str_eq(s, "{\"\":5,\"a\":2,\"aa\":4,\"b\":1,\"c\":3}");
  free(s);
  json_decref(j);
}
END_TEST

START_TEST(test_script_json_invalid_utf8_refused)
{
  data_refused("return { address = 'caf\\xe9' }",
               "data.address: not valid UTF-8");
  data_refused("return { list = { 'ok', '\\xc0\\x80' } }",
               "data.list[2]: not valid UTF-8");
  data_refused("return { ['\\xff'] = 1 }", "data: a key is not valid UTF-8");
  /* Surrogates encoded as UTF-8 are not UTF-8 either. */
  data_refused("return { s = '\\xed\\xa0\\x80' }", "data.s: not valid UTF-8");
  data_is("return { s = 'caf\\u{e9} \\u{1f5d1}' }",
          "{\"s\":\"caf\xc3\xa9 \xf0\x9f\x97\x91\"}");
}
END_TEST

/* The path in a message: names, odd keys (shown quoted, cut at 44
   characters), list positions, and the end of a path too long to show. */
START_TEST(test_script_json_error_paths)
{
  data_refused("return { a = { ['two words'] = { 1, 2, { '\\xff' } } } }",
               "data.a[\"two words\"][3][1]: not valid UTF-8");
  data_refused("return { ['q\"x\\n'] = '\\xff' }",
               "data[\"q?x?\"]: not valid UTF-8");
  data_refused("return { [string.rep('k', 50) .. ' '] = '\\xff' }",
               "data[\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...\"]: "
               "not valid UTF-8");
  data_refused("local t = {} for i = 1, 1234 do t[i] = i end "
               "t[1234] = '\\xff' return { l = t }",
               "data.l[1234]: not valid UTF-8");
  /* 40 levels of a 12-character name do not fit in 255 bytes. */
  json_t *j = NULL;
  ck_assert_int_eq(data_of("local t = {} local c = t for i = 1, 40 do "
                           "c.abcdefghijk = {} c = c.abcdefghijk end "
                           "c.v = '\\xff' return t",
                           &j),
                   FLOW_EINVAL);
  ck_assert_msg(strstr(msg, "data.abcdefghijk.abcdefghijk.") == msg, "%s",
                msg);
  ck_assert_msg(strstr(msg, "...: not valid UTF-8") != NULL, "%s", msg);
}
END_TEST

/*
 * flow__json_push_text must give exactly what Jansson followed by
 * flow__json_push gives, and refuse exactly what Jansson refuses (with
 * JSON_REJECT_DUPLICATES, objects only, 100 levels).  Both sides are
 * printed back through flow__json_from_lua; the corpus is hand-picked
 * corners plus 30,000 random mutations of them.
 */
static const char *text_in;
static int text_status;

static int
push_text_p(lua_State *L)
{
  text_status = flow__json_push_text(L, text_in, FLOW__JSON_MAX_DEPTH);
  if (text_status == FLOW__TEXT_OK)
    lua_setglobal(L, "x");
  return 0;
}

/* "BAD", "DEEP" or the value printed back; free() the result. */
static char *
via(const char *text, int use_text)
{
  lua_State *L = sb->L;
  if (use_text) {
    text_in = text;
    lua_pushcfunction(L, push_text_p);
    ck_assert_int_eq(lua_pcall(L, 0, 0, 0), LUA_OK);
    if (text_status != FLOW__TEXT_OK)
      return strdup(text_status == FLOW__TEXT_DEEP ? "DEEP" : "BAD");
    ck_assert_int_eq(lua_gettop(L), 0);
  } else {
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
      json_decref(j);
      return strdup("BAD");
    }
    if (!flow__json_depth_ok(j, FLOW__JSON_MAX_DEPTH - 1)) {
      json_decref(j);
      return strdup("DEEP");
    }
    push_in = j;
    lua_pushcfunction(L, push_p);
    ck_assert_int_eq(lua_pcall(L, 0, 0, 0), LUA_OK);
    json_decref(j);
  }
  lua_getglobal(L, "x");
  json_t *back = NULL;
  int rc = flow__json_from_lua(L, -1, "x", &al, &back, msg, sizeof msg);
  lua_settop(L, 0);
  ck_assert_msg(rc == 0, "%s: %s", text, msg);
  char *out = json_dumps(back, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  json_decref(back);
  return out;
}

static void
same_as_jansson(const char *text)
{
  char *want = via(text, 0), *got = via(text, 1);
  /* Text both malformed and too deep may be caught either way. */
  if (!(strcmp(want, "BAD") == 0 && strcmp(got, "DEEP") == 0))
    ck_assert_msg(strcmp(want, got) == 0, "%s: Jansson %s, text %s", text,
                  want, got);
  free(want);
  free(got);
}

START_TEST(test_script_json_text_matches_jansson)
{
  static const char *const seeds[] = {
    "{}", " { } ", "{\"a\":1}", "{\"a\":1,\"a\":2}", "{\"a\":null,\"a\":1}",
    "{\"a\":null}", "{\"a\":[]}", "{\"a\":[null,1,null]}", "[1]", "1",
    "\"s\"", "", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}",
    "{\"a\":1} x", "{\"a\":1}  \n", "{\"a\":-0}", "{\"a\":01}",
    "{\"a\":1.}", "{\"a\":.5}", "{\"a\":1e5}", "{\"a\":1E+5}",
    "{\"a\":-1.5e-3}", "{\"a\":1e400}", "{\"a\":1e-400}",
    "{\"a\":9223372036854775807}", "{\"a\":9223372036854775808}",
    "{\"a\":-9223372036854775808}", "{\"a\":-9223372036854775809}",
    "{\"a\":0.1000000000000000055511151231257827021181583404541015625}",
    "{\"a\":\"\\u00e9\\ud83d\\uddd1\"}", "{\"a\":\"\\ud83d\"}",
    "{\"a\":\"\\udd11\"}", "{\"a\":\"\\ud83dx\"}", "{\"a\":\"\\u0000\"}",
    "{\"a\":\"\\u00zz\"}", "{\"a\":\"\\q\"}", "{\"a\":\"tab\there\"}",
    "{\"a\":\"caf\xc3\xa9\"}", "{\"a\":\"caf\xe9\"}", "{\"\xff\":1}",
    "{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", "{\"\":0,\"b\":true,"
    "\"c\":false,\"d\":[{\"e\":[[]]}]}", "{\"a\":tru}", "{\"a\":nul}",
    "{\"a\":[1,2,]}", "{\"a\":[,1]}", "{\"a\" : [ 1 , { \"b\" : null } ] }",
    "{\"uprn\":\"1000001\",\"address\":\"1 High Street\",\"bin\":\"refuse\","
    "\"crew\":\"crew-1\",\"n\":[1,2.5,\"x\",{\"y\":null}]}",
  };
  size_t nseeds = sizeof seeds / sizeof seeds[0];
  for (size_t i = 0; i < nseeds; i++)
    same_as_jansson(seeds[i]);

  /* Depth: 100 levels are fine, 101 are not, on both sides. */
  char deep[1024];
  for (int levels = 99; levels <= 101; levels++) {
    size_t n = 0;
    for (int i = 0; i < levels - 1; i++)
      n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"a\":");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "1");
    for (int i = 0; i < levels - 1; i++)
      deep[n++] = '}';
    deep[n] = 0;
    same_as_jansson(deep);
  }

  static const char alphabet[] = "{}[],:\"\\01-.eE+ nultrfa\xc3\xa9\xff\t";
  uint64_t x = 88172645463325252ull;
  char buf[256];
  for (int round = 0; round < 30000; round++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const char *seed = seeds[x % nseeds];
    size_t n = strlen(seed);
    memcpy(buf, seed, n + 1);
    int edits = 1 + (int)(x >> 8) % 3;
    for (int k = 0; k < edits && n + 1 < sizeof buf; k++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      size_t at = n ? (size_t)(x >> 16) % (n + 1) : 0;
      char c = alphabet[(x >> 40) % (sizeof alphabet - 1)];
      switch ((x >> 4) % 3) {
      case 0: /* insert */
        memmove(buf + at + 1, buf + at, n - at + 1);
        buf[at] = c;
        n++;
        break;
      case 1: /* replace */
        if (at < n)
          buf[at] = c;
        break;
      default: /* delete */
        if (at < n) {
          memmove(buf + at, buf + at + 1, n - at);
          n--;
        }
      }
    }
    same_as_jansson(buf);
  }
}
END_TEST

START_TEST(test_script_json_cycles_and_depth)
{
  json_t *j = NULL;
  ck_assert_int_eq(data_of("local t = {} t.self = t return t", &j),
                   FLOW_EINVAL);
  ck_assert_ptr_null(j);
  ck_assert_ptr_nonnull(strstr(msg, "data.self.self.self"));
  ck_assert_ptr_nonnull(
      strstr(msg, ": nested more than 100 levels (or refers to itself)"));
  /* 100 levels are fine, and come out whole; 101 are not. */
  ck_assert_int_eq(data_of("local t = {} local c = t for i = 2, 100 do c.x = "
                           "{} c = c.x end return t",
                           &j),
                   0);
  int levels = 0;
  for (json_t *v = j; json_is_object(v); v = json_object_get(v, "x"))
    levels++;
  ck_assert_int_eq(levels, 100);
  json_decref(j);
  ck_assert_int_eq(data_of("local t = {} local c = t for i = 2, 101 do c.x = "
                           "{} c = c.x end return t",
                           &j),
                   FLOW_EINVAL);
  /* A shared (not cyclic) table is fine. */
  data_is("local s = { 1 } return { a = s, b = s }",
          "{\"a\":[1],\"b\":[1]}");
}
END_TEST

START_TEST(test_script_json_push_depth_limit)
{
  char deep[1024];
  size_t n = 0;
  for (int i = 0; i < 101; i++)
    deep[n++] = '[';
  for (int i = 0; i < 101; i++)
    deep[n++] = ']';
  deep[n] = 0;
  ck_assert_int_eq(set_x(deep), LUA_ERRRUN);
  deep[100] = 0; /* 100 opening brackets only: rebuild balanced */
  n = 100;
  for (int i = 0; i < 100; i++)
    deep[n++] = ']';
  deep[n] = 0;
  ck_assert_int_eq(set_x(deep), LUA_OK);
}
END_TEST

START_TEST(test_script_json_tables_that_are_not_json)
{
  data_refused("return { 1, 2, x = 3 }",
               "data: a table mixes list items and named keys");
  data_refused("return { a = { 1, nil, 3 } }",
               "data.a: a list has a gap at position 2 (items must be 1, 2, "
               "3... with no nil between them)");
  data_refused("return { [0] = 'zero' }",
               "data: a table has the key 0 (JSON allows names and list "
               "positions 1, 2, 3...)");
  data_refused("return { [1.5] = 1 }",
               "data: a table has the key 1.5 (JSON allows names and list "
               "positions 1, 2, 3...)");
  data_refused("return { [true] = 1 }",
               "data: a table has a key of type boolean (JSON allows names "
               "and list positions 1, 2, 3...)");
  data_refused("return { cb = print }",
               "data.cb: a function cannot be stored as JSON (use strings, "
               "numbers, booleans and tables)");
  data_refused("return { co = coroutine.create(print) }",
               "data.co: a thread cannot be stored as JSON (use strings, "
               "numbers, booleans and tables)");
  data_refused("return { ['odd key'] = { print } }",
               "data[\"odd key\"][1]: a function cannot be stored as JSON "
               "(use strings, numbers, booleans and tables)");
  data_refused("return { x = 0/0 }",
               "data.x: NaN is not a number JSON can hold");
  data_refused("return { x = -math.huge }",
               "data.x: -infinity is not a number JSON can hold");
  data_refused("local t = flow.list() t.name = 'x' return t",
               "data: a list (flow.list) has named keys; a list holds only "
               "items 1, 2, 3...");
}
END_TEST

START_TEST(test_script_json_flow_list)
{
  data_is("return flow.list()", "[]");
  data_is("return flow.list({ 'a', 'b' })", "[\"a\",\"b\"]");
  data_is("return { tags = flow.list() }", "{\"tags\":[]}");
  data_is("return { 3, 2, 1 }", "[3,2,1]");
}
END_TEST

START_TEST(test_script_json_reads_raw)
{
  /* No metamethod of the script's is run by the converter. */
  data_is("local mt = { __index = function() error('index') end, "
          "__pairs = function() error('pairs') end, "
          "__len = function() error('len') end } "
          "return setmetatable({ a = 1, b = setmetatable({ 1, 2 }, mt) }, mt)",
          "{\"a\":1,\"b\":[1,2]}");
  /* An __index does not invent items either. */
  data_is("return setmetatable({ 1 }, { __index = function(t, k) return k "
          "end })",
          "[1]");
}
END_TEST

/* A thousand references to one list of a thousand numbers: a million
   values, which would be about 4 MB of JSON.  Refused by the text limit
   (1 MiB) long before the value limit, about a quarter of the way in. */
START_TEST(test_script_json_node_limit)
{
  json_t *j = NULL;
  ck_assert_int_eq(data_of("local s = {} for i = 1, 1000 do s[i] = i end "
                           "local t = {} for i = 1, 1001 do t[i] = s end "
                           "return t",
                           &j),
                   FLOW_EDATA);
  ck_assert_ptr_null(j);
  ck_assert_ptr_nonnull(strstr(msg, "data: more than 1024 KiB as JSON"));
}
END_TEST

START_TEST(test_script_json_utf8_validator)
{
  ck_assert_int_eq(flow__utf8_valid("", 0), 1);
  ck_assert_int_eq(flow__utf8_valid("abc", 3), 1);
  ck_assert_int_eq(flow__utf8_valid("\xc3\xa9", 2), 1);
  ck_assert_int_eq(flow__utf8_valid("\xf4\x8f\xbf\xbf", 4), 1);
  ck_assert_int_eq(flow__utf8_valid("\xf4\x90\x80\x80", 4), 0); /* > 10FFFF */
  ck_assert_int_eq(flow__utf8_valid("\xe0\x80\xaf", 3), 0);     /* overlong */
  ck_assert_int_eq(flow__utf8_valid("\xc3", 1), 0);             /* cut */
  ck_assert_int_eq(flow__utf8_valid("\x80", 1), 0);
}
END_TEST

static Suite *
script_json_suite(void)
{
  Suite *s = suite_create("script_json");
  TCase *tc = tcase_create("bridge");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_script_json_numbers_keep_their_kind);
  tcase_add_test(tc, test_script_json_empty_object_vs_array);
  tcase_add_test(tc, test_script_json_nested);
  tcase_add_test(tc, test_script_json_nulls);
  tcase_add_test(tc, test_script_json_keys_are_sorted);
  tcase_add_test(tc, test_script_json_invalid_utf8_refused);
  tcase_add_test(tc, test_script_json_error_paths);
  tcase_add_test(tc, test_script_json_text_matches_jansson);
  tcase_add_test(tc, test_script_json_cycles_and_depth);
  tcase_add_test(tc, test_script_json_push_depth_limit);
  tcase_add_test(tc, test_script_json_tables_that_are_not_json);
  tcase_add_test(tc, test_script_json_flow_list);
  tcase_add_test(tc, test_script_json_reads_raw);
  tcase_add_test(tc, test_script_json_node_limit);
  tcase_add_test(tc, test_script_json_utf8_validator);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(script_json_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
