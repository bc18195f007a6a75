/*
 * The test runner behind `flow test` (flow_test_file): runs one *_test.lua
 * file and reports every test in it as JSON.
 *
 * The test file runs in a sandbox made exactly like a service's (text
 * only, the same libraries, budgets on instructions, CPU time and memory),
 * with the test API added to its globals: test, load, open, advance,
 * advance_to, now, the expect_* assertions, expect(), fail and a reserved
 * `mock` table.  Running the file's top level only declares tests and
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
 * Coverage is read from the committed history of every case a test
 * opened: the opening enters the initial state, each later row is one
 * transition (from, event) that entered `to`.  Timer transitions of a
 * state's `after` carry their duration in the payload, which names the
 * transition "STATE.after DURATION".
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "script/script_host.h"

#define MAX_ROLES 16
#define MSG_MAX (FLOW__ERRMSG_MAX + 128)

typedef struct svc_src {
  char *chunk; /* the path, as errors name it */
  char *src;
  size_t len;
} svc_src;

typedef struct test_decl {
  char *name;
  int ref;  /* the test function */
  int line; /* where test(...) is called */
  char *at; /* its { at = ... }, or NULL */
} test_decl;

typedef struct runner {
  flow__allocator alloc;
  flow__sandbox *sb;
  const char *path;
  char *dir;
  flow_test_options opts;
  int64_t start;

  test_decl *tests;
  size_t ntests, captests;
  svc_src *svcs;
  size_t nsvcs, capsvcs;
  int test_table; /* registry ref of the `test` table */
  flow_engine *scratch; /* checks top-level load() calls */

  /* The test running now. */
  int in_test;
  flow_engine *e;
  char last_case[24];
  json_t *cases;  /* ids opened, strings */
  json_t *loaded; /* service names loaded, strings */
  int failed;
  int fail_line;
  char fail_msg[MSG_MAX];
  json_t *history; /* lines, captured at the failure */
  int last_code;   /* FLOW_E* of the last refusal raised, 0 none */
  char incident[MSG_MAX];
  int incident_code;
  char incident_case[24];
  flow__buf output;
  json_t *coverage;
} runner;

/* ---- small helpers ------------------------------------------------------ */

static runner *
R(lua_State *L)
{
  return lua_touserdata(L, lua_upvalueindex(1));
}

static int64_t
mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The line of the test code that called the C function running now. */
static int
caller_line(lua_State *L)
{
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
      return ar.currentline;
  }
  return 0;
}

static const char *
file_name(runner *r)
{
  return r->path;
}

/* Raises "FILE:LINE: message" with the line of the calling test code.
   (luaL_error would cut a long file name to LUA_IDSIZE.) */
static int raise_at(lua_State *L, runner *r, const char *fmt, ...)
    FLOW__PRINTF(3, 4);

static int
raise_at(lua_State *L, runner *r, const char *fmt, ...)
{
  char msg[MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lua_pushfstring(L, "%s:%d: %s", file_name(r), caller_line(L), msg);
  return lua_error(L);
}

/* The value at idx as short text for a message, never running a
   metamethod: JSON when it is JSON, else its type. */
static void
describe(runner *r, lua_State *L, int idx, char *buf, size_t len)
{
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    snprintf(buf, len, "nil");
    return;
  case LUA_TBOOLEAN:
  case LUA_TNUMBER:
  case LUA_TSTRING:
  case LUA_TTABLE: {
    json_t *j = NULL;
    char msg[128];
    if (flow__json_from_lua(L, idx, "value", &r->alloc, &j, msg,
                            sizeof msg) == 0 &&
        j != NULL) {
      char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS |
                                  JSON_ENCODE_ANY);
      json_decref(j);
      if (s) {
        if (strlen(s) > 300)
          snprintf(buf, len, "%.297s...", s);
        else
          snprintf(buf, len, "%s", s);
        free(s);
        return;
      }
    }
    json_decref(j);
    snprintf(buf, len, "a %s", luaL_typename(L, idx));
    return;
  }
  default:
    snprintf(buf, len, "a %s", luaL_typename(L, idx));
  }
}

static void
describe_json(json_t *j, char *buf, size_t len)
{
  if (j == NULL) {
    snprintf(buf, len, "nothing");
    return;
  }
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  snprintf(buf, len, "%s", s ? s : "?");
  free(s);
}

/* One line per event of the case's history, for failure reports. */
static json_t *
history_lines(runner *r, const char *case_id)
{
  char *text = NULL;
  if (r->e == NULL || case_id[0] == 0 ||
      flow_case_history(&text, r->e, case_id) != 0)
    return NULL;
  json_t *h = json_loads(text, 0, NULL);
  flow_free(text);
  json_t *lines = json_array();
  for (size_t i = 0; lines && i < json_array_size(h); i++) {
    json_t *row = json_array_get(h, i);
    json_t *actor = json_object_get(row, "actor");
    json_t *roles = json_object_get(actor, "roles");
    char rl[200] = "";
    size_t n = 0;
    for (size_t k = 0; k < json_array_size(roles) && n < sizeof rl; k++) {
      int w = snprintf(rl + n, sizeof rl - n, "%s%s", k ? "," : " [",
                       json_string_value(json_array_get(roles, k)));
      if (w < 0)
        break;
      n += (size_t)w;
    }
    if (n > 0 && n + 1 < sizeof rl)
      strcat(rl, "]");
    const char *from = json_string_value(json_object_get(row, "from"));
    const char *to = json_string_value(json_object_get(row, "to"));
    char line[512];
    snprintf(line, sizeof line, "%lld %s %s: %s -> %s (%s%s)",
             (long long)json_integer_value(json_object_get(row, "seq")),
             json_string_value(json_object_get(row, "at")),
             json_string_value(json_object_get(row, "event")),
             from ? from : "(opened)", to ? to : "?",
             json_string_value(json_object_get(actor, "id")), rl);
    json_array_append_new(lines, json_string(line));
  }
  json_decref(h);
  return lines;
}

static void
capture_history(runner *r, const char *case_id)
{
  if (r->history != NULL || case_id == NULL || case_id[0] == 0)
    return;
  r->history = history_lines(r, case_id);
}

/* Records a failed assertion (the first one counts) and raises. */
static int fail_at(lua_State *L, runner *r, const char *fmt, ...)
    FLOW__PRINTF(3, 4);

