/*
 * `flow actions [--case C] [--status S]`: the action requests the
 * services made with flow.call, oldest first, one JSON object per line
 * (a JSON array with --json): what was asked, of which action, with which
 * key, how many attempts, and how it ended.
 */
#include <stdio.h>

#include "cli.h"

const cli_opt cli_actions_opts[] = { { "--case", 1 },
                                     { "--status", 1 },
                                     { NULL, 0 } };

int
cli_cmd_actions(cli_ctx *ctx, const cli_args *args)
{
  char *out = NULL;
  int rc, err;

  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_actions_list(&out, ctx->engine, cli_args_opt(args, "--case"),
                          cli_args_opt(args, "--status"));
  if (err != 0)
    return cli_report(ctx, err);
  if (ctx->json) {
    puts(out);
    rc = 0;
  } else {
    rc = cli_print_array_lines(out);
  }
  flow_free(out);
  return rc;
}
