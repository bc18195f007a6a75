/*
 * The SQLite storage backend: one database file in WAL mode, every
 * statement prepared once when the store opens (the schema and its
 * migrations are in store_sqlite_schema.c, where cases are and their
 * indexed fields in store_sqlite_index.c, tasks, incidents and messages
 * in store_sqlite_work.c).
 *
 * Times are INTEGER milliseconds since the epoch, case data is compact JSON
 * text with sorted keys (so json_extract() works on it; an indexed field
 * is copied into a column of its own, store_sqlite_index.c).  Case ids come from the highest id in cases and a counter row
 * (counters.name = 'case') that whatever deletes cases raises first,
 * read at the first new id of a transaction, so a transition knows its
 * case id before it writes anything and an id is never handed out twice,
 * even after its case is deleted (load_counter).  BEGIN IMMEDIATE takes the database's one write lock, which is
 * how this backend keeps the interface's row locks (case_lock,
 * timer_claim): no other connection writes until this one commits.
 */
#include "store/store_sqlite_int.h"

#include <stdio.h>
#include <string.h>

enum {
  ST_SERVICE_GET,
  ST_SERVICE_NEWEST,
  ST_SERVICE_PUT,
  ST_SERVICE_NEWEST_VERSION,
  ST_SERVICE_LIST,
  ST_COUNTER_GET,
  ST_CASE_GET,
  ST_CASE_INSERT,
  ST_CASE_UPDATE,
  ST_CASE_MOVE,
  ST_CASE_UPDATE_DATA,
  ST_HISTORY_APPEND,
  ST_HISTORY_EACH,
  ST_OUTBOX_ADD,
  ST_OUTBOX_DUE,
  ST_OUTBOX_EXPIRED,
  ST_OUTBOX_TAKE,
  ST_OUTBOX_GET,
  ST_OUTBOX_SETTLE,
  ST_OUTBOX_NEXT_DUE,
  ST_OUTBOX_LIST,
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_SAVEPOINT,
  ST_RELEASE,
  ST_ROLLBACK_TO,
  ST_TIMER_INSERT,
  ST_TIMER_CLAIM,
  ST_TIMER_REAP,
  ST_TIMER_SWEEP_CASE,
  ST_TIMER_INCIDENT,
  ST_TIMER_NEXT_DUE,
  ST_TIMER_DUE,
  ST_TIMER_LIST,
  ST_DATA_VERSION,
  ST_COUNT
};

/*
 * Whether a pending timer (the row `timers` of the statement) is live.
 * Leaving a state or closing the case does not delete timers: the case
 * row, written by the transition anyway, records it (closed, state,
 * entered_seq), and a timer is dead when its case is closed, or when it
 * belongs to a state the case is no longer in, or entered again after the
 * timer was set.  Dead rows are deleted later in batches (timer_sweep_*);
 * every query that would fire or show a timer looks at LIVE first.
 */
#define LIVE                                                                   \
  "EXISTS (SELECT 1 FROM cases c WHERE c.id = timers.case_id"                  \
  " AND c.closed = 0 AND (timers.state IS NULL OR (timers.state = c.state"     \
  " AND timers.set_seq >= c.entered_seq)))"

/* A new case row; a case with indexed fields also gives their columns
   (flow__sq_keys_insert). */
#define CASE_COLS                                                              \
  "id, service, version, state, closed, data, opened_at, updated_at,"          \
  " due_at, seq, seed, entered_seq, tasks, keys"
#define CASE_VALUES                                                            \
  "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10, ?12, ?13"

/* A request row, as read_request() takes it. */
#define REQUEST_COLS                                                           \
  "id, case_id, seq, n, action, args, key, reply, fail, retry_max,"           \
  " backoff_ms, timeout_ms, status, attempts, created_at, next_at,"           \
  " lease_until, error, result, finished_at"

