/*
 * Incidents: events nobody could be told were refused -- a timer's, an
 * action's reply or fail event, a message -- kept for a person to look at.
 *
 *   flow incidents [--case C] [--status open|resolved|dismissed]
 *       the incidents, oldest first, one JSON object per line (a JSON
 *       array with --json): the event, where it came from, why it was
 *       refused (code and error, with the script's file and line);
 *   flow retry INCIDENT
 *       applies its event again, as the case is now (say once it has
 *       moved on to a state that takes it) and prints the case; refused
 *       again, it stays open and the refusal is one line on stderr (exit
 *       1).  An action that failed with no fail event is dispatched once
 *       more instead: that prints {"incident":"3","status":"resolved"};
 *   flow dismiss INCIDENT
 *       closes it without applying the event and prints
 *       {"incident":"3","status":"dismissed"}.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

const cli_opt cli_incidents_opts[] = { { "--case", 1 },
                                       { "--status", 1 },
                                       { NULL, 0 } };

/* Prints {"incident":id,"status":status}. */
static int
print_status(const char *id, const char *status)
{
  char *s = cli_status_json("incident", id, status);

  if (s == NULL) {
    cli_errorf("out of memory");
    return CLI_EXIT_FAILURE;
  }
  puts(s);
  free(s);
  return CLI_EXIT_OK;
}

int
cli_cmd_incidents(cli_ctx *ctx, const cli_args *args)
{
  char *out = NULL;
  int rc, err;

  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_incidents_list(&out,
                            ctx->engine,
                            cli_args_opt(args, "--case"),
                            cli_args_opt(args, "--status"));
  if (err != 0)
    return cli_report(ctx, err);
  rc = cli_print_listing(ctx, out);
  flow_free(out);
  return rc;
}

int
cli_cmd_retry(cli_ctx *ctx, const cli_args *args)
{
  char *out = NULL;
  int rc, err;

  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_incident_retry(&out, ctx->engine, args->pos[0], &ctx->actor);
  if (err != 0)
    return cli_report(ctx, err);
  if (out != NULL) {
    cli_print_json(out);
    flow_free(out);
    return CLI_EXIT_OK;
  }
  /* An action that failed with no fail event is dispatched once more
     instead: there is no case to show yet. */
  return print_status(args->pos[0], "resolved");
}

int
cli_cmd_dismiss(cli_ctx *ctx, const cli_args *args)
{
  int rc, err;

  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_incident_dismiss(ctx->engine, args->pos[0], &ctx->actor);
  if (err != 0)
    return cli_report(ctx, err);
  return print_status(args->pos[0], "dismissed");
}
