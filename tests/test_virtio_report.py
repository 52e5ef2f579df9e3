"""
The report on the real virtio samples (stock Debian kernels in QEMU, inflated
by QEMU; scripts/samples/make_virtio_sample.py) through the console script and
the drgn script, compared with what the guest printed (/proc/vmstat
balloon_inflate - balloon_deflate, /proc/meminfo MemTotal, /proc/zoneinfo
present, the device's features in sysfs) and with QEMU's query-balloon.

Debug info: the default path of the entry points. Where Debian's -dbg package
of the sample's release is unpacked under $DRGN_BALLOON_DBG_ROOT (see
tests/test_virtio_samples.py) its vmlinux and drivers/virtio modules are given
with -s (DWARF); otherwise nothing is given and the entry points use what the
kernel has (BTF, issue 8).
"""

import json
import os
import re
import subprocess
import sys

import pytest
from test_virtio_samples import NAMES, _debug_files, _sample_dir, _vmcore

from drgn_balloon.errors import EXIT_NO_DEBUG_INFO, EXIT_OK

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(os.path.dirname(HERE), "scripts", "balloon_report.py")
CONSOLE = [sys.executable, "-m", "drgn_balloon.cli"]
DRGN = [sys.executable, "-m", "drgn"]


def sample(name):
    d = _sample_dir(name)
    if d is None:
        pytest.skip(f"sample {name} not built (make_virtio_sample.py {name})")
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    files = _debug_files(manifest["kernel_release"])
    symbols = []
    for path in files or ():
        symbols += ["-s", path]
    return _vmcore(d), manifest, symbols


def run(cmd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(HERE) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=env, check=False
    )


_RUNS = {}


def console(name, *args):
    key = ("console", name) + args
    if key not in _RUNS:
        vmcore, manifest, symbols = sample(name)
        _RUNS[key] = (run(CONSOLE + [vmcore] + symbols + list(args)), manifest)
    r, manifest = _RUNS[key]
    refused(r, sample(name)[2])
    return r, manifest


def refused(r, symbols):
    """Read through BTF (no debug files given) on a drgn that cannot (no BTF
    mode before 0.0.30; 0.0.31 and the kallsyms of Linux 7.x): the one-line
    refusal, exit 5, is asserted and the test skips with it."""
    from drgn_balloon.btf_debuginfo import btf_supported

    if symbols or r.returncode != EXIT_NO_DEBUG_INFO:
        return
    if btf_supported() is None and "a newer drgn may" not in r.stderr:
        return
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, r.stderr
    pytest.skip(lines[0])


def no_module_types(r, manifest):
    """Debian 5.10 has no module BTF: without its -dbg package struct
    virtio_balloon is known nowhere, and the report says which file it needs."""
    return (
        manifest["kernel_release"].startswith("5.10.")
        and _debug_files(manifest["kernel_release"]) is None
        and r.returncode == EXIT_NO_DEBUG_INFO
    )


def truth(manifest):
    gt = manifest["ground_truth"]
    vmstat = gt["vmstat"]["parsed"]
    (dev,) = [d for d in gt["virtio_devices"]["parsed"] if d["device"] == "0x0005"]
    return {
        "held": vmstat["balloon_inflate"] - vmstat["balloon_deflate"],
        "vmstat": vmstat,
        "memtotal_kib": gt["meminfo"]["parsed"]["MemTotal"],
        "present": sum(z["present"] for z in gt["zoneinfo"]["parsed"]),
        "device": dev,
        "doom": "deflate-on-oom=on" in manifest["qemu_device"],
        "actual": manifest["host"]["query_balloon"]["actual"],
        "ram": manifest["memory_mib"] * 2**20,
    }


