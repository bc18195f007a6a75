/*
 * Internal utilities shared by every subsystem: the engine allocator,
 * error state, a growable string buffer, time and duration parsing, the
 * working-day calendar and SHA-256.  Nothing here knows about cases, Lua or
 * SQLite.  Every name is flow__* and hidden from the shared library.
 */
#ifndef LIBFLOW_UTIL_UTIL_H
#define LIBFLOW_UTIL_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "flow.h"
#include "util/util_limits.h"

#if defined(__GNUC__)
#define FLOW__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FLOW__PRINTF(f, a)
#endif

/* ---- memory (util_alloc.c) ------------------------------------------- */

/* The host's allocator, in the shape of lua_Alloc. */
typedef struct flow__allocator {
  flow_alloc_fn fn;
  void *payload;
} flow__allocator;

/* The default allocator: realloc/free. */
void *flow__default_alloc(void *payload, void *ptr, size_t osize,
                          size_t nsize);

/*
 * Sized allocations for the library's own structures.  A small header keeps
 * the size, so flow__free needs no size.  All accept/return NULL sensibly:
 * flow__free(a, NULL) is a no-op.
 */
void *flow__malloc(const flow__allocator *a, size_t n);
void *flow__calloc(const flow__allocator *a, size_t n, size_t size);
void *flow__realloc(const flow__allocator *a, void *p, size_t n);
void flow__free(const flow__allocator *a, void *p);
char *flow__strdup(const flow__allocator *a, const char *s);
char *flow__strndup(const flow__allocator *a, const char *s, size_t n);

/*
 * Owned results for the host: a copy of s (len bytes plus a NUL) whose
 * header remembers the allocator, so the public flow_free(p) can release it
 * without an engine.  Returns NULL on allocation failure.
 */
char *flow__owned_strndup(const flow__allocator *a, const char *s,
                          size_t len);

/* ---- errors (util_err.c) --------------------------------------------- */

#define FLOW__ERRMSG_MAX 4096

typedef struct flow__err {
  int code;
  char msg[FLOW__ERRMSG_MAX];
} flow__err;

/* Records code and the formatted message; returns code.  Truncates. */
int flow__err_set(flow__err *err, int code, const char *fmt, ...)
    FLOW__PRINTF(3, 4);
int flow__err_setv(flow__err *err, int code, const char *fmt, va_list ap);
void flow__err_clear(flow__err *err);
/* The refusal of a service script of len bytes, more than FLOW__MAX_SCRIPT:
   FLOW_ESCRIPT "CHUNK:1: the script is N KiB; ...".  Returns the code. */
int flow__err_script_size(flow__err *err, const char *chunk, size_t len);

/* ---- text (util_text.c) --------------------------------------------- */

/* The length (1-4) of the well-formed UTF-8 character that starts at p and
   ends before e, or 0 if none does (an overlong form, a surrogate, a
   sequence cut short). */
size_t flow__utf8_char(const unsigned char *p, const unsigned char *e);
/* 1 if s[0..len) is well-formed UTF-8. */
int flow__utf8_valid(const char *s, size_t len);
/* qsort() with its arguments, but an insertion sort for a few elements
   of up to 64 bytes (an object's members, a sorted input): glibc's merge
   sort costs several times as much on the six or so members of a case's
   data, and an insertion sort of input already in order is one pass. */
void flow__sort(void *base, size_t n, size_t size,
                int (*cmp)(const void *, const void *));
/* Replaces bytes of s that are not valid UTF-8 with '?', in place. */
void flow__utf8_fix(char *s);

/* 1 if s[0..len) is a name of a service, state, event, field or part of
   an action name: a lower-case letter (or _ when underscore_first) then
   a-z, 0-9 and _.  Length limits (FLOW__MAX_NAME) are the caller's. */
int flow__name_ok(const char *s, size_t len, int underscore_first);

