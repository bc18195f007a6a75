/*
 * Notifications: what happens to cases, told to the host's subscribers
 * (flow_engine_subscribe, flow_engine_set_listener).
 *
 * What a transaction does is kept as notes while it runs (a case opened,
 * a transition, a case closed, an action requested) and told only once
 * it has committed: a rolled-back transaction, or a savepoint of one (a
 * refused call in a group commit, a refused reply), tells nothing.  What
 * happens outside a transaction, or after its commit (a timer fired, an
 * action answered, an incident), is told at once.  Every subscriber is
 * called in subscription order, on the thread that made the engine do it
 * (the loop's, or the caller's of a synchronous call), with JSON valid
 * during the call.  The listener (subscriber 0) hears only what the
 * engine did on its own: notes whose cause is "call" go to the others.  A subscriber cannot stop or fail the engine: it
 * returns nothing, and the engine does not wait for anything but its
 * return, so a slow one only slows the loop down.
 */
#include "engine/engine.h"

#include <string.h>

int
flow_engine_subscribe(flow_engine *engine, flow_listener_fn fn,
                      void *payload, int *id)
{
  if (id)
    *id = 0;
  if (engine == NULL || fn == NULL)
    return flow__engine_misuse(engine, "flow_engine_subscribe: fn is NULL");
  if (engine->nsubs == FLOW__MAX_SUBSCRIBERS)
    return flow__engine_fail(engine, FLOW_ELIMIT,
                             "an engine takes at most %d subscribers",
                             FLOW__MAX_SUBSCRIBERS);
  int n = ++engine->next_sub_id;
  engine->subs[engine->nsubs++] = (struct flow__subscriber){ fn, payload, n };
  if (id)
    *id = n;
  return 0;
}

static void
remove_sub(flow_engine *e, int id)
{
  for (size_t i = 0; i < e->nsubs; i++)
    if (e->subs[i].id == id) {
      memmove(&e->subs[i], &e->subs[i + 1],
              (e->nsubs - i - 1) * sizeof e->subs[0]);
      e->nsubs--;
      return;
    }
}

int
flow_engine_unsubscribe(flow_engine *engine, int id)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  size_t before = engine->nsubs;
  remove_sub(engine, id);
  if (engine->nsubs == before || id == 0)
    return flow__engine_fail(engine, FLOW_ENOTFOUND,
                             "there is no subscriber %d", id);
  return 0;
}

void
flow_engine_set_listener(flow_engine *engine, flow_listener_fn fn,
                         void *payload)
{
  if (engine == NULL)
    return;
  remove_sub(engine, 0);
  if (fn == NULL || engine->nsubs == FLOW__MAX_SUBSCRIBERS)
    return;
  /* The listener is subscriber 0, told first. */
  memmove(&engine->subs[1], &engine->subs[0],
          engine->nsubs * sizeof engine->subs[0]);
  engine->subs[0] = (struct flow__subscriber){ fn, payload, 0 };
  engine->nsubs++;
}

void
flow__engine_notify(flow_engine *e, json_t *j)
{
  if (j == NULL)
    return;
  /* The listener hears what the engine does on its own, not what a host's
     calls did (their return says it). */
  const char *cause = json_string_value(json_object_get(j, "cause"));
  int own = cause == NULL || strcmp(cause, "call") != 0;
  if (e->nsubs > 0) {
    char *text = flow__json_owned(&e->alloc, j);
    if (text) {
      /* A subscriber may subscribe or unsubscribe: call those there were
         when the note came, each if it is still there. */
      struct flow__subscriber now[FLOW__MAX_SUBSCRIBERS];
      size_t n = e->nsubs;
      memcpy(now, e->subs, n * sizeof now[0]);
      int was = e->in_callback;
      e->in_callback = 1;
      for (size_t i = 0; i < n; i++) {
        int there = 0;
        for (size_t k = 0; k < e->nsubs && !there; k++)
          there = e->subs[k].id == now[i].id && e->subs[k].fn == now[i].fn;
        if (there && (own || now[i].id != 0))
          now[i].fn(e, text, now[i].payload);
      }
      e->in_callback = was;
      flow_free(text);
    }
  }
  json_decref(j);
}

void
flow__engine_note(flow_engine *e, json_t *j)
{
  if (j == NULL)
    return;
  if (e->notes == NULL && (e->notes = json_array()) == NULL) {
    json_decref(j);
    return; /* out of memory: the note is lost, the transition is not */
  }
  json_array_append_new(e->notes, j);
}

size_t
flow__engine_notes_mark(const flow_engine *e)
{
  return e->notes ? json_array_size(e->notes) : 0;
}

void
flow__engine_notes_drop(flow_engine *e, size_t mark)
{
  while (e->notes && json_array_size(e->notes) > mark)
    json_array_remove(e->notes, json_array_size(e->notes) - 1);
  /* Deliveries are queued only by the call being undone. */
  e->ndeliveries = 0;
}

void
flow__engine_notes_flush(flow_engine *e)
{
  json_t *notes = e->notes;
  e->notes = NULL; /* a subscriber's own calls keep notes of their own */
  size_t i;
  json_t *n;
  json_array_foreach(notes, i, n)
    flow__engine_notify(e, json_incref(n));
  json_decref(notes);
}

int
flow__engine_end_txn(flow_engine *e, int rc)
{
  flow__err err;
  flow__err_clear(&err);
  if (rc == 0 && (rc = e->vt->commit(e->store, &err)) != 0)
    flow__engine_fail_err(e, &err);
  if (rc != 0) {
    e->vt->rollback(e->store);
    flow__engine_notes_drop(e, 0);
  } else {
    flow__engine_notes_flush(e);
  }
  return rc;
}
