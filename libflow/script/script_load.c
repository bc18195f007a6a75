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
 * the source text: a small tokenizer (script_lex.c; comments and strings
 * skipped) and a search that follows the keys through the table
 * constructors of the returned table (flow__ld_locate, here).  Functions
 * carry their own line.  script_load.h says which file reads what.
 *
 * The definition belongs to the script, so it is read with raw access
 * only: no __index, __pairs or __len of the script's runs while loading.
 */
#include "script/script_load.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- finding lines ------------------------------------------------------ */

static int
tok_is(const flow__token *t, int kind, const char *s, size_t len)
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
  const flow__token *t = ld->tk.toks;
  size_t n = ld->tk.n;
  if (i == 0 || !(t[i - 1].ch == '{' || t[i - 1].ch == ',' ||
                  t[i - 1].ch == ';'))
    return -1;
  if (i + 1 < n && tok_is(&t[i], FLOW__TOK_NAME, key, klen) && t[i + 1].ch == '=')
    return (long)i + 2;
  if (i + 3 < n && t[i].ch == '[' &&
      tok_is(&t[i + 1], FLOW__TOK_STRING, key, klen) && t[i + 2].ch == ']' &&
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
    char ch = ld->tk.toks[i].ch;
    if (strict && (ch == '{' || ch == '(' || ch == '[') &&
        ld->tk.toks[i].match > i)
      i = ld->tk.toks[i].match;
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
int
flow__ld_locate(loader *ld, const char *const *path, size_t n, long *pos)
{
  long lo = ld->tk.root_lo, hi = ld->tk.root_hi, at = -1;
  int strict = ld->tk.root_strict, line = 0;
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
    line = ld->tk.toks[i].line;
    if ((size_t)v < ld->tk.n && ld->tk.toks[v].ch == '{' &&
        ld->tk.toks[v].match > v) {
      lo = v + 1;
      hi = ld->tk.toks[v].match;
      strict = 1;
    } else {
      lo = 0;
      hi = (long)ld->tk.n;
      strict = 0;
    }
  }
  if (pos)
    *pos = at;
  return line ? line : 1;
}

/* ---- helpers used inside the protected walk ---------------------------- */

int
flow__ld_oom(loader *ld)
{
  ld->sb->enomem = 1;
  return luaL_error(ld->L, "out of memory");
}

/* A temporary block, freed when the load ends however it ends. */
void *
flow__ld_scratch(loader *ld, size_t n)
{
  if (n > SIZE_MAX - sizeof(max_align_t))
    flow__ld_oom(ld);
  void **blk = flow__malloc(ld->a, sizeof(max_align_t) + n);
  if (blk == NULL)
    flow__ld_oom(ld);
  *blk = ld->scratch;
  ld->scratch = blk;
  return (char *)blk + sizeof(max_align_t);
}

char *
flow__ld_strdup(loader *ld, const char *s)
{
  char *d = flow__strdup(ld->a, s);
  if (d == NULL)
    flow__ld_oom(ld);
  return d;
}

/* One step of a walk over the definition: charged to the load (a lua_next
   on a table whose keys collide costs the chain). */
void
flow__ld_tick(loader *ld)
{
  if (flow__sb_spend(ld->sb, 1))
    flow__sb_check(ld->L);
}

static int problem_cmp(const void *pa, const void *pb);

/*
 * Keeps a problem.  Past FLOW__MAX_PROBLEMS only the first FLOW__MAX_PROBLEMS in line
 * order are kept (and the rest counted), so a report is the same however
 * Lua's seeded table order made them come: the list is sorted once full,
 * and a problem that sorts before its last replaces it.  Each problem is
 * charged to the load's budget.
 */
void
flow__ld_problem(loader *ld, int line, const char *fmt, ...)
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
    char *msg = flow__ld_strdup(ld, buf);
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
      flow__ld_oom(ld);
    ld->probs = np;
    ld->capprobs = ncap;
  }
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  problem *p = &ld->probs[ld->nprobs];
  p->msg = flow__ld_strdup(ld, buf);
  p->line = line;
  p->seq = ld->nprobs++;
}

