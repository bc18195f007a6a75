/*
 * Field validation and the JSON Schema export.
 *
 * Case data is validated when a case opens and after every handler.  The
 * check reports every failing field in one message, because the person who
 * sent the form wants to fix everything in one go, not one field per try.
 * Patterns are Lua patterns, so matching is delegated to the sandbox.
 */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Appends "; field: problem" to the message being built in err. */
typedef struct vctx {
  flow__err *err;
  size_t len;
  int nproblems;
  int fatal;   /* FLOW_ENOMEM or FLOW_ELIMIT from a pattern check */
  const char *fatal_field;
} vctx;

static void
problem(vctx *v, const char *field, const char *fmt, ...) FLOW__PRINTF(3, 4);

static void
problem(vctx *v, const char *field, const char *fmt, ...)
{
  char *m = v->err->msg;
  size_t cap = sizeof v->err->msg;
  /* The message's start is written with its first problem: a valid case
     (nearly every one) costs no formatting. */
  if (v->nproblems == 0)
    v->len = (size_t)snprintf(m, cap, "case data is not valid: ");
  if (v->len + 1 >= cap)
    return;
  int n = snprintf(m + v->len, cap - v->len, "%s%s: ",
                   v->nproblems ? "; " : "", field);
  if (n > 0)
    v->len += (size_t)n < cap - v->len ? (size_t)n : cap - v->len - 1;
  va_list ap;
  va_start(ap, fmt);
  n = vsnprintf(m + v->len, cap - v->len, fmt, ap);
  va_end(ap);
  if (n > 0)
    v->len += (size_t)n < cap - v->len ? (size_t)n : cap - v->len - 1;
  v->nproblems++;
}

/* Number of UTF-8 code points (Jansson guarantees valid UTF-8). */
static size_t
utf8_chars(const char *s, size_t n)
{
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80)
      c++;
  return c;
}

static void
fmt_num(char *buf, size_t len, double x)
{
  if (x == floor(x) && fabs(x) < 1e15)
    snprintf(buf, len, "%.0f", x);
  else
    snprintf(buf, len, "%g", x);
}

static void
check_length(vctx *v, const flow__field *f, size_t n, const char *unit)
{
  char b[64];
  if (f->has_min && (double)n < f->min) {
    fmt_num(b, sizeof b, f->min);
    problem(v, f->name, "must have at least %s %s (has %zu)", b, unit, n);
  }
  if (f->has_max && (double)n > f->max) {
    fmt_num(b, sizeof b, f->max);
    problem(v, f->name, "must have at most %s %s (has %zu)", b, unit, n);
  }
}

static void
check_range(vctx *v, const flow__field *f, double x)
{
  char b[64];
  if (f->has_min && x < f->min) {
    fmt_num(b, sizeof b, f->min);
    problem(v, f->name, "must be at least %s", b);
  }
  if (f->has_max && x > f->max) {
    fmt_num(b, sizeof b, f->max);
    problem(v, f->name, "must be at most %s", b);
  }
}

