/*
 * The engine structure, shared by the files of engine/, and by loop/ and runner/ above it.
 * Hosts only ever see `flow_engine *`.
 */
#ifndef LIBFLOW_ENGINE_ENGINE_H
#define LIBFLOW_ENGINE_ENGINE_H

#include <string.h>

#include "model/model.h"
#include "script/script.h"
#include "store/store.h"

struct flow__loop;
struct flow__async;

/*
 * A service version as the engine runs it: the definition (the model's
 * flow__service, which only names its functions by reference) and the
 * sandbox those functions live in.  The engine owns both; the model holds
 * no sandbox.
 */
typedef struct flow__compiled {
  flow__service *svc;
  flow__sandbox *sb;
  struct flow__compiled *next; /* the engine's cache, newest first */
} flow__compiled;

typedef struct flow__action_round flow__action_round;

/* A host's handler for one action name (flow_action_register). */
typedef struct flow__action_reg {
  char *name;
  flow_action_fn fn;
  void *payload;
} flow__action_reg;

struct flow_engine {
  flow__allocator alloc;
  flow__err err;
  flow_engine_options opts;
  const flow__store_vt *vt;
  flow__store *store;
  flow__compiled *services; /* compiled versions, newest first */
  int64_t fixed_now;       /* INT64_MIN: use the clock */
  flow__calendar cal;
  int64_t *cal_holidays;   /* owned storage behind cal.extra_holidays */

  /* Subscribers (flow_engine_subscribe; flow_engine_set_listener is the
     one with id 0), and the notes of the transaction in progress, told
     to them once it commits (engine_notify.c). */
  struct flow__subscriber {
    flow_listener_fn fn;
    void *payload;
    int id;
  } subs[FLOW__MAX_SUBSCRIBERS];
  size_t nsubs;
  int next_sub_id;
  json_t *notes; /* array, or NULL */

  /* Asynchronous calls waiting for the next group commit, in order. */
  struct flow__async *async_head, *async_tail;
  size_t async_count;
  int in_callback;         /* inside a completion callback or listener */

  /* The loop (libflow/loop/), attached on first use.  The core reaches it
     only through these two pointers, so it does not depend on libuv. */
  struct flow__loop *loop;
  void (*loop_kick)(flow_engine *e); /* work was queued or timers changed */
  void (*loop_free)(flow_engine *e); /* at flow_engine_close */

  /* Cached earliest pending timer due time; INT64_MIN: unknown.  Another
     connection's commit makes it unknown again (flow__engine_wake_check). */
  int64_t next_due;

  /* Registered actions, in registration order; action_turn is the one
     whose requests a dispatch round looks at first. */
  flow__action_reg *actions;
  size_t nactions, action_turn;
  /* The dispatch round whose handlers are running, or NULL: answers to
     its requests wait to be applied together (engine_action.c). */
  struct flow__action_round *round;

  /* Writing calls made to the store so far: equal before and after a call
     means the call wrote nothing (group commit, engine_async.c).  Every
     write of a transition is made in persist() (engine_case.c), which
     counts them. */
  uint64_t writes;

  /* Buffered messages to deliver in the transaction in progress, to the
     cases that just took their keys (engine_message.c); msg_sweep says
     some were left for the loop. */
  struct flow__delivery {
    int64_t case_id, message_id;
  } deliveries[FLOW__MESSAGE_BATCH];
  size_t ndeliveries;
  int delivering;
  int msg_sweep;
  /* Where the last refused transition's flow.fail was, for incidents. */
  char refused_at[160];
  int64_t msg_next; /* the next buffered message's expiry; INT64_MIN:
                       unknown, read again */

  /* Cases whose timers were cancelled (they left a state or closed) and
     whose dead timer rows are still to be deleted; only a hint, since the
     rows are dead whether or not they are deleted (see store.h). */
  int64_t sweep_ids[FLOW__SWEEP_BATCH];
  size_t nsweep;

