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

/*
 * How the `return`s on lines first..last end, for the checks that must be
 * sure of what a handler does: *literal counts `return "name"` alone (the
 * string is the whole expression), *bare counts `return`, `return nil`
 * and the like (the handler stays), *other counts every other return
 * (an expression: it could be any state).  A handler with no return at
 * all has all three 0 and always stays.
 */
void flow__lua_return_kinds(const flow__lua_tokens *tk, int first, int last,
                            int *literal, int *bare, int *other);

/*
 * 1 when the function defined from line first to line last may run to
 * its end without a `return` (so a handler stays in its state), 0 when
 * its body ends with one.  The first `function` on line first is taken
 * as the function; when there is none, 1.
 */
int flow__lua_falls_through(const flow__lua_tokens *tk, int first, int last);

/*
 * An event the script names in a call to the engine, as the source shows
 * it (flow__lua_event_uses): the event of flow.after/flow.at, the reply
 * and fail options of flow.call, the done of flow.task.  name is NULL
 * when the source does not say it plainly (a variable, an expression, an
 * options table built elsewhere, `flow` used other than by these calls):
 * the script may then send any event.
 */
typedef struct flow__lua_event_use {
  const char *fn;   /* "flow.after", "flow.at", "flow.call", "flow.task",
                       or "flow" (used some other way) */
  const char *opt;  /* NULL (the event argument), "reply", "fail", "done" */
  int line;
  const char *name; /* the event's text between the quotes, or NULL */
  size_t len;
  int keep;         /* after/at: 1 with keep = true, 0 without, -1 when the
                       options cannot be read; 0 for the others */
} flow__lua_event_use;

/* Calls each(ctx, use) for every such use on lines first..last, in source
   order.  A call whose options name no event (flow.call without reply
   or fail) gives none. */
void flow__lua_event_uses(const flow__lua_tokens *tk, int first, int last,
                          void (*each)(void *ctx,
                                       const flow__lua_event_use *use),
                          void *ctx);

/* Calls each(ctx, table, name) for every `flow.NAME` ("flow") and
   `flow.sla.NAME` ("flow.sla") the source writes, in source order. */
void flow__lua_flow_names(const flow__lua_tokens *tk,
                          void (*each)(void *ctx, const char *table,
                                       const flow__token *name),
                          void *ctx);

static inline int
flow__lua_is_digit(char c)
{
  return c >= '0' && c <= '9';
}

#endif /* LIBFLOW_SCRIPT_SCRIPT_LEX_H */
