/*
 * The Lua tokenizer of script_lex.h, and what the engine asks of it.
 */
#include "script/script_lex.h"

#include <string.h>

static int
is_alpha(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

#define is_digit flow__lua_is_digit

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
push_tok(flow__lua_tokens *tk, size_t *cap, int kind, int line, const char *p,
         size_t len, char ch)
{
  if (tk->n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 256;
    flow__token *nt = flow__realloc(tk->a, tk->toks, ncap * sizeof *nt);
    if (nt == NULL)
      return FLOW_ENOMEM;
    tk->toks = nt;
    *cap = ncap;
  }
  flow__token *t = &tk->toks[tk->n++];
  t->kind = kind;
  t->line = line;
  t->p = p;
  t->len = len;
  t->ch = ch;
  t->match = -1;
  return 0;
}

/*
 * Splits the source into tokens: names, strings,
 * punctuation (with "==" and friends kept apart from "="), everything
 * else as opaque tokens; comments and whitespace dropped.  It does not
 * judge the syntax -- Lua already accepted the chunk.
 */
int
flow__lua_lex(flow__lua_tokens *tk, const flow__allocator *a, const char *src,
              size_t len)
{
  memset(tk, 0, sizeof *tk);
  tk->a = a;
  tk->src = src;
  tk->len = len;
  const char *s = src, *e = s + len;
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
      rc = push_tok(tk, &cap, FLOW__TOK_STRING, l0, text, (size_t)(end - text), 0);
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
      rc = push_tok(tk, &cap, FLOW__TOK_STRING, l0, text, (size_t)(s - text), 0);
      if (s < e && *s == c)
        s++;
    } else if (is_alpha(c)) {
      const char *b = s;
      while (s < e && (is_alpha(*s) || is_digit(*s)))
        s++;
      rc = push_tok(tk, &cap, FLOW__TOK_NAME, line, b, (size_t)(s - b), 0);
    } else if (is_digit(c) || (c == '.' && s + 1 < e && is_digit(s[1]))) {
      const char *b = s;
      while (s < e && (is_alpha(*s) || is_digit(*s) || *s == '.' ||
                       ((*s == '+' || *s == '-') &&
                        strchr("eEpP", s[-1]) != NULL)))
        s++;
      rc = push_tok(tk, &cap, FLOW__TOK_OTHER, line, b, (size_t)(s - b), 0);
    } else if ((c == '=' || c == '~' || c == '<' || c == '>') &&
               s + 1 < e && s[1] == '=') {
      rc = push_tok(tk, &cap, FLOW__TOK_OTHER, line, s, 2, 0);
      s += 2;
    } else {
      rc = push_tok(tk, &cap, FLOW__TOK_OTHER, line, s, 1, c);
      s++;
    }
  }
  if (rc != 0)
    return rc;

  /* Pair the brackets, so a search can stay inside one constructor. */
  long *stack = tk->n ? flow__malloc(tk->a, tk->n * sizeof *stack)
                          : NULL;
  if (tk->n && stack == NULL)
    return FLOW_ENOMEM;
  size_t depth = 0;
  for (size_t i = 0; i < tk->n; i++) {
    char ch = tk->toks[i].ch;
    if (ch == '{' || ch == '(' || ch == '[') {
      stack[depth++] = (long)i;
    } else if ((ch == '}' || ch == ')' || ch == ']') && depth > 0) {
      tk->toks[stack[--depth]].match = (long)i;
    }
  }
  flow__free(tk->a, stack);

  /* The returned table: the `return {` outside every block.  Lua
     accepted the chunk, so block keywords are balanced. */
  int blocks = 0;
  tk->root_lo = 0;
  tk->root_hi = (long)tk->n;
  tk->root_strict = 0;
  for (size_t i = 0; i < tk->n; i++) {
    const flow__token *t = &tk->toks[i];
    if (t->kind != FLOW__TOK_NAME)
      continue;
#define IS(w) (t->len == sizeof(w) - 1 && memcmp(t->p, w, t->len) == 0)
    if (IS("function") || IS("if") || IS("do") || IS("repeat")) {
      blocks++;
    } else if (IS("end") || IS("until")) {
      blocks--;
    } else if (IS("return") && blocks == 0 && i + 1 < tk->n &&
               tk->toks[i + 1].ch == '{' && tk->toks[i + 1].match > 0) {
      tk->root_lo = (long)i + 2;
      tk->root_hi = tk->toks[i + 1].match;
      tk->root_strict = 1;
    }
#undef IS
  }
  return 0;
}