  /* flow.open in the transition whose scripts run (engine_open.c): its
     case (NULL: none runs), whether that case is opening itself, the
     last id handed out, and 1 while the cases it asked for open (they
     may open none themselves). */
  const flow__case_row *open_parent;
  int open_parent_opening;
  int64_t open_last;
  int open_depth;
};

/* ---- transitions (engine_case.c), inside a transaction the caller holds -- */

/* The values are stored (incidents.kind): append, never renumber. */
enum {
  FLOW__APPLY_SIGNAL = 0, /* a caller's event: roles are checked */
  FLOW__APPLY_AFTER,      /* a state's `after` timer: go to `target` */
  FLOW__APPLY_TIMER,      /* a timer's event: must be accepted, no roles */
  FLOW__APPLY_SLA,        /* sla_warning/sla_breached: handler optional */
  FLOW__APPLY_ACTION,     /* an action's reply or fail: must be accepted */
  FLOW__APPLY_TASK,       /* a task's done event: must be accepted */
  FLOW__APPLY_TASK_DONE,  /* task_done, for a task with no done event:
                             handler optional */
  FLOW__APPLY_MESSAGE     /* a correlated message: must be accepted */
};

/* ---- service levels (engine_sla.c) ------------------------------------ */

/* A clock that starts in a transition: from src (the service's sla or a
   state's), with the durations its functions computed (owned). */
typedef struct flow__sla_start {
  const flow__sla *src; /* NULL: none starts */
  char *within, *warn;
  int computed;
} flow__sla_start;

/* 1 when some sla (of the service, a state, or flow.sla.restart) may send
   sla_warning (warn) or sla_breached. */
int flow__sla_may(const flow__service *svc, int warn);
void flow__sla_start_init(flow__sla_start *st, const flow__sla *src);
void flow__sla_start_clear(flow_engine *e, flow__sla_start *st);
/* 1 when the start needs the script run (a duration is a function). */
int flow__sla_needs_lua(const flow__sla_start *st);
/* Runs the start's functions, inside the transition's run. */
int flow__sla_compute(flow_engine *e, flow__sandbox *sb,
                      const flow__service *svc, flow__sla_start *st,
                      flow__err *err);
/* Before the case row is written: its due_at for the start. */
int flow__sla_before(flow_engine *e, const flow__service *svc,
                     flow__case_row *row, flow__sla_start *st, int64_t now,
                     flow__err *err);
/* After: the start's timers, then the flow.sla requests among calls in
   order, and the case's due_at and paused_at when they moved.  Each
   change is added to log, the JSON array (without its closing ']') the
   transition's history row keeps; log stays empty when nothing changed. */
int flow__sla_after(flow_engine *e, const flow__service *svc,
                    flow__case_row *row, int opening, flow__sla_start *st,
                    json_t *calls, int64_t now, flow__buf *log,
                    flow__err *err);

/* Opens a case; *out (if out) gets its JSON.  Sets the engine error. */
int flow__case_open_txn(flow_engine *e, const char *service,
                        const char *data_json, const flow_actor *actor,
                        char **out);
/* The same with the data as a value (consumed) and, when id is not 0,
   the id flow__open_reserve gave it; origin (borrowed, may be NULL) is
   shown to the opening scripts as ev[origin_key] ("parent" for a case
   another case's script opened, "message" for one a message opened). */
int flow__case_open_with(flow_engine *e, const char *service, json_t *data,
                         int64_t id, const flow_actor *actor,
                         const char *origin_key, json_t *origin,
                         const char *cause, char **out);

/* flow_message_send inside the caller's transaction (a group commit's
   call): *out (if out) gets the message's JSON. */
int flow__message_send_txn(flow_engine *e, const char *name, const char *key,
                           const char *payload_json, int64_t ttl_ms,
                           char **out);

/* ---- cases that open other cases (engine_open.c) -------------------- */

/* The sandbox's flow.open callback (flow__open_fn); ctx is the engine. */
int flow__open_reserve(void *ctx, const char *service, json_t *data,
                       int64_t *id, char *msg, size_t len);
