/*
 * Rules across fields (issue 14, item 4): `one_of` groups and a service's
 * `validate = function(data)`, where field validation runs, with their
 * refusals, budgets, load errors and JSON Schema, through the public API
 * on a fixed clock.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_util.h"

static const char *const SERVICE =
    "return {\n"
    "  name = 'event_licence', version = 1,\n"
    "  fields = {\n"
    "    uprn = { type = 'string', pattern = '^%d+$' },\n"
    "    street = { type = 'string' },\n"
    "    phone = { type = 'string' },\n"
    "    email = { type = 'string' },\n"
    "    start_date = { type = 'date', required = true },\n"
    "    end_date = { type = 'date', required = true },\n"
    "    visit = { type = 'datetime' },\n"
    "    note = { type = 'string' },\n"
    "  },\n"
    "  one_of = { { 'uprn', 'street' }, { 'phone', 'email' } },\n"
    "  validate = function(data)\n"                                /* 14 */
    "    local problems = {}\n"
    "    if data.end_date <= data.start_date then\n"
    "      problems.end_date = 'must be after the start date'\n"
    "    end\n"
    "    if data.visit and data.visit < flow.now() then\n"
    "      problems.visit = 'must not be in the past'\n"
    "    end\n"
    "    return problems\n"
    "  end,\n"
    "  initial = 'received',\n"
    "  states = {\n"
    "    received = { on = {\n"
    "      edit = function(case, ev)\n"
    "        for k, v in pairs(ev.payload) do case.data[k] = v end\n"
    "      end,\n"
    "      touch = function(case) end,\n"
    "      clear = function(case, ev) case.data[ev.payload.field] = nil end,\n"
    "      grant = 'granted',\n"
    "    } },\n"
    "    granted = { final = true },\n"
    "  },\n"
    "}\n";

static const char *const GOOD =
    "{\"uprn\": \"100040\", \"email\": \"a@example.org\", "
    "\"start_date\": \"2026-12-10\", \"end_date\": \"2026-12-12\"}";

static flow_engine *E;
static char dir[64], path[96];

static void
open_engine(void)
{
  char err[256];
  ck_assert_msg(flow_engine_open(&E, path, NULL, err, sizeof err) == 0, "%s",
                err);
  flow_engine_set_time(E, at("2026-12-01T09:00:00Z"));
}

static void
load(const char *src, const char *name)
{
  ck_assert_msg(flow_service_load_string(NULL, E, src, strlen(src), name) ==
                    0,
                "%s", flow_errmsg(E));
}

static void
setup(void)
{
  api_db_make("rules", dir, path);
  open_engine();
  load(SERVICE, "licence.lua");
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
  api_db_remove(dir);
}

/* Opening with data is refused with code; the message is returned. */
static const char *
open_refused(const char *service, const char *data, int code)
{
  char *c = NULL;
  int rc = flow_case_open(&c, E, service, data, NULL);
  ck_assert_msg(rc == code, "want %d, got %d (%s) for %s", code, rc,
                rc ? flow_errmsg(E) : c, data);
  ck_assert_ptr_null(c);
  return flow_errmsg(E);
}

static size_t
ncases(void)
{
  char *c;
  ck_assert_int_eq(flow_case_list(&c, E, NULL), 0);
  size_t n = 0;
  for (const char *p = c; (p = strstr(p, "\"id\"")) != NULL; p++)
    n++;
  flow_free(c);
  return n;
}

START_TEST(test_one_of)
{
  const char *m = open_refused(
      "event_licence",
      "{\"start_date\": \"2026-12-10\", \"end_date\": \"2026-12-12\"}",
      FLOW_EDATA);
  assert_has(m, "uprn or street: give at least one of them");
  assert_has(m, "phone or email: give at least one of them");
  /* null is "not set", for one_of as for required. */
  m = open_refused("event_licence",
                   "{\"street\": null, \"phone\": \"01234\", \"start_date\": "
                   "\"2026-12-10\", \"end_date\": \"2026-12-12\"}",
                   FLOW_EDATA);
  assert_has(m, "uprn or street");
  assert_lacks(m, "phone or email");
  char *c;
  ck_assert_int_eq(flow_case_open(&c, E, "event_licence",
                                  "{\"street\": \"Mill Lane\", \"phone\": "
                                  "\"01234\", \"start_date\": \"2026-12-10\", "
                                  "\"end_date\": \"2026-12-12\"}",
                                  NULL),
                   0);
  flow_free(c);
  /* An event that takes the last of a group away is refused too. */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "clear",
                                    "{\"field\": \"street\"}", NULL),
                   FLOW_EDATA);
  assert_has(flow_errmsg(E), "uprn or street: give at least one of them");
  ck_assert_int_eq(flow_case_get(&c, E, "1"), 0);
  assert_has(c, "\"street\":\"Mill Lane\"");
  assert_has(c, "\"seq\":1");
  flow_free(c);
}
END_TEST

