#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine (with Rust already
# there): cmake and a C/C++ compiler for the C tests, valgrind for the leak check, nginx and
# openssl for the HTTPS run against a real server, tinyproxy for the proxy tests, pkg-config for the packaging test, Mono for
# the C# binding, pytest, pip and venv for the Python binding. Installs only what is missing;
# uses sudo when not root.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(gcc)
command -v c++ >/dev/null || missing+=(g++)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v python3 >/dev/null || missing+=(python3)
# The Python step builds a wheel with pip and installs it in a fresh venv.
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v nginx >/dev/null || missing+=(nginx-light)
# A real HTTP proxy for the proxy tests (tests/proxy_tinyproxy.rs, the C test `proxy`).
[ -x /usr/bin/tinyproxy ] || [ -x /usr/sbin/tinyproxy ] || missing+=(tinyproxy)
command -v openssl >/dev/null || missing+=(openssl)
command -v pkg-config >/dev/null || missing+=(pkgconf)
command -v mcs >/dev/null || missing+=(mono-mcs)
command -v mono >/dev/null || missing+=(mono-runtime)
[ -e /usr/lib/mono/4.5/System.dll ] || missing+=(libmono-system4.0-cil)
[ -e /usr/lib/mono/4.5/System.Core.dll ] || missing+=(libmono-system-core4.0-cil)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import pytest' 2>/dev/null; then
  echo "deps: installing pytest"
  python3 -m pip install -q pytest 2>/dev/null || python3 -m pip install -q --break-system-packages pytest
fi
