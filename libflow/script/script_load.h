/*
 * The service loader's own header, shared by its files:
 *
 *   script_load.c         the entry point, the problems list, the helpers
 *                         of the protected walk, the top level of the
 *                         definition, and finding lines (flow__ld_locate)
 *   script_load_fields.c  fields = { ... }
 *   script_load_states.c  states = { ... }: events, guards, handlers,
 *                         `after` timers
 *   script_load_rules.c   rules across fields: validate, one_of
 *   script_lex.c          the tokenizer (script_lex.h), also used by the
 *                         engine's diagram
 *
 * Everything here runs inside the protected walk of one load: the
 * helpers raise a Lua error (out of memory, budget spent) rather than
 * return one.
 */
#ifndef LIBFLOW_SCRIPT_SCRIPT_LOAD_H
#define LIBFLOW_SCRIPT_SCRIPT_LOAD_H

#include "script/script_int.h"
#include "script/script_lex.h"

/* ---- problems ---------------------------------------------------------- */

typedef struct problem {
  int line;
  size_t seq; /* discovery order: the last tie-break */
  char *msg;
} problem;

#define MEMO_DEPTH 6

/* flow__ld_locate()'s last answer at one depth of a path. */
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

  flow__lua_tokens tk; /* the source's tokens (script_lex.h) */

  /* Token steps flow__ld_locate() may still take.  A definition with a hundred
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

/* ---- finding lines (script_load.c) --------------------------------------- */

/* The line where the entry at path ("states", "assigned", "on", ...) is
   written, or that of the nearest enclosing entry found; *pos (may be
   NULL) gets the token index of the last key found.  The comment at its
   definition says how. */
int flow__ld_locate(loader *ld, const char *const *path, size_t n, long *pos);
#define LOCATE(ld, ...)                                                        \
  flow__ld_locate((ld), (const char *const[]){ __VA_ARGS__ },                  \
                  sizeof((const char *const[]){ __VA_ARGS__ }) /               \
                      sizeof(char *),                                          \
                  NULL)
/* The line of the key at -2 (a string) inside the entry at prefix. */
int flow__ld_key_line(loader *ld, const char *const *prefix, size_t n);

/* ---- helpers of the protected walk (script_load.c) ----------------------- */

int flow__ld_oom(loader *ld);
/* A temporary block, freed when the load ends however it ends. */
void *flow__ld_scratch(loader *ld, size_t n);
char *flow__ld_strdup(loader *ld, const char *s);
/* One step of a walk over the definition, charged to the load. */
void flow__ld_tick(loader *ld);
/* Keeps a problem "CHUNK:LINE: message" for the report. */
void flow__ld_problem(loader *ld, int line, const char *fmt, ...)
    FLOW__PRINTF(3, 4);
/* 1 if the string at idx is valid UTF-8. */
int flow__ld_utf8_at(lua_State *L, int idx);
/* Pushes t[key] read raw; returns its type. */
int flow__ld_rawfield(lua_State *L, int t, const char *key);
const char *flow__ld_type_at(lua_State *L, int idx);
/* A short printable form of the key at idx for messages. */
const char *flow__ld_key_text(lua_State *L, int idx, char *buf, size_t len);
/* 1 if the key at -2 (during lua_next) is a string in known; otherwise
   reports it: "<owner> has an unknown key 'x' (did you mean 'y'?)". */
int flow__ld_check_key(loader *ld, const char *const *known, int line,
                       const char *owner);
/* Copies the list of strings at idx (see its definition). */
long flow__ld_string_list(loader *ld, int idx, char ***out, size_t *nout);
/* Keeps the function at idx in the registry; returns the reference. */
int flow__ld_keep_function(lua_State *L, int idx);
int flow__ld_function_line(lua_State *L, int idx);
int flow__ld_str_cmp(const void *pa, const void *pb);
int flow__ld_has_state(const loader *ld, const char *name);

/* ---- the parts of the definition ----------------------------------------- */

void flow__ld_read_fields(loader *ld, int fields);  /* script_load_fields.c */
/* one_of and validate of the definition at def, after the fields. */
void flow__ld_read_rules(loader *ld, int def);      /* script_load_fields.c */
void flow__ld_read_states(loader *ld, int states);  /* script_load_states.c */
/* sla = { within, warn } at idx, of the service (state NULL) or of the
   state named (script_load.c). */
void flow__ld_read_sla(loader *ld, int idx, flow__sla *out,
                       const char *state);

#endif /* LIBFLOW_SCRIPT_SCRIPT_LOAD_H */
