#!/bin/sh
# The `flow` command, end to end, the way a person or a script runs it.
#
#   sh tests/cli/run.sh /path/to/flow /path/to/source
#
# Every check runs the real binary in a temporary directory and looks only
# at what a user sees: standard output, standard error and the exit code
# (0 done, 1 refused, 2 usage error, 3 storage or internal failure).  The
# second half runs every shell example in docs/*.md (see run_doc_examples
# below), so the documentation cannot drift from the program.
#
# POSIX sh, grep, sed, awk and mktemp only.  Ends with "N passed, N failed"
# and exits non-zero when anything failed.

FLOW=$1
SRC=$2
if [ -z "$FLOW" ] || [ -z "$SRC" ] || [ ! -x "$FLOW" ] || [ ! -d "$SRC" ]; then
  echo "usage: sh tests/cli/run.sh /path/to/flow /path/to/source" >&2
  exit 2
fi
case $FLOW in /*) ;; *) FLOW=$(pwd)/$FLOW ;; esac
case $SRC in /*) ;; *) SRC=$(pwd)/$SRC ;; esac

T=$(mktemp -d "${TMPDIR:-/tmp}/flow-cli.XXXXXX") || exit 3
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
cd "$T" || exit 3
unset FLOW_DB FLOW_NOW
USER=tester
export USER

SERVICE=$SRC/examples/services/missed_bin.lua
DB=$T/cases.db
passed=0
failed=0

# ---- helpers ---------------------------------------------------------------

pass() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  echo "FAIL: $*"
  if [ -s "$T/out" ]; then sed 's/^/  stdout: /' "$T/out" | head -5; fi
  if [ -s "$T/err" ]; then sed 's/^/  stderr: /' "$T/err" | head -5; fi
}

# run ARGS...: runs flow; stdout in $T/out, stderr in $T/err, status in $rc.
run() {
  "$FLOW" "$@" >"$T/out" 2>"$T/err" </dev/null
  rc=$?
}
# run_in INPUT ARGS...: as run, with INPUT on standard input.
run_in() {
  _in=$1
  shift
  printf '%s\n' "$_in" | "$FLOW" "$@" >"$T/out" 2>"$T/err"
  rc=$?
}

# expect NAME CODE: the last run exited with CODE.
expect() {
  if [ "$rc" = "$2" ]; then pass; else fail "$1: exit $rc, expected $2"; fi
}
# out_has NAME REGEX / err_has NAME REGEX: a line of stdout/stderr matches.
out_has() {
  if grep -q -e "$2" "$T/out"; then pass; else fail "$1: stdout lacks /$2/"; fi
}
err_has() {
  if grep -q -e "$2" "$T/err"; then pass; else fail "$1: stderr lacks /$2/"; fi
}
out_lacks() {
  if grep -q -e "$2" "$T/out"; then fail "$1: stdout has /$2/"; else pass; fi
}
# out_lines NAME N / err_lines NAME N: exactly N lines.
out_lines() {
  _n=$(awk 'END { print NR }' "$T/out")
  if [ "$_n" = "$2" ]; then pass; else fail "$1: $_n stdout lines, expected $2"; fi
}
err_lines() {
  _n=$(awk 'END { print NR }' "$T/err")
  if [ "$_n" = "$2" ]; then pass; else fail "$1: $_n stderr lines, expected $2"; fi
}
# refused NAME CODE: exit CODE, nothing on stdout, one "flow: " line on stderr.
refused() {
  expect "$1" "$2"
  out_lines "$1 (stdout)" 0
  err_lines "$1 (stderr)" 1
  err_has "$1 (prefix)" '^flow: '
}
# usage NAME: exit 2 with a hint.
usage() {
  expect "$1" 2
  err_has "$1 (hint)" "^Try 'flow --help'\.\$"
  err_lines "$1 (stderr)" 2
}
# field KEY: the value of a string or number member "KEY" in $T/out.
field() {
  sed -n "s/.*\"$1\":\"\\{0,1\\}\\([^\",}]*\\)\"\\{0,1\\}[,}].*/\\1/p" "$T/out" |
    head -n 1
}
# is_case NAME: stdout is one line holding a case with every required key.
is_case() {
  out_lines "$1 (one line)" 1
  if grep -q '^{.*}$' "$T/out"; then pass; else fail "$1: not a JSON object"; fi
  for _k in id service version state status data opened_at updated_at \
    due_at seq; do
    if grep -q "\"$_k\":" "$T/out"; then pass; else fail "$1: no \"$_k\""; fi
  done
}

GOOD='{"uprn":"100023336956","address":"12 High Street","bin":"refuse","phone":"07700 900123"}'

# ---- version, help, usage errors ------------------------------------------

run --version
expect "--version" 0
out_has "--version" '^flow [0-9][0-9.]* (libflow [0-9][0-9.]*)$'

run --help
expect "--help" 0
out_has "--help lists commands" '^  check '
out_has "--help lists eval" '^  eval '
out_has "--help names --db" '--db FILE'
run help list
expect "help list" 0
out_has "help list" '^Usage: flow list'
run list --help
expect "list --help" 0
out_has "list --help" '^Usage: flow list'

run
usage "no command"
run frobnicate
usage "unknown command"
err_has "unknown command names it" "frobnicate"
run --frob show 1
usage "unknown option"
run show 1 --frob
usage "unknown option after the command"
run show
usage "missing argument"
run show 1 2
usage "too many arguments"
run --db
usage "--db without a value"
run --now yesterday show 1
usage "bad --now"
run --now 2026-11-27T09:00:00 show 1
usage "--now without an offset"

# FLOW_NOW is --now's default; --now wins; flow test keeps its own clock.
FLOW_NOW=2031-05-06T07:08:09Z run eval -e 'return flow.now()'
expect "FLOW_NOW" 0
out_has "FLOW_NOW sets the clock" '^"2031-05-06T07:08:09Z"$'
FLOW_NOW=2031-05-06T07:08:09Z run --now 2026-11-27T09:00:00Z eval \
  -e 'return flow.now()'
out_has "--now wins over FLOW_NOW" '^"2026-11-27T09:00:00Z"$'
FLOW_NOW=tomorrow run eval -e 'return 1'
usage "bad FLOW_NOW"
err_has "bad FLOW_NOW names it" "FLOW_NOW: cannot read 'tomorrow'"
FLOW_NOW= run eval -e 'return 1'
expect "empty FLOW_NOW is unset" 0
mkdir -p "$T/clock"
cat >"$T/clock/clock_test.lua" <<'LUA'
test("the virtual clock starts on Monday 2 February 2026", function()
  assert(flow.now() == "2026-02-02T09:00:00Z", flow.now())
end)
LUA
FLOW_NOW=2031-05-06T07:08:09Z run test "$T/clock"
expect "flow test ignores FLOW_NOW" 0
run list --limit many
usage "bad --limit"
run list --status pending
usage "bad --status"
run list --where bin
usage "--where without ="
run --json eval -e 'return 1' nonsense.lua
usage "eval with -e and FILE"
run graph
usage "graph without a script"
run test --junit
usage "test --junit without a file"
run graph --format png "$SERVICE"
usage "graph --format png"

# ---- check -----------------------------------------------------------------

run check "$SERVICE"
expect "check good" 0
out_has "check good" "missed_bin.lua: ok\$"

cat >"$T/syntax.lua" <<'EOF'
return {
  name = "broken",
  version = 1
  initial = "a",
}
EOF
run check "$T/syntax.lua"
expect "check syntax error" 1
err_has "check syntax error names FILE:LINE" 'syntax\.lua:[0-9][0-9]*: '
out_lines "check syntax error (stdout)" 0

cat >"$T/twice.lua" <<'EOF'
return {
  name = "Not A Name",
  version = 1,
  initial = "nowhere",
  states = {
    a = { on = { go = "missing" } },
  },
}
EOF
run check "$T/twice.lua"
expect "check bad definition" 1
_n=$(grep -c 'twice\.lua:[0-9][0-9]*: ' "$T/err")
if [ "$_n" -ge 2 ]; then pass; else fail "check lists every problem: $_n lines"; fi
if grep -qv 'twice\.lua:[0-9][0-9]*: ' "$T/err"; then
  fail "check: every stderr line is FILE:LINE: message"
else
  pass
fi

run check "$SERVICE" "$T/syntax.lua"
expect "check good and bad" 1
out_has "check good and bad" "missed_bin.lua: ok\$"
run check "$T/no-such.lua"
refused "check missing file" 1
cp "$SERVICE" "$T/-dash.lua"
run check -- -dash.lua
expect "-- ends options" 0
out_has "-- ends options" '^-dash.lua: ok$'

# ---- storage failures (exit 3) --------------------------------------------

run --db "$T/no/such/dir/flow.db" load "$SERVICE"
refused "load into a missing directory" 3
echo "this is not a database, just some text that is long enough" >"$T/text.db"
i=0
while [ $i -lt 100 ]; do echo "more text to fill a page $i" >>"$T/text.db"; i=$((i + 1)); done
run --db "$T/text.db" list
refused "a file that is not a database" 3
run --db "$T/absent.db" show 1
refused "show on a missing database" 3
if [ -e "$T/absent.db" ]; then fail "show created a database"; else pass; fi

# ---- load ------------------------------------------------------------------

run --db "$DB" load "$SERVICE"
expect "load" 0
out_has "load" '^loaded missed_bin version 1 (sha256 [0-9a-f]\{8\}\.\.\.)$'
run --db "$DB" load "$SERVICE"
expect "load again" 0
out_has "load again" '^missed_bin version 1 is already loaded$'
run load "$SERVICE" --json --db "$DB"
expect "load --json, options after the command" 0
out_has "load --json" '"stored":false'
out_has "load --json" '"name":"missed_bin"'
out_lines "load --json" 1
sed 's/title = "Report a missed bin collection"/title = "Changed"/' \
  "$SERVICE" >"$T/changed.lua"
run --db "$DB" load "$T/changed.lua"
refused "load changed source under the same version" 1
err_has "load changed: says what to do" 'give the changed script a new version number'
run --db "$DB" load "$T/syntax.lua"
expect "load bad script" 1
err_has "load bad script" 'syntax\.lua:[0-9][0-9]*: '

# The default database is ./flow.db, and FLOW_DB overrides it.
mkdir "$T/cwd"
(cd "$T/cwd" && "$FLOW" load "$SERVICE" >/dev/null 2>&1)
if [ -f "$T/cwd/flow.db" ]; then pass; else fail "default database ./flow.db"; fi
(cd "$T/cwd" && FLOW_DB="$T/env.db" "$FLOW" load "$SERVICE" >/dev/null 2>&1)
if [ -f "$T/env.db" ]; then pass; else fail "FLOW_DB names the database"; fi

