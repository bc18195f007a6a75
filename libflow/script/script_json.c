/*
 * The bridge between Jansson values and Lua values.  Case data, event
 * payloads and action arguments cross it in both directions, so it has to
 * be exact about the corners where the two models differ:
 *
 *   - JSON tells an object from an array; a Lua table does not.  Arrays
 *     coming in get a shared "list" metatable (the same one flow.list sets)
 *     so that an empty list goes back out as [] and not {}.
 *   - JSON has null; Lua tables cannot hold nil.  A null member of an
 *     object is simply left out; a null item of an array becomes flow.null
 *     (a light userdata) so that positions stay where they were.
 *   - JSON integers stay Lua integers and reals stay Lua floats, so 1 and
 *     1.0 survive a round trip as what they were.
 *
 * Going back out, the table belongs to a script, so it is read with raw
 * access only (no __index, __pairs or __len of the script's runs), with a
 * depth limit that also catches tables that contain themselves, and a cap
 * on the number of values.  A frozen table (script_freeze.c) is read
 * through to the table that holds its contents.  That direction never
 * raises a Lua error and never allocates Lua memory: it only moves values
 * that already exist, so a half-built Jansson tree can always be released.
 * When it works for a script (flow.call, case.data, an eval's result) the
 * work is charged to the script's budgets as it goes.
 */
#include "script/script_int.h"

#include <lauxlib.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registry key of the list metatable, and the target of flow.null: only
   their addresses matter. */
static const char list_mt_key = 'L';
static const char null_tag = 'N';

void
flow__json_setup(lua_State *L)
{
  lua_createtable(L, 0, 1);
  /* A protected metatable: getmetatable(list) answers "flow.list", and a
     script cannot add an __index to every list of the service at once. */
  lua_pushliteral(L, "flow.list");
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &list_mt_key);
}

void
flow__json_push_list_mt(lua_State *L)
{
  lua_rawgetp(L, LUA_REGISTRYINDEX, &list_mt_key);
}

void
flow__json_push_null(lua_State *L)
{
  lua_pushlightuserdata(L, (void *)&null_tag);
}

int
flow__json_is_null(lua_State *L, int idx)
{
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA &&
         lua_touserdata(L, idx) == (void *)&null_tag;
}

/* 1 if the table at idx carries the list metatable (compared raw). */
static int
has_list_mt(lua_State *L, int idx)
{
  if (!lua_getmetatable(L, idx))
    return 0;
  flow__json_push_list_mt(L);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* ---- JSON -> Lua ------------------------------------------------------ */

static void
push_value(lua_State *L, json_t *j, int depth)
{
  if (depth > FLOW__JSON_MAX_DEPTH)
    luaL_error(L, "JSON nested more than %d levels", FLOW__JSON_MAX_DEPTH);
  luaL_checkstack(L, 4, "JSON nested too deeply");
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    size_t n = json_object_size(j);
    lua_createtable(L, 0, n > 1024 ? 1024 : (int)n);
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(j, key, klen, v) {
      if (json_is_null(v))
        continue;
      lua_pushlstring(L, key, klen);
      push_value(L, v, depth + 1);
      lua_rawset(L, -3);
    }
    break;
  }
  case JSON_ARRAY: {
    size_t n = json_array_size(j);
    lua_createtable(L, n > 1024 ? 1024 : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      json_t *v = json_array_get(j, i);
      if (json_is_null(v))
        flow__json_push_null(L);
      else
        push_value(L, v, depth + 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    flow__json_push_list_mt(L);
    lua_setmetatable(L, -2);
    break;
  }
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(j), json_string_length(j));
    break;
  case JSON_INTEGER:
    lua_pushinteger(L, (lua_Integer)json_integer_value(j));
    break;
  case JSON_REAL:
    lua_pushnumber(L, (lua_Number)json_real_value(j));
    break;
  case JSON_TRUE:
    lua_pushboolean(L, 1);
    break;
  case JSON_FALSE:
    lua_pushboolean(L, 0);
    break;
  case JSON_NULL:
  default:
    lua_pushnil(L);
    break;
  }
}

/*
 * JSON text straight into Lua values, with the same results as parsing it
 * with Jansson and pushing that (push_value above): case data is stored as
 * JSON text, and going through Jansson cost more than the handler that
 * reads it.  Strict like Jansson with JSON_REJECT_DUPLICATES: valid UTF-8,
 * no control characters in strings, no \u0000, no lone surrogates, no
 * duplicate keys, integers that fit 64 bits, nothing after the value.
 */
