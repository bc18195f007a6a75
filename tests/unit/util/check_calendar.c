/*
 * The working-time calendar: England & Wales bank holidays by rule (checked
 * against the published lists, both ways), Easter, the UK clock changes,
 * and the DESIGN.md contract for working days and working hours, written
 * as literal instants.  Local times in the comments are Europe/London.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"
#include "util/util.h"

#define MIN INT64_C(60000)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

static int64_t
T(const char *s)
{
  int64_t t;
  ck_assert_msg(flow__time_parse(s, &t) == 0, "bad test time '%s'", s);
  return t;
}

static int64_t
D(int y, int m, int d)
{
  return flow__days_from_civil(y, m, d);
}

/* from + dur on cal must be the instant `want`. */
static void
check_add(const flow__calendar *cal, const char *from, flow__dur_unit unit,
          int64_t amount, const char *want)
{
  flow__duration dur = { unit, amount };
  int64_t out = 0;
  char got[32];
  int rc = flow__calendar_add(cal, T(from), &dur, &out);
  ck_assert_msg(rc == 0, "%s + %lld (unit %d) failed", from,
                (long long)amount, (int)unit);
  flow__time_format(got, sizeof got, out);
  ck_assert_msg(out == T(want), "%s + %lld (unit %d): got %s, want %s", from,
                (long long)amount, (int)unit, got, want);
}

static void
wd(const flow__calendar *cal, const char *from, int n, const char *want)
{
  check_add(cal, from, FLOW__DUR_WORKING_DAYS, n, want);
}

static void
wh(const flow__calendar *cal, const char *from, int64_t ms, const char *want)
{
  check_add(cal, from, FLOW__DUR_WORKING_HOURS, ms, want);
}

/* ---- bank holidays ----------------------------------------------------- */

typedef struct ymd {
  int m, d;
} ymd;

/* The gov.uk lists for England and Wales. */
static const ymd bh2020[] = { { 1, 1 },  { 4, 10 }, { 4, 13 }, { 5, 8 },
                              { 5, 25 }, { 8, 31 }, { 12, 25 }, { 12, 28 } };
static const ymd bh2022[] = { { 1, 3 },  { 4, 15 }, { 4, 18 },  { 5, 2 },
                              { 6, 2 },  { 6, 3 },  { 8, 29 },  { 9, 19 },
                              { 12, 26 }, { 12, 27 } };
static const ymd bh2023[] = { { 1, 2 },  { 4, 7 },  { 4, 10 },
                              { 5, 1 },  { 5, 8 },  { 5, 29 },
                              { 8, 28 }, { 12, 25 }, { 12, 26 } };
static const ymd bh2024[] = { { 1, 1 },  { 3, 29 }, { 4, 1 },   { 5, 6 },
                              { 5, 27 }, { 8, 26 }, { 12, 25 }, { 12, 26 } };
static const ymd bh2025[] = { { 1, 1 },  { 4, 18 }, { 4, 21 },  { 5, 5 },
                              { 5, 26 }, { 8, 25 }, { 12, 25 }, { 12, 26 } };
static const ymd bh2026[] = { { 1, 1 },  { 4, 3 },  { 4, 6 },   { 5, 4 },
                              { 5, 25 }, { 8, 31 }, { 12, 25 }, { 12, 28 } };
static const ymd bh2027[] = { { 1, 1 },  { 3, 26 }, { 3, 29 },  { 5, 3 },
                              { 5, 31 }, { 8, 30 }, { 12, 27 }, { 12, 28 } };

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Each listed day is a holiday, and the year has no others. */
static void
check_year(int y, const ymd *list, size_t n)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  for (size_t i = 0; i < n; i++) {
    ck_assert_msg(flow__bank_holiday_ew(y, list[i].m, list[i].d),
                  "%d-%02d-%02d should be a bank holiday", y, list[i].m,
                  list[i].d);
    ck_assert_msg(!flow__calendar_is_working_day(
                      &cal, D(y, list[i].m, list[i].d)),
                  "%d-%02d-%02d should not be a working day", y, list[i].m,
                  list[i].d);
  }
  size_t count = 0;
  for (int64_t day = D(y, 1, 1); day < D(y + 1, 1, 1); day++) {
    int yy, mm, dd;
    flow__civil_from_days(day, &yy, &mm, &dd);
    if (flow__bank_holiday_ew(yy, mm, dd)) {
      count++;
      int listed = 0;
      for (size_t i = 0; i < n; i++)
        listed |= list[i].m == mm && list[i].d == dd;
      ck_assert_msg(listed, "%d-%02d-%02d is not a bank holiday", yy, mm, dd);
    }
  }
  ck_assert_uint_eq(count, n);
}

