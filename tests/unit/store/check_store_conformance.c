/*
 * What every storage backend guarantees (libflow/store/store.h), checked
 * through the function table only, on one connection and on two sharing a
 * database.  Each test runs once per backend in `backends` below: a new
 * backend adds its row and passes all of them.  A backend that needs a
 * server it cannot find here is skipped with a note, never passed.
 *
 * What only one backend does (SQLite's schema versions, its files) is in
 * that backend's own check_store_<name>.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "testutil.h"

/* ---- the backends ------------------------------------------------------ */

typedef struct backend {
  const flow__store_vt *vt;
  /* Makes a new, empty database and writes its address to addr; returns
     0, or -1 when the backend cannot be tested on this machine. */
  int (*make)(char *dir, char *addr);
  void (*drop)(const char *dir, const char *addr);
} backend;

static int
sqlite_make(char *dir, char *addr)
{
  test_db_make(dir, addr);
  return 0;
}

static const backend backends[] = {
  { &flow__store_sqlite, sqlite_make, test_db_remove },
};
#define NBACKENDS ((int)(sizeof backends / sizeof *backends))

/* ---- one test's stores ------------------------------------------------- */

static test_alloc ta;
static flow__allocator A;
static flow__err err;
static const flow__store_vt *vt;
static const backend *B;
static char dir[64], addr[96];
static flow__store *S;  /* the first connection */
static flow__store *S2; /* a second one on the same database, when opened */

/* Opens the first connection on a new database of backend i; 0 when the
   backend cannot be tested here. */
static int
start(int i)
{
  memset(&ta, 0, sizeof ta);
  A = test_allocator(&ta);
  flow__err_clear(&err);
  B = &backends[i];
  vt = B->vt;
  S = S2 = NULL;
  if (B->make(dir, addr) != 0) {
    fprintf(stderr, "store conformance: %s not tested here\n", vt->name);
    return 0;
  }
  flow__store_config cfg = { .alloc = &A,
                             .synchronous = FLOW_SYNC_NORMAL,
                             .busy_timeout_ms = 1000 };
  ck_assert_msg(vt->open(&S, addr, &cfg, &err) == 0, "%s: %s", vt->name,
                err.msg);
  return 1;
}

/* A second connection, which waits busy_ms for a lock the first holds. */
static void
second(int busy_ms)
{
  flow__store_config cfg = { .alloc = &A,
                             .synchronous = FLOW_SYNC_NORMAL,
                             .busy_timeout_ms = busy_ms };
  ck_assert_msg(vt->open(&S2, addr, &cfg, &err) == 0, "%s", err.msg);
}

static void
finish(void)
{
  vt->close(S2);
  vt->close(S);
  S = S2 = NULL;
  B->drop(dir, addr);
  ck_assert_int_eq(ta.live_blocks, 0);
}

static flow__case_row
sample_row(int64_t id)
{
  flow__case_row r = { .id = id,
                       .service = "bins",
                       .version = 1,
                       .state = "reported",
                       .data = "{\"bin\":\"refuse\",\"uprn\":\"1000\"}",
                       .opened_at = 1000,
                       .updated_at = 1000,
                       .due_at = FLOW__NO_TIME,
                       .seq = 1,
                       .seed = 42 };
  return r;
}

/* Opens a case on s in a transaction of its own; returns its id. */
static int64_t
open_case(flow__store *s)
{
  int64_t id;
  ck_assert_int_eq(vt->begin(s, &err), 0);
  ck_assert_int_eq(vt->case_new_id(s, &id, &err), 0);
  flow__case_row r = sample_row(id);
  ck_assert_int_eq(vt->case_insert(s, &r, &err), 0);
  ck_assert_int_eq(vt->commit(s, &err), 0);
  return id;
}

static void
add_timer(flow__store *s, int64_t case_id, const char *state,
          int64_t set_seq)
{
  flow__timer_row t = { .case_id = case_id,
                        .due_at = 2000,
                        .kind = "timer",
                        .event = "ping",
                        .payload = "{}",
                        .state = state,
                        .status = "pending",
                        .set_seq = set_seq };
  ck_assert_int_eq(vt->timer_insert(s, &t, &err), 0);
}

static int
collect_timer_ids(void *ctx, const flow__timer_row *row)
{
  int64_t *ids = ctx;
  size_t i = 0;
  while (ids[i] != 0)
    i++;
  ids[i] = row->id;
  return 0;
}

static int
count_timers(void *ctx, const flow__timer_row *row)
{
  (void)row;
  (*(int *)ctx)++;
  return 0;
}

/* ---- cases ---------------------------------------------------------- */

