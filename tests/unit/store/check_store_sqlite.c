/*
 * What only the SQLite backend does: its schema, made once by whichever
 * process comes first, upgraded in place and refused when foreign or
 * newer, and its case counter.  What every backend does is in
 * check_store_conformance.c.  A counting allocator checks every test for
 * leaks.
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
                       1000, 1000, FLOW__NO_TIME, 1, 42, 0, FLOW__NO_TIME, NULL, 0 };
  return r;
}

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

static sqlite3_int64
sql_int(const char *path, const char *sql)
{
  sqlite3 *db;
  sqlite3_stmt *st;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, 0), SQLITE_OK);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
  sqlite3_int64 v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
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
  ck_assert_int_eq(vt->case_new_id(s2, &r.id, &err), 0);
  ck_assert_int_eq(r.id, 1);
  ck_assert_int_eq(vt->case_insert(s2, &r, &err), 0);
  ck_assert_int_eq(vt->commit(s2, &err), 0);
  vt->close(s2);
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  flow__case_row got;
  ck_assert_int_eq(vt->case_get(s2, 1, &got, &err), 0);
  flow__case_row_clear(&A, &got);
  vt->close(s2);
  /* A new file gets 2 KB pages (half the bytes a transition appends to
     the WAL) and is in WAL mode. */
  ck_assert_int_eq(sql_int(path, "PRAGMA page_size"), 2048);
  remove_db(path);
}
END_TEST

/* A file made with another page size keeps it (a database of an
   earlier libflow): the PRAGMA that gives a new file 2 KB pages is a
   no-op once the file has its first page. */
START_TEST(test_store_sqlite_keeps_page_size)
{
  char *path = temp_db();
  sqlite3 *db;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_exec(db,
                                "PRAGMA page_size = 4096;"
                                " PRAGMA journal_mode = WAL;"
                                " PRAGMA user_version = 0",
                                0, 0, 0),
                   SQLITE_OK);
  sqlite3_close(db);
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  flow__store *s2;
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  flow__case_row r = sample_row(1);
  ck_assert_int_eq(vt->begin(s2, &err), 0);
  ck_assert_int_eq(vt->case_new_id(s2, &r.id, &err), 0);
  ck_assert_int_eq(vt->case_insert(s2, &r, &err), 0);
  ck_assert_int_eq(vt->commit(s2, &err), 0);
  vt->close(s2);
  ck_assert_int_eq(sql_int(path, "PRAGMA page_size"), 4096);
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
        if (rc == 0 && (rc = vt->case_new_id(s2, &id, &e2)) == 0) {
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

static void
sql_exec(const char *path, const char *sql)
{
  sqlite3 *db;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_exec(db, sql, 0, 0, 0), SQLITE_OK);
  sqlite3_close(db);
}

static int64_t
open_case(flow__store *s)
{
  flow__case_row r = sample_row(0);
  ck_assert_int_eq(vt->begin(s, &err), 0);
  ck_assert_int_eq(vt->case_new_id(s, &r.id, &err), 0);
  ck_assert_int_eq(vt->case_insert(s, &r, &err), 0);
  ck_assert_int_eq(vt->commit(s, &err), 0);
  return r.id;
}

/* A deleted case's id is not handed out again (it once was: MAX(id) + 1)
   when whatever deletes it raises the counter first, as the store asks
   (opening a case does not write the counter), and a database from
   before the counter (schema 3) counts on from its highest case. */
