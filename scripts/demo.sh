#!/usr/bin/env bash
# The bundled demo: builds the release binaries, then runs the gateway in the foreground from
# board/demo/wsgate.conf.in on port ${PORT:-8080}: the demo page at http://HOST:PORT/, and the
# sample echo backends (framed, stream, lines), started and stopped by the config's init_d.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
cargo build --release --bins
src="$PWD/board/demo"
bin="$PWD/target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/run" "$work/init.d"
fill() {
  sed -e "s|@DEMO@|$work|g" -e "s|@SRC@|$src|g" -e "s|@RUN@|$work/run|g" \
      -e "s|@BIN@|$bin|g" -e "s|@PORT@|${PORT:-8080}|g" "$1" > "$2"
}
fill "$src/wsgate.conf.in" "$work/wsgate.conf"
fill "$src/init.d/S10echo.in" "$work/init.d/S10echo"
chmod +x "$work/init.d/S10echo"
echo "wsgate demo: open http://127.0.0.1:${PORT:-8080}/ (Ctrl-C to stop)"
"$bin/wsgate" -f "$work/wsgate.conf" -v