START_TEST(test_store_case_round_trip)
{
  if (!start(_i))
    return;
  int64_t id = open_case(S);
  flow__case_row r = sample_row(id), got;
  ck_assert_int_eq(vt->case_get(S, id, &got, &err), 0);
  ck_assert_str_eq(got.service, "bins");
  ck_assert_str_eq(got.state, "reported");
  ck_assert_str_eq(got.data, r.data);
  ck_assert(got.due_at == FLOW__NO_TIME);
  ck_assert_int_eq(got.seed, 42);
  flow__case_row_clear(&A, &got);

  r.state = "closed";
  r.closed = 1;
  r.seq = 2;
  r.due_at = 5000;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_lock(S, id, &got, &err), 0);
  ck_assert_int_eq(got.seq, 1);
  flow__case_row_clear(&A, &got);
  ck_assert_int_eq(vt->case_update(S, &r, "reported", &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->case_get(S, id, &got, &err), 0);
  ck_assert_str_eq(got.state, "closed");
  ck_assert_int_eq(got.closed, 1);
  /* due_at is fixed when a case opens; updates never touch it. */
  ck_assert(got.due_at == FLOW__NO_TIME);
  flow__case_row_clear(&A, &got);

  /* A data-only update leaves state and closed as they are. */
  r.state = "ignored";
  r.closed = 0;
  r.seq = 3;
  r.data = "{\"bin\":\"garden\"}";
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_update(S, &r, NULL, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->case_get(S, id, &got, &err), 0);
  ck_assert_str_eq(got.state, "closed");
  ck_assert_int_eq(got.closed, 1);
  ck_assert_int_eq(got.seq, 3);
  ck_assert_str_eq(got.data, "{\"bin\":\"garden\"}");
  flow__case_row_clear(&A, &got);

  ck_assert_int_eq(vt->case_get(S, id + 1, &got, &err), FLOW_ENOTFOUND);
  ck_assert_msg(strstr(err.msg, "no case") != NULL, "%s", err.msg);
  finish();
}
END_TEST

static int
count_rows(void *ctx, const flow__history_row *row)
{
  (void)row;
  (*(int *)ctx)++;
  return 0;
}

START_TEST(test_store_rollback_discards)
{
  if (!start(_i))
    return;
  int64_t id;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_new_id(S, &id, &err), 0);
  flow__case_row r = sample_row(id);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  flow__history_row h = { id,   1,    1000,       "{}", "open",
                          "{}", NULL, "reported", NULL };
  ck_assert_int_eq(vt->history_append(S, &h, &err), 0);
  vt->rollback(S);
  flow__case_row got;
  ck_assert_int_eq(vt->case_get(S, id, &got, &err), FLOW_ENOTFOUND);
  int n = 0;
  ck_assert_int_eq(vt->history_each(S, id, count_rows, &n, &err), 0);
  ck_assert_int_eq(n, 0);
  finish();
}
END_TEST

/* New ids only grow: on one connection, on another, after a rollback and
   after reopening. */
START_TEST(test_store_case_ids_grow)
{
  if (!start(_i))
    return;
  second(1000);
  int64_t a = open_case(S), b = open_case(S2), c = open_case(S);
  ck_assert_int_gt(a, 0);
  ck_assert_int_gt(b, a);
  ck_assert_int_gt(c, b);

  int64_t d, e;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_new_id(S, &d, &err), 0);
  ck_assert_int_gt(d, c);
  flow__case_row r = sample_row(d);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  ck_assert_int_eq(vt->case_new_id(S, &e, &err), 0);
  ck_assert_int_gt(e, d);
  vt->rollback(S);
  ck_assert_int_gt(open_case(S2), c);

  vt->close(S2);
  S2 = NULL;
  vt->close(S);
  flow__store_config cfg = { .alloc = &A,
                             .synchronous = FLOW_SYNC_NORMAL,
                             .busy_timeout_ms = 1000 };
  ck_assert_int_eq(vt->open(&S, addr, &cfg, &err), 0);
  ck_assert_int_gt(open_case(S), c + 1);

  /* Only inside a transaction. */
  ck_assert_int_eq(vt->case_new_id(S, &d, &err), FLOW_EMISUSE);
  finish();
}
END_TEST

/* A case locked for a transition cannot be taken by another connection
   until the transaction ends: the other waits, then is refused with
   FLOW_EBUSY (at begin or at the lock, as the backend locks). */
START_TEST(test_store_case_lock_excludes)
{
  if (!start(_i))
    return;
  second(50);
  int64_t id = open_case(S);
  flow__case_row got, other;
  ck_assert_int_eq(vt->case_lock(S, id, &got, &err), FLOW_EMISUSE);

  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_lock(S, id, &got, &err), 0);
  int rc = vt->begin(S2, &err);
  if (rc == 0) {
    rc = vt->case_lock(S2, id, &other, &err);
    vt->rollback(S2);
  }
  ck_assert_int_eq(rc, FLOW_EBUSY);
  flow__case_row_clear(&A, &got);
  flow__case_row r = sample_row(id);
  r.state = "assigned";
  r.seq = 2;
  ck_assert_int_eq(vt->case_update(S, &r, "reported", &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);

  /* Free again, and the other connection sees the committed row. */
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  ck_assert_int_eq(vt->case_lock(S2, id, &other, &err), 0);
  ck_assert_str_eq(other.state, "assigned");
  ck_assert_int_eq(other.seq, 2);
  flow__case_row_clear(&A, &other);
  vt->rollback(S2);
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  ck_assert_int_eq(vt->case_lock(S2, id + 100, &other, &err), FLOW_ENOTFOUND);
  vt->rollback(S2);
  finish();
}
END_TEST

static int
count_history(void *ctx, const flow__history_row *row)
{
  int *n = ctx;
  ck_assert_int_eq(row->seq, *n + 1);
  if (row->seq == 1)
    ck_assert_ptr_null(row->from);
  else
    ck_assert_str_eq(row->from, "reported");
  (*n)++;
  return 0;
}

START_TEST(test_store_history_in_order)
{
  if (!start(_i))
    return;
  flow__case_row r = sample_row(1);
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_new_id(S, &r.id, &err), 0);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  for (int i = 3; i >= 1; i--) {
    flow__history_row h = { r.id, i, 1000 + i, "{\"id\":\"x\",\"roles\":[]}",
                            "e", "{}", i == 1 ? NULL : "reported", "x",
                            NULL };
    ck_assert_int_eq(vt->history_append(S, &h, &err), 0);
  }
  /* The same seq twice is refused: history is append-only. */
  flow__history_row dup = { r.id, 2, 0, "{}", "e", "{}", NULL, "x", NULL };
  ck_assert_int_eq(vt->history_append(S, &dup, &err), FLOW_EIO);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int n = 0;
  ck_assert_int_eq(vt->history_each(S, r.id, count_history, &n, &err), 0);
  ck_assert_int_eq(n, 3);
  finish();
}
END_TEST

