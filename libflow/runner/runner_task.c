/*
 * Tasks and incidents in a test (`flow test`).  A test is the person who
 * does a case's tasks: it claims, releases, completes (with an outcome,
 * checked against the task's form) and cancels them, and checks what the
 * case asked people to do.
 *
 *   c:tasks()                          -- every task, oldest first
 *   c:tasks("collect"), c:tasks({ status = "open" })
 *   c:claim("collect", "kim")          -- a task by name, id or table
 *   c:complete("collect", { outcome = "collected" }, crew)
 *   c:expect_tasks({ { name = "collect", team = "crews" } })
 *   c:expect_complete_refused("collect", {}, crew, "FLOW_EDATA")
 *   c:incidents()
 *
 * A task named by its name is the newest of that name still to do (open
 * or claimed); when none is, the newest of that name, so the engine says
 * why it is finished.  A refusal ends the test as an error with the
 * engine's message, as c:signal's does, unless the test expects it
 * (c:expect_claim_refused, c:expect_complete_refused, or expect_refused
 * around any call).
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/runner_int.h"

/* ---- reading tasks ------------------------------------------------------- */

/* The tasks of case id, oldest first (new reference); raises when the
   engine refuses. */
static json_t *
case_tasks(lua_State *L, runner *r, const char *id)
{
  flow_task_query q = { 0 };
  q.case_id = id;
  char *out = NULL;
  int rc = flow_tasks_list(&out, r->e, &q);
  if (rc != 0)
    flow__runner_engine_error(L, r, rc, "tasks");
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  if (j == NULL)
    luaL_error(L, "out of memory");
  return j;
}

static const char *
jstr(json_t *o, const char *key)
{
  return json_string_value(json_object_get(o, key));
}

/* 1 for a task still to do: open or claimed. */
static int
live(json_t *t)
{
  const char *s = jstr(t, "status");
  return s && (strcmp(s, "open") == 0 || strcmp(s, "claimed") == 0);
}

/* "collect, call (done)": the names of tasks, for messages. */
static void
task_names(json_t *list, char *buf, size_t len)
{
  flow__join j;
  flow__join_init(&j, buf, len);
  for (size_t i = 0; i < json_array_size(list); i++) {
    json_t *t = json_array_get(list, i);
    char one[128];
    snprintf(one, sizeof one, "%s (%s)", jstr(t, "name"), jstr(t, "status"));
    flow__join_add(&j, ", ", one);
  }
  if (j.count == 0)
    flow__join_text(&j, "none");
}

/*
 * The task the value at idx names among the tasks of case id: a table
 * holding its id (what c:tasks() returns), an id (a number, or text of
 * digits), or a name.  0 with the id in tid, or FLOW_ENOTFOUND with the
 * reason in msg; raises for a value that names no task at all.
 */
static int
find_task(lua_State *L, runner *r, const char *id, int idx, char *tid,
          size_t tlen, char *msg, size_t mlen)
{
  const char *want = NULL;
  char num[24];
  int by_id = 0;
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, "id");
    want = lua_tostring(L, -1); /* kept: the table holds it */
    lua_pop(L, 1);
    by_id = 1;
  } else if (lua_isinteger(L, idx)) {
    snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
    want = num;
    by_id = 1;
  } else if (lua_type(L, idx) == LUA_TSTRING) {
    want = lua_tostring(L, idx);
    by_id = want[0] != 0 && strspn(want, "0123456789") == strlen(want);
  }
  if (want == NULL || want[0] == 0)
    return flow__runner_raise_at(L, r,
                                 "name the task by its name (\"collect\"), "
                                 "its id, or a task c:tasks() returned");
  json_t *all = case_tasks(L, r, id);
  json_t *found = NULL;
  for (size_t i = json_array_size(all); i-- > 0;) {
    json_t *t = json_array_get(all, i);
    const char *v = jstr(t, by_id ? "id" : "name");
    if (v == NULL || strcmp(v, want) != 0)
      continue;
    if (by_id || live(t)) {
      found = t;
      break;
    }
    if (found == NULL)
      found = t; /* the newest finished one, if none is live */
  }
  int rc = 0;
  if (found) {
    snprintf(tid, tlen, "%s", jstr(found, "id"));
  } else {
    char names[MSG_MAX / 2];
    task_names(all, names, sizeof names);
    snprintf(msg, mlen, "case %s has no task %s%s%s (its tasks: %s)", id,
             by_id ? "" : "'", want, by_id ? "" : "'", names);
    rc = FLOW_ENOTFOUND;
  }
  json_decref(all);
  return rc;
}

