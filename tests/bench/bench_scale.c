/*
 * Scale, issue 6 item 3: one database with --cases N open cases (default
 * 1,000,000), each with one pending timer, and what a host sees when it
 * starts on it: how long opening the engine takes, listing 100 cases in
 * one state, firing the next due timer, what a transition costs with N
 * cases compared with the same transition on a nearly empty database, and
 * the resident memory all that needs.
 *
 * The service (embedded below) starts every case in "waiting" with
 * `after = { ["30d"] = "late" }`, so each case holds one timer.  The
 * database is built with asynchronous opens, --group of them (default
 * 10,000) per loop round, i.e. per group commit.  flow_engine_set_time
 * would give every case of a group the same instant, so the build runs the
 * engine on a host clock (flow_engine_options.clock) that moves on by one
 * millisecond at every reading: each case gets its own opening time and
 * due time, and "the next due timer" is exactly one timer.
 *
 * The measurements run in a fresh child process, as a host starting up
 * would: open the engine, list, fix the clock (flow_engine_set_time) at
 * the earliest due time and call flow_engine_fire_due, then --samples
 * synchronous transitions ("touch", which stays in its state and so leaves
 * the timers alone) on random cases.  The same transitions were measured
 * during the build, right after the first group, on a database of --group
 * cases.  Each figure is one line:
 *
 *   bench=scale what=NAME value=V [target=T PASS|ABOVE]
 *
 * With --reuse the database in --dir (default /tmp/flow-bench-scale) is
 * kept, and used again when it holds exactly N cases of this service, so
 * the build (and the start-of-build figure) is skipped; without it the
 * database lives in a fresh temporary directory and is removed.  Exit
 * status: 0 measured (whatever the targets say), 1 a call failed, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <flow.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

static const char scale_service[] =
  "-- One pending timer per case: the scale benchmark's service.\n"
  "return {\n"
  "  name = 'scale_bench',\n"
  "  version = 1,\n"
  "  title = 'A case that turns late after 30 days',\n"
  "  fields = {\n"
  "    ref = { type = 'string', required = true, max = 20, index = true },\n"
  "    address = { type = 'string', max = 200 },\n"
  "    touches = { type = 'integer' },\n"
  "  },\n"
  "  initial = 'waiting',\n"
  "  states = {\n"
  "    waiting = {\n"
  "      after = { ['30d'] = 'late' },\n"
  "      on = {\n"
  "        touch = function(case)\n"
  "          case.data.touches = (case.data.touches or 0) + 1\n"
  "        end,\n"
  "      },\n"
  "    },\n"
  "    late = {\n"
  "      on = {\n"
  "        touch = function(case)\n"
  "          case.data.touches = (case.data.touches or 0) + 1\n"
  "        end,\n"
  "      },\n"
  "    },\n"
  "  },\n"
  "}\n";

static const char *const actor_roles[] = { "staff" };
static const flow_actor actor = { "bench", actor_roles, 1 };

/* What the children hand back to the parent through a pipe. */
typedef struct figures {
  double start_p50_us; /* 0: not measured (a reused database) */
  double end_p50_us;
} figures;

typedef struct config {
  long cases;
  long group;
  long samples;
  int reuse;
  char dir[4096];
  char path[4200];
} config;

/* The build's host clock: one millisecond later at every reading. */
typedef struct fake_clock {
  int64_t ms;
} fake_clock;

static int64_t
fake_now(void *payload)
{
  fake_clock *c = payload;
  return c->ms++;
}

static void
line(const char *what, double value, const char *fmt)
{
  printf("bench=scale what=%s value=", what);
  printf(fmt, value);
  printf("\n");
}

static void
line_target(const char *what, double value, double target)
{
  printf("bench=scale what=%s value=%.2f target=%g %s\n", what, value, target,
         value <= target ? "PASS" : "ABOVE");
}

static double
ms_since(int64_t t0)
{
  return (double)(bench_now_ns() - t0) / 1e6;
}

static flow_engine *
engine_open(const config *cfg, fake_clock *clock)
{
  flow_engine_options opts = FLOW_ENGINE_OPTIONS_INIT;
  if (clock) {
    opts.clock = fake_now;
    opts.clock_payload = clock;
  }
  flow_engine *e = NULL;
  char err[512];
  if (flow_engine_open(&e, cfg->path, &opts, err, sizeof err) != 0) {
    fprintf(stderr, "bench_scale: cannot open %s: %s\n", cfg->path, err);
    return NULL;
  }
  return e;
}

static int
load_service(flow_engine *e)
{
  char *out = NULL;
  int rc = flow_service_load_string(&out, e, scale_service,
                                    sizeof scale_service - 1,
                                    "scale_bench.lua");
  if (rc != 0)
    fprintf(stderr, "bench_scale: loading the service: %s\n",
            flow_errmsg(e));
  flow_free(out);
  return rc;
}

