/*
 * The SQLite backend's tables for work around cases: tasks for people,
 * incidents, messages and the correlation keys of open cases.  Every
 * change of status is conditional on the status the caller read
 * ("... WHERE id = ?1 AND status = ?2"), and sqlite3_changes() tells
 * whether it happened: that is how a task is claimed once and a message
 * delivered once, whichever connection asks first.
 */
#include "store/store_sqlite_int.h"

#include <string.h>

enum {
  W_TASK_ADD,
  W_TASK_CLAIM,
  W_TASK_SET,
  W_TASK_LIST,
  W_TASK_END_ALL,
  W_TASK_END_STATE,
  W_TASK_END_NAMED,
  W_INCIDENT_ADD,
  W_INCIDENT_LIST,
  W_INCIDENT_SET,
  W_INCIDENT_TIMER_DONE,
  W_INCIDENT_REQUEST_DONE,
  W_MESSAGE_ADD,
  W_MESSAGE_LIST,
  W_MESSAGE_SET,
  W_MESSAGE_EXPIRE,
  W_MESSAGE_NEXT_EXPIRY,
  W_MESSAGE_MATCHED,
  W_CORREL_FIND,
  W_CORREL_PUT,
  W_CORREL_DROP,
  W_CORREL_DROP_ALL,
  W_CASE_SLA,
  W_SLA_DROP,
  W_SLA_PAUSE,
  W_SLA_PAUSED,
  W_SLA_RESUME,
  W_SLA_LOG_EACH,
  W_COUNT
};

#define TASK_COLS                                                              \
  "id, case_id, seq, n, name, title, team, assignee, due_at, data, done,"     \
  " state, status, claimed_by, outcome, finished_by, created_at,"             \
  " finished_at, roles"
#define INCIDENT_COLS                                                          \
  "id, case_id, source, source_id, kind, event, payload, origin, target,"     \
  " code, error, status, attempts, raised_at, finished_at, finished_by"
#define MESSAGE_COLS                                                           \
  "id, name, key, payload, status, case_id, created_at, expires_at,"          \
  " finished_at"

#define SLA_KINDS "kind IN ('sla_breached', 'sla_warning')"

