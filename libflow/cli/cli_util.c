/*
 * What the commands of `flow` share: opening the engine on the right
 * database, mapping FLOW_E* codes to exit codes, printing refusals as one
 * line, reading arguments that stand for JSON text ("-", "@FILE"), and
 * printing the library's JSON one value per line, the small status
 * objects of claim/release/cancel/dismiss, and reading an elapsed
 * duration ("2h", "3d": the public API has no duration parser, and the
 * command uses the public API only).
 *
 * The one-line rule matters to scripts that wrap `flow`: a refusal is
 * always exactly one line on stderr ("flow: ..."), so any line breaks in a
 * library message are folded into "; ".  The one exception is a bad
 * service script, whose problems are printed one "FILE:LINE: message" per
 * line, the way a compiler prints them.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli.h"

int
cli_exit_code(int err)
{
  switch (err) {
    case FLOW_OK:
      return CLI_EXIT_OK;
    case FLOW_EINVAL:
    case FLOW_ENOTFOUND:
    case FLOW_EEXIST:
    case FLOW_ESCRIPT:
    case FLOW_ELIMIT:
    case FLOW_EDATA:
    case FLOW_EEVENT:
    case FLOW_EPERM:
    case FLOW_ESTATE:
    case FLOW_EREFUSED:
    case FLOW_ECLOSED:
    case FLOW_ECANCELED:
    case FLOW_ECONFLICT:
      return CLI_EXIT_REFUSED;
    default: /* EIO, EBUSY, ENOMEM, ERROR, EMISUSE and anything new */
      return CLI_EXIT_FAILURE;
  }
}

/* Writes s to f with line breaks folded into "; " and trailing ones
   dropped. */
static void
put_one_line(FILE *f, const char *s)
{
  size_t n = strlen(s);

  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    n--;
  for (; n > 0; s++, n--) {
    if (*s == '\n') {
      fputs("; ", f);
    } else if (*s != '\r') {
      fputc(*s, f);
    }
  }
}

void
cli_errorf(const char *fmt, ...)
{
  char buf[2048];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  fputs("flow: ", stderr);
  put_one_line(stderr, buf);
  fputc('\n', stderr);
}

int
cli_usage_errorf(const char *fmt, ...)
{
  char buf[2048];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  fputs("flow: ", stderr);
  put_one_line(stderr, buf);
  fputs("\nTry 'flow --help'.\n", stderr);
  return CLI_EXIT_USAGE;
}

int
cli_report(cli_ctx *ctx, int err)
{
  const char *msg = ctx->engine != NULL ? flow_errmsg(ctx->engine) : "";

  if (msg == NULL || *msg == '\0')
    msg = flow_strerror(err);
  cli_errorf("%s", msg);
  return cli_exit_code(err);
}

int
cli_report_script(cli_ctx *ctx, int err)
{
  const char *msg = ctx->engine != NULL ? flow_errmsg(ctx->engine) : "";
  size_t n;

  if (err != FLOW_ESCRIPT || msg == NULL || *msg == '\0')
    return cli_report(ctx, err);
  n = strlen(msg);
  fputs(msg, stderr);
  if (msg[n - 1] != '\n')
    fputc('\n', stderr);
  return cli_exit_code(err);
}

static void
log_to_stderr(flow_engine *engine, int level, const char *msg, void *payload)
{
  static const char *const names[] = { "debug", "info", "warn", "error" };
  const char *name = level >= 0 && level <= 3 ? names[level] : "log";

  (void)engine;
  (void)payload;
  fprintf(stderr, "flow: [%s] ", name);
  put_one_line(stderr, msg);
  fputc('\n', stderr);
}

int
cli_engine_open(cli_ctx *ctx, cli_db_mode mode)
{
  flow_engine_options opts = FLOW_ENGINE_OPTIONS_INIT;
  char errbuf[1024];
  const char *path = mode == CLI_DB_MEMORY ? ":memory:" : ctx->db;
  int64_t now;
  int err;

  /* Only `flow load` creates a database: a mistyped --db for any other
     command would otherwise leave an empty flow.db behind and report
     "not found" for a case that is simply in another file. */
  if (mode == CLI_DB_EXISTING && strcmp(path, ":memory:") != 0) {
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) {
      cli_errorf("no database at '%s': load a service into it first with "
                 "'flow load SCRIPT', or name another with --db FILE or "
                 "FLOW_DB",
                 path);
      return CLI_EXIT_FAILURE;
    }
  }
  if (ctx->verbose) {
    opts.log = log_to_stderr;
    opts.log_payload = NULL;
  }
  errbuf[0] = '\0';
  err = flow_engine_open(&ctx->engine, path, &opts, errbuf, sizeof(errbuf));
  if (err != 0) {
    ctx->engine = NULL;
    if (errbuf[0] != '\0' && strstr(errbuf, path) != NULL)
      cli_errorf("%s", errbuf);
    else
      cli_errorf("cannot open the database '%s': %s",
                 path,
                 errbuf[0] != '\0' ? errbuf : flow_strerror(err));
    return CLI_EXIT_FAILURE;
  }
  if (cli_fixed_now(ctx, &now))
    flow_engine_set_time(ctx->engine, now);
  return 0;
}

