/*
 * The library functions a sandbox replaces or wraps so that every call has
 * a cost the budgets see, and so that nothing a script can call reveals an
 * address, depends on the process, or lets a script outlive a kill.
 *
 * The count hook never runs inside a C function: a C function that loops
 * over its input would be free, and string.rep("x", 1e9) or a table.concat
 * of a million items would be one instruction.  So:
 *
 *   - Work proportional to the size of the input or of the result is
 *     charged to the instruction budget before it is done (one instruction
 *     per byte of text, per table slot or per argument).  Where the stock
 *     function can be charged up front, it is wrapped; where it cannot (it
 *     calls back into Lua, reads through metamethods, or its cost is not
 *     known in advance) it is rewritten here from the Lua 5.4 manual:
 *     table.concat, insert, remove, unpack and sort, and the pattern
 *     functions in script_pattern.c.
 *   - Numeric arguments given as strings are charged by their length:
 *     converting a string of digits costs as much as reading it.
 *   - tostring, string.format("%s") and print never show an address, and
 *     string.format refuses %p; table.sort is a merge sort, deterministic
 *     for equal elements (the stock one picks a random pivot).
 *   - Every C function that catches errors (pcall, xpcall,
 *     coroutine.resume, a coroutine.wrap function, coroutine.close) raises
 *     again as soon as it returns if the unit has been killed meanwhile,
 *     xpcall's message handler does not run for a kill, and a coroutine
 *     that died of a kill is never closed (its __close methods would run
 *     outside the hook; see flow__sb_check).
 */
#include "script/script_int.h"

#include <limits.h>
#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

/* Charges are collected and paid in batches of this many. */
#define BATCH 1024u

static flow__sandbox *
sb_of(lua_State *L)
{
  return *(flow__sandbox **)lua_getextraspace(L);
}

/*
 * Calls the original (upvalue 1) with the current arguments.  A C function
 * without upvalues of its own runs right in this call's frame, so that its
 * errors name the function and the script's line as they would have
 * ("bad argument #2 to 'format'"); one with upvalues (math.random, whose
 * generator is one) needs a frame of its own.
 */
