/*
 * The SQLite backend through its function table: schema creation and
 * refusal of foreign or newer databases, rows in and out, transactions,
 * queries.  A counting allocator checks every test for leaks.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "testutil.h"

static test_alloc ta;
static flow__allocator A;
static flow__store *S;
static flow__err err;
static const flow__store_vt *vt = &flow__store_sqlite;

static void
setup(void)
{
  memset(&ta, 0, sizeof ta);
  A = test_allocator(&ta);
  flow__err_clear(&err);
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  ck_assert_int_eq(vt->open(&S, ":memory:", &cfg, &err), 0);
}

static void
teardown(void)
{
  vt->close(S);
  S = NULL;
  ck_assert_int_eq(ta.live_blocks, 0);
}

static flow__case_row
sample_row(int64_t id)
{
  flow__case_row r = { id, "bins", 1, "reported", 0,
                       "{\"bin\":\"refuse\",\"uprn\":\"1000\"}",
                       1000, 1000, FLOW__NO_TIME, 1, 42 };
  return r;
}

START_TEST(test_store_sqlite_case_round_trip)
{
  int64_t id;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_next_id(S, &id, &err), 0);
  ck_assert_int_eq(id, 1);
  flow__case_row r = sample_row(id);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);

  flow__case_row got;
  ck_assert_int_eq(vt->case_get(S, 1, &got, &err), 0);
  ck_assert_str_eq(got.service, "bins");
  ck_assert_str_eq(got.state, "reported");
  ck_assert_str_eq(got.data, r.data);
  ck_assert(got.due_at == FLOW__NO_TIME);
  ck_assert_int_eq(got.seed, 42);
  flow__case_row_clear(&A, &got);

  r.state = "closed";
  r.closed = 1;
  r.seq = 2;
  r.due_at = 5000;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_update(S, &r, 1, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->case_get(S, 1, &got, &err), 0);
  ck_assert_str_eq(got.state, "closed");
  ck_assert_int_eq(got.closed, 1);
  /* due_at is fixed when a case opens; updates never touch it. */
  ck_assert(got.due_at == FLOW__NO_TIME);
  flow__case_row_clear(&A, &got);

  /* A data-only update leaves state and closed as they are. */
  r.state = "ignored";
  r.closed = 0;
  r.seq = 3;
  r.data = "{\"bin\":\"garden\"}";
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_update(S, &r, 0, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->case_get(S, 1, &got, &err), 0);
  ck_assert_str_eq(got.state, "closed");
  ck_assert_int_eq(got.closed, 1);
  ck_assert_int_eq(got.seq, 3);
  ck_assert_str_eq(got.data, "{\"bin\":\"garden\"}");
  flow__case_row_clear(&A, &got);

  ck_assert_int_eq(vt->case_get(S, 2, &got, &err), FLOW_ENOTFOUND);
  ck_assert(strstr(err.msg, "no case 2") != NULL);
}
END_TEST

START_TEST(test_store_sqlite_rollback_discards)
{
  flow__case_row r = sample_row(1);
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  flow__history_row h = { 1, 1, 1000, "{}", "open", "{}", NULL, "reported" };
  ck_assert_int_eq(vt->history_append(S, &h, &err), 0);
  vt->rollback(S);
  flow__case_row got;
  ck_assert_int_eq(vt->case_get(S, 1, &got, &err), FLOW_ENOTFOUND);
  /* The same id is free again. */
  int64_t id;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_next_id(S, &id, &err), 0);
  ck_assert_int_eq(id, 1);
  vt->rollback(S);
}
END_TEST

static void
add_timer(int64_t case_id, const char *state, int64_t set_seq)
{
  flow__timer_row t = { 0 };
  t.case_id = case_id;
  t.due_at = 2000;
  t.kind = "timer";
  t.event = "ping";
  t.payload = "{}";
  t.state = state;
  t.set_seq = set_seq;
  ck_assert_int_eq(vt->timer_insert(S, &t, &err), 0);
}

static int
collect_timer_ids(void *ctx, const flow__timer_row *row)
{
  int64_t *ids = ctx;
  size_t i = 0;
  while (ids[i] != 0)
    i++;
  ids[i] = row->id;
  return 0;
}

/* A claim takes a timer only while it is pending and live, and says so;
   so does an incident. */
