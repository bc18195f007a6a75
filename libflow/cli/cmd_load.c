/*
 * `flow load SCRIPT...`: stores service versions in the database.
 *
 * Each script is loaded with flow_service_load_file() ("-" reads one from
 * standard input); the database is created when it does not exist yet.  The
 * outcome is one line per script: "loaded NAME version N (sha256 ...)", or
 * "NAME version N is already loaded" when the identical source was stored
 * before, or with --json the library's JSON object.  All scripts are tried
 * even after a failure; the exit code is the worst one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

/* Prints what flow_service_load_*() returned in words. */
static void
print_loaded(const char *json)
{
  json_t *obj = json_loads(json, 0, NULL);
  const char *name = json_string_value(json_object_get(obj, "name"));
  const char *sha = json_string_value(json_object_get(obj, "sha256"));
  json_t *version = json_object_get(obj, "version");
  json_t *stored = json_object_get(obj, "stored");

  if (name == NULL || !json_is_integer(version)) {
    cli_print_json(json);
  } else if (json_is_false(stored)) {
    printf("%s version %" JSON_INTEGER_FORMAT " is already loaded\n",
           name,
           json_integer_value(version));
  } else {
    printf("loaded %s version %" JSON_INTEGER_FORMAT " (sha256 %.8s...)\n",
           name,
           json_integer_value(version),
           sha != NULL ? sha : "?");
  }
  json_decref(obj);
}

int
cli_cmd_load(cli_ctx *ctx, const cli_args *args)
{
  int worst = CLI_EXIT_OK, rc, i;

  rc = cli_engine_open(ctx, CLI_DB_CREATE);
  if (rc != 0)
    return rc;
  for (i = 0; i < args->npos; i++) {
    const char *path = args->pos[i];
    char *out = NULL;
    int err;

    if (strcmp(path, "-") == 0) {
      size_t len;
      char *src = cli_read_file(path, &len);
      if (src == NULL) {
        if (CLI_EXIT_REFUSED > worst)
          worst = CLI_EXIT_REFUSED;
        continue;
      }
      err = flow_service_load_string(&out, ctx->engine, src, len, "stdin");
      free(src);
    } else {
      err = flow_service_load_file(&out, ctx->engine, path);
    }
    if (err == 0) {
      if (ctx->json)
        cli_print_json(out);
      else
        print_loaded(out);
      rc = CLI_EXIT_OK;
    } else {
      fflush(stdout);
      rc = cli_report_script(ctx, err);
    }
    flow_free(out);
    if (rc > worst)
      worst = rc;
  }
  return worst;
}
