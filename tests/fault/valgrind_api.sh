#!/bin/sh
# Runs the API test binaries under valgrind memcheck: every leak, every
# read of uninitialised or freed memory fails the run.  CK_FORK=no keeps
# each suite in one process so that valgrind follows all of it.
#
# usage: tests/fault/valgrind_api.sh [BUILD_DIR]   (default build/test)
#
# A plain build is what valgrind wants (not the sanitizer build: ASan and
# valgrind do not mix).  The suites read examples/ through FLOW_SOURCE_DIR.
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build/test}
export CK_FORK=no
export FLOW_SOURCE_DIR="$here"
status=0
for t in check_api check_timers check_bad_input check_work; do
  bin="$build/$t"
  if [ ! -x "$bin" ]; then
    echo "valgrind: $bin is not built" >&2
    status=1
    continue
  fi
  start=$(date +%s)
  if valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect \
       --errors-for-leak-kinds=definite,indirect --error-exitcode=1 \
       --track-origins=yes "$bin" >"$build/valgrind-$t.log" 2>&1; then
    echo "valgrind: $t clean ($(($(date +%s) - start)) s)"
  else
    echo "valgrind: $t FAILED ($(($(date +%s) - start)) s), see" \
      "$build/valgrind-$t.log:"
    grep -a -E '^==[0-9]+== (Invalid|Conditional|Use of|Mismatched)' \
      "$build/valgrind-$t.log" | head -10
    grep -a -E 'definitely lost|indirectly lost|^[0-9]+%: Checks|:F:|:E:' \
      "$build/valgrind-$t.log" | head -10
    status=1
  fi
done
exit $status
