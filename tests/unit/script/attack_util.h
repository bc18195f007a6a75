/*
 * The harness the attack suites share (check_attacks*.c): a sandbox with
 * small budgets, a target service whose 'attack' handler is the attack,
 * and checks of what a run gave.  Every attack run is timed with the
 * thread's CPU clock and must end within twice its CPU budget, and the
 * same sandbox must then serve a normal event.
 */
#ifndef FLOW_ATTACK_UTIL_H
#define FLOW_ATTACK_UTIL_H

#include <check.h>
#include <stddef.h>

#include "script/script_int.h"
#include "testutil.h"

/* The budgets every attack runs under. */
#define CPU_MS 150
#define INSTR 1000000
#define MEM ((size_t)4 << 20)

#define READ_ONLY "attempt to change a read-only table"

typedef struct result {
  int rc;
  char msg[FLOW__ERRMSG_MAX]; /* the library's message buffer, copied whole */
  size_t msg_len;  /* strnlen of it: FLOW__ERRMSG_MAX means unterminated */
  double cpu_ms;
  char data[4096]; /* case.data as JSON when the run succeeded (a prefix) */
  size_t data_len; /* the full length of that JSON */
  size_t s_len;    /* the byte length of case.data.s, when a string */
  int s_all_e_acute; /* case.data.s is "\u00e9" repeated, nothing else */
} result;

extern test_alloc ta;
extern flow__allocator al;
extern flow__sandbox *sb;  /* the target's sandbox */
extern flow__service *svc; /* the target service, or NULL */
extern flow__err err;
extern int log_lines;      /* lines flow.log and print wrote */
/* The target script: a prelude at the top, the attack as the handler of
   'attack', and a 'normal' handler. */
extern const char target_fmt[];

/* Check fixtures: a fresh counting allocator; nothing leaked after. */
void setup(void);
void teardown(void);
/* The thread's CPU time in ms. */
double cpu_ms(void);
/* A sandbox with the attack budgets. */
flow__sandbox *make_sb(void);
/* Compiles the target with prelude and body (replacing the last one);
   returns the compile code (err has the message). */
int compile_target(const char *prelude, const char *body);
/* The transition of the target's state 'open' for event. */
const flow__trans *trans(const char *event);
/* Runs event on a case with empty data (CPU time checked). */
result run_event(const char *event);
/* The sandbox still serves the 'normal' event correctly. */
void normal_event_works(void);
/* Compiles the target and runs the attack, then a normal event. */
result attack_with(const char *prelude, const char *body);
result attack(const char *body);
/* The run was killed by the named budget. */
void killed_by(const result *r, const char *budget);
/* Refused with rc and a message holding fragment. */
void refused_with(const result *r, int rc, const char *fragment);
/* Ran to the end leaving case.data as data. */
void no_effect(const result *r, const char *data);
/*
 * Runs code as a chunk (flow__sandbox_eval) in a sandbox of its own with
 * the given budgets (0: the attack budgets), checks that it ended within
 * twice its CPU budget, and frees the sandbox.  data gets the result as
 * JSON when it ran.
 */
result eval_with(const char *code, size_t mem, uint32_t cpu_ms,
                 uint64_t instr);
/* The same, as a service script: compile_target's sandbox, but code is
   the whole script. */
result load_with(const char *code, size_t mem, uint32_t cpu_ms);

/* 1 when s is well-formed UTF-8 (an oracle of the test's own, not the
   library's validator). */
int utf8_ok(const char *s);

#endif /* FLOW_ATTACK_UTIL_H */
