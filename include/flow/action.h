/*
 * Actions: the work a service asks of the host with flow.call (send a
 * text, look up an address, take a payment).
 *
 * A host registers a handler for each action name.  A request is written
 * in the transaction of the transition that made it and dispatched only
 * after that commits, from the engine's loop (flow_engine_run, or
 * flow_engine_fire_due), one call of the handler per attempt.  The handler
 * completes the request at once or later -- from the loop's thread, or
 * from another thread through flow_engine_post -- with a result or a
 * failure:
 *
 *   - a result (a JSON object) is delivered to the case as the script's
 *     `reply` event, with the result as ev.payload and ev.action telling
 *     which request it answers;
 *   - a retryable failure is tried again after an exponential back-off
 *     with jitter (the same for a request every time, so tests and replays
 *     agree), up to the script's retry.max; a final one is delivered as
 *     the `fail` event, or becomes an incident when the script named none;
 *   - an attempt not completed within the script's timeout counts as a
 *     retryable failure.
 *
 * Delivery is at least once: after a crash, every committed request that
 * was not completed is dispatched again (at once if it was never
 * dispatched; when its attempt's hold runs out -- its timeout, or an hour
 * -- if it was).  Every attempt carries the same `key`, so a host that
 * remembers keys does the work once.  A completion is applied once: a
 * late or duplicate one is refused with FLOW_ECONFLICT and changes
 * nothing.
 *
 * A request whose action has no handler waits ("waiting" in
 * flow_actions_list) and is dispatched once one is registered.
 *
 * The loop dispatches a round of up to 64 due requests of an action at a
 * time, taken in one transaction.  Answers a handler gives before it
 * returns are applied together when the round's handlers are done, in one
 * more transaction (the call returns 0 at once, or FLOW_ECONFLICT for a
 * second answer); answers given later are applied when they are given.
 */
#ifndef FLOW_ACTION_H
#define FLOW_ACTION_H

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One attempt of a request, valid during the handler's call only. */
typedef struct flow_request {
  const char *id;        /* for flow_action_complete / flow_action_fail */
  const char *action;    /* the registered name */
  const char *case_id;   /* the case that asked */
  const char *args_json; /* the script's arguments, a JSON object */
  const char *key;       /* the idempotency key, the same at every attempt */
  int attempt;           /* 1 for the first */
} flow_request;

typedef void (*flow_action_fn)(flow_engine *engine, const flow_request *req,
                               void *payload);

/*
 * Registers fn for the action name (lower-case words joined by dots, like
 * "notify.sms"), for the engine's lifetime.  Requests already waiting for
 * it are dispatched from the next loop round.
 *
 * Errors: FLOW_EINVAL (not an action name), FLOW_EEXIST (name already
 * registered), FLOW_ELIMIT (too many actions), FLOW_EMISUSE (NULL fn).
 */
FLOW_EXTERN int flow_action_register(flow_engine *engine, const char *name,
                                     flow_action_fn fn, void *payload);

/*
 * Completes the attempt in flight of request_id with result_json (a JSON
 * object; NULL means {}).  When the script named a reply event it is
 * applied to the case in the same transaction; if the case refuses it
 * (its handler fails, the state does not take it, the case closed), the
 * case is unchanged and the request becomes an incident, reported to the
 * listener: the completion itself still succeeds.
 *
 * Errors: FLOW_EINVAL (result is not a JSON object, bad id),
 * FLOW_ENOTFOUND (no such request), FLOW_ECONFLICT (the request is not in
 * flight: already completed, failed, or waiting for a retry -- a late or
 * duplicate completion), FLOW_EIO.
 */
FLOW_EXTERN int flow_action_complete(flow_engine *engine,
                                     const char *request_id,
                                     const char *result_json);

/*
 * Fails the attempt in flight of request_id with message.  A retryable
 * failure is tried again while retries are left; otherwise the script's
 * fail event is applied with ev.payload = { error = message, attempts = N,
 * reason = "refused" | "retries_exhausted" | "timed_out" }
 * (an incident if it is refused or the script named none).
 *
 * Errors: as flow_action_complete.
 */
FLOW_EXTERN int flow_action_fail(flow_engine *engine, const char *request_id,
                                 int retryable, const char *message);

/*
 * The requests of case_id (NULL: every case) with status (NULL: any):
 * "pending" (to be dispatched, in flight, or waiting for a retry),
 * "waiting" (pending, and no handler is registered for its action),
 * "done", "failed" (finally failed, its fail event applied) or "incident".
 * *out gets a JSON array, oldest first, of objects with id, case, action,
 * args, key, status, attempts, created_at, next_at, and where they apply
 * reply, fail, error, result and finished_at.  At most 1000 are listed.
 */
FLOW_EXTERN int flow_actions_list(char **out, flow_engine *engine,
                                  const char *case_id, const char *status);

#ifdef __cplusplus
}
#endif

#endif /* FLOW_ACTION_H */
