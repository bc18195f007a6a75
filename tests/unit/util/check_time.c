/*
 * Timestamps: parsing ISO 8601 with an offset, formatting as UTC with Z,
 * and the day-number arithmetic under both.  Expected values are written
 * out literally (epoch milliseconds checked against `date -u`), so a
 * mistake in the day arithmetic cannot cancel itself out.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "util/util.h"

static int64_t
parse_ok(const char *s)
{
  int64_t t = -1;
  int rc = flow__time_parse(s, &t);
  ck_assert_msg(rc == 0, "'%s' refused", s);
  return t;
}

static void
refused(const char *s)
{
  int64_t t = 12345;
  ck_assert_msg(flow__time_parse(s, &t) == FLOW_EINVAL, "'%s' accepted", s);
  ck_assert_msg(t == 12345, "'%s' wrote *out on failure", s);
}

static const char *
fmt(int64_t ms)
{
  static char buf[32];
  int n = flow__time_format(buf, sizeof buf, ms);
  ck_assert_int_eq(n, (int)strlen(buf));
  return buf;
}

START_TEST(test_time_parse_utc)
{
  ck_assert_int_eq(parse_ok("1970-01-01T00:00:00Z"), 0);
  ck_assert_int_eq(parse_ok("2026-11-27T09:00:00Z"), INT64_C(1795770000000));
  ck_assert_int_eq(parse_ok("2026-11-27T09:00Z"), INT64_C(1795770000000));
  ck_assert_int_eq(parse_ok("2026-11-27t09:00:00z"), INT64_C(1795770000000));
  ck_assert_int_eq(parse_ok("2026-11-27 09:00:00Z"), INT64_C(1795770000000));
  ck_assert_int_eq(parse_ok("2000-03-01T00:00:00Z"), INT64_C(951868800000));
  ck_assert_int_eq(parse_ok("2038-01-19T03:14:08Z"), INT64_C(2147483648000));
  ck_assert_int_eq(parse_ok("9999-12-31T23:59:59Z"),
                   INT64_C(253402300799000));
  ck_assert_int_eq(parse_ok("0001-01-01T00:00:00Z"),
                   INT64_C(-62135596800000));
}
END_TEST

START_TEST(test_time_parse_offsets)
{
  /* 09:00 at +01:00 is 08:00Z; at -05:30 it is 14:30Z. */
  ck_assert_int_eq(parse_ok("2026-06-12T09:00:00+01:00"),
                   INT64_C(1781251200000));
  ck_assert_int_eq(parse_ok("2026-06-12T08:00:00Z"), INT64_C(1781251200000));
  ck_assert_int_eq(parse_ok("2026-06-12T09:00:00+0100"),
                   INT64_C(1781251200000));
  ck_assert_int_eq(parse_ok("2026-06-12T09:00:00-05:30"),
                   INT64_C(1781274600000));
  ck_assert_int_eq(parse_ok("2026-06-12T14:30:00Z"), INT64_C(1781274600000));
  ck_assert_int_eq(parse_ok("2026-06-12T09:00-0530"), INT64_C(1781274600000));
  ck_assert_int_eq(parse_ok("2026-06-12T09:00:00+00:00"),
                   parse_ok("2026-06-12T09:00:00-00:00"));
  /* An offset can move the instant across a day and a year boundary. */
  ck_assert_int_eq(parse_ok("2027-01-01T00:30:00+01:00"),
                   parse_ok("2026-12-31T23:30:00Z"));
  ck_assert_int_eq(parse_ok("2026-12-31T20:00:00-05:00"),
                   parse_ok("2027-01-01T01:00:00Z"));
  ck_assert_int_eq(parse_ok("2026-06-12T09:00:00+14:00"),
                   parse_ok("2026-06-11T19:00:00Z"));
}
END_TEST

START_TEST(test_time_parse_fractions)
{
  int64_t base = INT64_C(1795770000000); /* 2026-11-27T09:00:00Z */
  ck_assert_int_eq(parse_ok("2026-11-27T09:00:00.5Z"), base + 500);
  ck_assert_int_eq(parse_ok("2026-11-27T09:00:00.25Z"), base + 250);
  ck_assert_int_eq(parse_ok("2026-11-27T09:00:00.123Z"), base + 123);
  ck_assert_int_eq(parse_ok("2026-11-27T09:00:00.0Z"), base);
  /* Beyond milliseconds the digits are truncated, never rounded up. */
  ck_assert_int_eq(parse_ok("2026-11-27T09:00:00.1239Z"), base + 123);
  ck_assert_int_eq(parse_ok("2026-11-27T09:00:00.999999999Z"), base + 999);
  ck_assert_int_eq(parse_ok("2026-11-27T10:00:00.001+01:00"), base + 1);
  ck_assert_int_eq(parse_ok("1969-12-31T23:59:59.999Z"), -1);
}
END_TEST

