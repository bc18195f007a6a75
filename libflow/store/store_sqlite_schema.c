/*
 * The SQLite backend's schema: PRAGMA user_version with forward-only
 * migrations, applied when a connection opens, by one process at a time
 * when several open the same file at once.
 */
#include "store/store_sqlite_int.h"

#include <stdio.h>

/*
 * Forward-only migrations: migrations[i] takes the schema from version i
 * to i + 1.  Never edit a released entry; append a new one.
 */
static const char *const migrations[] = {
  "CREATE TABLE services ("
  "  name TEXT NOT NULL, version INTEGER NOT NULL, title TEXT,"
  "  source TEXT NOT NULL, sha256 TEXT NOT NULL, chunkname TEXT NOT NULL,"
  "  loaded_at INTEGER NOT NULL, PRIMARY KEY (name, version));"
  "CREATE TABLE cases ("
  "  id INTEGER PRIMARY KEY, service TEXT NOT NULL,"
  "  version INTEGER NOT NULL, state TEXT NOT NULL,"
  "  closed INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL,"
  "  opened_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
  "  due_at INTEGER, seq INTEGER NOT NULL, seed INTEGER NOT NULL);"
  "CREATE INDEX cases_service_state ON cases(service, state);"
  "CREATE INDEX cases_state ON cases(state);"
  "CREATE INDEX cases_due ON cases(due_at) WHERE closed = 0;"
  "CREATE TABLE history ("
  "  case_id INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,"
  "  actor TEXT NOT NULL, event TEXT NOT NULL, payload TEXT NOT NULL,"
  "  from_state TEXT, to_state TEXT NOT NULL,"
  "  PRIMARY KEY (case_id, seq)) WITHOUT ROWID;"
  "CREATE TABLE outbox ("
  "  id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL,"
  "  seq INTEGER NOT NULL, n INTEGER NOT NULL, action TEXT NOT NULL,"
  "  args TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,"
  "  UNIQUE (case_id, seq, n));"
  "CREATE INDEX outbox_pending ON outbox(status) WHERE status = 'pending';",

  /* 1 -> 2: durable timers.  Only the earliest pending one is ever read
     by the loop, through the partial index. */
  "CREATE TABLE timers ("
  "  id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL,"
  "  due_at INTEGER NOT NULL, kind TEXT NOT NULL, event TEXT NOT NULL,"
  "  payload TEXT NOT NULL, target TEXT, state TEXT,"
  "  status TEXT NOT NULL DEFAULT 'pending', error TEXT);"
  "CREATE INDEX timers_due ON timers(due_at, id) WHERE status = 'pending';"
  "CREATE INDEX timers_case ON timers(case_id);",

  /* 2 -> 3: timers are cancelled in the case row and deleted later (see
     LIVE).  Before, they were deleted at once, so every existing timer is
     live: set_seq 0 >= entered_seq 0. */
  ("ALTER TABLE cases ADD COLUMN entered_seq INTEGER NOT NULL DEFAULT 0;"
   "ALTER TABLE timers ADD COLUMN set_seq INTEGER NOT NULL DEFAULT 0;"),

  /* 3 -> 4: case ids from a counter that never goes back.  Before, a new
     id was MAX(id) + 1, so the counter starts there. */
  ("CREATE TABLE counters (name TEXT PRIMARY KEY,"
   "  value INTEGER NOT NULL) WITHOUT ROWID;"
   "INSERT INTO counters VALUES ('case',"
   "  (SELECT COALESCE(MAX(id), 0) FROM cases));"),

  /* 4 -> 5: actions dispatched and answered (a lease, so that a dead
     claimer's requests go out again; the script's options; the outcome)
     and tasks for people. */
  ("ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;"
   "ALTER TABLE outbox ADD COLUMN lease_until INTEGER;"
   "ALTER TABLE outbox ADD COLUMN next_at INTEGER NOT NULL DEFAULT 0;"
   "ALTER TABLE outbox ADD COLUMN key TEXT;"
   "ALTER TABLE outbox ADD COLUMN reply TEXT;"
   "ALTER TABLE outbox ADD COLUMN fail TEXT;"
   "ALTER TABLE outbox ADD COLUMN retry_max INTEGER NOT NULL DEFAULT 0;"
   "ALTER TABLE outbox ADD COLUMN backoff_ms INTEGER NOT NULL DEFAULT 0;"
   "ALTER TABLE outbox ADD COLUMN timeout_ms INTEGER NOT NULL DEFAULT 0;"
   "ALTER TABLE outbox ADD COLUMN error TEXT;"
   "ALTER TABLE outbox ADD COLUMN result TEXT;"
   "ALTER TABLE outbox ADD COLUMN finished_at INTEGER;"
   "UPDATE outbox SET key = case_id || '-' || seq || '-' || n;"
   "DROP INDEX outbox_pending;"
   /* Requests to send (never tried, or waiting for a retry) by when, and
      requests in flight by when their hold runs out: the next of either
      is one index step, however long the backlog. */
   "CREATE INDEX outbox_send ON outbox(action, next_at, id) WHERE status ="
   " 'pending' AND lease_until IS NULL;"
   "CREATE INDEX outbox_held ON outbox(action, lease_until, id) WHERE"
   " status = 'pending' AND lease_until IS NOT NULL;"
   "CREATE INDEX outbox_case ON outbox(case_id);"
   "CREATE TABLE tasks ("
   "  id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL,"
   "  seq INTEGER NOT NULL, n INTEGER NOT NULL, name TEXT NOT NULL,"
   "  data TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open',"
   "  claimed_by TEXT, created_at INTEGER NOT NULL,"
   "  UNIQUE (case_id, seq, n));"
   "CREATE INDEX tasks_open ON tasks(case_id) WHERE status = 'open';"),

  /* 5 -> 6: tasks as people work them (claimed is a status of its own;
     the form is kept in data; cases.tasks says a case ever had one, so
     that the transitions of the others look for none), incidents of every source, messages and
     the correlation keys of open cases. */
  ("ALTER TABLE cases ADD COLUMN tasks INTEGER NOT NULL DEFAULT 0;"
   "UPDATE cases SET tasks = 1 WHERE id IN (SELECT case_id FROM tasks);"
   "ALTER TABLE tasks ADD COLUMN title TEXT;"
   "ALTER TABLE tasks ADD COLUMN team TEXT;"
   "ALTER TABLE tasks ADD COLUMN assignee TEXT;"
   "ALTER TABLE tasks ADD COLUMN due_at INTEGER;"
   "ALTER TABLE tasks ADD COLUMN done TEXT;"
   "ALTER TABLE tasks ADD COLUMN state TEXT;"
   "ALTER TABLE tasks ADD COLUMN outcome TEXT;"
   "ALTER TABLE tasks ADD COLUMN finished_by TEXT;"
   "ALTER TABLE tasks ADD COLUMN finished_at INTEGER;"
   "UPDATE tasks SET status = 'claimed' WHERE status = 'open' AND"
   "  claimed_by IS NOT NULL;"
   "DROP INDEX tasks_open;"
   "CREATE INDEX tasks_case ON tasks(case_id, status);"
   "CREATE INDEX tasks_queue ON tasks(team, status, id);"
   "CREATE INDEX tasks_due ON tasks(due_at) WHERE status IN ('open',"
   " 'claimed') AND due_at IS NOT NULL;"
   "CREATE TABLE incidents ("
   "  id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL,"
   "  source TEXT NOT NULL, source_id INTEGER NOT NULL,"
   "  kind INTEGER NOT NULL, event TEXT NOT NULL, payload TEXT NOT NULL,"
   "  origin TEXT, target TEXT, code TEXT NOT NULL, error TEXT NOT NULL,"
   "  status TEXT NOT NULL DEFAULT 'open',"
   "  attempts INTEGER NOT NULL DEFAULT 1, raised_at INTEGER NOT NULL,"
   "  finished_at INTEGER, finished_by TEXT);"
   "CREATE INDEX incidents_case ON incidents(case_id);"
   "CREATE INDEX incidents_open ON incidents(id) WHERE status = 'open';"
   /* Incidents raised before this version, kept on their timers and
      requests, join the list. */
   "INSERT INTO incidents(case_id, source, source_id, kind, event,"
   "  payload, target, code, error, raised_at)"
   "  SELECT case_id, 'timer', id, CASE kind WHEN 'after' THEN 1"
   "  WHEN 'timer' THEN 2 ELSE 3 END, event, payload, target,"
   "  'FLOW_ESCRIPT', COALESCE(error, 'refused'), due_at FROM timers"
   "  WHERE status = 'incident';"
   "CREATE TABLE messages ("
   "  id INTEGER PRIMARY KEY, name TEXT NOT NULL, key TEXT NOT NULL,"
   "  payload TEXT NOT NULL, status TEXT NOT NULL,"
   "  case_id INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,"
   "  expires_at INTEGER NOT NULL, finished_at INTEGER);"
   "CREATE INDEX messages_waiting ON messages(name, key, id) WHERE"
   " status = 'buffered';"
   "CREATE INDEX messages_expiry ON messages(expires_at) WHERE"
   " status = 'buffered';"
   "CREATE TABLE correlations ("
   "  name TEXT NOT NULL, key TEXT NOT NULL, case_id INTEGER NOT NULL,"
   "  PRIMARY KEY (name, key)) WITHOUT ROWID;"
   "CREATE INDEX correlations_case ON correlations(case_id);"),

  /* 6 -> 7: a service level's clock may stop (cases.sla_paused_at; its
     timers wait as 'paused'), and each pause, resume and restart is
     logged for the history. */
  ("ALTER TABLE cases ADD COLUMN sla_paused_at INTEGER;"
   "CREATE TABLE sla_log ("
   "  case_id INTEGER NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL,"
   "  change TEXT NOT NULL, at INTEGER NOT NULL, due_at INTEGER,"
   "  detail TEXT NOT NULL, PRIMARY KEY (case_id, seq, n)) WITHOUT ROWID;"),

  /* 7 -> 8: one index on the state, not two.  Every transition that
     moves a case moved its entry in both (cases_service_state too), two
     more pages in every commit; a list by service and state now walks
     the state's entries in id order and reads each case's service, as a
     list by state alone always did. */
  "DROP INDEX IF EXISTS cases_service_state;",

  /* 8 -> 9: only cases with a due time are in cases_due (the overdue
     list's due_at < ? implies it), so a service without a level never
     writes it. */
  ("DROP INDEX IF EXISTS cases_due;"
   "CREATE INDEX cases_due ON cases(due_at) WHERE closed = 0 AND due_at IS"
   " NOT NULL;"),

  /* 9 -> 10: the cases in each state, kept apart from the cases table and
     written only where a case arrives.  An index on cases.state moved a
     case's entry at every move: a delete in the old state's pages and an
     insert in the new one's, two pages per commit.  case_states gets the
     insert; the entry left behind is stale (a list joins with cases and
     skips it) and removed later, many in one commit (stale_flush). */
  ("CREATE TABLE IF NOT EXISTS case_states ("
   "  state TEXT NOT NULL, case_id INTEGER NOT NULL,"
   "  PRIMARY KEY (state, case_id)) WITHOUT ROWID;"
   "INSERT OR IGNORE INTO case_states SELECT state, id FROM cases;"
   "DROP INDEX IF EXISTS cases_state;"),

  /* 10 -> 11: indexed fields are indexed in cases.keys, a copy of their
     values that an UPDATE assigns only when one of them changed.  An
     index over data was rewritten by every UPDATE, since every one
     assigns data.  The indexes over data become indexes over keys
     (convert_field_indexes, after this). */
  "ALTER TABLE cases ADD COLUMN keys TEXT;",

  /* 11 -> 12: each indexed field is copied from keys into a column of its
     own (k_FIELD), which its index covers, by an UPDATE that assigns it
     only when its value changed.  An index over json_extract(keys, ...)
     was rewritten whenever keys was, so a crew assigned rewrote the
     uprn's and the bin's entries as well (split_field_indexes, after
     this). */
  "SELECT 1;",

  /* 12 -> 13: history in a rowid table keyed by case_id * 2^24 + seq, the
     order of its old primary key (case_id, seq).  Appending to a WITHOUT
     ROWID b-tree shares a full last page out among its neighbours, so an
     opening wrote two history pages where a rowid table's append starts
     one new page: bench_bins sync_minimal 9.44 -> 8.92 KB a transition. */
  ("CREATE TABLE history_13 (rid INTEGER PRIMARY KEY,"
   "  case_id INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,"
   "  actor TEXT NOT NULL, event TEXT NOT NULL, payload TEXT NOT NULL,"
   "  from_state TEXT, to_state TEXT NOT NULL);"
   "INSERT INTO history_13 SELECT case_id * 16777216 + seq, case_id, seq,"
   "  at, actor, event, payload, from_state, to_state FROM history"
   "  ORDER BY case_id, seq;"
   "DROP TABLE history;"
   "ALTER TABLE history_13 RENAME TO history;"),

  /* 13 -> 14: a transition's service-level changes in its history row
     (history.sla, a JSON array of [n, change, at, due_at, detail]), not
     in a table of their own: its own b-tree cost an opening with a
     computed level one and a half pages more. */
  ("ALTER TABLE history ADD COLUMN sla TEXT;"
   "UPDATE history SET sla = (SELECT json_group_array(json_array(l.n,"
   "  l.change, l.at, l.due_at, json(l.detail))) FROM sla_log l WHERE"
   "  l.case_id = history.case_id AND l.seq = history.seq)"
   "  WHERE rid IN (SELECT case_id * 16777216 + seq FROM sla_log);"
   "DROP TABLE sla_log;"),
  /* 14 -> 15: the roles that may claim and complete a task (a JSON
     array; NULL: anyone). */
  ("ALTER TABLE tasks ADD COLUMN roles TEXT;"),
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof *migrations))

