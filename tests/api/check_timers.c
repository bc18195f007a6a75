/*
 * Timers, service levels and calendars through the public API, on the
 * virtual clock only: no test sleeps.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_util.h"

static const char *const SERVICE =
    "return {\n"
    "  name = 'visit', version = 1,\n"
    "  fields = { note = { type = 'string' }, reminded = { type = 'integer' "
    "} },\n"
    "  initial = 'waiting',\n"
    "  sla = { within = '5 working days', warn = '3 working days' },\n"
    "  states = {\n"
    "    waiting = {\n"
    "      after = {\n"
    "        ['2 working days'] = 'escalated',\n"
    "        ['1h'] = { event = 'remind', payload = { n = 1 } },\n"
    "      },\n"
    "      on = {\n"
    "        remind = function(case, ev) case.data.reminded = ev.payload.n end,\n"
    "        book = 'booked',\n"
    "        chase = function(case, ev)\n"
    "          flow.after('3 working days', 'remind', { n = 7 })\n"
    "          flow.at('2026-12-24T12:00:00Z', 'remind', { n = 9 }, { keep = "
    "true })\n"
    "        end,\n"
    "      },\n"
    "    },\n"
    "    booked = {\n"
    "      after = { ['30m'] = { event = 'explode' } },\n"
    "      on = {\n"
    "        explode = function(case, ev) error('boom') end,\n"
    "        done = 'closed',\n"
    "        sla_breached = function(case, ev) case.data.note = 'late' end,\n"
    "      },\n"
    "    },\n"
    "    escalated = { on = { done = 'closed' } },\n"
    "    closed = { final = true },\n"
    "  },\n"
    "}\n";

static flow_engine *E;
static int64_t T0; /* Friday 27 November 2026, 09:00 London (= UTC) */

static void
setup(void)
{
  char err[256];
  ck_assert_int_eq(flow_engine_open(&E, ":memory:", NULL, err, sizeof err),
                   0);
  ck_assert_msg(flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE),
                                         "visit.lua") == 0,
                "%s", flow_errmsg(E));
  T0 = at("2026-11-27T09:00:00Z");
  flow_engine_set_time(E, T0);
}

static void
teardown(void)
{
  flow_engine_close(E);
}

static char *
get(const char *id)
{
  char *out;
  ck_assert_int_eq(flow_case_get(&out, E, id), 0);
  return out;
}

static void
assert_state(const char *id, const char *state)
{
  char *c = get(id);
  char want[64];
  snprintf(want, sizeof want, "\"state\":\"%s\"", state);
  ck_assert_msg(strstr(c, want) != NULL, "want %s in %s", want, c);
  flow_free(c);
}

static size_t
fire_at(const char *iso)
{
  size_t n = 0;
  flow_engine_set_time(E, at(iso));
  ck_assert_msg(flow_engine_fire_due(E, &n) == 0, "%s", flow_errmsg(E));
  return n;
}

START_TEST(test_timers_created_on_entry)
{
  char *c;
  ck_assert_int_eq(flow_case_open(&c, E, "visit", NULL, NULL), 0);
  /* 5 working days from Friday 09:00 is the next Friday 09:00. */
  ck_assert_msg(strstr(c, "\"due_at\":\"2026-12-04T09:00:00Z\"") != NULL,
                "%s", c);
  flow_free(c);
  ck_assert_int_eq(flow_case_timers(&c, E, "1"), 0);
  const char *want[] = {
    "\"due_at\":\"2026-11-27T10:00:00Z\",\"event\":\"remind\"",
    "\"due_at\":\"2026-12-01T09:00:00Z\",\"event\":\"after\"",
    "\"due_at\":\"2026-12-02T09:00:00Z\",\"event\":\"sla_warning\"",
    "\"due_at\":\"2026-12-04T09:00:00Z\",\"event\":\"sla_breached\"",
  };
  const char *prev = c;
  for (size_t i = 0; i < 4; i++) {
    const char *p = strstr(c, want[i]);
    ck_assert_msg(p != NULL && p >= prev, "missing or out of order %s in %s",
                  want[i], c);
    prev = p;
  }
  ck_assert(strstr(c, "\"state\":\"waiting\"") != NULL);
  ck_assert(strstr(c, "\"kind\":\"sla_breached\",\"payload\":{\"within\":"
                      "\"5 working days\"},\"state\":null") != NULL);
  flow_free(c);
}
END_TEST

