/*
 * The task words: work for people that a service made with flow.task.
 *
 *   flow tasks [--team T] [--assignee A] [--status S] [--overdue] [--case C]
 *       the matching tasks, oldest first, one JSON object per line (a JSON
 *       array with --json);
 *   flow claim TASK / flow release TASK / flow cancel TASK
 *       take a task on as --actor, give it back, or cancel it; each prints
 *       {"status":"claimed","task":"7"} (the task's status after it);
 *   flow complete TASK [OUTCOME]
 *       completes it with OUTCOME (a JSON object checked against the
 *       task's form: text, "-" or "@FILE") and prints the case after the
 *       task's done event, as `flow signal` does.
 *
 * Refusals -- no such task, claimed by someone else, done or cancelled
 * already, an outcome the form does not take, an event the case does not
 * take -- are one line on stderr and exit 1, and change nothing.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

const cli_opt cli_tasks_opts[] = { { "--team", 1 },   { "--assignee", 1 },
                                   { "--status", 1 }, { "--overdue", 0 },
                                   { "--case", 1 },   { NULL, 0 } };

int
cli_cmd_tasks(cli_ctx *ctx, const cli_args *args)
{
  flow_task_query q = { 0 };
  char *out = NULL;
  int rc, err;

  q.case_id = cli_args_opt(args, "--case");
  q.team = cli_args_opt(args, "--team");
  q.assignee = cli_args_opt(args, "--assignee");
  q.status = cli_args_opt(args, "--status");
  q.overdue = cli_args_opt(args, "--overdue") != NULL;
  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_tasks_list(&out, ctx->engine, &q);
  if (err != 0)
    return cli_report(ctx, err);
  rc = cli_print_listing(ctx, out);
  flow_free(out);
  return rc;
}

/* Prints {"status":status,"task":id}. */
static int
print_status(const char *id, const char *status)
{
  char *s = cli_status_json("task", id, status);

  if (s == NULL) {
    cli_errorf("out of memory");
    return CLI_EXIT_FAILURE;
  }
  puts(s);
  free(s);
  return CLI_EXIT_OK;
}

/* claim, release and cancel: the call, then the task's new status. */
static int
change(cli_ctx *ctx,
       const cli_args *args,
       int (*fn)(flow_engine *, const char *, const flow_actor *),
       const char *status)
{
  int rc = cli_engine_open(ctx, CLI_DB_EXISTING), err;

  if (rc != 0)
    return rc;
  err = fn(ctx->engine, args->pos[0], &ctx->actor);
  if (err != 0)
    return cli_report(ctx, err);
  return print_status(args->pos[0], status);
}

int
cli_cmd_claim(cli_ctx *ctx, const cli_args *args)
{
  return change(ctx, args, flow_task_claim, "claimed");
}

int
cli_cmd_release(cli_ctx *ctx, const cli_args *args)
{
  return change(ctx, args, flow_task_release, "open");
}

int
cli_cmd_cancel(cli_ctx *ctx, const cli_args *args)
{
  return change(ctx, args, flow_task_cancel, "cancelled");
}

int
cli_cmd_complete(cli_ctx *ctx, const cli_args *args)
{
  char *outcome = NULL, *out = NULL;
  int rc, err;

  if (args->npos > 1) {
    rc = cli_json_arg(&outcome, args->pos[1]);
    if (rc != 0)
      return rc;
  }
  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    goto out;
  err =
    flow_task_complete(&out, ctx->engine, args->pos[0], outcome, &ctx->actor);
  if (err != 0) {
    rc = cli_report(ctx, err);
    goto out;
  }
  cli_print_json(out);
  rc = CLI_EXIT_OK;

out:
  flow_free(out);
  free(outcome);
  return rc;
}
