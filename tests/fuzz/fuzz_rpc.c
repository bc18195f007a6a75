/*
 * Fuzz target: the `flow run` JSON-RPC protocol, in process.
 *
 * libFuzzer needs the code under test in its own process, and `flow run`
 * reads standard input from a thread of its own, so rather than drive the
 * binary this target speaks the protocol to the public API the way
 * libflow/cli/run_rpc.c and run_methods.c do: each input line is parsed
 * with Jansson, checked as a JSON-RPC 2.0 request (jsonrpc "2.0", a string
 * method, an object of params, an id that is a string, a number or null,
 * or none for a notification), its params are read with the same rules as
 * run_methods.c's read_params (allowed and required members,
 * string/integer case ids, object data and payload, an actor object with
 * string roles, scalar where values), and it is dispatched to open and
 * signal (asynchronous, so that requests arriving together share a group
 * commit, flushed before any later request is read) or show, history,
 * list and timers.  The bytes thus reach every parameter of every method
 * with any JSON a client could send.
 *
 * Invariants: every request with an id gets exactly one response, which
 * is JSON; an error from the library is one of the refusals a client can
 * cause (never FLOW_ERROR, FLOW_EIO, FLOW_EBUSY or FLOW_EMISUSE) and has a
 * message; a result is the JSON the call documents.  The engine (in
 * memory, one service) is kept between inputs and replaced every 100.
 */
#define _POSIX_C_SOURCE 200809L

#include <flow.h>
#include <jansson.h>
#include <string.h>

#include "fuzz.h"

static const char SERVICE[] =
    "return {\n"
    "  name = 'bins', version = 1,\n"
    "  fields = {\n"
    "    uprn = { type = 'string', required = true, pattern = '^%d+$',"
    " max = 12, index = true },\n"
    "    crew = { type = 'string', max = 40 },\n"
    "    day = { type = 'date' },\n"
    "    n = { type = 'integer' },\n"
    "  },\n"
    "  initial = 'reported',\n"
    "  sla = { within = '5 working days' },\n"
    "  states = {\n"
    "    reported = {\n"
    "      after = { ['2 working days'] = 'escalated' },\n"
    "      on = {\n"
    "        assign = function(case, ev)\n"
    "          if not ev.payload.crew then flow.fail('which crew?') end\n"
    "          case.data.crew = ev.payload.crew\n"
    "          return 'assigned'\n"
    "        end,\n"
    "        touch = function(case, ev) case.data.n = (case.data.n or 0) + 1"
    " end,\n"
    "      },\n"
    "    },\n"
    "    assigned = { on = {\n"
    "      schedule = function(case, ev) case.data.day = ev.payload.day;"
    " return 'scheduled' end,\n"
    "      collect = { to = 'closed', roles = { 'crew' } },\n"
    "    } },\n"
    "    scheduled = { on = { collect = 'closed' } },\n"
    "    escalated = { on = { collect = { to = 'closed', roles = {"
    " 'supervisor' } } } },\n"
    "    closed = { final = true },\n"
    "  },\n"
    "}\n";

#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602

static flow_engine *E;
static long RUNS;

void
fuzz_cleanup(void)
{
  flow_engine_close(E);
  E = NULL;
}

static void
engine_up(void)
{
  if (E && RUNS % 100 != 0)
    return;
  fuzz_cleanup();
  char err[256];
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  o.synchronous = FLOW_SYNC_OFF;
  FUZZ_CHECK(flow_engine_open(&E, ":memory:", &o, err, sizeof err) == 0,
             "open: %s", err);
  FUZZ_CHECK(flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE),
                                      "bins.lua") == 0,
             "load: %s", flow_errmsg(E));
  const char *uprns[] = { "{\"uprn\":\"1\"}", "{\"uprn\":\"22\"}" };
  for (int i = 0; i < 2; i++)
    FUZZ_CHECK(flow_case_open(NULL, E, "bins", uprns[i], NULL) == 0,
               "seed case: %s", flow_errmsg(E));
}