static const char *const wsql[W_COUNT] = {
  [W_CASE_SLA] = "UPDATE cases SET due_at = ?2, sla_paused_at = ?3"
                 " WHERE id = ?1",
  [W_SLA_DROP] = "DELETE FROM timers WHERE case_id = ?1 AND " SLA_KINDS
                 " AND status IN ('pending', 'paused')",
  [W_SLA_PAUSE] = "UPDATE timers SET status = 'paused' WHERE case_id = ?1"
                  " AND " SLA_KINDS " AND status = 'pending'",
  [W_SLA_PAUSED] = "SELECT id, due_at, payload FROM timers WHERE"
                   " case_id = ?1 AND status = 'paused' ORDER BY id"
                   " LIMIT 8",
  [W_SLA_RESUME] = "UPDATE timers SET status = 'pending', due_at = ?2"
                   " WHERE id = ?1 AND status = 'paused'",
  /* A transition's service-level changes are in its history row, as
     [n, change, at, due_at, detail] entries of history.sla. */
  [W_SLA_LOG_EACH] = "SELECT h.seq, j.value ->> 1, j.value ->> 2,"
                     " j.value ->> 3, j.value -> 4 FROM history h,"
                     " json_each(h.sla) j WHERE h.rid BETWEEN "
                     FLOW__SQ_HISTORY_KEY("?1", "1") " AND "
                     FLOW__SQ_HISTORY_KEY("?1", "16777215")
                     " AND h.sla IS NOT NULL ORDER BY h.rid, j.value ->> 0",
  [W_TASK_ADD] = "INSERT INTO tasks(case_id, seq, n, name, title, team,"
                 " assignee, due_at, data, done, state, created_at, roles)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                 " ?13)",
  [W_TASK_CLAIM] = "UPDATE tasks SET status = 'claimed', claimed_by = ?2"
                   " WHERE id = ?1 AND status = 'open'",
  [W_TASK_SET] = "UPDATE tasks SET status = ?4, claimed_by = ?5,"
                 " outcome = ?6, finished_by = ?7, finished_at = ?8"
                 " WHERE id = ?1 AND status = ?2 AND (?3 IS NULL OR"
                 " claimed_by = ?3)",
  [W_TASK_LIST] = "SELECT " TASK_COLS " FROM tasks WHERE (?1 = 0 OR id = ?1)"
                  " AND (?2 = 0 OR case_id = ?2) AND (?3 IS NULL OR"
                  " team = ?3) AND (?4 IS NULL OR assignee = ?4 OR"
                  " claimed_by = ?4) AND (?5 IS NULL OR status = ?5) AND"
                  " (?6 = 0 OR (status IN ('open', 'claimed') AND"
                  " due_at < ?6)) ORDER BY id LIMIT ?7",
  [W_TASK_END_ALL] = "UPDATE tasks SET status = 'cancelled',"
                     " finished_by = ?2, finished_at = ?3 WHERE"
                     " case_id = ?1 AND status IN ('open', 'claimed')"
                     " RETURNING " TASK_COLS,
  [W_TASK_END_NAMED] = "UPDATE tasks SET status = 'cancelled',"
                       " finished_by = ?2, finished_at = ?3 WHERE"
                       " case_id = ?1 AND status IN ('open', 'claimed')"
                       " AND name = ?4 RETURNING " TASK_COLS,
  [W_TASK_END_STATE] = "UPDATE tasks SET status = 'cancelled',"
                       " finished_by = ?2, finished_at = ?3 WHERE"
                       " case_id = ?1 AND status IN ('open', 'claimed')"
                       " AND state IS NOT NULL AND state <> ?4"
                       " RETURNING " TASK_COLS,
  [W_INCIDENT_ADD] = "INSERT INTO incidents(case_id, source, source_id,"
                     " kind, event, payload, origin, target, code, error,"
                     " raised_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
                     " ?9, ?10, ?11)",
  [W_INCIDENT_LIST] = "SELECT " INCIDENT_COLS " FROM incidents WHERE"
                      " (?1 = 0 OR id = ?1) AND (?2 = 0 OR case_id = ?2)"
                      " AND (?3 IS NULL OR status = ?3) ORDER BY id"
                      " LIMIT ?4",
  [W_INCIDENT_SET] = "UPDATE incidents SET status = ?2,"
                     " code = COALESCE(?3, code), error = COALESCE(?4,"
                     " error), attempts = attempts + (?2 = 'open'),"
                     " finished_by = ?5, finished_at = CASE WHEN ?2 ="
                     " 'open' THEN NULL ELSE ?6 END WHERE id = ?1 AND"
                     " status = 'open'",
  [W_INCIDENT_TIMER_DONE] = "DELETE FROM timers WHERE id = ?1 AND"
                            " status = 'incident'",
  [W_INCIDENT_REQUEST_DONE] = "UPDATE outbox SET status = ?2,"
                              " finished_at = ?3 WHERE id = ?1 AND"
                              " status = 'incident'",
  [W_MESSAGE_ADD] = "INSERT INTO messages(name, key, payload, status,"
                    " case_id, created_at, expires_at, finished_at) VALUES"
                    " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
  [W_MESSAGE_LIST] = "SELECT " MESSAGE_COLS " FROM messages WHERE"
                     " (?1 = 0 OR id = ?1) AND (?2 IS NULL OR name = ?2)"
                     " AND (?3 IS NULL OR key = ?3) AND (?4 IS NULL OR"
                     " status = ?4) ORDER BY id LIMIT ?5",
  [W_MESSAGE_SET] = "UPDATE messages SET status = ?3, case_id = ?4,"
                    " finished_at = ?5 WHERE id = ?1 AND status = ?2",
  [W_MESSAGE_EXPIRE] = "UPDATE messages SET status = 'expired',"
                       " finished_at = ?1 WHERE id IN (SELECT id FROM"
                       " messages WHERE status = 'buffered' AND"
                       " expires_at <= ?1 ORDER BY expires_at LIMIT ?2)"
                       " RETURNING " MESSAGE_COLS,
  [W_MESSAGE_NEXT_EXPIRY] = "SELECT MIN(expires_at) FROM messages WHERE"
                            " status = 'buffered'",
  [W_MESSAGE_MATCHED] = "SELECT m.id, m.name, m.key, m.payload, m.status,"
                        " c.case_id, m.created_at, m.expires_at,"
                        " m.finished_at FROM messages m JOIN correlations"
                        " c ON c.name = m.name AND c.key = m.key WHERE"
                        " m.status = 'buffered' ORDER BY m.id LIMIT ?1",
  [W_CORREL_FIND] = "SELECT case_id FROM correlations WHERE name = ?1 AND"
                    " key = ?2",
  [W_CORREL_PUT] = "INSERT INTO correlations(name, key, case_id) VALUES"
                   " (?1, ?2, ?3)",
  [W_CORREL_DROP] = "DELETE FROM correlations WHERE case_id = ?1 AND"
                    " name = ?2",
  [W_CORREL_DROP_ALL] = "DELETE FROM correlations WHERE case_id = ?1",
};