static const char *const stmt_sql[ST_COUNT] = {
  [ST_SERVICE_GET] = "SELECT name, version, title, source, sha256, chunkname,"
                     " loaded_at FROM services WHERE name = ?1 AND"
                     " version = ?2",
  [ST_SERVICE_NEWEST] = "SELECT name, version, title, source, sha256,"
                        " chunkname, loaded_at FROM services WHERE name = ?1"
                        " ORDER BY version DESC LIMIT 1",
  [ST_SERVICE_PUT] = "INSERT INTO services(name, version, title, source,"
                     " sha256, chunkname, loaded_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
  [ST_SERVICE_NEWEST_VERSION] = "SELECT max(version) FROM services WHERE"
                                " name = ?1",
  [ST_SERVICE_LIST] = "SELECT name, version, title, sha256, loaded_at"
                      " FROM services ORDER BY name, version",
  [ST_COUNTER_GET] = "SELECT max(value, (SELECT COALESCE(max(id), 0) FROM"
                     " cases)) FROM counters WHERE name = ?1",
  [ST_CASE_GET] = "SELECT id, service, version, state, closed, data,"
                  " opened_at, updated_at, due_at, seq, seed, tasks,"
                  " sla_paused_at, keys FROM cases WHERE id = ?1",
  [ST_CASE_INSERT] = "INSERT INTO cases(" CASE_COLS ") VALUES ("
                     CASE_VALUES ")",
  /* Moving to another state records when it was entered: the state's
     timers set before that are dead (see LIVE).  keys has no index of
     its own (each field's column has), so assigning it unchanged costs
     nothing more. */
  [ST_CASE_UPDATE] = "UPDATE cases SET state = ?2, closed = ?3, data = ?4,"
                     " updated_at = ?5, seq = ?7, entered_seq = ?7,"
                     " tasks = ?8, keys = ?9 WHERE id = ?1",
  /* The same for a move that does not close the case: closed stays 0,
     and a column left out of SET is one SQLite knows unchanged, so the
     partial cases_due (which reads closed) is not rewritten. */
  [ST_CASE_MOVE] = "UPDATE cases SET state = ?2, data = ?4, updated_at = ?5,"
                   " seq = ?7, entered_seq = ?7, tasks = ?8, keys = ?9"
                   " WHERE id = ?1",
  [ST_CASE_UPDATE_DATA] = "UPDATE cases SET data = ?4, updated_at = ?5,"
                          " seq = ?7, tasks = ?8, keys = ?9 WHERE id = ?1",
  /* A case's history rows are keyed by HISTORY_KEY: in (case_id, seq)
     order, like the key they replace, but in a rowid table, where a row
     appended at the end of the b-tree starts a new page instead of
     sharing the last ones out again. */
  [ST_HISTORY_APPEND] = "INSERT INTO history(rid, case_id, seq, at, actor,"
                        " event, payload, from_state, to_state, sla)"
                        " VALUES (" FLOW__SQ_HISTORY_KEY("?1", "?2")
                        ", ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
  [ST_HISTORY_EACH] = "SELECT case_id, seq, at, actor, event, payload,"
                      " from_state, to_state FROM history WHERE rid BETWEEN"
                      " " FLOW__SQ_HISTORY_KEY("?1", "1") " AND "
                      FLOW__SQ_HISTORY_KEY("?1", "16777215") " ORDER BY rid",
  [ST_OUTBOX_ADD] = "INSERT INTO outbox(case_id, seq, n, action, args,"
                    " status, created_at, next_at, key, reply, fail,"
                    " retry_max, backoff_ms, timeout_ms) VALUES (?1, ?2,"
                    " ?3, ?4, ?5, 'pending', ?6, ?6, ?7, ?8, ?9, ?10, ?11,"
                    " ?12)",
  [ST_BEGIN] = "BEGIN IMMEDIATE",
  [ST_COMMIT] = "COMMIT",
  [ST_ROLLBACK] = "ROLLBACK",
  [ST_SAVEPOINT] = "SAVEPOINT flow_call",
  [ST_RELEASE] = "RELEASE flow_call",
  [ST_ROLLBACK_TO] = "ROLLBACK TO flow_call",
  [ST_TIMER_INSERT] = "INSERT INTO timers(case_id, due_at, kind, event,"
                      " payload, target, state, set_seq) VALUES (?1, ?2, ?3,"
                      " ?4, ?5, ?6, ?7, ?8)",
  /* A claim or an incident takes effect only on a timer still pending
     and live (sqlite3_changes() says whether it did). */
  [ST_TIMER_CLAIM] = "DELETE FROM timers WHERE id = ?1 AND status ="
                     " 'pending' AND " LIVE,
  [ST_TIMER_REAP] = "DELETE FROM timers WHERE id = ?1 AND status ="
                    " 'pending'",
  /* SWEEP_PER_STATEMENT (64) cases in one statement; unused slots stay
     NULL, which matches nothing. */
  [ST_TIMER_SWEEP_CASE] =
      "DELETE FROM timers WHERE case_id IN ("
      "?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,"
      "?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30,?31,?32,"
      "?33,?34,?35,?36,?37,?38,?39,?40,?41,?42,?43,?44,?45,?46,?47,?48,"
      "?49,?50,?51,?52,?53,?54,?55,?56,?57,?58,?59,?60,?61,?62,?63,?64"
      ") AND status IN ('pending', 'paused') AND NOT " LIVE,
  [ST_TIMER_INCIDENT] = "UPDATE timers SET status = 'incident', error = ?2"
                        " WHERE id = ?1 AND status = 'pending' AND " LIVE,
  [ST_TIMER_NEXT_DUE] = "SELECT due_at FROM timers WHERE status = 'pending'"
                        " AND " LIVE " ORDER BY due_at LIMIT 1",
  /* Live or not: timer_claim decides, and removes the dead. */
  [ST_TIMER_DUE] = "SELECT id, case_id, due_at, kind, event, payload, target,"
                   " state, status, error FROM timers WHERE status ="
                   " 'pending' AND due_at <= ?1"
                   " ORDER BY due_at, id LIMIT ?2",
  [ST_TIMER_LIST] = "SELECT id, case_id, due_at, kind, event, payload,"
                    " target, state, status, error FROM timers WHERE"
                    " case_id = ?1 AND (status <> 'pending' OR " LIVE ")"
                    " ORDER BY due_at, id",
  /* Changes when another connection commits (not this one). */
  [ST_DATA_VERSION] = "PRAGMA data_version",
  [ST_OUTBOX_DUE] = "SELECT " REQUEST_COLS " FROM outbox WHERE action = ?1"
                    " AND status = 'pending' AND lease_until IS NULL AND"
                    " next_at <= ?2 ORDER BY next_at, id LIMIT ?3",
  [ST_OUTBOX_EXPIRED] = "SELECT " REQUEST_COLS " FROM outbox WHERE"
                        " action = ?1 AND status = 'pending' AND"
                        " lease_until IS NOT NULL AND lease_until <= ?2"
                        " ORDER BY lease_until, id LIMIT ?3",
  [ST_OUTBOX_TAKE] = "UPDATE outbox SET attempts = attempts + 1,"
                     " lease_until = ?3 WHERE id = ?1 AND status ="
                     " 'pending' AND attempts = ?2",
  [ST_OUTBOX_GET] = "SELECT " REQUEST_COLS " FROM outbox WHERE id = ?1",
  [ST_OUTBOX_SETTLE] = "UPDATE outbox SET status = ?3, next_at = ?4,"
                       " lease_until = NULL, error = ?5, result = ?6,"
                       " finished_at = CASE WHEN ?3 = 'pending' THEN NULL"
                       " ELSE ?7 END WHERE id = ?1 AND status = 'pending'"
                       " AND attempts = ?2",
  /* min() of two values is NULL if either is: none is INT64_MAX. */
  [ST_OUTBOX_NEXT_DUE] = "SELECT MIN(COALESCE((SELECT MIN(next_at) FROM"
                         " outbox WHERE action = ?1 AND status = 'pending'"
                         " AND lease_until IS NULL), 9223372036854775807),"
                         " COALESCE((SELECT MIN(lease_until) FROM outbox"
                         " WHERE action = ?1 AND status = 'pending' AND"
                         " lease_until IS NOT NULL), 9223372036854775807))",
  [ST_OUTBOX_LIST] = "SELECT " REQUEST_COLS " FROM outbox WHERE"
                     " (?1 = 0 OR case_id = ?1) AND (?2 IS NULL OR"
                     " status = ?2) ORDER BY id LIMIT ?3",
};

/* The number of ?N in ST_TIMER_SWEEP_CASE. */
#define SWEEP_PER_STATEMENT 64


struct flow__store {
  const flow__allocator *a;
  sqlite3 *db;
  int busy_ms;       /* how long to wait for another connection's lock */
  sqlite3_stmt *st[ST_COUNT];
  sqlite3_stmt *wst[FLOW__SQ_WORK_STMTS]; /* store_sqlite_work.c's */
  int in_txn;
  /* The case counter inside a transaction: last id handed out, and
     whether it was read (case_loaded). */
  int64_t case_last;
  int case_loaded;
  flow__sq_places places; /* store_sqlite_index.c's */
  /* The same at each open savepoint (group commit's per call, and one
     inside it around a transition that opens other cases). */
  int sp_depth;
  int64_t sp_case_last[FLOW__SQ_SAVEPOINTS];
  int sp_case_loaded[FLOW__SQ_SAVEPOINTS];
  /* The last PRAGMA data_version seen; known says whether there is one. */
  int64_t data_version;
  int data_version_known;
};

/* Copies SQLite's message now: the next call overwrites it. */
int
flow__sq_fail(flow__store *s, flow__err *err, int rc, const char *what)
{
  int code = FLOW_EIO;
  int prim = rc & 0xff;
  if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
    code = FLOW_EBUSY;
  else if (prim == SQLITE_NOMEM)
    code = FLOW_ENOMEM;
  const char *msg = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
  if (prim == SQLITE_FULL)
    msg = "the disk is full";
  return flow__err_set(err, code, "storage: %s failed: %s", what, msg);
}

static void
sqlite_close(flow__store *s)
{
  if (s == NULL)
    return;
  flow__sq_places_close(s);
  for (int i = 0; i < ST_COUNT; i++)
    sqlite3_finalize(s->st[i]);
  for (int i = 0; i < FLOW__SQ_WORK_STMTS; i++)
    sqlite3_finalize(s->wst[i]);
  sqlite3_close_v2(s->db);
  flow__free(s->a, s);
}

