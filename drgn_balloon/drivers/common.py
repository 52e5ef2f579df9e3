"""
What every balloon driver's reader shares
-----------------------------------------

Plain-value results (:class:`PageListCheck`, :class:`ZoneTotals`), a bounded
walk of a driver's ``list_head`` of ``struct page`` through the project's
walker (:func:`drgn_balloon.walk.walk_list`), the comparison of what the walk
found with the driver's own count, and the guest's present and managed pages
from its zones. Facts and sources: docs/balloon-drivers.md.
"""

from typing import List, NamedTuple, Optional, Tuple

from drgn import FaultError, Object, Program, TypeKind

from ..pages import PageGeometry, page_geometry
from ..walk import BulkPageReader, Finding, ListWalk, ObjectPageReader, walk_list

__all__ = [
    "PageListCheck",
    "ZoneCount",
    "ZoneTotals",
    "check_page_list",
    "int_value",
    "kernel_global",
    "migration_enabled",
    "plausible",
    "zone_totals",
]

#: Errors that mean "this member/object/memory is not what we expected":
#: a missing member or object (LookupError, AttributeError), memory not in
#: the dump (FaultError), an object of the wrong kind (TypeError, ValueError).
READ_ERRORS = (LookupError, AttributeError, FaultError, TypeError, ValueError)


def kernel_global(
    prog: Program, name: str, type_name: str, filename: Optional[str] = None
) -> Object:
    """
    A kernel or module global by name: from the debug info's object finder
    (DWARF), else from the symbol table (kallsyms: BTF mode, where only some
    objects are declared) with its type by name (from BTF).

    :raises LookupError: neither knows the name, or the type is unknown.
    """
    try:
        if filename is not None:
            try:
                return prog.object(name, filename=filename)
            except LookupError:
                pass
        return prog[name]
    except LookupError:
        pass
    try:
        symbol = prog.symbol(name)
    except LookupError as e:
        raise LookupError(f"no {name} in this kernel") from e
    return Object(prog, prog.type(type_name), address=symbol.address)


def int_value(obj: Object) -> int:
    """The value of an integer, ``atomic_t``/``atomic_long_t`` or enum object."""
    t = obj.type_
    while t.kind == TypeKind.TYPEDEF:
        t = t.type
    if t.kind in (TypeKind.STRUCT, TypeKind.UNION):
        obj = obj.counter
    return int(obj.value_())


class PageListCheck(NamedTuple):
    """A driver's page list walked and compared with the driver's count."""

    #: What the list is, e.g. ``"virtio_balloon.vb_dev_info.pages"``.
    name: str
    walk: ListWalk
    #: The driver's own count of the pages that should be on the list.
    expected_pages: int
    #: Where that count comes from, e.g. ``"num_pages - isolated_pages"``.
    expected_source: str
    #: Everything wrong: the walk's findings and a count mismatch.
    findings: Tuple[Finding, ...]

    @property
    def verified(self) -> bool:
        """The walk came back to the head, nothing wrong, counts agree."""
        return self.walk.complete and not self.findings


def _reader(prog: Program, g: PageGeometry) -> object:
    # BulkPageReader parses the memory map as native 64-bit words: only for a
    # little-endian program (a ppc64 big-endian dump is read as Objects).
    little = bool(
        prog.platform and prog.platform.flags & prog.platform.flags.IS_LITTLE_ENDIAN
    )
    if little:
        try:
            return BulkPageReader(prog, g)
        except ValueError:
            pass
    return ObjectPageReader(prog, g)


def check_page_list(
    prog: Program,
    name: str,
    head: int,
    expected_pages: int,
    expected_source: str,
    *,
    expect_private: Optional[int] = None,
    geometry: Optional[PageGeometry] = None,
) -> PageListCheck:
    """
    Walk one driver's list of ``struct page`` (linked through ``lru``) with
    the project's bounded walker and compare with the driver's count.

    :param head: address of the driver's ``struct list_head``.
    :param expect_private: what ``page->private`` holds for each page
        (``&b_dev_info`` with balloon compaction), or ``None``.
    """
    g = geometry if geometry is not None else page_geometry(prog, compaction_era=True)
    walk = walk_list(
        prog, g, head, "4k", 1, reader=_reader(prog, g), expect_private=expect_private
    )
    findings: List[Finding] = list(walk.findings)
    if walk.complete and walk.pages != expected_pages:
        findings.append(
            Finding(
                "count_mismatch",
                "",
                -1,
                head,
                f"{name}: {walk.pages} pages on the list, but {expected_source} "
                f"says {expected_pages}",
            )
        )
    return PageListCheck(name, walk, expected_pages, expected_source, tuple(findings))


def migration_enabled(dev_info: Object) -> bool:
    """
    Whether balloon page migration is on for this ``struct balloon_dev_info``.

    Drivers set ``migratepage`` only with CONFIG_BALLOON_COMPACTION (v5.3 to
    v6.x) or CONFIG_BALLOON_MIGRATION (mm/balloon.c, v7.x), the same option
    under which ``balloon_page_insert()`` points ``page->private`` at the
    ``balloon_dev_info`` (include/linux/balloon_compaction.h v5.10/v6.1,
    mm/balloon.c v7.2). The member itself is there either way.
    """
    try:
        return bool(dev_info.migratepage.value_())
    except READ_ERRORS:
        return False