static void
check_field(vctx *v, const flow__field *f, json_t *data, json_t *val,
            flow__match_fn match, void *ctx)
{
  switch (f->type) {
  case FLOW__F_STRING:
  case FLOW__F_ENUM:
  case FLOW__F_DATE:
  case FLOW__F_DATETIME:
    if (!json_is_string(val)) {
      problem(v, f->name, "must be %s, not %s",
              f->type == FLOW__F_DATE       ? "a date like \"2026-12-01\""
              : f->type == FLOW__F_DATETIME ? "a time like "
                                              "\"2026-12-01T09:30:00Z\""
                                            : "text",
              json_is_null(val)      ? "null"
              : json_is_number(val)  ? "a number"
              : json_is_boolean(val) ? "true or false"
              : json_is_array(val)   ? "a list"
                                     : "an object");
      return;
    }
    break;
  default:
    break;
  }
  const char *s = json_string_value(val);
  size_t slen = json_string_length(val);
  switch (f->type) {
  case FLOW__F_STRING:
    check_length(v, f, utf8_chars(s, slen), "characters");
    if (f->pattern && match) {
      int m = match(ctx, s, slen, f->pattern);
      if (m == 0)
        problem(v, f->name, "does not match the pattern %s", f->pattern);
      else if (m == FLOW_ENOMEM || m == FLOW_ELIMIT) {
        /* Not the data's fault: report the failure itself. */
        if (!v->fatal) {
          v->fatal = m;
          v->fatal_field = f->name;
        }
      } else if (m < 0)
        problem(v, f->name, "its pattern %s could not be checked (%s)",
                f->pattern, flow_strerror(m));
    }
    break;
  case FLOW__F_ENUM: {
    for (size_t i = 0; i < f->nvalues; i++)
      if (strcmp(f->values[i], s) == 0)
        return;
    char list[512];
    flow__join j;
    flow__join_init(&j, list, sizeof list);
    for (size_t i = 0; i < f->nvalues; i++)
      flow__join_add(&j, ", ", f->values[i]);
    problem(v, f->name, "must be one of %s (got \"%.40s\")", list, s);
    break;
  }
  case FLOW__F_DATE: {
    int y, mo, d;
    if (strlen(s) != slen || flow__date_parse(s, &y, &mo, &d) != 0)
      problem(v, f->name, "must be a date like \"2026-12-01\" (got \"%.40s\")",
              s);
    break;
  }
  case FLOW__F_DATETIME: {
    int64_t t;
    if (strlen(s) != slen || flow__time_parse(s, &t) != 0)
      problem(v, f->name,
              "must be a time with an offset, like \"2026-12-01T09:30:00Z\" "
              "(got \"%.40s\")",
              s);
    break;
  }
  case FLOW__F_INTEGER:
    if (json_is_real(val)) {
      double x = json_real_value(val);
      /* 3.0 from Lua arithmetic is a whole number: store it as 3. */
      if (x == floor(x) && fabs(x) < 9007199254740992.0) {
        json_object_set_new(data, f->name, json_integer((json_int_t)x));
        check_range(v, f, x);
        return;
      }
      problem(v, f->name, "must be a whole number (got %g)", x);
      return;
    }
    if (!json_is_integer(val)) {
      problem(v, f->name, "must be a whole number");
      return;
    }
    check_range(v, f, (double)json_integer_value(val));
    break;
  case FLOW__F_NUMBER:
    if (!json_is_number(val)) {
      problem(v, f->name, "must be a number");
      return;
    }
    check_range(v, f, json_number_value(val));
    break;
  case FLOW__F_BOOLEAN:
    if (!json_is_boolean(val))
      problem(v, f->name, "must be true or false");
    break;
  case FLOW__F_OBJECT:
    if (!json_is_object(val))
      problem(v, f->name, "must be an object (a table with named keys)");
    break;
  case FLOW__F_LIST:
    if (!json_is_array(val)) {
      problem(v, f->name, "must be a list");
      return;
    }
    check_length(v, f, json_array_size(val), "items");
    break;
  }
}

/* "uprn or street", "a, b or c": a one_of group as a message names it. */
static void
group_label(const flow__one_of *g, char *buf, size_t len)
{
  flow__join j;
  flow__join_init(&j, buf, len);
  for (size_t i = 0; i < g->nfields; i++)
    flow__join_add(&j, i == 0 ? "" : i + 1 == g->nfields ? " or " : ", ",
                   g->fields[i]);
}

int
flow__fields_validate(const flow__service *svc, json_t *data,
                      flow__match_fn match, void *ctx, flow__err *err)
{
  return flow__fields_validate_rules(svc, data, match, ctx, NULL, err);
}

int
flow__fields_validate_rules(const flow__service *svc, json_t *data,
                            flow__match_fn match, void *ctx, json_t *rules,
                            flow__err *err)
{
  vctx v = { err, 0, 0, 0, NULL };
  if (!json_is_object(data))
    return flow__err_set(err, FLOW_EDATA, "case data must be a JSON object");
  if (match != NULL)
    match(ctx, NULL, 0, NULL); /* one budget for all the patterns */
  for (size_t i = 0; i < svc->nfields; i++) {
    const flow__field *f = &svc->fields[i];
    json_t *val = json_object_get(data, f->name);
    int before = v.nproblems;
    if (val == NULL || json_is_null(val)) {
      if (val)
        json_object_del(data, f->name); /* null means "not set" */
      if (f->required)
        problem(&v, f->name, "is required");
    } else {
      check_field(&v, f, data, val, match, ctx);
    }
    /* The service's own rule about a field that passed its checks. */
    const char *rule = json_string_value(json_object_get(rules, f->name));
    if (rule && v.nproblems == before)
      problem(&v, f->name, "%s", rule);
  }
  for (size_t i = 0; i < svc->none_of; i++) {
    const flow__one_of *g = &svc->one_of[i];
    size_t k = 0;
    while (k < g->nfields && json_object_get(data, g->fields[k]) == NULL)
      k++;
    if (k == g->nfields) {
      char label[256];
      group_label(g, label, sizeof label);
      problem(&v, label, "give at least one of them");
    }
  }
  const char *key;
  json_t *val;
  json_object_foreach(data, key, val) {
    if (flow__service_field(svc, key) == NULL)
      problem(&v, key,
              svc->is_form ? "is not a field of %s (its fields are in the "
                             "task's form)"
                           : "is not a field of %s (declare it in `fields`, "
                             "or check the spelling)",
              svc->name);
  }
  if (v.fatal == FLOW_ENOMEM)
    return flow__err_set(err, FLOW_ENOMEM,
                         "out of memory checking the pattern of field %s",
                         v.fatal_field);
  if (v.fatal)
    return flow__err_set(err, FLOW_ELIMIT,
                         "budget exceeded checking the pattern of field %s "
                         "(simplify the pattern in `fields`)",
                         v.fatal_field);
  if (v.nproblems == 0) {
    err->msg[0] = 0;
    return 0;
  }
  err->code = FLOW_EDATA;
  return FLOW_EDATA;
}

