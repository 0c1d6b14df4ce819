#!/usr/bin/env bash
# Writes DIR/ca.pem (a CA generated for this run) and DIR/server.pem + DIR/server.key (an
# ECDSA P-256 certificate for localhost and 127.0.0.1 signed by it), valid for two days.
# Used by the nginx HTTPS test and the benchmarks. Needs the openssl command.
set -euo pipefail
DIR=$1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=servicepoint test CA" -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" > "$DIR/ext.cnf"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
  -CAcreateserial -days 2 -extfile "$DIR/ext.cnf" -out "$DIR/server.pem" 2>/dev/null