def plausible(what: str, pages: int, max_pfn: int) -> Tuple[Finding, ...]:
    """A finding if a driver's page count cannot be right for this guest."""
    if 0 <= pages <= max_pfn:
        return ()
    return (
        Finding(
            "implausible",
            "",
            -1,
            0,
            f"{what} is {pages} pages, "
            + (
                "negative"
                if pages < 0
                else f"more than the guest's {max_pfn} (max_pfn)"
            )
            + ": the driver's state is corrupt",
        ),
    )


class ZoneCount(NamedTuple):
    node: int
    zone: str
    #: Physical pages in the zone, holes excluded (``zone->present_pages``).
    present_pages: int
    #: Pages the buddy allocator manages (``zone->managed_pages``): what
    #: MemTotal adds up; drivers that call ``adjust_managed_page_count()``
    #: take their pages out of it.
    managed_pages: int


class ZoneTotals(NamedTuple):
    """The memory the guest has (present) beside MemTotal (managed)."""

    present_pages: int
    managed_pages: int
    zones: Tuple[ZoneCount, ...]


def _pgdats(prog: Program) -> List[Object]:
    try:
        return [prog["contig_page_data"].address_of_()]
    except (KeyError, LookupError):
        pass
    from drgn.helpers.linux.nodemask import for_each_online_node

    node_data = prog["node_data"]
    return [node_data[nid] for nid in for_each_online_node(prog)]


def _zone_pcp_count(prog: Program, zone: Object) -> int:
    # Pages on one zone's per-CPU free lists, over the possible CPUs.
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.percpu import per_cpu_ptr

    try:
        # v5.14+: struct per_cpu_pages __percpu *per_cpu_pageset (commit
        # 28f836b6777b "mm/page_alloc: split per cpu page lists and zone stats").
        pcps = zone.per_cpu_pageset
        return sum(
            int(per_cpu_ptr(pcps, cpu).count.value_())
            for cpu in for_each_possible_cpu(prog)
        )
    except AttributeError:
        pass
    pagesets = zone.pageset
    if pagesets.type_.kind == TypeKind.ARRAY:
        # Before v2.6.34 (commit 99dcc3e5a94e "this_cpu: Page allocator
        # conversion"): struct per_cpu_pageset *pageset[NR_CPUS].
        cpus = list(for_each_possible_cpu(prog))
        sets = [pagesets[cpu] for cpu in cpus]
    else:
        # v2.6.34 to v5.13: struct per_cpu_pageset __percpu *pageset.
        sets = [per_cpu_ptr(pagesets, cpu) for cpu in for_each_possible_cpu(prog)]
    total = 0
    for pset in sets:
        if not pset:
            continue
        pcp = pset.pcp
        if pcp.type_.kind == TypeKind.ARRAY:  # hot and cold lists, before v2.6.25
            total += sum(int(pcp[i].count.value_()) for i in range(len(pcp)))
        else:
            total += int(pcp.count.value_())
    return total


def pcp_free_pages(prog: Program) -> Optional[int]:
    """
    Free pages on the per-CPU page lists (``struct per_cpu_pages``) of every
    zone: the page allocator takes them off the buddy lists in batches, and
    ``NR_FREE_PAGES`` (``MemFree``) counts only the buddy lists, so these
    free pages show as used in ``/proc/meminfo`` and ``free``. Since v6.7
    (commit 51a755c56dc0 "mm: tune PCP high automatically") the lists grow
    well beyond ``pcp->batch`` after a burst of frees, e.g. a balloon
    deflating. ``None`` if this kernel's layout is not known.
    """
    total = 0
    try:
        for pgdat in _pgdats(prog):
            node_zones = pgdat.node_zones
            for i in range(int(node_zones.type_.length or 0)):
                zone = node_zones[i]
                if not int(zone.present_pages.value_()):
                    continue
                total += _zone_pcp_count(prog, zone)
    except (AttributeError, LookupError, FaultError):
        return None
    return total


def zone_totals(prog: Program) -> ZoneTotals:
    """
    Sum ``present_pages`` and ``managed_pages`` over every zone of every
    online node (what /proc/zoneinfo prints as ``present`` and ``managed``).

    ``managed_pages`` is an ``atomic_long_t`` since v5.0 (commit 9705bea5f833
    "mm: convert zone->managed_pages to atomic variable"), a plain
    ``unsigned long`` before: :func:`int_value` reads both.
    """
    zones: List[ZoneCount] = []
    for pgdat in _pgdats(prog):
        nid = int(pgdat.node_id.value_())
        node_zones = pgdat.node_zones
        for i in range(int(node_zones.type_.length or 0)):
            z = node_zones[i]
            zones.append(
                ZoneCount(
                    nid,
                    z.name.string_().decode(errors="replace"),
                    int(z.present_pages.value_()),
                    int_value(z.managed_pages),
                )
            )
    return ZoneTotals(
        sum(z.present_pages for z in zones),
        sum(z.managed_pages for z in zones),
        tuple(zones),
    )
