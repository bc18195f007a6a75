/*
 * Cancelled timers.  Leaving a state cancels its timers and closing a case
 * cancels all of them, but the rows are not deleted in that transition:
 * the case row records the cancellation (state, closed, entered_seq) and
 * the dead rows are deleted later, a batch at a time.  These tests hold
 * the promise that matters -- a cancelled timer never fires and is never
 * shown, also when the case comes back to the same state -- and check that
 * the rows really go: in batches, at close, when they come due, and that a
 * database from before (schema 2) keeps its timers.
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
    "return { name = 'visit', version = 1,\n"
    "  initial = 'a',\n"
    "  states = {\n"
    "    a = { after = { ['1h'] = 'late' },\n"
    "          on = { go = 'b', nudge = function(case, ev)\n"
    "                   flow.after('10m', 'poke')\n"
    "                 end, poke = 'late', stop = 'done' } },\n"
    "    b = { on = { back = 'a', stop = 'done' } },\n"
    "    late = { on = { stop = 'done' } },\n"
    "    done = { final = true },\n"
    "  } }\n";

static char dir[64], path[96];
static flow_engine *E;
static int64_t T0;

static void
open_engine(void)
{
  ck_assert_int_eq(flow_engine_open(&E, path, NULL, NULL, 0), 0);
  flow_engine_set_time(E, T0);
}

static void
setup(void)
{
  test_db_make(dir, path);
  ck_assert_int_eq(flow_time_parse(&T0, "2026-02-02T09:00:00Z"), 0);
  open_engine();
  ck_assert_int_eq(
      flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE), "v.lua"),
      0);
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
  test_db_remove(dir, path);
}

/* Timer rows in the file, dead or alive, read by a second connection. */
static int
rows(const char *where)
{
  sqlite3 *db;
  ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM timers WHERE %s", where);
  sqlite3_stmt *st;
  ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
  int n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

static void
at_minute(int m)
{
  flow_engine_set_time(E, T0 + (int64_t)m * 60000);
}

static void
signal_ok(const char *id, const char *event)
{
  ck_assert_msg(flow_case_signal(NULL, E, id, event, NULL, NULL) == 0,
                "%s %s: %s", id, event, flow_errmsg(E));
}

static int
count(const char *s, const char *what)
{
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)) != NULL; p++)
    n++;
  return n;
}

static char *
timers_of(const char *id)
{
  char *out = NULL;
  ck_assert_int_eq(flow_case_timers(&out, E, id), 0);
  return out;
}

static void
state_is(const char *id, const char *state, int seq)
{
  char *c = NULL, want[64], want_seq[32];
  ck_assert_int_eq(flow_case_get(&c, E, id), 0);
  snprintf(want, sizeof want, "\"state\":\"%s\"", state);
  snprintf(want_seq, sizeof want_seq, "\"seq\":%d,", seq);
  ck_assert_msg(strstr(c, want) && strstr(c, want_seq), "%s", c);
  flow_free(c);
}

/* Back in the same state: the first visit's timer is dead, the second's
   is not, and only the second fires. */
START_TEST(test_cancel_reentry_fires_only_the_new_timer)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  at_minute(5);
  signal_ok("1", "nudge"); /* a flow.after timer, scoped to a: 09:15 */
  at_minute(10);
  signal_ok("1", "go");
  at_minute(20);
  signal_ok("1", "back"); /* a again: a new 1h timer, due 10:20 */
  char *t = timers_of("1");
  ck_assert_int_eq(count(t, "\"status\":\"pending\""), 1);
  ck_assert_msg(strstr(t, "\"due_at\":\"2026-02-02T10:20:00Z\""), "%s", t);
  flow_free(t);
  /* The dead rows are still in the file: three of them. */
  ck_assert_int_eq(rows("1"), 3);

  /* 10:05: the first visit's timers (09:15 and 10:00) are due, but dead:
     nothing fires, and the engine does not even wake for them. */
  at_minute(65);
  ck_assert_int_eq(flow__engine_next_due(E), T0 + 80 * 60000);
  size_t fired = 99;
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  ck_assert_int_eq((int)fired, 0);
  state_is("1", "a", 4);

  at_minute(81);
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  ck_assert_int_eq((int)fired, 1);
  state_is("1", "late", 5);
  ck_assert_int_eq(rows("1"), 0); /* the dead ones went with the firing */
}
END_TEST

/* A closed case's timers are not shown and never fire; the rows go when
   the engine closes (or sooner, in a batch). */
START_TEST(test_cancel_closing)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  signal_ok("1", "nudge");
  signal_ok("1", "stop");
  char *t = timers_of("1");
  ck_assert_str_eq(t, "[]");
  flow_free(t);
  ck_assert_int_eq(flow__engine_next_due(E), INT64_MAX);
  /* Nothing left to do: a default run returns at once. */
  ck_assert_int_eq(flow_engine_run(E, FLOW_RUN_DEFAULT), 0);
  at_minute(600);
  size_t fired = 99;
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  ck_assert_int_eq((int)fired, 0);
  state_is("1", "done", 3);

  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  signal_ok("2", "stop");
  ck_assert_int_eq(rows("case_id = 2"), 1);
  flow_engine_close(E);
  E = NULL;
  ck_assert_int_eq(rows("1"), 0);
  open_engine();
}
END_TEST

