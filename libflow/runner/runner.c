/*
 * The test runner behind `flow test` (flow_test_file): runs one *_test.lua
 * file and reports every test in it as JSON.
 *
 * The test file runs in a sandbox made exactly like a service's (text
 * only, the same libraries, budgets on instructions, CPU time and memory),
 * with the test API added to its globals: test, load, open, advance,
 * advance_to, now, send and messages, the expect_* assertions, expect(),
 * fail and the `mock` table (mock.action).  Running the file's top level only declares tests and
 * names the services to load; then each test runs as its own unit of work
 * against its own fresh ":memory:" engine, whose clock is virtual: it
 * starts at FLOW_TEST_DEFAULT_START (or test.start, or the test's `at`)
 * and moves only when the test says so, firing every timer due on the way
 * in due order, each at its own due time.
 *
 * A failed assertion records what was expected, what was found, the line
 * of the assertion in the test file (from the caller's debug information)
 * and the history of the case it was about, then raises an error to end
 * the test; the failure sticks even if the test catches that error with
 * pcall.  An engine call that is refused where the test did not expect it
 * ends the test as an error with the engine's message and error name.  A
 * budget that runs out ends the test as an error naming the budget, and
 * the next test starts a fresh unit, so one runaway test costs its budget
 * and nothing more.
 *
 * The parts of the test API live beside this file (see runner_int.h);
 * this one declares the tests, installs the API and runs each test.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner/runner_int.h"

static int64_t
mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- declaring tests ----------------------------------------------------- */

static int
l_test_call(lua_State *L)
{
  runner *r = flow__runner_of(L);
  /* 1: the test table itself (called as test(...)). */
  if (r->in_test)
    return flow__runner_raise_at(L, r,
                                 "test() declares a test at the top level of "
                                 "the file, not inside another test");
  const char *name = luaL_checkstring(L, 2);
  int fn = 3;
  const char *at = NULL;
  if (lua_istable(L, 3)) {
    if (lua_getfield(L, 3, "at") == LUA_TSTRING)
      at = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1))
      return flow__runner_raise_at(L, r, "the options of test '%s' take `at = "
                        "\"2026-02-02T09:00:00Z\"`",
                        name);
    lua_pop(L, 1);
    fn = 4;
  }
  if (!lua_isfunction(L, fn))
    return flow__runner_raise_at(L, r,
                                 "test '%s' needs a function: test(\"%s\", "
                                 "function() ... end)",
                                 name, name);
  if (r->ntests == r->captests) {
    size_t cap = r->captests ? r->captests * 2 : 16;
    test_decl *v = flow__realloc(&r->alloc, r->tests, cap * sizeof *v);
    if (v == NULL)
      return luaL_error(L, "out of memory");
    r->tests = v;
    r->captests = cap;
  }
  test_decl *t = &r->tests[r->ntests];
  memset(t, 0, sizeof *t);
  t->name = flow__strdup(&r->alloc, name);
  t->at = at ? flow__strdup(&r->alloc, at) : NULL;
  t->line = flow__runner_caller_line(L);
  if (t->name == NULL || (at && t->at == NULL)) {
    flow__free(&r->alloc, t->name);
    flow__free(&r->alloc, t->at);
    return luaL_error(L, "out of memory");
  }
  lua_pushvalue(L, fn);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r->ntests++;
  return 0;
}

static const luaL_Reg global_funcs[] = {
  { "load", flow__runner_l_load },
  { "open", flow__runner_l_open },
  { "case_of", flow__runner_l_case_of },
  { "advance", flow__runner_l_advance },
  { "advance_to", flow__runner_l_advance_to },
  { "now", flow__runner_l_now },
  { "expect_refused", flow__runner_l_expect_refused },
  { "expect_open_refused", flow__runner_l_expect_open_refused },
  { "expect_equal", flow__runner_l_expect_equal },
  { "expect", flow__runner_l_expect },
  { "fail", flow__runner_l_fail },
  { "send", flow__runner_l_send },
  { "messages", flow__runner_l_messages },
  { NULL, NULL },
};

