"""
The report
----------

The ``drgn_balloon.report`` module gathers everything into one
:class:`Report` of plain values (NamedTuples of ints, strings and tuples):
the guest, the debug info it was read with, each balloon with its state and
its verification, and the kernel's page accounting. Nothing in it refers to
the program: a pickled report renders in a process that has none. Every
entry point (script, drgn command, console script) builds this one model and
hands it to a renderer (:mod:`drgn_balloon.render`), which owns the wording.

The model holds every balloon the kernel has, of every driver: a
:class:`Balloon` holds what every balloon driver has (size and target in
frames, whether its pages leave MemTotal, the verification), and each
driver's own state is in its own NamedTuple (:class:`VMwareState`, and the
readers' :class:`~drgn_balloon.drivers.VirtioBalloon`,
:class:`~drgn_balloon.drivers.HvBalloon`,
:class:`~drgn_balloon.drivers.XenBalloon`,
:class:`~drgn_balloon.drivers.CmmBalloon`). :attr:`Report.drivers` says
which drivers are there and whether they initialised;
:attr:`Report.zones` holds the memory the guest has (present pages) beside
MemTotal (managed pages).
"""

import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from drgn import Program, ProgramFlags

from .balloon import BalloonState, balloon_state
from .drivers import (
    CmmBalloon,
    DriverProbe,
    HvBalloon,
    VirtioBalloon,
    XenBalloon,
    ZoneTotals,
)
from .errors import BalloonError, NoBalloonDriver, NotVMware
from .memory import MemoryAccounting, memory_accounting
from .program import DebugInfo, core_dump_path
from .system import dmi_string, hypervisor, kernel_release
from .verify import Verification, verify_balloon
from .walk import Finding

__all__ = [
    "LIVE_RETRIES",
    "SCHEMA_VERSION",
    "VMWARE_DRIVERS",
    "Balloon",
    "DriverProbe",
    "KernelInfo",
    "ModuleVersion",
    "Report",
    "VMwareState",
    "balloon_report",
]

#: Version of the JSON document (see README, "JSON schema"). Bumped when a
#: key changes meaning or disappears; adding keys does not bump it. 2:
#: ``balloon`` is the VMware balloon or else the first balloon of any driver
#: (null when there is none), ``balloon.target_frames`` may be null.
SCHEMA_VERSION = 2

#: The VMware balloon's driver names (in-tree, RHEL 6, VMware Tools).
VMWARE_DRIVERS = ("vmw_balloon", "vmware_balloon", "vmmemctl")

#: How often a live kernel's balloon is read again when it moved under the
#: walk.
LIVE_RETRIES = 3


class KernelInfo(NamedTuple):
    """The guest whose memory is reported."""

    #: ``uname -r``.
    release: str
    live: bool
    #: The vmcore's path, or ``None`` (live, or not known).
    core_dump: Optional[str]
    #: The hypervisor the kernel detected (``"VMware"``, ``"KVM"``, ``"none"``).
    hypervisor: Optional[str]
    dmi_sys_vendor: Optional[str]
    dmi_product_name: Optional[str]


class ModuleVersion(NamedTuple):
    """A loaded balloon module and the version it declares."""

    name: str
    #: ``MODULE_VERSION()``, or ``None`` when the module declares none.
    version: Optional[str]
    srcversion: Optional[str]


class VMwareState(NamedTuple):
    """What only the VMware balloon has (``struct vmballoon``)."""

    #: Address of ``balloon`` (``globalBalloon`` for vmmemctl).
    address: int
    #: Layout of ``struct vmballoon`` (:data:`drgn_balloon.layout.ERAS`).
    era: str
    era_kernels: str
    reset_required: bool
    #: Capabilities the host granted, or ``None`` in eras without the field.
    capabilities: Optional[int]
    #: Their names (``enum vmwballoon_capabilities``), or ``None``.
    capabilities_names: Optional[Tuple[str, ...]]
    #: Capabilities the driver offers (``VMW_BALLOON_CAPABILITIES``), or ``None``.
    offered_capabilities: Optional[int]
    #: ``"4k"`` or ``"2M"``, or ``None``.
    max_page_size: Optional[str]
    batch_max_pages: Optional[int]
    shrinker_enabled: Optional[bool]
    shrinker_registered: Optional[bool]
    #: The driver's statistics by debugfs name, or ``None`` (``stats`` NULL).
    stats: Optional[Dict[str, int]]