/* The walks' per-year holiday lists answer exactly as the rule, for every
   day of four centuries, with and without a host's extra holidays. */
START_TEST(test_calendar_walked_days_match_the_rule)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  int64_t extra[] = { flow__days_from_civil(2026, 7, 15),
                      flow__days_from_civil(2031, 1, 2) };
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      cal.extra_holidays = extra;
      cal.nextra = 2;
    }
    int64_t from = flow__days_from_civil(1900, 1, 1);
    int64_t to = flow__days_from_civil(2300, 1, 1);
    for (int64_t d = from; d < to; d++)
      ck_assert_msg(flow__calendar_is_working_day(&cal, d) ==
                        flow__calendar_is_working_day_walked(&cal, d),
                    "day %lld", (long long)d);
  }
}
END_TEST

/* The reference for working hours: the plain day-by-day walk of the rule
   (the library steps over whole years), written here again on purpose. */
static int64_t
ref_local_to_utc(const flow__calendar *cal, int64_t local)
{
  int64_t u1 = local - cal->std_offset_min * INT64_C(60000);
  int64_t u2 = local - cal->dst_offset_min * INT64_C(60000);
  int ok1 = flow__calendar_offset(cal, u1) == cal->std_offset_min;
  int ok2 = flow__calendar_offset(cal, u2) == cal->dst_offset_min;
  if (ok1 && ok2)
    return u1 < u2 ? u1 : u2;
  if (ok1)
    return u1;
  if (ok2)
    return u2;
  return u1 > u2 ? u1 : u2;
}

static int64_t
ref_add_hours(const flow__calendar *cal, int64_t from, int64_t left)
{
  const int64_t day_ms = INT64_C(86400000);
  int64_t local = from + flow__calendar_offset(cal, from) * INT64_C(60000);
  int64_t day = local >= 0 ? local / day_ms : -((-local + day_ms - 1) / day_ms);
  int64_t tod = local - day * day_ms;
  int64_t open = cal->open_minute * INT64_C(60000);
  int64_t close = cal->close_minute * INT64_C(60000);
  for (;;) {
    if (flow__calendar_is_working_day(cal, day)) {
      if (tod < open)
        tod = open;
      if (tod < close) {
        if (left <= close - tod)
          return ref_local_to_utc(cal, day * day_ms + tod + left);
        left -= close - tod;
      }
    }
    day++;
    tod = 0;
  }
}

/* Long working-hours deadlines land where the day-by-day walk lands, on
   calendars with and without bank holidays, extra days off, other
   weekdays and hours, starting at every kind of moment. */
START_TEST(test_calendar_year_steps_match_the_walk)
{
  int64_t extra[40];
  for (int i = 0; i < 40; i++)
    extra[i] = flow__days_from_civil(2027 + i / 4, 1 + (i * 5) % 12,
                                     1 + (i * 7) % 28);
  for (int i = 1; i < 40; i++) /* sorted */
    for (int k = i; k > 0 && extra[k] < extra[k - 1]; k--) {
      int64_t t = extra[k];
      extra[k] = extra[k - 1];
      extra[k - 1] = t;
    }
  uint64_t seed = 12345;
  for (int round = 0; round < 400; round++) {
    flow__calendar cal;
    flow__calendar_default(&cal);
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    if (round % 4 == 1) {
      cal.extra_holidays = extra;
      cal.nextra = 40;
    }
    if (round % 4 == 2) {
      cal.weekdays = 0x7e; /* Monday to Saturday */
      cal.open_minute = 7 * 60;
      cal.close_minute = 19 * 60 + 30;
    }
    if (round % 4 == 3)
      cal.england_wales_holidays = 0;
    int64_t from = 1767225600000 + (int64_t)((seed >> 20) % 315360000000ull);
    int64_t hours = 1 + (int64_t)((seed >> 8) % 60000);
    flow__duration d = { FLOW__DUR_WORKING_HOURS, hours * 3600000 };
    int64_t got = 0;
    ck_assert_int_eq(flow__calendar_add(&cal, from, &d, &got), 0);
    ck_assert_msg(got == ref_add_hours(&cal, from, d.amount),
                  "round %d: %lld + %lld working hours", round,
                  (long long)from, (long long)hours);
  }
}
END_TEST

/* A hundred years of working hours is a walk of 36,500 days: it must
   stay cheap, since every timer of a transition takes one. */
