/*
 * Black-box tests of the public API: only <flow.h>, as a host sees it.
 *
 * Every refusal path checks two things: the exact error code, and that the
 * case and its history are byte-for-byte what they were before the refused
 * call.  A counting allocator checks that nothing leaks, and the
 * out-of-memory test fails every allocation in turn over a whole
 * open-load-open-signal-close sequence.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a counting, failing allocator ----------------------------------- */

typedef struct counter {
  long live;
  long calls;
  long fail_at;
} counter;

static void *
count_alloc(void *payload, void *ptr, size_t osize, size_t nsize)
{
  counter *c = payload;
  (void)osize;
  if (nsize == 0) {
    if (ptr)
      c->live--;
    free(ptr);
    return NULL;
  }
  if (ptr == NULL || nsize > osize) {
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
      return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p && ptr == NULL)
    c->live++;
  return p;
}

/* ---- fixtures ---------------------------------------------------------- */

static const char *const SERVICE =
    "return {\n"
    "  name = 'bins', version = 1, title = 'Missed bins',\n"
    "  fields = {\n"
    "    uprn = { type = 'string', required = true, pattern = '^%d+$', max = "
    "12, index = true },\n"
    "    bin = { type = 'enum', values = { 'refuse', 'garden' }, required = "
    "true },\n"
    "    crew = { type = 'string' },\n"
    "    count = { type = 'integer', min = 0, max = 10 },\n"
    "    ratio = { type = 'number' },\n"
    "    extra = { type = 'object' },\n"
    "    tags = { type = 'list' },\n"
    "    when = { type = 'date' },\n"
    "  },\n"
    "  initial = 'reported',\n"
    "  states = {\n"
    "    reported = { on = {\n"
    "      assign = function(case, ev)\n"
    "        case.data.crew = ev.payload.crew\n"
    "        return 'assigned'\n"
    "      end,\n"
    "      boom = function(case, ev) error('kaboom') end,\n"
    "      spin = function(case, ev) while true do end end,\n"
    "      corrupt = function(case, ev) case.data.bin = 'glass' end,\n"
    "      astray = function(case, ev) return 'nowhere' end,\n"
    "      refuse = function(case, ev) flow.fail('no crew free today') end,\n"
    "      guarded = { to = 'assigned', guard = function(case, ev) return "
    "ev.payload.ok end },\n"
    "      touch = function(case, ev) case.data.count = (case.data.count or "
    "0) + 1 end,\n"
    "      echo = function(case, ev) case.data.extra = ev.payload.extra; "
    "case.data.tags = ev.payload.tags; case.data.ratio = ev.payload.ratio "
    "end,\n"
    "    } },\n"
    "    assigned = { on = {\n"
    "      collect = { to = 'closed', roles = { 'crew', 'supervisor' } },\n"
    "    } },\n"
    "    closed = { final = true },\n"
    "  },\n"
    "}\n";

static const char *const DATA =
    "{\"uprn\":\"100023336956\",\"bin\":\"refuse\"}";

static flow_engine *E;

static void
setup(void)
{
  char err[256];
  ck_assert_int_eq(flow_engine_open(&E, ":memory:", NULL, err, sizeof err),
                   0);
  ck_assert_int_eq(
      flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE), "bins.lua"),
      0);
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
}

static char *
open_case(void)
{
  char *json = NULL;
  ck_assert_msg(flow_case_open(&json, E, "bins", DATA, NULL) == 0, "%s",
                flow_errmsg(E));
  return json;
}

/* The case and its history as one string, for before/after comparison. */
static char *
snapshot(const char *id)
{
  char *c = NULL, *h = NULL;
  ck_assert_int_eq(flow_case_get(&c, E, id), 0);
  ck_assert_int_eq(flow_case_history(&h, E, id), 0);
  size_t n = strlen(c) + strlen(h) + 2;
  char *s = malloc(n);
  snprintf(s, n, "%s\n%s", c, h);
  flow_free(c);
  flow_free(h);
  return s;
}

static const char *crew_roles[] = { "crew" };
static const flow_actor CREW = { "sam", crew_roles, 1 };
static const char *res_roles[] = { "resident" };
static const flow_actor RESIDENT = { "pat", res_roles, 1 };

