"""
hv_balloon, Xen balloon and pseries CMM readers on mock programs
(tests/mockdrivers.py, each layout citing the driver's source), good and bad
input. Expected values come from how the mock was built, i.e. from what the
driver's source says it stores, never from the reader's own output.
"""

import pytest
from mockdrivers import CmmMock, HvMock, XenMock, spread

from drgn_balloon.drivers import (
    read_cmm,
    read_hv_balloon,
    read_xen_balloon,
    verify_cmm,
    verify_hv_balloon,
    verify_xen_balloon,
)

# ----------------------------------------------------------------------- Xen


@pytest.mark.parametrize("offline", ["pgty", "mask"])
def test_xen_balloon(offline):
    pfns = spread(300, 4096)
    m = XenMock(low=pfns, offline=offline)
    prog = m.finish()
    xb = read_xen_balloon(prog)
    assert (xb.balloon_low, xb.balloon_high, xb.pages) == (300, 0, 300)
    assert xb.current_pages == 4096 - 300 and xb.total_pages == 4096
    assert xb.target_unpopulated == 0
    assert xb.initialised and xb.adjusts_managed and not xb.problems
    check, findings = verify_xen_balloon(prog, xb)
    assert check is not None and check.verified and not findings
    assert check.walk.pages == 300 and check.walk.complete
    assert check.walk.offline_checked and check.walk.not_offline == 0


def test_xen_never_initialised():
    # Not a Xen domain: balloon_init() returned -ENODEV, balloon_stats is zero
    # and ballooned_pages is the static, empty LIST_HEAD.
    prog = XenMock(initialised=False).finish()
    xb = read_xen_balloon(prog)
    assert not xb.initialised and xb.pages == 0
    assert "balloon_init() never ran" in xb.problems[0]
    check, findings = verify_xen_balloon(prog, xb)
    assert check is not None and check.walk.pages == 0 and check.verified


def test_xen_count_mismatch_and_not_offline():
    m = XenMock(low=spread(50, 4096))
    m.set("balloon_low", 60)
    m.write("I", m.page(m.pfns[7]) + 48, 0xFFFFFFFF)  # page 7 lost its mark
    prog = m.finish()
    xb = read_xen_balloon(prog)
    check, _ = verify_xen_balloon(prog, xb)
    assert check is not None and not check.verified
    kinds = {f.kind for f in check.findings}
    assert "count_mismatch" in kinds
    assert check.walk.not_offline == 1


def test_xen_cycle_is_a_finding():
    m = XenMock(low=spread(40, 4096))
    # page 20's next points back at page 5: a cycle that never reaches the head
    m.write("Q", m.page(m.pfns[20]) + 8, m.page(m.pfns[5]) + 8)
    prog = m.finish()
    check, _ = verify_xen_balloon(prog, read_xen_balloon(prog))
    assert check is not None and not check.walk.complete and not check.verified
    assert check.findings


def test_xen_dangling_pointer_is_a_finding():
    m = XenMock(low=spread(40, 4096))
    m.write("Q", m.page(m.pfns[3]) + 8, 0xDEAD000000000000)
    prog = m.finish()
    check, _ = verify_xen_balloon(prog, read_xen_balloon(prog))
    assert check is not None and not check.verified and check.findings


def test_xen_counts_beyond_memory():
    m = XenMock(low=spread(10, 4096))
    m.set("balloon_high", 1 << 40)
    prog = m.finish()
    _, findings = verify_xen_balloon(prog, read_xen_balloon(prog))
    assert any(f.kind == "implausible" for f in findings)


# -------------------------------------------------------------------- Hyper-V

REGION = (32768, 32768, 40960, 49152, 65536, [(33000, 33100)])


@pytest.mark.parametrize("era", ["5.10", "6.1"])
def test_hv_balloon(era):
    pfns = spread(200, 30000)
    prog = HvMock(era=era, max_pfn=1 << 16, ballooned=pfns, regions=[REGION]).finish()
    hb = read_hv_balloon(prog)
    assert hb.initialised and hb.state_name == "DM_INITIALIZED"
    assert hb.num_pages_ballooned == 200
    assert hb.num_pages_added == 49152 - 32768
    assert hb.num_pages_onlined == 40960 - 32768
    assert hb.max_dynamic_page_count == (None if era == "5.10" else 2 << 16)
    assert len(hb.regions) == 1
    r = hb.regions[0]
    assert (r.start_pfn, r.covered_end_pfn, r.end_pfn) == (32768, 40960, 65536)
    assert r.gaps == ((33000, 33100),)
    # Code, not data (v5.10 no, v6.1+ yes): the reader does not guess.
    assert hb.adjusts_managed is None
    census, findings = verify_hv_balloon(prog, hb)
    assert census.checked and census.offline_pages == 200 and not findings


