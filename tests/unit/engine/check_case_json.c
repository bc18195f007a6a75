/*
 * The case object the engine hands out.  It is written as text around the
 * stored data (no parse and print again), so these tests hold it to the
 * shape the contract gives, check that every entry point prints the same
 * bytes for the same case, and that a database changed by hand is
 * reported rather than passed on.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "testutil.h"

static const char *const SERVICE =
    "return { name = 'forms', version = 1,\n"
    "  fields = { note = { type = 'string' }, n = { type = 'integer' },\n"
    "             x = { type = 'number' }, tags = { type = 'list' },\n"
    "             more = { type = 'object' } },\n"
    "  sla = { within = '2 working days' },\n"
    "  initial = 'new',\n"
    "  states = {\n"
    "    new = { on = {\n"
    "      set = function(case, ev)\n"
    "        for k, v in pairs(ev.payload) do case.data[k] = v end\n"
    "      end,\n"
    "      finish = 'done',\n"
    "    } },\n"
    "    done = { final = true },\n"
    "  } }\n";

static char dir[64];
static char path[96];
static flow_engine *E;

static void
setup(void)
{
  test_db_make(dir, path);
  ck_assert_int_eq(flow_engine_open(&E, path, NULL, NULL, 0), 0);
  /* Monday 2 February 2026 09:00 UTC. */
  flow_engine_set_time(E, INT64_C(1770022800000));
  ck_assert_int_eq(
      flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE), "f.lua"),
      0);
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
  test_db_remove(dir, path);
}

START_TEST(test_case_object_shape)
{
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "forms",
                                  "{\"note\":\"a \\\"quoted\\\" line\\n\","
                                  "\"n\":7,\"x\":0.1,\"tags\":[],"
                                  "\"more\":{}}",
                                  NULL),
                   0);
  ck_assert_str_eq(out,
                   "{\"data\":{\"more\":{},\"n\":7,\"note\":\"a \\\"quoted\\\" "
                   "line\\n\",\"tags\":[],\"x\":0.1},"
                   "\"due_at\":\"2026-02-04T09:00:00Z\",\"id\":\"1\","
                   "\"opened_at\":\"2026-02-02T09:00:00Z\",\"seq\":1,"
                   "\"service\":\"forms\",\"state\":\"new\","
                   "\"status\":\"open\","
                   "\"updated_at\":\"2026-02-02T09:00:00Z\",\"version\":1}");
  flow_free(out);

  flow_engine_set_time(E, INT64_C(1770022800123));
  ck_assert_int_eq(flow_case_signal(&out, E, "1", "finish", NULL, NULL), 0);
  json_t *c = json_loads(out, 0, NULL);
  ck_assert_ptr_nonnull(c);
  ck_assert_str_eq(json_string_value(json_object_get(c, "status")),
                   "closed");
  ck_assert_str_eq(json_string_value(json_object_get(c, "state")), "done");
  ck_assert_str_eq(json_string_value(json_object_get(c, "updated_at")),
                   "2026-02-02T09:00:00.123Z");
  ck_assert_int_eq(json_integer_value(json_object_get(c, "seq")), 2);
  json_decref(c);
  flow_free(out);
}
END_TEST

/* The result of a transition, flow_case_get and flow_case_list print the
   same case as the same bytes. */
START_TEST(test_case_same_bytes_everywhere)
{
  char *opened = NULL, *signalled = NULL, *got = NULL, *listed = NULL;
  ck_assert_int_eq(flow_case_open(&opened, E, "forms", "{\"n\":1}", NULL), 0);
  ck_assert_int_eq(flow_case_signal(&signalled, E, "1", "set",
                                    "{\"x\":1e300,\"n\":-9223372036854775808,"
                                    "\"note\":\"\\u00e9\\u0001\"}",
                                    NULL),
                   0);
  ck_assert(strstr(signalled, "\"n\":-9223372036854775808") != NULL);
  ck_assert(strstr(signalled, "\"x\":1e+300") != NULL);
  ck_assert(strstr(signalled, "\"note\":\"\xc3\xa9\\u0001\"") != NULL);
  ck_assert_int_eq(flow_case_get(&got, E, "1"), 0);
  ck_assert_str_eq(got, signalled);
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  ck_assert_int_eq(flow_case_list(&listed, E, &q), 0);
  size_t n = strlen(got);
  ck_assert(listed[0] == '[' && strncmp(listed + 1, got, n) == 0 &&
            strcmp(listed + 1 + n, "]") == 0);
  flow_free(opened);
  flow_free(signalled);
  flow_free(got);
  flow_free(listed);

  /* An empty list is an empty array. */
  q.state = "done";
  ck_assert_int_eq(flow_case_list(&listed, E, &q), 0);
  ck_assert_str_eq(listed, "[]");
  flow_free(listed);
}
END_TEST

