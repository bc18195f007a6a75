/*
 * `flow run [--until-idle | --keep-running]`: keeps an engine running on
 * the database, firing timers as they fall due, and serves JSON-RPC 2.0 on
 * standard input and output, one message per line (the convention language
 * servers use).
 *
 * Requests: open {service, data, actor}, signal {case, event, payload,
 * actor}, show {case}, history {case}, list {service, state, status,
 * where, limit, overdue} and timers {case}.  Each is answered by a response
 * with the same id whose result is what the library returned, or whose
 * error has the FLOW_E* number as its code, flow_errmsg() as its message
 * and the code's name in data.name.  The task, message and incident
 * methods (tasks, claim, release, complete, cancel, send, messages,
 * incidents, retry, dismiss) are in run_methods.c.  What the engine does
 * on its own (a timer fired, the transition it caused, an incident), and
 * what happens to tasks and messages whoever caused it, is written as an
 * "event" notification.  Every line written is one JSON object with sorted
 * keys, flushed at once.
 *
 * How it runs: a reader thread reads standard input a line at a time and
 * hands each line to the engine's thread with flow_engine_post(), the one
 * call the library allows from other threads.  Everything else happens on
 * the engine's thread, inside flow_engine_run().  open and signal go
 * through the asynchronous calls, so requests that arrive together share
 * one commit; the other methods are answered at once.  Requests are
 * carried out in the order they arrive: a show, list, ... waits until the
 * calls before it have completed, so it sees their effects, and responses
 * are written in request order.
 *
 * A flood of requests is read no faster than it is answered: at most
 * RUN_QUEUE_MAX requests are in the process at once (read and not yet
 * answered), and the reader thread waits while that many are, so memory
 * stays flat whatever the size of the input; the queue is walked only from
 * where it was left, so the time per request does not grow with it.
 *
 * At the end of input it finishes what was asked (every callback has run),
 * then: with --until-idle it fires every timer due at the engine's time and
 * exits; with --keep-running it goes on firing timers until SIGINT or
 * SIGTERM; otherwise it exits.  SIGINT and SIGTERM at any time stop
 * reading; the calls in flight finish and are answered once durable, and
 * every request read but not yet started is answered with FLOW_ECANCELED
 * and not carried out; then it exits 0.
 *
 * The parts live beside this file, sharing run_int.h: the JSON-RPC codec
 * (run_rpc.c), the methods (run_methods.c), the queue of requests
 * (run_queue.c) and the reader thread (run_reader.c).  This file holds
 * the command and its signal handling.
 *
 * Only the public API (<flow.h>, <flow/uv.h>), libuv and Jansson are used.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <flow/uv.h>

#include "run_int.h"

const cli_opt cli_run_opts[] = { { "--until-idle", 0 },
                                 { "--keep-running", 0 },
                                 { "--action", 1 },
                                 { NULL, 0 } };

static void
on_signal(uv_signal_t *h, int signum)
{
  run_state *st = h->data;

  (void)signum;
  st->interrupted = 1;
  st->input_done = 1;
  uv_mutex_lock(&st->mu);
  st->stop_reading = 1;
  uv_cond_signal(&st->room);
  uv_mutex_unlock(&st->mu);
  cli_run_pump(st);
}

/* ---- the command -------------------------------------------------------- */

