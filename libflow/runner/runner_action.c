/*
 * Actions in a test (`flow test`): mock.action stands in for the host,
 * and c:actions / c:expect_actions show what a case asked for.
 *
 *   mock.action("notify.sms", { result = { id = "sms-1" } })  -- at once
 *   mock.action("notify.sms", { fail = "no such number" })    -- final
 *   mock.action("notify.sms", { fail = "busy", retry = true }) -- retried
 *   mock.action("notify.sms", { result = {}, after = "10m" })  -- later
 *   mock.action("notify.sms", { silent = true })               -- never
 *   mock.action("address.lookup", function(args, req)
 *     return { result = { uprn = "1000" .. args.house } }
 *   end)
 *
 * The engine dispatches a request to the mock's handler, which only notes
 * it; the runner answers it when the engine call returns, on the test's
 * own Lua thread (flow__runner_answer), so a mock function runs like the
 * rest of the test, under its budget.  Answers with `after` are kept and
 * given as the virtual clock passes their time (flow__runner_move_clock).
 * An action with no mock is not dispatched: its requests wait, as they
 * would for a host that registered no handler.
 */
#define _POSIX_C_SOURCE 200809L /* strdup */

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/runner_int.h"

/* A request the engine handed to a mock, not answered yet. */
struct runner_dispatched {
  char id[24], case_id[24];
  char *action, *args, *key;
  int attempt;
};

/* An answer to give later: result (JSON text) or fail. */
struct runner_delayed {
  char id[24];
  int64_t due;
  char *result; /* NULL: a failure */
  char *fail;
  int retry;
};

static const char mocks_key = 'm';

static void
mock_handler(flow_engine *e, const flow_request *rq, void *payload)
{
  runner *r = payload;
  (void)e;
  if (r->ndispatched == r->capdispatched) {
    size_t cap = r->capdispatched ? 2 * r->capdispatched : 8;
    runner_dispatched *n = realloc(r->dispatched, cap * sizeof *n);
    if (n == NULL) {
      r->dispatch_oom = 1;
      return; /* its hold runs out and it is dispatched again */
    }
    r->dispatched = n;
    r->capdispatched = cap;
  }
  runner_dispatched *d = &r->dispatched[r->ndispatched];
  snprintf(d->id, sizeof d->id, "%s", rq->id);
  snprintf(d->case_id, sizeof d->case_id, "%s", rq->case_id);
  d->action = strdup(rq->action);
  d->args = strdup(rq->args_json);
  d->key = strdup(rq->key);
  d->attempt = rq->attempt;
  if (d->action == NULL || d->args == NULL || d->key == NULL) {
    free(d->action);
    free(d->args);
    free(d->key);
    r->dispatch_oom = 1;
    return;
  }
  r->ndispatched++;
}

static void
dispatched_free(runner_dispatched *d)
{
  free(d->action);
  free(d->args);
  free(d->key);
}

void
flow__runner_actions_reset(runner *r)
{
  for (size_t i = 0; i < r->ndispatched; i++)
    dispatched_free(&r->dispatched[i]);
  free(r->dispatched);
  r->dispatched = NULL;
  r->ndispatched = r->capdispatched = 0;
  for (size_t i = 0; i < r->ndelayed; i++) {
    free(r->delayed[i].result);
    free(r->delayed[i].fail);
  }
  free(r->delayed);
  r->delayed = NULL;
  r->ndelayed = r->capdelayed = 0;
  r->dispatch_oom = 0;
}

/* ---- answers -------------------------------------------------------------- */

/* Checks the answer table at idx; raises at the test's line if it is not
   one.  who names it in messages. */
static void
check_answer(lua_State *L, runner *r, int idx, const char *who)
{
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx))
    flow__runner_raise_at(L, r,
                          "%s: the answer must be a table like { result = "
                          "{ ... } }, { fail = \"why\" } or { silent = true "
                          "}, not a %s",
                          who, luaL_typename(L, idx));
  static const char *const known[] = { "result", "fail", "retry", "after",
                                       "silent", NULL };
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int ok = 0;
    for (int i = 0; !ok && known[i]; i++)
      ok = lua_type(L, -1) == LUA_TSTRING &&
           strcmp(lua_tostring(L, -1), known[i]) == 0;
    if (!ok) {
      char k[64];
      snprintf(k, sizeof k, "%.60s",
               lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
      flow__runner_raise_at(L, r,
                            "%s: the answer has no '%s' (it takes result, "
                            "fail, retry, after and silent)",
                            who, k);
    }
  }
  int tf = lua_getfield(L, idx, "fail");
  int tr = lua_getfield(L, idx, "result");
  if (tf != LUA_TNIL && tf != LUA_TSTRING)
    flow__runner_raise_at(L, r, "%s: fail must be the failure's message",
                          who);
  if (tr != LUA_TNIL && tr != LUA_TTABLE)
    flow__runner_raise_at(L, r, "%s: result must be a table", who);
  if (tf != LUA_TNIL && tr != LUA_TNIL)
    flow__runner_raise_at(L, r, "%s: an answer is a result or a failure, "
                                "not both",
                          who);
  lua_pop(L, 2);
  if (lua_getfield(L, idx, "after") != LUA_TNIL) {
    flow__duration d;
    flow__err err;
    flow__err_clear(&err);
    if (lua_type(L, -1) != LUA_TSTRING ||
        flow__duration_parse(lua_tostring(L, -1), &d, &err) != 0)
      flow__runner_raise_at(L, r, "%s: after: %s", who,
                            err.msg[0] ? err.msg
                                       : "must be a duration like \"10m\"");
  }
  lua_pop(L, 1);
}