/*
 * The newest version of the service whose `correlate` says that a
 * message of this name opens a case (*out NULL when none does); c gets
 * the entry.  Two services that both do are refused (FLOW_ECONFLICT),
 * as flow_service_load refuses the second.
 */
int flow__message_opener(flow_engine *e, const char *message,
                         flow__compiled **out, const flow__correlate **c);
/* Applies an event of the given kind to case id; payload is borrowed.
   origin (borrowed, may be NULL) is where the event came from, shown to
   the script as ev.action, ev.task or ev.message as kind says. */
int flow__case_apply_txn(flow_engine *e, int64_t id, const char *event,
                         json_t *payload, const flow_actor *actor, int kind,
                         const char *target, json_t *origin, char **out);
int flow__case_parse_id(flow_engine *e, const char *text, int64_t *out);
/* The same for the ids of other things ("task", "incident", ...). */
int flow__parse_id(flow_engine *e, const char *text, const char *what,
                   int64_t *out);
/* Begins a transaction for a public call; sets the engine error. */
int flow__engine_begin(flow_engine *e);
/* Ends it (flow__engine_end_txn), and on success clears the engine error
   and tells the loop; on failure frees *out (out may be NULL). */
int flow__engine_finish(flow_engine *e, int rc, char **out);

/* A name as the loader takes one (flow__name_ok, _ first allowed), of at
   most FLOW__MAX_NAME bytes. */
static inline int
flow__engine_identifier(const char *s)
{
  size_t n = s ? strlen(s) : 0;
  return n <= FLOW__MAX_NAME && flow__name_ok(s, n, 1);
}

/* ---- tasks, messages, incidents (engine_task.c, engine_message.c,
   engine_incident.c), inside the caller's transaction ---------------- */

/* What a persisted transition does to tasks: ends those of the state left
   (all when the case closed), then creates the ones the script asked for
   (calls entries {"task": ...}).  row is the case as written; had_tasks
   says whether it had any before (if not, there are none to end). */
int flow__tasks_persist(flow_engine *e, const flow__case_row *row,
                        const char *state, int moved, int had_tasks,
                        json_t *calls,
                        int64_t now, const char *cause, flow__err *err);
/* A task's due time came (a "task_due" timer, payload {"task": id}):
   notes task_overdue if the task is still open or claimed. */
int flow__task_due(flow_engine *e, int64_t case_id, json_t *payload,
                   int64_t now);
/* Correlation keys: check runs before a transition writes (a key another
   open case holds is a refusal, FLOW_ECONFLICT); write records the new
   keys and queues the buffered messages they match for delivery. */
int flow__correlate_check(flow_engine *e, const flow__service *svc,
                          const flow__case_row *row, const char *old_data,
                          json_t *data, flow__err *err);
int flow__correlate_write(flow_engine *e, const flow__service *svc,
                          const flow__case_row *row, const char *old_data,
                          json_t *data, flow__err *err);
/* Delivers the queued messages (each a transition of its case); called
   at the end of the outermost transition of a transaction. */
int flow__messages_deliver(flow_engine *e);
/* The loop's share: expires buffered messages whose time ran out and
   delivers those a crash left matched; *done counts them. */
int flow__messages_work(flow_engine *e, size_t max, size_t *done);
int64_t flow__messages_next_due(flow_engine *e);

/*
 * Raises an incident for an event no caller could be told of, refused
 * with the engine's error (code and message): the row, and a note
 * "incident" with fields (which may add to it, consumed; may be NULL).
 * *id (may be NULL) gets its id.
 */
int flow__incident_raise(flow_engine *e, const flow__incident_row *row,
                         json_t *fields, int64_t *id);

/* ---- actors (engine_actor.c) --------------------------------------------- */

/* The actor of what the engine does on its own: "engine", role system. */
extern const flow_actor flow__system_actor;

