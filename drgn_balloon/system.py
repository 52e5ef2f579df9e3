"""
The guest
---------

The ``drgn_balloon.system`` module answers the first questions of the
diagnosis from the dump itself: which kernel, which hypervisor the kernel
detected, what the firmware (DMI) says the machine is, and which balloon
module is loaded with which version.

Strings read here come from the dump and are untrusted: callers escape them
before printing them (:mod:`drgn_balloon.render`).
"""

from typing import Iterable, Iterator, NamedTuple, Optional

from drgn import FaultError, Object, Program

__all__ = [
    "ModuleInfo",
    "read_c_string",
    "dmi_string",
    "find_loaded_module",
    "for_each_loaded_module",
    "hypervisor",
    "kernel_release",
]

_HYPERVISOR_NAMES = {
    "X86_HYPER_NATIVE": "none",
    "X86_HYPER_VMWARE": "VMware",
    "X86_HYPER_MS_HYPERV": "Microsoft Hyper-V",
    "X86_HYPER_XEN_PV": "Xen PV",
    "X86_HYPER_XEN_HVM": "Xen HVM",
    "X86_HYPER_KVM": "KVM",
    "X86_HYPER_JAILHOUSE": "Jailhouse",
    "X86_HYPER_ACRN": "ACRN",
    "X86_HYPER_BHYVE": "bhyve",
}


def read_c_string(obj: Object, limit: int = 256) -> Optional[str]:
    """
    The C string *obj* points to, at most *limit* bytes, or ``None`` if the
    pointer is ``NULL``.

    :param obj: ``char *``
    :raises FaultError: if the string is not in the dump.
    """
    address = obj.value_()
    if not address:
        return None
    prog = obj.prog_
    if hasattr(prog, "read_c_string"):  # drgn >= 0.0.25
        data = bytes(prog.read_c_string(address, max_size=limit))
    else:
        out = bytearray()
        while len(out) < limit:
            byte = prog.read(address + len(out), 1)
            if byte == b"\0":
                break
            out += byte
        data = bytes(out)
    return data.decode("utf-8", "replace")


def _read_string(obj: Object, limit: int = 256) -> Optional[str]:
    # A C string pointed to by obj, or None (NULL or not in the dump).
    try:
        return read_c_string(obj, limit)
    except FaultError:
        return None


def kernel_release(prog: Program) -> str:
    """The kernel release (``uname -r``) of the program."""
    try:
        return bytes(prog["UTS_RELEASE"].string_()).decode("utf-8", "replace")
    except (LookupError, FaultError):
        pass
    try:
        uts = prog["init_uts_ns"].name.release
        return bytes(uts.string_()).decode("utf-8", "replace")
    except (LookupError, FaultError):
        return "unknown"


def hypervisor(prog: Program) -> Optional[str]:
    """
    The hypervisor the kernel detected at boot, e.g. ``"VMware"``, ``"KVM"``
    or ``"none"``; ``None`` if the kernel does not say.

    Since Linux kernel commit 03b2a320b19f ("x86/virt: Add enum for
    hypervisors to replace x86_hyper") (in v4.15) it is ``x86_hyper_type``;
    before, ``x86_hyper`` pointed to a ``struct hypervisor_x86`` with a name.
    """
    try:
        value = prog["x86_hyper_type"]
    except LookupError:
        value = None
    if value is not None:
        try:
            name = str(value.format_(type_name=False))
        except FaultError:
            return None
        return _HYPERVISOR_NAMES.get(name, name)
    try:
        ptr = prog["x86_hyper"]
    except LookupError:
        return None
    try:
        if not ptr.value_():
            return "none"
        return _read_string(ptr.name) or "unknown"
    except FaultError:
        return None


def dmi_string(prog: Program, field: str) -> Optional[str]:
    """
    A DMI string the kernel read from the firmware, e.g.
    ``dmi_string("DMI_SYS_VENDOR")``.

    :param field: name of an ``enum dmi_field`` constant.
    """
    try:
        table = prog.object("dmi_ident", filename="dmi_scan.c")
        index = prog[field].value_()
    except (LookupError, ValueError):
        return None
    try:
        return _read_string(table[index])
    except FaultError:
        return None


class ModuleInfo(NamedTuple):
    """A loaded kernel module."""

    name: str
    #: ``struct module *``
    module: Object
    version: Optional[str]
    srcversion: Optional[str]


#: A corrupt module list must not hang us: no kernel has this many modules.
_MAX_MODULES = 100_000


def for_each_loaded_module(prog: Program) -> Iterator[Object]:
    """
    Iterate over the ``struct module *`` of every loaded module (drgn's
    ``for_each_module()`` where the drgn in use has it), at most 100,000.
    """
    from itertools import islice

    try:
        head = prog["modules"].address_of_()
    except LookupError:
        return
    modules: Iterable[Object]
    try:
        from drgn.helpers.linux.module import for_each_module
    except ImportError:  # not in drgn 0.0.22
        from drgn.helpers.linux.list import list_for_each_entry

        modules = list_for_each_entry("struct module", head, "list")
    else:
        modules = for_each_module(prog)
    yield from islice(modules, _MAX_MODULES)


def find_loaded_module(prog: Program, name: str) -> Optional[ModuleInfo]:
    """
    Find a loaded module by name, or return ``None``.

    :raises FaultError: if the module list is not in the dump.
    """
    for mod in for_each_loaded_module(prog):
        if mod.name.string_().decode("utf-8", "replace") == name:
            version = srcversion = None
            try:
                version = _read_string(mod.member_("version"))
                srcversion = _read_string(mod.member_("srcversion"))
            except LookupError:  # CONFIG_MODULE_SRCVERSION_ALL etc.
                pass
            return ModuleInfo(name, mod, version, srcversion)
    return None
