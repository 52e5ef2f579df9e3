#!/usr/bin/env python3
"""Make one real virtio_balloon sample dump of a stock Debian kernel.

Boots Debian's own kernel image (bookworm's 6.1, sid's current one) in QEMU (TCG)
with a virtio-balloon-pci device and a busybox initramfs, inflates the unmodified
virtio_balloon driver with QMP `balloon` (QEMU is the host: no gdb), lets the guest
print its ground truth (/proc/meminfo, /proc/vmstat, /proc/zoneinfo, the virtio
devices' sysfs features, uname -r), records QEMU's query-balloon and `info balloon`,
dumps the guest with QMP dump-guest-memory and compresses the dump with makedumpfile.

    make_virtio_sample.py virtio-6.1 --out /var/tmp/new-samples
    make_virtio_sample.py all

The kernels keep KASLR on and ship no debug info in the sample: read the dumps
through the kernel's BTF and kallsyms, or with Debian's linux-image-*-dbg package for
the release in the manifest.  If that package is unpacked under
$DRGN_BALLOON_CACHE/dbg (or --dbg-root), the dump is also checked with drgn against
the guest's numbers.

Python 3 standard library only; helpers shared with make_sample.py are imported.
"""

import argparse
import datetime
import glob
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_sample as ms  # noqa: E402

HERE = ms.HERE
CACHE = ms.CACHE
log = ms.log
MIB = 1 << 20

# Kernel eras: which Debian suite's current kernel image.  6.1 (bookworm) has the virtio
# core and PCI transport as modules (virtio_balloon's depends= names only virtio and
# virtio_ring, so virtio_pci is loaded as well); sid's 7.x builds them in.
ERAS = {
    "5.10": {"suite": "bullseye"},
    "6.1": {"suite": "bookworm"},
    "6.12": {"suite": "trixie"},
    "7.x": {
        "suite": "sid",
        "dump_level": 23,
        "dump_note": "-d 23, not 31: makedumpfile 1.7.8 counts 7.x slab pages as "
        "user pages (bit 8) and drops them (struct module, task_struct)",
    },
}

# Each sample: era, QEMU device options, guest memory, the balloon steps (MiB held by
# the balloon after each step; QMP `balloon` takes the guest's memory size).
SAMPLES = {
    "virtio-5.10": {
        "era": "5.10",
        "device": {},
        "memory_mib": 384,
        "steps_mib": [128],
        "description": "bullseye's stock 5.10 kernel (struct shrinker embedded in "
        "struct virtio_balloon, balloon_compaction.h), default features.",
    },
    "virtio-6.1": {
        "era": "6.1",
        "device": {},
        "memory_mib": 384,
        "steps_mib": [128],
        "description": "bookworm's stock 6.1 kernel, virtio-balloon-pci with default "
        "features (no deflate-on-oom): the driver takes its pages out of MemTotal.",
    },
    "virtio-6.1-doom": {
        "era": "6.1",
        "device": {"deflate-on-oom": "on"},
        "memory_mib": 384,
        "steps_mib": [128],
        "description": "bookworm's stock 6.1 kernel, deflate-on-oom negotiated: the "
        "balloon's pages stay in MemTotal (used, like vmw_balloon's).",
    },
    "virtio-6.12": {
        "era": "6.12",
        "device": {},
        "memory_mib": 384,
        "steps_mib": [128],
        "description": "trixie's stock 6.12 kernel (struct shrinker pointer, "
        "balloon_compaction.h), default features.",
    },
    "virtio-6.12-hint": {
        "era": "6.12",
        "device": {
            "deflate-on-oom": "on",
            "free-page-hint": "on",
            "free-page-reporting": "on",
            "iothread": "iothread0",
        },
        "objects": ["iothread,id=iothread0"],
        "memory_mib": 384,
        "steps_mib": [150, 110],
        "description": "trixie's stock 6.12 kernel with every feature QEMU offers: "
        "deflate-on-oom, free page hinting (needs an iothread), free page reporting; "
        "inflated to 150 MiB, then the host lowered the balloon to 110 MiB.",
    },
    "virtio-7.x": {
        "era": "7.x",
        "device": {"free-page-reporting": "on"},
        "memory_mib": 384,
        "steps_mib": [128],
        "description": "sid's stock 7.x kernel (mm/balloon.c, NR_BALLOON_PAGES), "
        "free page reporting negotiated, no deflate-on-oom.",
    },
    "virtio-7.x-doom": {
        "era": "7.x",
        "device": {"deflate-on-oom": "on"},
        "memory_mib": 384,
        "steps_mib": [150, 110],
        "description": "sid's stock 7.x kernel, deflate-on-oom negotiated; inflated to "
        "150 MiB, then the host lowered the balloon to 110 MiB (balloon_deflate > 0).",
    },
}


