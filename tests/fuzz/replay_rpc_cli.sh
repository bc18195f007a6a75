#!/bin/sh
# Replays the fuzz_rpc corpus and regressions through the real `flow run`:
# fuzz_rpc speaks the protocol to the library in process, so this is what
# keeps the command's own parsing (libflow/cli/run_rpc.c, run_methods.c)
# honest about the same inputs.  For each file: `flow run` must end by
# itself (within 10 s, whatever it was sent), exit 0, and answer with one
# JSON object per line.
#
# usage: replay_rpc_cli.sh FLOW SOURCE_DIR DIR...
flow=$1
src=$2
shift 2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/flow-rpc-XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
"$flow" --db "$tmp/db" load "$src/examples/services/missed_bin.lua" \
  >/dev/null || exit 2
fail=0
n=0
for dir in "$@"; do
  for f in "$dir"/*; do
    [ -f "$f" ] || continue
    [ "$(basename "$f")" = README ] && continue
    n=$((n + 1))
    timeout -k 2 10 "$flow" --db "$tmp/db" run <"$f" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ge 124 ]; then
      echo "FAIL: flow run did not finish on $f (killed after 10 s)"
      fail=1
      continue
    fi
    if [ "$rc" -ne 0 ]; then
      echo "FAIL: flow run exited $rc on $f:"
      head -5 "$tmp/err"
      fail=1
    fi
    if grep -qv '^{.*}$' "$tmp/out"; then
      echo "FAIL: flow run wrote a line that is not a JSON object on $f:"
      grep -v '^{.*}$' "$tmp/out" | head -3
      fail=1
    fi
  done
done
echo "replay through flow run: $n inputs"
exit $fail