static int
exec_sql(flow__store *s, const char *sql, flow__err *err)
{
  int rc = sqlite3_exec(flow__sq_db(s), sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return flow__sq_fail(s, err, rc, "schema update");
  return 0;
}

/*
 * While another process creates or upgrades the same file, some locks are
 * refused at once rather than waited for by the busy handler (turning on
 * WAL, reading a header being rewritten: SQLite will not wait where that
 * could deadlock).  Opening tries such steps again for up to busy_ms:
 * *waited is the time spent so far; returns 1 to try again.
 */
static int
busy_again(flow__store *s, int rc, int *waited)
{
  if ((rc & 0xff) != SQLITE_BUSY || *waited >= flow__sq_busy_ms(s))
    return 0;
  int delay = *waited < 50 ? 1 + *waited : 50;
  sqlite3_sleep(delay);
  *waited += delay;
  return 1;
}

static int
pragma_int(flow__store *s, const char *sql, int *out, flow__err *err)
{
  int rc, waited = 0;
  do {
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(flow__sq_db(s), sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(st);
      if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
      }
    }
    sqlite3_finalize(st);
  } while (busy_again(s, rc, &waited));
  if (rc != SQLITE_OK && rc != SQLITE_DONE)
    return flow__sq_fail(s, err, rc, "reading the database header");
  return 0;
}

