/*
 * Frozen globals: once a service script has run and its definition has
 * been read, nothing a handler can reach that outlives a run may change,
 * so that no case can leave anything behind for the next one, and no kill
 * half-way through a handler can leave shared state half-changed.
 *
 * What outlives a run is everything reachable from the globals, the
 * string metatable and the returned definition: library tables, the
 * script's own tables, metatables, and the upvalues of every function
 * found on the way.  flow__freeze walks all of it (with an explicit work
 * list, not C recursion) and then:
 *
 *   - freezes every table in place.  Its contents move to a hidden table,
 *     and it gets a metatable whose __index is that table, whose
 *     __newindex refuses ("attempt to change a read-only table ..."), with
 *     __len and __pairs over the contents and a __metatable field so that
 *     setmetatable cannot undo it.  The metamethods the table had (its
 *     __call, __eq, __index fallback, ...) are copied over.  Identity is
 *     kept: `_G`, `string` and the script's tables are the same values,
 *     only read-only.  rawget, rawlen, next and pairs read frozen tables
 *     as their contents; rawset refuses.
 *   - records the value of every upvalue of every Lua function, and puts
 *     them back after every run (flow__freeze_restore), so that a handler
 *     counting in `local n = 0` starts from 0 for every case.
 *   - refuses what cannot be frozen or restored: a coroutine or a gmatch
 *     iterator made while loading keeps its own state.
 *
 * A frozen table used as a metatable keeps working for new tables: when a
 * script calls setmetatable(obj, Class) with a frozen Class, obj gets a
 * "twin" of Class (a copy of its contents made once, whose __metatable is
 * Class), so getmetatable(obj) == Class still holds.  The string
 * metatable, which Lua reads raw on every s:upper(), gets a twin too.
 *
 * pairs and next visit keys in a fixed order (numbers, then strings by
 * their bytes, then false and true), whatever order Lua's per-process hash
 * seed puts them in; the order is computed when a traversal starts and
 * remembered in a weak table while it goes on.
 */
#include "script/script_int.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Keys (their addresses) in the metatable of a frozen table and in the
   registry.  Scripts cannot make light userdata, so cannot forge them. */
static const char contents_key = 'c'; /* frozen metatable: the contents */
static const char list_key = 'l';     /* frozen metatable: was a list */
static const char twin_key = 't';     /* frozen metatable: its twin */
static const char restore_key = 'r';  /* registry: upvalues to restore */
static const char orders_key = 'o';   /* registry: table -> key order */
static const char nil_mark = 'n';     /* an upvalue that was nil */
static const char allowed_key = 'a';  /* registry: values left alone */
static const char sealed_key = 's';   /* frozen metatable: by setmetatable */

#define READ_ONLY                                                              \
  "attempt to change a read-only table (service globals are frozen after "  \
  "loading; keep per-case values in case.data)"
#define SEALED                                                                 \
  "attempt to change a metatable: a table is read-only once it is a "       \
  "metatable (give it all its fields before the first setmetatable)"

/* The error for a change to the frozen table at idx. */
static int
read_only_error(lua_State *L, int idx)
{
  int sealed = 0;
  if (lua_getmetatable(L, idx)) {
    sealed = lua_rawgetp(L, -1, &sealed_key) != LUA_TNIL;
    lua_pop(L, 2);
  }
  return luaL_error(L, sealed ? SEALED : READ_ONLY);
}

