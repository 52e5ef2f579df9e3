"""
The report
----------

The ``drgn_balloon.report`` module gathers everything into one
:class:`Report`: the guest, the balloon's state, its verification, the
kernel's page accounting and a verdict in plain words. Every entry point
(script, drgn command, console script) builds this one model and hands it to
a renderer (:mod:`drgn_balloon.render`).
"""

import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from drgn import Program, ProgramFlags

from .balloon import BalloonState, balloon_state, decode_capabilities
from .memory import MemoryAccounting, memory_accounting
from .system import dmi_string, hypervisor, kernel_release
from .verify import Verification, verify_balloon
from .walk import Finding

__all__ = ["SCHEMA_VERSION", "Report", "balloon_report", "human_bytes", "verdict"]

#: Version of the JSON document (see README, "JSON schema"). Bumped when a
#: key changes meaning or disappears; adding keys does not bump it.
SCHEMA_VERSION = 1

#: How often a live kernel's balloon is read again when it moved under the
#: walk.
LIVE_RETRIES = 3


class Report(NamedTuple):
    """Everything the report says."""

    release: str
    live: bool
    core_dump: Optional[str]
    hypervisor: Optional[str]
    dmi_vendor: Optional[str]
    dmi_product: Optional[str]
    state: BalloonState
    #: ``None`` when the walk was skipped (``--no-verify``).
    verification: Optional[Verification]
    memory: MemoryAccounting
    #: Whether the figures moved between reads (live kernel only).
    moved: bool
    verdict: str

    @property
    def findings(self) -> List[Finding]:
        """Everything the verification found wrong."""
        return list(self.verification.findings) if self.verification else []

    def to_dict(self) -> Dict[str, Any]:
        """The JSON document (schema :data:`SCHEMA_VERSION`)."""
        return _to_dict(self)