_Static_assert(W_COUNT <= FLOW__SQ_WORK_STMTS, "raise FLOW__SQ_WORK_STMTS");

static sqlite3_stmt *
stmt(flow__store *s, int idx, flow__err *err)
{
  return flow__sq_stmt(s, idx, wsql[idx], err);
}

static sqlite3_int64
limit_of(size_t max)
{
  return max > INT64_MAX ? INT64_MAX : (sqlite3_int64)max;
}

/* Runs st (no rows) and says in *changed whether it changed one. */
static int
done_changed(flow__store *s, sqlite3_stmt *st, int *changed, flow__err *err,
             const char *what)
{
  int rc = flow__sq_done(s, st, err, what);
  if (changed)
    *changed = rc == 0 && sqlite3_changes(flow__sq_db(s)) == 1;
  return rc;
}

static const char *
col_text(sqlite3_stmt *st, int col)
{
  return (const char *)sqlite3_column_text(st, col);
}

/*
 * Steps st, reading each row with read (0, or -1 when SQLite ran out of
 * memory for a text) and handing it to each; *found (may be NULL) is set
 * when a row was seen.
 */
typedef int (*read_fn)(sqlite3_stmt *st, void *row);

static int
each_row(flow__store *s, sqlite3_stmt *st, read_fn read, void *row,
         int (*each)(void *ctx, const void *row), void *ctx, int *found,
         flow__err *err, const char *what)
{
  int rc, ret = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (read(st, row) != 0) {
      ret = flow__err_set(err, FLOW_ENOMEM, "out of memory reading %s", what);
      break;
    }
    if (found)
      *found = 1;
    if (each && (ret = each(ctx, row)) != 0) {
      flow__err_set(err, ret, "reading %s: stopped by the caller", what);
      break;
    }
  }
  if (ret == 0 && rc != SQLITE_DONE)
    ret = flow__sq_fail(s, err, rc, what);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return ret;
}

/* ---- tasks ------------------------------------------------------------- */

static int
read_task(sqlite3_stmt *st, void *p)
{
  flow__task_row *r = p;
  r->id = sqlite3_column_int64(st, 0);
  r->case_id = sqlite3_column_int64(st, 1);
  r->seq = sqlite3_column_int64(st, 2);
  r->n = sqlite3_column_int(st, 3);
  r->name = col_text(st, 4);
  r->title = col_text(st, 5);
  r->team = col_text(st, 6);
  r->assignee = col_text(st, 7);
  r->due_at = flow__sq_col_time(st, 8);
  r->form = col_text(st, 9);
  r->done = col_text(st, 10);
  r->state = col_text(st, 11);
  r->status = col_text(st, 12);
  r->claimed_by = col_text(st, 13);
  r->outcome = col_text(st, 14);
  r->finished_by = col_text(st, 15);
  r->created_at = sqlite3_column_int64(st, 16);
  r->finished_at = flow__sq_col_time(st, 17);
  r->roles = col_text(st, 18);
  return r->name && r->form && r->status ? 0 : -1;
}

