/*
 * `flow run` under a flood of JSON-RPC requests, through the real binary
 * (FLOW_CLI names it) and the public API to look at the database after:
 *
 * - backpressure: a sender that writes faster than it reads the answers
 *   is held back by the pipe once a few thousand requests are in the
 *   process; flow run does not read (and hold) the whole flood;
 * - SIGTERM mid-burst, from a pipe still open and from a large file:
 *   flow run stops reading and exits promptly; every answer it wrote is
 *   a result (durable: the case is in the database) or FLOW_ECANCELED
 *   (not carried out: no case), and results are exactly the cases made.
 *
 * No test here measures speed: the deadlines are generous bounds on
 * "stops at all", and the rates live in scripts/bench (bench_run).
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOW "2026-11-30T09:00:00Z"

static const char *flow_bin;
static char dir[64], db[128];

static int64_t
mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
setup(void)
{
  char cmd[1024];
  const char *src = getenv("FLOW_SOURCE_DIR");
  flow_bin = getenv("FLOW_CLI");
  ck_assert_msg(flow_bin != NULL, "FLOW_CLI must name the flow binary");
  snprintf(dir, sizeof dir, "/tmp/flow-flood.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(db, sizeof db, "%s/cases.db", dir);
  snprintf(cmd, sizeof cmd,
           "'%s' --db '%s' load '%s/examples/services/missed_bin.lua'"
           " >/dev/null",
           flow_bin, db, src ? src : ".");
  ck_assert_int_eq(system(cmd), 0);
}

static void
teardown(void)
{
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}

/* Starts `flow --db DB --now NOW run` with stdin from in_fd (or a new
   pipe whose write end goes to *to_child) and stdout to a pipe whose read
   end goes to *from_child. */
static pid_t
spawn_run(int in_fd, int *to_child, int *from_child)
{
  int in[2] = { -1, -1 }, out[2];
  if (in_fd < 0)
    ck_assert_int_eq(pipe(in), 0);
  ck_assert_int_eq(pipe(out), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    dup2(in_fd >= 0 ? in_fd : in[0], 0);
    dup2(out[1], 1);
    if (in_fd < 0) {
      close(in[0]);
      close(in[1]);
    }
    close(out[0]);
    close(out[1]);
    execl(flow_bin, flow_bin, "--db", db, "--now", NOW, "run", (char *)NULL);
    _exit(127);
  }
  if (in_fd < 0) {
    close(in[0]);
    *to_child = in[1];
  }
  close(out[1]);
  *from_child = out[0];
  return pid;
}

static size_t
open_request(char *buf, size_t len, long id)
{
  int n = snprintf(buf, len,
                   "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"open\","
                   "\"params\":{\"service\":\"missed_bin\",\"data\":{"
                   "\"uprn\":\"%ld\",\"address\":\"%ld High Street\","
                   "\"bin\":\"refuse\"}}}\n",
                   id, 100000 + id, id);
  ck_assert(n > 0 && (size_t)n < len);
  return (size_t)n;
}

/* Open requests written to a non-blocking pipe, a line at a time. */
typedef struct sender {
  int fd;
  char line[512];
  size_t len, off;
  long sent; /* whole lines written */
} sender;

/* Writes what the pipe takes of the current line, starting the next one
   when it is done.  Returns the bytes written, or -1 with errno EAGAIN
   when the pipe is full. */
static ssize_t
send_some(sender *sd)
{
  if (sd->off == sd->len) {
    sd->len = open_request(sd->line, sizeof sd->line, sd->sent + 1);
    sd->off = 0;
  }
  ssize_t n = write(sd->fd, sd->line + sd->off, sd->len - sd->off);
  if (n > 0 && (sd->off += (size_t)n) == sd->len)
    sd->sent++;
  ck_assert_msg(n > 0 || errno == EAGAIN, "write: %s", strerror(errno));
  return n;
}

/* Reads whatever is there into a line assembler; returns complete lines
   through each(). 0 at EOF, 1 otherwise. */
typedef struct reader {
  int fd;
  char buf[1 << 16];
  size_t have;
} reader;

