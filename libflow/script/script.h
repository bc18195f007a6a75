/*
 * The script subsystem: a Lua sandbox per service, budgets, the `flow`
 * module, the bridge between JSON (Jansson) and Lua values, and the service
 * loader that turns a script's returned table into a flow__service.
 *
 * The engine never touches a lua_State itself: it asks this subsystem to
 * compile a service, to run a transition's functions against a case, to
 * match a field pattern, and to evaluate a chunk.  Hardening the sandbox is
 * therefore a change inside libflow/script/ only.
 */
#ifndef LIBFLOW_SCRIPT_SCRIPT_H
#define LIBFLOW_SCRIPT_SCRIPT_H

#include <jansson.h>

#include "model/model.h"

typedef struct flow__sandbox flow__sandbox;

typedef struct flow__sandbox_config {
  const flow__allocator *alloc; /* the engine's allocator */
  size_t mem_limit;             /* bytes the Lua state may hold */
  uint64_t instr_limit;         /* VM instructions per run */
  flow_log_fn log;              /* for flow.log, may be NULL */
  flow_engine *log_engine;      /* first argument given to log */
  void *log_payload;
  uint32_t cpu_ms;              /* CPU time per run */
  size_t log_limit;             /* bytes flow.log may write per run */
  /* Ceilings for a service's own `budget = {...}`. */
  size_t mem_max;
  uint64_t instr_max;
  uint32_t cpu_ms_max;
} flow__sandbox_config;

/* A fresh sandbox with the safe libraries and the flow module. */
int flow__sandbox_new(flow__sandbox **out, const flow__sandbox_config *cfg,
                      flow__err *err);
void flow__sandbox_free(flow__sandbox *sb);
/* The calendar of flow.add, flow.date and flow.is_working_day (which must
   outlive the sandbox); until it is set, the default one (Europe/London,
   England and Wales bank holidays). */
void flow__sandbox_set_calendar(flow__sandbox *sb, const flow__calendar *cal);
/*
 * What flow.open(service, data) asks of the engine: that service can open
 * a case with data (checked as far as it can be before the case's own
 * scripts run), and the id the case will have.  Returns 0 with *id, or a
 * FLOW_* code with a message for the script's author in msg (the caller
 * adds "flow.open('service'): " and the line).  Until it is set,
 * flow.open is refused.
 */
typedef int (*flow__open_fn)(void *ctx, const char *service, json_t *data,
                             int64_t *id, char *msg, size_t len);
void flow__sandbox_set_opener(flow__sandbox *sb, flow__open_fn fn,
                              void *ctx);
/* Bytes the Lua state holds now. */
size_t flow__sandbox_mem(const flow__sandbox *sb);
/*
 * 1 when a kill (a budget running out) may have left the Lua state in a
 * state the next run should not trust; the engine then drops the compiled
 * service and compiles it afresh from its stored source.
 */
int flow__sandbox_damaged(const flow__sandbox *sb);

/*
 * Compiles and runs a service script in sb (text only), reads the table it
 * returns and fills svc (which must be zeroed).  svc's function
 * references point into sb's Lua state: the caller keeps sb for as long
 * as it runs svc, and frees both; one sandbox holds one service.  Every
 * problem in the
 * definition is reported, one "CHUNK:LINE: message" per line, with
 * FLOW_ESCRIPT.  FLOW_ELIMIT when the script exceeds a budget while
 * loading, FLOW_ENOMEM.  On failure svc holds nothing that needs freeing
 * beyond flow__service_free().
 */
int flow__service_compile(flow__service *svc, flow__sandbox *sb,
                          const char *src, size_t len, const char *chunkname,
                          flow__err *err);

/* The case a transition runs against, as the handler sees it. */
typedef struct flow__case_view {
  const char *id;
  const char *service;
  int64_t version;
  const char *state;
  const char *status;
  int64_t opened_at, updated_at, due_at; /* INT64_MIN: none */
  int64_t seq;
  uint64_t seed;                         /* per-case random seed */
} flow__case_view;

typedef struct flow__event_view {
  const char *name;
  json_t *payload;      /* borrowed JSON object */
  const flow_actor *actor;
  int64_t at;           /* engine time of the event */
  /* Where the event came from, as ev[origin_key] (ev.action): a borrowed
     JSON object, or NULL. */
  const char *origin_key;
  json_t *origin;
} flow__event_view;