static int
fail_at(lua_State *L, runner *r, const char *fmt, ...)
{
  char msg[MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int line = caller_line(L);
  if (!r->failed) {
    r->failed = 1;
    r->fail_line = line;
    snprintf(r->fail_msg, sizeof r->fail_msg, "%s", msg);
    capture_history(r, r->last_case);
  }
  lua_pushfstring(L, "%s:%d: %s", file_name(r), line, msg);
  return lua_error(L);
}

/* Raises the engine's refusal rc as a test error. */
static int
engine_error(lua_State *L, runner *r, int rc, const char *what)
{
  char msg[MSG_MAX];
  snprintf(msg, sizeof msg, "%s", flow_errmsg(r->e)); /* before it goes */
  r->last_code = rc;
  capture_history(r, r->last_case);
  return raise_at(L, r, "%s was refused: %s: %s", what, flow_err_name(rc),
                  msg);
}

static runner *
need_test(lua_State *L, const char *fn)
{
  runner *r = R(L);
  flow__sb_charge(L, 1000);
  if (!r->in_test || r->e == NULL)
    raise_at(L, r, "%s() works only inside a test: test(\"name\", "
               "function() ... end)",
               fn);
  return r;
}

/* "EPERM" or "FLOW_EPERM" -> the code, or 0. */
static int
code_from_name(const char *s)
{
  static const int codes[] = {
#define FLOW__T_CODE(name, num, desc) FLOW_##name,
    FLOW_ERRNO_MAP(FLOW__T_CODE)
#undef FLOW__T_CODE
  };
  for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
    const char *n = flow_err_name(codes[i]);
    if (strcmp(n, s) == 0 || strcmp(n + 5, s) == 0)
      return codes[i];
  }
  return 0;
}

static int
check_code_arg(lua_State *L, runner *r, int idx)
{
  const char *name = luaL_checkstring(L, idx);
  int code = code_from_name(name);
  if (code == 0)
    raise_at(L, r, "'%s' is not an error name (use one like "
               "\"FLOW_EPERM\", \"FLOW_EDATA\", \"FLOW_EEVENT\")",
               name);
  return code;
}

/* Lua value at idx (a table or nil) as JSON object text, malloc'd. */
static char *
object_text(lua_State *L, runner *r, int idx, const char *what)
{
  if (lua_isnoneornil(L, idx))
    return NULL;
  if (!lua_istable(L, idx))
    raise_at(L, r, "%s must be a table, not a %s", what, luaL_typename(L, idx));
  json_t *j = NULL;
  char msg[256];
  int rc = flow__json_from_lua(L, idx, what, &r->alloc, &j, msg, sizeof msg);
  if (rc != 0)
    raise_at(L, r, "%s", msg);
  if (json_is_array(j) && json_array_size(j) == 0) {
    json_decref(j);
    j = json_object();
  }
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (s == NULL)
    luaL_error(L, "out of memory");
  /* Handed to the engine, which wants a string it may read until the
     call returns; the Lua side keeps nothing. */
  return s;
}

/* ---- the virtual clock -------------------------------------------------- */

static void
listener(flow_engine *e, const char *event_json, void *payload)
{
  runner *r = payload;
  (void)e;
  json_t *j = json_loads(event_json, 0, NULL);
  const char *type = json_string_value(json_object_get(j, "type"));
  if (type && strcmp(type, "incident") == 0 && r->incident[0] == 0) {
    const char *c = json_string_value(json_object_get(j, "case"));
    const char *m = json_string_value(json_object_get(j, "message"));
    const char *ev = json_string_value(json_object_get(j, "event"));
    const char *code = json_string_value(json_object_get(j, "error"));
    snprintf(r->incident, sizeof r->incident,
             "the timer '%s' of case %s was refused when it fired (an "
             "incident): %s",
             ev ? ev : "?", c ? c : "?", m ? m : "?");
    snprintf(r->incident_case, sizeof r->incident_case, "%s", c ? c : "");
    r->incident_code = code ? code_from_name(code) : FLOW_ERROR;
  }
  json_decref(j);
}

/* Moves the clock to target, firing what falls due on the way. */
static void
move_clock(lua_State *L, runner *r, int64_t target)
{
  flow_engine *e = r->e;
  int64_t now = flow_engine_now(e);
  if (target < now) {
    char a[32], b[32];
    flow_time_format(a, sizeof a, target);
    flow_time_format(b, sizeof b, now);
    raise_at(L, r, "the clock only moves forward: %s is before now "
               "(%s)",
               a, b);
  }
  for (int guard = 0; guard < 1000000; guard++) {
    int64_t due = flow__engine_next_due(e);
    if (due == INT64_MAX || due > target)
      break;
    if (due > now)
      flow_engine_set_time(e, now = due);
    size_t fired = 0;
    int rc = flow_engine_fire_due(e, &fired);
    flow__sb_charge(L, 1000 + 1000 * (uint64_t)fired);
    if (rc != 0)
      engine_error(L, r, rc, "firing timers");
    if (r->incident[0]) {
      snprintf(r->last_case, sizeof r->last_case, "%s", r->incident_case);
      r->last_code = r->incident_code;
      capture_history(r, r->last_case);
      raise_at(L, r, "%s", r->incident);
    }
    if (fired == 0)
      break;
  }
  flow_engine_set_time(e, target);
}

static int64_t
check_time(lua_State *L, runner *r, int idx, const char *what)
{
  const char *s = luaL_checkstring(L, idx);
  int64_t t;
  if (flow_time_parse(&t, s) != 0)
    raise_at(L, r, "%s: cannot read '%s' as a time; write ISO 8601 "
               "with an offset or Z, like 2026-02-02T09:00:00Z",
               what, s);
  return t;
}

static int
l_advance(lua_State *L)
{
  runner *r = need_test(L, "advance");
  const char *text = luaL_checkstring(L, 1);
  flow__duration d;
  flow__err err;
  flow__err_clear(&err);
  if (flow__duration_parse(text, &d, &err) != 0)
    return raise_at(L, r, "advance: %s", err.msg);
  int64_t target;
  if (flow__calendar_add(&r->e->cal, flow_engine_now(r->e), &d, &target))
    return raise_at(L, r, "advance('%s') overflows", text);
  move_clock(L, r, target);
  return 0;
}

static int
l_advance_to(lua_State *L)
{
  runner *r = need_test(L, "advance_to");
  move_clock(L, r, check_time(L, r, 1, "advance_to"));
  return 0;
}

static int
l_now(lua_State *L)
{
  runner *r = need_test(L, "now");
  char buf[32];
  flow_time_format(buf, sizeof buf, flow_engine_now(r->e));
  lua_pushstring(L, buf);
  return 1;
}

