/*
 * `flow schema SERVICE [--version N]` and `flow services`: what a host
 * needs to build forms and pick a service.
 *
 * schema prints flow_service_schema()'s JSON Schema (draft 2020-12) of the
 * service's fields, of version N or the newest stored one, as one JSON
 * object.  services prints flow_service_list()'s stored versions, oldest
 * first, as a table (NAME, VER, TITLE, LOADED, SHA256 shortened to 12
 * digits), or with --json the library's JSON array as it is.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

const cli_opt cli_schema_opts[] = { { "--version", 1 }, { NULL, 0 } };

/* The largest --version accepted: versions are positive int64s. */
#define VERSION_MAX 9223372036854775807LL

int
cli_cmd_schema(cli_ctx *ctx, const cli_args *args)
{
  const char *ver = cli_args_opt(args, "--version");
  long long version = 0;
  char *out = NULL;
  int rc, err;

  if (ver != NULL) {
    char *end;

    errno = 0;
    version = strtoll(ver, &end, 10);
    if (ver[0] < '0' || ver[0] > '9' || *end != '\0' || errno != 0 ||
        version <= 0)
      return cli_usage_errorf("--version must be a whole number above 0, "
                              "not '%s'",
                              ver);
  }
  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_service_schema(&out, ctx->engine, args->pos[0],
                            (int64_t)version);
  if (err != 0)
    return cli_report(ctx, err);
  cli_print_json(out);
  flow_free(out);
  return CLI_EXIT_OK;
}

#define NCOLS 5

/* A member of a service as text for the table: "-" when null or
   missing; the SHA-256 shortened to its first 12 digits. */
static int
print_table(const char *text)
{
  static const char *const heads[NCOLS] = { "SERVICE", "VER", "LOADED",
                                            "SHA256", "TITLE" };
  static const char *const keys[NCOLS] = { "name", "version", "loaded_at",
                                           "sha256", "title" };
  static const int cut[NCOLS] = { 0, 0, 0, 12, 0 };
  return cli_print_table(text, heads, keys, NCOLS, cut) < 0 ? CLI_EXIT_FAILURE
                                                           : CLI_EXIT_OK;

}

int
cli_cmd_services(cli_ctx *ctx, const cli_args *args)
{
  char *out = NULL;
  int rc, err;

  (void)args;
  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_service_list(&out, ctx->engine);
  if (err != 0)
    return cli_report(ctx, err);
  if (ctx->json) {
    cli_print_json(out);
    rc = CLI_EXIT_OK;
  } else {
    rc = print_table(out);
  }
  flow_free(out);
  return rc;
}