START_TEST(test_calendar_long_walk_is_cheap)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  flow__duration d;
  flow__err e;
  flow__err_clear(&e);
  ck_assert_int_eq(flow__duration_parse("876000 working hours", &d, &e), 0);
  int64_t from = 1795770000000, out = 0;
  /* Counted, not timed: it must simply come back with an answer, about
     a century of working time later. */
  ck_assert_int_eq(flow__calendar_add(&cal, from, &d, &out), 0);
  ck_assert(out > from + (int64_t)360 * 24 * 3600 * 1000 * 100);
}
END_TEST

START_TEST(test_calendar_bank_holidays_2020)
{
  check_year(2020, bh2020, NELEM(bh2020));
}
END_TEST

START_TEST(test_calendar_bank_holidays_2022)
{
  check_year(2022, bh2022, NELEM(bh2022));
}
END_TEST

START_TEST(test_calendar_bank_holidays_2023)
{
  check_year(2023, bh2023, NELEM(bh2023));
}
END_TEST

START_TEST(test_calendar_bank_holidays_2024_to_2027)
{
  check_year(2024, bh2024, NELEM(bh2024));
  check_year(2025, bh2025, NELEM(bh2025));
  check_year(2026, bh2026, NELEM(bh2026));
  check_year(2027, bh2027, NELEM(bh2027));
}
END_TEST

START_TEST(test_calendar_bank_holiday_exceptions)
{
  /* Early May moved to 8 May for VE Day anniversaries. */
  ck_assert(flow__bank_holiday_ew(1995, 5, 8));
  ck_assert(!flow__bank_holiday_ew(1995, 5, 1));
  ck_assert(flow__bank_holiday_ew(2020, 5, 8));
  ck_assert(!flow__bank_holiday_ew(2020, 5, 4));
  ck_assert(flow__bank_holiday_ew(2021, 5, 3)); /* back to the rule */
  /* Spring holiday moved for jubilees, plus the jubilee days. */
  ck_assert(!flow__bank_holiday_ew(2002, 5, 27));
  ck_assert(flow__bank_holiday_ew(2002, 6, 3));
  ck_assert(flow__bank_holiday_ew(2002, 6, 4));
  ck_assert(!flow__bank_holiday_ew(2012, 5, 28));
  ck_assert(flow__bank_holiday_ew(2012, 6, 4));
  ck_assert(flow__bank_holiday_ew(2012, 6, 5));
  ck_assert(flow__bank_holiday_ew(2013, 5, 27));
  /* One-off days. */
  ck_assert(flow__bank_holiday_ew(1981, 7, 29));
  ck_assert(flow__bank_holiday_ew(1999, 12, 31));
  ck_assert(flow__bank_holiday_ew(2011, 4, 29));
  ck_assert(!flow__bank_holiday_ew(2011, 4, 28));
  ck_assert(!flow__bank_holiday_ew(2000, 12, 29));
  /* New Year: Saturday -> Monday 3rd; Sunday -> Monday 2nd. */
  ck_assert(flow__bank_holiday_ew(2011, 1, 3));
  ck_assert(!flow__bank_holiday_ew(2011, 1, 1));
  ck_assert(flow__bank_holiday_ew(2017, 1, 2));
  ck_assert(!flow__bank_holiday_ew(2017, 1, 3));
  ck_assert(!flow__bank_holiday_ew(2027, 1, 4));
  /* Christmas on a Saturday: Monday 27 and Tuesday 28 (2010, 2021). */
  ck_assert(flow__bank_holiday_ew(2010, 12, 27));
  ck_assert(flow__bank_holiday_ew(2010, 12, 28));
  ck_assert(flow__bank_holiday_ew(2021, 12, 27));
  ck_assert(flow__bank_holiday_ew(2021, 12, 28));
  ck_assert(!flow__bank_holiday_ew(2021, 12, 29));
  /* Christmas on a Sunday: Boxing Day Monday 26, substitute Tuesday 27
     (2016, 2022). */
  ck_assert(flow__bank_holiday_ew(2016, 12, 26));
  ck_assert(flow__bank_holiday_ew(2016, 12, 27));
  ck_assert(!flow__bank_holiday_ew(2016, 12, 28));
  /* Christmas on a Friday: Boxing Day's substitute is Monday 28. */
  ck_assert(flow__bank_holiday_ew(2015, 12, 25));
  ck_assert(flow__bank_holiday_ew(2015, 12, 28));
  ck_assert(!flow__bank_holiday_ew(2015, 12, 29));
  /* Weekend days are never bank holidays, even 25 December. */
  ck_assert(!flow__bank_holiday_ew(2027, 12, 25));
  ck_assert(!flow__bank_holiday_ew(2027, 12, 26));
}
END_TEST

