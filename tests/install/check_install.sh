#!/usr/bin/env bash
# tests/install/check_install.sh - libflow as a host vendor gets it: builds
# and installs libflow into a temporary prefix, then builds the examples of
# examples/host/ against the installed tree only, the ways
# docs/embedding.md ("Building against libflow") shows:
#
#   - cc with `pkg-config --cflags --libs libflow` (the shared library);
#   - the CMake project examples/host/CMakeLists.txt, which uses
#     find_package(libflow) and links libflow::flow and libflow::flow_static;
#   - cc with `pkg-config --static --cflags --libs libflow`, where the
#     archive lies alone;
#
# runs each program, and moves the installed tree to check that libflow.pc
# follows it.  Usage (from anywhere; scripts/test runs it):
#
#   tests/install/check_install.sh
#
# Builds nothing outside its own temporary directory, which it removes.
# Prints one "ok:" or "FAIL:" line per check and exits 1 if any failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/flow-install.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
jobs=$(nproc 2>/dev/null || echo 2)
CC=${CC:-cc}
failed=0

ok() { echo "ok:   $*"; }
fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}
# finish: the summary line, and the exit status.
finish() {
  if [ "$failed" -eq 0 ]; then
    echo "install: every check passed"
    exit 0
  fi
  echo "install: $failed failed"
  exit 1
}
# quiet LOG CMD...: runs CMD with its output in LOG; on failure shows the
# end of LOG.
quiet() {
  local log=$1
  shift
  if "$@" >"$log" 2>&1; then
    return 0
  fi
  tail -n 30 "$log" | sed 's/^/    /'
  return 1
}
# needs_libflow_so BIN: BIN loads libflow.so at run time.
needs_libflow_so() {
  readelf -d "$1" 2>/dev/null | grep -q 'NEEDED.*\[libflow\.so'
}

# run_example WHAT BIN [VAR=VALUE...]: runs the example BIN on a fresh
# database, with the variables set, and checks how it ended.  The examples
# run on the real clock, so only what does not depend on the date is
# checked: the exit status and the refusal each example shows.
n=0
run_example() {
  local what=$1 bin=$2 name out
  shift 2
  n=$((n + 1))
  name=$(basename "$bin")
  name=${name#example_}
  name=${name%_static}
  out=$work/run.$n.log
  case $name in
  host_minimal)
    if env "$@" "$bin" "$work/run.$n.db" \
        "$root/examples/services/missed_bin.lua" >"$out" 2>&1 &&
      grep -q '^refused as expected: .*(FLOW_EEVENT)$' "$out"; then
      ok "$what: example_$name runs"
    else
      sed 's/^/    /' "$out" | tail -n 20
      fail "$what: example_$name did not run as expected"
    fi
    ;;
  vendor_day)
    # A small day from the source tree's services and gazetteer; it
    # ends with the head of service's report.
    if (cd "$root" && env "$@" "$bin" --db "$work/run.$n.db" \
          --outbox "$work/run.$n.outbox" --reports 200 --bookings 20) \
        >"$out" 2>&1 && grep -q 'Cases by service and state' "$out"; then
      ok "$what: example_$name runs a day"
    else
      sed 's/^/    /' "$out" | tail -n 20
      fail "$what: example_$name did not run a day"
    fi
    ;;
  *)
    fail "$what: example_$name: tests/install/check_install.sh does not" \
         "know how to run it (add it to run_example)"
    ;;
  esac
}