START_TEST(test_store_sqlite_case_counter)
{
  char *path = temp_db();
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  flow__store *s2;
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  for (int64_t want = 1; want <= 3; want++)
    ck_assert_int_eq(open_case(s2), want);
  vt->close(s2);
  sql_exec(path, "UPDATE counters SET value = max(value, 3) WHERE name ="
                 " 'case'; DELETE FROM cases WHERE id = 3");
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  ck_assert_int_eq(open_case(s2), 4);
  vt->close(s2);

  /* Back to schema 3: no counter; cases up to 7. */
  /* The outbox as schema 1 made it, with one request in it. */
  sql_exec(path, "DROP TABLE counters; DROP TABLE tasks;"
                 "DROP TABLE incidents; DROP TABLE messages;"
                 "DROP TABLE correlations; DROP TABLE IF EXISTS sla_log;"
                 " DROP TABLE case_states; ALTER TABLE cases DROP COLUMN"
                 " keys;"
                 " ALTER TABLE cases DROP COLUMN sla_paused_at;"
                 " ALTER TABLE cases DROP COLUMN"
                 " tasks;"
                 "DROP TABLE outbox; CREATE TABLE outbox ("
                 "  id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL,"
                 "  seq INTEGER NOT NULL, n INTEGER NOT NULL,"
                 "  action TEXT NOT NULL, args TEXT NOT NULL,"
                 "  status TEXT NOT NULL, created_at INTEGER NOT NULL,"
                 "  UNIQUE (case_id, seq, n));"
                 "CREATE INDEX outbox_pending ON outbox(status)"
                 " WHERE status = 'pending';"
                 " INSERT INTO outbox(case_id, seq, n, action, args, status,"
                 " created_at) VALUES (2, 1, 0, 'notify.sms', '{}',"
                 " 'pending', 5);"
                 " PRAGMA user_version = 3;"
                 " UPDATE cases SET id = 7 WHERE id = 4");
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  ck_assert_int_eq(sql_int(path, "PRAGMA user_version"), 15);
  ck_assert_int_eq(open_case(s2), 8);
  vt->close(s2);
  /* The migration started the counter at the highest case; opening one
     does not write it (the table's highest id says enough). */
  ck_assert_int_eq(sql_int(path, "SELECT value FROM counters"), 7);
  /* The old request got its key and is due from when it was made. */
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM outbox WHERE key ="
                                 " '2-1-0' AND next_at = 0 AND attempts = 0"),
                   1);
  remove_db(path);
}
END_TEST

/* Moves case id from one state to another in its own transaction. */
static void
move_case(flow__store *s, int64_t id, const char *from, const char *to,
          int64_t seq)
{
  flow__case_row r = sample_row(id);
  r.state = (char *)to; /* read, never freed: sample_row borrows */
  r.seq = seq;
  ck_assert_int_eq(vt->begin(s, &err), 0);
  ck_assert_int_eq(vt->case_update(s, &r, from, &err), 0);
  ck_assert_int_eq(vt->commit(s, &err), 0);
}

static int
count_row(void *ctx, const flow__case_row *row)
{
  (void)row;
  ++*(int *)ctx;
  return 0;
}

static int
listed(flow__store *s, const char *state)
{
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.state = state;
  q.limit = 1000;
  int n = 0;
  ck_assert_int_eq(vt->case_list(s, &q, 0, count_row, &n, &err), 0);
  return n;
}

/* Where cases are (case_states) is written where they arrive; the entry
   a move leaves behind is skipped by lists and removed in batches, never
   while the case is back in that state, and a rolled-back move notes
   nothing. */
START_TEST(test_store_sqlite_case_states)
{
  char *path = temp_db();
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  flow__store *a, *b;
  ck_assert_int_eq(vt->open(&a, path, &cfg, &err), 0);
  ck_assert_int_eq(vt->open(&b, path, &cfg, &err), 0);
  for (int i = 0; i < 10; i++)
    open_case(a);
  /* A few moves: noted, not yet removed; the lists are right anyway. */
  for (int64_t id = 1; id <= 3; id++)
    move_case(a, id, "reported", "assigned", 2);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM case_states"), 13);
  ck_assert_int_eq(listed(a, "reported"), 7);
  ck_assert_int_eq(listed(b, "assigned"), 3);
  /* The other connection moves case 2 back before a's batch goes. */
  move_case(b, 2, "assigned", "reported", 3);
  ck_assert_int_eq(listed(a, "reported"), 8);
  /* A move that is rolled back notes nothing. */
  flow__case_row r = sample_row(4);
  r.state = "assigned";
  ck_assert_int_eq(vt->begin(a, &err), 0);
  ck_assert_int_eq(vt->case_update(a, &r, "reported", &err), 0);
  vt->rollback(a);
  ck_assert_int_eq(listed(a, "reported"), 8);
  ck_assert_int_eq(listed(a, "assigned"), 2);
  /* Closing a removes what it noted, except case 2's entry in reported,
     where case 2 is again. */
  vt->close(a);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM case_states WHERE"
                                 " state = 'reported'"),
                   8);
  ck_assert_int_eq(listed(b, "reported"), 8);
  /* A batch's worth of moves is removed at the commit that fills it. */
  ck_assert_int_eq(vt->open(&a, path, &cfg, &err), 0);
  for (int i = 0; i < 70; i++)
    open_case(a);
  for (int64_t id = 11; id <= 11 + 63; id++)
    move_case(a, id, "reported", "closed", 2);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM case_states WHERE"
                                 " state = 'reported' AND case_id >= 11"),
                   6);
  ck_assert_int_eq(listed(a, "closed"), 64);
  vt->close(a);
  vt->close(b);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM case_states"), 80);
  remove_db(path);
}
END_TEST

