"""
The VMware balloon
------------------

The ``drgn_balloon.balloon`` module finds ``struct vmballoon balloon`` (the
driver's one global, ``static`` in ``vmw_balloon.c``, or ``vmware_balloon.c``
on RHEL 6) and reads its state in every era: size and target in 4 KiB
frames, the reset flag, the capabilities the host granted, the maximum page
size, the shrinker setting and the driver's own statistics.
"""

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import drgn
from drgn import FaultError, FindObjectFlags, Object, Program, TypeKind

from .debuginfo import load_module_debug_info, missing_error
from .errors import MissingDebugInfo, NoBalloonDriver, NotVMware, Unreadable
from .layout import ERAS, VMMEMCTL_GLOBAL_SIZE, Era, balloon_lists, detect_era
from .system import ModuleInfo, find_loaded_module, hypervisor, read_c_string
from .vmmemctl import VmmemctlWalk, find_global_balloon, read_vmmemctl

__all__ = [
    "CAPABILITIES",
    "DRIVERS",
    "BalloonState",
    "balloon_state",
    "decode_capabilities",
    "find_balloon",
]

#: (module name, source file) of each in-tree driver, newest first
#: (kernel-layouts.md §2).
DRIVERS: Tuple[Tuple[str, str], ...] = (
    ("vmw_balloon", "vmw_balloon.c"),
    ("vmware_balloon", "vmware_balloon.c"),
)

#: ``enum vmwballoon_capabilities`` (drivers/misc/vmw_balloon.c, the same in
#: v5.10, v6.1, v6.12 and v7.2). Used when the enum is not in the debug info.
CAPABILITIES: Dict[int, str] = {
    1 << 1: "BASIC_CMDS",
    1 << 2: "BATCHED_CMDS",
    1 << 3: "BATCHED_2M_CMDS",
    1 << 4: "SIGNALLED_WAKEUP_CMD",
    1 << 5: "64_BIT_TARGET",
}

# Names printed by debugfs vmmemctl (vmballoon_cmd_names[],
# vmballoon_stat_names[], vmballoon_stat_page_names[],
# vmballoon_page_size_names[] in v5.10 to v7.2). The arrays are read from the
# module when the debug info has them; these are the fallback.
_CMD_NAMES = [
    "start",
    "target",
    "lock",
    "unlock",
    "guestType",
    None,
    "batchLock",
    "batchUnlock",
    "2m-lock",
    "2m-unlock",
    "doorbellSet",
]
_STAT_NAMES = ["timer", "doorbell", "reset", "shrink", "shrinkFree"]
_PAGE_STAT_NAMES = ["alloc", "allocFail", "errAlloc", "errFree", "free"]
_PAGE_SIZE_NAMES = ["4k", "2M"]


class BalloonState(NamedTuple):
    """What ``struct vmballoon balloon`` says."""

    #: ``"vmw_balloon"`` or ``"vmware_balloon"``.
    driver: str
    #: The loaded module, or ``None`` if the driver is built into vmlinux.
    module: Optional[ModuleInfo]
    #: ``struct vmballoon`` (the object ``balloon``).
    balloon: Object
    era: Era
    #: Balloon size in 4 KiB frames (a 2 MiB page counts 512).
    size_frames: int
    #: Target in 4 KiB frames, as the host last set it.
    target_frames: int
    reset_required: bool
    #: Capabilities the host granted (``balloon.capabilities``), or ``None``
    #: in eras without the field.
    capabilities: Optional[int]
    #: Their names, e.g. ``("BASIC_CMDS", "BATCHED_CMDS")``, decoded with
    #: the kernel's ``enum vmwballoon_capabilities``; ``None`` with
    #: :attr:`capabilities`.
    capabilities_names: Optional[Tuple[str, ...]]
    #: Capabilities the driver offers (a constant of its source, per era in
    #: :mod:`drgn_balloon.layout`), or ``None``.
    offered_capabilities: Optional[int]
    #: ``"4k"`` or ``"2M"`` (``max_page_size``, v4.20+), or ``None``.
    max_page_size: Optional[str]
    #: Entries per batched hypercall, or ``None``.
    batch_max_pages: Optional[int]
    #: Module parameter ``vmwballoon_shrinker_enable`` (v5.3+), or ``None``.
    shrinker_enabled: Optional[bool]
    #: Whether the shrinker is registered, or ``None`` if unknown.
    shrinker_registered: Optional[bool]
    #: The driver's statistics by debugfs name, or ``None`` when ``stats`` is
    #: ``NULL`` (it stays ``NULL`` until debugfs ``vmmemctl`` is first read).
    stats: Optional[Dict[str, int]]
    #: ``b_dev_info.isolated_pages``: 4 KiB pages taken off the list for
    #: migration (v5.3+), else 0.
    isolated_pages: int
    #: Address of ``balloon.b_dev_info`` (what ``page->private`` of a
    #: ballooned page holds), or ``None``.
    dev_info_address: Optional[int]
    #: For the out-of-tree vmmemctl: what its chunks hold.
    vmmemctl: Optional[VmmemctlWalk] = None

    @property
    def size_bytes(self) -> int:
        """Balloon size in bytes."""
        return self.size_frames * 4096

    @property
    def target_bytes(self) -> int:
        """Target in bytes."""
        return self.target_frames * 4096


