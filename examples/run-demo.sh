#!/bin/sh
# Builds the servicepoint library (release) and the C demo, then runs the demo.
#   examples/run-demo.sh                 tour against an embedded loopback server
#   examples/run-demo.sh URL [URL...]    GET each URL through one connection manager
# Works from any directory; needs cargo (installs cmake and a C compiler when missing). Exits
# with the demo's status.
set -eu

repo=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)

# On a fresh Debian machine with Rust: install cmake and a C compiler if missing (apt-get).
missing=""
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
if [ -n "$missing" ]; then
  echo "demo: installing$missing with apt-get" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
fi
build="$repo/target/demo"

# Build output goes to stderr so stdout is the demo's alone.
(cd "$repo" && cargo build --locked --release) >&2
cmake -S "$repo/examples" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCARGO_PROFILE=release >&2
cmake --build "$build" >&2

# The demo carries an rpath to target/release; LD_LIBRARY_PATH is a second line of defence.
LD_LIBRARY_PATH="$repo/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "$build/demo" "$@"
