#!/bin/bash
# Fetch a stock Debian kernel (its image packages only: no -dbg package) for a stock sample.
# Usage: fetch_stock_kernel.sh <5.10|6.1|6.12|7.x>
# Output: $CACHE/stock/VER/{vmlinuz, vmw_balloon.ko, vmw_vmci.ko, qemu_fw_cfg.ko, release,
#         config (if the package has one), System.map.package (what the package ships as
#         System.map, if anything), packages (name version per line)}
# The newest matching package of the suite is taken (bookworm for 6.1, bullseye for 5.10,
# trixie for 6.12, sid for 7.x); STOCK_PACKAGE=name pins one (for 7.x: the linux-modules-*
# name; its linux-binary-* sibling comes with it).  Modules compressed in the package
# (.ko.xz, 7.x) are decompressed: busybox insmod takes plain ELF.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
VER=${1:?usage: fetch_stock_kernel.sh <5.10|6.1|6.12|7.x>}
DEST=$CACHE/stock/$VER
case $VER in
    5.10) suite=bullseye; re='^linux-image-5\.10\.0-[0-9]+-amd64-unsigned$' ;;
    6.1) suite=bookworm; re='^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' ;;
    6.12) suite=trixie; re='^linux-image-6\.12\.[0-9]+\+deb13-amd64-unsigned$' ;;
    7.*) suite=sid; re="^linux-modules-${VER//./\\.}\\.[0-9]+\\+deb[0-9]+-amd64\$" ;;
    *) echo "unknown stock kernel $VER" >&2; exit 2 ;;
esac
if [ "$suite" = bookworm ]; then
    search() { apt-cache search --names-only "$1"; }
else
    aptx_update
    search() { apt-cache $APTX search --names-only "$1"; }
fi
pkg=${STOCK_PACKAGE:-$(search "$re" | awk '{print $1}' | sort -V | tail -1)}
[ -n "$pkg" ] || { echo "no package matching $re in $suite" >&2; exit 1; }
pkgs=$pkg
case $VER in 7.*) pkgs="$pkg ${pkg/linux-modules-/linux-binary-}" ;; esac

rm -rf "$DEST" "$DEST.x"
mkdir -p "$DEST" "$DEST.x"
: > "$DEST/packages"
for p in $pkgs; do
    deb=$(find_or_fetch_deb "$p" "$suite")
    echo "using $deb"
    dpkg-deb -x "$deb" "$DEST.x"
    echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >> "$DEST/packages"
done
moddir=$(ls -d "$DEST.x"/lib/modules/* "$DEST.x"/usr/lib/modules/* 2>/dev/null | head -1 || true)
release=$(basename "$moddir")
echo "$release" > "$DEST/release"
# The kernel image: /boot/vmlinuz-RELEASE (up to trixie) or /usr/lib/modules/RELEASE/vmlinuz.
vmlinuz=$(ls "$DEST.x/boot/vmlinuz-$release" "$moddir/vmlinuz" 2>/dev/null | head -1 || true)
cp "$vmlinuz" "$DEST/vmlinuz"
for f in "$DEST.x/boot/config-$release" "$moddir/config"; do
    if [ -f "$f" ]; then cp "$f" "$DEST/config"; break; fi
done
# Debian ships a placeholder here ("The real System.map is in the linux-image-<version>-dbg
# package"); kept to show what a user has.
for f in "$DEST.x/boot/System.map-$release" "$moddir/System.map"; do
    if [ -f "$f" ]; then cp "$f" "$DEST/System.map.package"; break; fi
done
for m in qemu_fw_cfg vmw_vmci vmw_balloon; do
    f=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -1)
    [ -n "$f" ] || { echo "no $m module in $pkgs" >&2; exit 1; }
    case $f in
        *.xz) xz -dc "$f" > "$DEST/$m.ko" ;;
        *.zst) zstd -qdc "$f" > "$DEST/$m.ko" ;;
        *) cp "$f" "$DEST/$m.ko" ;;
    esac
done
# vmw_balloon's dependencies must be the modules we load before it.
# (the "depends=" string of its .modinfo section; modinfo may not be installed)
deps=$(tr '\0' '\n' < "$DEST/vmw_balloon.ko" | sed -n 's/^depends=//p' | head -n 1)
[ "$deps" = vmw_vmci ] || { echo "vmw_balloon depends on '$deps', expected vmw_vmci" >&2; exit 1; }
rm -rf "$DEST.x"
echo "stock $VER: $release from $(tr '\n' ' ' < "$DEST/packages")-> $DEST"
ls -l "$DEST"
