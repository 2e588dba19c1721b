#!/usr/bin/env bash
# Installs what the end-to-end tests need. Idempotent: a second run installs nothing.
#
#   * Debian packages: procps, openssl, chromium (the browser tests), gcc (the C plugin test),
#     g++ (libFuzzer, for scripts/fuzz.sh), pkg-config (the backend library's C test),
#     the packaging tests' tools (tests/board: a shell linter, dpkg's start-stop-daemon),
#     iproute2 (`ip`: the half-open TCP fault test), and python3-venv when `python3 -m venv`
#     does not work.
#   * .venv in the repo root with the pinned Python packages of tests/py/requirements.txt
#     (websockets: the real client; pytest; kosoku: the Autobahn|Testsuite runner;
#     playwright: drives /usr/bin/chromium, never downloads a browser).
#   * checks that cargo, rustfmt and clippy are there (they cannot be installed from here).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQS="tests/py/requirements.txt"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

log() { printf 'install-test-deps: %s\n' "$*"; }

# ---- Debian packages -------------------------------------------------------------------
missing=()
command -v ps >/dev/null 2>&1 || missing+=(procps)
# The TLS tests make RSA, PKCS#1 and SEC1 keys with the openssl command.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v "$PY" >/dev/null 2>&1 || missing+=(python3)
# The browser tests drive Debian's chromium (Playwright's own browser download is never used).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The plugin ABI test compiles a C plugin against backend/plugins/wsgate_rpc.h.
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
# The backend library's C test builds with the flags of its pkg-config file.
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# The fuzz targets (scripts/fuzz.sh) link libFuzzer, which libfuzzer-sys builds from C++.
command -v g++ >/dev/null 2>&1 || missing+=(g++)
# tests/board: every shell script must be shellcheck-clean; the SysV script uses start-stop-daemon.
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v start-stop-daemon >/dev/null 2>&1 || missing+=(dpkg)
# scripts/autobahn.py --tls: kosoku speaks only ws://, socat carries it over TLS.
command -v socat >/dev/null 2>&1 || missing+=(socat)
# test_faults.py's half-open TCP test takes an address away in a private network namespace.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)

venv_ok() {
    local tmp
    tmp="$(mktemp -d)"
    if "$PY" -m venv "$tmp/v" >/dev/null 2>&1 && [ -x "$tmp/v/bin/pip" ]; then
        rm -rf "$tmp"
        return 0
    fi
    rm -rf "$tmp"
    return 1
}
if [ ! -x "$VENV/bin/python" ] && command -v "$PY" >/dev/null 2>&1 && ! venv_ok; then
    missing+=(python3-venv python3-pip)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    # A Debian python3 may now be the one that has venv.
    if ! venv_ok && [ -x /usr/bin/python3 ]; then
        PY=/usr/bin/python3
    fi
fi

# ---- Python venv -------------------------------------------------------------------------
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "removing a broken .venv"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating .venv with $("$PY" --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
if "$VENV/bin/python" - "$REQS" <<'EOF'
import sys
from importlib import metadata
ok = True
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, version = line.partition("==")
    try:
        ok &= metadata.version(name) == version
    except metadata.PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
EOF
then
    log "python packages already installed ($(grep -v '^#' "$REQS" | tr '\n' ' '))"
else
    log "pip installing $REQS into .venv"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
fi

# ---- Rust toolchain ----------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "ERROR: cargo not found on PATH."
    log "Install a Rust toolchain (>= 1.85) with rustup: https://rustup.rs"
    log "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --component rustfmt,clippy"
    log "then: source \$HOME/.cargo/env"
    exit 1
fi
for sub in fmt clippy; do
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        log "ERROR: 'cargo $sub' is missing: rustup component add $([ $sub = fmt ] && echo rustfmt || echo clippy)"
        exit 1
    fi
done
log "ok: $(cargo --version), $("$VENV/bin/python" --version)"
