/*
 * The budgets a sandbox runs every unit of work under (a transition run, a
 * load, an eval, a pattern check): instructions, CPU time, memory and log
 * output.  This file owns the accounting and the kill; the functions that
 * do work in C charge it here (flow__sb_charge).
 *
 *   - Instructions are counted by a count hook on every thread.  Work done
 *     inside C functions, where no hook runs, is charged explicitly.
 *   - CPU time is the thread's CPU clock.  Reading it costs a system call,
 *     so the hook looks at a cheap coarse monotonic clock first and reads
 *     the CPU clock only when that has moved on (about once a millisecond):
 *     CPU time cannot grow faster than wall time, so nothing is missed
 *     between two ticks.  The same tick tells slow instructions (one string
 *     comparison over megabytes is a single instruction) from fast ones:
 *     when a tick passes with very few instructions, the hook runs on every
 *     instruction for the rest of the unit.
 *   - Memory is every byte the Lua state holds, counted by its allocator,
 *     plus what the script holds outside Lua (action requests).
 *   - Log output is counted by flow.log and print.
 *
 * A kill is final for the unit: the hook of the killed thread fires on
 * every instruction and raises each time, every C function that catches
 * errors (pcall, xpcall, coroutine.resume, ...) raises again when it
 * returns, and allocations are refused once the CPU time is gone, so no
 * pcall, message handler, __close or coroutine can keep the script alive.
 */
#define _POSIX_C_SOURCE 200809L

#include "script/script_int.h"

#include <inttypes.h>
#include <lauxlib.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifdef CLOCK_MONOTONIC_COARSE
#define WALL_CLOCK CLOCK_MONOTONIC_COARSE
#else
#define WALL_CLOCK CLOCK_MONOTONIC
#endif
#ifdef CLOCK_THREAD_CPUTIME_ID
#define CPU_CLOCK CLOCK_THREAD_CPUTIME_ID
#else
#define CPU_CLOCK CLOCK_PROCESS_CPUTIME_ID
#endif

#define NS_PER_MS INT64_C(1000000)
/* The CPU clock is read when the wall clock moved at least this much. */
#define TICK_NS INT64_C(500000)
/* Instructions are "slow" when a tick of at least SLOW_SPAN_NS of CPU
   time ran fewer than one instruction per SLOW_NS_PER_INSTR. */
#define SLOW_SPAN_NS INT64_C(1000000)
#define SLOW_NS_PER_INSTR 20000u

/* Why an allocation was refused, for pend_reason. */
enum { REFUSED_NONE = 0, REFUSED_CAP, REFUSED_HOST };

static flow__sandbox *
sb_of(lua_State *L)
{
  return *(flow__sandbox **)lua_getextraspace(L);
}

static int64_t
clock_ns(clockid_t id)
{
  struct timespec ts;
  if (clock_gettime(id, &ts) != 0)
    return 0;
  return (int64_t)ts.tv_sec * INT64_C(1000000000) + (int64_t)ts.tv_nsec;
}