/* xorshift64*: the same "random" cases every run. */
static uint64_t
next_random(uint64_t *s)
{
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

/* samples synchronous touches on random cases 1..upto; mean in *mean_us. */
static int
touch_sample(flow_engine *e, long upto, long samples, double *mean_us,
             bench_hist *h)
{
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  int64_t total = 0;
  for (long k = 0; k < samples; k++) {
    char id[24];
    long pick = (long)(next_random(&seed) % (uint64_t)upto) + 1;
    snprintf(id, sizeof id, "%ld", pick);
    int64_t t0 = bench_now_ns();
    int rc = flow_case_signal(NULL, e, id, "touch", NULL, &actor);
    int64_t dt = bench_now_ns() - t0;
    if (rc != 0) {
      fprintf(stderr, "bench_scale: touch case %s: %s: %s\n", id,
              flow_err_name(rc), flow_errmsg(e));
      return rc;
    }
    total += dt;
    bench_hist_add(h, dt);
  }
  *mean_us = samples ? (double)total / (double)samples / 1e3 : 0;
  return 0;
}

/* ---- building ----------------------------------------------------------- */

typedef struct build {
  flow_engine *e;
  long done;
  int failed;
} build;

static void
opened(flow_engine *e, int status, const char *case_json, void *payload)
{
  build *b = payload;
  b->done++;
  if (status != 0 && !b->failed) {
    fprintf(stderr, "bench_scale: open: %s: %s\n", flow_err_name(status),
            flow_errmsg(e));
    b->failed = 1;
  }
}

/* Opens cases first..first+count-1 in one group commit. */
static int
open_group(build *b, long first, long count)
{
  char data[128];
  b->done = 0;
  for (long i = first; i < first + count; i++) {
    snprintf(data, sizeof data,
             "{\"ref\":\"R%08ld\",\"address\":\"%ld High Street\"}", i, i);
    int rc = flow_case_open_async(b->e, "scale_bench", data, &actor, opened,
                                  b);
    if (rc != 0) {
      fprintf(stderr, "bench_scale: queueing an open: %s\n",
              flow_errmsg(b->e));
      return rc;
    }
  }
  for (int rounds = 0; b->done < count; rounds++) {
    int rc = flow_engine_run(b->e, FLOW_RUN_NOWAIT);
    if (rc < 0 || rounds > 1000) {
      fprintf(stderr,
              "bench_scale: flow_engine_run(NOWAIT) gave %d after %d rounds "
              "with %ld of %ld callbacks: %s\n",
              rc, rounds, b->done, count, flow_errmsg(b->e));
      return FLOW_ERROR;
    }
  }
  return b->failed ? FLOW_ERROR : 0;
}

/* Builds the database; prints the build figures and the transition cost
   on the small database right after the first group. */
static int
build_db(const config *cfg, figures *fig)
{
  fake_clock clock;
  if (flow_time_parse(&clock.ms, "2026-01-05T09:00:00Z") != 0)
    return FLOW_ERROR;
  build b = { NULL, 0, 0 };
  if ((b.e = engine_open(cfg, &clock)) == NULL)
    return FLOW_ERROR;
  int rc = load_service(b.e);
  long group = cfg->group < cfg->cases ? cfg->group : cfg->cases;
  long ngroups = (cfg->cases + group - 1) / group;
  double first_ms = 0, last_ms = 0, start_us = 0;
  bench_hist *h = calloc(1, sizeof *h);
  if (h == NULL)
    rc = FLOW_ENOMEM;
  int64_t t0 = bench_now_ns(), busy = 0;
  for (long g = 0; rc == 0 && g < ngroups; g++) {
    long first = g * group + 1;
    long left = cfg->cases - first + 1;
    long count = left < group ? left : group;
    int64_t g0 = bench_now_ns();
    rc = open_group(&b, first, count);
    double ms = ms_since(g0);
    busy += bench_now_ns() - g0;
    if (g == 0) {
      first_ms = ms / (double)count;
      /* The cost of a transition while the database is small. */
      if (rc == 0)
        rc = touch_sample(b.e, count, cfg->samples, &start_us, h);
    }
    if (g == ngroups - 1)
      last_ms = ms / (double)count;
  }
  double seconds = (double)(bench_now_ns() - t0) / 1e9;
  long rss, hwm;
  bench_rss_kb(&rss, &hwm);
  flow_engine_close(b.e);
  if (rc == 0) {
    line("cases", (double)cfg->cases, "%.0f");
    line("build_seconds", seconds, "%.1f");
    line("build_opens_per_s", (double)cfg->cases / ((double)busy / 1e9),
         "%.0f");
    line("build_open_us_first_group", first_ms * 1e3, "%.1f");
    line("build_open_us_last_group", last_ms * 1e3, "%.1f");
    line("build_rss_peak_mb", (double)hwm / 1024.0, "%.1f");
    line("transition_us_start", start_us, "%.1f");
    fig->start_p50_us = (double)bench_hist_quantile(h, 0.50) / 1e3;
    line("transition_p50_us_start", fig->start_p50_us, "%.1f");
    line("transition_p99_us_start",
         (double)bench_hist_quantile(h, 0.99) / 1e3, "%.1f");
  }
  free(h);
  return rc;
}

/* ---- measuring ---------------------------------------------------------- */

/* The due time of the earliest pending timer, read without timing: the
   lowest-numbered case still waiting opened first, so its timer is the
   earliest. */
static int
earliest_due(flow_engine *e, int64_t *due)
{
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.state = "waiting";
  q.limit = 1;
  char *list = NULL, *timers = NULL;
  int rc = flow_case_list(&list, e, &q);
  char id[24] = "";
  const char *p = list ? strstr(list, "\"id\":\"") : NULL;
  if (rc == 0 && p) {
    p += 6;
    size_t n = strcspn(p, "\"");
    if (n < sizeof id) {
      memcpy(id, p, n);
      id[n] = 0;
    }
  }
  if (rc == 0 && id[0])
    rc = flow_case_timers(&timers, e, id);
  p = timers ? strstr(timers, "\"due_at\":\"") : NULL;
  char at[40] = "";
  if (rc == 0 && p) {
    p += 10;
    size_t n = strcspn(p, "\"");
    if (n < sizeof at) {
      memcpy(at, p, n);
      at[n] = 0;
    }
  }
  if (rc == 0 && (at[0] == 0 || flow_time_parse(due, at) != 0))
    rc = FLOW_ENOTFOUND;
  if (rc != 0)
    fprintf(stderr, "bench_scale: no waiting case with a timer: %s\n",
            flow_errmsg(e));
  flow_free(list);
  flow_free(timers);
  return rc;
}

static int
measure(const config *cfg, figures *fig)
{
  int64_t t0 = bench_now_ns();
  flow_engine *e = engine_open(cfg, NULL);
  if (e == NULL)
    return FLOW_ERROR;
  double open_ms = ms_since(t0);

  t0 = bench_now_ns();
  int rc = load_service(e);
  double load_ms = ms_since(t0);

  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.state = "waiting";
  q.limit = 100;
  char *out = NULL;
  t0 = bench_now_ns();
  if (rc == 0 && (rc = flow_case_list(&out, e, &q)) != 0)
    fprintf(stderr, "bench_scale: list: %s\n", flow_errmsg(e));
  double list_ms = ms_since(t0);
  flow_free(out);

  int64_t due = 0;
  if (rc == 0)
    rc = earliest_due(e, &due);
  size_t fired = 0;
  double fire_ms = 0;
  if (rc == 0) {
    flow_engine_set_time(e, due);
    t0 = bench_now_ns();
    if ((rc = flow_engine_fire_due(e, &fired)) != 0)
      fprintf(stderr, "bench_scale: fire_due: %s\n", flow_errmsg(e));
    fire_ms = ms_since(t0);
    if (rc == 0 && fired != 1) {
      fprintf(stderr, "bench_scale: %zu timers fired, expected 1\n", fired);
      rc = FLOW_ERROR;
    }
  }

  /* The rare state now holds at least the case just fired. */
  q.state = "late";
  out = NULL;
  t0 = bench_now_ns();
  if (rc == 0 && (rc = flow_case_list(&out, e, &q)) != 0)
    fprintf(stderr, "bench_scale: list: %s\n", flow_errmsg(e));
  double late_ms = ms_since(t0);
  flow_free(out);

  double end_us = 0;
  bench_hist *h = calloc(1, sizeof *h);
  if (rc == 0)
    rc = h ? touch_sample(e, cfg->cases, cfg->samples, &end_us, h)
           : FLOW_ENOMEM;
  long rss, hwm;
  bench_rss_kb(&rss, &hwm);
  flow_engine_close(e);
  if (rc == 0) {
    line_target("open_ms", open_ms, 100);
    line("load_service_ms", load_ms, "%.2f");
    line_target("list_ms", list_ms, 100);
    line_target("fire_next_ms", fire_ms, 100);
    line_target("list_late_ms", late_ms, 100);
    line("transition_us_end", end_us, "%.1f");
    fig->end_p50_us = (double)bench_hist_quantile(h, 0.50) / 1e3;
    line("transition_p50_us_end", fig->end_p50_us, "%.1f");
    line("transition_p99_us_end", (double)bench_hist_quantile(h, 0.99) / 1e3,
         "%.1f");
    line_target("rss_mb", (double)rss / 1024.0, 64);
    line_target("rss_peak_mb", (double)hwm / 1024.0, 64);
  }
  free(h);
  return rc;
}

/* ---- reuse, processes, options -------------------------------------- */

/* 1 when the database holds exactly cfg->cases cases of this service. */
static int
reusable(const config *cfg)
{
  if (access(cfg->path, R_OK) != 0)
    return 0;
  flow_engine *e = engine_open(cfg, NULL);
  if (e == NULL)
    return 0;
  char id[24], *out = NULL;
  int ok = load_service(e) == 0;
  snprintf(id, sizeof id, "%ld", cfg->cases);
  ok = ok && flow_case_get(&out, e, id) == 0 &&
       strstr(out, "\"service\":\"scale_bench\"") != NULL;
  flow_free(out);
  out = NULL;
  snprintf(id, sizeof id, "%ld", cfg->cases + 1);
  ok = ok && flow_case_get(&out, e, id) == FLOW_ENOTFOUND;
  flow_free(out);
  flow_engine_close(e);
  return ok;
}

/* A step for bench_in_child. */
typedef struct step_job {
  int (*fn)(const config *, figures *);
  const config *cfg;
} step_job;

static int
step_in_child(void *ctx, void *out)
{
  step_job *j = ctx;
  return j->fn(j->cfg, out);
}

/* Runs fn in a fresh process and reads back the figures it filled in. */
static int
in_child(int (*fn)(const config *, figures *), const config *cfg,
         figures *fig)
{
  step_job j = { fn, cfg };
  return bench_in_child(step_in_child, &j, fig, sizeof *fig);
}

static void
usage(FILE *f)
{
  fprintf(f,
          "usage: bench_scale [--cases N] [--dir DIR] [--reuse] "
          "[--group K] [--samples S]\n"
          "  --cases N    open cases, one pending timer each (default "
          "1000000)\n"
          "  --dir DIR    where the database goes (default a fresh "
          "/tmp/flow-bench-*,\n"
          "               removed afterwards; with --reuse "
          "/tmp/flow-bench-scale)\n"
          "  --reuse      keep the database, and use it again when it holds "
          "N cases\n"
          "  --group K    asynchronous opens per group commit while "
          "building\n"
          "               (default 10000)\n"
          "  --samples S  transitions timed at the start and at the end "
          "(default 2000)\n");
}

static int
parse_long(const char *s, long *out)
{
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *s == 0 || *end || v < 1)
    return -1;
  *out = v;
  return 0;
}

