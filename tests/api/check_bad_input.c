/*
 * Bad input through the public API: every entry point that takes JSON,
 * case ids, dates, durations and service scripts, fed what a careless or
 * hostile caller might send.
 *
 * The JSON corpus: truncated documents, invalid UTF-8 (overlong forms,
 * surrogates encoded in UTF-8, 0xFF, sequences cut short), lone surrogate
 * escapes, \u0000, numbers too large for a double or an int64, nesting
 * 100,000 deep (objects and arrays), duplicate keys, multi-megabyte
 * strings and top-level values that are not objects.  Each goes through
 * flow_case_open (data), flow_case_signal (payload, to an event whose
 * handler copies it into the case and to one that ignores it), both
 * asynchronous variants and, where it could be a value, a flow_case_list
 * where clause.  Each must be refused with FLOW_EINVAL (FLOW_EDATA for
 * valid JSON whose field values are wrong) and a message, and the cases and
 * histories must read back exactly as before.
 *
 * The API takes JSON as C strings, so text stops at the first NUL byte: a
 * raw NUL ends the document there (what follows is never seen), which the
 * raw-NUL test pins down.
 *
 * (The datetime parser is lenient on purpose where RFC 3339 allows it: a
 * space or a lower-case t for the T, a lower-case z, no seconds, an offset
 * without its colon.  Those are accepted and not in the corpus.)
 *
 * Then malformed dates and datetimes in data fields, malformed case ids
 * through every call that takes one, malformed durations in `after` and
 * `sla`, and malformed service scripts (binary garbage, bytecode, a 5 MB
 * script, a script returning a table 100,000 deep) through
 * flow_service_check and flow_service_load_string: each a clean refusal
 * with a message, nothing stored.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const SERVICE =
    "return {\n"
    "  name = 'forms', version = 1,\n"
    "  fields = {\n"
    "    uprn = { type = 'string', pattern = '^%d+$', max = 12 },\n"
    "    note = { type = 'string' },\n"
    "    count = { type = 'integer' },\n"
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
    "      done = 'closed',\n"
    "    } },\n"
    "    closed = { final = true },\n"
    "  },\n"
    "}\n";

static flow_engine *E;

static void
setup(void)
{
  char err[256];
  ck_assert_int_eq(flow_engine_open(&E, ":memory:", NULL, err, sizeof err),
                   0);
  ck_assert_msg(flow_service_load_string(NULL, E, SERVICE, strlen(SERVICE),
                                         "forms.lua") == 0,
                "%s", flow_errmsg(E));
  ck_assert_msg(flow_case_open(NULL, E, "forms", "{\"uprn\":\"1\"}", NULL) ==
                    0,
                "%s", flow_errmsg(E));
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
}

/* Everything stored, for before/after comparison. */
static char *
snapshot(void)
{
  char *list = NULL, *hist = NULL, *svc = NULL;
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  ck_assert_int_eq(flow_case_list(&list, E, &q), 0);
  ck_assert_int_eq(flow_case_history(&hist, E, "1"), 0);
  ck_assert_int_eq(flow_service_list(&svc, E), 0);
  size_t n = strlen(list) + strlen(hist) + strlen(svc) + 3;
  char *s = malloc(n);
  ck_assert_ptr_nonnull(s);
  snprintf(s, n, "%s\n%s\n%s", list, hist, svc);
  flow_free(list);
  flow_free(hist);
  flow_free(svc);
  return s;
}

/* The "id" of a case JSON, without a JSON parser: ids are digits. */
static void
json_id(const char *case_json, char *buf, size_t len)
{
  const char *p = strstr(case_json, "\"id\":\"");
  ck_assert_ptr_nonnull(p);
  p += 6;
  size_t n = strspn(p, "0123456789");
  ck_assert(n > 0 && n < len);
  memcpy(buf, p, n);
  buf[n] = 0;
}

/* A short, printable label for a corpus entry. */
static const char *
label(const char *json, char *buf, size_t len)
{
  size_t j = 0;
  for (size_t i = 0; json[i] && j + 5 < len && i < 40; i++) {
    unsigned char c = (unsigned char)json[i];
    if (c >= 0x20 && c < 0x7f)
      buf[j++] = (char)c;
    else
      j += (size_t)snprintf(buf + j, len - j, "\\x%02x", c);
  }
  if (strlen(json) > 40 && j + 4 < len) {
    memcpy(buf + j, "...", 3);
    j += 3;
  }
  buf[j] = 0;
  return buf;
}

static void
check_refusal(int rc, int want, const char *what, const char *doc,
              const char *msg)
{
  char lb[200];
  if (want == FLOW_EDATA)
    ck_assert_msg(rc == FLOW_EDATA || rc == FLOW_EINVAL,
                  "%s with %s: got %s (%s), want FLOW_EDATA or FLOW_EINVAL",
                  what, label(doc, lb, sizeof lb), flow_err_name(rc), msg);
  else
    ck_assert_msg(rc == want, "%s with %s: got %s (%s), want %s", what,
                  label(doc, lb, sizeof lb), flow_err_name(rc), msg,
                  flow_err_name(want));
  ck_assert_msg(msg != NULL && strlen(msg) > 10,
                "%s with %s: %s with no useful message ('%s')", what,
                label(doc, lb, sizeof lb), flow_err_name(rc), msg);
}

typedef struct outcome {
  int calls;
  int status;
  char msg[1024];
} outcome;

static void
on_done(flow_engine *e, int status, const char *case_json, void *payload)
{
  outcome *o = payload;
  (void)case_json;
  o->calls++;
  o->status = status;
  snprintf(o->msg, sizeof o->msg, "%s", flow_errmsg(e));
}

/* Runs an asynchronous call to its end: the immediate refusal, or the
   callback's status. */
