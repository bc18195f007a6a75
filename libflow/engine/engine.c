/*
 * The engine: opening and closing, the error message, the clock and the
 * calendar, the sandbox configuration and flow_eval.  Services are in
 * engine_service.c.
 *
 * This is the one place where the subsystems are wired together: the store
 * is reached through its function table, the script subsystem through
 * script.h, so neither knows about the other.
 */
#include "engine/engine.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>


int
flow__engine_fail(flow_engine *e, int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  flow__err_setv(&e->err, code, fmt, ap);
  va_end(ap);
  return code;
}

int
flow__engine_misuse(flow_engine *engine, const char *msg)
{
  return engine ? flow__engine_fail(engine, FLOW_EMISUSE, "%s", msg)
                : FLOW_EMISUSE;
}

int
flow__engine_fail_err(flow_engine *e, const flow__err *err)
{
  if (err != &e->err) {
    e->err.code = err->code;
    memcpy(e->err.msg, err->msg, sizeof e->err.msg);
  }
  /* Sub-modules may have written the message directly. */
  flow__utf8_fix(e->err.msg);
  return err->code;
}

const char *
flow_errmsg(flow_engine *engine)
{
  if (engine == NULL)
    return "no engine (flow_engine_open failed or was not called)";
  return engine->err.msg;
}

int
flow_errcode(flow_engine *engine)
{
  return engine ? engine->err.code : FLOW_EMISUSE;
}

int
flow_engine_open(flow_engine **out, const char *path,
                 const flow_engine_options *opts, char *errbuf,
                 size_t errbuf_len)
{
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  flow__err err;
  flow__err_clear(&err);
  int rc;

  if (errbuf && errbuf_len)
    errbuf[0] = 0;
  if (out == NULL || path == NULL) {
    rc = flow__err_set(&err, FLOW_EMISUSE,
                       "flow_engine_open: out and path must not be NULL");
    goto report;
  }
  *out = NULL;
  if (opts) {
    if (opts->version < 1 || opts->version > FLOW_ENGINE_OPTIONS_VERSION) {
      rc = flow__err_set(&err, FLOW_EINVAL,
                         "flow_engine_open: options version %u is not "
                         "supported (initialise with "
                         "FLOW_ENGINE_OPTIONS_INIT)",
                         opts->version);
      goto report;
    }
    /* A host built against an older header passed a shorter struct:
       copy only what its version has. */
    size_t n = opts->version == 1
                   ? offsetof(flow_engine_options, script_cpu_ms)
                   : sizeof o;
    memcpy(&o, opts, n);
  }
  if (o.synchronous != FLOW_SYNC_NORMAL && o.synchronous != FLOW_SYNC_FULL &&
      o.synchronous != FLOW_SYNC_OFF) {
    rc = flow__err_set(&err, FLOW_EINVAL,
                       "flow_engine_open: unknown synchronous mode %d",
                       (int)o.synchronous);
    goto report;
  }
  if (o.alloc == NULL)
    o.alloc = flow__default_alloc;
  if (o.script_memory_limit == 0)
    o.script_memory_limit = FLOW__DEFAULT_MEMORY;
  if (o.script_instruction_limit == 0)
    o.script_instruction_limit = FLOW__DEFAULT_INSTRUCTIONS;
  if (o.busy_timeout_ms <= 0)
    o.busy_timeout_ms = 5000;
  if (o.script_cpu_ms == 0)
    o.script_cpu_ms = FLOW__DEFAULT_CPU_MS;
  if (o.script_log_limit == 0)
    o.script_log_limit = FLOW__DEFAULT_LOG;
  if (o.script_memory_max == 0)
    o.script_memory_max = FLOW__DEFAULT_MEMORY_MAX;
  if (o.script_instruction_max == 0)
    o.script_instruction_max = FLOW__DEFAULT_INSTRUCTIONS_MAX;
  if (o.script_cpu_ms_max == 0)
    o.script_cpu_ms_max = FLOW__DEFAULT_CPU_MS_MAX;
  if (o.script_memory_max < o.script_memory_limit)
    o.script_memory_max = o.script_memory_limit;
  if (o.script_instruction_max < o.script_instruction_limit)
    o.script_instruction_max = o.script_instruction_limit;
  if (o.script_cpu_ms_max < o.script_cpu_ms)
    o.script_cpu_ms_max = o.script_cpu_ms;

  flow__allocator a = { o.alloc, o.alloc_payload };
  flow_engine *e = flow__calloc(&a, 1, sizeof *e);
  if (e == NULL) {
    rc = flow__err_set(&err, FLOW_ENOMEM, "out of memory opening the engine");
    goto report;
  }
  e->alloc = a;
  e->opts = o;
  e->fixed_now = INT64_MIN;
  e->next_due = INT64_MIN;
  e->msg_next = INT64_MIN;
  e->msg_sweep = -1; /* unknown: engine_message.c looks once */
  e->vt = &flow__store_sqlite;
  flow__calendar_default(&e->cal);
  flow__store_config sc = { &e->alloc, o.synchronous, o.busy_timeout_ms };
  rc = e->vt->open(&e->store, path, &sc, &err);
  if (rc != 0) {
    flow__free(&a, e);
    goto report;
  }
  *out = e;
  return 0;
report:
  if (errbuf && errbuf_len)
    snprintf(errbuf, errbuf_len, "%s", err.msg);
  return rc;
}

