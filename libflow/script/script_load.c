/*
 * The service loader: runs a service script in its sandbox, reads the table
 * it returns and turns it into a flow__service (model/model.h) -- states sorted in
 * the order the author wrote them, events sorted by name, fields by name,
 * functions kept as registry references in the sandbox.
 *
 * Its users are service authors, so the loader's real product is its
 * error report.  It does not stop at the first mistake: every problem in
 * the definition is collected as "CHUNK:LINE: message", the list is sorted
 * by line and returned in one FLOW_ESCRIPT, so one `flow check` shows all
 * of them.  Messages say what would fix the problem ("did you mean
 * 'final'?", "states: reported, assigned, closed").
 *
 * A table entry carries no line number in Lua, so the loader finds it in
 * the source text: a small tokenizer (comments and strings skipped) and a
 * search that follows the keys through the table constructors of the
 * returned table (see locate()).  Functions carry their own line.
 *
 * The definition belongs to the script, so it is read with raw access
 * only: no __index, __pairs or __len of the script's runs while loading.
 */
#include "script/script_int.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- problems ---------------------------------------------------------- */

typedef struct problem {
  int line;
  size_t seq; /* discovery order: the last tie-break */
  char *msg;
} problem;

/* ---- tokens, for finding lines ----------------------------------------- */

enum { TOK_NAME, TOK_STRING, TOK_OTHER };

typedef struct token {
  int kind;
  int line;
  const char *p;  /* a name, or a string's text between its quotes */
  size_t len;
  char ch;        /* a one-character punctuation token, else 0 */
  long match;     /* for an opening bracket: index of its closer, or -1 */
} token;

#define MEMO_DEPTH 6

/* locate()'s last answer at one depth of a path. */
typedef struct locate_memo {
  int valid;
  long lo, hi;
  int strict;
  char key[72];
  long i, v;
} locate_memo;

typedef struct loader {
  flow__sandbox *sb;
  lua_State *L;
  const flow__allocator *a;
  flow__service *svc;
  const char *src;
  size_t len;
  const char *chunk;

  token *toks;
  size_t ntoks;
  /* Where the fields of the returned table are: inside the constructor of
     the chunk's final `return {` when there is one (strict), else
     anywhere. */
  long root_lo, root_hi;
  int root_strict;

  /* Token steps locate() may still take.  A definition with a hundred
     thousand entries would otherwise make the searches quadratic; past
     this, entries are reported at the line of what encloses them. */
  uint64_t scan_left;

  /* The service's own budget = { ... }, and the line of memory_mb. */
  flow__sb_budget budget;
  int budget_line;

  problem *probs;
  size_t nprobs, capprobs;
  size_t dropped; /* problems past FLOW__MAX_PROBLEMS, only counted */
  int probs_sorted; /* probs is in problem_cmp order (it is full) */
  void *scratch;  /* a list of temporary blocks freed after the walk */

  int have_states;          /* svc->states holds every valid state name */
  const char **state_index; /* those names, sorted, for bsearch */
  char state_list[1024];
  locate_memo memo[MEMO_DEPTH];
} loader;

#define SCAN_BUDGET ((uint64_t)100000000)


