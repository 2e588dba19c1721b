#!/usr/bin/env bash
# Builds (once) the small Linux kernel the QEMU system test boots, and prints its path.
#
#   scripts/qemu-kernel.sh mips|mipsel|arm
#
# tinyconfig plus board/qemu/kernel/*.config, from Debian's linux-source-6.1 package (fetched
# with apt-get download, nothing installed from it), built with Debian's cross gcc. Debian's
# own prebuilt kernels need 48-56 MB under QEMU (found in an earlier trial: the loader
# layout), hence this one: about 5 MB, boots with 32 MB.
# Cached in .cache/kernel/<guest>-<key>/image (5 MB), where the key hashes the config fragments,
# the source version, this script and the compiler version: a second run takes no time.
# Otherwise 4-15 minutes on 2 cores, depending on what else runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
guest=${1:?usage: qemu-kernel.sh mips|mipsel|arm}
frags=("$ROOT/board/qemu/kernel/common.config")
case "$guest" in
    mips)   karch=mips; cc=mips-linux-gnu-; pkg=gcc-mips-linux-gnu; image=vmlinux
            frags+=("$ROOT/board/qemu/kernel/malta.config") ;;
    mipsel) karch=mips; cc=mipsel-linux-gnu-; pkg=gcc-mipsel-linux-gnu; image=vmlinux
            frags+=("$ROOT/board/qemu/kernel/malta.config" "$ROOT/board/qemu/kernel/mipsel.config") ;;
    arm)    karch=arm; cc=arm-linux-gnueabihf-; pkg=gcc-arm-linux-gnueabihf; image=arch/arm/boot/zImage
            frags+=("$ROOT/board/qemu/kernel/armvirt.config") ;;
    *) echo "qemu-kernel.sh: unknown guest '$guest' (mips, mipsel, arm)" >&2; exit 2 ;;
esac

log() { printf 'qemu-kernel: %s\n' "$*" >&2; }
CACHE="$ROOT/.cache/kernel"
mkdir -p "$CACHE"

need=()
command -v "${cc}gcc" >/dev/null 2>&1 || need+=("$pkg")
for t in flex bison bc make cpio xz; do
    command -v "$t" >/dev/null 2>&1 || need+=("$([ "$t" = xz ] && echo xz-utils || echo "$t")")
done
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" libc6-dev >/dev/null
fi

# The source: the newest linux-source-6.1 the apt sources know, unpacked once.
deb=$(find "$CACHE" -maxdepth 1 -name 'linux-source-6.1_*_all.deb' | sort | tail -n 1)
if [ -z "$deb" ]; then
    log "downloading linux-source-6.1"
    (cd "$CACHE" && apt-get download -qq linux-source-6.1)
    deb=$(find "$CACHE" -maxdepth 1 -name 'linux-source-6.1_*_all.deb' | sort | tail -n 1)
fi
version=$(basename "$deb" | sed 's/^linux-source-6.1_\(.*\)_all.deb$/\1/')
key=$(cat "${frags[@]}" "${BASH_SOURCE[0]}" | { cat; echo "$version $("${cc}gcc" -dumpfullversion)"; } \
      | sha256sum | cut -c1-12)
out="$CACHE/$guest-$key"
if [ -f "$out/image" ]; then
    echo "$out/image"
    exit 0
fi

src="$CACHE/linux-source-$version"
if [ ! -f "$src/Makefile" ]; then
    log "unpacking linux-source $version"
    rm -rf "$src.tmp" && mkdir -p "$src.tmp"
    dpkg --fsys-tarfile "$deb" | tar -xO ./usr/src/linux-source-6.1.tar.xz | tar -xJ -C "$src.tmp"
    mv "$src.tmp/linux-source-6.1" "$src" && rmdir "$src.tmp"
fi

log "building the $guest kernel ($version) in $out"
start=$(date +%s)
rm -rf "$out" && mkdir -p "$out/build"
trap 'rm -rf "$out"' ERR
make=(make -s -C "$src" O="$out/build" ARCH="$karch" CROSS_COMPILE="$cc")
"${make[@]}" tinyconfig >/dev/null
(cd "$src" && scripts/kconfig/merge_config.sh -m -O "$out/build" "$out/build/.config" "${frags[@]}") >/dev/null
"${make[@]}" olddefconfig >/dev/null
# Every option asked for (the last fragment that names it wins) must have survived
# olddefconfig: a missing dependency silently drops an option.
awk -F= '/^CONFIG_/ { v[$1] = $0 } END { for (k in v) print v[k] }' "${frags[@]}" |
    grep -E '=y$' | while read -r opt; do
        grep -qx "$opt" "$out/build/.config" || { log "$opt did not stick (board/qemu/kernel/)"; exit 1; }
    done
nice -n 10 "${make[@]}" -j"$(nproc)" "$(basename "$image")" >/dev/null
cp "$out/build/$image" "$out/image"
cp "$out/build/.config" "$out/config"
rm -rf "$out/build"
# The unpacked source is 1.4 GB; the .deb (140 MB) stays for the next build. KEEP_KERNEL_SOURCE=1
# keeps it (saves the 30-60 s unpacking when several guests are built in a row).
[ -n "${KEEP_KERNEL_SOURCE:-}" ] || rm -rf "$src"
log "built $(du -h "$out/image" | cut -f1) in $(( $(date +%s) - start ))s"
echo "$out/image"
