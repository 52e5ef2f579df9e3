"""
The other hypervisors' balloons in the report
---------------------------------------------

The ``drgn_balloon.hypervisors`` module turns what the readers of
:mod:`drgn_balloon.drivers` find (virtio_balloon, one per device; hv_balloon;
the Xen balloon; the pseries CMM) into the report's
:class:`~drgn_balloon.report.Balloon` and
:class:`~drgn_balloon.drivers.DriverProbe` values, verified the same way as
the VMware balloon: each driver's page list walked with the bounded walker and
compared with the driver's own count (hv_balloon keeps no list: a census of
the pages marked offline). A loaded driver module whose debug info drgn has
not loaded is looked for where the VMware module is
(:func:`~drgn_balloon.debuginfo.load_module_debug_info`). Facts and sources:
docs/balloon-drivers.md.
"""

import time
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, TypeVar

from drgn import Program, ProgramFlags

from .debuginfo import load_module_debug_info
from .drivers import (
    CmmBalloon,
    DriverProbe,
    HvBalloon,
    PageListCheck,
    VirtioBalloon,
    XenBalloon,
    ZoneTotals,
    find_virtio_balloons,
    read_cmm,
    read_hv_balloon,
    read_xen_balloon,
    verify_cmm,
    verify_hv_balloon,
    verify_virtio_balloon,
    verify_xen_balloon,
    zone_totals,
)
from .drivers.common import READ_ERRORS
from .drivers.probe import (
    absent,
    probe_cmm,
    probe_hv,
    probe_virtio,
    probe_xen,
    unreadable,
)
from .errors import BalloonError, MissingDebugInfo
from .report import LIVE_RETRIES, Balloon, ModuleVersion, moved_finding
from .system import find_loaded_module
from .verify import Verification
from .walk import Finding

__all__ = ["OtherBalloons", "other_balloons"]

#: The modules each driver's state is in (Debian builds the Xen balloon in).
MODULES = {
    "virtio_balloon": ("virtio", "virtio_balloon"),
    "hv_balloon": ("hv_balloon",),
    "pseries_cmm": ("cmm",),
}

_T = TypeVar("_T")


class OtherBalloons(NamedTuple):
    """The other drivers' balloons and probes, and the guest's zones."""

    balloons: Tuple[Balloon, ...]
    probes: Tuple[DriverProbe, ...]
    zones: Optional[ZoneTotals]
    #: Debug info a present driver needs and that is missing, or ``None``.
    error: Optional[BalloonError]


def _load_modules(
    prog: Program, names: Sequence[str], debug_files: Sequence[str]
) -> Optional[MissingDebugInfo]:
    # Load the debug info of those modules that are loaded and that drgn has
    # none for; the first failure is kept for the report to raise if the
    # driver's state turns out to need it.
    error = None
    for name in names:
        try:
            if find_loaded_module(prog, name) is None:
                continue
            load_module_debug_info(prog, name, debug_files)
        except MissingDebugInfo as e:
            error = error or e
        except READ_ERRORS:
            continue
    return error


def _module(prog: Program, name: str) -> Optional[ModuleVersion]:
    try:
        m = find_loaded_module(prog, name)
    except READ_ERRORS:
        return None
    return None if m is None else ModuleVersion(m.name, m.version, m.srcversion)


def _has_type(prog: Program, name: str) -> bool:
    try:
        prog.type(name)
    except LookupError:
        return False
    return True


def _list_verification(
    check: Optional[PageListCheck],
    findings: Tuple[Finding, ...],
    size_frames: int,
    units: int,
    isolated_pages: int,
) -> Verification:
    """A list check as the report's :class:`Verification`: *units* frames
    per kernel page (virtio: 4 KiB units), isolated pages off the list."""
    if check is None:
        return Verification((), isolated_pages * units, 0, size_frames, findings)
    walk = check.walk._replace(frames_per_page=units)
    frames = (walk.pages + isolated_pages) * units
    return Verification(
        (walk,), isolated_pages * units, frames, size_frames, check.findings + findings
    )


