"""
struct vmballoon of a module without BTF
----------------------------------------

Kernels before v5.11 have no module BTF (``CONFIG_DEBUG_INFO_BTF_MODULES``),
Debian 5.10 among them, but their vmlinux BTF describes every type
``struct vmballoon`` is made of. The ``drgn_balloon.btf_layout`` module lays
the structure out from the driver's own member list of its era
(drivers/misc/vmw_balloon.c, as kernel-layouts.md quotes it), with each
member's size and alignment from vmlinux BTF and the C rules (each member at
the next multiple of its alignment, the whole padded to the largest), then
checks the result against the dump before the report may use it: the list
heads point to themselves or to ``struct page``\\ s, size and target are
within the memory the kernel manages, the capabilities within the known
bits. A layout that does not fit is refused with one line.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from drgn import FaultError, Object, Program, Type, TypeKind, TypeMember, sizeof

from .btf_objects import BtfObjects
from .btf_types import BtfTypes
from .errors import MissingDebugInfo

__all__ = ["ERA_MEMBERS", "install_layout", "lay_out"]

#: Capability bits of ``enum vmwballoon_capabilities`` (drivers/misc/
#: vmw_balloon.c, v5.1 to v7.x: BASIC_CMDS 1<<1 ... 64_BIT_TARGET 1<<5).
KNOWN_CAPABILITIES = 0x3E

#: x86-64 kernel addresses are in the upper half (Documentation/arch/x86/
#: x86_64/mm.rst): a pointer member below it means a wrong layout.
KERNEL_HALF = 0xFFFF800000000000

#: Member lists of ``struct vmballoon`` for the eras whose vmlinux can have
#: BTF (v5.2+) while modules may lack it (< v5.11, or built without
#: ``CONFIG_DEBUG_INFO_BTF_MODULES``): (era, source, members).
ERA_MEMBERS: Tuple[Tuple[str, str, Tuple[Tuple[str, str], ...]], ...] = (
    (
        "C2",
        "v5.3 to v5.19 with CONFIG_DEBUG_FS (kernel-layouts.md §1.C2, Debian 5.10.223)",
        (
            ("max_page_size", "enum vmballoon_page_size_type"),
            ("size", "atomic64_t"),
            ("target", "unsigned long"),
            ("reset_required", "bool"),
            ("capabilities", "unsigned long"),
            ("batch_page", "struct vmballoon_batch_entry *"),
            ("batch_max_pages", "unsigned int"),
            ("page", "struct page *"),
            ("shrink_timeout", "unsigned long"),
            ("stats", "struct vmballoon_stats *"),
            ("dbg_entry", "struct dentry *"),
            ("b_dev_info", "struct balloon_dev_info"),
            ("dwork", "struct delayed_work"),
            ("huge_pages", "struct list_head"),
            ("vmci_doorbell", "struct vmci_handle"),
            ("conf_sem", "struct rw_semaphore"),
            ("comm_lock", "spinlock_t"),
            ("shrinker", "struct shrinker"),
            ("shrinker_registered", "bool"),
        ),
    ),
    (
        "C2",
        "v5.3 to v6.6 without dbg_entry (kernel-layouts.md §1.C2/§1.D1)",
        (
            ("max_page_size", "enum vmballoon_page_size_type"),
            ("size", "atomic64_t"),
            ("target", "unsigned long"),
            ("reset_required", "bool"),
            ("capabilities", "unsigned long"),
            ("batch_page", "struct vmballoon_batch_entry *"),
            ("batch_max_pages", "unsigned int"),
            ("page", "struct page *"),
            ("shrink_timeout", "unsigned long"),
            ("stats", "struct vmballoon_stats *"),
            ("b_dev_info", "struct balloon_dev_info"),
            ("dwork", "struct delayed_work"),
            ("huge_pages", "struct list_head"),
            ("vmci_doorbell", "struct vmci_handle"),
            ("conf_sem", "struct rw_semaphore"),
            ("comm_lock", "spinlock_t"),
            ("shrinker", "struct shrinker"),
            ("shrinker_registered", "bool"),
        ),
    ),
    (
        "D1",
        "v6.7 and later (kernel-layouts.md §1.D1, Debian 6.12.117)",
        (
            ("max_page_size", "enum vmballoon_page_size_type"),
            ("size", "atomic64_t"),
            ("target", "unsigned long"),
            ("reset_required", "bool"),
            ("capabilities", "unsigned long"),
            ("batch_page", "struct vmballoon_batch_entry *"),
            ("batch_max_pages", "unsigned int"),
            ("page", "struct page *"),
            ("shrink_timeout", "unsigned long"),
            ("stats", "struct vmballoon_stats *"),
            ("b_dev_info", "struct balloon_dev_info"),
            ("dwork", "struct delayed_work"),
            ("huge_pages", "struct list_head"),
            ("vmci_doorbell", "struct vmci_handle"),
            ("conf_sem", "struct rw_semaphore"),
            ("comm_lock", "spinlock_t"),
            ("shrinker", "struct shrinker *"),
        ),
    ),
    (
        "D2",
        "mm: balloon infrastructure cleanups, v7.0 and later (kernel-layouts.md §1.D2)",
        (
            ("max_page_size", "enum vmballoon_page_size_type"),
            ("size", "atomic64_t"),
            ("target", "unsigned long"),
            ("reset_required", "bool"),
            ("capabilities", "unsigned long"),
            ("batch_page", "struct vmballoon_batch_entry *"),
            ("batch_max_pages", "unsigned int"),
            ("page", "struct page *"),
            ("shrink_timeout", "unsigned long"),
            ("stats", "struct vmballoon_stats *"),
            ("b_dev_info", "struct balloon_dev_info"),
            ("dwork", "struct delayed_work"),
            ("huge_pages", "struct list_head"),
            ("huge_pages_lock", "spinlock_t"),
            ("vmci_doorbell", "struct vmci_handle"),
            ("conf_sem", "struct rw_semaphore"),
            ("comm_lock", "spinlock_t"),
            ("shrinker", "struct shrinker *"),
        ),
    ),
)

#: struct vmballoon_stats (v4.20+, kernel-layouts.md §1.C1), all atomic64_t:
#: general_stat[VMW_BALLOON_STAT_NUM], page_stat[VMW_BALLOON_PAGE_STAT_NUM]
#: [VMW_BALLOON_NUM_PAGE_SIZES], ops[VMW_BALLOON_CMD_NUM][2]. Each dimension
#: is the length of the driver's array of names for it (its symbol's size in
#: the module's symbol table), else the value in v5.3 to v7.x:
#: VMW_BALLOON_STAT_NUM = 5 (timer, doorbell, reset, shrink, shrinkFree),
#: VMW_BALLOON_PAGE_STAT_NUM = 5, two page sizes, VMW_BALLOON_CMD_NUM = 11
#: (commands 0 to 10; 5 is unused).
STATS_DIMENSIONS = (
    ("general_stat", ("vmballoon_stat_names", 5), None),
    ("page_stat", ("vmballoon_stat_page_names", 5), ("vmballoon_page_size_names", 2)),
    ("ops", ("vmballoon_cmd_names", 11), ("", 2)),
)


def _alignment(t: Type) -> int:
    while t.kind == TypeKind.TYPEDEF:
        t = t.type
    if t.kind == TypeKind.ARRAY:
        return _alignment(t.type)
    if t.kind in (TypeKind.STRUCT, TypeKind.UNION):
        return max((_alignment(m.type) for m in t.members or ()), default=1)
    if t.kind == TypeKind.ENUM:
        return _alignment(t.type) if t.type is not None else 4
    return max(int(sizeof(t)), 1)


class _Types:
    """Member types: vmlinux BTF, or declared here where it has none."""

    def __init__(self, prog: Program, symbol_sizes: Dict[str, int]) -> None:
        self.prog = prog
        self.symbol_sizes = symbol_sizes

    def _dimension(self, names: str, default: int) -> int:
        size = self.symbol_sizes.get(names, 0) if names else 0
        return size // 8 if size and size % 8 == 0 else default

    def get(self, spec: str) -> Type:
        prog = self.prog
        if spec == "enum vmballoon_page_size_type":
            # enum vmballoon_page_size_type { VMW_BALLOON_4K_PAGE,
            # VMW_BALLOON_2M_PAGE, VMW_BALLOON_LAST_SIZE = VMW_BALLOON_2M_PAGE }
            from drgn import TypeEnumerator

            return prog.enum_type(
                "vmballoon_page_size_type",
                prog.int_type("unsigned int", 4, False),
                [
                    TypeEnumerator("VMW_BALLOON_4K_PAGE", 0),
                    TypeEnumerator("VMW_BALLOON_2M_PAGE", 1),
                    TypeEnumerator("VMW_BALLOON_LAST_SIZE", 1),
                ],
            )
        if spec == "struct vmci_handle":
            # include/linux/vmw_vmci_defs.h: struct vmci_handle { u32 context;
            # u32 resource; } (vmw_vmci is a module: not in vmlinux BTF).
            try:
                return prog.type(spec)
            except LookupError:
                u32 = prog.int_type("unsigned int", 4, False)
                return prog.struct_type(
                    "vmci_handle",
                    8,
                    [TypeMember(u32, "context", 0), TypeMember(u32, "resource", 32)],
                )
        if spec == "struct vmballoon_batch_entry *":
            return prog.pointer_type(prog.struct_type("vmballoon_batch_entry"))
        if spec == "struct vmballoon_stats *":
            return prog.pointer_type(self.stats())
        return prog.type(spec)

    def stats(self) -> Type:
        prog = self.prog
        atomic64 = prog.type("atomic64_t")
        members = []
        offset = 0
        for name, outer, inner in STATS_DIMENSIONS:
            t = atomic64
            if inner is not None:
                t = prog.array_type(t, self._dimension(*inner))
            t = prog.array_type(t, self._dimension(*outer))
            members.append(TypeMember(t, name, offset * 8))
            offset += sizeof(t)
        return prog.struct_type("vmballoon_stats", offset, members)


def lay_out(
    prog: Program,
    members: Sequence[Tuple[str, str]],
    symbol_sizes: Optional[Dict[str, int]] = None,
) -> Type:
    """``struct vmballoon`` from a member list, by the C layout rules.

    :param symbol_sizes: the module's symbols' sizes (for the dimensions of
        ``struct vmballoon_stats``).
    :raises LookupError: if vmlinux BTF lacks a member's type.
    """
    types = _Types(prog, symbol_sizes or {})
    out = []
    offset = 0
    largest = 1
    for name, spec in members:
        t = types.get(spec)
        align = _alignment(t)
        largest = max(largest, align)
        offset = (offset + align - 1) // align * align
        out.append(TypeMember(t, name, offset * 8))
        offset += sizeof(t)
    size = (offset + largest - 1) // largest * largest
    return prog.struct_type("vmballoon", size, out)


def _plausible_spinlock(value: int) -> bool:
    # A qspinlock word (include/asm-generic/qspinlock_types.h, NR_CPUS <
    # 16K): locked byte 0, 1 or 3 (_Q_SLOW_VAL), pending bit 8, bits 9-15
    # zero, the tail above. At rest (a dump) nearly always 0.
    return value & 0xFF in (0, 1, 3) and not value & 0xFE00


def _what_the_report_reads(obj: Object) -> Tuple[int, ...]:
    out = []
    for name in ("size", "target", "capabilities", "stats", "batch_max_pages"):
        value = obj.member_(name)
        out.append(value.counter.value_() if name == "size" else value.value_())
    for name in ("shrinker", "shrinker_registered"):
        try:
            value = obj.member_(name)
        except LookupError:
            continue
        if value.type_.kind in (TypeKind.POINTER, TypeKind.BOOL):
            out.append(value.value_())
    return tuple(out)


def _problem(prog: Program, obj: Object) -> Optional[str]:
    """Why *obj* is not this kernel's struct vmballoon, or ``None``."""
    from .memory import _totalram
    from .pages import page_geometry

    try:
        total = _totalram(prog)
        geometry = page_geometry(prog)
        size = obj.size.counter.value_()
        target = obj.target.value_()
        caps = obj.capabilities.value_()
        if size > total or target > total:
            return f"size {size} or target {target} beyond MemTotal ({total} pages)"
        if caps & ~KNOWN_CAPABILITIES:
            return f"capabilities {caps:#x} has unknown bits"
        if obj.max_page_size.value_() not in (0, 1) or obj.reset_required.value_() > 1:
            return "max_page_size or reset_required out of range"
        for member in obj.type_.members or ():
            if member.type.kind != TypeKind.POINTER or member.name is None:
                continue
            value = obj.member_(member.name).value_()
            if value and value < KERNEL_HALF:
                return f"{member.name} = {value:#x} is not a kernel pointer"
        for member in obj.type_.members or ():
            if member.type.type_name() == "spinlock_t" and member.name:
                lock = prog.read_u32(obj.member_(member.name).address_)
                if not _plausible_spinlock(lock):
                    return f"{member.name} = {lock:#x} is not a spinlock"
        heads = [obj.b_dev_info.pages, obj.huge_pages]
        nonzero = 0
        for head in heads:
            own = head.address_
            for ptr in (head.next.value_(), head.prev.value_()):
                if ptr == 0:
                    continue
                nonzero += 1
                if ptr == own:
                    continue
                if geometry.page_to_pfn(ptr - geometry.lru) is None:
                    return f"list head {own:#x} points to {ptr:#x}, not a struct page"
        if nonzero and nonzero != 4:
            return "list heads half zero"
    except FaultError as e:
        return f"not in the dump: {e}"
    except (LookupError, AttributeError, TypeError) as e:
        return str(e)
    return None