class Balloon(NamedTuple):
    """One balloon: what every balloon driver has, plus its own state."""

    #: The driver: ``"vmw_balloon"``, ``"vmware_balloon"``, ``"vmmemctl"``,
    #: ``"virtio_balloon"``, ``"hv_balloon"``, ``"xen_balloon"`` or
    #: ``"pseries_cmm"``.
    driver: str
    #: The loaded module, or ``None`` when the driver is built in.
    module: Optional[ModuleVersion]
    #: Size and target in frames of :attr:`frame_size` bytes (virtio and
    #: VMware: 4 KiB whatever the page size; Xen, CMM: the kernel's pages).
    size_frames: int
    #: ``None`` where the target is not in guest memory (see
    #: :attr:`target_note`).
    target_frames: Optional[int]
    frame_size: int
    #: Pages taken off the lists for migration (``isolated_pages``), in frames.
    isolated_pages: int
    #: Frames of this balloon that ``/proc/meminfo``'s ``Balloon:`` line
    #: counts (``NR_BALLOON_PAGES``), 0 on kernels without it.
    counted_in_meminfo: int
    #: The page-by-page verification, or ``None`` (``--no-verify``).
    verification: Optional[Verification]
    #: Whether the balloon moved under every walk (live kernel only).
    moved: bool
    #: The VMware driver's own state.
    vmware: Optional[VMwareState]
    #: Whether the driver takes its pages out of MemTotal (calls
    #: ``adjust_managed_page_count()``), ``None`` where the debug info cannot
    #: tell; and why.
    adjusts_managed: Optional[bool] = False
    adjusts_managed_reason: str = (
        "vmw_balloon never calls adjust_managed_page_count() (kernel-layouts.md §5)"
    )
    #: Where the target comes from, or why it is unknown.
    target_note: str = ""
    #: The device (virtio: ``"virtio0"``), or ``None``.
    device: Optional[str] = None
    #: Problems met while reading the driver's state.
    problems: Tuple[str, ...] = ()
    #: The other drivers' own state (the readers' plain values).
    virtio: Optional[VirtioBalloon] = None
    hv: Optional[HvBalloon] = None
    xen: Optional[XenBalloon] = None
    cmm: Optional[CmmBalloon] = None

    @property
    def size_bytes(self) -> int:
        """Balloon size in bytes."""
        return self.size_frames * self.frame_size

    @property
    def target_bytes(self) -> Optional[int]:
        """Target in bytes, or ``None``."""
        if self.target_frames is None:
            return None
        return self.target_frames * self.frame_size

    @property
    def is_vmware(self) -> bool:
        """Whether this is the VMware balloon."""
        return self.driver in VMWARE_DRIVERS

    @property
    def findings(self) -> Tuple[Finding, ...]:
        """Everything the verification found wrong."""
        return self.verification.findings if self.verification else ()

    @property
    def verified(self) -> bool:
        """Whether the verification ran and found nothing wrong."""
        return bool(self.verification and self.verification.verified)


class Report(NamedTuple):
    """Everything the report says."""

    kernel: KernelInfo
    debuginfo: DebugInfo
    #: Every balloon found, the VMware balloon first.
    balloons: Tuple[Balloon, ...]
    memory: MemoryAccounting
    #: Every balloon driver probed: there or not, initialised or not.
    drivers: Tuple[DriverProbe, ...] = ()
    #: The guest's present pages (its zones) beside the managed pages
    #: (MemTotal), or ``None`` if the zones could not be read.
    zones: Optional[ZoneTotals] = None

    @property
    def balloon(self) -> Optional[Balloon]:
        """The VMware balloon, else the first balloon, else ``None``."""
        for b in self.balloons:
            if b.is_vmware:
                return b
        return self.balloons[0] if self.balloons else None

    @property
    def findings(self) -> Tuple[Finding, ...]:
        """Everything the verification of any balloon found wrong."""
        return tuple(f for b in self.balloons for f in b.findings)