# ---- open ------------------------------------------------------------------

run --db "$DB" --now 2026-11-27T09:00:00Z open missed_bin "$GOOD"
expect "open" 0
is_case "open"
ID1=$(field id)
[ "$ID1" = 1 ] && pass || fail "first case id is \"1\", got '$ID1'"
[ "$(field state)" = reported ] && pass || fail "open: state reported"
[ "$(field status)" = open ] && pass || fail "open: status open"
[ "$(field seq)" = 1 ] && pass || fail "open: seq 1"
[ "$(field version)" = 1 ] && pass || fail "open: version 1"
[ "$(field service)" = missed_bin ] && pass || fail "open: service"
[ "$(field opened_at)" = 2026-11-27T09:00:00Z ] && pass ||
  fail "open: --now sets opened_at, got $(field opened_at)"
field due_at | grep -q '^2026-12-[0-9][0-9]T[0-9:]*Z$' && pass ||
  fail "open: the SLA sets due_at, got $(field due_at)"
out_has "open: data" '"uprn":"100023336956"'
cp "$T/out" "$T/case1.json"

run --db "$DB" open missed_bin '{"uprn":"12ab","bin":"glass"}'
refused "open with bad data" 1
err_has "open with bad data names every field" 'uprn'
err_has "open with bad data names every field" 'address'
err_has "open with bad data names every field" 'bin'
run --db "$DB" open missed_bin '{"uprn": '
refused "open with malformed JSON" 1
run --db "$DB" open missed_bin '[1,2]'
refused "open with a JSON array" 1
run --db "$DB" open no_such_service
refused "open an unknown service" 1
run --db "$DB" open missed_bin @"$T/missing.json"
refused "open @missing file" 1

run_in '{"uprn":"100023336957","address":"14 High Street","bin":"recycling"}' \
  --db "$DB" --now 2026-11-27T10:00:00Z open missed_bin -
expect "open with data on stdin" 0
[ "$(field id)" = 2 ] && pass || fail "second case id is \"2\""
printf '%s\n' '{"uprn":"100023336958","address":"16 High Street",' \
  '"bin":"garden","reported_by":"crew"}' >"$T/data.json"
run --db "$DB" --now 2026-11-27T11:00:00Z open missed_bin @"$T/data.json"
expect "open with @file" 0
[ "$(field id)" = 3 ] && pass || fail "third case id is \"3\""

# ---- signal ----------------------------------------------------------------

run --db "$DB" signal 1 assign '{}'
refused "assign without a crew (flow.fail)" 1
err_has "flow.fail message reaches the user" 'crew'
run --db "$DB" signal 1 collect
refused "an event the state does not accept" 1
run --db "$DB" signal 1 assign '{"crew": 7}'
refused "a handler writes data of the wrong type" 1
run --db "$DB" signal 999 assign '{"crew":"north-2"}'
refused "signal an unknown case" 1
run --db "$DB" signal 1 assign 'crew=north-2'
refused "signal with a payload that is not JSON" 1

run --db "$DB" --now 2026-11-27T12:00:00Z --actor sam --roles supervisor \
  signal 1 assign '{"crew":"north-2"}'
expect "assign" 0
is_case "assign"
[ "$(field state)" = assigned ] && pass || fail "assign: state assigned"
[ "$(field seq)" = 2 ] && pass || fail "assign: seq 2"
[ "$(field updated_at)" = 2026-11-27T12:00:00Z ] && pass ||
  fail "assign: --now sets updated_at"
out_has "assign: handler set crew" '"crew":"north-2"'

run --db "$DB" --actor sam signal 1 cannot_access
refused "an event that needs a role the actor lacks" 1
run --db "$DB" --actor sam --roles driver,loader signal 1 cannot_access
refused "other roles do not help" 1

run_in '{"date":"2026-12-02"}' --db "$DB" --now 2026-11-30T09:00:00Z \
  signal 1 schedule -
expect "schedule with payload on stdin" 0
[ "$(field state)" = scheduled ] && pass || fail "schedule: state scheduled"
out_has "schedule: date" '"scheduled_for":"2026-12-02"'
run --db "$DB" signal 2 assign '{"crew":"south-1"}'
run --db "$DB" signal 2 schedule '{"date":"2 December"}'
refused "schedule with a date that is not a date" 1

run --db "$DB" --now 2026-12-02T15:00:00Z signal 1 collect --actor kim \
  --roles crew
expect "collect" 0
[ "$(field state)" = closed ] && pass || fail "collect: state closed"
[ "$(field status)" = closed ] && pass || fail "collect: status closed"
out_has "collect: collected" '"collected":true'
run --db "$DB" signal 1 collect
refused "an event on a closed case" 1

# Escalation by the crew, closing by a supervisor.
run --db "$DB" --actor kim --roles crew,driver signal 2 cannot_access
expect "cannot_access with the crew role" 0
[ "$(field state)" = escalated ] && pass || fail "cannot_access: escalated"
run --db "$DB" --actor kim --roles crew signal 2 collect
refused "collect in escalated needs a supervisor" 1
run --db "$DB" --actor lee --roles=supervisor signal 2 collect
expect "collect by a supervisor (--roles=)" 0
[ "$(field state)" = closed ] && pass || fail "supervisor collect: closed"

# ---- show, persistence across processes -----------------------------------

run --db "$DB" show 1
expect "show" 0
is_case "show"
[ "$(field state)" = closed ] && pass || fail "show: a second process sees it"
[ "$(field seq)" = 4 ] && pass || fail "show: seq 4"
run show 3 --db="$DB"
expect "show with --db= after the command" 0
out_has "show 3" '"reported_by":"crew"'
run --db "$DB" show 99
refused "show an unknown case" 1
run --db "$DB" show abc
refused "show a malformed id" 1

# ---- history ---------------------------------------------------------------

run --db "$DB" history 1
expect "history" 0
out_lines "history: one line per event" 4
if awk '!/^\{.*\}$/ { bad = 1 } END { exit bad }' "$T/out"; then pass; else
  fail "history: every line is a JSON object"; fi
sed -n 1p "$T/out" | grep -q '"event":"open"' && pass ||
  fail "history: seq 1 is the opening"
sed -n 1p "$T/out" | grep -q '"seq":1' && pass || fail "history: seq 1 first"
sed -n 1p "$T/out" | grep -q '"id":"tester"' && pass ||
  fail "history: the actor defaults to \$USER"
sed -n 2p "$T/out" | grep -q '"id":"sam"' && pass ||
  fail "history: --actor is recorded"
sed -n 2p "$T/out" | grep -q '"supervisor"' && pass ||
  fail "history: --roles are recorded"
sed -n 2p "$T/out" | grep -q '"crew":"north-2"' && pass ||
  fail "history: the payload is recorded"
sed -n 4p "$T/out" | grep -q '"to":"closed"' && pass ||
  fail "history: the last entry goes to closed"
run --db "$DB" history 99
refused "history of an unknown case" 1

# ---- list ------------------------------------------------------------------

run --db "$DB" list
expect "list" 0
out_has "list: header" '^ID  *SERVICE  *VER  *STATE  *STATUS  *UPDATED  *DUE$'
out_lines "list: header and 3 cases" 4
out_has "list: a row" '^1  *missed_bin  *1  *closed  *closed  *2026-12-02T15:00:00Z  *2026-'
out_has "list: case 3" '^3  *missed_bin  *1  *reported  *open '
run --db "$DB" --json list
expect "list --json" 0
out_lines "list --json: one line" 1
out_has "list --json: an array of cases" '^\[{.*}\]$'
_n=$(grep -o '"service":"missed_bin"' "$T/out" | awk 'END { print NR }')
[ "$_n" = 3 ] && pass || fail "list --json: 3 cases, got $_n"
run --db "$DB" list --status open --json
_n=$(grep -o '"service":"missed_bin"' "$T/out" | awk 'END { print NR }')
[ "$_n" = 1 ] && pass || fail "list --status open: 1 case, got $_n"
run --db "$DB" list --state closed
out_lines "list --state closed" 3
run --db "$DB" list --service missed_bin --limit 2
out_lines "list --limit 2: header, 2 cases and a note" 4
out_has "list --limit 2: says there may be more" '^(limit of 2 reached'
run --db "$DB" list --service missed_bin --limit 2 --json
_n=$(grep -o '"service":"missed_bin"' "$T/out" | awk 'END { print NR }')
[ "$_n" = 2 ] && pass || fail "list --limit 2 --json: 2 cases, got $_n"
run --db "$DB" list --service no_such
expect "list of an unknown service" 0
out_lines "list of an unknown service: header only" 1
run --db "$DB" list --where bin=refuse
expect "list --where bin=refuse" 0
out_lines "list --where text value" 2
out_has "list --where text value" '^1 '
run --db "$DB" list --where 'uprn="100023336958"'
out_lines "list --where quoted string" 2
out_has "list --where quoted string" '^3 '
run --db "$DB" list --where uprn=100023336958
out_lines "list --where digits find the same digits as text" 2
run --db "$DB" list --where collected=true --where crew=north-2
out_lines "list --where twice, boolean" 2
out_has "list --where twice, boolean" '^1 '
run --db "$DB" list --where "address=14 High Street"
out_lines "list --where text with spaces" 2
run --db "$DB" list --where 'address=say "hi"'
expect "list --where text with quotes is escaped" 0
run --db "$DB" list --where 'bad field=1'
refused "list --where with a bad field name" 1

# ---- schema, services ------------------------------------------------------

run --db "$DB" schema missed_bin
expect "schema" 0
out_lines "schema (one line)" 1
out_has "schema is an object" '^{.*}$'
out_has "schema names its draft" \
  '"\$schema":"https://json-schema.org/draft/2020-12/schema"'
for _f in uprn address bin phone crew collected; do
  out_has "schema has field $_f" "\"$_f\":{"
done
out_has "schema lists required fields" '"required":\["address","bin","uprn"\]'
run --db "$DB" schema missed_bin --version 1
expect "schema --version 1" 0
out_has "schema --version 1" '"\$id":"urn:libflow:service:missed_bin:1"'
run --db "$DB" schema missed_bin --version=1
expect "schema --version=1" 0
run --db "$DB" schema nosuch
refused "schema of an unknown service" 1
err_has "schema names the unknown service" "nosuch"
run --db "$DB" schema missed_bin --version 9
refused "schema of an unknown version" 1
err_has "schema names the unknown version" "version 9"
run --db "$DB" schema missed_bin --version 0
usage "schema --version 0"
run --db "$DB" schema missed_bin --version two
usage "schema --version two"
run --db "$DB" schema
usage "schema without a service"
run --db "$DB" schema a b
usage "schema with two services"
run --db "$T/none.db" schema missed_bin
refused "schema without a database (as list: storage)" 3
run --version schema missed_bin
out_has "--version before the command still prints the version" '^flow '

