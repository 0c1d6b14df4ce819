#!/bin/sh
# check_packaging.sh [--lib-dir DIR] [--cc CC]
#
# The install step and every way of consuming the installed package, end to end:
#   1. `readelf -d` shows the SONAME libservicepoint.so.<SP_ABI_VERSION> on the cargo-built
#      library (build.rs sets it at link time);
#   2. bindings/c/install.sh --lib-dir DIR into a temporary prefix under $CARGO_TARGET_DIR (else
#      target/; DIR defaults to that target/debug, so the test needs no release build);
#   3. the installed files: library, its two symlinks, static library (if DIR has one), header,
#      .pc, CMake config + version; the installed library's SONAME;
#   4. examples/consumer with CMake: find_package(servicepoint 0.1) via CMAKE_PREFIX_PATH, built
#      and run (no LD_LIBRARY_PATH: CMake's build RUNPATH), NEEDED = the SONAME;
#   5. the same with -DSERVICEPOINT_STATIC=ON (libservicepoint.a): no NEEDED libservicepoint;
#   6. the same app.c with `pkg-config --cflags --libs servicepoint` (PKG_CONFIG_PATH), run with
#      LD_LIBRARY_PATH=<prefix>/lib only, NEEDED = the SONAME.
# Exit 0 if all passed; 1 on a failure (the temporary tree is kept for inspection); 77 (ctest:
# skipped) if everything that could run passed but pkg-config is missing (Debian package
# pkgconf). The reason is printed.
set -eu

repo=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case $target_dir in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
lib_dir="$target_dir/debug"
cc=${CC:-cc}
while [ $# -gt 0 ]; do
  case $1 in
    --lib-dir) lib_dir=$2; shift 2 ;;
    --cc) cc=$2; shift 2 ;;
    *) echo "usage: $0 [--lib-dir DIR] [--cc CC]" >&2; exit 2 ;;
  esac
done

fail() {
  echo "check_packaging: FAILED: $*" >&2
  exit 1
}
step() { echo "== $*"; }

abi=$(sed -n 's/^#define SP_ABI_VERSION \([0-9][0-9]*\).*/\1/p' "$repo/include/servicepoint.h")
version=$(sed -n 's/^#define SP_VERSION_STRING "\(.*\)"/\1/p' "$repo/include/servicepoint.h")
[ -n "$abi" ] && [ -n "$version" ] || fail "cannot read SP_ABI_VERSION / SP_VERSION_STRING"
soname="libservicepoint.so.$abi"
[ -f "$lib_dir/libservicepoint.so" ] || fail "no $lib_dir/libservicepoint.so (cargo build first)"

mkdir -p "$target_dir"
work=$(mktemp -d "$target_dir/packaging-test.XXXXXX")
prefix="$work/prefix"
# Keep the tree when something failed; remove it otherwise.
cleanup() {
  status=$?
  if [ "$status" -eq 0 ] || [ "$status" -eq 77 ]; then
    rm -rf "$work"
  else
    echo "check_packaging: left $work for inspection" >&2
  fi
}
trap cleanup EXIT

skipped=""

# --- 1. the SONAME of the cargo build ---------------------------------------------------------
step "SONAME of $lib_dir/libservicepoint.so"
readelf -d "$lib_dir/libservicepoint.so" | grep -q "(SONAME).*\[$soname\]" ||
  { readelf -d "$lib_dir/libservicepoint.so" | grep '(SONAME)' || true
    fail "$lib_dir/libservicepoint.so does not have the SONAME $soname (set by build.rs)"; }
echo "readelf -d: $(readelf -d "$lib_dir/libservicepoint.so" | grep '(SONAME)' | sed 's/^ *//')"

# --- 2. install ------------------------------------------------------------------------------
step "install from $lib_dir into $prefix"
sh "$repo/bindings/c/install.sh" --lib-dir "$lib_dir" --build-dir "$work/install-build" \
  "$prefix" -- -DCMAKE_C_COMPILER="$cc" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; fail "install.sh"; }
tail -n 12 "$work/install.log"

# --- 3. the installed tree -------------------------------------------------------------------
step "installed files"
# CMAKE_INSTALL_LIBDIR is lib here, lib64 on some distributions: find it.
real=$(find "$prefix" -name "libservicepoint.so.$version" -type f | head -n 1)
[ -n "$real" ] || fail "no libservicepoint.so.$version installed"
libdir=$(dirname "$real")
[ "$(readlink "$libdir/$soname")" = "libservicepoint.so.$version" ] ||
  fail "$libdir/$soname is not a symlink to libservicepoint.so.$version"
[ "$(readlink "$libdir/libservicepoint.so")" = "$soname" ] ||
  fail "$libdir/libservicepoint.so is not a symlink to $soname"
for f in "$prefix/include/servicepoint.h" "$libdir/pkgconfig/servicepoint.pc" \
  "$libdir/cmake/servicepoint/servicepointConfig.cmake" \
  "$libdir/cmake/servicepoint/servicepointConfigVersion.cmake"; do
  [ -f "$f" ] || fail "missing $f"
done
cmp -s "$prefix/include/servicepoint.h" "$repo/include/servicepoint.h" ||
  fail "installed header differs from include/servicepoint.h"
