"""
The mock drivers' layouts (tests/mockdrivers.py, written from the sources)
against the real DWARF of Debian's stock kernels, where the -dbg files are
unpacked under $DRGN_BALLOON_DBG_ROOT (see tests/test_virtio_samples.py): every
member the readers use must sit at the same offset as in the real kernel.
Without those files the tests skip with that reason (x86_64 only; there is no
ppc64 -dbg here, so CMM's own globals are not checked, only the shared struct
balloon_dev_info).
"""

import glob
import os

import drgn
import pytest
from mockdrivers import (
    BALLOON_DEV_INFO,
    BALLOON_DEV_INFO_7,
    HV_DM_5_10,
    HV_DM_6_1,
    HV_DM_7,
    HV_HOTADD_GAP,
    HV_HOTADD_STATE,
    XEN_BALLOON_STATS,
    MockProgram,
)

DBG = os.path.join(
    os.environ.get(
        "DRGN_BALLOON_DBG_ROOT",
        os.path.join(
            os.environ.get("DRGN_BALLOON_CACHE", "/var/tmp/drgn-balloon-build"), "dbg"
        ),
    ),
    "usr",
    "lib",
    "debug",
)


def _types(release, *alternatives):
    """Types from the first of the alternative debug files that exists."""
    paths = [os.path.join(DBG, rel.format(release=release)) for rel in alternatives]
    files = [p for p in paths if os.path.isfile(p)][:1]
    if not files:
        pytest.skip(f"none of {paths}")
    prog = drgn.Program(drgn.host_platform)
    for path in files:
        prog.extra_module(path, 0, create=True).try_file(path, force=True)
    return prog


def _releases():
    return sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(DBG, "lib", "modules", "*"))
    )


def _compare(real_prog, name, members):
    mock = MockProgram()
    mine = mock.struct(name, members)
    real = real_prog.type("struct " + name)
    real_offsets = {m.name: m.bit_offset // 8 for m in real.members}
    for m in mine.members:
        if isinstance(m.type, drgn.Type) and m.name in real_offsets:
            assert m.bit_offset // 8 == real_offsets[m.name], (name, m.name)
    return {m.name for m in mine.members} - set(real_offsets)


@pytest.mark.parametrize("release", _releases() or ["none"])
def test_hv_layout(release):
    prog = _types(release, "lib/modules/{release}/kernel/drivers/hv/hv_balloon.ko")
    layout = {"5.": HV_DM_5_10, "6.": HV_DM_6_1, "7.": HV_DM_7}[release[:2]]
    assert _compare(prog, "hv_dynmem_device", layout) == set()
    assert _compare(prog, "hv_hotadd_state", HV_HOTADD_STATE) == set()
    assert _compare(prog, "hv_hotadd_gap", HV_HOTADD_GAP) == set()


@pytest.mark.parametrize("release", _releases() or ["none"])
def test_xen_and_balloon_dev_info_layout(release):
    prog = _types(release, "lib/modules/{release}/vmlinux", "boot/vmlinux-{release}")
    assert _compare(prog, "balloon_stats", XEN_BALLOON_STATS) == set()
    seven = release.startswith("7.")
    layout = BALLOON_DEV_INFO_7 if seven else BALLOON_DEV_INFO
    assert _compare(prog, "balloon_dev_info", layout) == set()
