/*
 * The methods of `flow run` -- open, signal, show, history, list, timers,
 * actions, action_result and action_failed; tasks, claim, release,
 * complete, cancel; send, messages; incidents, retry and dismiss: which
 * parameters each takes, how they are read and checked, and how a
 * request is carried out once it is its turn (open and signal through
 * the asynchronous calls, the others at once).
 *
 * claim, release, cancel and dismiss answer {"status":..,"task":..} (or
 * "incident"), as the commands of the same names print; complete and
 * retry the case; send the message; the listings an array.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run_int.h"

/* ---- parameters --------------------------------------------------------- */

/* Parameters as the library wants them; strings borrowed from params or
   held in the owned members. */
typedef struct call_args {
  const char *service, *event, *state, *status;
  const char *request, *message; /* action_result, action_failed; send */
  char *result;                  /* owned JSON text, or NULL */
  char *outcome;                 /* complete: owned JSON text, or NULL */
  int retryable;
  const char *team, *assignee, *name; /* tasks, messages */
  int64_t ttl_ms;                     /* send: 0 for the default */
  const char *case_id; /* borrowed, or case_buf */
  char case_buf[32];
  const char *task_id, *incident_id, *key; /* borrowed, or in their bufs */
  char task_buf[32], incident_buf[32], key_buf[32];
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
  free(a->result);
  free(a->outcome);
  free(a->roles);
  for (i = 0; i < a->nwhere; i++)
    free((char *)a->where[i].value_json);
  free(a->where);
}

static const method_def methods[] = {
  { "open", 1, "service", "service data actor" },
  { "signal", 1, "case event", "case event payload actor" },
  { "show", 0, "case", "case" },
  { "history", 0, "case", "case" },
  { "list", 0, "", "service state status where limit overdue" },
  { "timers", 0, "case", "case" },
  { "actions", 0, "", "case status" },
  { "action_result", 0, "request", "request result" },
  { "action_failed", 0, "request", "request message retryable" },
  { "tasks", 0, "", "team assignee status overdue case" },
  { "claim", 0, "task", "task actor" },
  { "release", 0, "task", "task actor" },
  { "complete", 0, "task", "task outcome actor" },
  { "cancel", 0, "task", "task actor" },
  { "send", 0, "message key", "message key payload ttl" },
  { "messages", 0, "", "name key status" },
  { "incidents", 0, "", "case status" },
  { "retry", 0, "incident", "incident actor" },
  { "dismiss", 0, "incident", "incident actor" },
};

#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

const method_def *
cli_run_find_method(const char *name)
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

/*
 * An id parameter (case, task, incident; a message key): a string as it
 * is, or a whole number written in decimal into buf.  *dst is left alone
 * when the member is absent or null.  0, or -1 after setting r's error.
 */
static int
id_param(req *r, const char *name, const char *example, const char **dst,
         char *buf, size_t size)
{
  json_t *v = json_object_get(r->params, name);

  if (v == NULL || json_is_null(v))
    return 0;
  if (json_is_string(v)) {
    *dst = json_string_value(v);
  } else if (json_is_integer(v)) {
    snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    *dst = buf;
  } else {
    cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                      "Invalid params: '%s' must be %s", name, example);
    return -1;
  }
  return 0;
}

/* An object parameter as JSON text in *dst (owned); 0, or -1. */
static int
object_param(req *r, const char *name, char **dst)
{
  json_t *v = json_object_get(r->params, name);

  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_object(v)) {
    cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                      "Invalid params: '%s' must be a JSON object", name);
    return -1;
  }
  *dst = json_dumps(v, JSON_OUT);
  if (*dst == NULL) {
    cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                      "Invalid params: out of memory");
    return -1;
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
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: %s takes no '%s' (it takes: %s)",
                        m->name, key, m->allowed);
      return -1;
    }
  }
  /* Required members. */
  for (s = m->required; *s != '\0';) {
    size_t n = strcspn(s, " ");
    snprintf(word, sizeof(word), "%.*s", (int)n, s);
    if (json_object_get(p, word) == NULL) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
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
        cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,                         \
                          "Invalid params: '%s' must be a string", name);      \
        return -1;                                                             \
      }                                                                        \
      dst = json_string_value(v);                                              \
    }                                                                          \
  } while (0)

  STRING_PARAM("service", a->service);
  STRING_PARAM("event", a->event);
  STRING_PARAM("state", a->state);
  STRING_PARAM("status", a->status);
  STRING_PARAM("request", a->request);
  STRING_PARAM("message", a->message);
  STRING_PARAM("team", a->team);
  STRING_PARAM("assignee", a->assignee);
  STRING_PARAM("name", a->name);
