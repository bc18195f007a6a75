#!/bin/sh
# The flow command's tests and every docs example, thirty years from now.
#
#   sh tests/clock/run_future.sh SHIM FLOW SOURCE
#
# SHIM is the clock_shift.c module: preloaded, it moves every reading of
# the real clock 10,957 days (thirty years) ahead.  This first proves that
# the shift reaches the engine (flow eval with no --now and no FLOW_NOW
# sees a year past 2055), then runs tests/cli/run.sh under it.  A check or
# an example that quietly depends on today's date, instead of on --now or
# FLOW_NOW, passes today and fails here.
SHIM=$1
FLOW=$2
SRC=$3
if [ ! -f "$SHIM" ] || [ ! -x "$FLOW" ] || [ ! -d "$SRC" ]; then
  echo "usage: sh tests/clock/run_future.sh SHIM FLOW SOURCE" >&2
  exit 2
fi
LD_PRELOAD=$SHIM${LD_PRELOAD:+:$LD_PRELOAD}
FLOW_CLOCK_SHIFT_DAYS=10957
export LD_PRELOAD FLOW_CLOCK_SHIFT_DAYS

now=$(env -u FLOW_NOW "$FLOW" eval -e 'return flow.now()') || exit 1
year=$(printf '%s\n' "$now" | sed -n 's/^"\([0-9][0-9][0-9][0-9]\)-.*/\1/p')
real=$(env -u LD_PRELOAD date -u +%Y)
if [ -z "$year" ] || [ "$year" -lt $((real + 29)) ]; then
  echo "FAIL: the clock shift did not reach flow: flow.now() is $now" \
    "in $real" >&2
  exit 1
fi
echo "real clock moved to $now"
exec sh "$SRC/tests/cli/run.sh" "$FLOW" "$SRC"