/* 1 if the string at idx is valid UTF-8: everything a script names
   (titles, values, patterns) ends up in JSON. */
int
flow__ld_utf8_at(lua_State *L, int idx)
{
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  return flow__utf8_valid(s, len);
}

/* Pushes t[key] read raw; returns its type. */
int
flow__ld_rawfield(lua_State *L, int t, const char *key)
{
  t = lua_absindex(L, t);
  lua_pushstring(L, key);
  return lua_rawget(L, t);
}

const char *
flow__ld_type_at(lua_State *L, int idx)
{
  return lua_typename(L, lua_type(L, idx));
}

/* A short printable form of the key at idx for messages. */
const char *
flow__ld_key_text(lua_State *L, int idx, char *buf, size_t len)
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
    snprintf(buf, len, "of type %s", flow__ld_type_at(L, idx));
    break;
  }
  return buf;
}

/* " (did you mean 'x'?)" for the closest known word within 2 edits, else
   " (known keys: a, b, c)". */
static void
suggestion(const char *word, const char *const *known, char *buf,
           size_t len)
{
  const char *best = flow__closest_word(word, known);
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
int
flow__ld_check_key(loader *ld, const char *const *known, int line, const char *owner)
{
  lua_State *L = ld->L;
  if (lua_type(L, -2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, -2);
    for (size_t i = 0; known[i]; i++)
      if (strcmp(k, known[i]) == 0)
        return 1;
    char hint[256];
    suggestion(k, known, hint, sizeof hint);
    flow__ld_problem(ld, line, "%s has an unknown key '%.60s'%s", owner, k, hint);
    return 0;
  }
  char kt[96];
  flow__ld_problem(ld, line, "%s has a key %s; only named keys are allowed here",
              owner, flow__ld_key_text(L, -2, kt, sizeof kt));
  return 0;
}

/* The line of the key at -2 (a string) inside the entry at prefix. */
int
flow__ld_key_line(loader *ld, const char *const *prefix, size_t n)
{
  const char *path[8];
  for (size_t i = 0; i < n && i < 7; i++)
    path[i] = prefix[i];
  if (lua_type(ld->L, -2) != LUA_TSTRING)
    return flow__ld_locate(ld, path, n, NULL);
  path[n] = lua_tostring(ld->L, -2);
  return flow__ld_locate(ld, path, n + 1, NULL);
}

/* Copies a string-valued Lua list at idx (keys 1..n, all strings) into
   *out, counting in *nout as it goes so that a structure freed halfway
   frees what was copied; returns n, or -1 when it is not such a list. */
long
flow__ld_string_list(loader *ld, int idx, char ***out, size_t *nout)
{
  lua_State *L = ld->L;
  *out = NULL;
  *nout = 0;
  size_t n = lua_rawlen(L, idx), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    flow__ld_tick(ld);
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
    flow__ld_oom(ld);
  *out = v; /* owned by the caller's structure from here on */
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    v[i] = flow__ld_strdup(ld, lua_tostring(L, -1));
    *nout = i + 1;
    lua_pop(L, 1);
  }
  return (long)n;
}

/* Keeps the function at idx in the registry. */
int
flow__ld_keep_function(lua_State *L, int idx)
{
  lua_pushvalue(L, idx);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

int
flow__ld_function_line(lua_State *L, int idx)
{
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">S", &ar);
  return ar.linedefined > 0 ? ar.linedefined : 1;
}

