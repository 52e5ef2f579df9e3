#!/bin/sh
# /init of the virtio_balloon sample guest (busybox, stock Debian kernel).  Loads the
# modules named in /modules.order (the virtio core and PCI transport where they are
# modules, virtio_balloon, qemu_fw_cfg for VMCOREINFO), tells the host, waits until the
# balloon holds the pages the host will settle on, prints the ground truth between
# markers on the data port (ttyS1), then signals the host and idles.
#
# Settings from the kernel command line (unknown name=value become environment):
#   sample_pages    final balloon size in 4 KiB pages (vmstat balloon_inflate - deflate)
#   sample_timeout  give up waiting after this many seconds (default 300)
export PATH=/bin
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
OUT=/dev/ttyS1
[ -c $OUT ] || OUT=/dev/console
say() { echo "$@" > $OUT; }

say "@@GUEST-BOOTED@@ $(uname -r)"
for m in $(cat /modules.order); do
    insmod /$m; say "@@INSMOD $m rc=$?@@"
done
say "@@MODULES-LOADED@@"

vmstat() { sed -n "s/^$1 //p" /proc/vmstat; }
held() { echo $(( $(vmstat balloon_inflate) - $(vmstat balloon_deflate) )); }
timeout=${sample_timeout:-300}
t0=$(date +%s); same=0
while :; do
    h=$(held)
    if [ "$h" = "$sample_pages" ]; then same=$((same + 1)); else same=0; fi
    [ $same -ge 3 ] && break
    if [ $(( $(date +%s) - t0 )) -gt $timeout ]; then say "@@WAIT-TIMEOUT@@ held=$h"; break; fi
    sleep 1
done

# Ground truth, printed just before the host takes the dump.
{
    echo "@@BEGIN uname_r@@"; uname -r; echo "@@END uname_r@@"
    echo "@@BEGIN cmdline@@"; cat /proc/cmdline; echo "@@END cmdline@@"
    echo "@@BEGIN lsmod@@"; cat /proc/modules; echo "@@END lsmod@@"
    echo "@@BEGIN virtio_devices@@"
    for d in /sys/bus/virtio/devices/*; do
        [ -e "$d/device" ] || continue
        drv=-; [ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
        echo "${d##*/} device=$(cat $d/device) vendor=$(cat $d/vendor) status=$(cat $d/status) driver=$drv features=$(cat $d/features)"
    done
    echo "@@END virtio_devices@@"
    echo "@@BEGIN meminfo@@"; cat /proc/meminfo; echo "@@END meminfo@@"
    echo "@@BEGIN vmstat@@"; cat /proc/vmstat; echo "@@END vmstat@@"
    echo "@@BEGIN zoneinfo@@"; cat /proc/zoneinfo; echo "@@END zoneinfo@@"
    echo "@@SAMPLE-READY@@"
} > $OUT
while :; do sleep 3600; done
