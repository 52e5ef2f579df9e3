"""
The report on the real sample dumps, against the ground truth the guest
printed just before the dump (manifest.json: debugfs vmmemctl, /proc/meminfo,
/proc/vmstat). Nothing here compares with numbers our own code produced.

Samples are found from their manifests. Those with debug files (the sample
kernels) are read in process with their DWARF; those without (stock Debian
kernels: the vmcore is the whole sample) through the console script, which
falls back to the kernel's BTF and kallsyms. A sample kernel built with BTF
is read both ways, and the two reports must be equal but for ``debuginfo``.
"""

import json
import re
import subprocess
import sys

import drgn
import pytest
import samplelib

from drgn_balloon.errors import (
    EXIT_NO_DEBUG_INFO,
    EXIT_OK,
    MissingDebugInfo,
    NotVMware,
    Unreadable,
)
from drgn_balloon.render import verdict
from drgn_balloon.report import balloon_report


def vmw_balloon_sample(name):
    # make_sample.py's samples (VMware guests, and the guest that is not one);
    # virtio_balloon's (manifest "driver") are test_virtiosamplelib.py's.
    return samplelib.manifest(name).get("driver", "vmw_balloon") == "vmw_balloon"


#: This file's samples (--vmcore NAME: that one only).
ALL_SAMPLES = [n for n in samplelib.selected_names() if vmw_balloon_sample(n)]
#: Samples with the kernel's debug files: read with DWARF, in this process.
SAMPLES = [n for n in ALL_SAMPLES if samplelib.manifest(n).get("debug_files")]
#: Samples with no debug file at all (stock kernels): read through BTF.
NO_DEBUG_SAMPLES = [n for n in ALL_SAMPLES if n not in SAMPLES]
#: Samples whose kernel has its own BTF beside the DWARF: read both ways.
BTF_SAMPLES = [
    n
    for n in SAMPLES
    if re.search(r"^CONFIG_DEBUG_INFO_BTF=y$", samplelib.kernel_config(n), re.M)
]


def test_samples_exist():
    # The committed samples are part of the project: their absence is a failure.
    if samplelib.ONLY:
        if samplelib.selected_names() and not ALL_SAMPLES:
            pytest.skip(f"--vmcore {samplelib.ONLY} is test_virtio_samples.py's")
        assert ALL_SAMPLES, f"no sample {samplelib.ONLY} in {samplelib.SAMPLES}"
        return
    assert SAMPLES, "vmcore-samples/ has no samples"
    # Issue 8: stock kernels with no debug files, and sample kernels with BTF.
    assert NO_DEBUG_SAMPLES, "no sample of a stock kernel without debug files"
    assert BTF_SAMPLES, "no sample of a kernel with BTF and DWARF"


def vmmemctl_fields(raw):
    # debugfs vmmemctl as printed by vmballoon_debug_show(); the first
    # "target" line is the balloon target, a later one the GET_TARGET count.
    fields = {}
    for line in raw.splitlines():
        if ":" not in line:
            continue
        key, value = line.split(":", 1)
        key = re.sub(r"\s+", "", key)
        m = re.match(r"^\s*(\S+)(?:\s+\((\d+) failed\))?\s*$", value)
        if not m:
            continue
        if key in fields:
            key = key + "#2"
        fields[key] = m.group(1)
        if m.group(2) is not None:
            fields[key + "_failed"] = m.group(2)
    return fields


def kib_to_pages(kib):
    return kib // 4


_cache = {}


def report_for(name):
    if name not in _cache:
        try:
            prog = samplelib.open_sample(name)
        except MissingDebugInfo as e:
            # A stock kernel's sample this drgn cannot read through BTF (its
            # one-line error is asserted in test_btfsamplelib.py).
            _cache[name] = (None, e)
            return _cache[name]
        try:
            _cache[name] = (prog, balloon_report(prog))
        except (NotVMware, MissingDebugInfo, Unreadable) as e:
            _cache[name] = (prog, e)
    return _cache[name]


OLD_DRGN = drgn.__version__ == "0.0.22"


def old_drgn_cannot_read_elf(name, report):
    # drgn 0.0.22 cannot translate addresses in the makedumpfile -E sample.
    return (
        OLD_DRGN
        and isinstance(report, Unreadable)
        and samplelib.manifest(name)["dump"]["format"].startswith("ELF")
    )


