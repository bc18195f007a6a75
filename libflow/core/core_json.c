/*
 * JSON at the API boundary: parsing what hosts hand in (with the position
 * of the first mistake) and turning results into owned strings that the
 * host frees with flow_free().  Output always has sorted keys and compact
 * separators, so the same case prints the same bytes every time.
 */
#include "core.h"

#include <string.h>

#define DUMP_FLAGS                                                             \
  (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))

static int
dump_to_buf(const char *buffer, size_t size, void *data)
{
  flow__buf *b = data;
  flow__buf_add(b, buffer, size);
  return b->oom ? -1 : 0;
}

int
flow__json_dump(json_t *j, flow__buf *b)
{
  if (json_dump_callback(j, dump_to_buf, b, DUMP_FLAGS) != 0 || b->oom)
    return FLOW_ENOMEM;
  if (b->p == NULL)
    flow__buf_add(b, "", 0);
  return b->oom ? FLOW_ENOMEM : 0;
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

int
flow__json_parse_object(const char *text, const char *what, json_t **out,
                        flow__err *err)
{
  *out = NULL;
  if (text == NULL) {
    *out = json_object();
    return *out ? 0 : flow__err_set(err, FLOW_ENOMEM, "out of memory");
  }
  json_error_t je;
  json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
  if (j == NULL) {
    if (json_error_code(&je) == json_error_out_of_memory)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory parsing %s",
                           what);
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
  *out = j;
  return 0;
}
