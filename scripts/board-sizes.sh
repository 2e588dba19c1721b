#!/usr/bin/env bash
# Regenerates board/sizes.md: the stripped size of every binary for every router target, in
# release-small (the profile the OpenWrt and Buildroot packages build: what users flash) and
# in release, what each size lever saves on the armv7-musl gateway, and what that gateway is
# made of (cargo-bloat, per crate and per function). Run through `scripts/cross.sh sizes [T...]`
# (it needs the cross setup); T defaults to all five targets, and the budget target is always
# built. Takes 30-50 minutes on 2 shared cores for all five: 16 LTO builds of the gateway
# with std built from source, plus the sample servers. It also measures websocket_jsonrpc and
# its plugins, dynamically linked (`scripts/cross.sh plugins`), for the musl targets among T.
#
#   scripts/cross.sh sizes --plugins [T...]
#
# measures only those (T defaults to the four musl targets; 3-5 minutes per target) and puts
# them into the existing file: its plugin section is rewritten, with the rows of the targets
# not measured this time kept as they were.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export RUSTC_BOOTSTRAP=1
unset RUSTFLAGS
OUT=board/sizes.md
BUDGET_KIB=940
BUDGET_TARGET=armv7-unknown-linux-musleabihf
ALL_TARGETS=(
    armv7-unknown-linux-musleabihf
    aarch64-unknown-linux-musl
    mipsel-unknown-linux-musl
    mips-unknown-linux-musl
    armv7-unknown-linux-gnueabihf
)
PLUGINS_ONLY=n
if [ "${1:-}" = --plugins ]; then
    PLUGINS_ONLY=y
    shift
fi
for a in "$@"; do
    case " ${ALL_TARGETS[*]} " in *" $a "*) ;; *) echo "board-sizes: unknown target $a" >&2; exit 2 ;; esac
done
# The targets asked for, in the order above, the budget target always among them (but for
# --plugins).
TARGETS=()
for t in "${ALL_TARGETS[@]}"; do
    want=$([ $# -eq 0 ] || { [ "$t" = "$BUDGET_TARGET" ] && [ "$PLUGINS_ONLY" = n ]; } && echo y || echo n)
    for a in "$@"; do [ "$a" = "$t" ] && want=y; done
    [ "$want" = n ] || TARGETS+=("$t")
done
# websocket_jsonrpc and the plugins, dynamically linked: the musl targets among them.
PLUGIN_TARGETS=()
for t in "${TARGETS[@]}"; do
    case "$t" in *-musl*) PLUGIN_TARGETS+=("$t") ;; esac
done
SKIPPED=()
for t in "${ALL_TARGETS[@]}"; do
    case " ${TARGETS[*]} " in *" $t "*) ;; *) SKIPPED+=("$t") ;; esac
done
mapfile -t BINS < <(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print("\n".join(t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "bin" in t["kind"]))')

kib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1024 }'; }

# The plugin builds, as `scripts/cross.sh plugins` prints them ("target dynamic file bytes",
# file relative to target/plugins/<target>/), plus "target .pdr file bytes" for the files that
# carry a MIPS .pdr section, into $PLUGIN_ROWS.
PLUGIN_ROWS=$(mktemp)
trap 'rm -f "$PLUGIN_ROWS"' EXIT
measure_plugins() {
    local t out f _kind n
    for t in "${PLUGIN_TARGETS[@]}"; do
        echo "board-sizes: $t websocket_jsonrpc and plugins (dynamic)" >&2
        out=$(bash scripts/cross.sh plugins "$t")
        echo "$out" >>"$PLUGIN_ROWS"
        while read -r _ _kind f _; do
            n=$(size -A "$CARGO_TARGET_DIR/plugins/$t/$f" | awk '$1 == ".pdr" { print $2 }')
            [ -z "$n" ] || echo "$t .pdr $f $n" >>"$PLUGIN_ROWS"
        done <<<"$out"
    done
}

