/*
 * `flow check [--strict] SCRIPT...`: validates service scripts without
 * storing them.
 *
 * Each script is read here and given to flow_service_lint() on a private
 * ":memory:" engine, so checking never creates or changes a database.  A
 * script that does not load prints every problem the library found, one
 * "FILE:LINE: message" per line, on stderr (exit 1).  One that loads but
 * has something suspicious -- a state nothing reaches, a state a case gets
 * stuck in, a timer that can never fire -- prints each as
 * "FILE:LINE: warning: message" on stderr; warnings alone exit 0, or 1
 * with --strict.  A script with neither prints "SCRIPT: ok" on stdout.
 * All scripts are checked even after a failure; the exit code is the
 * worst one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

const cli_opt cli_check_opts[] = { { "--strict", 0 }, { NULL, 0 } };

/* Prints the warnings of one lint result; returns how many. */
static size_t
print_warnings(const char *name, const char *json)
{
  json_t *j = json_loads(json, 0, NULL);
  json_t *w = json_object_get(j, "warnings");
  size_t i, n = json_array_size(w);

  for (i = 0; i < n; i++) {
    json_t *one = json_array_get(w, i);
    fprintf(stderr,
            "%s:%lld: warning: %s\n",
            name,
            (long long)json_integer_value(json_object_get(one, "line")),
            json_string_value(json_object_get(one, "message")));
  }
  json_decref(j);
  return n;
}

int
cli_cmd_check(cli_ctx *ctx, const cli_args *args)
{
  int worst = CLI_EXIT_OK, rc, i;
  int strict = cli_args_opt(args, "--strict") != NULL;

  rc = cli_engine_open(ctx, CLI_DB_MEMORY);
  if (rc != 0)
    return rc;
  for (i = 0; i < args->npos; i++) {
    const char *path = args->pos[i];
    const char *name = strcmp(path, "-") == 0 ? "stdin" : path;
    size_t len;
    char *src = cli_read_file(path, &len);
    char *out = NULL;
    int err;

    if (src == NULL) {
      rc = CLI_EXIT_REFUSED;
    } else {
      err = flow_service_lint(&out, ctx->engine, src, len, name);
      if (err == 0) {
        size_t nw;

        fflush(stdout);
        nw = print_warnings(name, out);
        fflush(stderr);
        if (nw == 0)
          printf("%s: ok\n", name);
        rc = nw > 0 && strict ? CLI_EXIT_REFUSED : CLI_EXIT_OK;
        flow_free(out);
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
