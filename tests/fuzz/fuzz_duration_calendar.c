/*
 * Fuzz target: durations, calendars and times.
 *
 * The input is lines: (1) a duration for a state's `after` timer, (2) one
 * for the service level, (3) a zone, (4) opening and (5) closing times,
 * (6) a weekday mask, (7) holidays separated by commas, (8) a start time.
 * Missing lines keep the defaults.  The durations go into a service script
 * as Lua string literals (every byte escaped, so any byte reaches the
 * duration parser), the rest into flow_engine_set_calendar and the engine
 * clock.
 *
 * Invariants: a refused calendar is FLOW_EINVAL with a message and leaves
 * the calendar as it was; a refused script is FLOW_ESCRIPT/FLOW_EINVAL with
 * a message; a start time that parses formats and parses back to the same
 * instant; and on an accepted service every deadline lies after the moment
 * it was set (the service level after the opening, each timer after the
 * transition that set it), firing the earliest timer at its due time fires
 * it, and the timers it sets lie after that.
 */
#define _POSIX_C_SOURCE 200809L

#include <flow.h>
#include <jansson.h>
#include <string.h>

#include "fuzz.h"

static flow_engine *E;
static long RUNS;

void
fuzz_cleanup(void)
{
  flow_engine_close(E);
  E = NULL;
}

/* A service whose deadlines show the calendar: working days and hours
   from a fixed moment. */
static const char PROBE[] =
    "return { name = 'probe', version = 1, initial = 'a',\n"
    "  sla = { within = '3 working days' },\n"
    "  states = { a = { after = { ['5 working hours'] = 'b' } },\n"
    "             b = { final = true } } }\n";

static void
engine_up(void)
{
  if (E && RUNS % 100 != 0)
    return;
  fuzz_cleanup();
  char err[256];
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  o.synchronous = FLOW_SYNC_OFF;
  FUZZ_CHECK(flow_engine_open(&E, ":memory:", &o, err, sizeof err) == 0,
             "open: %s", err);
  FUZZ_CHECK(flow_service_load_string(NULL, E, PROBE, sizeof PROBE - 1,
                                      "probe.lua") == 0,
             "probe: %s", flow_errmsg(E));
}

/* The deadlines the current calendar gives a case opened on Friday
   27 November 2026 at 15:00Z, as text (malloc'd): the case's due_at and
   its timers.  Equal texts before and after a refused set_calendar mean
   the calendar was left as it was. */
static char *
probe_calendar(void)
{
  char *out = NULL, *timers = NULL;
  flow_engine_set_time(E, 1795791600000LL);
  FUZZ_CHECK(flow_case_open(&out, E, "probe", NULL, NULL) == 0,
             "probe open: %s", flow_errmsg(E));
  json_t *cj = json_loads(out, 0, NULL);
  const char *id = json_string_value(json_object_get(cj, "id"));
  const char *due = json_string_value(json_object_get(cj, "due_at"));
  FUZZ_CHECK(id && flow_case_timers(&timers, E, id) == 0, "probe timers: %s",
             flow_errmsg(E));
  json_t *tj = json_loads(timers, 0, NULL);
  char *text = malloc(256);
  FUZZ_CHECK(text != NULL, "out of memory");
  snprintf(text, 256, "%s %s", due ? due : "null",
           json_string_value(
               json_object_get(json_array_get(tj, 0), "due_at")));
  json_decref(tj);
  json_decref(cj);
  flow_free(out);
  flow_free(timers);
  return text;
}

/* Appends s[0..n) as a Lua string literal with every byte escaped. */
static size_t
lua_quote(char *dst, const char *s, size_t n)
{
  size_t k = 0;
  dst[k++] = '"';
  for (size_t i = 0; i < n; i++)
    k += (size_t)sprintf(dst + k, "\\%03u", (unsigned char)s[i]);
  dst[k++] = '"';
  dst[k] = 0;
  return k;
}

static int64_t
time_of(json_t *v)
{
  int64_t t = 0;
  const char *s = json_string_value(v);
  FUZZ_CHECK(s != NULL && flow_time_parse(&t, s) == 0,
             "a time the engine printed does not parse: %s", s ? s : "null");
  return t;
}

/* Every pending timer of case id is due after `after`; returns the
   earliest due time (INT64_MAX: none). */
