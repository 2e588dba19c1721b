#!/usr/bin/env bash
# Regenerates board/sizes.md: the stripped size of every binary for every router target, in
# release-small (the profile the OpenWrt and Buildroot packages build: what users flash) and
# in release, what each size lever saves on the armv7-musl gateway, and what that gateway is
# made of (cargo-bloat, per crate and per function). Run through `scripts/cross.sh sizes [T...]`
# (it needs the cross setup); T defaults to all five targets, and the budget target is always
# built. Takes 30-50 minutes on 2 shared cores for all five: 16 LTO builds of the gateway
# with std built from source, plus the sample servers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export RUSTC_BOOTSTRAP=1
unset RUSTFLAGS
OUT=board/sizes.md
BUDGET_KIB=900
BUDGET_TARGET=armv7-unknown-linux-musleabihf
ALL_TARGETS=(
    armv7-unknown-linux-musleabihf
    aarch64-unknown-linux-musl
    mipsel-unknown-linux-musl
    mips-unknown-linux-musl
    armv7-unknown-linux-gnueabihf
)
# The targets asked for, in the order above, the budget target always among them.
TARGETS=()
for t in "${ALL_TARGETS[@]}"; do
    want=$([ $# -eq 0 ] || [ "$t" = "$BUDGET_TARGET" ] && echo y || echo n)
    for a in "$@"; do [ "$a" = "$t" ] && want=y; done
    [ "$want" = n ] || TARGETS+=("$t")
done
SKIPPED=()
for t in "${ALL_TARGETS[@]}"; do
    case " ${TARGETS[*]} " in *" $t "*) ;; *) SKIPPED+=("$t") ;; esac
done
mapfile -t BINS < <(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print("\n".join(t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "bin" in t["kind"]))')

kib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1024 }'; }

# The shipped (release-small) builds and the release ones, exactly as scripts/cross.sh makes
# them (it checks that each binary is static and stripped and prints "target profile bin bytes").
rows=()
for t in "${TARGETS[@]}"; do
    echo "board-sizes: $t" >&2
    while read -r line; do rows+=("$line"); done < <(
        bash scripts/cross.sh build "$t"
        bash scripts/cross.sh build-small "$t"
    )
done

