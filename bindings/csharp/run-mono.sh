#!/usr/bin/env bash
# Builds and runs the C# binding's tests on Mono.
#
#   bash bindings/csharp/run-mono.sh [LIBDIR]
#
# LIBDIR is the directory holding libservicepoint.so (default: <repo>/target/debug; build it
# with `cargo build`). Works from any directory. Installs the Mono packages it needs when they
# are missing (apt-get as root, else sudo apt-get):
#   mono-mcs mono-runtime libmono-corlib4.5-cil libmono-system4.0-cil libmono-system-core4.0-cil
# Compiles, with `mcs -langversion:7.2`, into <repo>/target/csharp/:
#   Servicepoint.dll       = src/*.cs (the library, as Servicepoint.csproj builds it)
#   Servicepoint.Tests.exe = tests/*.cs, referencing Servicepoint.dll
#   Sample.exe             = sample/Sample.cs, referencing Servicepoint.dll
# then runs `mono --debug Servicepoint.Tests.exe` with LD_LIBRARY_PATH=LIBDIR and exits with its status
# (0 all passed, 1 a check failed, 2 the watchdog fired or usage error, 77 Mono unavailable,
# 124 the run exceeded its time limit).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PACKAGES=(mono-mcs mono-runtime libmono-corlib4.5-cil libmono-system4.0-cil libmono-system-core4.0-cil)

LIBDIR="${1:-$ROOT/target/debug}"
if [[ ! -d "$LIBDIR" ]]; then
    echo "run-mono.sh: library directory '$LIBDIR' does not exist (run 'cargo build' first)" >&2
    exit 2
fi
LIBDIR="$(cd "$LIBDIR" && pwd)"
if [[ ! -e "$LIBDIR/libservicepoint.so" ]]; then
    echo "run-mono.sh: no libservicepoint.so in $LIBDIR (run 'cargo build' first)" >&2
    exit 2
fi

missing_packages() {
    local pkg missing=()
    if command -v dpkg-query >/dev/null 2>&1; then
        for pkg in "${PACKAGES[@]}"; do
            if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
                missing+=("$pkg")
            fi
        done
    elif ! command -v mcs >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then
        missing=("${PACKAGES[@]}")
    fi
    echo "${missing[@]:-}"
}

install_packages() {
    local -a missing
    read -r -a missing <<<"$(missing_packages)"
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local -a apt
    if [[ "$(id -u)" -eq 0 ]]; then
        apt=(apt-get)
    elif command -v sudo >/dev/null 2>&1; then
        apt=(sudo apt-get)
    else
        echo "run-mono.sh: missing packages ${missing[*]} and neither root nor sudo" >&2
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "run-mono.sh: missing packages ${missing[*]} and no apt-get" >&2
        return 1
    fi
    echo "run-mono.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; then
        "${apt[@]}" update
        "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
    fi
}

if ! install_packages; then
    echo "run-mono.sh: warning: could not install the missing packages; trying with what is installed" >&2
fi
if ! command -v mcs >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then
    echo "run-mono.sh: Mono (mcs, mono) is not available; skipping" >&2
    exit 77
fi

OUT="$ROOT/target/csharp"
mkdir -p "$OUT"
MCS=(mcs -langversion:7.2 -debug -warn:4 -r:System.dll -r:System.Core.dll)
"${MCS[@]}" -target:library -unsafe -optimize+ -out:"$OUT/Servicepoint.dll" "$HERE"/src/*.cs
"${MCS[@]}" -target:exe -unsafe -r:"$OUT/Servicepoint.dll" -out:"$OUT/Servicepoint.Tests.exe" "$HERE"/tests/*.cs
"${MCS[@]}" -target:exe -r:"$OUT/Servicepoint.dll" -out:"$OUT/Sample.exe" "$HERE/sample/Sample.cs"

export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
status=0
if command -v timeout >/dev/null 2>&1; then
    timeout -k 10 600 mono --debug "$OUT/Servicepoint.Tests.exe" || status=$?
else
    mono --debug "$OUT/Servicepoint.Tests.exe" || status=$?
fi
exit "$status"
