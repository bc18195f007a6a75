/*
 * Actions through the public API: a request is dispatched only after its
 * transition commits, answered at once or later (also from another
 * thread), retried with a back-off that is the same every run, timed out,
 * finally failed into the script's fail event or an incident, held until
 * a handler is registered, and dispatched again after a restart; a late,
 * duplicate or unknown answer changes nothing.
 *
 * A fixed engine clock throughout; every test that spans a restart uses a
 * database file and two engine lifetimes.
 */
#define _POSIX_C_SOURCE 200809L /* strdup, nanosleep */

#include <check.h>
#include <flow.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const SERVICE =
    "return {\n"
    "  name = 'bins', version = 1, initial = 'new',\n"
    "  fields = { sent_by = { type = 'string' }, attempts = { type = "
    "'integer' },\n"
    "             message = { type = 'string' }, error = { type = 'string' } "
    "},\n"
    "  states = {\n"
    "    new = { on = {\n"
    "      assign = function(case, ev)\n"
    "        flow.call('notify.sms', { to = '07700' }, { reply = 'sms_sent',\n"
    "          fail = 'sms_failed', retry = { max = 2, backoff = '30s' } })\n"
    "        return 'waiting'\n"
    "      end,\n"
    "      quiet = function(case, ev)\n"
    "        flow.call('notify.sms', { to = '1' }, { key = 'mine' })\n"
    "        return 'waiting'\n"
    "      end,\n"
    "      timed = function(case, ev)\n"
    "        flow.call('notify.sms', { to = '2' }, { reply = 'sms_sent',\n"
    "          timeout = '1m', retry = { max = 1, backoff = '10s' } })\n"
    "        return 'waiting'\n"
    "      end,\n"
    "      twice = function(case, ev)\n"
    "        flow.call('notify.sms', { n = 1 })\n"
    "        flow.call('address.lookup', { n = 2 })\n"
    "        return 'waiting'\n"
    "      end,\n"
    "    } },\n"
    "    waiting = { on = {\n"
    "      sms_sent = function(case, ev)\n"
    "        case.data.sent_by = ev.action.name\n"
    "        case.data.attempts = ev.action.attempts\n"
    "        case.data.message = ev.payload.message_id\n"
    "        return 'sent'\n"
    "      end,\n"
    "      sms_failed = function(case, ev)\n"
    "        case.data.error = ev.payload.error\n"
    "        case.data.attempts = ev.payload.attempts\n"
    "        return 'failed'\n"
    "      end,\n"
    "      cancel = 'cancelled',\n"
    "    } },\n"
    "    sent = { final = true }, failed = { final = true },\n"
    "    cancelled = { final = true },\n"
    "  },\n"
    "}\n";

#define MIN ((int64_t)60 * 1000)

static char dir[64], path[96];
static flow_engine *E;
static int64_t T0;

/* What the handler saw, and how it answers. */
typedef struct seen {
  int calls;
  char id[8][24];
  char key[8][64];
  char args[8][128];
  int attempt[8];
  int answer; /* 0: later; 1: complete now; 2: fail now (retryable) */
} seen;
static seen S;

static void
handler(flow_engine *e, const flow_request *req, void *payload)
{
  seen *s = payload;
  int i = s->calls++ % 8;
  snprintf(s->id[i], sizeof s->id[i], "%s", req->id);
  snprintf(s->key[i], sizeof s->key[i], "%s", req->key);
  snprintf(s->args[i], sizeof s->args[i], "%s", req->args_json);
  s->attempt[i] = req->attempt;
  if (s->answer == 1)
    ck_assert_int_eq(flow_action_complete(e, req->id,
                                          "{\"message_id\":\"m-1\"}"),
                     0);
  else if (s->answer == 2)
    ck_assert_int_eq(flow_action_fail(e, req->id, 1, "gateway busy"), 0);
}

static void
open_engine(void)
{
  char err[256];
  ck_assert_msg(flow_engine_open(&E, path, NULL, err, sizeof err) == 0, "%s",
                err);
  flow_engine_set_time(E, T0);
}

