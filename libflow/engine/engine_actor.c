/*
 * Actors: who sends an event.  A host's flow_actor is checked once, when
 * a call comes in (text the history and JSON can hold), written into the
 * history as {"id":...,"roles":[...]}, and asked for the roles an event
 * requires.
 */
#include "engine/engine.h"

#include <string.h>

/* Whether s can be an actor's id or role: UTF-8 (what JSON and the
   history can hold) of at most FLOW__MAX_ACTOR_TEXT bytes. */
static int
actor_text_ok(const char *s)
{
  size_t n = strlen(s);
  return n <= FLOW__MAX_ACTOR_TEXT && flow__utf8_valid(s, n);
}

int
flow__case_check_actor(flow_engine *e, const flow_actor *actor)
{
  if (actor == NULL)
    return 0;
  if (actor->nroles && actor->roles == NULL)
    return flow__engine_fail(e, FLOW_EMISUSE, "actor has nroles but no roles");
  if (actor->id && !actor_text_ok(actor->id))
    return flow__engine_fail(e, FLOW_EINVAL,
                             "the actor id must be UTF-8 text of at most "
                             "%d bytes",
                             FLOW__MAX_ACTOR_TEXT);
  for (size_t i = 0; i < actor->nroles; i++) {
    if (actor->roles[i] == NULL)
      return flow__engine_fail(e, FLOW_EMISUSE, "actor role %zu is NULL", i);
    if (!actor_text_ok(actor->roles[i]))
      return flow__engine_fail(e, FLOW_EINVAL,
                               "actor role %zu must be UTF-8 text of at most "
                               "%d bytes",
                               i, FLOW__MAX_ACTOR_TEXT);
  }
  return 0;
}

/* The actor as the history keeps it: {"id":...,"roles":[...]}. */
void
flow__actor_text(flow__buf *b, const flow_actor *actor)
{
  flow__buf_adds(b, "{\"id\":");
  flow__json_add_string(b, actor && actor->id ? actor->id : "anonymous");
  flow__buf_adds(b, ",\"roles\":[");
  for (size_t i = 0; actor && i < actor->nroles; i++) {
    if (i)
      flow__buf_addc(b, ',');
    flow__json_add_string(b, actor->roles[i]);
  }
  flow__buf_adds(b, "]}");
}

int
flow__actor_has_role(const flow_actor *actor, const char *role)
{
  for (size_t i = 0; actor && i < actor->nroles; i++)
    if (strcmp(actor->roles[i], role) == 0)
      return 1;
  return 0;
}

static const char *const system_roles[] = { "system" };
const flow_actor flow__system_actor = { "engine", system_roles, 1 };
