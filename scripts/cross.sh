#!/usr/bin/env bash
# Cross builds and qemu-user tests for the router targets (cross/README.md).
#
#   scripts/cross.sh setup            install the tools (apt, rust-src, zig from PyPI); idempotent
#   scripts/cross.sh build [T...]     static, stripped release builds of every [[bin]]
#   scripts/cross.sh build-small [T...]   the same in release-small, the profile users flash
#                                     (the OpenWrt and Buildroot packages build it; board/sizes.md)
#   scripts/cross.sh budget           build the release-small armv7-musl gateway, fail above 900 KiB
#   scripts/cross.sh test [T...]      cargo test (unit + integration) under qemu-user
#   scripts/cross.sh sizes [T...]     build both profiles, measure the size levers, write board/sizes.md
#   scripts/cross.sh all              setup, then build and test every target
#   scripts/cross.sh ci               what scripts/test.sh runs: setup, build and test $CROSS_CI_TARGETS,
#                                     then the size budget
#
# T defaults to all five targets. Binaries land in $CARGO_TARGET_DIR/<T>/release/ (and
# <T>/release-small/).
#
# std is built from source (-Zbuild-std, with RUSTC_BOOTSTRAP=1 on the stable toolchain), so
# no `rustup target add` is needed, and the tier-3 MIPS targets work the same way as the others.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export RUSTC_BOOTSTRAP=1
# .cargo/config.toml holds the per-target rustflags; a RUSTFLAGS variable would replace them.
unset RUSTFLAGS

ALL_TARGETS=(
    armv7-unknown-linux-musleabihf
    aarch64-unknown-linux-musl
    mipsel-unknown-linux-musl
    mips-unknown-linux-musl
    armv7-unknown-linux-gnueabihf
)
# CI: big-endian MIPS and armv7 (tests under qemu-user); the others build on demand.
read -r -a CI_TARGETS <<<"${CROSS_CI_TARGETS:-mips-unknown-linux-musl armv7-unknown-linux-musleabihf}"
BUILD_STD=("-Zbuild-std=std,panic_abort")
# For the shipped binaries: std without its backtrace symbolizer (cargo's default build-std
# features minus `backtrace`). The binaries are stripped, so it would have no symbols to show;
# panic messages are unchanged. Saves about 175 KiB per binary (board/sizes.md).
RELEASE_STD=("-Zbuild-std=std,panic_abort" "-Zbuild-std-features=panic-unwind")
# The release-small profile (Cargo.toml), as the packages build it: panic = "immediate-abort"
# (no panic messages or unwinding code: a panic is a bare SIGTRAP/SIGILL; nightly-only, hence
# only in this profile, through RUSTC_BOOTSTRAP) and std built for size, without its backtrace
# symbolizer. board/openwrt/Makefile and board/buildroot/wsgate.mk pass the same flags.
SMALL_STD=("-Zbuild-std=std,panic_abort" "-Zbuild-std-features=optimize_for_size")
SMALL_EXTRA=(-Zpanic-immediate-abort --config 'profile.release-small.panic="immediate-abort"')
# The packages' default build leaves permessage-deflate out (its cargo feature, on by default
# for host builds, adds about 93 KiB on armv7: board/sizes.md); their WSGATE_DEFLATE option
# puts it back. release-small builds what they ship by default.
SHIPPED_FEATURES=(--no-default-features)
# The size budget (board/sizes.md): the shipped armv7-musl gateway, TLS included.
BUDGET_TARGET=armv7-unknown-linux-musleabihf
BUDGET_BYTES=$((900 * 1024))
# Seconds one test binary may run under qemu-user (the slowest, the zero-allocation relay, takes
# about 100 s on the CI machine's cores).
QEMU_TEST_TIMEOUT=${QEMU_TEST_TIMEOUT:-900}
ZIG_VERSION=0.17.1

log() { printf 'cross: %s\n' "$*" >&2; }

qemu_for() {
    case "$1" in
        armv7-*) echo qemu-arm ;;
        aarch64-*) echo qemu-aarch64 ;;
        mipsel-*) echo qemu-mipsel ;;
        mips-*) echo qemu-mips ;;
        *) log "unknown target $1"; exit 2 ;;
    esac
}

check_target() {
    local t
    for t in "${ALL_TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
    log "unknown target '$1' (known: ${ALL_TARGETS[*]})"
    exit 2
}