/*
 * Lua patterns are not ECMA-262 regular expressions.  The common subset
 * (character classes, anchors, repetition) translates directly; anything
 * else (%b, %f, captures back-references) is left out of the schema, which
 * then only carries it as "x-lua-pattern".
 */
static json_t *
lua_pattern_to_regex(const char *p)
{
  char out[1024];
  size_t n = 0;
#define PUT(s)                                                                 \
  do {                                                                         \
    size_t l_ = strlen(s);                                                     \
    if (n + l_ >= sizeof out)                                                  \
      return NULL;                                                             \
    memcpy(out + n, s, l_);                                                    \
    n += l_;                                                                   \
  } while (0)
  for (size_t i = 0; p[i]; i++) {
    char c = p[i];
    if (c == '%') {
      char k = p[++i];
      switch (k) {
      case 'd': PUT("[0-9]"); break;
      case 'D': PUT("[^0-9]"); break;
      case 'a': PUT("[A-Za-z]"); break;
      case 'A': PUT("[^A-Za-z]"); break;
      case 'l': PUT("[a-z]"); break;
      case 'u': PUT("[A-Z]"); break;
      case 'w': PUT("[A-Za-z0-9]"); break;
      case 'W': PUT("[^A-Za-z0-9]"); break;
      case 'x': PUT("[0-9A-Fa-f]"); break;
      case 's': PUT("\\s"); break;
      case 'S': PUT("\\S"); break;
      case 'p': PUT("[!-/:-@\\[-`{-~]"); break;
      case 0: return NULL;
      default:
        if ((k >= 'a' && k <= 'z') || (k >= 'A' && k <= 'Z') ||
            (k >= '0' && k <= '9'))
          return NULL; /* %b, %f, %1 and friends */
        {
          char e[3] = { '\\', k, 0 };
          PUT(e);
        }
      }
    } else if (c == '-') {
      /* Lua's lazy repetition, unless it is a literal inside a set. */
      PUT("*?");
    } else if (c == '[') {
      /* Copy a set, translating %-classes inside it. */
      PUT("[");
      i++;
      if (p[i] == '^') {
        PUT("^");
        i++;
      }
      for (; p[i] && p[i] != ']'; i++) {
        if (p[i] == '%' && p[i + 1]) {
          char k = p[++i];
          switch (k) {
          case 'd': PUT("0-9"); break;
          case 'a': PUT("A-Za-z"); break;
          case 'l': PUT("a-z"); break;
          case 'u': PUT("A-Z"); break;
          case 'w': PUT("A-Za-z0-9"); break;
          case 'x': PUT("0-9A-Fa-f"); break;
          case 's': PUT("\\s"); break;
          default: {
            char e[3] = { '\\', k, 0 };
            PUT(e);
          }
          }
        } else {
          char e[3] = { p[i], 0, 0 };
          if (p[i] == '\\') {
            e[0] = '\\';
            e[1] = '\\';
          }
          PUT(e);
        }
      }
      if (p[i] != ']')
        return NULL;
      PUT("]");
    } else if (c == '\\' || c == '{' || c == '}' || c == '|' || c == '/') {
      char e[3] = { '\\', c, 0 };
      PUT(e);
    } else {
      char e[2] = { c, 0 };
      PUT(e);
    }
  }
#undef PUT
  return json_stringn(out, n);
}