int
flow__ld_str_cmp(const void *pa, const void *pb)
{
  return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

int
flow__ld_has_state(const loader *ld, const char *name)
{
  if (!ld->have_states)
    return 1; /* already reported; do not pile up follow-on errors */
  return bsearch(&name, ld->state_index, ld->svc->nstates,
                 sizeof *ld->state_index, flow__ld_str_cmp) != NULL;
}

/* ---- the top level ------------------------------------------------------ */

static const char *const top_keys[] = {
  "name",   "version", "title", "description", "fields",
  "initial", "states", "sla",   "budget",      "correlate",
  "initial_states", "validate", "one_of", NULL,
};
static const char *const sla_keys[] = { "within", "warn", NULL };
static const char *const budget_keys[] = {
  "instructions", "cpu_ms", "memory_mb", NULL,
};

static void
read_duration(loader *ld, int line, const char *what, flow__duration *out,
              char **text)
{
  lua_State *L = ld->L;
  if (lua_type(L, -1) != LUA_TSTRING) {
    flow__ld_problem(ld, line, "%s must be a duration like \"5 working days\", "
                "not a %s", what, flow__ld_type_at(L, -1));
    return;
  }
  const char *s = lua_tostring(L, -1);
  flow__err perr;
  flow__err_clear(&perr);
  if (strlen(s) != lua_rawlen(L, -1))
    flow__ld_problem(ld, line, "%s must be a duration like \"5 working days\", "
                "not text with a zero byte in it", what);
  else if (flow__duration_parse(s, out, &perr) != 0)
    flow__ld_problem(ld, line, "%s: %s", what, perr.msg);
  else if (text)
    *text = flow__ld_strdup(ld, s);
}

/* One duration of an sla: text (parsed now) or a function of the case
   (run when the clock starts).  The value is at -1. */
static void
read_sla_duration(loader *ld, int line, const char *what, char **text,
                  flow__duration *dur, int *fn)
{
  lua_State *L = ld->L;
  if (lua_type(L, -1) == LUA_TFUNCTION)
    *fn = flow__ld_keep_function(L, lua_gettop(L));
  else if (lua_type(L, -1) != LUA_TSTRING)
    flow__ld_problem(ld, line, "%s must be a duration like \"5 working "
                     "days\", or a function(case) returning one, not a %s",
                     what, flow__ld_type_at(L, -1));
  else
    read_duration(ld, line, what, dur, text);
}

/*
 * sla = { within = D, warn = D } of the service (state NULL) or of a
 * state, at idx.  D is a duration or a function(case) returning one.
 */
void
flow__ld_read_sla(loader *ld, int idx, flow__sla *out, const char *state)
{
  lua_State *L = ld->L;
  char owner[160];
  int line = state ? LOCATE(ld, "states", state, "sla") : LOCATE(ld, "sla");
  snprintf(owner, sizeof owner, state ? "sla of state '%s'" : "sla",
           state ? state : "");
  out->within_fn = out->warn_fn = FLOW__NOREF;
  out->line = line;
  if (lua_type(L, idx) != LUA_TTABLE) {
    flow__ld_problem(ld, line, "%s must be a table like { within = \"5 "
                     "working days\" }, not a %s", owner,
                     flow__ld_type_at(L, idx));
    return;
  }
  out->set = 1;
  const char *sprefix[] = { "sla" };
  const char *tprefix[] = { "states", state ? state : "", "sla" };
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    flow__ld_tick(ld);
    int kl = state ? flow__ld_key_line(ld, tprefix, 3)
                   : flow__ld_key_line(ld, sprefix, 1);
    flow__ld_check_key(ld, sla_keys, kl, owner);
    lua_pop(L, 1);
  }
  char what[200];
  if (flow__ld_rawfield(L, idx, "within") == LUA_TNIL) {
    flow__ld_problem(ld, line, "%s needs `within = \"<duration>\"`, like "
                     "\"5 working days\"", owner);
  } else {
    snprintf(what, sizeof what, "%s within", owner);
    read_sla_duration(ld,
                      state ? LOCATE(ld, "states", state, "sla", "within")
                            : LOCATE(ld, "sla", "within"),
                      what, &out->within, &out->within_dur, &out->within_fn);
  }
  lua_pop(L, 1);
  if (flow__ld_rawfield(L, idx, "warn") != LUA_TNIL) {
    snprintf(what, sizeof what, "%s warn", owner);
    read_sla_duration(ld,
                      state ? LOCATE(ld, "states", state, "sla", "warn")
                            : LOCATE(ld, "sla", "warn"),
                      what, &out->warn, &out->warn_dur, &out->warn_fn);
  }
  lua_pop(L, 1);
}

