/*
 * libflow - running the engine on a host's libuv loop.
 *
 * Separate from <flow.h> so that hosts which do not use libuv never see
 * its types.  <uv.h> needs POSIX declarations: hosts compiling with
 * -std=c11 define _POSIX_C_SOURCE 200809L first.
 */
#ifndef FLOW_UV_H
#define FLOW_UV_H

#include <uv.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Makes the engine put its handles (timer, async, idle/check) on loop
 * instead of a loop of its own; the host then runs uv_run(loop, ...) and
 * flow_engine_run() must not be used.  Call it before any other loop call
 * (flow_engine_post, flow_engine_run, flow_engine_backend_fd,
 * flow_engine_uv_loop) attached the engine's own loop: FLOW_EMISUSE then.
 * Asynchronous calls queued before are fine.  The host must keep loop
 * alive until flow_engine_close(), which closes the engine's handles and
 * runs loop briefly (UV_RUN_NOWAIT) so they finish closing; so it must not
 * be called from inside one of that loop's callbacks.
 */
FLOW_EXTERN int flow_engine_use_uv_loop(flow_engine *engine, uv_loop_t *loop);

/* The loop the engine runs on (its own, created on first use, or the
   host's); NULL on allocation failure. */
FLOW_EXTERN uv_loop_t *flow_engine_uv_loop(flow_engine *engine);

#ifdef __cplusplus
}
#endif
#endif /* FLOW_UV_H */
