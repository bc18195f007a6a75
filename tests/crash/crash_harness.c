/*
 * The crash harness: proof that a kill -9 never loses an acknowledged event
 * and never leaves a case that its own history cannot explain.
 *
 * The driver (parent) forks a child that opens an engine on a database
 * file, loads examples/services/missed_bin.lua (and bulky_waste.lua, see
 * below) and drives cases through open/assign/schedule/collect (and
 * cannot_access, and the supervisor's collect after an escalation) as
 * fast as it can, on a virtual clock that moves forward a few minutes per
 * step so that the service's `after` timer (2 working days) and its
 * service-level timer (5 working days) fall due and fire while the child
 * runs.  It mixes synchronous calls, each its own commit, with batches of
 * asynchronous calls flushed by flow_engine_run(FLOW_RUN_NOWAIT), so that
 * whole groups are committed at once.  For every call that was ACKNOWLEDGED (a synchronous call returned
 * 0, an asynchronous callback had status 0) the child writes one line to a
 * pipe, "A <case> <seq> <event> <state>", with one write(2), after the
 * acknowledgement and never before.  Around each group commit it writes
 * "G" and "g" so the driver can tell when a kill landed inside one.
 *
 * Between the missed_bin work it books bulky waste collections
 * (examples/services/bulky_waste.lua: a case waits for the message
 * payment_received correlated by its payment_ref, then a crew member
 * completes its "collect" task), with synchronous calls, and some
 * openings in the asynchronous batches:
 *   - each booking has a payment reference of its own; a third are paid
 *     BEFORE the opening (the message is buffered, some with a time to live
 *     of hours, and the opening delivers it in its own transaction; when
 *     the case the opening returns is already booked, seq 2, the child
 *     acknowledges both rows: "A <case> 1 open awaiting_payment" and "A
 *     <case> 2 payment_received booked"), some never (their `after` timer
 *     lapses them), the rest after the opening (delivered at once); a few
 *     notices are sent twice, which the booked case refuses (an incident).  Every send that returned 0 is
 *     acknowledged "M <message> <status> <case or -> <key>";
 *   - for a booked case the child lists its task, claims it for its crew
 *     member ("crew-<slot>": the child restarted in a slot takes up what its
 *     predecessor claimed) and completes it with outcome collected or
 *     not_out -- or completes it unclaimed, or leaves it claimed for later,
 *     or (holding it) tries the empty outcome {}, which the form refuses
 *     and which must leave the task and the case as they were (the child
 *     checks at once and dies, a problem, if not); or it cancels the
 *     booking, whose task must end cancelled.  It acknowledges a claim
 *     that returned 0 as "K <task> <actor>" and a completion as an "A" line
 *     for its collection_done event and "T <task> <case> <actor>";
 *   - a crew member also picks one of the team's open tasks, often one of
 *     the oldest two, whatever child opened its case, and claims it, so
 *     that with --procs two children claim one task at once (exactly one
 *     may succeed; the other gets FLOW_ECONFLICT, counted); or one already
 *     claimed, which another crew member may neither claim nor complete (a
 *     completion of another's task that returned 0 kills the child: a
 *     problem).
 *
 * After a random delay (microseconds, from a seeded generator, printed) the
 * driver kills the child with SIGKILL, drains the pipe, and checks the
 * database with a fresh engine:
 *   - every acknowledged event is in its case's history, at its seq, with
 *     the same event name and target state;
 *   - every history starts at seq 1 with "open" and has no gap, and the
 *     case's seq is the number of events;
 *   - every case equals a replay of its own history on a fresh in-memory
 *     engine (the same events, payloads and actors, with the engine clock
 *     set to each event's recorded time; a timer row, whose actor is the
 *     engine's system actor, is replayed by firing due timers at its time):
 *     state, status, data, due time and every history row must match, and
 *     the pending timers must equal the replay's, so no timer was lost
 *     (the replay still has it pending) or fired twice (the replay has no
 *     second firing to match);
 *   - the text message the service asks for (flow.call, when a case with
 *     a phone number enters `assigned`) is there exactly once for every
 *     such transition in the history, and for no other: a request is
 *     written with its transition or not at all; it is pending or done,
 *     never failed; and every answer the child ACKNOWLEDGED ("C <id>",
 *     written after flow_action_complete returned 0 outside a handler)
 *     left its request done.  The child registers the action and answers
 *     half the requests inside the handler (applied at the end of the
 *     loop round, so a kill may lose them: they go out again when their
 *     hold runs out) and half later, outside;
 *   - every acknowledged message send is listed; one acknowledged
 *     delivered is delivered to that case, an incident is an incident of
 *     that case, and the case has its key and exactly one payment_received;
 *     one acknowledged buffered is still buffered, delivered (exactly
 *     once, to the case holding its key), an incident of that case, or
 *     expired (its time to live over by the latest time the database's
 *     engines saw) -- never lost, never delivered twice;
 *   - every bulky_waste case has payment_received at most once, as row 2 by
 *     the engine's system actor, with the payload of the one message
 *     delivered to it (as many delivered messages of its key as payment
 *     events, none delivered elsewhere); no message of its key still
 *     buffered while it waits in awaiting_payment; one open incident per
 *     refused message and no other incidents;
 *   - every entry into booked (a history row to "booked") created exactly
 *     one "collect" task, shown on that row ("tasks"), and no other row
 *     created any; the case has as many tasks as entries; a task whose
 *     booking has not moved on is open or claimed; one followed by
 *     collection_done is done, finished by that event's actor, with its
 *     payload's outcome and `by`; one followed by anything else (cancel)
 *     is cancelled; as many tasks done as collection_done events;
 *   - every acknowledged claim holds: the task is claimed (or done, or
 *     cancelled) by that actor and, if done, finished by it; two different
 *     claims of one task acknowledged is a problem; every acknowledged
 *     completion left its task done, by that actor, of that case, whose
 *     history has exactly one collection_done;
 *   - the replay check above covers bulky_waste cases too: a
 *     payment_received row (a delivery, by the system actor) is replayed by
 *     flow_message_send with the case's payment_ref and the row's payload at
 *     the row's time, and must be delivered at once to the replay's case; a
 *     collection_done row (payload {task, outcome, by}) by completing the
 *     replay's live task of that name with the recorded outcome, as the
 *     row's actor.  The case's tasks must match the replay's (name, title,
 *     team, due and creation times, form; status, outcome, finished_by/at
 *     when done or cancelled -- claims are not events, so a live task is
 *     open in the replay), and the pending timers too, a task's due-time
 *     timer named by its place among the case's tasks; that timer fires
 *     with no event, so one the replay still holds may be gone from the
 *     database when it fell due by the latest time its engines saw;
 *   - the database accepts a new case and an event on it, and a booking
 *     and its payment (delivered at once).
 * The next child carries on on the same database (a restart after the
 * crash) for --rounds-per-db rounds, then a new database starts.
 *
 * With --procs P (2 to 4) each round runs P children at once, each with
 * its own engine on the same database file and all on one virtual clock
 * (an 8-byte file they map and move on together), so they fire each
 * other's timers and race for the same due ones; each is SIGKILLed after
 * a delay of its own, so some of them die while the others go on and must
 * pick up what the dead one left.  The checks are the same, over the
 * acknowledgements of all of them: a timer fired twice or lost shows as a
 * history that its replay cannot explain, a task claimed by two as two
 * acknowledged claims or a claim the task does not show, a payment
 * applied twice as a second payment_received.
 *
 * Usage: crash_harness [--kills K] [--source DIR] [--seed S] [--dir D]
 *          [--max-delay-us U] [--rounds-per-db R] [--sync-only] [--keep]
 *          [--procs P] [--verbose] [--self-test]
 * It prints the seed, one line per kill (the child's seed and the delay
 * before its SIGKILL), the bulky_waste figures (acknowledged sends, claims
 * and completions checked, claims refused as taken), and ends with
 * "crash: K kills, E acknowledged events checked, 0 problems" and status
 * 0; or one PROBLEM line per problem, status 1, and the databases kept for
 * a look.  Status 2 is a usage or setup error.  --sync-only drives the
 * engine with synchronous calls alone; --self-test throws away the end of
 * the WAL after each kill and cancels one open task behind its booked
 * case's back, and passes only if the harness reports lost acknowledged
 * events, lost acknowledged message sends and a task problem.
 */
#define _GNU_SOURCE /* ppoll */

#include <errno.h>
#include <fcntl.h>
#include <flow.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- options and shared state ------------------------------------------ */

#define MAX_PROCS 4

typedef struct options {
  long kills;
  const char *source;
  uint64_t seed;
  const char *dir;
  long max_delay_us;
  long rounds_per_db;
  int async;
  int keep;
  int verbose;
  int self_test;
  int procs;
  int slot; /* a child's: which of the round's children it is, from 1 */
} options;

static options OPT = { 100, ".", 0, NULL, 60000, 4, 1, 0, 0, 0, 1, 0 };
static char SERVICE_PATH[4096];
static char BULKY_PATH[4096]; /* examples/services/bulky_waste.lua */
static char SELF[4096]; /* this program, for the child's exec */

/* Monday 2 November 2026, 09:00 London (= UTC in winter). */
#define T0_ISO "2026-11-02T09:00:00Z"

/* ---- a small seeded generator (splitmix64) ----------------------------- */

static uint64_t
rnd_next(uint64_t *s)
{
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t
rnd_below(uint64_t *s, uint64_t n)
{
  return n ? rnd_next(s) % n : 0;
}

/* ======================================================================== */
/* The child: load and acknowledgements                                      */
/* ======================================================================== */

enum { ST_UNKNOWN, ST_REPORTED, ST_ASSIGNED, ST_SCHEDULED, ST_ESCALATED,
       ST_CLOSED, ST_AWAITING, ST_BOOKED, ST_LAPSED };

static int
state_code(const char *s)
{
  if (s == NULL)
    return ST_UNKNOWN;
  if (strcmp(s, "reported") == 0)
    return ST_REPORTED;
  if (strcmp(s, "assigned") == 0)
    return ST_ASSIGNED;
  if (strcmp(s, "scheduled") == 0)
    return ST_SCHEDULED;
  if (strcmp(s, "escalated") == 0)
    return ST_ESCALATED;
  if (strcmp(s, "closed") == 0)
    return ST_CLOSED;
  if (strcmp(s, "awaiting_payment") == 0)
    return ST_AWAITING;
  if (strcmp(s, "booked") == 0)
    return ST_BOOKED;
  if (strcmp(s, "lapsed") == 0)
    return ST_LAPSED;
  return ST_UNKNOWN;
}

/* What the child knows about its cases: state by id, and the open ones in
   an array for picking at random (pos[] makes removal O(1)). */
typedef struct tracker {
  unsigned char *state; /* by id */
  long *pos;            /* index in open[], -1 when not open */
  size_t cap;           /* of state[] and pos[] */
  int64_t *open;
  size_t nopen, capopen;
} tracker;

#define LATER_MAX 512

/* What the child knows of a bulky_waste case beyond its state. */
typedef struct bulky {
  char ref[32];        /* its payment_ref */
  unsigned char paid;  /* a payment was sent for it (before or after) */
  unsigned char never; /* nobody pays: its `after` timer lapses it */
} bulky;

typedef struct child {
  flow_engine *e;
  char later[LATER_MAX][24]; /* requests to answer after the round */
  size_t nlater;
  int fd;
  uint64_t rng;
  int64_t now;
  int64_t *clock; /* the clock shared by the round's children */
  long serial; /* for unique uprns and payment references */
  tracker t;   /* missed_bin cases */
  tracker b;   /* bulky_waste cases */
  bulky *aux;  /* by bulky_waste case id */
  size_t capaux;
  char crew_id[32]; /* "crew-<slot>": this child's crew member */
  flow_actor crew;
} child;

static const char *const CREW_ROLES[] = { "crew" };
static const char *const SUP_ROLES[] = { "supervisor" };
static const flow_actor CITIZEN = { "resident", NULL, 0 };
static const flow_actor CREW = { "crew-lead", CREW_ROLES, 1 };
static const flow_actor SUPERVISOR = { "supervisor-1", SUP_ROLES, 1 };

static void
child_die(child *c, const char *fmt, ...)
{
  char line[1024];
  va_list ap;
  int n = snprintf(line, sizeof line, "F ");
  va_start(ap, fmt);
  n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof line - 2)
    n = (int)sizeof line - 2;
  line[n++] = '\n';
  if (write(c->fd, line, (size_t)n) < 0) {
    /* Nobody to tell. */
  }
  _exit(3);
}

