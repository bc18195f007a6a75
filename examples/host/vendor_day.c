/*
 * A day in a district's waste services, replayed through libflow the way
 * the vendor of a council's back-office system embeds it.
 *
 * The program is that back office for Hollinbrook, a made-up district.  It
 * runs the engine on a libuv loop of its own, loads the missed-bin report
 * and bulky-waste booking services, registers the actions they call
 * (GOV.UK Notify, the address gazetteer, the round planner, the card
 * payment provider), and replays the days on a virtual clock, a minute at
 * a time: residents' reports and bookings arrive through the asynchronous
 * API, crews and office staff list, claim and complete their tasks,
 * supervisors work their queue, payments are declined, time out and are
 * tried again, and timers fire.  At 19:00 it prints what a head of service
 * asks for.
 *
 *   example_vendor_day [--services DIR] [--data DIR] [--date YYYY-MM-DD]
 *                      [--reports N] [--bookings N] [--history-days N]
 *                      [--seed N] [--decline-rate P] [--timeout-rate P]
 *                      [--outbox FILE] [--db FILE] [--json] [--no-timings]
 *
 * The day is Monday 7 December 2026 unless --date says otherwise, from
 * 07:00 to 19:00 London time.  A council's Monday starts with last week's
 * work still open, and only that work can breach a service level or fall
 * overdue during the day (a report made today is due in 4 working days),
 * so the host first replays the 7 days before at a lighter load
 * (--history-days 0 leaves them out).  The report is of the day: what
 * happened between 07:00 and 19:00, and every case's state at 19:00.
 *
 * Everything that varies comes from a seeded generator (--seed), and the
 * clock is the engine's virtual one, so two runs with the same options
 * print the same report, but for the timings (--no-timings leaves them
 * out).  --json prints the same figures as one JSON object, keys sorted:
 *   date, from, to, seed, history_days, arrivals {reports, bookings}
 *   cases           {service: {state: n}}, every case at 19:00
 *   today           {service: {carried_over, opened, closed, open_at_end}}
 *   service_levels  {service: {met, breached, running, none}} at 19:00
 *   sla_notes       {service: {warning, breached}} told during the day
 *   tasks           {by_team: {team: {created, claimed, completed,
 *                   cancelled, overdue, ...}}, carried_over: {team: n},
 *                   overdue_now: {team: n}, overdue_now_capped: [team]}
 *   incidents       {by_source: {source: {FLOW_E..: n}}, examples, open,
 *                   open_capped}
 *   actions         {by_action: {action: {requested, attempts, completed,
 *                   retry, failed, incident, unanswered, late_answers}},
 *                   final_errors: {action: {message: n}}, outbox_lines}
 *   calls           {call: {service or team: {ok | FLOW_E..: n}}}
 *   messages, refusal_examples, timers, transitions {total, by_cause},
 *   notifications, unexpected_errors {count, first}, and unless
 *   --no-timings run {day_seconds, history_seconds,
 *   transitions_per_second, peak_rss_kib}
 * Counts of things done (calls, notes, tasks, actions) are of 07:00 to
 * 19:00; states and service levels are of every case at 19:00.
 *
 * Exit status: 0 the day ran with no error the host did not expect; 1 it
 * ran, with unexpected errors (each on stderr, and counted in the report);
 * 2 usage; 3 it could not start (engine, services or data files).
 *
 * The outbox (--outbox FILE) gets one line per message sent: the JSON body
 * of GOV.UK Notify's POST /v2/notifications/sms (phone_number) or
 * /v2/notifications/email (email_address).  A sender process posts each
 * line to the endpoint its address field names.
 *
 * Data (--data DIR, examples/host/data): gazetteer.csv
 * (uprn,address,postcode,round), rounds.csv (round,crew: the crew that
 * serves each round) and notify_templates.csv (template,template_id).
 */
#define _POSIX_C_SOURCE 200809L /* <uv.h> needs POSIX declarations */

#include <flow.h>
#include <flow/uv.h>

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* flow_tasks_list and flow_incidents_list return at most this many, and
   there is no count or offset: a figure this big means "at least". */
#define LIST_MAX 1000

#define MINUTE_MS INT64_C(60000)
#define HOUR_MS (60 * MINUTE_MS)
#define DAY_MS (24 * HOUR_MS)

/* A refusal a call site expects, as a bit: EXPECT(FLOW_ECONFLICT). */
#define EXPECT(code) (1u << (unsigned)-(code))

/* ---- the services this host runs ---------------------------------------- */

enum { SVC_MISSED, SVC_BULKY, NSERVICES };

static const struct {
  const char *name; /* as the script names itself */
  const char *path; /* under --services */
} SERVICES[NSERVICES] = {
  { "missed_bin_report", "waste/missed_bin/missed_bin_report.lua" },
  { "bulky_waste_booking", "waste/bulky_waste/bulky_waste_booking.lua" },
};

/* ---- options ------------------------------------------------------------ */

typedef struct options {
  const char *services; /* directory the service scripts sit under */
  const char *data;     /* gazetteer.csv, rounds.csv, notify_templates.csv */
  const char *db;       /* the engine's database */
  const char *outbox;   /* Notify requests, one JSON line each; NULL: none */
  int year, month, mday;
  long reports, bookings, history_days;
  uint64_t seed;
  double decline_rate, timeout_rate;
  int json, timings, verbose;
} options;

/* ---- a seeded generator ------------------------------------------------- */

/* splitmix64: small, fast, and the same sequence on every platform. */
static uint64_t
mix64(uint64_t z)
{
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t
rng_next(uint64_t *s)
{
  *s += UINT64_C(0x9e3779b97f4a7c15);
  return mix64(*s);
}

/* A number in [0, 1). */
static double
rng_unit(uint64_t *s)
{
  return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static size_t
rng_below(uint64_t *s, size_t n)
{
  return n ? (size_t)(rng_next(s) % n) : 0;
}

static uint64_t
text_hash(const char *s)
{
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
  return h;
}

/*
 * A number in [0, 1) fixed by the seed, a text and a number: what the
 * payment provider decides for an attempt, whether a crew gets to a task.
 * It comes from the request's key or the task's id rather than from the
 * next draw, so it does not depend on the order the engine dispatches in.
 */
static double
fate(uint64_t seed, const char *text, uint64_t n)
{
  uint64_t h = mix64(text_hash(text) ^ mix64(seed) ^ mix64(n + 1));
  return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

/* A version-4-shaped UUID made from a text, into out (37 bytes): the
   same key, the same id. */
static void
uuid_of(char *out, uint64_t seed, const char *text)
{
  uint64_t a = mix64(text_hash(text) ^ mix64(seed ^ 101));
  uint64_t b = mix64(a ^ 202);
  snprintf(out,
           37,
           "%08" PRIx64 "-%04" PRIx64 "-4%03" PRIx64 "-%04" PRIx64
           "-%012" PRIx64,
           a >> 32,
           (a >> 16) & 0xffffu,
           a & 0xfffu,
           ((b >> 48) & 0x3fffu) | 0x8000u,
           b & UINT64_C(0xffffffffffff));
}

/* ---- time --------------------------------------------------------------- */

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t
days_from_civil(int y, int m, int d)
{
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* 0 Sunday ... 6 Saturday (1970-01-01 was a Thursday). */
static int
weekday(int64_t day)
{
  return (int)(((day + 4) % 7 + 7) % 7);
}

/* The last Sunday of a month, 01:00 UTC: when UK clocks change. */
static int64_t
last_sunday_0100(int y, int m)
{
  int64_t last =
    (m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1)) - 1;
  return (last - weekday(last)) * DAY_MS + HOUR_MS;
}

/* The UK's offset from UTC at utc: an hour in summer time.  The district
   works on London time, and so does the engine's calendar. */
static int64_t
london_offset(int64_t utc)
{
  int y = 1970 + (int)(utc / DAY_MS / 365);
  while (days_from_civil(y, 1, 1) * DAY_MS > utc)
    y--;
  while (days_from_civil(y + 1, 1, 1) * DAY_MS <= utc)
    y++;
  return utc >= last_sunday_0100(y, 3) && utc < last_sunday_0100(y, 10)
           ? HOUR_MS
           : 0;
}

/* UTC of a London time of day (minutes after midnight) on a day. */
static int64_t
local_to_utc(int64_t day, int minutes)
{
  int64_t local = day * DAY_MS + minutes * MINUTE_MS;
  int64_t summer = local - HOUR_MS;
  return london_offset(summer) == HOUR_MS ? summer : local;
}

/* The London day (days since the epoch) and minute of the day of utc. */
static int64_t
local_day(int64_t utc)
{
  return (utc + london_offset(utc)) / DAY_MS;
}

static int
local_minute(int64_t utc)
{
  return (int)(((utc + london_offset(utc)) % DAY_MS) / MINUTE_MS);
}

static void
local_hhmm(char out[8], int64_t utc)
{
  unsigned m = (unsigned)local_minute(utc) % (24 * 60);
  snprintf(out, 8, "%02u:%02u", m / 60, m % 60);
}

/* "YYYY-MM-DD" of a day. */
static void
day_text(char out[11], int64_t day)
{
  char buf[32] = "0000-00-00";
  (void)flow_time_format(buf, sizeof buf, day * DAY_MS); /* cannot fail:
                                                            buf is 32 */
  memcpy(out, buf, 10);
  out[10] = 0;
}

/* ---- data files --------------------------------------------------------- */

/* Splits one CSV line (RFC 4180 quoting, no line breaks inside fields)
   into at most max fields, in place.  Returns the number, -1 if bad. */
static int
csv_split(char *line, char **field, int max)
{
  int n = 0;
  char *p = line;

  line[strcspn(line, "\r\n")] = 0;
  while (n < max) {
    field[n++] = p;
    if (*p == '"') {
      char *out = p, *q = p + 1;
      for (;;) {
        if (*q == 0)
          return -1; /* unterminated quote */
        if (q[0] == '"' && q[1] == '"') {
          *out++ = '"';
          q += 2;
        } else if (*q == '"') {
          q++;
          break;
        } else {
          *out++ = *q++;
        }
      }
      if (*q != ',' && *q != 0)
        return -1;
      int last = *q == 0;
      *out = 0;
      if (last)
        return n;
      p = q + 1;
    } else {
      char *comma = strchr(p, ',');
      if (comma == NULL)
        return n;
      *comma = 0;
      p = comma + 1;
    }
  }
  return n;
}

/* Reads a CSV file with a header line, calling row() for each other line
   (blank lines and lines starting with # are skipped).  Errors name the
   file and line. */
static int
csv_read(const char *path,
         const char *header,
         int nfields,
         int (*row)(void *ctx, char **field),
         void *ctx)
{
  FILE *f = fopen(path, "r");
  char line[1024];
  int lineno = 0, rc = 0;

  if (f == NULL) {
    fprintf(stderr, "vendor_day: cannot read %s: %s\n", path, strerror(errno));
    return -1;
  }
  while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
    char *field[8];
    lineno++;
    if (lineno == 1) {
      line[strcspn(line, "\r\n")] = 0;
      if (strcmp(line, header) != 0) {
        fprintf(
          stderr, "vendor_day: %s:1: the header should be %s\n", path, header);
        rc = -1;
      }
      continue;
    }
    if (line[0] == '\n' || line[0] == '\r' || line[0] == '#')
      continue;
    if (csv_split(line, field, 8) != nfields || row(ctx, field) != 0) {
      fprintf(stderr, "vendor_day: %s:%d: expected %s\n", path, lineno, header);
      rc = -1;
    }
  }
  fclose(f);
  return rc;
}

static int
all_digits(const char *s)
{
  if (*s == 0)
    return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s))
      return 0;
  return 1;
}

typedef struct address {
  char uprn[16];
  char text[160]; /* "12 High Street, Hollinbrook" */
  char postcode[12];
  char round[16];
} address;

typedef struct gazetteer {
  address *v;
  size_t n, cap;
} gazetteer;

static int
gazetteer_row(void *ctx, char **f)
{
  gazetteer *g = ctx;
  if (!all_digits(f[0]) || strlen(f[0]) > 12 || f[1][0] == 0 ||
      strlen(f[1]) >= sizeof g->v->text ||
      strlen(f[2]) >= sizeof g->v->postcode ||
      strlen(f[3]) >= sizeof g->v->round)
    return -1;
  if (g->n == g->cap) {
    size_t cap = g->cap ? 2 * g->cap : 256;
    address *v = realloc(g->v, cap * sizeof *v);
    if (v == NULL)
      return -1;
    g->v = v;
    g->cap = cap;
  }
  address *a = &g->v[g->n++];
  snprintf(a->uprn, sizeof a->uprn, "%s", f[0]);
  snprintf(a->text, sizeof a->text, "%s", f[1]);
  snprintf(a->postcode, sizeof a->postcode, "%s", f[2]);
  snprintf(a->round, sizeof a->round, "%s", f[3]);
  return 0;
}

static int
by_uprn(const void *a, const void *b)
{
  return strcmp(((const address *)a)->uprn, ((const address *)b)->uprn);
}

static const address *
gazetteer_find(const gazetteer *g, const char *uprn)
{
  address key;
  if (uprn == NULL || strlen(uprn) >= sizeof key.uprn)
    return NULL;
  snprintf(key.uprn, sizeof key.uprn, "%s", uprn);
  return bsearch(&key, g->v, g->n, sizeof *g->v, by_uprn);
}

/* Two columns of names: rounds (round -> crew) and templates (name ->
   Notify template id). */
typedef struct pairs {
  char (*key)[64];
  char (*value)[64];
  size_t n, cap;
  int uuid_values; /* the values must be UUIDs */
} pairs;

static int
pairs_row(void *ctx, char **f)
{
  pairs *p = ctx;
  if (f[0][0] == 0 || f[1][0] == 0 || strlen(f[0]) >= 64 ||
      strlen(f[1]) >= 64 || (p->uuid_values && strlen(f[1]) != 36))
    return -1;
  for (size_t i = 0; i < p->n; i++)
    if (strcmp(p->key[i], f[0]) == 0)
      return -1; /* listed twice */
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 32;
    void *k = realloc(p->key, cap * sizeof *p->key);
    if (k == NULL)
      return -1;
    p->key = k;
    void *v = realloc(p->value, cap * sizeof *p->value);
    if (v == NULL)
      return -1;
    p->value = v;
    p->cap = cap;
  }
  snprintf(p->key[p->n], 64, "%s", f[0]);
  snprintf(p->value[p->n], 64, "%s", f[1]);
  p->n++;
  return 0;
}

static const char *
pairs_get(const pairs *p, const char *key)
{
  for (size_t i = 0; key && i < p->n; i++)
    if (strcmp(p->key[i], key) == 0)
      return p->value[i];
  return NULL;
}

/* ---- a set of strings --------------------------------------------------- */

/* Open addressing: the request keys Notify was given, the tasks nobody
   gets to.  Grows, never shrinks. */
typedef struct strset {
  char **slot;
  size_t cap, n;
} strset;

