#!/usr/bin/env bash
# Runs tests/c/tls_nginx_test against a real nginx serving HTTPS on loopback with a
# certificate signed by a CA generated for this run (openssl). Installs nginx and openssl if
# missing, starts nginx in a temporary directory, stops it on exit.
# Usage: tls_nginx.sh PATH_TO_tls_nginx_test
set -euo pipefail
TEST_BIN=$1
SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

WORK=$(mktemp -d /tmp/servicepoint-nginx.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.2
  rm -rf "$WORK"
}
trap cleanup EXIT

# A CA and a server certificate for localhost / 127.0.0.1.
bash "$(dirname "$0")/make-cert.sh" "$WORK"

mkdir -p "$WORK/www" "$WORK/logs" "$WORK/tmp"
chmod 755 "$WORK/www"
echo "hello from nginx over TLS" > "$WORK/www/index.html"
chmod 644 "$WORK/www/index.html"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
USER_LINE=""; [ "$(id -u)" = "0" ] && USER_LINE="user root;"
cat > "$WORK/nginx.conf" <<CONF
$USER_LINE
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp;
  proxy_temp_path $WORK/tmp;
  fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp;
  scgi_temp_path $WORK/tmp;
  keepalive_timeout 30s;
  server {
    listen 127.0.0.1:$PORT ssl;
    ssl_certificate $WORK/server.pem;
    ssl_certificate_key $WORK/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;
    ssl_session_tickets on;
    root $WORK/www;
    # What nginx negotiated, for the client's TLS facts to be compared with.
    location = /tls { return 200 "\$ssl_protocol \$ssl_cipher \$ssl_session_reused"; }
  }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/logs/error.log"
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
  sleep 0.1
done
"$TEST_BIN" "https://localhost:$PORT" "$WORK/ca.pem" "$WORK/server.pem" "$WORK/server.key"