/* One line per write(2): pipe writes up to PIPE_BUF bytes are atomic. */
static void
child_line(child *c, const char *line, size_t n)
{
  while (n > 0) {
    ssize_t w = write(c->fd, line, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      _exit(4);
    line += w;
    n -= (size_t)w;
  }
}

static void
tracker_grow(tracker *t, int64_t id)
{
  if ((size_t)id < t->cap)
    return;
  size_t cap = t->cap ? t->cap : 256;
  while (cap <= (size_t)id)
    cap *= 2;
  unsigned char *s = realloc(t->state, cap);
  long *p = realloc(t->pos, cap * sizeof *p);
  if (s == NULL || p == NULL)
    _exit(5);
  memset(s + t->cap, ST_UNKNOWN, cap - t->cap);
  for (size_t i = t->cap; i < cap; i++)
    p[i] = -1;
  t->state = s;
  t->pos = p;
  t->cap = cap;
}

static void
tracker_set(tracker *t, int64_t id, int st)
{
  if (id <= 0)
    return;
  tracker_grow(t, id);
  t->state[id] = (unsigned char)st;
  int open = st != ST_CLOSED && st != ST_LAPSED;
  if (open && t->pos[id] < 0) {
    if (t->nopen == t->capopen) {
      t->capopen = t->capopen ? 2 * t->capopen : 256;
      t->open = realloc(t->open, t->capopen * sizeof *t->open);
      if (t->open == NULL)
        _exit(5);
    }
    t->pos[id] = (long)t->nopen;
    t->open[t->nopen++] = id;
  } else if (!open && t->pos[id] >= 0) {
    size_t i = (size_t)t->pos[id];
    int64_t last = t->open[--t->nopen];
    t->open[i] = last;
    t->pos[last] = (long)i;
    t->pos[id] = -1;
  }
}

/* The tracker of a service's cases. */
static tracker *
tracker_of(child *c, const char *service)
{
  return service && strcmp(service, "bulky_waste") == 0 ? &c->b : &c->t;
}

static bulky *
aux_of(child *c, int64_t id)
{
  if (id <= 0)
    return NULL;
  if ((size_t)id >= c->capaux) {
    size_t cap = c->capaux ? c->capaux : 256;
    while (cap <= (size_t)id)
      cap *= 2;
    bulky *p = realloc(c->aux, cap * sizeof *p);
    if (p == NULL)
      _exit(5);
    memset(p + c->capaux, 0, (cap - c->capaux) * sizeof *p);
    c->aux = p;
    c->capaux = cap;
  }
  return &c->aux[id];
}

/* Acknowledges a case JSON returned by a successful call: one pipe line.
   Returns the case's id. */
static int64_t
child_ack(child *c, const char *case_json, const char *event)
{
  json_t *j = json_loads(case_json, 0, NULL);
  if (j == NULL)
    child_die(c, "a successful %s returned no case JSON", event);
  const char *id = json_string_value(json_object_get(j, "id"));
  const char *state = json_string_value(json_object_get(j, "state"));
  json_int_t seq = json_integer_value(json_object_get(j, "seq"));
  if (id == NULL || state == NULL || seq <= 0)
    child_die(c, "a successful %s returned a case without id/state/seq",
              event);
  const char *svc = json_string_value(json_object_get(j, "service"));
  int is_bulky = svc && strcmp(svc, "bulky_waste") == 0;
  char line[256];
  int n;
  if (strcmp(event, "open") == 0 && seq > 1) {
    /* An opening that took a buffered message: the case returned is as
       the delivery (seq 2, in the same transaction) left it. */
    if (!is_bulky || seq != 2)
      child_die(c, "an opening of %s returned seq %" JSON_INTEGER_FORMAT,
                svc ? svc : "?", seq);
    n = snprintf(line, sizeof line,
                 "A %s 1 open awaiting_payment\n"
                 "A %s 2 payment_received %s\n", id, id, state);
  } else {
    n = snprintf(line, sizeof line, "A %s %" JSON_INTEGER_FORMAT " %s %s\n",
                 id, seq, event, state);
  }
  child_line(c, line, (size_t)n);
  int64_t cid = strtoll(id, NULL, 10);
  tracker_set(tracker_of(c, svc), cid, state_code(state));
  json_decref(j);
  return cid;
}

/* Learns a case's state from the database (after a refusal). */
static void
child_learn(child *c, const char *id)
{
  char *cj = NULL;
  if (flow_case_get(&cj, c->e, id) == 0) {
    json_t *j = json_loads(cj, 0, NULL);
    tracker_set(tracker_of(c, json_string_value(json_object_get(j,
                                                                "service"))),
                strtoll(id, NULL, 10),
                state_code(json_string_value(json_object_get(j, "state"))));
    json_decref(j);
  }
  flow_free(cj);
}

/* Timers move cases behind the child's back: the listener keeps up. */
static void
child_listen(flow_engine *e, const char *event_json, void *payload)
{
  child *c = payload;
  (void)e;
  json_t *j = json_loads(event_json, 0, NULL);
  const char *type = json_string_value(json_object_get(j, "type"));
  if (type && strcmp(type, "transition") == 0) {
    const char *id = json_string_value(json_object_get(j, "case"));
    const char *to = json_string_value(json_object_get(j, "to"));
    const char *svc = json_string_value(json_object_get(j, "service"));
    if (id && to)
      tracker_set(tracker_of(c, svc), strtoll(id, NULL, 10), state_code(to));
  }
  json_decref(j);
}

/* One planned call. */
typedef struct op {
  int64_t case_id; /* 0: open a case */
  char id[24];
  const char *event;
  const char *service; /* of an opening */
  char payload[160];
  const flow_actor *actor;
  child *c;
  bulky aux; /* of a bulky_waste opening */
} op;

static void
plan_open(child *c, op *o)
{
  long i = ++c->serial;
  o->case_id = 0;
  o->event = "open";
  o->service = "missed_bin";
  o->actor = &CITIZEN;
  if (rnd_below(&c->rng, 4) == 0)
    snprintf(o->payload, sizeof o->payload,
             "{\"uprn\":\"1000%ld\",\"address\":\"%ld High Street\","
             "\"bin\":\"refuse\",\"reported_by\":\"citizen\","
             "\"phone\":\"+44 7700 900%03ld\"}",
             i % 100000000, i, i % 1000);
  else
    snprintf(o->payload, sizeof o->payload,
             "{\"uprn\":\"1000%ld\",\"address\":\"%ld High Street\","
             "\"bin\":\"%s\",\"reported_by\":\"citizen\"}",
             i % 100000000, i,
             i % 3 == 0 ? "refuse" : i % 3 == 1 ? "recycling" : "garden");
}

/* The action the service asks for: answered inside the handler half the
   time, else noted and answered after the loop round (child_answer_later),
   which acknowledges it. */
static void
child_action(flow_engine *e, const flow_request *rq, void *payload)
{
  child *c = payload;
  if (c->nlater < LATER_MAX && rnd_below(&c->rng, 2) == 0)
    snprintf(c->later[c->nlater++], sizeof c->later[0], "%s", rq->id);
  else
    flow_action_complete(e, rq->id, "{\"sent\":true}");
}

static void
child_answer_later(child *c)
{
  for (size_t i = 0; i < c->nlater; i++) {
    if (flow_action_complete(c->e, c->later[i], "{\"sent\":true}") == 0) {
      char line[48];
      int n = snprintf(line, sizeof line, "C %s\n", c->later[i]);
      child_line(c, line, (size_t)n);
    }
  }
  c->nlater = 0;
}

/* The next event for a random open case, by the state the child believes
   it is in (a stale belief is refused, which is fine: no acknowledgement). */
static void
plan_op(child *c, op *o)
{
  tracker *t = &c->t;
  if (t->nopen < 8 || rnd_below(&c->rng, 100) < 22) {
    plan_open(c, o);
    return;
  }
  int64_t id = t->open[rnd_below(&c->rng, t->nopen)];
  /* Nobody picks up a quarter of the cases, so their `after` timer
     escalates them; nobody closes an eighth after the escalation, so
     their service level is breached too. */
  if ((t->state[id] == ST_REPORTED && id % 4 == 0) ||
      (t->state[id] == ST_ESCALATED && id % 8 == 0)) {
    plan_open(c, o);
    return;
  }
  o->case_id = id;
  snprintf(o->id, sizeof o->id, "%" PRId64, id);
  o->actor = &CREW;
  snprintf(o->payload, sizeof o->payload, "{}");
  uint64_t r = rnd_below(&c->rng, 100);
  switch (t->state[id]) {
  case ST_REPORTED:
    o->event = "assign";
    if (r < 4) /* refused by flow.fail: no crew named */
      break;
    snprintf(o->payload, sizeof o->payload, "{\"crew\":\"crew-%" PRIu64 "\"}",
             rnd_below(&c->rng, 10));
    break;
  case ST_ASSIGNED:
    if (r < 65) {
      o->event = "schedule";
      snprintf(o->payload, sizeof o->payload,
               "{\"date\":\"2026-12-%02" PRIu64 "\"}",
               1 + rnd_below(&c->rng, 28));
    } else if (r < 90) {
      o->event = "collect";
    } else {
      o->event = "cannot_access";
    }
    break;
  case ST_SCHEDULED:
    o->event = r < 88 ? "collect" : "cannot_access";
    break;
  case ST_ESCALATED:
    o->event = "collect";
    o->actor = r < 95 ? &SUPERVISOR : &CREW; /* crew: refused, no role */
    break;
  default:
    o->event = "collect";
    break;
  }
}

static void
child_sync(child *c, op *o)
{
  char *out = NULL;
  int rc;
  if (o->case_id == 0)
    rc = flow_case_open(&out, c->e, o->service, o->payload, o->actor);
  else
    rc = flow_case_signal(&out, c->e, o->id, o->event, o->payload, o->actor);
  if (rc == 0) {
    int64_t id = child_ack(c, out, o->event);
    if (o->case_id == 0 && strcmp(o->service, "bulky_waste") == 0)
      *aux_of(c, id) = o->aux;
  } else if (rc == FLOW_EIO || rc == FLOW_EBUSY || rc == FLOW_ENOMEM ||
             rc == FLOW_ERROR || rc == FLOW_EMISUSE ||
             rc == FLOW_ECANCELED) {
    child_die(c, "%s on case %s: %s: %s", o->event,
              o->case_id ? o->id : "(new)", flow_err_name(rc),
              flow_errmsg(c->e));
  } else if (o->case_id) {
    /* Refused: learn the case's real state for next time. */
    child_learn(c, o->id);
  }
  flow_free(out);
}

static void
child_async_done(flow_engine *e, int status, const char *case_json,
                 void *payload)
{
  op *o = payload;
  child *c = o->c;
  (void)e;
  if (status == 0) {
    int64_t id = child_ack(c, case_json, o->event);
    if (o->case_id == 0 && strcmp(o->service, "bulky_waste") == 0)
      *aux_of(c, id) = o->aux;
  } else if (status == FLOW_EIO || status == FLOW_EBUSY ||
           status == FLOW_ENOMEM || status == FLOW_ERROR)
    child_die(c, "async %s on case %s: %s: %s", o->event,
              o->case_id ? o->id : "(new)", flow_err_name(status),
              flow_errmsg(e));
  else if (o->case_id && (size_t)o->case_id < c->t.cap &&
           c->t.state[o->case_id] != ST_CLOSED)
    c->t.state[o->case_id] = ST_UNKNOWN; /* "collect" finds out */
  free(o);
}

/* ---- bulky_waste: messages and tasks --------------------------------------- */

static int
child_fatal(int rc)
{
  return rc == FLOW_EIO || rc == FLOW_EBUSY || rc == FLOW_ENOMEM ||
         rc == FLOW_ERROR || rc == FLOW_EMISUSE || rc == FLOW_ECANCELED;
}

/* Sends the payment notice for ref and, when the send returned 0,
   acknowledges it: "M <message> <status> <case or -> <key>".  Returns the
   status's first letter ('d'elivered, 'b'uffered, 'i'ncident), or 0. */
static int
bulky_send(child *c, const char *ref, int64_t ttl_ms)
{
  char payload[96];
  long n = ++c->serial;
  snprintf(payload, sizeof payload, "{\"amount\":%ld,\"n\":%ld}",
           1500 + n % 3000, n);
  char *out = NULL;
  int rc = flow_message_send(&out, c->e, "payment_received", ref, payload,
                             ttl_ms);
  if (rc != 0) {
    if (child_fatal(rc))
      child_die(c, "sending payment %s: %s: %s", ref, flow_err_name(rc),
                flow_errmsg(c->e));
    return 0;
  }
  json_t *j = json_loads(out, 0, NULL);
  const char *id = json_string_value(json_object_get(j, "id"));
  const char *st = json_string_value(json_object_get(j, "status"));
  const char *cs = json_string_value(json_object_get(j, "case"));
  if (id == NULL || st == NULL)
    child_die(c, "a successful send returned no message id/status: %.200s",
              out);
  char line[160];
  int len = snprintf(line, sizeof line, "M %s %s %s %s\n", id, st,
                     cs ? cs : "-", ref);
  child_line(c, line, (size_t)len);
  int r = st[0];
  json_decref(j);
  flow_free(out);
  return r;
}

/* A bulky_waste opening: a unique payment reference; paid before the
   booking exists a third of the time (the notice is buffered and the
   opening delivers it in its own transaction), never paid by some (their
   `after` timer lapses them), paid after the opening by the rest. */
static void
plan_bulky_open(child *c, op *o)
{
  long i = ++c->serial;
  memset(&o->aux, 0, sizeof o->aux);
  o->case_id = 0;
  o->event = "open";
  o->service = "bulky_waste";
  o->actor = &CITIZEN;
  snprintf(o->aux.ref, sizeof o->aux.ref, "pay-%ld", i);
  snprintf(o->payload, sizeof o->payload,
           "{\"uprn\":\"2000%ld\",\"items\":%ld,\"payment_ref\":\"%s\"}",
           i % 100000000, 1 + i % 10, o->aux.ref);
  uint64_t r = rnd_below(&c->rng, 100);
  if (r < 15)
    o->aux.never = 1;
  else if (r < 48 &&
           bulky_send(c, o->aux.ref,
                      r < 30 ? 0 : (int64_t)(1 + r % 12) * 3600 * 1000))
    o->aux.paid = 1; /* a short time to live sometimes: what no opening
                        takes (the child died first) expires */
}

/* The newest task of case sid: its id and holder; returns its status's
   first letter ('o'pen, 'c'laimed, 'd'one, 'x' cancelled) or 0. */
static int
bulky_task(child *c, const char *sid, char *tid, size_t ntid, char *holder,
           size_t nholder)
{
  flow_task_query q = { 0 };
  q.case_id = sid;
  char *out = NULL;
  int rc = flow_tasks_list(&out, c->e, &q);
  if (rc != 0) {
    if (child_fatal(rc))
      child_die(c, "listing the tasks of case %s: %s: %s", sid,
                flow_err_name(rc), flow_errmsg(c->e));
    return 0;
  }
  json_t *arr = json_loads(out, 0, NULL);
  flow_free(out);
  size_t n = json_array_size(arr);
  int st = 0;
  if (n > 0) {
    json_t *t = json_array_get(arr, n - 1);
    const char *s = json_string_value(json_object_get(t, "status"));
    const char *h = json_string_value(json_object_get(t, "claimed_by"));
    snprintf(tid, ntid, "%s", json_string_value(json_object_get(t, "id")));
    snprintf(holder, nholder, "%s", h ? h : "");
    st = s == NULL ? 0 : strcmp(s, "cancelled") == 0 ? 'x' : s[0];
  }
  json_decref(arr);
  return st;
}

/* Claims task tid for this child's crew member; acknowledges a claim that
   returned 0: "K <task> <actor>". */
static int
bulky_claim(child *c, const char *tid)
{
  int rc = flow_task_claim(c->e, tid, &c->crew);
  if (rc == 0) {
    char line[96];
    int n = snprintf(line, sizeof line, "K %s %s\n", tid, c->crew_id);
    child_line(c, line, (size_t)n);
    return 1;
  }
  if (child_fatal(rc))
    child_die(c, "claiming task %s: %s: %s", tid, flow_err_name(rc),
              flow_errmsg(c->e));
  if (rc == FLOW_ECONFLICT) /* another has it, or it ended: counted */
    child_line(c, "k\n", 2);
  return 0;
}

static int
history_has(child *c, const char *sid, const char *event)
{
  char *out = NULL;
  int rc = flow_case_history(&out, c->e, sid);
  if (rc != 0)
    child_die(c, "reading the history of case %s: %s: %s", sid,
              flow_err_name(rc), flow_errmsg(c->e));
  json_t *h = json_loads(out, 0, NULL);
  flow_free(out);
  size_t i;
  json_t *row;
  int n = 0;
  json_array_foreach(h, i, row)
  {
    const char *ev = json_string_value(json_object_get(row, "event"));
    n += ev && strcmp(ev, event) == 0;
  }
  json_decref(h);
  return n;
}

/* Completes task tid of case sid, or (sometimes, when this child holds
   it) tries an outcome the form refuses, which must change nothing.  A
   completion that returned 0 is acknowledged twice: an "A" line for the
   collection_done event and "T <task> <case> <actor>". */
static void
bulky_complete(child *c, const char *tid, const char *sid, int held)
{
  uint64_t r = rnd_below(&c->rng, 100);
  char *out = NULL;
  int rc;
  if (held && r >= 88) {
    rc = flow_task_complete(&out, c->e, tid, "{}", &c->crew);
    flow_free(out);
    char t2[24] = "", holder[40] = "";
    int st = bulky_task(c, sid, t2, sizeof t2, holder, sizeof holder);
    /* FLOW_ECONFLICT only when another child called the booking off
       first. */
    if (rc != FLOW_EDATA && (rc != FLOW_ECONFLICT || st != 'x'))
      child_die(c, "completing task %s with an empty outcome: %s, not "
                "FLOW_EDATA", tid, rc ? flow_err_name(rc) : "0");
    /* Still ours, unless another child called the booking off meanwhile. */
    if (strcmp(t2, tid) != 0 ||
        (st != 'x' && (st != 'c' || strcmp(holder, c->crew_id) != 0)))
      child_die(c, "a refused completion of task %s changed it: status %c, "
                "claimed by '%s'", tid, st ? st : '?', holder);
    if (history_has(c, sid, "collection_done") != 0)
      child_die(c, "a refused completion of task %s left a collection_done "
                "in case %s", tid, sid);
    child_line(c, "r\n", 2); /* counted */
    return;
  }
  const char *outcome = r < 15 ? "{\"outcome\":\"not_out\"}"
                               : "{\"outcome\":\"collected\","
                                 "\"note\":\"by the gate\"}";
  rc = flow_task_complete(&out, c->e, tid, outcome, &c->crew);
  if (rc == 0) {
    child_ack(c, out, "collection_done");
    char line[128];
    int n = snprintf(line, sizeof line, "T %s %s %s\n", tid, sid, c->crew_id);
    child_line(c, line, (size_t)n);
  } else if (child_fatal(rc)) {
    child_die(c, "completing task %s: %s: %s", tid, flow_err_name(rc),
              flow_errmsg(c->e));
  } else {
    child_learn(c, sid);
  }
  flow_free(out);
}

/* A crew member picks a task of the team, perhaps of a case another child
   opened: often one of the oldest open ones, which the other children
   are after too, so that with P children two claim one task at once;
   sometimes one already claimed, which only its holder may claim (again)
   or complete. */
static void
bulky_foreign(child *c)
{
  flow_task_query q = { 0 };
  q.team = "crews";
  int taken = rnd_below(&c->rng, 4) == 0;
  q.status = taken ? "claimed" : "open";
  char *out = NULL;
  int rc = flow_tasks_list(&out, c->e, &q);
  if (rc != 0) {
    if (child_fatal(rc))
      child_die(c, "listing the crews' tasks: %s: %s", flow_err_name(rc),
                flow_errmsg(c->e));
    return;
  }
  json_t *arr = json_loads(out, 0, NULL);
  flow_free(out);
  size_t n = json_array_size(arr);
  if (n > 0) {
    size_t pick = rnd_below(&c->rng, 2) ? rnd_below(&c->rng, n < 2 ? n : 2)
                                        : rnd_below(&c->rng, n);
    json_t *t = json_array_get(arr, pick);
    char tid[24], sid[24];
    snprintf(tid, sizeof tid, "%s", json_string_value(json_object_get(t,
                                                                      "id")));
    snprintf(sid, sizeof sid, "%s",
             json_string_value(json_object_get(t, "case")));
    const char *holder = json_string_value(json_object_get(t, "claimed_by"));
    if (taken && holder && strcmp(holder, c->crew_id) != 0 &&
        rnd_below(&c->rng, 2) == 0) {
      /* Completing another's task is refused, and changes nothing. */
      char *cj = NULL;
      rc = flow_task_complete(&cj, c->e, tid, "{\"outcome\":\"collected\"}",
                              &c->crew);
      flow_free(cj);
      if (rc == 0)
        child_die(c, "%s completed task %s, which %s had claimed", c->crew_id,
                  tid, holder);
      if (child_fatal(rc))
        child_die(c, "completing task %s: %s: %s", tid, flow_err_name(rc),
                  flow_errmsg(c->e));
      if (rc == FLOW_ECONFLICT)
        child_line(c, "k\n", 2);
    } else if (bulky_claim(c, tid) && rnd_below(&c->rng, 10) < 6) {
      bulky_complete(c, tid, sid, 1);
    }
  }
  json_decref(arr);
}

static void
bulky_booked(child *c, int64_t id, const char *sid)
{
  uint64_t r = rnd_below(&c->rng, 100);
  bulky *a = aux_of(c, id);
  if (r < 10) {
    /* Called off: the case lapses and its task ends cancelled. */
    char *out = NULL;
    int rc = flow_case_signal(&out, c->e, sid, "cancel", "{}", &CITIZEN);
    if (rc == 0)
      child_ack(c, out, "cancel");
    else if (child_fatal(rc))
      child_die(c, "cancel on case %s: %s: %s", sid, flow_err_name(rc),
                flow_errmsg(c->e));
    else
      child_learn(c, sid);
    flow_free(out);
    return;
  }
  if (r < 14 && a->ref[0]) {
    /* The notice again: the booked case refuses it (an incident); it is
       never applied twice. */
    bulky_send(c, a->ref, 0);
    return;
  }
  char tid[24] = "", holder[40] = "";
  int st = bulky_task(c, sid, tid, sizeof tid, holder, sizeof holder);
  if (st == 'o') {
    int held = 0;
    if (rnd_below(&c->rng, 10) < 7) {
      if (!bulky_claim(c, tid)) {
        child_learn(c, sid);
        return;
      }
      held = 1;
      if (rnd_below(&c->rng, 10) < 3)
        return; /* completed another time, or by this child's successor */
    }
    bulky_complete(c, tid, sid, held);
  } else if (st == 'c' && strcmp(holder, c->crew_id) == 0) {
    bulky_complete(c, tid, sid, 1);
  } else if (st != 'c') {
    child_learn(c, sid);
  }
}

/* One step of bulky_waste work, synchronous calls only. */
static void
bulky_step(child *c)
{
  tracker *b = &c->b;
  uint64_t r = rnd_below(&c->rng, 100);
  op o;
  memset(&o, 0, sizeof o);
  if (b->nopen < 6 || r < 18) {
    plan_bulky_open(c, &o);
    child_sync(c, &o);
    return;
  }
  if (r < 40) {
    bulky_foreign(c);
    return;
  }
  int64_t id = b->open[rnd_below(&c->rng, b->nopen)];
  char sid[24];
  snprintf(sid, sizeof sid, "%" PRId64, id);
  bulky *a = aux_of(c, id);
  switch (b->state[id]) {
  case ST_AWAITING:
    if (a->never || a->ref[0] == 0) {
      plan_bulky_open(c, &o);
      child_sync(c, &o);
    } else if (a->paid) {
      child_learn(c, sid); /* its opening took the buffered payment */
    } else {
      a->paid = 1;
      if (bulky_send(c, a->ref, 0) == 'd')
        tracker_set(b, id, ST_BOOKED);
      else
        child_learn(c, sid);
    }
    break;
  case ST_BOOKED:
    bulky_booked(c, id, sid);
    break;
  default:
    child_learn(c, sid);
    break;
  }
}

static void
child_async_batch(child *c)
{
  uint64_t n = 1 + rnd_below(&c->rng, 32);
  for (uint64_t i = 0; i < n; i++) {
    op *o = calloc(1, sizeof *o);
    if (o == NULL)
      _exit(5);
    if (rnd_below(&c->rng, 100) < 15)
      plan_bulky_open(c, o);
    else
      plan_op(c, o);
    o->c = c;
    int rc;
    if (o->case_id == 0)
      rc = flow_case_open_async(c->e, o->service, o->payload, o->actor,
                                child_async_done, o);
    else
      rc = flow_case_signal_async(c->e, o->id, o->event, o->payload, o->actor,
                                  child_async_done, o);
    if (rc != 0)
      child_die(c, "queueing %s: %s: %s", o->event, flow_err_name(rc),
                flow_errmsg(c->e));
  }
  child_line(c, "G\n", 2);
  int rc = flow_engine_run(c->e, FLOW_RUN_NOWAIT);
  if (rc < 0)
    child_die(c, "flow_engine_run: %s: %s", flow_err_name(rc),
              flow_errmsg(c->e));
  child_line(c, "g\n", 2);
}

static void
child_learn_open_cases(child *c)
{
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.status = "open";
  q.limit = 100000;
  char *out = NULL;
  int rc = flow_case_list(&out, c->e, &q);
  if (rc != 0)
    child_die(c, "listing open cases: %s: %s", flow_err_name(rc),
              flow_errmsg(c->e));
  json_t *arr = json_loads(out, 0, NULL);
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v)
  {
    const char *id = json_string_value(json_object_get(v, "id"));
    const char *st = json_string_value(json_object_get(v, "state"));
    const char *svc = json_string_value(json_object_get(v, "service"));
    if (id == NULL)
      continue;
    int64_t n = strtoll(id, NULL, 10);
    tracker_set(tracker_of(c, svc), n, state_code(st));
    const char *ref = json_string_value(
        json_object_get(json_object_get(v, "data"), "payment_ref"));
    if (svc && strcmp(svc, "bulky_waste") == 0 && ref) {
      bulky *a = aux_of(c, n);
      snprintf(a->ref, sizeof a->ref, "%s", ref);
    }
  }
  json_decref(arr);
  flow_free(out);
}

