/*
 * Private to libflow/runner/: the runner behind `flow test` and what its
 * files share -- how the test API reports (runner_report.c), the virtual
 * clock (runner_clock.c), loading services (runner_load.c), case handles
 * and their assertions (runner_case.c), actions and their mocks
 * (runner_action.c), tasks and incidents (runner_task.c), messages
 * (runner_message.c), assertions on plain values and expect()
 * (runner_expect.c), coverage (runner_cover.c), and declaring and running
 * the tests (runner.c).  Nothing outside libflow/runner/ includes
 * this file.
 */
#ifndef LIBFLOW_RUNNER_RUNNER_INT_H
#define LIBFLOW_RUNNER_RUNNER_INT_H

#include <lua.h>

#include "engine/engine.h"
#include "script/script_host.h"

#define MSG_MAX (FLOW__ERRMSG_MAX + 128)

typedef struct svc_src {
  char *chunk; /* the path, as errors name it */
  char *src;
  size_t len;
} svc_src;

typedef struct test_decl {
  char *name;
  int ref;  /* the test function */
  int line; /* where test(...) is called */
  char *at; /* its { at = ... }, or NULL */
} test_decl;

typedef struct runner_dispatched runner_dispatched; /* runner_action.c */
typedef struct runner_delayed runner_delayed;

typedef struct runner {
  flow__allocator alloc;
  flow__sandbox *sb;
  const char *path;
  char *dir;
  flow_test_options opts;
  int64_t start;

  test_decl *tests;
  size_t ntests, captests;
  svc_src *svcs;
  size_t nsvcs, capsvcs;
  int test_table; /* registry ref of the `test` table */
  flow_engine *scratch; /* checks top-level load() calls */

  /* The test running now. */
  int in_test;
  flow_engine *e;
  char last_case[24];
  json_t *cases;  /* ids opened, strings */
  json_t *loaded; /* service names loaded, strings */
  int failed;
  int fail_line;
  char fail_msg[MSG_MAX];
  json_t *history; /* lines, captured at the failure */
  int last_code;   /* FLOW_E* of the last refusal raised, 0 none */
  int moving;      /* inside flow__runner_move_clock */
  char incident[MSG_MAX];
  int incident_code;
  char incident_case[24];
  flow__buf output;
  json_t *coverage;
  /* Actions (runner_action.c): requests handed to mocks and not yet
     answered, and answers to give later. */
  runner_dispatched *dispatched;
  size_t ndispatched, capdispatched;
  int dispatch_oom;
  runner_delayed *delayed;
  size_t ndelayed, capdelayed;
} runner;

/* ---- reporting (runner_report.c) ----------------------------------------- */

/* The runner of the C function running now (its upvalue 1). */
runner *flow__runner_of(lua_State *L);
/* The line of the test code that called the C function running now. */
int flow__runner_caller_line(lua_State *L);
/* Raises "FILE:LINE: message" with the line of the calling test code.
   (luaL_error would cut a long file name to LUA_IDSIZE.) */
int flow__runner_raise_at(lua_State *L, runner *r, const char *fmt, ...)
    FLOW__PRINTF(3, 4);
/* Records a failed assertion (the first one counts) and raises. */
int flow__runner_fail_at(lua_State *L, runner *r, const char *fmt, ...)
    FLOW__PRINTF(3, 4);
/* Keeps the history of case_id for the report, once per test. */
void flow__runner_capture_history(runner *r, const char *case_id);
/* Raises the engine's refusal rc as a test error. */
int flow__runner_engine_error(lua_State *L, runner *r, int rc,
                              const char *what);
/* The same for a refusal with its own message ("WHAT was refused:
   FLOW_E...: msg"), which expect_refused(fn, code) recognises. */
int flow__runner_refused(lua_State *L, runner *r, int rc, const char *what,
                         const char *msg);
/* The runner, after checking that a test is running; raises if not. */
runner *flow__runner_need_test(lua_State *L, const char *fn);
/* "EPERM" or "FLOW_EPERM" -> the code, or 0. */
int flow__runner_code_from_name(const char *s);
/* The error name at idx as its code; raises when it names none. */
int flow__runner_check_code_arg(lua_State *L, runner *r, int idx);

/* ---- the virtual clock (runner_clock.c) ---------------------------------- */

/* The engine's listener: keeps the first incident of a test. */
void flow__runner_listener(flow_engine *e, const char *event_json,
                           void *payload);