examples=("$root"/examples/host/*.c)

# ---- build and install -------------------------------------------------------

prefix=$work/prefix
if quiet "$work/configure.log" cmake -S "$root" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release -DFLOW_WERROR=ON -DBUILD_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$prefix" &&
  quiet "$work/build.log" cmake --build "$work/build" -j "$jobs" &&
  quiet "$work/install.log" cmake --install "$work/build"; then
  ok "libflow built (Release, -Werror, no tests) and installed"
else
  fail "libflow did not build and install"
  finish
fi
if ctest --test-dir "$work/build" -N 2>/dev/null |
    grep -q '^Total Tests: 0$' &&
  [ -z "$(find "$work/build" -name 'check_*' -type f -perm -u+x)" ]; then
  ok "-DBUILD_TESTING=OFF built no tests"
else
  fail "-DBUILD_TESTING=OFF still built test programs"
fi

pcfile=$(find "$prefix" -name libflow.pc -path '*/pkgconfig/*')
libdir=$(dirname "$(dirname "$pcfile")")
if [ -n "$pcfile" ] && [ -f "$libdir/libflow.a" ] && [ -e "$libdir/libflow.so" ] &&
  [ -f "$libdir/cmake/libflow/libflowConfig.cmake" ] &&
  [ -f "$libdir/cmake/libflow/libflowConfigVersion.cmake" ] &&
  [ -f "$prefix/include/flow.h" ]; then
  ok "installed: flow.h, libflow.so, libflow.a, libflow.pc, libflowConfig.cmake"
else
  fail "the installed tree lacks a file:"
  (cd "$prefix" && find . -type f | sort | sed 's/^/    /')
  finish
fi
pcdir=$(dirname "$pcfile")
libdir_rel=${libdir#"$prefix"/}

# pc PCDIR ARGS...: pkg-config ARGS, with PCDIR searched first.
pc() {
  local dir=$1
  shift
  PKG_CONFIG_PATH="$dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" pkg-config "$@"
}

# pc_build WHAT PCDIR OUTDIR [PKG-CONFIG OPTIONS]: compiles every example
# with cc and the flags pkg-config gives from PCDIR.
pc_build() {
  local what=$1 dir=$2 outdir=$3 src name flags
  shift 3
  mkdir -p "$outdir"
  if ! flags=$(pc "$dir" "$@" --cflags --libs libflow); then
    fail "$what: pkg-config $* --cflags --libs libflow failed"
    return 1
  fi
  # The host's own loop and JSON library (the vendor's day uses both),
  # found as a host finds them, not through libflow.pc.
  flags="$flags $(pkg-config --cflags --libs libuv jansson) -lm"
  for src in "${examples[@]}"; do
    name=$(basename "$src" .c)
    # shellcheck disable=SC2086 # the flags are words
    if ! quiet "$outdir/$name.log" "$CC" -Wall -Wextra -Werror "$src" \
        -o "$outdir/example_$name" $flags; then
      fail "$what: example_$name did not build"
      return 1
    fi
  done
  ok "$what: the examples build with" \
     "pkg-config ${*:+$* }--cflags --libs libflow"
}

# ---- (a) pkg-config, shared --------------------------------------------------

if pc_build "pkg-config" "$pcdir" "$work/pc"; then
  for src in "${examples[@]}"; do
    bin=$work/pc/example_$(basename "$src" .c)
    if needs_libflow_so "$bin"; then
      run_example "pkg-config" "$bin" LD_LIBRARY_PATH="$libdir"
    else
      fail "pkg-config: $(basename "$bin") is not linked with libflow.so"
    fi
  done
fi

# ---- (b) CMake: find_package(libflow), shared and static ---------------------

if quiet "$work/host-configure.log" cmake -S "$root/examples/host" \
    -B "$work/host" -DCMAKE_PREFIX_PATH="$prefix" &&
  quiet "$work/host-build.log" cmake --build "$work/host" -j "$jobs"; then
  ok "cmake: examples/host builds with find_package(libflow 0.1 CONFIG)"
  for src in "${examples[@]}"; do
    name=$(basename "$src" .c)
    bin=$work/host/example_$name
    if needs_libflow_so "$bin"; then
      run_example "cmake libflow::flow" "$bin" LD_LIBRARY_PATH="$libdir"
    else
      fail "cmake libflow::flow: example_$name is not linked with libflow.so"
    fi
    bin=$work/host/example_${name}_static
    if needs_libflow_so "$bin"; then
      fail "cmake libflow::flow_static: example_${name}_static needs libflow.so"
    else
      run_example "cmake libflow::flow_static" "$bin"
    fi
  done
else
  fail "cmake: examples/host does not build against the installed libflow"
fi

# The version file: 0.1.0 is not what a host asking for 1.0 gets.
mkdir -p "$work/v1"
cat >"$work/v1/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(wants_libflow_1 LANGUAGES C)
find_package(libflow 1.0 CONFIG REQUIRED)
EOF
if cmake -S "$work/v1" -B "$work/v1/build" -DCMAKE_PREFIX_PATH="$prefix" \
    >"$work/v1.log" 2>&1; then
  fail "cmake: find_package(libflow 1.0) accepted version 0.1.0"
else
  ok "cmake: find_package(libflow 1.0) refuses 0.1.0 (SameMajorVersion)"
fi

# ---- the tree moved: libflow.pc follows it -----------------------------------

moved=$work/elsewhere/libflow
mkdir -p "$(dirname "$moved")"
mv "$prefix" "$moved"
real() { (cd "$1" 2>/dev/null && pwd -P); }
inc=$(pc "$moved/$libdir_rel/pkgconfig" --variable=includedir libflow)
lib=$(pc "$moved/$libdir_rel/pkgconfig" --variable=libdir libflow)
if [ -n "$inc" ] && [ "$(real "$inc")" = "$(real "$moved/include")" ] &&
  [ -n "$lib" ] && [ "$(real "$lib")" = "$(real "$moved/$libdir_rel")" ]; then
  ok "relocatable: moved, libflow.pc gives $moved/{include,$libdir_rel}"
else
  fail "relocatable: moved to $moved, libflow.pc gives '$inc' and '$lib'"
fi
if pc_build "pkg-config, moved" "$moved/$libdir_rel/pkgconfig" \
    "$work/moved"; then
  for src in "${examples[@]}"; do
    run_example "pkg-config, moved" \
      "$work/moved/example_$(basename "$src" .c)" \
      LD_LIBRARY_PATH="$moved/$libdir_rel"
  done
fi

# ---- (c) pkg-config --static, the archive alone ------------------------------

# With libflow.so beside libflow.a the linker takes the shared library, so
# the static link is checked on a copy of the tree that holds the archive
# only (as a vendor who ships it alone has).
static=$work/static
cp -a "$moved" "$static"
rm -f "$static/$libdir_rel"/libflow.so*
if pc_build "pkg-config --static" "$static/$libdir_rel/pkgconfig" \
    "$work/pcstatic" --static; then
  for src in "${examples[@]}"; do
    bin=$work/pcstatic/example_$(basename "$src" .c)
    if needs_libflow_so "$bin"; then
      fail "pkg-config --static: $(basename "$bin") needs libflow.so"
    else
      run_example "pkg-config --static" "$bin"
    fi
  done
fi

finish