def _stable(
    prog: Program,
    read: Callable[[], _T],
    check: Callable[[_T], Verification],
) -> Tuple[_T, Verification, bool]:
    """
    Read and verify; on a live kernel read again and repeat (up to
    :data:`~drgn_balloon.report.LIVE_RETRIES` times) while the verification
    fails and the state changed. Returns (state, verification, moved).
    """
    state = read()
    verification = check(state)
    if not prog.flags & ProgramFlags.IS_LIVE:
        return state, verification, False
    for attempt in range(LIVE_RETRIES):
        after = read()
        if verification.verified or after == state:
            return state, verification, False
        if attempt + 1 == LIVE_RETRIES:
            break
        time.sleep(0.2)
        state = after
        verification = check(state)
    return state, verification._replace(findings=(moved_finding(),)), True


# ---------------------------------------------------------------- virtio


def _virtio_reason(vb: VirtioBalloon) -> str:
    if vb.adjusts_managed is None:
        return "unknown"
    how = (
        "takes its pages out of MemTotal"
        if vb.adjusts_managed
        else "leaves its pages in MemTotal"
    )
    why = "DEFLATE_ON_OOM " + ("negotiated" if vb.deflate_on_oom else "not negotiated")
    if "adjust_managed_page_count" in vb.adjusts_managed_source:
        # v7.x: mm/balloon.c acts on the member virtballoon_probe() set.
        flag = "true" if vb.adjusts_managed else "false"
        why += f"; vb_dev_info.adjust_managed_page_count is {flag}"
    return f"virtio_balloon {how} ({why})"


def _virtio_balloon(
    prog: Program, vb: VirtioBalloon, verification: Optional[Verification], moved: bool
) -> Balloon:
    return Balloon(
        driver="virtio_balloon",
        module=_module(prog, "virtio_balloon"),
        size_frames=vb.num_pages,
        target_frames=vb.target,
        frame_size=4096,
        isolated_pages=vb.isolated_pages * vb.units_per_page,
        counted_in_meminfo=0,
        verification=verification,
        moved=moved,
        vmware=None,
        adjusts_managed=vb.adjusts_managed,
        adjusts_managed_reason=_virtio_reason(vb),
        target_note=vb.target_note,
        device=vb.device,
        problems=vb.problems,
        virtio=vb,
    )


def _verify_virtio(prog: Program, vb: VirtioBalloon) -> Verification:
    check, findings = verify_virtio_balloon(prog, vb)
    return _list_verification(
        check, findings, vb.num_pages, vb.units_per_page, vb.isolated_pages
    )


def _virtio(
    prog: Program, verify: bool, debug_files: Sequence[str]
) -> Tuple[List[Balloon], DriverProbe, Optional[BalloonError]]:
    error = _load_modules(prog, MODULES["virtio_balloon"], debug_files)
    try:
        found = find_virtio_balloons(prog)
    except LookupError:
        loaded = [
            name
            for name in MODULES["virtio_balloon"]
            if find_loaded_module(prog, name) is not None
        ]
        if not loaded:
            return [], absent("virtio_balloon"), None
        # virtio_bus is in virtio.ko (Debian 6.1): loaded, but its debug
        # info is missing.
        missing = error or MissingDebugInfo(
            f"{', '.join(loaded)} loaded, but virtio_bus is not in the debug "
            "info: pass virtio.ko and virtio_balloon.ko with debug info with -s"
        )
        return [], unreadable("virtio_balloon", missing.message), missing
    probe = probe_virtio(found)
    bound = [vb for vb in found if vb.driver == "virtio_balloon" and not vb.address]
    if bound and not _has_type(prog, "struct virtio_balloon"):
        names = ", ".join(vb.device for vb in bound)
        why = (
            error.message
            if error is not None
            else "pass virtio_balloon.ko with debug info with -s"
        )
        return (
            [],
            probe,
            MissingDebugInfo(
                f"virtio_balloon is bound to {names}, but struct virtio_balloon "
                "is not in the debug info (it is the module's own, and kernels "
                f"before v5.11 have no module BTF): {why}"
            ),
        )
    out = []
    for vb in found:
        if not vb.address:
            continue
        if not verify:
            out.append(_virtio_balloon(prog, vb, None, False))
            continue
        device = vb.vdev_address

        def read(device: int = device) -> VirtioBalloon:
            for again in find_virtio_balloons(prog):
                if again.vdev_address == device:
                    return again
            raise LookupError("the virtio balloon device went away")

        try:
            vb2, verification, moved = _stable(
                prog, read, lambda v: _verify_virtio(prog, v)
            )
        except LookupError:
            vb2, verification, moved = vb, _verify_virtio(prog, vb), True
        out.append(_virtio_balloon(prog, vb2, verification, moved))
    return out, probe, None


