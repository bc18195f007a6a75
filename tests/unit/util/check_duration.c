/*
 * Duration strings: every unit in its short, singular and plural form,
 * the working units, the spacing rules, and every way to be refused with
 * the message a script author will read.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "util/util.h"

#define SEC INT64_C(1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

static const char forms[] =
    "use a number and a unit, like \"90s\", \"15m\", \"48h\", \"3d\", "
    "\"2w\", \"2 working days\" or \"4 working hours\"";

static void
expect(const char *s, flow__dur_unit unit, int64_t amount)
{
  flow__duration d = { FLOW__DUR_ELAPSED, -1 };
  flow__err err;
  flow__err_clear(&err);
  int rc = flow__duration_parse(s, &d, &err);
  ck_assert_msg(rc == 0, "'%s' refused: %s", s, err.msg);
  ck_assert_msg(d.unit == unit, "'%s': unit %d", s, (int)d.unit);
  ck_assert_msg(d.amount == amount, "'%s': amount %lld, expected %lld", s,
                (long long)d.amount, (long long)amount);
}

/* Refused with exactly "bad duration '<s>': <why>". */
static void
refuse(const char *s, const char *why)
{
  flow__duration d = { FLOW__DUR_ELAPSED, 77 };
  flow__err err;
  flow__err_clear(&err);
  ck_assert_msg(flow__duration_parse(s, &d, &err) == FLOW_EINVAL,
                "'%s' accepted", s);
  char want[512];
  snprintf(want, sizeof want, "bad duration '%s': %s", s, why);
  ck_assert_str_eq(err.msg, want);
  ck_assert_int_eq(err.code, FLOW_EINVAL);
  ck_assert_int_eq(d.amount, 77);
}

START_TEST(test_duration_short_units)
{
  expect("90s", FLOW__DUR_ELAPSED, 90 * SEC);
  expect("15m", FLOW__DUR_ELAPSED, 15 * MIN);
  expect("48h", FLOW__DUR_ELAPSED, 48 * HOUR);
  expect("3d", FLOW__DUR_ELAPSED, 3 * DAY);
  expect("2w", FLOW__DUR_ELAPSED, 14 * DAY);
  expect("1s", FLOW__DUR_ELAPSED, 1000);
  expect("007m", FLOW__DUR_ELAPSED, 7 * MIN);
}
END_TEST

START_TEST(test_duration_words)
{
  expect("1 second", FLOW__DUR_ELAPSED, SEC);
  expect("90 seconds", FLOW__DUR_ELAPSED, 90 * SEC);
  expect("1 minute", FLOW__DUR_ELAPSED, MIN);
  expect("15 minutes", FLOW__DUR_ELAPSED, 15 * MIN);
  expect("1 hour", FLOW__DUR_ELAPSED, HOUR);
  expect("48 hours", FLOW__DUR_ELAPSED, 48 * HOUR);
  expect("1 day", FLOW__DUR_ELAPSED, DAY);
  expect("3 days", FLOW__DUR_ELAPSED, 3 * DAY);
  expect("1 week", FLOW__DUR_ELAPSED, 7 * DAY);
  expect("2 weeks", FLOW__DUR_ELAPSED, 14 * DAY);
  /* Singular or plural whatever the number. */
  expect("2 day", FLOW__DUR_ELAPSED, 2 * DAY);
  expect("1 days", FLOW__DUR_ELAPSED, DAY);
}
END_TEST

START_TEST(test_duration_working)
{
  expect("1 working day", FLOW__DUR_WORKING_DAYS, 1);
  expect("2 working days", FLOW__DUR_WORKING_DAYS, 2);
  expect("10 working days", FLOW__DUR_WORKING_DAYS, 10);
  expect("1 working hour", FLOW__DUR_WORKING_HOURS, HOUR);
  expect("4 working hours", FLOW__DUR_WORKING_HOURS, 4 * HOUR);
  expect("1 working minute", FLOW__DUR_WORKING_HOURS, MIN);
  expect("30 working minutes", FLOW__DUR_WORKING_HOURS, 30 * MIN);
  expect("2working days", FLOW__DUR_WORKING_DAYS, 2);
  expect("2 working  days", FLOW__DUR_WORKING_DAYS, 2);
}
END_TEST

