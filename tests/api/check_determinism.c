/*
 * The same events on identical cases give the same case data and
 * histories, however they are run: each case alone in a process of its
 * own; all of them one after another in one engine; shuffled, with cases
 * of a noisy service (deep recursion, garbage, big tables) between them;
 * queued and group-committed together, as `flow run` does; and in a host
 * that has set a German locale.  Nothing a script can see may depend on
 * what ran before it, or on the process.
 *
 * (math.random is left out: it is seeded per case, from the case's id and
 * opening time, so that a case replays the same way; two cases draw
 * differently by design.)  Virtual clock only.  The locale is built with
 * localedef in a temporary directory (package locales).
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* setenv, mkdtemp */

#include <check.h>
#include <flow.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const SERVICE =
    "local Acc = {} Acc.__index = Acc\n"
    "function Acc.new() return setmetatable({ n = 0, log = {} }, Acc) end\n"
    "function Acc:add(k, v) self.n = self.n + 1 self.log[#self.log + 1] = "
    "k .. '=' .. tostring(v) end\n"
    "return {\n"
    "  name = 'det', version = 1, initial = 'a',\n"
    "  fields = { out = { type = 'string' }, n = { type = 'integer' },\n"
    "             list = { type = 'list' }, f = { type = 'number' } },\n"
    "  states = {\n"
    "    a = { on = {\n"
    "      work = function(case, ev)\n"
    "        local t = {}\n"
    "        for i = 1, 40 + ev.payload.k do t['key' .. i] = i / 7 end\n"
    "        local acc = Acc.new()\n"
    "        for k, v in pairs(t) do acc:add(k, v) end\n"
    "        local recs = {}\n"
    "        for i = 1, 50 do recs[i] = { k = (i * 13) % 5, i = i } end\n"
    "        table.sort(recs, function(x, y) return x.k < y.k end)\n"
    "        local co = coroutine.wrap(function() for i = 1, 3 do "
    "coroutine.yield(i * 7) end end)\n"
    "        local r = { co(), co(), co() }\n"
    "        case.data.out = table.concat(acc.log, ',', 1, 12) .. '|' .. "
    "recs[1].i .. recs[50].i .. '|' .. table.concat(r, ',') .. '|' .. "
    "string.format('%.4f %g %5.1f', 1.5, 2.25, -0.5) .. '|' .. "
    "tostring('a' < 'B') .. tostring(1e100) .. tostring(2^0.5)\n"
    "        case.data.n = (case.data.n or 0) + acc.n\n"
    "        case.data.f = ev.payload.k / 3\n"
    "        case.data.list = { 'x', 1.25, ev.payload.k }\n"
    "      end,\n"
    "      done = 'b',\n"
    "    } },\n"
    "    b = { final = true },\n"
    "  },\n"
    "}\n";

/* Noise between the cases: what one case leaves (stack, garbage, big
   tables, collected or not) must not reach the next. */
static const char *const NOISE =
    "return {\n"
    "  name = 'noise', version = 1, initial = 'a',\n"
    "  states = { a = { on = { go = function(case, ev)\n"
    "    local function f(n) if n == 0 then return 0 end return 1 + f(n - 1) "
    "end\n"
    "    f(20000)\n"
    "    local junk = {} for i = 1, 20000 do junk[i] = { i, tostring(i) } "
    "end\n"
    "    local big = {} for i = 1, 15000 do big['n' .. i] = i end\n"
    "  end } } },\n"
    "}\n";

#define NCASES 6
#define NEVENTS 4

typedef enum mode { ALONE, SEQUENCE, SHUFFLED, GROUPED, LOCALE } mode;

static flow_engine *
engine(void)
{
  flow_engine *e;
  char err[256];
  ck_assert_int_eq(flow_engine_open(&e, ":memory:", NULL, err, sizeof err),
                   0);
  ck_assert_int_eq(flow_service_load_string(NULL, e, SERVICE, strlen(SERVICE),
                                            "det.lua"),
                   0);
  ck_assert_int_eq(flow_service_load_string(NULL, e, NOISE, strlen(NOISE),
                                            "noise.lua"),
                   0);
  int64_t t;
  flow_time_parse(&t, "2026-11-30T09:00:00Z");
  flow_engine_set_time(e, t);
  return e;
}

static void
id_of(const char *json, char *id, size_t len)
{
  const char *p = strstr(json, "\"id\":\"");
  ck_assert_ptr_nonnull(p);
  snprintf(id, len, "%.*s", (int)strspn(p + 6, "0123456789"), p + 6);
}

static void
open_case(flow_engine *e, int c, char *id, size_t len)
{
  char *out;
  ck_assert_int_eq(flow_case_open(&out, e, "det", NULL, NULL), 0);
  id_of(out, id, len);
  flow_free(out);
  (void)c;
}

static void
signal_case(flow_engine *e, const char *id, int c, int k)
{
  char payload[64];
  snprintf(payload, sizeof payload, "{\"k\":%d}", c * 10 + k);
  ck_assert_msg(flow_case_signal(NULL, e, id, k == NEVENTS - 1 ? "done"
                                                               : "work",
                                 payload, NULL) == 0,
                "%s", flow_errmsg(e));
}

static void
noise(flow_engine *e)
{
  char *out, id[32];
  ck_assert_int_eq(flow_case_open(&out, e, "noise", NULL, NULL), 0);
  id_of(out, id, sizeof id);
  flow_free(out);
  ck_assert_msg(flow_case_signal(NULL, e, id, "go", NULL, NULL) == 0, "%s",
                flow_errmsg(e));
}

