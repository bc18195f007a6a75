/*
 * The reader thread of `flow run`: reads standard input a line at a time
 * and posts each line to the engine's thread with flow_engine_post(), the
 * one call the library allows from other threads, waiting while
 * RUN_QUEUE_MAX lines are in the process; and, on the engine's thread,
 * what takes those lines and the end of the input.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "run_int.h"

/* Runs on the engine's thread: one line the reader posted.  After a
   signal it is still read, so that its sender hears it was cancelled. */
static void
on_line(flow_engine *engine, void *payload)
{
  line *l = payload;
  run_state *st = l->st;

  (void)engine;
  cli_run_take_line(st, l->text, l->len);
  free(l);
  cli_run_pump(st);
}

/* Runs on the engine's thread: the reader has reached the end. */
static void
on_eof(flow_engine *engine, void *payload)
{
  run_state *st = payload;

  (void)engine;
  st->input_done = 1;
  cli_run_pump(st);
}

void
cli_run_on_wake(uv_async_t *h)
{
  run_state *st = h->data;
  int done;

  uv_mutex_lock(&st->mu);
  done = st->reader_done;
  uv_mutex_unlock(&st->mu);
  if (done)
    on_eof(st->e, st);
}

/* The reader thread: posts each line to the engine's thread, waiting
   while RUN_QUEUE_MAX lines are in the process. */
void
cli_run_reader_main(void *arg)
{
  run_state *st = arg;
  char *buf = NULL;
  size_t cap = 0;
  ssize_t n = 0;
  int read_errno = 0;

  for (;;) {
    line *l;
    int err, stop;

    uv_mutex_lock(&st->mu);
    st->reader_waiting = 1;
    while (st->queued >= RUN_QUEUE_MAX && !st->closed && !st->stop_reading)
      uv_cond_wait(&st->room, &st->mu);
    st->reader_waiting = 0;
    stop = st->closed || st->stop_reading;
    uv_mutex_unlock(&st->mu);
    if (stop)
      break;
    errno = 0;
    n = getline(&buf, &cap, stdin);
    if (n < 0) {
      read_errno = errno;
      break;
    }
    l = malloc(offsetof(line, text) + (size_t)n + 1);
    if (l == NULL) {
      cli_errorf("out of memory: a request line of %zd bytes was dropped",
                 n);
      continue;
    }
    l->st = st;
    l->len = (size_t)n;
    memcpy(l->text, buf, (size_t)n + 1);
    /* A line read just as a signal came is still posted: it is answered
       as cancelled, not lost. */
    uv_mutex_lock(&st->mu);
    stop = st->closed;
    err = stop ? 0 : flow_engine_post(st->e, on_line, l);
    if (!stop && err == 0)
      st->queued++;
    uv_mutex_unlock(&st->mu);
    if (stop) {
      free(l);
      break;
    }
    if (err != 0) {
      free(l);
      cli_errorf("out of memory: a request line was dropped");
    }
  }
  if (n < 0 && ferror(stdin))
    cli_errorf("cannot read standard input: %s",
               strerror(read_errno != 0 ? read_errno : EIO));
  free(buf);
  uv_mutex_lock(&st->mu);
  st->reader_done = 1;
  if (!st->closed && flow_engine_post(st->e, on_eof, st) != 0)
    uv_async_send(&st->wake);
  uv_mutex_unlock(&st->mu);
}
