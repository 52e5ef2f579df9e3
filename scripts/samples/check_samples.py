#!/usr/bin/env python3
"""Check committed samples: each opens in drgn with its stored debug files, and what
drgn reads agrees with the ground truth the guest printed.

    check_samples.py [vmcore-samples/6.1-4k ...]     (default: every sample)

The .xz debug files are decompressed once into $DRGN_BALLOON_CACHE/debug/<release>/.
Python 3 standard library + drgn.
"""

import glob
import json
import lzma
import os
import shutil
import sys

import drgn
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.pid import for_each_task

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "vmcore-samples")
CACHE = os.environ.get("DRGN_BALLOON_CACHE", "/var/tmp/drgn-balloon-build")


def debug_files(sample_dir, manifest):
    kdir = os.path.normpath(os.path.join(sample_dir, manifest["kernel_dir"]))
    out = os.path.join(CACHE, "debug", manifest["kernel_release"])
    os.makedirs(out, exist_ok=True)
    paths = []
    for name in manifest["debug_files"]:
        dest = os.path.join(out, name[:-3] if name.endswith(".xz") else name)
        src = os.path.join(kdir, name)
        if not os.path.exists(dest) or os.path.getmtime(dest) < os.path.getmtime(src):
            with lzma.open(src) as f, open(dest + ".tmp", "wb") as g:
                shutil.copyfileobj(f, g)
            os.replace(dest + ".tmp", dest)
        paths.append(dest)
    return paths


def check(sample_dir):
    manifest = json.load(open(os.path.join(sample_dir, "manifest.json")))
    if not manifest.get("debug_files"):
        return check_stock(sample_dir, manifest)
    files = debug_files(sample_dir, manifest)
    if not manifest["balloon_module_loaded"]:
        files = [f for f in files if not f.endswith(".ko")]
    prog = drgn.Program()
    vmcore = os.path.join(sample_dir, "vmcore")
    if not os.path.exists(vmcore):  # an ELF sample, stored as vmcore.xz
        import lzma
        import shutil
        import tempfile

        tmp = tempfile.NamedTemporaryFile(suffix=".vmcore", delete=False)
        with lzma.open(vmcore + ".xz") as src, tmp:
            shutil.copyfileobj(src, tmp, 1 << 20)
        vmcore = tmp.name
    prog.set_core_dump(vmcore)
    if vmcore != os.path.join(sample_dir, "vmcore"):
        os.unlink(vmcore)  # drgn holds it open
    try:
        prog.load_debug_info(files)
    except drgn.MissingDebugInfoError as e:
        # e.g. drgn 0.0.22 cannot find the loaded modules of kernels >= 6.4
        raise RuntimeError("drgn %s: %s" % (drgn.__version__, e)) from e
    gt = manifest["ground_truth"]
    problems = []
    release = prog["UTS_RELEASE"].string_().decode()
    if release != gt["uname_r"]:
        problems.append("release %s != %s" % (release, gt["uname_r"]))
    tasks = sum(1 for _ in for_each_task(prog))
    mods = [
        m.name.string_().decode()
        for m in list_for_each_entry(
            "struct module", prog["modules"].address_of_(), "list"
        )
    ]
    if ("vmw_balloon" in mods) != manifest["balloon_module_loaded"]:
        problems.append("modules %s" % mods)
    summary = {"tasks": tasks, "modules": mods}
    if manifest["balloon_module_loaded"]:
        b = prog.object("balloon", filename="vmw_balloon.c")
        n4k = sum(
            1
            for p in list_for_each_entry(
                "struct page", b.b_dev_info.pages.address_of_(), "lru"
            )
            if p.flags.value_() is not None
        )
        n2m = sum(
            1
            for p in list_for_each_entry(
                "struct page", b.huge_pages.address_of_(), "lru"
            )
            if p.flags.value_() is not None
        )
        size = b.size.counter.value_()
        summary.update(size=size, target=b.target.value_(), pages_4k=n4k, pages_2m=n2m)
        v = gt["vmmemctl"]["parsed"]
        if size != v["current"] or b.target.value_() != v["target"]:
            problems.append(
                "size/target %d/%d != vmmemctl %d/%d"
                % (size, b.target.value_(), v["current"], v["target"])
            )
        if n4k + 512 * n2m != size:
            problems.append("pages %d + 512 * %d != size %d" % (n4k, n2m, size))
        if ("y" if b.reset_required else "n") != v["is resetting"]:
            problems.append("reset_required")
    return summary, problems


def check_stock(sample_dir, manifest):
    """A stock kernel (no debug files): make_sample.py's check with drgn alone, the
    symbols from the dump's own kallsyms (v6.0+) or from System.map.xz relocated by
    VMCOREINFO's KERNELOFFSET."""
    import re
    import tempfile

    sys.path.insert(0, HERE)
    import make_sample

    with tempfile.TemporaryDirectory() as tmp:
        vmcore = os.path.join(sample_dir, "vmcore")
        if not os.path.exists(vmcore):
            vmcore = os.path.join(tmp, "vmcore")
            with lzma.open(os.path.join(sample_dir, "vmcore.xz")) as f, open(
                vmcore, "wb"
            ) as g:
                shutil.copyfileobj(f, g, 1 << 20)
        prog = drgn.Program()
        prog.set_core_dump(vmcore)
        names = ("init_task", "init_uts_ns")
        smap = os.path.join(sample_dir, "System.map.xz")
        if os.path.exists(smap):
            info = prog["VMCOREINFO"].string_().decode()
            offset = int(re.search(r"^KERNELOFFSET=(\w+)$", info, re.M).group(1), 16)
            symbols = {}
            with lzma.open(smap, "rt") as f:
                for line in f:
                    addr, _, name = line.split()
                    if name in names:
                        symbols[name] = int(addr, 16) + offset
        else:
            from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

            finder = load_vmlinux_kallsyms(prog)
            symbols = {n: finder(prog, n, None, True)[0].address for n in names}
        try:
            result, _ = make_sample.drgn_check_stock(
                vmcore, symbols, manifest["ground_truth"]["uname_r"]
            )
        except SystemExit as e:
            return {}, [str(e)]
    return result, []


def main():
    dirs = sys.argv[1:] or sorted(
        d
        for d in glob.glob(os.path.join(SAMPLES, "*"))
        if os.path.exists(os.path.join(d, "manifest.json"))
    )
    bad = 0
    for d in dirs:
        try:
            summary, problems = check(d)
        except Exception as e:  # noqa: BLE001 - report and go on
            summary, problems = {}, ["%s: %s" % (type(e).__name__, e)]
        bad += bool(problems)
        print(
            "%-16s %s %s"
            % (
                os.path.basename(d.rstrip("/")),
                "FAIL" if problems else "ok",
                problems or summary,
            )
        )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
