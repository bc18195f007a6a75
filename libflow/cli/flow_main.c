/*
 * The `flow` command: global options, the table of subcommands, help and
 * exit codes.
 *
 *   flow [--db FILE] [--now TIME] [--json] [--actor ID] [--roles a,b]
 *        COMMAND ...
 *
 * Options may appear anywhere on the line, before or after the command
 * word, in the forms "--db FILE" and "--db=FILE"; "--" ends them, so a
 * later argument that starts with a dash is taken as it is.  The parser
 * knows every command's own options (cli_cmd.opts), so an option's value is
 * never mistaken for an option itself.  After the command word, an option
 * of the command's own wins over a global one of the same name (`flow
 * schema SERVICE --version N`; `flow --version` before it still prints the
 * version).  A command gets its positional
 * arguments and options in a cli_args and returns an exit code: 0 done,
 * 1 refused, 2 usage error, 3 storage or internal failure (DESIGN.md).
 * Usage errors print one line and "Try 'flow --help'." on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int cmd_help(cli_ctx *ctx, const cli_args *args);

static const cli_opt no_opts[] = { { NULL, 0 } };

static const cli_cmd commands[] = {
  {
    .name = "check",
    .args = "[--strict] SCRIPT...",
    .summary = "validate scripts; errors as FILE:LINE: message",
    .help = "Checks each script without touching any database and prints\n"
            "'SCRIPT: ok' for each good one.  Every problem in a bad script\n"
            "is printed on stderr as FILE:LINE: message.  Suspicious things\n"
            "in a script that loads (a state nothing reaches, a state a\n"
            "case gets stuck in, a timer that can never fire) are printed\n"
            "as FILE:LINE: warning: message.  Exit 1 if any script failed,\n"
            "or with --strict if any has a warning.\n",
    .opts = cli_check_opts,
    .min_args = 1,
    .max_args = -1,
    .run = cli_cmd_check,
  },
  {
    .name = "load",
    .args = "SCRIPT...",
    .summary = "store service versions in the database",
    .help = "Loads each script and stores its version, with its source and\n"
            "SHA-256, in the database (created when missing).  Loading the\n"
            "same version again does nothing; a changed script needs a new\n"
            "version number.  With --json prints one JSON object per script.\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = -1,
    .run = cli_cmd_load,
  },
  {
    .name = "open",
    .args = "SERVICE [DATA]",
    .summary = "open a case; prints the case as JSON",
    .help = "Opens a case of the newest stored version of SERVICE.  DATA is a\n"
            "JSON object: the text itself, '-' to read it from stdin, or\n"
            "@FILE.\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 2,
    .run = cli_cmd_open,
  },
  {
    .name = "signal",
    .args = "CASE EVENT [PAYLOAD]",
    .summary = "apply an event; prints the case as JSON",
    .help = "Applies EVENT to case CASE as the actor given by --actor and\n"
            "--roles. PAYLOAD is a JSON object: the text itself, '-' for\n"
            "stdin, or @FILE.\n",
    .opts = no_opts,
    .min_args = 2,
    .max_args = 3,
    .run = cli_cmd_signal,
  },
  {
    .name = "show",
    .args = "CASE",
    .summary = "the case as JSON",
    .help = "Prints case CASE as one JSON object: id, service, version,\n"
            "state, status, data, opened_at, updated_at, due_at and seq.\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 1,
    .run = cli_cmd_show,
  },
  {
    .name = "history",
    .args = "CASE",
    .summary = "its events, one JSON object per line",
    .help = "Prints everything that happened to case CASE, oldest first, one\n"
            "JSON object per line: seq, at, actor, event, payload, from and\n"
            "to.\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 1,
    .run = cli_cmd_history,
  },
  {
    .name = "list",
    .args = "[--service S] [--state X] [--status open|closed] [--overdue]"
            " [--where FIELD=VALUE]... [--limit N]",
    .summary = "cases as a table, or a JSON array with --json",
    .help = "Lists cases, oldest first, as a table (ID, SERVICE, VER, STATE,\n"
            "STATUS, UPDATED, DUE), or with --json as a JSON array of cases.\n"
            "--where may be repeated; all conditions must hold.  VALUE is\n"
            "taken as JSON when it is a number, true, false or a \"quoted\n"
            "string\", otherwise as text, so --where bin=refuse needs no\n"
            "quotes.  A number also finds the same digits stored as text:\n"
            "--where uprn=100023336956.  --overdue keeps open cases whose\n"
            "due time has passed (by --now when given).  --limit defaults\n"
            "to 100.\n",
    .opts = cli_list_opts,
    .min_args = 0,
    .max_args = 0,
    .run = cli_cmd_list,
  },
  {
    .name = "schema",
    .args = "SERVICE [--version N]",
    .summary = "the JSON Schema of a service's fields",
    .help = "Prints the JSON Schema (draft 2020-12) of the fields of SERVICE,\n"
            "newest stored version or --version N, as one JSON object: what a\n"
            "host needs to build a form for opening a case.\n",
    .opts = cli_schema_opts,
    .min_args = 1,
    .max_args = 1,
    .run = cli_cmd_schema,
  },
  {
    .name = "services",
    .args = "",
    .summary = "stored services and versions as a table, or JSON",
    .help = "Lists the service versions stored in the database, oldest\n"
            "first, as a table (SERVICE, VER, LOADED, SHA256 shortened to 12\n"
            "digits, TITLE), or with --json as a JSON array of {name,\n"
            "version, title, sha256, loaded_at}.\n",
    .opts = no_opts,
    .min_args = 0,
    .max_args = 0,
    .run = cli_cmd_services,
  },
  {
    .name = "actions",
    .args = "[--case C] [--status pending|waiting|done|failed|incident]",
    .summary = "action requests, one JSON object per line",
    .help = "Prints the requests services made with flow.call, oldest first,\n"
            "one JSON object per line (a JSON array with --json): id, case,\n"
            "action, args, key, status, attempts, and how it ended (result,\n"
            "error).  'waiting' are pending requests of an action with no\n"
            "handler here; 'incident' ones failed with no fail event, or\n"
            "their reply or fail event was refused.\n",
    .opts = cli_actions_opts,
    .min_args = 0,
    .max_args = 0,
    .run = cli_cmd_actions,
  },
  {
    .name = "tasks",
    .args = "[--team T] [--assignee A] [--status open|claimed|done|cancelled]"
            " [--overdue] [--case C]",
    .summary = "tasks for people, one JSON object per line",
    .help = "Prints the tasks services made with flow.task, oldest first, one\n"
            "JSON object per line (a JSON array with --json): id, case, name,\n"
            "title, team, assignee, status, due_at, overdue, form,\n"
            "claimed_by, outcome, finished_by.  --assignee A keeps the tasks\n"
            "assigned to A or claimed by A; --overdue the open or claimed\n"
            "ones due before the engine's time (by --now when given).\n",
    .opts = cli_tasks_opts,
    .min_args = 0,
    .max_args = 0,
    .run = cli_cmd_tasks,
  },
  {
    .name = "claim",
    .args = "TASK",
    .summary = "take a task on as --actor",
    .help =
      "Claims task TASK for the actor given by --actor, and prints\n"
      "{\"status\":\"claimed\",\"task\":TASK}.  Claiming a task one holds\n"
      "already is fine; one claimed by someone else, done, cancelled\n"
      "or assigned to someone else is refused (exit 1).\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 1,
    .run = cli_cmd_claim,
  },
  {
    .name = "release",
    .args = "TASK",
    .summary = "give a claimed task back",
    .help = "Gives back task TASK, claimed by --actor, so that someone else\n"
            "can claim it, and prints {\"status\":\"open\",\"task\":TASK}.\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 1,
    .run = cli_cmd_release,
  },
  {
    .name = "complete",
    .args = "TASK [OUTCOME]",
    .summary = "complete a task; prints the case as JSON",
    .help = "Completes task TASK as --actor with OUTCOME, a JSON object\n"
            "checked against the task's form: the text itself, '-' for\n"
            "stdin, or @FILE (default {}).  The task's done event is applied\n"
            "to its case, and the case after it is printed.  An outcome the\n"
            "form does not take is refused with every failing field named,\n"
            "and changes nothing.  An unclaimed task is claimed as it is\n"
            "completed.\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 2,
    .run = cli_cmd_complete,
  },
  {
    .name = "cancel",
    .args = "TASK",
    .summary = "cancel an open or claimed task",
    .help = "Cancels task TASK, open or claimed, and prints\n"
            "{\"status\":\"cancelled\",\"task\":TASK}.  Its done event is not\n"
            "sent.\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 1,
    .run = cli_cmd_cancel,
  },
  {
    .name = "send",
    .args = "MESSAGE KEY [PAYLOAD] [--ttl DURATION]",
    .summary = "send a message to the case with that key",
    .help = "Sends message MESSAGE with correlation key KEY and PAYLOAD, a\n"
            "JSON object (the text itself, '-' for stdin, or @FILE), and\n"
            "prints the message as JSON.  The open case whose correlated\n"
            "field holds KEY gets it as the event MESSAGE (\"delivered\");\n"
            "with no such case yet it waits (\"buffered\") until a case takes\n"
            "KEY or --ttl runs out (90s, 15m, 2h, 3d, 2w; default 7 days, at\n"
            "most 366).  A case that refuses it raises an incident\n"
            "(\"incident\"): see 'flow incidents'.\n",
    .opts = cli_send_opts,
    .min_args = 2,
    .max_args = 3,
    .run = cli_cmd_send,
  },
  {
    .name = "messages",
    .args = "[--name N] [--key K]"
            " [--status buffered|delivered|expired|incident|dismissed]",
    .summary = "messages sent, one JSON object per line",
    .help =
      "Prints the messages sent, oldest first, one JSON object per line\n"
      "(a JSON array with --json): id, name, key, payload, status, case,\n"
      "created_at, expires_at, finished_at.\n",
    .opts = cli_messages_opts,
    .min_args = 0,
    .max_args = 0,
    .run = cli_cmd_messages,
  },
  {
    .name = "incidents",
    .args = "[--case C] [--status open|resolved|dismissed]",
    .summary = "refused events, one JSON object per line",
    .help = "Prints the incidents, oldest first, one JSON object per line (a\n"
            "JSON array with --json): events of a timer, an action, a task\n"
            "or a message that their case refused, with nobody to tell:\n"
            "id, case, source, source_id, event, payload, code, error (with\n"
            "the script's file and line), status, attempts.  Retry them with\n"
            "'flow retry', or close them with 'flow dismiss'.\n",
    .opts = cli_incidents_opts,
    .min_args = 0,
    .max_args = 0,
    .run = cli_cmd_incidents,
  },
  {
    .name = "retry",
    .args = "INCIDENT",
    .summary = "apply an incident's event again",
    .help = "Applies the event of open incident INCIDENT again, as the case\n"
            "is now (say once it has moved on to a state that takes it), and\n"
            "prints the case; the incident is resolved.  Refused again,\n"
            "it stays open, the attempt is counted, and the refusal is one\n"
            "line on stderr (exit 1).  For an action that failed with no fail\n"
            "event the request is dispatched once more, and it prints\n"
            "{\"incident\":INCIDENT,\"status\":\"resolved\"}.\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 1,
    .run = cli_cmd_retry,
  },
  {
    .name = "dismiss",
    .args = "INCIDENT",
    .summary = "close an incident without its event",
    .help = "Closes open incident INCIDENT without applying its event, and\n"
            "prints {\"incident\":INCIDENT,\"status\":\"dismissed\"}.\n",
    .opts = no_opts,
    .min_args = 1,
    .max_args = 1,
    .run = cli_cmd_dismiss,
  },
  {
    .name = "run",
    .args = "[--until-idle | --keep-running] [--action NAME=ok|fail|stdin]...",
    .summary = "fire timers; JSON-RPC requests on stdin",
    .help =
      "Runs the engine on the database: fires timers as they fall due and\n"
      "answers JSON-RPC 2.0 requests read from stdin, one per line, with\n"
      "one JSON line each on stdout.  Methods: open {service, data, actor},\n"
      "signal {case, event, payload, actor}, show {case}, history {case},\n"
      "list {service, state, status, where, limit, overdue}, timers {case},\n"
      "actions {case, status}, action_result {request, result},\n"
      "action_failed {request, message, retryable}, tasks {team, assignee,\n"
      "status, overdue, case}, claim, release and cancel {task, actor},\n"
      "complete {task, outcome, actor}, send {message, key, payload, ttl},\n"
      "messages {name, key, status}, incidents {case, status}, retry and\n"
      "dismiss {incident, actor}.\n"
      "What the engine does on its own (a timer fired, its transition),\n"
      "and what happens to tasks, messages and incidents, is written as an\n"
      "\"event\" notification.  At the end of input it finishes what was\n"
      "asked and exits 0; --until-idle first fires every timer due at the\n"
      "engine's time (with --now: that time) and expires the messages\n"
      "whose time is up; --keep-running goes on firing timers until\n"
      "SIGINT or SIGTERM.\n"
      "--action NAME=ok answers each request for action NAME at once with\n"
      "an empty result, NAME=fail fails it, NAME=stdin writes it as an\n"
      "\"action\" notification {request, action, case, args, key, attempt}\n"
      "for the client to answer with action_result or action_failed.\n",
    .opts = cli_run_opts,
    .min_args = 0,
    .max_args = 0,
    .run = cli_cmd_run,
  },
  {
    .name = "test",
    .args = "[--tap] [--junit FILE] [--filter TEXT] [--coverage]"
            " [--min-coverage PCT] [PATH...]",
    .summary = "run *_test.lua files",
    .help =
      "Finds the *_test.lua files under each PATH (default: the current\n"
      "directory), recursively, and runs every test in each, in its own\n"
      "in-memory engine with a virtual clock that starts on Monday\n"
      "2 February 2026 at 09:00Z (--now sets another start).  Prints a\n"
      "line per test and ends with 'N passed, N failed'.  --tap writes TAP\n"
      "instead; --junit FILE also writes JUnit XML for CI; --filter runs\n"
      "only tests whose name contains TEXT; --coverage reports the states\n"
      "entered and transitions fired per service, and --min-coverage PCT\n"
      "also fails the run when a service fired fewer than PCT percent of\n"
      "its transitions; --verbose shows what each test wrote with print\n"
      "and flow.log under its line (a failing test's is always shown).\n"
      "Exit 0 only when every test passed (and the coverage was met).\n"
      "See docs/testing.md.\n",
    .opts = cli_test_opts,
    .min_args = 0,
    .max_args = -1,
    .run = cli_cmd_test,
  },
  {
    .name = "graph",
    .args = "[--format dot|mermaid] [--svg FILE] SCRIPT",
    .summary = "the state diagram as DOT or Mermaid",
    .help =
      "Prints the states of a service script and the events, timers and\n"
      "roles that move a case between them, as Graphviz DOT (the default)\n"
      "or, with --format mermaid, as a Mermaid state diagram.  --svg FILE\n"
      "renders the DOT through Graphviz ('dot' must be installed).\n",
    .opts = cli_graph_opts,
    .min_args = 1,
    .max_args = 1,
    .run = cli_cmd_graph,
  },
  {
    .name = "eval",
    .args = "[-e CODE | FILE] [--cpu-ms N] [--mem-mb N] [--instructions N]"
            " [--log-kb N]",
    .summary = "run Lua in a fresh sandbox; prints the result",
    .help = "Runs Lua code under the same sandbox and budgets as a handler\n"
            "and prints what it returns as JSON.  FILE '-' reads the code\n"
            "from stdin.\n"
            "\n"
            "  --cpu-ms N   CPU time the chunk may use, in ms (default 1000)\n"
            "  --mem-mb N   memory the chunk may hold, in MiB (default 32)\n"
            "  --instructions N\n"
            "               Lua VM instructions it may run (default 10000000)\n"
            "  --log-kb N   KiB flow.log and print may write (default 64)\n",
    .opts = cli_eval_opts,
    .min_args = 0,
    .max_args = 1,
    .run = cli_cmd_eval,
  },
  {
    .name = "help",
    .args = "[COMMAND]",
    .summary = "this help, or the help of one command",
    .help = "Lists the commands and options, or describes COMMAND.\n",
    .opts = no_opts,
    .min_args = 0,
    .max_args = 1,
    .run = cmd_help,
  },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Options every command accepts, in the order of global_opts[]. */