START_TEST(test_validate_names_every_field)
{
  /* The rule's message beside the built-in ones, one per field. */
  const char *m = open_refused(
      "event_licence",
      "{\"uprn\": \"x1\", \"street\": \"Mill Lane\", \"start_date\": "
      "\"2026-12-10\", \"end_date\": \"2026-12-09\", \"visit\": "
      "\"2026-11-30T10:00:00Z\"}",
      FLOW_EDATA);
  assert_has(m, "case data is not valid: ");
  assert_has(m, "end_date: must be after the start date");
  assert_has(m, "visit: must not be in the past");
  assert_has(m, "uprn: does not match the pattern");
  assert_has(m, "phone or email: give at least one of them");
  /* A field that fails its own check gets only that message. */
  m = open_refused("event_licence",
                   "{\"uprn\": \"1\", \"email\": \"e\", \"start_date\": "
                   "\"2026-12-10\", \"end_date\": \"2026-12-09\", \"visit\": "
                   "\"soon\"}",
                   FLOW_EDATA);
  assert_has(m, "end_date: must be after the start date");
  assert_has(m, "visit: must be a time with an offset");
  assert_lacks(m, "in the past");
  ck_assert_uint_eq(ncases(), 0);
  char *c;
  ck_assert_int_eq(flow_case_open(&c, E, "event_licence", GOOD, NULL), 0);
  flow_free(c);
  ck_assert_uint_eq(ncases(), 1);
}
END_TEST

START_TEST(test_validate_runs_on_changed_data)
{
  char *c;
  ck_assert_int_eq(
      flow_case_open(&c, E, "event_licence",
                     "{\"uprn\": \"1\", \"email\": \"e\", \"start_date\": "
                     "\"2026-12-10\", \"end_date\": \"2026-12-12\", "
                     "\"visit\": \"2026-12-03T10:00:00Z\"}",
                     NULL),
      0);
  flow_free(c);
  /* An event that changes the data is checked against the rule. */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "edit",
                                    "{\"end_date\": \"2026-12-01\"}", NULL),
                   FLOW_EDATA);
  assert_has(flow_errmsg(E), "end_date: must be after the start date");
  /* The visit is now in the past, but data the case already holds was
     accepted: events that leave it alone go on. */
  flow_engine_set_time(E, at("2026-12-07T09:00:00Z"));
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "touch", NULL, NULL), 0);
  /* ...while one that changes something has the whole data checked. */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "edit",
                                    "{\"note\": \"called\"}", NULL),
                   FLOW_EDATA);
  assert_has(flow_errmsg(E), "visit: must not be in the past");
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "clear",
                                    "{\"field\": \"visit\"}", NULL),
                   0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "edit",
                                    "{\"note\": \"called\"}", NULL),
                   0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "grant", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_get(&c, E, "1"), 0);
  assert_has(c, "\"note\":\"called\"");
  assert_has(c, "\"status\":\"closed\"");
  flow_free(c);
}
END_TEST

START_TEST(test_validate_survives_a_restart)
{
  char *c;
  ck_assert_int_eq(flow_case_open(&c, E, "event_licence", GOOD, NULL), 0);
  flow_free(c);
  flow_engine_close(E);
  open_engine(); /* the service comes back from the database */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "edit",
                                    "{\"end_date\": \"2026-12-01\"}", NULL),
                   FLOW_EDATA);
  assert_has(flow_errmsg(E), "end_date: must be after the start date");
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "clear",
                                    "{\"field\": \"email\"}", NULL),
                   FLOW_EDATA);
  assert_has(flow_errmsg(E), "phone or email");
}
END_TEST

static const char *const BAD =
    "return {\n"
    "  name = 'bad', version = 1,\n"
    "  fields = { mode = { type = 'string' }, n = { type = 'integer' } },\n"
    "  validate = function(data)\n"                                  /* 4 */
    "    local m = data.mode\n"
    "    if m == 'throw' then error('no rule for this') end\n"         /* 6 */
    "    if m == 'text' then return 'mode is wrong' end\n"
    "    if m == 'key' then return { mdoe = 'wrong' } end\n"
    "    if m == 'number' then return { mode = 7 } end\n"
    "    if m == 'loop' then while true do end end\n"
    "    if m == 'fail' then flow.fail('not like that') end\n"
    "    if m == 'call' then flow.call('notify.sms', {}) end\n"
    "    if m == 'empty' then return {} end\n"
    "    if m == 'shape' then return { n = 'n is ' .. (data.n + 1) } end\n"
    "  end,\n"
    "  initial = 'a',\n"
    "  states = { a = { on = { go = 'b' } }, b = { final = true } },\n"
    "}\n";

