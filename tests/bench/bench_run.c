/*
 * `flow run` under a burst: --n requests (default 200,000) written into
 * it as fast as a file can be read, first opens of missed-bin cases, then
 * an `assign` signal to each of them, against the engine's own
 * asynchronous rate on the same workload in the same run.
 *
 *   engine   flow_case_open_async / flow_case_signal_async through the C
 *            API, 1,000 per loop round (one group commit each), in a
 *            child process on a database of its own
 *   flow run `flow --db DB --now T run < requests.jsonl`, its answers read
 *            (and every one checked to be a result) through a pipe by this
 *            process; timed from the start of the process to its exit,
 *            so start-up and the last commit are included
 *
 * Both start each burst on the same state (a fresh database for the opens;
 * the N cases just opened for the signals), in the order engine, flow run.
 * One line per burst:
 *
 *   bench=run what=open|signal n=N engine_tps=E run_rps=R ratio=R/E
 *   target=0.5 PASS|BELOW rss_mb=M target=64 PASS|ABOVE
 *
 * where rss_mb is flow run's peak resident memory (ru_maxrss).  Then a
 * third burst of opens is stopped with SIGTERM once a tenth of it has been
 * answered, and the time from the signal to the process's exit is
 *
 *   bench=run what=sigterm n=N answered=A stop_ms=T target=1000 PASS|ABOVE
 *
 * The clock is fixed (Monday 30 November 2026, 09:00Z), so no timer falls
 * due.
 * Exit status: 0 measured (whatever the figures), 1 a call or a request
 * failed, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* wait4 */

#include <flow.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

#ifndef FLOW_BENCH_SERVICE
#define FLOW_BENCH_SERVICE "examples/services/missed_bin.lua"
#endif
#ifndef FLOW_BENCH_CLI
#define FLOW_BENCH_CLI "flow"
#endif

#define NOW "2026-11-30T09:00:00Z"
#define GROUP 1000

static const char *const roles[] = { "supervisor" };
static const flow_actor actor = { "bench", roles, 1 };

typedef struct config {
  long n;
  char dir[4096];
  char engine_db[4200], run_db[4200], requests[4200];
} config;

static int
write_requests(const config *c, int signals)
{
  FILE *f = fopen(c->requests, "w");
  if (f == NULL) {
    perror("bench_run: requests");
    return -1;
  }
  for (long i = 1; i <= c->n; i++) {
    if (signals)
      fprintf(f,
              "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"signal\","
              "\"params\":{\"case\":\"%ld\",\"event\":\"assign\","
              "\"payload\":{\"crew\":\"north-%ld\"},\"actor\":{\"id\":"
              "\"bench\",\"roles\":[\"supervisor\"]}}}\n",
              i, i, i % 7);
    else
      fprintf(f,
              "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"open\","
              "\"params\":{\"service\":\"missed_bin\",\"data\":{\"uprn\":"
              "\"%ld\",\"address\":\"%ld High Street\",\"bin\":\"refuse\"}}}"
              "\n",
              i, 100000000 + i, i % 300 + 1);
  }
  return fclose(f) == 0 ? 0 : -1;
}

static flow_engine *
engine_open(const char *path)
{
  flow_engine *e = NULL;
  char err[512];
  if (flow_engine_open(&e, path, NULL, err, sizeof err) != 0) {
    fprintf(stderr, "bench_run: cannot open %s: %s\n", path, err);
    return NULL;
  }
  int64_t t;
  flow_time_parse(&t, NOW);
  flow_engine_set_time(e, t);
  return e;
}

static int
prepare_db(const char *path)
{
  bench_db_remove(path);
  flow_engine *e = engine_open(path);
  if (e == NULL)
    return -1;
  int rc = flow_service_load_file(NULL, e, FLOW_BENCH_SERVICE);
  if (rc != 0)
    fprintf(stderr, "bench_run: %s\n", flow_errmsg(e));
  flow_engine_close(e);
  return rc;
}

static void
done(flow_engine *e, int status, const char *json, void *payload)
{
  long *failed = payload;
  (void)json;
  if (status != 0 && (*failed)++ == 0)
    fprintf(stderr, "bench_run: engine call: %s: %s\n",
            flow_err_name(status), flow_errmsg(e));
}

/* The engine's own rate: a child so it has its own heap and cache. */
typedef struct engine_job {
  const config *c;
  int signals;
} engine_job;

static int
engine_burst(void *ctx, void *out)
{
  engine_job *j = ctx;
  double *tps = out;
  flow_engine *e = engine_open(j->c->engine_db);
  long failed = 0;
  if (e == NULL)
    return -1;
  int64_t t0 = bench_now_ns();
  for (long i = 1; i <= j->c->n && failed == 0;) {
    for (long k = 0; k < GROUP && i <= j->c->n; k++, i++) {
      char data[160], id[24];
      int rc;
      if (j->signals) {
        snprintf(id, sizeof id, "%ld", i);
        snprintf(data, sizeof data, "{\"crew\":\"north-%ld\"}", i % 7);
        rc = flow_case_signal_async(e, id, "assign", data, &actor, done,
                                    &failed);
      } else {
        snprintf(data, sizeof data,
                 "{\"uprn\":\"%ld\",\"address\":\"%ld High Street\","
                 "\"bin\":\"refuse\"}",
                 100000000 + i, i % 300 + 1);
        rc = flow_case_open_async(e, "missed_bin", data, NULL, done,
                                  &failed);
      }
      if (rc != 0) {
        fprintf(stderr, "bench_run: %s\n", flow_errmsg(e));
        failed++;
        break;
      }
    }
    if (flow_engine_run(e, FLOW_RUN_NOWAIT) < 0)
      failed++;
  }
  double s = (double)(bench_now_ns() - t0) / 1e9;
  flow_engine_close(e);
  *tps = s > 0 ? (double)j->c->n / s : 0;
  return failed ? -1 : 0;
}

