"""
drgn-balloon
------------

Where did my memory go? A balloon driver pins guest pages that the host
reclaimed: vmw_balloon's are "used" memory no line of the guest's accounting
names; virtio_balloon (without DEFLATE_ON_OOM), Xen, the pseries CMM and
hv_balloon (6.1+) take theirs out of MemTotal, so ``free`` shows less memory
than the VM has. These helpers find every balloon in a vmcore or the live
kernel (``struct vmballoon balloon``; each virtio balloon device; ...),
verify its pages one by one, and compare it with the kernel's accounting.

In a drgn session::

    >>> from drgn_balloon import *
    >>> state = balloon_state()
    >>> state.size_frames, state.target_frames
    (40000, 40000)
    >>> verify_balloon(state=state).verified
    True
    >>> print(render_text(balloon_report()))

The ``%balloon`` drgn command (drgn 0.1.0+) does the same; ``%balloon
--drgn`` prints the code.
"""

from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar

from drgn import Object, Program

from .balloon import BalloonState
from .balloon import balloon_state as _balloon_state
from .balloon import find_balloon as _find_balloon
from .drivers import DriverProbe, VirtioBalloon, ZoneTotals
from .drivers import find_virtio_balloons as _find_virtio_balloons
from .drivers import probe_balloon_drivers as _probe_balloon_drivers
from .drivers import zone_totals as _zone_totals
from .errors import BalloonError
from .layout import ERAS, Era, detect_era
from .memory import MemoryAccounting
from .memory import memory_accounting as _memory_accounting
from .program import DebugInfo, check_program
from .render import render_json, render_text
from .report import Balloon, KernelInfo, ModuleVersion, Report, VMwareState
from .report import balloon_report as _balloon_report
from .system import ModuleInfo
from .verify import Verification
from .verify import verify_balloon as _verify_balloon

try:
    from drgn.helpers.common.prog import takes_program_or_default
except ImportError:  # drgn < 0.0.23: pass prog explicitly
    _F = TypeVar("_F", bound=Callable[..., Any])

    def _takes_program(f: _F) -> _F:
        return f

    takes_program_or_default = _takes_program  # type: ignore[assignment]


__all__ = [
    "ERAS",
    "Balloon",
    "BalloonError",
    "BalloonState",
    "DebugInfo",
    "DriverProbe",
    "Era",
    "KernelInfo",
    "MemoryAccounting",
    "ModuleVersion",
    "Report",
    "VMwareState",
    "Verification",
    "VirtioBalloon",
    "ZoneTotals",
    "balloon_drivers",
    "balloon_report",
    "balloon_state",
    "check_program",
    "detect_era",
    "find_balloon",
    "memory_accounting",
    "render_json",
    "render_text",
    "verify_balloon",
    "virtio_balloons",
    "zone_totals",
]

__version__ = "0.1.0"


@takes_program_or_default
def find_balloon(
    prog: Program, debug_files: Sequence[str] = ()
) -> Tuple[str, Optional[ModuleInfo], Object]:
    """
    Find ``struct vmballoon balloon``, loading the balloon module's debug
    info if drgn has not.

    :return: (driver name, loaded module or ``None`` if built in,
        ``struct vmballoon`` object)
    """
    return _find_balloon(prog, debug_files)


@takes_program_or_default
def balloon_state(prog: Program, debug_files: Sequence[str] = ()) -> BalloonState:
    """
    Read the balloon: size and target in 4 KiB frames, reset flag,
    capabilities, shrinker, statistics.

    >>> balloon_state().size_frames
    40000
    """
    return _balloon_state(prog, debug_files)


@takes_program_or_default
def verify_balloon(
    prog: Program, state: Optional[BalloonState] = None, *, fast: bool = True
) -> Verification:
    """
    Walk the balloon's lists page by page and compare with ``balloon.size``.

    :param state: from :func:`balloon_state` (read now if omitted).
    :param fast: bulk reads of the memory map (``False``: drgn Objects).
    """
    if state is None:
        state = _balloon_state(prog)
    return _verify_balloon(prog, state, fast=fast)


@takes_program_or_default
def memory_accounting(prog: Program, rss: bool = True) -> MemoryAccounting:
    """What ``/proc/meminfo`` and ``ps aux`` would show, in pages."""
    return _memory_accounting(prog, rss=rss)


@takes_program_or_default
def balloon_report(
    prog: Program,
    *,
    verify: bool = True,
    fast: bool = True,
    rss: bool = True,
    debug_files: Sequence[str] = (),
    debuginfo: Optional[DebugInfo] = None,
) -> Report:
    """
    The whole report: every balloon of every driver (VMware, virtio, Hyper-V,
    Xen, pseries CMM), the drivers probed, the guest's memory; render it with
    :func:`render_text` or :func:`render_json`.

    :param debug_files: ``-s`` files and directories (the balloon modules'
        debug info is looked for there).
    :param debuginfo: what :func:`check_program` returned.
    """
    return _balloon_report(
        prog,
        verify=verify,
        fast=fast,
        rss=rss,
        debug_files=debug_files,
        debuginfo=debuginfo,
    )


@takes_program_or_default
def balloon_drivers(prog: Program) -> Tuple[DriverProbe, ...]:
    """
    Which of virtio_balloon, hv_balloon, the Xen balloon and the pseries CMM
    are there and initialised (vmw_balloon: :func:`balloon_state`).

    >>> [(p.driver, p.present, p.initialised) for p in balloon_drivers()]
    """
    return _probe_balloon_drivers(prog)


@takes_program_or_default
def virtio_balloons(prog: Program) -> Tuple[VirtioBalloon, ...]:
    """Every virtio balloon device with its driver's state (``num_pages``,
    features by name, whether its pages leave MemTotal)."""
    return _find_virtio_balloons(prog)


@takes_program_or_default
def zone_totals(prog: Program) -> ZoneTotals:
    """The memory the guest has (present pages) beside MemTotal (managed)."""
    return _zone_totals(prog)
