#!/usr/bin/env bash
# Runs every test: lints, Rust unit and integration tests, the header freshness check, the
# C tests under ctest (AddressSanitizer, valgrind, ABI misuse generated from the header, header
# compile checks, dlopen from C and C++, exported symbols, packaging, HTTPS against nginx), the
# C# binding under Mono and the Python binding. Works from any directory on a fresh Debian
# machine with Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# A one-shot run gains nothing from incremental compilation, whose caches take about 0.9 GB of
# disk here (a CI run once failed with a full disk). Set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

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

echo "== Python binding (wheel built by cargo through pip, installed in a fresh venv)"
PY_OUT="$ROOT/target/python"
rm -rf "$PY_OUT"
mkdir -p "$PY_OUT"
python3 -m pip wheel -q --no-deps -w "$PY_OUT/wheels" bindings/python
python3 -m venv "$PY_OUT/venv"
VENV_PY="$PY_OUT/venv/bin/python"
"$VENV_PY" -m pip install -q "$PY_OUT"/wheels/servicepoint-*.whl pytest mypy
# The installed package, not the source tree: no SERVICEPOINT_LIB, no PYTHONPATH, run from a
# directory without the package, with an empty pytest config (bindings/python/pyproject.toml
# would put the source tree on sys.path).
printf '[pytest]\n' > "$PY_OUT/pytest.ini"
(
  cd "$PY_OUT"
  env -u SERVICEPOINT_LIB -u PYTHONPATH SERVICEPOINT_TEST_INSTALLED=1 \
    "$VENV_PY" -m pytest -q -p no:cacheprovider -c "$PY_OUT/pytest.ini" --rootdir "$PY_OUT" \
    "$ROOT/bindings/python/tests"
)
"$VENV_PY" -m mypy --strict --no-incremental "$ROOT/bindings/python/servicepoint"
