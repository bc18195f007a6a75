/*
 * The storage interface.  The engine talks to its database only through
 * this table of functions, so that a PostgreSQL backend can be added beside
 * the SQLite one without touching the engine (as SQLite's VFS and
 * libgit2's odb backends keep storage replaceable).
 *
 * What every backend guarantees (tests/unit/store/check_store_conformance.c
 * checks each of them, on one connection and on two sharing a database):
 *
 *  - Transactions.  Every write happens between begin() and commit() or
 *    rollback(), and is all or nothing; several engines, in one process or
 *    several, may share one database.  begin() promises no lock by itself:
 *    a transition takes its case with case_lock() and a due timer with
 *    timer_claim(), and from then until the transaction ends no other
 *    connection changes that row.  (SQLite takes the whole database at
 *    begin(), which is one way to keep that promise; a backend with row
 *    locks takes only the rows named.)  A conflict may be reported as
 *    FLOW_EBUSY by any call; the engine then rolls back and the caller may
 *    try again.
 *  - Case ids.  case_new_id() hands out an id no committed case has had,
 *    even one deleted since, on any connection; ids grow.
 *  - Timers.  A due timer is fired by exactly one claimer (timer_claim).
 *  - Requests and tasks.  An outbox request is taken by one engine at a
 *    time, for a lease, and again when the lease runs out; a settled one
 *    never again, and an attempt is settled once.  A task is given to one
 *    claimer, and moves on (task_set) only from the status it was read
 *    in; so do incidents and messages: a message is delivered once.
 *  - Correlation keys.  A (message name, key) pair names at most one
 *    open case (correl_put refuses a second with FLOW_ECONFLICT).
 *  - Wake-ups.  changed_elsewhere() tells an engine that another
 *    connection committed, so that its cached view (the next timer due)
 *    must be read again.
 *
 * What the engine does itself, so that no backend has to: it knows which
 * of its calls wrote (group commit redoes a group when a call refused
 * after writing), and it batches the cases whose cancelled timers are to
 * be removed, in whatever number; the backend splits a batch as its
 * statements need.
 *
 * Rows cross the interface as plain structs whose strings are allocated on
 * the engine allocator; flow__case_row_clear() releases them.
 */
#ifndef LIBFLOW_STORE_STORE_H
#define LIBFLOW_STORE_STORE_H

#include <jansson.h>

#include "util/util.h"

typedef struct flow__store flow__store;

typedef struct flow__store_config {
  const flow__allocator *alloc;
  flow_sync_mode synchronous;
  int busy_timeout_ms;
} flow__store_config;

typedef struct flow__case_row {
  int64_t id;
  char *service;
  int64_t version;
  char *state;
  int closed;
  char *data;        /* compact JSON object text */
  int64_t opened_at, updated_at, due_at; /* due_at may be FLOW__NO_TIME */
  int64_t seq;
  int64_t seed;
  int has_tasks;     /* 1 once a task was created for the case */
  int64_t paused_at; /* its service level's clock stopped then, or
                        FLOW__NO_TIME (read; written by case_sla) */
  /* The values of the fields the database indexes (key_fields), as a
     compact JSON object with sorted keys, or NULL when the data has none
     of them.  Written by case_insert and case_update; keys_changed says
     which values changed, bit i for the i-th of key_fields (bit 63 for
     the 64th and after), so that only their indexes are written. */
  char *keys;
  uint64_t keys_changed;
} flow__case_row;

typedef struct flow__history_row {
  int64_t case_id;
  int64_t seq;
  int64_t at;
  const char *actor;   /* JSON {"id","roles"} */
  const char *event;
  const char *payload; /* JSON object text */
  const char *from;    /* NULL for the opening */
  const char *to;
  /* The transition's service-level changes, a JSON array of [n, change,
     at, due_at (null when none), detail (a JSON object)], or NULL. */
  const char *sla;
} flow__history_row;