/* ---- what a person does -------------------------------------------------- */

enum { OP_CLAIM, OP_RELEASE, OP_COMPLETE, OP_CANCEL };

static const char *const op_verb[] = { "claim", "release", "complete",
                                       "cancel" };
static const char *const op_doing[] = { "claiming", "releasing",
                                        "completing", "cancelling" };

/*
 * Does op to the task at index 2 of case id, as the actor at index
 * actor_idx (for complete, the outcome is at index 3).  Returns 0 or the
 * refusal, with its message in msg; label gets the task as messages name
 * it: 'collect' (as the test named it), or its id for a task table.
 */
static int
task_op(lua_State *L, runner *r, const char *id, int op, int actor_idx,
        char *label, size_t llen, char *msg, size_t mlen)
{
  const char *roles[FLOW__RUNNER_MAX_ROLES];
  flow_actor actor;
  flow__runner_read_actor(L, r, actor_idx, &actor, roles); /* may move on */
  const char *named = lua_istable(L, 2) ? NULL : lua_tostring(L, 2);
  snprintf(label, llen, "'%.60s'", named ? named : "?");
  char tid[24];
  int rc = find_task(L, r, id, 2, tid, sizeof tid, msg, mlen);
  if (rc != 0)
    return rc;
  if (named == NULL)
    snprintf(label, llen, "%s", tid);
  char *outcome = NULL;
  if (op == OP_COMPLETE)
    outcome = flow__runner_object_text(L, r, 3, "outcome"); /* may raise */
  switch (op) {
  case OP_CLAIM:
    rc = flow_task_claim(r->e, tid, &actor);
    break;
  case OP_RELEASE:
    rc = flow_task_release(r->e, tid, &actor);
    break;
  case OP_COMPLETE:
    rc = flow_task_complete(NULL, r->e, tid, outcome, &actor);
    break;
  default:
    rc = flow_task_cancel(r->e, tid, &actor);
  }
  free(outcome);
  if (rc != 0)
    snprintf(msg, mlen, "%s", flow_errmsg(r->e));
  return rc;
}

static int
c_op(lua_State *L, int op)
{
  runner *r = flow__runner_need_test(L, op_verb[op]);
  const char *id = flow__runner_case_id(L, r);
  if (lua_isnone(L, 2))
    return flow__runner_raise_at(L, r,
                                 "%s needs the task: c:%s(\"collect\"%s)",
                                 op_verb[op], op_verb[op],
                                 op == OP_COMPLETE ? ", { outcome = ... }, "
                                                     "\"kim\""
                                                   : ", \"kim\"");
  char label[80], msg[MSG_MAX];
  int rc = task_op(L, r, id, op, op == OP_COMPLETE ? 4 : 3, label,
                   sizeof label, msg, sizeof msg);
  if (rc != 0) {
    char what[128];
    snprintf(what, sizeof what, "%s %s", op_verb[op], label);
    return flow__runner_refused(L, r, rc, what, msg);
  }
  lua_settop(L, 1);
  flow__runner_answer(L, r); /* what the done event asked of mocks */
  return 1;
}

int
flow__runner_c_claim(lua_State *L)
{
  return c_op(L, OP_CLAIM);
}

