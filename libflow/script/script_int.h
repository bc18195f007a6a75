/*
 * Private to libflow/script/: the sandbox structure its files share --
 * the sandbox and transition runs (script_sandbox.c), the budgets and the
 * kill (script_budget.c), the bounded library functions (script_lib.c,
 * script_pattern.c), frozen globals (script_freeze.c), the service loader
 * (script_load.c) and the bridge between Jansson values and Lua values
 * (script_json.c).  Nothing outside libflow/script/ includes this file,
 * except the script unit tests, which look inside on purpose.
 */
#ifndef LIBFLOW_SCRIPT_SCRIPT_INT_H
#define LIBFLOW_SCRIPT_SCRIPT_INT_H

#include <lauxlib.h>
#include <lua.h>

#include "script/script_host.h"

/* Why a sandbox stopped a script.  Codes are only appended. */
enum {
  FLOW__KILL_NONE = 0,
  FLOW__KILL_INSTR,  /* ran past instr_limit */
  FLOW__KILL_MEM,    /* asked for more than mem_limit */
  FLOW__KILL_CLOSE,  /* the state is being closed: run nothing */
  FLOW__KILL_CPU,    /* used more than cpu_ms of CPU time */
  FLOW__KILL_LOG,    /* flow.log / print wrote more than log_limit */
  FLOW__KILL_TABLE   /* a table grew past FLOW__TABLE_MAX_HASH keys */
};

/*
 * The most keys a table may hold outside its list part (its hash part).
 * Lua 5.4 hashes an integer key by its remainder modulo 2^k - 1, so keys a
 * script (or a sender's numbers a script uses as keys) picks to collide
 * make a table whose every resize takes time quadratic in its size, in
 * one VM instruction that no hook can interrupt: 90 ms for 16,384 keys,
 * 5 s for 131,072.  A hash part is allocated in one piece, so the
 * sandbox's allocator refuses a bigger one (see script_budget.c).
 */
#define FLOW__TABLE_MAX_HASH FLOW__MAX_MEMBERS


/*
 * VM instructions between two calls of the count hook.  Any count hook
 * puts the VM in its slow "trap" mode, which costs the same whatever the
 * count; a small count only adds the calls themselves.  A small count
 * matters because one instruction can be expensive (comparing or
 * converting a string of megabytes), and the hook is the only place the
 * CPU clock is looked at while Lua code runs.  When a whole clock tick
 * passes with very few instructions, the sandbox drops to 1 for the rest
 * of the unit (see script_budget.c).
 */
#define FLOW__HOOK_EVERY 10

/* The state of a unit, saved while the engine checks a pattern in the
   middle of a run. */
typedef struct unit_state {
  uint64_t instr_count, instr_limit;
  int counting, killed, enomem, refused, pace;
  size_t log_bytes;
  int64_t cpu_start, tick_wall, tick_cpu;
  uint64_t tick_instr;
  int what_kind, what_ref;
  const char *what_a, *what_b;
  char what[320];
  char refuse_msg[FLOW__ERRMSG_MAX];
} unit_state;


/* The small-block pool under the Lua state (script_pool.c): blocks of up
   to FLOW__POOL_MAX bytes in classes of FLOW__POOL_GRAIN, carved from at
   most FLOW__POOL_SLABS slabs of FLOW__POOL_SLAB bytes. */
#define FLOW__POOL_GRAIN 16
#define FLOW__POOL_MAX 1024
#define FLOW__POOL_SLAB (64 * 1024)
#define FLOW__POOL_SLABS 32

typedef struct flow__pool {
  const flow__allocator *alloc;
  void *free[FLOW__POOL_MAX / FLOW__POOL_GRAIN + 1]; /* by class */
  char *cur, *end;                  /* the rest of the last slab */
  char *slabs[FLOW__POOL_SLABS];    /* by address */
  size_t nslabs;
} flow__pool;

void flow__pool_init(flow__pool *pl, const flow__allocator *a);
/* lua_Alloc for the pool: small blocks from it, the rest from alloc. */
void *flow__pool_realloc(flow__pool *pl, void *ptr, size_t osize,
                         size_t nsize);
/* Gives every slab back; only once nothing in them is used. */
void flow__pool_release(flow__pool *pl);

struct flow__sandbox {
  lua_State *L;
  const flow__allocator *alloc; /* the engine's; outlives the sandbox */
  flow__pool pool;              /* where the Lua state's memory comes from */
  /* The working-day calendar of flow.add and friends: the engine's, or
     the default one when the sandbox has no engine. */
  const flow__calendar *cal;
  flow__calendar default_cal;