/* Installs the test API; the runner is its only argument. */
static int
install_p(lua_State *L)
{
  runner *r = lua_touserdata(L, 1);
  lua_pushglobaltable(L);
  lua_pushlightuserdata(L, r);
  luaL_setfuncs(L, global_funcs, 1);

  /* The case metatable, in the registry (runner_case.c). */
  flow__runner_case_install(L, r);

  /* test: a table (for test.start) that is called to declare a test. */
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, r);
  lua_pushcclosure(L, l_test_call, 1);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  r->test_table = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -2, "test");

  /* mock: mock.action stands in for the host; the test itself does the
     tasks (c:complete) and sends the messages (send), and other names
     say so. */
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, r);
  lua_pushcclosure(L, flow__runner_l_mock_action, 1);
  lua_setfield(L, -2, "action");
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, r);
  lua_pushcclosure(L, flow__runner_l_mock_index, 1);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "mock");

  /* flow.now in a test file is the test's virtual clock too. */
  if (lua_getfield(L, -1, "flow") == LUA_TTABLE) {
    lua_pushlightuserdata(L, r);
    lua_pushcclosure(L, flow__runner_l_now, 1);
    lua_setfield(L, -2, "now");
  }
  lua_pop(L, 2);
  return 0;
}

/* ---- running ------------------------------------------------------------- */

static void
on_log(flow_engine *e, int level, const char *msg, void *payload)
{
  runner *r = payload;
  (void)e;
  if (level == FLOW_LOG_DEBUG || r->output.len > 64 * 1024)
    return;
  flow__buf_adds(&r->output, msg);
  flow__buf_addc(&r->output, '\n');
}

static json_t *
result(const char *name, const char *status, int line, int64_t ms)
{
  return json_pack("{s:s, s:s, s:i, s:I}", "name", name, "status", status,
                   "line", line, "ms", (json_int_t)ms);
}

static void
reset_test(runner *r)
{
  flow__runner_actions_reset(r);
  flow__runner_mocks_clear(flow__sandbox_lua(r->sb));
  flow_engine_close(r->e);
  r->e = NULL;
  r->in_test = 0;
  r->last_case[0] = 0;
  json_decref(r->cases);
  json_decref(r->loaded);
  json_decref(r->history);
  r->cases = r->loaded = r->history = NULL;
  r->failed = 0;
  r->fail_line = 0;
  r->fail_msg[0] = 0;
  r->last_code = 0;
  r->incident[0] = 0;
  r->moving = 0;
  r->incident_case[0] = 0;
  r->incident_code = 0;
  flow__buf_free(&r->output);
  flow__buf_init(&r->output, &r->alloc);
}

/* The line in "FILE:LINE: ..." when FILE is the test file, else 0; the
   prefix is then cut from msg (the result carries the line). */
static int
message_line(runner *r, char *msg)
{
  size_t n = strlen(r->path);
  if (strncmp(msg, r->path, n) != 0 || msg[n] != ':')
    return 0;
  char *end;
  long line = strtol(msg + n + 1, &end, 10);
  if (line <= 0 || line > 100000000 || end[0] != ':' || end[1] != ' ')
    return 0;
  memmove(msg, end + 2, strlen(end + 2) + 1);
  return (int)line;
}

/* What the protected bodies below need (flow__sb_protect passes one
   pointer). */
typedef struct body_args {
  runner *r;
  const test_decl *t;
  const char *src;
  size_t len;
} body_args;

/* Installs the services, runs the test function as one unit. */
static int
test_body_p(lua_State *L)
{
  body_args *a = lua_touserdata(L, 1);
  runner *r = a->r;
  const test_decl *t = a->t;
  for (size_t i = 0; i < r->nsvcs; i++)
    flow__runner_load_into_engine(L, r, &r->svcs[i]);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_call(L, 0, 0);
  return 0;
}

