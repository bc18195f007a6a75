/*
 * Fuzz target: random Lua chunks built from the attacks the sandbox must
 * stand (issue 11): weak tables and withheld metamethods, coroutine.close
 * chains, xpcall across yields, long field chains, t[a < b], colliding
 * table keys, NUL characters, huge strings and repeated ones, deep
 * recursion, metatables changed after use, next() as a __close handler,
 * host locale-sensitive formatting, and plain code between them.
 *
 * The input is read two bytes at a time: a fragment and its size.  The
 * fragments, each inside its own pcall so that the next one still runs,
 * make one chunk, which runs twice, each time in a fresh sandbox with the
 * same budgets.  The promises checked:
 *   - it ends with a code the sandbox gives (never a crash: ASan and
 *     UBSan watch), within its CPU budget plus a margin for the cost of
 *     one instruction;
 *   - both runs give the same code, message and result, unless one was
 *     stopped by its CPU time, which depends on the machine's load.
 * The instruction budget is far below the CPU budget, so that a run is
 * stopped by the deterministic budget first; only work that no hook sees
 * would reach the CPU budget, and the margin is for that.
 */
#define _POSIX_C_SOURCE 200809L

#include <jansson.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "script/script_int.h"

#define CPU_MS 1000
#define MARGIN_MS 300
#define INSTR 3000000
#define MEM ((size_t)8 << 20)

void
fuzz_cleanup(void)
{
}

static double
cpu_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* %d is the fragment's size, 0..255. */
static const char *const fragments[] = {
  /* weak tables, given or added later */
  "local w = setmetatable({}, { __mode = 'k' }) w[{}] = %d",
  "local mt = {} local t = setmetatable({}, mt) mt.__mode = 'v' t[1] = %d",
  "local mt = {} setmetatable({}, mt) rawset(mt, '__gc', function() end) "
  "R[#R+1] = %d",
  /* withheld __concat, and its Debian bug */
  "local function d(n) if n > 0 then return 1 + d(n - 1) end return 0 end "
  "local t = setmetatable({}, { __concat = function() d(%d * 20) return 'x' "
  "end }) R[#R+1] = 'a' .. t",
  /* coroutine.close from __close, nested */
  "local c = false for i = 1, %d * 60 do local p = c "
  "c = coroutine.create(function() local x <close> = setmetatable({}, "
  "{ __close = function() if p then coroutine.close(p) end end }) "
  "coroutine.yield() end) coroutine.resume(c) end "
  "R[#R+1] = tostring(coroutine.close(c))",
  /* a yield across xpcall */
  "local co = coroutine.create(function() return xpcall(coroutine.yield, "
  "function(m) return m end, %d) end) R[#R+1] = select(2, "
  "coroutine.resume(co))",
  /* a long field chain, compiled by load */
  "local n = %d * 4 local src = 'local t = {} t.x = t return t' .. "
  "string.rep('.x', n) .. ' + 1' local f, e = load(src) "
  "R[#R+1] = tostring(f ~= nil) .. tostring(e ~= nil)",
  /* t[a < b] on an upvalue, compiled by load */
  "local f, e = load('local T = {} return function(a, b) return T[a < b] "
  "end') R[#R+1] = tostring(e ~= nil) .. %d",
  /* integer keys that collide */
  "local t = {} local c = (1 << 14) - 1 for i = 1, %d * 80 do t[i * c] = i "
  "end local n = 0 for k in pairs(t) do n = n + 1 end R[#R+1] = n",
  /* NUL characters in the result */
  "R[#R+1] = 'a\\0' .. %d",
  "R[#R+1] = { ['\\0'] = %d }",
  /* one long string many times */
  "local s = string.rep('y', %d * 4096) local t = {} for i = 1, 300 do "
  "t[i] = s end R[#R+1] = t",
  /* deep recursion */
  "local function f(n) if n == 0 then return 0 end return 1 + f(n - 1) end "
  "R[#R+1] = f(%d * 500)",
  /* a metatable changed after use */
  "local C = {} C.__index = C local o = setmetatable({}, C) "
  "C.m = function() return %d end R[#R+1] = o.m()",
  /* next as a __close handler while a kill unwinds */
  "local t = {} for i = 1, %d * 40 do t['k' .. i] = i end "
  "local c <close> = setmetatable({}, { __close = next }) "
  "while true do end",
  /* numbers and order that must not depend on the process */
  "local t = {} for i = 1, %d do t['k' .. i] = i / 3 end local s = {} "
  "for k, v in pairs(t) do s[#s+1] = k .. '=' .. tostring(v) end "
  "R[#R+1] = table.concat(s, ',') .. string.format('%%.3f', 1.5) "
  ".. tostring('a' < 'B')",
  /* a huge error message */
  "error(string.rep('\\u{E9}', %d * 1000))",
  /* sorting with a comparator that lies */
  "local t = {} for i = 1, %d do t[i] = i %% 7 end "
  "table.sort(t, function(a, b) return a <= b end) R[#R+1] = t[1]",
  /* a table too big for its hash part */
  "local t = {} for i = 1, %d * 100 do t['n' .. i] = true end "
  "R[#R+1] = 'ok'",
  /* plain work */
  "local s = 0 for i = 1, %d * 100 do s = s + i end R[#R+1] = s",
};