/* Moves the shared clock on by ms and sets the engine to it: the
   children of a round share one time line. */
static void
child_tick(child *c, int64_t ms)
{
  c->now = __atomic_add_fetch(c->clock, ms, __ATOMIC_SEQ_CST);
  flow_engine_set_time(c->e, c->now);
}

static void
child_main(int fd, const char *db, uint64_t seed, long serial,
           const char *clock_path, int slot)
{
  child c;
  memset(&c, 0, sizeof c);
  c.fd = fd;
  c.rng = seed;
  c.serial = serial;
  /* One crew member per slot: the child that restarts in a slot takes up
     the tasks its predecessor claimed and did not finish. */
  snprintf(c.crew_id, sizeof c.crew_id, "crew-%d", slot);
  c.crew = (flow_actor){ c.crew_id, CREW_ROLES, 1 };
  int cfd = open(clock_path, O_RDWR);
  void *map = cfd >= 0 ? mmap(NULL, sizeof(int64_t), PROT_READ | PROT_WRITE,
                              MAP_SHARED, cfd, 0)
                       : MAP_FAILED;
  if (map == MAP_FAILED)
    child_die(&c, "mapping the clock %s: %s", clock_path, strerror(errno));
  close(cfd);
  c.clock = map;
  c.now = __atomic_load_n(c.clock, __ATOMIC_SEQ_CST);
  char err[256];
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  o.synchronous = FLOW_SYNC_NORMAL; /* WAL + NORMAL survives a process kill */
  o.busy_timeout_ms = 60000;        /* the other children hold the lock */
  int rc = flow_engine_open(&c.e, db, &o, err, sizeof err);
  if (rc != 0)
    child_die(&c, "opening %s: %s: %s", db, flow_err_name(rc), err);
  flow_engine_set_time(c.e, c.now);
  flow_engine_set_listener(c.e, child_listen, &c);
  rc = flow_service_load_file(NULL, c.e, SERVICE_PATH);
  if (rc != 0)
    child_die(&c, "loading %s: %s: %s", SERVICE_PATH, flow_err_name(rc),
              flow_errmsg(c.e));
  rc = flow_service_load_file(NULL, c.e, BULKY_PATH);
  if (rc != 0)
    child_die(&c, "loading %s: %s: %s", BULKY_PATH, flow_err_name(rc),
              flow_errmsg(c.e));
  if ((rc = flow_action_register(c.e, "notify.sms", child_action, &c)) != 0)
    child_die(&c, "registering notify.sms: %s: %s", flow_err_name(rc),
              flow_errmsg(c.e));
  child_learn_open_cases(&c);
  child_line(&c, "R\n", 2);
  /* Catch up first, as a host restarting after downtime would. */
  if ((rc = flow_engine_fire_due(c.e, NULL)) != 0)
    child_die(&c, "firing overdue timers: %s: %s", flow_err_name(rc),
              flow_errmsg(c.e));
  for (;;) {
    /* Up to 3 hours a step: within a few dozen steps some cases wait
       long enough for the 2-working-day `after` timer and the
       5-working-day service level to fire, while others close first. */
    child_tick(&c, (int64_t)rnd_below(&c.rng, 3 * 3600) * 1000);
    if (OPT.async && rnd_below(&c.rng, 100) < 45) {
      child_async_batch(&c);
    } else if (rnd_below(&c.rng, 100) < 60) {
      bulky_step(&c);
    } else {
      op one;
      memset(&one, 0, sizeof one);
      plan_op(&c, &one);
      child_sync(&c, &one);
    }
    /* Fire what fell due: through the loop or directly. */
    if (OPT.async && rnd_below(&c.rng, 2) == 0)
      rc = flow_engine_run(c.e, FLOW_RUN_NOWAIT);
    else
      rc = flow_engine_fire_due(c.e, NULL);
    if (rc < 0)
      child_die(&c, "firing timers: %s: %s", flow_err_name(rc),
                flow_errmsg(c.e));
    child_answer_later(&c);
  }
}

/* ======================================================================== */
/* The driver: kill, then verify                                             */
/* ======================================================================== */

