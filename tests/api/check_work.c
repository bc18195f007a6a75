/*
 * Tasks, messages and incidents through the public API (flow/task.h):
 * tasks created and ended with their transitions, claimed once, completed
 * with an outcome checked against their form; messages delivered once to
 * the case that holds their key, buffered until one does, expired when
 * their time runs out; correlation keys unique among open cases;
 * incidents listed, retried and dismissed.
 *
 * A fixed engine clock throughout; every test that spans a restart uses a
 * database file and two engine lifetimes.
 */
#define _POSIX_C_SOURCE 200809L /* strdup, mkdtemp */

#include <check.h>
#include <flow.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const SERVICE =
    "return {\n"
    "  name = 'pay', version = 1, initial = 'waiting',\n"
    "  fields = { ref = { type = 'string' }, amount = { type = 'integer' },\n"
    "             outcome = { type = 'string' }, by = { type = 'string' },\n"
    "             strict = { type = 'boolean' } },\n"
    "  correlate = { paid = 'ref' },\n"
    "  states = {\n"
    "    waiting = { on = {\n"
    "      paid = function(case, ev)\n"
    "        if case.data.strict and not ev.payload.amount then\n"
    "          error('a payment needs an amount')\n"
    "        end\n"
    "        case.data.amount = ev.payload.amount\n"
    "        return 'inspect'\n"
    "      end,\n"
    "      relax = function(case) case.data.strict = false end,\n"
    "      rekey = function(case, ev) case.data.ref = ev.payload.ref end,\n"
    "      drop = 'gone',\n"
    "    } },\n"
    "    inspect = {\n"
    "      enter = function(case)\n"
    "        flow.task{ name = 'visit', title = 'Visit', team = 'highways',\n"
    "          due = '2 working days', done = 'visited',\n"
    "          form = { outcome = { type = 'enum', values = { 'fixed',\n"
    "                   'not_found' }, required = true },\n"
    "                   note = { type = 'string', max = 5 } } }\n"
    "        flow.task{ name = 'letter', team = 'admin', keep = true }\n"
    "      end,\n"
    "      on = {\n"
    "        visited = function(case, ev)\n"
    "          case.data.outcome = ev.payload.outcome.outcome\n"
    "          case.data.by = ev.payload.by .. '/' .. ev.task.name\n"
    "          return 'review'\n"
    "        end,\n"
    "        skip = 'review',\n"
    "      } },\n"
    "    review = { on = { close = 'gone' } },\n"
    "    gone = { final = true },\n"
    "  },\n"
    "}\n";

#define MIN ((int64_t)60 * 1000)
#define DAY (24 * 60 * MIN)

static char dir[64], path[96];
static flow_engine *E;
static int64_t T0;

static const flow_actor ANN = { "ann", NULL, 0 };
static const flow_actor BOB = { "bob", NULL, 0 };

static void
open_engine(void)
{
  char err[256];
  ck_assert_msg(flow_engine_open(&E, path, NULL, err, sizeof err) == 0, "%s",
                err);
  flow_engine_set_time(E, T0);
}

static void
reopen(void)
{
  flow_engine_close(E);
  open_engine();
}

static void
setup(void)
{
  strcpy(dir, "/tmp/flow_work_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/db", dir);
  /* A Monday. */
  ck_assert_int_eq(flow_time_parse(&T0, "2026-11-30T10:00:00Z"), 0);
  open_engine();
  ck_assert_msg(flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE),
                                         "pay.lua") == 0,
                "%s", flow_errmsg(E));
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
  char p[128];
  const char *suffix[] = { "db", "db-wal", "db-shm" };
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, suffix[i]);
    unlink(p);
  }
  rmdir(dir);
}

/* Copies an owned string into a static buffer and frees it. */
static const char *
keep(char *s)
{
  static char buf[8][8192];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, sizeof buf[0], "%s", s ? s : "");
  flow_free(s);
  return b;
}

