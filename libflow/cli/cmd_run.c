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
 * and the code's name in data.name.  What the engine does on its own (a
 * timer fired, the transition it caused, an incident) is written as an
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
 * Only the public API (<flow.h>, <flow/uv.h>), libuv and Jansson are used.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include <flow/uv.h>

#include "cli.h"

const cli_opt cli_run_opts[] = { { "--until-idle", 0 },
                                 { "--keep-running", 0 },
                                 { NULL, 0 } };

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
} run_state;

static void pump(run_state *st);

/* ---- output ------------------------------------------------------------- */

/* Lines go into stdout's buffer; flush_out, before the loop waits for
   anything, writes them.  So a response is written as soon as the loop
   round that made it is over, with one write for the round's lines rather
   than one per line. */
static void
write_line(const char *text)
{
  fputs(text, stdout);
  fputc('\n', stdout);
}

static void
flush_out(uv_prepare_t *h)
{
  (void)h;
  fflush(stdout);
}

/* Library JSON as one line: as written, or compacted again by Jansson
   should it hold a line break.  malloc'd (Jansson's malloc), or NULL. */
static char *
one_line_json(const char *text)
{
  json_t *v;
  char *s;

  if (strchr(text, '\n') == NULL && strchr(text, '\r') == NULL) {
    s = malloc(strlen(text) + 1);
    if (s != NULL)
      strcpy(s, text);
    return s;
  }
  v = json_loads(text, JSON_DECODE_ANY, NULL);
  s = v != NULL ? json_dumps(v, JSON_OUT) : NULL;
  json_decref(v);
  return s;
}

/* Joins three strings into a malloc'd one. */
static char *
join3(const char *a, const char *b, const char *c)
{
  size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
  char *s = malloc(la + lb + lc + 1);

  if (s != NULL) {
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
  }
  return s;
}

/*
 * The response carrying the library's JSON text as its result.  The text
 * is spliced in rather than parsed and printed again, so that it reads
 * exactly as the library wrote it, numbers included; the keys around it
 * are in sorted order all the same.
 */
static void
set_result(req *r, const char *result_json)
{
  char *id = r->id ? json_dumps(r->id, JSON_OUT) : NULL;
  char *body = one_line_json(result_json);
  char *head = id ? join3("{\"id\":", id, ",\"jsonrpc\":\"2.0\",\"result\":")
                  : NULL;

  r->state = REQ_DONE;
  if (r->id == NULL) {
    /* A notification gets no response. */
  } else if (head == NULL || body == NULL ||
             (r->response = join3(head, body, "}")) == NULL) {
    cli_errorf("out of memory writing a response");
    r->st->failure = 1;
  }
  free(id);
  free(body);
  free(head);
}

/* The error response; data (consumed, may be NULL) goes in error.data. */
static void
set_error(req *r, int code, json_t *data, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 4, 5)))
#endif
  ;

static void
set_error(req *r, int code, json_t *data, const char *fmt, ...)
{
  char msg[4096];
  va_list ap;
  json_t *resp;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  r->state = REQ_DONE;
  if (r->id == NULL && code != RPC_PARSE_ERROR &&
      code != RPC_INVALID_REQUEST) {
    json_decref(data);
    return; /* a notification gets no response, not even an error */
  }
  /* O? writes null for a missing id; o* leaves out a missing data. */
  resp = json_pack("{s:s, s:O?, s:{s:i, s:s, s:o*}}", "jsonrpc", "2.0", "id",
                   r->id, "error", "code", code, "message", msg, "data",
                   data);
  r->response = resp != NULL ? json_dumps(resp, JSON_OUT) : NULL;
  json_decref(resp);
  if (r->response == NULL) {
    cli_errorf("out of memory writing a response");
    r->st->failure = 1;
  }
}

/* The error response for a library failure. */
static void
set_flow_error(req *r, int err)
{
  flow_engine *e = r->st->e;
  const char *msg = flow_errmsg(e);

  if (msg == NULL || *msg == '\0')
    msg = flow_strerror(err);
  if (cli_exit_code(err) == CLI_EXIT_FAILURE)
    r->st->failure = 1;
  set_error(r, err, json_pack("{s:s}", "name", flow_err_name(err)), "%s",
            msg);
}