START_TEST(test_time_parse_rejects)
{
  refused("");
  refused("2026-11-27T09:00:00");     /* no offset */
  refused("2026-11-27T09:00");        /* no offset */
  refused("2026-11-27");              /* no time */
  refused("2026-02-30T09:00:00Z");    /* no 30 February */
  refused("2026-02-29T09:00:00Z");    /* 2026 is not a leap year */
  refused("2100-02-29T09:00:00Z");    /* nor is 2100 */
  refused("2026-04-31T09:00:00Z");
  refused("2026-13-01T09:00:00Z");    /* month 13 */
  refused("2026-00-01T09:00:00Z");
  refused("2026-01-00T09:00:00Z");
  refused("2026-01-32T09:00:00Z");
  refused("2026-11-27T24:00:00Z");    /* hour 24 */
  refused("2026-11-27T09:60:00Z");    /* minute 60 */
  refused("2026-11-27T09:00:60Z");    /* leap seconds are refused */
  refused("2026-11-27T09:00:61Z");
  refused("2026-11-27T09:00:00ZX");   /* trailing garbage */
  refused("2026-11-27T09:00:00Z ");
  refused("2026-11-27T09:00:00+01:00x");
  refused(" 2026-11-27T09:00:00Z");
  refused("0000-01-01T00:00:00Z");    /* years 0001..9999 */
  refused("10000-01-01T00:00:00Z");
  refused("-001-01-01T00:00:00Z");
  refused("2026-11-27X09:00:00Z");    /* bad separator */
  refused("2026-11-27  09:00:00Z");   /* one space only */
  refused("2026-11-27T9:00:00Z");     /* two digits each */
  refused("2026-1-27T09:00:00Z");
  refused("26-11-27T09:00:00Z");
  refused("2026/11/27T09:00:00Z");
  refused("2026-11-27T09:00:00.Z");   /* a fraction needs a digit */
  refused("2026-11-27T09:00:00.1234567890Z"); /* at most nine */
  refused("2026-11-27T09:00.5Z");     /* a fraction needs seconds */
  refused("2026-11-27T09:00:00+1:00");
  refused("2026-11-27T09:00:00+01");
  refused("2026-11-27T09:00:00+01:0");
  refused("2026-11-27T09:00:00+24:00");
  refused("2026-11-27T09:00:00+01:60");
  refused("2026-11-27T09:00:00 +01:00");

  int64_t t;
  ck_assert_int_eq(flow__time_parse(NULL, &t), FLOW_EINVAL);
  ck_assert_int_eq(flow__time_parse("2026-11-27T09:00:00Z", NULL),
                   FLOW_EINVAL);
}
END_TEST

START_TEST(test_time_leap_years)
{
  ck_assert_int_eq(parse_ok("2024-02-29T12:00:00Z"), INT64_C(1709208000000));
  ck_assert_int_eq(parse_ok("2000-02-29T00:00:00Z"), INT64_C(951782400000));
  ck_assert_str_eq(fmt(INT64_C(1709208000000)), "2024-02-29T12:00:00Z");
  ck_assert_int_eq(parse_ok("2024-03-01T00:00:00Z") -
                       parse_ok("2024-02-28T00:00:00Z"),
                   INT64_C(2) * 86400000);
  ck_assert_int_eq(parse_ok("2026-03-01T00:00:00Z") -
                       parse_ok("2026-02-28T00:00:00Z"),
                   INT64_C(86400000));
}
END_TEST

START_TEST(test_time_format)
{
  ck_assert_str_eq(fmt(0), "1970-01-01T00:00:00Z");
  ck_assert_str_eq(fmt(INT64_C(1795770000000)), "2026-11-27T09:00:00Z");
  ck_assert_str_eq(fmt(INT64_C(1795770000001)), "2026-11-27T09:00:00.001Z");
  ck_assert_str_eq(fmt(INT64_C(1795770000500)), "2026-11-27T09:00:00.500Z");
  ck_assert_str_eq(fmt(INT64_C(1795770059999)), "2026-11-27T09:00:59.999Z");
  ck_assert_str_eq(fmt(INT64_C(253402300799999)),
                   "9999-12-31T23:59:59.999Z");
  ck_assert_str_eq(fmt(INT64_C(-62135596800000)), "0001-01-01T00:00:00Z");

  /* The public wrapper: 0 or FLOW_EINVAL, never a length. */
  char buf[32], small[31];
  ck_assert_int_eq(flow_time_format(buf, sizeof buf, INT64_C(1795770000000)),
                   0);
  ck_assert_str_eq(buf, "2026-11-27T09:00:00Z");
  ck_assert_int_eq(flow_time_format(small, sizeof small, 0), FLOW_EINVAL);
  ck_assert_int_eq(flow_time_format(NULL, 32, 0), FLOW_EINVAL);
  ck_assert_int_eq(flow__time_format(small, sizeof small, 0), FLOW_EINVAL);
  ck_assert_int_eq(flow__time_format(NULL, 32, 0), FLOW_EINVAL);

  int64_t t = 0;
  ck_assert_int_eq(flow_time_parse(&t, "2026-11-27T10:00:00+01:00"), 0);
  ck_assert_int_eq(t, INT64_C(1795770000000));
  ck_assert_int_eq(flow_time_parse(&t, "2026-11-27T10:00:00"), FLOW_EINVAL);
  ck_assert_int_eq(flow_time_parse(&t, NULL), FLOW_EINVAL);
}
END_TEST