static int
finish_async(int rc, outcome *o)
{
  if (rc != 0) {
    snprintf(o->msg, sizeof o->msg, "%s", flow_errmsg(E));
    return rc;
  }
  for (int i = 0; i < 10 && o->calls == 0; i++)
    ck_assert_int_ge(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(o->calls, 1);
  return o->status;
}

/*
 * Sends doc everywhere a JSON object goes in: open data, the payload of an
 * event that copies it into the case and of one that ignores it, and both
 * asynchronous calls.  want is FLOW_EINVAL (malformed) or FLOW_EDATA (valid
 * JSON with bad values: the ignoring event may then accept it).
 */
static void
refused_everywhere(const char *doc, int want)
{
  char *before = snapshot();
  int rc;

  rc = flow_case_open(NULL, E, "forms", doc, NULL);
  check_refusal(rc, want, "flow_case_open", doc, flow_errmsg(E));
  rc = flow_case_signal(NULL, E, "1", "set", doc, NULL);
  check_refusal(rc, want, "flow_case_signal", doc, flow_errmsg(E));
  if (want == FLOW_EINVAL) {
    rc = flow_case_signal(NULL, E, "1", "ignore", doc, NULL);
    check_refusal(rc, want, "flow_case_signal (ignoring handler)", doc,
                  flow_errmsg(E));
  }
  outcome o = { 0, 0, "" };
  rc = finish_async(
      flow_case_open_async(E, "forms", doc, NULL, on_done, &o), &o);
  check_refusal(rc, want, "flow_case_open_async", doc, o.msg);
  memset(&o, 0, sizeof o);
  rc = finish_async(
      flow_case_signal_async(E, "1", "set", doc, NULL, on_done, &o), &o);
  check_refusal(rc, want, "flow_case_signal_async", doc, o.msg);

  char *after = snapshot();
  char lb[200];
  ck_assert_msg(strcmp(before, after) == 0,
                "%s was refused but something was stored:\nbefore: "
                "%.2000s\nafter: %.2000s",
                label(doc, lb, sizeof lb), before, after);
  free(before);
  free(after);
}

/* doc as the value of a where clause: must be refused. */
static void
refused_as_where(const char *value)
{
  flow_where w = { "note", value };
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  q.where = &w;
  q.nwhere = 1;
  char *out = NULL;
  int rc = flow_case_list(&out, E, &q);
  char lb[200];
  ck_assert_msg(rc == FLOW_EINVAL,
                "flow_case_list where note = %s: got %s (%s), want "
                "FLOW_EINVAL",
                label(value, lb, sizeof lb), flow_err_name(rc),
                rc ? flow_errmsg(E) : out);
  ck_assert_msg(strlen(flow_errmsg(E)) > 10, "no message for where %s",
                label(value, lb, sizeof lb));
  flow_free(out);
}

/* A string of n copies of a then the text of mid then n copies of b. */
static char *
nest(const char *a, const char *mid, const char *b, size_t n)
{
  size_t la = strlen(a), lm = strlen(mid), lb = strlen(b);
  char *s = malloc(n * (la + lb) + lm + 1);
  ck_assert_ptr_nonnull(s);
  char *p = s;
  for (size_t i = 0; i < n; i++, p += la)
    memcpy(p, a, la);
  memcpy(p, mid, lm);
  p += lm;
  for (size_t i = 0; i < n; i++, p += lb)
    memcpy(p, b, lb);
  *p = 0;
  return s;
}

/* ---- malformed JSON ------------------------------------------------------ */

static const char *const MALFORMED[] = {
  /* truncated */
  "",
  "   ",
  "{",
  "{\"note\"",
  "{\"note\":",
  "{\"note\":\"abc",
  "{\"note\":\"abc\"",
  "{\"note\":\"abc\",",
  "{\"tags\":[1,2",
  "{\"note\":tru}",
  "{\"note\":nul}",
  "{\"count\":-}",
  "{\"ratio\":1.}",
  "{\"ratio\":.5}",
  "{\"count\":01}",
  "{\"note\":\"\\u12\"}",
  "{\"note\":\"\\x41\"}",
  "{\"note\":'single'}",
  "{note:\"unquoted\"}",
  "{\"note\":\"a\",}",
  "{\"note\":\"a\"}}",
  "{\"note\":\"a\"} x",
  "{\"note\":\"a\"}{}",
  "{\"note\":\"tab\tinside\"}",
  "{\"note\":\"newline\ninside\"}",
  /* invalid UTF-8 */
  "{\"note\":\"\xC0\xAF\"}",             /* overlong '/' */
  "{\"note\":\"\xE0\x80\xAF\"}",         /* overlong, 3 bytes */
  "{\"note\":\"\xF0\x80\x80\xAF\"}",     /* overlong, 4 bytes */
  "{\"note\":\"\xED\xA0\x80\"}",         /* U+D800 encoded in UTF-8 */
  "{\"note\":\"\xED\xBF\xBF\"}",         /* U+DFFF encoded in UTF-8 */
  "{\"note\":\"\xFF\"}",
  "{\"note\":\"\xFE\xFF\"}",
  "{\"note\":\"\xE2\x82\"}",             /* cut short */
  "{\"note\":\"\x80\"}",                 /* lone continuation byte */
  "{\"note\":\"\xF4\x90\x80\x80\"}",     /* above U+10FFFF */
  "{\"\xFF\":1}",                         /* in a key */
  "\xEF\xBB\xBF{\"note\":\"bom\"}",      /* a byte-order mark */
  /* lone surrogates, escaped */
  "{\"note\":\"\\ud800\"}",
  "{\"note\":\"\\udc00\"}",
  "{\"note\":\"\\udfff\\ud800\"}",
  "{\"note\":\"\\ud800\\u0041\"}",
  "{\"note\":\"\\ud800x\"}",
  "{\"\\ud800\":1}",
  /* NUL escaped */
  "{\"note\":\"\\u0000\"}",
  "{\"note\":\"a\\u0000b\"}",
  "{\"\\u0000\":1}",
  /* numbers too large */
  "{\"ratio\":1e400}",
  "{\"ratio\":-1e400}",
  "{\"count\":99999999999999999999999}",
  "{\"count\":-99999999999999999999999}",
  "{\"count\":9223372036854775808}",
  "{\"ratio\":NaN}",
  "{\"ratio\":Infinity}",
  "{\"ratio\":-Infinity}",
  "{\"ratio\":0x10}",
  /* duplicate keys */
  "{\"note\":\"a\",\"note\":\"b\"}",
  "{\"note\":\"a\",\"count\":1,\"note\":\"a\"}",
  "{\"extra\":{\"k\":1,\"k\":2}}",
  /* top-level values that are not objects */
  "[]",
  "[{\"note\":\"a\"}]",
  "1",
  "-0.5",
  "\"note\"",
  "null",
  "true",
  "false",
};

START_TEST(test_bad_input_malformed_json_refused_everywhere)
{
  for (size_t i = 0; i < sizeof MALFORMED / sizeof *MALFORMED; i++)
    refused_everywhere(MALFORMED[i], FLOW_EINVAL);
}
END_TEST

START_TEST(test_bad_input_deep_nesting_refused)
{
  const size_t depth = 100000;
  char *objs = nest("{\"extra\":", "1", "}", depth);
  refused_everywhere(objs, FLOW_EINVAL);
  free(objs);
  char *arrs = nest("[", "1", "]", depth);
  char *doc = malloc(strlen(arrs) + 16);
  sprintf(doc, "{\"tags\":%s}", arrs);
  refused_everywhere(doc, FLOW_EINVAL);
  refused_as_where(arrs);
  free(arrs);
  free(doc);
  char *mixed = nest("{\"extra\":[", "1", "]}", depth / 2);
  refused_everywhere(mixed, FLOW_EINVAL);
  free(mixed);
}
END_TEST

/*
 * Nesting that JSON parsers accept but no case needs: whether it is
 * refused (and how) is the engine's choice, but it must not crash, and
 * what is accepted must read back the same.
 */
START_TEST(test_bad_input_deep_but_parseable_nesting)
{
  static const size_t depths[] = { 200, 1000, 2000 };
  for (size_t k = 0; k < sizeof depths / sizeof *depths; k++) {
    char *inner = nest("{\"k\":", "1", "}", depths[k]);
    char *doc = malloc(strlen(inner) + 16);
    sprintf(doc, "{\"extra\":%s}", inner);
    char *out = NULL;
    int rc = flow_case_signal(&out, E, "1", "set", doc, NULL);
    if (rc == 0) {
      char *got = NULL;
      ck_assert_int_eq(flow_case_get(&got, E, "1"), 0);
      ck_assert_msg(strstr(got, inner) != NULL,
                    "depth %zu was accepted but does not read back",
                    depths[k]);
      flow_free(got);
    } else {
      ck_assert_msg(rc == FLOW_EINVAL || rc == FLOW_EDATA ||
                        rc == FLOW_ELIMIT,
                    "depth %zu: %s (%s)", depths[k], flow_err_name(rc),
                    flow_errmsg(E));
      ck_assert(strlen(flow_errmsg(E)) > 10);
    }
    flow_free(out);
    free(inner);
    free(doc);
  }
}
END_TEST

/* The API takes C strings: a raw NUL ends the text there. */
START_TEST(test_bad_input_raw_nul_ends_the_text)
{
  /* Cut inside a string: what is left is truncated JSON. */
  static const char cut[] = "{\"note\":\"a\0b\"}";
  refused_everywhere(cut, FLOW_EINVAL);
  /* After the document: the rest is never seen, the prefix is a valid
     object and is accepted as what it says. */
  static const char after[] = "{\"note\":\"seen\"}\0{\"note\":\"unseen\"}";
  char *out = NULL;
  ck_assert_msg(flow_case_signal(&out, E, "1", "set", after, NULL) == 0,
                "%s", flow_errmsg(E));
  ck_assert_msg(strstr(out, "\"note\":\"seen\"") != NULL, "%s", out);
  flow_free(out);
}
END_TEST

/* An escaped NUL in a sender's JSON: refused with a message a person can
   act on, and a script cannot store one either; the case stays readable. */
START_TEST(test_bad_input_escaped_nul)
{
  refused_everywhere("{\"note\":\"a\\u0000b\"}", FLOW_EINVAL);
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "forms", "{\"note\":\"a\\u0000\"}",
                                  NULL),
                   FLOW_EINVAL);
  ck_assert_msg(strstr(flow_errmsg(E), "text may not hold the NUL "
                                       "character") != NULL,
                "%s", flow_errmsg(E));
  static const char src[] =
      "return { name = 'nul', version = 1, initial = 'a',\n"
      "  fields = { note = { type = 'string' } }, states = {\n"
      "  a = { on = { nul = function(case) case.data.note = 'x\\0y' end,\n"
      "               go = function() return 'a\\0b' end } } } }\n";
  ck_assert_int_eq(flow_service_load_string(NULL, E, src, strlen(src),
                                            "nul.lua"),
                   0);
  ck_assert_int_eq(flow_case_open(&out, E, "nul", NULL, NULL), 0);
  char id[32];
  json_id(out, id, sizeof id);
  flow_free(out);
  ck_assert_int_eq(flow_case_signal(NULL, E, id, "nul", NULL, NULL),
                   FLOW_ESCRIPT);
  ck_assert_msg(strstr(flow_errmsg(E), "data.note: text with a NUL") != NULL,
                "%s", flow_errmsg(E));
  ck_assert_int_eq(flow_case_signal(NULL, E, id, "go", NULL, NULL),
                   FLOW_ESCRIPT);
  ck_assert_msg(strstr(flow_errmsg(E), "nul.lua:4: a handler returned a "
                                       "state name with a NUL") != NULL,
                "%s", flow_errmsg(E));
  /* Still readable, and as it was. */
  ck_assert_int_eq(flow_case_get(&out, E, id), 0);
  ck_assert_msg(strstr(out, "\"seq\":1") != NULL, "%s", out);
  flow_free(out);
}
END_TEST

