"""
Kernel symbols without debug info
---------------------------------

The ``drgn_balloon.kallsyms`` module finds the addresses of the kernel's
symbols where no vmlinux is at hand:

- live, ``/proc/kallsyms`` (root), through drgn's
  :func:`~drgn.helpers.linux.kallsyms.load_vmlinux_kallsyms`;
- a dump of Linux v6.0 or later: the kernel's own kallsyms tables, found from
  VMCOREINFO (Linux commit f09bddbd86619 "vmcoreinfo: add kallsyms_num_syms
  symbol" and its series), also through drgn's helper;
- an older dump: ``System.map-RELEASE`` from the kernel's image package,
  moved by VMCOREINFO's ``KERNELOFFSET`` (KASLR) and checked against the
  ``SYMBOL(name)=address`` lines VMCOREINFO holds, so that the map of another
  build is refused;
- modules: the symbol table each module keeps in memory (drgn's
  :func:`~drgn.helpers.linux.kallsyms.module_kallsyms`), once
  ``struct module`` is known.
"""

import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from drgn import Program, ProgramFlags

from .errors import MissingDebugInfo

__all__ = [
    "KallsymsMissing",
    "SystemMapMismatch",
    "find_system_map",
    "read_system_map",
    "vmcoreinfo_symbols",
    "vmlinux_symbol_index",
]


class KallsymsMissing(MissingDebugInfo):
    """No way to find the kernel's symbols (exit code 5)."""

    kind = "no_kallsyms"


class SystemMapMismatch(MissingDebugInfo):
    """A System.map that is not of the dump's build (exit code 5)."""

    kind = "wrong_system_map"


_SYMBOL_LINE = re.compile(rb"^SYMBOL\(([^)]+)\)=([0-9a-fA-F]+)$", re.M)
_KERNELOFFSET = re.compile(rb"^KERNELOFFSET=([0-9a-fA-F]+)$", re.M)
_OSRELEASE = re.compile(rb"^OSRELEASE=(.*)$", re.M)


def vmcoreinfo(prog: Program) -> bytes:
    """The VMCOREINFO note of the program (empty if none)."""
    from .pages import _vmcoreinfo

    return _vmcoreinfo(prog)


def vmcoreinfo_symbols(info: bytes) -> Dict[str, int]:
    """VMCOREINFO's ``SYMBOL(name)=address`` lines."""
    return {
        m.group(1).decode(): int(m.group(2), 16) for m in _SYMBOL_LINE.finditer(info)
    }


def kernel_offset(info: bytes) -> int:
    """VMCOREINFO's ``KERNELOFFSET`` (the KASLR shift), 0 if absent."""
    match = _KERNELOFFSET.search(info)
    return int(match.group(1), 16) if match else 0


def osrelease(info: bytes) -> Optional[str]:
    match = _OSRELEASE.search(info)
    return match.group(1).decode("utf-8", "replace") if match else None


def read_system_map(path: str) -> List[Tuple[str, int, str]]:
    """
    (name, address, nm type) of each line of a System.map.

    :raises SystemMapMismatch: if the file is not a System.map, e.g.
        Debian's placeholder "The real System.map is in the
        linux-image-<version>-dbg package".
    """
    out = []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KallsymsMissing(f"cannot read {path}: {e.strerror}") from None
    for line in data.splitlines():
        parts = line.split()
        if len(parts) != 3 or len(parts[1]) != 1:
            continue
        try:
            address = int(parts[0], 16)
        except ValueError:
            continue
        out.append((parts[2].decode("utf-8", "replace"), address, parts[1].decode()))
    if len(out) < 100:
        raise SystemMapMismatch(
            f"{path} is not a System.map (Debian's image packages ship a "
            "placeholder; the real one is in the linux-image-*-dbg package "
            "or the kernel build directory)"
        )
    return out


def find_system_map(
    prog: Program, symbols: Sequence[str], core_path: Optional[str]
) -> List[str]:
    """System.map candidates: ``-s`` files and directories, the vmcore's
    directory, ``/boot/System.map-RELEASE``."""
    from .system import kernel_release

    release = osrelease(vmcoreinfo(prog)) or kernel_release(prog)
    names = [f"System.map-{release}", "System.map"]
    out: List[str] = []
    for path in symbols:
        if os.path.isdir(path):
            out.extend(os.path.join(path, n) for n in names)
        elif os.path.basename(path).startswith("System.map"):
            out.append(path)
    if core_path:
        here = os.path.dirname(os.path.abspath(core_path))
        out.extend(os.path.join(here, n) for n in names)
    out.append(f"/boot/System.map-{release}")
    unique: List[str] = []
    for path in out:
        if path not in unique and os.path.isfile(path):
            unique.append(path)
    return unique