static int
sqlite_open(flow__store **out, const char *path, const flow__store_config *cfg,
            flow__err *err)
{
  *out = NULL;
  flow__store *s = flow__calloc(cfg->alloc, 1, sizeof *s);
  if (s == NULL)
    return flow__err_set(err, FLOW_ENOMEM, "out of memory opening %s", path);
  s->a = cfg->alloc;
  s->places.keys_schema = -1;
  int rc = sqlite3_open_v2(path, &s->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_NOMUTEX,
                           NULL);
  if (rc != SQLITE_OK) {
    flow__err_set(err, rc == SQLITE_NOMEM ? FLOW_ENOMEM : FLOW_EIO,
                  "cannot open database %s: %s", path,
                  s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_extended_result_codes(s->db, 1);
  sqlite3_busy_timeout(s->db, cfg->busy_timeout_ms);
  s->busy_ms = cfg->busy_timeout_ms;
  const char *sync = cfg->synchronous == FLOW_SYNC_FULL  ? "FULL"
                     : cfg->synchronous == FLOW_SYNC_OFF ? "OFF"
                                                         : "NORMAL";
  /* temp_store = MEMORY: the savepoint journal of a group commit would
     otherwise spill to a temporary file (measured: 53 KB written per
     transition instead of 1.3 KB in async mode).
     page_size takes effect only on a new, empty file (an existing one
     keeps its own).  A transition changes a few rows in three b-trees
     (the case, its history, where it is by state), and WAL appends each
     changed page whole: 2 KB pages write half the bytes of SQLite's
     default 4 KB (bench_bins sync_minimal: 16.2 KB a transition at
     4 KB, 9.4 KB at 2 KB; 0.44-0.45 of the physical limit's rate at 4 KB,
     0.50-0.55 at 2 KB).  Smaller still (1 KB) writes less again but
     leaves a row of more than about 230 bytes in history (a WITHOUT
     ROWID b-tree) spilling onto overflow pages: 2 KB keeps rows of up to
     488 bytes there, and case rows of up to 2 KB, in one page. */
  char pragmas[256];
  snprintf(pragmas, sizeof pragmas,
           "PRAGMA page_size = " FLOW__SQ_PAGE_SIZE ";"
           " PRAGMA journal_mode = WAL; PRAGMA synchronous = %s;"
           " PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
           sync);
  rc = flow__sq_exec_busy(s, pragmas);
  if (rc != SQLITE_OK) {
    if ((rc & 0xff) == SQLITE_NOTADB)
      flow__err_set(err, FLOW_EIO,
                    "%s is not a database (give libflow a new file name)", path);
    else
      flow__sq_fail(s, err, rc, "opening the database");
    goto fail;
  }
  if ((rc = flow__sq_migrate(s, path, err)) != 0)
    goto fail;
  for (int i = 0; i < ST_COUNT; i++) {
    rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                            &s->st[i], NULL);
    if (rc != SQLITE_OK) {
      flow__sq_fail(s, err, rc, "preparing statements");
      goto fail;
    }
  }
  *out = s;
  return 0;
fail:
  rc = err->code;
  sqlite_close(s);
  return rc;
}

/* Runs a statement that returns no rows. */
int
flow__sq_done(flow__store *s, sqlite3_stmt *st, flow__err *err, const char *what)
{
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE)
    return flow__sq_fail(s, err, rc, what);
  return 0;
}

static int
sqlite_begin(flow__store *s, flow__err *err)
{
  int rc = flow__sq_done(s, s->st[ST_BEGIN], err, "starting a transaction");
  if (rc == 0) {
    s->in_txn = 1;
    s->sp_depth = 0;
    flow__sq_places_begin(s);
  }
  return rc;
}

static int
sqlite_commit(flow__store *s, flow__err *err)
{
  int rc = flow__sq_places_precommit(s, err);
  if (rc == 0)
    rc = flow__sq_done(s, s->st[ST_COMMIT], err, "commit");
  s->case_loaded = 0;
  if (rc != 0) {
    /* A failed COMMIT may leave the transaction open: end it so the
       database is exactly as before. */
    if (!sqlite3_get_autocommit(s->db))
      sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    flow__sq_places_rollback(s);
  }
  s->in_txn = 0;
  s->sp_depth = 0;
  return rc;
}

static void
sqlite_rollback(flow__store *s)
{
  if (!sqlite3_get_autocommit(s->db)) {
    sqlite3_step(s->st[ST_ROLLBACK]);
    sqlite3_reset(s->st[ST_ROLLBACK]);
  }
  s->in_txn = 0;
  s->sp_depth = 0;
  s->case_loaded = 0;
  flow__sq_places_rollback(s);
}

static char *
col_dup(flow__store *s, sqlite3_stmt *st, int col, size_t *len, int *oom)
{
  if (sqlite3_column_type(st, col) == SQLITE_NULL)
    return NULL;
  const char *t = (const char *)sqlite3_column_text(st, col);
  size_t n = (size_t)sqlite3_column_bytes(st, col);
  if (t == NULL) {
    *oom = 1;
    return NULL;
  }
  char *d = flow__strndup(s->a, t, n);
  if (d == NULL)
    *oom = 1;
  if (len)
    *len = n;
  return d;
}

static int
sqlite_service_get(flow__store *s, const char *name, int64_t version,
                   flow__service_row *out, flow__err *err)
{
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[version ? ST_SERVICE_GET : ST_SERVICE_NEWEST];
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  if (version)
    sqlite3_bind_int64(st, 2, version);
  int rc = sqlite3_step(st);
  int ret = 0, oom = 0;
  if (rc == SQLITE_ROW) {
    out->name = col_dup(s, st, 0, NULL, &oom);
    out->version = sqlite3_column_int64(st, 1);
    out->title = col_dup(s, st, 2, NULL, &oom);
    out->source = col_dup(s, st, 3, &out->source_len, &oom);
    out->sha256 = col_dup(s, st, 4, NULL, &oom);
    out->chunkname = col_dup(s, st, 5, NULL, &oom);
    out->loaded_at = sqlite3_column_int64(st, 6);
    if (oom) {
      flow__service_row_clear(s->a, out);
      ret = flow__err_set(err, FLOW_ENOMEM, "out of memory reading service");
    }
  } else if (rc == SQLITE_DONE) {
    if (version)
      ret = flow__err_set(err, FLOW_ENOTFOUND,
                          "service %s version %lld is not loaded", name,
                          (long long)version);
    else
      ret = flow__err_set(err, FLOW_ENOTFOUND,
                          "no service named '%s' is loaded (load its script "
                          "first: flow load %s.lua)",
                          name, name);
  } else {
    ret = flow__sq_fail(s, err, rc, "reading a service");
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return ret;
}

static int
sqlite_service_put(flow__store *s, const flow__service_row *row,
                   flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_SERVICE_PUT];
  sqlite3_bind_text(st, 1, row->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, row->version);
  if (row->title)
    sqlite3_bind_text(st, 3, row->title, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, row->source, (int)row->source_len, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, row->sha256, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, row->chunkname, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 7, row->loaded_at);
  return flow__sq_done(s, st, err, "storing a service");
}