/*
 * Names joined into a fixed buffer for a message ("refuse, recycling,
 * garden"): what does not fit is cut off at the end, never past the
 * buffer.  A bare struct on the stack; nothing to free.
 */
typedef struct flow__join {
  char *buf;
  size_t len, n;
  int count; /* items added */
} flow__join;
void flow__join_init(flow__join *j, char *buf, size_t len);
/* Appends sep (not before the first item) and s (NULL: "?"). */
void flow__join_add(flow__join *j, const char *sep, const char *s);
/* Appends s as it is. */
void flow__join_text(flow__join *j, const char *s);
/* The word of known (NULL-terminated) within 2 edits of word, or NULL:
   what "did you mean" suggests. */
const char *flow__closest_word(const char *word, const char *const *known);

/* ---- string buffer (util_buf.c) -------------------------------------- */

/*
 * A growable NUL-terminated buffer.  After an allocation failure `oom` is
 * set and further appends are ignored, so a sequence of appends needs one
 * check at the end.
 */
typedef struct flow__buf {
  const flow__allocator *a;
  char *p;
  size_t len, cap;
  int oom;
} flow__buf;

void flow__buf_init(flow__buf *b, const flow__allocator *a);
void flow__buf_free(flow__buf *b);
void flow__buf_add(flow__buf *b, const char *s, size_t n);
void flow__buf_adds(flow__buf *b, const char *s);
/* One character; inline because printers call it for every character. */
static inline void
flow__buf_addc(flow__buf *b, char c)
{
  if (!b->oom && b->len + 2 <= b->cap) { /* room for c and the NUL */
    b->p[b->len++] = c;
    b->p[b->len] = 0;
    return;
  }
  flow__buf_add(b, &c, 1);
}
void flow__buf_addf(flow__buf *b, const char *fmt, ...) FLOW__PRINTF(2, 3);
/* Appends v in decimal, without going through printf. */
void flow__buf_addi64(flow__buf *b, int64_t v);
/* The contents as a NUL-terminated string ("" when empty, never NULL
   unless oom). */
const char *flow__buf_str(flow__buf *b);

/* ---- time (util_time.c) ---------------------------------------------- */

/* A time that is not set (a case with no due date). */
#define FLOW__NO_TIME INT64_MIN

/*
 * Times are int64 milliseconds since the Unix epoch, UTC.  Parsing accepts
 * "YYYY-MM-DDTHH:MM[:SS[.fff]](Z|+HH:MM|-HH:MM)" (also lower-case t/z and a
 * space for T); it rejects a missing offset, out-of-range parts (month 13,
 * 30 February, hour 24) and trailing text.  Returns 0 or FLOW_EINVAL.
 */
int flow__time_parse(const char *s, int64_t *out);
/* Writes "YYYY-MM-DDTHH:MM:SSZ" or with ".mmm" when ms % 1000 != 0; buf
   must hold 32 bytes.  Returns the length. */
int flow__time_format(char *buf, size_t len, int64_t ms);
/* A calendar date "YYYY-MM-DD" that exists; 0 if valid, FLOW_EINVAL. */
int flow__date_parse(const char *s, int *y, int *m, int *d);
/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
int64_t flow__days_from_civil(int y, int m, int d);
void flow__civil_from_days(int64_t days, int *y, int *m, int *d);
/* Real wall-clock time in ms. */
int64_t flow__time_real(void);

/* ---- durations and calendars (util_duration.c, util_calendar.c) ------- */

typedef enum flow__dur_unit {
  FLOW__DUR_ELAPSED = 0,      /* amount is milliseconds */
  FLOW__DUR_WORKING_DAYS = 1, /* amount is a count of working days */
  FLOW__DUR_WORKING_HOURS = 2 /* amount is working milliseconds */
} flow__dur_unit;

typedef struct flow__duration {
  flow__dur_unit unit;
  int64_t amount;
} flow__duration;