static int
collect_ids(void *ctx, const flow__case_row *row)
{
  char *buf = ctx;
  char one[24];
  snprintf(one, sizeof one, "%lld,", (long long)row->id);
  strcat(buf, one);
  return 0;
}

START_TEST(test_store_list_filters)
{
  if (!start(_i))
    return;
  const char *datas[] = {
    "{\"bin\":\"refuse\",\"uprn\":\"1000\",\"n\":3,\"ok\":true}",
    "{\"bin\":\"garden\",\"uprn\":\"1001\",\"n\":4,\"ok\":false}",
    "{\"bin\":\"garden\",\"uprn\":\"1002\",\"n\":3.5}",
  };
  int64_t ids[3];
  ck_assert_int_eq(vt->begin(S, &err), 0);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(vt->case_new_id(S, &ids[i], &err), 0);
    flow__case_row r = sample_row(ids[i]);
    r.data = (char *)datas[i];
    r.state = i == 2 ? "closed" : "reported";
    r.closed = i == 2;
    ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  }
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->index_field(S, "uprn", &err), 0);
  ck_assert_int_eq(vt->index_field(S, "uprn", &err), 0);

  /* want: which of the three, as "1,2,3," with 1 the first opened. */
  struct {
    const char *state, *status, *field, *value, *want;
  } cases[] = {
    { NULL, NULL, NULL, NULL, "1,2,3," },
    { "reported", NULL, NULL, NULL, "1,2," },
    { NULL, "closed", NULL, NULL, "3," },
    { NULL, "open", "bin", "\"garden\"", "2," },
    { NULL, NULL, "uprn", "1001", "2," },
    { NULL, NULL, "n", "3", "1," },
    { NULL, NULL, "n", "3.5", "3," },
    { NULL, NULL, "ok", "true", "1," },
    { NULL, NULL, "ok", "false", "2," },
    { NULL, NULL, "missing", "1", "" },
    { NULL, NULL, "ok", "null", "3," },
    { NULL, NULL, "ok", " null ", "3," },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    flow_case_query q = FLOW_CASE_QUERY_INIT;
    flow_where w = { cases[i].field, cases[i].value };
    q.state = cases[i].state;
    q.status = cases[i].status;
    q.service = "bins";
    if (cases[i].field) {
      q.where = &w;
      q.nwhere = 1;
    }
    char buf[256] = "", want[256] = "";
    ck_assert_int_eq(vt->case_list(S, &q, 0, collect_ids, buf, &err), 0);
    for (const char *p = cases[i].want; *p; p += 2) {
      char one[24];
      snprintf(one, sizeof one, "%lld,", (long long)ids[*p - '1']);
      strcat(want, one);
    }
    ck_assert_msg(strcmp(buf, want) == 0, "case %zu: got %s, want %s", i, buf,
                  want);
  }
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  flow_where w = { "bin", "{not json" };
  q.where = &w;
  q.nwhere = 1;
  char buf[64] = "";
  ck_assert_int_eq(vt->case_list(S, &q, 0, collect_ids, buf, &err),
                   FLOW_EINVAL);
  finish();
}
END_TEST

/* ---- services and the outbox --------------------------------------------- */

START_TEST(test_store_services_newest)
{
  if (!start(_i))
    return;
  flow__service_row r = { .name = "bins",
                          .version = 1,
                          .title = "Bins",
                          .source = "return {}",
                          .source_len = 9,
                          .sha256 = "abc",
                          .chunkname = "bins.lua",
                          .loaded_at = 5 };
  ck_assert_int_eq(vt->service_put(S, &r, &err), 0);
  r.version = 2;
  r.sha256 = "def";
  ck_assert_int_eq(vt->service_put(S, &r, &err), 0);
  ck_assert_int_eq(vt->service_put(S, &r, &err), FLOW_EIO);
  flow__service_row got;
  ck_assert_int_eq(vt->service_get(S, "bins", 0, &got, &err), 0);
  ck_assert_int_eq(got.version, 2);
  ck_assert_str_eq(got.sha256, "def");
  ck_assert_uint_eq(got.source_len, 9);
  flow__service_row_clear(&A, &got);
  ck_assert_int_eq(vt->service_get(S, "bins", 1, &got, &err), 0);
  ck_assert_str_eq(got.sha256, "abc");
  flow__service_row_clear(&A, &got);
  int64_t v = 0;
  ck_assert_int_eq(vt->service_newest(S, "bins", &v, &err), 0);
  ck_assert_int_eq(v, 2);
  ck_assert_int_eq(vt->service_newest(S, "nope", &v, &err), FLOW_ENOTFOUND);
  ck_assert_int_eq(vt->service_get(S, "nope", 0, &got, &err), FLOW_ENOTFOUND);
  ck_assert(strstr(err.msg, "flow load nope.lua") != NULL);
  json_t *list;
  ck_assert_int_eq(vt->service_list(S, &list, &err), 0);
  ck_assert_uint_eq(json_array_size(list), 2);
  json_decref(list);
  finish();
}
END_TEST