static int64_t
check_timers(const char *id, int64_t after)
{
  char *out = NULL;
  FUZZ_CHECK(flow_case_timers(&out, E, id) == 0, "timers: %s",
             flow_errmsg(E));
  json_t *arr = json_loads(out, 0, NULL);
  FUZZ_CHECK(json_is_array(arr), "timers are not an array: %s", out);
  int64_t first = INT64_MAX;
  size_t i;
  json_t *t;
  json_array_foreach(arr, i, t)
  {
    int64_t due = time_of(json_object_get(t, "due_at"));
    const char *kind = json_string_value(json_object_get(t, "kind"));
    FUZZ_CHECK(due > after || (kind && strncmp(kind, "sla", 3) == 0),
               "timer due %lld is not after %lld: %s", (long long)due,
               (long long)after, out);
    if (due < first)
      first = due;
  }
  json_decref(arr);
  flow_free(out);
  return first;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size > 4096)
    return 0;
  engine_up();
  RUNS++;
  char *text = fuzz_text(data, size);

  /* Cut into lines; a raw NUL ends a line's C string, which is fine:
     durations travel as Lua literals with their length. */
  const char *line[8] = { NULL };
  size_t len[8] = { 0 };
  char *p = text;
  for (int i = 0; i < 8 && p <= text + size; i++) {
    char *nl = memchr(p, '\n', (size_t)(text + size - p));
    line[i] = p;
    len[i] = nl ? (size_t)(nl - p) : (size_t)(text + size - p);
    if (nl == NULL)
      break;
    *nl = 0;
    p = nl + 1;
  }

  /* The calendar. */
  flow_calendar_options c = FLOW_CALENDAR_OPTIONS_INIT;
  c.zone = line[2] && len[2] ? line[2] : NULL;
  c.opens = line[3] && len[3] ? line[3] : NULL;
  c.closes = line[4] && len[4] ? line[4] : NULL;
  c.weekdays = line[5] ? (unsigned)strtoul(line[5], NULL, 10) : 0;
  const char *hol[16];
  char holbuf[512];
  if (line[6]) {
    snprintf(holbuf, sizeof holbuf, "%s", line[6]);
    char *save = NULL;
    for (char *h = strtok_r(holbuf, ",", &save); h && c.nholidays < 16;
         h = strtok_r(NULL, ",", &save))
      hol[c.nholidays++] = h;
    c.holidays = hol;
  }
  char *before = probe_calendar();
  int rc = flow_engine_set_calendar(E, &c);
  FUZZ_CHECK(rc == 0 || rc == FLOW_EINVAL, "set_calendar returned %s: %s",
             flow_err_name(rc), flow_errmsg(E));
  FUZZ_CHECK(rc == 0 || flow_errmsg(E)[0], "set_calendar: no message");
  if (rc != 0) {
    char *after = probe_calendar();
    FUZZ_CHECK(strcmp(before, after) == 0,
               "a refused calendar changed the deadlines: %s, then %s",
               before, after);
    free(after);
  }
  free(before);

  /* The clock. */
  int64_t now = 1793610000000LL; /* 2026-11-02T09:00:00Z */
  if (line[7]) {
    int64_t t;
    if (flow_time_parse(&t, line[7]) == 0) {
      char buf[64];
      int64_t back;
      FUZZ_CHECK(flow_time_format(buf, sizeof buf, t) == 0, "format %lld",
                 (long long)t);
      FUZZ_CHECK(flow_time_parse(&back, buf) == 0 && back == t,
                 "'%s' -> %lld -> '%s' does not read back", line[7],
                 (long long)t, buf);
      if (t > 0 && t < 4102444800000LL) /* 1970..2100 */
        now = t;
    }
  }
  flow_engine_set_time(E, now);

  /* The service. */
  const char *dur = line[0] ? line[0] : "";
  const char *sla = line[1] ? line[1] : "5 working days";
  size_t dlen = line[0] ? len[0] : 0, slen = line[1] ? len[1] : strlen(sla);
  static char qd[4 * 4096 + 4], qs[4 * 4096 + 4];
  size_t nd = lua_quote(qd, dur, dlen), ns = lua_quote(qs, sla, slen);
  /* The duration appears twice in the script. */
  char *src = malloc(2 * nd + ns + 1024);
  FUZZ_CHECK(src != NULL, "out of memory");
  sprintf(src,
          "return { name = 'dur', version = %ld, initial = 'a',\n"
          "  sla = { within = %s },\n"
          "  states = {\n"
          "    a = { after = { [%s] = 'b' }, on = { go = 'b' } },\n"
          "    b = { after = { [%s] = { event = 'tick' } },\n"
          "          on = { tick = function(case) end, go = 'a' } },\n"
          "  } }\n",
          RUNS, qs, qd, qd);
  rc = flow_service_load_string(NULL, E, src, strlen(src), "dur.lua");
  free(src);
  FUZZ_CHECK(rc == 0 || rc == FLOW_ESCRIPT || rc == FLOW_EINVAL,
             "load returned %s: %s", flow_err_name(rc), flow_errmsg(E));
  if (rc != 0) {
    FUZZ_CHECK(flow_errmsg(E)[0], "a refused script with no message");
    free(text);
    return 0;
  }

  char *out = NULL;
  rc = flow_case_open(&out, E, "dur", NULL, NULL);
  FUZZ_CHECK(rc == 0 || rc == FLOW_EINVAL, "open returned %s: %s",
             flow_err_name(rc), flow_errmsg(E));
  if (rc == 0) {
    json_t *cj = json_loads(out, 0, NULL);
    char id[32];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(cj, "id")));
    json_t *due = json_object_get(cj, "due_at");
    if (!json_is_null(due))
      FUZZ_CHECK(time_of(due) > now, "the service level is not after the "
                 "opening: %s", out);
    json_decref(cj);
    /* Fire the earliest timer at its due time, a few times over. */
    int64_t first = check_timers(id, now);
    for (int round = 0; round < 3 && first != INT64_MAX; round++) {
      size_t fired = 0;
      flow_engine_set_time(E, first);
      rc = flow_engine_fire_due(E, &fired);
      FUZZ_CHECK(rc == 0, "fire_due: %s: %s", flow_err_name(rc),
                 flow_errmsg(E));
      FUZZ_CHECK(fired >= 1, "a timer due at %lld did not fire at that time",
                 (long long)first);
      first = check_timers(id, first);
    }
  }
  flow_free(out);
  free(text);
  return 0;
}