/* Notifications from the engine: written as they happen. */
static void
on_event(flow_engine *engine, const char *event_json, void *payload)
{
  run_state *st = payload;
  char *body = one_line_json(event_json);
  char *text =
    body ? join3("{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":",
                 body, "}")
         : NULL;

  (void)engine;
  if (text == NULL) {
    cli_errorf("out of memory writing a notification");
    st->failure = 1;
  } else {
    write_line(text);
  }
  free(text);
  free(body);
}

/* ---- parameters --------------------------------------------------------- */

/* Parameters as the library wants them; strings borrowed from params or
   held in the owned members. */
typedef struct call_args {
  const char *service, *event, *state, *status;
  const char *case_id; /* borrowed, or case_buf */
  char case_buf[32];
  char *data;      /* owned JSON text of data/payload, or NULL */
  flow_actor actor;
  const char **roles; /* owned array behind actor.roles */
  flow_where *where;  /* owned, with owned value_json strings */
  size_t nwhere;
  size_t limit;
  int overdue;
} call_args;

static void
call_args_free(call_args *a)
{
  size_t i;

  free(a->data);
  free(a->roles);
  for (i = 0; i < a->nwhere; i++)
    free((char *)a->where[i].value_json);
  free(a->where);
}

/* A method's parameters: which are required, which allowed. */
typedef struct method_def {
  const char *name;
  int async;
  const char *required; /* space-separated member names */
  const char *allowed;  /* every member name it takes */
} method_def;

static const method_def methods[] = {
  { "open", 1, "service", "service data actor" },
  { "signal", 1, "case event", "case event payload actor" },
  { "show", 0, "case", "case" },
  { "history", 0, "case", "case" },
  { "list", 0, "", "service state status where limit overdue" },
  { "timers", 0, "case", "case" },
};

#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

static const method_def *
find_method(const char *name)
{
  size_t i;

  for (i = 0; i < NMETHODS; i++)
    if (strcmp(methods[i].name, name) == 0)
      return &methods[i];
  return NULL;
}

/* 1 when word is one of the space-separated words of list. */
static int
has_word(const char *list, const char *word)
{
  size_t n = strlen(word);
  const char *p = list;

  if (n == 0)
    return 0; /* strstr finds "" everywhere: never a member name */
  while ((p = strstr(p, word)) != NULL) {
    if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
      return 1;
    p += n;
  }
  return 0;
}

