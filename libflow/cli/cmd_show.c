/*
 * `flow show CASE`: prints one case as a JSON object on one line, exactly
 * as flow_case_get() returns it.
 */
#include "cli.h"

int
cli_cmd_show(cli_ctx *ctx, const cli_args *args)
{
  char *out = NULL;
  int rc, err;

  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_case_get(&out, ctx->engine, args->pos[0]);
  if (err != 0)
    return cli_report(ctx, err);
  cli_print_json(out);
  flow_free(out);
  return CLI_EXIT_OK;
}