/* The coarse clock, or the fine one where the coarse one is missing. */
static int64_t
wall_ns(void)
{
  struct timespec ts;
  if (clock_gettime(WALL_CLOCK, &ts) != 0 &&
      clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
    return 0;
  return (int64_t)ts.tv_sec * INT64_C(1000000000) + (int64_t)ts.tv_nsec;
}

static void
mark_killed(flow__sandbox *sb, int why)
{
  if (sb->killed == FLOW__KILL_NONE)
    sb->killed = why;
  sb->damaged = 1;
}

/*
 * Looks at the clocks: cheap unless the wall clock has moved on since the
 * last look.  Returns 1, with the kill recorded, when the unit has used up
 * its CPU time.
 */
static int
cpu_tick(flow__sandbox *sb)
{
  if (sb->killed == FLOW__KILL_CPU)
    return 1;
  int64_t wall = wall_ns();
  if (wall - sb->tick_wall < TICK_NS)
    return 0;
  int64_t cpu = clock_ns(CPU_CLOCK);
  uint64_t ran = sb->instr_count - sb->tick_instr;
  int64_t spent = cpu - sb->tick_cpu;
  sb->tick_wall = wall;
  sb->tick_cpu = cpu;
  sb->tick_instr = sb->instr_count;
  if (spent > SLOW_SPAN_NS && ran * SLOW_NS_PER_INSTR < (uint64_t)spent)
    sb->pace = 1;
  if (cpu - sb->cpu_start > (int64_t)sb->cpu_ms * NS_PER_MS) {
    mark_killed(sb, FLOW__KILL_CPU);
    return 1;
  }
  return 0;
}

/* ---- memory ----------------------------------------------------------- */

/*
 * Forwards to the engine allocator with exact sizes and counts what the
 * state holds.  Growth past mem_limit is refused.  A refusal only becomes
 * a verdict (killed or out of memory) when Lua's emergency collection did
 * not help, i.e. when the very same request is refused twice in a row.
 * Growth is also refused once the unit's CPU time is gone, which stops C
 * code that builds a result piece by piece.
 */
/* 1 when a fresh untyped block of n bytes is a table's hash part bigger
   than FLOW__TABLE_MAX_HASH: a power of two of nodes, past the limit. */
static int
too_big_hash(const flow__sandbox *sb, size_t n)
{
  size_t ns = sb->node_size;
  if (ns == 0 || n <= ns * FLOW__TABLE_MAX_HASH || n % ns != 0)
    return 0;
  size_t k = n / ns;
  return (k & (k - 1)) == 0;
}

void *
flow__sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  flow__sandbox *sb = ud;
  if (ptr == NULL) {
    /* Lua passes the object's type here (0: a vector of some kind); the
       host wants 0. */
    if (osize == 0 && nsize > 0) {
      int box = sb->last_tag == LUA_TUSERDATA && sb->last_size <= 64;
      if (sb->probing && nsize > sb->probe_max)
        sb->probe_max = nsize;
      if (sb->limit_on && !box && too_big_hash(sb, nsize)) {
        mark_killed(sb, FLOW__KILL_TABLE);
        return NULL;
      }
    }
    if (nsize > 0) {
      sb->last_tag = (int)osize;
      sb->last_size = nsize;
    }
    osize = 0;
  }
  if (nsize == 0) {
    if (ptr != NULL) {
      flow__pool_realloc(&sb->pool, ptr, osize, 0);
      sb->mem -= osize;
    }
    return NULL;
  }
  if (nsize > osize && sb->limit_on && sb->counting &&
      (sb->killed == FLOW__KILL_CPU ||
       (((++sb->alloc_ticks & 15u) == 0 || nsize - osize >= 65536) &&
        cpu_tick(sb))))
    return NULL;
  int reason = REFUSED_NONE;
  void *np = NULL;
  size_t held = sb->mem + sb->extra;
  if (nsize > osize && sb->limit_on &&
      (nsize - osize > sb->mem_limit ||
       held + (nsize - osize) > sb->mem_limit)) {
    reason = REFUSED_CAP;
  } else {
    np = flow__pool_realloc(&sb->pool, ptr, osize, nsize);
    if (np == NULL)
      reason = REFUSED_HOST;
  }
  if (reason == REFUSED_NONE) {
    sb->mem = sb->mem - osize + nsize;
    if (nsize > osize)
      sb->pend_reason = REFUSED_NONE;
    return np;
  }
  if (sb->pend_reason == reason && sb->pend_ptr == ptr &&
      sb->pend_osize == osize && sb->pend_nsize == nsize) {
    if (reason == REFUSED_CAP)
      mark_killed(sb, FLOW__KILL_MEM);
    else
      sb->enomem = 1;
  }
  sb->pend_reason = reason;
  sb->pend_ptr = ptr;
  sb->pend_osize = osize;
  sb->pend_nsize = nsize;
  return NULL;
}

void
flow__sb_format_bytes(char *buf, size_t len, size_t n)
{
  if (n >= 1024 * 1024 && n % (1024 * 1024) == 0)
    snprintf(buf, len, "%zu MiB", n / (1024 * 1024));
  else if (n >= 1024 && n % 1024 == 0)
    snprintf(buf, len, "%zu KiB", n / 1024);
  else
    snprintf(buf, len, "%zu bytes", n);
}