/* Applies an answer now; raises when the engine refuses it.  A late
   answer (late set: one the mock gave `after` a while) to a request that
   is no longer waiting for it -- its timeout ran out first -- is what a
   slow host's answer meets in production: the engine ignores it and
   changes nothing, and so does the test. */
static void
give(lua_State *L, runner *r, const char *id, const char *result,
     const char *fail, int retry, int late)
{
  int rc = fail ? flow_action_fail(r->e, id, retry, fail)
                : flow_action_complete(r->e, id, result);
  if (rc == FLOW_ECONFLICT && late)
    return;
  if (rc != 0)
    flow__runner_engine_error(L, r, rc, "answering an action");
}

/* Answers dispatched request d with the answer table at the top of the
   stack (popped). */
static void
answer_with(lua_State *L, runner *r, const runner_dispatched *d)
{
  char who[96];
  snprintf(who, sizeof who, "mock.action('%.60s')", d->action);
  check_answer(L, r, -1, who);
  int silent = lua_getfield(L, -1, "silent") != LUA_TNIL &&
               lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (silent) {
    lua_pop(L, 1);
    return;
  }
  char *result = NULL;
  const char *fail = NULL;
  if (lua_getfield(L, -1, "fail") == LUA_TSTRING)
    fail = lua_tostring(L, -1); /* stays on the stack */
  int retry = lua_getfield(L, -2, "retry") != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!fail) {
    lua_getfield(L, -2, "result");
    json_t *j = NULL;
    char msg[256];
    if (lua_istable(L, -1)) {
      if (flow__json_from_lua(L, -1, "result", &r->alloc, &j, msg,
                              sizeof msg) != 0)
        flow__runner_raise_at(L, r, "%s: %s", who, msg);
      if (json_is_array(j) && json_array_size(j) == 0) {
        json_decref(j);
        j = json_object();
      }
    } else {
      j = json_object();
    }
    result = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    lua_pop(L, 1);
    if (result == NULL)
      luaL_error(L, "out of memory");
  }
  int64_t due = 0;
  int later = lua_getfield(L, -2, "after") == LUA_TSTRING;
  if (later) {
    flow__duration dur;
    flow__duration_parse(lua_tostring(L, -1), &dur, NULL);
    if (flow__calendar_add(&r->e->cal, flow_engine_now(r->e), &dur, &due))
      later = 0;
  }
  lua_pop(L, 1);
  if (later) {
    if (r->ndelayed == r->capdelayed) {
      size_t cap = r->capdelayed ? 2 * r->capdelayed : 8;
      runner_delayed *n = realloc(r->delayed, cap * sizeof *n);
      if (n == NULL) {
        free(result);
        luaL_error(L, "out of memory");
      }
      r->delayed = n;
      r->capdelayed = cap;
    }
    runner_delayed *q = &r->delayed[r->ndelayed++];
    snprintf(q->id, sizeof q->id, "%s", d->id);
    q->due = due;
    q->result = result;
    q->fail = fail ? strdup(fail) : NULL;
    q->retry = retry;
    lua_pop(L, 2);
    return;
  }
  /* The answer goes in with the stack as it is: give may raise, and the
     result text must not leak then. */
  lua_pushstring(L, result ? result : "");
  free(result);
  const char *res = fail ? NULL : lua_tostring(L, -1);
  give(L, r, d->id, res, fail, retry, 0);
  lua_pop(L, 3);
}

/* The mock's answer for d, pushed: its table, or what its function
   returned for (args, request). */