def _counted_in_meminfo(
    state: BalloonState, memory: MemoryAccounting, verification: Optional[Verification]
) -> int:
    # NR_BALLOON_PAGES (v6.16+, see memory_accounting()) counts the 4 KiB
    # pages that go through the balloon core (balloon_page_enqueue()), not
    # vmw_balloon's 2 MiB pages (kernel-layouts.md §1.E).
    line = memory.counters.get("Balloon")
    if line is None:
        return 0
    if verification is not None:
        four_k = verification.pages("4k") + verification.isolated_pages
    else:
        four_k = state.size_frames
    return min(line, four_k, state.size_frames)


def _live(prog: Program) -> bool:
    return bool(prog.flags & ProgramFlags.IS_LIVE)


def _module_version(state: BalloonState) -> Optional[ModuleVersion]:
    m = state.module
    return None if m is None else ModuleVersion(m.name, m.version, m.srcversion)


def balloon_model(
    state: BalloonState,
    verification: Optional[Verification],
    memory: MemoryAccounting,
    moved: bool = False,
) -> Balloon:
    """The plain :class:`Balloon` of a state read from the kernel."""
    return Balloon(
        driver=state.driver,
        module=_module_version(state),
        size_frames=state.size_frames,
        target_frames=state.target_frames,
        frame_size=4096,
        isolated_pages=state.isolated_pages,
        counted_in_meminfo=_counted_in_meminfo(state, memory, verification),
        verification=verification,
        moved=moved,
        vmware=VMwareState(
            address=state.balloon.address_ or 0,
            era=state.era.name,
            era_kernels=state.era.kernels,
            reset_required=state.reset_required,
            capabilities=state.capabilities,
            capabilities_names=state.capabilities_names,
            offered_capabilities=state.offered_capabilities,
            max_page_size=state.max_page_size,
            batch_max_pages=state.batch_max_pages,
            shrinker_enabled=state.shrinker_enabled,
            shrinker_registered=state.shrinker_registered,
            stats=state.stats,
        ),
    )


def _vmware(
    prog: Program,
    debug_files: Sequence[str],
    verify: bool,
    fast: bool,
    progress: Optional[Callable[[str, int], None]],
) -> Tuple[BalloonState, Optional[Verification], bool]:
    """Read the VMware balloon and verify it (again while it moves)."""
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
            verification = verification._replace(findings=(moved_finding(),))
    return state, verification, moved


def moved_finding() -> Finding:
    """The finding of a balloon that moved under every walk (live kernel)."""
    return Finding(
        "moved",
        "",
        -1,
        0,
        f"the balloon changed during {LIVE_RETRIES} walks "
        "(it is inflating or deflating); figures are approximate",
    )


def _vmware_probe(
    state: Optional[BalloonState], error: Optional[BalloonError]
) -> DriverProbe:
    if state is not None:
        return DriverProbe(
            state.driver,
            True,
            True,
            state.size_frames,
            "module loaded" if state.module is not None else "built in",
        )
    assert error is not None
    if not error.driver_present:
        return DriverProbe("vmw_balloon", False, False, 0, "not in this kernel")
    return DriverProbe("vmw_balloon", True, False, 0, error.message)


def _exclude_outside_memtotal(
    memory: MemoryAccounting, balloons: Sequence[Balloon]
) -> MemoryAccounting:
    # /proc/meminfo's Balloon: line (NR_BALLOON_PAGES, v6.16+) counts every
    # balloon's pages, also those taken out of MemTotal: those are not part
    # of "used" (MemTotal - MemFree) and must not explain any of it.
    outside = sum(
        b.counted_in_meminfo * b.frame_size // memory.page_size
        for b in balloons
        if b.adjusts_managed
    )
    if not outside:
        return memory
    explained = max(memory.explained - outside, 0)
    return memory._replace(
        explained=explained,
        unaccounted=max(memory.used - explained - (memory.pcp_free or 0), 0),
    )