START_TEST(test_timers_fire_in_order_exactly_once)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  ck_assert_uint_eq(fire_at("2026-11-27T09:59:59Z"), 0);
  ck_assert_uint_eq(fire_at("2026-11-27T10:00:00Z"), 1);
  char *c = get("1");
  ck_assert_msg(strstr(c, "\"reminded\":1") != NULL, "%s", c);
  ck_assert(strstr(c, "\"state\":\"waiting\"") != NULL);
  flow_free(c);
  ck_assert_uint_eq(fire_at("2026-11-27T10:00:00Z"), 0);
  /* Monday is not 2 working days yet; Tuesday 09:00 is. */
  ck_assert_uint_eq(fire_at("2026-11-30T17:00:00Z"), 0);
  ck_assert_uint_eq(fire_at("2026-12-01T09:00:00Z"), 1);
  assert_state("1", "escalated");
  ck_assert_int_eq(flow_case_history(&c, E, "1"), 0);
  ck_assert_msg(strstr(c, "\"actor\":{\"id\":\"engine\",\"roles\":"
                          "[\"system\"]},\"at\":\"2026-12-01T09:00:00Z\","
                          "\"event\":\"after\",\"from\":\"waiting\","
                          "\"payload\":{\"after\":\"2 working days\"}") !=
                    NULL,
                "%s", c);
  flow_free(c);
}
END_TEST

START_TEST(test_timers_cancelled_when_leaving)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "book", NULL, NULL), 0);
  char *c;
  ck_assert_int_eq(flow_case_timers(&c, E, "1"), 0);
  ck_assert_msg(strstr(c, "\"remind\"") == NULL &&
                    strstr(c, "\"after\"") == NULL,
                "%s", c);
  ck_assert(strstr(c, "\"explode\"") && strstr(c, "\"sla_breached\""));
  flow_free(c);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "done", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_timers(&c, E, "1"), 0);
  ck_assert_str_eq(c, "[]");
  flow_free(c);
  ck_assert_uint_eq(fire_at("2027-01-01T00:00:00Z"), 0);
}
END_TEST

START_TEST(test_timers_refused_event_becomes_incident)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "book", NULL, NULL), 0);
  char *before = get("1");
  ck_assert_uint_eq(fire_at("2026-11-27T09:30:00Z"), 1);
  char *after = get("1");
  ck_assert_str_eq(before, after);
  flow_free(before);
  flow_free(after);
  char *c;
  ck_assert_int_eq(flow_case_timers(&c, E, "1"), 0);
  ck_assert_msg(strstr(c, "\"error\":\"visit.lua:") && strstr(c, "boom") &&
                    strstr(c, "\"status\":\"incident\""),
                "%s", c);
  flow_free(c);
  /* The incident does not fire again; later timers still do. */
  ck_assert_uint_eq(fire_at("2026-12-04T09:00:00Z"), 2);
  c = get("1");
  ck_assert_msg(strstr(c, "\"note\":\"late\"") != NULL, "%s", c);
  flow_free(c);
}
END_TEST

/* A backlog fires in one transaction per batch; a refusal in the middle
   of one undoes only its own timer (the batch runs again, carefully),
   and the timers around it fire once, in due order. */
START_TEST(test_timers_refusal_inside_a_batch)
{
  /* Cases 1 and 3 wait (their 1h reminder fires); case 2 is booked, and
     its 30m explode timer is refused. */
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "2", "book", NULL, NULL), 0);
  ck_assert_uint_eq(fire_at("2026-11-27T10:30:00Z"), 3);
  char *c = get("1");
  ck_assert_msg(strstr(c, "\"reminded\":1") && strstr(c, "\"seq\":2"), "%s",
                c);
  flow_free(c);
  c = get("3");
  ck_assert_msg(strstr(c, "\"reminded\":1") && strstr(c, "\"seq\":2"), "%s",
                c);
  flow_free(c);
  c = get("2");
  ck_assert_msg(strstr(c, "\"seq\":2") && strstr(c, "\"state\":\"booked\""),
                "%s", c);
  flow_free(c);
  ck_assert_int_eq(flow_case_timers(&c, E, "2"), 0);
  ck_assert_msg(strstr(c, "\"status\":\"incident\"") && strstr(c, "boom"),
                "%s", c);
  flow_free(c);
  char *inc;
  ck_assert_int_eq(flow_incidents_list(&inc, E, NULL, NULL), 0);
  ck_assert_msg(strstr(inc, "\"case\":\"2\"") && !strstr(inc, "\"case\":\"1\""),
                "%s", inc);
  flow_free(inc);
  /* Nothing fires twice. */
  ck_assert_uint_eq(fire_at("2026-11-27T11:00:00Z"), 0);
}
END_TEST