static int
is_alpha(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int
is_digit(char c)
{
  return c >= '0' && c <= '9';
}

/* At '[': the level of a long bracket "[==[", or -1. */
static int
long_level(const char *s, const char *e)
{
  const char *p = s + 1;
  while (p < e && *p == '=')
    p++;
  return (p < e && *p == '[') ? (int)(p - s - 1) : -1;
}

/* Skips a long bracket of the given level starting at s; *end is where
   its text ends (the closing bracket), the result is just after it. */
static const char *
skip_long(const char *s, const char *e, int level, int *line,
          const char **end)
{
  const char *p = s + level + 2;
  while (p < e) {
    if (*p == ']') {
      const char *q = p + 1;
      while (q < e && *q == '=')
        q++;
      if (q < e && *q == ']' && q - p - 1 == level) {
        *end = p;
        return q + 1;
      }
    } else if (*p == '\n') {
      (*line)++;
    }
    p++;
  }
  *end = e;
  return e;
}

static int
push_tok(loader *ld, size_t *cap, int kind, int line, const char *p,
         size_t len, char ch)
{
  if (ld->ntoks == *cap) {
    size_t ncap = *cap ? *cap * 2 : 256;
    token *nt = flow__realloc(ld->a, ld->toks, ncap * sizeof *nt);
    if (nt == NULL)
      return FLOW_ENOMEM;
    ld->toks = nt;
    *cap = ncap;
  }
  token *t = &ld->toks[ld->ntoks++];
  t->kind = kind;
  t->line = line;
  t->p = p;
  t->len = len;
  t->ch = ch;
  t->match = -1;
  return 0;
}

/*
 * Splits the source into the tokens locate() needs: names, strings,
 * punctuation (with "==" and friends kept apart from "="), everything
 * else as opaque tokens; comments and whitespace dropped.  It does not
 * judge the syntax -- Lua already accepted the chunk.
 */
static int
lex(loader *ld)
{
  const char *s = ld->src, *e = s + ld->len;
  size_t cap = 0;
  int line = 1, rc = 0;
  while (s < e && rc == 0) {
    char c = *s;
    const char *end;
    int level;
    if (c == '\n') {
      line++;
      s++;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' ||
               c == '\v') {
      s++;
    } else if (c == '-' && s + 1 < e && s[1] == '-') {
      s += 2;
      if (s < e && *s == '[' && (level = long_level(s, e)) >= 0) {
        s = skip_long(s, e, level, &line, &end);
      } else {
        while (s < e && *s != '\n')
          s++;
      }
    } else if (c == '[' && (level = long_level(s, e)) >= 0) {
      int l0 = line;
      const char *text = s + level + 2;
      s = skip_long(s, e, level, &line, &end);
      rc = push_tok(ld, &cap, TOK_STRING, l0, text, (size_t)(end - text), 0);
    } else if (c == '"' || c == '\'') {
      int l0 = line;
      const char *text = ++s;
      while (s < e && *s != c && *s != '\n') {
        if (*s == '\\' && s + 1 < e) {
          if (s[1] == '\n')
            line++;
          s++;
        }
        s++;
      }
      rc = push_tok(ld, &cap, TOK_STRING, l0, text, (size_t)(s - text), 0);
      if (s < e && *s == c)
        s++;
    } else if (is_alpha(c)) {
      const char *b = s;
      while (s < e && (is_alpha(*s) || is_digit(*s)))
        s++;
      rc = push_tok(ld, &cap, TOK_NAME, line, b, (size_t)(s - b), 0);
    } else if (is_digit(c) || (c == '.' && s + 1 < e && is_digit(s[1]))) {
      const char *b = s;
      while (s < e && (is_alpha(*s) || is_digit(*s) || *s == '.' ||
                       ((*s == '+' || *s == '-') &&
                        strchr("eEpP", s[-1]) != NULL)))
        s++;
      rc = push_tok(ld, &cap, TOK_OTHER, line, b, (size_t)(s - b), 0);
    } else if ((c == '=' || c == '~' || c == '<' || c == '>') &&
               s + 1 < e && s[1] == '=') {
      rc = push_tok(ld, &cap, TOK_OTHER, line, s, 2, 0);
      s += 2;
    } else {
      rc = push_tok(ld, &cap, TOK_OTHER, line, s, 1, c);
      s++;
    }
  }
  if (rc != 0)
    return rc;

  /* Pair the brackets, so a search can stay inside one constructor. */
  long *stack = ld->ntoks ? flow__malloc(ld->a, ld->ntoks * sizeof *stack)
                          : NULL;
  if (ld->ntoks && stack == NULL)
    return FLOW_ENOMEM;
  size_t depth = 0;
  for (size_t i = 0; i < ld->ntoks; i++) {
    char ch = ld->toks[i].ch;
    if (ch == '{' || ch == '(' || ch == '[') {
      stack[depth++] = (long)i;
    } else if ((ch == '}' || ch == ')' || ch == ']') && depth > 0) {
      ld->toks[stack[--depth]].match = (long)i;
    }
  }
  flow__free(ld->a, stack);

  /* The returned table: the `return {` outside every block.  Lua
     accepted the chunk, so block keywords are balanced. */
  int blocks = 0;
  ld->root_lo = 0;
  ld->root_hi = (long)ld->ntoks;
  ld->root_strict = 0;
  for (size_t i = 0; i < ld->ntoks; i++) {
    const token *t = &ld->toks[i];
    if (t->kind != TOK_NAME)
      continue;
#define IS(w) (t->len == sizeof(w) - 1 && memcmp(t->p, w, t->len) == 0)
    if (IS("function") || IS("if") || IS("do") || IS("repeat")) {
      blocks++;
    } else if (IS("end") || IS("until")) {
      blocks--;
    } else if (IS("return") && blocks == 0 && i + 1 < ld->ntoks &&
               ld->toks[i + 1].ch == '{' && ld->toks[i + 1].match > 0) {
      ld->root_lo = (long)i + 2;
      ld->root_hi = ld->toks[i + 1].match;
      ld->root_strict = 1;
    }
#undef IS
  }
  return 0;
}

static int
tok_is(const token *t, int kind, const char *s, size_t len)
{
  return t->kind == kind && t->len == len && memcmp(t->p, s, len) == 0;
}

/*
 * Is token i the start of the table field `key = ...` or `["key"] = ...`?
 * A field follows "{", "," or ";" -- which keeps `local key = ...` and
 * `case.data.key = ...` inside function bodies from matching.  Returns the
 * index of the field's value, or -1.
 */
static long
field_at(const loader *ld, size_t i, const char *key, size_t klen)
{
  const token *t = ld->toks;
  size_t n = ld->ntoks;
  if (i == 0 || !(t[i - 1].ch == '{' || t[i - 1].ch == ',' ||
                  t[i - 1].ch == ';'))
    return -1;
  if (i + 1 < n && tok_is(&t[i], TOK_NAME, key, klen) && t[i + 1].ch == '=')
    return (long)i + 2;
  if (i + 3 < n && t[i].ch == '[' &&
      tok_is(&t[i + 1], TOK_STRING, key, klen) && t[i + 2].ch == ']' &&
      t[i + 3].ch == '=')
    return (long)i + 4;
  return -1;
}

/* The first field named key in tokens [lo, hi); when strict, only at the
   constructor's own level: nested brackets are jumped over whole, which
   also keeps a search through a big `states` table short. */
static long
find_field(loader *ld, const char *key, long lo, long hi, int strict,
           long *value)
{
  size_t klen = strlen(key);
  for (long i = lo; i < hi; i++) {
    if (ld->scan_left == 0)
      return -1;
    ld->scan_left--;
    long v = field_at(ld, (size_t)i, key, klen);
    if (v >= 0) {
      *value = v;
      return i;
    }
    char ch = ld->toks[i].ch;
    if (strict && (ch == '{' || ch == '(' || ch == '[') &&
        ld->toks[i].match > i)
      i = ld->toks[i].match;
  }
  return -1;
}

/*
 * The line where the entry at path (e.g. "states", "assigned", "on",
 * "collect") is written.  Each key is looked for among the fields of the
 * table constructor that the previous key's value opens; when a value is
 * not a constructor (`states = my_states`), the next key is looked for
 * anywhere in the file.  When a key is not found the line of the last one
 * found is the answer (the enclosing entry), and 1 when none was.  *pos
 * (may be NULL) gets the token index of the last key found, -1 if none,
 * which orders states as the author wrote them.
 */
static int
locate(loader *ld, const char *const *path, size_t n, long *pos)
{
  long lo = ld->root_lo, hi = ld->root_hi, at = -1;
  int strict = ld->root_strict, line = 0;
  for (size_t k = 0; k < n; k++) {
    long v = -1, i;
    /* Lookups come in runs with the same prefix ("states", "assigned",
       then each of its keys), so each depth remembers its last answer. */
    locate_memo *m = k < MEMO_DEPTH ? &ld->memo[k] : NULL;
    size_t klen = strlen(path[k]);
    if (m && m->valid && m->lo == lo && m->hi == hi && m->strict == strict &&
        klen < sizeof m->key && strcmp(m->key, path[k]) == 0) {
      i = m->i;
      v = m->v;
    } else {
      i = find_field(ld, path[k], lo, hi, strict, &v);
      if (m && klen < sizeof m->key) {
        m->valid = 1;
        m->lo = lo;
        m->hi = hi;
        m->strict = strict;
        memcpy(m->key, path[k], klen + 1);
        m->i = i;
        m->v = v;
      }
    }
    if (i < 0)
      break;
    at = i;
    line = ld->toks[i].line;
    if ((size_t)v < ld->ntoks && ld->toks[v].ch == '{' &&
        ld->toks[v].match > v) {
      lo = v + 1;
      hi = ld->toks[v].match;
      strict = 1;
    } else {
      lo = 0;
      hi = (long)ld->ntoks;
      strict = 0;
    }
  }
  if (pos)
    *pos = at;
  return line ? line : 1;
}

#define LOCATE(ld, ...)                                                        \
  locate((ld), (const char *const[]){ __VA_ARGS__ },                           \
         sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(char *), NULL)

/* ---- helpers used inside the protected walk ---------------------------- */

static int
ld_oom(loader *ld)
{
  ld->sb->enomem = 1;
  return luaL_error(ld->L, "out of memory");
}

/* A temporary block, freed when the load ends however it ends. */
static void *
ld_scratch(loader *ld, size_t n)
{
  if (n > SIZE_MAX - sizeof(max_align_t))
    ld_oom(ld);
  void **blk = flow__malloc(ld->a, sizeof(max_align_t) + n);
  if (blk == NULL)
    ld_oom(ld);
  *blk = ld->scratch;
  ld->scratch = blk;
  return (char *)blk + sizeof(max_align_t);
}

static char *
ld_strdup(loader *ld, const char *s)
{
  char *d = flow__strdup(ld->a, s);
  if (d == NULL)
    ld_oom(ld);
  return d;
}

/* One step of a walk over the definition: charged to the load (a lua_next
   on a table whose keys collide costs the chain). */
static void
ld_tick(loader *ld)
{
  if (flow__sb_spend(ld->sb, 1))
    flow__sb_check(ld->L);
}

static void
problem_add(loader *ld, int line, const char *fmt, ...) FLOW__PRINTF(3, 4);

static int problem_cmp(const void *pa, const void *pb);

/*
 * Keeps a problem.  Past FLOW__MAX_PROBLEMS only the first FLOW__MAX_PROBLEMS in line
 * order are kept (and the rest counted), so a report is the same however
 * Lua's seeded table order made them come: the list is sorted once full,
 * and a problem that sorts before its last replaces it.  Each problem is
 * charged to the load's budget.
 */
static void
problem_add(loader *ld, int line, const char *fmt, ...)
{
  if (flow__sb_spend(ld->sb, 16))
    flow__sb_check(ld->L);
  if (ld->nprobs == FLOW__MAX_PROBLEMS) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!ld->probs_sorted) {
      qsort(ld->probs, ld->nprobs, sizeof *ld->probs, problem_cmp);
      ld->probs_sorted = 1;
    }
    problem cand = { line, ld->nprobs + ld->dropped, buf };
    ld->dropped++;
    if (problem_cmp(&cand, &ld->probs[ld->nprobs - 1]) >= 0)
      return;
    size_t lo = 0, hi = ld->nprobs - 1;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (problem_cmp(&ld->probs[mid], &cand) <= 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    char *msg = ld_strdup(ld, buf);
    flow__free(ld->a, ld->probs[ld->nprobs - 1].msg);
    memmove(&ld->probs[lo + 1], &ld->probs[lo],
            (ld->nprobs - 1 - lo) * sizeof *ld->probs);
    ld->probs[lo] = cand;
    ld->probs[lo].msg = msg;
    return;
  }
  if (ld->nprobs == ld->capprobs) {
    size_t ncap = ld->capprobs ? ld->capprobs * 2 : 16;
    problem *np = flow__realloc(ld->a, ld->probs, ncap * sizeof *np);
    if (np == NULL)
      ld_oom(ld);
    ld->probs = np;
    ld->capprobs = ncap;
  }
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  problem *p = &ld->probs[ld->nprobs];
  p->msg = ld_strdup(ld, buf);
  p->line = line;
  p->seq = ld->nprobs++;
}

/* 1 if the string at idx is valid UTF-8: everything a script names
   (titles, values, patterns) ends up in JSON. */
static int
utf8_at(lua_State *L, int idx)
{
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  return flow__utf8_valid(s, len);
}

/* Pushes t[key] read raw; returns its type. */
static int
rawfield(lua_State *L, int t, const char *key)
{
  t = lua_absindex(L, t);
  lua_pushstring(L, key);
  return lua_rawget(L, t);
}

