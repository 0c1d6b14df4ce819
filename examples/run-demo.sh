#!/bin/sh
# Builds the servicepoint library (release) and the C demo, then runs the demo.
#   examples/run-demo.sh                 tour against an embedded loopback server
#   examples/run-demo.sh URL [URL...]    GET each URL through one connection manager
# Works from any directory; needs cargo, cmake and a C compiler. Exits with the demo's status.
set -eu

repo=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
build="$repo/target/demo"

# Build output goes to stderr so stdout is the demo's alone.
(cd "$repo" && cargo build --locked --release) >&2
cmake -S "$repo/examples" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCARGO_PROFILE=release >&2
cmake --build "$build" >&2

# The demo carries an rpath to target/release; LD_LIBRARY_PATH is a second line of defence.
LD_LIBRARY_PATH="$repo/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "$build/demo" "$@"
