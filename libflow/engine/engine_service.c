/*
 * The engine's services: compiling a script into a definition and the
 * sandbox its functions live in (flow__compiled), the cache of compiled
 * versions, loading into the store, checking, and the schema and list
 * views.
 */
#define _POSIX_C_SOURCE 200809L /* fileno, fstat */
#include "engine/engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The refusal of a script too large to load, the loader's own, before a
   sandbox is made for it. */
static int
script_too_big(flow_engine *e, const char *chunkname, size_t len)
{
  flow__err_script_size(&e->err, chunkname, len);
  return e->err.code;
}

void
flow__compiled_free(flow_engine *e, flow__compiled *c)
{
  if (c == NULL)
    return;
  flow__service_free(&e->alloc, c->svc);
  flow__sandbox_free(c->sb);
  flow__free(&e->alloc, c);
}

int
flow__engine_compile(flow_engine *e, const char *src, size_t len,
                     const char *chunkname, flow__compiled **out)
{
  *out = NULL;
  if (len > FLOW__MAX_SCRIPT)
    return script_too_big(e, chunkname ? chunkname : "service", len);
  flow__compiled *c = flow__calloc(&e->alloc, 1, sizeof *c);
  if (c == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory loading %s",
                             chunkname);
  int rc = flow__engine_sandbox(e, &c->sb);
  if (rc != 0) {
    flow__free(&e->alloc, c);
    return rc;
  }
  c->svc = flow__calloc(&e->alloc, 1, sizeof *c->svc);
  if (c->svc == NULL) {
    flow__compiled_free(e, c);
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory loading %s",
                             chunkname);
  }
  flow__err err;
  flow__err_clear(&err);
  rc = flow__service_compile(c->svc, c->sb, src, len, chunkname, &err);
  if (rc != 0) {
    flow__compiled_free(e, c);
    return flow__engine_fail_err(e, &err);
  }
  *out = c;
  return 0;
}

static flow__compiled *
cached(flow_engine *e, const char *name, int64_t version)
{
  for (flow__compiled *c = e->services; c; c = c->next)
    if (c->svc->version == version && strcmp(c->svc->name, name) == 0)
      return c;
  return NULL;
}

void
flow__engine_evict(flow_engine *e, flow__compiled *c)
{
  for (flow__compiled **pp = &e->services; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      flow__compiled_free(e, c);
      return;
    }
  }
}

void
flow__engine_services_free(flow_engine *e)
{
  flow__compiled *c = e->services;
  while (c) {
    flow__compiled *next = c->next;
    flow__compiled_free(e, c);
    c = next;
  }
  e->services = NULL;
}