def decode_capabilities(prog: Program, value: int) -> Tuple[str, ...]:
    """
    Name the bits of a capabilities word, e.g. ``("BASIC_CMDS", ...)``,
    with the kernel's ``enum vmwballoon_capabilities`` (drgn's
    ``decode_enum_type_flags()``), or :data:`CAPABILITIES` when the debug
    info lacks the enum. Unknown bits are given together, in hex.
    """
    try:
        enum: Optional[drgn.Type] = prog.type("enum vmwballoon_capabilities")
    except LookupError:
        enum = None
    if enum is not None and enum.enumerators:
        from drgn.helpers.common.format import decode_enum_type_flags

        text = decode_enum_type_flags(value, enum, bit_numbers=False)
        if text == "0":
            return ()
        return tuple(name.replace("VMW_BALLOON_", "", 1) for name in text.split("|"))
    # As decode_enum_type_flags() does: known flags, then the rest in hex.
    names = [name for flag, name in sorted(CAPABILITIES.items()) if value & flag]
    rest = value & ~sum(CAPABILITIES)
    return tuple(names) + ((hex(rest),) if rest else ())


def _object(prog: Program, name: str, filename: str) -> Object:
    return prog.object(name, FindObjectFlags.VARIABLE, filename)


def _try_find(prog: Program, relocated: bool = True) -> Optional[Tuple[str, Object]]:
    # With relocated, only an object at a real address counts: old drgn
    # (0.0.22) loads a given .ko even when that module is not loaded, or
    # cannot relocate it (the v6.4 struct module_memory), and then places
    # balloon at address 0.
    for driver, filename in DRIVERS:
        try:
            obj = _object(prog, "balloon", filename)
        except LookupError:
            continue
        if not relocated or obj.address_:
            return driver, obj
    return None


def find_balloon(
    prog: Program, debug_files: Sequence[str] = ()
) -> Tuple[str, Optional[ModuleInfo], Object]:
    """
    Find ``struct vmballoon balloon``, loading the module's debug info when
    drgn has not.

    :param debug_files: extra files or directories to look in for the
        module's debug info (``-s``).
    :return: (driver name, loaded module or ``None`` if built in, object)
    :raises NoBalloonDriver: no balloon driver is loaded or built in.
    :raises NotVMware: no driver, and the kernel did not detect VMware.
    :raises MissingDebugInfo: the module is loaded, its debug info is not.
    :raises Unreadable: the module list is not in the dump.
    """
    try:
        return _find_balloon(prog, debug_files)
    except FaultError as e:
        raise Unreadable(
            "cannot read the kernel's module list from the dump (is the dump "
            f"truncated or incomplete?): {e}"
        ) from e


def _find_balloon(
    prog: Program, debug_files: Sequence[str] = ()
) -> Tuple[str, Optional[ModuleInfo], Object]:
    found = _try_find(prog)
    if found is not None:
        driver, obj = found
        return driver, find_loaded_module(prog, driver), obj
    for driver, _ in DRIVERS:
        module = find_loaded_module(prog, driver)
        if module is None:
            continue
        tried = load_module_debug_info(prog, driver, debug_files)
        found = _try_find(prog)
        if found is not None:
            return found[0], module, found[1]
        if _try_find(prog, relocated=False) is not None:
            # A .ko was loaded but not placed at the module's address.
            try:
                new_layout = prog.type("struct module").has_member("mem")
            except LookupError:
                new_layout = False
            if new_layout:
                # v6.4 replaced struct module_layout with struct module_memory
                # (mod->mem[]); drgn 0.0.22 cannot relocate such modules.
                raise MissingDebugInfo(
                    f"{driver}'s debug info was found, but drgn "
                    f"{getattr(drgn, '__version__', '?')} could not place it at "
                    "the module's address in this kernel: use a newer drgn"
                )
            raise missing_error(prog, driver, None, tried)
        raise missing_error(prog, driver, None, tried)
    module = find_loaded_module(prog, "vmmemctl")
    if module is not None:
        address = find_global_balloon(prog)
        if address is None:
            raise MissingDebugInfo(
                "the out-of-tree vmmemctl module (VMware Tools) is loaded, but its "
                "symbol globalBalloon is not in the kernel's symbols (module "
                "kallsyms)"
            )
        obj = Object(
            prog,
            prog.array_type(
                prog.int_type("unsigned char", 1, False), VMMEMCTL_GLOBAL_SIZE
            ),
            address=address,
        )
        return "vmmemctl", module, obj
    hv = hypervisor(prog)
    if hv is not None and hv != "VMware":
        raise NotVMware(
            f"not a VMware guest (the kernel detected hypervisor: {hv}); "
            "no VMware balloon driver is loaded"
        )
    raise NoBalloonDriver(
        "no VMware balloon driver in this kernel: vmw_balloon is not loaded "
        "and not built in" + (" (the kernel detected VMware)" if hv == "VMware" else "")
    )


