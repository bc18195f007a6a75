/*
 * Helpers shared by bench_bins and bench_scale: timing, a fixed-size
 * latency histogram, resident memory and scratch directories.  See
 * bench_util.h for what each promises.
 */
#define _POSIX_C_SOURCE 200809L

#include "bench_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t
bench_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Bucket of v: v itself below 1024, else 512 per power of two. */
static size_t
hist_index(uint64_t v)
{
  if (v < 1024)
    return (size_t)v;
  int e = 63 - __builtin_clzll(v); /* >= 10 */
  int shift = e - 9;               /* v >> shift is in [512, 1023] */
  return 1024 + (size_t)(shift - 1) * 512 + (size_t)((v >> shift) - 512);
}

/* The smallest value that falls in bucket i. */
static int64_t
hist_value(size_t i)
{
  if (i < 1024)
    return (int64_t)i;
  size_t shift = (i - 1024) / 512 + 1;
  return (int64_t)((((i - 1024) % 512) + 512) << shift);
}

void
bench_hist_add(bench_hist *h, int64_t ns)
{
  if (ns < 0)
    ns = 0;
  size_t i = hist_index((uint64_t)ns);
  if (i >= BENCH_HIST_BUCKETS)
    i = BENCH_HIST_BUCKETS - 1;
  h->count[i]++;
  h->total++;
  if (ns > h->max)
    h->max = ns;
}

int64_t
bench_hist_quantile(const bench_hist *h, double q)
{
  if (h->total == 0)
    return 0;
  uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999);
  if (rank < 1)
    rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
    seen += h->count[i];
    if (seen >= rank)
      return hist_value(i);
  }
  return h->max;
}

void
bench_rss_kb(long *rss, long *hwm)
{
  *rss = *hwm = 0;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmRSS:", 6) == 0)
      *rss = strtol(line + 6, NULL, 10);
    else if (strncmp(line, "VmHWM:", 6) == 0)
      *hwm = strtol(line + 6, NULL, 10);
  }
  fclose(f);
}

void
bench_io(long long *bytes, long long *calls)
{
  *bytes = *calls = 0;
  FILE *f = fopen("/proc/self/io", "r");
  if (f == NULL)
    return;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "wchar:", 6) == 0)
      *bytes = strtoll(line + 6, NULL, 10);
    else if (strncmp(line, "syscw:", 6) == 0)
      *calls = strtoll(line + 6, NULL, 10);
  }
  fclose(f);
}

int
bench_dir_init(char *out, size_t len, const char *dir, int *made)
{
  *made = 0;
  if (dir == NULL) {
    if (snprintf(out, len, "/tmp/flow-bench-XXXXXX") >= (int)len)
      return -1;
    if (mkdtemp(out) == NULL) {
      fprintf(stderr, "bench: cannot make a directory under /tmp: %s\n",
              strerror(errno));
      return -1;
    }
    *made = 1;
    return 0;
  }
  if (snprintf(out, len, "%s", dir) >= (int)len) {
    fprintf(stderr, "bench: directory name too long: %s\n", dir);
    return -1;
  }
  if (mkdir(out, 0700) == 0)
    *made = 1;
  else if (errno != EEXIST) {
    fprintf(stderr, "bench: cannot make %s: %s\n", out, strerror(errno));
    return -1;
  }
  return 0;
}

void
bench_dir_done(const char *dir, int made)
{
  if (made && rmdir(dir) != 0)
    fprintf(stderr, "bench: %s left behind: %s\n", dir, strerror(errno));
}

void
bench_db_remove(const char *path)
{
  static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };
  char name[4096];
  for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
    snprintf(name, sizeof name, "%s%s", path, suffix[i]);
    unlink(name);
  }
}

/* Writes or reads all of len bytes, as a pipe may split them. */
static int
pipe_io(int fd, void *buf, size_t len, int writing)
{
  char *p = buf;
  while (len > 0) {
    ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int
bench_in_child(int (*fn)(void *ctx, void *out), void *ctx, void *out,
               size_t len)
{
  int fds[2];
  fflush(stdout);
  fflush(stderr);
  if (pipe(fds) != 0) {
    perror("bench: pipe");
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("bench: fork");
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    close(fds[0]);
    int rc = fn(ctx, out);
    int w = pipe_io(fds[1], out, len, 1);
    close(fds[1]);
    fflush(stdout);
    fflush(stderr);
    _exit(rc == 0 && w == 0 ? 0 : 1);
  }
  close(fds[1]);
  int got = pipe_io(fds[0], out, len, 0);
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  return got == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}
