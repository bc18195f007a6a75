/*
 * The bins workload: N missed-bin cases, each opened and moved by assign,
 * schedule and collect (4 transitions per case, every one through a Lua
 * handler, validated and durable), measured in three engine modes for two
 * services against the physical limit of the workload (issue 15).
 *
 *   sync           flow_case_open/flow_case_signal, one commit per call,
 *                  synchronous=NORMAL
 *   async          flow_case_open_async/flow_case_signal_async, GROUP calls
 *                  queued and then one flow_engine_run(NOWAIT) round, which
 *                  applies them in one group commit
 *   full           as sync with synchronous=FULL
 *
 * Each mode runs the minimal service (tests/bench/minimal_bins.lua: four
 * states, the data the events add, no indexed fields, patterns, timers or
 * service level; mode names *_minimal) and the missed-bin example (with
 * its indexed fields, patterns, service level and escalation timer).
 * The physical limit is ../shared/bench/sqlite_raw_bins.c (built beside
 * this when that file is there): prepared statements, WAL, one current
 * row per case and one history row per transition, nothing else, in
 * modes peer_each (one transaction per transition), peer_batch (GROUP
 * per transaction) and peer_full (one per transaction, FULL).  Our own
 * heavier baseline, which writes the engine's cases and history tables
 * with their indexes (raw_each, raw_batched, raw_each_full), runs only
 * when named in --modes: it shows where the time goes, it is not the
 * target.
 *
 * Engine cases go through in blocks of GROUP (default 1000): open the
 * block, then assign it, schedule it, collect it.  The peer runs each
 * case's four transitions in a row, on a fresh database of its own per
 * slice, as it insists.
 *
 * The members of a mode's group (peer, minimal, example, own baseline)
 * run in --slices parts (default 10), alternating: peer cases 1-10,000,
 * minimal 1-10,000, example 1-10,000, peer 10,001-20,000, and so on,
 * each part in a child process of its own.  Whatever else the machine
 * does meanwhile (this is measured on shared 2-core machines) falls on
 * all alike, which keeps the ratios steady.  Seconds are the sum of the
 * parts' transition time (not process start-up or engine opening),
 * latencies are merged, and the resident memory is the largest VmHWM of
 * the parts.  Each mode prints
 *
 *   bench=bins mode=M n=N transitions=T seconds=S tps=X p50_us=P
 *   p99_us=Q rss_mb=R
 *
 * (the peer prints no latencies), then what it wrote per transition
 * (WAL, checkpoints, everything its processes wrote, from /proc/self/io;
 * a reaped child's writes count for its parent):
 *
 *   bench=bins_io mode=M write_kb_per_t=K writes_per_t=W
 *
 * The last lines give the minimal service's throughput over the peer's
 * and its bytes per transition over the peer's, next to the issue's
 * targets, and the example's throughput over the minimal service's.  The
 * engine clock is fixed (Monday 2 November 2026, 10:00 UTC) so every run
 * computes the same working-day deadlines and no timer falls due.
 *
 * The full modes pay an fsync per commit, so they run on --full-n cases
 * (default the smaller of N and 20,000: 80,000 fsyncs), which the printed
 * n shows; the ratio is per transition, so it does not depend on n.
 * Exit status: 0 measured (whatever the ratios), 1 a call failed, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <flow.h>
#include <sqlite3.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

#ifndef FLOW_BENCH_SERVICE
#define FLOW_BENCH_SERVICE "examples/services/missed_bin.lua"
#endif
#ifndef FLOW_BENCH_MINIMAL
#define FLOW_BENCH_MINIMAL "tests/bench/minimal_bins.lua"
#endif
/* The physical limit, built from ../shared/bench/sqlite_raw_bins.c when
   that was there at configure time; "" otherwise. */
#ifndef FLOW_BENCH_PEER
#define FLOW_BENCH_PEER ""
#endif

enum {
  M_RAW_EACH,
  M_SYNC,
  M_RAW_BATCHED,
  M_ASYNC,
  M_RAW_EACH_FULL,
  M_FULL,
  M_PEER_EACH,
  M_SYNC_MIN,
  M_PEER_BATCH,
  M_ASYNC_MIN,
  M_PEER_FULL,
  M_FULL_MIN,
  M_COUNT
};

static const char *const mode_name[M_COUNT] = {
  [M_RAW_EACH] = "raw_each",           [M_SYNC] = "sync",
  [M_RAW_BATCHED] = "raw_batched",     [M_ASYNC] = "async",
  [M_RAW_EACH_FULL] = "raw_each_full", [M_FULL] = "full",
  [M_PEER_EACH] = "peer_each",         [M_SYNC_MIN] = "sync_minimal",
  [M_PEER_BATCH] = "peer_batch",       [M_ASYNC_MIN] = "async_minimal",
  [M_PEER_FULL] = "peer_full",         [M_FULL_MIN] = "full_minimal",
};

/* What runs together, interleaved slice by slice: the physical limit
   (sqlite_raw_bins.c), the minimal service, the missed-bin example, and
   our own heavier baseline when asked for. */
static const int groups[3][4] = {
  { M_PEER_EACH, M_RAW_EACH, M_SYNC_MIN, M_SYNC },
  { M_PEER_BATCH, M_RAW_BATCHED, M_ASYNC_MIN, M_ASYNC },
  { M_PEER_FULL, M_RAW_EACH_FULL, M_FULL_MIN, M_FULL },
};

