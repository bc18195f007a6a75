/*
 * `flow check SCRIPT...`: validates service scripts without storing them.
 *
 * Each script is read here and given to flow_service_check() on a private
 * ":memory:" engine, so checking never creates or changes a database.  A
 * good script prints "SCRIPT: ok" on stdout; a bad one prints every problem
 * the library found, one "FILE:LINE: message" per line, on stderr.  All
 * scripts are checked even after a failure; the exit code is the worst one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int
cli_cmd_check(cli_ctx *ctx, const cli_args *args)
{
  int worst = CLI_EXIT_OK, rc, i;

  rc = cli_engine_open(ctx, CLI_DB_MEMORY);
  if (rc != 0)
    return rc;
  for (i = 0; i < args->npos; i++) {
    const char *path = args->pos[i];
    const char *name = strcmp(path, "-") == 0 ? "stdin" : path;
    size_t len;
    char *src = cli_read_file(path, &len);
    int err;

    if (src == NULL) {
      rc = CLI_EXIT_REFUSED;
    } else {
      err = flow_service_check(ctx->engine, src, len, name);
      if (err == 0) {
        printf("%s: ok\n", name);
        rc = CLI_EXIT_OK;
      } else {
        fflush(stdout);
        rc = cli_report_script(ctx, err);
      }
      free(src);
    }
    if (rc > worst)
      worst = rc;
  }
  return worst;
}
