"""Reading dump files directly: the VMCOREINFO note and truncation."""

import re

import pytest

from drgn_balloon import _samples
from drgn_balloon.dumpfile import truncation, vmcoreinfo


@pytest.mark.parametrize("name", _samples.sample_names())
def test_vmcoreinfo_from_file(name):
    info = vmcoreinfo(_samples.vmcore(name))
    release = re.search(rb"^OSRELEASE=(.*)$", info, re.M).group(1).decode()
    # What the guest printed with uname -r.
    assert release == _samples.manifest(name)["ground_truth"]["uname_r"].strip()
    prog = _samples.open_sample(name)
    try:
        from_drgn = prog["VMCOREINFO"].string_()
    except KeyError:
        return  # drgn < 0.0.23: the file is the only source
    assert info.rstrip(b"\0") == from_drgn


@pytest.mark.parametrize("name", _samples.sample_names())
def test_whole_samples_are_not_truncated(name):
    assert truncation(_samples.vmcore(name)) is None


def test_truncated_copy_is_named(tmp_path):
    name = _samples.sample_names()[0]
    data = open(_samples.vmcore(name), "rb").read()
    path = tmp_path / "cut"
    path.write_bytes(data[:-1])
    assert "truncated" in truncation(str(path))
