/*
 * Two engines on one database file (a host and a `flow run`, or two
 * `flow run`s): a timer one of them sets is seen by the other, whose
 * cached "next timer due" is read again once the store says another
 * connection committed (flow__engine_wake_check, store.h's
 * changed_elsewhere).  Time is virtual: a fixed engine clock.  The loop
 * test waits, in real time, for one wake poll (FLOW__WAKE_POLL_MS), but
 * asserts only what happened, not how long it took.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "engine/engine.h"
#include "flow/uv.h"
#include "testutil.h"

static const char *const SERVICE =
    "return { name = 'visit', version = 1,\n"
    "  initial = 'waiting',\n"
    "  states = {\n"
    "    waiting = { after = { ['1h'] = 'late' } },\n"
    "    late = { final = true },\n"
    "  } }\n";

#define HOUR ((int64_t)3600 * 1000)

static char dir[64], path[96];
static flow_engine *A, *B;
static int64_t T0;

static flow_engine *
open_one(void)
{
  flow_engine *e;
  char err[256];
  ck_assert_msg(flow_engine_open(&e, path, NULL, err, sizeof err) == 0, "%s",
                err);
  flow_engine_set_time(e, T0);
  return e;
}

static void
setup(void)
{
  test_db_make(dir, path);
  ck_assert_int_eq(flow_time_parse(&T0, "2026-11-27T09:00:00Z"), 0);
  A = open_one();
  ck_assert_int_eq(
      flow_service_load_string(NULL, A, SERVICE, strlen(SERVICE), "v.lua"), 0);
  B = open_one();
}

static void
teardown(void)
{
  flow_engine_close(A);
  flow_engine_close(B);
  test_db_remove(dir, path);
}

static void
open_case_on(flow_engine *e)
{
  char *out = NULL;
  ck_assert_msg(flow_case_open(&out, e, "visit", "{}", NULL) == 0, "%s",
                flow_errmsg(e));
  flow_free(out);
}

static void
state_is(flow_engine *e, const char *id, const char *state)
{
  char *out = NULL, want[64];
  ck_assert_int_eq(flow_case_get(&out, e, id), 0);
  snprintf(want, sizeof want, "\"state\":\"%s\"", state);
  ck_assert_msg(strstr(out, want) != NULL, "%s", out);
  flow_free(out);
}

START_TEST(test_wake_sees_the_other_engines_timer)
{
  flow__engine_wake_check(A); /* the first call always says "changed" */
  ck_assert_int_eq(flow__engine_wake_check(A), 0);
  ck_assert(flow__engine_next_due(A) == INT64_MAX);
  open_case_on(B);
  /* A's answer is cached, until it asks the store. */
  ck_assert(flow__engine_next_due(A) == INT64_MAX);
  ck_assert_int_eq(flow__engine_wake_check(A), 1);
  ck_assert(flow__engine_next_due(A) == T0 + HOUR);
  ck_assert_int_eq(flow__engine_wake_check(A), 0);
  /* Its own commits are no news to it. */
  open_case_on(A);
  ck_assert_int_eq(flow__engine_wake_check(A), 0);
}
END_TEST

static void
stop_cb(uv_timer_t *t)
{
  uv_stop(t->loop);
}

/* A runs its loop with nothing to do; B sets a timer that is already due
   on A's clock: A's wake poll arms it and A fires it. */
START_TEST(test_wake_loop_fires_the_other_engines_timer)
{
  uv_loop_t *uv = flow_engine_uv_loop(A);
  ck_assert_ptr_nonnull(uv);
  ck_assert_int_eq(flow_engine_run(A, FLOW_RUN_NOWAIT), 0);
  open_case_on(B);
  flow_engine_set_time(A, T0 + 2 * HOUR);
  uv_timer_t stop;
  uv_timer_init(uv, &stop);
  uv_timer_start(&stop, stop_cb, 3 * FLOW__WAKE_POLL_MS, 0);
  /* Keeps the loop alive only until the timer fires, a few polls later. */
  while (uv_is_active((uv_handle_t *)&stop)) {
    flow_engine_run(A, FLOW_RUN_ONCE);
    char *out = NULL;
    ck_assert_int_eq(flow_case_get(&out, A, "1"), 0);
    int late = strstr(out, "\"state\":\"late\"") != NULL;
    flow_free(out);
    if (late)
      break;
  }
  uv_close((uv_handle_t *)&stop, NULL);
  uv_run(uv, UV_RUN_NOWAIT);
  state_is(A, "1", "late");
  state_is(B, "1", "late");
}
END_TEST

static Suite *
wake_suite(void)
{
  Suite *s = suite_create("wake");
  TCase *tc = tcase_create("two engines");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_wake_sees_the_other_engines_timer);
  tcase_add_test(tc, test_wake_loop_fires_the_other_engines_timer);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(wake_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