/* ---- loading services ---------------------------------------------------- */

static char *
join_path(runner *r, const char *dir, const char *rel)
{
  size_t n = strlen(dir) + strlen(rel) + 2;
  char *p = flow__malloc(&r->alloc, n);
  if (p == NULL)
    return NULL;
  if (rel[0] == '/' || strcmp(dir, ".") == 0 || dir[0] == 0)
    snprintf(p, n, "%s", rel);
  else
    snprintf(p, n, "%s/%s", dir, rel);
  return p;
}

/* Reads a whole file; NULL with errno set when it cannot. */
static char *
read_all(runner *r, const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  flow__buf b;
  flow__buf_init(&b, &r->alloc);
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= FLOW__MAX_TEST_FILE)
    flow__buf_add(&b, chunk, n);
  int bad = ferror(f) || b.oom || b.len > FLOW__MAX_TEST_FILE;
  fclose(f);
  if (bad) {
    flow__buf_free(&b);
    errno = EFBIG;
    return NULL;
  }
  *len = b.len;
  if (b.p == NULL) {
    char *empty = flow__malloc(&r->alloc, 1);
    if (empty)
      empty[0] = 0;
    return empty;
  }
  return b.p;
}

/* Finds rel beside the test file, then in the service paths. */
static int
find_service(runner *r, const char *rel, svc_src *out)
{
  memset(out, 0, sizeof *out);
  size_t ndirs = 1 + (r->opts.service_paths ? r->opts.nservice_paths : 0);
  for (size_t i = 0; i < ndirs; i++) {
    const char *dir = i == 0 ? r->dir : r->opts.service_paths[i - 1];
    char *p = join_path(r, dir ? dir : ".", rel);
    if (p == NULL)
      return FLOW_ENOMEM;
    out->src = read_all(r, p, &out->len);
    if (out->src) {
      out->chunk = p;
      return 0;
    }
    flow__free(&r->alloc, p);
    if (rel[0] == '/')
      break;
  }
  return FLOW_ENOTFOUND;
}

static void
svc_src_free(runner *r, svc_src *s)
{
  flow__free(&r->alloc, s->chunk);
  flow__free(&r->alloc, s->src);
}

/* Loads a service into the test's engine; raises on failure. */
static void
load_into_engine(lua_State *L, runner *r, const svc_src *s)
{
  char *out = NULL;
  int rc = flow_service_load_string(&out, r->e, s->src, s->len, s->chunk);
  if (rc != 0)
    raise_at(L, r, "load('%s') failed: %s", s->chunk, flow_errmsg(r->e));
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  const char *name = json_string_value(json_object_get(j, "name"));
  int seen = 0;
  for (size_t i = 0; name && i < json_array_size(r->loaded); i++)
    seen |= strcmp(json_string_value(json_array_get(r->loaded, i)), name) ==
            0;
  if (name && !seen)
    json_array_append_new(r->loaded, json_string(name));
  json_decref(j);
}

static int
l_load(lua_State *L)
{
  runner *r = R(L);
  flow__sb_charge(L, 1000);
  const char *rel = luaL_checkstring(L, 1);
  svc_src s;
  int rc = find_service(r, rel, &s);
  if (rc == FLOW_ENOMEM)
    return luaL_error(L, "out of memory");
  if (rc != 0)
    return raise_at(L, r, "load: cannot read '%s' (looked beside the "
                      "test file%s)",
                      rel,
                      r->opts.nservice_paths ? " and in the service paths"
                                             : "");
  if (r->in_test) {
    /* In a test: into this test's engine now. */
    /* A failure raises: free the source first, keeping a copy of what
       load_into_engine needs on the Lua stack. */
    lua_pushlstring(L, s.src, s.len);
    lua_pushstring(L, s.chunk);
    svc_src_free(r, &s);
    svc_src held = { (char *)lua_tostring(L, -1), (char *)lua_tostring(L, -2),
                     lua_rawlen(L, -2) };
    load_into_engine(L, r, &held);
    return 0;
  }
  /* At the top level: check now, load into every test's engine later. */
  if (r->scratch == NULL) {
    char eb[256];
    if (flow_engine_open(&r->scratch, ":memory:", NULL, eb, sizeof eb) != 0) {
      svc_src_free(r, &s);
      return luaL_error(L, "cannot open an engine: %s", eb);
    }
  }
  if (flow_service_check(r->scratch, s.src, s.len, s.chunk) != 0) {
    char msg[MSG_MAX];
    snprintf(msg, sizeof msg, "%s", flow_errmsg(r->scratch));
    svc_src_free(r, &s);
    return raise_at(L, r, "load('%s') failed:\n%s", rel, msg);
  }
  if (r->nsvcs == r->capsvcs) {
    size_t cap = r->capsvcs ? r->capsvcs * 2 : 4;
    svc_src *v = flow__realloc(&r->alloc, r->svcs, cap * sizeof *v);
    if (v == NULL) {
      svc_src_free(r, &s);
      return luaL_error(L, "out of memory");
    }
    r->svcs = v;
    r->capsvcs = cap;
  }
  r->svcs[r->nsvcs++] = s;
  return 0;
}

/* ---- cases --------------------------------------------------------------- */

static const char case_mt_key = 'c';

/* The actor an options table at idx describes (its strings stay on the
   Lua stack, which the caller keeps until the call is over). */
static void
read_actor(lua_State *L, runner *r, int idx, flow_actor *actor,
           const char **roles)
{
  actor->id = "tester";
  actor->roles = roles;
  actor->nroles = 0;
  if (lua_isnoneornil(L, idx))
    return;
  if (!lua_istable(L, idx))
    raise_at(L, r, "options must be a table like { actor = \"sam\", "
               "roles = { \"crew\" } }, not a %s",
               luaL_typename(L, idx));
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strcmp(k, "actor") != 0 && strcmp(k, "roles") != 0 &&
        strcmp(k, "at") != 0)
      raise_at(L, r, "unknown option '%s' (options are actor, roles "
                 "and at)",
                 k);
    lua_pop(L, 1);
  }
  if (lua_getfield(L, idx, "actor") == LUA_TSTRING)
    actor->id = lua_tostring(L, -1); /* kept: the table holds it */
  else if (!lua_isnil(L, -1))
    raise_at(L, r, "actor must be a string (an id like \"sam\")");
  lua_pop(L, 1);
  int t = lua_getfield(L, idx, "roles");
  if (t == LUA_TSTRING) {
    roles[actor->nroles++] = lua_tostring(L, -1);
  } else if (t == LUA_TTABLE) {
    for (lua_Integer i = 1; i <= MAX_ROLES; i++) {
      if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
        lua_pop(L, 1);
        break;
      }
      roles[actor->nroles++] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  } else if (t != LUA_TNIL) {
    raise_at(L, r, "roles must be a list of strings like { \"crew\" }");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "at") != LUA_TNIL)
    move_clock(L, r, check_time(L, r, -1, "at"));
  lua_pop(L, 1);
}

