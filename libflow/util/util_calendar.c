/*
 * Working time.  A calendar says which local dates are working days
 * (weekdays minus holidays), when the working day opens and closes, and how
 * local time relates to UTC (a standard offset and, optionally, a summer
 * offset on the European rule).  flow__calendar_add moves an instant
 * forward by an elapsed duration, by working days or by working hours,
 * following the contract in DESIGN.md ("Durations and working time").
 * The England & Wales bank holidays are computed by rule for any year, so
 * the engine needs no holiday table that goes stale.
 *
 * Rules decided here (they are part of the documented behaviour):
 *
 * - Summer time follows the EU rule for every year: from the last Sunday
 *   of March 01:00 UTC to the last Sunday of October 01:00 UTC.  The UK
 *   has used exactly this rule since 1996; earlier years (and the 1968-71
 *   British Standard Time experiment) are not reproduced.
 *
 * - Bank holidays are exact from 1978, the first year of the early May
 *   holiday.  Earlier years get the same rules, which is not history (the
 *   May holiday did not exist, New Year's Day was not a holiday in England
 *   before 1974), but keeps one rule for every date.
 *
 * - The one-off holidays are those of 1981-07-29 (royal wedding),
 *   1999-12-31, 2002-06-03, 2011-04-29, 2012-06-05, 2022-06-03, 2022-09-19
 *   and 2023-05-08.  The moved holidays are: early May on 8 May in 1995 (a
 *   Monday) and 2020 (a Friday); spring on 4 June 2002 (Tuesday), 4 June
 *   2012 (Monday) and 2 June 2022 (Thursday).  Future one-offs have to be
 *   added here, or by hosts through extra_holidays.
 *
 * - New Year's Day, Christmas Day and Boxing Day falling on a weekend give
 *   a substitute day on the next weekday not already a holiday.  That is
 *   the same as "New Year is the first weekday from 1 January; Christmas
 *   and Boxing Day are the first two weekdays from 25 December", which is
 *   how it is computed: 25 Dec on a Saturday gives Monday 27 and Tuesday
 *   28; on a Sunday, Monday 26 (Boxing Day) and Tuesday 27 (substitute).
 *
 * - A local time that does not exist (the hour skipped when clocks go
 *   forward) is read with the offset in force before the change, so it
 *   lands that far after the gap: 01:30 on the spring Sunday becomes
 *   01:30 UTC, which is 02:30 summer time.  A local time that exists twice
 *   (the hour repeated in autumn) is the earlier of the two instants.
 *   Neither happens with default hours: the change is at 01:00 UTC.
 *
 * - Working hours are counted on the local clock: a custom calendar whose
 *   hours span the clock change counts the hours its clock shows.
 *
 * - Adding zero working days or hours returns the start unchanged (the
 *   duration parser never produces zero).  A calendar with no working
 *   weekday, opening not before closing, or a run of more than ten years
 *   without a working day is refused with FLOW_EINVAL rather than looping;
 *   so is a working-hours sum that would end more than 1000 years later
 *   (only a calendar with minutes of work a day gets near that).
 *   Instants more than about 317,000 years from 1970 are refused by
 *   flow__calendar_add and have the standard offset.
 */
#include "util.h"

#include <limits.h>
#include <string.h>

#define MS_MINUTE INT64_C(60000)
#define MS_HOUR (60 * MS_MINUTE)
#define MS_DAY (24 * MS_HOUR)
/* Instants further than this from 1970 (about 317,000 years) are refused,
   so that local-time and 100-year sums below cannot overflow int64. */
#define MS_LIMIT (INT64_C(10000000000000000))
/* How many consecutive days without a working day mean the calendar has
   none to give. */
#define MAX_IDLE_DAYS 3660
/* The 100-year cap on durations (flow__duration_parse), in days. */
#define MAX_DURATION_DAYS 36525
/* How far a working-hours walk may go before the calendar is judged to
   have too little working time for the duration: 1000 years. */
#define MAX_WALK_DAYS 365250