def cannot_place_module(report):
    return isinstance(report, MissingDebugInfo) and "could not place" in str(report)


def report_or_skip(name):
    prog, report = report_for(name)
    if prog is None:
        pytest.skip(report.message)
    if cannot_place_module(report):
        # Asserted by test_old_drgn_cannot_place_new_modules_and_says_so.
        pytest.skip(f"drgn {drgn.__version__} cannot relocate this kernel's modules")
    if old_drgn_cannot_read_elf(name, report):
        # Asserted by test_old_drgn_cannot_place_new_modules_and_says_so.
        pytest.skip(
            f"drgn {drgn.__version__} cannot translate addresses in this ELF dump"
        )
    return prog, report


def accounting_or_skip(name):
    # The page accounting needs vmlinux only: also for the samples without a
    # balloon, or whose module this drgn cannot place.
    from drgn_balloon.memory import memory_accounting

    prog, report = report_for(name)
    if prog is None:
        pytest.skip(report.message)
    if old_drgn_cannot_read_elf(name, report):
        pytest.skip("drgn 0.0.22 cannot translate addresses in this ELF dump")
    return memory_accounting(prog, rss=False)


def test_old_drgn_cannot_place_new_modules_and_says_so():
    # drgn 0.0.22 (Debian 12) predates the v6.4 module memory layout
    # (struct module_memory): on such kernels the report must say so clearly.
    # Newer drgn reads every sample.
    for name in balloon_samples():
        prog, report = report_for(name)
        if prog is None:
            continue  # read through BTF: not this drgn (test_btf_samples.py)
        new_layout = prog.type("struct module").has_member("mem")
        old_drgn = tuple(int(x) for x in drgn.__version__.split(".")[:3]) < (0, 0, 23)
        if new_layout and old_drgn:
            assert cannot_place_module(report), report
            assert "use a newer drgn" in str(report)
        elif old_drgn_cannot_read_elf(name, report):
            assert "cannot read" in str(report)
        else:
            assert not isinstance(report, Exception), report


def balloon_samples():
    return [
        n
        for n in SAMPLES
        if samplelib.manifest(n)["ground_truth"].get("vmmemctl") is not None
    ]


@pytest.mark.parametrize("name", balloon_samples())
def test_size_and_target_match_debugfs(name):
    gt = vmmemctl_fields(samplelib.manifest(name)["ground_truth"]["vmmemctl"]["raw"])
    _, report = report_or_skip(name)
    assert report.balloon.size_frames == int(gt["current"])
    assert report.balloon.target_frames == int(gt["target"])
    assert report.balloon.vmware.reset_required == (gt["isresetting"] == "y")
    assert report.balloon.vmware.capabilities == int(gt["usedcapabilities"], 0)
    if report.balloon.vmware.offered_capabilities is not None:
        assert report.balloon.vmware.offered_capabilities == int(
            gt["ballooncapabilities"], 0
        )


@pytest.mark.parametrize("name", balloon_samples())
def test_pages_verified_and_match_vmstat(name):
    m = samplelib.manifest(name)
    vmstat = m["ground_truth"]["vmstat"]["parsed"]
    _, report = report_or_skip(name)
    v = report.balloon.verification
    assert v.verified, v.findings
    # BALLOON_INFLATE/DEFLATE count frames (2 MiB pages as 512) since boot.
    assert vmstat["balloon_inflate"] - vmstat["balloon_deflate"] == v.frames
    if "nr_balloon_pages" in vmstat:
        # v6.16+: NR_BALLOON_PAGES counts the 4 KiB pages of the balloon core
        # only (kernel-layouts.md §1.E).
        assert vmstat["nr_balloon_pages"] == v.pages("4k") + v.isolated_pages
        assert report.memory.counters["Balloon"] == vmstat["nr_balloon_pages"]