/* Signals and expects `code`, with nothing changed. */
static void
refused(const char *event, const char *payload, const flow_actor *actor,
        int code, const char *needle)
{
  char *before = snapshot("1");
  char *out = (char *)0x1;
  int rc = flow_case_signal(&out, E, "1", event, payload, actor);
  ck_assert_msg(rc == code, "%s: expected %s, got %s: %s", event,
                flow_err_name(code), flow_err_name(rc), flow_errmsg(E));
  ck_assert_ptr_null(out);
  ck_assert_int_eq(flow_errcode(E), code);
  if (needle)
    ck_assert_msg(strstr(flow_errmsg(E), needle) != NULL,
                  "message '%s' lacks '%s'", flow_errmsg(E), needle);
  char *after = snapshot("1");
  ck_assert_str_eq(before, after);
  free(before);
  free(after);
}

/* ---- tests ------------------------------------------------------------- */

START_TEST(test_api_version_and_errors)
{
  ck_assert_str_eq(flow_version(), FLOW_VERSION_STRING);
  ck_assert_str_eq(flow_err_name(FLOW_ENOMEM), "FLOW_ENOMEM");
  ck_assert_str_eq(flow_strerror(FLOW_ENOMEM), "out of memory");
  ck_assert_str_eq(flow_err_name(12345), "FLOW_EUNKNOWN");
  ck_assert_str_eq(flow_strerror(0), "success");
  flow_free(NULL);
  flow_engine_close(NULL);
}
END_TEST

START_TEST(test_api_open_refuses_bad_options)
{
  flow_engine *e = (flow_engine *)0x1;
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  char err[256];
  o.version = 99;
  ck_assert_int_eq(flow_engine_open(&e, ":memory:", &o, err, sizeof err),
                   FLOW_EINVAL);
  ck_assert_ptr_null(e);
  ck_assert(strstr(err, "FLOW_ENGINE_OPTIONS_INIT") != NULL);
  ck_assert_int_eq(
      flow_engine_open(&e, "/nonexistent/dir/x.db", NULL, err, sizeof err),
      FLOW_EIO);
  ck_assert(strstr(err, "/nonexistent/dir/x.db") != NULL);
}
END_TEST

START_TEST(test_api_open_refuses_non_database)
{
  char path[] = "/tmp/flow_api_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, "this is not sqlite, it is a text file......."
                             "................................................",
                         92),
                   92);
  close(fd);
  flow_engine *e;
  char err[256];
  ck_assert_int_eq(flow_engine_open(&e, path, NULL, err, sizeof err),
                   FLOW_EIO);
  ck_assert_msg(strstr(err, "not a database") != NULL, "%s", err);
  unlink(path);
}
END_TEST

START_TEST(test_api_case_open_shape)
{
  char *json = open_case();
  ck_assert(strstr(json, "\"id\":\"1\"") != NULL);
  ck_assert(strstr(json, "\"service\":\"bins\"") != NULL);
  ck_assert(strstr(json, "\"version\":1") != NULL);
  ck_assert(strstr(json, "\"state\":\"reported\"") != NULL);
  ck_assert(strstr(json, "\"status\":\"open\"") != NULL);
  ck_assert(strstr(json, "\"seq\":1") != NULL);
  ck_assert(strstr(json, "\"due_at\":null") != NULL);
  ck_assert(strstr(json, "\"opened_at\":\"") != NULL);
  ck_assert(strstr(json, "\"updated_at\":\"") != NULL);
  ck_assert(strstr(json, "\"data\":{\"bin\":\"refuse\",\"uprn\":"
                         "\"100023336956\"}") != NULL);
  flow_free(json);
}
END_TEST

