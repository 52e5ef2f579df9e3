"""
drgn objects from kallsyms and BTF
----------------------------------

BTF describes types, and of the variables only the per-CPU ones
(``BTF_KIND_VAR`` in the ``.data..percpu`` section). The
``drgn_balloon.btf_objects`` module's object finder answers for the rest:

- enumerators (``NR_FREE_PAGES``, ``PGTY_offline``...) from every enum in
  BTF;
- per-CPU variables: address from kallsyms, type from BTF;
- functions: address from kallsyms, type from BTF's ``FUNC`` records;
- other variables the report and drgn's helpers read: address from kallsyms,
  type from :data:`DECLARATIONS`, each as declared in the kernel source it
  cites.
"""

from typing import Callable, Dict, NamedTuple, Optional, Tuple, Union

from drgn import FindObjectFlags, Object, Program, Type, TypeKind

from .btf import Btf, Kind
from .btf_types import BtfTypes

__all__ = ["DECLARATIONS", "Declaration", "BtfObjects"]


class Declaration(NamedTuple):
    """A variable's C declaration."""

    #: The element type, as drgn spells it (``"struct list_head"``).
    type: str
    #: Array length: ``None`` (not an array), a number, the name of the
    #: enumerator that sizes it (else the symbol's size), or ``"symbol"``
    #: (the symbol's size; an array of unknown length if it is not known).
    length: Union[None, int, str] = None
    #: Where the kernel declares it.
    source: str = ""


_A = "symbol"

