/*
 * The engine's libuv loop: arming the next durable timer, flushing queued
 * asynchronous calls once per round (group commit), work posted from other
 * threads, and the three ways a host drives it (flow_engine_run on a loop
 * of the engine's own, a host's uv_loop_t, or a foreign loop polling the
 * backend descriptor).
 *
 * The core knows nothing of libuv.  It keeps its timers in the database and
 * its queued calls in a list, and tells the loop that something changed
 * through e->loop_kick; the loop asks it when the next timer is due
 * (flow__engine_next_due: timers and action requests), fires due timers
 * and dispatches due requests in bounded batches (flow__engine_work_batch)
 * and flushes the queue (flow__engine_flush_async).
 * The loop is attached lazily, by the first call that needs it.
 *
 * Handles, all on one loop:
 *   timer  armed for the next due timer only.  With a fixed (virtual)
 *          clock time does not pass by itself, so it is armed only when a
 *          timer is already due, with a zero timeout.  After a full batch
 *          it is re-armed with zero from the check phase, so a backlog of
 *          overdue timers fires TIMER_BATCH per round and the loop's other
 *          handles run between batches.  (Re-armed from its own callback,
 *          a zero timer would fire again in the same pass: libuv runs every
 *          timer that is due by the loop's cached time.)
 *   async  wakes the loop for posted work; unreferenced, so an idle engine
 *          does not keep a DEFAULT run alive.
 *   idle + check
 *          started while calls or posts are queued: idle keeps the poll
 *          phase from blocking, and the check callback, at the end of the
 *          round, runs the posts and flushes the calls queued in that round
 *          in one transaction, re-arms the timer after a full batch, then
 *          stops both when nothing is left.
 *   wake   every FLOW__WAKE_POLL_MS, asks the store whether another
 *          connection committed (flow__engine_wake_check): a timer another
 *          process set is then armed here too.  Unreferenced, like async.
 *          Stopped once a foreign loop asks for the backend descriptor or
 *          timeout: that loop gets the check at each
 *          flow_engine_backend_timeout().
 *
 * Posts are a FIFO under a mutex; nodes come from the engine allocator,
 * which therefore must be thread-safe when other threads post.  Attaching
 * is guarded by a process-wide mutex and the pointer is published with
 * release/acquire ordering, so a post from another thread may be the first
 * use of the loop.
 */
#define _POSIX_C_SOURCE 200809L /* <uv.h> needs pthread_rwlock_t */

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "engine/engine.h"
#include "flow/uv.h"

#define TIMER_BATCH 64 /* timers fired per loop round */
#define FIRE_DUE_BATCH 256
#define RETRY_MS 1000  /* after a storage failure, with a real clock */
#define NHANDLES 5     /* timer, async, idle, check, wake */

typedef struct post_node {
  struct post_node *next;
  flow_post_fn fn;
  void *payload;
} post_node;

struct flow__loop {
  flow_engine *e;
  uv_loop_t own;
  uv_loop_t *uv; /* &own, or the host's */
  int host;      /* 1: uv is the host's loop */
  uv_timer_t timer;
  uv_async_t async;
  uv_idle_t idle;
  uv_check_t check;
  uv_timer_t wake;
  int nclosed;     /* handles whose close callback has run */
  int running;     /* inside flow_engine_run */
  int in_timer;    /* inside timer_cb: it re-arms the timer itself */
  int more_timers; /* a full batch fired: fire again next round */

  uv_mutex_t post_mu; /* guards the FIFO below */
  post_node *post_head, *post_tail;
};

static void loop_kick(flow_engine *e);
static void loop_free(flow_engine *e);

/* e->loop, which another thread's first post may have just set. */
static struct flow__loop *
loaded_loop(flow_engine *e)
{
  return __atomic_load_n(&e->loop, __ATOMIC_ACQUIRE);
}

/* ---- logging ------------------------------------------------------------ */

static void loop_log(flow_engine *e, int level, const char *fmt, ...)
    FLOW__PRINTF(3, 4);

