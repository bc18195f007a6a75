/*
 * Actions (include/flow/action.h): the handlers a host registers, and the
 * life of each request a script made with flow.call.
 *
 * A request is a row of the store's outbox, written with the transition
 * that asked for it (engine_case.c, persist).  From then on:
 *
 *   pending, never tried --dispatch--> pending, in flight (attempt N, held
 *     until its timeout, or FLOW__ACTION_LEASE_MS without one)
 *   in flight --complete--> done (the reply event applied), or incident
 *     (the case refused the reply)
 *   in flight --retryable failure or timeout, retries left--> pending,
 *     waiting for its back-off (next_at), then dispatched again
 *   in flight --final failure--> failed (the fail event applied), or
 *     incident (no fail event, or the case refused it)
 *   in flight, its hold runs out with no timeout (its process died) -->
 *     dispatched again, the same attempt number counted on
 *
 * Each step is one transaction, conditional on the attempt count the
 * engine saw (store.h: outbox_take, outbox_settle), so of two engines on
 * one database one takes a request, and an attempt is settled once.
 * Handlers are called outside any transaction, so a handler may complete
 * its request before it returns.
 */
#include "engine/engine.h"

#include <stdio.h>
#include <string.h>


/* The longest back-off between two attempts. */
#define MAX_BACKOFF_MS ((int64_t)24 * 60 * 60 * 1000)

/* ---- the registry ------------------------------------------------------ */

static const flow__action_reg *
find_action(const flow_engine *e, const char *name)
{
  for (size_t i = 0; i < e->nactions; i++)
    if (strcmp(e->actions[i].name, name) == 0)
      return &e->actions[i];
  return NULL;
}

/* An action name as flow.call takes one: lower-case words joined by
   dots. */
static int
action_name_ok(const char *s)
{
  size_t n = strlen(s);
  if (n == 0 || n > FLOW__MAX_NAME || s[0] < 'a' || s[0] > 'z' ||
      s[n - 1] == '.')
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
             (c == '.' && s[i + 1] != '.');
    if (!ok)
      return 0;
  }
  return 1;
}

int
flow_action_register(flow_engine *engine, const char *name, flow_action_fn fn,
                     void *payload)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  if (name == NULL || fn == NULL)
    return flow__engine_fail(engine, FLOW_EMISUSE,
                             "flow_action_register: name and fn are needed");
  if (!action_name_ok(name))
    return flow__engine_fail(engine, FLOW_EINVAL,
                             "'%.60s' is not an action name (use lower-case "
                             "words joined by dots, like \"notify.sms\")",
                             name);
  if (find_action(engine, name))
    return flow__engine_fail(engine, FLOW_EEXIST,
                             "the action '%s' is registered already", name);
  if (engine->nactions == FLOW__MAX_ACTIONS)
    return flow__engine_fail(engine, FLOW_ELIMIT,
                             "an engine takes at most %d actions",
                             FLOW__MAX_ACTIONS);
  flow__action_reg *n = flow__realloc(&engine->alloc, engine->actions,
                                      (engine->nactions + 1) * sizeof *n);
  if (n == NULL)
    return flow__engine_fail(engine, FLOW_ENOMEM, "out of memory");
  engine->actions = n;
  char *copy = flow__strdup(&engine->alloc, name);
  if (copy == NULL)
    return flow__engine_fail(engine, FLOW_ENOMEM, "out of memory");
  n[engine->nactions++] = (flow__action_reg){ copy, fn, payload };
  /* Requests that waited for it are due now. */
  engine->next_due = INT64_MIN;
  flow__engine_kick(engine);
  flow__err_clear(&engine->err);
  return 0;
}

void
flow__engine_actions_free(flow_engine *e)
{
  for (size_t i = 0; i < e->nactions; i++)
    flow__free(&e->alloc, e->actions[i].name);
  flow__free(&e->alloc, e->actions);
  e->actions = NULL;
  e->nactions = 0;
}