/* Reads params into a; 0, or -1 after setting r's -32602 error. */
static int
read_params(req *r, const method_def *m, call_args *a)
{
  json_t *p = r->params, *v;
  const char *key;
  char word[64];
  const char *s;

  json_object_foreach(p, key, v)
  {
    if (!has_word(m->allowed, key)) {
      set_error(r, RPC_INVALID_PARAMS, NULL,
                "Invalid params: %s takes no '%s' (it takes: %s)", m->name,
                key, m->allowed);
      return -1;
    }
  }
  /* Required members. */
  for (s = m->required; *s != '\0';) {
    size_t n = strcspn(s, " ");
    snprintf(word, sizeof(word), "%.*s", (int)n, s);
    if (json_object_get(p, word) == NULL) {
      set_error(r, RPC_INVALID_PARAMS, NULL,
                "Invalid params: %s needs '%s'", m->name, word);
      return -1;
    }
    s += n;
    while (*s == ' ')
      s++;
  }

#define STRING_PARAM(name, dst)                                                \
  do {                                                                         \
    v = json_object_get(p, name);                                              \
    if (v != NULL && !json_is_null(v)) {                                       \
      if (!json_is_string(v)) {                                                \
        set_error(r, RPC_INVALID_PARAMS, NULL,                                 \
                  "Invalid params: '%s' must be a string", name);              \
        return -1;                                                             \
      }                                                                        \
      dst = json_string_value(v);                                              \
    }                                                                          \
  } while (0)

  STRING_PARAM("service", a->service);
  STRING_PARAM("event", a->event);
  STRING_PARAM("state", a->state);
  STRING_PARAM("status", a->status);
#undef STRING_PARAM

  v = json_object_get(p, "case");
  if (v != NULL) {
    if (json_is_string(v)) {
      a->case_id = json_string_value(v);
    } else if (json_is_integer(v)) {
      snprintf(a->case_buf, sizeof(a->case_buf), "%" JSON_INTEGER_FORMAT,
               json_integer_value(v));
      a->case_id = a->case_buf;
    } else {
      set_error(r, RPC_INVALID_PARAMS, NULL,
                "Invalid params: 'case' must be a case id such as \"1\"");
      return -1;
    }
  }

  v = json_object_get(p, has_word(m->allowed, "data") ? "data" : "payload");
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_object(v)) {
      set_error(r, RPC_INVALID_PARAMS, NULL,
                "Invalid params: '%s' must be a JSON object",
                has_word(m->allowed, "data") ? "data" : "payload");
      return -1;
    }
    a->data = json_dumps(v, JSON_OUT);
    if (a->data == NULL) {
      set_error(r, RPC_INVALID_PARAMS, NULL, "Invalid params: out of memory");
      return -1;
    }
  }

  a->actor = r->st->ctx->actor;
  v = json_object_get(p, "actor");
  if (v != NULL && !json_is_null(v)) {
    json_t *id = json_object_get(v, "id"), *roles = json_object_get(v, "roles");
    size_t i;

    if (!json_is_object(v) || !json_is_string(id) ||
        (roles != NULL && !json_is_null(roles) && !json_is_array(roles))) {
      set_error(r, RPC_INVALID_PARAMS, NULL,
                "Invalid params: 'actor' must be an object like "
                "{\"id\":\"sam\",\"roles\":[\"crew\"]}");
      return -1;
    }
    a->actor.id = json_string_value(id);
    a->actor.roles = NULL;
    a->actor.nroles = 0;
    if (json_array_size(roles) > 0) {
      a->roles = calloc(json_array_size(roles), sizeof(*a->roles));
      if (a->roles == NULL) {
        set_error(r, RPC_INVALID_PARAMS, NULL, "Invalid params: out of memory");
        return -1;
      }
      for (i = 0; i < json_array_size(roles); i++) {
        json_t *role = json_array_get(roles, i);
        if (!json_is_string(role)) {
          set_error(r, RPC_INVALID_PARAMS, NULL,
                    "Invalid params: actor roles must be strings");
          return -1;
        }
        a->roles[i] = json_string_value(role);
      }
      a->actor.roles = (const char *const *)a->roles;
      a->actor.nroles = json_array_size(roles);
    }
  }

  if (a->status != NULL && strcmp(a->status, "open") != 0 &&
      strcmp(a->status, "closed") != 0) {
    set_error(r, RPC_INVALID_PARAMS, NULL,
              "Invalid params: 'status' must be \"open\" or \"closed\"");
    return -1;
  }
  v = json_object_get(p, "limit");
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
      set_error(r, RPC_INVALID_PARAMS, NULL,
                "Invalid params: 'limit' must be a whole number above 0");
      return -1;
    }
    a->limit = (size_t)json_integer_value(v);
  }
  v = json_object_get(p, "overdue");
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_boolean(v)) {
      set_error(r, RPC_INVALID_PARAMS, NULL,
                "Invalid params: 'overdue' must be true or false");
      return -1;
    }
    a->overdue = json_is_true(v);
  }
  v = json_object_get(p, "where");
  if (v != NULL && !json_is_null(v)) {
    json_t *value;

    if (!json_is_object(v)) {
      set_error(r, RPC_INVALID_PARAMS, NULL,
                "Invalid params: 'where' must be an object of field: value");
      return -1;
    }
    a->where = calloc(json_object_size(v) + 1, sizeof(*a->where));
    if (a->where == NULL) {
      set_error(r, RPC_INVALID_PARAMS, NULL, "Invalid params: out of memory");
      return -1;
    }
    json_object_foreach(v, key, value)
    {
      if (json_is_object(value) || json_is_array(value)) {
        set_error(r, RPC_INVALID_PARAMS, NULL,
                  "Invalid params: where.%s must be a string, number, "
                  "true, false or null",
                  key);
        return -1;
      }
      a->where[a->nwhere].field = key;
      a->where[a->nwhere].value_json = json_dumps(value, JSON_OUT);
      if (a->where[a->nwhere].value_json == NULL) {
        set_error(r, RPC_INVALID_PARAMS, NULL,
                  "Invalid params: out of memory");
        return -1;
      }
      a->nwhere++;
    }
  }
  return 0;
}