static void
corrupt(const char *data)
{
  flow_engine_close(E);
  sqlite3 *db;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  ck_assert_int_eq(sqlite3_prepare_v2(db,
                                      "UPDATE cases SET data = ?1 WHERE id = 2",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(st, 1, data, -1, SQLITE_STATIC);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);
  ck_assert_int_eq(flow_engine_open(&E, path, NULL, NULL, 0), 0);
}

/* A case whose stored data someone changed by hand into something that is
   not a JSON object: reported by every reader, never printed as is. */
START_TEST(test_case_stored_data_changed_by_hand)
{
  static const char *const bad[] = { "not json", "[1,2]", "{\"a\":1,\"a\":2}",
                                     "{\"a\":1} trailing" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ck_assert_int_eq(flow_case_open(NULL, E, "forms", NULL, NULL), 0);
    ck_assert_int_eq(flow_case_open(NULL, E, "forms", NULL, NULL), 0);
    corrupt(bad[i]);
    char *out = (char *)"untouched";
    ck_assert_int_eq(flow_case_get(&out, E, "2"), FLOW_EIO);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(flow_errmsg(E), "case 2: its stored data is not a "
                                         "JSON object") != NULL,
                  "%s", flow_errmsg(E));
    flow_case_query q = FLOW_CASE_QUERY_INIT;
    ck_assert_int_eq(flow_case_list(&out, E, &q), FLOW_EIO);
    ck_assert_ptr_null(out);
    ck_assert(strstr(flow_errmsg(E), "case 2: its stored data") != NULL);
    ck_assert_int_eq(flow_case_signal(&out, E, "2", "set", NULL, NULL),
                     FLOW_EIO);
    /* The others read normally. */
    ck_assert_int_eq(flow_case_get(&out, E, "1"), 0);
    flow_free(out);
    teardown();
    setup();
  }
}
END_TEST

/* A case that has had the most events one case keeps refuses the next
   with an error that says what to do, and nothing of it is written. */
START_TEST(test_case_event_limit)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "forms", NULL, NULL), 0);
  flow_engine_close(E);
  sqlite3 *db;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_exec(db, "UPDATE cases SET seq = 16777214 WHERE"
                                    " id = 1",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  ck_assert_int_eq(flow_engine_open(&E, path, NULL, NULL, 0), 0);
  flow_engine_set_time(E, INT64_C(1770022800000));
  ck_assert_msg(flow_case_signal(NULL, E, "1", "set", "{\"n\":1}", NULL) == 0,
                "%s", flow_errmsg(E));
  char *before = NULL, *after = NULL;
  ck_assert_int_eq(flow_case_get(&before, E, "1"), 0);
  ck_assert_ptr_nonnull(strstr(before, "\"seq\":16777215,"));
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "set", "{\"n\":2}", NULL),
                   FLOW_ELIMIT);
  ck_assert_msg(strstr(flow_errmsg(E), "case 1 has had 16777215 events, the "
                                       "most one case keeps: close it and "
                                       "open a new case") != NULL,
                "%s", flow_errmsg(E));
  ck_assert_int_eq(flow_case_get(&after, E, "1"), 0);
  ck_assert_str_eq(before, after);
  flow_free(before);
  flow_free(after);
  char *hist = NULL;
  ck_assert_int_eq(flow_case_history(&hist, E, "1"), 0);
  ck_assert_ptr_nonnull(strstr(hist, "\"seq\":16777215"));
  ck_assert_ptr_null(strstr(hist, "\"n\":2"));
  flow_free(hist);
}
END_TEST

static Suite *
case_json_suite(void)
{
  Suite *s = suite_create("case json");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_case_object_shape);
  tcase_add_test(tc, test_case_same_bytes_everywhere);
  tcase_add_test(tc, test_case_stored_data_changed_by_hand);
  tcase_add_test(tc, test_case_event_limit);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(case_json_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
