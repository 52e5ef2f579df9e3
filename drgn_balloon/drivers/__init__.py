"""
Readers of the other hypervisors' balloon drivers
-------------------------------------------------

Small typed helpers that find each driver's state in a kernel, return it as
NamedTuples of plain values, and walk its page list with the project's
bounded walker: :mod:`.virtio` (virtio_balloon), :mod:`.hv` (hv_balloon),
:mod:`.xen` (Xen balloon), :mod:`.cmm` (pseries CMM). The facts each relies
on, with their kernel sources: docs/balloon-drivers.md.
"""

from .cmm import CmmBalloon, read_cmm, verify_cmm
from .common import PageListCheck, ZoneCount, ZoneTotals, check_page_list, zone_totals
from .hv import (
    HvBalloon,
    HvRegion,
    OfflineCensus,
    offline_census,
    read_hv_balloon,
    verify_hv_balloon,
)
from .probe import DriverProbe, probe_balloon_drivers
from .virtio import (
    VirtioBalloon,
    decode_virtio_features,
    find_virtio_balloons,
    verify_virtio_balloon,
)
from .xen import XenBalloon, read_xen_balloon, verify_xen_balloon

__all__ = [
    "CmmBalloon",
    "DriverProbe",
    "HvBalloon",
    "HvRegion",
    "OfflineCensus",
    "PageListCheck",
    "VirtioBalloon",
    "XenBalloon",
    "ZoneCount",
    "ZoneTotals",
    "check_page_list",
    "decode_virtio_features",
    "find_virtio_balloons",
    "offline_census",
    "probe_balloon_drivers",
    "read_cmm",
    "read_hv_balloon",
    "read_xen_balloon",
    "verify_cmm",
    "verify_hv_balloon",
    "verify_virtio_balloon",
    "verify_xen_balloon",
    "zone_totals",
]
