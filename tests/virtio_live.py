"""
Boot bookworm's stock 6.1 kernel in QEMU with a virtio-balloon-pci device,
inflate it over QMP and run the drivers' readers inside the guest against the
live kernel (/proc/kcore), through the kernel's BTF and kallsyms (no debug
files in the guest).

The kernel and modules come from make_virtio_sample.py's unpacking of the
Debian package; the guest's root is tests/live_guest.py's initramfs of the
host's Python, drgn and this checkout (at the same absolute paths). Results
come back on the second serial port between @@BEGIN x@@/@@END x@@ markers.
"""

import json
import os
import subprocess
import sys
import time
from typing import Dict, Optional

import live_guest as lg

sys.path.insert(0, lg.SAMPLES_SCRIPTS)
import make_sample as ms  # noqa: E402
import make_virtio_sample as mv  # noqa: E402

MEMORY_MIB = 1536
BALLOON_MIB = 256

GUEST_CODE = r"""
import json, drgn
from drgn_balloon.btf_debuginfo import load_btf_debug_info
from drgn_balloon.drivers import find_virtio_balloons, verify_virtio_balloon
from drgn_balloon.drivers import zone_totals
prog = drgn.Program()
prog.set_kernel()
load_btf_debug_info(prog)
out = []
for vb in find_virtio_balloons(prog):
    check, findings = verify_virtio_balloon(prog, vb)
    out.append({"device": vb.device, "features": vb.features,
                "num_pages": vb.num_pages, "adjusts_managed": vb.adjusts_managed,
                "walked": check.walk.pages if check else None,
                "complete": check.walk.complete if check else None,
                "not_offline": check.walk.not_offline if check else None,
                "findings": [f.message for f in (check.findings if check else ())]
                + [f.message for f in findings]})
z = zone_totals(prog)
print(json.dumps({"balloons": out, "present": z.present_pages,
                  "managed": z.managed_pages}))
"""

INIT = r"""#!/bb/sh
/bb/busybox --install -s /bb
export PATH=/bb
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /dev/shm 2>/dev/null
OUT=/dev/ttyS1
for m in $(cat /live/modules.order); do insmod /live/$m; done
echo "@@MODULES-LOADED@@" > $OUT
want=@PAGES@
while :; do
    i=$(sed -n 's/^balloon_inflate //p' /proc/vmstat)
    d=$(sed -n 's/^balloon_deflate //p' /proc/vmstat)
    [ $((i - d)) -ge $want ] && break
    sleep 1
done
sleep 2
{
 echo "@@BEGIN vmstat@@"; cat /proc/vmstat; echo "@@END vmstat@@"
 echo "@@BEGIN meminfo@@"; cat /proc/meminfo; echo "@@END meminfo@@"
 echo "@@BEGIN zoneinfo@@"; cat /proc/zoneinfo; echo "@@END zoneinfo@@"
 echo "@@BEGIN virtio@@"
 for d in /sys/bus/virtio/devices/*; do
     echo "${d##*/} $(cat $d/device) $(cat $d/features)"
 done
 echo "@@END virtio@@"
 echo "@@BEGIN report@@"
 cd /dev/shm
 PYTHONPATH=@REPO@ PYTHONDONTWRITEBYTECODE=1 @PYTHON@ /live/guest.py 2>&1
 echo "@@END report@@"
 echo "@@BEGIN console@@"
 PYTHONPATH=@REPO@ PYTHONDONTWRITEBYTECODE=1 @PYTHON@ -m drgn_balloon.cli --json \
     --no-rss 2>/tmp/console.err
 echo "exit $?"
 echo "@@END console@@"
 echo "@@BEGIN console_err@@"; cat /tmp/console.err; echo "@@END console_err@@"
 echo "@@DONE@@"
} > $OUT
while :; do sleep 3600; done
"""


def missing() -> Optional[str]:
    """Why the live virtio test cannot run here, or None."""
    import shutil

    needs = [
        what
        for what, ok in (
            (
                "qemu-system-x86_64 (apt: qemu-system-x86)",
                shutil.which("qemu-system-x86_64"),
            ),
            ("ldd (apt: libc-bin)", shutil.which("ldd")),
            ("a static busybox (apt: busybox-static)", lg.find_busybox()),
            ("dpkg-deb (apt: dpkg)", shutil.which("dpkg-deb")),
        )
        if not ok
    ]
    if needs:
        return "the live virtio test needs " + ", ".join(needs)
    try:
        from drgn_balloon.btf_debuginfo import btf_supported
    except ImportError:
        return "this checkout has no BTF mode (drgn_balloon.btf_debuginfo)"
    return btf_supported()  # the guest runs this Python's drgn