static const char *
open_case(const char *data)
{
  char *out = NULL;
  ck_assert_msg(flow_case_open(&out, E, "pay", data, NULL) == 0, "%s",
                flow_errmsg(E));
  static char id[8][16];
  static int k;
  char *b = id[k++ % 8];
  const char *p = strstr(out, "\"id\":\"");
  snprintf(b, 16, "%.*s", (int)strcspn(p + 6, "\""), p + 6);
  flow_free(out);
  return b;
}

static const char *
show(const char *id)
{
  char *out = NULL;
  ck_assert_int_eq(flow_case_get(&out, E, id), 0);
  return keep(out);
}

static const char *
tasks(const flow_task_query *q)
{
  char *out = NULL;
  ck_assert_msg(flow_tasks_list(&out, E, q) == 0, "%s", flow_errmsg(E));
  return keep(out);
}

/* The id of the task called name in a listing. */
static const char *
task_id(const char *list, const char *name)
{
  static char id[16];
  char want[64];
  snprintf(want, sizeof want, "\"name\":\"%s\"", name);
  const char *obj = strstr(list, want);
  ck_assert_msg(obj != NULL, "no task %s in %s", name, list);
  /* back to the start of the object */
  while (obj > list && *obj != '{')
    obj--;
  const char *p = strstr(obj, "\"id\":\"");
  snprintf(id, sizeof id, "%.*s", (int)strcspn(p + 6, "\""), p + 6);
  return id;
}

static const char *
send(const char *name, const char *key, const char *payload, int64_t ttl)
{
  char *out = NULL;
  ck_assert_msg(flow_message_send(&out, E, name, key, payload, ttl) == 0,
                "%s", flow_errmsg(E));
  return keep(out);
}

#define HAS(hay, needle)                                                       \
  ck_assert_msg(strstr((hay), (needle)) != NULL, "%s\nlacks %s", (hay),       \
                (needle))
#define LACKS(hay, needle)                                                     \
  ck_assert_msg(strstr((hay), (needle)) == NULL, "%s\nhas %s", (hay),         \
                (needle))

/* ---- tasks ------------------------------------------------------------- */

START_TEST(test_task_created_claimed_completed)
{
  const char *id = open_case("{\"ref\":\"R1\"}");
  HAS(send("paid", "R1", "{\"amount\":5}", 0), "\"status\":\"delivered\"");
  HAS(show(id), "\"state\":\"inspect\"");
  flow_task_query q = { .team = "highways" };
  const char *l = tasks(&q);
  HAS(l, "\"name\":\"visit\"");
  HAS(l, "\"status\":\"open\"");
  /* Monday 10:00 + 2 working days */
  HAS(l, "\"due_at\":\"2026-12-02T10:00:00Z\"");
  char tid[16];
  snprintf(tid, sizeof tid, "%s", task_id(l, "visit"));

  /* Claimed once: bob loses the race, ann may claim again. */
  ck_assert_int_eq(flow_task_claim(E, tid, &ANN), 0);
  ck_assert_int_eq(flow_task_claim(E, tid, &BOB), FLOW_ECONFLICT);
  HAS(flow_errmsg(E), "claimed by ann");
  ck_assert_int_eq(flow_task_claim(E, tid, &ANN), 0);
  ck_assert_int_eq(flow_task_release(E, tid, &BOB), FLOW_EPERM);
  ck_assert_int_eq(flow_task_complete(NULL, E, tid, "{\"outcome\":\"fixed\"}",
                                      &BOB),
                   FLOW_ECONFLICT);

  /* The form refuses, naming every failing field; nothing changes. */
  ck_assert_int_eq(flow_task_complete(NULL, E, tid,
                                      "{\"note\":\"far too long\","
                                      "\"colour\":\"red\"}",
                                      &ANN),
                   FLOW_EDATA);
  const char *m = flow_errmsg(E);
  HAS(m, "outcome: is required");
  HAS(m, "note:");
  HAS(m, "colour");
  HAS(tasks(&q), "\"status\":\"claimed\"");
  HAS(show(id), "\"state\":\"inspect\"");
  ck_assert_int_eq(flow_task_complete(NULL, E, tid, "[1]", &ANN),
                   FLOW_EINVAL);

  char *out = NULL;
  ck_assert_msg(flow_task_complete(&out, E, tid, "{\"outcome\":\"fixed\"}",
                                   &ANN) == 0,
                "%s", flow_errmsg(E));
  const char *c = keep(out);
  HAS(c, "\"state\":\"review\"");
  HAS(c, "\"by\":\"ann/visit\"");
  HAS(c, "\"outcome\":\"fixed\"");
  q.status = "done";
  HAS(tasks(&q), "\"finished_by\":\"ann\"");
  /* Done is done. */
  ck_assert_int_eq(flow_task_complete(NULL, E, tid, "{\"outcome\":\"fixed\"}",
                                      &ANN),
                   FLOW_ECONFLICT);
  ck_assert_int_eq(flow_task_claim(E, tid, &ANN), FLOW_ECONFLICT);
  /* The kept letter task survived leaving inspect. */
  flow_task_query a = { .team = "admin", .status = "open" };
  HAS(tasks(&a), "\"name\":\"letter\"");
}
END_TEST

