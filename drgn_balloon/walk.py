"""
Page-by-page verification
-------------------------

The ``drgn_balloon.walk`` module walks a list of ballooned pages (linked
through ``page->lru``) and checks every page on it: the links agree in both
directions, every pointer lands on a ``struct page`` in the memory map, no
page is passed twice, each page is marked offline where the kernel marks
ballooned pages, and ``page->private`` points to the balloon where the
kernel sets it.

Walks are bounded: a walk stops at the first page it passes twice, so no
list, however corrupt, takes more than ``max_pfn`` steps.

Two readers do the same walk. :class:`ObjectPageReader` reads each page as a
drgn ``Object`` (what a drgn user would write) and judges it in one place
(``_Walker.step``). :class:`BulkPageReader` reads the memory map in large
blocks; with NumPy it separates the pointer chase from the checks
(``_VectorWalk``): each block is parsed once into arrays, a tight loop follows
``lru.next`` over them a run of evenly spaced pages at a time and records the
list order, and every check is then done at once over arrays in that order.
The findings it reports are built from the same messages, in the same order,
as the judge's, so both readers give identical results. Without NumPy the
bulk reader feeds the judge page by page.
"""

import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from drgn import FaultError, Object, Program

from .pages import PageGeometry

try:
    import numpy as np
except ImportError:  # pragma: no cover - NumPy is a dependency; kept working
    np = None  # type: ignore[assignment]

__all__ = [
    "FINDING_KINDS",
    "BulkPageReader",
    "Finding",
    "ListWalk",
    "ObjectPageReader",
    "walk_list",
]

#: Every kind of finding, with what it means.
FINDING_KINDS: Dict[str, str] = {
    "bad_pointer": "a list pointer does not point to a struct page in the memory map",
    "cycle": "the list comes back to a page it already passed",
    "prev_mismatch": "a node's lru.prev does not point back to the node before it",
    "not_in_dump": "a ballooned page's struct page is not in the dump",
    "not_offline": "a ballooned page is not marked offline (PageOffline)",
    "bad_private": "page->private does not point to this balloon",
    "misaligned": "a 2 MiB page does not start on a 512-frame boundary",
    "uninitialised": "a list head is NULL: the driver never initialised it",
    "size_mismatch": "the pages on the lists do not add up to balloon.size",
    "implausible": "size or target is larger than the guest's memory",
    "moved": "the lists changed while they were walked (live kernel)",
}

#: Findings after which the list cannot be followed further.
_FATAL = {"bad_pointer", "cycle", "not_in_dump", "uninitialised"}

#: At most this many findings of one kind are kept with their details; all
#: are counted.
MAX_DETAILED = 10


class Finding(NamedTuple):
    """Something the verification found wrong."""

    kind: str
    #: ``"4k"``, ``"2m"`` or ``""`` for the balloon as a whole.
    list: str
    #: Position in the list (0 is the first page), or -1.
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose
    #: The address concerned (a pointer or a ``struct page``), or 0.
    address: int
    message: str


class ListWalk(NamedTuple):
    """The result of walking one list."""

    kind: str
    head: int
    frames_per_page: int
    #: Pages found on the list.
    pages: int
    #: Whether the walk came back to the head.
    complete: bool
    #: Whether the offline marks were checked (the kernel marks them).
    offline_checked: bool
    #: Pages (for 2 MiB pages: subpages) not marked offline.
    not_offline: int
    #: Pages whose ``private`` points to the balloon.
    private_matches: int
    #: Findings, at most :data:`MAX_DETAILED` per kind.
    findings: Tuple[Finding, ...]
    #: How many findings of each kind, including those not kept.
    counts: Dict[str, int]

    @property
    def frames(self) -> int:
        """4 KiB frames the pages on this list stand for."""
        return self.pages * self.frames_per_page


class _Node(NamedTuple):
    next: int
    prev: int
    page_type: Optional[int]
    private: int


class ObjectPageReader:
    """Read each ``struct page`` as a drgn ``Object`` (the baseline)."""

    def __init__(self, prog: Program, geometry: PageGeometry) -> None:
        self.prog = prog
        self.geometry = geometry
        self.page_ptr = prog.type("struct page *")
        member = None
        if geometry.page_type is not None:
            t = prog.type("struct page")
            member = "page_type" if t.has_member("page_type") else "_mapcount"
        self.page_type_member = member

    def _page(self, pfn: int) -> Object:
        g = self.geometry
        return Object(self.prog, self.page_ptr, g.vmemmap + pfn * g.page_size)

    def _page_type(self, page: Object) -> Optional[int]:
        if self.page_type_member is None:
            return None
        value = page.member_(self.page_type_member)
        if self.page_type_member == "_mapcount":
            value = value.counter
        return int(value.value_()) & 0xFFFFFFFF

    def node(self, pfn: int) -> _Node:
        page = self._page(pfn)
        return _Node(
            page.lru.next.value_(),
            page.lru.prev.value_(),
            self._page_type(page),
            page.private.value_(),
        )

    def page_types(self, pfn: int, count: int) -> Set[int]:
        types = set()
        for i in range(count):
            page_type = self._page_type(self._page(pfn + i))
            if page_type is not None:
                types.add(page_type)
        return types