int
flow__frozen_contents(lua_State *L, int idx, int *list)
{
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
    return 0;
  if (lua_rawgetp(L, -1, &contents_key) != LUA_TTABLE) {
    lua_pop(L, 2);
    return 0;
  }
  if (list) {
    lua_rawgetp(L, -2, &list_key);
    *list = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_remove(L, -2);
  return 1;
}

void
flow__frozen_thaw_arg(lua_State *L, int idx)
{
  idx = lua_absindex(L, idx);
  if (flow__frozen_contents(L, idx, NULL))
    lua_replace(L, idx);
}

/* ---- the metamethods of a frozen table ---------------------------------- */

static int
ro_newindex(lua_State *L)
{
  return read_only_error(L, 1);
}

static int
ro_len(lua_State *L)
{
  if (!flow__frozen_contents(L, 1, NULL))
    return luaL_error(L, "attempt to get length of a read-only table");
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
  return 1;
}

/* __index when the table had a function as __index: its contents first,
   then the function, called with the frozen table itself. */
static int
ro_index_fn(lua_State *L)
{
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
    return 1;
  lua_pop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

/* ---- a fixed order of keys ---------------------------------------------- */

typedef struct key_info {
  int kind; /* 0 number, 1 string, 2 boolean */
  int isint;
  lua_Integer i;
  lua_Number n;
  const char *s;
  size_t len;
  lua_Integer slot; /* where the key is in the unsorted list */
} key_info;

/* Describes the key at idx; 0 when its type has no fixed order. */
static int
describe(lua_State *L, int idx, key_info *k)
{
  memset(k, 0, sizeof *k);
  switch (lua_type(L, idx)) {
  case LUA_TNUMBER:
    k->kind = 0;
    k->isint = lua_isinteger(L, idx);
    if (k->isint)
      k->i = lua_tointeger(L, idx);
    else
      k->n = lua_tonumber(L, idx);
    return 1;
  case LUA_TSTRING:
    k->kind = 1;
    k->s = lua_tolstring(L, idx, &k->len);
    return 1;
  case LUA_TBOOLEAN:
    k->kind = 2;
    k->i = lua_toboolean(L, idx);
    return 1;
  default:
    return 0;
  }
}

/* An integer against a float, exactly (no rounding of big integers). */
static int
int_float_cmp(lua_Integer i, lua_Number f)
{
  if (f >= 9223372036854775808.0)
    return -1;
  if (f < -9223372036854775808.0)
    return 1;
  lua_Number fl = floor(f);
  lua_Integer fi = (lua_Integer)fl;
  if (i != fi)
    return i < fi ? -1 : 1;
  return f > fl ? -1 : 0;
}

static int
key_cmp(const void *pa, const void *pb)
{
  const key_info *a = pa, *b = pb;
  if (a->kind != b->kind)
    return a->kind < b->kind ? -1 : 1;
  if (a->kind == 1) {
    size_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->s, b->s, n);
    if (r != 0)
      return r < 0 ? -1 : 1;
    return (a->len > b->len) - (a->len < b->len);
  }
  if (a->kind == 2 || (a->isint && b->isint))
    return (a->i > b->i) - (a->i < b->i);
  if (!a->isint && !b->isint)
    return (a->n > b->n) - (a->n < b->n);
  if (a->isint)
    return int_float_cmp(a->i, b->n);
  return -int_float_cmp(b->i, a->n);
}

/*
 * Pushes the keys of the table at r (absolute), sorted, as a list.
 *
 * Every step of both walks is charged as it goes: one lua_next on a table
 * whose keys all collide costs as much as the whole chain, so counting
 * first and charging after would let such a table run long past the CPU
 * budget (and a kill that unwinds through a C __close handler would not
 * stop it).  The second walk fills at most the n slots the first counted
 * and sorts only what it filled: the allocations in between may collect,
 * and a table can shrink (never grow) meanwhile.
 */
static void
push_order(lua_State *L, int r)
{
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, r)) {
    lua_pop(L, 1);
    if ((++n & 63) == 0)
      flow__sb_charge(L, 64);
  }
  flow__sb_charge(L, (n & 63) + 1);
  if (n >= INT32_MAX)
    luaL_error(L, "table too big to visit");
  lua_createtable(L, (int)n, 0);
  int keys = lua_gettop(L);
  key_info *ki = lua_newuserdatauv(L, n * sizeof *ki + 1, 0);
  size_t i = 0;
  lua_pushnil(L);
  while (i < n && lua_next(L, r)) {
    lua_pop(L, 1);
    if ((i & 63) == 63)
      flow__sb_charge(L, 64);
    if (!describe(L, -1, &ki[i]))
      luaL_error(L,
                 "cannot visit the keys of this table in a fixed order: "
                 "one of them is a %s (use strings or numbers as keys)",
                 luaL_typename(L, -1));
    lua_pushvalue(L, -1);
    lua_rawseti(L, keys, (lua_Integer)i + 1);
    ki[i].slot = (lua_Integer)i + 1;
    /* A string key stays valid: the keys list holds it. */
    if (ki[i].kind == 1) {
      lua_rawgeti(L, keys, (lua_Integer)i + 1);
      ki[i].s = lua_tolstring(L, -1, &ki[i].len);
      lua_pop(L, 1);
    }
    i++;
  }
  if (i == n)
    lua_pop(L, 1); /* lua_next left the last key: the walk stopped early */
  n = i;
  uint64_t lg = 1;
  while (((uint64_t)1 << lg) < n)
    lg++;
  flow__sb_charge(L, n * lg / 4);
  qsort(ki, n, sizeof *ki, key_cmp);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, keys, ki[i].slot);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_replace(L, keys);
  lua_settop(L, keys);
}