START_TEST(test_task_ends_with_its_state)
{
  const char *id = open_case("{\"ref\":\"R2\"}");
  send("paid", "R2", "{}", 0);
  flow_task_query q = { .case_id = id };
  char tid[16];
  snprintf(tid, sizeof tid, "%s", task_id(tasks(&q), "visit"));
  ck_assert_int_eq(flow_case_signal(NULL, E, id, "skip", NULL, NULL), 0);
  flow_task_query open = { .case_id = id, .status = "open" };
  const char *l = tasks(&open);
  LACKS(l, "\"name\":\"visit\"");
  HAS(l, "\"name\":\"letter\""); /* kept */
  flow_task_query cancelled = { .case_id = id, .status = "cancelled" };
  HAS(tasks(&cancelled), "\"finished_by\":\"left the state\"");
  /* Completing a cancelled task changes nothing. */
  ck_assert_int_eq(flow_task_complete(NULL, E, tid, "{\"outcome\":\"fixed\"}",
                                      &ANN),
                   FLOW_ECONFLICT);
  HAS(flow_errmsg(E), "cancelled");
  /* Closing ends the kept one too. */
  ck_assert_int_eq(flow_case_signal(NULL, E, id, "close", NULL, NULL), 0);
  l = tasks(&open);
  ck_assert_str_eq(l, "[]");
}
END_TEST

START_TEST(test_task_overdue_and_bad_ids)
{
  const char *id = open_case("{\"ref\":\"R3\"}");
  send("paid", "R3", "{}", 0);
  flow_task_query od = { .overdue = 1 };
  ck_assert_str_eq(tasks(&od), "[]");
  flow_engine_set_time(E, T0 + 3 * DAY);
  const char *l = tasks(&od);
  HAS(l, "\"name\":\"visit\"");
  HAS(l, "\"overdue\":true");
  (void)id;
  ck_assert_int_eq(flow_task_claim(E, "999", &ANN), FLOW_ENOTFOUND);
  ck_assert_int_eq(flow_task_claim(E, "x1", &ANN), FLOW_EINVAL);
  ck_assert_int_eq(flow_task_cancel(E, "999", &ANN), FLOW_ENOTFOUND);
  ck_assert_int_eq(flow_task_claim(E, "1", NULL), FLOW_EINVAL);
  flow_task_query bad = { .status = "lost" };
  char *out = NULL;
  ck_assert_int_eq(flow_tasks_list(&out, E, &bad), FLOW_EINVAL);
  ck_assert_int_eq(flow_incident_retry(NULL, E, "77", NULL), FLOW_ENOTFOUND);
  ck_assert_int_eq(flow_incident_dismiss(E, "0", NULL), FLOW_EINVAL);
}
END_TEST