START_TEST(test_api_case_open_refusals_store_nothing)
{
  char *out = NULL, *list = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "bins", "{\"uprn\": ", NULL),
                   FLOW_EINVAL);
  ck_assert_msg(strstr(flow_errmsg(E), "line 1") != NULL, "%s",
                flow_errmsg(E));
  ck_assert_int_eq(flow_case_open(&out, E, "bins", "[1,2]", NULL),
                   FLOW_EINVAL);
  ck_assert_int_eq(
      flow_case_open(&out, E, "bins", "{\"a\":1,\"a\":2}", NULL),
      FLOW_EINVAL);
  ck_assert_int_eq(flow_case_open(&out, E, "nope", DATA, NULL),
                   FLOW_ENOTFOUND);
  /* Every failing field is named at once. */
  ck_assert_int_eq(flow_case_open(&out, E, "bins",
                                  "{\"uprn\":\"12a\",\"bin\":\"glass\","
                                  "\"count\":11,\"crw\":\"x\"}",
                                  NULL),
                   FLOW_EDATA);
  const char *m = flow_errmsg(E);
  ck_assert_msg(strstr(m, "uprn") && strstr(m, "bin") && strstr(m, "count") &&
                    strstr(m, "crw"),
                "%s", m);
  ck_assert_int_eq(flow_case_open(&out, E, "bins", "{}", NULL), FLOW_EDATA);
  ck_assert(strstr(flow_errmsg(E), "uprn: is required") != NULL);
  ck_assert_ptr_null(out);
  ck_assert_int_eq(flow_case_list(&list, E, NULL), 0);
  ck_assert_str_eq(list, "[]");
  flow_free(list);
}
END_TEST

START_TEST(test_api_signal_moves_and_records)
{
  flow_free(open_case());
  char *out = NULL;
  ck_assert_int_eq(
      flow_case_signal(&out, E, "1", "assign", "{\"crew\":\"north\"}", &CREW),
      0);
  ck_assert(strstr(out, "\"state\":\"assigned\"") != NULL);
  ck_assert(strstr(out, "\"crew\":\"north\"") != NULL);
  ck_assert(strstr(out, "\"seq\":2") != NULL);
  flow_free(out);
  ck_assert_int_eq(flow_case_signal(&out, E, "1", "collect", NULL, &CREW), 0);
  ck_assert(strstr(out, "\"status\":\"closed\"") != NULL);
  flow_free(out);
  ck_assert_int_eq(flow_case_history(&out, E, "1"), 0);
  ck_assert_msg(strstr(out, "\"event\":\"open\",\"from\":null") != NULL, "%s",
                out);
  ck_assert(strstr(out, "\"event\":\"assign\",\"from\":\"reported\"") != NULL);
  ck_assert(strstr(out, "\"actor\":{\"id\":\"sam\",\"roles\":[\"crew\"]}") !=
            NULL);
  ck_assert(strstr(out, "\"seq\":3") != NULL);
  flow_free(out);
}
END_TEST

START_TEST(test_api_signal_refusals_change_nothing)
{
  flow_free(open_case());
  refused("collect", NULL, &CREW, FLOW_EEVENT, "accepts: ");
  refused("boom", NULL, &CREW, FLOW_ESCRIPT, "bins.lua:");
  refused("spin", NULL, &CREW, FLOW_ELIMIT, NULL);
  refused("corrupt", NULL, &CREW, FLOW_EDATA, "bin: must be one of");
  refused("astray", NULL, &CREW, FLOW_ESTATE, "nowhere");
  refused("refuse", NULL, &CREW, FLOW_EREFUSED, "no crew free today");
  refused("guarded", "{\"ok\":false}", &CREW, FLOW_EREFUSED, "guard");
  refused("assign", "{\"crew\":", &CREW, FLOW_EINVAL, "column");
  refused("assign", "{\"crew\":42}", &CREW, FLOW_EDATA, "crew");
  /* The engine serves the next event normally after all that. */
  char *out = NULL;
  ck_assert_int_eq(
      flow_case_signal(&out, E, "1", "guarded", "{\"ok\":true}", &CREW), 0);
  flow_free(out);
  refused("collect", NULL, &RESIDENT, FLOW_EPERM, "crew or supervisor");
  refused("collect", NULL, NULL, FLOW_EPERM, "anonymous");
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "collect", NULL, &CREW), 0);
  refused("collect", NULL, &CREW, FLOW_ECLOSED, "closed");
}
END_TEST