static int
read_lines(reader *r, void (*each)(const char *line, void *ctx), void *ctx)
{
  ssize_t n = read(r->fd, r->buf + r->have, sizeof r->buf - r->have - 1);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return 1;
  ck_assert_int_ge(n, 0);
  if (n == 0)
    return 0;
  r->have += (size_t)n;
  r->buf[r->have] = '\0';
  char *start = r->buf, *nl;
  while ((nl = strchr(start, '\n')) != NULL) {
    *nl = '\0';
    each(start, ctx);
    start = nl + 1;
  }
  r->have -= (size_t)(start - r->buf);
  memmove(r->buf, start, r->have);
  ck_assert_msg(r->have < sizeof r->buf - 1, "a line too long");
  return 1;
}

/* What came back. */
typedef struct answers {
  long lines, results, cancelled, next_id;
} answers;

static void
check_answer(const char *line, void *ctx)
{
  answers *a = ctx;
  char want[64];
  a->lines++;
  /* Answers come in request order, one per request. */
  snprintf(want, sizeof want, "\"id\":%ld,", a->next_id);
  ck_assert_msg(strstr(line, want) != NULL, "want %s in %s", want, line);
  a->next_id++;
  if (strstr(line, "\"result\":{") != NULL)
    a->results++;
  else if (strstr(line, "\"name\":\"FLOW_ECANCELED\"") != NULL)
    a->cancelled++;
  else
    ck_abort_msg("neither a result nor FLOW_ECANCELED: %s", line);
}

static void
wait_exit(pid_t pid, int64_t deadline_ms, int want_status)
{
  int status = 0;
  pid_t got;
  while ((got = waitpid(pid, &status, WNOHANG)) == 0) {
    if (mono_ms() > deadline_ms) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ck_abort_msg("flow run did not exit in time");
    }
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    nanosleep(&ts, NULL);
  }
  ck_assert_int_eq(got, pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == want_status,
                "flow run ended with status %d", status);
}

/* The number of cases in the database. */
static long
cases_in_db(void)
{
  flow_engine *e;
  char err[256], *out;
  ck_assert_msg(flow_engine_open(&e, db, NULL, err, sizeof err) == 0, "%s",
                err);
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.limit = 10000000;
  ck_assert_msg(flow_case_list(&out, e, &q) == 0, "%s", flow_errmsg(e));
  long n = 0;
  for (const char *p = out; (p = strstr(p, "\"service\":")) != NULL; p++)
    n++;
  flow_free(out);
  flow_engine_close(e);
  return n;
}

/* A sender that never reads the answers: flow run's stdout fills, it
   stops answering, its queue fills, it stops reading, and the sender's
   writes stall.  Without backpressure the whole flood is read and held. */
START_TEST(test_run_flood_backpressure)
{
  int to, from;
  pid_t pid = spawn_run(-1, &to, &from);
  ck_assert_int_eq(fcntl(to, F_SETFL, O_NONBLOCK), 0);
  enum { LIMIT = 60000 };
  sender sd = { to, "", 0, 0, 0 };
  while (sd.sent < LIMIT || sd.off < sd.len) {
    if (send_some(&sd) > 0)
      continue;
    /* Full: wait for room; two quiet seconds mean flow run stopped
       reading. */
    struct pollfd p = { to, POLLOUT, 0 };
    if (poll(&p, 1, 2000) == 0)
      break;
  }
  /* RUN_QUEUE_MAX (4,096) in the process, plus what the pipes and stdio
     buffers hold: far below the flood. */
  ck_assert_msg(sd.sent < 12000, "flow run read %ld of a flood it could "
                "not answer: no backpressure", sd.sent);

  /* Now read the answers, send 5,000 more, and end the flood. */
  answers a = { 0, 0, 0, 1 };
  static reader r;
  r.fd = from;
  r.have = 0;
  const long total = sd.sent + 5000;
  int open_in = 1;
  while (1) {
    struct pollfd p[2] = { { from, POLLIN, 0 }, { open_in ? to : -1, POLLOUT,
                                                  0 } };
    ck_assert_int_ge(poll(p, 2, 20000), 1);
    if (p[0].revents & (POLLIN | POLLHUP)) {
      if (!read_lines(&r, check_answer, &a))
        break;
    }
    if (open_in && (p[1].revents & POLLOUT)) {
      if (sd.off == sd.len && sd.sent == total) {
        close(to);
        open_in = 0;
      } else {
        send_some(&sd);
      }
    }
  }
  close(from);
  wait_exit(pid, mono_ms() + 60000, 0);
  ck_assert_int_eq(a.lines, total);
  ck_assert_int_eq(a.results, total);
  ck_assert_int_eq(cases_in_db(), total);
}
END_TEST

