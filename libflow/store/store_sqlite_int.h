/*
 * Shared by the files of the SQLite backend: store_sqlite.c (the
 * connection, services, cases, history, timers and the outbox),
 * store_sqlite_schema.c (the schema and its migrations),
 * store_sqlite_index.c (case_states and cases.keys, which keep a move's
 * writes small) and store_sqlite_work.c (tasks, incidents, messages and
 * correlation keys).  The connection structure stays private to
 * store_sqlite.c; the other files reach it through these few functions.
 */
#ifndef LIBFLOW_STORE_STORE_SQLITE_INT_H
#define LIBFLOW_STORE_STORE_SQLITE_INT_H

#include <sqlite3.h>

#include "store/store.h"

/* The page size of a new database file, as text for its PRAGMA (see
   sqlite_open for why 2 KB). */
#define FLOW__SQ_PAGE_SIZE "2048"

/* The key of history row seq (1 to FLOW__MAX_CASE_SEQ) of a case. */
#define FLOW__SQ_HISTORY_KEY(case_id, seq)                                     \
  "(" case_id " * 16777216 + " seq ")"

/* Statements of store_sqlite_work.c, prepared on first use. */
#define FLOW__SQ_WORK_STMTS 40
/* Savepoints open at once inside a transaction. */
#define FLOW__SQ_SAVEPOINTS 4

/* What store_sqlite_index.c keeps per connection. */
#define FLOW__SQ_PLACES_STMTS 6
typedef struct flow__sq_places {
  /* Entries of case_states not inserted yet: the cases that arrived in a
     state in the open transaction (id, and the state as an offset into
     arrived_names).  They go in together, FLOW__SQ_ARRIVALS_PER_STMT to
     a statement, before the commit, before anything reads case_states
     and when a savepoint begins (so a savepoint's are its own). */
  struct flow__sq_arrival {
    int64_t id;
    size_t name;
  } *arrived;
  size_t narrived, cap_arrived;
  char *arrived_names;
  size_t names_len, names_cap;
  /* Entries of case_states left behind by moves (the case left that
     state), removed at a commit once there are enough of them; how many
     there were when the transaction and its savepoint began, and whether
     a flush in this transaction sorted the list. */
  struct flow__sq_stale {
    int64_t id;
    char *state;
  } *stale;
  size_t nstale, cap_stale, txn_nstale;
  size_t sp_nstale[FLOW__SQ_SAVEPOINTS]; /* at each open savepoint */
  int flushed;
  /* The fields indexed, as of schema_version, and for each the UPDATE
     that copies its value from cases.keys into its own column (k_FIELD,
     where its index is), prepared on first use. */
  char **keys;
  sqlite3_stmt **key_set;
  sqlite3_stmt *key_insert; /* a new case and its fields' columns */
  size_t nkeys;
  int64_t keys_schema; /* -1: not read yet */
  int keys_checked;    /* schema_version looked at in this transaction */
  sqlite3_stmt *st[FLOW__SQ_PLACES_STMTS];
} flow__sq_places;

sqlite3 *flow__sq_db(flow__store *s);
int flow__sq_in_txn(flow__store *s);
int flow__sq_busy_ms(flow__store *s);
flow__sq_places *flow__sq_places_of(flow__store *s);

/* store_sqlite_schema.c: sqlite3_exec, trying again while another
   connection holds a lock SQLite will not wait for, up to the busy
   timeout; and the schema brought to this build's version (path for
   messages). */
int flow__sq_exec_busy(flow__store *s, const char *sql);
int flow__sq_migrate(flow__store *s, const char *path, flow__err *err);

/* store_sqlite_index.c.  A case arrived in state (its entry is kept if it
   is there already); a case moved from one state to another. */
int flow__sq_state_add(flow__store *s, int64_t id, const char *state,
                       flow__err *err);
int flow__sq_state_moved(flow__store *s, int64_t id, const char *from,
                         const char *to, flow__err *err);
/* The connection's transaction hooks: precommit removes a batch of stale
   entries inside the transaction about to commit. */
void flow__sq_places_begin(flow__store *s);
int flow__sq_places_precommit(flow__store *s, flow__err *err);
void flow__sq_places_rollback(flow__store *s);
int flow__sq_places_savepoint(flow__store *s, int depth, flow__err *err);
/* Inserts the entries of case_states noted in this transaction. */
int flow__sq_places_flush(flow__store *s, flow__err *err);
void flow__sq_places_rollback_to(flow__store *s, int depth);
/* Removes what is still noted (when the database lets it) and frees. */
void flow__sq_places_close(flow__store *s);
/* The indexed fields: read again when the schema changed; is field one;
   the function table's key_fields and index_field; schema 11's
   conversion of the indexes over data. */
int flow__sq_keys_load(flow__store *s, flow__err *err);
int flow__sq_key_indexed(flow__store *s, const char *field);
int flow__sq_key_fields(flow__store *s, const char *const **out, size_t *n,
                        flow__err *err);
int flow__sq_index_field(flow__store *s, const char *field, flow__err *err);
int flow__sq_convert_field_indexes(flow__store *s, flow__err *err);
/* Schema 12's conversion of the indexes over cases.keys into indexes over
   one column per field. */
int flow__sq_split_field_indexes(flow__store *s, flow__err *err);
/* Copies the indexed fields' values of case id from its keys into their
   columns (after keys was written): those whose bit is set in changed
   (flow__case_row.keys_changed), and of those only the ones that
   differ. */
