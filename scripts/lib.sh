# Shared by scripts/*: find the repository and install what is missing.
# Sourced, not run.

FLOW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLOW_PACKAGES="gcc g++ make cmake pkg-config liblua5.4-dev libsqlite3-dev libuv1-dev check libjansson-dev libxml2-utils graphviz locales python3 mypy"

# Installs the Debian packages the build needs, when any is missing.  As
# root it runs apt-get; otherwise it prints the exact command and fails.
flow_install_deps() {
  local missing=() p
  for p in $FLOW_PACKAGES "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The options every build of this repository's scripts uses: warnings are
# errors (a user's build leaves them warnings) and the public header is
# also compiled as C++.
FLOW_CMAKE_OPTIONS=(-DFLOW_WERROR=ON -DFLOW_TEST_CXX_HEADER=ON)

# Configures and builds into $1 with the remaining arguments given to cmake.
flow_build() {
  local dir=$1
  shift
  cmake -S "$FLOW_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "${FLOW_CMAKE_OPTIONS[@]}" "$@" >/dev/null &&
    cmake --build "$dir" -j "$(nproc)"
}