/* Moves the clock to target, firing what falls due on the way. */
void flow__runner_move_clock(lua_State *L, runner *r, int64_t target);
/* The time text at idx; raises when it is not one. */
int64_t flow__runner_check_time(lua_State *L, runner *r, int idx,
                                const char *what);
int flow__runner_l_advance(lua_State *L);
int flow__runner_l_advance_to(lua_State *L);
int flow__runner_l_now(lua_State *L);

/* ---- loading services (runner_load.c) ------------------------------------ */

/* Reads a whole file; NULL with errno set when it cannot. */
char *flow__runner_read_all(runner *r, const char *path, size_t *len);
void flow__runner_svc_src_free(runner *r, svc_src *s);
/* Loads a service into the test's engine; raises on failure. */
void flow__runner_load_into_engine(lua_State *L, runner *r,
                                   const svc_src *s);
int flow__runner_l_load(lua_State *L);

/* ---- cases (runner_case.c) ----------------------------------------------- */

/* Makes the case metatable, whose methods are the case API. */
void flow__runner_case_install(lua_State *L, runner *r);
int flow__runner_l_open(lua_State *L);
int flow__runner_l_case_of(lua_State *L);
int flow__runner_l_expect_open_refused(lua_State *L);

/* The case id of the handle at index 1 (raises when it is not one). */
const char *flow__runner_case_id(lua_State *L, runner *r);
/* The actor that the options table at idx (or a string: the actor's id)
   gives; "tester" with no roles when it is nil.  Its strings stay on the
   stack; `at` in the table moves the clock first.  Raises on a bad one. */
void flow__runner_read_actor(lua_State *L, runner *r, int idx,
                             flow_actor *actor, const char **roles);
#define FLOW__RUNNER_MAX_ROLES 16
/* The table (or nil: NULL) at idx as JSON object text, malloc'd; raises
   when it is not one. */
char *flow__runner_object_text(lua_State *L, runner *r, int idx,
                               const char *what);

/* ---- tasks and incidents (runner_task.c) --------------------------------- */

int flow__runner_c_tasks(lua_State *L);
int flow__runner_c_claim(lua_State *L);
int flow__runner_c_release(lua_State *L);
int flow__runner_c_complete(lua_State *L);
int flow__runner_c_cancel(lua_State *L);
int flow__runner_c_expect_tasks(lua_State *L);
int flow__runner_c_expect_claim_refused(lua_State *L);
int flow__runner_c_expect_complete_refused(lua_State *L);
int flow__runner_c_incidents(lua_State *L);
int flow__runner_c_retry(lua_State *L);
int flow__runner_c_dismiss(lua_State *L);

/* ---- messages (runner_message.c) ----------------------------------------- */

int flow__runner_l_send(lua_State *L);
int flow__runner_l_messages(lua_State *L);

/* ---- actions (runner_action.c) ------------------------------------------- */

/* Dispatches what is due to the mocks and answers each, on L. */
void flow__runner_answer(lua_State *L, runner *r);
/* When the next `after` answer is due; INT64_MAX when none. */
int64_t flow__runner_next_answer(const runner *r);
/* Gives every `after` answer due by the engine clock, in due order. */
void flow__runner_give_due(lua_State *L, runner *r);
/* Forgets the test's requests and answers. */
void flow__runner_actions_reset(runner *r);
/* Forgets the test's mocks. */
void flow__runner_mocks_clear(lua_State *L);
int flow__runner_l_mock_action(lua_State *L);
int flow__runner_c_actions(lua_State *L);
int flow__runner_c_expect_actions(lua_State *L);

/* ---- plain values (runner_expect.c) -------------------------------------- */

/* 1 when actual matches expected, as the assertions compare values. */
int flow__runner_json_match(json_t *expected, json_t *actual, int subset);
/* The first key where actual fails to match expected, as "KEY is GOT, not
   WANT", into buf ("" when they match). */
void flow__runner_json_diff(json_t *expected, json_t *actual, char *buf,
                            size_t len);
int flow__runner_l_expect_equal(lua_State *L);
int flow__runner_l_expect(lua_State *L);
int flow__runner_l_fail(lua_State *L);
int flow__runner_l_expect_refused(lua_State *L);
int flow__runner_l_mock_index(lua_State *L);

/* ---- coverage (runner_cover.c) ------------------------------------------- */

/* Adds what the test that ran now covered to r->coverage. */
void flow__runner_collect_coverage(runner *r);

#endif /* LIBFLOW_RUNNER_RUNNER_INT_H */
