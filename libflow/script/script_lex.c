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