/* A response: checks its shape. */
static void
respond(json_t *id, int code, const char *result, const char *msg)
{
  json_t *r = json_object();
  json_object_set_new(r, "jsonrpc", json_string("2.0"));
  json_object_set(r, "id", id ? id : json_null());
  if (result) {
    json_t *v = json_loads(result, JSON_DECODE_ANY, NULL);
    FUZZ_CHECK(v != NULL, "a result that is not JSON: %.300s", result);
    json_object_set_new(r, "result", v);
  } else {
    if (code < 0 && code > -1000) {
      FUZZ_CHECK(code != FLOW_ERROR && code != FLOW_EIO &&
                     code != FLOW_EBUSY && code != FLOW_EMISUSE &&
                     code != FLOW_ENOMEM,
                 "the library failed with %s on a client's request: %s",
                 flow_err_name(code), msg);
      FUZZ_CHECK(msg && msg[0], "%s with no message", flow_err_name(code));
    }
    json_t *e = json_pack("{s:i, s:s?}", "code", code, "message", msg);
    FUZZ_CHECK(e != NULL, "an error message that is not UTF-8: %.200s", msg);
    json_object_set_new(r, "error", e);
  }
  char *line = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
  FUZZ_CHECK(line != NULL && strchr(line, '\n') == NULL,
             "a response that is not one line");
  free(line);
  json_decref(r);
}

/* ---- parameters, as run_methods.c reads them ---------------------------- */

typedef struct args {
  const char *service, *event, *state, *status, *case_id;
  char case_buf[32];
  char *data;
  flow_actor actor;
  const char *roles[16];
  flow_where where[16];
  char *where_text[16];
  size_t nwhere, limit;
  int overdue;
} args;

static void
args_free(args *a)
{
  free(a->data);
  for (size_t i = 0; i < a->nwhere; i++)
    free(a->where_text[i]);
}

/* 1 when word is one of the space-separated words of list.  An empty
   word is none of them: strstr finds "" everywhere, and stepping by its
   length never moves on.  (run_methods.c's copy loops forever on a params
   member named "": the regression regressions/fuzz_rpc/empty-member-name
   replays it through the real `flow run`.) */
static int
has_word(const char *list, const char *word)
{
  size_t n = strlen(word);
  if (n == 0)
    return 0;
  for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
    if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0))
      return 1;
  return 0;
}