/* Indexed fields live in cases.keys: a new index fills the keys of the
   cases already there, and another connection sees the new field at its
   next transaction (so that it keeps it in the keys it writes). */
/* The entries of case_states a transaction adds go in together before
   its commit: a list by state inside the transaction sees them (more
   than one statement's worth, and a remainder), a savepoint rolled back
   takes only its own, and a transaction rolled back leaves none. */
START_TEST(test_store_sqlite_arrivals_batched)
{
  char *path = temp_db();
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  flow__store *a;
  ck_assert_int_eq(vt->open(&a, path, &cfg, &err), 0);
  ck_assert_int_eq(vt->begin(a, &err), 0);
  for (int i = 0; i < 37; i++) {
    flow__case_row r = sample_row(0);
    ck_assert_int_eq(vt->case_new_id(a, &r.id, &err), 0);
    ck_assert_int_eq(vt->case_insert(a, &r, &err), 0);
  }
  ck_assert_int_eq(listed(a, "reported"), 37);
  /* Noted before the savepoint: in before it, kept after ROLLBACK TO. */
  flow__case_row r = sample_row(0);
  ck_assert_int_eq(vt->case_new_id(a, &r.id, &err), 0);
  ck_assert_int_eq(vt->case_insert(a, &r, &err), 0);
  ck_assert_int_eq(vt->savepoint(a, &err), 0);
  for (int i = 0; i < 3; i++) {
    flow__case_row t = sample_row(0);
    ck_assert_int_eq(vt->case_new_id(a, &t.id, &err), 0);
    ck_assert_int_eq(vt->case_insert(a, &t, &err), 0);
  }
  vt->rollback_to(a);
  ck_assert_int_eq(listed(a, "reported"), 38);
  ck_assert_int_eq(vt->commit(a, &err), 0);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM case_states"), 38);
  /* A rolled-back transaction's notes never go in. */
  ck_assert_int_eq(vt->begin(a, &err), 0);
  flow__case_row u = sample_row(0);
  ck_assert_int_eq(vt->case_new_id(a, &u.id, &err), 0);
  ck_assert_int_eq(vt->case_insert(a, &u, &err), 0);
  vt->rollback(a);
  ck_assert_int_eq(open_case(a), 39);
  vt->close(a);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM case_states"), 39);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM case_states s JOIN"
                                 " cases c ON c.id = s.case_id"),
                   39);
  remove_db(path);
}
END_TEST

/* Appends history row seq of case id, with its service-level changes
   (sla, or NULL), in its own transaction. */
static void
add_history(flow__store *s, int64_t id, int64_t seq, const char *event,
            const char *sla)
{
  flow__history_row h = { id,   seq,  1000,       "{}", event,
                          "{}", NULL, "reported", sla };
  ck_assert_int_eq(vt->begin(s, &err), 0);
  ck_assert_int_eq(vt->history_append(s, &h, &err), 0);
  ck_assert_int_eq(vt->commit(s, &err), 0);
}

typedef struct seqs {
  int64_t got[8];
  int n;
} seqs;

static int
note_seq(void *ctx, const flow__history_row *row)
{
  seqs *q = ctx;
  if (q->n < 8)
    q->got[q->n++] = row->seq * 1000 + row->case_id;
  return 0;
}

