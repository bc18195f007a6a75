/*
 * flow check's warnings about the events a script names in its calls
 * (flow_service_lint), and how flow graph draws handlers that stay and
 * internal events (flow_service_graph): only <flow.h>, as a host sees it.
 *
 * Each warning has a script where it must be given -- at the right line,
 * naming the event and the states -- and one where it must not, including
 * the scripts whose calls the source does not spell out (a variable for
 * the event or the options), where flow check says nothing.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static flow_engine *E;

static void
setup(void)
{
  ck_assert_int_eq(flow_engine_open(&E, ":memory:", NULL, NULL, 0), 0);
}

static void
teardown(void)
{
  flow_engine_close(E);
  E = NULL;
}

/* The warnings of src as one text, a line each: "LINE: message". */
static char *
lint(const char *src)
{
  char *out = NULL;
  int rc = flow_service_lint(&out, E, src, strlen(src), "s.lua");
  ck_assert_msg(rc == 0, "lint: %s: %s", flow_err_name(rc), flow_errmsg(E));
  /* Crude but enough: each warning is {"line":N,"message":"..."}. */
  size_t cap = strlen(out) + 1, n = 0;
  char *text = calloc(1, cap);
  ck_assert_ptr_nonnull(text);
  for (const char *p = out; (p = strstr(p, "\"line\":")) != NULL;) {
    long line = strtol(p + 7, NULL, 10);
    const char *m = strstr(p, "\"message\":\"");
    ck_assert_ptr_nonnull(m);
    m += 11;
    const char *e = strchr(m, '"');
    ck_assert_ptr_nonnull(e);
    n += (size_t)snprintf(text + n, cap - n, "%ld: %.*s\n", line,
                          (int)(e - m), m);
    p = e;
  }
  flow_free(out);
  return text;
}

#define HAS(text, s)                                                           \
  ck_assert_msg(strstr(text, s) != NULL, "warnings lack \"%s\":\n%s", s, text)
#define LACKS(text, s)                                                         \
  ck_assert_msg(strstr(text, s) == NULL, "warnings have \"%s\":\n%s", s, text)

/* ---- kept timers ------------------------------------------------------- */

/* keep = true from reported's assign: the case goes on to assigned and
   visited (both take check), then waiting (does not) and closed. */
static const char *const KEPT =
    "return {\n"
    "  name = 'kept', version = 1, initial = 'reported',\n"
    "  states = {\n"
    "    reported = { on = { assign = function(case, ev)\n"
    "      flow.at('2026-12-24T12:00:00Z', 'check', {}, { keep = true })\n"
    "      return 'assigned'\n"
    "    end } },\n"
    "    assigned = { on = { visit = 'visited',\n"
    "                        check = { to = 'closed', internal = true } } },\n"
    "    visited = { on = { wait = 'waiting',\n"
    "                       check = { to = 'closed', internal = true } } },\n"
    "    waiting = { on = { done = 'closed' } },\n"
    "    closed = { final = true },\n"
    "  },\n"
    "}\n";

START_TEST(test_lint_kept_timer_in_a_state_that_does_not_take_it)
{
  char *w = lint(KEPT);
  HAS(w, "5: flow.at sets a kept timer for 'check' (keep = true), but "
         "state 'waiting', which a case can reach after it is set, does "
         "not take 'check'");
  /* reported sets it but the case has left reported for good; closed is
     final. */
  LACKS(w, "'reported'");
  LACKS(w, "'closed',");
  free(w);
}
END_TEST

START_TEST(test_lint_kept_timer_taken_everywhere)
{
  /* waiting takes it too: nothing to say. */
  char src[2048];
  snprintf(src, sizeof src, "%s", KEPT);
  char *p = strstr(src, "waiting = { on = { done = 'closed' } }");
  ck_assert_ptr_nonnull(p);
  const char *fix = "waiting = { on = { done = 'closed', check = { to = "
                    "'closed', internal = true } } }";
  char tail[1024];
  snprintf(tail, sizeof tail, "%s",
           p + strlen("waiting = { on = { done = 'closed' } }"));
  snprintf(p, sizeof src - (size_t)(p - src), "%s%s", fix, tail);
  char *w = lint(src);
  ck_assert_msg(w[0] == 0, "no warnings expected:\n%s", w);
  free(w);
}
END_TEST

