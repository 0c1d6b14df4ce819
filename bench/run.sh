#!/usr/bin/env bash
# One command for the benchmarks: installs nginx, wrk, libcurl, urllib3 (and Mono when the C#
# clients exist), builds the release library and the bench clients, starts nginx on loopback
# (1 worker on CPU 0, keep-alive on, access log off) with a 100-byte and a 64 KiB file, runs
# every client on every scenario interleaved (bench/run.py), writes bench/RESULTS.md and stops
# nginx. Options are passed to run.py (e.g. --rounds 5 --seconds 5).
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
if [ -f bindings/csharp/ServicePoint.cs ]; then
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

cargo build --release --locked
mkdir -p target/bench
cc -O2 -Wall -Iinclude bench/c/sp_bench.c -o target/bench/sp_bench -Ltarget/release -lservicepoint -lpthread
cc -O2 -Wall -Iinclude bench/c/sp_idle.c -o target/bench/sp_idle -Ltarget/release -lservicepoint
cc -O2 -Wall bench/c/curl_bench.c -o target/bench/curl_bench -lcurl -lpthread
if [ -f bench/cs/build.sh ]; then bash bench/cs/build.sh; fi

WORK=$(mktemp -d /tmp/servicepoint-bench.XXXXXX)
PORT=${BENCH_PORT:-18480}
mkdir -p "$WORK/www" "$WORK/logs" "$WORK/tmp"
chmod 755 "$WORK" "$WORK/www"
TLS_PORT=$((PORT + 1))
bash tests/nginx/make-cert.sh "$WORK"
USER_LINE=""; [ "$(id -u)" = "0" ] && USER_LINE="user root;"
head -c 100 /dev/zero | tr '\0' 'a' > "$WORK/www/small"
head -c 65536 /dev/urandom > "$WORK/www/big"
cat > "$WORK/nginx.conf" <<CONF
$USER_LINE
worker_processes 1;
worker_rlimit_nofile 8192;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 75s;
  keepalive_requests 100000000;
  sendfile on;
  tcp_nodelay on;
  default_type application/octet-stream;
  client_body_temp_path $WORK/tmp;
  proxy_temp_path $WORK/tmp;
  fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp;
  scgi_temp_path $WORK/tmp;
  server {
    listen 127.0.0.1:$PORT backlog=4096;
    root $WORK/www;
  }
  server {
    listen 127.0.0.1:$TLS_PORT ssl backlog=4096;
    ssl_certificate $WORK/server.pem;
    ssl_certificate_key $WORK/server.key;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    root $WORK/www;
  }
}
CONF
stop() { [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; sleep 0.2; rm -rf "$WORK"; }
trap stop EXIT
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/logs/error.log"
sleep 0.3

# Scale (criterion): sp_find with 10,000 service points, acquire/release on a warm pool.
taskset -c 1 cargo bench --locked --bench pool -- --warm-up-time 1 --measurement-time 3 \
  > "$WORK/criterion.txt" 2>&1 || true

IDLE=$(LD_LIBRARY_PATH=target/release target/bench/sp_idle "http://127.0.0.1:$PORT/small" 1000 || true)
echo "$IDLE"
python3 bench/run.py --port "$PORT" --tls-port "$TLS_PORT" --ca "$WORK/ca.pem" --idle "$IDLE" --criterion "$WORK/criterion.txt" --command "bash bench/run.sh $*" "$@"