START_TEST(test_calendar_easter)
{
  /* Easter Sunday: Good Friday two days before and Easter Monday the day
     after are holidays; the Friday and Monday a week before are not. */
  static const struct {
    int y, m, d;
  } easter[] = {
    { 1818, 3, 22 }, { 1943, 4, 25 }, { 1961, 4, 2 },  { 1981, 4, 19 },
    { 2000, 4, 23 }, { 2008, 3, 23 }, { 2011, 4, 24 }, { 2019, 4, 21 },
    { 2021, 4, 4 },  { 2024, 3, 31 }, { 2025, 4, 20 }, { 2026, 4, 5 },
    { 2027, 3, 28 }, { 2038, 4, 25 }, { 2100, 3, 28 }, { 2285, 3, 22 },
  };
  for (size_t i = 0; i < NELEM(easter); i++) {
    int64_t e = D(easter[i].y, easter[i].m, easter[i].d);
    int y, m, d;
    flow__civil_from_days(e - 2, &y, &m, &d);
    ck_assert_msg(flow__bank_holiday_ew(y, m, d), "Good Friday %d", y);
    flow__civil_from_days(e + 1, &y, &m, &d);
    ck_assert_msg(flow__bank_holiday_ew(y, m, d), "Easter Monday %d", y);
    flow__civil_from_days(e - 9, &y, &m, &d);
    ck_assert_msg(!flow__bank_holiday_ew(y, m, d), "Friday before %d", y);
    flow__civil_from_days(e - 6, &y, &m, &d);
    ck_assert_msg(!flow__bank_holiday_ew(y, m, d), "Monday before %d", y);
  }
}
END_TEST

/* ---- clock changes ----------------------------------------------------- */

START_TEST(test_calendar_dst_boundaries)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2026-01-15T12:00:00Z")), 0);
  ck_assert_int_eq(
      flow__calendar_offset(&cal, T("2026-03-29T00:59:59.999Z")), 0);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2026-03-29T01:00:00Z")),
                   60);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2026-07-01T12:00:00Z")),
                   60);
  ck_assert_int_eq(
      flow__calendar_offset(&cal, T("2026-10-25T00:59:59.999Z")), 60);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2026-10-25T01:00:00Z")), 0);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2026-12-31T23:59:59Z")), 0);
  /* The week before each change is not it: the rule is the last Sunday. */
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2026-03-22T12:00:00Z")), 0);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2026-10-18T12:00:00Z")),
                   60);
  /* 2027: 28 March and 31 October. */
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2027-03-28T00:59:59Z")), 0);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2027-03-28T01:00:00Z")),
                   60);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2027-10-31T00:59:59Z")),
                   60);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2027-10-31T01:00:00Z")), 0);
  /* Before the epoch too (1969: 30 March and 26 October by the rule). */
  ck_assert_int_eq(flow__calendar_offset(&cal, T("1969-03-30T00:59:59Z")), 0);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("1969-03-30T01:00:00Z")),
                   60);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("1969-10-26T01:00:00Z")), 0);
  /* Any int64 is safe to ask about. */
  ck_assert_int_eq(flow__calendar_offset(&cal, INT64_MAX), 0);
  ck_assert_int_eq(flow__calendar_offset(&cal, INT64_MIN), 0);
}
END_TEST

/* ---- working days ------------------------------------------------------ */

START_TEST(test_calendar_working_days_contract)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  /* Fri 16 Jan 2026 09:00 + 2 = Tue 20 Jan 09:00. */
  wd(&cal, "2026-01-16T09:00:00Z", 2, "2026-01-20T09:00:00Z");
  /* Sat 10:00 + 2 = Wed at opening. */
  wd(&cal, "2026-01-17T10:00:00Z", 2, "2026-01-21T09:00:00Z");
  /* Fri 18:00 + 1 = Tue at opening. */
  wd(&cal, "2026-01-16T18:00:00Z", 1, "2026-01-20T09:00:00Z");
  /* Fri 16:59 + 1 = Mon 16:59. */
  wd(&cal, "2026-01-16T16:59:00Z", 1, "2026-01-19T16:59:00Z");
  /* Fri 17:00 is closed already: + 1 = Tue at opening. */
  wd(&cal, "2026-01-16T17:00:00Z", 1, "2026-01-20T09:00:00Z");
  wd(&cal, "2026-01-16T16:59:59.999Z", 1, "2026-01-19T16:59:59.999Z");
  /* Mon 08:00 + 1 = Tue 09:00: counting starts at Monday's opening. */
  wd(&cal, "2026-01-19T08:00:00Z", 1, "2026-01-20T09:00:00Z");
  /* Mon 09:00 is open. */
  wd(&cal, "2026-01-19T09:00:00Z", 1, "2026-01-20T09:00:00Z");
  wd(&cal, "2026-01-16T09:00:00Z", 5, "2026-01-23T09:00:00Z");
  wd(&cal, "2026-01-18T23:59:59Z", 1, "2026-01-20T09:00:00Z");
  /* Thu 24 Dec 2026 10:00 + 1 = Tue 29 Dec 10:00 (25 Friday, 28 Monday
     substitute for Boxing Day). */
  wd(&cal, "2026-12-24T10:00:00Z", 1, "2026-12-29T10:00:00Z");
  /* In summer time the hours are 08:00-16:00 UTC: Fri 12 Jun 2026. */
  wd(&cal, "2026-06-12T08:00:00Z", 2, "2026-06-16T08:00:00Z");
  /* 08:30 BST is before opening: Fri 09:00 BST, + 1 = Mon 09:00 BST. */
  wd(&cal, "2026-06-12T07:30:00Z", 1, "2026-06-15T08:00:00Z");
  /* 16:30Z is 17:30 BST, after closing. */
  wd(&cal, "2026-06-12T16:30:00Z", 1, "2026-06-16T08:00:00Z");
  wd(&cal, "2026-06-12T17:30:00+01:00", 1, "2026-06-16T09:00:00+01:00");
}
END_TEST