void
flow__calendar_default(flow__calendar *cal)
{
  cal->open_minute = 9 * 60;
  cal->close_minute = 17 * 60;
  cal->weekdays = 0x3e; /* Monday to Friday */
  cal->std_offset_min = 0;
  cal->dst_offset_min = 60;
  cal->england_wales_holidays = 1;
  cal->extra_holidays = NULL;
  cal->nextra = 0;
}

/* 0 = Sunday.  1970-01-01 was a Thursday. */
static int
weekday(int64_t day)
{
  int64_t w = (day + 4) % 7;
  return (int)(w < 0 ? w + 7 : w);
}

static int64_t
floor_div(int64_t a, int64_t b)
{
  int64_t q = a / b;
  if ((a % b) != 0 && ((a < 0) != (b < 0)))
    q--;
  return q;
}

/* Day number of the last Sunday of month m (which has `last` days). */
static int64_t
last_sunday(int y, int m, int last)
{
  int64_t d = flow__days_from_civil(y, m, last);
  return d - weekday(d);
}

/* Day number of the first Monday of month m. */
static int64_t
first_monday(int y, int m)
{
  int64_t d = flow__days_from_civil(y, m, 1);
  return d + (8 - weekday(d)) % 7;
}

int
flow__calendar_offset(const flow__calendar *cal, int64_t ms)
{
  /* Past MS_LIMIT a year's change instants may not fit in int64. */
  if (cal->std_offset_min == cal->dst_offset_min || ms < -MS_LIMIT ||
      ms > MS_LIMIT)
    return cal->std_offset_min;
  int y, m, d;
  flow__civil_from_days(floor_div(ms, MS_DAY), &y, &m, &d);
  int64_t start = last_sunday(y, 3, 31) * MS_DAY + MS_HOUR;
  int64_t end = last_sunday(y, 10, 31) * MS_DAY + MS_HOUR;
  return ms >= start && ms < end ? cal->dst_offset_min : cal->std_offset_min;
}

/*
 * Easter Sunday in the Gregorian calendar, by the anonymous computus
 * published in Nature in 1876 (Meeus/Jones/Butcher): a is the year's place
 * in the 19-year Metonic cycle, the rest corrects the epact for century
 * leap-year rules and finds the Sunday after the paschal full moon.
 */
static int64_t
easter_sunday(int y)
{
  int a = y % 19;
  int b = y / 100, c = y % 100;
  int d = b / 4, e = b % 4;
  int f = (b + 8) / 25;
  int g = (b - f + 1) / 3;
  int h = (19 * a + b - d - g + 15) % 30;
  int i = c / 4, k = c % 4;
  int l = (32 + 2 * e + 2 * i - h - k) % 7;
  int m = (a + 11 * h + 22 * l) / 451;
  int month = (h + l - 7 * m + 114) / 31;
  int day = (h + l - 7 * m + 114) % 31 + 1;
  return flow__days_from_civil(y, month, day);
}

/* 1 if day is among the first n weekdays (Monday-Friday) counted from
   `from`. */
static int
among_first_weekdays(int64_t day, int64_t from, int n)
{
  for (int64_t t = from; n > 0; t++) {
    if (weekday(t) == 0 || weekday(t) == 6)
      continue;
    if (t == day)
      return 1;
    n--;
  }
  return 0;
}

static const struct {
  short y;
  unsigned char m, d;
} one_off[] = {
  { 1981, 7, 29 }, { 1999, 12, 31 }, { 2002, 6, 3 },  { 2011, 4, 29 },
  { 2012, 6, 5 },  { 2022, 6, 3 },   { 2022, 9, 19 }, { 2023, 5, 8 },
};