START_TEST(test_lint_timers_it_cannot_read_say_nothing)
{
  /* The event in a variable, the options in a variable, keep computed,
     a helper outside any handler: flow check cannot tell, so it is
     silent (and with `flow` passed on, it says nothing about internal
     events nobody sends either). */
  const char *src =
      "local opts = { keep = true }\n"
      "local function later(ev) flow.after('1d', ev) end\n"
      "return {\n"
      "  name = 'vague', version = 1, initial = 'a',\n"
      "  states = {\n"
      "    a = { on = { go = function(case, ev)\n"
      "      local e = 'ping'\n"
      "      flow.after('1h', e, {}, { keep = true })\n"
      "      flow.after('1h', 'pong', {}, opts)\n"
      "      flow.after('2h', 'pong', {}, { keep = case.data.k })\n"
      "      later('pong')\n"
      "      return case.data.next\n"
      "    end, pong = { to = 'b', internal = true },\n"
      "            ping = { to = 'b', internal = true } } },\n"
      "    b = { on = { stop = 'c', lost = { to = 'c', internal = true } } },\n"
      "    c = { final = true },\n"
      "  },\n"
      "}\n";
  char *w = lint(src);
  ck_assert_msg(w[0] == 0, "no warnings expected:\n%s", w);
  free(w);
}
END_TEST

/* ---- timers that die with their state ---------------------------------- */

START_TEST(test_lint_timer_fires_in_a_state_that_does_not_take_it)
{
  const char *src =
      "return {\n"
      "  name = 'chase', version = 1, initial = 'reported',\n"
      "  states = {\n"
      "    reported = { on = { assign = function(case, ev)\n"
      "      flow.after('3 working days', 'chase', { why = 'no visit' })\n"
      "      return 'assigned'\n"
      "    end, chase = { to = 'closed', internal = true } } },\n"
      "    assigned = {\n"
      "      enter = function(case) flow.after('1d', 'nudge') end,\n"
      "      on = { visit = 'closed', nudge = { to = 'closed', internal = "
      "true } } },\n"
      "    closed = { final = true },\n"
      "  },\n"
      "}\n";
  char *w = lint(src);
  /* chase is set by assign, which ends in assigned: reported's chase
     never sees it. */
  HAS(w, "5: flow.after sets a timer for 'chase' that fires in state "
         "'assigned', which does not take it");
  /* nudge is set on entering assigned, which takes it. */
  LACKS(w, "'nudge' that fires");
  free(w);
}
END_TEST

START_TEST(test_lint_a_handler_that_stays_keeps_its_state)
{
  const char *src =
      "return {\n"
      "  name = 'stay', version = 1, initial = 'open',\n"
      "  states = {\n"
      "    open = { on = {\n"
      "      remind = function(case, ev)\n"
      "        flow.after('1d', 'remind')\n"
      "      end,\n"
      "      close = 'done' } },\n"
      "    done = { final = true },\n"
      "  },\n"
      "}\n";
  char *w = lint(src);
  /* remind stays in open, which takes remind: no incident; but a person
     can send it. */
  LACKS(w, "sets a timer");
  HAS(w, "5: 'remind' in state 'open' comes from a timer set with "
         "flow.after (line 6); mark it `internal = true`");
  free(w);
}
END_TEST

/* ---- events no state takes --------------------------------------------- */

