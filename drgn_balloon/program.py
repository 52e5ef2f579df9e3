"""
The program and its debug info
------------------------------

The ``drgn_balloon.program`` module is the one place that decides which
debug info the report reads and checks that it belongs to the dump:
:func:`check_program` loads what is missing (from ``-s`` files, ``-s``
directories and the vmcore's directory) and says exactly what is wrong with
each file given. Without DWARF debug info for the kernel, or when asked
(``--btf``), it reads the kernel's own BTF and kallsyms instead
(:mod:`drgn_balloon.btf_debuginfo`). Per-program state (the vmcore's path
for drgn that does not know it, the BTF source) is kept in ``prog.cache``.
"""

import os
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple

from drgn import Program

from .errors import BadDump, MissingDebugInfo

__all__ = [
    "DebugInfo",
    "check_program",
    "core_dump_path",
    "search_directories",
    "set_core_dump_path",
]

_CACHE_KEY = "drgn_balloon.core_dump_path"


def set_core_dump_path(prog: Program, path: str) -> None:
    """Note which file *prog* was opened from (drgn < 0.1.0 does not)."""
    prog.cache[_CACHE_KEY] = path


def core_dump_path(prog: Program) -> Optional[str]:
    """The path of the vmcore the program was opened from, if known: as the
    user named it (:func:`set_core_dump_path`), else as drgn knows it."""
    cached = prog.cache.get(_CACHE_KEY)
    if cached:
        return str(cached)
    path = getattr(prog, "core_dump_path", None)  # drgn >= 0.1.0
    return str(path) if path else None


class DebugInfo(NamedTuple):
    """Where the report's types and symbols came from."""

    #: ``"dwarf"`` (vmlinux and module debug info), ``"btf"`` (the kernel's
    #: own BTF and kallsyms) or ``"btf+layout"`` (the same, with the balloon
    #: module's structure laid out from its era's member list).
    source: str
    #: DWARF: the debug files the user gave or the tool found and loaded.
    #: BTF: where the symbols and types were read, in that order, e.g.
    #: ``("kallsyms (VMCOREINFO)", "vmlinux BTF (memory, 4,360,537 bytes)",
    #: "vmw_balloon BTF (memory, 5,735 bytes)")``, or a System.map's path.
    files: Tuple[str, ...]
    #: Problems met on the way that did not stop the report (e.g. the
    #: damaged BTF of a module the report does not read).
    notes: Tuple[str, ...] = ()


class ElfFacts(NamedTuple):
    """What a file given with ``-s`` is."""

    elf: bool
    #: Whether it has a ``.debug_info`` section (not stripped).
    debug_info: bool
    #: Whether it is a kernel module (``.modinfo`` section).
    module: bool
    build_id: Optional[bytes]
    #: The kernel release a module was built for (``vermagic=`` in
    #: ``.modinfo``, first word), or ``None``.
    vermagic_release: Optional[str] = None


def elf_facts(path: str) -> ElfFacts:
    """Read the section headers of an ELF file (64-bit little endian)."""
    import struct

    try:
        with open(path, "rb") as f:
            ident = f.read(64)
            if ident[:4] != b"\x7fELF" or len(ident) < 64:
                return ElfFacts(False, False, False, None)
            if ident[4] != 2 or ident[5] != 1:  # not ELFCLASS64 / ELFDATA2LSB
                return ElfFacts(True, True, False, None)
            shoff: int = struct.unpack_from("<Q", ident, 0x28)[0]
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ident, 0x3A)
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            sections: List[Tuple[int, int, int, int]] = []
            for i in range(shnum):
                name, type_, _, _, offset, size = struct.unpack_from(
                    "<IIQQQQ", table, i * shentsize
                )
                sections.append((name, type_, offset, size))
            _, _, stroff, strsize = sections[shstrndx]
            f.seek(stroff)
            strtab = f.read(strsize)
            names = {}
            for name, type_, offset, size in sections:
                end = strtab.find(b"\0", name)
                names[strtab[name:end].decode("ascii", "replace")] = (
                    type_,
                    offset,
                    size,
                )
            release = None
            modinfo = names.get(".modinfo")
            if modinfo is not None:
                f.seek(modinfo[1])
                for entry in f.read(min(modinfo[2], 1 << 16)).split(b"\0"):
                    if entry.startswith(b"vermagic="):
                        words = entry[len(b"vermagic=") :].split()
                        release = words[0].decode("ascii", "replace") if words else None
            build_id = None
            note = names.get(".note.gnu.build-id")
            if note is not None:
                f.seek(note[1])
                data = f.read(min(note[2], 4096))
                namesz, descsz, _ = struct.unpack_from("<III", data, 0)
                desc = 12 + ((namesz + 3) & ~3)
                build_id = data[desc : desc + descsz]
    except (OSError, struct.error, IndexError):
        return ElfFacts(False, False, False, None)
    debug = ".debug_info" in names and names[".debug_info"][1] != 8  # SHT_NOBITS
    return ElfFacts(True, debug, ".modinfo" in names, build_id, release)


