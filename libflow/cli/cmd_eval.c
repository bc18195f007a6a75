/*
 * `flow eval [-e CODE | FILE]`: runs a chunk of Lua in a fresh sandbox,
 * under the same rules and budgets as a handler, and prints its first
 * result as JSON (null when it returns nothing).  With neither -e nor FILE,
 * or with FILE "-", the code is read from standard input.
 *
 * The chunk runs on a private ":memory:" engine: eval never needs or
 * touches a database.  Errors carry the chunk's name and line:
 * "(command line):1: ..." for -e, the file name otherwise.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const cli_opt cli_eval_opts[] = { { "-e", 1 }, { NULL, 0 } };

int
cli_cmd_eval(cli_ctx *ctx, const cli_args *args)
{
  const char *code = cli_args_opt(args, "-e");
  const char *chunkname;
  char *buf = NULL, *out = NULL;
  size_t len;
  int rc, err;

  if (code != NULL && args->npos > 0)
    return cli_usage_errorf("give either -e CODE or FILE to 'flow eval', "
                            "not both");
  if (code != NULL) {
    chunkname = "(command line)";
    len = strlen(code);
  } else {
    const char *path = args->npos > 0 ? args->pos[0] : "-";
    chunkname = strcmp(path, "-") == 0 ? "stdin" : path;
    buf = cli_read_file(path, &len);
    if (buf == NULL)
      return CLI_EXIT_REFUSED;
    code = buf;
  }
  rc = cli_engine_open(ctx, CLI_DB_MEMORY);
  if (rc != 0)
    goto out;
  err = flow_eval(&out, ctx->engine, code, len, chunkname);
  if (err != 0) {
    rc = cli_report(ctx, err);
    goto out;
  }
  cli_print_json(out);
  rc = CLI_EXIT_OK;

out:
  flow_free(out);
  free(buf);
  return rc;
}
