/*
 * The JSON-RPC 2.0 codec of `flow run`: a line of input becomes a queued
 * request, or a queued error response when it is not a valid request; a
 * result, an error or an event of the engine becomes a line of output,
 * one JSON object with sorted keys.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run_int.h"

/* ---- output ------------------------------------------------------------- */

/* Lines go into stdout's buffer; cli_run_flush_out, before the loop
   waits for anything, writes them.  So a response is written as soon as
   the loop round that made it is over, with one write for the round's
   lines rather than one per line. */
void
cli_run_write_line(const char *text)
{
  fputs(text, stdout);
  fputc('\n', stdout);
}

void
cli_run_flush_out(uv_prepare_t *h)
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
void
cli_run_set_result(req *r, const char *result_json)
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

void
cli_run_set_error(req *r, int code, json_t *data, const char *fmt, ...)
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
void
cli_run_set_flow_error(req *r, int err)
{
  flow_engine *e = r->st->e;
  const char *msg = flow_errmsg(e);

  if (msg == NULL || *msg == '\0')
    msg = flow_strerror(err);
  if (cli_exit_code(err) == CLI_EXIT_FAILURE)
    r->st->failure = 1;
  cli_run_set_error(r, err, json_pack("{s:s}", "name", flow_err_name(err)),
                    "%s", msg);
}

/* Notifications from the engine, written as they happen: the listener
   hears what the engine does on its own, not the client's own open and
   signal requests, which their responses already answer.  Tasks,
   messages and incidents are told whoever caused them (their notes have
   no "cause"), once the engine makes those notes: see cli_run_notes in
   run_queue.c. */
void
cli_run_on_event(flow_engine *engine, const char *event_json, void *payload)
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
    cli_run_write_line(text);
  }
  free(text);
  free(body);
}

/* ---- reading requests --------------------------------------------------- */

/* Turns one line into a queued request (or a queued error); a blank
   line is finished at once. */
void
cli_run_take_line(run_state *st, const char *text, size_t len)
{
  json_error_t jerr;
  json_t *msg, *v;
  req *r;

  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
                     text[len - 1] == ' ' || text[len - 1] == '\t'))
    len--;
  if (strspn(text, " \t") >= len || (r = cli_run_req_new(st)) == NULL) {
    st->answered++; /* a blank line, or one dropped for want of memory */
    return;
  }
  msg = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
  if (msg == NULL) {
    cli_run_set_error(r, RPC_PARSE_ERROR, NULL, "Parse error: %s at column %d",
                      jerr.text, jerr.column);
    return;
  }
  if (json_is_array(msg)) {
    cli_run_set_error(r, RPC_INVALID_REQUEST, NULL,
                      "Invalid Request: batches are not supported; send one "
                      "request per line");
    goto out;
  }
  if (!json_is_object(msg)) {
    cli_run_set_error(r, RPC_INVALID_REQUEST, NULL,
                      "Invalid Request: a request is a JSON object with "
                      "jsonrpc, id, method and params");
    goto out;
  }
  v = json_object_get(msg, "id");
  if (v != NULL && !json_is_string(v) && !json_is_number(v) &&
      !json_is_null(v)) {
    cli_run_set_error(r, RPC_INVALID_REQUEST, NULL,
                      "Invalid Request: 'id' must be a string, a number "
                      "or null");
    goto out;
  }
  r->id = json_incref(v);
  v = json_object_get(msg, "jsonrpc");
  if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0) {
    cli_run_set_error(r, RPC_INVALID_REQUEST, NULL,
                      "Invalid Request: 'jsonrpc' must be \"2.0\"");
    goto out;
  }
  v = json_object_get(msg, "method");
  if (!json_is_string(v)) {
    cli_run_set_error(r, RPC_INVALID_REQUEST, NULL,
                      "Invalid Request: 'method' must be a string");
    goto out;
  }
  v = json_object_get(msg, "params");
  if (v != NULL && !json_is_null(v) && !json_is_object(v)) {
    cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                      "Invalid params: 'params' must be an object");
    goto out;
  }
  r->params = json_is_object(v) ? json_incref(v) : json_object();
  r->method = strdup(json_string_value(json_object_get(msg, "method")));
  if (r->method == NULL || r->params == NULL) {
    cli_run_set_error(r, RPC_INVALID_REQUEST, NULL,
                      "Invalid Request: out of memory");
    free(r->method);
    r->method = NULL;
  }

out:
  json_decref(msg);
}
