/*
 * The crash harness: proof that a kill -9 never loses an acknowledged event
 * and never leaves a case that its own history cannot explain.
 *
 * The driver (parent) forks a child that opens an engine on a database
 * file, loads examples/services/missed_bin.lua and drives cases through
 * open/assign/schedule/collect (and cannot_access, and the supervisor's
 * collect after an escalation) as fast as it can, on a virtual clock that
 * moves forward a few minutes per step so that the service's `after` timer
 * (2 working days) and its service-level timer (5 working days) fall due
 * and fire while the child runs.  It mixes synchronous calls, each its own
 * commit, with batches of asynchronous calls flushed by
 * flow_engine_run(FLOW_RUN_NOWAIT), so that whole groups are committed at
 * once.  For every call that was ACKNOWLEDGED (a synchronous call returned
 * 0, an asynchronous callback had status 0) the child writes one line to a
 * pipe, "A <case> <seq> <event> <state>", with one write(2), after the
 * acknowledgement and never before.  Around each group commit it writes
 * "G" and "g" so the driver can tell when a kill landed inside one.
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
 *   - the database accepts a new case and an event on it.
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
 * history that its replay cannot explain.
 *
 * Usage: crash_harness [--kills K] [--source DIR] [--seed S] [--dir D]
 *          [--max-delay-us U] [--rounds-per-db R] [--sync-only] [--keep]
 *          [--procs P] [--verbose] [--self-test]
 * It prints the seed, one line per kill (the child's seed and the delay
 * before its SIGKILL), and ends with "crash: K kills, E acknowledged
 * events checked, 0 problems" and status 0; or one PROBLEM line per
 * problem, status 1, and the databases kept for a look.  Status 2 is a
 * usage or setup error.  --sync-only drives the engine with synchronous
 * calls alone; --self-test throws away the end of the WAL after each kill
 * and passes only if the harness notices.
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
} options;

static options OPT = { 100, ".", 0, NULL, 60000, 4, 1, 0, 0, 0, 1 };
static char SERVICE_PATH[4096];
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
       ST_CLOSED };

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

typedef struct child {
  flow_engine *e;
  char later[LATER_MAX][24]; /* requests to answer after the round */
  size_t nlater;
  int fd;
  uint64_t rng;
  int64_t now;
  int64_t *clock; /* the clock shared by the round's children */
  long serial; /* for unique uprns */
  tracker t;
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
  int open = st != ST_CLOSED;
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

/* Acknowledges a case JSON returned by a successful call: one pipe line. */
static void
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
  char line[256];
  int n = snprintf(line, sizeof line, "A %s %" JSON_INTEGER_FORMAT " %s %s\n",
                   id, seq, event, state);
  child_line(c, line, (size_t)n);
  tracker_set(&c->t, strtoll(id, NULL, 10), state_code(state));
  json_decref(j);
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
    if (id && to)
      tracker_set(&c->t, strtoll(id, NULL, 10), state_code(to));
  }
  json_decref(j);
}

/* One planned call. */
typedef struct op {
  int64_t case_id; /* 0: open a case */
  char id[24];
  const char *event;
  char payload[160];
  const flow_actor *actor;
  child *c;
} op;

