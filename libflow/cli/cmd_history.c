/*
 * `flow history CASE`: prints a case's history, oldest first, one JSON
 * object per line ({"seq","at","actor","event","payload","from","to"}), so
 * that grep, sed and awk can work on it a line at a time.  The library's
 * array is split as text, so each line reads exactly as the library wrote
 * the entry.
 */
#include "cli.h"

int
cli_cmd_history(cli_ctx *ctx, const cli_args *args)
{
  char *out = NULL;
  int rc, err;

  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_case_history(&out, ctx->engine, args->pos[0]);
  if (err != 0)
    return cli_report(ctx, err);
  rc = cli_print_array_lines(out);
  flow_free(out);
  return rc;
}