def search_directories(prog: Program, symbols: Iterable[str]) -> List[str]:
    """The directories searched for debug files: the ``-s`` directories,
    then the vmcore's directory and its ``debug/`` subdirectory (drgn-tools'
    layout)."""
    dirs = [p for p in symbols if os.path.isdir(p)]
    core = core_dump_path(prog)
    if core:
        here = os.path.dirname(os.path.abspath(core))
        dirs += [here, os.path.join(here, "debug")]
    out: List[str] = []
    for d in dirs:
        if os.path.isdir(d) and d not in out:
            out.append(d)
    return out


def _vmlinux_candidates(prog: Program, symbols: Sequence[str]) -> List[str]:
    from .vmcoreinfo import vmcoreinfo_osrelease

    release = vmcoreinfo_osrelease(prog)
    names = ["vmlinux", "vmlinux.debug"]
    if release:
        names = [f"vmlinux-{release}", f"vmlinux-{release}.debug"] + names
    out = []
    for d in search_directories(prog, symbols):
        for n in names:
            path = os.path.join(d, n)
            if os.path.isfile(path) and path not in out:
                out.append(path)
    return out


def _given_file_problem(path: str, facts: ElfFacts) -> Optional[str]:
    if not facts.elf:
        return f"-s {path}: not an ELF file (give vmlinux or a .ko with debug info)"
    if not facts.debug_info:
        return (
            f"-s {path}: has no debug info (stripped): give the file from the "
            "kernel's debug info package (e.g. linux-image-*-dbg, kernel-debuginfo)"
        )
    return None


def _kernel_has_types(prog: Program) -> bool:
    try:
        prog.type("struct page")
    except LookupError:
        return False
    return True


