#!/bin/sh
# examples/host/vendor_day.c, the vendor's host (issue 16), on a smaller
# day: it must run to the end with no unexpected error, print the head of
# service's report, and print the same figures twice from the same seed.
# Usage: check_vendor_day.sh EXAMPLE_BINARY SOURCE_DIR
bin=$1
src=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}
cd "$src" || exit 1
args="--reports 400 --bookings 40 --no-timings"
# shellcheck disable=SC2086 # the arguments are words
if ! "$bin" $args --db "$tmp/day.db" --outbox "$tmp/outbox.jsonl" \
    >"$tmp/report.txt" 2>"$tmp/err.txt"; then
  fail "the day did not run (exit $?)"
  sed 's/^/    /' "$tmp/err.txt" | tail -n 20
fi
for heading in "Cases by service and state" "Service levels" "Tasks by team" \
    "Incidents" "Actions" "Unexpected errors: 0"; do
  grep -q "$heading" "$tmp/report.txt" ||
    fail "the report has no '$heading'"
done
grep -q '"template_id"' "$tmp/outbox.jsonl" ||
  fail "the outbox holds no GOV.UK Notify request"
# shellcheck disable=SC2086
"$bin" $args --json >"$tmp/a.json" 2>/dev/null || fail "--json did not run"
# shellcheck disable=SC2086
"$bin" $args --json >"$tmp/b.json" 2>/dev/null || fail "--json did not run"
cmp -s "$tmp/a.json" "$tmp/b.json" ||
  fail "two runs with the same seed printed different figures"
# Pretty-printed: the count is the line after "unexpected_errors".
grep -A1 '"unexpected_errors"' "$tmp/a.json" | grep -q '"count": 0' ||
  fail "--json reports unexpected errors: $(grep -A3 '"unexpected_errors"' "$tmp/a.json")"
for svc in missed_bin_report bulky_waste_booking; do
  grep -q "\"$svc\"" "$tmp/a.json" || fail "--json has no cases of $svc"
done
[ "$failed" -eq 0 ] && echo "vendor day: ok"
[ "$failed" -eq 0 ]
