/*
 * A preloadable shim that moves the real clock: with
 *
 *   LD_PRELOAD=libflow_clock_shift.so FLOW_CLOCK_SHIFT_DAYS=10957 prog
 *
 * every reading of the wall clock that prog (and the libraries it loads)
 * makes through clock_gettime(), gettimeofday(), time() or timespec_get()
 * is FLOW_CLOCK_SHIFT_DAYS days later than the truth.  Monotonic and CPU
 * clocks are left alone, so budgets and libuv's timers behave as usual.
 *
 * It exists so that scripts/test can run the suite "years from now"
 * without faketime: a test or a docs example that depends on the real
 * date, rather than on a fixed engine clock, fails here today instead of
 * on some morning next year.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static int64_t
shift_seconds(void)
{
  static int64_t shift = -1;
  if (shift < 0) {
    const char *s = getenv("FLOW_CLOCK_SHIFT_DAYS");
    long long days = s != NULL ? strtoll(s, NULL, 10) : 0;
    shift = days > 0 ? (int64_t)days * 86400 : 0;
  }
  return shift;
}

static int
real_clock_gettime(clockid_t id, struct timespec *ts)
{
  static clock_gettime_fn real;
  if (real == NULL)
    real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
  return real(id, ts);
}

static int
is_wall_clock(clockid_t id)
{
  return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE
#ifdef CLOCK_TAI
         || id == CLOCK_TAI
#endif
      ;
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
  int rc = real_clock_gettime(id, ts);
  if (rc == 0 && is_wall_clock(id))
    ts->tv_sec += (time_t)shift_seconds();
  return rc;
}

int
gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
  struct timespec ts;
  (void)tz;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return -1;
  /* glibc declares tv nonnull; callers that pass NULL get what they
     would get from glibc itself. */
  tv->tv_sec = ts.tv_sec;
  tv->tv_usec = (suseconds_t)(ts.tv_nsec / 1000);
  return 0;
}

time_t
time(time_t *out)
{
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return (time_t)-1;
  if (out != NULL)
    *out = ts.tv_sec;
  return ts.tv_sec;
}

int
timespec_get(struct timespec *ts, int base)
{
  if (base != TIME_UTC || clock_gettime(CLOCK_REALTIME, ts) != 0)
    return 0;
  return base;
}
