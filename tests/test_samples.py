"""
The report on the real sample dumps, against the ground truth the guest
printed just before the dump (manifest.json: debugfs vmmemctl, /proc/meminfo,
/proc/vmstat). Nothing here compares with numbers our own code produced.
"""

import re

import drgn
import pytest
import samplelib

from drgn_balloon.errors import MissingDebugInfo, NotVMware, Unreadable
from drgn_balloon.render import verdict
from drgn_balloon.report import balloon_report

SAMPLES = samplelib.selected_names()


def test_samples_exist():
    # The committed samples are part of the project: their absence is a failure.
    assert SAMPLES, (
        f"no samples (--vmcore {samplelib.ONLY})"
        if samplelib.ONLY
        else ("vmcore-samples/ has no samples")
    )


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
    assert abs(report.memory.unaccounted - guest) <= 512  # 2 MiB of drift
    # Balloon frames that no line counts (all of them before v6.16, the
    # 2 MiB ones after) are necessarily part of that unexplained memory.
    hidden = report.balloon.size_frames - vmstat.get("nr_balloon_pages", 0)
    assert report.memory.unaccounted >= hidden
    if hidden and guest:
        # The verdict's share, against the guest's own figures.
        share = int(re.search(r"(\d+)% of the", verdict(report)).group(1))
        assert abs(share - 100 * min(hidden, guest) / guest) <= 1.5


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