# ---------------------------------------------------------------- hv


def _hv_adjusts(prog: Program) -> Tuple[Optional[bool], str]:
    # alloc_balloon_pages() calls adjust_managed_page_count(pg, -1) in 6.1,
    # 6.12 and 7.2, not in 5.10 (Debian's sources; upstream: "hv_balloon: do
    # adjust_managed_page_count() when ballooning/un-ballooning", title
    # only). Code, not data; but struct hv_dynmem_device gained pr_dev_info
    # (free page reporting) in the same interval: present in 6.1+, absent
    # in 5.10. Where it is there, the kernel has the call.
    try:
        typ = prog.type("struct hv_dynmem_device")
        reporting = typ.has_member("pr_dev_info")
    except LookupError:
        reporting = False
    if reporting:
        return True, (
            "hv_balloon takes its pages out of MemTotal (alloc_balloon_pages() "
            "calls adjust_managed_page_count() in kernels whose dm_device has "
            "pr_dev_info, free page reporting: 6.1 and later)"
        )
    return None, (
        "unknown: hv_balloon takes its pages out of MemTotal in 6.1 and later, "
        "not in 5.10; this kernel's dm_device has no pr_dev_info, which is all "
        "its debug info can tell (code, not data)"
    )


def _verify_hv(prog: Program, hb: HvBalloon) -> Verification:
    census, findings = verify_hv_balloon(prog, hb)
    return Verification(
        (),
        0,
        census.offline_pages,
        hb.num_pages_ballooned,
        findings,
        census=census,
    )


def _hv(
    prog: Program, verify: bool, debug_files: Sequence[str]
) -> Tuple[List[Balloon], DriverProbe, Optional[BalloonError]]:
    error = _load_modules(prog, MODULES["hv_balloon"], debug_files)
    try:
        hb = read_hv_balloon(prog)
    except LookupError:
        if find_loaded_module(prog, "hv_balloon") is not None and error is not None:
            return [], unreadable("hv_balloon", error.message), error
        return [], absent("hv_balloon"), None
    probe = probe_hv(hb)
    if not hb.initialised:
        return [], probe, None
    adjusts, reason = _hv_adjusts(prog)
    verification: Optional[Verification] = None
    moved = False
    if verify:
        hb, verification, moved = _stable(
            prog, lambda: read_hv_balloon(prog), lambda h: _verify_hv(prog, h)
        )
    balloon = Balloon(
        driver="hv_balloon",
        module=_module(prog, "hv_balloon"),
        size_frames=hb.num_pages_ballooned,
        target_frames=None,
        frame_size=4096,  # HV_HYP_PAGE_SIZE
        isolated_pages=0,
        counted_in_meminfo=0,
        verification=verification,
        moved=moved,
        vmware=None,
        adjusts_managed=adjusts,
        adjusts_managed_reason=reason,
        target_note=(
            "Hyper-V asks for pages in balloon requests; hv_balloon keeps no target"
        ),
        problems=hb.problems,
        hv=hb._replace(adjusts_managed=adjusts),
    )
    return [balloon], probe, None


# ---------------------------------------------------------------- Xen


def _page_size(prog: Program) -> int:
    try:
        return int(prog["PAGE_SIZE"].value_())
    except (KeyError, LookupError):
        return 4096


def _verify_xen(prog: Program, xb: XenBalloon) -> Verification:
    check, findings = verify_xen_balloon(prog, xb)
    return _list_verification(check, findings, xb.pages, 1, 0)