START_TEST(test_time_format_negative)
{
  /* Floor division: one millisecond before the epoch is the last
     millisecond of 1969, not a negative time of day. */
  ck_assert_str_eq(fmt(-1), "1969-12-31T23:59:59.999Z");
  ck_assert_str_eq(fmt(-1000), "1969-12-31T23:59:59Z");
  ck_assert_str_eq(fmt(-86400000), "1969-12-31T00:00:00Z");
  ck_assert_str_eq(fmt(-86400001), "1969-12-30T23:59:59.999Z");
  ck_assert_str_eq(fmt(INT64_C(-14182940000)), "1969-07-20T20:17:40Z");
  ck_assert_str_eq(fmt(INT64_C(-2208988800000)), "1900-01-01T00:00:00Z");
  ck_assert_int_eq(parse_ok("1969-07-20T20:17:40Z"), INT64_C(-14182940000));
  ck_assert_int_eq(parse_ok("1900-01-01T00:00:00Z"),
                   INT64_C(-2208988800000));
  /* Out of the parser's range, but every int64 still formats in 32. */
  ck_assert_str_eq(fmt(INT64_MIN), "-292275055-05-16T16:47:04.192Z");
  ck_assert_str_eq(fmt(INT64_MAX), "292278994-08-17T07:12:55.807Z");
}
END_TEST

/* The formatter writes digits by hand; snprintf is the reference. */
START_TEST(test_time_format_matches_printf)
{
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    /* Mostly years 0..9999, sometimes anything an int64 holds. */
    int64_t ms = i % 16 ? (int64_t)(x % UINT64_C(315537897600000)) -
                              INT64_C(62167219200000)
                        : (int64_t)x;
    if (i % 3 == 0)
      ms -= ms % 1000; /* whole seconds take the short form */
    int64_t day = ms / 86400000, rem = ms % 86400000;
    if (rem < 0) {
      rem += 86400000;
      day--;
    }
    int y, m, d;
    flow__civil_from_days(day, &y, &m, &d);
    int secs = (int)(rem / 1000), frac = (int)(rem % 1000);
    char want[64];
    long long ay = y < 0 ? -(long long)y : y;
    if (frac)
      snprintf(want, sizeof want, "%s%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ",
               y < 0 ? "-" : "", ay, m, d, secs / 3600, secs / 60 % 60,
               secs % 60, frac);
    else
      snprintf(want, sizeof want, "%s%04lld-%02d-%02dT%02d:%02d:%02dZ",
               y < 0 ? "-" : "", ay, m, d, secs / 3600, secs / 60 % 60,
               secs % 60);
    ck_assert_msg(strcmp(fmt(ms), want) == 0, "%lld: got %s, want %s",
                  (long long)ms, fmt(ms), want);
  }
}
END_TEST

