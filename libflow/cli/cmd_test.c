/*
 * `flow test [--tap] [--junit FILE] [--filter TEXT] [--coverage]
 *  [--min-coverage PCT] [PATH...]`:
 * runs *_test.lua files.
 *
 * The files are found under each PATH (default "."), recursively, skipping
 * hidden directories, and run in sorted order, each through
 * flow_test_file(), which returns its results as JSON.  This file only
 * finds files and presents results: a readable summary (a line per test,
 * the message and case history of each failure, then "N passed, N failed"
 * alone on the last line; with --verbose, what each test wrote with print
 * and flow.log under its line, as a failure's always is), TAP version 14 with YAML diagnostics (--tap),
 * and JUnit XML in the shape Jenkins, GitLab and Azure DevOps read
 * (--junit FILE, besides the normal output).  --coverage adds, for each
 * service, the share of states entered and transitions fired and what was
 * never exercised; --min-coverage PCT (which implies --coverage) fails the
 * run when a service fired fewer than PCT percent of its transitions.
 * Exit 0 only when every test passed (and the coverage was met); 1 when
 * any failed, no test file was found or the coverage fell short; 2 for
 * usage errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"

const cli_opt cli_test_opts[] = {
  { "--tap", 0 },
  { "--junit", 1 },
  { "--filter", 1 },
  { "--coverage", 0 },
  { "--min-coverage", 1 },
  { NULL, 0 },
};

typedef struct file_list {
  char **v;
  size_t n, cap;
} file_list;

static int
list_add(file_list *l, const char *path)
{
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    char **v = realloc(l->v, cap * sizeof(*v));
    if (v == NULL)
      return -1;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n] = malloc(strlen(path) + 1);
  if (l->v[l->n] == NULL)
    return -1;
  strcpy(l->v[l->n++], path);
  return 0;
}

static int
is_test_file(const char *name)
{
  size_t n = strlen(name);
  return n > 9 && strcmp(name + n - 9, "_test.lua") == 0;
}

/* Adds the test files under dir; depth guards against link loops. */
static int
walk(file_list *l, const char *dir, int depth)
{
  DIR *d;
  struct dirent *de;
  int rc = 0;

  if (depth > 32)
    return 0;
  d = opendir(dir);
  if (d == NULL)
    return 0;
  while (rc == 0 && (de = readdir(d)) != NULL) {
    char path[4096];
    struct stat st;

    if (de->d_name[0] == '.')
      continue;
    if (strcmp(dir, ".") == 0)
      snprintf(path, sizeof(path), "%s", de->d_name);
    else
      snprintf(path,
               sizeof(path),
               "%s%s%s",
               dir,
               dir[strlen(dir) - 1] == '/' ? "" : "/",
               de->d_name);
    if (stat(path, &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode))
      rc = walk(l, path, depth + 1);
    else if (S_ISREG(st.st_mode) && is_test_file(de->d_name))
      rc = list_add(l, path);
  }
  closedir(d);
  return rc;
}

static int
str_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- output ------------------------------------------------------------- */

typedef struct totals {
  size_t passed, failed, errors, n;
  double seconds;
} totals;

static const char *
jstr(json_t *o, const char *key)
{
  const char *s = json_string_value(json_object_get(o, key));
  return s != NULL ? s : "";
}

/* What a test wrote with print and flow.log, indented under it. */
static void
print_output(json_t *t, const char *head, const char *indent)
{
  if (!json_is_string(json_object_get(t, "output")))
    return;
  const char *o = jstr(t, "output");
  printf("%s\n", head);
  while (*o != '\0') {
    const char *nl = strchr(o, '\n');
    int n = nl != NULL ? (int)(nl - o) : (int)strlen(o);
    printf("%s%.*s\n", indent, n, o);
    o += n + (nl != NULL);
  }
}

/* verbose: the output of passing tests too (a failure's is always
   shown). */