def balloon_report(
    prog: Program,
    *,
    verify: bool = True,
    fast: bool = True,
    rss: bool = True,
    debug_files: Sequence[str] = (),
    debuginfo: Optional[DebugInfo] = None,
    progress: Optional[Callable[[str, int], None]] = None,
) -> Report:
    """
    Build the whole report: every balloon of every driver, the drivers that
    are there, the guest's memory and its accounting.

    On a live kernel a balloon may inflate or deflate during the walk: the
    state is read again and the walk repeated (up to :data:`LIVE_RETRIES`
    times) until it stood still and the lists agreed with it; if it never
    did, the report says the figures moved rather than calling the lists
    corrupt.

    :param debug_files: ``-s`` files and directories, searched for the
        balloon modules' debug info.
    :param debuginfo: from :func:`~drgn_balloon.program.check_program`.
    :raises NoBalloonDriver: no balloon driver of any kind is in the kernel.
    :raises NotVMware: none is, and the kernel detected another hypervisor
        than VMware, or vmw_balloon never initialised (and no other driver
        is there).
    :raises BalloonError: see :func:`~drgn_balloon.balloon.balloon_state`;
        :class:`~drgn_balloon.errors.MissingDebugInfo` also when another
        driver's state needs debug info that is missing and no balloon can
        be reported.
    """
    from .hypervisors import other_balloons

    state: Optional[BalloonState] = None
    verification: Optional[Verification] = None
    moved = False
    vmware_error: Optional[BalloonError] = None
    try:
        state, verification, moved = _vmware(prog, debug_files, verify, fast, progress)
    except (NoBalloonDriver, NotVMware) as e:
        vmware_error = e
    others = other_balloons(prog, verify=verify, fast=fast, debug_files=debug_files)
    probes = (_vmware_probe(state, vmware_error),) + others.probes
    if state is None and not others.balloons:
        if others.error is not None:
            raise others.error
        if not any(p.present for p in others.probes):
            assert vmware_error is not None
            raise _no_driver(vmware_error)
    memory = memory_accounting(prog, rss=rss)
    balloons: List[Balloon] = []
    if state is not None:
        balloons.append(balloon_model(state, verification, memory, moved))
    line = memory.counters.get("Balloon")
    left = None if line is None else line - sum(b.counted_in_meminfo for b in balloons)
    for b in others.balloons:
        if left is not None and b.frame_size == memory.page_size:
            counted = max(min(left, b.size_frames), 0)
            left -= counted
            b = b._replace(counted_in_meminfo=counted)
        balloons.append(b)
    memory = _exclude_outside_memtotal(memory, balloons)
    if debuginfo is None:
        from .btf_debuginfo import debuginfo_source

        # BTF if it was loaded (check_program() was not called), else DWARF.
        debuginfo = debuginfo_source(prog) or DebugInfo("dwarf", tuple(debug_files))
    live = _live(prog)
    kernel = KernelInfo(
        release=kernel_release(prog),
        live=live,
        core_dump=None if live else core_dump_path(prog),
        hypervisor=hypervisor(prog),
        dmi_sys_vendor=dmi_string(prog, "DMI_SYS_VENDOR"),
        dmi_product_name=dmi_string(prog, "DMI_PRODUCT_NAME"),
    )
    return Report(
        kernel=kernel,
        debuginfo=debuginfo,
        balloons=tuple(balloons),
        memory=memory,
        drivers=probes,
        zones=others.zones,
    )


def _no_driver(error: BalloonError) -> BalloonError:
    # No driver of any kind: the VMware error, saying that no other driver
    # is there either (its class, hence its exit code, is kept).
    others = "virtio_balloon, hv_balloon, the Xen balloon and the pseries CMM"
    return type(error)(
        f"{error.message}; {others} are not in this kernel either",
        driver_present=error.driver_present,
    )
