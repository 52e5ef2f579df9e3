"""
Hyper-V dynamic memory (drivers/hv/hv_balloon.c)
------------------------------------------------

State in ``static struct hv_dynmem_device dm_device``: ``num_pages_ballooned``,
``num_pages_onlined``, ``num_pages_added`` (in 4 KiB Hyper-V pages on x86),
``state`` and the hot-added regions on ``ha_region_list`` (``struct
hv_hotadd_state``, each with a ``gap_list``). The driver keeps **no list** of
its ballooned pages (it sends their PFNs to the host and forgets them), so the
page-by-page check is a census of the pages marked offline in the memory map.
Facts and sources: docs/balloon-drivers.md, "hv_balloon".
"""

import array
import sys
from typing import List, Literal, NamedTuple, Optional, Tuple

from drgn import FaultError, Object, Program, offsetof

from ..pages import PageGeometry, page_geometry
from ..walk import Finding
from .common import READ_ERRORS, int_value, kernel_global, plausible

__all__ = [
    "HvBalloon",
    "HvRegion",
    "OfflineCensus",
    "offline_census",
    "read_hv_balloon",
    "verify_hv_balloon",
]

_FILE = "hv_balloon.c"

#: enum hv_dm_state (v5.10 to v7.2 alike), used when the enum is not in the
#: debug info.
DM_STATES = {
    0: "DM_INITIALIZING",
    1: "DM_INITIALIZED",
    2: "DM_BALLOON_UP",
    3: "DM_BALLOON_DOWN",
    4: "DM_HOT_ADD",
    5: "DM_INIT_ERROR",
}

#: Regions and gaps read at most: a longer list is corrupt.
MAX_REGIONS = 4096


class HvRegion(NamedTuple):
    """One ``struct hv_hotadd_state``: a region the host asked to hot add."""

    start_pfn: int
    covered_start_pfn: int
    covered_end_pfn: int
    ha_end_pfn: int
    end_pfn: int
    #: ``gap_list`` entries as (start_pfn, end_pfn).
    gaps: Tuple[Tuple[int, int], ...]


class HvBalloon(NamedTuple):
    """hv_balloon's state, as plain values."""

    address: int
    #: ``dm_device.dev`` (the VMBus device); 0 if balloon_probe() never ran.
    dev: int
    state: int
    state_name: str
    num_pages_ballooned: int
    num_pages_onlined: int
    num_pages_added: int
    #: ``max_dynamic_page_count`` (v6.1+ here; None when absent).
    max_dynamic_page_count: Optional[int]
    host_specified_ha_region: bool
    version: int
    regions: Tuple[HvRegion, ...]
    #: Whether ballooned pages leave MemTotal: ``alloc_balloon_pages()`` calls
    #: ``adjust_managed_page_count(pg, -1)`` in v6.1 and later, not in v5.10.
    #: Code, not data: ``None`` here; the caller may know the kernel's era.
    adjusts_managed: Optional[bool]
    initialised: bool
    problems: Tuple[str, ...]


def _obj(prog: Program, name: str) -> Object:
    return kernel_global(prog, name, "struct hv_dynmem_device", _FILE)


def _state_name(state: Object, value: int) -> str:
    try:
        for e in state.type_.enumerators or ():
            if e.value == value:
                return str(e.name)
    except READ_ERRORS:
        pass
    return DM_STATES.get(value, f"state {value}")


def _bounded_list(
    head: Object, type_name: str, member: str
) -> Tuple[List[Object], bool]:
    """
    Entries of a ``list_head`` list, following raw ``next`` pointers, at most
    :data:`MAX_REGIONS`; returns (entries, complete).
    """
    prog = head.prog_
    typ = prog.type(type_name)
    offset = offsetof(typ, member)
    start = int(head.address_)
    out: List[Object] = []
    seen = set()
    node = prog.read_u64(start)
    while node != start:
        if node == 0 or node in seen or len(out) >= MAX_REGIONS:
            return out, False
        seen.add(node)
        out.append(Object(prog, typ, address=node - offset))
        node = prog.read_u64(node)
    return out, True


def read_hv_balloon(prog: Program) -> HvBalloon:
    """
    Read ``dm_device`` and its hot-added regions.

    :raises LookupError: if hv_balloon is not loaded.
    """
    dm = _obj(prog, "dm_device")
    problems: List[str] = []
    dev = int(dm.dev.value_())
    state = int(dm.state.value_())
    try:
        maxdyn: Optional[int] = int_value(dm.max_dynamic_page_count)
    except AttributeError:
        maxdyn = None
    regions: List[HvRegion] = []
    head = dm.ha_region_list
    if prog.read_u64(head.address_) == 0:
        problems.append("dm_device.ha_region_list is NULL: balloon_probe() never ran")
    else:
        try:
            entries, complete = _bounded_list(head, "struct hv_hotadd_state", "list")
            for has in entries:
                gaps, gaps_ok = _bounded_list(
                    has.gap_list, "struct hv_hotadd_gap", "list"
                )
                regions.append(
                    HvRegion(
                        int(has.start_pfn.value_()),
                        int(has.covered_start_pfn.value_()),
                        int(has.covered_end_pfn.value_()),
                        int(has.ha_end_pfn.value_()),
                        int(has.end_pfn.value_()),
                        tuple(
                            (int(g.start_pfn.value_()), int(g.end_pfn.value_()))
                            for g in gaps
                        ),
                    )
                )
                if not gaps_ok:
                    problems.append("a hot-add region's gap_list is corrupt")
            if not complete:
                problems.append(
                    "dm_device.ha_region_list is corrupt (cycle, NULL or too long)"
                )
        except READ_ERRORS as e:
            problems.append(f"dm_device.ha_region_list unreadable: {e}")
    if dev == 0:
        problems.append(
            "dm_device.dev is NULL: balloon_probe() never ran (not on Hyper-V?)"
        )
    return HvBalloon(
        address=int(dm.address_),
        dev=dev,
        state=state,
        state_name=_state_name(dm.state, state),
        num_pages_ballooned=int_value(dm.num_pages_ballooned),
        num_pages_onlined=int_value(dm.num_pages_onlined),
        num_pages_added=int_value(dm.num_pages_added),
        max_dynamic_page_count=maxdyn,
        host_specified_ha_region=bool(dm.host_specified_ha_region.value_()),
        version=int(dm.version.value_()),
        regions=tuple(regions),
        adjusts_managed=None,
        initialised=dev != 0,
        problems=tuple(problems),
    )


