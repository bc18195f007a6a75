/*
 * Fuzz target: arbitrary bytes as a service script, through
 * flow_service_check, as `flow check` runs it.
 *
 * Invariants: the call returns 0 or a documented refusal (FLOW_ESCRIPT,
 * FLOW_ELIMIT, FLOW_EINVAL) with a message that names the chunk, never a
 * crash, a hang past the budgets or an internal error; and a script that
 * checks clean also loads (on a fresh engine), leaves flow_service_list
 * working, and opens a case or is refused for a reason a script can
 * cause.  Budgets are small so that a looping script costs milliseconds.
 * The checking engine is kept between inputs and replaced every 100.
 */
#define _POSIX_C_SOURCE 200809L

#include <flow.h>
#include <jansson.h>
#include <string.h>

#include "fuzz.h"

static flow_engine *E;
static long RUNS;

void
fuzz_cleanup(void)
{
  flow_engine_close(E);
  E = NULL;
}

static void
engine_up(void)
{
  if (E && RUNS % 100 != 0)
    return;
  fuzz_cleanup();
  char err[256];
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  o.synchronous = FLOW_SYNC_OFF;
  o.script_instruction_limit = 100000;
  o.script_memory_limit = (size_t)4 << 20;
  o.script_cpu_ms = 200;
  o.script_instruction_max = 100000;
  o.script_memory_max = (size_t)4 << 20;
  o.script_cpu_ms_max = 200;
  FUZZ_CHECK(flow_engine_open(&E, ":memory:", &o, err, sizeof err) == 0,
             "open: %s", err);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size > 256 * 1024)
    return 0;
  engine_up();
  RUNS++;
  int rc = flow_service_check(E, (const char *)data, size, "fuzz.lua");
  const char *msg = flow_errmsg(E);
  FUZZ_CHECK(rc == 0 || rc == FLOW_ESCRIPT || rc == FLOW_ELIMIT ||
                 rc == FLOW_EINVAL,
             "flow_service_check returned %s: %s", flow_err_name(rc), msg);
  if (rc != 0) {
    FUZZ_CHECK(msg[0] != 0, "%s with no message", flow_err_name(rc));
    FUZZ_CHECK(rc != FLOW_ESCRIPT || strstr(msg, "fuzz.lua") != NULL,
               "a script error that does not name the file: %s", msg);
    return 0;
  }
  /* Checked clean: it loads, on an engine of its own so that what earlier
     inputs stored cannot change the outcome, and a case of it opens or is
     refused for a reason a script can cause. */
  flow_engine *e = NULL;
  char err[256];
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  o.synchronous = FLOW_SYNC_OFF;
  o.script_instruction_limit = o.script_instruction_max = 100000;
  o.script_memory_limit = o.script_memory_max = (size_t)4 << 20;
  o.script_cpu_ms = o.script_cpu_ms_max = 200;
  FUZZ_CHECK(flow_engine_open(&e, ":memory:", &o, err, sizeof err) == 0,
             "open: %s", err);
  char *out = NULL;
  rc = flow_service_load_string(&out, e, (const char *)data, size,
                                "fuzz.lua");
  FUZZ_CHECK(rc == 0 || rc == FLOW_ELIMIT,
             "checked clean but loading returned %s: %s", flow_err_name(rc),
             flow_errmsg(e));
  if (rc == 0) {
    json_t *info = json_loads(out, 0, NULL);
    const char *name = json_string_value(json_object_get(info, "name"));
    FUZZ_CHECK(name != NULL, "load returned no name: %s", out);
    char *c = NULL;
    rc = flow_case_open(&c, e, name, NULL, NULL);
    FUZZ_CHECK(rc == 0 || rc == FLOW_EDATA || rc == FLOW_ESCRIPT ||
                   rc == FLOW_ELIMIT || rc == FLOW_EREFUSED ||
                   rc == FLOW_ESTATE || rc == FLOW_EINVAL,
               "opening a case of a loaded service returned %s: %s",
               flow_err_name(rc), flow_errmsg(e));
    flow_free(c);
    json_decref(info);
    flow_free(out);
    out = NULL;
    rc = flow_service_list(&out, e);
    FUZZ_CHECK(rc == 0, "a loaded service breaks flow_service_list: %s: %s",
               flow_err_name(rc), flow_errmsg(e));
  }
  flow_free(out);
  flow_engine_close(e);
  return 0;
}