int
flow__runner_c_release(lua_State *L)
{
  return c_op(L, OP_RELEASE);
}

int
flow__runner_c_complete(lua_State *L)
{
  return c_op(L, OP_COMPLETE);
}

int
flow__runner_c_cancel(lua_State *L)
{
  return c_op(L, OP_CANCEL);
}

/* c:expect_claim_refused(task, actor, code) and
   c:expect_complete_refused(task, outcome, actor, code): the refusal's
   message is returned, for checks of what it says. */
static int
c_expect_op_refused(lua_State *L, int op)
{
  const char *fn = op == OP_CLAIM ? "expect_claim_refused"
                                  : "expect_complete_refused";
  runner *r = flow__runner_need_test(L, fn);
  const char *id = flow__runner_case_id(L, r);
  int top = lua_gettop(L);
  if (top < 3)
    return flow__runner_raise_at(L, r,
                                 "%s needs a task and an error name: c:%s("
                                 "\"collect\", %s\"FLOW_EDATA\")",
                                 fn, fn,
                                 op == OP_COMPLETE ? "outcome, actor, "
                                                   : "actor, ");
  int want = flow__runner_check_code_arg(L, r, top);
  lua_settop(L, top - 1);
  lua_settop(L, op == OP_COMPLETE ? 4 : 3);
  char label[80], msg[MSG_MAX];
  int rc = task_op(L, r, id, op, op == OP_COMPLETE ? 4 : 3, label,
                   sizeof label, msg, sizeof msg);
  if (rc == 0) {
    flow__runner_answer(L, r);
    return flow__runner_fail_at(L, r,
                                "%s task %s of case %s should have been "
                                "refused with %s, but it was accepted",
                                op_doing[op], label, id, flow_err_name(want));
  }
  if (rc != want)
    return flow__runner_fail_at(L, r,
                                "%s task %s of case %s should have been "
                                "refused with %s, but it was refused with "
                                "%s: %s",
                                op_doing[op], label, id, flow_err_name(want),
                                flow_err_name(rc), msg);
  lua_pushstring(L, msg);
  return 1;
}

int
flow__runner_c_expect_claim_refused(lua_State *L)
{
  return c_expect_op_refused(L, OP_CLAIM);
}

int
flow__runner_c_expect_complete_refused(lua_State *L)
{
  return c_expect_op_refused(L, OP_COMPLETE);
}

/* ---- matching tasks ------------------------------------------------------ */

static const char *const task_keys[] = {
  "id",    "name",       "title",   "team",        "assignee", "status",
  "due",   "due_at",     "overdue", "claimed_by",  "outcome",  "form",
  "done",  "state",      "case",    "finished_by", "created_at",
  "finished_at", NULL,
};

/* Raises unless every key of the table at idx is one a task has, and a
   status is a task's status. */
static void
check_task_table(lua_State *L, runner *r, int idx, const char *fn)
{
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    int ok = 0;
    for (int i = 0; !ok && task_keys[i]; i++)
      ok = strcmp(k, task_keys[i]) == 0;
    if (!ok)
      flow__runner_raise_at(L, r,
                            "%s: a task has no '%.60s' (it has name, title, "
                            "team, assignee, status, due, overdue, "
                            "claimed_by, outcome...)",
                            fn, lua_type(L, -1) == LUA_TSTRING ? k : "?");
  }
  if (lua_getfield(L, idx, "status") != LUA_TNIL) {
    const char *s = lua_tostring(L, -1);
    static const char *const statuses[] = { "open", "claimed", "done",
                                            "cancelled", NULL };
    int ok = 0;
    for (int i = 0; s && !ok && statuses[i]; i++)
      ok = strcmp(s, statuses[i]) == 0;
    if (!ok)
      flow__runner_raise_at(L, r,
                            "%s: '%.60s' is not a task status (open, "
                            "claimed, done or cancelled)",
                            fn, s ? s : luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "due");
  lua_getfield(L, idx, "due_at");
  for (int i = -2; i < 0; i++) {
    int64_t t;
    if (!lua_isnil(L, i) && (lua_type(L, i) != LUA_TSTRING ||
                             flow_time_parse(&t, lua_tostring(L, i)) != 0))
      flow__runner_raise_at(L, r,
                            "%s: due is a time, like "
                            "\"2026-02-05T09:00:00Z\"",
                            fn);
  }
  lua_pop(L, 2);
}

