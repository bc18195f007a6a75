/*
 * Group commit: ordering, partial failure and callback timing, driven by
 * calling the core's flush directly (the loop calls it once per round).
 */
#include <check.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "testutil.h"

static const char *const SERVICE =
    "return { name = 'bins', version = 1,\n"
    "  fields = { crew = { type = 'string' }, n = { type = 'integer' } },\n"
    "  initial = 'reported',\n"
    "  states = {\n"
    "    reported = { on = {\n"
    "      assign = function(case, ev) case.data.crew = ev.payload.crew;"
    " return 'assigned' end,\n"
    "      bad = function(case, ev) case.data.n = 'x' end,\n"
    "    } },\n"
    "    assigned = { on = { collect = 'closed' } },\n"
    "    closed = { final = true },\n"
    "  } }\n";

static flow_engine *E;
static test_alloc ta;
static char dbdir[64], dbpath[96]; /* a file: a second connection reads it */

typedef struct seen {
  int n;
  int status[16];
  char json[16][512];
  char msg[16][256];
  int durable[16]; /* did another connection see the case, at the seq
                      the callback was given, when it ran? */
} seen;

static seen S;

static void
on_done(flow_engine *e, int status, const char *json, void *payload)
{
  int i = S.n++;
  ck_assert_int_lt(i, 16);
  ck_assert_ptr_eq(payload, &S);
  S.status[i] = status;
  snprintf(S.json[i], sizeof S.json[i], "%s", json ? json : "");
  snprintf(S.msg[i], sizeof S.msg[i], "%s", flow_errmsg(e));
  ck_assert_int_eq(flow_errcode(e), status);
  /* No callback hears "done" before its transaction is durable: the
     group is committed, so another connection, which sees only what is
     committed (the engine's own would see its open transaction too),
     reads the case at the seq the callback was given, or later (the
     later calls of the group were committed with it). */
  if (status == 0 && json) {
    const char *p = strstr(json, "\"id\":\"");
    const char *q = strstr(json, "\"seq\":");
    long long id = p ? strtoll(p + 6, NULL, 10) : 0;
    long long seq = q ? strtoll(q + 6, NULL, 10) : -1;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT seq FROM cases WHERE"
                                            " id = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    S.durable[i] = sqlite3_step(st) == SQLITE_ROW &&
                   sqlite3_column_int64(st, 0) >= seq;
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
}

static void
setup(void)
{
  memset(&ta, 0, sizeof ta);
  memset(&S, 0, sizeof S);
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  o.alloc = test_alloc_fn;
  o.alloc_payload = &ta;
  test_db_make(dbdir, dbpath);
  ck_assert_int_eq(flow_engine_open(&E, dbpath, &o, NULL, 0), 0);
  ck_assert_int_eq(
      flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE), "b.lua"),
      0);
}

static void
teardown(void)
{
  flow_engine_close(E);
  test_db_remove(dbdir, dbpath);
  ck_assert_int_eq(ta.live_blocks, 0);
}

START_TEST(test_async_group_in_order_with_partial_failure)
{
  const char *roles[] = { "crew" };
  flow_actor sam = { "sam", roles, 1 };
  ck_assert_int_eq(flow_case_open_async(E, "bins", NULL, &sam, on_done, &S),
                   0);
  ck_assert_int_eq(flow_case_open_async(E, "bins", "{\"n\":", NULL, on_done,
                                        &S),
                   0);
  ck_assert_int_eq(flow_case_signal_async(E, "1", "assign",
                                          "{\"crew\":\"north\"}", &sam,
                                          on_done, &S),
                   0);
  ck_assert_int_eq(flow_case_signal_async(E, "1", "bad", NULL, &sam, on_done,
                                          &S),
                   0);
  ck_assert_int_eq(flow_case_signal_async(E, "1", "collect", NULL, &sam,
                                          on_done, &S),
                   0);
  ck_assert_int_eq(flow_case_open_async(E, "nope", NULL, NULL, on_done, &S),
                   0);
  ck_assert(flow__engine_async_pending(E));
  /* Nothing is applied, and no callback runs, before the flush. */
  ck_assert_int_eq(S.n, 0);
  char *out = NULL;
  ck_assert_int_eq(flow_case_get(&out, E, "1"), FLOW_ENOTFOUND);

  ck_assert_int_eq(flow__engine_flush_async(E), 0);
  ck_assert_int_eq(S.n, 6);
  ck_assert_int_eq(S.status[0], 0);
  ck_assert(strstr(S.json[0], "\"state\":\"reported\"") != NULL);
  ck_assert_int_eq(S.status[1], FLOW_EINVAL);
  ck_assert(strstr(S.msg[1], "not valid JSON") != NULL);
  ck_assert_int_eq(S.status[2], 0);
  ck_assert(strstr(S.json[2], "\"state\":\"assigned\"") != NULL);
  /* 'bad' is not accepted in 'assigned': each call sees the ones before. */
  ck_assert_int_eq(S.status[3], FLOW_EEVENT);
  ck_assert_int_eq(S.status[4], 0);
  ck_assert(strstr(S.json[4], "\"status\":\"closed\"") != NULL);
  ck_assert_int_eq(S.status[5], FLOW_ENOTFOUND);
  ck_assert(S.durable[0] && S.durable[2] && S.durable[4]);
  ck_assert(!flow__engine_async_pending(E));

  /* The failures left no trace: exactly three history rows. */
  ck_assert_int_eq(flow_case_history(&out, E, "1"), 0);
  ck_assert(strstr(out, "\"seq\":3") != NULL);
  ck_assert(strstr(out, "\"seq\":4") == NULL);
  flow_free(out);
  ck_assert_int_eq(flow_case_get(&out, E, "2"), FLOW_ENOTFOUND);
}
END_TEST