/* An object of more members than a script could hold as one table: a
   case that took it could never run an event again. */
START_TEST(test_bad_input_object_too_many_members)
{
  size_t cap = 16385 * 16 + 64, n = 0;
  char *doc = malloc(cap);
  n += (size_t)snprintf(doc + n, cap - n, "{\"extra\":{");
  for (int i = 0; i < 16385; i++)
    n += (size_t)snprintf(doc + n, cap - n, "%s\"k%d\":1", i ? "," : "", i);
  snprintf(doc + n, cap - n, "}}");
  refused_everywhere(doc, FLOW_EINVAL);
  ck_assert_int_eq(flow_case_open(NULL, E, "forms", doc, NULL), FLOW_EINVAL);
  ck_assert_msg(strstr(flow_errmsg(E), "an object with more than 16384 "
                                       "members") != NULL,
                "%s", flow_errmsg(E));
  /* 16,384 are fine. */
  char *comma = strrchr(doc, ',');
  memcpy(comma, "}}", 3);
  char *out = NULL;
  ck_assert_msg(flow_case_signal(&out, E, "1", "set", doc, NULL) == 0, "%s",
                flow_errmsg(E));
  flow_free(out);
  ck_assert_msg(flow_case_signal(&out, E, "1", "ignore", NULL, NULL) == 0,
                "%s", flow_errmsg(E));
  flow_free(out);
  free(doc);
}
END_TEST

static double
thread_cpu_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A field's pattern is checked in the sandbox, under a budget: 200 fields
   of patterns that backtrack share one budget, where each had its own. */
