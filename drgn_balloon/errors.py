"""
Errors and exit codes
---------------------

Every failure the tool knows about is a :class:`BalloonError` with an exit
code. The entry points print its message as one line on stderr and exit with
its code; nothing else reaches the user as a traceback.

=====  ==============================================================
code   meaning
=====  ==============================================================
0      report printed; every balloon verified (or ``--no-verify``), or a
       balloon driver is there and holds nothing (the report says which)
1      report printed, but the verification found problems
2      usage error (bad command-line arguments)
3      no balloon driver of any kind in this kernel (vmw_balloon,
       virtio_balloon, hv_balloon, Xen, pseries CMM: not loaded, not built in)
4      no other balloon driver, and not a VMware guest: vmw_balloon is absent
       and the kernel detected another hypervisor, or it never initialised
5      debug info missing or unusable (DWARF of vmlinux or a balloon
       module, or BTF and kallsyms)
6      the dump cannot be opened (not a dump, truncated, unreadable)
7      the live kernel can only be read as root
8      the balloon's state cannot be read (memory missing from the dump)
70     internal error (a bug: please report it with the message)
=====  ==============================================================
"""

from typing import Dict

__all__ = [
    "EXIT_OK",
    "EXIT_FINDINGS",
    "EXIT_USAGE",
    "EXIT_NO_DRIVER",
    "EXIT_NOT_VMWARE",
    "EXIT_NO_DEBUG_INFO",
    "EXIT_BAD_DUMP",
    "EXIT_NOT_ROOT",
    "EXIT_UNREADABLE",
    "EXIT_INTERNAL",
    "EXIT_CODES",
    "BalloonError",
    "NoBalloonDriver",
    "NotVMware",
    "MissingDebugInfo",
    "BadDump",
    "NotRoot",
    "Unreadable",
    "Usage",
    "Interrupted",
    "InternalError",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_NO_DRIVER = 3
EXIT_NOT_VMWARE = 4
EXIT_NO_DEBUG_INFO = 5
EXIT_BAD_DUMP = 6
EXIT_NOT_ROOT = 7
EXIT_UNREADABLE = 8
EXIT_INTERNAL = 70

EXIT_CODES: Dict[int, str] = {
    EXIT_OK: "report printed; balloons verified (or verification skipped)",
    EXIT_FINDINGS: "report printed, but the verification found problems",
    EXIT_USAGE: "usage error",
    EXIT_NO_DRIVER: "no balloon driver of any kind in this kernel",
    EXIT_NOT_VMWARE: "no other balloon driver, and vmw_balloon absent on "
    "another hypervisor or never initialised",
    EXIT_NO_DEBUG_INFO: "debug info missing or unusable (DWARF, or BTF and kallsyms)",
    EXIT_BAD_DUMP: "the dump cannot be opened",
    EXIT_NOT_ROOT: "the live kernel can only be read as root",
    EXIT_UNREADABLE: "the balloon's state cannot be read from the dump",
    EXIT_INTERNAL: "internal error",
}


class BalloonError(Exception):
    """A failure the tool explains in one line, with an exit code."""

    exit_code = EXIT_INTERNAL
    kind = "internal"

    def __init__(self, message: str, *, driver_present: bool = False) -> None:
        super().__init__(message)
        self.message = message
        #: The driver is there (loaded or built in) but never initialised.
        self.driver_present = driver_present


class NoBalloonDriver(BalloonError):
    """No balloon driver is loaded or built into the kernel."""

    exit_code = EXIT_NO_DRIVER
    kind = "no_driver"


class NotVMware(BalloonError):
    """The guest is not running on VMware, so the driver never started."""

    exit_code = EXIT_NOT_VMWARE
    kind = "not_vmware"


class MissingDebugInfo(BalloonError):
    """Debug info for vmlinux or the balloon module was not found."""

    exit_code = EXIT_NO_DEBUG_INFO
    kind = "no_debug_info"


class BadDump(BalloonError):
    """The dump file cannot be opened or is not a kernel dump."""

    exit_code = EXIT_BAD_DUMP
    kind = "bad_dump"


class NotRoot(BalloonError):
    """Reading the live kernel needs root."""

    exit_code = EXIT_NOT_ROOT
    kind = "not_root"


class Unreadable(BalloonError):
    """The balloon's own state is not in the dump or cannot be read."""

    exit_code = EXIT_UNREADABLE
    kind = "unreadable"


class Usage(BalloonError):
    """Bad command-line arguments."""

    exit_code = EXIT_USAGE
    kind = "usage"


class Interrupted(BalloonError):
    """Interrupted by the user (Ctrl-C)."""

    exit_code = 130
    kind = "interrupted"


class InternalError(BalloonError):
    """A bug: an exception the tool does not know."""

    exit_code = EXIT_INTERNAL
    kind = "internal"
