/*
 * The engine structure, shared by the files of core/ and nothing else.
 * Hosts only ever see `flow_engine *`.
 */
#ifndef FLOW_ENGINE_INT_H
#define FLOW_ENGINE_INT_H

#include "core/core.h"
#include "script/script.h"
#include "store/store.h"

struct flow_engine {
  flow__allocator alloc;
  flow__err err;
  flow_engine_options opts;
  const flow__store_vt *vt;
  flow__store *store;
  flow__service *services; /* compiled versions, newest first */
  int64_t fixed_now;       /* INT64_MIN: use the clock */
  flow__calendar cal;
};

/* Records an error on the engine and returns code. */
int flow__engine_fail(flow_engine *e, int code, const char *fmt, ...)
    FLOW__PRINTF(3, 4);
/* Copies a sub-module's error onto the engine; returns its code. */
int flow__engine_fail_err(flow_engine *e, const flow__err *err);

/* A new sandbox with the engine's budgets and log callback. */
int flow__engine_sandbox(flow_engine *e, flow__sandbox **out);

/*
 * The compiled service name/version (version 0: newest stored), compiling
 * and caching it from the stored source if needed.  Borrowed: valid until
 * the engine closes.
 */
int flow__engine_service(flow_engine *e, const char *name, int64_t version,
                         flow__service **out);

/*
 * Drops a compiled service from the cache and frees it; the next event
 * compiles it afresh from its stored source.  Used after a kill may have
 * damaged its Lua state.
 */
void flow__engine_evict(flow_engine *e, flow__service *svc);

/* Hands j (consumed, may be NULL after a failed allocation) to the host
   as an owned JSON string in *out (nothing when out is NULL). */
int flow__engine_owned_json(flow_engine *e, char **out, json_t *j);

#endif /* FLOW_ENGINE_INT_H */