/* Two engines on one file: one claim wins, and a task outlives a restart. */
START_TEST(test_task_claim_race_two_engines)
{
  const char *id = open_case("{\"ref\":\"R4\"}");
  send("paid", "R4", "{}", 0);
  flow_task_query q = { .case_id = id, .team = "highways" };
  char tid[16];
  snprintf(tid, sizeof tid, "%s", task_id(tasks(&q), "visit"));
  flow_engine *B = NULL;
  ck_assert_int_eq(flow_engine_open(&B, path, NULL, NULL, 0), 0);
  flow_engine_set_time(B, T0);
  ck_assert_int_eq(flow_task_claim(B, tid, &BOB), 0);
  ck_assert_int_eq(flow_task_claim(E, tid, &ANN), FLOW_ECONFLICT);
  flow_engine_close(B);
  reopen();
  ck_assert_int_eq(flow_task_complete(NULL, E, tid, "{\"outcome\":"
                                      "\"not_found\"}", &BOB),
                   0);
  HAS(show(id), "\"outcome\":\"not_found\"");
}
END_TEST

/* ---- messages ---------------------------------------------------------- */

START_TEST(test_message_buffered_until_a_case_takes_its_key)
{
  const char *m = send("paid", "LATE", "{\"amount\":7}", 0);
  HAS(m, "\"status\":\"buffered\"");
  HAS(m, "\"expires_at\":\"2026-12-07T10:00:00Z\""); /* 7 days */
  reopen(); /* it waits in the file */
  const char *id = open_case("{\"ref\":\"LATE\"}");
  const char *c = show(id);
  HAS(c, "\"state\":\"inspect\"");
  HAS(c, "\"amount\":7");
  char *out = NULL;
  ck_assert_int_eq(flow_messages_list(&out, E, "paid", "LATE", NULL), 0);
  const char *l = keep(out);
  HAS(l, "\"status\":\"delivered\"");
  /* Delivered once: a case opened with the same key later is refused
     only while the first is open; the message is not delivered again. */
  ck_assert_int_eq(flow_messages_list(&out, E, NULL, NULL, "buffered"), 0);
  ck_assert_str_eq(keep(out), "[]");

  /* A key set by a later event also takes a buffered message. */
  send("paid", "K2", "{\"amount\":9}", 0);
  const char *id2 = open_case("{}");
  ck_assert_int_eq(flow_case_signal(NULL, E, id2, "rekey",
                                    "{\"ref\":\"K2\"}", NULL),
                   0);
  HAS(show(id2), "\"amount\":9");
}
END_TEST

START_TEST(test_message_expires)
{
  send("paid", "NOBODY", "{}", 60 * MIN);
  flow_engine_set_time(E, T0 + 61 * MIN);
  size_t fired = 0;
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  char *out = NULL;
  ck_assert_int_eq(flow_messages_list(&out, E, NULL, NULL, "expired"), 0);
  HAS(keep(out), "\"key\":\"NOBODY\"");
  /* Expired is not delivered to a case that takes the key later. */
  const char *id = open_case("{\"ref\":\"NOBODY\"}");
  HAS(show(id), "\"state\":\"waiting\"");
  /* Bad input changes nothing. */
  ck_assert_int_eq(flow_message_send(NULL, E, "paid", "K", "{", 0),
                   FLOW_EINVAL);
  ck_assert_int_eq(flow_message_send(NULL, E, "Paid!", "K", NULL, 0),
                   FLOW_EINVAL);
  ck_assert_int_eq(flow_message_send(NULL, E, "paid", "", NULL, 0),
                   FLOW_EINVAL);
  ck_assert_int_eq(flow_message_send(NULL, E, "paid", "K", NULL, -1),
                   FLOW_EINVAL);
  ck_assert_int_eq(flow_messages_list(&out, E, NULL, NULL, NULL), 0);
  ck_assert_int_eq(strstr(keep(out), "\"key\":\"K\"") == NULL, 1);
}
END_TEST

