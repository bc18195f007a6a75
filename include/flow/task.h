/*
 * Tasks for people, incidents, and messages sent to cases.
 *
 * Tasks.  A script creates a task with flow.task{...} in the transaction
 * of its transition: a name, a title, a team or an assignee, a due time
 * (elapsed or in working days, on the engine's calendar), a form for the
 * outcome and the event its completion sends (`done`).  A task is
 * "open", then "claimed" by one person, then "done" or "cancelled".  It
 * is cancelled when the case leaves the state that created it (unless
 * the script kept it) and when the case closes.
 *
 * Incidents.  An event no caller can be told of -- a timer's, an
 * action's reply or fail event, a message -- whose handler fails leaves
 * the case as it was and raises an incident: the reason (the script's
 * file and line), the event and where it came from.  An incident is
 * "open" until it is retried successfully ("resolved") or "dismissed".
 *
 * Messages.  A host sends a message by name and correlation key (a
 * payment reference, a test barcode).  A service declares which data
 * field holds each message's key (`correlate = { payment_received =
 * "payment_ref" }`); the message is delivered as the event of its name
 * to the one open case whose field holds the key, exactly once, or kept
 * ("buffered") until a case takes that key or its time to live runs out
 * ("expired"; still listed).  A delivery the case refuses is an incident.
 *
 * Lists are JSON arrays, oldest first, of at most 1000 objects.
 * Everything here runs in its own transaction and tells subscribers what
 * it did once that commits (see flow/loop.h for the notification shapes).
 */
#ifndef FLOW_TASK_H
#define FLOW_TASK_H

#include "case.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which tasks flow_tasks_list returns; NULL or 0 members match any. */
typedef struct flow_task_query {
  const char *case_id;
  const char *team;
  const char *assignee; /* assigned to, or claimed by, this person */
  const char *status;   /* "open", "claimed", "done" or "cancelled" */
  int overdue;          /* 1: open or claimed, and due before now */
} flow_task_query;

/*
 * *out gets the matching tasks: objects with id, case, name, title,
 * team, assignee, status, due_at, overdue, form, claimed_by, outcome,
 * finished_by, created_at, finished_at (absent members are null).
 * q may be NULL (every task).  Errors: FLOW_EINVAL (a bad status or case
 * id), FLOW_EIO.
 */
FLOW_EXTERN int flow_tasks_list(char **out, flow_engine *engine,
                                const flow_task_query *q);

/*
 * Claims task_id for actor->id.  Claiming a task one already holds is 0.
 * Errors: FLOW_ENOTFOUND, FLOW_ECONFLICT (claimed by someone else, done or
 * cancelled; the message says which), FLOW_EPERM (assigned to someone
 * else), FLOW_EINVAL (no actor id).
 */
FLOW_EXTERN int flow_task_claim(flow_engine *engine, const char *task_id,
                                const flow_actor *actor);

/* Gives a claimed task back (status "open").  Errors: as claim; a task
   that is not claimed is FLOW_ECONFLICT. */
FLOW_EXTERN int flow_task_release(flow_engine *engine, const char *task_id,
                                  const flow_actor *actor);

/*
 * Completes task_id with outcome_json (a JSON object; NULL means {}),
 * checked against the task's form: a refusal (FLOW_EDATA) names every
 * failing field, and changes nothing.  The task's `done` event is applied
 * to the case in the same transaction with ev.payload = { task, outcome,
 * by } and ev.task = { id, name }; if the case refuses it, the error is
 * returned and the task stays as it was.  A task nobody claimed is
 * claimed by actor as it completes; one claimed by another person is
 * FLOW_ECONFLICT.  *out (may be NULL) gets the case after the event.
 *
 * Errors: FLOW_ENOTFOUND, FLOW_ECONFLICT (done, cancelled, or claimed by
 * someone else), FLOW_EPERM, FLOW_EDATA, FLOW_EINVAL, and every refusal
 * of flow_case_signal.
 */