class BulkPageReader:
    """
    Read the memory map in blocks of ``block_pages`` struct pages and parse
    the bytes, keeping at most ``max_blocks`` blocks in memory.
    """

    def __init__(
        self,
        prog: Program,
        geometry: PageGeometry,
        block_pages: int = 32768,
        max_blocks: int = 8,
    ) -> None:
        g = geometry
        if g.page_size % 8 or g.lru % 8 or g.private % 8:
            raise ValueError("struct page is not laid out in 8-byte words")
        self.prog = prog
        self.geometry = g
        self.block_pages = block_pages
        self.max_blocks = max_blocks
        self.stride = g.page_size // 8
        self.lru = g.lru // 8
        self.private = g.private // 8
        if g.page_type is not None:
            self.page_type_word: Optional[int] = g.page_type // 8
            self.page_type_shift = (g.page_type % 8) * 8
        else:
            self.page_type_word = None
            self.page_type_shift = 0
        self.blocks: "OrderedDict[int, Optional[memoryview]]" = OrderedDict()
        #: The vector walk's parse of the memory map (with NumPy).
        self.vector: Optional["_VectorWalk"] = None

    def _load(self, block: int) -> Optional[memoryview]:
        g = self.geometry
        first = block * self.block_pages
        count = min(self.block_pages, g.max_pfn - first)
        try:
            data = self.prog.read(g.vmemmap + first * g.page_size, count * g.page_size)
            words: Optional[memoryview] = memoryview(data).cast("Q")
        except FaultError:
            # Part of the block is missing (a hole in the memory map or pages
            # left out of the dump): read this block page by page.
            words = None
        if len(self.blocks) >= self.max_blocks:
            self.blocks.popitem(last=False)
        self.blocks[block] = words
        return words

    def _words(self, pfn: int) -> Tuple[memoryview, int]:
        block, index = divmod(pfn, self.block_pages)
        try:
            words = self.blocks[block]
        except KeyError:
            words = self._load(block)
        if words is None:
            g = self.geometry
            data = self.prog.read(g.vmemmap + pfn * g.page_size, g.page_size)
            return memoryview(data).cast("Q"), 0
        return words, index * self.stride

    def node(self, pfn: int) -> _Node:
        words, i = self._words(pfn)
        page_type = None
        if self.page_type_word is not None:
            page_type = (
                words[i + self.page_type_word] >> self.page_type_shift
            ) & 0xFFFFFFFF
        return _Node(
            words[i + self.lru],
            words[i + self.lru + 1],
            page_type,
            words[i + self.private],
        )

    def page_types(self, pfn: int, count: int) -> Set[int]:
        if self.page_type_word is None:
            return set()
        block, index = divmod(pfn, self.block_pages)
        words, i = self._words(pfn)
        if index + count <= self.block_pages and len(words) >= i + count * self.stride:
            start = i + self.page_type_word
            raw = set(words[start : start + count * self.stride : self.stride])
            return {(w >> self.page_type_shift) & 0xFFFFFFFF for w in raw}
        return {
            t
            for t in (self.node(pfn + k).page_type for k in range(count))
            if t is not None
        }


# The words of each finding about a node, shared by the judge and the vector
# walk so that both say exactly the same.


def _msg_bad_pointer(index: int, cur: int, prev_node: int) -> str:
    return (
        f"node {index}: pointer {cur:#x} (from {prev_node:#x}) "
        "is not a struct page in the memory map"
    )


def _msg_cycle(index: int, page: int, pfn: int) -> str:
    return (
        f"node {index}: page {page:#x} (PFN {pfn:#x}) "
        "was already passed: the list is cyclic"
    )


def _msg_not_in_dump(index: int, page: int, pfn: int) -> str:
    return f"node {index}: struct page {page:#x} (PFN {pfn:#x}) is not in the dump"


def _msg_prev(index: int, prev: int, expected: int) -> str:
    return f"node {index}: lru.prev is {prev:#x}, expected {expected:#x}"


def _msg_misaligned(index: int, pfn: int) -> str:
    return f"node {index}: 2 MiB page at PFN {pfn:#x} is not aligned"


def _msg_subpages(index: int, pfn: int) -> str:
    return f"node {index}: subpages of PFN {pfn:#x} are not in the dump"


def _msg_not_offline(index: int, bad: int, pfn: int) -> str:
    return f"node {index}: {bad} frame(s) at PFN {pfn:#x} not marked offline"


def _msg_private(index: int, private: int, expect: int) -> str:
    return f"node {index}: private is {private:#x}, expected {expect:#x} or 0"


class _Recorder:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.findings: List[Finding] = []
        self.counts: Dict[str, int] = {}

    def add(self, what: str, index: int, address: int, message: str) -> None:
        n = self.counts.get(what, 0)
        self.counts[what] = n + 1
        if n < MAX_DETAILED:
            self.findings.append(Finding(what, self.kind, index, address, message))