run --db "$DB" services
expect "services" 0
out_has "services table head" '^SERVICE  *VER  *LOADED  *SHA256  *TITLE$'
out_has "services table row" \
  '^missed_bin  *1  *[0-9T:.Z-]*  *[0-9a-f]\{12\}  *Report a missed bin collection$'
run --db "$DB" services --json
expect "services --json" 0
out_lines "services --json (one line)" 1
out_has "services --json is an array" '^\[{.*}\]$'
out_has "services --json names missed_bin" '"name":"missed_bin"'
out_has "services --json has the whole sha256" '"sha256":"[0-9a-f]\{64\}"'
out_has "services --json has version" '"version":1'
out_has "services --json has loaded_at" '"loaded_at":"'
run --db "$DB" --json services
expect "--json before services" 0
out_has "--json before services" '^\['
run --db "$DB" services extra
usage "services with an argument"
run --db "$T/none.db" services
refused "services without a database (as list: storage)" 3
run help
out_has "help lists schema" '^  schema '
out_has "help lists services" '^  services '

# ---- eval ------------------------------------------------------------------

run eval -e 'return 1 + 1'
expect "eval -e" 0
out_has "eval -e" '^2$'
run eval -e 'return { bin = "refuse", n = 3 }' --json
expect "eval a table" 0
out_has "eval a table" '"bin":"refuse"'
run eval -e 'local x = 1'
out_has "eval returning nothing" '^null$'
printf 'local t = {}\nfor i = 1, 3 do t[#t + 1] = i * i end\nreturn t\n' \
  >"$T/chunk.lua"
run eval "$T/chunk.lua"
expect "eval FILE" 0
out_has "eval FILE" '^\[1,4,9\]$'
run_in 'return "from stdin"' eval -
out_has "eval from stdin" '^"from stdin"$'
run eval -e 'error("boom")'
refused "eval a failing chunk" 1
err_has "eval error names the line" ':1:'
run eval -e 'return io.open("/etc/passwd")'
refused "eval: no io in the sandbox" 1
run eval -e 'return os.time()'
refused "eval: no os in the sandbox" 1
run eval -e 'while true do end'
refused "eval: the instruction budget stops a loop" 1
run eval "$T/no-such-chunk.lua"
refused "eval a missing file" 1
# eval never touches a database, not even a bad --db.
run --db "$T/no/such/dir/x.db" eval -e 'return true'
expect "eval ignores --db" 0

# --cpu-ms and --mem-mb set the chunk's budgets.  A kill is a refusal
# (exit 1) that names the budget, and never takes more than twice the CPU
# budget: the CPU time of the whole process is read with the shell's
# `times` (the second line: user and system time of finished children).
child_cpu_ms() {
  awk 'FNR == 2 { n = 0
         for (i = 1; i <= 2; i++) {
           split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60000 + a[2] * 1000
         }
         v[FILENAME] = n }
       END { printf "%d\n", v[ARGV[2]] - v[ARGV[1]] }' "$T/times0" "$T/times1"
}
run eval --cpu-ms 50 -e 'return 1 + 1'
expect "eval --cpu-ms" 0
out_has "eval --cpu-ms" '^2$'
times >"$T/times0"
run eval --cpu-ms 300 -e 'local a = "x" for i = 1, 20 do a = a .. a end
  local b = a .. "y" while a < b do end'
times >"$T/times1"
refused "eval --cpu-ms stops a slow loop" 1
err_has "eval --cpu-ms names the budget" 'used more than 300 ms of cpu time'
used=$(child_cpu_ms)
if [ "$used" -lt 600 ]; then pass; else
  fail "eval --cpu-ms 300 took $used ms of CPU, more than twice its budget"
fi
run eval --mem-mb 4 -e 'local t = {} while true do t[#t + 1] = {} end'
refused "eval --mem-mb stops a hog" 1
err_has "eval --mem-mb names the budget" 'used more than 4 MiB of memory'
run eval --mem-mb 64 -e 'return #string.rep("x", 40 * 1024 * 1024)'
refused "eval --mem-mb 64 is still bounded by instructions" 1
err_has "eval --mem-mb 64 and instructions" 'instructions'
run eval --cpu-ms 0 -e 'return 1'
usage "eval --cpu-ms 0"
run eval --mem-mb lots -e 'return 1'
usage "eval --mem-mb lots"
run eval --cpu-ms
usage "eval --cpu-ms without a value"

# --instructions and --log-kb set the other two budgets.
run eval --instructions 100000 -e 'local n = 0 for i = 1, 100 do n = n + i end
  return n'
expect "eval --instructions, enough" 0
out_has "eval --instructions, enough" '^5050$'
run eval --instructions 1000 -e 'while true do end'
refused "eval --instructions stops a loop" 1
err_has "eval --instructions names the budget" \
  'ran more than 1000 instructions'
run eval --instructions 100000000 -e 'return 1'
expect "eval --instructions above the default maximum" 0
run eval --log-kb 1 -e 'for i = 1, 100 do flow.log(("x"):rep(100)) end'
refused "eval --log-kb stops a chatty chunk" 1
err_has "eval --log-kb names the budget" 'more than 1 KiB of log output'
run eval --log-kb 1 -e 'flow.log("short") return 3'
expect "eval --log-kb, enough" 0
out_has "eval --log-kb, enough" '^3$'
run eval --log-kb 1 -e 'for i = 1, 100 do print(("x"):rep(100)) end'
refused "eval --log-kb counts print too" 1
run eval --instructions 0 -e 'return 1'
usage "eval --instructions 0"
err_has "eval --instructions 0 says why" "^flow: --instructions must be a whole number"
run eval --instructions lots -e 'return 1'
usage "eval --instructions lots"
run eval --instructions -5 -e 'return 1'
usage "eval --instructions -5"
run eval --instructions 10000000000000 -e 'return 1'
usage "eval --instructions too big"
run eval --log-kb 0 -e 'return 1'
usage "eval --log-kb 0"
err_has "eval --log-kb 0 says why" "^flow: --log-kb must be a whole number"
run eval --log-kb 1.5 -e 'return 1'
usage "eval --log-kb 1.5"
run eval --log-kb
usage "eval --log-kb without a value"
run help eval
out_has "help eval names --instructions" '--instructions'
out_has "help eval names --log-kb" '--log-kb'

# ---- run -------------------------------------------------------------------
#
# JSON-RPC on stdin and stdout.  Responses are found by their id; their
# order is checked once, against the order the contract promises.

RDB=$T/run.db
"$FLOW" --db "$RDB" load "$SERVICE" >/dev/null 2>&1

# resp ID: the response line with "id":ID (ID as JSON: 1, "x", null).
resp() {
  grep -e "\"id\":$1,\"jsonrpc\"" "$T/out"
}
# resp_has NAME ID REGEX: the response to ID matches REGEX.
resp_has() {
  if resp "$2" | grep -q -e "$3"; then pass; else
    fail "$1: response $2 lacks /$3/"; fi
}

cat >"$T/requests" <<'EOF'
{"jsonrpc":"2.0","id":1,"method":"open","params":{"service":"missed_bin","data":{"uprn":"100023336956","address":"12 High Street","bin":"refuse"},"actor":{"id":"web","roles":[]}}}
{"jsonrpc":"2.0","id":2,"method":"signal","params":{"case":"1","event":"assign","payload":{"crew":"north-2"},"actor":{"id":"sam","roles":["supervisor"]}}}
{"jsonrpc":"2.0","id":3,"method":"signal","params":{"case":1,"event":"assign","payload":{"crew":"x"}}}
this line is not JSON
{"jsonrpc":"2.0","id":"four","method":"frobnicate","params":{}}
{"jsonrpc":"2.0","id":5,"method":"show","params":{"case":"1"}}
{"jsonrpc":"2.0","id":6,"method":"show"}
{"jsonrpc":"2.0","id":7,"method":"history","params":{"case":"1"}}
[{"jsonrpc":"2.0","id":8,"method":"show","params":{"case":"1"}}]
{"jsonrpc":"2.0","id":9,"method":"show","params":{"case":"99"}}

{"jsonrpc":"1.0","id":10,"method":"show","params":{"case":"1"}}
{"jsonrpc":"2.0","id":11,"method":"list","params":{"where":{"bin":"refuse"},"status":"open","limit":10}}
{"jsonrpc":"2.0","id":12,"method":"timers","params":{"case":"1"}}
{"jsonrpc":"2.0","method":"signal","params":{"case":"1","event":"collect"}}
{"jsonrpc":"2.0","id":13,"method":"open","params":{"service":"missed_bin","data":{"bin":"glass"}}}
{"jsonrpc":"2.0","id":14,"method":"show","params":{"case":"1","colour":"red"}}
{"jsonrpc":"2.0","id":15,"method":"list","params":{"limit":0}}
{"jsonrpc":"2.0","id":16,"method":"open","params":{"service":"missed_bin","data":[1]}}
EOF
"$FLOW" --db "$RDB" --now 2026-11-27T09:00:00Z run <"$T/requests" \
  >"$T/out" 2>"$T/err"
rc=$?
expect "run" 0
out_lines "run: one line per request with an id, and per bad line" 17
err_lines "run: nothing on stderr" 0
if awk '!/^\{.*\}$/ { bad = 1 } END { exit bad }' "$T/out"; then pass; else
  fail "run: every line is a JSON object"; fi
resp_has "run open" 1 '"result":{.*"id":"1".*"state":"reported"'
resp_has "run signal" 2 '"result":{.*"state":"assigned"'
resp_has "run signal sees the open before it" 2 '"seq":2'
resp_has "run refused signal: code" 3 '"error":{"code":-9,'
resp_has "run refused signal: name" 3 '"data":{"name":"FLOW_EEVENT"}'
resp_has "run refused signal: message" 3 \
  "\"message\":\"case 1 is in state 'assigned'"
if grep '"code":-32700' "$T/out" | grep -q '"id":null'; then pass; else
  fail "run: a parse error is answered with id null"; fi
out_has "run: a parse error says so" '"message":"Parse error: '
resp_has "run unknown method" '"four"' '"code":-32601'
resp_has "run show (after the calls before it)" 5 \
  '"result":{.*"crew":"north-2"'
