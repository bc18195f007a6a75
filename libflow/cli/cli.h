/*
 * Declarations shared by the files of the `flow` command.
 *
 * The command is a table of subcommands (flow_main.c), one cmd_<name>.c
 * each, in the manner of tmux's cmd_entry table and libgit2's cli_cmds[].
 * flow_main.c parses every option, global or the command's own, wherever it
 * appears on the line, and hands the command a cli_args with its positional
 * arguments and the options it was given.  A command returns an exit code
 * (CLI_EXIT_*); cli_util.c holds what several commands share: opening the
 * engine, turning a FLOW_E* code into an exit code and a one-line message,
 * reading JSON arguments from text, stdin or a file, and splitting a JSON
 * array into lines.
 *
 * Only the public API (<flow.h>) and Jansson are used here.
 */
#ifndef LIBFLOW_CLI_CLI_H
#define LIBFLOW_CLI_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <flow.h>

/* Exit codes: the contract in DESIGN.md. */
#define CLI_EXIT_OK 0      /* done */
#define CLI_EXIT_REFUSED 1 /* invalid input, script error, not permitted... */
#define CLI_EXIT_USAGE 2   /* unknown command or option, missing argument */
#define CLI_EXIT_FAILURE 3 /* storage or internal failure */

/* The options given to the whole command, wherever they appeared. */
typedef struct cli_ctx {
  const char *db;      /* --db, $FLOW_DB or "flow.db" */
  int has_now;         /* --now was given */
  int64_t now;         /* its value in ms since the epoch */
  int has_env_now;     /* $FLOW_NOW was set: the clock when --now is not */
  int64_t env_now;
  int json;            /* --json */
  int verbose;         /* --verbose: engine and flow.log lines */
  flow_actor actor;    /* --actor and --roles */
  const char **roles;  /* owned array behind actor.roles */
  char *roles_buf;     /* owned copy of the --roles text, split */
  flow_engine *engine; /* opened by cli_engine_open, closed by main */
} cli_ctx;

/* One option a command accepts ("--service", "-e"). */
typedef struct cli_opt {
  const char *name;
  int has_arg;
} cli_opt;

/* An option as it was given: name as in cli_opt, value or NULL. */
typedef struct cli_optval {
  const char *name;
  const char *value;
} cli_optval;

/* What a command receives: its positional arguments and options in order. */
typedef struct cli_args {
  int npos;
  char **pos;
  int nopts;
  cli_optval *opts;
} cli_args;

typedef struct cli_cmd {
  const char *name;
  const char *args;       /* synopsis after the name: "SERVICE [DATA]" */
  const char *summary;    /* one line for the command list */
  const char *help;       /* what `flow help NAME` says after the usage */
  const cli_opt *opts;    /* options of its own, ending with {NULL, 0} */
  int min_args, max_args; /* positional arguments; max -1: no limit */
  int (*run)(cli_ctx *ctx, const cli_args *args); /* NULL: future work */
} cli_cmd;

/* The commands (cmd_<name>.c). */
int cli_cmd_check(cli_ctx *ctx, const cli_args *args);
int cli_cmd_load(cli_ctx *ctx, const cli_args *args);
int cli_cmd_open(cli_ctx *ctx, const cli_args *args);
int cli_cmd_signal(cli_ctx *ctx, const cli_args *args);
int cli_cmd_show(cli_ctx *ctx, const cli_args *args);
int cli_cmd_history(cli_ctx *ctx, const cli_args *args);
int cli_cmd_list(cli_ctx *ctx, const cli_args *args);
int cli_cmd_eval(cli_ctx *ctx, const cli_args *args);
int cli_cmd_run(cli_ctx *ctx, const cli_args *args);
int cli_cmd_test(cli_ctx *ctx, const cli_args *args);
int cli_cmd_graph(cli_ctx *ctx, const cli_args *args);
int cli_cmd_actions(cli_ctx *ctx, const cli_args *args);
int cli_cmd_tasks(cli_ctx *ctx, const cli_args *args);
int cli_cmd_claim(cli_ctx *ctx, const cli_args *args);
int cli_cmd_release(cli_ctx *ctx, const cli_args *args);
int cli_cmd_complete(cli_ctx *ctx, const cli_args *args);
int cli_cmd_cancel(cli_ctx *ctx, const cli_args *args);
int cli_cmd_send(cli_ctx *ctx, const cli_args *args);
int cli_cmd_messages(cli_ctx *ctx, const cli_args *args);
int cli_cmd_incidents(cli_ctx *ctx, const cli_args *args);
int cli_cmd_retry(cli_ctx *ctx, const cli_args *args);
int cli_cmd_dismiss(cli_ctx *ctx, const cli_args *args);
int cli_cmd_schema(cli_ctx *ctx, const cli_args *args);
int cli_cmd_services(cli_ctx *ctx, const cli_args *args);

