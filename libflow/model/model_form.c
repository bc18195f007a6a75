/*
 * Task forms: the fields a task's outcome must have, given by a handler
 * in flow.task{ form = { ... } } and kept with the task as JSON.  A form
 * is read into a flow__service that holds only fields, so that an outcome
 * is checked by the same code as case data.
 */
#include "model/model.h"

#include <string.h>

static int
bad(flow__err *err, const char *field, const char *fmt, const char *arg)
{
  char what[160];
  snprintf(what, sizeof what, fmt, arg);
  return flow__err_set(err, FLOW_EINVAL, "form field '%.60s': %s", field,
                       what);
}

static int
read_one(const flow__allocator *a, const char *name, json_t *spec,
         flow__field *f, flow__err *err)
{
  if (!json_is_object(spec))
    return bad(err, name, "%s",
               "must be a table like { type = \"string\" }");
  static const char *const known[] = { "type",  "required", "values",
                                       "min",   "max",      "pattern",
                                       "title", NULL };
  const char *key;
  json_t *v;
  json_object_foreach(spec, key, v) {
    int ok = 0;
    for (int i = 0; known[i] && !ok; i++)
      ok = strcmp(key, known[i]) == 0;
    if (!ok)
      return bad(err, name,
                 "unknown key '%.40s' (a form field has type, required, "
                 "values, min, max, pattern and title)",
                 key);
  }
  json_t *tv = json_object_get(spec, "type");
  const char *type = json_string_value(tv);
  f->type = type ? flow__ftype_from_name(type) : -1;
  if (f->type < 0)
    return bad(err, name, tv ? "type '%.40s' is not a type (a form field is "
                               "a string, integer, number, boolean, enum, "
                               "date, datetime, list or object)"
                             : "%sneeds a type: string, integer, number, "
                               "boolean, enum, date, datetime, list or "
                               "object",
               type ? type : "");
  f->name = flow__strdup(a, name);
  if (f->name == NULL)
    return flow__err_set(err, FLOW_ENOMEM, "out of memory reading a form");
  json_t *req = json_object_get(spec, "required");
  if (req && !json_is_boolean(req))
    return bad(err, name, "%s", "required must be true or false");
  f->required = json_is_true(req);
  const char *lim[2] = { "min", "max" };
  for (int i = 0; i < 2; i++) {
    json_t *n = json_object_get(spec, lim[i]);
    if (n == NULL)
      continue;
    if (!json_is_number(n))
      return bad(err, name, "%s must be a number", lim[i]);
    if (i == 0)
      f->has_min = 1, f->min = json_number_value(n);
    else
      f->has_max = 1, f->max = json_number_value(n);
  }
  json_t *pat = json_object_get(spec, "pattern");
  if (pat) {
    if (!json_is_string(pat) || f->type != FLOW__F_STRING)
      return bad(err, name, "%s",
                 "pattern must be a Lua pattern, on a string field");
    if ((f->pattern = flow__strdup(a, json_string_value(pat))) == NULL)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory reading a form");
  }
  json_t *title = json_object_get(spec, "title");
  if (title) {
    if (!json_is_string(title))
      return bad(err, name, "%s", "title must be text");
    if ((f->title = flow__strdup(a, json_string_value(title))) == NULL)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory reading a form");
  }
  json_t *vals = json_object_get(spec, "values");
  if ((f->type == FLOW__F_ENUM) != (vals != NULL))
    return bad(err, name, "%s",
               f->type == FLOW__F_ENUM
                   ? "an enum needs values = { \"a\", \"b\" }"
                   : "values belong to enum fields only");
  if (vals) {
    size_t n = json_array_size(vals);
    if (!json_is_array(vals) || n == 0 || n > FLOW__MAX_ENUM_VALUES)
      return bad(err, name, "%s", "values must be a list of text");
    f->values = flow__calloc(a, n, sizeof *f->values);
    if (f->values == NULL)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory reading a form");
    for (size_t i = 0; i < n; i++) {
      const char *s = json_string_value(json_array_get(vals, i));
      if (s == NULL)
        return bad(err, name, "%s", "values must be a list of text");
      if ((f->values[i] = flow__strdup(a, s)) == NULL)
        return flow__err_set(err, FLOW_ENOMEM,
                             "out of memory reading a form");
      f->nvalues = i + 1;
    }
  }
  return 0;
}

int
flow__form_read(const flow__allocator *a, json_t *form, const char *name,
                flow__service **out, flow__err *err)
{
  *out = NULL;
  if (form != NULL && !json_is_object(form))
    return flow__err_set(err, FLOW_EINVAL,
                         "a form must be a table of fields like { outcome = "
                         "{ type = \"string\" } }");
  size_t n = form ? json_object_size(form) : 0;
  if (n > FLOW__MAX_FIELDS)
    return flow__err_set(err, FLOW_EINVAL, "a form may have at most %d fields",
                         FLOW__MAX_FIELDS);
  flow__service *svc = flow__calloc(a, 1, sizeof *svc);
  if (svc == NULL || (n && (svc->fields = flow__calloc(a, n, sizeof
                                                       *svc->fields)) == NULL) ||
      (svc->name = flow__strdup(a, name)) == NULL) {
    flow__service_free(a, svc);
    return flow__err_set(err, FLOW_ENOMEM, "out of memory reading a form");
  }
  svc->is_form = 1;
  const char *key;
  json_t *spec;
  int rc = 0;
  json_object_foreach(form, key, spec) {
    if (!flow__name_ok(key, strlen(key), 0)) {
      rc = bad(err, key, "%s",
               "is not a field name (lower-case letters, digits and _)");
      break;
    }
    svc->nfields++;
    if ((rc = read_one(a, key, spec, &svc->fields[svc->nfields - 1], err)) !=
        0)
      break;
  }
  if (rc == 0 && (rc = flow__service_index(a, svc)) != 0)
    flow__err_set(err, rc, "out of memory reading a form");
  if (rc != 0) {
    flow__service_free(a, svc);
    return rc;
  }
  *out = svc;
  return 0;
}
