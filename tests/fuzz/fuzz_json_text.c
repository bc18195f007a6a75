/*
 * Fuzz target: stored case data, read straight into Lua.
 *
 * A signal reads the case data the engine stored as JSON text and builds
 * the script's table from it with its own parser (flow__json_push_text),
 * not with Jansson.  The text is normally what the engine printed, but the
 * database is a file anyone can edit, so the parser must take any bytes.
 *
 * The input is the stored text (up to its first NUL, as SQLite hands it
 * back).  Invariants: the parser never crashes or leaks, leaves the Lua
 * stack as it found it when it refuses, and agrees with the reference --
 * Jansson with JSON_REJECT_DUPLICATES, objects only, at most
 * FLOW__JSON_MAX_DEPTH levels, then flow__json_push -- on what it accepts
 * and on the value it builds (both printed back through
 * flow__json_from_lua).  Text that is both malformed and too deep may be
 * refused for either reason.
 */
#define _POSIX_C_SOURCE 200809L

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "fuzz.h"
#include "script/script_int.h"

static lua_State *L;
static flow__allocator AL;

void
fuzz_cleanup(void)
{
  if (L)
    lua_close(L);
  L = NULL;
}

static const char *in_text;
static json_t *in_json;
static int in_status;

static int
push_text_p(lua_State *l)
{
  in_status = flow__json_push_text(l, in_text, FLOW__JSON_MAX_DEPTH);
  if (in_status == FLOW__TEXT_OK)
    lua_setglobal(l, "x");
  return 0;
}

static int
push_json_p(lua_State *l)
{
  flow__json_push(l, in_json);
  lua_setglobal(l, "x");
  return 0;
}

/* The value in global x printed back as sorted compact JSON (malloc). */
static char *
print_x(void)
{
  lua_getglobal(L, "x");
  json_t *back = NULL;
  char msg[256];
  int rc = flow__json_from_lua(L, -1, "x", &AL, &back, msg, sizeof msg);
  lua_settop(L, 0);
  FUZZ_CHECK(rc == 0, "a parsed value does not print back: %s", msg);
  char *out =
      json_dumps(back, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  json_decref(back);
  FUZZ_CHECK(out != NULL, "out of memory printing");
  return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (L == NULL) {
    AL.fn = flow__default_alloc;
    AL.payload = NULL;
    L = luaL_newstate();
    FUZZ_CHECK(L != NULL, "no Lua state");
    flow__json_setup(L);
  }
  char *text = fuzz_text(data, size);

  /* The parser under test. */
  in_text = text;
  lua_settop(L, 0);
  lua_pushcfunction(L, push_text_p);
  FUZZ_CHECK(lua_pcall(L, 0, 0, 0) == LUA_OK, "the parser raised: %s",
             lua_tostring(L, -1));
  FUZZ_CHECK(lua_gettop(L) == 0, "the parser left %d values on the stack",
             lua_gettop(L));
  int status = in_status;
  char *got = status == FLOW__TEXT_OK ? print_x() : NULL;

  /* The reference. */
  json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
  int want = FLOW__TEXT_OK;
  if (!json_is_object(j))
    want = FLOW__TEXT_BAD;
  else if (!flow__json_depth_ok(j, FLOW__JSON_MAX_DEPTH - 1))
    want = FLOW__TEXT_DEEP;
  char *expect = NULL;
  if (want == FLOW__TEXT_OK) {
    in_json = j;
    lua_pushcfunction(L, push_json_p);
    FUZZ_CHECK(lua_pcall(L, 0, 0, 0) == LUA_OK, "push raised");
    expect = print_x();
  }
  json_decref(j);

  if (!(want == FLOW__TEXT_BAD && status == FLOW__TEXT_DEEP))
    FUZZ_CHECK(status == want, "%.200s: Jansson says %d, the parser %d", text,
               want, status);
  if (got && expect)
    FUZZ_CHECK(strcmp(got, expect) == 0,
               "%.200s: Jansson gives %.200s, the parser %.200s", text,
               expect, got);
  free(got);
  free(expect);
  free(text);
  lua_pushnil(L);
  lua_setglobal(L, "x");
  return 0;
}