START_TEST(test_api_bad_ids)
{
  char *out = NULL;
  ck_assert_int_eq(flow_case_get(&out, E, "abc"), FLOW_EINVAL);
  ck_assert_int_eq(flow_case_get(&out, E, "0"), FLOW_EINVAL);
  ck_assert_int_eq(flow_case_get(&out, E, "-1"), FLOW_EINVAL);
  ck_assert_int_eq(flow_case_get(&out, E, "99999999999999999999"),
                   FLOW_EINVAL);
  ck_assert_int_eq(flow_case_get(&out, E, "7"), FLOW_ENOTFOUND);
  ck_assert_int_eq(flow_case_history(&out, E, "7"), FLOW_ENOTFOUND);
  ck_assert_int_eq(flow_case_signal(&out, E, "7", "assign", NULL, NULL),
                   FLOW_ENOTFOUND);
  ck_assert_ptr_null(out);
}
END_TEST

START_TEST(test_api_json_fidelity)
{
  flow_free(open_case());
  char *out = NULL;
  ck_assert_msg(flow_case_signal(&out, E, "1", "echo",
                                 "{\"extra\":{\"a\":1,\"b\":2.5,\"c\":{},"
                                 "\"d\":[],\"e\":[1,[2,{}]]},\"tags\":[],"
                                 "\"ratio\":2.0}",
                                 NULL) == 0,
                "%s", flow_errmsg(E));
  ck_assert_msg(strstr(out, "\"extra\":{\"a\":1,\"b\":2.5,\"c\":{},\"d\":[],"
                            "\"e\":[1,[2,{}]]}") != NULL,
                "%s", out);
  ck_assert_msg(strstr(out, "\"tags\":[]") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "\"ratio\":2.0") != NULL, "%s", out);
  flow_free(out);
  /* Decimals print in their shortest exact form. */
  ck_assert_int_eq(flow_case_signal(&out, E, "1", "echo",
                                    "{\"ratio\":0.1,\"extra\":{\"big\":"
                                    "1e300,\"s\":\"a\\\"b\\n\\u0001\"}}",
                                    NULL),
                   0);
  ck_assert_msg(strstr(out, "\"ratio\":0.1,") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "\"big\":1e+300") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "\"s\":\"a\\\"b\\n\\u0001\"") != NULL, "%s", out);
  flow_free(out);
  /* Integers stay integers through Lua arithmetic. */
  ck_assert_int_eq(flow_case_signal(&out, E, "1", "touch", NULL, NULL), 0);
  ck_assert_msg(strstr(out, "\"count\":1,") != NULL, "%s", out);
  flow_free(out);
}
END_TEST

START_TEST(test_api_list_filters)
{
  for (int i = 0; i < 3; i++)
    flow_free(open_case());
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "bins",
                                  "{\"uprn\":\"42\",\"bin\":\"garden\"}",
                                  NULL),
                   0);
  flow_free(out);
  ck_assert_int_eq(flow_case_signal(NULL, E, "2", "assign",
                                    "{\"crew\":\"east\"}", NULL),
                   0);
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  flow_where w[] = { { "bin", "\"garden\"" } };
  q.where = w;
  q.nwhere = 1;
  ck_assert_int_eq(flow_case_list(&out, E, &q), 0);
  ck_assert(strstr(out, "\"id\":\"4\"") && !strstr(out, "\"id\":\"1\""));
  flow_free(out);
  flow_where w2[] = { { "uprn", "42" } }; /* a number finds the text "42" */
  q.where = w2;
  ck_assert_int_eq(flow_case_list(&out, E, &q), 0);
  ck_assert_msg(strstr(out, "\"id\":\"4\"") != NULL, "%s", out);
  flow_free(out);
  flow_case_query q2 = FLOW_CASE_QUERY_INIT;
  q2.state = "assigned";
  q2.service = "bins";
  ck_assert_int_eq(flow_case_list(&out, E, &q2), 0);
  ck_assert(strstr(out, "\"id\":\"2\"") && !strstr(out, "\"id\":\"3\""));
  flow_free(out);
  q2.state = NULL;
  q2.limit = 2;
  q2.offset = 1;
  ck_assert_int_eq(flow_case_list(&out, E, &q2), 0);
  ck_assert(strstr(out, "\"id\":\"2\"") && strstr(out, "\"id\":\"3\"") &&
            !strstr(out, "\"id\":\"1\"") && !strstr(out, "\"id\":\"4\""));
  flow_free(out);
  flow_where unset[] = { { "crew", "null" } };
  q.where = unset;
  ck_assert_int_eq(flow_case_list(&out, E, &q), 0);
  ck_assert(!strstr(out, "\"id\":\"2\"") && strstr(out, "\"id\":\"1\""));
  flow_free(out);
  flow_where bad[] = { { "x'); DROP TABLE cases; --", "1" } };
  q.where = bad;
  ck_assert_int_eq(flow_case_list(&out, E, &q), FLOW_EINVAL);
  q2.status = "maybe";
  ck_assert_int_eq(flow_case_list(&out, E, &q2), FLOW_EINVAL);
}
END_TEST

