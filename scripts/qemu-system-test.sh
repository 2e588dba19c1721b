#!/usr/bin/env bash
# QEMU system test: boots a small Linux with 32 MB of RAM and an initramfs holding the static
# release binaries, starts websocket_echo and the gateway inside, drives load from the host
# through QEMU's port forwarding, checks every reply, and prints the guest's memory under load.
#
#   scripts/qemu-system-test.sh [GUEST...]      GUEST: mips (default), arm, mipsel
#
#   QEMU_MEM=32M        guest RAM            QEMU_CONNS=50     concurrent connections
#   QEMU_ROUNDS=2       passes over the message sizes per connection
#   QEMU_TIMEOUT=900    seconds before the guest is killed
#
# Guest PID 1 is board/qemu/init (a small static Rust program, see its docs); the kernel comes
# from scripts/qemu-kernel.sh (cached in .cache/kernel). Logs: reports/qemu-<guest>.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export RUSTC_BOOTSTRAP=1
unset RUSTFLAGS
MEM=${QEMU_MEM:-32M}
CONNS=${QEMU_CONNS:-50}
ROUNDS=${QEMU_ROUNDS:-2}
TIMEOUT=${QEMU_TIMEOUT:-900}
PY="$ROOT/.venv/bin/python"
mkdir -p "$ROOT/reports"

log() { printf 'qemu-system-test: %s\n' "$*" >&2; }

[ -x "$PY" ] || bash scripts/install-test-deps.sh
bash scripts/cross.sh setup
# The guest's init is its own crate (not in the gateway's package): hold it to the same rules.
cargo fmt --check --manifest-path board/qemu/init/Cargo.toml
nice -n 10 cargo clippy -q --release --manifest-path board/qemu/init/Cargo.toml -- -D warnings

boot() {
    local guest=$1 target qemu con pkg kernel stage initrd port logf qpid rc start
    case "$guest" in
        mips) target=mips-unknown-linux-musl; pkg="qemu-system-mips"
              qemu=(qemu-system-mips -M malta -vga none); con=ttyS0 ;;
        mipsel) target=mipsel-unknown-linux-musl; pkg="qemu-system-mips"
              qemu=(qemu-system-mipsel -M malta -vga none); con=ttyS0 ;;
        # highmem=off: a 32-bit kernel must see the PCI window (the e1000) below 4 GB.
        arm) target=armv7-unknown-linux-musleabihf; pkg="qemu-system-arm"
              qemu=(qemu-system-arm -M "virt,highmem=off" -cpu cortex-a15); con=ttyAMA0 ;;
        *) log "unknown guest '$guest' (mips, mipsel, arm)"; exit 2 ;;
    esac
    command -v "${qemu[0]}" >/dev/null 2>&1 || {
        log "installing $pkg"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
    }

    start=$(date +%s)
    kernel=$(bash scripts/qemu-kernel.sh "$guest")
    log "$guest kernel: $kernel ($(( $(date +%s) - start ))s)"
    bash scripts/cross.sh build "$target"
    # The guest's init, built with the same toolchain settings (.cargo/config.toml) into the
    # same target directory, so it reuses the std just built for the gateway.
    nice -n 10 cargo build -q --release --target "$target" "-Zbuild-std=std,panic_abort" \
        "-Zbuild-std-features=panic-unwind" \
        --manifest-path board/qemu/init/Cargo.toml

    stage=$(mktemp -d)
    mkdir -p "$stage"/{bin,etc,dev,proc,sys,run}
    cp "$CARGO_TARGET_DIR/$target/release/init" "$stage/init"
    cp "$CARGO_TARGET_DIR/$target/release/wsgate" "$CARGO_TARGET_DIR/$target/release/websocket_echo" "$stage/bin/"
    cp board/qemu/wsgate.conf "$stage/etc/wsgate.conf"
    # The kernel opens /dev/console for init before devtmpfs is mounted.
    mknod -m 600 "$stage/dev/console" c 5 1
    initrd="$CARGO_TARGET_DIR/qemu-$guest.cpio.gz"
    (cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$initrd"
    rm -rf "$stage"
    log "initramfs $(stat -c %s "$initrd") bytes (gzip)"

    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    logf="$ROOT/reports/qemu-$guest.log"
    start=$(date +%s)
    # restrict=on: the guest reaches nothing; only the forwarded port on the host's loopback.
    timeout "$TIMEOUT" "${qemu[@]}" -m "$MEM" -nographic -no-reboot -monitor none \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=$con rdinit=/init panic=-1 quiet" \
        -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:8080" \
        -device e1000,netdev=n0,romfile= </dev/null >"$logf" 2>&1 &
    qpid=$!
    while ! grep -q 'WSGATE-GUEST: READY' "$logf"; do
        if ! kill -0 "$qpid" 2>/dev/null || grep -q 'WSGATE-GUEST: FAIL' "$logf"; then
            cat "$logf" >&2
            log "$guest: the guest stopped before it was ready"
            return 1
        fi
        sleep 0.2
    done
    log "$guest: guest ready $(( $(date +%s) - start ))s after qemu started ($MEM RAM)"
    grep -E 'WSGATE-GUEST: (kernel|boot|started|smaps idle)' "$logf" >&2
    set +e
    timeout "$TIMEOUT" "$PY" tests/board/qemu_load.py --port "$port" --conns "$CONNS" --rounds "$ROUNDS"
    rc=$?
    wait "$qpid"
    set -e
    log "$guest: qemu done $(( $(date +%s) - start ))s after start"
    grep -E 'WSGATE-GUEST: (smaps after|wsgate exited|oom_kill|PASS|FAIL|log )' "$logf" >&2 || true
    if grep -qiE 'out of memory|oom-kill|invoked oom-killer' "$logf"; then
        log "$guest: the guest ran out of memory"
        return 1
    fi
    if [ "$rc" -ne 0 ] || ! grep -q 'WSGATE-GUEST: PASS' "$logf"; then
        tail -n 40 "$logf" >&2
        log "$guest: FAILED (load exit $rc; log in $logf)"
        return 1
    fi
    log "$guest: PASS ($CONNS connections, $MEM RAM)"
}

[ $# -gt 0 ] || set -- mips
for g in "$@"; do
    boot "$g"
done