static void
setup(void)
{
  memset(&S, 0, sizeof S);
  strcpy(dir, "/tmp/flow_actions_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/db", dir);
  ck_assert_int_eq(flow_time_parse(&T0, "2026-11-30T09:00:00Z"), 0);
  open_engine();
  ck_assert_msg(flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE),
                                         "bins.lua") == 0,
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

/* Opens a case and sends it event; returns nothing, the case is "1", ... */
static void
open_and(const char *event)
{
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "bins", "{}", NULL), 0);
  char id[16];
  const char *p = strstr(out, "\"id\":\"");
  ck_assert_ptr_nonnull(p);
  snprintf(id, sizeof id, "%.*s", (int)strcspn(p + 6, "\""), p + 6);
  flow_free(out);
  ck_assert_msg(flow_case_signal(NULL, E, id, event, NULL, NULL) == 0, "%s",
                flow_errmsg(E));
}

static void
state_is(const char *id, const char *state)
{
  char *out = NULL, want[64];
  ck_assert_int_eq(flow_case_get(&out, E, id), 0);
  snprintf(want, sizeof want, "\"state\":\"%s\"", state);
  ck_assert_msg(strstr(out, want) != NULL, "case %s: %s", id, out);
  flow_free(out);
}

static void
case_has(const char *id, const char *text)
{
  char *out = NULL;
  ck_assert_int_eq(flow_case_get(&out, E, id), 0);
  ck_assert_msg(strstr(out, text) != NULL, "case %s lacks %s: %s", id, text,
                out);
  flow_free(out);
}

/* The listing of status, as text (the caller frees it). */
static char *
listed(const char *case_id, const char *status)
{
  char *out = NULL;
  int rc = flow_actions_list(&out, E, case_id, status);
  ck_assert_msg(rc == 0, "%s", flow_errmsg(E));
  char *copy = strdup(out);
  flow_free(out);
  ck_assert_ptr_nonnull(copy);
  return copy;
}