static void
push_case(lua_State *L, const char *id)
{
  lua_createtable(L, 0, 1);
  lua_pushstring(L, id);
  lua_setfield(L, -2, "id");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &case_mt_key);
  lua_setmetatable(L, -2);
}

static const char *
case_id(lua_State *L, runner *r)
{
  if (!lua_istable(L, 1))
    raise_at(L, r, "call case methods with a colon: c:signal(...), "
               "not c.signal(...)");
  int ok = 0;
  if (lua_getmetatable(L, 1)) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &case_mt_key);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  lua_pushliteral(L, "id");
  lua_rawget(L, 1);
  const char *id = lua_tostring(L, -1);
  lua_pop(L, 1); /* the table still holds it */
  if (!ok || id == NULL)
    raise_at(L, r, "not a case: use what open() returned");
  snprintf(r->last_case, sizeof r->last_case, "%s", id);
  return id;
}

/* The case as JSON (new reference), or NULL with *rc set. */
static json_t *
fetch_case(runner *r, const char *id, int *rc)
{
  char *out = NULL;
  *rc = flow_case_get(&out, r->e, id);
  if (*rc != 0)
    return NULL;
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  if (j == NULL)
    *rc = FLOW_ENOMEM;
  return j;
}

/* The case as JSON (new reference); raises when the engine refuses. */
static json_t *
get_case(lua_State *L, runner *r, const char *id)
{
  char *out = NULL;
  int rc = flow_case_get(&out, r->e, id);
  if (rc != 0)
    engine_error(L, r, rc, "reading the case");
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  if (j == NULL)
    luaL_error(L, "out of memory");
  return j;
}

/* Calls open; returns 0 or the refusal, leaving the id in idbuf. */
static int
do_open(lua_State *L, runner *r, int first, char *idbuf, size_t len)
{
  const char *service = luaL_checkstring(L, first);
  const char *roles[MAX_ROLES];
  flow_actor actor;
  read_actor(L, r, first + 2, &actor, roles);
  char *data = object_text(L, r, first + 1, "data"); /* last: may raise */
  char *out = NULL;
  int rc = flow_case_open(&out, r->e, service, data, &actor);
  free(data);
  if (rc == 0) {
    json_t *j = json_loads(out, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "id"));
    snprintf(idbuf, len, "%s", id ? id : "");
    json_array_append_new(r->cases, json_string(idbuf));
    snprintf(r->last_case, sizeof r->last_case, "%s", idbuf);
    json_decref(j);
    flow_free(out);
  }
  return rc;
}

static int
l_open(lua_State *L)
{
  runner *r = need_test(L, "open");
  char id[24];
  int rc = do_open(L, r, 1, id, sizeof id);
  if (rc != 0)
    return engine_error(L, r, rc, "open");
  push_case(L, id);
  return 1;
}

static int
do_signal(lua_State *L, runner *r, const char *id, int first)
{
  const char *event = luaL_checkstring(L, first);
  const char *roles[MAX_ROLES];
  flow_actor actor;
  read_actor(L, r, first + 2, &actor, roles);
  char *payload = object_text(L, r, first + 1, "payload"); /* may raise */
  int rc = flow_case_signal(NULL, r->e, id, event, payload, &actor);
  free(payload);
  return rc;
}

static int
c_signal(lua_State *L)
{
  runner *r = need_test(L, "signal");
  const char *id = case_id(L, r);
  int rc = do_signal(L, r, id, 2);
  if (rc != 0) {
    char what[128];
    snprintf(what, sizeof what, "signal '%.60s'", lua_tostring(L, 2));
    return engine_error(L, r, rc, what);
  }
  lua_settop(L, 1);
  return 1;
}

static int
c_get(lua_State *L)
{
  runner *r = need_test(L, "get");
  json_t *j = get_case(L, r, case_id(L, r));
  flow__json_push(L, j);
  json_decref(j);
  return 1;
}

static int
c_field(lua_State *L, const char *key)
{
  runner *r = need_test(L, key);
  json_t *j = get_case(L, r, case_id(L, r));
  flow__json_push(L, json_object_get(j, key));
  json_decref(j);
  return 1;
}

static int
c_state(lua_State *L)
{
  return c_field(L, "state");
}

static int
c_data(lua_State *L)
{
  return c_field(L, "data");
}

static int
rows(lua_State *L, int timers)
{
  runner *r = need_test(L, timers ? "timers" : "history");
  const char *id = case_id(L, r);
  char *out = NULL;
  int rc = timers ? flow_case_timers(&out, r->e, id)
                  : flow_case_history(&out, r->e, id);
  if (rc != 0)
    return engine_error(L, r, rc, timers ? "timers" : "history");
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  flow__json_push(L, j);
  json_decref(j);
  return 1;
}

static int
c_history(lua_State *L)
{
  return rows(L, 0);
}

static int
c_timers(lua_State *L)
{
  return rows(L, 1);
}

/* ---- matching values ----------------------------------------------------- */

/* 1 when actual matches expected: numbers by value, objects as a subset
   of actual when subset is set (recursively), everything else equal. */
static int
json_match(json_t *expected, json_t *actual, int subset)
{
  if (expected == NULL || actual == NULL)
    return expected == actual;
  if (json_is_number(expected) && json_is_number(actual))
    return json_number_value(expected) == json_number_value(actual);
  if (json_is_object(expected) && json_is_object(actual)) {
    if (!subset && json_object_size(expected) != json_object_size(actual))
      return 0;
    const char *k;
    json_t *v;
    json_object_foreach(expected, k, v)
    {
      if (!json_match(v, json_object_get(actual, k), subset))
        return 0;
    }
    return 1;
  }
  if (json_is_array(expected) && json_is_array(actual)) {
    if (json_array_size(expected) != json_array_size(actual))
      return 0;
    for (size_t i = 0; i < json_array_size(expected); i++)
      if (!json_match(json_array_get(expected, i),
                      json_array_get(actual, i), subset))
        return 0;
    return 1;
  }
  /* An empty Lua table reads as {} or []: either matches an empty one. */
  if ((json_is_array(expected) || json_is_object(expected)) &&
      (json_is_array(actual) || json_is_object(actual)))
    return json_array_size(expected) + json_object_size(expected) == 0 &&
           json_array_size(actual) + json_object_size(actual) == 0;
  return json_equal(expected, actual);
}

