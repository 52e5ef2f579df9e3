#!/bin/sh
# /init of the sample guest (busybox).  Loads vmw_vmci and vmw_balloon, waits for the
# balloon to reach the target the host will settle on, prints the ground truth between
# markers on the data port (ttyS1), then signals the host and idles.
#
# Settings come from the kernel command line (unknown name=value become environment):
#   sample_target   final balloon target in frames (empty: do not wait for a target)
#   sample_settle   seconds to wait when there is no target (default 5)
#   sample_timeout  give up waiting after this many seconds (default 300)
#   sample_attach   1: print vmw_balloon's kallsyms once it is loaded, for a host that
#                   attaches then (a stock kernel: no vmlinux to break on do_init_module)
#   sample_kallsyms 1: also print vmlinux's /proc/kallsyms (the System.map of a stock
#                   kernel whose VMCOREINFO has no kallsyms)
export PATH=/bin
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
OUT=/dev/ttyS1
[ -c $OUT ] || OUT=/dev/console
say() { echo "$@" > $OUT; }

say "@@GUEST-BOOTED@@ $(uname -r)"
# A stock kernel has qemu_fw_cfg as a module: it gives QEMU the VMCOREINFO address.
if [ -f /qemu_fw_cfg.ko ]; then insmod /qemu_fw_cfg.ko; say "@@INSMOD qemu_fw_cfg rc=$?@@"; fi
# Scenario "fragmented" (sample_fragment=MARGIN): fill a tmpfs file and punch out every
# other page, leaving MARGIN frames free above the target, proactive compaction off, so
# that the pages the balloon takes are scattered (make_sample.py builds /fragment).
if [ -n "$sample_fragment" ] && [ -x /fragment ]; then
    echo 0 > /proc/sys/vm/compaction_proactiveness
    mkdir -p /frag && mount -t tmpfs -o size=95% tmpfs /frag
    free=$(( $(sed -n 's/^MemFree: *\([0-9]*\) kB/\1/p' /proc/meminfo) / 4 ))
    /fragment /frag/file $(( 2 * (free - sample_target - sample_fragment) )) > $OUT 2>&1
    say "@@FRAGMENTED rc=$? free_before=$free@@"
fi
insmod /vmw_vmci.ko; say "@@INSMOD vmw_vmci rc=$?@@"
insmod /vmw_balloon.ko; say "@@INSMOD vmw_balloon rc=$?@@"
V=/sys/kernel/debug/vmmemctl
# The driver counts its statistics only after vmmemctl was first read.
[ -e $V ] && cat $V > /dev/null
if [ "$sample_attach" = 1 ]; then
    { echo "@@BEGIN balloon_kallsyms@@"; grep '\[vmw_balloon\]' /proc/kallsyms
      echo "@@END balloon_kallsyms@@"
      echo "@@BEGIN check_kallsyms@@"; grep -E ' (init_task|init_uts_ns)$' /proc/kallsyms
      echo "@@END check_kallsyms@@"; } > $OUT
fi

# first match only: "target" is also the name of a command-statistics line
field() { sed -n "s/^$1 *: *\([^ ]*\).*/\1/p" $V | head -n 1; }
timeout=${sample_timeout:-300}
if [ -n "$sample_target" ] && [ -e $V ]; then
    t0=$(date +%s); prev=-1; same=0
    while :; do
        tg=$(field target); cur=$(field current)
        if [ "$tg" = "$sample_target" ] && [ "$cur" -ge "$tg" ] && [ $((cur - tg)) -lt 512 ]; then
            if [ "$cur" = "$prev" ]; then same=$((same + 1)); else same=0; fi
        else
            same=0
        fi
        prev=$cur
        [ $same -ge 2 ] && break
        if [ $(( $(date +%s) - t0 )) -gt $timeout ]; then say "@@WAIT-TIMEOUT@@"; break; fi
        sleep 1
    done
else
    sleep ${sample_settle:-5}
fi

# Ground truth, printed just before the host takes the dump.
{
    echo "@@BEGIN uname_r@@"; uname -r; echo "@@END uname_r@@"
    echo "@@BEGIN module_sections@@"
    if [ -d /sys/module/vmw_balloon/sections ]; then
        for f in /sys/module/vmw_balloon/sections/.* /sys/module/vmw_balloon/sections/*; do
            [ -f "$f" ] && echo "${f##*/} $(cat $f)"
        done
    fi
    echo "@@END module_sections@@"
    echo "@@BEGIN lsmod@@"; cat /proc/modules; echo "@@END lsmod@@"
    echo "@@BEGIN vmmemctl@@"; [ -e $V ] && cat $V; echo "@@END vmmemctl@@"
    echo "@@BEGIN meminfo@@"; cat /proc/meminfo; echo "@@END meminfo@@"
    echo "@@BEGIN vmstat@@"; cat /proc/vmstat; echo "@@END vmstat@@"
    echo "@@BEGIN zoneinfo@@"; cat /proc/zoneinfo; echo "@@END zoneinfo@@"
    if [ "$sample_kallsyms" = 1 ]; then
        echo "@@BEGIN kallsyms@@"; grep -v '\]$' /proc/kallsyms; echo "@@END kallsyms@@"
    fi
    echo "@@SAMPLE-READY@@"
} > $OUT
while :; do sleep 3600; done
