/*
 * The engine allocator.  Hosts give one lua_Alloc-shaped function; the
 * library's own structures go through flow__malloc and friends, which keep
 * the block size in a small header so callers need not.  Strings handed to
 * the host additionally remember the allocator itself, so that the public
 * flow_free() can release them without an engine.
 */
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Header before every flow__malloc block; 16 bytes keeps max alignment. */
typedef union flow__hdr {
  size_t size;
  max_align_t align;
} flow__hdr;

/* Header before an owned string returned to the host. */
typedef struct flow__owned {
  flow_alloc_fn fn;
  void *payload;
  size_t size;
  max_align_t align[];
} flow__owned;

void *
flow__default_alloc(void *payload, void *ptr, size_t osize, size_t nsize)
{
  (void)payload;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

void *
flow__malloc(const flow__allocator *a, size_t n)
{
  if (n > SIZE_MAX - sizeof(flow__hdr))
    return NULL;
  flow__hdr *h = a->fn(a->payload, NULL, 0, n + sizeof *h);
  if (h == NULL)
    return NULL;
  h->size = n;
  return h + 1;
}

void *
flow__calloc(const flow__allocator *a, size_t n, size_t size)
{
  if (size != 0 && n > SIZE_MAX / size)
    return NULL;
  void *p = flow__malloc(a, n * size);
  if (p)
    memset(p, 0, n * size);
  return p;
}

void *
flow__realloc(const flow__allocator *a, void *p, size_t n)
{
  if (p == NULL)
    return flow__malloc(a, n);
  if (n > SIZE_MAX - sizeof(flow__hdr))
    return NULL;
  flow__hdr *h = (flow__hdr *)p - 1;
  flow__hdr *nh =
      a->fn(a->payload, h, h->size + sizeof *h, n + sizeof *h);
  if (nh == NULL)
    return NULL;
  nh->size = n;
  return nh + 1;
}

void
flow__free(const flow__allocator *a, void *p)
{
  if (p == NULL)
    return;
  flow__hdr *h = (flow__hdr *)p - 1;
  a->fn(a->payload, h, h->size + sizeof *h, 0);
}

char *
flow__strndup(const flow__allocator *a, const char *s, size_t n)
{
  char *d = flow__malloc(a, n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

char *
flow__strdup(const flow__allocator *a, const char *s)
{
  return s ? flow__strndup(a, s, strlen(s)) : NULL;
}

char *
flow__owned_strndup(const flow__allocator *a, const char *s, size_t len)
{
  if (len > SIZE_MAX - sizeof(flow__owned) - 1)
    return NULL;
  size_t total = sizeof(flow__owned) + len + 1;
  flow__owned *o = a->fn(a->payload, NULL, 0, total);
  if (o == NULL)
    return NULL;
  o->fn = a->fn;
  o->payload = a->payload;
  o->size = total;
  char *d = (char *)(o + 1);
  memcpy(d, s, len);
  d[len] = 0;
  return d;
}

void
flow_free(void *ptr)
{
  if (ptr == NULL)
    return;
  flow__owned *o = (flow__owned *)((char *)ptr - sizeof(flow__owned));
  o->fn(o->payload, o, o->size, 0);
}
