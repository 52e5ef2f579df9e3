"""
Layouts of ``struct vmballoon``
-------------------------------

The ``drgn_balloon.layout`` module is the one place that knows how the
VMware balloon driver laid out its state in every kernel era. The era is
detected from the members of ``struct vmballoon`` in the debug info, never
from the kernel version (see ``shared/docs/kernel-layouts.md`` §0 and §3).

========  ============================  =======================================
era       kernels                       distinguishing members
========  ============================  =======================================
``A0``    2.6.34 (vmware_balloon.ko)    ``pages``, no ``n_refused_pages``
``A1``    ~2.6.37 to 4.1                ``pages`` and ``n_refused_pages``
``B1``    4.2 (batching)                ``pages`` and ``batch_page``
``B2``    ~4.3 to 4.19 (2 MiB pages)    ``page_sizes[]``, ``unsigned int size``
``C1``    4.20 to 5.2 (rewrite)         ``page_sizes[]``, ``atomic64_t size``
``C2``    5.3 to 5.19 (compaction)      ``b_dev_info`` with ``inode``
``D1``    6.0 to 6.x (movable_ops)      ``b_dev_info`` without ``inode``
``D2``    2026 balloon core cleanup     ``huge_pages_lock``
========  ============================  =======================================
"""

from typing import List, NamedTuple, Optional

from drgn import Object, Type, TypeKind

__all__ = [
    "ERAS",
    "FRAMES_PER_2M_PAGE",
    "VMMEMCTL_GLOBAL_SIZE",
    "BalloonList",
    "Era",
    "balloon_lists",
    "detect_era",
]


class Era(NamedTuple):
    """A layout of ``struct vmballoon``."""

    #: Short name, e.g. ``"D1"``.
    name: str
    #: Which kernels have it.
    kernels: str
    #: The member that holds the list of 4 KiB pages, as a path from the
    #: struct, e.g. ``"b_dev_info.pages"``.
    list_4k: str
    #: The member that holds the list of 2 MiB pages, or ``None``.
    list_2m: Optional[str]
    #: Whether ``size`` is an ``atomic64_t``.
    atomic_size: bool
    #: Whether ``stats`` is a pointer (``NULL`` until debugfs is read).
    stats_pointer: bool
    #: What the guest driver offers the host (``VMW_BALLOON_CAPABILITIES``, a
    #: macro, so not in memory), or ``None`` where the source was not
    #: checked: BASIC | BATCHED | BATCHED_2M | SIGNALLED_WAKEUP |
    #: 64_BIT_TARGET on x86_64, identical in v5.10, v6.1, v6.12 and v7.2.
    offered_capabilities: Optional[int] = None

    @property
    def dev_info(self) -> bool:
        """Whether the balloon uses balloon compaction (v5.3+)."""
        return self.list_4k.startswith("b_dev_info")


ERAS = {
    # shared/docs/kernel-layouts.md §1.A0, torvalds/linux
    # drivers/misc/vmware_balloon.c @05ea893c4680 (v2.6.34).
    "A0": Era("A0", "2.6.34 (vmware_balloon.ko, RHEL 6)", "pages", None, False, False),
    # §1.A1: n_refused_pages added (MODULE_VERSION 1.2.1.3-k).
    "A1": Era("A1", "2.6.37 to 4.1", "pages", None, False, False),
    # §1.B1: batching (in v4.2), MODULE_VERSION 1.3.4.0-k.
    "B1": Era("B1", "4.2, RHEL 7", "pages", None, False, False),
    # §1.B2: 2 MiB pages (about v4.3), MODULE_VERSION 1.4.x-k / 1.5.0.0-k.
    "B2": Era(
        "B2", "4.3 to 4.19", "page_sizes[0].pages", "page_sizes[1].pages", False, False
    ),
    # §1.C1: the 4.20 rework ("vmw_balloon: rework the inflate and deflate
    # loops" and the stats rework), atomic64_t size, stats pointer.
    "C1": Era(
        "C1", "4.20 to 5.2", "page_sizes[0].pages", "page_sizes[1].pages", True, True
    ),
    # §1.C2: Linux kernel commit 83a8afa72e9c ("vmw_balloon: Compaction
    # support") (in v5.3).
    "C2": Era("C2", "5.3 to 5.19", "b_dev_info.pages", "huge_pages", True, True, 0x3E),
    # §1.D1: struct balloon_dev_info lost its inode with the movable_operations
    # conversion (in v6.0); the shrinker became a pointer in v6.7.
    "D1": Era("D1", "6.0 to 6.19", "b_dev_info.pages", "huge_pages", True, True, 0x3E),
    # §1.D2: Linux kernel commit "vmw_balloon: stop using the
    # balloon_dev_info lock" (David Hildenbrand's series "mm: balloon
    # infrastructure cleanups", mm-stable early 2026, probably v7.0; cited by
    # title: its mainline hash could not be confirmed here) adds
    # huge_pages_lock.
    "D2": Era(
        "D2", "7.0 and later", "b_dev_info.pages", "huge_pages", True, True, 0x3E
    ),
    # §4: the out-of-tree vmmemctl.ko of VMware Tools / open-vm-tools (RHEL 5):
    # pages in chunk arrays, not on lists; read by drgn_balloon.vmmemctl.
    "vmmemctl-a": Era(
        "vmmemctl-a",
        "vmmemctl.ko, oldest open-vm-tools (RHEL 5)",
        "chunks",
        None,
        False,
        False,
    ),
    "vmmemctl-b": Era(
        "vmmemctl-b",
        "vmmemctl.ko, open-vm-tools modules/shared",
        "chunks",
        None,
        False,
        False,
    ),
    "vmmemctl-c": Era(
        "vmmemctl-c",
        "vmmemctl.ko, open-vm-tools with 2 MiB pages",
        "chunks",
        "chunks",
        False,
        False,
    ),
}