static flow__request_row
sample_request(int n)
{
  flow__request_row r = { .case_id = 1,
                          .seq = 2,
                          .n = n,
                          .action = "notify.sms",
                          .args = "{\"to\":\"07700\"}",
                          .key = "1-2-0",
                          .reply = "sms_sent",
                          .retry_max = 3,
                          .backoff_ms = 30000,
                          .timeout_ms = 60000,
                          .created_at = 1000 };
  return r;
}

START_TEST(test_store_outbox_unique)
{
  if (!start(_i))
    return;
  flow__request_row a = sample_request(0), b = sample_request(1);
  ck_assert_int_eq(vt->outbox_add(S, &a, &err), 0);
  ck_assert_int_eq(vt->outbox_add(S, &b, &err), 0);
  ck_assert_int_eq(vt->outbox_add(S, &a, &err), FLOW_EIO);
  finish();
}
END_TEST

typedef struct requests {
  flow__request_row rows[8];
  char keys[8][16];
  size_t n;
} requests;

static int
collect_requests(void *ctx, const flow__request_row *row)
{
  requests *c = ctx;
  ck_assert_uint_lt(c->n, 8);
  ck_assert_str_eq(row->action, "notify.sms");
  ck_assert_str_eq(row->args, "{\"to\":\"07700\"}");
  c->rows[c->n] = *row;
  snprintf(c->keys[c->n], sizeof c->keys[c->n], "%s", row->key);
  c->rows[c->n].action = c->rows[c->n].args = c->rows[c->n].status = NULL;
  c->rows[c->n].reply = c->rows[c->n].fail = c->rows[c->n].error = NULL;
  c->rows[c->n].result = NULL;
  c->rows[c->n].key = NULL; /* in keys[], which moves with the struct */
  c->n++;
  return 0;
}

static requests
due_requests(flow__store *s, int64_t now)
{
  requests c = { .n = 0 };
  ck_assert_int_eq(vt->begin(s, &err), 0);
  ck_assert_int_eq(
      vt->outbox_due(s, "notify.sms", now, 8, collect_requests, &c, &err), 0);
  vt->rollback(s);
  return c;
}

static int
take(flow__store *s, const flow__request_row *r, int64_t lease_until)
{
  int taken = -1;
  ck_assert_int_eq(vt->begin(s, &err), 0);
  ck_assert_int_eq(
      vt->outbox_take(s, r->id, r->attempts, lease_until, &taken, &err), 0);
  ck_assert_int_eq(vt->commit(s, &err), 0);
  return taken;
}

static int
settle(flow__store *s, int64_t id, int attempts, const char *status,
       int64_t next_at)
{
  int set = -1;
  ck_assert_int_eq(vt->begin(s, &err), 0);
  ck_assert_int_eq(vt->outbox_settle(s, id, attempts, status, next_at,
                                     "gateway down", NULL, 9000, &set, &err),
                   0);
  ck_assert_int_eq(vt->commit(s, &err), 0);
  return set;
}

/* A request is due until taken; taken by one connection of two; due
   again when its lease runs out (its taker died); an attempt is settled
   once, and a settled request is due no more. */