START_TEST(test_bad_input_many_slow_patterns)
{
  /* The service lowers its own budget: loading 200 patterns runs under
     the default one (valgrind makes that load slow), the event under
     100 ms. */
  flow_engine *e;
  char err[256];
  ck_assert_int_eq(flow_engine_open(&e, ":memory:", NULL, err, sizeof err),
                   0);
  size_t cap = 64 * 1024, n = 0;
  char *src = malloc(cap), *data = malloc(cap);
  n += (size_t)snprintf(src + n, cap - n,
                        "return { name = 'slow', version = 1, initial = 'a', "
                        "budget = { cpu_ms = 100 }, fields = {\n");
  for (int i = 0; i < 200; i++)
    n += (size_t)snprintf(src + n, cap - n,
                          "  f%d = { type = 'string', pattern = "
                          "'^.-.-.-.-.-.-.-.-x$' },\n",
                          i);
  snprintf(src + n, cap - n, "}, states = { a = { on = {} } } }\n");
  ck_assert_msg(flow_service_load_string(NULL, e, src, strlen(src),
                                         "slow.lua") == 0,
                "%s", flow_errmsg(e));
  n = (size_t)snprintf(data, cap, "{");
  for (int i = 0; i < 200; i++)
    n += (size_t)snprintf(data + n, cap - n, "%s\"f%d\":\"%s\"",
                          i ? "," : "", i,
                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  snprintf(data + n, cap - n, "}");
  double t0 = thread_cpu_ms();
  int rc = flow_case_open(NULL, e, "slow", data, NULL);
  double spent = thread_cpu_ms() - t0;
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_msg(strstr(flow_errmsg(e), "budget exceeded checking the "
                                       "pattern of field") != NULL,
                "%s", flow_errmsg(e));
  /* Shared, not one budget each: 200 own budgets would allow 20 s.  The
     bound leaves room for how late a kill can come on a slow or
     instrumented run (valgrind measured 243 ms here, under load). */
  ck_assert_msg(spent < 10 * 100, "the patterns took %.0f ms of CPU on a "
                "100 ms budget (200 budgets of their own would be 20 s)",
                spent);
  free(src);
  free(data);
  flow_engine_close(e);
}
END_TEST

/* A service may declare at most 1000 fields; data is checked against them
   by name, whatever number of keys a sender sends. */
START_TEST(test_bad_input_field_count)
{
  size_t cap = 1 << 20, n = 0;
  char *src = malloc(cap);
  n += (size_t)snprintf(src + n, cap - n,
                        "return { name = 'wide', version = 1, initial = 'a', "
                        "fields = {\n");
  for (int i = 0; i < 1001; i++)
    n += (size_t)snprintf(src + n, cap - n, "  f%d = { type = 'string' },\n",
                          i);
  snprintf(src + n, cap - n, "}, states = { a = { on = {} } } }\n");
  ck_assert_int_eq(flow_service_load_string(NULL, E, src, strlen(src),
                                            "wide.lua"),
                   FLOW_ESCRIPT);
  ck_assert_msg(strstr(flow_errmsg(E), "fields has 1001 fields; a service "
                                       "may have at most 1000") != NULL,
                "%s", flow_errmsg(E));
  /* 16,000 keys against the forms service: each named in the refusal,
     as far as the message goes. */
  n = (size_t)snprintf(src, cap, "{");
  for (int i = 0; i < 16000; i++)
    n += (size_t)snprintf(src + n, cap - n, "%s\"k%d\":1", i ? "," : "", i);
  snprintf(src + n, cap - n, "}");
  ck_assert_int_eq(flow_case_open(NULL, E, "forms", src, NULL), FLOW_EDATA);
  ck_assert_msg(strstr(flow_errmsg(E), "is not a field of forms") != NULL,
                "%s", flow_errmsg(E));
  free(src);
}
END_TEST

START_TEST(test_bad_input_valid_json_with_bad_values)
{
  static const char *const docs[] = {
    "{\"count\":1.5}",
    "{\"count\":\"1\"}",
    "{\"count\":true}",
    "{\"ratio\":\"0.5\"}",
    "{\"ok\":1}",
    "{\"ok\":\"true\"}",
    "{\"bin\":\"glass\"}",
    "{\"bin\":\"Refuse\"}",
    "{\"uprn\":\"12a\"}",
    "{\"uprn\":\"1234567890123\"}",
    "{\"uprn\":12}",
    "{\"extra\":[]}",
    "{\"extra\":\"{}\"}",
    "{\"tags\":\"[]\"}",
    "{\"unknown\":1}",
    "{\"Note\":\"case matters\"}",
    "{\"\":1}",
  };
  for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
    refused_everywhere(docs[i], FLOW_EDATA);
}
END_TEST

START_TEST(test_bad_input_where_values)
{
  static const char *const values[] = {
    "",
    " ",
    "\"abc",
    "abc",
    "tru",
    "1e400",
    "99999999999999999999999",
    "\"\\ud800\"",
    "\"\xFF\"",
    "\"\xC0\xAF\"",
    "\"\\u0000\"",
    "{}",
    "[]",
    "{\"a\":1,\"a\":2}",
    "[1,2",
    "1 2",
    "\"a\" \"b\"",
    "NaN",
  };
  for (size_t i = 0; i < sizeof values / sizeof *values; i++)
    refused_as_where(values[i]);
  /* Field names are checked too. */
  static const char *const fields[] = { "", "Note", "no te", "note;",
                                        "note')--", "1note", "n\xC3\xA9" };
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    flow_where w = { fields[i], "1" };
    flow_case_query q = FLOW_CASE_QUERY_INIT;
    q.where = &w;
    q.nwhere = 1;
    char *out = NULL;
    int rc = flow_case_list(&out, E, &q);
    ck_assert_msg(rc == FLOW_EINVAL, "where field '%s': %s", fields[i],
                  flow_err_name(rc));
    flow_free(out);
  }
}
END_TEST

/*
 * Multi-megabyte documents: no case needs 8 MiB in one call, and holding
 * it would put 8 MiB in the case row and again in its history row on every
 * event.  They must be refused at the boundary like any other bad input.
 */
START_TEST(test_bad_input_multi_megabyte_strings_refused)
{
  const size_t n = (size_t)8 << 20;
  char *big = malloc(n + 64);
  ck_assert_ptr_nonnull(big);
  strcpy(big, "{\"note\":\"");
  size_t p = strlen(big);
  memset(big + p, 'x', n);
  strcpy(big + p + n, "\"}");
  refused_everywhere(big, FLOW_EDATA);
  /* As a where value. */
  char *val = big + p - 1; /* the opening quote */
  val[n + 1] = '"';
  val[n + 2] = 0;
  refused_as_where(val);
  free(big);
}
END_TEST

/* ---- dates and datetimes ------------------------------------------------- */