def human_bytes(nbytes: int) -> str:
    """A size in binary units, e.g. ``"156.2 MiB"`` (bytes as a whole number)."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _counted_in_balloon_line(
    state: BalloonState, memory: MemoryAccounting, verification: Optional[Verification]
) -> int:
    # NR_BALLOON_PAGES (v6.16+) counts the 4 KiB pages that go through the
    # balloon core, not vmw_balloon's 2 MiB pages (kernel-layouts.md §1.E).
    line = memory.counters.get("Balloon")
    if line is None:
        return 0
    if verification is not None:
        four_k = verification.pages("4k") + verification.isolated_pages
    else:
        four_k = state.size_frames
    return min(line, four_k, state.size_frames)


def verdict(
    state: BalloonState,
    memory: MemoryAccounting,
    verification: Optional[Verification],
    moved: bool = False,
) -> str:
    """The verdict in plain words."""
    size = state.size_frames
    unaccounted = memory.unaccounted
    page = memory.page_size
    if verification is None:
        how = "not verified: the page walk was skipped"
    elif verification.verified:
        how = "verified page by page"
    elif moved:
        how = "not verified: the lists changed while they were walked"
    else:
        n = len(verification.findings)
        how = f"NOT verified: {n} finding{'s' if n != 1 else ''}, see below"
    if size == 0:
        text = "The VMware balloon holds no memory"
        if state.reset_required:
            text += (
                " and a reset is pending: the driver is loaded but the host "
                "has not (yet) answered it"
            )
        text += "."
        if unaccounted:
            text += (
                f" {human_bytes(unaccounted * page)} in use is explained by no "
                "counter, and it is not the balloon's."
            )
        return text
    text = (
        f"The VMware balloon holds {human_bytes(size * 4096)} ({size:,} frames, {how})."
    )
    counted = _counted_in_balloon_line(state, memory, verification)
    hidden = size - counted
    if counted:
        text += " /proc/meminfo's Balloon: line counts " + (
            "all of them." if not hidden else f"{counted:,} of those frames."
        )
    if hidden and unaccounted:
        share = min(hidden * 4096, unaccounted * page) / (unaccounted * page)
        text += (
            f" {'The rest' if counted else 'That'} is {share:.0%} of the "
            f"{human_bytes(unaccounted * page)} that no counter explains."
        )
    elif unaccounted:
        text += (
            f" The {human_bytes(unaccounted * page)} that no counter explains "
            "is not the balloon's."
        )
    text += (
        " This is expected on an overcommitted ESX host: the hypervisor "
        "reclaimed this memory from the guest through the balloon, and it "
        "comes back when the host lowers the target (see Red Hat solution "
        '43729, "Unaccounted memory usage when running Red Hat Enterprise '
        'Linux as a VMware guest").'
    )
    return text


def _live(prog: Program) -> bool:
    try:
        return bool(prog.flags & ProgramFlags.IS_LIVE)
    except AttributeError:
        return False


def balloon_report(
    prog: Program,
    *,
    verify: bool = True,
    fast: bool = True,
    rss: bool = True,
    debug_files: Sequence[str] = (),
    progress: Optional[Callable[[str, int], None]] = None,
) -> Report:
    """
    Build the whole report.

    On a live kernel the balloon may inflate or deflate during the walk: the
    state is read again and the walk repeated (up to :data:`LIVE_RETRIES`
    times) until ``size`` stood still and the lists agreed with it; if they
    never did, the report says the figures moved rather than calling the
    lists corrupt.

    :raises BalloonError: see :func:`~drgn_balloon.balloon.balloon_state`.
    """
    live = _live(prog)
    state = balloon_state(prog, debug_files)
    verification = None
    moved = False
    if verify:
        attempts = LIVE_RETRIES if live else 1
        last = None  # the findings of the previous walk of a still balloon
        for attempt in range(attempts):
            verification = verify_balloon(prog, state, fast=fast, progress=progress)
            if not live:
                break
            after = balloon_state(prog, debug_files)
            stable = after.size_frames == state.size_frames
            found = tuple(
                (f.kind, f.list, f.index, f.address) for f in verification.findings
            )
            if stable and (verification.verified or found == last):
                # Verified, or the same problems twice while the balloon
                # stood still: what the walk found is real.
                moved = False
                break
            last = found if stable else None
            moved = True
            state = after
            if attempt + 1 < attempts:
                time.sleep(0.2)
        if live and moved and verification is not None:
            verification = verification._replace(
                findings=(
                    Finding(
                        "moved",
                        "",
                        -1,
                        0,
                        f"the balloon changed during {LIVE_RETRIES} walks "
                        "(it is inflating or deflating); figures are approximate",
                    ),
                )
            )
    memory = memory_accounting(prog, rss=rss)
    from .debuginfo import core_dump_path

    return Report(
        release=kernel_release(prog),
        live=live,
        core_dump=None if live else core_dump_path(prog),
        hypervisor=hypervisor(prog),
        dmi_vendor=dmi_string(prog, "DMI_SYS_VENDOR"),
        dmi_product=dmi_string(prog, "DMI_PRODUCT_NAME"),
        state=state,
        verification=verification,
        memory=memory,
        moved=moved,
        verdict=verdict(state, memory, verification, moved),
    )


def _walk_dict(w: Any) -> Dict[str, Any]:
    return {
        "kind": w.kind,
        "head": w.head,
        "pages": w.pages,
        "frames": w.frames,
        "frames_per_page": w.frames_per_page,
        "complete": w.complete,
        "offline_checked": w.offline_checked,
        "not_offline": w.not_offline,
        "private_matches": w.private_matches,
        "finding_counts": dict(w.counts),
    }


def _finding_dict(f: Finding) -> Dict[str, Any]:
    return {
        "kind": f.kind,
        "list": f.list,
        "index": f.index,
        "address": f.address,
        "message": f.message,
    }


def _to_dict(r: Report) -> Dict[str, Any]:
    s = r.state
    v = r.verification
    m = r.memory
    kib = m.page_size // 1024
    counters = {k: v_ for k, v_ in m.counters.items()}
    cache = sum(counters.get(k) or 0 for k in ("Buffers", "Cached", "SReclaimable"))
    return {
        "schema_version": SCHEMA_VERSION,
        "kernel": {
            "release": r.release,
            "live": r.live,
            "core_dump": r.core_dump,
            "hypervisor": r.hypervisor,
            "dmi_sys_vendor": r.dmi_vendor,
            "dmi_product_name": r.dmi_product,
        },
        "balloon": {
            "driver": s.driver,
            "module": None
            if s.module is None
            else {
                "name": s.module.name,
                "version": s.module.version,
                "srcversion": s.module.srcversion,
            },
            "builtin": s.module is None,
            "address": s.balloon.address_,
            "era": s.era.name,
            "era_kernels": s.era.kernels,
            "size_frames": s.size_frames,
            "size_bytes": s.size_bytes,
            "target_frames": s.target_frames,
            "target_bytes": s.target_bytes,
            "reset_required": s.reset_required,
            "capabilities": s.capabilities,
            "capabilities_names": (
                None
                if s.capabilities is None
                else decode_capabilities(s.balloon.prog_, s.capabilities)
            ),
            "offered_capabilities": s.offered_capabilities,
            "max_page_size": s.max_page_size,
            "batch_max_pages": s.batch_max_pages,
            "shrinker_enabled": s.shrinker_enabled,
            "shrinker_registered": s.shrinker_registered,
            "stats": s.stats,
            "isolated_pages": s.isolated_pages,
            "pages_4k": v.pages("4k") if v else None,
            "pages_2m": v.pages("2m") if v else None,
            "frames_on_lists": v.frames if v else None,
            "verified": bool(v and v.verified),
            "verification_skipped": v is None,
            "moved": r.moved,
            "lists": [_walk_dict(w) for w in v.lists] if v else [],
            "findings": [_finding_dict(f) for f in r.findings],
        },
        "memory": {
            "page_size": m.page_size,
            "total_pages": m.total,
            "free_pages": m.free,
            "used_pages": m.used,
            "counters_pages": counters,
            "explained_pages": m.explained,
            "unaccounted_pages": m.unaccounted,
            "rss_pages": m.rss,
            "processes": m.processes,
            "hugepages": [
                {"size_kib": size, "total": total, "free": free}
                for size, total, free in m.hugepages
            ],
            "free_kib": {
                "total": m.total * kib,
                "used": max(m.total - m.free - cache, 0) * kib,
                "free": m.free * kib,
                "shared": (counters.get("Shmem") or 0) * kib,
                "buff_cache": cache * kib,
            },
        },
        "verdict": r.verdict,
    }