static int
is_peer(int mode)
{
  return mode == M_PEER_EACH || mode == M_PEER_BATCH || mode == M_PEER_FULL;
}

static int
is_raw(int mode)
{
  return mode == M_RAW_EACH || mode == M_RAW_BATCHED ||
         mode == M_RAW_EACH_FULL;
}

/* sync, async or full, for an engine mode of either service. */
static int
engine_kind(int mode)
{
  return mode == M_SYNC_MIN ? M_SYNC : mode == M_ASYNC_MIN ? M_ASYNC
         : mode == M_FULL_MIN ? M_FULL : mode;
}

/* The events after opening, their payloads built per case. */
static const char *const phase_event[4] = { "open", "assign", "schedule",
                                            "collect" };
static const char *const phase_from[4] = { NULL, "reported", "assigned",
                                           "scheduled" };
static const char *const phase_to[4] = { "reported", "assigned", "scheduled",
                                         "closed" };

/* The actor: no transition on the happy path needs a role (only
   cannot_access and the escalated collect do), but a crew supervisor
   holds both, so nothing the service could ask for is missing. */
static const char *const actor_roles[] = { "crew", "supervisor" };
static const flow_actor actor = { "bench", actor_roles, 2 };
#define ACTOR_JSON "{\"id\":\"bench\",\"roles\":[\"crew\",\"supervisor\"]}"

typedef struct config {
  long n;
  long full_n;
  long group;
  long slices;
  const char *service;
  const char *minimal;  /* the minimal service */
  const char *peer;     /* sqlite_raw_bins, or NULL when not built */
  char dir[4096];
  int want[M_COUNT];
} config;

/* What a child reports for its slice, and the sum over the slices. */
typedef struct result {
  int ok;
  long n;
  double seconds;
  long hwm_kb;
  long long wbytes, wcalls; /* written by the slice (WAL, database, ...) */
  bench_hist hist;
} result;

/* One slice of one mode, in the child process: cases first..last. */
typedef struct run {
  const config *cfg;
  long first, last;
  bench_hist *hist;
  int64_t start_ms; /* the fixed engine clock */
  const char *service; /* the script this slice loads */
  flow_engine *e;
  char (*ids)[24]; /* case ids of the current block */
  long done;       /* async completions in the current group */
  int failed;
} run;

/* ---- the workload's JSON ------------------------------------------------ */

static void
open_data(char *buf, size_t len, long i)
{
  snprintf(buf, len,
           "{\"uprn\":\"1000%ld\",\"address\":\"%ld High Street\","
           "\"bin\":\"refuse\",\"reported_by\":\"citizen\"}",
           i, i);
}

static void
phase_payload(char *buf, size_t len, int phase, long i)
{
  if (phase == 1)
    snprintf(buf, len, "{\"crew\":\"crew-%ld\"}", i % 10);
  else if (phase == 2)
    snprintf(buf, len, "{\"date\":\"2026-12-01\"}");
  else
    snprintf(buf, len, "{}");
}

/* case.data as the engine stores it after phase: compact, keys sorted. */
static void
stored_data(char *buf, size_t len, int phase, long i)
{
  switch (phase) {
  case 0:
    snprintf(buf, len,
             "{\"address\":\"%ld High Street\",\"bin\":\"refuse\","
             "\"reported_by\":\"citizen\",\"uprn\":\"1000%ld\"}",
             i, i);
    break;
  case 1:
    snprintf(buf, len,
             "{\"address\":\"%ld High Street\",\"bin\":\"refuse\","
             "\"crew\":\"crew-%ld\",\"reported_by\":\"citizen\","
             "\"uprn\":\"1000%ld\"}",
             i, i % 10, i);
    break;
  case 2:
    snprintf(buf, len,
             "{\"address\":\"%ld High Street\",\"bin\":\"refuse\","
             "\"crew\":\"crew-%ld\",\"reported_by\":\"citizen\","
             "\"scheduled_for\":\"2026-12-01\",\"uprn\":\"1000%ld\"}",
             i, i % 10, i);
    break;
  default:
    snprintf(buf, len,
             "{\"address\":\"%ld High Street\",\"bin\":\"refuse\","
             "\"collected\":true,\"crew\":\"crew-%ld\","
             "\"reported_by\":\"citizen\","
             "\"scheduled_for\":\"2026-12-01\",\"uprn\":\"1000%ld\"}",
             i, i % 10, i);
  }
}

/* Pulls "id":"N" out of a case object (a host would use its JSON
   library; this is the engine's fixed output shape). */
static int
case_id(const char *json, char *id, size_t len)
{
  const char *p = json ? strstr(json, "\"id\":\"") : NULL;
  if (p == NULL)
    return -1;
  p += 6;
  size_t n = strcspn(p, "\"");
  if (n == 0 || n >= len)
    return -1;
  memcpy(id, p, n);
  id[n] = 0;
  return 0;
}

/* ---- the engine modes ----------------------------------------------- */