START_TEST(test_async_refused_handler_rolls_back_only_itself)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "bins", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_open(NULL, E, "bins", NULL, NULL), 0);
  ck_assert_int_eq(
      flow_case_signal_async(E, "1", "bad", NULL, NULL, on_done, &S), 0);
  ck_assert_int_eq(flow_case_signal_async(E, "2", "assign",
                                          "{\"crew\":\"x\"}", NULL, on_done,
                                          &S),
                   0);
  ck_assert_int_eq(flow__engine_flush_async(E), 0);
  ck_assert_int_eq(S.status[0], FLOW_EDATA);
  ck_assert(strstr(S.msg[0], "n: must be a whole number") != NULL);
  ck_assert_int_eq(S.status[1], 0);
  char *out;
  ck_assert_int_eq(flow_case_get(&out, E, "1"), 0);
  ck_assert(strstr(out, "\"seq\":1") != NULL);
  flow_free(out);
}
END_TEST

/*
 * A call refused after it has written (here: a timer whose due time
 * overflows, found after the case row and its history are written) must
 * leave no trace either.  The group has no savepoint per call, so the
 * engine rolls everything back and runs the group again, carefully,
 * without that call.
 */
static const char *const WAITS =
    "return { name = 'waits', version = 1,\n"
    "  fields = { n = { type = 'integer' } },\n"
    "  initial = 'open',\n"
    "  states = {\n"
    "    open = { on = {\n"
    "      later = function(case, ev)\n"
    "        case.data.n = (case.data.n or 0) + 1\n"
    "        flow.after(ev.payload.wait, 'ping')\n"
    "      end,\n"
    "      bad = function(case, ev) case.data.n = 'x' end,\n"
    "      ping = 'done',\n"
    "    } },\n"
    "    done = { final = true },\n"
    "  } }\n";

START_TEST(test_async_refused_after_writing_redoes_the_group)
{
  ck_assert_int_eq(
      flow_service_load_string(NULL, E, WAITS, strlen(WAITS), "w.lua"), 0);
  /* Ten days before the end of time: "1d" fits, "30d" overflows. */
  flow_engine_set_time(E, INT64_MAX - INT64_C(10) * 86400000);
  ck_assert_int_eq(flow_case_open_async(E, "waits", NULL, NULL, on_done, &S),
                   0);
  static const char *const ev[] = { "later", "later", "bad", "later",
                                    "later" };
  static const char *const pay[] = { "{\"wait\":\"1d\"}",
                                     "{\"wait\":\"30d\"}", NULL,
                                     "{\"wait\":\"2d\"}",
                                     "{\"wait\":\"30d\"}" };
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(
        flow_case_signal_async(E, "1", ev[i], pay[i], NULL, on_done, &S), 0);
  ck_assert_int_eq(flow__engine_flush_async(E), 0);
  ck_assert_int_eq(S.n, 6);
  ck_assert_int_eq(S.status[0], 0);
  ck_assert_int_eq(S.status[1], 0);
  ck_assert(strstr(S.json[1], "\"seq\":2") != NULL);
  ck_assert(strstr(S.json[1], "\"n\":1") != NULL);
  ck_assert_int_eq(S.status[2], FLOW_ESCRIPT);
  ck_assert_msg(strstr(S.msg[2], "w.lua: flow.after('30d') overflows"),
                "%s", S.msg[2]);
  ck_assert_int_eq(S.status[3], FLOW_EDATA);
  ck_assert_int_eq(S.status[4], 0);
  ck_assert(strstr(S.json[4], "\"seq\":3") != NULL);
  ck_assert(strstr(S.json[4], "\"n\":2") != NULL);
  ck_assert_int_eq(S.status[5], FLOW_ESCRIPT);
  ck_assert(S.durable[0] && S.durable[1] && S.durable[4]);

  /* Exactly what the three successes wrote: three history rows, the two
     timers they asked for, data n = 2. */
  char *out = NULL;
  ck_assert_int_eq(flow_case_history(&out, E, "1"), 0);
  ck_assert(strstr(out, "\"seq\":3") != NULL);
  ck_assert(strstr(out, "\"seq\":4") == NULL);
  flow_free(out);
  ck_assert_int_eq(flow_case_timers(&out, E, "1"), 0);
  int timers = 0;
  for (const char *p = out; (p = strstr(p, "\"event\":\"ping\"")); p++)
    timers++;
  ck_assert_int_eq(timers, 2);
  flow_free(out);
  ck_assert_int_eq(flow_case_get(&out, E, "1"), 0);
  ck_assert(strstr(out, "\"data\":{\"n\":2}") != NULL);
  ck_assert(strstr(out, "\"seq\":3") != NULL);
  flow_free(out);

  /* And the engine goes on normally. */
  memset(&S, 0, sizeof S);
  ck_assert_int_eq(flow_case_signal_async(E, "1", "later",
                                          "{\"wait\":\"1d\"}", NULL,
                                          on_done, &S),
                   0);
  ck_assert_int_eq(flow__engine_flush_async(E), 0);
  ck_assert_int_eq(S.status[0], 0);
  ck_assert(strstr(S.json[0], "\"seq\":4") != NULL);
}
END_TEST