/* sqlite3_exec, with busy_again. */
int
flow__sq_exec_busy(flow__store *s, const char *sql)
{
  int rc, waited = 0;
  do
    rc = sqlite3_exec(flow__sq_db(s), sql, NULL, NULL, NULL);
  while (busy_again(s, rc, &waited));
  return rc;
}


/*
 * Brings the schema to SCHEMA_VERSION.  Several processes may open a new
 * or old file at the same moment: the version is read again inside the
 * write transaction that migrates, so only the first one migrates and the
 * others find the work done.
 */
int
flow__sq_migrate(flow__store *s, const char *path, flow__err *err)
{
  int ver = 0, ntables = 0, rc;
  if ((rc = pragma_int(s, "PRAGMA user_version", &ver, err)) != 0)
    return rc;
  if (ver == SCHEMA_VERSION)
    return 0;
  rc = flow__sq_exec_busy(s, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK)
    return flow__sq_fail(s, err, rc, "starting the schema update");
  if ((rc = pragma_int(s, "PRAGMA user_version", &ver, err)) != 0)
    goto fail;
  if (ver > SCHEMA_VERSION) {
    rc = flow__err_set(err, FLOW_EIO,
                       "%s was written by a newer libflow (schema %d, this "
                       "build knows up to %d): upgrade libflow",
                       path, ver, SCHEMA_VERSION);
    goto fail;
  }
  if (ver == 0) {
    if ((rc = pragma_int(s,
                         "SELECT count(*) FROM sqlite_master WHERE type ="
                         " 'table'",
                         &ntables, err)) != 0)
      goto fail;
    if (ntables > 0) {
      rc = flow__err_set(err, FLOW_EIO,
                         "%s is an SQLite database that libflow did not "
                         "create: give libflow a new file name",
                         path);
      goto fail;
    }
  }
  for (int v = ver; v < SCHEMA_VERSION; v++) {
    char setver[64];
    snprintf(setver, sizeof setver, "PRAGMA user_version = %d", v + 1);
    if ((rc = exec_sql(s, migrations[v], err)) != 0 ||
        (v + 1 == 11 && (rc = flow__sq_convert_field_indexes(s, err)) != 0) ||
        (v + 1 == 12 && (rc = flow__sq_split_field_indexes(s, err)) != 0) ||
        (rc = exec_sql(s, setver, err)) != 0)
      goto fail;
  }
  if ((rc = exec_sql(s, "COMMIT", err)) == 0)
    return 0;
fail:
  sqlite3_exec(flow__sq_db(s), "ROLLBACK", NULL, NULL, NULL);
  return rc;
}