int
flow__sq_task_add(flow__store *s, const flow__task_row *r, int64_t *id,
                  flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_TASK_ADD, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, r->case_id);
  sqlite3_bind_int64(st, 2, r->seq);
  sqlite3_bind_int(st, 3, r->n);
  sqlite3_bind_text(st, 4, r->name, -1, SQLITE_STATIC);
  flow__sq_bind_text(st, 5, r->title);
  flow__sq_bind_text(st, 6, r->team);
  flow__sq_bind_text(st, 7, r->assignee);
  flow__sq_bind_time(st, 8, r->due_at);
  sqlite3_bind_text(st, 9, r->form ? r->form : "{}", -1, SQLITE_STATIC);
  flow__sq_bind_text(st, 10, r->done);
  flow__sq_bind_text(st, 11, r->state);
  sqlite3_bind_int64(st, 12, r->created_at);
  flow__sq_bind_text(st, 13, r->roles);
  int rc = flow__sq_done(s, st, err, "writing a task");
  if (rc == 0 && id)
    *id = sqlite3_last_insert_rowid(flow__sq_db(s));
  return rc;
}

int
flow__sq_task_claim(flow__store *s, int64_t id, const char *claimer,
                    int *claimed, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_TASK_CLAIM, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_text(st, 2, claimer, -1, SQLITE_STATIC);
  return done_changed(s, st, claimed, err, "claiming a task");
}

int
flow__sq_task_set(flow__store *s, int64_t id, const char *expect,
                  const char *expect_by, const flow__task_row *r, int *set,
                  flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_TASK_SET, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_text(st, 2, expect, -1, SQLITE_STATIC);
  flow__sq_bind_text(st, 3, expect_by);
  sqlite3_bind_text(st, 4, r->status, -1, SQLITE_STATIC);
  flow__sq_bind_text(st, 5, r->claimed_by);
  flow__sq_bind_text(st, 6, r->outcome);
  flow__sq_bind_text(st, 7, r->finished_by);
  flow__sq_bind_time(st, 8, r->finished_at);
  return done_changed(s, st, set, err, "updating a task");
}

int
flow__sq_task_list(flow__store *s, const flow__task_query *q, size_t max,
                   int (*each)(void *ctx, const flow__task_row *row),
                   void *ctx, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_TASK_LIST, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, q->id);
  sqlite3_bind_int64(st, 2, q->case_id);
  flow__sq_bind_text(st, 3, q->team);
  flow__sq_bind_text(st, 4, q->assignee);
  flow__sq_bind_text(st, 5, q->status);
  sqlite3_bind_int64(st, 6, q->due_before);
  sqlite3_bind_int64(st, 7, limit_of(max));
  flow__task_row row;
  return each_row(s, st, read_task, &row,
                  (int (*)(void *, const void *))each, ctx, NULL, err,
                  "tasks");
}

int
flow__sq_task_end_case(flow__store *s, int64_t case_id, const char *state,
                       const char *why, int64_t at,
                       int (*each)(void *ctx, const flow__task_row *row),
                       void *ctx, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, state ? W_TASK_END_STATE : W_TASK_END_ALL, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, case_id);
  sqlite3_bind_text(st, 2, why, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, at);
  if (state)
    sqlite3_bind_text(st, 4, state, -1, SQLITE_STATIC);
  flow__task_row row;
  return each_row(s, st, read_task, &row,
                  (int (*)(void *, const void *))each, ctx, NULL, err,
                  "ending tasks");
}

int
flow__sq_task_cancel_named(flow__store *s, int64_t case_id, const char *name,
                           const char *why, int64_t at,
                           int (*each)(void *ctx, const flow__task_row *row),
                           void *ctx, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_TASK_END_NAMED, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, case_id);
  sqlite3_bind_text(st, 2, why, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, at);
  sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
  flow__task_row row;
  return each_row(s, st, read_task, &row,
                  (int (*)(void *, const void *))each, ctx, NULL, err,
                  "cancelling tasks");
}