/* ---- carrying requests out ---------------------------------------------- */

static void
on_call_done(flow_engine *engine, int status, const char *case_json,
             void *payload)
{
  req *r = payload;
  run_state *st = r->st;

  (void)engine;
  if (status == 0 && case_json != NULL)
    set_result(r, case_json);
  else
    set_flow_error(r, status != 0 ? status : FLOW_ERROR);
  st->inflight--;
  pump(st);
}

/* Starts an asynchronous request, or answers it at once when it can be
   refused without the database. */
static void
start_async(req *r, const method_def *m, call_args *a)
{
  run_state *st = r->st;
  int err;

  if (strcmp(m->name, "open") == 0)
    err = flow_case_open_async(st->e, a->service, a->data, &a->actor,
                               on_call_done, r);
  else
    err = flow_case_signal_async(st->e, a->case_id, a->event, a->data,
                                 &a->actor, on_call_done, r);
  if (err != 0) {
    set_flow_error(r, err);
    return;
  }
  r->state = REQ_STARTED;
  st->inflight++;
}

static void
run_sync(req *r, const method_def *m, call_args *a)
{
  flow_engine *e = r->st->e;
  char *out = NULL;
  int err;

  if (strcmp(m->name, "show") == 0) {
    err = flow_case_get(&out, e, a->case_id);
  } else if (strcmp(m->name, "history") == 0) {
    err = flow_case_history(&out, e, a->case_id);
  } else if (strcmp(m->name, "timers") == 0) {
    err = flow_case_timers(&out, e, a->case_id);
  } else {
    flow_case_query q = FLOW_CASE_QUERY_INIT;
    q.service = a->service;
    q.state = a->state;
    q.status = a->status;
    q.where = a->where;
    q.nwhere = a->nwhere;
    q.limit = a->limit;
    q.overdue = a->overdue;
    err = flow_case_list(&out, e, &q);
  }
  if (err == 0)
    set_result(r, out);
  else
    set_flow_error(r, err);
  flow_free(out);
}

/* Starts or carries out r, whose turn it is. */
static void
dispatch(req *r)
{
  const method_def *m = find_method(r->method);
  call_args a;

  memset(&a, 0, sizeof(a));
  if (m == NULL) {
    set_error(r, RPC_METHOD_NOT_FOUND, NULL,
              "Method not found: '%s' (methods: open, signal, show, "
              "history, list, timers)",
              r->method);
    return;
  }
  if (read_params(r, m, &a) == 0) {
    if (m->async)
      start_async(r, m, &a);
    else
      run_sync(r, m, &a);
  }
  call_args_free(&a);
}

static void
req_free(req *r)
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
  set_error(r, FLOW_ECANCELED,
            json_pack("{s:s}", "name", flow_err_name(FLOW_ECANCELED)),
            "not carried out: flow run was stopped (SIGINT or SIGTERM) "
            "before it started this request; nothing was changed, so send "
            "it again");
}

/*
 * Moves the queue on: starts every request whose turn has come, then
 * writes the responses at the head that are ready.  An asynchronous call
 * starts at once; anything else waits until no call is in flight, so
 * that it sees what the calls before it did.  Both walks start where the
 * last one stopped, so each request is looked at a bounded number of
 * times however long the queue.
 */
static void
pump(run_state *st)
{
  req *r;

  while ((r = st->next) != NULL) {
    if (r->state == REQ_WAITING && r->method != NULL) {
      if (st->interrupted) {
        cancel(r);
      } else {
        const method_def *m = find_method(r->method);
        if ((m == NULL || !m->async) && st->inflight > 0)
          break;
        dispatch(r);
      }
    }
    st->next = r->next;
  }
  while ((r = st->head) != NULL && r->state == REQ_DONE) {
    st->head = r->next;
    if (st->head == NULL)
      st->tail = NULL;
    if (r->response != NULL)
      write_line(r->response);
    req_free(r);
    st->answered++;
  }
  release_room(st);
  maybe_finish(st);
}

/* ---- reading requests --------------------------------------------------- */

static req *
req_new(run_state *st)
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

