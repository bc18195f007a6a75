/*
 * `flow run --action NAME=ok|fail|stdin`: answering actions without a
 * host.  `ok` completes each request at once with an empty result, `fail`
 * fails it (not worth retrying), and `stdin` writes it as an "action"
 * notification and leaves the answer to the client, which sends it back
 * as an action_result or action_failed request.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run_int.h"

static void
answer(flow_engine *e, const flow_request *rq, void *payload)
{
  run_action *a = payload;
  int err = 0;

  if (a->mode == RUN_ACTION_OK) {
    err = flow_action_complete(e, rq->id, "{}");
  } else if (a->mode == RUN_ACTION_FAIL) {
    char msg[160];
    snprintf(msg, sizeof(msg), "failed by flow run --action %s=fail",
             rq->action);
    err = flow_action_fail(e, rq->id, 0, msg);
  } else {
    json_t *args = json_loads(rq->args_json, 0, NULL);
    json_t *n = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:o, s:s, s:i}}",
                          "jsonrpc", "2.0", "method", "action", "params",
                          "request", rq->id, "action", rq->action, "case",
                          rq->case_id, "args", args ? args : json_object(),
                          "key", rq->key, "attempt", rq->attempt);
    char *text = n ? json_dumps(n, JSON_OUT) : NULL;
    if (text == NULL) {
      cli_errorf("out of memory writing an action request");
      a->st->failure = 1;
    } else {
      cli_run_write_line(text);
    }
    free(text);
    json_decref(n);
  }
  if (err != 0) {
    cli_report(a->st->ctx, err);
    if (cli_exit_code(err) == CLI_EXIT_FAILURE)
      a->st->failure = 1;
  }
}

int
cli_run_register_actions(run_state *st, const cli_args *args)
{
  for (int i = 0; i < args->nopts; i++) {
    const char *v = args->opts[i].value, *eq;
    if (strcmp(args->opts[i].name, "--action") != 0)
      continue;
    eq = v ? strchr(v, '=') : NULL;
    if (eq == NULL || eq == v)
      return cli_usage_errorf("--action takes NAME=ok, NAME=fail or "
                              "NAME=stdin, not '%s'",
                              v ? v : "");
    if (st->nactions == RUN_ACTIONS_MAX)
      return cli_usage_errorf("at most %d --action options",
                              RUN_ACTIONS_MAX);
    run_action *a = &st->actions[st->nactions];
    if (strcmp(eq + 1, "ok") == 0)
      a->mode = RUN_ACTION_OK;
    else if (strcmp(eq + 1, "fail") == 0)
      a->mode = RUN_ACTION_FAIL;
    else if (strcmp(eq + 1, "stdin") == 0)
      a->mode = RUN_ACTION_STDIN;
    else
      return cli_usage_errorf("--action %s: the answer must be ok, fail or "
                              "stdin",
                              v);
    snprintf(a->name, sizeof(a->name), "%.*s", (int)(eq - v), v);
    a->st = st;
    int err = flow_action_register(st->e, a->name, answer, a);
    if (err != 0)
      return cli_report(st->ctx, err);
    st->nactions++;
  }
  return 0;
}
