#!/bin/bash
# Rebuild every committed sample from nothing on a fresh Debian 12 (bookworm) machine, as root:
#     scripts/samples/build_all.sh            # all kernels, all samples
#     scripts/samples/build_all.sh --large    # also the large benchmark sample (cache dir only)
# Work and build trees go to $DRGN_BALLOON_CACHE (default /var/tmp/drgn-balloon-build).
# SAMPLES_OUT=dir writes the samples there instead of the repo's vmcore-samples/.
# SKIP_APT=1 skips apt-get install; REBUILD_KERNELS=1 rebuilds kernels already built.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
mkdir -p "$CACHE/logs"
OUT=${SAMPLES_OUT:-$(cd "$HERE/../.." && pwd)/vmcore-samples}
T0=$(date +%s)

if [ "${SKIP_APT:-}" != 1 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        build-essential bc flex bison libelf-dev libssl-dev xz-utils cpio kmod zstd \
        python3 gdb qemu-system-x86 busybox-static binutils dwarves \
        liblzo2-2 libdw1 libelf1 zlib1g libzstd1 libbz2-1.0 liblzma5 ca-certificates
fi
python3 -c 'import drgn' 2>/dev/null || echo "note: drgn is not importable; the drgn check of each sample will fail (pip install drgn)" >&2

"$HERE/fetch_tools.sh"
# The sample kernels; then 6.1 and 7.2 again with BTF (release VER-btf, issue 8).
for v in 6.1 7.2 6.12 5.10 6.1-btf 7.2-btf; do
    [ -f "$CACHE/kernels/$v/release" ] && [ "${REBUILD_KERNELS:-}" != 1 ] && continue
    echo "== building kernel $v (log: $CACHE/logs/build-$v.log)"
    "$HERE/build_kernel.sh" ${v%-btf} $([ "$v" = "${v%-btf}" ] || echo btf) > "$CACHE/logs/build-$v.log" 2>&1
done
# Debian's own kernels (image packages only, no -dbg) for the stock samples.
for v in 6.1 7.2 5.10; do
    [ -f "$CACHE/stock/$v/release" ] && [ "${REFETCH_STOCK:-}" != 1 ] && continue
    echo "== fetching stock kernel $v (log: $CACHE/logs/stock-$v.log)"
    "$HERE/fetch_stock_kernel.sh" "$v" > "$CACHE/logs/stock-$v.log" 2>&1
done
echo "kernels done after $(( $(date +%s) - T0 )) s"

SAMPLES="6.1-4k 6.1-deflated 6.1-noresponse 6.1-notvmware 5.10-4k 6.12-4k 6.12-2m 7.2-4k 7.2-2m"
for s in $SAMPLES; do
    echo "== sample $s (log: $CACHE/logs/sample-$s.log)"
    python3 "$HERE/make_sample.py" --out "$OUT" "${s%%-*}" "${s#*-}" > "$CACHE/logs/sample-$s.log" 2>&1
done
echo "== sample 6.1-4k-elf (log: $CACHE/logs/sample-6.1-4k-elf.log)"
python3 "$HERE/make_sample.py" --out "$OUT" --elf 6.1 4k > "$CACHE/logs/sample-6.1-4k-elf.log" 2>&1
# Issue 8: the BTF kernels and the stock kernels, stored as vmcore.xz (--xz).
NEW_SAMPLES="6.1-btf:4k 7.2-btf:2m stock-6.1:4k stock-7.2:4k stock-5.10:4k:--system-map"
for s in $NEW_SAMPLES; do
    IFS=: read -r kernel scenario extra <<< "$s"
    echo "== sample $kernel-$scenario (log: $CACHE/logs/sample-$kernel-$scenario.log)"
    rm -rf "${OUT:?}/$kernel-$scenario"
    python3 "$HERE/make_sample.py" --out "$OUT" --xz $extra "$kernel" "$scenario" \
        > "$CACHE/logs/sample-$kernel-$scenario.log" 2>&1
done
if [ "${1:-}" = --large ]; then
    for s in large large4k; do
        echo "== benchmark sample 6.12-$s (log: $CACHE/logs/sample-6.12-$s.log)"
        python3 "$HERE/make_sample.py" 6.12 $s > "$CACHE/logs/sample-6.12-$s.log" 2>&1
    done
fi
python3 "$HERE/check_samples.py" $(for s in $SAMPLES 6.1-4k-elf 6.1-btf-4k 7.2-btf-2m \
    stock-6.1-4k stock-7.2-4k stock-5.10-4k; do echo "$OUT/$s"; done)
du -sh "$OUT"/*
echo "all done after $(( $(date +%s) - T0 )) s"
