/*
 * The sandbox's small-block pool (script_pool.c): small blocks reused by
 * size class, resizes in place where they fit, large blocks and the
 * overflow past the slab cap on the host's allocator, failures of the
 * host answered as lua_Alloc must, and every slab given back.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "script/script_int.h"
#include "testutil.h"

static test_alloc ta;
static flow__allocator al;
static flow__pool pl;

static void
setup(void)
{
  memset(&ta, 0, sizeof ta);
  al = test_allocator(&ta);
  flow__pool_init(&pl, &al);
}

static void
teardown(void)
{
  flow__pool_release(&pl);
  ck_assert_int_eq(ta.live_blocks, 0);
  ck_assert_uint_eq(ta.live_bytes, 0);
}

static void *
take(size_t n)
{
  void *p = flow__pool_realloc(&pl, NULL, 0, n);
  ck_assert_ptr_nonnull(p);
  memset(p, 0xab, n);
  return p;
}

static void
put(void *p, size_t n)
{
  ck_assert_ptr_null(flow__pool_realloc(&pl, p, n, 0));
}

START_TEST(test_pool_reuses_a_freed_block_of_its_class)
{
  void *a = take(40);
  ck_assert_int_eq(ta.live_blocks, 1); /* the first slab */
  void *b = take(40);
  ck_assert_ptr_ne(a, b);
  put(a, 40);
  /* 33..48 bytes are one class. */
  ck_assert_ptr_eq(take(48), a);
  void *c = take(33);
  ck_assert_ptr_ne(c, a);
  ck_assert_ptr_ne(c, b);
  /* Another class does not get it. */
  put(b, 40);
  void *d = take(64);
  ck_assert_ptr_ne(d, b);
  ck_assert_int_eq(ta.live_blocks, 1);
  put(a, 48);
  put(c, 33);
  put(d, 64);
}
END_TEST

START_TEST(test_pool_resizes_in_place_where_the_block_fits)
{
  char *p = take(100); /* a 112-byte class */
  memcpy(p, "hello", 6);
  ck_assert_ptr_eq(flow__pool_realloc(&pl, p, 100, 112), p);
  ck_assert_ptr_eq(flow__pool_realloc(&pl, p, 112, 20), p); /* shrink */
  /* Growing past its class moves it, with its bytes. */
  char *q = flow__pool_realloc(&pl, p, 20, 300);
  ck_assert_ptr_nonnull(q);
  ck_assert_ptr_ne(q, p);
  ck_assert_str_eq(q, "hello");
  /* The shrunk block went back with its smaller size: a 20-byte block
     may have it, and nothing overlaps. */
  char *r = take(20);
  ck_assert_ptr_eq(r, p);
  memset(r, 0, 20);
  ck_assert_str_eq(q, "hello");
  put(q, 300);
  put(r, 20);
}
END_TEST

START_TEST(test_pool_leaves_large_blocks_to_the_host)
{
  void *small = take(16);
  long slabs = ta.live_blocks;
  char *big = take(FLOW__POOL_MAX + 1);
  ck_assert_int_eq(ta.live_blocks, slabs + 1);
  big[FLOW__POOL_MAX] = 7;
  big = flow__pool_realloc(&pl, big, FLOW__POOL_MAX + 1, 100000);
  ck_assert_ptr_nonnull(big);
  ck_assert_int_eq(big[FLOW__POOL_MAX], 7);
  ck_assert_int_eq(ta.live_blocks, slabs + 1);
  /* A large block shrunk small stays the host's. */
  big = flow__pool_realloc(&pl, big, 100000, 10);
  ck_assert_ptr_nonnull(big);
  put(big, 10);
  ck_assert_int_eq(ta.live_blocks, slabs);
  /* A small block growing large moves to the host. */
  char *g = flow__pool_realloc(&pl, small, 16, 5000);
  ck_assert_ptr_nonnull(g);
  ck_assert_int_eq((unsigned char)g[15], 0xab);
  ck_assert_int_eq(ta.live_blocks, slabs + 1);
  put(g, 5000);
}
END_TEST

