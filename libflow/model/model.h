/*
 * Internal core types: a compiled service definition (what a service script
 * returned, checked and turned into C structures), field validation and the
 * JSON Schema export.  The script subsystem fills a flow__service from Lua;
 * the engine (libflow/engine/) uses it to run transitions.
 */
#ifndef LIBFLOW_MODEL_MODEL_H
#define LIBFLOW_MODEL_MODEL_H

#include <jansson.h>

#include "util/util.h"

typedef enum flow__ftype {
  FLOW__F_STRING = 0,
  FLOW__F_INTEGER,
  FLOW__F_NUMBER,
  FLOW__F_BOOLEAN,
  FLOW__F_ENUM,
  FLOW__F_DATE,
  FLOW__F_DATETIME,
  FLOW__F_OBJECT,
  FLOW__F_LIST
} flow__ftype;

/* The type's name as a script writes it ("string"), or NULL. */
const char *flow__ftype_name(int type);
/* The type for a name, or -1. */
int flow__ftype_from_name(const char *name);

/* One entry of `fields`. */
typedef struct flow__field {
  char *name;
  int type;          /* flow__ftype */
  int required;
  int pii;
  int index;
  char *pattern;     /* a Lua pattern (strings only), or NULL */
  int has_min, has_max;
  double min, max;   /* length for string/list, value for integer/number */
  char **values;     /* enum values */
  size_t nvalues;
  char *title;       /* optional human label, or NULL */
  int line;          /* where the field is declared, 0 if unknown */
} flow__field;

/*
 * One entry of a state's `on` table.  A shorthand ("collect = 'closed'")
 * has only target; a table form has target, roles and maybe guard; a
 * function form has handler.  Function references are luaL_ref indices in
 * the registry of the service's sandbox, or FLOW__NOREF.
 */
#define FLOW__NOREF (-2)

typedef struct flow__trans {
  char *event;
  char *target;      /* NULL when a handler decides */
  char **roles;
  size_t nroles;
  int handler;       /* FLOW__NOREF or a registry reference */
  int guard;
  int internal;      /* only the engine may send it (internal = true) */
  int line;
} flow__trans;

/* A state-scoped timer from `after`: duration text -> target state or
   {event=, payload=}.  Parsed now, fired by the loop (issue 4). */
typedef struct flow__after {
  char *duration;    /* as written */
  flow__duration dur;
  char *target;      /* state to go to, or NULL when event is set */
  char *event;       /* event to fire, or NULL */
  json_t *payload;   /* owned, may be NULL */
  int line;
} flow__after;

/*
 * A service level: the case's clock.  `within` (and `warn`) are fixed
 * durations or functions of the case, run in the sandbox when the clock
 * starts (the case opens, or enters a state with a service level of its
 * own).  A zeroed flow__sla (set 0) is none.
 */
typedef struct flow__sla {
  int set;
  char *within;      /* duration text, or NULL when within_fn */
  flow__duration within_dur;
  int within_fn;     /* FLOW__NOREF or a registry reference */
  char *warn;        /* duration text, or NULL (none, or warn_fn) */
  flow__duration warn_dur;
  int warn_fn;
  int line;          /* of `sla` */
} flow__sla;

typedef struct flow__state {
  char *name;
  int final;
  int enter;         /* FLOW__NOREF or registry reference */
  int exit;
  flow__trans *on;
  size_t non;
  flow__after *after;
  size_t nafter;
  flow__sla sla;     /* a service level that starts on entering, or none */
  int line;
} flow__state;

/* One entry of `correlate`: the data field whose value is the key of a
   message of that name sent to the case.  opens: a message of that name
   that no open case waits for opens a case of this service (its newest
   version), which it is then delivered to. */
typedef struct flow__correlate {
  char *message;
  char *field;
  int line;
  int opens;
} flow__correlate;

/* One group of `one_of`: at least one of these fields must be set. */
typedef struct flow__one_of {
  char **fields;
  size_t nfields;
  int line;
} flow__one_of;