def _load(prog: Program, paths: Sequence[str], default: bool) -> None:
    # drgn logs a warning for every loaded module without debug info; only
    # vmlinux and the balloon module matter to this tool, and they are judged
    # here and in find_balloon() with one precise message.
    import logging

    import drgn

    logger = logging.getLogger("drgn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        prog.load_debug_info(paths, default=default, main=True)
    except drgn.MissingDebugInfoError:
        pass  # judged below
    except (OSError, ValueError) as e:
        raise MissingDebugInfo(f"cannot load debug info: {e}") from e
    finally:
        logger.setLevel(level)


def check_program(
    prog: Program,
    symbols: Sequence[str] = (),
    *,
    load_default: bool = False,
    btf: bool = False,
) -> DebugInfo:
    """
    Make sure the program has the debug info the report needs, and that it
    belongs to the dump.

    Every ``-s`` path is checked: a missing path, a file that is not ELF and
    a stripped file are errors that name the file (a file named
    ``System.map*`` is not debug info: the BTF source reads it). vmlinux,
    when drgn has not loaded it, is looked for among the ``-s`` files, in the
    ``-s`` directories and next to the vmcore. The balloon module's debug
    info is looked for later, by :func:`~drgn_balloon.balloon.find_balloon`,
    in the same places.

    Without DWARF debug info for the kernel (none given or found), or with
    *btf*, the kernel is read through its own BTF and kallsyms
    (:func:`~drgn_balloon.btf_debuginfo.load_btf_debug_info`).

    This is the one function that chooses the source of debug info.

    :param symbols: ``-s`` files and directories.
    :param load_default: also let drgn's standard finders load vmlinux and the
        modules (the console script; drgn's own CLI has done it in script mode).
    :param btf: read BTF and kallsyms even if DWARF is there (``--btf``).
    :raises BadDump: the dump is truncated.
    :raises MissingDebugInfo: with what is wrong, and which file is needed.
    """
    from .btf_debuginfo import debuginfo_source
    from .dumpfile import truncation
    from .kallsyms import is_system_map_name

    core = core_dump_path(prog)
    if core and os.path.isfile(core):
        problem = truncation(core)
        if problem:
            raise BadDump(problem)
    files: List[str] = []
    given: List[Tuple[str, ElfFacts]] = []
    for path in symbols:
        if os.path.isdir(path):
            continue
        if not os.path.exists(path):
            raise MissingDebugInfo(f"-s {path}: no such file or directory")
        if is_system_map_name(path):
            continue  # not ELF: kallsyms.py reads it in BTF mode
        facts = elf_facts(path)
        problem = _given_file_problem(path, facts)
        if problem:
            raise MissingDebugInfo(problem)
        given.append((path, facts))
        files.append(path)
    recorded = debuginfo_source(prog)
    if btf or recorded is not None:
        # --btf, or BTF already loaded (a %balloon after a report).
        return _btf(prog, symbols, fallback=False)
    vmlinux_given = [p for p, f in given if not f.module]
    if load_default or not _kernel_has_types(prog):
        to_load = list(vmlinux_given)
        if not vmlinux_given and not _kernel_has_types(prog):
            to_load += _vmlinux_candidates(prog, symbols)
        _load(prog, to_load, default=load_default)
        files += [p for p in to_load if p not in files]
    if not _kernel_has_types(prog):
        if vmlinux_given:
            raise MissingDebugInfo(
                f"-s {vmlinux_given[0]}: drgn did not load it as the kernel's "
                "debug info: it is not the vmlinux of this dump's kernel "
                f"({_release(prog)})"
            )
        # No DWARF for the kernel: its own BTF and kallsyms.
        return _btf(prog, symbols, fallback=True)
    _check_same_build(prog, vmlinux_given)
    return DebugInfo("dwarf", tuple(files))


def _btf(prog: Program, symbols: Sequence[str], fallback: bool) -> DebugInfo:
    from .btf_debuginfo import load_btf_debug_info

    try:
        return load_btf_debug_info(prog, symbols)
    except MissingDebugInfo as e:
        if not fallback:
            raise
        # Both sources failed: say first what DWARF needs.
        raise type(e)(
            f"no debug info for the kernel (vmlinux of {_release(prog)}: install "
            "the kernel's debug info package, e.g. linux-image-*-dbg, "
            "kernel-debuginfo, or pass -s /path/to/vmlinux or -s DIR), and no "
            f"BTF mode: {e.message}"
        ) from e


def _release(prog: Program) -> str:
    from .vmcoreinfo import vmcoreinfo_osrelease

    return vmcoreinfo_osrelease(prog) or "unknown release"


def _check_same_build(prog: Program, given: Sequence[str]) -> None:
    # The kernel wrote where init_uts_ns is into VMCOREINFO; debug info of
    # another build puts it elsewhere. (drgn >= 0.1.0 also checks the build
    # ID; older drgn takes any vmlinux.)
    from .vmcoreinfo import vmcoreinfo_symbol

    expected = vmcoreinfo_symbol(prog, "init_uts_ns")
    if expected is None:
        return
    try:
        actual: Optional[int] = prog["init_uts_ns"].address_
    except LookupError:
        actual = None
    if actual != expected:
        what = f"-s {given[0]}" if given else "the vmlinux debug info drgn loaded"
        raise MissingDebugInfo(
            f"{what} is of another kernel build than the dump (init_uts_ns at "
            f"{actual or 0:#x}, the dump says {expected:#x}): pass the vmlinux "
            f"of kernel {_release(prog)}"
        )