/* ---- the kill ---------------------------------------------------------- */

/*
 * Raises the error that ends the unit and makes every later instruction
 * of this thread do the same.  The message names the budget, so a script
 * that catches it with pcall learns what happened (and still dies).
 */
static int
budget_raise(lua_State *L)
{
  flow__sandbox *sb = sb_of(L);
  lua_sethook(L, flow__sb_hook, LUA_MASKCOUNT, 1);
  switch (sb->killed) {
  case FLOW__KILL_INSTR:
    lua_pushliteral(L, "budget exceeded: instructions");
    break;
  case FLOW__KILL_CPU:
    lua_pushliteral(L, "budget exceeded: cpu time");
    break;
  case FLOW__KILL_MEM:
    lua_pushliteral(L, "budget exceeded: memory");
    break;
  case FLOW__KILL_LOG:
    lua_pushliteral(L, "budget exceeded: log output");
    break;
  case FLOW__KILL_TABLE:
    lua_pushliteral(L, "budget exceeded: table size");
    break;
  case FLOW__KILL_CLOSE:
    lua_pushliteral(L, "the sandbox is closing");
    break;
  default:
    if (sb->refused)
      lua_pushstring(L, sb->refuse_msg);
    else
      lua_pushliteral(L, "not enough memory");
    break;
  }
  return lua_error(L);
}

/*
 * Runs every sb->pace instructions (every one once killed) on the main
 * thread and on every coroutine: lua_newthread copies the creating
 * thread's hook, so coroutines need nothing extra.  The count added is the
 * thread's own hook interval, which stays right when a thread is switched
 * to a new pace.
 */
void
flow__sb_hook(lua_State *L, lua_Debug *ar)
{
  (void)ar;
  flow__sandbox *sb = sb_of(L);
  if (!sb->counting)
    return;
  if (sb->killed == FLOW__KILL_NONE && !sb->enomem && !sb->refused) {
    int every = lua_gethookcount(L);
    sb->instr_count += (uint64_t)every;
    if (sb->instr_count > sb->instr_limit) {
      mark_killed(sb, FLOW__KILL_INSTR);
    } else if (!cpu_tick(sb)) {
      if (every != sb->pace)
        lua_sethook(L, flow__sb_hook, LUA_MASKCOUNT, sb->pace);
      return;
    }
  }
  budget_raise(L);
}

void
flow__sb_charge(lua_State *L, uint64_t n)
{
  flow__sandbox *sb = sb_of(L);
  if (!sb->counting)
    return;
  if (sb->killed != FLOW__KILL_NONE || sb->enomem || sb->refused)
    budget_raise(L);
  sb->instr_count =
      n > UINT64_MAX - sb->instr_count ? UINT64_MAX : sb->instr_count + n;
  if (sb->instr_count > sb->instr_limit) {
    mark_killed(sb, FLOW__KILL_INSTR);
    budget_raise(L);
  }
  if (cpu_tick(sb))
    budget_raise(L);
}

void
flow__sb_check(lua_State *L)
{
  flow__sandbox *sb = sb_of(L);
  if (sb->counting &&
      (sb->killed != FLOW__KILL_NONE || sb->enomem || sb->refused))
    budget_raise(L);
}

int
flow__sb_kill_mem(lua_State *L)
{
  mark_killed(sb_of(L), FLOW__KILL_MEM);
  return budget_raise(L);
}

int
flow__sb_spend(flow__sandbox *sb, uint64_t n)
{
  if (sb == NULL || !sb->counting)
    return 0;
  if (sb->killed != FLOW__KILL_NONE)
    return 1;
  sb->instr_count =
      n > UINT64_MAX - sb->instr_count ? UINT64_MAX : sb->instr_count + n;
  if (sb->instr_count > sb->instr_limit) {
    mark_killed(sb, FLOW__KILL_INSTR);
    return 1;
  }
  /* Spends come per key and per node, a few hundred per event: the clock
     is read at every 16th, as for allocations, or for a large one. */
  if ((++sb->alloc_ticks & 15u) != 0 && n < 4096)
    return 0;
  return cpu_tick(sb);
}

