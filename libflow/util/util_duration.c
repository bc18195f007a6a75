/*
 * Duration strings as service scripts write them: "90s", "15m", "48h",
 * "3d", "2w" and their spelled-out forms ("15 minutes", "1 day") are
 * elapsed time; "N working days", "N working hours" and "N working
 * minutes" are counted on a calendar later (util_calendar.c).  The parser
 * only classifies and scales; it accepts lower-case English and nothing
 * looser, so a typo is refused with a message listing the forms that work
 * instead of silently meaning something else.
 */
#include "util.h"

#include <string.h>

#define MS_SECOND INT64_C(1000)
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR (60 * MS_MINUTE)
#define MS_DAY (24 * MS_HOUR)
#define MS_WEEK (7 * MS_DAY)
/* 100 Julian years of 365.25 days: the cap on any duration. */
#define MS_MAX_DURATION (36525 * MS_DAY)

typedef struct unit_word {
  const char *word;
  flow__dur_unit unit;
  int64_t scale;
} unit_word;

/* Singular and plural are both accepted whatever the number: "1 days" is
   a slip nobody should have to fix. */
static const unit_word elapsed_units[] = {
  { "s", FLOW__DUR_ELAPSED, MS_SECOND },
  { "second", FLOW__DUR_ELAPSED, MS_SECOND },
  { "seconds", FLOW__DUR_ELAPSED, MS_SECOND },
  { "m", FLOW__DUR_ELAPSED, MS_MINUTE },
  { "minute", FLOW__DUR_ELAPSED, MS_MINUTE },
  { "minutes", FLOW__DUR_ELAPSED, MS_MINUTE },
  { "h", FLOW__DUR_ELAPSED, MS_HOUR },
  { "hour", FLOW__DUR_ELAPSED, MS_HOUR },
  { "hours", FLOW__DUR_ELAPSED, MS_HOUR },
  { "d", FLOW__DUR_ELAPSED, MS_DAY },
  { "day", FLOW__DUR_ELAPSED, MS_DAY },
  { "days", FLOW__DUR_ELAPSED, MS_DAY },
  { "w", FLOW__DUR_ELAPSED, MS_WEEK },
  { "week", FLOW__DUR_ELAPSED, MS_WEEK },
  { "weeks", FLOW__DUR_ELAPSED, MS_WEEK },
};

/*
 * After "working".  A working day's amount is a count, but the 100-year
 * cap is applied to its nominal length (N * 24 h) so that no unit can ask
 * the calendar to walk further than any other.
 */
static const unit_word working_units[] = {
  { "day", FLOW__DUR_WORKING_DAYS, MS_DAY },
  { "days", FLOW__DUR_WORKING_DAYS, MS_DAY },
  { "hour", FLOW__DUR_WORKING_HOURS, MS_HOUR },
  { "hours", FLOW__DUR_WORKING_HOURS, MS_HOUR },
  { "minute", FLOW__DUR_WORKING_HOURS, MS_MINUTE },
  { "minutes", FLOW__DUR_WORKING_HOURS, MS_MINUTE },
};

static int
is_space(char c)
{
  return c == ' ' || c == '\t';
}

/* The word [s, s + n) in table, or NULL. */
static const unit_word *
find_unit(const unit_word *table, size_t count, const char *s, size_t n)
{
  for (size_t i = 0; i < count; i++)
    if (strlen(table[i].word) == n && memcmp(table[i].word, s, n) == 0)
      return &table[i];
  return NULL;
}

static int
bad(flow__err *err, const char *s, const char *why)
{
  return flow__err_set(err, FLOW_EINVAL, "bad duration '%.200s': %s",
                       s ? s : "", why);
}

static const char forms[] =
    "use a number and a unit, like \"90s\", \"15m\", \"48h\", \"3d\", "
    "\"2w\", \"2 working days\" or \"4 working hours\"";

int
flow__duration_parse(const char *s, flow__duration *out, flow__err *err)
{
  if (s == NULL || out == NULL)
    return bad(err, s, forms);
  const char *p = s;
  while (is_space(*p))
    p++;

  /* The number.  Stop accumulating once past the cap so a long run of
     digits cannot overflow; it is refused below either way. */
  int64_t n = 0;
  int ndigits = 0, too_big = 0;
  while (*p >= '0' && *p <= '9') {
    if (n > MS_MAX_DURATION)
      too_big = 1;
    else
      n = n * 10 + (*p - '0');
    ndigits++;
    p++;
  }
  if (ndigits == 0)
    return bad(err, s, forms);
  while (is_space(*p))
    p++;

  /* The unit runs to the end, less trailing spaces. */
  const char *end = p + strlen(p);
  while (end > p && is_space(end[-1]))
    end--;
  const unit_word *u = NULL;
  static const char working[] = "working";
  size_t wlen = sizeof working - 1;
  if ((size_t)(end - p) > wlen && memcmp(p, working, wlen) == 0 &&
      is_space(p[wlen])) {
    const char *q = p + wlen;
    while (is_space(*q))
      q++;
    u = find_unit(working_units,
                  sizeof working_units / sizeof working_units[0], q,
                  (size_t)(end - q));
  } else {
    u = find_unit(elapsed_units,
                  sizeof elapsed_units / sizeof elapsed_units[0], p,
                  (size_t)(end - p));
  }
  if (u == NULL)
    return bad(err, s, forms);

  if (n == 0 && !too_big)
    return bad(err, s, "a duration must be at least 1");
  if (too_big || n > MS_MAX_DURATION / u->scale)
    return bad(err, s, "a duration can be at most 100 years");

  out->unit = u->unit;
  out->amount = u->unit == FLOW__DUR_WORKING_DAYS ? n : n * u->scale;
  return 0;
}