def install_layout(
    prog: Program,
    types: BtfTypes,
    objects: BtfObjects,
    module_symbols: Dict[str, Dict[str, Tuple[int, int]]],
) -> Optional[str]:
    """
    If a balloon module is loaded without BTF, make the object finder lay
    out its ``balloon`` (checked against the dump when first read).

    :return: what the layout comes from, or ``None`` if not needed.
    """
    name = next(
        (n for n in ("vmw_balloon", "vmware_balloon") if n in module_symbols), None
    )
    if name is None or name in types.modules or "balloon" not in module_symbols[name]:
        return None
    sizes = {n: size for n, (_, size) in module_symbols[name].items()}
    cache: Dict[int, Object] = {}
    failures: List[str] = []

    def build(symbol: str, address: int) -> Optional[Object]:
        if symbol != "balloon":
            return None
        if address in cache:
            return cache[address]
        fits: List[Tuple[str, Object]] = []
        for era, source, members in ERA_MEMBERS:
            try:
                t = lay_out(prog, members, sizes)
            except LookupError as e:
                failures.append(f"{era} ({source}): {e}")
                continue
            obj = Object(prog, t, address=address)
            size = sizes.get("balloon", 0)
            if size and size != sizeof(t):
                # The module's symbol table has the variable's size.
                failures.append(f"{era}: {sizeof(t)} bytes, the symbol has {size}")
                continue
            problem = _problem(prog, obj)
            if problem is None:
                fits.append((era, obj))
            else:
                failures.append(f"{era} ({source}): {problem}")
        if fits:
            # More than one list may fit where they differ only after what
            # the report reads; if what it reads differs, refuse to guess.
            if len({_what_the_report_reads(obj) for _, obj in fits}) > 1:
                raise MissingDebugInfo(
                    f"{name} has no BTF and the member lists of eras "
                    + ", ".join(era for era, _ in fits)
                    + " all fit the dump but read differently: pass "
                    f"{name}.ko with debug info with -s"
                )
            cache[address] = fits[0][1]
            return fits[0][1]
        raise MissingDebugInfo(
            f"{name} has no BTF (kernel built without CONFIG_DEBUG_INFO_BTF_MODULES) "
            "and no known member list of struct vmballoon fits the dump ("
            + "; ".join(failures)
            + f"): pass {name}.ko with debug info with -s"
        )

    override: Callable[[str, int], Optional[Object]] = build
    objects.overrides["balloon"] = override
    return (
        f"struct vmballoon laid out from the driver's member list ({name} has no BTF)"
    )