static void
push_answer(lua_State *L, runner *r, const runner_dispatched *d)
{
  lua_rawgetp(L, LUA_REGISTRYINDEX, &mocks_key);
  lua_getfield(L, -1, d->action);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1))
    return;
  json_t *args = json_loads(d->args, 0, NULL);
  flow__json_push(L, args);
  json_decref(args);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, d->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, d->case_id);
  lua_setfield(L, -2, "case");
  lua_pushstring(L, d->key);
  lua_setfield(L, -2, "key");
  lua_pushinteger(L, d->attempt);
  lua_setfield(L, -2, "attempt");
  lua_call(L, 2, 1); /* an error in it is the test's error, at its line */
}

void
flow__runner_answer(lua_State *L, runner *r)
{
  for (int round = 0; round < 100000; round++) {
    if (r->ndispatched == 0 && !r->moving &&
        flow__engine_next_due(r->e) <= flow_engine_now(r->e)) {
      /* Timers due now (flow.signal's, one a handler set for now) fire
         as the engine's loop would fire them in its next round. */
      flow__runner_move_clock(L, r, flow_engine_now(r->e));
      return;
    }
    if (r->ndispatched == 0) {
      size_t sent = 0, seen = 0;
      int rc = flow__engine_dispatch_batch(r->e, FLOW__ACTION_BATCH, &sent,
                                           &seen);
      flow__sb_charge(L, 1000 + 1000 * (uint64_t)seen);
      if (rc != 0)
        flow__runner_engine_error(L, r, rc, "dispatching actions");
      if (r->dispatch_oom)
        luaL_error(L, "out of memory");
      if (r->ndispatched == 0)
        return;
    }
    /* Take the first off the list before answering it: answering may
       dispatch more (a reply whose handler asks again). */
    runner_dispatched d = r->dispatched[0];
    memmove(r->dispatched, r->dispatched + 1,
            --r->ndispatched * sizeof *r->dispatched);
    /* Its strings are freed however the answer ends. */
    lua_pushstring(L, d.action);
    lua_pushstring(L, d.args);
    lua_pushstring(L, d.key);
    dispatched_free(&d);
    d.action = (char *)lua_tostring(L, -3);
    d.args = (char *)lua_tostring(L, -2);
    d.key = (char *)lua_tostring(L, -1);
    push_answer(L, r, &d);
    answer_with(L, r, &d);
    lua_pop(L, 3);
  }
}

int64_t
flow__runner_next_answer(const runner *r)
{
  int64_t t = INT64_MAX;
  for (size_t i = 0; i < r->ndelayed; i++)
    if (r->delayed[i].due < t)
      t = r->delayed[i].due;
  return t;
}

void
flow__runner_give_due(lua_State *L, runner *r)
{
  int64_t now = flow_engine_now(r->e);
  for (;;) {
    size_t best = r->ndelayed;
    for (size_t i = 0; i < r->ndelayed; i++)
      if (r->delayed[i].due <= now &&
          (best == r->ndelayed || r->delayed[i].due < r->delayed[best].due))
        best = i;
    if (best == r->ndelayed)
      return;
    runner_delayed q = r->delayed[best];
    memmove(r->delayed + best, r->delayed + best + 1,
            (--r->ndelayed - best) * sizeof *r->delayed);
    lua_pushstring(L, q.result ? q.result : "");
    lua_pushstring(L, q.fail ? q.fail : "");
    free(q.result);
    int failing = q.fail != NULL;
    free(q.fail);
    give(L, r, q.id, failing ? NULL : lua_tostring(L, -2),
         failing ? lua_tostring(L, -1) : NULL, q.retry, 1);
    lua_pop(L, 2);
    flow__runner_answer(L, r);
  }
}

/* ---- mock.action ---------------------------------------------------------- */

int
flow__runner_l_mock_action(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "mock.action");
  if (lua_type(L, 1) != LUA_TSTRING)
    return flow__runner_raise_at(L, r,
                                 "mock.action needs the action's name and "
                                 "its answer: mock.action(\"notify.sms\", "
                                 "{ result = {} })");
  const char *name = lua_tostring(L, 1);
  char who[96];
  snprintf(who, sizeof who, "mock.action('%.60s')", name);
  if (lua_type(L, 2) != LUA_TFUNCTION)
    check_answer(L, r, 2, who);
  lua_settop(L, 2);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &mocks_key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &mocks_key);
  }
  int known = lua_getfield(L, -1, name) != LUA_TNIL;
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, name);
  if (!known) {
    int rc = flow_action_register(r->e, name, mock_handler, r);
    if (rc != 0)
      return flow__runner_engine_error(L, r, rc, who);
  }
  /* Requests that waited for it are answered now. */
  flow__runner_answer(L, r);
  return 0;
}

void
flow__runner_mocks_clear(lua_State *L)
{
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mocks_key);
}

