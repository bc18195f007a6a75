/*
 * The smallest useful host: how a vendor's system embeds libflow.
 *
 * It opens an engine on a database file, loads the missed-bin service,
 * opens a case from a web form's JSON, applies the crew's events as they
 * arrive, and shows what a refusal looks like to the host.  Usage:
 *
 *   example_host_minimal DB SCRIPT
 */
#include <flow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library never prints: the host decides where log lines go. */
static void
on_log(flow_engine *engine, int level, const char *msg, void *payload)
{
  (void)engine;
  (void)payload;
  fprintf(stderr, "[log %d] %s\n", level, msg);
}

/* Pulls "id":"N" out of a case object; a real host would use its JSON
   library. */
static int
case_id(const char *json, char *id, size_t len)
{
  const char *p = strstr(json, "\"id\":\"");
  if (p == NULL)
    return -1;
  p += 6;
  size_t n = strcspn(p, "\"");
  if (n >= len)
    return -1;
  memcpy(id, p, n);
  id[n] = 0;
  return 0;
}

int
main(int argc, char **argv)
{
  if (argc != 3) {
    fprintf(stderr, "usage: %s DB SCRIPT\n", argv[0]);
    return 2;
  }
  flow_engine_options opts = FLOW_ENGINE_OPTIONS_INIT;
  opts.log = on_log;
  opts.synchronous = FLOW_SYNC_FULL; /* this host wants power-loss safety */

  flow_engine *e;
  char err[512];
  if (flow_engine_open(&e, argv[1], &opts, err, sizeof err) != 0) {
    fprintf(stderr, "cannot open engine: %s\n", err);
    return 3;
  }
  int status = 1;
  char *json = NULL;
  char id[32];
  const char *crew_roles[] = { "crew" };
  flow_actor crew = { "crew-7", crew_roles, 1 };
  flow_actor resident = { "resident-42", NULL, 0 };

  if (flow_service_load_file(&json, e, argv[2]) != 0)
    goto fail;
  printf("service: %s\n", json);
  flow_free(json);

  if (flow_case_open(&json, e, "missed_bin",
                     "{\"uprn\":\"100023336956\",\"address\":\"12 High "
                     "Street\",\"bin\":\"refuse\",\"reported_by\":"
                     "\"citizen\"}",
                     &resident) != 0)
    goto fail;
  printf("opened: %s\n", json);
  int bad = case_id(json, id, sizeof id);
  flow_free(json);
  if (bad)
    goto fail;

  if (flow_case_signal(&json, e, id, "assign", "{\"crew\":\"north\"}",
                       &crew) != 0)
    goto fail;
  printf("assigned: %s\n", json);
  flow_free(json);

  /* A refusal: the host shows the message and the case is unchanged. */
  int rc = flow_case_signal(&json, e, id, "open_sesame", NULL, &crew);
  printf("refused as expected: %s (%s)\n", flow_errmsg(e), flow_err_name(rc));

  if (flow_case_history(&json, e, id) != 0)
    goto fail;
  printf("history: %s\n", json);
  flow_free(json);
  status = 0;
fail:
  if (status)
    fprintf(stderr, "error: %s\n", flow_errmsg(e));
  flow_engine_close(e);
  return status;
}