static int
call_original(lua_State *L)
{
  if (lua_toboolean(L, lua_upvalueindex(2)))
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* Pushes a wrapper f of the function at the top (which it replaces):
   upvalue 1 the original, upvalue 2 whether it can be called directly. */
static void
push_wrapper(lua_State *L, lua_CFunction f)
{
  int direct = lua_iscfunction(L, -1);
  if (direct && lua_getupvalue(L, -1, 1) != NULL) {
    lua_pop(L, 1); /* the upvalue lua_getupvalue pushed */
    direct = 0;
  }
  lua_pushboolean(L, direct);
  lua_pushcclosure(L, f, 2);
}

/* Charges the length of every string argument (they will be read, or
   converted to numbers, in full). */
static void
charge_strings(lua_State *L)
{
  uint64_t n = 0;
  for (int i = 1, top = lua_gettop(L); i <= top; i++)
    if (lua_type(L, i) == LUA_TSTRING)
      n += lua_rawlen(L, i);
  if (n)
    flow__sb_charge(L, n);
}

/* For functions whose arguments are all numbers (math.*, select). */
static int
numeric_args(lua_State *L)
{
  charge_strings(L);
  return call_original(L);
}

static lua_Integer
opt_integer(lua_State *L, int arg, lua_Integer def)
{
  if (lua_type(L, arg) == LUA_TSTRING)
    flow__sb_charge(L, lua_rawlen(L, arg));
  return luaL_optinteger(L, arg, def);
}

static lua_Integer
check_integer(lua_State *L, int arg)
{
  if (lua_type(L, arg) == LUA_TSTRING)
    flow__sb_charge(L, lua_rawlen(L, arg));
  return luaL_checkinteger(L, arg);
}

/* The number of positions from i to j, 0 when empty. */
static uint64_t
span(lua_Integer i, lua_Integer j)
{
  if (j < i)
    return 0;
  uint64_t n = (uint64_t)j - (uint64_t)i + 1;
  return n == 0 ? UINT64_MAX : n;
}

/* A start position relative to a string of len bytes (1-based; negative
   counts from the end; before the start means 1). */
static size_t
start_pos(lua_Integer pos, size_t len)
{
  if (pos > 0)
    return (size_t)pos;
  if (pos == 0 || (lua_Unsigned)-(pos + 1) >= len)
    return 1;
  return len - (size_t)(-pos) + 1;
}

/* An end position (1-based; negative from the end; clipped to len). */
static size_t
end_pos(lua_Integer pos, size_t len)
{
  if (pos > 0)
    return (lua_Unsigned)pos > len ? len : (size_t)pos;
  if (pos == 0 || (lua_Unsigned)-(pos + 1) >= len)
    return 0;
  return len - (size_t)(-pos) + 1;
}

/* ---- base functions ----------------------------------------------------- */

/*
 * tostring(v) as in Lua, except that tables, functions, threads and
 * userdata show their type (or __name) and no address: an address differs
 * between runs and processes, and tells a script about the host's memory.
 */
int
flow__lib_tostring(lua_State *L)
{
  luaL_checkany(L, 1);
  if (luaL_callmeta(L, 1, "__tostring")) {
    if (!lua_isstring(L, -1))
      return luaL_error(L, "'__tostring' must return a string");
    lua_tolstring(L, -1, NULL); /* a number becomes its text */
    return 1;
  }
  switch (lua_type(L, 1)) {
  case LUA_TNUMBER:
  case LUA_TSTRING:
    lua_pushvalue(L, 1);
    lua_tolstring(L, -1, NULL);
    break;
  case LUA_TBOOLEAN:
    lua_pushstring(L, lua_toboolean(L, 1) ? "true" : "false");
    break;
  case LUA_TNIL:
    lua_pushliteral(L, "nil");
    break;
  default:
    if (luaL_getmetafield(L, 1, "__name") != LUA_TSTRING) {
      lua_settop(L, 1);
      lua_pushstring(L, luaL_typename(L, 1));
    }
    break;
  }
  return 1;
}

static int
sb_tonumber(lua_State *L)
{
  charge_strings(L);
  return call_original(L);
}

/* What pcall and xpcall return, and where the kill check happens when
   the protected function yielded and came back. */
static int
pcall_done(lua_State *L, int status, lua_KContext keep)
{
  flow__sb_check(L);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int)keep;
}

static int
sb_pcall(lua_State *L)
{
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1); /* the first result when all goes well */
  lua_insert(L, 1);
  int status =
      lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, pcall_done);
  return pcall_done(L, status, 0);
}

/*
 * The message handler xpcall really installs.  A kill is raised from
 * inside the count hook, and Lua runs the message handler right there,
 * where hooks are off: the script's handler would run unbudgeted.  So for
 * a kill (or a refusal) the error goes through untouched.
 */
static int
xpcall_handler(lua_State *L)
{
  flow__sandbox *sb = sb_of(L);
  if (sb->killed != FLOW__KILL_NONE || sb->refused || sb->enomem)
    return 1;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

static int
sb_xpcall(lua_State *L)
{
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, xpcall_handler, 1);
  lua_replace(L, 2);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2); /* f, handler, true, f, args... */
  /* Not yieldable: a coroutine suspended inside xpcall keeps the message
     handler in a slot that Lua 5.4.4 does not clear when the coroutine is
     closed, and a __close handler can then put script code there that a
     kill would run with hooks off (fixed in 5.4.8).  pcall, which sets no
     handler, still lets the function yield. */
  int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
  return pcall_done(L, status, 2);
}

/* ---- coroutines --------------------------------------------------------- */

/* A switch to a coroutine and back costs as much as this many
   instructions, most of it in C. */
#define SWITCH_COST 50

/* coroutine.resume: nothing runs on after a kill. */
static int
sb_checked(lua_State *L)
{
  flow__sb_charge(L, SWITCH_COST);
  int n = call_original(L);
  flow__sb_check(L);
  return n;
}

