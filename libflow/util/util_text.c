/*
 * Text: UTF-8, the names scripts give things, and lists of names joined
 * into a message.
 */
#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
flow__sort(void *base, size_t n, size_t size,
           int (*cmp)(const void *, const void *))
{
  unsigned char tmp[64];
  if (n > 16 || size > sizeof tmp) {
    qsort(base, n, size, cmp);
    return;
  }
  unsigned char *v = base;
  for (size_t i = 1; i < n; i++) {
    if (cmp(v + (i - 1) * size, v + i * size) <= 0)
      continue;
    memcpy(tmp, v + i * size, size);
    size_t j = i;
    while (j > 0 && cmp(v + (j - 1) * size, tmp) > 0) {
      memcpy(v + j * size, v + (j - 1) * size, size);
      j--;
    }
    memcpy(v + j * size, tmp, size);
  }
}

size_t
flow__utf8_char(const unsigned char *p, const unsigned char *e)
{
  if (p >= e)
    return 0;
  unsigned c = *p;
  if (c < 0x80)
    return 1;
  size_t n;
  unsigned cp, min;
  if (c >= 0xc2 && c <= 0xdf)
    n = 1, cp = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef)
    n = 2, cp = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 3, cp = c & 0x07, min = 0x10000;
  else
    return 0;
  if ((size_t)(e - p) <= n)
    return 0;
  for (size_t i = 1; i <= n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n + 1;
}

int
flow__utf8_valid(const char *s, size_t len)
{
  const unsigned char *p = (const unsigned char *)s, *e = p + len;
  while (p < e) {
    if (*p < 0x80) { /* the common case, without the call */
      p++;
      continue;
    }
    size_t n = flow__utf8_char(p, e);
    if (n == 0)
      return 0;
    p += n;
  }
  return 1;
}

/*
 * Messages end up in JSON (flow run, bindings) and in terminals, so they
 * must be UTF-8 even when they quote what a script or caller sent.  Bytes
 * that do not form valid UTF-8 become '?' in place (also a sequence that
 * truncation cut in half).
 */
void
flow__utf8_fix(char *s)
{
  unsigned char *p = (unsigned char *)s, *e = p + strlen(s);
  while (p < e) {
    size_t n = flow__utf8_char(p, e);
    if (n == 0) {
      *p++ = '?';
      continue;
    }
    p += n;
  }
}

int
flow__name_ok(const char *s, size_t len, int underscore_first)
{
  if (s == NULL || len == 0)
    return 0;
  if (!((s[0] >= 'a' && s[0] <= 'z') || (underscore_first && s[0] == '_')))
    return 0;
  for (size_t i = 1; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return 1;
}

void
flow__join_init(flow__join *j, char *buf, size_t len)
{
  j->buf = buf;
  j->len = len;
  j->n = 0;
  j->count = 0;
  if (len)
    buf[0] = '\0';
}

void
flow__join_add(flow__join *j, const char *sep, const char *s)
{
  if (j->len == 0)
    return;
  if (j->count++ && sep)
    flow__join_text(j, sep);
  flow__join_text(j, s ? s : "?");
}

void
flow__join_text(flow__join *j, const char *s)
{
  if (j->n + 1 >= j->len)
    return; /* full: what is there stays, cut at the end */
  size_t room = j->len - j->n - 1, k = strlen(s);
  if (k > room)
    k = room;
  memcpy(j->buf + j->n, s, k);
  j->n += k;
  j->buf[j->n] = '\0';
}

/* ---- did you mean ------------------------------------------------------ */

/* Optimal string alignment distance (Levenshtein plus transpositions),
   so 'enetr' is one step from 'enter'. */
static size_t
edit_distance(const char *a, const char *b)
{
  size_t n = strlen(a), m = strlen(b);
  if (n > 32 || m > 32)
    return SIZE_MAX;
  size_t d[33][33];
  for (size_t i = 0; i <= n; i++)
    d[i][0] = i;
  for (size_t j = 0; j <= m; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= n; i++) {
    for (size_t j = 1; j <= m; j++) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best)
        best = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < best)
        best = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  }
  return d[n][m];
}

const char *
flow__closest_word(const char *word, const char *const *known)
{
  const char *best = NULL;
  size_t bestd = 3;
  for (size_t i = 0; known[i]; i++) {
    size_t d = edit_distance(word, known[i]);
    if (d < bestd) {
      bestd = d;
      best = known[i];
    }
  }
  return best;
}