/*
 * A transition run: begin builds the `case` and `ev` tables (case.data is
 * a copy of data), starts the budgets, and keeps them until end.  invoke
 * calls a function reference with (case, ev); all calls in one run share
 * the instruction budget.  end converts case.data back to JSON (fields of
 * type list become arrays even when empty), hands over the action requests
 * the run made with flow.call (*calls_out: a JSON array, possibly empty, of
 * {"action": name, "args": object}; new reference) and drops the tables.
 *
 * invoke's outcome: *ret is set to a newly allocated string when the
 * function returned one (the next state, free with flow__free), NULL when
 * it returned nothing; *truth (may be NULL) to the Lua truth of the first
 * result (for guards).  Errors: FLOW_ESCRIPT (the function threw or
 * returned something that is neither a string nor nothing; message
 * "CHUNK:LINE: ..."), FLOW_EREFUSED (flow.fail(msg); message is msg),
 * FLOW_ELIMIT (which budget ran out), FLOW_ENOMEM.
 */
int flow__run_begin(flow__sandbox *sb, const flow__service *svc,
                    const flow__case_view *cv, json_t *data,
                    const flow__event_view *ev, flow__err *err);
/* The same with the case data as the engine stores it, JSON text of an
   object, parsed straight into the script's table.  Text that is not a
   JSON object: FLOW_EIO "case ID: its stored data is not a JSON object". */
int flow__run_begin_text(flow__sandbox *sb, const flow__service *svc,
                         const flow__case_view *cv, const char *data_text,
                         const flow__event_view *ev, flow__err *err);
int flow__run_invoke(flow__sandbox *sb, int ref, char **ret, int *truth,
                     flow__err *err);
/* Runs the function ref(case, ev) for a text: *ret gets the string it
   returns (free with the sandbox's allocator), or NULL for nil; anything
   else is FLOW_ESCRIPT "FILE:LINE: <what> must return <expect>, not ..." */
int flow__run_invoke_text(flow__sandbox *sb, int ref, const char *what,
                          const char *expect, char **ret, flow__err *err);
/* Sets case.state as handlers see it (after a state change, so the enter
   hook sees the new state). */
void flow__run_set_state(flow__sandbox *sb, const char *state);
int flow__run_end(flow__sandbox *sb, json_t **data_out, json_t **calls_out,
                  flow__err *err);
/* Drops a run without reading it back (after a failure).  Safe to call
   when no run is active. */
void flow__run_abort(flow__sandbox *sb);

/* Where the last run's flow.fail was called, "CHUNK:LINE:", or "" (for
   incidents, whose readers are not the event's sender). */
const char *flow__sandbox_refused_at(const flow__sandbox *sb);

/* flow__match_fn for field patterns, ctx is the sandbox: string.find with
   the Lua pattern under the instruction budget. */
int flow__sandbox_match(void *ctx, const char *s, size_t len,
                        const char *pattern);


/* 1 when the table ("flow" or "flow.sla") every sandbox gives scripts
   has name; else 0, with *closest the nearest of its names or NULL. */
int flow__sandbox_has_name(const char *table, const char *name,
                           const char **closest);

/*
 * Runs the service's validate function on data (borrowed; the function
 * gets a copy), as a unit of work of its own with the service's budgets,
 * flow.now() reporting now.  *rules gets what it found, a JSON object of
 * field -> message (new reference), or NULL when it found nothing.
 * Errors name the function's file and line: FLOW_ESCRIPT (it threw,
 * called flow.fail, or returned something else than nothing or such a
 * table), FLOW_ELIMIT, FLOW_ENOMEM.  No run may be open.
 */
int flow__sandbox_validate(flow__sandbox *sb, const flow__service *svc,
                           json_t *data, int64_t now, json_t **rules,
                           flow__err *err);

/*
 * Runs code in sb under the handler rules and converts its first result to
 * JSON (*out is a new reference; json null when nothing is returned).
 */
int flow__sandbox_eval(flow__sandbox *sb, const char *code, size_t len,
                       const char *chunkname, json_t **out, flow__err *err);

#endif /* LIBFLOW_SCRIPT_SCRIPT_H */