/* next(t [, k]) in the fixed order, reading a frozen table's contents. */
static int
sb_next(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (!flow__frozen_contents(L, 1, NULL))
    lua_pushvalue(L, 1);
  /* 3: the table read; 4: the orders; 5: this table's order */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &orders_key);
  int fresh = lua_isnil(L, 2);
  if (!fresh) {
    lua_pushvalue(L, 3);
    fresh = lua_rawget(L, 4) != LUA_TTABLE;
    if (fresh)
      lua_pop(L, 1);
  }
  if (fresh) {
    push_order(L, 3);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 5);
    lua_rawset(L, 4);
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, 5), at = 1;
  if (!lua_isnil(L, 2)) {
    /* The first key after k (k itself may be gone by now). */
    key_info want, here;
    if (!describe(L, 2, &want))
      return luaL_error(L, "invalid key to 'next'");
    lua_Integer lo = 1, hi = n + 1;
    while (lo < hi) {
      lua_Integer mid = lo + (hi - lo) / 2;
      lua_rawgeti(L, 5, mid);
      describe(L, -1, &here);
      int c = key_cmp(&here, &want);
      lua_pop(L, 1);
      if (c <= 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    at = lo;
    flow__sb_charge(L, 1);
  }
  for (; at <= n; at++) {
    lua_rawgeti(L, 5, at);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, 3) != LUA_TNIL)
      return 2;
    lua_pop(L, 2);
  }
  lua_pushnil(L);
  return 1;
}