typedef struct flow__service_row {
  char *name;
  int64_t version;
  char *title;
  char *source;
  size_t source_len;
  char *sha256;
  char *chunkname;
  int64_t loaded_at;
} flow__service_row;

/* A durable timer.  kind: "after" (a state's `after` entry), "timer"
   (flow.after/flow.at or an `after` entry naming an event),
   "sla_warning", "sla_breached", "task_due" (a task's due time: a note,
   no event). */
typedef struct flow__timer_row {
  int64_t id;
  int64_t case_id;
  int64_t due_at;
  const char *kind;
  const char *event;
  const char *payload;  /* JSON object text */
  const char *target;   /* state to go to ("after" kind), or NULL */
  const char *state;    /* the state that set it, NULL when kept */
  const char *status;   /* "pending" or "incident" */
  const char *error;    /* incident message, or NULL */
  int64_t set_seq;      /* the case's seq after the transition that set it */
} flow__timer_row;

/* A request of the action outbox (flow.call). */
typedef struct flow__request_row {
  int64_t id;
  int64_t case_id, seq; /* the transition that asked */
  int n;                /* its place among that transition's calls */
  const char *action;
  const char *args;     /* JSON object text */
  const char *key;      /* the idempotency key the host sees */
  const char *reply;    /* event for the result, or NULL */
  const char *fail;     /* event for the final failure, or NULL */
  int retry_max;        /* retries after the first attempt */
  int64_t backoff_ms;   /* the first retry's delay; doubles each time */
  int64_t timeout_ms;   /* an attempt's time to answer; 0: none */
  const char *status;   /* "pending", "done", "failed", "incident" */
  int attempts;         /* attempts begun */
  int64_t created_at;
  int64_t next_at;      /* not before: a retry's back-off */
  int64_t lease_until;  /* the attempt's hold; FLOW__NO_TIME: none */
  const char *error;    /* the last failure, or NULL */
  const char *result;   /* JSON text of the result, or NULL */
  int64_t finished_at;  /* FLOW__NO_TIME while pending */
} flow__request_row;

/* A task for people (flow.task).  status: "open", "claimed", "done",
   "cancelled". */
typedef struct flow__task_row {
  int64_t id;
  int64_t case_id, seq; /* the transition that created it */
  int n;                /* its place among that transition's tasks */
  const char *name;
  const char *title;    /* may be NULL */
  const char *team;     /* may be NULL */
  const char *assignee; /* may be NULL */
  int64_t due_at;       /* FLOW__NO_TIME: none */
  const char *form;     /* JSON object text: the outcome's fields */
  const char *done;     /* the event on completion, or NULL */
  const char *state;    /* the state that created it; NULL: kept */
  const char *status;
  const char *claimed_by;  /* NULL while unclaimed */
  const char *outcome;     /* JSON text once done, else NULL */
  const char *finished_by; /* who completed or cancelled it, or why */
  int64_t created_at;
  int64_t finished_at;     /* FLOW__NO_TIME while open or claimed */
  const char *roles;       /* JSON array text of the roles that may claim
                              and complete it; NULL: anyone */
} flow__task_row;

/* Which tasks task_list reads; zero/NULL members match any. */
typedef struct flow__task_query {
  int64_t id, case_id;
  const char *team, *assignee, *status;
  int64_t due_before; /* open or claimed, due before this; 0: any */
} flow__task_query;

/* An event that no caller could be told of was refused (store.h users:
   engine_incident.c).  source: "timer", "action", "task", "message";
   status: "open", "resolved", "dismissed". */
typedef struct flow__incident_row {
  int64_t id, case_id;
  const char *source;
  int64_t source_id;
  int kind;             /* how the event is applied again (FLOW__APPLY_*) */
  const char *event;
  const char *payload;  /* JSON object text */
  const char *origin;   /* JSON object text (ev.action...), or NULL */
  const char *target;   /* forced target state, or NULL */
  const char *code;     /* the FLOW_E* name of the refusal */
  const char *error;    /* its message */
  const char *status;
  int attempts;         /* times applied and refused */
  int64_t raised_at;
  int64_t finished_at;  /* FLOW__NO_TIME while open */
  const char *finished_by;
} flow__incident_row;