static int
strset_has(const strset *s, const char *key)
{
  if (s->cap == 0)
    return 0;
  for (size_t i = text_hash(key) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (s->slot[i] == NULL)
      return 0;
    if (strcmp(s->slot[i], key) == 0)
      return 1;
  }
}

/* 1 when added, 0 when there already, -1 out of memory. */
static int
strset_add(strset *s, const char *key)
{
  if (strset_has(s, key))
    return 0;
  if (2 * (s->n + 1) > s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 1024;
    char **slot = calloc(cap, sizeof *slot);
    if (slot == NULL)
      return -1;
    for (size_t j = 0; j < s->cap; j++) {
      if (s->slot[j] == NULL)
        continue;
      size_t i = text_hash(s->slot[j]) & (cap - 1);
      while (slot[i] != NULL)
        i = (i + 1) & (cap - 1);
      slot[i] = s->slot[j];
    }
    free(s->slot);
    s->slot = slot;
    s->cap = cap;
  }
  char *copy = strdup(key);
  if (copy == NULL)
    return -1;
  size_t i = text_hash(key) & (s->cap - 1);
  while (s->slot[i] != NULL)
    i = (i + 1) & (s->cap - 1);
  s->slot[i] = copy;
  s->n++;
  return 1;
}

static void
strset_free(strset *s)
{
  for (size_t i = 0; i < s->cap; i++)
    free(s->slot[i]);
  free(s->slot);
}

/* ---- the day's state ---------------------------------------------------- */

/* A person in a team. */
typedef struct worker {
  char id[64];
  int64_t free_at; /* busy with what they claimed until then */
} worker;

typedef struct team {
  char name[48];
  const char *role;
  worker *people;
  size_t npeople;
  int opens, closes;    /* shift, minutes after midnight, working days */
  int batch;            /* tasks a person takes on at a time */
  int job_min, job_max; /* minutes a task takes */
  int64_t next_round;
} team;

/* A claimed task a person will complete at a time. */
typedef struct job {
  char task[24];
  char case_id[24];
  char name[48];
  int team, worker;
  int64_t at;
  json_t *form;
} job;

/* What someone outside the engine does at a time: the payment provider's
   late answer or notice, a resident's next step on a booking. */
typedef enum deed {
  DO_COMPLETE,      /* answer request id with text */
  DO_NOTICE,        /* send payment_notice for payment id, text payload */
  DO_CHOOSE_SLOT,   /* the resident picks one of the offered dates */
  DO_RETRY_PAYMENT, /* ... tries to pay again */
  DO_FIND_SLOTS,    /* ... asks for other dates */
  DO_CANCEL         /* ... cancels the booking */
} deed;

typedef struct item {
  int64_t at;
  deed what;
  char id[48];     /* request, payment or case id */
  char action[32]; /* for DO_COMPLETE */
  char *text;
  struct item *next;
} item;

/* One arrival from the public. */
typedef struct arrival {
  int64_t at;
  int service;
  size_t n; /* its number among the arrivals of its service and day */
} arrival;

typedef struct replay {
  options o;
  flow_engine *e;
  uv_loop_t loop;
  gazetteer gaz;
  pairs rounds;    /* round -> crew */
  pairs templates; /* template name -> Notify template id */
  FILE *outbox;
  uint64_t rng;       /* arrivals, and what they hold */
  int64_t first;      /* 07:00 of the first day of history, UTC ms */
  int64_t start, end; /* 07:00 and 19:00 of the day replayed */
  int64_t now;
  int today; /* the clock is in the day replayed */

  arrival *arrivals;
  size_t narrivals, next_arrival;
  int64_t base_day;        /* the first day of history, for booked[] */
  int booked[64];          /* collections booked per day from base_day */
  signed char workday[64]; /* 1 working day, -1 not, 0 not asked yet */
  int capacity;            /* collections per working day */

  team *teams;
  size_t nteams;
  worker supervisors[2];
  int64_t next_supervision;
  job *jobs;
  size_t njobs, capjobs;
  strset left_alone; /* tasks nobody will get to */
  strset notified;   /* request keys Notify has been given */
  item *agenda;      /* in order of time, then of adding */

  /* What happened, counted as JSON objects, so that the text and --json
     reports print the same figures.  Reset when the day replayed starts. */
  json_t *calls;     /* {call: {service or team: {ok | FLOW_E..: n}}} */
  json_t *messages;  /* {message: {status: n}} */
  json_t *notes;     /* notifications by type */
  json_t *opened;    /* by service */
  json_t *closed;    /* {service: {state: n}} */
  json_t *by_cause;  /* transitions by cause */
  json_t *timers;    /* by kind */
  json_t *tasks;     /* {team: {created | claimed | completed ...: n}} */
  json_t *incidents; /* {source: {error: n}} */
  json_t *incident_examples; /* {source: {error: first message}} */
  json_t *actions;       /* {action: {requested | attempts | completed ...}} */
  json_t *action_errors; /* {action: {message: n}}: final failures */
  json_t *sla;           /* warnings and breaches told, by service */
  json_t *refusals;      /* {FLOW_E..: first message} */
  json_t *carried;       /* open cases at 07:00, by service */
  json_t *carried_tasks; /* open or claimed tasks at 07:00, by team */
  json_t *unexpected;    /* the first messages of unexpected errors */
  long nunexpected;      /* never reset: the exit status */
  long transitions;      /* openings and transitions the engine told of */
  long outbox_lines;
  int64_t async_pending; /* calls queued whose callback has not run */
} replay;

/* ---- counting ----------------------------------------------------------- */

/* Adds by to the integer at root[k1][k2][k3] (k2, k3 may be NULL). */
static void
bump(json_t *root,
     json_int_t by,
     const char *k1,
     const char *k2,
     const char *k3)
{
  const char *key[3] = { k1, k2, k3 };
  int depth = k3 ? 3 : k2 ? 2 : 1;
  json_t *o = root;

  for (int i = 0; i < depth - 1; i++) {
    json_t *c = json_object_get(o, key[i]);
    if (c == NULL) {
      c = json_object();
      if (c == NULL || json_object_set_new(o, key[i], c) != 0)
        return;
    }
    o = c;
  }
  json_t *v = json_object_get(o, key[depth - 1]);
  if (v != NULL)
    json_integer_set(v, json_integer_value(v) + by);
  else
    json_object_set_new(o, key[depth - 1], json_integer(by));
}

static json_int_t
count_of(json_t *root, const char *k1, const char *k2, const char *k3)
{
  json_t *v = json_object_get(root, k1);
  if (k2)
    v = json_object_get(v, k2);
  if (k3)
    v = json_object_get(v, k3);
  return json_integer_value(v);
}

/* An error the host did not expect: printed at once, kept for the report,
   and the exit status says so. */
static void
unexpected(replay *d, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  d->nunexpected++;
  if (d->nunexpected <= 50)
    fprintf(stderr, "vendor_day: unexpected: %s\n", msg);
  else if (d->nunexpected == 51)
    fprintf(stderr, "vendor_day: more unexpected errors: only counted\n");
  if (json_array_size(d->unexpected) < 20)
    json_array_append_new(d->unexpected, json_string(msg));
}

/* A refusal the host expected (bad input from the public, a late answer,
   a race between two people): its first message is kept as an example. */
static void
refused(replay *d, int rc, const char *msg)
{
  const char *name = flow_err_name(rc);
  if (json_object_get(d->refusals, name) == NULL)
    json_object_set_new(d->refusals, name, json_string(msg));
}

/* The result of a call the host made: counted under call/where, and
   judged: 0, or a refusal in expect, or unexpected. */
static void
judge(replay *d,
      int rc,
      unsigned expect,
      const char *call,
      const char *where,
      const char *what)
{
  bump(d->calls, 1, call, where, rc ? flow_err_name(rc) : "ok");
  if (rc == 0)
    return;
  if (rc < 0 && rc >= -31 && (expect & EXPECT(rc)))
    refused(d, rc, flow_errmsg(d->e));
  else
    unexpected(d,
               "%s %s (%s): %s (%s)",
               call,
               where,
               what,
               flow_errmsg(d->e),
               flow_err_name(rc));
}

static const char *
jstr(json_t *o, const char *key)
{
  return json_string_value(json_object_get(o, key));
}

static json_t *
counters_new(void)
{
  json_t *o = json_object();
  if (o == NULL) {
    fprintf(stderr, "vendor_day: out of memory\n");
    exit(3);
  }
  return o;
}

/* ---- the engine's calendar ---------------------------------------------- */

/*
 * Whether a day is a working day on the engine's calendar (weekends, bank
 * holidays, closure days the host gave flow_engine_set_calendar): the
 * crews and the round planner work those.  The C API has no call for it,
 * so the host asks the sandbox's flow.is_working_day through flow_eval,
 * once a day, rather than keep a second holiday list that could disagree.
 */
static int
working_day(replay *d, int64_t day)
{
  int64_t i = day - d->base_day;
  int cached = i >= 0 && i < (int64_t)(sizeof d->workday / sizeof *d->workday);
  if (cached && d->workday[i] != 0)
    return d->workday[i] > 0;

  char date[11], code[64], *out = NULL;
  day_text(date, day);
  snprintf(code, sizeof code, "return flow.is_working_day(\"%s\")", date);
  int rc = flow_eval(&out, d->e, code, strlen(code), "working_day");
  int yes;
  if (rc == 0 && (strcmp(out, "true") == 0 || strcmp(out, "false") == 0)) {
    yes = strcmp(out, "true") == 0;
  } else {
    unexpected(d,
               "asking the calendar about %s: %s (%s)",
               date,
               rc ? flow_errmsg(d->e) : out,
               flow_err_name(rc));
    yes = weekday(day) != 0 && weekday(day) != 6;
  }
  flow_free(out);
  if (cached)
    d->workday[i] = yes ? 1 : -1;
  return yes;
}

/* ---- the agenda --------------------------------------------------------- */

static int
agenda_add(replay *d,
           int64_t at,
           deed what,
           const char *id,
           const char *action,
           const char *text)
{
  item *it = calloc(1, sizeof *it);
  if (it == NULL || (text && (it->text = strdup(text)) == NULL)) {
    free(it);
    unexpected(d, "out of memory keeping what to do at a later time");
    return -1;
  }
  it->at = at;
  it->what = what;
  snprintf(it->id, sizeof it->id, "%s", id);
  snprintf(it->action, sizeof it->action, "%s", action ? action : "");
  /* After everything due at the same time, so ticks act in a fixed
     order. */
  item **p = &d->agenda;
  while (*p && (*p)->at <= at)
    p = &(*p)->next;
  it->next = *p;
  *p = it;
  return 0;
}

/* ---- teams and people --------------------------------------------------- */

/* Who works in a team, when, and how fast.  The engine records who
   claimed and who completed; which people are in which team is the
   host's business. */
static int
team_add(replay *d,
         const char *name,
         const char *prefix,
         const char *role,
         int people,
         int opens,
         int closes,
         int batch,
         int job_min,
         int job_max)
{
  team *v = realloc(d->teams, (d->nteams + 1) * sizeof *v);
  if (v == NULL)
    return -1;
  d->teams = v;
  team *t = &d->teams[d->nteams];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->role = role;
  t->people = calloc((size_t)people, sizeof *t->people);
  if (t->people == NULL)
    return -1;
  t->npeople = (size_t)people;
  for (int i = 0; i < people; i++)
    snprintf(
      t->people[i].id, sizeof t->people[i].id, "%.36s.%d", prefix, i + 1);
  t->opens = opens;
  t->closes = closes;
  t->batch = batch;
  t->job_min = job_min;
  t->job_max = job_max;
  return (int)d->nteams++;
}

static int
team_find(replay *d, const char *name)
{
  for (size_t i = 0; i < d->nteams; i++)
    if (strcmp(d->teams[i].name, name) == 0)
      return (int)i;
  return -1;
}

static int
teams_create(replay *d)
{
  /* A crew per round (from rounds.csv) for missed bins, the bulky-waste
     crews, the waste office and the payments team. */
  for (size_t i = 0; i < d->rounds.n; i++)
    if (team_find(d, d->rounds.value[i]) < 0 && team_add(d,
                                                         d->rounds.value[i],
                                                         d->rounds.value[i],
                                                         "crew",
                                                         3,
                                                         7 * 60,
                                                         15 * 60,
                                                         3,
                                                         3,
                                                         12) < 0)
      return -1;
  if (team_add(d, "crews", "bulky", "crew", 4, 7 * 60, 15 * 60, 1, 20, 45) <
        0 ||
      team_add(
        d, "waste_office", "office", "office", 3, 9 * 60, 17 * 60, 2, 5, 15) <
        0 ||
      team_add(
        d, "payments", "payments", "payments", 2, 9 * 60, 17 * 60, 1, 5, 10) <
        0)
    return -1;
  snprintf(d->supervisors[0].id, sizeof d->supervisors[0].id, "supervisor.1");
  snprintf(d->supervisors[1].id, sizeof d->supervisors[1].id, "supervisor.2");
  return 0;
}

static flow_actor
team_member(const replay *d, int tm, size_t w, const char **roles)
{
  roles[0] = d->teams[tm].role;
  flow_actor a = { d->teams[tm].people[w].id, roles, 1 };
  return a;
}

/* ---- the engine's notifications ----------------------------------------- */

/* A message with its long numbers (UPRNs, ids) written as N, so that the
   same failure for different properties is counted as one kind. */
static void
generalise(char *out, size_t len, const char *msg)
{
  size_t o = 0;
  for (const char *p = msg; *p && o + 1 < len;) {
    size_t digits = strspn(p, "0123456789");
    if (digits >= 5) {
      out[o++] = 'N';
      p += digits;
    } else if (digits > 0) {
      for (size_t i = 0; i < digits && o + 1 < len; i++)
        out[o++] = *p++;
    } else {
      out[o++] = *p++;
    }
  }
  out[o] = 0;
}

static int
service_index(const char *name)
{
  for (int i = 0; name && i < NSERVICES; i++)
    if (strcmp(SERVICES[i].name, name) == 0)
      return i;
  return -1;
}

/* A booking arrived in a state where the resident has something to do:
   plan when (and whether) they do it. */
static void
resident_next_step(replay *d, const char *case_id, const char *state, int seq)
{
  double f = fate(d->o.seed, case_id, 500 + (uint64_t)seq);
  int64_t minutes = 2 + (int64_t)(fate(d->o.seed, case_id, 600 + seq) * 25);

  if (strcmp(state, "choosing_slot") == 0) {
    if (f < 0.96)
      agenda_add(
        d, d->now + minutes * MINUTE_MS, DO_CHOOSE_SLOT, case_id, NULL, NULL);
  } else if (strcmp(state, "payment_problem") == 0) {
    if (f < 0.55)
      agenda_add(
        d, d->now + minutes * MINUTE_MS, DO_RETRY_PAYMENT, case_id, NULL, NULL);
    else if (f < 0.65)
      agenda_add(
        d, d->now + minutes * MINUTE_MS, DO_FIND_SLOTS, case_id, NULL, NULL);
    /* The rest give up: the booking lapses after a day. */
  } else if (strcmp(state, "booked") == 0) {
    if (f < 0.05)
      agenda_add(d,
                 d->now + (30 + minutes * 20) * MINUTE_MS,
                 DO_CANCEL,
                 case_id,
                 NULL,
                 NULL);
  }
}