static json_t *
run_test(runner *r, const test_decl *t, const char *file_start)
{
  lua_State *L = flow__sandbox_lua(r->sb);
  int64_t t0 = mono_ms();
  char msg[MSG_MAX] = "";
  const char *status = "pass";
  int line = t->line;

  reset_test(r);
  r->cases = json_array();
  r->loaded = json_array();
  int64_t start = r->start;
  const char *bad_start = NULL;
  if (t->at && flow_time_parse(&start, t->at) != 0)
    bad_start = t->at;
  else if (!t->at && file_start && flow_time_parse(&start, file_start) != 0)
    bad_start = file_start;
  flow_engine_options eo = FLOW_ENGINE_OPTIONS_INIT;
  eo.synchronous = FLOW_SYNC_OFF;
  eo.log = on_log;
  eo.log_payload = r;
  char eb[256];
  if (bad_start) {
    status = "error";
    snprintf(msg, sizeof msg, "%s: cannot read '%s' as a start time; write "
             "ISO 8601 with an offset or Z, like 2026-02-02T09:00:00Z",
             t->at ? "at" : "test.start", bad_start);
  } else if (r->cases == NULL || r->loaded == NULL ||
             flow_engine_open(&r->e, ":memory:", &eo, eb, sizeof eb) != 0) {
    status = "error";
    snprintf(msg, sizeof msg, "cannot open an engine for the test: %s",
             r->cases && r->loaded ? eb : "out of memory");
  } else {
    flow_engine_set_time(r->e, start);
    flow_engine_set_listener(r->e, flow__runner_listener, r);
    r->in_test = 1;
    flow__sb_start(r->sb, "the test '%.200s'", t->name);
    lua_settop(L, 0);
    body_args a = { r, t, NULL, 0 };
    int st = flow__sb_protect(r->sb, test_body_p, &a);
    flow__err err;
    flow__err_clear(&err);
    int rc = flow__sb_outcome(r->sb, st, NULL, &err);
    flow__sb_stop(r->sb);
    lua_settop(L, 0);
    if (rc == FLOW_ELIMIT || rc == FLOW_ENOMEM) {
      status = "error";
      snprintf(msg, sizeof msg, "%s", err.msg);
    } else if (r->failed) {
      status = "fail";
      line = r->fail_line ? r->fail_line : t->line;
      snprintf(msg, sizeof msg, "%s", r->fail_msg);
    } else if (rc != 0) {
      status = "error";
      snprintf(msg, sizeof msg, "%s", err.msg);
      int l = message_line(r, msg);
      if (l > 0)
        line = l;
    }
    if (strcmp(status, "pass") != 0)
      flow__runner_capture_history(r, r->last_case);
    if (r->opts.coverage)
      flow__runner_collect_coverage(r);
  }
  json_t *res = result(t->name, status, line, mono_ms() - t0);
  if (res && strcmp(status, "pass") != 0)
    json_object_set_new(res, "message", json_string(msg));
  if (res && r->history && strcmp(status, "pass") != 0)
    json_object_set(res, "history", r->history);
  if (res && r->output.len > 0)
    json_object_set_new(res, "output",
                        json_string(flow__buf_str(&r->output)));
  reset_test(r);
  return res;
}

/* Runs the file's top level: declares tests, names services. */
static int
file_body_p(lua_State *L)
{
  body_args *a = lua_touserdata(L, 1);
  runner *r = a->r;
  const char *src = a->src;
  size_t len = a->len;
  char cname[1024];
  snprintf(cname, sizeof cname, "=%s", r->path);
  if (luaL_loadbufferx(L, src, len, cname, "t") != LUA_OK)
    return lua_error(L);
  char msg[FLOW__ERRMSG_MAX];
  int line;
  int rc = flow__bytecode_check(L, r->sb, &line, msg, sizeof msg);
  flow__sb_check(L);
  if (rc == FLOW_ENOMEM)
    return luaL_error(L, "not enough memory");
  if (rc != 0)
    return luaL_error(L, "%s", msg);
  lua_call(L, 0, 0);
  return 0;
}

static json_t *
file_error(runner *r, const char *text)
{
  char msg[MSG_MAX];
  snprintf(msg, sizeof msg, "%s", text);
  json_t *res = result(r->path, "error", message_line(r, msg), 0);
  if (res)
    json_object_set_new(res, "message", json_string(msg));
  return res;
}

static void
runner_free(runner *r)
{
  reset_test(r);
  flow__buf_free(&r->output);
  for (size_t i = 0; i < r->ntests; i++) {
    flow__free(&r->alloc, r->tests[i].name);
    flow__free(&r->alloc, r->tests[i].at);
  }
  flow__free(&r->alloc, r->tests);
  for (size_t i = 0; i < r->nsvcs; i++)
    flow__runner_svc_src_free(r, &r->svcs[i]);
  flow__free(&r->alloc, r->svcs);
  flow_engine_close(r->scratch);
  flow__sandbox_free(r->sb);
  flow__free(&r->alloc, r->dir);
  json_decref(r->coverage);
}

