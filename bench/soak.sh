#!/usr/bin/env bash
# Soak test (not part of the test command): builds bench/soak (its own cargo package, release)
# and runs 1,000,000 GETs across 8 threads and 50 service points against a loopback server
# that closes and resets keep-alive connections at random; checks zero failed requests, the
# connection limits as the server counts them, flat client RSS and descriptors. Stops by itself
# (wall-clock cap 15 min). The figures replace the "## Soak" section of bench/RESULTS.md.
# Options are passed to the program, e.g. --requests 100000 --seed 7 --cap-secs 300.
# Exit status 0 when every check is met.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --manifest-path bench/soak/Cargo.toml
BIN=$CARGO_TARGET_DIR/release/servicepoint-soak
MD=$(mktemp /tmp/servicepoint-soak.XXXXXX.md)
trap 'rm -f "$MD"' EXIT
status=0
"$BIN" --markdown "$MD" "$@" || status=$?
if [ -s "$MD" ]; then
  python3 - "$MD" "$ROOT/bench/RESULTS.md" "$(date -u '+%Y-%m-%d %H:%M UTC')" "bash bench/soak.sh $*" <<'PY'
import sys
md_path, results, date, command = sys.argv[1:5]
section = open(md_path, encoding="utf-8").read().rstrip("\n") + "\n"
head, _, rest = section.partition("\n\n")
section = f"{head}\n\n- Date: {date}; command: `{command}`.\n{rest}"
try:
    text = open(results, encoding="utf-8").read()
except FileNotFoundError:
    text = "# Benchmark results\n"
i = text.find("\n## Soak")
if i >= 0:
    text = text[:i]
open(results, "w", encoding="utf-8").write(text.rstrip("\n") + "\n\n" + section)
PY
  echo "bench/RESULTS.md: Soak section updated"
fi
exit $status