static flow_engine *
engine_open(run *r, const char *path, flow_sync_mode sync)
{
  flow_engine_options opts = FLOW_ENGINE_OPTIONS_INIT;
  opts.synchronous = sync;
  flow_engine *e = NULL;
  char err[512];
  if (flow_engine_open(&e, path, &opts, err, sizeof err) != 0) {
    fprintf(stderr, "bench_bins: cannot open %s: %s\n", path, err);
    return NULL;
  }
  flow_engine_set_time(e, r->start_ms);
  char *out = NULL;
  if (flow_service_load_file(&out, e, r->service) != 0) {
    fprintf(stderr, "bench_bins: loading %s: %s\n", r->service,
            flow_errmsg(e));
    flow_engine_close(e);
    return NULL;
  }
  flow_free(out);
  return e;
}

static int
sync_call(run *r, int phase, long i, char *id)
{
  char json[256];
  char *out = NULL;
  int rc;
  if (phase == 0) {
    open_data(json, sizeof json, i);
    rc = flow_case_open(&out, r->e, "missed_bin", json, &actor);
    if (rc == 0 && case_id(out, id, 24) != 0)
      rc = FLOW_ERROR;
    flow_free(out);
  } else {
    phase_payload(json, sizeof json, phase, i);
    rc = flow_case_signal(NULL, r->e, id, phase_event[phase], json, &actor);
  }
  if (rc != 0)
    fprintf(stderr, "bench_bins: case %ld %s: %s: %s\n", i,
            phase_event[phase], flow_err_name(rc), flow_errmsg(r->e));
  return rc;
}

/* One queued call: where its latency starts and its case id goes. */
typedef struct slot {
  run *r;
  long i;
  int phase;
  int64_t t0;
  char *id;
} slot;

static void
async_done(flow_engine *e, int status, const char *case_json, void *payload)
{
  slot *s = payload;
  run *r = s->r;
  bench_hist_add(r->hist, bench_now_ns() - s->t0);
  r->done++;
  if (status == 0 && s->phase == 0 && case_id(case_json, s->id, 24) != 0)
    status = FLOW_ERROR;
  if (status != 0) {
    fprintf(stderr, "bench_bins: case %ld %s: %s: %s\n", s->i,
            phase_event[s->phase], flow_err_name(status), flow_errmsg(e));
    r->failed = 1;
  }
}

/* Queues one phase of a block and runs the loop until every callback
   has come back; the calls share one group commit. */
static int
async_phase(run *r, slot *slots, long first, long count, int phase)
{
  char json[256];
  r->done = 0;
  for (long k = 0; k < count; k++) {
    slot *s = &slots[k];
    long i = first + k;
    s->r = r;
    s->i = i;
    s->phase = phase;
    s->id = r->ids[k];
    s->t0 = bench_now_ns();
    int rc;
    if (phase == 0) {
      open_data(json, sizeof json, i);
      rc = flow_case_open_async(r->e, "missed_bin", json, &actor, async_done,
                                s);
    } else {
      phase_payload(json, sizeof json, phase, i);
      rc = flow_case_signal_async(r->e, r->ids[k], phase_event[phase], json,
                                  &actor, async_done, s);
    }
    if (rc != 0) {
      fprintf(stderr, "bench_bins: queueing case %ld %s: %s\n", i,
              phase_event[phase], flow_errmsg(r->e));
      return rc;
    }
  }
  /* One NOWAIT round flushes the whole queue; more rounds are allowed
     in case the loop splits it, but a loop that never calls back is a
     failure, not a hang. */
  for (int rounds = 0; r->done < count; rounds++) {
    int rc = flow_engine_run(r->e, FLOW_RUN_NOWAIT);
    if (rc < 0) {
      fprintf(stderr, "bench_bins: flow_engine_run: %s: %s\n",
              flow_err_name(rc), flow_errmsg(r->e));
      return rc;
    }
    if (rounds > 1000) {
      fprintf(stderr,
              "bench_bins: flow_engine_run(NOWAIT) returned %d times with "
              "%ld of %ld callbacks: the loop does not flush queued calls\n",
              rounds, r->done, count);
      return FLOW_ERROR;
    }
  }
  return r->failed ? FLOW_ERROR : 0;
}

/* Checks, outside the timing, that the last case really ended closed. */
static int
check_closed(run *r, const char *id)
{
  char *out = NULL;
  int rc = flow_case_get(&out, r->e, id);
  int ok = rc == 0 && strstr(out, "\"state\":\"closed\"") != NULL;
  if (!ok)
    fprintf(stderr, "bench_bins: case %s did not end closed: %s\n", id,
            out ? out : flow_errmsg(r->e));
  flow_free(out);
  return ok ? 0 : FLOW_ERROR;
}