def check_document(doc, manifest):
    t = truth(manifest)
    assert doc["schema_version"] == 2
    assert doc["kernel"]["release"] == manifest["kernel_release"]
    if "tcg" in manifest["qemu_cmdline"]:
        # TCG: the kernel detected no hypervisor, and the balloon is found
        # all the same (x86_hyper_type is a fact, not a gate).
        assert doc["kernel"]["hypervisor"] == "none"
    (b,) = doc["balloons"]
    assert doc["balloon"] == b
    assert b["driver"] == "virtio_balloon" and b["device"] == t["device"]["name"]
    # The guest's vmstat, and QEMU's view: actual = RAM - the balloon.
    assert b["size_frames"] == t["held"] == manifest["expected_pages"]
    assert b["frame_size"] == 4096
    assert t["ram"] - t["actual"] == b["size_bytes"]
    assert b["verified"] and b["pages_on_lists"] == t["held"]
    assert b["target_frames"] is None and "configuration space" in b["target_note"]
    assert b["adjusts_managed"] is (not t["doom"])
    bits = [i for i in range(64) if b["virtio"]["features"] >> i & 1]
    assert bits == [i for i in t["device"]["feature_bits"] if i < 64]
    m = doc["memory"]
    assert m["total_pages"] * 4 == t["memtotal_kib"]
    assert m["present_pages"] == t["present"]
    drivers = {d["driver"]: d for d in doc["drivers"]}
    assert drivers["virtio_balloon"]["initialised"]
    assert drivers["virtio_balloon"]["pages"] == t["held"]
    # Debian builds the Xen balloon in; it never initialised under KVM/TCG.
    assert drivers["xen_balloon"]["present"]
    assert not drivers["xen_balloon"]["initialised"]
    assert not drivers["vmw_balloon"]["present"]
    assert not drivers["hv_balloon"]["present"]
    if "nr_balloon_pages" in t["vmstat"]:  # v7.x: the Balloon: line
        assert m["counters_pages"]["Balloon"] == t["vmstat"]["nr_balloon_pages"]
        assert b["counted_in_meminfo_frames"] == t["held"]
    assert m["explained_pages"] <= m["used_pages"]
    # Free pages on the per-CPU lists: the guest's /proc/zoneinfo prints each
    # "pagesets" cpu's "count:" (virtio-7.x-doom: about 8,000 after the deflate).
    counts = re.findall(
        r"^\s+count:\s+(\d+)$", manifest["ground_truth"]["zoneinfo"]["raw"], re.M
    )
    assert counts
    assert abs(m["pcp_free_pages"] - sum(map(int, counts))) <= 256
    text = doc["verdict"]
    if t["doom"]:
        assert "leaves its pages in MemTotal" in text and "DEFLATE_ON_OOM" in text
    else:
        # The share of present - MemTotal the balloon holds, from the guest's
        # own zoneinfo and meminfo.
        gap_kib = t["present"] * 4 - t["memtotal_kib"]
        expected = 100 * min(t["held"] * 4, gap_kib) / gap_kib
        share = int(re.search(r"holds (\d+)% of that difference", text).group(1))
        assert abs(share - expected) <= 1
        assert "less memory than the VM has" in text


@pytest.mark.parametrize("name", NAMES)
def test_console_script_json(name):
    r, manifest = console(name, "--json")
    if no_module_types(r, manifest):
        assert "struct virtio_balloon" in r.stderr
        return
    assert r.returncode == EXIT_OK, r.stderr
    check_document(json.loads(r.stdout), manifest)


@pytest.mark.parametrize("name", NAMES)
def test_console_script_text(name):
    r, manifest = console(name)
    if no_module_types(r, manifest):
        return
    assert r.returncode == EXIT_OK, r.stderr
    t = truth(manifest)
    out = r.stdout
    assert out.startswith("Balloon report\n")
    assert f"Virtio balloon ({t['device']['name']})" in out
    assert re.search(rf"size\s+{t['held']:,} frames", out)
    assert re.search(rf"present \(the zones\)\s+{t['present']:,}\b", out)
    assert re.search(rf"MemTotal\s+{t['memtotal_kib'] // 4:,}\b", out)
    assert "verified: yes" in out
    assert ("out of MemTotal  yes" in out) is (not t["doom"])