static int
count(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

static void
run_due(void)
{
  ck_assert_msg(flow_engine_fire_due(E, NULL) == 0, "%s", flow_errmsg(E));
}

/* ---- answers ------------------------------------------------------------ */

START_TEST(test_action_dispatched_after_commit_and_answered)
{
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("assign");
  /* Not before the loop runs: the transition committed first. */
  ck_assert_int_eq(S.calls, 0);
  char *l = listed("1", NULL);
  ck_assert_msg(strstr(l, "\"status\":\"pending\"") != NULL, "%s", l);
  ck_assert_msg(strstr(l, "\"key\":\"1-2-0\"") != NULL, "%s", l);
  free(l);
  run_due();
  ck_assert_int_eq(S.calls, 1);
  ck_assert_int_eq(S.attempt[0], 1);
  ck_assert_str_eq(S.args[0], "{\"to\":\"07700\"}");
  run_due(); /* in flight: not sent again */
  ck_assert_int_eq(S.calls, 1);
  state_is("1", "waiting");

  ck_assert_int_eq(flow_action_complete(E, S.id[0],
                                        "{\"message_id\":\"m-7\"}"),
                   0);
  state_is("1", "sent");
  case_has("1", "\"sent_by\":\"notify.sms\"");
  case_has("1", "\"message\":\"m-7\"");
  case_has("1", "\"attempts\":1");
  l = listed("1", "done");
  ck_assert_msg(strstr(l, "\"result\":{\"message_id\":\"m-7\"}") != NULL,
                "%s", l);
  free(l);

  /* A duplicate, late or unknown answer changes nothing. */
  ck_assert_int_eq(flow_action_complete(E, S.id[0], "{}"), FLOW_ECONFLICT);
  ck_assert(strstr(flow_errmsg(E), "finished") != NULL);
  ck_assert_int_eq(flow_action_fail(E, S.id[0], 0, "late"), FLOW_ECONFLICT);
  ck_assert_int_eq(flow_action_complete(E, "999", "{}"), FLOW_ENOTFOUND);
  ck_assert_int_eq(flow_action_complete(E, "x", "{}"), FLOW_EINVAL);
  state_is("1", "sent");
}
END_TEST

START_TEST(test_action_answered_inside_the_handler)
{
  S.answer = 1;
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("assign");
  run_due();
  ck_assert_int_eq(S.calls, 1);
  state_is("1", "sent");
  case_has("1", "\"message\":\"m-1\"");
}
END_TEST

START_TEST(test_action_bad_result_changes_nothing)
{
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("assign");
  run_due();
  ck_assert_int_eq(flow_action_complete(E, S.id[0], "[1,2]"), FLOW_EINVAL);
  ck_assert_int_eq(flow_action_complete(E, S.id[0], "{\"a\":"), FLOW_EINVAL);
  ck_assert(strstr(flow_errmsg(E), "line") != NULL);
  state_is("1", "waiting");
  /* Still in flight: a good answer is taken. */
  ck_assert_int_eq(flow_action_complete(E, S.id[0], NULL), 0);
  state_is("1", "sent");
}
END_TEST

/* ---- failures ----------------------------------------------------------- */

START_TEST(test_action_retried_then_failed)
{
  S.answer = 2; /* every attempt fails, retryably */
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("assign");
  run_due();
  ck_assert_int_eq(S.calls, 1);
  /* The first retry waits 30 s plus up to half again of jitter. */
  char *l = listed("1", "pending");
  ck_assert_msg(strstr(l, "\"error\":\"gateway busy\"") != NULL, "%s", l);
  const char *n = strstr(l, "\"next_at\":\"");
  ck_assert_ptr_nonnull(n);
  int64_t next;
  char iso[32];
  snprintf(iso, sizeof iso, "%.*s", (int)strcspn(n + 11, "\""), n + 11);
  ck_assert_int_eq(flow_time_parse(&next, iso), 0);
  ck_assert_int_ge(next - T0, 30 * 1000);
  ck_assert_int_le(next - T0, 45 * 1000);
  free(l);
  flow_engine_set_time(E, next - 1000);
  run_due();
  ck_assert_int_eq(S.calls, 1); /* not before its back-off */
  flow_engine_set_time(E, next);
  run_due();
  ck_assert_int_eq(S.calls, 2);
  ck_assert_int_eq(S.attempt[1], 2);
  ck_assert_str_eq(S.key[1], S.key[0]); /* the same key every attempt */
  /* The second retry waits 60-90 s; then the last attempt fails too. */
  flow_engine_set_time(E, next + 90 * 1000);
  run_due();
  ck_assert_int_eq(S.calls, 3);
  state_is("1", "failed");
  case_has("1", "\"error\":\"gateway busy\"");
  case_has("1", "\"attempts\":3");
  l = listed(NULL, "failed");
  ck_assert_int_eq(count(l, "\"id\""), 1);
  free(l);
  flow_engine_set_time(E, next + 3600 * 1000);
  run_due();
  ck_assert_int_eq(S.calls, 3);
}
END_TEST

/* The back-off is the same for a request every time: two databases, the
   same requests, the same times. */
START_TEST(test_action_backoff_is_deterministic)
{
  S.answer = 2;
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("assign");
  run_due();
  char *first = listed("1", "pending");
  teardown();
  setup(); /* a new database, and S cleared */
  S.answer = 2;
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("assign");
  run_due();
  ck_assert_int_eq(S.calls, 1);
  char *second = listed("1", "pending");
  ck_assert_str_eq(first, second);
  free(first);
  free(second);
}
END_TEST

START_TEST(test_action_final_failure_without_fail_event_is_an_incident)
{
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("quiet");
  run_due();
  ck_assert_str_eq(S.key[0], "mine");
  ck_assert_int_eq(flow_action_fail(E, S.id[0], 1, "no such number"), 0);
  state_is("1", "waiting");
  char *l = listed("1", "incident");
  ck_assert_msg(strstr(l, "no such number (the script named no fail event)") !=
                    NULL,
                "%s", l);
  free(l);
}
END_TEST

START_TEST(test_action_refused_reply_is_an_incident)
{
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("assign");
  run_due();
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "cancel", NULL, NULL), 0);
  /* The answer is taken, but the closed case refuses the reply. */
  ck_assert_int_eq(flow_action_complete(E, S.id[0], "{}"), 0);
  state_is("1", "cancelled");
  char *l = listed("1", "incident");
  ck_assert_msg(strstr(l, "the reply event 'sms_sent' was refused") != NULL,
                "%s", l);
  ck_assert_msg(strstr(l, "FLOW_ECLOSED") != NULL, "%s", l);
  free(l);
}
END_TEST