static int
engine_mode(run *r, int mode, const char *path, double *seconds)
{
  mode = engine_kind(mode);
  flow_sync_mode sync = mode == M_FULL ? FLOW_SYNC_FULL : FLOW_SYNC_NORMAL;
  if ((r->e = engine_open(r, path, sync)) == NULL)
    return FLOW_ERROR;
  long group = r->cfg->group;
  slot *slots = calloc((size_t)group, sizeof *slots);
  r->ids = calloc((size_t)group, sizeof *r->ids);
  int rc = slots && r->ids ? 0 : FLOW_ENOMEM;
  long count = 0;
  int64_t t0 = bench_now_ns();
  for (long first = r->first; rc == 0 && first <= r->last; first += group) {
    count = r->last - first + 1 < group ? r->last - first + 1 : group;
    for (int phase = 0; rc == 0 && phase < 4; phase++) {
      if (mode == M_ASYNC) {
        rc = async_phase(r, slots, first, count, phase);
        continue;
      }
      for (long k = 0; rc == 0 && k < count; k++) {
        int64_t c0 = bench_now_ns();
        rc = sync_call(r, phase, first + k, r->ids[k]);
        bench_hist_add(r->hist, bench_now_ns() - c0);
      }
    }
  }
  *seconds = (double)(bench_now_ns() - t0) / 1e9;
  if (rc == 0 && count > 0)
    rc = check_closed(r, r->ids[count - 1]);
  free(slots);
  free(r->ids);
  flow_engine_close(r->e);
  return rc;
}

/* ---- the raw SQLite baseline ------------------------------------------ */

/* The engine's cases and history tables, with the indexes it creates for
   them (its own and the expression indexes for the fields missed_bin
   marks `index = true`), so the baseline writes the same b-trees. */
static const char raw_schema[] =
  "CREATE TABLE IF NOT EXISTS cases ("
  "  id INTEGER PRIMARY KEY, service TEXT NOT NULL,"
  "  version INTEGER NOT NULL, state TEXT NOT NULL,"
  "  closed INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL,"
  "  opened_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
  "  due_at INTEGER, seq INTEGER NOT NULL, seed INTEGER NOT NULL);"
  "CREATE INDEX IF NOT EXISTS cases_service_state ON cases(service, state);"
  "CREATE INDEX IF NOT EXISTS cases_state ON cases(state);"
  "CREATE INDEX IF NOT EXISTS cases_due ON cases(due_at) WHERE closed = 0;"
  "CREATE INDEX IF NOT EXISTS cases_data_uprn"
  "  ON cases(json_extract(data, '$.uprn'));"
  "CREATE INDEX IF NOT EXISTS cases_data_bin"
  "  ON cases(json_extract(data, '$.bin'));"
  "CREATE INDEX IF NOT EXISTS cases_data_crew"
  "  ON cases(json_extract(data, '$.crew'));"
  "CREATE TABLE IF NOT EXISTS history ("
  "  case_id INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,"
  "  actor TEXT NOT NULL, event TEXT NOT NULL, payload TEXT NOT NULL,"
  "  from_state TEXT, to_state TEXT NOT NULL,"
  "  PRIMARY KEY (case_id, seq)) WITHOUT ROWID;";

enum { RS_BEGIN, RS_COMMIT, RS_GET, RS_INSERT, RS_UPDATE, RS_HISTORY,
       RS_COUNT };

static const char *const raw_sql[RS_COUNT] = {
  [RS_BEGIN] = "BEGIN IMMEDIATE",
  [RS_COMMIT] = "COMMIT",
  [RS_GET] = "SELECT state, data, seq FROM cases WHERE id = ?1",
  [RS_INSERT] = "INSERT INTO cases(id, service, version, state, closed,"
                " data, opened_at, updated_at, due_at, seq, seed)"
                " VALUES (?1, 'missed_bin', 1, ?2, 0, ?3, ?4, ?4, ?5, 1, ?6)",
  [RS_UPDATE] = "UPDATE cases SET state = ?2, closed = ?3, data = ?4,"
                " updated_at = ?5, due_at = ?6, seq = ?7 WHERE id = ?1",
  [RS_HISTORY] = "INSERT INTO history(case_id, seq, at, actor, event,"
                 " payload, from_state, to_state)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
};

typedef struct raw {
  sqlite3 *db;
  sqlite3_stmt *st[RS_COUNT];
  int64_t now, due;
} raw;

static int
raw_fail(raw *w, const char *what)
{
  fprintf(stderr, "bench_bins: raw %s: %s\n", what, sqlite3_errmsg(w->db));
  return FLOW_EIO;
}

static int
raw_step(raw *w, int which)
{
  sqlite3_stmt *st = w->st[which];
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return raw_fail(w, raw_sql[which]);
  return 0;
}