cmd_setup() {
    local need=() p
    for p in qemu-user qemu-user-static binfmt-support gcc-arm-linux-gnueabihf \
             libc6-dev-armhf-cross file python3-venv; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        log "installing ${need[*]}"
        local sudo=
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    # std's sources, for -Zbuild-std (the only change to the toolchain).
    rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src
    # zig (C compiler, linker and musl for the musl targets) from PyPI, in its own venv.
    local venv="$ROOT/.cache/cross-venv"
    if ! "$venv/bin/python" -c "import ziglang, importlib.metadata as m; \
            assert m.version('ziglang') == '$ZIG_VERSION'" 2>/dev/null; then
        log "installing ziglang==$ZIG_VERSION into .cache/cross-venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "ziglang==$ZIG_VERSION"
    fi
    mkdir -p "$ROOT/.cache/bin"
    ln -sf "$("$venv/bin/python" -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')/zig" \
        "$ROOT/.cache/bin/zig"
    # The integration tests spawn the target's binaries (CARGO_BIN_EXE_*): the kernel must hand
    # foreign ELF files to qemu-user (binfmt_misc, registered by qemu-user-static).
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-mips ] && command -v update-binfmts >/dev/null; then
        update-binfmts --enable >/dev/null 2>&1 || true
    fi
    log "ok: $(rustc --version), zig $("$ROOT/.cache/bin/zig" version), $(qemu-mips --version | head -n 1)"
}

# cargo for one target, with std built from source.
xcargo() {
    local sub=$1 t=$2
    shift 2
    cargo "$sub" --target "$t" "${BUILD_STD[@]}" "$@"
}

check_static() {
    local f=$1 desc
    desc=$(file -b "$f")
    case "$desc" in
        *"statically linked"*stripped*) ;;
        *) log "$f is not a static stripped executable: $desc"; return 1 ;;
    esac
}

bins() {
    # Every [[bin]] of the package, from cargo's own view of the manifest.
    cargo metadata --no-deps --format-version 1 |
        python3 -c 'import json,sys; print("\n".join(t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "bin" in t["kind"]))'
}

# build T [profile]: all bins, checked static and stripped.
build_one() {
    local t=$1 profile=${2:-release} start b std=("${RELEASE_STD[@]}") extra=()
    if [ "$profile" = release-small ]; then
        std=("${SMALL_STD[@]}")
        extra=("${SMALL_EXTRA[@]}" "${SHIPPED_FEATURES[@]}")
    fi
    start=$(date +%s)
    nice -n 10 cargo build --target "$t" "${std[@]}" --profile "$profile" --bins "${extra[@]}" -q
    for b in $(bins); do
        check_static "$CARGO_TARGET_DIR/$t/$profile/$b"
        printf '%-32s %-14s %-16s %9d bytes\n' "$t" "$profile" "$b" "$(stat -c %s "$CARGO_TARGET_DIR/$t/$profile/$b")"
    done
    log "built $t ($profile) in $(( $(date +%s) - start ))s"
    if [ "$t" = "$BUDGET_TARGET" ] && [ "$profile" = release-small ]; then check_budget; fi
}

# The shipped gateway of the budget target must stay within the budget.
check_budget() {
    local f="$CARGO_TARGET_DIR/$BUDGET_TARGET/release-small/wsgate" n
    n=$(stat -c %s "$f")
    if [ "$n" -gt "$BUDGET_BYTES" ]; then
        log "size budget: the release-small $BUDGET_TARGET gateway is $n bytes," \
            "$((n - BUDGET_BYTES)) over the budget of $BUDGET_BYTES (board/sizes.md says what costs what)"
        return 1
    fi
    log "size budget: release-small $BUDGET_TARGET gateway $n bytes <= $BUDGET_BYTES ($((BUDGET_BYTES - n)) to spare)"
}

# Only the gateway (CI: the sample servers' sizes have no budget).
cmd_budget() {
    local start
    start=$(date +%s)
    local f="$CARGO_TARGET_DIR/$BUDGET_TARGET/release-small/wsgate" n
    # With the deflate feature first (reported, not budgeted), then as shipped (budgeted).
    nice -n 10 cargo build --target "$BUDGET_TARGET" "${SMALL_STD[@]}" --profile release-small \
        --bin wsgate "${SMALL_EXTRA[@]}" -q
    n=$(stat -c %s "$f")
    nice -n 10 cargo build --target "$BUDGET_TARGET" "${SMALL_STD[@]}" --profile release-small \
        --bin wsgate "${SMALL_EXTRA[@]}" "${SHIPPED_FEATURES[@]}" -q
    check_static "$f"
    log "size: release-small $BUDGET_TARGET gateway with the deflate feature $n bytes" \
        "(+$((n - $(stat -c %s "$f"))) bytes; budget $BUDGET_BYTES)"
    check_budget
    log "budget check in $(( $(date +%s) - start ))s"
}