typedef struct ack {
  int64_t case_id;
  long seq;
  char event[24];
  char state[24];
} ack;

/* An acknowledged message send ("M"). */
typedef struct msg_ack {
  int64_t id;
  char status[16];
  int64_t case_id; /* 0: none */
  char key[40];
} msg_ack;

/* An acknowledged claim ("K"; case_id 0) or completion ("T"). */
typedef struct task_ack {
  int64_t task;
  int64_t case_id;
  char actor[32];
} task_ack;

typedef struct round {
  long kill;
  uint64_t seed;
  long delay_us;           /* the first child's; the others' below */
  long delays[MAX_PROCS];
  const char *db;
  ack *acks;
  size_t nacks;
  int64_t *answers; /* requests whose answer was acknowledged */
  size_t nanswers, capanswers;
  int from_ready; /* the delay counts from "R", not from the fork */
  int64_t ready_us; /* when "R" came, from the fork */
  int in_group; /* the last marker was "G": killed inside a group commit */
  msg_ack *msgs;    /* acknowledged sends */
  size_t nmsgs, capmsgs;
  task_ack *claims; /* acknowledged claims */
  size_t nclaims, capclaims;
  task_ack *comps;  /* acknowledged completions */
  size_t ncomps, capcomps;
  int64_t clock_end; /* the latest time the database's engines have seen */
  char fatal[1024];
} round;

static long PROBLEMS;
static long EVENTS_CHECKED;
static long TIMER_ROWS;
static long CASES_CHECKED;
static long KILLS_IN_GROUP;
static long CASES_UNCHANGED;
static long REQUESTS_CHECKED;
static long ANSWERS_CHECKED;
static long MESSAGES_CHECKED;  /* acknowledged sends */
static long CLAIMS_CHECKED;    /* acknowledged claims */
static long COMPLETIONS_CHECKED;
static long BULKY_CHECKED;     /* bulky_waste case versions checked */
static long TASKS_CHECKED;     /* task rows checked against histories */
static long STORED_MESSAGES;   /* message rows checked against histories */
static long PAYMENTS_REPLAYED;
static long CLAIM_CONFLICTS;   /* claims (and completions) refused:
                                  another had the task, or it ended */
static long REFUSALS_CHECKED;  /* refused outcomes that changed nothing */
static long TASKS_REPLAYED;
static int64_t DB_CLOCK;       /* the latest time of the current database */

/* What a problem is about: the self-test wants lost acknowledgements of
   every kind caught. */
enum { PC_OTHER, PC_EVENT, PC_MESSAGE, PC_TASK, PC_COUNT };
static long PROBLEMS_IN[PC_COUNT];

/* Cases as last verified (case, history and timers JSON), by id, for the
   current database: an unchanged case need not be replayed again. */
typedef struct seen {
  char *c, *h, *t;
} seen;
static seen *SEEN;
static size_t NSEEN;

static int
seen_grow(int64_t maxid)
{
  if ((size_t)maxid < NSEEN)
    return 1;
  size_t n = NSEEN ? NSEEN : 1024;
  while (n <= (size_t)maxid)
    n *= 2;
  seen *p = realloc(SEEN, n * sizeof *p);
  if (p == NULL)
    return 0;
  memset(p + NSEEN, 0, (n - NSEEN) * sizeof *p);
  SEEN = p;
  NSEEN = n;
  return 1;
}

static void
seen_clear(void)
{
  for (size_t i = 0; i < NSEEN; i++) {
    free(SEEN[i].c);
    free(SEEN[i].h);
    free(SEEN[i].t);
  }
  free(SEEN);
  SEEN = NULL;
  NSEEN = 0;
}
static long ASYNC_BATCHES;

static void problem(const round *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void problem_in(const round *r, int cat, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
vproblem(const round *r, int cat, const char *fmt, va_list ap)
{
  PROBLEMS++;
  PROBLEMS_IN[cat]++;
  if (PROBLEMS > 60)
    return;
  fprintf(stdout, "PROBLEM kill %ld (seed %" PRIu64 ", delay %ld us, db %s): ",
          r->kill, r->seed, r->delay_us, r->db);
  vfprintf(stdout, fmt, ap);
  fputc('\n', stdout);
  fflush(stdout);
}

static void
problem(const round *r, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vproblem(r, PC_OTHER, fmt, ap);
  va_end(ap);
}

static void
problem_in(const round *r, int cat, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vproblem(r, cat, fmt, ap);
  va_end(ap);
}

/* A bigger array for cap elements of size sz (p grown from n), or exit. */
static void *
grown(void *p, size_t n, size_t *cap, size_t sz)
{
  if (n < *cap)
    return p;
  *cap = *cap ? 2 * *cap : 256;
  void *q = realloc(p, *cap * sz);
  if (q == NULL) {
    fprintf(stderr, "crash: out of memory\n");
    exit(2);
  }
  return q;
}
#define GROW(arr, n, cap) ((arr) = grown((arr), (n), &(cap), sizeof *(arr)))

static int64_t
mono_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct strbuf {
  char *p;
  size_t len, cap;
} strbuf;

static void
sb_add(strbuf *b, const char *s, size_t n)
{
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (b->len + n + 1 > cap)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      fprintf(stderr, "crash: out of memory\n");
      exit(2);
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

/* Reads what is there; returns 0 at end of file. */
static int
drain(int fd, strbuf *b)
{
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      sb_add(b, buf, (size_t)n);
      continue;
    }
    if (n == 0)
      return 0;
    if (errno == EINTR)
      continue;
    return 1; /* EAGAIN */
  }
}

/* Parses what one child wrote: its acknowledgements go on r->acks. */
static void
parse_child(round *r, char *text, size_t *cap)
{
  int in_group = 0;
  char *save = NULL;
  for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
       line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == 'R') {
      continue;
    } else if (line[0] == 'G') {
      in_group = 1;
      ASYNC_BATCHES++;
    } else if (line[0] == 'g') {
      in_group = 0;
    } else if (line[0] == 'C') {
      long long id;
      if (sscanf(line, "C %lld", &id) == 1) {
        if (r->nanswers == r->capanswers) {
          r->capanswers = r->capanswers ? 2 * r->capanswers : 256;
          r->answers = realloc(r->answers, r->capanswers * sizeof *r->answers);
          if (r->answers == NULL) {
            fprintf(stderr, "crash: out of memory\n");
            exit(2);
          }
        }
        r->answers[r->nanswers++] = id;
      }
    } else if (line[0] == 'M') {
      msg_ack m;
      long long id;
      char cs[24];
      memset(&m, 0, sizeof m);
      if (sscanf(line, "M %lld %15s %23s %39s", &id, m.status, cs, m.key) ==
          4) {
        m.id = id;
        m.case_id = strcmp(cs, "-") == 0 ? 0 : strtoll(cs, NULL, 10);
        GROW(r->msgs, r->nmsgs, r->capmsgs);
        r->msgs[r->nmsgs++] = m;
      }
    } else if (line[0] == 'k') {
      CLAIM_CONFLICTS++;
    } else if (line[0] == 'r') {
      REFUSALS_CHECKED++;
    } else if (line[0] == 'K' || line[0] == 'T') {
      task_ack t;
      long long id, cs = 0;
      memset(&t, 0, sizeof t);
      if (line[0] == 'K' && sscanf(line, "K %lld %31s", &id, t.actor) == 2) {
        t.task = id;
        GROW(r->claims, r->nclaims, r->capclaims);
        r->claims[r->nclaims++] = t;
      } else if (line[0] == 'T' &&
                 sscanf(line, "T %lld %lld %31s", &id, &cs, t.actor) == 3) {
        t.task = id;
        t.case_id = cs;
        GROW(r->comps, r->ncomps, r->capcomps);
        r->comps[r->ncomps++] = t;
      }
    } else if (line[0] == 'F') {
      snprintf(r->fatal, sizeof r->fatal, "%s", line + 2);
    } else if (line[0] == 'A') {
      if (r->nacks == *cap) {
        *cap = *cap ? 2 * *cap : 1024;
        r->acks = realloc(r->acks, *cap * sizeof *r->acks);
        if (r->acks == NULL) {
          fprintf(stderr, "crash: out of memory\n");
          exit(2);
        }
      }
      ack *a = &r->acks[r->nacks];
      long long id;
      if (sscanf(line, "A %lld %ld %23s %23s", &id, &a->seq, a->event,
                 a->state) == 4) {
        a->case_id = id;
        r->nacks++;
      }
    }
  }
  if (in_group)
    r->in_group = 1;
}

/* Runs OPT.procs children on r->db, on the clock in clock_path, each until
   its own kill; fills r->acks with what all of them acknowledged.
   Returns 0, or -1 when a child died on its own (r->fatal says why). */
static int
run_children(round *r, const char *clock_path, long serial)
{
  int np = OPT.procs;
  pid_t pid[MAX_PROCS];
  int fd[MAX_PROCS], eof[MAX_PROCS], waiting[MAX_PROCS], killed[MAX_PROCS];
  int64_t deadline[MAX_PROCS], forked;
  strbuf b[MAX_PROCS];

  fflush(stdout);
  fflush(stderr);
  forked = mono_us();
  for (int k = 0; k < np; k++) {
    int fds[2];
    if (pipe(fds) != 0) {
      perror("crash: pipe");
      exit(2);
    }
    pid[k] = fork();
    if (pid[k] < 0) {
      perror("crash: fork");
      exit(2);
    }
    if (pid[k] == 0) {
      /* A fresh image rather than a copy of the driver: nothing of the
         driver's SQLite or heap state comes along, and a sanitizer build
         does not pay copy-on-write faults for the driver's heap. */
      char a_fd[16], a_seed[32], a_serial[32], a_slot[16];
      close(fds[0]);
      snprintf(a_fd, sizeof a_fd, "%d", fds[1]);
      snprintf(a_seed, sizeof a_seed, "%" PRIu64, r->seed + (uint64_t)k);
      /* Each child its own uprns. */
      snprintf(a_serial, sizeof a_serial, "%ld", serial + k * 250000L);
      snprintf(a_slot, sizeof a_slot, "%d", k + 1);
      char *argv[] = { SELF,
                       "--child",
                       a_fd,
                       (char *)r->db,
                       a_seed,
                       a_serial,
                       (char *)clock_path,
                       "--slot",
                       a_slot,
                       "--source",
                       (char *)OPT.source,
                       OPT.async ? NULL : "--sync-only",
                       NULL };
      execv(SELF, argv);
      perror("crash: exec");
      _exit(6);
    }
    close(fds[1]);
    fd[k] = fds[0];
    fcntl(fd[k], F_SETFL, fcntl(fd[k], F_GETFL) | O_NONBLOCK);
    b[k] = (strbuf){ NULL, 0, 0 };
    eof[k] = killed[k] = 0;
    /* Most kills count the delay from the child's "R" (engine open,
       service loaded), so that they land in the workload whatever the
       build's speed; the others count from the fork and may land in the
       opening, the recovery of the last crash or the schema creation. */
    waiting[k] = r->from_ready;
    deadline[k] = forked + (waiting[k] ? 30000000 : r->delays[k]);
  }
  int alive = np;
  while (alive > 0) {
    int64_t now = mono_us(), first = INT64_MAX;
    for (int k = 0; k < np; k++) {
      if (killed[k])
        continue;
      if (deadline[k] <= now) {
        kill(pid[k], SIGKILL);
        killed[k] = 1;
        alive--;
      } else if (deadline[k] < first) {
        first = deadline[k];
      }
    }
    if (alive == 0)
      break;
    struct pollfd p[MAX_PROCS];
    int idx[MAX_PROCS], n = 0;
    for (int k = 0; k < np; k++)
      if (!killed[k] && !eof[k]) {
        p[n] = (struct pollfd){ fd[k], POLLIN, 0 };
        idx[n++] = k;
      }
    int64_t left = first - now;
    struct timespec ts = { (time_t)(left / 1000000),
                           (long)(left % 1000000) * 1000 };
    if (ppoll(p, (nfds_t)n, &ts, NULL) <= 0)
      continue;
    for (int i = 0; i < n; i++) {
      int k = idx[i];
      if (!(p[i].revents & (POLLIN | POLLHUP)))
        continue;
      if (drain(fd[k], &b[k]) == 0) {
        eof[k] = 1;
        deadline[k] = mono_us(); /* it ended: nothing to wait for */
      }
      if (waiting[k] && b[k].len > 0 &&
          (b[k].p[0] == 'R' || strstr(b[k].p, "\nR\n"))) {
        waiting[k] = 0;
        if (k == 0)
          r->ready_us = mono_us() - forked;
        deadline[k] = mono_us() + r->delays[k];
      } else if (waiting[k] && b[k].len > 0 && b[k].p[0] == 'F') {
        deadline[k] = mono_us() + 100000; /* it is dying: collect why */
      }
    }
  }

  size_t cap = 0;
  int rc = 0;
  r->nacks = 0;
  r->acks = NULL;
  r->nanswers = r->capanswers = 0;
  r->answers = NULL;
  r->msgs = NULL;
  r->claims = r->comps = NULL;
  r->nmsgs = r->capmsgs = r->nclaims = r->capclaims = 0;
  r->ncomps = r->capcomps = 0;
  r->in_group = 0;
  r->fatal[0] = 0;
  for (int k = 0; k < np; k++) {
    /* Whatever the child wrote before it died is in the pipe. */
    fcntl(fd[k], F_SETFL, fcntl(fd[k], F_GETFL) & ~O_NONBLOCK);
    if (!eof[k])
      drain(fd[k], &b[k]);
    close(fd[k]);
    int status = 0;
    while (waitpid(pid[k], &status, 0) < 0 && errno == EINTR)
      ;
    parse_child(r, b[k].p, &cap);
    free(b[k].p);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && !r->fatal[0])
      continue;
    if (!r->fatal[0])
      snprintf(r->fatal, sizeof r->fatal,
               "child %d ended by itself (%s %d)", k + 1,
               WIFSIGNALED(status) ? "signal" : "exit status",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    rc = -1;
  }
  return rc;
}

/* The round's clock: an 8-byte file its children map and move on. */
static void
clock_file(const char *path, int64_t start)
{
  int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (f < 0 || write(f, &start, sizeof start) != (ssize_t)sizeof start) {
    perror("crash: the clock file");
    exit(2);
  }
  close(f);
}

