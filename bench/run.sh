#!/usr/bin/env bash
# One command for the benchmarks: installs nginx, wrk, libcurl, urllib3, aiohttp, httpx (and Mono when the C#
# clients exist), builds the release library and the bench clients, starts nginx on loopback
# (bench/nginx.sh: 1 worker on CPU 0, keep-alive on, access log off, a 100-byte and a 64 KiB
# file, 64 extra ports for the contention scenario), runs every client on every scenario
# interleaved (bench/run.py), writes bench/RESULTS.md and stops nginx. Options are passed to
# run.py (e.g. --rounds 5 --seconds 5; --scenarios seq_small,contention_1,contention_32
# --clients "C),C, request,libcurl,wrk" --section NAME --futex for the S1/contention section).
# valgrind --tool=callgrind --instr-atstart=no on a C client counts instructions of its measured
# phase only (see bench/c/bench_common.h); --callgrind adds that for S1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
[ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -e /usr/include/curl/curl.h ] || need+=(libcurl4-openssl-dev)
command -v taskset >/dev/null || need+=(util-linux)
command -v cc >/dev/null || need+=(gcc)
command -v openssl >/dev/null || need+=(openssl)
command -v strace >/dev/null || need+=(strace)
command -v valgrind >/dev/null || need+=(valgrind)
if [ -f bindings/csharp/Servicepoint.csproj ]; then
  command -v mcs >/dev/null || need+=(mono-mcs)
  command -v mono >/dev/null || need+=(mono-runtime)
  [ -e /usr/lib/mono/4.5/System.dll ] || need+=(libmono-system4.0-cil)
fi
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
python3 -c 'import urllib3' 2>/dev/null || python3 -m pip install -q urllib3 2>/dev/null \
  || python3 -m pip install -q --break-system-packages urllib3
# The asyncio peers of the asynchronous scenarios.
python3 -c 'import aiohttp, httpx' 2>/dev/null || python3 -m pip install -q aiohttp httpx 2>/dev/null \
  || python3 -m pip install -q --break-system-packages aiohttp httpx

cargo build --release --locked
T=${CARGO_TARGET_DIR:-target}
# The library's SONAME is libservicepoint.so.<ABI>; the link beside it lets the clients load it.
[ ! -f bindings/c/soname-link.sh ] || bash bindings/c/soname-link.sh "$T/release"
mkdir -p "$T/bench"
cc -O2 -g -Wall -Iinclude bench/c/sp_bench.c -o "$T/bench/sp_bench" -L"$T/release" -lservicepoint -lpthread
cc -O2 -g -Wall -Iinclude bench/c/sp_contend.c -o "$T/bench/sp_contend" -L"$T/release" -lservicepoint -lpthread
cc -O2 -g -Wall -Iinclude bench/c/sp_idle.c -o "$T/bench/sp_idle" -L"$T/release" -lservicepoint
cc -O2 -g -Wall -Iinclude bench/c/sp_async_bench.c -o "$T/bench/sp_async_bench" -L"$T/release" -lservicepoint -lpthread
cc -O2 -g -Wall bench/c/curl_bench.c -o "$T/bench/curl_bench" -lcurl -lpthread
cc -O2 -g -Wall bench/c/curl_multi_bench.c -o "$T/bench/curl_multi_bench" -lcurl -lpthread
if [ -f bench/cs/build.sh ]; then bash bench/cs/build.sh; fi

WORK=$(mktemp -d /tmp/servicepoint-bench.XXXXXX)
PORT=${BENCH_PORT:-18480}
TLS_PORT=$((PORT + 1))
stop() { [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; sleep 0.2; rm -rf "$WORK"; }
trap stop EXIT
bash bench/nginx.sh "$WORK" "$PORT"

# Scale (criterion): sp_find with 10,000 service points, acquire/release on a warm pool.
# BENCH_NO_CRITERION=1 skips it (for a run of a subset of the scenarios).
[ -n "${BENCH_NO_CRITERION:-}" ] || taskset -c 1 cargo bench --locked --bench pool -- --warm-up-time 1 --measurement-time 3 \
  > "$WORK/criterion.txt" 2>&1 || true

IDLE=$(LD_LIBRARY_PATH=$T/release $T/bench/sp_idle "http://127.0.0.1:$PORT/small" 1000 || true)
echo "$IDLE"
python3 bench/run.py --port "$PORT" --tls-port "$TLS_PORT" --ca "$WORK/ca.pem" --idle "$IDLE" --criterion "$WORK/criterion.txt" --command "bash bench/run.sh $*" "$@"