static int
sb_pairs(lua_State *L)
{
  luaL_checkany(L, 1);
  if (flow__frozen_contents(L, 1, NULL)) {
    lua_settop(L, 1);
  } else if (luaL_getmetafield(L, 1, "__pairs") != LUA_TNIL) {
    lua_pushvalue(L, 1);
    lua_call(L, 1, 3);
    return 3;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushcfunction(L, sb_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* __pairs of a frozen table, for anything that asks the metatable. */
static int
ro_pairs(lua_State *L)
{
  lua_pushcfunction(L, sb_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* ---- raw access ---------------------------------------------------------- */

static int
sb_rawget(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  int t = flow__frozen_contents(L, 1, NULL) ? 3 : 1;
  lua_pushvalue(L, 2);
  lua_rawget(L, t);
  return 1;
}

static int
sb_rawset(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  lua_settop(L, 3);
  if (flow__frozen_contents(L, 1, NULL))
    return read_only_error(L, 1);
  lua_rawset(L, 1);
  return 1;
}

static int
sb_rawlen(lua_State *L)
{
  int t = lua_type(L, 1);
  luaL_argexpected(L, t == LUA_TTABLE || t == LUA_TSTRING, 1,
                   "table or string");
  int idx = t == LUA_TTABLE && flow__frozen_contents(L, 1, NULL) ? -1 : 1;
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, idx));
  return 1;
}

/* Pushes a new table with the raw contents of the table at src. */
static void
push_copy(lua_State *L, int src)
{
  src = lua_absindex(L, src);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, src)) {
    flow__sb_charge(L, 1); /* per key: see push_order */
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  flow__sb_charge(L, 1);
}

/*
 * The metamethods a metatable may not have, and why.  Lua looks every
 * metamethod up in the metatable when it needs it, and the collector reads
 * __mode at every cycle, so they are refused wherever a table becomes a
 * metatable, and a metatable cannot change afterwards (see seal).
 *
 *   __gc      would run script code whenever the collector chooses,
 *             outside every budget;
 *   __mode    weak tables let a case see when the collector ran, so what
 *             other cases allocated, and Lua 5.4.4 frees a weakly held
 *             __newindex table inside its own resize (fixed in 5.4.8);
 *   __concat  Debian's Lua 5.4.4 keeps a stale stack pointer across a
 *             __concat handler that grows the stack (upstream 5.4.5 fixed
 *             it in the same change as CVE-2022-33099; Debian took only
 *             half).
 */
static void
check_withheld(lua_State *L, int t)
{
  static const struct {
    const char *key, *msg;
  } withheld[] = {
    { "__gc", "setmetatable: __gc finalizers are not available in service "
              "scripts" },
    { "__mode", "setmetatable: weak tables (__mode) are not available in "
                "service scripts" },
    { "__concat", "setmetatable: __concat metamethods are not available in "
                  "service scripts (join with tostring(a) .. tostring(b) "
                  "instead)" },
  };
  t = lua_absindex(L, t);
  for (size_t i = 0; i < sizeof withheld / sizeof withheld[0]; i++) {
    lua_pushstring(L, withheld[i].key);
    int ty = lua_rawget(L, t);
    lua_pop(L, 1);
    if (ty != LUA_TNIL)
      luaL_error(L, "%s", withheld[i].msg);
  }
}

struct freezer {
  lua_State *L;
  int seen;    /* value -> true; for tables, later: their contents */
  int tables;  /* the tables to freeze, 1..ntables */
  int metas;   /* their new metatables, same positions */
  int work;    /* values still to look at, 1..nwork */
  int restore; /* upvalue triples: function, index, value */
  lua_Integer ntables, nwork, nrestore;
  int *line;
  char *msg;
  size_t len;
  int refused;
};
typedef struct freezer freezer;

static void push_frozen_meta(freezer *fz, int t, int s);

/*
 * Makes the table at idx read-only in place, as freezing does, but only it
 * (what it refers to stays as it is): what setmetatable does to a table
 * the first time it becomes a metatable.
 */
static void
seal(lua_State *L, int idx)
{
  idx = lua_absindex(L, idx);
  check_withheld(L, idx);
  freezer fz;
  memset(&fz, 0, sizeof fz);
  fz.L = L;
  lua_newtable(L); /* nothing else is being frozen now */
  fz.seen = lua_gettop(L);
  push_copy(L, idx);
  int c = lua_gettop(L);
  push_frozen_meta(&fz, idx, c);
  lua_pushboolean(L, 1);
  lua_rawsetp(L, -2, &sealed_key);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_rawset(L, idx);
  }
  lua_setmetatable(L, idx);
  lua_settop(L, fz.seen - 1);
}

/*
 * setmetatable(t, mt) without the withheld metamethods above, and with mt
 * read-only from then on: the first setmetatable with a table seals it,
 * and every object gets mt's twin (see the top of the file) as its real
 * metatable, while getmetatable still answers mt.
 */
static int
sb_setmetatable(lua_State *L)
{
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  lua_settop(L, 2);
  if (t == LUA_TTABLE && !flow__frozen_contents(L, 2, NULL))
    seal(L, 2);
  lua_settop(L, 2);
  /* After sealing: setmetatable(C, C) finds C read-only now. */
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  if (t == LUA_TTABLE) {
    if (lua_getmetatable(L, 2) &&
        lua_rawgetp(L, 3, &contents_key) == LUA_TTABLE) {
      if (lua_rawgetp(L, 3, &twin_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        /* Frozen while loading, it was never checked. */
        check_withheld(L, 4);
        push_copy(L, 4);
        lua_pushliteral(L, "__metatable");
        if (lua_rawget(L, -2) == LUA_TNIL) {
          lua_pushliteral(L, "__metatable");
          lua_pushvalue(L, 2);
          lua_rawset(L, -4);
        }
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, 3, &twin_key);
      }
      lua_replace(L, 2);
    }
    lua_settop(L, 2);
  }
  lua_setmetatable(L, 1);
  lua_settop(L, 1);
  return 1;
}

void
flow__freeze_allow(lua_State *L, int idx)
{
  idx = lua_absindex(L, idx);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &allowed_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &allowed_key);
  }
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