static void
print_readable(json_t *file, int verbose)
{
  json_t *tests = json_object_get(file, "tests");
  size_t i, k;

  printf("%s\n", jstr(file, "file"));
  for (i = 0; i < json_array_size(tests); i++) {
    json_t *t = json_array_get(tests, i);
    json_t *h = json_object_get(t, "history");
    int pass = strcmp(jstr(t, "status"), "pass") == 0;

    printf("  %s %s\n", pass ? "\xe2\x9c\x93" : "\xe2\x9c\x97",
           jstr(t, "name"));
    if (pass) {
      if (verbose)
        print_output(t, "    output:", "      ");
      continue;
    }
    printf("    %s:%lld: %s%s\n",
           jstr(file, "file"),
           (long long)json_integer_value(json_object_get(t, "line")),
           strcmp(jstr(t, "status"), "error") == 0 ? "error: " : "",
           jstr(t, "message"));
    if (json_array_size(h) > 0) {
      printf("    history:\n");
      for (k = 0; k < json_array_size(h); k++)
        printf("      %s\n", json_string_value(json_array_get(h, k)));
    }
    print_output(t, "    output:", "      ");
  }
}

/* A YAML double-quoted string. */
static void
yaml_str(FILE *f, const char *s)
{
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c == '\n')
      fputs("\\n", f);
    else if (c < 0x20)
      fprintf(f, "\\x%02x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

/* verbose: each test's output as comments after its point (and YAML). */
static void
print_tap(json_t *file, size_t *n, int verbose)
{
  json_t *tests = json_object_get(file, "tests");
  size_t i, k;

  for (i = 0; i < json_array_size(tests); i++) {
    json_t *t = json_array_get(tests, i);
    json_t *h = json_object_get(t, "history");
    int pass = strcmp(jstr(t, "status"), "pass") == 0;
    const char *name = jstr(t, "name");

    (*n)++;
    printf("%s %zu - %s: ", pass ? "ok" : "not ok", *n, jstr(file, "file"));
    for (; *name; name++) {
      if (*name == '#' || *name == '\\')
        putchar('\\');
      putchar(*name == '\n' ? ' ' : *name);
    }
    putchar('\n');
    if (pass) {
      if (verbose)
        print_output(t, "# output:", "#   ");
      continue;
    }
    printf("  ---\n  message: ");
    yaml_str(stdout, jstr(t, "message"));
    printf("\n  severity: %s\n  at:\n    file: ",
           strcmp(jstr(t, "status"), "error") == 0 ? "error" : "fail");
    yaml_str(stdout, jstr(file, "file"));
    printf("\n    line: %lld\n",
           (long long)json_integer_value(json_object_get(t, "line")));
    if (json_array_size(h) > 0) {
      printf("  history:\n");
      for (k = 0; k < json_array_size(h); k++) {
        printf("    - ");
        yaml_str(stdout, json_string_value(json_array_get(h, k)));
        putchar('\n');
      }
    }
    printf("  ...\n");
    if (verbose)
      print_output(t, "# output:", "#   ");
  }
}

/* Text for XML: markup escaped, characters XML 1.0 forbids dropped. */
static void
xml_str(FILE *f, const char *s)
{
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
      case '&':
        fputs("&amp;", f);
        break;
      case '<':
        fputs("&lt;", f);
        break;
      case '>':
        fputs("&gt;", f);
        break;
      case '"':
        fputs("&quot;", f);
        break;
      case '\'':
        fputs("&apos;", f);
        break;
      default:
        if (c >= 0x20 || c == '\n' || c == '\t')
          fputc(c, f);
        else if (c != '\r')
          fputc('?', f);
    }
  }
}

/* "examples/services/missed_bin_test.lua" -> "examples.services.
   missed_bin_test", the dotted form CI tools group by. */
static void
xml_classname(FILE *f, const char *path)
{
  size_t n = strlen(path);

  if (n > 4 && strcmp(path + n - 4, ".lua") == 0)
    n -= 4;
  while (n > 0 && (*path == '.' || *path == '/')) {
    path++;
    n--;
  }
  for (size_t i = 0; i < n; i++) {
    char c[2] = { path[i] == '/' ? '.' : path[i], 0 };
    xml_str(f, c);
  }
}

