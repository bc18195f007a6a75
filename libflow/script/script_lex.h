/*
 * A tokenizer for Lua source, for finding where things are written: the
 * loader uses it to give every problem its line, and the engine's diagram
 * to find the states a handler returns.  It does not judge the syntax (Lua
 * already accepted the chunk); comments and whitespace are dropped, and
 * strings are kept as their text between the quotes, escapes unread.
 */
#ifndef LIBFLOW_SCRIPT_SCRIPT_LEX_H
#define LIBFLOW_SCRIPT_SCRIPT_LEX_H

#include <stddef.h>

#include "util/util.h"

enum { FLOW__TOK_NAME, FLOW__TOK_STRING, FLOW__TOK_OTHER };

typedef struct flow__token {
  int kind;
  int line;
  const char *p; /* a name, or a string's text between its quotes */
  size_t len;
  char ch;       /* a one-character punctuation token, else 0 */
  long match;    /* for an opening bracket: index of its closer, or -1 */
} flow__token;

typedef struct flow__lua_tokens {
  const flow__allocator *a;
  const char *src;
  size_t len;
  flow__token *toks;
  size_t n;
  /* Where the fields of the returned table are: inside the constructor of
     the chunk's final `return {` when there is one (strict), else
     anywhere. */
  long root_lo, root_hi;
  int root_strict;
} flow__lua_tokens;

/* Tokenizes src (which must outlive tk); 0 or FLOW_ENOMEM.  Free with
   flow__lua_tokens_free, also after a failure. */
int flow__lua_lex(flow__lua_tokens *tk, const flow__allocator *a,
                  const char *src, size_t len);
void flow__lua_tokens_free(flow__lua_tokens *tk);

/*
 * Calls each(ctx, text, len) for every string literal written right after
 * the keyword `return` on the lines first..last of tk (`return
 * "closed"`), in source order; comments, and `return` inside strings, are
 * not mistaken for code.  Tokenize once, then ask for each function.
 */
void flow__lua_literal_returns(const flow__lua_tokens *tk, int first,
                               int last,
                               void (*each)(void *ctx, const char *text,
                                            size_t len),
                               void *ctx);

static inline int
flow__lua_is_digit(char c)
{
  return c >= '0' && c <= '9';
}

#endif /* LIBFLOW_SCRIPT_SCRIPT_LEX_H */