int64_t
flow__engine_actions_next_due(flow_engine *e)
{
  int64_t next = INT64_MAX;
  flow__err err;
  flow__err_clear(&err);
  for (size_t i = 0; i < e->nactions; i++) {
    int64_t t;
    if (e->vt->outbox_next_due(e->store, e->actions[i].name, &t, &err) == 0 &&
        t < next)
      next = t;
  }
  return next;
}

/* ---- one request, as read ------------------------------------------------ */

/* A copy of a request row: the store's strings die with its cursor. */
typedef struct request {
  int64_t id, case_id, lease_until, timeout_ms, backoff_ms;
  int attempts, retry_max, pending, oom;
  char *action, *args, *key, *reply, *fail;
} request;

static char *
dup_opt(flow_engine *e, const char *s, int *oom)
{
  if (s == NULL)
    return NULL;
  char *d = flow__strdup(&e->alloc, s);
  if (d == NULL)
    *oom = 1;
  return d;
}

static void
request_copy(flow_engine *e, request *q, const flow__request_row *r)
{
  int oom = 0;
  *q = (request){
    .id = r->id,
    .case_id = r->case_id,
    .lease_until = r->lease_until,
    .timeout_ms = r->timeout_ms,
    .backoff_ms = r->backoff_ms,
    .attempts = r->attempts,
    .retry_max = r->retry_max,
    .pending = strcmp(r->status, "pending") == 0,
  };
  q->action = dup_opt(e, r->action, &oom);
  q->args = dup_opt(e, r->args, &oom);
  q->key = dup_opt(e, r->key, &oom);
  q->reply = dup_opt(e, r->reply, &oom);
  q->fail = dup_opt(e, r->fail, &oom);
  q->oom = oom;
}

static void
request_clear(flow_engine *e, request *q)
{
  flow__free(&e->alloc, q->action);
  flow__free(&e->alloc, q->args);
  flow__free(&e->alloc, q->key);
  flow__free(&e->alloc, q->reply);
  flow__free(&e->alloc, q->fail);
  memset(q, 0, sizeof *q);
}

static int
get_one(void *ctx, const flow__request_row *row)
{
  void **c = ctx;
  request_copy(c[0], c[1], row);
  return 0;
}

/* Reads request id into *q inside the caller's transaction. */
static int
request_read(flow_engine *e, int64_t id, request *q, flow__err *err)
{
  memset(q, 0, sizeof *q);
  void *ctx[2] = { e, q };
  int rc = e->vt->outbox_get(e->store, id, get_one, ctx, err);
  if (rc == 0 && q->oom) {
    request_clear(e, q);
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory reading a request");
  }
  return rc;
}

/* ev.action for the reply or fail event: which request, which attempt. */
static json_t *
origin_of(const request *q)
{
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)q->id);
  return json_pack("{s:s, s:s, s:s, s:i}", "id", id, "name", q->action,
                   "key", q->key, "attempts", q->attempts);
}

static void
notify(flow_engine *e, const char *type, const request *q, const char *error)
{
  if (!flow__engine_listened(e, 0))
    return;
  char id[24], cid[24];
  snprintf(id, sizeof id, "%lld", (long long)q->id);
  snprintf(cid, sizeof cid, "%lld", (long long)q->case_id);
  json_t *n = json_pack("{s:s, s:s, s:s, s:s, s:i}", "type", type, "request",
                        id, "case", cid, "action", q->action, "attempts",
                        q->attempts);
  if (n && error)
    json_object_set_new(n, "error", json_string(error));
  flow__engine_notify(e, n);
}

/*
 * Applies event (the reply or fail) to the request's case inside a
 * savepoint of the caller's transaction.  Returns 0 when applied, 1 when
 * the case refused it (rolled back, *why says why), or a storage error.
 */