def _int(obj: Object) -> int:
    t = obj.type_
    while t.kind == TypeKind.TYPEDEF:
        t = t.type
    if t.kind in (TypeKind.STRUCT, TypeKind.UNION):  # atomic64_t, atomic_t
        obj = obj.counter
    return int(obj.value_())


# An optimized-out variable is an absent object (drgn >= 0.0.25).
_ABSENT: Tuple[type, ...] = tuple(
    e for e in (getattr(drgn, "ObjectAbsentError", None),) if e is not None
)


def _string_array(
    prog: Program, name: str, filename: str
) -> Optional[List[Optional[str]]]:
    # A module's array of C strings (e.g. vmballoon_stat_names[]), or None
    # when the debug info lacks it or it was optimized out.
    try:
        array = _object(prog, name, filename)
    except LookupError:
        return None
    if getattr(array, "absent_", False):
        return None
    t = array.type_
    while t.kind == TypeKind.TYPEDEF:
        t = t.type
    if t.kind != TypeKind.ARRAY or t.length is None:
        return None
    out: List[Optional[str]] = []
    try:
        for i in range(t.length):
            out.append(read_c_string(array[i]))
    except (FaultError,) + _ABSENT:
        return None
    return out


def _stats_pointer(prog: Program, stats: Object, filename: str) -> Dict[str, int]:
    # struct vmballoon_stats of v4.20+ (kernel-layouts.md §1.C1), printed by
    # vmballoon_debug_show() with the names in the module's string arrays.
    cmd = _string_array(prog, "vmballoon_cmd_names", filename) or _CMD_NAMES
    gen = _string_array(prog, "vmballoon_stat_names", filename) or _STAT_NAMES
    page = (
        _string_array(prog, "vmballoon_stat_page_names", filename) or _PAGE_STAT_NAMES
    )
    sizes = (
        _string_array(prog, "vmballoon_page_size_names", filename) or _PAGE_SIZE_NAMES
    )
    out: Dict[str, int] = {}
    ops = stats.ops
    for i in range(ops.type_.length or 0):
        name = cmd[i] if i < len(cmd) else None
        if name is None:
            continue
        out[name] = _int(ops[i][0])
        out[name + "_failed"] = _int(ops[i][1])
    general = stats.general_stat
    for i in range(general.type_.length or 0):
        stat = gen[i] if i < len(gen) else None
        out[stat or f"stat{i}"] = _int(general[i])
    page_stat = stats.page_stat
    for i in range(page_stat.type_.length or 0):
        for j in range(page_stat[i].type_.length or 0):
            name = page[i] if i < len(page) and page[i] else f"page_stat{i}"
            size = sizes[j] if j < len(sizes) and sizes[j] else str(j)
            out[f"{name}({size})"] = _int(page_stat[i][j])
    return out


def _stats_embedded(stats: Object) -> Dict[str, int]:
    # struct vmballoon_stats embedded under CONFIG_DEBUG_FS before v4.20
    # (kernel-layouts.md §1.A0, §1.B2): plain counters, some per page size.
    out: Dict[str, int] = {}
    for member in stats.type_.members:
        if member.name is None:
            continue
        value = stats.member_(member.name)
        if value.type_.kind == TypeKind.ARRAY:
            for j in range(value.type_.length or 0):
                out[f"{member.name}({_PAGE_SIZE_NAMES[j] if j < 2 else j})"] = _int(
                    value[j]
                )
        else:
            out[member.name] = _int(value)
    return out


def _enum_name(obj: Object) -> Optional[str]:
    try:
        name = str(obj.format_(type_name=False))
    except FaultError:
        return None
    for prefix, short in (("VMW_BALLOON_4K_PAGE", "4k"), ("VMW_BALLOON_2M_PAGE", "2M")):
        if name == prefix:
            return short
    return name


def _module_param(prog: Program, name: str, filename: str) -> Optional[bool]:
    try:
        return bool(_object(prog, name, filename).value_())
    except (LookupError, FaultError):
        return None


