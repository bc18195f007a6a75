/* The attack harness: see attack_util.h. */
#define _POSIX_C_SOURCE 200809L

#include "attack_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

test_alloc ta;
flow__allocator al;
flow__sandbox *sb;
flow__service *svc;
flow__err err;
int log_lines;

static void
count_log(flow_engine *e, int level, const char *msg, void *payload)
{
  (void)e;
  (void)level;
  (void)msg;
  (void)payload;
  log_lines++;
}

void
setup(void)
{
  memset(&ta, 0, sizeof ta);
  al = test_allocator(&ta);
  sb = NULL;
  svc = NULL;
  log_lines = 0;
  flow__err_clear(&err);
}

void
teardown(void)
{
  flow__service_free(&al, svc);
  flow__sandbox_free(sb);
  sb = NULL;
  svc = NULL;
  ck_assert_int_eq(ta.live_blocks, 0);
  ck_assert_uint_eq(ta.live_bytes, 0);
}

double
cpu_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Records the CPU time since t0 and the error of r's step, and fails the
   test when the step ran past twice its budget (cpu, 0 for the default):
   the budget must stop what it was meant to stop. */
static void
took(result *r, double t0, uint32_t cpu, const char *what, const flow__err *e)
{
  r->cpu_ms = cpu_ms() - t0;
  uint32_t budget = cpu ? cpu : CPU_MS;
  ck_assert_msg(r->cpu_ms < 2 * budget,
                "%s ran %.1f ms of CPU, more than twice its budget (%u ms): %s",
                what, r->cpu_ms, budget, e->msg);
  if (r->rc != 0) {
    /* The whole buffer, not a string copy: whether the library ended its
       message inside its buffer is for the test to see. */
    _Static_assert(sizeof r->msg == sizeof e->msg, "message buffers differ");
    memcpy(r->msg, e->msg, sizeof r->msg);
    r->msg_len = strnlen(e->msg, sizeof e->msg);
    r->msg[sizeof r->msg - 1] = '\0';
  }
}

flow__sandbox *
make_sb(void)
{
  flow__sandbox_config cfg = { &al,   MEM, INSTR, count_log, NULL, NULL,
                               CPU_MS, 0,  0,     0,         0 };
  flow__sandbox *s = NULL;
  int rc = flow__sandbox_new(&s, &cfg, &err);
  ck_assert_msg(rc == 0, "sandbox_new: %s", err.msg);
  return s;
}

/* ---- the target service -------------------------------------------------- */

/* The prelude runs at the top of the script; the attack is the handler of
   the event 'attack'; 'normal' is an ordinary handler. */
const char target_fmt[] =
    "%s\n"
    "return {\n"
    "  name = 'target', version = 1, initial = 'open',\n"
    "  fields = { n = { type = 'integer' }, s = { type = 'string' },\n"
    "             list = { type = 'list' }, extra = { type = 'object' } },\n"
    "  states = { open = { on = {\n"
    "    attack = function(case, ev)\n"
    "%s\n"
    "    end,\n"
    "    normal = function(case, ev)\n"
    "      case.data.n = (case.data.n or 0) + 1\n"
    "      case.data.s = ('ok'):upper() .. #string.format('%%05d', 7)\n"
    "      local keys = {}\n"
    "      for k in pairs({ b = 1, a = 2, c = 3 }) do keys[#keys + 1] = k end\n"
    "      case.data.list = keys\n"
    "      return 'open'\n"
    "    end,\n"
    "  } } },\n"
    "}\n";

int
compile_target(const char *prelude, const char *body)
{
  /* A new target replaces the one before. */
  flow__service_free(&al, svc);
  flow__sandbox_free(sb);
  svc = NULL;
  sb = NULL;
  size_t n = strlen(target_fmt) + strlen(prelude) + strlen(body) + 1;
  char *src = malloc(n);
  snprintf(src, n, target_fmt, prelude, body);
  sb = make_sb();
  svc = flow__calloc(&al, 1, sizeof *svc);
  flow__err_clear(&err);
  double t0 = cpu_ms();
  int rc = flow__service_compile(svc, sb, src, strlen(src), "target.lua",
                                 &err);
  /* Loading is a unit of work too, under the same budgets. */
  ck_assert_msg(cpu_ms() - t0 < 2 * CPU_MS, "loading took %.1f ms of CPU",
                cpu_ms() - t0);
  free(src);
  if (rc != 0) {
    flow__service_free(&al, svc);
    svc = NULL;
    flow__sandbox_free(sb);
    sb = NULL;
  }
  return rc;
}


const flow__trans *
trans(const char *event)
{
  const flow__state *st = flow__service_state(svc, "open");
  ck_assert_ptr_nonnull(st);
  const flow__trans *tr = flow__state_trans(st, event);
  ck_assert_ptr_nonnull(tr);
  return tr;
}

