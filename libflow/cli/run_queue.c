/*
 * The queue of `flow run`, on the engine's thread: every request read,
 * in arrival order, from its line to its response.  cli_run_pump starts
 * each request whose turn has come, writes the responses at the head
 * that are ready, gives the reader room again and stops the run once
 * everything asked has been done.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>

#include "run_int.h"

req *
cli_run_req_new(run_state *st)
{
  req *r = calloc(1, sizeof(*r));

  if (r == NULL) {
    cli_errorf("out of memory reading a request");
    st->failure = 1;
    return NULL;
  }
  r->st = st;
  if (st->tail != NULL)
    st->tail->next = r;
  else
    st->head = r;
  st->tail = r;
  if (st->next == NULL)
    st->next = r;
  return r;
}

/*
 * The engine makes the notes of tasks, messages and incidents (a task
 * claimed, a message buffered or expired, an incident dismissed) only
 * when it has a subscriber besides the listener -- and then it makes
 * the notes of every open and signal a client asks for too, which costs
 * a third of flow run's rate in a burst of them.  So a subscriber that
 * does nothing is there while no open or signal is in flight: the
 * notes are made, and the listener (cli_run_on_event), which hears
 * every note not caused by a call, writes them.  While open and signal
 * calls are in flight it is not, and what those calls do to tasks
 * (a task_created) is not told; their responses and `tasks` say it.
 */
static void
quiet(flow_engine *engine, const char *event_json, void *payload)
{
  (void)engine;
  (void)event_json;
  (void)payload;
}

void
cli_run_notes(run_state *st, int on)
{
  if (on && st->notes_sub == 0) {
    if (flow_engine_subscribe(st->e, quiet, NULL, &st->notes_sub) != 0)
      st->notes_sub = 0; /* 64 subscribers: none of them ours */
  } else if (!on && st->notes_sub != 0) {
    flow_engine_unsubscribe(st->e, st->notes_sub);
    st->notes_sub = 0;
  }
}

void
cli_run_req_free(req *r)
{
  json_decref(r->id);
  json_decref(r->params);
  free(r->method);
  free(r->response);
  free(r);
}

/* Lowers the count of lines in the process by those finished since the
   last time, waking the reader when there is room again. */
static void
release_room(run_state *st)
{
  if (st->answered == 0)
    return;
  uv_mutex_lock(&st->mu);
  st->queued -= st->answered;
  if (st->queued <= RUN_QUEUE_LOW)
    uv_cond_signal(&st->room);
  uv_mutex_unlock(&st->mu);
  st->answered = 0;
}

/* Stops the loop once everything asked has been done and nothing more
   will be asked: input is over, every request is answered, and no line
   posted by the reader is still on its way. */
static void
maybe_finish(run_state *st)
{
  size_t queued;

  if (st->finished || !st->input_done || st->head != NULL)
    return;
  if (st->keep_running && !st->interrupted)
    return;
  uv_mutex_lock(&st->mu);
  queued = st->queued;
  uv_mutex_unlock(&st->mu);
  if (queued > 0)
    return; /* lines still posted: their turn comes next round */
  st->finished = 1;
  flow_engine_stop(st->e);
}

/* A request that will not be carried out because flow run is stopping. */
static void
cancel(req *r)
{
  r->state = REQ_DONE;
  cli_run_set_error(r, FLOW_ECANCELED,
                    json_pack("{s:s}", "name", flow_err_name(FLOW_ECANCELED)),
                    "not carried out: flow run was stopped (SIGINT or SIGTERM) "
                    "before it started this request; nothing was changed, so "
                    "send it again");
}

/* Writes the responses at the head that are ready. */
static void
write_ready(run_state *st)
{
  req *r;

  while ((r = st->head) != NULL && r->state == REQ_DONE) {
    st->head = r->next;
    if (st->head == NULL)
      st->tail = NULL;
    if (r->response != NULL)
      cli_run_write_line(r->response);
    cli_run_req_free(r);
    st->answered++;
  }
}

/*
 * Moves the queue on: starts every request whose turn has come, then
 * writes the responses at the head that are ready.  An asynchronous call
 * starts at once; anything else waits until no call is in flight, so
 * that it sees what the calls before it did.  Both walks start where the
 * last one stopped, so each request is looked at a bounded number of
 * times however long the queue.
 */
void
cli_run_pump(run_state *st)
{
  req *r;

  while ((r = st->next) != NULL) {
    if (r->state == REQ_WAITING && r->method != NULL) {
      if (st->interrupted) {
        cancel(r);
      } else {
        const method_def *m = cli_run_find_method(r->method);
        if ((m == NULL || !m->async) && st->inflight > 0)
          break;
        /* Everything before a synchronous request is answered by now:
           written first, the notifications its call makes (a task
           claimed) come after those answers and before its own. */
        if (m != NULL && !m->async && st->head != r)
          write_ready(st);
        cli_run_dispatch(r);
      }
    }
    st->next = r->next;
  }
  write_ready(st);
  release_room(st);
  maybe_finish(st);
}
