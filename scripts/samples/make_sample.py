#!/usr/bin/env python3
"""Make one real vmw_balloon sample dump.

Boots a kernel built by build_kernel.sh in QEMU (TCG) disguised as VMware, plays the
VMware host from gdb (vmware_host_gdb.py) so that the unmodified vmw_balloon driver
inflates, lets the guest print its ground truth, dumps the guest with QMP
dump-guest-memory, compresses the dump with makedumpfile, checks it with drgn and
stores it in vmcore-samples/<name>/ with a manifest.json.

    make_sample.py 6.1 4k              -> vmcore-samples/6.1-4k/
    make_sample.py 6.12 large          -> $CACHE/large/6.12-large/ (not for committing)
    make_sample.py stock-6.1 4k        -> vmcore-samples/stock-6.1-4k/ (Debian's
                                          own kernel: fetch_stock_kernel.sh 6.1)

A stock kernel has no vmlinux for gdb: QEMU runs at once, the guest prints vmw_balloon's
kallsyms after insmod, and only then does the gdb host attach and set its breakpoints
(the driver retries its unanswered START every second meanwhile).

Python 3 standard library only.
"""

import argparse
import datetime
import json
import lzma
import os
import re
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("DRGN_BALLOON_CACHE", "/var/tmp/drgn-balloon-build")

# Capability bits (drivers/misc/vmw_balloon.c, enum vmwballoon_capabilities).
CAP_BASIC = 1 << 1
CAP_BATCHED = 1 << 2
CAP_BATCHED_2M = 1 << 3
CAP_64BIT_TARGET = 1 << 5

SCENARIOS = {
    "4k": {
        "description": "VMware host grants basic+batched commands (no 2M); the balloon "
        "inflates to 40000 4 KiB frames.",
        "vmware": True,
        "memory_mib": 512,
        "host": {
            "capabilities": CAP_BASIC | CAP_BATCHED | CAP_64BIT_TARGET,
            "targets": [40000],
            "grant_2m": False,
        },
    },
    "2m": {
        "description": "VMware host grants 2M pages too; it accepts 30 2 MiB pages and "
        "refuses further 2 MiB pages, so the driver falls back to 4 KiB "
        "pages: both the 2M list and the 4K list are non-empty. "
        "Target 30000 frames.",
        "vmware": True,
        "memory_mib": 512,
        "host": {
            "capabilities": CAP_BASIC | CAP_BATCHED | CAP_BATCHED_2M | CAP_64BIT_TARGET,
            "targets": [30000],
            "grant_2m": True,
            "max_2m_pages": 30,
        },
    },
    "deflated": {
        "description": "Inflated to 40000 4 KiB frames, then the host lowered the "
        "target "
        "to 25000 and the driver deflated to it.",
        "vmware": True,
        "memory_mib": 512,
        "host": {
            "capabilities": CAP_BASIC | CAP_BATCHED | CAP_64BIT_TARGET,
            "targets": [40000, 25000],
            "grant_2m": False,
        },
    },
    "noresponse": {
        "description": "Disguised as VMware, vmw_balloon loaded, but the host never "
        "answers the balloon port (QEMU returns 0xffffffff): size 0, "
        "reset pending.",
        "vmware": True,
        "memory_mib": 512,
        "host": None,
    },
    "notvmware": {
        "description": "Plain QEMU guest, not VMware: vmw_balloon's init returns "
        "-ENODEV "
        "and the module is not loaded (vmw_vmci is).",
        "vmware": False,
        "memory_mib": 512,
        "host": None,
    },
    "large": {
        "description": "Benchmark sample (not committed): 6 GiB guest, target 1100000 "
        "frames, 2M granted, 1500 2 MiB pages accepted, the rest 4 KiB.",
        "vmware": True,
        "memory_mib": 6144,
        "large": True,
        "host": {
            "capabilities": CAP_BASIC | CAP_BATCHED | CAP_BATCHED_2M | CAP_64BIT_TARGET,
            "targets": [1100000],
            "grant_2m": True,
            "max_2m_pages": 1500,
        },
        "timeout": 1800,
    },
    "large4k": {
        "description": "Benchmark sample (not committed) shaped like issue 3's "
        "reference "
        "(a 4 GiB balloon of 946,176 4 KiB and 200 2 MiB pages): 6 GiB "
        "guest, target 1048576 frames, 2M granted, 200 2 MiB pages "
        "accepted, the rest 4 KiB.",
        "vmware": True,
        "memory_mib": 6144,
        "large": True,
        "host": {
            "capabilities": CAP_BASIC | CAP_BATCHED | CAP_BATCHED_2M | CAP_64BIT_TARGET,
            "targets": [1048576],
            "grant_2m": True,
            "max_2m_pages": 200,
        },
        "timeout": 1800,
    },
    "fragmented": {
        "description": "Benchmark sample (not committed): 3 GiB guest whose memory "
        "was fragmented before the driver loaded (a tmpfs file filled with 4 KiB "
        "pages, every other page punched out with fallocate, "
        "vm.compaction_proactiveness=0), so the balloon's pages are scattered; "
        "target 400000 4 KiB frames, no 2M.",
        "vmware": True,
        "memory_mib": 3072,
        "large": True,
        # Frames left free above the target after the punching (guest_init.sh).
        "fragment_margin": 40000,
        "host": {
            "capabilities": CAP_BASIC | CAP_BATCHED | CAP_64BIT_TARGET,
            "targets": [400000],
            "grant_2m": False,
        },
        "timeout": 1800,
    },
}