static const char *
type_at(lua_State *L, int idx)
{
  return lua_typename(L, lua_type(L, idx));
}

/* A short printable form of the key at idx for messages. */
static const char *
key_text(lua_State *L, int idx, char *buf, size_t len)
{
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    snprintf(buf, len, "'%.60s'", lua_tostring(L, idx));
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      snprintf(buf, len, "[%lld]", (long long)lua_tointeger(L, idx));
    else
      snprintf(buf, len, "[%.14g]", (double)lua_tonumber(L, idx));
    break;
  default:
    snprintf(buf, len, "of type %s", type_at(L, idx));
    break;
  }
  return buf;
}

/* Optimal string alignment distance (Levenshtein plus transpositions),
   so 'enetr' is one step from 'enter'. */
static size_t
edit_distance(const char *a, const char *b)
{
  size_t n = strlen(a), m = strlen(b);
  if (n > 32 || m > 32)
    return SIZE_MAX;
  size_t d[33][33];
  for (size_t i = 0; i <= n; i++)
    d[i][0] = i;
  for (size_t j = 0; j <= m; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= n; i++) {
    for (size_t j = 1; j <= m; j++) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best)
        best = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < best)
        best = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  }
  return d[n][m];
}

/* " (did you mean 'x'?)" for the closest known word within 2 edits, else
   " (known keys: a, b, c)". */
static void
suggestion(const char *word, const char *const *known, char *buf,
           size_t len)
{
  const char *best = NULL;
  size_t bestd = 3;
  for (size_t i = 0; known[i]; i++) {
    size_t d = edit_distance(word, known[i]);
    if (d < bestd) {
      bestd = d;
      best = known[i];
    }
  }
  if (best) {
    snprintf(buf, len, " (did you mean '%s'?)", best);
    return;
  }
  flow__join j;
  flow__join_init(&j, buf, len);
  flow__join_text(&j, " (known keys: ");
  for (size_t i = 0; known[i]; i++)
    flow__join_add(&j, ", ", known[i]);
  flow__join_text(&j, ")");
}

/* 1 if the key at -2 (during lua_next) is a string in known; otherwise
   reports it: "<owner> has an unknown key 'x' (did you mean 'y'?)". */
static int
check_key(loader *ld, const char *const *known, int line, const char *owner)
{
  lua_State *L = ld->L;
  if (lua_type(L, -2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, -2);
    for (size_t i = 0; known[i]; i++)
      if (strcmp(k, known[i]) == 0)
        return 1;
    char hint[256];
    suggestion(k, known, hint, sizeof hint);
    problem_add(ld, line, "%s has an unknown key '%.60s'%s", owner, k, hint);
    return 0;
  }
  char kt[96];
  problem_add(ld, line, "%s has a key %s; only named keys are allowed here",
              owner, key_text(L, -2, kt, sizeof kt));
  return 0;
}

/* The line of the key at -2 (a string) inside the entry at prefix. */
static int
key_line(loader *ld, const char *const *prefix, size_t n)
{
  const char *path[8];
  for (size_t i = 0; i < n && i < 7; i++)
    path[i] = prefix[i];
  if (lua_type(ld->L, -2) != LUA_TSTRING)
    return locate(ld, path, n, NULL);
  path[n] = lua_tostring(ld->L, -2);
  return locate(ld, path, n + 1, NULL);
}

/* Copies a string-valued Lua list at idx (keys 1..n, all strings) into
   *out, counting in *nout as it goes so that a structure freed halfway
   frees what was copied; returns n, or -1 when it is not such a list. */
static long
string_list(loader *ld, int idx, char ***out, size_t *nout)
{
  lua_State *L = ld->L;
  *out = NULL;
  *nout = 0;
  size_t n = lua_rawlen(L, idx), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    ld_tick(ld);
    count++;
    int ok = lua_type(L, -1) == LUA_TSTRING && lua_isinteger(L, -2) &&
             lua_tointeger(L, -2) >= 1 &&
             (size_t)lua_tointeger(L, -2) <= n &&
             flow__utf8_valid(lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_pop(L, 1);
    if (!ok) {
      lua_pop(L, 1);
      return -1;
    }
  }
  if (count != n)
    return -1;
  if (n == 0)
    return 0;
  char **v = flow__calloc(ld->a, n, sizeof *v);
  if (v == NULL)
    ld_oom(ld);
  *out = v; /* owned by the caller's structure from here on */
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    v[i] = ld_strdup(ld, lua_tostring(L, -1));
    *nout = i + 1;
    lua_pop(L, 1);
  }
  return (long)n;
}

/* Keeps the function at idx in the registry. */
static int
keep_function(lua_State *L, int idx)
{
  lua_pushvalue(L, idx);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int
function_line(lua_State *L, int idx)
{
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">S", &ar);
  return ar.linedefined > 0 ? ar.linedefined : 1;
}