START_TEST(test_calendar_working_days_holidays)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  /* Christmas 2026: 25 Fri and 28 Mon off, then 1 Jan 2027 Friday. */
  wd(&cal, "2026-12-24T10:00:00Z", 3, "2026-12-31T10:00:00Z");
  wd(&cal, "2026-12-24T10:00:00Z", 4, "2027-01-04T10:00:00Z");
  wd(&cal, "2026-12-24T18:00:00Z", 1, "2026-12-30T09:00:00Z");
  wd(&cal, "2026-12-25T12:00:00Z", 1, "2026-12-30T09:00:00Z");
  /* Christmas 2027 on a Saturday: Mon 27 and Tue 28 off. */
  wd(&cal, "2027-12-23T10:00:00Z", 1, "2027-12-24T10:00:00Z");
  wd(&cal, "2027-12-23T10:00:00Z", 2, "2027-12-29T10:00:00Z");
  /* Easter 2026 (in summer time): Thu 2 Apr 14:00 BST + 1 = Tue 7 Apr
     14:00 BST. */
  wd(&cal, "2026-04-02T13:00:00Z", 1, "2026-04-07T13:00:00Z");
  /* Good Friday 10:00 BST is a holiday: from Tue's opening, + 1 = Wed. */
  wd(&cal, "2026-04-03T09:00:00Z", 1, "2026-04-08T08:00:00Z");
  /* Easter 2027 with the clocks going forward on Easter Sunday: Thu 25
     Mar 10:00 GMT + 1 = Tue 30 Mar 10:00 BST. */
  wd(&cal, "2027-03-25T10:00:00Z", 1, "2027-03-30T09:00:00Z");
  /* A whole year: 2026 has 261 weekdays and 8 bank holidays, so 253
     working days from 31 Dec 2025 reach 31 Dec 2026; 2027 likewise. */
  wd(&cal, "2025-12-31T10:00:00Z", 253, "2026-12-31T10:00:00Z");
  wd(&cal, "2025-12-31T10:00:00Z", 506, "2027-12-31T10:00:00Z");
}
END_TEST

START_TEST(test_calendar_working_days_clock_change)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  /* Fri 23 Oct 2026 10:00 BST + 1 = Mon 26 Oct 10:00 GMT. */
  wd(&cal, "2026-10-23T10:00:00+01:00", 1, "2026-10-26T10:00:00Z");
  wd(&cal, "2026-10-23T09:00:00Z", 1, "2026-10-26T10:00:00Z");
  /* Fri 27 Mar 2026 10:00 GMT + 1 = Mon 30 Mar 10:00 BST. */
  wd(&cal, "2026-03-27T10:00:00Z", 1, "2026-03-30T09:00:00Z");
  /* From the weekend of the change, counting starts at Monday's opening
     in the new offset. */
  wd(&cal, "2026-10-24T12:00:00Z", 1, "2026-10-27T09:00:00Z");
  wd(&cal, "2026-03-28T12:00:00Z", 1, "2026-03-31T08:00:00Z");
  /* Fri 16:30 BST (15:30Z) is open; Mon 16:30 GMT is 16:30Z. */
  wd(&cal, "2026-10-23T15:30:00Z", 1, "2026-10-26T16:30:00Z");
}
END_TEST

/* ---- working hours ----------------------------------------------------- */