def test_hv_never_initialised():
    prog = HvMock(initialised=False).finish()
    hb = read_hv_balloon(prog)
    assert not hb.initialised and hb.dev == 0 and hb.regions == ()
    assert any("never ran" in p for p in hb.problems)
    census, findings = verify_hv_balloon(prog, hb)
    assert census.offline_pages == 0 and not findings


def test_hv_pages_not_marked_offline():
    m = HvMock(ballooned=spread(100, 4096))
    for pfn in m.ballooned[:10]:
        m.write("I", m.page(pfn) + 48, 0xFFFFFFFF)
    prog = m.finish()
    census, findings = verify_hv_balloon(prog, read_hv_balloon(prog))
    assert census.offline_pages == 90
    assert [f.kind for f in findings] == ["count_mismatch"]


def test_hv_corrupt_region_list():
    m = HvMock(max_pfn=1 << 16, ballooned=spread(5, 4096), regions=[REGION])
    head = m.dm + m.offset(m.dm_t, "ha_region_list")
    region = m.alloc(m.has_t)  # next region's list points at itself: a cycle
    m.write("QQ", head, region, region)
    m.write("QQ", region, region, head)
    prog = m.finish()
    hb = read_hv_balloon(prog)
    assert any("corrupt" in p for p in hb.problems)


def test_hv_counts_beyond_memory():
    m = HvMock(ballooned=spread(5, 4096))
    m.set("I", "num_pages_ballooned", 0xFFFFFFF0)
    prog = m.finish()
    _, findings = verify_hv_balloon(prog, read_hv_balloon(prog))
    assert any(f.kind == "implausible" for f in findings)


def test_hv_no_offline_marks_no_census():
    prog = HvMock(ballooned=spread(5, 4096), offline=None).finish()
    census, findings = verify_hv_balloon(prog, read_hv_balloon(prog))
    assert not census.checked and not findings


# ------------------------------------------------------------------------ CMM


@pytest.mark.parametrize("migration", [True, False])
def test_cmm_ppc64_big_endian(migration):
    pfns = spread(150, 4096)
    m = CmmMock(loaned=pfns, isolated=2, migration=migration)
    prog = m.finish()
    assert not prog.platform.flags & prog.platform.flags.IS_LITTLE_ENDIAN
    cb = read_cmm(prog)
    assert (cb.loaned_pages, cb.loaned_pages_target, cb.isolated_pages) == (152, 152, 2)
    assert cb.page_size == 65536 and cb.migration == migration
    assert cb.adjusts_managed and not cb.problems
    check, findings = verify_cmm(prog, cb)
    assert check is not None and check.verified and not findings
    assert check.walk.pages == 150 and check.expected_pages == 150
    assert check.walk.private_matches == (150 if migration else 0)
    assert check.walk.not_offline == 0 and check.walk.offline_checked


def test_cmm_never_initialised():
    prog = CmmMock(initialised=False).finish()
    cb = read_cmm(prog)
    assert cb.loaned_pages == 0 and any("never ran" in p for p in cb.problems)
    check, _ = verify_cmm(prog, cb)
    assert check is not None and not check.verified
    assert check.walk.counts.get("uninitialised") == 1


def test_cmm_count_mismatch():
    m = CmmMock(loaned=spread(20, 4096))
    m.write("Q", m.loaned_addr, 25)
    prog = m.finish()
    check, _ = verify_cmm(prog, read_cmm(prog))
    assert check is not None
    assert [f.kind for f in check.findings] == ["count_mismatch"]


def test_cmm_private_corrupt():
    m = CmmMock(loaned=spread(20, 4096))
    m.write("Q", m.page(m.pfns[4]) + 40, 0x1234)
    prog = m.finish()
    check, _ = verify_cmm(prog, read_cmm(prog))
    assert check is not None and not check.verified
    assert check.walk.private_matches == 19


