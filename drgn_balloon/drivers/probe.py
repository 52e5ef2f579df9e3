"""
Which balloon drivers a kernel has
----------------------------------

:func:`probe_balloon_drivers` asks each reader whether its driver is there and
whether it ever initialised, so that a report says "no balloon driver" only when
none is: a Debian x86 kernel has the Xen balloon built in (never initialised
outside Xen), a KVM guest has virtio_balloon, a Hyper-V guest hv_balloon.
"""

from typing import Callable, List, NamedTuple, Tuple

from drgn import Program

from .cmm import CmmBalloon, read_cmm
from .common import READ_ERRORS
from .hv import HvBalloon, read_hv_balloon
from .virtio import VirtioBalloon, find_virtio_balloons
from .xen import XenBalloon, read_xen_balloon

__all__ = [
    "DriverProbe",
    "absent",
    "probe_balloon_drivers",
    "probe_cmm",
    "probe_hv",
    "probe_virtio",
    "probe_xen",
    "unreadable",
]


class DriverProbe(NamedTuple):
    """Whether a balloon driver is there and initialised (plain values)."""

    #: ``"virtio_balloon"``, ``"hv_balloon"``, ``"xen_balloon"``,
    #: ``"pseries_cmm"`` (and in the report ``"vmw_balloon"``,
    #: ``"vmware_balloon"`` or ``"vmmemctl"``).
    driver: str
    #: The driver's state is in the kernel (built in or module loaded).
    present: bool
    #: It initialised: a device bound, a probe run, a domain to balloon.
    initialised: bool
    #: Pages it holds now (kernel pages), 0 when not initialised.
    pages: int
    note: str


def absent(driver: str) -> DriverProbe:
    """A driver that is not in this kernel."""
    return DriverProbe(driver, False, False, 0, "not in this kernel")


def unreadable(driver: str, problem: object) -> DriverProbe:
    """A driver that is there but whose state cannot be read."""
    return DriverProbe(driver, True, False, 0, f"unreadable: {problem}")


def probe_virtio(balloons: Tuple[VirtioBalloon, ...]) -> DriverProbe:
    """The probe of what :func:`find_virtio_balloons` found."""
    live = [b for b in balloons if b.address]
    if not balloons:
        return DriverProbe(
            "virtio_balloon", False, False, 0, "virtio bus without a balloon device"
        )
    return DriverProbe(
        "virtio_balloon",
        True,
        bool(live),
        sum(b.pages for b in live),
        "; ".join(p for b in balloons for p in b.problems)
        or f"{len(live)} device(s): " + ", ".join(b.device for b in live),
    )


def probe_hv(hb: HvBalloon) -> DriverProbe:
    """The probe of what :func:`read_hv_balloon` found."""
    return DriverProbe(
        "hv_balloon",
        True,
        hb.initialised,
        hb.num_pages_ballooned if hb.initialised else 0,
        "; ".join(hb.problems) or hb.state_name,
    )


def probe_xen(xb: XenBalloon) -> DriverProbe:
    """The probe of what :func:`read_xen_balloon` found."""
    return DriverProbe(
        "xen_balloon",
        True,
        xb.initialised,
        xb.pages if xb.initialised else 0,
        "; ".join(xb.problems),
    )


def probe_cmm(cb: CmmBalloon) -> DriverProbe:
    """The probe of what :func:`read_cmm` found."""
    ok = not cb.problems
    return DriverProbe(
        "pseries_cmm", True, ok, cb.loaned_pages if ok else 0, "; ".join(cb.problems)
    )


_PROBES: Tuple[Tuple[str, Callable[[Program], DriverProbe]], ...] = (
    ("virtio_balloon", lambda prog: probe_virtio(find_virtio_balloons(prog))),
    ("hv_balloon", lambda prog: probe_hv(read_hv_balloon(prog))),
    ("xen_balloon", lambda prog: probe_xen(read_xen_balloon(prog))),
    ("pseries_cmm", lambda prog: probe_cmm(read_cmm(prog))),
)


def probe_balloon_drivers(prog: Program) -> Tuple[DriverProbe, ...]:
    """One :class:`DriverProbe` per driver (vmw_balloon is read elsewhere)."""
    out: List[DriverProbe] = []
    for name, probe in _PROBES:
        try:
            out.append(probe(prog))
        except LookupError:
            out.append(absent(name))
        except READ_ERRORS as e:
            out.append(unreadable(name, e))
    return tuple(out)