#: Variables without BTF: ``name -> Declaration``. Only what the report and
#: the drgn helpers it calls read; an entry for a variable this kernel lacks
#: is harmless (kallsyms has no address for it).
DECLARATIONS: Dict[str, Declaration] = {
    # The kernel image and its modules.
    "init_uts_ns": Declaration("struct uts_namespace", None, "init/version.c"),
    "modules": Declaration("struct list_head", None, "kernel/module/main.c"),
    "btf_modules": Declaration("struct list_head", None, "kernel/bpf/btf.c (v5.11+)"),
    "init_task": Declaration("struct task_struct", None, "init/init_task.c"),
    # drgn's for_each_task() walks the pids of the initial namespace.
    "init_pid_ns": Declaration("struct pid_namespace", None, "kernel/pid.c"),
    # Page accounting (mm/vmstat.c, mm/page_alloc.c, mm/memblock.c...).
    "vm_node_stat": Declaration(
        "atomic_long_t", "NR_VM_NODE_STAT_ITEMS", "mm/vmstat.c (v4.8+)"
    ),
    "vm_zone_stat": Declaration(
        "atomic_long_t", "NR_VM_ZONE_STAT_ITEMS", "mm/vmstat.c"
    ),
    "vm_stat": Declaration(
        "atomic_long_t", "NR_VM_ZONE_STAT_ITEMS", "mm/vmstat.c (< v4.8)"
    ),
    "_totalram_pages": Declaration("atomic_long_t", None, "mm/page_alloc.c (v5.0+)"),
    "totalram_pages": Declaration("unsigned long", None, "mm/page_alloc.c (< v5.0)"),
    "totalreserve_pages": Declaration("unsigned long", None, "mm/page_alloc.c"),
    "max_pfn": Declaration("unsigned long", None, "mm/memblock.c"),
    "mem_map": Declaration("struct page *", None, "mm/memory.c (FLATMEM)"),
    "mem_section": Declaration(
        "struct mem_section **", None, "mm/sparse.c (SPARSEMEM_EXTREME)"
    ),
    "jiffies_64": Declaration("u64", None, "kernel/time/timer.c"),
    "jiffies": Declaration("unsigned long", None, "include/linux/jiffies.h"),
    "blockdev_superblock": Declaration("struct super_block *", None, "block/bdev.c"),
    "all_bdevs": Declaration("struct list_head", None, "fs/block_dev.c (< v5.9)"),
    "swapper_spaces": Declaration(
        "struct address_space *", "MAX_SWAPFILES", "mm/swap_state.c"
    ),
    "nr_swapper_spaces": Declaration(
        "unsigned int", "MAX_SWAPFILES", "mm/swap_state.c"
    ),
    "nr_swap_pages": Declaration("atomic_long_t", None, "mm/swapfile.c"),
    "nr_swapfiles": Declaration("unsigned int", None, "mm/swapfile.c"),
    "total_swap_pages": Declaration("long", None, "mm/swapfile.c"),
    "nr_vmalloc_pages": Declaration("atomic_long_t", None, "mm/vmalloc.c (v5.4+)"),
    "vmap_area_pages": Declaration("atomic_long_t", None, "mm/vmalloc.c"),
    "pcpu_nr_populated": Declaration("int", None, "mm/percpu.c"),
    "pcpu_nr_units": Declaration("int", None, "mm/percpu.c"),
    "hstates": Declaration("struct hstate", _A, "mm/hugetlb.c (HUGE_MAX_HSTATE)"),
    "hugetlb_max_hstate": Declaration("int", None, "mm/hugetlb.c"),
    "contig_page_data": Declaration(
        "struct pglist_data", None, "mm/memblock.c (!NUMA)"
    ),
    "node_data": Declaration("struct pglist_data *", _A, "arch/x86/mm/numa.c"),
    "node_states": Declaration("nodemask_t", "NR_NODE_STATES", "mm/page_alloc.c"),
    # CPUs (kernel/cpu.c, arch/x86/kernel/setup_percpu.c, kernel/smp.c).
    "__per_cpu_offset": Declaration(
        "unsigned long", _A, "arch/x86/kernel/setup_percpu.c"
    ),
    "__cpu_online_mask": Declaration("struct cpumask", None, "kernel/cpu.c"),
    "__cpu_possible_mask": Declaration("struct cpumask", None, "kernel/cpu.c"),
    "__cpu_present_mask": Declaration("struct cpumask", None, "kernel/cpu.c"),
    "nr_cpu_ids": Declaration("unsigned int", None, "kernel/smp.c"),
    # Buses: drgn's bus_for_each_dev() (v6.3+ finds a bus's subsys_private
    # on bus_kset), the virtio bus of the virtio balloon.
    "bus_kset": Declaration("struct kset *", None, "drivers/base/bus.c"),
    "virtio_bus": Declaration("struct bus_type", None, "drivers/virtio/virtio.c"),
    # Hypervisor and firmware.
    "x86_hyper_type": Declaration(
        "enum x86_hypervisor_type", None, "arch/x86/kernel/cpu/hypervisor.c (v4.15+)"
    ),
    "x86_hyper": Declaration(
        "const struct hypervisor_x86 *",
        None,
        "arch/x86/kernel/cpu/hypervisor.c (< v4.15)",
    ),
    "dmi_ident": Declaration("char *", "DMI_STRING_MAX", "drivers/firmware/dmi_scan.c"),
    # The VMware balloon (drivers/misc/vmw_balloon.c).
    "balloon": Declaration("struct vmballoon", None, "drivers/misc/vmw_balloon.c"),
    "vmwballoon_shrinker_enable": Declaration(
        "bool", None, "drivers/misc/vmw_balloon.c (v5.3+, module_param)"
    ),
    "vmballoon_cmd_names": Declaration(
        "const char * const", "VMW_BALLOON_CMD_NUM", "drivers/misc/vmw_balloon.c"
    ),
    "vmballoon_stat_names": Declaration(
        "const char * const", "VMW_BALLOON_STAT_NUM", "drivers/misc/vmw_balloon.c"
    ),
    "vmballoon_stat_page_names": Declaration(
        "const char * const", "VMW_BALLOON_PAGE_STAT_NUM", "drivers/misc/vmw_balloon.c"
    ),
    "vmballoon_page_size_names": Declaration(
        "const char * const", _A, "drivers/misc/vmw_balloon.c"
    ),
}


class SymbolAt(NamedTuple):
    address: int
    size: int


#: ``(name, filename) -> address and size``: the symbol lookup the finder
#: uses (kallsyms of vmlinux and modules).
SymbolLookup = Callable[[str, Optional[str]], Optional[SymbolAt]]

#: Builds an object the declarations cannot (e.g. a struct vmballoon laid
#: out from its era's member list): ``(name, address) -> Object or None``.
Override = Callable[[str, int], Optional[Object]]