class _Walker:
    # The state of one walk and the one place that judges a node, page by
    # page (the Object walk, and the bulk walk without NumPy). The vector
    # walk reaches the same judgements over arrays and reports them through
    # the same recorder and messages.

    def __init__(
        self,
        geometry: PageGeometry,
        head: int,
        kind: str,
        frames_per_page: int,
        reader: object,
        expect_private: Optional[int],
    ) -> None:
        self.g = geometry
        self.head = head
        self.kind = kind
        self.frames_per_page = frames_per_page
        self.reader = reader
        self.expect_private = expect_private
        self.rec = _Recorder(kind)
        self.pages = 0
        self.not_offline = 0
        self.private_matches = 0
        self.private_zero = 0
        self.complete = False
        self.prev_node = head
        # PFNs passed, allocated on first use (the vector walk has its own).
        self._seen: Optional[bytearray] = None

    @property
    def seen(self) -> bytearray:
        if self._seen is None:
            self._seen = bytearray(self.g.max_pfn)
        return self._seen

    def step(self, cur: int) -> Optional[int]:
        """Judge the node at *cur*; return the next node, or ``None`` to stop."""
        g, rec, pages = self.g, self.rec, self.pages
        lru = g.lru
        prev_node = self.prev_node
        pfn = g.page_to_pfn(cur - lru)
        if pfn is None:
            rec.add("bad_pointer", pages, cur, _msg_bad_pointer(pages, cur, prev_node))
            return None
        if self.seen[pfn]:
            rec.add("cycle", pages, cur, _msg_cycle(pages, cur - lru, pfn))
            return None
        self.seen[pfn] = 1
        reader = self.reader
        try:
            node: _Node = reader.node(pfn)  # type: ignore[attr-defined]
        except FaultError:
            rec.add(
                "not_in_dump", pages, cur - lru, _msg_not_in_dump(pages, cur - lru, pfn)
            )
            return None
        if node.prev != prev_node:
            rec.add("prev_mismatch", pages, cur, _msg_prev(pages, node.prev, prev_node))
        fpp = self.frames_per_page
        if fpp > 1 and pfn % fpp:
            rec.add("misaligned", pages, cur - lru, _msg_misaligned(pages, pfn))
        offline = g.offline
        if offline is not None:
            bad: int
            if fpp == 1:
                bad = 0 if offline.is_offline(node.page_type or 0) else 1
            else:
                try:
                    types = reader.page_types(pfn, fpp)  # type: ignore[attr-defined]
                except FaultError:
                    types = set()
                    rec.add("not_in_dump", pages, cur - lru, _msg_subpages(pages, pfn))
                bad = 0
                if any(not offline.is_offline(t) for t in types):
                    bad = len(
                        [
                            k
                            for k in range(fpp)
                            if not offline.is_offline(
                                reader.node(pfn + k).page_type or 0  # type: ignore[attr-defined]
                            )
                        ]
                    )
            if bad:
                self.not_offline += bad
                rec.add(
                    "not_offline", pages, cur - lru, _msg_not_offline(pages, bad, pfn)
                )
        expect = self.expect_private
        if expect is not None:
            if node.private == expect:
                self.private_matches += 1
            elif node.private == 0:
                self.private_zero += 1
            else:
                rec.add(
                    "bad_private",
                    pages,
                    cur - lru,
                    _msg_private(pages, node.private, expect),
                )
        self.pages = pages + 1
        self.prev_node = cur
        return node.next

    def finish(self, cur: int, head_prev: int) -> None:
        """The walk came back to the head."""
        self.complete = True
        if head_prev != self.prev_node:
            self.rec.add(
                "prev_mismatch",
                self.pages,
                self.head,
                f"the list head's prev is {head_prev:#x}, "
                f"but its last node is {self.prev_node:#x}",
            )

    def result(self) -> ListWalk:
        rec = self.rec
        if (
            self.expect_private is not None
            and self.private_matches
            and self.private_zero
        ):
            rec.add(
                "bad_private",
                -1,
                0,
                f"{self.private_zero} page(s) have private 0 while "
                f"{self.private_matches} point to the balloon",
            )
        return ListWalk(
            self.kind,
            self.head,
            self.frames_per_page,
            self.pages,
            self.complete,
            self.g.offline is not None,
            self.not_offline,
            self.private_matches,
            tuple(rec.findings),
            rec.counts,
        )


#: Strides (in struct pages) of the runs the chase takes at once: a run is a
#: stretch of the list whose pages are evenly spaced in the memory map (the
#: buddy allocator hands out free pages in PFN order, every other one when
#: every other one is free). Wider strides are followed page by page.
MAX_STRIDE = 64
#: A stride is taken in runs in a block only where at least this many pages of
#: the block continue a run of it (computing its run table costs about as
#: much as following that many pages one by one).
MIN_STRIDE_PAGES = 32
#: At most this many strides per block get a run table.
MAX_STRIDES = 8
#: The chase hands its records to NumPy every this many runs.
_FLUSH = 1 << 16
#: Nodes checked at once (and the progress granularity).
_CHUNK = 1 << 16
#: Struct pages read at once in a block that is not wholly in the dump.
_PIECE = 64
#: Blocks the walk's arrays have room for at first (8 GiB of guest memory).
_SLOTS = 64
#: The local index of a next pointer that leaves the block (or is not a
#: struct page): negative, and far from any stride.
_AWAY = -(1 << 30)


