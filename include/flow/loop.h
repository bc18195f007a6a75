/*
 * libflow - running the engine: the event loop, timers, notifications and
 * posting work from other threads.
 *
 * The engine fires durable timers (state `after` timers, flow.after and
 * flow.at, service-level warnings and breaches) and completes asynchronous
 * calls from a libuv loop.  It can own that loop (flow_engine_run), run on
 * a host's uv_loop_t (<flow/uv.h>), or be driven from any other loop
 * through flow_engine_backend_fd() and flow_engine_backend_timeout(), the
 * way uv_backend_fd()/uv_backend_timeout() allow.
 */
#ifndef FLOW_LOOP_H
#define FLOW_LOOP_H

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum flow_run_mode {
  FLOW_RUN_DEFAULT = 0, /* run until flow_engine_stop() or nothing is left
                           to wait for (no timer can fall due) */
  FLOW_RUN_ONCE = 1,    /* wait for and handle one round of work */
  FLOW_RUN_NOWAIT = 2   /* handle what is ready now, never block */
} flow_run_mode;

/*
 * Runs the engine's loop in the given mode, like uv_run().  Returns 0 when
 * nothing more is pending, 1 when work remains (a pending timer or queued
 * call) after a ONCE/NOWAIT round or a stop, or a negative FLOW_E* code.
 * Must not be called from inside a callback of the same engine
 * (FLOW_EMISUSE).  With a virtual clock (flow_engine_set_time) only timers
 * due at or before the fixed time fire.
 */
FLOW_EXTERN int flow_engine_run(flow_engine *engine, flow_run_mode mode);

/* Makes a running flow_engine_run() return after the current round; no
   effect outside a run. */
FLOW_EXTERN void flow_engine_stop(flow_engine *engine);

/*
 * For hosts with a loop of their own: a file descriptor that becomes
 * readable when the engine has work (poll it, then call
 * flow_engine_run(engine, FLOW_RUN_NOWAIT)), and the number of
 * milliseconds after which the engine wants to run even if the descriptor
 * stays quiet (-1: no deadline, 0: run now).  backend_fd returns -1 where
 * the platform has no such descriptor.
 */
FLOW_EXTERN int flow_engine_backend_fd(flow_engine *engine);
FLOW_EXTERN int flow_engine_backend_timeout(flow_engine *engine);

/* Work posted from another thread: runs on the engine's thread. */
typedef void (*flow_post_fn)(flow_engine *engine, void *payload);

/*
 * The one thread-safe call: queues fn(engine, payload) to run on the
 * engine's loop thread during its next round, in the order posted.  Returns
 * 0, or FLOW_ENOMEM.  Work posted before flow_engine_close() that has not
 * run is dropped (fn is not called).  Used from other threads, it needs a
 * thread-safe host allocator (flow_engine_options.alloc; the default
 * realloc/free is).  Posted work does not keep a FLOW_RUN_DEFAULT run
 * alive: a host waiting for posts keeps a handle of its own on
 * flow_engine_uv_loop().
 */
FLOW_EXTERN int flow_engine_post(flow_engine *engine, flow_post_fn fn,
                                 void *payload);

/*
 * Fires, synchronously and in due order, every timer due at or before the
 * engine clock now, and dispatches every action request due by then to
 * its handler (flow/action.h), until none is left; *fired (may be NULL)
 * receives how many timers fired and requests were dispatched.  This is
 * `flow run --until-idle`.  A timer whose event is refused becomes an
 * incident (see flow_case_timers) and does not stop the others.  Returns 0
 * or a storage error.
 */
FLOW_EXTERN int flow_engine_fire_due(flow_engine *engine, size_t *fired);

/*
 * The listener receives what the engine does on its own (not what the
 * calls a host makes do: their return says it), one JSON object per call,
 * valid only during the call, told after the transaction that did it
 * committed:
 *   {"type":"timer","case":"1","timer":"7","kind":"after","event":..,
 *    "due_at":..,"at":..}
 *   {"type":"transition","case":"1","service":..,"version":..,"event":..,
 *    "from":..,"to":..,"seq":..,"at":..,"actor":..,"cause":"timer"}
 *                    (what a timer caused; "cause":"action" for an
 *                    action's reply or fail event)
 *   {"type":"closed","case":"1","service":..,"state":..,"seq":..,"at":..,
 *    "cause":..}     (the transition ended in a final state)
 *   {"type":"action_requested","case":"1","action":..,"key":..,"seq":..,
 *    "at":..,"cause":..}
 *   {"type":"action_completed" | "action_retry" | "action_failed",
 *    "request":"12","case":"1","action":..,"attempts":N,"error":..}
 *   {"type":"incident","incident":"3","case":"1","source":"timer",
 *    "event":..,"error":"FLOW_ESCRIPT","message":"why, with FILE:LINE",
 *    "at":..} and, by source, "timer":"7","kind":..,"due_at":.. or
 *    "request":"12","action":.. or "message_id":"4"
 *   {"type":"sla_warning" | "sla_breached","case":"1","event":..,
 *    "due_at":..,"at":..}
 *   {"type":"task_created" | "task_cancelled" | "task_overdue",
 *    "task":"5","case":"1","name":..,"team":..,"assignee":..,"due_at":..,
 *    "by":..,"at":..}  (team, assignee, due_at, by when there are)
 *   {"type":"message_expired" | "message_delivered","message":"4",
 *    "name":..,"key":..,"case":..}  (a delivery the loop made)
 * kind is "after", "timer", "sla_warning", "sla_breached" or "task_due".
 * Subscribers (flow_engine_subscribe) also hear what a host's calls did:
 * {"type":"opened",...,"cause":"call"}, transitions, closes and requests
 * with "cause":"call"; task_claimed, task_released, task_completed and
 * task_cancelled (shaped as task_created) from flow_task_*;
 * message_buffered and message_delivered from flow_message_send;
 * {"type":"incident_resolved" | "incident_dismissed","incident":"3",
 * "case":..,"source":..,"by":..,"at":..} from flow_incident_*.
 */
typedef void (*flow_listener_fn)(flow_engine *engine, const char *event_json,
                                 void *payload);
FLOW_EXTERN void flow_engine_set_listener(flow_engine *engine,
                                          flow_listener_fn fn, void *payload);

/*
 * Adds a subscriber: fn gets every notification above, after the one
 * set with flow_engine_set_listener, and after the subscribers before it.
 * *id (may be NULL) gets its id for flow_engine_unsubscribe.  Rules for
 * fn, as for the listener: it runs on the thread that made the engine
 * act, after the transaction that did it committed, never before; the
 * JSON is valid during the call; it may call the engine (a call it makes
 * is told to the subscribers in turn); it cannot stop or fail the engine,
 * and while it runs the loop waits, so keep it short and hand slow work
 * to a thread of your own.
 *
 * Errors: FLOW_ELIMIT (64 subscribers already), FLOW_EMISUSE (fn NULL).
 */
FLOW_EXTERN int flow_engine_subscribe(flow_engine *engine,
                                      flow_listener_fn fn, void *payload,
                                      int *id);
/* Removes a subscriber; FLOW_ENOTFOUND when there is none with that id. */
FLOW_EXTERN int flow_engine_unsubscribe(flow_engine *engine, int id);

#ifdef __cplusplus
}
#endif
#endif /* FLOW_LOOP_H */