# plugin_section section|merge: the markdown of the plugin section, from $PLUGIN_ROWS; `merge`
# rewrites that section of $OUT instead (inserted before the budget if it has none), keeping
# the rows and notes of targets not in $PLUGIN_ROWS.
plugin_section() {
    python3 - "$1" "$OUT" "$PLUGIN_ROWS" "$(date -u +%Y-%m-%d)" "$(sqlite_version)" <<'PY'
import re, sys

mode, out, rows_file, today, sqlite = sys.argv[1:6]
HEADING = "## websocket_jsonrpc and its plugins (dynamically linked)"
sizes, pdr, order = {}, {}, []
for line in open(rows_file):
    f = line.split()
    if len(f) < 4:
        continue
    target, kind, name, n = f[0], f[1], f[2], int(f[3])
    if target not in order:
        order.append(target)
    (pdr if kind == ".pdr" else sizes).setdefault(target, {})[name] = n
files = []
for t in order:
    for name in sizes.get(t, {}):
        if name not in files:
            files.append(name)

def cell(n):
    return f"{n} ({n / 1024:.0f})"

header = "| target | " + " | ".join(f"`{f}`" for f in files) + " |"
rows = {t: "| " + t + " | " + " | ".join(cell(sizes[t][f]) if f in sizes[t] else "–" for f in files) + " |"
        for t in order}
notes = {t: f"* `{t}`: " + ", ".join(f"{cell(n)} of `{f}`" for f, n in pdr[t].items()) + "."
         for t in order if pdr.get(t)}
old_text = open(out).read() if mode == "merge" else ""
m = re.search(r"^" + re.escape(HEADING) + r"\n.*?(?=^## |\Z)", old_text, re.S | re.M)
dates = {t: today for t in order}
if m:
    old = m.group(0)
    lines = old.splitlines()
    # The old rows are kept only under the same columns.
    if header in lines:
        for line in lines[lines.index(header) + 2:]:
            if not line.startswith("| "):
                break
            t = line.split(" | ")[0][2:]
            if t not in rows:
                rows[t] = line
    for line in lines:
        g = re.match(r"\* `([^`]+)`: ", line)
        if g and g.group(1) not in order and g.group(1) in rows:
            notes[g.group(1)] = line
    g = re.search(r"^Measured: (.*)\.$", old, re.M)
    for part in (g.group(1).split(", ") if g else []):
        t, _, d = part.partition(" on ")
        if t not in dates and t in rows:
            dates[t] = d

known = ["armv7-unknown-linux-musleabihf", "aarch64-unknown-linux-musl",
         "mipsel-unknown-linux-musl", "mips-unknown-linux-musl"]
targets = sorted(rows, key=lambda t: known.index(t) if t in known else len(known))
sql = "libwsgate_rpc_sql.so" in files
text = [HEADING, "",
        "`scripts/cross.sh plugins` (cross/README.md): `websocket_jsonrpc` and every plugin of",
        "backend/plugins/, in release-small with the shipped flags but dynamically linked against the",
        "image's musl (`libc.so`), stripped, in bytes (KiB). The static `websocket_jsonrpc` of the",
        "first table cannot load plugins; this one is the build that can.",
        "`scripts/cross.sh sizes --plugins [T...]` measures only this section."]
if sql:
    text += ["",
             "`libwsgate_rpc_sql.so` has SQLite compiled in (its default `bundled` feature, trimmed by",
             "`LIBSQLITE3_FLAGS` in .cargo/config.toml). `system/libwsgate_rpc_sql.so` is the same plugin",
             "built without it, linked against the image's `libsqlite3.so.0`; `system/libsqlite3.so.0` is",
             f"such a library, for reference: SQLite {sqlite} from the same amalgamation, built here with",
             "zig cc `-shared -fPIC -Os` and SQLite's default options (an image's own package has its own",
             "options). The system-library plugin is the smaller choice on an image that has",
             "libsqlite3 anyway."]
text += ["", header, "|---|" + "---:|" * len(files)]
text += [rows[t] for t in targets]
text += ["", "Measured: " + ", ".join(f"{t} on {dates[t]}" for t in targets) + "."]
if notes:
    text += ["",
             "On MIPS, `strip = true` (the linker's `--strip-all`) leaves the `.pdr` section: MIPS",
             "procedure descriptors, which nothing loads. It keeps the entries of the functions the linker",
             "removed too, so in a plugin it can be larger than the code. `llvm-strip --strip-all` removes",
             "it. Of the sizes above, `.pdr` is:", ""]
    text += [notes[t] for t in targets if t in notes]
section = "\n".join(text) + "\n\n"
if mode == "section":
    sys.stdout.write(section)
else:
    if m:
        new = old_text[:m.start()] + section + old_text[m.end():]
    else:
        i = old_text.index("## Budget")
        new = old_text[:i] + section + old_text[i:]
    open(out + ".tmp", "w").write(new)
PY
}

sqlite_version() {
    local dir
    dir=$(cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "libsqlite3-sys":
        print(os.path.dirname(p["manifest_path"]))
')
    sed -n 's/^#define SQLITE_VERSION  *"\(.*\)"$/\1/p' "$dir/sqlite3/sqlite3.h" 2>/dev/null || true
}

if [ "$PLUGINS_ONLY" = y ]; then
    [ "${#PLUGIN_TARGETS[@]}" -gt 0 ] || { echo "board-sizes: --plugins: no musl target among ${TARGETS[*]}" >&2; exit 2; }
    measure_plugins
    plugin_section merge
    mv "$OUT.tmp" "$OUT"
    echo "board-sizes: wrote the plugin section of $OUT (${PLUGIN_TARGETS[*]})" >&2
    exit 0
fi

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
measure_plugins

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
    [ "${#PLUGIN_TARGETS[@]}" -eq 0 ] || plugin_section section
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
    echo "used to order the addresses, is 6 KB). The control socket (\`wsgate status\`, \`wsgate drop\`:"
    echo "the status report in text and JSON, the request handling, the client) and the metrics page"
    echo "cost about 35 KB (measured: 917,624 bytes without them, 952,880 with), for which the budget"
    echo "went from 900 to 940 KiB: the report's renderer about 7 KB, the metrics page about 5 KB, the"
    echo "client and the socket's set-up about 6 KB, the counting in the loop about 4 KB, the rest in"
    echo "std's UNIX-socket and memfd calls and small pieces."
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