/* ---- units of work ---------------------------------------------------- */

/*
 * The thread's CPU clock costs a system call (1.3 us on the machine of
 * docs/performance.md, as much as a small handler), and an engine starts
 * several units per event.  CPU time cannot grow faster than wall time, so
 * a reading taken t ns of (fine, cheap) monotonic time ago plus t is an
 * upper bound of the clock now: units that start within CPU_REUSE_NS of
 * the last reading on this thread take that bound as their start.  The
 * start can only be late, so a unit is charged at most CPU_REUSE_NS less
 * than it used, never more: no kill comes early, and none later than the
 * coarse tick already allows.
 */
#define CPU_REUSE_NS INT64_C(200000)

static _Thread_local int64_t cpu_ref = INT64_MIN, cpu_ref_wall;

static int64_t
cpu_start_ns(void)
{
  int64_t w = clock_ns(CLOCK_MONOTONIC);
  if (cpu_ref != INT64_MIN && w >= cpu_ref_wall &&
      w - cpu_ref_wall <= CPU_REUSE_NS)
    return cpu_ref + (w - cpu_ref_wall);
  cpu_ref = clock_ns(CPU_CLOCK);
  cpu_ref_wall = w;
  return cpu_ref;
}

/*
 * Scripts see the C locale whatever the host set: Lua prints and reads
 * numbers and compares strings through the C library, so under a German
 * locale tostring(1.5) would be "1,5" and 'a' < 'B' would be true.  A
 * unit switches the thread to the C locale (uselocale: this thread only)
 * and flow__sb_stop switches it back.
 */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void
make_c_locale(void)
{
  c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

static void
enter_c_locale(flow__sandbox *sb)
{
  if (sb->in_c_locale)
    return;
  pthread_once(&c_locale_once, make_c_locale);
  if (c_locale == (locale_t)0)
    return; /* no memory for it: the host's locale it is */
  sb->outer_locale = (void *)uselocale(c_locale);
  sb->in_c_locale = 1;
}

static void
unit_reset(flow__sandbox *sb)
{
  enter_c_locale(sb);
  sb->killed = FLOW__KILL_NONE;
  sb->enomem = 0;
  sb->refused = 0;
  sb->refuse_msg[0] = 0;
  sb->refuse_where[0] = 0;
  sb->pend_reason = REFUSED_NONE;
  sb->instr_count = 0;
  sb->log_bytes = 0;
  sb->counting = 1;
  sb->limit_on = 1;
  sb->pace = FLOW__HOOK_EVERY;
  sb->close_depth = 0;
  sb->cpu_start = sb->tick_cpu = cpu_start_ns();
  sb->tick_wall = wall_ns();
  sb->tick_instr = 0;
  lua_sethook(sb->L, flow__sb_hook, LUA_MASKCOUNT, sb->pace);
}

void
flow__sb_start(flow__sandbox *sb, const char *fmt, ...)
{
  unit_reset(sb);
  sb->what_kind = FLOW__WHAT_TEXT;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sb->what, sizeof sb->what, fmt, ap);
  va_end(ap);
}

void
flow__sb_describe(flow__sandbox *sb, int kind, const char *a, const char *b,
                  int ref)
{
  sb->what_kind = kind;
  sb->what_a = a;
  sb->what_b = b;
  sb->what_ref = ref;
}

void
flow__sb_start_as(flow__sandbox *sb, int kind, const char *a, const char *b,
                  int ref)
{
  unit_reset(sb);
  flow__sb_describe(sb, kind, a, b, ref);
}

