#!/bin/sh
# soname-link.sh DIR...
#
# Makes a cargo-built libservicepoint.so usable in place by programs linked against it.
# build.rs gives the library the SONAME libservicepoint.so.<SP_ABI_VERSION>; a program linked
# with it (-lservicepoint, or by path) records that name as NEEDED, and the dynamic loader looks
# for a file of that name at run time. cargo writes only libservicepoint.so, so for each DIR
# (e.g. target/debug, target/release) this creates
#
#   DIR/libservicepoint.so.<ABI> -> libservicepoint.so
#
# and removes links for other ABI numbers that point at libservicepoint.so (after an ABI bump a
# program built against the old ABI then fails to start instead of loading the new one).
# Idempotent; a library without SONAME is left alone. Needs readelf (binutils). The in-repo
# CMake builds (bindings/c/cargo-library.cmake) run it after every cargo build.
set -eu

[ $# -gt 0 ] || { echo "usage: $0 DIR..." >&2; exit 2; }
command -v readelf >/dev/null 2>&1 ||
  { echo "soname-link.sh: readelf not found (Debian package binutils)" >&2; exit 1; }

for dir in "$@"; do
  lib="$dir/libservicepoint.so"
  [ -f "$lib" ] || { echo "soname-link.sh: no $lib (cargo build first)" >&2; exit 1; }
  soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME)[^[]*\[\(.*\)\].*/\1/p')
  for old in "$dir"/libservicepoint.so.[0-9]*; do
    if [ -L "$old" ] && [ "$(readlink "$old")" = libservicepoint.so ] &&
      [ "${old##*/}" != "$soname" ]; then
      rm -f "$old"
    fi
  done
  case $soname in
    "" | libservicepoint.so) continue ;;
    libservicepoint.so.*) ;;
    *) echo "soname-link.sh: unexpected SONAME '$soname' in $lib" >&2; exit 1 ;;
  esac
  if [ "$(readlink "$dir/$soname" 2>/dev/null)" != libservicepoint.so ]; then
    ln -sfn libservicepoint.so "$dir/$soname"
  fi
done