static int
str_cmp(const void *pa, const void *pb)
{
  return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

static int
has_state(const loader *ld, const char *name)
{
  if (!ld->have_states)
    return 1; /* already reported; do not pile up follow-on errors */
  return bsearch(&name, ld->state_index, ld->svc->nstates,
                 sizeof *ld->state_index, str_cmp) != NULL;
}

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
  int ty = rawfield(L, -1, key);
  if (ty == LUA_TNUMBER) {
    *has = 1;
    *v = (double)lua_tonumber(L, -1);
  } else if (ty != LUA_TNIL) {
    problem_add(ld, line, "%s of field '%s' must be a number, not a %s", key,
                f->name, type_at(L, -1));
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
    ld_tick(ld);
    check_key(ld, field_keys, key_line(ld, prefix, 2), owner);
    lua_pop(L, 1);
  }

  lua_pushvalue(L, spec);
  int line = LOCATE(ld, "fields", fn, "type");
  int ty = rawfield(L, -1, "type");
  char names[160];
  flow__join jn;
  flow__join_init(&jn, names, sizeof names);
  for (int i = 0; flow__ftype_name(i); i++)
    flow__join_add(&jn, ", ", flow__ftype_name(i));
  if (ty == LUA_TNIL) {
    problem_add(ld, f->line, "field '%s' needs a type (use one of %s)", fn,
                names);
  } else if (ty != LUA_TSTRING) {
    problem_add(ld, line, "type of field '%s' must be a string (one of %s), "
                "not a %s", fn, names, type_at(L, -1));
  } else if ((f->type = flow__ftype_from_name(lua_tostring(L, -1))) < 0) {
    problem_add(ld, line, "field '%s' has unknown type '%.40s' (use one of %s)",
                fn, lua_tostring(L, -1), names);
  }
  lua_pop(L, 1);

  static const char *const flags[] = { "required", "pii", "index" };
  int *slots[] = { &f->required, &f->pii, &f->index };
  for (size_t i = 0; i < 3; i++) {
    ty = rawfield(L, -1, flags[i]);
    if (ty == LUA_TBOOLEAN)
      *slots[i] = lua_toboolean(L, -1);
    else if (ty != LUA_TNIL)
      problem_add(ld, LOCATE(ld, "fields", fn, flags[i]),
                  "%s of field '%s' must be true or false, not a %s",
                  flags[i], fn, type_at(L, -1));
    lua_pop(L, 1);
  }

  static const char *const texts[] = { "title", "description" };
  for (size_t i = 0; i < 2; i++) {
    ty = rawfield(L, -1, texts[i]);
    if (ty == LUA_TSTRING && !utf8_at(L, -1))
      problem_add(ld, LOCATE(ld, "fields", fn, texts[i]),
                  "%s of field '%s' is not valid UTF-8 text", texts[i], fn);
    else if (ty == LUA_TSTRING && i == 0)
      f->title = ld_strdup(ld, lua_tostring(L, -1));
    else if (ty != LUA_TNIL && ty != LUA_TSTRING)
      problem_add(ld, LOCATE(ld, "fields", fn, texts[i]),
                  "%s of field '%s' must be a string, not a %s", texts[i],
                  fn, type_at(L, -1));
    lua_pop(L, 1);
  }

  line = LOCATE(ld, "fields", fn, "pattern");
  ty = rawfield(L, -1, "pattern");
  if (ty == LUA_TSTRING && !utf8_at(L, -1)) {
    problem_add(ld, line, "the pattern of field '%s' is not valid UTF-8 "
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
          problem_add(ld, line, "field '%s' has an invalid pattern: %s", fn,
                      lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    } else {
      problem_add(ld, line, "field '%s' has an invalid pattern: %s", fn, why);
    }
    if (f->type >= 0 && f->type != FLOW__F_STRING)
      problem_add(ld, line, "field '%s' has a pattern but is of type %s "
                  "(patterns are for strings)", fn, flow__ftype_name(f->type));
    f->pattern = ld_strdup(ld, pat);
  } else if (ty != LUA_TNIL) {
    problem_add(ld, line, "pattern of field '%s' must be a string (a Lua "
                "pattern like \"^%%d+$\"), not a %s", fn, type_at(L, -1));
  }
  lua_pop(L, 1);

  number_limit(ld, f, "min", &f->has_min, &f->min,
               LOCATE(ld, "fields", fn, "min"));
  number_limit(ld, f, "max", &f->has_max, &f->max,
               LOCATE(ld, "fields", fn, "max"));
  if ((f->has_min || f->has_max) && f->type >= 0 &&
      f->type != FLOW__F_STRING && f->type != FLOW__F_INTEGER &&
      f->type != FLOW__F_NUMBER && f->type != FLOW__F_LIST)
    problem_add(ld, f->line, "field '%s' of type %s cannot have min or max "
                "(they are for string, integer, number and list fields)", fn,
                flow__ftype_name(f->type));
  if (f->has_min && f->has_max && f->min > f->max)
    problem_add(ld, LOCATE(ld, "fields", fn, "min"),
                "field '%s' has min %g greater than max %g", fn, f->min,
                f->max);

  line = LOCATE(ld, "fields", fn, "values");
  ty = rawfield(L, -1, "values");
  if (ty == LUA_TNIL) {
    if (f->type == FLOW__F_ENUM)
      problem_add(ld, f->line, "field '%s' is an enum and needs its values: "
                  "add `values = { \"a\", \"b\" }`", fn);
  } else if (f->type >= 0 && f->type != FLOW__F_ENUM) {
    problem_add(ld, line, "field '%s' has values but is of type %s (values "
                "are for type = \"enum\")", fn, flow__ftype_name(f->type));
  } else if (ty != LUA_TTABLE) {
    problem_add(ld, line, "values of field '%s' must be a list of strings, "
                "not a %s", fn, type_at(L, -1));
  } else {
    long nv = string_list(ld, lua_gettop(L), &f->values, &f->nvalues);
    if (nv <= 0) {
      problem_add(ld, line, "values of field '%s' must be a non-empty list "
                  "of strings like { \"a\", \"b\" }", fn);
    } else {
      /* Sorted copies put duplicates side by side (a long list must not
         cost a quadratic check). */
      const char **sorted = ld_scratch(ld, f->nvalues * sizeof *sorted);
      for (size_t i = 0; i < f->nvalues; i++)
        sorted[i] = f->values[i];
      qsort(sorted, f->nvalues, sizeof *sorted, str_cmp);
      for (size_t i = 1; i < f->nvalues; i++)
        if (strcmp(sorted[i], sorted[i - 1]) == 0 &&
            (i < 2 || strcmp(sorted[i], sorted[i - 2]) != 0))
          problem_add(ld, line, "values of field '%s' list '%.60s' more "
                      "than once", fn, sorted[i]);
    }
  }
  lua_pop(L, 2); /* values, spec copy */
}

static void
read_fields(loader *ld, int fields)
{
  lua_State *L = ld->L;
  flow__service *svc = ld->svc;
  int line = LOCATE(ld, "fields");
  if (lua_type(L, fields) != LUA_TTABLE) {
    problem_add(ld, line, "fields must be a table of field names to specs "
                "like { uprn = { type = \"string\" } }, not a %s",
                type_at(L, fields));
    return;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, fields)) {
    ld_tick(ld);
    n++;
    lua_pop(L, 1);
  }
  if (n == 0)
    return;
  if (n > FLOW__MAX_FIELDS) {
    problem_add(ld, line, "fields has %zu fields; a service may have at most "
                "%d (group related values in an object field)", n,
                FLOW__MAX_FIELDS);
    return;
  }
  if ((svc->fields = flow__calloc(ld->a, n, sizeof *svc->fields)) == NULL)
    ld_oom(ld);
  const char *prefix[] = { "fields" };
  lua_pushnil(L);
  while (lua_next(L, fields)) {
    ld_tick(ld);
    int kline = key_line(ld, prefix, 1);
    char kt[96];
    if (lua_type(L, -2) != LUA_TSTRING) {
      problem_add(ld, line, "fields has a key %s; fields must be named, "
                  "like uprn = { type = \"string\" }",
                  key_text(L, -2, kt, sizeof kt));
    } else {
      size_t klen;
      const char *name = lua_tolstring(L, -2, &klen);
      if (!flow__name_ok(name, klen, 1) || klen > FLOW__MAX_NAME) {
        problem_add(ld, kline, "field name '%.60s' must start with a "
                    "lower-case letter or _ and use only a-z, 0-9 and _ "
                    "(at most 64)", name);
      } else if (lua_type(L, -1) != LUA_TTABLE) {
        problem_add(ld, kline, "field '%s' must be a table like { type = "
                    "\"string\" }, not a %s", name, type_at(L, -1));
      } else {
        flow__field *f = &svc->fields[svc->nfields++];
        f->name = ld_strdup(ld, name);
        read_field(ld, f, lua_gettop(L));
      }
    }
    lua_pop(L, 1);
  }
  if (svc->nfields > 1)
    qsort(svc->fields, svc->nfields, sizeof *svc->fields, field_cmp);
}

/* ---- states ------------------------------------------------------------ */

static const char *const top_keys[] = {
  "name",   "version", "title", "description", "fields",
  "initial", "states", "sla",   "budget",      NULL,
};
static const char *const state_keys[] = {
  "on", "enter", "exit", "final", "after", "title", NULL,
};
static const char *const trans_keys[] = {
  "to", "roles", "guard", "handler", NULL,
};
static const char *const after_keys[] = { "to", "event", "payload", NULL };
static const char *const sla_keys[] = { "within", "warn", NULL };
static const char *const budget_keys[] = {
  "instructions", "cpu_ms", "memory_mb", NULL,
};

typedef struct placed {
  long pos;       /* token index where it is written, LONG_MAX unknown */
  const char *name;
  size_t idx;
} placed;

static int
placed_cmp(const void *pa, const void *pb)
{
  const placed *a = pa, *b = pb;
  if (a->pos != b->pos)
    return a->pos < b->pos ? -1 : 1;
  return strcmp(a->name, b->name);
}

static int
trans_cmp(const void *pa, const void *pb)
{
  const flow__trans *a = pa, *b = pb;
  return strcmp(a->event, b->event);
}

static void
unknown_target(loader *ld, int line, const char *what, const char *target)
{
  problem_add(ld, line, "%s goes to state '%.60s', which does not exist "
              "(states: %s)", what, target, ld->state_list);
}

