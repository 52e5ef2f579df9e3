"""
virtio_balloon (KVM, QEMU, Proxmox, OpenStack)
----------------------------------------------

One ``struct virtio_balloon`` per balloon device (drivers/virtio/virtio_balloon.c,
``vdev->priv``), found through the devices of the virtio bus, not through a
global. Facts and their sources: docs/balloon-drivers.md, "virtio_balloon".
"""

from typing import Iterator, List, NamedTuple, Optional, Tuple

from drgn import Object, Program, cast, container_of

from ..pages import PageGeometry
from ..walk import Finding
from .common import (
    READ_ERRORS,
    PageListCheck,
    check_page_list,
    int_value,
    kernel_global,
    migration_enabled,
    plausible,
)

__all__ = [
    "VIRTIO_BALLOON_FEATURES",
    "VirtioBalloon",
    "decode_virtio_features",
    "find_virtio_balloons",
    "verify_virtio_balloon",
    "virtio_bus_devices",
]

#: ``VIRTIO_ID_BALLOON`` (include/uapi/linux/virtio_ids.h, since v2.6.25).
VIRTIO_ID_BALLOON = 5

#: Feature bits by name. Device bits 0-5: include/uapi/linux/virtio_balloon.h
#: (v5.10 to v7.2 alike); transport bits: include/uapi/linux/virtio_config.h
#: and virtio_ring.h. The kernel keeps them as #defines, not in debug info.
VIRTIO_BALLOON_FEATURES = {
    0: "MUST_TELL_HOST",
    1: "STATS_VQ",
    2: "DEFLATE_ON_OOM",
    3: "FREE_PAGE_HINT",
    4: "PAGE_POISON",
    5: "REPORTING",
    24: "NOTIFY_ON_EMPTY",
    27: "ANY_LAYOUT",
    28: "RING_INDIRECT_DESC",
    29: "RING_EVENT_IDX",
    32: "VERSION_1",
    33: "ACCESS_PLATFORM",
    34: "RING_PACKED",
    35: "IN_ORDER",
    36: "ORDER_PLATFORM",
    37: "SR_IOV",
    38: "NOTIFICATION_DATA",
    39: "NOTIF_CONFIG_DATA",
    40: "RING_RESET",
    41: "ADMIN_VQ",
}
F_STATS_VQ = 1
F_DEFLATE_ON_OOM = 2

#: VIRTIO_BALLOON_S_* (include/uapi/linux/virtio_balloon.h; 0-9 in v5.10,
#: 10-15 added by v6.12).
STAT_NAMES = (
    "swap-in",
    "swap-out",
    "major-faults",
    "minor-faults",
    "free-memory",
    "total-memory",
    "available-memory",
    "disk-caches",
    "hugetlb-allocations",
    "hugetlb-failures",
    "oom-kills",
    "alloc-stalls",
    "async-scans",
    "direct-scans",
    "async-reclaims",
    "direct-reclaims",
)

#: ``VIRTIO_BALLOON_PFN_SHIFT``: the balloon counts 4 KiB units whatever the
#: kernel's page size (``VIRTIO_BALLOON_PAGES_PER_PAGE = PAGE_SIZE >> 12``).
PFN_SHIFT = 12

TARGET_NOT_IN_MEMORY = (
    "the host's target (config num_pages) lives in the device's configuration "
    "space, not in guest memory: not in a dump; the driver reads it on each "
    "config interrupt and keeps no copy"
)


def decode_virtio_features(features: int) -> Tuple[str, ...]:
    """Names of the set bits (unknown bits as ``bit N``)."""
    return tuple(
        VIRTIO_BALLOON_FEATURES.get(bit, f"bit {bit}")
        for bit in range(64)
        if features >> bit & 1
    )


class VirtioBalloon(NamedTuple):
    """One virtio balloon device and its driver's state, as plain values."""

    #: Device name on the virtio bus, e.g. ``"virtio0"``.
    device: str
    #: Address of the ``struct virtio_device``.
    vdev_address: int
    #: Name of the bound driver (``"virtio_balloon"``), or ``""`` if none.
    driver: str
    #: Address of the ``struct virtio_balloon`` (``vdev->priv``), 0 if unset.
    address: int
    #: Negotiated features (``vdev->features``) and their names.
    features: int
    feature_names: Tuple[str, ...]
    deflate_on_oom: bool
    #: Whether the driver takes its pages out of MemTotal
    #: (``adjust_managed_page_count()``), and how that was decided.
    adjusts_managed: Optional[bool]
    adjusts_managed_source: str
    #: ``vb->num_pages``: 4 KiB units held (what the host sees as ``actual``).
    num_pages: int
    #: 4 KiB units per kernel page (``VIRTIO_BALLOON_PAGES_PER_PAGE``).
    units_per_page: int
    #: Kernel pages held (``num_pages / units_per_page``).
    pages: int
    #: ``vb_dev_info.isolated_pages``: held but off the list for migration.
    isolated_pages: int
    #: Address of ``vb->vb_dev_info`` and of its ``pages`` list head.
    dev_info_address: int
    list_head: int
    #: Balloon page migration is on (``vb_dev_info.migratepage`` set): then
    #: each page's ``private`` points at ``vb_dev_info``.
    migration: bool
    #: The host's target in 4 KiB units, or ``None`` (see ``target_note``).
    target: Optional[int]
    target_note: str
    #: The last memory statistics the driver sent (``vb->stats``), by name,
    #: if STATS_VQ was negotiated.
    stats: Tuple[Tuple[str, int], ...]
    #: Problems met while reading the state (never initialised, unreadable).
    problems: Tuple[str, ...]


