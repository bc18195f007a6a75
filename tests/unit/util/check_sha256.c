/*
 * SHA-256 against the FIPS 180-2/180-4 example vectors, and against
 * lengths on each side of the padding boundaries (55/56 bytes, where the
 * length stops fitting in the last block, and 64), where an off-by-one in
 * the padding would show.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "util/util.h"

static void
expect(const void *data, size_t len, const char *want)
{
  char out[65];
  memset(out, 'x', sizeof out);
  flow__sha256_hex(data, len, out);
  ck_assert_str_eq(out, want);
}

static void
expect_a(size_t n, const char *want)
{
  char *buf = malloc(n ? n : 1);
  ck_assert_ptr_nonnull(buf);
  memset(buf, 'a', n);
  expect(buf, n, want);
  free(buf);
}

START_TEST(test_sha256_fips_vectors)
{
  expect("", 0,
         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  expect(NULL, 0,
         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  expect("abc", 3,
         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  /* The 448-bit message: 56 bytes, so padding takes a second block. */
  const char *m448 =
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  expect(m448, strlen(m448),
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const char *m896 =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
      "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  expect(m896, strlen(m896),
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}
END_TEST

START_TEST(test_sha256_million_a)
{
  expect_a(1000000,
           "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

START_TEST(test_sha256_padding_boundaries)
{
  expect_a(55,
           "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  expect_a(56,
           "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  expect_a(57,
           "f13b2d724659eb3bf47f2dd6af1accc87b81f09f59f2b75e5c0bed6589dfe8c6");
  expect_a(63,
           "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34");
  expect_a(64,
           "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
  expect_a(65,
           "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0");
  expect_a(119,
           "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb");
  expect_a(120,
           "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c");
  expect_a(128,
           "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e");
}
END_TEST

START_TEST(test_sha256_binary)
{
  /* Every byte value, including NUL and the high bit: the data is bytes,
     not a string. */
  unsigned char all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (unsigned char)i;
  expect(all, sizeof all,
         "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880");
}
END_TEST

static Suite *
sha256_suite(void)
{
  Suite *s = suite_create("sha256");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_sha256_fips_vectors);
  tcase_add_test(tc, test_sha256_million_a);
  tcase_add_test(tc, test_sha256_padding_boundaries);
  tcase_add_test(tc, test_sha256_binary);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(sha256_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