START_TEST(test_api_service_versions)
{
  char *out = NULL;
  /* The same source again is fine and not stored twice. */
  ck_assert_int_eq(
      flow_service_load_string(&out, E, SERVICE, strlen(SERVICE), "bins.lua"),
      0);
  ck_assert(strstr(out, "\"stored\":false") != NULL);
  ck_assert_msg(strstr(out, "\"sha256\":\"") != NULL, "%s", out);
  flow_free(out);
  /* Same name and version, different source: refused. */
  char *v1b = malloc(strlen(SERVICE) + 16);
  sprintf(v1b, "%s-- changed\n", SERVICE);
  ck_assert_int_eq(
      flow_service_load_string(&out, E, v1b, strlen(v1b), "bins.lua"),
      FLOW_EEXIST);
  ck_assert(strstr(flow_errmsg(E), "new version number") != NULL);
  /* A case keeps the version it was opened with. */
  flow_free(open_case());
  char *v2 = malloc(strlen(SERVICE) + 16);
  strcpy(v2, SERVICE);
  char *p = strstr(v2, "version = 1");
  p[10] = '2';
  p = strstr(v2, "collect = { to = 'closed'");
  memcpy(p, "finish ", 7);
  ck_assert_msg(flow_service_load_string(NULL, E, v2, strlen(v2), "bins.lua")
                    == 0, "%s", flow_errmsg(E));
  flow_free(open_case()); /* case 2 is on version 2 */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "assign", NULL, &CREW), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "2", "assign", NULL, &CREW), 0);
  ck_assert_int_eq(flow_case_signal(&out, E, "1", "collect", NULL, &CREW), 0);
  ck_assert(strstr(out, "\"version\":1") != NULL);
  flow_free(out);
  ck_assert_int_eq(flow_case_signal(&out, E, "2", "collect", NULL, &CREW),
                   FLOW_EEVENT);
  ck_assert_int_eq(flow_case_signal(&out, E, "2", "finish", NULL, &CREW), 0);
  ck_assert(strstr(out, "\"version\":2") != NULL);
  flow_free(out);
  ck_assert_int_eq(flow_service_list(&out, E), 0);
  ck_assert(strstr(out, "\"version\":1") && strstr(out, "\"version\":2"));
  flow_free(out);
  free(v1b);
  free(v2);
}
END_TEST

START_TEST(test_api_script_errors_name_file_and_line)
{
  const char *bad = "return {\n"
                    "  name = 'x', version = 1,\n"
                    "  initial = 'a',\n"
                    "  states = {\n"
                    "    a = { on = { go = 'b' } },\n"
                    "  },\n"
                    "}\n";
  ck_assert_int_eq(flow_service_load_string(NULL, E, bad, strlen(bad),
                                            "x.lua"),
                   FLOW_ESCRIPT);
  ck_assert_msg(strstr(flow_errmsg(E), "x.lua:5:") != NULL, "%s",
                flow_errmsg(E));
  const char *syntax = "return {\n name = 'x',,\n}\n";
  ck_assert_int_eq(flow_service_check(E, syntax, strlen(syntax), "y.lua"),
                   FLOW_ESCRIPT);
  ck_assert_msg(strstr(flow_errmsg(E), "y.lua:2:") != NULL, "%s",
                flow_errmsg(E));
  const char *noinit = "return { name = 'x', version = 1, states = { a = "
                       "{ final = true } } }";
  ck_assert_int_eq(
      flow_service_check(E, noinit, strlen(noinit), "z.lua"), FLOW_ESCRIPT);
  ck_assert_msg(strstr(flow_errmsg(E), "initial") != NULL, "%s",
                flow_errmsg(E));
  const char *badtype = "return { name = 'x', version = 1, initial = 'a',\n"
                        " fields = { n = { type = 'strng' } },\n"
                        " states = { a = { final = true } } }";
  ck_assert_int_eq(
      flow_service_check(E, badtype, strlen(badtype), "t.lua"), FLOW_ESCRIPT);
  ck_assert_msg(strstr(flow_errmsg(E), "t.lua:2:") &&
                    strstr(flow_errmsg(E), "strng"),
                "%s", flow_errmsg(E));
  /* Nothing of it was stored. */
  char *out;
  ck_assert_int_eq(flow_service_list(&out, E), 0);
  ck_assert(strstr(out, "\"name\":\"x\"") == NULL);
  flow_free(out);
}
END_TEST

