"""
BTF mode on the real sample dumps: where a sample has both DWARF and BTF,
the two reports must agree key by key (every JSON key but ``debuginfo``);
samples of kernels without BTF must be refused in one line; stock-kernel
samples (no debug files at all) are read through BTF by testsamplelib.py and
held to the same ground truth as the others. Also: System.map checks.

--vmcore-dir DIR (conftest.py) runs these on another directory of samples,
--vmcore NAME on one sample.
"""

import json
import lzma
import os
import shutil

import pytest
import samplelib

from drgn_balloon.btf_debuginfo import btf_supported, debuginfo_source
from drgn_balloon.errors import EXIT_NO_DEBUG_INFO, BalloonError, MissingDebugInfo
from drgn_balloon.kallsyms import SystemMapMismatch, system_map_symbols
from drgn_balloon.render import report_document
from drgn_balloon.report import balloon_report

SAMPLES = samplelib.selected_names()
NO_BTF_MODE = btf_supported()

needs_btf_mode = pytest.mark.skipif(NO_BTF_MODE is not None, reason=str(NO_BTF_MODE))


def _open_btf(name):
    # (program, None) or (None, the error) for a sample read through BTF.
    try:
        return samplelib.open_sample(name, btf=True), None
    except MissingDebugInfo as e:
        return None, e


_cache = {}


def btf_program(name):
    if name not in _cache:
        _cache[name] = _open_btf(name)
    return _cache[name]


def report_dict(prog):
    try:
        report = balloon_report(prog)
    except BalloonError as e:
        return {"error": {"kind": e.kind, "exit_code": e.exit_code}}
    d = json.loads(json.dumps(report_document(report)))
    d.pop("debuginfo", None)
    return d


def samples_with(debug: bool):
    return [
        n for n in SAMPLES if bool(samplelib.manifest(n).get("debug_files")) == debug
    ]


@needs_btf_mode
@pytest.mark.parametrize("name", samples_with(debug=True))
def test_btf_report_equals_dwarf_report(name):
    prog, error = btf_program(name)
    if error is not None:
        # The sample kernels built from tinyconfig have no BTF: refused in
        # one line, exit code 5, naming what is missing.
        assert error.exit_code == EXIT_NO_DEBUG_INFO
        assert "\n" not in error.message
        if "a newer drgn may" in error.message:
            # drgn 0.0.31 cannot decode the kallsyms of Linux 7.x (it needs
            # kallsyms_relative_base, gone from 7.x's VMCOREINFO).
            pytest.skip(error.message)
        # (5.10 says first that it needs a System.map for its symbols.)
        assert "no BTF" in error.message or "System.map" in error.message
        return
    assert debuginfo_source(prog).source in ("btf", "btf+layout")
    dwarf = samplelib.open_sample(name)
    ours, theirs = report_dict(prog), report_dict(dwarf)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == theirs[key], key


@needs_btf_mode
@pytest.mark.parametrize("name", samples_with(debug=False))
def test_stock_sample_read_with_no_debug_files(name):
    prog, error = btf_program(name)
    if error is not None and "a newer drgn may" in error.message:
        # drgn 0.0.31 cannot decode the kallsyms of Linux 7.x (it needs
        # kallsyms_relative_base, gone from 7.x's VMCOREINFO).
        assert "\n" not in error.message
        pytest.skip(error.message)
    assert error is None, error
    source = debuginfo_source(prog)
    assert source.source in ("btf", "btf+layout")
    m = samplelib.manifest(name)
    kallsyms = (m.get("stock") or {}).get("vmcoreinfo_kallsyms")
    if kallsyms:
        assert source.files[0] == "kallsyms (VMCOREINFO)"
    assert any(o.startswith("vmlinux BTF") for o in source.files)


@pytest.mark.skipif(NO_BTF_MODE is None, reason="this drgn has BTF mode")
def test_old_drgn_says_which_it_needs():
    for name in SAMPLES:
        prog, error = btf_program(name)
        assert prog is None
        assert error.exit_code == EXIT_NO_DEBUG_INFO
        assert "use drgn 0.0.30 or newer" in error.message
        return
    pytest.fail("no sample to try")


