/*
 * Timers fire exactly once, and only while they still belong to the case:
 * a backlog of due timers is checked timer by timer against the case as it
 * is when each one fires (its state visit, kept or not, open or closed),
 * and several engines, in several processes, firing on one database file
 * never fire one timer twice, even when one of them is killed mid-way.
 *
 * Virtual clock only.  The multi-process tests fork runners that each
 * open their own engine on a file in a fresh temporary directory.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The service: state a has two timers; the first to fire leaves
   a, so the second must never fire.  b's own timer counts from when the
   case entered b.  The rest exercises kept timers, event timers that stay
   in their state, service levels and incidents. */
static const char *const SERVICE =
    "return {\n"
    "  name = 'backlog', version = 1,\n"
    "  fields = { pings = { type = 'integer' }, kept = { type = 'integer' },\n"
    "             path = { type = 'string' } },\n"
    "  initial = 'a',\n"
    "  states = {\n"
    "    a = {\n"
    "      after = { ['1h'] = 'b', ['2h'] = 'c',\n"
    "                ['30m'] = { event = 'ping' } },\n"
    "      on = {\n"
    "        ping = function(case)\n"
    "          case.data.pings = (case.data.pings or 0) + 1\n"
    "        end,\n"
    "        arm = function(case)\n"
    "          flow.after('90m', 'ping')\n"
    "          flow.after('100m', 'kept', {}, { keep = true })\n"
    "        end,\n"
    "      },\n"
    "    },\n"
    "    b = {\n"
    "      after = { ['4h'] = 'c' },\n"
    "      on = {\n"
    "        ping = function(case)\n"
    "          case.data.pings = (case.data.pings or 0) + 100\n"
    "        end,\n"
    "        kept = function(case)\n"
    "          case.data.kept = (case.data.kept or 0) + 1\n"
    "        end,\n"
    "      },\n"
    "    },\n"
    "    c = { final = true },\n"
    "  },\n"
    "}\n";

/* A service level shorter than the way to the end: the case closes at
   30m, so its warning (45m) and breach (1h) must not fire. */
static const char *const SLA_SERVICE =
    "return {\n"
    "  name = 'quick', version = 1,\n"
    "  initial = 'open',\n"
    "  sla = { within = '1h', warn = '45m' },\n"
    "  states = {\n"
    "    open = { after = { ['30m'] = 'done' },\n"
    "             on = { sla_warning = function() end } },\n"
    "    done = { final = true },\n"
    "  },\n"
    "}\n";

/* A timer whose handler fails: an incident, and the case is unchanged,
   so the state's later timers are still its own and fire. */
static const char *const INCIDENT_SERVICE =
    "return {\n"
    "  name = 'shaky', version = 1,\n"
    "  initial = 'a',\n"
    "  states = {\n"
    "    a = { after = { ['1h'] = { event = 'boom' }, ['2h'] = 'b' },\n"
    "          on = { boom = function() error('no crew today') end } },\n"
    "    b = { final = true },\n"
    "  },\n"
    "}\n";

/* One timer per case, for the runners: a -> b at 1h. */
static const char *const RACE_SERVICE =
    "return {\n"
    "  name = 'race', version = 1,\n"
    "  initial = 'a',\n"
    "  states = {\n"
    "    a = { after = { ['1h'] = 'b' } },\n"
    "    b = { after = { ['5h'] = 'c' } },\n"
    "    c = { final = true },\n"
    "  },\n"
    "}\n";

static int64_t
at(const char *iso)
{
  int64_t t;
  ck_assert_int_eq(flow_time_parse(&t, iso), 0);
  return t;
}

static flow_engine *
open_engine(const char *path)
{
  flow_engine *e;
  char err[256];
  ck_assert_msg(flow_engine_open(&e, path, NULL, err, sizeof err) == 0, "%s",
                err);
  return e;
}

static void
load(flow_engine *e, const char *src, const char *name)
{
  ck_assert_msg(flow_service_load_string(NULL, e, src, strlen(src), name) ==
                    0,
                "%s", flow_errmsg(e));
}

static size_t
fire(flow_engine *e, const char *iso)
{
  size_t n = 0;
  flow_engine_set_time(e, at(iso));
  ck_assert_msg(flow_engine_fire_due(e, &n) == 0, "%s", flow_errmsg(e));
  return n;
}