/* Subscriber: counts what the engine did and plans the residents' next
   steps.  Short, as loop.h asks: the loop waits while it runs. */
static void
on_note(flow_engine *engine, const char *event_json, void *payload)
{
  replay *d = payload;
  json_error_t jerr;
  json_t *n = json_loads(event_json, 0, &jerr);
  (void)engine;

  if (n == NULL) {
    unexpected(
      d, "a notification is not JSON (%s): %.200s", jerr.text, event_json);
    return;
  }
  const char *type = jstr(n, "type");
  if (type == NULL) {
    unexpected(d, "a notification has no type: %.200s", event_json);
    json_decref(n);
    return;
  }
  const char *svc = jstr(n, "service") ? jstr(n, "service") : "?";
  bump(d->notes, 1, type, NULL, NULL);

  if (strcmp(type, "opened") == 0 || strcmp(type, "transition") == 0) {
    d->transitions++;
    if (type[0] == 'o')
      bump(d->opened, 1, svc, NULL, NULL);
    else
      bump(
        d->by_cause, 1, jstr(n, "cause") ? jstr(n, "cause") : "?", NULL, NULL);
    if (service_index(svc) == SVC_BULKY && jstr(n, "case") && jstr(n, "to"))
      resident_next_step(d,
                         jstr(n, "case"),
                         jstr(n, "to"),
                         (int)json_integer_value(json_object_get(n, "seq")));
  } else if (strcmp(type, "closed") == 0) {
    bump(d->closed, 1, svc, jstr(n, "state") ? jstr(n, "state") : "?", NULL);
  } else if (strcmp(type, "timer") == 0) {
    bump(d->timers, 1, jstr(n, "kind") ? jstr(n, "kind") : "?", NULL, NULL);
  } else if (strncmp(type, "task_", 5) == 0) {
    const char *tm = jstr(n, "team") ? jstr(n, "team") : "(a person)";
    bump(d->tasks, 1, tm, type + 5, NULL);
    if (strcmp(type, "task_created") == 0 && jstr(n, "team") &&
        team_find(d, tm) < 0)
      unexpected(d,
                 "a task for team '%s', which this host has nobody in "
                 "(task %s)",
                 tm,
                 jstr(n, "task") ? jstr(n, "task") : "?");
  } else if (strcmp(type, "incident") == 0 && jstr(n, "incident") == NULL) {
    /* An action that failed for good with no fail event is told twice:
       in the shape loop.h gives incidents (below), and again in the shape
       of the action notes (request, attempts, and the message as
       "error").  Counted once, from the first. */
  } else if (strcmp(type, "incident") == 0) {
    const char *src = jstr(n, "source") ? jstr(n, "source") : "?";
    const char *err = jstr(n, "error") ? jstr(n, "error") : "?";
    const char *msg = jstr(n, "message") ? jstr(n, "message") : "";
    bump(d->incidents, 1, src, err, NULL);
    json_t *eg = json_object_get(d->incident_examples, src);
    if (eg == NULL) {
      eg = json_object();
      json_object_set_new(d->incident_examples, src, eg);
    }
    if (eg && json_object_get(eg, err) == NULL)
      json_object_set_new(eg, err, json_string(msg));
    if (jstr(n, "action"))
      bump(d->actions, 1, jstr(n, "action"), "incident", NULL);
    if (d->o.verbose)
      fprintf(stderr,
              "vendor_day: incident on case %s: %s\n",
              jstr(n, "case") ? jstr(n, "case") : "?",
              msg);
    /* A script that throws, runs out of budget or writes bad data is a
       fault whatever the event; a case that no longer takes an answer,
       or a message that could not be sent, is the day's business. */
    if (strcmp(err, "FLOW_ESCRIPT") == 0 || strcmp(err, "FLOW_ELIMIT") == 0 ||
        strcmp(err, "FLOW_ESTATE") == 0 || strcmp(err, "FLOW_EDATA") == 0)
      unexpected(d,
                 "incident on case %s (%s, %s): %s",
                 jstr(n, "case") ? jstr(n, "case") : "?",
                 src,
                 err,
                 msg);
  } else if (strncmp(type, "action_", 7) == 0) {
    const char *act = jstr(n, "action") ? jstr(n, "action") : "?";
    bump(d->actions, 1, act, type + 7, NULL);
    if (strcmp(type, "action_failed") == 0) {
      char kind[200];
      generalise(kind,
                 sizeof kind,
                 jstr(n, "error") ? jstr(n, "error") : "(no message)");
      bump(d->action_errors, 1, act, kind, NULL);
    }
  } else if (strcmp(type, "sla_warning") == 0 ||
             strcmp(type, "sla_breached") == 0) {
    /* These notes carry no service: the case's id says which. */
    char *c = NULL;
    const char *id = jstr(n, "case") ? jstr(n, "case") : "";
    json_t *cj = NULL;
    int rc = flow_case_get(&c, engine, id);
    if (rc == 0)
      cj = json_loads(c, 0, NULL);
    else
      judge(d, rc, 0, "get", "case", id);
    flow_free(c);
    bump(d->sla,
         1,
         jstr(cj, "service") ? jstr(cj, "service") : "?",
         type + 4,
         NULL);
    json_decref(cj);
  }
  json_decref(n);
}

/* The library never prints: its log lines come here. */
static void
on_log(flow_engine *engine, int level, const char *msg, void *payload)
{
  replay *d = payload;
  (void)engine;
  if (level >= FLOW_LOG_ERROR)
    unexpected(d, "engine log: %s", msg);
  else if (d->o.verbose)
    fprintf(stderr, "vendor_day: [log %d] %s\n", level, msg);
}

/* ---- actions: GOV.UK Notify --------------------------------------------- */

/* Notify texts UK mobile numbers only: 07... or +447..., 11 digits. */
static int
uk_mobile(const char *phone)
{
  char digits[24];
  size_t n = 0;
  for (const char *p = phone; *p && n < sizeof digits - 1; p++)
    if (isdigit((unsigned char)*p))
      digits[n++] = *p;
  digits[n] = 0;
  if (n == 12 && memcmp(digits, "447", 3) == 0)
    return 1;
  return n == 11 && digits[0] == '0' && digits[1] == '7';
}

/*
 * notify.sms and notify.email: the body of Notify's API request, one line
 * in the outbox, and a result with the notification's id.  Notify refuses
 * some itself (a landline given for a text: final) and now and then says
 * it is busy (429: worth retrying).
 */
static void
notify_send(flow_engine *e, const flow_request *req, replay *d, int sms)
{
  json_t *args = json_loads(req->args_json, 0, NULL);
  json_t *body = NULL;
  char *line = NULL;
  char id[37], result[320];
  int rc;

  bump(d->actions, 1, req->action, "attempts", NULL);
  const char *to = jstr(args, sms ? "to" : "email_address");
  const char *tname = jstr(args, "template");
  const char *tid = pairs_get(&d->templates, tname);
  const char *reference = jstr(args, "reference");
  if (reference == NULL)
    reference = req->key; /* Notify's reference is ours to choose */

  if (tid == NULL) {
    /* The host's mistake, not Notify's: the map lacks the template the
       script names.  Final, and flagged. */
    char msg[160];
    snprintf(msg,
             sizeof msg,
             "no Notify template id for '%.60s' in notify_templates.csv",
             tname ? tname : "(none given)");
    unexpected(d, "%s for case %s: %s", req->action, req->case_id, msg);
    rc = flow_action_fail(e, req->id, 0, msg);
    goto answered;
  }
  if (to == NULL || (sms ? !uk_mobile(to) : strchr(to, '@') == NULL)) {
    rc = flow_action_fail(e,
                          req->id,
                          0,
                          sms ? "400 BadRequestError: Not a UK mobile number"
                              : "400 BadRequestError: Not a valid email "
                                "address");
    goto answered;
  }
  if (fate(d->o.seed, req->key, (uint64_t)req->attempt) < 0.01) {
    rc = flow_action_fail(e,
                          req->id,
                          1,
                          "429 RateLimitError: Exceeded rate limit for key "
                          "type LIVE of 3000 requests per 60 seconds");
    goto answered;
  }

  /* The key is the same at every attempt and after a restart: a message
     Notify has taken is not sent twice, and keeps its id. */
  uuid_of(id, d->o.seed, req->key);
  int fresh = strset_add(&d->notified, req->key);
  if (fresh < 0) {
    rc = flow_action_fail(e, req->id, 1, "out of memory");
    goto answered;
  }
  if (fresh) {
    json_t *pers = json_object_get(args, "personalisation");
    body = json_pack("{s:s, s:s, s:s, s:o}",
                     sms ? "phone_number" : "email_address",
                     to,
                     "template_id",
                     tid,
                     "reference",
                     reference,
                     "personalisation",
                     json_is_object(pers) ? json_incref(pers) : json_object());
    line = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (line == NULL) {
      rc = flow_action_fail(e, req->id, 1, "out of memory");
      goto answered;
    }
    if (d->outbox && fprintf(d->outbox, "%s\n", line) < 0) {
      rc = flow_action_fail(e, req->id, 1, "cannot write the outbox");
      goto answered;
    }
    d->outbox_lines++;
  } else {
    bump(d->actions, 1, req->action, "not_sent_twice", NULL);
  }
  snprintf(result,
           sizeof result,
           "{\"id\":\"%s\",\"reference\":\"%.100s\",\"template\":{\"id\":"
           "\"%s\",\"version\":1}}",
           id,
           reference,
           tid);
  rc = flow_action_complete(e, req->id, result);
answered:
  if (rc != 0)
    unexpected(d,
               "%s: answering request %s: %s (%s)",
               req->action,
               req->id,
               flow_errmsg(e),
               flow_err_name(rc));
  free(line);
  json_decref(body);
  json_decref(args);
}

static void
notify_sms(flow_engine *e, const flow_request *req, void *payload)
{
  notify_send(e, req, payload, 1);
}

static void
notify_email(flow_engine *e, const flow_request *req, void *payload)
{
  notify_send(e, req, payload, 0);
}

/* ---- actions: the gazetteer and the round planner ----------------------- */

/* The address system is down for maintenance from 12:30 to 12:50 on the
   day replayed: lookups fail and are retried, and some end with the
   office. */
static int
address_system_down(const replay *d)
{
  int m = local_minute(d->now);
  return d->today && m >= 12 * 60 + 30 && m < 12 * 60 + 50;
}

/* address.lookup: { address, round, crew } from the gazetteer.  An unknown
   UPRN is a final failure, as the service asks; an outage is worth
   retrying; and now and then the system does not answer at all. */
static void
address_lookup(flow_engine *e, const flow_request *req, void *payload)
{
  replay *d = payload;
  json_t *args = json_loads(req->args_json, 0, NULL);
  const char *uprn = jstr(args, "uprn");
  const address *a = gazetteer_find(&d->gaz, uprn);
  int rc = 0;

  bump(d->actions, 1, req->action, "attempts", NULL);
  if (address_system_down(d)) {
    rc = flow_action_fail(e,
                          req->id,
                          1,
                          "503 Service Unavailable: the "
                          "address system is down for "
                          "maintenance");
  } else if (fate(d->o.seed, req->key, (uint64_t)req->attempt) < 0.005) {
    bump(d->actions, 1, req->action, "unanswered", NULL);
  } else if (a == NULL) {
    char msg[96];
    snprintf(
      msg, sizeof msg, "no property with UPRN %.20s", uprn ? uprn : "(none)");
    rc = flow_action_fail(e, req->id, 0, msg);
  } else {
    const char *crew = pairs_get(&d->rounds, a->round);
    json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:s?}",
                          "uprn",
                          a->uprn,
                          "address",
                          a->text,
                          "postcode",
                          a->postcode,
                          "round",
                          a->round,
                          "crew",
                          crew);
    char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
    rc = text ? flow_action_complete(e, req->id, text)
              : flow_action_fail(e, req->id, 1, "out of memory");
    free(text);
    json_decref(r);
  }
  if (rc != 0)
    unexpected(d,
               "address.lookup: answering request %s: %s (%s)",
               req->id,
               flow_errmsg(e),
               flow_err_name(rc));
  json_decref(args);
}

/* bulky.slots: up to three working days from the day after tomorrow with
   room on the crews' schedule.  Little Tarrant's lanes are closed for
   resurfacing, so it gets none. */
static void
bulky_slots(flow_engine *e, const flow_request *req, void *payload)
{
  replay *d = payload;
  json_t *args = json_loads(req->args_json, 0, NULL);
  const char *postcode = jstr(args, "postcode");
  json_t *slots = json_array();
  int rc = 0;

  bump(d->actions, 1, req->action, "attempts", NULL);
  if (fate(d->o.seed, req->key, (uint64_t)req->attempt) < 0.01) {
    bump(d->actions, 1, req->action, "unanswered", NULL);
    goto done;
  }
  if (postcode == NULL || strncmp(postcode, "HB4", 3) != 0) {
    int64_t today = local_day(d->now);
    int ahead = 0;
    for (int64_t day = today + 1;
         day < today + 30 && json_array_size(slots) < 3;
         day++) {
      if (!working_day(d, day) || ++ahead < 2)
        continue;
      int64_t i = day - d->base_day;
      if (i < 0 || i >= (int64_t)(sizeof d->booked / sizeof *d->booked) ||
          d->booked[i] < d->capacity) {
        char text[11];
        day_text(text, day);
        json_array_append_new(slots, json_string(text));
      }
    }
  }
  json_t *r = json_pack("{s:O}", "slots", slots);
  char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
  rc = text ? flow_action_complete(e, req->id, text)
            : flow_action_fail(e, req->id, 1, "out of memory");
  free(text);
  json_decref(r);
done:
  if (rc != 0)
    unexpected(d,
               "bulky.slots: answering request %s: %s (%s)",
               req->id,
               flow_errmsg(e),
               flow_err_name(rc));
  json_decref(slots);
  json_decref(args);
}

/* ---- actions: payments -------------------------------------------------- */

/* An answer given from a uv timer: after the handler returned, in a loop
   round of its own, so it is applied by itself rather than with the
   round's other answers. */
typedef struct soon {
  uv_timer_t timer;
  replay *d;
  char request[24];
  char action[32];
  char *result;
} soon;

static void
soon_closed(uv_handle_t *h)
{
  soon *s = h->data;
  free(s->result);
  free(s);
}

/* Answers request id with result, now; a late answer (the attempt timed
   out meanwhile) is refused with FLOW_ECONFLICT and changes nothing. */
static void
answer(replay *d, const char *action, const char *id, const char *result)
{
  int rc = flow_action_complete(d->e, id, result);
  if (rc == FLOW_ECONFLICT) {
    bump(d->actions, 1, action, "late_answers", NULL);
    refused(d, rc, flow_errmsg(d->e));
  } else if (rc != 0) {
    unexpected(d,
               "%s: answering request %s: %s (%s)",
               action,
               id,
               flow_errmsg(d->e),
               flow_err_name(rc));
  }
}