  /* Memory: every byte the Lua state holds, plus `extra` bytes held for
     the script outside Lua (the action requests of flow.call), and the
     cap while limit_on. */
  size_t mem;
  size_t extra;
  size_t mem_limit;
  int limit_on;
  /* The last allocation refused (0: none, 1: over the cap, 2: the host
     said no).  Lua answers a refusal with an emergency collection and one
     retry; only when that retry is refused too is the budget really gone. */
  int pend_reason;
  void *pend_ptr;
  size_t pend_osize, pend_nsize;
  unsigned alloc_ticks; /* growing allocations and spends, for the CPU clock */
  /* sizeof(Node) of this Lua, measured when the sandbox is made (0 until
     then): a hash part is a fresh untyped block of 2^k nodes. */
  size_t node_size;
  size_t probe_max;     /* while measuring: the largest such block */
  int probing;
  /* The last fresh allocation: its type (what Lua passes as osize) and
     size.  A luaL_Buffer's box is a small userdata whose buffer comes
     next, as a fresh untyped block of any size: not a hash part. */
  int last_tag;
  size_t last_size;

  /* The budget of the unit of work running now (a run, a load, an eval). */
  uint64_t instr_limit;
  uint64_t instr_count;
  uint32_t cpu_ms;      /* CPU time per unit */
  size_t log_limit;     /* bytes flow.log / print may write per unit */
  size_t log_bytes;     /* written so far in this unit */
  int counting;      /* the count hook charges instructions */
  int killed;        /* FLOW__KILL_*; sticky until the next unit starts */
  int damaged;       /* a kill happened since the sandbox was made */
  int enomem;        /* the host allocator (or Jansson) failed */
  int refused;       /* flow.fail was called (2: flow.open's data was
                        refused, FLOW_EDATA) */
  char refuse_msg[FLOW__ERRMSG_MAX];
  char refuse_where[160]; /* "CHUNK:LINE:" of that flow.fail */
  /* What the unit runs, for messages: "the handler for 'assign' in
     missed_bin.lua".  Units that run on every event describe themselves
     with what_kind and the pointers below (valid while the unit runs), and
     flow__sb_what writes the text only when a message needs it. */
  char what[320];
  int what_kind;     /* FLOW__WHAT_* */
  const char *what_a, *what_b;
  int what_ref;
  int64_t now;       /* what flow.now() reports */

  /* The CPU clock (nanoseconds): the thread's CPU time when the unit
     started, and the coarse monotonic tick, CPU time and instruction count
     when the hook last saw the tick change.  pace is the hook count of the
     unit (FLOW__HOOK_EVERY, or 1 once instructions turned out slow). */
  int64_t cpu_start;
  int64_t tick_wall, tick_cpu;
  uint64_t tick_instr;
  int pace;

  /* Ceilings for a service's own `budget = {...}`. */
  size_t mem_max;
  uint64_t instr_max;
  uint32_t cpu_ms_max;

  int frozen;        /* the globals are frozen (script_freeze.c) */
  int in_c_locale;   /* a unit switched this thread to the C locale... */
  void *outer_locale; /* ...from this one (a locale_t) */
  int close_depth;   /* coroutine closes nested in __close handlers now */

  flow_log_fn log;
  flow_engine *log_engine;
  void *log_payload;

  /* The transition run between flow__run_begin and flow__run_end. */
  int run_active;
  int case_ref, ev_ref;
  lua_State *run_L;  /* the thread handlers run on (run_ref holds it) */
  int run_ref;
  const flow__service *svc;
  json_t *calls;     /* flow.call requests; NULL: flow.call is refused */
  int ncalls, ntimers; /* flow.call and flow.after/at requests in calls */
  int ntasks;          /* flow.task requests in calls */
  int nopens;          /* flow.open requests in calls */
  /* flow.open asks the engine for a case id (flow__sandbox_set_opener). */
  flow__open_fn opener;
  void *opener_ctx;
  /* The unit all the pattern checks of one validation share, kept while
     the run's own unit is back (flow__sandbox_match). */
  unit_state match_unit;
  int match_unit_on;
};

/* ---- budgets (script_budget.c) ---------------------------------------- */

/* The lua_Alloc of every sandbox; ud is the sandbox. */
void *flow__sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* The count hook every thread of a sandbox runs. */
void flow__sb_hook(lua_State *L, lua_Debug *ar);

/* The same for units that run on every event, where formatting the
   description each time would cost more than the unit: kind and a, b (or
   the function reference) are kept, and turned into text by
   flow__sb_what only when a message needs it. */
