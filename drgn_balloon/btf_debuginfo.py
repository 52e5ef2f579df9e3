"""
Debug info from the kernel itself: BTF and kallsyms
---------------------------------------------------

:func:`load_btf_debug_info` makes a program that has no DWARF debug info
readable by the rest of drgn_balloon, unchanged: it registers with drgn

- a symbol finder: kallsyms of vmlinux (:mod:`drgn_balloon.kallsyms`) and
  of the loaded modules;
- a type finder: vmlinux BTF (``/sys/kernel/btf/vmlinux`` live, else the
  bytes between ``__start_BTF`` and ``__stop_BTF`` in the dump) and every
  module's split BTF (``/sys/kernel/btf/MODULE`` live, else the kernel's
  ``btf_modules`` list: ``struct btf_module`` -> ``struct btf``);
- an object finder (:mod:`drgn_balloon.btf_objects`).

A balloon module without BTF (Linux 5.10 and older, no
``CONFIG_DEBUG_INFO_BTF_MODULES``) gets its ``struct vmballoon`` laid out
from its era's member list (:mod:`drgn_balloon.btf_layout`).

drgn needs ``Program.register_type_finder``, ``register_object_finder``,
``register_symbol_finder`` and ``drgn.helpers.linux.kallsyms`` (all in
drgn 0.0.30 and newer; 0.0.27 to 0.0.29 lack the kallsyms helpers).

Which source was used is kept in ``prog.cache`` as a
:class:`~drgn_balloon.program.DebugInfo` (:func:`debuginfo_source`);
:func:`~drgn_balloon.program.check_program` chooses between DWARF and this.
"""

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, cast

from drgn import FaultError, Program, ProgramFlags, Symbol, Type, TypeMember

from .btf import BadBtf, Btf, parse_split
from .btf_objects import BtfObjects, SymbolAt
from .btf_types import BtfTypes
from .errors import MissingDebugInfo
from .program import DebugInfo, core_dump_path

__all__ = [
    "btf_supported",
    "debuginfo_source",
    "load_btf_debug_info",
]

_CACHE_KEY = "drgn_balloon.btf_debuginfo"

#: Balloon modules whose BTF must be sound (others are skipped if damaged).
_BALLOON_MODULES = ("vmw_balloon", "vmware_balloon")


def debuginfo_source(prog: Program) -> Optional[DebugInfo]:
    """The :class:`~drgn_balloon.program.DebugInfo` of the BTF and kallsyms
    loaded into *prog* by :func:`load_btf_debug_info`, or ``None``."""
    found = prog.cache.get(_CACHE_KEY)
    return found if isinstance(found, DebugInfo) else None


def btf_supported() -> Optional[str]:
    """``None`` if this drgn can read BTF mode, else why not (one line)."""
    import drgn

    missing = [
        name
        for name in (
            "register_type_finder",
            "register_object_finder",
            "register_symbol_finder",
        )
        if not hasattr(Program, name)
    ]
    try:
        import drgn.helpers.linux.kallsyms  # noqa: F401
    except ImportError:
        missing.append("drgn.helpers.linux.kallsyms")
    if not missing:
        return None
    return (
        f"drgn {getattr(drgn, '__version__', '?')} cannot read the kernel's own BTF "
        f"and kallsyms (it lacks {', '.join(missing)}): use drgn 0.0.30 or newer, "
        "or pass the kernel's debug info (vmlinux) with -s"
    )