/*
 * Closing a coroutine runs its __close handlers in C, which may close
 * another coroutine, and so on: Lua 5.4.4 does not count that nesting
 * against its C-call limit (fixed in 5.4.5), so a chain of a few thousand
 * overflows the C stack.  The sandbox counts it.  Returns 0, or raises.
 */

static void
close_enter(lua_State *L)
{
  flow__sandbox *sb = sb_of(L);
  if (sb->close_depth >= FLOW__MAX_CLOSE_DEPTH)
    luaL_error(L, "coroutine.close: more than %d coroutines closed inside "
                  "each other's __close handlers",
               FLOW__MAX_CLOSE_DEPTH);
  sb->close_depth++;
}

static void
close_leave(lua_State *L)
{
  sb_of(L)->close_depth--;
}

/* coroutine.close: counted as above; nothing runs on after a kill. */
static int
sb_co_close(lua_State *L)
{
  flow__sb_charge(L, SWITCH_COST);
  close_enter(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  int st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  close_leave(L);
  flow__sb_check(L);
  if (st != LUA_OK)
    return lua_error(L);
  return lua_gettop(L);
}

static void
close_thread(lua_State *co, lua_State *L)
{
#if LUA_VERSION_RELEASE_NUM >= 50406
  lua_closethread(co, L);
#else
  (void)L;
  lua_resetthread(co);
#endif
}

/* Calls the coroutine of a coroutine.wrap function (upvalue 1). */
static int
wrap_call(lua_State *L)
{
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  flow__sb_charge(L, SWITCH_COST);
  int narg = lua_gettop(L);
  if (!lua_checkstack(co, narg))
    return luaL_error(L, "too many arguments to resume");
  lua_xmove(L, co, narg);
  int nres = 0;
  int st = lua_resume(co, L, narg, &nres);
  if (st == LUA_OK || st == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      return luaL_error(L, "too many results to resume");
    }
    lua_xmove(co, L, nres);
    flow__sb_check(L);
    return nres;
  }
  lua_xmove(co, L, 1); /* the error */
  /* A coroutine killed by the hook died with hooks off: closing it would
     run its __close methods unbudgeted.  The kill goes on instead. */
  flow__sb_check(L);
  int dead = lua_status(co);
  if (dead != LUA_OK && dead != LUA_YIELD) {
    close_enter(L);
    close_thread(co, L);
    close_leave(L);
    flow__sb_check(L);
  }
  if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1); /* where the wrap function was called */
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int
sb_co_wrap(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, wrap_call, 1);
  return 1;
}

/* ---- strings ------------------------------------------------------------ */

/* string.rep(s, n [, sep]): refused before it is built when the result
   cannot fit the memory budget; charged by its length. */
