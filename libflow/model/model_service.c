/*
 * A compiled service definition: freeing it and looking things up in it.
 * The script subsystem builds these (script_load.c); the engine keeps one
 * per loaded service version for as long as it is open.
 */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>


static const char *const ftype_names[] = {
  "string", "integer", "number", "boolean", "enum",
  "date",   "datetime", "object", "list",
};

const char *
flow__ftype_name(int type)
{
  if (type < 0 || (size_t)type >= sizeof ftype_names / sizeof *ftype_names)
    return NULL;
  return ftype_names[type];
}

int
flow__ftype_from_name(const char *name)
{
  for (size_t i = 0; i < sizeof ftype_names / sizeof *ftype_names; i++)
    if (strcmp(ftype_names[i], name) == 0)
      return (int)i;
  return -1;
}

static void
free_strv(const flow__allocator *a, char **v, size_t n)
{
  if (v == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    flow__free(a, v[i]);
  flow__free(a, v);
}

void
flow__service_free(const flow__allocator *a, flow__service *svc)
{
  if (svc == NULL)
    return;
  for (size_t i = 0; i < svc->nfields; i++) {
    flow__field *f = &svc->fields[i];
    flow__free(a, f->name);
    flow__free(a, f->pattern);
    flow__free(a, f->title);
    free_strv(a, f->values, f->nvalues);
  }
  flow__free(a, svc->fields);
  for (size_t i = 0; i < svc->nstates; i++) {
    flow__state *st = &svc->states[i];
    flow__free(a, st->name);
    flow__free(a, st->sla.within);
    flow__free(a, st->sla.warn);
    for (size_t j = 0; j < st->non; j++) {
      flow__free(a, st->on[j].event);
      flow__free(a, st->on[j].target);
      free_strv(a, st->on[j].roles, st->on[j].nroles);
    }
    flow__free(a, st->on);
    for (size_t j = 0; j < st->nafter; j++) {
      flow__free(a, st->after[j].duration);
      flow__free(a, st->after[j].target);
      flow__free(a, st->after[j].event);
      json_decref(st->after[j].payload);
    }
    flow__free(a, st->after);
  }
  flow__free(a, svc->states);
  for (size_t i = 0; i < svc->ncorrelate; i++) {
    flow__free(a, svc->correlate[i].message);
    flow__free(a, svc->correlate[i].field);
  }
  flow__free(a, svc->correlate);
  for (size_t i = 0; i < svc->none_of; i++)
    free_strv(a, svc->one_of[i].fields, svc->one_of[i].nfields);
  flow__free(a, svc->one_of);
  flow__free(a, (void *)svc->fields_by_name);
  flow__free(a, (void *)svc->states_by_name);
  flow__free(a, svc->name);
  flow__free(a, svc->title);
  flow__free(a, svc->initial);
  flow__free(a, svc->sla.within);
  flow__free(a, svc->sla.warn);
  free_strv(a, svc->initial_states, svc->ninitial);
  flow__free(a, svc->source);
  flow__free(a, svc->chunkname);
  /* Closing the Lua state releases every registry reference at once. */
  flow__free(a, svc);
}

static int
field_cmp(const void *a, const void *b)
{
  return strcmp((*(const flow__field *const *)a)->name,
                (*(const flow__field *const *)b)->name);
}

static int
state_cmp(const void *a, const void *b)
{
  return strcmp((*(const flow__state *const *)a)->name,
                (*(const flow__state *const *)b)->name);
}

int
flow__service_index(const flow__allocator *a, flow__service *svc)
{
  const flow__field **f = flow__calloc(a, svc->nfields + 1, sizeof *f);
  const flow__state **st = flow__calloc(a, svc->nstates + 1, sizeof *st);
  if (f == NULL || st == NULL) {
    flow__free(a, (void *)f);
    flow__free(a, (void *)st);
    return FLOW_ENOMEM;
  }
  for (size_t i = 0; i < svc->nfields; i++)
    f[i] = &svc->fields[i];
  for (size_t i = 0; i < svc->nstates; i++)
    st[i] = &svc->states[i];
  qsort(f, svc->nfields, sizeof *f, field_cmp);
  qsort(st, svc->nstates, sizeof *st, state_cmp);
  flow__free(a, (void *)svc->fields_by_name);
  flow__free(a, (void *)svc->states_by_name);
  svc->fields_by_name = f;
  svc->states_by_name = st;
  return 0;
}

/* Returns the entry of a by-name index whose name is name, or NULL. */
#define FIND_BY_NAME(index, n, name, type)                                     \
  do {                                                                         \
    size_t lo_ = 0, hi_ = (n);                                                 \
    while (lo_ < hi_) {                                                        \
      size_t mid_ = lo_ + (hi_ - lo_) / 2;                                     \
      int c_ = strcmp((index)[mid_]->name, (name));                            \
      if (c_ == 0)                                                             \
        return (index)[mid_];                                                  \
      if (c_ < 0)                                                              \
        lo_ = mid_ + 1;                                                        \
      else                                                                     \
        hi_ = mid_;                                                            \
    }                                                                          \
    return (type *)NULL;                                                       \
  } while (0)

const flow__state *
flow__service_state(const flow__service *svc, const char *name)
{
  if (svc->states_by_name != NULL)
    FIND_BY_NAME(svc->states_by_name, svc->nstates, name, const flow__state);
  for (size_t i = 0; i < svc->nstates; i++)
    if (strcmp(svc->states[i].name, name) == 0)
      return &svc->states[i];
  return NULL;
}

const flow__trans *
flow__state_trans(const flow__state *st, const char *event)
{
  for (size_t i = 0; i < st->non; i++)
    if (strcmp(st->on[i].event, event) == 0)
      return &st->on[i];
  return NULL;
}

const flow__field *
flow__service_field(const flow__service *svc, const char *name)
{
  if (svc->fields_by_name != NULL)
    FIND_BY_NAME(svc->fields_by_name, svc->nfields, name, const flow__field);
  for (size_t i = 0; i < svc->nfields; i++)
    if (strcmp(svc->fields[i].name, name) == 0)
      return &svc->fields[i];
  return NULL;
}