START_TEST(test_store_sqlite_timer_claim)
{
  flow__case_row r = sample_row(1);
  int claimed = -1, marked = -1;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  add_timer(1, "reported", 1); /* this visit of reported */
  add_timer(1, "reported", 1); /* the same, to outlive a move */
  add_timer(1, NULL, 1);       /* kept */
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int64_t ids[8] = { 0 };
  ck_assert_int_eq(vt->timer_due(S, 5000, 8, collect_timer_ids, ids, &err), 0);
  ck_assert(ids[0] && ids[1] && ids[2] && !ids[3]);

  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->timer_claim(S, ids[0], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 1);
  /* Taken: a second claim (another engine, later) gets nothing. */
  ck_assert_int_eq(vt->timer_claim(S, ids[0], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);

  /* A rolled-back claim leaves the timer to claim again. */
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->timer_claim(S, ids[1], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 1);
  vt->rollback(S);

  /* The case leaves reported: its timer there is dead, the kept one is
     not. */
  r.state = "assigned";
  r.seq = 2;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_update(S, &r, 1, &err), 0);
  ck_assert_int_eq(vt->timer_claim(S, ids[1], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->timer_incident(S, ids[1], "late", &marked, &err), 0);
  ck_assert_int_eq(marked, 0);
  ck_assert_int_eq(vt->timer_incident(S, ids[2], "boom", &marked, &err), 0);
  ck_assert_int_eq(marked, 1);
  /* An incident is no longer pending: neither claimed nor marked again. */
  ck_assert_int_eq(vt->timer_claim(S, ids[2], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->timer_incident(S, ids[2], "boom", &marked, &err), 0);
  ck_assert_int_eq(marked, 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);

  /* A closed case's kept timers are dead too. */
  ck_assert_int_eq(vt->begin(S, &err), 0);
  add_timer(1, NULL, 2);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  memset(ids, 0, sizeof ids);
  ck_assert_int_eq(vt->timer_due(S, 5000, 8, collect_timer_ids, ids, &err), 0);
  ck_assert(ids[0] && !ids[1]);
  r.state = "closed";
  r.closed = 1;
  r.seq = 3;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_update(S, &r, 1, &err), 0);
  ck_assert_int_eq(vt->timer_claim(S, ids[0], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
}
END_TEST

static int
count_history(void *ctx, const flow__history_row *row)
{
  int *n = ctx;
  ck_assert_int_eq(row->seq, *n + 1);
  if (row->seq == 1)
    ck_assert_ptr_null(row->from);
  else
    ck_assert_str_eq(row->from, "reported");
  (*n)++;
  return 0;
}

START_TEST(test_store_sqlite_history_in_order)
{
  flow__case_row r = sample_row(1);
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  for (int i = 3; i >= 1; i--) {
    flow__history_row h = { 1, i, 1000 + i, "{\"id\":\"x\",\"roles\":[]}",
                            "e", "{}", i == 1 ? NULL : "reported", "x" };
    ck_assert_int_eq(vt->history_append(S, &h, &err), 0);
  }
  /* The same seq twice is refused: history is append-only. */
  flow__history_row dup = { 1, 2, 0, "{}", "e", "{}", NULL, "x" };
  ck_assert_int_eq(vt->history_append(S, &dup, &err), FLOW_EIO);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int n = 0;
  ck_assert_int_eq(vt->history_each(S, 1, count_history, &n, &err), 0);
  ck_assert_int_eq(n, 3);
}
END_TEST

static int
collect_ids(void *ctx, const flow__case_row *row)
{
  char *buf = ctx;
  char one[24];
  snprintf(one, sizeof one, "%lld,", (long long)row->id);
  strcat(buf, one);
  return 0;
}

START_TEST(test_store_sqlite_list_filters)
{
  const char *datas[] = {
    "{\"bin\":\"refuse\",\"uprn\":\"1000\",\"n\":3,\"ok\":true}",
    "{\"bin\":\"garden\",\"uprn\":\"1001\",\"n\":4,\"ok\":false}",
    "{\"bin\":\"garden\",\"uprn\":\"1002\",\"n\":3.5}",
  };
  ck_assert_int_eq(vt->begin(S, &err), 0);
  for (int i = 0; i < 3; i++) {
    flow__case_row r = sample_row(i + 1);
    r.data = (char *)datas[i];
    r.state = i == 2 ? "closed" : "reported";
    r.closed = i == 2;
    ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  }
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->index_field(S, "uprn", &err), 0);
  ck_assert_int_eq(vt->index_field(S, "uprn", &err), 0);

  struct {
    const char *state, *status, *field, *value, *want;
  } cases[] = {
    { NULL, NULL, NULL, NULL, "1,2,3," },
    { "reported", NULL, NULL, NULL, "1,2," },
    { NULL, "closed", NULL, NULL, "3," },
    { NULL, "open", "bin", "\"garden\"", "2," },
    { NULL, NULL, "uprn", "1001", "2," },
    { NULL, NULL, "n", "3", "1," },
    { NULL, NULL, "n", "3.5", "3," },
    { NULL, NULL, "ok", "true", "1," },
    { NULL, NULL, "ok", "false", "2," },
    { NULL, NULL, "missing", "1", "" },
    { NULL, NULL, "ok", "null", "3," },
    { NULL, NULL, "ok", " null ", "3," },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    flow_case_query q = FLOW_CASE_QUERY_INIT;
    flow_where w = { cases[i].field, cases[i].value };
    q.state = cases[i].state;
    q.status = cases[i].status;
    q.service = "bins";
    if (cases[i].field) {
      q.where = &w;
      q.nwhere = 1;
    }
    char buf[256] = "";
    ck_assert_int_eq(vt->case_list(S, &q, 0, collect_ids, buf, &err), 0);
    ck_assert_msg(strcmp(buf, cases[i].want) == 0, "case %zu: got %s", i,
                  buf);
  }
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  flow_where w = { "bin", "{not json" };
  q.where = &w;
  q.nwhere = 1;
  char buf[64] = "";
  ck_assert_int_eq(vt->case_list(S, &q, 0, collect_ids, buf, &err), FLOW_EINVAL);
}
END_TEST

START_TEST(test_store_sqlite_services_newest)
{
  flow__service_row r = { "bins", 1, "Bins", "return {}", 9, "abc",
                          "bins.lua", 5 };
  ck_assert_int_eq(vt->service_put(S, &r, &err), 0);
  r.version = 2;
  r.sha256 = "def";
  ck_assert_int_eq(vt->service_put(S, &r, &err), 0);
  ck_assert_int_eq(vt->service_put(S, &r, &err), FLOW_EIO);
  flow__service_row got;
  ck_assert_int_eq(vt->service_get(S, "bins", 0, &got, &err), 0);
  ck_assert_int_eq(got.version, 2);
  ck_assert_str_eq(got.sha256, "def");
  ck_assert_uint_eq(got.source_len, 9);
  flow__service_row_clear(&A, &got);
  ck_assert_int_eq(vt->service_get(S, "bins", 1, &got, &err), 0);
  ck_assert_str_eq(got.sha256, "abc");
  flow__service_row_clear(&A, &got);
  ck_assert_int_eq(vt->service_get(S, "nope", 0, &got, &err), FLOW_ENOTFOUND);
  ck_assert(strstr(err.msg, "flow load nope.lua") != NULL);
  json_t *list;
  ck_assert_int_eq(vt->service_list(S, &list, &err), 0);
  ck_assert_uint_eq(json_array_size(list), 2);
  json_decref(list);
}
END_TEST

START_TEST(test_store_sqlite_outbox_unique)
{
  ck_assert_int_eq(vt->outbox_add(S, 1, 2, 0, "notify.sms", "{}", 0, &err),
                   0);
  ck_assert_int_eq(vt->outbox_add(S, 1, 2, 1, "notify.sms", "{}", 0, &err),
                   0);
  ck_assert_int_eq(vt->outbox_add(S, 1, 2, 0, "notify.sms", "{}", 0, &err),
                   FLOW_EIO);
}
END_TEST

static char *
temp_db(void)
{
  static char path[64];
  strcpy(path, "/tmp/flow_store_XXXXXX");
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  close(fd);
  unlink(path);
  return path;
}

static void
remove_db(const char *path)
{
  char aux[128];
  unlink(path);
  snprintf(aux, sizeof aux, "%s-wal", path);
  unlink(aux);
  snprintf(aux, sizeof aux, "%s-shm", path);
  unlink(aux);
}

START_TEST(test_store_sqlite_refuses_newer_schema)
{
  char *path = temp_db();
  flow__store_config cfg = { &A, FLOW_SYNC_FULL, 1000 };
  flow__store *s2;
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  vt->close(s2);
  sqlite3 *db;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_exec(db, "PRAGMA user_version = 99", 0, 0, 0), 0);
  sqlite3_close(db);
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), FLOW_EIO);
  ck_assert_msg(strstr(err.msg, "newer libflow") != NULL, "%s", err.msg);
  ck_assert_ptr_null(s2);
  remove_db(path);
}
END_TEST