/* Occurrences of needle in hay. */
static int
count(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

static char *
case_json(flow_engine *e, const char *id)
{
  char *out;
  ck_assert_msg(flow_case_get(&out, e, id) == 0, "%s", flow_errmsg(e));
  return out;
}

static char *
history(flow_engine *e, const char *id)
{
  char *out;
  ck_assert_msg(flow_case_history(&out, e, id) == 0, "%s", flow_errmsg(e));
  return out;
}

static void
assert_has(const char *hay, const char *needle)
{
  ck_assert_msg(strstr(hay, needle) != NULL, "want %s in %s", needle, hay);
}

static void
assert_lacks(const char *hay, const char *needle)
{
  ck_assert_msg(strstr(hay, needle) == NULL, "did not want %s in %s", needle,
                hay);
}

/* A fresh directory for a database file; path gets "dir/cases.db". */
static void
make_db(char *dir, size_t dlen, char *path, size_t plen)
{
  snprintf(dir, dlen, "/tmp/flow-once.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, plen, "%s/cases.db", dir);
}

static void
remove_db(const char *dir, const char *path)
{
  char p[512];
  unlink(path);
  snprintf(p, sizeof p, "%s-wal", path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", path);
  unlink(p);
  rmdir(dir);
}

/* ---- a backlog on one case ------------------------------------------- */

/* An in-memory engine with the service src loaded and one case of it
   (case "1") opened at 09:00 on Monday 30 November 2026. */
static flow_engine *
engine_with_case(const char *src, const char *file, const char *service)
{
  flow_engine *e = open_engine(":memory:");
  load(e, src, file);
  flow_engine_set_time(e, at("2026-11-30T09:00:00Z"));
  char *c;
  ck_assert_msg(flow_case_open(&c, e, service, NULL, NULL) == 0, "%s",
                flow_errmsg(e));
  flow_free(c);
  return e;
}

/* The case: open at 09:00, the engine down until 12:00, then run
   until idle.  The 1h timer moves the case to b; the 2h one belonged to
   a and must not fire.  Across a restart: the backlog is found by a new
   engine on the file. */
START_TEST(test_timer_once_left_state_across_restart)
{
  char dir[64], path[128];
  make_db(dir, sizeof dir, path, sizeof path);
  flow_engine *e = open_engine(path);
  load(e, SERVICE, "backlog.lua");
  flow_engine_set_time(e, at("2026-11-30T09:00:00Z"));
  char *c;
  ck_assert_int_eq(flow_case_open(&c, e, "backlog", NULL, NULL), 0);
  flow_free(c);
  flow_engine_close(e);

  e = open_engine(path);
  /* 30m ping (stays in a), 1h a -> b, and not the 2h a -> c. */
  ck_assert_int_eq(fire(e, "2026-11-30T12:00:00Z"), 2);
  c = case_json(e, "1");
  assert_has(c, "\"state\":\"b\"");
  assert_has(c, "\"pings\":1");
  assert_has(c, "\"seq\":3");
  flow_free(c);
  char *h = history(e, "1");
  ck_assert_int_eq(count(h, "\"event\":\"after\""), 1);
  assert_lacks(h, "\"to\":\"c\"");
  flow_free(h);
  /* The same run again finds nothing; b's own 4h timer counts from
     12:00, when the case entered b. */
  ck_assert_int_eq(fire(e, "2026-11-30T12:00:00Z"), 0);
  ck_assert_int_eq(fire(e, "2026-11-30T15:59:00Z"), 0);
  ck_assert_int_eq(fire(e, "2026-11-30T16:00:00Z"), 1);
  c = case_json(e, "1");
  assert_has(c, "\"state\":\"c\"");
  flow_free(c);
  flow_engine_close(e);
  remove_db(dir, path);
}
END_TEST

/* Many cases with backlogs in one run, in batches larger and smaller than
   the engine's: every case ends in b, each with one move. */
START_TEST(test_timer_once_backlog_many_cases)
{
  flow_engine *e = open_engine(":memory:");
  load(e, SERVICE, "backlog.lua");
  flow_engine_set_time(e, at("2026-11-30T09:00:00Z"));
  enum { N = 700 };
  for (int i = 0; i < N; i++) {
    char *c;
    ck_assert_int_eq(flow_case_open(&c, e, "backlog", NULL, NULL), 0);
    flow_free(c);
  }
  ck_assert_int_eq(fire(e, "2026-11-30T12:00:00Z"), 2 * N);
  char *out;
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.state = "b";
  q.limit = 10 * N;
  ck_assert_int_eq(flow_case_list(&out, e, &q), 0);
  ck_assert_int_eq(count(out, "\"state\":\"b\""), N);
  ck_assert_int_eq(count(out, "\"seq\":3"), N);
  flow_free(out);
  flow_engine_close(e);
}
END_TEST

/* A kept timer outlives the state that set it; a plain flow.after one
   does not, even when both are due in the same backlog. */
START_TEST(test_timer_once_kept_and_scoped)
{
  flow_engine *e = engine_with_case(SERVICE, "backlog.lua", "backlog");
  char *c;
  ck_assert_int_eq(flow_case_signal(&c, e, "1", "arm", NULL, NULL), 0);
  flow_free(c);
  /* Due by 11:00: ping 09:30 (a), a -> b 10:00, ping 10:30 (set in a:
     dead), kept 10:40 (fires in b), a -> c 11:00 (dead). */
  ck_assert_int_eq(fire(e, "2026-11-30T11:00:00Z"), 3);
  c = case_json(e, "1");
  assert_has(c, "\"state\":\"b\"");
  assert_has(c, "\"pings\":1}");
  assert_has(c, "\"kept\":1");
  flow_free(c);
  char *h = history(e, "1");
  ck_assert_int_eq(count(h, "\"event\":\"ping\""), 1);
  ck_assert_int_eq(count(h, "\"event\":\"kept\""), 1);
  flow_free(h);
  flow_engine_close(e);
}
END_TEST

/* The service level's timers belong to the open case: once a backlog
   closes it, they do not fire. */
START_TEST(test_timer_once_sla_after_close)
{
  flow_engine *e = engine_with_case(SLA_SERVICE, "quick.lua", "quick");
  char *c;
  ck_assert_int_eq(fire(e, "2026-11-30T12:00:00Z"), 1);
  char *h = history(e, "1");
  assert_lacks(h, "sla_warning");
  assert_lacks(h, "sla_breached");
  flow_free(h);
  c = case_json(e, "1");
  assert_has(c, "\"status\":\"closed\"");
  flow_free(c);
  ck_assert_int_eq(flow_case_timers(&c, e, "1"), 0);
  ck_assert_str_eq(c, "[]");
  flow_free(c);
  flow_engine_close(e);
}
END_TEST

/* A refused timer leaves the case where it was, so the state's next
   timer is still live and fires in the same backlog. */
START_TEST(test_timer_once_incident_keeps_state_timers)
{
  flow_engine *e = engine_with_case(INCIDENT_SERVICE, "shaky.lua", "shaky");
  char *c;
  ck_assert_int_eq(fire(e, "2026-11-30T12:00:00Z"), 2);
  c = case_json(e, "1");
  assert_has(c, "\"state\":\"b\"");
  assert_has(c, "\"seq\":2");
  flow_free(c);
  char *h = history(e, "1");
  assert_lacks(h, "\"event\":\"boom\"");
  flow_free(h);
  ck_assert_int_eq(flow_case_timers(&c, e, "1"), 0);
  assert_has(c, "\"status\":\"incident\"");
  ck_assert_int_eq(count(c, "\"status\":"), 1);
  flow_free(c);
  flow_engine_close(e);
}
END_TEST

/* ---- several engines on one file ---------------------------------- */

/* A runner process: opens its own engine, waits at the barrier, fires
   everything due.  With kill_after > 0 it kills itself with SIGKILL at
   that allocation of its engine's allocator, somewhere inside the work. */
static long alloc_calls, kill_after;

static void *
killing_alloc(void *payload, void *ptr, size_t osize, size_t nsize)
{
  (void)payload;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (++alloc_calls == kill_after)
    raise(SIGKILL);
  return realloc(ptr, nsize);
}

static void
runner(const char *path, int barrier, const char *now, long kill_at)
{
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  flow_engine *e;
  char buf[1];
  o.alloc = killing_alloc;
  o.busy_timeout_ms = 20000;
  kill_after = 0;
  if (flow_engine_open(&e, path, &o, NULL, 0) != 0)
    _exit(10);
  if (read(barrier, buf, 1) < 0) /* returns 0 when the parent closes it */
    _exit(11);
  alloc_calls = 0;
  kill_after = kill_at;
  flow_engine_set_time(e, at(now));
  if (flow_engine_fire_due(e, NULL) != 0)
    _exit(12);
  flow_engine_close(e);
  _exit(0);
}

/* Opens ncases race cases at 09:00, starts nrunners runners together at
   now; runner k is killed at allocation kills[k] (0: not killed).  Then
   one more engine fires what is left, and every case must have moved
   exactly once.  Returns the number of runners that were killed. */
static int
race(int ncases, int nrunners, const long *kills, const char *now)
{
  char dir[64], path[128];
  make_db(dir, sizeof dir, path, sizeof path);
  flow_engine *e = open_engine(path);
  load(e, RACE_SERVICE, "race.lua");
  flow_engine_set_time(e, at("2026-11-30T09:00:00Z"));
  for (int i = 0; i < ncases; i++) {
    char *c;
    ck_assert_int_eq(flow_case_open(&c, e, "race", NULL, NULL), 0);
    flow_free(c);
  }
  flow_engine_close(e);

  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  pid_t pids[8];
  ck_assert_int_le(nrunners, 8);
  for (int k = 0; k < nrunners; k++) {
    pids[k] = fork();
    ck_assert_int_ge(pids[k], 0);
    if (pids[k] == 0) {
      close(fds[1]);
      runner(path, fds[0], now, kills ? kills[k] : 0);
    }
  }
  close(fds[0]);
  close(fds[1]); /* all start */
  int killed = 0;
  for (int k = 0; k < nrunners; k++) {
    int status;
    ck_assert_int_eq(waitpid(pids[k], &status, 0), pids[k]);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && kills &&
        kills[k] > 0) {
      killed++;
      continue;
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "runner %d: status %d", k, status);
  }

  /* Whatever a killed runner left is fired now, once. */
  e = open_engine(path);
  flow_engine_set_time(e, at(now));
  size_t more = 0;
  ck_assert_msg(flow_engine_fire_due(e, &more) == 0, "%s", flow_errmsg(e));
  if (killed == 0)
    ck_assert_int_eq(more, 0);
  for (int i = 1; i <= ncases; i++) {
    char id[16];
    snprintf(id, sizeof id, "%d", i);
    char *h = history(e, id);
    ck_assert_msg(count(h, "\"event\":\"after\"") == 1,
                  "case %s moved %d times: %s", id,
                  count(h, "\"event\":\"after\""), h);
    flow_free(h);
    char *c = case_json(e, id);
    assert_has(c, "\"state\":\"b\"");
    assert_has(c, "\"seq\":2");
    flow_free(c);
  }
  flow_engine_close(e);
  remove_db(dir, path);
  return killed;
}

START_TEST(test_timer_once_two_runners)
{
  race(200, 2, NULL, "2026-11-30T10:00:00Z");
}
END_TEST

START_TEST(test_timer_once_four_runners)
{
  race(200, 4, NULL, "2026-11-30T10:00:00Z");
}
END_TEST

/* Two of four runners die at some allocation inside their work (about
   twenty per timer fired); the others and a restart fire every timer
   once.  Several kill points, so some land inside a transition's
   transaction. */
START_TEST(test_timer_once_runner_killed)
{
  static const long points[] = { 60, 250, 700, 1300 };
  int killed = 0;
  for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
    long kills[4] = { points[i], points[i] + 37, 0, 0 };
    killed += race(120, 4, kills, "2026-11-30T10:00:00Z");
  }
  /* At least one kill must have happened, or this tests nothing. */
  /* A killed runner may have found the others had done its share before
     it reached its kill point: go on until a kill has happened, or this
     tests nothing. */
  for (int tries = 0; killed == 0 && tries < 50; tries++) {
    long kills[4] = { 30, 45, 60, 0 };
    killed += race(120, 4, kills, "2026-11-30T10:00:00Z");
  }
  ck_assert_int_gt(killed, 0);
}
END_TEST

static Suite *
timer_once_suite(void)
{
  Suite *s = suite_create("timer_once");
  TCase *tc = tcase_create("backlog");
  tcase_add_test(tc, test_timer_once_left_state_across_restart);
  tcase_add_test(tc, test_timer_once_backlog_many_cases);
  tcase_add_test(tc, test_timer_once_kept_and_scoped);
  tcase_add_test(tc, test_timer_once_sla_after_close);
  tcase_add_test(tc, test_timer_once_incident_keeps_state_timers);
  suite_add_tcase(s, tc);
  tc = tcase_create("processes");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_timer_once_two_runners);
  tcase_add_test(tc, test_timer_once_four_runners);
  tcase_add_test(tc, test_timer_once_runner_killed);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(timer_once_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