/* Checks a host's actor: FLOW_EMISUSE or FLOW_EINVAL, on the engine. */
int flow__case_check_actor(flow_engine *e, const flow_actor *actor);
/* The actor as the history keeps it: {"id":...,"roles":[...]}. */
void flow__actor_text(flow__buf *b, const flow_actor *actor);
int flow__actor_has_role(const flow_actor *actor, const char *role);

/* ---- the case object (engine_case_read.c) ---------------------------------- */

/* A time as JSON: an ISO 8601 string, or null for FLOW__NO_TIME. */
json_t *flow__time_json(int64_t ms);
/* Checks the actor of a public call and begins its transaction. */
int flow__engine_begin_as(flow_engine *e, const flow_actor *actor);

/* Writes the case object as text; data_text is the stored data (compact
   JSON, sorted keys), written as it is. */
void flow__case_text(flow__buf *b, const flow__case_row *row,
                     const char *data_text);
/* Parses a row's stored data (into *keep when keep is not NULL);
   FLOW_EIO for data that is not an object. */
int flow__case_stored_data(const flow__case_row *row, json_t **keep,
                           flow__err *err);
/* The case object as an owned string for the host in *out. */
int flow__case_emit(flow_engine *e, char **out, const flow__case_row *row,
                    const char *data_text);

/* ---- notifications (engine_notify.c) -------------------------------------- */

/* Sends one notification to every subscriber now; consumes j. */
void flow__engine_notify(flow_engine *e, json_t *j);
/* 1 when anyone listens to what the engine does on its own (the
   listener or a subscriber), or, with calls, to what a host's calls do
   (subscribers only: the listener hears only the engine's own doings).
   Notes are built only then. */
static inline int
flow__engine_listened(const flow_engine *e, int calls)
{
  return calls ? e->nsubs > (e->nsubs > 0 && e->subs[0].id == 0)
               : e->nsubs > 0;
}
/* Keeps a note of what the transaction in progress did, for after it
   commits; consumes j. */
void flow__engine_note(flow_engine *e, json_t *j);
/* The notes kept so far: drop(e, mark) forgets the ones after mark (a
   savepoint rolled back), drop(e, 0) all of them (a rollback). */
size_t flow__engine_notes_mark(const flow_engine *e);
void flow__engine_notes_drop(flow_engine *e, size_t mark);
/* The transaction committed: tells the subscribers its notes. */
void flow__engine_notes_flush(flow_engine *e);
/* Ends the caller's transaction: commits when rc is 0 and tells its
   notes, else (or when the commit fails) rolls back and drops them.
   Returns rc, or the commit's failure (set on the engine). */
int flow__engine_end_txn(flow_engine *e, int rc);

/* ---- what the loop needs from the core (engine_timer.c, engine_async.c) ---- */

/*
 * Deleting cancelled timers.  sweep_later notes a case whose timers a
 * transition cancelled, and deletes the dead rows of all noted cases once
 * FLOW__SWEEP_BATCH are noted; sweep deletes them now.  Both run inside
 * the caller's transaction.  A failed sweep keeps its notes for the next
 * one; notes lost to a crash only leave dead rows, which nothing fires or
 * shows, and which firing removes when it meets them (timer_claim).
 */
int flow__engine_sweep_later(flow_engine *e, int64_t case_id, flow__err *err);
int flow__engine_sweep(flow_engine *e, flow__err *err);

/* Earliest due time of a pending timer in ms, or INT64_MAX when none.
   Cheap: cached, and only the first row of an index otherwise. */
int64_t flow__engine_next_due(flow_engine *e);
/* Asks the store whether another connection committed since the last
   call; if so forgets the cached next due time and returns 1.  The loop
   calls it every FLOW__WAKE_POLL_MS. */
int flow__engine_wake_check(flow_engine *e);

/* ---- actions (engine_action.c) ------------------------------------------- */

/* When a request of a registered action next needs the engine;
   INT64_MAX when none.  Part of flow__engine_next_due. */
int64_t flow__engine_actions_next_due(flow_engine *e);
/* Takes and dispatches up to max due requests (*seen read, *sent handed
   to their handlers or, timed out, settled as failures), each step in its
   own transaction. */