def run(work: str, doom: bool = False, timeout: float = 900) -> Dict[str, object]:
    """
    Boot, inflate, run the readers in the guest; returns the parsed sections.
    The kernel package is fetched like make_virtio_sample.py's (apt, Debian's
    archive) into $DRGN_BALLOON_CACHE.
    """
    os.makedirs(work, exist_ok=True)
    root, moddir, release, _ = mv.unpack_kernel("bookworm", work)
    vmlinuz = mv.find_vmlinuz(root, release)
    mods = mv.module_order(moddir, ["virtio_pci", "virtio_balloon"])
    base = os.path.join(work, "base.cpio")
    import tempfile

    pages = BALLOON_MIB * 256
    with tempfile.TemporaryDirectory(prefix="vlive-pyc-") as pyc_dir:
        cpio = lg.Cpio(base)
        for d in ("proc", "sys", "dev", "tmp", "bb", "live", "root"):
            cpio.directory(d)
        cpio.file("/bb/busybox", lg.find_busybox(), 0o755)
        cpio.symlink("/bb/sh", "busybox")
        for path, name in mods:
            cpio.file("/live/%s.ko" % name, mv.plain_ko(path, work), 0o644)
        cpio.data("/live/modules.order", "".join(n + ".ko\n" for _, n in mods).encode())
        cpio.data("/live/guest.py", GUEST_CODE.encode())
        init = (
            INIT.replace("@PAGES@", str(pages))
            .replace("@REPO@", lg.REPO)
            .replace("@PYTHON@", os.path.abspath(sys.executable))
        )
        cpio.data("/init", init.encode(), 0o755)
        tree = lg.HostTree(cpio, pyc_dir)
        paths, stdlib = lg.python_paths()
        for d in stdlib:
            tree.add(d, skip=lg._STDLIB_SKIP)
        for p in paths:
            tree.add(p, skip={"__pycache__"} if p.startswith(lg.REPO) else ())
        tree.add_pycache()
        tree.add_shared_libraries()
        cpio.close()
    data_log = os.path.join(work, "data.log")
    qmp_sock = os.path.join(work, "qmp.sock")
    for f in (data_log, qmp_sock):
        if os.path.exists(f):
            os.unlink(f)
    device = "virtio-balloon-pci,id=balloon0" + (",deflate-on-oom=on" if doom else "")
    qemu = [
        "nice", "-n", "5", "qemu-system-x86_64", "-accel", "tcg", "-nodefaults",
        "-display", "none", "-no-reboot", "-machine", "pc", "-cpu", "max",
        "-m", str(MEMORY_MIB), "-smp", "1", "-device", device,
        "-kernel", vmlinuz, "-initrd", base,
        "-append", "console=ttyS0 panic=-1 rdinit=/init",
        "-serial", "file:" + os.path.join(work, "console.log"),
        "-serial", "file:" + data_log,
        "-qmp", "unix:%s,server=on,wait=off" % qmp_sock,
    ]  # fmt: skip
    proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.time() + timeout
    try:
        ms.wait_for(data_log, "@@MODULES-LOADED@@", timeout, [proc])
        qmp = ms.QMP(qmp_sock)
        qmp.cmd("balloon", value=(MEMORY_MIB - BALLOON_MIB) << 20)
        data = ms.wait_for(data_log, "@@DONE@@", max(deadline - time.time(), 1), [proc])
        actual = qmp.cmd("query-balloon")["actual"]
    finally:
        proc.kill()
        proc.wait()
    sec = ms.sections(data)
    report = sec["report"].strip().splitlines()
    return {
        "vmstat": ms.parse_vmstat(sec["vmstat"]),
        "meminfo": ms.parse_meminfo(sec["meminfo"]),
        "zoneinfo": mv.parse_zoneinfo(sec["zoneinfo"]),
        "virtio": sec["virtio"],
        "report_raw": sec["report"],
        "report": json.loads(report[-1])
        if report and report[-1].startswith("{")
        else None,
        "query_balloon_actual": actual,
        "pages": pages,
        # balloon-report --json run in the guest on the live kernel: its
        # document, exit code and stderr.
        "console": _console(sec.get("console", "")),
        "console_err": sec.get("console_err", ""),
    }


def _console(text: str) -> Dict[str, object]:
    lines = text.strip().splitlines()
    code = None
    if lines and lines[-1].startswith("exit "):
        code = int(lines.pop().split()[1])
    body = "\n".join(lines)
    start = body.find("{")
    doc = json.loads(body[start:]) if start >= 0 else None
    return {"exit": code, "doc": doc}