resp_has "run show without case" 6 '"code":-32602'
resp_has "run history" 7 '"result":\[{.*"event":"open".*"event":"assign"'
resp_has "run open: the actor given is recorded" 7 \
  '"actor":{"id":"web","roles":\[\]}'
out_has "run: a batch is an invalid request" \
  '"code":-32600,"message":"Invalid Request: batches'
resp_has "run show unknown case" 9 '"data":{"name":"FLOW_ENOTFOUND"}'
resp_has "run jsonrpc 1.0" 10 '"code":-32600'
resp_has "run list" 11 '"result":\[{.*"id":"1"'
resp_has "run timers" 12 \
  '"result":\[{"due_at":"2026-12-04T09:00:00Z","event":"sla_breached"'
resp_has "run open with bad data" 13 '"data":{"name":"FLOW_EDATA"}'
resp_has "run unknown parameter" 14 '"code":-32602'
resp_has "run limit 0" 15 '"code":-32602'
resp_has "run data that is not an object" 16 '"code":-32602'
# Responses come in request order.
_order=$(sed -n 's/.*"id":\([^,]*\),"jsonrpc".*/\1/p' "$T/out" | tr '\n' ' ')
[ "$_order" = '1 2 3 null "four" 5 6 7 null 9 10 11 12 13 14 15 16 ' ] &&
  pass || fail "run: responses in request order, got $_order"
# The request without an id was carried out without an answer ('collect'
# needs no role in 'assigned').
run --db "$RDB" show 1
[ "$(field state)" = closed ] && pass ||
  fail "run: a request without an id is still carried out"

# --until-idle fires what is due at --now, and only once.
printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"open","params":{"service":"missed_bin","data":{"uprn":"2","address":"1 Low Road","bin":"garden"}}}' |
  "$FLOW" --db "$RDB" --now 2026-11-27T09:00:00Z run >"$T/out" 2>"$T/err"
rc=$?
expect "run: open case 2" 0
resp_has "run: case 2" 1 '"id":"2"'
run --db "$RDB" --now 2026-11-30T09:00:00Z run --until-idle
expect "run --until-idle before anything is due" 0
out_lines "run --until-idle: nothing due yet" 0
run --db "$RDB" --now 2026-12-01T09:00:00Z run --until-idle
expect "run --until-idle" 0
out_lines "run --until-idle: a timer and its transition" 2
sed -n 1p "$T/out" |
  grep -q '^{"jsonrpc":"2.0","method":"event","params":{.*"type":"timer"' &&
  pass || fail "run --until-idle: a timer notification"
sed -n 2p "$T/out" |
  grep -q '"case":"2".*"to":"escalated","type":"transition"' &&
  pass || fail "run --until-idle: the transition it caused"
run --db "$RDB" --now 2026-12-01T09:00:00Z run --until-idle
out_lines "run --until-idle: a timer fires once" 0
run --db "$RDB" show 2
[ "$(field state)" = escalated ] && pass || fail "run: case 2 escalated"
# A plain run fires what is due while it runs, too (case 2's SLA).
run --db "$RDB" --now 2026-12-07T09:00:00Z run
expect "run fires due timers" 0
out_has "run fires due timers" '"event":"sla_breached"'

# Two `flow run --until-idle` started together on one database with 200
# due timers: each timer fires once, by one of them.
TDB=$T/two.db
run --db "$TDB" load "$SERVICE"
_i=1
while [ $_i -le 200 ]; do
  printf '{"jsonrpc":"2.0","id":%d,"method":"open","params":{"service":"missed_bin","data":{"uprn":"%d","address":"%d Mill Lane","bin":"refuse"}}}\n' \
    $_i $_i $_i
  _i=$((_i + 1))
done >"$T/opens.jsonl"
"$FLOW" --db "$TDB" --now 2026-11-27T09:00:00Z run <"$T/opens.jsonl" \
  >"$T/out" 2>"$T/err"
rc=$?
expect "two runners: 200 cases opened" 0
"$FLOW" --db "$TDB" --now 2026-12-01T12:00:00Z run --until-idle </dev/null \
  >"$T/run1" 2>"$T/err1" &
_p1=$!
"$FLOW" --db "$TDB" --now 2026-12-01T12:00:00Z run --until-idle </dev/null \
  >"$T/run2" 2>"$T/err2" &
_p2=$!
wait $_p1
_r1=$?
wait $_p2
_r2=$?
[ $_r1 = 0 ] && [ $_r2 = 0 ] && pass ||
  fail "two runners: exit $_r1 and $_r2: $(cat "$T/err1" "$T/err2")"
_fired=$(cat "$T/run1" "$T/run2" | grep -c '"type":"transition"')
[ "$_fired" = 200 ] && pass ||
  fail "two runners: $_fired transitions for 200 due timers"
run --db "$TDB" --json list --state escalated --limit 1000
_n=$(grep -o '"seq":2,' "$T/out" | awk 'END { print NR }')
[ "$_n" = 200 ] && pass ||
  fail "two runners: $_n of 200 cases escalated once (seq 2)"

# Usage and storage errors.
run --db "$RDB" run --until-idle --keep-running
usage "run --until-idle --keep-running"
run --db "$RDB" run now
usage "run with an argument"
run --db "$T/absent.db" run
refused "run on a missing database" 3

# --keep-running goes on after the end of input, until SIGTERM.  Fifos
# let the test wait for the first answer instead of sleeping.
mkfifo "$T/rin" "$T/rout"
"$FLOW" --db "$RDB" run --keep-running <"$T/rin" >"$T/rout" 2>"$T/err" &
_pid=$!
exec 3>"$T/rin" 4<"$T/rout"
echo '{"jsonrpc":"2.0","id":1,"method":"show","params":{"case":"2"}}' >&3
exec 3>&-
IFS= read -r _line <&4
case $_line in
  *'"id":1,"jsonrpc":"2.0","result":{'*) pass ;;
  *) fail "run --keep-running answers: $_line" ;;
esac
if kill -0 "$_pid" 2>/dev/null; then pass; else
  fail "run --keep-running exited at the end of its input"; fi
kill -TERM "$_pid"
wait "$_pid"
rc=$?
exec 4<&-
expect "run --keep-running stops on SIGTERM with 0" 0

# ---- actions: flow actions, run --action, action_result --------------------

ADB=$T/actions.db
"$FLOW" --db "$ADB" load "$SERVICE" >/dev/null 2>&1
FLOW_NOW=2026-11-30T09:00:00Z "$FLOW" --db "$ADB" open missed_bin \
  '{"uprn":"1","address":"1 High St","bin":"refuse","phone":"07700 900123"}' \
  >/dev/null 2>&1
FLOW_NOW=2026-11-30T09:00:00Z "$FLOW" --db "$ADB" --roles supervisor \
  signal 1 assign '{"crew":"north-2"}' >/dev/null 2>&1
run --db "$ADB" actions
expect "actions" 0
out_lines "actions: one request" 1
out_has "actions: waiting, no handler here" '"status":"waiting"'
out_has "actions: its key" '"key":"1-2-0"'
run --db "$ADB" --json actions --status waiting
out_has "actions --json: an array" '^\[{"action":"notify.sms"'
run --db "$ADB" actions --status soon
refused "actions --status soon" 1
err_has "actions --status names the statuses" 'pending, waiting, done, failed or incident'
run --db "$ADB" actions --case two
refused "actions --case two" 1
run --db "$ADB" run --action notify.sms
usage "run --action without =MODE"
run --db "$ADB" run --action notify.sms=maybe
usage "run --action NAME=maybe"
run --db "$ADB" run --action 'Not Valid=ok'
refused "run --action with a bad name" 1
err_has "run --action names the rule" 'lower-case'

# stdin: the request goes out as a notification, the answer comes back as
# a request; a second answer is refused.
run_in '{"jsonrpc":"2.0","id":1,"method":"actions","params":{"status":"pending"}}' \
  --db "$ADB" --now 2026-11-30T09:05:00Z run --until-idle \
  --action notify.sms=stdin
expect "run --action stdin" 0
out_has "run --action stdin: the request" '"method":"action","params":{.*"attempt":1,.*"key":"1-2-0","request":"1"}'
resp_has "run --action stdin: pending until answered" 1 '"status":"pending"'
printf '%s\n' \
  '{"jsonrpc":"2.0","id":2,"method":"action_result","params":{"request":"1","result":{"id":"sms-81"}}}' \
  '{"jsonrpc":"2.0","id":3,"method":"action_result","params":{"request":"1"}}' \
  '{"jsonrpc":"2.0","id":4,"method":"action_failed","params":{"request":"9"}}' \
  '{"jsonrpc":"2.0","id":5,"method":"action_result","params":{"request":"1","result":[1]}}' \
  '{"jsonrpc":"2.0","id":6,"method":"actions","params":{"case":"1","status":"done"}}' |
  "$FLOW" --db "$ADB" --now 2026-11-30T09:06:00Z run >"$T/out" 2>"$T/err"
rc=$?
expect "action_result" 0
resp_has "action_result: taken" 2 '"result":true'
resp_has "action_result: a second answer" 3 'FLOW_ECONFLICT'
resp_has "action_failed: no such request" 4 'FLOW_ENOTFOUND'
resp_has "action_result: result must be an object" 5 '-32602'
resp_has "actions: done, with its result" 6 '"result":{"id":"sms-81"},"status":"done"'
out_has "action_result: the event" '"type":"action_completed"'

# ok and fail answer at once; fail without a fail event is an incident.
FLOW_NOW=2026-11-30T10:00:00Z "$FLOW" --db "$ADB" open missed_bin \
  '{"uprn":"2","address":"2 High St","bin":"refuse","phone":"07700 900124"}' \
  >/dev/null 2>&1
FLOW_NOW=2026-11-30T10:00:00Z "$FLOW" --db "$ADB" --roles supervisor \
  signal 2 assign '{"crew":"north-2"}' >/dev/null 2>&1
run --db "$ADB" --now 2026-11-30T10:01:00Z run --until-idle \
  --action notify.sms=fail
expect "run --action fail" 0
out_has "run --action fail: an incident" '"type":"incident"'
run --db "$ADB" actions --status incident
out_has "actions: the incident says why" 'failed by flow run --action notify.sms=fail (the script named no fail event)'

# ---- tasks, messages, incidents ---------------------------------------------
#
# examples/services/bulky_waste.lua: the message payment_received finds
# its case by payment_ref and books it; booking makes the task "collect"
# for team crews, whose completion (form: outcome collected|not_out,
# required) closes the case.  Every command runs at a fixed clock.