def _vmmemctl_state(
    prog: Program, module: Optional[ModuleInfo], balloon: Object
) -> BalloonState:
    from .pages import page_geometry

    walk, rejected = read_vmmemctl(prog, page_geometry(prog), balloon.address_)
    if walk is None:
        raise Unreadable(
            f"vmmemctl's globalBalloon at {balloon.address_:#x} fits none of the "
            "known layouts: " + "; ".join(rejected)
        )
    return BalloonState(
        driver="vmmemctl",
        module=module,
        balloon=balloon,
        era=ERAS[walk.variant.name],
        size_frames=walk.n_pages,
        target_frames=walk.target,
        reset_required=walk.reset,
        capabilities=None,
        capabilities_names=None,
        offered_capabilities=None,
        max_page_size=None,
        batch_max_pages=None,
        shrinker_enabled=None,
        shrinker_registered=None,
        stats=None,
        isolated_pages=0,
        dev_info_address=None,
        vmmemctl=walk,
    )


def balloon_state(prog: Program, debug_files: Sequence[str] = ()) -> BalloonState:
    """
    Find the balloon and read its state.

    :raises NoBalloonDriver, NotVMware, MissingDebugInfo: see
        :func:`find_balloon`.
    :raises NotVMware: the driver exists but never initialised (its list
        heads are ``NULL``), which is what a non-VMware guest leaves.
    :raises Unreadable: ``balloon`` is not in the dump.
    """
    driver, module, balloon = find_balloon(prog, debug_files)
    if driver == "vmmemctl":
        return _vmmemctl_state(prog, module, balloon)
    filename = driver + ".c"
    try:
        era = detect_era(balloon.type_)
    except ValueError as e:
        raise Unreadable(str(e)) from e
    try:
        balloon.read_()  # all of it must be in the dump; use the reference
    except FaultError as e:
        raise Unreadable(
            f"balloon ({driver}) at {balloon.address_:#x} is not in the dump: {e}"
        ) from e
    heads = balloon_lists(balloon, era)
    if heads[0].head.next.value_() == 0:
        hv = hypervisor(prog)
        raise NotVMware(
            f"{driver} is present but was never initialised (balloon.{heads[0].path} "
            "is NULL): "
            + (
                f"the kernel detected hypervisor: {hv}" if hv else "not a VMware guest?"
            ),
            driver_present=True,
        )
    members = balloon.type_

    def opt(name: str) -> Optional[Object]:
        return balloon.member_(name) if members.has_member(name) else None

    capabilities = opt("capabilities")
    max_page_size = opt("max_page_size")
    batch_max_pages = opt("batch_max_pages")
    stats_obj = opt("stats")
    stats: Optional[Dict[str, int]] = None
    if stats_obj is not None:
        try:
            if era.stats_pointer:
                if stats_obj.value_():
                    stats = _stats_pointer(prog, stats_obj[0], filename)
            else:
                stats = _stats_embedded(stats_obj)
        except FaultError:
            stats = None
    registered: Optional[bool] = None
    # Linux kernel commit 5d1a86ecf328 ("vmw_balloon: Add memory shrinker")
    # (in v5.3) added the shrinker and shrinker_registered.
    if members.has_member("shrinker_registered"):
        registered = bool(balloon.shrinker_registered.value_())
    elif members.has_member("shrinker"):
        shrinker = balloon.shrinker
        # A pointer since Linux kernel commit "vmw_balloon: dynamically
        # allocate the vmw-balloon shrinker" (in v6.7; title only); before,
        # embedded and registered iff shrinker_registered.
        if shrinker.type_.kind == TypeKind.POINTER:
            registered = bool(shrinker.value_())
    caps = capabilities.value_() if capabilities is not None else None
    isolated = 0
    dev_info_address = None
    if members.has_member("b_dev_info"):
        isolated = balloon.b_dev_info.isolated_pages.value_()
        dev_info_address = balloon.b_dev_info.address_
    return BalloonState(
        driver=driver,
        module=module,
        balloon=balloon,
        era=era,
        size_frames=_int(balloon.size),
        target_frames=_int(balloon.target),
        reset_required=bool(balloon.reset_required.value_()),
        capabilities=caps,
        capabilities_names=None if caps is None else decode_capabilities(prog, caps),
        offered_capabilities=era.offered_capabilities,
        max_page_size=_enum_name(max_page_size) if max_page_size is not None else None,
        batch_max_pages=batch_max_pages.value_()
        if batch_max_pages is not None
        else None,
        shrinker_enabled=_module_param(prog, "vmwballoon_shrinker_enable", filename),
        shrinker_registered=registered,
        stats=stats,
        isolated_pages=isolated,
        dev_info_address=dev_info_address,
    )