static int
write_junit(const char *file, json_t *results, const totals *t)
{
  FILE *f = strcmp(file, "-") == 0 ? stdout : fopen(file, "w");
  char stamp[32], host[256] = "localhost";
  time_t now = time(NULL);
  struct tm tm;
  size_t i, k;

  if (f == NULL) {
    cli_errorf("cannot write '%s': %s", file, strerror(errno));
    return -1;
  }
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
    strcpy(host, "localhost");
  host[sizeof(host) - 1] = '\0';
  fprintf(f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<testsuites name=\"flow test\" tests=\"%zu\" failures=\"%zu\" "
          "errors=\"%zu\" time=\"%.3f\">\n",
          t->n,
          t->failed,
          t->errors,
          t->seconds);
  for (i = 0; i < json_array_size(results); i++) {
    json_t *fr = json_array_get(results, i);
    json_t *tests = json_object_get(fr, "tests");
    size_t nf = 0, ne = 0;
    double secs = 0;

    for (k = 0; k < json_array_size(tests); k++) {
      json_t *tc = json_array_get(tests, k);
      nf += strcmp(jstr(tc, "status"), "fail") == 0;
      ne += strcmp(jstr(tc, "status"), "error") == 0;
      secs += (double)json_integer_value(json_object_get(tc, "ms")) / 1000;
    }
    fprintf(f, "  <testsuite name=\"");
    xml_str(f, jstr(fr, "file"));
    fprintf(f,
            "\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" "
            "skipped=\"0\" time=\"%.3f\" timestamp=\"%s\" hostname=\"",
            json_array_size(tests),
            nf,
            ne,
            secs,
            stamp);
    xml_str(f, host);
    fprintf(f, "\" id=\"%zu\" package=\"", i);
    xml_classname(f, jstr(fr, "file"));
    fprintf(f, "\">\n");
    for (k = 0; k < json_array_size(tests); k++) {
      json_t *tc = json_array_get(tests, k);
      json_t *h = json_object_get(tc, "history");
      const char *st = jstr(tc, "status");
      size_t m;

      fprintf(f, "    <testcase name=\"");
      xml_str(f, jstr(tc, "name"));
      fprintf(f, "\" classname=\"");
      xml_classname(f, jstr(fr, "file"));
      fprintf(f,
              "\" time=\"%.3f\"",
              (double)json_integer_value(json_object_get(tc, "ms")) / 1000);
      if (strcmp(st, "pass") == 0 &&
          !json_is_string(json_object_get(tc, "output"))) {
        fprintf(f, "/>\n");
        continue;
      }
      fprintf(f, ">\n");
      if (strcmp(st, "pass") != 0) {
        const char *el = strcmp(st, "error") == 0 ? "error" : "failure";
        fprintf(f, "      <%s message=\"", el);
        xml_str(f, jstr(tc, "message"));
        fprintf(f, "\" type=\"%s\">", strcmp(st, "error") == 0 ? "error"
                                                             : "assertion");
        xml_str(f, jstr(fr, "file"));
        fprintf(f,
                ":%lld: ",
                (long long)json_integer_value(json_object_get(tc, "line")));
        xml_str(f, jstr(tc, "message"));
        if (json_array_size(h) > 0)
          fputs("\nhistory:", f);
        for (m = 0; m < json_array_size(h); m++) {
          fputs("\n  ", f);
          xml_str(f, json_string_value(json_array_get(h, m)));
        }
        fprintf(f, "</%s>\n", el);
      }
      if (json_is_string(json_object_get(tc, "output"))) {
        fprintf(f, "      <system-out>");
        xml_str(f, jstr(tc, "output"));
        fprintf(f, "</system-out>\n");
      }
      fprintf(f, "    </testcase>\n");
    }
    fprintf(f, "  </testsuite>\n");
  }
  fprintf(f, "</testsuites>\n");
  if (f != stdout && fclose(f) != 0) {
    cli_errorf("cannot write '%s': %s", file, strerror(errno));
    return -1;
  }
  return 0;
}