/* correlate = { message = "field", ... }: which data field of a case
   names it to a message sent by name and key (flow_message_send).  The
   long form, message = { field = "f", opens = true }, also says that
   such a message opens a case when no open case waits for it: the first
   state must then be fixed and take the message. */
static const char *
correlate_long(loader *ld, int kl, const char *msg, int *opens)
{
  lua_State *L = ld->L;
  int v = lua_gettop(L);
  static const char *const known[] = { "field", "opens", NULL };
  lua_pushnil(L);
  while (lua_next(L, v)) {
    int ok = lua_type(L, -2) == LUA_TSTRING;
    for (int i = 0; ok && known[i]; i++)
      if (strcmp(lua_tostring(L, -2), known[i]) == 0)
        ok = 2;
    if (ok != 2) {
      char kt[80];
      flow__ld_problem(ld, kl, "correlate: %s has the unknown key %s (it "
                       "takes field and opens)",
                       msg, flow__ld_key_text(L, -2, kt, sizeof kt));
    }
    lua_pop(L, 1);
  }
  int ty = flow__ld_rawfield(L, v, "opens");
  if (ty == LUA_TBOOLEAN)
    *opens = lua_toboolean(L, -1);
  else if (ty != LUA_TNIL)
    flow__ld_problem(ld, kl, "correlate: %s.opens must be true or false, "
                     "not a %s", msg, flow__ld_type_at(L, -1));
  lua_pop(L, 1);
  /* The field's text stays alive in the table the loader holds. */
  ty = flow__ld_rawfield(L, v, "field");
  const char *field = ty == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1);
  return field;
}

/* A message that opens cases is delivered to the first state. */
static void
correlate_opens_check(loader *ld, const flow__correlate *c)
{
  const flow__service *svc = ld->svc;
  if (svc->initial_fn != FLOW__NOREF || svc->initial == NULL) {
    flow__ld_problem(ld, c->line, "correlate: %s opens cases, so `initial` "
                     "must name the first state (not a function)",
                     c->message);
    return;
  }
  const flow__state *st = flow__service_state(svc, svc->initial);
  if (st && flow__state_trans(st, c->message) == NULL)
    flow__ld_problem(ld, c->line, "correlate: %s opens cases, and the "
                     "message is delivered to the case it opens, but the "
                     "first state '%s' does not take it (add %s = ... to "
                     "its `on`)",
                     c->message, svc->initial, c->message);
}

