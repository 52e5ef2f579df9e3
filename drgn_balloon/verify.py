"""
Verifying the balloon
---------------------

The ``drgn_balloon.verify`` module walks every list of the balloon
(:mod:`drgn_balloon.walk`) and checks that the pages found add up to
``balloon.size``: the 4 KiB list, plus ``b_dev_info.isolated_pages`` (pages
taken off the list for migration, v5.3+), plus 512 frames for each page on
the 2 MiB list (kernel-layouts.md §1.C2, "Cross-check").
"""

from typing import Callable, NamedTuple, Optional, Tuple

from drgn import Program

from .balloon import BalloonState
from .drivers.hv import OfflineCensus
from .layout import balloon_lists
from .pages import PageGeometry, page_geometry
from .walk import BulkPageReader, Finding, ListWalk, ObjectPageReader, walk_list

__all__ = ["Verification", "verify_balloon"]


class Verification(NamedTuple):
    """The result of verifying the balloon page by page."""

    lists: Tuple[ListWalk, ...]
    isolated_pages: int
    #: Frames found: pages on the lists (2 MiB pages count 512) + isolated.
    frames: int
    #: ``balloon.size`` it was compared with.
    size_frames: int
    findings: Tuple[Finding, ...]
    #: For a driver that keeps no list (hv_balloon): the pages marked
    #: offline in the memory map, which must be at least its count.
    census: Optional[OfflineCensus] = None

    @property
    def verified(self) -> bool:
        """Every list walked to its end, nothing wrong, frames == size (for
        a census: it was taken and found nothing wrong)."""
        if self.census is not None:
            return self.census.checked and not self.findings
        return (
            all(w.complete for w in self.lists)
            and not self.findings
            and self.frames == self.size_frames
        )

    def pages(self, kind: str) -> int:
        """Pages found on the ``"4k"`` or ``"2m"`` list."""
        return sum(w.pages for w in self.lists if w.kind == kind)


def _vmmemctl_verification(state: BalloonState) -> Verification:
    # vmmemctl's pages are in chunk arrays; read_vmmemctl() walked them all
    # when it chose the layout (drgn_balloon.vmmemctl).
    w = state.vmmemctl
    assert w is not None
    walks = []
    for i, pages in enumerate(w.pages):
        found: Tuple[Finding, ...] = ()
        counts = {}
        if w.bad_entries and i == 0:
            counts = {"bad_pointer": w.bad_entries}
            found = (
                Finding(
                    "bad_pointer",
                    "4k",
                    -1,
                    0,
                    f"{w.bad_entries} chunk entries are not struct page pointers",
                ),
            )
        walks.append(
            ListWalk(
                "4k" if i == 0 else "2m",
                state.balloon.address_,
                1 if i == 0 else 512,
                pages,
                w.complete,
                False,
                0,
                0,
                found,
                counts,
            )
        )
    findings = [f for x in walks for f in x.findings]
    if w.frames != state.size_frames:
        findings.append(
            Finding(
                "size_mismatch",
                "",
                -1,
                0,
                f"chunks hold {w.frames} frames, nPages is {state.size_frames}",
            )
        )
    return Verification(tuple(walks), 0, w.frames, state.size_frames, tuple(findings))


def _per_list(
    progress: Optional[Callable[[str, int], None]], kind: str
) -> Optional[Callable[[int], None]]:
    # The walk reports pages walked; the caller wants (list kind, pages).
    if progress is None:
        return None

    def report(pages: int) -> None:
        progress(kind, pages)

    return report


def verify_balloon(
    prog: Program,
    state: BalloonState,
    *,
    fast: bool = True,
    geometry: Optional[PageGeometry] = None,
    progress: Optional[Callable[[str, int], None]] = None,
) -> Verification:
    """
    Walk every list of ballooned pages and compare with ``balloon.size``.

    :param state: from :func:`~drgn_balloon.balloon.balloon_state`.
    :param fast: read the memory map in bulk (``False``: one drgn ``Object``
        per page, the slow reference).
    :param progress: called with (list kind, pages walked) during long walks.
    """
    if state.vmmemctl is not None:
        return _vmmemctl_verification(state)
    g = geometry
    if g is None:
        g = page_geometry(prog, compaction_era=state.era.dev_info)
    walks = []
    # One reader for all the lists: the bulk reader parses each block of the
    # memory map once.
    reader: object
    try:
        reader = BulkPageReader(prog, g) if fast else ObjectPageReader(prog, g)
    except ValueError:  # struct page not in 8-byte words: read Objects
        reader = ObjectPageReader(prog, g)
    for entry in balloon_lists(state.balloon, state.era):
        head = entry.head.address_
        walks.append(
            walk_list(
                prog,
                g,
                head,
                entry.kind,
                entry.frames_per_page,
                reader=reader,
                # balloon_page_insert() sets private to the balloon's
                # balloon_dev_info on 4 KiB pages only (v5.3+).
                expect_private=state.dev_info_address if entry.kind == "4k" else None,
                progress=_per_list(progress, entry.kind),
            )
        )
    findings = [f for w in walks for f in w.findings]
    frames = sum(w.frames for w in walks) + state.isolated_pages
    if all(w.complete for w in walks) and frames != state.size_frames:
        parts = " + ".join(
            f"{w.pages} x {w.frames_per_page}"
            if w.frames_per_page > 1
            else str(w.pages)
            for w in walks
        )
        findings.append(
            Finding(
                "size_mismatch",
                "",
                -1,
                0,
                f"pages on the lists add up to {frames} frames ({parts}"
                + (
                    f" + {state.isolated_pages} isolated"
                    if state.isolated_pages
                    else ""
                )
                + f"), but balloon.size is {state.size_frames}",
            )
        )
    for what, value in (("size", state.size_frames), ("target", state.target_frames)):
        # Neither can exceed the guest's memory: the driver only balloons
        # pages it allocated, and the host sets targets below the guest size.
        if value > g.max_pfn:
            findings.append(
                Finding(
                    "implausible",
                    "",
                    -1,
                    0,
                    f"balloon.{what} is {value} frames, more than the guest's "
                    f"{g.max_pfn} (max_pfn): the balloon is corrupt",
                )
            )
    return Verification(
        tuple(walks), state.isolated_pages, frames, state.size_frames, tuple(findings)
    )