def _bus_devices_fallback(bus: Object) -> Iterator[Object]:
    # Older drgn has no bus_for_each_dev: bus->p (subsys_private) where
    # struct bus_type has it (include/linux/device/bus.h v6.1:114), else the
    # subsys_private on bus_kset whose bus is ours (v6.12, base.h:49-53).
    prog = bus.prog_
    from drgn.helpers.linux.list import list_for_each_entry

    try:
        sp = bus.p
    except AttributeError:
        sp = None
        kset = kernel_global(prog, "bus_kset", "struct kset *")
        for kobj in list_for_each_entry(
            "struct kobject", kset.list.address_of_(), "entry"
        ):
            cand = container_of(kobj, "struct subsys_private", "subsys.kobj")
            if cand.bus.value_() == bus.address_:
                sp = cand
                break
        if sp is None:
            return
    for dp in list_for_each_entry(
        "struct device_private",
        sp.klist_devices.k_list.address_of_(),
        "knode_bus.n_node",
    ):
        yield dp.device


def virtio_bus_devices(prog: Program) -> List[Object]:
    """
    Every ``struct device *`` on the virtio bus (``virtio_bus``).

    :raises LookupError: if the kernel has no ``virtio_bus``.
    """
    bus = kernel_global(prog, "virtio_bus", "struct bus_type")
    try:
        from drgn.helpers.linux.device import bus_for_each_dev

        return list(bus_for_each_dev(bus.address_of_()))
    except (ImportError, LookupError):
        # drgn without the helper, or a debug-info source (BTF) that does
        # not declare the objects it looks up (bus_kset).
        return list(_bus_devices_fallback(bus))


def _stats(vb: Object, features: int) -> Tuple[Tuple[str, int], ...]:
    if not features >> F_STATS_VQ & 1:
        return ()
    out = []
    for stat in vb.stats:
        tag = int(stat.tag.value_())
        name = STAT_NAMES[tag] if tag < len(STAT_NAMES) else f"tag {tag}"
        out.append((name, int(stat.val.value_())))
    return tuple(out)


def _read_one(prog: Program, dev: Object, page_size: int) -> Optional[VirtioBalloon]:
    vdev = container_of(dev, "struct virtio_device", "dev")
    if int(vdev.id.device.value_()) != VIRTIO_ID_BALLOON:
        return None
    try:
        name = dev.kobj.name.string_().decode(errors="replace")
    except READ_ERRORS:
        name = "?"
    driver = ""
    if dev.driver.value_():
        try:
            driver = dev.driver.name.string_().decode(errors="replace")
        except READ_ERRORS:
            driver = "?"
    features = int(vdev.features.value_())
    units = max(page_size >> PFN_SHIFT, 1)
    base = _device(name, int(vdev.value_()), driver, features, units)
    if driver != "virtio_balloon":
        return base._replace(
            problems=(
                f"balloon device {name} has "
                + (f"driver {driver!r} bound" if driver else "no driver bound")
                + ": no virtio_balloon state",
            )
        )
    priv = vdev.priv.value_()
    if not priv:
        return base._replace(
            problems=(f"{name}: vdev->priv is NULL: virtio_balloon never initialised",)
        )
    try:
        vb = cast("struct virtio_balloon *", vdev.priv)
    except LookupError:
        # BTF mode on a kernel without module BTF (CONFIG_DEBUG_INFO_BTF_MODULES
        # came with v5.11): the module's own struct is unknown.
        return base._replace(
            problems=(
                f"{name}: struct virtio_balloon is not in the debug info (no BTF "
                "for the virtio_balloon module): its state cannot be read",
            )
        )
    info = vb.vb_dev_info
    num_pages = int_value(vb.num_pages)
    isolated = int_value(info.isolated_pages)
    try:
        # mm/balloon.c rework (v7.x): balloon_dev_info says it itself;
        # virtballoon_probe() sets it unless DEFLATE_ON_OOM.
        adjusts: Optional[bool] = bool(info.adjust_managed_page_count.value_())
        source = "vb_dev_info.adjust_managed_page_count (mm/balloon.c, v7.x)"
    except AttributeError:
        # v5.10-v6.x: fill_balloon() calls adjust_managed_page_count(page, -1)
        # unless VIRTIO_BALLOON_F_DEFLATE_ON_OOM (drivers/virtio/virtio_balloon.c).
        adjusts = not base.deflate_on_oom
        source = "DEFLATE_ON_OOM " + (
            "negotiated" if base.deflate_on_oom else "not negotiated"
        )
    try:
        stats = _stats(vb, features)
    except READ_ERRORS:
        stats = ()
    return base._replace(
        address=int(priv),
        adjusts_managed=adjusts,
        adjusts_managed_source=source,
        num_pages=num_pages,
        pages=num_pages // units,
        isolated_pages=isolated,
        dev_info_address=int(info.address_),
        list_head=int(info.pages.address_),
        migration=migration_enabled(info),
        stats=stats,
    )