/* flow run on the request file: rate, peak RSS, every answer a result.
   With stop_after > 0, SIGTERM once that many are answered, and *stop_ms
   is the time from the signal to the exit (answers then are results or
   FLOW_ECANCELED). */
static int
run_burst(const config *c, long stop_after, double *rps, double *rss_mb,
          double *stop_ms, long *answered)
{
  int out[2];
  int in = open(c->requests, O_RDONLY);
  if (in < 0 || pipe(out) != 0) {
    perror("bench_run");
    return -1;
  }
  fflush(stdout);
  int64_t t0 = bench_now_ns();
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    dup2(in, 0);
    dup2(out[1], 1);
    close(out[0]);
    close(out[1]);
    close(in);
    execl(FLOW_BENCH_CLI, FLOW_BENCH_CLI, "--db", c->run_db, "--now", NOW,
          "run", (char *)NULL);
    _exit(127);
  }
  close(in);
  close(out[1]);
  FILE *f = fdopen(out[0], "r");
  char *line = NULL;
  size_t cap = 0;
  long answers = 0, results = 0, cancelled = 0;
  int64_t signalled = 0;
  while (getline(&line, &cap, f) > 0) {
    answers++;
    if (strstr(line, "\"result\":") != NULL)
      results++;
    else if (signalled && strstr(line, "FLOW_ECANCELED") != NULL)
      cancelled++;
    else if (answers - results <= 3)
      fprintf(stderr, "bench_run: %s", line);
    if (stop_after > 0 && answers == stop_after) {
      kill(pid, SIGTERM);
      signalled = bench_now_ns();
    }
  }
  free(line);
  fclose(f);
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
    ;
  int64_t end = bench_now_ns();
  double s = (double)(end - t0) / 1e9;
  *rps = s > 0 ? (double)answers / s : 0;
  *rss_mb = (double)ru.ru_maxrss / 1024.0;
  *answered = answers;
  if (stop_after > 0) {
    *stop_ms = signalled ? (double)(end - signalled) / 1e6 : -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !signalled ||
        results + cancelled != answers) {
      fprintf(stderr, "bench_run: stopped flow run: status %d, %ld answers, "
              "%ld results, %ld cancelled\n", status, answers, results,
              cancelled);
      return -1;
    }
    return 0;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || results != c->n) {
    fprintf(stderr, "bench_run: flow run: status %d, %ld of %ld results\n",
            status, results, c->n);
    return -1;
  }
  return 0;
}

static int
burst(const config *c, int signals)
{
  double tps = 0, rps = 0, rss = 0, stop_ms = 0;
  long answered = 0;
  engine_job j = { c, signals };
  if (write_requests(c, signals) != 0 ||
      bench_in_child(engine_burst, &j, &tps, sizeof tps) != 0 ||
      run_burst(c, 0, &rps, &rss, &stop_ms, &answered) != 0)
    return -1;
  double ratio = tps > 0 ? rps / tps : 0;
  printf("bench=run what=%s n=%ld engine_tps=%.0f run_rps=%.0f ratio=%.3f"
         " target=0.5 %s rss_mb=%.1f target=64 %s\n",
         signals ? "signal" : "open", c->n, tps, rps, ratio,
         ratio >= 0.5 ? "PASS" : "BELOW", rss, rss < 64 ? "PASS" : "ABOVE");
  fflush(stdout);
  return 0;
}

/* SIGTERM in the middle of a burst of opens: how long until it exits. */
static int
stop_burst(const config *c)
{
  double rps = 0, rss = 0, stop_ms = 0;
  long answered = 0, at = c->n / 10 > 0 ? c->n / 10 : 1;
  if (write_requests(c, 0) != 0 ||
      run_burst(c, at, &rps, &rss, &stop_ms, &answered) != 0)
    return -1;
  printf("bench=run what=sigterm n=%ld answered=%ld stop_ms=%.1f target=1000"
         " %s\n",
         c->n, answered, stop_ms, stop_ms < 1000 ? "PASS" : "ABOVE");
  fflush(stdout);
  return 0;
}

int
main(int argc, char **argv)
{
  static config c;
  const char *dir_arg = NULL;
  c.n = 200000;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
      c.n = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
      dir_arg = argv[++i];
    else {
      fprintf(stderr, "usage: bench_run [--n N] [--dir DIR]\n");
      return 2;
    }
  }
  if (c.n < 1) {
    fprintf(stderr, "bench_run: --n must be at least 1\n");
    return 2;
  }
  int made = 0;
  if (bench_dir_init(c.dir, sizeof c.dir, dir_arg, &made) != 0)
    return 1;
  snprintf(c.engine_db, sizeof c.engine_db, "%s/run-engine.db", c.dir);
  snprintf(c.run_db, sizeof c.run_db, "%s/run-cli.db", c.dir);
  snprintf(c.requests, sizeof c.requests, "%s/requests.jsonl", c.dir);
  int status = 0;
  if (prepare_db(c.engine_db) != 0 || prepare_db(c.run_db) != 0 ||
      burst(&c, 0) != 0 || burst(&c, 1) != 0 || stop_burst(&c) != 0)
    status = 1;
  bench_db_remove(c.engine_db);
  bench_db_remove(c.run_db);
  unlink(c.requests);
  bench_dir_done(c.dir, made);
  return status;
}
