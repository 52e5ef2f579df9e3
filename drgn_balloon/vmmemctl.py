"""
The out-of-tree vmmemctl
------------------------

Before the in-tree driver, VMware Tools (and open-vm-tools) shipped
``vmmemctl.ko`` (RHEL 5 and other 2.6.18-era guests). Its state is
``static Balloon globalBalloon``, and it keeps ballooned pages not on
``page->lru`` lists but in arrays of 1000 ``struct page *`` inside chunks
(kernel-layouts.md §4). The module comes with no debug info, so the
``drgn_balloon.vmmemctl`` module reads it by the x86_64 offsets of the three
known versions of ``Balloon`` (§4, computed with gcc from open-vm-tools'
definitions) and keeps the version whose chunks add up to ``nPages``: a
layout is believed only when the memory agrees with it.
"""

import struct
from typing import List, NamedTuple, Optional, Tuple

from drgn import FaultError, Program

from .pages import PageGeometry

__all__ = [
    "VARIANTS",
    "VmmemctlVariant",
    "VmmemctlWalk",
    "find_global_balloon",
    "read_vmmemctl",
]

CHUNK_ENTRIES = 1000  # BALLOON_CHUNK_PAGES
#: Bound on chunks followed in one list (a corrupt list must end).
MAX_CHUNKS = 1 << 20


class VmmemctlVariant(NamedTuple):
    """One version of ``Balloon`` (kernel-layouts.md §4, table)."""

    name: str
    description: str
    #: Offsets in ``Balloon`` of nPages, nPagesTarget, resetFlag.
    n_pages: int
    target: int
    reset: int
    #: ``int`` (4) or ``uint64`` (8) counters.
    counter_size: int
    #: Offset in ``BalloonChunk`` of the entry count.
    chunk_count: int
    #: ``"null"``: ``BalloonChunk *chunks`` list, ``next`` at *link*;
    #: ``"circular"``: ``DblLnkLst_Links`` (prev, next) embedded at *link*.
    list_kind: str
    link: int
    #: Offsets in ``Balloon`` of the chunk list heads: 4 KiB, then 2 MiB.
    heads: Tuple[int, ...]


VARIANTS = (
    VmmemctlVariant(
        "vmmemctl-a",
        "open-vm-tools modules/linux/vmmemctl (oldest)",
        152,
        156,
        160,
        4,
        8000,
        "null",
        8016,
        (0,),
    ),
    VmmemctlVariant(
        "vmmemctl-b",
        "open-vm-tools modules/shared/vmmemctl",
        164,
        168,
        172,
        4,
        8000,
        "circular",
        8008,
        (0,),
    ),
    VmmemctlVariant(
        "vmmemctl-c",
        "open-vm-tools, batched with 2 MiB pages",
        328,
        336,
        344,
        8,
        8000,
        "circular",
        8008,
        (0, 24),
    ),
)


class VmmemctlWalk(NamedTuple):
    """What the chunks of one variant hold."""

    variant: VmmemctlVariant
    n_pages: int
    target: int
    reset: bool
    #: Pages found in the chunks, per list (4 KiB, then 2 MiB).
    pages: Tuple[int, ...]
    #: Entries that are not ``struct page`` pointers in the memory map.
    bad_entries: int
    #: Whether every chunk list ended where it should.
    complete: bool

    @property
    def frames(self) -> int:
        return self.pages[0] + 512 * sum(self.pages[1:])

    @property
    def consistent(self) -> bool:
        return self.complete and self.frames == self.n_pages


def find_global_balloon(prog: Program) -> Optional[int]:
    """The address of ``globalBalloon``, from the kernel's symbols."""
    try:
        return int(prog.symbol("globalBalloon").address)
    except LookupError:
        pass
    try:  # the module's own kallsyms (drgn >= 0.0.27)
        from drgn.helpers.linux.kallsyms import load_module_kallsyms
    except ImportError:
        return None
    try:
        finder = load_module_kallsyms(prog)
        symbols = finder(prog, "globalBalloon", None, True)
    except (LookupError, FaultError, ValueError):  # no or unreadable kallsyms
        return None
    return int(symbols[0].address) if symbols else None


def _chunks(prog: Program, v: VmmemctlVariant, head: int) -> Tuple[List[int], bool]:
    chunks: List[int] = []
    if v.list_kind == "null":
        chunk = prog.read_u64(head)
        while chunk and len(chunks) < MAX_CHUNKS:
            chunks.append(chunk)
            chunk = prog.read_u64(chunk + v.link)
        return chunks, chunk == 0
    node = prog.read_u64(head + 8)
    seen = set()
    while node != head and len(chunks) < MAX_CHUNKS:
        if node in seen or node == 0:
            return chunks, False
        seen.add(node)
        chunks.append(node - v.link)
        node = prog.read_u64(node + 8)
    return chunks, node == head


def _walk(
    prog: Program, g: PageGeometry, address: int, v: VmmemctlVariant
) -> VmmemctlWalk:
    fmt = "<i" if v.counter_size == 4 else "<q"
    n_pages = struct.unpack(fmt, prog.read(address + v.n_pages, v.counter_size))[0]
    target = struct.unpack(fmt, prog.read(address + v.target, v.counter_size))[0]
    reset = bool(prog.read_u32(address + v.reset))
    pages = []
    bad = 0
    complete = True
    for head in v.heads:
        chunks, ok = _chunks(prog, v, address + head)
        complete = complete and ok
        count = 0
        for chunk in chunks:
            n = prog.read_u32(chunk + v.chunk_count)
            if n > CHUNK_ENTRIES:
                complete = False
                break
            for (entry,) in struct.iter_unpack("<Q", prog.read(chunk, 8 * n)):
                if g.page_to_pfn(entry) is None:
                    bad += 1
            count += n
        pages.append(count)
    return VmmemctlWalk(v, n_pages, target, reset, tuple(pages), bad, complete)


def read_vmmemctl(
    prog: Program, g: PageGeometry, address: int
) -> Tuple[Optional[VmmemctlWalk], List[str]]:
    """
    Read ``globalBalloon`` at *address* with each known layout and return
    the walk of the one the memory agrees with (or ``None``), with a line
    for each layout that did not fit.
    """
    rejected = []
    for v in VARIANTS:
        try:
            walk = _walk(prog, g, address, v)
        except FaultError as e:
            rejected.append(f"{v.name}: {e}")
            continue
        if walk.consistent and 0 <= walk.target <= g.max_pfn:
            return walk, rejected
        rejected.append(
            f"{v.name}: chunks hold {walk.frames} frames, nPages is {walk.n_pages}"
        )
    return None, rejected