START_TEST(test_store_sqlite_refuses_foreign_database)
{
  char *path = temp_db();
  sqlite3 *db;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE payroll(x)", 0, 0, 0), 0);
  sqlite3_close(db);
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  flow__store *s2;
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), FLOW_EIO);
  ck_assert_msg(strstr(err.msg, "did not create") != NULL, "%s", err.msg);
  /* It was not touched. */
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, 0);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
  ck_assert_int_eq(sqlite3_column_int(st, 0), 1);
  sqlite3_finalize(st);
  sqlite3_close(db);
  remove_db(path);
}
END_TEST

START_TEST(test_store_sqlite_reopens_existing)
{
  char *path = temp_db();
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  flow__store *s2;
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  flow__case_row r = sample_row(1);
  ck_assert_int_eq(vt->begin(s2, &err), 0);
  ck_assert_int_eq(vt->case_insert(s2, &r, &err), 0);
  ck_assert_int_eq(vt->commit(s2, &err), 0);
  vt->close(s2);
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  flow__case_row got;
  ck_assert_int_eq(vt->case_get(s2, 1, &got, &err), 0);
  flow__case_row_clear(&A, &got);
  vt->close(s2);
  remove_db(path);
}
END_TEST

/* Several processes open one new file at the same moment (a host and
   two `flow run`s started together): each gets a working store, and the
   schema is made once.  Repeated, since the race is one of timing. */