/* One entry of a state's `on`: key at -2, value at -1. */
static void
read_trans(loader *ld, flow__state *st, flow__trans *tr, int line)
{
  lua_State *L = ld->L;
  int v = lua_gettop(L);
  char what[200];
  snprintf(what, sizeof what, "event '%s' in state '%s'", tr->event,
           st->name);
  tr->line = line;
  switch (lua_type(L, v)) {
  case LUA_TSTRING:
    tr->target = ld_strdup(ld, lua_tostring(L, v));
    if (!has_state(ld, tr->target))
      unknown_target(ld, line, what, tr->target);
    return;
  case LUA_TFUNCTION:
    tr->line = function_line(L, v);
    tr->handler = keep_function(L, v);
    return;
  case LUA_TTABLE:
    break;
  default:
    problem_add(ld, line, "%s must be a state name, a function(case, ev) or "
                "a table like { to = \"closed\", roles = { \"crew\" } }, not "
                "a %s", what, type_at(L, v));
    return;
  }
  const char *prefix[] = { "states", st->name, "on", tr->event };
  lua_pushnil(L);
  while (lua_next(L, v)) {
    ld_tick(ld);
    check_key(ld, trans_keys, key_line(ld, prefix, 4), what);
    lua_pop(L, 1);
  }
  int kline = LOCATE(ld, "states", st->name, "on", tr->event, "to");
  int ty = rawfield(L, v, "to");
  if (ty == LUA_TSTRING) {
    tr->target = ld_strdup(ld, lua_tostring(L, -1));
    if (!has_state(ld, tr->target))
      unknown_target(ld, kline, what, tr->target);
  } else if (ty != LUA_TNIL) {
    problem_add(ld, kline, "to of %s must be a state name (a string), not a "
                "%s", what, type_at(L, -1));
  }
  lua_pop(L, 1);

  kline = LOCATE(ld, "states", st->name, "on", tr->event, "roles");
  ty = rawfield(L, v, "roles");
  if (ty == LUA_TTABLE) {
    if (string_list(ld, lua_gettop(L), &tr->roles, &tr->nroles) < 0)
      problem_add(ld, kline, "roles of %s must be a list of strings like "
                  "{ \"crew\", \"supervisor\" }", what);
  } else if (ty != LUA_TNIL) {
    problem_add(ld, kline, "roles of %s must be a list of strings like "
                "{ \"crew\" }, not a %s", what, type_at(L, -1));
  }
  lua_pop(L, 1);

  static const char *const fkeys[] = { "guard", "handler" };
  for (size_t i = 0; i < 2; i++) {
    ty = rawfield(L, v, fkeys[i]);
    if (ty == LUA_TFUNCTION) {
      int ref = keep_function(L, lua_gettop(L));
      if (i == 0)
        tr->guard = ref;
      else
        tr->handler = ref;
    } else if (ty != LUA_TNIL) {
      problem_add(ld, LOCATE(ld, "states", st->name, "on", tr->event,
                             fkeys[i]),
                  "%s of %s must be a function(case, ev), not a %s", fkeys[i],
                  what, type_at(L, -1));
    }
    lua_pop(L, 1);
  }
  int has_to = (rawfield(L, v, "to") != LUA_TNIL);
  int has_handler = (rawfield(L, v, "handler") != LUA_TNIL);
  lua_pop(L, 2);
  if (!has_to && !has_handler)
    problem_add(ld, line, "%s needs `to = \"<state>\"` or `handler = "
                "function(case, ev) ... end`", what);
}

static void
read_on(loader *ld, flow__state *st, int on, int line)
{
  lua_State *L = ld->L;
  if (lua_type(L, on) != LUA_TTABLE) {
    problem_add(ld, line, "on in state '%s' must be a table of event names "
                "like { collect = \"closed\" }, not a %s", st->name,
                type_at(L, on));
    return;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, on)) {
    ld_tick(ld);
    n++;
    lua_pop(L, 1);
  }
  if (n == 0)
    return;
  if (n > FLOW__MAX_EVENTS) {
    problem_add(ld, line, "on in state '%s' has %zu events; a state may take "
                "at most %d", st->name, n, FLOW__MAX_EVENTS);
    return;
  }
  if ((st->on = flow__calloc(ld->a, n, sizeof *st->on)) == NULL)
    ld_oom(ld);
  const char *prefix[] = { "states", st->name, "on" };
  lua_pushnil(L);
  while (lua_next(L, on)) {
    ld_tick(ld);
    int kline = key_line(ld, prefix, 3);
    char kt[96];
    if (lua_type(L, -2) != LUA_TSTRING) {
      problem_add(ld, kline, "on in state '%s' has a key %s; events must be "
                  "named, like collect = \"closed\"", st->name,
                  key_text(L, -2, kt, sizeof kt));
    } else {
      size_t klen;
      const char *ev = lua_tolstring(L, -2, &klen);
      if (!flow__name_ok(ev, klen, 0) || klen > FLOW__MAX_NAME) {
        problem_add(ld, kline, "event name '%.60s' in state '%s' must start "
                    "with a lower-case letter and use only a-z, 0-9 and _",
                    ev, st->name);
      } else if (strcmp(ev, "open") == 0) {
        problem_add(ld, kline, "event name 'open' in state '%s' is reserved "
                    "(it is the event that opens a case); use another name",
                    st->name);
      } else {
        flow__trans *tr = &st->on[st->non++];
        tr->handler = tr->guard = FLOW__NOREF;
        tr->event = ld_strdup(ld, ev);
        read_trans(ld, st, tr, kline);
      }
    }
    lua_pop(L, 1);
  }
  if (st->non > 1)
    qsort(st->on, st->non, sizeof *st->on, trans_cmp);
}

static int
trans_key_cmp(const void *key, const void *elem)
{
  return strcmp(key, ((const flow__trans *)elem)->event);
}

/* st->on is sorted by event by the time `after` is read. */
static int
handles(const flow__state *st, const char *event)
{
  if (st->non == 0)
    return 0; /* st->on is NULL, which bsearch must not be given */
  return bsearch(event, st->on, st->non, sizeof *st->on, trans_key_cmp) !=
         NULL;
}

/* One entry of a state's `after`: key at -2, value at -1. */
static void
read_after_entry(loader *ld, flow__state *st, flow__after *af, int line)
{
  lua_State *L = ld->L;
  int v = lua_gettop(L);
  char what[200];
  snprintf(what, sizeof what, "after '%s' in state '%s'", af->duration,
           st->name);
  af->line = line;
  flow__err perr;
  flow__err_clear(&perr);
  if (flow__duration_parse(af->duration, &af->dur, &perr) != 0)
    problem_add(ld, line, "%s: %s", what, perr.msg);
  if (lua_type(L, v) == LUA_TSTRING) {
    af->target = ld_strdup(ld, lua_tostring(L, v));
    if (!has_state(ld, af->target))
      unknown_target(ld, line, what, af->target);
    return;
  }
  if (lua_type(L, v) != LUA_TTABLE) {
    problem_add(ld, line, "%s must be a state name or a table like "
                "{ event = \"remind\" }, not a %s", what, type_at(L, v));
    return;
  }
  const char *prefix[] = { "states", st->name, "after", af->duration };
  lua_pushnil(L);
  while (lua_next(L, v)) {
    ld_tick(ld);
    check_key(ld, after_keys, key_line(ld, prefix, 4), what);
    lua_pop(L, 1);
  }
  int ty = rawfield(L, v, "to");
  if (ty == LUA_TSTRING) {
    af->target = ld_strdup(ld, lua_tostring(L, -1));
    if (!has_state(ld, af->target))
      unknown_target(ld, line, what, af->target);
  } else if (ty != LUA_TNIL) {
    problem_add(ld, line, "to of %s must be a state name, not a %s", what,
                type_at(L, -1));
  }
  lua_pop(L, 1);
  ty = rawfield(L, v, "event");
  if (ty == LUA_TSTRING) {
    size_t elen;
    const char *ev = lua_tolstring(L, -1, &elen);
    af->event = ld_strdup(ld, ev);
    if (!flow__name_ok(ev, elen, 0))
      problem_add(ld, line, "%s fires event '%.60s', which is not an event "
                  "name (a-z, 0-9 and _)", what, ev);
    else if (!handles(st, ev))
      problem_add(ld, line, "%s fires event '%s', which state '%s' does not "
                  "handle (add it to the state's `on`)", what, ev, st->name);
  } else if (ty != LUA_TNIL) {
    problem_add(ld, line, "event of %s must be an event name, not a %s", what,
                type_at(L, -1));
  }
  lua_pop(L, 1);
  ty = rawfield(L, v, "payload");
  if (ty == LUA_TTABLE) {
    char msg[512];
    int rc = flow__json_from_lua_sb(L, -1, "payload", ld->sb, &af->payload,
                                    NULL, msg, sizeof msg);
    if (rc == FLOW_ENOMEM)
      ld_oom(ld);
    if (rc == FLOW_ELIMIT)
      flow__sb_check(L); /* the load's budget is gone: stop it here */
    if (rc != 0)
      problem_add(ld, line, "%s: %s", what, msg);
    else if (!json_is_object(af->payload))
      problem_add(ld, line, "payload of %s must be a table with named keys",
                  what);
    if (af->event == NULL)
      problem_add(ld, line, "%s has a payload but no event to carry it",
                  what);
  } else if (ty != LUA_TNIL) {
    problem_add(ld, line, "payload of %s must be a table, not a %s", what,
                type_at(L, -1));
  }
  lua_pop(L, 1);
  if (af->target && af->event)
    problem_add(ld, line, "%s has both `to` and `event`; use one", what);
  else if (!af->target && !af->event)
    problem_add(ld, line, "%s needs `to = \"<state>\"` or `event = "
                "\"<name>\"`", what);
}

