/*
 * The engine's loop: the run modes, posting from the loop's thread and from
 * other threads, running on a host's uv_loop_t, the backend descriptor and
 * timeout for foreign loops, stopping, closing with work still posted, and
 * the timers and queued calls the loop drives.
 *
 * Time is virtual throughout: a fixed clock (flow_engine_set_time) or a
 * host clock function that returns a variable the test moves.  Nothing
 * sleeps; the only blocking is a loop waiting in poll for posts that other
 * threads are about to make.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "engine/engine.h"
#include "flow/uv.h"
#include "testutil.h"

static const char *const SERVICE =
    "return {\n"
    "  name = 'visit', version = 1,\n"
    "  fields = { note = { type = 'string' } },\n"
    "  initial = 'waiting',\n"
    "  states = {\n"
    "    waiting = {\n"
    "      after = { ['1h'] = 'late' },\n"
    "      on = { book = 'booked' },\n"
    "    },\n"
    "    booked = { on = { done = 'closed' } },\n"
    "    late = { on = { done = 'closed' } },\n"
    "    closed = { final = true },\n"
    "  },\n"
    "}\n";

#define HOUR ((int64_t)3600 * 1000)

/* The counting allocator of testutil.h behind a mutex, so that posts from
   other threads may allocate. */
static uv_mutex_t alloc_mu;
static test_alloc ta;

static void *
locked_alloc(void *payload, void *ptr, size_t osize, size_t nsize)
{
  void *p;

  uv_mutex_lock(&alloc_mu);
  p = test_alloc_fn(payload, ptr, osize, nsize);
  uv_mutex_unlock(&alloc_mu);
  return p;
}

static flow_engine *E;
static int64_t T0;
static int64_t fake_now; /* for the host clock of the real-clock tests */

static int64_t
fake_clock(void *payload)
{
  (void)payload;
  return fake_now;
}

static int64_t
at(const char *iso)
{
  int64_t t;
  ck_assert_int_eq(flow_time_parse(&t, iso), 0);
  return t;
}

/* Opens E on :memory: with the counting allocator; clock_fn NULL means a
   fixed clock at T0. */
static void
open_engine(flow_clock_fn clock_fn)
{
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  char err[256];

  o.alloc = locked_alloc;
  o.alloc_payload = &ta;
  o.clock = clock_fn;
  ck_assert_int_eq(flow_engine_open(&E, ":memory:", &o, err, sizeof err), 0);
  ck_assert_msg(flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE),
                                         "visit.lua") == 0,
                "%s", flow_errmsg(E));
  if (clock_fn == NULL)
    flow_engine_set_time(E, T0);
}

static void
setup(void)
{
  ck_assert_int_eq(uv_mutex_init(&alloc_mu), 0);
  memset(&ta, 0, sizeof ta);
  T0 = at("2026-11-27T09:00:00Z");
  fake_now = T0;
  E = NULL;
}

static void
teardown(void)
{
  flow_engine_close(E);
  ck_assert_int_eq(ta.live_blocks, 0);
  uv_mutex_destroy(&alloc_mu);
}

static void
assert_state(const char *id, const char *state)
{
  char *c = NULL;
  char want[64];

  ck_assert_int_eq(flow_case_get(&c, E, id), 0);
  snprintf(want, sizeof want, "\"state\":\"%s\"", state);
  ck_assert_msg(strstr(c, want) != NULL, "want %s in %s", want, c);
  flow_free(c);
}

static void
open_case(void)
{
  ck_assert_msg(flow_case_open(NULL, E, "visit", NULL, NULL) == 0, "%s",
                flow_errmsg(E));
}

/* ---- run modes and posting ---------------------------------------------- */

START_TEST(test_loop_run_empty_returns_at_once)
{
  open_engine(NULL);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_ONCE), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 0);
  ck_assert_int_eq(flow_engine_run(E, (flow_run_mode)7), FLOW_EMISUSE);
  ck_assert_int_eq(flow_engine_run(NULL, FLOW_RUN_NOWAIT), FLOW_EMISUSE);
}
END_TEST

