"""
Boot a sample kernel in QEMU as a VMware guest and run the tool inside it.

The kernel is the committed 6.1.192 sample kernel (vmcore-samples/kernels/
6.1.192: bzImage.xz, vmlinux.xz, vmw_balloon.ko.xz, vmw_vmci.ko.xz). QEMU runs
under TCG disguised as VMware (vmport, no hypervisor CPUID bit, VMware SMBIOS),
and the VMware host is played from gdb by scripts/samples/vmware_host_gdb.py,
as scripts/samples/make_sample.py does for the sample dumps, so that the
unmodified vmw_balloon driver inflates to the target the "host" gives.

The guest's root is an initramfs: busybox-static, a small /init, the kernel
modules and debug files, and the host's Python with drgn, tabulate and this
checkout, copied at the same absolute paths (the interpreter, its standard
library without tests and GUI modules, the packages the tool imports, and the
shared libraries ldd names). Sharing the host's root over 9p, as drgn's vmtest
and virtme do, is not possible with this kernel: Linux 6.1's 9P_FS depends on
INET, which the sample kernels leave out, so CONFIG_9P_FS is not set.

The guest runs a shell script and sends its results back over the second
serial port (a file on the host) between ``@@BEGIN name@@`` / ``@@END
name@@`` markers; ``@@DONE@@`` ends it. Every QEMU run has a hard deadline
after which QEMU and gdb are killed.
"""

import json
import os
import py_compile
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Tuple

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
SAMPLES_SCRIPTS = os.path.join(REPO, "scripts", "samples")
if SAMPLES_SCRIPTS not in sys.path:
    sys.path.insert(0, SAMPLES_SCRIPTS)
import make_sample  # noqa: E402  (find_in_sites, free_port, sections, parse_vmmemctl)

KERNEL_RELEASE = "6.1.192"
KERNEL_DIR = os.path.join(REPO, "vmcore-samples", "kernels", KERNEL_RELEASE)
KERNEL_FILES = ("bzImage", "vmlinux", "vmw_balloon.ko", "vmw_vmci.ko")

CAP_4K = make_sample.CAP_BASIC | make_sample.CAP_BATCHED | make_sample.CAP_64BIT_TARGET
CAP_2M = CAP_4K | make_sample.CAP_BATCHED_2M

#: Where things are inside the guest.
GUEST_VMLINUX = "/live/vmlinux"
GUEST_KO = "/live/vmw_balloon.ko"
GUEST_VMCI = "/live/vmw_vmci.ko"

# Standard library directories a report never imports (and that are large).
_STDLIB_SKIP = {
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "site-packages",
    "dist-packages",
    "pydoc_data",
    "__phello__",
    "venv",
}


class GuestError(Exception):
    """The guest did not get to the end (timeout, QEMU or gdb died)."""