static void
soon_fire(uv_timer_t *h)
{
  soon *s = h->data;
  answer(s->d, s->action, s->request, s->result);
  uv_close((uv_handle_t *)&s->timer, soon_closed);
}

/* The card provider is down from 16:10 to 16:25 on the day replayed. */
static int
payments_down(const replay *d)
{
  int m = local_minute(d->now);
  return d->today && m >= 16 * 60 + 10 && m < 16 * 60 + 25;
}

/*
 * payments.take, in the answer shapes the booking service reads.  Each
 * attempt's fate comes from its key and number: declined, no answer at
 * all (the script's timeout counts the attempt as failed and it is tried
 * again), waiting for the resident's bank (pending, with the provider's
 * notice a few minutes later), or paid: at once, from a uv timer a moment
 * later, or from a later tick.
 */
static void
payments_take(flow_engine *e, const flow_request *req, void *payload)
{
  replay *d = payload;
  json_t *args = json_loads(req->args_json, 0, NULL);
  double f = fate(d->o.seed, req->key, (uint64_t)req->attempt);
  double when = fate(d->o.seed, req->key, 1000 + (uint64_t)req->attempt);
  char pid[48], result[320];
  int rc = 0;

  bump(d->actions, 1, req->action, "attempts", NULL);
  /* The provider's id for the payment: one per key, so an attempt made
     again is the same payment, never a second charge. */
  snprintf(pid, sizeof pid, "pay_");
  uuid_of(pid + 4, d->o.seed, req->key);
  pid[30] = 0;

  if (payments_down(d)) {
    rc = flow_action_fail(e, req->id, 1, "503 Service Unavailable");
  } else if (f < d->o.decline_rate) {
    snprintf(result,
             sizeof result,
             "{\"status\":\"declined\",\"reason\":\"The payment was "
             "declined by the card issuer (P0010)\"}");
    rc = flow_action_complete(e, req->id, result);
  } else if (f < d->o.decline_rate + d->o.timeout_rate) {
    bump(d->actions, 1, req->action, "unanswered", NULL);
  } else if (when < 0.05) {
    /* 3-D Secure: the resident is still with their bank.  The provider's
       notice comes later: mostly paid, sometimes declined, now and then
       never. */
    snprintf(result,
             sizeof result,
             "{\"status\":\"pending\",\"payment_id\":\"%s\"}",
             pid);
    rc = flow_action_complete(e, req->id, result);
    double g = fate(d->o.seed, req->key, 2000);
    if (rc == 0 && g < 0.97)
      agenda_add(d,
                 d->now + (2 + (int64_t)(g * 13)) * MINUTE_MS,
                 DO_NOTICE,
                 pid,
                 NULL,
                 g < 0.87 ? "{\"status\":\"success\"}"
                          : "{\"status\":\"declined\",\"reason\":\"3-D "
                            "Secure authentication failed\"}");
  } else {
    snprintf(result,
             sizeof result,
             "{\"status\":\"success\",\"payment_id\":\"%s\",\"amount\":"
             "%" JSON_INTEGER_FORMAT ",\"reference\":\"%.40s\"}",
             pid,
             json_integer_value(json_object_get(args, "amount")),
             jstr(args, "reference") ? jstr(args, "reference") : "");
    if (when < 0.65) {
      rc = flow_action_complete(e, req->id, result);
    } else if (when < 0.85) {
      soon *s = calloc(1, sizeof *s);
      if (s == NULL || (s->result = strdup(result)) == NULL) {
        free(s);
        rc = flow_action_fail(e, req->id, 1, "out of memory");
      } else {
        s->d = d;
        snprintf(s->request, sizeof s->request, "%s", req->id);
        snprintf(s->action, sizeof s->action, "%s", req->action);
        s->timer.data = s;
        if (uv_timer_init(&d->loop, &s->timer) != 0 ||
            uv_timer_start(&s->timer, soon_fire, 0, 0) != 0)
          unexpected(d, "cannot start a libuv timer");
      }
    } else {
      /* A minute later, within the script's timeout; one in ten three
         minutes later, after it, when the answer is too late. */
      int64_t minutes = when < 0.985 ? 1 : 3;
      agenda_add(d,
                 d->now + minutes * MINUTE_MS,
                 DO_COMPLETE,
                 req->id,
                 req->action,
                 result);
    }
  }
  if (rc != 0)
    unexpected(d,
               "payments.take: answering request %s: %s (%s)",
               req->id,
               flow_errmsg(e),
               flow_err_name(rc));
  json_decref(args);
}

/* payments.cancel: the provider forgets an unfinished payment. */
static void
payments_cancel(flow_engine *e, const flow_request *req, void *payload)
{
  replay *d = payload;
  bump(d->actions, 1, req->action, "attempts", NULL);
  int rc = flow_action_complete(e, req->id, "{\"status\":\"cancelled\"}");
  if (rc != 0)
    unexpected(d,
               "payments.cancel: answering request %s: %s (%s)",
               req->id,
               flow_errmsg(e),
               flow_err_name(rc));
}

/* payments.refund: mostly done; a payment the provider can no longer
   refund is a final failure, and the payments team does it by hand. */
static void
payments_refund(flow_engine *e, const flow_request *req, void *payload)
{
  replay *d = payload;
  char rid[48], result[128];
  int rc;

  bump(d->actions, 1, req->action, "attempts", NULL);
  if (fate(d->o.seed, req->key, 0) < 0.1) {
    rc = flow_action_fail(
      e, req->id, 0, "refund refused: the card has expired (P0420)");
  } else {
    snprintf(rid, sizeof rid, "rf_");
    uuid_of(rid + 3, d->o.seed, req->key);
    rid[29] = 0;
    snprintf(result,
             sizeof result,
             "{\"refund_id\":\"%s\",\"status\":\"success\"}",
             rid);
    rc = flow_action_complete(e, req->id, result);
  }
  if (rc != 0)
    unexpected(d,
               "payments.refund: answering request %s: %s (%s)",
               req->id,
               flow_errmsg(e),
               flow_err_name(rc));
}

/* ---- the public: reports and bookings ----------------------------------- */

/* What an asynchronous call's callback needs. */
typedef struct call_ctx {
  replay *d;
  int service;
  char what[32];    /* "open", or the event */
  unsigned expect;  /* refusals the host expects */
  char key[48];     /* a missed-bin report: its repeat key, uprn/bin */
  char *repeat;     /* ... and what it said, to send on as a repeat */
  char *data;       /* ... and the report itself */
  flow_actor actor; /* ... and who sent it (id is "website" or agent) */
  char actor_id[32];
  char case_id[24];
  const char *then; /* refused with FLOW_EREFUSED: send the event again
                       with this payload */
} call_ctx;

static call_ctx *call_new(replay *d,
                          int service,
                          const char *what,
                          unsigned expect);
static void queue_call(replay *d,
                       call_ctx *c,
                       const char *case_id,
                       const char *json,
                       const flow_actor *actor);

/*
 * A report refused because the bin has an open case: the host sends it to
 * that case as the message repeat_report, as the service asks.  Called
 * from the open's callback (the engine may be called from there).
 *
 * Between the refusal and the message the case may have closed (a close
 * applied later in the same group).  Then nobody holds the key, the
 * message is buffered, and the report would be lost when it expires: so
 * the host opens it as a case after all, which takes the buffered copy
 * as a repeat of itself.
 */
static void
send_repeat(replay *d, call_ctx *c)
{
  char *out = NULL;
  int rc = flow_message_send(
    &out, d->e, "repeat_report", c->key, c->repeat, 60 * 1000);
  if (rc != 0) {
    judge(d, rc, 0, "message", "repeat_report", c->key);
    return;
  }
  json_t *m = json_loads(out, 0, NULL);
  flow_free(out);
  const char *status = jstr(m, "status") ? jstr(m, "status") : "?";
  bump(d->messages, 1, "repeat_report", status, NULL);
  if (strcmp(status, "buffered") == 0)
    queue_call(d,
               call_new(d, SVC_MISSED, "open", EXPECT(FLOW_ECONFLICT)),
               NULL,
               c->data,
               &c->actor);
  json_decref(m);
}

static void
on_case(flow_engine *engine, int status, const char *case_json, void *payload)
{
  call_ctx *c = payload;
  replay *d = c->d;
  (void)engine;
  (void)case_json;

  d->async_pending--;
  judge(
    d, status, c->expect, c->what, SERVICES[c->service].name, "asynchronous");
  if (status == FLOW_ECONFLICT && c->repeat != NULL)
    send_repeat(d, c);
  if (status == FLOW_EREFUSED && c->then != NULL) {
    /* The resident read the refusal and answers it (it goes in the next
       group: a callback's calls do). */
    char who[64];
    const char *roles[] = { "resident" };
    snprintf(who, sizeof who, "resident.%s", c->case_id);
    flow_actor resident = { who, roles, 1 };
    queue_call(
      d,
      call_new(
        d, c->service, c->what, EXPECT(FLOW_EEVENT) | EXPECT(FLOW_ECLOSED)),
      c->case_id,
      c->then,
      &resident);
  }
  free(c->repeat);
  free(c->data);
  free(c);
}

static call_ctx *
call_new(replay *d, int service, const char *what, unsigned expect)
{
  call_ctx *c = calloc(1, sizeof *c);
  if (c == NULL) {
    unexpected(d, "out of memory queueing a call");
    return NULL;
  }
  c->d = d;
  c->service = service;
  snprintf(c->what, sizeof c->what, "%s", what);
  c->expect = expect;
  return c;
}

/* Queues an open (data given) or an event (case_id given). */
static void
queue_call(replay *d,
           call_ctx *c,
           const char *case_id,
           const char *json,
           const flow_actor *actor)
{
  int rc;
  if (c == NULL)
    return;
  if (case_id)
    snprintf(c->case_id, sizeof c->case_id, "%s", case_id);
  if (case_id == NULL)
    rc = flow_case_open_async(
      d->e, SERVICES[c->service].name, json, actor, on_case, c);
  else
    rc =
      flow_case_signal_async(d->e, case_id, c->what, json, actor, on_case, c);
  if (rc != 0) {
    judge(d, rc, 0, c->what, SERVICES[c->service].name, "queueing");
    free(c->repeat);
    free(c->data);
    free(c);
    return;
  }
  d->async_pending++;
}

/* Made-up but well-formed contacts: Ofcom's drama ranges and the reserved
   example domains, so no real person hears from a replay. */
static void
mobile_for(char out[20], uint64_t *r)
{
  snprintf(out, 20, "07700 900%03d", (int)rng_below(r, 1000));
}

static const char *const FIRST[] = { "Alex", "Sam",    "Priya",  "Tom",
                                     "Jo",   "Aisha",  "Gareth", "Mei",
                                     "Olu",  "Hannah", "Ravi",   "Kath" };
static const char *const LAST[] = { "Example", "Patel", "Jones", "Okafor",
                                    "Smith",   "Nowak", "Evans", "Khan",
                                    "Wright",  "Hughes" };

/* The round that went wrong on a day (a lorry broke down): most of the
   next morning's reports come from its streets. */
static const char *
failed_round(replay *d, int64_t dayno)
{
  char text[11];
  day_text(text, dayno);
  return d->rounds
    .key[(size_t)(fate(d->o.seed, text, 7) * (double)d->rounds.n)];
}

/* One missed-bin report, as the website or the contact centre sends it. */
static void
arrive_report(replay *d)
{
  static const char *const bins[] = { "refuse", "recycling", "garden", "food" };
  static const char *const notes[] = {
    "Bin was out by 7am",
    "The lorry went past without stopping",
    "Second time this month",
    "Bin is at the side gate as usual",
    "Assisted collection, please fetch it from the garden",
  };
  uint64_t *r = &d->rng;
  const char *bad = failed_round(d, local_day(d->now) - 1);
  const address *a = &d->gaz.v[rng_below(r, d->gaz.n)];
  char uprn[24], phone[20], email[64];

  /* Pick again until the address is on the round that went wrong, for
     four reports in ten. */
  if (rng_unit(r) < 0.4)
    for (int tries = 0; tries < 50 && strcmp(a->round, bad) != 0; tries++)
      a = &d->gaz.v[rng_below(r, d->gaz.n)];
  const char *bin = strcmp(a->round, bad) == 0 && rng_unit(r) < 0.7
                      ? "refuse"
                      : bins[rng_below(r, 4)];
  snprintf(uprn, sizeof uprn, "%s", a->uprn);
  double kind = rng_unit(r);
  if (kind < 0.01) /* a UPRN the gazetteer does not know */
    snprintf(uprn, sizeof uprn, "9%011u", (unsigned)rng_below(r, 1000000000));
  else if (kind < 0.015) /* the form let through something else */
    snprintf(
      uprn, sizeof uprn, "%u %s", (unsigned)rng_below(r, 120), "High St");

  double who = rng_unit(r);
  const char *by = who < 0.78   ? "resident"
                   : who < 0.96 ? "contact_centre"
                   : who < 0.98 ? "councillor"
                                : "crew";
  json_t *data =
    json_pack("{s:s, s:s, s:s}", "uprn", uprn, "bin", bin, "reported_by", by);
  if (data == NULL)
    return;
  double contact = rng_unit(r);
  if (contact < 0.43) {
    mobile_for(phone, r);
    json_object_set_new(data, "phone", json_string(phone));
  } else if (contact < 0.45) {
    /* A landline: valid for the case, but Notify will not text it. */
    snprintf(phone, sizeof phone, "01632 960%03d", (int)rng_below(r, 1000));
    json_object_set_new(data, "phone", json_string(phone));
  } else if (contact < 0.65) {
    snprintf(email,
             sizeof email,
             "%s.%s@example.org",
             FIRST[rng_below(r, 12)],
             LAST[rng_below(r, 10)]);
    json_object_set_new(data, "email", json_string(email));
  }
  if (rng_unit(r) < 0.3)
    json_object_set_new(data, "notes", json_string(notes[rng_below(r, 5)]));

  static const char *const roles[] = { "staff" };
  char agent[32];
  snprintf(
    agent, sizeof agent, "contact-centre.%u", (unsigned)rng_below(r, 6) + 1);
  flow_actor actor = { "website", NULL, 0 };
  if (strcmp(by, "contact_centre") == 0)
    actor = (flow_actor){ agent, roles, 1 };

  char *text = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
  /* What a repeat report carries: the report without the UPRN and bin,
     which its key says. */
  json_object_del(data, "uprn");
  json_object_del(data, "bin");
  char *repeat = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
  call_ctx *c = call_new(
    d, SVC_MISSED, "open", EXPECT(FLOW_ECONFLICT) | EXPECT(FLOW_EDATA));
  if (c && text && repeat && (c->data = strdup(text)) != NULL) {
    snprintf(c->key, sizeof c->key, "%s/%s", uprn, bin);
    c->repeat = repeat;
    repeat = NULL;
    snprintf(c->actor_id, sizeof c->actor_id, "%s", actor.id);
    c->actor = actor;
    c->actor.id = c->actor_id; /* roles point at a static string */
    queue_call(d, c, NULL, text, &actor);
  } else {
    free(c);
  }
  free(repeat);
  free(text);
  json_decref(data);
}