START_TEST(test_lint_events_no_state_takes)
{
  const char *src =
      "return {\n"
      "  name = 'orphans', version = 1, initial = 'a',\n"
      "  states = {\n"
      "    a = { on = { go = function(case, ev)\n"
      "      flow.call('notify.sms', { to = '1' }, { reply = 'sms_sent',\n"
      "                                              fail = 'sms_failed' })\n"
      "      flow.task{ name = 'inspect', done = 'inspected' }\n"
      "      flow.after('1h', 'tick')\n"
      "      flow.call('notify.email', {})\n"
      "      return 'b'\n"
      "    end } },\n"
      "    b = { on = { sms_failed = { to = 'c', internal = true } } },\n"
      "    c = { final = true },\n"
      "  },\n"
      "}\n";
  char *w = lint(src);
  HAS(w, "5: flow.call's reply event 'sms_sent' is taken by no state: "
         "when the action answers, it raises an incident");
  HAS(w, "7: flow.task's done event 'inspected' is taken by no state: when "
         "the task is completed");
  HAS(w, "8: the flow.after event 'tick' is taken by no state: when the "
         "timer fires");
  LACKS(w, "'sms_failed' is taken");
  LACKS(w, "'sms_failed' in state 'b'"); /* internal already */
  free(w);
}
END_TEST

/* ---- internal events --------------------------------------------------- */

START_TEST(test_lint_engine_events_a_person_could_send)
{
  const char *src =
      "return {\n"
      "  name = 'answers', version = 1, initial = 'a',\n"
      "  states = {\n"
      "    a = { on = { go = function(case, ev)\n"
      "      flow.call('address.lookup', {}, { reply = 'found' })\n"
      "      flow.task({ name = 'visit', done = 'visited' })\n"
      "      return 'b'\n"
      "    end } },\n"
      "    b = { on = { found = 'c',\n"
      "                 visited = { to = 'c', internal = true } } },\n"
      "    c = { final = true },\n"
      "  },\n"
      "}\n";
  char *w = lint(src);
  HAS(w, "9: 'found' in state 'b' comes from flow.call's reply (line 5); "
         "mark it `internal = true`");
  LACKS(w, "'visited' in state 'b'");
  free(w);
}
END_TEST

START_TEST(test_lint_internal_events_nothing_sends)
{
  const char *src =
      "return {\n"
      "  name = 'silent', version = 1, initial = 'a',\n"
      "  fields = { ref = { type = 'string' } },\n"
      "  correlate = { paid = 'ref' },\n"
      "  states = {\n"
      "    a = { after = { ['1d'] = { event = 'poke' } },\n"
      "          on = { go = function(case) flow.after('1h', 'tick') end,\n"
      "                 tick = { to = 'b', internal = true },\n"
      "                 poke = { to = 'b', internal = true },\n"
      "                 paid = { to = 'b', internal = true },\n"
      "                 ghost = { to = 'b', internal = true } } },\n"
      "    b = { final = true },\n"
      "  },\n"
      "}\n";
  char *w = lint(src);
  HAS(w, "11: 'ghost' in state 'a' is internal = true, but nothing in the "
         "service sends it");
  LACKS(w, "'tick' in state 'a' is internal");
  LACKS(w, "'poke' in state 'a' is internal");
  LACKS(w, "'paid' in state 'a' is internal");
  free(w);
}
END_TEST

/* ---- flow.NAME --------------------------------------------------------- */

START_TEST(test_lint_flow_names)
{
  const char *src =
      "return {\n"
      "  name = 'names', version = 1, initial = 'a',\n"
      "  states = { a = { on = {\n"
      "    go = function(case) flow.sla.pause('waiting') end,\n"
      "    back = function(case) flow.sla.resume() end,\n"
      "    typo = function(case) flow.cal('notify.sms') end,\n"
      "    sla = function(case) flow.sla.resart('1d') end,\n"
      "    fine = function(case) flow.log(case.id, flow.null, x.flow.zz) end,\n"
      "  } } },\n"
      "}\n";
  char *w = lint(src);
  HAS(w, "4: flow.sla.pause and flow.sla.resume do nothing here: the service "
         "has no service level");
  HAS(w, "5: flow.sla.pause and flow.sla.resume do nothing here");
  HAS(w, "6: flow has no 'cal' (did you mean flow.call?): this line fails "
         "when it runs");
  HAS(w, "7: flow.sla has no 'resart' (did you mean flow.sla.restart?)");
  LACKS(w, "8:");
  free(w);
  /* With a level somewhere (a state's own is enough), stopping it is
     fine. */
  const char *with =
      "return {\n"
      "  name = 'names', version = 1, initial = 'a',\n"
      "  states = { a = { on = { go = 'b' } },\n"
      "    b = { sla = { within = '2d' }, on = {\n"
      "      hold = function(case) flow.sla.pause('waiting') end,\n"
      "      done = 'c' } },\n"
      "    c = { final = true } },\n"
      "}\n";
  w = lint(with);
  LACKS(w, "do nothing");
  free(w);
}
END_TEST

