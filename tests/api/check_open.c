/*
 * Cases that open other cases (flow.open in a handler), and messages that
 * open cases (correlate = { m = { field = ..., opens = true } }), through
 * the public API: ids handed to the script at once, every case and the
 * transition that asked for them written together or not at all -- in a
 * plain call, in a group commit, and from a timer (where a refusal is an
 * incident) -- the limits, and a message opening exactly one case even
 * when sent again or by a second engine on the same file.
 *
 * A fixed engine clock throughout.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include <check.h>
#include <flow.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_util.h"

static const char *const INDEX =
    "return {\n"
    "  name = 'index', version = 1, initial = 'open',\n"
    "  fields = { name = { type = 'string', required = true },\n"
    "             barcode = { type = 'string' },\n"
    "             age = { type = 'integer' },\n"
    "             result = { type = 'string' },\n"
    "             contacts = { type = 'list' } },\n"
    "  correlate = { result = { field = 'barcode', opens = true } },\n"
    "  states = {\n"
    "    open = {\n"
    "      after = { ['1d'] = 'traced' },\n"
    "      exit = function(case)\n"
    "        if case.data.name == 'Late' then\n"
    "          flow.open('contact', { name = 'boom', index = case.id })\n"
    "        end\n"
    "      end,\n"
    "      on = {\n"
    "        result = { internal = true, handler = function(case, ev)\n"
    "          case.data.result = ev.payload.result\n"
    "        end },\n"
    "        add = function(case, ev)\n"
    "          case.data.contacts = case.data.contacts or {}\n"
    "          for _, n in ipairs(ev.payload.names) do\n"
    "            local id = flow.open('contact', { name = n, index = case.id })\n"
    "            table.insert(case.data.contacts, id)\n"
    "          end\n"
    "        end,\n"
    "        nowhere = function(case)\n"
    "          flow.open('nosuch', {})\n"
    "        end,\n"
    "        tell = function(case, ev)\n"
    "          for _, id in ipairs(case.data.contacts or {}) do\n"
    "            flow.signal(id, ev.payload.event, { why = ev.payload.why })\n"
    "          end\n"
    "          if ev.payload.also then\n"
    "            flow.signal(ev.payload.also, 'withdrawn')\n"
    "          end\n"
    "        end,\n"
    "      },\n"
    "    },\n"
    "    traced = { final = true },\n"
    "  },\n"
    "}\n";

static const char *const CONTACT =
    "return {\n"
    "  name = 'contact', version = 1, initial = 'isolating',\n"
    "  fields = { name = { type = 'string', required = true,\n"
    "                      pattern = '^%l+$' },\n"
    "             index = { type = 'string', required = true },\n"
    "             parent = { type = 'string' } },\n"
    "  states = {\n"
    "    isolating = {\n"
    "      enter = function(case, ev)\n"
    "        if case.data.name == 'boom' then error('no such person') end\n"
    "        if case.data.name == 'again' then\n"
    "          flow.open('contact', { name = 'x', index = case.id })\n"
    "        end\n"
    "        case.data.parent = ev.parent.case .. '/' .. ev.parent.service\n"
    "      end,\n"
    "      on = { release = 'released',\n"
    "             withdrawn = { internal = true, handler = function(c, ev)\n"
    "               if ev.payload.why == 'no' then error('will not') end\n"
    "               return 'released'\n"
    "             end } } },\n"
    "    released = { final = true },\n"
    "  },\n"
    "}\n";

static char dir[64], path[96];
static flow_engine *E;
static int64_t T0;

static void
load(flow_engine *e, const char *src, const char *name)
{
  ck_assert_msg(flow_service_load_string(NULL, e, src, strlen(src), name) ==
                    0,
                "%s", flow_errmsg(e));
}

static flow_engine *
engine(void)
{
  flow_engine *e;
  char err[256];
  ck_assert_msg(flow_engine_open(&e, path, NULL, err, sizeof err) == 0, "%s",
                err);
  flow_engine_set_time(e, T0);
  return e;
}

static void
setup(void)
{
  api_db_make("open", dir, path);
  T0 = at("2026-11-30T10:00:00Z");
  E = engine();
  load(E, INDEX, "index.lua");
  load(E, CONTACT, "contact.lua");
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
  api_db_remove(dir);
}

static const char *
show(const char *id)
{
  char *out = NULL;
  ck_assert_msg(flow_case_get(&out, E, id) == 0, "case %s: %s", id,
                flow_errmsg(E));
  return api_keep(out);
}

static int
exists(const char *id)
{
  char *out = NULL;
  int rc = flow_case_get(&out, E, id);
  flow_free(out);
  return rc == 0;
}

static void
open_index(const char *data)
{
  ck_assert_msg(flow_case_open(NULL, E, "index", data, NULL) == 0, "%s",
                flow_errmsg(E));
}

START_TEST(test_script_opens_linked_cases)
{
  open_index("{\"name\":\"Alex\"}");
  char *out = NULL;
  ck_assert_msg(flow_case_signal(&out, E, "1", "add",
                                 "{\"names\":[\"bo\",\"cy\"]}", NULL) == 0,
                "%s", flow_errmsg(E));
  /* The ids the script was given are the cases' ids. */
  assert_has(out, "\"contacts\":[\"2\",\"3\"]");
  flow_free(out);
  assert_has(show("2"), "\"service\":\"contact\"");
  assert_has(show("2"), "\"name\":\"bo\"");
  assert_has(show("2"), "\"index\":\"1\"");
  /* ev.parent names the case and service that opened it. */
  assert_has(show("3"), "\"parent\":\"1/index\"");
  assert_has(show("3"), "\"state\":\"isolating\"");
  /* The next case a caller opens comes after them. */
  open_index("{\"name\":\"Dee\"}");
  assert_has(show("4"), "\"name\":\"Dee\"");
}
END_TEST

