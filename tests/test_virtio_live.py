"""
Live: the readers inside a running stock Debian 6.1 guest (virtio-balloon-pci,
inflated by QEMU over QMP), through BTF and kallsyms, against what the same
guest prints (/proc/vmstat, /proc/meminfo, /proc/zoneinfo, sysfs) and QEMU's
query-balloon. Slow (a TCG boot of a 1.5 GiB guest with the host's Python).
"""

import os

import pytest
import virtio_live

pytestmark = pytest.mark.live  # boots a guest in QEMU


@pytest.fixture(scope="module")
def live():
    why = virtio_live.missing()
    if why:
        pytest.skip(why)
    cache = os.environ.get("DRGN_BALLOON_CACHE", "/var/tmp/drgn-balloon-build")
    return virtio_live.run(os.path.join(cache, "virtio-live"))


def test_live_virtio_balloon(live):
    report = live["report"]
    assert report is not None, live["report_raw"]
    (b,) = report["balloons"]
    vmstat = live["vmstat"]
    held = vmstat["balloon_inflate"] - vmstat["balloon_deflate"]
    assert held == live["pages"]
    assert b["num_pages"] == held and b["walked"] == held
    assert b["complete"] and b["not_offline"] == 0 and not b["findings"]
    assert b["adjusts_managed"] is True
    name, device, features = live["virtio"].split()
    assert b["device"] == name and device == "0x0005"
    assert [i for i in range(64) if b["features"] >> i & 1] == [
        i for i, c in enumerate(features[:64]) if c == "1"
    ]
    ram = virtio_live.MEMORY_MIB << 20
    assert ram - live["query_balloon_actual"] == held * 4096
    assert report["managed"] * 4 == live["meminfo"]["MemTotal"]
    assert report["present"] == sum(z["present"] for z in live["zoneinfo"])


def test_live_console_script(live):
    """balloon-report --json as root in the same guest, on /proc/kcore through
    the kernel's BTF and kallsyms, against the guest's own figures."""
    console = live["console"]
    assert console["exit"] == 0, live["console_err"]
    doc = console["doc"]
    assert doc["kernel"]["live"] and doc["debuginfo"]["source"].startswith("btf")
    (b,) = doc["balloons"]
    vmstat = live["vmstat"]
    held = vmstat["balloon_inflate"] - vmstat["balloon_deflate"]
    assert b["driver"] == "virtio_balloon" and b["size_frames"] == held
    assert b["verified"] and b["adjusts_managed"] is True
    assert doc["memory"]["total_pages"] * 4 == live["meminfo"]["MemTotal"]
    assert doc["memory"]["present_pages"] == sum(z["present"] for z in live["zoneinfo"])
    assert "less memory than the VM has" in doc["verdict"]