class _Loader:
    def __init__(self, prog: Program, symbols: Sequence[str]) -> None:
        self.prog = prog
        self.symbols = symbols
        self.live = bool(prog.flags & ProgramFlags.IS_LIVE)
        self.origins: List[str] = []
        self.notes: List[str] = []
        #: module name -> {symbol name: (address, size)}
        self.module_symbols: Dict[str, Dict[str, Tuple[int, int]]] = {}

    def symbol(self, name: str, filename: Optional[str]) -> Optional[SymbolAt]:
        # A filename ("vmw_balloon.c") that names a module: that module's
        # symbols first. Then vmlinux, then every module.
        if filename:
            stem = os.path.splitext(os.path.basename(filename))[0]
            found = self.module_symbols.get(stem, {}).get(name)
            if found is not None:
                return SymbolAt(*found)
        try:
            sym = self.prog.symbol(name)
        except LookupError:
            sym = None
        if sym is not None:
            return SymbolAt(sym.address, sym.size)
        for table in self.module_symbols.values():
            found = table.get(name)
            if found is not None:
                return SymbolAt(*found)
        return None

    def vmlinux_btf(self, index: Callable[..., List[Symbol]]) -> Btf:
        # index: the kernel's symbols, not registered yet (so that a kernel
        # without BTF leaves the program as it was).
        prog = self.prog
        if self.live:
            path = "/sys/kernel/btf/vmlinux"
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise MissingDebugInfo(
                    f"no BTF for the running kernel ({path}: {e.strerror}); the "
                    "kernel needs CONFIG_DEBUG_INFO_BTF, or pass its vmlinux with -s"
                ) from None
            self.origins.append(path)
            return Btf(data, None, "vmlinux")
        # drgn's symbol finder protocol: (prog, name, address, one).
        start_found = index(prog, "__start_BTF", None, True)
        stop_found = index(prog, "__stop_BTF", None, True)
        if not start_found or not stop_found:
            raise MissingDebugInfo(
                "the kernel has no BTF (no __start_BTF symbol: built without "
                "CONFIG_DEBUG_INFO_BTF): pass its vmlinux with debug info with -s"
            ) from None
        start, stop = start_found[0].address, stop_found[0].address
        if not 24 <= stop - start <= 1 << 30:
            raise BadBtf(f"vmlinux BTF has an implausible size ({stop - start} bytes)")
        try:
            data = prog.read(start, stop - start)
        except FaultError as e:
            raise BadBtf(f"vmlinux BTF is not in the dump: {e}") from None
        self.origins.append(f"vmlinux BTF (memory, {len(data):,} bytes)")
        return Btf(data, None, "vmlinux")

    def module_btfs(self, types: BtfTypes) -> None:
        if self.live:
            found: List[Tuple[str, bytes, Optional[int]]] = []
            for name in sorted(self.module_symbols):
                try:
                    with open(f"/sys/kernel/btf/{name}", "rb") as f:
                        found.append((name, f.read(), None))
                except OSError:
                    continue
        else:
            found = [(n, d, s) for n, d, s in self._btf_modules_list()]
        for name, data, start_id in found:
            try:
                btf = parse_split(data, types.vmlinux, name, start_id)
            except BadBtf as e:
                if name in _BALLOON_MODULES:
                    raise
                self.notes.append(e.message)  # a module the report does not need
                continue
            types.add_module(btf)
            if name in _BALLOON_MODULES:
                self.origins.append(
                    f"{name} BTF ({'/sys/kernel/btf' if self.live else 'memory'}, "
                    f"{len(btf.data):,} bytes)"
                )

    def _btf_modules_list(self) -> List[Tuple[str, bytes, int]]:
        # kernel/bpf/btf.c (v5.11+): static LIST_HEAD(btf_modules) of
        # struct btf_module { struct list_head list; struct module *module;
        # struct btf *btf; ... }; struct btf { void *data; ... u32 data_size;
        # ... u32 start_id; ... char name[MODULE_NAME_LEN]; }.
        from drgn.helpers.linux.list import list_for_each_entry

        prog = self.prog
        try:
            head = prog["btf_modules"].address_of_()
        except (KeyError, LookupError):
            return []  # no CONFIG_DEBUG_INFO_BTF_MODULES
        entry = _btf_module_type(prog)
        out = []
        try:
            for i, bm in enumerate(list_for_each_entry(entry, head, "list")):
                if i > 10000:
                    break
                btf = bm.btf
                if not btf.value_():
                    continue
                name = bm.module.name.string_().decode("utf-8", "replace")
                size = btf.data_size.value_()
                if not 24 <= size <= 1 << 28:
                    self.notes.append(f"{name}'s BTF has an implausible size {size}")
                    continue
                data = prog.read(btf.data.value_(), size)
                out.append((name, data, btf.start_id.value_()))
        except FaultError as e:
            self.notes.append(f"the btf_modules list is not wholly in the dump: {e}")
        return out

    def module_kallsyms(self) -> object:
        try:
            from drgn.helpers.linux.kallsyms import module_kallsyms
        except ImportError:  # drgn 0.0.31: the same function, private
            from drgn.helpers.linux.kallsyms import (  # type: ignore[attr-defined,no-redef]
                _module_kallsyms as module_kallsyms,
            )

        from .system import for_each_loaded_module

        symbols = []
        try:
            for mod in for_each_loaded_module(self.prog):
                name = mod.name.string_().decode("utf-8", "replace")
                try:
                    syms = module_kallsyms(mod)
                except (FaultError, LookupError, ValueError, IndexError) as e:
                    self.notes.append(f"{name}'s symbols cannot be read: {e}")
                    continue
                self.module_symbols[name] = {s.name: (s.address, s.size) for s in syms}
                symbols.extend(syms)
        except FaultError as e:
            self.notes.append(f"the module list is not wholly in the dump: {e}")
        from drgn import SymbolIndex

        return SymbolIndex(symbols)


