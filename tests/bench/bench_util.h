/*
 * What the benchmarks share: a monotonic clock, a latency histogram that
 * costs the same few hundred kilobytes whatever N is (so it does not
 * inflate the resident memory it is there to report), the process's
 * resident memory from /proc/self/status, and a scratch directory for
 * database files that is removed afterwards.
 */
#ifndef FLOW_BENCH_UTIL_H
#define FLOW_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC. */
int64_t bench_now_ns(void);

/*
 * A log-linear histogram of nanosecond values: exact below 1024 ns, then
 * 512 buckets per power of two (0.2 % resolution).
 */
#define BENCH_HIST_BUCKETS 28672

typedef struct bench_hist {
  uint32_t count[BENCH_HIST_BUCKETS];
  uint64_t total;
  int64_t max;
} bench_hist;

void bench_hist_add(bench_hist *h, int64_t ns);

/* The value at quantile q (0..1) in nanoseconds; 0 when empty. */
int64_t bench_hist_quantile(const bench_hist *h, double q);

/* VmRSS and VmHWM of this process in kilobytes (0 when unknown). */
void bench_rss_kb(long *rss, long *hwm);
/* Bytes this process has written (write, pwrite, ...: wchar) and the
   number of such calls (syscw) so far, from /proc/self/io; 0 where it
   cannot be read. */
void bench_io(long long *bytes, long long *calls);

/*
 * The directory to put databases in: dir itself (created when missing) or,
 * when dir is NULL, a fresh /tmp/flow-bench-XXXXXX.  Returns 0 or -1 with
 * a message on stderr.  *made is 1 when the directory was created here and
 * should be removed by bench_dir_done.
 */
int bench_dir_init(char *out, size_t len, const char *dir, int *made);

/* Removes the directory when made, after its database files are gone. */
void bench_dir_done(const char *dir, int made);

/* Removes path and its -wal, -shm and -journal companions. */
void bench_db_remove(const char *path);

/*
 * Runs fn(ctx, out) in a forked child, so each measurement has its own
 * heap, VmHWM and SQLite cache, and copies the len bytes fn left in out
 * back to the parent.  Returns 0 when the child returned 0 and sent all of
 * out, else -1.
 */
int bench_in_child(int (*fn)(void *ctx, void *out), void *ctx, void *out,
                   size_t len);

#endif /* FLOW_BENCH_UTIL_H */