/* Adds the counts of one file's coverage into all. */
static void
merge_coverage(json_t *all, json_t *cov)
{
  const char *svc, *kind, *key;
  json_t *s, *m, *v;

  json_object_foreach(cov, svc, s)
  {
    json_t *dst = json_object_get(all, svc);
    if (dst == NULL) {
      dst = json_pack("{s:{}, s:{}}", "states", "transitions");
      json_object_set_new(all, svc, dst);
    }
    json_object_foreach(s, kind, m)
    {
      json_t *d = json_object_get(dst, kind);
      if (d == NULL)
        continue;
      json_object_foreach(m, key, v)
      {
        json_int_t old = json_integer_value(json_object_get(d, key));
        json_object_set_new(d, key, json_integer(old + json_integer_value(v)));
      }
    }
  }
}

static void
print_coverage(json_t *all, const char *prefix)
{
  const char *svc;
  json_t *s;

  json_object_foreach(all, svc, s)
  {
    static const char *const kinds[] = { "states", "transitions" };
    static const char *const never[] = { "never entered", "never fired" };
    size_t hit[2] = { 0, 0 }, total[2] = { 0, 0 };
    int k;

    for (k = 0; k < 2; k++) {
      const char *key;
      json_t *v;
      json_object_foreach(json_object_get(s, kinds[k]), key, v)
      {
        total[k]++;
        hit[k] += json_integer_value(v) > 0;
      }
    }
    printf("%scoverage of %s: %zu/%zu states entered (%d%%), %zu/%zu "
           "transitions fired (%d%%)\n",
           prefix,
           svc,
           hit[0],
           total[0],
           total[0] ? (int)(hit[0] * 100 / total[0]) : 100,
           hit[1],
           total[1],
           total[1] ? (int)(hit[1] * 100 / total[1]) : 100);
    for (k = 0; k < 2; k++) {
      const char *key;
      json_t *v;
      int first = 1;
      if (hit[k] == total[k])
        continue;
      printf("%s  %s:", prefix, never[k]);
      json_object_foreach(json_object_get(s, kinds[k]), key, v)
      {
        if (json_integer_value(v) == 0) {
          printf("%s %s", first ? "" : ",", key);
          first = 0;
        }
      }
      putchar('\n');
    }
  }
}

/* For --min-coverage: says on stderr which services fired fewer than min
   percent of their transitions, and returns how many. */
static int
coverage_short(json_t *all, int min)
{
  const char *svc;
  json_t *s;
  int below = 0;

  json_object_foreach(all, svc, s)
  {
    const char *key;
    json_t *v;
    size_t hit = 0, total = 0;
    json_object_foreach(json_object_get(s, "transitions"), key, v)
    {
      total++;
      hit += json_integer_value(v) > 0;
    }
    if (hit * 100 < (size_t)min * total) {
      fprintf(stderr,
              "flow test: %s fired %zu of its %zu transitions (%d%%), "
              "below --min-coverage %d: add tests for the transitions "
              "listed as never fired\n",
              svc, hit, total, (int)(hit * 100 / total), min);
      below++;
    }
  }
  return below;
}