typedef struct text_parser {
  lua_State *L;
  const unsigned char *p, *end;
  int maxdepth;
  int status; /* FLOW__TEXT_* */
} text_parser;

static void
tp_space(text_parser *t)
{
  while (t->p < t->end &&
         (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r'))
    t->p++;
}

static int
tp_fail(text_parser *t, int status)
{
  if (t->status == FLOW__TEXT_OK)
    t->status = status;
  return -1;
}

static int
hex4(const unsigned char *p, unsigned *out)
{
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i], d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return -1;
    v = v << 4 | d;
  }
  *out = v;
  return 0;
}

/* The string starting after its opening quote; pushes it. */
static int
tp_string(text_parser *t)
{
  const unsigned char *s = t->p, *q = s;
  /* Most strings have no escapes: find the end and push the span. */
  while (q < t->end && *q != '"' && *q != '\\' && *q >= 0x20)
    q++;
  if (q < t->end && *q == '"') {
    if (!flow__utf8_valid((const char *)s, (size_t)(q - s)))
      return tp_fail(t, FLOW__TEXT_BAD);
    lua_pushlstring(t->L, (const char *)s, (size_t)(q - s));
    t->p = q + 1;
    return 0;
  }
  luaL_Buffer b;
  luaL_buffinit(t->L, &b);
  luaL_addlstring(&b, (const char *)s, (size_t)(q - s));
  const unsigned char *run = q;
  while (q < t->end && *q != '"') {
    if (*q < 0x20)
      return tp_fail(t, FLOW__TEXT_BAD);
    if (*q != '\\') {
      q++;
      continue;
    }
    luaL_addlstring(&b, (const char *)run, (size_t)(q - run));
    if (t->end - q < 2)
      return tp_fail(t, FLOW__TEXT_BAD);
    unsigned char e = q[1];
    q += 2;
    switch (e) {
    case '"': luaL_addchar(&b, '"'); break;
    case '\\': luaL_addchar(&b, '\\'); break;
    case '/': luaL_addchar(&b, '/'); break;
    case 'b': luaL_addchar(&b, '\b'); break;
    case 'f': luaL_addchar(&b, '\f'); break;
    case 'n': luaL_addchar(&b, '\n'); break;
    case 'r': luaL_addchar(&b, '\r'); break;
    case 't': luaL_addchar(&b, '\t'); break;
    case 'u': {
      unsigned cp, lo;
      if (t->end - q < 4 || hex4(q, &cp) != 0)
        return tp_fail(t, FLOW__TEXT_BAD);
      q += 4;
      if (cp >= 0xdc00 && cp <= 0xdfff)
        return tp_fail(t, FLOW__TEXT_BAD); /* a lone low surrogate */
      if (cp >= 0xd800 && cp <= 0xdbff) {
        if (t->end - q < 6 || q[0] != '\\' || q[1] != 'u' ||
            hex4(q + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
          return tp_fail(t, FLOW__TEXT_BAD);
        q += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      if (cp == 0)
        return tp_fail(t, FLOW__TEXT_BAD); /* Jansson refuses \u0000 */
      char u[4];
      size_t n;
      if (cp < 0x80) {
        u[0] = (char)cp, n = 1;
      } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
      } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
      } else {
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
      }
      luaL_addlstring(&b, u, n);
      break;
    }
    default:
      return tp_fail(t, FLOW__TEXT_BAD);
    }
    run = q;
  }
  if (q >= t->end)
    return tp_fail(t, FLOW__TEXT_BAD);
  luaL_addlstring(&b, (const char *)run, (size_t)(q - run));
  luaL_pushresult(&b);
  size_t len;
  const char *str = lua_tolstring(t->L, -1, &len);
  if (!flow__utf8_valid(str, len)) {
    lua_pop(t->L, 1);
    return tp_fail(t, FLOW__TEXT_BAD);
  }
  t->p = q + 1;
  return 0;
}

/* A number: an integer when it has no fraction or exponent (and fits), a
   float otherwise; the decimal point is '.' whatever the locale. */
static int
tp_number(text_parser *t)
{
  const unsigned char *s = t->p, *q = s;
  int is_real = 0;
  if (q < t->end && *q == '-')
    q++;
  if (q >= t->end || *q < '0' || *q > '9')
    return tp_fail(t, FLOW__TEXT_BAD);
  if (*q == '0' && q + 1 < t->end && q[1] >= '0' && q[1] <= '9')
    return tp_fail(t, FLOW__TEXT_BAD); /* no leading zeros */
  while (q < t->end && *q >= '0' && *q <= '9')
    q++;
  if (q < t->end && *q == '.') {
    is_real = 1;
    q++;
    if (q >= t->end || *q < '0' || *q > '9')
      return tp_fail(t, FLOW__TEXT_BAD);
    while (q < t->end && *q >= '0' && *q <= '9')
      q++;
  }
  if (q < t->end && (*q == 'e' || *q == 'E')) {
    is_real = 1;
    q++;
    if (q < t->end && (*q == '+' || *q == '-'))
      q++;
    if (q >= t->end || *q < '0' || *q > '9')
      return tp_fail(t, FLOW__TEXT_BAD);
    while (q < t->end && *q >= '0' && *q <= '9')
      q++;
  }
  size_t n = (size_t)(q - s);
  t->p = q;
  if (!is_real) {
    const unsigned char *d = s + (*s == '-');
    uint64_t v = 0;
    uint64_t limit = *s == '-' ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; d < q; d++) {
      unsigned dig = (unsigned)(*d - '0');
      if (v > (limit - dig) / 10)
        return tp_fail(t, FLOW__TEXT_BAD); /* too big, like Jansson */
      v = v * 10 + dig;
    }
    lua_pushinteger(t->L, *s == '-' ? (lua_Integer)(0 - v) : (lua_Integer)v);
    return 0;
  }
  /* strtod reads the locale's decimal point; JSON's is always '.'.  The
     token is a valid number and the text ends in a NUL, so strtod stops
     where the token does. */
  const char *point = localeconv()->decimal_point;
  double x;
  char *endp;
  if (point == NULL || strcmp(point, ".") == 0) {
    x = strtod((const char *)s, &endp);
    if (endp != (const char *)q)
      return tp_fail(t, FLOW__TEXT_BAD);
  } else {
    char tmp[512];
    if (n >= sizeof tmp || strlen(point) != 1)
      return tp_fail(t, FLOW__TEXT_BAD);
    memcpy(tmp, s, n);
    tmp[n] = 0;
    for (char *c = tmp; *c; c++)
      if (*c == '.')
        *c = point[0];
    x = strtod(tmp, &endp);
    if (*endp != 0)
      return tp_fail(t, FLOW__TEXT_BAD);
  }
  if (isinf(x))
    return tp_fail(t, FLOW__TEXT_BAD); /* out of range, like Jansson */
  lua_pushnumber(t->L, (lua_Number)x);
  return 0;
}