START_TEST(test_calendar_working_hours)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  /* Fri 15:00 + 4 working hours = Mon 11:00. */
  wh(&cal, "2026-01-16T15:00:00Z", 4 * HOUR, "2026-01-19T11:00:00Z");
  /* Running out exactly at closing ends at 17:00, not Monday 09:00. */
  wh(&cal, "2026-01-16T15:00:00Z", 2 * HOUR, "2026-01-16T17:00:00Z");
  wh(&cal, "2026-01-16T16:00:00Z", HOUR, "2026-01-16T17:00:00Z");
  wh(&cal, "2026-01-16T16:00:00Z", 61 * MIN, "2026-01-19T09:01:00Z");
  /* Before opening, after closing, at the weekend. */
  wh(&cal, "2026-01-19T08:00:00Z", HOUR, "2026-01-19T10:00:00Z");
  wh(&cal, "2026-01-16T17:30:00Z", 30 * MIN, "2026-01-19T09:30:00Z");
  wh(&cal, "2026-01-16T17:00:00Z", 30 * MIN, "2026-01-19T09:30:00Z");
  wh(&cal, "2026-01-17T10:00:00Z", 8 * HOUR, "2026-01-19T17:00:00Z");
  wh(&cal, "2026-01-17T10:00:00Z", 8 * HOUR + 1, "2026-01-20T09:00:00.001Z");
  /* A working week from Monday's opening ends at Friday's closing. */
  wh(&cal, "2026-01-19T09:00:00Z", 40 * HOUR, "2026-01-23T17:00:00Z");
  wh(&cal, "2026-01-19T09:00:00Z", 1, "2026-01-19T09:00:00.001Z");
  /* Christmas 2026: Thu 24 16:00 + 2 = Tue 29 10:00. */
  wh(&cal, "2026-12-24T16:00:00Z", 2 * HOUR, "2026-12-29T10:00:00Z");
  /* Across the October change: Fri 16:00 BST + 2 = Mon 10:00 GMT. */
  wh(&cal, "2026-10-23T15:00:00Z", 2 * HOUR, "2026-10-26T10:00:00Z");
  /* Summer time: 16:30Z is 17:30 BST, closed; Mon 10:00 BST. */
  wh(&cal, "2026-06-12T16:30:00Z", HOUR, "2026-06-15T09:00:00Z");
  wh(&cal, "2026-06-12T14:30:00Z", HOUR, "2026-06-12T15:30:00Z");
  /* All of 2026's working time from closing on 31 Dec 2025 ends at
     closing on 31 Dec 2026. */
  wh(&cal, "2025-12-31T17:00:00Z", 253 * 8 * HOUR, "2026-12-31T17:00:00Z");
}
END_TEST

START_TEST(test_calendar_elapsed)
{
  flow__calendar cal;
  flow__calendar_default(&cal);
  /* Elapsed time ignores the calendar entirely. */
  check_add(&cal, "2026-01-17T10:00:00Z", FLOW__DUR_ELAPSED, 90 * 1000,
            "2026-01-17T10:01:30Z");
  check_add(&cal, "2026-10-24T12:00:00Z", FLOW__DUR_ELAPSED, 48 * HOUR,
            "2026-10-26T12:00:00Z");
  check_add(&cal, "1969-12-31T23:00:00Z", FLOW__DUR_ELAPSED, 2 * HOUR,
            "1970-01-01T01:00:00Z");

  flow__duration dur = { FLOW__DUR_ELAPSED, HOUR };
  int64_t out = 42;
  ck_assert_int_eq(flow__calendar_add(&cal, INT64_MAX - 10, &dur, &out),
                   FLOW_EINVAL);
  dur.amount = -HOUR;
  ck_assert_int_eq(flow__calendar_add(&cal, INT64_MIN + 10, &dur, &out),
                   FLOW_EINVAL);
  ck_assert_int_eq(out, 42);
  dur.amount = 0;
  ck_assert_int_eq(flow__calendar_add(&cal, INT64_MAX, &dur, &out), 0);
  ck_assert_int_eq(out, INT64_MAX);
}
END_TEST

/* ---- other calendars -------------------------------------------------- */