def _arrays(*lists: List[int]) -> Tuple[Any, ...]:
    return tuple(np.array(x, dtype=np.int64) for x in lists)


class _Block:
    # A block of the memory map in the walk's arrays: it holds slot *slot*
    # (entries slot * block_pages on), and the lru.next pointers of its
    # pages that point into blocks not loaded yet (resolved later).
    __slots__ = ("first", "count", "slot", "present", "pending", "epoch")

    def __init__(self, first: int, count: int, slot: int) -> None:
        self.first = first
        self.count = count
        self.slot = slot
        # Which struct pages are in the dump, or None: all of them.
        self.present: Any = None
        self.pending: Any = None  # (entries, target PFNs)
        self.epoch = 0  # blocks loaded when pending was last resolved


class _VectorWalk:
    # The bulk walk with NumPy: chase, then check (see the module docstring).
    # The blocks loaded are laid end to end in arrays, one entry per struct
    # page ("entry" below; block_pages entries per block): for the chase,
    # the entry of each page's lru.next (-1: the head, not a struct page, or
    # a block not loaded yet), the last entry of the run from each page on
    # (itself if none; made negative once the run is passed); for the checks,
    # lru.prev and whether the page is not marked offline and has private 0
    # or *expect*. The reader keeps it for the next list of the balloon, so
    # that each block is read and parsed once.

    def __init__(self, reader: "BulkPageReader", expect: Optional[int]) -> None:
        self.reader = reader
        self.expect = expect
        self.g = g = reader.geometry
        bp = reader.block_pages
        self.bp = bp
        self.bshift = bp.bit_length() - 1
        self.bmask = bp - 1
        self.idx = np.arange(bp, dtype=np.int32)
        size = g.page_size
        self.pow2 = size & (size - 1) == 0
        self.shift = size.bit_length() - 1
        self.blocks: Dict[int, _Block] = {}
        self.by_slot: List[_Block] = []
        self.partial: List[_Block] = []  # blocks not wholly in the dump
        self.slot_of = np.full((g.max_pfn >> self.bshift) + 1, -1, dtype=np.int64)
        self.cap = 0
        self.arrays: Dict[str, Any] = {}
        # Running count of the pages not marked offline (for 2 MiB pages).
        self.cs: Any = None
        # The 64-bit words of struct page the walk reads: [w0, w1).
        used = [reader.lru, reader.lru + 1, reader.private]
        if reader.page_type_word is not None:
            used.append(reader.page_type_word)
        self.words = (min(used), max(used) + 1)
        offline = g.offline
        self.check_offline = offline is not None and reader.page_type_word is not None
        self.mask = self.want = 0
        if offline is not None and reader.page_type_word is not None:
            shift = reader.page_type_shift
            # The offline test on the whole 64-bit word holding page_type.
            if offline.mode == "pgty":
                self.mask = 0xFF000000 << shift
                self.want = offline.value << (24 + shift)
            else:
                self.mask = (0xF0000000 | offline.value) << shift
                self.want = 0xF0000000 << shift
        # Entries of the chase fit in 32 bits below 2**31 struct pages.
        entry = np.int32 if len(self.slot_of) * bp < 1 << 31 else np.int64
        self.fields = {
            "succ": entry,
            "runend": entry,
            "prev": np.uint64,
            "notoff": bool,
            "zero": bool,
            "mine": bool,
        }

    # ------------------------------------------------------------- blocks

    def _pieces(self, first: int, count: int) -> Tuple[bytes, Any]:
        # A block that is not wholly in the dump, read in pieces and then page
        # by page where a piece faults; missing pages read as zeros.
        g = self.g
        size = g.page_size
        out = bytearray(count * size)
        present = np.ones(count, dtype=bool)
        prog = self.reader.prog
        for a in range(0, count, _PIECE):
            n = min(_PIECE, count - a)
            address = g.vmemmap + (first + a) * size
            try:
                out[a * size : (a + n) * size] = prog.read(address, n * size)
                continue
            except FaultError:
                pass
            for k in range(a, a + n):
                try:
                    out[k * size : (k + 1) * size] = prog.read(
                        g.vmemmap + (first + k) * size, size
                    )
                except FaultError:
                    present[k] = False
        return bytes(out), present

    def _grow(self) -> None:
        # Room for the whole memory map up to _SLOTS blocks (untouched room
        # costs no memory), then doubled.
        cap = max(min(len(self.slot_of), _SLOTS), 2 * self.cap)
        used = len(self.by_slot) * self.bp
        for name, dtype in self.fields.items():
            new = np.zeros(cap * self.bp, dtype=dtype)
            old = self.arrays.get(name)
            if old is not None:
                new[:used] = old[:used]
            self.arrays[name] = new
        self.cap = cap

    def load(self, b: int, light: bool = False) -> _Block:
        # *light*: for a list of 2 MiB pages (a node every 512 pages): no
        # runs, and lru.next pointers out of the block are followed one by
        # one when the chase meets them.
        g, r = self.g, self.reader
        bp = self.bp
        first = b << self.bshift
        count = min(bp, g.max_pfn - first)
        slot = len(self.by_slot)
        if slot == self.cap:
            self._grow()
        self.cs = None
        blk = _Block(first, count, slot)
        self.blocks[b] = blk
        self.by_slot.append(blk)
        self.slot_of[b] = slot
        lo, hi = slot * bp, slot * bp + count
        a = self.arrays
        words = r._load(b)
        r.blocks.pop(b, None)  # parsed here: do not keep the bytes
        present = None
        if words is None:
            data, present = self._pieces(first, count)
            blk.present = present
            self.partial.append(blk)
            arr = np.frombuffer(data, dtype="<u8")
        else:
            arr = np.frombuffer(words, dtype="<u8")
        table = arr.reshape(count, r.stride)
        size = g.page_size
        u = np.uint64
        # The words the walk reads, copied out of the block in one pass (the
        # columns are then read from memory that stays in the CPU's cache).
        w0, w1 = self.words
        cols = np.ascontiguousarray(table[:, w0:w1])
        nxt = cols[:, r.lru - w0]
        # lru.next -> local index of the page it points to in this block, or
        # _AWAY.
        d = nxt - u(g.vmemmap + g.lru + first * size)
        span = count * size
        if self.pow2 and span & (span - 1) == 0:
            # Below span and on a struct page boundary, in one test.
            away = (d & u(~(span - 1) & 0xFFFFFFFFFFFFFFFF | (size - 1))) != 0
        else:
            away = (d >= u(span)) | (d % u(size) != 0)
        ln = (d >> u(self.shift) if self.pow2 else d // u(size)).astype(np.int32)
        ln[away] = _AWAY
        if present is not None:
            gone = ~present[np.maximum(ln, 0)]
            ln[gone] = _AWAY
            away |= gone
        succ = a["succ"][lo:hi]
        np.add(ln, lo, out=succ)
        # Pointers out of the block: to blocks loaded already, or pending.
        if lo + _AWAY >= 0:  # (ln + lo is negative where ln is _AWAY below)
            succ[away] = -1
        out = np.flatnonzero(away) if not light else ()
        if len(out):
            dg = nxt[out] - u(g.vmemmap + g.lru)
            ok = dg < u(g.max_pfn * size)
            ok &= (dg % u(size)) == 0
            out, tp = out[ok], (dg[ok] // u(size)).astype(np.int64)
            if len(out):
                blk.pending = (out + lo, tp)
                self._resolve(blk)
        # Runs: page k continues a run of stride st if its next page is k+st
        # and that page's next is k+2st; a run from k ends at the first page
        # along st that does not continue it. Strides are taken in runs where
        # enough pages of the block continue them (counted on every 4th).
        idx = self.idx[:count]
        re = idx
        s = idx if light else ln - idx
        for st in () if light else self._strides(s):
            m = abs(st)
            step = s == st
            cont = np.zeros(count, dtype=bool)
            if st > 0:
                np.logical_and(step[: count - m], step[m:], out=cont[: count - m])
            else:
                np.logical_and(step[m:], step[: count - m], out=cont[m:])
            rows = -(-count // m)
            if rows * m == count:
                pos = np.where(cont, -1 if st < 0 else count, idx)
            else:
                pos = np.full(rows * m, -1 if st < 0 else rows * m, dtype=np.int32)
                pos[:count] = np.where(cont, pos[0], idx)
            grid = pos.reshape(rows, m)
            if st > 0:
                last = np.minimum.accumulate(grid[::-1], axis=0)[::-1]
            else:
                last = np.maximum.accumulate(grid, axis=0)
            last = last.reshape(-1)[:count]
            re = last if re is idx else np.where(cont, last, re)
        np.add(re, lo, out=a["runend"][lo:hi])
        # What the checks need.
        a["prev"][lo:hi] = cols[:, r.lru + 1 - w0]
        if self.check_offline:
            assert r.page_type_word is not None
            np.not_equal(
                cols[:, r.page_type_word - w0] & u(self.mask),
                u(self.want),
                out=a["notoff"][lo:hi],
            )
        expect = self.expect
        if expect is not None:
            priv = cols[:, r.private - w0]
            np.equal(priv, 0, out=a["zero"][lo:hi])
            np.equal(priv, u(expect), out=a["mine"][lo:hi])
        return blk

    def _strides(self, s: Any) -> List[int]:
        # The strides *s* (next page's index - page's index) worth a run
        # table: those of at least MIN_STRIDE_PAGES pages (counted on every
        # 4th), at most MAX_STRIDES of them.
        hist = np.bincount(
            np.clip(s[::4], -MAX_STRIDE - 1, MAX_STRIDE + 1) + (MAX_STRIDE + 1),
            minlength=2 * MAX_STRIDE + 3,
        )[1:-1]
        hist[MAX_STRIDE] = 0
        strides = np.flatnonzero(hist >= MIN_STRIDE_PAGES // 4)
        if len(strides) > MAX_STRIDES:
            strides = strides[np.argsort(hist[strides])[-MAX_STRIDES:]]
        out: List[int] = (strides - MAX_STRIDE).tolist()
        return out

    def _resolve(self, blk: _Block) -> None:
        # Point the pending lru.next entries of *blk* at the blocks loaded
        # since.
        entries, targets = blk.pending
        slots = self.slot_of[targets >> self.bshift]
        ok = slots >= 0
        if ok.any():
            for part in self.partial:
                # Pages not in the dump stay pending: the chase stops there.
                sel = ok & (slots == part.slot)
                if sel.any():
                    ok[sel] = part.present[targets[sel] - part.first]
            where = slots[ok] * self.bp + (targets[ok] & self.bmask)
            self.arrays["succ"][entries[ok]] = where
            keep = ~ok
            blk.pending = (entries[keep], targets[keep]) if keep.any() else None
        blk.epoch = len(self.by_slot)

    # -------------------------------------------------------------- chase

    def chase(self, w: _Walker, cur: int) -> Tuple[Any, Any, Any, str, int]:
        """
        Follow lru.next from the head; return the runs passed (first entry,
        last entry, stride) and how the chase ended: ``"head"``,
        ``"bad_pointer"``, ``"not_in_dump"`` or ``"cycle"``, with the pointer
        it ended on.
        """
        g = self.g
        head = w.head
        lru, size, vmemmap = g.lru, g.page_size, g.vmemmap
        end = g.end
        bshift, bmask, bp = self.bshift, self.bmask, self.bp
        blocks = self.blocks
        starts: List[int] = []
        ends: List[int] = []
        steps: List[int] = []
        sa, ea, ta = starts.append, ends.append, steps.append
        done: List[Any] = []
        src: Optional[_Block] = None
        read_u64 = self.reader.prog.read_u64
        while True:
            if cur == head:
                how = "head"
                break
            page = cur - lru
            if page < vmemmap or page >= end or (page - vmemmap) % size:
                how = "bad_pointer"
                break
            pfn = (page - vmemmap) // size
            blk = blocks.get(pfn >> bshift)
            if blk is None:
                blk = self.load(pfn >> bshift, w.frames_per_page > 1)
            elif src is not None and src.pending is not None:
                if src.epoch < len(self.by_slot):
                    # lru.next pointers of the block just left may point into
                    # blocks loaded since it was parsed.
                    self._resolve(src)
            if blk.present is not None and not blk.present[pfn - blk.first]:
                how = "not_in_dump"
                break
            c = blk.slot * bp + (pfn & bmask)
            succ, runend = self.arrays["succ"].data, self.arrays["runend"].data
            again = False
            # The tight loop: one pass per run (a run is often one page). A
            # run start passed is marked by making its run end negative; a
            # page passed twice inside a run is found by the checks, and the
            # chase stops one run later.
            while True:
                e = runend[c]
                if e < 0:
                    again = True
                    break
                runend[c] = -1 - e
                sa(c)
                ea(e)
                ta(succ[c] - c)
                n = succ[e]
                if n < 0:
                    break
                c = n
            if again:
                how = "cycle"
                blk = self.by_slot[c >> bshift]
                cur = vmemmap + (blk.first + (c & bmask)) * size + lru
                break
            src = self.by_slot[e >> bshift]
            # Leaving the blocks loaded (or the list): the raw lru.next.
            cur = read_u64(vmemmap + (src.first + (e & bmask)) * size + lru)
            if len(starts) >= _FLUSH:
                done.append(_arrays(starts, ends, steps))
                starts.clear()
                ends.clear()
                steps.clear()
        done.append(_arrays(starts, ends, steps))
        empty = np.zeros(0, dtype=np.int64)
        s = np.concatenate([x[0] for x in done] + [empty])
        e_ = np.concatenate([x[1] for x in done] + [empty])
        t = np.concatenate([x[2] for x in done] + [empty])
        return s, e_, t, how, cur

    # -------------------------------------------------------------- check

    def _subpages(self, p: Any, c: Any, fpp: int) -> Tuple[Any, Any]:
        # For the 2 MiB pages at PFNs *p* (entries *c*): how many of their
        # frames are not marked offline, and whether some of their struct
        # pages are not in the dump (then 0 frames are counted, as the judge).
        bad = np.zeros(len(p), dtype=np.int64)
        fault = np.zeros(len(p), dtype=bool)
        if self.cs is None:
            used = len(self.by_slot) * self.bp
            self.cs = np.zeros(used + 1, dtype=np.int32)
            np.cumsum(self.arrays["notoff"][:used], out=self.cs[1:])
        k = c & self.bmask
        ok = (k + fpp <= self.bp) & (p + fpp <= self.g.max_pfn)
        ok &= c + fpp < len(self.cs)
        for part in self.partial:
            ok &= (c >> self.bshift) != part.slot
        inside = np.flatnonzero(ok)
        if len(inside):
            # Within a block read whole (the same block up to c + fpp).
            slot_ok = (c[inside] + fpp - 1) >> self.bshift == c[inside] >> self.bshift
            inside = inside[slot_ok]
            bad[inside] = self.cs[c[inside] + fpp] - self.cs[c[inside]]
            ok[:] = False
            ok[inside] = True
        r, g = self.reader, self.g
        assert r.page_type_word is not None
        mask, want = np.uint64(self.mask), np.uint64(self.want)
        for i in np.flatnonzero(~ok).tolist():
            # Across blocks or holes: read the struct pages themselves (the
            # dump holds or misses whole pages of the memory map, so this
            # faults where the judge's reads of page_type fault).
            first = int(p[i])
            try:
                data = r.prog.read(g.vmemmap + first * g.page_size, fpp * g.page_size)
                words = np.frombuffer(data, dtype="<u8")[r.page_type_word :: r.stride]
            except FaultError:
                fault[i] = True
                continue
            bad[i] = int(np.count_nonzero((words & mask) != want))
        return bad, fault

    def run(
        self, w: _Walker, head_next: int, progress: Optional[Callable[[int], None]]
    ) -> bool:
        """Walk and check; return whether the list came back to its head."""
        g, prog = self.g, self.reader.prog
        size, lru = g.page_size, g.lru
        fpp = w.frames_per_page
        expect = w.expect_private
        tick = time.monotonic()
        starts, ends, steps, how, cur = self.chase(w, head_next)
        a = self.arrays
        if len(starts):
            # Unmark the run starts for the next list.
            runend = a["runend"]
            runend[starts] = -1 - runend[starts]
        # The list order (entries), run by run.
        single = starts == ends
        steps = np.where(single, 0, steps)
        lengths = np.ones(len(starts), dtype=np.int64)
        multi = ~single
        lengths[multi] = (ends[multi] - starts[multi]) // steps[multi] + 1
        n = int(lengths.sum())
        if len(starts) == n:
            ci = starts
        else:
            offsets = np.cumsum(lengths) - lengths
            ci = np.repeat(starts - offsets * steps, lengths)
            ci += np.arange(n, dtype=np.int64) * np.repeat(steps, lengths)
        del starts, ends, steps, single, multi, lengths
        # A page passed twice: the walk stops there.
        mark = np.zeros(len(self.by_slot) * self.bp, dtype=bool)
        mark[ci] = True
        if int(np.count_nonzero(mark)) != n:
            o = np.argsort(ci, kind="stable")
            twice = np.flatnonzero(ci[o][1:] == ci[o][:-1])
            n = int(o[twice + 1].min())
            how = "cycle"
            blk = self.by_slot[int(ci[n]) >> self.bshift]
            cur = g.vmemmap + (blk.first + (int(ci[n]) & self.bmask)) * size + lru
            ci = ci[:n]
        del mark
        firsts = np.array([b.first for b in self.by_slot] + [0], dtype=np.int64)
        pfns = firsts[ci >> self.bshift] + (ci & self.bmask)

        def lru_of(i: int) -> int:
            return w.head if i < 0 else g.vmemmap + int(pfns[i]) * size + lru

        # The first MAX_DETAILED of each kind and how many in all.
        found: Dict[str, List[int]] = {}
        counted: Dict[str, int] = {}

        def note(kind: str, mask: Any, c0: int) -> int:
            hits = np.flatnonzero(mask)
            if len(hits):
                counted[kind] = counted.get(kind, 0) + len(hits)
                got = found.setdefault(kind, [])
                if len(got) < MAX_DETAILED:
                    got.extend((hits[: MAX_DETAILED - len(got)] + c0).tolist())
            return len(hits)

        base = np.uint64(g.vmemmap + lru)
        bad_counts: Dict[int, int] = {}  # 2 MiB pages: index -> frames
        not_offline = matches = zeros = 0
        for c0 in range(0, n, _CHUNK):
            c1 = min(n, c0 + _CHUNK)
            p, c = pfns[c0:c1], ci[c0:c1]
            # lru.prev must be the lru of the node before (the head first).
            want = np.empty(c1 - c0, dtype=np.uint64)
            want[0] = lru_of(c0 - 1)
            want[1:] = p[:-1].astype(np.uint64) * np.uint64(size) + base
            note("prev_mismatch", a["prev"][c] != want, c0)
            if fpp > 1:
                note("misaligned", p % fpp != 0, c0)
                if self.check_offline:
                    bad, fault = self._subpages(p, c, fpp)
                    note("subpages", fault, c0)
                    not_offline += int(bad.sum())
                    for i in np.flatnonzero(bad)[:MAX_DETAILED].tolist():
                        bad_counts[c0 + i] = int(bad[i])
                    note("not_offline", bad, c0)
            elif self.check_offline:
                not_offline += note("not_offline", a["notoff"][c], c0)
            if expect is not None:
                mine, zero = a["mine"][c], a["zero"][c]
                m = int(np.count_nonzero(mine))
                other = note("bad_private", ~(mine | zero), c0)
                matches += m
                zeros += c1 - c0 - m - other
            if progress is not None and not c1 & 0xFFFF:
                now = time.monotonic()
                if now - tick > 0.5:
                    progress(c1)
                    tick = now
        # The findings in the judge's order: by node, then as step() checks.
        events: List[Tuple[int, int, str, int, str]] = []
        for i in found.get("prev_mismatch", ()):
            prev = prog.read_u64(lru_of(i) + 8)
            events.append(
                (i, 0, "prev_mismatch", lru_of(i), _msg_prev(i, prev, lru_of(i - 1)))
            )
        for i in found.get("misaligned", ()):
            pfn = int(pfns[i])
            events.append(
                (i, 1, "misaligned", lru_of(i) - lru, _msg_misaligned(i, pfn))
            )
        for i in found.get("subpages", ()):
            pfn = int(pfns[i])
            events.append((i, 2, "not_in_dump", lru_of(i) - lru, _msg_subpages(i, pfn)))
        for i in found.get("not_offline", ()):
            pfn = int(pfns[i])
            bad = bad_counts.get(i, 1)
            events.append(
                (i, 2, "not_offline", lru_of(i) - lru, _msg_not_offline(i, bad, pfn))
            )
        for i in found.get("bad_private", ()):
            assert expect is not None
            page = lru_of(i) - lru
            private = prog.read_u64(page + g.private)
            events.append((i, 3, "bad_private", page, _msg_private(i, private, expect)))
        rec = w.rec
        for i, _, kind, address, message in sorted(events):
            rec.add(kind, i, address, message)
        # Those not kept are counted.
        for label, number in counted.items():
            kind = "not_in_dump" if label == "subpages" else label
            rec.counts[kind] += number - len(found[label])
        w.pages = n
        w.prev_node = lru_of(n - 1)
        w.not_offline += not_offline
        w.private_matches += matches
        w.private_zero += zeros
        if how == "head":
            return True
        prev_node = w.prev_node
        if how == "bad_pointer":
            rec.add("bad_pointer", n, cur, _msg_bad_pointer(n, cur, prev_node))
        else:
            page = cur - lru
            at = g.page_to_pfn(page)
            assert at is not None
            message = (_msg_cycle if how == "cycle" else _msg_not_in_dump)(n, page, at)
            rec.add(how, n, cur if how == "cycle" else page, message)
        return False


def _slow_loop(
    w: _Walker, cur: int, progress: Optional[Callable[[int], None]]
) -> Optional[int]:
    tick = time.monotonic()
    head = w.head
    while cur != head:
        nxt = w.step(cur)
        if nxt is None:
            return None
        cur = nxt
        if progress is not None and not w.pages & 0xFFFF:
            now = time.monotonic()
            if now - tick > 0.5:
                progress(w.pages)
                tick = now
    return cur


def walk_list(
    prog: Program,
    geometry: PageGeometry,
    head: int,
    kind: str,
    frames_per_page: int = 1,
    *,
    reader: "Optional[object]" = None,
    expect_private: Optional[int] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> ListWalk:
    """
    Walk one list of ballooned pages and verify every page on it.

    :param geometry: the kernel's memory map
        (:func:`~drgn_balloon.pages.page_geometry`).
    :param head: address of the ``struct list_head``.
    :param kind: ``"4k"`` or ``"2m"``.
    :param frames_per_page: 4 KiB frames per page on this list (1 or 512).
    :param reader: a :class:`BulkPageReader` (the default) or an
        :class:`ObjectPageReader`. Pass the same bulk reader for all the
        lists of a balloon: it parses each block of the memory map once.
    :param expect_private: the value ``page->private`` holds for a page of
        this balloon (``&balloon.b_dev_info`` with balloon compaction), or
        ``None`` not to check it.
    :param progress: called now and then with the number of pages walked.
    """
    g = geometry
    if reader is None:
        reader = BulkPageReader(prog, g)
    w = _Walker(g, head, kind, frames_per_page, reader, expect_private)
    try:
        head_next = prog.read_u64(head)
        head_prev = prog.read_u64(head + 8)
    except FaultError:
        w.rec.add("not_in_dump", -1, head, f"list head {head:#x} is not in the dump")
        return w.result()._replace(offline_checked=False)
    if head_next == 0 or head_prev == 0:
        w.rec.add("uninitialised", -1, head, f"list head {head:#x} is NULL")
        return w.result()._replace(offline_checked=False)
    bp = getattr(reader, "block_pages", 0)
    if isinstance(reader, BulkPageReader) and np is not None and not bp & (bp - 1):
        # One parse of the memory map for all the lists of a balloon: the
        # reader keeps it (private is only checked on 4 KiB lists).
        vector = reader.vector
        if vector is None or (
            expect_private is not None and vector.expect != expect_private
        ):
            vector = reader.vector = _VectorWalk(reader, expect_private)
        if vector.run(w, head_next, progress):
            w.finish(head, head_prev)
        return w.result()
    end = _slow_loop(w, head_next, progress)
    if end is not None:
        w.finish(end, head_prev)
    return w.result()