START_TEST(test_time_round_trip)
{
  static const char *texts[] = {
    "1970-01-01T00:00:00Z",     "1969-12-31T23:59:59.999Z",
    "2026-03-29T01:00:00Z",     "2024-02-29T23:59:59.001Z",
    "0001-01-01T00:00:00Z",     "9999-12-31T23:59:59.999Z",
    "1600-02-29T12:34:56.789Z", "1899-12-31T23:59:59Z",
    "2000-01-01T00:00:00.010Z", "2100-03-01T00:00:00Z",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
    ck_assert_str_eq(fmt(parse_ok(texts[i])), texts[i]);
  /* Every millisecond step across a day boundary before the epoch. */
  for (int64_t ms = INT64_C(-86400000) - 2000; ms < -86400000 + 2000; ms += 7)
    ck_assert_int_eq(parse_ok(fmt(ms)), ms);
}
END_TEST

START_TEST(test_time_days_civil)
{
  int y, m, d;
  ck_assert_int_eq(flow__days_from_civil(1970, 1, 1), 0);
  ck_assert_int_eq(flow__days_from_civil(1969, 12, 31), -1);
  ck_assert_int_eq(flow__days_from_civil(2000, 3, 1), 11017);
  ck_assert_int_eq(flow__days_from_civil(2026, 12, 25), 20812);
  ck_assert_int_eq(flow__days_from_civil(1, 1, 1), -719162);
  ck_assert_int_eq(flow__days_from_civil(0, 3, 1), -719468);
  flow__civil_from_days(20812, &y, &m, &d);
  ck_assert(y == 2026 && m == 12 && d == 25);
  flow__civil_from_days(-719468, &y, &m, &d);
  ck_assert(y == 0 && m == 3 && d == 1);
  flow__civil_from_days(-719469, &y, &m, &d);
  ck_assert(y == 0 && m == 2 && d == 29); /* year 0 is a leap year */

  /* Every day from 1 March -4800 to 9999-12-31, in order: each next day
     is the calendar's next date.  Plain comparisons in the loop, one
     assertion after it: ck_assert marks a point per call, which is slow. */
  int64_t first = flow__days_from_civil(-4800, 3, 1);
  int64_t last = flow__days_from_civil(9999, 12, 31);
  int64_t bad_day = INT64_MIN;
  int py = -4800, pm = 2, pd = 29; /* the day before the first */
  static const int mdays[] = { 31, 28, 31, 30, 31, 30,
                               31, 31, 30, 31, 30, 31 };
  for (int64_t day = first; day <= last && bad_day == INT64_MIN; day++) {
    flow__civil_from_days(day, &y, &m, &d);
    int ny = py, nm = pm, nd = pd + 1;
    int leap = (ny % 4 == 0 && ny % 100 != 0) || ny % 400 == 0;
    if (nd > mdays[nm - 1] + (nm == 2 && leap)) {
      nd = 1;
      if (++nm > 12) {
        nm = 1;
        ny++;
      }
    }
    if (y != ny || m != nm || d != nd ||
        flow__days_from_civil(y, m, d) != day)
      bad_day = day;
    py = y;
    pm = m;
    pd = d;
  }
  ck_assert_msg(bad_day == INT64_MIN, "day %lld", (long long)bad_day);
  ck_assert(y == 9999 && m == 12 && d == 31);
  /* And far out, where only the era arithmetic is at work. */
  flow__civil_from_days(INT64_C(100000000), &y, &m, &d);
  ck_assert_int_eq(flow__days_from_civil(y, m, d), INT64_C(100000000));
  flow__civil_from_days(INT64_C(-100000000), &y, &m, &d);
  ck_assert_int_eq(flow__days_from_civil(y, m, d), INT64_C(-100000000));
}
END_TEST

START_TEST(test_time_date_parse)
{
  int y = 0, m = 0, d = 0;
  ck_assert_int_eq(flow__date_parse("2024-02-29", &y, &m, &d), 0);
  ck_assert(y == 2024 && m == 2 && d == 29);
  ck_assert_int_eq(flow__date_parse("2026-02-29", &y, &m, &d), FLOW_EINVAL);
  ck_assert_int_eq(flow__date_parse("2026-13-01", &y, &m, &d), FLOW_EINVAL);
  ck_assert_int_eq(flow__date_parse("2026-12-25T", &y, &m, &d), FLOW_EINVAL);
  ck_assert_int_eq(flow__date_parse("0000-12-25", &y, &m, &d), FLOW_EINVAL);
  ck_assert_int_eq(flow__date_parse("2026-12-5", &y, &m, &d), FLOW_EINVAL);
  ck_assert_int_eq(flow__date_parse("", &y, &m, &d), FLOW_EINVAL);
  ck_assert_int_eq(flow__date_parse(NULL, &y, &m, &d), FLOW_EINVAL);
  ck_assert(y == 2024 && m == 2 && d == 29);
}
END_TEST

START_TEST(test_time_real_clock)
{
  /* Only that it is the real clock: after 2024, before 2100. */
  int64_t now = flow__time_real();
  ck_assert_int_gt(now, INT64_C(1704067200000));
  ck_assert_int_lt(now, INT64_C(4102444800000));
}
END_TEST

static Suite *
time_suite(void)
{
  Suite *s = suite_create("time");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_time_parse_utc);
  tcase_add_test(tc, test_time_parse_offsets);
  tcase_add_test(tc, test_time_parse_fractions);
  tcase_add_test(tc, test_time_parse_rejects);
  tcase_add_test(tc, test_time_leap_years);
  tcase_add_test(tc, test_time_format);
  tcase_add_test(tc, test_time_format_negative);
  tcase_add_test(tc, test_time_format_matches_printf);
  tcase_add_test(tc, test_time_round_trip);
  tcase_add_test(tc, test_time_days_civil);
  tcase_add_test(tc, test_time_date_parse);
  tcase_add_test(tc, test_time_real_clock);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(time_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