/* One bulky-waste booking from the website. */
static void
arrive_booking(replay *d)
{
  static const char *const items[] = {
    "sofa",     "armchair",       "mattress",         "bed_frame",
    "wardrobe", "fridge_freezer", "washing_machine",  "table",
    "chair",    "chair",          "chest_of_drawers", "carpet",
  };
  uint64_t *r = &d->rng;
  const address *a = &d->gaz.v[rng_below(r, d->gaz.n)];
  const char *first = FIRST[rng_below(r, 12)], *last = LAST[rng_below(r, 10)];
  char name[64], email[80], phone[20];

  snprintf(name, sizeof name, "%s %s", first, last);
  json_t *list = json_array();
  size_t n = 1 + rng_below(r, 3) + (rng_unit(r) < 0.3 ? rng_below(r, 4) : 0);
  for (size_t i = 0; i < n && i < 6; i++)
    json_array_append_new(list, json_string(items[rng_below(r, 12)]));
  double odd = rng_unit(r);
  if (odd < 0.01) /* not on the price list: the service refuses it */
    json_array_append_new(list, json_string("piano"));

  json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:o}",
                           "uprn",
                           a->uprn,
                           "address",
                           a->text,
                           "postcode",
                           a->postcode,
                           "name",
                           name,
                           "items",
                           list);
  if (data == NULL)
    return;
  double contact = rng_unit(r);
  if (odd >= 0.01 && odd < 0.02) {
    /* Neither an email address nor a phone: refused, nobody to tell. */
  } else if (contact < 0.7) {
    snprintf(email, sizeof email, "%s.%s@example.com", first, last);
    json_object_set_new(data, "email", json_string(email));
  } else {
    mobile_for(phone, r);
    json_object_set_new(data, "phone", json_string(phone));
  }
  const char *roles[] = { "resident" };
  flow_actor resident = { "website", roles, 1 };
  char *text = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
  if (text)
    queue_call(d,
               call_new(d, SVC_BULKY, "open", EXPECT(FLOW_EDATA)),
               NULL,
               text,
               &resident);
  free(text);
  json_decref(data);
}

/* When things arrive, by hour from 07:00: the morning after a missed
   round is the busy time for reports. */
static const int REPORT_WEIGHT[12] = { 3, 9, 13, 12, 10, 9, 9, 8, 8, 7, 6, 6 };
static const int BOOKING_WEIGHT[12] = { 2, 6, 9, 10, 10, 9, 10, 9, 9, 9, 9, 8 };

static int64_t
arrival_time(replay *d, int64_t start, const int weight[12])
{
  int total = 0;
  for (int h = 0; h < 12; h++)
    total += weight[h];
  int pick = (int)rng_below(&d->rng, (size_t)total);
  int h = 0;
  while (pick >= weight[h])
    pick -= weight[h++];
  return start + h * HOUR_MS + (int64_t)rng_below(&d->rng, 60) * MINUTE_MS;
}

static int
by_time(const void *a, const void *b)
{
  const arrival *x = a, *y = b;
  if (x->at != y->at)
    return x->at < y->at ? -1 : 1;
  if (x->service != y->service)
    return x->service - y->service;
  return x->n < y->n ? -1 : x->n > y->n;
}

/* The arrivals of every day, in order: the days of history at a lighter
   load (weekends lighter still), then the day itself. */
static int
plan_arrivals(replay *d)
{
  int64_t today = local_day(d->start);
  size_t cap = 0, n = 0;
  for (int64_t k = d->o.history_days; k >= 0; k--) {
    int64_t dayno = today - k;
    int weekend = !working_day(d, dayno);
    long reports = k == 0    ? d->o.reports
                   : weekend ? d->o.reports / 50
                             : d->o.reports / 20;
    long bookings = k == 0    ? d->o.bookings
                    : weekend ? d->o.bookings / 10
                              : d->o.bookings / 5;
    int64_t start = local_to_utc(dayno, 7 * 60);
    if (n + (size_t)(reports + bookings) > cap) {
      cap = 2 * (n + (size_t)(reports + bookings)) + 16;
      arrival *v = realloc(d->arrivals, cap * sizeof *v);
      if (v == NULL)
        return -1;
      d->arrivals = v;
    }
    for (long i = 0; i < reports; i++)
      d->arrivals[n++] = (arrival){ arrival_time(d, start, REPORT_WEIGHT),
                                    SVC_MISSED,
                                    (size_t)i };
    for (long i = 0; i < bookings; i++)
      d->arrivals[n++] = (arrival){ arrival_time(d, start, BOOKING_WEIGHT),
                                    SVC_BULKY,
                                    (size_t)i };
  }
  d->narrivals = n;
  qsort(d->arrivals, n, sizeof *d->arrivals, by_time);
  return 0;
}

/* ---- residents' next steps ---------------------------------------------- */

/* The case as JSON, or NULL (and unexpected) when it cannot be read. */
static json_t *
case_read(replay *d, const char *id)
{
  char *text = NULL;
  int rc = flow_case_get(&text, d->e, id);
  if (rc != 0) {
    judge(d, rc, 0, "get", "case", id);
    return NULL;
  }
  json_t *c = json_loads(text, 0, NULL);
  flow_free(text);
  return c;
}

static void
resident_acts(replay *d, item *it)
{
  char who[64];
  const char *roles[] = { "resident" };
  snprintf(who, sizeof who, "resident.%s", it->id);
  flow_actor resident = { who, roles, 1 };
  unsigned moved_on = EXPECT(FLOW_EEVENT) | EXPECT(FLOW_ECLOSED);

  json_t *c = case_read(d, it->id);
  if (c == NULL)
    return;
  json_t *data = json_object_get(c, "data");
  const char *state = jstr(c, "state") ? jstr(c, "state") : "";

  if (it->what == DO_CHOOSE_SLOT && strcmp(state, "choosing_slot") == 0) {
    json_t *offered = json_object_get(data, "offered_slots");
    size_t n = json_array_size(offered);
    double f = fate(d->o.seed, it->id, 900);
    size_t pick = f < 0.6 || n < 2 ? 0 : f < 0.85 || n < 3 ? 1 : 2;
    const char *date = json_string_value(json_array_get(offered, pick));
    if (date) {
      char payload[64];
      int64_t at;
      char iso[32];
      snprintf(iso, sizeof iso, "%sT12:00:00Z", date);
      if (flow_time_parse(&at, iso) == 0) {
        int64_t i = at / DAY_MS - d->base_day;
        if (i >= 0 && i < (int64_t)(sizeof d->booked / sizeof *d->booked))
          d->booked[i]++;
      }
      snprintf(payload, sizeof payload, "{\"date\":\"%s\"}", date);
      queue_call(
        d,
        call_new(d, SVC_BULKY, "choose_slot", moved_on | EXPECT(FLOW_EREFUSED)),
        it->id,
        payload,
        &resident);
    }
  } else if (it->what == DO_RETRY_PAYMENT &&
             strcmp(state, "payment_problem") == 0) {
    /* Too close to the collection day now is refused with a reason. */
    queue_call(
      d,
      call_new(d, SVC_BULKY, "retry_payment", moved_on | EXPECT(FLOW_EREFUSED)),
      it->id,
      NULL,
      &resident);
  } else if (it->what == DO_FIND_SLOTS &&
             strcmp(state, "payment_problem") == 0) {
    queue_call(d,
               call_new(d, SVC_BULKY, "find_slots_again", moved_on),
               it->id,
               NULL,
               &resident);
  } else if (it->what == DO_CANCEL && (strcmp(state, "booked") == 0 ||
                                       strcmp(state, "collecting") == 0)) {
    /* In time, a full refund.  Too late, the service refuses, saying
       there is no refund and how to cancel anyway; most residents then
       accept that. */
    call_ctx *call =
      call_new(d, SVC_BULKY, "cancel", moved_on | EXPECT(FLOW_EREFUSED));
    if (call && fate(d->o.seed, it->id, 901) < 0.7)
      call->then = "{\"accept_no_refund\":true}";
    queue_call(d, call, it->id, NULL, &resident);
  } else {
    /* The booking moved on before the resident acted (it lapsed, or
       they already did it another way): nothing to send. */
    bump(d->calls,
         1,
         "resident_gave_up",
         SERVICES[SVC_BULKY].name,
         "case had moved on");
  }
  json_decref(c);
}

/* Everything on the agenda that fell due by now, in order. */
static void
agenda_due(replay *d)
{
  while (d->agenda && d->agenda->at <= d->now) {
    item *it = d->agenda;
    d->agenda = it->next;
    if (it->what == DO_COMPLETE) {
      answer(d, it->action, it->id, it->text);
    } else if (it->what == DO_NOTICE) {
      char *out = NULL;
      int rc = flow_message_send(
        &out, d->e, "payment_notice", it->id, it->text, HOUR_MS);
      if (rc == 0) {
        json_t *m = json_loads(out, 0, NULL);
        bump(d->messages,
             1,
             "payment_notice",
             jstr(m, "status") ? jstr(m, "status") : "?",
             NULL);
        json_decref(m);
      } else {
        judge(d, rc, 0, "message", "payment_notice", it->id);
      }
      flow_free(out);
    } else {
      resident_acts(d, it);
    }
    free(it->text);
    free(it);
  }
}

/* ---- crews and office staff --------------------------------------------- */

/* The office finds a property by hand: the gazetteer again (the lookup
   failed because the system was down), or "not a property". */
static json_t *
office_lookup(replay *d, const char *case_id)
{
  json_t *c = case_read(d, case_id);
  const char *uprn = jstr(json_object_get(c, "data"), "uprn");
  const address *a = gazetteer_find(&d->gaz, uprn);
  json_t *out;
  if (a && pairs_get(&d->rounds, a->round))
    out = json_pack("{s:s, s:s, s:s, s:s}",
                    "outcome",
                    "found",
                    "address",
                    a->text,
                    "round",
                    a->round,
                    "crew",
                    pairs_get(&d->rounds, a->round));
  else
    out = json_pack("{s:s}", "outcome", "not_a_property");
  json_decref(c);
  return out;
}

/*
 * An outcome that fits the task's form: for each enum field the first
 * value the script lists (the happy one) mostly and another sometimes; an
 * identifier for fields named *_id or *_ref (a photo, a refund); and
 * something plausible for any other field the form requires.
 */
static char *
outcome_for(replay *d, const job *j)
{
  json_t *out = strcmp(j->name, "find_address") == 0
                  ? office_lookup(d, j->case_id)
                  : json_object();
  const char *field;
  json_t *spec;
  char text[64];

  json_object_foreach(j->form, field, spec)
  {
    const char *type = jstr(spec, "type");
    size_t len = strlen(field);
    if (type == NULL || json_object_get(out, field))
      continue;
    int ident = len > 3 && (strcmp(field + len - 3, "_id") == 0 ||
                            (len > 4 && strcmp(field + len - 4, "_ref") == 0));
    if (strcmp(type, "enum") == 0) {
      json_t *values = json_object_get(spec, "values");
      size_t nv = json_array_size(values);
      double f = fate(d->o.seed, j->task, text_hash(field));
      size_t pick = f < 0.85 || nv < 2 ? 0 : 1 + (size_t)(f * 1e6) % (nv - 1);
      if (nv)
        json_object_set(out, field, json_array_get(values, pick));
    } else if (strcmp(type, "string") == 0 && ident) {
      snprintf(text,
               sizeof text,
               "%s-%s",
               strcmp(field, "photo_ref") == 0 ? "IMG" : "REF",
               j->task);
      json_object_set_new(out, field, json_string(text));
    } else if (!json_is_true(json_object_get(spec, "required"))) {
      continue;
    } else if (strcmp(type, "string") == 0) {
      json_object_set_new(out, field, json_string("done"));
    } else if (strcmp(type, "boolean") == 0) {
      json_object_set_new(out, field, json_true());
    } else if (strcmp(type, "integer") == 0 || strcmp(type, "number") == 0) {
      json_t *min = json_object_get(spec, "min");
      json_object_set_new(
        out, field, json_integer(min ? json_integer_value(min) : 1));
    } else if (strcmp(type, "date") == 0) {
      day_text(text, local_day(d->now));
      json_object_set_new(out, field, json_string(text));
    }
  }
  char *s = out ? json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(out);
  return s;
}

/* The person finishes a job: completes the task with an outcome. */
static void
job_finish(replay *d, job *j)
{
  const char *roles[1];
  flow_actor who = team_member(d, j->team, (size_t)j->worker, roles);
  const char *tm = d->teams[j->team].name;
  /* The case moved on meanwhile (a supervisor took it over, the resident
     cancelled) and the task went with it. */
  unsigned gone = EXPECT(FLOW_ECONFLICT);
  int rc;

  /* Now and then the handheld sends an outcome the form does not allow:
     refused, naming the field; the person puts it right. */
  if (fate(d->o.seed, j->task, 77) < 0.01) {
    rc =
      flow_task_complete(NULL, d->e, j->task, "{\"outcome\":\"done\"}", &who);
    judge(d, rc, gone | EXPECT(FLOW_EDATA), "task_complete", tm, j->task);
  }
  char *outcome = outcome_for(d, j);
  if (outcome == NULL) {
    unexpected(d, "out of memory making an outcome");
    return;
  }
  rc = flow_task_complete(NULL, d->e, j->task, outcome, &who);
  judge(d, rc, gone, "task_complete", tm, outcome);
  free(outcome);
}

static int
job_add(replay *d, const job *j)
{
  if (d->njobs == d->capjobs) {
    size_t cap = d->capjobs ? 2 * d->capjobs : 256;
    job *v = realloc(d->jobs, cap * sizeof *v);
    if (v == NULL)
      return -1;
    d->jobs = v;
    d->capjobs = cap;
  }
  d->jobs[d->njobs] = *j;
  json_incref(j->form);
  d->njobs++;
  return 0;
}

/* A round of a team's work: finish the jobs that are done, then each free
   person takes the next open tasks off the team's list. */