void
flow__lua_tokens_free(flow__lua_tokens *tk)
{
  if (tk->toks)
    flow__free(tk->a, tk->toks);
  tk->toks = NULL;
  tk->n = 0;
}

void
flow__lua_literal_returns(const flow__lua_tokens *tk, int first, int last,
                          void (*each)(void *ctx, const char *text,
                                       size_t len),
                          void *ctx)
{
  /* Tokens are in line order: start at the first on line `first`. */
  size_t lo = 0, hi = tk->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (tk->toks[mid].line < first)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (size_t i = lo; i + 1 < tk->n && tk->toks[i].line <= last; i++) {
    const flow__token *t = &tk->toks[i], *v = &tk->toks[i + 1];
    if (t->kind == FLOW__TOK_NAME && t->len == 6 &&
        memcmp(t->p, "return", 6) == 0 && v->kind == FLOW__TOK_STRING)
      each(ctx, v->p, v->len);
  }
}

/* ---- what handlers do, read from their tokens ---------------------------- */

static int
tok_is(const flow__token *t, const char *w)
{
  size_t n = strlen(w);
  return t->kind == FLOW__TOK_NAME && t->len == n && memcmp(t->p, w, n) == 0;
}

/* The first token on line `first` or later. */
static size_t
first_on(const flow__lua_tokens *tk, int first)
{
  size_t lo = 0, hi = tk->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (tk->toks[mid].line < first)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* 1 when token i ends a statement's expression: a block keyword, `;`,
   or nothing (the end of the source). */
static int
ends_expr(const flow__lua_tokens *tk, size_t i)
{
  if (i >= tk->n)
    return 1;
  const flow__token *t = &tk->toks[i];
  return t->ch == ';' || tok_is(t, "end") || tok_is(t, "else") ||
         tok_is(t, "elseif") || tok_is(t, "until");
}

void
flow__lua_return_kinds(const flow__lua_tokens *tk, int first, int last,
                       int *literal, int *bare, int *other)
{
  *literal = *bare = *other = 0;
  for (size_t i = first_on(tk, first); i < tk->n && tk->toks[i].line <= last;
       i++) {
    if (!tok_is(&tk->toks[i], "return"))
      continue;
    if (ends_expr(tk, i + 1) ||
        (i + 1 < tk->n && tok_is(&tk->toks[i + 1], "nil") &&
         ends_expr(tk, i + 2)))
      (*bare)++;
    else if (tk->toks[i + 1].kind == FLOW__TOK_STRING && ends_expr(tk, i + 2))
      (*literal)++;
    else
      (*other)++;
  }
}

/*
 * Whether the code from token *i on -- one block, up to the end, else,
 * elseif or until that closes it (left at *i) -- always ends in a return:
 * its last statement is a return (or a call of flow.fail or error, which
 * never come back), a do block that ends in one, or an if with an else
 * whose every branch ends in one.  Loops may not run, so
 * they never do.  Function literals inside are skipped whole.
 */
static int block_returns(const flow__lua_tokens *tk, size_t *i, int last,
                         int level);

static int
closes(const flow__token *t)
{
  return tok_is(t, "end") || tok_is(t, "else") || tok_is(t, "elseif") ||
         tok_is(t, "until");
}

/* Skips a function's parameters and body from its `function` at *i to
   just past its end. */
static void
skip_function(const flow__lua_tokens *tk, size_t *i, int last, int level)
{
  (*i)++;
  while (*i < tk->n && tk->toks[*i].line <= last && tk->toks[*i].ch != '(')
    (*i)++; /* the name, if it has one */
  if (*i < tk->n && tk->toks[*i].match > (long)*i)
    *i = (size_t)tk->toks[*i].match + 1;
  block_returns(tk, i, last, level + 1);
  if (*i < tk->n && tok_is(&tk->toks[*i], "end"))
    (*i)++;
}

/* Moves *i past the next `word` (then, do) at this level. */
static void
skip_to(const flow__lua_tokens *tk, size_t *i, int last, const char *word,
        int level)
{
  while (*i < tk->n && tk->toks[*i].line <= last &&
         !tok_is(&tk->toks[*i], word)) {
    if (tok_is(&tk->toks[*i], "function"))
      skip_function(tk, i, last, level);
    else
      (*i)++;
  }
  if (*i < tk->n)
    (*i)++;
}

static int
block_returns(const flow__lua_tokens *tk, size_t *i, int last, int level)
{
  int ends = 0;
  if (level > 200)
    return 0; /* nesting no script needs: say it may fall through */
  while (*i < tk->n && tk->toks[*i].line <= last) {
    const flow__token *t = &tk->toks[*i];
    if (closes(t))
      return ends;
    if (tok_is(t, "return")) {
      /* The last statement of its block: what follows is its value. */
      (*i)++;
      while (*i < tk->n && tk->toks[*i].line <= last &&
             !closes(&tk->toks[*i])) {
        if (tok_is(&tk->toks[*i], "function"))
          skip_function(tk, i, last, level);
        else
          (*i)++;
      }
      return 1;
    }
    if (tok_is(t, "if")) {
      int all = 1, has_else = 0;
      skip_to(tk, i, last, "then", level);
      for (;;) {
        all &= block_returns(tk, i, last, level + 1);
        if (*i >= tk->n || tk->toks[*i].line > last)
          return 0;
        if (tok_is(&tk->toks[*i], "elseif")) {
          skip_to(tk, i, last, "then", level);
        } else if (tok_is(&tk->toks[*i], "else")) {
          has_else = 1;
          (*i)++;
        } else {
          (*i)++; /* its end */
          break;
        }
      }
      ends = all && has_else;
      continue;
    }
    if (tok_is(t, "do")) {
      (*i)++;
      ends = block_returns(tk, i, last, level + 1);
      if (*i < tk->n)
        (*i)++;
      continue;
    }
    if (tok_is(t, "while") || tok_is(t, "for")) {
      skip_to(tk, i, last, "do", level);
      block_returns(tk, i, last, level + 1);
      if (*i < tk->n)
        (*i)++;
      ends = 0;
      continue;
    }
    if (tok_is(t, "repeat")) {
      (*i)++;
      block_returns(tk, i, last, level + 1);
      if (*i < tk->n)
        (*i)++; /* until; its condition reads as a statement */
      ends = 0;
      continue;
    }
    if (tok_is(t, "function")) {
      skip_function(tk, i, last, level);
      ends = 0;
      continue;
    }
    /* flow.fail(...) and error(...) never return: as good as a return. */
    size_t call = *i;
    if (tok_is(t, "flow") && call + 2 < tk->n && tk->toks[call + 1].ch == '.' &&
        tok_is(&tk->toks[call + 2], "fail"))
      call += 3;
    else if (tok_is(t, "error") && (call == 0 || tk->toks[call - 1].ch != '.'))
      call += 1;
    if (call != *i && call < tk->n &&
        (tk->toks[call].ch == '(' || tk->toks[call].kind == FLOW__TOK_STRING)) {
      *i = tk->toks[call].ch == '(' && tk->toks[call].match > (long)call
               ? (size_t)tk->toks[call].match + 1
               : call + 1;
      ends = 1;
      continue;
    }
    ends = 0;
    (*i)++;
  }
  return ends;
}

int
flow__lua_falls_through(const flow__lua_tokens *tk, int first, int last)
{
  size_t i = first_on(tk, first);
  while (i < tk->n && tk->toks[i].line <= last &&
         !tok_is(&tk->toks[i], "function"))
    i++;
  if (i >= tk->n || tk->toks[i].line > last)
    return 1; /* cannot tell: as a handler with no return */
  i++;
  while (i < tk->n && tk->toks[i].line <= last && tk->toks[i].ch != '(')
    i++;
  if (i < tk->n && tk->toks[i].match > (long)i)
    i = (size_t)tk->toks[i].match + 1;
  return !block_returns(tk, &i, last, 0);
}

/* The end of the argument or field that starts at i, inside a bracket
   that closes at hi: the next ',' or ';' at this depth, or hi. */
static size_t
item_end(const flow__lua_tokens *tk, size_t i, size_t hi)
{
  while (i < hi) {
    const flow__token *t = &tk->toks[i];
    if (t->ch == ',' || t->ch == ';')
      return i;
    if ((t->ch == '(' || t->ch == '{' || t->ch == '[') && t->match > (long)i)
      i = (size_t)t->match;
    i++;
  }
  return hi;
}

/* The value of field `key` in the constructor whose '{' is at o: *vlo and
   *vhi bound its tokens.  Returns 1 found, 0 not there, -1 cannot tell
   (a ["key"] = form, or a positional item that could be anything). */
static int
field_value(const flow__lua_tokens *tk, size_t o, const char *key,
            size_t *vlo, size_t *vhi)
{
  const flow__token *ob = &tk->toks[o];
  if (ob->ch != '{' || ob->match <= (long)o)
    return -1;
  size_t hi = (size_t)ob->match, i = o + 1;
  int unsure = 0;
  while (i < hi) {
    size_t e = item_end(tk, i, hi);
    if (i + 1 < e && tk->toks[i].kind == FLOW__TOK_NAME &&
        tk->toks[i + 1].ch == '=') {
      if (tok_is(&tk->toks[i], key)) {
        *vlo = i + 2;
        *vhi = e;
        return 1;
      }
    } else if (i < e) {
      unsure = 1; /* ["key"] = v, or a value without a key */
    }
    i = e + 1;
  }
  return unsure ? -1 : 0;
}

/* The event a value names: its text when the value is one string alone. */
static const flow__token *
plain_string(const flow__lua_tokens *tk, size_t lo, size_t hi)
{
  return hi == lo + 1 && tk->toks[lo].kind == FLOW__TOK_STRING
             ? &tk->toks[lo]
             : NULL;
}

static void
option_use(const flow__lua_tokens *tk, size_t o, flow__lua_event_use *u,
           const char *opt,
           void (*each)(void *ctx, const flow__lua_event_use *use), void *ctx)
{
  size_t lo, hi;
  int f = o < tk->n ? field_value(tk, o, opt, &lo, &hi) : -1;
  if (f == 0)
    return;
  const flow__token *s = f == 1 ? plain_string(tk, lo, hi) : NULL;
  u->opt = opt;
  u->name = s ? s->p : NULL;
  u->len = s ? s->len : 0;
  each(ctx, u);
}

/* The arguments of the call whose '(' is at o: where each starts and ends,
   up to 4.  Returns how many there are (more than 4: 5). */
static int
call_args(const flow__lua_tokens *tk, size_t o, size_t lo[4], size_t hi[4])
{
  size_t end = (size_t)tk->toks[o].match, i = o + 1;
  int n = 0;
  while (i < end) {
    size_t e = item_end(tk, i, end);
    if (n == 4)
      return 5;
    lo[n] = i;
    hi[n] = e;
    n++;
    i = e + 1;
  }
  return n;
}

void
flow__lua_event_uses(const flow__lua_tokens *tk, int first, int last,
                     void (*each)(void *ctx, const flow__lua_event_use *use),
                     void *ctx)
{
  for (size_t i = first_on(tk, first); i < tk->n && tk->toks[i].line <= last;
       i++) {
    const flow__token *t = &tk->toks[i];
    if (!tok_is(t, "flow"))
      continue;
    if (i > 0 && (tk->toks[i - 1].ch == '.' || tk->toks[i - 1].ch == ':'))
      continue; /* x.flow: someone else's field */
    flow__lua_event_use u = { "flow", NULL, t->line, NULL, 0, 0 };
    if (i + 1 < tk->n && tk->toks[i + 1].ch == '=' && i > 0 &&
        (tk->toks[i - 1].ch == '{' || tk->toks[i - 1].ch == ',' ||
         tk->toks[i - 1].ch == ';'))
      continue; /* { flow = ... }: a field of that name */
    if (i + 2 >= tk->n || tk->toks[i + 1].ch != '.' ||
        tk->toks[i + 2].kind != FLOW__TOK_NAME) {
      each(ctx, &u); /* flow passed on or indexed: anything may follow */
      continue;
    }
    const flow__token *fn = &tk->toks[i + 2];
    size_t o = i + 3;
    int is_call = tok_is(fn, "call"), is_task = tok_is(fn, "task");
    int is_timer = tok_is(fn, "after") || tok_is(fn, "at");
    if (!is_call && !is_task && !is_timer)
      continue; /* flow.log, flow.now, ...: no event */
    u.fn = is_call ? "flow.call" : is_task ? "flow.task"
           : tok_is(fn, "after") ? "flow.after" : "flow.at";
    if (is_task && o < tk->n && tk->toks[o].ch == '{') {
      option_use(tk, o, &u, "done", each, ctx); /* flow.task{ ... } */
      continue;
    }
    size_t lo[4], hi[4];
    int n = -1;
    if (o < tk->n && tk->toks[o].ch == '(' && tk->toks[o].match > (long)o)
      n = call_args(tk, o, lo, hi);
    if (is_task) {
      if (n >= 1 && hi[0] > lo[0] && tk->toks[lo[0]].ch == '{')
        option_use(tk, lo[0], &u, "done", each, ctx);
      else
        each(ctx, &u);
    } else if (is_call) {
      if (n == 1 || n == 2)
        continue; /* no options: no event */
      if (n == 3 && hi[2] > lo[2] && tk->toks[lo[2]].ch == '{') {
        option_use(tk, lo[2], &u, "reply", each, ctx);
        option_use(tk, lo[2], &u, "fail", each, ctx);
      } else {
        each(ctx, &u);
      }
    } else {
      const flow__token *ev = n >= 2 && n <= 4 ? plain_string(tk, lo[1], hi[1])
                                               : NULL;
      u.name = ev ? ev->p : NULL;
      u.len = ev ? ev->len : 0;
      if (n == 4) {
        size_t vlo, vhi;
        int f = tk->toks[lo[3]].ch == '{' && hi[3] == (size_t)tk->toks[lo[3]].match + 1
                    ? field_value(tk, lo[3], "keep", &vlo, &vhi)
                    : -1;
        if (f == 0)
          u.keep = 0;
        else if (f == 1 && vhi == vlo + 1 && tok_is(&tk->toks[vlo], "true"))
          u.keep = 1;
        else if (f == 1 && vhi == vlo + 1 &&
                 (tok_is(&tk->toks[vlo], "false") ||
                  tok_is(&tk->toks[vlo], "nil")))
          u.keep = 0;
        else
          u.keep = -1;
      }
      each(ctx, &u);
    }
  }
}

void
flow__lua_flow_names(const flow__lua_tokens *tk,
                     void (*each)(void *ctx, const char *table,
                                  const flow__token *name),
                     void *ctx)
{
  for (size_t i = 0; i + 2 < tk->n; i++) {
    const flow__token *t = &tk->toks[i];
    if (!tok_is(t, "flow") || tk->toks[i + 1].ch != '.' ||
        tk->toks[i + 2].kind != FLOW__TOK_NAME)
      continue;
    if (i > 0 && (tk->toks[i - 1].ch == '.' || tk->toks[i - 1].ch == ':'))
      continue; /* x.flow.y: someone else's field */
    const flow__token *name = &tk->toks[i + 2];
    if (tok_is(name, "sla") && i + 4 < tk->n && tk->toks[i + 3].ch == '.' &&
        tk->toks[i + 4].kind == FLOW__TOK_NAME) {
      each(ctx, "flow.sla", &tk->toks[i + 4]);
      i += 4;
    } else {
      each(ctx, "flow", name);
      i += 2;
    }
  }
}