/* 0, or an RPC error code. */
static int
read_args(json_t *p, const char *required, const char *allowed, args *a)
{
  const char *key;
  json_t *v;
  json_object_foreach(p, key, v)
  {
    if (!has_word(allowed, key))
      return RPC_INVALID_PARAMS;
  }
  char word[32];
  for (const char *s = required; *s;) {
    size_t n = strcspn(s, " ");
    snprintf(word, sizeof word, "%.*s", (int)n, s);
    if (json_object_get(p, word) == NULL)
      return RPC_INVALID_PARAMS;
    s += n;
    while (*s == ' ')
      s++;
  }
  const char *names[] = { "service", "event", "state", "status" };
  const char **dst[] = { &a->service, &a->event, &a->state, &a->status };
  for (int i = 0; i < 4; i++) {
    v = json_object_get(p, names[i]);
    if (v && !json_is_null(v)) {
      if (!json_is_string(v))
        return RPC_INVALID_PARAMS;
      *dst[i] = json_string_value(v);
    }
  }
  v = json_object_get(p, "case");
  if (v) {
    if (json_is_string(v)) {
      a->case_id = json_string_value(v);
    } else if (json_is_integer(v)) {
      snprintf(a->case_buf, sizeof a->case_buf, "%" JSON_INTEGER_FORMAT,
               json_integer_value(v));
      a->case_id = a->case_buf;
    } else {
      return RPC_INVALID_PARAMS;
    }
  }
  v = json_object_get(p, has_word(allowed, "data") ? "data" : "payload");
  if (v && !json_is_null(v)) {
    if (!json_is_object(v))
      return RPC_INVALID_PARAMS;
    a->data = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    if (a->data == NULL)
      return RPC_INVALID_PARAMS;
  }
  v = json_object_get(p, "actor");
  if (v && !json_is_null(v)) {
    json_t *id = json_object_get(v, "id"), *roles = json_object_get(v, "roles");
    if (!json_is_object(v) || !json_is_string(id) ||
        (roles && !json_is_null(roles) && !json_is_array(roles)) ||
        json_array_size(roles) > 16)
      return RPC_INVALID_PARAMS;
    a->actor.id = json_string_value(id);
    for (size_t i = 0; i < json_array_size(roles); i++) {
      if (!json_is_string(json_array_get(roles, i)))
        return RPC_INVALID_PARAMS;
      a->roles[i] = json_string_value(json_array_get(roles, i));
    }
    a->actor.roles = a->roles;
    a->actor.nroles = json_array_size(roles);
  }
  if (a->status && strcmp(a->status, "open") && strcmp(a->status, "closed"))
    return RPC_INVALID_PARAMS;
  v = json_object_get(p, "limit");
  if (v && !json_is_null(v)) {
    if (!json_is_integer(v) || json_integer_value(v) < 1)
      return RPC_INVALID_PARAMS;
    a->limit = (size_t)json_integer_value(v);
  }
  v = json_object_get(p, "overdue");
  if (v && !json_is_null(v)) {
    if (!json_is_boolean(v))
      return RPC_INVALID_PARAMS;
    a->overdue = json_is_true(v);
  }
  v = json_object_get(p, "where");
  if (v && !json_is_null(v)) {
    json_t *value;
    if (!json_is_object(v) || json_object_size(v) > 16)
      return RPC_INVALID_PARAMS;
    json_object_foreach(v, key, value)
    {
      if (json_is_object(value) || json_is_array(value))
        return RPC_INVALID_PARAMS;
      a->where[a->nwhere].field = key;
      a->where_text[a->nwhere] = json_dumps(value, JSON_ENCODE_ANY);
      a->where[a->nwhere].value_json = a->where_text[a->nwhere];
      if (a->where_text[a->nwhere] == NULL)
        return RPC_INVALID_PARAMS;
      a->nwhere++;
    }
  }
  return 0;
}

/* ---- asynchronous calls in flight ---------------------------------------- */

typedef struct call {
  json_t *id;
  int done;
} call;

static call CALLS[64];
static int NCALLS;

static void
on_done(flow_engine *e, int status, const char *case_json, void *payload)
{
  call *c = payload;
  FUZZ_CHECK(!c->done, "a callback came twice");
  c->done = 1;
  FUZZ_CHECK((status == 0) == (case_json != NULL),
             "status %d with case %p", status, (const void *)case_json);
  respond(c->id, status, status == 0 ? case_json : NULL, flow_errmsg(e));
}

/* Completes every call in flight, as cmd_run.c does before a request
   that must see their effects. */
static void
settle(void)
{
  for (int round = 0; round < 8; round++) {
    int open = 0;
    for (int i = 0; i < NCALLS; i++)
      open += !CALLS[i].done;
    if (open == 0)
      break;
    FUZZ_CHECK(flow_engine_run(E, FLOW_RUN_NOWAIT) >= 0, "run: %s",
               flow_errmsg(E));
  }
  for (int i = 0; i < NCALLS; i++) {
    FUZZ_CHECK(CALLS[i].done, "an asynchronous call never completed");
    json_decref(CALLS[i].id);
  }
  NCALLS = 0;
}

/* ---- one line ------------------------------------------------------------ */