typedef struct record {
  int n;
  int order[64];
} record;

static void
note_post(flow_engine *e, void *payload)
{
  record *r = payload;

  ck_assert_ptr_eq(e, E);
  ck_assert_int_lt(r->n, 64);
  r->order[r->n] = r->n;
  r->n++;
}

static record R;

static void
note_numbered(flow_engine *e, void *payload)
{
  (void)e;
  R.order[R.n++] = (int)(intptr_t)payload;
}

static void
post_again(flow_engine *e, void *payload)
{
  note_numbered(e, payload);
  ck_assert_int_eq(flow_engine_post(e, note_numbered, (void *)(intptr_t)99),
                   0);
}

START_TEST(test_loop_post_from_loop_thread_in_order)
{
  open_engine(NULL);
  memset(&R, 0, sizeof R);
  for (int i = 0; i < 10; i++)
    ck_assert_int_eq(
        flow_engine_post(E, i == 3 ? post_again : note_numbered,
                         (void *)(intptr_t)i),
        0);
  ck_assert_int_eq(R.n, 0); /* nothing runs before the loop does */
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 0);
  ck_assert_int_eq(R.n, 11);
  for (int i = 0; i < 10; i++)
    ck_assert_int_eq(R.order[i], i);
  ck_assert_int_eq(R.order[10], 99); /* posted by a posted function */
  ck_assert_int_eq(flow_engine_post(E, NULL, NULL), FLOW_EMISUSE);
  ck_assert_int_eq(flow_engine_post(NULL, note_numbered, NULL), FLOW_EMISUSE);
}
END_TEST

START_TEST(test_loop_nowait_runs_posts)
{
  record r = { 0, { 0 } };

  open_engine(NULL);
  ck_assert_int_eq(flow_engine_post(E, note_post, &r), 0);
  ck_assert_int_eq(flow_engine_post(E, note_post, &r), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(r.n, 2);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(r.n, 2);
}
END_TEST

/* Posts from THREADS threads; the last one posted stops the loop. */
#define THREADS 4
#define PER_THREAD 1000

typedef struct poster {
  uv_thread_t tid;
  int index;
} poster;

static int last_seen[THREADS];
static int received;
static int out_of_order;

static void
take(flow_engine *e, void *payload)
{
  intptr_t v = (intptr_t)payload;
  int thread = (int)(v / PER_THREAD), seq = (int)(v % PER_THREAD);

  if (seq != last_seen[thread] + 1)
    out_of_order++;
  last_seen[thread] = seq;
  if (++received == THREADS * PER_THREAD)
    flow_engine_stop(e);
}

static void
post_many(void *arg)
{
  poster *p = arg;

  for (int i = 0; i < PER_THREAD; i++) {
    intptr_t v = (intptr_t)p->index * PER_THREAD + i;
    ck_assert_int_eq(flow_engine_post(E, take, (void *)v), 0);
  }
}

static void
keep_cb(uv_async_t *h)
{
  (void)h;
}

START_TEST(test_loop_post_from_threads_complete_and_ordered)
{
  poster p[THREADS];
  uv_async_t keep; /* the host's: keeps DEFAULT waiting for posts */

  open_engine(NULL);
  received = out_of_order = 0;
  for (int t = 0; t < THREADS; t++)
    last_seen[t] = -1;
  ck_assert_int_eq(uv_async_init(flow_engine_uv_loop(E), &keep, keep_cb), 0);
  for (int t = 0; t < THREADS; t++) {
    p[t].index = t;
    ck_assert_int_eq(uv_thread_create(&p[t].tid, post_many, &p[t]), 0);
  }
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 1);
  for (int t = 0; t < THREADS; t++)
    uv_thread_join(&p[t].tid);
  ck_assert_int_eq(received, THREADS * PER_THREAD);
  ck_assert_int_eq(out_of_order, 0);
  for (int t = 0; t < THREADS; t++)
    ck_assert_int_eq(last_seen[t], PER_THREAD - 1);
  uv_close((uv_handle_t *)&keep, NULL);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
}
END_TEST