START_TEST(test_a_child_that_cannot_open_refuses_everything)
{
  open_index("{\"name\":\"Alex\"}");
  struct {
    const char *names;
    int code;
    const char *want;
  } bad[] = {
    /* its enter hook throws: the author sees both lines */
    { "[\"bo\",\"boom\"]", FLOW_ESCRIPT, "contact.lua:10: no such person" },
    /* its pattern, checked when it opens */
    { "[\"bo\",\"Cy\"]", FLOW_EDATA, "name: does not match the pattern" },
    /* a required field, checked at the call */
    { "[\"bo\",5]", FLOW_EDATA, "the data does not suit contact" },
    /* a case opened so may not open others as it opens */
    { "[\"again\"]", FLOW_ESCRIPT, "cannot open others while it opens" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char payload[64];
    snprintf(payload, sizeof payload, "{\"names\":%s}", bad[i].names);
    ck_assert_int_eq(flow_case_signal(NULL, E, "1", "add", payload, NULL),
                     bad[i].code);
    assert_has(flow_errmsg(E), "index.lua:");
    assert_has(flow_errmsg(E), bad[i].want);
    /* Neither the first contact nor the parent's change stayed. */
    ck_assert(!exists("2"));
    assert_lacks(show("1"), "contacts");
  }
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "nowhere", NULL, NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "there is no service 'nosuch'");
  /* The refused ids come again. */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "add",
                                    "{\"names\":[\"bo\"]}", NULL),
                   0);
  assert_has(show("2"), "\"name\":\"bo\"");
  char *h = NULL;
  ck_assert_int_eq(flow_case_history(&h, E, "1"), 0);
  /* open, and the one add that was taken */
  assert_has(h, "\"seq\":2");
  assert_lacks(h, "\"seq\":3");
  flow_free(h);
}
END_TEST

START_TEST(test_at_most_twenty_cases_an_event)
{
  open_index("{\"name\":\"Alex\"}");
  char names[512] = "{\"names\":[";
  for (int i = 0; i < 21; i++)
    strcat(names, i ? ",\"a\"" : "\"a\"");
  strcat(names, "]}");
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "add", names, NULL),
                   FLOW_ESCRIPT);
  assert_has(flow_errmsg(E), "an event may open at most 20 cases");
  ck_assert(!exists("2"));
}
END_TEST

