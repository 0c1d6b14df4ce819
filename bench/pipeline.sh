#!/usr/bin/env bash
# The pipelining benchmark (issue 12): round-trip latency is why pipelining exists, so nginx
# (bench/nginx.sh) sits behind bench/delay_proxy.py, which delays every chunk by 5 ms in each
# direction (a 10 ms round trip; the kernel's netem is not available on these machines).
# Connection limit 1, 200 small GETs sent at once from one thread: servicepoint without
# pipelining, pipelined at depths 2, 4 and 8, and libcurl's multi interface limited to one
# connection (libcurl no longer pipelines), interleaved for ROUNDS rounds (default 5).
# Writes the medians as the section "Pipelining over a 10 ms round trip" of bench/RESULTS.md.
#   bash bench/pipeline.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
need=()
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -e /usr/include/curl/curl.h ] || need+=(libcurl4-openssl-dev)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --locked
T=${CARGO_TARGET_DIR:-target}
[ ! -f bindings/c/soname-link.sh ] || bash bindings/c/soname-link.sh "$T/release"
mkdir -p "$T/bench"
cc -O2 -g -Wall -Iinclude bench/c/sp_pipeline_bench.c -o "$T/bench/sp_pipeline_bench" -L"$T/release" -lservicepoint
cc -O2 -g -Wall bench/c/curl_pipeline_bench.c -o "$T/bench/curl_pipeline_bench" -lcurl

WORK=$(mktemp -d /tmp/servicepoint-pipeline.XXXXXX)
PORT=${BENCH_PORT:-18580}
PROXY_PORT=$((PORT + 100))
stop() {
  [ -f "$WORK/proxy.pid" ] && kill "$(cat "$WORK/proxy.pid")" 2>/dev/null || true
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.2
  rm -rf "$WORK"
}
trap stop EXIT
bash bench/nginx.sh "$WORK" "$PORT" >/dev/null
python3 bench/delay_proxy.py "$PROXY_PORT" "$PORT" 5 > "$WORK/proxy.log" 2>&1 &
echo $! > "$WORK/proxy.pid"
for _ in $(seq 50); do grep -q ready "$WORK/proxy.log" 2>/dev/null && break; sleep 0.1; done
URL="http://127.0.0.1:$PROXY_PORT/small"
export LD_LIBRARY_PATH="$T/release"
OUT="$WORK/results.txt"
for round in $(seq "$ROUNDS"); do
  for client in "servicepoint, pipelining off:0" "servicepoint, depth 2:2" "servicepoint, depth 4:4" \
                "servicepoint, depth 8:8" "libcurl multi, 1 connection:curl"; do
    name=${client%:*}; depth=${client##*:}
    if [ "$depth" = curl ]; then
      line=$("$T/bench/curl_pipeline_bench" "$URL" 200)
    else
      line=$("$T/bench/sp_pipeline_bench" "$URL" 200 "$depth")
    fi
    echo "$name|$line" >> "$OUT"
    echo "round $round: $name: $line"
  done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import os, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, result = line.rstrip("\n").split("|", 1)
    fields = dict(f.split("=", 1) for f in result.split()[1:])
    rows.setdefault(name, []).append(fields)
base = statistics.median(float(f["rps"]) for f in rows["servicepoint, pipelining off"])
lines = ["## Pipelining over a 10 ms round trip", "",
         f"`bash bench/pipeline.sh {sys.argv[2]}`: nginx behind bench/delay_proxy.py (5 ms each way), "
         "connection limit 1, 200 small GETs sent at once from one thread, medians of "
         f"{sys.argv[2]} interleaved rounds. The server answers in microseconds: the round trip "
         "is the cost, as on a real network.", "",
         "| client | requests/s | seconds for 200 | vs not pipelined | pipelined | replays | connections |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
for name, fs in rows.items():
    rps = statistics.median(float(f["rps"]) for f in fs)
    secs = statistics.median(float(f["seconds"]) for f in fs)
    pipelined = statistics.median(int(f["pipelined"]) for f in fs)
    replays = max(int(f["replays"]) for f in fs)
    conns = fs[0]["connections"] if fs[0]["connections"] != "-1" else "1 (limit)"
    lines.append(f"| {name} | {rps:.0f} | {secs:.3f} | {rps / base:.2f}x | {pipelined:.0f} | {replays} | {conns} |")
depth8 = statistics.median(float(f["rps"]) for f in rows["servicepoint, depth 8"])
ok = "met" if depth8 / base >= 6 else "NOT met"
lines += ["", f"Target: depth 8 at least 6x the non-pipelined throughput: {depth8 / base:.2f}x, {ok}.", ""]
text = "\n".join(lines)
print(text)
sys.path.insert(0, "bench")
from results_md import replace_section
replace_section(os.path.join("bench", "RESULTS.md"), text)
PY
