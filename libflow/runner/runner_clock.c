/*
 * The virtual clock of a test (`flow test`): advance, advance_to and now.
 * A test's engine starts at FLOW_TEST_DEFAULT_START (or test.start, or the
 * test's `at`) and its clock moves only when the test says so, firing
 * every timer due on the way in due order, each at its own due time, and
 * whatever else falls due: action requests, mocks' answers given `after`
 * a while, and the expiry of buffered messages.  A timer refused when it
 * fires (an incident) ends the test as an error; an action's or a
 * message's incident does not.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "runner/runner_int.h"

void
flow__runner_listener(flow_engine *e, const char *event_json, void *payload)
{
  runner *r = payload;
  (void)e;
  json_t *j = json_loads(event_json, 0, NULL);
  const char *type = json_string_value(json_object_get(j, "type"));
  /* A timer refused is a test error; an action's or a message's incident
     is something a test looks at (c:expect_actions, the message's status,
     c:incidents).  Incidents say where they come from in "source"; the
     timer's note also names its timer. */
  const char *source = json_string_value(json_object_get(j, "source"));
  int timer = source ? strcmp(source, "timer") == 0
                     : json_object_get(j, "timer") != NULL;
  if (type && strcmp(type, "incident") == 0 && timer &&
      r->incident[0] == 0) {
    const char *c = json_string_value(json_object_get(j, "case"));
    const char *m = json_string_value(json_object_get(j, "message"));
    const char *ev = json_string_value(json_object_get(j, "event"));
    const char *code = json_string_value(json_object_get(j, "error"));
    snprintf(r->incident, sizeof r->incident,
             "the timer '%s' of case %s was refused when it fired (an "
             "incident): %s",
             ev ? ev : "?", c ? c : "?", m ? m : "?");
    snprintf(r->incident_case, sizeof r->incident_case, "%s", c ? c : "");
    r->incident_code = code ? flow__runner_code_from_name(code) : FLOW_ERROR;
  }
  json_decref(j);
}

/* Moves the clock to target, firing what falls due on the way. */
void
flow__runner_move_clock(lua_State *L, runner *r, int64_t target)
{
  flow_engine *e = r->e;
  int64_t now = flow_engine_now(e);
  if (target < now) {
    r->moving = 0;
    char a[32], b[32];
    flow_time_format(a, sizeof a, target);
    flow_time_format(b, sizeof b, now);
    flow__runner_raise_at(L, r,
                          "the clock only moves forward: %s is before now "
                          "(%s)",
                          a, b);
  }
  r->moving++;
  for (int guard = 0; guard < 1000000; guard++) {
    /* The next thing to happen: a timer or request due, or a mock's
       answer given `after` a while. */
    int64_t due = flow__engine_next_due(e);
    int64_t answer = flow__runner_next_answer(r);
    int64_t next = answer < due ? answer : due;
    if (next == INT64_MAX || next > target)
      break;
    if (next > now)
      flow_engine_set_time(e, now = next);
    size_t given = r->ndelayed;
    flow__runner_give_due(L, r);
    given -= r->ndelayed;
    size_t fired = 0;
    int rc = flow_engine_fire_due(e, &fired);
    flow__sb_charge(L, 1000 + 1000 * (uint64_t)fired);
    if (rc != 0)
      flow__runner_engine_error(L, r, rc, "firing timers");
    flow__runner_answer(L, r); /* requests the firing dispatched */
    if (r->incident[0]) {
      snprintf(r->last_case, sizeof r->last_case, "%s", r->incident_case);
      r->last_code = r->incident_code;
      flow__runner_capture_history(r, r->last_case);
      r->moving = 0;
      flow__runner_raise_at(L, r, "%s", r->incident);
    }
    if (fired == 0 && given == 0 && flow__engine_next_due(e) > now &&
        flow__runner_next_answer(r) > now)
      break;
    if (fired == 0 && given == 0)
      break; /* due, but nothing would happen: do not spin */
  }
  r->moving--;
  flow_engine_set_time(e, target);
}

int64_t
flow__runner_check_time(lua_State *L, runner *r, int idx, const char *what)
{
  const char *s = luaL_checkstring(L, idx);
  int64_t t;
  if (flow_time_parse(&t, s) != 0)
    flow__runner_raise_at(L, r,
                          "%s: cannot read '%s' as a time; write ISO 8601 "
                          "with an offset or Z, like 2026-02-02T09:00:00Z",
                          what, s);
  return t;
}

int
flow__runner_l_advance(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "advance");
  const char *text = luaL_checkstring(L, 1);
  flow__duration d;
  flow__err err;
  flow__err_clear(&err);
  if (flow__duration_parse(text, &d, &err) != 0)
    return flow__runner_raise_at(L, r, "advance: %s", err.msg);
  int64_t target;
  if (flow__calendar_add(&r->e->cal, flow_engine_now(r->e), &d, &target))
    return flow__runner_raise_at(L, r, "advance('%s') overflows", text);
  flow__runner_move_clock(L, r, target);
  return 0;
}

int
flow__runner_l_advance_to(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "advance_to");
  flow__runner_move_clock(L, r, flow__runner_check_time(L, r, 1, "advance_to"));
  return 0;
}

int
flow__runner_l_now(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "now");
  char buf[32];
  flow_time_format(buf, sizeof buf, flow_engine_now(r->e));
  lua_pushstring(L, buf);
  return 1;
}
