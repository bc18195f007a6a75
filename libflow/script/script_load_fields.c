/*
 * The service loader, part 2: fields = { ... } -- each field's type,
 * flags, texts, pattern, limits and values, checked and copied into the
 * service (script_load.h has the plan of the loader).
 */
#include "script/script_load.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fields ------------------------------------------------------------ */

static const char *const field_keys[] = {
  "type", "required", "pattern", "min", "max", "values",
  "pii",  "index",    "title",   "description", NULL,
};

/*
 * Checks a Lua pattern the way string.find would read it all (running
 * find on "" stops at the first item that fails, so it misses most
 * mistakes).  Returns NULL or a message in Lua's own words.
 */
static const char *
pattern_problem(const char *p)
{
  int open = 0, closed = 0, level = 0;
  int stack[32];
  for (; *p; p++) {
    switch (*p) {
    case '%':
      p++;
      if (*p == 0)
        return "malformed pattern (ends with '%')";
      if (*p == 'b') {
        if (p[1] == 0 || p[2] == 0)
          return "malformed pattern (missing arguments to '%b')";
        p += 2;
      } else if (*p == 'f') {
        if (p[1] != '[')
          return "missing '[' after '%f' in pattern";
      } else if (*p >= '0' && *p <= '9') {
        int n = *p - '0';
        if (n < 1 || n > closed + open)
          return "invalid capture index in pattern";
        for (int i = 0; i < level; i++)
          if (stack[i] == n)
            return "invalid capture index in pattern";
      }
      break;
    case '[':
      p++;
      if (*p == '^')
        p++;
      do { /* the first ']' is a literal */
        if (*p == 0)
          return "malformed pattern (missing ']')";
        if (*p == '%') {
          p++;
          if (*p == 0)
            return "malformed pattern (missing ']')";
        }
        p++;
      } while (*p != ']');
      break;
    case '(':
      if (open + closed >= 32)
        return "too many captures";
      open++;
      stack[level++] = open + closed;
      if (p[1] == ')') { /* a position capture */
        p++;
        level--;
        open--;
        closed++;
      }
      break;
    case ')':
      if (level == 0)
        return "invalid pattern capture";
      level--;
      open--;
      closed++;
      break;
    default:
      break;
    }
  }
  if (level > 0)
    return "unfinished capture";
  return NULL;
}

static int
field_cmp(const void *pa, const void *pb)
{
  const flow__field *a = pa, *b = pb;
  return strcmp(a->name, b->name);
}

static void
number_limit(loader *ld, flow__field *f, const char *key, int *has,
             double *v, int line)
{
  lua_State *L = ld->L;
  int ty = flow__ld_rawfield(L, -1, key);
  if (ty == LUA_TNUMBER) {
    *has = 1;
    *v = (double)lua_tonumber(L, -1);
  } else if (ty != LUA_TNIL) {
    flow__ld_problem(ld, line, "%s of field '%s' must be a number, not a %s", key,
                f->name, flow__ld_type_at(L, -1));
  }
  lua_pop(L, 1);
}