static void
read_correlate(loader *ld, int t)
{
  lua_State *L = ld->L;
  int line = LOCATE(ld, "correlate");
  if (lua_type(L, t) != LUA_TTABLE) {
    flow__ld_problem(ld, line, "correlate must be a table like { "
                "payment_received = \"payment_ref\" }, not a %s",
                flow__ld_type_at(L, t));
    return;
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    n++;
    lua_pop(L, 1);
  }
  flow__service *svc = ld->svc;
  if (n == 0)
    return;
  svc->correlate = flow__calloc(ld->a, n, sizeof *svc->correlate);
  if (svc->correlate == NULL)
    flow__ld_oom(ld);
  const char *prefix[] = { "correlate" };
  lua_pushnil(L);
  while (lua_next(L, t)) {
    flow__ld_tick(ld);
    int kl = lua_type(L, -2) == LUA_TSTRING ? flow__ld_key_line(ld, prefix, 1)
                                            : line;
    char kt[80];
    const char *msg = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                     : NULL;
    int opens = 0;
    const char *field = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                        : lua_type(L, -1) == LUA_TTABLE && msg
                            ? correlate_long(ld, kl, msg, &opens)
                            : NULL;
    const flow__field *f = field ? flow__service_field(svc, field) : NULL;
    if (msg == NULL || !flow__name_ok(msg, strlen(msg), 0) ||
        strlen(msg) > FLOW__MAX_NAME) {
      flow__ld_problem(ld, kl, "correlate: %s is not a message name (use "
                  "lower-case letters, digits and _, like payment_received)",
                  flow__ld_key_text(L, -2, kt, sizeof kt));
    } else if (field == NULL) {
      flow__ld_problem(ld, kl, "correlate: %s must name a field, like %s = "
                  "\"payment_ref\" (or %s = { field = \"payment_ref\", "
                  "opens = true })", msg, msg, msg);
    } else if (f == NULL) {
      flow__ld_problem(ld, kl, "correlate: %s names the field '%.60s', which "
                  "is not in `fields` (declare it there)", msg, field);
    } else if (f->type != FLOW__F_STRING && f->type != FLOW__F_INTEGER &&
               f->type != FLOW__F_ENUM) {
      flow__ld_problem(ld, kl, "correlate: the field '%s' is a %s; a "
                  "correlation key must be a string, integer or enum field",
                  field, flow__ftype_name(f->type));
    } else {
      flow__correlate *c = &svc->correlate[svc->ncorrelate];
      c->message = flow__strdup(ld->a, msg);
      c->field = flow__strdup(ld->a, field);
      c->line = kl;
      c->opens = opens;
      svc->ncorrelate++;
      if (c->message == NULL || c->field == NULL)
        flow__ld_oom(ld);
      if (opens)
        correlate_opens_check(ld, c);
    }
    lua_pop(L, 1);
  }
}

static void
read_name(loader *ld, int def)
{
  lua_State *L = ld->L;
  int line = LOCATE(ld, "name");
  int ty = flow__ld_rawfield(L, def, "name");
  if (ty == LUA_TNIL) {
    flow__ld_problem(ld, 1, "the service needs a name: add `name = \"my_service\"` "
                "(lower-case letters, digits and _)");
  } else if (ty != LUA_TSTRING) {
    flow__ld_problem(ld, line, "name must be a string like \"missed_bin\", not a "
                "%s", flow__ld_type_at(L, -1));
  } else {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (len > FLOW__MAX_NAME)
      flow__ld_problem(ld, line, "name '%.64s...' is longer than 64 characters",
                  s);
    else if (!flow__name_ok(s, len, 0))
      flow__ld_problem(ld, line, "name '%s' must start with a lower-case letter "
                  "and use only a-z, 0-9 and _ (like \"missed_bin\")", s);
    else
      ld->svc->name = flow__ld_strdup(ld, s);
  }
  lua_pop(L, 1);
}

