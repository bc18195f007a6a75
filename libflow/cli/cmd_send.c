/*
 * Messages: what the world tells cases by a correlation key.
 *
 *   flow send MESSAGE KEY [PAYLOAD] [--ttl DURATION]
 *       sends message MESSAGE (payment_received) with correlation key KEY
 *       (a payment reference) and PAYLOAD (a JSON object: text, "-" or
 *       "@FILE"), and prints the message as one JSON object: its status
 *       says whether a case took it ("delivered", with "case"), it waits
 *       for one ("buffered", until expires_at) or the case refused it
 *       ("incident", with "incident").  --ttl is how long a buffered
 *       message waits: 90s, 15m, 2h, 3d, 2w (default 7 days, at most 366).
 *   flow messages [--name N] [--key K] [--status S]
 *       the messages sent, oldest first, one JSON object per line (a JSON
 *       array with --json), so a buffered or expired one can be seen.
 *
 * A --ttl that is not a duration is a usage error (exit 2), like any
 * option value the command cannot read; one the library will not take
 * (more than 366 days) is a refusal (exit 1).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

const cli_opt cli_send_opts[] = { { "--ttl", 1 }, { NULL, 0 } };

const cli_opt cli_messages_opts[] = { { "--name", 1 },
                                      { "--key", 1 },
                                      { "--status", 1 },
                                      { NULL, 0 } };

int
cli_cmd_send(cli_ctx *ctx, const cli_args *args)
{
  const char *ttl = cli_args_opt(args, "--ttl");
  char *payload = NULL, *out = NULL;
  int64_t ttl_ms = 0;
  int rc, err;

  if (ttl != NULL && (rc = cli_parse_duration(ttl, &ttl_ms)) != 0)
    return rc == -2 ? cli_usage_errorf("--ttl %s is no time at all; give a "
                                       "message at least 1s to wait, or "
                                       "leave --ttl out for 7 days",
                                       ttl)
                    : cli_usage_errorf("--ttl: cannot read '%s' as a "
                                       "duration; write a whole number and "
                                       "s, m, h, d or w, like 2h or 3d",
                                       ttl);
  if (args->npos > 2) {
    rc = cli_json_arg(&payload, args->pos[2]);
    if (rc != 0)
      return rc;
  }
  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    goto out;
  err = flow_message_send(
    &out, ctx->engine, args->pos[0], args->pos[1], payload, ttl_ms);
  if (err != 0) {
    rc = cli_report(ctx, err);
    goto out;
  }
  cli_print_json(out);
  rc = CLI_EXIT_OK;

out:
  flow_free(out);
  free(payload);
  return rc;
}

int
cli_cmd_messages(cli_ctx *ctx, const cli_args *args)
{
  char *out = NULL;
  int rc, err;

  rc = cli_engine_open(ctx, CLI_DB_EXISTING);
  if (rc != 0)
    return rc;
  err = flow_messages_list(&out,
                           ctx->engine,
                           cli_args_opt(args, "--name"),
                           cli_args_opt(args, "--key"),
                           cli_args_opt(args, "--status"));
  if (err != 0)
    return cli_report(ctx, err);
  rc = cli_print_listing(ctx, out);
  flow_free(out);
  return rc;
}