static int
sqlite_service_newest(flow__store *s, const char *name, int64_t *version,
                      flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_SERVICE_NEWEST_VERSION];
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st), ret = 0;
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    *version = sqlite3_column_int64(st, 0);
  else if (rc == SQLITE_ROW)
    ret = flow__err_set(err, FLOW_ENOTFOUND,
                        "no service named '%s' is loaded (load its script "
                        "first: flow load %s.lua)",
                        name, name);
  else
    ret = flow__sq_fail(s, err, rc, "finding a service");
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return ret;
}

static int
sqlite_service_list(flow__store *s, json_t **out, flow__err *err)
{
  json_t *arr = json_array();
  if (arr == NULL)
    return flow__err_set(err, FLOW_ENOMEM, "out of memory listing services");
  sqlite3_stmt *st = s->st[ST_SERVICE_LIST];
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    char at[32];
    flow__time_format(at, sizeof at, sqlite3_column_int64(st, 4));
    json_t *o = json_pack(
        "{s:s, s:I, s:s?, s:s, s:s}", "name",
        (const char *)sqlite3_column_text(st, 0), "version",
        (json_int_t)sqlite3_column_int64(st, 1), "title",
        (const char *)sqlite3_column_text(st, 2), "sha256",
        (const char *)sqlite3_column_text(st, 3), "loaded_at", at);
    if (o == NULL || json_array_append_new(arr, o) != 0) {
      sqlite3_reset(st);
      json_decref(arr);
      return flow__err_set(err, FLOW_ENOMEM, "out of memory listing services");
    }
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    json_decref(arr);
    return flow__sq_fail(s, err, rc, "listing services");
  }
  *out = arr;
  return 0;
}

/*
 * The last case id handed out, read once per transaction: the larger of
 * the highest id in cases and the counter row.  Inserting a case does not
 * write the counter (one page less in every commit that opens a case):
 * the highest id is the table's last row, one step down the b-tree.  So
 * anything that deletes cases must first raise counters.case to the
 * highest id it deletes, or an id could be given a second time.
 */
static int
load_counter(flow__store *s, flow__err *err)
{
  if (s->case_loaded)
    return 0;
  sqlite3_stmt *st = s->st[ST_COUNTER_GET];
  sqlite3_bind_text(st, 1, "case", -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    s->case_last = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  if (rc != SQLITE_ROW)
    return rc == SQLITE_DONE ? flow__err_set(err, FLOW_EIO,
                                             "storage: the case counter is "
                                             "missing")
                             : flow__sq_fail(s, err, rc, "allocating a case id");
  s->case_loaded = 1;
  return 0;
}

/* The next id after the highest ever inserted.  Only an insert moves the
   counter on, so an id handed out for an opening that was refused before
   it wrote anything is handed out again: refusals leave no gaps. */
static int
sqlite_case_new_id(flow__store *s, int64_t *out, flow__err *err)
{
  if (!s->in_txn)
    return flow__err_set(err, FLOW_EMISUSE,
                         "storage: a case id outside a transaction");
  int rc = load_counter(s, err);
  if (rc != 0)
    return rc;
  if (s->case_last == INT64_MAX)
    return flow__err_set(err, FLOW_EIO, "storage: no case ids are left");
  *out = s->case_last + 1;
  return 0;
}

static int
read_case(flow__store *s, sqlite3_stmt *st, flow__case_row *out)
{
  int oom = 0;
  out->id = sqlite3_column_int64(st, 0);
  out->service = col_dup(s, st, 1, NULL, &oom);
  out->version = sqlite3_column_int64(st, 2);
  out->state = col_dup(s, st, 3, NULL, &oom);
  out->closed = sqlite3_column_int(st, 4);
  out->data = col_dup(s, st, 5, NULL, &oom);
  out->opened_at = sqlite3_column_int64(st, 6);
  out->updated_at = sqlite3_column_int64(st, 7);
  out->due_at = sqlite3_column_type(st, 8) == SQLITE_NULL
                    ? FLOW__NO_TIME
                    : sqlite3_column_int64(st, 8);
  out->seq = sqlite3_column_int64(st, 9);
  out->seed = sqlite3_column_int64(st, 10);
  out->has_tasks = sqlite3_column_int(st, 11);
  out->paused_at = sqlite3_column_type(st, 12) == SQLITE_NULL
                       ? FLOW__NO_TIME
                       : sqlite3_column_int64(st, 12);
  out->keys = sqlite3_column_count(st) > 13 ? col_dup(s, st, 13, NULL, &oom)
                                            : NULL;
  out->keys_changed = 0;
  if (oom) {
    flow__case_row_clear(s->a, out);
    return FLOW_ENOMEM;
  }
  return 0;
}

static int
sqlite_case_get(flow__store *s, int64_t id, flow__case_row *out,
                flow__err *err)
{
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_CASE_GET];
  sqlite3_bind_int64(st, 1, id);
  int rc = sqlite3_step(st), ret = 0;
  if (rc == SQLITE_ROW) {
    if (read_case(s, st, out) != 0)
      ret = flow__err_set(err, FLOW_ENOMEM, "out of memory reading case %lld",
                          (long long)id);
  } else if (rc == SQLITE_DONE) {
    ret = flow__err_set(err, FLOW_ENOTFOUND, "there is no case %lld",
                        (long long)id);
  } else {
    ret = flow__sq_fail(s, err, rc, "reading a case");
  }
  sqlite3_reset(st);
  return ret;
}

/* BEGIN IMMEDIATE already holds the whole database for this connection:
   the row is locked from the read until the transaction ends. */
static int
sqlite_case_lock(flow__store *s, int64_t id, flow__case_row *out,
                 flow__err *err)
{
  if (!s->in_txn) {
    memset(out, 0, sizeof *out);
    return flow__err_set(err, FLOW_EMISUSE,
                         "storage: a case locked outside a transaction");
  }
  return sqlite_case_get(s, id, out, err);
}

static void
bind_case(sqlite3_stmt *st, const flow__case_row *row, int insert)
{
  sqlite3_bind_int64(st, 1, row->id);
  if (insert) {
    sqlite3_bind_text(st, 2, row->service, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, row->version);
    sqlite3_bind_text(st, 4, row->state, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, row->closed);
    sqlite3_bind_text(st, 6, row->data, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, row->opened_at);
    sqlite3_bind_int64(st, 8, row->updated_at);
    if (row->due_at != FLOW__NO_TIME)
      sqlite3_bind_int64(st, 9, row->due_at);
    sqlite3_bind_int64(st, 10, row->seq);
    sqlite3_bind_int64(st, 11, row->seed);
    sqlite3_bind_int(st, 12, row->has_tasks);
    if (row->keys)
      sqlite3_bind_text(st, 13, row->keys, -1, SQLITE_STATIC);
  } else {
    sqlite3_bind_text(st, 2, row->state, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, row->closed);
    sqlite3_bind_text(st, 4, row->data, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, row->updated_at);
    if (row->due_at != FLOW__NO_TIME)
      sqlite3_bind_int64(st, 6, row->due_at);
    sqlite3_bind_int64(st, 7, row->seq);
    sqlite3_bind_int(st, 8, row->has_tasks);
    if (row->keys)
      sqlite3_bind_text(st, 9, row->keys, -1, SQLITE_STATIC);
  }
}