def system_map_symbols(path: str, info: bytes) -> List[Tuple[str, int, str]]:
    """
    The symbols of a System.map at their run-time addresses: moved by
    VMCOREINFO's ``KERNELOFFSET`` and checked against its ``SYMBOL()``
    lines.

    :raises SystemMapMismatch: if a ``SYMBOL()`` line disagrees, or none
        can be checked.
    """
    entries = read_system_map(path)
    offset = kernel_offset(info)
    by_name = {name: address for name, address, _ in entries}
    checked = 0
    for name, expected in vmcoreinfo_symbols(info).items():
        address = by_name.get(name)
        if address is None:
            continue
        if (address + offset) & 0xFFFFFFFFFFFFFFFF != expected:
            raise SystemMapMismatch(
                f"{path} is of another kernel build than the dump: it puts {name} "
                f"at {(address + offset) & 0xFFFFFFFFFFFFFFFF:#x} (with "
                f"KERNELOFFSET {offset:#x}), the dump's VMCOREINFO says "
                f"{expected:#x}"
                + (f"; need System.map-{osrelease(info)}" if osrelease(info) else "")
            )
        checked += 1
    if not checked:
        raise SystemMapMismatch(
            f"cannot check {path} against the dump: VMCOREINFO names none of its "
            "symbols"
        )
    return [(n, (a + offset) & 0xFFFFFFFFFFFFFFFF, t) for n, a, t in entries]


def symbol_index(entries: Iterable[Tuple[str, int, str]]) -> object:
    """A drgn ``SymbolIndex`` of (name, address, nm type) entries; sizes are
    the distance to the next symbol, as kallsyms gives them."""
    from drgn import Symbol, SymbolBinding, SymbolIndex, SymbolKind

    ordered = sorted(entries, key=lambda e: e[1])
    symbols = []
    for i, (name, address, code) in enumerate(ordered):
        size = 0
        if i + 1 < len(ordered):
            size = max(ordered[i + 1][1] - address, 0)
        kind = (
            SymbolKind.FUNC
            if code in "tTwW"
            else SymbolKind.OBJECT
            if code.lower() in "dbrgsv"
            else SymbolKind.UNKNOWN
        )
        binding = SymbolBinding.GLOBAL if code.isupper() else SymbolBinding.LOCAL
        symbols.append(Symbol(name, address, size, binding, kind))
    return SymbolIndex(symbols)


def vmlinux_symbol_index(
    prog: Program, symbols: Sequence[str], core_path: Optional[str]
) -> Tuple[object, str]:
    """
    The kernel's symbols, and where they came from.

    :raises KallsymsMissing: nothing to find them with.
    :raises SystemMapMismatch: the only System.map is of another build.
    """
    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    info = vmcoreinfo(prog)
    live = bool(prog.flags & ProgramFlags.IS_LIVE)
    if live or b"SYMBOL(kallsyms_num_syms)=" in info:
        try:
            index = load_vmlinux_kallsyms(prog)
        except Exception as e:  # noqa: BLE001 (drgn raises several kinds)
            if live:
                raise KallsymsMissing(f"cannot read /proc/kallsyms: {e}") from None
            import drgn

            raise KallsymsMissing(
                "cannot read the kernel's kallsyms from the dump with drgn "
                f"{getattr(drgn, '__version__', '?')} ({e}): a newer drgn may "
                "(0.3.0 reads those of Linux 7.x), or pass the vmlinux with -s"
            ) from None
        return index, "/proc/kallsyms" if live else "kallsyms (VMCOREINFO)"
    problems: List[str] = []
    for path in find_system_map(prog, symbols, core_path):
        try:
            return symbol_index(system_map_symbols(path, info)), path
        except MissingDebugInfo as e:
            problems.append(e.message)
    if problems:
        raise SystemMapMismatch("; ".join(problems))
    release = osrelease(info) or "RELEASE"
    raise KallsymsMissing(
        "the dump does not say where the kernel's symbols are (VMCOREINFO has "
        "kallsyms only since Linux 6.0): pass -s System.map-" + release + " (from "
        "the kernel's image package, /boot) or the vmlinux with debug info"
    )
