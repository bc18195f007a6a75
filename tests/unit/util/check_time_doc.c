/*
 * Every row of the tables in docs/time.md, checked: the documentation of
 * the working-time rules is only worth something if it is true.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static int64_t
t(const char *iso)
{
  int64_t v;
  ck_assert_int_eq(flow__time_parse(iso, &v), 0);
  return v;
}

static void
check(const char *from, const char *dur, const char *want)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  flow__duration d;
  ck_assert_int_eq(flow__duration_parse(dur, &d, NULL), 0);
  int64_t out;
  ck_assert_int_eq(flow__calendar_add(&cal, t(from), &d, &out), 0);
  char buf[32];
  flow__time_format(buf, sizeof buf, out);
  ck_assert_msg(out == t(want), "%s + %s: want %s, got %s", from, dur, want,
                buf);
}

START_TEST(test_time_doc_working_days_table)
{
  /* Friday 27 November 2026 is in GMT: local time = UTC. */
  check("2026-11-27T09:00:00Z", "2 working days", "2026-12-01T09:00:00Z");
  check("2026-11-27T16:59:00Z", "1 working day", "2026-11-30T16:59:00Z");
  check("2026-11-27T17:00:00Z", "1 working day", "2026-12-01T09:00:00Z");
  check("2026-11-27T18:00:00Z", "1 working day", "2026-12-01T09:00:00Z");
  check("2026-11-28T10:00:00Z", "2 working days", "2026-12-02T09:00:00Z");
  check("2026-11-30T08:00:00Z", "1 working day", "2026-12-01T09:00:00Z");
  check("2026-12-24T10:00:00Z", "1 working day", "2026-12-29T10:00:00Z");
  /* 2 April 2026 is in BST. */
  check("2026-04-02T14:00:00+01:00", "1 working day",
        "2026-04-07T14:00:00+01:00");
  check("2026-10-23T10:00:00+01:00", "1 working day", "2026-10-26T10:00:00Z");
}
END_TEST

START_TEST(test_time_doc_working_hours_table)
{
  check("2026-11-27T15:00:00Z", "4 working hours", "2026-11-30T11:00:00Z");
  check("2026-11-27T13:00:00Z", "4 working hours", "2026-11-27T17:00:00Z");
  check("2026-11-28T12:00:00Z", "1 working hour", "2026-11-30T10:00:00Z");
}
END_TEST

START_TEST(test_time_doc_bank_holidays_2026)
{
  const char *days[] = { "2026-01-01", "2026-04-03", "2026-04-06",
                         "2026-05-04", "2026-05-25", "2026-08-31",
                         "2026-12-25", "2026-12-28" };
  int n = 0;
  for (int m = 1; m <= 12; m++)
    for (int d = 1; d <= 31; d++)
      n += flow__bank_holiday_ew(2026, m, d);
  ck_assert_int_eq(n, 8);
  for (size_t i = 0; i < 8; i++) {
    int y, m, d;
    ck_assert_int_eq(flow__date_parse(days[i], &y, &m, &d), 0);
    ck_assert_msg(flow__bank_holiday_ew(y, m, d), "%s", days[i]);
  }
}
END_TEST

static Suite *
doc_suite(void)
{
  Suite *s = suite_create("time_doc");
  TCase *tc = tcase_create("docs/time.md");
  tcase_add_test(tc, test_time_doc_working_days_table);
  tcase_add_test(tc, test_time_doc_working_hours_table);
  tcase_add_test(tc, test_time_doc_bank_holidays_2026);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(doc_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