/* Options of the commands that have some (cmd_list.c, cmd_eval.c,
   cmd_run.c, cmd_check.c, cmd_test.c, cmd_graph.c, cmd_actions.c,
   cmd_tasks.c, cmd_send.c, cmd_incidents.c, cmd_services.c). */
extern const cli_opt cli_check_opts[];
extern const cli_opt cli_test_opts[];
extern const cli_opt cli_graph_opts[];
extern const cli_opt cli_list_opts[];
extern const cli_opt cli_eval_opts[];
extern const cli_opt cli_run_opts[];
extern const cli_opt cli_actions_opts[];
extern const cli_opt cli_tasks_opts[];
extern const cli_opt cli_send_opts[];
extern const cli_opt cli_messages_opts[];
extern const cli_opt cli_incidents_opts[];
extern const cli_opt cli_schema_opts[];

/* The value of the last occurrence of option name, or NULL; "" for a flag
   that was given. */
const char *cli_args_opt(const cli_args *args, const char *name);

/* ---- cli_util.c --------------------------------------------------------- */

/* How a command wants its database. */
typedef enum cli_db_mode {
  CLI_DB_EXISTING = 0, /* --db must name an existing file */
  CLI_DB_CREATE = 1,   /* create it when missing (flow load) */
  CLI_DB_MEMORY = 2    /* a private ":memory:" engine (check, eval) */
} cli_db_mode;

/*
 * Opens ctx->engine as mode asks and applies --now.  On failure prints one
 * line to stderr and returns CLI_EXIT_FAILURE; 0 on success.
 */
int cli_engine_open(cli_ctx *ctx, cli_db_mode mode);

/* The exit code for a FLOW_E* code: 0, CLI_EXIT_REFUSED or _FAILURE. */
int cli_exit_code(int err);

/*
 * Reports the engine's last failure (err) as one line on stderr,
 * "flow: <flow_errmsg>", folding any line breaks, and returns the exit code
 * for err.
 */
int cli_report(cli_ctx *ctx, int err);

/*
 * As cli_report for `check` and `load`: a script error (FLOW_ESCRIPT) is
 * printed as the library gives it, one "FILE:LINE: message" per line.
 */
int cli_report_script(cli_ctx *ctx, int err);

/* Prints "flow: <message>" on stderr, one line. */
void cli_errorf(const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 1, 2)))
#endif
  ;

/* The fixed engine clock of this command (--now, else $FLOW_NOW) in
   *out: 1 when there is one, 0 for the real clock. */
int cli_fixed_now(const cli_ctx *ctx, int64_t *out);

/* Prints a usage error and the hint, returns CLI_EXIT_USAGE. */
int cli_usage_errorf(const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 1, 2)))
#endif
  ;

/*
 * Reads a whole file ("-" means standard input) into a malloc'd,
 * NUL-terminated buffer; *len (may be NULL) gets its length.  Returns NULL
 * after printing one line on stderr when it cannot.
 */
char *cli_read_file(const char *path, size_t *len);

/*
 * The JSON text an argument stands for: "-" reads standard input, "@FILE"
 * reads FILE, anything else is the text itself.  *out is malloc'd.  Returns
 * 0, or CLI_EXIT_REFUSED after printing why.
 */
int cli_json_arg(char **out, const char *arg);

/* Prints JSON text from the library on one line of stdout. */
void cli_print_json(const char *json);

/*
 * Prints each element of the JSON array text on its own line, exactly as
 * the library wrote it.  Returns 0, or CLI_EXIT_FAILURE (after a message)
 * when text is not an array.
 */
int cli_print_array_lines(const char *text);

/* Prints a listing from the library: the array on one line with --json,
   else one element per line (cli_print_array_lines).  Returns the exit
   code. */
int cli_print_listing(const cli_ctx *ctx, const char *text);

/*
 * The one-line JSON object {"status":STATUS,KIND:ID} (sorted keys) that
 * claim, release, cancel and dismiss print and return over JSON-RPC:
 * {"status":"claimed","task":"7"}.  malloc'd (free with free()), or NULL
 * when out of memory.
 */
char *cli_status_json(const char *kind, const char *id, const char *status);

/*
 * Reads an elapsed duration -- a whole number and a unit, s, m, h, d or
 * w ("90s", "15m", "2h", "3d", "2w"), as DESIGN.md writes them -- into
 * *ms.  Returns 0; -1 when text is not one; -2 for no time at all ("0h").
 * The library sets the upper bound (flow_message_send: 366 days).
 */
int cli_parse_duration(const char *text, int64_t *ms);

/* Prints text, a JSON array of objects, as an aligned table: a column
   per key under its heading; a string as it is (cut to cut[k] characters
   when cut is not NULL and cut[k] is not 0), a whole number in decimal,
   anything else "-".  Returns the number of rows, or -1 (said on stderr)
   when text is not an array. */
#define CLI_TABLE_MAX_COLS 8
long cli_print_table(const char *text, const char *const *heads,
                     const char *const *keys, int ncols, const int *cut);

#endif /* LIBFLOW_CLI_CLI_H */
