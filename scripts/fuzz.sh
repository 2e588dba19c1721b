#!/usr/bin/env bash
# Fuzzing of wsgate's input parsers with libFuzzer (fuzz/, docs/fuzzing.md).
#
#   scripts/fuzz.sh build              build the targets
#   scripts/fuzz.sh smoke [SECS]       replay fuzz/regressions, then fuzz every target for SECS
#                                      seconds (default 20), two at a time: the CI step
#   scripts/fuzz.sh run TARGET [SECS] [libFuzzer flags...]
#                                      a longer run (default 600 s); the corpus grows in
#                                      fuzz/work/TARGET, crashes land in fuzz/artifacts/
#   scripts/fuzz.sh list               the targets
#
# Works with the stable toolchain: cargo-fuzz is not needed (fuzz/ is laid out for it, and
# `cargo fuzz run TARGET` works where it is installed). The flags below are the ones
# cargo-fuzz passes, minus its default AddressSanitizer (-Zsanitizer, nightly only; the code
# under test has no unsafe): SanitizerCoverage for libFuzzer's feedback, `--cfg fuzzing`, and
# the fuzz profile's debug assertions and overflow checks (fuzz/Cargo.toml). `--target` keeps
# the instrumentation out of build scripts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
TARGETS=(handshake frame session downlink direct_record config authorization cookie login_form login extensions inflate sqlrpc)
HOST="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_FUZZ:-$FUZZ/target}"
BIN="$CARGO_TARGET_DIR/$HOST/release"

# The longest input per target (libFuzzer's default is 4096): a hand-over record may hold
# 16 KiB of lines before it is refused.
max_len() {
    case "$1" in
    direct_record) echo 20000 ;;
    *) echo 4096 ;;
    esac
}

build() {
    (
        cd "$FUZZ"
        RUSTFLAGS="-Cpasses=sancov-module \
            -Cllvm-args=-sanitizer-coverage-level=4 \
            -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
            -Cllvm-args=-sanitizer-coverage-pc-table \
            -Cllvm-args=-sanitizer-coverage-trace-compares \
            --cfg fuzzing -Cforce-frame-pointers ${RUSTFLAGS:-}" \
            cargo build --release --locked --target "$HOST" --bins
    )
}

# fuzz TARGET SECS WORKDIR [flags...]: libFuzzer on WORKDIR (seeded from fuzz/corpus).
fuzz() {
    local t="$1" secs="$2" work="$3"
    shift 3
    mkdir -p "$work" "$FUZZ/artifacts"
    cp "$FUZZ/corpus/$t"/* "$work"/
    # stdin from /dev/null: the config target must never wait on a terminal it names.
    "$BIN/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
        -max_len="$(max_len "$t")" -print_final_stats=1 \
        -artifact_prefix="$FUZZ/artifacts/$t-" "$@" "$work" </dev/null
}

# replay TARGET: every saved crash input, once each.
replay() {
    local t="$1" dir="$FUZZ/regressions/$1"
    if compgen -G "$dir/*" >/dev/null; then
        "$BIN/$t" -runs=1 "$dir"/* </dev/null
    fi
}

cmd="${1:-smoke}"
case "$cmd" in
list)
    printf '%s\n' "${TARGETS[@]}"
    ;;
build)
    build
    ;;
smoke)
    secs="${2:-20}"
    cargo fmt --manifest-path "$FUZZ/Cargo.toml" --check
    build
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    for t in "${TARGETS[@]}"; do
        replay "$t" >"$tmp/$t.replay.log" 2>&1 || {
            cat "$tmp/$t.replay.log"
            echo "fuzz.sh: $t: a saved crash input crashes again"
            exit 1
        }
    done
    # Two at a time (CI has two cores); each run's log is shown when it fails.
    failed=0
    for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
        pids=()
        for t in "${TARGETS[@]:i:2}"; do
            fuzz "$t" "$secs" "$tmp/$t" >"$tmp/$t.log" 2>&1 &
            pids+=("$!:$t")
        done
        for p in "${pids[@]}"; do
            t="${p#*:}"
            if wait "${p%%:*}"; then
                echo "fuzz.sh: $t: $(grep -E '^stat::number_of_executed_units' "$tmp/$t.log" | awk '{print $2}') runs," \
                    "$(grep -oE 'cov: [0-9]+' "$tmp/$t.log" | tail -1), no crash"
            else
                tail -n 60 "$tmp/$t.log"
                echo "fuzz.sh: $t: CRASH (input saved under fuzz/artifacts/)"
                failed=1
            fi
        done
    done
    exit "$failed"
    ;;
run)
    t="${2:?usage: scripts/fuzz.sh run TARGET [SECS] [flags...]}"
    secs="${3:-600}"
    shift $(($# < 3 ? $# : 3))
    build
    fuzz "$t" "$secs" "$FUZZ/work/$t" "$@"
    ;;
*)
    echo "usage: scripts/fuzz.sh build|smoke [SECS]|run TARGET [SECS]|list" >&2
    exit 2
    ;;
esac