static void
plan_open(child *c, op *o)
{
  long i = ++c->serial;
  o->case_id = 0;
  o->event = "open";
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
    rc = flow_case_open(&out, c->e, "missed_bin", o->payload, o->actor);
  else
    rc = flow_case_signal(&out, c->e, o->id, o->event, o->payload, o->actor);
  if (rc == 0) {
    child_ack(c, out, o->event);
  } else if (rc == FLOW_EIO || rc == FLOW_EBUSY || rc == FLOW_ENOMEM ||
             rc == FLOW_ERROR || rc == FLOW_EMISUSE ||
             rc == FLOW_ECANCELED) {
    child_die(c, "%s on case %s: %s: %s", o->event,
              o->case_id ? o->id : "(new)", flow_err_name(rc),
              flow_errmsg(c->e));
  } else if (o->case_id) {
    /* Refused: learn the case's real state for next time. */
    char *cj = NULL;
    if (flow_case_get(&cj, c->e, o->id) == 0) {
      json_t *j = json_loads(cj, 0, NULL);
      tracker_set(&c->t, o->case_id,
                  state_code(json_string_value(json_object_get(j, "state"))));
      json_decref(j);
    }
    flow_free(cj);
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
  if (status == 0)
    child_ack(c, case_json, o->event);
  else if (status == FLOW_EIO || status == FLOW_EBUSY ||
           status == FLOW_ENOMEM || status == FLOW_ERROR)
    child_die(c, "async %s on case %s: %s: %s", o->event,
              o->case_id ? o->id : "(new)", flow_err_name(status),
              flow_errmsg(e));
  else if (o->case_id && (size_t)o->case_id < c->t.cap &&
           c->t.state[o->case_id] != ST_CLOSED)
    c->t.state[o->case_id] = ST_UNKNOWN; /* "collect" finds out */
  free(o);
}

static void
child_async_batch(child *c)
{
  uint64_t n = 1 + rnd_below(&c->rng, 32);
  for (uint64_t i = 0; i < n; i++) {
    op *o = calloc(1, sizeof *o);
    if (o == NULL)
      _exit(5);
    plan_op(c, o);
    o->c = c;
    int rc;
    if (o->case_id == 0)
      rc = flow_case_open_async(c->e, "missed_bin", o->payload, o->actor,
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
    if (id)
      tracker_set(&c->t, strtoll(id, NULL, 10), state_code(st));
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
           const char *clock_path)
{
  child c;
  memset(&c, 0, sizeof c);
  c.fd = fd;
  c.rng = seed;
  c.serial = serial;
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

static void
problem(const round *r, const char *fmt, ...)
{
  va_list ap;
  PROBLEMS++;
  if (PROBLEMS > 60)
    return;
  fprintf(stdout, "PROBLEM kill %ld (seed %" PRIu64 ", delay %ld us, db %s): ",
          r->kill, r->seed, r->delay_us, r->db);
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
}

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
      char a_fd[16], a_seed[32], a_serial[32];
      close(fds[0]);
      snprintf(a_fd, sizeof a_fd, "%d", fds[1]);
      snprintf(a_seed, sizeof a_seed, "%" PRIu64, r->seed + (uint64_t)k);
      /* Each child its own uprns. */
      snprintf(a_serial, sizeof a_serial, "%ld", serial + k * 250000L);
      char *argv[] = { SELF,
                       "--child",
                       a_fd,
                       (char *)r->db,
                       a_seed,
                       a_serial,
                       (char *)clock_path,
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

/* The pending timers with the fields a replay can reproduce. */
static json_t *
timer_view(json_t *timers)
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
    json_array_append_new(v, o);
  }
  return v;
}

/*
 * Replays one stored case on the replay engine and compares.  hist is its
 * stored history, c the stored case.  Returns the number of timer rows.
 */
static void
verify_case(const round *r, flow_engine *rp, json_t *c, json_t *hist,
            json_t *stim)
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
    json_t *sv = timer_view(stim), *rv = timer_view(rtim);
    same_field(r, id, "the pending timers", sv, rv, NULL);
    json_decref(sv);
    json_decref(rv);
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
      flow_service_load_file(NULL, rp, SERVICE_PATH) != 0) {
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
  if (hist == NULL || !seen_grow(maxid)) {
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
      verify_case(r, rp, c, hist[n], stim);
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

  /* Every acknowledged event is there. */
  for (size_t k = 0; k < r->nacks; k++) {
    const ack *a = &r->acks[k];
    EVENTS_CHECKED++;
    json_t *h = a->case_id > 0 && a->case_id <= maxid ? hist[a->case_id]
                                                      : NULL;
    if (h == NULL) {
      problem(r, "acknowledged event '%s' (seq %ld, to '%s') of case %" PRId64
              " is lost: the case is not in the database", a->event, a->seq,
              a->state, a->case_id);
      continue;
    }
    json_t *row = json_array_get(h, (size_t)a->seq - 1);
    const char *ev = json_string_value(json_object_get(row, "event"));
    const char *to = json_string_value(json_object_get(row, "to"));
    if (row == NULL || ev == NULL || strcmp(ev, a->event) != 0 ||
        to == NULL || strcmp(to, a->state) != 0)
      problem(r, "acknowledged event '%s' (seq %ld, to '%s') of case %" PRId64
              " is lost: history row %ld is %s%s%s%s", a->event, a->seq,
              a->state, a->case_id, a->seq, row ? "'" : "missing",
              row && ev ? ev : "", row ? "' to " : "", row && to ? to : "");
  }

  verify_answers(r, reqs, nreqs);
  free(reqs);

  /* The database accepts new work. */
  *last_time += 60000;
  flow_engine_set_time(db, *last_time);
  int rc = flow_service_load_file(NULL, db, SERVICE_PATH);
  if (rc != 0)
    problem(r, "loading the service after the kill: %s: %s",
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
  *last_time += 60000;
  *serial += 1000000;

  for (int64_t k = 0; k <= maxid; k++)
    json_decref(hist[k]);
  free(hist);
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
 * acknowledged events (and exits 0 only if it did).
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
  if (access(SERVICE_PATH, R_OK) != 0) {
    fprintf(stderr, "crash: cannot read %s (give --source the repository)\n",
            SERVICE_PATH);
    return 2;
  }
  if (child_args[0]) {
    child_main(atoi(child_args[0]), child_args[1],
               strtoull(child_args[2], NULL, 10),
               strtol(child_args[3], NULL, 10), child_clock);
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
    unlink(clock_path);
    if (rc != 0)
      problem(&r, "the child failed before the kill: %s", r.fatal);
    if (r.in_group)
      KILLS_IN_GROUP++;
    if (OPT.self_test)
      lose_tail(db);
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
    if (OPT.verbose)
      printf("  ready after %.1f ms, verified in %.1f ms\n",
             (double)r.ready_us / 1e3, (double)(mono_us() - v0) / 1e3);
    free(r.acks);
    free(r.answers);
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
  printf("crash: %ld kills, %ld acknowledged events checked, %ld problems\n",
         OPT.kills, EVENTS_CHECKED, PROBLEMS);
  if (OPT.self_test) {
    printf("crash: self-test %s: the harness %s the lost writes\n",
           PROBLEMS ? "passed" : "FAILED", PROBLEMS ? "caught" : "missed");
    return PROBLEMS ? 0 : 1;
  }
  return PROBLEMS ? 1 : 0;
}
