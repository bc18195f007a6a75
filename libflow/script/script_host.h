/*
 * For code above the engine that offers its own Lua API inside a sandbox:
 * the test runner (libflow/runner/) gives test files `test`, `expect` and
 * the virtual clock this way.  It runs its functions as units of work of a
 * sandbox from flow__sandbox_new, so that everything a test file does is
 * charged to the sandbox's budgets exactly as a service's handlers are.
 * What a sandbox is made of stays private to libflow/script/
 * (script_int.h).
 */
#ifndef LIBFLOW_SCRIPT_SCRIPT_HOST_H
#define LIBFLOW_SCRIPT_SCRIPT_HOST_H

#include <lua.h>

#include "script/script.h"

/* The sandbox's Lua state, to install functions in and to call them with
   flow__sb_protect. */
lua_State *flow__sandbox_lua(flow__sandbox *sb);

/*
 * Starts a unit of work: clears the kill, refusal and out-of-memory flags,
 * resets the instruction count, the CPU clock, the log count and the hook,
 * and records what runs (for budget messages), formatted like printf.
 */
void flow__sb_start(flow__sandbox *sb, const char *fmt, ...)
    FLOW__PRINTF(2, 3);

/* Stops charging instructions (the unit is over). */
void flow__sb_stop(flow__sandbox *sb);

/*
 * Charges n units of work done in C (where the count hook cannot see it)
 * to the instruction budget, looks at the CPU clock, and raises the budget
 * error when either has run out.  Call it from C functions that Lua calls,
 * never from the host side.
 */
void flow__sb_charge(lua_State *L, uint64_t n);
/* Raises the budget (or refusal) error when the unit is already over:
   the check a C function makes after Lua code it called returned, so that
   nothing catches a kill and runs on. */
void flow__sb_check(lua_State *L);

/*
 * Calls f(L) in protected mode with ud as its only argument (a light
 * userdata), so nothing f raises (memory errors included) can escape to the
 * host.  Returns the lua_pcall status; on error the error object is left on
 * the stack top.
 */
int flow__sb_protect(flow__sandbox *sb, lua_CFunction f, void *ud);

/*
 * Turns the outcome of a protected call into a FLOW_* code and message.
 * The kill flags take precedence over everything (ELIMIT), then a host
 * allocation failure (ENOMEM), then flow.fail (EREFUSED), then the error
 * object at the stack top (ESCRIPT), which is popped.  where prefixes
 * messages for error objects that are not strings ("chunk:LINE").
 * Returns 0 when status is LUA_OK and no flag is set.
 */
int flow__sb_outcome(flow__sandbox *sb, int status, const char *where,
                     flow__err *err);

/*
 * The message of the error object at idx, without calling any of its
 * metamethods: a string as is, anything else described by its type.
 */
void flow__sb_errobj(lua_State *L, int idx, char *buf, size_t len);

/*
 * Checks the function just compiled, at the top of the stack, for the code
 * Lua 5.4.4 cannot run safely (see the file): a run of more than 64 field
 * accesses each on the one before, and an upvalue table indexed by a
 * comparison.  Returns 0; FLOW_ESCRIPT with *line and msg ("chunk:LINE:
 * what to write instead", the chunk named as in Lua's messages);
 * FLOW_ELIMIT when sb's unit ran out on the way (the dump is charged);
 * FLOW_ENOMEM.  The function stays where it is.
 */
int flow__bytecode_check(lua_State *L, flow__sandbox *sb, int *line,
                         char *msg, size_t len);

/*
 * Pushes j as a Lua value: an object becomes a plain table (null members
 * left out), an array a table with the list metatable (null items become
 * flow.null), integers Lua integers, reals Lua floats.  A top-level null
 * pushes nil.  Raises Lua errors (memory, nesting past
 * FLOW__JSON_MAX_DEPTH), so call it in protected mode.
 */
void flow__json_push(lua_State *L, json_t *j);

/*
 * Converts the Lua value at idx to JSON (*out: new reference) using raw
 * access only (a frozen table is read as what it holds).  root names the
 * value in messages ("data" gives "data.address: not valid UTF-8").
 * Returns 0, FLOW_EINVAL when the value cannot be JSON (msg says where and
 * why), FLOW_EDATA when it would be more than FLOW__JSON_MAX_TEXT bytes of
 * JSON (refused as soon as that is certain, before more is built), or
 * FLOW_ENOMEM.  It never raises and never allocates Lua memory,
 * so a partly built result cannot leak.
 */
int flow__json_from_lua(lua_State *L, int idx, const char *root,
                        const flow__allocator *a, json_t **out, char *msg,
                        size_t msglen);

#endif /* LIBFLOW_SCRIPT_SCRIPT_HOST_H */
