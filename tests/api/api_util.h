/*
 * Helpers the API tests share, header-only so that each test stays one
 * file linked only with the library: times from ISO text, a database in a
 * fresh directory, and checks that text holds (or lacks) a piece.
 */
#ifndef FLOW_API_UTIL_H
#define FLOW_API_UTIL_H

#include <check.h>
#include <flow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The engine time of an ISO 8601 text. */
static inline int64_t
at(const char *iso)
{
  int64_t t;
  ck_assert_int_eq(flow_time_parse(&t, iso), 0);
  return t;
}

/* A fresh directory /tmp/flow_<what>_XXXXXX in dir (64 bytes) and the
   database path "dir/cases.db" in path (96 bytes). */
static inline void
api_db_make(const char *what, char *dir, char *path)
{
  snprintf(dir, 64, "/tmp/flow_%s_XXXXXX", what);
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, 96, "%s/cases.db", dir);
}

/* Removes dir and everything in it. */
static inline void
api_db_remove(const char *dir)
{
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}

/* Copies an owned string from the library into one of eight rotating
   static buffers and frees it, so a test can hold a few results without
   freeing each. */
static inline const char *
api_keep(char *s)
{
  static char buf[8][8192];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, sizeof buf[0], "%s", s ? s : "");
  flow_free(s);
  return b;
}

static inline void
assert_has(const char *text, const char *want)
{
  ck_assert_msg(strstr(text, want) != NULL, "want %s in %s", want, text);
}

static inline void
assert_lacks(const char *text, const char *want)
{
  ck_assert_msg(strstr(text, want) == NULL, "did not want %s in %s", want,
                text);
}

#endif