/* Where the round's children left the clock. */
static int64_t
read_clock(const char *path)
{
  int64_t t = INT64_MIN;
  int f = open(path, O_RDONLY);
  if (f < 0 || read(f, &t, sizeof t) != (ssize_t)sizeof t)
    t = INT64_MIN;
  if (f >= 0)
    close(f);
  return t;
}

/* ---- verification ------------------------------------------------------- */

static json_t *
api_json(const round *r, flow_engine *e, int rc, char **outp,
         const char *what)
{
  /* outp, not the string: the call that fills it is a sibling argument,
     and C leaves the order of evaluating arguments unspecified. */
  char *out = *outp;
  *outp = NULL;
  if (rc != 0) {
    problem(r, "%s failed: %s: %s", what, flow_err_name(rc), flow_errmsg(e));
    flow_free(out);
    return NULL;
  }
  json_t *j = json_loads(out, 0, NULL);
  if (j == NULL)
    problem(r, "%s returned text that is not JSON: %.200s", what, out);
  flow_free(out);
  return j;
}

static int64_t
time_of(json_t *v)
{
  int64_t t = 0;
  const char *s = json_string_value(v);
  if (s == NULL || flow_time_parse(&t, s) != 0)
    return INT64_MIN;
  return t;
}

static int
is_system_actor(json_t *actor)
{
  const char *id = json_string_value(json_object_get(actor, "id"));
  json_t *roles = json_object_get(actor, "roles");
  return id && strcmp(id, "engine") == 0 && json_array_size(roles) == 1 &&
         json_string_value(json_array_get(roles, 0)) &&
         strcmp(json_string_value(json_array_get(roles, 0)), "system") == 0;
}

/* The roles of an actor JSON, for a flow_actor (at most 8). */
static void
actor_from_json(json_t *aj, flow_actor *a, const char **roles)
{
  a->id = json_string_value(json_object_get(aj, "id"));
  a->nroles = 0;
  a->roles = roles;
  json_t *rs = json_object_get(aj, "roles");
  for (size_t i = 0; i < json_array_size(rs) && i < 8; i++)
    roles[a->nroles++] = json_string_value(json_array_get(rs, i));
}

static char *
dump(json_t *j)
{
  return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* Compares one field of two objects; reports a difference. */
static int
same_field(const round *r, const char *case_id, const char *what,
           json_t *got, json_t *want, const char *key)
{
  json_t *g = key ? json_object_get(got, key) : got;
  json_t *w = key ? json_object_get(want, key) : want;
  if ((g == NULL && w == NULL) || (g && w && json_equal(g, w)))
    return 1;
  char *gs = g ? dump(g) : strdup("(missing)");
  char *ws = w ? dump(w) : strdup("(missing)");
  problem(r, "case %s: %s%s%s differs from the replay of its history: "
          "stored %.300s, replay %.300s", case_id, what, key ? " " : "",
          key ? key : "", gs, ws);
  free(gs);
  free(ws);
  return 0;
}

/* The index in tasks (a case's, oldest first) of the task with id tid, or
   -1. */
static json_int_t
task_index(json_t *tasks, const char *tid)
{
  size_t i;
  json_t *t;
  json_array_foreach(tasks, i, t)
  {
    const char *id = json_string_value(json_object_get(t, "id"));
    if (tid && id && strcmp(id, tid) == 0)
      return (json_int_t)i;
  }
  return -1;
}

/* The pending timers with the fields a replay can reproduce.  A task's
   due-time timer names its task by id, which the replay numbers its own
   way: the view names it by its place among the case's tasks. */
static json_t *
timer_view(json_t *timers, json_t *tasks)
{
  json_t *v = json_array();
  size_t i;
  json_t *t;
  json_array_foreach(timers, i, t)
  {
    json_t *o = json_object();
    const char *keys[] = { "due_at", "kind", "event", "payload", "state",
                           "status", "target" };
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
      json_t *x = json_object_get(t, keys[k]);
      if (x)
        json_object_set(o, keys[k], x);
    }
    const char *kind = json_string_value(json_object_get(t, "kind"));
    if (kind && strcmp(kind, "task_due") == 0) {
      const char *tid = json_string_value(
          json_object_get(json_object_get(t, "payload"), "task"));
      json_object_set_new(o, "payload",
                          json_pack("{s:I}", "task_index",
                                    task_index(tasks, tid)));
    }
    json_array_append_new(v, o);
  }
  return v;
}

static int
json_array_has(json_t *arr, json_t *x)
{
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) if (json_equal(v, x)) return 1;
  return 0;
}

/* The case's tasks against the replay's: everything a history decides.
   Claims are not events, so a stored task still open or claimed is open
   in the replay, and a cancelled one may have been claimed. */
static void
same_tasks(const round *r, const char *id, json_t *stasks, json_t *rtasks)
{
  if (json_array_size(stasks) != json_array_size(rtasks)) {
    problem(r, "case %s has %zu tasks, the replay of its history %zu", id,
            json_array_size(stasks), json_array_size(rtasks));
    return;
  }
  size_t i;
  json_t *st;
  json_array_foreach(stasks, i, st)
  {
    json_t *rt = json_array_get(rtasks, i);
    char what[64];
    snprintf(what, sizeof what, "task %s (%zu of the case)",
             json_string_value(json_object_get(st, "id")), i + 1);
    const char *keys[] = { "name",  "title", "team", "assignee", "due_at",
                           "created_at", "form", "done", "state" };
    int ok = 1;
    for (size_t k = 0; ok && k < sizeof keys / sizeof *keys; k++)
      ok = same_field(r, id, what, st, rt, keys[k]);
    const char *status = json_string_value(json_object_get(st, "status"));
    if (!ok || status == NULL)
      continue;
    if (strcmp(status, "done") == 0 || strcmp(status, "cancelled") == 0) {
      const char *fk[] = { "status", "outcome", "finished_by", "finished_at",
                           "claimed_by" };
      size_t nk = strcmp(status, "done") == 0 ? 5 : 4;
      for (size_t k = 0; ok && k < nk; k++)
        ok = same_field(r, id, what, st, rt, fk[k]);
    } else {
      const char *rs = json_string_value(json_object_get(rt, "status"));
      if (rs == NULL || strcmp(rs, "open") != 0)
        problem(r, "case %s: %s is %s, but %s in the replay of its history",
                id, what, status, rs ? rs : "?");
    }
  }
}

static json_t *
case_tasks(const round *r, flow_engine *e, const char *id, const char *what)
{
  flow_task_query q = { 0 };
  q.case_id = id;
  char *out = NULL;
  return api_json(r, e, flow_tasks_list(&out, e, &q), &out, what);
}

/* The task of the replay's case rid that a done event of the history can
   complete: its newest live one, whose `done` is event and whose name the
   payload gives.  tid receives its id; 0 when there is none. */
static int
replay_task(const round *r, flow_engine *rp, const char *rid,
            const char *event, json_t *payload, char *tid, size_t ntid)
{
  const char *name = json_string_value(json_object_get(payload, "task"));
  if (name == NULL || !json_is_object(json_object_get(payload, "outcome")) ||
      !json_is_string(json_object_get(payload, "by")))
    return 0;
  json_t *ts = case_tasks(r, rp, rid, "listing the replay's tasks");
  int found = 0;
  for (size_t i = json_array_size(ts); i-- > 0 && !found;) {
    json_t *t = json_array_get(ts, i);
    const char *st = json_string_value(json_object_get(t, "status"));
    const char *done = json_string_value(json_object_get(t, "done"));
    const char *tn = json_string_value(json_object_get(t, "name"));
    if (st && (strcmp(st, "open") == 0 || strcmp(st, "claimed") == 0) &&
        done && strcmp(done, event) == 0 && tn && strcmp(tn, name) == 0) {
      snprintf(tid, ntid, "%s", json_string_value(json_object_get(t, "id")));
      found = 1;
    }
  }
  json_decref(ts);
  return found;
}

/*
 * Replays one stored case on the replay engine and compares.  hist is its
 * stored history, c the stored case.  Returns the number of timer rows.
 */
static void
verify_case(const round *r, flow_engine *rp, json_t *c, json_t *hist,
            json_t *stim, json_t *stasks)
{
  const char *id = json_string_value(json_object_get(c, "id"));
  size_t n = json_array_size(hist);
  CASES_CHECKED++;

  /* Sequence numbers: 1..n, no gap, the case's seq is n. */
  int seq_ok = 1;
  for (size_t i = 0; i < n; i++) {
    json_int_t s = json_integer_value(json_object_get(json_array_get(hist, i),
                                                      "seq"));
    if (s != (json_int_t)(i + 1)) {
      problem(r, "case %s: history row %zu has seq %" JSON_INTEGER_FORMAT
              " (expected %zu: a gap or a duplicate)", id, i + 1, s, i + 1);
      seq_ok = 0;
      break;
    }
  }
  if (n == 0) {
    problem(r, "case %s has no history at all", id);
    return;
  }
  if (json_integer_value(json_object_get(c, "seq")) != (json_int_t)n) {
    problem(r, "case %s: seq is %" JSON_INTEGER_FORMAT " but its history "
            "has %zu events", id,
            json_integer_value(json_object_get(c, "seq")), n);
    seq_ok = 0;
  }
  json_t *first = json_array_get(hist, 0);
  const char *ev0 = json_string_value(json_object_get(first, "event"));
  if (ev0 == NULL || strcmp(ev0, "open") != 0 ||
      !json_is_null(json_object_get(first, "from"))) {
    problem(r, "case %s: history does not start with an opening", id);
    return;
  }
  if (!seq_ok)
    return;

  /* Replay. */
  const char *roles[8];
  flow_actor actor;
  actor_from_json(json_object_get(first, "actor"), &actor, roles);
  flow_engine_set_time(rp, time_of(json_object_get(first, "at")));
  char *data = dump(json_object_get(first, "payload"));
  char *out = NULL;
  int rc = flow_case_open(&out, rp,
                          json_string_value(json_object_get(c, "service")),
                          data, &actor);
  free(data);
  json_t *rc0 = api_json(r, rp, rc, &out, "replaying the opening");
  if (rc0 == NULL) {
    problem(r, "case %s: its opening does not replay", id);
    return;
  }
  char rid[32];
  snprintf(rid, sizeof rid, "%s", json_string_value(json_object_get(rc0,
                                                                    "id")));
  json_decref(rc0);

  for (size_t i = 1; i < n; i++) {
    json_t *h = json_array_get(hist, i);
    const char *event = json_string_value(json_object_get(h, "event"));
    json_t *aj = json_object_get(h, "actor");
    int64_t at = time_of(json_object_get(h, "at"));
    flow_engine_set_time(rp, at);
    if (is_system_actor(aj) && event &&
        strcmp(event, "payment_received") == 0) {
      /* A message delivered: the replay's case holds the same payment
         reference, so the same message is delivered to it at once. */
      PAYMENTS_REPLAYED++;
      const char *ref = json_string_value(
          json_object_get(json_object_get(first, "payload"), "payment_ref"));
      char *payload = dump(json_object_get(h, "payload"));
      char *mo = NULL;
      rc = flow_message_send(&mo, rp, event, ref ? ref : "-", payload, 0);
      free(payload);
      json_t *m = api_json(r, rp, rc, &mo, "replaying a message");
      const char *st = json_string_value(json_object_get(m, "status"));
      const char *to = json_string_value(json_object_get(m, "case"));
      int ok = st && strcmp(st, "delivered") == 0 && to &&
               strcmp(to, rid) == 0;
      if (!ok)
        problem(r, "case %s: message event %zu '%s' (key %s) does not "
                "replay: the replay's message is %s", id, i + 1, event,
                ref ? ref : "(none)", st ? st : "not sent");
      json_decref(m);
      if (!ok)
        return;
      continue;
    }
    if (is_system_actor(aj)) {
      TIMER_ROWS++;
      /* A timer fired here.  It may have been fired already by the
         previous row's firing (two timers due at the same moment). */
      char *hj = NULL;
      json_t *rh = api_json(r, rp, flow_case_history(&hj, rp, rid), &hj,
                            "replay history");
      size_t have = json_array_size(rh);
      json_decref(rh);
      if (have > i)
        continue;
      size_t fired = 0;
      rc = flow_engine_fire_due(rp, &fired);
      if (rc != 0)
        problem(r, "case %s: replaying timer row %zu: %s: %s", id, i + 1,
                flow_err_name(rc), flow_errmsg(rp));
      continue;
    }
    actor_from_json(aj, &actor, roles);
    char tid[24];
    if (replay_task(r, rp, rid, event, json_object_get(h, "payload"), tid,
                    sizeof tid)) {
      /* A task completed: complete the replay's with the same outcome,
         by the same person. */
      TASKS_REPLAYED++;
      char *outcome = dump(json_object_get(json_object_get(h, "payload"),
                                           "outcome"));
      rc = flow_task_complete(NULL, rp, tid, outcome, &actor);
      free(outcome);
      if (rc != 0) {
        problem(r, "case %s: task event %zu '%s' is in the history but its "
                "task's completion is refused on replay: %s: %s", id, i + 1,
                event, flow_err_name(rc), flow_errmsg(rp));
        return;
      }
      continue;
    }
    char *payload = dump(json_object_get(h, "payload"));
    rc = flow_case_signal(NULL, rp, rid, event, payload, &actor);
    free(payload);
    if (rc != 0) {
      problem(r, "case %s: event %zu '%s' is in the history but is refused "
              "on replay: %s: %s", id, i + 1, event, flow_err_name(rc),
              flow_errmsg(rp));
      return;
    }
  }

  /* Compare the case, its history and its timers. */
  char *o1 = NULL, *o2 = NULL, *o3 = NULL;
  json_t *rcase = api_json(r, rp, flow_case_get(&o1, rp, rid), &o1,
                           "replay get");
  json_t *rhist = api_json(r, rp, flow_case_history(&o2, rp, rid), &o2,
                           "replay history");
  json_t *rtim = api_json(r, rp, flow_case_timers(&o3, rp, rid), &o3,
                          "replay timers");
  if (rcase && rhist && rtim && stim) {
    const char *keys[] = { "state", "status", "data", "seq", "opened_at",
                           "updated_at", "due_at", "service", "version" };
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
      same_field(r, id, "the case's", c, rcase, keys[k]);
    if (json_array_size(rhist) != n) {
      problem(r, "case %s: the stored history has %zu events, its replay "
              "%zu (a timer fired twice, or one was lost)", id, n,
              json_array_size(rhist));
    } else {
      for (size_t i = 0; i < n; i++) {
        const char *hk[] = { "seq", "at", "event", "from", "to", "payload",
                             "actor" };
        char what[64];
        snprintf(what, sizeof what, "history row %zu", i + 1);
        for (size_t k = 0; k < sizeof hk / sizeof *hk; k++)
          if (!same_field(r, id, what, json_array_get(hist, i),
                          json_array_get(rhist, i), hk[k]))
            break;
      }
    }
    json_t *rtasks = stasks ? case_tasks(r, rp, rid,
                                         "listing the replay's tasks")
                            : NULL;
    if (stasks && rtasks)
      same_tasks(r, id, stasks, rtasks);
    json_t *sv = timer_view(stim, stasks), *rv = timer_view(rtim, rtasks);
    /* A task's due time fires with no event (a note for the host), so the
       child may have fired one that the replay, whose clock stopped at
       the last event, still holds: one due by the latest time the
       database's engines saw. */
    for (size_t k = json_array_size(rv); k-- > 0;) {
      json_t *t = json_array_get(rv, k);
      const char *kind = json_string_value(json_object_get(t, "kind"));
      if (kind && strcmp(kind, "task_due") == 0 &&
          time_of(json_object_get(t, "due_at")) <= r->clock_end &&
          !json_array_has(sv, t))
        json_array_remove(rv, k);
    }
    same_field(r, id, "the pending timers", sv, rv, NULL);
    json_decref(sv);
    json_decref(rv);
    json_decref(rtasks);
  }
  json_decref(rcase);
  json_decref(rhist);
  json_decref(rtim);
}