BULKY=$SRC/examples/services/bulky_waste.lua
KDB=$T/tasks.db
FLOW_NOW=2026-11-27T09:00:00Z
export FLOW_NOW

for _w in tasks claim release complete cancel send messages incidents retry \
  dismiss; do
  run --help
  out_has "--help lists $_w" "^  $_w  *[^ ]"
  run help "$_w"
  expect "help $_w" 0
  out_has "help $_w: its usage" "^Usage: flow $_w"
done
run help send
out_has "help send: the synopsis" \
  '^Usage: flow send MESSAGE KEY \[PAYLOAD\] \[--ttl DURATION\]$'
run --help
out_has "--help: send shows its arguments" '^  send  *MESSAGE KEY \[PAYLOAD\] '

run --db "$KDB" load "$BULKY"
expect "load bulky_waste" 0
run --db "$KDB" tasks
expect "tasks: none yet" 0
out_lines "tasks: none yet" 0
run --db "$KDB" open bulky_waste \
  '{"uprn":"100023336961","items":3,"payment_ref":"PAY-1"}'
expect "open a booking" 0
[ "$(field state)" = awaiting_payment ] && pass ||
  fail "open a booking: awaiting_payment"
run --db "$KDB" send payment_received PAY-1 '{"amount":3500}'
expect "send to an open case" 0
out_lines "send: one line" 1
out_has "send: delivered to case 1" '"case":"1",.*"status":"delivered"'
run --db "$KDB" show 1
[ "$(field state)" = booked ] && pass || fail "send: the case is booked"

run --db "$KDB" tasks
expect "tasks" 0
out_lines "tasks: one task" 1
out_has "tasks: the collection for the crews" \
  '"id":"1","name":"collect",.*"status":"open","team":"crews"'
out_has "tasks: due 3 working days on" '"due_at":"2026-12-02T09:00:00Z"'
run --db "$KDB" --json tasks --team crews --status open --case 1
out_has "tasks --json: an array" '^\[{.*"id":"1".*}\]$'
out_lines "tasks --json: one line" 1
run --db "$KDB" tasks --team highways
out_lines "tasks --team: another team's" 0
run --db "$KDB" --now 2026-12-02T10:00:00Z tasks --overdue
out_has "tasks --overdue by --now" '"overdue":true'
run --db "$KDB" tasks --overdue
out_lines "tasks --overdue: not yet" 0
run --db "$KDB" tasks --status soon
refused "tasks --status soon" 1
err_has "tasks --status names the statuses" 'open, claimed, done or cancelled'
run --db "$KDB" tasks --case two
refused "tasks --case two" 1
run --db "$KDB" tasks --frob
usage "tasks --frob"

# Unknown and malformed task ids.
for _w in claim release cancel complete; do
  run --db "$KDB" "$_w" 99
  refused "$_w an unknown task" 1
  err_has "$_w an unknown task: says so" 'no task 99'
  run --db "$KDB" "$_w" seven
  refused "$_w a malformed task id" 1
done
run --db "$KDB" claim
usage "claim without a task"
run --db "$KDB" claim 1 2
usage "claim with two tasks"

# The claim race: the second person is refused and told who has it.
run --db "$KDB" --actor ann claim 1
expect "claim" 0
out_lines "claim: one line" 1
out_has "claim: the new status" '^{"status":"claimed","task":"1"}$'
run --db "$KDB" --actor bob claim 1
refused "claim a task someone else holds" 1
err_has "claim race: names who holds it" 'claimed by ann'
run --db "$KDB" --actor ann claim 1
expect "claim a task one holds already" 0
run --db "$KDB" --actor bob release 1
refused "release someone else's task" 1
run --db "$KDB" --actor bob complete 1 '{"outcome":"collected"}'
refused "complete someone else's task" 1
err_has "complete someone else's: names who holds it" 'claimed by ann'
run --db "$KDB" tasks --assignee ann --status claimed
out_lines "tasks --assignee: claimed by ann" 1

# Outcomes the form refuses change nothing.
run --db "$KDB" --actor ann complete 1 '{"outcome":"taken","note":3}'
refused "complete with a bad outcome" 1
err_has "bad outcome names the field" 'outcome: must be one of collected, not_out'
err_has "bad outcome names every field" 'note: '
run --db "$KDB" --actor ann complete 1 '{}'
refused "complete without the required outcome" 1
err_has "missing outcome names it" 'outcome: is required'
run --db "$KDB" --actor ann complete 1 '{"outcome": '
refused "complete with malformed JSON" 1
run --db "$KDB" --actor ann complete 1 @"$T/no-such-outcome.json"
refused "complete with a missing @FILE" 1
run --db "$KDB" show 1
[ "$(field seq)" = 2 ] && pass || fail "refused completions change nothing"
run --db "$KDB" tasks --status claimed
out_lines "refused completions: still claimed" 1

run_in '{"outcome":"collected","note":"a sofa"}' --db "$KDB" --actor ann \
  complete 1 -
expect "complete (outcome on stdin)" 0
is_case "complete"
[ "$(field state)" = closed ] && pass || fail "complete: the case closed"
out_has "complete: the done event's handler ran" '"outcome":"collected"'
run --db "$KDB" tasks --status done
out_has "tasks: done, with outcome and who" \
  '"finished_by":"ann",.*"outcome":{"note":"a sofa","outcome":"collected"}'
run --db "$KDB" --actor ann complete 1 '{"outcome":"collected"}'
refused "complete a done task" 1
err_has "complete a done task: says so" 'done already'
run --db "$KDB" history 1
sed -n 3p "$T/out" | grep -q '"id":"ann".*"event":"collection_done"' &&
  pass || fail "history: the task's done event, by the one who completed it"

# A cancelled task cannot be completed, claimed or cancelled again.
run --db "$KDB" open bulky_waste \
  '{"uprn":"100023336962","items":1,"payment_ref":"PAY-2"}'
run --db "$KDB" send payment_received PAY-2 '{"amount":1500}'
run --db "$KDB" tasks --case 2
out_has "second booking: task 2" '"id":"2",.*"status":"open"'
run --db "$KDB" --actor priya cancel 2
expect "cancel" 0
out_has "cancel: the new status" '^{"status":"cancelled","task":"2"}$'
run --db "$KDB" --actor ann complete 2 '{"outcome":"collected"}'
refused "complete a cancelled task" 1
err_has "complete a cancelled task: says so" 'cancelled'
run --db "$KDB" --actor ann claim 2
refused "claim a cancelled task" 1
run --db "$KDB" cancel 2
refused "cancel a cancelled task" 1
run --db "$KDB" show 2
[ "$(field state)" = booked ] && pass ||
  fail "cancelling a task sends no event"

# send: refusals keep nothing; --ttl.
run --db "$KDB" messages
expect "messages" 0
out_lines "messages: two delivered" 2
cp "$T/out" "$T/messages0"
run --db "$KDB" send payment_received PAY-3 '{"amount": '
refused "send with a malformed payload" 1
err_has "send with a malformed payload: says so" 'not valid JSON'
run --db "$KDB" send payment_received PAY-3 '[1]'
refused "send with a payload that is not an object" 1
run --db "$KDB" send Payment PAY-3
refused "send with a bad message name" 1
run --db "$KDB" send payment_received ''
refused "send with an empty key" 1
run --db "$KDB" send payment_received PAY-3 --ttl 2days
usage "send --ttl 2days"
err_has "send --ttl 2days: says how" "cannot read '2days' as a duration"
run --db "$KDB" send payment_received PAY-3 --ttl 0h
usage "send --ttl 0h"
run --db "$KDB" send payment_received PAY-3 --ttl 99999999999w
usage "send --ttl beyond any number"
run --db "$KDB" send payment_received PAY-3 --ttl 367d
refused "send --ttl over 366 days" 1
run --db "$KDB" send payment_received
usage "send without a key"
run --db "$KDB" messages
cmp -s "$T/out" "$T/messages0" && pass ||
  fail "refused sends keep no message"

run --db "$KDB" send payment_received PAY-3 '{"amount":900}' --ttl 90s
expect "send with no case yet" 0
out_has "send: buffered" '"case":null,.*"status":"buffered"'
out_has "send --ttl 90s" '"expires_at":"2026-11-27T09:01:30Z"'
run --db "$KDB" send payment_received PAY-4 --ttl=2w
out_has "send --ttl=2w, no payload" \
  '"expires_at":"2026-12-11T09:00:00Z",.*"payload":{},'
run --db "$KDB" messages --status buffered
out_lines "messages --status buffered" 2
run --db "$KDB" --json messages --key PAY-3 --name payment_received
out_has "messages --json --key" '^\[{.*"key":"PAY-3".*}\]$'
run --db "$KDB" messages --status lost
refused "messages --status lost" 1
run --db "$KDB" --now 2026-11-27T09:05:00Z run --until-idle
out_has "run: a message expires" '"key":"PAY-3",.*"type":"message_expired"'
run --db "$KDB" messages --status expired
out_lines "messages --status expired" 1

# A message the case refuses: an incident, retried in vain, dismissed.
run --db "$KDB" send payment_received PAY-2 '{"amount":1500}'
expect "send a duplicate notice" 0
out_has "send: the case refused it" '"incident":"1",.*"status":"incident"'
run --db "$KDB" incidents
expect "incidents" 0
out_lines "incidents: one" 1
out_has "incidents: why" '"code":"FLOW_EEVENT",.*"source":"message",.*"status":"open"'
run --db "$KDB" --json incidents --case 2 --status open
out_has "incidents --json" '^\[{.*"id":"1".*}\]$'
run --db "$KDB" incidents --status shut
refused "incidents --status shut" 1
run --db "$KDB" retry 1
refused "retry: refused again" 1
err_has "retry: the case's refusal" "does not accept 'payment_received'"
run --db "$KDB" incidents --status open
out_has "retry: still open, attempts counted" '"attempts":2,'
run --db "$KDB" retry 99
refused "retry an unknown incident" 1
run --db "$KDB" dismiss one
refused "dismiss a malformed incident id" 1
run --db "$KDB" --actor priya dismiss 1
expect "dismiss" 0
out_has "dismiss: the new status" '^{"incident":"1","status":"dismissed"}$'
run --db "$KDB" dismiss 1
refused "dismiss twice" 1
run --db "$KDB" retry 1
refused "retry a dismissed incident" 1
run --db "$KDB" incidents --status dismissed
out_has "incidents: dismissed by" '"finished_by":"priya"'
run --db "$KDB" messages --status dismissed
out_lines "dismiss: its message is dismissed" 1

# A task past its due time is told as flow run fires its timer.
run --db "$KDB" open bulky_waste \
  '{"uprn":"100023336963","items":2,"payment_ref":"PAY-5"}'
