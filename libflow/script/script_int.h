/*
 * Private to libflow/script/: the sandbox structure that the sandbox
 * (script_sandbox.c) and the service loader (script_load.c) share, the few
 * sandbox helpers the loader needs, and the bridge between Jansson values
 * and Lua values (script_json.c).  Nothing outside libflow/script/ includes
 * this file, except the script unit tests, which look inside on purpose.
 */
#ifndef FLOW_SCRIPT_INT_H
#define FLOW_SCRIPT_INT_H

#include <lua.h>

#include "script/script.h"

/* Why a sandbox stopped a script. */
enum {
  FLOW__KILL_NONE = 0,
  FLOW__KILL_INSTR,  /* ran past instr_limit */
  FLOW__KILL_MEM,    /* asked for more than mem_limit */
  FLOW__KILL_CLOSE   /* the state is being closed: run nothing */
};

/* VM instructions between two calls of the count hook. */
#define FLOW__HOOK_EVERY 1000

struct flow__sandbox {
  lua_State *L;
  const flow__allocator *alloc; /* the engine's; outlives the sandbox */

  /* Memory: every byte the Lua state holds, and the cap while limit_on. */
  size_t mem;
  size_t mem_limit;
  int limit_on;
  /* The last allocation refused (0: none, 1: over the cap, 2: the host
     said no).  Lua answers a refusal with an emergency collection and one
     retry; only when that retry is refused too is the budget really gone. */
  int pend_reason;
  void *pend_ptr;
  size_t pend_osize, pend_nsize;

  /* The budget of the unit of work running now (a run, a load, an eval). */
  uint64_t instr_limit;
  uint64_t instr_count;
  int counting;      /* the count hook charges instructions */
  int killed;        /* FLOW__KILL_*; sticky until the next unit starts */
  int enomem;        /* the host allocator (or Jansson) failed */
  int refused;       /* flow.fail was called */
  char refuse_msg[FLOW__ERRMSG_MAX];
  char what[320];    /* "the handler for 'assign' in missed_bin.lua" */
  int64_t now;       /* what flow.now() reports */

  flow_log_fn log;
  flow_engine *log_engine;
  void *log_payload;

  /* The transition run between flow__run_begin and flow__run_end. */
  int run_active;
  int case_ref, ev_ref;
  const flow__service *svc;
  json_t *calls;     /* flow.call requests; NULL: flow.call is refused */
};

/*
 * Starts a unit of work: clears the kill, refusal and out-of-memory flags,
 * resets the instruction count and the hook, and records what runs (for
 * budget messages), formatted like printf.
 */
void flow__sb_start(flow__sandbox *sb, const char *fmt, ...)
    FLOW__PRINTF(2, 3);
/* Stops charging instructions (the unit is over). */
void flow__sb_stop(flow__sandbox *sb);

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

/* Seeds math.random (through the randomseed scripts cannot reach), so
   that what a script draws depends only on seed.  A failure (memory) is
   left for the next protected call to meet. */
void flow__sb_seed(flow__sandbox *sb, uint64_t seed);

/* The engine clock (the real clock when the sandbox has no engine): what
   flow.now() reports outside a transition run. */
int64_t flow__sb_clock(flow__sandbox *sb);

/* Pushes the string.find the sandbox started with (scripts may replace
   the one in `string`). */
void flow__sb_push_find(lua_State *L);

/* ---- JSON <-> Lua (script_json.c) ------------------------------------ */

#define FLOW__JSON_MAX_DEPTH 100
#define FLOW__JSON_MAX_NODES 1000000

/*
 * Creates the shared list metatable in the registry.  Call once per state,
 * in protected mode.
 */
void flow__json_setup(lua_State *L);
/* Pushes the list metatable (flow.list marks tables with it). */
void flow__json_push_list_mt(lua_State *L);
/* Pushes flow.null, the value a JSON null inside a list becomes. */
void flow__json_push_null(lua_State *L);
/* 1 if the value at idx is flow.null. */
int flow__json_is_null(lua_State *L, int idx);

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
 * access only.  root names the value in messages ("data" gives
 * "data.address: not valid UTF-8").  Returns 0, FLOW_EINVAL when the value
 * cannot be JSON (msg says where and why), or FLOW_ENOMEM.  It never raises
 * and never allocates Lua memory, so a partly built result cannot leak.
 */
int flow__json_from_lua(lua_State *L, int idx, const char *root,
                        const flow__allocator *a, json_t **out, char *msg,
                        size_t msglen);

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
int flow__utf8_valid(const char *s, size_t len);

#endif /* FLOW_SCRIPT_INT_H */
