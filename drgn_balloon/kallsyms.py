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
- an older dump: ``System.map-RELEASE`` when there is one (``-s``, next to
  the vmcore, ``/boot``), moved by VMCOREINFO's ``KERNELOFFSET`` (KASLR) and
  checked against the ``SYMBOL(name)=address`` lines VMCOREINFO holds, so
  that the map of another build is refused; else the kallsyms tables found
  in the kernel image itself (:func:`_kallsyms_in_image`), decoded by drgn
  and checked the same way;
- modules: the symbol table each module keeps in memory (drgn's
  :func:`~drgn.helpers.linux.kallsyms.module_kallsyms`), once
  ``struct module`` is known.
"""

import os
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, cast

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
    from .vmcoreinfo import vmcoreinfo as read_vmcoreinfo

    return read_vmcoreinfo(prog)


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


def is_system_map_name(path: str) -> bool:
    """Whether a ``-s`` file is named as a System.map (not debug info)."""
    return "System.map" in os.path.basename(path)


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
        elif is_system_map_name(path):
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


#: x86-64's __START_KERNEL_map: KASLR moves the kernel image's symbols,
#: not the absolute ones (per-CPU offsets, ``A`` symbols) below it.
KERNEL_IMAGE_START = 0xFFFFFFFF80000000


def _relocate(address: int, offset: int) -> int:
    if address < KERNEL_IMAGE_START:
        return address
    return (address + offset) & 0xFFFFFFFFFFFFFFFF


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
        if address is None or name in VALUE_SYMBOLS:
            continue
        if _relocate(address, offset) != expected:
            raise SystemMapMismatch(
                f"{path} is of another kernel build than the dump: it puts {name} "
                f"at {_relocate(address, offset):#x} (with "
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
    return [(n, _relocate(a, offset), t) for n, a, t in entries]


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


#: How far past ``_stext`` the kernel image's read-only data is searched for
#: the kallsyms tables (a distribution kernel's image is 20 to 40 MiB).
IMAGE_SEARCH = 96 << 20


#: VMCOREINFO ``SYMBOL()`` lines that hold a pointer's value, not the
#: symbol's address: kernel/crash_core.c's ``VMCOREINFO_SYMBOL_ARRAY(
#: mem_section)`` prints ``(unsigned long)mem_section``, which with
#: CONFIG_SPARSEMEM_EXTREME (x86-64 distributions) is a pointer variable.
VALUE_SYMBOLS = frozenset(("mem_section",))

#: VMCOREINFO ``SYMBOL()`` lines that are addresses of kernel image symbols
#: (some others, like ``mem_section``, hold a pointer's value).
CHECKED_SYMBOLS = ("_stext", "init_uts_ns", "swapper_pg_dir")


def _kallsyms_in_image(prog: Program, info: bytes) -> Optional[object]:
    """
    Find the kernel's own kallsyms tables in its image when VMCOREINFO does
    not say where they are (before Linux 6.0), and decode them with drgn.

    scripts/kallsyms.c writes, each 8-byte aligned, ``kallsyms_offsets``
    (``int[num_syms]``), ``kallsyms_relative_base`` (``_text``, relocated
    with the kernel), ``kallsyms_num_syms``, ``kallsyms_names`` (per symbol
    a length, one byte, or two with the 0x80 bit since v6.1's 73bbb94466fd
    "kallsyms: support big kernel symbols", then token indices),
    ``kallsyms_markers`` (``u32`` per 256 symbols), ``kallsyms_token_table``
    (256 NUL-terminated strings) and ``kallsyms_token_index`` (``u16[256]``).
    The search looks for ``_text`` followed by a plausible symbol count; the
    result counts only if the decoded symbols put :data:`CHECKED_SYMBOLS`
    where VMCOREINFO's ``SYMBOL()`` lines say.
    """
    expected = vmcoreinfo_symbols(info)
    stext = expected.get("_stext")
    if stext is None:
        return None
    bases = {stext, stext & ~0x1FFFFF}
    chunk = 4 << 20
    for start in range(stext & ~0xFFF, stext + IMAGE_SEARCH, chunk):
        data = _read_holey(prog, start, chunk + 16)
        for base in bases:
            needle = base.to_bytes(8, "little")
            pos = data.find(needle)
            while pos >= 0:
                if pos % 8 == 0:
                    count = int.from_bytes(data[pos + 8 : pos + 12], "little")
                    if 1000 <= count <= 10_000_000:
                        index = _try_tables(prog, start + pos, count, stext, expected)
                        if index is not None:
                            return index
                pos = data.find(needle, pos + 1)
    return None


def _read_holey(prog: Program, address: int, size: int) -> bytes:
    # prog.read() of a range with pages missing from the dump (makedumpfile
    # leaves out zero and free pages): the missing ones read as zeros.
    from drgn import FaultError

    try:
        return bytes(prog.read(address, size))
    except FaultError:
        if size <= 4096:
            return bytes(size)
    half = (size // 2 + 4095) & ~4095
    return _read_holey(prog, address, half) + _read_holey(
        prog, address + half, size - half
    )


def _try_tables(
    prog: Program, relative_base: int, count: int, stext: int, expected: Dict[str, int]
) -> Optional[object]:
    import drgn.helpers.linux.kallsyms as drgn_kallsyms

    # drgn's decoder of the kallsyms tables (what load_vmlinux_kallsyms()
    # calls with VMCOREINFO's addresses; private, as in drgn 0.0.31 and 0.3.0).
    load: Any = drgn_kallsyms._linux_helper_load_builtin_kallsyms  # type: ignore[attr-defined]

    def align8(x: int) -> int:
        return (x + 7) & ~7

    try:
        num_syms = relative_base + 8
        names = num_syms + 8
        offsets = relative_base - align8(4 * count)
        # Walk the names (read as needed: what follows them may not be in
        # the dump) to find the tables after them.
        blob = b""
        pos = 0
        for _ in range(count):
            if pos + 260 > len(blob):
                blob += prog.read(names + len(blob), 1 << 20)
            length = blob[pos]
            if length & 0x80:
                length = (length & 0x7F) | (blob[pos + 1] << 7)
                pos += 2
            else:
                pos += 1
            pos += length
        markers = align8(names + pos)
        after_markers = align8(markers + 4 * ((count + 255) // 256))
        # Newer kernels (Debian's 6.1.192 too) put kallsyms_seqs_of_names (3
        # bytes a symbol) after the markers (60443c88f3a8 "kallsyms: Improve
        # the performance of kallsyms_lookup_name()"): try both places.
        for token_table in (after_markers, align8(after_markers + 3 * count)):
            token_index = _token_index(prog, token_table)
            if token_index is not None:
                break
        else:
            return None
        index: Any = load(
            prog,
            names,
            token_table,
            token_index,
            num_syms,
            offsets,
            relative_base,
            0,
            stext,
        )
    except Exception:  # noqa: BLE001 (FaultError, drgn's BadDataError...)
        return None
    for name in CHECKED_SYMBOLS:
        if name not in expected:
            continue
        try:
            found = index(prog, name, None, True)
        except Exception:  # noqa: BLE001 (drgn's errors vary by version)
            return None
        if not any(sym.address == expected[name] for sym in found):
            # (swapper_pg_dir is a macro for init_top_pgt on x86-64: absent
            # from kallsyms, which is no disagreement.)
            if found or name != "swapper_pg_dir":
                return None
    return cast(object, index)


def _token_index(prog: Program, token_table: int) -> Optional[int]:
    # kallsyms_token_index (u16[256]) if token_table is kallsyms_token_table:
    # 256 NUL-terminated strings whose offsets the index lists.
    from drgn import FaultError

    try:
        tokens = prog.read(token_table, 4096)
        starts = []
        end = 0
        for _ in range(256):
            starts.append(end)
            end = tokens.index(b"\0", end) + 1
        token_index = (token_table + end + 7) & ~7
        raw = prog.read(token_index, 512)
    except (FaultError, ValueError):
        return None
    values = [int.from_bytes(raw[2 * i : 2 * i + 2], "little") for i in range(256)]
    return token_index if values == starts else None


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
    given = {p for p in symbols if is_system_map_name(p)}
    for path in find_system_map(prog, symbols, core_path):
        try:
            return symbol_index(system_map_symbols(path, info)), path
        except MissingDebugInfo as e:
            if path in given:
                raise  # the user's own choice: say what is wrong with it
            problems.append(e.message)  # found by looking around: go on
    if not live:
        found = _kallsyms_in_image(prog, info)
        if found is not None:
            return found, "kallsyms (found in the kernel image)"
    if problems:
        raise SystemMapMismatch("; ".join(problems))
    release = osrelease(info) or "RELEASE"
    raise KallsymsMissing(
        "the kernel's symbols cannot be found (VMCOREINFO says where kallsyms is "
        "only since Linux 6.0, and the kernel image has no kallsyms tables that "
        "match it): pass -s System.map-" + release + " (from the kernel's image "
        "package, /boot) or the vmlinux with debug info"
    )