run --db "$KDB" send payment_received PAY-5 '{"amount":1000}'
run --db "$KDB" --now 2026-12-03T09:00:00Z run --until-idle
expect "run: a task falls due" 0
out_has "run: task_overdue notification" \
  '"method":"event","params":{.*"task":"3",.*"type":"task_overdue"}'

# A retry that works: the case refused a message until it was ready.
cat >"$T/gate.lua" <<'EOF'
return {
  name = "gate",
  version = 1,
  fields = { ref = { type = "string" }, ready = { type = "boolean" } },
  correlate = { result_ready = "ref" },
  initial = "waiting",
  states = {
    waiting = {
      on = {
        ready = function(case) case.data.ready = true end,
        result_ready = function(case, ev)
          if not case.data.ready then flow.fail("not ready for results yet") end
          return "done"
        end,
      },
    },
    done = { final = true },
  },
}
EOF
GDB=$T/gate.db
"$FLOW" --db "$GDB" load "$T/gate.lua" >/dev/null 2>&1
"$FLOW" --db "$GDB" open gate '{"ref":"R1"}' >/dev/null 2>&1
run --db "$GDB" send result_ready R1
out_has "send: refused by the script" '"incident":"1",.*"status":"incident"'
run --db "$GDB" incidents
out_has "incidents: the script's reason, and where" '"code":"FLOW_EREFUSED","error":"'"$T"'/gate.lua:12: flow.fail: not ready for results yet"'
run --db "$GDB" retry 1
refused "retry before the case is ready" 1
err_has "retry: the script's reason" 'not ready for results yet'
"$FLOW" --db "$GDB" signal 1 ready >/dev/null 2>&1
printf '%s\n' \
  '{"jsonrpc":"2.0","id":1,"method":"retry","params":{"incident":"1","actor":{"id":"kim"}}}' \
  '{"jsonrpc":"2.0","id":2,"method":"incidents","params":{"status":"resolved"}}' |
  "$FLOW" --db "$GDB" run >"$T/out" 2>"$T/err"
rc=$?
expect "run retry" 0
resp_has "run retry: the case" 1 '"result":{.*"state":"done","status":"closed"'
resp_has "run retry: resolved" 2 '"attempts":2,.*"finished_by":"kim",.*"status":"resolved"'
out_has "run: incident_resolved notification" \
  '"by":"kim",.*"source":"message","type":"incident_resolved"'
run --db "$GDB" retry 1
refused "retry a resolved incident" 1
run --db "$GDB" messages
out_has "a retried message is delivered" '"status":"delivered"'

# JSON-RPC: the same words as methods, and their notifications.
JDB=$T/tasks-rpc.db
"$FLOW" --db "$JDB" load "$BULKY" >/dev/null 2>&1
cat >"$T/requests" <<'EOF'
{"jsonrpc":"2.0","id":1,"method":"send","params":{"message":"payment_received","key":"PAY-9","payload":{"amount":1500},"ttl":"2h"}}
{"jsonrpc":"2.0","id":2,"method":"open","params":{"service":"bulky_waste","data":{"uprn":"1","items":2,"payment_ref":"PAY-9"}}}
{"jsonrpc":"2.0","id":3,"method":"show","params":{"case":"1"}}
{"jsonrpc":"2.0","id":4,"method":"tasks","params":{"team":"crews","status":"open","overdue":false}}
{"jsonrpc":"2.0","id":5,"method":"claim","params":{"task":1,"actor":{"id":"ann"}}}
{"jsonrpc":"2.0","id":6,"method":"claim","params":{"task":"1","actor":{"id":"bob"}}}
{"jsonrpc":"2.0","id":7,"method":"complete","params":{"task":"1","outcome":{"outcome":"gone"},"actor":{"id":"ann"}}}
{"jsonrpc":"2.0","id":8,"method":"complete","params":{"task":"1","outcome":{"outcome":"collected"},"actor":{"id":"ann"}}}
{"jsonrpc":"2.0","id":9,"method":"messages","params":{"key":"PAY-9"}}
{"jsonrpc":"2.0","id":10,"method":"send","params":{"message":"payment_received","key":"PAY-10","ttl":"soon"}}
{"jsonrpc":"2.0","id":11,"method":"incidents","params":{"status":"open"}}
{"jsonrpc":"2.0","id":12,"method":"release","params":{"task":"1","actor":{"id":"ann"}}}
{"jsonrpc":"2.0","id":13,"method":"cancel","params":{"task":"9"}}
{"jsonrpc":"2.0","id":14,"method":"retry","params":{"incident":"1"}}
{"jsonrpc":"2.0","id":15,"method":"dismiss","params":{}}
{"jsonrpc":"2.0","id":16,"method":"complete","params":{"task":"1","outcome":[1]}}
{"jsonrpc":"2.0","id":17,"method":"send","params":{"message":"payment_received","key":10,"payload":{"amount":5}}}
{"jsonrpc":"2.0","id":18,"method":"tasks","params":{"status":"done","colour":"red"}}
EOF
"$FLOW" --db "$JDB" --now 2026-11-27T09:00:00Z run <"$T/requests" \
  >"$T/out" 2>"$T/err"
rc=$?
expect "run: tasks and messages" 0
err_lines "run: tasks and messages: nothing on stderr" 0
if awk '!/^\{.*\}$/ { bad = 1 } END { exit bad }' "$T/out"; then pass; else
  fail "run: tasks and messages: every line is a JSON object"; fi
resp_has "run send: buffered" 1 '"result":{.*"expires_at":"2026-11-27T11:00:00Z",.*"status":"buffered"'
resp_has "run open" 2 '"result":{.*"id":"1"'
resp_has "run show: the message booked it" 3 '"state":"booked"'
resp_has "run tasks" 4 '"result":\[{.*"id":"1","name":"collect",.*"status":"open"'
resp_has "run claim" 5 '"result":{"status":"claimed","task":"1"}'
resp_has "run claim race" 6 '"data":{"name":"FLOW_ECONFLICT"},"message":"task 1 is claimed by ann'
resp_has "run complete: bad outcome" 7 '"data":{"name":"FLOW_EDATA"}'
resp_has "run complete" 8 '"result":{.*"state":"closed","status":"closed"'
resp_has "run messages" 9 '"result":\[{"case":"1",.*"status":"delivered"}\]'
resp_has "run send: bad ttl" 10 '"code":-32602,"message":"Invalid params: .ttl'
resp_has "run incidents: none" 11 '"result":\[\]'
resp_has "run release a done task" 12 'FLOW_ECONFLICT'
resp_has "run cancel an unknown task" 13 'FLOW_ENOTFOUND'
resp_has "run retry an unknown incident" 14 'FLOW_ENOTFOUND'
resp_has "run dismiss without an incident" 15 '"code":-32602'
resp_has "run complete: outcome not an object" 16 '"code":-32602'
resp_has "run send: a number as key" 17 '"key":"10",.*"status":"buffered"'
resp_has "run tasks: unknown parameter" 18 '"code":-32602'
out_has "run: message_buffered notification" \
  '^{"jsonrpc":"2.0","method":"event","params":{.*"key":"PAY-9",.*"type":"message_buffered"}}$'
out_has "run: task_claimed notification" \
  '"method":"event","params":{.*"by":"ann",.*"task":"1",.*"type":"task_claimed"}'
out_has "run: task_completed notification" \
  '"method":"event","params":{.*"by":"ann",.*"type":"task_completed"}'
out_has "run: the done event's transition" \
  '"cause":"task",.*"to":"closed","type":"transition"'
# A notification comes after the answers before its request, and just
# before its own.
_claimed=$(grep -n '"type":"task_claimed"' "$T/out" | cut -d: -f1)
_r4=$(grep -n '"id":4,"jsonrpc"' "$T/out" | cut -d: -f1)
_r5=$(grep -n '"id":5,"jsonrpc"' "$T/out" | cut -d: -f1)
[ -n "$_claimed" ] && [ -n "$_r4" ] && [ "$_r4" -lt "$_claimed" ] &&
  [ "$((_claimed + 1))" = "$_r5" ] && pass ||
  fail "run: task_claimed between answers 4 and 5 (lines $_r4, $_claimed, $_r5)"
_order=$(sed -n 's/.*"id":\([^,]*\),"jsonrpc".*/\1/p' "$T/out" | tr '\n' ' ')
[ "$_order" = '1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 ' ] &&
  pass || fail "run: tasks and messages: answers in order, got $_order"

# An incident over JSON-RPC: its notification, retry, dismiss.
printf '%s\n' \
  '{"jsonrpc":"2.0","id":1,"method":"open","params":{"service":"bulky_waste","data":{"uprn":"2","items":1,"payment_ref":"PAY-11"}}}' \
  '{"jsonrpc":"2.0","id":2,"method":"send","params":{"message":"payment_received","key":"PAY-11","payload":{"amount":-5}}}' \
  '{"jsonrpc":"2.0","id":3,"method":"incidents","params":{"case":2}}' \
  '{"jsonrpc":"2.0","id":4,"method":"retry","params":{"incident":1}}' \
  '{"jsonrpc":"2.0","id":5,"method":"dismiss","params":{"incident":"1","actor":{"id":"priya"}}}' |
  "$FLOW" --db "$JDB" --now 2026-11-27T10:00:00Z run >"$T/out" 2>"$T/err"
rc=$?
expect "run: an incident" 0
resp_has "run send: refused by the case" 2 '"incident":"1",.*"status":"incident"'
out_has "run: incident notification" \
  '"method":"event","params":{.*"error":"FLOW_EDATA",.*"source":"message",.*"type":"incident"}'
resp_has "run incidents" 3 '"result":\[{.*"code":"FLOW_EDATA",.*"status":"open"'
resp_has "run retry: refused again" 4 '"data":{"name":"FLOW_EDATA"}'
resp_has "run dismiss" 5 '"result":{"incident":"1","status":"dismissed"}'
out_has "run: incident_dismissed notification" \
  '"by":"priya",.*"type":"incident_dismissed"'
unset FLOW_NOW

# ---- test, check --strict, graph -------------------------------------------
#
# flow test over a directory holding one passing, one failing and one
# runaway test: exit codes, the readable summary, TAP and JUnit (the XML
# checked against tests/cli/junit.xsd with xmllint).