START_TEST(test_pool_holds_at_most_its_slabs)
{
  size_t per_slab = FLOW__POOL_SLAB / FLOW__POOL_MAX;
  size_t n = per_slab * FLOW__POOL_SLABS;
  void **v = calloc(n + 10, sizeof *v);
  ck_assert_ptr_nonnull(v);
  for (size_t i = 0; i < n; i++)
    v[i] = take(FLOW__POOL_MAX);
  ck_assert_int_eq(ta.live_blocks, FLOW__POOL_SLABS);
  ck_assert_uint_eq(pl.nslabs, FLOW__POOL_SLABS);
  /* Past the cap small blocks are the host's, one each... */
  for (size_t i = n; i < n + 10; i++)
    v[i] = take(24);
  ck_assert_int_eq(ta.live_blocks, FLOW__POOL_SLABS + 10);
  /* ...and go back to it when freed, while a freed pool block is used
     again before the host is asked. */
  for (size_t i = n; i < n + 10; i++)
    put(v[i], 24);
  ck_assert_int_eq(ta.live_blocks, FLOW__POOL_SLABS);
  put(v[0], FLOW__POOL_MAX);
  ck_assert_ptr_eq(take(FLOW__POOL_MAX), v[0]);
  ck_assert_int_eq(ta.live_blocks, FLOW__POOL_SLABS);
  /* The slabs are kept in address order for the ownership search. */
  for (size_t i = 1; i < pl.nslabs; i++)
    ck_assert((uintptr_t)pl.slabs[i - 1] < (uintptr_t)pl.slabs[i]);
  for (size_t i = 0; i < n; i++)
    put(v[i], FLOW__POOL_MAX);
  free(v);
}
END_TEST

/* The test allocator, refusing every new block or growth while refuse
   is set. */
static int refuse;

static void *
refusing_fn(void *payload, void *ptr, size_t osize, size_t nsize)
{
  if (refuse && nsize > 0 && (ptr == NULL || nsize > osize))
    return NULL;
  return test_alloc_fn(payload, ptr, osize, nsize);
}

START_TEST(test_pool_answers_host_failures_as_lua_expects)
{
  al.fn = refusing_fn;
  refuse = 0;
  char *p = take(200);
  memcpy(p, "kept", 5);
  /* The rest of the first slab used up, so that a block of a new class
     needs a slab the host will not give. */
  void *fill[FLOW__POOL_SLAB / FLOW__POOL_GRAIN];
  size_t nfill = 0;
  size_t sizes[FLOW__POOL_SLAB / FLOW__POOL_GRAIN];
  while ((size_t)(pl.end - pl.cur) >= FLOW__POOL_GRAIN) {
    size_t k = (size_t)(pl.end - pl.cur);
    sizes[nfill] = k > FLOW__POOL_MAX ? FLOW__POOL_MAX : k;
    fill[nfill] = take(sizes[nfill]);
    nfill++;
  }
  refuse = 1;
  /* A new block is refused... */
  ck_assert_ptr_null(flow__pool_realloc(&pl, NULL, 0, 600));
  ck_assert_ptr_null(flow__pool_realloc(&pl, NULL, 0, 5000));
  /* ...a growth that must move fails and leaves the block as it was... */
  ck_assert_ptr_null(flow__pool_realloc(&pl, p, 200, 900));
  ck_assert_str_eq(p, "kept");
  /* ...while a growth within its class, and a shrink, never fail. */
  ck_assert_ptr_eq(flow__pool_realloc(&pl, p, 200, 208), p);
  ck_assert_ptr_eq(flow__pool_realloc(&pl, p, 208, 10), p);
  ck_assert_str_eq(p, "kept");
  refuse = 0;
  put(p, 10);
  for (size_t i = 0; i < nfill; i++)
    put(fill[i], sizes[i]);
  ck_assert_uint_eq(pl.nslabs, 1);
}
END_TEST

START_TEST(test_pool_release_gives_every_slab_back)
{
  for (int i = 0; i < 5000; i++)
    take(200); /* never freed one by one, as when Lua closes */
  ck_assert_int_gt(ta.live_blocks, 1);
  flow__pool_release(&pl);
  ck_assert_int_eq(ta.live_blocks, 0);
  /* The pool works again after a release. */
  put(take(30), 30);
}
END_TEST

static Suite *
pool_suite(void)
{
  Suite *s = suite_create("pool");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_pool_reuses_a_freed_block_of_its_class);
  tcase_add_test(tc, test_pool_resizes_in_place_where_the_block_fits);
  tcase_add_test(tc, test_pool_leaves_large_blocks_to_the_host);
  tcase_add_test(tc, test_pool_holds_at_most_its_slabs);
  tcase_add_test(tc, test_pool_answers_host_failures_as_lua_expects);
  tcase_add_test(tc, test_pool_release_gives_every_slab_back);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(pool_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
