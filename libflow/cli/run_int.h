/*
 * Private to `flow run` (cmd_run.c and run_*.c): the state of a run, its
 * requests, and what the files share -- the JSON-RPC codec (run_rpc.c),
 * the methods (run_methods.c), the queue of requests (run_queue.c) and
 * the reader thread (run_reader.c).
 *
 * Only the public API (<flow.h>), libuv and Jansson are used here.
 */
#ifndef LIBFLOW_CLI_RUN_INT_H
#define LIBFLOW_CLI_RUN_INT_H

#include <jansson.h>
#include <uv.h>

#include "cli.h"

/* JSON-RPC's own error codes. */
#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602

#define JSON_OUT (JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY)

/* Requests read and not yet answered: the reader waits at RUN_QUEUE_MAX
   and goes on once the engine is down to RUN_QUEUE_LOW.  A few thousand
   fill several group commits, which is all the engine can use at once. */
#define RUN_QUEUE_MAX 4096
#define RUN_QUEUE_LOW 2048

/* An action `flow run --action NAME=MODE` answers. */
#define RUN_ACTIONS_MAX 64
typedef enum run_action_mode {
  RUN_ACTION_OK,
  RUN_ACTION_FAIL,
  RUN_ACTION_STDIN
} run_action_mode;

typedef struct run_action {
  char name[72];
  run_action_mode mode;
  struct run_state *st;
} run_action;

/* One request, from its line to its response. */
typedef enum req_state {
  REQ_WAITING, /* not started: behind calls in flight */
  REQ_STARTED, /* an asynchronous call in flight */
  REQ_DONE     /* response ready (or none, for a notification) */
} req_state;

typedef struct req {
  struct req *next;
  req_state state;
  json_t *id;         /* the request's id; NULL: a notification */
  char *method;       /* NULL when the line was already an error */
  json_t *params;     /* an object, or NULL */
  char *response;     /* the line to write once it is this one's turn */
  struct run_state *st;
} req;

/* A line read by the reader thread. */
typedef struct line {
  struct run_state *st;
  size_t len;
  char text[];
} line;

typedef struct run_state {
  cli_ctx *ctx;
  flow_engine *e;
  int until_idle, keep_running;

  /* Engine thread only. */
  req *head, *tail;  /* in arrival order, until answered */
  req *next;         /* the first not yet started, or NULL */
  size_t answered;   /* lines finished since queued was last lowered */
  size_t inflight;   /* asynchronous calls whose callback has not run */
  int input_done;    /* end of input, or a signal: read no more */
  int interrupted;   /* SIGINT or SIGTERM */
  int finished;      /* stop has been asked for */
  int failure;       /* a storage or internal failure: exit 3 */
  uv_signal_t sigint, sigterm;
  uv_async_t wake;   /* end of input when posting it failed */
  uv_prepare_t flush; /* writes what the round printed */

  /* Shared with the reader thread, under mu. */
  uv_mutex_t mu;
  uv_cond_t room;    /* queued fell to RUN_QUEUE_LOW, or reading stops */
  size_t queued;     /* lines posted and not yet finished */
  int stop_reading;  /* SIGINT or SIGTERM: read no further */
  int closed;        /* the engine is going away: post nothing more */
  int reader_done;   /* the reader has seen the end of its input */
  int reader_waiting;/* the reader waits for room, not for input */
  uv_thread_t reader;

  int notes_sub;     /* cli_run_notes' subscription, or 0 */
  run_action actions[RUN_ACTIONS_MAX]; /* --action, registered */
  int nactions;
} run_state;

/* A method's parameters: which are required, which allowed. */
typedef struct method_def {
  const char *name;
  int async;
  const char *required; /* space-separated member names */
  const char *allowed;  /* every member name it takes */
} method_def;

/* ---- run_rpc.c ---------------------------------------------------------- */

/* Writes one line to stdout's buffer; cli_run_flush_out writes it out. */
void cli_run_write_line(const char *text);
/* The loop's prepare callback: flushes stdout. */
void cli_run_flush_out(uv_prepare_t *h);
/* The response carrying the library's JSON text as its result. */
void cli_run_set_result(req *r, const char *result_json);
/* The error response; data (consumed, may be NULL) goes in error.data. */
void cli_run_set_error(req *r, int code, json_t *data, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 4, 5)))
#endif
  ;
/* The error response for a library failure. */
void cli_run_set_flow_error(req *r, int err);
/* The engine's listener: each event as a notification. */
void cli_run_on_event(flow_engine *engine, const char *event_json,
                      void *payload);
/* Turns one line into a queued request (or a queued error). */
void cli_run_take_line(run_state *st, const char *text, size_t len);

/* ---- run_methods.c ------------------------------------------------------ */

/* The method called name, or NULL. */
const method_def *cli_run_find_method(const char *name);
/* Starts or carries out r, whose turn it is. */
void cli_run_dispatch(req *r);

/* ---- run_queue.c -------------------------------------------------------- */

/* A new request at the tail of the queue, or NULL (out of memory). */
req *cli_run_req_new(run_state *st);
void cli_run_req_free(req *r);
/* Moves the queue on. */
void cli_run_pump(run_state *st);
/* on: the engine makes the notes of tasks, messages and incidents for
   the listener too; off: it does not (while open and signal calls are in
   flight).  See run_queue.c. */
void cli_run_notes(run_state *st, int on);

/* ---- run_actions.c ------------------------------------------------------ */

/* Registers the handlers of every --action; 0, or the exit code after a
   message. */
int cli_run_register_actions(run_state *st, const cli_args *args);

/* ---- run_reader.c ------------------------------------------------------- */

/* The wake handle's callback: the end of input, when posting it failed. */
void cli_run_on_wake(uv_async_t *h);
/* The reader thread; arg is the run_state. */
void cli_run_reader_main(void *arg);

#endif /* LIBFLOW_CLI_RUN_INT_H */