static void
team_round(replay *d, int tm)
{
  team *t = &d->teams[tm];
  flow_task_query q = { NULL, t->name, NULL, "open", 0 };
  char *list = NULL;
  size_t next = 0;

  for (size_t i = 0; i < d->njobs;) {
    if (d->jobs[i].team == tm && d->jobs[i].at <= d->now) {
      job j = d->jobs[i];
      memmove(
        &d->jobs[i], &d->jobs[i + 1], (d->njobs - i - 1) * sizeof *d->jobs);
      d->njobs--;
      job_finish(d, &j);
      json_decref(j.form);
    } else {
      i++;
    }
  }
  int minute = local_minute(d->now);
  if (!working_day(d, local_day(d->now)) || minute < t->opens ||
      minute >= t->closes)
    return;

  int rc = flow_tasks_list(&list, d->e, &q);
  if (rc != 0) {
    judge(d, rc, 0, "tasks_list", t->name, "open");
    return;
  }
  json_t *tasks = json_loads(list, 0, NULL);
  flow_free(list);

  for (size_t w = 0; w < t->npeople; w++) {
    worker *p = &t->people[w];
    const char *roles[1];
    flow_actor who = team_member(d, tm, w, roles);
    if (p->free_at > d->now)
      continue;
    for (int b = 0; b < t->batch; b++) {
      json_t *task = NULL;
      const char *id = NULL;
      while (id == NULL && next < json_array_size(tasks)) {
        task = json_array_get(tasks, next++);
        id = jstr(task, "id");
        if (id && strset_has(&d->left_alone, id))
          id = NULL;
      }
      if (id == NULL)
        break;
      double f = fate(d->o.seed, id, 5);
      if (f < 0.02) {
        /* Nobody gets to it: it falls overdue, unclaimed. */
        strset_add(&d->left_alone, id);
        continue;
      }
      rc = flow_task_claim(d->e, id, &who);
      judge(d, rc, 0, "task_claim", t->name, id);
      if (rc != 0)
        continue;
      if (f < 0.05 && t->npeople > 1) {
        /* Two people take the same job off the board: the second is told
           who has it. */
        const char *roles2[1];
        flow_actor other = team_member(d, tm, (w + 1) % t->npeople, roles2);
        rc = flow_task_claim(d->e, id, &other);
        if (rc == 0)
          unexpected(d,
                     "task %s was claimed by %s and then by %s",
                     id,
                     who.id,
                     other.id);
        else
          judge(d,
                rc,
                EXPECT(FLOW_ECONFLICT),
                "task_claim",
                t->name,
                "a second claim");
      }
      if (f < 0.06) {
        /* Claimed, then the day ran out: it falls overdue in their
           name. */
        strset_add(&d->left_alone, id);
        continue;
      }
      int span = t->job_max - t->job_min + 1;
      int64_t takes =
        (t->job_min + (int64_t)(fate(d->o.seed, id, 6) * span)) * MINUTE_MS;
      int64_t start = p->free_at > d->now ? p->free_at : d->now;
      job j = { .team = tm,
                .worker = (int)w,
                .at = start + takes,
                .form = json_object_get(task, "form") };
      snprintf(j.task, sizeof j.task, "%s", id);
      snprintf(j.case_id,
               sizeof j.case_id,
               "%s",
               jstr(task, "case") ? jstr(task, "case") : "");
      snprintf(j.name,
               sizeof j.name,
               "%s",
               jstr(task, "name") ? jstr(task, "name") : "");
      if (job_add(d, &j) != 0)
        unexpected(d, "out of memory keeping a job");
      p->free_at = start + takes;
    }
  }
  json_decref(tasks);
}

/* ---- supervisors -------------------------------------------------------- */

/* The supervisors' queue: every escalated missed bin gets a crew again,
   or is closed with a reason.  At 11:00 a crew goes off sick and its open
   jobs are taken over.  All through the asynchronous API, like the
   website's calls. */
static void
supervise(replay *d)
{
  const char *roles[] = { "supervisor" };
  unsigned race = EXPECT(FLOW_EEVENT) | EXPECT(FLOW_ECLOSED);
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  char *list = NULL;
  char payload[256];
  int minute = local_minute(d->now);

  q.service = SERVICES[SVC_MISSED].name;
  q.state = "escalated";
  q.limit = 60;
  int rc = flow_case_list(&list, d->e, &q);
  if (rc != 0) {
    judge(d, rc, 0, "list", "escalated", "supervisors");
    return;
  }
  json_t *cases = json_loads(list, 0, NULL);
  flow_free(list);
  size_t i;
  json_t *c;
  json_array_foreach(cases, i, c)
  {
    const char *id = jstr(c, "id");
    const char *crew = jstr(json_object_get(c, "data"), "crew");
    json_int_t seq = json_integer_value(json_object_get(c, "seq"));
    /* Some wait on another team (the highways team to clear a lane, a
       landlord to unlock a bin store): they stay escalated, and breach
       their service level in the end. */
    if (id == NULL || fate(d->o.seed, id, 2999) < 0.12)
      continue;
    double f = fate(d->o.seed, id, 3000 + (uint64_t)seq);
    size_t s = f < 0.5 ? 0 : 1;
    flow_actor sup = { d->supervisors[s].id, roles, 1 };
    flow_actor other = { d->supervisors[1 - s].id, roles, 1 };
    /* Another crew than the one that could not do it. */
    const char *again = d->rounds.value[(size_t)(f * 1e6) % d->rounds.n];
    for (size_t k = 0; crew && strcmp(again, crew) == 0 && k < d->rounds.n; k++)
      again = d->rounds.value[k];
    if (f < 0.08) {
      /* Forgot the reason: refused, saying what to add. */
      snprintf(payload, sizeof payload, "{\"crew\":\"%s\"}", again);
      queue_call(d,
                 call_new(d, SVC_MISSED, "reassign", EXPECT(FLOW_EREFUSED)),
                 id,
                 payload,
                 &sup);
    }
    if (f < 0.65) {
      snprintf(payload,
               sizeof payload,
               "{\"crew\":\"%s\",\"reason\":\"%s could not get to it\"}",
               again,
               crew ? crew : "the crew");
      queue_call(d, call_new(d, SVC_MISSED, "reassign", 0), id, payload, &sup);
    } else {
      queue_call(d,
                 call_new(d, SVC_MISSED, "close", 0),
                 id,
                 "{\"reason\":\"collected by the street cleansing team\"}",
                 &sup);
    }
    if (fate(d->o.seed, id, 4000 + (uint64_t)seq) < 0.05)
      /* The other supervisor works the same case at the same moment; the
         engine applies one and refuses the other. */
      queue_call(d,
                 call_new(d, SVC_MISSED, "close", race),
                 id,
                 "{\"reason\":\"duplicate of another report\"}",
                 &other);
  }
  json_decref(cases);

  if (minute == 11 * 60) {
    char date[11];
    day_text(date, local_day(d->now));
    const char *sick =
      d->rounds.value[(size_t)(fate(d->o.seed, date, 11) * d->rounds.n)];
    char value[64];
    snprintf(value, sizeof value, "\"%s\"", sick);
    flow_where where = { "crew", value };
    flow_case_query w = FLOW_CASE_QUERY_INIT;
    w.service = SERVICES[SVC_MISSED].name;
    w.state = "with_crew";
    w.where = &where;
    w.nwhere = 1;
    w.limit = 10;
    rc = flow_case_list(&list, d->e, &w);
    if (rc != 0) {
      judge(d, rc, 0, "list", "with_crew", sick);
      return;
    }
    cases = json_loads(list, 0, NULL);
    flow_free(list);
    flow_actor sup = { d->supervisors[0].id, roles, 1 };
    snprintf(payload, sizeof payload, "{\"reason\":\"%s off sick\"}", sick);
    json_array_foreach(cases, i, c)
    {
      if (jstr(c, "id"))
        queue_call(d,
                   call_new(d, SVC_MISSED, "escalate", race),
                   jstr(c, "id"),
                   payload,
                   &sup);
    }
    json_decref(cases);
  }
}

/* ---- the clock ---------------------------------------------------------- */

#define TEAM_ROUND_MS (10 * MINUTE_MS)

/* How many cases the engine holds that match. */
static json_int_t
count_cases(replay *d, const char *service, const char *status)
{
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  json_int_t total = 0;
  q.service = service;
  q.status = status;
  q.limit = 1000;
  for (;;) {
    char *list = NULL;
    int rc = flow_case_list(&list, d->e, &q);
    if (rc != 0) {
      judge(d, rc, 0, "list", service, status);
      return total;
    }
    json_t *arr = json_loads(list, 0, NULL);
    flow_free(list);
    size_t n = json_array_size(arr);
    json_decref(arr);
    total += (json_int_t)n;
    if (n < q.limit)
      return total;
    q.offset += n;
  }
}

/* The day replayed begins: what follows is its report. */
static void
day_begins(replay *d)
{
  json_t **counters[] = {
    &d->calls,     &d->messages,          &d->notes,   &d->opened,
    &d->closed,    &d->by_cause,          &d->timers,  &d->tasks,
    &d->incidents, &d->incident_examples, &d->actions, &d->action_errors,
    &d->sla,       &d->refusals
  };
  for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
    json_object_clear(*counters[i]);
  for (int s = 0; s < NSERVICES; s++)
    json_object_set_new(d->carried,
                        SERVICES[s].name,
                        json_integer(count_cases(d, SERVICES[s].name, "open")));
  for (size_t i = 0; i < d->nteams; i++) {
    static const char *const live[] = { "open", "claimed" };
    for (int k = 0; k < 2; k++) {
      flow_task_query q = { NULL, d->teams[i].name, NULL, live[k], 0 };
      char *list = NULL;
      int rc = flow_tasks_list(&list, d->e, &q);
      if (rc != 0) {
        judge(d, rc, 0, "tasks_list", d->teams[i].name, live[k]);
        continue;
      }
      json_t *arr = json_loads(list, 0, NULL);
      flow_free(list);
      bump(d->carried_tasks,
           (json_int_t)json_array_size(arr),
           d->teams[i].name,
           NULL,
           NULL);
      json_decref(arr);
    }
  }
  d->transitions = 0;
  d->outbox_lines = 0;
  d->today = 1;
}

/* One simulated minute: the answers and residents' steps that fell due,
   what arrives, what supervisors and teams do.  The engine then does its
   share on the loop. */
static void
tick(replay *d)
{
  agenda_due(d);
  while (d->next_arrival < d->narrivals &&
         d->arrivals[d->next_arrival].at <= d->now) {
    arrival *a = &d->arrivals[d->next_arrival++];
    if (a->service == SVC_MISSED)
      arrive_report(d);
    else
      arrive_booking(d);
  }
  int minute = local_minute(d->now);
  if (d->next_supervision <= d->now) {
    d->next_supervision = d->now + 30 * MINUTE_MS;
    if (working_day(d, local_day(d->now)) && minute >= 8 * 60 &&
        minute < 17 * 60)
      supervise(d);
  }
  for (size_t i = 0; i < d->nteams; i++)
    if (d->teams[i].next_round <= d->now) {
      team_round(d, (int)i);
      d->teams[i].next_round = d->now + TEAM_ROUND_MS;
    }
}

/* Runs the loop until the engine has done everything that fell due by the
   clock: fired the timers, dispatched the requests, applied the queued
   calls.  uv_run returns once no referenced handle is active, and the
   engine's handles are active only while it has work (with a virtual
   clock a timer that is not due yet arms nothing), ours (an answer from a
   uv timer) until they fire. */
static void
settle(replay *d)
{
  uv_run(&d->loop, UV_RUN_DEFAULT);
  if (d->async_pending != 0)
    unexpected(d,
               "%" PRId64 " asynchronous calls got no callback in their "
               "round",
               d->async_pending);
}

/* ---- the report --------------------------------------------------------- */

/* The engine's view of every case at the end: by state, and its service
   level: met (closed by its due time), breached (closed after it, or open
   past it), running (open, not yet due), none (no service level). */
static void
case_figures(replay *d, json_t *by_state, json_t *levels)
{
  for (int s = 0; s < NSERVICES; s++) {
    flow_case_query q = FLOW_CASE_QUERY_INIT;
    json_t *states = json_object(), *sla = json_object();
    json_object_set_new(by_state, SERVICES[s].name, states);
    json_object_set_new(levels, SERVICES[s].name, sla);
    const char *kinds[] = { "met", "breached", "running", "none" };
    for (int k = 0; k < 4; k++)
      bump(sla, 0, kinds[k], NULL, NULL);
    q.service = SERVICES[s].name;
    q.limit = 1000;
    for (;;) {
      char *list = NULL;
      int rc = flow_case_list(&list, d->e, &q);
      if (rc != 0) {
        judge(d, rc, 0, "list", q.service, "all");
        return;
      }
      json_t *arr = json_loads(list, 0, NULL);
      flow_free(list);
      size_t n = json_array_size(arr), i;
      json_t *c;
      json_array_foreach(arr, i, c)
      {
        const char *due = jstr(c, "due_at"), *upd = jstr(c, "updated_at");
        const char *status = jstr(c, "status");
        int64_t due_ms, upd_ms;
        bump(states, 1, jstr(c, "state") ? jstr(c, "state") : "?", NULL, NULL);
        if (due == NULL || flow_time_parse(&due_ms, due) != 0)
          bump(sla, 1, "none", NULL, NULL);
        else if (status && strcmp(status, "closed") == 0 && upd &&
                 flow_time_parse(&upd_ms, upd) == 0)
          bump(sla, 1, upd_ms <= due_ms ? "met" : "breached", NULL, NULL);
        else
          bump(sla, 1, due_ms < d->now ? "breached" : "running", NULL, NULL);
      }
      json_decref(arr);
      if (n < q.limit)
        break;
      q.offset += n;
    }
  }
}

/* Tasks open or claimed and past due now, by team, as the engine lists
   them; the teams whose list reached LIST_MAX go in capped. */
static void
overdue_now(replay *d, json_t *out, json_t *capped)
{
  for (size_t i = 0; i < d->nteams; i++) {
    flow_task_query q = { NULL, d->teams[i].name, NULL, NULL, 1 };
    char *list = NULL;
    int rc = flow_tasks_list(&list, d->e, &q);
    if (rc != 0) {
      judge(d, rc, 0, "tasks_list", d->teams[i].name, "overdue");
      continue;
    }
    json_t *arr = json_loads(list, 0, NULL);
    flow_free(list);
    if (json_array_size(arr))
      json_object_set_new(
        out, d->teams[i].name, json_integer((json_int_t)json_array_size(arr)));
    if (json_array_size(arr) >= LIST_MAX)
      json_array_append_new(capped, json_string(d->teams[i].name));
    json_decref(arr);
  }
}

static json_int_t
open_incidents(replay *d)
{
  char *list = NULL;
  int rc = flow_incidents_list(&list, d->e, NULL, "open");
  if (rc != 0) {
    judge(d, rc, 0, "incidents_list", "all", "open");
    return -1;
  }
  json_t *arr = json_loads(list, 0, NULL);
  flow_free(list);
  json_int_t n = (json_int_t)json_array_size(arr);
  json_decref(arr);
  return n;
}