mkdir "$T/tt" "$T/tt/sub"
cp "$SERVICE" "$T/tt/missed_bin.lua"
cat >"$T/tt/good_test.lua" <<'EOF'
load("missed_bin.lua")
test("opens", function()
  local c = open("missed_bin", { uprn = "1", address = "1 Road", bin = "refuse" })
  c:expect_state("reported")
end)
EOF
cat >"$T/tt/sub/bad_test.lua" <<'EOF'
load("../missed_bin.lua")
test("wrong state", function()
  local c = open("missed_bin", { uprn = "1", address = "1 Road", bin = "refuse" })
  c:expect_state("closed")
end)
test("loops & <hangs>", function() while true do end end)
EOF
run test "$T/tt/good_test.lua"
expect "test: all pass" 0
out_has "test: a line per test" '^  ✓ opens$'
if [ "$(tail -n 1 "$T/out")" = "1 passed, 0 failed" ]; then pass; else
  fail "test: the summary is the last line"; fi
run test "$T/tt"
expect "test: a failure exits 1" 1
out_has "test: files found recursively, in order" "^$T/tt/good_test.lua\$"
out_has "test: the failing test" '^  ✗ wrong state$'
out_has "test: where and what" "^    $T/tt/sub/bad_test.lua:4: expect_state: case 1 should be in state 'closed', but it is in 'reported'\$"
out_has "test: the history" '^      1 2026-02-02T09:00:00Z open: (opened) -> reported (tester)$'
out_has "test: the runaway test" "^    $T/tt/sub/bad_test.lua:6: error: budget exceeded: the test 'loops & <hangs>' ran more than 10000000 instructions"
if [ "$(tail -n 1 "$T/out")" = "1 passed, 2 failed" ]; then pass; else
  fail "test: summary counts failures and errors"; fi
run test "$T/tt" --filter opens
expect "test --filter" 0
out_lacks "test --filter runs only matching tests" 'wrong state'
run test "$T/tt" --tap --junit "$T/report.xml"
expect "test --tap exit" 1
if [ "$(head -n 1 "$T/out")" = "TAP version 14" ]; then pass; else
  fail "test --tap: version line"; fi
out_has "test --tap: ok" '^ok 1 - .*good_test.lua: opens$'
out_has "test --tap: not ok" '^not ok 2 - .*bad_test.lua: wrong state$'
out_has "test --tap: YAML" "^  message: \"expect_state: case 1 should be in state 'closed', but it is in 'reported'\"\$"
out_has "test --tap: YAML severity" '^  severity: error$'
out_has "test --tap: plan" '^1\.\.3$'
out_has "test --tap: summary" '^# 1 passed, 2 failed$'
if [ -s "$T/report.xml" ]; then pass; else fail "test --junit wrote nothing"; fi
grep -q '<testsuite name="[^"]*bad_test.lua" tests="2" failures="1" errors="1"' \
  "$T/report.xml" && pass || fail "junit: counts per file"
grep -q '<testcase name="loops &amp; &lt;hangs&gt;"' "$T/report.xml" && pass ||
  fail "junit: names are escaped"
grep -q '<failure message="expect_state: ' "$T/report.xml" && pass ||
  fail "junit: a failure element"
if command -v xmllint >/dev/null 2>&1; then
  if xmllint --noout --schema "$SRC/tests/cli/junit.xsd" "$T/report.xml" \
    >"$T/xmllint" 2>&1; then pass; else
    fail "junit: does not validate against junit.xsd: $(cat "$T/xmllint")"; fi
else
  echo "note: xmllint not installed (apt-get install libxml2-utils): JUnit XML not validated"
fi
run test "$T/no-such-dir"
refused "test on a missing path" 1
mkdir "$T/empty"
run test "$T/empty"
refused "test with no test files" 1
run test --coverage "$T/tt/good_test.lua"
out_has "test --coverage" '^coverage of missed_bin: 1/5 states entered (20%), 0/8 transitions fired (0%)$'
out_has "test --coverage: never fired" '^  never fired: .*reported.after 2 working days'

cat >"$T/lint.lua" <<'EOF'
return {
  name = "lint",
  version = 1,
  initial = "a",
  states = {
    a = { on = { go = "b" } },
    b = { title = "B" },
    c = { final = true },
  },
}
EOF
run check "$T/lint.lua"
expect "check: warnings exit 0" 0
err_has "check: stuck state" "lint\.lua:7: warning: state 'b' is not final"
err_has "check: unreachable state" "lint\.lua:8: warning: state 'c' cannot be reached"
out_lines "check: no ok with warnings" 0
run check --strict "$T/lint.lua"
expect "check --strict: warnings exit 1" 1
run check --strict "$SERVICE"
expect "check --strict: a clean script" 0

# Events the engine sends: a timer's event the state does not take, and
# engine events a person could send.
cat >"$T/lint2.lua" <<'EOF'
return {
  name = "lint2", version = 1, initial = "a",
  fields = { ref = { type = "string" }, other = { type = "string" } },
  correlate = { paid = "ref", lost = "other" },
  states = {
    a = { after = { ["1h"] = { event = "poke" } },
          on = { paid = "b", poke = "a" } },
    b = { after = { ["2h"] = { event = "nudge" } },
          on = { nudge = { to = "c", internal = true },
                 x = "c" } },
    c = { final = true },
  },
}
EOF
run check "$T/lint2.lua"
expect "check: engine-event warnings exit 0" 0
err_has "check: a timer's event not internal" "lint2\.lua:7: warning: 'poke' in state 'a' comes from its timer; mark it .internal = true."
err_has "check: a correlated message not internal" "lint2\.lua:7: warning: 'paid' in state 'a' is a correlated message; mark it .internal = true."
err_has "check: a correlated message no state takes" "lint2\.lua:4: warning: correlate names message 'lost', which no state takes"
if grep -q "'nudge' in state 'b'" "$T/err"; then
  fail "check: an internal timer event is fine: stderr has a warning for it"
else pass; fi

# A short script with a table of timers shared by 900 states: millions of
# warnings once, now at most 200 and a count, the same on every run.
cat >"$T/flood.lua" <<'EOF'
local a = {}
for i = 1, 64 do a[i .. 'h'] = 'z' end
local s = { z = { final = true } }
for i = 1, 900 do s['s' .. i] = { after = a } end
return { name = 'flood', version = 1, initial = 's1', states = s }
EOF
run check "$T/flood.lua"
expect "check: a flood of warnings" 0
err_lines "check: warnings capped" 201
err_has "check: the rest counted" 'more warnings like these are not shown'
cp "$T/err" "$T/flood1"
run check "$T/flood.lua"
cmp -s "$T/err" "$T/flood1" && pass || fail "check: the same warnings twice"
# More problems than a report keeps: the same ones in every process,
# whatever order Lua's seeded tables gave them in.
cat >"$T/many.lua" <<'EOF'
local s = { z = { final = true } }
for i = 1, 900 do s['s' .. i] = { on = { go = 'nowhere', back = 'gone' } } end
return { name = 'many', version = 1, initial = 'z', states = s }
EOF
run check "$T/many.lua"
expect "check: 1800 problems" 1
err_has "check: problems counted" 'more problems'
cp "$T/err" "$T/many1"
run check "$T/many.lua"
cmp -s "$T/err" "$T/many1" && pass || fail "check: the same problems twice"

run graph "$SERVICE"
expect "graph" 0
out_has "graph: DOT" '^digraph "missed_bin" {$'
out_has "graph: final state" '"closed" \[shape=doublecircle'
out_has "graph: roles" 'label="collect \[supervisor\]"'
out_has "graph: timers" 'label="after 2 working days"'
run graph --format mermaid "$SERVICE"
expect "graph --format mermaid" 0
out_has "graph: mermaid" '^stateDiagram-v2$'
out_has "graph: mermaid end" '^  closed --> \[\*\]$'
# A handler's dashed edges come from its code's `return "state"`, read with
# the loader's tokenizer: not from comments or strings, and long-bracket
# strings count.
cat >"$T/returns.lua" <<'LUA'
return {
  name = "returns", version = 1, initial = "new",
  states = {
    new = { on = { decide = function(case, ev)
      -- return "gone"
      local s = "return 'lost'"
      if ev.quick then return [[fast]] end
      return "slow"
    end } },
    fast = { final = true }, slow = { final = true },
    gone = { final = true }, lost = { final = true },
  },
}
LUA
run graph "$T/returns.lua"
expect "graph of handler returns" 0
out_has "graph: a returned string" '"new" -> "slow" .*dashed'
out_has "graph: a returned long string" '"new" -> "fast" .*dashed'
out_lacks "graph: a return in a comment" '"new" -> "gone"'
out_lacks "graph: a return in a string" '"new" -> "lost"'
run graph "$T/syntax.lua"
expect "graph of a bad script" 1
if command -v dot >/dev/null 2>&1; then
  run graph "$SERVICE" --svg "$T/bins.svg"
  expect "graph --svg" 0
  grep -q '<svg' "$T/bins.svg" && pass || fail "graph --svg wrote no SVG"
  if "$FLOW" graph "$SERVICE" | dot -Tsvg >"$T/bins2.svg" 2>"$T/err"; then
    pass; else fail "dot cannot render flow graph's output"; fi
  if "$FLOW" graph "$SRC/docs/examples/bulky.lua" | dot -Tsvg >/dev/null 2>"$T/err"; then
    pass; else fail "dot cannot render the bulky example"; fi
else
  echo "note: Graphviz not installed (apt-get install graphviz): DOT output not rendered"
fi
# Without dot on the PATH, --svg says how to get it.
(PATH=/nonexistent; "$FLOW" graph "$SERVICE" --svg "$T/x.svg") \
  >"$T/out" 2>"$T/err" </dev/null
rc=$?
refused "graph --svg without Graphviz" 1
err_has "graph --svg names the package" 'apt-get install graphviz'

# ---- issue 14 items 6 and 8: check's event warnings, graph marks, ----------
# ---- and flow test --verbose (expect_timers: tests/api/check_testrunner.c) -

cat >"$T/kept.lua" <<'EOF2'
return {
  name = "kept", version = 1, initial = "reported",
  states = {
    reported = { on = { assign = function(case, ev)
      flow.at("2026-12-24T12:00:00Z", "check", {}, { keep = true })
      flow.after("1d", "chase")
      flow.call("notify.sms", {}, { reply = "sms_sent" })
      return "assigned"
    end } },
    assigned = { on = { visit = "waiting", chase = "assigned",
                        check = { to = "closed", internal = true } } },
    waiting = { on = { done = "closed",
                       remind = function(case, ev) end,
                       ping = { to = "closed", internal = true } } },
    closed = { final = true },
  },
}
EOF2
run check "$T/kept.lua"
expect "check: event warnings exit 0" 0
err_has "check: a kept timer's event a reachable state does not take" \
  "kept\.lua:5: warning: flow\.at sets a kept timer for 'check' (keep = true), but state 'waiting', which a case can reach after it is set, does not take 'check'"