static json_t *
field_schema(const flow__field *f)
{
  json_t *s = json_object();
  if (s == NULL)
    return NULL;
  switch (f->type) {
  case FLOW__F_STRING:
    json_object_set_new(s, "type", json_string("string"));
    if (f->has_min)
      json_object_set_new(s, "minLength", json_integer((json_int_t)f->min));
    if (f->has_max)
      json_object_set_new(s, "maxLength", json_integer((json_int_t)f->max));
    if (f->pattern) {
      json_t *re = lua_pattern_to_regex(f->pattern);
      if (re)
        json_object_set_new(s, "pattern", re);
      json_object_set_new(s, "x-lua-pattern", json_string(f->pattern));
    }
    break;
  case FLOW__F_INTEGER:
  case FLOW__F_NUMBER:
    json_object_set_new(
        s, "type", json_string(f->type == FLOW__F_INTEGER ? "integer"
                                                          : "number"));
    if (f->has_min)
      json_object_set_new(s, "minimum", f->min == floor(f->min)
                                            ? json_integer((json_int_t)f->min)
                                            : json_real(f->min));
    if (f->has_max)
      json_object_set_new(s, "maximum", f->max == floor(f->max)
                                            ? json_integer((json_int_t)f->max)
                                            : json_real(f->max));
    break;
  case FLOW__F_BOOLEAN:
    json_object_set_new(s, "type", json_string("boolean"));
    break;
  case FLOW__F_ENUM: {
    json_t *vals = json_array();
    for (size_t i = 0; i < f->nvalues; i++)
      json_array_append_new(vals, json_string(f->values[i]));
    json_object_set_new(s, "type", json_string("string"));
    json_object_set_new(s, "enum", vals);
    break;
  }
  case FLOW__F_DATE:
    json_object_set_new(s, "type", json_string("string"));
    json_object_set_new(s, "format", json_string("date"));
    break;
  case FLOW__F_DATETIME:
    json_object_set_new(s, "type", json_string("string"));
    json_object_set_new(s, "format", json_string("date-time"));
    break;
  case FLOW__F_OBJECT:
    json_object_set_new(s, "type", json_string("object"));
    break;
  case FLOW__F_LIST:
    json_object_set_new(s, "type", json_string("array"));
    if (f->has_min)
      json_object_set_new(s, "minItems", json_integer((json_int_t)f->min));
    if (f->has_max)
      json_object_set_new(s, "maxItems", json_integer((json_int_t)f->max));
    break;
  }
  if (f->title)
    json_object_set_new(s, "title", json_string(f->title));
  if (f->pii)
    json_object_set_new(s, "x-pii", json_true());
  if (f->index)
    json_object_set_new(s, "x-index", json_true());
  return s;
}

json_t *
flow__fields_schema(const flow__service *svc)
{
  json_t *root = json_object();
  json_t *props = json_object();
  json_t *req = json_array();
  if (root == NULL || props == NULL || req == NULL)
    goto fail;
  json_object_set_new(root, "$schema",
                      json_string("https://json-schema.org/draft/2020-12/"
                                  "schema"));
  char id[256];
  snprintf(id, sizeof id, "urn:libflow:service:%s:%lld", svc->name,
           (long long)svc->version);
  json_object_set_new(root, "$id", json_string(id));
  json_object_set_new(root, "title",
                      json_string(svc->title ? svc->title : svc->name));
  json_object_set_new(root, "type", json_string("object"));
  for (size_t i = 0; i < svc->nfields; i++) {
    json_t *fs = field_schema(&svc->fields[i]);
    if (fs == NULL || json_object_set_new(props, svc->fields[i].name, fs))
      goto fail;
    if (svc->fields[i].required)
      json_array_append_new(req, json_string(svc->fields[i].name));
  }
  json_object_set_new(root, "properties", props);
  json_object_set_new(root, "required", req);
  json_object_set_new(root, "additionalProperties", json_false());
  /* one_of groups: anyOf of one-field `required`s; several under allOf. */
  json_t *all = svc->none_of > 1 ? json_array() : NULL;
  for (size_t i = 0; i < svc->none_of; i++) {
    const flow__one_of *g = &svc->one_of[i];
    json_t *any = json_array();
    for (size_t k = 0; any && k < g->nfields; k++)
      json_array_append_new(any, json_pack("{s:[s]}", "required",
                                           g->fields[k]));
    if (any == NULL || json_array_size(any) != g->nfields) {
      json_decref(any);
      json_decref(all);
      json_decref(root);
      return NULL;
    }
    if (all)
      json_array_append_new(all, json_pack("{s:o}", "anyOf", any));
    else
      json_object_set_new(root, "anyOf", any);
  }
  if (all)
    json_object_set_new(root, "allOf", all);
  if (FLOW__HAS_VALIDATE(svc)) {
    char c[300];
    snprintf(c, sizeof c, "%s:%d also checks the data in its validate "
             "function: a case may still be refused with FLOW_EDATA",
             svc->chunkname ? svc->chunkname : svc->name, svc->validate_line);
    json_object_set_new(root, "$comment", json_string(c));
  }
  return root;
fail:
  json_decref(root);
  json_decref(props);
  json_decref(req);
  return NULL;
}