static json_t *
build_report(replay *d, double day_s, double history_s)
{
  json_t *r = json_object();
  char date[11], from[8], to[8];
  day_text(date, local_day(d->start));
  local_hhmm(from, d->start);
  local_hhmm(to, d->end);
  json_object_set_new(r, "date", json_string(date));
  json_object_set_new(r, "from", json_string(from));
  json_object_set_new(r, "to", json_string(to));
  json_object_set_new(r, "seed", json_integer((json_int_t)d->o.seed));
  json_object_set_new(
    r, "history_days", json_integer((json_int_t)d->o.history_days));
  json_object_set_new(r,
                      "arrivals",
                      json_pack("{s:I, s:I}",
                                "reports",
                                (json_int_t)d->o.reports,
                                "bookings",
                                (json_int_t)d->o.bookings));

  json_t *cases = json_object(), *sla = json_object(), *today = json_object();
  case_figures(d, cases, sla);
  for (int s = 0; s < NSERVICES; s++) {
    const char *n = SERVICES[s].name;
    json_int_t closed = 0;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(d->closed, n), k, v) closed +=
      json_integer_value(v);
    json_object_set_new(today,
                        n,
                        json_pack("{s:I, s:I, s:I, s:I}",
                                  "carried_over",
                                  count_of(d->carried, n, NULL, NULL),
                                  "opened",
                                  count_of(d->opened, n, NULL, NULL),
                                  "closed",
                                  closed,
                                  "open_at_end",
                                  count_cases(d, n, "open")));
  }
  json_object_set_new(r, "cases", cases);
  json_object_set_new(r, "today", today);
  json_object_set_new(r, "service_levels", sla);
  json_object_set(r, "sla_notes", d->sla);

  json_t *overdue = json_object(), *capped = json_array();
  overdue_now(d, overdue, capped);
  json_object_set_new(r,
                      "tasks",
                      json_pack("{s:O, s:O, s:o, s:o}",
                                "by_team",
                                d->tasks,
                                "carried_over",
                                d->carried_tasks,
                                "overdue_now",
                                overdue,
                                "overdue_now_capped",
                                capped));
  json_int_t open = open_incidents(d);
  json_object_set_new(r,
                      "incidents",
                      json_pack("{s:O, s:O, s:I, s:b}",
                                "by_source",
                                d->incidents,
                                "examples",
                                d->incident_examples,
                                "open",
                                open,
                                "open_capped",
                                open >= LIST_MAX));
  json_object_set_new(r,
                      "actions",
                      json_pack("{s:O, s:O, s:I}",
                                "by_action",
                                d->actions,
                                "final_errors",
                                d->action_errors,
                                "outbox_lines",
                                (json_int_t)d->outbox_lines));
  json_object_set(r, "calls", d->calls);
  json_object_set(r, "messages", d->messages);
  json_object_set(r, "refusal_examples", d->refusals);
  json_object_set(r, "timers", d->timers);
  json_object_set_new(r,
                      "transitions",
                      json_pack("{s:I, s:O}",
                                "total",
                                (json_int_t)d->transitions,
                                "by_cause",
                                d->by_cause));
  json_object_set(r, "notifications", d->notes);
  json_object_set_new(r,
                      "unexpected_errors",
                      json_pack("{s:I, s:O}",
                                "count",
                                (json_int_t)d->nunexpected,
                                "first",
                                d->unexpected));
  if (d->o.timings) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    json_object_set_new(
      r,
      "run",
      json_pack("{s:f, s:f, s:f, s:I}",
                "day_seconds",
                day_s,
                "history_seconds",
                history_s,
                "transitions_per_second",
                day_s > 0 ? (double)d->transitions / day_s : 0.0,
                "peak_rss_kib",
                (json_int_t)ru.ru_maxrss));
  }
  return r;
}

/* The keys of an object, sorted, so that the text report has a fixed
   order whatever order things happened in.  Free the array. */
static size_t
sorted_keys(json_t *o, const char ***out)
{
  size_t n = json_object_size(o), i = 0;
  const char **k = malloc((n ? n : 1) * sizeof *k);
  const char *key;
  json_t *v;
  if (k == NULL) {
    fprintf(stderr, "vendor_day: out of memory printing the report\n");
    exit(3);
  }
  *out = k;
  json_object_foreach(o, key, v) k[i++] = key;
  for (size_t a = 1; a < n; a++)
    for (size_t b = a; b > 0 && strcmp(k[b - 1], k[b]) > 0; b--) {
      const char *t = k[b - 1];
      k[b - 1] = k[b];
      k[b] = t;
    }
  return n;
}

/* "Monday 7 December 2026" */
static void
long_date(char *out, size_t len, const char *iso)
{
  static const char *const days[] = { "Sunday",    "Monday",   "Tuesday",
                                      "Wednesday", "Thursday", "Friday",
                                      "Saturday" };
  static const char *const months[] = { "January", "February", "March",
                                        "April",   "May",      "June",
                                        "July",    "August",   "September",
                                        "October", "November", "December" };
  int y, m, dd;
  if (sscanf(iso, "%d-%d-%d", &y, &m, &dd) != 3 || m < 1 || m > 12) {
    snprintf(out, len, "%s", iso);
    return;
  }
  snprintf(out,
           len,
           "%s %d %s %d",
           days[weekday(days_from_civil(y, m, dd))],
           dd,
           months[m - 1],
           y);
}

#define I(x) ((long long)(x))

static void
print_text(json_t *r)
{
  const char **k1 = NULL, **k2 = NULL, **k3 = NULL;
  size_t n1, n2, n3;
  json_t *o;
  char when[64];

  long_date(when, sizeof when, jstr(r, "date"));
  printf("Hollinbrook District Council: waste services\n");
  printf("%s, %s to %s: %lld missed-bin reports and %lld bulky-waste "
         "bookings\n(after %lld days of history; seed %lld)\n",
         when,
         jstr(r, "from"),
         jstr(r, "to"),
         I(count_of(r, "arrivals", "reports", NULL)),
         I(count_of(r, "arrivals", "bookings", NULL)),
         I(count_of(r, "history_days", NULL, NULL)),
         I(count_of(r, "seed", NULL, NULL)));

  printf("\nCases by service and state at %s\n", jstr(r, "to"));
  o = json_object_get(r, "cases");
  n1 = sorted_keys(o, &k1);
  for (size_t i = 0; i < n1; i++) {
    json_t *states = json_object_get(o, k1[i]);
    json_int_t total = 0;
    n2 = sorted_keys(states, &k2);
    for (size_t j = 0; j < n2; j++)
      total += count_of(states, k2[j], NULL, NULL);
    printf("  %-26s %8lld\n", k1[i], I(total));
    for (size_t j = 0; j < n2; j++)
      printf(
        "    %-24s %8lld\n", k2[j], I(count_of(states, k2[j], NULL, NULL)));
    free(k2);
  }
  free(k1);

  printf("\nThe day's cases        open at %s    opened    closed  open at "
         "%s\n",
         jstr(r, "from"),
         jstr(r, "to"));
  o = json_object_get(r, "today");
  n1 = sorted_keys(o, &k1);
  for (size_t i = 0; i < n1; i++)
    printf("  %-24s %11lld %9lld %9lld %14lld\n",
           k1[i],
           I(count_of(o, k1[i], "carried_over", NULL)),
           I(count_of(o, k1[i], "opened", NULL)),
           I(count_of(o, k1[i], "closed", NULL)),
           I(count_of(o, k1[i], "open_at_end", NULL)));
  free(k1);

  printf("\nService levels                 met  breached   running      "
         "none   warned today  breached today\n");
  o = json_object_get(r, "service_levels");
  n1 = sorted_keys(o, &k1);
  for (size_t i = 0; i < n1; i++)
    printf("  %-24s %9lld %9lld %9lld %9lld %14lld %15lld\n",
           k1[i],
           I(count_of(o, k1[i], "met", NULL)),
           I(count_of(o, k1[i], "breached", NULL)),
           I(count_of(o, k1[i], "running", NULL)),
           I(count_of(o, k1[i], "none", NULL)),
           I(count_of(r, "sla_notes", k1[i], "warning")),
           I(count_of(r, "sla_notes", k1[i], "breached")));
  free(k1);

  printf("\nTasks by team     at %s  created  claimed completed "
         "cancelled fell overdue overdue now\n",
         jstr(r, "from"));
  json_t *tasks = json_object_get(r, "tasks");
  o = json_object_get(tasks, "by_team");
  json_t *now = json_object_get(tasks, "overdue_now");
  json_t *before = json_object_get(tasks, "carried_over");
  n1 = sorted_keys(before, &k1);
  for (size_t i = 0; i < n1; i++)
    printf("  %-14s %9lld %8lld %8lld %9lld %9lld %12lld %11lld\n",
           k1[i],
           I(count_of(before, k1[i], NULL, NULL)),
           I(count_of(o, k1[i], "created", NULL)),
           I(count_of(o, k1[i], "claimed", NULL)),
           I(count_of(o, k1[i], "completed", NULL)),
           I(count_of(o, k1[i], "cancelled", NULL)),
           I(count_of(o, k1[i], "overdue", NULL)),
           I(count_of(now, k1[i], NULL, NULL)));
  free(k1);

  json_t *inc = json_object_get(r, "incidents");
  printf("\nIncidents raised today, by source and error (open now: %s%lld)\n",
         json_is_true(json_object_get(inc, "open_capped")) ? "at least " : "",
         I(count_of(inc, "open", NULL, NULL)));
  o = json_object_get(inc, "by_source");
  n1 = sorted_keys(o, &k1);
  if (n1 == 0)
    printf("  none\n");
  for (size_t i = 0; i < n1; i++) {
    n2 = sorted_keys(json_object_get(o, k1[i]), &k2);
    for (size_t j = 0; j < n2; j++) {
      const char *eg = json_string_value(json_object_get(
        json_object_get(json_object_get(inc, "examples"), k1[i]), k2[j]));
      printf("  %-8s %-15s %6lld  e.g. %.90s\n",
             k1[i],
             k2[j],
             I(count_of(o, k1[i], k2[j], NULL)),
             eg ? eg : "");
    }
    free(k2);
  }
  free(k1);

  printf("\nActions           requested  attempts completed   retried    "
         "failed incidents unanswered  late\n");
  json_t *acts = json_object_get(r, "actions");
  o = json_object_get(acts, "by_action");
  n1 = sorted_keys(o, &k1);
  for (size_t i = 0; i < n1; i++)
    printf("  %-16s %9lld %9lld %9lld %9lld %9lld %9lld %10lld %5lld\n",
           k1[i],
           I(count_of(o, k1[i], "requested", NULL)),
           I(count_of(o, k1[i], "attempts", NULL)),
           I(count_of(o, k1[i], "completed", NULL)),
           I(count_of(o, k1[i], "retry", NULL)),
           I(count_of(o, k1[i], "failed", NULL)),
           I(count_of(o, k1[i], "incident", NULL)),
           I(count_of(o, k1[i], "unanswered", NULL)),
           I(count_of(o, k1[i], "late_answers", NULL)));
  free(k1);
  o = json_object_get(acts, "final_errors");
  n1 = sorted_keys(o, &k1);
  if (n1)
    printf("  failed for good, with the service's fail event:\n");
  for (size_t i = 0; i < n1; i++) {
    n2 = sorted_keys(json_object_get(o, k1[i]), &k2);
    for (size_t j = 0; j < n2; j++) {
      const char *msg = k2[j] ? k2[j] : ""; /* (gcc -O3 fears a NULL) */
      printf("    %-16s %6lld  %.80s\n",
             k1[i],
             I(count_of(o, k1[i], msg, NULL)),
             msg);
    }
    free(k2);
  }
  free(k1);
  printf("  GOV.UK Notify requests written to the outbox: %lld\n",
         I(count_of(acts, "outbox_lines", NULL, NULL)));

  printf("\nMessages sent to cases:");
  o = json_object_get(r, "messages");
  n1 = sorted_keys(o, &k1);
  if (n1 == 0)
    printf(" none");
  for (size_t i = 0; i < n1; i++) {
    n2 = sorted_keys(json_object_get(o, k1[i]), &k2);
    printf("\n  %-16s", k1[i]);
    for (size_t j = 0; j < n2; j++)
      printf(" %s %lld", k2[j], I(count_of(o, k1[i], k2[j], NULL)));
    free(k2);
  }
  free(k1);
  printf("\n");

  printf("\nCalls the host made, and what the engine said\n");
  o = json_object_get(r, "calls");
  n1 = sorted_keys(o, &k1);
  for (size_t i = 0; i < n1; i++) {
    n2 = sorted_keys(json_object_get(o, k1[i]), &k2);
    for (size_t j = 0; j < n2; j++) {
      json_t *codes = json_object_get(json_object_get(o, k1[i]), k2[j]);
      n3 = sorted_keys(codes, &k3);
      printf("  %-16s %-26s", k1[i], k2[j]);
      for (size_t m = 0; m < n3; m++)
        printf(" %s %lld", k3[m], I(count_of(codes, k3[m], NULL, NULL)));
      printf("\n");
      free(k3);
    }
    free(k2);
  }
  free(k1);
  o = json_object_get(r, "refusal_examples");
  n1 = sorted_keys(o, &k1);
  if (n1)
    printf("  what a refusal says:\n");
  for (size_t i = 0; i < n1; i++)
    printf("    %-15s %.200s\n", k1[i], jstr(o, k1[i]));
  free(k1);

  printf("\nTimers fired:");
  o = json_object_get(r, "timers");
  n1 = sorted_keys(o, &k1);
  if (n1 == 0)
    printf(" none");
  for (size_t i = 0; i < n1; i++)
    printf(
      "%s %s %lld", i ? "," : "", k1[i], I(count_of(o, k1[i], NULL, NULL)));
  free(k1);
  printf("\nTransitions: %lld (openings and events;",
         I(count_of(r, "transitions", "total", NULL)));
  o = json_object_get(json_object_get(r, "transitions"), "by_cause");
  n1 = sorted_keys(o, &k1);
  for (size_t i = 0; i < n1; i++)
    printf(
      "%s %s %lld", i ? "," : "", k1[i], I(count_of(o, k1[i], NULL, NULL)));
  free(k1);
  printf(")\n");

  json_t *run = json_object_get(r, "run");
  if (run)
    printf("\nThroughput: %.0f transitions a second of real time (the day "
           "took %.2f s,\nthe history before it %.2f s); peak memory %lld "
           "KiB\n",
           json_real_value(json_object_get(run, "transitions_per_second")),
           json_real_value(json_object_get(run, "day_seconds")),
           json_real_value(json_object_get(run, "history_seconds")),
           I(count_of(run, "peak_rss_kib", NULL, NULL)));
  printf("\nUnexpected errors: %lld\n",
         I(count_of(r, "unexpected_errors", "count", NULL)));
  o = json_object_get(json_object_get(r, "unexpected_errors"), "first");
  for (size_t i = 0; i < json_array_size(o); i++)
    printf("  %s\n", json_string_value(json_array_get(o, i)));
}

/* ---- start and finish --------------------------------------------------- */

static void
usage(FILE *f, const char *argv0)
{
  fprintf(f,
          "usage: %s [options]\n"
          "  --services DIR      service scripts (examples/services)\n"
          "  --data DIR          gazetteer.csv, rounds.csv, "
          "notify_templates.csv\n"
          "                      (examples/host/data)\n"
          "  --date YYYY-MM-DD   the day to replay (2026-12-07)\n"
          "  --reports N         missed-bin reports that day (10000)\n"
          "  --bookings N        bulky-waste bookings that day (500)\n"
          "  --history-days N    days replayed before it, lighter (7)\n"
          "  --seed N            the generator's seed (1)\n"
          "  --decline-rate P    payment attempts declined (0.1)\n"
          "  --timeout-rate P    payment attempts never answered (0.05)\n"
          "  --outbox FILE       append each Notify request as a JSON line\n"
          "  --db FILE           the engine's database (:memory:)\n"
          "  --json              the report as one JSON object\n"
          "  --no-timings        leave out times, throughput and memory\n"
          "  --verbose           log lines and incidents on stderr\n",
          argv0);
}