int
cli_cmd_run(cli_ctx *ctx, const cli_args *args)
{
  run_state *st;
  uv_loop_t *loop;
  int rc, err, reader_started = 0, reader_done;

  st = calloc(1, sizeof(*st));
  if (st == NULL) {
    cli_errorf("out of memory");
    return CLI_EXIT_FAILURE;
  }
  st->ctx = ctx;
  st->until_idle = cli_args_opt(args, "--until-idle") != NULL;
  st->keep_running = cli_args_opt(args, "--keep-running") != NULL;
  if (st->until_idle && st->keep_running) {
    free(st);
    return cli_usage_errorf("--until-idle and --keep-running cannot be "
                            "used together");
  }
  if (uv_mutex_init(&st->mu) != 0) {
    free(st);
    cli_errorf("cannot create a mutex");
    return CLI_EXIT_FAILURE;
  }
  if (uv_cond_init(&st->room) != 0) {
    uv_mutex_destroy(&st->mu);
    free(st);
    cli_errorf("cannot create a condition variable");
    return CLI_EXIT_FAILURE;
  }
  /* Nothing is written before this: a larger buffer for the responses
     of a whole round (a terminal stays line-buffered). */
  if (!isatty(STDOUT_FILENO))
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    goto out;
  st->e = ctx->engine;
  loop = flow_engine_uv_loop(st->e);
  if (loop == NULL) {
    rc = cli_report(ctx, flow_errcode(st->e) ? flow_errcode(st->e)
                                             : FLOW_ENOMEM);
    goto out;
  }
  flow_engine_set_listener(st->e, cli_run_on_event, st);
  cli_run_notes(st, 1);
  if ((rc = cli_run_register_actions(st, args)) != 0)
    goto out;

  /* The signal handles also keep the loop alive while input is open:
     the run ends only by flow_engine_stop(). */
  uv_signal_init(loop, &st->sigint);
  uv_signal_init(loop, &st->sigterm);
  uv_prepare_init(loop, &st->flush);
  uv_prepare_start(&st->flush, cli_run_flush_out);
  uv_unref((uv_handle_t *)&st->flush);
  uv_async_init(loop, &st->wake, cli_run_on_wake);
  st->sigint.data = st->sigterm.data = st->wake.data = st;
  uv_signal_start(&st->sigint, on_signal, SIGINT);
  uv_signal_start(&st->sigterm, on_signal, SIGTERM);

  if (uv_thread_create(&st->reader, cli_run_reader_main, st) != 0) {
    cli_errorf("cannot start the thread that reads standard input");
    rc = CLI_EXIT_FAILURE;
    goto close_handles;
  }
  reader_started = 1;

  while (!st->finished) {
    err = flow_engine_run(st->e, FLOW_RUN_DEFAULT);
    if (err < 0) {
      cli_report(ctx, err);
      st->failure = 1;
      break;
    }
  }
  if (st->until_idle && !st->interrupted && !st->failure) {
    err = flow_engine_fire_due(st->e, NULL);
    if (err != 0) {
      cli_report(ctx, err);
      st->failure = 1;
    }
  }
  rc = st->failure ? CLI_EXIT_FAILURE : CLI_EXIT_OK;

close_handles:
  /* No more posts, and a reader waiting for room stops waiting. */
  uv_mutex_lock(&st->mu);
  st->closed = 1;
  uv_cond_signal(&st->room);
  /* Waiting for room, it sees closed and ends at once: it can be joined.
     Waiting for input, it may never end. */
  reader_done = st->reader_done || st->reader_waiting;
  uv_mutex_unlock(&st->mu);
  st->input_done = 1;
  uv_close((uv_handle_t *)&st->sigint, NULL);
  uv_close((uv_handle_t *)&st->sigterm, NULL);
  uv_close((uv_handle_t *)&st->wake, NULL);
  uv_close((uv_handle_t *)&st->flush, NULL);
  flow_engine_run(st->e, FLOW_RUN_NOWAIT); /* they finish closing */
  /* A line the reader posted as a signal stopped the run is answered
     (as cancelled) too; nothing more can be posted. */
  for (int i = 0; i < 1000 && st->interrupted && !st->failure; i++) {
    size_t queued;
    uv_mutex_lock(&st->mu);
    queued = st->queued;
    uv_mutex_unlock(&st->mu);
    if (queued == 0)
      break;
    flow_engine_run(st->e, FLOW_RUN_NOWAIT);
  }
  if (st->inflight > 0 || (reader_started && !reader_done)) {
    /* Calls still in flight (only after a failed run) are answered when
       main closes the engine; a reader interrupted while it waits for
       input that may never come posts nothing more (closed) and the
       process exits under it.  Both need st: leave it allocated. */
    return rc;
  }
  while (st->head != NULL) {
    req *r = st->head;
    st->head = r->next;
    cli_run_req_free(r);
  }
  cli_run_notes(st, 0);
  flow_engine_set_listener(st->e, NULL, NULL);
  if (reader_started)
    uv_thread_join(&st->reader);

out:
  uv_cond_destroy(&st->room);
  uv_mutex_destroy(&st->mu);
  free(st);
  return rc;
}
