"""
The kernel's page accounting
----------------------------

The ``drgn_balloon.memory`` module computes, from a dump, what
``/proc/meminfo``, ``free`` and ``ps aux`` would have shown, and the memory
that none of those counters explains.

vmw_balloon never calls ``adjust_managed_page_count()`` (kernel-layouts.md
§5), so its pages stay in ``MemTotal``, leave ``MemFree``, and appear on no
``/proc/meminfo`` line until the ``Balloon:`` line of v6.16, which counts
only the 4 KiB pages (§1.E). Every counter is read with the kernel's own
enum constants and variables; a counter this kernel lacks is ``None``.
"""

from typing import Dict, Iterator, NamedTuple, Optional, Tuple

from drgn import FaultError, Object, Program, TypeKind

from .drivers.common import pcp_free_pages

__all__ = [
    "USED_COUNTERS",
    "FreeTable",
    "HugePagePool",
    "MemoryAccounting",
    "memory_accounting",
    "processes_rss",
]

#: ``/proc/meminfo`` lines that hold memory in use, in the order shown, and
#: that together with ``MemFree`` should add up to ``MemTotal``. ``Shmem`` is
#: part of ``Cached`` and is not added again.
USED_COUNTERS = (
    "Buffers",
    "Cached",
    "SwapCached",
    "AnonPages",
    "Slab",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "VmallocUsed",
    "Percpu",
    "HugeTLB",
    "Balloon",
)


class HugePagePool(NamedTuple):
    """One huge page pool (``struct hstate``), as sysfs ``hugepages-*kB`` shows it."""

    size_kib: int
    #: ``HugePages_Total``.
    total: int
    #: ``HugePages_Free``.
    free: int


class FreeTable(NamedTuple):
    """The ``Mem:`` line of ``free`` (procps), in KiB."""

    total: int
    used: int
    free: int
    shared: int
    buff_cache: int


class MemoryAccounting(NamedTuple):
    """Counters in pages of :attr:`page_size` bytes."""

    page_size: int
    #: ``MemTotal`` (``totalram_pages()``).
    total: int
    #: ``MemFree``.
    free: int
    #: ``MemTotal - MemFree``.
    used: int
    #: ``/proc/meminfo`` lines by name (``None``: this kernel lacks it).
    counters: Dict[str, Optional[int]]
    #: Pages in use that a counter of :data:`USED_COUNTERS` names.
    explained: int
    #: Pages in use that no counter explains.
    unaccounted: int
    #: Sum of the processes' RSS (``ps aux``), or ``None``.
    rss: Optional[int]
    #: Processes counted in :attr:`rss`.
    processes: int
    hugepages: Tuple[HugePagePool, ...]
    free_kib: FreeTable
    #: Free pages on the per-CPU page lists: not in ``MemFree``, so in
    #: :attr:`used`, but not in :attr:`unaccounted` (``None``: not read).
    pcp_free: Optional[int] = None


def _item(prog: Program, name: str) -> Optional[int]:
    try:
        return int(prog[name].value_())
    except LookupError:
        return None


def _vm_stat(prog: Program, *names: str) -> Optional[int]:
    # The first of names that is a node or zone counter of this kernel. Node
    # counters (vm_node_stat) came with v4.8; before, all were in vm_stat.
    # Like global_node_page_state(), negative per-CPU drift is clamped to 0.
    for name in names:
        item = _item(prog, name)
        if item is None:
            continue
        type_name = prog[name].type_.type_name()
        if type_name == "enum node_stat_item":
            arrays: Tuple[str, ...] = ("vm_node_stat",)
        elif type_name == "enum zone_stat_item":
            arrays = ("vm_zone_stat", "vm_stat")
        else:
            arrays = ("vm_node_stat", "vm_zone_stat", "vm_stat")
        for array in arrays:
            try:
                return max(int(prog[array][item].counter.value_()), 0)
            except LookupError:
                continue
    return None


def _sum(*values: Optional[int]) -> Optional[int]:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _totalram(prog: Program) -> int:
    try:
        from drgn.helpers.linux.mm import totalram_pages
    except ImportError:  # not in drgn 0.0.22
        try:
            return int(prog["_totalram_pages"].counter.value_())  # v5.0+
        except LookupError:
            return int(prog["totalram_pages"].value_())
    return int(totalram_pages(prog))


def _buffers(prog: Program) -> Optional[int]:
    # nr_blockdev_pages(): the page cache of the block devices' inodes.
    try:
        sb = prog["blockdev_superblock"]
    except LookupError:
        try:
            prog["all_bdevs"]  # before v5.9 the same came from all_bdevs
        except LookupError:
            return 0  # no CONFIG_BLOCK: nr_blockdev_pages() is 0
        sb = None
    if sb is not None:
        try:
            from drgn.helpers.linux.block import nr_blockdev_pages
        except ImportError:
            pass
        else:
            try:
                return int(nr_blockdev_pages(prog))
            except (LookupError, FaultError):
                return None
    if sb is None:
        return None
    from drgn.helpers.linux.list import list_for_each_entry

    total = 0
    try:
        inodes = sb.s_inodes.address_of_()
        for n, inode in enumerate(
            list_for_each_entry("struct inode", inodes, "i_sb_list")
        ):
            total += inode.i_mapping.nrpages.value_()
            if n > 1_000_000:
                return None
    except FaultError:
        return None
    return total