int
cli_cmd_test(cli_ctx *ctx, const cli_args *args)
{
  int tap = cli_args_opt(args, "--tap") != NULL;
  int coverage = cli_args_opt(args, "--coverage") != NULL;
  const char *min_text = cli_args_opt(args, "--min-coverage");
  int min_cov = -1, below = 0;
  const char *junit = cli_args_opt(args, "--junit");
  const char *filter = cli_args_opt(args, "--filter");
  flow_test_options opts = FLOW_TEST_OPTIONS_INIT;
  file_list files = { NULL, 0, 0 };
  json_t *results = json_array(), *cov = json_object();
  totals t = { 0, 0, 0, 0, 0 };
  char start[32];
  int rc = CLI_EXIT_OK, i;
  size_t f, k, n = 0;

  if (junit != NULL && *junit == '\0')
    return cli_usage_errorf("--junit needs a file name");
  if (min_text != NULL) {
    char *end = NULL;
    long v = strtol(min_text, &end, 10);
    if (end == min_text || *end != '\0' || v < 0 || v > 100)
      return cli_usage_errorf("--min-coverage needs a whole percentage from "
                              "0 to 100, like --min-coverage 95 (got '%s')",
                              min_text);
    min_cov = (int)v;
    coverage = 1;
  }
  if (results == NULL || cov == NULL) {
    cli_errorf("out of memory");
    return CLI_EXIT_FAILURE;
  }
  for (i = 0; i < args->npos || (i == 0 && args->npos == 0); i++) {
    const char *p = args->npos ? args->pos[i] : ".";
    struct stat st;

    if (stat(p, &st) != 0) {
      cli_errorf("cannot read '%s': %s", p, strerror(errno));
      rc = CLI_EXIT_REFUSED;
      goto done;
    }
    if (S_ISDIR(st.st_mode) ? walk(&files, p, 0) : list_add(&files, p)) {
      cli_errorf("out of memory");
      rc = CLI_EXIT_FAILURE;
      goto done;
    }
  }
  if (files.n == 0) {
    cli_errorf("no *_test.lua files under %s",
               args->npos ? args->pos[0] : "the current directory");
    rc = CLI_EXIT_REFUSED;
    goto done;
  }
  qsort(files.v, files.n, sizeof(*files.v), str_cmp);

  opts.filter = filter;
  opts.coverage = coverage;
  if (ctx->has_now) {
    flow_time_format(start, sizeof(start), ctx->now);
    opts.start = start;
  }
  if (tap)
    printf("TAP version 14\n");
  for (f = 0; f < files.n; f++) {
    char *out = NULL;
    json_t *j;
    int err;

    if (f > 0 && strcmp(files.v[f], files.v[f - 1]) == 0)
      continue;
    err = flow_test_file(&out, files.v[f], &opts);
    if (err != 0) {
      /* Reported as a test that errored, so no format can miss it. */
      j = json_pack("{s:s, s:[{s:s, s:s, s:i, s:i, s:s}]}",
                    "file",
                    files.v[f],
                    "tests",
                    "name",
                    files.v[f],
                    "status",
                    "error",
                    "line",
                    0,
                    "ms",
                    0,
                    "message",
                    err == FLOW_ENOTFOUND ? "cannot read the file"
                                          : flow_strerror(err));
    } else {
      j = json_loads(out, 0, NULL);
      flow_free(out);
    }
    if (j == NULL) {
      cli_errorf("out of memory");
      rc = CLI_EXIT_FAILURE;
      goto done;
    }
    json_t *tests = json_object_get(j, "tests");
    for (k = 0; k < json_array_size(tests); k++) {
      json_t *tc = json_array_get(tests, k);
      const char *st = jstr(tc, "status");
      t.n++;
      if (strcmp(st, "pass") == 0)
        t.passed++;
      else if (strcmp(st, "error") == 0)
        t.errors++;
      else
        t.failed++;
      t.seconds += (double)json_integer_value(json_object_get(tc, "ms")) /
                   1000;
    }
    if (coverage)
      merge_coverage(cov, json_object_get(j, "coverage"));
    if (tap)
      print_tap(j, &n, ctx->verbose);
    else
      print_readable(j, ctx->verbose);
    fflush(stdout);
    json_array_append_new(results, j);
  }
  if (junit != NULL && write_junit(junit, results, &t) != 0)
    rc = CLI_EXIT_REFUSED;
  if (tap) {
    printf("1..%zu\n", n);
    if (coverage)
      print_coverage(cov, "# ");
    printf("# %zu passed, %zu failed\n", t.passed, t.failed + t.errors);
  } else {
    if (coverage)
      print_coverage(cov, "");
    printf("%zu passed, %zu failed\n", t.passed, t.failed + t.errors);
  }
  fflush(stdout);
  if (min_cov >= 0)
    below = coverage_short(cov, min_cov);
  if (t.failed + t.errors > 0 || t.n == 0 || below > 0)
    rc = CLI_EXIT_REFUSED;

done:
  for (f = 0; f < files.n; f++)
    free(files.v[f]);
  free(files.v);
  json_decref(results);
  json_decref(cov);
  return rc;
}
