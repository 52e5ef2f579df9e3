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
from typing import Dict, Iterable, List, Optional, Sequence

from drgn import Program

from .errors import MissingDebugInfo
from .system import kernel_release

__all__ = [
    "candidate_paths",
    "core_dump_path",
    "load_module_debug_info",
    "missing_error",
]

_CORE_PATHS: Dict[int, str] = {}


def remember_core_dump_path(prog: Program, path: str) -> None:
    """Note which file *prog* was opened from (for drgn < 0.1.0)."""
    _CORE_PATHS[id(prog)] = path


def core_dump_path(prog: Program) -> Optional[str]:
    """The path of the vmcore the program was opened from, if known."""
    path = getattr(prog, "core_dump_path", None)  # drgn >= 0.1.0
    if path:
        return str(path)
    if id(prog) in _CORE_PATHS:
        return _CORE_PATHS[id(prog)]
    import sys

    argv = list(getattr(sys, "orig_argv", []))  # `drgn -c VMCORE script.py`
    for i, arg in enumerate(argv):
        if arg in ("-c", "--core") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--core="):
            return arg.split("=", 1)[1]
    return None


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
        if os.path.isdir(path):
            paths.extend(os.path.join(path, n) for n in names)
        elif os.path.basename(path).startswith(name):
            paths.append(path)
    core = core_dump_path(prog)
    if core:
        directory = os.path.dirname(os.path.abspath(core))
        for sub in ("", "debug"):
            paths.extend(os.path.join(directory, sub, n) for n in names)
    for base in (
        f"/usr/lib/debug/lib/modules/{release}/kernel/drivers/misc",
        f"/usr/lib/debug/lib/modules/{release}/updates",
        f"/usr/lib/debug/lib/modules/{release}/misc",
        f"/lib/modules/{release}/kernel/drivers/misc",
        f"/lib/modules/{release}/updates",
        f"/lib/modules/{release}/misc",
    ):
        paths.extend(os.path.join(base, n) for n in names)
    seen = set()
    unique = []
    for path in paths:
        if path not in seen:
            seen.add(path)
            unique.append(path)
    return unique


def _module_wants(prog: Program, name: str) -> Optional[bool]:
    # drgn >= 0.1.0 tracks modules; older drgn returns None (unknown).
    try:
        module = prog.module(name)
    except (AttributeError, TypeError):
        return None
    except LookupError:
        return None
    try:
        return bool(module.wants_debug_file())
    except AttributeError:
        return None


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
        module = prog.module(name)
        for path in existing:
            tried.append(path)
            try:
                module.try_file(path)
            except Exception:  # a file drgn cannot parse is just not a match
                continue
            if not module.wants_debug_file():
                return tried
        build_id = getattr(module, "build_id", None)
        raise missing_error(prog, name, build_id.hex() if build_id else None, tried)
    # Old drgn: hand every existing candidate to load_debug_info and let the
    # caller check whether the balloon's type appeared.
    if existing:
        try:
            prog.load_debug_info(existing)
        except Exception:
            pass
    return existing


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
        where.append("files that did not match: " + ", ".join(tried))
    return MissingDebugInfo(
        f"{name} is loaded but its debug info was not found: need {name}.ko "
        f"with debug info for kernel {release}"
        + (f" (build ID {build_id})" if build_id else "")
        + "; looked in "
        + "; ".join(where)
        + f". Pass it with -s /path/to/{name}.ko"
    )