START_TEST(test_correlation_key_unique_among_open_cases)
{
  const char *a = open_case("{\"ref\":\"SAME\"}");
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "pay", "{\"ref\":\"SAME\"}", NULL),
                   FLOW_ECONFLICT);
  const char *m = flow_errmsg(E);
  HAS(m, "pay.lua:");
  HAS(m, "already waits for message 'paid'");
  /* Nothing was written: the next case gets the next id. */
  const char *b = open_case("{\"ref\":\"OTHER\"}");
  ck_assert_int_eq(atoi(b), atoi(a) + 1);
  ck_assert_int_eq(flow_case_signal(NULL, E, b, "rekey",
                                    "{\"ref\":\"SAME\"}", NULL),
                   FLOW_ECONFLICT);
  HAS(show(b), "\"ref\":\"OTHER\"");
  /* Once the first closes, its key is free. */
  ck_assert_int_eq(flow_case_signal(NULL, E, a, "drop", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, b, "rekey",
                                    "{\"ref\":\"SAME\"}", NULL),
                   0);
  HAS(send("paid", "SAME", "{}", 0), "\"case\":\"2\"");
}
END_TEST

/* ---- incidents --------------------------------------------------------- */

typedef struct heard {
  int n;
  char types[32][32];
} heard;

static void
listen(flow_engine *e, const char *json, void *payload)
{
  (void)e;
  heard *h = payload;
  const char *p = strstr(json, "\"type\":\"");
  if (p && h->n < 32)
    snprintf(h->types[h->n++], sizeof h->types[0], "%.*s",
             (int)strcspn(p + 8, "\""), p + 8);
}

static int
heard_type(const heard *h, const char *type)
{
  for (int i = 0; i < h->n; i++)
    if (strcmp(h->types[i], type) == 0)
      return 1;
  return 0;
}

START_TEST(test_message_refused_is_an_incident_retried)
{
  heard h = { 0 };
  int sub = 0;
  ck_assert_int_eq(flow_engine_subscribe(E, listen, &h, &sub), 0);
  const char *id = open_case("{\"ref\":\"S1\",\"strict\":true}");
  const char *m = send("paid", "S1", "{}", 0);
  HAS(m, "\"status\":\"incident\"");
  HAS(show(id), "\"state\":\"waiting\""); /* unchanged */
  ck_assert(heard_type(&h, "incident"));
  char *out = NULL;
  ck_assert_int_eq(flow_incidents_list(&out, E, id, "open"), 0);
  const char *l = keep(out);
  HAS(l, "\"source\":\"message\"");
  HAS(l, "pay.lua:");
  HAS(l, "a payment needs an amount");
  HAS(l, "\"attempts\":1");
  const char *p = strstr(l, "\"id\":\"");
  char iid[16];
  snprintf(iid, sizeof iid, "%.*s", (int)strcspn(p + 6, "\""), p + 6);

  /* Again as it is: refused, counted, kept open. */
  reopen();
  ck_assert_int_eq(flow_incident_retry(NULL, E, iid, &ANN), FLOW_ESCRIPT);
  ck_assert_int_eq(flow_incidents_list(&out, E, id, "open"), 0);
  HAS(keep(out), "\"attempts\":2");
  /* The case changed so that it accepts: resolved, delivered once. */
  ck_assert_int_eq(flow_case_signal(NULL, E, id, "relax", NULL, NULL), 0);
  ck_assert_msg(flow_incident_retry(&out, E, iid, &ANN) == 0, "%s",
                flow_errmsg(E));
  HAS(keep(out), "\"state\":\"inspect\"");
  ck_assert_int_eq(flow_incident_retry(NULL, E, iid, &ANN), FLOW_ECONFLICT);
  ck_assert_int_eq(flow_incidents_list(&out, E, id, "resolved"), 0);
  HAS(keep(out), "\"finished_by\":\"ann\"");
  ck_assert_int_eq(flow_messages_list(&out, E, "paid", "S1", NULL), 0);
  HAS(keep(out), "\"status\":\"delivered\"");
}
END_TEST