echo "library $real, symlinks $soname and libservicepoint.so, header, .pc, CMake config: ok"
have_static=0
if [ -f "$lib_dir/libservicepoint.a" ]; then
  cmp -s "$libdir/libservicepoint.a" "$lib_dir/libservicepoint.a" ||
    fail "libservicepoint.a not installed (or differs from $lib_dir/libservicepoint.a)"
  have_static=1
  echo "static library $libdir/libservicepoint.a: ok"
fi
readelf -d "$real" | grep -q "(SONAME).*\[$soname\]" ||
  { readelf -d "$real" | grep '(SONAME)' || true; fail "installed library has no SONAME $soname"; }
echo "installed library: SONAME $soname"

# Checks that an executable records the SONAME (not the dev symlink or a path) as NEEDED.
check_needed() {
  readelf -d "$1" | grep -q "(NEEDED).*\[$soname\]" ||
    { readelf -d "$1" | grep NEEDED; fail "$1 does not need $soname"; }
  if readelf -d "$1" | grep "(NEEDED)" | grep -v "\[$soname\]" | grep -q servicepoint; then
    readelf -d "$1" | grep NEEDED
    fail "$1 needs another servicepoint name besides $soname"
  fi
  echo "$(basename "$1") needs $soname"
}

# --- 4. CMake consumer -------------------------------------------------------------------------
step "CMake consumer (find_package, CMAKE_PREFIX_PATH=$prefix)"
cmake -S "$repo/examples/consumer" -B "$work/consumer-cmake" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Debug >"$work/consumer-cmake.log" 2>&1 ||
  { cat "$work/consumer-cmake.log"; fail "configuring examples/consumer"; }
grep 'servicepoint ' "$work/consumer-cmake.log" || true
found=$(sed -n 's/^servicepoint_DIR:[A-Z]*=//p' "$work/consumer-cmake/CMakeCache.txt")
[ "$found" = "$libdir/cmake/servicepoint" ] ||
  fail "find_package found servicepoint in '$found', not in $libdir/cmake/servicepoint"
cmake --build "$work/consumer-cmake" >"$work/consumer-build.log" 2>&1 ||
  { cat "$work/consumer-build.log"; fail "building examples/consumer"; }
check_needed "$work/consumer-cmake/app"
# No LD_LIBRARY_PATH: the build tree's RUNPATH points at the prefix.
(unset LD_LIBRARY_PATH; "$work/consumer-cmake/app") || fail "CMake-built app"

# --- 5. CMake consumer, static -----------------------------------------------------------------
if [ "$have_static" -eq 1 ]; then
  step "CMake consumer, static (servicepoint::servicepoint_static)"
  cmake -S "$repo/examples/consumer" -B "$work/consumer-static" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Debug -DSERVICEPOINT_STATIC=ON \
    >"$work/consumer-static.log" 2>&1 ||
    { cat "$work/consumer-static.log"; fail "configuring examples/consumer (static)"; }
  cmake --build "$work/consumer-static" >"$work/consumer-static-build.log" 2>&1 ||
    { cat "$work/consumer-static-build.log"; fail "building examples/consumer (static)"; }
  if readelf -d "$work/consumer-static/app" | grep "(NEEDED)" | grep -q servicepoint; then
    readelf -d "$work/consumer-static/app" | grep NEEDED
    fail "the static consumer still needs a shared libservicepoint"
  fi
  echo "app (static) needs no libservicepoint"
  (unset LD_LIBRARY_PATH; "$work/consumer-static/app") || fail "statically linked app"
fi

# --- 6. pkg-config consumer --------------------------------------------------------------------
step "pkg-config consumer (PKG_CONFIG_PATH=$libdir/pkgconfig)"
if command -v pkg-config >/dev/null 2>&1; then
  PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export PKG_CONFIG_PATH
  pc_version=$(pkg-config --modversion servicepoint) || fail "pkg-config --modversion"
  [ "$pc_version" = "$version" ] || fail "pkg-config says version $pc_version, not $version"
  flags=$(pkg-config --cflags --libs servicepoint)
  echo "pkg-config --cflags --libs servicepoint: $flags"
  # shellcheck disable=SC2086 # the flags are meant to split
  "$cc" -std=c99 -Wall -Wextra -Werror -I"$repo/examples/support" \
    "$repo/examples/consumer/app.c" "$repo/examples/support/loopback_server.c" \
    $flags -pthread -o "$work/app-pkgconfig" || fail "compiling app.c with pkg-config flags"
  check_needed "$work/app-pkgconfig"
  # Only the installed copy can be found: no RUNPATH, LD_LIBRARY_PATH = the prefix's lib.
  LD_LIBRARY_PATH="$libdir" "$work/app-pkgconfig" || fail "pkg-config-built app"
else
  skipped="$skipped pkg-config(not installed: apt-get install pkgconf)"
  echo "pkg-config not found: skipped"
fi

if [ -n "$skipped" ]; then
  echo "check_packaging: everything that ran passed; skipped:$skipped"
  exit 77
fi
static_part=""
[ "$have_static" -eq 0 ] || static_part=", static consumer"
echo "check_packaging: OK (SONAME $soname, install, CMake consumer$static_part, pkg-config consumer)"
