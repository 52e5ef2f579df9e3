"""Reading dump files directly: the VMCOREINFO note and truncation."""

import re

import drgn
import pytest
import samplelib

from drgn_balloon.dumpfile import truncation, vmcoreinfo


@pytest.mark.parametrize("name", samplelib.selected_names())
def test_vmcoreinfo_from_file(name):
    info = vmcoreinfo(samplelib.vmcore(name))
    release = re.search(rb"^OSRELEASE=(.*)$", info, re.M).group(1).decode()
    # What the guest printed with uname -r.
    assert release == samplelib.manifest(name)["ground_truth"]["uname_r"].strip()
    # drgn's VMCOREINFO object needs no debug info.
    prog = drgn.Program()
    prog.set_core_dump(samplelib.vmcore(name))
    try:
        from_drgn = prog["VMCOREINFO"].string_()
    except LookupError:
        pytest.skip("drgn < 0.0.23 has no VMCOREINFO object to compare with")
    # Byte for byte what drgn read from the same dump.
    assert info.rstrip(b"\0") == from_drgn


@pytest.mark.parametrize("name", samplelib.selected_names())
def test_whole_samples_are_not_truncated(name):
    assert truncation(samplelib.vmcore(name)) is None


def test_truncated_copy_is_named(tmp_path):
    name = samplelib.sample_names()[0]
    data = open(samplelib.vmcore(name), "rb").read()
    path = tmp_path / "cut"
    path.write_bytes(data[:-1])
    assert "truncated" in truncation(str(path))
