#!/usr/bin/env bash
# The bundled demo: builds the release binaries, starts one sample echo backend per relay mode
# in a fresh docroot, and runs the gateway in the foreground on port ${PORT:-8080}.
# Try it:  python3 -m websockets ws://127.0.0.1:8080/echo        (stream mode)
#          python3 -m websockets ws://127.0.0.1:8080/framed      (framed mode)
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
cargo build --release --bins
docroot=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-demo.XXXXXX")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$docroot"; }
trap cleanup EXIT INT TERM
for mode in stream lines framed seqpacket; do
  name=$mode
  [ "$mode" = stream ] && name=echo
  target/release/websocket_echo -R "$docroot" -n "$name" -m "$mode" &
  pids+=($!)
done
target/release/wsgate -a "${ADDR:-0.0.0.0}" -p "${PORT:-8080}" -R "$docroot" \
  -m lines=lines -m framed=framed -v &
pids+=($!)
wait "${pids[-1]}"