/* 1 when task matches want (a task's fields, as JSON): due and due_at as
   times, outcome and form as a subset, the others equal. */
static int
task_matches(json_t *want, json_t *task)
{
  const char *k;
  json_t *v;
  if (!json_is_object(want))
    return 1; /* {} read as [] */
  json_object_foreach(want, k, v)
  {
    if (strcmp(k, "due") == 0 || strcmp(k, "due_at") == 0) {
      int64_t a, b;
      const char *got = jstr(task, "due_at");
      if (got == NULL || flow_time_parse(&a, json_string_value(v)) != 0 ||
          flow_time_parse(&b, got) != 0 || a != b)
        return 0;
    } else if (!flow__runner_json_match(v, json_object_get(task, k), 1)) {
      return 0;
    }
  }
  return 1;
}

/* "collect (open, team crews, due 2026-02-05T09:00:00Z)" */
static void
describe_task(json_t *t, char *buf, size_t len)
{
  flow__join j;
  flow__join_init(&j, buf, len);
  flow__join_text(&j, jstr(t, "name"));
  flow__join_text(&j, " (");
  flow__join_text(&j, jstr(t, "status"));
  static const char *const shown[] = { "team", "assignee", "claimed_by",
                                       "due_at", NULL };
  static const char *const label[] = { "team", "assignee", "claimed by",
                                       "due" };
  for (int i = 0; shown[i]; i++) {
    const char *v = jstr(t, shown[i]);
    if (v == NULL)
      continue;
    flow__join_text(&j, ", ");
    flow__join_text(&j, label[i]);
    flow__join_text(&j, " ");
    flow__join_text(&j, v);
  }
  flow__join_text(&j, ")");
}

/* What an expected task says: "collect (team crews)", or its JSON. */
static void
describe_want(json_t *w, char *buf, size_t len)
{
  if (!json_is_object(w)) {
    snprintf(buf, len, "any task");
    return;
  }
  flow__join j;
  flow__join_init(&j, buf, len);
  const char *name = jstr(w, "name");
  flow__join_text(&j, name ? name : "a task");
  const char *k;
  json_t *v;
  int n = 0;
  json_object_foreach(w, k, v)
  {
    if (strcmp(k, "name") == 0)
      continue;
    char *s = json_is_string(v) ? NULL
                                : json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS |
                                                    JSON_ENCODE_ANY);
    flow__join_text(&j, n++ ? ", " : " (");
    flow__join_text(&j, strcmp(k, "due_at") == 0 ? "due" : k);
    flow__join_text(&j, " ");
    flow__join_text(&j, s ? s : json_string_value(v));
    free(s);
  }
  if (n)
    flow__join_text(&j, ")");
}

/* The list at idx (tables or names) as JSON objects; raises when it is
   not one. */
