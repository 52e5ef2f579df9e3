"""
Page-by-page verification
-------------------------

The ``drgn_balloon.walk`` module walks a list of ballooned pages (linked
through ``page->lru``) and checks every page on it: the links agree in both
directions, every pointer lands on a ``struct page`` in the memory map, no
page is passed twice, each page is marked offline where the kernel marks
ballooned pages, and ``page->private`` points to the balloon where the
kernel sets it.

Walks are bounded: a bitmap of the PFNs already passed stops a cyclic list at
the first repeated page, so no list, however corrupt, takes more than
``max_pfn`` steps.

Two readers do the same walk. :class:`BulkPageReader` reads the memory map in
large blocks and parses the bytes (fast); :class:`ObjectPageReader` reads each
page as a drgn ``Object`` (what a drgn user would write). Both feed one loop,
so they give identical results.
"""

import struct
import time
from array import array
from collections import OrderedDict
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from drgn import FaultError, Object, Program

from .pages import PageGeometry

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
        return value.value_() & 0xFFFFFFFF

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
    # The state of one walk and the one place that judges a node. Both the
    # generic loop and the inlined fast loop of the bulk reader go through
    # step() for every node that is not plainly fine, so they find the same.

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
        self.seen = bytearray(geometry.max_pfn)

    def step(self, cur: int) -> Optional[int]:
        """Judge the node at *cur*; return the next node, or ``None`` to stop."""
        g, rec, pages = self.g, self.rec, self.pages
        lru = g.lru
        prev_node = self.prev_node
        pfn = g.page_to_pfn(cur - lru)
        if pfn is None:
            rec.add(
                "bad_pointer",
                pages,
                cur,
                f"node {pages}: pointer {cur:#x} (from {prev_node:#x}) "
                "is not a struct page in the memory map",
            )
            return None
        if self.seen[pfn]:
            rec.add(
                "cycle",
                pages,
                cur,
                f"node {pages}: page {cur - lru:#x} (PFN {pfn:#x}) "
                "was already passed: the list is cyclic",
            )
            return None
        self.seen[pfn] = 1
        reader = self.reader
        try:
            node = reader.node(pfn)  # type: ignore[attr-defined]
        except FaultError:
            rec.add(
                "not_in_dump",
                pages,
                cur - lru,
                f"node {pages}: struct page {cur - lru:#x} (PFN {pfn:#x}) "
                "is not in the dump",
            )
            return None
        if node.prev != prev_node:
            rec.add(
                "prev_mismatch",
                pages,
                cur,
                f"node {pages}: lru.prev is {node.prev:#x}, expected {prev_node:#x}",
            )
        fpp = self.frames_per_page
        if fpp > 1 and pfn % fpp:
            rec.add(
                "misaligned",
                pages,
                cur - lru,
                f"node {pages}: 2 MiB page at PFN {pfn:#x} is not aligned",
            )
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
                    rec.add(
                        "not_in_dump",
                        pages,
                        cur - lru,
                        f"node {pages}: subpages of PFN {pfn:#x} are not in the dump",
                    )
                bad = 0
                if any(not offline.is_offline(t) for t in types):
                    bad = sum(
                        1
                        for k in range(fpp)
                        if not offline.is_offline(
                            reader.node(pfn + k).page_type or 0  # type: ignore[attr-defined]
                        )
                    )
            if bad:
                self.not_offline += bad
                rec.add(
                    "not_offline",
                    pages,
                    cur - lru,
                    f"node {pages}: {bad} frame(s) at PFN {pfn:#x} not marked offline",
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
                    f"node {pages}: private is {node.private:#x}, "
                    f"expected {expect:#x} or 0",
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


def _fast_loop(
    w: _Walker, cur: int, progress: Optional[Callable[[int], None]]
) -> Optional[int]:
    # The common case of a 4 KiB list read in bulk, inlined: a node whose
    # pointer lands on a struct page of a block in memory, not passed yet,
    # whose prev agrees, marked offline and with the expected private. Any
    # other node goes to w.step(). Returns where it stopped (head or None).
    reader = w.reader
    assert isinstance(reader, BulkPageReader)
    g = w.g
    head = w.head
    seen = w.seen
    size = g.page_size
    stride = reader.stride
    block_pages = reader.block_pages
    lru_word = reader.lru
    priv_delta = reader.private - reader.lru
    pt_word = reader.page_type_word
    pt_delta = (pt_word - reader.lru) if pt_word is not None else 0
    pt_shift = reader.page_type_shift
    offline = g.offline
    if offline is None or pt_word is None:
        return _slow_loop(w, cur, progress)
    # The offline test on the whole 64-bit word holding page_type.
    if offline.mode == "pgty":
        mask = 0xFF000000 << pt_shift
        want = offline.value << (24 + pt_shift)
    else:
        mask = (0xF0000000 | offline.value) << pt_shift
        want = 0xF0000000 << pt_shift
    expect = w.expect_private
    check_private = expect is not None
    base = g.vmemmap + g.lru  # address of the lru of PFN 0
    # struct page is 64 bytes on x86_64 (a power of two): shift and mask
    # instead of divide and modulo.
    page_shift = size.bit_length() - 1 if size & (size - 1) == 0 else None
    lo = hi = 0  # lru addresses covered by the current block
    first_pfn = count = 0
    runs: Optional[_Runs] = None
    runs_by_block: Dict[int, _Runs] = {}  # by the block's first PFN
    next_report = 0x10000
    words: memoryview = memoryview(b"")
    prev_node = w.prev_node
    pages = w.pages
    fast = 0  # nodes accepted here: each had private == expect
    tick = time.monotonic()
    while cur != head:
        if lo <= cur < hi:
            delta = cur - lo
            if page_shift is not None:
                k = delta >> page_shift
                aligned = not delta & (size - 1)
            else:
                k, rem = divmod(delta, size)
                aligned = not rem
            if aligned:
                pfn = first_pfn + k
                if not seen[pfn]:
                    i = k * stride + lru_word
                    if (
                        words[i + 1] == prev_node
                        and words[i + pt_delta] & mask == want
                        and (not check_private or words[i + priv_delta] == expect)
                    ):
                        seen[pfn] = 1
                        pages += 1
                        fast += 1
                        prev_node = cur
                        cur = words[i]
                        step_ = cur - prev_node
                        if (step_ == size or step_ == -size) and lo <= cur < hi:
                            # A run of adjacent struct pages (the buddy
                            # allocator hands out order-0 pages in PFN order):
                            # check up to RUN_CHUNK of them at once.
                            if runs is None:
                                runs = runs_by_block.get(first_pfn)
                                if runs is None or runs.words is not words:
                                    if len(runs_by_block) >= reader.max_blocks:
                                        runs_by_block.pop(next(iter(runs_by_block)))
                                    runs = runs_by_block[first_pfn] = _Runs(
                                        words,
                                        lo,
                                        count,
                                        size,
                                        stride,
                                        lru_word,
                                        pt_delta,
                                        priv_delta,
                                        mask,
                                        want,
                                        expect,
                                        first_pfn,
                                    )
                            r = runs.run(seen, (cur - lo) // size, step_ > 0)
                            if r:
                                pages += r
                                fast += r
                                prev_node = cur + (r - 1) * step_
                                i = ((prev_node - lo) // size) * stride + lru_word
                                cur = words[i]
                        if pages >= next_report:
                            next_report += 0x10000
                            now = time.monotonic()
                            if progress is not None and now - tick > 0.5:
                                progress(pages)
                                tick = now
                        continue
        else:
            pfn_any = g.page_to_pfn(cur - g.lru)
            if pfn_any is not None:
                block = pfn_any // block_pages
                loaded = reader.blocks.get(block)
                if loaded is None and block not in reader.blocks:
                    loaded = reader._load(block)
                if loaded is not None:
                    words = loaded
                    runs = None
                    first_pfn = block * block_pages
                    count = len(words) // stride
                    lo = base + first_pfn * size
                    hi = lo + count * size
                    continue
        # Anything else: the general judgement.
        w.prev_node, w.pages = prev_node, pages
        nxt = w.step(cur)
        if nxt is None:
            break
        prev_node, pages = w.prev_node, w.pages
        cur = nxt
    else:
        w.prev_node, w.pages = prev_node, pages
        if check_private:
            w.private_matches += fast
        return cur
    if check_private:
        w.private_matches += fast
    return None


#: Nodes checked at once in a run of adjacent struct pages.
RUN_CHUNK = 512


class _Runs:
    # Checks runs of adjacent struct pages in one block with byte
    # comparisons (memcmp in C) against a template of the lru addresses of
    # the block's pages, built once per block from small ints.

    def __init__(
        self,
        words: memoryview,
        lo: int,
        count: int,
        size: int,
        stride: int,
        lru_word: int,
        pt_delta: int,
        priv_delta: int,
        mask: int,
        want: int,
        expect: Optional[int],
        first_pfn: int,
    ) -> None:
        self.words = words
        self.halves = words.cast("B").cast("I")
        self.lo, self.count, self.size, self.stride = lo, count, size, stride
        self.lru_word, self.pt_delta, self.priv_delta = lru_word, pt_delta, priv_delta
        self.mask, self.want, self.expect = mask, want, expect
        self.first_pfn = first_pfn
        self.high = lo >> 32
        low = lo & 0xFFFFFFFF
        # The lru addresses of the block's pages share their upper 32 bits
        # unless the block straddles a 4 GiB boundary: then no runs here.
        self.ok = low + count * size <= 1 << 32
        self.template = (
            memoryview(array("I", range(low, low + count * size, size)))
            if self.ok
            else None
        )
        self.high_bytes = struct.pack("<I", self.high)
        self.private_bytes = struct.pack("<Q", expect) if expect is not None else b""

    def _col(self, view: memoryview, start: int, step: int, n: int) -> bytes:
        stop = start + n * step
        return view[start : stop if stop >= 0 else None : step].tobytes()

    def run(self, seen: bytearray, k0: int, forward: bool) -> int:
        # Page k0 of the block is a node whose previous node is page k0 -/+ 1.
        # Return how many nodes from k0 on, at most RUN_CHUNK, continue the
        # run and are plainly fine (each links to the next page of the run
        # and back to the one before, not passed yet, offline, expected
        # private), marking them seen; or 0, changing nothing. The last
        # node's next is not checked: the caller follows it.
        d = 1 if forward else -1
        count = self.count
        prev_k = k0 - d
        if not self.ok or not 0 <= prev_k < count:
            return 0
        m = min(RUN_CHUNK, count - k0 if forward else k0 + 1)
        if m < 2:
            return 0
        template = self.template
        assert template is not None
        halves = self.halves
        s2 = 2 * self.stride * d
        i0 = 2 * (k0 * self.stride + self.lru_word)
        nexts = self._col(halves, i0, s2, m)
        expected = self._col(template, k0 + d, d, m)
        # At the block's edge the template ends one page early: the last
        # node's next is the caller's to follow anyway.
        if nexts[: len(expected)] == expected:
            r = m
        else:
            # The first node whose next leaves the run ends it.
            good, bad = 0, m
            while bad - good > 1:
                mid = (good + bad) // 2
                if nexts[: 4 * mid] == expected[: 4 * mid]:
                    good = mid
                else:
                    bad = mid
            r = good + 1
            if r < 2:
                return 0
        if (
            self._col(halves, i0 + 1, s2, r - 1) != self.high_bytes * (r - 1)
            or self._col(halves, i0 + 2, s2, r) != self._col(template, prev_k, d, r)
            or self._col(halves, i0 + 3, s2, r) != self.high_bytes * r
        ):
            return 0
        pfn0 = self.first_pfn + k0
        first, last = (pfn0, pfn0 + r - 1) if forward else (pfn0 - r + 1, pfn0)
        if seen.find(1, first, last + 1) != -1:
            return 0
        words = self.words
        ws = self.stride * d
        w0 = k0 * self.stride + self.lru_word
        types = self._col(words, w0 + self.pt_delta, ws, r)
        if types != types[:8] * r:
            if any(
                t & self.mask != self.want
                for t in set(words[w0 + self.pt_delta :: ws][:r].tolist())
            ):
                return 0
        elif int.from_bytes(types[:8], "little") & self.mask != self.want:
            return 0
        if (
            self.expect is not None
            and self._col(words, w0 + self.priv_delta, ws, r) != self.private_bytes * r
        ):
            return 0
        seen[first : last + 1] = b"\x01" * r
        return r


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

    :param geometry: the kernel's memory map (:func:`~drgn_balloon.pages.page_geometry`).
    :param head: address of the ``struct list_head``.
    :param kind: ``"4k"`` or ``"2m"``.
    :param frames_per_page: 4 KiB frames per page on this list (1 or 512).
    :param reader: a :class:`BulkPageReader` (the default) or an
        :class:`ObjectPageReader`.
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
    if isinstance(reader, BulkPageReader) and frames_per_page == 1:
        end = _fast_loop(w, head_next, progress)
    else:
        end = _slow_loop(w, head_next, progress)
    if end is not None:
        w.finish(end, head_prev)
    return w.result()
