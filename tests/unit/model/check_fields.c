/*
 * Field validation and JSON Schema export, on service definitions built by
 * hand so that these tests do not depend on the Lua loader.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "testutil.h"

static flow__field fields[9];
static char *enum_values[] = { "refuse", "recycling", "garden" };
static flow__service svc;
static flow__err err;
static int match_calls;

/* A stand-in for the sandbox: "^%d+$" means digits only; "(" is broken. */
static int
fake_match(void *ctx, const char *s, size_t len, const char *pattern)
{
  (void)ctx;
  if (s == NULL && pattern == NULL)
    return 0; /* a validation begins */
  match_calls++;
  if (strcmp(pattern, "(") == 0)
    return FLOW_ESCRIPT;
  for (size_t i = 0; i < len; i++)
    if (s[i] < '0' || s[i] > '9')
      return 0;
  return len > 0;
}

static void
setup(void)
{
  memset(fields, 0, sizeof fields);
  memset(&svc, 0, sizeof svc);
  fields[0] = (flow__field){ .name = "bin", .type = FLOW__F_ENUM,
                             .required = 1, .values = enum_values,
                             .nvalues = 3 };
  fields[1] = (flow__field){ .name = "count", .type = FLOW__F_INTEGER,
                             .has_min = 1, .min = 0, .has_max = 1,
                             .max = 10 };
  fields[2] = (flow__field){ .name = "due", .type = FLOW__F_DATE };
  fields[3] = (flow__field){ .name = "extra", .type = FLOW__F_OBJECT };
  fields[4] = (flow__field){ .name = "flag", .type = FLOW__F_BOOLEAN };
  fields[5] = (flow__field){ .name = "ratio", .type = FLOW__F_NUMBER,
                             .has_max = 1, .max = 1.5 };
  fields[6] = (flow__field){ .name = "tags", .type = FLOW__F_LIST,
                             .has_max = 1, .max = 2 };
  fields[7] = (flow__field){ .name = "uprn", .type = FLOW__F_STRING,
                             .required = 1, .pattern = "^%d+$",
                             .has_max = 1, .max = 12, .pii = 1, .index = 1,
                             .title = "Property reference" };
  fields[8] = (flow__field){ .name = "when", .type = FLOW__F_DATETIME };
  svc.name = "bins";
  svc.version = 3;
  svc.fields = fields;
  svc.nfields = 9;
  flow__err_clear(&err);
  match_calls = 0;
}

static int
validate(const char *text)
{
  json_t *j = json_loads(text, 0, NULL);
  ck_assert_ptr_nonnull(j);
  int rc = flow__fields_validate(&svc, j, fake_match, NULL, &err);
  json_decref(j);
  return rc;
}

START_TEST(test_fields_valid_data_passes)
{
  ck_assert_int_eq(validate("{\"bin\":\"refuse\",\"uprn\":\"123\","
                            "\"count\":3,\"due\":\"2024-02-29\","
                            "\"extra\":{},\"flag\":false,\"ratio\":1.25,"
                            "\"tags\":[1,2],\"when\":"
                            "\"2026-11-27T09:00:00+01:00\"}"),
                   0);
  ck_assert_int_eq(match_calls, 1);
  ck_assert_str_eq(err.msg, "");
}
END_TEST