static flow_engine *
open_engine(const round *r, const char *path)
{
  flow_engine *e = NULL;
  char err[512];
  int rc = flow_engine_open(&e, path, NULL, err, sizeof err);
  if (rc != 0) {
    problem(r, "the database does not open after the kill: %s: %s",
            flow_err_name(rc), err);
    return NULL;
  }
  return e;
}

/* A request as the checks keep it: id and whether it is done. */
typedef struct req_seen {
  int64_t id;
  int done;
} req_seen;

static int
req_cmp(const void *a, const void *b)
{
  int64_t x = ((const req_seen *)a)->id, y = ((const req_seen *)b)->id;
  return x < y ? -1 : x > y;
}

/* The case's action requests against its history; appends each to
   *all. */
static void
verify_requests(const round *r, flow_engine *db, json_t *c, json_t *hist,
                req_seen **all, size_t *nall, size_t *capall)
{
  const char *id = json_string_value(json_object_get(c, "id"));
  char *out = NULL;
  json_t *reqs = api_json(r, db, flow_actions_list(&out, db, id, NULL), &out,
                          "listing a case's action requests");
  if (reqs == NULL)
    return;
  int phone = json_object_get(json_object_get(c, "data"), "phone") != NULL;
  /* Transitions into assigned: each asked for one text, when there is a
     phone number. */
  long want = 0;
  size_t k;
  json_t *row;
  json_array_foreach(hist, k, row)
  {
    const char *to = json_string_value(json_object_get(row, "to"));
    const char *from = json_string_value(json_object_get(row, "from"));
    if (phone && to && strcmp(to, "assigned") == 0 &&
        (from == NULL || strcmp(from, "assigned") != 0))
      want++;
  }
  if ((long)json_array_size(reqs) != want)
    problem(r, "case %s has %zu action requests, but its history asks for "
            "%ld", id, json_array_size(reqs), want);
  json_t *q;
  json_array_foreach(reqs, k, q)
  {
    REQUESTS_CHECKED++;
    const char *key = json_string_value(json_object_get(q, "key"));
    const char *st = json_string_value(json_object_get(q, "status"));
    long long qid = strtoll(json_string_value(json_object_get(q, "id")), NULL,
                            10);
    long attempts = (long)json_integer_value(json_object_get(q, "attempts"));
    long long kc = 0;
    long ks = 0;
    int n = 0;
    if (key == NULL || sscanf(key, "%lld-%ld-%d", &kc, &ks, &n) != 3 ||
        kc != strtoll(id, NULL, 10) || n != 0) {
      problem(r, "case %s: request %lld has the key '%s'", id, qid,
              key ? key : "?");
      continue;
    }
    json_t *hr = ks >= 1 ? json_array_get(hist, (size_t)ks - 1) : NULL;
    const char *to = json_string_value(json_object_get(hr, "to"));
    if (to == NULL || strcmp(to, "assigned") != 0)
      problem(r, "case %s: request %lld was made by seq %ld, which is not a "
              "transition into assigned", id, qid, ks);
    /* "waiting": pending, and the checking engine has no handler. */
    if (st == NULL || (strcmp(st, "pending") != 0 &&
                       strcmp(st, "waiting") != 0 && strcmp(st, "done") != 0))
      problem(r, "case %s: request %lld is %s", id, qid, st ? st : "?");
    else if (strcmp(st, "done") == 0 && attempts < 1)
      problem(r, "case %s: request %lld is done after %ld attempts", id, qid,
              attempts);
    if (*nall == *capall) {
      *capall = *capall ? 2 * *capall : 1024;
      *all = realloc(*all, *capall * sizeof **all);
      if (*all == NULL) {
        fprintf(stderr, "crash: out of memory\n");
        exit(2);
      }
    }
    (*all)[(*nall)++] = (req_seen){ qid, st && strcmp(st, "done") == 0 };
  }
  json_decref(reqs);
}

/* Every acknowledged answer left its request done. */
static void
verify_answers(const round *r, req_seen *all, size_t nall)
{
  if (nall > 1)
    qsort(all, nall, sizeof *all, req_cmp);
  for (size_t i = 0; i < r->nanswers; i++) {
    ANSWERS_CHECKED++;
    req_seen key = { r->answers[i], 0 };
    req_seen *f =
        nall ? bsearch(&key, all, nall, sizeof *all, req_cmp) : NULL;
    if (f == NULL)
      problem(r, "the acknowledged answer to request %" PRId64 " is lost: "
              "there is no such request", r->answers[i]);
    else if (!f->done)
      problem(r, "the acknowledged answer to request %" PRId64 " is lost: "
              "the request is not done", r->answers[i]);
  }
}

/* ---- bulky_waste: messages and tasks against the histories --------------- */

static int
is(json_t *o, const char *key, const char *want)
{
  const char *v = json_string_value(json_object_get(o, key));
  return v && want && strcmp(v, want) == 0;
}

static long
count_event(json_t *hist, const char *event)
{
  long n = 0;
  size_t i;
  json_t *row;
  json_array_foreach(hist, i, row) n += is(row, "event", event);
  return n;
}

static const char *
str_or(json_t *o, const char *key, const char *dflt)
{
  const char *v = json_string_value(json_object_get(o, key));
  return v ? v : dflt;
}

/*
 * One bulky_waste case: its payment against the messages sent with its
 * key (msgs) and its incidents (incs), its tasks against its entries into
 * booked and what followed each.
 */
static void
verify_bulky(const round *r, json_t *c, json_t *hist, json_t *tasks,
             json_t *msgs, json_t *incs)
{
  const char *id = json_string_value(json_object_get(c, "id"));
  const char *ref = json_string_value(
      json_object_get(json_object_get(c, "data"), "payment_ref"));
  BULKY_CHECKED++;

  /* The payment: once at most, at seq 2, by the engine (a delivery). */
  long npay = 0;
  json_t *prow = NULL, *row;
  size_t i;
  json_array_foreach(hist, i, row)
  {
    if (!is(row, "event", "payment_received"))
      continue;
    npay++;
    prow = row;
    if (i != 1 || !is_system_actor(json_object_get(row, "actor")))
      problem(r, "case %s: payment_received is history row %zu, by %s (a "
              "delivery is row 2, by the engine)", id, i + 1,
              str_or(json_object_get(row, "actor"), "id", "?"));
  }
  if (npay > 1)
    problem_in(r, PC_MESSAGE, "case %s: payment_received is applied %ld "
               "times", id, npay);

  /* The messages of its key: one delivered for each payment event, to
     this case; none still buffered while it waits for one; each refused
     one an incident of its own. */
  long ndel = 0;
  json_t *dm = NULL, *m;
  int awaiting = is(c, "state", "awaiting_payment");
  json_array_foreach(msgs, i, m)
  {
    STORED_MESSAGES++;
    const char *mid = str_or(m, "id", "?");
    const char *st = str_or(m, "status", "?");
    if (strcmp(st, "delivered") == 0 || strcmp(st, "incident") == 0) {
      if (!is(m, "case", id)) {
        problem_in(r, PC_MESSAGE, "message %s (key %s) is %s to case %s, "
                   "but case %s holds its key", mid, ref ? ref : "?", st,
                   str_or(m, "case", "(none)"), id);
        continue;
      }
      if (strcmp(st, "delivered") == 0) {
        ndel++;
        dm = m;
      } else {
        long ninc = 0;
        size_t k;
        json_t *inc;
        json_array_foreach(incs, k, inc) ninc +=
            is(inc, "source", "message") && is(inc, "source_id", mid);
        if (ninc != 1)
          problem(r, "case %s: message %s is an incident, with %ld incidents "
                  "for it", id, mid, ninc);
      }
    } else if (strcmp(st, "buffered") == 0 && awaiting) {
      problem_in(r, PC_MESSAGE, "message %s (key %s) is still buffered, but "
                 "case %s holds its key and waits for it", mid,
                 ref ? ref : "?", id);
    } else if (strcmp(st, "buffered") != 0 && strcmp(st, "expired") != 0) {
      problem(r, "message %s (key %s) of case %s is %s", mid, ref ? ref : "?",
              id, st);
    }
  }
  if (ndel != npay)
    problem_in(r, PC_MESSAGE, "case %s: %ld messages delivered to it with "
               "key %s, but its history has %ld payment_received events", id,
               ndel, ref ? ref : "?", npay);
  else if (npay == 1 && !json_equal(json_object_get(prow, "payload"),
                                    json_object_get(dm, "payload")))
    problem(r, "case %s: its payment_received payload is not message %s's",
            id, str_or(dm, "id", "?"));
  size_t k;
  json_t *inc;
  json_array_foreach(incs, k, inc)
  {
    if (!is(inc, "source", "message"))
      problem(r, "case %s has an incident of a %s: %.200s", id,
              str_or(inc, "source", "?"), str_or(inc, "error", ""));
  }

  /* Its tasks: one "collect" created by each entry into booked, on that
     row; done by the collection_done that follows, with its outcome and
     by its actor; cancelled by anything else that follows; live when
     nothing does yet. */
  long entries = 0, done_rows = 0, done_tasks = 0;
  size_t n = json_array_size(hist);
  json_array_foreach(hist, i, row)
  {
    json_t *tl = json_object_get(row, "tasks");
    const char *to = json_string_value(json_object_get(row, "to"));
    const char *from = json_string_value(json_object_get(row, "from"));
    done_rows += is(row, "event", "collection_done");
    int entry = to && strcmp(to, "booked") == 0 &&
                (from == NULL || strcmp(from, "booked") != 0);
    if (!entry) {
      if (json_array_size(tl) > 0)
        problem_in(r, PC_TASK, "case %s: history row %zu (%s) created %zu "
                   "tasks but does not enter booked", id, i + 1,
                   str_or(row, "event", "?"), json_array_size(tl));
      continue;
    }
    entries++;
    json_t *rt = json_array_get(tl, 0);
    if (json_array_size(tl) != 1 || !is(rt, "name", "collect")) {
      problem_in(r, PC_TASK, "case %s: history row %zu enters booked with "
                 "%zu tasks (one \"collect\" expected)", id, i + 1,
                 json_array_size(tl));
      continue;
    }
    const char *tid = str_or(rt, "id", "?");
    json_int_t ti = task_index(tasks, tid);
    json_t *t = ti >= 0 ? json_array_get(tasks, (size_t)ti) : NULL;
    if (t == NULL || !is(t, "case", id)) {
      problem_in(r, PC_TASK, "case %s: task %s of history row %zu is not "
                 "among the case's tasks", id, tid, i + 1);
      continue;
    }
    if (!json_equal(json_object_get(t, "created_at"),
                    json_object_get(row, "at")))
      problem_in(r, PC_TASK, "case %s: task %s was created at %s, but the "
                 "row that created it is at %s", id, tid,
                 str_or(t, "created_at", "?"), str_or(row, "at", "?"));
    TASKS_CHECKED++;
    const char *st = str_or(t, "status", "?");
    json_t *next = i + 1 < n ? json_array_get(hist, i + 1) : NULL;
    if (next == NULL) {
      if (strcmp(st, "open") != 0 && strcmp(st, "claimed") != 0)
        problem_in(r, PC_TASK, "case %s is booked, but its task %s is %s",
                   id, tid, st);
    } else if (is(next, "event", "collection_done")) {
      json_t *p = json_object_get(next, "payload");
      const char *by = str_or(json_object_get(next, "actor"), "id", "?");
      if (strcmp(st, "done") != 0 || !is(t, "finished_by", by) ||
          !is(p, "by", by) || !is(p, "task", "collect") ||
          !json_equal(json_object_get(p, "outcome"),
                      json_object_get(t, "outcome")))
        problem_in(r, PC_TASK, "case %s: history row %zu is collection_done "
                   "by %s, but its task %s is %s, finished by %s", id, i + 2,
                   by, tid, st, str_or(t, "finished_by", "nobody"));
    } else if (strcmp(st, "cancelled") != 0) {
      problem_in(r, PC_TASK, "case %s left booked by %s (row %zu), but its "
                 "task %s is %s, not cancelled", id,
                 str_or(next, "event", "?"), i + 2, tid, st);
    }
    if (!is(rt, "status", st))
      problem(r, "case %s: history row %zu says task %s is %s, the task "
              "list says %s", id, i + 1, tid, str_or(rt, "status", "?"), st);
  }
  json_t *t;
  json_array_foreach(tasks, i, t) done_tasks += is(t, "status", "done");
  if ((long)json_array_size(tasks) != entries)
    problem_in(r, PC_TASK, "case %s has %zu tasks, but enters booked %ld "
               "times", id, json_array_size(tasks), entries);
  if (done_tasks != done_rows)
    problem_in(r, PC_TASK, "case %s: %ld of its tasks are done, but its "
               "history has %ld collection_done events", id, done_tasks,
               done_rows);
}

