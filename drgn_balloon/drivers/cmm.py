"""
IBM pseries Collaborative Memory Manager (arch/powerpc/platforms/pseries/cmm.c)
-------------------------------------------------------------------------------

PowerVM's balloon: ``static atomic_long_t loaned_pages``, ``static unsigned
long loaned_pages_target`` and, since balloon compaction came to CMM (v5.6),
``static struct balloon_dev_info b_dev_info`` whose ``pages`` list holds the
loaned pages. Counts are in kernel pages (64 KiB on Debian's ppc64el/ppc64).
Facts and sources: docs/balloon-drivers.md, "pseries CMM".
"""

from typing import List, NamedTuple, Optional, Tuple

from drgn import Object, Program

from ..pages import PageGeometry, page_geometry
from ..walk import Finding
from .common import (
    READ_ERRORS,
    PageListCheck,
    check_page_list,
    int_value,
    kernel_global,
    migration_enabled,
    plausible,
)

__all__ = ["CmmBalloon", "read_cmm", "verify_cmm"]

_FILE = "cmm.c"


class CmmBalloon(NamedTuple):
    """The CMM balloon's state, as plain values."""

    loaned_pages: int
    loaned_pages_target: int
    #: ``oom_freed_pages`` (pages given back on OOM), if the kernel has it.
    oom_freed_pages: Optional[int]
    #: Kernel page size: the unit of the counts.
    page_size: int
    #: Address of ``b_dev_info`` and its ``pages`` head; 0 on kernels before
    #: v5.6 (``cmm_page_list`` arrays, not read).
    dev_info_address: int
    list_head: int
    isolated_pages: int
    migration: bool
    #: ``cmm_alloc_pages()`` calls ``adjust_managed_page_count(page, -1)``
    #: (v5.10 to v6.12); v7.x sets ``b_dev_info.adjust_managed_page_count``.
    adjusts_managed: bool
    adjusts_managed_source: str
    problems: Tuple[str, ...]


_TYPES = {
    "loaned_pages": "atomic_long_t",
    "loaned_pages_target": "unsigned long",
    "oom_freed_pages": "unsigned long",
    "b_dev_info": "struct balloon_dev_info",
}


def _obj(prog: Program, name: str) -> Object:
    return kernel_global(prog, name, _TYPES[name], _FILE)


def read_cmm(prog: Program) -> CmmBalloon:
    """
    Read the CMM's globals.

    :raises LookupError: if the kernel has no CMM (cmm.ko not loaded, not
        ppc64).
    """
    loaned = int_value(_obj(prog, "loaned_pages"))
    target = int_value(_obj(prog, "loaned_pages_target"))
    try:
        oom: Optional[int] = int_value(_obj(prog, "oom_freed_pages"))
    except LookupError:
        oom = None
    try:
        page_size = int(prog["PAGE_SIZE"].value_())
    except (KeyError, LookupError):
        page_size = 4096
    problems: List[str] = []
    try:
        info = _obj(prog, "b_dev_info")
    except LookupError:
        info = None
        problems.append(
            "no b_dev_info: a CMM before balloon compaction (v5.6) keeps its "
            "pages in cmm_page_list arrays, which are not walked"
        )
    if info is None:
        return CmmBalloon(
            loaned,
            target,
            oom,
            page_size,
            0,
            0,
            0,
            False,
            True,
            "cmm_alloc_pages() (all kernels with CMM)",
            tuple(problems),
        )
    try:
        adjusts = bool(info.adjust_managed_page_count.value_())
        source = "b_dev_info.adjust_managed_page_count (mm/balloon.c, v7.x)"
    except AttributeError:
        adjusts = True
        source = "cmm_alloc_pages() calls adjust_managed_page_count() (v5.10-v6.12)"
    head = info.pages
    if prog.read_u64(head.address_) == 0:
        problems.append("b_dev_info.pages is NULL: cmm_init() never ran")
    return CmmBalloon(
        loaned_pages=loaned,
        loaned_pages_target=target,
        oom_freed_pages=oom,
        page_size=page_size,
        dev_info_address=int(info.address_),
        list_head=int(head.address_),
        isolated_pages=int_value(info.isolated_pages),
        migration=migration_enabled(info),
        adjusts_managed=adjusts,
        adjusts_managed_source=source,
        problems=tuple(problems),
    )


def verify_cmm(
    prog: Program, cmm: CmmBalloon, geometry: Optional[PageGeometry] = None
) -> Tuple[Optional[PageListCheck], Tuple[Finding, ...]]:
    """
    Walk ``b_dev_info.pages`` and compare with ``loaned_pages``.

    ``balloon_page_enqueue()`` marks each page offline and, with migration,
    points ``private`` at ``&b_dev_info``; pages isolated for migration are
    off the list but still loaned.
    """
    g = geometry if geometry is not None else page_geometry(prog, compaction_era=True)
    findings: List[Finding] = []
    findings.extend(plausible("loaned_pages", cmm.loaned_pages, g.max_pfn))
    findings.extend(
        plausible("loaned_pages_target", cmm.loaned_pages_target, g.max_pfn)
    )
    if not cmm.list_head:
        return None, tuple(findings)
    try:
        check = check_page_list(
            prog,
            "b_dev_info.pages",
            cmm.list_head,
            cmm.loaned_pages - cmm.isolated_pages,
            "loaned_pages" + (" - isolated_pages" if cmm.isolated_pages else ""),
            expect_private=cmm.dev_info_address if cmm.migration else None,
            geometry=g,
        )
    except READ_ERRORS as e:
        findings.append(Finding("unreadable", "", -1, cmm.list_head, str(e)))
        return None, tuple(findings)
    return check, tuple(findings)