/* ---- incidents --------------------------------------------------------- */

static int
read_incident(sqlite3_stmt *st, void *p)
{
  flow__incident_row *r = p;
  r->id = sqlite3_column_int64(st, 0);
  r->case_id = sqlite3_column_int64(st, 1);
  r->source = col_text(st, 2);
  r->source_id = sqlite3_column_int64(st, 3);
  r->kind = sqlite3_column_int(st, 4);
  r->event = col_text(st, 5);
  r->payload = col_text(st, 6);
  r->origin = col_text(st, 7);
  r->target = col_text(st, 8);
  r->code = col_text(st, 9);
  r->error = col_text(st, 10);
  r->status = col_text(st, 11);
  r->attempts = sqlite3_column_int(st, 12);
  r->raised_at = sqlite3_column_int64(st, 13);
  r->finished_at = flow__sq_col_time(st, 14);
  r->finished_by = col_text(st, 15);
  return r->source && r->event && r->payload && r->code && r->error &&
                 r->status
             ? 0
             : -1;
}

int
flow__sq_incident_add(flow__store *s, const flow__incident_row *r,
                      int64_t *id, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_INCIDENT_ADD, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, r->case_id);
  sqlite3_bind_text(st, 2, r->source, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, r->source_id);
  sqlite3_bind_int(st, 4, r->kind);
  sqlite3_bind_text(st, 5, r->event, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, r->payload ? r->payload : "{}", -1,
                    SQLITE_STATIC);
  flow__sq_bind_text(st, 7, r->origin);
  flow__sq_bind_text(st, 8, r->target);
  sqlite3_bind_text(st, 9, r->code, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 10, r->error, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 11, r->raised_at);
  int rc = flow__sq_done(s, st, err, "recording an incident");
  if (rc == 0 && id)
    *id = sqlite3_last_insert_rowid(flow__sq_db(s));
  return rc;
}

int
flow__sq_incident_list(flow__store *s, int64_t id, int64_t case_id,
                       const char *status, size_t max,
                       int (*each)(void *ctx, const flow__incident_row *row),
                       void *ctx, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_INCIDENT_LIST, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, case_id);
  flow__sq_bind_text(st, 3, status);
  sqlite3_bind_int64(st, 4, limit_of(max));
  flow__incident_row row;
  return each_row(s, st, read_incident, &row,
                  (int (*)(void *, const void *))each, ctx, NULL, err,
                  "incidents");
}

int
flow__sq_incident_set(flow__store *s, int64_t id, const char *status,
                      const char *code, const char *error, const char *by,
                      int64_t at, int *set, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_INCIDENT_SET, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
  flow__sq_bind_text(st, 3, code);
  flow__sq_bind_text(st, 4, error);
  flow__sq_bind_text(st, 5, by);
  sqlite3_bind_int64(st, 6, at);
  return done_changed(s, st, set, err, "settling an incident");
}

int
flow__sq_incident_source_done(flow__store *s, const char *source,
                              int64_t source_id, const char *status,
                              int64_t at, flow__err *err)
{
  int timer = strcmp(source, "timer") == 0;
  if (!timer && strcmp(source, "action") != 0)
    return 0; /* tasks and messages are settled by their own rows */
  sqlite3_stmt *st =
      stmt(s, timer ? W_INCIDENT_TIMER_DONE : W_INCIDENT_REQUEST_DONE, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, source_id);
  if (!timer) {
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, at);
  }
  return flow__sq_done(s, st, err, "settling an incident's source");
}

/* ---- messages ---------------------------------------------------------- */

static int
read_message(sqlite3_stmt *st, void *p)
{
  flow__message_row *r = p;
  r->id = sqlite3_column_int64(st, 0);
  r->name = col_text(st, 1);
  r->key = col_text(st, 2);
  r->payload = col_text(st, 3);
  r->status = col_text(st, 4);
  r->case_id = sqlite3_column_int64(st, 5);
  r->created_at = sqlite3_column_int64(st, 6);
  r->expires_at = sqlite3_column_int64(st, 7);
  r->finished_at = flow__sq_col_time(st, 8);
  return r->name && r->key && r->payload && r->status ? 0 : -1;
}

