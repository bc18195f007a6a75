/*
 * Notifications for hosts: any number of subscribers beside the listener,
 * told what happened to cases only once it has committed (opened,
 * transition, closed, action requested, with their cause), never for a
 * call that was refused; the listener hears only what the engine did on
 * its own (timers, actions); a subscriber may call the engine, unsubscribe
 * itself, and cannot break it.  Fixed engine clock.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const SERVICE =
    "return { name = 'door', version = 1, initial = 'shut',\n"
    "  fields = { who = { type = 'string', max = 5 } },\n"
    "  states = {\n"
    "    shut = { after = { ['1h'] = 'ajar' },\n"
    "             on = { push = function(case, ev)\n"
    "               flow.call('door.bell', { who = case.data.who })\n"
    "               return 'wide'\n"
    "             end } },\n"
    "    ajar = { on = { push = 'wide' } },\n"
    "    wide = { final = true },\n"
    "  } }\n";

static flow_engine *E;
static int64_t T0;

/* What one subscriber heard, as one line per note. */
typedef struct heard {
  char text[8192];
  int n;
  int checked_commit; /* the case it was told of could be read */
  int unsubscribe_id; /* unsubscribe itself on the first note */
  int call_back;      /* signal the opened case from the callback */
} heard;

static void
listen(flow_engine *e, const char *json, void *payload)
{
  heard *h = payload;
  h->n++;
  size_t len = strlen(h->text);
  snprintf(h->text + len, sizeof h->text - len, "%s\n", json);
  /* Told after the commit: the case is there to read. */
  const char *p = strstr(json, "\"case\":\"");
  if (p && strstr(json, "\"type\":\"opened\"")) {
    char id[16], *out = NULL;
    snprintf(id, sizeof id, "%.*s", (int)strcspn(p + 8, "\""), p + 8);
    if (flow_case_get(&out, e, id) == 0)
      h->checked_commit++;
    flow_free(out);
    if (h->call_back)
      flow_case_signal(NULL, e, id, "push", NULL, NULL);
  }
  if (h->unsubscribe_id) {
    ck_assert_int_eq(flow_engine_unsubscribe(e, h->unsubscribe_id), 0);
    h->unsubscribe_id = 0;
  }
}

static void
setup(void)
{
  char err[256];
  ck_assert_int_eq(flow_engine_open(&E, ":memory:", NULL, err, sizeof err),
                   0);
  ck_assert_int_eq(flow_time_parse(&T0, "2026-11-30T09:00:00Z"), 0);
  flow_engine_set_time(E, T0);
  ck_assert_int_eq(
      flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE), "door.lua"),
      0);
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
}

static int
count(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

START_TEST(test_notify_every_subscriber_after_commit)
{
  heard a, b, l;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&l, 0, sizeof l);
  int ia = 0, ib = 0;
  ck_assert_int_eq(flow_engine_subscribe(E, listen, &a, &ia), 0);
  ck_assert_int_eq(flow_engine_subscribe(E, listen, &b, &ib), 0);
  flow_engine_set_listener(E, listen, &l);
  ck_assert_int_ne(ia, ib);
  ck_assert_int_eq(flow_case_open(NULL, E, "door", "{\"who\":\"ann\"}", NULL),
                   0);
  ck_assert_int_eq(a.n, 1);
  ck_assert_int_eq(b.n, 1);
  ck_assert_int_eq(l.n, 0); /* a host's own call: not the listener's */
  ck_assert_int_eq(a.checked_commit, 1);
  ck_assert_msg(strstr(a.text, "\"type\":\"opened\"") != NULL, "%s", a.text);
  ck_assert_msg(strstr(a.text, "\"cause\":\"call\"") != NULL, "%s", a.text);
  ck_assert_str_eq(a.text, b.text);

  /* A refused call tells nothing. */
  ck_assert_int_eq(
      flow_case_open(NULL, E, "door", "{\"who\":\"much too long\"}", NULL),
      FLOW_EDATA);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "knock", NULL, NULL),
                   FLOW_EEVENT);
  ck_assert_int_eq(a.n, 1);

  /* A transition that closes the case and asks for an action. */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "push", NULL, NULL), 0);
  ck_assert_msg(strstr(a.text, "\"type\":\"transition\"") != NULL, "%s",
                a.text);
  ck_assert_msg(strstr(a.text, "\"from\":\"shut\"") != NULL, "%s", a.text);
  ck_assert_msg(strstr(a.text, "\"type\":\"closed\"") != NULL, "%s", a.text);
  ck_assert_msg(strstr(a.text, "\"type\":\"action_requested\"") != NULL,
                "%s", a.text);
  ck_assert_msg(strstr(a.text, "\"key\":\"1-2-0\"") != NULL, "%s", a.text);
  ck_assert_int_eq(a.n, 4);

  ck_assert_int_eq(flow_engine_unsubscribe(E, ia), 0);
  ck_assert_int_eq(flow_engine_unsubscribe(E, ia), FLOW_ENOTFOUND);
  ck_assert_int_eq(flow_case_open(NULL, E, "door", "{}", NULL), 0);
  ck_assert_int_eq(a.n, 4);
  ck_assert_int_eq(b.n, 5);
  ck_assert_int_eq(l.n, 0);
  /* What the engine does on its own: everyone hears it. */
  flow_engine_set_time(E, T0 + 3600 * 1000);
  ck_assert_int_eq(flow_engine_fire_due(E, NULL), 0);
  ck_assert_int_eq(count(l.text, "\"cause\":\"timer\""), 1);
  ck_assert_int_eq(count(b.text, "\"cause\":\"timer\""), 1);
}
END_TEST