enum {
  FLOW__WHAT_TEXT,    /* sb->what holds the text */
  FLOW__WHAT_EVENT,   /* "the event '<a>' in <b>" */
  FLOW__WHAT_FUNC,    /* "the handler for ... in <b>", from what_ref */
  FLOW__WHAT_PATTERN, /* "the pattern '<a>'" */
};
void flow__sb_start_as(flow__sandbox *sb, int kind, const char *a,
                       const char *b, int ref);
/* Names the function about to run within the current unit. */
void flow__sb_describe(flow__sandbox *sb, int kind, const char *a,
                       const char *b, int ref);
/* The description of the current unit, as text. */
const char *flow__sb_what(flow__sandbox *sb);
/* "the handler for 'assign'" and the like, for the function ref of the
   running service (script_sandbox.c). */
void flow__sb_describe_ref(const flow__sandbox *sb, int ref, char *buf,
                           size_t len);

/* Marks the memory budget as gone and raises (for a request known to be
   too big before it is made). */
int flow__sb_kill_mem(lua_State *L);
/* The table argument at idx of a flow function as a JSON object (an empty
   one when absent), converted at the call so that a mistake is reported
   at its line; raises the Lua error itself.  *held grows by what the
   object holds outside Lua, which counts against the memory budget. */
json_t *flow__sb_object_arg(lua_State *L, flow__sandbox *sb, int idx,
                            const char *root, const char *who,
                            const char *not_object, size_t *held);
/* Raises "WHO: unknown NOUN 'k' (WHICH)" for a key of the table at t
   that is not in known (NULL-terminated). */
void flow__sb_known_keys(lua_State *L, int t, const char *const *known,
                         const char *who, const char *noun,
                         const char *which);
/* Pushes the flow.sla table (script_sla.c); its functions. */
void flow__sb_push_sla(lua_State *L);
const luaL_Reg *flow__sb_sla_funcs(void);
/* flow.task{...} (script_task.c). */
int flow__sb_task(lua_State *L);
int flow__sb_cancel_task(lua_State *L);
/* flow.open(service, data) (script_open.c). */
int flow__sb_open(lua_State *L);
int flow__sb_signal(lua_State *L);
/* flow.add, flow.date, flow.is_working_day, flow.before, flow.local_time
   (script_time.c). */
int flow__sb_add(lua_State *L);
int flow__sb_date(lua_State *L);
int flow__sb_is_working_day(lua_State *L);
int flow__sb_before(lua_State *L);
int flow__sb_local_time(lua_State *L);
/*
 * Host-side budget check for C loops that must not raise (the JSON
 * bridge): adds n to the instruction count and looks at the CPU clock.
 * Returns 1, with the kill recorded, when a budget has run out.
 */
int flow__sb_spend(flow__sandbox *sb, uint64_t n);

/* "32 MiB", "512 KiB" or "1000 bytes". */
void flow__sb_format_bytes(char *buf, size_t len, size_t n);

/* A service's own budget, as `budget = { ... }` asks for it. */
typedef struct flow__sb_budget {
  uint64_t instructions; /* 0: the engine's default */
  uint32_t cpu_ms;
  size_t memory;         /* bytes */
} flow__sb_budget;

/*
 * Checks one entry of a service's `budget` table (the key and value at
 * kidx and vidx) against the ceilings and records it in b.  Returns 0, or
 * -1 with a message for the author in msg.
 */
int flow__sb_budget_entry(const flow__sandbox *sb, lua_State *L, int kidx,
                          int vidx, flow__sb_budget *b, char *msg,
                          size_t len);
/* Makes b the budgets of every later unit of sb.  Fails (-1, msg) when the
   state already holds more memory than b allows. */
int flow__sb_budget_apply(flow__sandbox *sb, const flow__sb_budget *b,
                          char *msg, size_t len);

/* ---- the sandbox (script_sandbox.c) ------------------------------------ */

/* Seeds math.random (through the randomseed scripts cannot reach), so
   that what a script draws depends only on seed.  A failure (memory) is
   left for the next protected call to meet. */
void flow__sb_seed(flow__sandbox *sb, uint64_t seed);

/* The engine clock (the real clock when the sandbox has no engine): what
   flow.now() reports outside a transition run. */
int64_t flow__sb_clock(flow__sandbox *sb);