/* Turns one line into a queued request (or a queued error); a blank
   line is finished at once. */
static void
take_line(run_state *st, const char *text, size_t len)
{
  json_error_t jerr;
  json_t *msg, *v;
  req *r;

  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
                     text[len - 1] == ' ' || text[len - 1] == '\t'))
    len--;
  if (strspn(text, " \t") >= len || (r = req_new(st)) == NULL) {
    st->answered++; /* a blank line, or one dropped for want of memory */
    return;
  }
  msg = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
  if (msg == NULL) {
    set_error(r, RPC_PARSE_ERROR, NULL, "Parse error: %s at column %d",
              jerr.text, jerr.column);
    return;
  }
  if (json_is_array(msg)) {
    set_error(r, RPC_INVALID_REQUEST, NULL,
              "Invalid Request: batches are not supported; send one "
              "request per line");
    goto out;
  }
  if (!json_is_object(msg)) {
    set_error(r, RPC_INVALID_REQUEST, NULL,
              "Invalid Request: a request is a JSON object with jsonrpc, "
              "id, method and params");
    goto out;
  }
  v = json_object_get(msg, "id");
  if (v != NULL && !json_is_string(v) && !json_is_number(v) &&
      !json_is_null(v)) {
    set_error(r, RPC_INVALID_REQUEST, NULL,
              "Invalid Request: 'id' must be a string, a number or null");
    goto out;
  }
  r->id = json_incref(v);
  v = json_object_get(msg, "jsonrpc");
  if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0) {
    set_error(r, RPC_INVALID_REQUEST, NULL,
              "Invalid Request: 'jsonrpc' must be \"2.0\"");
    goto out;
  }
  v = json_object_get(msg, "method");
  if (!json_is_string(v)) {
    set_error(r, RPC_INVALID_REQUEST, NULL,
              "Invalid Request: 'method' must be a string");
    goto out;
  }
  v = json_object_get(msg, "params");
  if (v != NULL && !json_is_null(v) && !json_is_object(v)) {
    set_error(r, RPC_INVALID_PARAMS, NULL,
              "Invalid params: 'params' must be an object");
    goto out;
  }
  r->params = json_is_object(v) ? json_incref(v) : json_object();
  r->method = strdup(json_string_value(json_object_get(msg, "method")));
  if (r->method == NULL || r->params == NULL) {
    set_error(r, RPC_INVALID_REQUEST, NULL, "Invalid Request: out of memory");
    free(r->method);
    r->method = NULL;
  }

out:
  json_decref(msg);
}

/* Runs on the engine's thread: one line the reader posted.  After a
   signal it is still read, so that its sender hears it was cancelled. */
static void
on_line(flow_engine *engine, void *payload)
{
  line *l = payload;
  run_state *st = l->st;

  (void)engine;
  take_line(st, l->text, l->len);
  free(l);
  pump(st);
}

/* Runs on the engine's thread: the reader has reached the end. */
static void
on_eof(flow_engine *engine, void *payload)
{
  run_state *st = payload;

  (void)engine;
  st->input_done = 1;
  pump(st);
}

static void
on_wake(uv_async_t *h)
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
static void
reader_main(void *arg)
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
  pump(st);
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
  flow_engine_set_listener(st->e, on_event, st);

  /* The signal handles also keep the loop alive while input is open:
     the run ends only by flow_engine_stop(). */
  uv_signal_init(loop, &st->sigint);
  uv_signal_init(loop, &st->sigterm);
  uv_prepare_init(loop, &st->flush);
  uv_prepare_start(&st->flush, flush_out);
  uv_unref((uv_handle_t *)&st->flush);
  uv_async_init(loop, &st->wake, on_wake);
  st->sigint.data = st->sigterm.data = st->wake.data = st;
  uv_signal_start(&st->sigint, on_signal, SIGINT);
  uv_signal_start(&st->sigterm, on_signal, SIGTERM);

  if (uv_thread_create(&st->reader, reader_main, st) != 0) {
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
    req_free(r);
  }
  flow_engine_set_listener(st->e, NULL, NULL);
  if (reader_started)
    uv_thread_join(&st->reader);

out:
  uv_cond_destroy(&st->room);
  uv_mutex_destroy(&st->mu);
  free(st);
  return rc;
}
