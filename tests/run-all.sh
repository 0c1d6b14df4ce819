#!/usr/bin/env bash
# Runs every test: lints, Rust unit and integration tests, the header freshness check, the
# C tests under ctest (AddressSanitizer, valgrind, ABI misuse generated from the header, header
# compile checks, dlopen from C and C++, exported symbols, packaging, HTTPS against nginx), the
# C# binding under Mono and the Python binding. Works from any directory on a fresh Debian
# machine with Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash tests/deps.sh

echo "== lint"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

echo "== build and header freshness"
cargo build --locked
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  if ! git diff --exit-code -- include/servicepoint.h; then
    echo "include/servicepoint.h differs from the header build.rs generates: commit the new one" >&2
    exit 1
  fi
fi

echo "== Rust tests"
cargo test --locked

echo "== C tests (ctest)"
cmake -S tests/c -B target/ctest -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build target/ctest -j 2
ctest --test-dir target/ctest --output-on-failure

echo "== C# binding (Mono)"
bash bindings/csharp/run-mono.sh "$ROOT/target/debug"

echo "== fuzz (bounded: each target about 12 s over the committed corpus and past crashes)"
bash tests/fuzz.sh

echo "== demo (the README's first command)"
bash examples/run-demo.sh > target/demo-output.txt
tail -n 3 target/demo-output.txt

echo "== Python binding"
SERVICEPOINT_LIB="$ROOT/target/debug/libservicepoint.so" python3 -m pytest -q bindings/python/tests
