#!/bin/bash
# Build a small x86_64 kernel with vmw_balloon as a module, from Debian's linux-source-VER.
# Usage: build_kernel.sh <5.10|6.1|6.12|7.2> [btf]
# Output: $CACHE/kernels/VER/{bzImage,vmlinux,vmw_balloon.ko,vmw_vmci.ko,config,release}
# With "btf": the same source and config plus kernel-btf.config (vmlinux and module BTF,
# release VER-btf through CONFIG_LOCALVERSION), built in $CACHE/build/VER-btf and collected
# in $CACHE/kernels/VER-btf, so the kernels without BTF (and their samples) stay as they are.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
VER=${1:?usage: build_kernel.sh <5.10|6.1|6.12|7.2> [btf]}
VARIANT=${2:-}
case $VARIANT in "" | btf) ;; *) echo "unknown variant $VARIANT (only btf)" >&2; exit 2 ;; esac
KNAME=$VER${VARIANT:+-$VARIANT}
JOBS=${JOBS:-$(nproc)}
SRC=$CACHE/src/linux-source-$VER
OUT=$CACHE/build/$KNAME
DEST=$CACHE/kernels/$KNAME
mkdir -p "$CACHE/src" "$OUT" "$DEST"
T0=$(date +%s)

# 1. Source: Debian's linux-source-VER tarball.
if [ ! -f "$SRC/Makefile" ]; then
    tarball=/usr/src/linux-source-$VER.tar.xz
    if [ ! -f "$tarball" ]; then
        case $VER in
            5.10) suite=bullseye ;; 6.1) suite=bookworm ;; 6.12) suite=trixie ;; *) suite=sid ;;
        esac
        deb=$(find_or_fetch_deb "linux-source-$VER" $suite)
        echo "using $deb"
        rm -rf "$CACHE/src/deb-$VER"
        dpkg-deb -x "$deb" "$CACHE/src/deb-$VER"
        tarball=$(ls "$CACHE/src/deb-$VER/usr/src/linux-source-$VER".tar.*)
    fi
    echo "extracting $tarball"
    tar -C "$CACHE/src" -xf "$tarball"
    rm -rf "$CACHE/src/deb-$VER"
fi

# 2. Config: tinyconfig + our fragment.
cd "$SRC"
make -s ARCH=x86_64 O="$OUT" tinyconfig
cat "$HERE/kernel.config" >> "$OUT/.config"
[ -z "$VARIANT" ] || cat "$HERE/kernel-$VARIANT.config" >> "$OUT/.config"
make -s ARCH=x86_64 O="$OUT" olddefconfig
fail=0
check() {  # check SYMBOL WANTED...
    local sym=$1; shift
    local val
    val=$(grep -E "^CONFIG_$sym=|^# CONFIG_$sym is not set" "$OUT/.config" | sed -E 's/^CONFIG_[A-Z0-9_]+=//; s/^# .* is not set/n/' || true)
    [ -n "$val" ] || val=absent
    for w in "$@"; do [ "$w" = "$val" ] && { printf '  ok   %-28s %s\n' "$sym" "$val"; return; }; done
    printf '  BAD  %-28s %s (want %s)\n' "$sym" "$val" "$*"; fail=1
}
echo "config check:"
for s in 64BIT MODULES PCI HYPERVISOR_GUEST DEBUG_INFO KALLSYMS KALLSYMS_ALL DEBUG_FS PROC_FS \
         PROC_KCORE SYSFS FW_CFG_SYSFS FW_CFG_SYSFS_CMDLINE DMI SERIAL_8250 SERIAL_8250_CONSOLE BLK_DEV_INITRD \
         DEVTMPFS TTY PRINTK BINFMT_ELF BINFMT_SCRIPT SPARSEMEM_VMEMMAP VM_EVENT_COUNTERS \
         COMPACTION MIGRATION SLUB; do
    check $s y
done
check VMWARE_VMCI m
check VMWARE_BALLOON m
check DEBUG_INFO_REDUCED n absent
if [ "$VARIANT" = btf ]; then
    check DEBUG_INFO_BTF y
    check DEBUG_INFO_BTF_MODULES y
    check LOCALVERSION '"-btf"'
else
    check DEBUG_INFO_BTF n absent
fi
check RANDOMIZE_BASE n absent
check MODULE_SIG n absent
# Old and new names: at least one of each pair must be y.
if grep -qE '^CONFIG_(CRASH_CORE|VMCORE_INFO)=y' "$OUT/.config"; then echo "  ok   CRASH_CORE/VMCORE_INFO"; else echo "  BAD  CRASH_CORE/VMCORE_INFO"; fail=1; fi
if grep -qE '^CONFIG_(MEMORY_BALLOON|BALLOON)=y' "$OUT/.config"; then echo "  ok   MEMORY_BALLOON/BALLOON"; else echo "  BAD  MEMORY_BALLOON/BALLOON"; fail=1; fi
if grep -qE '^CONFIG_(BALLOON_COMPACTION|BALLOON_MIGRATION)=y' "$OUT/.config"; then echo "  ok   BALLOON_COMPACTION/MIGRATION"; else echo "  BAD  BALLOON_COMPACTION/MIGRATION"; fail=1; fi
if grep -qE '^CONFIG_DEBUG_INFO_COMPRESSED(_ZLIB|_ZSTD)?=y' "$OUT/.config"; then echo "  BAD  DEBUG_INFO_COMPRESSED (modules must be uncompressed)"; fail=1; fi
for s in NET_9P NET_9P_VIRTIO 9P_FS VIRTIO_PCI; do
    grep -q "^CONFIG_$s=y" "$OUT/.config" && echo "  ok   $s" || echo "  note $s not enabled (optional)"
done
[ $fail = 0 ] || { echo "config check failed" >&2; exit 1; }

# 3. Build.  Version-specific workarounds for building old kernels with Debian 12's gcc 12.
EXTRA=()
case $VER in
    5.10) EXTRA+=(KCFLAGS="-Wno-error") ;;
esac
make ARCH=x86_64 O="$OUT" -j"$JOBS" "${EXTRA[@]}" bzImage modules

# 4. Collect.
cp "$OUT/arch/x86/boot/bzImage" "$OUT/vmlinux" "$OUT/.config" "$DEST/"
mv "$DEST/.config" "$DEST/config"
cp "$OUT/drivers/misc/vmw_balloon.ko" "$DEST/"
cp "$(find "$OUT/drivers/misc/vmw_vmci" -name vmw_vmci.ko)" "$DEST/"
make -s ARCH=x86_64 O="$OUT" kernelrelease > "$DEST/release"
echo $(( $(date +%s) - T0 )) > "$DEST/build_seconds"
echo "built $(cat "$DEST/release") in $(cat "$DEST/build_seconds") s -> $DEST"
ls -l "$DEST"