/* Asynchronous calls: only the calls applied are told, after the group
   commits, with the timer's own transitions marked as such. */
START_TEST(test_notify_group_and_timers)
{
  heard a;
  memset(&a, 0, sizeof a);
  ck_assert_int_eq(flow_engine_subscribe(E, listen, &a, NULL), 0);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(flow_case_open_async(E, "door",
                                          i == 1 ? "{\"who\":\"toolong\"}"
                                                 : "{}",
                                          NULL, NULL, NULL),
                     0);
  ck_assert_int_eq(a.n, 0); /* queued, not committed */
  ck_assert_int_ge(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(count(a.text, "\"type\":\"opened\""), 2);
  ck_assert_int_eq(a.checked_commit, 2);
  flow_engine_set_time(E, T0 + 3600 * 1000);
  ck_assert_int_eq(flow_engine_fire_due(E, NULL), 0);
  ck_assert_int_eq(count(a.text, "\"type\":\"timer\""), 2);
  ck_assert_int_eq(count(a.text, "\"cause\":\"timer\""), 2);
  ck_assert_int_eq(count(a.text, "\"to\":\"ajar\""), 2);
}
END_TEST

/* A subscriber may call the engine (its call is told in turn) and
   unsubscribe itself; the others still hear everything. */
START_TEST(test_notify_subscriber_calls_back)
{
  heard a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  a.call_back = 1;
  int ib = 0;
  ck_assert_int_eq(flow_engine_subscribe(E, listen, &a, NULL), 0);
  ck_assert_int_eq(flow_engine_subscribe(E, listen, &b, &ib), 0);
  b.unsubscribe_id = ib;
  ck_assert_int_eq(flow_case_open(NULL, E, "door", "{}", NULL), 0);
  /* a signalled the case from its callback: opened, then the transition,
     the close and the request. */
  ck_assert_int_eq(count(a.text, "\"type\":\"opened\""), 1);
  ck_assert_int_eq(count(a.text, "\"type\":\"transition\""), 1);
  ck_assert_int_eq(count(a.text, "\"type\":\"closed\""), 1);
  /* b heard the opening, then left. */
  ck_assert_int_eq(b.n, 1);
  char *out = NULL;
  ck_assert_int_eq(flow_case_get(&out, E, "1"), 0);
  ck_assert(strstr(out, "\"state\":\"wide\"") != NULL);
  flow_free(out);
}
END_TEST

START_TEST(test_notify_limits)
{
  heard a;
  memset(&a, 0, sizeof a);
  int id = 0;
  for (int i = 0; i < 64; i++)
    ck_assert_int_eq(flow_engine_subscribe(E, listen, &a, &id), 0);
  ck_assert_int_eq(flow_engine_subscribe(E, listen, &a, &id), FLOW_ELIMIT);
  ck_assert_int_eq(flow_engine_subscribe(E, NULL, &a, &id), FLOW_EMISUSE);
  ck_assert_int_eq(flow_engine_unsubscribe(E, 0), FLOW_ENOTFOUND);
  ck_assert_int_eq(flow_case_open(NULL, E, "door", "{}", NULL), 0);
  ck_assert_int_eq(a.n, 64);
}
END_TEST

static void
bell_fails(flow_engine *e, const flow_request *req, void *payload)
{
  (void)payload;
  ck_assert_int_eq(flow_action_fail(e, req->id, 0, "the bell is broken"), 0);
}

/* A request that fails for good with no fail event is told once as
   action_failed and once as the incident (with the incident's id), not
   twice as an incident in two shapes. */
START_TEST(test_notify_action_failure_once)
{
  heard h;
  memset(&h, 0, sizeof h);
  ck_assert_int_eq(flow_engine_subscribe(E, listen, &h, NULL), 0);
  ck_assert_int_eq(flow_action_register(E, "door.bell", bell_fails, NULL), 0);
  char *c = NULL;
  ck_assert_int_eq(flow_case_open(&c, E, "door", "{\"who\":\"sam\"}", NULL),
                   0);
  flow_free(c);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "push", NULL, NULL), 0);
  ck_assert_int_eq(flow_engine_fire_due(E, NULL), 0);
  ck_assert_msg(count(h.text, "\"type\":\"action_failed\"") == 1, "%s",
                h.text);
  ck_assert_msg(count(h.text, "\"type\":\"incident\"") == 1, "%s", h.text);
  ck_assert_msg(strstr(h.text, "\"incident\":\"1\"") != NULL, "%s", h.text);
}
END_TEST

static Suite *
notify_suite(void)
{
  Suite *s = suite_create("notify");
  TCase *tc = tcase_create("notify");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_notify_every_subscriber_after_commit);
  tcase_add_test(tc, test_notify_group_and_timers);
  tcase_add_test(tc, test_notify_subscriber_calls_back);
  tcase_add_test(tc, test_notify_limits);
  tcase_add_test(tc, test_notify_action_failure_once);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(notify_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