START_TEST(test_api_schema)
{
  char *out = NULL;
  ck_assert_int_eq(flow_service_schema(&out, E, "bins", 0), 0);
  ck_assert(strstr(out, "\"$schema\":\"https://json-schema.org/draft/2020-12/"
                        "schema\"") != NULL);
  ck_assert(strstr(out, "\"enum\":[\"refuse\",\"garden\"]") != NULL);
  ck_assert(strstr(out, "\"required\":[\"bin\",\"uprn\"]") != NULL);
  ck_assert_msg(strstr(out, "\"pattern\":\"^[0-9]+$\"") != NULL, "%s", out);
  ck_assert(strstr(out, "\"format\":\"date\"") != NULL);
  ck_assert(strstr(out, "\"type\":\"integer\"") != NULL);
  flow_free(out);
  ck_assert_int_eq(flow_service_schema(&out, E, "nope", 0), FLOW_ENOTFOUND);
}
END_TEST

START_TEST(test_api_eval)
{
  char *out = NULL;
  const char *code = "return { n = 1, f = 1.5, s = 'x', l = {1, 2}, e = {} }";
  ck_assert_int_eq(flow_eval(&out, E, code, strlen(code), "e"), 0);
  ck_assert_str_eq(out, "{\"e\":{},\"f\":1.5,\"l\":[1,2],\"n\":1,\"s\":\"x\"}");
  flow_free(out);
  ck_assert_int_eq(flow_eval(&out, E, "return io", 9, "e"), 0);
  ck_assert_str_eq(out, "null");
  flow_free(out);
  ck_assert_int_eq(flow_eval(&out, E, "error('x')", 10, "e"), FLOW_ESCRIPT);
  ck_assert_int_eq(flow_eval(&out, E, "while 1 do end", 14, "e"), FLOW_ELIMIT);
  ck_assert_int_eq(flow_eval(&out, E, "return print", 12, "e"), FLOW_EINVAL);
}
END_TEST

START_TEST(test_api_persists_across_engines)
{
  char path[] = "/tmp/flow_api_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  unlink(path);
  flow_engine *e;
  char err[256];
  ck_assert_int_eq(flow_engine_open(&e, path, NULL, err, sizeof err), 0);
  ck_assert_int_eq(
      flow_service_load_string(NULL, e, SERVICE, strlen(SERVICE), "bins.lua"),
      0);
  ck_assert_int_eq(flow_case_open(NULL, e, "bins", DATA, NULL), 0);
  ck_assert_int_eq(
      flow_case_signal(NULL, e, "1", "assign", "{\"crew\":\"w\"}", NULL), 0);
  flow_engine_close(e);
  ck_assert_int_eq(flow_engine_open(&e, path, NULL, err, sizeof err), 0);
  char *out;
  ck_assert_int_eq(flow_case_get(&out, e, "1"), 0);
  ck_assert(strstr(out, "\"state\":\"assigned\"") != NULL);
  flow_free(out);
  /* The service is compiled again from its stored source. */
  ck_assert_int_eq(flow_case_signal(&out, e, "1", "collect", NULL, &CREW), 0);
  flow_free(out);
  flow_engine_close(e);
  char aux[512];
  unlink(path);
  snprintf(aux, sizeof aux, "%s-wal", path);
  unlink(aux);
  snprintf(aux, sizeof aux, "%s-shm", path);
  unlink(aux);
}
END_TEST