static int requeued;

static void
requeue(flow_engine *e, int status, const char *json, void *payload)
{
  (void)json;
  (void)payload;
  ck_assert_int_eq(status, 0);
  /* A call queued from a callback goes to the next group. */
  if (requeued++ == 0)
    ck_assert_int_eq(
        flow_case_signal_async(e, "1", "assign", NULL, NULL, requeue, NULL),
        0);
}

START_TEST(test_async_queue_from_callback)
{
  requeued = 0;
  ck_assert_int_eq(flow_case_open_async(E, "bins", NULL, NULL, requeue, NULL),
                   0);
  ck_assert_int_eq(flow__engine_flush_async(E), 0);
  ck_assert_int_eq(requeued, 1);
  ck_assert(flow__engine_async_pending(E));
  ck_assert_int_eq(flow__engine_flush_async(E), 0);
  ck_assert_int_eq(requeued, 2);
}
END_TEST

START_TEST(test_async_close_fails_queued_calls)
{
  ck_assert_int_eq(flow_case_open_async(E, "bins", NULL, NULL, on_done, &S),
                   0);
  flow_engine_close(E);
  E = NULL;
  ck_assert_int_eq(S.n, 1);
  ck_assert_int_eq(S.status[0], FLOW_ECANCELED);
  ck_assert(strstr(S.msg[0], "closed") != NULL);
}
END_TEST

START_TEST(test_async_argument_refusals)
{
  ck_assert_int_eq(
      flow_case_signal_async(E, "x", "assign", NULL, NULL, on_done, &S),
      FLOW_EINVAL);
  ck_assert_int_eq(flow_case_signal_async(E, "1", NULL, NULL, NULL, on_done,
                                          &S),
                   FLOW_EMISUSE);
  ck_assert(!flow__engine_async_pending(E));
}
END_TEST

START_TEST(test_async_allocation_failures)
{
  /* Every allocation of a queued call failing in turn: clean refusals. */
  for (long n = 1; n < 200; n++) {
    long base = ta.calls;
    ta.fail_at = base + n;
    const char *roles[] = { "a", "b" };
    flow_actor act = { "who", roles, 2 };
    int rc = flow_case_signal_async(E, "1", "assign", "{\"crew\":\"c\"}",
                                    &act, NULL, NULL);
    ta.fail_at = 0;
    if (rc == 0)
      break;
    ck_assert_int_eq(rc, FLOW_ENOMEM);
  }
  ck_assert_int_eq(flow__engine_flush_async(E), 0);
}
END_TEST

static Suite *
async_suite(void)
{
  Suite *s = suite_create("async");
  TCase *tc = tcase_create("group commit");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_async_group_in_order_with_partial_failure);
  tcase_add_test(tc, test_async_refused_handler_rolls_back_only_itself);
  tcase_add_test(tc, test_async_refused_after_writing_redoes_the_group);
  tcase_add_test(tc, test_async_queue_from_callback);
  tcase_add_test(tc, test_async_close_fails_queued_calls);
  tcase_add_test(tc, test_async_argument_refusals);
  tcase_add_test(tc, test_async_allocation_failures);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(async_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