START_TEST(test_action_timeout_counts_as_a_failed_attempt)
{
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("timed");
  run_due();
  ck_assert_int_eq(S.calls, 1);
  flow_engine_set_time(E, T0 + MIN - 1);
  run_due();
  ck_assert_int_eq(S.calls, 1);
  flow_engine_set_time(E, T0 + MIN);
  run_due(); /* timed out: a retry after 10-15 s */
  ck_assert_int_eq(S.calls, 1);
  char *l = listed("1", "pending");
  ck_assert_msg(strstr(l, "no answer within 60 s") != NULL, "%s", l);
  free(l);
  flow_engine_set_time(E, T0 + MIN + 15 * 1000);
  run_due();
  ck_assert_int_eq(S.calls, 2);
  ck_assert_int_eq(flow_action_complete(E, S.id[1], "{}"), 0);
  state_is("1", "sent");
  case_has("1", "\"attempts\":2");
}
END_TEST

/* ---- registration, restarts -------------------------------------------- */

START_TEST(test_action_waits_for_its_handler)
{
  open_and("twice");
  run_due();
  char *l = listed(NULL, "waiting");
  ck_assert_int_eq(count(l, "\"status\":\"waiting\""), 2);
  free(l);
  ck_assert_int_eq(flow_action_register(E, "address.lookup", handler, &S), 0);
  ck_assert_int_eq(flow_action_register(E, "address.lookup", handler, &S),
                   FLOW_EEXIST);
  ck_assert_int_eq(flow_action_register(E, "Bad Name", handler, &S),
                   FLOW_EINVAL);
  ck_assert_int_eq(flow_action_register(E, "x", NULL, &S), FLOW_EMISUSE);
  run_due();
  ck_assert_int_eq(S.calls, 1);
  ck_assert_str_eq(S.args[0], "{\"n\":2}");
  l = listed(NULL, "waiting");
  ck_assert_int_eq(count(l, "\"action\":\"notify.sms\""), 1);
  free(l);
}
END_TEST

/* Committed, not dispatched, then the process ends: the next engine on the
   file dispatches it. */
START_TEST(test_action_dispatched_after_a_restart)
{
  open_and("assign");
  flow_engine_close(E);
  open_engine();
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  run_due();
  ck_assert_int_eq(S.calls, 1);
  ck_assert_str_eq(S.key[0], "1-2-0");
}
END_TEST

/* Dispatched, then the process died before the host answered: the next
   engine sends it again when the attempt's hold (an hour) runs out, with
   the same key; the old attempt's answer is still taken once. */
START_TEST(test_action_dispatched_again_after_a_crash)
{
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("assign");
  run_due();
  ck_assert_int_eq(S.calls, 1);
  flow_engine_close(E);
  open_engine();
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  flow_engine_set_time(E, T0 + 59 * MIN);
  run_due();
  ck_assert_int_eq(S.calls, 1);
  flow_engine_set_time(E, T0 + 60 * MIN);
  run_due();
  ck_assert_int_eq(S.calls, 2);
  ck_assert_str_eq(S.key[1], S.key[0]);
  ck_assert_str_eq(S.id[1], S.id[0]);
  ck_assert_int_eq(S.attempt[1], 2);
  ck_assert_int_eq(flow_action_complete(E, S.id[0], "{}"), 0);
  ck_assert_int_eq(flow_action_complete(E, S.id[1], "{}"), FLOW_ECONFLICT);
  state_is("1", "sent");
}
END_TEST

/* ---- from another thread ------------------------------------------------- */

typedef struct later {
  flow_engine *e;
  char id[24];
  int rc;
} later;

