/*
 * Replays fuzz inputs without libFuzzer: feeds every file in the
 * directories named on the command line (the seed corpus and the
 * regressions that crashes found) to the target's LLVMFuzzerTestOneInput,
 * once each, in name order.  Built with the normal compiler as a ctest
 * test, so a bug a fuzzer once found stays fixed in every build, with or
 * without clang.  A missing or empty directory is fine.
 *
 * Each input runs in a child process of its own, so one that crashes
 * (an abort from a broken invariant, a sanitizer report) is named and the
 * others still run; the exit status is 1 when any failed.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

static int
by_name(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads path and runs the target on it; returns 0, or 1 when unreadable. */
static int
run_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return 1;
  }
  size_t cap = 4096, len = 0;
  unsigned char *buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      unsigned char *p = realloc(buf, cap * 2);
      if (p == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = p;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf == NULL) {
    fprintf(stderr, "%s: out of memory\n", path);
    return 1;
  }
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

/* Runs one input in a child; 0 when it ran clean. */
static int
replay_file(const char *path)
{
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    int rc = run_file(path);
    fuzz_cleanup();
    exit(rc);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    ;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  if (WIFSIGNALED(status))
    printf("FAIL: %s: killed by signal %d\n", path, WTERMSIG(status));
  else
    printf("FAIL: %s: exit status %d\n", path, WEXITSTATUS(status));
  return 1;
}

/* The files of one directory, global so that a child's leak check at
   exit sees them as reachable rather than as the target's leaks. */
static char **NAMES;
static size_t NNAMES, CAP;

int
main(int argc, char **argv)
{
  long total = 0, bad = 0;
  for (int i = 1; i < argc; i++) {
    DIR *d = opendir(argv[i]);
    if (d == NULL)
      continue;
    NNAMES = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
      if (de->d_name[0] == '.' || strcmp(de->d_name, "README") == 0)
        continue;
      if (NNAMES == CAP) {
        CAP = CAP ? 2 * CAP : 64;
        char **p = realloc(NAMES, CAP * sizeof *NAMES);
        if (p == NULL)
          return 2;
        NAMES = p;
      }
      size_t len = strlen(argv[i]) + strlen(de->d_name) + 2;
      NAMES[NNAMES] = malloc(len);
      if (NAMES[NNAMES] == NULL)
        return 2;
      snprintf(NAMES[NNAMES], len, "%s/%s", argv[i], de->d_name);
      NNAMES++;
    }
    closedir(d);
    if (NNAMES > 0)
      qsort(NAMES, NNAMES, sizeof *NAMES, by_name);
    for (size_t k = 0; k < NNAMES; k++) {
      struct stat st;
      if (stat(NAMES[k], &st) == 0 && S_ISREG(st.st_mode)) {
        bad += replay_file(NAMES[k]);
        total++;
      }
    }
    for (size_t k = 0; k < NNAMES; k++)
      free(NAMES[k]);
  }
  free(NAMES);
  printf("replay: %ld inputs, %ld failed\n", total, bad);
  return bad ? 1 : 0;
}