void
flow_engine_close(flow_engine *engine)
{
  if (engine == NULL)
    return;
  flow__engine_async_drop(engine);
  if (engine->loop_free)
    engine->loop_free(engine);
  /* Delete the cancelled timers still noted; if this fails they stay dead
     rows, removed when they come due. */
  if (engine->nsweep) {
    flow__err err;
    flow__err_clear(&err);
    if (engine->vt->begin(engine->store, &err) == 0 &&
        (flow__engine_sweep(engine, &err) != 0 ||
         engine->vt->commit(engine->store, &err) != 0))
      engine->vt->rollback(engine->store);
  }
  flow__engine_services_free(engine);
  flow__engine_actions_free(engine);
  engine->vt->close(engine->store);
  flow__free(&engine->alloc, engine->cal_holidays);
  flow__allocator a = engine->alloc;
  flow__free(&a, engine);
}

void
flow_engine_set_time(flow_engine *engine, int64_t ms)
{
  if (engine) {
    engine->fixed_now = ms;
    flow__engine_kick(engine); /* timers may have fallen due */
  }
}

static int
cmp_days(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

int
flow_engine_set_calendar(flow_engine *engine, const flow_calendar_options *o)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  flow_engine *e = engine;
  flow__calendar cal;
  flow__calendar_default(&cal);
  if (o == NULL) {
    flow__free(&e->alloc, e->cal_holidays);
    e->cal_holidays = NULL;
    e->cal = cal;
    flow__err_clear(&e->err);
    return 0;
  }
  if (o->version != FLOW_CALENDAR_OPTIONS_VERSION)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "calendar options version %u is not supported "
                             "(initialise with FLOW_CALENDAR_OPTIONS_INIT)",
                             o->version);
  if (o->zone &&
      flow__calendar_zone(o->zone, &cal.std_offset_min, &cal.dst_offset_min) !=
          0)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "calendar zone '%.40s' is not known: use "
                             "Europe/London, UTC, a fixed offset like "
                             "\"+01:00\", or a zone listed in docs/time.md",
                             o->zone);
  if (o->opens && flow__clock_time_parse(o->opens, &cal.open_minute) != 0)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "calendar opens '%.20s' is not a time like "
                             "\"09:00\"",
                             o->opens);
  if (o->closes && flow__clock_time_parse(o->closes, &cal.close_minute) != 0)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "calendar closes '%.20s' is not a time like "
                             "\"17:00\"",
                             o->closes);
  if (cal.close_minute <= cal.open_minute)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "calendar closes before it opens");
  if (o->weekdays & ~0x7fu)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "calendar weekdays has bits beyond Saturday");
  if (o->weekdays)
    cal.weekdays = o->weekdays;
  cal.england_wales_holidays = !o->no_bank_holidays;
  int64_t *days = NULL;
  if (o->nholidays) {
    if (o->holidays == NULL)
      return flow__engine_fail(e, FLOW_EMISUSE, "nholidays without holidays");
    days = flow__calloc(&e->alloc, o->nholidays, sizeof *days);
    if (days == NULL)
      return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
    for (size_t i = 0; i < o->nholidays; i++) {
      int y, m, d;
      if (o->holidays[i] == NULL ||
          flow__date_parse(o->holidays[i], &y, &m, &d) != 0) {
        flow__free(&e->alloc, days);
        return flow__engine_fail(e, FLOW_EINVAL,
                                 "calendar holiday '%.20s' is not a date "
                                 "like \"2026-12-24\"",
                                 o->holidays[i] ? o->holidays[i] : "(null)");
      }
      days[i] = flow__days_from_civil(y, m, d);
    }
    qsort(days, o->nholidays, sizeof *days, cmp_days);
  }
  cal.extra_holidays = days;
  cal.nextra = o->nholidays;
  /* Refuse a calendar with no working time at all now, not at the first
     deadline: adding one working day must succeed. */
  flow__duration one = { FLOW__DUR_WORKING_DAYS, 1 };
  int64_t probe;
  if (flow__calendar_add(&cal, flow_engine_now(e), &one, &probe) != 0) {
    flow__free(&e->alloc, days);
    return flow__engine_fail(e, FLOW_EINVAL,
                             "calendar has no working time: check weekdays "
                             "and holidays");
  }
  flow__free(&e->alloc, e->cal_holidays);
  e->cal_holidays = days;
  e->cal = cal;
  flow__err_clear(&e->err);
  return 0;
}