START_TEST(test_api_virtual_clock)
{
  ck_assert_int_eq(flow_time_parse(NULL, "x") != 0, 1);
  int64_t t;
  ck_assert_int_eq(flow_time_parse(&t, "2026-11-27T09:00:00Z"), 0);
  flow_engine_set_time(E, t);
  ck_assert(flow_engine_now(E) == t);
  char *out;
  ck_assert_int_eq(flow_case_open(&out, E, "bins", DATA, NULL), 0);
  ck_assert_msg(strstr(out, "\"opened_at\":\"2026-11-27T09:00:00Z\"") != NULL,
                "%s", out);
  flow_free(out);
  char buf[32];
  ck_assert_int_eq(flow_time_format(buf, sizeof buf, t + 1500), 0);
  ck_assert_str_eq(buf, "2026-11-27T09:00:01.500Z");
}
END_TEST

/* Fails every allocation in turn over a whole session: each failure must
   come back as an error, never a crash, and nothing may leak. */
START_TEST(test_api_allocation_failures)
{
  long n;
  int completed = 0;
  for (n = 1; n < 100000 && !completed; n++) {
    counter c = { 0, 0, n };
    flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
    o.alloc = count_alloc;
    o.alloc_payload = &c;
    flow_engine *e = NULL;
    int rc = flow_engine_open(&e, ":memory:", &o, NULL, 0);
    if (rc == 0) {
      char *out = NULL;
      rc = flow_service_load_string(NULL, e, SERVICE, strlen(SERVICE),
                                    "bins.lua");
      if (rc == 0)
        rc = flow_case_open(&out, e, "bins", DATA, NULL);
      flow_free(out);
      out = NULL;
      if (rc == 0)
        rc = flow_case_signal(&out, e, "1", "assign", "{\"crew\":\"n\"}",
                              &CREW);
      flow_free(out);
      out = NULL;
      if (rc == 0)
        rc = flow_case_history(&out, e, "1");
      flow_free(out);
      if (rc != 0)
        ck_assert_msg(rc == FLOW_ENOMEM || rc == FLOW_ESCRIPT ||
                          rc == FLOW_EIO,
                      "n=%ld: %s: %s", n, flow_err_name(rc), flow_errmsg(e));
      flow_engine_close(e);
    }
    ck_assert_msg(c.live == 0, "n=%ld: %ld blocks leaked", n, c.live);
    completed = rc == 0 && c.calls < n;
  }
  ck_assert_msg(completed, "never completed");
  fprintf(stderr, "allocation failures: every one of %ld allocations "
          "failed in turn, each cleanly\n", n - 2);
}
END_TEST

static Suite *
api_suite(void)
{
  Suite *s = suite_create("api");
  TCase *tc = tcase_create("engine");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_api_version_and_errors);
  tcase_add_test(tc, test_api_open_refuses_bad_options);
  tcase_add_test(tc, test_api_open_refuses_non_database);
  tcase_add_test(tc, test_api_case_open_shape);
  tcase_add_test(tc, test_api_case_open_refusals_store_nothing);
  tcase_add_test(tc, test_api_signal_moves_and_records);
  tcase_add_test(tc, test_api_signal_refusals_change_nothing);
  tcase_add_test(tc, test_api_bad_ids);
  tcase_add_test(tc, test_api_json_fidelity);
  tcase_add_test(tc, test_api_list_filters);
  tcase_add_test(tc, test_api_service_versions);
  tcase_add_test(tc, test_api_script_errors_name_file_and_line);
  tcase_add_test(tc, test_api_schema);
  tcase_add_test(tc, test_api_eval);
  tcase_add_test(tc, test_api_persists_across_engines);
  tcase_add_test(tc, test_api_virtual_clock);
  suite_add_tcase(s, tc);
  TCase *oom = tcase_create("oom");
  tcase_set_timeout(oom, 300);
  tcase_add_test(oom, test_api_allocation_failures);
  suite_add_tcase(s, oom);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(api_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