START_TEST(test_timers_sla_without_handler_is_recorded)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "book", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "explode", NULL, NULL),
                   FLOW_ESCRIPT);
  /* booked has no sla_warning handler: it is recorded, nothing moves. */
  ck_assert_uint_eq(fire_at("2026-12-02T09:00:00Z"), 2);
  assert_state("1", "booked");
  char *h;
  ck_assert_int_eq(flow_case_history(&h, E, "1"), 0);
  ck_assert_msg(strstr(h, "\"event\":\"sla_warning\",\"from\":\"booked\"") !=
                    NULL,
                "%s", h);
  flow_free(h);
}
END_TEST

START_TEST(test_timers_overdue_listing)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  flow_engine_set_time(E, at("2026-11-30T09:00:00Z"));
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  flow_engine_set_time(E, at("2026-12-04T12:00:00Z"));
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.overdue = 1;
  char *out;
  ck_assert_int_eq(flow_case_list(&out, E, &q), 0);
  ck_assert(strstr(out, "\"id\":\"1\"") && !strstr(out, "\"id\":\"2\""));
  flow_free(out);
}
END_TEST

START_TEST(test_timers_survive_restart)
{
  char path[] = "/tmp/flow_timers_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  unlink(path);
  flow_engine *e;
  char err[256];
  ck_assert_int_eq(flow_engine_open(&e, path, NULL, err, sizeof err), 0);
  ck_assert_int_eq(
      flow_service_load_string(NULL, e, SERVICE, strlen(SERVICE), "v.lua"),
      0);
  flow_engine_set_time(e, T0);
  ck_assert_int_eq(flow_case_open(NULL, e, "visit", NULL, NULL), 0);
  flow_engine_close(e);
  /* The next process, a week later, catches up in due order. */
  ck_assert_int_eq(flow_engine_open(&e, path, NULL, err, sizeof err), 0);
  flow_engine_set_time(e, at("2026-12-07T09:00:00Z"));
  size_t n = 0;
  ck_assert_int_eq(flow_engine_fire_due(e, &n), 0);
  /* remind, after (-> escalated, which cancels nothing kept), warning,
     breach. */
  ck_assert_uint_eq(n, 4);
  char *c;
  ck_assert_int_eq(flow_case_get(&c, e, "1"), 0);
  ck_assert(strstr(c, "\"state\":\"escalated\"") != NULL);
  ck_assert(strstr(c, "\"seq\":5") != NULL);
  flow_free(c);
  ck_assert_int_eq(flow_engine_fire_due(e, &n), 0);
  ck_assert_uint_eq(n, 0);
  flow_engine_close(e);
  char aux[512];
  unlink(path);
  snprintf(aux, sizeof aux, "%s-wal", path);
  unlink(aux);
  snprintf(aux, sizeof aux, "%s-shm", path);
  unlink(aux);
}
END_TEST

START_TEST(test_timers_custom_calendar)
{
  flow_calendar_options o = FLOW_CALENDAR_OPTIONS_INIT;
  const char *hol[] = { "2026-11-30" };
  o.holidays = hol;
  o.nholidays = 1;
  o.opens = "08:00";
  o.closes = "18:00";
  ck_assert_int_eq(flow_engine_set_calendar(E, &o), 0);
  char *c;
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_timers(&c, E, "1"), 0);
  /* Friday + 2 working days skipping Monday's holiday = Wednesday. */
  ck_assert_msg(strstr(c, "\"due_at\":\"2026-12-02T09:00:00Z\",\"event\":"
                          "\"after\"") != NULL,
                "%s", c);
  flow_free(c);
  flow_calendar_options bad = FLOW_CALENDAR_OPTIONS_INIT;
  bad.zone = "Mars/Olympus";
  ck_assert_int_eq(flow_engine_set_calendar(E, &bad), FLOW_EINVAL);
  ck_assert(strstr(flow_errmsg(E), "Mars/Olympus") != NULL);
  bad.zone = NULL;
  bad.opens = "25:00";
  ck_assert_int_eq(flow_engine_set_calendar(E, &bad), FLOW_EINVAL);
  bad.opens = "18:00";
  bad.closes = "09:00";
  ck_assert_int_eq(flow_engine_set_calendar(E, &bad), FLOW_EINVAL);
  bad.opens = NULL;
  bad.closes = NULL;
  bad.weekdays = 0x80;
  ck_assert_int_eq(flow_engine_set_calendar(E, &bad), FLOW_EINVAL);
  bad.weekdays = 0;
  const char *badday[] = { "2026-02-30" };
  bad.holidays = badday;
  bad.nholidays = 1;
  ck_assert_int_eq(flow_engine_set_calendar(E, &bad), FLOW_EINVAL);
  /* A mix: every field good but the last. */
  flow_calendar_options mix = FLOW_CALENDAR_OPTIONS_INIT;
  mix.zone = "UTC";
  mix.opens = "07:00";
  mix.closes = "19:00";
  mix.no_bank_holidays = 1;
  mix.holidays = badday;
  mix.nholidays = 1;
  ck_assert_int_eq(flow_engine_set_calendar(E, &mix), FLOW_EINVAL);
  /* The refusals left the calendar as it was: the same deadlines for a
     case opened at the same moment (Monday's holiday still counts). */
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_timers(&c, E, "2"), 0);
  ck_assert_msg(strstr(c, "\"due_at\":\"2026-12-02T09:00:00Z\",\"event\":"
                          "\"after\"") != NULL,
                "a refused calendar changed the deadlines: %s", c);
  flow_free(c);
  flow_calendar_options paris = FLOW_CALENDAR_OPTIONS_INIT;
  paris.zone = "Europe/Paris";
  paris.no_bank_holidays = 1;
  ck_assert_int_eq(flow_engine_set_calendar(E, &paris), 0);
  flow_calendar_options fixed = FLOW_CALENDAR_OPTIONS_INIT;
  fixed.zone = "-05:30";
  ck_assert_int_eq(flow_engine_set_calendar(E, &fixed), 0);
}
END_TEST

