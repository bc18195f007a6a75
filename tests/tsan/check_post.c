/*
 * flow_engine_post under ThreadSanitizer: eight threads post at once while
 * the engine's thread runs FLOW_RUN_DEFAULT and works on cases between
 * posts, then stops itself once everything posted has arrived.
 *
 * Built only with -DFLOW_TSAN=ON (see CMakeLists.txt), where a data race
 * anywhere on the way (the post FIFO, attaching the loop on first use, the
 * wake-up) fails the run.  The threads start before the engine has a loop,
 * so attaching races with the engine thread's own first loop call.  Only
 * the public API is used.  Nothing sleeps: the loop waits in poll for the
 * posts' wake-ups.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <flow.h>
#include <flow/uv.h>

#define THREADS 8
#define PER_THREAD 2000

static const char *const SERVICE =
    "return { name = 'ping', version = 1, initial = 'new',\n"
    "  states = { new = { on = { seen = 'done' } }, done = { final = true } } }\n";

static flow_engine *E;
static int last_seen[THREADS];
static int received, out_of_order, opened;

static void
on_opened(flow_engine *e, int status, const char *json, void *payload)
{
  (void)e;
  (void)json;
  (void)payload;
  ck_assert_int_eq(status, 0);
  opened++;
}

/* Runs on the engine's thread. */
static void
take(flow_engine *e, void *payload)
{
  intptr_t v = (intptr_t)payload;
  int thread = (int)(v / PER_THREAD), seq = (int)(v % PER_THREAD);

  if (seq != last_seen[thread] + 1)
    out_of_order++;
  last_seen[thread] = seq;
  /* Real engine work between posts: allocations on this thread while the
     others allocate post nodes. */
  if (seq % 200 == 0) {
    ck_assert_int_eq(flow_case_open(NULL, e, "ping", NULL, NULL), 0);
    ck_assert_int_eq(
        flow_case_open_async(e, "ping", NULL, NULL, on_opened, NULL), 0);
  }
  if (++received == THREADS * PER_THREAD)
    flow_engine_stop(e);
}

static void
post_many(void *arg)
{
  intptr_t index = (intptr_t)arg;

  for (int i = 0; i < PER_THREAD; i++)
    ck_assert_int_eq(
        flow_engine_post(E, take, (void *)(index * PER_THREAD + i)), 0);
}

static void
keep_cb(uv_async_t *h)
{
  (void)h;
}

START_TEST(test_post_from_eight_threads)
{
  uv_thread_t tid[THREADS];
  uv_async_t keep; /* keeps the DEFAULT run waiting for posts */
  char err[256];

  ck_assert_int_eq(flow_engine_open(&E, ":memory:", NULL, err, sizeof err),
                   0);
  ck_assert_int_eq(
      flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE), "ping.lua"),
      0);
  for (int t = 0; t < THREADS; t++)
    last_seen[t] = -1;
  for (intptr_t t = 0; t < THREADS; t++)
    ck_assert_int_eq(uv_thread_create(&tid[t], post_many, (void *)t), 0);
  ck_assert_int_eq(uv_async_init(flow_engine_uv_loop(E), &keep, keep_cb), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 1);
  for (int t = 0; t < THREADS; t++)
    uv_thread_join(&tid[t]);

  ck_assert_int_eq(received, THREADS * PER_THREAD);
  ck_assert_int_eq(out_of_order, 0);
  for (int t = 0; t < THREADS; t++)
    ck_assert_int_eq(last_seen[t], PER_THREAD - 1);
  uv_close((uv_handle_t *)&keep, NULL);
  ck_assert_int_ge(flow_engine_run(E, FLOW_RUN_DEFAULT), 0);
  ck_assert_int_eq(opened, THREADS * PER_THREAD / 200);
  flow_engine_close(E);
}
END_TEST

int
main(void)
{
  Suite *s = suite_create("tsan");
  TCase *tc = tcase_create("post");
  SRunner *sr;
  int failed;

  tcase_add_test(tc, test_post_from_eight_threads);
  suite_add_tcase(s, tc);
  sr = srunner_create(s);
  /* No fork: ThreadSanitizer watches this process. */
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
