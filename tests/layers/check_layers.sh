#!/bin/sh
# Fails when an #include runs against the layers of libflow (DESIGN.md,
# "Layout"): each folder of libflow/ may include its own headers and those
# of the layers below it, never above or beside.
#
#   util  <-  model  <-  { store, script }  <-  engine  <-  { loop, runner }
#
# store and script never know each other, nor do loop and runner.  The
# flow command (libflow/cli/), the examples and the bindings use the
# public headers (<flow.h>, <flow/...>) only.  Headers of the system and
# of the dependencies (<lua.h>, <sqlite3.h>, ...) are not the concern here;
# that the model holds no Lua state and no SQL is checked by the model
# including neither lua nor sqlite3 headers.
#
# usage: tests/layers/check_layers.sh [SOURCE_DIR]
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top" || exit 2

rank() {
  case $1 in
    util) echo 0 ;; model) echo 1 ;; store | script) echo 2 ;;
    engine) echo 3 ;; loop | runner) echo 4 ;; *) echo -1 ;;
  esac
}

bad=0
say() {
  echo "layers: $*" >&2
  bad=1
}

for dir in libflow/*/; do
  layer=$(basename "$dir")
  r=$(rank "$layer")
  for f in "$dir"*.c "$dir"*.h; do
    [ -f "$f" ] || continue
    # Each quoted include, as "LINE TARGET".
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
      sed 's/^\([0-9]*\):.*include[[:space:]]*"\([^"]*\)".*/\1 \2/' |
      while read -r line target; do
        case $target in
          */*) to=${target%%/*} ;;
          *) to=$layer ;; # a header of the same folder
        esac
        [ "$to" = flow ] && continue # <flow.h>'s own parts
        if [ "$layer" = cli ]; then
          [ "$to" = cli ] && [ -f "libflow/cli/$target" ] && continue
          echo "$f:$line: the flow command includes \"$target\"; it may use the public API only (flow.h)"
          continue
        fi
        tr=$(rank "$to")
        if [ "$tr" -lt 0 ]; then
          [ "$target" = flow.h ] && continue
          echo "$f:$line: includes \"$target\", which is in no layer"
        elif [ "$to" != "$layer" ] && [ "$tr" -ge "$r" ]; then
          echo "$f:$line: $layer/ includes $to/ (\"$target\"): $to/ is not below $layer/"
        fi
      done
  done
done >"${TMPDIR:-/tmp}/flow-layers.$$"

# The model is data and rules: no Lua state, no SQL, no event loop.
grep -n '#[[:space:]]*include[[:space:]]*<\(lua\|lauxlib\|lualib\|sqlite3\|uv\)' \
  libflow/model/*.c libflow/model/*.h 2>/dev/null |
  sed 's/$/ (the model holds no sandbox, no SQL and no loop)/' \
    >>"${TMPDIR:-/tmp}/flow-layers.$$"

# Hosts: the examples and bindings see the public headers only.
for f in examples/host/*.c; do
  [ -f "$f" ] || continue
  grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
    sed "s|^|$f:|; s/\$/ (a host includes <flow.h> only)/"
done >>"${TMPDIR:-/tmp}/flow-layers.$$"

if [ -s "${TMPDIR:-/tmp}/flow-layers.$$" ]; then
  while read -r l; do say "$l"; done <"${TMPDIR:-/tmp}/flow-layers.$$"
fi
rm -f "${TMPDIR:-/tmp}/flow-layers.$$"
[ $bad -eq 0 ] && echo "layers: every include runs one way"
exit $bad