int
flow_test_file(char **out, const char *path, const flow_test_options *opts)
{
  if (out == NULL || path == NULL)
    return FLOW_EMISUSE;
  *out = NULL;
  runner r;
  memset(&r, 0, sizeof r);
  r.alloc.fn = flow__default_alloc;
  r.path = path;
  r.test_table = LUA_NOREF;
  flow__buf_init(&r.output, &r.alloc);
  flow_test_options o = FLOW_TEST_OPTIONS_INIT;
  if (opts) {
    if (opts->version < 1 || opts->version > FLOW_TEST_OPTIONS_VERSION)
      return FLOW_EINVAL;
    memcpy(&o, opts, sizeof o);
  }
  r.opts = o;
  if (flow_time_parse(&r.start, o.start ? o.start
                                         : FLOW_TEST_DEFAULT_START) != 0)
    return FLOW_EINVAL;
  if (o.nservice_paths && o.service_paths == NULL)
    return FLOW_EMISUSE;

  size_t len = 0;
  char *src = flow__runner_read_all(&r, path, &len);
  if (src == NULL)
    return errno == EFBIG ? FLOW_EINVAL : FLOW_ENOTFOUND;
  const char *slash = strrchr(path, '/');
  r.dir = slash ? flow__strndup(&r.alloc, path, (size_t)(slash - path))
                : flow__strdup(&r.alloc, ".");
  if (slash == path && r.dir)
    strcpy(r.dir, "/");
  json_t *tests = json_array();
  r.coverage = json_object();
  int rc = 0;
  flow__sandbox_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.alloc = &r.alloc;
  cfg.mem_limit = o.memory_limit ? o.memory_limit : FLOW__TEST_MEMORY;
  cfg.instr_limit = o.instruction_limit ? o.instruction_limit : FLOW__TEST_INSTRUCTIONS;
  cfg.cpu_ms = o.cpu_ms ? o.cpu_ms : FLOW__TEST_CPU_MS;
  cfg.log = on_log;
  cfg.log_payload = &r;
  flow__err err;
  flow__err_clear(&err);
  if (r.dir == NULL || tests == NULL || r.coverage == NULL) {
    rc = FLOW_ENOMEM;
    goto done;
  }
  if ((rc = flow__sandbox_new(&r.sb, &cfg, &err)) != 0)
    goto done;
  lua_State *L = flow__sandbox_lua(r.sb);

  /* The API, then the file's top level, as units of their own. */
  flow__sb_start(r.sb, "setting up the test API");
  int st = flow__sb_protect(r.sb, install_p, &r);
  rc = flow__sb_outcome(r.sb, st, NULL, &err);
  flow__sb_stop(r.sb);
  lua_settop(L, 0);
  if (rc != 0)
    goto done;
  flow__sb_start(r.sb, "the top level of %.200s", path);
  body_args fa = { &r, NULL, src, len };
  st = flow__sb_protect(r.sb, file_body_p, &fa);
  int frc = flow__sb_outcome(r.sb, st, NULL, &err);
  flow__sb_stop(r.sb);
  lua_settop(L, 0);
  if (frc != 0) {
    json_array_append_new(tests, file_error(&r, err.msg));
  } else {
    const char *file_start = NULL;
    char fs[64] = "";
    lua_rawgeti(L, LUA_REGISTRYINDEX, r.test_table);
    lua_pushliteral(L, "start");
    if (lua_rawget(L, -2) == LUA_TSTRING) {
      snprintf(fs, sizeof fs, "%s", lua_tostring(L, -1));
      file_start = fs;
    }
    lua_settop(L, 0);
    for (size_t i = 0; i < r.ntests; i++) {
      const test_decl *t = &r.tests[i];
      if (o.filter && o.filter[0] && strstr(t->name, o.filter) == NULL)
        continue;
      json_t *res = run_test(&r, t, file_start);
      if (res == NULL || json_array_append_new(tests, res) != 0) {
        rc = FLOW_ENOMEM;
        goto done;
      }
    }
  }
  json_t *j = json_pack("{s:s, s:O}", "file", path, "tests", tests);
  if (j && o.coverage)
    json_object_set(j, "coverage", r.coverage);
  *out = j ? flow__json_owned(&r.alloc, j) : NULL;
  json_decref(j);
  rc = *out ? 0 : FLOW_ENOMEM;
done:
  json_decref(tests);
  flow__free(&r.alloc, src);
  runner_free(&r);
  return rc;
}