typedef struct flow__service {
  char *name;
  int64_t version;
  char *title;       /* NULL when absent */
  char *initial;     /* the first state, or NULL when initial_fn */
  int initial_fn;    /* `initial = function(case)`: FLOW__NOREF or a ref */
  int initial_line;
  /* The states an opening may enter: initial alone, or initial_states as
     written, or the state names the function's source returns (guessed
     = 1; empty when it cannot tell). */
  char **initial_states;
  size_t ninitial;
  int initial_guessed;
  flow__field *fields;
  size_t nfields;
  flow__state *states;
  size_t nstates;
  flow__sla sla;     /* starts when a case opens (unless its first state
                        has one of its own) */
  flow__correlate *correlate;
  size_t ncorrelate;
  /* Rules across fields: `one_of` groups, checked with the fields, and
     `validate = function(data)`, run in the sandbox (FLOW__NOREF: none;
     a form's is 0, also none). */
  flow__one_of *one_of;
  size_t none_of;
  int validate_fn;
  int validate_line;
  int is_form;       /* a task's form (flow__form_read), not a service */
  char *source;
  size_t source_len;
  char *chunkname;
  char sha256[65];
  /* fields and states sorted by name (flow__service_index), or NULL */
  const flow__field **fields_by_name;
  const flow__state **states_by_name;
} flow__service;

/* Builds the name indexes of svc's fields and states, once it is filled
   in.  FLOW_ENOMEM. */
int flow__service_index(const flow__allocator *a, flow__service *svc);

/* Frees every member, then svc itself.  Accepts NULL.  The sandbox its
   function references point into is its compiler's to free. */
void flow__service_free(const flow__allocator *a, flow__service *svc);

const flow__state *flow__service_state(const flow__service *svc,
                                       const char *name);
const flow__trans *flow__state_trans(const flow__state *st,
                                     const char *event);
const flow__field *flow__service_field(const flow__service *svc,
                                       const char *name);

/*
 * Validates data (a JSON object) against the service's fields.  Unknown
 * keys are refused too: a typo in a handler ("case.data.crw") must not
 * silently store junk.  match tests a Lua pattern (the sandbox provides it);
 * it returns 1 match, 0 no match, or a negative FLOW_E* when the pattern
 * itself is broken or over budget.  It is first called once with s and
 * pattern NULL: a validation begins, and every pattern of it shares one
 * budget (a thousand fields with slow patterns get one budget between
 * them, not one each).  On failure returns FLOW_EDATA with a
 * message listing every failing field ("uprn: required; bin: must be one
 * of refuse, recycling, garden").
 */
typedef int (*flow__match_fn)(void *ctx, const char *s, size_t len,
                              const char *pattern);
int flow__fields_validate(const flow__service *svc, json_t *data,
                          flow__match_fn match, void *ctx, flow__err *err);
/* The same, adding the messages of `rules` (a JSON object, field ->
   message, from the service's validate function; may be NULL) for the
   fields that pass their own checks, and checking the `one_of` groups. */
int flow__fields_validate_rules(const flow__service *svc, json_t *data,
                                flow__match_fn match, void *ctx,
                                json_t *rules, flow__err *err);
/* 1 when svc has a validate function to run on new data. */
#define FLOW__HAS_VALIDATE(svc)                                                \
  (!(svc)->is_form && (svc)->validate_fn != FLOW__NOREF)

/* The fields as a JSON Schema 2020-12 object (new reference), or NULL on
   allocation failure. */
json_t *flow__fields_schema(const flow__service *svc);

/*
 * Reads a task's form (a JSON object: field name -> { type, required,
 * values, min, max, pattern, title }) into a new service that holds only
 * those fields and is called name, for flow__fields_validate.  Free it
 * with flow__service_free.  FLOW_EINVAL names the field and the fix.
 */
int flow__form_read(const flow__allocator *a, json_t *form, const char *name,
                    flow__service **out, flow__err *err);

/* ---- JSON at the boundary (model_json.c) ------------------------------ */

/* Appends j as compact JSON with sorted keys.  FLOW_ENOMEM. */
int flow__json_dump(json_t *j, flow__buf *b);
/* Appends s as a JSON string; a time as an ISO 8601 string, or null for
   FLOW__NO_TIME. */
void flow__json_add_string(flow__buf *b, const char *s);
void flow__json_add_time(flow__buf *b, int64_t ms);
/* j as an owned string for the host (flow_free), or NULL when out of
   memory or j is NULL. */
char *flow__json_owned(const flow__allocator *a, json_t *j);
/* Parses text as a JSON object (NULL text: {}); duplicate keys and
   trailing text are refused.  FLOW_EINVAL names `what`, the line and the
   column. */
int flow__json_parse_object(const char *text, const char *what, json_t **out,
                            flow__err *err);

#endif /* LIBFLOW_MODEL_MODEL_H */
