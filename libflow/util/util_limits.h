/*
 * Every limit and default of the engine, in one place.  docs/budgets.md
 * lists them for service authors and hosts; a change here is a change
 * there.  Each layer uses the ones that concern it; none defines its own.
 */
#ifndef LIBFLOW_UTIL_UTIL_LIMITS_H
#define LIBFLOW_UTIL_UTIL_LIMITS_H

#include <stddef.h>
#include <stdint.h>

/* ---- budgets of one unit of script work (flow_engine_options) -------- */

/* Defaults, when the host leaves an option 0. */
#define FLOW__DEFAULT_MEMORY ((size_t)32 << 20)        /* 32 MiB */
#define FLOW__DEFAULT_INSTRUCTIONS UINT64_C(10000000)  /* 10 million */
#define FLOW__DEFAULT_CPU_MS 1000u
#define FLOW__DEFAULT_LOG ((size_t)64 << 10)           /* 64 KiB per run */
/* Ceilings for a service's own `budget = { ... }`. */
#define FLOW__DEFAULT_MEMORY_MAX ((size_t)256 << 20)   /* 256 MiB */
#define FLOW__DEFAULT_INSTRUCTIONS_MAX UINT64_C(100000000)
#define FLOW__DEFAULT_CPU_MS_MAX 10000u
/* A test file's own budgets under `flow test` (its top level and each
   test): a test does the work of many events. */
#define FLOW__TEST_MEMORY ((size_t)64 << 20)
#define FLOW__TEST_INSTRUCTIONS UINT64_C(10000000)
#define FLOW__TEST_CPU_MS 5000u

/* ---- what a script may be -------------------------------------------- */

/* The longest service script: written by people, a few hundred lines; data
   that would make it longer belongs in case data or an action. */
#define FLOW__MAX_SCRIPT ((size_t)1 << 20)
/* The longest *_test.lua file `flow test` reads. */
#define FLOW__MAX_TEST_FILE ((size_t)4 << 20)
/* The longest name of a service, state, event, field or action. */
#define FLOW__MAX_NAME 64
/* What a service may declare: every event looks its fields and states up,
   and a sender's data is checked against every field. */
#define FLOW__MAX_FIELDS 1000
#define FLOW__MAX_STATES 1000
#define FLOW__MAX_EVENTS 256 /* events one state takes */
#define FLOW__MAX_AFTER 64   /* `after` entries of one state */
/* Problems the loader reports for one script (the first, in line order),
   and warnings `flow check` gives. */
#define FLOW__MAX_PROBLEMS 1000
#define FLOW__MAX_WARNINGS 200
/* The longest run of field accesses each on the one before (a.b.c...)
   a script may write (script_bytecode.c says why). */
#define FLOW__MAX_FIELD_CHAIN 64

/* ---- what one event may do ------------------------------------------- */

/* Actions (flow.call) and timers (flow.after, flow.at): each is a row
   written with the transition, and each timer a walk of the calendar. */
#define FLOW__MAX_CALLS_PER_RUN 100
/* flow.call's options: retries after the first attempt, the longest
   idempotency key (bytes). */
#define FLOW__MAX_RETRIES 20
#define FLOW__MAX_ACTION_KEY 200
#define FLOW__MAX_TIMERS_PER_RUN 100
/* Tasks (flow.task) one event may create; the most values of an enum
   in a task's form; the longest title (characters), team or assignee
   (bytes). */
#define FLOW__MAX_TASKS_PER_RUN 20
/* Cases one event may open with flow.open; a case opened so may open
   none itself while it opens (docs/budgets.md). */
#define FLOW__MAX_OPENS_PER_RUN 20
#define FLOW__MAX_ENUM_VALUES 1000
#define FLOW__MAX_TASK_TITLE 200
#define FLOW__MAX_TASK_WHO 100
/* Roles a task may name (flow.task{ roles = ... }). */
#define FLOW__MAX_TASK_ROLES 10
/* Messages (flow_message_send): the longest correlation key in bytes,
   the time to live when none is given and the longest one. */
#define FLOW__MAX_MESSAGE_KEY 200
#define FLOW__MESSAGE_TTL_MS ((int64_t)7 * 24 * 60 * 60 * 1000)
#define FLOW__MESSAGE_TTL_MAX_MS ((int64_t)366 * 24 * 60 * 60 * 1000)
/* Buffered messages one transaction delivers to the cases it gave a key
   (each is a transition); the rest wait for the next loop round. */
#define FLOW__MESSAGE_BATCH 64
/* Lists of tasks, incidents and messages: at most this many rows. */
#define FLOW__MAX_LIST 1000
/* Events one case keeps (its history's seq; the store keys a history row
   by case_id * 2^24 + seq). */
#define FLOW__MAX_CASE_SEQ 16777215
/* coroutine.close nested inside __close handlers. */
#define FLOW__MAX_CLOSE_DEPTH 100

/* ---- data ------------------------------------------------------------- */

/* The largest case data, event payload, action arguments or timer payload,
   as JSON text, the engine takes or stores: a case is a record, not a file
   store. */
#define FLOW__MAX_DOCUMENT (1024 * 1024)
/* The most members one object of it may have: what one Lua table may hold
   outside its list part in a sandbox (FLOW__TABLE_MAX_HASH). */
#define FLOW__MAX_MEMBERS 16384
/* JSON nesting and values converted to or from Lua. */
#define FLOW__JSON_MAX_DEPTH 100
#define FLOW__JSON_MAX_NODES 1000000
/* An actor's id and each of its roles, in bytes. */
#define FLOW__MAX_ACTOR_TEXT 256

/* ---- the engine's own work -------------------------------------------- */

/* Cases whose cancelled timers the engine collects before it has the store
   remove them in one call (the store splits the batch as it needs). */
#define FLOW__SWEEP_BATCH 64
/* Action requests the engine takes and dispatches per loop round. */
#define FLOW__ACTION_BATCH 64
/* How long an attempt of a request with no timeout is held before it is
   taken to have died with its process and is dispatched again. */
#define FLOW__ACTION_LEASE_MS (60 * 60 * 1000)
/* Subscribers to an engine's notifications (flow_engine_subscribe). */
#define FLOW__MAX_SUBSCRIBERS 64
/* Actions a host may register on one engine. */
#define FLOW__MAX_ACTIONS 256
/* How often a running engine asks the store whether another connection
   committed (a new timer another process set, say), in milliseconds. */
#define FLOW__WAKE_POLL_MS 1000

#endif /* LIBFLOW_UTIL_UTIL_LIMITS_H */