static int
tp_literal(text_parser *t, const char *word, size_t n)
{
  if ((size_t)(t->end - t->p) < n || memcmp(t->p, word, n) != 0)
    return tp_fail(t, FLOW__TEXT_BAD);
  t->p += n;
  return 0;
}

/*
 * How many members or items the object or array starting just after p's
 * bracket has, to size its table once instead of growing it member by
 * member: commas at its own level, found by a scan of at most 4 KiB (0,
 * "unknown", past that).  Only a size hint: malformed text is found by
 * the parser proper.
 */
static int
count_members(const unsigned char *p, const unsigned char *end)
{
  if (end - p > 4096)
    end = p + 4096;
  int depth = 0, n = 0, any = 0;
  for (; p < end; p++) {
    switch (*p) {
    case '"':
      for (p++; p < end && *p != '"'; p++)
        if (*p == '\\' && p + 1 < end)
          p++;
      if (p == end)
        return 0;
      any = 1;
      break;
    case '{':
    case '[':
      depth++;
      any = 1;
      break;
    case '}':
    case ']':
      if (depth-- == 0)
        return any ? n + 1 : 0;
      break;
    case ',':
      if (depth == 0)
        n++;
      break;
    case ' ':
    case '\t':
    case '\n':
    case '\r':
      break;
    default:
      any = 1;
    }
  }
  return 0;
}

/*
 * Parses one value and pushes it; a null pushes nothing and sets *isnull
 * (the caller knows whether it leaves a member out or puts flow.null).
 */
