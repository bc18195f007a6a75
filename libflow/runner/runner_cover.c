/*
 * Coverage of the tests of `flow test` (opts.coverage): every state and
 * transition of each service a test loaded, with how often the test went
 * through it.  Coverage is read from the committed history of every case a
 * test opened: the opening enters the initial state, each later row is one
 * transition (from, event) that entered `to`.  Timer transitions of a
 * state's `after` carry their duration in the payload, which names the
 * transition "STATE.after DURATION".
 */
#include <stdio.h>
#include <string.h>

#include "runner/runner_int.h"

static json_t *
cov_get(json_t *obj, const char *key)
{
  json_t *o = json_object_get(obj, key);
  if (o == NULL) {
    o = json_object();
    json_object_set_new(obj, key, o);
  }
  return o;
}

static void
cov_bump(json_t *map, const char *key, int must_exist)
{
  json_t *v = json_object_get(map, key);
  if (v == NULL && must_exist)
    return;
  json_object_set_new(map, key,
                      json_integer(v ? json_integer_value(v) + 1 : 1));
}

static void
cov_zero(json_t *map, const char *key)
{
  if (json_object_get(map, key) == NULL)
    json_object_set_new(map, key, json_integer(0));
}

/* Every state and transition of a loaded service, at 0 when new. */
static void
cov_universe(runner *r, const char *name)
{
  flow__compiled *c;
  if (flow__engine_service(r->e, name, 0, &c) != 0)
    return;
  const flow__service *svc = c->svc;
  json_t *s = cov_get(r->coverage, name);
  json_t *states = cov_get(s, "states"), *trans = cov_get(s, "transitions");
  char key[300];
  for (size_t i = 0; i < svc->nstates; i++) {
    const flow__state *st = &svc->states[i];
    cov_zero(states, st->name);
    for (size_t j = 0; j < st->non; j++) {
      snprintf(key, sizeof key, "%s.%s", st->name, st->on[j].event);
      cov_zero(trans, key);
    }
    for (size_t j = 0; j < st->nafter; j++) {
      if (st->after[j].target == NULL)
        continue; /* fires an `on` event, counted there */
      snprintf(key, sizeof key, "%s.after %s", st->name,
               st->after[j].duration);
      cov_zero(trans, key);
    }
  }
}

static void
cov_case(runner *r, const char *id)
{
  char *out = NULL;
  if (flow_case_history(&out, r->e, id) != 0)
    return;
  json_t *h = json_loads(out, 0, NULL);
  flow_free(out);
  char *cout = NULL;
  json_t *c = NULL;
  if (flow_case_get(&cout, r->e, id) == 0)
    c = json_loads(cout, 0, NULL);
  flow_free(cout);
  const char *svc = json_string_value(json_object_get(c, "service"));
  if (svc) {
    json_t *s = cov_get(r->coverage, svc);
    json_t *states = cov_get(s, "states"), *trans = cov_get(s, "transitions");
    for (size_t i = 0; i < json_array_size(h); i++) {
      json_t *row = json_array_get(h, i);
      const char *from = json_string_value(json_object_get(row, "from"));
      const char *to = json_string_value(json_object_get(row, "to"));
      const char *ev = json_string_value(json_object_get(row, "event"));
      if (to == NULL || ev == NULL)
        continue;
      if (from == NULL) {
        cov_bump(states, to, 0);
        continue;
      }
      char key[300];
      const char *after = json_string_value(
          json_object_get(json_object_get(row, "payload"), "after"));
      if (strcmp(ev, "after") == 0 && after)
        snprintf(key, sizeof key, "%s.after %s", from, after);
      else
        snprintf(key, sizeof key, "%s.%s", from, ev);
      cov_bump(trans, key, 1);
      if (strcmp(from, to) != 0)
        cov_bump(states, to, 0);
    }
  }
  json_decref(c);
  json_decref(h);
}

void
flow__runner_collect_coverage(runner *r)
{
  for (size_t i = 0; i < json_array_size(r->loaded); i++)
    cov_universe(r, json_string_value(json_array_get(r->loaded, i)));
  /* Every case of the test's engine, the ones its scripts and messages
     opened too: ids start at 1 in each test and have no gaps there (a
     refused opening gives its id back), so the first id that is not a
     case ends them. */
  for (long long id = 1;; id++) {
    char text[24], *out = NULL;
    snprintf(text, sizeof text, "%lld", id);
    if (flow_case_get(&out, r->e, text) != 0)
      break;
    flow_free(out);
    cov_case(r, text);
  }
}