/* A task as the acknowledgement checks find it. */
typedef struct task_ref {
  int64_t id;
  json_t *t;
} task_ref;

static int
task_ref_cmp(const void *a, const void *b)
{
  int64_t x = ((const task_ref *)a)->id, y = ((const task_ref *)b)->id;
  return x < y ? -1 : x > y;
}

static int
task_ack_cmp(const void *a, const void *b)
{
  const task_ack *x = a, *y = b;
  if (x->task != y->task)
    return x->task < y->task ? -1 : 1;
  return strcmp(x->actor, y->actor);
}

static json_t *
find_task(task_ref *all, size_t nall, int64_t id)
{
  task_ref key = { id, NULL };
  task_ref *f = nall ? bsearch(&key, all, nall, sizeof *all, task_ref_cmp)
                     : NULL;
  return f ? f->t : NULL;
}

/*
 * Every acknowledged claim, completion and send against the database.
 * tasks[] and hist[] are by case id (up to maxid).
 */
static void
verify_task_acks(round *r, flow_engine *db, json_t **tasks, json_t **hist,
                 int64_t maxid)
{
  task_ref *all = NULL;
  size_t nall = 0, capall = 0;
  for (int64_t c = 0; c <= maxid; c++) {
    size_t i;
    json_t *t;
    json_array_foreach(tasks[c], i, t)
    {
      GROW(all, nall, capall);
      all[nall++] = (task_ref){ strtoll(str_or(t, "id", "0"), NULL, 10), t };
    }
  }
  if (nall > 1)
    qsort(all, nall, sizeof *all, task_ref_cmp);

  /* Claims: one person per task, the one acknowledged. */
  if (r->nclaims > 1)
    qsort(r->claims, r->nclaims, sizeof *r->claims, task_ack_cmp);
  for (size_t i = 0; i < r->nclaims; i++) {
    const task_ack *a = &r->claims[i];
    CLAIMS_CHECKED++;
    if (i > 0 && a->task == r->claims[i - 1].task) {
      if (strcmp(a->actor, r->claims[i - 1].actor) != 0)
        problem_in(r, PC_TASK, "task %" PRId64 " was claimed by %s and by "
                   "%s: both claims were acknowledged", a->task,
                   r->claims[i - 1].actor, a->actor);
      continue;
    }
    json_t *t = find_task(all, nall, a->task);
    if (t == NULL) {
      problem_in(r, PC_TASK, "the acknowledged claim of task %" PRId64
                 " by %s is lost: there is no such task", a->task, a->actor);
      continue;
    }
    const char *st = str_or(t, "status", "?");
    if (!is(t, "claimed_by", a->actor))
      problem_in(r, PC_TASK, "the acknowledged claim of task %" PRId64
                 " by %s is lost: the task is %s, claimed by %s", a->task,
                 a->actor, st, str_or(t, "claimed_by", "nobody"));
    else if (strcmp(st, "done") == 0 && !is(t, "finished_by", a->actor))
      problem_in(r, PC_TASK, "task %" PRId64 " was claimed by %s but "
                 "completed by %s", a->task, a->actor,
                 str_or(t, "finished_by", "nobody"));
  }

  /* Completions: done, by the acknowledged person, once in the case. */
  for (size_t i = 0; i < r->ncomps; i++) {
    const task_ack *a = &r->comps[i];
    COMPLETIONS_CHECKED++;
    json_t *t = find_task(all, nall, a->task);
    const char *st = t ? str_or(t, "status", "?") : "missing";
    if (t == NULL || strcmp(st, "done") != 0) {
      problem_in(r, PC_TASK, "the acknowledged completion of task %" PRId64
                 " (case %" PRId64 ") by %s is lost: the task is %s", a->task,
                 a->case_id, a->actor, st);
      continue;
    }
    if (!is(t, "finished_by", a->actor) ||
        strtoll(str_or(t, "case", "0"), NULL, 10) != a->case_id)
      problem_in(r, PC_TASK, "task %" PRId64 " was completed by %s on case %"
                 PRId64 " (acknowledged), but the task says by %s on case %s",
                 a->task, a->actor, a->case_id,
                 str_or(t, "finished_by", "nobody"), str_or(t, "case", "?"));
    json_t *h = a->case_id > 0 && a->case_id <= maxid ? hist[a->case_id]
                                                      : NULL;
    long nd = count_event(h, "collection_done");
    if (nd != 1)
      problem_in(r, PC_TASK, "the acknowledged completion of task %" PRId64
                 ": case %" PRId64 " has %ld collection_done events", a->task,
                 a->case_id, nd);
  }
  free(all);

  /* Sends: each message listed; delivered (as acknowledged, or later
     from the buffer) to the case of its key, where it is the one
     payment; or still buffered, or expired. */
  for (size_t i = 0; i < r->nmsgs; i++) {
    const msg_ack *a = &r->msgs[i];
    MESSAGES_CHECKED++;
    char *out = NULL;
    json_t *ms = api_json(r, db,
                          flow_messages_list(&out, db, "payment_received",
                                             a->key, NULL),
                          &out, "listing a key's messages");
    json_t *m = NULL, *v;
    size_t k;
    char mid[24];
    snprintf(mid, sizeof mid, "%" PRId64, a->id);
    json_array_foreach(ms, k, v) if (is(v, "id", mid)) m = v;
    if (m == NULL) {
      problem_in(r, PC_MESSAGE, "the acknowledged message %s (key %s, %s) "
                 "is lost: it is not listed", mid, a->key, a->status);
      json_decref(ms);
      continue;
    }
    const char *st = str_or(m, "status", "?");
    int64_t mc = strtoll(str_or(m, "case", "0"), NULL, 10);
    json_t *h = mc > 0 && mc <= maxid ? hist[mc] : NULL;
    const char *hkey = json_string_value(json_object_get(
        json_object_get(json_array_get(h, 0), "payload"), "payment_ref"));
    int ok;
    if (strcmp(a->status, "delivered") == 0 ||
        strcmp(a->status, "incident") == 0)
      ok = strcmp(st, a->status) == 0 && mc == a->case_id;
    else if (strcmp(a->status, "buffered") == 0)
      ok = strcmp(st, "buffered") == 0 || strcmp(st, "delivered") == 0 ||
           strcmp(st, "incident") == 0 ||
           (strcmp(st, "expired") == 0 &&
            time_of(json_object_get(m, "expires_at")) <= r->clock_end);
    else
      ok = 0;
    if (!ok) {
      problem_in(r, PC_MESSAGE, "the acknowledged message %s (key %s) was %s"
                 " to case %" PRId64 ", and is now %s to case %" PRId64,
                 mid, a->key, a->status, a->case_id, st, mc);
    } else if (strcmp(st, "delivered") == 0 || strcmp(st, "incident") == 0) {
      long np = count_event(h, "payment_received");
      if (h == NULL || hkey == NULL || strcmp(hkey, a->key) != 0 || np != 1)
        problem_in(r, PC_MESSAGE, "message %s (key %s) is %s to case %"
                   PRId64 ", %s with %ld payment_received events", mid,
                   a->key, st, mc,
                   h == NULL ? "which is lost"
                   : hkey == NULL || strcmp(hkey, a->key) != 0
                       ? "which does not hold its key"
                       : "which is left",
                   np);
    }
    json_decref(ms);
  }
}

/*
 * Checks the database after round r; *last_time receives the latest time
 * it holds, so the next child's clock goes on from there.
 */
static void
verify(round *r, int64_t *last_time, int64_t *first_due, long *serial)
{
  *first_due = INT64_MAX;
  flow_engine *db = open_engine(r, r->db);
  if (db == NULL)
    return;
  flow_engine *rp = NULL;
  char err[256];
  flow_engine_options ro = FLOW_ENGINE_OPTIONS_INIT;
  ro.synchronous = FLOW_SYNC_OFF;
  if (flow_engine_open(&rp, ":memory:", &ro, err, sizeof err) != 0 ||
      flow_service_load_file(NULL, rp, SERVICE_PATH) != 0 ||
      flow_service_load_file(NULL, rp, BULKY_PATH) != 0) {
    fprintf(stderr, "crash: cannot open the replay engine: %s\n",
            rp ? flow_errmsg(rp) : err);
    exit(2);
  }

  /* Every stored case, with its history. */
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.limit = 100000;
  char *out = NULL;
  json_t *cases = api_json(r, db, flow_case_list(&out, db, &q), &out,
                           "listing the cases");
  size_t ncases = json_array_size(cases);
  int64_t maxid = 0;
  size_t i;
  json_t *c;
  json_array_foreach(cases, i, c)
  {
    int64_t id = strtoll(json_string_value(json_object_get(c, "id")), NULL,
                         10);
    if (id > maxid)
      maxid = id;
  }
  json_t **hist = calloc((size_t)maxid + 1, sizeof *hist);
  /* bulky_waste cases: their tasks, the messages of their key, their
     incidents */
  json_t **tasks = calloc((size_t)maxid + 1, sizeof *tasks);
  json_t **msgs = calloc((size_t)maxid + 1, sizeof *msgs);
  json_t **incs = calloc((size_t)maxid + 1, sizeof *incs);
  if (hist == NULL || tasks == NULL || msgs == NULL || incs == NULL ||
      !seen_grow(maxid)) {
    fprintf(stderr, "crash: out of memory\n");
    exit(2);
  }
  req_seen *reqs = NULL;
  size_t nreqs = 0, capreqs = 0;
  json_array_foreach(cases, i, c)
  {
    const char *id = json_string_value(json_object_get(c, "id"));
    int64_t n = strtoll(id, NULL, 10);
    char *ht = NULL, *tt = NULL;
    int hrc = flow_case_history(&ht, db, id);
    char *htext = hrc == 0 && ht ? strdup(ht) : NULL;
    hist[n] = api_json(r, db, hrc, &ht, "reading a history");
    int trc = flow_case_timers(&tt, db, id);
    char *ttext = trc == 0 && tt ? strdup(tt) : NULL;
    json_t *stim = api_json(r, db, trc, &tt, "reading the timers");
    if (is(c, "service", "bulky_waste")) {
      const char *ref = json_string_value(
          json_object_get(json_object_get(c, "data"), "payment_ref"));
      tasks[n] = case_tasks(r, db, id, "listing a case's tasks");
      out = NULL;
      msgs[n] = ref ? api_json(r, db,
                               flow_messages_list(&out, db,
                                                  "payment_received", ref,
                                                  NULL),
                               &out, "listing a key's messages")
                    : json_array();
      out = NULL;
      incs[n] = api_json(r, db, flow_incidents_list(&out, db, id, NULL), &out,
                         "listing a case's incidents");
    }
    char *ctext = dump(c);
    seen *sn = &SEEN[n];
    if (hist[n] && stim && sn->c && strcmp(sn->c, ctext) == 0 &&
        strcmp(sn->h, htext) == 0 && strcmp(sn->t, ttext) == 0) {
      /* Byte for byte as verified against its replay after an earlier
         kill: nothing to replay. */
      CASES_UNCHANGED++;
      free(ctext);
      free(htext);
      free(ttext);
    } else if (hist[n] && stim) {
      long before = PROBLEMS;
      verify_case(r, rp, c, hist[n], stim, tasks[n]);
      free(sn->c);
      free(sn->h);
      free(sn->t);
      sn->c = sn->h = sn->t = NULL;
      if (PROBLEMS == before) {
        sn->c = ctext;
        sn->h = htext;
        sn->t = ttext;
      } else {
        free(ctext);
        free(htext);
        free(ttext);
      }
    } else {
      free(ctext);
      free(htext);
      free(ttext);
    }
    /* The earliest pending timer bounds the next restart's clock jump. */
    size_t k;
    json_t *t;
    json_array_foreach(stim, k, t)
    {
      const char *st = json_string_value(json_object_get(t, "status"));
      int64_t due = time_of(json_object_get(t, "due_at"));
      if (st && strcmp(st, "pending") == 0 && due < *first_due)
        *first_due = due;
    }
    json_decref(stim);
    if (hist[n])
      verify_requests(r, db, c, hist[n], &reqs, &nreqs, &capreqs);
    int64_t at = time_of(json_object_get(c, "updated_at"));
    if (at > *last_time)
      *last_time = at;
  }

  /* bulky_waste: payments, tasks, and what the child acknowledged of
     them. */
  json_array_foreach(cases, i, c)
  {
    int64_t n = strtoll(json_string_value(json_object_get(c, "id")), NULL,
                        10);
    if (hist[n] && tasks[n] && msgs[n] && incs[n])
      verify_bulky(r, c, hist[n], tasks[n], msgs[n], incs[n]);
  }
  verify_task_acks(r, db, tasks, hist, maxid);

  /* Every acknowledged event is there. */
  for (size_t k = 0; k < r->nacks; k++) {
    const ack *a = &r->acks[k];
    EVENTS_CHECKED++;
    json_t *h = a->case_id > 0 && a->case_id <= maxid ? hist[a->case_id]
                                                      : NULL;
    if (h == NULL) {
      problem_in(r, PC_EVENT, "acknowledged event '%s' (seq %ld, to '%s') of "
                 "case %" PRId64 " is lost: the case is not in the database",
                 a->event, a->seq, a->state, a->case_id);
      continue;
    }
    json_t *row = json_array_get(h, (size_t)a->seq - 1);
    const char *ev = json_string_value(json_object_get(row, "event"));
    const char *to = json_string_value(json_object_get(row, "to"));
    if (row == NULL || ev == NULL || strcmp(ev, a->event) != 0 ||
        to == NULL || strcmp(to, a->state) != 0)
      problem_in(r, PC_EVENT, "acknowledged event '%s' (seq %ld, to '%s') of "
              "case %" PRId64 " is lost: history row %ld is %s%s%s%s",
              a->event, a->seq,
              a->state, a->case_id, a->seq, row ? "'" : "missing",
              row && ev ? ev : "", row ? "' to " : "", row && to ? to : "");
  }

  verify_answers(r, reqs, nreqs);
  free(reqs);

  /* The database accepts new work. */
  *last_time += 60000;
  flow_engine_set_time(db, *last_time);
  int rc = flow_service_load_file(NULL, db, SERVICE_PATH);
  if (rc == 0)
    rc = flow_service_load_file(NULL, db, BULKY_PATH);
  if (rc != 0)
    problem(r, "loading the services after the kill: %s: %s",
            flow_err_name(rc), flow_errmsg(db));
  char data[160];
  snprintf(data, sizeof data,
           "{\"uprn\":\"9%ld\",\"address\":\"after kill %ld\","
           "\"bin\":\"garden\"}", r->kill % 100000000, r->kill);
  out = NULL;
  json_t *nc = rc == 0 ? api_json(r, db,
                                  flow_case_open(&out, db, "missed_bin", data,
                                                 &CITIZEN),
                                  &out, "opening a case after the kill")
                       : NULL;
  if (nc) {
    out = NULL;
    json_t *sc = api_json(
        r, db,
        flow_case_signal(&out, db, json_string_value(json_object_get(nc, "id")),
                         "assign", "{\"crew\":\"after-kill\"}", &CREW),
        &out, "signalling a case after the kill");
    json_decref(sc);
  }
  json_decref(nc);
  /* And a booking, and its payment, delivered at once. */
  snprintf(data, sizeof data,
           "{\"uprn\":\"9%ld\",\"items\":1,\"payment_ref\":"
           "\"after-kill-%ld\"}", r->kill % 100000000, r->kill);
  out = NULL;
  nc = rc == 0 ? api_json(r, db,
                          flow_case_open(&out, db, "bulky_waste", data,
                                         &CITIZEN),
                          &out, "opening a booking after the kill")
               : NULL;
  if (nc) {
    char ref[48];
    snprintf(ref, sizeof ref, "after-kill-%ld", r->kill);
    out = NULL;
    json_t *m = api_json(r, db,
                         flow_message_send(&out, db, "payment_received", ref,
                                           "{\"amount\":1}", 0),
                         &out, "sending a payment after the kill");
    if (m && !is(m, "status", "delivered"))
      problem(r, "a payment sent after the kill is %s, not delivered",
              str_or(m, "status", "?"));
    json_decref(m);
  }
  json_decref(nc);
  *last_time += 60000;
  *serial += 1000000;

  for (int64_t k = 0; k <= maxid; k++) {
    json_decref(hist[k]);
    json_decref(tasks[k]);
    json_decref(msgs[k]);
    json_decref(incs[k]);
  }
  free(hist);
  free(tasks);
  free(msgs);
  free(incs);
  json_decref(cases);
  flow_engine_close(rp);
  flow_engine_close(db);
  if (OPT.verbose)
    printf("  verified %zu cases\n", ncases);
}