static int
sqlite_case_insert(flow__store *s, const flow__case_row *row, flow__err *err)
{
  int rc = load_counter(s, err);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = s->st[ST_CASE_INSERT];
  if (row->keys &&
      (st = flow__sq_keys_insert(s, CASE_COLS, CASE_VALUES, err)) == NULL)
    return err->code;
  bind_case(st, row, 1);
  rc = flow__sq_done(s, st, err, "writing a new case");
  if (rc == 0 && row->id > s->case_last) {
    s->case_last = row->id; /* the table says so now: no counter write */
  }
  if (rc == 0)
    rc = flow__sq_state_add(s, row->id, row->state, err);
  return rc;
}

static int
sqlite_case_update(flow__store *s, const flow__case_row *row,
                   const char *from, flow__err *err)
{
  sqlite3_stmt *st = s->st[from == NULL  ? ST_CASE_UPDATE_DATA
                           : row->closed ? ST_CASE_UPDATE
                                         : ST_CASE_MOVE];
  bind_case(st, row, 0);
  int rc = flow__sq_done(s, st, err, "updating a case");
  if (rc == 0 && sqlite3_changes(s->db) != 1)
    return flow__err_set(err, FLOW_ENOTFOUND, "case %lld disappeared",
                         (long long)row->id);
  if (rc == 0 && row->keys_changed)
    rc = flow__sq_keys_write(s, row->id, row->keys_changed, err);
  if (rc == 0 && from != NULL && strcmp(from, row->state) != 0)
    rc = flow__sq_state_moved(s, row->id, from, row->state, err);
  return rc;
}

/* Binds a JSON scalar for comparison with json_extract(): the value itself
   and its text form, so --where uprn=1000 finds "1000" too. */
static int
bind_where(sqlite3_stmt *st, int idx, const char *value_json,
           char *textbuf, size_t textlen)
{
  json_error_t jerr;
  json_t *v = json_loads(value_json, JSON_DECODE_ANY, &jerr);
  if (v == NULL)
    return FLOW_EINVAL;
  int ret = 0;
  switch (json_typeof(v)) {
  case JSON_STRING:
    sqlite3_bind_text(st, idx, json_string_value(v), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, idx + 1, json_string_value(v), -1,
                      SQLITE_TRANSIENT);
    break;
  case JSON_INTEGER:
    sqlite3_bind_int64(st, idx, json_integer_value(v));
    snprintf(textbuf, textlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    sqlite3_bind_text(st, idx + 1, textbuf, -1, SQLITE_TRANSIENT);
    break;
  case JSON_REAL:
    sqlite3_bind_double(st, idx, json_real_value(v));
    snprintf(textbuf, textlen, "%.17g", json_real_value(v));
    for (char *p = textbuf; *p; p++) /* a host's locale may use ',' */
      if (*p == ',')
        *p = '.';
    sqlite3_bind_text(st, idx + 1, textbuf, -1, SQLITE_TRANSIENT);
    break;
  case JSON_TRUE:
  case JSON_FALSE:
    /* json_extract gives 1/0 for booleans. */
    sqlite3_bind_int(st, idx, json_is_true(v));
    sqlite3_bind_text(st, idx + 1, json_is_true(v) ? "true" : "false", -1,
                      SQLITE_STATIC);
    break;
  default:
    ret = FLOW_EINVAL;
  }
  json_decref(v);
  return ret;
}

/* The JSON text null, with optional white space: "the field is not set". */
static int
is_json_null(const char *v)
{
  while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
    v++;
  if (strncmp(v, "null", 4) != 0)
    return 0;
  for (v += 4; *v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'; v++)
    ;
  return *v == 0;
}

static int
sqlite_case_list(flow__store *s, const flow_case_query *q, int64_t now,
                 int (*each)(void *ctx, const flow__case_row *row), void *ctx,
                 flow__err *err)
{
  /* The cases moved in this transaction must be where the list looks. */
  if (q->state && s->in_txn) {
    int rc = flow__sq_places_flush(s, err);
    if (rc != 0)
      return rc;
  }
  flow__buf sql;
  flow__buf_init(&sql, s->a);
  flow__buf_adds(&sql, "SELECT c.id, c.service, c.version, c.state,"
                       " c.closed, c.data, c.opened_at, c.updated_at,"
                       " c.due_at, c.seq, c.seed, c.tasks, c.sla_paused_at,"
                       " c.keys");
  /* By state: that state's entries of case_states, in id order, each
     joined with its case (an entry the case has left is skipped). */
  if (q->state)
    flow__buf_adds(&sql, " FROM case_states s JOIN cases c ON c.id ="
                         " s.case_id WHERE s.state = ?1 AND c.state = ?1");
  else
    flow__buf_adds(&sql, " FROM cases c WHERE 1");
  if (q->service)
    flow__buf_adds(&sql, " AND c.service = ?");
  if (q->status)
    flow__buf_adds(&sql, " AND c.closed = ?");
  if (q->overdue)
    flow__buf_adds(&sql, " AND c.closed = 0 AND c.due_at < ? AND"
                         " c.sla_paused_at IS NULL");
  /* An indexed field is read from its own column, where its index is. */
  if (q->nwhere > 0 && flow__sq_keys_load(s, err) != 0) {
    flow__buf_free(&sql);
    return err->code;
  }
  for (size_t i = 0; i < q->nwhere; i++) {
    const char *test = is_json_null(q->where[i].value_json) ? "IS NULL"
                                                           : "IN (?, ?)";
    if (flow__sq_key_indexed(s, q->where[i].field))
      flow__buf_addf(&sql, " AND c.\"k_%s\" %s", q->where[i].field, test);
    else
      flow__buf_addf(&sql, " AND json_extract(c.data, '$.%s') %s",
                     q->where[i].field, test);
  }
  flow__buf_adds(&sql, q->state ? " ORDER BY s.case_id LIMIT ? OFFSET ?"
                                : " ORDER BY c.id LIMIT ? OFFSET ?");
  const char *text = flow__buf_str(&sql);
  if (text == NULL) {
    flow__buf_free(&sql);
    return flow__err_set(err, FLOW_ENOMEM, "out of memory listing cases");
  }
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, text, -1, &st, NULL);
  flow__buf_free(&sql);
  if (rc != SQLITE_OK)
    return flow__sq_fail(s, err, rc, "listing cases");
  int idx = 1, ret = 0;
  if (q->state)
    sqlite3_bind_text(st, idx++, q->state, -1, SQLITE_STATIC); /* ?1 */
  if (q->service)
    sqlite3_bind_text(st, idx++, q->service, -1, SQLITE_STATIC);
  if (q->status)
    sqlite3_bind_int(st, idx++, strcmp(q->status, "closed") == 0);
  if (q->overdue)
    sqlite3_bind_int64(st, idx++, now);
  for (size_t i = 0; i < q->nwhere; i++) {
    char tb[64];
    if (is_json_null(q->where[i].value_json))
      continue; /* "field is not set": no parameters */
    if (bind_where(st, idx, q->where[i].value_json, tb, sizeof tb) != 0) {
      ret = flow__err_set(err, FLOW_EINVAL,
                          "where %s: the value must be a JSON string, "
                          "number, true, false or null",
                          q->where[i].field);
      goto done;
    }
    idx += 2;
  }
  sqlite3_bind_int64(st, idx++, q->limit ? (int64_t)q->limit : 100);
  sqlite3_bind_int64(st, idx++, (int64_t)q->offset);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    flow__case_row row;
    if (read_case(s, st, &row) != 0) {
      ret = flow__err_set(err, FLOW_ENOMEM, "out of memory listing cases");
      goto done;
    }
    ret = each(ctx, &row);
    flow__case_row_clear(s->a, &row);
    if (ret != 0) {
      /* Keep the message `each` gave, if it gave one. */
      if (err->code != ret)
        flow__err_set(err, ret, "%s", ret == FLOW_ENOMEM
                                          ? "out of memory listing cases"
                                          : flow_strerror(ret));
      goto done;
    }
  }
  if (rc != SQLITE_DONE)
    ret = flow__sq_fail(s, err, rc, "listing cases");
done:
  sqlite3_finalize(st);
  return ret;
}