START_TEST(test_validate_refusals)
{
  load(BAD, "bad.lua");
  const char *m = open_refused("bad", "{\"mode\": \"throw\"}", FLOW_ESCRIPT);
  assert_has(m, "bad.lua:6:");
  assert_has(m, "no rule for this");
  m = open_refused("bad", "{\"mode\": \"text\"}", FLOW_ESCRIPT);
  assert_has(m, "bad.lua:4: validate must return nothing, or a table of "
                "field = message");
  assert_has(m, "not a string");
  m = open_refused("bad", "{\"mode\": \"key\"}", FLOW_ESCRIPT);
  assert_has(m, "bad.lua:4: validate returned a message for 'mdoe', which "
                "is not a field");
  m = open_refused("bad", "{\"mode\": \"number\"}", FLOW_ESCRIPT);
  assert_has(m, "validate's message for mode must be text");
  m = open_refused("bad", "{\"mode\": \"loop\"}", FLOW_ELIMIT);
  assert_has(m, "the validate function");
  m = open_refused("bad", "{\"mode\": \"fail\"}", FLOW_ESCRIPT);
  assert_has(m, "bad.lua:4: validate refused with flow.fail(\"not like "
                "that\")");
  m = open_refused("bad", "{\"mode\": \"call\"}", FLOW_ESCRIPT);
  assert_has(m, "bad.lua:12:");
  assert_has(m, "only be requested while a case handles an event");
  /* Data of the wrong shape: the built-in message, not the throw. */
  m = open_refused("bad", "{\"mode\": \"shape\", \"n\": \"x\"}", FLOW_EDATA);
  assert_has(m, "n: must be a whole number");
  assert_lacks(m, "arithmetic");
  ck_assert_uint_eq(ncases(), 0);
  /* After all that (a killed run among them) the service still works. */
  char *c;
  ck_assert_int_eq(flow_case_open(&c, E, "bad", "{\"mode\": \"empty\"}", NULL),
                   0);
  flow_free(c);
  ck_assert_int_eq(flow_case_open(&c, E, "bad",
                                  "{\"mode\": \"shape\", \"n\": 1}", NULL),
                   FLOW_EDATA);
  assert_has(flow_errmsg(E), "n: n is 2");
  ck_assert_uint_eq(ncases(), 1);
}
END_TEST

static void
assert_load_fails(const char *src, const char *want)
{
  ck_assert_int_ne(
      flow_service_load_string(NULL, E, src, strlen(src), "load.lua"), 0);
  assert_has(flow_errmsg(E), want);
}

#define HEAD                                                                   \
  "return { name = 'x', version = 1, initial = 'a',\n"                        \
  "  fields = { uprn = { type = 'string' }, street = { type = 'string' },\n"  \
  "             ref = { type = 'string', required = true } },\n"
#define TAIL "  states = { a = { final = true } } }\n"

START_TEST(test_rules_load_errors)
{
  assert_load_fails(HEAD "  one_of = { 'uprn', 'stret' },\n" TAIL,
                    "load.lua:4: one_of names 'stret', which is not in "
                    "`fields` (did you mean 'street'?)");
  assert_load_fails(HEAD "  one_of = { 'uprn', 'ref' },\n" TAIL,
                    "load.lua:4: one_of names 'ref', which is required "
                    "already");
  assert_load_fails(HEAD "  one_of = { 'uprn' },\n" TAIL,
                    "load.lua:4: one_of must list two or more field names");
  assert_load_fails(HEAD "  one_of = { { 'uprn', 'street' }, { 'uprn' } },\n"
                    TAIL,
                    "load.lua:4: one_of must list two or more field names");
  assert_load_fails(HEAD "  one_of = { 'uprn', 'uprn' },\n" TAIL,
                    "one_of names 'uprn' twice");
  assert_load_fails(HEAD "  one_of = 'uprn',\n" TAIL,
                    "load.lua:4: one_of must be a list of field names");
  assert_load_fails(HEAD "  validate = { uprn = 'x' },\n" TAIL,
                    "load.lua:4: validate must be a function(data)");
  assert_load_fails(HEAD "  valdiate = function(data) end,\n" TAIL,
                    "did you mean 'validate'?");
  assert_load_fails(HEAD "  oneof = { 'uprn', 'street' },\n" TAIL,
                    "did you mean 'one_of'?");
}
END_TEST

