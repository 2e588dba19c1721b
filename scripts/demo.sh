#!/usr/bin/env bash
# The bundled demo: builds the release binaries, then runs the gateway in the foreground from
# board/demo/wsgate.conf.in on port ${PORT:-8080} (http:// and ws://) and ${TLS_PORT:-8443}
# (https:// and wss://, with a self-signed certificate made here by openssl): the demo pages at
# http://HOST:PORT/ and https://HOST:TLS_PORT/ (echo,
# webchat.html, webauth.html, websysinfo.html, websql.html), and the sample servers (echo
# backends in framed, stream and lines modes, websocket_chat -w, websocket_jsonrpc with the
# auth, sysinfo and sql plugins), started and stopped by the config's init_d.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl not found (for the demo's certificate): apt-get install openssl" >&2; exit 1; }
# The whole workspace: the binaries and the JSON-RPC plugins.
cargo build --release
src="$PWD/board/demo"
bin="$PWD/target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/run" "$work/init.d"
# A self-signed certificate for this host's names, valid for a week.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
  -keyout "$work/demo.key" -out "$work/demo.crt" -subj "/CN=wsgate demo" \
  -addext "subjectAltName=DNS:localhost,DNS:$(hostname),IP:127.0.0.1" 2>/dev/null
fill() {
  sed -e "s|@DEMO@|$work|g" -e "s|@SRC@|$src|g" -e "s|@RUN@|$work/run|g" \
      -e "s|@BIN@|$bin|g" -e "s|@PORT@|${PORT:-8080}|g" -e "s|@TLSPORT@|${TLS_PORT:-8443}|g" \
      -e "s|@CERT@|$work/demo.crt|g" -e "s|@KEY@|$work/demo.key|g" "$1" > "$2"
}
fill "$src/wsgate.conf.in" "$work/wsgate.conf"
for script in S10echo S20samples; do
  fill "$src/init.d/$script.in" "$work/init.d/$script"
  chmod +x "$work/init.d/$script"
done
echo "wsgate demo: open http://127.0.0.1:${PORT:-8080}/ or https://127.0.0.1:${TLS_PORT:-8443}/ (self-signed certificate; Ctrl-C to stop)"
# In the background, so that a SIGTERM or SIGINT to this script reaches the gateway first: it
# closes its connections and runs the init_d "stop" scripts before the work directory goes.
"$bin/wsgate" -f "$work/wsgate.conf" -v &
gw=$!
cleanup() {
  trap - EXIT INT TERM
  kill -TERM "$gw" 2>/dev/null || true
  wait "$gw" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
wait "$gw"
