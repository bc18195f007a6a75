/*
 * How the test API of `flow test` reports: an error is raised as
 * "FILE:LINE: message" with the line of the test code that called the C
 * function running now; a failed assertion is recorded too (the first one
 * counts) with the history of the case it was about; a refusal of the
 * engine is raised with the engine's message and error name, and error
 * names are read back into codes for expect_refused.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "runner/runner_int.h"

runner *
flow__runner_of(lua_State *L)
{
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* The line of the test code that called the C function running now. */
int
flow__runner_caller_line(lua_State *L)
{
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
      return ar.currentline;
  }
  return 0;
}

static const char *
file_name(runner *r)
{
  return r->path;
}

int
flow__runner_raise_at(lua_State *L, runner *r, const char *fmt, ...)
{
  char msg[MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lua_pushfstring(L, "%s:%d: %s", file_name(r), flow__runner_caller_line(L),
                  msg);
  return lua_error(L);
}

/* One line per event of the case's history, for failure reports. */
static json_t *
history_lines(runner *r, const char *case_id)
{
  char *text = NULL;
  if (r->e == NULL || case_id[0] == 0 ||
      flow_case_history(&text, r->e, case_id) != 0)
    return NULL;
  json_t *h = json_loads(text, 0, NULL);
  flow_free(text);
  json_t *lines = json_array();
  for (size_t i = 0; lines && i < json_array_size(h); i++) {
    json_t *row = json_array_get(h, i);
    json_t *actor = json_object_get(row, "actor");
    json_t *roles = json_object_get(actor, "roles");
    char rl[200] = "";
    size_t n = 0;
    for (size_t k = 0; k < json_array_size(roles) && n < sizeof rl; k++) {
      int w = snprintf(rl + n, sizeof rl - n, "%s%s", k ? "," : " [",
                       json_string_value(json_array_get(roles, k)));
      if (w < 0)
        break;
      n += (size_t)w;
    }
    if (n > 0 && n + 1 < sizeof rl)
      strcat(rl, "]");
    const char *from = json_string_value(json_object_get(row, "from"));
    const char *to = json_string_value(json_object_get(row, "to"));
    char line[512];
    snprintf(line, sizeof line, "%lld %s %s: %s -> %s (%s%s)",
             (long long)json_integer_value(json_object_get(row, "seq")),
             json_string_value(json_object_get(row, "at")),
             json_string_value(json_object_get(row, "event")),
             from ? from : "(opened)", to ? to : "?",
             json_string_value(json_object_get(actor, "id")), rl);
    json_array_append_new(lines, json_string(line));
  }
  json_decref(h);
  return lines;
}

void
flow__runner_capture_history(runner *r, const char *case_id)
{
  if (r->history != NULL || case_id == NULL || case_id[0] == 0)
    return;
  r->history = history_lines(r, case_id);
}

int
flow__runner_fail_at(lua_State *L, runner *r, const char *fmt, ...)
{
  char msg[MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int line = flow__runner_caller_line(L);
  if (!r->failed) {
    r->failed = 1;
    r->fail_line = line;
    snprintf(r->fail_msg, sizeof r->fail_msg, "%s", msg);
    flow__runner_capture_history(r, r->last_case);
  }
  lua_pushfstring(L, "%s:%d: %s", file_name(r), line, msg);
  return lua_error(L);
}

/* Raises the engine's refusal rc as a test error. */
int
flow__runner_engine_error(lua_State *L, runner *r, int rc, const char *what)
{
  char msg[MSG_MAX];
  snprintf(msg, sizeof msg, "%s", flow_errmsg(r->e)); /* before it goes */
  return flow__runner_refused(L, r, rc, what, msg);
}

int
flow__runner_refused(lua_State *L, runner *r, int rc, const char *what,
                     const char *msg)
{
  char m[MSG_MAX];
  snprintf(m, sizeof m, "%s", msg); /* msg may be the engine's buffer */
  r->last_code = rc;
  flow__runner_capture_history(r, r->last_case);
  return flow__runner_raise_at(L, r, "%s was refused: %s: %s", what,
                               flow_err_name(rc), m);
}

runner *
flow__runner_need_test(lua_State *L, const char *fn)
{
  runner *r = flow__runner_of(L);
  flow__sb_charge(L, 1000);
  if (!r->in_test || r->e == NULL)
    flow__runner_raise_at(L, r, "%s() works only inside a test: test(\"name\", "
                            "function() ... end)",
                            fn);
  return r;
}

/* "EPERM" or "FLOW_EPERM" -> the code, or 0. */
int
flow__runner_code_from_name(const char *s)
{
  static const int codes[] = {
#define FLOW__T_CODE(name, num, desc) FLOW_##name,
    FLOW_ERRNO_MAP(FLOW__T_CODE)
#undef FLOW__T_CODE
  };
  for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
    const char *n = flow_err_name(codes[i]);
    if (strcmp(n, s) == 0 || strcmp(n + 5, s) == 0)
      return codes[i];
  }
  return 0;
}

int
flow__runner_check_code_arg(lua_State *L, runner *r, int idx)
{
  const char *name = luaL_checkstring(L, idx);
  int code = flow__runner_code_from_name(name);
  if (code == 0)
    flow__runner_raise_at(L, r, "'%s' is not an error name (use one like "
                            "\"FLOW_EPERM\", \"FLOW_EDATA\", \"FLOW_EEVENT\")",
                            name);
  return code;
}