#define NFRAG (sizeof fragments / sizeof fragments[0])

typedef struct outcome {
  int rc;
  char msg[FLOW__ERRMSG_MAX];
  char *data;
} outcome;

static void
run(const char *code, outcome *o)
{
  flow__allocator al = { flow__default_alloc, NULL };
  flow__sandbox_config cfg = { &al, MEM, INSTR, NULL, NULL, NULL,
                               CPU_MS, 0, 0, 0, 0 };
  flow__sandbox *sb = NULL;
  flow__err err;
  flow__err_clear(&err);
  FUZZ_CHECK(flow__sandbox_new(&sb, &cfg, &err) == 0, "sandbox: %s", err.msg);
  json_t *out = NULL;
  double t0 = cpu_ms();
  o->rc = flow__sandbox_eval(sb, code, strlen(code), "fuzz.lua", &out, &err);
  double spent = cpu_ms() - t0;
  FUZZ_CHECK(spent < CPU_MS + MARGIN_MS,
             "ran %.0f ms of CPU on a %d ms budget: %s\n%s", spent, CPU_MS,
             err.msg, code);
  FUZZ_CHECK(o->rc == 0 || o->rc == FLOW_ESCRIPT || o->rc == FLOW_ELIMIT ||
                 o->rc == FLOW_EINVAL || o->rc == FLOW_EDATA,
             "code %d (%s): %s", o->rc, flow_err_name(o->rc), err.msg);
  FUZZ_CHECK(o->rc == 0 || err.msg[0] != 0, "a refusal with no message");
  snprintf(o->msg, sizeof o->msg, "%s", o->rc ? err.msg : "");
  o->data = out ? json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS |
                                      JSON_ENCODE_ANY)
                : NULL;
  json_decref(out);
  flow__sandbox_free(sb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size > 64)
    return 0;
  size_t cap = 16384, n = 0;
  char *code = malloc(cap);
  FUZZ_CHECK(code != NULL, "out of memory");
  n += (size_t)snprintf(code + n, cap - n, "local R = {}\n");
  for (size_t i = 0; i + 1 < size; i += 2) {
    char frag[1024];
    snprintf(frag, sizeof frag, fragments[data[i] % NFRAG], data[i + 1]);
    n += (size_t)snprintf(code + n, cap - n,
                          "pcall(function()\n%s\nend)\n", frag);
  }
  snprintf(code + n, cap - n, "return R\n");
  outcome a, b;
  run(code, &a);
  run(code, &b);
  if (getenv("FUZZ_VERBOSE"))
    fprintf(stderr, "%d %s %.300s\n", a.rc, a.msg, a.data ? a.data : "-");
  /* CPU time depends on the machine and its load (docs/budgets.md): a run
     that either time was stopped by it may end otherwise the other time.
     Every other outcome must repeat exactly. */
  int by_cpu = strstr(a.msg, "ms of cpu time") != NULL ||
               strstr(b.msg, "ms of cpu time") != NULL;
  if (by_cpu)
    goto done;
  FUZZ_CHECK(a.rc == b.rc && strcmp(a.msg, b.msg) == 0,
             "two runs differ: %d '%s' then %d '%s'\n%s", a.rc, a.msg, b.rc,
             b.msg, code);
  FUZZ_CHECK((a.data == NULL) == (b.data == NULL) &&
                 (a.data == NULL || strcmp(a.data, b.data) == 0),
             "two runs give different results\n%s", code);
done:
  free(a.data);
  free(b.data);
  free(code);
  return 0;
}