def _swapcached(prog: Program) -> Optional[int]:
    value = _vm_stat(prog, "NR_SWAPCACHE")  # v5.12+, with CONFIG_SWAP
    if value is not None:
        return value
    try:
        prog["swapper_spaces"]
    except LookupError:
        return 0  # no CONFIG_SWAP: total_swapcache_pages() is 0
    try:
        from drgn.helpers.linux.swap import total_swapcache_pages
    except ImportError:  # drgn 0.0.31 and older: the kernel's own sum, below
        try:
            return _total_swapcache_pages(prog)
        except (LookupError, FaultError):
            return None
    try:
        return int(total_swapcache_pages(prog))
    except (LookupError, FaultError):
        return None


def _total_swapcache_pages(prog: Program) -> int:
    # total_swapcache_pages() of mm/swap_state.c before NR_SWAPCACHE (v5.12):
    # the pages of every address space of every swap type. Since v4.11
    # (4b3ef9daa4fc "mm/swap: split swap cache into 64MB trunks")
    # swapper_spaces[] holds pointers to nr_swapper_spaces[i] spaces each;
    # before, one struct address_space per swap type.
    spaces = prog["swapper_spaces"]
    total = 0
    if spaces.type_.type.kind != TypeKind.POINTER:
        for i in range(len(spaces)):
            total += int(spaces[i].nrpages)
        return total
    counts = prog["nr_swapper_spaces"]
    for i in range(int(prog["nr_swapfiles"])):
        base = spaces[i]
        for j in range(int(counts[i]) if base else 0):
            total += int(base[j].nrpages)
    return total


def _vmalloc(prog: Program) -> Optional[int]:
    value = _vm_stat(prog, "NR_VMALLOC")  # a node counter in v7.x
    if value is not None:
        return value
    for name in ("nr_vmalloc_pages", "vmap_area_pages"):
        try:
            obj = prog[name]
        except LookupError:
            continue
        if obj.type_.unqualified().kind == TypeKind.INT:
            return int(obj.value_())
        return int(obj.counter.value_())  # atomic_long_t
    return None


def _percpu(prog: Program) -> Optional[int]:
    # pcpu_nr_pages() = pcpu_nr_populated * pcpu_nr_units (mm/percpu.c)
    try:
        populated = int(prog["pcpu_nr_populated"].value_())
        return populated * int(prog["pcpu_nr_units"].value_())
    except LookupError:
        return None


def _for_each_hstate(prog: Program) -> Iterator[Object]:
    try:
        from drgn.helpers.linux.hugetlb import for_each_hstate
    except ImportError:  # not in drgn 0.0.31
        # struct hstate hstates[hugetlb_max_hstate] (mm/hugetlb.c)
        try:
            hstates = prog["hstates"]
            count = prog["hugetlb_max_hstate"].value_()
        except LookupError:
            return
        for i in range(count):
            yield hstates[i].address_of_()
        return
    yield from for_each_hstate(prog)


def _hugepage_pools(prog: Program) -> Tuple[HugePagePool, ...]:
    # What HugePages_Total/HugePages_Free and hugepages-*kB in sysfs show.
    return tuple(
        HugePagePool(
            4 << h.order.value_(),
            h.nr_huge_pages.value_(),
            h.free_huge_pages.value_(),
        )
        for h in _for_each_hstate(prog)
    )


def _page_size(prog: Program) -> int:
    try:
        return int(prog["PAGE_SIZE"].value_())
    except LookupError:
        return 4096


def _rss_members(prog: Program) -> Tuple[int, ...]:
    # get_mm_rss() = MM_FILEPAGES + MM_ANONPAGES + MM_SHMEMPAGES (the last
    # since v4.5); MM_SWAPENTS is not resident.
    members = []
    for name in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"):
        try:
            members.append(prog[name].value_())
        except LookupError:
            pass
    return tuple(members)


def _task_rss_pages(task: Object, members: Tuple[int, ...]) -> int:
    # The exact count, as /proc/PID/status and statm show it, from drgn's
    # task_rss() (per-CPU deltas summed). drgn 0.0.31 lacks it: then
    # get_mm_counter() of each member, clamped at 0, as /proc/PID/stat shows
    # it (since v6.2 the approximate count of the percpu_counter mm->rss_stat[];
    # before, the atomic_long_t mm->rss_stat.count[]).
    try:
        from drgn.helpers.linux.mm import task_rss
    except ImportError:
        pass
    else:
        rss_ = task_rss(task)
        return int(rss_.file + rss_.anon + rss_.shmem)
    rss = task.mm.rss_stat
    # Linux kernel commit f1a7941243c1 ("mm: convert mm's rss stats into
    # percpu_counter") (in v6.2) made rss_stat an array of percpu_counters.
    per_cpu = rss.type_.unqualified().kind == TypeKind.ARRAY
    total = 0
    for i in members:
        if per_cpu:
            value = rss[i].count.value_()
        else:
            value = rss.count[i].counter.value_()
        total += max(value, 0)
    return total


