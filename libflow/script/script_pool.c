/*
 * The sandbox's small-block pool: where the Lua state's small objects
 * live (issue 15).
 *
 * A transition's run makes some thirty small objects (the case and event
 * tables, their strings, the run's thread) and the collector frees them
 * soon after.  Through malloc and free that was about 9 k instructions of
 * a 100 k transition.  Here a small block comes off a free list of its
 * size class, or is carved from a slab taken from the host's allocator,
 * and goes back onto its list when Lua frees it: a few instructions each.
 *
 * Lua passes a block's size with every free and resize, so blocks carry
 * no header: the class is the size rounded up to POOL_GRAIN.  Whether a
 * block is the pool's is told by its address, against the sorted slab
 * list.  A block shrunk in place is afterwards freed with its smaller
 * size and goes onto a smaller class's list, which only wastes the
 * difference (a class never grows under a block).
 *
 * The pool holds at most POOL_SLABS slabs; once they are used up, small
 * blocks go to the host's allocator like large ones, so the memory kept
 * back from the host is bounded (POOL_SLABS * POOL_SLAB bytes) whatever a
 * script did once.  Slabs go back to the host when the sandbox closes.
 * Every byte still counts against the script's memory budget as before:
 * the budget is charged Lua's sizes in flow__sb_alloc, above this.
 */
#include "script/script_int.h"

#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
/* A block on a free list, or a slab's uncarved rest, is poisoned, so that
   AddressSanitizer still sees a use after free inside the pool. */
#define POOL_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POOL_POISON(p, n) ((void)(p), (void)(n))
#define POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static size_t
class_of(size_t n)
{
  return (n + FLOW__POOL_GRAIN - 1) / FLOW__POOL_GRAIN;
}

static size_t
class_size(size_t c)
{
  return c * FLOW__POOL_GRAIN;
}

/* Whether p lies in one of the pool's slabs (binary search). */
static int
owns(const flow__pool *pl, const void *p)
{
  uintptr_t u = (uintptr_t)p;
  size_t lo = 0, hi = pl->nslabs;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    uintptr_t base = (uintptr_t)pl->slabs[mid];
    if (u < base)
      hi = mid;
    else if (u >= base + FLOW__POOL_SLAB)
      lo = mid + 1;
    else
      return 1;
  }
  return 0;
}

/* A new slab to carve from, or 0 when the pool is full or the host said
   no. */
static int
grow(flow__pool *pl)
{
  if (pl->nslabs == FLOW__POOL_SLABS)
    return 0;
  char *s = pl->alloc->fn(pl->alloc->payload, NULL, 0, FLOW__POOL_SLAB);
  if (s == NULL)
    return 0;
  size_t i = pl->nslabs;
  while (i > 0 && (uintptr_t)pl->slabs[i - 1] > (uintptr_t)s) {
    pl->slabs[i] = pl->slabs[i - 1];
    i--;
  }
  pl->slabs[i] = s;
  pl->nslabs++;
  /* What was left of the last slab goes onto the free list of its size,
     not to waste. */
  size_t rest = (size_t)(pl->end - pl->cur);
  if (rest >= FLOW__POOL_GRAIN) {
    size_t c = rest / FLOW__POOL_GRAIN;
    POOL_UNPOISON(pl->cur, sizeof(void *));
    *(void **)pl->cur = pl->free[c];
    pl->free[c] = pl->cur;
  }
  pl->cur = s;
  pl->end = s + FLOW__POOL_SLAB;
  POOL_POISON(s, FLOW__POOL_SLAB);
  return 1;
}

static void *
pool_take(flow__pool *pl, size_t n)
{
  size_t c = class_of(n);
  void *p = pl->free[c];
  if (p != NULL) {
    POOL_UNPOISON(p, class_size(c));
    pl->free[c] = *(void **)p;
    return p;
  }
  size_t sz = class_size(c);
  if ((size_t)(pl->end - pl->cur) < sz && !grow(pl))
    return NULL;
  p = pl->cur;
  pl->cur += sz;
  POOL_UNPOISON(p, sz);
  return p;
}

static void
pool_put(flow__pool *pl, void *p, size_t n)
{
  size_t c = class_of(n);
  *(void **)p = pl->free[c];
  pl->free[c] = p;
  POOL_POISON((char *)p + sizeof(void *), class_size(c) - sizeof(void *));
}

void
flow__pool_init(flow__pool *pl, const flow__allocator *a)
{
  memset(pl, 0, sizeof *pl);
  pl->alloc = a;
}

void
flow__pool_release(flow__pool *pl)
{
  for (size_t i = 0; i < pl->nslabs; i++) {
    POOL_UNPOISON(pl->slabs[i], FLOW__POOL_SLAB);
    pl->alloc->fn(pl->alloc->payload, pl->slabs[i], FLOW__POOL_SLAB, 0);
  }
  flow__pool_init(pl, pl->alloc);
}

/*
 * lua_Alloc's contract, for osize the block's size (0 for a new block):
 * nsize 0 frees, and a shrink never fails.
 */
void *
flow__pool_realloc(flow__pool *pl, void *ptr, size_t osize, size_t nsize)
{
  const flow__allocator *a = pl->alloc;
  if (ptr == NULL) {
    if (nsize <= FLOW__POOL_MAX) {
      void *p = pool_take(pl, nsize);
      if (p != NULL)
        return p;
    }
    return a->fn(a->payload, NULL, 0, nsize);
  }
  if (!owns(pl, ptr))
    return a->fn(a->payload, ptr, osize, nsize);
  if (nsize == 0) {
    pool_put(pl, ptr, osize);
    return NULL;
  }
  if (nsize <= class_size(class_of(osize)))
    return ptr; /* fits where it is: every shrink, and growth in class */
  void *np = nsize <= FLOW__POOL_MAX ? pool_take(pl, nsize) : NULL;
  if (np == NULL)
    np = a->fn(a->payload, NULL, 0, nsize);
  if (np == NULL)
    return NULL; /* a failed growth leaves the block as it was */
  memcpy(np, ptr, osize);
  pool_put(pl, ptr, osize);
  return np;
}
