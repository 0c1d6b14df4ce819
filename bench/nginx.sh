#!/usr/bin/env bash
# Starts the bench's nginx: bench/nginx.sh WORKDIR PORT. Serves a 100-byte file (/small) and a
# 64 KiB one (/big) from WORKDIR/www over HTTP on 127.0.0.1:PORT, HTTPS on PORT+1 (certificate
# from a CA generated into WORKDIR, ca.pem) and HTTP on the 64 ports PORT+10 .. PORT+73 (64
# origins for the contention scenario). 1 worker pinned to CPU 0, keep-alive on, access log
# off, TCP_NODELAY. Stop it with: kill "$(cat WORKDIR/nginx.pid)".
set -euo pipefail
WORK=$1
PORT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK/www" "$WORK/logs" "$WORK/tmp"
chmod 755 "$WORK" "$WORK/www"
TLS_PORT=$((PORT + 1))
[ -f "$WORK/server.pem" ] || bash "$HERE/../tests/nginx/make-cert.sh" "$WORK"
USER_LINE=""; [ "$(id -u)" = "0" ] && USER_LINE="user root;"
head -c 100 /dev/zero | tr '\0' 'a' > "$WORK/www/small"
head -c 65536 /dev/urandom > "$WORK/www/big"
MANY=""
for i in $(seq 10 73); do MANY+="    listen 127.0.0.1:$((PORT + i)) backlog=4096;"$'\n'; done
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
$MANY    root $WORK/www;
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
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/logs/error.log"
sleep 0.3
