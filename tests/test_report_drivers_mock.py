"""
hv_balloon, the Xen balloon and the pseries CMM through the entry points: the
drgn script's entry (``cli.script_main``, what ``drgn scripts/balloon_report.py``
runs) and the ``%balloon`` command, on the mock programs of tests/mockdrivers.py
(each layout cites the driver's source) with the accounting the report reads.
Expected figures come from how each mock was built (present pages, MemTotal,
pages ballooned), never from the report's own output; bad input gives findings
or one line and a documented exit code.
"""

import contextlib
import io
import json
import pickle
import re
import subprocess
import sys

import pytest
from mockdrivers import CmmMock, HvMock, MockProgram, XenMock, spread

from drgn_balloon.cli import script_main
from drgn_balloon.errors import EXIT_FINDINGS, EXIT_NO_DRIVER, EXIT_OK

PRESENT = 4096
RESERVED = 200  # pages never in MemTotal (kernel image, memory map...)
FREE = 2000


def run_script(prog, *args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = script_main(prog, list(args))
    return code, out.getvalue(), err.getvalue()


def report_json(prog):
    code, out, err = run_script(prog, "--json")
    return code, json.loads(out), err


def xen(pages=300, **kw):
    m = XenMock(low=spread(pages, PRESENT), **kw)
    m.accounting(
        present=PRESENT,
        total=PRESENT - pages - RESERVED,
        free=FREE,
        hypervisor="X86_HYPER_XEN_HVM",
    )
    return m


def hv(era, pages=200, **kw):
    m = HvMock(era=era, max_pfn=PRESENT, ballooned=spread(pages, PRESENT), **kw)
    # 6.1+ takes the pages out of MemTotal, 5.10 does not (hv_balloon.c).
    adjusted = pages if era != "5.10" else 0
    m.accounting(
        present=PRESENT,
        total=PRESENT - RESERVED - adjusted,
        free=FREE,
        hypervisor="X86_HYPER_MS_HYPERV",
    )
    return m


def cmm(pages=40, **kw):
    m = CmmMock(loaned=spread(pages, 1024), max_pfn=1024, **kw)
    m.accounting(present=1024, total=1024 - pages - 20, free=300)
    return m


def share(verdict):
    return int(re.search(r"holds (\d+)% of that difference", verdict).group(1))


def test_xen_json_and_text():
    prog = xen().finish()
    code, doc, err = report_json(prog)
    assert code == EXIT_OK and err == ""
    assert doc["schema_version"] == 2
    (b,) = doc["balloons"]
    assert doc["balloon"] == b
    assert b["driver"] == "xen_balloon" and b["builtin"]
    assert b["size_frames"] == 300 and b["frame_size"] == 4096
    assert b["verified"] and b["pages_on_lists"] == 300
    assert b["adjusts_managed"] is True
    assert b["xen"]["balloon_low"] == 300
    m = doc["memory"]
    assert m["present_pages"] == PRESENT
    assert m["total_pages"] == PRESENT - 300 - RESERVED
    assert m["not_in_memtotal_pages"] == 300 + RESERVED
    assert m["balloons_outside_memtotal_pages"] == 300
    drivers = {d["driver"]: d for d in doc["drivers"]}
    assert drivers["xen_balloon"]["initialised"] and drivers["xen_balloon"]["present"]
    assert not drivers["vmw_balloon"]["present"]
    assert doc["kernel"]["hypervisor"] == "Xen HVM"
    assert "less memory than the VM has" in doc["verdict"]
    assert share(doc["verdict"]) == round(100 * 300 / (300 + RESERVED))
    code, text, _ = run_script(prog)
    assert code == EXIT_OK
    assert "Xen balloon" in text and "present (the zones)" in text
    assert re.search(r"present - MemTotal\s+500\b", text)


@pytest.mark.parametrize("era", ["5.10", "6.1", "7.x"])
def test_hv_adjusts_managed_from_the_debug_info(era):
    prog = hv(era).finish()
    code, doc, _ = report_json(prog)
    assert code == EXIT_OK
    (b,) = doc["balloons"]
    assert b["driver"] == "hv_balloon" and b["size_frames"] == 200
    assert b["target_frames"] is None and "no target" in b["target_note"]
    # The census found the 200 offline pages: verified without a list.
    assert b["verified"] and b["offline_census"]["offline_pages"] == 200
    assert b["lists"] == []
    if era == "5.10":
        # No pr_dev_info in dm_device: the debug info cannot tell.
        assert b["adjusts_managed"] is None
        assert "is unknown" in doc["verdict"]
    else:
        assert b["adjusts_managed"] is True
        assert share(doc["verdict"]) == round(100 * 200 / (200 + RESERVED))
    assert doc["kernel"]["hypervisor"] == "Microsoft Hyper-V"


@pytest.mark.parametrize("era", ["6.1", "7.x"])
def test_cmm_ppc64_64k_pages(era):
    prog = cmm(era=era).finish()
    code, doc, _ = report_json(prog)
    assert code == EXIT_OK
    (b,) = doc["balloons"]
    assert b["driver"] == "pseries_cmm"
    assert (b["size_frames"], b["frame_size"], b["target_frames"]) == (40, 65536, 40)
    assert b["size_bytes"] == 40 * 65536 and b["pages_4k"] is None
    assert b["verified"] and b["adjusts_managed"] is True
    assert doc["memory"]["page_size"] == 65536
    assert share(doc["verdict"]) == round(100 * 40 / 60)
    code, text, _ = run_script(prog)
    assert "pages of 64 KiB" in text


def test_driver_there_but_never_initialised_is_told():
    # A Hyper-V module loaded outside Hyper-V: no balloon, but not "no driver".
    m = HvMock(initialised=False)
    m.accounting(present=4096, total=3800, free=3000, hypervisor="X86_HYPER_KVM")
    code, doc, err = report_json(m.finish())
    assert code == EXIT_OK and err == ""
    assert doc["balloons"] == [] and doc["balloon"] is None
    drivers = {d["driver"]: d for d in doc["drivers"]}
    assert drivers["hv_balloon"]["present"] and not drivers["hv_balloon"]["initialised"]
    assert doc["verdict"].startswith("No balloon holds memory in this guest.")
    assert "hv_balloon: " in doc["verdict"] and "KVM" in doc["verdict"]


def test_no_driver_at_all_is_exit_3():
    m = MockProgram()
    m.accounting(present=4096, total=3800, free=3000)
    code, out, err = run_script(m.finish(), "--json")
    assert code == EXIT_NO_DRIVER
    (line,) = err.splitlines()
    assert "no VMware balloon driver" in line and "virtio_balloon" in line
    assert json.loads(out)["error"]["exit_code"] == EXIT_NO_DRIVER


def test_xen_count_mismatch_is_a_finding():
    m = xen()
    m.set("balloon_low", 310)
    code, doc, err = report_json(m.finish())
    assert code == EXIT_FINDINGS and err == ""
    (b,) = doc["balloons"]
    assert not b["verified"]
    assert "count_mismatch" in {f["kind"] for f in b["findings"]}
    assert "NOT verified" in doc["verdict"]


def test_xen_cycle_is_a_finding_not_a_hang():
    m = xen()
    m.write("Q", m.page(m.pfns[20]) + 8, m.page(m.pfns[5]) + 8)
    code, text, err = run_script(m.finish())
    assert code == EXIT_FINDINGS and err == ""
    assert "NOT verified" in text and "walked to end" in text


def test_cmm_counts_beyond_memory():
    m = cmm()
    m.write("Q", m.loaned_addr, 1 << 40)
    code, doc, _ = report_json(m.finish())
    assert code == EXIT_FINDINGS
    assert "implausible" in {f["kind"] for f in doc["balloons"][0]["findings"]}


def test_balloon_command_on_mocks(monkeypatch):
    commands = pytest.importorskip(
        "drgn.commands", reason="drgn < 0.1.0 has no command framework"
    )
    import drgn_balloon.plugin  # noqa: F401 - registers %balloon

    # A mock Program is not flagged as a Linux kernel: enable the command
    # for it as drgn does for a kernel.
    # (The namespace's lookup() asks enabled() itself, hence its table.)
    command = commands.DEFAULT_COMMAND_NAMESPACE._commands["balloon"]
    monkeypatch.setattr(command, "enabled", lambda prog: True)
    prog = hv("6.1").finish()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = commands.run_command(prog, "balloon --json", globals={})
    doc = json.loads(out.getvalue())
    assert doc["balloons"][0]["driver"] == "hv_balloon"
    assert report.balloon.driver == "hv_balloon" and report.balloon.verified


def test_report_of_other_drivers_renders_without_a_program():
    from drgn_balloon.render import render_json, render_text
    from drgn_balloon.report import balloon_report

    report = balloon_report(cmm().finish())
    code = (
        "import pickle, sys\n"
        "from drgn_balloon.render import render_json, render_text\n"
        "r = pickle.loads(sys.stdin.buffer.read())\n"
        "sys.stdout.write(render_text(r) + render_json(r))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(report),
        capture_output=True,
        check=True,
    )
    assert r.stdout.decode() == render_text(report) + render_json(report)


def test_vmware_guest_without_vmw_balloon_is_told_what_it_has():
    # A stock Debian kernel as a VMware guest with vmw_balloon not loaded: the
    # Xen balloon is built in (never initialised), so the report is printed and
    # says the host cannot balloon this guest.
    m = XenMock(initialised=False)
    m.accounting(present=4096, total=3900, free=3000, hypervisor="X86_HYPER_VMWARE")
    code, doc, err = report_json(m.finish())
    assert code == EXIT_OK and err == ""
    assert doc["balloons"] == [] and doc["kernel"]["hypervisor"] == "VMware"
    assert "no VMware balloon driver is loaded" in doc["verdict"]
    assert "xen_balloon: " in doc["verdict"]


def test_two_balloons_in_one_guest():
    """hv_balloon (v6.1 layout) and the Xen balloon both holding pages: both
    reported, each with its share of present - MemTotal."""
    from mockdrivers import XEN_BALLOON_STATS

    m = HvMock(era="6.1", max_pfn=PRESENT, ballooned=spread(100, 2000))
    stats_t = m.struct("balloon_stats", XEN_BALLOON_STATS)
    stats = m.add_global("balloon_stats", stats_t)
    head = m.add_global("ballooned_pages", m.types["list"])
    m.link(head, spread(50, PRESENT, first=2100))
    for member, value in (
        ("current_pages", PRESENT - 50),
        ("target_pages", PRESENT - 50),
        ("balloon_low", 50),
        ("total_pages", PRESENT),
    ):
        m.write("Q", stats + m.offset(stats_t, member), value)
    m.accounting(present=PRESENT, total=PRESENT - 150 - RESERVED, free=FREE)
    code, doc, _ = report_json(m.finish())
    assert code == EXIT_OK
    assert [b["driver"] for b in doc["balloons"]] == ["hv_balloon", "xen_balloon"]
    assert [b["size_frames"] for b in doc["balloons"]] == [100, 50]
    assert all(b["verified"] for b in doc["balloons"])
    assert doc["balloon"]["driver"] == "hv_balloon"
    assert doc["memory"]["balloons_outside_memtotal_pages"] == 150
    shares = [int(x) for x in re.findall(r"holds (\d+)% of that", doc["verdict"])]
    assert shares == [round(100 * 100 / 350), round(100 * 50 / 350)]


@pytest.mark.parametrize("layout", ["per_cpu_pageset", "pageset"])
def test_free_pages_on_the_per_cpu_lists_are_not_unexplained(layout):
    # Free pages on the per-CPU lists are out of NR_FREE_PAGES (MemFree): the
    # report counts them apart from the memory no counter explains, on both
    # layouts of the zone's per-CPU lists (v5.14+ and v2.6.34 to v5.13).
    from drgn_balloon.memory import memory_accounting

    m = cmm(pages=40)
    plain = memory_accounting(m.finish(), rss=False)
    assert plain.pcp_free is None
    m = CmmMock(loaned=spread(40, 1024), max_pfn=1024)
    m.accounting(present=1024, total=1024 - 40 - 20, free=300, pcp=(layout, [7, 30]))
    acc = memory_accounting(m.finish(), rss=False)
    assert acc.pcp_free == 37
    assert acc.unaccounted == plain.unaccounted - 37