/* Back from schema 15 (no task roles) and 14: the service-level log in a
   table of its own. */
#define SLA_LOG_BACK                                                           \
  "ALTER TABLE tasks DROP COLUMN roles;"                                       \
  "ALTER TABLE history DROP COLUMN sla; CREATE TABLE sla_log ("                \
  " case_id INTEGER NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL,"      \
  " change TEXT NOT NULL, at INTEGER NOT NULL, due_at INTEGER,"               \
  " detail TEXT NOT NULL, PRIMARY KEY (case_id, seq, n)) WITHOUT ROWID;"

static int
note_sla(void *ctx, int64_t seq, const char *change, int64_t at,
         int64_t due_at, const char *detail)
{
  char *buf = ctx;
  size_t len = strlen(buf);
  char due[24] = "-";
  if (due_at != FLOW__NO_TIME)
    snprintf(due, sizeof due, "%lld", (long long)due_at);
  snprintf(buf + len, 512 - len, "%lld %s %lld %s %s;", (long long)seq,
           change, (long long)at, due, detail);
  return 0;
}

/* The service-level log of case id, as "seq change at due detail;". */
static void
sla_log_is(flow__store *s, int64_t id, const char *want)
{
  char buf[512] = "";
  ck_assert_int_eq(vt->sla_log_each(s, id, note_sla, buf, &err), 0);
  ck_assert_str_eq(buf, want);
}

/* History is keyed by case_id * 2^24 + seq: each case's rows come back in
   order whatever order the cases' rows went in, a row past the most one
   case keeps is refused, and a database of schema 12 (a WITHOUT ROWID
   table keyed by (case_id, seq)) keeps every row through the upgrade. */
START_TEST(test_store_sqlite_history_key)
{
  char *path = temp_db();
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  flow__store *s2;
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  ck_assert_int_eq(open_case(s2), 1);
  ck_assert_int_eq(open_case(s2), 2);
  add_history(s2, 1, 1, "open", NULL);
  add_history(s2, 2, 1, "open",
              "[[0,\"started\",40,90,{\"within\":\"1d\"}]]");
  add_history(s2, 2, 2, "assign",
              "[[0,\"paused\",50,null,{\"reason\":\"x\"}],"
              "[1,\"resumed\",60,99,{}]]");
  add_history(s2, 1, 2, "assign", NULL);
  add_history(s2, 1, FLOW__MAX_CASE_SEQ, "last", NULL);
  flow__history_row h = { 1,    FLOW__MAX_CASE_SEQ + 1, 1000,       "{}", "x",
                          "{}", NULL,                   "reported", NULL };
  ck_assert_int_eq(vt->begin(s2, &err), 0);
  ck_assert_int_eq(vt->history_append(s2, &h, &err), FLOW_EINVAL);
  h.seq = 0;
  ck_assert_int_eq(vt->history_append(s2, &h, &err), FLOW_EINVAL);
  vt->rollback(s2);
  /* A transition's service-level changes are read from its history
     row, oldest first. */
  sla_log_is(s2, 2, "1 started 40 90 {\"within\":\"1d\"};"
                    "2 paused 50 - {\"reason\":\"x\"};2 resumed 60 99 {};");
  sla_log_is(s2, 1, "");
  seqs q = { { 0 }, 0 };
  ck_assert_int_eq(vt->history_each(s2, 1, note_seq, &q, &err), 0);
  ck_assert_int_eq(q.n, 3);
  ck_assert_int_eq(q.got[0], 1001);
  ck_assert_int_eq(q.got[1], 2001);
  ck_assert_int_eq(q.got[2], (int64_t)FLOW__MAX_CASE_SEQ * 1000 + 1);
  vt->close(s2);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM history WHERE rid ="
                                 " case_id * 16777216 + seq"),
                   5);

  /* Back to schema 12's table, rows in a different order, and schema
     13's log of service-level changes. */
  sql_exec(path, SLA_LOG_BACK);
  sql_exec(path, "INSERT INTO sla_log VALUES (1, 2, 1, 'resumed', 7, 9,"
                 " '{\"stopped_ms\":3}'), (1, 2, 0, 'paused', 6, NULL,"
                 " '{\"reason\":\"waiting\"}')");
  sql_exec(path, "DROP TABLE history; CREATE TABLE history ("
                 " case_id INTEGER NOT NULL, seq INTEGER NOT NULL, at"
                 " INTEGER NOT NULL, actor TEXT NOT NULL, event TEXT NOT"
                 " NULL, payload TEXT NOT NULL, from_state TEXT, to_state"
                 " TEXT NOT NULL, PRIMARY KEY (case_id, seq)) WITHOUT ROWID;"
                 " INSERT INTO history VALUES (2, 1, 5, '{}', 'open', '{}',"
                 " NULL, 'reported'), (1, 2, 6, '{}', 'assign', '{}',"
                 " 'reported', 'assigned'), (1, 1, 4, '{}', 'open', '{}',"
                 " NULL, 'reported'); PRAGMA user_version = 12");
  ck_assert_int_eq(vt->open(&s2, path, &cfg, &err), 0);
  ck_assert_int_eq(sql_int(path, "PRAGMA user_version"), 15);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM sqlite_master WHERE"
                                 " name = 'sla_log'"),
                   0);
  sla_log_is(s2, 1, "2 paused 6 - {\"reason\":\"waiting\"};"
                    "2 resumed 7 9 {\"stopped_ms\":3};");
  q.n = 0;
  ck_assert_int_eq(vt->history_each(s2, 1, note_seq, &q, &err), 0);
  ck_assert_int_eq(q.n, 2);
  ck_assert_int_eq(q.got[0], 1001);
  ck_assert_int_eq(q.got[1], 2001);
  q.n = 0;
  ck_assert_int_eq(vt->history_each(s2, 2, note_seq, &q, &err), 0);
  ck_assert_int_eq(q.n, 1);
  vt->close(s2);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM history WHERE rid ="
                                 " case_id * 16777216 + seq"),
                   3);
  remove_db(path);
}
END_TEST