#: A corrupt task list must not hang us: more than any kernel's pid_max.
_MAX_TASKS = 4_194_304 * 2


def _for_each_process(prog: Program) -> Iterator[Object]:
    # Every thread group leader once (what ps aux lists), from drgn's
    # for_each_task() (every thread).
    from itertools import islice

    from drgn.helpers.linux.pid import for_each_task

    for task in islice(for_each_task(prog), _MAX_TASKS):
        if task.pid.value_() == task.tgid.value_():
            yield task


def processes_rss(prog: Program) -> Tuple[Optional[int], int]:
    """
    Sum the resident set size of every process, as ``ps aux`` would add up
    its RSS column (each process once, kernel threads excluded).

    :return: (pages or ``None`` if unreadable, number of processes)
    """
    total = 0
    count = 0
    members = _rss_members(prog)
    try:
        for task in _for_each_process(prog):
            if not task.mm.value_():
                continue
            total += _task_rss_pages(task, members)
            count += 1
    except (FaultError, LookupError):
        return None, count
    return total, count


def memory_accounting(prog: Program, rss: bool = True) -> MemoryAccounting:
    """
    Compute what ``/proc/meminfo`` would have shown.

    :param rss: also add up the processes' RSS (walks every task).
    """
    buffers = _buffers(prog)
    file_pages = _vm_stat(prog, "NR_FILE_PAGES")
    swapcached = _swapcached(prog)
    cached = None
    if file_pages is not None:
        cached = max(file_pages - (swapcached or 0) - (buffers or 0), 0)
    kernel_stack_kb = _vm_stat(prog, "NR_KERNEL_STACK_KB")
    page_size = _page_size(prog)
    reclaimable = _vm_stat(prog, "NR_SLAB_RECLAIMABLE_B", "NR_SLAB_RECLAIMABLE")
    # HugeTLB: every pool's pages, in 4 KiB pages (no pools: no hugetlbfs, 0).
    pools = _hugepage_pools(prog)
    counters: Dict[str, Optional[int]] = {
        "Buffers": buffers,
        "Cached": cached,
        "SwapCached": swapcached,
        "AnonPages": _vm_stat(prog, "NR_ANON_MAPPED", "NR_ANON_PAGES"),
        "Shmem": _vm_stat(prog, "NR_SHMEM"),
        "Slab": _sum(
            reclaimable,
            _vm_stat(prog, "NR_SLAB_UNRECLAIMABLE_B", "NR_SLAB_UNRECLAIMABLE"),
        ),
        "SReclaimable": reclaimable,
        "KernelStack": (
            kernel_stack_kb * 1024 // page_size if kernel_stack_kb is not None else None
        ),
        "PageTables": _vm_stat(prog, "NR_PAGETABLE"),
        "SecPageTables": _vm_stat(prog, "NR_SECONDARY_PAGETABLE"),
        "VmallocUsed": _vmalloc(prog),
        "Percpu": _percpu(prog),
        "HugeTLB": sum(
            total * size_kib * 1024 // page_size for size_kib, total, _ in pools
        ),
        # Linux kernel commits "meminfo: add a per node counter for balloon
        # drivers" and "balloon_compaction: update the NR_BALLOON_PAGES state"
        # (Nico Pache, in v6.16; cited by title: only mm-tree hashes of them
        # were found here, not the mainline ones).
        "Balloon": _vm_stat(prog, "NR_BALLOON_PAGES"),
    }
    rss_pages, processes = processes_rss(prog) if rss else (None, 0)
    total = _totalram(prog)
    free = _vm_stat(prog, "NR_FREE_PAGES") or 0
    explained = sum(v for k, v in counters.items() if k in USED_COUNTERS and v)
    pcp_free = pcp_free_pages(prog)
    # free(1): buff/cache = Buffers + Cached + SReclaimable; used = total -
    # free - buff/cache; shared = Shmem.
    cache = sum(counters.get(k) or 0 for k in ("Buffers", "Cached", "SReclaimable"))
    kib = page_size // 1024
    return MemoryAccounting(
        page_size=page_size,
        total=total,
        free=free,
        used=total - free,
        counters=counters,
        explained=explained,
        unaccounted=max(total - free - explained - (pcp_free or 0), 0),
        rss=rss_pages,
        processes=processes,
        hugepages=pools,
        free_kib=FreeTable(
            total=total * kib,
            used=max(total - free - cache, 0) * kib,
            free=free * kib,
            shared=(counters.get("Shmem") or 0) * kib,
            buff_cache=cache * kib,
        ),
        pcp_free=pcp_free,
    )
