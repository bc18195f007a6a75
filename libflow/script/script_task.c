/*
 * flow.task{ name, title, team, assignee, due, form, done, keep }: work
 * for a person, created with the transition.  Everything is checked at
 * the call, so a mistake is reported at its line: the fields, the due
 * duration and the form (read as the engine will read it when the task
 * is completed).  The engine computes the due time on its calendar when
 * it commits.
 */
#include "script/script_int.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

static size_t
utf8_chars(const char *s)
{
  size_t n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

static flow__sandbox *
task_sb(lua_State *L)
{
  return *(flow__sandbox **)lua_getextraspace(L);
}

/* roles = { "team_leader", ... }: who may claim and complete the task (a
   person with any one of them); NULL when absent.  Raises, after freeing
   form (the caller's, consumed only on a raise), on a mistake. */
static json_t *
task_roles(lua_State *L, const char *who, json_t *form)
{
  lua_pushliteral(L, "roles");
  int t = lua_rawget(L, 1);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  int idx = lua_gettop(L);
  const char *why = NULL;
  char most[64];
  lua_Integer n = t == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, idx) : 0;
  if (t != LUA_TTABLE || n == 0) {
    why = "roles must be a list of role names, like { \"team_leader\" }";
  } else if (n > FLOW__MAX_TASK_ROLES) {
    snprintf(most, sizeof most, "a task names at most %d roles",
             FLOW__MAX_TASK_ROLES);
    why = most;
  }
  json_t *arr = why ? NULL : json_array();
  for (lua_Integer i = 1; !why && i <= n; i++) {
    size_t len = 0;
    const char *r = lua_rawgeti(L, idx, i) == LUA_TSTRING
                        ? lua_tolstring(L, -1, &len)
                        : NULL;
    if (r == NULL || len == 0 || len > FLOW__MAX_NAME ||
        !flow__name_ok(r, len, 0))
      why = "each role is a name like \"team_leader\" (lower-case "
            "letters, digits and _)";
    else if (arr == NULL || json_array_append_new(arr, json_stringn(r, len)))
      why = "out of memory";
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (why) {
    json_decref(arr);
    json_decref(form);
    return luaL_error(L, "%s: %s", who, why), NULL;
  }
  return arr;
}

/* The text option key of the table at 1, or NULL when absent; at most
   max bytes of valid UTF-8, else raises with hint. */
static const char *
text_opt(lua_State *L, const char *key, size_t max, const char *hint)
{
  lua_pushstring(L, key);
  int t = lua_rawget(L, 1);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  size_t n = 0;
  const char *s = t == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  if (s == NULL || n == 0 || n > max || memchr(s, 0, n) ||
      !flow__utf8_valid(s, n))
    luaL_error(L, "flow.task: %s must be %s", key, hint);
  lua_pop(L, 1); /* the table keeps it alive */
  return s;
}

static const char *
name_opt(lua_State *L, const char *key, const char *example)
{
  const char *s = text_opt(L, key, FLOW__MAX_NAME,
                           "a name of lower-case letters, digits and _");
  if (s && !flow__name_ok(s, strlen(s), 0))
    luaL_error(L,
               "flow.task: %s must be a name of lower-case letters, digits "
               "and _, like \"%s\"",
               key, example);
  return s;
}

int
flow__sb_task(lua_State *L)
{
  flow__sandbox *sb = task_sb(L);
  if (lua_type(L, 1) != LUA_TTABLE)
    return luaL_error(L,
                      "flow.task: give the task as a table, like "
                      "flow.task{ name = \"inspect\", team = \"highways\" }");
  lua_settop(L, 1);
  flow__frozen_thaw_arg(L, 1);
  static const char *const known[] = { "name", "title", "team", "assignee",
                                       "roles", "due", "form", "done",
                                       "keep", NULL };
  flow__sb_known_keys(L, 1, known, "flow.task", "key",
                      "a task has name, title, team, assignee, roles, due, "
                      "form, done and keep");
  const char *name = name_opt(L, "name", "inspect");
  if (name == NULL)
    return luaL_error(L, "flow.task: the task needs a name, like name = "
                         "\"inspect\"");
  const char *title = text_opt(L, "title", FLOW__MAX_TASK_TITLE * 4,
                               "text of at most 200 characters");
  if (title && utf8_chars(title) > FLOW__MAX_TASK_TITLE)
    return luaL_error(L, "flow.task: title must be text of at most %d "
                         "characters",
                      FLOW__MAX_TASK_TITLE);
  const char *team = text_opt(L, "team", FLOW__MAX_TASK_WHO,
                              "text of at most 100 bytes, like \"highways\"");
  const char *assignee = text_opt(L, "assignee", FLOW__MAX_TASK_WHO,
                                  "the id of a person, at most 100 bytes");
  const char *done = name_opt(L, "done", "inspected");
  const char *due = text_opt(L, "due", 64,
                             "a duration like \"2 working days\" or a time "
                             "like \"2026-12-01T17:00:00Z\"");
  int64_t due_time;
  if (due && flow__time_parse(due, &due_time) != 0) {
    /* A duration from now, else a fixed time (the collection day's
       17:00, from flow.add or flow.local_time). */
    flow__duration d;
    flow__err perr;
    flow__err_clear(&perr);
    if (flow__duration_parse(due, &d, &perr) != 0)
      return luaL_error(L, "flow.task: due: %s (or give a time like "
                           "\"2026-12-01T17:00:00Z\")",
                        perr.msg);
  }
  lua_pushliteral(L, "keep");
  int kt = lua_rawget(L, 1);
  if (kt != LUA_TNIL && kt != LUA_TBOOLEAN)
    return luaL_error(L, "flow.task: keep must be true or false");
  int keep = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (sb->calls == NULL)
    return luaL_error(L,
                      "flow.task('%s'): tasks can only be created while a "
                      "case handles an event (in a handler or hook)",
                      name);
  if (sb->ntasks >= FLOW__MAX_TASKS_PER_RUN)
    return luaL_error(L,
                      "flow.task('%s'): an event may create at most %d tasks "
                      "(one task with a list in its form does the same)",
                      name, FLOW__MAX_TASKS_PER_RUN);
  char who[96];
  snprintf(who, sizeof who, "flow.task('%.60s')", name);
  lua_pushliteral(L, "form");
  int ft = lua_rawget(L, 1);
  if (ft != LUA_TNIL && ft != LUA_TTABLE)
    return luaL_error(L, "%s: form must be a table of fields like { outcome "
                         "= { type = \"string\", required = true } }",
                      who);
  size_t held = 0;
  json_t *form = flow__sb_object_arg(L, sb, 2, "form", who,
                                     "form must be a table of named fields",
                                     &held);
  /* The form is read now as the engine reads it at completion. */
  flow__service *check = NULL;
  flow__err ferr;
  flow__err_clear(&ferr);
  int frc = flow__form_read(sb->alloc, form, name, &check, &ferr);
  flow__service_free(sb->alloc, check);
  if (frc == FLOW_ENOMEM) {
    json_decref(form);
    sb->enomem = 1;
    return luaL_error(L, "out of memory");
  }
  if (frc != 0) {
    json_decref(form);
    return luaL_error(L, "%s: %s", who, ferr.msg);
  }
  /* Last of the checks that raise, so nothing it made is lost. */
  json_t *roles = task_roles(L, who, form);
  json_t *t = json_pack("{s:s, s:o, s:b}", "name", name, "form", form, "keep",
                        keep);
  int bad = t == NULL;
  if (!bad && roles)
    bad = json_object_set_new(t, "roles", roles) != 0;
  else
    json_decref(roles);
  const char *opt[][2] = { { "title", title },       { "team", team },
                           { "assignee", assignee }, { "due", due },
                           { "done", done } };
  for (size_t i = 0; !bad && i < sizeof opt / sizeof *opt; i++)
    if (opt[i][1])
      bad = json_object_set_new(t, opt[i][0], json_string(opt[i][1])) != 0;
  json_t *req = bad ? NULL : json_pack("{s:o}", "task", t);
  if (req == NULL || json_array_append_new(sb->calls, req) != 0) {
    if (req == NULL)
      json_decref(t);
    sb->enomem = 1;
    return luaL_error(L, "out of memory");
  }
  sb->ntasks++;
  held += 256 + (title ? strlen(title) : 0);
  sb->extra += held;
  if (sb->limit_on && sb->mem + sb->extra > sb->mem_limit)
    return flow__sb_kill_mem(L);
  return 0;
}

/* flow.cancel_task(name): the case's open and claimed tasks of that name
   are cancelled with the transition (before any task it creates), as
   when it leaves their state: so a handler can take a job from one crew
   and, with flow.task, give it to another without leaving its state. */
int
flow__sb_cancel_task(lua_State *L)
{
  flow__sandbox *sb = task_sb(L);
  size_t n = 0;
  const char *name = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &n)
                                                   : NULL;
  if (name == NULL || n == 0 || n > FLOW__MAX_NAME ||
      !flow__name_ok(name, n, 0))
    return luaL_error(L, "flow.cancel_task: give the task's name, like "
                         "flow.cancel_task(\"collect\")");
  if (sb->calls == NULL)
    return luaL_error(L, "flow.cancel_task('%s'): tasks can only be "
                         "cancelled while a case handles an event (in a "
                         "handler or hook)",
                      name);
  if (sb->ntasks >= FLOW__MAX_TASKS_PER_RUN)
    return luaL_error(L, "flow.cancel_task('%s'): an event may create or "
                         "cancel at most %d tasks",
                      name, FLOW__MAX_TASKS_PER_RUN);
  json_t *req = json_pack("{s:s}", "cancel_task", name);
  if (req == NULL || json_array_append_new(sb->calls, req) != 0) {
    sb->enomem = 1;
    return luaL_error(L, "out of memory");
  }
  sb->ntasks++;
  sb->extra += 96;
  if (sb->limit_on && sb->mem + sb->extra > sb->mem_limit)
    return flow__sb_kill_mem(L);
  return 0;
}