START_TEST(test_store_outbox_attempts)
{
  if (!start(_i))
    return;
  second(1000);
  flow__request_row add = sample_request(0);
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->outbox_add(S, &add, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int64_t next = 0;
  ck_assert_int_eq(vt->outbox_next_due(S, "notify.sms", &next, &err), 0);
  ck_assert_int_eq(next, 1000);
  ck_assert_int_eq(vt->outbox_next_due(S, "other", &next, &err), 0);
  ck_assert(next == INT64_MAX);
  ck_assert_uint_eq(due_requests(S, 999).n, 0); /* not before created */

  requests d = due_requests(S, 5000);
  ck_assert_uint_eq(d.n, 1);
  flow__request_row r = d.rows[0];
  ck_assert_int_eq(r.attempts, 0);
  ck_assert_str_eq(d.keys[0], "1-2-0");
  ck_assert_int_eq(r.retry_max, 3);
  ck_assert_int_eq(r.timeout_ms, 60000);
  ck_assert(r.lease_until == FLOW__NO_TIME);
  /* Both saw it due; one takes it. */
  ck_assert_int_eq(take(S, &r, 65000), 1);
  ck_assert_int_eq(take(S2, &r, 65000), 0);
  ck_assert_uint_eq(due_requests(S2, 64999).n, 0);
  ck_assert_int_eq(vt->outbox_next_due(S2, "notify.sms", &next, &err), 0);
  ck_assert_int_eq(next, 65000);

  /* Its lease runs out: due again, with one attempt made. */
  d = due_requests(S2, 65000);
  ck_assert_uint_eq(d.n, 1);
  ck_assert_int_eq(d.rows[0].attempts, 1);
  ck_assert_int_eq(d.rows[0].lease_until, 65000);

  /* Settle attempt 1 as a retry from 70000: not due before. */
  ck_assert_int_eq(settle(S, r.id, 1, "pending", 70000), 1);
  ck_assert_int_eq(settle(S, r.id, 0, "done", 0), 0); /* a stale attempt */
  ck_assert_uint_eq(due_requests(S, 69999).n, 0);
  d = due_requests(S, 70000);
  ck_assert_uint_eq(d.n, 1);
  ck_assert(d.rows[0].lease_until == FLOW__NO_TIME);
  ck_assert_int_eq(take(S2, &d.rows[0], 130000), 1);

  /* The result: done, once. */
  int set = -1;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->outbox_settle(S, r.id, 2, "done", 0, NULL,
                                     "{\"sent\":true}", 71000, &set, &err),
                   0);
  ck_assert_int_eq(set, 1);
  ck_assert_int_eq(vt->outbox_settle(S, r.id, 2, "done", 0, NULL, "{}", 72000,
                                     &set, &err),
                   0);
  ck_assert_int_eq(set, 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_uint_eq(due_requests(S, 1000000).n, 0);
  ck_assert_int_eq(vt->outbox_next_due(S, "notify.sms", &next, &err), 0);
  ck_assert(next == INT64_MAX);

  requests got = { .n = 0 };
  ck_assert_int_eq(vt->outbox_get(S2, r.id, collect_requests, &got, &err), 0);
  ck_assert_uint_eq(got.n, 1);
  ck_assert_int_eq(got.rows[0].attempts, 2);
  ck_assert_int_eq(got.rows[0].finished_at, 71000);
  ck_assert_int_eq(vt->outbox_get(S2, r.id + 100, collect_requests, &got,
                                  &err),
                   FLOW_ENOTFOUND);
  got.n = 0;
  ck_assert_int_eq(
      vt->outbox_list(S2, 1, "done", 10, collect_requests, &got, &err), 0);
  ck_assert_uint_eq(got.n, 1);
  got.n = 0;
  ck_assert_int_eq(
      vt->outbox_list(S2, 0, "pending", 10, collect_requests, &got, &err), 0);
  ck_assert_uint_eq(got.n, 0);
  finish();
}
END_TEST

START_TEST(test_store_task_claim)
{
  if (!start(_i))
    return;
  second(1000);
  int64_t id = 0, id2 = 0;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  flow__task_row t = { .case_id = 1, .seq = 2, .n = 0, .name = "inspect",
                       .form = "{}", .due_at = FLOW__NO_TIME,
                       .state = "open", .created_at = 1000 };
  ck_assert_int_eq(vt->task_add(S, &t, &id, &err), 0);
  t.n = 1;
  ck_assert_int_eq(vt->task_add(S, &t, &id2, &err), 0);
  ck_assert_int_ne(id, id2);
  t.n = 0;
  ck_assert_int_eq(vt->task_add(S, &t, NULL, &err), FLOW_EIO);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int claimed = -1;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->task_claim(S, id, "ann", &claimed, &err), 0);
  ck_assert_int_eq(claimed, 1);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  ck_assert_int_eq(vt->task_claim(S2, id, "bob", &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->task_claim(S2, id2, "bob", &claimed, &err), 0);
  ck_assert_int_eq(claimed, 1);
  ck_assert_int_eq(vt->task_claim(S2, id2 + 100, "bob", &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->commit(S2, &err), 0);
  finish();
}
END_TEST

typedef struct task_seen {
  size_t n;
  char status[8][16];
  char by[8][16];
} task_seen;

static int
collect_tasks(void *ctx, const flow__task_row *row)
{
  task_seen *g = ctx;
  if (g->n < 8) {
    snprintf(g->status[g->n], sizeof g->status[0], "%s", row->status);
    snprintf(g->by[g->n], sizeof g->by[0], "%s",
             row->claimed_by ? row->claimed_by : "");
  }
  g->n++;
  return 0;
}

/* A task moves on only from the status it was read in, on any
   connection; ending a state's tasks spares kept ones and other states'. */
START_TEST(test_store_task_set)
{
  if (!start(_i))
    return;
  second(1000);
  int64_t a = 0, b = 0, c = 0;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  flow__task_row t = { .case_id = 7, .seq = 1, .name = "inspect",
                       .team = "highways", .form = "{}", .due_at = 5000,
                       .state = "open", .created_at = 1000 };
  ck_assert_int_eq(vt->task_add(S, &t, &a, &err), 0);
  t.n = 1, t.state = NULL, t.due_at = FLOW__NO_TIME; /* kept */
  ck_assert_int_eq(vt->task_add(S, &t, &b, &err), 0);
  t.n = 2, t.state = "assigned", t.team = "crews";
  ck_assert_int_eq(vt->task_add(S, &t, &c, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);

  int set = -1;
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  ck_assert_int_eq(vt->task_claim(S2, a, "ann", &set, &err), 0);
  ck_assert_int_eq(set, 1);
  flow__task_row to = { .status = "done", .claimed_by = "ann",
                        .outcome = "{}", .finished_by = "ann",
                        .finished_at = 2000 };
  /* claimed by ann: bob cannot complete it, ann can, once */
  ck_assert_int_eq(vt->task_set(S2, a, "claimed", "bob", &to, &set, &err), 0);
  ck_assert_int_eq(set, 0);
  ck_assert_int_eq(vt->task_set(S2, a, "claimed", "ann", &to, &set, &err), 0);
  ck_assert_int_eq(set, 1);
  ck_assert_int_eq(vt->task_set(S2, a, "claimed", "ann", &to, &set, &err), 0);
  ck_assert_int_eq(set, 0);
  ck_assert_int_eq(vt->commit(S2, &err), 0);

  task_seen g = { 0 };
  flow__task_query q = { .team = "highways" };
  ck_assert_int_eq(vt->task_list(S, &q, 10, collect_tasks, &g, &err), 0);
  ck_assert_uint_eq(g.n, 2);
  ck_assert_str_eq(g.status[0], "done");
  ck_assert_str_eq(g.by[0], "ann");
  memset(&g, 0, sizeof g);
  flow__task_query od = { .due_before = 6000 };
  ck_assert_int_eq(vt->task_list(S, &od, 10, collect_tasks, &g, &err), 0);
  ck_assert_uint_eq(g.n, 0); /* the one due is done */

  /* Leaving "assigned" for "open": c ends, b (kept) stays. */
  memset(&g, 0, sizeof g);
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->task_end_case(S, 7, "open", "left", 3000,
                                     collect_tasks, &g, &err),
                   0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_uint_eq(g.n, 1);
  ck_assert_str_eq(g.status[0], "cancelled");
  memset(&g, 0, sizeof g);
  flow__task_query open = { .case_id = 7, .status = "open" };
  ck_assert_int_eq(vt->task_list(S2, &open, 10, collect_tasks, &g, &err), 0);
  ck_assert_uint_eq(g.n, 1);
  /* flow.cancel_task: by name only (the kept one is 'inspect'). */
  memset(&g, 0, sizeof g);
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->task_cancel_named(S, 7, "collect", "by name", 3000,
                                         collect_tasks, &g, &err),
                   0);
  ck_assert_uint_eq(g.n, 0);
  ck_assert_int_eq(vt->task_cancel_named(S, 8, "inspect", "by name", 3000,
                                         collect_tasks, &g, &err),
                   0);
  ck_assert_uint_eq(g.n, 0); /* another case's name */
  ck_assert_int_eq(vt->commit(S, &err), 0);
  memset(&g, 0, sizeof g);
  ck_assert_int_eq(vt->task_list(S2, &open, 10, collect_tasks, &g, &err), 0);
  ck_assert_uint_eq(g.n, 1);
  /* Closing ends the kept one too. */
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->task_end_case(S, 7, NULL, "closed", 3000, NULL, NULL,
                                     &err),
                   0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  memset(&g, 0, sizeof g);
  ck_assert_int_eq(vt->task_list(S2, &open, 10, collect_tasks, &g, &err), 0);
  ck_assert_uint_eq(g.n, 0);
  finish();
}
END_TEST

static int
count_incidents(void *ctx, const flow__incident_row *row)
{
  (void)row;
  ++*(size_t *)ctx;
  return 0;
}

/* An incident is settled once; an open one counts its refusals. */
START_TEST(test_store_incidents)
{
  if (!start(_i))
    return;
  second(1000);
  int64_t id = 0;
  flow__incident_row r = { .case_id = 3, .source = "task", .source_id = 9,
                           .kind = 2, .event = "inspected",
                           .payload = "{}", .code = "FLOW_ESCRIPT",
                           .error = "x.lua:3: boom", .raised_at = 1000 };
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->incident_add(S, &r, &id, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int set = -1;
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  ck_assert_int_eq(vt->incident_set(S2, id, "open", "FLOW_EREFUSED", "again",
                                    NULL, 2000, &set, &err),
                   0);
  ck_assert_int_eq(set, 1);
  ck_assert_int_eq(vt->incident_set(S2, id, "dismissed", NULL, NULL, "ann",
                                    3000, &set, &err),
                   0);
  ck_assert_int_eq(set, 1);
  ck_assert_int_eq(vt->incident_set(S2, id, "resolved", NULL, NULL, "bob",
                                    4000, &set, &err),
                   0);
  ck_assert_int_eq(set, 0);
  ck_assert_int_eq(vt->commit(S2, &err), 0);
  size_t n = 0;
  ck_assert_int_eq(vt->incident_list(S, 0, 3, "dismissed", 10,
                                     count_incidents, &n, &err),
                   0);
  ck_assert_uint_eq(n, 1);
  n = 0;
  ck_assert_int_eq(
      vt->incident_list(S, 0, 0, "open", 10, count_incidents, &n, &err), 0);
  ck_assert_uint_eq(n, 0);
  finish();
}
END_TEST

static int
count_messages(void *ctx, const flow__message_row *row)
{
  (void)row;
  ++*(size_t *)ctx;
  return 0;
}

/* Correlation keys are unique among open cases; a buffered message is
   delivered once and expires when its time runs out. */
START_TEST(test_store_messages)
{
  if (!start(_i))
    return;
  second(1000);
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->correl_put(S, "paid", "P1", 4, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  ck_assert_int_eq(vt->correl_put(S2, "paid", "P1", 5, &err), FLOW_ECONFLICT);
  ck_assert_int_eq(vt->correl_put(S2, "paid", "P2", 5, &err), 0);
  ck_assert_int_eq(vt->commit(S2, &err), 0);
  int64_t cid = 0;
  ck_assert_int_eq(vt->correl_find(S, "paid", "P2", &cid, &err), 0);
  ck_assert_int_eq(cid, 5);
  ck_assert_int_eq(vt->correl_find(S, "paid", "P3", &cid, &err),
                   FLOW_ENOTFOUND);

  int64_t m1 = 0, m2 = 0;
  flow__message_row m = { .name = "paid", .key = "P3", .payload = "{}",
                          .created_at = 1000, .expires_at = 5000,
                          .finished_at = FLOW__NO_TIME };
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->message_add(S, &m, &m1, &err), 0);
  m.key = "P9", m.expires_at = 3000;
  ck_assert_int_eq(vt->message_add(S, &m, &m2, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int64_t next = 0;
  ck_assert_int_eq(vt->message_next_expiry(S2, &next, &err), 0);
  ck_assert_int_eq(next, 3000);
  size_t n = 0;
  ck_assert_int_eq(vt->message_matched(S2, 10, count_messages, &n, &err), 0);
  ck_assert_uint_eq(n, 0);
  /* A case takes key P3: the buffered message is matched, then delivered
     by one connection only. */
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  ck_assert_int_eq(vt->correl_put(S2, "paid", "P3", 6, &err), 0);
  ck_assert_int_eq(vt->commit(S2, &err), 0);
  ck_assert_int_eq(vt->message_matched(S, 10, count_messages, &n, &err), 0);
  ck_assert_uint_eq(n, 1);
  int set = -1;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(
      vt->message_set(S, m1, "buffered", "delivered", 6, 2000, &set, &err), 0);
  ck_assert_int_eq(set, 1);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  ck_assert_int_eq(
      vt->message_set(S2, m1, "buffered", "delivered", 6, 2000, &set, &err),
      0);
  ck_assert_int_eq(set, 0);
  n = 0;
  ck_assert_int_eq(vt->message_expire(S2, 4000, 10, count_messages, &n, &err),
                   0);
  ck_assert_uint_eq(n, 1); /* P9 */
  ck_assert_int_eq(vt->commit(S2, &err), 0);
  n = 0;
  flow__message_query q = { .status = "expired" };
  ck_assert_int_eq(vt->message_list(S, &q, 10, count_messages, &n, &err), 0);
  ck_assert_uint_eq(n, 1);
  ck_assert_int_eq(vt->message_next_expiry(S, &next, &err), 0);
  ck_assert_int_eq(next, INT64_MAX);
  /* Closing drops the case's keys. */
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->correl_drop(S, 5, NULL, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->correl_find(S2, "paid", "P2", &cid, &err),
                   FLOW_ENOTFOUND);
  finish();
}
END_TEST

/* ---- savepoints ------------------------------------------------------ */

START_TEST(test_store_savepoint)
{
  if (!start(_i))
    return;
  int64_t a, b;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_new_id(S, &a, &err), 0);
  flow__case_row r = sample_row(a);
  ck_assert_int_eq(vt->savepoint(S, &err), 0);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  ck_assert_int_eq(vt->release(S, &err), 0);
  ck_assert_int_eq(vt->savepoint(S, &err), 0);
  ck_assert_int_eq(vt->case_new_id(S, &b, &err), 0);
  ck_assert_int_gt(b, a);
  r.id = b;
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  vt->rollback_to(S);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  flow__case_row got;
  ck_assert_int_eq(vt->case_get(S, a, &got, &err), 0);
  flow__case_row_clear(&A, &got);
  ck_assert_int_eq(vt->case_get(S, b, &got, &err), FLOW_ENOTFOUND);
  /* Ids still grow after the undone savepoint (its id may come again). */
  ck_assert_int_gt(open_case(S), a);
  finish();
}
END_TEST

/* Savepoints nest (a call's, and one inside it around a transition that
   opens cases): undoing the inner keeps the outer's writes, undoing the
   outer takes both, and the case ids come back with each. */
START_TEST(test_store_savepoint_nested)
{
  if (!start(_i))
    return;
  int64_t a, b, c;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->savepoint(S, &err), 0); /* outer */
  ck_assert_int_eq(vt->case_new_id(S, &a, &err), 0);
  flow__case_row r = sample_row(a);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  ck_assert_int_eq(vt->savepoint(S, &err), 0); /* inner */
  ck_assert_int_eq(vt->case_new_id(S, &b, &err), 0);
  ck_assert_int_gt(b, a);
  r.id = b;
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  vt->rollback_to(S); /* inner: b goes, a stays */
  ck_assert_int_eq(vt->case_new_id(S, &c, &err), 0);
  ck_assert_int_eq(c, b); /* its id comes again */
  flow__case_row got;
  ck_assert_int_eq(vt->case_get(S, a, &got, &err), 0);
  flow__case_row_clear(&A, &got);
  ck_assert_int_eq(vt->case_get(S, b, &got, &err), FLOW_ENOTFOUND);
  /* Inner released, then outer undone: everything goes. */
  ck_assert_int_eq(vt->savepoint(S, &err), 0);
  r.id = c;
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  ck_assert_int_eq(vt->release(S, &err), 0);
  vt->rollback_to(S);
  ck_assert_int_eq(vt->case_new_id(S, &c, &err), 0);
  ck_assert_int_eq(c, a);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->case_get(S, a, &got, &err), FLOW_ENOTFOUND);
  /* No deeper than the store allows, and refused cleanly past it. */
  ck_assert_int_eq(vt->begin(S, &err), 0);
  int depth = 0;
  while (depth < 64 && vt->savepoint(S, &err) == 0)
    depth++;
  ck_assert_int_lt(depth, 64);
  ck_assert_int_ge(depth, 2);
  for (int i = 0; i < depth; i++)
    ck_assert_int_eq(vt->release(S, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  finish();
}
END_TEST

/* ---- timers ---------------------------------------------------------- */

/* A claim takes a timer only while it is pending and live, and says so;
   so does an incident.  Of two connections, one claims. */
START_TEST(test_store_timer_claim)
{
  if (!start(_i))
    return;
  second(1000);
  flow__case_row r = sample_row(0);
  int claimed = -1, marked = -1;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_new_id(S, &r.id, &err), 0);
  ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
  add_timer(S, r.id, "reported", 1); /* this visit of reported */
  add_timer(S, r.id, "reported", 1); /* the same, to outlive a move */
  add_timer(S, r.id, NULL, 1);       /* kept */
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int64_t ids[8] = { 0 };
  ck_assert_int_eq(vt->timer_due(S, 5000, 8, collect_timer_ids, ids, &err), 0);
  ck_assert(ids[0] && ids[1] && ids[2] && !ids[3]);

  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->timer_claim(S, ids[0], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 1);
  /* Taken: a second claim gets nothing. */
  ck_assert_int_eq(vt->timer_claim(S, ids[0], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  /* Nor does another connection, later. */
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  ck_assert_int_eq(vt->timer_claim(S2, ids[0], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->commit(S2, &err), 0);

  /* A rolled-back claim leaves the timer to claim again. */
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->timer_claim(S, ids[1], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 1);
  vt->rollback(S);

  /* The case leaves reported: its timer there is dead, the kept one is
     not. */
  r.state = "assigned";
  r.seq = 2;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_update(S, &r, "reported", &err), 0);
  ck_assert_int_eq(vt->timer_claim(S, ids[1], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->timer_incident(S, ids[1], "late", &marked, &err), 0);
  ck_assert_int_eq(marked, 0);
  ck_assert_int_eq(vt->timer_incident(S, ids[2], "boom", &marked, &err), 0);
  ck_assert_int_eq(marked, 1);
  /* An incident is no longer pending: neither claimed nor marked again. */
  ck_assert_int_eq(vt->timer_claim(S, ids[2], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->timer_incident(S, ids[2], "boom", &marked, &err), 0);
  ck_assert_int_eq(marked, 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int n = 0;
  ck_assert_int_eq(vt->timer_list(S, r.id, count_timers, &n, &err), 0);
  ck_assert_int_eq(n, 1); /* the incident */

  /* A closed case's kept timers are dead too. */
  ck_assert_int_eq(vt->begin(S, &err), 0);
  add_timer(S, r.id, NULL, 2);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  int64_t due = 0;
  ck_assert_int_eq(vt->timer_next_due(S, &due, &err), 0);
  ck_assert_int_eq(due, 2000);
  memset(ids, 0, sizeof ids);
  ck_assert_int_eq(vt->timer_due(S, 5000, 8, collect_timer_ids, ids, &err), 0);
  ck_assert(ids[0] && !ids[1]);
  r.state = "closed";
  r.closed = 1;
  r.seq = 3;
  ck_assert_int_eq(vt->begin(S, &err), 0);
  ck_assert_int_eq(vt->case_update(S, &r, "assigned", &err), 0);
  ck_assert_int_eq(vt->timer_claim(S, ids[0], &claimed, &err), 0);
  ck_assert_int_eq(claimed, 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  ck_assert_int_eq(vt->timer_next_due(S, &due, &err), 0);
  ck_assert(due == INT64_MAX);
  finish();
}
END_TEST

/* A sweep takes any number of cases in one call. */
START_TEST(test_store_sweep_any_number)
{
  if (!start(_i))
    return;
  enum { N = 300 };
  int64_t ids[N];
  ck_assert_int_eq(vt->begin(S, &err), 0);
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(vt->case_new_id(S, &ids[i], &err), 0);
    flow__case_row r = sample_row(ids[i]);
    ck_assert_int_eq(vt->case_insert(S, &r, &err), 0);
    add_timer(S, ids[i], "reported", 1);
    r.state = "closed";
    r.closed = 1;
    r.seq = 2;
    ck_assert_int_eq(vt->case_update(S, &r, "reported", &err), 0);
  }
  /* Dead, but still there to be removed. */
  int n = 0;
  ck_assert_int_eq(vt->timer_due(S, 5000, N + 1, count_timers, &n, &err), 0);
  ck_assert_int_eq(n, N);
  ck_assert_int_eq(vt->timer_sweep_cases(S, ids, N, &err), 0);
  ck_assert_int_eq(vt->timer_sweep_cases(S, ids, 0, &err), 0);
  ck_assert_int_eq(vt->commit(S, &err), 0);
  n = 0;
  ck_assert_int_eq(vt->timer_due(S, 5000, N + 1, count_timers, &n, &err), 0);
  ck_assert_int_eq(n, 0);
  finish();
}
END_TEST

/* ---- wake-ups -------------------------------------------------------- */

START_TEST(test_store_changed_elsewhere)
{
  if (!start(_i))
    return;
  second(1000);
  int changed = -1;
  ck_assert_int_eq(vt->changed_elsewhere(S, &changed, &err), 0);
  ck_assert_int_eq(changed, 1); /* the first call */
  ck_assert_int_eq(vt->changed_elsewhere(S, &changed, &err), 0);
  ck_assert_int_eq(changed, 0);
  open_case(S2);
  ck_assert_int_eq(vt->changed_elsewhere(S, &changed, &err), 0);
  ck_assert_int_eq(changed, 1);
  ck_assert_int_eq(vt->changed_elsewhere(S, &changed, &err), 0);
  ck_assert_int_eq(changed, 0);
  /* A rolled-back transaction of the other changes nothing. */
  ck_assert_int_eq(vt->begin(S2, &err), 0);
  flow__case_row r = sample_row(0);
  ck_assert_int_eq(vt->case_new_id(S2, &r.id, &err), 0);
  ck_assert_int_eq(vt->case_insert(S2, &r, &err), 0);
  vt->rollback(S2);
  ck_assert_int_eq(vt->changed_elsewhere(S, &changed, &err), 0);
  ck_assert_int_eq(changed, 0);
  finish();
}
END_TEST

static Suite *
conformance_suite(void)
{
  Suite *s = suite_create("store_conformance");
  TCase *tc = tcase_create("every backend");
  tcase_set_timeout(tc, 30);
  tcase_add_loop_test(tc, test_store_case_round_trip, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_rollback_discards, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_case_ids_grow, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_case_lock_excludes, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_history_in_order, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_list_filters, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_services_newest, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_outbox_unique, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_outbox_attempts, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_task_claim, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_task_set, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_incidents, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_messages, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_savepoint, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_savepoint_nested, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_timer_claim, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_sweep_any_number, 0, NBACKENDS);
  tcase_add_loop_test(tc, test_store_changed_elsewhere, 0, NBACKENDS);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(conformance_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