static int
sb_str_rep(lua_State *L)
{
  size_t l, lsep = 0;
  luaL_checklstring(L, 1, &l);
  lua_Integer n = check_integer(L, 2);
  luaL_optlstring(L, 3, "", &lsep);
  if (n <= 0 || l + lsep == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  flow__sandbox *sb = sb_of(L);
  uint64_t total;
  if ((uint64_t)n > (UINT64_MAX - lsep) / ((uint64_t)l + lsep))
    return luaL_error(L, "resulting string too large");
  total = (uint64_t)l * (uint64_t)n + (uint64_t)lsep * (uint64_t)(n - 1);
  if (sb->limit_on && total > sb->mem_limit)
    return flow__sb_kill_mem(L);
  if (sb->limit_on && sb->mem + sb->extra + total > sb->mem_limit) {
    lua_gc(L, LUA_GCCOLLECT); /* maybe the garbage makes room */
    if (sb->mem + sb->extra + total > sb->mem_limit)
      return flow__sb_kill_mem(L);
  }
  flow__sb_charge(L, total);
  return call_original(L);
}

/* Functions that read or build a string as long as their first argument:
   upper, lower, reverse. */
static int
sb_str_whole(lua_State *L)
{
  size_t l;
  luaL_checklstring(L, 1, &l);
  flow__sb_charge(L, (uint64_t)l + 1);
  return call_original(L);
}

/* string.byte(s [, i [, j]]) and string.sub(s [, i [, j]]): charged by
   the part of s they read. */
static int
sb_str_slice(lua_State *L, int sub)
{
  size_t l;
  luaL_checklstring(L, 1, &l);
  lua_Integer a = opt_integer(L, 2, 1);
  size_t i = start_pos(a, l);
  size_t j = end_pos(opt_integer(L, 3, sub ? -1 : a), l);
  flow__sb_charge(L, (i <= j ? j - i + 1 : 0) + 1);
  return call_original(L);
}

static int
sb_str_byte(lua_State *L)
{
  return sb_str_slice(L, 0);
}

static int
sb_str_sub(lua_State *L)
{
  return sb_str_slice(L, 1);
}

/* string.char(...), utf8.char(...), table.pack(...): one per argument. */
static int
sb_per_arg(lua_State *L)
{
  charge_strings(L);
  flow__sb_charge(L, (uint64_t)lua_gettop(L) + 1);
  return call_original(L);
}

/* string.pack, string.unpack, string.packsize: the strings they read, and
   every count written in the format (c1000 makes 1000 bytes). */
static int
sb_str_packing(lua_State *L)
{
  size_t fl;
  const char *f = luaL_checklstring(L, 1, &fl);
  uint64_t n = 0, num = 0;
  for (size_t i = 0; i < fl; i++) {
    if (f[i] >= '0' && f[i] <= '9') {
      num = num > UINT64_MAX / 20 ? UINT64_MAX / 2 : num * 10 +
                                                         (uint64_t)(f[i] - '0');
    } else {
      n += num;
      num = 0;
    }
  }
  flow__sb_charge(L, n + num);
  charge_strings(L);
  return call_original(L);
}

/*
 * string.format: %p is refused (it prints an address); a %s argument that
 * is not a string goes through our tostring first (the stock one would
 * print "table: 0x55d0c3a4"); the format and every string argument are
 * charged by length.  Widths and precisions are limited by Lua itself (two
 * digits), so no conversion can grow without bound.
 */
static int
sb_str_format(lua_State *L)
{
  size_t fl;
  const char *f = luaL_checklstring(L, 1, &fl);
  int top = lua_gettop(L), arg = 1;
  uint64_t cost = fl;
  for (size_t i = 0; i < fl; i++) {
    if (f[i] != '%')
      continue;
    if (++i >= fl)
      break;
    if (f[i] == '%')
      continue;
    while (i < fl && f[i] != 0 && strchr("-+ #0", f[i]) != NULL)
      i++;
    while (i < fl && f[i] >= '0' && f[i] <= '9')
      i++;
    if (i < fl && f[i] == '.') {
      i++;
      while (i < fl && f[i] >= '0' && f[i] <= '9')
        i++;
    }
    if (i >= fl)
      break;
    if (f[i] == 'p')
      return luaL_error(L, "%%p is not available in service scripts");
    if (++arg > top)
      continue; /* the stock format reports the missing argument */
    if (f[i] == 's' && lua_type(L, arg) != LUA_TSTRING &&
        lua_type(L, arg) != LUA_TNUMBER) {
      lua_pushcfunction(L, flow__lib_tostring);
      lua_pushvalue(L, arg);
      lua_call(L, 1, 1);
      lua_replace(L, arg);
    }
    if (lua_type(L, arg) == LUA_TSTRING)
      cost += lua_rawlen(L, arg);
    cost++;
  }
  flow__sb_charge(L, cost);
  return call_original(L);
}

/* Arithmetic on strings ("10" + 1): the string metatable's metamethods,
   as stock Lua has them, but charged by the length converted. */
static int
to_number(lua_State *L, int idx)
{
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    return 1;
  }
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (s == NULL)
    return 0;
  flow__sb_charge(L, len);
  return lua_stringtonumber(L, s) == len + 1;
}