int
main(int argc, char **argv)
{
  config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.cases = 1000000;
  cfg.group = 10000;
  cfg.samples = 2000;
  const char *dir = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "--reuse") == 0) {
      cfg.reuse = 1;
      continue;
    }
    const char *v = i + 1 < argc ? argv[++i] : NULL;
    int bad = v == NULL;
    if (bad)
      ;
    else if (strcmp(a, "--cases") == 0)
      bad = parse_long(v, &cfg.cases);
    else if (strcmp(a, "--group") == 0)
      bad = parse_long(v, &cfg.group);
    else if (strcmp(a, "--samples") == 0)
      bad = parse_long(v, &cfg.samples);
    else if (strcmp(a, "--dir") == 0)
      dir = v;
    else
      bad = 1;
    if (bad) {
      fprintf(stderr, "bench_scale: bad option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (dir == NULL && cfg.reuse)
    dir = "/tmp/flow-bench-scale";
  int made = 0;
  if (bench_dir_init(cfg.dir, sizeof cfg.dir, dir, &made) != 0)
    return 2;
  snprintf(cfg.path, sizeof cfg.path, "%s/scale.db", cfg.dir);

  int rc = 0;
  figures fig = { 0, 0 };
  if (cfg.reuse && reusable(&cfg)) {
    line("cases", (double)cfg.cases, "%.0f");
    line("reused", 1, "%.0f");
  } else {
    bench_db_remove(cfg.path);
    rc = in_child(build_db, &cfg, &fig);
  }
  if (rc == 0)
    rc = in_child(measure, &cfg, &fig);
  /* Median against median: the means carry the checkpoints' fsyncs. */
  if (rc == 0 && fig.start_p50_us > 0)
    line_target("transition_growth", fig.end_p50_us / fig.start_p50_us,
                1.5);
  if (!cfg.reuse) {
    bench_db_remove(cfg.path);
    bench_dir_done(cfg.dir, made);
  }
  return rc == 0 ? 0 : 1;
}