static int done_status[3];
static int ndone;

static void
on_done(flow_engine *e, int status, const char *json, void *payload)
{
  (void)e;
  (void)json;
  done_status[(int)(intptr_t)payload] = status;
  ndone++;
}

START_TEST(test_group_commit_keeps_the_others)
{
  open_index("{\"name\":\"Alex\"}");
  open_index("{\"name\":\"Bea\"}");
  ndone = 0;
  /* Three calls in one group: the middle one's contact cannot open. */
  ck_assert_int_eq(flow_case_signal_async(E, "1", "add",
                                          "{\"names\":[\"bo\"]}", NULL,
                                          on_done, (void *)0),
                   0);
  ck_assert_int_eq(flow_case_signal_async(E, "2", "add",
                                          "{\"names\":[\"cy\",\"boom\"]}",
                                          NULL, on_done, (void *)1),
                   0);
  ck_assert_int_eq(flow_case_signal_async(E, "1", "add",
                                          "{\"names\":[\"di\"]}", NULL,
                                          on_done, (void *)2),
                   0);
  ck_assert_int_ge(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(ndone, 3);
  ck_assert_int_eq(done_status[0], 0);
  ck_assert_int_eq(done_status[1], FLOW_ESCRIPT);
  ck_assert_int_eq(done_status[2], 0);
  assert_has(show("1"), "\"contacts\":[\"3\",\"4\"]");
  assert_lacks(show("2"), "contacts");
  assert_has(show("3"), "\"name\":\"bo\"");
  assert_has(show("4"), "\"name\":\"di\"");
  ck_assert(!exists("5"));
}
END_TEST

START_TEST(test_from_a_timer_a_refusal_is_an_incident)
{
  open_index("{\"name\":\"Late\"}");
  /* Its `after` timer leaves the state; the exit hook's contact throws. */
  flow_engine_set_time(E, T0 + 25LL * 3600 * 1000);
  ck_assert_int_ge(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  assert_has(show("1"), "\"state\":\"open\"");
  ck_assert(!exists("2"));
  char *out = NULL;
  ck_assert_int_eq(flow_incidents_list(&out, E, "1", NULL), 0);
  assert_has(out, "no such person");
  assert_has(out, "index.lua:14");
  flow_free(out);
}
END_TEST

START_TEST(test_a_message_opens_one_case)
{
  char *out = NULL;
  ck_assert_msg(flow_message_send(&out, E, "result", "B1",
                                  "{\"result\":\"positive\",\"name\":"
                                  "\"Alex\",\"age\":41,\"lab\":\"X\"}",
                                  0) == 0,
                "%s", flow_errmsg(E));
  assert_has(out, "\"status\":\"delivered\"");
  assert_has(out, "\"case\":\"1\"");
  assert_has(out, "\"opened\":true");
  flow_free(out);
  const char *c = show("1");
  assert_has(c, "\"barcode\":\"B1\"");
  assert_has(c, "\"result\":\"positive\"");
  assert_has(c, "\"age\":41");
  assert_lacks(c, "lab"); /* not one of the service's fields */
  /* Again, and from a second engine on the same file: the open case
     takes it, no second case opens. */
  flow_engine *e2 = engine();
  ck_assert_int_eq(flow_message_send(&out, e2, "result", "B1",
                                     "{\"result\":\"void\",\"name\":\"A\"}",
                                     0),
                   0);
  assert_has(out, "\"case\":\"1\"");
  assert_lacks(out, "opened");
  flow_free(out);
  flow_engine_close(e2);
  ck_assert(!exists("2"));
  assert_has(show("1"), "\"result\":\"void\"");
  /* A message that cannot open its case is refused, and nothing stays. */
  ck_assert_int_eq(flow_message_send(&out, E, "result", "B2",
                                     "{\"result\":\"positive\"}", 0),
                   FLOW_EDATA);
  assert_has(flow_errmsg(E), "opens a case of index (index.lua:8)");
  assert_has(flow_errmsg(E), "name: is required");
  ck_assert(!exists("2"));
  ck_assert_int_eq(flow_messages_list(&out, E, NULL, "B2", NULL), 0);
  ck_assert_str_eq(out, "[]");
  flow_free(out);
}
END_TEST

START_TEST(test_one_service_opens_on_a_message)
{
  static const char *const OTHER =
      "return { name = 'other', version = 1, initial = 'a',\n"
      "  fields = { barcode = { type = 'string' } },\n"
      "  correlate = { result = { field = 'barcode', opens = true } },\n"
      "  states = { a = { on = { result = 'b' } }, b = { final = true } } }\n";
  ck_assert_int_eq(flow_service_load_string(NULL, E, OTHER, strlen(OTHER),
                                            "other.lua"),
                   FLOW_ECONFLICT);
  assert_has(flow_errmsg(E), "other.lua:3:");
  assert_has(flow_errmsg(E), "already opens cases of index");
  /* Mistakes in the long form are reported at load. */
  static const struct {
    const char *src, *want;
  } bad[] = {
    { "return { name = 'x', version = 1, initial = 'a',\n"
      "  fields = { k = { type = 'string' } },\n"
      "  correlate = { m = { field = 'k', opens = true } },\n"
      "  states = { a = { on = { other = 'b' } }, b = { final = true } } }\n",
      "x.lua:3: correlate: m opens cases" },
    { "return { name = 'x', version = 1, initial = 'a',\n"
      "  fields = { k = { type = 'string' } },\n"
      "  correlate = { m = { field = 'k', open = true } },\n"
      "  states = { a = { on = { m = 'b' } }, b = { final = true } } }\n",
      "unknown key 'open'" },
    { "return { name = 'x', version = 1, initial = 'a',\n"
      "  fields = { k = { type = 'string' } },\n"
      "  correlate = { m = { opens = true } },\n"
      "  states = { a = { on = { m = 'b' } }, b = { final = true } } }\n",
      "m must name a field" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ck_assert_int_eq(flow_service_check(E, bad[i].src, strlen(bad[i].src),
                                        "x.lua"),
                     FLOW_ESCRIPT);
    assert_has(flow_errmsg(E), bad[i].want);
  }
}
END_TEST

static int msg_status[4];
static char msg_case[4][16];

static void
on_message(flow_engine *e, int status, const char *json, void *payload)
{
  (void)e;
  int i = (int)(intptr_t)payload;
  msg_status[i] = status;
  const char *p = json ? strstr(json, "\"case\":\"") : NULL;
  snprintf(msg_case[i], sizeof msg_case[i], "%.*s",
           p ? (int)strcspn(p + 8, "\"") : 0, p ? p + 8 : "");
}

/* Messages queued are applied in one group: each opens or reaches its
   case, a refused one fails alone. */
START_TEST(test_async_messages_share_a_commit)
{
  const char *bodies[4] = {
    "{\"result\":\"positive\",\"name\":\"Ann\"}",
    "{\"result\":\"void\",\"name\":\"Ann\"}", /* same key: reaches it */
    "{\"result\":\"positive\"}",                 /* no name: cannot open */
    "{\"result\":\"positive\",\"name\":\"Bob\"}",
  };
  const char *keys[4] = { "K1", "K1", "K2", "K3" };
  for (int i = 0; i < 4; i++)
    ck_assert_int_eq(flow_message_send_async(E, "result", keys[i], bodies[i],
                                             0, on_message,
                                             (void *)(intptr_t)i),
                     0);
  ck_assert_int_eq(flow_message_send_async(E, NULL, "K", NULL, 0, NULL, NULL),
                   FLOW_EMISUSE);
  ck_assert_int_ge(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  ck_assert_int_eq(msg_status[0], 0);
  ck_assert_int_eq(msg_status[1], 0);
  ck_assert_int_eq(msg_status[2], FLOW_EDATA);
  ck_assert_int_eq(msg_status[3], 0);
  ck_assert_str_eq(msg_case[0], "1");
  ck_assert_str_eq(msg_case[1], "1");
  ck_assert_str_eq(msg_case[3], "2");
  assert_has(show("1"), "\"result\":\"void\"");
  assert_has(show("2"), "\"name\":\"Bob\"");
  ck_assert(!exists("3"));
  char *out = NULL;
  ck_assert_int_eq(flow_messages_list(&out, E, NULL, "K2", NULL), 0);
  ck_assert_str_eq(out, "[]");
  flow_free(out);
}
END_TEST

/* flow.signal: delivered after the commit as a timer of the other case;
   a refusal there is that case's incident, a closed case gets nothing,
   an unknown id is refused at the line with nothing written. */
START_TEST(test_signal_other_cases)
{
  open_index("{\"name\":\"Alex\"}");
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "add",
                                    "{\"names\":[\"bo\",\"cy\",\"di\"]}",
                                    NULL),
                   0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "4", "release", NULL, NULL), 0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "tell",
                                    "{\"event\":\"withdrawn\",\"why\":\"x\","
                                    "\"also\":\"99\"}",
                                    NULL),
                   FLOW_ENOTFOUND);
  assert_has(flow_errmsg(E), "index.lua:");
  assert_has(flow_errmsg(E), "there is no case 99");
  /* Not delivered before the loop runs; then each open case gets it. */
  ck_assert_int_eq(flow_case_signal(NULL, E, "1", "tell",
                                    "{\"event\":\"withdrawn\",\"why\":\"x\"}",
                                    NULL),
                   0);
  assert_has(show("2"), "\"state\":\"isolating\"");
  ck_assert_int_ge(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  assert_has(show("2"), "\"state\":\"released\"");
  assert_has(show("3"), "\"state\":\"released\"");
  char *h = NULL;
  ck_assert_int_eq(flow_case_history(&h, E, "4"), 0);
  assert_lacks(h, "withdrawn"); /* closed before: nothing */
  flow_free(h);
  /* Refused by the other case: its incident; the sender's step stands. */
  open_index("{\"name\":\"Bea\"}");
  ck_assert_int_eq(flow_case_signal(NULL, E, "5", "add",
                                    "{\"names\":[\"ed\"]}", NULL),
                   0);
  ck_assert_int_eq(flow_case_signal(NULL, E, "5", "tell",
                                    "{\"event\":\"withdrawn\",\"why\":\"no\"}",
                                    NULL),
                   0);
  ck_assert_int_ge(flow_engine_run(E, FLOW_RUN_NOWAIT), 0);
  assert_has(show("6"), "\"state\":\"isolating\"");
  char *out = NULL;
  ck_assert_int_eq(flow_incidents_list(&out, E, "6", NULL), 0);
  assert_has(out, "will not");
  flow_free(out);
  ck_assert_int_eq(flow_case_history(&h, E, "5"), 0);
  assert_has(h, "\"event\":\"tell\"");
  flow_free(h);
  /* An event nobody may send by hand. */
  ck_assert_int_eq(flow_case_signal(NULL, E, "6", "withdrawn", NULL, NULL),
                   FLOW_EPERM);
}
END_TEST

static Suite *
open_suite(void)
{
  Suite *s = suite_create("open");
  TCase *tc = tcase_create("api");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_script_opens_linked_cases);
  tcase_add_test(tc, test_a_child_that_cannot_open_refuses_everything);
  tcase_add_test(tc, test_at_most_twenty_cases_an_event);
  tcase_add_test(tc, test_group_commit_keeps_the_others);
  tcase_add_test(tc, test_from_a_timer_a_refusal_is_an_incident);
  tcase_add_test(tc, test_a_message_opens_one_case);
  tcase_add_test(tc, test_one_service_opens_on_a_message);
  tcase_add_test(tc, test_async_messages_share_a_commit);
  tcase_add_test(tc, test_signal_other_cases);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(open_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
