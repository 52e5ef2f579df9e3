"""
Xen balloon (drivers/xen/balloon.c)
-----------------------------------

State in the global ``struct balloon_stats balloon_stats`` (include/xen/balloon.h),
pages on ``static LIST_HEAD(ballooned_pages)`` through ``page->lru``, counted
by ``balloon_low + balloon_high``. Facts and sources: docs/balloon-drivers.md,
"Xen balloon".
"""

from typing import List, NamedTuple, Optional, Tuple

from drgn import Program

from ..pages import PageGeometry, page_geometry
from ..walk import Finding
from .common import (
    READ_ERRORS,
    PageListCheck,
    check_page_list,
    int_value,
    kernel_global,
    plausible,
)

__all__ = ["XenBalloon", "read_xen_balloon", "verify_xen_balloon"]


class XenBalloon(NamedTuple):
    """The Xen balloon's state, as plain values (all counts in pages)."""

    #: Address of ``balloon_stats`` and of the ``ballooned_pages`` list head.
    address: int
    list_head: int
    current_pages: int
    target_pages: int
    #: ``target_unpopulated`` (v5.9+, None before).
    target_unpopulated: Optional[int]
    balloon_low: int
    balloon_high: int
    total_pages: int
    schedule_delay: int
    retry_count: int
    #: ``balloon_low + balloon_high``: pages the balloon holds.
    pages: int
    #: ``decrease_reservation()`` calls ``adjust_managed_page_count(page, -1)``
    #: for every page it balloons (v5.10 to v7.2).
    adjusts_managed: bool
    #: False when ``balloon_init()`` returned early (not a Xen domain): the
    #: counters are still zero.
    initialised: bool
    problems: Tuple[str, ...]


def read_xen_balloon(prog: Program) -> XenBalloon:
    """
    Read ``balloon_stats`` and locate ``ballooned_pages``.

    :raises LookupError: if the kernel has no Xen balloon driver.
    """
    stats = kernel_global(prog, "balloon_stats", "struct balloon_stats")
    head = kernel_global(prog, "ballooned_pages", "struct list_head", "balloon.c")
    try:
        unpop: Optional[int] = int_value(stats.target_unpopulated)
    except AttributeError:
        unpop = None
    low = int_value(stats.balloon_low)
    high = int_value(stats.balloon_high)
    current = int_value(stats.current_pages)
    # balloon_init() fills current_pages (from max_pfn / the domain's
    # reservation) only in a Xen domain; elsewhere it returns -ENODEV first.
    initialised = current != 0
    problems: List[str] = []
    if not initialised:
        problems.append(
            "balloon_stats.current_pages is 0: balloon_init() never ran "
            "(not a Xen domain)"
        )
    return XenBalloon(
        address=int(stats.address_),
        list_head=int(head.address_),
        current_pages=current,
        target_pages=int_value(stats.target_pages),
        target_unpopulated=unpop,
        balloon_low=low,
        balloon_high=high,
        total_pages=int_value(stats.total_pages),
        schedule_delay=int_value(stats.schedule_delay),
        retry_count=int_value(stats.retry_count),
        pages=low + high,
        adjusts_managed=True,
        initialised=initialised,
        problems=tuple(problems),
    )


def verify_xen_balloon(
    prog: Program, xb: XenBalloon, geometry: Optional[PageGeometry] = None
) -> Tuple[Optional[PageListCheck], Tuple[Finding, ...]]:
    """
    Walk ``ballooned_pages`` and compare with ``balloon_low + balloon_high``.

    ``balloon_append()`` marks each page offline (v5.0+, commit 77c4adf6a6df
    "xen/balloon: mark inflated pages PG_offline") and leaves ``private``
    alone.
    """
    g = geometry if geometry is not None else page_geometry(prog, compaction_era=True)
    findings: List[Finding] = []
    for what, value in (
        ("balloon_stats.balloon_low + balloon_high", xb.pages),
        ("balloon_stats.current_pages", xb.current_pages),
        ("balloon_stats.target_pages", xb.target_pages),
    ):
        findings.extend(plausible(what, value, max(g.max_pfn, xb.total_pages)))
    try:
        check = check_page_list(
            prog,
            "ballooned_pages",
            xb.list_head,
            xb.pages,
            "balloon_low + balloon_high",
            geometry=g,
        )
    except READ_ERRORS as e:
        findings.append(Finding("unreadable", "", -1, xb.list_head, str(e)))
        return None, tuple(findings)
    return check, tuple(findings)