def sh_common(snippet):
    """Run a bash snippet with common.sh sourced; returns its stdout (stripped)."""
    return subprocess.run(
        ["bash", "-c", '. "%s/common.sh"; %s' % (HERE, snippet)],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, DRGN_BALLOON_CACHE=CACHE),
    ).stdout.strip()


def fetch_deb(pkg, suite):
    return sh_common('find_or_fetch_deb "%s" "%s"' % (pkg, suite)).splitlines()[-1]


def current_image(suite):
    """The kernel image package linux-image-amd64 depends on in suite."""
    if suite == "bookworm":
        out = subprocess.run(
            ["apt-cache", "depends", "linux-image-amd64"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    else:
        out = sh_common(
            "aptx_update >&2; v=$(apt-cache $APTX madison linux-image-amd64 | "
            'awk -v s=%s \'$0 ~ " "s"/" {print $3; exit}\'); '
            "apt-cache $APTX depends linux-image-amd64=$v" % suite
        )
    m = re.search(r"Depends: (linux-image-\S+-amd64)\b", out)
    if not m:
        raise SystemExit("cannot tell %s's kernel image from:\n%s" % (suite, out))
    return m.group(1)


def unpack_kernel(suite, work):
    """Unpack the suite's current stock kernel; returns (root, release, packages)."""
    image = current_image(suite)
    debs = [fetch_deb(image, suite)]
    # sid splits the image into linux-binary-* (vmlinuz) and linux-modules-*.
    deps = subprocess.run(
        ["dpkg-deb", "-f", debs[0], "Depends"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for dep in re.findall(r"(linux-(?:binary|modules)-\S+?)[\s,]", deps + " "):
        debs.append(fetch_deb(dep, suite))
    root = os.path.join(CACHE, "stock", image)
    if not os.path.isdir(root):
        os.makedirs(os.path.dirname(root), exist_ok=True)  # dpkg-deb -x: no -p
        for d in debs:
            ms.run(["dpkg-deb", "-x", d, root + ".tmp"])
        os.rename(root + ".tmp", root)
    mods = glob.glob(os.path.join(root, "lib", "modules", "*")) + glob.glob(
        os.path.join(root, "usr", "lib", "modules", "*")
    )
    if len(mods) != 1:
        raise SystemExit("expected one modules dir in %s, found %s" % (root, mods))
    release = os.path.basename(mods[0])
    versions = {
        os.path.basename(d).split("_")[0]: os.path.basename(d).split("_")[1]
        for d in debs
    }
    return root, mods[0], release, versions


def find_vmlinuz(root, release):
    for p in (
        os.path.join(root, "boot", "vmlinuz-" + release),
        os.path.join(root, "usr", "lib", "modules", release, "vmlinuz"),
    ):
        if os.path.exists(p):
            return p
    raise SystemExit("no vmlinuz for %s in %s" % (release, root))


def module_path(moddir, name):
    hits = [
        p
        for p in glob.glob(
            os.path.join(moddir, "kernel", "**", "*.ko*"), recursive=True
        )
        if re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", os.path.basename(p)).replace("-", "_")
        == name
    ]
    return hits[0] if hits else None


def module_order(moddir, names):
    """(path, name) of each module to insmod, dependencies first (modinfo depends=).

    A module that is not in the package is built in and left out."""
    order = []

    def visit(name):
        if name in [n for _, n in order]:
            return
        p = module_path(moddir, name)
        if p is None:
            return
        deps = subprocess.run(
            ["/sbin/modinfo", "-F", "depends", p],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for d in filter(None, deps.split(",")):
            visit(d)
        order.append((p, name))

    for n in names:
        visit(n)
    return order


def plain_ko(path, work):
    """A .ko the guest's busybox insmod can load (decompressed)."""
    out = os.path.join(work, "mods", os.path.basename(path).split(".ko")[0] + ".ko")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if path.endswith(".xz"):
        with lzma.open(path) as f, open(out, "wb") as g:
            shutil.copyfileobj(f, g)
    elif path.endswith(".zst"):
        with open(out, "wb") as g:
            subprocess.run(["zstd", "-dc", path], check=True, stdout=g)
    else:
        shutil.copy(path, out)
    return out


def parse_virtio_devices(raw):
    devs = []
    for line in raw.splitlines():
        parts = line.split()
        if not parts:
            continue
        d = {"name": parts[0]}
        for kv in parts[1:]:
            k, v = kv.split("=", 1)
            d[k] = v
        if "features" in d:
            # sysfs prints one '0'/'1' per feature bit, bit 0 first.
            d["feature_bits"] = [i for i, c in enumerate(d["features"]) if c == "1"]
        devs.append(d)
    return devs


def parse_zoneinfo(raw):
    zones = []
    cur = None
    for line in raw.splitlines():
        m = re.match(r"^Node (\d+), zone\s+(\S+)", line)
        if m:
            cur = {"node": int(m.group(1)), "zone": m.group(2)}
            zones.append(cur)
            continue
        m = re.match(r"^\s+(present|managed|spanned)\s+(\d+)$", line)
        if m and cur is not None:
            cur[m.group(1)] = int(m.group(2))
    return zones


def ground_truth(data):
    sec = ms.sections(data)
    return {
        "uname_r": sec["uname_r"].strip(),
        "cmdline": sec["cmdline"].strip(),
        "lsmod": sec["lsmod"],
        "virtio_devices": {
            "raw": sec["virtio_devices"],
            "parsed": parse_virtio_devices(sec["virtio_devices"]),
        },
        "meminfo": {"raw": sec["meminfo"], "parsed": ms.parse_meminfo(sec["meminfo"])},
        "vmstat": {"raw": sec["vmstat"], "parsed": ms.parse_vmstat(sec["vmstat"])},
        "zoneinfo": {"raw": sec["zoneinfo"], "parsed": parse_zoneinfo(sec["zoneinfo"])},
    }


DRGN_CHECK = r"""
import json, sys, drgn
from drgn import container_of, cast
from drgn.helpers.linux.list import list_for_each_entry
vmcore, files = sys.argv[1], sys.argv[2:]
prog = drgn.Program()
prog.set_core_dump(vmcore)
prog.load_debug_info(files)
from drgn.helpers.linux.device import bus_for_each_dev
out = []
for dev in bus_for_each_dev(prog["virtio_bus"].address_of_()):
    vdev = container_of(dev, "struct virtio_device", "dev")
    if vdev.id.device.value_() != 5 or not dev.driver:
        continue
    vb = cast("struct virtio_balloon *", vdev.priv)
    n = sum(1 for _ in list_for_each_entry(
        "struct page", vb.vb_dev_info.pages.address_of_(), "lru"))
    out.append({"num_pages": vb.num_pages.value_(), "list_pages": n,
                "features": hex(vdev.features.value_())})
from drgn.helpers.linux.pid import for_each_task
tasks = sum(1 for t in for_each_task(prog) if t.comm.string_() is not None)
mods = [m.name.string_().decode() for m in list_for_each_entry(
    "struct module", prog["modules"].address_of_(), "list")]
print(json.dumps({"balloons": out, "tasks": tasks, "modules": mods}))
"""


def drgn_check(vmcore, dbg_root, release):
    """With Debian's -dbg files under dbg_root: the balloon as drgn reads it."""
    base = os.path.join(dbg_root, "usr", "lib", "debug")
    vmlinux = os.path.join(base, "boot", "vmlinux-" + release)
    kos = glob.glob(
        os.path.join(
            base, "lib", "modules", release, "kernel", "drivers", "virtio", "*.ko*"
        )
    )
    if not os.path.exists(vmlinux):
        return None, "no debug files for %s under %s: not checked" % (release, base)
    p = subprocess.run(
        [sys.executable, "-c", DRGN_CHECK, vmcore, vmlinux] + kos,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise SystemExit("drgn check failed:\n" + p.stdout + p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1]), None


def make(name, out_root, dbg_root, dump_level, keep_elf=False, store="xz"):
    sc = SAMPLES[name]
    suite = ERAS[sc["era"]]["suite"]
    work = os.path.join(CACHE, "work", name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    t_start = time.time()
    root, moddir, release, versions = unpack_kernel(suite, work)
    vmlinuz = find_vmlinuz(root, release)
    mods = module_order(moddir, ["virtio_pci", "virtio_balloon", "qemu_fw_cfg"])
    files = [(plain_ko(p, work), n + ".ko") for p, n in mods]
    with open(os.path.join(work, "modules.order"), "w") as f:
        f.write("\n".join(n + ".ko" for _, n in mods) + "\n")
    files.append((os.path.join(work, "modules.order"), "modules.order"))
    cpio = ms.make_initramfs(work, os.path.join(HERE, "guest_init_virtio.sh"), files)
    mdf, mdf_version = ms.makedumpfile_bin()

    mem = sc["memory_mib"]
    pages = sc["steps_mib"][-1] * MIB // 4096
    data_log = os.path.join(work, "data.log")
    console_log = os.path.join(work, "console.log")
    qmp_sock = os.path.join(work, "qmp.sock")
    device = ",".join(
        ["virtio-balloon-pci", "id=balloon0"]
        + ["%s=%s" % kv for kv in sorted(sc["device"].items())]
    )
    append = [
        "console=ttyS0",
        "loglevel=6",
        "panic=-1",
        "sample_pages=%d" % pages,
        "sample_timeout=300",
    ]
    qemu = [
        "nice",
        "-n",
        "5",
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-machine",
        "pc",
        "-cpu",
        "qemu64",
        "-m",
        str(mem),
        "-smp",
        "1",
        "-device",
        "vmcoreinfo",
    ]
    for obj in sc.get("objects", []):
        qemu += ["-object", obj]
    qemu += ["-device", device]
    qemu += ms.guest_args(vmlinuz, cpio, append, console_log, data_log, qmp_sock)
    qemu_p = ms.start_qemu(work, qemu)
    host = {"balloon_commands_mib": [], "query_balloon": None, "info_balloon": None}
    try:
        ms.wait_for(data_log, "@@MODULES-LOADED@@", 600, [qemu_p])
        qmp = ms.QMP(qmp_sock)
        for step in sc["steps_mib"]:
            target = (mem - step) * MIB
            qmp.cmd("balloon", value=target)
            host["balloon_commands_mib"].append(mem - step)
            deadline = time.time() + 300
            while qmp.cmd("query-balloon")["actual"] != target:
                if time.time() > deadline:
                    raise SystemExit("the guest never reached %d MiB" % (mem - step))
                time.sleep(0.5)
            log("balloon at %d MiB (guest %d MiB)" % (step, mem - step))
        data = ms.wait_for(data_log, "@@SAMPLE-READY@@", 600, [qemu_p])
        log("guest ready")
        host["query_balloon"] = qmp.cmd("query-balloon")
        host["info_balloon"] = qmp.cmd(
            "human-monitor-command", **{"command-line": "info balloon"}
        ).strip()
        host["qom_list"] = {
            p["name"]: p["type"]
            for p in qmp.cmd("qom-list", path="/machine/peripheral/balloon0")
        }
        elf = os.path.join(work, "vmcore.elf")
        qmp.cmd("dump-guest-memory", paging=False, protocol="file:" + elf)
        log("dump-guest-memory: %d MB" % (os.path.getsize(elf) >> 20))
        try:
            qmp.cmd("quit")
        except (EOFError, OSError):
            pass
    finally:
        ms.stop(qemu_p)
    if "@@WAIT-TIMEOUT@@" in data:
        raise SystemExit("the guest timed out waiting for the balloon")
    gt = ground_truth(data)

    kdump = os.path.join(work, "vmcore")
    if ms.fix_qemu_elf(elf):
        log("moved the ELF program headers to offset 64 (QEMU 7.2 layout)")
    # makedumpfile 1.7.8 takes the slab pages of 7.x kernels for user pages (bit 8
    # of the dump level; see README "Known quirks"): 7.x starts at -d 23, and any
    # dump in which drgn meets excluded pages is redone without bit 8.
    level = ERAS[sc["era"]].get("dump_level", dump_level) & dump_level
    dump_note = ERAS[sc["era"]].get("dump_note") if level != dump_level else None
    while True:
        if os.path.exists(kdump):
            os.unlink(kdump)
        p = subprocess.run(
            [mdf]
            + (["-c"] if store == "zlib" else [])
            + ["-d", str(level), elf, kdump],
            capture_output=True,
            text=True,
        )
        sys.stdout.write(p.stdout + p.stderr)
        if p.returncode != 0:
            raise SystemExit("makedumpfile failed")
        log("makedumpfile -d %d: %.1f MB" % (level, os.path.getsize(kdump) / 1e6))
        try:
            check, why = drgn_check(kdump, dbg_root, release)
            break
        except SystemExit as e:
            if "Excluded page" not in str(e) or level & 8 == 0:
                raise
            dump_note = "-d %d excluded pages drgn needs; used -d %d" % (
                level,
                level & ~8,
            )
            log(dump_note)
            level &= ~8
    if not keep_elf:
        os.unlink(elf)
    log("drgn: %s" % (check if check is not None else why))
    held = (
        gt["vmstat"]["parsed"]["balloon_inflate"]
        - gt["vmstat"]["parsed"]["balloon_deflate"]
    )
    if check is not None and [c["list_pages"] for c in check["balloons"]] != [held]:
        raise SystemExit("drgn sees %s balloon pages, the guest %d" % (check, held))

    sample_dir = os.path.join(out_root, name)
    shutil.rmtree(sample_dir, ignore_errors=True)
    os.makedirs(sample_dir)
    if store == "xz":
        # A stock kernel's text alone keeps a zlib kdump near 16 MB (pages are
        # compressed one by one); xz over uncompressed pages finds the
        # repeats across pages: about 9 MB.  Decompressed on first use.
        stored = os.path.join(sample_dir, "vmcore.xz")
        with open(stored, "wb") as f:
            ms.run(["xz", "-9", "-T2", "-c", kdump], stdout=f)
        dump_format = "kdump (pages not compressed), stored as vmcore.xz (xz -9)"
    else:
        stored = os.path.join(sample_dir, "vmcore")
        shutil.copy(kdump, stored)
        dump_format = "kdump-compressed (zlib)"
    os.chmod(stored, 0o644)
    image = [k for k in versions if k.startswith("linux-image-")][0]
    manifest = {
        "name": name,
        "description": sc["description"],
        "driver": "virtio_balloon",
        "kernel_release": release,
        "kernel_packages": versions,
        "debug_package": "%s-dbg=%s (Debian %s; not stored)"
        % (image, versions[image], suite),
        "debug_info": "none stored: the kernel's BTF (/sys/kernel/btf in the image) "
        "and kallsyms, or the debug package",
        "memory_mib": mem,
        "qemu_device": device,
        "qemu_cmdline": qemu[3:],
        "qemu_version": subprocess.run(
            ["qemu-system-x86_64", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0],
        "balloon_steps_mib": sc["steps_mib"],
        "expected_pages": pages,
        "modules_loaded": [n for _, n in mods],
        "host": host,
        "dump": {
            "tool": mdf_version,
            "dump_level": level,
            "note": dump_note,
            "format": dump_format,
            "file": os.path.basename(stored),
        },
        "drgn_check": check,
        "built": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "build_seconds": round(time.time() - t_start, 1),
        "ground_truth": gt,
    }
    with open(os.path.join(sample_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    open(os.path.join(sample_dir, "READY"), "w").close()
    log(
        "%s: %s, %.1f MB" % (name, sample_dir, os.path.getsize(stored) / 1e6)
        + "; held %d pages, MemTotal %d kB"
        % (held, gt["meminfo"]["parsed"]["MemTotal"])
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "names", nargs="+", help="sample names (%s) or all" % ", ".join(SAMPLES)
    )
    ap.add_argument("--out", default=os.path.join(ms.REPO, "vmcore-samples"))
    ap.add_argument("--dbg-root", default=os.path.join(CACHE, "dbg"))
    ap.add_argument("--dump-level", type=int, default=31)
    ap.add_argument(
        "--keep-elf", action="store_true", help="keep QEMU's ELF dump in the work dir"
    )
    ap.add_argument(
        "--store",
        choices=("xz", "zlib"),
        default="xz",
        help="xz: uncompressed kdump stored as vmcore.xz (9-12 MB; default); "
        "zlib: makedumpfile -c, stored as vmcore (about 16-21 MB)",
    )
    args = ap.parse_args()
    names = list(SAMPLES) if args.names == ["all"] else args.names
    for n in names:
        if n not in SAMPLES:
            ap.error("unknown sample %s" % n)
    for n in names:
        make(n, args.out, args.dbg_root, args.dump_level, args.keep_elf, args.store)


if __name__ == "__main__":
    main()