@pytest.mark.parametrize("name", balloon_samples())
def test_driver_statistics_match_debugfs(name):
    gt = vmmemctl_fields(samplelib.manifest(name)["ground_truth"]["vmmemctl"]["raw"])
    _, report = report_or_skip(name)
    stats = report.balloon.vmware.stats
    # Reading debugfs vmmemctl allocated the stats, so the dump has them.
    assert stats is not None
    moving = {"timer", "target", "target_failed"}  # the 1 s timer keeps going
    if gt["isresetting"] == "y":
        # Each tick retries the reset, through
        # vmballoon_reset(): START, GUEST_ID and the VMCI doorbell again.
        moving |= {
            "start",
            "start_failed",
            "reset",
            "guestType",
            "guestType_failed",
            "doorbellSet",
            "doorbellSet_failed",
        }
    compared = 0
    for key, value in stats.items():
        gt_key = {"target": "target#2", "target_failed": "target#2_failed"}.get(
            key, key
        )
        if key in moving:
            assert value >= int(gt[gt_key])
            continue
        assert value == int(gt[gt_key]), key
        compared += 1
    assert compared >= 20


@pytest.mark.parametrize("name", SAMPLES)
def test_memtotal_memfree_match_meminfo(name):
    meminfo = samplelib.manifest(name)["ground_truth"]["meminfo"]["parsed"]
    memory = accounting_or_skip(name)
    assert memory.total == kib_to_pages(meminfo["MemTotal"])
    # The guest printed /proc/meminfo, then only idled until the dump; MemFree
    # moves by the pages the shell and cat used: allow 1 MiB.
    assert abs(memory.free - kib_to_pages(meminfo["MemFree"])) <= 256


COUNTERS = [
    "Buffers",
    "Cached",
    "SwapCached",
    "AnonPages",
    "Shmem",
    "Slab",
    "SReclaimable",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "VmallocUsed",
    "Percpu",
    "Balloon",
]


@pytest.mark.parametrize("name", SAMPLES)
def test_counters_match_meminfo(name):
    meminfo = samplelib.manifest(name)["ground_truth"]["meminfo"]["parsed"]
    memory = accounting_or_skip(name)
    compared = 0
    for counter in COUNTERS:
        ours = memory.counters[counter]
        if counter not in meminfo:
            continue
        assert ours is not None, counter
        # Same 1 MiB tolerance as MemFree: the print came a moment before
        # the dump.
        assert abs(ours - kib_to_pages(meminfo[counter])) <= 256, counter
        compared += 1
    assert compared >= 9
    assert memory.counters["HugeTLB"] == kib_to_pages(meminfo.get("Hugetlb", 0))
    # HugePages_Total is the default pool; no such line, no hugetlbfs.
    if "HugePages_Total" in meminfo:
        assert meminfo["HugePages_Total"] in [total for _, total, _ in memory.hugepages]
    else:
        assert memory.hugepages == ()


MEMINFO_USED_LINES = [
    "Buffers",
    "Cached",
    "SwapCached",
    "AnonPages",
    "Slab",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "VmallocUsed",
    "Percpu",
    "Hugetlb",
    "Balloon",
]


@pytest.mark.parametrize("name", balloon_samples())
def test_balloon_is_in_the_unexplained_memory(name):
    m = samplelib.manifest(name)
    meminfo = m["ground_truth"]["meminfo"]["parsed"]
    vmstat = m["ground_truth"]["vmstat"]["parsed"]
    _, report = report_or_skip(name)
    # The same sum from the guest's own /proc/meminfo: what no line explains.
    guest = kib_to_pages(
        meminfo["MemTotal"]
        - meminfo["MemFree"]
        - sum(meminfo.get(k, 0) for k in MEMINFO_USED_LINES)
    )
    # Free pages on the per-CPU lists are in no meminfo line either (not in
    # MemFree); the report tells them apart from the unexplained memory.
    pcp = report.memory.pcp_free or 0
    assert abs(report.memory.unaccounted + pcp - guest) <= 512  # 2 MiB of drift
    # Balloon frames that no line counts (all of them before v6.16, the
    # 2 MiB ones after) are necessarily part of that unexplained memory.
    hidden = report.balloon.size_frames - vmstat.get("nr_balloon_pages", 0)
    # (Less the drift of the global vmstat counters, which lag their per-CPU
    # differences: MemFree and the others are only that exact.)
    assert report.memory.unaccounted >= hidden - 256
    if hidden and guest - pcp > 0:
        # The verdict's share, against the guest's own figures less the
        # per-CPU free pages (checked against /proc/zoneinfo elsewhere).
        share = int(re.search(r"(\d+)% of the", verdict(report)).group(1))
        assert abs(share - 100 * min(hidden, guest - pcp) / (guest - pcp)) <= 1.5


