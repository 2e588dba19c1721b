#!/usr/bin/env bash
# Installs the backend library for C (backend/capi/): libwsgate_backend.so and .a into PREFIX/lib, the
# header wsgate_backend.h into PREFIX/include, and PREFIX/lib/pkgconfig/wsgate-backend.pc made
# for that prefix. Then:
#   PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cc app.c $(pkg-config --cflags --libs wsgate-backend)
#
#   scripts/install-backend-lib.sh PREFIX           builds (cargo build --release) first
#   LIB_DIR=target/release scripts/install-backend-lib.sh PREFIX   installs what is built there
# A router package installs the same files from a cross build (LIB_DIR=target/<triple>/release).
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
PREFIX="$1"
# '|' would break the sed below: refuse it rather than write a wrong .pc file.
case "$PREFIX" in *'|'*) echo "$0: PREFIX must not contain '|'" >&2; exit 2 ;; esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${LIB_DIR:-}" ]; then
    (cd "$ROOT" && cargo build --release -p wsgate-backend)
    LIB_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/backend/capi/Cargo.toml" | head -n 1)"

install -d "$PREFIX/lib/pkgconfig" "$PREFIX/include"
install -m 0755 "$LIB_DIR/libwsgate_backend.so" "$PREFIX/lib/"
if [ -f "$LIB_DIR/libwsgate_backend.a" ]; then
    install -m 0644 "$LIB_DIR/libwsgate_backend.a" "$PREFIX/lib/"
fi
install -m 0644 "$ROOT/backend/capi/include/wsgate_backend.h" "$PREFIX/include/"
sed -e "s|@PREFIX@|$PREFIX|" -e "s|@VERSION@|$VERSION|" "$ROOT/backend/capi/wsgate-backend.pc.in" \
    > "$PREFIX/lib/pkgconfig/wsgate-backend.pc"
echo "installed libwsgate_backend, wsgate_backend.h and wsgate-backend.pc under $PREFIX"