int
cli_fixed_now(const cli_ctx *ctx, int64_t *out)
{
  if (ctx->has_now)
    *out = ctx->now;
  else if (ctx->has_env_now)
    *out = ctx->env_now;
  else
    return 0;
  return 1;
}

char *
cli_read_file(const char *path, size_t *len)
{
  int is_stdin = strcmp(path, "-") == 0;
  FILE *f = is_stdin ? stdin : fopen(path, "rb");
  char *buf = NULL, *nbuf;
  size_t n = 0, cap = 0, got;

  if (f == NULL) {
    cli_errorf("cannot read '%s': %s", path, strerror(errno));
    return NULL;
  }
  for (;;) {
    if (cap - n < 4096) {
      cap = cap == 0 ? 8192 : cap * 2;
      nbuf = realloc(buf, cap);
      if (nbuf == NULL) {
        cli_errorf("out of memory reading '%s'", path);
        goto fail;
      }
      buf = nbuf;
    }
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    cli_errorf("cannot read '%s': %s",
               is_stdin ? "standard input" : path,
               strerror(errno));
    goto fail;
  }
  buf[n] = '\0';
  if (!is_stdin)
    fclose(f);
  if (len != NULL)
    *len = n;
  return buf;

fail:
  free(buf);
  if (!is_stdin)
    fclose(f);
  return NULL;
}

int
cli_json_arg(char **out, const char *arg)
{
  const char *name = arg;
  size_t len;
  char *text;

  *out = NULL;
  if (strcmp(arg, "-") == 0 || arg[0] == '@') {
    if (arg[0] == '@')
      name = arg + 1;
    text = cli_read_file(name, &len);
    if (text == NULL)
      return CLI_EXIT_REFUSED;
    if (strlen(text) != len) {
      cli_errorf("'%s' holds a NUL byte; JSON text cannot", arg);
      free(text);
      return CLI_EXIT_REFUSED;
    }
  } else {
    len = strlen(arg);
    text = malloc(len + 1);
    if (text == NULL) {
      cli_errorf("out of memory");
      return CLI_EXIT_FAILURE;
    }
    memcpy(text, arg, len + 1);
  }
  *out = text;
  return 0;
}

/* Prints one JSON value on one line: as the library wrote it, or compacted
   again by Jansson should it ever contain a line break. */
static void
print_value(const char *text, size_t len, json_t *value)
{
  char *dumped;

  if (memchr(text, '\n', len) == NULL && memchr(text, '\r', len) == NULL) {
    fwrite(text, 1, len, stdout);
    fputc('\n', stdout);
    return;
  }
  dumped =
    value != NULL
      ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER)
      : NULL;
  if (dumped != NULL) {
    printf("%s\n", dumped);
    free(dumped);
  } else {
    put_one_line(stdout, text);
    fputc('\n', stdout);
  }
}

void
cli_print_json(const char *json)
{
  size_t len = strlen(json);
  json_t *value = NULL;

  while (len > 0 && (json[len - 1] == '\n' || json[len - 1] == ' '))
    len--;
  if (memchr(json, '\n', len) != NULL)
    value = json_loadb(json, len, JSON_DECODE_ANY, NULL);
  print_value(json, len, value);
  json_decref(value);
}

static const char *
skip_ws(const char *p)
{
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  return p;
}