START_TEST(test_bad_input_dates_and_datetimes)
{
  static const char *const days[] = {
    "2026-02-30", "2026-02-29", "2026-13-01", "2026-00-10", "2026-01-00",
    "2026-01-32", "2026-1-1",   "20260101",   "2026/01/01", "01-01-2026",
    "",           " 2026-01-01", "2026-01-01 ", "2026-01-01T00:00:00Z",
    "0000-00-00", "9999-99-99", "2026-01-01\n",
    "\357\274\222\357\274\22026-01-01", /* full-width digits */
    "+2026-01-01", "2026-01-01x",
  };
  for (size_t i = 0; i < sizeof days / sizeof *days; i++) {
    char doc[128];
    snprintf(doc, sizeof doc, "{\"day\":\"%s\"}", days[i]);
    if (strchr(days[i], '\n'))
      snprintf(doc, sizeof doc, "{\"day\":\"2026-01-01\\n\"}");
    refused_everywhere(doc, FLOW_EDATA);
  }
  static const char *const times[] = {
    "2026-01-01T25:00:00Z",      "2026-01-01T24:00:00Z",
    "2026-01-01T00:60:00Z",      "2026-01-01T00:00:61Z",
    "2026-01-01T00:00:00",       "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00.Z",     "2026-02-30T00:00:00Z",
    "2026-01-01",                "T00:00:00Z",
    "2026-01-01T00:00:00ZZ",     "99999-01-01T00:00:00Z",
    "2026-01-01T00:00:00+01:00x", "2026-01-01T00:00:00.1234567890Z",
    "",                          "now",
  };
  for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
    char doc[128];
    snprintf(doc, sizeof doc, "{\"at\":\"%s\"}", times[i]);
    refused_everywhere(doc, FLOW_EDATA);
  }
  /* Controls: the same fields take good values. */
  ck_assert_msg(flow_case_signal(NULL, E, "1", "set",
                                 "{\"day\":\"2024-02-29\",\"at\":"
                                 "\"2026-01-01T00:00:00.5+01:00\"}",
                                 NULL) == 0,
                "%s", flow_errmsg(E));
}
END_TEST

/* ---- case ids ------------------------------------------------------------ */

START_TEST(test_bad_input_case_ids)
{
  char tenk[10241];
  memset(tenk, '7', sizeof tenk - 1);
  tenk[sizeof tenk - 1] = 0;
  char tenk_alpha[10241];
  memset(tenk_alpha, 'a', sizeof tenk_alpha - 1);
  tenk_alpha[sizeof tenk_alpha - 1] = 0;
  const char *const ids[] = {
    "",   "0",   "-1",  "1e3", " 1",  "1 ",  "9223372036854775808",
    "abc", "01", "+1",  "1.0", "0x1", "1\n", "\xD9\xA1" /* Arabic 1 */,
    "99999999999999999999999999", tenk, tenk_alpha,
  };
  char *before = snapshot();
  for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
    char lb[200];
    const char *id = ids[i];
    char *out = NULL;
    int rc;
#define EXPECT_EINVAL(call, name)                                              \
  do {                                                                         \
    rc = (call);                                                               \
    ck_assert_msg(rc == FLOW_EINVAL, "%s('%s'): got %s (%s), want "          \
                  "FLOW_EINVAL", name, label(id, lb, sizeof lb),               \
                  flow_err_name(rc), flow_errmsg(E));                          \
    ck_assert_msg(strlen(flow_errmsg(E)) > 10 &&                               \
                      strlen(flow_errmsg(E)) < 400,                            \
                  "%s('%s'): message '%s'", name, label(id, lb, sizeof lb),    \
                  flow_errmsg(E));                                             \
    flow_free(out);                                                            \
    out = NULL;                                                                \
  } while (0)
    EXPECT_EINVAL(flow_case_get(&out, E, id), "flow_case_get");
    EXPECT_EINVAL(flow_case_history(&out, E, id), "flow_case_history");
    EXPECT_EINVAL(flow_case_timers(&out, E, id), "flow_case_timers");
    EXPECT_EINVAL(flow_case_signal(&out, E, id, "set", "{}", NULL),
                  "flow_case_signal");
    outcome o = { 0, 0, "" };
    rc = finish_async(
        flow_case_signal_async(E, id, "set", "{}", NULL, on_done, &o), &o);
    ck_assert_msg(rc == FLOW_EINVAL, "flow_case_signal_async('%s'): %s",
                  label(id, lb, sizeof lb), flow_err_name(rc));
#undef EXPECT_EINVAL
  }
  /* Well formed but absent. */
  static const char *const absent[] = { "2", "9223372036854775807" };
  for (size_t i = 0; i < 2; i++) {
    char *out = NULL;
    ck_assert_int_eq(flow_case_get(&out, E, absent[i]), FLOW_ENOTFOUND);
    ck_assert_int_eq(flow_case_signal(NULL, E, absent[i], "set", "{}", NULL),
                     FLOW_ENOTFOUND);
    ck_assert_int_eq(flow_case_history(&out, E, absent[i]), FLOW_ENOTFOUND);
  }
  char *after = snapshot();
  ck_assert_str_eq(before, after);
  free(before);
  free(after);
}
END_TEST

/* ---- durations in scripts ------------------------------------------------ */

/* The script is refused by check and by load, with a message that names
   where (`where`: "bad.lua", or "bad.lua:" for a line too), and nothing
   is stored. */
static void
script_refused_at(const char *src, size_t len, const char *what,
                  const char *where)
{
  char *before = snapshot();
  int rc = flow_service_check(E, src, len, "bad.lua");
  ck_assert_msg(rc == FLOW_ESCRIPT || rc == FLOW_ELIMIT || rc == FLOW_EINVAL,
                "flow_service_check(%s): got %s (%s)", what, flow_err_name(rc),
                flow_errmsg(E));
  ck_assert_msg(strlen(flow_errmsg(E)) > 10, "flow_service_check(%s): %s "
                "with message '%s'", what, flow_err_name(rc), flow_errmsg(E));
  ck_assert_msg(strstr(flow_errmsg(E), where) != NULL,
                "flow_service_check(%s): the message does not name %s: %s",
                what, where, flow_errmsg(E));
  rc = flow_service_load_string(NULL, E, src, len, "bad.lua");
  ck_assert_msg(rc == FLOW_ESCRIPT || rc == FLOW_ELIMIT || rc == FLOW_EINVAL,
                "flow_service_load_string(%s): got %s (%s)", what,
                flow_err_name(rc), flow_errmsg(E));
  ck_assert_msg(strlen(flow_errmsg(E)) > 10, "flow_service_load_string(%s): "
                "%s with message '%s'", what, flow_err_name(rc),
                flow_errmsg(E));
  ck_assert_msg(strstr(flow_errmsg(E), where) != NULL,
                "flow_service_load_string(%s): the message does not name "
                "%s: %s", what, where, flow_errmsg(E));
  char *after = snapshot();
  ck_assert_msg(strcmp(before, after) == 0, "%s: refused but stored", what);
  free(before);
  free(after);
}

static void
script_refused(const char *src, size_t len, const char *what)
{
  script_refused_at(src, len, what, "bad.lua");
}