/* A post from another thread may be the engine's first loop call. */
static void
post_one(void *arg)
{
  ck_assert_int_eq(flow_engine_post(E, note_post, arg), 0);
}

START_TEST(test_loop_first_use_from_another_thread)
{
  record r = { 0, { 0 } };
  uv_thread_t tid;

  open_engine(NULL);
  ck_assert_ptr_null(E->loop);
  ck_assert_int_eq(uv_thread_create(&tid, post_one, &r), 0);
  uv_thread_join(&tid);
  ck_assert_ptr_nonnull(E->loop);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(r.n, 1);
}
END_TEST

static void
stop_now(flow_engine *e, void *payload)
{
  (*(int *)payload)++;
  flow_engine_stop(e);
}

START_TEST(test_loop_stop_from_posted_work)
{
  uv_async_t keep;
  int stops = 0;

  open_engine(NULL);
  flow_engine_stop(E); /* not running: nothing to stop, no effect later */
  ck_assert_int_eq(uv_async_init(flow_engine_uv_loop(E), &keep, keep_cb), 0);
  ck_assert_int_eq(flow_engine_post(E, stop_now, &stops), 0);
  /* Without the stop this would wait for ever on the host's handle. */
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 1);
  ck_assert_int_eq(stops, 1);
  uv_close((uv_handle_t *)&keep, NULL);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 0);
}
END_TEST

static int reentry_rc;

static void
run_inside(flow_engine *e, void *payload)
{
  (void)payload;
  reentry_rc = flow_engine_run(e, FLOW_RUN_NOWAIT);
}

START_TEST(test_loop_run_inside_posted_work_is_misuse)
{
  open_engine(NULL);
  reentry_rc = 0;
  ck_assert_int_eq(flow_engine_post(E, run_inside, NULL), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(reentry_rc, FLOW_EMISUSE);
}
END_TEST

static void
must_not_run(flow_engine *e, void *payload)
{
  (void)e;
  (void)payload;
  ck_abort_msg("posted work ran after flow_engine_close");
}

START_TEST(test_loop_close_drops_posted_work)
{
  uv_async_t *keep = malloc(sizeof *keep);

  open_engine(NULL);
  for (int i = 0; i < 50; i++)
    ck_assert_int_eq(flow_engine_post(E, must_not_run, NULL), 0);
  /* A host handle left on the engine's own loop is closed with it. */
  ck_assert_int_eq(uv_async_init(flow_engine_uv_loop(E), keep, keep_cb), 0);
  ck_assert_int_gt(ta.live_blocks, 50);
  flow_engine_close(E);
  E = NULL;
  free(keep);
  /* teardown checks that every block was freed */
}
END_TEST

/* ---- a host's loop and a foreign loop ----------------------------------- */

static int done_calls;

static void
on_done(flow_engine *e, int status, const char *json, void *payload)
{
  (void)e;
  (void)payload;
  ck_assert_int_eq(status, 0);
  ck_assert_ptr_nonnull(json);
  done_calls++;
}

START_TEST(test_loop_host_loop)
{
  uv_loop_t host;
  record r = { 0, { 0 } };

  ck_assert_int_eq(uv_loop_init(&host), 0);
  open_engine(NULL);
  ck_assert_int_eq(flow_engine_use_uv_loop(E, NULL), FLOW_EMISUSE);
  ck_assert_int_eq(flow_engine_use_uv_loop(E, &host), 0);
  ck_assert_ptr_eq(flow_engine_uv_loop(E), &host);
  ck_assert_int_eq(flow_engine_use_uv_loop(E, &host), FLOW_EMISUSE);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), FLOW_EMISUSE);
  ck_assert(strstr(flow_errmsg(E), "host") != NULL);

  /* Posts, queued calls and timers all run on the host's loop. */
  done_calls = 0;
  ck_assert_int_eq(flow_engine_post(E, note_post, &r), 0);
  ck_assert_int_eq(flow_case_open_async(E, "visit", NULL, NULL, on_done, NULL),
                   0);
  uv_run(&host, UV_RUN_NOWAIT);
  ck_assert_int_eq(r.n, 1);
  ck_assert_int_eq(done_calls, 1);
  assert_state("1", "waiting");
  flow_engine_set_time(E, T0 + HOUR);
  uv_run(&host, UV_RUN_DEFAULT); /* returns: nothing left to do */
  assert_state("1", "late");

  flow_engine_close(E);
  E = NULL;
  ck_assert_int_eq(uv_loop_close(&host), 0);
}
END_TEST