def log(msg: str) -> None:
    sys.stderr.write("[live %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# --------------------------------------------------------------- prerequisites


def _is_static(path: str) -> bool:
    """Whether *path* is an ELF executable without a program interpreter."""
    import struct

    try:
        with open(path, "rb") as f:
            eh = f.read(64)
            if eh[:4] != b"\x7fELF" or eh[4] != 2:
                return False
            end = "<" if eh[5] == 1 else ">"
            (phoff,) = struct.unpack(end + "Q", eh[32:40])
            phentsize, phnum = struct.unpack(end + "HH", eh[54:58])
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
    except (OSError, struct.error):
        return False
    types = [
        struct.unpack(end + "I", ph[i : i + 4])[0] for i in range(0, len(ph), phentsize)
    ]
    return 3 not in types and 1 in types  # no PT_INTERP, some PT_LOAD


def find_busybox() -> Optional[str]:
    """busybox-static's busybox (a static binary), or None."""
    for path in (
        "/bin/busybox",
        "/usr/bin/busybox",
        "/usr/lib/busybox/busybox",
        shutil.which("busybox") or "",
    ):
        if path and os.path.isfile(path) and _is_static(path):
            return path
    return None


def missing() -> Optional[str]:
    """Why the live tests cannot run here, or None."""
    reasons = []
    if not shutil.which("qemu-system-x86_64"):
        reasons.append("qemu-system-x86_64 (apt: qemu-system-x86)")
    if not shutil.which("gdb"):
        reasons.append("gdb (apt: gdb)")
    for tool, package in (("objdump", "binutils"), ("ldd", "libc-bin")):
        if not shutil.which(tool):
            reasons.append("%s (apt: %s)" % (tool, package))
    if not find_busybox():
        reasons.append("a static busybox (apt: busybox-static)")
    if reasons:
        return "live tests need " + ", ".join(reasons)
    for name in KERNEL_FILES:
        if not os.path.isfile(os.path.join(KERNEL_DIR, name + ".xz")):
            return "live tests need %s/%s.xz" % (
                os.path.relpath(KERNEL_DIR, REPO),
                name,
            )
    return None


#: The stock Debian kernel booted with no debug file anywhere (issue 8): the
#: newest bookworm linux-image-6.1.0-*-amd64-unsigned, fetched with apt-get
#: download by scripts/samples/fetch_stock_kernel.sh into the cache.
STOCK_VERSION = "6.1"


def stock_kernel_files() -> Dict[str, str]:
    """Debian's 6.1 kernel image and its vmw_vmci and vmw_balloon modules
    (from the image package only), fetched once into $DRGN_BALLOON_CACHE/stock."""
    import samplelib

    cache = samplelib.cache_dir()
    kdir = os.path.join(cache, "stock", STOCK_VERSION)
    names = {"bzImage": "vmlinuz", "vmw_balloon.ko": "vmw_balloon.ko"}
    names["vmw_vmci.ko"] = "vmw_vmci.ko"
    if not all(os.path.isfile(os.path.join(kdir, f)) for f in names.values()):
        p = subprocess.run(
            [os.path.join(SAMPLES_SCRIPTS, "fetch_stock_kernel.sh"), STOCK_VERSION],
            env=dict(os.environ, DRGN_BALLOON_CACHE=cache),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if p.returncode != 0:
            raise GuestError(
                "fetch_stock_kernel.sh %s failed:\n%s"
                % (STOCK_VERSION, p.stderr[-2000:])
            )
    return {k: os.path.join(kdir, v) for k, v in names.items()}


def kernel_files() -> Dict[str, str]:
    """The sample kernel's files, decompressed into the samples cache."""
    import samplelib

    return {
        name: samplelib._decompressed(os.path.join(KERNEL_DIR, name + ".xz"))
        for name in KERNEL_FILES
    }


# -------------------------------------------------------------------- initramfs


class Cpio:
    """A newc cpio archive written as entries are added (no staging copy)."""

    def __init__(self, path: str):
        self.f = open(path, "wb")
        self.names = set()
        self.ino = 1000
        self.size = 0

    def _entry(
        self,
        name: str,
        mode: int,
        data: bytes = b"",
        path: Optional[str] = None,
        size: int = 0,
        mtime: int = 0,
    ) -> None:
        name = name.lstrip("/")
        if name in self.names:
            return
        self.names.add(name)
        self.ino += 1
        if path is None:
            size = len(data)
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, mtime, size, 0, 0, 0, 0, len(encoded), 0]
        header = b"070701" + b"".join(b"%08x" % v for v in fields)
        self._write(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
        if path is not None:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, self.f, 1 << 20)
            self.size += size
        else:
            self._write(data)
        self._write(b"\0" * (-size % 4))

    def _write(self, b: bytes) -> None:
        self.f.write(b)
        self.size += len(b)

    def dirs(self, name: str) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.names:
                self._entry(d, stat.S_IFDIR | 0o755)

    def directory(self, name: str, mode: int = 0o755) -> None:
        self.dirs(os.path.dirname(name.strip("/")))
        self._entry(name, stat.S_IFDIR | mode)

    def file(self, name: str, src: str, mode: Optional[int] = None) -> None:
        st = os.stat(src)
        self.dirs(os.path.dirname(name.strip("/")))
        self._entry(
            name,
            stat.S_IFREG | (mode if mode is not None else st.st_mode & 0o7777),
            path=src,
            size=st.st_size,
            mtime=int(st.st_mtime),
        )

    def data(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.dirs(os.path.dirname(name.strip("/")))
        self._entry(name, stat.S_IFREG | mode, data=data)

    def symlink(self, name: str, target: str) -> None:
        self.dirs(os.path.dirname(name.strip("/")))
        self._entry(name, stat.S_IFLNK | 0o777, data=target.encode())

    def close(self) -> None:
        self._entry("TRAILER!!!", 0)
        self._write(b"\0" * (-self.size % 512))
        self.f.close()


class HostTree:
    """Copies host paths into a Cpio at the same absolute paths, keeping the
    symbolic links met on the way (e.g. Debian's /lib -> usr/lib)."""

    def __init__(self, cpio: Cpio, pyc_dir: str):
        self.cpio = cpio
        self.pyc_dir = pyc_dir
        self.done = set()
        self.elves: List[str] = []

    def add(self, path: str, skip: Iterable[str] = ()) -> None:
        path = os.path.abspath(path)
        parts = path.strip("/").split("/")
        cur = ""
        for i, part in enumerate(parts):
            nxt = cur + "/" + part
            if os.path.islink(nxt):
                target = os.readlink(nxt)
                self.cpio.symlink(nxt, target)
                resolved = os.path.normpath(os.path.join(cur or "/", target))
                return self.add(os.path.join(resolved, *parts[i + 1 :]), skip)
            cur = nxt
        if cur in self.done:
            return
        self.done.add(cur)
        if os.path.isdir(cur):
            self._tree(cur, set(skip))
        elif os.path.isfile(cur):
            self._file(cur)

    def _tree(self, top: str, skip: set) -> None:
        self.cpio.directory(top)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [
                d for d in dirnames if d not in skip and not d.startswith("config-3")
            ]
            for d in list(dirnames):
                p = os.path.join(dirpath, d)
                if os.path.islink(p):
                    dirnames.remove(d)
                    self.add(p)
                else:
                    self.cpio.directory(p)
            in_pycache = os.path.basename(dirpath) == "__pycache__"
            for name in filenames:
                if in_pycache and (
                    sys.implementation.cache_tag not in name or ".opt-" in name
                ):
                    continue  # other interpreters' and optimised pycs
                p = os.path.join(dirpath, name)
                if os.path.islink(p):
                    self.add(p)
                elif os.path.isfile(p):
                    self._file(p)

    def _file(self, path: str) -> None:
        self.done.add(path)
        self.cpio.file(path, path)
        if (
            path.endswith(".so")
            or ".so." in os.path.basename(path)
            or os.access(path, os.X_OK)
        ):
            self.elves.append(path)
        if path.endswith(".py"):
            self._pyc(path)

    def _pyc(self, path: str) -> None:
        # A pyc for every module, so that the guest never compiles under TCG.
        # Where the host has none (or a stale one), compile one that is not
        # checked against the source.
        import importlib.util

        cached = importlib.util.cache_from_source(path)
        if (
            os.path.isfile(cached)
            and os.stat(cached).st_mtime >= os.stat(path).st_mtime
        ):
            return  # copied with its directory, or added below
        out = os.path.join(self.pyc_dir, cached.lstrip("/"))
        try:
            py_compile.compile(
                path,
                cfile=out,
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except (py_compile.PyCompileError, OSError):
            return
        self.done.add(cached)
        self.cpio.file(cached, out)

    def add_pycache(self) -> None:
        """Copy the host's pycs for the .py files added (current, same name)."""
        import importlib.util

        for path in sorted(self.done):
            if path.endswith(".py"):
                cached = importlib.util.cache_from_source(path)
                if cached not in self.done and os.path.isfile(cached):
                    self.done.add(cached)
                    self.cpio.file(cached, cached)

    def add_shared_libraries(self) -> None:
        """Add what ldd says every ELF file added needs, until nothing is new."""
        seen = set()
        while True:
            todo = [p for p in self.elves if p not in seen]
            if not todo:
                return
            for path in todo:
                seen.add(path)
                try:
                    with open(path, "rb") as f:
                        if f.read(4) != b"\x7fELF":
                            continue
                    out = subprocess.run(
                        ["ldd", path], capture_output=True, text=True, timeout=60
                    ).stdout
                except (OSError, subprocess.TimeoutExpired):
                    continue
                for m in re.finditer(r"(?:=>\s*)?(/\S+)\s+\(0x", out):
                    lib = m.group(1)
                    if os.path.exists(lib):
                        self.add(lib)


def console_script() -> Optional[str]:
    """The installed ``balloon-report`` whose ``#!`` names this interpreter."""
    dirs = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    dirs += os.environ.get("PATH", "").split(os.pathsep)
    for d in dirs:
        path = os.path.join(d, "balloon-report") if d else ""
        if not path or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                first = f.readline().decode(errors="replace")
        except OSError:
            continue
        words = first[2:].split() if first.startswith("#!") else []
        if not words:
            continue
        if words[0] == sys.executable:
            return path
        # python3 -> python3.11 and the like, but not another venv's python
        venv = os.path.join(os.path.dirname(os.path.dirname(words[0])), "pyvenv.cfg")
        if (
            os.path.realpath(words[0]) == os.path.realpath(sys.executable)
            and sys.prefix == sys.base_prefix
            and not os.path.exists(venv)
        ):
            return path
    return None


def python_paths() -> Tuple[List[str], List[str]]:
    """(files and directories to copy, standard library directories) for the
    running interpreter and the packages the tool imports."""
    import importlib.util

    paths = [sys.executable]
    if sys.prefix != sys.base_prefix:
        paths.append(os.path.join(sys.prefix, "pyvenv.cfg"))
    stdlib = []
    for key in ("stdlib", "platstdlib"):
        d = sysconfig.get_paths(
            vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
        )[key]
        if os.path.isdir(d) and d not in stdlib:
            stdlib.append(d)
    import _ctypes  # noqa: F401  lib-dynload may live outside the stdlib directory

    dyn = os.path.dirname(sys.modules["_ctypes"].__file__ or "")
    if dyn and not any(dyn.startswith(s + os.sep) for s in stdlib):
        paths.append(dyn)
    for name in ("drgn", "_drgn", "_drgn_util", "tabulate"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        if spec.submodule_search_locations:
            paths.extend(spec.submodule_search_locations)
        else:
            paths.append(spec.origin)
        site = os.path.dirname(
            list(spec.submodule_search_locations or [spec.origin])[0]
        )
        for entry in os.listdir(site):
            # dist-info (entry points: drgn's plugins), wheel-bundled libraries
            if (
                re.match(
                    r"(%s|drgn_balloon)-[^/]*\.(dist|egg)-info$" % re.escape(name),
                    entry,
                    re.I,
                )
                or entry == name + ".libs"
            ):
                paths.append(os.path.join(site, entry))
    for name in ("drgn_balloon", "scripts"):
        paths.append(os.path.join(REPO, name))
    script = console_script()
    if script:
        paths.append(script)
    return paths, stdlib


def build_initramfs(path: str, files: Dict[str, str]) -> float:
    """The part of the initramfs every run shares; returns its size in MB."""
    t0 = time.time()
    busybox = find_busybox()
    assert busybox
    with tempfile.TemporaryDirectory(prefix="live-pyc-") as pyc_dir:
        cpio = Cpio(path)
        for d in ("proc", "sys", "dev", "tmp", "bb", "live", "root"):
            cpio.directory(d)
        cpio.file("/bb/busybox", busybox, 0o755)
        if "vmlinux" in files:  # not for a stock kernel: no debug files at all
            cpio.file(GUEST_VMLINUX, files["vmlinux"], 0o644)
        cpio.file(GUEST_KO, files["vmw_balloon.ko"], 0o644)
        cpio.file(GUEST_VMCI, files["vmw_vmci.ko"], 0o644)
        cpio.data(
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bb/sh\nnobody:x:65534:65534:nobody:/:/bb/sh\n",
        )
        cpio.data("/etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        tree = HostTree(cpio, pyc_dir)
        paths, stdlib = python_paths()
        for d in stdlib:
            tree.add(d, skip=_STDLIB_SKIP)
        for p in paths:
            tree.add(p, skip={"__pycache__"} if p.startswith(REPO) else ())
        tree.add_pycache()
        tree.add_shared_libraries()
        cpio.close()
    log("initramfs %s: %.0f MB in %.1f s" % (path, cpio.size / 1e6, time.time() - t0))
    return cpio.size / 1e6


# ------------------------------------------------------------------ guest init

INIT = r"""#!/bb/busybox sh
export PATH=/bb
/bb/busybox --install -s /bb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
# The root is the initramfs (in RAM, writable): no tmpfs over /tmp, which may
# hold the host's Python (a venv under /tmp, as in CI).
chmod 1777 /tmp
export HOME=/root TMPDIR=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=@REPO@
PY=@PYTHON@
REPO=@REPO@
BALLOON_REPORT="@BALLOON_REPORT@"
V=/sys/kernel/debug/vmmemctl
exec > /dev/ttyS1 2>&1

section() { echo "@@BEGIN $1@@"; cat "$2"; echo "@@END $1@@"; }
vmm() { cat $V > /tmp/vmm 2>&1; section "$1" /tmp/vmm; }
# first match only: "target" is also the name of a command-statistics line
field() { sed -n "s/^$1 *: *\([^ ]*\).*/\1/p" $V | head -n 1; }
# run NAME CMD...: stdout, stderr, exit code and start/end uptime
run() {
    name=$1; shift
    t0=$(cut -d' ' -f1 /proc/uptime)
    "$@" > /tmp/out 2> /tmp/err; rc=$?
    t1=$(cut -d' ' -f1 /proc/uptime)
    section "$name.stdout" /tmp/out
    section "$name.stderr" /tmp/err
    echo "@@BEGIN $name.rc@@"; echo "$rc"; echo "@@END $name.rc@@"
    echo "@@BEGIN $name.uptime@@"; echo "$t0 $t1"; echo "@@END $name.uptime@@"
}
# wait_target TARGET TIMEOUT: until target is TARGET and current reached it
wait_target() {
    [ -e $V ] || { echo "@@NO-VMMEMCTL@@"; return 1; }
    t0=$(cut -d. -f1 /proc/uptime)
    while :; do
        tg=$(field target); cur=$(field current)
        if [ "$tg" = "$1" ] && [ -n "$cur" ] && [ "$cur" -ge "$tg" ] \
                && [ $((cur - tg)) -lt 512 ]; then
            return 0
        fi
        if [ $(( $(cut -d. -f1 /proc/uptime) - t0 )) -gt $2 ]; then
            echo "@@WAIT-TIMEOUT@@"; return 1
        fi
        sleep 1
    done
}
# wait_grown FRAMES TIMEOUT: until the balloon holds at least FRAMES
wait_grown() {
    [ -e $V ] || { echo "@@NO-VMMEMCTL@@"; return 1; }
    t0=$(cut -d. -f1 /proc/uptime)
    while :; do
        cur=$(field current)
        [ -n "$cur" ] && [ "$cur" -ge "$1" ] && return 0
        if [ $(( $(cut -d. -f1 /proc/uptime) - t0 )) -gt $2 ]; then
            echo "@@WAIT-TIMEOUT@@"; return 1
        fi
        sleep 1
    done
}

echo "@@BEGIN booted@@"; uname -r; cut -d' ' -f1 /proc/uptime; echo "@@END booted@@"
insmod @VMCI@; echo "@@INSMOD vmw_vmci rc=$?@@"
insmod @KO@; echo "@@INSMOD vmw_balloon rc=$?@@"
# The driver counts its statistics only after vmmemctl was first read.
[ -e $V ] && cat $V > /dev/null
@AFTER_INSMOD@

@BODY@

echo "@@DONE@@"
sync
poweroff -f
"""


#: balloon-report with every walk recorded: the size the walk started from,
#: whether it verified and what it found (printed on stderr as one line
#: ``@@WALKS [...]@@``). With LIVE_DELAY=SECONDS in the environment, the first
#: LIVE_DELAY_WALKS walks (default 1) pause after reading their first block of
#: the memory map, as a preempted or slow reader would, until debugfs vmmemctl
#: shows a size other than the one the walk started from (at most SECONDS), so
#: that the host's next target change lands in the middle of the walk. It
#: wraps drgn_balloon from the outside; the tool itself is unchanged.
INSTRUMENTED = r"""
import json, os, sys, time
import drgn_balloon.report as report
import drgn_balloon.walk as walk
from drgn_balloon.cli import main

DELAY = float(os.environ.get("LIVE_DELAY", "0"))
DELAY_WALKS = int(os.environ.get("LIVE_DELAY_WALKS", "1"))
walks = []
delay = {"want": False, "done": False, "size": None}
verify = report.verify_balloon
load = walk.BulkPageReader._load


def recorded(prog, state, **kw):
    delay["want"], delay["done"] = DELAY > 0 and len(walks) < DELAY_WALKS, False
    delay["size"] = state.size_frames
    v = verify(prog, state, **kw)
    walks.append({"size": state.size_frames, "verified": v.verified,
                  "delayed": delay["done"],
                  "findings": sorted({f.kind for f in v.findings})})
    return v


def delayed_load(self, block):
    words = load(self, block)
    if delay["want"] and not delay["done"]:
        delay["done"] = True
        deadline = time.monotonic() + DELAY
        while current() == delay["size"] and time.monotonic() < deadline:
            time.sleep(0.02)
    return words


def current():
    with open("/sys/kernel/debug/vmmemctl") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "current":
                return int(value)
    return None


report.verify_balloon = recorded
walk.BulkPageReader._load = delayed_load
rc = main(sys.argv[1:])
sys.stderr.write("@@WALKS %s@@\n" % json.dumps(walks))
sys.exit(rc)
"""


def guest_commands() -> Dict[str, str]:
    """Shell words for the body of a guest script."""
    return {
        "instrumented": "$PY /live/instrumented.py -s %s -s %s"
        % (GUEST_VMLINUX, GUEST_KO),
        "drgn_script": "$PY -m drgn -s %s -s %s $REPO/scripts/balloon_report.py"
        % (GUEST_VMLINUX, GUEST_KO),
        "balloon_report": "$BALLOON_REPORT -s %s -s %s" % (GUEST_VMLINUX, GUEST_KO),
    }


# ---------------------------------------------------------------------- running


class GuestResult:
    def __init__(self, data: str, seconds: float, work: str):
        self.data = data
        self.seconds = seconds
        self.work = work
        self.sections = make_sample.sections(data)

    def vmmemctl(self, name: str) -> Dict[str, object]:
        return make_sample.parse_vmmemctl(self.sections[name])

    def command(self, name: str) -> Dict[str, object]:
        """stdout, stderr, rc, seconds and (if stdout is JSON) json of a run."""
        s = self.sections
        t0, t1 = (float(x) for x in s[name + ".uptime"].split())
        out = {
            "stdout": s[name + ".stdout"],
            "stderr": s[name + ".stderr"],
            "rc": int(s[name + ".rc"]),
            "seconds": t1 - t0,
            "uptime": (t0, t1),
        }
        try:
            out["json"] = json.loads(out["stdout"])
        except ValueError:
            out["json"] = None
        m = re.search(r"^@@WALKS (.*)@@$", out["stderr"], re.M)
        out["walks"] = json.loads(m.group(1)) if m else None
        return out

    def host_state(self) -> Optional[dict]:
        path = os.path.join(self.work, "host_state.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        return None


def _kill(proc: Optional[subprocess.Popen], grace: float = 5) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_guest(
    work: str,
    base_cpio: str,
    files: Dict[str, str],
    body: str,
    host: Optional[dict],
    timeout: float,
    memory_mib: int = 1536,
    smp: int = 1,
    stock: bool = False,
) -> GuestResult:
    """
    Boot the kernel with *base_cpio* plus /init running *body*, with the
    VMware host *host* (``{"capabilities", "targets", ...}`` as in
    vmware_host_gdb.py; None: nobody answers the balloon port). Returns when
    the guest printed ``@@DONE@@``; raises GuestError on a timeout (QEMU and
    gdb are killed in every case). *stock*: a distribution kernel (files
    without "vmlinux"): KASLR stays on, and as gdb has no vmlinux to break on
    do_init_module, the guest prints vmw_balloon's kallsyms after insmod and
    the host attaches then (the driver retries its START every second).
    """
    os.makedirs(work, exist_ok=True)
    python = os.path.abspath(sys.executable)
    script = console_script()
    init = (
        INIT.replace("@BODY@", body)
        .replace("@PYTHON@", python)
        .replace("@REPO@", REPO)
        .replace("@VMCI@", GUEST_VMCI)
        .replace("@KO@", GUEST_KO)
        .replace(
            "@AFTER_INSMOD@",
            "{ echo '@@BEGIN balloon_kallsyms@@'; grep '\\[vmw_balloon\\]' "
            "/proc/kallsyms; echo '@@END balloon_kallsyms@@'; }"
            if stock
            else "",
        )
        .replace("@BALLOON_REPORT@", script or "$PY -m drgn_balloon.cli")
    )
    # The kernel unpacks concatenated cpio archives in order.
    initrd = os.path.join(work, "initrd.cpio")
    init_cpio = os.path.join(work, "init.cpio")
    c = Cpio(init_cpio)
    c.data("/init", init.encode(), 0o755)
    c.data("/live/instrumented.py", INSTRUMENTED.encode())
    c.close()
    with open(initrd, "wb") as out:
        for part in (base_cpio, init_cpio):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)

    data_log = os.path.join(work, "data.log")
    console_log = os.path.join(work, "console.log")
    for p in (data_log, console_log, os.path.join(work, "host_state.json")):
        if os.path.exists(p):
            os.unlink(p)
    qemu = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-m",
        str(memory_mib),
        "-smp",
        str(smp),
        "-machine",
        "pc,vmport=on",
        "-cpu",
        "qemu64,-hypervisor",
        # Linux takes a guest without the hypervisor CPUID bit for VMware
        # when the DMI serial number says so (vmware_platform()).
        "-smbios",
        "type=1,manufacturer=VMware,, Inc.,product=VMware Virtual Platform,"
        "serial=VMware-42 1d 5e 2f 6a 7b 8c 9d-0e 1f 2a 3b 4c 5d 6e 7f",
        "-kernel",
        files["bzImage"],
        "-initrd",
        initrd,
        "-append",
        "console=ttyS0 loglevel=6 panic=-1 rdinit=/init"
        + ("" if stock else " nokaslr"),
        "-serial",
        "file:" + console_log,
        "-serial",
        "file:" + data_log,
    ]
    gdb_port = None
    if host is not None:
        gdb_port = make_sample.free_port()
        qemu += ["-gdb", "tcp:127.0.0.1:%d" % gdb_port] + ([] if stock else ["-S"])
    t0 = time.time()
    deadline = t0 + timeout
    qemu_p = gdb_p = None
    try:
        qemu_p = subprocess.Popen(
            qemu,
            stdin=subprocess.DEVNULL,
            stdout=open(os.path.join(work, "qemu.out"), "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        text = ""
        if host is not None and stock:
            while "@@END balloon_kallsyms@@" not in text:
                if qemu_p.poll() is not None or time.time() > deadline:
                    raise GuestError("vmw_balloon not loaded; see %s" % work)
                time.sleep(0.5)
                if os.path.exists(data_log):
                    with open(data_log, "rb") as f:
                        text = f.read().decode(errors="replace").replace("\r", "")
            symbols = {
                name: address
                for address, kind, name, _ in make_sample.parse_kallsyms(
                    make_sample.sections(text)["balloon_kallsyms"]
                )
                if kind in "tT"
            }
            gdb_p, _ = make_sample.start_gdb_host(
                work,
                None,
                files["vmw_balloon.ko"],
                gdb_port,
                host,
                module_symbols=symbols,
                start_new_session=True,
            )
        elif host is not None:
            gdb_p, _ = make_sample.start_gdb_host(
                work,
                files["vmlinux"],
                files["vmw_balloon.ko"],
                gdb_port,
                host,
                start_new_session=True,
            )
        while True:
            if os.path.exists(data_log):
                with open(data_log, "rb") as f:
                    text = f.read().decode(errors="replace").replace("\r", "")
                if "@@DONE@@" in text:
                    break
            if qemu_p.poll() is not None:
                raise GuestError(
                    "QEMU exited (rc %s) before the guest was done; see %s"
                    % (qemu_p.returncode, work)
                )
            if gdb_p is not None and gdb_p.poll() is not None:
                raise GuestError(
                    "gdb (the VMware host) exited (rc %s); see %s"
                    % (gdb_p.returncode, work)
                )
            if time.time() > deadline:
                raise GuestError(
                    "guest not done after %.0f s (killed); see %s" % (timeout, work)
                )
            time.sleep(0.5)
    finally:
        _kill(qemu_p)
        _kill(gdb_p)
        os.unlink(initrd)  # a copy of the base archive: hundreds of MB
    seconds = time.time() - t0
    log("guest run %s: %.1f s" % (os.path.basename(work), seconds))
    return GuestResult(text, seconds, work)