START_TEST(test_calendar_custom)
{
  /* 08:00-18:00 at a fixed +01:00, Monday to Saturday, no bank holidays,
     Mon 19 Jan and Fri 25 Dec 2026 off. */
  int64_t extra[] = { D(2026, 1, 19), D(2026, 12, 25) };
  flow__calendar cal;
  flow__calendar_default(&cal);
  cal.open_minute = 8 * 60;
  cal.close_minute = 18 * 60;
  cal.weekdays = 0x7e;
  cal.std_offset_min = 60;
  cal.dst_offset_min = 60;
  cal.england_wales_holidays = 0;
  cal.extra_holidays = extra;
  cal.nextra = NELEM(extra);

  ck_assert_int_eq(flow__calendar_offset(&cal, T("2026-01-16T12:00:00Z")),
                   60);
  ck_assert_int_eq(flow__calendar_offset(&cal, T("2026-07-16T12:00:00Z")),
                   60);
  ck_assert(flow__calendar_is_working_day(&cal, D(2026, 1, 1)));
  ck_assert(flow__calendar_is_working_day(&cal, D(2026, 1, 17)));
  ck_assert(!flow__calendar_is_working_day(&cal, D(2026, 1, 18)));
  ck_assert(!flow__calendar_is_working_day(&cal, D(2026, 1, 19)));
  ck_assert(flow__calendar_is_working_day(&cal, D(2026, 1, 20)));
  ck_assert(!flow__calendar_is_working_day(&cal, D(2026, 12, 25)));
  ck_assert(flow__calendar_is_working_day(&cal, D(2026, 12, 28)));
  ck_assert(flow__calendar_is_working_day(&cal, D(2026, 4, 3)));

  /* Fri 17:30 is open; Saturday works; Sunday and Monday 19 do not. */
  wd(&cal, "2026-01-16T17:30:00+01:00", 1, "2026-01-17T17:30:00+01:00");
  wd(&cal, "2026-01-16T17:30:00+01:00", 2, "2026-01-20T17:30:00+01:00");
  wd(&cal, "2026-01-16T16:30:00Z", 2, "2026-01-20T16:30:00Z");
  /* 18:00 is closing: from Saturday's opening. */
  wd(&cal, "2026-01-16T18:00:00+01:00", 1, "2026-01-20T08:00:00+01:00");
  wd(&cal, "2026-01-16T07:59:00+01:00", 1, "2026-01-17T08:00:00+01:00");
  /* Christmas Day off but Boxing Day, a Saturday, works. */
  wd(&cal, "2026-12-24T12:00:00+01:00", 1, "2026-12-26T12:00:00+01:00");
  /* Sat 17:00 + 3 working hours: 1 on Saturday, 2 from Tuesday 08:00. */
  wh(&cal, "2026-01-17T17:00:00+01:00", 3 * HOUR,
     "2026-01-20T10:00:00+01:00");
  wh(&cal, "2026-01-16T07:30:00+01:00", HOUR, "2026-01-16T09:00:00+01:00");
  wh(&cal, "2026-01-16T08:00:00+01:00", 10 * HOUR,
     "2026-01-16T18:00:00+01:00");
  /* No summer time: the same UTC hour all year. */
  wd(&cal, "2026-10-23T10:00:00+01:00", 1, "2026-10-24T09:00:00Z");
}
END_TEST

START_TEST(test_calendar_gap_and_overlap)
{
  /* Opening at 01:30 every day puts it in the clock-change hour. */
  flow__calendar cal;
  flow__calendar_default(&cal);
  cal.open_minute = 90;
  cal.weekdays = 0x7f;
  cal.england_wales_holidays = 0;
  /* 01:30 on 29 March 2026 does not exist; it is read with the offset
     before the change: 01:30Z, which is 02:30 BST. */
  wd(&cal, "2026-03-28T01:30:00Z", 1, "2026-03-29T01:30:00Z");
  /* 01:30 on 25 October 2026 happens twice; the earlier is 01:30 BST. */
  wd(&cal, "2026-10-24T01:30:00+01:00", 1, "2026-10-25T00:30:00Z");
  /* The second 01:30 (GMT) is open and leads to Monday 01:30 GMT. */
  wd(&cal, "2026-10-25T01:30:00Z", 1, "2026-10-26T01:30:00Z");
}
END_TEST