static void
read_version(loader *ld, int def)
{
  lua_State *L = ld->L;
  int line = LOCATE(ld, "version");
  int ty = flow__ld_rawfield(L, def, "version");
  if (ty == LUA_TNIL) {
    flow__ld_problem(ld, 1, "the service needs a version: add `version = 1`");
  } else if (ty != LUA_TNUMBER) {
    flow__ld_problem(ld, line, "version must be a whole number like 1, not a %s",
                flow__ld_type_at(L, -1));
  } else if (!lua_isinteger(L, -1)) {
    /* 1.0 is a float in Lua 5.4; say why it is refused. */
    char num[64];
    snprintf(num, sizeof num, LUA_NUMBER_FMT, lua_tonumber(L, -1));
    if (num[strspn(num, "-0123456789")] == 0)
      strcat(num, ".0");
    flow__ld_problem(ld, line, "version must be a whole number written without "
                "a decimal point, like 1 (not %s)", num);
  } else if (lua_tointeger(L, -1) < 1) {
    flow__ld_problem(ld, line, "version must be 1 or more, not %lld",
                (long long)lua_tointeger(L, -1));
  } else {
    ld->svc->version = (int64_t)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
}

/* The string literals an initial function returns, when they are all it
   returns. */
static void
initial_literal(void *ctx, const char *text, size_t len)
{
  loader *ld = ctx;
  flow__service *svc = ld->svc;
  char name[FLOW__MAX_NAME + 1];
  if (len > FLOW__MAX_NAME)
    return;
  memcpy(name, text, len);
  name[len] = 0;
  for (size_t i = 0; i < svc->ninitial; i++)
    if (strcmp(svc->initial_states[i], name) == 0)
      return;
  if (!flow__ld_has_state(ld, name)) {
    flow__ld_problem(ld, svc->initial_line, "initial returns '%s', which is "
                     "not a state (states: %s)", name, ld->state_list);
    return;
  }
  /* initial_states has room for every state (read_initial). */
  if (svc->ninitial < svc->nstates)
    svc->initial_states[svc->ninitial++] = flow__ld_strdup(ld, name);
}

/*
 * initial = "state", or initial = function(case) returning a state name
 * (with initial_states = { ... } listing what it may return when the
 * source does not say it plainly).
 */
static void
read_initial(loader *ld, int def)
{
  lua_State *L = ld->L;
  flow__service *svc = ld->svc;
  int line = LOCATE(ld, "initial");
  svc->initial_fn = FLOW__NOREF;
  svc->initial_line = line;
  int ty = flow__ld_rawfield(L, def, "initial");
  if (ty == LUA_TNIL) {
    flow__ld_problem(ld, 1, "the service needs an initial state: add `initial = "
                "\"<state>\"`");
  } else if (ty == LUA_TFUNCTION) {
    svc->initial_fn = flow__ld_keep_function(L, lua_gettop(L));
  } else if (ty != LUA_TSTRING) {
    flow__ld_problem(ld, line, "initial must be a state name (a string) or a "
                     "function(case) returning one, not a %s",
                     flow__ld_type_at(L, -1));
  } else {
    const char *s = lua_tostring(L, -1);
    svc->initial = flow__ld_strdup(ld, s);
    if (!flow__ld_has_state(ld, s))
      flow__ld_problem(ld, line, "initial state '%.60s' does not exist (states: "
                  "%s)", s, ld->state_list);
  }
  int fnidx = lua_gettop(L);
  int lty = flow__ld_rawfield(L, def, "initial_states");
  int lline = LOCATE(ld, "initial_states");
  if (lty != LUA_TNIL && ty != LUA_TFUNCTION) {
    flow__ld_problem(ld, lline, "initial_states is for an initial function: "
                     "with `initial = \"<state>\"` remove it");
  } else if (lty != LUA_TNIL) {
    if (lty != LUA_TTABLE ||
        flow__ld_string_list(ld, lua_gettop(L), &svc->initial_states,
                             &svc->ninitial) <= 0) {
      flow__ld_problem(ld, lline, "initial_states must be a list of state "
                       "names like { \"assign\", \"await_consent\" }");
    } else {
      for (size_t i = 0; i < svc->ninitial; i++)
        if (!flow__ld_has_state(ld, svc->initial_states[i]))
          flow__ld_problem(ld, lline, "initial_states names '%.60s', which is "
                           "not a state (states: %s)", svc->initial_states[i],
                           ld->state_list);
    }
  } else if (ty == LUA_TFUNCTION) {
    /* Read what it returns from the source, when it says so plainly. */
    lua_Debug ar;
    lua_pushvalue(L, fnidx);
    lua_getinfo(L, ">S", &ar);
    int lit = 0, bare = 0, other = 0;
    flow__lua_return_kinds(&ld->tk, ar.linedefined, ar.lastlinedefined, &lit,
                           &bare, &other);
    if (lit > 0 && bare == 0 && other == 0 && svc->nstates > 0) {
      svc->initial_states =
          flow__calloc(ld->a, svc->nstates, sizeof *svc->initial_states);
      if (svc->initial_states == NULL)
        flow__ld_oom(ld);
      flow__lua_literal_returns(&ld->tk, ar.linedefined, ar.lastlinedefined,
                                initial_literal, ld);
      svc->initial_guessed = 1;
    } else if (bare > 0 && other == 0) {
      flow__ld_problem(ld, line, "initial is a function that may return "
                       "nothing: every path must return the first state's "
                       "name");
    }
  }
  lua_pop(L, 2); /* initial and initial_states */
  if (svc->initial == NULL && svc->ninitial > 0)
    svc->initial = flow__ld_strdup(ld, svc->initial_states[0]);
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
    flow__ld_tick(ld);
    int line = flow__ld_key_line(ld, prefix, 1);
    if (flow__ld_check_key(ld, budget_keys, line, "budget")) {
      char msg[300];
      if (flow__sb_budget_entry(ld->sb, L, -2, -1, &ld->budget, msg,
                                sizeof msg) != 0)
        flow__ld_problem(ld, line, "%s", msg);
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
    int kline = flow__ld_key_line(ld, none, 0);
    if (lua_type(L, -2) == LUA_TSTRING) {
      flow__ld_check_key(ld, top_keys, kline, "the service definition");
    } else {
      char kt[96];
      flow__ld_problem(ld, kline, "the service definition has a key %s; use named "
                  "keys like name = ..., states = ...",
                  flow__ld_key_text(L, -2, kt, sizeof kt));
    }
    lua_pop(L, 1);
  }

  ld->svc->sla.within_fn = ld->svc->sla.warn_fn = FLOW__NOREF;
  ld->svc->validate_fn = FLOW__NOREF;
  read_name(ld, def);
  read_version(ld, def);
  static const char *const texts[] = { "title", "description" };
  for (size_t i = 0; i < 2; i++) {
    int ty = flow__ld_rawfield(L, def, texts[i]);
    if (ty == LUA_TSTRING && !flow__ld_utf8_at(L, -1))
      flow__ld_problem(ld, LOCATE(ld, texts[i]), "%s is not valid UTF-8 text",
                  texts[i]);
    else if (ty == LUA_TSTRING && i == 0)
      ld->svc->title = flow__ld_strdup(ld, lua_tostring(L, -1));
    else if (ty != LUA_TNIL && ty != LUA_TSTRING)
      flow__ld_problem(ld, LOCATE(ld, texts[i]), "%s must be a string, not a %s",
                  texts[i], flow__ld_type_at(L, -1));
    lua_pop(L, 1);
  }
  int ty = flow__ld_rawfield(L, def, "budget");
  if (ty == LUA_TTABLE)
    read_budget(ld, lua_gettop(L));
  else if (ty != LUA_TNIL)
    flow__ld_problem(ld, LOCATE(ld, "budget"), "budget must be a table, not a %s",
                flow__ld_type_at(L, -1));
  lua_pop(L, 1);

  if (flow__ld_rawfield(L, def, "fields") != LUA_TNIL)
    flow__ld_read_fields(ld, lua_gettop(L));
  lua_pop(L, 1);
  flow__ld_read_rules(ld, def);
  flow__ld_rawfield(L, def, "states");
  flow__ld_read_states(ld, lua_gettop(L));
  lua_pop(L, 1);
  read_initial(ld, def);
  if (flow__ld_rawfield(L, def, "sla") != LUA_TNIL)
    flow__ld_read_sla(ld, lua_gettop(L), &ld->svc->sla, NULL);
  lua_pop(L, 1);
  /* After fields: it names them. */
  if (flow__ld_rawfield(L, def, "correlate") != LUA_TNIL)
    read_correlate(ld, lua_gettop(L));
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
  if (strncmp(msg, chunk, cl) == 0 && msg[cl] == ':' && flow__lua_is_digit(msg[cl + 1]))
    return flow__err_set(err, FLOW_ESCRIPT, "%s", msg);
  if (strncmp(msg, "...", 3) == 0) {
    const char *c = strchr(msg + 3, ':');
    if (c && flow__lua_is_digit(c[1])) {
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
  flow__lua_tokens_free(&ld->tk);
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
                       nres == 0 ? "" : flow__ld_type_at(L, 1));
    goto done;
  }
  lua_settop(L, 1);

  if (flow__lua_lex(&ld.tk, a, src, len) != 0) {
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
