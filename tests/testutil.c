#define _POSIX_C_SOURCE 200809L

/* Shared test helpers: see testutil.h. */
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *
test_alloc_fn(void *payload, void *ptr, size_t osize, size_t nsize)
{
  test_alloc *t = payload;
  if (nsize == 0) {
    if (ptr) {
      t->live_blocks--;
      t->live_bytes -= osize;
    }
    free(ptr);
    return NULL;
  }
  if (ptr == NULL || nsize > osize) {
    t->calls++;
    if (t->fail_at > 0 && t->calls == t->fail_at) {
      t->failures++;
      return NULL;
    }
  }
  void *np = realloc(ptr, nsize);
  if (np == NULL)
    return NULL;
  if (ptr == NULL) {
    t->live_blocks++;
    t->live_bytes += nsize;
  } else {
    t->live_bytes += nsize;
    t->live_bytes -= osize;
  }
  return np;
}

flow__allocator
test_allocator(test_alloc *t)
{
  flow__allocator a = { test_alloc_fn, t };
  return a;
}

char *
test_read_source(const char *rel, size_t *len)
{
  const char *dir = getenv("FLOW_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", rel);
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(buf);
  ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = 0;
  fclose(f);
  if (len)
    *len = (size_t)n;
  return buf;
}

void
test_db_make(char *dir, char *path)
{
  snprintf(dir, 64, "/tmp/flow-test-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, 96, "%s/db", dir);
}

void
test_db_remove(const char *dir, const char *path)
{
  char p[128];
  snprintf(p, sizeof p, "%s-wal", path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", path);
  unlink(p);
  unlink(path);
  rmdir(dir);
}