err_has "check: a timer's event a person could send" \
  "kept\.lua:10: warning: 'chase' in state 'assigned' comes from a timer set with flow\.after (line 6); mark it .internal = true."
err_has "check: a reply no state takes" \
  "kept\.lua:7: warning: flow\.call's reply event 'sms_sent' is taken by no state"
err_has "check: an internal event nothing sends" \
  "kept\.lua:14: warning: 'ping' in state 'waiting' is internal = true, but nothing in the service sends it"
if grep -q "sets a timer for 'chase'" "$T/err"; then
  fail "check: chase fires in assigned, which takes it: no warning"
else pass; fi
# The repository's own services and the docs' examples are clean
# (streetlight.lua is the docs' example of warnings).
for _f in "$SRC"/examples/services/*.lua "$SRC"/docs/examples/*.lua; do
  case $_f in *_test.lua | */streetlight.lua) continue ;; esac
  run check "$_f"
  if [ "$rc" = 0 ] && [ ! -s "$T/err" ]; then pass; else
    fail "check: ${_f#"$SRC"/} has warnings"; fi
done

run graph "$T/kept.lua"
expect "graph: marks" 0
out_has "graph: a handler that stays is a loop" '^  "waiting" -> "waiting" \[label="remind", style=dashed\];$'
out_has "graph: an internal event" '^  "assigned" -> "closed" \[label="check (internal)", color=gray45, fontcolor=gray45\];$'
out_has "graph: other edges unchanged" '^  "waiting" -> "closed" \[label="done"\];$'
run graph --format mermaid "$T/kept.lua"
out_has "graph --format mermaid: a loop" '^  waiting --> waiting: remind (handler)$'
out_has "graph --format mermaid: internal" '^  assigned --> closed: check (internal)$'

mkdir "$T/tv"
cp "$SERVICE" "$T/tv/missed_bin.lua"
cat >"$T/tv/chatty_test.lua" <<'EOF2'
load("missed_bin.lua")
test("talks", function()
  print("hello from the test")
  open("missed_bin", { uprn = "1", address = "1 Road", bin = "refuse" })
end)
test("quiet", function() end)
test("talks and fails", function()
  print("before the failure")
  error("boom")
end)
EOF2
run test "$T/tv/chatty_test.lua"
out_lacks "test: a passing test's output is not shown" 'hello from the test'
out_has "test: a failing test's output is shown" '^      before the failure$'
run test --verbose "$T/tv/chatty_test.lua"
out_has "test --verbose: the output under its test" '^  ✓ talks$'
if awk '/^  ✓ talks$/ { getline a; getline b; exit !(a == "    output:" && b == "      hello from the test") }' "$T/out"; then
  pass; else fail "test --verbose: output indented right under the test"; fi
if awk '/^  ✓ quiet$/ { getline a; exit (a ~ /output/) }' "$T/out"; then
  pass; else fail "test --verbose: a quiet test has no output block"; fi
run test --verbose --tap "$T/tv/chatty_test.lua"
if awk '/^ok 1 - / { getline a; getline b; exit !(a == "# output:" && b == "#   hello from the test") }' "$T/out"; then
  pass; else fail "test --verbose --tap: output as comments after the test"; fi
run test --tap "$T/tv/chatty_test.lua"
out_lacks "test --tap: no output without --verbose" 'hello from the test'

# The example files of docs/testing.md are kept in docs/examples/: each
# must be exactly what the page shows.
for _f in "$SRC"/docs/examples/*; do
  _name=${_f##*/}
  awk -v name="$_name" '
    $0 == "<!-- file: " name " -->" { want = 1; next }
    want && /^```/ { if (inblock) exit; inblock = 1; next }
    want && inblock { print }
  ' "$SRC/docs/testing.md" >"$T/docfile"
  if cmp -s "$T/docfile" "$_f"; then pass; else
    fail "docs/examples/$_name differs from its copy in docs/testing.md"; fi
done

# ---- the examples in docs/*.md ---------------------------------------------
#
# In a fenced block, a line "$ flow ..." (or "$ ... | flow ...") is a
# command and the lines after it, up to the next "$ " line or the end of the
# block, are what it prints (stdout and stderr together).  A line "..." in
# the expected output stands for any number of lines, and "..." inside a
# line for any text.  "$ echo $?" followed by a number checks the exit
# code; otherwise the command must exit 0, or non-zero when what it prints
# shows an error ("flow: ..." or "FILE:LINE: ...").  A block whose fence is
# preceded by "<!-- file: NAME -->" is written to NAME first.  Each doc runs
# in a fresh directory where examples/ is the source tree's, with $USER set
# to "sam" and the engine clock fixed by FLOW_NOW at DOC_NOW (a command's
# own --now wins), so no example's output depends on the day the suite
# runs.  tests/clock/run_future.sh runs all of this again with the real
# clock thirty years ahead to prove it.
DOC_NOW=2026-11-27T09:00:00Z

# Splits one markdown file into numbered steps in directory $2:
# N.cmd (a command), N.out (its expected output) or N.file + N.name.
split_doc() {
  awk -v dir="$2" '
    function flush() { if (kind != "") close(cur); kind = "" }
    function step(k) { flush(); n++; kind = k; cur = dir "/" n "." k }
    BEGIN { n = 0; inblock = 0; kind = ""; pendfile = "" }
    /^<!-- file: [^ ]+ -->$/ && !inblock { pendfile = $3; next }
    /^ *```/ {
      if (!inblock) {
        inblock = 1
        if (pendfile != "") {
          step("file"); print pendfile > (dir "/" n ".name")
          close(dir "/" n ".name"); pendfile = ""
        }
      } else { inblock = 0; flush() }
      next
    }
    !inblock { pendfile = ""; next }
    kind == "file" { print > cur; next }
    /^\$ / {
      line = substr($0, 3)
      if (line ~ /^flow( |$)/ || line ~ /\| *flow( |$)/) {
        step("cmd"); print line > cur; flush()
        step("out"); printf "" > cur; cont = (line ~ /\\$/); next
      }
      if (line == "echo $?") { step("rc"); printf "" > cur; next }
      flush(); next
    }
    kind == "cmd" { next }
    kind == "out" && cont { sub(/^ *> ?/, ""); print >> (dir "/" (n - 1) ".cmd")
                            cont = ($0 ~ /\\$/); next }
    kind == "out" || kind == "rc" { print > cur; next }
  ' "$1"
}

# match_output EXPECTED ACTUAL: 0 when ACTUAL fits EXPECTED ("..." as above).
match_output() {
  awk '
    function piecematch(p, s,   parts, k, np, pos, i) {
      if (index(p, "...") == 0) return p == s
      np = split(p, parts, "\\.\\.\\.")
      if (substr(s, 1, length(parts[1])) != parts[1]) return 0
      pos = length(parts[1]) + 1
      for (k = 2; k < np; k++) {
        i = index(substr(s, pos), parts[k])
        if (i == 0) return 0
        pos += i - 1 + length(parts[k])
      }
      if (length(s) - pos + 1 < length(parts[np])) return 0
      return substr(s, length(s) - length(parts[np]) + 1) == parts[np]
    }
    function m(i, j,   key, r) {
      key = i SUBSEP j
      if (key in memo) return memo[key]
      if (i > ne) r = (j > na)
      else if (e[i] == "...") r = m(i + 1, j) || (j <= na && m(i, j + 1))
      else r = j <= na && piecematch(e[i], a[j]) && m(i + 1, j + 1)
      memo[key] = r
      return r
    }
    FNR == NR { e[++ne] = $0; next }
    { a[++na] = $0 }
    END { exit m(1, 1) ? 0 : 1 }
  ' "$1" "$2"
}

run_doc_examples() {
  doc=$1
  name=${doc##*/}
  work=$T/doc-$name
  mkdir -p "$work/steps" "$work/bin" || return
  ln -s "$FLOW" "$work/bin/flow"
  ln -s "$SRC/examples" "$work/examples"
  split_doc "$doc" "$work/steps"
  k=1
  last_rc=0
  last_cmd=
  while :; do
    if [ -f "$work/steps/$k.name" ]; then
      cp "$work/steps/$k.file" "$work/$(cat "$work/steps/$k.name")"
    elif [ -f "$work/steps/$k.cmd" ]; then
      last_cmd=$(cat "$work/steps/$k.cmd")
      (cd "$work" && PATH="$work/bin:$PATH" USER=sam FLOW_DB= \
        FLOW_NOW=$DOC_NOW sh -c "$last_cmd" >"$work/actual" 2>&1 </dev/null)
      last_rc=$?
      k=$((k + 1))
      exp=$work/steps/$k.out
      if ! match_output "$exp" "$work/actual"; then
        failed=$((failed + 1))
        echo "FAIL: $name: \$ $last_cmd"
        echo "  expected:"
        sed 's/^/    /' "$exp"
        echo "  got (exit $last_rc):"
        sed 's/^/    /' "$work/actual"
      else
        errors=no
        if grep -q -e '^flow: ' -e '^[^ ]*:[0-9][0-9]*: ' "$exp"; then
          errors=yes
        fi
        k1=$((k + 1))
        if [ -f "$work/steps/$k1.rc" ]; then
          :
        elif [ $errors = yes ] && [ $last_rc = 0 ]; then
          failed=$((failed + 1))
          echo "FAIL: $name: \$ $last_cmd: shows an error but exited 0"
        elif [ $errors = no ] && [ $last_rc != 0 ]; then
          failed=$((failed + 1))
          echo "FAIL: $name: \$ $last_cmd: exit $last_rc"
          sed 's/^/    /' "$work/actual"
        else
          passed=$((passed + 1))
        fi
      fi
    elif [ -f "$work/steps/$k.rc" ]; then
      want=$(sed -n 1p "$work/steps/$k.rc")
      if [ "$want" = "$last_rc" ]; then
        passed=$((passed + 1))
      else
        failed=$((failed + 1))
        echo "FAIL: $name: \$ $last_cmd: exit $last_rc, the doc says $want"
      fi
    elif [ ! -f "$work/steps/$k.out" ]; then
      break
    fi
    k=$((k + 1))
  done
}

ndocs=0
for doc in "$SRC"/docs/*.md; do
  [ -f "$doc" ] || continue
  if grep -q '^\$ .*flow' "$doc"; then
    run_doc_examples "$doc"
    ndocs=$((ndocs + 1))
  fi
done
[ $ndocs -gt 0 ] && pass || fail "no shell examples found in docs/*.md"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