static int
deliver(flow_engine *e, const request *q, const char *event, json_t *payload,
        char *why, size_t whylen)
{
  flow__err err;
  flow__err_clear(&err);
  size_t mark = flow__engine_notes_mark(e);
  int rc = e->vt->savepoint(e->store, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  json_t *origin = origin_of(q);
  if (origin == NULL) {
    e->vt->rollback_to(e->store);
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  }
  rc = flow__case_apply_txn(e, q->case_id, event, payload, &flow__system_actor,
                            FLOW__APPLY_ACTION, NULL, origin, NULL);
  json_decref(origin);
  if (rc == 0) {
    if ((rc = e->vt->release(e->store, &err)) != 0)
      return flow__engine_fail_err(e, &err);
    return 0;
  }
  e->vt->rollback_to(e->store);
  flow__engine_notes_drop(e, mark);
  if (rc == FLOW_EIO || rc == FLOW_EBUSY || rc == FLOW_ENOMEM)
    return rc;
  snprintf(why, whylen, "the %s event '%s' was refused: %s (%s)",
           event == q->reply ? "reply" : "fail", event, flow_errmsg(e),
           flow_err_name(rc));
  return 1;
}

/* The delay before retry number `attempts` (1 for the first retry):
   backoff doubling each time, plus up to half again of jitter that is
   the same for this request and attempt every time. */
static int64_t
retry_delay(const request *q)
{
  int64_t d = q->backoff_ms > 0 ? q->backoff_ms : 1000;
  for (int i = 1; i < q->attempts && d < MAX_BACKOFF_MS; i++)
    d *= 2;
  if (d > MAX_BACKOFF_MS)
    d = MAX_BACKOFF_MS;
  uint64_t z = (uint64_t)q->id * 0x9E3779B97F4A7C15ull + (uint64_t)q->attempts;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return d + (int64_t)(z % (uint64_t)(d / 2 + 1));
}

/* Settles attempt q->attempts of q as status: FLOW_ECONFLICT when it
   was settled already (another engine, or an answer before this one). */
static int
settle(flow_engine *e, const request *q, const char *status, int64_t next_at,
       const char *error, const char *result)
{
  flow__err err;
  flow__err_clear(&err);
  int set = 0;
  if (e->vt->outbox_settle(e->store, q->id, q->attempts, status, next_at,
                           error, result, flow_engine_now(e), &set,
                           &err) != 0)
    return flow__engine_fail_err(e, &err);
  if (!set)
    return flow__engine_fail(e, FLOW_ECONFLICT,
                             "request %lld was settled already",
                             (long long)q->id);
  return 0;
}

/*
 * The incident of a request the case refused the answer of (event, with
 * payload), or that failed for good with no fail event to tell the case
 * (event NULL: retrying it dispatches the request once more).  In the
 * caller's transaction.
 */
static int
action_incident(flow_engine *e, const request *q, const char *event,
                json_t *payload, int code, const char *why)
{
  char *ptext = payload ? flow__json_owned(&e->alloc, payload) : NULL;
  json_t *origin = origin_of(q);
  char *otext = origin ? flow__json_owned(&e->alloc, origin) : NULL;
  json_decref(origin);
  int rc;
  if ((payload && ptext == NULL) || otext == NULL) {
    rc = flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  } else {
    char rid[24];
    snprintf(rid, sizeof rid, "%lld", (long long)q->id);
    flow__incident_row r = {
      .case_id = q->case_id, .source = "action", .source_id = q->id,
      .kind = FLOW__APPLY_ACTION, .event = event ? event : "",
      .payload = ptext ? ptext : "{}", .origin = otext,
      .code = flow_err_name(code), .error = why,
      .raised_at = flow_engine_now(e),
    };
    rc = flow__incident_raise(e, &r,
                              json_pack("{s:s, s:s}", "request", rid,
                                        "action", q->action),
                              NULL);
  }
  flow_free(ptext);
  flow_free(otext);
  return rc;
}

/*
 * Settles a failed attempt inside the caller's transaction: a retry while
 * retries are left (retryable only), else the fail event or an incident.
 * *type gets what the listener is told.
 */
static int
settle_failure(flow_engine *e, const request *q, int retryable,
               int timed_out, const char *msg, const char **type, char *why,
               size_t whylen)
{
  int rc;
  snprintf(why, whylen, "%s", msg);
  if (retryable && q->attempts <= q->retry_max) {
    *type = "action_retry";
    rc = settle(e, q, "pending", flow_engine_now(e) + retry_delay(q), msg,
                NULL);
  } else {
    const char *status = "incident";
    /* The request failed for good: so the listener hears, whether the
       case took the fail event or an incident was raised (which is told
       in its own note, with its id). */
    *type = "action_failed";
    json_t *payload = NULL;
    int code = FLOW_ERROR;
    if (q->fail) {
      /* Why it ended, so that the script can tell "the host said no" from
         "nobody answered": refused (a failure not worth retrying),
         timed_out (the last attempt got no answer in time) or
         retries_exhausted (retryable failures used up the retries). */
      const char *reason = !retryable ? "refused"
                           : timed_out ? "timed_out"
                                       : "retries_exhausted";
      payload = json_pack("{s:s, s:i, s:s}", "error", msg, "attempts",
                          q->attempts, "reason", reason);
      if (payload == NULL)
        return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
      rc = deliver(e, q, q->fail, payload, why, whylen);
      if (rc < 0) {
        json_decref(payload);
        return rc;
      }
      if (rc == 0)
        status = "failed";
      code = e->err.code;
    } else {
      snprintf(why, whylen, "%s (the script named no fail event)", msg);
    }
    rc = settle(e, q, status, 0, why, NULL);
    if (rc == 0 && strcmp(status, "incident") == 0)
      rc = action_incident(e, q, q->fail, payload, code, why);
    json_decref(payload);
  }
  return rc;
}

/* ---- completion ---------------------------------------------------------- */

static int
parse_request_id(flow_engine *e, const char *text, int64_t *id)
{
  int rc = flow__case_parse_id(e, text, id);
  if (rc != 0)
    flow__engine_fail(e, rc,
                      "'%.40s' is not a request id (request ids are whole "
                      "numbers like 12)",
                      text ? text : "");
  return rc;
}

/* Reads the request and checks it is in flight: FLOW_ECONFLICT if not. */
static int
in_flight(flow_engine *e, int64_t id, request *q)
{
  flow__err err;
  flow__err_clear(&err);
  int rc = request_read(e, id, q, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  if (!q->pending || q->lease_until == FLOW__NO_TIME) {
    rc = flow__engine_fail(e, FLOW_ECONFLICT,
                           "request %lld is not waiting for an answer (%s): "
                           "this answer is ignored",
                           (long long)id,
                           q->pending ? "it waits to be sent again"
                                      : "it is finished");
    request_clear(e, q);
  }
  return rc;
}

/* Ends the transaction of a completion: commit, or roll back. */
static int
end_txn(flow_engine *e, int rc)
{
  rc = flow__engine_end_txn(e, rc);
  e->next_due = INT64_MIN;
  return rc;
}

/* One answer from the host: a result or a failure. */
typedef struct answer {
  int64_t id;
  int fail, retryable;
  char *text;     /* complete: the result as JSON text (owned) */
  json_t *result; /* complete: the result, parsed */
  char msg[512];  /* fail: the message */
} answer;

static void
answer_free(answer *a)
{
  flow_free(a->text);
  json_decref(a->result);
  a->text = NULL;
  a->result = NULL;
}

/*
 * Applies an answer inside the caller's transaction: *q gets the request
 * (cleared by the caller), *type and why what the listener is told.  A
 * refusal (FLOW_ECONFLICT, FLOW_ENOTFOUND) writes nothing; anything else
 * that fails is a storage failure, which ends the transaction.
 */
static int
apply_answer(flow_engine *e, const answer *a, request *q, const char **type,
             char *why, size_t whylen)
{
  why[0] = 0;
  int rc = in_flight(e, a->id, q);
  if (rc != 0)
    return rc;
  if (a->fail)
    return settle_failure(e, q, a->retryable, 0, a->msg, type, why, whylen);
  const char *status = "done";
  if (q->reply) {
    int d = deliver(e, q, q->reply, a->result, why, whylen);
    if (d < 0)
      return d;
    if (d == 1)
      status = "incident";
  }
  int code = e->err.code;
  if ((rc = settle(e, q, status, 0, why[0] ? why : NULL, a->text)) != 0)
    return rc;
  if (strcmp(status, "incident") == 0 &&
      (rc = action_incident(e, q, q->reply, a->result, code, why)) != 0)
    return rc;
  /* The host answered: completed, even when the case refused the reply
     (that is told as the incident's own note). */
  *type = "action_completed";
  return 0;
}

/* Applies an answer in a transaction of its own and tells the listener. */
static int
answer_now(flow_engine *e, const answer *a)
{
  flow__err err;
  flow__err_clear(&err);
  request q;
  memset(&q, 0, sizeof q);
  const char *type = NULL;
  char why[FLOW__ERRMSG_MAX];
  int rc = e->vt->begin(e->store, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  rc = apply_answer(e, a, &q, &type, why, sizeof why);
  rc = end_txn(e, rc);
  if (rc == 0) {
    notify(e, type, &q, why[0] ? why : NULL);
    flow__err_clear(&e->err);
  }
  request_clear(e, &q);
  return rc;
}

/*
 * A dispatch round: the requests taken in it, and the answers their
 * handlers gave before returning, applied together when the handlers are
 * done (flush_round), in one transaction.
 */
struct flow__action_round {
  int64_t *ids;
  unsigned char *answered;
  size_t n;
  answer *queue;
  size_t nqueue;
};

/* Queues a for the round when it answers one of its requests; 1 when
   queued (a is then the round's), 0 when not the round's, or
   FLOW_ECONFLICT for a second answer. */
static int
round_take(flow_engine *e, answer *a)
{
  flow__action_round *r = e->round;
  for (size_t i = 0; r && i < r->n; i++) {
    if (r->ids[i] != a->id)
      continue;
    if (r->answered[i]) {
      answer_free(a);
      return flow__engine_fail(e, FLOW_ECONFLICT,
                               "request %lld was answered already: this "
                               "answer is ignored",
                               (long long)a->id);
    }
    r->answered[i] = 1;
    r->queue[r->nqueue++] = *a;
    return 1;
  }
  return 0;
}

static void
flush_round(flow_engine *e, flow__action_round *r)
{
  if (r->nqueue == 0)
    return;
  flow__err err;
  flow__err_clear(&err);
  request *qs = flow__calloc(&e->alloc, r->nqueue, sizeof *qs);
  const char **types = flow__calloc(&e->alloc, r->nqueue, sizeof *types);
  char (*whys)[512] = flow__calloc(&e->alloc, r->nqueue, sizeof *whys);
  int rc = qs && types && whys ? e->vt->begin(e->store, &err) : FLOW_ENOMEM;
  size_t i = 0;
  for (; rc == 0 && i < r->nqueue; i++) {
    int one = apply_answer(e, &r->queue[i], &qs[i], &types[i], whys[i],
                           sizeof whys[i]);
    /* A refusal writes nothing; anything else is the store failing. */
    if (one != 0 && one != FLOW_ECONFLICT && one != FLOW_ENOTFOUND)
      rc = one;
  }
  if (rc == 0 && (rc = e->vt->commit(e->store, &err)) != 0)
    flow__engine_fail_err(e, &err);
  if (rc == 0) {
    flow__engine_notes_flush(e); /* the replies' transitions */
    for (i = 0; i < r->nqueue; i++)
      if (types[i])
        notify(e, types[i], &qs[i], whys[i][0] ? whys[i] : NULL);
  } else {
    /* Each on its own, so that one failure does not lose the others; a
       request whose answer cannot be applied stays in flight and goes
       out again when its hold runs out. */
    e->vt->rollback(e->store);
    flow__engine_notes_drop(e, 0);
    for (i = 0; i < r->nqueue; i++)
      answer_now(e, &r->queue[i]);
  }
  for (i = 0; qs && i < r->nqueue; i++)
    request_clear(e, &qs[i]);
  for (i = 0; i < r->nqueue; i++)
    answer_free(&r->queue[i]);
  r->nqueue = 0;
  flow__free(&e->alloc, qs);
  flow__free(&e->alloc, types);
  flow__free(&e->alloc, whys);
  e->next_due = INT64_MIN;
}

/* Gives answer a (consumed): queued for the round it answers, or applied
   now. */
static int
give_answer(flow_engine *e, answer *a)
{
  int rc = round_take(e, a);
  if (rc != 0)
    return rc < 0 ? rc : 0;
  rc = answer_now(e, a);
  answer_free(a);
  return rc;
}

/* An answer to request_id, with its id read: 0 or the refusal. */
static int
answer_start(flow_engine *e, const char *request_id, answer *a)
{
  memset(a, 0, sizeof *a);
  return parse_request_id(e, request_id, &a->id);
}

int
flow_action_complete(flow_engine *engine, const char *request_id,
                     const char *result_json)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  flow_engine *e = engine;
  answer a;
  int rc = answer_start(e, request_id, &a);
  if (rc != 0)
    return rc;
  flow__err err;
  flow__err_clear(&err);
  if (flow__json_parse_object(result_json ? result_json : "{}",
                              "the action's result", &a.result, &err) != 0)
    return flow__engine_fail_err(e, &err);
  if ((a.text = flow__json_owned(&e->alloc, a.result)) == NULL) {
    answer_free(&a);
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  }
  return give_answer(e, &a);
}

int
flow_action_fail(flow_engine *engine, const char *request_id, int retryable,
                 const char *message)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  flow_engine *e = engine;
  answer a;
  int rc = answer_start(e, request_id, &a);
  if (rc != 0)
    return rc;
  a.fail = 1;
  a.retryable = retryable;
  snprintf(a.msg, sizeof a.msg, "%s",
           message && *message ? message : "the action failed");
  if (!flow__utf8_valid(a.msg, strlen(a.msg)))
    snprintf(a.msg, sizeof a.msg, "the action failed (its message was not "
                                  "UTF-8 text)");
  return give_answer(e, &a);
}

/* ---- dispatch ------------------------------------------------------------ */

typedef struct due_list {
  flow_engine *e;
  request *items;
  size_t n, max;
} due_list;

static int
collect(void *ctx, const flow__request_row *row)
{
  due_list *d = ctx;
  if (d->n == d->max)
    return 0;
  request_copy(d->e, &d->items[d->n], row);
  if (d->items[d->n].oom) {
    request_clear(d->e, &d->items[d->n]);
    return FLOW_ENOMEM;
  }
  d->n++;
  return 0;
}

/* An attempt whose timeout passed: a retryable failure. */
static int
time_out(flow_engine *e, request *q)
{
  char msg[128], why[FLOW__ERRMSG_MAX];
  const char *type = NULL;
  snprintf(msg, sizeof msg, "no answer within %lld s (the call's timeout)",
           (long long)(q->timeout_ms / 1000));
  flow__err err;
  flow__err_clear(&err);
  int rc = e->vt->begin(e->store, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  rc = settle_failure(e, q, 1, 1, msg, &type, why, sizeof why);
  if (rc == FLOW_ECONFLICT) {
    e->vt->rollback(e->store);
    return 0; /* another engine settled it */
  }
  if ((rc = end_txn(e, rc)) == 0)
    notify(e, type, q, why);
  return rc;
}

/* Calls the handler for a request taken for attempt q->attempts. */
static void
call_handler(flow_engine *e, const flow__action_reg *a, const request *q)
{
  char id[24], cid[24];
  snprintf(id, sizeof id, "%lld", (long long)q->id);
  snprintf(cid, sizeof cid, "%lld", (long long)q->case_id);
  flow_request req = { .id = id,
                       .action = q->action,
                       .case_id = cid,
                       .args_json = q->args,
                       .key = q->key,
                       .attempt = q->attempts };
  int was = e->in_callback;
  e->in_callback = 1;
  a->fn(e, &req, a->payload);
  e->in_callback = was;
}

/*
 * One action's turn in a round: the due requests are read and taken in
 * one transaction, timed-out attempts settled, then each handler called;
 * the answers they gave before returning are applied together.
 */
static int
dispatch_action(flow_engine *e, size_t ai, due_list *d, int64_t now,
                size_t *sent)
{
  flow__err err;
  flow__err_clear(&err);
  const char *name = e->actions[ai].name;
  int rc = e->vt->begin(e->store, &err);
  if (rc == 0)
    rc = e->vt->outbox_due(e->store, name, now, d->max, collect, d, &err);
  int64_t *ids = flow__calloc(&e->alloc, d->n ? d->n : 1, sizeof *ids);
  unsigned char *taken = flow__calloc(&e->alloc, d->n ? d->n : 1, 1);
  answer *queue = flow__calloc(&e->alloc, d->n ? d->n : 1, sizeof *queue);
  if (rc == 0 && (ids == NULL || taken == NULL || queue == NULL))
    rc = flow__err_set(&err, FLOW_ENOMEM, "out of memory dispatching");
  size_t n = 0;
  for (size_t i = 0; rc == 0 && i < d->n; i++) {
    request *q = &d->items[i];
    if (q->lease_until != FLOW__NO_TIME && q->timeout_ms > 0)
      continue; /* timed out: settled below */
    int64_t hold = q->timeout_ms > 0 ? q->timeout_ms : FLOW__ACTION_LEASE_MS;
    int one = 0;
    rc = e->vt->outbox_take(e->store, q->id, q->attempts, now + hold, &one,
                            &err);
    if (rc == 0 && one) {
      taken[i] = 1;
      q->attempts++;
      ids[n++] = q->id;
    }
  }
  if (rc == 0)
    rc = e->vt->commit(e->store, &err);
  if (rc != 0) {
    e->vt->rollback(e->store);
    flow__engine_fail_err(e, &err);
  }
  for (size_t i = 0; rc == 0 && i < d->n; i++) {
    request *q = &d->items[i];
    if (q->lease_until != FLOW__NO_TIME && q->timeout_ms > 0) {
      rc = time_out(e, q);
      *sent += rc == 0; /* settled: work done */
    }
  }
  unsigned char *answered = flow__calloc(&e->alloc, n ? n : 1, 1);
  flow__action_round round = { ids, answered, n, queue, 0 };
  flow__action_round *outer = e->round;
  if (rc == 0 && answered == NULL)
    rc = flow__engine_fail(e, FLOW_ENOMEM, "out of memory dispatching");
  if (rc == 0) {
    e->round = &round;
    for (size_t i = 0; i < d->n; i++) {
      if (!taken[i])
        continue;
      /* The registry may grow during a handler: look it up each time. */
      call_handler(e, &e->actions[ai], &d->items[i]);
      ++*sent;
    }
    e->round = outer;
    flush_round(e, &round);
  }
  flow__free(&e->alloc, ids);
  flow__free(&e->alloc, taken);
  flow__free(&e->alloc, queue);
  flow__free(&e->alloc, answered);
  return rc;
}

int
flow__engine_dispatch_batch(flow_engine *e, size_t max, size_t *sent,
                            size_t *seen)
{
  *sent = *seen = 0;
  if (e->nactions == 0 || max == 0)
    return 0;
  int64_t now = flow_engine_now(e);
  due_list d = { e, NULL, 0, max };
  d.items = flow__calloc(&e->alloc, max, sizeof *d.items);
  if (d.items == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory dispatching");
  int rc = 0;
  /* Each action in turn, so that one action's backlog cannot hold the
     others back; a round takes up to max requests in all. */
  size_t na = e->nactions;
  for (size_t k = 0; k < na && rc == 0 && *seen < max; k++) {
    d.n = 0;
    d.max = max - *seen;
    rc = dispatch_action(e, (e->action_turn + k) % na, &d, now, sent);
    *seen += d.n;
    for (size_t i = 0; i < d.n; i++)
      request_clear(e, &d.items[i]);
  }
  e->action_turn = na ? (e->action_turn + 1) % na : 0;
  flow__free(&e->alloc, d.items);
  e->next_due = INT64_MIN;
  return rc;
}

/* ---- listing ------------------------------------------------------------- */

typedef struct list_ctx {
  flow_engine *e;
  json_t *arr;
  int waiting; /* only pending requests of unregistered actions */
} list_ctx;

static int
list_item(void *ctx, const flow__request_row *r)
{
  list_ctx *l = ctx;
  int registered = find_action(l->e, r->action) != NULL;
  int pending = strcmp(r->status, "pending") == 0;
  if (l->waiting && registered)
    return 0;
  char id[24], cid[24];
  snprintf(id, sizeof id, "%lld", (long long)r->id);
  snprintf(cid, sizeof cid, "%lld", (long long)r->case_id);
  json_t *args = json_loads(r->args, 0, NULL);
  char created[32], next[32];
  flow__time_format(created, sizeof created, r->created_at);
  flow__time_format(next, sizeof next, r->next_at);
  json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:i, s:s}", "id", id,
                        "case", cid, "action", r->action, "args",
                        args ? args : json_object(), "key", r->key, "status",
                        pending && !registered ? "waiting" : r->status,
                        "attempts", r->attempts, "created_at", created);
  if (o == NULL)
    return FLOW_ENOMEM;
  if (pending)
    json_object_set_new(o, "next_at", json_string(next));
  if (r->reply)
    json_object_set_new(o, "reply", json_string(r->reply));
  if (r->fail)
    json_object_set_new(o, "fail", json_string(r->fail));
  if (r->error)
    json_object_set_new(o, "error", json_string(r->error));
  if (r->result) {
    json_t *res = json_loads(r->result, 0, NULL);
    if (res)
      json_object_set_new(o, "result", res);
  }
  if (r->finished_at != FLOW__NO_TIME) {
    char fin[32];
    flow__time_format(fin, sizeof fin, r->finished_at);
    json_object_set_new(o, "finished_at", json_string(fin));
  }
  return json_array_append_new(l->arr, o) == 0 ? 0 : FLOW_ENOMEM;
}

int
flow_actions_list(char **out, flow_engine *engine, const char *case_id,
                  const char *status)
{
  if (out)
    *out = NULL;
  if (engine == NULL || out == NULL)
    return flow__engine_misuse(engine, "flow_actions_list: out is NULL");
  flow_engine *e = engine;
  int64_t cid = 0;
  int rc;
  if (case_id && (rc = flow__case_parse_id(e, case_id, &cid)) != 0)
    return rc;
  static const char *const statuses[] = { "pending", "waiting", "done",
                                          "failed", "incident", NULL };
  int known = status == NULL;
  for (int i = 0; !known && statuses[i]; i++)
    known = strcmp(status, statuses[i]) == 0;
  if (!known)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "'%.40s' is not a request status (pending, "
                             "waiting, done, failed or incident)",
                             status);
  list_ctx l = { e, json_array(), status && strcmp(status, "waiting") == 0 };
  if (l.arr == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  flow__err err;
  flow__err_clear(&err);
  rc = e->vt->outbox_list(e->store, cid, l.waiting ? "pending" : status,
                          1000, list_item, &l, &err);
  if (rc != 0) {
    json_decref(l.arr);
    return flow__engine_fail_err(e, &err);
  }
  *out = flow__json_owned(&e->alloc, l.arr);
  json_decref(l.arr);
  if (*out == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  flow__err_clear(&e->err);
  return 0;
}