/* SIGTERM while requests stream in through a pipe that stays open. */
START_TEST(test_run_flood_sigterm_pipe)
{
  int to, from;
  pid_t pid = spawn_run(-1, &to, &from);
  ck_assert_int_eq(fcntl(to, F_SETFL, O_NONBLOCK), 0);
  answers a = { 0, 0, 0, 1 };
  static reader r;
  r.fd = from;
  r.have = 0;
  sender sd = { to, "", 0, 0, 0 };
  int64_t signalled = 0;
  for (;;) {
    struct pollfd p[2] = { { from, POLLIN, 0 }, { to, POLLOUT, 0 } };
    ck_assert_int_ge(poll(p, signalled ? 1 : 2, 20000), 1);
    if (p[0].revents & (POLLIN | POLLHUP)) {
      if (!read_lines(&r, check_answer, &a))
        break;
    }
    if (!signalled && a.lines >= 3000) {
      ck_assert_int_eq(kill(pid, SIGTERM), 0);
      signalled = mono_ms();
    }
    if (!signalled && (p[1].revents & POLLOUT))
      send_some(&sd);
  }
  /* stdout closed: flow run is exiting, with its input still open. */
  wait_exit(pid, signalled + 10000, 0);
  close(to);
  close(from);
  ck_assert_int_ge(a.lines, 3000);
  ck_assert_int_eq(a.results + a.cancelled, a.lines);
  ck_assert_int_eq(cases_in_db(), a.results);
}
END_TEST

/* SIGTERM while a large file redirected into stdin is being worked
   through: flow run stops instead of finishing the file. */
START_TEST(test_run_flood_sigterm_file)
{
  char path[256], line[512];
  snprintf(path, sizeof path, "%s/requests.jsonl", dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  enum { N = 100000 };
  for (long i = 1; i <= N; i++) {
    open_request(line, sizeof line, i);
    fputs(line, f);
  }
  ck_assert_int_eq(fclose(f), 0);
  int in = open(path, O_RDONLY);
  ck_assert_int_ge(in, 0);
  int from;
  pid_t pid = spawn_run(in, NULL, &from);
  close(in);
  answers a = { 0, 0, 0, 1 };
  static reader r;
  r.fd = from;
  r.have = 0;
  int64_t signalled = 0;
  while (read_lines(&r, check_answer, &a)) {
    if (!signalled && a.lines >= 2000) {
      ck_assert_int_eq(kill(pid, SIGTERM), 0);
      signalled = mono_ms();
    }
  }
  close(from);
  ck_assert_msg(signalled != 0, "flow run ended before the signal");
  wait_exit(pid, signalled + 10000, 0);
  ck_assert_msg(a.lines < N, "flow run answered the whole file after "
                "SIGTERM");
  ck_assert_int_eq(a.results + a.cancelled, a.lines);
  ck_assert_int_eq(cases_in_db(), a.results);
}
END_TEST

static Suite *
run_flood_suite(void)
{
  Suite *s = suite_create("run_flood");
  TCase *tc = tcase_create("flood");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_run_flood_backpressure);
  tcase_add_test(tc, test_run_flood_sigterm_pipe);
  tcase_add_test(tc, test_run_flood_sigterm_file);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  signal(SIGPIPE, SIG_IGN);
  SRunner *sr = srunner_create(run_flood_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