def test_not_vmware_sample_says_so():
    names = [n for n in SAMPLES if not samplelib.manifest(n).get("vmware", True)]
    if not names and samplelib.ONLY:
        pytest.skip(f"--vmcore {samplelib.ONLY} is not such a sample")
    assert names
    for name in names:
        _, report = report_or_skip(name)
        assert isinstance(report, NotVMware), report
        assert "not a VMware guest" in str(report)


def test_no_response_sample_reports_reset_pending():
    names = [n for n in balloon_samples() if samplelib.manifest(n).get("host") is None]
    if not names and samplelib.ONLY:
        pytest.skip(f"--vmcore {samplelib.ONLY} is not such a sample")
    assert names
    for name in names:
        gt = vmmemctl_fields(
            samplelib.manifest(name)["ground_truth"]["vmmemctl"]["raw"]
        )
        _, report = report_or_skip(name)
        assert gt["isresetting"] == "y" and int(gt["current"]) == 0
        assert report.balloon.vmware.reset_required and report.balloon.size_frames == 0
        assert report.balloon.verification.verified
        assert "reset is pending" in verdict(report)


def test_huge_pages_sample_has_both_lists():
    names = [
        n
        for n in balloon_samples()
        if (samplelib.manifest(n).get("host") or {}).get("grant_2m")
    ]
    if not names and samplelib.ONLY:
        pytest.skip(f"--vmcore {samplelib.ONLY} is not such a sample")
    assert names
    for name in names:
        _, report = report_or_skip(name)
        v = report.balloon.verification
        assert v.pages("2m") > 0 and v.pages("4k") > 0
        assert report.balloon.vmware.max_page_size == "2M"


@pytest.mark.parametrize("name", balloon_samples())
def test_fast_and_object_walks_agree_on_real_dump(name):
    from drgn_balloon.balloon import balloon_state
    from drgn_balloon.verify import verify_balloon

    prog, report = report_or_skip(name)
    slow = verify_balloon(prog, balloon_state(prog), fast=False)
    assert slow == report.balloon.verification


@pytest.mark.parametrize("name", balloon_samples())
def test_verdict_says_deflating_when_above_target(name):
    # debugfs vmmemctl: current above target means the driver is deflating.
    gt = vmmemctl_fields(samplelib.manifest(name)["ground_truth"]["vmmemctl"]["raw"])
    _, report = report_or_skip(name)
    text = verdict(report)
    if int(gt["current"]) > int(gt["target"]):
        assert "is deflating" in text
        assert "comes back when the host lowers the target" not in text
    elif int(gt["current"]):
        assert "is deflating" not in text


@pytest.mark.parametrize("name", balloon_samples())
def test_text_explains_the_balloon_line(name):
    # /proc/vmstat nr_balloon_pages (v6.16+): the text says the Balloon: line
    # already counts those frames.
    from drgn_balloon.render import render_text

    vmstat = samplelib.manifest(name)["ground_truth"]["vmstat"]["parsed"]
    _, report = report_or_skip(name)
    text = " ".join(render_text(report).split())
    counted = vmstat.get("nr_balloon_pages", 0)
    if counted:
        assert f"The Balloon: line already counts {counted:,} of the" in text
    else:
        assert "The Balloon: line already counts" not in text


def samples_with_module_file():
    # The module's .ko is stored with the sample (not with a stock kernel's).
    return [
        n
        for n in balloon_samples()
        if any(".ko" in f for f in samplelib.manifest(n).get("debug_files", ()))
    ]


@pytest.mark.parametrize("name", samples_with_module_file())
def test_module_version_line_follows_modinfo(name):
    # The module's own .modinfo: no version= line, no declared version.
    from drgn_balloon.render import render_text

    ko = [f for f in samplelib.debug_files(name) if f.endswith(".ko")][0]
    with open(ko, "rb") as f:
        declared = re.search(rb"\0version=([^\0]+)", f.read())
    _, report = report_or_skip(name)
    line = [ln for ln in render_text(report).splitlines() if ln.startswith("module")]
    if declared:
        assert declared.group(1).decode() in line[0]
    else:
        assert "(the module declares no version)" in line[0]