int
flow__bank_holiday_ew(int y, int m, int d)
{
  int64_t day = flow__days_from_civil(y, m, d);
  int wd = weekday(day);
  if (wd == 0 || wd == 6)
    return 0; /* every bank holiday, substitutes included, is a weekday */

  for (size_t i = 0; i < sizeof one_off / sizeof one_off[0]; i++)
    if (one_off[i].y == y && one_off[i].m == m && one_off[i].d == d)
      return 1;

  switch (m) {
  case 1:
    return d <= 3 &&
           among_first_weekdays(day, flow__days_from_civil(y, 1, 1), 1);
  case 3:
  case 4: {
    int64_t easter = easter_sunday(y);
    return day == easter - 2 || day == easter + 1;
  }
  case 5: {
    int early = (y == 1995 || y == 2020) ? d == 8 : day == first_monday(y, 5);
    if (early)
      return 1;
    if (y == 2002 || y == 2012 || y == 2022)
      return 0; /* the spring holiday moved into June (case 6) */
    return d >= 25 && wd == 1; /* the last Monday of May */
  }
  case 6:
    return (y == 2002 && d == 4) || (y == 2012 && d == 4) ||
           (y == 2022 && d == 2);
  case 8:
    return d >= 25 && wd == 1; /* the last Monday of August */
  case 12:
    return d >= 25 &&
           among_first_weekdays(day, flow__days_from_civil(y, 12, 25), 2);
  }
  return 0;
}

int
flow__calendar_is_working_day(const flow__calendar *cal, int64_t day)
{
  if (!(cal->weekdays & (1u << weekday(day))))
    return 0;
  if (cal->england_wales_holidays) {
    int y, m, d;
    flow__civil_from_days(day, &y, &m, &d);
    if (flow__bank_holiday_ew(y, m, d))
      return 0;
  }
  size_t lo = 0, hi = cal->extra_holidays ? cal->nextra : 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cal->extra_holidays[mid] == day)
      return 0;
    if (cal->extra_holidays[mid] < day)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 1;
}

/*
 * The walks below look at one day after another, up to a hundred years of
 * them for one deadline, and a deadline is computed for every timer a
 * transition sets.  Working out the bank holiday rules afresh for each day
 * (Easter included) made one 100-year walk cost milliseconds; a walker
 * finds a year's bank holidays once, by asking the rule about the few dates
 * where one can fall, and then answers each day with a mask and a short
 * list.  The rule (flow__bank_holiday_ew) stays the one definition.
 * Most walks are a few days long (a deadline of five working days), and
 * for those finding a whole year's holidays costs more than asking the
 * rule about each day, so a walker asks the rule directly for its first
 * WALK_DIRECT days and only then finds the year.
 */
#define WALK_DIRECT 32

typedef struct walker {
  const flow__calendar *cal;
  int year;              /* of hol[], or INT_MIN */
  int64_t ystart, yend;  /* that year's days, [ystart, yend) */
  int64_t hol[32];       /* its bank holidays */
  size_t nhol;
  unsigned asked;        /* days asked of the rule directly */
} walker;

static void
walker_init(walker *w, const flow__calendar *cal)
{
  w->cal = cal;
  w->year = INT_MIN;
  w->ystart = w->yend = 0;
  w->nhol = 0;
  w->asked = 0;
}

static void
walker_add_if(walker *w, int y, int m, int d)
{
  if (w->nhol == sizeof w->hol / sizeof w->hol[0] ||
      !flow__bank_holiday_ew(y, m, d))
    return;
  int64_t day = flow__days_from_civil(y, m, d);
  for (size_t i = 0; i < w->nhol; i++)
    if (w->hol[i] == day)
      return;
  w->hol[w->nhol++] = day;
}