static int
tp_value(text_parser *t, int depth, int *isnull)
{
  lua_State *L = t->L;
  *isnull = 0;
  if (depth > t->maxdepth)
    return tp_fail(t, FLOW__TEXT_DEEP);
  luaL_checkstack(L, 6, "JSON nested too deeply");
  tp_space(t);
  if (t->p >= t->end)
    return tp_fail(t, FLOW__TEXT_BAD);
  switch (*t->p) {
  case '{': {
    t->p++;
    lua_createtable(L, 0, count_members(t->p, t->end));
    tp_space(t);
    if (t->p < t->end && *t->p == '}') {
      t->p++;
      return 0;
    }
    int had_null = 0;
    for (;;) {
      tp_space(t);
      if (t->p >= t->end || *t->p != '"')
        return tp_fail(t, FLOW__TEXT_BAD);
      t->p++;
      if (tp_string(t) != 0)
        return -1;
      tp_space(t);
      if (t->p >= t->end || *t->p != ':')
        return tp_fail(t, FLOW__TEXT_BAD);
      t->p++;
      /* A key seen before, even one whose value was null, is refused. */
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) != LUA_TNIL)
        return tp_fail(t, FLOW__TEXT_BAD);
      lua_pop(L, 1);
      int null;
      if (tp_value(t, depth + 1, &null) != 0)
        return -1;
      if (null) {
        flow__json_push_null(L); /* held until the end, then dropped */
        had_null = 1;
      }
      lua_rawset(L, -3);
      tp_space(t);
      if (t->p < t->end && *t->p == ',') {
        t->p++;
        continue;
      }
      if (t->p < t->end && *t->p == '}') {
        t->p++;
        break;
      }
      return tp_fail(t, FLOW__TEXT_BAD);
    }
    /* Members that were null are left out, as push_value does; they were
       kept as flow.null only so a duplicate of them would be seen. */
    if (!had_null)
      return 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      int drop = flow__json_is_null(L, -1);
      lua_pop(L, 1);
      if (drop) {
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, -4);
      }
    }
    return 0;
  }
  case '[': {
    t->p++;
    lua_createtable(L, count_members(t->p, t->end), 0);
    tp_space(t);
    lua_Integer i = 0;
    if (t->p < t->end && *t->p == ']') {
      t->p++;
    } else {
      for (;;) {
        int null;
        if (tp_value(t, depth + 1, &null) != 0)
          return -1;
        if (null)
          flow__json_push_null(L);
        lua_rawseti(L, -2, ++i);
        tp_space(t);
        if (t->p < t->end && *t->p == ',') {
          t->p++;
          continue;
        }
        if (t->p < t->end && *t->p == ']') {
          t->p++;
          break;
        }
        return tp_fail(t, FLOW__TEXT_BAD);
      }
    }
    flow__json_push_list_mt(L);
    lua_setmetatable(L, -2);
    return 0;
  }
  case '"':
    t->p++;
    return tp_string(t);
  case 't':
    lua_pushboolean(L, 1);
    return tp_literal(t, "true", 4);
  case 'f':
    lua_pushboolean(L, 0);
    return tp_literal(t, "false", 5);
  case 'n':
    *isnull = 1;
    return tp_literal(t, "null", 4);
  default:
    return tp_number(t);
  }
}

int
flow__json_push_text(lua_State *L, const char *text, int maxdepth)
{
  text_parser t = { L, (const unsigned char *)text,
                    (const unsigned char *)text + strlen(text), maxdepth,
                    FLOW__TEXT_OK };
  int top = lua_gettop(L);
  tp_space(&t);
  int isnull = 0;
  if (t.p >= t.end || *t.p != '{')
    tp_fail(&t, FLOW__TEXT_BAD); /* case data is always an object */
  else if (tp_value(&t, 1, &isnull) == 0) {
    tp_space(&t);
    if (t.p != t.end)
      tp_fail(&t, FLOW__TEXT_BAD);
  }
  if (t.status != FLOW__TEXT_OK)
    lua_settop(L, top);
  return t.status;
}

int
flow__json_depth_ok(json_t *j, int max)
{
  if (max < 0)
    return 0;
  size_t i;
  const char *key;
  json_t *v;
  if (json_is_object(j)) {
    json_object_foreach(j, key, v) {
      if (!flow__json_depth_ok(v, max - 1))
        return 0;
    }
  } else if (json_is_array(j)) {
    json_array_foreach(j, i, v) {
      if (!flow__json_depth_ok(v, max - 1))
        return 0;
    }
  }
  return 1;
}