FLOW_EXTERN int flow_task_complete(char **out, flow_engine *engine,
                                   const char *task_id,
                                   const char *outcome_json,
                                   const flow_actor *actor);

/* Cancels an open or claimed task.  Errors: FLOW_ENOTFOUND,
   FLOW_ECONFLICT (already done or cancelled). */
FLOW_EXTERN int flow_task_cancel(flow_engine *engine, const char *task_id,
                                 const flow_actor *actor);

/*
 * *out gets the incidents of case_id (NULL: every case) with status
 * (NULL: any; "open", "resolved", "dismissed"): objects with id, case,
 * source ("timer", "action", "task" or "message") and source_id, event,
 * payload, code (the FLOW_E* name), error (the message, with the
 * script's file and line), status, attempts, raised_at, finished_at,
 * finished_by.
 */
FLOW_EXTERN int flow_incidents_list(char **out, flow_engine *engine,
                                    const char *case_id, const char *status);

/*
 * Applies an open incident's event again, to the case as it is now and
 * with the service version the case runs (so it succeeds once the case
 * has moved on, or its data changed, so that the event is accepted).
 * Success resolves it, and *out (may be NULL) gets the case; a refusal
 * returns the error, keeps it open and counts the attempt.  An action
 * that failed for good with no fail event is dispatched once more
 * instead, and the incident is resolved (a new one follows if it fails
 * again).  Errors: FLOW_ENOTFOUND, FLOW_ECONFLICT (not open), and every
 * refusal of the event.
 */
FLOW_EXTERN int flow_incident_retry(char **out, flow_engine *engine,
                                    const char *incident_id,
                                    const flow_actor *actor);

/* Closes an open incident without applying its event; its timer is
   dropped, its request marked failed, its message dismissed.  Errors:
   FLOW_ENOTFOUND, FLOW_ECONFLICT (not open). */
FLOW_EXTERN int flow_incident_dismiss(flow_engine *engine,
                                      const char *incident_id,
                                      const flow_actor *actor);

/*
 * Sends message name (a name like payment_received) with correlation key
 * key (text of 1 to 200 bytes), payload_json (a JSON object; NULL means
 * {}) and a time to live in milliseconds (0: 7 days; at most 366 days).
 * *out (may be NULL) gets the message: id, name, key, status
 * ("delivered", "buffered" or "incident"), case (when delivered),
 * created_at, expires_at, and incident (the id, when the case refused
 * it).  When no open case holds the key and a service's correlate says
 * the message opens a case, one is opened from the key and the payload
 * and the message delivered to it, in one transaction ("opened": true);
 * if that case cannot open, the call fails as flow_case_open would
 * (FLOW_EDATA, FLOW_ESCRIPT, ...) and nothing is kept.  Errors:
 * FLOW_EINVAL, FLOW_EIO, FLOW_ECONFLICT (two services open cases on
 * this message name).
 */
FLOW_EXTERN int flow_message_send(char **out, flow_engine *engine,
                                  const char *name, const char *key,
                                  const char *payload_json, int64_t ttl_ms);

/*
 * The same, queued: applied with the loop round's other asynchronous
 * calls in one transaction (group commit, see flow_case_open_async in
 * flow/case.h), and cb (may be NULL) is called once that is durable with
 * status 0 and the message's JSON as case_json, or with the refusal.  A
 * flood of messages shares one commit per round.  Returns 0 at once, or
 * FLOW_EMISUSE / FLOW_ENOMEM; everything else is checked when it is
 * applied.
 */
FLOW_EXTERN int flow_message_send_async(flow_engine *engine, const char *name,
                                        const char *key,
                                        const char *payload_json,
                                        int64_t ttl_ms, flow_case_cb cb,
                                        void *payload);

/* *out gets the messages of name and key (NULL: any) with status (NULL:
   any; "buffered", "delivered", "expired", "incident", "dismissed"). */
FLOW_EXTERN int flow_messages_list(char **out, flow_engine *engine,
                                   const char *name, const char *key,
                                   const char *status);

#ifdef __cplusplus
}
#endif

#endif /* FLOW_TASK_H */