START_TEST(test_store_sqlite_concurrent_create)
{
  enum { PROCS = 4, ROUNDS = 25 };
  for (int round = 0; round < ROUNDS; round++) {
    char *path = temp_db();
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t pids[PROCS];
    for (int k = 0; k < PROCS; k++) {
      pids[k] = fork();
      ck_assert_int_ge(pids[k], 0);
      if (pids[k] == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) < 0)
          _exit(9);
        flow__allocator a = { flow__default_alloc, NULL };
        flow__store_config cfg = { &a, FLOW_SYNC_NORMAL, 5000 };
        flow__store *s2;
        flow__err e2;
        flow__err_clear(&e2);
        if (vt->open(&s2, path, &cfg, &e2) != 0) {
          fprintf(stderr, "process %d: %s\n", k, e2.msg);
          _exit(1);
        }
        flow__case_row r = sample_row(0);
        int64_t id;
        int rc = vt->begin(s2, &e2);
        if (rc == 0 && (rc = vt->case_next_id(s2, &id, &e2)) == 0) {
          r.id = id;
          rc = vt->case_insert(s2, &r, &e2);
        }
        if (rc == 0)
          rc = vt->commit(s2, &e2);
        if (rc != 0)
          fprintf(stderr, "process %d: %s\n", k, e2.msg);
        vt->close(s2);
        _exit(rc == 0 ? 0 : 2);
      }
    }
    close(go[0]);
    close(go[1]);
    for (int k = 0; k < PROCS; k++) {
      int status;
      ck_assert_int_eq(waitpid(pids[k], &status, 0), pids[k]);
      ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                    "round %d: process %d could not open the new file", round,
                    k);
    }
    flow__store *s2;
    flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
    ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
    flow__case_row got;
    for (int64_t id = 1; id <= PROCS; id++) {
      ck_assert_int_eq(vt->case_get(s2, id, &got, &err), 0);
      flow__case_row_clear(&A, &got);
    }
    vt->close(s2);
    remove_db(path);
  }
}
END_TEST

static Suite *
store_suite(void)
{
  Suite *s = suite_create("store_sqlite");
  TCase *tc = tcase_create("sqlite");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_store_sqlite_case_round_trip);
  tcase_add_test(tc, test_store_sqlite_rollback_discards);
  tcase_add_test(tc, test_store_sqlite_history_in_order);
  tcase_add_test(tc, test_store_sqlite_timer_claim);
  tcase_add_test(tc, test_store_sqlite_list_filters);
  tcase_add_test(tc, test_store_sqlite_services_newest);
  tcase_add_test(tc, test_store_sqlite_outbox_unique);
  tcase_add_test(tc, test_store_sqlite_refuses_newer_schema);
  tcase_add_test(tc, test_store_sqlite_refuses_foreign_database);
  tcase_add_test(tc, test_store_sqlite_reopens_existing);
  tcase_add_test(tc, test_store_sqlite_concurrent_create);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(store_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