if [ "${#rows[@]}" -ne $(( ${#TARGETS[@]} * 2 * ${#BINS[@]} )) ]; then
    echo "board-sizes: a build failed (${#rows[@]} sizes)" >&2
    exit 1
fi

size_of() {  # target profile bin
    local r t p b n
    for r in "${rows[@]}"; do
        read -r t p b n _ <<<"$r"
        if [ "$t" = "$1" ] && [ "$p" = "$2" ] && [ "$b" = "$3" ]; then echo "$n"; return; fi
    done
}

# One lever at a time on the budget target's gateway. From the release build (separate target
# dir: same profile name, other std): what each part of release-small saves. From the shipped
# release-small build: what the levers it does not use would save. Each entry: label|profile|
# cargo arguments.
# As shipped: without the deflate feature (scripts/cross.sh SHIPPED_FEATURES).
SMALL_ARGS=(-Zbuild-std-features=optimize_for_size -Zpanic-immediate-abort
    --config 'profile.release-small.panic="immediate-abort"' --no-default-features)
rf() { echo "target.$BUDGET_TARGET.rustflags=[\"$1\"]"; }  # appended to .cargo/config.toml's list
knobs=(
    "std with its backtrace symbolizer (what a prebuilt std brings)|release|-Zbuild-std-features=panic-unwind,backtrace"
    "opt-level = \"z\"|release|-Zbuild-std-features=panic-unwind|--config|profile.release.opt-level=\"z\""
    "std feature optimize_for_size|release|-Zbuild-std-features=panic-unwind,optimize_for_size"
    "panic = \"immediate-abort\"|release|-Zbuild-std-features=panic-unwind|-Zpanic-immediate-abort|--config|profile.release.panic=\"immediate-abort\""
    "-Zlocation-detail=none|release-small|@small|--config|$(rf -Zlocation-detail=none)"
    "-Zfmt-debug=none (\`{:?}\` prints nothing: not kept)|release-small|@small|--config|$(rf -Zfmt-debug=none)"
    "-Cforce-unwind-tables=no (no .ARM.exidx for Rust code: nothing unwinds after an immediate abort, but a debugger or profiler cannot walk the stack: not kept)|release-small|@small|--config|$(rf -Cforce-unwind-tables=no)"
    "-Clink-arg=-Os (zig builds musl for size: its memcpy copies a byte at a time: not kept)|release-small|@small|--config|$(rf -Clink-arg=-Os)"
)
knob_rows=()
for k in "${knobs[@]}"; do
    IFS='|' read -r -a parts <<<"$k"
    echo "board-sizes: $BUDGET_TARGET ${parts[1]} + ${parts[0]}" >&2
    dir="$CARGO_TARGET_DIR/size-knobs"
    args=()
    for a in "${parts[@]:2}"; do
        if [ "$a" = @small ]; then args+=("${SMALL_ARGS[@]}"); else args+=("$a"); fi
    done
    nice -n 10 cargo build -q --profile "${parts[1]}" --target "$BUDGET_TARGET" "-Zbuild-std=std,panic_abort" \
        --bin wsgate --target-dir "$dir" "${args[@]}"
    knob_rows+=("${parts[0]}|${parts[1]}|$(stat -c %s "$dir/$BUDGET_TARGET/${parts[1]}/wsgate")")
done

echo "board-sizes: cargo bloat ($BUDGET_TARGET)" >&2
# The shipped build again, unstripped (cargo-bloat reads the symbols), in its own target dir.
bloat_args=(--profile release-small --target "$BUDGET_TARGET" "-Zbuild-std=std,panic_abort" "${SMALL_ARGS[@]}"
    --config profile.release-small.strip=false --target-dir "$CARGO_TARGET_DIR/bloat" --bin wsgate)
bloat=$(nice -n 10 cargo bloat "${bloat_args[@]}" --crates -n 14 2>/dev/null | sed 's/[[:space:]]*$//')
bloat_fns=$(nice -n 10 cargo bloat "${bloat_args[@]}" -n 30 2>/dev/null | sed 's/[[:space:]]*$//')
sections=$(size -A "$CARGO_TARGET_DIR/bloat/$BUDGET_TARGET/release-small/wsgate" |
    awk '$1 ~ /^\.(text|rodata|data\.rel\.ro|ARM\.exidx|ARM\.extab|data|got)$/ { printf "%s %d B, ", $1, $2 }' |
    sed 's/, $//')

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f %%", (a - b) * 100 / b }'; }
{
    echo "# Binary sizes per router target"
    echo
    echo "Generated by \`scripts/cross.sh sizes\` (scripts/board-sizes.sh) on $(date -u +%Y-%m-%d) with"
    echo "$(rustc --version | cut -d' ' -f1-2), zig $("$ROOT/.cache/bin/zig" version), std built from source"
    echo "(\`-Zbuild-std=std,panic_abort\`). Stripped, fully static executables, in bytes (KiB)."
    echo
    echo "* **release-small** (shipped: the OpenWrt and Buildroot packages build it, \`scripts/cross.sh"
    echo "  build-small\`): the release profile with \`opt-level = \"z\"\` and"
    echo "  \`panic = \"immediate-abort\"\` (no panic message: a panic, which no input may cause,"
    echo "  is a bare SIGILL/SIGTRAP), std built with its \`optimize_for_size\` feature and without"
    echo "  its backtrace symbolizer. Same behaviour, TLS included (1.2 and 1.3, RSA and ECDSA"
    echo "  keys, client certificates)."
    echo "* **release**: \`opt-level = \"s\"\`, LTO, one codegen unit, \`panic = \"abort\"\` with panic"
    echo "  messages, std without its backtrace symbolizer (\`-Zbuild-std-features=panic-unwind\`):"
    echo "  \`scripts/cross.sh build\`, what the qemu system test boots."
    echo
    printf '| target |'
    for b in "${BINS[@]}"; do printf ' %s release-small | %s release |' "$b" "$b"; done
    echo
    printf '|---|'
    for _ in "${BINS[@]}"; do printf -- '---:|---:|'; done
    echo
    for t in "${TARGETS[@]}"; do
        printf '| %s |' "$t"
        for b in "${BINS[@]}"; do
            for p in release-small release; do
                s=$(size_of "$t" "$p" "$b")
                printf ' %s (%s) |' "$s" "$(kib "$s")"
            done
        done
        echo
    done
    if [ "${#SKIPPED[@]}" -gt 0 ]; then
        echo
        echo "Not measured in this run: ${SKIPPED[*]} (\`scripts/cross.sh sizes\` builds all five)."
    fi
    echo
    r=$(size_of "$BUDGET_TARGET" release wsgate)
    s=$(size_of "$BUDGET_TARGET" release-small wsgate)
    echo "## Budget: $BUDGET_TARGET gateway with TLS ≤ $BUDGET_KIB KiB ($((BUDGET_KIB * 1024)) bytes)"
    echo
    verdict() { [ "$1" -le $((BUDGET_KIB * 1024)) ] && echo "within budget ($(( BUDGET_KIB * 1024 - $1 )) bytes to spare)" || echo "**over budget** by $(( $1 - BUDGET_KIB * 1024 )) bytes"; }
    echo "* release-small (shipped): $s bytes ($(kib "$s") KiB): $(verdict "$s")."
    echo "* release: $r bytes ($(kib "$r") KiB): $(verdict "$r")."
    echo
    echo "\`scripts/cross.sh ci\` (CI) builds the shipped armv7-musl gateway and fails above the budget."
    echo
    echo "## What costs what"
    echo
    echo "### Levers"
    echo
    echo "One lever at a time on the $BUDGET_TARGET gateway: the first four from release"
    echo "(release-small is the three in the middle together), the others from release-small."
    echo
    echo "| build | bytes | KiB | vs its base |"
    echo "|---|---:|---:|---:|"
    echo "| release | $r | $(kib "$r") | |"
    for k in "${knob_rows[@]}"; do
        IFS='|' read -r label base n <<<"$k"
        [ "$base" = release ] || continue
        echo "| release + $label | $n | $(kib "$n") | $(pct "$n" "$r") |"
    done
    echo "| **release-small** (shipped) | $s | $(kib "$s") | $(pct "$s" "$r") |"
    for k in "${knob_rows[@]}"; do
        IFS='|' read -r label base n <<<"$k"
        [ "$base" = release-small ] || continue
        echo "| release-small + $label | $n | $(kib "$n") | $(pct "$n" "$s") |"
    done
    echo
    echo "### What the code keeps out"
    echo
    echo "Source-level choices that keep code out of the shipped gateway, each measured on it when made"
    echo "(armv7-musl release-small):"
    echo
    echo "* No float formatting or parsing: log lines show durations as integer tenths of a second"
    echo "  (\`logging::Seconds\`), \`config::parse_duration\` reads digits with integer arithmetic, and"
    echo "  the libconfig lexer keeps a float as written (wsgate reads no float setting). core's float"
    echo "  printing costs about 11 KB, its float parser about 15 KB."
    echo "* Errno texts come from the C library's \`strerror_r\` (\`sys::ErrnoText\`), not from nix's own"
    echo "  table: about 5 KB."
    echo "* A \`Debug\` that a vtable keeps though nothing prints it is written by hand or left out: the"
    echo "  certificate resolver's (\`tls::CertStore\`, 2 KB), the backends' (\`Dial\` has no \`Debug\`"
    echo "  supertrait); \`config::SiteTls\`'s shows its files, not rustls' configuration (4 KB)."
    echo "* No u128 is formatted (1.4 KB)."
    echo "* \`wsgate --check\` without \`-f\` prints a summary (\`config::Summary\`), not the derived"
    echo "  \`Debug\` of \`Config\` and all it holds (about 10 KB)."
    echo "* permessage-deflate is a cargo feature the packages leave out (\`SHIPPED_FEATURES\` in"
    echo "  scripts/cross.sh): with it, about 71 KB more (zlib-rs and the relay's compression)."
    echo
    echo "Still in, and what it costs: a \`tcp\` link's"
    echo "host name is resolved with getaddrinfo (musl's resolver, about 25 KB, of which its \`qsort\`,"
    echo "used to order the addresses, is 6 KB)."
    echo
    echo "### Per crate"
    echo
    echo "\`cargo bloat --crates\` on the shipped build of the $BUDGET_TARGET gateway, unstripped:"
    echo "the code in \`.text\` per crate (\`[Unknown]\` is code without a crate: zig's musl libc,"
    echo "compiler-rt, and ring's C and assembly functions that carry no Rust path)."
    # TLS = ring (crypto, Rust and C), rustls, webpki (certificate verification), pki-types.
    read -r tls own total < <(awk '
        function kib(s) {
            if (s ~ /KiB$/) { sub(/KiB$/, "", s); return s + 0 }
            if (s ~ /MiB$/) { sub(/MiB$/, "", s); return s * 1024 }
            sub(/B$/, "", s); return s / 1024
        }
        $4 ~ /^(ring|rustls|webpki|rustls_pki_types)$/ { tls += kib($3) }
        $4 == "wsgate" { own = kib($3) }
        /\.text section size/ { total = kib($3) }
        END { printf "%.0f %.0f %.0f\n", tls, own, total }' <<<"$bloat")
    echo "TLS (ring, rustls, webpki, rustls-pki-types) is about $tls KiB of the $total KiB of code"
    echo "(more in \`[Unknown]\`: ring's C), wsgate's own code $own KiB; the rest is std, core, alloc"
    echo "and libc. The stripped file is larger than \`.text\` by its other sections: $sections."
    echo
    echo '```'
    echo "$bloat"
    echo '```'
    echo
    echo "### Largest functions"
    echo
    echo '```'
    echo "$bloat_fns"
    echo '```'
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "board-sizes: wrote $OUT" >&2