def balloon_with_module_btf():
    # The VMware samples read through BTF with the balloon module's own BTF
    # (the kernels built with CONFIG_DEBUG_INFO_BTF_MODULES).
    out = []
    for name in SAMPLES:
        m = samplelib.manifest(name)
        if not (m.get("vmware") and m.get("balloon_module_loaded", True)):
            continue
        prog, error = btf_program(name)
        if error is None and "vmw_balloon BTF" in " ".join(
            debuginfo_source(prog).files
        ):
            out.append(name)
    if not out:
        pytest.skip("no sample read through BTF has the balloon module's BTF")
    return out


def _laid_out(name):
    import drgn

    from drgn_balloon.btf_debuginfo import load_btf_debug_info
    from drgn_balloon.program import set_core_dump_path

    laid = drgn.Program()
    laid.set_core_dump(samplelib.vmcore(name))
    set_core_dump_path(laid, samplelib.vmcore(name))
    assert load_btf_debug_info(laid, module_btf=False).source == "btf+layout"
    return laid


@needs_btf_mode
def test_layout_report_equals_btf_report():
    # struct vmballoon laid out from its era's member list with vmlinux BTF's
    # sizes (the path of kernels without module BTF) reads the same as the
    # module's own BTF.
    for name in balloon_with_module_btf():
        prog, _ = btf_program(name)
        ours, theirs = report_dict(_laid_out(name)), report_dict(prog)
        assert "error" not in ours, (name, ours)
        for key in theirs:
            assert ours[key] == theirs[key], (name, key)


@needs_btf_mode
def test_layout_that_does_not_fit_is_refused(monkeypatch):
    # Every member list with one unsigned long more before b_dev_info (as if
    # the driver had a member we do not know): the checks refuse each.
    from drgn_balloon import btf_layout

    def extra(members):
        i = [m[0] for m in members].index("b_dev_info")
        return members[:i] + (("unknown", "unsigned long"),) + members[i:]

    shifted = tuple(
        (era, source, extra(members)) for era, source, members in btf_layout.ERA_MEMBERS
    )
    monkeypatch.setattr(btf_layout, "ERA_MEMBERS", shifted)
    for name in balloon_with_module_btf():
        with pytest.raises(MissingDebugInfo, match="no known member list") as e:
            balloon_report(_laid_out(name))
        assert "\n" not in e.value.message


# -- System.map ---------------------------------------------------------------

MAP = "\n".join(
    ["0000000000000000 A fixed_percpu_data", "000000000001e3c0 D vm_event_states"]
    + [f"ffffffff81{i:06x} T func{i}" for i in range(200)]
    + [
        "ffffffff82000000 D init_uts_ns",
        "ffffffff82100000 B swapper_pg_dir",
        "ffffffff82200000 B mem_section",
    ]
)
INFO = (
    b"OSRELEASE=5.10.0-30-amd64\n"
    b"SYMBOL(init_uts_ns)=ffffffff8a000000\n"
    b"SYMBOL(swapper_pg_dir)=ffffffff8a100000\n"
    # A pointer's value, not mem_section's address (SPARSEMEM_EXTREME).
    b"SYMBOL(mem_section)=ffff9e7e5fd8a000\n"
    b"KERNELOFFSET=8000000\n"
)


def test_system_map_relocated_by_kerneloffset(tmp_path):
    path = tmp_path / "System.map-5.10.0-30-amd64"
    path.write_text(MAP)
    symbols = {n: a for n, a, _ in system_map_symbols(str(path), INFO)}
    assert symbols["init_uts_ns"] == 0xFFFFFFFF8A000000
    assert symbols["func1"] == 0xFFFFFFFF89000001
    assert symbols["vm_event_states"] == 0x1E3C0  # per-CPU: not moved


def test_system_map_of_another_build_refused(tmp_path):
    path = tmp_path / "System.map"
    path.write_text(MAP.replace("ffffffff82100000 B", "ffffffff82100040 B"))
    with pytest.raises(SystemMapMismatch, match="another kernel build") as e:
        system_map_symbols(str(path), INFO)
    assert e.value.exit_code == EXIT_NO_DEBUG_INFO
    assert "System.map-5.10.0-30-amd64" in e.value.message