/* Signals event to cases 1..n in one group commit. */
static void
group_signal(int n, const char *event)
{
  char id[16];
  for (int i = 1; i <= n; i++) {
    snprintf(id, sizeof id, "%d", i);
    ck_assert_int_eq(
        flow_case_signal_async(E, id, event, NULL, NULL, NULL, NULL), 0);
  }
  ck_assert_int_eq(flow__engine_flush_async(E), 0);
}

/* Dead rows are deleted FLOW__SWEEP_BATCH cases at a time, in the
   transition that notes the last of the batch. */
START_TEST(test_cancel_sweeps_in_batches)
{
  int n = FLOW__SWEEP_BATCH + 6;
  for (int i = 0; i < n; i++)
    ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  ck_assert_int_eq(rows("1"), n);
  char id[16];
  for (int i = 1; i <= n; i++) {
    snprintf(id, sizeof id, "%d", i);
    signal_ok(id, "go");
  }
  ck_assert_int_eq(rows("1"), 6);
  ck_assert_int_eq(rows("case_id <= 64"), 0);
  /* Group commit deletes what its calls cancelled in the same commit. */
  group_signal(n, "back");
  group_signal(n, "go");
  ck_assert_int_eq(rows("1"), 0);
}
END_TEST

/* Runs sql on the database through a second connection. */
static void
exec_sql(const char *sql)
{
  sqlite3 *db;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

/* The store fails in the middle of a batch delete: the transition that
   triggered it is refused whole, and works again once the store does. */
START_TEST(test_cancel_sweep_failure_refuses_the_transition)
{
  int n = FLOW__SWEEP_BATCH;
  for (int i = 0; i < n; i++)
    ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  char id[16];
  for (int i = 1; i < n; i++) {
    snprintf(id, sizeof id, "%d", i);
    signal_ok(id, "go");
  }
  exec_sql("CREATE TRIGGER no_delete BEFORE DELETE ON timers BEGIN"
           " SELECT RAISE(ABORT, 'the disk says no'); END;");
  snprintf(id, sizeof id, "%d", n);
  int rc = flow_case_signal(NULL, E, id, "go", NULL, NULL);
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(strstr(flow_errmsg(E), "removing cancelled timers"), "%s",
                flow_errmsg(E));
  state_is(id, "a", 1);
  /* Nothing was deleted, and nothing dead is shown or fires. */
  ck_assert_int_eq(rows("1"), n);
  char *t = timers_of("1");
  ck_assert_str_eq(t, "[]");
  flow_free(t);
  /* The notes survive the failure: once the store works, the same call
     goes through and the whole batch is deleted. */
  exec_sql("DROP TRIGGER no_delete;");
  signal_ok(id, "go");
  state_is(id, "b", 2);
  ck_assert_int_eq(rows("1"), 0);
}
END_TEST

/* A database of schema 2 (timers deleted at once) keeps its timers live
   after the migration. */
START_TEST(test_cancel_migrates_schema_2)
{
  flow_engine_close(E);
  E = NULL;
  sqlite3 *db;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(
      sqlite3_exec(db,
                   "DROP TABLE counters; DROP TABLE tasks; DROP TABLE incidents;"
                   "DROP TABLE messages; DROP TABLE correlations;"
                   "DROP TABLE IF EXISTS sla_log; ALTER TABLE cases DROP COLUMN sla_paused_at; DROP TABLE case_states;"
                   "ALTER TABLE cases DROP COLUMN keys;"
                   "ALTER TABLE cases DROP COLUMN tasks;"
                   "DROP TABLE outbox; CREATE TABLE outbox ("
                   "  id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL,"
                   "  seq INTEGER NOT NULL, n INTEGER NOT NULL,"
                   "  action TEXT NOT NULL, args TEXT NOT NULL,"
                   "  status TEXT NOT NULL, created_at INTEGER NOT NULL,"
                   "  UNIQUE (case_id, seq, n));"
                   "CREATE INDEX outbox_pending ON outbox(status)"
                   " WHERE status = 'pending';"
                   "ALTER TABLE cases DROP COLUMN entered_seq;"
                   "ALTER TABLE timers DROP COLUMN set_seq;"
                   "PRAGMA user_version = 2;"
                   "INSERT INTO cases(id, service, version, state, closed,"
                   " data, opened_at, updated_at, due_at, seq, seed)"
                   " VALUES (7, 'visit', 1, 'b', 0, '{}', 0, 0, NULL, 2, 1);"
                   "INSERT INTO timers(case_id, due_at, kind, event, payload,"
                   " target, state) VALUES (7, 1770026400000, 'after',"
                   " 'after', '{}', 'late', 'b');",
                   NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  open_engine();
  char *t = timers_of("7");
  ck_assert_int_eq(count(t, "\"status\":\"pending\""), 1);
  flow_free(t);
  at_minute(61);
  size_t fired = 0;
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  ck_assert_int_eq((int)fired, 1);
  state_is("7", "late", 3);
}
END_TEST

static Suite *
cancel_suite(void)
{
  Suite *s = suite_create("timer cancel");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_cancel_reentry_fires_only_the_new_timer);
  tcase_add_test(tc, test_cancel_closing);
  tcase_add_test(tc, test_cancel_sweeps_in_batches);
  tcase_add_test(tc, test_cancel_sweep_failure_refuses_the_transition);
  tcase_add_test(tc, test_cancel_migrates_schema_2);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(cancel_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