static int
parse_long(const char *s, long min, long max, long *out)
{
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

static int
parse_rate(const char *s, double *out)
{
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= 0.0 && v <= 1.0))
    return -1;
  *out = v;
  return 0;
}

static int
parse_date(const char *s, options *o)
{
  static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
  int y, m, dd;
  char tail;
  if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' ||
      sscanf(s, "%4d-%2d-%2d%c", &y, &m, &dd, &tail) != 3)
    return -1;
  if (y < 1971 || y > 9999 || m < 1 || m > 12 || dd < 1 || dd > mdays[m - 1])
    return -1;
  if (m == 2 && dd == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
    return -1;
  o->year = y;
  o->month = m;
  o->mday = dd;
  return 0;
}

static int
parse_args(int argc, char **argv, options *o)
{
  *o = (options){ .services = "examples/services",
                  .data = "examples/host/data",
                  .db = ":memory:",
                  .year = 2026,
                  .month = 12,
                  .mday = 7,
                  .reports = 10000,
                  .bookings = 500,
                  .history_days = 7,
                  .seed = 1,
                  .decline_rate = 0.1,
                  .timeout_rate = 0.05,
                  .timings = 1 };
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long n = 0;
    int bad = 0;

    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout, argv[0]);
      exit(0);
    } else if (strcmp(a, "--json") == 0) {
      o->json = 1;
      continue;
    } else if (strcmp(a, "--no-timings") == 0) {
      o->timings = 0;
      continue;
    } else if (strcmp(a, "--verbose") == 0) {
      o->verbose = 1;
      continue;
    } else if (strncmp(a, "--", 2) != 0) {
      fprintf(
        stderr, "%s: unexpected argument '%s' (try --help)\n", argv[0], a);
      return -1;
    } else if (v == NULL) {
      fprintf(stderr, "%s: %s needs a value (try --help)\n", argv[0], a);
      return -1;
    } else if (strcmp(a, "--services") == 0) {
      o->services = v;
    } else if (strcmp(a, "--data") == 0) {
      o->data = v;
    } else if (strcmp(a, "--db") == 0) {
      o->db = v;
    } else if (strcmp(a, "--outbox") == 0) {
      o->outbox = v;
    } else if (strcmp(a, "--date") == 0) {
      bad = parse_date(v, o);
    } else if (strcmp(a, "--reports") == 0) {
      bad = parse_long(v, 0, 1000000, &n);
      o->reports = n;
    } else if (strcmp(a, "--bookings") == 0) {
      bad = parse_long(v, 0, 100000, &n);
      o->bookings = n;
    } else if (strcmp(a, "--history-days") == 0) {
      bad = parse_long(v, 0, 30, &n);
      o->history_days = n;
    } else if (strcmp(a, "--seed") == 0) {
      bad = parse_long(v, 0, 2147483647L, &n);
      o->seed = (uint64_t)n;
    } else if (strcmp(a, "--decline-rate") == 0) {
      bad = parse_rate(v, &o->decline_rate);
    } else if (strcmp(a, "--timeout-rate") == 0) {
      bad = parse_rate(v, &o->timeout_rate);
    } else {
      fprintf(stderr, "%s: unknown option %s (try --help)\n", argv[0], a);
      return -1;
    }
    if (bad) {
      fprintf(stderr,
              "%s: %s '%s' is not a valid value (try --help)\n",
              argv[0],
              a,
              v);
      return -1;
    }
    i++;
  }
  if (o->decline_rate + o->timeout_rate > 1.0) {
    fprintf(stderr,
            "%s: --decline-rate and --timeout-rate add up to more "
            "than 1\n",
            argv[0]);
    return -1;
  }
  return 0;
}

static int
load_data(replay *d)
{
  char path[4096];
  snprintf(path, sizeof path, "%s/gazetteer.csv", d->o.data);
  if (csv_read(
        path, "uprn,address,postcode,round", 4, gazetteer_row, &d->gaz) != 0)
    return -1;
  if (d->gaz.n == 0) {
    fprintf(stderr, "vendor_day: %s has no addresses\n", path);
    return -1;
  }
  qsort(d->gaz.v, d->gaz.n, sizeof *d->gaz.v, by_uprn);
  for (size_t i = 1; i < d->gaz.n; i++)
    if (strcmp(d->gaz.v[i - 1].uprn, d->gaz.v[i].uprn) == 0) {
      fprintf(stderr,
              "vendor_day: %s: UPRN %s is listed twice\n",
              path,
              d->gaz.v[i].uprn);
      return -1;
    }
  snprintf(path, sizeof path, "%s/rounds.csv", d->o.data);
  if (csv_read(path, "round,crew", 2, pairs_row, &d->rounds) != 0)
    return -1;
  for (size_t i = 0; i < d->gaz.n; i++)
    if (pairs_get(&d->rounds, d->gaz.v[i].round) == NULL) {
      fprintf(stderr,
              "vendor_day: %s has no crew for round %s (UPRN %s)\n",
              path,
              d->gaz.v[i].round,
              d->gaz.v[i].uprn);
      return -1;
    }
  snprintf(path, sizeof path, "%s/notify_templates.csv", d->o.data);
  d->templates.uuid_values = 1;
  return csv_read(path, "template,template_id", 2, pairs_row, &d->templates);
}

/* Loads each service and checks it is the one this host was written for. */
static int
load_services(replay *d)
{
  for (int s = 0; s < NSERVICES; s++) {
    char path[4096];
    char *info = NULL;
    snprintf(path, sizeof path, "%s/%s", d->o.services, SERVICES[s].path);
    int rc = flow_service_load_file(&info, d->e, path);
    if (rc != 0) {
      fprintf(stderr,
              "vendor_day: loading %s: %s (%s)\n",
              path,
              flow_errmsg(d->e),
              flow_err_name(rc));
      return -1;
    }
    json_t *j = json_loads(info, 0, NULL);
    const char *name = jstr(j, "name");
    int ok = name && strcmp(name, SERVICES[s].name) == 0;
    if (!ok)
      fprintf(stderr,
              "vendor_day: %s is service '%s', expected '%s'\n",
              path,
              name ? name : "?",
              SERVICES[s].name);
    else if (d->o.verbose)
      fprintf(stderr, "vendor_day: loaded %s\n", info);
    json_decref(j);
    flow_free(info);
    if (!ok)
      return -1;
  }
  return 0;
}

static int
register_actions(replay *d)
{
  static const struct {
    const char *name;
    flow_action_fn fn;
  } actions[] = {
    { "notify.sms", notify_sms },
    { "notify.email", notify_email },
    { "address.lookup", address_lookup },
    { "bulky.slots", bulky_slots },
    { "payments.take", payments_take },
    { "payments.cancel", payments_cancel },
    { "payments.refund", payments_refund },
  };
  for (size_t i = 0; i < sizeof actions / sizeof *actions; i++) {
    int rc = flow_action_register(d->e, actions[i].name, actions[i].fn, d);
    if (rc != 0) {
      fprintf(stderr,
              "vendor_day: registering %s: %s (%s)\n",
              actions[i].name,
              flow_errmsg(d->e),
              flow_err_name(rc));
      return -1;
    }
  }
  return 0;
}

static void
day_free(replay *d)
{
  free(d->gaz.v);
  free(d->rounds.key);
  free(d->rounds.value);
  free(d->templates.key);
  free(d->templates.value);
  free(d->arrivals);
  for (size_t i = 0; i < d->nteams; i++)
    free(d->teams[i].people);
  free(d->teams);
  for (size_t i = 0; i < d->njobs; i++)
    json_decref(d->jobs[i].form);
  free(d->jobs);
  strset_free(&d->left_alone);
  strset_free(&d->notified);
  while (d->agenda) {
    item *it = d->agenda;
    d->agenda = it->next;
    free(it->text);
    free(it);
  }
  json_t *counters[] = {
    d->calls,     d->messages,          d->notes,   d->opened,
    d->closed,    d->by_cause,          d->timers,  d->tasks,
    d->incidents, d->incident_examples, d->actions, d->action_errors,
    d->sla,       d->refusals,          d->carried, d->carried_tasks,
    d->unexpected
  };
  for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
    json_decref(counters[i]);
}

int
main(int argc, char **argv)
{
  static replay d; /* its address is every callback's payload */
  char err[512];
  int status = 3, loop_ok = 0, rc;

  if (parse_args(argc, argv, &d.o) != 0)
    return 2;
  d.rng = mix64(d.o.seed ^ UINT64_C(0x5eed));
  d.calls = counters_new();
  d.messages = counters_new();
  d.notes = counters_new();
  d.opened = counters_new();
  d.closed = counters_new();
  d.by_cause = counters_new();
  d.timers = counters_new();
  d.tasks = counters_new();
  d.incidents = counters_new();
  d.incident_examples = counters_new();
  d.actions = counters_new();
  d.action_errors = counters_new();
  d.sla = counters_new();
  d.refusals = counters_new();
  d.carried = counters_new();
  d.carried_tasks = counters_new();
  d.unexpected = json_array();

  if (load_data(&d) != 0 || teams_create(&d) != 0)
    goto done;
  if (d.o.outbox && (d.outbox = fopen(d.o.outbox, "a")) == NULL) {
    fprintf(stderr,
            "vendor_day: cannot open the outbox %s: %s\n",
            d.o.outbox,
            strerror(errno));
    goto done;
  }
  int64_t today = days_from_civil(d.o.year, d.o.month, d.o.mday);
  d.start = local_to_utc(today, 7 * 60);
  d.end = local_to_utc(today, 19 * 60);
  d.first = local_to_utc(today - d.o.history_days, 7 * 60);
  d.base_day = today - d.o.history_days;
  d.capacity = d.o.bookings / 8 > 8 ? (int)(d.o.bookings / 8) : 8;

  flow_engine_options eo = FLOW_ENGINE_OPTIONS_INIT;
  eo.log = on_log;
  eo.log_payload = &d;
  if (strcmp(d.o.db, ":memory:") == 0)
    eo.synchronous = FLOW_SYNC_OFF; /* nothing outlives the run */
  rc = flow_engine_open(&d.e, d.o.db, &eo, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr,
            "vendor_day: cannot open the engine on %s: %s (%s)\n",
            d.o.db,
            err,
            flow_err_name(rc));
    goto done;
  }
  /* Before anything reads the clock: the days replayed, not today. */
  flow_engine_set_time(d.e, d.first);

  if (uv_loop_init(&d.loop) != 0) {
    fprintf(stderr, "vendor_day: cannot start a libuv loop\n");
    goto done;
  }
  loop_ok = 1;
  rc = flow_engine_use_uv_loop(d.e, &d.loop);
  if (rc != 0) {
    fprintf(stderr,
            "vendor_day: attaching the engine to the loop: %s (%s)\n",
            flow_errmsg(d.e),
            flow_err_name(rc));
    goto done;
  }
  rc = flow_engine_subscribe(d.e, on_note, &d, NULL);
  if (rc != 0) {
    fprintf(stderr,
            "vendor_day: subscribing: %s (%s)\n",
            flow_errmsg(d.e),
            flow_err_name(rc));
    goto done;
  }
  if (load_services(&d) != 0 || register_actions(&d) != 0 ||
      plan_arrivals(&d) != 0)
    goto done;
  /* A replay on top of other cases would mix days and not be the same
     twice: it needs a database of its own. */
  for (int s = 0; s < NSERVICES; s++) {
    flow_case_query q = FLOW_CASE_QUERY_INIT;
    char *list = NULL;
    q.service = SERVICES[s].name;
    q.limit = 1;
    rc = flow_case_list(&list, d.e, &q);
    if (rc != 0) {
      fprintf(stderr,
              "vendor_day: reading %s: %s (%s)\n",
              d.o.db,
              flow_errmsg(d.e),
              flow_err_name(rc));
      goto done;
    }
    int used = strcmp(list, "[]") != 0;
    flow_free(list);
    if (used) {
      fprintf(stderr,
              "vendor_day: %s already holds %s cases: a replay "
              "needs a new database (remove it, or give another "
              "--db)\n",
              d.o.db,
              SERVICES[s].name);
      goto done;
    }
  }
  for (size_t i = 0; i < d.nteams; i++)
    d.teams[i].next_round = d.first;
  d.next_supervision = d.first;

  /* Each simulated minute the host moves the clock on, does what people
     and other systems do in that minute, and lets the engine do what fell
     due before the next. */
  uint64_t t0 = uv_hrtime(), t1 = t0;
  for (d.now = d.first; d.now <= d.end; d.now += MINUTE_MS) {
    if (d.now == d.start) {
      t1 = uv_hrtime();
      day_begins(&d);
    }
    flow_engine_set_time(d.e, d.now);
    tick(&d);
    settle(&d);
  }
  d.now = d.end;
  uint64_t t2 = uv_hrtime();

  /* A request for an action this host has no handler for waits for one
     for ever: a service that started calling something new. */
  char *waiting = NULL;
  rc = flow_actions_list(&waiting, d.e, NULL, "waiting");
  if (rc != 0) {
    judge(&d, rc, 0, "actions_list", "all", "waiting");
  } else {
    json_t *w = json_loads(waiting, 0, NULL);
    size_t i;
    json_t *q;
    json_array_foreach(w, i, q)
    {
      unexpected(&d,
                 "request %s of case %s waits for action %s, which "
                 "this host does not provide",
                 jstr(q, "id") ? jstr(q, "id") : "?",
                 jstr(q, "case") ? jstr(q, "case") : "?",
                 jstr(q, "action") ? jstr(q, "action") : "?");
    }
    json_decref(w);
  }
  flow_free(waiting);

  for (int s = 0; s < NSERVICES; s++)
    if (count_of(d.opened, SERVICES[s].name, NULL, NULL) !=
        count_of(d.calls, "open", SERVICES[s].name, "ok"))
      unexpected(&d,
                 "%s: %lld openings told, %lld answered ok",
                 SERVICES[s].name,
                 I(count_of(d.opened, SERVICES[s].name, NULL, NULL)),
                 I(count_of(d.calls, "open", SERVICES[s].name, "ok")));

  json_t *report =
    build_report(&d, (double)(t2 - t1) / 1e9, (double)(t1 - t0) / 1e9);
  if (d.o.json) {
    char *text = json_dumps(report, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text)
      printf("%s\n", text);
    free(text);
  } else {
    print_text(report);
  }
  json_decref(report);
  status = d.nunexpected ? 1 : 0;

done:
  /* Closing runs the loop briefly to close the engine's handles. */
  flow_engine_close(d.e);
  if (loop_ok) {
    uv_run(&d.loop, UV_RUN_NOWAIT); /* our timers' close callbacks */
    if (uv_loop_close(&d.loop) != 0)
      fprintf(stderr, "vendor_day: the loop still has handles open\n");
  }
  if (d.outbox && fclose(d.outbox) != 0) {
    fprintf(stderr, "vendor_day: writing the outbox: %s\n", strerror(errno));
    if (status == 0)
      status = 1;
  }
  day_free(&d);
  return status;
}