int
flow__engine_service(flow_engine *e, const char *name, int64_t version,
                     flow__compiled **out)
{
  flow__compiled *c;
  flow__err err;
  flow__err_clear(&err);
  int rc;
  /* The newest version is one row of the primary key; the source is read
     only when that version is not compiled yet (measured: reading the
     whole row on every open cost ~22k instructions). */
  if (version == 0 &&
      (rc = e->vt->service_newest(e->store, name, &version, &err)) != 0)
    return flow__engine_fail_err(e, &err);
  if ((c = cached(e, name, version))) {
    *out = c;
    return 0;
  }
  flow__service_row row;
  rc = e->vt->service_get(e->store, name, version, &row, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  if ((c = cached(e, name, row.version)) == NULL) {
    rc = flow__engine_compile(e, row.source, row.source_len, row.chunkname,
                              &c);
    if (rc == 0 && strcmp(c->svc->sha256, row.sha256) != 0) {
      /* The stored hash guards against a database edited by hand. */
      flow__compiled_free(e, c);
      rc = flow__engine_fail(e, FLOW_EIO,
                             "stored source of %s version %lld does not "
                             "match its SHA-256: the database was altered",
                             name, (long long)row.version);
    }
    if (rc == 0) {
      c->next = e->services;
      e->services = c;
    }
  }
  flow__service_row_clear(&e->alloc, &row);
  if (rc != 0)
    return rc;
  *out = c;
  return 0;
}

static int
state_cmp(const void *a, const void *b)
{
  const flow__state *x = *(const flow__state *const *)a;
  const flow__state *y = *(const flow__state *const *)b;
  if (x->line != y->line)
    return x->line < y->line ? -1 : 1;
  return strcmp(x->name, y->name);
}

const flow__state **
flow__service_states_sorted(flow_engine *e, const flow__service *svc)
{
  const flow__state **v =
      flow__calloc(&e->alloc, svc->nstates ? svc->nstates : 1, sizeof *v);
  if (v == NULL)
    return NULL;
  for (size_t i = 0; i < svc->nstates; i++)
    v[i] = &svc->states[i];
  qsort(v, svc->nstates, sizeof *v, state_cmp);
  return v;
}

static int
load_source(flow_engine *e, char **out, const char *src, size_t len,
            const char *chunkname)
{
  flow__compiled *c = NULL;
  int rc = flow__engine_compile(e, src, len, chunkname, &c);
  if (rc != 0)
    return rc;
  flow__service *svc = c->svc;

  flow__err err;
  flow__err_clear(&err);
  flow__service_row old;
  int stored = 0;
  rc = e->vt->begin(e->store, &err);
  if (rc != 0)
    goto fail_err;
  rc = e->vt->service_get(e->store, svc->name, svc->version, &old, &err);
  if (rc == 0) {
    int same = strcmp(old.sha256, svc->sha256) == 0;
    char oldsha[65];
    snprintf(oldsha, sizeof oldsha, "%s", old.sha256);
    flow__service_row_clear(&e->alloc, &old);
    if (!same) {
      e->vt->rollback(e->store);
      rc = flow__engine_fail(
          e, FLOW_EEXIST,
          "%s: %s version %lld is already loaded with different source "
          "(sha256 %.12s, this file %.12s): give the changed script a new "
          "version number",
          chunkname, svc->name, (long long)svc->version, oldsha, svc->sha256);
      goto fail;
    }
  } else if (rc == FLOW_ENOTFOUND) {
    /* A message opens cases of one service only. */
    for (size_t i = 0; i < svc->ncorrelate; i++) {
      if (!svc->correlate[i].opens)
        continue;
      flow__compiled *other = NULL;
      const flow__correlate *entry = NULL;
      rc = flow__message_opener(e, svc->correlate[i].message, &other,
                                &entry);
      if (rc == 0 && other && strcmp(other->svc->name, svc->name) != 0)
        rc = flow__engine_fail(
            e, FLOW_ECONFLICT,
            "%s:%d: correlate: message '%s' already opens cases of %s "
            "(%s:%d); a message opens cases of one service (take opens = "
            "true out of one of them)",
            chunkname, svc->correlate[i].line, svc->correlate[i].message,
            other->svc->name, other->svc->chunkname, entry->line);
      if (rc != 0) {
        e->vt->rollback(e->store);
        goto fail;
      }
    }
    flow__service_row row = {
      .name = svc->name,
      .version = svc->version,
      .title = svc->title,
      .source = svc->source,
      .source_len = svc->source_len,
      .sha256 = svc->sha256,
      .chunkname = svc->chunkname,
      .loaded_at = flow_engine_now(e),
    };
    rc = e->vt->service_put(e->store, &row, &err);
    for (size_t i = 0; rc == 0 && i < svc->nfields; i++)
      if (svc->fields[i].index)
        rc = e->vt->index_field(e->store, svc->fields[i].name, &err);
    if (rc != 0) {
      e->vt->rollback(e->store);
      goto fail_err;
    }
    stored = 1;
  } else {
    e->vt->rollback(e->store);
    goto fail_err;
  }
  /* Everything that can fail goes before the commit, so that a failure
     reported to the caller never leaves the service stored. */
  json_t *info = json_pack("{s:s, s:I, s:s, s:s?, s:b}", "name", svc->name,
                           "version", (json_int_t)svc->version, "sha256",
                           svc->sha256, "title", svc->title, "stored",
                           stored);
  if ((rc = flow__engine_owned_json(e, out, info)) != 0) {
    e->vt->rollback(e->store);
    goto fail;
  }
  rc = e->vt->commit(e->store, &err);
  if (rc != 0) {
    if (out) {
      flow_free(*out);
      *out = NULL;
    }
    goto fail_err;
  }
  if (cached(e, svc->name, svc->version) == NULL) {
    c->next = e->services;
    e->services = c;
  } else {
    flow__compiled_free(e, c);
  }
  flow__err_clear(&e->err);
  return 0;
fail_err:
  flow__engine_fail_err(e, &err);
fail:
  flow__compiled_free(e, c);
  return e->err.code;
}

/* Reads a whole file on the engine allocator; ENOTFOUND with the reason. */
static int
read_file(flow_engine *e, const char *path, char **out, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return flow__engine_fail(e, FLOW_ENOTFOUND, "cannot read %s: %s", path,
                             strerror(errno));
  /* The size first, so that a file too big is named with its size and
     never read. */
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
      (uint64_t)st.st_size > FLOW__MAX_SCRIPT) {
    fclose(f);
    return script_too_big(e, path, (size_t)st.st_size);
  }
  flow__buf b;
  flow__buf_init(&b, &e->alloc);
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    flow__buf_add(&b, chunk, n);
    if (b.len > FLOW__MAX_SCRIPT)
      break;
  }
  int bad = ferror(f);
  fclose(f);
  if (b.oom) {
    flow__buf_free(&b);
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory reading %s", path);
  }
  if (bad) {
    flow__buf_free(&b);
    return flow__engine_fail(e, FLOW_ENOTFOUND, "cannot read %s", path);
  }
  if (b.len > FLOW__MAX_SCRIPT) {
    flow__buf_free(&b);
    return script_too_big(e, path, b.len);
  }
  if (b.p == NULL)
    flow__buf_add(&b, "", 0);
  *out = b.p;
  *len = b.len;
  return b.oom ? flow__engine_fail(e, FLOW_ENOMEM, "out of memory") : 0;
}