static void
complete_on_loop(flow_engine *e, void *payload)
{
  later *l = payload;
  l->rc = flow_action_complete(e, l->id, "{\"message_id\":\"t-1\"}");
  flow_engine_stop(e);
}

static void *
worker(void *arg)
{
  later *l = arg;
  struct timespec ms = { 0, 1000000 };
  nanosleep(&ms, NULL);
  ck_assert_int_eq(flow_engine_post(l->e, complete_on_loop, l), 0);
  return NULL;
}

START_TEST(test_action_answered_from_another_thread)
{
  ck_assert_int_eq(flow_action_register(E, "notify.sms", handler, &S), 0);
  open_and("assign");
  run_due();
  later l = { E, "", -1 };
  snprintf(l.id, sizeof l.id, "%s", S.id[0]);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, worker, &l), 0);
  /* The loop waits for the post (posts keep a ONCE run waiting). */
  while (l.rc == -1)
    ck_assert_int_ge(flow_engine_run(E, FLOW_RUN_ONCE), 0);
  pthread_join(t, NULL);
  ck_assert_int_eq(l.rc, 0);
  state_is("1", "sent");
  case_has("1", "\"message\":\"t-1\"");
}
END_TEST

/* ---- what a script may write ------------------------------------------- */

static void
refused_at_call(const char *opts, const char *want)
{
  char src[2048];
  snprintf(src, sizeof src,
           "return { name = 'opts', version = 1, initial = 'a',\n"
           "  states = { a = { on = { go = function(case, ev)\n"
           "    flow.call('notify.sms', {}, %s)\n"
           "  end } } } }\n",
           opts);
  ck_assert_int_eq(
      flow_service_load_string(NULL, E, src, strlen(src), "opts.lua"), 0);
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "opts", "{}", NULL), 0);
  flow_free(out);
  int rc = flow_case_signal(NULL, E, "1", "go", NULL, NULL);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_msg(strstr(flow_errmsg(E), "opts.lua:3:") != NULL, "%s",
                flow_errmsg(E));
  ck_assert_msg(strstr(flow_errmsg(E), want) != NULL, "%s", flow_errmsg(E));
  char *l = listed(NULL, NULL);
  ck_assert_str_eq(l, "[]"); /* nothing was asked */
  free(l);
}

START_TEST(test_action_options_refused_at_the_line)
{
  const char *cases[][2] = {
    { "{ rpely = 'x' }", "unknown option 'rpely'" },
    { "{ reply = 'Not An Event' }", "reply must be the name of an event" },
    { "{ retry = { max = 99 } }", "retry.max must be a whole number" },
    { "{ retry = 3 }", "retry must be a table" },
    { "{ timeout = '2 working days' }", "timeout counts real time" },
    { "{ timeout = 'soon' }", "timeout:" },
    { "{ key = '' }", "key must be text of 1 to 200 bytes" },
    { "'fast'", "the options must be a table" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    teardown();
    setup();
    refused_at_call(cases[i][0], cases[i][1]);
  }
}
END_TEST

static Suite *
actions_suite(void)
{
  Suite *s = suite_create("actions");
  TCase *tc = tcase_create("actions");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_action_dispatched_after_commit_and_answered);
  tcase_add_test(tc, test_action_answered_inside_the_handler);
  tcase_add_test(tc, test_action_bad_result_changes_nothing);
  tcase_add_test(tc, test_action_retried_then_failed);
  tcase_add_test(tc, test_action_backoff_is_deterministic);
  tcase_add_test(tc,
                 test_action_final_failure_without_fail_event_is_an_incident);
  tcase_add_test(tc, test_action_refused_reply_is_an_incident);
  tcase_add_test(tc, test_action_timeout_counts_as_a_failed_attempt);
  tcase_add_test(tc, test_action_waits_for_its_handler);
  tcase_add_test(tc, test_action_dispatched_after_a_restart);
  tcase_add_test(tc, test_action_dispatched_again_after_a_crash);
  tcase_add_test(tc, test_action_answered_from_another_thread);
  tcase_add_test(tc, test_action_options_refused_at_the_line);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(actions_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
