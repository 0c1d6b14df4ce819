#!/bin/sh
# check_symbols.sh LIBRARY HEADER [CC]
#
# The library's exported sp_ functions and the header's declared functions must be the same
# set. Catches an export missing from the header (stale header, or an extern "C" function
# cbindgen skipped), a declaration with no export (missing #[no_mangle], a renamed or removed
# function, a stale header), and exports outside the sp_ namespace (a stray #[no_mangle]).
#
#   LIBRARY  the built shared library, e.g. target/debug/libservicepoint.so
#   HEADER   include/servicepoint.h
#   CC       C compiler used to preprocess the header (default: $CC, else cc)
#
# Exports: `nm -D --defined-only`, function symbols (types T, W, i). Declarations: the header
# run through the C preprocessor (comments and macros gone), then every `sp_name(`: function
# pointer typedefs such as `(*sp_body_read_cb)(` do not match. Exit 0 if the sets are equal,
# 1 with the differences printed otherwise, 77 (ctest: skipped) if nm is missing.
set -eu

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 LIBRARY HEADER [CC]" >&2
  exit 2
fi
lib=$1
header=$2
cc=${3:-${CC:-cc}}

if ! command -v nm >/dev/null 2>&1; then
  echo "check_symbols: nm not found (Debian package binutils): skipped" >&2
  exit 77
fi
[ -f "$lib" ] || { echo "check_symbols: no library at $lib" >&2; exit 1; }
[ -f "$header" ] || { echo "check_symbols: no header at $header" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every defined dynamic symbol: "<address> <type> <name>" (sort -u: nm may list versions).
nm -D --defined-only "$lib" | awk 'NF >= 3 { print $2, $3 }' | sort -u >"$tmp/all"
awk '$1 ~ /^[TWi]$/ && $2 ~ /^sp_/ { print $2 }' "$tmp/all" | sort -u >"$tmp/exported"

# Declared functions: preprocess (as C, so no extern "C" block), put everything on one line per
# declaration, and take each `sp_name (`.
"$cc" -E -P -x c "$header" >"$tmp/pp"
tr '\n' ' ' <"$tmp/pp" | tr ';' '\n' |
  grep -o '\bsp_[A-Za-z0-9_]*[[:space:]]*(' | sed 's/[[:space:]]*($//' | sort -u >"$tmp/declared"

status=0
comm -23 "$tmp/exported" "$tmp/declared" >"$tmp/undeclared"
comm -13 "$tmp/exported" "$tmp/declared" >"$tmp/unexported"
if [ -s "$tmp/undeclared" ]; then
  echo "exported by $lib but not declared in $header:"
  sed 's/^/  /' "$tmp/undeclared"
  status=1
fi
if [ -s "$tmp/unexported" ]; then
  echo "declared in $header but not exported by $lib:"
  sed 's/^/  /' "$tmp/unexported"
  status=1
fi

# sp_ data symbols: the header declares none, so any is an accident.
awk '$1 !~ /^[TWi]$/ && $2 ~ /^sp_/ { print "  " $2 " (nm type " $1 ")" }' "$tmp/all" \
  >"$tmp/data"
if [ -s "$tmp/data" ]; then
  echo "exported sp_ symbols that are not functions:"
  cat "$tmp/data"
  status=1
fi

# Everything exported must be in the sp_ namespace (a few linker-made symbols excepted).
awk '$2 !~ /^sp_/ && $2 !~ /^(_init|_fini|_edata|_end|__bss_start)$/ {
       print "  " $2 " (nm type " $1 ")"
     }' "$tmp/all" >"$tmp/foreign"
if [ -s "$tmp/foreign" ]; then
  echo "exported symbols outside the sp_ namespace:"
  cat "$tmp/foreign"
  status=1
fi

if [ "$status" -eq 0 ]; then
  echo "symbols_vs_header: $(wc -l <"$tmp/exported") exported sp_ functions," \
    "$(wc -l <"$tmp/declared") declared in the header: identical"
fi
exit "$status"
