/*
 * What every fuzz target shares: the libFuzzer entry point, a clean-up the
 * replay driver calls at exit (so LeakSanitizer sees every engine closed),
 * and a check that stops the run the way libFuzzer notices (abort) when an
 * invariant breaks, printing why first.
 */
#ifndef FLOW_FUZZ_H
#define FLOW_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Closes what the target keeps between inputs. */
void fuzz_cleanup(void);

#define FUZZ_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz invariant broken at %s:%d: ", __FILE__,            \
              __LINE__);                                                       \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* A NUL-terminated copy of the input (malloc'd; the caller frees). */
static inline char *
fuzz_text(const uint8_t *data, size_t size)
{
  char *s = malloc(size + 1);
  if (s == NULL)
    abort();
  for (size_t i = 0; i < size; i++)
    s[i] = (char)data[i];
  s[size] = 0;
  return s;
}

#endif