/*
 * Freezes sb (see flow__freeze), with the definition at stack index def
 * (0: none), as part of the unit running now; nothing when it is frozen
 * already.  Returns 0, the kill or memory outcome of the unit (err set),
 * or FLOW_ESCRIPT with *line and msg set when something reachable cannot
 * be frozen (err untouched; the caller words the report).
 */
int flow__sb_freeze(flow__sandbox *sb, int def, int *line, char *msg,
                    size_t len, flow__err *err);

/* Pushes the sandbox's own string.find (scripts may replace the one in
   `string` while loading; this one stays). */
void flow__sb_push_find(lua_State *L);

/* ---- bounded libraries (script_lib.c, script_pattern.c) ---------------- */

/* Replaces, in the globals and library tables at the top of the stack
   (the globals table), every function whose cost is not bounded by the
   count hook with a bounded one, and installs the string metatable.  Call
   once, in protected mode, while setting a sandbox up. */
void flow__lib_install(lua_State *L);
/* Adds the pattern functions (find, match, gmatch, gsub) to the string
   table at the top of the stack. */
void flow__pattern_install(lua_State *L);
/* The lua_CFunction behind string.find. */
int flow__pattern_find(lua_State *L);
/* tostring without addresses; runs __tostring. */
int flow__lib_tostring(lua_State *L);

/* ---- frozen globals (script_freeze.c) ---------------------------------- */

/*
 * Freezes what outlives a run: the globals, the string metatable, the
 * value at def (0: none) and everything reachable from them, including
 * the upvalues of every function found, whose values are recorded for
 * flow__freeze_restore.  Call in protected mode.  A value that cannot be
 * frozen (a coroutine or a gmatch iterator made while loading) is left
 * alone and described in msg with *line (of the script) set; the caller
 * reports it.  Returns 0, or -1 after such a refusal.
 */
int flow__freeze(lua_State *L, int def, int *line, char *msg, size_t len);
/* Puts every recorded upvalue back to its value at freeze time.  Never
   raises and never allocates. */
void flow__freeze_restore(lua_State *L);
/* If the table at idx is frozen, pushes the table that holds its contents
   and returns 1 (*list set when it was a flow.list); else pushes nothing
   and returns 0.  Never raises and never allocates. */
int flow__frozen_contents(lua_State *L, int idx, int *list);
/* If the table at idx is frozen, puts the table that holds its contents
   in its place, for C code that reads it with lua_rawget or lua_next (a
   frozen table reads empty that way: options kept in a table at the top
   of a script were silently ignored).  Never raises. */
void flow__frozen_thaw_arg(lua_State *L, int idx);
/* Lets the userdata at idx stay reachable unfrozen: state the sandbox
   itself resets before every run (math.random's generator). */
void flow__freeze_allow(lua_State *L, int idx);
/* Installs rawget, rawset, rawlen, next, pairs and setmetatable that know
   frozen tables into the globals table at the top of the stack. */
void flow__freeze_install(lua_State *L);

/* ---- compiled code (script_bytecode.c) -------------------------------- */

/* ---- JSON <-> Lua (script_json.c) ------------------------------------ */

/* The most JSON text a value converted from Lua may make: the engine's
   limit on case data and payloads (FLOW__MAX_DOCUMENT). */
#define FLOW__JSON_MAX_TEXT FLOW__MAX_DOCUMENT

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

/* 1 if j nests at most max levels below itself (recursion stops there). */
/*
 * Pushes the JSON object in text (a string) as a Lua table, exactly as
 * flow__json_push would push it parsed, values nested at most maxdepth
 * deep.  Returns FLOW__TEXT_OK, FLOW__TEXT_BAD (not a well-formed JSON
 * object) or FLOW__TEXT_DEEP, and then pushes nothing.  Lua memory errors
 * are raised: call in protected mode.
 */
enum { FLOW__TEXT_OK, FLOW__TEXT_BAD, FLOW__TEXT_DEEP };
int flow__json_push_text(lua_State *L, const char *text, int maxdepth);
int flow__json_depth_ok(json_t *j, int max);

/*
 * As flow__json_from_lua, charging the work to sb's unit: every value
 * and every 16 bytes of text count as an instruction, the CPU clock is
 * checked as it goes, and *bytes (may be NULL) receives an estimate of
 * the memory the result holds.  FLOW_ELIMIT (with the kill recorded in
 * sb) when a budget runs out half-way.
 */
int flow__json_from_lua_sb(lua_State *L, int idx, const char *root,
                           flow__sandbox *sb, json_t **out, size_t *bytes,
                           char *msg, size_t msglen);

#endif /* LIBFLOW_SCRIPT_SCRIPT_INT_H */
