/*
 * JSON at the API boundary: parsing what hosts hand in (with the position
 * of the first mistake) and turning results into owned strings that the
 * host frees with flow_free().  Output always has sorted keys and compact
 * separators, so the same case prints the same bytes every time.
 */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Our own encoder rather than json_dumps(): Jansson prints 0.1 as
 * 0.10000000000000001 because it always uses 17 digits.  We print the
 * shortest form that reads back as the same double, and always with a '.'
 * or an exponent so a float stays a float on the way back in.  Keys are
 * sorted so equal objects give equal bytes.
 */
static void
dump_string(flow__buf *b, const char *s, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  flow__buf_addc(b, '"');
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    flow__buf_add(b, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '"': flow__buf_add(b, "\\\"", 2); break;
    case '\\': flow__buf_add(b, "\\\\", 2); break;
    case '\n': flow__buf_add(b, "\\n", 2); break;
    case '\r': flow__buf_add(b, "\\r", 2); break;
    case '\t': flow__buf_add(b, "\\t", 2); break;
    case '\b': flow__buf_add(b, "\\b", 2); break;
    case '\f': flow__buf_add(b, "\\f", 2); break;
    default: {
      char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
      flow__buf_add(b, u, 6);
    }
    }
  }
  flow__buf_add(b, s + run, n - run);
  flow__buf_addc(b, '"');
}

static void
dump_real(flow__buf *b, double x)
{
  char tmp[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, x);
    if (strtod(tmp, NULL) == x)
      break;
  }
  /* A host may have set a locale whose decimal point is a comma. */
  for (char *p = tmp; *p; p++)
    if (*p == ',')
      *p = '.';
  flow__buf_adds(b, tmp);
  if (strpbrk(tmp, ".eEn") == NULL)
    flow__buf_add(b, ".0", 2);
}

/* A member of an object being printed: its key and value together, so
   the value needs no lookup once the keys are in order. */
typedef struct member {
  const char *key;
  json_t *val;
} member;

static int
cmp_members(const void *a, const void *b)
{
  return strcmp(((const member *)a)->key, ((const member *)b)->key);
}

static int
dump_value(json_t *j, flow__buf *b, int depth)
{
  if (depth > 10000)
    return FLOW_EINVAL;
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    size_t n = json_object_size(j), i = 0;
    member small[32];
    member *m = small;
    if (n > 32) {
      m = flow__malloc(b->a, n * sizeof *m);
      if (m == NULL)
        return FLOW_ENOMEM;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
      m[i].key = k;
      m[i].val = v;
      i++;
    }
    flow__sort(m, n, sizeof *m, cmp_members);
    flow__buf_addc(b, '{');
    int rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
      if (i)
        flow__buf_addc(b, ',');
      dump_string(b, m[i].key, strlen(m[i].key));
      flow__buf_addc(b, ':');
      rc = dump_value(m[i].val, b, depth + 1);
    }
    flow__buf_addc(b, '}');
    if (m != small)
      flow__free(b->a, m);
    return rc;
  }
  case JSON_ARRAY: {
    flow__buf_addc(b, '[');
    for (size_t i = 0; i < json_array_size(j); i++) {
      if (i)
        flow__buf_addc(b, ',');
      int rc = dump_value(json_array_get(j, i), b, depth + 1);
      if (rc)
        return rc;
    }
    flow__buf_addc(b, ']');
    return 0;
  }
  case JSON_STRING:
    dump_string(b, json_string_value(j), json_string_length(j));
    return 0;
  case JSON_INTEGER:
    flow__buf_addi64(b, (int64_t)json_integer_value(j));
    return 0;
  case JSON_REAL:
    dump_real(b, json_real_value(j));
    return 0;
  case JSON_TRUE:
    flow__buf_add(b, "true", 4);
    return 0;
  case JSON_FALSE:
    flow__buf_add(b, "false", 5);
    return 0;
  case JSON_NULL:
    flow__buf_add(b, "null", 4);
    return 0;
  }
  return FLOW_EINVAL;
}

void
flow__json_add_string(flow__buf *b, const char *s)
{
  dump_string(b, s, strlen(s));
}

void
flow__json_add_time(flow__buf *b, int64_t ms)
{
  if (ms == FLOW__NO_TIME) {
    flow__buf_add(b, "null", 4);
    return;
  }
  char t[32];
  int n = flow__time_format(t, sizeof t, ms);
  flow__buf_addc(b, '"');
  flow__buf_add(b, t, n > 0 ? (size_t)n : 0);
  flow__buf_addc(b, '"');
}

int
flow__json_dump(json_t *j, flow__buf *b)
{
  int rc = dump_value(j, b, 0);
  if (rc == 0 && b->p == NULL)
    flow__buf_add(b, "", 0);
  if (b->oom)
    return FLOW_ENOMEM;
  return rc;
}

char *
flow__json_owned(const flow__allocator *a, json_t *j)
{
  flow__buf b;
  flow__buf_init(&b, a);
  char *out = NULL;
  if (j && flow__json_dump(j, &b) == 0)
    out = flow__owned_strndup(a, b.p, b.len);
  flow__buf_free(&b);
  return out;
}

/* 1 if no object in j has more than FLOW__MAX_MEMBERS members (a script
   could not hold it: FLOW__TABLE_MAX_HASH). */
static int
members_ok(json_t *j, int depth)
{
  if (depth > 4096)
    return 0;
  if (json_is_object(j)) {
    if (json_object_size(j) > FLOW__MAX_MEMBERS)
      return 0;
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
      if ((json_is_object(v) || json_is_array(v)) && !members_ok(v, depth + 1))
        return 0;
    }
  } else if (json_is_array(j)) {
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v)
    {
      if ((json_is_object(v) || json_is_array(v)) && !members_ok(v, depth + 1))
        return 0;
    }
  }
  return 1;
}

int
flow__json_parse_object(const char *text, const char *what, json_t **out,
                        flow__err *err)
{
  *out = NULL;
  if (text == NULL) {
    *out = json_object();
    return *out ? 0 : flow__err_set(err, FLOW_ENOMEM, "out of memory");
  }
  size_t n = strlen(text);
  if (n > FLOW__MAX_DOCUMENT)
    return flow__err_set(err, FLOW_EINVAL,
                         "%s is %zu bytes; the most a case takes is %d KiB "
                         "(keep documents and photos in the host's store "
                         "and put their reference in the case)",
                         what, n, FLOW__MAX_DOCUMENT / 1024);
  json_error_t je;
  json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
  if (j == NULL) {
    if (json_error_code(&je) == json_error_out_of_memory)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory parsing %s",
                           what);
    if (json_error_code(&je) == json_error_null_character)
      return flow__err_set(err, FLOW_EINVAL,
                           "%s is not valid here: line %d, column %d: text "
                           "may not hold the NUL character \\u0000 (remove "
                           "it)",
                           what, je.line, je.column);
    return flow__err_set(err, FLOW_EINVAL,
                         "%s is not valid JSON: line %d, column %d: %s", what,
                         je.line, je.column, je.text);
  }
  if (!json_is_object(j)) {
    json_decref(j);
    return flow__err_set(err, FLOW_EINVAL,
                         "%s must be a JSON object like {\"key\": \"value\"}",
                         what);
  }
  if (!members_ok(j, 0)) {
    json_decref(j);
    return flow__err_set(err, FLOW_EINVAL,
                         "%s has an object with more than %d members, the "
                         "most a case holds in one object (split it, or keep "
                         "it in the host's store)",
                         what, FLOW__MAX_MEMBERS);
  }
  *out = j;
  return 0;
}