class OfflineCensus(NamedTuple):
    """Pages marked offline in the memory map."""

    #: Whether the kernel marks offline pages at all (and the scan ran).
    checked: bool
    offline_pages: int
    #: Struct pages that could not be read (not in the dump).
    unreadable_pages: int
    scanned_pages: int


#: Pages a census reads at most by default (a 256 GiB guest of 4 KiB pages);
#: beyond it the census is not taken (``checked`` False) unless asked.
CENSUS_LIMIT = 1 << 26


def offline_census(
    prog: Program,
    geometry: PageGeometry,
    block_pages: int = 16384,
    limit: Optional[int] = CENSUS_LIMIT,
) -> OfflineCensus:
    """
    Count the pages marked offline among PFNs ``[0, max_pfn)``, reading the
    memory map in blocks (one ``page_type`` word per ``struct page``).

    :param limit: do nothing (``checked`` False) for a memory map of more
        than this many pages; ``None``: no limit.
    """
    g = geometry
    rule = g.offline
    if rule is None or g.page_type is None:
        return OfflineCensus(False, 0, 0, 0)
    if limit is not None and g.max_pfn > limit:
        return OfflineCensus(False, 0, 0, 0)
    little = bool(
        prog.platform and prog.platform.flags & prog.platform.flags.IS_LITTLE_ENDIAN
    )
    swap = little != (sys.byteorder == "little")
    aligned = (
        g.page_size % 4 == 0 and g.page_type % 4 == 0 and array.array("I").itemsize == 4
    )
    offline = unreadable = 0
    stride = g.page_size
    for first in range(0, g.max_pfn, block_pages):
        count = min(block_pages, g.max_pfn - first)
        try:
            data = prog.read(g.vmemmap + first * stride, count * stride)
        except FaultError:
            for pfn in range(first, first + count):
                try:
                    word = prog.read_u32(g.vmemmap + pfn * stride + g.page_type)
                except FaultError:
                    unreadable += 1
                    continue
                offline += rule.is_offline(word)
            continue
        if aligned:
            words = array.array("I")
            words.frombytes(data)
            if swap:
                words.byteswap()
            values = words[g.page_type // 4 :: stride // 4]
        else:
            order: "Literal['little', 'big']" = "little" if little else "big"
            values = array.array(
                "I",
                (
                    int.from_bytes(data[off : off + 4], order)
                    for off in range(g.page_type, count * stride, stride)
                ),
            )
        offline += sum(1 for v in values if rule.is_offline(v))
    return OfflineCensus(True, offline, unreadable, g.max_pfn)


def verify_hv_balloon(
    prog: Program, hb: HvBalloon, geometry: Optional[PageGeometry] = None
) -> Tuple[OfflineCensus, Tuple[Finding, ...]]:
    """
    Check ``num_pages_ballooned`` against the memory map.

    ``alloc_balloon_pages()`` marks every ballooned page offline (v5.0+,
    ``__SetPageOffline``), and hv_balloon also keeps offline the pages of
    hot-added memory the host has not backed (``hv_page_online_one()``), so
    the offline pages must be at least ``num_pages_ballooned`` (other drivers,
    virtio-mem for one, mark pages offline too, so more is no finding).
    """
    # Only the kernel's own word on offline marks (PGTY_offline, VMCOREINFO):
    # nothing in dm_device tells a v5.0+ driver (which marks) from an older one.
    g = geometry if geometry is not None else page_geometry(prog, compaction_era=False)
    findings: List[Finding] = []
    for what, value in (
        ("dm_device.num_pages_ballooned", hb.num_pages_ballooned),
        ("dm_device.num_pages_added", hb.num_pages_added),
    ):
        findings.extend(plausible(what, value, g.max_pfn))
    if hb.num_pages_onlined > hb.num_pages_added:
        findings.append(
            Finding(
                "implausible",
                "",
                -1,
                hb.address,
                f"dm_device.num_pages_onlined {hb.num_pages_onlined} exceeds "
                f"num_pages_added {hb.num_pages_added}",
            )
        )
    census = offline_census(prog, g)
    if (
        census.checked
        and census.offline_pages + census.unreadable_pages < hb.num_pages_ballooned
    ):
        findings.append(
            Finding(
                "count_mismatch",
                "",
                -1,
                hb.address,
                f"only {census.offline_pages} pages are marked offline, but "
                f"dm_device.num_pages_ballooned is {hb.num_pages_ballooned}",
            )
        )
    return census, tuple(findings)
