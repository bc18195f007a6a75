/*
 * `flow graph SCRIPT [--format dot|mermaid] [--svg FILE]`: the state
 * diagram of a service script.
 *
 * The diagram comes from flow_service_graph() on a private ":memory:"
 * engine, as Graphviz DOT (the default) or a Mermaid stateDiagram-v2
 * (which GitHub and GitLab draw in Markdown).  --svg FILE pipes the DOT
 * text through Graphviz's `dot -Tsvg` into FILE; when `dot` is not on the
 * PATH it says how to install it and exits 1, rather than writing nothing
 * in silence.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

const cli_opt cli_graph_opts[] = {
  { "--format", 1 },
  { "--svg", 1 },
  { NULL, 0 },
};

/* 1 when an executable named prog is on the PATH. */
static int
on_path(const char *prog)
{
  const char *path = getenv("PATH");
  char buf[4096];

  while (path != NULL && *path != '\0') {
    const char *colon = strchr(path, ':');
    size_t n = colon != NULL ? (size_t)(colon - path) : strlen(path);

    snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, n ? path : ".", prog);
    if (access(buf, X_OK) == 0)
      return 1;
    path = colon != NULL ? colon + 1 : NULL;
  }
  return 0;
}

/* Runs `dot -Tsvg -o file` with text on its standard input. */
static int
render_svg(const char *text, const char *file)
{
  int fds[2], status;
  pid_t pid;
  size_t len = strlen(text), off = 0;

  if (pipe(fds) != 0) {
    cli_errorf("cannot run dot: %s", strerror(errno));
    return CLI_EXIT_FAILURE;
  }
  pid = fork();
  if (pid < 0) {
    cli_errorf("cannot run dot: %s", strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return CLI_EXIT_FAILURE;
  }
  if (pid == 0) {
    dup2(fds[0], 0);
    close(fds[0]);
    close(fds[1]);
    execlp("dot", "dot", "-Tsvg", "-o", file, (char *)NULL);
    _exit(127);
  }
  close(fds[0]);
  while (off < len) {
    ssize_t w = write(fds[1], text + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;
    off += (size_t)w;
  }
  close(fds[1]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    cli_errorf("dot could not write '%s' (exit %d)",
               file,
               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

int
cli_cmd_graph(cli_ctx *ctx, const cli_args *args)
{
  const char *format = cli_args_opt(args, "--format");
  const char *svg = cli_args_opt(args, "--svg");
  const char *path = args->pos[0];
  const char *name = strcmp(path, "-") == 0 ? "stdin" : path;
  char *src, *out = NULL;
  size_t len;
  int rc, err;

  if (format == NULL)
    format = "dot";
  if (strcmp(format, "dot") != 0 && strcmp(format, "mermaid") != 0)
    return cli_usage_errorf("--format must be dot or mermaid, not '%s'",
                            format);
  if (svg != NULL && strcmp(format, "dot") != 0)
    return cli_usage_errorf("--svg draws through Graphviz: it goes with "
                            "--format dot");
  if (svg != NULL && *svg == '\0')
    return cli_usage_errorf("--svg needs a file name");
  if (svg != NULL && !on_path("dot")) {
    cli_errorf("--svg needs Graphviz's 'dot', which is not installed: "
               "install it (apt-get install graphviz) or use --format dot "
               "and render the text elsewhere");
    return CLI_EXIT_REFUSED;
  }
  rc = cli_engine_open(ctx, CLI_DB_MEMORY);
  if (rc != 0)
    return rc;
  src = cli_read_file(path, &len);
  if (src == NULL)
    return CLI_EXIT_REFUSED;
  err = flow_service_graph(&out, ctx->engine, src, len, name, format);
  free(src);
  if (err != 0)
    return cli_report_script(ctx, err);
  if (svg != NULL)
    rc = render_svg(out, svg);
  else
    fputs(out, stdout);
  flow_free(out);
  return rc;
}