/* ---- main --------------------------------------------------------------- */

/*
 * --self-test: proves the checks have teeth by simulating a disk that lost
 * its last writes: the tail half of the WAL goes, with the transactions
 * committed there, acknowledged or not.  The harness must then report lost
 * acknowledged events, and lost acknowledged message sends (and exits 0
 * only if it did both, and caught the planted task below).
 */
static void
lose_tail(const char *db)
{
  char p[4200];
  struct stat st;
  snprintf(p, sizeof p, "%s-wal", db);
  if (stat(p, &st) == 0 && st.st_size > 0 && truncate(p, st.st_size / 2)) {
    perror("crash: truncate");
    exit(2);
  }
}

static long TASKS_PLANTED;

/*
 * --self-test, too: a task that ends while its case stays booked (as if
 * the engine ended a task without the transition that must end it) -- one
 * open task of the crews cancelled through the API behind its case's back.
 * The task checks must report it.
 */
static void
plant_task_fault(const round *r, const char *db)
{
  flow_engine *e = open_engine(r, db);
  if (e == NULL)
    return;
  flow_task_query q = { 0 };
  q.team = "crews";
  q.status = "open";
  char *out = NULL;
  json_t *ts = api_json(r, e, flow_tasks_list(&out, e, &q), &out,
                        "listing the tasks to plant a fault");
  json_t *t = json_array_get(ts, 0);
  static const flow_actor SABOTEUR = { "saboteur", NULL, 0 };
  if (t && flow_task_cancel(e, json_string_value(json_object_get(t, "id")),
                            &SABOTEUR) == 0)
    TASKS_PLANTED++;
  json_decref(ts);
  flow_engine_close(e);
}

static void
usage(void)
{
  fprintf(stderr,
          "usage: crash_harness [--kills K] [--source DIR] [--seed S] "
          "[--dir D]\n"
          "         [--max-delay-us U] [--rounds-per-db R] [--sync-only] "
          "[--keep] [--procs P] [--verbose] [--self-test]\n");
  exit(2);
}

static void
remove_db(const char *db)
{
  char p[4200];
  unlink(db);
  snprintf(p, sizeof p, "%s-wal", db);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", db);
  unlink(p);
}

int
main(int argc, char **argv)
{
  int seeded = 0;
  const char *child_args[5] = { NULL };
  const char *child_clock = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--kills") == 0 && v) {
      OPT.kills = strtol(v, NULL, 10);
      i++;
    } else if (strcmp(a, "--source") == 0 && v) {
      OPT.source = v;
      i++;
    } else if (strcmp(a, "--seed") == 0 && v) {
      OPT.seed = strtoull(v, NULL, 10);
      seeded = 1;
      i++;
    } else if (strcmp(a, "--dir") == 0 && v) {
      OPT.dir = v;
      i++;
    } else if (strcmp(a, "--max-delay-us") == 0 && v) {
      OPT.max_delay_us = strtol(v, NULL, 10);
      i++;
    } else if (strcmp(a, "--rounds-per-db") == 0 && v) {
      OPT.rounds_per_db = strtol(v, NULL, 10);
      i++;
    } else if (strcmp(a, "--sync-only") == 0) {
      OPT.async = 0;
    } else if (strcmp(a, "--keep") == 0) {
      OPT.keep = 1;
    } else if (strcmp(a, "--verbose") == 0) {
      OPT.verbose = 1;
    } else if (strcmp(a, "--child") == 0 && i + 5 < argc) {
      for (int k = 0; k < 4; k++)
        child_args[k] = argv[++i];
      child_clock = argv[++i];
    } else if (strcmp(a, "--procs") == 0 && v) {
      OPT.procs = (int)strtol(v, NULL, 10);
      i++;
    } else if (strcmp(a, "--self-test") == 0) {
      OPT.self_test = 1;
    } else if (strcmp(a, "--slot") == 0 && v) {
      OPT.slot = (int)strtol(v, NULL, 10);
      i++;
    } else {
      usage();
    }
  }
  if (OPT.kills < 1 || OPT.max_delay_us < 1 || OPT.rounds_per_db < 1 ||
      OPT.procs < 1 || OPT.procs > MAX_PROCS)
    usage();
  if (!seeded)
    OPT.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  snprintf(SERVICE_PATH, sizeof SERVICE_PATH,
           "%s/examples/services/missed_bin.lua", OPT.source);
  snprintf(BULKY_PATH, sizeof BULKY_PATH,
           "%s/examples/services/bulky_waste.lua", OPT.source);
  if (access(SERVICE_PATH, R_OK) != 0 || access(BULKY_PATH, R_OK) != 0) {
    fprintf(stderr, "crash: cannot read %s (give --source the repository)\n",
            access(SERVICE_PATH, R_OK) != 0 ? SERVICE_PATH : BULKY_PATH);
    return 2;
  }
  if (child_args[0]) {
    child_main(atoi(child_args[0]), child_args[1],
               strtoull(child_args[2], NULL, 10),
               strtol(child_args[3], NULL, 10), child_clock, OPT.slot);
    return 0;
  }
  ssize_t n = readlink("/proc/self/exe", SELF, sizeof SELF - 1);
  if (n <= 0) {
    snprintf(SELF, sizeof SELF, "%s", argv[0]);
  } else {
    SELF[n] = 0;
  }
  char dir[4096];
  if (OPT.dir) {
    snprintf(dir, sizeof dir, "%s", OPT.dir);
    mkdir(dir, 0700);
  } else {
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/flow-crash-XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
      perror("crash: mkdtemp");
      return 2;
    }
  }
  int64_t t0;
  flow_time_parse(&t0, T0_ISO);
  printf("crash: seed %" PRIu64 ", %ld kills, delays up to %ld us, %s calls, "
         "%d engine process%s per round, databases in %s\n", OPT.seed,
         OPT.kills, OPT.max_delay_us, OPT.async ? "sync and async" : "sync",
         OPT.procs, OPT.procs == 1 ? "" : "es", dir);
  fflush(stdout);

  uint64_t rng = OPT.seed;
  char db[4200] = "";
  int64_t last_time = t0;
  long serial = 0, ndb = 0;
  int64_t started = mono_us();
  for (long k = 1; k <= OPT.kills; k++) {
    if ((k - 1) % OPT.rounds_per_db == 0) {
      if (db[0] && !OPT.keep && PROBLEMS == 0)
        remove_db(db);
      snprintf(db, sizeof db, "%s/crash-%ld.db", dir, ++ndb);
      remove_db(db);
      last_time = t0;
      DB_CLOCK = t0;
      serial = 0;
      seen_clear();
    }
    round r;
    memset(&r, 0, sizeof r);
    r.kill = k;
    r.seed = rnd_next(&rng);
    for (int p = 0; p < OPT.procs; p++)
      r.delays[p] = 1 + (long)rnd_below(&rng, (uint64_t)OPT.max_delay_us);
    r.delay_us = r.delays[0];
    r.from_ready = rnd_below(&rng, 5) != 0;
    r.db = db;
    char clock_path[4300];
    snprintf(clock_path, sizeof clock_path, "%s.clock", db);
    clock_file(clock_path, last_time);
    int rc = run_children(&r, clock_path, serial);
    int64_t end = read_clock(clock_path);
    unlink(clock_path);
    if (end > DB_CLOCK)
      DB_CLOCK = end;
    if (last_time > DB_CLOCK)
      DB_CLOCK = last_time;
    r.clock_end = DB_CLOCK;
    if (rc != 0)
      problem(&r, "the child failed before the kill: %s", r.fatal);
    if (r.in_group)
      KILLS_IN_GROUP++;
    if (OPT.self_test) {
      lose_tail(db);
      plant_task_fault(&r, db);
    }
    char delays[128] = "";
    for (int p = 1; p < OPT.procs; p++)
      snprintf(delays + strlen(delays), sizeof delays - strlen(delays),
               "%s%ld", p == 1 ? " (others " : ", ", r.delays[p]);
    if (OPT.procs > 1)
      strcat(delays, " us)");
    printf("kill %ld: seed %" PRIu64 ", SIGKILL %ld us%s after the %s, %zu "
           "acknowledged%s\n", k, r.seed, r.delay_us, delays,
           r.from_ready ? "start of the load" : "fork", r.nacks,
           r.in_group ? ", inside a group commit" : "");
    fflush(stdout);
    int64_t v0 = mono_us(), first_due;
    verify(&r, &last_time, &first_due, &serial);
    if (last_time > DB_CLOCK)
      DB_CLOCK = last_time;
    if (OPT.verbose)
      printf("  ready after %.1f ms, verified in %.1f ms\n",
             (double)r.ready_us / 1e3, (double)(mono_us() - v0) / 1e3);
    free(r.acks);
    free(r.answers);
    free(r.msgs);
    free(r.claims);
    free(r.comps);
    /* The restart comes after some downtime (up to two days), so timers
       fall due while nobody runs and must fire exactly once after it.
       Never more than a day past the earliest pending timer: a case's two
       timers are at least three working days apart, so no case ever has
       both overdue at once and a replay, which fires every due timer of
       the case at the recorded time, fires exactly what the child did. */
    int64_t start = last_time + (int64_t)rnd_below(&rng, 48 * 3600) * 1000;
    if (first_due != INT64_MAX && start > first_due + 24 * 3600 * 1000LL)
      start = first_due + 24 * 3600 * 1000LL;
    if (start > last_time)
      last_time = start;
  }
  if (!OPT.keep && PROBLEMS == 0) {
    remove_db(db);
    if (!OPT.dir)
      rmdir(dir);
  } else if (PROBLEMS && !OPT.self_test) {
    printf("crash: the databases are kept in %s\n", dir);
  }
  if (OPT.self_test && !OPT.keep) {
    /* The lost writes were ours: nothing there to look at. */
    for (long i = 1; i <= ndb; i++) {
      snprintf(db, sizeof db, "%s/crash-%ld.db", dir, i);
      remove_db(db);
    }
    if (!OPT.dir)
      rmdir(dir);
  }
  seen_clear();
  printf("crash: %ld case versions replayed (%ld timer firings among them), "
         "%ld unchanged since their last check, %ld group commits, %ld kills "
         "inside a group commit, %.1f s\n", CASES_CHECKED, TIMER_ROWS,
         CASES_UNCHANGED, ASYNC_BATCHES, KILLS_IN_GROUP,
         (double)(mono_us() - started) / 1e6);
  printf("crash: %ld action requests checked, %ld acknowledged answers\n",
         REQUESTS_CHECKED, ANSWERS_CHECKED);
  printf("crash: bulky_waste: %ld case versions checked (%ld payments and "
         "%ld task completions among their replays), %ld tasks and %ld "
         "messages against their histories; %ld acknowledged sends, %ld "
         "claims, %ld completions; %ld claims refused (FLOW_ECONFLICT), %ld "
         "refused outcomes that changed nothing\n", BULKY_CHECKED, PAYMENTS_REPLAYED,
         TASKS_REPLAYED, TASKS_CHECKED, STORED_MESSAGES, MESSAGES_CHECKED,
         CLAIMS_CHECKED, COMPLETIONS_CHECKED, CLAIM_CONFLICTS,
         REFUSALS_CHECKED);
  printf("crash: %ld kills, %ld acknowledged events checked, %ld problems\n",
         OPT.kills, EVENTS_CHECKED, PROBLEMS);
  if (OPT.self_test) {
    /* Every kind of check must have bitten: lost events, lost message
       sends, and the tasks planted (or lost with the WAL). */
    int ok = PROBLEMS_IN[PC_EVENT] > 0 && PROBLEMS_IN[PC_MESSAGE] > 0 &&
             PROBLEMS_IN[PC_TASK] > 0;
    printf("crash: self-test: %ld problems with acknowledged events, %ld "
           "with messages, %ld with tasks (%ld tasks planted)\n",
           PROBLEMS_IN[PC_EVENT], PROBLEMS_IN[PC_MESSAGE],
           PROBLEMS_IN[PC_TASK], TASKS_PLANTED);
    printf("crash: self-test %s: the harness %s the lost writes\n",
           ok ? "passed" : "FAILED", ok ? "caught" : "missed");
    return ok ? 0 : 1;
  }
  return PROBLEMS ? 1 : 0;
}
