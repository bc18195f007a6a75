/*
 * `flow eval [-e CODE | FILE] [--cpu-ms N] [--mem-mb N] [--instructions N]
 * [--log-kb N]`: runs a chunk of Lua in a fresh sandbox, under the same
 * rules and budgets as a handler, and prints its first result as JSON
 * (null when it returns nothing).  With neither -e nor FILE, or with FILE
 * "-", the code is read from standard input.  The four options set the
 * chunk's four budgets: CPU time, memory, VM instructions and what
 * flow.log and print may write (the engine's defaults otherwise: 1000 ms,
 * 32 MiB, 10,000,000 instructions, 64 KiB).
 *
 * The chunk runs on a private ":memory:" engine: eval never needs or
 * touches a database.  Errors carry the chunk's name and line:
 * "(command line):1: ..." for -e, the file name otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const cli_opt cli_eval_opts[] = {
  { "-e", 1 },           { "--cpu-ms", 1 }, { "--mem-mb", 1 },
  { "--instructions", 1 }, { "--log-kb", 1 }, { NULL, 0 }
};

/* The most --mem-mb accepts: 64 GiB. */
#define MEM_MB_MAX 65536
/* The most --instructions accepts: 10^12. */
#define INSTRUCTIONS_MAX 1000000000000UL
/* The most --log-kb accepts: 1 GiB. */
#define LOG_KB_MAX 1048576

/* A whole number in [1, max] for option name; 0 and a usage message when
   text is not one. */
static unsigned long long
positive(const char *name, const char *text, unsigned long long max)
{
  char *end;
  errno = 0;
  unsigned long long n = strtoull(text, &end, 10);
  if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 ||
      n == 0 || n > max) {
    cli_usage_errorf("%s must be a whole number from 1 to %llu, not '%s'",
                     name, max, text);
    return 0;
  }
  return n;
}

/* Engine and flow.log lines for --verbose, one line each. */
static void
log_line(flow_engine *engine, int level, const char *msg, void *payload)
{
  static const char *const names[] = { "debug", "info", "warn", "error" };
  (void)engine;
  (void)payload;
  fprintf(stderr, "flow: [%s] ", level >= 0 && level <= 3 ? names[level]
                                                           : "log");
  for (; *msg; msg++)
    fputc(*msg == '\n' || *msg == '\r' ? ' ' : *msg, stderr);
  fputc('\n', stderr);
}

/* The budgets asked for; 0: the engine's default. */
typedef struct budgets {
  unsigned long long cpu_ms, mem_mb, instructions, log_kb;
} budgets;

/* The private engine eval runs on, with the budgets asked for. */
static int
open_engine(cli_ctx *ctx, const budgets *b)
{
  flow_engine_options opts = FLOW_ENGINE_OPTIONS_INIT;
  char errbuf[1024];
  int64_t now;
  opts.script_cpu_ms = (uint32_t)b->cpu_ms;
  opts.script_memory_limit = (size_t)b->mem_mb * 1024 * 1024;
  opts.script_instruction_limit = (uint64_t)b->instructions;
  opts.script_log_limit = (size_t)b->log_kb * 1024;
  if (ctx->verbose)
    opts.log = log_line;
  errbuf[0] = '\0';
  int err = flow_engine_open(&ctx->engine, ":memory:", &opts, errbuf,
                             sizeof errbuf);
  if (err != 0) {
    ctx->engine = NULL;
    cli_errorf("cannot start the sandbox: %s",
               errbuf[0] != '\0' ? errbuf : flow_strerror(err));
    return CLI_EXIT_FAILURE;
  }
  if (cli_fixed_now(ctx, &now))
    flow_engine_set_time(ctx->engine, now);
  return 0;
}

int
cli_cmd_eval(cli_ctx *ctx, const cli_args *args)
{
  const char *code = cli_args_opt(args, "-e");
  const char *cpu = cli_args_opt(args, "--cpu-ms");
  const char *mem = cli_args_opt(args, "--mem-mb");
  const char *ins = cli_args_opt(args, "--instructions");
  const char *logkb = cli_args_opt(args, "--log-kb");
  budgets b = { 0, 0, 0, 0 };
  const char *chunkname;
  char *buf = NULL, *out = NULL;
  size_t len;
  int rc, err;

  if (code != NULL && args->npos > 0)
    return cli_usage_errorf("give either -e CODE or FILE to 'flow eval', "
                            "not both");
  if (cpu != NULL && (b.cpu_ms = positive("--cpu-ms", cpu, UINT32_MAX)) == 0)
    return CLI_EXIT_USAGE;
  if (mem != NULL && (b.mem_mb = positive("--mem-mb", mem, MEM_MB_MAX)) == 0)
    return CLI_EXIT_USAGE;
  if (ins != NULL &&
      (b.instructions = positive("--instructions", ins, INSTRUCTIONS_MAX)) ==
        0)
    return CLI_EXIT_USAGE;
  if (logkb != NULL &&
      (b.log_kb = positive("--log-kb", logkb, LOG_KB_MAX)) == 0)
    return CLI_EXIT_USAGE;
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
  rc = open_engine(ctx, &b);
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