int
flow__sq_message_add(flow__store *s, const flow__message_row *r, int64_t *id,
                     flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_MESSAGE_ADD, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, r->key, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, r->payload ? r->payload : "{}", -1,
                    SQLITE_STATIC);
  sqlite3_bind_text(st, 4, r->status ? r->status : "buffered", -1,
                    SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, r->case_id);
  sqlite3_bind_int64(st, 6, r->created_at);
  sqlite3_bind_int64(st, 7, r->expires_at);
  flow__sq_bind_time(st, 8, r->finished_at);
  int rc = flow__sq_done(s, st, err, "keeping a message");
  if (rc == 0 && id)
    *id = sqlite3_last_insert_rowid(flow__sq_db(s));
  return rc;
}

int
flow__sq_message_list(flow__store *s, const flow__message_query *q,
                      size_t max,
                      int (*each)(void *ctx, const flow__message_row *row),
                      void *ctx, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_MESSAGE_LIST, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, q->id);
  flow__sq_bind_text(st, 2, q->name);
  flow__sq_bind_text(st, 3, q->key);
  flow__sq_bind_text(st, 4, q->status);
  sqlite3_bind_int64(st, 5, limit_of(max));
  flow__message_row row;
  return each_row(s, st, read_message, &row,
                  (int (*)(void *, const void *))each, ctx, NULL, err,
                  "messages");
}

int
flow__sq_message_set(flow__store *s, int64_t id, const char *expect,
                     const char *status, int64_t case_id, int64_t at,
                     int *set, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_MESSAGE_SET, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_text(st, 2, expect, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, case_id);
  flow__sq_bind_time(st, 5, strcmp(status, "buffered") == 0 ? FLOW__NO_TIME
                                                             : at);
  return done_changed(s, st, set, err, "updating a message");
}

int
flow__sq_message_expire(flow__store *s, int64_t now, size_t max,
                        int (*each)(void *ctx, const flow__message_row *row),
                        void *ctx, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_MESSAGE_EXPIRE, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int64(st, 2, limit_of(max));
  flow__message_row row;
  return each_row(s, st, read_message, &row,
                  (int (*)(void *, const void *))each, ctx, NULL, err,
                  "expiring messages");
}

int
flow__sq_message_next_expiry(flow__store *s, int64_t *out, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_MESSAGE_NEXT_EXPIRY, err);
  if (st == NULL)
    return err->code;
  int rc = sqlite3_step(st);
  *out = INT64_MAX;
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    *out = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  if (rc != SQLITE_ROW)
    return flow__sq_fail(s, err, rc, "reading messages");
  return 0;
}

int
flow__sq_message_matched(flow__store *s, size_t max,
                         int (*each)(void *ctx, const flow__message_row *row),
                         void *ctx, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_MESSAGE_MATCHED, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, limit_of(max));
  flow__message_row row;
  return each_row(s, st, read_message, &row,
                  (int (*)(void *, const void *))each, ctx, NULL, err,
                  "messages");
}

/* ---- correlation keys -------------------------------------------------- */

int
flow__sq_correl_find(flow__store *s, const char *name, const char *key,
                     int64_t *case_id, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_CORREL_FIND, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW)
    *case_id = sqlite3_column_int64(st, 0);
  else if (rc == SQLITE_DONE)
    ret = flow__err_set(err, FLOW_ENOTFOUND,
                        "no open case waits for message '%s' with key '%s'",
                        name, key);
  else
    ret = flow__sq_fail(s, err, rc, "reading correlation keys");
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return ret;
}

int
flow__sq_correl_put(flow__store *s, const char *name, const char *key,
                    int64_t case_id, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_CORREL_PUT, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, case_id);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc == SQLITE_DONE)
    return 0;
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
    return flow__err_set(err, FLOW_ECONFLICT,
                         "another open case already has key '%s' for "
                         "message '%s'",
                         key, name);
  return flow__sq_fail(s, err, rc, "writing a correlation key");
}