/* A message sent to a case by name and correlation key.  status:
   "buffered" (no case yet), "delivered", "expired", "incident". */
typedef struct flow__message_row {
  int64_t id;
  const char *name, *key;
  const char *payload;  /* JSON object text */
  const char *status;
  int64_t case_id;      /* 0 while buffered */
  int64_t created_at, expires_at;
  int64_t finished_at;  /* FLOW__NO_TIME while buffered */
} flow__message_row;

typedef struct flow__message_query {
  int64_t id;
  const char *name, *key, *status; /* NULL: any */
} flow__message_query;

typedef struct flow__store_vt {
  const char *name;
  int (*open)(flow__store **out, const char *path,
              const flow__store_config *cfg, flow__err *err);
  void (*close)(flow__store *s);

  int (*begin)(flow__store *s, flow__err *err);
  int (*commit)(flow__store *s, flow__err *err);
  void (*rollback)(flow__store *s);

  /* Services: get with version 0 is the newest.  FLOW_ENOTFOUND. */
  int (*service_get)(flow__store *s, const char *name, int64_t version,
                     flow__service_row *out, flow__err *err);
  int (*service_put)(flow__store *s, const flow__service_row *row,
                     flow__err *err);
  /* The newest stored version of name, without reading its source.
     FLOW_ENOTFOUND. */
  int (*service_newest)(flow__store *s, const char *name, int64_t *version,
                        flow__err *err);
  int (*service_list)(flow__store *s, json_t **out, flow__err *err);
  /* An index on the field's value in cases.keys (filled for the cases
     there already), for fields marked index = true. */
  int (*index_field)(flow__store *s, const char *field, flow__err *err);
  /* The fields the database indexes (every connection's index_field),
     as the open transaction sees them: *out (borrowed until the next
     call) gets n names. */
  int (*key_fields)(flow__store *s, const char *const **out, size_t *n,
                    flow__err *err);

  /* Cases.  A new case id, inside a transaction (see the guarantees
     above): greater than any case inserted before, on any connection.
     An id comes again until a case is inserted with it, and when the
     transaction or savepoint that inserted it rolled back. */
  int (*case_new_id)(flow__store *s, int64_t *out, flow__err *err);
  /* Reads a case, as committed.  FLOW_ENOTFOUND. */
  int (*case_get)(flow__store *s, int64_t id, flow__case_row *out,
                  flow__err *err);
  /* Reads a case for a transition, inside a transaction, and keeps other
     connections from changing it until the transaction ends.
     FLOW_ENOTFOUND. */
  int (*case_lock)(flow__store *s, int64_t id, flow__case_row *out,
                   flow__err *err);
  int (*case_insert)(flow__store *s, const flow__case_row *row,
                     flow__err *err);
  /* from: the state the case moved from, or NULL when it did not move
     (then only data, updated_at and seq are written, and where the case
     is stays as it was).  due_at is set when a case opens and never
     updated here. */
  int (*case_update)(flow__store *s, const flow__case_row *row,
                     const char *from, flow__err *err);
  /* Matching cases as a JSON array of objects whose data is parsed.
     where values are JSON scalars; fields are identifiers (checked by the
     caller). */
  int (*case_list)(flow__store *s, const flow_case_query *q, int64_t now,
                   int (*each)(void *ctx, const flow__case_row *row),
                   void *ctx, flow__err *err);

  int (*history_append)(flow__store *s, const flow__history_row *row,
                        flow__err *err);
  /* Calls each for every history row of the case, oldest first. */
  int (*history_each)(flow__store *s, int64_t case_id,
                      int (*each)(void *ctx, const flow__history_row *row),
                      void *ctx, flow__err *err);

  /* The action outbox: one row per flow.call, written in the transition's
     transaction (row->id, status, attempts, lease and outcome are not
     read: a new request is pending, never tried).  (case_id, seq, n) is
     unique. */
  int (*outbox_add)(flow__store *s, const flow__request_row *row,
                    flow__err *err);
  /* Pending requests of action whose turn has come at now, at most max:
     first those tried whose lease ran out, then those not being tried
     whose next_at has come, each earliest first.  However many requests
     wait, finding the next costs the same (an index step, for SQLite).
     Strings in rows are valid during the call. */
  int (*outbox_due)(flow__store *s, const char *action, int64_t now,
                    size_t max,
                    int (*each)(void *ctx, const flow__request_row *row),
                    void *ctx, flow__err *err);
  /* Takes a request for one more attempt, held until lease_until, only if
     it is still pending with `attempts` attempts (as outbox_due showed
     it): *taken says whether.  Of two engines taking one request, one
     does. */
  int (*outbox_take)(flow__store *s, int64_t id, int attempts,
                     int64_t lease_until, int *taken, flow__err *err);
  /* Reads one request.  FLOW_ENOTFOUND. */
  int (*outbox_get)(flow__store *s, int64_t id,
                    int (*each)(void *ctx, const flow__request_row *row),
                    void *ctx, flow__err *err);
  /* Settles an attempt of a pending request, only if it still has
     `attempts` attempts: status "pending" again (a retry from next_at, no
     lease), or "done", "failed" or "incident" (finished at `at`); error
     and result (JSON text) may be NULL.  *set says whether it was: a late
     or duplicate completion changes nothing. */
  int (*outbox_settle)(flow__store *s, int64_t id, int attempts,
                       const char *status, int64_t next_at,
                       const char *error, const char *result, int64_t at,
                       int *set, flow__err *err);
  /* When a pending request of action next needs an engine: next_at when
     it is not being tried, else when its lease runs out; INT64_MAX when
     none. */
  int (*outbox_next_due)(flow__store *s, const char *action, int64_t *out,
                         flow__err *err);
  /* Requests of case_id (0: every case) with status (NULL: any), oldest
     first, at most max. */
  int (*outbox_list)(flow__store *s, int64_t case_id, const char *status,
                     size_t max,
                     int (*each)(void *ctx, const flow__request_row *row),
                     void *ctx, flow__err *err);
  /* Tasks for people: one row per task a transition creates, unique on
     (case_id, seq, n) (id, status, claim and outcome are not read: a new
     task is open); *id (when not NULL) gets its id. */
  int (*task_add)(flow__store *s, const flow__task_row *row, int64_t *id,
                  flow__err *err);
  /* Gives an open task to claimer (status "claimed"); *claimed says
     whether it was (of two claimers, one). */
  int (*task_claim)(flow__store *s, int64_t id, const char *claimer,
                    int *claimed, flow__err *err);
  /* Moves a task from status `expect` (and, when expect is "claimed",
     claimed by expect_by) to row->status with row's claimed_by, outcome,
     finished_by and finished_at; *set says whether it did. */
  int (*task_set)(flow__store *s, int64_t id, const char *expect,
                  const char *expect_by, const flow__task_row *row, int *set,
                  flow__err *err);
  /* Tasks matching q, oldest first, at most max. */
  int (*task_list)(flow__store *s, const flow__task_query *q, size_t max,
                   int (*each)(void *ctx, const flow__task_row *row),
                   void *ctx, flow__err *err);
  /* Cancels the open and claimed tasks of a case that end with a state
     change: state NULL (the case closed) all of them, else those created
     by another state and not kept.  each (may be NULL) sees each one. */
  int (*task_end_case)(flow__store *s, int64_t case_id, const char *state,
                       const char *why, int64_t at,
                       int (*each)(void *ctx, const flow__task_row *row),
                       void *ctx, flow__err *err);
  /* Cancels the open and claimed tasks of a case named name
     (flow.cancel_task); each (may be NULL) sees each one. */
  int (*task_cancel_named)(flow__store *s, int64_t case_id, const char *name,
                           const char *why, int64_t at,
                           int (*each)(void *ctx, const flow__task_row *row),
                           void *ctx, flow__err *err);

  /* Incidents: add (status, attempts and outcome not read: a new one is
     open, refused once), list (id, case_id 0 / status NULL: any; oldest
     first), and settle: from "open" to status ("open" again counts one
     more refusal with its code and error), *set says whether. */
  int (*incident_add)(flow__store *s, const flow__incident_row *row,
                      int64_t *id, flow__err *err);
  int (*incident_list)(flow__store *s, int64_t id, int64_t case_id,
                       const char *status, size_t max,
                       int (*each)(void *ctx, const flow__incident_row *row),
                       void *ctx, flow__err *err);
  int (*incident_set)(flow__store *s, int64_t id, const char *status,
                      const char *code, const char *error, const char *by,
                      int64_t at, int *set, flow__err *err);
  /* What an incident's source becomes when it is settled: a timer kept
     as an incident is removed, a request marked so is finished with
     status ("done" or "failed"); tasks and messages settle themselves. */
  int (*incident_source_done)(flow__store *s, const char *source,
                              int64_t source_id, const char *status,
                              int64_t at, flow__err *err);

  /* Messages: add (status "buffered" or as given, with case_id), list,
     and move one from status expect to status/case_id (*set says
     whether).  expire marks buffered ones whose time ran out by now (at
     most max), handing each to each; next_expiry is the earliest
     expiry of a buffered one, INT64_MAX when none. */
  int (*message_add)(flow__store *s, const flow__message_row *row,
                     int64_t *id, flow__err *err);
  int (*message_list)(flow__store *s, const flow__message_query *q,
                      size_t max,
                      int (*each)(void *ctx, const flow__message_row *row),
                      void *ctx, flow__err *err);
  int (*message_set)(flow__store *s, int64_t id, const char *expect,
                     const char *status, int64_t case_id, int64_t at,
                     int *set, flow__err *err);
  int (*message_expire)(flow__store *s, int64_t now, size_t max,
                        int (*each)(void *ctx, const flow__message_row *row),
                        void *ctx, flow__err *err);
  int (*message_next_expiry)(flow__store *s, int64_t *out, flow__err *err);
  /* Buffered messages whose (name, key) an open case now holds, oldest
     first, at most max: left by a crash between the commit that gave a
     case its key and the delivery. */
  int (*message_matched)(flow__store *s, size_t max,
                         int (*each)(void *ctx, const flow__message_row *row),
                         void *ctx, flow__err *err);

  /* Correlation keys of open cases: (name, key) names at most one case.
     find: FLOW_ENOTFOUND; put: FLOW_ECONFLICT when another case holds
     it; drop: the case's keys (name NULL: all of them). */
  int (*correl_find)(flow__store *s, const char *name, const char *key,
                     int64_t *case_id, flow__err *err);
  int (*correl_put)(flow__store *s, const char *name, const char *key,
                    int64_t case_id, flow__err *err);
  int (*correl_drop)(flow__store *s, int64_t case_id, const char *name,
                     flow__err *err);

  /* The service level of a case (store_sqlite_work.c): case_sla writes
     row->due_at and row->paused_at; the sla_warning and sla_breached
     timers of a case are dropped (pending or paused), paused (pending ->
     paused) or resumed (paused -> pending at the due time shift gives
     for each: ctx, its due time and payload; at most 8 per case), and
     each change is logged for the history (in its history row's sla;
     sla_log_each: oldest first; detail is a JSON object text). */
  int (*case_sla)(flow__store *s, const flow__case_row *row, flow__err *err);
  int (*sla_timers_drop)(flow__store *s, int64_t case_id, flow__err *err);
  int (*sla_timers_pause)(flow__store *s, int64_t case_id, flow__err *err);
  int (*sla_timers_resume)(flow__store *s, int64_t case_id,
                           int (*shift)(void *ctx, int64_t due,
                                        const char *payload, int64_t *out),
                           void *ctx, flow__err *err);
  int (*sla_log_each)(flow__store *s, int64_t case_id,
                      int (*each)(void *ctx, int64_t seq, const char *change,
                                  int64_t at, int64_t due_at,
                                  const char *detail),
                      void *ctx, flow__err *err);

  /* One nested transaction inside begin/commit, for group commit:
     rollback_to undoes what was written since savepoint, release keeps
     it. */
  int (*savepoint)(flow__store *s, flow__err *err);
  int (*release)(flow__store *s, flow__err *err);
  void (*rollback_to)(flow__store *s);

  /* Timers.  Strings in rows passed to `each` are valid during the call.
     A timer is cancelled by the case row (its case closed, or left the
     timer's state, or entered it again after the timer was set: the case's
     entered_seq against the timer's set_seq); cancelled rows are deleted
     later: sweep_cases removes those of the cases given (any number),
     and timer_claim those it is asked to claim.  next_due and list see live timers only (and list
     incidents too); due returns pending timers live or not, so that
     firing them removes the dead ones it meets, each once. */
  int (*timer_insert)(flow__store *s, const flow__timer_row *row,
                      flow__err *err);
  /*
   * Claims a due timer for firing, inside the caller's transaction: the
   * timer is taken (removed) only if it is still pending and live, as its
   * case is now, and *claimed says whether it was (1) or not (0: another
   * engine, maybe in another process, fired it first, or its case closed,
   * left the timer's state or entered it again; a pending timer that is
   * dead is removed all the same, in the caller's transaction).
   * The transition the timer causes is written in the same transaction,
   * so a timer fires exactly once whatever the number of engines on the
   * database: of two engines claiming one timer, one sees 1 and the other,
   * waiting for the first to commit or roll back, sees 0 or, after a
   * rollback, 1.  (A backend with row locks claims with a conditional
   * DELETE ... RETURNING of rows it selected FOR UPDATE SKIP LOCKED.)
   */
  int (*timer_claim)(flow__store *s, int64_t id, int *claimed,
                     flow__err *err);
  int (*timer_sweep_cases)(flow__store *s, const int64_t *case_ids,
                           size_t n, flow__err *err);
  /* Marks a due timer as an incident with its error, only if it is still
     pending and live (as timer_claim); *marked says whether it was. */
  int (*timer_incident)(flow__store *s, int64_t id, const char *error,
                        int *marked, flow__err *err);
  /* Earliest pending due time, INT64_MAX when none. */
  int (*timer_next_due)(flow__store *s, int64_t *out, flow__err *err);
  /* Pending timers due at or before `now`, live or not, earliest first,
     at most max. */
  int (*timer_due)(flow__store *s, int64_t now, size_t max,
                   int (*each)(void *ctx, const flow__timer_row *row),
                   void *ctx, flow__err *err);
  /* The case's timers (pending and incidents), earliest first. */
  int (*timer_list)(flow__store *s, int64_t case_id,
                    int (*each)(void *ctx, const flow__timer_row *row),
                    void *ctx, flow__err *err);

  /* The wake-up hint, outside transactions: *changed is 1 when another
     connection may have committed since the last call (the first call
     says 1), 0 when surely not.  Cheap enough to call once a second. */
  int (*changed_elsewhere)(flow__store *s, int *changed, flow__err *err);
} flow__store_vt;

extern const flow__store_vt flow__store_sqlite;

void flow__case_row_clear(const flow__allocator *a, flow__case_row *row);
void flow__service_row_clear(const flow__allocator *a,
                             flow__service_row *row);

#endif /* LIBFLOW_STORE_STORE_H */