@pytest.mark.parametrize("name", NAMES)
def test_drgn_script(name):
    vmcore, manifest, symbols = sample(name)
    r = run(DRGN + ["-c", vmcore] + symbols + [SCRIPT, "--json"])
    refused(r, symbols)
    if no_module_types(r, manifest):
        return
    assert r.returncode == EXIT_OK, r.stderr
    check_document(json.loads(r.stdout), manifest)


def test_no_verify_still_reports_the_state():
    r, manifest = console("virtio-6.1", "--json", "--no-verify")
    assert r.returncode == EXIT_OK, r.stderr
    (b,) = json.loads(r.stdout)["balloons"]
    assert b["verification_skipped"] and b["size_frames"] == truth(manifest)["held"]


@pytest.mark.parametrize(
    "given, needed", [((), "virtio.ko"), (("virtio.ko",), "virtio_balloon.ko")]
)
def test_module_debug_info_missing_is_one_line(given, needed):
    """vmlinux given, the virtio modules' debug info not: one line naming the
    file needed (exit 5), never "no balloon"."""
    vmcore, manifest, symbols = sample("virtio-6.1")
    if not symbols:
        pytest.skip("needs the -dbg package (DWARF) to leave modules out of")
    vmlinux = symbols[1]
    moddir = os.path.dirname(symbols[3])
    args = ["-s", vmlinux]
    for ko in given:
        args += ["-s", os.path.join(moddir, ko)]
    r = run(CONSOLE + [vmcore] + args)
    assert r.returncode == EXIT_NO_DEBUG_INFO, r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("balloon-report: error: ") and needed in line


def _damaged(name):
    """A virtio sample opened the default way (DWARF where the -dbg package is
    there, else BTF), for damage laid over it as memory segments."""
    from test_virtio_samples import _open

    vmcore, manifest, symbols = sample(name)
    return _open(name, "dwarf" if symbols else "btf")[0]


def test_cyclic_virtio_list_through_the_drgn_script_entry():
    import contextlib
    import io

    from drgn_balloon.cli import script_main
    from drgn_balloon.drivers import find_virtio_balloons
    from drgn_balloon.errors import EXIT_FINDINGS

    prog = _damaged("virtio-7.x")
    (vb,) = find_virtio_balloons(prog)
    nodes, cur = [], prog.read_u64(vb.list_head)
    for _ in range(101):
        nodes.append(cur)
        cur = prog.read_u64(cur)
    data = nodes[50].to_bytes(8, "little")  # node 100 links back to node 50
    prog.add_memory_segment(nodes[100], 8, lambda a, c, o, p: data[o : o + c])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = script_main(prog, ["--json", "--no-rss"])
    assert code == EXIT_FINDINGS and err.getvalue() == ""
    doc = json.loads(out.getvalue())
    (b,) = doc["balloons"]
    assert not b["verified"] and not b["lists"][0]["complete"]
    assert b["findings"] and "NOT verified" in doc["verdict"]


def test_virtio_never_initialised_is_told():
    """vdev->priv NULL (virtio_balloon bound but its probe never finished):
    no balloon, the driver listed as there but not initialised."""
    import contextlib
    import io

    import drgn

    from drgn_balloon.cli import script_main
    from drgn_balloon.drivers import find_virtio_balloons

    prog = _damaged("virtio-6.1")
    (vb,) = find_virtio_balloons(prog)
    vdev = drgn.Object(prog, "struct virtio_device", address=vb.vdev_address)
    zero = bytes(8)
    prog.add_memory_segment(vdev.priv.address_, 8, lambda a, c, o, p: zero[o : o + c])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = script_main(prog, ["--json", "--no-rss"])
    assert code == EXIT_OK
    doc = json.loads(out.getvalue())
    assert doc["balloons"] == []
    virtio = [d for d in doc["drivers"] if d["driver"] == "virtio_balloon"][0]
    assert virtio["present"] and not virtio["initialised"]
    assert "never initialised" in virtio["note"]
    assert doc["verdict"].startswith("No balloon holds memory")
