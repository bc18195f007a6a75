/*
 * Instants and calendar dates.  The engine keeps every time as int64
 * milliseconds since 1970-01-01T00:00:00Z; this file turns ISO 8601 text
 * with an explicit offset into that number and back, converts between day
 * numbers and proleptic Gregorian dates, and reads the real clock.  The
 * parser is strict on purpose: a timestamp without an offset means
 * different instants on different hosts, so it is refused rather than
 * guessed.  Nothing here allocates.
 */
#include "util.h"

#include <stdio.h>
#include <time.h>

#define MS_PER_DAY INT64_C(86400000)

/* Floor division and the matching non-negative remainder: times before
   1970 must land on the previous day, not round toward zero. */
static int64_t
floor_div(int64_t a, int64_t b)
{
  int64_t q = a / b;
  if ((a % b) != 0 && ((a < 0) != (b < 0)))
    q--;
  return q;
}

static int
is_leap(int y)
{
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int y, int m)
{
  static const unsigned char mdays[12] = { 31, 28, 31, 30, 31, 30,
                                           31, 31, 30, 31, 30, 31 };
  if (m == 2 && is_leap(y))
    return 29;
  return mdays[m - 1];
}

/*
 * The day count works in "eras" of 400 years (146097 days), which repeat
 * exactly in the Gregorian calendar, with years that start on 1 March so
 * the leap day falls at the end of a year.  This is the well-known civil
 * day algorithm (H. Hinnant's derivation), written out here for int64.
 */
int64_t
flow__days_from_civil(int y, int m, int d)
{
  int64_t yy = (int64_t)y - (m <= 2);
  int64_t era = floor_div(yy, 400);
  int64_t yoe = yy - era * 400;                        /* [0, 399] */
  int64_t mp = (m + 9) % 12;                           /* March = 0 */
  int64_t doy = (153 * mp + 2) / 5 + d - 1;            /* [0, 365] */
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; /* [0, 146096] */
  return era * 146097 + doe - 719468;
}

void
flow__civil_from_days(int64_t days, int *y, int *m, int *d)
{
  int64_t z = days + 719468;
  int64_t era = floor_div(z, 146097);
  int64_t doe = z - era * 146097;                        /* [0, 146096] */
  /* Year of era: remove the leap days before doe, then divide. */
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100); /* [0, 365] */
  int64_t mp = (5 * doy + 2) / 153;                      /* [0, 11] */
  int64_t dd = doy - (153 * mp + 2) / 5 + 1;
  int64_t mm = mp < 10 ? mp + 3 : mp - 9;
  *y = (int)(yoe + era * 400 + (mm <= 2));
  *m = (int)mm;
  *d = (int)dd;
}

/* Reads exactly n decimal digits; returns the value or -1. */
static int
digits(const char **sp, int n)
{
  const char *s = *sp;
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  *sp = s + n;
  return v;
}

/* "YYYY-MM-DD" at *sp, advancing past it; years 0001..9999 only. */
static int
parse_date_part(const char **sp, int *y, int *m, int *d)
{
  const char *s = *sp;
  int yy = digits(&s, 4);
  if (yy < 1 || *s++ != '-')
    return FLOW_EINVAL;
  int mm = digits(&s, 2);
  if (mm < 1 || mm > 12 || *s++ != '-')
    return FLOW_EINVAL;
  int dd = digits(&s, 2);
  if (dd < 1 || dd > days_in_month(yy, mm))
    return FLOW_EINVAL;
  *y = yy;
  *m = mm;
  *d = dd;
  *sp = s;
  return 0;
}

int
flow__date_parse(const char *s, int *y, int *m, int *d)
{
  int yy, mm, dd;
  if (s == NULL || parse_date_part(&s, &yy, &mm, &dd) != 0 || *s != '\0')
    return FLOW_EINVAL;
  *y = yy;
  *m = mm;
  *d = dd;
  return 0;
}

/*
 * A leap second (":60") is refused: the engine's clock, like POSIX time,
 * has no room for it, and accepting it would make two texts name one
 * instant.  Digits beyond the millisecond are truncated, never rounded, so
 * a parsed time is never later than the text says.
 */