static void
take_line(const char *line, size_t len)
{
  json_error_t jerr;
  json_t *req = json_loadb(line, len, 0, &jerr);
  if (req == NULL) {
    respond(NULL, RPC_PARSE_ERROR, NULL, jerr.text);
    return;
  }
  json_t *id = json_object_get(req, "id");
  json_t *method = json_object_get(req, "method");
  json_t *params = json_object_get(req, "params");
  const char *ver = json_string_value(json_object_get(req, "jsonrpc"));
  if (!json_is_object(req) || ver == NULL || strcmp(ver, "2.0") != 0 ||
      !json_is_string(method) ||
      (id && !json_is_string(id) && !json_is_number(id) && !json_is_null(id)) ||
      (params && !json_is_object(params) && !json_is_null(params))) {
    respond(id, RPC_INVALID_REQUEST, NULL, "Invalid Request");
    json_decref(req);
    return;
  }
  static const struct {
    const char *name;
    int async;
    const char *required, *allowed;
  } methods[] = {
    { "open", 1, "service", "service data actor" },
    { "signal", 1, "case event", "case event payload actor" },
    { "show", 0, "case", "case" },
    { "history", 0, "case", "case" },
    { "list", 0, "", "service state status where limit overdue" },
    { "timers", 0, "case", "case" },
  };
  const char *name = json_string_value(method);
  size_t m;
  for (m = 0; m < sizeof methods / sizeof *methods; m++)
    if (strcmp(methods[m].name, name) == 0)
      break;
  if (m == sizeof methods / sizeof *methods) {
    respond(id, RPC_METHOD_NOT_FOUND, NULL, "Method not found");
    json_decref(req);
    return;
  }
  args a;
  memset(&a, 0, sizeof a);
  json_t *empty = json_object();
  int rc = read_args(json_is_object(params) ? params : empty,
                     methods[m].required, methods[m].allowed, &a);
  json_decref(empty);
  const flow_actor *actor = a.actor.id ? &a.actor : NULL;
  if (rc != 0) {
    respond(id, rc, NULL, "Invalid params");
  } else if (methods[m].async) {
    if (NCALLS == 64)
      settle();
    call *c = &CALLS[NCALLS];
    c->id = id ? json_incref(id) : NULL;
    c->done = 0;
    if (strcmp(name, "open") == 0)
      rc = flow_case_open_async(E, a.service, a.data, actor, on_done, c);
    else
      rc = flow_case_signal_async(E, a.case_id, a.event, a.data, actor,
                                  on_done, c);
    if (rc != 0) {
      respond(id, rc, NULL, flow_errmsg(E));
      json_decref(c->id);
    } else {
      NCALLS++;
    }
  } else {
    settle();
    char *out = NULL;
    if (strcmp(name, "show") == 0) {
      rc = flow_case_get(&out, E, a.case_id);
    } else if (strcmp(name, "history") == 0) {
      rc = flow_case_history(&out, E, a.case_id);
    } else if (strcmp(name, "timers") == 0) {
      rc = flow_case_timers(&out, E, a.case_id);
    } else {
      flow_case_query q = FLOW_CASE_QUERY_INIT;
      q.service = a.service;
      q.state = a.state;
      q.status = a.status;
      q.where = a.where;
      q.nwhere = a.nwhere;
      q.limit = a.limit;
      q.overdue = a.overdue;
      rc = flow_case_list(&out, E, &q);
    }
    FUZZ_CHECK((rc == 0) == (out != NULL), "%s: rc %d and out %p", name, rc,
               (void *)out);
    respond(id, rc, rc == 0 ? out : NULL, flow_errmsg(E));
    flow_free(out);
  }
  args_free(&a);
  json_decref(req);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size > 1 << 20)
    return 0;
  engine_up();
  RUNS++;
  const char *p = (const char *)data, *end = p + size;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (len > 0)
      take_line(p, len);
    p += len + 1;
  }
  settle();
  return 0;
}