START_TEST(test_incident_dismissed)
{
  const char *id = open_case("{\"ref\":\"S2\",\"strict\":true}");
  send("paid", "S2", "{}", 0);
  char *out = NULL;
  ck_assert_int_eq(flow_incidents_list(&out, E, NULL, NULL), 0);
  const char *l = keep(out);
  const char *p = strstr(l, "\"id\":\"");
  char iid[16];
  snprintf(iid, sizeof iid, "%.*s", (int)strcspn(p + 6, "\""), p + 6);
  ck_assert_int_eq(flow_incident_dismiss(E, iid, &BOB), 0);
  ck_assert_int_eq(flow_incident_dismiss(E, iid, &BOB), FLOW_ECONFLICT);
  ck_assert_int_eq(flow_incident_retry(NULL, E, iid, &BOB), FLOW_ECONFLICT);
  ck_assert_int_eq(flow_messages_list(&out, E, "paid", "S2", NULL), 0);
  HAS(keep(out), "\"status\":\"dismissed\"");
  HAS(show(id), "\"state\":\"waiting\"");
  ck_assert_int_eq(flow_incidents_list(&out, E, NULL, "bogus"), FLOW_EINVAL);
}
END_TEST

/* A timer whose event the case refuses: an incident, listed with the
   others, and retried once the case accepts. */
static const char *const TIMERS =
    "return { name = 'tick', version = 1, initial = 'a',\n"
    "  fields = { ok = { type = 'boolean' } },\n"
    "  states = {\n"
    "    a = { enter = function() flow.after('1h', 'poke') end,\n"
    "          on = { poke = function(case)\n"
    "                   if not case.data.ok then flow.fail('not yet') end\n"
    "                   return 'b'\n"
    "                 end,\n"
    "                 fix = function(case) case.data.ok = true end } },\n"
    "    b = { final = true } } }\n";

START_TEST(test_timer_incident_retried)
{
  ck_assert_int_eq(flow_service_load_string(NULL, E, TIMERS, strlen(TIMERS),
                                            "tick.lua"),
                   0);
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "tick", NULL, NULL), 0);
  flow_free(out);
  flow_engine_set_time(E, T0 + 61 * MIN);
  size_t fired = 0;
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  ck_assert_int_eq(flow_incidents_list(&out, E, "1", "open"), 0);
  const char *l = keep(out);
  HAS(l, "\"source\":\"timer\"");
  HAS(l, "\"code\":\"FLOW_EREFUSED\"");
  HAS(l, "tick.lua:6: flow.fail: not yet"); /* where, for the reader */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "fix", NULL, NULL), 0);
  reopen();
  ck_assert_msg(flow_incident_retry(&out, E, "1", NULL) == 0, "%s",
                flow_errmsg(E));
  HAS(keep(out), "\"state\":\"b\"");
  ck_assert_int_eq(flow_incidents_list(&out, E, "1", "open"), 0);
  ck_assert_str_eq(keep(out), "[]");
}
END_TEST

/* Hosts hear a task fall overdue, and a case's service level warn and
   breach, when the clock gets there. */
static const char *const SLA =
    "return { name = 'slow', version = 1, initial = 'a',\n"
    "  sla = { within = '2h', warn = '1h' },\n"
    "  states = { a = { on = { sla_breached = 'late' } },\n"
    "             late = { final = true } } }\n";

START_TEST(test_overdue_and_sla_notes)
{
  heard h = { 0 };
  int sub = 0;
  ck_assert_int_eq(flow_engine_subscribe(E, listen, &h, &sub), 0);
  const char *id = open_case("{\"ref\":\"O1\"}");
  send("paid", "O1", "{}", 0);
  ck_assert(heard_type(&h, "task_created"));
  ck_assert(!heard_type(&h, "task_overdue"));
  ck_assert_int_eq(flow_service_load_string(NULL, E, SLA, strlen(SLA),
                                            "slow.lua"),
                   0);
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "slow", NULL, NULL), 0);
  flow_free(out);
  size_t fired = 0;
  flow_engine_set_time(E, T0 + 90 * MIN);
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  ck_assert(heard_type(&h, "sla_warning"));
  ck_assert(!heard_type(&h, "sla_breached"));
  flow_engine_set_time(E, T0 + 3 * DAY);
  ck_assert_int_eq(flow_engine_fire_due(E, &fired), 0);
  ck_assert(heard_type(&h, "sla_breached"));
  ck_assert(heard_type(&h, "task_overdue"));
  (void)id;
}
END_TEST

/* An internal event is the engine's to send: a message may, an actor may
   not. */