/* A script with `dur` as an `after` key, or as sla.within. */
static void
duration_refused(const char *dur, size_t dlen)
{
  static const char head[] =
      "return { name = 'durs', version = 1, initial = 'a',\n"
      "  states = { a = { after = { [\"";
  static const char tail[] =
      "\"] = 'b' } }, b = { final = true } } }\n";
  static const char shead[] =
      "return { name = 'durs', version = 1, initial = 'a',\n"
      "  sla = { within = \"";
  static const char stail[] =
      "\" },\n  states = { a = { on = { go = 'b' } }, b = { final = true } "
      "} }\n";
  char src[4096];
  char what[300];
  char lb[200];
  ck_assert(dlen < 2000);
  size_t n = 0;
  memcpy(src, head, sizeof head - 1);
  n = sizeof head - 1;
  memcpy(src + n, dur, dlen);
  n += dlen;
  memcpy(src + n, tail, sizeof tail - 1);
  n += sizeof tail - 1;
  snprintf(what, sizeof what, "after [\"%s\"]", label(dur, lb, sizeof lb));
  script_refused_at(src, n, what, "bad.lua:");
  memcpy(src, shead, sizeof shead - 1);
  n = sizeof shead - 1;
  memcpy(src + n, dur, dlen);
  n += dlen;
  memcpy(src + n, stail, sizeof stail - 1);
  n += sizeof stail - 1;
  snprintf(what, sizeof what, "sla.within \"%s\"", label(dur, lb, sizeof lb));
  script_refused_at(src, n, what, "bad.lua:");
}

START_TEST(test_bad_input_durations_in_scripts)
{
  static const char *const durs[] = {
    "",         "0s",        "0 working days", "-1d",      "1.5h",
    "1,5h",     "2 working", "2 working weeks", "1 fortnight", "h",
    "90",       "1e3s",      "2 Working Days", "2 WORKING DAYS", "1h30m",
    "1 h 30 m", "36526d",    "5218w",          "876601h",
    "99999999999999999999d",
    "1 year",   "d1",        "one day",        "\357\274\222d",
    "2\302\240days",      "2 working  day s",
  };
  for (size_t i = 0; i < sizeof durs / sizeof *durs; i++)
    duration_refused(durs[i], strlen(durs[i]));
  /* A Lua string may hold a NUL, which a C string cannot: "1d\0junk" must
     not quietly become "1d". */
  static const char nul[] = "1d\\0junk";
  duration_refused(nul, sizeof nul - 1);
  /* Controls: the forms docs/time.md lists load. */
  static const char good[] =
      "return { name = 'durs', version = 1, initial = 'a',\n"
      "  sla = { within = '5 working days', warn = '4 working hours' },\n"
      "  states = { a = { after = { ['90s'] = 'b', ['2 working days'] = "
      "'b', ['3 weeks'] = 'b' } }, b = { final = true } } }\n";
  ck_assert_msg(flow_service_check(E, good, strlen(good), "good.lua") == 0,
                "%s", flow_errmsg(E));
}
END_TEST

/* A duration a handler asks for at run time: refused, case unchanged. */
START_TEST(test_bad_input_durations_at_run_time)
{
  static const char src[] =
      "return { name = 'later', version = 1, initial = 'a',\n"
      "  fields = { d = { type = 'string' } },\n"
      "  states = { a = { on = { wait = function(case, ev)\n"
      "    flow.after(ev.payload.d, 'ping')\n"
      "  end, ping = function() end } } } }\n";
  ck_assert_msg(flow_service_load_string(NULL, E, src, strlen(src),
                                         "later.lua") == 0,
                "%s", flow_errmsg(E));
  char *out = NULL;
  ck_assert_int_eq(flow_case_open(&out, E, "later", NULL, NULL), 0);
  flow_free(out);
  static const char *const durs[] = {
    "\"\"", "\"0s\"", "\"-1d\"", "\"2 wrking days\"", "\"99999999999999w\"",
    "1",    "true",   "{}",
  };
  for (size_t i = 0; i < sizeof durs / sizeof *durs; i++) {
    char *before = NULL, *after = NULL, *tb = NULL, *ta = NULL;
    ck_assert_int_eq(flow_case_history(&before, E, "2"), 0);
    ck_assert_int_eq(flow_case_timers(&tb, E, "2"), 0);
    char payload[128];
    snprintf(payload, sizeof payload, "{\"d\":%s}", durs[i]);
    int rc = flow_case_signal(NULL, E, "2", "wait", payload, NULL);
    ck_assert_msg(rc == FLOW_ESCRIPT || rc == FLOW_EINVAL,
                  "flow.after(%s): got %s (%s)", durs[i], flow_err_name(rc),
                  flow_errmsg(E));
    ck_assert(strlen(flow_errmsg(E)) > 10);
    ck_assert_int_eq(flow_case_history(&after, E, "2"), 0);
    ck_assert_int_eq(flow_case_timers(&ta, E, "2"), 0);
    ck_assert_str_eq(before, after);
    ck_assert_str_eq(tb, ta);
    flow_free(before);
    flow_free(after);
    flow_free(tb);
    flow_free(ta);
  }
}
END_TEST

/* ---- malformed service scripts ------------------------------------------- */