cmd_build() {
    local t
    [ $# -gt 0 ] || set -- "${ALL_TARGETS[@]}"
    for t in "$@"; do check_target "$t"; build_one "$t"; done
}

# Tests under qemu-user, in the qemu-test profile (Cargo.toml): optimized, with unwinding.
# Listed in cross/README.md with the reasons:
# * run alone, after the others: the heap measurement with the process-wide counting
#   allocator (under emulation a concurrent test's allocations landed in its window);
# * excluded (test:name, printed when skipped): none. The log rate-limit burst test was, until
#   it learnt to allow for the tokens refilled while its loop runs (slow under emulation).
ALONE=(tls_config:heap_per_connection)
EXCLUDED=()

test_one() {
    local t=$1 start out rc=0 skip=() a
    start=$(date +%s)
    if [ ! -e "/proc/sys/fs/binfmt_misc/$(qemu_for "$t")" ]; then
        log "warning: no binfmt_misc entry for $(qemu_for "$t"): the integration tests cannot spawn the binaries"
    fi
    for a in "${ALONE[@]}" "${EXCLUDED[@]}"; do skip+=(--skip "${a#*:}"); done
    for a in "${EXCLUDED[@]}"; do log "$t: not run under qemu: ${a%%:*}::${a#*:} (timing; cross/README.md)"; done
    out=$(mktemp)
    # Each test binary runs under its own time limit (the runner of .cargo/config.toml behind
    # `timeout`, which ends the binary's whole process group, the gateways it spawned
    # included): a test that hangs under emulation fails by name instead of stalling the run.
    local runner_var
    runner_var="CARGO_TARGET_$(printf '%s' "$t" | tr 'a-z-' 'A-Z_')_RUNNER"
    export "$runner_var=timeout -k 10 $QEMU_TEST_TIMEOUT $(qemu_for "$t")"
    set +e
    nice -n 10 cargo test --target "$t" "${BUILD_STD[@]}" --profile qemu-test --no-fail-fast \
        -- "${skip[@]}" 2>&1 | tee "$out" |
        grep --line-buffered -E '^(test result|     Running|test .* FAILED|failures:|---- |error: test failed)'
    rc=${PIPESTATUS[0]}
    for a in "${ALONE[@]}"; do
        nice -n 10 cargo test --target "$t" "${BUILD_STD[@]}" --profile qemu-test --test "${a%%:*}" \
            -- --exact "${a#*:}" --test-threads=1 2>&1 | tee -a "$out" |
            grep --line-buffered -E '^(test result|     Running|test .* FAILED|failures:|---- |error: test failed)'
        [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    done
    set -e
    awk -v t="$t" '/^test result:/ { p += $4; f += $6; i += $8 }
        END { printf "cross: %s under qemu-user: %d passed, %d failed, %d ignored\n", t, p, f, i }' "$out" >&2
    if [ "$rc" -ne 0 ]; then
        grep -A30 -E '^---- ' "$out" | head -n 120 >&2 || true
        rm -f "$out"
        log "tests FAILED for $t"
        return 1
    fi
    rm -f "$out"
    log "tested $t in $(( $(date +%s) - start ))s"
}

cmd_build_small() {
    local t
    [ $# -gt 0 ] || set -- "${ALL_TARGETS[@]}"
    for t in "$@"; do check_target "$t"; build_one "$t" release-small; done
}

cmd_test() {
    local t
    [ $# -gt 0 ] || set -- "${ALL_TARGETS[@]}"
    for t in "$@"; do check_target "$t"; test_one "$t"; done
}

cmd_ci() {
    local t start
    start=$(date +%s)
    cmd_setup
    log "setup in $(( $(date +%s) - start ))s"
    for t in "${CI_TARGETS[@]}"; do
        check_target "$t"
        build_one "$t"
        test_one "$t"
    done
    cmd_budget
    log "ci (${CI_TARGETS[*]}) in $(( $(date +%s) - start ))s"
}

cmd_all() {
    local t
    cmd_setup
    for t in "${ALL_TARGETS[@]}"; do build_one "$t"; done
    for t in "${ALL_TARGETS[@]}"; do test_one "$t"; done
}

cmd_sizes() {
    bash "$ROOT/scripts/board-sizes.sh" "$@"
}

case "${1:-}" in
    setup) shift; cmd_setup "$@" ;;
    build) shift; cmd_build "$@" ;;
    build-small) shift; cmd_build_small "$@" ;;
    budget) shift; cmd_budget "$@" ;;
    test) shift; cmd_test "$@" ;;
    sizes) shift; cmd_sizes "$@" ;;
    all) shift; cmd_all "$@" ;;
    ci) shift; cmd_ci "$@" ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