int64_t
flow_engine_now(flow_engine *engine)
{
  if (engine && engine->fixed_now != INT64_MIN)
    return engine->fixed_now;
  if (engine && engine->opts.clock)
    return engine->opts.clock(engine->opts.clock_payload);
  return flow__time_real();
}

int
flow__engine_sandbox(flow_engine *e, flow__sandbox **out)
{
  flow__sandbox_config cfg = {
    .alloc = &e->alloc,
    .mem_limit = e->opts.script_memory_limit,
    .instr_limit = e->opts.script_instruction_limit,
    .log = e->opts.log,
    .log_engine = e,
    .log_payload = e->opts.log_payload,
    .cpu_ms = e->opts.script_cpu_ms,
    .log_limit = e->opts.script_log_limit,
    .mem_max = e->opts.script_memory_max,
    .instr_max = e->opts.script_instruction_max,
    .cpu_ms_max = e->opts.script_cpu_ms_max,
  };
  flow__err err;
  flow__err_clear(&err);
  int rc = flow__sandbox_new(out, &cfg, &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  flow__sandbox_set_calendar(*out, &e->cal);
  flow__sandbox_set_opener(*out, flow__open_reserve, e);
  return 0;
}

/* Hands j (consumed) to the host as an owned string in *out. */
int
flow__engine_owned_json(flow_engine *e, char **out, json_t *j)
{
  if (out == NULL) {
    json_decref(j);
    return 0;
  }
  *out = NULL;
  if (j == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  *out = flow__json_owned(&e->alloc, j);
  json_decref(j);
  if (*out == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  return 0;
}

int
flow_eval(char **out, flow_engine *engine, const char *code, size_t len,
          const char *chunkname)
{
  if (out)
    *out = NULL;
  if (engine == NULL || code == NULL)
    return flow__engine_misuse(engine, "flow_eval: code is NULL");
  flow__sandbox *sb;
  int rc = flow__engine_sandbox(engine, &sb);
  if (rc != 0)
    return rc;
  json_t *result = NULL;
  flow__err err;
  flow__err_clear(&err);
  rc = flow__sandbox_eval(sb, code, len, chunkname ? chunkname : "eval",
                          &result, &err);
  flow__sandbox_free(sb);
  if (rc != 0)
    return flow__engine_fail_err(engine, &err);
  rc = flow__engine_owned_json(engine, out, result);
  if (rc == 0)
    flow__err_clear(&engine->err);
  return rc;
}