def _btf_module_type(prog: Program) -> Type:
    try:
        return prog.type("struct btf_module")
    except LookupError:
        pass
    # Not in BTF when nothing outside kernel/bpf/btf.c uses it: declared as
    # there (v5.11+; the members after btf are not read).
    ptr = prog.pointer_type
    return prog.struct_type(
        "btf_module",
        32,
        [
            _member(prog.type("struct list_head"), "list", 0),
            _member(ptr(prog.type("struct module")), "module", 128),
            _member(ptr(prog.type("struct btf")), "btf", 192),
        ],
    )


def _member(t: Type, name: str, bit_offset: int) -> TypeMember:
    return TypeMember(t, name, bit_offset)


def load_btf_debug_info(
    prog: Program, symbols: Sequence[str] = (), module_btf: bool = True
) -> DebugInfo:
    """
    Read the kernel through its BTF and kallsyms (see the module's
    docstring) and record where they came from in ``prog.cache``
    (:func:`debuginfo_source`).

    :param symbols: ``-s`` arguments: a System.map (or a directory holding
        one), used before the kernel image's own kallsyms on kernels
        before v6.0.
    :param module_btf: read modules' BTF (``False``: lay out the balloon
        as for a kernel without module BTF; for tests and comparisons).
    :raises MissingDebugInfo: this drgn cannot, the kernel has no BTF, no
        kallsyms, a System.map of another build (exit code 5).
    :raises BadBtf: damaged BTF (exit code 5).
    """
    why = btf_supported()
    if why is not None:
        raise MissingDebugInfo(why)
    found = prog.cache.get(_CACHE_KEY)
    if isinstance(found, DebugInfo):
        return found
    if isinstance(found, MissingDebugInfo):
        # Failed after the finders were registered: the same error again.
        raise type(found)(found.message)
    from .kallsyms import vmlinux_symbol_index

    loader = _Loader(prog, symbols)
    index, origin = vmlinux_symbol_index(prog, symbols, core_dump_path(prog))
    loader.origins.append(origin)
    vmlinux = loader.vmlinux_btf(cast(Callable[..., List[Symbol]], index))
    prog.register_symbol_finder("drgn_balloon_vmlinux", index, enable_index=0)
    types = BtfTypes(prog, vmlinux)
    prog.register_type_finder("drgn_balloon_btf", types.find, enable_index=0)
    objects = BtfObjects(prog, types, loader.symbol)
    prog.register_object_finder("drgn_balloon_btf", objects.find, enable_index=0)
    prog.register_object_finder(
        "drgn_balloon_btf_last", objects.find_last, enable_index=-1
    )
    modules = loader.module_kallsyms()
    prog.register_symbol_finder("drgn_balloon_modules", modules, enable_index=-1)
    from .btf_layout import install_layout

    try:
        if module_btf:
            loader.module_btfs(types)
        laid_out = install_layout(prog, types, objects, loader.module_symbols)
    except MissingDebugInfo as e:
        prog.cache[_CACHE_KEY] = e
        raise
    source = "btf"
    if laid_out is not None:
        source = "btf+layout"
        loader.origins.append(laid_out)
    result = DebugInfo(source, tuple(loader.origins), tuple(loader.notes))
    prog.cache[_CACHE_KEY] = result
    return result