/* The case's data and history as text ("data\nhistory"), malloc'd. */
static char *
snapshot(flow_engine *e, const char *id)
{
  char *c, *h;
  ck_assert_int_eq(flow_case_get(&c, e, id), 0);
  ck_assert_int_eq(flow_case_history(&h, e, id), 0);
  const char *d = strstr(c, "\"data\":");
  const char *end = strstr(c, ",\"due_at\"");
  ck_assert(d && end);
  size_t n = (size_t)(end - d) + strlen(h) + 2;
  char *s = malloc(n);
  snprintf(s, n, "%.*s\n%s", (int)(end - d), d, h);
  flow_free(c);
  flow_free(h);
  return s;
}

static void
done_cb(flow_engine *e, int status, const char *json, void *payload)
{
  (void)json;
  (void)payload;
  ck_assert_msg(status == 0, "%s", flow_errmsg(e));
}

/* Runs the cases the way mode says; out[c] gets case c's snapshot. */
static void
run_mode(mode m, char **out)
{
  char ids[NCASES][32];
  if (m == ALONE) {
    for (int c = 0; c < NCASES; c++) {
      int p[2];
      ck_assert_int_eq(pipe(p), 0);
      pid_t pid = fork();
      ck_assert_int_ge(pid, 0);
      if (pid == 0) {
        close(p[0]);
        flow_engine *e = engine();
        open_case(e, c, ids[c], sizeof ids[c]);
        for (int k = 0; k < NEVENTS; k++)
          signal_case(e, ids[c], c, k);
        char *s = snapshot(e, ids[c]);
        size_t n = strlen(s);
        ck_assert(write(p[1], s, n) == (ssize_t)n);
        free(s);
        flow_engine_close(e);
        _exit(0);
      }
      close(p[1]);
      size_t cap = 1 << 16, n = 0;
      char *buf = malloc(cap);
      ssize_t got;
      while ((got = read(p[0], buf + n, cap - 1 - n)) > 0)
        n += (size_t)got;
      buf[n] = 0;
      close(p[0]);
      int status;
      waitpid(pid, &status, 0);
      ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      out[c] = buf;
    }
    return;
  }
  flow_engine *e = engine();
  char dir[] = "/tmp/flow-det-XXXXXX";
  if (m == LOCALE) {
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1",
             dir);
    ck_assert_msg(system(cmd) == 0, "localedef (package locales) failed");
    setenv("LOCPATH", dir, 1);
    ck_assert_ptr_nonnull(setlocale(LC_ALL, "de_DE.UTF-8"));
  }
  if (m == SHUFFLED) {
    /* Every case opened, then their events in a shuffled order that
       keeps each case's own order, with noise in between. */
    for (int c = NCASES - 1; c >= 0; c--) {
      noise(e);
      open_case(e, c, ids[c], sizeof ids[c]);
    }
    int next[NCASES] = { 0 }, left = NCASES * NEVENTS;
    unsigned seed = 7;
    while (left > 0) {
      seed = seed * 1103515245u + 12345u;
      int c = (int)((seed >> 16) % NCASES);
      if (next[c] == NEVENTS)
        continue;
      signal_case(e, ids[c], c, next[c]++);
      left--;
      if (seed & 0x100)
        noise(e);
    }
  } else if (m == GROUPED) {
    for (int c = 0; c < NCASES; c++)
      open_case(e, c, ids[c], sizeof ids[c]);
    for (int k = 0; k < NEVENTS; k++) {
      for (int c = 0; c < NCASES; c++) {
        char payload[64];
        snprintf(payload, sizeof payload, "{\"k\":%d}", c * 10 + k);
        ck_assert_int_eq(flow_case_signal_async(
                             e, ids[c], k == NEVENTS - 1 ? "done" : "work",
                             payload, NULL, done_cb, NULL),
                         0);
      }
      ck_assert_int_ge(flow_engine_run(e, FLOW_RUN_NOWAIT), 0);
    }
  } else {
    for (int c = 0; c < NCASES; c++) {
      open_case(e, c, ids[c], sizeof ids[c]);
      for (int k = 0; k < NEVENTS; k++)
        signal_case(e, ids[c], c, k);
    }
  }
  for (int c = 0; c < NCASES; c++)
    out[c] = snapshot(e, ids[c]);
  flow_engine_close(e);
  if (m == LOCALE) {
    setlocale(LC_ALL, "C");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
  }
}

START_TEST(test_determinism_every_way_of_running)
{
  static const char *const names[] = { "alone", "in sequence", "shuffled",
                                       "grouped", "in a German locale" };
  char *ref[NCASES];
  run_mode(ALONE, ref);
  /* The cases differ from each other (their payloads do). */
  ck_assert_str_ne(ref[0], ref[1]);
  ck_assert_msg(strstr(ref[0], "1.5000 2.25  -0.5|false1e+1001.4142135623731") !=
                    NULL,
                "%s", ref[0]);
  for (mode m = SEQUENCE; m <= LOCALE; m++) {
    char *got[NCASES];
    run_mode(m, got);
    for (int c = 0; c < NCASES; c++) {
      ck_assert_msg(strcmp(ref[c], got[c]) == 0,
                    "case %d %s differs from alone:\n%s\n---\n%s", c,
                    names[m], ref[c], got[c]);
      free(got[c]);
    }
  }
  for (int c = 0; c < NCASES; c++)
    free(ref[c]);
}
END_TEST

int
main(void)
{
  Suite *s = suite_create("determinism");
  TCase *tc = tcase_create("determinism");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_determinism_every_way_of_running);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