#: Bytes of vmmemctl's ``Balloon globalBalloon`` read as one object: up to
#: the 8-byte ``resetFlag`` at 344 of the largest layout (kernel-layouts.md
#: §4; :data:`drgn_balloon.vmmemctl.VARIANTS`).
VMMEMCTL_GLOBAL_SIZE = 344 + 8


def _has_member(type_: Type, name: str) -> bool:
    return bool(type_.has_member(name))


def _strip(type_: Type) -> Type:
    while type_.kind == TypeKind.TYPEDEF:
        type_ = type_.type
    return type_


def detect_era(vmballoon: Type) -> Era:
    """
    Detect the layout of ``struct vmballoon`` from its members.

    :param vmballoon: ``struct vmballoon`` type.
    :raises ValueError: if the members match no known layout.
    """
    t = _strip(vmballoon)
    if _has_member(t, "b_dev_info"):
        if _has_member(t, "huge_pages_lock"):
            return ERAS["D2"]
        dev_info = _strip(t.member("b_dev_info").type)
        if _has_member(dev_info, "inode"):
            return ERAS["C2"]
        return ERAS["D1"]
    if _has_member(t, "page_sizes"):
        size = _strip(t.member("size").type)
        if size.kind in (TypeKind.STRUCT, TypeKind.UNION):
            return ERAS["C1"]
        return ERAS["B2"]
    if _has_member(t, "pages"):
        if _has_member(t, "batch_page"):
            return ERAS["B1"]
        if _has_member(t, "n_refused_pages"):
            return ERAS["A1"]
        return ERAS["A0"]
    raise ValueError(
        "struct vmballoon has none of b_dev_info, page_sizes or pages: unknown layout"
    )


class BalloonList(NamedTuple):
    """One list of ballooned pages."""

    #: ``"4k"`` or ``"2m"``.
    kind: str
    #: The C expression of the list head relative to the balloon.
    path: str
    #: ``struct list_head`` object (a reference into ``balloon``).
    head: Object
    #: 4 KiB frames that one page on this list stands for (1 or 512).
    frames_per_page: int


def _member_path(obj: Object, path: str) -> Object:
    # "page_sizes[1].pages" -> obj.page_sizes[1].pages
    for part in path.split("."):
        if "[" in part:
            name, index = part[:-1].split("[")
            obj = obj.member_(name)[int(index)]
        else:
            obj = obj.member_(part)
    return obj


#: 2 MiB pages are order-9 blocks on x86_64; every era counts them as 512
#: frames (``vmballoon_page_in_frames()``, kernel-layouts.md §1.B2, §1.C2).
FRAMES_PER_2M_PAGE = 512


def balloon_lists(balloon: Object, era: Era) -> List[BalloonList]:
    """
    Return the lists of ballooned pages for an era.

    :param balloon: ``struct vmballoon``
    """
    if era.list_4k == "chunks":
        raise ValueError("vmmemctl keeps its pages in chunks, not lists")
    lists = [BalloonList("4k", era.list_4k, _member_path(balloon, era.list_4k), 1)]
    if era.list_2m is not None:
        lists.append(
            BalloonList(
                "2m",
                era.list_2m,
                _member_path(balloon, era.list_2m),
                FRAMES_PER_2M_PAGE,
            )
        )
    return lists