static int
string_arith(lua_State *L, int op, const char *event)
{
  lua_settop(L, 2);
  if (to_number(L, 1) && to_number(L, 2)) {
    lua_arith(L, op);
    return 1;
  }
  lua_settop(L, 2);
  /* The other operand may know how (a table with its own __add). */
  if (lua_type(L, 2) != LUA_TSTRING && luaL_getmetafield(L, 2, event)) {
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
  }
  return luaL_error(L, "attempt to %s a '%s' with a '%s'", event + 2,
                    luaL_typename(L, 1), luaL_typename(L, 2));
}

#define ARITH(name, op)                                                        \
  static int arith_##name(lua_State *L)                                       \
  {                                                                            \
    return string_arith(L, op, "__" #name);                                    \
  }
ARITH(add, LUA_OPADD)
ARITH(sub, LUA_OPSUB)
ARITH(mul, LUA_OPMUL)
ARITH(mod, LUA_OPMOD)
ARITH(pow, LUA_OPPOW)
ARITH(div, LUA_OPDIV)
ARITH(idiv, LUA_OPIDIV)
ARITH(unm, LUA_OPUNM)
#undef ARITH

/* ---- tables ------------------------------------------------------------- */

/* table.concat(list [, sep [, i [, j]]]), charged per item and byte. */
static int
sb_tab_concat(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t lsep;
  const char *sep = luaL_optlstring(L, 2, "", &lsep);
  lua_Integer i = opt_integer(L, 3, 1);
  lua_Integer last =
      lua_isnoneornil(L, 4) ? luaL_len(L, 1) : check_integer(L, 4);
  uint64_t owed = 0;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (; i <= last; i++) {
    lua_geti(L, 1, i);
    if (!lua_isstring(L, -1))
      return luaL_error(L, "invalid value (%s) at index %I in table for "
                           "'concat'",
                        luaL_typename(L, -1), (LUAI_UACINT)i);
    size_t l;
    lua_tolstring(L, -1, &l);
    owed += 1 + l + lsep;
    if (owed >= BATCH) {
      flow__sb_charge(L, owed);
      owed = 0;
    }
    luaL_addvalue(&b);
    if (i == last)
      break;
    luaL_addlstring(&b, sep, lsep);
  }
  flow__sb_charge(L, owed);
  luaL_pushresult(&b);
  return 1;
}

/* table.insert(list, [pos,] value): shifts list[pos..#list] up. */
static int
sb_tab_insert(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  /* Wrapping like Lua's own: a __len may claim math.maxinteger. */
  lua_Integer first_free = (lua_Integer)((lua_Unsigned)luaL_len(L, 1) + 1u);
  lua_Integer pos = first_free;
  switch (lua_gettop(L)) {
  case 2:
    break;
  case 3:
    pos = check_integer(L, 2);
    luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)first_free, 2,
                  "position out of bounds");
    flow__sb_charge(L, (uint64_t)(first_free - pos));
    for (lua_Integer k = first_free; k > pos; k--) {
      lua_geti(L, 1, k - 1);
      lua_seti(L, 1, k);
    }
    break;
  default:
    return luaL_error(L, "wrong number of arguments to 'insert'");
  }
  lua_seti(L, 1, pos); /* the value is on top */
  return 0;
}

/* table.remove(list [, pos]): shifts list[pos+1..#list] down. */
static int
sb_tab_remove(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer size = luaL_len(L, 1);
  lua_Integer pos = opt_integer(L, 2, size);
  /* pos may be #list + 1 (and #list may be 0, making pos 0 valid). */
  if (pos != size)
    luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 2,
                  "position out of bounds");
  lua_geti(L, 1, pos);
  if (pos < size)
    flow__sb_charge(L, (uint64_t)(size - pos));
  for (; pos < size; pos++) {
    lua_geti(L, 1, pos + 1);
    lua_seti(L, 1, pos);
  }
  lua_pushnil(L);
  lua_seti(L, 1, pos);
  return 1;
}

