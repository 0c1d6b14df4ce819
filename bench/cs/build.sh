#!/usr/bin/env bash
# Builds the C# bench client for Mono: <repo>/target/bench/Bench.exe from bench/cs/Bench.cs and
# the binding's sources bindings/csharp/src/*.cs, with `mcs -langversion:7.2 -optimize+`. Works from any
# directory. Installs the Mono packages when missing (apt-get as root, else sudo apt-get):
#   mono-mcs mono-runtime libmono-corlib4.5-cil libmono-system4.0-cil libmono-system-core4.0-cil
#   libmono-system-net-http4.0-cil (HttpClient, for the asynchronous scenarios)
# Run it with the library on LD_LIBRARY_PATH, e.g.
#   cargo build --release
#   LD_LIBRARY_PATH=target/release mono target/bench/Bench.exe sp http://127.0.0.1:8080/small 3 1 2 -1
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PACKAGES=(mono-mcs mono-runtime libmono-corlib4.5-cil libmono-system4.0-cil libmono-system-core4.0-cil libmono-system-net-http4.0-cil)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
elif ! command -v mcs >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then
    missing=("${PACKAGES[@]}")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    apt=(apt-get)
    [[ "$(id -u)" -eq 0 ]] || apt=(sudo apt-get)
    echo "build.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; then
        "${apt[@]}" update
        "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
    fi
fi

mkdir -p "$ROOT/target/bench"
mcs -langversion:7.2 -target:exe -unsafe -optimize+ -debug -warn:4 -r:System.dll -r:System.Core.dll -r:System.Net.Http.dll \
    -out:"$ROOT/target/bench/Bench.exe" "$HERE/Bench.cs" "$ROOT"/bindings/csharp/src/*.cs
echo "built $ROOT/target/bench/Bench.exe"