START_TEST(test_timers_requested_by_handlers)
{
  ck_assert_int_eq(flow_case_open(NULL, E, "visit", NULL, NULL), 0);
  ck_assert_msg(flow_case_signal(NULL, E, "1", "chase", NULL, NULL) == 0,
                "%s", flow_errmsg(E));
  char *c;
  ck_assert_int_eq(flow_case_timers(&c, E, "1"), 0);
  /* Friday 09:00 + 3 working days = Wednesday 09:00, in the state. */
  ck_assert_msg(strstr(c, "\"due_at\":\"2026-12-02T09:00:00Z\",\"event\":"
                          "\"remind\",\"id\":\"5\",\"kind\":\"timer\","
                          "\"payload\":{\"n\":7},\"state\":\"waiting\"") != NULL,
                "%s", c);
  ck_assert_msg(strstr(c, "\"due_at\":\"2026-12-24T12:00:00Z\",\"event\":"
                          "\"remind\",\"id\":\"6\",\"kind\":\"timer\","
                          "\"payload\":{\"n\":9},\"state\":null") != NULL,
                "%s", c);
  flow_free(c);
  /* Leaving the state cancels the first, keeps the second. */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "book", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_timers(&c, E, "1"), 0);
  ck_assert(strstr(c, "\"n\":7") == NULL && strstr(c, "\"n\":9") != NULL);
  flow_free(c);
  /* A bad duration is an error at the line of the call. */
  const char *bad =
      "return { name = 'b', version = 1, initial = 'a', states = {\n"
      "  a = { on = { go = function(case, ev)\n"
      "    flow.after('2 wrking days', 'x')\n"
      "  end } } } }\n";
  ck_assert_int_eq(flow_service_load_string(NULL, E, bad, strlen(bad),
                                            "b.lua"),
                   0);
  ck_assert_int_eq(flow_case_open(NULL, E, "b", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "2", "go", NULL, NULL),
                   FLOW_ESCRIPT);
  ck_assert_msg(strstr(flow_errmsg(E), "b.lua:3:") &&
                    strstr(flow_errmsg(E), "2 wrking days"),
                "%s", flow_errmsg(E));
}
END_TEST

static Suite *
timers_suite(void)
{
  Suite *s = suite_create("timers");
  TCase *tc = tcase_create("timers");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_timers_created_on_entry);
  tcase_add_test(tc, test_timers_fire_in_order_exactly_once);
  tcase_add_test(tc, test_timers_cancelled_when_leaving);
  tcase_add_test(tc, test_timers_refused_event_becomes_incident);
  tcase_add_test(tc, test_timers_refusal_inside_a_batch);
  tcase_add_test(tc, test_timers_sla_without_handler_is_recorded);
  tcase_add_test(tc, test_timers_overdue_listing);
  tcase_add_test(tc, test_timers_survive_restart);
  tcase_add_test(tc, test_timers_custom_calendar);
  tcase_add_test(tc, test_timers_requested_by_handlers);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(timers_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