/* table.move(a1, f, e, t [, a2]) touches e - f + 1 slots in C. */
static int
sb_tab_move(lua_State *L)
{
  lua_Integer f = check_integer(L, 2);
  lua_Integer e = check_integer(L, 3);
  flow__sb_charge(L, span(f, e));
  return call_original(L);
}

/* table.unpack(list [, i [, j]]) */
static int
sb_tab_unpack(lua_State *L)
{
  lua_Integer i = opt_integer(L, 2, 1);
  lua_Integer e = lua_isnoneornil(L, 3) ? luaL_len(L, 1) : check_integer(L, 3);
  if (i > e)
    return 0;
  lua_Unsigned n = (lua_Unsigned)e - (lua_Unsigned)i;
  if (n >= (lua_Unsigned)INT_MAX - 1)
    return luaL_error(L, "too many results to unpack");
  flow__sb_charge(L, n + 1);
  if (!lua_checkstack(L, (int)(n + 1)))
    return luaL_error(L, "too many results to unpack");
  for (; i < e; i++)
    lua_geti(L, 1, i);
  lua_geti(L, 1, e);
  return (int)(n + 1);
}

/* a < b for table.sort: the comparator (argument 2) or Lua's <. */
static int
sort_less(lua_State *L, int a, int b)
{
  if (lua_isnil(L, 2))
    return lua_compare(L, a, b, LUA_OPLT);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, a < 0 ? a - 1 : a);
  lua_pushvalue(L, b < 0 ? b - 2 : b);
  lua_call(L, 2, 1);
  int r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/*
 * table.sort(list [, comp]): a bottom-up merge sort through two scratch
 * tables.  It makes at most n log2 n comparisons whatever the comparator
 * does (a comparator that lies cannot make it run longer or read out of
 * bounds), each charged, and it is stable, so equal elements keep their
 * order in every process (the stock sort picks a random pivot).
 */
static int
sb_tab_sort(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  if (n < 2)
    return 0;
  luaL_argcheck(L, n < INT_MAX, 1, "array too big");
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  flow__sb_charge(L, (uint64_t)n * 2);
  lua_createtable(L, (int)n, 0); /* 3 */
  lua_createtable(L, (int)n, 0); /* 4 */
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, 1, k);
    lua_rawseti(L, 3, k);
  }
  int src = 3, dst = 4;
  uint64_t owed = 0;
  for (lua_Integer width = 1; width < n; width *= 2) {
    for (lua_Integer lo = 1; lo <= n; lo += 2 * width) {
      lua_Integer mid = lo + width > n + 1 ? n + 1 : lo + width;
      lua_Integer hi = lo + 2 * width > n + 1 ? n + 1 : lo + 2 * width;
      lua_Integer a = lo, b = mid, k = lo;
      while (a < mid && b < hi) {
        lua_rawgeti(L, src, a);
        lua_rawgeti(L, src, b);
        /* Take from the right run only when it is strictly smaller. */
        if (sort_less(L, -1, -2)) {
          lua_rawseti(L, dst, k++);
          lua_pop(L, 1);
          b++;
        } else {
          lua_pop(L, 1);
          lua_rawseti(L, dst, k++);
          a++;
        }
        if (++owed >= BATCH) {
          flow__sb_charge(L, owed);
          owed = 0;
        }
      }
      for (; a < mid; a++) {
        lua_rawgeti(L, src, a);
        lua_rawseti(L, dst, k++);
      }
      for (; b < hi; b++) {
        lua_rawgeti(L, src, b);
        lua_rawseti(L, dst, k++);
      }
    }
    flow__sb_charge(L, owed + (uint64_t)n);
    owed = 0;
    int t = src;
    src = dst;
    dst = t;
  }
  for (lua_Integer k = 1; k <= n; k++) {
    lua_rawgeti(L, src, k);
    lua_seti(L, 1, k);
  }
  return 0;
}

/* ---- utf8 --------------------------------------------------------------- */