/* ---- the examples ------------------------------------------------------ */

static char *
read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  char *buf = malloc(1 << 20);
  *len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
  fclose(f);
  if (buf)
    buf[*len] = 0;
  return buf;
}

START_TEST(test_lint_examples_are_clean)
{
  static const char *const files[] = {
    "examples/services/missed_bin.lua", "examples/services/bulky_waste.lua",
    "docs/examples/bulky.lua", NULL
  };
  const char *root = getenv("FLOW_SOURCE_DIR");
  if (root == NULL)
    root = ".";
  for (size_t i = 0; files[i]; i++) {
    char path[1024];
    size_t len;
    snprintf(path, sizeof path, "%s/%s", root, files[i]);
    char *src = read_file(path, &len);
    ck_assert_msg(src != NULL, "cannot read %s", path);
    char *out = NULL;
    int rc = flow_service_lint(&out, E, src, len, files[i]);
    ck_assert_msg(rc == 0, "%s: %s", files[i], flow_errmsg(E));
    ck_assert_msg(strstr(out, "\"warnings\":[]") != NULL, "%s: %s", files[i],
                  out);
    flow_free(out);
    free(src);
  }
}
END_TEST

/* ---- the graph --------------------------------------------------------- */

static const char *const GRAPHED =
    "return {\n"
    "  name = 'g', version = 1, initial = 'open',\n"
    "  states = {\n"
    "    open = {\n"
    "      after = { ['1d'] = { event = 'remind' } },\n"
    "      on = {\n"
    "        note = function(case, ev) case.data = case.data end,\n"
    "        maybe = function(case, ev) if ev.payload.x then return 'done' "
    "end return end,\n"
    "        remind = { handler = function(case, ev) end, internal = true },\n"
    "        pick = function(case, ev) return ev.payload.to end,\n"
    "        paid = { to = 'done', internal = true },\n"
    "        close = 'done',\n"
    "      } },\n"
    "    done = { final = true },\n"
    "  },\n"
    "}\n";

static char *
graph(const char *format)
{
  char *out = NULL;
  int rc = flow_service_graph(&out, E, GRAPHED, strlen(GRAPHED), "g.lua",
                              format);
  ck_assert_msg(rc == 0, "graph: %s", flow_errmsg(E));
  return out;
}

START_TEST(test_graph_self_loops_and_internal_events_dot)
{
  char *g = graph("dot");
  HAS(g, "\"open\" -> \"open\" [label=\"note\", style=dashed];");
  /* One that may go or stay: both. */
  HAS(g, "\"open\" -> \"done\" [label=\"maybe\", style=dashed];");
  HAS(g, "\"open\" -> \"open\" [label=\"maybe\", style=dashed];");
  HAS(g, "\"open\" -> \"open\" [label=\"remind, after 1d (internal)\", "
         "style=dashed, color=gray45, fontcolor=gray45];");
  HAS(g, "\"open\" -> \"done\" [label=\"paid (internal)\", color=gray45, "
         "fontcolor=gray45];");
  /* Unchanged: a handler that returns what nothing says still goes to the
     note, and plain edges have no marks. */
  HAS(g, "\"open\" -> __decides [label=\"pick\", style=dashed];");
  HAS(g, "\"open\" -> \"done\" [label=\"close\"];");
  flow_free(g);
}
END_TEST

