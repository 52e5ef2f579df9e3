"""
Page geometry and page types
----------------------------

The ``drgn_balloon.pages`` module describes the kernel's memory map (the
array of ``struct page``) well enough to read it in bulk, and decides whether
a page is marked offline the way the running kernel marks it.
"""

import re
from typing import NamedTuple, Optional

from drgn import FaultError, Program, offsetof, sizeof

__all__ = ["OfflineRule", "PageGeometry", "offline_rule", "page_geometry"]


class OfflineRule(NamedTuple):
    """How ``page->page_type`` says "offline" in this kernel."""

    #: ``"pgty"``: offline iff ``page_type >> 24 == value`` (v6.10 and later).
    #: ``"mask"``: offline iff ``page_type & (0xf0000000 | value) ==
    #: 0xf0000000`` (v5.0 to v6.9: the bit is *cleared* when the type is set).
    mode: str
    value: int
    #: Where the rule came from, for the report.
    source: str

    def is_offline(self, page_type: int) -> bool:
        """Whether a ``page_type`` value (a ``u32``) means offline."""
        if self.mode == "pgty":
            return (page_type >> 24) == self.value
        return (page_type & (0xF0000000 | self.value)) == 0xF0000000


_VMCOREINFO_OFFLINE = re.compile(
    rb"^NUMBER\(PAGE_OFFLINE_MAPCOUNT_VALUE\)=(-?[0-9]+)$", re.M
)


def _vmcoreinfo(prog: Program) -> bytes:
    try:
        return bytes(prog["VMCOREINFO"].string_())
    except (KeyError, LookupError, FaultError):
        pass
    # drgn < 0.0.23 has no VMCOREINFO object: read the note from the file.
    from .debuginfo import core_dump_path
    from .dumpfile import vmcoreinfo

    path = core_dump_path(prog)
    return vmcoreinfo(path) if path else b""


def offline_rule(prog: Program, compaction_era: bool = False) -> Optional[OfflineRule]:
    """
    Return how this kernel marks ballooned pages offline, or ``None`` if it
    does not.

    Linux kernel commit 59df23d6178e ("mm: convert PG_balloon to PG_offline")
    (in v5.0) introduced the offline page type; the same series made
    vmw_balloon set it on every ballooned page and exported it to VMCOREINFO
    ("kexec: export PG_offline to VMCOREINFO"), kernel-layouts.md §1.C2.
    Since v6.10 page types live in the top byte of ``page_type``
    (``PGTY_offline``, in the debug info).

    Until v6.10 the VMCOREINFO number is only exported with
    ``CONFIG_HUGETLB_PAGE`` (kernel/crash_core.c in v5.10 and v6.1), so a
    kernel without hugetlbfs lacks it. *compaction_era* says that the balloon
    itself is of v5.3 or later (balloon compaction, which came after v5.0):
    then the v5.0 to v6.9 encoding applies, ``PG_offline`` = ``0x100``
    (include/linux/page-flags.h, unchanged from v5.0 to v6.9).
    """
    try:
        pgty = prog["PGTY_offline"]
    except (KeyError, LookupError):
        pgty = None
    if pgty is not None:
        return OfflineRule("pgty", pgty.value_(), "enum pagetype PGTY_offline")
    match = _VMCOREINFO_OFFLINE.search(_vmcoreinfo(prog))
    if match:
        value = int(match.group(1)) & 0xFFFFFFFF
        if value & 0xFFFFFF == 0:
            return OfflineRule(
                "pgty", value >> 24, "VMCOREINFO PAGE_OFFLINE_MAPCOUNT_VALUE"
            )
        return OfflineRule(
            "mask", ~value & 0xFFFFFFFF, "VMCOREINFO PAGE_OFFLINE_MAPCOUNT_VALUE"
        )
    if compaction_era:
        return OfflineRule("mask", 0x100, "PG_offline of v5.0 to v6.9")
    return None


class PageGeometry(NamedTuple):
    """Where ``struct page`` lives and where its fields are."""

    #: Address of the ``struct page`` of PFN 0.
    vmemmap: int
    #: ``sizeof(struct page)``.
    page_size: int
    #: One past the highest PFN (``max_pfn``).
    max_pfn: int
    #: ``offsetof(struct page, lru)``.
    lru: int
    #: ``offsetof(struct page, private)``.
    private: int
    #: Offset of ``page_type`` (or of ``_mapcount`` that shares its storage),
    #: or ``None`` if the kernel has neither.
    page_type: Optional[int]
    #: How offline pages are marked, or ``None`` if they are not.
    offline: Optional[OfflineRule]

    @property
    def end(self) -> int:
        """Address just past the memory map."""
        return self.vmemmap + self.max_pfn * self.page_size

    def page_to_pfn(self, page: int) -> Optional[int]:
        """The PFN of a ``struct page`` address, or ``None`` if it is not one."""
        delta = page - self.vmemmap
        if delta < 0 or page >= self.end:
            return None
        pfn, rem = divmod(delta, self.page_size)
        return None if rem else pfn


def _page0(prog: Program) -> int:
    # drgn provides "vmemmap" on x86_64 (CONFIG_SPARSEMEM_VMEMMAP, the only
    # memory model of x86_64 since v2.6.24); FLATMEM kernels have mem_map.
    try:
        return int(prog["vmemmap"].value_())
    except (KeyError, LookupError):
        pass
    mem_map = prog["mem_map"].value_()
    try:
        offset = prog["ARCH_PFN_OFFSET"].value_()
    except (KeyError, LookupError):
        offset = 0
    return int(mem_map - offset * sizeof(prog.type("struct page")))


def page_geometry(prog: Program, compaction_era: bool = False) -> PageGeometry:
    """
    Describe the memory map of a kernel.

    :param compaction_era: see :func:`offline_rule`.

    :raises LookupError: if ``struct page`` or the memory map is unknown.
    """
    page_type = prog.type("struct page")
    offset: Optional[int]
    try:
        offset = offsetof(page_type, "page_type")
    except LookupError:
        try:
            offset = offsetof(page_type, "_mapcount")
        except LookupError:
            offset = None
    return PageGeometry(
        vmemmap=_page0(prog),
        page_size=sizeof(page_type),
        max_pfn=prog["max_pfn"].value_(),
        lru=offsetof(page_type, "lru"),
        private=offsetof(page_type, "private"),
        page_type=offset,
        offline=offline_rule(prog, compaction_era) if offset is not None else None,
    )