/* The Lua value at idx as JSON (new reference), or raises. */
static json_t *
to_json(lua_State *L, runner *r, int idx, const char *what)
{
  if (lua_isnoneornil(L, idx))
    return json_null();
  json_t *j = NULL;
  char msg[256];
  if (flow__json_from_lua(L, idx, what, &r->alloc, &j, msg, sizeof msg) != 0)
    raise_at(L, r, "%s", msg);
  return j;
}

/* ---- case assertions ----------------------------------------------------- */

static int
c_expect_state(lua_State *L)
{
  runner *r = need_test(L, "expect_state");
  const char *id = case_id(L, r);
  const char *want = luaL_checkstring(L, 2);
  json_t *c = get_case(L, r, id);
  char got[128];
  snprintf(got, sizeof got, "%s",
           json_string_value(json_object_get(c, "state")));
  json_decref(c);
  if (strcmp(got, want) != 0)
    return fail_at(L, r, "expect_state: case %s should be in state '%s', "
                   "but it is in '%s'",
                   id, want, got);
  lua_settop(L, 1);
  return 1;
}

static int
c_expect_data(lua_State *L)
{
  runner *r = need_test(L, "expect_data");
  const char *id = case_id(L, r);
  luaL_checktype(L, 2, LUA_TTABLE);
  json_t *want = to_json(L, r, 2, "expected");
  int rc;
  json_t *c = fetch_case(r, id, &rc);
  if (c == NULL) {
    json_decref(want);
    return engine_error(L, r, rc, "reading the case");
  }
  json_t *data = json_object_get(c, "data");
  char msg[MSG_MAX] = "";
  size_t n = 0;
  const char *k;
  json_t *v;
  if (json_is_object(want)) {
    json_object_foreach(want, k, v)
    {
      json_t *got = json_object_get(data, k);
      if (json_match(v, got, 1))
        continue;
      char a[400], b[400];
      describe_json(v, a, sizeof a);
      describe_json(got, b, sizeof b);
      int w = snprintf(msg + n, sizeof msg - n, "%sdata.%s should be %s, "
                       "but it is %s",
                       n ? "; " : "", k, a, got ? b : "not set");
      if (w > 0)
        n += (size_t)w < sizeof msg - n ? (size_t)w : sizeof msg - n - 1;
    }
  }
  json_decref(want);
  json_decref(c);
  if (n > 0)
    return fail_at(L, r, "expect_data: case %s: %s", id, msg);
  lua_settop(L, 1);
  return 1;
}

static int
c_expect_field(lua_State *L)
{
  runner *r = need_test(L, "expect_field");
  const char *id = case_id(L, r);
  const char *field = luaL_checkstring(L, 2);
  json_t *want = to_json(L, r, 3, "expected");
  int rc;
  json_t *c = fetch_case(r, id, &rc);
  if (c == NULL) {
    json_decref(want);
    return engine_error(L, r, rc, "reading the case");
  }
  json_t *got = json_object_get(json_object_get(c, "data"), field);
  int ok = json_is_null(want) ? got == NULL : json_match(want, got, 0);
  char a[400], b[400];
  describe_json(want, a, sizeof a);
  describe_json(got, b, sizeof b);
  json_decref(want);
  json_decref(c);
  if (!ok)
    return fail_at(L, r, "expect_field: data.%s of case %s should be %s, "
                   "but it is %s",
                   field, id, a, got ? b : "not set");
  lua_settop(L, 1);
  return 1;
}

static int
c_expect_history(lua_State *L)
{
  runner *r = need_test(L, "expect_history");
  const char *id = case_id(L, r);
  luaL_checktype(L, 2, LUA_TTABLE);
  char *out = NULL;
  int rc = flow_case_history(&out, r->e, id);
  if (rc != 0)
    return engine_error(L, r, rc, "history");
  json_t *h = json_loads(out, 0, NULL);
  flow_free(out);
  char want[MSG_MAX], got[MSG_MAX];
  flow__join jw, jg;
  flow__join_init(&jw, want, sizeof want);
  flow__join_init(&jg, got, sizeof got);
  int ok = 1;
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    const char *ev = lua_tostring(L, -1);
    const char *hv = json_string_value(
        json_object_get(json_array_get(h, (size_t)(i - 1)), "event"));
    if (ev == NULL || hv == NULL || strcmp(ev, hv) != 0)
      ok = 0;
    flow__join_add(&jw, ", ", ev);
    lua_pop(L, 1);
  }
  if ((size_t)n != json_array_size(h))
    ok = 0;
  for (size_t i = 0; i < json_array_size(h); i++)
    flow__join_add(
        &jg, ", ",
        json_string_value(json_object_get(json_array_get(h, i), "event")));
  json_decref(h);
  if (!ok)
    return fail_at(L, r, "expect_history: case %s should have the events "
                   "{%s}, but it has {%s}",
                   id, want, got);
  lua_settop(L, 1);
  return 1;
}

static void
timer_text(json_t *t, char *buf, size_t len)
{
  const char *ev = json_string_value(json_object_get(t, "event"));
  const char *target = json_string_value(json_object_get(t, "target"));
  snprintf(buf, len, "%s%s%s at %s", ev ? ev : "?", target ? " -> " : "",
           target ? target : "",
           json_string_value(json_object_get(t, "due_at")));
}

