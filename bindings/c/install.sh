#!/bin/sh
# Builds servicepoint (cargo, release) and installs the library with its SONAME, the header,
# a pkg-config file and a CMake package config into PREFIX (see bindings/c/CMakeLists.txt).
#
#   bindings/c/install.sh [--lib-dir DIR] [--build-dir DIR] PREFIX [-- CMAKE_ARGS...]
#
#   PREFIX           install prefix, e.g. /usr/local or $HOME/.local (created if missing)
#   --lib-dir DIR    install the libservicepoint.so already built in DIR (e.g. target/debug)
#                    and skip `cargo build --release`; also taken from $SERVICEPOINT_LIB_DIR
#   --build-dir DIR  CMake build directory (default: <repo>/target/bindings-c)
#   CMAKE_ARGS       passed to the CMake configure step, e.g. -DSERVICEPOINT_REQUIRE_SONAME=OFF
#
# Needs cargo (unless --lib-dir), cmake, a C compiler, readelf (binutils) and, while build.rs
# does not set a SONAME itself, patchelf. DESTDIR is honoured by `cmake --install` for staged
# installs (packaging). Works from any directory.
set -eu

usage() {
  echo "usage: $0 [--lib-dir DIR] [--build-dir DIR] PREFIX [-- CMAKE_ARGS...]" >&2
  exit 2
}

repo=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
lib_dir=${SERVICEPOINT_LIB_DIR:-}
build_dir="$repo/target/bindings-c"
prefix=""

while [ $# -gt 0 ]; do
  case $1 in
    --lib-dir) [ $# -ge 2 ] || usage; lib_dir=$2; shift 2 ;;
    --build-dir) [ $# -ge 2 ] || usage; build_dir=$2; shift 2 ;;
    --) shift; break ;;
    -*) usage ;;
    *) [ -z "$prefix" ] || usage; prefix=$1; shift ;;
  esac
done
[ -n "$prefix" ] || usage

# Absolute paths: CMake would resolve relative ones against the build directory.
mkdir -p "$prefix" "$build_dir"
prefix=$(cd -- "$prefix" && pwd)
build_dir=$(cd -- "$build_dir" && pwd)

if [ -z "$lib_dir" ]; then
  echo "install.sh: cargo build --locked --release" >&2
  (cd "$repo" && cargo build --locked --release)
  lib_dir="$repo/target/release"
fi
lib_dir=$(cd -- "$lib_dir" && pwd)

cmake -S "$repo/bindings/c" -B "$build_dir" \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DSERVICEPOINT_LIB_DIR="$lib_dir" \
  "$@"
cmake --build "$build_dir"
cmake --install "$build_dir"
echo "install.sh: installed servicepoint from $lib_dir into ${DESTDIR:-}$prefix"