class BtfObjects:
    """The object finder over :class:`~drgn_balloon.btf_types.BtfTypes`."""

    def __init__(self, prog: Program, types: BtfTypes, symbol: SymbolLookup) -> None:
        self.prog = prog
        self.types = types
        self.symbol = symbol
        self.overrides: Dict[str, Override] = {}
        self._percpu: Optional[Dict[str, Tuple[Btf, int]]] = None

    def find(
        self, prog: Program, name: str, flags: FindObjectFlags, filename: Optional[str]
    ) -> Optional[Object]:
        """drgn object finder: ``(prog, name, flags, filename)``."""
        if flags & FindObjectFlags.CONSTANT:
            found = self.constant(name)
            if found is not None:
                return found
        if flags & (FindObjectFlags.VARIABLE | FindObjectFlags.FUNCTION):
            at = self.symbol(name, filename)
            if at is None:
                return None
            if flags & FindObjectFlags.VARIABLE:
                obj = self.variable(name, at)
                if obj is not None:
                    return obj
            if flags & FindObjectFlags.FUNCTION:
                return self.function(name, at)
        return None

    def find_last(
        self, prog: Program, name: str, flags: FindObjectFlags, filename: Optional[str]
    ) -> Optional[Object]:
        """drgn object finder run after drgn's own ``linux`` finder: what
        that one provides with DWARF but not always without it."""
        if name == "vmemmap" and flags & FindObjectFlags.VARIABLE:
            # x86-64: the start of the struct page array, vmemmap_base with
            # CONFIG_RANDOMIZE_MEMORY (arch/x86/mm/kaslr.c), else
            # __VMEMMAP_BASE_L4 (arch/x86/include/asm/pgtable_64_types.h).
            at = self.symbol("vmemmap_base", None)
            if at is not None:
                base = self.prog.read_u64(at.address)
            else:
                base = 0xFFFFEA0000000000
            return Object(self.prog, self.prog.type("struct page *"), base)
        return None

    def constant(self, name: str) -> Optional[Object]:
        """An enumerator as a constant of its enum type."""
        for btf in (self.types.vmlinux, *self.types.modules.values()):
            found = btf.enumerator(name)
            if found is not None:
                type_id, value = found
                return Object(self.prog, self.types.type(btf, type_id), value)
        return None

    def variable(self, name: str, at: SymbolAt) -> Optional[Object]:
        override = self.overrides.get(name)
        if override is not None:
            obj = override(name, at.address)
            if obj is not None:
                return obj
        percpu = self._percpu_vars().get(name)
        if percpu is not None:
            btf, var_id = percpu
            return Object(self.prog, self.types.type(btf, var_id), address=at.address)
        decl = DECLARATIONS.get(name)
        if decl is None:
            return None
        try:
            return Object(
                self.prog, self.declared_type(decl, at.size), address=at.address
            )
        except LookupError:
            return None  # e.g. a type this kernel (or its BTF) lacks

    def declared_type(self, decl: Declaration, symbol_size: int = 0) -> Type:
        """The drgn type of a :class:`Declaration`."""
        t = self.prog.type(decl.type)
        if decl.length is None:
            return t
        length: Optional[int]
        if isinstance(decl.length, int):
            length = decl.length
        elif decl.length == _A:
            size = (
                t.size if t.kind != TypeKind.POINTER else self.prog.type("void *").size
            )
            length = symbol_size // size if symbol_size and size else None
        else:
            length = self.types.enumerator_value(decl.length)
            if length is None and symbol_size:  # e.g. a module without BTF
                size = (
                    self.prog.type("void *").size
                    if t.kind == TypeKind.POINTER
                    else t.size
                )
                length = symbol_size // size if size else None
        return self.prog.array_type(t, length)

    def function(self, name: str, at: SymbolAt) -> Optional[Object]:
        for btf in (self.types.vmlinux, *self.types.modules.values()):
            for type_id in btf.ids_by_name(name, (Kind.FUNC,)):
                proto = self.types.type(btf, btf.type(type_id).size_or_type)
                return Object(self.prog, proto, address=at.address)
        return None

    def _percpu_vars(self) -> Dict[str, Tuple[Btf, int]]:
        # BTF_KIND_VAR records of the .data..percpu DATASEC (pahole emits
        # per-CPU variables only).
        if self._percpu is None:
            out: Dict[str, Tuple[Btf, int]] = {}
            for btf in (self.types.vmlinux, *self.types.modules.values()):
                for sec in btf.ids_of_kind((Kind.DATASEC,)):
                    for var_id, _, _ in btf.datasec(btf.type(sec)):
                        var = btf.type(var_id)
                        if var.kind == Kind.VAR:
                            out.setdefault(var.name, (btf, var.size_or_type))
            self._percpu = out
        return self._percpu