/* ---- what a case asked for ------------------------------------------------ */

static json_t *
case_actions(lua_State *L, runner *r, const char *id)
{
  char *out = NULL;
  int rc = flow_actions_list(&out, r->e, id, NULL);
  if (rc != 0)
    flow__runner_engine_error(L, r, rc, "actions");
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  if (j == NULL)
    luaL_error(L, "out of memory");
  return j;
}

int
flow__runner_c_actions(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "actions");
  json_t *j = case_actions(L, r, flow__runner_case_id(L, r));
  /* c:actions("notify.sms") or c:actions({ status = "done" }): only the
     requests that match, as c:tasks(filter) does. */
  json_t *filter = NULL;
  if (lua_type(L, 2) == LUA_TSTRING) {
    filter = json_pack("{s:s}", "action", lua_tostring(L, 2));
  } else if (lua_type(L, 2) == LUA_TTABLE) {
    char msg[256];
    if (flow__json_from_lua(L, 2, "actions", &r->alloc, &filter, msg,
                            sizeof msg) != 0) {
      json_decref(j);
      return flow__runner_raise_at(L, r, "%s", msg);
    }
  } else if (!lua_isnoneornil(L, 2)) {
    json_decref(j);
    return flow__runner_raise_at(L, r,
                                 "c:actions takes an action's name or a "
                                 "table of fields to match, like { status "
                                 "= \"done\" }");
  }
  if (filter != NULL) {
    json_t *kept = json_array();
    for (size_t i = 0; kept && i < json_array_size(j); i++)
      if (flow__runner_json_match(filter, json_array_get(j, i), 1))
        json_array_append(kept, json_array_get(j, i));
    json_decref(filter);
    json_decref(j);
    if ((j = kept) == NULL)
      return luaL_error(L, "out of memory");
  }
  flow__json_push(L, j);
  json_decref(j);
  return 1;
}

/* "notify.sms (done)" for each request. */
static void
describe_requests(json_t *list, char *buf, size_t len)
{
  flow__join j;
  flow__join_init(&j, buf, len);
  if (json_array_size(list) == 0)
    flow__join_text(&j, "none");
  for (size_t i = 0; i < json_array_size(list); i++) {
    json_t *q = json_array_get(list, i);
    char one[160];
    const char *a = json_string_value(json_object_get(q, "action"));
    const char *s = json_string_value(json_object_get(q, "status"));
    snprintf(one, sizeof one, "%s (%s)", a ? a : "?", s ? s : "any status");
    flow__join_add(&j, ", ", one);
  }
}

int
flow__runner_c_expect_actions(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_actions");
  const char *id = flow__runner_case_id(L, r);
  luaL_checktype(L, 2, LUA_TTABLE);
  json_t *want = NULL;
  char msg[256];
  if (flow__json_from_lua(L, 2, "expect_actions", &r->alloc, &want, msg,
                          sizeof msg) != 0)
    return flow__runner_raise_at(L, r, "%s", msg);
  if (json_is_object(want) && json_object_size(want) == 0) {
    json_decref(want);
    want = json_array();
  }
  if (!json_is_array(want)) {
    json_decref(want);
    return flow__runner_raise_at(L, r,
                                 "expect_actions takes a list of requests "
                                 "like { { action = \"notify.sms\", status "
                                 "= \"done\" } }");
  }
  json_t *got = case_actions(L, r, id);
  int ok = json_array_size(want) == json_array_size(got);
  /* Which request differs, and where: the summaries alone may read the
     same ("notify.sms (failed)") when only an attempt count or an error
     text is off. */
  char where[400] = "";
  for (size_t i = 0; ok && i < json_array_size(want); i++) {
    ok = flow__runner_json_match(json_array_get(want, i),
                                 json_array_get(got, i), 1);
    if (!ok) {
      char d[300];
      flow__runner_json_diff(json_array_get(want, i), json_array_get(got, i),
                             d, sizeof d);
      snprintf(where, sizeof where, "; request %zu differs: %s", i + 1, d);
    }
  }
  char g[MSG_MAX / 2], w[MSG_MAX / 2];
  describe_requests(got, g, sizeof g);
  describe_requests(want, w, sizeof w);
  char *wtext = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(want);
  json_decref(got);
  if (!ok) {
    char detail[MSG_MAX / 2];
    snprintf(detail, sizeof detail, "%s", wtext ? wtext : "?");
    free(wtext);
    return flow__runner_fail_at(L, r,
                                "expect_actions: case %s should have asked "
                                "for %s, but it asked for %s (expected %s)%s",
                                id, w, g, detail, where);
  }
  free(wtext);
  lua_settop(L, 1);
  return 1;
}