START_TEST(test_rules_in_the_schema)
{
  char *s;
  ck_assert_int_eq(flow_service_schema(&s, E, "event_licence", 0), 0);
  assert_has(s, "\"allOf\":[{\"anyOf\":[{\"required\":[\"uprn\"]},"
                "{\"required\":[\"street\"]}]},{\"anyOf\":[{\"required\":"
                "[\"phone\"]},{\"required\":[\"email\"]}]}]");
  assert_has(s, "\"$comment\":\"licence.lua:14 also checks the data in its "
                "validate function");
  flow_free(s);
  load(HEAD "  one_of = { 'uprn', 'street' },\n" TAIL, "one.lua");
  ck_assert_int_eq(flow_service_schema(&s, E, "x", 0), 0);
  assert_has(s, "\"anyOf\":[{\"required\":[\"uprn\"]},{\"required\":"
                "[\"street\"]}]");
  assert_lacks(s, "allOf");
  assert_lacks(s, "$comment");
  flow_free(s);
}
END_TEST

/* The sender's data is checked before any script sees it: an initial
   function and an enter hook may rely on the declared fields, and a
   missing one is refused as the data's fault, naming the field, not as a
   script error where the hook read it.  Scripts that ran are checked
   after, as before. */
static const char *const HOOKED =
    "return {\n"
    "  name = 'fly_tipping', version = 1,\n"
    "  fields = {\n"
    "    location = { type = 'string', required = true, max = 40 },\n"
    "    what = { type = 'enum', values = { 'garden', 'hazardous' } },\n"
    "    title = { type = 'string', max = 30 },\n"
    "  },\n"
    "  initial = function(case)\n"
    "    if case.data.what == 'hazardous' then return 'urgent' end\n"
    "    return 'reported'\n"
    "  end,\n"
    "  initial_states = { 'reported', 'urgent' },\n"
    "  states = {\n"
    "    reported = { enter = function(case)\n"
    "      case.data.title = 'Fly-tipping at ' .. case.data.location\n"
    "    end, on = { close = 'closed' } },\n"
    "    urgent = { on = { close = 'closed' } },\n"
    "    closed = { final = true },\n"
    "  },\n"
    "}\n";

START_TEST(test_open_checks_data_before_scripts)
{
  load(HOOKED, "fly.lua");
  size_t before = ncases();
  const char *m = open_refused("fly_tipping", "{\"what\": \"garden\"}",
                               FLOW_EDATA);
  assert_has(m, "location: is required");
  assert_lacks(m, "fly.lua");
  m = open_refused("fly_tipping",
                   "{\"location\": \"Mill Lane\", \"what\": \"sofa\"}",
                   FLOW_EDATA);
  assert_has(m, "what: must be one of garden, hazardous");
  ck_assert_uint_eq(ncases(), before);
  /* Good data: the initial function and the hook run. */
  char *c;
  ck_assert_int_eq(flow_case_open(&c, E, "fly_tipping",
                                  "{\"location\": \"Mill Lane\"}", NULL),
                   0);
  assert_has(c, "\"title\":\"Fly-tipping at Mill Lane\"");
  assert_has(c, "\"state\":\"reported\"");
  flow_free(c);
  /* What a hook wrote is checked too: a title too long for its field. */
  m = open_refused("fly_tipping",
                   "{\"location\": \"The lay-by on the old road out of "
                   "town\"}",
                   FLOW_EDATA);
  assert_has(m, "title: ");
  ck_assert_uint_eq(ncases(), before + 1);
  /* The service's own rules still join the built-in problems, once. */
  m = open_refused("event_licence", "{\"street\": \"Mill Lane\", "
                   "\"phone\": \"1\", \"start_date\": \"2026-12-10\"}",
                   FLOW_EDATA);
  assert_has(m, "end_date: is required");
  ck_assert_ptr_null(strstr(strstr(m, "end_date") + 1, "end_date: is"));
}
END_TEST

static Suite *
rules_suite(void)
{
  Suite *s = suite_create("rules");
  TCase *tc = tcase_create("rules");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_one_of);
  tcase_add_test(tc, test_validate_names_every_field);
  tcase_add_test(tc, test_validate_runs_on_changed_data);
  tcase_add_test(tc, test_validate_survives_a_restart);
  tcase_add_test(tc, test_validate_refusals);
  tcase_add_test(tc, test_rules_load_errors);
  tcase_add_test(tc, test_rules_in_the_schema);
  tcase_add_test(tc, test_open_checks_data_before_scripts);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(rules_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