static void
read_after(loader *ld, flow__state *st, int after, int line)
{
  lua_State *L = ld->L;
  if (lua_type(L, after) != LUA_TTABLE) {
    problem_add(ld, line, "after in state '%s' must be a table like "
                "{ [\"2 working days\"] = \"escalated\" }, not a %s",
                st->name, type_at(L, after));
    return;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, after)) {
    ld_tick(ld);
    n++;
    lua_pop(L, 1);
  }
  if (n == 0)
    return;
  /* Each entry is a timer set, a calendar walk done, whenever a case
     enters the state. */
  if (n > FLOW__MAX_AFTER) {
    problem_add(ld, line, "after in state '%s' has %zu entries; a state may "
                "have at most %d (one timer whose event sets the next does "
                "the same)", st->name, n, FLOW__MAX_AFTER);
    return;
  }
  if ((st->after = flow__calloc(ld->a, n, sizeof *st->after)) == NULL)
    ld_oom(ld);
  placed *order = ld_scratch(ld, n * sizeof *order);
  const char *prefix[] = { "states", st->name, "after" };
  lua_pushnil(L);
  while (lua_next(L, after)) {
    ld_tick(ld);
    char kt[96];
    if (lua_type(L, -2) != LUA_TSTRING) {
      problem_add(ld, line, "after in state '%s' has a key %s; keys are "
                  "durations like [\"2 working days\"]", st->name,
                  key_text(L, -2, kt, sizeof kt));
    } else {
      size_t i = st->nafter++;
      flow__after *af = &st->after[i];
      af->duration = ld_strdup(ld, lua_tostring(L, -2));
      if (strlen(af->duration) != lua_rawlen(L, -2))
        problem_add(ld, line, "after in state '%s' has a key with a zero "
                    "byte in it; keys are durations like "
                    "[\"2 working days\"]", st->name);
      const char *path[] = { prefix[0], prefix[1], prefix[2], af->duration };
      long pos;
      int kline = locate(ld, path, 4, &pos);
      order[i].pos = pos >= 0 && kline > 0 ? pos : LONG_MAX;
      order[i].name = af->duration;
      order[i].idx = i;
      read_after_entry(ld, st, af, kline);
    }
    lua_pop(L, 1);
  }
  /* As written, so timers are listed the way the author reads them. */
  if (st->nafter > 1) {
    qsort(order, st->nafter, sizeof *order, placed_cmp);
    flow__after *tmp = ld_scratch(ld, st->nafter * sizeof *tmp);
    memcpy(tmp, st->after, st->nafter * sizeof *tmp);
    for (size_t i = 0; i < st->nafter; i++)
      st->after[i] = tmp[order[i].idx];
  }
}

static void
read_state(loader *ld, flow__state *st, int t)
{
  lua_State *L = ld->L;
  char owner[160];
  snprintf(owner, sizeof owner, "state '%s'", st->name);
  const char *prefix[] = { "states", st->name };
  lua_pushnil(L);
  while (lua_next(L, t)) {
    ld_tick(ld);
    check_key(ld, state_keys, key_line(ld, prefix, 2), owner);
    lua_pop(L, 1);
  }
  int line, ty;

  line = LOCATE(ld, "states", st->name, "final");
  ty = rawfield(L, t, "final");
  if (ty == LUA_TBOOLEAN)
    st->final = lua_toboolean(L, -1);
  else if (ty != LUA_TNIL)
    problem_add(ld, line, "final in state '%s' must be true or false, not a "
                "%s", st->name, type_at(L, -1));
  lua_pop(L, 1);

  line = LOCATE(ld, "states", st->name, "title");
  ty = rawfield(L, t, "title");
  if (ty != LUA_TNIL && ty != LUA_TSTRING)
    problem_add(ld, line, "title of state '%s' must be a string, not a %s",
                st->name, type_at(L, -1));
  else if (ty == LUA_TSTRING && !utf8_at(L, -1))
    problem_add(ld, line, "title of state '%s' is not valid UTF-8 text",
                st->name);
  lua_pop(L, 1);

  static const char *const hooks[] = { "enter", "exit" };
  for (size_t i = 0; i < 2; i++) {
    line = LOCATE(ld, "states", st->name, hooks[i]);
    ty = rawfield(L, t, hooks[i]);
    if (ty == LUA_TFUNCTION) {
      int ref = keep_function(L, lua_gettop(L));
      if (i == 0)
        st->enter = ref;
      else
        st->exit = ref;
    } else if (ty != LUA_TNIL) {
      problem_add(ld, line, "%s in state '%s' must be a function(case), not "
                  "a %s", hooks[i], st->name, type_at(L, -1));
    }
    lua_pop(L, 1);
  }

  /* `on` first: `after` may fire one of its events. */
  line = LOCATE(ld, "states", st->name, "on");
  ty = rawfield(L, t, "on");
  if (ty != LUA_TNIL) {
    read_on(ld, st, lua_gettop(L), line);
    if (st->final && ty == LUA_TTABLE && st->non > 0)
      problem_add(ld, line, "state '%s' is final, so it cannot have `on` "
                  "events (remove them or drop `final = true`)", st->name);
  }
  lua_pop(L, 1);

  line = LOCATE(ld, "states", st->name, "after");
  ty = rawfield(L, t, "after");
  if (ty != LUA_TNIL) {
    read_after(ld, st, lua_gettop(L), line);
    if (st->final && ty == LUA_TTABLE && st->nafter > 0)
      problem_add(ld, line, "state '%s' is final, so it cannot have `after` "
                  "timers", st->name);
  }
  lua_pop(L, 1);
}

static void
read_states(loader *ld, int states)
{
  lua_State *L = ld->L;
  flow__service *svc = ld->svc;
  int line = LOCATE(ld, "states");
  if (lua_type(L, states) == LUA_TNIL) {
    problem_add(ld, 1, "the service needs states: add `states = { "
                "<name> = { ... }, ... }`");
    return;
  }
  if (lua_type(L, states) != LUA_TTABLE) {
    problem_add(ld, line, "states must be a table of state names to tables, "
                "not a %s", type_at(L, states));
    return;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, states)) {
    ld_tick(ld);
    n++;
    lua_pop(L, 1);
  }
  if (n == 0) {
    problem_add(ld, line, "states is empty: a service needs at least one "
                "state");
    return;
  }
  if (n > FLOW__MAX_STATES) {
    problem_add(ld, line, "states has %zu states; a service may have at most "
                "%d (split it into services)", n, FLOW__MAX_STATES);
    return;
  }

  /* Pass 1: the names, in the order they are written. */
  placed *order = ld_scratch(ld, n * sizeof *order);
  size_t good = 0;
  const char *prefix[] = { "states" };
  lua_pushnil(L);
  while (lua_next(L, states)) {
    ld_tick(ld);
    int kline = key_line(ld, prefix, 1);
    char kt[96];
    if (lua_type(L, -2) != LUA_TSTRING) {
      problem_add(ld, line, "states has a key %s; states must be named, like "
                  "closed = { final = true }", key_text(L, -2, kt, sizeof kt));
    } else {
      size_t klen;
      const char *name = lua_tolstring(L, -2, &klen);
      if (!flow__name_ok(name, klen, 0) || klen > FLOW__MAX_NAME) {
        problem_add(ld, kline, "state name '%.60s' must start with a "
                    "lower-case letter and use only a-z, 0-9 and _ (at most "
                    "64)", name);
      } else if (lua_type(L, -1) != LUA_TTABLE) {
        problem_add(ld, kline, "state '%s' must be a table (like `%s = { "
                    "final = true }`), not a %s", name, name, type_at(L, -1));
      } else {
        const char *path[] = { "states", name };
        long pos;
        locate(ld, path, 2, &pos);
        /* The key string stays alive: the states table holds it. */
        order[good].pos = pos >= 0 ? pos : LONG_MAX;
        order[good].name = name;
        order[good].idx = good;
        good++;
      }
    }
    lua_pop(L, 1);
  }
  if (good == 0)
    return;
  qsort(order, good, sizeof *order, placed_cmp);
  if ((svc->states = flow__calloc(ld->a, good, sizeof *svc->states)) == NULL)
    ld_oom(ld);
  flow__join listed;
  flow__join_init(&listed, ld->state_list, sizeof ld->state_list);
  for (size_t i = 0; i < good; i++) {
    flow__state *st = &svc->states[svc->nstates++];
    st->enter = st->exit = FLOW__NOREF;
    st->name = ld_strdup(ld, order[i].name);
    st->line = LOCATE(ld, "states", st->name);
    flow__join_add(&listed, ", ", st->name);
  }
  ld->state_index = ld_scratch(ld, svc->nstates * sizeof *ld->state_index);
  for (size_t i = 0; i < svc->nstates; i++)
    ld->state_index[i] = svc->states[i].name;
  qsort(ld->state_index, svc->nstates, sizeof *ld->state_index, str_cmp);
  ld->have_states = 1;

  /* Pass 2: what each state holds, now that every target can be checked. */
  for (size_t i = 0; i < svc->nstates; i++) {
    flow__state *st = &svc->states[i];
    lua_pushstring(L, st->name);
    lua_rawget(L, states);
    read_state(ld, st, lua_gettop(L));
    lua_pop(L, 1);
  }
}