def guest_args(kernel, cpio, append, console_log, data_log, qmp_sock):
    """QEMU's arguments for the guest every sample boots: kernel, busybox
    initramfs, command line, the console and data serial ports, and QMP."""
    return [
        "-kernel",
        kernel,
        "-initrd",
        cpio,
        "-append",
        " ".join(append),
        "-serial",
        "file:" + console_log,
        "-serial",
        "file:" + data_log,
        "-qmp",
        "unix:%s,server=on,wait=off" % qmp_sock,
    ]


def start_qemu(work, qemu):
    """Start QEMU with its output in work/qemu.out, and log its command line."""
    proc = subprocess.Popen(
        qemu,
        stdin=subprocess.DEVNULL,
        stdout=open(os.path.join(work, "qemu.out"), "w"),
        stderr=subprocess.STDOUT,
    )
    log("qemu pid %d: %s" % (proc.pid, " ".join(qemu)))
    return proc


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------------------- guest


def build_fragment(work):
    """Build fragment.c statically for the guest (scenario fragmented)."""
    out = os.path.join(work, "fragment")
    run(["gcc", "-static", "-O2", "-o", out, os.path.join(HERE, "fragment.c")])
    return out


def make_initramfs(work, init_script, files):
    """A busybox initramfs: /init = init_script; each (src, name) of files
    copied to /name."""
    root = os.path.join(work, "initramfs")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "bin"))
    for d in ("proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(root, d))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    os.symlink("busybox", os.path.join(root, "bin", "sh"))
    shutil.copy(init_script, os.path.join(root, "init"))
    os.chmod(os.path.join(root, "init"), 0o755)
    for src, name in files:
        shutil.copy(src, os.path.join(root, name))
    cpio = os.path.join(work, "initramfs.cpio")
    names = subprocess.run(
        ["find", "."], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    with open(cpio, "wb") as f:
        subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"],
            cwd=root,
            input=names.encode(),
            stdout=f,
            check=True,
        )
    return cpio


def build_initramfs(kdir, work, modules=("vmw_vmci.ko", "vmw_balloon.ko"), extra=()):
    return make_initramfs(
        work,
        os.path.join(HERE, "guest_init.sh"),
        [(os.path.join(kdir, ko), ko) for ko in modules]
        + [(path, os.path.basename(path)) for path in extra],
    )


def find_in_sites(ko):
    """Return [{function, offset_after}] for each `in (%dx),%eax` in the module."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", ko],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    sites = []
    func = None
    func_start = 0
    for line in out.splitlines():
        m = re.match(r"^([0-9a-f]+) <([^>]+)>:$", line)
        if m:
            func_start, func = int(m.group(1), 16), m.group(2)
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+in\s+\(%dx\),%eax", line)
        if m and func:
            # inl (%dx),%eax is one byte (0xed): break on the next instruction.
            sites.append(
                {"function": func, "offset_after": int(m.group(1), 16) + 1 - func_start}
            )
    if not sites:
        raise SystemExit("no `in (%dx),%eax` found in " + ko)
    return sites


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class QMP:
    def __init__(self, path, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.f = self.sock.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("QMP closed")
            msg = json.loads(line)
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise RuntimeError("QMP %s: %s" % (name, msg["error"]))


# ---------------------------------------------------------------------- ground truth


def sections(text):
    out = {}
    for m in re.finditer(r"@@BEGIN (\S+)@@\n(.*?)@@END \1@@", text, re.S):
        out[m.group(1)] = m.group(2)
    return out


def parse_vmmemctl(raw):
    parsed = {}
    for line in raw.splitlines():
        if ":" not in line:
            continue
        key, val = line.split(":", 1)
        # "alloc             (4k)" -> "alloc(4k)"
        key, val = re.sub(r"\s+\(", "(", key.strip()), val.strip()
        # "target" names both the balloon target and the GET_TARGET command statistics
        # line that follows it: a repeated key gets the suffix "_cmd".
        if key in parsed:
            key += "_cmd"
        m = re.match(r"^(\S+)\s+\((\d+) failed\)$", val)
        if m:
            parsed[key] = int(m.group(1), 0)
            parsed[key + "_failed"] = int(m.group(2))
            continue
        try:
            parsed[key] = int(val, 0)
        except ValueError:
            parsed[key] = val
    return parsed


def parse_meminfo(raw):
    parsed = {}
    for line in raw.splitlines():
        m = re.match(r"^([^:]+):\s+(\d+)", line)
        if m:
            parsed[m.group(1)] = int(m.group(2))
    return parsed


def parse_vmstat(raw):
    parsed = {}
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) == 2:
            parsed[parts[0]] = int(parts[1])
    return parsed


def parse_zoneinfo(raw):
    """{"Node N, zone NAME": {"present": .., "managed": .., "spanned": ..}} in pages."""
    parsed = {}
    zone = None
    for line in raw.splitlines():
        m = re.match(r"^Node (\d+), zone\s+(\S+)", line)
        if m:
            zone = parsed.setdefault("Node %s, zone %s" % m.groups(), {})
            continue
        m = re.match(r"^\s+(present|managed|spanned)\s+(\d+)$", line)
        if m and zone is not None:
            zone[m.group(1)] = int(m.group(2))
    return parsed


def parse_kallsyms(raw):
    """/proc/kallsyms lines -> [(address, type, name, module or None)]."""
    out = []
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mod = parts[3].strip("[]") if len(parts) > 3 else None
            out.append((int(parts[0], 16), parts[1], parts[2], mod))
    return out


def ground_truth(data):
    sec = sections(data)
    vm = sec.get("vmmemctl", "")
    zi = sec.get("zoneinfo")
    extra = {}
    if zi is not None:
        extra["zoneinfo"] = {"raw": zi, "parsed": parse_zoneinfo(zi)}
    return dict(
        {
            "vmmemctl": {"raw": vm, "parsed": parse_vmmemctl(vm)}
            if vm.strip()
            else None,
            "meminfo": {"raw": sec["meminfo"], "parsed": parse_meminfo(sec["meminfo"])},
            "vmstat": {"raw": sec["vmstat"], "parsed": parse_vmstat(sec["vmstat"])},
            "module_sections": {
                line.split()[0]: line.split()[1]
                for line in sec.get("module_sections", "").splitlines()
                if line.strip()
            },
            "uname_r": sec["uname_r"].strip(),
        },
        **extra,
    ), sec.get("lsmod", "")


# --------------------------------------------------------------------------- running


def wait_for(path, marker, timeout, procs):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path, "rb") as f:
                text = f.read().decode(errors="replace").replace("\r", "")
            if marker in text:
                return text
        for p in procs:
            if p.poll() is not None:
                raise SystemExit("%s exited early (rc %s)" % (p.args[0], p.returncode))
        time.sleep(0.5)
    raise SystemExit("timed out waiting for %s in %s" % (marker, path))


def stop(proc, timeout=30):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def fix_qemu_elf(path):
    """Move QEMU 7.2's ELF program headers to right after the ELF header.

    QEMU 7.2's dump-guest-memory writes the section headers at offset 64 and the program
    headers after them (and e_ehsize 8).  makedumpfile reads program headers at
    sizeof(Elf64_Ehdr) regardless of e_phoff ("Can't get the number of PT_LOAD"), so we
    copy them to offset 64 and drop the (empty) section header table.
    """
    with open(path, "r+b") as f:
        eh = bytearray(f.read(64))
        assert eh[:4] == b"\x7fELF" and eh[4] == 2, "not an ELF64 file"
        phoff = int.from_bytes(eh[32:40], "little")
        phentsize = int.from_bytes(eh[54:56], "little")
        phnum = int.from_bytes(eh[56:58], "little")
        if phoff == 64 and int.from_bytes(eh[52:54], "little") == 64:
            return False
        if phnum == 0xFFFF:
            raise SystemExit("ELF with PN_XNUM program headers: not handled")
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
        first_data = min(
            int.from_bytes(ph[i * phentsize + 8 : i * phentsize + 16], "little")
            for i in range(phnum)
        )
        if 64 + len(ph) > first_data:
            raise SystemExit("no room to move the program headers")
        eh[32:40] = (64).to_bytes(8, "little")  # e_phoff
        eh[40:48] = (0).to_bytes(8, "little")  # e_shoff
        eh[52:54] = (64).to_bytes(2, "little")  # e_ehsize
        eh[58:60] = (0).to_bytes(2, "little")  # e_shentsize
        eh[60:62] = (0).to_bytes(2, "little")  # e_shnum
        eh[62:64] = (0).to_bytes(2, "little")  # e_shstrndx
        f.seek(0)
        f.write(bytes(eh) + ph)
    return True


def makedumpfile_bin():
    tool = os.path.join(CACHE, "tools", "makedumpfile")
    if not os.path.exists(tool):
        run([os.path.join(HERE, "fetch_tools.sh")])
    ver = subprocess.run([tool, "-v"], capture_output=True, text=True).stdout.split(
        "\n"
    )[0]
    m = re.search(r"version (\S+)", ver)
    return tool, "makedumpfile " + (m.group(1) if m else "?")


def drgn_check(vmcore, vmlinux, ko, loaded):
    """Open the sample in drgn and walk what the report reads; return a summary."""
    code = r"""
import json, sys, drgn
from drgn.helpers.linux.list import list_for_each_entry
vmcore, vmlinux, ko, loaded = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
prog = drgn.Program()
prog.set_core_dump(vmcore)
files = [vmlinux, ko] if loaded else [vmlinux]
try:
    prog.load_debug_info(files)
except drgn.MissingDebugInfoError as e:
    print("MissingDebugInfoError:", e, file=sys.stderr)
r = {"release": prog["UTS_RELEASE"].string_().decode(),
     "totalram_pages": prog["_totalram_pages"].counter.value_()}
# task_structs live in slab pages: makedumpfile must not have dropped those.
from drgn.helpers.linux.pid import for_each_task
r["tasks"] = sum(1 for t in for_each_task(prog) if t.comm.string_() is not None)
r["modules"] = [m.name.string_().decode() for m in list_for_each_entry(
    "struct module", prog["modules"].address_of_(), "list")]
if loaded:
    b = prog.object("balloon", filename="vmw_balloon.c")
    r["size"] = b.size.counter.value_()
    r["target"] = b.target.value_()
    r["reset_required"] = bool(b.reset_required)
    n4k = 0
    head = b.b_dev_info.pages.address_of_()
    for page in list_for_each_entry("struct page", head, "lru"):
        page.flags.value_()
        n4k += 1
    n2m = 0
    for page in list_for_each_entry("struct page", b.huge_pages.address_of_(), "lru"):
        page.flags.value_()
        n2m += 1
    r["pages_4k"] = n4k
    r["pages_2m"] = n2m
    try:
        r["isolated_pages"] = b.b_dev_info.isolated_pages.value_()
    except (AttributeError, LookupError):
        pass
print(json.dumps(r))
"""
    p = subprocess.run(
        [sys.executable, "-c", code, vmcore, vmlinux, ko, "1" if loaded else "0"],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise SystemExit("drgn check failed:\n" + p.stdout + p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr.strip()


def elf_vmcoreinfo(path):
    """The VMCOREINFO note of QEMU's ELF dump as {key: value} (before makedumpfile)."""
    with open(path, "rb") as f:
        head = f.read(64)
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
        for i in range(phnum):
            e = ph[i * phentsize : (i + 1) * phentsize]
            if int.from_bytes(e[0:4], "little") != 4:  # PT_NOTE
                continue
            off = int.from_bytes(e[8:16], "little")
            size = int.from_bytes(e[32:40], "little")
            f.seek(off)
            notes = f.read(size)
            pos = 0
            while pos + 12 <= len(notes):
                namesz, descsz = (
                    int.from_bytes(notes[pos : pos + 4], "little"),
                    int.from_bytes(notes[pos + 4 : pos + 8], "little"),
                )
                name = notes[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
                desc_at = pos + 12 + (namesz + 3) // 4 * 4
                desc = notes[desc_at : desc_at + descsz]
                pos = desc_at + (descsz + 3) // 4 * 4
                if name == b"VMCOREINFO":
                    return dict(
                        line.split("=", 1)
                        for line in desc.decode(errors="replace").splitlines()
                        if "=" in line
                    )
    raise SystemExit("no VMCOREINFO note in " + path)


def drgn_check_stock(vmcore, symbols, release):
    """Check a stock-kernel dump with no debug info at all: drgn translates addresses
    from VMCOREINFO alone; symbols (name -> address, from the guest's /proc/kallsyms)
    give init_uts_ns, whose release string must be there, and init_task, from which
    pointers into the direct map (task_structs and other slab objects), followed two
    levels deep, must not meet excluded pages; v6.0+: kallsyms read from the dump
    (VMCOREINFO) must agree with the guest's."""
    code = r"""
import json, sys, drgn
vmcore, symbols, release = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
prog = drgn.Program()
prog.set_core_dump(vmcore)
r = {}
try:
    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms
    finder = load_vmlinux_kallsyms(prog)
    r["kallsyms_from_vmcoreinfo"] = all(
        finder(prog, name, None, True)[0].address == addr
        for name, addr in symbols.items()
    )
except (ImportError, LookupError, ValueError, drgn.MissingDebugInfoError) as e:
    r["kallsyms_from_vmcoreinfo"] = False
    r["kallsyms_error"] = str(e)
uts = prog.read(symbols["init_uts_ns"], 512)
r["release_in_init_uts_ns"] = release.encode() + b"\0" in uts
# Pointers into the direct map, followed two levels deep from init_task (512
# bytes of each object met): tasks, their mm, files, signal, the slab objects
# those point to. makedumpfile 1.7.8 -d 31 takes the tail pages of 7.x's
# multi-page slabs for user pages: such a dump fails here.
seen = set()
ok = excluded = other = 0
def scan(addr, size, depth):
    global ok, excluded, other
    try:
        data = prog.read(addr, size)
    except drgn.FaultError:
        return
    for i in range(0, size - 7, 8):
        v = int.from_bytes(data[i:i + 8], "little") & ~7
        if not 0xffff888000000000 <= v < 0xffffc88000000000 or v in seen:
            continue
        seen.add(v)
        try:
            prog.read(v, 8)
            ok += 1
        except drgn.FaultError as e:
            if "xcluded" in str(e):
                excluded += 1
            else:
                other += 1
            continue
        if depth:
            scan(v, 512, depth - 1)
scan(symbols["init_task"], 4096, 2)
r["init_task_pointers"] = {"readable": ok, "excluded": excluded, "other_faults": other}
print(json.dumps(r))
"""
    p = subprocess.run(
        [sys.executable, "-c", code, vmcore, json.dumps(symbols), release],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise SystemExit("drgn check failed:\n" + p.stdout + p.stderr)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    ptrs = r["init_task_pointers"]
    if ptrs["excluded"]:
        raise SystemExit("drgn check failed: Excluded page behind init_task: %s" % r)
    if not r["release_in_init_uts_ns"] or ptrs["readable"] < 5:
        raise SystemExit("drgn check failed: %s" % r)
    return r, p.stderr.strip()


def write_system_map(kallsyms, kernel_offset, vmcoreinfo, path):
    """System.map of a stock kernel from its /proc/kallsyms: every vmlinux symbol at its
    link-time address (the KASLR offset of VMCOREINFO's KERNELOFFSET taken off the
    kernel image's symbols; the absolute per-CPU ones are not relocated), checked
    against VMCOREINFO's SYMBOL() lines.  Returns (symbols, checked SYMBOL lines)."""
    rows = []
    for addr, typ, name, mod in kallsyms:
        if mod is not None:
            continue
        if addr >= 0xFFFFFFFF80000000:
            addr -= kernel_offset
        rows.append((addr, typ, name))
    rows.sort(key=lambda r: r[0])
    by_name = {}
    for addr, _, name in rows:
        by_name.setdefault(name, addr)
    checked = 0
    for key, val in vmcoreinfo.items():
        m = re.match(r"^SYMBOL\((\w+)\)$", key)
        # Addresses in the kernel image only: SYMBOL(mem_section) is the array's
        # value (VMCOREINFO_SYMBOL_ARRAY), a pointer into the direct map.
        if m and m.group(1) in by_name and int(val, 16) >= 0xFFFFFFFF80000000:
            if by_name[m.group(1)] + kernel_offset != int(val, 16):
                raise SystemExit(
                    "System.map: %s at %#x + offset %#x != VMCOREINFO %s"
                    % (m.group(1), by_name[m.group(1)], kernel_offset, val)
                )
            checked += 1
    if checked < 3:
        raise SystemExit("System.map: only %d SYMBOL() lines to check" % checked)
    text = "".join("%016x %s %s\n" % r for r in rows).encode()
    with open(path + ".tmp", "wb") as g:
        subprocess.run(["xz", "-9", "-c"], input=text, stdout=g, check=True)
    os.replace(path + ".tmp", path)
    return len(rows), checked


def build_id(path):
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return m.group(1) if m else None


def same_build(xz_path, path, work):
    """Whether the .xz file holds the same build as path (GNU build ID or content)."""
    tmp = os.path.join(work, "same_build.tmp")
    with lzma.open(xz_path) as f, open(tmp, "wb") as g:
        shutil.copyfileobj(f, g)
    try:
        a = build_id(tmp)
        if a is not None:
            return a == build_id(path)
        return open(tmp, "rb").read() == open(path, "rb").read()
    finally:
        os.unlink(tmp)


def store_kernel(kdir, release, samples_root, work):
    dest = os.path.join(samples_root, "kernels", release)
    os.makedirs(dest, exist_ok=True)
    jobs = [
        ("vmlinux", "vmlinux.xz"),
        ("vmw_balloon.ko", "vmw_balloon.ko.xz"),
        ("config", "config.xz"),
    ]
    for src, name in jobs:
        out = os.path.join(dest, name)
        if os.path.exists(out):
            if not same_build(out, os.path.join(kdir, src), work):
                raise SystemExit(
                    "%s holds another build of %s than %s: samples of one release "
                    "must share "
                    "one build (remove the old samples and kernel files, or use --out)"
                    % (out, release, kdir)
                )
            continue
        committed = os.path.join(REPO, "vmcore-samples", "kernels", release, name)
        if (
            os.path.exists(committed)
            and os.path.abspath(committed) != os.path.abspath(out)
            and same_build(committed, os.path.join(kdir, src), work)
        ):
            shutil.copy(committed, out)  # same kernel build: reuse the committed file
            continue
        path = os.path.join(kdir, src)
        if src == "vmlinux":
            # Keep symbols and debug info only: drgn reads code and data from the core.
            dbg = os.path.join(kdir, "vmlinux.debug")
            run(["objcopy", "--only-keep-debug", path, dbg])
            path = dbg
        log("xz -9 %s -> %s" % (path, out))
        with open(path, "rb") as f, open(out + ".tmp", "wb") as g:
            subprocess.run(["xz", "-9", "-T2", "-c"], stdin=f, stdout=g, check=True)
        os.replace(out + ".tmp", out)
    return dest


def start_gdb_host(work, vmlinux, ko, gdb_port, host, module_symbols=None, **popen_kw):
    """
    Start gdb as the VMware host (vmware_host_gdb.py) of the QEMU guest that
    waits (-S) for gdb on gdb_port; host is {"capabilities": int, "targets":
    [...], ...}. Returns (the gdb process, the host config written to work/).
    With module_symbols ({name: address} of the loaded vmw_balloon) and no vmlinux,
    gdb attaches to the running guest instead (a stock kernel).
    """
    cfg = {
        "log": os.path.join(work, "host.log"),
        "state_file": os.path.join(work, "host_state.json"),
        "sites_file": os.path.join(work, "host_sites.json"),
        "gdb_address": "127.0.0.1:%d" % gdb_port,
        "in_sites": find_in_sites(ko),
        "host": dict(host, capabilities=hex(host["capabilities"])),
    }
    if module_symbols is not None:
        cfg["module_symbols"] = {k: "%#x" % v for k, v in module_symbols.items()}
    cfg_path = os.path.join(work, "host_cfg.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    # QEMU waits (-S) for gdb; give it a moment to open the gdb port.
    time.sleep(1)
    proc = subprocess.Popen(
        [
            "gdb",
            "-batch",
            "-nx",
            "-ex",
            "set auto-load off",
        ]
        + (["-ex", "file " + vmlinux] if vmlinux else [])
        + [
            "-x",
            os.path.join(HERE, "vmware_host_gdb.py"),
        ],
        env=dict(os.environ, VMW_HOST_CONFIG=cfg_path),
        stdin=subprocess.DEVNULL,
        stdout=open(os.path.join(work, "gdb.out"), "w"),
        stderr=subprocess.STDOUT,
        **popen_kw,
    )
    return proc, cfg


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "kernel",
        help="kernel version built by build_kernel.sh (5.10, 6.1, 6.12, 7.2, 6.1-btf, "
        "7.2-btf), or stock-VER for Debian's kernel (fetch_stock_kernel.sh VER)",
    )
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument(
        "--out",
        help="samples root (default: vmcore-samples/ of the repo; "
        "$CACHE/large for the large scenario)",
    )
    ap.add_argument("--dump-level", type=int, default=31)
    ap.add_argument("--keep-elf", action="store_true", help="keep QEMU's ELF dump")
    ap.add_argument(
        "--xz",
        action="store_true",
        help="store the kdump file with its pages not compressed (makedumpfile without "
        "-c), xz-compressed as vmcore.xz: about half the size of a zlib kdump file",
    )
    ap.add_argument(
        "--system-map",
        action="store_true",
        help="stock kernels: store System.map.xz beside the vmcore, made from the "
        "guest's /proc/kallsyms (Debian's image package ships only a placeholder)",
    )
    ap.add_argument(
        "--memory",
        type=int,
        help="guest RAM in MiB instead of the scenario's (smaller dumps)",
    )
    ap.add_argument(
        "--elf",
        action="store_true",
        help="store the sample as an ELF dump (makedumpfile -E, the same "
        "dump level), xz-compressed as vmcore.xz; the name gets -elf",
    )
    args = ap.parse_args()
    if args.elf and args.xz:
        ap.error("--elf and --xz: choose one")

    t_start = time.time()
    sc = dict(SCENARIOS[args.scenario])
    if args.memory:
        sc["memory_mib"] = args.memory
    name = "%s-%s" % (args.kernel, args.scenario) + ("-elf" if args.elf else "")
    stock = args.kernel.startswith("stock-")
    if stock:
        # Debian's own kernel: vmlinuz and modules of its image package only.
        kver = args.kernel[len("stock-") :]
        kdir = os.path.join(CACHE, "stock", kver)
        needed = (
            "vmlinuz",
            "vmw_balloon.ko",
            "vmw_vmci.ko",
            "qemu_fw_cfg.ko",
            "release",
        )
        how = "fetch_stock_kernel.sh " + kver
        if args.elf or (sc["host"] or {}).get("grant_2m") or not sc["vmware"]:
            raise SystemExit("stock kernels: VMware scenarios without 2M, kdump only")
    else:
        kdir = os.path.join(CACHE, "kernels", args.kernel)
        needed = (
            "bzImage",
            "vmlinux",
            "vmw_balloon.ko",
            "vmw_vmci.ko",
            "config",
            "release",
        )
        how = "build_kernel.sh " + " ".join(args.kernel.split("-", 1))
        if args.system_map:
            raise SystemExit("--system-map is for stock kernels")
    for f in needed:
        if not os.path.exists(os.path.join(kdir, f)):
            raise SystemExit("missing %s/%s: run %s" % (kdir, f, how))
    release = open(os.path.join(kdir, "release")).read().strip()
    samples_root = args.out or (
        os.path.join(CACHE, "large")
        if sc.get("large")
        else os.path.join(REPO, "vmcore-samples")
    )
    work = os.path.join(CACHE, "work", name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    mdf, mdf_version = makedumpfile_bin()

    extra = [build_fragment(work)] if sc.get("fragment_margin") else []
    if stock:
        cpio = build_initramfs(
            kdir, work, ("qemu_fw_cfg.ko", "vmw_vmci.ko", "vmw_balloon.ko"), extra
        )
    else:
        cpio = build_initramfs(kdir, work, extra=extra)
    host = sc["host"]
    data_log = os.path.join(work, "data.log")
    console_log = os.path.join(work, "console.log")
    qmp_sock = os.path.join(work, "qmp.sock")
    gdb_port = free_port() if host else None
    append = [
        "console=ttyS0",
        "loglevel=6",
        "panic=-1",
    ]
    if stock:
        # KASLR stays on, as users have it; ACPI finds fw_cfg.
        append += ["sample_attach=1"] + (
            ["sample_kallsyms=1"] if args.system_map else []
        )
    else:
        # No ACPI in these kernels: fw_cfg's I/O ports given by hand.
        append += ["nokaslr", "qemu_fw_cfg.ioport=12@0x510:0:1:4"]
    append.append("sample_timeout=%d" % sc.get("timeout", 300))
    if host:
        append.append("sample_target=%d" % host["targets"][-1])
    if sc.get("fragment_margin"):
        append.append("sample_fragment=%d" % sc["fragment_margin"])
    qemu = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-m",
        str(sc["memory_mib"]),
        "-smp",
        "1",
    ]
    if sc["vmware"]:
        qemu += [
            "-machine",
            "pc,vmport=on",
            "-cpu",
            "qemu64,-hypervisor",
            "-smbios",
            "type=1,manufacturer=VMware,, Inc.,product=VMware Virtual Platform,"
            "serial=VMware-42 1d 5e 2f 6a 7b 8c 9d-0e 1f 2a 3b 4c 5d 6e 7f",
        ]
    else:
        qemu += ["-machine", "pc", "-cpu", "qemu64"]
    qemu += ["-device", "vmcoreinfo"]
    qemu += guest_args(
        os.path.join(kdir, "vmlinuz" if stock else "bzImage"),
        cpio,
        append,
        console_log,
        data_log,
        qmp_sock,
    )
    if host:
        qemu += ["-gdb", "tcp:127.0.0.1:%d" % gdb_port] + ([] if stock else ["-S"])

    gdbp = None
    host_cfg = None
    qemu_p = start_qemu(work, qemu)
    try:
        if host and stock:
            text = wait_for(data_log, "@@END balloon_kallsyms@@", 300, [qemu_p])
            module_symbols = {
                n: a
                for a, t, n, _ in parse_kallsyms(sections(text)["balloon_kallsyms"])
                if t in "tT"
            }
            log(
                "vmw_balloon loaded: %d functions; attaching the host"
                % len(module_symbols)
            )
            gdbp, host_cfg = start_gdb_host(
                work,
                None,
                os.path.join(kdir, "vmw_balloon.ko"),
                gdb_port,
                host,
                module_symbols=module_symbols,
            )
            log("gdb pid %d" % gdbp.pid)
        elif host:
            gdbp, host_cfg = start_gdb_host(
                work,
                os.path.join(kdir, "vmlinux"),
                os.path.join(kdir, "vmw_balloon.ko"),
                gdb_port,
                host,
            )
            log("gdb pid %d" % gdbp.pid)
        procs = [qemu_p] + ([gdbp] if gdbp else [])
        data = wait_for(
            data_log, "@@SAMPLE-READY@@", sc.get("timeout", 300) + 300, procs
        )
        log("guest ready")
        elf = os.path.join(work, "vmcore.elf")
        qmp = QMP(qmp_sock)
        t0 = time.time()
        qmp.cmd("dump-guest-memory", paging=False, protocol="file:" + elf)
        log(
            "dump-guest-memory: %d MB in %.1f s"
            % (os.path.getsize(elf) >> 20, time.time() - t0)
        )
        try:
            qmp.cmd("quit")
        except (EOFError, OSError):
            pass
    finally:
        stop(qemu_p)
        stop(gdbp)
    if "@@WAIT-TIMEOUT@@" in data:
        log("WARNING: the guest timed out waiting for the balloon target")

    gt, lsmod = ground_truth(data)
    loaded = "vmw_balloon " in lsmod
    if fix_qemu_elf(elf):
        log("moved the ELF program headers to offset 64 (QEMU 7.2 layout)")
    vmcoreinfo = elf_vmcoreinfo(elf)
    if stock:
        kallsyms = parse_kallsyms(sections(data).get("kallsyms", ""))
        # The guest's own addresses of the symbols the check reads.
        check_syms = {
            n: a for a, _, n, _ in parse_kallsyms(sections(data)["check_kallsyms"])
        }
    # makedumpfile: kdump-compressed, zlib.  makedumpfile 1.7.8 takes the slab pages of
    # 7.x kernels for user pages (bit 8 of the dump level): if drgn then meets excluded
    # pages, retry without that bit, and say so in the manifest.
    kdump = os.path.join(work, "vmcore")
    dump_note = None
    level = args.dump_level
    while True:
        if os.path.exists(kdump):
            os.unlink(kdump)
        t0 = time.time()
        p = subprocess.run(
            [mdf] + ([] if args.xz else ["-c"]) + ["-d", str(level), elf, kdump],
            capture_output=True,
            text=True,
        )
        sys.stdout.write(p.stdout + p.stderr)
        if p.returncode != 0:
            raise SystemExit("makedumpfile failed")
        log(
            "makedumpfile -d %d: %.1f MB in %.1f s"
            % (level, os.path.getsize(kdump) / 1e6, time.time() - t0)
        )
        try:
            if stock:
                check, warnings = drgn_check_stock(kdump, check_syms, gt["uname_r"])
            else:
                check, warnings = drgn_check(
                    kdump,
                    os.path.join(kdir, "vmlinux"),
                    os.path.join(kdir, "vmw_balloon.ko"),
                    loaded,
                )
            break
        except SystemExit as e:
            if "Excluded page" not in str(e) or level & 8 == 0:
                raise
            log(
                "drgn met excluded pages with -d %d; retrying with -d %d"
                % (level, level & ~8)
            )
            dump_note = (
                "-d %d excluded pages drgn needs (slab pages counted as user pages "
                "by %s on this kernel); used -d %d" % (level, mdf_version, level & ~8)
            )
            level &= ~8
    dump_format = "kdump-compressed (zlib)"
    if args.xz:
        run(["xz", "-9", "-T2", "-k", "-f", kdump])
        dump_format = (
            "kdump-compressed format with the pages not compressed (makedumpfile "
            "without -c), stored xz-compressed as vmcore.xz and decompressed on "
            "first use"
        )
    if args.elf:
        # The same pages as the kdump file, in ELF (makedumpfile -E).
        elf_out = os.path.join(work, "vmcore.filtered.elf")
        if os.path.exists(elf_out):
            os.unlink(elf_out)
        p = subprocess.run(
            [mdf, "-E", "-d", str(level), elf, elf_out], capture_output=True, text=True
        )
        sys.stdout.write(p.stdout + p.stderr)
        if p.returncode != 0:
            raise SystemExit("makedumpfile -E failed")
        drgn_check(
            elf_out,
            os.path.join(kdir, "vmlinux"),
            os.path.join(kdir, "vmw_balloon.ko"),
            loaded,
        )
        run(["xz", "-9", "-T2", "-f", elf_out])
        dump_format = (
            "ELF (makedumpfile -E), stored xz-compressed as vmcore.xz and "
            "decompressed on first use"
        )
    if not args.keep_elf:
        os.unlink(elf)
    log("drgn: %s" % check)
    if warnings:
        log("drgn warnings:\n" + warnings)
    if loaded and gt["vmmemctl"] and not stock:
        v = gt["vmmemctl"]["parsed"]
        if (check["size"], check["target"]) != (v["current"], v["target"]):
            log(
                "WARNING: drgn size/target %s/%s != guest %s/%s"
                % (check["size"], check["target"], v["current"], v["target"])
            )

    host_state = None
    if host_cfg and os.path.exists(host_cfg["state_file"]):
        host_state = json.load(open(host_cfg["state_file"]))

    sample_dir = os.path.join(samples_root, name)
    os.makedirs(sample_dir, exist_ok=True)
    if stock:
        kernels_dir = None
        kernel_offset = int(vmcoreinfo.get("KERNELOFFSET", "0"), 16)
        system_map = None
        if args.system_map:
            n, checked = write_system_map(
                kallsyms,
                kernel_offset,
                vmcoreinfo,
                os.path.join(sample_dir, "System.map.xz"),
            )
            system_map = {
                "file": "System.map.xz",
                "symbols": n,
                "source": "the guest's /proc/kallsyms (vmlinux symbols), KERNELOFFSET "
                "taken off the kernel image's addresses (absolute per-CPU symbols "
                "kept); checked against %d VMCOREINFO SYMBOL() lines" % checked,
            }
        package_map = None
        if os.path.exists(os.path.join(kdir, "System.map.package")):
            package_map = open(os.path.join(kdir, "System.map.package")).read()
        stock_info = {
            "packages": open(os.path.join(kdir, "packages")).read().split("\n")[:-1],
            "debug_package": None,
            "kaslr": {
                "enabled": "nokaslr" not in append,
                "kernel_offset": "%#x" % kernel_offset,
            },
            "vmcoreinfo_kallsyms": any("kallsyms" in k for k in vmcoreinfo),
            "system_map": system_map,
            "package_system_map": package_map,
            "host_attached_after_insmod": True,
        }
    else:
        kernels_dir = store_kernel(kdir, release, samples_root, work)
    stored = os.path.join(sample_dir, "vmcore.xz" if args.elf or args.xz else "vmcore")
    if args.elf:
        shutil.copy(os.path.join(work, "vmcore.filtered.elf.xz"), stored)
    else:
        shutil.copy(kdump + ".xz" if args.xz else kdump, stored)
    os.chmod(stored, 0o644)
    manifest = {
        "name": name,
        "description": (
            "Debian's stock kernel %s (%s; image package only, no debug package), "
            "KASLR on, as a VMware guest. "
            % (release, ", ".join(stock_info["packages"]))
            if stock
            else ""
        )
        + sc["description"],
        "kernel_release": release,
        "kernel_dir": None if stock else os.path.relpath(kernels_dir, sample_dir),
        "debug_files": [] if stock else ["vmlinux.xz", "vmw_balloon.ko.xz"],
        "vmware": sc["vmware"],
        "balloon_module_loaded": loaded,
        "host": None
        if host is None
        else {
            "capabilities": hex(host["capabilities"]),
            "targets": host["targets"],
            "grant_2m": host["grant_2m"],
            "max_2m_pages": host.get("max_2m_pages"),
            "start_delay_polls": host.get("start_delay_polls", 2),
            "answered": {
                k: host_state[k]
                for k in (
                    "commands",
                    "size",
                    "accepted_4k",
                    "accepted_2m",
                    "refused_2m",
                    "unlocked_4k",
                    "unlocked_2m",
                    "double_hits",
                )
            }
            if host_state
            else None,
        },
        "qemu_cmdline": qemu,
        "memory_mib": sc["memory_mib"],
        "dump": dict(
            {"tool": mdf_version, "dump_level": level, "format": dump_format},
            **({"note": dump_note} if dump_note else {}),
        ),
        "built": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "build_seconds": int(time.time() - t_start),
        "ground_truth": gt,
    }
    if stock:
        manifest["stock"] = stock_info
    with open(os.path.join(sample_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    shutil.copy(console_log, os.path.join(work, "console.saved.log"))
    log(
        "sample %s: %s (%.1f MB), drgn check %s"
        % (name, sample_dir, os.path.getsize(stored) / 1e6, check)
    )


if __name__ == "__main__":
    main()