void
flow__freeze_install(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "rawget", sb_rawget }, { "rawset", sb_rawset },
    { "rawlen", sb_rawlen }, { "next", sb_next },
    { "pairs", sb_pairs },   { "setmetatable", sb_setmetatable },
    { NULL, NULL },
  };
  luaL_setfuncs(L, fns, 0);
  /* Key orders, weak so that they go with their tables. */
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &orders_key);
}

/* ---- freezing ----------------------------------------------------------- */


/* Adds the value at idx to the work list if it can hold other values. */
static void
discover(freezer *fz, int idx)
{
  lua_State *L = fz->L;
  switch (lua_type(L, idx)) {
  case LUA_TTABLE:
  case LUA_TFUNCTION:
  case LUA_TTHREAD:
  case LUA_TUSERDATA:
    lua_pushvalue(L, idx);
    lua_rawseti(L, fz->work, ++fz->nwork);
    break;
  default:
    break;
  }
}

static void
refuse(freezer *fz, int line, const char *what)
{
  if (fz->refused)
    return;
  fz->refused = 1;
  *fz->line = line > 0 ? line : 1;
  snprintf(fz->msg, fz->len, "%s", what);
}

/* The line a coroutine is at (or starts at). */
static int
thread_line(lua_State *co)
{
  lua_Debug ar;
  for (int level = 0; lua_getstack(co, level, &ar); level++)
    if (lua_getinfo(co, "l", &ar) && ar.currentline > 0)
      return ar.currentline;
  if (lua_status(co) == LUA_OK && lua_gettop(co) > 0 &&
      lua_type(co, 1) == LUA_TFUNCTION) {
    lua_pushvalue(co, 1);
    if (lua_getinfo(co, ">S", &ar))
      return ar.linedefined;
  }
  return 1;
}

/* Looks at one value taken from the work list (at the top). */
static void
visit(freezer *fz)
{
  lua_State *L = fz->L;
  int v = lua_gettop(L);
  lua_pushvalue(L, v);
  if (lua_rawget(L, fz->seen) != LUA_TNIL)
    return;
  lua_pop(L, 1);
  lua_pushvalue(L, v);
  lua_pushboolean(L, 1);
  lua_rawset(L, fz->seen);
  flow__sb_charge(L, 1);
  switch (lua_type(L, v)) {
  case LUA_TTABLE:
    if (flow__frozen_contents(L, v, NULL))
      return; /* frozen before */
    lua_pushvalue(L, v);
    lua_rawseti(L, fz->tables, ++fz->ntables);
    lua_pushnil(L);
    while (lua_next(L, v)) {
      discover(fz, -2);
      discover(fz, -1);
      lua_pop(L, 1);
    }
    if (lua_getmetatable(L, v)) {
      /* A protected metatable cannot be reached through getmetatable;
         what it refers to can be, through the table's behaviour. */
      lua_pushliteral(L, "__metatable");
      int protected = lua_rawget(L, -2) != LUA_TNIL;
      lua_pop(L, 1);
      if (!protected) {
        discover(fz, -1);
      } else {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
          discover(fz, -1);
          lua_pop(L, 1);
        }
      }
    }
    break;
  case LUA_TFUNCTION: {
    int lua_fn = !lua_iscfunction(L, v);
    for (int i = 1; lua_getupvalue(L, v, i) != NULL; i++) {
      if (lua_fn) {
        lua_pushvalue(L, v);
        lua_rawseti(L, fz->restore, ++fz->nrestore);
        lua_pushinteger(L, i);
        lua_rawseti(L, fz->restore, ++fz->nrestore);
        if (lua_isnil(L, -1))
          lua_pushlightuserdata(L, (void *)&nil_mark);
        else
          lua_pushvalue(L, -1);
        lua_rawseti(L, fz->restore, ++fz->nrestore);
      }
      discover(fz, -1);
      lua_pop(L, 1);
    }
    break;
  }
  case LUA_TTHREAD: {
    lua_State *co = lua_tothread(L, v);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    int main_thread = lua_tothread(L, -1) == co;
    lua_pop(L, 1);
    if (!main_thread)
      refuse(fz, thread_line(co),
             "a coroutine made while loading cannot be kept for later "
             "events (create it inside the handler that uses it)");
    break;
  }
  default: /* a full userdata */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &allowed_key) == LUA_TTABLE) {
      lua_pushvalue(L, v);
      if (lua_rawget(L, -2) != LUA_TNIL)
        break;
    }
    refuse(fz, 1,
           "an iterator made while loading (string.gmatch) cannot be kept "
           "for later events (call string.gmatch inside the handler)");
    break;
  }
}