static int
c_expect_timers(lua_State *L)
{
  runner *r = need_test(L, "expect_timers");
  const char *id = case_id(L, r);
  luaL_checktype(L, 2, LUA_TTABLE);
  char *out = NULL;
  int rc = flow_case_timers(&out, r->e, id);
  if (rc != 0)
    return engine_error(L, r, rc, "timers");
  json_t *all = json_loads(out, 0, NULL), *ts = json_array();
  flow_free(out);
  for (size_t i = 0; i < json_array_size(all); i++) {
    json_t *t = json_array_get(all, i);
    const char *st = json_string_value(json_object_get(t, "status"));
    if (st == NULL || strcmp(st, "pending") == 0)
      json_array_append(ts, t);
  }
  json_decref(all);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  int ok = (size_t)n == json_array_size(ts);
  char want[MSG_MAX];
  flow__join jw;
  flow__join_init(&jw, want, sizeof want);
  for (lua_Integer i = 1; i <= n; i++) {
    json_t *t = json_array_get(ts, (size_t)(i - 1));
    int ty = lua_rawgeti(L, 2, i);
    char one[256];
    if (ty == LUA_TSTRING) {
      const char *ev = lua_tostring(L, -1);
      snprintf(one, sizeof one, "%s", ev);
      const char *tev = json_string_value(json_object_get(t, "event"));
      if (tev == NULL || strcmp(tev, ev) != 0)
        ok = 0;
    } else if (ty == LUA_TTABLE) {
      static const char *const keys[] = { "event", "at", "target", "kind" };
      static const char *const jkeys[] = { "event", "due_at", "target",
                                           "kind" };
      flow__join jo;
      flow__join_init(&jo, one, sizeof one);
      for (size_t k = 0; k < 4; k++) {
        if (lua_getfield(L, -1, keys[k]) == LUA_TSTRING) {
          const char *v = lua_tostring(L, -1);
          const char *tv = json_string_value(json_object_get(t, jkeys[k]));
          flow__join_add(&jo, " ", keys[k]);
          flow__join_text(&jo, "=");
          flow__join_text(&jo, v);
          if (k == 1) {
            int64_t a, b;
            if (tv == NULL || flow_time_parse(&a, v) != 0 ||
                flow_time_parse(&b, tv) != 0 || a != b)
              ok = 0;
          } else if (tv == NULL || strcmp(tv, v) != 0) {
            ok = 0;
          }
        }
        lua_pop(L, 1);
      }
    } else {
      json_decref(ts);
      return raise_at(L, r, "expect_timers: each timer is an event "
                        "name or a table like { event = \"after\", at = "
                        "\"2026-02-04T09:00:00Z\" }");
    }
    lua_pop(L, 1);
    flow__join_add(&jw, ", ", "{");
    flow__join_text(&jw, one);
    flow__join_text(&jw, "}");
  }
  char got[MSG_MAX];
  flow__join jg;
  flow__join_init(&jg, got, sizeof got);
  for (size_t i = 0; i < json_array_size(ts); i++) {
    char one[256];
    timer_text(json_array_get(ts, i), one, sizeof one);
    flow__join_add(&jg, "; ", one);
  }
  json_decref(ts);
  if (!ok)
    return fail_at(L, r, "expect_timers: case %s should have the timers "
                   "%s, but it has %s",
                   id, jw.count ? want : "(none)", jg.count ? got : "none");
  lua_settop(L, 1);
  return 1;
}

/*
 * The service-level status of case c: "none" (no sla), "due" (open, not
 * yet due), "warned" (sla_warning has come), "breached" (sla_breached has
 * come, or the case closed after its due time), "met" (closed in time).
 */
static const char *
sla_status(runner *r, json_t *c, const char *id)
{
  const char *due = json_string_value(json_object_get(c, "due_at"));
  if (due == NULL)
    return "none";
  int warned = 0, breached = 0;
  char *out = NULL;
  if (flow_case_history(&out, r->e, id) == 0) {
    json_t *h = json_loads(out, 0, NULL);
    for (size_t i = 0; i < json_array_size(h); i++) {
      const char *ev =
          json_string_value(json_object_get(json_array_get(h, i), "event"));
      breached |= ev && strcmp(ev, "sla_breached") == 0;
      warned |= ev && strcmp(ev, "sla_warning") == 0;
    }
    json_decref(h);
    flow_free(out);
  }
  int64_t d, u, now = flow_engine_now(r->e);
  flow_time_parse(&d, due);
  const char *st = json_string_value(json_object_get(c, "status"));
  if (st && strcmp(st, "closed") == 0) {
    flow_time_parse(&u, json_string_value(json_object_get(c, "updated_at")));
    return breached || u > d ? "breached" : "met";
  }
  if (breached || now > d)
    return "breached";
  return warned ? "warned" : "due";
}

static int
c_expect_sla(lua_State *L)
{
  runner *r = need_test(L, "expect_sla");
  const char *id = case_id(L, r);
  const char *want = luaL_checkstring(L, 2);
  static const char *const known[] = { "none", "due", "warned", "breached",
                                       "met", NULL };
  int k = 0;
  while (known[k] && strcmp(known[k], want) != 0)
    k++;
  if (known[k] == NULL)
    return raise_at(L, r, "expect_sla: '%s' is not a service-level "
                      "status (use due, warned, breached, met or none)",
                      want);
  json_t *c = get_case(L, r, id);
  const char *got = sla_status(r, c, id);
  char due[40];
  snprintf(due, sizeof due, "%s",
           json_is_string(json_object_get(c, "due_at"))
               ? json_string_value(json_object_get(c, "due_at"))
               : "none");
  json_decref(c);
  if (strcmp(got, want) != 0)
    return fail_at(L, r, "expect_sla: the service level of case %s should "
                   "be '%s', but it is '%s' (due %s)",
                   id, want, got, due);
  if (!lua_isnoneornil(L, 3)) {
    int64_t a, b;
    const char *wd = luaL_checkstring(L, 3);
    if (flow_time_parse(&a, wd) != 0 || flow_time_parse(&b, due) != 0 ||
        a != b)
      return fail_at(L, r, "expect_sla: case %s should be due at %s, but "
                     "it is due at %s",
                     id, wd, due);
  }
  lua_settop(L, 1);
  return 1;
}

static int
refusal_result(lua_State *L, runner *r, int rc, int want, const char *what)
{
  if (rc == 0)
    return fail_at(L, r, "%s should have been refused with %s, but it was "
                   "accepted",
                   what, flow_err_name(want));
  if (rc != want)
    return fail_at(L, r, "%s should have been refused with %s, but it was "
                   "refused with %s: %s",
                   what, flow_err_name(want), flow_err_name(rc),
                   flow_errmsg(r->e));
  return 0;
}

static int
c_expect_refused(lua_State *L)
{
  runner *r = need_test(L, "expect_refused");
  const char *id = case_id(L, r);
  int top = lua_gettop(L);
  if (top < 3)
    return raise_at(L, r, "expect_refused needs an event and an error "
                      "name: c:expect_refused(\"collect\", payload, opts, "
                      "\"FLOW_EPERM\")");
  int want = check_code_arg(L, r, top);
  lua_settop(L, top - 1);
  lua_settop(L, 4); /* event, payload, opts (nil when not given) */
  char what[128];
  snprintf(what, sizeof what, "event '%.60s' on case %s",
           luaL_checkstring(L, 2), id);
  int rc = do_signal(L, r, id, 2);
  refusal_result(L, r, rc, want, what);
  lua_settop(L, 1);
  return 1;
}