START_TEST(test_graph_self_loops_and_internal_events_mermaid)
{
  char *g = graph("mermaid");
  HAS(g, "\n  open --> open: note (handler)\n");
  HAS(g, "\n  open --> open: remind, after 1d (internal) (handler)\n");
  HAS(g, "\n  open --> done: paid (internal)\n");
  HAS(g, "\n  open --> done: close\n");
  HAS(g, "note right of open: pick - the handler decides");
  flow_free(g);
}
END_TEST

/* Where a handler's code can go, read from its control flow: one that
   may fall off its end without a return stays; one whose every branch
   returns (or calls flow.fail) does not; a return of something other
   than a state's name adds the note even beside plain returns.  A title
   with a colon is quoted in Mermaid's front matter. */
static const char *const FLOWING =
    "local function paid(case) return 'done' end\n"
    "return {\n"
    "  name = 'f', version = 1, title = 'Local test and trace: a contact',\n"
    "  initial = 'open',\n"
    "  states = {\n"
    "    open = { on = {\n"
    "      falls = function(case, ev)\n"
    "        if ev.payload.x then return 'done' end\n"
    "        case.data.y = 1\n"
    "      end,\n"
    "      every = function(case, ev)\n"
    "        if ev.payload.x then return 'done'\n"
    "        elseif ev.payload.y then return 'other'\n"
    "        else return 'done' end\n"
    "      end,\n"
    "      failing = function(case, ev)\n"
    "        if ev.payload.x then return 'done' end\n"
    "        flow.fail('say x')\n"
    "      end,\n"
    "      mixed = function(case, ev)\n"
    "        if ev.payload.ok then return paid(case) end\n"
    "        return 'other'\n"
    "      end,\n"
    "      looping = function(case)\n"
    "        for i = 1, 3 do if i == 2 then return 'done' end end\n"
    "      end } },\n"
    "    other = { final = true },\n"
    "    done = { final = true },\n"
    "  },\n"
    "}\n";

START_TEST(test_graph_reads_the_control_flow)
{
  char *g = NULL;
  ck_assert_int_eq(flow_service_graph(&g, E, FLOWING, strlen(FLOWING),
                                      "f.lua", "mermaid"),
                   0);
  HAS(g, "\n  open --> open: falls (handler)\n");
  HAS(g, "\n  open --> other: every (handler)\n");
  LACKS(g, "open --> open: every");
  LACKS(g, "open --> open: failing");
  HAS(g, "\n  open --> other: mixed (handler)\n");
  HAS(g, "note right of open: mixed - the handler decides");
  HAS(g, "\n  open --> open: looping (handler)\n");
  HAS(g, "title: \"Local test and trace: a contact (f version 1)\"\n");
  flow_free(g);
}
END_TEST

static Suite *
lint_suite(void)
{
  Suite *s = suite_create("lint");
  TCase *tc = tcase_create("lint");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_lint_kept_timer_in_a_state_that_does_not_take_it);
  tcase_add_test(tc, test_graph_reads_the_control_flow);
  tcase_add_test(tc, test_lint_kept_timer_taken_everywhere);
  tcase_add_test(tc, test_lint_timers_it_cannot_read_say_nothing);
  tcase_add_test(tc, test_lint_timer_fires_in_a_state_that_does_not_take_it);
  tcase_add_test(tc, test_lint_a_handler_that_stays_keeps_its_state);
  tcase_add_test(tc, test_lint_events_no_state_takes);
  tcase_add_test(tc, test_lint_engine_events_a_person_could_send);
  tcase_add_test(tc, test_lint_internal_events_nothing_sends);
  tcase_add_test(tc, test_lint_flow_names);
  tcase_add_test(tc, test_lint_examples_are_clean);
  tcase_add_test(tc, test_graph_self_loops_and_internal_events_dot);
  tcase_add_test(tc, test_graph_self_loops_and_internal_events_mermaid);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(lint_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
