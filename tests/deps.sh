#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine (with Rust already
# there): cmake and a C/C++ compiler for the C tests, valgrind for the leak check, nginx and
# openssl for the HTTPS run against a real server, pkg-config for the packaging test, Mono for
# the C# binding, pytest for the Python binding. Installs only what is missing; uses sudo when
# not root.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(gcc)
command -v c++ >/dev/null || missing+=(g++)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v python3 >/dev/null || missing+=(python3)
command -v nginx >/dev/null || missing+=(nginx-light)
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