static int
sqlite_history_append(flow__store *s, const flow__history_row *row,
                      flow__err *err)
{
  if (row->seq < 1 || row->seq > FLOW__MAX_CASE_SEQ || row->case_id < 1)
    return flow__err_set(err, FLOW_EINVAL,
                         "storage: history row %lld of case %lld is out of "
                         "range",
                         (long long)row->seq, (long long)row->case_id);
  sqlite3_stmt *st = s->st[ST_HISTORY_APPEND];
  sqlite3_bind_int64(st, 1, row->case_id);
  sqlite3_bind_int64(st, 2, row->seq);
  sqlite3_bind_int64(st, 3, row->at);
  sqlite3_bind_text(st, 4, row->actor, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, row->event, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, row->payload, -1, SQLITE_STATIC);
  if (row->from)
    sqlite3_bind_text(st, 7, row->from, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 8, row->to, -1, SQLITE_STATIC);
  flow__sq_bind_text(st, 9, row->sla);
  return flow__sq_done(s, st, err, "writing history");
}

static int
sqlite_history_each(flow__store *s, int64_t case_id,
                    int (*each)(void *ctx, const flow__history_row *row),
                    void *ctx, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_HISTORY_EACH];
  sqlite3_bind_int64(st, 1, case_id);
  int rc, ret = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    flow__history_row row;
    row.case_id = sqlite3_column_int64(st, 0);
    row.seq = sqlite3_column_int64(st, 1);
    row.at = sqlite3_column_int64(st, 2);
    row.actor = (const char *)sqlite3_column_text(st, 3);
    row.event = (const char *)sqlite3_column_text(st, 4);
    row.payload = (const char *)sqlite3_column_text(st, 5);
    row.from = (const char *)sqlite3_column_text(st, 6);
    row.to = (const char *)sqlite3_column_text(st, 7);
    if (!row.actor || !row.event || !row.payload || !row.to) {
      ret = flow__err_set(err, FLOW_ENOMEM, "out of memory reading history");
      break;
    }
    if ((ret = each(ctx, &row)) != 0) {
      flow__err_set(err, ret, "out of memory reading history");
      break;
    }
  }
  if (ret == 0 && rc != SQLITE_DONE)
    ret = flow__sq_fail(s, err, rc, "reading history");
  sqlite3_reset(st);
  return ret;
}

void
flow__sq_bind_text(sqlite3_stmt *st, int idx, const char *v)
{
  if (v)
    sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, idx);
}

static int
sqlite_outbox_add(flow__store *s, const flow__request_row *r, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_OUTBOX_ADD];
  sqlite3_bind_int64(st, 1, r->case_id);
  sqlite3_bind_int64(st, 2, r->seq);
  sqlite3_bind_int(st, 3, r->n);
  sqlite3_bind_text(st, 4, r->action, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, r->args, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, r->created_at);
  sqlite3_bind_text(st, 7, r->key, -1, SQLITE_STATIC);
  flow__sq_bind_text(st, 8, r->reply);
  flow__sq_bind_text(st, 9, r->fail);
  sqlite3_bind_int(st, 10, r->retry_max);
  sqlite3_bind_int64(st, 11, r->backoff_ms);
  sqlite3_bind_int64(st, 12, r->timeout_ms);
  return flow__sq_done(s, st, err, "queueing an action");
}

int64_t
flow__sq_col_time(sqlite3_stmt *st, int col)
{
  return sqlite3_column_type(st, col) == SQLITE_NULL
             ? FLOW__NO_TIME
             : sqlite3_column_int64(st, col);
}

/* The row at st's cursor (REQUEST_COLS); strings live until the next
   step.  -1 when SQLite ran out of memory for a text. */
static int
read_request(sqlite3_stmt *st, flow__request_row *r)
{
  r->id = sqlite3_column_int64(st, 0);
  r->case_id = sqlite3_column_int64(st, 1);
  r->seq = sqlite3_column_int64(st, 2);
  r->n = sqlite3_column_int(st, 3);
  r->action = (const char *)sqlite3_column_text(st, 4);
  r->args = (const char *)sqlite3_column_text(st, 5);
  r->key = (const char *)sqlite3_column_text(st, 6);
  r->reply = (const char *)sqlite3_column_text(st, 7);
  r->fail = (const char *)sqlite3_column_text(st, 8);
  r->retry_max = sqlite3_column_int(st, 9);
  r->backoff_ms = sqlite3_column_int64(st, 10);
  r->timeout_ms = sqlite3_column_int64(st, 11);
  r->status = (const char *)sqlite3_column_text(st, 12);
  r->attempts = sqlite3_column_int(st, 13);
  r->created_at = sqlite3_column_int64(st, 14);
  r->next_at = sqlite3_column_int64(st, 15);
  r->lease_until = flow__sq_col_time(st, 16);
  r->error = (const char *)sqlite3_column_text(st, 17);
  r->result = (const char *)sqlite3_column_text(st, 18);
  r->finished_at = flow__sq_col_time(st, 19);
  return r->action && r->args && r->key && r->status ? 0 : -1;
}

/* Steps st, handing each request row to each. */
static int
each_request(flow__store *s, sqlite3_stmt *st,
             int (*each)(void *ctx, const flow__request_row *row), void *ctx,
             int *found, flow__err *err)
{
  int rc, ret = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    flow__request_row row;
    if (read_request(st, &row) != 0) {
      ret = flow__err_set(err, FLOW_ENOMEM, "out of memory reading actions");
      break;
    }
    if (found)
      *found = 1;
    if ((ret = each(ctx, &row)) != 0) {
      flow__err_set(err, ret, "reading actions: stopped by the caller");
      break;
    }
  }
  if (ret == 0 && rc != SQLITE_DONE)
    ret = flow__sq_fail(s, err, rc, "reading the outbox");
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return ret;
}

/* Counts the rows handed on to each. */
typedef struct count_ctx {
  int (*each)(void *ctx, const flow__request_row *row);
  void *ctx;
  size_t n;
} count_ctx;

static int
counted(void *ctx, const flow__request_row *row)
{
  count_ctx *c = ctx;
  c->n++;
  return c->each(c->ctx, row);
}

