/*
 * `flow open SERVICE [DATA]`: opens a case and prints it as JSON.
 *
 * DATA is a JSON object given as text, as "-" (read standard input) or as
 * "@FILE".  The library runs the initial state's enter hook and validates
 * the data; any refusal is one line on stderr and exit code 1.
 */
#include <stdlib.h>

#include "cli.h"

int
cli_cmd_open(cli_ctx *ctx, const cli_args *args)
{
  char *data = NULL, *out = NULL;
  int rc, err;

  if (args->npos > 1) {
    rc = cli_json_arg(&data, args->pos[1]);
    if (rc != 0)
      return rc;
  }
  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    goto out;
  err = flow_case_open(&out, ctx->engine, args->pos[0], data, &ctx->actor);
  if (err != 0) {
    rc = cli_report(ctx, err);
    goto out;
  }
  cli_print_json(out);
  rc = CLI_EXIT_OK;

out:
  flow_free(out);
  free(data);
  return rc;
}
