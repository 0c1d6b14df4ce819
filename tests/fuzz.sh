#!/usr/bin/env bash
# Bounded fuzzing: builds the cargo-fuzz targets in fuzz/ and runs each for FUZZ_SECONDS
# (default 12; five targets, about 60 s plus the build) over the committed seed corpus and
# every input in fuzz/regressions/. Exits non-zero if any target crashes. New inputs go to a
# scratch directory, so the committed corpus is not modified. Longer runs: fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_EACH=${FUZZ_SECONDS:-12}
TARGETS=(response_head chunked keep_alive origin exchange)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, sanitizer coverage). Use a nightly
# toolchain when rustup has one; otherwise unlock them on stable with RUSTC_BOOTSTRAP=1.
if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi
# Without a sanitizer by default: the library is safe Rust apart from its FFI layer (which the
# ABI misuse test covers under AddressSanitizer), and an instrumented build of every dependency
# doubles the build time of the test command. FUZZ_SANITIZER=address for long runs.
SANITIZER=(--sanitizer "${FUZZ_SANITIZER:-none}")
# The main crate's build script would otherwise regenerate include/servicepoint.h from here.
export SERVICEPOINT_SKIP_HEADER=1

echo "== fuzz: build (${FUZZ[*]})"
"${FUZZ[@]}" build "${SANITIZER[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${TARGETS[@]}"; do
  echo "== fuzz: $t for ${SECONDS_EACH}s"
  mkdir -p "$scratch/$t" "regressions/$t"
  if ! "${FUZZ[@]}" run "${SANITIZER[@]}" "$t" "$scratch/$t" "corpus/$t" "regressions/$t" -- \
      -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      >"$scratch/$t.log" 2>&1; then
    failed+=("$t")
    grep -E -A12 'panicked|ERROR: libFuzzer|SUMMARY' "$scratch/$t.log" | head -40 >&2 || tail -40 "$scratch/$t.log" >&2
    echo "fuzz: $t FAILED; the crashing input is in fuzz/artifacts/$t/ (see fuzz/README.md)" >&2
  else
    grep -E '^Done [0-9]+ runs' "$scratch/$t.log" || true
  fi
done

passed=$(( ${#TARGETS[@]} - ${#failed[@]} ))
echo "fuzz: ${passed} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