/* Makes hol[] that of the year holding day. */
static void
walker_year(walker *w, int64_t day)
{
  if (day >= w->ystart && day < w->yend)
    return;
  int y, m, d;
  flow__civil_from_days(day, &y, &m, &d);
  w->year = y;
  w->ystart = flow__days_from_civil(y, 1, 1);
  w->yend = flow__days_from_civil(y + 1, 1, 1);
  w->nhol = 0;
  /* Every date a bank holiday of the rule can fall on: New Year and its
     substitutes, Good Friday and Easter Monday, the first week and last
     week of May, early June, the last week of August, Christmas and its
     substitutes, and the one-off days. */
  for (int dd = 1; dd <= 4; dd++)
    walker_add_if(w, y, 1, dd);
  int64_t easter = easter_sunday(y);
  int ey, em, ed;
  flow__civil_from_days(easter - 2, &ey, &em, &ed);
  walker_add_if(w, ey, em, ed);
  flow__civil_from_days(easter + 1, &ey, &em, &ed);
  walker_add_if(w, ey, em, ed);
  for (int dd = 1; dd <= 8; dd++)
    walker_add_if(w, y, 5, dd);
  for (int dd = 25; dd <= 31; dd++)
    walker_add_if(w, y, 5, dd);
  for (int dd = 1; dd <= 5; dd++)
    walker_add_if(w, y, 6, dd);
  for (int dd = 25; dd <= 31; dd++)
    walker_add_if(w, y, 8, dd);
  for (int dd = 25; dd <= 28; dd++)
    walker_add_if(w, y, 12, dd);
  for (size_t i = 0; i < sizeof one_off / sizeof one_off[0]; i++)
    if (one_off[i].y == y) /* a second entry for a day is harmless */
      walker_add_if(w, y, one_off[i].m, one_off[i].d);
}

/* 1 if day is one of the host's extra holidays. */
static int
extra_holiday(const flow__calendar *cal, int64_t day)
{
  size_t lo = 0, hi = cal->extra_holidays ? cal->nextra : 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cal->extra_holidays[mid] == day)
      return 1;
    if (cal->extra_holidays[mid] < day)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

/* flow__calendar_is_working_day, for a walk. */
static int
walker_working(walker *w, int64_t day)
{
  const flow__calendar *cal = w->cal;
  if (!(cal->weekdays & (1u << weekday(day))))
    return 0;
  if (cal->england_wales_holidays && w->asked < WALK_DIRECT &&
      !(day >= w->ystart && day < w->yend)) {
    int y, m, d;
    w->asked++;
    flow__civil_from_days(day, &y, &m, &d);
    if (flow__bank_holiday_ew(y, m, d))
      return 0;
  } else if (cal->england_wales_holidays) {
    walker_year(w, day);
    for (size_t i = 0; i < w->nhol; i++)
      if (w->hol[i] == day)
        return 0;
  }
  return !extra_holiday(cal, day);
}

/* The working days of the whole year that starts at day ystart (which
   must be a 1 January): weekdays of the mask, less the holidays on them.
   What a walk needs to step over a year at once. */
static int64_t
walker_year_count(walker *w, int64_t ystart)
{
  const flow__calendar *cal = w->cal;
  walker_year(w, ystart);
  int64_t days = w->yend - w->ystart, n = 0;
  int per_week = 0;
  for (int d = 0; d < 7; d++)
    per_week += (cal->weekdays >> d) & 1;
  n = (days / 7) * per_week;
  for (int64_t t = w->ystart + (days / 7) * 7; t < w->yend; t++)
    n += (cal->weekdays >> weekday(t)) & 1;
  if (cal->england_wales_holidays)
    for (size_t i = 0; i < w->nhol; i++)
      if ((cal->weekdays >> weekday(w->hol[i])) & 1)
        n--;
  for (size_t i = 0; cal->extra_holidays && i < cal->nextra; i++) {
    int64_t h = cal->extra_holidays[i];
    if (h < w->ystart || h >= w->yend || !((cal->weekdays >> weekday(h)) & 1))
      continue;
    int bank = 0;
    for (size_t k = 0; cal->england_wales_holidays && k < w->nhol; k++)
      bank |= w->hol[k] == h;
    if (!bank)
      n--;
  }
  return n;
}

int
flow__calendar_is_working_day_walked(const flow__calendar *cal, int64_t day)
{
  walker w;
  walker_init(&w, cal);
  w.asked = WALK_DIRECT; /* the year's list, not the rule, answers */
  return walker_working(&w, day);
}

static int
calendar_valid(const flow__calendar *cal)
{
  return (cal->weekdays & 0x7f) != 0 && cal->open_minute >= 0 &&
         cal->open_minute < cal->close_minute && cal->close_minute <= 1440 &&
         cal->std_offset_min > -1440 && cal->std_offset_min < 1440 &&
         cal->dst_offset_min > -1440 && cal->dst_offset_min < 1440 &&
         (cal->nextra == 0 || cal->extra_holidays != NULL);
}