static const char *const INTERNAL =
    "return { name = 'inner', version = 1, initial = 'a',\n"
    "  fields = { ref = { type = 'string' } },\n"
    "  correlate = { result_ready = 'ref' },\n"
    "  states = {\n"
    "    a = { on = { result_ready = { to = 'b', internal = true } } },\n"
    "    b = { final = true } } }\n";

START_TEST(test_internal_events)
{
  ck_assert_int_eq(flow_service_load_string(NULL, E, INTERNAL,
                                            strlen(INTERNAL), "inner.lua"),
                   0);
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "inner", "{\"ref\":\"B1\"}",
                                  NULL),
                   0);
  flow_free(out);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "result_ready", NULL,
                                    &ANN),
                   FLOW_EPERM);
  HAS(flow_errmsg(E), "inner.lua:5:");
  HAS(flow_errmsg(E), "is internal");
  HAS(show("1"), "\"state\":\"a\"");
  HAS(send("result_ready", "B1", "{}", 0), "\"status\":\"delivered\"");
  HAS(show("1"), "\"state\":\"b\"");
  static const char *const BAD =
      "return { name = 'bad', version = 1, initial = 'a',\n"
      "  states = { a = { on = { x = { to = 'a', internal = 'yes' } } } } }\n";
  ck_assert_int_eq(flow_service_check(E, BAD, strlen(BAD), "bad.lua"),
                   FLOW_ESCRIPT);
  HAS(flow_errmsg(E), "internal of");
}
END_TEST

/* ---- scripts ------------------------------------------------------------- */