START_TEST(test_loop_host_loop_too_late)
{
  uv_loop_t host;

  ck_assert_int_eq(uv_loop_init(&host), 0);
  open_engine(NULL);
  ck_assert_ptr_nonnull(flow_engine_uv_loop(E)); /* its own, now */
  ck_assert_int_eq(flow_engine_use_uv_loop(E, &host), FLOW_EMISUSE);
  ck_assert_int_eq(uv_loop_close(&host), 0);
}
END_TEST

START_TEST(test_loop_host_loop_before_queued_calls)
{
  uv_loop_t host;

  ck_assert_int_eq(uv_loop_init(&host), 0);
  open_engine(NULL);
  done_calls = 0;
  /* Queued before the loop exists: attaching picks it up. */
  ck_assert_int_eq(flow_case_open_async(E, "visit", NULL, NULL, on_done, NULL),
                   0);
  ck_assert_int_eq(flow_engine_use_uv_loop(E, &host), 0);
  uv_run(&host, UV_RUN_DEFAULT);
  ck_assert_int_eq(done_calls, 1);
  flow_engine_close(E);
  E = NULL;
  ck_assert_int_eq(uv_loop_close(&host), 0);
}
END_TEST

START_TEST(test_loop_backend_fd_and_timeout)
{
  open_engine(NULL);
  memset(&R, 0, sizeof R);
  ck_assert_int_ge(flow_engine_backend_fd(E), 0);
  ck_assert_int_eq(flow_engine_backend_timeout(E), -1);

  /* Work waiting: run now. */
  ck_assert_int_eq(flow_engine_post(E, note_post, &R), 0);
  ck_assert_int_eq(flow_engine_backend_timeout(E), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(flow_engine_backend_timeout(E), -1);
  ck_assert_int_eq(flow_case_open_async(E, "visit", NULL, NULL, NULL, NULL),
                   0);
  ck_assert_int_eq(flow_engine_backend_timeout(E), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 1); /* a timer */

  /* A fixed clock does not move: a future timer is no deadline... */
  ck_assert_int_eq(flow_engine_backend_timeout(E), -1);
  /* ...until the clock is moved past it. */
  flow_engine_set_time(E, T0 + HOUR);
  ck_assert_int_eq(flow_engine_backend_timeout(E), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  assert_state("1", "late");
  ck_assert_int_eq(flow_engine_backend_timeout(E), -1);
}
END_TEST

START_TEST(test_loop_backend_timeout_with_a_moving_clock)
{
  open_engine(fake_clock);
  open_case(); /* its timer is due at T0 + 1h */
  ck_assert_int_eq(flow_engine_backend_timeout(E), (int)HOUR);
  fake_now = T0 + HOUR - 1500;
  ck_assert_int_eq(flow_engine_backend_timeout(E), 1500);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 1);
  assert_state("1", "waiting");
  fake_now = T0 + HOUR;
  ck_assert_int_eq(flow_engine_backend_timeout(E), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  assert_state("1", "late");
}
END_TEST

/* ---- timers and queued calls through the loop --------------------------- */

static int transitions;

static void
count_transitions(flow_engine *e, const char *event_json, void *payload)
{
  (void)e;
  (void)payload;
  if (strstr(event_json, "\"type\":\"transition\"") != NULL)
    transitions++;
}

START_TEST(test_loop_timer_fires_when_the_clock_moves)
{
  open_engine(NULL);
  open_case();
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 1);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 1); /* no wait */
  assert_state("1", "waiting");
  flow_engine_set_time(E, T0 + HOUR - 1);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 1);
  assert_state("1", "waiting");
  flow_engine_set_time(E, T0 + HOUR);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  assert_state("1", "late");
}
END_TEST