/*
 * Parses "90s", "15m", "48h", "3d", "2w", "1 working day", "2 working days",
 * "4 working hours", "30 working minutes" (spaces optional between number
 * and unit; the number is a positive integer up to 100 years of ms).
 * On error returns FLOW_EINVAL and, if err is not NULL, a message saying
 * what forms are accepted.
 */
int flow__duration_parse(const char *s, flow__duration *out, flow__err *err);

/*
 * A working-time calendar: working weekdays, opening and closing time of
 * day, a time zone with European daylight-saving rules, and holidays.
 * The default is Europe/London, 09:00-17:00, Monday-Friday, the bank
 * holidays of England and Wales computed by rule for any year.
 */
typedef struct flow__calendar {
  int open_minute;   /* minutes after local midnight, default 540 (09:00) */
  int close_minute;  /* default 1020 (17:00) */
  unsigned weekdays; /* bit d set: weekday d works (0 = Sunday); 0x3e */
  int std_offset_min; /* UTC offset of standard time in minutes: 0 */
  int dst_offset_min; /* UTC offset in summer time: 60; equal = no DST */
  int england_wales_holidays; /* 1: add the England & Wales bank holidays */
  int64_t *extra_holidays;    /* days since epoch, sorted; extra days off */
  size_t nextra;
} flow__calendar;

void flow__calendar_default(flow__calendar *cal);
/* The offsets of a zone name a calendar can express (Europe/London, UTC,
   the EU zones, a fixed "+01:00"), in minutes.  FLOW_EINVAL. */
int flow__calendar_zone(const char *zone, int *std_min, int *dst_min);
/* "HH:MM" (00:00 to 24:00) as minutes after midnight.  FLOW_EINVAL. */
int flow__clock_time_parse(const char *s, int *minutes);
/* Local offset from UTC in minutes at instant ms. */
int flow__calendar_offset(const flow__calendar *cal, int64_t ms);
/* The instant of a local wall-clock time (ms since the epoch as if the
   zone were UTC): in the autumn's repeated hour the earlier, in the
   spring's gap the time as the offset before the change reads it. */
int64_t flow__calendar_local_to_utc(const flow__calendar *cal, int64_t local);
/* 1 if the local date (days since epoch) is a working day. */
int flow__calendar_is_working_day(const flow__calendar *cal, int64_t day);
/* The same, as the walks of flow__calendar_add answer it (a year's bank
   holidays found once); for tests, which hold the two equal. */
int flow__calendar_is_working_day_walked(const flow__calendar *cal,
                                         int64_t day);
/* 1 if y-m-d is an England & Wales bank holiday (by rule). */
int flow__bank_holiday_ew(int y, int m, int d);
/*
 * from + duration on the calendar, following DESIGN.md's rules for working
 * days and hours.  Returns 0 and *out, or FLOW_EINVAL on overflow.
 */
int flow__calendar_add(const flow__calendar *cal, int64_t from,
                       const flow__duration *dur, int64_t *out);
/* The working time between from and to (ms inside working hours, on the
   local clock); 0 when to <= from.  FLOW_EINVAL past 100 years. */
int flow__calendar_working_ms(const flow__calendar *cal, int64_t from,
                              int64_t to, int64_t *out);
/*
 * Where a due time moves when the clock stopped from `from` to `to`, for a
 * service level counted in unit (docs/time.md, "Stopping the clock"):
 * elapsed time moves it by the time stopped; working days and hours by
 * the working time stopped, spent from due on; working days then never
 * end at a closing time but at the next opening.  FLOW_EINVAL.
 */
int flow__calendar_shift(const flow__calendar *cal, int64_t due, int64_t from,
                         int64_t to, flow__dur_unit unit, int64_t *out);

/* ---- hashing (util_sha256.c) ------------------------------------------ */

/* SHA-256 of data as 64 lower-case hex digits plus NUL. */
void flow__sha256_hex(const void *data, size_t len, char out[65]);

#endif /* LIBFLOW_UTIL_UTIL_H */