void
flow__json_push(lua_State *L, json_t *j)
{
  if (j == NULL)
    lua_pushnil(L);
  else
    push_value(L, j, 1);
}

/* ---- Lua -> JSON ------------------------------------------------------ */

typedef struct conv {
  lua_State *L;
  const flow__allocator *a;
  flow__sandbox *sb; /* charged for the work, may be NULL */
  size_t nodes;
  size_t bytes;      /* text converted so far */
  size_t charged_nodes, charged_bytes;
  /* A lower bound of the JSON text the result makes (every string and key
     with its quotes, one byte per value), refused past FLOW__JSON_MAX_TEXT
     before anything bigger is built. */
  size_t text;
  size_t root_len;   /* of the root's name at the start of path */
  char path[256];   /* "data.items[3].name", truncated with "..." */
  size_t plen;
  char *msg;
  size_t msglen;
} conv;

/* One member of an object being built: keys are sorted before insertion
   so the same table always gives the same JSON text, whatever order Lua's
   (seeded) hash puts the keys in. */
typedef struct member {
  const char *key;
  size_t klen;
  json_t *val;
} member;

static int
conv_fail(conv *c, int code, const char *fmt, ...) FLOW__PRINTF(3, 4);

static int
conv_fail(conv *c, int code, const char *fmt, ...)
{
  if (c->msg && c->msglen) {
    int n = snprintf(c->msg, c->msglen, "%s: ", c->path);
    if (n >= 0 && (size_t)n < c->msglen) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(c->msg + n, c->msglen - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return code;
}

/* Appends to the path; a path that no longer fits ends in "...".  (By
   hand, not printf: this runs for every value converted.) */
static void
path_add(conv *c, const char *s, size_t n)
{
  size_t room = sizeof c->path - c->plen;
  if (n >= room) {
    memcpy(c->path + c->plen, s, room - 1);
    memcpy(c->path + sizeof c->path - 4, "...", 4);
    c->plen = sizeof c->path - 1;
    return;
  }
  memcpy(c->path + c->plen, s, n);
  c->plen += n;
  c->path[c->plen] = 0;
}

/* Adds "[i]" to the path. */
static void
path_index(conv *c, size_t i)
{
  char tmp[24];
  char *p = tmp + sizeof tmp;
  *--p = ']';
  do {
    *--p = (char)('0' + i % 10);
    i /= 10;
  } while (i > 0);
  *--p = '[';
  path_add(c, p, (size_t)(tmp + sizeof tmp - p));
}

static int
is_ident(const char *s, size_t len)
{
  if (len == 0 || len > 64)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             ch == '_' || (i > 0 && ch >= '0' && ch <= '9');
    if (!ok)
      return 0;
  }
  return 1;
}

/* Adds ".key" or ["key"] (printable keys only) to the path. */
static void
path_key(conv *c, const char *key, size_t klen)
{
  if (is_ident(key, klen)) {
    char tmp[66];
    tmp[0] = '.';
    memcpy(tmp + 1, key, klen); /* is_ident: klen <= 64 */
    path_add(c, tmp, klen + 1);
    return;
  }
  char shown[52]; /* 44 shown, "...", "\"]" */
  size_t n = 0;
  for (size_t i = 0; i < klen && n < sizeof shown - 8; i++) {
    unsigned char ch = (unsigned char)key[i];
    shown[n++] = (ch >= 0x20 && ch < 0x7f && ch != '"') ? (char)ch : '?';
  }
  if (n < klen)
    shown[n++] = '.', shown[n++] = '.', shown[n++] = '.';
  shown[n++] = '"';
  shown[n++] = ']';
  path_add(c, "[\"", 2);
  path_add(c, shown, n);
}

static int
member_cmp(const void *pa, const void *pb)
{
  const member *a = pa, *b = pb;
  size_t n = a->klen < b->klen ? a->klen : b->klen;
  int r = memcmp(a->key, b->key, n);
  if (r != 0)
    return r;
  return (a->klen > b->klen) - (a->klen < b->klen);
}

static int to_json(conv *c, int idx, int depth, json_t **out);

/* One step of a walk over a table's keys: charged and clocked on its own,
   since one lua_next (or rawgeti) on a table whose keys all collide costs
   as much as the whole chain.  Returns 0, or FLOW_ELIMIT (the kill is
   recorded in the sandbox). */
static int
conv_step(conv *c)
{
  if (c->sb && flow__sb_spend(c->sb, 1))
    return conv_fail(c, FLOW_ELIMIT, "budget exceeded");
  return 0;
}

/* Adds n bytes to the text the result will make; FLOW_EDATA past the
   limit. */
static int
conv_text(conv *c, size_t n)
{
  c->text += n;
  if (c->text <= FLOW__JSON_MAX_TEXT)
    return 0;
  /* The whole value is too big, not the part being converted. */
  c->plen = c->root_len;
  c->path[c->plen] = 0;
  return conv_fail(c, FLOW_EDATA,
                     "more than %d KiB as JSON, the most case data, a "
                     "payload or an action's arguments may be (keep large "
                     "content in the host's store and put its reference "
                     "here)",
                     FLOW__JSON_MAX_TEXT / 1024);
}

/*
 * Looks at every key of the table at t (absolute index) and says what it
 * can become.  Sets *nstr, *nint (keys 1..), *max (largest of those).
 * Returns 0, or FLOW_EINVAL for a key JSON cannot have.
 */
static int
classify(conv *c, int t, size_t *nstr, size_t *nint, lua_Integer *max)
{
  lua_State *L = c->L;
  *nstr = *nint = 0;
  *max = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int kt = lua_type(L, -2);
    int rc = conv_step(c);
    if (rc != 0) {
      lua_pop(L, 2);
      return rc;
    }
    if (kt == LUA_TSTRING) {
      (*nstr)++;
    } else if (kt == LUA_TNUMBER && lua_isinteger(L, -2) &&
               lua_tointeger(L, -2) >= 1) {
      lua_Integer k = lua_tointeger(L, -2);
      (*nint)++;
      if (k > *max)
        *max = k;
    } else if (kt == LUA_TNUMBER) {
      char num[64];
      if (lua_isinteger(L, -2))
        snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -2));
      else
        snprintf(num, sizeof num, "%.14g", (double)lua_tonumber(L, -2));
      lua_pop(L, 2);
      return conv_fail(c, FLOW_EINVAL,
                       "a table has the key %s (JSON allows names and list "
                       "positions 1, 2, 3...)",
                       num);
    } else {
      const char *tn = lua_typename(L, kt);
      lua_pop(L, 2);
      return conv_fail(c, FLOW_EINVAL,
                       "a table has a key of type %s (JSON allows names and "
                       "list positions 1, 2, 3...)",
                       tn);
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* The first missing position of a list whose keys are not 1..n; there is
   one among 1..nint because nint distinct keys exceed nint. */
static lua_Integer
first_hole(lua_State *L, int t, size_t nint)
{
  for (lua_Integer i = 1; i <= (lua_Integer)nint; i++) {
    int ty = lua_rawgeti(L, t, i);
    lua_pop(L, 1);
    if (ty == LUA_TNIL)
      return i;
  }
  return (lua_Integer)nint + 1;
}

static int
array_from(conv *c, int t, int depth, size_t n, json_t **out)
{
  lua_State *L = c->L;
  json_t *arr = json_array();
  if (arr == NULL)
    return conv_fail(c, FLOW_ENOMEM, "out of memory");
  size_t plen = c->plen;
  for (size_t i = 1; i <= n; i++) {
    int rc = conv_step(c);
    if (rc == 0)
      rc = conv_text(c, 1); /* the comma */
    if (rc != 0) {
      json_decref(arr);
      return rc;
    }
    lua_rawgeti(L, t, (lua_Integer)i);
    path_index(c, i);
    json_t *v = NULL;
    rc = to_json(c, lua_gettop(L), depth + 1, &v);
    lua_pop(L, 1);
    c->plen = plen;
    c->path[plen] = 0;
    if (rc != 0) {
      json_decref(arr);
      return rc;
    }
    if (json_array_append_new(arr, v) != 0) {
      json_decref(arr);
      return conv_fail(c, FLOW_ENOMEM, "out of memory");
    }
  }
  *out = arr;
  return 0;
}

static int
object_from(conv *c, int t, int depth, size_t n, json_t **out)
{
  lua_State *L = c->L;
  int rc = 0;
  size_t have = 0;
  json_t *obj = NULL;
  member *m = NULL;
  if (n > 0 && (m = flow__calloc(c->a, n, sizeof *m)) == NULL)
    return conv_fail(c, FLOW_ENOMEM, "out of memory");
  size_t plen = c->plen;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    size_t klen;
    /* classify() saw only string keys, so lua_tolstring converts nothing
       and the pointer stays valid: the table still holds the key. */
    const char *key = lua_tolstring(L, -2, &klen);
    path_key(c, key, klen);
    if ((rc = conv_step(c)) != 0 || (rc = conv_text(c, klen + 4)) != 0) {
      c->plen = plen;
      c->path[plen] = 0;
      lua_pop(L, 2);
      goto fail;
    }
    if (!flow__utf8_valid(key, klen) || memchr(key, 0, klen) != NULL) {
      c->plen = plen;
      c->path[plen] = 0;
      lua_pop(L, 2);
      rc = conv_fail(c, FLOW_EINVAL,
                     memchr(key, 0, klen) != NULL
                         ? "a key with a NUL character (\\0) in it cannot "
                           "be stored: remove it"
                         : "a key is not valid UTF-8");
      goto fail;
    }
    json_t *v = NULL;
    rc = to_json(c, lua_gettop(L), depth + 1, &v);
    c->plen = plen;
    c->path[plen] = 0;
    if (rc != 0) {
      lua_pop(L, 2);
      goto fail;
    }
    m[have].key = key;
    m[have].klen = klen;
    m[have].val = v;
    have++;
    lua_pop(L, 1);
  }
  if (have > 1)
    flow__sort(m, have, sizeof *m, member_cmp);
  if ((obj = json_object()) == NULL) {
    rc = conv_fail(c, FLOW_ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < have; i++) {
    json_t *v = m[i].val;
    m[i].val = NULL; /* setn_new takes it even when it fails */
    if (json_object_setn_new_nocheck(obj, m[i].key, m[i].klen, v) != 0) {
      rc = conv_fail(c, FLOW_ENOMEM, "out of memory");
      goto fail;
    }
  }
  flow__free(c->a, m);
  *out = obj;
  return 0;
fail:
  for (size_t i = 0; i < have; i++)
    json_decref(m[i].val);
  flow__free(c->a, m);
  json_decref(obj);
  return rc;
}

/* The table at t (absolute), whose contents are read raw: a list when
   list is set. */
static int
table_body(conv *c, int t, int depth, int list, json_t **out)
{
  lua_State *L = c->L;
  size_t nstr, nint;
  lua_Integer max;
  int rc = classify(c, t, &nstr, &nint, &max);
  if (rc != 0)
    return rc;
  if (list && nstr > 0)
    return conv_fail(c, FLOW_EINVAL,
                     "a list (flow.list) has named keys; a list holds only "
                     "items 1, 2, 3...");
  if (!list && nstr > 0 && nint > 0)
    return conv_fail(c, FLOW_EINVAL,
                     "a table mixes list items and named keys");
  if (nint > 0 && (lua_Integer)nint != max)
    return conv_fail(c, FLOW_EINVAL,
                     "a list has a gap at position %lld (items must be "
                     "1, 2, 3... with no nil between them)",
                     (long long)first_hole(L, t, nint));
  if (list || nint > 0)
    return array_from(c, t, depth, nint, out);
  return object_from(c, t, depth, nstr, out);
}

static int
table_to_json(conv *c, int t, int depth, json_t **out)
{
  lua_State *L = c->L;
  if (depth > FLOW__JSON_MAX_DEPTH)
    return conv_fail(c, FLOW_EINVAL,
                     "nested more than %d levels (or refers to itself)",
                     FLOW__JSON_MAX_DEPTH);
  if (!lua_checkstack(L, 8))
    return conv_fail(c, FLOW_ENOMEM, "out of memory (Lua stack)");
  int list = 0;
  if (flow__frozen_contents(L, t, &list)) {
    int rc = table_body(c, lua_gettop(L), depth, list, out);
    lua_pop(L, 1);
    return rc;
  }
  return table_body(c, t, depth, has_list_mt(L, t), out);
}

static int
to_json(conv *c, int idx, int depth, json_t **out)
{
  lua_State *L = c->L;
  *out = NULL;
  if (++c->nodes > FLOW__JSON_MAX_NODES)
    return conv_fail(c, FLOW_EINVAL, "more than %d values",
                     FLOW__JSON_MAX_NODES);
  if (c->sb && (c->nodes - c->charged_nodes >= 256 ||
                c->bytes - c->charged_bytes >= 4096)) {
    uint64_t n = (c->nodes - c->charged_nodes) +
                 (c->bytes - c->charged_bytes) / 16;
    c->charged_nodes = c->nodes;
    c->charged_bytes = c->bytes;
    if (flow__sb_spend(c->sb, n))
      return conv_fail(c, FLOW_ELIMIT, "budget exceeded");
  }
  json_t *j = NULL;
  int ty = lua_type(L, idx);
  int rc = conv_text(c, 1);
  if (rc != 0)
    return rc;
  switch (ty) {
  case LUA_TNIL:
    j = json_null();
    break;
  case LUA_TBOOLEAN:
    j = json_boolean(lua_toboolean(L, idx));
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      j = json_integer((json_int_t)lua_tointeger(L, idx));
    } else {
      double d = (double)lua_tonumber(L, idx);
      if (!isfinite(d))
        return conv_fail(c, FLOW_EINVAL,
                         "%s is not a number JSON can hold",
                         isnan(d) ? "NaN" : d > 0 ? "infinity" : "-infinity");
      j = json_real(d);
    }
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    c->bytes += len;
    /* Refused before it is copied: a string of gigabytes, or one string
       referred to a thousand times. */
    if ((rc = conv_text(c, len + 1)) != 0)
      return rc;
    if (!flow__utf8_valid(s, len))
      return conv_fail(c, FLOW_EINVAL, "not valid UTF-8");
    /* JSON could carry it as \u0000, but neither the engine's readers nor
       most hosts' take it back: refused here, never stored. */
    if (memchr(s, 0, len) != NULL)
      return conv_fail(c, FLOW_EINVAL,
                       "text with a NUL character (\\0) in it cannot be "
                       "stored: remove it");
    j = json_stringn_nocheck(s, len);
    break;
  }
  case LUA_TTABLE:
    return table_to_json(c, lua_absindex(L, idx), depth, out);
  case LUA_TLIGHTUSERDATA:
    if (flow__json_is_null(L, idx)) {
      j = json_null();
      break;
    }
    /* fall through */
  default:
    return conv_fail(c, FLOW_EINVAL,
                     "a %s cannot be stored as JSON (use strings, numbers, "
                     "booleans and tables)",
                     lua_typename(L, ty));
  }
  if (j == NULL)
    return conv_fail(c, FLOW_ENOMEM, "out of memory");
  *out = j;
  return 0;
}