/* ---- the top level ------------------------------------------------------ */

static void
read_duration(loader *ld, int line, const char *what, flow__duration *out,
              char **text)
{
  lua_State *L = ld->L;
  if (lua_type(L, -1) != LUA_TSTRING) {
    problem_add(ld, line, "%s must be a duration like \"5 working days\", "
                "not a %s", what, type_at(L, -1));
    return;
  }
  const char *s = lua_tostring(L, -1);
  flow__err perr;
  flow__err_clear(&perr);
  if (strlen(s) != lua_rawlen(L, -1))
    problem_add(ld, line, "%s must be a duration like \"5 working days\", "
                "not text with a zero byte in it", what);
  else if (flow__duration_parse(s, out, &perr) != 0)
    problem_add(ld, line, "%s: %s", what, perr.msg);
  else if (text)
    *text = ld_strdup(ld, s);
}

static void
read_sla(loader *ld, int sla)
{
  lua_State *L = ld->L;
  int line = LOCATE(ld, "sla");
  if (lua_type(L, sla) != LUA_TTABLE) {
    problem_add(ld, line, "sla must be a table like { within = \"5 working "
                "days\" }, not a %s", type_at(L, sla));
    return;
  }
  const char *prefix[] = { "sla" };
  lua_pushnil(L);
  while (lua_next(L, sla)) {
    ld_tick(ld);
    check_key(ld, sla_keys, key_line(ld, prefix, 1), "sla");
    lua_pop(L, 1);
  }
  if (rawfield(L, sla, "within") == LUA_TNIL)
    problem_add(ld, line, "sla needs `within = \"<duration>\"`, like "
                "\"5 working days\"");
  else
    read_duration(ld, LOCATE(ld, "sla", "within"), "sla within",
                  &ld->svc->sla, &ld->svc->sla_within);
  lua_pop(L, 1);
  if (rawfield(L, sla, "warn") != LUA_TNIL)
    read_duration(ld, LOCATE(ld, "sla", "warn"), "sla warn",
                  &ld->svc->sla_warn_dur, &ld->svc->sla_warn);
  lua_pop(L, 1);
}

static void
read_name(loader *ld, int def)
{
  lua_State *L = ld->L;
  int line = LOCATE(ld, "name");
  int ty = rawfield(L, def, "name");
  if (ty == LUA_TNIL) {
    problem_add(ld, 1, "the service needs a name: add `name = \"my_service\"` "
                "(lower-case letters, digits and _)");
  } else if (ty != LUA_TSTRING) {
    problem_add(ld, line, "name must be a string like \"missed_bin\", not a "
                "%s", type_at(L, -1));
  } else {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (len > FLOW__MAX_NAME)
      problem_add(ld, line, "name '%.64s...' is longer than 64 characters",
                  s);
    else if (!flow__name_ok(s, len, 0))
      problem_add(ld, line, "name '%s' must start with a lower-case letter "
                  "and use only a-z, 0-9 and _ (like \"missed_bin\")", s);
    else
      ld->svc->name = ld_strdup(ld, s);
  }
  lua_pop(L, 1);
}

