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

from drgn import FaultError, Object, Program

__all__ = ["MemoryAccounting", "memory_accounting", "processes_rss"]

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


class MemoryAccounting(NamedTuple):
    """Counters in 4 KiB pages (``PAGE_SIZE`` on x86_64)."""

    page_size: int
    total: int
    free: int
    #: ``/proc/meminfo`` lines by name (``None``: this kernel lacks it).
    counters: Dict[str, Optional[int]]
    #: Sum of the processes' RSS (``ps aux``), or ``None``.
    rss: Optional[int]
    #: Processes counted in :attr:`rss`.
    processes: int
    #: Huge page pools: (page size in KiB, HugePages_Total, HugePages_Free).
    hugepages: Tuple[Tuple[int, int, int], ...] = ()

    @property
    def used(self) -> int:
        """``MemTotal - MemFree``."""
        return self.total - self.free

    @property
    def explained(self) -> int:
        """Pages in use that a counter names."""
        return sum(v for k, v in self.counters.items() if k in USED_COUNTERS and v)

    @property
    def unaccounted(self) -> int:
        """Pages in use that no counter explains."""
        return max(self.used - self.explained, 0)


def _item(prog: Program, name: str) -> Optional[int]:
    try:
        return prog[name].value_()
    except (KeyError, LookupError):
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
                return max(prog[array][item].counter.value_(), 0)
            except (KeyError, LookupError):
                continue
    return None


def _sum(*values: Optional[int]) -> Optional[int]:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _totalram(prog: Program) -> int:
    try:
        return prog["_totalram_pages"].counter.value_()  # v5.0+
    except (KeyError, LookupError):
        return prog["totalram_pages"].value_()


def _buffers(prog: Program) -> Optional[int]:
    # nr_blockdev_pages(): the page cache of the block devices' inodes.
    try:
        sb = prog["blockdev_superblock"]
    except (KeyError, LookupError):
        try:
            prog["all_bdevs"]  # before v5.9 the same came from all_bdevs
        except (KeyError, LookupError):
            return 0  # no CONFIG_BLOCK: nr_blockdev_pages() is 0
        sb = None
    try:
        from drgn.helpers.linux.block import nr_blockdev_pages

        return int(nr_blockdev_pages(prog))
    except ImportError:
        pass
    except (LookupError, FaultError, AttributeError, TypeError):
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
    except (KeyError, LookupError):
        return 0  # no CONFIG_SWAP: total_swapcache_pages() is 0
    try:
        try:
            from drgn.helpers.linux.swap import total_swapcache_pages
        except ImportError:  # older drgn: the kernel's own sum, below
            return _total_swapcache_pages(prog)
        return int(total_swapcache_pages(prog))
    except (LookupError, FaultError, AttributeError, TypeError):
        return None


def _total_swapcache_pages(prog: Program) -> int:
    # total_swapcache_pages() of mm/swap_state.c (v4.11 to v5.11, before
    # NR_SWAPCACHE): the pages of every address space of every swap type in
    # use; nr_swapfiles (mm/swapfile.c) bounds the types.
    spaces = prog["swapper_spaces"]
    counts = prog["nr_swapper_spaces"]
    total = 0
    for i in range(prog["nr_swapfiles"].value_()):
        base = spaces[i]
        for j in range(counts[i].value_() if base.value_() else 0):
            total += base[j].nrpages.value_()
    return total


def _vmalloc(prog: Program) -> Optional[int]:
    value = _vm_stat(prog, "NR_VMALLOC")  # a node counter in v7.x
    if value is not None:
        return value
    for name in ("nr_vmalloc_pages", "vmap_area_pages"):
        try:
            obj = prog[name]
        except (KeyError, LookupError):
            continue
        try:
            return obj.counter.value_()
        except AttributeError:
            return obj.value_()
    return None


def _percpu(prog: Program) -> Optional[int]:
    # pcpu_nr_pages() = pcpu_nr_populated * pcpu_nr_units (mm/percpu.c)
    try:
        return prog["pcpu_nr_populated"].value_() * prog["pcpu_nr_units"].value_()
    except (KeyError, LookupError):
        return None


def _hugepage_pools(prog: Program) -> Tuple[Tuple[int, int, int], ...]:
    # struct hstate hstates[hugetlb_max_hstate] (mm/hugetlb.c): what
    # HugePages_Total/HugePages_Free and hugepages-*kB in sysfs show.
    try:
        hstates = prog["hstates"]
        count = prog["hugetlb_max_hstate"].value_()
    except (KeyError, LookupError):
        return ()
    pools = []
    for i in range(count):
        h = hstates[i]
        pools.append(
            (
                4 << h.order.value_(),
                h.nr_huge_pages.value_(),
                h.free_huge_pages.value_(),
            )
        )
    return tuple(pools)


def _page_size(prog: Program) -> int:
    try:
        return prog["PAGE_SIZE"].value_()
    except (KeyError, LookupError):
        return 4096


def _rss_members(prog: Program) -> Tuple[int, ...]:
    # get_mm_rss() = MM_FILEPAGES + MM_ANONPAGES + MM_SHMEMPAGES (the last
    # since v4.5); MM_SWAPENTS is not resident.
    members = []
    for name in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"):
        try:
            members.append(prog[name].value_())
        except (KeyError, LookupError):
            pass
    return tuple(members)


def _task_rss_pages(task: Object, members: Tuple[int, ...]) -> int:
    # The exact count, as /proc/PID/status and statm show it, from drgn's
    # task_rss() (per-CPU deltas summed). drgn < 0.0.24 lacks it: then
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
    total = 0
    for i in members:
        try:
            value = rss[i].count.value_()
        except (TypeError, LookupError, AttributeError):
            value = rss.count[i].counter.value_()
        total += max(value, 0)
    return total


def _for_each_process(prog: Program) -> Iterator[Object]:
    from drgn.helpers.linux.list import list_for_each_entry

    init = prog["init_task"].address_of_()
    seen = 0
    for task in list_for_each_entry(
        "struct task_struct", init.tasks.address_of_(), "tasks"
    ):
        yield task
        seen += 1
        if seen > 4_000_000:  # a corrupt task list must not hang us
            return


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
    except (FaultError, LookupError, AttributeError):
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
        "Balloon": _vm_stat(prog, "NR_BALLOON_PAGES"),  # v6.16+
    }
    rss_pages, processes = processes_rss(prog) if rss else (None, 0)
    return MemoryAccounting(
        page_size=page_size,
        total=_totalram(prog),
        free=_vm_stat(prog, "NR_FREE_PAGES") or 0,
        counters=counters,
        rss=rss_pages,
        processes=processes,
        hugepages=pools,
    )
