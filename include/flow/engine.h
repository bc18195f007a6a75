/*
 * libflow - the engine: one database, the services loaded into it, and the
 * budgets its scripts run under.
 *
 * An engine belongs to one thread.  Every call that can fail leaves a
 * one-line message for flow_errmsg(); the message names the thing at fault
 * (script file and line, field, case id) and what would fix it.
 */
#ifndef FLOW_ENGINE_H
#define FLOW_ENGINE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flow_engine flow_engine;

/* SQLite's synchronous setting for the engine's database. */
typedef enum flow_sync_mode {
  FLOW_SYNC_NORMAL = 0, /* WAL + NORMAL: durable across process crashes */
  FLOW_SYNC_FULL = 1,   /* WAL + FULL: durable across power loss too */
  FLOW_SYNC_OFF = 2     /* tests and throwaway databases only */
} flow_sync_mode;

/* Log levels for flow_log_fn. */
typedef enum flow_log_level {
  FLOW_LOG_DEBUG = 0,
  FLOW_LOG_INFO = 1,
  FLOW_LOG_WARN = 2,
  FLOW_LOG_ERROR = 3
} flow_log_level;

/*
 * Receives log lines: the engine's own and those a script writes with
 * flow.log().  msg is valid only during the call.  The library never prints.
 */
typedef void (*flow_log_fn)(flow_engine *engine, int level, const char *msg,
                            void *payload);

/*
 * Returns the engine's notion of "now" in milliseconds since the Unix epoch
 * (UTC).  When unset the engine uses the real clock.  Tests and tools use
 * flow_engine_set_time() instead.
 */
typedef int64_t (*flow_clock_fn)(void *payload);

#define FLOW_ENGINE_OPTIONS_VERSION 2

/*
 * Options for flow_engine_open().  Initialise with FLOW_ENGINE_OPTIONS_INIT
 * and change only the fields you care about; fields are only ever appended.
 * A zero budget means "the default".
 */
typedef struct flow_engine_options {
  unsigned version;
  flow_alloc_fn alloc;          /* NULL: the C library's realloc/free */
  void *alloc_payload;
  flow_sync_mode synchronous;   /* default FLOW_SYNC_NORMAL */
  size_t script_memory_limit;   /* bytes per service; default 32 MiB */
  uint64_t script_instruction_limit; /* VM instructions per handler run;
                                        default 10,000,000 */
  flow_log_fn log;
  void *log_payload;
  flow_clock_fn clock;
  void *clock_payload;
  int busy_timeout_ms;          /* wait for a locked database; default 5000 */
  /* Version 2. */
  uint32_t script_cpu_ms;       /* CPU milliseconds per handler run;
                                   default 1000 */
  size_t script_log_limit;      /* bytes flow.log may write per run;
                                   default 64 KiB */
  /* The most a service may ask for with `budget = {...}` in its script:
     a service may lower its budgets freely but raise them only up to
     these.  Defaults: 256 MiB, 100,000,000 instructions, 10,000 ms. */
  size_t script_memory_max;
  uint64_t script_instruction_max;
  uint32_t script_cpu_ms_max;
} flow_engine_options;

#define FLOW_ENGINE_OPTIONS_INIT                                               \
  { FLOW_ENGINE_OPTIONS_VERSION, NULL, NULL, FLOW_SYNC_NORMAL, 0, 0,          \
    NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0 }

/*
 * Opens an engine on the SQLite database at path (created when missing;
 * ":memory:" for a private in-memory one), creating or upgrading its schema.
 * opts may be NULL for defaults.  On success *out is the engine; on failure
 * *out is NULL and the error is returned: FLOW_EINVAL (bad options),
 * FLOW_EIO (cannot open or not a libflow database, newer schema),
 * FLOW_ENOMEM.  Because there is no engine to hold a message on failure,
 * pass errbuf (may be NULL) of errbuf_len bytes to receive one.
 */
FLOW_EXTERN int flow_engine_open(flow_engine **out, const char *path,
                                 const flow_engine_options *opts,
                                 char *errbuf, size_t errbuf_len);

/* Closes the engine and frees everything it owns.  Accepts NULL. */
FLOW_EXTERN void flow_engine_close(flow_engine *engine);

/*
 * The message of the last failed call on this engine, one line, never NULL
 * ("" when the last call succeeded).  Valid until the next call on engine.
 */
FLOW_EXTERN const char *flow_errmsg(flow_engine *engine);

/* The FLOW_E* code of the last failed call on engine, 0 after a success. */
FLOW_EXTERN int flow_errcode(flow_engine *engine);

/*
 * Fixes the engine clock at ms (milliseconds since the Unix epoch, UTC): a
 * virtual clock for tests and for `flow --now`.  Pass INT64_MIN to return
 * to the real (or host-supplied) clock.
 */
FLOW_EXTERN void flow_engine_set_time(flow_engine *engine, int64_t ms);

/* The engine clock now, in milliseconds since the Unix epoch (UTC). */
FLOW_EXTERN int64_t flow_engine_now(flow_engine *engine);

#define FLOW_CALENDAR_OPTIONS_VERSION 1

/*
 * The working-time calendar that "N working days/hours" and service levels
 * are counted on.  Initialise with FLOW_CALENDAR_OPTIONS_INIT; NULL or 0
 * members keep the default.
 */
typedef struct flow_calendar_options {
  unsigned version;
  const char *zone;      /* "Europe/London" (default), "UTC", a fixed
                            offset "+01:00", or one of the EU-rule zones
                            listed in docs/time.md */
  const char *opens;     /* "09:00" */
  const char *closes;    /* "17:00" */
  unsigned weekdays;     /* bit d set: weekday d works, 0 = Sunday;
                            0 means Monday to Friday */
  int no_bank_holidays;  /* 1: do not add England & Wales bank holidays */
  const char *const *holidays; /* extra days off, "YYYY-MM-DD" */
  size_t nholidays;
} flow_calendar_options;

#define FLOW_CALENDAR_OPTIONS_INIT                                             \
  { FLOW_CALENDAR_OPTIONS_VERSION, NULL, NULL, NULL, 0, 0, NULL, 0 }

/*
 * Replaces the engine's calendar.  Applies to deadlines computed from now
 * on; timers already set keep their times.  FLOW_EINVAL names the option
 * at fault (an unknown zone, "25:00", closes before opens, a malformed
 * holiday); the calendar is then unchanged.
 */
FLOW_EXTERN int flow_engine_set_calendar(flow_engine *engine,
                                         const flow_calendar_options *opts);

/*
 * Parses an ISO 8601 timestamp that carries an offset or Z
 * ("2026-11-27T09:00:00Z", "2026-11-27T09:00:00+01:00", fractions allowed)
 * into milliseconds since the epoch.  Returns FLOW_EINVAL for anything else.
 */
FLOW_EXTERN int flow_time_parse(int64_t *out, const char *text);

/*
 * Formats ms as ISO 8601 UTC with Z into buf (at least 32 bytes):
 * "2026-11-27T09:00:00Z", with ".mmm" only when ms has a fraction.
 */
FLOW_EXTERN int flow_time_format(char *buf, size_t len, int64_t ms);

#ifdef __cplusplus
}
#endif
#endif /* FLOW_ENGINE_H */