START_TEST(test_script_mistakes_are_reported_at_the_line)
{
  static const struct {
    const char *src, *want;
  } cases[] = {
    { "flow.task{ title = 'x' }", "needs a name" },
    { "flow.task{ name = 'x', due = 'soon' }", "due:" },
    { "flow.task{ name = 'x', colour = 1 }", "unknown key 'colour'" },
    { "flow.task{ name = 'x', form = { a = { type = 'blob' } } }",
      "form field 'a'" },
    { "flow.task{ name = 'x', form = { a = { type = 'enum' } } }",
      "an enum needs values" },
    { "flow.task{ name = 'x', done = 'Not An Event' }", "done must be" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char src[1024];
    snprintf(src, sizeof src,
             "return { name = 'bad%zu', version = 1, initial = 'a',\n"
             "  states = { a = { on = { go = function()\n"
             "    %s\n"
             "  end } } } }\n",
             i, cases[i].src);
    char name[32];
    snprintf(name, sizeof name, "bad%zu.lua", i);
    ck_assert_int_eq(flow_service_load_string(NULL, E, src, strlen(src),
                                              name),
                     0);
    char *out = NULL;
    snprintf(name, sizeof name, "bad%zu", i);
    ck_assert_int_eq(flow_case_open(&out, E, name, NULL, NULL), 0);
    flow_free(out);
    char id[16];
    snprintf(id, sizeof id, "%zu", i + 1);
    ck_assert_int_eq(flow_case_signal(NULL, E, id, "go", NULL, NULL),
                     FLOW_ESCRIPT);
    char want[64];
    snprintf(want, sizeof want, "bad%zu.lua:3:", i);
    HAS(flow_errmsg(E), want);
    HAS(flow_errmsg(E), cases[i].want);
  }
  /* correlate names a field that is not there: refused at load. */
  static const char *const BADCORR =
      "return { name = 'c', version = 1, initial = 'a',\n"
      "  fields = { ref = { type = 'string' } },\n"
      "  correlate = { paid = 'reff' },\n"
      "  states = { a = { final = true } } }\n";
  ck_assert_int_eq(flow_service_check(E, BADCORR, strlen(BADCORR), "c.lua"),
                   FLOW_ESCRIPT);
  HAS(flow_errmsg(E), "c.lua:3:");
  HAS(flow_errmsg(E), "'reff'");
}
END_TEST

/* flow.task{ roles = ... }: only a person with one of them may claim or
   complete the task; the roles are listed with it. */
START_TEST(test_task_roles)
{
  static const char *const APPROVE =
      "return { name = 'award', version = 1, initial = 'deciding',\n"
      "  fields = { amount = { type = 'integer' } },\n"
      "  states = {\n"
      "    deciding = {\n"
      "      enter = function(case)\n"
      "        flow.task{ name = 'approve', team = 'revenues',\n"
      "          roles = { 'team_leader', 'manager' }, done = 'approved',\n"
      "          form = { ok = { type = 'boolean', required = true } } }\n"
      "      end,\n"
      "      on = { approved = { internal = true, handler = function(c, ev)\n"
      "        return ev.payload.outcome.ok and 'awarded' or 'refused'\n"
      "      end } } },\n"
      "    awarded = { final = true }, refused = { final = true } } }\n";
  ck_assert_msg(flow_service_load_string(NULL, E, APPROVE, strlen(APPROVE),
                                         "award.lua") == 0,
                "%s", flow_errmsg(E));
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "award", "{\"amount\":900}", NULL),
                   0);
  const char *p = strstr(out, "\"id\":\"");
  char cid[16];
  snprintf(cid, sizeof cid, "%.*s", (int)strcspn(p + 6, "\""), p + 6);
  flow_free(out);
  flow_task_query q = { .case_id = cid };
  const char *list = tasks(&q);
  HAS(list, "\"roles\":[\"team_leader\",\"manager\"]");
  char tid[16];
  snprintf(tid, sizeof tid, "%s", task_id(list, "approve"));
  const char *clerk_roles[] = { "assessor" };
  const flow_actor clerk = { "cal", clerk_roles, 1 };
  const char *lead_roles[] = { "assessor", "manager" };
  const flow_actor lead = { "lee", lead_roles, 2 };
  ck_assert_int_eq(flow_task_claim(E, tid, &clerk), FLOW_EPERM);
  HAS(flow_errmsg(E), "(approve) needs the role team_leader or manager, and "
                      "cal has only assessor");
  ck_assert_int_eq(flow_task_claim(E, tid, &ANN), FLOW_EPERM);
  HAS(flow_errmsg(E), "ann has no roles");
  ck_assert_int_eq(flow_task_complete(NULL, E, tid, "{\"ok\":true}", &clerk),
                   FLOW_EPERM);
  ck_assert_int_eq(flow_task_complete(NULL, E, tid, "{\"ok\":true}", &lead),
                   0);
  HAS(show(cid), "\"state\":\"awarded\"");
  /* Mistakes in roles are the script's, at the line of flow.task. */
  static const char *const BAD =
      "return { name = 'bad', version = 1, initial = 'a',\n"
      "  states = { a = { enter = function()\n"
      "    flow.task{ name = 't', roles = 'team_leader' }\n"
      "  end, on = { x = 'b' } }, b = { final = true } } }\n";
  ck_assert_int_eq(flow_service_load_string(NULL, E, BAD, strlen(BAD),
                                            "bad.lua"),
                   0);
  ck_assert_int_eq(flow_case_open(NULL, E, "bad", NULL, NULL), FLOW_ESCRIPT);
  HAS(flow_errmsg(E), "bad.lua:3:");
  HAS(flow_errmsg(E), "roles must be a list of role names");
}
END_TEST

static Suite *
work_suite(void)
{
  Suite *s = suite_create("work");
  TCase *tc = tcase_create("api");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_task_created_claimed_completed);
  tcase_add_test(tc, test_task_roles);
  tcase_add_test(tc, test_task_ends_with_its_state);
  tcase_add_test(tc, test_task_overdue_and_bad_ids);
  tcase_add_test(tc, test_task_claim_race_two_engines);
  tcase_add_test(tc, test_message_buffered_until_a_case_takes_its_key);
  tcase_add_test(tc, test_message_expires);
  tcase_add_test(tc, test_correlation_key_unique_among_open_cases);
  tcase_add_test(tc, test_message_refused_is_an_incident_retried);
  tcase_add_test(tc, test_incident_dismissed);
  tcase_add_test(tc, test_timer_incident_retried);
  tcase_add_test(tc, test_overdue_and_sla_notes);
  tcase_add_test(tc, test_internal_events);
  tcase_add_test(tc, test_script_mistakes_are_reported_at_the_line);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(work_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
