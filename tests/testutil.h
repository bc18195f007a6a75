/*
 * Helpers shared by the unit tests: an allocator that counts what is live
 * (so a teardown can assert nothing leaked) and can be told to fail at the
 * Nth allocation, and a reader for files under the source tree.
 */
#ifndef FLOW_TESTUTIL_H
#define FLOW_TESTUTIL_H

#include <stddef.h>

#include "util/util.h"

typedef struct test_alloc {
  long live_blocks;   /* allocations not yet freed */
  size_t live_bytes;
  long calls;         /* allocations (nsize > 0 with a growing size) made */
  long fail_at;       /* fail the fail_at-th allocation (1-based); 0 never */
  long failures;
} test_alloc;

void *test_alloc_fn(void *payload, void *ptr, size_t osize, size_t nsize);
/* A flow__allocator wired to t. */
flow__allocator test_allocator(test_alloc *t);

/* The contents of FLOW_SOURCE_DIR/rel (or ./rel), NUL-terminated, malloc'd;
   aborts the test when missing. */
char *test_read_source(const char *rel, size_t *len);

/* A database file in a fresh directory under /tmp: dir gets the
   directory, path "dir/db" (dir needs 64 bytes, path 96). */
void test_db_make(char *dir, char *path);
/* Removes the database, its -wal and -shm files and the directory. */
void test_db_remove(const char *dir, const char *path);

#endif