const char *
flow__sb_what(flow__sandbox *sb)
{
  char desc[160];
  switch (sb->what_kind) {
  case FLOW__WHAT_EVENT:
    snprintf(sb->what, sizeof sb->what, "the event '%.64s' in %s",
             sb->what_a ? sb->what_a : "?", sb->what_b ? sb->what_b : "?");
    break;
  case FLOW__WHAT_FUNC:
    flow__sb_describe_ref(sb, sb->what_ref, desc, sizeof desc);
    snprintf(sb->what, sizeof sb->what, "%.150s in %.160s", desc,
             sb->what_b ? sb->what_b : "?");
    break;
  case FLOW__WHAT_PATTERN:
    snprintf(sb->what, sizeof sb->what, "the pattern '%.60s'",
             sb->what_a ? sb->what_a : "?");
    break;
  default:
    return sb->what;
  }
  sb->what_kind = FLOW__WHAT_TEXT;
  return sb->what;
}

void
flow__sb_stop(flow__sandbox *sb)
{
  sb->counting = 0;
  if (sb->in_c_locale) {
    uselocale((locale_t)sb->outer_locale);
    sb->in_c_locale = 0;
  }
}

int
flow__sb_protect(flow__sandbox *sb, lua_CFunction f, void *ud)
{
  lua_State *L = sb->L;
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, ud);
  return lua_pcall(L, 1, 0, 0);
}

void
flow__sb_errobj(lua_State *L, int idx, char *buf, size_t len)
{
  if (lua_type(L, idx) == LUA_TSTRING) {
    snprintf(buf, len, "%s", lua_tostring(L, idx));
    return;
  }
  snprintf(buf, len, "error object of type %s (use error(\"message\"))",
           lua_typename(L, lua_type(L, idx)));
}

int
flow__sb_outcome(flow__sandbox *sb, int status, const char *where,
                 flow__err *err)
{
  lua_State *L = sb->L;
  /* A memory error that reached us without a verdict: the refusal was
     final (no emergency collection was possible), so judge it now. */
  if (status == LUA_ERRMEM && sb->killed == FLOW__KILL_NONE &&
      !sb->enomem) {
    if (sb->pend_reason == REFUSED_HOST)
      sb->enomem = 1;
    else
      mark_killed(sb, FLOW__KILL_MEM);
  }
  char amount[32];
  int rc = 0;
  switch (sb->killed) {
  case FLOW__KILL_INSTR:
    rc = flow__err_set(err, FLOW_ELIMIT,
                       "budget exceeded: %s ran more than %" PRIu64
                       " instructions (an endless loop?)",
                       flow__sb_what(sb), sb->instr_limit);
    break;
  case FLOW__KILL_CPU:
    rc = flow__err_set(err, FLOW_ELIMIT,
                       "budget exceeded: %s used more than %" PRIu32
                       " ms of cpu time (an endless loop, or too much work "
                       "for one event?)",
                       flow__sb_what(sb), sb->cpu_ms);
    break;
  case FLOW__KILL_MEM:
    flow__sb_format_bytes(amount, sizeof amount, sb->mem_limit);
    rc = flow__err_set(err, FLOW_ELIMIT,
                       "budget exceeded: %s used more than %s of memory",
                       flow__sb_what(sb), amount);
    break;
  case FLOW__KILL_LOG:
    flow__sb_format_bytes(amount, sizeof amount, sb->log_limit);
    rc = flow__err_set(err, FLOW_ELIMIT,
                       "budget exceeded: %s: flow.log wrote more than %s of "
                       "log output",
                       flow__sb_what(sb), amount);
    break;
  case FLOW__KILL_TABLE:
    rc = flow__err_set(err, FLOW_ELIMIT,
                       "budget exceeded: %s built a table with more than %d "
                       "keys outside its list part (keep big collections "
                       "in the host, or split them)",
                       flow__sb_what(sb), FLOW__TABLE_MAX_HASH);
    break;
  case FLOW__KILL_CLOSE:
    rc = flow__err_set(err, FLOW_EMISUSE, "the sandbox is closing");
    break;
  default:
    if (sb->enomem) {
      rc = flow__err_set(err, FLOW_ENOMEM, "out of memory while %s ran",
                         flow__sb_what(sb));
    } else if (sb->refused) {
      /* 2: flow.open was given data its service refuses. */
      rc = flow__err_set(err, sb->refused == 2 ? FLOW_EDATA : FLOW_EREFUSED,
                         "%s", sb->refuse_msg);
    } else if (status != LUA_OK) {
      char msg[FLOW__ERRMSG_MAX];
      flow__sb_errobj(L, -1, msg, sizeof msg);
      if (lua_type(L, -1) != LUA_TSTRING && where != NULL)
        rc = flow__err_set(err, FLOW_ESCRIPT, "%s: %s", where, msg);
      else
        rc = flow__err_set(err, FLOW_ESCRIPT, "%s", msg);
    }
    break;
  }
  if (status != LUA_OK)
    lua_pop(L, 1);
  return rc;
}