/* Runs one event against a case with empty data, timing the whole run. */
result
run_event(const char *event)
{
  static const char *const roles[] = { "crew" };
  static const flow_actor actor = { "sam", roles, 1 };
  result r;
  memset(&r, 0, sizeof r);
  flow__case_view cv = { "1", "target", 1, "open", "open",
                         0,   0,        INT64_MIN, 1, 42 };
  json_t *data = json_object();
  json_t *payload = json_object();
  flow__event_view ev = { .name = event,
                          .payload = payload,
                          .actor = &actor,
                          .at = 1795770000000 };
  flow__err e;
  flow__err_clear(&e);
  double t0 = cpu_ms();
  int rc = flow__run_begin(sb, svc, &cv, data, &ev, &e);
  char *next = NULL;
  if (rc == 0)
    rc = flow__run_invoke(sb, trans(event)->handler, &next, NULL, &e);
  json_t *out = NULL, *calls = NULL;
  if (rc == 0)
    rc = flow__run_end(sb, &out, &calls, &e);
  else
    flow__run_abort(sb);
  r.rc = rc;
  char what[96];
  snprintf(what, sizeof what, "the event '%s'", event);
  took(&r, t0, 0, what, &e);
  if (out) {
    char *d = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    r.data_len = d ? strlen(d) : 0;
    snprintf(r.data, sizeof r.data, "%s", d ? d : "");
    free(d);
    json_t *str = json_object_get(out, "s");
    if (json_is_string(str)) {
      const char *v = json_string_value(str);
      r.s_len = json_string_length(str);
      r.s_all_e_acute = r.s_len % 2 == 0;
      for (size_t i = 0; i < r.s_len && r.s_all_e_acute; i += 2)
        r.s_all_e_acute = (unsigned char)v[i] == 0xC3 &&
                          (unsigned char)v[i + 1] == 0xA9;
    }
  }
  flow__free(&al, next);
  json_decref(out);
  json_decref(calls);
  json_decref(data);
  json_decref(payload);
  return r;
}

/* After an attack, the same sandbox serves a normal event. */
void
normal_event_works(void)
{
  result n = run_event("normal");
  ck_assert_msg(n.rc == 0, "normal event after the attack: %s", n.msg);
  ck_assert_str_eq(n.data, "{\"list\":[\"a\",\"b\",\"c\"],\"n\":1,"
                           "\"s\":\"OK5\"}");
}

/* Loads the target with the attack and runs it (run_event checks its CPU
   time), then checks that the sandbox still serves a normal event;
   returns what the attack run gave. */
result
attack_with(const char *prelude, const char *body)
{
  int rc = compile_target(prelude, body);
  ck_assert_msg(rc == 0, "compile: %s", err.msg);
  result r = run_event("attack");
  if (getenv("FLOW_ATTACK_TIMES"))
    fprintf(stderr, "%7.1f ms  %.50s | %.60s\n", r.cpu_ms,
            r.rc ? r.msg + (r.rc == FLOW_ELIMIT ? 46 : 0) : "(no effect)",
            body);
  normal_event_works();
  return r;
}

result
attack(const char *body)
{
  return attack_with("", body);
}

/* The run was killed by the named budget ("instructions", "cpu time",
   "memory", "log output"). */
void
killed_by(const result *r, const char *budget)
{
  ck_assert_msg(r->rc == FLOW_ELIMIT, "want a kill by %s, got %d: %s",
                budget, r->rc, r->msg);
  ck_assert_msg(strncmp(r->msg, "budget exceeded: ", 17) == 0, "%s",
                r->msg);
  ck_assert_msg(strstr(r->msg, budget) != NULL, "want %s: %s", budget,
                r->msg);
  ck_assert(flow__sandbox_damaged(sb));
}

void
refused_with(const result *r, int rc, const char *fragment)
{
  ck_assert_msg(r->rc == rc, "want %d, got %d: %s", rc, r->rc, r->msg);
  ck_assert_msg(strstr(r->msg, fragment) != NULL, "want '%s' in '%s'",
                fragment, r->msg);
}

/* The attack ran to the end and left case.data as data. */
void
no_effect(const result *r, const char *data)
{
  ck_assert_msg(r->rc == 0, "want no effect, got %d: %s", r->rc, r->msg);
  ck_assert_str_eq(r->data, data);
}


/* 1 when s is well-formed UTF-8 (no overlong forms, surrogates, or a
   sequence cut short). */
int
utf8_ok(const char *s)
{
  return flow__utf8_valid(s, strlen(s));
}

static flow__sandbox *
sized_sb(size_t mem, uint32_t cpu, uint64_t instr)
{
  flow__sandbox_config cfg = { &al, mem ? mem : MEM, instr ? instr : INSTR,
                               count_log, NULL, NULL, cpu ? cpu : CPU_MS,
                               0, 0, 0, 0 };
  flow__sandbox *s = NULL;
  int rc = flow__sandbox_new(&s, &cfg, &err);
  ck_assert_msg(rc == 0, "sandbox_new: %s", err.msg);
  return s;
}

result
eval_with(const char *code, size_t mem, uint32_t cpu, uint64_t instr)
{
  result r;
  memset(&r, 0, sizeof r);
  flow__sandbox *s = sized_sb(mem, cpu, instr);
  flow__err e;
  flow__err_clear(&e);
  json_t *out = NULL;
  double t0 = cpu_ms();
  r.rc = flow__sandbox_eval(s, code, strlen(code), "attack.lua", &out, &e);
  took(&r, t0, cpu, "the chunk", &e);
  if (out) {
    char *d = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    r.data_len = d ? strlen(d) : 0;
    snprintf(r.data, sizeof r.data, "%s", d ? d : "");
    free(d);
    json_decref(out);
  }
  flow__sandbox_free(s);
  return r;
}

result
load_with(const char *code, size_t mem, uint32_t cpu)
{
  result r;
  memset(&r, 0, sizeof r);
  flow__sandbox *s = sized_sb(mem, cpu, 0);
  flow__service *v = flow__calloc(&al, 1, sizeof *v);
  flow__err e;
  flow__err_clear(&e);
  double t0 = cpu_ms();
  r.rc = flow__service_compile(v, s, code, strlen(code), "attack.lua", &e);
  took(&r, t0, cpu, "loading", &e);
  flow__service_free(&al, v);
  flow__sandbox_free(s);
  return r;
}