int
flow_service_load_file(char **out, flow_engine *engine, const char *path)
{
  if (out)
    *out = NULL;
  if (engine == NULL || path == NULL)
    return flow__engine_misuse(engine, "flow_service_load_file: path is NULL");
  char *src;
  size_t len;
  int rc = read_file(engine, path, &src, &len);
  if (rc != 0)
    return rc;
  rc = load_source(engine, out, src, len, path);
  flow__free(&engine->alloc, src);
  return rc;
}

int
flow_service_load_string(char **out, flow_engine *engine, const char *source,
                         size_t len, const char *chunkname)
{
  if (out)
    *out = NULL;
  if (engine == NULL || source == NULL)
    return flow__engine_misuse(engine,
                               "flow_service_load_string: source is NULL");
  if (len > FLOW__MAX_SCRIPT)
    return script_too_big(engine, chunkname ? chunkname : "service", len);
  return load_source(engine, out, source, len,
                     chunkname ? chunkname : "service");
}

int
flow_service_check(flow_engine *engine, const char *source, size_t len,
                   const char *chunkname)
{
  if (engine == NULL || source == NULL)
    return flow__engine_misuse(engine, "flow_service_check: source is NULL");
  flow__compiled *c;
  int rc = flow__engine_compile(engine, source, len,
                                chunkname ? chunkname : "service", &c);
  if (rc != 0)
    return rc;
  flow__compiled_free(engine, c);
  flow__err_clear(&engine->err);
  return 0;
}

int
flow_service_schema(char **out, flow_engine *engine, const char *name,
                    int64_t version)
{
  if (out)
    *out = NULL;
  if (engine == NULL || out == NULL || name == NULL)
    return flow__engine_misuse(engine, "flow_service_schema: NULL argument");
  flow__compiled *c;
  int rc = flow__engine_service(engine, name, version, &c);
  if (rc != 0)
    return rc;
  rc = flow__engine_owned_json(engine, out, flow__fields_schema(c->svc));
  if (rc == 0)
    flow__err_clear(&engine->err);
  return rc;
}

int
flow_service_list(char **out, flow_engine *engine)
{
  if (engine == NULL || out == NULL)
    return flow__engine_misuse(engine, "flow_service_list: out is NULL");
  *out = NULL;
  json_t *arr;
  flow__err err;
  flow__err_clear(&err);
  int rc = engine->vt->service_list(engine->store, &arr, &err);
  if (rc != 0)
    return flow__engine_fail_err(engine, &err);
  rc = flow__engine_owned_json(engine, out, arr);
  if (rc == 0)
    flow__err_clear(&engine->err);
  return rc;
}

