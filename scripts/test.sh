#!/usr/bin/env bash
# The one test command: formatting, lints, build, Rust tests, a fuzz smoke run, end-to-end tests
# (the fault suite included), a 2-minute soak under a 16 MB memory limit, Autobahn, packaging
# tests, router cross builds with their tests under qemu-user, a QEMU system boot.
# Stops at the first failing step. Ends with a line "N passed, N failed" counting the pytest
# tests and the Autobahn cases (when those steps ran).
#
#   scripts/test.sh                     everything
#   SKIP_SOAK=1 scripts/test.sh         without the 2-minute soak
#   SKIP_AUTOBAHN=1 scripts/test.sh     without the Autobahn runs
#   SKIP_FUZZ=1 scripts/test.sh         without the fuzz smoke run
#   SKIP_CROSS=1 scripts/test.sh        without the cross builds and qemu-user tests
#   SKIP_QEMU_SYSTEM=1 scripts/test.sh  without the QEMU system boot
#   QEMU_GUESTS="mips arm" scripts/test.sh   system-boot these guests (default: mips)
#   PYTEST_ARGS="-k relay" scripts/test.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

REPORTS="$ROOT/reports"
mkdir -p "$REPORTS"
rm -f "$REPORTS"/pytest*.xml "$REPORTS"/autobahn-*.summary.json
PY="$ROOT/.venv/bin/python"
STEP=""
START=$(date +%s)

step() {
    STEP="$1"
    printf '\n==> [%s] %s\n' "$(( $(date +%s) - START ))s" "$STEP"
}

summary() {
    # pytest junit xml + autobahn summaries -> "N passed, N failed"
    [ -x "$PY" ] || return 0
    "$PY" - "$REPORTS" <<'EOF' || true
import json, sys, glob, os
import xml.etree.ElementTree as ET
reports = sys.argv[1]
passed = failed = 0
ran = False
for xml in sorted(glob.glob(os.path.join(reports, "pytest*.xml"))):
    ran = True
    for suite in ET.parse(xml).getroot().iter("testsuite"):
        tests = int(suite.get("tests", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        passed += tests - bad - skipped
        failed += bad
for path in sorted(glob.glob(os.path.join(reports, "autobahn-*.summary.json"))):
    ran = True
    s = json.load(open(path))
    print(f"autobahn {s['mode']}: {s['passed']} cases as expected, {s['failed']} not")
    passed += s["passed"]
    failed += s["failed"]
if ran:
    print(f"{passed} passed, {failed} failed")
EOF
}

on_exit() {
    rc=$?
    echo
    if [ "$rc" -ne 0 ]; then
        echo "scripts/test.sh: FAILED at step: $STEP (exit $rc)"
    else
        echo "scripts/test.sh: all steps passed in $(( $(date +%s) - START ))s"
    fi
    summary
    exit "$rc"
}
trap on_exit EXIT

step "install test dependencies"
bash scripts/install-test-deps.sh

step "cargo fmt --all --check"
# --all: the plugin crates of the workspace too.
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo build --release (binaries, JSON-RPC plugins, examples)"
cargo build --release
# examples: wsload, the load generator of scripts/bench.py, has a smoke test in tests/py
cargo build --release --examples

step "cargo test --release"
cargo test --release

if [ -z "${SKIP_FUZZ:-}" ]; then
    step "fuzz smoke: saved crashes replayed, 10 s of libFuzzer per target (scripts/fuzz.sh)"
    timeout 900 bash scripts/fuzz.sh smoke 10
fi

export WSGATE_BIN="$ROOT/target/release/wsgate"
export WSGATE_ECHO_BIN="$ROOT/target/release/websocket_echo"

step "pytest tests/py"
# shellcheck disable=SC2086
timeout 1500 "$PY" -m pytest tests/py -q -rfE --junitxml="$REPORTS/pytest.xml" ${PYTEST_ARGS:-}

if [ -z "${SKIP_SOAK:-}" ]; then
    step "soak: 2 minutes, slab full, mixed traffic, under a 16 MB memory limit (scripts/soak.py)"
    # ~125 s; 10 minutes by hand: scripts/soak.py (the default duration).
    timeout 300 "$PY" scripts/soak.py --duration 120 --report "$REPORTS/soak.json"
fi

if [ -z "${SKIP_AUTOBAHN:-}" ]; then
    # The two longest runs side by side: framed over ws:// and over wss:// (through a client-side
    # TLS tunnel). Groups 12 and 13 compress, and each run then keeps about one core busy.
    step "autobahn (framed over ws://, and beside it over wss:// through a client-side TLS tunnel)"
    tls_out="$REPORTS/autobahn-framed-tls.out"
    timeout 1500 "$PY" scripts/autobahn.py --mode framed --tls >"$tls_out" 2>&1 &
    tls_pid=$!
    framed_rc=0
    timeout 1500 "$PY" scripts/autobahn.py --mode framed || framed_rc=$?
    tls_rc=0
    wait "$tls_pid" || tls_rc=$?
    echo "---- autobahn framed over wss:// ----"
    cat "$tls_out"
    if [ "$framed_rc" -ne 0 ] || [ "$tls_rc" -ne 0 ]; then
        echo "autobahn: framed exited $framed_rc, framed over wss:// exited $tls_rc"
        exit 1
    fi
    for mode in stream seqpacket; do
        step "autobahn ($mode)"
        timeout 1500 "$PY" scripts/autobahn.py --mode "$mode"
    done
    step "autobahn (direct: the gateway hands the client's socket to websocket_echo -d)"
    timeout 900 "$PY" scripts/autobahn.py --mode direct
    step "autobahn (tcp: framed through a tcp: link to websocket_echo --tcp)"
    timeout 900 "$PY" scripts/autobahn.py --mode tcp
    step "autobahn (exec: framed through a program per connection, websocket_echo --stdio)"
    timeout 900 "$PY" scripts/autobahn.py --mode exec
fi

step "packaging tests (tests/board: shellcheck, OpenWrt UCI, procd and rpcd plugin, SysV script, systemd unit)"
timeout 600 "$PY" -m pytest tests/board -q -rfE -p no:cacheprovider --junitxml="$REPORTS/pytest-board.xml"

if [ -z "${SKIP_CROSS:-}" ]; then
    step "cross builds and tests under qemu-user (scripts/cross.sh ci)"
    timeout 2400 bash scripts/cross.sh ci
fi

if [ -z "${SKIP_QEMU_SYSTEM:-}" ]; then
    step "QEMU system test, 32 MB guest (scripts/qemu-system-test.sh ${QEMU_GUESTS:-mips})"
    # shellcheck disable=SC2086 # a list of guests
    timeout 2400 bash scripts/qemu-system-test.sh ${QEMU_GUESTS:-mips}
fi