START_TEST(test_fields_lists_every_problem)
{
  ck_assert_int_eq(validate("{\"bin\":\"glass\",\"uprn\":\"12a\","
                            "\"count\":11,\"due\":\"2026-02-30\","
                            "\"extra\":[],\"flag\":\"yes\",\"ratio\":2,"
                            "\"tags\":[1,2,3],\"when\":\"2026-11-27\","
                            "\"crw\":1}"),
                   FLOW_EDATA);
  const char *want[] = {
    "bin: must be one of refuse, recycling, garden (got \"glass\")",
    "count: must be at most 10",
    "due: must be a date",
    "extra: must be an object",
    "flag: must be true or false",
    "ratio: must be at most 1.5",
    "tags: must have at most 2 items (has 3)",
    "uprn: does not match the pattern ^%d+$",
    "when: must be a time with an offset",
    "crw: is not a field of bins",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    ck_assert_msg(strstr(err.msg, want[i]) != NULL, "missing '%s' in '%s'",
                  want[i], err.msg);
  ck_assert_int_eq(err.code, FLOW_EDATA);
}
END_TEST

START_TEST(test_fields_required_and_null)
{
  ck_assert_int_eq(validate("{\"uprn\":null}"), FLOW_EDATA);
  ck_assert(strstr(err.msg, "bin: is required") != NULL);
  ck_assert(strstr(err.msg, "uprn: is required") != NULL);
  /* An optional field set to null is simply "not set". */
  json_t *j = json_loads("{\"bin\":\"garden\",\"uprn\":\"1\",\"flag\":null}",
                         0, NULL);
  ck_assert_int_eq(flow__fields_validate(&svc, j, fake_match, NULL, &err), 0);
  ck_assert_ptr_null(json_object_get(j, "flag"));
  json_decref(j);
}
END_TEST

START_TEST(test_fields_whole_floats_become_integers)
{
  json_t *j = json_loads("{\"bin\":\"garden\",\"uprn\":\"1\",\"count\":4.0}",
                         0, NULL);
  ck_assert_int_eq(flow__fields_validate(&svc, j, fake_match, NULL, &err), 0);
  ck_assert(json_is_integer(json_object_get(j, "count")));
  json_decref(j);
  ck_assert_int_eq(validate("{\"bin\":\"garden\",\"uprn\":\"1\","
                            "\"count\":4.5}"),
                   FLOW_EDATA);
  ck_assert(strstr(err.msg, "count: must be a whole number") != NULL);
}
END_TEST

START_TEST(test_fields_string_length_counts_characters)
{
  /* Twelve characters, 24 bytes: within max = 12. */
  fields[7].pattern = NULL;
  ck_assert_int_eq(validate("{\"bin\":\"garden\",\"uprn\":"
                            "\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                            "\"}"),
                   0);
  ck_assert_int_eq(validate("{\"bin\":\"garden\",\"uprn\":"
                            "\"1234567890123\"}"),
                   FLOW_EDATA);
  ck_assert(strstr(err.msg, "at most 12 characters (has 13)") != NULL);
}
END_TEST

START_TEST(test_fields_broken_pattern_is_reported)
{
  fields[7].pattern = "(";
  ck_assert_int_eq(validate("{\"bin\":\"garden\",\"uprn\":\"1\"}"),
                   FLOW_EDATA);
  ck_assert(strstr(err.msg, "could not be checked") != NULL);
}
END_TEST

START_TEST(test_fields_not_an_object)
{
  json_t *j = json_array();
  ck_assert_int_eq(flow__fields_validate(&svc, j, fake_match, NULL, &err),
                   FLOW_EDATA);
  json_decref(j);
}
END_TEST

START_TEST(test_fields_schema)
{
  json_t *s = flow__fields_schema(&svc);
  ck_assert_ptr_nonnull(s);
  char *text = json_dumps(s, JSON_SORT_KEYS | JSON_COMPACT);
  json_decref(s);
  const char *want[] = {
    "\"$schema\":\"https://json-schema.org/draft/2020-12/schema\"",
    "\"$id\":\"urn:libflow:service:bins:3\"",
    "\"additionalProperties\":false",
    "\"required\":[\"bin\",\"uprn\"]",
    "\"bin\":{\"enum\":[\"refuse\",\"recycling\",\"garden\"],"
    "\"type\":\"string\"}",
    "\"count\":{\"maximum\":10,\"minimum\":0,\"type\":\"integer\"}",
    "\"due\":{\"format\":\"date\",\"type\":\"string\"}",
    "\"when\":{\"format\":\"date-time\",\"type\":\"string\"}",
    "\"tags\":{\"maxItems\":2,\"type\":\"array\"}",
    "\"ratio\":{\"maximum\":1.5,\"type\":\"number\"}",
    "\"uprn\":{\"maxLength\":12,\"pattern\":\"^[0-9]+$\",\"title\":"
    "\"Property reference\",\"type\":\"string\",\"x-index\":true,"
    "\"x-lua-pattern\":\"^%d+$\",\"x-pii\":true}",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    ck_assert_msg(strstr(text, want[i]) != NULL, "missing %s in %s", want[i],
                  text);
  free(text);
}
END_TEST

START_TEST(test_fields_schema_pattern_translation)
{
  struct {
    const char *lua, *re;
  } cases[] = {
    { "^%a+%s%d$", "^[A-Za-z]+\\s[0-9]$" },
    { "^[%w_]+$", "^[A-Za-z0-9_]+$" },
    { "^%u%l-%.$", "^[A-Z][a-z]*?\\.$" },
    { "%bxy", NULL },
    { "%f[%w]", NULL },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    fields[7].pattern = (char *)cases[i].lua;
    json_t *s = flow__fields_schema(&svc);
    json_t *u = json_object_get(json_object_get(s, "properties"), "uprn");
    json_t *p = json_object_get(u, "pattern");
    if (cases[i].re)
      ck_assert_str_eq(json_string_value(p), cases[i].re);
    else
      ck_assert_ptr_null(p);
    ck_assert_str_eq(json_string_value(json_object_get(u, "x-lua-pattern")),
                     cases[i].lua);
    json_decref(s);
  }
}
END_TEST

START_TEST(test_fields_type_names)
{
  for (int t = FLOW__F_STRING; t <= FLOW__F_LIST; t++)
    ck_assert_int_eq(flow__ftype_from_name(flow__ftype_name(t)), t);
  ck_assert_int_eq(flow__ftype_from_name("strng"), -1);
  ck_assert_ptr_null(flow__ftype_name(99));
}
END_TEST

static Suite *
fields_suite(void)
{
  Suite *s = suite_create("fields");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_add_test(tc, test_fields_valid_data_passes);
  tcase_add_test(tc, test_fields_lists_every_problem);
  tcase_add_test(tc, test_fields_required_and_null);
  tcase_add_test(tc, test_fields_whole_floats_become_integers);
  tcase_add_test(tc, test_fields_string_length_counts_characters);
  tcase_add_test(tc, test_fields_broken_pattern_is_reported);
  tcase_add_test(tc, test_fields_not_an_object);
  tcase_add_test(tc, test_fields_schema);
  tcase_add_test(tc, test_fields_schema_pattern_translation);
  tcase_add_test(tc, test_fields_type_names);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(fields_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