START_TEST(test_loop_backlog_fires_in_batches)
{
  open_engine(NULL);
  for (int i = 0; i < 150; i++)
    open_case();
  transitions = 0;
  flow_engine_set_listener(E, count_transitions, NULL);
  flow_engine_set_time(E, T0 + 2 * HOUR);
  /* One round fires one batch, then lets other handles run. */
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 1);
  ck_assert_int_eq(transitions, 64);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 1);
  ck_assert_int_eq(transitions, 128);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 0);
  ck_assert_int_eq(transitions, 150);
  assert_state("150", "late");
}
END_TEST

START_TEST(test_loop_fire_due)
{
  size_t fired = 99;

  open_engine(NULL);
  for (int i = 0; i < 300; i++)
    open_case();
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  ck_assert_int_eq(fired, 0);
  flow_engine_set_time(E, T0 + HOUR);
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  ck_assert_int_eq(fired, 300);
  assert_state("300", "late");
  ck_assert_int_eq(flow_engine_fire_due(E, NULL), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
}
END_TEST

START_TEST(test_loop_async_calls_flush_once_per_round)
{
  open_engine(NULL);
  done_calls = 0;
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(
        flow_case_open_async(E, "visit", NULL, NULL, on_done, NULL), 0);
  ck_assert_int_eq(done_calls, 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 1); /* timers */
  ck_assert_int_eq(done_calls, 3);
  assert_state("3", "waiting");
}
END_TEST

static void
open_from_post(flow_engine *e, void *payload)
{
  (void)payload;
  ck_assert_int_eq(flow_case_open_async(e, "visit", NULL, NULL, on_done, NULL),
                   0);
}

START_TEST(test_loop_calls_queued_by_posts_flush_in_that_round)
{
  open_engine(NULL);
  done_calls = 0;
  ck_assert_int_eq(flow_engine_post(E, open_from_post, NULL), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_NOWAIT), 1);
  ck_assert_int_eq(done_calls, 1);
}
END_TEST

static void
run_in_callback(flow_engine *e, int status, const char *json, void *payload)
{
  (void)status;
  (void)json;
  *(int *)payload = flow_engine_run(e, FLOW_RUN_NOWAIT);
}

START_TEST(test_loop_run_inside_a_callback_is_misuse)
{
  int rc = 0;

  open_engine(NULL);
  ck_assert_int_eq(
      flow_case_open_async(E, "visit", NULL, NULL, run_in_callback, &rc), 0);
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 1);
  ck_assert_int_eq(rc, FLOW_EMISUSE);
}
END_TEST

static Suite *
loop_suite(void)
{
  Suite *s = suite_create("loop");
  TCase *tc = tcase_create("loop");

  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_loop_run_empty_returns_at_once);
  tcase_add_test(tc, test_loop_post_from_loop_thread_in_order);
  tcase_add_test(tc, test_loop_nowait_runs_posts);
  tcase_add_test(tc, test_loop_post_from_threads_complete_and_ordered);
  tcase_add_test(tc, test_loop_first_use_from_another_thread);
  tcase_add_test(tc, test_loop_stop_from_posted_work);
  tcase_add_test(tc, test_loop_run_inside_posted_work_is_misuse);
  tcase_add_test(tc, test_loop_close_drops_posted_work);
  tcase_add_test(tc, test_loop_host_loop);
  tcase_add_test(tc, test_loop_host_loop_too_late);
  tcase_add_test(tc, test_loop_host_loop_before_queued_calls);
  tcase_add_test(tc, test_loop_backend_fd_and_timeout);
  tcase_add_test(tc, test_loop_backend_timeout_with_a_moving_clock);
  tcase_add_test(tc, test_loop_timer_fires_when_the_clock_moves);
  tcase_add_test(tc, test_loop_backlog_fires_in_batches);
  tcase_add_test(tc, test_loop_fire_due);
  tcase_add_test(tc, test_loop_async_calls_flush_once_per_round);
  tcase_add_test(tc, test_loop_calls_queued_by_posts_flush_in_that_round);
  tcase_add_test(tc, test_loop_run_inside_a_callback_is_misuse);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(loop_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
