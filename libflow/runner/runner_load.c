/*
 * Loading services into tests (`flow test`): load() finds a service file
 * beside the test file, then in the service paths.  At the top level of
 * the test file it checks the service and keeps its source for the engine
 * of every test; inside a test it loads it into that test's engine.
 */
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "runner/runner_int.h"

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
char *
flow__runner_read_all(runner *r, const char *path, size_t *len)
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
    out->src = flow__runner_read_all(r, p, &out->len);
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

void
flow__runner_svc_src_free(runner *r, svc_src *s)
{
  flow__free(&r->alloc, s->chunk);
  flow__free(&r->alloc, s->src);
}

/* Loads a service into the test's engine; raises on failure. */
void
flow__runner_load_into_engine(lua_State *L, runner *r, const svc_src *s)
{
  char *out = NULL;
  int rc = flow_service_load_string(&out, r->e, s->src, s->len, s->chunk);
  if (rc != 0)
    flow__runner_raise_at(L, r, "load('%s') failed: %s", s->chunk,
                          flow_errmsg(r->e));
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

int
flow__runner_l_load(lua_State *L)
{
  runner *r = flow__runner_of(L);
  flow__sb_charge(L, 1000);
  const char *rel = luaL_checkstring(L, 1);
  svc_src s;
  int rc = find_service(r, rel, &s);
  if (rc == FLOW_ENOMEM)
    return luaL_error(L, "out of memory");
  if (rc != 0)
    return flow__runner_raise_at(L, r,
                                 "load: cannot read '%s' (looked beside the "
                                 "test file%s)",
                                 rel,
                                 r->opts.nservice_paths
                                     ? " and in the service paths"
                                     : "");
  if (r->in_test) {
    /* In a test: into this test's engine now. */
    /* A failure raises: free the source first, keeping a copy of what
       flow__runner_load_into_engine needs on the Lua stack. */
    lua_pushlstring(L, s.src, s.len);
    lua_pushstring(L, s.chunk);
    flow__runner_svc_src_free(r, &s);
    svc_src held = { (char *)lua_tostring(L, -1), (char *)lua_tostring(L, -2),
                     lua_rawlen(L, -2) };
    flow__runner_load_into_engine(L, r, &held);
    return 0;
  }
  /* At the top level: check now, load into every test's engine later. */
  if (r->scratch == NULL) {
    char eb[256];
    if (flow_engine_open(&r->scratch, ":memory:", NULL, eb, sizeof eb) != 0) {
      flow__runner_svc_src_free(r, &s);
      return luaL_error(L, "cannot open an engine: %s", eb);
    }
  }
  if (flow_service_check(r->scratch, s.src, s.len, s.chunk) != 0) {
    char msg[MSG_MAX];
    snprintf(msg, sizeof msg, "%s", flow_errmsg(r->scratch));
    flow__runner_svc_src_free(r, &s);
    return flow__runner_raise_at(L, r, "load('%s') failed:\n%s", rel, msg);
  }
  if (r->nsvcs == r->capsvcs) {
    size_t cap = r->capsvcs ? r->capsvcs * 2 : 4;
    svc_src *v = flow__realloc(&r->alloc, r->svcs, cap * sizeof *v);
    if (v == NULL) {
      flow__runner_svc_src_free(r, &s);
      return luaL_error(L, "out of memory");
    }
    r->svcs = v;
    r->capsvcs = cap;
  }
  r->svcs[r->nsvcs++] = s;
  return 0;
}
