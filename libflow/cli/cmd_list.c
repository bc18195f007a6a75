/*
 * `flow list [--service S] [--state X] [--status open|closed] [--overdue]
 *            [--where FIELD=VALUE]... [--limit N]`: lists cases.
 *
 * The options become a flow_case_query.  A --where VALUE that is already a
 * JSON scalar (a number, true, false, null, a "quoted string") is passed as
 * it is; anything else is taken as text and passed as a JSON string, so
 * --where bin=refuse works without quotes.  (The library matches a number
 * against the same digits stored as text too, so --where uprn=100023336956
 * finds a uprn kept as a string.)  The output is an aligned table for
 * people, or with --json the library's JSON array.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

const cli_opt cli_list_opts[] = { { "--service", 1 }, { "--state", 1 },
                                  { "--status", 1 },  { "--where", 1 },
                                  { "--limit", 1 },   { "--overdue", 0 },
                                  { NULL, 0 } };

/*
 * The JSON text for a --where value: value itself when it is a JSON scalar,
 * else value as a JSON string.  *out is malloc'd (by Jansson or here).
 */
static int
where_value(char **out, const char *value)
{
  json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
  size_t len;

  *out = NULL;
  if (v != NULL && !json_is_object(v) && !json_is_array(v)) {
    json_decref(v);
    len = strlen(value);
    *out = malloc(len + 1);
    if (*out == NULL)
      goto oom;
    memcpy(*out, value, len + 1);
    return 0;
  }
  json_decref(v);
  v = json_string(value);
  if (v == NULL) {
    cli_errorf("--where value '%s' is not valid UTF-8 text", value);
    return CLI_EXIT_REFUSED;
  }
  *out = json_dumps(v, JSON_ENCODE_ANY);
  json_decref(v);
  if (*out == NULL)
    goto oom;
  return 0;

oom:
  cli_errorf("out of memory");
  return CLI_EXIT_FAILURE;
}

/* A member of a case as text for the table: "-" when null or missing. */
#define NCOLS 7

/*
 * Prints the library's array of cases as an aligned table.  When the
 * array is as long as the limit there may be more, and a person reading a
 * table would not know: say so under it.
 */
static int
print_table(const char *text, size_t limit)
{
  static const char *const heads[NCOLS] = { "ID",     "SERVICE", "VER", "STATE",
                                            "STATUS", "UPDATED", "DUE" };
  static const char *const keys[NCOLS] = { "id",    "service", "version",
                                           "state", "status",  "updated_at",
                                           "due_at" };
  long n = cli_print_table(text, heads, keys, NCOLS, NULL);
  if (n < 0)
    return CLI_EXIT_FAILURE;
  if ((size_t)n == limit)
    printf("(limit of %zu reached; --limit N shows more)\n", limit);
  return CLI_EXIT_OK;
}

int
cli_cmd_list(cli_ctx *ctx, const cli_args *args)
{
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  flow_where *where = NULL;
  const char *limit = cli_args_opt(args, "--limit");
  const char *status = cli_args_opt(args, "--status");
  char *out = NULL;
  size_t nwhere = 0, i;
  int rc, err, k;

  if (status != NULL && strcmp(status, "open") != 0 &&
      strcmp(status, "closed") != 0)
    return cli_usage_errorf("--status must be open or closed, not '%s'",
                            status);
  if (limit != NULL) {
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(limit, &end, 10);
    if (limit[0] < '0' || limit[0] > '9' || *end != '\0' || errno != 0 ||
        n == 0)
      return cli_usage_errorf("--limit must be a whole number above 0, not "
                              "'%s'",
                              limit);
    q.limit = (size_t)n;
  }
  q.service = cli_args_opt(args, "--service");
  q.state = cli_args_opt(args, "--state");
  q.status = status;
  for (k = 0; k < args->nopts; k++)
    if (strcmp(args->opts[k].name, "--overdue") == 0)
      q.overdue = 1; /* open cases past due_at by the engine clock */

  where = calloc((size_t)args->nopts + 1, sizeof(*where));
  if (where == NULL) {
    cli_errorf("out of memory");
    return CLI_EXIT_FAILURE;
  }
  for (k = 0; k < args->nopts; k++) {
    const char *v = args->opts[k].value;
    const char *eq;
    char *field, *value;

    if (strcmp(args->opts[k].name, "--where") != 0)
      continue;
    eq = strchr(v, '=');
    if (eq == NULL || eq == v) {
      rc = cli_usage_errorf("--where needs FIELD=VALUE, not '%s'", v);
      goto out;
    }
    field = malloc((size_t)(eq - v) + 1);
    if (field == NULL) {
      cli_errorf("out of memory");
      rc = CLI_EXIT_FAILURE;
      goto out;
    }
    memcpy(field, v, (size_t)(eq - v));
    field[eq - v] = '\0';
    where[nwhere].field = field;
    rc = where_value(&value, eq + 1);
    where[nwhere].value_json = value;
    nwhere++;
    if (rc != 0)
      goto out;
  }
  q.where = where;
  q.nwhere = nwhere;

  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    goto out;
  err = flow_case_list(&out, ctx->engine, &q);
  if (err != 0) {
    rc = cli_report(ctx, err);
    goto out;
  }
  if (ctx->json) {
    cli_print_json(out);
    rc = CLI_EXIT_OK;
  } else {
    rc = print_table(out, q.limit != 0 ? q.limit : 100);
  }

out:
  flow_free(out);
  for (i = 0; i < nwhere; i++) {
    free((char *)where[i].field);
    free((char *)where[i].value_json);
  }
  free(where);
  return rc;
}