def _xen(
    prog: Program, verify: bool
) -> Tuple[List[Balloon], DriverProbe, Optional[BalloonError]]:
    try:
        xb = read_xen_balloon(prog)
    except LookupError:
        return [], absent("xen_balloon"), None
    probe = probe_xen(xb)
    if not xb.initialised:
        return [], probe, None
    verification: Optional[Verification] = None
    moved = False
    if verify:
        xb, verification, moved = _stable(
            prog, lambda: read_xen_balloon(prog), lambda x: _verify_xen(prog, x)
        )
    balloon = Balloon(
        driver="xen_balloon",
        module=None,
        size_frames=xb.pages,
        # current_credit() = target_pages - current_pages: what the balloon
        # must still give back (> 0) or take (< 0).
        target_frames=max(xb.pages + xb.current_pages - xb.target_pages, 0),
        frame_size=_page_size(prog),
        isolated_pages=0,
        counted_in_meminfo=0,
        verification=verification,
        moved=moved,
        vmware=None,
        adjusts_managed=xb.adjusts_managed,
        adjusts_managed_reason=(
            "The Xen balloon driver takes its pages out of MemTotal "
            "(decrease_reservation() calls adjust_managed_page_count())"
        ),
        target_note=(
            "balloon_low + balloon_high + current_pages - target_pages "
            "(balloon_stats; the domain's target is target_pages)"
        ),
        problems=xb.problems,
        xen=xb,
    )
    return [balloon], probe, None


# ---------------------------------------------------------------- CMM


def _verify_cmm(prog: Program, cb: CmmBalloon) -> Verification:
    check, findings = verify_cmm(prog, cb)
    return _list_verification(check, findings, cb.loaned_pages, 1, cb.isolated_pages)


def _cmm(
    prog: Program, verify: bool, debug_files: Sequence[str]
) -> Tuple[List[Balloon], DriverProbe, Optional[BalloonError]]:
    error = _load_modules(prog, MODULES["pseries_cmm"], debug_files)
    try:
        cb = read_cmm(prog)
    except LookupError:
        if find_loaded_module(prog, "cmm") is not None and error is not None:
            return [], unreadable("pseries_cmm", error.message), error
        return [], absent("pseries_cmm"), None
    probe = probe_cmm(cb)
    if not probe.initialised and cb.list_head:
        return [], probe, None
    verification: Optional[Verification] = None
    moved = False
    if verify:
        cb, verification, moved = _stable(
            prog, lambda: read_cmm(prog), lambda c: _verify_cmm(prog, c)
        )
    balloon = Balloon(
        driver="pseries_cmm",
        module=_module(prog, "cmm"),
        size_frames=cb.loaned_pages,
        target_frames=cb.loaned_pages_target,
        frame_size=cb.page_size,
        isolated_pages=cb.isolated_pages,
        counted_in_meminfo=0,
        verification=verification,
        moved=moved,
        vmware=None,
        adjusts_managed=cb.adjusts_managed,
        adjusts_managed_reason=(
            "The CMM driver "
            + (
                "takes its pages out of MemTotal"
                if cb.adjusts_managed
                else "leaves its pages in MemTotal"
            )
            + f": {cb.adjusts_managed_source}"
        ),
        target_note="loaned_pages_target (set by the hypervisor through the "
        "partition's memory entitlement)",
        problems=cb.problems,
        cmm=cb,
    )
    return [balloon], probe, None


def _guarded(
    driver: str,
    func: Callable[[], Tuple[List[Balloon], DriverProbe, Optional[BalloonError]]],
) -> Tuple[List[Balloon], DriverProbe, Optional[BalloonError]]:
    # A driver whose state cannot be read is a note in its probe, never an
    # exception that hides the other balloons.
    try:
        return func()
    except READ_ERRORS as e:
        return [], unreadable(driver, e), None


def other_balloons(
    prog: Program,
    *,
    verify: bool = True,
    fast: bool = True,
    debug_files: Sequence[str] = (),
) -> OtherBalloons:
    """
    Find, read and verify the balloons of virtio_balloon, hv_balloon, the
    Xen balloon and the pseries CMM.

    :param fast: unused: the drivers' lists are walked with the bulk reader
        where the program is little endian (see
        :func:`~drgn_balloon.drivers.check_page_list`).
    """
    del fast
    results = (
        _guarded("virtio_balloon", lambda: _virtio(prog, verify, debug_files)),
        _guarded("hv_balloon", lambda: _hv(prog, verify, debug_files)),
        _guarded("xen_balloon", lambda: _xen(prog, verify)),
        _guarded("pseries_cmm", lambda: _cmm(prog, verify, debug_files)),
    )
    try:
        zones: Optional[ZoneTotals] = zone_totals(prog)
    except READ_ERRORS:
        zones = None
    errors = [e for _, _, e in results if e is not None]
    return OtherBalloons(
        balloons=tuple(b for balloons, _, _ in results for b in balloons),
        probes=tuple(p for _, p, _ in results),
        zones=zones,
        error=errors[0] if errors else None,
    )
