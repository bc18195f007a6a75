/*
 * Fuzz target: arbitrary bytes as JSON at every entry point that takes it.
 *
 * The input, cut at its first NUL as the C API cuts it, is the data of
 * flow_case_open, the payload of flow_case_signal (to an event whose
 * handler copies every key into the case and to one that ignores its
 * payload), both asynchronous variants, and a flow_case_list where value.
 * Invariants: every call returns 0 or one of the refusals documented for
 * bad input (FLOW_EINVAL, FLOW_EDATA, FLOW_ELIMIT) with a message, never a
 * storage or internal error; a refused event leaves the case's JSON byte
 * for byte as it was; an accepted one reads back as JSON with seq one
 * higher; the case's history is as long as its seq says.
 *
 * The engine (in memory, one service loaded) is kept between inputs and
 * replaced every 100 inputs so the database stays small; each input works
 * on a case of its own.
 */
#define _POSIX_C_SOURCE 200809L

#include <flow.h>
#include <jansson.h>
#include <string.h>

#include "fuzz.h"

static const char SERVICE[] =
    "return {\n"
    "  name = 'forms', version = 1,\n"
    "  fields = {\n"
    "    uprn = { type = 'string', pattern = '^%d+$', max = 12 },\n"
    "    note = { type = 'string', max = 1000 },\n"
    "    count = { type = 'integer', min = -5, max = 5000 },\n"
    "    ratio = { type = 'number' },\n"
    "    ok = { type = 'boolean' },\n"
    "    bin = { type = 'enum', values = { 'refuse', 'garden' } },\n"
    "    day = { type = 'date' },\n"
    "    at = { type = 'datetime' },\n"
    "    extra = { type = 'object' },\n"
    "    tags = { type = 'list' },\n"
    "  },\n"
    "  initial = 'open',\n"
    "  states = {\n"
    "    open = { on = {\n"
    "      set = function(case, ev)\n"
    "        for k, v in pairs(ev.payload) do case.data[k] = v end\n"
    "      end,\n"
    "      ignore = function(case, ev) end,\n"
    "    } },\n"
    "  },\n"
    "}\n";

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
  o.script_instruction_limit = 200000;
  FUZZ_CHECK(flow_engine_open(&E, ":memory:", &o, err, sizeof err) == 0,
             "open: %s", err);
  FUZZ_CHECK(flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE),
                                      "forms.lua") == 0,
             "load: %s", flow_errmsg(E));
  flow_engine_set_time(E, 1793610000000LL);
}

static int
refusal(int rc)
{
  return rc == FLOW_EINVAL || rc == FLOW_EDATA || rc == FLOW_ELIMIT;
}

static void
check_rc(int rc, const char *what, const char *msg)
{
  FUZZ_CHECK(rc == 0 || refusal(rc), "%s returned %s: %s", what,
             flow_err_name(rc), msg);
  FUZZ_CHECK(rc == 0 || (msg && msg[0]), "%s returned %s with no message",
             what, flow_err_name(rc));
}

static json_int_t
seq_of(const char *case_json)
{
  json_t *j = json_loads(case_json, 0, NULL);
  FUZZ_CHECK(j != NULL, "a case that is not JSON: %.200s", case_json);
  json_int_t seq = json_integer_value(json_object_get(j, "seq"));
  json_decref(j);
  return seq;
}

/* Signals id and checks the outcome against the case before. */
static void
signal_checked(const char *id, const char *event, const char *text)
{
  char *before = NULL, *after = NULL, *out = NULL, *hist = NULL;
  FUZZ_CHECK(flow_case_get(&before, E, id) == 0, "get: %s", flow_errmsg(E));
  int rc = flow_case_signal(&out, E, id, event, text, NULL);
  check_rc(rc, event, flow_errmsg(E));
  FUZZ_CHECK(flow_case_get(&after, E, id) == 0, "get: %s", flow_errmsg(E));
  if (rc != 0) {
    FUZZ_CHECK(strcmp(before, after) == 0,
               "a refused %s changed the case:\n%s\n%s", event, before,
               after);
  } else {
    FUZZ_CHECK(strcmp(out, after) == 0,
               "%s returned one case and stored another:\n%s\n%s", event, out,
               after);
    FUZZ_CHECK(seq_of(after) == seq_of(before) + 1, "%s: seq did not step",
               event);
  }
  FUZZ_CHECK(flow_case_history(&hist, E, id) == 0, "history: %s",
             flow_errmsg(E));
  json_t *h = json_loads(hist, 0, NULL);
  FUZZ_CHECK(h && (json_int_t)json_array_size(h) == seq_of(after),
             "history and seq disagree");
  json_decref(h);
  flow_free(before);
  flow_free(after);
  flow_free(out);
  flow_free(hist);
}

typedef struct outcome {
  int calls, status;
  char msg[512];
} outcome;

static void
on_done(flow_engine *e, int status, const char *case_json, void *payload)
{
  outcome *o = payload;
  o->calls++;
  o->status = status;
  snprintf(o->msg, sizeof o->msg, "%s", flow_errmsg(e));
  if (status == 0)
    seq_of(case_json);
}

static void
async_checked(int rc, outcome *o, const char *what)
{
  if (rc != 0) {
    check_rc(rc, what, flow_errmsg(E));
    return;
  }
  for (int i = 0; i < 4 && o->calls == 0; i++)
    FUZZ_CHECK(flow_engine_run(E, FLOW_RUN_NOWAIT) >= 0, "run: %s",
               flow_errmsg(E));
  FUZZ_CHECK(o->calls == 1, "%s: %d callbacks", what, o->calls);
  check_rc(o->status, what, o->msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size > 1 << 20)
    return 0;
  engine_up();
  RUNS++;
  char *text = fuzz_text(data, size);

  /* As the data of a new case. */
  char *out = NULL;
  int rc = flow_case_open(&out, E, "forms", text, NULL);
  check_rc(rc, "open", flow_errmsg(E));
  if (rc == 0)
    FUZZ_CHECK(seq_of(out) == 1, "a new case with seq != 1");
  flow_free(out);
  out = NULL;

  /* As payloads, on a case of its own. */
  FUZZ_CHECK(flow_case_open(&out, E, "forms", NULL, NULL) == 0, "open {}: %s",
             flow_errmsg(E));
  json_t *c = json_loads(out, 0, NULL);
  char id[32];
  snprintf(id, sizeof id, "%s", json_string_value(json_object_get(c, "id")));
  json_decref(c);
  flow_free(out);
  out = NULL;
  signal_checked(id, "ignore", text);
  signal_checked(id, "set", text);

  /* Asynchronously. */
  outcome o1 = { 0, 0, "" }, o2 = { 0, 0, "" };
  async_checked(flow_case_open_async(E, "forms", text, NULL, on_done, &o1),
                &o1, "open_async");
  async_checked(
      flow_case_signal_async(E, id, "set", text, NULL, on_done, &o2), &o2,
      "signal_async");

  /* As a where value. */
  flow_where w = { "note", text };
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.where = &w;
  q.nwhere = 1;
  q.limit = 5;
  rc = flow_case_list(&out, E, &q);
  check_rc(rc, "list", flow_errmsg(E));
  if (rc == 0) {
    json_t *l = json_loads(out, 0, NULL);
    FUZZ_CHECK(json_is_array(l), "list did not return an array");
    json_decref(l);
  }
  flow_free(out);
  free(text);
  return 0;
}
