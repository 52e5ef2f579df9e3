"""
Debug info for the balloon module
---------------------------------

drgn loads ``vmlinux`` and whatever module debug info its standard finders
find. The balloon module is often missing: the user has ``vmw_balloon.ko``
next to the vmcore, or in a directory drgn does not search. The
``drgn_balloon.debuginfo`` module looks in the places a support engineer
would put it and, when nothing fits, says which file is needed and where it
looked.
"""

import os
from typing import Iterable, List, Optional, Sequence

from drgn import Program

from .errors import MissingDebugInfo
from .program import elf_facts, search_directories
from .system import kernel_release

__all__ = [
    "candidate_paths",
    "load_module_debug_info",
    "missing_error",
]


def candidate_paths(prog: Program, name: str, extra: Sequence[str] = ()) -> List[str]:
    """
    The files that may hold debug info for module *name*, in the order they
    are tried: files given by the user, files next to the vmcore (also in its
    ``debug/`` subdirectory, drgn-tools' layout), then the distribution
    locations under ``/usr/lib/debug`` and ``/lib/modules``.
    """
    release = kernel_release(prog)
    names = [f"{name}.ko.debug", f"{name}.ko"]
    paths: List[str] = []
    for path in extra:
        if not os.path.isdir(path) and os.path.basename(path).startswith(name):
            paths.append(path)
    # -s directories, the vmcore's directory and its debug/ subdirectory.
    for directory in search_directories(prog, extra):
        paths.extend(os.path.join(directory, n) for n in names)
    # The balloon drivers' directories in the kernel tree (vmw_balloon,
    # virtio_balloon and virtio, hv_balloon, cmm), then out-of-tree ones.
    for root in (f"/usr/lib/debug/lib/modules/{release}", f"/lib/modules/{release}"):
        for sub in (
            "kernel/drivers/misc",
            "kernel/drivers/virtio",
            "kernel/drivers/hv",
            "kernel/arch/powerpc/platforms/pseries",
            "updates",
            "misc",
        ):
            paths.extend(os.path.join(root, sub, n) for n in names)
    seen = set()
    unique = []
    for path in paths:
        if path not in seen:
            seen.add(path)
            unique.append(path)
    return unique


def _module_wants(prog: Program, name: str) -> Optional[bool]:
    # drgn >= 0.1.0 tracks modules; older drgn returns None (unknown).
    if not hasattr(prog, "module"):
        return None
    try:
        module = prog.module(name)
    except LookupError:
        return None
    return bool(module.wants_debug_file())


def _why_not(path: str, build_id: Optional[bytes], release: str) -> str:
    # Why a candidate file was not taken for the module.
    facts = elf_facts(path)
    if not facts.elf:
        return f"{path} (not an ELF file)"
    if not facts.debug_info:
        return f"{path} (no debug info: stripped)"
    if build_id and facts.build_id and facts.build_id != build_id:
        return (
            f"{path} (another build: build ID {facts.build_id.hex()}, the loaded "
            f"module's is {build_id.hex()})"
        )
    if facts.vermagic_release and facts.vermagic_release != release:
        return (
            f"{path} (another build: built for kernel {facts.vermagic_release}, "
            f"the dump's is {release})"
        )
    return f"{path} (did not match the loaded module)"


def load_module_debug_info(
    prog: Program, name: str, extra: Sequence[str] = ()
) -> List[str]:
    """
    Make sure drgn has debug info for loaded module *name*, trying
    :func:`candidate_paths` if it has none yet.

    :return: the paths that were tried (empty if nothing was needed).
    :raises MissingDebugInfo: if no file matched.
    """
    wants = _module_wants(prog, name)
    if wants is False:
        return []
    tried: List[str] = []
    existing = [p for p in candidate_paths(prog, name, extra) if os.path.isfile(p)]
    if wants is True:
        import drgn

        module = prog.module(name)
        build_id = getattr(module, "build_id", None)
        for path in existing:
            try:
                module.try_file(path)
            except (OSError, ValueError, drgn.MissingDebugInfoError):
                pass  # a file drgn cannot parse is not a match; _why_not says why
            if not module.wants_debug_file():
                return tried
            tried.append(_why_not(path, build_id, kernel_release(prog)))
        raise missing_error(prog, name, build_id.hex() if build_id else None, tried)
    # Old drgn: hand every existing candidate to load_debug_info and let the
    # caller check whether the balloon's type appeared.
    if existing:
        import drgn

        try:
            prog.load_debug_info(existing)
        except (OSError, ValueError, drgn.MissingDebugInfoError):
            pass  # find_balloon() checks whether the balloon's type appeared
    release = kernel_release(prog)
    return [_why_not(path, None, release) for path in existing]


def missing_error(
    prog: Program, name: str, build_id: Optional[str], tried: Iterable[str]
) -> MissingDebugInfo:
    """The error for a loaded module whose debug info was not found: which
    file is needed and where it was looked for."""
    release = kernel_release(prog)
    tried = list(tried)
    where = [
        "drgn's standard places (/usr/lib/debug/.build-id, "
        f"/usr/lib/debug/lib/modules/{release}, /lib/modules/{release})",
        "the directory of the vmcore",
    ]
    if tried:
        where.append("files not taken: " + ", ".join(tried))
    return MissingDebugInfo(
        f"{name} is loaded but its debug info was not found: need {name}.ko "
        f"with debug info for kernel {release}"
        + (f" (build ID {build_id})" if build_id else "")
        + "; looked in "
        + "; ".join(where)
        + f". Pass it with -s /path/to/{name}.ko"
    )
