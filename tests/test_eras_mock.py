"""
Every era of struct vmballoon, on mock kernels built from
shared/docs/kernel-layouts.md (each layout names its section in
mockkernel.LAYOUTS). These eras (2.6.34 to 4.19, and the 4.20-5.2 rewrite)
cannot be built here; 5.10, 6.1, 6.12 and 7.2 are also tested on real dumps
(testsamplelib.py).
"""

import pytest
from mockkernel import LAYOUTS, OFFLINE_MARKING, MockKernel

from drgn_balloon.balloon import balloon_state, decode_capabilities
from drgn_balloon.errors import NotVMware
from drgn_balloon.verify import verify_balloon

ERAS = sorted(LAYOUTS)

# kernel-layouts.md §0: where each era keeps its lists.
LIST_PATHS = {
    "A0": ("pages", None),
    "A1": ("pages", None),
    "B1": ("pages", None),
    "B2": ("page_sizes[0].pages", "page_sizes[1].pages"),
    "C1": ("page_sizes[0].pages", "page_sizes[1].pages"),
    "C2": ("b_dev_info.pages", "huge_pages"),
    "D1": ("b_dev_info.pages", "huge_pages"),
    "D2": ("b_dev_info.pages", "huge_pages"),
}


@pytest.mark.parametrize("era", ERAS)
def test_era_detected_from_members(era):
    k = MockKernel(era)
    state = balloon_state(k.prog)
    assert state.era.name == era
    assert (state.era.list_4k, state.era.list_2m) == LIST_PATHS[era]


@pytest.mark.parametrize("era", ERAS)
def test_driver_name_follows_source_file(era):
    # §2: vmware_balloon.c (2.6.34, RHEL 6) was renamed vmw_balloon.c.
    state = balloon_state(MockKernel(era).prog)
    assert state.driver == ("vmware_balloon" if era == "A0" else "vmw_balloon")


@pytest.mark.parametrize("era", ERAS)
def test_sizes_and_pages_count_in_frames(era):
    # §0: size and target are 4 KiB frames; a 2 MiB page counts 512;
    # isolated pages (v5.3+) are off the list but in size.
    k = MockKernel(era, pages_4k=257, pages_2m=4, isolated=3, target=9999)
    state = balloon_state(k.prog)
    v = verify_balloon(k.prog, state)
    assert state.size_frames == len(k.pfns_4k) + 512 * len(k.pfns_2m) + k.isolated
    assert state.target_frames == 9999
    assert v.pages("4k") == 257
    assert v.pages("2m") == len(k.pfns_2m)
    assert v.pages("2m") == (4 if LIST_PATHS[era][1] else 0)
    assert v.isolated_pages == (3 if era in ("C2", "D1", "D2") else 0)
    assert v.verified, v.findings


@pytest.mark.parametrize("era", ERAS)
def test_offline_checked_where_kernel_marks(era):
    # §1.C2: vmw_balloon marks pages PG_offline since v5.0, exported to
    # VMCOREINFO in the same series; before that nothing is checked.
    k = MockKernel(era)
    v = verify_balloon(k.prog, balloon_state(k.prog))
    marks = OFFLINE_MARKING[era] is not None
    assert all(w.offline_checked == marks for w in v.lists)
    assert all(w.not_offline == 0 for w in v.lists)


@pytest.mark.parametrize("era", ["C2", "D1", "D2"])
def test_private_points_to_dev_info(era):
    # §1.C2: balloon_page_insert() sets page->private = &b_dev_info.
    k = MockKernel(era, pages_4k=50)
    v = verify_balloon(k.prog, balloon_state(k.prog))
    assert v.lists[0].private_matches == 50


@pytest.mark.parametrize("era", ERAS)
def test_fast_and_object_walks_agree(era):
    k = MockKernel(era, pages_4k=120, pages_2m=2)
    state = balloon_state(k.prog)
    assert verify_balloon(k.prog, state, fast=True) == verify_balloon(
        k.prog, state, fast=False
    )


@pytest.mark.parametrize("era", ["C1", "C2", "D1", "D2"])
def test_stats_pointer_null_until_debugfs_read(era):
    # §1.C2: b->stats is NULL until debugfs vmmemctl is first read.
    assert balloon_state(MockKernel(era).prog).stats is None
    stats = balloon_state(MockKernel(era, with_stats=True).prog).stats
    # vmballoon_cmd_names[] has no entry 5; ops[] of the mock hold 1000 + i.
    assert stats["start"] == 1000 + 15 and stats["start_failed"] == 1000 + 16
    assert "timer" in stats and "alloc(4k)" in stats and "free(2M)" in stats


@pytest.mark.parametrize("era", ["A0", "A1", "B1", "B2"])
def test_embedded_stats(era):
    # §1.A0/§1.B2: stats are embedded (CONFIG_DEBUG_FS), always readable.
    stats = balloon_state(MockKernel(era).prog).stats
    assert stats is not None and "timer" in stats


@pytest.mark.parametrize("era", ERAS)
def test_never_initialised_is_not_vmware(era):
    # §5 "Activation": a driver that never initialised leaves balloon zeroed.
    k = MockKernel(era, initialised=False)
    with pytest.raises(NotVMware):
        balloon_state(k.prog)


def test_capabilities_decoded_by_name():
    # enum vmwballoon_capabilities (drivers/misc/vmw_balloon.c).
    k = MockKernel("D1")
    assert decode_capabilities(k.prog, 0x3E) == (
        "BASIC_CMDS",
        "BATCHED_CMDS",
        "BATCHED_2M_CMDS",
        "SIGNALLED_WAKEUP_CMD",
        "64_BIT_TARGET",
    )
    # Unknown bits together, in hex, as drgn's decode_enum_type_flags() does.
    assert decode_capabilities(k.prog, 0x43) == ("BASIC_CMDS", "0x41")