static void
read_field(loader *ld, flow__field *f, int spec)
{
  lua_State *L = ld->L;
  const char *fn = f->name;
  char owner[160];
  snprintf(owner, sizeof owner, "field '%s'", fn);
  const char *prefix[] = { "fields", fn };
  f->line = LOCATE(ld, "fields", fn);
  f->type = -1;

  lua_pushnil(L);
  while (lua_next(L, spec)) {
    flow__ld_tick(ld);
    flow__ld_check_key(ld, field_keys, flow__ld_key_line(ld, prefix, 2), owner);
    lua_pop(L, 1);
  }

  lua_pushvalue(L, spec);
  int line = LOCATE(ld, "fields", fn, "type");
  int ty = flow__ld_rawfield(L, -1, "type");
  char names[160];
  flow__join jn;
  flow__join_init(&jn, names, sizeof names);
  for (int i = 0; flow__ftype_name(i); i++)
    flow__join_add(&jn, ", ", flow__ftype_name(i));
  if (ty == LUA_TNIL) {
    flow__ld_problem(ld, f->line, "field '%s' needs a type (use one of %s)", fn,
                names);
  } else if (ty != LUA_TSTRING) {
    flow__ld_problem(ld, line, "type of field '%s' must be a string (one of %s), "
                "not a %s", fn, names, flow__ld_type_at(L, -1));
  } else if ((f->type = flow__ftype_from_name(lua_tostring(L, -1))) < 0) {
    flow__ld_problem(ld, line, "field '%s' has unknown type '%.40s' (use one of %s)",
                fn, lua_tostring(L, -1), names);
  }
  lua_pop(L, 1);

  static const char *const flags[] = { "required", "pii", "index" };
  int *slots[] = { &f->required, &f->pii, &f->index };
  for (size_t i = 0; i < 3; i++) {
    ty = flow__ld_rawfield(L, -1, flags[i]);
    if (ty == LUA_TBOOLEAN)
      *slots[i] = lua_toboolean(L, -1);
    else if (ty != LUA_TNIL)
      flow__ld_problem(ld, LOCATE(ld, "fields", fn, flags[i]),
                  "%s of field '%s' must be true or false, not a %s",
                  flags[i], fn, flow__ld_type_at(L, -1));
    lua_pop(L, 1);
  }

  static const char *const texts[] = { "title", "description" };
  for (size_t i = 0; i < 2; i++) {
    ty = flow__ld_rawfield(L, -1, texts[i]);
    if (ty == LUA_TSTRING && !flow__ld_utf8_at(L, -1))
      flow__ld_problem(ld, LOCATE(ld, "fields", fn, texts[i]),
                  "%s of field '%s' is not valid UTF-8 text", texts[i], fn);
    else if (ty == LUA_TSTRING && i == 0)
      f->title = flow__ld_strdup(ld, lua_tostring(L, -1));
    else if (ty != LUA_TNIL && ty != LUA_TSTRING)
      flow__ld_problem(ld, LOCATE(ld, "fields", fn, texts[i]),
                  "%s of field '%s' must be a string, not a %s", texts[i],
                  fn, flow__ld_type_at(L, -1));
    lua_pop(L, 1);
  }

  line = LOCATE(ld, "fields", fn, "pattern");
  ty = flow__ld_rawfield(L, -1, "pattern");
  if (ty == LUA_TSTRING && !flow__ld_utf8_at(L, -1)) {
    flow__ld_problem(ld, line, "the pattern of field '%s' is not valid UTF-8 "
                "text", fn);
  } else if (ty == LUA_TSTRING) {
    const char *pat = lua_tostring(L, -1);
    const char *why = pattern_problem(pat);
    if (why == NULL) {
      /* The matcher has the last word: it compiles the whole pattern. */
      flow__sb_push_find(L);
      lua_pushliteral(L, "");
      lua_pushvalue(L, -3);
      int st = lua_pcall(L, 2, 0, 0);
      if (st == LUA_ERRMEM)
        lua_error(L); /* not the pattern's fault */
      if (st != LUA_OK) {
        if (lua_type(L, -1) == LUA_TSTRING)
          flow__ld_problem(ld, line, "field '%s' has an invalid pattern: %s", fn,
                      lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    } else {
      flow__ld_problem(ld, line, "field '%s' has an invalid pattern: %s", fn, why);
    }
    if (f->type >= 0 && f->type != FLOW__F_STRING)
      flow__ld_problem(ld, line, "field '%s' has a pattern but is of type %s "
                  "(patterns are for strings)", fn, flow__ftype_name(f->type));
    f->pattern = flow__ld_strdup(ld, pat);
  } else if (ty != LUA_TNIL) {
    flow__ld_problem(ld, line, "pattern of field '%s' must be a string (a Lua "
                "pattern like \"^%%d+$\"), not a %s", fn, flow__ld_type_at(L, -1));
  }
  lua_pop(L, 1);

  number_limit(ld, f, "min", &f->has_min, &f->min,
               LOCATE(ld, "fields", fn, "min"));
  number_limit(ld, f, "max", &f->has_max, &f->max,
               LOCATE(ld, "fields", fn, "max"));
  if ((f->has_min || f->has_max) && f->type >= 0 &&
      f->type != FLOW__F_STRING && f->type != FLOW__F_INTEGER &&
      f->type != FLOW__F_NUMBER && f->type != FLOW__F_LIST)
    flow__ld_problem(ld, f->line, "field '%s' of type %s cannot have min or max "
                "(they are for string, integer, number and list fields)", fn,
                flow__ftype_name(f->type));
  if (f->has_min && f->has_max && f->min > f->max)
    flow__ld_problem(ld, LOCATE(ld, "fields", fn, "min"),
                "field '%s' has min %g greater than max %g", fn, f->min,
                f->max);

  line = LOCATE(ld, "fields", fn, "values");
  ty = flow__ld_rawfield(L, -1, "values");
  if (ty == LUA_TNIL) {
    if (f->type == FLOW__F_ENUM)
      flow__ld_problem(ld, f->line, "field '%s' is an enum and needs its values: "
                  "add `values = { \"a\", \"b\" }`", fn);
  } else if (f->type >= 0 && f->type != FLOW__F_ENUM) {
    flow__ld_problem(ld, line, "field '%s' has values but is of type %s (values "
                "are for type = \"enum\")", fn, flow__ftype_name(f->type));
  } else if (ty != LUA_TTABLE) {
    flow__ld_problem(ld, line, "values of field '%s' must be a list of strings, "
                "not a %s", fn, flow__ld_type_at(L, -1));
  } else {
    long nv = flow__ld_string_list(ld, lua_gettop(L), &f->values, &f->nvalues);
    if (nv <= 0) {
      flow__ld_problem(ld, line, "values of field '%s' must be a non-empty list "
                  "of strings like { \"a\", \"b\" }", fn);
    } else {
      /* Sorted copies put duplicates side by side (a long list must not
         cost a quadratic check). */
      const char **sorted = flow__ld_scratch(ld, f->nvalues * sizeof *sorted);
      for (size_t i = 0; i < f->nvalues; i++)
        sorted[i] = f->values[i];
      qsort(sorted, f->nvalues, sizeof *sorted, flow__ld_str_cmp);
      for (size_t i = 1; i < f->nvalues; i++)
        if (strcmp(sorted[i], sorted[i - 1]) == 0 &&
            (i < 2 || strcmp(sorted[i], sorted[i - 2]) != 0))
          flow__ld_problem(ld, line, "values of field '%s' list '%.60s' more "
                      "than once", fn, sorted[i]);
    }
  }
  lua_pop(L, 2); /* values, spec copy */
}

void
flow__ld_read_fields(loader *ld, int fields)
{
  lua_State *L = ld->L;
  flow__service *svc = ld->svc;
  int line = LOCATE(ld, "fields");
  if (lua_type(L, fields) != LUA_TTABLE) {
    flow__ld_problem(ld, line, "fields must be a table of field names to specs "
                "like { uprn = { type = \"string\" } }, not a %s",
                flow__ld_type_at(L, fields));
    return;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, fields)) {
    flow__ld_tick(ld);
    n++;
    lua_pop(L, 1);
  }
  if (n == 0)
    return;
  if (n > FLOW__MAX_FIELDS) {
    flow__ld_problem(ld, line, "fields has %zu fields; a service may have at most "
                "%d (group related values in an object field)", n,
                FLOW__MAX_FIELDS);
    return;
  }
  if ((svc->fields = flow__calloc(ld->a, n, sizeof *svc->fields)) == NULL)
    flow__ld_oom(ld);
  const char *prefix[] = { "fields" };
  lua_pushnil(L);
  while (lua_next(L, fields)) {
    flow__ld_tick(ld);
    int kline = flow__ld_key_line(ld, prefix, 1);
    char kt[96];
    if (lua_type(L, -2) != LUA_TSTRING) {
      flow__ld_problem(ld, line, "fields has a key %s; fields must be named, "
                  "like uprn = { type = \"string\" }",
                  flow__ld_key_text(L, -2, kt, sizeof kt));
    } else {
      size_t klen;
      const char *name = lua_tolstring(L, -2, &klen);
      if (!flow__name_ok(name, klen, 1) || klen > FLOW__MAX_NAME) {
        flow__ld_problem(ld, kline, "field name '%.60s' must start with a "
                    "lower-case letter or _ and use only a-z, 0-9 and _ "
                    "(at most 64)", name);
      } else if (lua_type(L, -1) != LUA_TTABLE) {
        flow__ld_problem(ld, kline, "field '%s' must be a table like { type = "
                    "\"string\" }, not a %s", name, flow__ld_type_at(L, -1));
      } else {
        flow__field *f = &svc->fields[svc->nfields++];
        f->name = flow__ld_strdup(ld, name);
        read_field(ld, f, lua_gettop(L));
      }
    }
    lua_pop(L, 1);
  }
  if (svc->nfields > 1)
    qsort(svc->fields, svc->nfields, sizeof *svc->fields, field_cmp);
}

/* ---- rules across fields ------------------------------------------------ */

/* " (did you mean 'street'?)" when name is near a field's name, else "". */
static void
field_hint(loader *ld, const char *name, char *buf, size_t len)
{
  flow__service *svc = ld->svc;
  const char **words = flow__ld_scratch(ld, (svc->nfields + 1) * sizeof *words);
  for (size_t i = 0; i < svc->nfields; i++)
    words[i] = svc->fields[i].name;
  words[svc->nfields] = NULL;
  const char *best = flow__closest_word(name, words);
  if (best)
    snprintf(buf, len, " (did you mean '%s'?)", best);
  else
    buf[0] = 0;
}

/* One group of one_of at idx: two or more fields, none required. */
static void
read_group(loader *ld, int idx, int line, flow__one_of *g)
{
  lua_State *L = ld->L;
  g->line = line;
  if (lua_type(L, idx) != LUA_TTABLE ||
      flow__ld_string_list(ld, idx, &g->fields, &g->nfields) < 2) {
    flow__ld_problem(ld, line, "one_of must list two or more field names, "
                     "like one_of = { \"uprn\", \"street\" }, or be a list of "
                     "such lists");
    return;
  }
  for (size_t i = 0; i < g->nfields; i++) {
    const char *name = g->fields[i];
    const flow__field *f = flow__service_field(ld->svc, name);
    char hint[96];
    if (f == NULL) {
      field_hint(ld, name, hint, sizeof hint);
      flow__ld_problem(ld, line, "one_of names '%.60s', which is not in "
                       "`fields`%s", name, hint);
    } else if (f->required) {
      flow__ld_problem(ld, line, "one_of names '%s', which is required "
                       "already, so the rule always holds (drop it from the "
                       "group, or make it optional)", name);
    }
    for (size_t k = 0; k < i; k++)
      if (strcmp(g->fields[k], name) == 0)
        flow__ld_problem(ld, line, "one_of names '%s' twice in one group",
                         name);
  }
}

/*
 * one_of = { "uprn", "street" } (at least one of them is set), or a list
 * of such groups; validate = function(data) returning nothing or a table
 * of field -> message.  After the fields: both name them.
 */
void
flow__ld_read_rules(loader *ld, int def)
{
  lua_State *L = ld->L;
  flow__service *svc = ld->svc;
  svc->validate_fn = FLOW__NOREF;
  int ty = flow__ld_rawfield(L, def, "one_of");
  int line = LOCATE(ld, "one_of");
  if (ty == LUA_TTABLE) {
    int t = lua_gettop(L);
    int first = lua_rawgeti(L, t, 1);
    lua_pop(L, 1);
    size_t n = lua_rawlen(L, t);
    if (first == LUA_TTABLE && n <= FLOW__MAX_FIELDS) {
      svc->one_of = flow__calloc(ld->a, n, sizeof *svc->one_of);
      if (svc->one_of == NULL)
        flow__ld_oom(ld);
      for (size_t i = 0; i < n; i++) {
        flow__ld_tick(ld);
        lua_rawgeti(L, t, (lua_Integer)i + 1);
        read_group(ld, lua_gettop(L), line, &svc->one_of[svc->none_of++]);
        lua_pop(L, 1);
      }
    } else if (first == LUA_TSTRING) {
      if ((svc->one_of = flow__calloc(ld->a, 1, sizeof *svc->one_of)) == NULL)
        flow__ld_oom(ld);
      svc->none_of = 1;
      read_group(ld, t, line, &svc->one_of[0]);
    } else {
      read_group(ld, t, line, &(flow__one_of){ NULL, 0, 0 });
    }
  } else if (ty != LUA_TNIL) {
    flow__ld_problem(ld, line, "one_of must be a list of field names like { "
                     "\"uprn\", \"street\" }, not a %s",
                     flow__ld_type_at(L, -1));
  }
  lua_pop(L, 1);

  ty = flow__ld_rawfield(L, def, "validate");
  if (ty == LUA_TFUNCTION) {
    svc->validate_fn = flow__ld_keep_function(L, lua_gettop(L));
    svc->validate_line = flow__ld_function_line(L, lua_gettop(L));
  } else if (ty != LUA_TNIL) {
    flow__ld_problem(ld, LOCATE(ld, "validate"), "validate must be a "
                     "function(data) returning nothing, or a table of field "
                     "= message, not a %s", flow__ld_type_at(L, -1));
  }
  lua_pop(L, 1);
}