int
flow__time_parse(const char *s, int64_t *out)
{
  int y, mo, d, h, mi, sec = 0, ms = 0;
  if (s == NULL || out == NULL)
    return FLOW_EINVAL;
  if (parse_date_part(&s, &y, &mo, &d) != 0)
    return FLOW_EINVAL;
  if (*s != 'T' && *s != 't' && *s != ' ')
    return FLOW_EINVAL;
  s++;
  h = digits(&s, 2);
  if (h < 0 || h > 23 || *s++ != ':')
    return FLOW_EINVAL;
  mi = digits(&s, 2);
  if (mi < 0 || mi > 59)
    return FLOW_EINVAL;
  if (*s == ':') {
    s++;
    sec = digits(&s, 2);
    if (sec < 0 || sec > 59)
      return FLOW_EINVAL;
    if (*s == '.') {
      int n = 0;
      s++;
      while (*s >= '0' && *s <= '9') {
        if (++n > 9)
          return FLOW_EINVAL;
        if (n <= 3)
          ms = ms * 10 + (*s - '0');
        s++;
      }
      if (n == 0)
        return FLOW_EINVAL;
      for (; n < 3; n++)
        ms *= 10;
    }
  }

  int offset_min;
  if (*s == 'Z' || *s == 'z') {
    offset_min = 0;
    s++;
  } else if (*s == '+' || *s == '-') {
    int sign = *s++ == '-' ? -1 : 1;
    int oh = digits(&s, 2);
    if (oh < 0 || oh > 23)
      return FLOW_EINVAL;
    if (*s == ':')
      s++;
    int om = digits(&s, 2);
    if (om < 0 || om > 59)
      return FLOW_EINVAL;
    offset_min = sign * (oh * 60 + om);
  } else {
    return FLOW_EINVAL;
  }
  if (*s != '\0')
    return FLOW_EINVAL;

  int64_t day = flow__days_from_civil(y, mo, d);
  int64_t local = day * MS_PER_DAY +
                  ((int64_t)h * 3600 + mi * 60 + sec) * 1000 + ms;
  *out = local - (int64_t)offset_min * 60000;
  return 0;
}

/*
 * Every int64 fits: the widest year is "-292277026", so the longest text,
 * "-292277026-12-31T23:59:59.999Z", is 30 bytes plus the NUL.
 */
int
flow__time_format(char *buf, size_t len, int64_t ms)
{
  if (buf == NULL || len < 32)
    return FLOW_EINVAL;
  /* Not ms - day * MS_PER_DAY: that overflows near INT64_MIN. */
  int64_t day = ms / MS_PER_DAY;
  int64_t rem = ms % MS_PER_DAY;
  if (rem < 0) {
    rem += MS_PER_DAY;
    day--;
  }
  int y, m, d;
  flow__civil_from_days(day, &y, &m, &d);
  int secs = (int)(rem / 1000), frac = (int)(rem % 1000);
  int h = secs / 3600, mi = secs / 60 % 60, s = secs % 60;
  /* By hand, not snprintf: this runs several times per transition and
     snprintf costs thirty times as much.  ISO 8601 writes a negative year
     as a sign and at least four digits. */
  char *p = buf;
  long long ay = y;
  if (ay < 0) {
    *p++ = '-';
    ay = -ay;
  }
  char yd[24];
  int ny = 0;
  do {
    yd[ny++] = (char)('0' + ay % 10);
    ay /= 10;
  } while (ay > 0);
  while (ny < 4)
    yd[ny++] = '0';
  while (ny > 0)
    *p++ = yd[--ny];
  const int parts[5] = { m, d, h, mi, s };
  const char seps[5] = { '-', '-', 'T', ':', ':' };
  for (int i = 0; i < 5; i++) {
    *p++ = seps[i];
    *p++ = (char)('0' + parts[i] / 10);
    *p++ = (char)('0' + parts[i] % 10);
  }
  if (frac != 0) {
    *p++ = '.';
    *p++ = (char)('0' + frac / 100);
    *p++ = (char)('0' + frac / 10 % 10);
    *p++ = (char)('0' + frac % 10);
  }
  *p++ = 'Z';
  *p = 0;
  int n = (int)(p - buf);
  return n;
}

int
flow_time_parse(int64_t *out, const char *text)
{
  return flow__time_parse(text, out);
}

int
flow_time_format(char *buf, size_t len, int64_t ms)
{
  int n = flow__time_format(buf, len, ms);
  return n < 0 ? FLOW_EINVAL : 0;
}

/* timespec_get is C11 itself, so no POSIX feature macro is needed. */
int64_t
flow__time_real(void)
{
  struct timespec ts;
  if (timespec_get(&ts, TIME_UTC) != TIME_UTC)
    return 0;
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
