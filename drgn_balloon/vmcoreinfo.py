"""
VMCOREINFO
----------

The ``drgn_balloon.vmcoreinfo`` module reads the kernel's VMCOREINFO note
(``kernel/crash_core.c``: ``OSRELEASE=``, ``SYMBOL(name)=``,
``NUMBER(name)=`` lines) and parses it. drgn 0.0.23 and later expose it as
the ``VMCOREINFO`` object; older drgn does not, and then the note is read
from the dump file itself (:func:`drgn_balloon.dumpfile.vmcoreinfo`).
"""

from typing import Dict, Optional

from drgn import FaultError, Program

from .program import core_dump_path

__all__ = [
    "parse_vmcoreinfo",
    "vmcoreinfo",
    "vmcoreinfo_number",
    "vmcoreinfo_osrelease",
    "vmcoreinfo_symbol",
]


def vmcoreinfo(prog: Program) -> bytes:
    """The raw VMCOREINFO note of the program's kernel, or ``b""``."""
    try:
        return bytes(prog["VMCOREINFO"].string_())
    except (LookupError, FaultError):
        pass
    # drgn < 0.0.23 has no VMCOREINFO object: read the note from the file.
    from .dumpfile import vmcoreinfo as from_file

    path = core_dump_path(prog)
    return from_file(path) if path else b""


def parse_vmcoreinfo(data: bytes) -> Dict[str, str]:
    """Parse VMCOREINFO into ``{"OSRELEASE": ..., "SYMBOL(init_uts_ns)": ...}``."""
    out: Dict[str, str] = {}
    for line in data.decode("ascii", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def vmcoreinfo_symbol(prog: Program, name: str) -> Optional[int]:
    """The address VMCOREINFO gives for ``SYMBOL(name)``, or ``None``."""
    value = parse_vmcoreinfo(vmcoreinfo(prog)).get(f"SYMBOL({name})")
    try:
        return None if value is None else int(value, 16)
    except ValueError:
        return None


def vmcoreinfo_number(prog: Program, name: str) -> Optional[int]:
    """The value VMCOREINFO gives for ``NUMBER(name)``, or ``None``."""
    value = parse_vmcoreinfo(vmcoreinfo(prog)).get(f"NUMBER({name})")
    try:
        return None if value is None else int(value, 10)
    except ValueError:
        return None


def vmcoreinfo_osrelease(prog: Program) -> Optional[str]:
    """``OSRELEASE`` (the dumped kernel's ``uname -r``), or ``None``."""
    return parse_vmcoreinfo(vmcoreinfo(prog)).get("OSRELEASE")