#undef STRING_PARAM

  if (id_param(r, "task", "a task id such as \"7\"", &a->task_id,
               a->task_buf, sizeof(a->task_buf)) != 0 ||
      id_param(r, "incident", "an incident id such as \"3\"",
               &a->incident_id, a->incident_buf,
               sizeof(a->incident_buf)) != 0 ||
      id_param(r, "key", "text (or a whole number)", &a->key, a->key_buf,
               sizeof(a->key_buf)) != 0 ||
      object_param(r, "outcome", &a->outcome) != 0)
    return -1;
  v = json_object_get(p, "ttl");
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_string(v) ||
        cli_parse_duration(json_string_value(v), &a->ttl_ms) != 0) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: 'ttl' must be a duration such as "
                        "\"2h\" or \"3d\" (a whole number and s, m, h, d "
                        "or w)");
      return -1;
    }
  }

  v = json_object_get(p, "result");
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_object(v)) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: 'result' must be a JSON object");
      return -1;
    }
    a->result = json_dumps(v, JSON_OUT);
    if (a->result == NULL) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: out of memory");
      return -1;
    }
  }
  v = json_object_get(p, "retryable");
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_boolean(v)) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: 'retryable' must be true or false");
      return -1;
    }
    a->retryable = json_is_true(v);
  }

  if (id_param(r, "case", "a case id such as \"1\"", &a->case_id,
               a->case_buf, sizeof(a->case_buf)) != 0)
    return -1;

  v = json_object_get(p, has_word(m->allowed, "data") ? "data" : "payload");
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_object(v)) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: '%s' must be a JSON object",
                        has_word(m->allowed, "data") ? "data" : "payload");
      return -1;
    }
    a->data = json_dumps(v, JSON_OUT);
    if (a->data == NULL) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: out of memory");
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
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
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
        cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                          "Invalid params: out of memory");
        return -1;
      }
      for (i = 0; i < json_array_size(roles); i++) {
        json_t *role = json_array_get(roles, i);
        if (!json_is_string(role)) {
          cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                            "Invalid params: actor roles must be strings");
          return -1;
        }
        a->roles[i] = json_string_value(role);
      }
      a->actor.roles = (const char *const *)a->roles;
      a->actor.nroles = json_array_size(roles);
    }
  }

  if (strcmp(m->name, "list") == 0 && a->status != NULL &&
      strcmp(a->status, "open") != 0 && strcmp(a->status, "closed") != 0) {
    cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                      "Invalid params: 'status' must be \"open\" or "
                      "\"closed\"");
    return -1;
  }
  v = json_object_get(p, "limit");
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: 'limit' must be a whole number "
                        "above 0");
      return -1;
    }
    a->limit = (size_t)json_integer_value(v);
  }
  v = json_object_get(p, "overdue");
  if (v != NULL && !json_is_null(v)) {
    if (!json_is_boolean(v)) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: 'overdue' must be true or false");
      return -1;
    }
    a->overdue = json_is_true(v);
  }
  v = json_object_get(p, "where");
  if (v != NULL && !json_is_null(v)) {
    json_t *value;

    if (!json_is_object(v)) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: 'where' must be an object of "
                        "field: value");
      return -1;
    }
    a->where = calloc(json_object_size(v) + 1, sizeof(*a->where));
    if (a->where == NULL) {
      cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                        "Invalid params: out of memory");
      return -1;
    }
    json_object_foreach(v, key, value)
    {
      if (json_is_object(value) || json_is_array(value)) {
        cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
                          "Invalid params: where.%s must be a string, number, "
                          "true, false or null",
                          key);
        return -1;
      }
      a->where[a->nwhere].field = key;
      a->where[a->nwhere].value_json = json_dumps(value, JSON_OUT);
      if (a->where[a->nwhere].value_json == NULL) {
        cli_run_set_error(r, RPC_INVALID_PARAMS, NULL,
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
    cli_run_set_result(r, case_json);
  else
    cli_run_set_flow_error(r, status != 0 ? status : FLOW_ERROR);
  /* (Not once the run is closing: a call answered as the engine
     closes needs no notes.) */
  if (--st->inflight == 0 && !st->closed)
    cli_run_notes(st, 1);
  cli_run_pump(st);
}

/* Starts an asynchronous request, or answers it at once when it can be
   refused without the database. */
static void
start_async(req *r, const method_def *m, call_args *a)
{
  run_state *st = r->st;
  int err;

  cli_run_notes(st, 0);
  if (strcmp(m->name, "open") == 0)
    err = flow_case_open_async(st->e, a->service, a->data, &a->actor,
                               on_call_done, r);
  else
    err = flow_case_signal_async(st->e, a->case_id, a->event, a->data,
                                 &a->actor, on_call_done, r);
  if (err != 0) {
    cli_run_set_flow_error(r, err);
    if (st->inflight == 0)
      cli_run_notes(st, 1);
    return;
  }
  r->state = REQ_STARTED;
  st->inflight++;
}

/* The answer {"status":status,kind:id}, as the commands print it. */
static void
set_status(req *r, const char *kind, const char *id, const char *status)
{
  char *s = cli_status_json(kind, id, status);

  if (s == NULL) {
    cli_run_set_error(r, FLOW_ENOMEM,
                      json_pack("{s:s}", "name", flow_err_name(FLOW_ENOMEM)),
                      "out of memory");
    r->st->failure = 1;
    return;
  }
  cli_run_set_result(r, s);
  free(s);
}

/* claim, release, cancel, dismiss: the call, then the status object.
   1 when m is one of them (r is answered), 0 otherwise. */
static int
run_change(req *r, const method_def *m, call_args *a)
{
  flow_engine *e = r->st->e;
  const char *kind = "task", *id = a->task_id, *status;
  int err;

  if (strcmp(m->name, "claim") == 0) {
    err = flow_task_claim(e, id, &a->actor);
    status = "claimed";
  } else if (strcmp(m->name, "release") == 0) {
    err = flow_task_release(e, id, &a->actor);
    status = "open";
  } else if (strcmp(m->name, "cancel") == 0) {
    err = flow_task_cancel(e, id, &a->actor);
    status = "cancelled";
  } else if (strcmp(m->name, "dismiss") == 0) {
    kind = "incident";
    id = a->incident_id;
    err = flow_incident_dismiss(e, id, &a->actor);
    status = "dismissed";
  } else {
    return 0;
  }
  if (err != 0)
    cli_run_set_flow_error(r, err);
  else
    set_status(r, kind, id, status);
  return 1;
}

static void
run_sync(req *r, const method_def *m, call_args *a)
{
  flow_engine *e = r->st->e;
  char *out = NULL;
  int err;

  if (run_change(r, m, a))
    return;
  if (strcmp(m->name, "tasks") == 0) {
    flow_task_query q = { 0 };
    q.case_id = a->case_id;
    q.team = a->team;
    q.assignee = a->assignee;
    q.status = a->status;
    q.overdue = a->overdue;
    err = flow_tasks_list(&out, e, &q);
  } else if (strcmp(m->name, "complete") == 0) {
    err = flow_task_complete(&out, e, a->task_id, a->outcome, &a->actor);
  } else if (strcmp(m->name, "send") == 0) {
    err = flow_message_send(&out, e, a->message, a->key, a->data, a->ttl_ms);
  } else if (strcmp(m->name, "messages") == 0) {
    err = flow_messages_list(&out, e, a->name, a->key, a->status);
  } else if (strcmp(m->name, "incidents") == 0) {
    err = flow_incidents_list(&out, e, a->case_id, a->status);
  } else if (strcmp(m->name, "retry") == 0) {
    err = flow_incident_retry(&out, e, a->incident_id, &a->actor);
    if (err == 0 && out == NULL) {
      /* An action dispatched once more: no case to give yet. */
      set_status(r, "incident", a->incident_id, "resolved");
      return;
    }
  } else if (strcmp(m->name, "show") == 0) {
    err = flow_case_get(&out, e, a->case_id);
  } else if (strcmp(m->name, "history") == 0) {
    err = flow_case_history(&out, e, a->case_id);
  } else if (strcmp(m->name, "timers") == 0) {
    err = flow_case_timers(&out, e, a->case_id);
  } else if (strcmp(m->name, "actions") == 0) {
    err = flow_actions_list(&out, e, a->case_id, a->status);
  } else if (strcmp(m->name, "action_result") == 0 ||
             strcmp(m->name, "action_failed") == 0) {
    err = m->name[7] == 'r'
              ? flow_action_complete(e, a->request, a->result)
              : flow_action_fail(e, a->request, a->retryable, a->message);
    if (err == 0)
      cli_run_set_result(r, "true");
    else
      cli_run_set_flow_error(r, err);
    return;
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
    cli_run_set_result(r, out);
  else
    cli_run_set_flow_error(r, err);
  flow_free(out);
}

/* Starts or carries out r, whose turn it is. */
void
cli_run_dispatch(req *r)
{
  const method_def *m = cli_run_find_method(r->method);
  call_args a;

  memset(&a, 0, sizeof(a));
  if (m == NULL) {
    cli_run_set_error(r, RPC_METHOD_NOT_FOUND, NULL,
                      "Method not found: '%s' (methods: open, signal, show, "
                      "history, list, timers, actions, action_result, "
                      "action_failed, tasks, claim, release, complete, "
                      "cancel, send, messages, incidents, retry, dismiss)",
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