@pytest.mark.parametrize("name", balloon_samples())
def test_bulk_walk_without_numpy_agrees_on_real_dump(name, monkeypatch):
    # The page-by-page path of the bulk reader (no NumPy) finds the same.
    from drgn_balloon import walk
    from drgn_balloon.balloon import balloon_state
    from drgn_balloon.verify import verify_balloon

    prog, report = report_or_skip(name)
    monkeypatch.setattr(walk, "np", None)
    assert (
        verify_balloon(prog, balloon_state(prog), fast=True)
        == report.balloon.verification
    )


# --- Through the console script: stock kernels (BTF) and BTF against DWARF ---

BALLOON_REPORT = [sys.executable, "-m", "drgn_balloon.cli"]
_cli_cache = {}


def drgn_can_read_btf():
    # What reading types from BTF and symbols from kallsyms takes of drgn:
    # type and symbol finders, and its kallsyms helpers (by feature, not by
    # version number).
    try:
        from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms  # noqa: F401
    except ImportError:
        return False
    return all(
        hasattr(drgn.Program, f)
        for f in ("register_type_finder", "register_symbol_finder")
    )


def cli_report(name, *args):
    """balloon-report VMCORE --json [args]: the JSON document (exit code 0)."""
    key = (name,) + args
    if key not in _cli_cache:
        p = subprocess.run(
            BALLOON_REPORT + [samplelib.vmcore(name), "--json", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert "Traceback" not in p.stderr, p.stderr
        btf_read = "--btf" in args or name in NO_DEBUG_SAMPLES
        if p.returncode != EXIT_OK and btf_read and not drgn_can_read_btf():
            # An older drgn: one clear line and exit 5, never a traceback.
            assert p.returncode == EXIT_NO_DEBUG_INFO, (p.returncode, p.stderr)
            assert len(p.stderr.splitlines()) == 1, p.stderr
            pytest.skip(f"drgn {drgn.__version__} cannot read BTF (refusal asserted)")
        if p.returncode == EXIT_NO_DEBUG_INFO and "newer drgn" in p.stderr:
            # This drgn cannot place this kernel's modules (drgn 0.0.22, v6.4+)
            # or decode its kallsyms (0.0.31, v7.x): one line that says so.
            assert len(p.stderr.splitlines()) == 1, p.stderr
            pytest.skip(p.stderr.strip())
        assert p.returncode == EXIT_OK, (p.returncode, p.stderr)
        _cli_cache[key] = json.loads(p.stdout)
    return _cli_cache[key]


def dwarf_args(name):
    out = []
    for path in samplelib.debug_files(name):
        out += ["-s", path]
    return out


def btf_args(name):
    # Nothing but the vmcore; plus the System.map stored beside a stock sample
    # whose VMCOREINFO has no kallsyms (before v6.0).
    path = samplelib.system_map(name)
    return ["-s", path] if path else []


#: (sample, arguments) of every report read through BTF: each stock sample as
#: a user runs it (no option: the fallback when there is no DWARF), each BTF
#: sample kernel with --btf beside its debug files (BTF asked for).
BTF_READS = [pytest.param(n, tuple(btf_args(n)), id=n) for n in NO_DEBUG_SAMPLES] + [
    pytest.param(n, ("--btf",), id=n + "--btf") for n in BTF_SAMPLES
]


def flatten(doc, prefix=""):
    # {"a": {"b": 1}} -> {"a.b": 1}; lists of dicts by index.
    out = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(doc, list) and any(isinstance(v, (dict, list)) for v in doc):
        for i, v in enumerate(doc):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = doc
    return out


@pytest.mark.parametrize("name", BTF_SAMPLES)
def test_btf_report_equals_dwarf_report(name):
    # The same dump read through the kernel's BTF and kallsyms and through
    # DWARF: every key but debuginfo must be equal.
    dwarf = cli_report(name, *dwarf_args(name))
    btf = cli_report(name, "--btf")
    assert dwarf["debuginfo"]["source"] == "dwarf"
    assert btf["debuginfo"]["source"] == "btf"
    a = flatten({k: v for k, v in dwarf.items() if k != "debuginfo"})
    b = flatten({k: v for k, v in btf.items() if k != "debuginfo"})
    assert sorted(a) == sorted(b)
    different = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not different, different
    assert len(a) > 100


@pytest.mark.parametrize("name,args", BTF_READS)
def test_btf_report_matches_ground_truth(name, args):
    m = samplelib.manifest(name)
    gt = m["ground_truth"]
    report = cli_report(name, *args)
    assert report["debuginfo"]["source"] in ("btf", "btf+layout")
    assert report["kernel"]["release"] == gt["uname_r"]

    # The balloon's state and the driver's statistics = debugfs vmmemctl.
    fields = vmmemctl_fields(gt["vmmemctl"]["raw"])
    balloon = report["balloon"]
    assert balloon["driver"] == "vmw_balloon"
    assert balloon["size_frames"] == int(fields["current"])
    assert balloon["target_frames"] == int(fields["target"])
    assert balloon["reset_required"] == (fields["isresetting"] == "y")
    assert balloon["capabilities"] == int(fields["usedcapabilities"], 0)
    if balloon["offered_capabilities"] is not None:
        assert balloon["offered_capabilities"] == int(fields["ballooncapabilities"], 0)
    moving = {"timer", "target", "target_failed"}  # the 1 s timer keeps going
    compared = 0
    for key, value in balloon["stats"].items():
        gt_key = {"target": "target#2", "target_failed": "target#2_failed"}.get(
            key, key
        )
        if key in moving:
            assert value >= int(fields[gt_key]), key
        else:
            assert value == int(fields[gt_key]), key
            compared += 1
    assert compared >= 20

    # Every page walked, as many frames as the guest's vmstat counted.
    vmstat = gt["vmstat"]["parsed"]
    assert balloon["verified"], balloon["findings"]
    frames = balloon["pages_4k"] + 512 * balloon["pages_2m"]
    assert frames == balloon["frames_on_lists"] == balloon["size_frames"]
    assert vmstat["balloon_inflate"] - vmstat["balloon_deflate"] == frames
    if "nr_balloon_pages" in vmstat:
        assert vmstat["nr_balloon_pages"] == (
            balloon["pages_4k"] + balloon["isolated_pages"]
        )

    # The page accounting = /proc/meminfo (1 MiB of drift, as above).
    meminfo = gt["meminfo"]["parsed"]
    memory = report["memory"]
    assert memory["total_pages"] == kib_to_pages(meminfo["MemTotal"])
    assert abs(memory["free_pages"] - kib_to_pages(meminfo["MemFree"])) <= 256
    compared = 0
    for counter in COUNTERS:
        if counter not in meminfo:
            continue
        ours = memory["counters_pages"][counter]
        assert ours is not None, counter
        assert abs(ours - kib_to_pages(meminfo[counter])) <= 256, counter
        compared += 1
    assert compared >= 9
    guest = kib_to_pages(
        meminfo["MemTotal"]
        - meminfo["MemFree"]
        - sum(meminfo.get(k, 0) for k in MEMINFO_USED_LINES)
    )
    pcp = memory["pcp_free_pages"] or 0
    assert abs(memory["unaccounted_pages"] + pcp - guest) <= 512
    # The issue-8 samples also have /proc/zoneinfo: present pages, where the
    # report gives them (JSON schema 2), and the free pages on the per-CPU
    # lists (each "pagesets" cpu's "count:").
    raw = (gt.get("zoneinfo") or {}).get("raw")
    if raw:
        counts = re.findall(r"^\s+count:\s+(\d+)$", raw, re.M)
        assert counts
        assert abs(memory["pcp_free_pages"] - sum(map(int, counts))) <= 256
    zones = (gt.get("zoneinfo") or {}).get("parsed")
    if zones and memory.get("present_pages") is not None:
        present = sum(z.get("present", 0) for z in zones.values())
        assert memory["present_pages"] == present


@pytest.mark.parametrize("name", NO_DEBUG_SAMPLES)
def test_stock_samples_are_stock(name):
    # What makes a stock sample: Debian's own packages, no debug package, no
    # debug file, KASLR as users have it.
    m = samplelib.manifest(name)
    assert m["debug_files"] == [] and not m["kernel_dir"]
    stock = m["stock"]
    assert stock["packages"] and stock["debug_package"] is None
    assert not any("-dbg" in p for p in stock["packages"])
    assert stock["kaslr"]["enabled"]