static json_t *
want_list(lua_State *L, runner *r, int idx, const char *fn)
{
  if (!lua_istable(L, idx))
    flow__runner_raise_at(L, r,
                          "%s takes a list of tasks like { { name = "
                          "\"collect\", team = \"crews\" } }",
                          fn);
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  /* Checked first, as checks raise: nothing is held yet. */
  for (lua_Integer i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, idx, i);
    if (t == LUA_TTABLE)
      check_task_table(L, r, -1, fn);
    else if (t != LUA_TSTRING)
      flow__runner_raise_at(L, r,
                            "%s: each task is a name or a table like { name "
                            "= \"collect\", team = \"crews\" }",
                            fn);
    lua_pop(L, 1);
  }
  json_t *list = json_array();
  char msg[256] = "out of memory";
  int bad = list == NULL;
  for (lua_Integer i = 1; !bad && i <= n; i++) {
    json_t *one = NULL;
    if (lua_rawgeti(L, idx, i) == LUA_TSTRING)
      one = json_pack("{s:s}", "name", lua_tostring(L, -1));
    else if (flow__json_from_lua(L, -1, "task", &r->alloc, &one, msg,
                                 sizeof msg) != 0)
      bad = 1;
    lua_pop(L, 1);
    if (one == NULL || json_array_append_new(list, one) != 0)
      bad = 1;
  }
  if (bad) {
    json_decref(list);
    flow__runner_raise_at(L, r, "%s: %s", fn, msg);
  }
  return list;
}

int
flow__runner_c_tasks(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "tasks");
  const char *id = flow__runner_case_id(L, r);
  json_t *filter = NULL;
  if (lua_type(L, 2) == LUA_TSTRING) {
    filter = json_pack("{s:s}", "name", lua_tostring(L, 2));
  } else if (lua_istable(L, 2)) {
    check_task_table(L, r, 2, "tasks");
    char msg[256];
    if (flow__json_from_lua(L, 2, "filter", &r->alloc, &filter, msg,
                            sizeof msg) != 0)
      return flow__runner_raise_at(L, r, "tasks: %s", msg);
  } else if (!lua_isnoneornil(L, 2)) {
    return flow__runner_raise_at(L, r,
                                 "tasks takes a task's name or a filter like "
                                 "{ status = \"open\" }, not a %s",
                                 luaL_typename(L, 2));
  }
  flow_task_query q = { 0 };
  q.case_id = id;
  char *out = NULL;
  int rc = flow_tasks_list(&out, r->e, &q);
  if (rc != 0) {
    json_decref(filter);
    return flow__runner_engine_error(L, r, rc, "tasks");
  }
  json_t *all = json_loads(out, 0, NULL);
  flow_free(out);
  json_t *got = json_array();
  for (size_t i = 0; all && got && i < json_array_size(all); i++) {
    json_t *t = json_array_get(all, i);
    if (filter == NULL || task_matches(filter, t))
      json_array_append(got, t);
  }
  json_decref(filter);
  json_decref(all);
  if (got == NULL)
    return luaL_error(L, "out of memory");
  flow__json_push(L, got);
  json_decref(got);
  return 1;
}

int
flow__runner_c_expect_tasks(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "expect_tasks");
  const char *id = flow__runner_case_id(L, r);
  json_t *want = want_list(L, r, 2, "expect_tasks");
  flow_task_query q = { 0 };
  q.case_id = id;
  char *out = NULL;
  int rc = flow_tasks_list(&out, r->e, &q);
  if (rc != 0) {
    json_decref(want);
    return flow__runner_engine_error(L, r, rc, "tasks");
  }
  json_t *all = json_loads(out, 0, NULL), *got = json_array();
  flow_free(out);
  for (size_t i = 0; got && i < json_array_size(all); i++)
    if (live(json_array_get(all, i)))
      json_array_append(got, json_array_get(all, i));
  json_decref(all);
  if (got == NULL) {
    json_decref(want);
    return luaL_error(L, "out of memory");
  }
  int ok = json_array_size(want) == json_array_size(got);
  for (size_t i = 0; ok && i < json_array_size(want); i++)
    ok = task_matches(json_array_get(want, i), json_array_get(got, i));
  char w[MSG_MAX / 2], g[MSG_MAX / 2];
  flow__join jw, jg;
  flow__join_init(&jw, w, sizeof w);
  flow__join_init(&jg, g, sizeof g);
  for (size_t i = 0; i < json_array_size(want); i++) {
    char one[256];
    describe_want(json_array_get(want, i), one, sizeof one);
    flow__join_add(&jw, "; ", one);
  }
  for (size_t i = 0; i < json_array_size(got); i++) {
    char one[256];
    describe_task(json_array_get(got, i), one, sizeof one);
    flow__join_add(&jg, "; ", one);
  }
  json_decref(want);
  json_decref(got);
  if (!ok)
    return flow__runner_fail_at(L, r,
                                "expect_tasks: case %s should have the open "
                                "tasks %s, but it has %s",
                                id, jw.count ? w : "(none)",
                                jg.count ? g : "none");
  lua_settop(L, 1);
  return 1;
}