static int
from_lua(lua_State *L, int idx, const char *root, const flow__allocator *a,
         flow__sandbox *sb, json_t **out, size_t *bytes, char *msg,
         size_t msglen)
{
  conv c;
  memset(&c, 0, sizeof c);
  c.L = L;
  c.a = a;
  c.sb = sb;
  c.msg = msg;
  c.msglen = msglen;
  if (msg && msglen)
    msg[0] = 0;
  const char *r = root ? root : "value";
  path_add(&c, r, strlen(r));
  c.root_len = c.plen;
  *out = NULL;
  int top = lua_gettop(L);
  int rc = to_json(&c, lua_absindex(L, idx), 1, out);
  lua_settop(L, top);
  if (rc == 0 && sb &&
      flow__sb_spend(sb, (c.nodes - c.charged_nodes) +
                             (c.bytes - c.charged_bytes) / 16)) {
    json_decref(*out);
    *out = NULL;
    rc = conv_fail(&c, FLOW_ELIMIT, "budget exceeded");
  }
  if (bytes)
    *bytes = c.nodes * 64 + c.bytes;
  return rc;
}

int
flow__json_from_lua(lua_State *L, int idx, const char *root,
                    const flow__allocator *a, json_t **out, char *msg,
                    size_t msglen)
{
  return from_lua(L, idx, root, a, NULL, out, NULL, msg, msglen);
}

int
flow__json_from_lua_sb(lua_State *L, int idx, const char *root,
                       flow__sandbox *sb, json_t **out, size_t *bytes,
                       char *msg, size_t msglen)
{
  return from_lua(L, idx, root, sb->alloc, sb, out, bytes, msg, msglen);
}