def test_cmm_counts_beyond_memory():
    m = CmmMock(loaned=spread(20, 4096))
    m.write("Q", m.target_addr, 1 << 50)
    prog = m.finish()
    _, findings = verify_cmm(prog, read_cmm(prog))
    assert any(f.kind == "implausible" for f in findings)


def test_probe_on_mocks():
    from drgn_balloon.drivers import probe_balloon_drivers

    probes = {p.driver: p for p in probe_balloon_drivers(XenMock(low=[5, 6]).finish())}
    assert probes["xen_balloon"] == probes["xen_balloon"]._replace(
        present=True, initialised=True, pages=2
    )
    assert not probes["virtio_balloon"].present  # no virtio_bus in the mock
    assert not probes["hv_balloon"].present and not probes["pseries_cmm"].present
    probes = {
        p.driver: p for p in probe_balloon_drivers(HvMock(initialised=False).finish())
    }
    assert probes["hv_balloon"].present and not probes["hv_balloon"].initialised
    probes = {p.driver: p for p in probe_balloon_drivers(CmmMock(loaned=[9]).finish())}
    assert probes["pseries_cmm"][:4] == ("pseries_cmm", True, True, 1)


def test_cmm_7x_balloon_dev_info_says_it_adjusts():
    prog = CmmMock(loaned=spread(30, 4096), era="7.x").finish()
    cb = read_cmm(prog)
    assert (
        cb.adjusts_managed and "adjust_managed_page_count" in cb.adjusts_managed_source
    )
    check, findings = verify_cmm(prog, cb)
    assert check is not None and check.verified and not findings


@pytest.mark.parametrize("era", ["5.10", "6.1", "7.x"])
def test_hv_eras(era):
    prog = HvMock(era=era, ballooned=spread(10, 4096)).finish()
    hb = read_hv_balloon(prog)
    assert hb.num_pages_ballooned == 10 and hb.version == 0x20000
    assert (hb.max_dynamic_page_count is None) == (era == "5.10")


def _damage(m, rng, edits):
    """Overwrite random 8-byte words of the driver's globals, heap and the
    struct pages of its list with random or pointer-like values."""
    targets = [(m.globals, 0, max(m.global_top, 8)), (m.heap, 0, max(m.heap_top, 8))]
    pfns = getattr(m, "pfns", None) or getattr(m, "ballooned", None) or [1]
    for _ in range(edits):
        kind = rng.random()
        if kind < 0.5:
            buf, lo, hi = rng.choice(targets)
            off = rng.randrange(lo, hi) & ~7
        else:
            buf, off = m.memmap, rng.choice(pfns) * 64 + rng.choice((0, 8, 16, 40, 48))
        value = rng.choice(
            (
                0,
                rng.getrandbits(64),
                0xFFFFEA0000000000 + rng.randrange(0, m.max_pfn * 64),
                0xFFFFFFFFC0A00000 + rng.randrange(0, 256),
                0xDEAD000000000000,
            )
        )
        m.pack("Q", buf, off, value)


@pytest.mark.parametrize("seed", range(60))
def test_seeded_damage_never_raises(seed):
    """Whatever the damage, readers and checks answer with values, problems and
    findings (LookupError only for a driver that is not there)."""
    import random

    from drgn_balloon.drivers import probe_balloon_drivers

    rng = random.Random(seed)
    for make in (
        lambda: XenMock(low=spread(40, 4096)),
        lambda: HvMock(max_pfn=1 << 16, ballooned=spread(30, 4096), regions=[REGION]),
        lambda: CmmMock(loaned=spread(40, 4096), isolated=1),
    ):
        m = make()
        _damage(m, rng, rng.randrange(1, 6))
        prog = m.finish()
        probe_balloon_drivers(prog)
        if isinstance(m, XenMock):
            verify_xen_balloon(prog, read_xen_balloon(prog))
        elif isinstance(m, HvMock):
            verify_hv_balloon(prog, read_hv_balloon(prog))
        else:
            verify_cmm(prog, read_cmm(prog))


def test_offline_census_big_endian_and_limit():
    from drgn_balloon.drivers import offline_census
    from drgn_balloon.pages import page_geometry

    m = CmmMock(loaned=spread(77, 4096))  # ppc64 big-endian, mask-era marks
    prog = m.finish()
    g = page_geometry(prog)
    census = offline_census(prog, g)
    assert census.checked and census.offline_pages == 77
    assert census.scanned_pages == 4096 and census.unreadable_pages == 0
    assert not offline_census(prog, g, limit=1000).checked
