/*
 * libflow - services: Lua scripts that define a case type.
 *
 * Loading runs the script in a fresh sandbox, validates the whole definition
 * it returns, and stores the version (source and SHA-256) in the database.
 * A case always runs on the version it was opened with.
 */
#ifndef FLOW_SERVICE_H
#define FLOW_SERVICE_H

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Loads the service script at path into the engine and stores it.
 * If out is not NULL it receives an owned JSON object describing what was
 * loaded: {"name","version","sha256","title","stored":true|false} where
 * stored is false when the identical version was already in the database.
 *
 * Errors: FLOW_ESCRIPT when the script does not compile, throws, or
 * returns an invalid definition (flow_errmsg() then lists every problem,
 * one "FILE:LINE: message" per line, so it is the one message that may span
 * several lines); FLOW_EEXIST when the same name and version is stored with
 * different source; FLOW_ELIMIT when the script exceeds its budget while
 * loading; FLOW_ENOTFOUND when the file cannot be read; FLOW_EIO; FLOW_ENOMEM.
 */
FLOW_EXTERN int flow_service_load_file(char **out, flow_engine *engine,
                                       const char *path);

/*
 * As flow_service_load_file() for source held in memory.  chunkname is the
 * name errors use for the file ("missed_bin.lua"); NULL means "service".
 */
FLOW_EXTERN int flow_service_load_string(char **out, flow_engine *engine,
                                         const char *source, size_t len,
                                         const char *chunkname);

/*
 * Validates a script without storing it or touching the database: what
 * `flow check` does.  Same errors as loading, minus FLOW_EEXIST and FLOW_EIO.
 */
FLOW_EXTERN int flow_service_check(flow_engine *engine, const char *source,
                                   size_t len, const char *chunkname);

/*
 * The fields of a service as a JSON Schema (draft 2020-12) object, owned by
 * the caller.  version 0 means the newest stored version.  FLOW_ENOTFOUND
 * when no such service is stored.
 */
FLOW_EXTERN int flow_service_schema(char **out, flow_engine *engine,
                                    const char *name, int64_t version);

/*
 * The stored services as an owned JSON array of
 * {"name","version","title","sha256","loaded_at"}, newest version last.
 */
FLOW_EXTERN int flow_service_list(char **out, flow_engine *engine);


/*
 * Static checks beyond what loading refuses: what `flow check` warns
 * about.  Compiles the script as flow_service_check() does (same errors,
 * with *out NULL), then returns in *out an owned JSON object
 *   {"file": chunkname, "warnings": [{"line": N, "message": "..."}]}
 * sorted by line: states no event or timer can reach from the initial
 * state (a handler that returns a state is taken to reach any state),
 * states that are not final but have no events and no timers, timers that
 * can never fire (another timer of the state leaves it sooner, two timers
 * fall due at the same moment, sla_warning or sla_breached handled
 * without the service setting that service level).
 */
FLOW_EXTERN int flow_service_lint(char **out, flow_engine *engine,
                                  const char *source, size_t len,
                                  const char *chunkname);

/*
 * The state diagram of a script as owned text in *out: format "dot"
 * (Graphviz, the default when NULL) or "mermaid" (a stateDiagram-v2).
 * Final states are marked (a double circle; a transition to [*]), the
 * initial state has an arrow from a start point, and edges carry the
 * event, the roles it needs ("[crew]"), a guard ("if guard"), and timers
 * ("after 2 working days").  A handler that picks the next state gives
 * dashed edges to the states its code returns as string literals, or to a
 * note saying the handler decides.  Compiles like flow_service_check()
 * (same errors); FLOW_EINVAL for an unknown format.
 */
FLOW_EXTERN int flow_service_graph(char **out, flow_engine *engine,
                                   const char *source, size_t len,
                                   const char *chunkname, const char *format);

#ifdef __cplusplus
}
#endif
#endif /* FLOW_SERVICE_H */
