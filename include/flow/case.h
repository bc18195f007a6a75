/*
 * libflow - cases: open them, apply events to them, read them back.
 *
 * A case is returned as one JSON object with at least: id, service,
 * version, state, status ("open"/"closed"), data, opened_at, updated_at,
 * due_at (null when the service has no SLA), seq.  Times are ISO 8601 UTC.
 *
 * Applying an event is atomic: the handler runs in the sandbox on a copy of
 * the data, the result is validated against the service's fields, and the
 * new case row and one history row are written in one transaction.  Any
 * refusal leaves the case and its history exactly as they were.
 */
#ifndef FLOW_CASE_H
#define FLOW_CASE_H

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Who is acting: a person or system id and the roles they hold. */
typedef struct flow_actor {
  const char *id;            /* NULL means "anonymous" */
  const char *const *roles;  /* nroles strings */
  size_t nroles;
} flow_actor;

/*
 * Opens a case of the newest stored version of service with the JSON
 * object data_json (NULL means {}).  The initial state's enter hook runs
 * and the data is validated.  *out (when out is not NULL) receives the case
 * as owned JSON.
 *
 * Errors: FLOW_ENOTFOUND (no such service), FLOW_EINVAL (data_json is not
 * a JSON object; the message gives line and column), FLOW_EDATA (fields
 * fail validation; the message lists every failing field), FLOW_ESCRIPT,
 * FLOW_ELIMIT, FLOW_EREFUSED (the enter hook called flow.fail), FLOW_EIO.
 */
FLOW_EXTERN int flow_case_open(char **out, flow_engine *engine,
                               const char *service, const char *data_json,
                               const flow_actor *actor);

/*
 * Applies event to the case with the JSON object payload_json (NULL means
 * {}).  *out (when out is not NULL) receives the case after the transition.
 *
 * Errors: FLOW_ENOTFOUND (no such case), FLOW_EINVAL (bad id or payload),
 * FLOW_ECLOSED (case closed), FLOW_EEVENT (the current state has no such
 * event), FLOW_EPERM (actor lacks every role the event requires),
 * FLOW_EREFUSED (a guard said no or the handler called flow.fail),
 * FLOW_ESCRIPT (the handler threw; the message gives file and line),
 * FLOW_ELIMIT, FLOW_EDATA, FLOW_ESTATE (the handler returned a state that
 * does not exist), FLOW_EIO.
 */
FLOW_EXTERN int flow_case_signal(char **out, flow_engine *engine,
                                 const char *case_id, const char *event,
                                 const char *payload_json,
                                 const flow_actor *actor);

/* The case as owned JSON.  FLOW_EINVAL (malformed id), FLOW_ENOTFOUND. */
FLOW_EXTERN int flow_case_get(char **out, flow_engine *engine,
                              const char *case_id);

/*
 * The case's history as an owned JSON array, oldest first, of
 * {"seq","at","actor":{"id","roles"},"event","payload","from","to"}.
 * seq 1 is the opening ("event":"open", "from":null).
 */
FLOW_EXTERN int flow_case_history(char **out, flow_engine *engine,
                                  const char *case_id);

/* One condition on a data field: data[field] equals the JSON value. */
typedef struct flow_where {
  const char *field;
  const char *value_json; /* a JSON scalar: "\"refuse\"", "3", "true" */
} flow_where;

#define FLOW_CASE_QUERY_VERSION 2

/* A filter for flow_case_list(); NULL members do not filter. */
typedef struct flow_case_query {
  unsigned version;
  const char *service;
  const char *state;
  const char *status;       /* "open" or "closed" */
  const flow_where *where;  /* nwhere conditions, all must hold */
  size_t nwhere;
  size_t limit;             /* 0: 100 */
  size_t offset;
  /* Version 2. */
  int overdue;              /* 1: only open cases whose due_at has passed
                               by the engine clock */
} flow_case_query;

#define FLOW_CASE_QUERY_INIT                                                   \
  { FLOW_CASE_QUERY_VERSION, NULL, NULL, NULL, NULL, 0, 0, 0, 0 }

/*
 * The cases matching query (NULL: all) as an owned JSON array of cases,
 * oldest first.  FLOW_EINVAL for a malformed query (an unknown status, a
 * where value that is not JSON, a field name that is not an identifier).
 */
FLOW_EXTERN int flow_case_list(char **out, flow_engine *engine,
                               const flow_case_query *query);

/*
 * The pending timers of a case as an owned JSON array, earliest first:
 * {"id","due_at","event","payload","state" (null when kept across
 * states),"kind" ("after", "timer", "sla_warning", "sla_breached")} and,
 * for timers whose event was refused when they fired, "status":"incident"
 * with "error".  FLOW_EINVAL, FLOW_ENOTFOUND.
 */
FLOW_EXTERN int flow_case_timers(char **out, flow_engine *engine,
                                 const char *case_id);

/*
 * Completion of an asynchronous call: status is 0 or a FLOW_E* code;
 * case_json is the case after the transition (NULL on failure), valid only
 * during the call; flow_errmsg(engine) has the reason during the call.
 */
typedef void (*flow_case_cb)(flow_engine *engine, int status,
                             const char *case_json, void *payload);

/*
 * Asynchronous open and signal: the call is queued and returns 0 at once
 * (or FLOW_EINVAL/FLOW_ENOMEM for arguments it can refuse without the
 * database).  All calls queued in one loop round are applied in one SQLite
 * transaction (group commit); a refused call leaves no trace and does not
 * fail the others; cb runs after that transaction is durable.
 * The engine's loop must run (flow_engine_run or a host loop) for cb to be
 * called.  Arguments are copied.  Calls still queued when the engine is
 * closed get their callback with FLOW_EMISUSE.
 */
FLOW_EXTERN int flow_case_open_async(flow_engine *engine, const char *service,
                                     const char *data_json,
                                     const flow_actor *actor, flow_case_cb cb,
                                     void *payload);
FLOW_EXTERN int flow_case_signal_async(flow_engine *engine,
                                       const char *case_id, const char *event,
                                       const char *payload_json,
                                       const flow_actor *actor,
                                       flow_case_cb cb, void *payload);

/*
 * Runs a chunk of Lua in a fresh sandbox under the same rules and budgets
 * as a handler, and returns its first result as owned JSON (null when it
 * returns nothing).  FLOW_ESCRIPT (syntax or runtime error, message with
 * chunkname and line), FLOW_ELIMIT (a budget ran out), FLOW_EINVAL (the
 * result cannot be expressed as JSON: a function, a cycle, too deep).
 */
FLOW_EXTERN int flow_eval(char **out, flow_engine *engine, const char *code,
                          size_t len, const char *chunkname);

#ifdef __cplusplus
}
#endif
#endif /* FLOW_CASE_H */