/* The first working day after day, or FLOW_EINVAL if there is none in
   MAX_IDLE_DAYS. */
static int
next_working_day(walker *w, int64_t day, int64_t *out)
{
  for (int64_t t = day + 1; t <= day + MAX_IDLE_DAYS; t++) {
    if (walker_working(w, t)) {
      *out = t;
      return 0;
    }
  }
  return FLOW_EINVAL;
}

/*
 * Local wall-clock ms back to UTC.  A local time has a candidate instant
 * for each offset; a candidate is real if that offset is the one in force
 * at it.  Two real candidates are the repeated autumn hour (take the
 * earlier); none is the spring gap, where the offset before the change
 * (the smaller one) applies, which is the later candidate.
 */
int64_t
flow__calendar_local_to_utc(const flow__calendar *cal, int64_t local)
{
  int64_t u1 = local - cal->std_offset_min * MS_MINUTE;
  int64_t u2 = local - cal->dst_offset_min * MS_MINUTE;
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

static int
add_working_days(const flow__calendar *cal, int64_t from, int64_t n,
                 int64_t *out)
{
  int64_t local = from + flow__calendar_offset(cal, from) * MS_MINUTE;
  int64_t day = floor_div(local, MS_DAY);
  int64_t tod = local - day * MS_DAY;
  int64_t open = cal->open_minute * MS_MINUTE;
  int64_t close = cal->close_minute * MS_MINUTE;
  walker w;
  walker_init(&w, cal);
  int working = walker_working(&w, day);

  /* Outside hours the count starts from the next opening, which is today's
     if the day works and has not opened yet. */
  if (!(working && tod >= open && tod < close)) {
    if (!(working && tod < open) && next_working_day(&w, day, &day) != 0)
      return FLOW_EINVAL;
    tod = open;
  }
  for (int64_t i = 0; i < n; i++)
    if (next_working_day(&w, day, &day) != 0)
      return FLOW_EINVAL;
  *out = flow__calendar_local_to_utc(cal, day * MS_DAY + tod);
  return 0;
}

/*
 * Walks day by day, spending what each working day has left between the
 * current time and closing.  "<=" makes a count that runs out exactly at
 * closing end there, not at the next opening.
 */
static int
add_working_ms(const flow__calendar *cal, int64_t from, int64_t left,
               int64_t *out)
{
  int64_t local = from + flow__calendar_offset(cal, from) * MS_MINUTE;
  int64_t day = floor_div(local, MS_DAY);
  int64_t tod = local - day * MS_DAY;
  int64_t open = cal->open_minute * MS_MINUTE;
  int64_t close = cal->close_minute * MS_MINUTE;
  int idle = 0;
  walker w;
  walker_init(&w, cal);
  for (int64_t walked = 0; walked <= MAX_WALK_DAYS; walked++) {
    /* A whole year that the count goes past is stepped over at once. */
    if (tod == 0) {
      walker_year(&w, day);
      if (day == w.ystart) {
        int64_t days = w.yend - w.ystart;
        int64_t count = walker_year_count(&w, day);
        if (left > count * (close - open) && walked + days <= MAX_WALK_DAYS) {
          left -= count * (close - open);
          idle = count == 0 ? idle + (int)days : 0;
          if (idle > MAX_IDLE_DAYS)
            return FLOW_EINVAL;
          day = w.yend;
          walked += days - 1;
          continue;
        }
      }
    }
    if (walker_working(&w, day)) {
      idle = 0;
      if (tod < open)
        tod = open;
      if (tod < close) {
        if (left <= close - tod) {
          *out = flow__calendar_local_to_utc(cal, day * MS_DAY + tod + left);
          return 0;
        }
        left -= close - tod;
      }
    } else if (++idle > MAX_IDLE_DAYS) {
      return FLOW_EINVAL;
    }
    day++;
    tod = 0;
  }
  return FLOW_EINVAL;
}

int
flow__calendar_add(const flow__calendar *cal, int64_t from,
                   const flow__duration *dur, int64_t *out)
{
  if (cal == NULL || dur == NULL || out == NULL)
    return FLOW_EINVAL;
  int64_t a = dur->amount;
  switch (dur->unit) {
  case FLOW__DUR_ELAPSED:
    if ((a > 0 && from > INT64_MAX - a) || (a < 0 && from < INT64_MIN - a))
      return FLOW_EINVAL;
    *out = from + a;
    return 0;
  case FLOW__DUR_WORKING_DAYS:
  case FLOW__DUR_WORKING_HOURS:
    break;
  default:
    return FLOW_EINVAL;
  }
  /* The 100-year cap on durations keeps these walks (and the sums in
     them) bounded; amounts come from flow__duration_parse, but a caller
     may build one by hand. */
  if (a < 0 || a > MAX_DURATION_DAYS * MS_DAY ||
      (dur->unit == FLOW__DUR_WORKING_DAYS && a > MAX_DURATION_DAYS) ||
      from < -MS_LIMIT || from > MS_LIMIT || !calendar_valid(cal))
    return FLOW_EINVAL;
  if (a == 0) {
    *out = from;
    return 0;
  }
  if (dur->unit == FLOW__DUR_WORKING_DAYS)
    return add_working_days(cal, from, a, out);
  return add_working_ms(cal, from, a, out);
}

/* ---- stopping the clock ---------------------------------------------- */

int
flow__calendar_working_ms(const flow__calendar *cal, int64_t from, int64_t to,
                          int64_t *out)
{
  if (cal == NULL || out == NULL || !calendar_valid(cal) || from < -MS_LIMIT ||
      to > MS_LIMIT)
    return FLOW_EINVAL;
  *out = 0;
  if (to <= from)
    return 0;
  if (to - from > MAX_DURATION_DAYS * MS_DAY)
    return FLOW_EINVAL;
  /* Counted on the local clock, as add_working_ms spends it. */
  int64_t a = from + flow__calendar_offset(cal, from) * MS_MINUTE;
  int64_t b = to + flow__calendar_offset(cal, to) * MS_MINUTE;
  int64_t open = cal->open_minute * MS_MINUTE;
  int64_t close = cal->close_minute * MS_MINUTE;
  walker w;
  walker_init(&w, cal);
  int64_t sum = 0;
  for (int64_t day = floor_div(a, MS_DAY); day * MS_DAY < b; day++) {
    if (!walker_working(&w, day))
      continue;
    int64_t lo = day * MS_DAY + open, hi = day * MS_DAY + close;
    if (lo < a)
      lo = a;
    if (hi > b)
      hi = b;
    if (hi > lo)
      sum += hi - lo;
  }
  *out = sum;
  return 0;
}

int
flow__calendar_shift(const flow__calendar *cal, int64_t due, int64_t from,
                     int64_t to, flow__dur_unit unit, int64_t *out)
{
  if (cal == NULL || out == NULL)
    return FLOW_EINVAL;
  if (to <= from) {
    *out = due;
    return 0;
  }
  if (unit == FLOW__DUR_ELAPSED) {
    flow__duration d = { FLOW__DUR_ELAPSED, to - from };
    return flow__calendar_add(cal, due, &d, out);
  }
  int64_t ms;
  int rc = flow__calendar_working_ms(cal, from, to, &ms);
  if (rc != 0)
    return rc;
  if (ms == 0) {
    *out = due;
    return 0;
  }
  flow__duration d = { FLOW__DUR_WORKING_HOURS, ms };
  if ((rc = flow__calendar_add(cal, due, &d, out)) != 0)
    return rc;
  if (unit == FLOW__DUR_WORKING_DAYS) {
    /* A count of days ends at an opening time of day, never at a
       closing: the same working time is left either way. */
    int64_t local = *out + flow__calendar_offset(cal, *out) * MS_MINUTE;
    int64_t day = floor_div(local, MS_DAY);
    if (local - day * MS_DAY == cal->close_minute * MS_MINUTE) {
      walker w;
      walker_init(&w, cal);
      if (next_working_day(&w, day, &day) != 0)
        return FLOW_EINVAL;
      *out = flow__calendar_local_to_utc(cal, day * MS_DAY + cal->open_minute * MS_MINUTE);
    }
  }
  return 0;
}

/* ---- what a host's calendar options say ------------------------------ */

/* Zones whose rules the calendar can express: a standard offset and, for
   the European ones, summer time by the EU rule. */
static const struct zone {
  const char *name;
  int std, dst;
} zones[] = {
  { "Europe/London", 0, 60 },      { "Europe/Dublin", 0, 60 },
  { "Europe/Lisbon", 0, 60 },      { "Atlantic/Canary", 0, 60 },
  { "Atlantic/Madeira", 0, 60 },   { "Atlantic/Faroe", 0, 60 },
  { "Europe/Guernsey", 0, 60 },    { "Europe/Jersey", 0, 60 },
  { "Europe/Isle_of_Man", 0, 60 }, { "Europe/Paris", 60, 120 },
  { "Europe/Berlin", 60, 120 },    { "Europe/Madrid", 60, 120 },
  { "Europe/Rome", 60, 120 },      { "Europe/Amsterdam", 60, 120 },
  { "Europe/Brussels", 60, 120 },  { "Europe/Vienna", 60, 120 },
  { "Europe/Zurich", 60, 120 },    { "Europe/Stockholm", 60, 120 },
  { "Europe/Oslo", 60, 120 },      { "Europe/Copenhagen", 60, 120 },
  { "Europe/Warsaw", 60, 120 },    { "Europe/Prague", 60, 120 },
  { "Europe/Budapest", 60, 120 },  { "Europe/Luxembourg", 60, 120 },
  { "Europe/Helsinki", 120, 180 }, { "Europe/Athens", 120, 180 },
  { "Europe/Riga", 120, 180 },     { "Europe/Tallinn", 120, 180 },
  { "Europe/Vilnius", 120, 180 },  { "Europe/Sofia", 120, 180 },
  { "Europe/Bucharest", 120, 180 }, { "Europe/Kyiv", 120, 180 },
  { "UTC", 0, 0 },                 { "Etc/UTC", 0, 0 },
  { "GMT", 0, 0 },
};

int
flow__calendar_zone(const char *z, int *std, int *dst)
{
  for (size_t i = 0; i < sizeof zones / sizeof *zones; i++)
    if (strcmp(zones[i].name, z) == 0) {
      *std = zones[i].std;
      *dst = zones[i].dst;
      return 0;
    }
  /* A fixed offset: "+01:00", "-05:30". */
  if ((z[0] == '+' || z[0] == '-') && strlen(z) == 6 && z[3] == ':' &&
      z[1] >= '0' && z[1] <= '2' && z[2] >= '0' && z[2] <= '9' &&
      z[4] >= '0' && z[4] <= '5' && z[5] >= '0' && z[5] <= '9') {
    int m = ((z[1] - '0') * 10 + (z[2] - '0')) * 60 + (z[4] - '0') * 10 +
            (z[5] - '0');
    if (m >= 24 * 60)
      return FLOW_EINVAL;
    *std = *dst = z[0] == '-' ? -m : m;
    return 0;
  }
  return FLOW_EINVAL;
}

int
flow__clock_time_parse(const char *s, int *out)
{
  if (strlen(s) != 5 || s[2] != ':' || s[0] < '0' || s[0] > '2' ||
      s[1] < '0' || s[1] > '9' || s[3] < '0' || s[3] > '5' || s[4] < '0' ||
      s[4] > '9')
    return FLOW_EINVAL;
  int m = ((s[0] - '0') * 10 + (s[1] - '0')) * 60 + (s[3] - '0') * 10 +
          (s[4] - '0');
  if (m > 24 * 60)
    return FLOW_EINVAL;
  *out = m;
  return 0;
}