int
cli_print_array_lines(const char *text)
{
  json_error_t jerr;
  json_t *array = json_loads(text, 0, &jerr);
  const char *p, *start, *end;
  size_t index = 0;

  if (!json_is_array(array)) {
    json_decref(array);
    cli_errorf("internal error: the library returned something that is not "
               "a JSON array");
    return CLI_EXIT_FAILURE;
  }
  /* Split the text itself rather than printing the parsed values again, so
     every element reads exactly as the library wrote it (numbers too). */
  p = skip_ws(text);
  p = skip_ws(p + 1); /* '[' */
  while (*p != ']' && *p != '\0') {
    int depth = 0, in_string = 0;

    start = p;
    for (; *p != '\0'; p++) {
      char c = *p;
      if (in_string) {
        if (c == '\\' && p[1] != '\0')
          p++;
        else if (c == '"')
          in_string = 0;
      } else if (c == '"') {
        in_string = 1;
      } else if (c == '[' || c == '{') {
        depth++;
      } else if (c == ']' || c == '}') {
        if (depth == 0)
          break;
        depth--;
      } else if (c == ',' && depth == 0) {
        break;
      }
    }
    end = p;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t' ||
                           end[-1] == '\n' || end[-1] == '\r'))
      end--;
    print_value(start, (size_t)(end - start), json_array_get(array, index));
    index++;
    if (*p == ',')
      p = skip_ws(p + 1);
  }
  json_decref(array);
  return CLI_EXIT_OK;
}

int
cli_print_listing(const cli_ctx *ctx, const char *text)
{
  if (ctx->json) {
    cli_print_json(text);
    return CLI_EXIT_OK;
  }
  return cli_print_array_lines(text);
}

char *
cli_status_json(const char *kind, const char *id, const char *status)
{
  json_t *o = json_pack("{s:s, s:s}", "status", status, kind, id);
  char *s = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

  json_decref(o);
  return s;
}

int
cli_parse_duration(const char *text, int64_t *ms)
{
  /* Ten digits keep the product below INT64_MAX even in weeks
     (9,999,999,999 w is about 6.05e18 ms) while leaving the bound to the
     library: more is refused here as unreadable. */
  const char *p = text;
  int64_t n = 0, unit;
  int digits = 0;

  while (*p >= '0' && *p <= '9') {
    if (++digits > 10)
      return -1;
    n = n * 10 + (*p - '0');
    p++;
  }
  if (digits == 0 || p[0] == '\0' || p[1] != '\0')
    return -1;
  switch (*p) {
    case 's':
      unit = 1000;
      break;
    case 'm':
      unit = 60 * 1000;
      break;
    case 'h':
      unit = 60 * 60 * 1000;
      break;
    case 'd':
      unit = 24 * 60 * 60 * 1000;
      break;
    case 'w':
      unit = 7 * 24 * 60 * 60 * 1000;
      break;
    default:
      return -1;
  }
  if (n == 0)
    return -2;
  *ms = n * unit;
  return 0;
}

/* A cell of the table: text as it is, a whole number in decimal, else
   "-". */
static const char *
table_cell(json_t *row, const char *key, char *buf, size_t len)
{
  json_t *v = json_object_get(row, key);

  if (json_is_string(v))
    return json_string_value(v);
  if (json_is_integer(v)) {
    snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return buf;
  }
  return "-";
}

long
cli_print_table(const char *text, const char *const *heads,
                const char *const *keys, int ncols, const int *cut)
{
  json_t *rows = json_loads(text, 0, NULL);
  char bufs[CLI_TABLE_MAX_COLS][32];
  int width[CLI_TABLE_MAX_COLS];
  size_t i;
  int k;

  if (!json_is_array(rows) || ncols > CLI_TABLE_MAX_COLS) {
    json_decref(rows);
    cli_errorf("internal error: the library returned something that is not "
               "a JSON array");
    return -1;
  }
  for (k = 0; k < ncols; k++)
    width[k] = (int)strlen(heads[k]);
  for (i = 0; i < json_array_size(rows); i++) {
    for (k = 0; k < ncols; k++) {
      int w = (int)strlen(table_cell(json_array_get(rows, i), keys[k],
                                     bufs[k], sizeof bufs[k]));
      if (cut && cut[k] && w > cut[k])
        w = cut[k];
      if (w > width[k])
        width[k] = w;
    }
  }
  for (i = 0; i <= json_array_size(rows); i++) {
    for (k = 0; k < ncols; k++) {
      /* row 0 is the heading */
      const char *c = i == 0 ? heads[k]
                             : table_cell(json_array_get(rows, i - 1),
                                          keys[k], bufs[k], sizeof bufs[k]);
      int p = cut && cut[k] ? cut[k] : (int)strlen(c);
      if (k == ncols - 1)
        printf("%.*s\n", p, c);
      else
        printf("%-*.*s  ", width[k], p, c);
    }
  }
  long n = (long)json_array_size(rows);
  json_decref(rows);
  return n;
}