/* Copies into the new metatable at f the metamethods of the contents at
   c that a frozen table keeps. */
static void
copy_metamethods(lua_State *L, int c, int f)
{
  static const char *const ours[] = {
    "__index", "__newindex", "__len", "__pairs", "__metatable",
    "__gc",    "__mode",     NULL,
  };
  lua_pushnil(L);
  while (lua_next(L, c)) {
    size_t kl;
    const char *k = lua_type(L, -2) == LUA_TSTRING
                        ? lua_tolstring(L, -2, &kl)
                        : NULL;
    int keep = k != NULL && kl > 2 && k[0] == '_' && k[1] == '_';
    for (size_t i = 0; keep && ours[i]; i++)
      if (strcmp(k, ours[i]) == 0)
        keep = 0;
    if (keep) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, f);
    } else {
      lua_pop(L, 1);
    }
  }
}

/* Builds the metatable that freezes the table at t, whose contents are at
   s; pushes it. */
static void
push_frozen_meta(freezer *fz, int t, int s)
{
  lua_State *L = fz->L;
  lua_createtable(L, 0, 8);
  int f = lua_gettop(L);
  int index_type = LUA_TNIL;
  if (lua_getmetatable(L, t)) {
    int om = lua_gettop(L);
    /* Its metatable's contents: moved away if it is being frozen too. */
    lua_pushvalue(L, om);
    if (lua_rawget(L, fz->seen) != LUA_TTABLE) {
      lua_pop(L, 1);
      if (!flow__frozen_contents(L, om, NULL))
        lua_pushvalue(L, om);
    }
    int c = lua_gettop(L);
    copy_metamethods(L, c, f);
    lua_pushliteral(L, "__len");
    if (lua_rawget(L, c) != LUA_TNIL)
      lua_setfield(L, f, "__len");
    else
      lua_pop(L, 1);
    lua_pushliteral(L, "__metatable");
    if (lua_rawget(L, c) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushvalue(L, om);
    }
    lua_setfield(L, f, "__metatable");
    flow__json_push_list_mt(L);
    if (lua_rawequal(L, -1, om)) {
      lua_pushboolean(L, 1);
      lua_rawsetp(L, f, &list_key);
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "__index");
    index_type = lua_rawget(L, c);
    lua_replace(L, om); /* keep only the old __index */
    lua_settop(L, om);
  } else {
    lua_pushboolean(L, 0);
    lua_setfield(L, f, "__metatable");
    lua_pushnil(L);
  }
  /* The old __index is at the top (or nil). */
  if (index_type == LUA_TFUNCTION) {
    lua_pushvalue(L, s);
    lua_insert(L, -2);
    lua_pushcclosure(L, ro_index_fn, 2);
    lua_setfield(L, f, "__index");
  } else {
    if (index_type != LUA_TNIL) {
      /* Reads fall back from the contents to the old __index. */
      lua_createtable(L, 0, 1);
      lua_insert(L, -2);
      lua_setfield(L, -2, "__index");
      lua_setmetatable(L, s);
    } else {
      lua_pop(L, 1);
    }
    lua_pushvalue(L, s);
    lua_setfield(L, f, "__index");
  }
  if (lua_getfield(L, f, "__len") == LUA_TNIL) {
    lua_pushcfunction(L, ro_len);
    lua_setfield(L, f, "__len");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, ro_newindex);
  lua_setfield(L, f, "__newindex");
  lua_pushcfunction(L, ro_pairs);
  lua_setfield(L, f, "__pairs");
  lua_pushvalue(L, s);
  lua_rawsetp(L, f, &contents_key);
}