/* ---- a service's own budget ------------------------------------------- */

/* The integer value at idx when it is a whole number >= 1, else 0. */
static uint64_t
positive(lua_State *L, int idx)
{
  int isint = 0;
  lua_Integer n = lua_tointegerx(L, idx, &isint);
  if (lua_type(L, idx) != LUA_TNUMBER || !isint || n < 1)
    return 0;
  return (uint64_t)n;
}

int
flow__sb_budget_entry(const flow__sandbox *sb, lua_State *L, int kidx,
                      int vidx, flow__sb_budget *b, char *msg, size_t len)
{
  const char *key = lua_tostring(L, kidx);
  uint64_t v = positive(L, vidx);
  const char *unit = strcmp(key, "instructions") == 0 ? "number"
                     : strcmp(key, "cpu_ms") == 0     ? "number of ms"
                                                      : "number of MiB";
  if (v == 0) {
    if (lua_type(L, vidx) == LUA_TNUMBER)
      snprintf(msg, len, "budget.%s must be a whole %s above 0, not %.14g",
               key, unit, (double)lua_tonumber(L, vidx));
    else
      snprintf(msg, len, "budget.%s must be a whole %s above 0, not a %s",
               key, unit, lua_typename(L, lua_type(L, vidx)));
    return -1;
  }
  if (strcmp(key, "instructions") == 0) {
    if (v > sb->instr_max) {
      snprintf(msg, len,
               "budget.instructions is %" PRIu64 ", more than this engine "
               "allows (%" PRIu64 "); lower it, or ask the host to raise "
               "script_instruction_max",
               v, sb->instr_max);
      return -1;
    }
    b->instructions = v;
  } else if (strcmp(key, "cpu_ms") == 0) {
    if (v > sb->cpu_ms_max) {
      snprintf(msg, len,
               "budget.cpu_ms is %" PRIu64 ", more than this engine allows "
               "(%" PRIu32 "); lower it, or ask the host to raise "
               "script_cpu_ms_max",
               v, sb->cpu_ms_max);
      return -1;
    }
    b->cpu_ms = (uint32_t)v;
  } else {
    size_t max_mb = sb->mem_max / (1024 * 1024);
    if (v > max_mb) {
      snprintf(msg, len,
               "budget.memory_mb is %" PRIu64 ", more than this engine "
               "allows (%zu); lower it, or ask the host to raise "
               "script_memory_max",
               v, max_mb);
      return -1;
    }
    b->memory = (size_t)v * 1024 * 1024;
  }
  return 0;
}

int
flow__sb_budget_apply(flow__sandbox *sb, const flow__sb_budget *b, char *msg,
                      size_t len)
{
  if (b->memory && sb->mem + sb->extra > b->memory) {
    char held[32];
    flow__sb_format_bytes(held, sizeof held,
                          (sb->mem + sb->extra + 1024 * 1024 - 1) /
                              (1024 * 1024) * (1024 * 1024));
    snprintf(msg, len,
             "the script holds about %s once loaded, more than its "
             "budget.memory_mb allows; raise budget.memory_mb or keep less "
             "at the top level of the script",
             held);
    return -1;
  }
  if (b->instructions)
    sb->instr_limit = b->instructions;
  if (b->cpu_ms)
    sb->cpu_ms = b->cpu_ms;
  if (b->memory)
    sb->mem_limit = b->memory;
  return 0;
}