int
flow__sq_correl_drop(flow__store *s, int64_t case_id, const char *name,
                     flow__err *err)
{
  sqlite3_stmt *st = stmt(s, name ? W_CORREL_DROP : W_CORREL_DROP_ALL, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, case_id);
  if (name)
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
  return flow__sq_done(s, st, err, "dropping correlation keys");
}

/* ---- service levels --------------------------------------------------- */

int
flow__sq_case_sla(flow__store *s, const flow__case_row *row, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_CASE_SLA, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, row->id);
  flow__sq_bind_time(st, 2, row->due_at);
  flow__sq_bind_time(st, 3, row->paused_at);
  int rc = flow__sq_done(s, st, err, "writing a service level");
  sqlite3_clear_bindings(st);
  return rc;
}

static int
sla_case_op(flow__store *s, int which, int64_t case_id, const char *what,
            flow__err *err)
{
  sqlite3_stmt *st = stmt(s, which, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, case_id);
  return flow__sq_done(s, st, err, what);
}

int
flow__sq_sla_timers_drop(flow__store *s, int64_t case_id, flow__err *err)
{
  return sla_case_op(s, W_SLA_DROP, case_id, "dropping service-level timers",
                     err);
}

int
flow__sq_sla_timers_pause(flow__store *s, int64_t case_id, flow__err *err)
{
  return sla_case_op(s, W_SLA_PAUSE, case_id, "pausing service-level timers",
                     err);
}

int
flow__sq_sla_timers_resume(flow__store *s, int64_t case_id,
                           int (*shift)(void *ctx, int64_t due,
                                        const char *payload, int64_t *out),
                           void *ctx, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_SLA_PAUSED, err);
  if (st == NULL)
    return err->code;
  /* Read them all first: the updates below change the rows read. */
  int64_t ids[8], dues[8];
  size_t n = 0;
  int rc = 0, step;
  sqlite3_bind_int64(st, 1, case_id);
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW && n < 8) {
    ids[n] = sqlite3_column_int64(st, 0);
    const char *payload = (const char *)sqlite3_column_text(st, 2);
    rc = shift(ctx, sqlite3_column_int64(st, 1), payload ? payload : "{}",
               &dues[n]);
    if (rc != 0)
      rc = flow__err_set(err, rc, "a service level's due time overflows");
    n++;
  }
  if (rc == 0 && step != SQLITE_ROW && step != SQLITE_DONE)
    rc = flow__sq_fail(s, err, step, "reading service-level timers");
  sqlite3_reset(st);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    sqlite3_stmt *up = stmt(s, W_SLA_RESUME, err);
    if (up == NULL)
      return err->code;
    sqlite3_bind_int64(up, 1, ids[i]);
    sqlite3_bind_int64(up, 2, dues[i]);
    rc = flow__sq_done(s, up, err, "resuming service-level timers");
  }
  return rc;
}

int
flow__sq_sla_log_each(flow__store *s, int64_t case_id,
                      int (*each)(void *ctx, int64_t seq, const char *change,
                                  int64_t at, int64_t due_at,
                                  const char *detail),
                      void *ctx, flow__err *err)
{
  sqlite3_stmt *st = stmt(s, W_SLA_LOG_EACH, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_int64(st, 1, case_id);
  int rc = 0, step;
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
    const char *change = (const char *)sqlite3_column_text(st, 1);
    const char *detail = (const char *)sqlite3_column_text(st, 4);
    rc = each(ctx, sqlite3_column_int64(st, 0), change ? change : "",
              sqlite3_column_int64(st, 2), flow__sq_col_time(st, 3),
              detail ? detail : "{}");
    if (rc != 0)
      flow__err_set(err, rc, "out of memory reading the service-level log");
  }
  if (rc == 0 && step != SQLITE_DONE)
    rc = flow__sq_fail(s, err, step, "reading the service-level log");
  sqlite3_reset(st);
  return rc;
}
