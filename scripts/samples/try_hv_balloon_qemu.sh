#!/bin/bash
# Can a real hv_balloon sample be made here?  QEMU >= 8.2 has an hv-balloon device
# (on a VMBus); Debian 12's QEMU is 7.2.  This extracts trixie's qemu-system-x86 and
# the libraries it needs (nothing installed; trixie's libc from fetch_tools.sh runs
# it), and asks that QEMU for a VMBus with an hv-balloon under TCG and under KVM.
#
# Result here (2026-12-06, QEMU 10.0.13): the device exists, but VMBus needs
# Hyper-V SynIC and VP_INDEX: under TCG "VMBus requires usable Hyper-V SynIC and
# VP_INDEX", under this host's KVM "kernel doesn't allow setting HyperV VP_INDEX"
# (a KVM built without Hyper-V emulation).  So hv_balloon stays mock-only.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
"$HERE/fetch_tools.sh" >/dev/null || exit 1
Q=$CACHE/qemu-trixie
mkdir -p "$Q/debs" "$Q/root" "$Q/nomods"
aptx_update >/dev/null 2>&1
for p in qemu-system-x86 qemu-system-data libaio1t64 libbpf1 libcapstone5 libfdt1 \
    libfuse3-4 libglib2.0-0t64 libgmp10 libgnutls30t64 libhogweed6t64 libibverbs1 \
    libjpeg62-turbo libnettle8t64 libnuma1 libpixman-1-0 libpmem1 libpng16-16t64 \
    librdmacm1t64 libsasl2-2 libseccomp2 libslirp0 libudev1 liburing2 libvdeplug2t64 \
    libzstd1 zlib1g libffi8 libpcre2-8-0 libmount1 libblkid1 libselinux1 libidn2-0 \
    libp11-kit0 libtasn1-6 libunistring5 libelf1t64 libnl-3-200 libnl-route-3-200 \
    libndctl6 libdaxctl1 libkmod2 libcap2 liblzma5 libgcc-s1 libstdc++6 libsystemd0 \
    libkeyutils1 libcrypt1 libssl3t64; do
    ls "$Q/debs/${p}_"*.deb >/dev/null 2>&1 ||
        (cd "$Q/debs" && apt-get $APTX download "$p/trixie" >/dev/null 2>&1) ||
        echo "cannot fetch $p" >&2
done
for d in "$Q"/debs/*.deb; do dpkg-deb -x "$d" "$Q/root"; done
L=$CACHE/tools/libc/usr/lib/x86_64-linux-gnu
cat > "$Q/qemu" <<EOS
#!/bin/sh
QEMU_MODULE_DIR=$Q/nomods exec "$L/ld-linux-x86-64.so.2" --library-path \
    "$L:$Q/root/usr/lib/x86_64-linux-gnu:$Q/root/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" \
    "$Q/root/usr/bin/qemu-system-x86_64" "\$@"
EOS
chmod +x "$Q/qemu"
qemu() { "$Q/qemu" "$@"; }
qemu --version | head -1
qemu -device hv-balloon,help 2>&1 | head -3
HV=hv-vpindex,hv-synic,hv-time,hv-relaxed,hv-vapic,hv-runtime,hv-stimer
for accel in "tcg qemu64" "kvm host"; do
    set -- $accel
    echo "== $1"
    echo '{"execute":"qmp_capabilities"}{"execute":"quit"}' |
        timeout 30 "$Q/qemu" -accel "$1" -machine q35 -cpu "$2,$HV" -nodefaults -display none \
            -m 384,maxmem=1G,slots=4 -device vmbus-bridge \
            -object memory-backend-ram,id=mem1,size=256M \
            -device hv-balloon,id=hvb,memdev=mem1 -S -qmp stdio 2>&1 |
        grep -v '"QMP"\|"return"' | head -3
done