static void
read_version(loader *ld, int def)
{
  lua_State *L = ld->L;
  int line = LOCATE(ld, "version");
  int ty = rawfield(L, def, "version");
  if (ty == LUA_TNIL) {
    problem_add(ld, 1, "the service needs a version: add `version = 1`");
  } else if (ty != LUA_TNUMBER) {
    problem_add(ld, line, "version must be a whole number like 1, not a %s",
                type_at(L, -1));
  } else if (!lua_isinteger(L, -1)) {
    /* 1.0 is a float in Lua 5.4; say why it is refused. */
    char num[64];
    snprintf(num, sizeof num, LUA_NUMBER_FMT, lua_tonumber(L, -1));
    if (num[strspn(num, "-0123456789")] == 0)
      strcat(num, ".0");
    problem_add(ld, line, "version must be a whole number written without "
                "a decimal point, like 1 (not %s)", num);
  } else if (lua_tointeger(L, -1) < 1) {
    problem_add(ld, line, "version must be 1 or more, not %lld",
                (long long)lua_tointeger(L, -1));
  } else {
    ld->svc->version = (int64_t)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
}

static void
read_initial(loader *ld, int def)
{
  lua_State *L = ld->L;
  int line = LOCATE(ld, "initial");
  int ty = rawfield(L, def, "initial");
  if (ty == LUA_TNIL) {
    problem_add(ld, 1, "the service needs an initial state: add `initial = "
                "\"<state>\"`");
  } else if (ty != LUA_TSTRING) {
    problem_add(ld, line, "initial must be a state name (a string), not a %s",
                type_at(L, -1));
  } else {
    const char *s = lua_tostring(L, -1);
    ld->svc->initial = ld_strdup(ld, s);
    if (!has_state(ld, s))
      problem_add(ld, line, "initial state '%.60s' does not exist (states: "
                  "%s)", s, ld->state_list);
  }
  lua_pop(L, 1);
}

/* budget = { instructions = N, cpu_ms = N, memory_mb = N }: lower than
   the engine's defaults freely, higher only up to its ceilings. */
static void
read_budget(loader *ld, int t)
{
  lua_State *L = ld->L;
  static const char *const prefix[] = { "budget" };
  ld->budget_line = LOCATE(ld, "budget");
  lua_pushnil(L);
  while (lua_next(L, t)) {
    ld_tick(ld);
    int line = key_line(ld, prefix, 1);
    if (check_key(ld, budget_keys, line, "budget")) {
      char msg[300];
      if (flow__sb_budget_entry(ld->sb, L, -2, -1, &ld->budget, msg,
                                sizeof msg) != 0)
        problem_add(ld, line, "%s", msg);
      else if (strcmp(lua_tostring(L, -2), "memory_mb") == 0)
        ld->budget_line = line;
    }
    lua_pop(L, 1);
  }
}

/* The definition is argument 1, the loader argument 2. */
static int
walk_p(lua_State *L)
{
  loader *ld = lua_touserdata(L, 2);
  const int def = 1;
  lua_settop(L, 2);

  lua_pushnil(L);
  while (lua_next(L, def)) {
    const char *none[] = { NULL };
    int kline = key_line(ld, none, 0);
    if (lua_type(L, -2) == LUA_TSTRING) {
      check_key(ld, top_keys, kline, "the service definition");
    } else {
      char kt[96];
      problem_add(ld, kline, "the service definition has a key %s; use named "
                  "keys like name = ..., states = ...",
                  key_text(L, -2, kt, sizeof kt));
    }
    lua_pop(L, 1);
  }

  read_name(ld, def);
  read_version(ld, def);
  static const char *const texts[] = { "title", "description" };
  for (size_t i = 0; i < 2; i++) {
    int ty = rawfield(L, def, texts[i]);
    if (ty == LUA_TSTRING && !utf8_at(L, -1))
      problem_add(ld, LOCATE(ld, texts[i]), "%s is not valid UTF-8 text",
                  texts[i]);
    else if (ty == LUA_TSTRING && i == 0)
      ld->svc->title = ld_strdup(ld, lua_tostring(L, -1));
    else if (ty != LUA_TNIL && ty != LUA_TSTRING)
      problem_add(ld, LOCATE(ld, texts[i]), "%s must be a string, not a %s",
                  texts[i], type_at(L, -1));
    lua_pop(L, 1);
  }
  int ty = rawfield(L, def, "budget");
  if (ty == LUA_TTABLE)
    read_budget(ld, lua_gettop(L));
  else if (ty != LUA_TNIL)
    problem_add(ld, LOCATE(ld, "budget"), "budget must be a table, not a %s",
                type_at(L, -1));
  lua_pop(L, 1);

  if (rawfield(L, def, "fields") != LUA_TNIL)
    read_fields(ld, lua_gettop(L));
  lua_pop(L, 1);
  rawfield(L, def, "states");
  read_states(ld, lua_gettop(L));
  lua_pop(L, 1);
  read_initial(ld, def);
  if (rawfield(L, def, "sla") != LUA_TNIL)
    read_sla(ld, lua_gettop(L));
  lua_pop(L, 1);
  return 0;
}

/* ---- entry point ------------------------------------------------------- */

static int
problem_cmp(const void *pa, const void *pb)
{
  const problem *a = pa, *b = pb;
  if (a->line != b->line)
    return a->line < b->line ? -1 : 1;
  /* Lua's table order is seeded per process, so the order problems were
     found in is not stable; their text is. */
  int r = strcmp(a->msg, b->msg);
  if (r != 0)
    return r;
  return (a->seq > b->seq) - (a->seq < b->seq);
}

/* Every problem as "CHUNK:LINE: message", one per line, in line order.
   When they do not all fit one error message, the last line says how many
   more there are. */
static int
report(loader *ld, flow__err *err)
{
  qsort(ld->probs, ld->nprobs, sizeof *ld->probs, problem_cmp);
  char *out = err ? err->msg : NULL;
  size_t cap = err ? sizeof err->msg : 0, n = 0;
  for (size_t i = 0; out && i < ld->nprobs; i++) {
    char line[1200];
    int l = snprintf(line, sizeof line, "%s%s:%d: %s", i ? "\n" : "",
                     ld->chunk, ld->probs[i].line, ld->probs[i].msg);
    if (l < 0)
      l = 0;
    if ((size_t)l >= sizeof line)
      l = (int)sizeof line - 1;
    char more[64];
    int ml = snprintf(more, sizeof more, "\n(%zu more problems)",
                      ld->nprobs - i + ld->dropped);
    int last = i + 1 == ld->nprobs;
    if (n + (size_t)l + (last ? 0 : (size_t)ml) >= cap) {
      snprintf(out + n, cap - n, "%s", more + (i ? 0 : 1));
      break;
    }
    memcpy(out + n, line, (size_t)l + 1);
    n += (size_t)l;
    if (last && ld->dropped > 0)
      snprintf(out + n, cap - n, "\n(%zu more problems)", ld->dropped);
  }
  if (err)
    err->code = FLOW_ESCRIPT;
  return FLOW_ESCRIPT;
}

/*
 * Lua writes "name:LINE: msg" but shortens a long chunk name to
 * "...tail"; put the full name back, and give messages without a position
 * (bytecode refused, error("x", 0)) line 1 so that every line of a report
 * reads CHUNK:LINE.
 */
static int
script_error(const char *chunk, const char *msg, flow__err *err)
{
  size_t cl = strlen(chunk);
  if (strncmp(msg, chunk, cl) == 0 && msg[cl] == ':' && is_digit(msg[cl + 1]))
    return flow__err_set(err, FLOW_ESCRIPT, "%s", msg);
  if (strncmp(msg, "...", 3) == 0) {
    const char *c = strchr(msg + 3, ':');
    if (c && is_digit(c[1])) {
      size_t tl = (size_t)(c - (msg + 3));
      if (tl <= cl && memcmp(chunk + cl - tl, msg + 3, tl) == 0)
        return flow__err_set(err, FLOW_ESCRIPT, "%s%s", chunk, c);
    }
  }
  return flow__err_set(err, FLOW_ESCRIPT, "%s:1: %s", chunk, msg);
}

static void
loader_free(loader *ld)
{
  for (size_t i = 0; i < ld->nprobs; i++)
    flow__free(ld->a, ld->probs[i].msg);
  flow__free(ld->a, ld->probs);
  flow__free(ld->a, ld->toks);
  while (ld->scratch) {
    void **blk = ld->scratch;
    ld->scratch = *blk;
    flow__free(ld->a, blk);
  }
}

int
flow__service_compile(flow__service *svc, flow__sandbox *sb,
                      const char *src, size_t len, const char *chunkname,
                      flow__err *err)
{
  lua_State *L = sb->L;
  const flow__allocator *a = sb->alloc;
  const char *chunk = chunkname ? chunkname : "service";
  loader ld;
  memset(&ld, 0, sizeof ld);
  ld.sb = sb;
  ld.L = L;
  ld.a = a;
  ld.svc = svc;
  ld.src = src;
  ld.len = len;
  ld.chunk = chunk;
  ld.scan_left = SCAN_BUDGET;
  int rc = 0;

  flow__run_abort(sb);
  lua_settop(L, 0);
  if (len > FLOW__MAX_SCRIPT)
    return flow__err_script_size(err, chunk, len);
  flow__sb_start(sb, "the script %s", chunk);
  sb->now = flow__sb_clock(sb);
  flow__sb_seed(sb, 0);

  svc->source = flow__strndup(a, src, len);
  svc->source_len = len;
  svc->chunkname = flow__strdup(a, chunk);
  if (svc->source == NULL || svc->chunkname == NULL) {
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory loading %s", chunk);
    goto done;
  }
  flow__sha256_hex(src, len, svc->sha256);

  /* "@name" makes Lua write "name:LINE:" in its messages. */
  flow__buf cn;
  flow__buf_init(&cn, a);
  flow__buf_addc(&cn, '@');
  flow__buf_adds(&cn, chunk);
  if (flow__buf_str(&cn) == NULL) {
    flow__buf_free(&cn);
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory loading %s", chunk);
    goto done;
  }
  int st = luaL_loadbufferx(L, src, len, flow__buf_str(&cn), "t");
  flow__buf_free(&cn);
  if (st == LUA_OK) {
    char msg[FLOW__ERRMSG_MAX];
    int line;
    if ((rc = flow__bytecode_check(L, sb, &line, msg, sizeof msg)) != 0) {
      if (rc == FLOW_ELIMIT)
        rc = flow__sb_outcome(sb, LUA_OK, NULL, err);
      else
        rc = flow__err_set(err, rc, "%s", msg);
      goto done;
    }
  }
  if (st == LUA_OK)
    st = lua_pcall(L, 0, LUA_MULTRET, 0);
  if (st != LUA_OK && st != LUA_ERRMEM && !sb->killed && !sb->enomem &&
      !sb->refused) {
    char msg[FLOW__ERRMSG_MAX];
    flow__sb_errobj(L, -1, msg, sizeof msg);
    rc = script_error(chunk, msg, err);
    goto done;
  }
  if ((rc = flow__sb_outcome(sb, st, NULL, err)) != 0) {
    if (rc == FLOW_EREFUSED)
      rc = flow__err_set(err, FLOW_ESCRIPT,
                         "%s:1: the script called flow.fail while loading: "
                         "%s", chunk, sb->refuse_msg);
    goto done;
  }

  int nres = lua_gettop(L);
  if (nres == 0 || lua_type(L, 1) != LUA_TTABLE) {
    rc = flow__err_set(err, FLOW_ESCRIPT,
                       "%s:1: the script must end with `return { name = ..., "
                       "... }` (it returned %s%s)", chunk,
                       nres == 0 ? "nothing" : "a ",
                       nres == 0 ? "" : type_at(L, 1));
    goto done;
  }
  lua_settop(L, 1);

  if (lex(&ld) != 0) {
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory loading %s", chunk);
    goto done;
  }
  /* Reading the definition is part of the load's unit: what it converts
     (timer payloads) is charged, as the script's top level was. */
  lua_pushcfunction(L, walk_p);
  lua_pushvalue(L, 1);
  lua_pushlightuserdata(L, &ld);
  st = lua_pcall(L, 2, 0, 0);
  if ((rc = flow__sb_outcome(sb, st, NULL, err)) != 0)
    goto done;
  if (ld.nprobs > 0) {
    rc = report(&ld, err);
    goto done;
  }
  if (flow__service_index(a, svc) != 0) {
    rc = flow__err_set(err, FLOW_ENOMEM, "out of memory loading %s", chunk);
    goto done;
  }
  /* From here on nothing the handlers can reach may change between runs;
     freezing is part of the load, under its budgets. */
  int line = 1;
  char msg[300];
  rc = flow__sb_freeze(sb, 1, &line, msg, sizeof msg, err);
  if (rc == FLOW_ESCRIPT) {
    rc = flow__err_set(err, FLOW_ESCRIPT, "%s:%d: %s", chunk, line, msg);
    goto done;
  }
  if (rc != 0)
    goto done;
  if (flow__sb_budget_apply(sb, &ld.budget, msg, sizeof msg) != 0) {
    rc = flow__err_set(err, FLOW_ESCRIPT, "%s:%d: %s", chunk,
                       ld.budget_line, msg);
    goto done;
  }
done:
  flow__sb_stop(sb);
  lua_settop(L, 0);
  loader_free(&ld);
  return rc;
}