def _device(
    device: str,
    vdev_address: int,
    driver: str,
    features: int,
    units_per_page: int,
    problems: Tuple[str, ...] = (),
) -> VirtioBalloon:
    # A balloon device as known before (or without) its driver's state.
    return VirtioBalloon(
        device=device,
        vdev_address=vdev_address,
        driver=driver,
        address=0,
        features=features,
        feature_names=decode_virtio_features(features),
        deflate_on_oom=bool(features >> F_DEFLATE_ON_OOM & 1),
        adjusts_managed=None,
        adjusts_managed_source="",
        num_pages=0,
        units_per_page=units_per_page,
        pages=0,
        isolated_pages=0,
        dev_info_address=0,
        list_head=0,
        migration=False,
        target=None,
        target_note=TARGET_NOT_IN_MEMORY,
        stats=(),
        problems=problems,
    )


def _unreadable(address: int, problem: str) -> VirtioBalloon:
    return _device("?", address, "", 0, 1, (problem,))


def find_virtio_balloons(prog: Program) -> Tuple[VirtioBalloon, ...]:
    """
    Every virtio balloon device on the virtio bus with its driver's state.
    A device or a bus that cannot be read comes back as one entry whose
    ``problems`` say why.

    :raises LookupError: if the kernel has no virtio bus (``virtio_bus`` is
        unknown: virtio not built or its module not loaded).
    """
    page_size = int(prog["PAGE_SIZE"].value_()) if _has(prog, "PAGE_SIZE") else 4096
    try:
        bus = kernel_global(prog, "virtio_bus", "struct bus_type")
    except LookupError as e:
        raise LookupError("no virtio bus (virtio_bus) in this kernel") from e
    try:
        devices = virtio_bus_devices(prog)
    except READ_ERRORS as e:
        return (
            _unreadable(int(bus.address_ or 0), f"the virtio bus is unreadable: {e}"),
        )
    out = []
    for dev in devices:
        try:
            vb = _read_one(prog, dev, page_size)
        except READ_ERRORS as e:
            vb = _unreadable(int(dev.value_()), f"device {dev.value_():#x}: {e}")
        if vb is not None:
            out.append(vb)
    return tuple(out)


def _has(prog: Program, name: str) -> bool:
    try:
        prog[name]
        return True
    except (KeyError, LookupError):
        return False


def verify_virtio_balloon(
    prog: Program, vb: VirtioBalloon, geometry: Optional[PageGeometry] = None
) -> Tuple[Optional[PageListCheck], Tuple[Finding, ...]]:
    """
    Walk ``vb_dev_info.pages`` and compare with ``num_pages``.

    The list holds ``num_pages / units_per_page - isolated_pages`` pages;
    ``balloon_page_insert()`` marks each offline (v5.0+) and, with balloon
    compaction, points ``page->private`` at ``&vb->vb_dev_info``.

    :returns: the list check (``None`` if the driver has no state) and
        findings about the counts themselves.
    """
    if not vb.address:
        return None, ()
    g = geometry
    findings: List[Finding] = []
    if g is None:
        from ..pages import page_geometry

        g = page_geometry(prog, compaction_era=True)
    findings.extend(plausible("virtio_balloon num_pages", vb.pages, g.max_pfn))
    if vb.num_pages % vb.units_per_page:
        findings.append(
            Finding(
                "implausible",
                "",
                -1,
                vb.address,
                f"num_pages {vb.num_pages} is not a multiple of "
                f"{vb.units_per_page} 4 KiB units per page",
            )
        )
    expected = vb.pages - vb.isolated_pages
    check = check_page_list(
        prog,
        f"{vb.device} vb_dev_info.pages",
        vb.list_head,
        expected,
        "num_pages" + (" - isolated_pages" if vb.isolated_pages else ""),
        expect_private=vb.dev_info_address if vb.migration else None,
        geometry=g,
    )
    return check, tuple(findings)