int flow__engine_dispatch_batch(flow_engine *e, size_t max, size_t *sent,
                                size_t *seen);
void flow__engine_actions_free(flow_engine *e);

/*
 * Reads up to max live timers due at or before the engine clock (*seen
 * gets how many) and fires them in due order, each in its own transaction
 * that first claims it (store.h: timer_claim), so a timer fires exactly
 * once, and only if it still belongs to its case as the case is then, even
 * with other engines firing on the same database.  *fired receives how
 * many fired (incidents included): fewer than *seen when an earlier timer
 * of the batch moved or closed a case, or another engine took some.  A
 * refused timer becomes an incident; only storage errors are returned.
 */
int flow__engine_fire_batch(flow_engine *e, size_t max, size_t *fired,
                            size_t *seen);
/* A loop round's work: due timers first, then due action requests, up to
   max in all (*done carried out, *seen read). */
int flow__engine_work_batch(flow_engine *e, size_t max, size_t *done,
                            size_t *seen);

/* 1 when asynchronous calls are queued. */
int flow__engine_async_pending(const flow_engine *e);

/*
 * Applies every queued asynchronous call in one transaction (a savepoint
 * each), commits, then calls their callbacks in order.  Called by the loop
 * once per round.
 */
int flow__engine_flush_async(flow_engine *e);

/* At close: fails every queued call through its callback. */
void flow__engine_async_drop(flow_engine *e);

/* 1 when the clock is fixed (virtual time). */
int flow__engine_clock_fixed(const flow_engine *e);

/* Tells the loop (if attached) that something changed. */
void flow__engine_kick(flow_engine *e);

/* Records an error on the engine and returns code. */
int flow__engine_fail(flow_engine *e, int code, const char *fmt, ...)
    FLOW__PRINTF(3, 4);
/* A public function called wrongly: records msg on engine when there is
   one (flow_errmsg) and returns FLOW_EMISUSE. */
int flow__engine_misuse(flow_engine *engine, const char *msg);
/* Copies a sub-module's error onto the engine; returns its code. */
int flow__engine_fail_err(flow_engine *e, const flow__err *err);

/* A new sandbox with the engine's budgets and log callback. */
int flow__engine_sandbox(flow_engine *e, flow__sandbox **out);

/* ---- services (engine_service.c) ------------------------------------- */

/*
 * Compiles source into a service nobody owns yet: not stored, not cached
 * (flow_service_check, lint, graph and loading start here).  Free it with
 * flow__compiled_free.  Errors as flow_service_check() (set on the engine).
 */
int flow__engine_compile(flow_engine *e, const char *src, size_t len,
                         const char *chunkname, flow__compiled **out);
/* Frees the definition and its sandbox.  Accepts NULL. */
void flow__compiled_free(flow_engine *e, flow__compiled *c);

/*
 * The compiled service name/version (version 0: newest stored), compiling
 * and caching it from the stored source if needed.  Borrowed: valid until
 * the engine closes or evicts it.
 */
int flow__engine_service(flow_engine *e, const char *name, int64_t version,
                         flow__compiled **out);

/*
 * Drops a compiled service from the cache and frees it; the next event
 * compiles it afresh from its stored source.  Used after a kill may have
 * damaged its Lua state.
 */
void flow__engine_evict(flow_engine *e, flow__compiled *c);
/* Frees every cached service (at close). */
void flow__engine_services_free(flow_engine *e);

/* The states of svc in the order the script declares them (by line, then
   name): an owned array of svc->nstates pointers, or NULL (out of
   memory). */
const flow__state **flow__service_states_sorted(flow_engine *e,
                                                const flow__service *svc);

/* Hands j (consumed, may be NULL after a failed allocation) to the host
   as an owned JSON string in *out (nothing when out is NULL). */
int flow__engine_owned_json(flow_engine *e, char **out, json_t *j);

#endif /* LIBFLOW_ENGINE_ENGINE_H */