int flow__sq_keys_write(flow__store *s, int64_t id, uint64_t changed,
                        flow__err *err);
/* The INSERT of a new case (cols, values: its columns and their values,
   keys the 13th) that also fills the indexed fields' columns from keys,
   so that each index gets its entry once; NULL with err set. */
sqlite3_stmt *flow__sq_keys_insert(flow__store *s, const char *cols,
                                   const char *values, flow__err *err);
const flow__allocator *flow__sq_alloc(flow__store *s);
/* The statement in slot idx, prepared from sql the first time; NULL with
   err set when it cannot be prepared. */
sqlite3_stmt *flow__sq_stmt(flow__store *s, int idx, const char *sql,
                            flow__err *err);

/* An SQLite failure as a FLOW_E* code with a message naming what. */
int flow__sq_fail(flow__store *s, flow__err *err, int rc, const char *what);
/* Runs a statement that returns no rows, then resets it. */
int flow__sq_done(flow__store *s, sqlite3_stmt *st, flow__err *err,
                  const char *what);
void flow__sq_bind_text(sqlite3_stmt *st, int idx, const char *v);
/* A time column: FLOW__NO_TIME for NULL. */
int64_t flow__sq_col_time(sqlite3_stmt *st, int col);
void flow__sq_bind_time(sqlite3_stmt *st, int idx, int64_t t);

/* store_sqlite_work.c, for the function table. */
int flow__sq_task_add(flow__store *s, const flow__task_row *row, int64_t *id,
                      flow__err *err);
int flow__sq_task_claim(flow__store *s, int64_t id, const char *claimer,
                        int *claimed, flow__err *err);
int flow__sq_task_set(flow__store *s, int64_t id, const char *expect,
                      const char *expect_by, const flow__task_row *row,
                      int *set, flow__err *err);
int flow__sq_task_list(flow__store *s, const flow__task_query *q, size_t max,
                       int (*each)(void *ctx, const flow__task_row *row),
                       void *ctx, flow__err *err);
int flow__sq_task_end_case(flow__store *s, int64_t case_id,
                           const char *state, const char *why, int64_t at,
                           int (*each)(void *ctx, const flow__task_row *row),
                           void *ctx, flow__err *err);
int flow__sq_task_cancel_named(flow__store *s, int64_t case_id,
                               const char *name, const char *why, int64_t at,
                               int (*each)(void *ctx,
                                           const flow__task_row *row),
                               void *ctx, flow__err *err);
int flow__sq_incident_add(flow__store *s, const flow__incident_row *row,
                          int64_t *id, flow__err *err);
int flow__sq_incident_list(flow__store *s, int64_t id, int64_t case_id,
                           const char *status, size_t max,
                           int (*each)(void *ctx,
                                       const flow__incident_row *row),
                           void *ctx, flow__err *err);
int flow__sq_incident_set(flow__store *s, int64_t id, const char *status,
                          const char *code, const char *error,
                          const char *by, int64_t at, int *set,
                          flow__err *err);
int flow__sq_incident_source_done(flow__store *s, const char *source,
                                  int64_t source_id, const char *status,
                                  int64_t at, flow__err *err);
int flow__sq_message_add(flow__store *s, const flow__message_row *row,
                         int64_t *id, flow__err *err);
int flow__sq_message_list(flow__store *s, const flow__message_query *q,
                          size_t max,
                          int (*each)(void *ctx, const flow__message_row *row),
                          void *ctx, flow__err *err);
int flow__sq_message_set(flow__store *s, int64_t id, const char *expect,
                         const char *status, int64_t case_id, int64_t at,
                         int *set, flow__err *err);
int flow__sq_message_expire(flow__store *s, int64_t now, size_t max,
                            int (*each)(void *ctx,
                                        const flow__message_row *row),
                            void *ctx, flow__err *err);
int flow__sq_message_next_expiry(flow__store *s, int64_t *out,
                                 flow__err *err);
int flow__sq_message_matched(flow__store *s, size_t max,
                             int (*each)(void *ctx,
                                         const flow__message_row *row),
                             void *ctx, flow__err *err);
int flow__sq_correl_find(flow__store *s, const char *name, const char *key,
                         int64_t *case_id, flow__err *err);
int flow__sq_correl_put(flow__store *s, const char *name, const char *key,
                        int64_t case_id, flow__err *err);
int flow__sq_correl_drop(flow__store *s, int64_t case_id, const char *name,
                         flow__err *err);

int flow__sq_case_sla(flow__store *s, const flow__case_row *row,
                      flow__err *err);
int flow__sq_sla_timers_drop(flow__store *s, int64_t case_id, flow__err *err);
int flow__sq_sla_timers_pause(flow__store *s, int64_t case_id,
                              flow__err *err);
int flow__sq_sla_timers_resume(flow__store *s, int64_t case_id,
                               int (*shift)(void *ctx, int64_t due,
                                            const char *payload,
                                            int64_t *out),
                               void *ctx, flow__err *err);
int flow__sq_sla_log_each(flow__store *s, int64_t case_id,
                          int (*each)(void *ctx, int64_t seq,
                                      const char *change, int64_t at,
                                      int64_t due_at, const char *detail),
                          void *ctx, flow__err *err);

#endif /* LIBFLOW_STORE_STORE_SQLITE_INT_H */
