/*
 * Read-only looks into a service's sandbox (see script_inspect.h).  The
 * debug information of a function is read with lua_getinfo, which runs no
 * script code and allocates nothing, so it is safe outside a protected
 * call.
 */
#include "script/script_inspect.h"

#include <lauxlib.h>

#include "script/script_int.h"

int
flow__sandbox_func_lines(flow__sandbox *sb, int ref, int *first, int *last)
{
  *first = *last = 0;
  if (sb == NULL || ref == FLOW__NOREF || ref < 0 ||
      !lua_checkstack(sb->L, 2))
    return -1;
  lua_State *L = sb->L;
  int top = lua_gettop(L);
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, ref) != LUA_TFUNCTION ||
      lua_iscfunction(L, -1)) {
    lua_settop(L, top);
    return -1;
  }
  lua_Debug ar;
  lua_getinfo(L, ">S", &ar); /* pops the function */
  lua_settop(L, top);
  *first = ar.linedefined;
  *last = ar.lastlinedefined;
  return *first > 0 ? 0 : -1;
}
