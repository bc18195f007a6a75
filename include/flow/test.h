/*
 * libflow - the test runner behind `flow test`: runs one *_test.lua file.
 *
 * A test file is Lua, run in a sandbox under the same rules as a service
 * (text only, no io/os, budgets on instructions, CPU time and memory).  It
 * declares tests with test("name", function() ... end); each test runs in
 * its own fresh ":memory:" engine with a virtual clock, so tests never see
 * each other's cases.  docs/testing.md describes the API a test file sees.
 */
#ifndef FLOW_TEST_H
#define FLOW_TEST_H

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where every test's virtual clock starts unless told otherwise: Monday
   2 February 2026, 09:00 UTC (09:00 in London, a working day, no bank
   holiday near it). */
#define FLOW_TEST_DEFAULT_START "2026-02-02T09:00:00Z"

#define FLOW_TEST_OPTIONS_VERSION 1

/*
 * Options for flow_test_file().  Initialise with FLOW_TEST_OPTIONS_INIT;
 * fields are only ever appended.  A zero budget means the default.
 */
typedef struct flow_test_options {
  unsigned version;
  const char *filter;   /* run only tests whose name contains this text;
                           NULL or "": all */
  const char *const *service_paths; /* extra directories load() searches
                                       after the test file's own */
  size_t nservice_paths;
  const char *start;    /* ISO 8601 start of every test's clock; NULL:
                           FLOW_TEST_DEFAULT_START (a file's test.start
                           and a test's { at = ... } override it) */
  int coverage;         /* 1: report which states and transitions ran */
  uint64_t instruction_limit; /* VM instructions per test (the test
                                 file's own code); default 10,000,000 */
  uint32_t cpu_ms;      /* CPU milliseconds per test, engine work
                           included; default 5000 */
  size_t memory_limit;  /* bytes the test file's Lua state may hold;
                           default 64 MiB */
} flow_test_options;

#define FLOW_TEST_OPTIONS_INIT                                                 \
  { FLOW_TEST_OPTIONS_VERSION, NULL, NULL, 0, NULL, 0, 0, 0, 0 }

/*
 * Runs the test file at path and returns its results as owned JSON in
 * *out (free with flow_free):
 *
 *   {"file": path,
 *    "tests": [{"name", "status": "pass"|"fail"|"error", "line", "ms",
 *               "message" (fail and error), "history" (fail and error,
 *               when a case was involved: one line per event),
 *               "output" (what print and flow.log wrote, when any)}],
 *    "coverage": {SERVICE: {"states": {STATE: times entered},
 *                           "transitions": {"STATE.EVENT": times fired}}}}
 *
 * "coverage" is there only when opts->coverage is set; it lists every
 * state and every transition of each service a test loaded, with 0 for
 * those never exercised (a state's timer `after = { ["2d"] = "x" }` is
 * the transition "STATE.after 2d").  A test that fails an assertion is
 * "fail"; one that throws, is refused where it did not expect it, or
 * runs out of a budget is "error" with the reason.  A file that does not
 * compile, or whose top level throws, gives one "error" test named after
 * the file.  The call itself returns 0 whenever it could run the file,
 * whatever the results; FLOW_ENOTFOUND when the file cannot be read,
 * FLOW_EINVAL for bad options (a start that is not a time), FLOW_ENOMEM.
 * opts may be NULL.  Nothing is printed; no database is touched.
 */
FLOW_EXTERN int flow_test_file(char **out, const char *path,
                               const flow_test_options *opts);

#ifdef __cplusplus
}
#endif
#endif /* FLOW_TEST_H */
