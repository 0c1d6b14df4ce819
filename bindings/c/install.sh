#!/bin/sh
# Builds servicepoint (cargo, release) and installs the shared library (SONAME
# libservicepoint.so.<ABI>, set by build.rs) with its symlinks, the static library, the header,
# a pkg-config file and a CMake package config into PREFIX (see bindings/c/CMakeLists.txt).
#
#   bindings/c/install.sh [--lib-dir DIR] [--build-dir DIR] PREFIX [-- CMAKE_ARGS...]
#
#   PREFIX           install prefix, e.g. /usr/local or $HOME/.local (created if missing)
#   --lib-dir DIR    install the libservicepoint.so (and .a) already built in DIR (e.g.
#                    target/debug) and skip `cargo build --release`; also taken from
#                    $SERVICEPOINT_LIB_DIR
#   --build-dir DIR  CMake build directory (default: <repo>/target/bindings-c; with
#                    $CARGO_TARGET_DIR set, <CARGO_TARGET_DIR>/bindings-c)
#   CMAKE_ARGS       passed to the CMake configure step, e.g. -DSERVICEPOINT_INSTALL_STATIC=OFF
#
# Needs cargo (unless --lib-dir), cmake, a C compiler and readelf (binutils). DESTDIR is
# honoured by `cmake --install` for staged installs (packaging). Works from any directory.
set -eu

usage() {
  echo "usage: $0 [--lib-dir DIR] [--build-dir DIR] PREFIX [-- CMAKE_ARGS...]" >&2
  exit 2
}

repo=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
lib_dir=${SERVICEPOINT_LIB_DIR:-}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case $target_dir in /*) ;; *) target_dir="$repo/$target_dir" ;; esac  # cargo runs in the repository
build_dir="$target_dir/bindings-c"
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
  lib_dir="$target_dir/release"
fi
lib_dir=$(cd -- "$lib_dir" && pwd)

cmake -S "$repo/bindings/c" -B "$build_dir" \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DSERVICEPOINT_LIB_DIR="$lib_dir" \
  "$@"
cmake --build "$build_dir"
cmake --install "$build_dir"
echo "install.sh: installed servicepoint from $lib_dir into ${DESTDIR:-}$prefix"