/* Takes the file back to an older schema's index of uprn (down), opens
   it, and checks that the upgrade left the field's own column and index
   in place of the old index, with case 1's value in it. */
static void
upgrade_field_index(const char *path, const char *down, const char *old)
{
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  flow__store *a;
  char sql[128];
  sql_exec(path, SLA_LOG_BACK);
  sql_exec(path, down);
  ck_assert_int_eq(vt->open(&a, path, &cfg, &err), 0);
  vt->close(a);
  ck_assert_int_eq(sql_int(path, "PRAGMA user_version"), 15);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM sqlite_master WHERE"
                                 " name = 'cases_k_uprn'"),
                   1);
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM sqlite_master WHERE name = '%s'", old);
  ck_assert_int_eq(sql_int(path, sql), 0);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM cases WHERE k_uprn ="
                                 " '1000'"),
                   1);
}

START_TEST(test_store_sqlite_key_fields)
{
  char *path = temp_db();
  flow__store_config cfg = { &A, FLOW_SYNC_NORMAL, 1000 };
  flow__store *a, *b;
  ck_assert_int_eq(vt->open(&a, path, &cfg, &err), 0);
  ck_assert_int_eq(vt->open(&b, path, &cfg, &err), 0);
  open_case(a); /* data {"bin":"refuse","uprn":"1000"} */
  const char *const *names;
  size_t n;
  ck_assert_int_eq(vt->begin(a, &err), 0);
  ck_assert_int_eq(vt->key_fields(a, &names, &n, &err), 0);
  ck_assert_uint_eq(n, 0);
  vt->rollback(a);
  ck_assert_int_eq(vt->begin(b, &err), 0);
  ck_assert_int_eq(vt->index_field(b, "uprn", &err), 0);
  ck_assert_int_eq(vt->commit(b, &err), 0);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM cases WHERE keys ="
                                 " '{\"uprn\":\"1000\"}' AND k_uprn ="
                                 " '1000'"),
                   1);
  ck_assert_int_eq(vt->begin(a, &err), 0);
  ck_assert_int_eq(vt->key_fields(a, &names, &n, &err), 0);
  ck_assert_uint_eq(n, 1);
  ck_assert_str_eq(names[0], "uprn");
  vt->rollback(a);
  /* A list by the field reads its column, through the index. */
  flow_where w = { "uprn", "\"1000\"" };
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.where = &w;
  q.nwhere = 1;
  int found = 0;
  ck_assert_int_eq(vt->case_list(a, &q, 0, count_row, &found, &err), 0);
  ck_assert_int_eq(found, 1);
  /* New keys reach the column; a case without keys has none there. */
  flow__case_row r = sample_row(1);
  r.seq = 2;
  r.keys = "{\"uprn\":\"2000\"}";
  r.keys_changed = 1;
  ck_assert_int_eq(vt->begin(a, &err), 0);
  ck_assert_int_eq(vt->case_update(a, &r, "reported", &err), 0);
  ck_assert_int_eq(vt->commit(a, &err), 0);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM cases WHERE k_uprn ="
                                 " '2000'"),
                   1);
  r.seq = 3;
  r.keys = NULL;
  ck_assert_int_eq(vt->begin(a, &err), 0);
  ck_assert_int_eq(vt->case_update(a, &r, "reported", &err), 0);
  ck_assert_int_eq(vt->commit(a, &err), 0);
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM cases WHERE k_uprn"
                                 " IS NULL AND keys IS NULL"),
                   1);
  found = 0;
  ck_assert_int_eq(vt->case_list(a, &q, 0, count_row, &found, &err), 0);
  ck_assert_int_eq(found, 0);
  flow_where wnull = { "uprn", "null" };
  q.where = &wnull;
  ck_assert_int_eq(vt->case_list(a, &q, 0, count_row, &found, &err), 0);
  ck_assert_int_eq(found, 1);
  r.seq = 4;
  r.keys = "{\"uprn\":\"1000\"}";
  ck_assert_int_eq(vt->begin(a, &err), 0);
  ck_assert_int_eq(vt->case_update(a, &r, "reported", &err), 0);
  ck_assert_int_eq(vt->commit(a, &err), 0);
  vt->close(a);
  vt->close(b);

  /* Schema 11 indexed json_extract(keys, ...): the upgrade gives the field
     its column, filled in, and the column its index. */
  upgrade_field_index(path,
                      "DROP INDEX cases_k_uprn; ALTER TABLE cases DROP"
                      " COLUMN k_uprn; CREATE INDEX cases_key_uprn ON"
                      " cases(json_extract(keys, '$.uprn'));"
                      " PRAGMA user_version = 11",
                      "cases_key_uprn");

  /* A database of schema 10 had its indexes over data: the upgrade makes
     them indexes of the fields' columns, with every case's keys filled
     in. */
  upgrade_field_index(path,
                      "DROP INDEX cases_k_uprn; ALTER TABLE cases DROP"
                      " COLUMN k_uprn; ALTER TABLE cases DROP COLUMN keys;"
                      " CREATE INDEX cases_data_uprn ON"
                      " cases(json_extract(data, '$.uprn'));"
                      " PRAGMA user_version = 10",
                      "cases_data_uprn");
  ck_assert_int_eq(sql_int(path, "SELECT count(*) FROM cases WHERE keys ="
                                 " '{\"uprn\":\"1000\"}'"),
                   1);
  remove_db(path);
}
END_TEST

static Suite *
store_suite(void)
{
  Suite *s = suite_create("store_sqlite");
  TCase *tc = tcase_create("sqlite");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_store_sqlite_refuses_newer_schema);
  tcase_add_test(tc, test_store_sqlite_refuses_foreign_database);
  tcase_add_test(tc, test_store_sqlite_reopens_existing);
  tcase_add_test(tc, test_store_sqlite_keeps_page_size);
  tcase_add_test(tc, test_store_sqlite_concurrent_create);
  tcase_add_test(tc, test_store_sqlite_case_counter);
  tcase_add_test(tc, test_store_sqlite_arrivals_batched);
  tcase_add_test(tc, test_store_sqlite_case_states);
  tcase_add_test(tc, test_store_sqlite_key_fields);
  tcase_add_test(tc, test_store_sqlite_history_key);
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
