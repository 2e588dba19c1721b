#!/usr/bin/env bash
# Cross builds and qemu-user tests for the router targets (cross/README.md).
#
#   scripts/cross.sh setup            install the tools (apt, rust-src, zig from PyPI); idempotent
#   scripts/cross.sh build [T...]     static, stripped release builds of every [[bin]]
#   scripts/cross.sh build-small [T...]   the same in release-small, the profile users flash
#                                     (the OpenWrt and Buildroot packages build it; board/sizes.md)
#   scripts/cross.sh budget           build the release-small armv7-musl gateway, fail above 940 KiB
#   scripts/cross.sh test [T...]      cargo test (unit + integration) under qemu-user
#   scripts/cross.sh sizes [T...]     build both profiles, measure the size levers, write board/sizes.md
#   scripts/cross.sh sizes --plugins [T...]   only its plugin section (the `plugins` builds)
#   scripts/cross.sh plugins [T...]   websocket_jsonrpc and every plugin (backend/plugins/*) dynamically
#                                     linked, in release-small, checked with file and readelf; on armv7
#                                     also run under qemu-arm with Debian's musl:armhf loader
#   scripts/cross.sh all              setup, then build and test every target
#   scripts/cross.sh ci               what scripts/test.sh runs: setup, build and test $CROSS_CI_TARGETS,
#                                     then the size budget, then `plugins` for armv7
#
# T defaults to all five targets (the four musl ones for `plugins`). Binaries land in
# $CARGO_TARGET_DIR/<T>/release/ (and <T>/release-small/); the plugin builds in
# $CARGO_TARGET_DIR/plugins/<T>/.
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
# The size budget (board/sizes.md): the shipped armv7-musl gateway, TLS included. 940 KiB: the
# 900 KiB of the relay, TLS, authentication and the backends beyond UNIX sockets, and the
# control socket and metrics page (about 35 KB: board/sizes.md).
BUDGET_TARGET=armv7-unknown-linux-musleabihf
BUDGET_BYTES=$((940 * 1024))
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
    # musl:armhf: the loader and libc.so the dynamically linked armv7 plugin build runs with
    # under qemu-arm (`plugins`); an armhf package, hence the foreign architecture.
    dpkg-query -W -f='${Status}' musl:armhf 2>/dev/null | grep -q 'ok installed' || need+=(musl:armhf)
    if [ "${#need[@]}" -gt 0 ]; then
        log "installing ${need[*]}"
        local sudo=
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        export DEBIAN_FRONTEND=noninteractive
        dpkg --print-foreign-architectures | grep -qx armhf || $sudo dpkg --add-architecture armhf
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
        # ", stripped": `file` says "not stripped" for an unstripped one.
        *"statically linked"*", stripped"*) ;;
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
    # websocket_jsonrpc and its plugins, dynamically linked, for armv7 only: it is the target
    # they also run on under qemu-arm, and each target's build starts from std (3 to 5 minutes
    # on an empty tree). The plugins' code is compiled and tested for every CI target above
    # (`cargo test` of the workspace under qemu-user).
    for t in "${CI_TARGETS[@]}"; do
        [ "$t" = armv7-unknown-linux-musleabihf ] && plugins_one "$t"
    done
    log "ci (${CI_TARGETS[*]}) in $(( $(date +%s) - start ))s"
}

cmd_all() {
    local t
    cmd_setup
    for t in "${ALL_TARGETS[@]}"; do build_one "$t"; done
    for t in "${ALL_TARGETS[@]}"; do test_one "$t"; done
}

# ---- websocket_jsonrpc and its plugins, dynamically linked ------------------------------------
# websocket_jsonrpc dlopen()s its plugin (-L), which a static musl program cannot do (static
# musl's dlopen always fails), and under +crt-static rustc drops the plugins' cdylib crate type.
# So they are built apart from the shipped static binaries, in their own target directory:
# dynamically linked against the image's musl (OpenWrt's libc.so, which is also its loader
# /lib/ld-musl-<arch>.so.1), in release-small with the shipped flags.
MUSL_TARGETS=(
    armv7-unknown-linux-musleabihf
    aarch64-unknown-linux-musl
    mipsel-unknown-linux-musl
    mips-unknown-linux-musl
)
DYN_TARGET_DIR="$CARGO_TARGET_DIR/dynamic"
PLUGINS_DIR="$CARGO_TARGET_DIR/plugins"
# Debian's musl:armhf (scripts/cross.sh setup): the loader the armv7 build runs with under qemu-arm.
ARMHF_LOADER=/lib/ld-musl-armhf.so.1