START_TEST(test_duration_spaces)
{
  expect("90 s", FLOW__DUR_ELAPSED, 90 * SEC);
  expect("90   s", FLOW__DUR_ELAPSED, 90 * SEC);
  expect("  90s  ", FLOW__DUR_ELAPSED, 90 * SEC);
  expect("\t2 working days\t", FLOW__DUR_WORKING_DAYS, 2);
  expect(" 15 minutes ", FLOW__DUR_ELAPSED, 15 * MIN);
  expect("15minutes", FLOW__DUR_ELAPSED, 15 * MIN);
}
END_TEST

START_TEST(test_duration_limits)
{
  /* 100 years of 365.25 days is the most any duration may be. */
  expect("36525d", FLOW__DUR_ELAPSED, 36525 * DAY);
  expect("876600h", FLOW__DUR_ELAPSED, 36525 * DAY);
  expect("3155760000s", FLOW__DUR_ELAPSED, 36525 * DAY);
  expect("5217w", FLOW__DUR_ELAPSED, 5217 * 7 * DAY);
  expect("36525 working days", FLOW__DUR_WORKING_DAYS, 36525);
  expect("876600 working hours", FLOW__DUR_WORKING_HOURS, 36525 * DAY);

  const char *big = "a duration can be at most 100 years";
  refuse("36526d", big);
  refuse("5218w", big);
  refuse("876601h", big);
  refuse("3155760001s", big);
  refuse("36526 working days", big);
  refuse("876601 working hours", big);
  refuse("99999999999999999999999999999999s", big);
}
END_TEST

START_TEST(test_duration_zero)
{
  const char *why = "a duration must be at least 1";
  refuse("0s", why);
  refuse("0 working days", why);
  refuse("000h", why);
}
END_TEST

START_TEST(test_duration_rejects)
{
  refuse("2 wrking days", forms);
  refuse("", forms);
  refuse("   ", forms);
  refuse("s", forms);                 /* no number */
  refuse("working days", forms);
  refuse("90", forms);                /* no unit */
  refuse("-5m", forms);               /* no sign */
  refuse("+5m", forms);
  refuse("1.5h", forms);              /* whole numbers only */
  refuse("90S", forms);               /* lower case only */
  refuse("2 Working Days", forms);
  refuse("5 ms", forms);
  refuse("5 mins", forms);
  refuse("5 hrs", forms);
  refuse("5y", forms);
  refuse("5 working", forms);
  refuse("5 working weeks", forms);
  refuse("5 workingdays", forms);
  refuse("5 working d", forms);
  refuse("90s and 5m", forms);        /* trailing text */
  refuse("90ss", forms);
  refuse("9 0s", forms);

  /* The message, in full, as a script author sees it. */
  flow__duration d;
  flow__err err;
  flow__err_clear(&err);
  ck_assert_int_eq(flow__duration_parse("2 wrking days", &d, &err),
                   FLOW_EINVAL);
  ck_assert_str_eq(err.msg,
                   "bad duration '2 wrking days': use a number and a unit, "
                   "like \"90s\", \"15m\", \"48h\", \"3d\", \"2w\", "
                   "\"2 working days\" or \"4 working hours\"");

  ck_assert_int_eq(flow__duration_parse(NULL, &d, NULL), FLOW_EINVAL);
  ck_assert_int_eq(flow__duration_parse("90s", NULL, NULL), FLOW_EINVAL);
  /* err may be NULL. */
  ck_assert_int_eq(flow__duration_parse("2 wrking days", &d, NULL),
                   FLOW_EINVAL);
}
END_TEST

static Suite *
duration_suite(void)
{
  Suite *s = suite_create("duration");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_duration_short_units);
  tcase_add_test(tc, test_duration_words);
  tcase_add_test(tc, test_duration_working);
  tcase_add_test(tc, test_duration_spaces);
  tcase_add_test(tc, test_duration_limits);
  tcase_add_test(tc, test_duration_zero);
  tcase_add_test(tc, test_duration_rejects);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(duration_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
