/*
 * Actions through the loop: --n cases (default 20,000) each ask for one
 * action (flow.call with a reply event), and an in-process handler answers
 * every request at once.  Three phases on one database, fixed clock:
 *
 *   open   N cases opened asynchronously, 1,000 per group commit: the
 *          reference rate of an asynchronous transition that asks for
 *          nothing
 *   ask    each case gets `go`, asynchronously, whose handler calls
 *          flow.call("bench.ping", ..., { reply = "pong" })
 *   answer the handler is registered and the loop runs
 *          (flow_engine_run NOWAIT) until every request is dispatched,
 *          answered, and its reply applied (every case in `done`)
 *
 * One line:
 *
 *   bench=actions n=N open_tps=X ask_tps=Y answer_tps=Z ratio=R target=0.5
 *
 * answer_tps is requests dispatched and answered, their reply applied,
 * per second; ratio is answer_tps / open_tps, the target being at
 * least 0.5.  Exit status: 0 measured (whatever the ratio) and every case
 * in done, 1 a call failed or a case is wrong, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <flow.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static const char service[] =
  "return {\n"
  "  name = 'ping', version = 1,\n"
  "  fields = { ref = { type = 'string', max = 20 } },\n"
  "  initial = 'a',\n"
  "  states = {\n"
  "    a = { on = { go = function(case, ev)\n"
  "      flow.call('bench.ping', { ref = case.data.ref }, { reply = 'pong' })\n"
  "      return 'b'\n"
  "    end } },\n"
  "    b = { on = { pong = 'done' } },\n"
  "    done = { final = true },\n"
  "  },\n"
  "}\n";

#define GROUP 1000

typedef struct state {
  long failed, answered;
  char (*ids)[24];
  long nids;
} state;

static void
opened(flow_engine *e, int status, const char *json, void *payload)
{
  state *s = payload;
  if (status != 0) {
    if (s->failed++ == 0)
      fprintf(stderr, "bench_actions: %s: %s\n", flow_err_name(status),
              flow_errmsg(e));
    return;
  }
  const char *p = strstr(json, "\"id\":\"");
  if (p)
    snprintf(s->ids[s->nids++], 24, "%.*s", (int)strcspn(p + 6, "\""),
             p + 6);
}

static void
signalled(flow_engine *e, int status, const char *json, void *payload)
{
  state *s = payload;
  (void)json;
  if (status != 0 && s->failed++ == 0)
    fprintf(stderr, "bench_actions: go: %s: %s\n", flow_err_name(status),
            flow_errmsg(e));
}

static void
answer(flow_engine *e, const flow_request *req, void *payload)
{
  state *s = payload;
  if (flow_action_complete(e, req->id, "{\"ok\":true}") == 0)
    s->answered++;
  else if (s->failed++ == 0)
    fprintf(stderr, "bench_actions: complete: %s\n", flow_errmsg(e));
}

static int
flush(flow_engine *e)
{
  return flow_engine_run(e, FLOW_RUN_NOWAIT) < 0 ? -1 : 0;
}

int
main(int argc, char **argv)
{
  long n = 20000;
  const char *dir_arg = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
      n = atol(argv[++i]);
    else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
      dir_arg = argv[++i];
    else {
      fprintf(stderr, "usage: bench_actions [--n N] [--dir DIR]\n");
      return 2;
    }
  }
  if (n <= 0)
    return 2;
  char dir[512], path[600];
  int made = 0;
  if (bench_dir_init(dir, sizeof dir, dir_arg, &made) != 0)
    return 1;
  snprintf(path, sizeof path, "%s/actions.db", dir);
  bench_db_remove(path);

  flow_engine *e = NULL;
  char err[512];
  if (flow_engine_open(&e, path, NULL, err, sizeof err) != 0) {
    fprintf(stderr, "bench_actions: %s\n", err);
    return 1;
  }
  int64_t t0;
  flow_time_parse(&t0, "2026-11-30T09:00:00Z");
  flow_engine_set_time(e, t0);
  if (flow_service_load_string(NULL, e, service, sizeof service - 1,
                               "ping.lua") != 0) {
    fprintf(stderr, "bench_actions: %s\n", flow_errmsg(e));
    return 1;
  }
  state s = { 0, 0, calloc((size_t)n, 24), 0 };
  if (s.ids == NULL)
    return 1;

  int64_t a = bench_now_ns();
  for (long done = 0; done < n && s.failed == 0;) {
    for (long k = 0; k < GROUP && done < n; k++, done++)
      if (flow_case_open_async(e, "ping", "{\"ref\":\"r\"}", NULL, opened,
                               &s) != 0)
        s.failed++;
    if (flush(e) != 0)
      s.failed++;
  }
  int64_t b = bench_now_ns();
  for (long done = 0; done < s.nids && s.failed == 0;) {
    for (long k = 0; k < GROUP && done < s.nids; k++, done++)
      if (flow_case_signal_async(e, s.ids[done], "go", NULL, NULL, signalled,
                                 &s) != 0)
        s.failed++;
    if (flush(e) != 0)
      s.failed++;
  }
  int64_t c = bench_now_ns();
  if (flow_action_register(e, "bench.ping", answer, &s) != 0)
    s.failed++;
  while (s.answered < n && s.failed == 0) {
    long before = s.answered;
    if (flush(e) != 0)
      s.failed++;
    if (s.answered == before && flow_engine_fire_due(e, NULL) != 0)
      s.failed++;
    if (s.answered == before)
      break; /* nothing more is coming */
  }
  int64_t d = bench_now_ns();

  /* Every case must be done: the reply of each request applied once. */
  char *out = NULL;
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.state = "done";
  q.limit = (size_t)n + 1;
  long in_done = 0;
  if (flow_case_list(&out, e, &q) == 0) {
    for (const char *p = out; (p = strstr(p, "\"state\":\"done\"")); p++)
      in_done++;
    flow_free(out);
  }
  flow_engine_close(e);
  free(s.ids);
  bench_db_remove(path);
  bench_dir_done(dir, made);

  double open_s = (double)(b - a) / 1e9, ask_s = (double)(c - b) / 1e9,
         ans_s = (double)(d - c) / 1e9;
  double open_tps = (double)n / open_s, ask_tps = (double)n / ask_s,
         ans_tps = (double)s.answered / ans_s;
  double ratio = ans_tps / open_tps;
  printf("bench=actions n=%ld open_tps=%.0f ask_tps=%.0f answer_tps=%.0f "
         "ratio=%.3f target=0.5 %s\n",
         n, open_tps, ask_tps, ans_tps, ratio, ratio >= 0.5 ? "OK" : "BELOW");
  if (s.failed || s.answered != n || in_done != n) {
    fprintf(stderr,
            "bench_actions: %ld failures, %ld of %ld answered, %ld done\n",
            s.failed, s.answered, n, in_done);
    return 1;
  }
  return 0;
}