# The rustflags .cargo/config.toml gives T, with +crt-static turned into -crt-static, in the form
# of CARGO_ENCODED_RUSTFLAGS. The config's list cannot be overridden entry by entry: cargo appends
# a --config or CARGO_TARGET_<T>_RUSTFLAGS list to it, and rustc links statically whenever
# +crt-static is among its flags, whatever comes after. So the whole list is replaced, by one
# made from the config's (link-self-contained=no and anything else it says stay), plus
# -C link-arg=-dynamic: without it zig cc links musl statically into an executable, which makes
# a static-pie (no loader, so no dlopen) where rustc asked for a dynamic one.
dynamic_rustflags() {
    cargo -Zunstable-options config get --format json-value "target.$1.rustflags" |
        python3 -c '
import json, sys
flags = json.load(sys.stdin)
if "target-feature=+crt-static" not in flags:
    sys.exit("cross: .cargo/config.toml gives " + sys.argv[1] + " no target-feature=+crt-static to turn off")
flags = ["target-feature=-crt-static" if f == "target-feature=+crt-static" else f for f in flags]
print("\x1f".join(flags + ["-C", "link-arg=-dynamic"]))
' "$1"
}

# The plugins, from cargo's view of the workspace: every package under backend/plugins/ with a
# cdylib target, as "package library-name variant" lines. variant is "bundled" for a package
# with a `bundled` feature (its default: the C library compiled in), which is also built
# without it, against the image's shared library; "-" otherwise.
plugin_list() {
    cargo metadata --no-deps --format-version 1 | python3 -c '
import json, os, sys
under = os.path.join(sys.argv[1], "backend", "plugins") + os.sep
for p in json.load(sys.stdin)["packages"]:
    if not p["manifest_path"].startswith(under):
        continue
    for t in p["targets"]:
        if "cdylib" in t["crate_types"]:
            print(p["name"], t["name"].replace("-", "_"), "bundled" if "bundled" in p["features"] else "-")
' "$ROOT"
}

# check_dynamic FILE exe|lib NEEDED...: a stripped, dynamically linked executable (with an
# interpreter) or shared object (without one) whose DT_NEEDED entries are exactly NEEDED.
check_dynamic() {
    local f=$1 kind=$2 desc needed want
    shift 2
    desc=$(file -b "$f")
    case "$kind:$desc" in
        exe:*executable*"dynamically linked, interpreter "*", stripped"*) ;;
        lib:*"shared object"*"dynamically linked"*", stripped"*)
            case "$desc" in *interpreter*) log "$f is an executable, not a library: $desc"; return 1 ;; esac ;;
        *) log "$f is not a stripped, dynamically linked $kind: $desc"; return 1 ;;
    esac
    needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | sort | xargs)
    want=$(printf '%s\n' "$@" | sort | xargs)
    if [ "$needed" != "$want" ]; then
        log "$f needs '${needed}', expected exactly '$want'"
        return 1
    fi
}

# The SQLite amalgamation of the libsqlite3-sys that Cargo.lock names (the one rusqlite binds).
sqlite_amalgamation() {
    cargo metadata --format-version 1 --filter-platform "$1" 2>/dev/null | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "libsqlite3-sys":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "sqlite3"))
        break
'
}

# The version of that amalgamation (both SQL plugin builds must report it).
sqlite_version() {
    sed -n 's/^#define SQLITE_VERSION  *"\(.*\)"$/\1/p' "$(sqlite_amalgamation "$1")/sqlite3.h"
}

