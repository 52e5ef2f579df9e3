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

from .cmm import read_cmm
from .common import READ_ERRORS
from .hv import read_hv_balloon
from .virtio import find_virtio_balloons
from .xen import read_xen_balloon

__all__ = ["DriverProbe", "probe_balloon_drivers"]


class DriverProbe(NamedTuple):
    #: ``"virtio_balloon"``, ``"hv_balloon"``, ``"xen_balloon"``,
    #: ``"pseries_cmm"``.
    driver: str
    #: The driver's state is in the kernel (built in or module loaded).
    present: bool
    #: It initialised: a device bound, a probe run, a domain to balloon.
    initialised: bool
    #: Pages it holds now (kernel pages), 0 when not initialised.
    pages: int
    note: str


def _virtio(prog: Program) -> DriverProbe:
    balloons = find_virtio_balloons(prog)
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


def _hv(prog: Program) -> DriverProbe:
    hb = read_hv_balloon(prog)
    return DriverProbe(
        "hv_balloon",
        True,
        hb.initialised,
        hb.num_pages_ballooned if hb.initialised else 0,
        "; ".join(hb.problems) or hb.state_name,
    )


def _xen(prog: Program) -> DriverProbe:
    xb = read_xen_balloon(prog)
    return DriverProbe(
        "xen_balloon",
        True,
        xb.initialised,
        xb.pages if xb.initialised else 0,
        "; ".join(xb.problems),
    )


def _cmm(prog: Program) -> DriverProbe:
    cb = read_cmm(prog)
    ok = not cb.problems
    return DriverProbe(
        "pseries_cmm", True, ok, cb.loaned_pages if ok else 0, "; ".join(cb.problems)
    )


_PROBES: Tuple[Tuple[str, Callable[[Program], DriverProbe]], ...] = (
    ("virtio_balloon", _virtio),
    ("hv_balloon", _hv),
    ("xen_balloon", _xen),
    ("pseries_cmm", _cmm),
)


def probe_balloon_drivers(prog: Program) -> Tuple[DriverProbe, ...]:
    """One :class:`DriverProbe` per driver (vmw_balloon is read elsewhere)."""
    out: List[DriverProbe] = []
    for name, probe in _PROBES:
        try:
            out.append(probe(prog))
        except LookupError:
            out.append(DriverProbe(name, False, False, 0, "not in this kernel"))
        except READ_ERRORS as e:
            out.append(DriverProbe(name, True, False, 0, f"unreadable: {e}"))
    return tuple(out)
