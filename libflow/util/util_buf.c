/*
 * A growable string buffer on the engine allocator.  An allocation failure
 * latches `oom` and turns later appends into no-ops, so building a message
 * or a query needs one check at the end rather than one per append.
 */
#include "util.h"

#include <stdio.h>
#include <string.h>

void
flow__buf_init(flow__buf *b, const flow__allocator *a)
{
  b->a = a;
  b->p = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
}

void
flow__buf_free(flow__buf *b)
{
  flow__free(b->a, b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

static int
buf_grow(flow__buf *b, size_t extra)
{
  if (b->oom)
    return -1;
  if (b->len + extra + 1 <= b->cap)
    return 0;
  /* Most buffers hold one case's JSON or one statement: 256 bytes is one
     allocation for them, where 64 took three or four reallocs. */
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) {
    if (cap > SIZE_MAX / 2) {
      b->oom = 1;
      return -1;
    }
    cap *= 2;
  }
  char *np = flow__realloc(b->a, b->p, cap);
  if (np == NULL) {
    b->oom = 1;
    return -1;
  }
  b->p = np;
  b->cap = cap;
  return 0;
}

void
flow__buf_add(flow__buf *b, const char *s, size_t n)
{
  if (buf_grow(b, n) != 0)
    return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

void
flow__buf_adds(flow__buf *b, const char *s)
{
  flow__buf_add(b, s, strlen(s));
}

void
flow__buf_addf(flow__buf *b, const char *fmt, ...)
{
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof small) {
    flow__buf_add(b, small, (size_t)n);
    return;
  }
  if (buf_grow(b, (size_t)n) != 0)
    return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void
flow__buf_addi64(flow__buf *b, int64_t v)
{
  char tmp[24];
  char *p = tmp + sizeof tmp;
  /* Negate in unsigned arithmetic: -INT64_MIN does not fit an int64. */
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u > 0);
  if (v < 0)
    *--p = '-';
  flow__buf_add(b, p, (size_t)(tmp + sizeof tmp - p));
}

const char *
flow__buf_str(flow__buf *b)
{
  if (b->oom)
    return NULL;
  return b->p ? b->p : "";
}
