/*
 * `flow signal CASE EVENT [PAYLOAD]`: applies an event to a case and prints
 * the case after the transition as JSON.
 *
 * The actor is --actor with the roles of --roles.  PAYLOAD is a JSON object
 * given as text, as "-" (read standard input) or as "@FILE".  The library
 * refuses an event the current state does not accept, an actor without a
 * required role, a handler that calls flow.fail, and data that fails
 * validation; each is one line on stderr and exit code 1, and leaves the
 * case exactly as it was.
 */
#include <stdlib.h>

#include "cli.h"

int
cli_cmd_signal(cli_ctx *ctx, const cli_args *args)
{
  char *payload = NULL, *out = NULL;
  int rc, err;

  if (args->npos > 2) {
    rc = cli_json_arg(&payload, args->pos[2]);
    if (rc != 0)
      return rc;
  }
  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    goto out;
  err = flow_case_signal(
    &out, ctx->engine, args->pos[0], args->pos[1], payload, &ctx->actor);
  if (err != 0) {
    rc = cli_report(ctx, err);
    goto out;
  }
  cli_print_json(out);
  rc = CLI_EXIT_OK;

out:
  flow_free(out);
  free(payload);
  return rc;
}