static void
loop_log(flow_engine *e, int level, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;

  if (e->opts.log == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  e->opts.log(e, level, msg, e->opts.log_payload);
}

/* ---- posted work -------------------------------------------------------- */

static int
posts_queued(struct flow__loop *l)
{
  int queued;

  uv_mutex_lock(&l->post_mu);
  queued = l->post_head != NULL;
  uv_mutex_unlock(&l->post_mu);
  return queued;
}

/* Runs the work posted so far, in order; what is posted meanwhile waits
   for the next round. */
static void
run_posts(struct flow__loop *l)
{
  flow_engine *e = l->e;
  post_node *n;

  uv_mutex_lock(&l->post_mu);
  n = l->post_head;
  l->post_head = l->post_tail = NULL;
  uv_mutex_unlock(&l->post_mu);
  while (n != NULL) {
    post_node *next = n->next;
    flow_post_fn fn = n->fn;
    void *payload = n->payload;

    flow__free(&e->alloc, n);
    fn(e, payload);
    n = next;
  }
}

/* ---- arming ------------------------------------------------------------- */

static void
idle_cb(uv_idle_t *h)
{
  (void)h; /* only there to keep the poll phase from blocking */
}

static void check_cb(uv_check_t *h);

/* Starts idle and check while anything waits for the end of a round,
   stops them otherwise. */
static void
arm_round(struct flow__loop *l)
{
  if (l->more_timers || flow__engine_async_pending(l->e) || posts_queued(l)) {
    uv_idle_start(&l->idle, idle_cb);
    uv_check_start(&l->check, check_cb);
  } else {
    uv_idle_stop(&l->idle);
    uv_check_stop(&l->check);
  }
}

static void timer_cb(uv_timer_t *h);

/* Arms the timer for the next due timer, as the file comment says. */
static void
arm_timer(struct flow__loop *l)
{
  flow_engine *e = l->e;
  int64_t due = flow__engine_next_due(e);
  int64_t now;

  if (l->in_timer || l->more_timers)
    return; /* timer_cb or check_cb arms it */
  if (due == INT64_MAX) {
    uv_timer_stop(&l->timer);
    return;
  }
  now = flow_engine_now(e);
  if (flow__engine_clock_fixed(e)) {
    if (due <= now)
      uv_timer_start(&l->timer, timer_cb, 0, 0);
    else
      uv_timer_stop(&l->timer);
    return;
  }
  uv_timer_start(&l->timer, timer_cb, due > now ? (uint64_t)(due - now) : 0,
                 0);
}

/* After a storage failure or a timer that is due but would not fire:
   with a real clock try again a little later; with a fixed clock wait for
   the next run or kick, since a retry now would fail the same way. */
static void
arm_retry(struct flow__loop *l)
{
  if (flow__engine_clock_fixed(l->e))
    uv_timer_stop(&l->timer);
  else
    uv_timer_start(&l->timer, timer_cb, RETRY_MS, 0);
}

static void
loop_kick(flow_engine *e)
{
  struct flow__loop *l = loaded_loop(e);

  if (l == NULL)
    return;
  arm_timer(l);
  arm_round(l);
}

/* ---- callbacks ---------------------------------------------------------- */

static void
timer_cb(uv_timer_t *h)
{
  struct flow__loop *l = h->data;
  flow_engine *e = l->e;
  size_t fired = 0, seen = 0;
  int rc;

  l->in_timer = 1;
  rc = flow__engine_work_batch(e, TIMER_BATCH, &fired, &seen);
  l->in_timer = 0;
  if (rc != 0) {
    loop_log(e, FLOW_LOG_ERROR, "timers: %s (%s)", flow_errmsg(e),
             flow_err_name(rc));
    arm_retry(l);
  } else if (seen == TIMER_BATCH) {
    /* Maybe more overdue: check_cb fires them next round, after the
       other handles have had their turn. */
    l->more_timers = 1;
  } else if (flow__engine_next_due(e) > flow_engine_now(e)) {
    arm_timer(l);
  } else if (seen > 0) {
    /* What fired set timers that are due already, or another engine is
       firing the rest: look again next round. */
    l->more_timers = 1;
  } else {
    loop_log(e, FLOW_LOG_WARN,
             "timers: a timer is due but none fired; trying again later");
    arm_retry(l);
  }
  arm_round(l);
}

/* Another connection committed: what it did may be due before what this
   engine had armed (or be the only timer there is). */
static void
wake_cb(uv_timer_t *h)
{
  struct flow__loop *l = h->data;

  if (flow__engine_wake_check(l->e))
    arm_timer(l);
}

static void
async_cb(uv_async_t *h)
{
  struct flow__loop *l = h->data;

  run_posts(l);
  arm_round(l);
}

static void
check_cb(uv_check_t *h)
{
  struct flow__loop *l = h->data;
  flow_engine *e = l->e;

  run_posts(l);
  if (flow__engine_async_pending(e)) {
    int rc = flow__engine_flush_async(e);
    if (rc != 0)
      loop_log(e, FLOW_LOG_ERROR, "asynchronous calls: %s (%s)",
               flow_errmsg(e), flow_err_name(rc));
  }
  if (l->more_timers) {
    l->more_timers = 0;
    uv_timer_start(&l->timer, timer_cb, 0, 0);
  }
  /* Callbacks may have queued more: those go in the next round. */
  arm_round(l);
}

/* ---- attaching and freeing ---------------------------------------------- */

static uv_once_t attach_once = UV_ONCE_INIT;
static uv_mutex_t attach_mu;
static int attach_mu_ok;

static void
attach_init(void)
{
  attach_mu_ok = uv_mutex_init(&attach_mu) == 0;
}

/* Creates the loop state on host (NULL: a loop of its own).  Called with
   attach_mu held and e->loop NULL. */
static int
attach(flow_engine *e, uv_loop_t *host)
{
  struct flow__loop *l = flow__calloc(&e->alloc, 1, sizeof *l);
  int rc;

  if (l == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory starting the "
                                             "event loop");
  l->e = e;
  if (uv_mutex_init(&l->post_mu) != 0) {
    flow__free(&e->alloc, l);
    return flow__engine_fail(e, FLOW_ERROR, "cannot create the post mutex");
  }
  if (host != NULL) {
    l->uv = host;
    l->host = 1;
  } else {
    rc = uv_loop_init(&l->own);
    if (rc != 0) {
      uv_mutex_destroy(&l->post_mu);
      flow__free(&e->alloc, l);
      return flow__engine_fail(e, FLOW_ERROR,
                               "cannot start the event loop: %s",
                               uv_strerror(rc));
    }
    l->uv = &l->own;
  }
  rc = uv_async_init(l->uv, &l->async, async_cb);
  if (rc != 0) {
    if (!l->host)
      uv_loop_close(&l->own);
    uv_mutex_destroy(&l->post_mu);
    flow__free(&e->alloc, l);
    return flow__engine_fail(e, FLOW_ERROR,
                             "cannot start the event loop: %s",
                             uv_strerror(rc));
  }
  uv_unref((uv_handle_t *)&l->async);
  uv_timer_init(l->uv, &l->timer);
  uv_idle_init(l->uv, &l->idle);
  uv_check_init(l->uv, &l->check);
  uv_timer_init(l->uv, &l->wake);
  uv_unref((uv_handle_t *)&l->wake);
  l->async.data = l->timer.data = l->idle.data = l->check.data = l;
  l->wake.data = l;
  uv_timer_start(&l->wake, wake_cb, FLOW__WAKE_POLL_MS, FLOW__WAKE_POLL_MS);
  if (!l->host) {
    /* One empty round registers the async descriptor with the backend:
       until a loop has run, uv_backend_fd() misses posts' wake-ups and
       uv_backend_timeout() says 0.  Nothing can be queued yet, so this
       runs no callback but idle_cb. */
    uv_idle_start(&l->idle, idle_cb);
    uv_run(&l->own, UV_RUN_NOWAIT);
    uv_idle_stop(&l->idle);
  }

  e->loop_kick = loop_kick;
  e->loop_free = loop_free;
  __atomic_store_n(&e->loop, l, __ATOMIC_RELEASE);
  return 0;
}

/* The engine's loop, attached (on a loop of its own) on first use; NULL
   after a failure recorded on the engine. */
static struct flow__loop *
ensure_loop(flow_engine *e)
{
  struct flow__loop *l = loaded_loop(e);

  if (l != NULL)
    return l;
  uv_once(&attach_once, attach_init);
  if (!attach_mu_ok) {
    flow__engine_fail(e, FLOW_ERROR, "cannot create the loop mutex");
    return NULL;
  }
  uv_mutex_lock(&attach_mu);
  if (e->loop == NULL)
    attach(e, NULL);
  l = e->loop;
  uv_mutex_unlock(&attach_mu);
  return l;
}

static void
close_cb(uv_handle_t *h)
{
  struct flow__loop *l = h->data;
  l->nclosed++;
}

static void
close_foreign(uv_handle_t *h, void *arg)
{
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* At flow_engine_close: closes the handles, lets them finish closing,
   drops the posts that have not run and frees everything. */
static void
loop_free(flow_engine *e)
{
  struct flow__loop *l = e->loop;
  post_node *n;

  if (l == NULL)
    return;
  e->loop_kick = NULL;
  e->loop_free = NULL;
  uv_close((uv_handle_t *)&l->timer, close_cb);
  uv_close((uv_handle_t *)&l->async, close_cb);
  uv_close((uv_handle_t *)&l->idle, close_cb);
  uv_close((uv_handle_t *)&l->check, close_cb);
  uv_close((uv_handle_t *)&l->wake, close_cb);
  if (l->host) {
    /* One NOWAIT round runs the close callbacks; the loop is the host's,
       so leave everything else on it alone. */
    while (l->nclosed < NHANDLES)
      uv_run(l->uv, UV_RUN_NOWAIT);
  } else {
    /* Handles a host put on the engine's own loop (flow_engine_uv_loop)
       are closed too: the loop cannot be closed under them. */
    uv_walk(&l->own, close_foreign, NULL);
    uv_run(&l->own, UV_RUN_NOWAIT);
    while (uv_loop_close(&l->own) == UV_EBUSY) {
      uv_walk(&l->own, close_foreign, NULL);
      uv_run(&l->own, UV_RUN_NOWAIT);
    }
  }
  n = l->post_head;
  while (n != NULL) {
    post_node *next = n->next;
    flow__free(&e->alloc, n);
    n = next;
  }
  uv_mutex_destroy(&l->post_mu);
  e->loop = NULL;
  flow__free(&e->alloc, l);
}

/* ---- the public calls --------------------------------------------------- */

int
flow_engine_use_uv_loop(flow_engine *engine, uv_loop_t *loop)
{
  int rc;

  if (engine == NULL)
    return FLOW_EMISUSE;
  if (loop == NULL)
    return flow__engine_fail(engine, FLOW_EMISUSE,
                             "flow_engine_use_uv_loop: loop is NULL");
  uv_once(&attach_once, attach_init);
  if (!attach_mu_ok)
    return flow__engine_fail(engine, FLOW_ERROR,
                             "cannot create the loop mutex");
  uv_mutex_lock(&attach_mu);
  if (engine->loop != NULL)
    rc = flow__engine_fail(engine, FLOW_EMISUSE,
                           "flow_engine_use_uv_loop: the engine already "
                           "has a loop; call it once, before any other "
                           "loop call or post");
  else
    rc = attach(engine, loop);
  uv_mutex_unlock(&attach_mu);
  if (rc != 0)
    return rc;
  /* Calls may have been queued before: let the host's loop see them. */
  loop_kick(engine);
  flow__err_clear(&engine->err);
  return 0;
}

uv_loop_t *
flow_engine_uv_loop(flow_engine *engine)
{
  struct flow__loop *l = engine ? ensure_loop(engine) : NULL;
  return l ? l->uv : NULL;
}

/* 1 while anything is left for the loop to do: a pending timer (due or
   not), queued calls or posts. */
static int
engine_pending(struct flow__loop *l)
{
  return flow__engine_next_due(l->e) != INT64_MAX ||
         flow__engine_async_pending(l->e) || posts_queued(l);
}

int
flow_engine_run(flow_engine *engine, flow_run_mode mode)
{
  struct flow__loop *l;
  uv_run_mode um;
  int alive;

  if (engine == NULL)
    return FLOW_EMISUSE;
  switch (mode) {
    case FLOW_RUN_DEFAULT:
      um = UV_RUN_DEFAULT;
      break;
    case FLOW_RUN_ONCE:
      um = UV_RUN_ONCE;
      break;
    case FLOW_RUN_NOWAIT:
      um = UV_RUN_NOWAIT;
      break;
    default:
      return flow__engine_fail(engine, FLOW_EMISUSE,
                               "flow_engine_run: unknown mode %d", (int)mode);
  }
  if (engine->in_callback)
    return flow__engine_fail(engine, FLOW_EMISUSE,
                             "flow_engine_run called from inside a callback "
                             "of the same engine");
  l = ensure_loop(engine);
  if (l == NULL)
    return engine->err.code;
  if (l->host)
    return flow__engine_fail(engine, FLOW_EMISUSE,
                             "flow_engine_run: the engine runs on the host's "
                             "loop (flow_engine_use_uv_loop); run that loop "
                             "instead");
  if (l->running)
    return flow__engine_fail(engine, FLOW_EMISUSE,
                             "flow_engine_run called while it is running "
                             "(from posted work?)");
  loop_kick(engine);
  if (mode == FLOW_RUN_NOWAIT) {
    /* One round even when nothing is active, so that a descriptor found
       readable by a foreign loop (a post's wake-up) is read and the loop
       does not stay readable. */
    uv_idle_start(&l->idle, idle_cb);
    uv_check_start(&l->check, check_cb);
  }
  l->running = 1;
  alive = uv_run(l->uv, um);
  l->running = 0;
  flow__err_clear(&engine->err);
  return alive != 0 || engine_pending(l) ? 1 : 0;
}

void
flow_engine_stop(flow_engine *engine)
{
  struct flow__loop *l = engine ? loaded_loop(engine) : NULL;

  if (l != NULL && l->running)
    uv_stop(l->uv);
}

int
flow_engine_backend_fd(flow_engine *engine)
{
  struct flow__loop *l = engine ? ensure_loop(engine) : NULL;

  if (l == NULL)
    return -1;
  /* A foreign loop: flow_engine_backend_timeout does the wake check, and
     its timeout stays the next timer's. */
  uv_timer_stop(&l->wake);
  loop_kick(engine);
  return uv_backend_fd(l->uv);
}

/* min of two timeouts where -1 means none */
static int
min_timeout(int a, int b)
{
  if (a < 0)
    return b;
  if (b < 0)
    return a;
  return a < b ? a : b;
}

int
flow_engine_backend_timeout(flow_engine *engine)
{
  struct flow__loop *l = engine ? ensure_loop(engine) : NULL;
  int64_t due, now;
  int t = -1;

  if (l == NULL)
    return -1;
  uv_timer_stop(&l->wake); /* this call does the wake check */
  loop_kick(engine);
  if (flow__engine_async_pending(engine) || posts_queued(l))
    return 0;
  flow__engine_wake_check(engine);
  due = flow__engine_next_due(engine);
  if (due != INT64_MAX) {
    now = flow_engine_now(engine);
    if (due <= now)
      t = 0;
    else if (!flow__engine_clock_fixed(engine))
      t = due - now > INT_MAX ? INT_MAX : (int)(due - now);
  }
  /* uv_backend_timeout() says 0 for a loop with nothing active; only ask
     it when something (the host's handles, a retry) keeps it alive. */
  if (uv_loop_alive(l->uv))
    t = min_timeout(t, uv_backend_timeout(l->uv));
  return t;
}

int
flow_engine_post(flow_engine *engine, flow_post_fn fn, void *payload)
{
  struct flow__loop *l;
  post_node *n;

  if (engine == NULL || fn == NULL)
    return FLOW_EMISUSE;
  l = ensure_loop(engine);
  if (l == NULL)
    return FLOW_ENOMEM;
  uv_mutex_lock(&l->post_mu);
  n = flow__malloc(&engine->alloc, sizeof *n);
  if (n != NULL) {
    n->next = NULL;
    n->fn = fn;
    n->payload = payload;
    if (l->post_tail != NULL)
      l->post_tail->next = n;
    else
      l->post_head = n;
    l->post_tail = n;
  }
  uv_mutex_unlock(&l->post_mu);
  if (n == NULL)
    return FLOW_ENOMEM;
  uv_async_send(&l->async);
  return 0;
}

int
flow_engine_fire_due(flow_engine *engine, size_t *fired)
{
  size_t total = 0, n, seen;
  int rc;

  if (fired != NULL)
    *fired = 0;
  if (engine == NULL)
    return FLOW_EMISUSE;
  for (;;) {
    n = seen = 0;
    rc = flow__engine_work_batch(engine, FIRE_DUE_BATCH, &n, &seen);
    total += n;
    if (rc != 0)
      break;
    /* A short batch means nothing else was due when it was read; but
       what it fired may have set timers that are due already.  Timers
       it read but did not fire (dead by then, or fired by another
       engine) are not read again, so this ends. */
    if (seen < FIRE_DUE_BATCH &&
        (seen == 0 ||
         flow__engine_next_due(engine) > flow_engine_now(engine)))
      break;
  }
  if (fired != NULL)
    *fired = total;
  loop_kick(engine);
  if (rc == 0)
    flow__err_clear(&engine->err);
  return rc;
}