def test_debian_placeholder_system_map_refused(tmp_path):
    # What Debian's linux-image packages ship in /boot.
    path = tmp_path / "System.map-5.10.0-30-amd64"
    path.write_text(
        "ffffffffffffffff B The real System.map is in the "
        "linux-image-<version>-dbg package\n"
    )
    with pytest.raises(SystemMapMismatch, match="not a System.map"):
        system_map_symbols(str(path), INFO)


def test_system_map_that_cannot_be_checked_refused(tmp_path):
    path = tmp_path / "System.map"
    path.write_text(MAP)
    with pytest.raises(SystemMapMismatch, match="cannot check"):
        system_map_symbols(str(path), b"OSRELEASE=5.10.0\n")


def _console(*args):
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(
        [sys.executable, "-m", "drgn_balloon.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=repo),
        timeout=600,
    )


@needs_btf_mode
@pytest.mark.parametrize("name", samples_with(debug=False))
def test_console_script_with_no_debug_files(name):
    # As a user runs it on a stock kernel's dump with nothing beside it.
    prog, error = btf_program(name)
    if error is not None:
        pytest.skip(error.message)
    m = samplelib.manifest(name)
    proc = _console(samplelib.vmcore(name), "--json")
    if m.get("driver") == "virtio_balloon":
        # A KVM guest is told what it has (issue 10): its virtio balloon,
        # against the guest's vmstat; Debian 5.10 has no module BTF, and the
        # report says which file it needs.
        if proc.returncode == EXIT_NO_DEBUG_INFO:
            assert m["kernel_release"].startswith("5.10.")
            assert "struct virtio_balloon" in proc.stderr
            return
        assert proc.returncode == 0, proc.stderr
        (b,) = json.loads(proc.stdout)["balloons"]
        vmstat = m["ground_truth"]["vmstat"]["parsed"]
        held = vmstat["balloon_inflate"] - vmstat["balloon_deflate"]
        assert b["driver"] == "virtio_balloon" and b["size_frames"] == held
        return
    if not m.get("vmware"):
        assert proc.returncode in (3, 4), proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    doc = json.loads(proc.stdout)
    current = None
    for line in m["ground_truth"]["vmmemctl"]["raw"].splitlines():
        if line.startswith("current"):
            current = int(line.split(":")[1])
    assert doc["balloon"]["size_frames"] == current


def test_btf_forced_on_a_kernel_without_btf():
    # The sample kernels built from tinyconfig have no BTF: --btf says so.
    for name in samples_with(debug=True):
        _, error = btf_program(name)
        if error is not None and "no BTF" in error.message:
            break
    else:
        pytest.skip("no sample of a kernel without BTF")
    proc = _console(samplelib.vmcore(name), "--btf")
    assert proc.returncode == EXIT_NO_DEBUG_INFO
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("balloon-report: error: ")
    assert "no BTF" in line


@needs_btf_mode
@pytest.mark.parametrize("name", samples_with(debug=False))
def test_kallsyms_found_in_the_image_agree_with_vmcoreinfo(name):
    # Where VMCOREINFO says where kallsyms is (v6.0+), the tables found by
    # searching the image (the way for older kernels) must be the same.
    import re

    import drgn
    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    from drgn_balloon.kallsyms import _kallsyms_in_image, vmcoreinfo

    prog = drgn.Program()
    prog.set_core_dump(samplelib.vmcore(name))
    info = vmcoreinfo(prog)
    if b"SYMBOL(kallsyms_num_syms)=" not in info:
        pytest.skip(f"{name}: VMCOREINFO has no kallsyms to compare with")
    if b"SYMBOL(kallsyms_relative_base)=" not in info:
        pytest.skip(f"{name}: no kallsyms_relative_base (7.x): the search is for < 6.0")
    stripped = re.sub(rb"^SYMBOL\(kallsyms_\w+\)=.*\n", b"", info, flags=re.M)
    found = _kallsyms_in_image(prog, stripped)
    assert found is not None
    reference = load_vmlinux_kallsyms(prog)
    names = ["init_uts_ns", "__start_BTF", "btf_modules", "modules", "vm_node_stat"]
    names += ["jiffies", "_stext", "init_task", "dmi_ident", "x86_hyper_type"]
    for symbol in names:
        ours = [(s.name, s.address) for s in found(prog, symbol, None, False)]
        theirs = [(s.name, s.address) for s in reference(prog, symbol, None, False)]
        assert ours == theirs and ours, symbol


@needs_btf_mode
@pytest.mark.parametrize("name", samples_with(debug=False)[:1])
def test_no_kallsyms_anywhere_is_one_line(name, monkeypatch):
    import re

    import drgn

    from drgn_balloon import kallsyms
    from drgn_balloon.btf_debuginfo import load_btf_debug_info
    from drgn_balloon.kallsyms import KallsymsMissing

    prog = drgn.Program()
    prog.set_core_dump(samplelib.vmcore(name))
    info = kallsyms.vmcoreinfo(prog)
    stripped = re.sub(rb"^SYMBOL\(kallsyms_\w+\)=.*\n", b"", info, flags=re.M)
    monkeypatch.setattr(kallsyms, "vmcoreinfo", lambda prog: stripped)
    monkeypatch.setattr(kallsyms, "_kallsyms_in_image", lambda prog, info: None)
    monkeypatch.setattr(kallsyms, "find_system_map", lambda *args: [])
    with pytest.raises(KallsymsMissing, match="System.map") as e:
        load_btf_debug_info(prog)
    assert e.value.exit_code == EXIT_NO_DEBUG_INFO
    assert "\n" not in e.value.message


@needs_btf_mode
def test_the_samples_system_map(tmp_path):
    # A 5.x sample's System.map (from the guest, checked against VMCOREINFO
    # by the sample script) given with -s: used, and the same report as with
    # the kallsyms found in the image.
    import drgn

    from drgn_balloon.btf_debuginfo import load_btf_debug_info
    from drgn_balloon.program import set_core_dump_path

    compared = 0
    for name in samples_with(debug=False):
        stock = samplelib.manifest(name).get("stock") or {}
        if not stock.get("system_map"):
            continue
        # Decompressed apart from the vmcore (where BTF mode would find it).
        packed = os.path.join(samplelib.SAMPLES, name, stock["system_map"]["file"])
        path = str(
            tmp_path / f"System.map-{samplelib.manifest(name)['kernel_release']}"
        )
        with lzma.open(packed) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        prog = drgn.Program()
        prog.set_core_dump(samplelib.vmcore(name))
        set_core_dump_path(prog, samplelib.vmcore(name))
        source = load_btf_debug_info(prog, [path])
        assert source.files[0] == path
        image, _ = btf_program(name)
        assert debuginfo_source(image).files[0].startswith("kallsyms")
        assert report_dict(prog) == report_dict(image)
        compared += 1
    if not compared:
        pytest.skip("no sample with a System.map")


@needs_btf_mode
def test_sample_report_of_a_stock_sample_needs_no_debug_files():
    # README's first command on a stock kernel's sample: a drgn command with
    # no -s at all, no drgn warning, the report through BTF matching debugfs.
    import subprocess
    import sys

    names = [
        n
        for n in samples_with(debug=False)
        if samplelib.manifest(n).get("vmware") and btf_program(n)[1] is None
    ]
    if not names:
        pytest.skip("no stock VMware sample this drgn reads through BTF")
    name = names[0]
    script = os.path.join(samplelib.REPO, "scripts", "sample_report.py")
    r = subprocess.run(
        [sys.executable, script, name, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=samplelib.REPO,
    )
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.splitlines()  # the command, and no drgn warning
    assert line.startswith("$ drgn --no-default-symbols -c ") and " -s " not in line
    doc = json.loads(r.stdout)
    assert doc["debuginfo"]["source"] in ("btf", "btf+layout")
    raw = samplelib.manifest(name)["ground_truth"]["vmmemctl"]["raw"]
    current = [ln for ln in raw.splitlines() if ln.startswith("current")][0]
    assert doc["balloon"]["size_frames"] == int(current.split(":")[1])