# build_libsqlite3 T DIR: DIR/libsqlite3.so.0 for T (with the libsqlite3.so link to it), made from
# the amalgamation with zig cc and SQLite's default options, like an image's libsqlite3 package
# (OpenWrt's libsqlite3 installs libsqlite3.so.0, hence the soname).
build_libsqlite3() {
    local t=$1 dir=$2 src
    src=$(sqlite_amalgamation "$t")
    [ -f "$src/sqlite3.c" ] || { log "no SQLite amalgamation (libsqlite3-sys) in cargo's registry"; return 1; }
    mkdir -p "$dir"
    if [ ! "$dir/libsqlite3.so.0" -nt "$src/sqlite3.c" ]; then
        nice -n 10 "$ROOT/cross/bin/$t-cc" -shared -fPIC -Os -s -Wl,-soname,libsqlite3.so.0 \
            -o "$dir/libsqlite3.so.0" "$src/sqlite3.c"
    fi
    ln -sf libsqlite3.so.0 "$dir/libsqlite3.so"
}

# A size line, as build_one prints them: target, kind, file (relative to $PLUGINS_DIR/<T>), bytes.
size_line() {
    printf '%-32s %-14s %-36s %9d bytes\n' "$1" dynamic "$2" "$(stat -c %s "$PLUGINS_DIR/$1/$2")"
}

plugins_one() {
    local t=$1 start flags out="$PLUGINS_DIR/$1" built="$DYN_TARGET_DIR/$1/release-small"
    local pkg lib variant pkgs=() lines=() l
    local common=(--target "$t" "${SMALL_STD[@]}" --profile release-small "${SMALL_EXTRA[@]}"
        --target-dir "$DYN_TARGET_DIR" -q)
    start=$(date +%s)
    flags=$(dynamic_rustflags "$t")
    mapfile -t lines < <(plugin_list)
    [ "${#lines[@]}" -gt 0 ] || { log "no plugin packages under backend/plugins/"; return 1; }
    for l in "${lines[@]}"; do pkgs+=(-p "${l%% *}"); done
    rm -rf "$out"
    mkdir -p "$out"
    # The server with the features of the shipped build (the workspace's members, resolved
    # together), then every plugin with its own default features.
    CARGO_ENCODED_RUSTFLAGS=$flags nice -n 10 cargo build "${common[@]}" --bin websocket_jsonrpc \
        "${SHIPPED_FEATURES[@]}"
    cp "$built/websocket_jsonrpc" "$out/"
    check_dynamic "$out/websocket_jsonrpc" exe libc.so
    size_line "$t" websocket_jsonrpc
    CARGO_ENCODED_RUSTFLAGS=$flags nice -n 10 cargo build "${common[@]}" "${pkgs[@]}" --lib
    for l in "${lines[@]}"; do
        read -r pkg lib variant <<<"$l"
        cp "$built/lib$lib.so" "$out/"
        check_dynamic "$out/lib$lib.so" lib libc.so
        size_line "$t" "lib$lib.so"
    done
    # The system-library variants: linked against the image's libsqlite3.so.0 (rusqlite's
    # libsqlite3-sys finds it through SQLITE3_LIB_DIR; its bindings are pregenerated, so no
    # header is needed).
    for l in "${lines[@]}"; do
        read -r pkg lib variant <<<"$l"
        [ "$variant" = bundled ] || continue
        build_libsqlite3 "$t" "$out/system"
        SQLITE3_LIB_DIR="$out/system" CARGO_ENCODED_RUSTFLAGS=$flags nice -n 10 \
            cargo build "${common[@]}" -p "$pkg" --lib --no-default-features
        cp "$built/lib$lib.so" "$out/system/"
        check_dynamic "$out/system/lib$lib.so" lib libc.so libsqlite3.so.0
        check_dynamic "$out/system/libsqlite3.so.0" lib libc.so
        size_line "$t" "system/lib$lib.so"
        size_line "$t" system/libsqlite3.so.0
    done
    log "plugins for $t built and checked in $(( $(date +%s) - start ))s: $out"
    if [ "$t" = armv7-unknown-linux-musleabihf ]; then plugins_run "$t"; fi
}