START_TEST(test_calendar_invalid)
{
  flow__calendar cal;
  flow__duration dur = { FLOW__DUR_WORKING_DAYS, 1 };
  int64_t out = 42, from = T("2026-01-16T09:00:00Z");

  flow__calendar_default(&cal);
  cal.weekdays = 0;
  ck_assert_int_eq(flow__calendar_add(&cal, from, &dur, &out), FLOW_EINVAL);
  flow__calendar_default(&cal);
  cal.close_minute = cal.open_minute;
  ck_assert_int_eq(flow__calendar_add(&cal, from, &dur, &out), FLOW_EINVAL);
  flow__calendar_default(&cal);
  cal.close_minute = 1441;
  ck_assert_int_eq(flow__calendar_add(&cal, from, &dur, &out), FLOW_EINVAL);

  flow__calendar_default(&cal);
  dur.amount = -1;
  ck_assert_int_eq(flow__calendar_add(&cal, from, &dur, &out), FLOW_EINVAL);
  dur.amount = 36526;
  ck_assert_int_eq(flow__calendar_add(&cal, from, &dur, &out), FLOW_EINVAL);
  dur.amount = 1;
  ck_assert_int_eq(flow__calendar_add(&cal, INT64_MAX, &dur, &out),
                   FLOW_EINVAL);
  ck_assert_int_eq(flow__calendar_add(&cal, INT64_MIN, &dur, &out),
                   FLOW_EINVAL);
  dur.unit = FLOW__DUR_WORKING_HOURS;
  dur.amount = 36525 * DAY + 1;
  ck_assert_int_eq(flow__calendar_add(&cal, from, &dur, &out), FLOW_EINVAL);
  ck_assert_int_eq(flow__calendar_add(NULL, from, &dur, &out), FLOW_EINVAL);
  ck_assert_int_eq(flow__calendar_add(&cal, from, NULL, &out), FLOW_EINVAL);
  ck_assert_int_eq(out, 42);

  /* Zero leaves the time alone, even outside hours. */
  dur.amount = 0;
  ck_assert_int_eq(flow__calendar_add(&cal, T("2026-01-17T10:00:00Z"), &dur,
                                      &out),
                   0);
  ck_assert_int_eq(out, T("2026-01-17T10:00:00Z"));

  /* Mondays only, and every Monday for eleven years a holiday: the
     calendar has no working day to give, and says so. */
  static int64_t mondays[600];
  int64_t first = D(2026, 1, 19);
  for (size_t i = 0; i < NELEM(mondays); i++)
    mondays[i] = first + 7 * (int64_t)i;
  flow__calendar_default(&cal);
  cal.weekdays = 0x02;
  cal.extra_holidays = mondays;
  cal.nextra = NELEM(mondays);
  dur.unit = FLOW__DUR_WORKING_DAYS;
  dur.amount = 1;
  out = 42;
  ck_assert_int_eq(flow__calendar_add(&cal, from, &dur, &out), FLOW_EINVAL);
  dur.unit = FLOW__DUR_WORKING_HOURS;
  dur.amount = HOUR;
  ck_assert_int_eq(flow__calendar_add(&cal, from, &dur, &out), FLOW_EINVAL);
  ck_assert_int_eq(out, 42);
}
END_TEST

START_TEST(test_calendar_longest)
{
  /* The longest durations the parser allows finish, and agree with the
     rule that working days are the same time of day. */
  flow__calendar cal;
  flow__calendar_default(&cal);
  flow__duration dur = { FLOW__DUR_WORKING_DAYS, 36525 };
  int64_t out;
  ck_assert_int_eq(flow__calendar_add(&cal, T("2026-01-16T10:00:00Z"), &dur,
                                      &out),
                   0);
  ck_assert_int_gt(out, T("2166-01-01T00:00:00Z"));
  int64_t local = out + flow__calendar_offset(&cal, out) * MIN;
  ck_assert_int_eq((local % DAY + DAY) % DAY, 10 * HOUR);
  dur.unit = FLOW__DUR_WORKING_HOURS;
  dur.amount = 36525 * DAY;
  ck_assert_int_eq(flow__calendar_add(&cal, T("2026-01-16T10:00:00Z"), &dur,
                                      &out),
                   0);
  ck_assert_int_gt(out, T("2400-01-01T00:00:00Z"));
}
END_TEST

static Suite *
calendar_suite(void)
{
  Suite *s = suite_create("calendar");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_calendar_walked_days_match_the_rule);
  tcase_add_test(tc, test_calendar_long_walk_is_cheap);
  tcase_add_test(tc, test_calendar_year_steps_match_the_walk);
  tcase_add_test(tc, test_calendar_bank_holidays_2020);
  tcase_add_test(tc, test_calendar_bank_holidays_2022);
  tcase_add_test(tc, test_calendar_bank_holidays_2023);
  tcase_add_test(tc, test_calendar_bank_holidays_2024_to_2027);
  tcase_add_test(tc, test_calendar_bank_holiday_exceptions);
  tcase_add_test(tc, test_calendar_easter);
  tcase_add_test(tc, test_calendar_dst_boundaries);
  tcase_add_test(tc, test_calendar_working_days_contract);
  tcase_add_test(tc, test_calendar_working_days_holidays);
  tcase_add_test(tc, test_calendar_working_days_clock_change);
  tcase_add_test(tc, test_calendar_working_hours);
  tcase_add_test(tc, test_calendar_elapsed);
  tcase_add_test(tc, test_calendar_custom);
  tcase_add_test(tc, test_calendar_gap_and_overlap);
  tcase_add_test(tc, test_calendar_invalid);
  tcase_add_test(tc, test_calendar_longest);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(calendar_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