/* ---- incidents ----------------------------------------------------------- */

int
flow__runner_c_incidents(lua_State *L)
{
  runner *r = flow__runner_need_test(L, "incidents");
  const char *id = flow__runner_case_id(L, r);
  const char *status = luaL_optstring(L, 2, NULL);
  char *out = NULL;
  int rc = flow_incidents_list(&out, r->e, id, status);
  if (rc != 0)
    return flow__runner_engine_error(L, r, rc, "incidents");
  json_t *j = json_loads(out, 0, NULL);
  flow_free(out);
  if (j == NULL)
    return luaL_error(L, "out of memory");
  flow__json_push(L, j);
  json_decref(j);
  return 1;
}

/* c:retry(incident, opts) and c:dismiss(incident, opts): what the staff
   member who looks at an incident does once the cause is fixed (or the
   event is not wanted).  incident is its id, or a table c:incidents()
   returned; without one, the case's only open incident. */
static int
c_incident_op(lua_State *L, int retry)
{
  const char *fn = retry ? "retry" : "dismiss";
  runner *r = flow__runner_need_test(L, fn);
  const char *id = flow__runner_case_id(L, r);
  char iid[24] = "";
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "id");
    if (lua_isstring(L, -1))
      snprintf(iid, sizeof iid, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
  } else if (lua_isstring(L, 2)) {
    snprintf(iid, sizeof iid, "%s", lua_tostring(L, 2));
  } else if (lua_isnoneornil(L, 2)) {
    char *out = NULL;
    int rc = flow_incidents_list(&out, r->e, id, "open");
    if (rc != 0)
      return flow__runner_engine_error(L, r, rc, "incidents");
    json_t *j = json_loads(out, 0, NULL);
    flow_free(out);
    size_t n = json_array_size(j);
    if (n == 1)
      snprintf(iid, sizeof iid, "%s",
               json_string_value(json_object_get(json_array_get(j, 0), "id")));
    json_decref(j);
    if (n != 1)
      return flow__runner_raise_at(L, r,
                                   "c:%s(): case %s has %zu open incidents; "
                                   "say which, like c:%s(c:incidents(\"open\")"
                                   "[1])",
                                   fn, id, n, fn);
  }
  if (iid[0] == 0)
    return flow__runner_raise_at(L, r,
                                 "c:%s takes an incident: its id, or a table "
                                 "c:incidents() returned",
                                 fn);
  const char *roles[FLOW__RUNNER_MAX_ROLES];
  flow_actor actor;
  flow__runner_read_actor(L, r, 3, &actor, roles);
  char *out = NULL;
  int rc = retry ? flow_incident_retry(&out, r->e, iid, &actor)
                 : flow_incident_dismiss(r->e, iid, &actor);
  flow_free(out);
  if (rc != 0) {
    char what[64], msg[MSG_MAX];
    snprintf(what, sizeof what, "%s incident %s", fn, iid);
    snprintf(msg, sizeof msg, "%s", flow_errmsg(r->e));
    return flow__runner_refused(L, r, rc, what, msg);
  }
  lua_settop(L, 1);
  flow__runner_answer(L, r); /* what the retried event asked of mocks */
  return 1;
}

int
flow__runner_c_retry(lua_State *L)
{
  return c_incident_op(L, 1);
}

int
flow__runner_c_dismiss(lua_State *L)
{
  return c_incident_op(L, 0);
}