static int
sqlite_outbox_due(flow__store *s, const char *action, int64_t now,
                  size_t max,
                  int (*each)(void *ctx, const flow__request_row *row),
                  void *ctx, flow__err *err)
{
  /* Held past their time first (their taker died, or they timed out),
     then those to send; each from its own index. */
  size_t got = 0;
  int rc = 0;
  for (int k = 0; rc == 0 && k < 2 && got < max; k++) {
    sqlite3_stmt *st = s->st[k == 0 ? ST_OUTBOX_EXPIRED : ST_OUTBOX_DUE];
    count_ctx c = { each, ctx, 0 };
    sqlite3_bind_text(st, 1, action, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)(max - got));
    rc = each_request(s, st, counted, &c, NULL, err);
    got += c.n;
  }
  return rc;
}

static int
sqlite_outbox_take(flow__store *s, int64_t id, int attempts,
                   int64_t lease_until, int *taken, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_OUTBOX_TAKE];
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int(st, 2, attempts);
  sqlite3_bind_int64(st, 3, lease_until);
  int rc = flow__sq_done(s, st, err, "taking an action");
  *taken = rc == 0 && sqlite3_changes(s->db) == 1;
  return rc;
}

static int
sqlite_outbox_get(flow__store *s, int64_t id,
                  int (*each)(void *ctx, const flow__request_row *row),
                  void *ctx, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_OUTBOX_GET];
  sqlite3_bind_int64(st, 1, id);
  int found = 0;
  int rc = each_request(s, st, each, ctx, &found, err);
  if (rc == 0 && !found)
    rc = flow__err_set(err, FLOW_ENOTFOUND, "there is no action request %lld",
                       (long long)id);
  return rc;
}

static int
sqlite_outbox_settle(flow__store *s, int64_t id, int attempts,
                     const char *status, int64_t next_at, const char *error,
                     const char *result, int64_t at, int *set,
                     flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_OUTBOX_SETTLE];
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int(st, 2, attempts);
  sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, next_at);
  flow__sq_bind_text(st, 5, error);
  flow__sq_bind_text(st, 6, result);
  sqlite3_bind_int64(st, 7, at);
  int rc = flow__sq_done(s, st, err, "settling an action");
  *set = rc == 0 && sqlite3_changes(s->db) == 1;
  return rc;
}

static int
sqlite_outbox_next_due(flow__store *s, const char *action, int64_t *out,
                       flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_OUTBOX_NEXT_DUE];
  sqlite3_bind_text(st, 1, action, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  *out = INT64_MAX;
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    *out = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_ROW)
    return flow__sq_fail(s, err, rc, "reading the outbox");
  return 0;
}

static int
sqlite_outbox_list(flow__store *s, int64_t case_id, const char *status,
                   size_t max,
                   int (*each)(void *ctx, const flow__request_row *row),
                   void *ctx, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_OUTBOX_LIST];
  sqlite3_bind_int64(st, 1, case_id);
  flow__sq_bind_text(st, 2, status);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)(max > INT64_MAX ? INT64_MAX
                                                            : max));
  return each_request(s, st, each, ctx, NULL, err);
}

static int
sqlite_savepoint(flow__store *s, flow__err *err)
{
  if (s->sp_depth == FLOW__SQ_SAVEPOINTS)
    return flow__err_set(err, FLOW_EMISUSE,
                         "storage: savepoints nested more than %d deep",
                         FLOW__SQ_SAVEPOINTS);
  int d = s->sp_depth;
  s->sp_case_last[d] = s->case_last;
  s->sp_case_loaded[d] = s->case_loaded;
  int rc = flow__sq_places_savepoint(s, d, err);
  if (rc == 0)
    rc = flow__sq_done(s, s->st[ST_SAVEPOINT], err, "starting a savepoint");
  if (rc == 0)
    s->sp_depth++;
  return rc;
}

static int
sqlite_release(flow__store *s, flow__err *err)
{
  int rc = flow__sq_done(s, s->st[ST_RELEASE], err, "releasing a savepoint");
  if (rc == 0 && s->sp_depth > 0)
    s->sp_depth--;
  return rc;
}

static void
sqlite_rollback_to(flow__store *s)
{
  if (s->sp_depth == 0)
    return;
  int d = --s->sp_depth;
  /* ROLLBACK TO keeps the savepoint open; RELEASE ends it.  (Savepoints
     of one name nest: both act on the innermost.) */
  sqlite3_step(s->st[ST_ROLLBACK_TO]);
  sqlite3_reset(s->st[ST_ROLLBACK_TO]);
  sqlite3_step(s->st[ST_RELEASE]);
  sqlite3_reset(s->st[ST_RELEASE]);
  /* The ids handed out since the savepoint come again: a refused call
     leaves no gap in the case numbers. */
  s->case_last = s->sp_case_last[d];
  s->case_loaded = s->sp_case_loaded[d];
  flow__sq_places_rollback_to(s, d);
}


static int
sqlite_timer_insert(flow__store *s, const flow__timer_row *row,
                    flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_TIMER_INSERT];
  sqlite3_bind_int64(st, 1, row->case_id);
  sqlite3_bind_int64(st, 2, row->due_at);
  sqlite3_bind_text(st, 3, row->kind, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, row->event, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, row->payload, -1, SQLITE_STATIC);
  flow__sq_bind_text(st, 6, row->target);
  flow__sq_bind_text(st, 7, row->state);
  sqlite3_bind_int64(st, 8, row->set_seq);
  return flow__sq_done(s, st, err, "writing a timer");
}

static int
timer_by_id(flow__store *s, int stmt, int64_t id, const char *what,
            flow__err *err)
{
  sqlite3_stmt *st = s->st[stmt];
  sqlite3_bind_int64(st, 1, id);
  return flow__sq_done(s, st, err, what);
}

static int
sqlite_timer_claim(flow__store *s, int64_t id, int *claimed, flow__err *err)
{
  int rc = timer_by_id(s, ST_TIMER_CLAIM, id, "claiming a due timer", err);
  /* Under BEGIN IMMEDIATE no other connection writes until we commit, so
     the row this DELETE found cannot be taken by anyone else. */
  *claimed = rc == 0 && sqlite3_changes(s->db) == 1;
  if (rc == 0 && !*claimed)
    rc = timer_by_id(s, ST_TIMER_REAP, id, "removing a cancelled timer", err);
  return rc;
}

static int
sqlite_timer_sweep_cases(flow__store *s, const int64_t *case_ids, size_t n,
                         flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_TIMER_SWEEP_CASE];
  int rc = 0;
  while (rc == 0 && n > 0) {
    size_t k = n < SWEEP_PER_STATEMENT ? n : SWEEP_PER_STATEMENT;
    sqlite3_clear_bindings(st);
    for (size_t i = 0; i < k; i++)
      sqlite3_bind_int64(st, (int)i + 1, case_ids[i]);
    rc = flow__sq_done(s, st, err, "removing cancelled timers");
    case_ids += k;
    n -= k;
  }
  return rc;
}

static int
sqlite_timer_incident(flow__store *s, int64_t id, const char *error,
                      int *marked, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_TIMER_INCIDENT];
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC);
  int rc = flow__sq_done(s, st, err, "recording an incident");
  *marked = rc == 0 && sqlite3_changes(s->db) == 1;
  return rc;
}

static int
sqlite_timer_next_due(flow__store *s, int64_t *out, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_TIMER_NEXT_DUE];
  int rc = sqlite3_step(st);
  *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : INT64_MAX;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return flow__sq_fail(s, err, rc, "finding the next timer");
  return 0;
}