static int
l_expect_open_refused(lua_State *L)
{
  runner *r = need_test(L, "expect_open_refused");
  int top = lua_gettop(L);
  if (top < 2)
    return raise_at(L, r, "expect_open_refused needs a service and an "
                      "error name: expect_open_refused(\"missed_bin\", data, "
                      "opts, \"FLOW_EDATA\")");
  int want = check_code_arg(L, r, top);
  lua_settop(L, top - 1);
  lua_settop(L, 3);
  char what[128], id[24];
  snprintf(what, sizeof what, "opening a case of %.60s",
           luaL_checkstring(L, 1));
  int rc = do_open(L, r, 1, id, sizeof id);
  refusal_result(L, r, rc, want, what);
  return 0;
}

static int
l_expect_refused(lua_State *L)
{
  runner *r = need_test(L, "expect_refused");
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int want = check_code_arg(L, r, 2);
  r->last_code = 0;
  lua_pushvalue(L, 1);
  int st = lua_pcall(L, 0, 0, 0);
  flow__sb_check(L); /* a budget that ran out is not a refusal */
  if (r->failed)
    return lua_error(L); /* an assertion inside failed: keep it */
  if (st == LUA_OK)
    return fail_at(L, r, "expected the call to be refused with %s, but it "
                   "was accepted",
                   flow_err_name(want));
  if (r->last_code == 0) {
    char msg[512];
    flow__sb_errobj(L, -1, msg, sizeof msg);
    return fail_at(L, r, "expected the call to be refused with %s, but it "
                   "threw: %s",
                   flow_err_name(want), msg);
  }
  if (r->last_code != want) {
    char msg[512];
    flow__sb_errobj(L, -1, msg, sizeof msg);
    return fail_at(L, r, "expected the call to be refused with %s, but: %s",
                   flow_err_name(want), msg);
  }
  r->last_code = 0;
  return 0;
}

/* ---- plain values -------------------------------------------------------- */

/* 1 when the values at a and b are equal (tables compared as JSON). */
static int
values_equal(lua_State *L, runner *r, int a, int b)
{
  if (lua_type(L, a) == LUA_TTABLE && lua_type(L, b) == LUA_TTABLE) {
    json_t *x = NULL, *y = NULL;
    char msg[128];
    int ok = flow__json_from_lua(L, a, "value", &r->alloc, &x, msg,
                                 sizeof msg) == 0 &&
             flow__json_from_lua(L, b, "value", &r->alloc, &y, msg,
                                 sizeof msg) == 0 &&
             json_match(x, y, 0);
    if (x == NULL || y == NULL)
      ok = lua_rawequal(L, a, b);
    json_decref(x);
    json_decref(y);
    return ok;
  }
  return lua_rawequal(L, a, b);
}

static int
l_expect_equal(lua_State *L)
{
  runner *r = need_test(L, "expect_equal");
  lua_settop(L, 2);
  if (!values_equal(L, r, 1, 2)) {
    char a[400], b[400];
    describe(r, L, 1, a, sizeof a);
    describe(r, L, 2, b, sizeof b);
    return fail_at(L, r, "expect_equal: got %s, expected %s", a, b);
  }
  return 0;
}

/* expect(value).to_be(x) and friends: closures over (runner, value), so
   they are called with a dot, the value in upvalue 2. */
static int
x_to_be(lua_State *L)
{
  runner *r = need_test(L, "to_be");
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  if (!values_equal(L, r, 2, 1)) {
    char a[400], b[400];
    describe(r, L, 2, a, sizeof a);
    describe(r, L, 1, b, sizeof b);
    return fail_at(L, r, "expected %s, got %s", b, a);
  }
  return 0;
}

static int
x_to_contain(lua_State *L)
{
  runner *r = need_test(L, "to_contain");
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  int ok = 0;
  if (lua_type(L, 2) == LUA_TSTRING && lua_type(L, 1) == LUA_TSTRING) {
    ok = strstr(lua_tostring(L, 2), lua_tostring(L, 1)) != NULL;
  } else if (lua_type(L, 2) == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    for (lua_Integer i = 1; i <= n && !ok; i++) {
      lua_rawgeti(L, 2, i);
      ok = values_equal(L, r, -1, 1);
      lua_pop(L, 1);
    }
  }
  if (!ok) {
    char a[400], b[400];
    describe(r, L, 2, a, sizeof a);
    describe(r, L, 1, b, sizeof b);
    return fail_at(L, r, "expected %s to contain %s", a, b);
  }
  return 0;
}

static int
x_to_be_nil(lua_State *L)
{
  runner *r = need_test(L, "to_be_nil");
  lua_pushvalue(L, lua_upvalueindex(2));
  if (!lua_isnil(L, -1)) {
    char a[400];
    describe(r, L, -1, a, sizeof a);
    return fail_at(L, r, "expected nil, got %s", a);
  }
  return 0;
}

static int
x_to_be_truthy(lua_State *L)
{
  runner *r = need_test(L, "to_be_truthy");
  lua_pushvalue(L, lua_upvalueindex(2));
  if (!lua_toboolean(L, -1)) {
    char a[400];
    describe(r, L, -1, a, sizeof a);
    return fail_at(L, r, "expected a true value, got %s", a);
  }
  return 0;
}

static const luaL_Reg expect_methods[] = {
  { "to_be", x_to_be },
  { "to_equal", x_to_be },
  { "to_contain", x_to_contain },
  { "to_be_nil", x_to_be_nil },
  { "to_be_truthy", x_to_be_truthy },
  { NULL, NULL },
};

static int
l_expect(lua_State *L)
{
  lua_settop(L, 1);
  lua_createtable(L, 0, 5);
  for (const luaL_Reg *m = expect_methods; m->name; m++) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, m->func, 2);
    lua_setfield(L, -2, m->name);
  }
  return 1;
}

static int
l_fail(lua_State *L)
{
  runner *r = need_test(L, "fail");
  return fail_at(L, r, "%s", luaL_optstring(L, 1, "failed"));
}