START_TEST(test_bad_input_malformed_scripts)
{
  /* Binary garbage, seeded so a failure can be reproduced. */
  unsigned char garbage[4096];
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t round = 0; round < 8; round++) {
    for (size_t i = 0; i < sizeof garbage; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      garbage[i] = (unsigned char)x;
    }
    script_refused((const char *)garbage, sizeof garbage, "binary garbage");
  }
  /* Precompiled Lua (a bytecode header) is refused, never loaded. */
  static const char bytecode[] = "\x1bLua\x54\x00\x19\x93\r\n\x1a\n"
                                 "\x04\x08\x08\x78\x56\x00\x00\x00";
  script_refused(bytecode, sizeof bytecode - 1, "Lua bytecode");
  static const struct {
    const char *src;
    const char *what;
  } bad[] = {
    { "", "an empty script" },
    { "return", "a script returning nothing" },
    { "return nil", "a script returning nil" },
    { "return 42", "a script returning a number" },
    { "return 'missed_bin'", "a script returning a string" },
    { "return function() end", "a script returning a function" },
    { "return {}", "an empty definition" },
    { "return { name = 'x' }", "a definition without states" },
    { "return {", "a syntax error" },
    { "error('no')", "a script that throws" },
    { "error(setmetatable({}, { __tostring = function() while true do end "
      "end }))", "a throw whose message loops" },
    { "while true do end", "a script that never ends" },
    { "local t = {} while true do t[#t + 1] = ('x'):rep(1024) end",
      "a script that eats memory" },
    { "return setmetatable({}, { __index = function() error('trap') end })",
      "a definition with a trapping metatable" },
    { "return { name = 'r', version = 1, initial = 'a', states = { a = { on "
      "= { go = 'nowhere' } } } }", "a transition to no state" },
    { "return { name = 'r', version = 1.5, initial = 'a', states = { a = {} "
      "} }", "a fractional version" },
    { "return { name = 'R!', version = 1, initial = 'a', states = { a = {} } "
      "}", "a bad name" },
    { "return { name = 'r', version = 1, initial = 'a', states = { a = {} },"
      " fields = { f = { type = 'string', pattern = '[' } } }",
      "a malformed pattern" },
    { "return { name = 'r', version = 1, initial = 'a', states = { a = {} },"
      " fields = { f = { type = 'blob' } } }", "an unknown field type" },
    { "return { name = 'r', version = 1, initial = 'a', states = { a = { on "
      "= { go = 42 } } } }", "a transition that is a number" },
    { "return { name = 'r', version = 1, initial = 'a', states = { a = { "
      "enter = 'x' } } }", "an enter hook that is a string" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    script_refused(bad[i].src, strlen(bad[i].src), bad[i].what);
  /* A source with a NUL in it: the length says where it ends. */
  static const char nul[] = "return { name = 'nul', version = 1,\0 }";
  script_refused(nul, sizeof nul - 1, "a script with a NUL byte");
}
END_TEST

START_TEST(test_bad_input_deep_definition)
{
  static const char src[] =
      "local t = { name = 'deep', version = 1, initial = 'a',\n"
      "  states = { a = { final = true } } }\n"
      "local c = t\n"
      "for i = 1, 100000 do c.title = {} c = c.title end\n"
      "return t\n";
  script_refused(src, strlen(src), "a definition 100,000 tables deep");
  static const char src2[] =
      "local f = {}\n"
      "local c = f\n"
      "for i = 1, 100000 do c[1] = {} c = c[1] end\n"
      "return { name = 'deep', version = 1, initial = 'a',\n"
      "  fields = { f = { type = 'enum', values = f } },\n"
      "  states = { a = { final = true } } }\n";
  script_refused(src2, strlen(src2), "enum values 100,000 tables deep");
  static const char src3[] =
      "local p = {}\n"
      "local c = p\n"
      "for i = 1, 100000 do c.x = {} c = c.x end\n"
      "return { name = 'deep', version = 1, initial = 'a',\n"
      "  states = { a = { after = { ['1h'] = { event = 'e', payload = p } },"
      " on = { e = 'b' } }, b = { final = true } } }\n";
  script_refused(src3, strlen(src3), "a timer payload 100,000 tables deep");
}
END_TEST

/* A script past the 4 MiB limit: both check and load refuse it, the same
   way, so that `flow check` never passes what `flow load` refuses. */
START_TEST(test_bad_input_huge_script)
{
  const size_t n = (size_t)5 << 20;
  static const char head[] =
      "return { name = 'huge', version = 1, initial = 'a',\n"
      "  states = { a = { final = true } } }\n--";
  char *src = malloc(n + 1);
  ck_assert_ptr_nonnull(src);
  memcpy(src, head, sizeof head - 1);
  memset(src + sizeof head - 1, 'x', n - (sizeof head - 1));
  src[n] = 0;
  script_refused(src, n, "a 5 MB script");
  free(src);
}
END_TEST

/* ---- text that is not UTF-8 ---------------------------------------------- */

/* 1 when s is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
static int
utf8_valid(const char *s)
{
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p;
    int n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2
          : (c & 0xF8) == 0xF0 ? 3 : -1;
    if (n < 0 || (n == 1 && c < 0xC2))
      return 0;
    unsigned cp = n == 0 ? c : c & (0x3F >> n);
    for (int i = 1; i <= n; i++) {
      if ((p[i] & 0xC0) != 0x80)
        return 0;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    p += n + 1;
  }
  return 1;
}

/*
 * An actor's id and roles go into the history as JSON: bytes that are not
 * UTF-8 cannot, and must be refused as the caller's mistake (FLOW_EINVAL),
 * not reported as running out of memory, and not dropped from the record.
 */
START_TEST(test_bad_input_actor_not_utf8)
{
  static const char *const crew[] = { "crew" };
  static const char *const bad_role[] = { "cr\x90w" };
  const flow_actor actors[] = {
    { "sam\xFF", crew, 1 },
    { "sam", bad_role, 1 },
    { "\xED\xA0\x80", NULL, 0 },
  };
  for (size_t i = 0; i < sizeof actors / sizeof *actors; i++) {
    char *before = snapshot();
    int rc = flow_case_open(NULL, E, "forms", NULL, &actors[i]);
    ck_assert_msg(rc == FLOW_EINVAL, "flow_case_open, actor %zu: got %s (%s)",
                  i, flow_err_name(rc), flow_errmsg(E));
    rc = flow_case_signal(NULL, E, "1", "ignore", NULL, &actors[i]);
    ck_assert_msg(rc == FLOW_EINVAL,
                  "flow_case_signal, actor %zu: got %s (%s)", i,
                  flow_err_name(rc), flow_errmsg(E));
    outcome o = { 0, 0, "" };
    rc = finish_async(flow_case_signal_async(E, "1", "ignore", NULL,
                                             &actors[i], on_done, &o),
                      &o);
    ck_assert_msg(rc == FLOW_EINVAL,
                  "flow_case_signal_async, actor %zu: got %s (%s)", i,
                  flow_err_name(rc), o.msg);
    char *after = snapshot();
    ck_assert_msg(strcmp(before, after) == 0,
                  "actor %zu was refused but something was stored", i);
    free(before);
    free(after);
  }
}
END_TEST

/* Names, titles and values in a script end up in JSON too: a script that
   holds bytes that are not UTF-8 there is refused by check and by load
   alike, as a script error that names the place. */
START_TEST(test_bad_input_script_strings_not_utf8)
{
  static const struct {
    const char *src, *what;
  } bad[] = {
    { "return { name = 'u', version = 1, title = 'Bad \x90 title',\n"
      "  initial = 'a', states = { a = { final = true } } }\n",
      "a title" },
    { "return { name = 'u', version = 1, initial = 'a',\n"
      "  fields = { e = { type = 'enum', values = { 'ok', 'b\xFF' } } },\n"
      "  states = { a = { final = true } } }\n",
      "an enum value" },
    { "return { name = 'u', version = 1, initial = 'a',\n"
      "  fields = { n = { type = 'string', title = '\xC0\xAF' } },\n"
      "  states = { a = { final = true } } }\n",
      "a field title" },
    { "return { name = 'u', version = 1, initial = 'a',\n"
      "  states = { a = { after = { ['1h'] = { event = 'ev',\n"
      "    payload = { note = '\xFE' } } }, on = { ev = 'a' } } } }\n",
      "a timer payload" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    script_refused(bad[i].src, strlen(bad[i].src), bad[i].what);
  /* The services stay listable. */
  char *out = NULL;
  ck_assert_int_eq(flow_service_list(&out, E), 0);
  flow_free(out);
}
END_TEST

/*
 * flow_errmsg is one line for a person, and hosts put it in JSON (the
 * `flow run` responses, the Python binding): it must be UTF-8 whatever
 * the input that caused it, even when it quotes that input, and even when
 * quoting cuts it short.
 */
START_TEST(test_bad_input_messages_are_utf8)
{
  /* A case id quoted in the message: 39 ASCII bytes, then a 2-byte
     character that a byte-counted %.40s would cut in half. */
  char id[64];
  memset(id, 'x', 39);
  strcpy(id + 39, "\xC3\xA9\xC3\xA9");
  char *out = NULL;
  int rc = flow_case_get(&out, E, id);
  ck_assert_int_eq(rc, FLOW_EINVAL);
  ck_assert_msg(utf8_valid(flow_errmsg(E)),
                "the message for a bad case id is not UTF-8: %s",
                flow_errmsg(E));
  rc = flow_case_get(&out, E, "\xFF");
  ck_assert_msg(utf8_valid(flow_errmsg(E)),
                "the message for case id \\xFF is not UTF-8: %s",
                flow_errmsg(E));
  /* An event name quoted back. */
  rc = flow_case_signal(NULL, E, "1", "ev\x90", NULL, NULL);
  ck_assert_int_ne(rc, 0);
  ck_assert_msg(utf8_valid(flow_errmsg(E)),
                "the message for event 'ev\\x90' is not UTF-8: %s",
                flow_errmsg(E));
  /* A refusal a script wrote. */
  static const char src[] =
      "return { name = 'fails', version = 1, initial = 'a', states = {\n"
      "  a = { on = { no = function() flow.fail('no \\x90 way') end } } } }\n";
  ck_assert_msg(flow_service_load_string(NULL, E, src, strlen(src),
                                         "fails.lua") == 0,
                "%s", flow_errmsg(E));
  ck_assert_int_eq(flow_case_open(&out, E, "fails", NULL, NULL), 0);
  json_id(out, id, sizeof id);
  flow_free(out);
  rc = flow_case_signal(NULL, E, id, "no", NULL, NULL);
  ck_assert_int_eq(rc, FLOW_EREFUSED);
  ck_assert_msg(utf8_valid(flow_errmsg(E)),
                "a flow.fail message with a stray byte comes back as it is, "
                "not as UTF-8 (flow run then drops the response): %s",
                flow_errmsg(E));
}
END_TEST

/* ---- calendars ----------------------------------------------------------- */

START_TEST(test_bad_input_calendar_options)
{
  static const char *const zones[] = { "", "Mars/Olympus", "+25:00",
                                       "+01:60", "utc", "Europe/London ",
                                       "+1", "GMT+1" };
  for (size_t i = 0; i < sizeof zones / sizeof *zones; i++) {
    flow_calendar_options c = FLOW_CALENDAR_OPTIONS_INIT;
    c.zone = zones[i];
    int rc = flow_engine_set_calendar(E, &c);
    ck_assert_msg(rc == FLOW_EINVAL, "zone '%s': %s", zones[i],
                  flow_err_name(rc));
    ck_assert(strlen(flow_errmsg(E)) > 10);
  }
  static const char *const hours[][2] = {
    { "25:00", "17:00" }, { "09:00", "24:01" }, { "17:00", "09:00" },
    { "9", "17" },        { "09:00:00", "17:00" }, { "", "17:00" },
    { "09:60", "17:00" }, { "09:00", "09:00" },
  };
  for (size_t i = 0; i < sizeof hours / sizeof *hours; i++) {
    flow_calendar_options c = FLOW_CALENDAR_OPTIONS_INIT;
    c.opens = hours[i][0];
    c.closes = hours[i][1];
    int rc = flow_engine_set_calendar(E, &c);
    ck_assert_msg(rc == FLOW_EINVAL, "hours %s-%s: %s", hours[i][0],
                  hours[i][1], flow_err_name(rc));
  }
  static const char *const days[] = { "2026-02-30", "2026-1-1", "", "x",
                                       "2026-12-25T00:00:00Z", "99999-01-01" };
  for (size_t i = 0; i < sizeof days / sizeof *days; i++) {
    flow_calendar_options c = FLOW_CALENDAR_OPTIONS_INIT;
    c.holidays = &days[i];
    c.nholidays = 1;
    int rc = flow_engine_set_calendar(E, &c);
    ck_assert_msg(rc == FLOW_EINVAL, "holiday '%s': %s", days[i],
                  flow_err_name(rc));
  }
  flow_calendar_options c = FLOW_CALENDAR_OPTIONS_INIT;
  c.weekdays = 0x80; /* no such weekday */
  ck_assert_int_eq(flow_engine_set_calendar(E, &c), FLOW_EINVAL);
}
END_TEST

static Suite *
bad_input_suite(void)
{
  Suite *s = suite_create("bad_input");
  TCase *tc = tcase_create("bad_input");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_bad_input_malformed_json_refused_everywhere);
  tcase_add_test(tc, test_bad_input_deep_nesting_refused);
  tcase_add_test(tc, test_bad_input_deep_but_parseable_nesting);
  tcase_add_test(tc, test_bad_input_raw_nul_ends_the_text);
  tcase_add_test(tc, test_bad_input_escaped_nul);
  tcase_add_test(tc, test_bad_input_many_slow_patterns);
  tcase_add_test(tc, test_bad_input_field_count);
  tcase_add_test(tc, test_bad_input_object_too_many_members);
  tcase_add_test(tc, test_bad_input_valid_json_with_bad_values);
  tcase_add_test(tc, test_bad_input_where_values);
  tcase_add_test(tc, test_bad_input_multi_megabyte_strings_refused);
  tcase_add_test(tc, test_bad_input_dates_and_datetimes);
  tcase_add_test(tc, test_bad_input_case_ids);
  tcase_add_test(tc, test_bad_input_durations_in_scripts);
  tcase_add_test(tc, test_bad_input_durations_at_run_time);
  tcase_add_test(tc, test_bad_input_malformed_scripts);
  tcase_add_test(tc, test_bad_input_deep_definition);
  tcase_add_test(tc, test_bad_input_huge_script);
  tcase_add_test(tc, test_bad_input_actor_not_utf8);
  tcase_add_test(tc, test_bad_input_script_strings_not_utf8);
  tcase_add_test(tc, test_bad_input_messages_are_utf8);
  tcase_add_test(tc, test_bad_input_calendar_options);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(bad_input_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