static int
raw_open(raw *w, const char *path, int full)
{
  memset(w, 0, sizeof *w);
  if (sqlite3_open_v2(path, &w->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                          SQLITE_OPEN_NOMUTEX,
                      NULL) != SQLITE_OK)
    return raw_fail(w, "open");
  char pragmas[128];
  snprintf(pragmas, sizeof pragmas,
           "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s;",
           full ? "FULL" : "NORMAL");
  if (sqlite3_exec(w->db, pragmas, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(w->db, raw_schema, NULL, NULL, NULL) != SQLITE_OK)
    return raw_fail(w, "schema");
  for (int i = 0; i < RS_COUNT; i++)
    if (sqlite3_prepare_v3(w->db, raw_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                           &w->st[i], NULL) != SQLITE_OK)
      return raw_fail(w, raw_sql[i]);
  return 0;
}

static void
raw_close(raw *w)
{
  for (int i = 0; i < RS_COUNT; i++)
    sqlite3_finalize(w->st[i]);
  sqlite3_close_v2(w->db);
}

/* One transition without the engine: read the row, write it and one
   history row. */
static int
raw_transition(raw *w, int phase, long i)
{
  char data[320], payload[256], old[320];
  stored_data(data, sizeof data, phase, i);
  int64_t seq = 1;
  if (phase == 0) {
    stored_data(payload, sizeof payload, 0, i);
    sqlite3_stmt *st = w->st[RS_INSERT];
    sqlite3_bind_int64(st, 1, i);
    sqlite3_bind_text(st, 2, phase_to[0], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, data, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, w->now);
    sqlite3_bind_int64(st, 5, w->due);
    sqlite3_bind_int64(st, 6, i * 2654435761);
    if (raw_step(w, RS_INSERT) != 0)
      return FLOW_EIO;
  } else {
    phase_payload(payload, sizeof payload, phase, i);
    sqlite3_stmt *st = w->st[RS_GET];
    sqlite3_bind_int64(st, 1, i);
    if (sqlite3_step(st) != SQLITE_ROW) {
      sqlite3_reset(st);
      return raw_fail(w, "reading a case");
    }
    snprintf(old, sizeof old, "%s", (const char *)sqlite3_column_text(st, 1));
    seq = sqlite3_column_int64(st, 2) + 1;
    sqlite3_reset(st);
    st = w->st[RS_UPDATE];
    sqlite3_bind_int64(st, 1, i);
    sqlite3_bind_text(st, 2, phase_to[phase], -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, phase == 3);
    sqlite3_bind_text(st, 4, data, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, w->now);
    sqlite3_bind_int64(st, 6, w->due);
    sqlite3_bind_int64(st, 7, seq);
    if (raw_step(w, RS_UPDATE) != 0)
      return FLOW_EIO;
  }
  sqlite3_stmt *h = w->st[RS_HISTORY];
  sqlite3_bind_int64(h, 1, i);
  sqlite3_bind_int64(h, 2, seq);
  sqlite3_bind_int64(h, 3, w->now);
  sqlite3_bind_text(h, 4, ACTOR_JSON, -1, SQLITE_STATIC);
  sqlite3_bind_text(h, 5, phase_event[phase], -1, SQLITE_STATIC);
  sqlite3_bind_text(h, 6, payload, -1, SQLITE_STATIC);
  if (phase_from[phase])
    sqlite3_bind_text(h, 7, phase_from[phase], -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(h, 7);
  sqlite3_bind_text(h, 8, phase_to[phase], -1, SQLITE_STATIC);
  return raw_step(w, RS_HISTORY);
}

static int
raw_mode(run *r, int mode, const char *path, double *seconds)
{
  raw w;
  int rc = raw_open(&w, path, mode == M_RAW_EACH_FULL);
  long group = r->cfg->group;
  int64_t *starts = calloc((size_t)group, sizeof *starts);
  if (rc == 0 && starts == NULL)
    rc = FLOW_ENOMEM;
  w.now = r->start_ms;
  w.due = r->start_ms + 7 * 86400000LL;
  int64_t t0 = bench_now_ns();
  for (long first = r->first; rc == 0 && first <= r->last; first += group) {
    long count = r->last - first + 1 < group ? r->last - first + 1 : group;
    for (int phase = 0; rc == 0 && phase < 4; phase++) {
      if (mode == M_RAW_BATCHED) {
        if ((rc = raw_step(&w, RS_BEGIN)) != 0)
          break;
        for (long k = 0; rc == 0 && k < count; k++) {
          starts[k] = bench_now_ns();
          rc = raw_transition(&w, phase, first + k);
        }
        if (rc == 0 && (rc = raw_step(&w, RS_COMMIT)) == 0) {
          int64_t end = bench_now_ns();
          for (long k = 0; k < count; k++)
            bench_hist_add(r->hist, end - starts[k]);
        }
        continue;
      }
      for (long k = 0; rc == 0 && k < count; k++) {
        int64_t c0 = bench_now_ns();
        if ((rc = raw_step(&w, RS_BEGIN)) == 0 &&
            (rc = raw_transition(&w, phase, first + k)) == 0)
          rc = raw_step(&w, RS_COMMIT);
        bench_hist_add(r->hist, bench_now_ns() - c0);
      }
    }
  }
  *seconds = (double)(bench_now_ns() - t0) / 1e9;
  free(starts);
  raw_close(&w);
  return rc;
}

/* ---- running and reporting ------------------------------------------- */

static int
is_full(int mode)
{
  return mode == M_FULL || mode == M_RAW_EACH_FULL || mode == M_FULL_MIN ||
         mode == M_PEER_FULL;
}

/* ---- the physical limit: ../shared/bench/sqlite_raw_bins.c ------------ */

/*
 * Runs the peer program on n cases of its own (a fresh database each time,
 * as it insists) and reads back the seconds of its transition loop.  Its
 * writes are counted by the caller: a reaped child's I/O is added to the
 * parent's /proc/self/io.
 */
static int
peer_mode(run *r, int mode, const char *path, double *seconds)
{
  char n[32], batch[32];
  snprintf(n, sizeof n, "%ld", r->last - r->first + 1);
  snprintf(batch, sizeof batch, "%ld", r->cfg->group);
  const char *argv[12] = { r->cfg->peer, "--mode",
                           mode == M_PEER_BATCH ? "batch" : "each", "--n", n,
                           "--db", path, "--batch-size", batch, NULL, NULL,
                           NULL };
  if (mode == M_PEER_FULL) {
    argv[9] = "--sync";
    argv[10] = "full";
  }
  int fd[2];
  if (pipe(fd) != 0)
    return FLOW_ERROR;
  pid_t pid = fork();
  if (pid < 0)
    return FLOW_ERROR;
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(fd[1]);
  char out[512];
  size_t len = 0;
  ssize_t k;
  while (len + 1 < sizeof out &&
         (k = read(fd[0], out + len, sizeof out - 1 - len)) > 0)
    len += (size_t)k;
  out[len] = 0;
  close(fd[0]);
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bench_bins: %s failed: %s\n", r->cfg->peer, out);
    return FLOW_ERROR;
  }
  const char *p = strstr(out, "seconds=");
  if (p == NULL || sscanf(p + 8, "%lf", seconds) != 1) {
    fprintf(stderr, "bench_bins: %s said: %s\n", r->cfg->peer, out);
    return FLOW_ERROR;
  }
  bench_db_remove(path);
  return 0;
}

static const char *
db_path(const config *cfg, int mode, char *buf, size_t len)
{
  snprintf(buf, len, "%s/bins-%s.db", cfg->dir, mode_name[mode]);
  return buf;
}

/* Runs cases first..last of one mode in this (child) process, on the
   mode's database as the earlier slices left it. */
static int
run_slice(const config *cfg, int mode, long first, long last, result *res)
{
  char path[4200];
  run r;
  memset(&r, 0, sizeof r);
  r.cfg = cfg;
  r.first = first;
  r.last = last;
  r.hist = &res->hist;
  if (flow_time_parse(&r.start_ms, "2026-11-02T10:00:00Z") != 0)
    return FLOW_ERROR;
  double seconds = 0;
  db_path(cfg, mode, path, sizeof path);
  long long b0, c0, b1, c1;
  bench_io(&b0, &c0);
  r.service = mode == M_SYNC_MIN || mode == M_ASYNC_MIN ||
                      mode == M_FULL_MIN
                  ? cfg->minimal
                  : cfg->service;
  int rc = is_peer(mode)  ? peer_mode(&r, mode, path, &seconds)
           : is_raw(mode) ? raw_mode(&r, mode, path, &seconds)
                          : engine_mode(&r, mode, path, &seconds);
  bench_io(&b1, &c1);
  res->wbytes = b1 - b0;
  res->wcalls = c1 - c0;
  long rss;
  bench_rss_kb(&rss, &res->hwm_kb);
  if (is_peer(mode)) {
    struct rusage ru;
    res->hwm_kb = getrusage(RUSAGE_CHILDREN, &ru) == 0 ? ru.ru_maxrss : 0;
  }
  res->ok = rc == 0;
  res->n = last - first + 1;
  res->seconds = seconds;
  return rc;
}

/* One slice for bench_in_child. */
typedef struct slice_job {
  const config *cfg;
  int mode;
  long first, last;
} slice_job;

static int
slice_in_child(void *ctx, void *out)
{
  slice_job *j = ctx;
  return run_slice(j->cfg, j->mode, j->first, j->last, out);
}

/* Runs the slice in a fresh process and reads its result into *res. */
static int
run_child(const config *cfg, int mode, long first, long last, result *res)
{
  memset(res, 0, sizeof *res);
  slice_job j = { cfg, mode, first, last };
  if (bench_in_child(slice_in_child, &j, res, sizeof *res) != 0 ||
      !res->ok) {
    fprintf(stderr, "bench_bins: mode %s, cases %ld-%ld failed\n",
            mode_name[mode], first, last);
    res->ok = 0;
    return -1;
  }
  return 0;
}

static void
add_slice(result *sum, const result *slice)
{
  sum->n += slice->n;
  sum->seconds += slice->seconds;
  sum->wbytes += slice->wbytes;
  sum->wcalls += slice->wcalls;
  if (slice->hwm_kb > sum->hwm_kb)
    sum->hwm_kb = slice->hwm_kb;
  for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
    sum->hist.count[i] += slice->hist.count[i];
  sum->hist.total += slice->hist.total;
  if (slice->hist.max > sum->hist.max)
    sum->hist.max = slice->hist.max;
}

static double
tps(const result *r)
{
  return r->seconds > 0 ? 4.0 * (double)r->n / r->seconds : 0;
}

static void
print_mode(int mode, const result *r)
{
  if (!r->ok)
    return;
  if (is_peer(mode))
    /* Latencies are the peer's own business: it prints none. */
    printf("bench=bins mode=%s n=%ld transitions=%ld seconds=%.3f tps=%.0f "
           "rss_mb=%.1f\n",
           mode_name[mode], r->n, 4 * r->n, r->seconds, tps(r),
           (double)r->hwm_kb / 1024.0);
  else
    printf("bench=bins mode=%s n=%ld transitions=%ld seconds=%.3f tps=%.0f "
           "p50_us=%.1f p99_us=%.1f rss_mb=%.1f\n",
           mode_name[mode], r->n, 4 * r->n, r->seconds, tps(r),
           (double)bench_hist_quantile(&r->hist, 0.50) / 1e3,
           (double)bench_hist_quantile(&r->hist, 0.99) / 1e3,
           (double)r->hwm_kb / 1024.0);
  /* What each transition wrote: with one commit per transition, about two
     write calls per WAL page (frame header and page), plus checkpoints. */
  long t = 4 * r->n;
  if (t > 0 && r->wcalls > 0)
    printf("bench=bins_io mode=%s write_kb_per_t=%.2f writes_per_t=%.2f\n",
           mode_name[mode], (double)r->wbytes / 1024.0 / (double)t,
           (double)r->wcalls / (double)t);
  fflush(stdout);
}

/*
 * Runs the wanted members of one group (a list of modes) slice by slice,
 * alternating: slice 1 of each, slice 2 of each, ...  Each does the same
 * work in total as in one go, but whatever else the machine is doing
 * meanwhile falls on all alike, which keeps their ratios steady.
 */
static int
run_group(const config *cfg, const int *which, int count, result *res)
{
  long n = is_full(which[0]) ? cfg->full_n : cfg->n;
  /* Whole blocks per slice, so each slice is a run in miniature. */
  long per = (n + cfg->slices - 1) / cfg->slices;
  per = (per + cfg->group - 1) / cfg->group * cfg->group;
  result *slice = malloc(sizeof *slice);
  if (slice == NULL)
    return -1;
  int failed = 0;
  for (int k = 0; k < count; k++) {
    char path[4200];
    bench_db_remove(db_path(cfg, which[k], path, sizeof path));
    res[which[k]].ok = cfg->want[which[k]];
  }
  for (long first = 1; first <= n; first += per) {
    long last = first + per - 1 < n ? first + per - 1 : n;
    for (int k = 0; k < count; k++) {
      int m = which[k];
      if (!res[m].ok)
        continue;
      if (run_child(cfg, m, first, last, slice) != 0) {
        res[m].ok = 0;
        failed = 1;
        continue;
      }
      add_slice(&res[m], slice);
    }
  }
  for (int k = 0; k < count; k++) {
    char path[4200];
    bench_db_remove(db_path(cfg, which[k], path, sizeof path));
    print_mode(which[k], &res[which[k]]);
  }
  free(slice);
  return failed ? -1 : 0;
}

static void
print_ratio(const result *res, int mode, int base, double target)
{
  printf(" %s/%s=", mode_name[mode], mode_name[base]);
  if (!res[mode].ok || !res[base].ok || tps(&res[base]) <= 0) {
    printf("n/a target=%.2f", target);
    return;
  }
  double ratio = tps(&res[mode]) / tps(&res[base]);
  printf("%.3f target=%.2f %s", ratio, target,
         ratio >= target ? "PASS" : "BELOW");
}

/* Bytes written per transition, mode over base, against at most max. */
static void
print_bytes_ratio(const result *res, int mode, int base, double max)
{
  printf(" bytes %s/%s=", mode_name[mode], mode_name[base]);
  if (!res[mode].ok || !res[base].ok || res[base].wbytes <= 0 ||
      res[base].n <= 0 || res[mode].n <= 0) {
    printf("n/a max=%.1f", max);
    return;
  }
  double ratio = ((double)res[mode].wbytes / (double)res[mode].n) /
                 ((double)res[base].wbytes / (double)res[base].n);
  printf("%.2f max=%.1f %s", ratio, max, ratio <= max ? "PASS" : "ABOVE");
}

static void
usage(FILE *f)
{
  fprintf(f,
          "usage: bench_bins [--n N] [--modes LIST] [--dir DIR] "
          "[--full-n N] [--group K]\n"
          "                  [--slices S] [--service FILE]\n"
          "  --n N        cases (default 100000); 4 transitions each\n"
          "  --only MODE  run this one mode alone (for a profiler)\n"
          "  --modes LIST comma-separated: sync, async, full (each brings "
          "the\n"
          "               physical limit and the minimal service), "
          "raw_each,\n"
          "               raw_batched, raw_each_full (our own heavier "
          "baseline)\n"
          "               (default sync,async,full)\n"
          "  --dir DIR    where the databases go (default a fresh "
          "/tmp/flow-bench-*,\n"
          "               removed afterwards)\n"
          "  --full-n N   cases for full and raw_each_full (default the "
          "smaller\n"
          "               of N and 20000: each commit is an fsync)\n"
          "  --group K    calls per async group and per batched "
          "transaction\n"
          "               (default 1000)\n"
          "  --slices S   run each mode and its baseline in S alternating "
          "slices\n"
          "               (default 10)\n"
          "  --service F  the missed-bin script (default %s)\n"
          "  --minimal F  the minimal service (default %s)\n"
          "  --peer P     the physical limit, sqlite_raw_bins (default %s)\n",
          FLOW_BENCH_SERVICE, FLOW_BENCH_MINIMAL,
          FLOW_BENCH_PEER[0] ? FLOW_BENCH_PEER : "none built");
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

static int
parse_modes(config *cfg, const char *list)
{
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  memset(cfg->want, 0, sizeof cfg->want);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    int m;
    for (m = 0; m < M_COUNT; m++)
      if (strcmp(tok, mode_name[m]) == 0)
        break;
    if (m == M_COUNT) {
      fprintf(stderr, "bench_bins: unknown mode '%s'\n", tok);
      return -1;
    }
    cfg->want[m] = 1;
    /* An engine mode brings the physical limit and the minimal service:
       the ratios need them. */
    for (int g = 0; g < 3; g++)
      if (m == groups[g][3]) {
        cfg->want[groups[g][0]] = cfg->peer != NULL;
        cfg->want[groups[g][2]] = 1;
      }
  }
  return 0;
}

int
main(int argc, char **argv)
{
  config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.n = 100000;
  cfg.full_n = 0;
  cfg.group = 1000;
  cfg.slices = 10;
  cfg.service = FLOW_BENCH_SERVICE;
  cfg.minimal = FLOW_BENCH_MINIMAL;
  cfg.peer = FLOW_BENCH_PEER[0] ? FLOW_BENCH_PEER : NULL;
  const char *dir = NULL;
  const char *modes = "sync,async,full";
  int only = 0; /* --only: the modes named, without their groups */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (v == NULL) {
      usage(stderr);
      return 2;
    }
    int bad = 0;
    if (strcmp(a, "--n") == 0)
      bad = parse_long(v, &cfg.n);
    else if (strcmp(a, "--full-n") == 0)
      bad = parse_long(v, &cfg.full_n);
    else if (strcmp(a, "--group") == 0)
      bad = parse_long(v, &cfg.group);
    else if (strcmp(a, "--slices") == 0)
      bad = parse_long(v, &cfg.slices);
    else if (strcmp(a, "--modes") == 0)
      modes = v;
    else if (strcmp(a, "--only") == 0) {
      modes = v;
      only = 1;
    }
    else if (strcmp(a, "--minimal") == 0)
      cfg.minimal = v;
    else if (strcmp(a, "--peer") == 0)
      cfg.peer = v[0] ? v : NULL;
    else if (strcmp(a, "--dir") == 0)
      dir = v;
    else if (strcmp(a, "--service") == 0)
      cfg.service = v;
    else
      bad = -1;
    if (bad) {
      fprintf(stderr, "bench_bins: bad option %s %s\n", a, v);
      usage(stderr);
      return 2;
    }
    i++;
  }
  if (cfg.full_n == 0)
    cfg.full_n = cfg.n < 20000 ? cfg.n : 20000;
  if (cfg.peer && access(cfg.peer, X_OK) != 0) {
    fprintf(stderr, "bench_bins: cannot run %s\n", cfg.peer);
    cfg.peer = NULL;
  }
  if (parse_modes(&cfg, modes) != 0)
    return 2;
  if (only) {
    /* Exactly the modes named (parse_modes has checked the names). */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", modes);
    memset(cfg.want, 0, sizeof cfg.want);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
      for (int m = 0; m < M_COUNT; m++)
        if (strcmp(tok, mode_name[m]) == 0)
          cfg.want[m] = 1;
  }
  if (cfg.peer == NULL)
    printf("bench=bins peer=missing (../shared/bench/sqlite_raw_bins.c was "
           "not there when this was built): engine figures only, no "
           "ratios against the physical limit\n");
  if (access(cfg.service, R_OK) != 0 || access(cfg.minimal, R_OK) != 0) {
    fprintf(stderr, "bench_bins: cannot read %s or %s (give --service FILE "
            "and --minimal FILE)\n", cfg.service, cfg.minimal);
    return 2;
  }
  int made = 0;
  if (bench_dir_init(cfg.dir, sizeof cfg.dir, dir, &made) != 0)
    return 2;

  result *res = calloc(M_COUNT, sizeof *res);
  if (res == NULL)
    return 1;
  int failed = 0;
  for (int g = 0; g < 3; g++) {
    int any = 0;
    for (int k = 0; k < 4; k++)
      any |= cfg.want[groups[g][k]];
    if (any && run_group(&cfg, groups[g], 4, res) != 0)
      failed = 1;
  }
  bench_dir_done(cfg.dir, made);

  /* Against the physical limit, for the minimal service (issue 15). */
  printf("bench=bins ratios");
  print_ratio(res, M_SYNC_MIN, M_PEER_EACH, 0.6);
  print_ratio(res, M_ASYNC_MIN, M_PEER_BATCH, 0.25);
  print_ratio(res, M_FULL_MIN, M_PEER_FULL, 0.9);
  print_bytes_ratio(res, M_SYNC_MIN, M_PEER_EACH, 1.5);
  printf("\n");
  /* The missed-bin example against the minimal service. */
  printf("bench=bins example_ratios");
  print_ratio(res, M_SYNC, M_SYNC_MIN, 0.8);
  print_ratio(res, M_ASYNC, M_ASYNC_MIN, 0.8);
  print_ratio(res, M_FULL, M_FULL_MIN, 0.8);
  printf("\n");
  /* Our own heavier baseline, when asked for: where the time goes. */
  if (cfg.want[M_RAW_EACH] || cfg.want[M_RAW_BATCHED] ||
      cfg.want[M_RAW_EACH_FULL]) {
    printf("bench=bins own_baseline_ratios");
    print_ratio(res, M_SYNC, M_RAW_EACH, 0.8);
    print_ratio(res, M_ASYNC, M_RAW_BATCHED, 0.5);
    print_ratio(res, M_FULL, M_RAW_EACH_FULL, 0.9);
    printf("\n");
  }
  free(res);
  return failed ? 1 : 0;
}