static int
timer_rows(flow__store *s, sqlite3_stmt *st,
           int (*each)(void *ctx, const flow__timer_row *row), void *ctx,
           flow__err *err, const char *what)
{
  int rc, ret = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    flow__timer_row r;
    r.set_seq = 0; /* not read back: only the queries need it */
    r.id = sqlite3_column_int64(st, 0);
    r.case_id = sqlite3_column_int64(st, 1);
    r.due_at = sqlite3_column_int64(st, 2);
    r.kind = (const char *)sqlite3_column_text(st, 3);
    r.event = (const char *)sqlite3_column_text(st, 4);
    r.payload = (const char *)sqlite3_column_text(st, 5);
    r.target = (const char *)sqlite3_column_text(st, 6);
    r.state = (const char *)sqlite3_column_text(st, 7);
    r.status = (const char *)sqlite3_column_text(st, 8);
    r.error = (const char *)sqlite3_column_text(st, 9);
    if (!r.kind || !r.event || !r.payload || !r.status) {
      ret = flow__err_set(err, FLOW_ENOMEM, "out of memory reading timers");
      break;
    }
    if ((ret = each(ctx, &r)) != 0) {
      if (err->code != ret)
        flow__err_set(err, ret, "%s", flow_strerror(ret));
      break;
    }
  }
  if (ret == 0 && rc != SQLITE_DONE)
    ret = flow__sq_fail(s, err, rc, what);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return ret;
}

static int
sqlite_timer_due(flow__store *s, int64_t now, size_t max,
                 int (*each)(void *ctx, const flow__timer_row *row),
                 void *ctx, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_TIMER_DUE];
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int64(st, 2, (int64_t)max);
  return timer_rows(s, st, each, ctx, err, "reading due timers");
}

static int
sqlite_timer_list(flow__store *s, int64_t case_id,
                  int (*each)(void *ctx, const flow__timer_row *row),
                  void *ctx, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_TIMER_LIST];
  sqlite3_bind_int64(st, 1, case_id);
  return timer_rows(s, st, each, ctx, err, "listing timers");
}

void
flow__case_row_clear(const flow__allocator *a, flow__case_row *row)
{
  flow__free(a, row->service);
  flow__free(a, row->state);
  flow__free(a, row->data);
  flow__free(a, row->keys);
  row->service = row->state = row->data = row->keys = NULL;
}

void
flow__service_row_clear(const flow__allocator *a, flow__service_row *row)
{
  flow__free(a, row->name);
  flow__free(a, row->title);
  flow__free(a, row->source);
  flow__free(a, row->sha256);
  flow__free(a, row->chunkname);
  memset(row, 0, sizeof *row);
}

static int
sqlite_changed_elsewhere(flow__store *s, int *changed, flow__err *err)
{
  sqlite3_stmt *st = s->st[ST_DATA_VERSION];
  int rc = sqlite3_step(st);
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW)
    return flow__sq_fail(s, err, rc, "asking for other connections' changes");
  *changed = !s->data_version_known || v != s->data_version;
  s->data_version = v;
  s->data_version_known = 1;
  return 0;
}

const flow__store_vt flow__store_sqlite = {
  .name = "sqlite",
  .open = sqlite_open,
  .close = sqlite_close,
  .begin = sqlite_begin,
  .commit = sqlite_commit,
  .rollback = sqlite_rollback,
  .service_get = sqlite_service_get,
  .service_put = sqlite_service_put,
  .service_newest = sqlite_service_newest,
  .service_list = sqlite_service_list,
  .index_field = flow__sq_index_field,
  .key_fields = flow__sq_key_fields,
  .case_new_id = sqlite_case_new_id,
  .case_get = sqlite_case_get,
  .case_lock = sqlite_case_lock,
  .case_insert = sqlite_case_insert,
  .case_update = sqlite_case_update,
  .case_list = sqlite_case_list,
  .history_append = sqlite_history_append,
  .history_each = sqlite_history_each,
  .outbox_add = sqlite_outbox_add,
  .outbox_due = sqlite_outbox_due,
  .outbox_take = sqlite_outbox_take,
  .outbox_get = sqlite_outbox_get,
  .outbox_settle = sqlite_outbox_settle,
  .outbox_next_due = sqlite_outbox_next_due,
  .outbox_list = sqlite_outbox_list,
  .task_add = flow__sq_task_add,
  .task_claim = flow__sq_task_claim,
  .task_set = flow__sq_task_set,
  .task_list = flow__sq_task_list,
  .task_end_case = flow__sq_task_end_case,
  .task_cancel_named = flow__sq_task_cancel_named,
  .incident_add = flow__sq_incident_add,
  .incident_list = flow__sq_incident_list,
  .incident_set = flow__sq_incident_set,
  .incident_source_done = flow__sq_incident_source_done,
  .message_add = flow__sq_message_add,
  .message_list = flow__sq_message_list,
  .message_set = flow__sq_message_set,
  .message_expire = flow__sq_message_expire,
  .message_next_expiry = flow__sq_message_next_expiry,
  .message_matched = flow__sq_message_matched,
  .correl_find = flow__sq_correl_find,
  .correl_put = flow__sq_correl_put,
  .correl_drop = flow__sq_correl_drop,
  .case_sla = flow__sq_case_sla,
  .sla_timers_drop = flow__sq_sla_timers_drop,
  .sla_timers_pause = flow__sq_sla_timers_pause,
  .sla_timers_resume = flow__sq_sla_timers_resume,
  .sla_log_each = flow__sq_sla_log_each,
  .savepoint = sqlite_savepoint,
  .release = sqlite_release,
  .rollback_to = sqlite_rollback_to,
  .timer_insert = sqlite_timer_insert,
  .timer_claim = sqlite_timer_claim,
  .timer_sweep_cases = sqlite_timer_sweep_cases,
  .timer_incident = sqlite_timer_incident,
  .timer_next_due = sqlite_timer_next_due,
  .timer_due = sqlite_timer_due,
  .timer_list = sqlite_timer_list,
  .changed_elsewhere = sqlite_changed_elsewhere,
};

/* ---- for store_sqlite_work.c ------------------------------------------- */

sqlite3 *
flow__sq_db(flow__store *s)
{
  return s->db;
}

int
flow__sq_in_txn(flow__store *s)
{
  return s->in_txn;
}

int
flow__sq_busy_ms(flow__store *s)
{
  return s->busy_ms;
}

flow__sq_places *
flow__sq_places_of(flow__store *s)
{
  return &s->places;
}

const flow__allocator *
flow__sq_alloc(flow__store *s)
{
  return s->a;
}

sqlite3_stmt *
flow__sq_stmt(flow__store *s, int idx, const char *sql, flow__err *err)
{
  if (s->wst[idx] == NULL) {
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                &s->wst[idx], NULL);
    if (rc != SQLITE_OK) {
      flow__sq_fail(s, err, rc, "preparing a statement");
      sqlite3_finalize(s->wst[idx]);
      s->wst[idx] = NULL;
    }
  }
  return s->wst[idx];
}

void
flow__sq_bind_time(sqlite3_stmt *st, int idx, int64_t t)
{
  if (t == FLOW__NO_TIME)
    sqlite3_bind_null(st, idx);
  else
    sqlite3_bind_int64(st, idx, t);
}