int
flow__freeze(lua_State *L, int def, int *line, char *msg, size_t len)
{
  if (def != 0)
    def = lua_absindex(L, def);
  freezer fz;
  memset(&fz, 0, sizeof fz);
  fz.L = L;
  fz.line = line;
  fz.msg = msg;
  fz.len = len;
  lua_newtable(L);
  fz.seen = lua_gettop(L);
  lua_newtable(L);
  fz.tables = lua_gettop(L);
  lua_newtable(L);
  fz.metas = lua_gettop(L);
  lua_newtable(L);
  fz.work = lua_gettop(L);
  lua_newtable(L);
  fz.restore = lua_gettop(L);

  /* The roots. */
  lua_pushglobaltable(L);
  discover(&fz, -1);
  lua_pop(L, 1);
  lua_pushliteral(L, "");
  if (lua_getmetatable(L, -1)) {
    discover(&fz, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (def != 0)
    discover(&fz, def);

  while (fz.nwork > 0 && !fz.refused) {
    lua_rawgeti(L, fz.work, fz.nwork);
    lua_pushnil(L);
    lua_rawseti(L, fz.work, fz.nwork--);
    int top = lua_gettop(L);
    visit(&fz);
    lua_settop(L, top - 1);
  }
  if (fz.refused) {
    lua_settop(L, fz.seen - 1);
    return -1;
  }

  /* Move every table's contents aside (seen[t] = contents). */
  for (lua_Integer i = 1; i <= fz.ntables; i++) {
    lua_rawgeti(L, fz.tables, i);
    push_copy(L, -1);
    lua_rawset(L, fz.seen);
  }
  /* The new metatables, while the old ones can still be read. */
  for (lua_Integer i = 1; i <= fz.ntables; i++) {
    lua_rawgeti(L, fz.tables, i);
    int t = lua_gettop(L);
    lua_pushvalue(L, t);
    lua_rawget(L, fz.seen);
    push_frozen_meta(&fz, t, t + 1);
    lua_rawseti(L, fz.metas, i);
    lua_settop(L, t - 1);
  }
  /* Strings read their metatable raw: they get a twin of it. */
  lua_pushliteral(L, "");
  if (lua_getmetatable(L, -1)) {
    int smt = lua_gettop(L);
    lua_pushvalue(L, smt);
    if (lua_rawget(L, fz.seen) == LUA_TTABLE) {
      push_copy(L, -1);
      lua_pushliteral(L, "__metatable");
      if (lua_rawget(L, -2) == LUA_TNIL) {
        lua_pushliteral(L, "__metatable");
        lua_pushvalue(L, smt);
        lua_rawset(L, -4);
      }
      lua_pop(L, 1);
      lua_setmetatable(L, smt - 1);
    }
  }
  lua_pop(L, lua_gettop(L) - fz.restore);
  /* Now empty every table and give it its frozen metatable. */
  for (lua_Integer i = 1; i <= fz.ntables; i++) {
    lua_rawgeti(L, fz.tables, i);
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, t);
    }
    lua_rawgeti(L, fz.metas, i);
    lua_setmetatable(L, t);
    lua_pop(L, 1);
  }
  flow__sb_charge(L, (uint64_t)fz.ntables * 4);
  lua_pushvalue(L, fz.restore);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &restore_key);
  lua_settop(L, fz.seen - 1);
  return 0;
}

void
flow__freeze_restore(lua_State *L)
{
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &restore_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  int list = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  for (lua_Integer k = 1; k + 2 <= n; k += 3) {
    lua_rawgeti(L, list, k);
    lua_rawgeti(L, list, k + 1);
    int up = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, list, k + 2);
    if (lua_type(L, -1) == LUA_TLIGHTUSERDATA &&
        lua_touserdata(L, -1) == (void *)&nil_mark) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    if (lua_setupvalue(L, -2, up) == NULL)
      lua_pop(L, 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}