# rpc_run T DIR PLUGIN CONFIG REQUEST EXPECTED [LIBDIR]: the T build of websocket_jsonrpc under
# qemu with PLUGIN (and -C CONFIG), on a UNIX socket in DIR, with LIBDIR as the loader's
# LD_LIBRARY_PATH: it answers REQUEST, sent in a framed record, with EXPECTED (compared as JSON),
# then exits 0 on SIGTERM.
rpc_run() {
    local t=$1 dir=$2 plugin=$3 config=$4 request=$5 expected=$6 libdir=${7:-} pid rc=0
    rm -rf "$dir/run"
    mkdir -p "$dir/run"
    LD_LIBRARY_PATH=$libdir "$(qemu_for "$t")" "$PLUGINS_DIR/$t/websocket_jsonrpc" -R "$dir/run" \
        -m framed -L "$plugin" -C "$config" 2>"$dir/log" &
    pid=$!
    python3 - "$dir/run/jsonrpc" "$request" "$expected" "${plugin#"$PLUGINS_DIR/"}" <<'PY' || rc=1
import json, socket, struct, sys, time
path, request, expected, plugin = sys.argv[1], sys.argv[2].encode(), json.loads(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + 60
while True:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        break
    except OSError:
        s.close()
        if time.monotonic() > deadline:
            sys.exit("cross: websocket_jsonrpc made no socket in 60 s")
        time.sleep(0.2)
s.settimeout(60)
s.sendall(struct.pack("!BI", 0x81, len(request)) + request)
def exact(n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            sys.exit(f"cross: websocket_jsonrpc closed after {len(data)} of {n} bytes")
        data += chunk
    return data
head, length = struct.unpack("!BI", exact(5))
answer = exact(length)
if head != 0x81 or json.loads(answer) != expected:
    sys.exit(f"cross: websocket_jsonrpc answered {head:#x} {answer!r}, expected 0x81 {expected}")
print(f"cross: under qemu, websocket_jsonrpc -L {plugin} answered {answer.decode()}", file=sys.stderr)
PY
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || { log "websocket_jsonrpc exited with $? on SIGTERM"; rc=1; }
    if [ "$rc" -ne 0 ]; then sed 's/^/  websocket_jsonrpc: /' "$dir/log" >&2; fi
    return "$rc"
}

# The armv7 build under qemu-arm, Debian's musl:armhf as the image's libc: the sysinfo plugin
# answers the uptime of a /proc root made for the check (its -C), to the digit; the SQL plugin,
# SQLite compiled in and then against the libsqlite3.so.0 built for it, answers a query on a
# database made for the check.
plugins_run() {
    local t=$1 dir out="$PLUGINS_DIR/$1" rc=0
    if [ ! -e "$ARMHF_LOADER" ]; then
        log "no $ARMHF_LOADER to run the $t plugin build under qemu-arm: scripts/cross.sh setup installs musl:armhf"
        return 1
    fi
    dir=$(mktemp -d)
    mkdir -p "$dir/proc"
    echo "12345.67 23456.78" >"$dir/proc/uptime"
    rpc_run "$t" "$dir" "$out/libwsgate_rpc_sysinfo.so" "$dir/proc" \
        '{"jsonrpc":"2.0","method":"uptime","id":1}' \
        '{"jsonrpc":"2.0","result":{"seconds":12345.67},"id":1}' || rc=1
    if [ -e "$out/libwsgate_rpc_sql.so" ]; then
        python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("create table t (x integer)")
db.execute("insert into t values (21)")
db.commit()' "$dir/test.db"
        local query='{"jsonrpc":"2.0","method":"exec","params":{"query":"select x * 2 as y, sqlite_version() as v from t"},"id":2}'
        local answer
        answer="{\"jsonrpc\":\"2.0\",\"result\":{\"columns\":[\"y\",\"v\"],\"rows\":[{\"y\":42,\"v\":\"$(sqlite_version "$t")\"}],\"changes\":0},\"id\":2}"
        rpc_run "$t" "$dir" "$out/libwsgate_rpc_sql.so" "$dir/test.db" "$query" "$answer" || rc=1
        rpc_run "$t" "$dir" "$out/system/libwsgate_rpc_sql.so" "$dir/test.db" "$query" "$answer" \
            "$out/system" || rc=1
    fi
    rm -rf "$dir"
    return "$rc"
}

cmd_plugins() {
    local t
    [ $# -gt 0 ] || set -- "${MUSL_TARGETS[@]}"
    for t in "$@"; do
        case " ${MUSL_TARGETS[*]} " in
            *" $t "*) plugins_one "$t" ;;
            *) log "plugins: $t is not a musl target (${MUSL_TARGETS[*]})"; exit 2 ;;
        esac
    done
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
    plugins) shift; cmd_plugins "$@" ;;
    all) shift; cmd_all "$@" ;;
    ci) shift; cmd_ci "$@" ;;
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2 ;;
esac