/* utf8.codes, codepoint, len and offset walk at most their whole first
   argument; charge it. */
static int
sb_utf8_walk(lua_State *L)
{
  size_t l;
  luaL_checklstring(L, 1, &l);
  flow__sb_charge(L, (uint64_t)l + 1);
  charge_strings(L);
  return call_original(L);
}

/* ---- installing --------------------------------------------------------- */

/* Replaces t[name] (t at the stack top) with f, the old value as its
   upvalue. */
static void
wrap_field(lua_State *L, const char *name, lua_CFunction f)
{
  lua_getfield(L, -1, name);
  push_wrapper(L, f);
  lua_setfield(L, -2, name);
}

static void
set_field(lua_State *L, const char *name, lua_CFunction f)
{
  lua_pushcfunction(L, f);
  lua_setfield(L, -2, name);
}

void
flow__lib_install(lua_State *L)
{
  /* The globals are at the top. */
  set_field(L, "tostring", flow__lib_tostring);
  wrap_field(L, "tonumber", sb_tonumber);
  wrap_field(L, "select", numeric_args);
  set_field(L, "pcall", sb_pcall);
  set_field(L, "xpcall", sb_xpcall);

  lua_getfield(L, -1, LUA_COLIBNAME);
  wrap_field(L, "resume", sb_checked);
  wrap_field(L, "close", sb_co_close);
  set_field(L, "wrap", sb_co_wrap);
  lua_pop(L, 1);

  lua_getfield(L, -1, LUA_STRLIBNAME);
  flow__pattern_install(L);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  wrap_field(L, "rep", sb_str_rep);
  wrap_field(L, "format", sb_str_format);
  wrap_field(L, "byte", sb_str_byte);
  wrap_field(L, "sub", sb_str_sub);
  wrap_field(L, "char", sb_per_arg);
  wrap_field(L, "upper", sb_str_whole);
  wrap_field(L, "lower", sb_str_whole);
  wrap_field(L, "reverse", sb_str_whole);
  wrap_field(L, "pack", sb_str_packing);
  wrap_field(L, "unpack", sb_str_packing);
  wrap_field(L, "packsize", sb_str_packing);
  /* Strings get their methods and arithmetic from a metatable of our
     own: the stock one converts numeric strings uncharged. */
  static const luaL_Reg arith[] = {
    { "__add", arith_add }, { "__sub", arith_sub },   { "__mul", arith_mul },
    { "__mod", arith_mod }, { "__pow", arith_pow },   { "__div", arith_div },
    { "__idiv", arith_idiv }, { "__unm", arith_unm }, { NULL, NULL },
  };
  lua_createtable(L, 0, 9);
  luaL_setfuncs(L, arith, 0);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "");
  lua_insert(L, -2);
  lua_setmetatable(L, -2);
  lua_pop(L, 2); /* "" and string */

  lua_getfield(L, -1, LUA_TABLIBNAME);
  set_field(L, "concat", sb_tab_concat);
  set_field(L, "insert", sb_tab_insert);
  set_field(L, "remove", sb_tab_remove);
  set_field(L, "unpack", sb_tab_unpack);
  set_field(L, "sort", sb_tab_sort);
  wrap_field(L, "move", sb_tab_move);
  wrap_field(L, "pack", sb_per_arg);
  lua_pop(L, 1);

  lua_getfield(L, -1, LUA_UTF8LIBNAME);
  wrap_field(L, "char", sb_per_arg);
  wrap_field(L, "codes", sb_utf8_walk);
  wrap_field(L, "codepoint", sb_utf8_walk);
  wrap_field(L, "len", sb_utf8_walk);
  wrap_field(L, "offset", sb_utf8_walk);
  lua_pop(L, 1);

  /* Every math function takes numbers, which may come as strings. */
  lua_getfield(L, -1, LUA_MATHLIBNAME);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -1) == LUA_TFUNCTION) {
      push_wrapper(L, numeric_args);
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4); /* replacing an existing field is allowed */
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}