/* mock.anything: reserved for mocks of actions, tasks and messages. */
static int
l_mock_index(lua_State *L)
{
  runner *r = R(L);
  return raise_at(L, r, "mock.%s is not available yet: mocks of host "
                    "actions, tasks and messages will live in `mock`",
                    lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
}

/* ---- declaring tests ----------------------------------------------------- */

static int
l_test_call(lua_State *L)
{
  runner *r = R(L);
  /* 1: the test table itself (called as test(...)). */
  if (r->in_test)
    return raise_at(L, r, "test() declares a test at the top level of "
                      "the file, not inside another test");
  const char *name = luaL_checkstring(L, 2);
  int fn = 3;
  const char *at = NULL;
  if (lua_istable(L, 3)) {
    if (lua_getfield(L, 3, "at") == LUA_TSTRING)
      at = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1))
      return raise_at(L, r, "the options of test '%s' take `at = "
                        "\"2026-02-02T09:00:00Z\"`",
                        name);
    lua_pop(L, 1);
    fn = 4;
  }
  if (!lua_isfunction(L, fn))
    return raise_at(L, r, "test '%s' needs a function: test(\"%s\", "
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
  t->line = caller_line(L);
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
  { "load", l_load },
  { "open", l_open },
  { "advance", l_advance },
  { "advance_to", l_advance_to },
  { "now", l_now },
  { "expect_refused", l_expect_refused },
  { "expect_open_refused", l_expect_open_refused },
  { "expect_equal", l_expect_equal },
  { "expect", l_expect },
  { "fail", l_fail },
  { NULL, NULL },
};

static const luaL_Reg case_methods[] = {
  { "signal", c_signal },
  { "get", c_get },
  { "state", c_state },
  { "data", c_data },
  { "history", c_history },
  { "timers", c_timers },
  { "expect_state", c_expect_state },
  { "expect_data", c_expect_data },
  { "expect_field", c_expect_field },
  { "expect_history", c_expect_history },
  { "expect_timers", c_expect_timers },
  { "expect_sla", c_expect_sla },
  { "expect_refused", c_expect_refused },
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

  /* The case metatable: methods through __index, read-only handles. */
  lua_createtable(L, 0, 2);
  lua_createtable(L, 0, 16);
  lua_pushlightuserdata(L, r);
  luaL_setfuncs(L, case_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "case");
  lua_setfield(L, -2, "__name");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &case_mt_key);

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

  /* mock: reserved. */
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, r);
  lua_pushcclosure(L, l_mock_index, 1);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "mock");

  /* flow.now in a test file is the test's virtual clock too. */
  if (lua_getfield(L, -1, "flow") == LUA_TTABLE) {
    lua_pushlightuserdata(L, r);
    lua_pushcclosure(L, l_now, 1);
    lua_setfield(L, -2, "now");
  }
  lua_pop(L, 2);
  return 0;
}

/* ---- coverage ------------------------------------------------------------ */

static json_t *
cov_get(json_t *obj, const char *key)
{
  json_t *o = json_object_get(obj, key);
  if (o == NULL) {
    o = json_object();
    json_object_set_new(obj, key, o);
  }
  return o;
}

static void
cov_bump(json_t *map, const char *key, int must_exist)
{
  json_t *v = json_object_get(map, key);
  if (v == NULL && must_exist)
    return;
  json_object_set_new(map, key,
                      json_integer(v ? json_integer_value(v) + 1 : 1));
}

static void
cov_zero(json_t *map, const char *key)
{
  if (json_object_get(map, key) == NULL)
    json_object_set_new(map, key, json_integer(0));
}

/* Every state and transition of a loaded service, at 0 when new. */
static void
cov_universe(runner *r, const char *name)
{
  flow__compiled *c;
  if (flow__engine_service(r->e, name, 0, &c) != 0)
    return;
  const flow__service *svc = c->svc;
  json_t *s = cov_get(r->coverage, name);
  json_t *states = cov_get(s, "states"), *trans = cov_get(s, "transitions");
  char key[300];
  for (size_t i = 0; i < svc->nstates; i++) {
    const flow__state *st = &svc->states[i];
    cov_zero(states, st->name);
    for (size_t j = 0; j < st->non; j++) {
      snprintf(key, sizeof key, "%s.%s", st->name, st->on[j].event);
      cov_zero(trans, key);
    }
    for (size_t j = 0; j < st->nafter; j++) {
      if (st->after[j].target == NULL)
        continue; /* fires an `on` event, counted there */
      snprintf(key, sizeof key, "%s.after %s", st->name,
               st->after[j].duration);
      cov_zero(trans, key);
    }
  }
}

static void
cov_case(runner *r, const char *id)
{
  char *out = NULL;
  if (flow_case_history(&out, r->e, id) != 0)
    return;
  json_t *h = json_loads(out, 0, NULL);
  flow_free(out);
  char *cout = NULL;
  json_t *c = NULL;
  if (flow_case_get(&cout, r->e, id) == 0)
    c = json_loads(cout, 0, NULL);
  flow_free(cout);
  const char *svc = json_string_value(json_object_get(c, "service"));
  if (svc) {
    json_t *s = cov_get(r->coverage, svc);
    json_t *states = cov_get(s, "states"), *trans = cov_get(s, "transitions");
    for (size_t i = 0; i < json_array_size(h); i++) {
      json_t *row = json_array_get(h, i);
      const char *from = json_string_value(json_object_get(row, "from"));
      const char *to = json_string_value(json_object_get(row, "to"));
      const char *ev = json_string_value(json_object_get(row, "event"));
      if (to == NULL || ev == NULL)
        continue;
      if (from == NULL) {
        cov_bump(states, to, 0);
        continue;
      }
      char key[300];
      const char *after = json_string_value(
          json_object_get(json_object_get(row, "payload"), "after"));
      if (strcmp(ev, "after") == 0 && after)
        snprintf(key, sizeof key, "%s.after %s", from, after);
      else
        snprintf(key, sizeof key, "%s.%s", from, ev);
      cov_bump(trans, key, 1);
      if (strcmp(from, to) != 0)
        cov_bump(states, to, 0);
    }
  }
  json_decref(c);
  json_decref(h);
}

static void
collect_coverage(runner *r)
{
  for (size_t i = 0; i < json_array_size(r->loaded); i++)
    cov_universe(r, json_string_value(json_array_get(r->loaded, i)));
  for (size_t i = 0; i < json_array_size(r->cases); i++)
    cov_case(r, json_string_value(json_array_get(r->cases, i)));
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
    load_into_engine(L, r, &r->svcs[i]);
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
    flow_engine_set_listener(r->e, listener, r);
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
      capture_history(r, r->last_case);
    if (r->opts.coverage)
      collect_coverage(r);
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
    svc_src_free(r, &r->svcs[i]);
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
  char *src = read_all(&r, path, &len);
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
