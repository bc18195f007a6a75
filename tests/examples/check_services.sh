#!/bin/sh
# The worked council services (issue 16): every directory under
# examples/services/AREA/SERVICE/ must
#   - pass its tests with at least 95% of each service's transitions fired
#     (flow test --min-coverage 95), and
#   - have its state diagram, SERVICE.svg beside SERVICE.lua, as
#     `flow graph SERVICE.lua --svg` draws it today, so the README never
#     shows a diagram of an older script.
# Usage: check_services.sh FLOW SOURCE_DIR
flow=$1
src=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ndirs=0
for dir in "$src"/examples/services/*/*/; do
  [ -d "$dir" ] || continue
  ls "$dir"*_test.lua >/dev/null 2>&1 || continue
  ndirs=$((ndirs + 1))
  name=${dir#"$src"/}
  if (cd "$dir" && "$flow" test --min-coverage 95 .) >"$tmp/out" 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $name: flow test --min-coverage 95"
    sed 's/^/    /' "$tmp/out"
  fi
  for script in "$dir"*.lua; do
    case $script in *_test.lua) continue ;; esac
    base=${script%.lua}
    if [ ! -f "$base.svg" ]; then
      failed=$((failed + 1))
      echo "FAIL: $name: no ${base##*/}.svg beside ${script##*/}" \
        "(draw it: flow graph ${script##*/} --svg ${base##*/}.svg)"
      continue
    fi
    # Drawn from the script's own directory, as its README says to.
    if ! (cd "$dir" && "$flow" graph "${script##*/}" --svg "$tmp/now.svg") \
        >"$tmp/out" 2>&1; then
      failed=$((failed + 1))
      echo "FAIL: $name: flow graph ${script##*/} --svg"
      sed 's/^/    /' "$tmp/out"
    elif cmp -s "$tmp/now.svg" "$base.svg"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      echo "FAIL: $name: ${base##*/}.svg is not the diagram of" \
        "${script##*/} as it is now: redraw it from $name with" \
        "flow graph ${script##*/} --svg ${base##*/}.svg"
    fi
  done
done
if [ "$ndirs" -eq 0 ]; then
  echo "FAIL: no service directories under examples/services/*/*/"
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