enum {
  G_DB,
  G_NOW,
  G_JSON,
  G_ACTOR,
  G_ROLES,
  G_VERBOSE,
  G_HELP,
  G_HELP_SHORT,
  G_VERSION,
  G_VERSION_SHORT
};

static const cli_opt global_opts[] = {
  { "--db", 1 },      { "--now", 1 },     { "--json", 0 }, { "--actor", 1 },
  { "--roles", 1 },   { "--verbose", 0 }, { "--help", 0 }, { "-h", 0 },
  { "--version", 0 }, { "-V", 0 },        { NULL, 0 }
};

static const cli_cmd *
find_command(const char *name)
{
  size_t i;

  for (i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

/* Index of name in opts (compared up to len bytes), or -1. */
static int
find_opt(const cli_opt *opts, const char *name, size_t len)
{
  int i;

  for (i = 0; opts[i].name != NULL; i++)
    if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
      return i;
  return -1;
}

static void
print_usage(FILE *f)
{
  size_t i;

  fprintf(f,
          "Usage: flow [OPTIONS] COMMAND [ARGS...]\n"
          "\n"
          "Check and load libflow service scripts, open cases, send them\n"
          "events and read them back.\n"
          "\n"
          "Commands:\n");
  for (i = 0; i < NCOMMANDS; i++) {
    const cli_cmd *c = &commands[i];
    /* A synopsis too long for its column: its positional part ("MESSAGE
       KEY [PAYLOAD]") when that fits, else "[OPTIONS]". */
    const char *opts = strstr(c->args, " [--");
    int len = (int)strlen(c->args);
    if (len > 21)
      len = c->args[0] != '[' && opts != NULL && opts - c->args <= 21
              ? (int)(opts - c->args)
              : 0;
    fprintf(f,
            "  %-9s %-21.*s %s\n",
            c->name,
            len > 0 || c->args[0] == '\0' ? len : 9,
            len > 0 || c->args[0] == '\0' ? c->args : "[OPTIONS]",
            c->summary);
  }
  fprintf(f,
          "\n"
          "Options (before or after the command word):\n"
          "  --db FILE     the database (default: $FLOW_DB, else ./flow.db)\n"
          "  --now TIME    set the engine clock for this command, ISO 8601\n"
          "                with an offset or Z: 2026-11-27T09:00:00Z\n"
          "                (default: $FLOW_NOW, else the real clock)\n"
          "  --json        JSON output (load, list); listings as one array\n"
          "  --actor ID    who is acting (default: $USER, else cli)\n"
          "  --roles A,B   the roles the actor holds\n"
          "  --verbose     print engine and flow.log messages on stderr\n"
          "  --help, -h    this help; 'flow help COMMAND' for one command\n"
          "  --version     print the version\n"
          "  --            end of options\n"
          "\n"
          "Exit status: 0 done, 1 refused, 2 usage error, 3 storage or\n"
          "internal failure.  A refusal prints one line on stderr.\n");
}

/* Prints "Usage: flow NAME ARGS", wrapping ARGS under itself at 78. */
static void
print_synopsis(const cli_cmd *c)
{
  int indent = printf("Usage: flow %s", c->name), col = indent;
  const char *p = c->args;

  while (*p != '\0') {
    /* One word of the synopsis: up to the space before the next '['. */
    const char *end = strstr(p + 1, " [");
    int len = end != NULL ? (int)(end - p) : (int)strlen(p);

    if (col > indent && col + 1 + len > 78) {
      printf("\n%*s", indent, "");
      col = indent;
    }
    printf(" %.*s", len, p);
    col += 1 + len;
    p += len;
    while (*p == ' ')
      p++;
  }
  putchar('\n');
}

static void
print_command_help(const cli_cmd *c)
{
  print_synopsis(c);
  printf("\n%s", c->help);
  if (c->run == NULL)
    printf("This command is not available in this version yet.\n");
  printf("\nThe options of 'flow --help' (--db, --now, --json, --actor,\n"
         "--roles, --verbose) work here too.\n");
}

static int
cmd_help(cli_ctx *ctx, const cli_args *args)
{
  const cli_cmd *c;

  (void)ctx;
  if (args->npos == 0) {
    print_usage(stdout);
    return CLI_EXIT_OK;
  }
  c = find_command(args->pos[0]);
  if (c == NULL)
    return cli_usage_errorf("no command '%s'", args->pos[0]);
  print_command_help(c);
  return CLI_EXIT_OK;
}

const char *
cli_args_opt(const cli_args *args, const char *name)
{
  const char *v = NULL;
  int i;

  for (i = 0; i < args->nopts; i++)
    if (strcmp(args->opts[i].name, name) == 0)
      v = args->opts[i].value != NULL ? args->opts[i].value : "";
  return v;
}

/* Splits --roles text into ctx->roles; empty items are dropped. */
static int
set_roles(cli_ctx *ctx, const char *text)
{
  size_t n = 1, i;
  const char *p;
  char *s, *item;

  free(ctx->roles_buf);
  free(ctx->roles);
  ctx->roles = NULL;
  ctx->actor.roles = NULL;
  ctx->actor.nroles = 0;
  for (p = text; *p; p++)
    if (*p == ',')
      n++;
  ctx->roles_buf = malloc(strlen(text) + 1);
  ctx->roles = malloc(n * sizeof(*ctx->roles));
  if (ctx->roles_buf == NULL || ctx->roles == NULL) {
    cli_errorf("out of memory");
    return CLI_EXIT_FAILURE;
  }
  strcpy(ctx->roles_buf, text);
  i = 0;
  s = ctx->roles_buf;
  for (;;) {
    char *comma = strchr(s, ',');
    if (comma != NULL)
      *comma = '\0';
    item = s;
    while (*item == ' ')
      item++;
    if (*item != '\0')
      ctx->roles[i++] = item;
    if (comma == NULL)
      break;
    s = comma + 1;
  }
  ctx->actor.roles = (const char *const *)ctx->roles;
  ctx->actor.nroles = i;
  return 0;
}

/* Applies one global option; returns 0 or an exit code. */
static int
apply_global(cli_ctx *ctx,
             int which,
             const char *value,
             int *help,
             int *version)
{
  switch (which) {
    case G_DB:
      if (*value == '\0')
        return cli_usage_errorf("--db needs a file name");
      ctx->db = value;
      break;
    case G_NOW:
      if (flow_time_parse(&ctx->now, value) != 0)
        return cli_usage_errorf("--now: cannot read '%s' as a time; write "
                                "ISO 8601 with an offset or Z, like "
                                "2026-11-27T09:00:00Z",
                                value);
      ctx->has_now = 1;
      break;
    case G_JSON:
      ctx->json = 1;
      break;
    case G_ACTOR:
      if (*value == '\0')
        return cli_usage_errorf("--actor needs an id");
      ctx->actor.id = value;
      break;
    case G_ROLES:
      return set_roles(ctx, value);
    case G_VERBOSE:
      ctx->verbose = 1;
      break;
    case G_HELP:
    case G_HELP_SHORT:
      *help = 1;
      break;
    case G_VERSION:
    case G_VERSION_SHORT:
      *version = 1;
      break;
  }
  return 0;
}

/*
 * Parses argv into ctx, the command and its arguments.  Returns 0, or an
 * exit code after printing why; *done is set when the run is over (help,
 * version, a command that is not available).
 */
static int
parse(cli_ctx *ctx,
      int argc,
      char **argv,
      const cli_cmd **cmd_out,
      cli_args *args,
      int *done)
{
  const cli_cmd *cmd = NULL;
  int help = 0, version = 0, dashdash = 0, i, rc;

  for (i = 1; i < argc; i++) {
    char *arg = argv[i];

    if (!dashdash && strcmp(arg, "--") == 0) {
      dashdash = 1;
    } else if (!dashdash && arg[0] == '-' && arg[1] != '\0') {
      const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
      size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
      const char *value = eq != NULL ? eq + 1 : NULL;
      int g = find_opt(global_opts, arg, len);
      int c = cmd != NULL ? find_opt(cmd->opts, arg, len) : -1;
      const cli_opt *o;

      if (c >= 0)
        g = -1; /* a command's own option wins: flow schema S --version N */
      if (g < 0 && c < 0) {
        if (cmd != NULL && cmd->run == NULL)
          continue; /* not available anyway: said below */
        if (cmd != NULL)
          return cli_usage_errorf(
            "unknown option '%.*s' for 'flow %s'", (int)len, arg, cmd->name);
        return cli_usage_errorf("unknown option '%.*s'", (int)len, arg);
      }
      o = g >= 0 ? &global_opts[g] : &cmd->opts[c];
      if (o->has_arg && value == NULL) {
        if (i + 1 >= argc)
          return cli_usage_errorf("option '%s' needs a value", o->name);
        value = argv[++i];
      } else if (!o->has_arg && value != NULL) {
        return cli_usage_errorf("option '%s' takes no value", o->name);
      }
      if (g >= 0) {
        rc = apply_global(ctx, g, value, &help, &version);
        if (rc != 0)
          return rc;
      } else {
        args->opts[args->nopts].name = o->name;
        args->opts[args->nopts].value = value;
        args->nopts++;
      }
    } else if (cmd == NULL) {
      cmd = find_command(arg);
      if (cmd == NULL)
        return cli_usage_errorf("unknown command '%s'", arg);
    } else {
      args->pos[args->npos++] = arg;
    }
  }

  if (version) {
    printf("flow %s (libflow %s)\n", FLOW_VERSION_STRING, flow_version());
    *done = 1;
    return CLI_EXIT_OK;
  }
  if (help) {
    if (cmd != NULL && cmd->run != cmd_help)
      print_command_help(cmd);
    else if (cmd != NULL && args->npos > 0)
      return cmd_help(ctx, args);
    else
      print_usage(stdout);
    *done = 1;
    return CLI_EXIT_OK;
  }
  if (cmd == NULL)
    return cli_usage_errorf("no command given");
  if (cmd->run == NULL) {
    cli_errorf("'%s' is not available in this version yet", cmd->name);
    *done = 1;
    return CLI_EXIT_USAGE;
  }
  if (args->npos < cmd->min_args)
    return cli_usage_errorf("'flow %s' needs more arguments: flow %s %s",
                            cmd->name,
                            cmd->name,
                            cmd->args);
  if (cmd->max_args >= 0 && args->npos > cmd->max_args)
    return cli_usage_errorf("too many arguments for 'flow %s': flow %s %s",
                            cmd->name,
                            cmd->name,
                            cmd->args);
  *cmd_out = cmd;
  return 0;
}

int
main(int argc, char **argv)
{
  cli_ctx ctx;
  cli_args args;
  const cli_cmd *cmd = NULL;
  const char *env;
  int rc, done = 0;

  memset(&ctx, 0, sizeof(ctx));
  memset(&args, 0, sizeof(args));
  env = getenv("FLOW_DB");
  ctx.db = env != NULL && *env != '\0' ? env : "flow.db";
  env = getenv("USER");
  ctx.actor.id = env != NULL && *env != '\0' ? env : "cli";
  /* FLOW_NOW is --now's default, read before the options so that --now
     wins.  flow test keeps its own virtual clock and takes only --now. */
  env = getenv("FLOW_NOW");
  if (env != NULL && *env != '\0') {
    if (flow_time_parse(&ctx.env_now, env) != 0) {
      cli_usage_errorf("FLOW_NOW: cannot read '%s' as a time; write ISO "
                       "8601 with an offset or Z, like "
                       "2026-11-27T09:00:00Z, or unset it",
                       env);
      return CLI_EXIT_USAGE;
    }
    ctx.has_env_now = 1;
  }

  args.pos = malloc((size_t)(argc + 1) * sizeof(*args.pos));
  args.opts = malloc((size_t)(argc + 1) * sizeof(*args.opts));
  if (args.pos == NULL || args.opts == NULL) {
    cli_errorf("out of memory");
    rc = CLI_EXIT_FAILURE;
    goto out;
  }

  rc = parse(&ctx, argc, argv, &cmd, &args, &done);
  if (rc != 0 || done)
    goto out;
  rc = cmd->run(&ctx, &args);

out:
  if ((fflush(stdout) != 0 || ferror(stdout)) && rc == CLI_EXIT_OK) {
    cli_errorf("cannot write the output");
    rc = CLI_EXIT_FAILURE;
  }
  flow_engine_close(ctx.engine);
  free(ctx.roles);
  free(ctx.roles_buf);
  free(args.pos);
  free(args.opts);
  return rc;
}
