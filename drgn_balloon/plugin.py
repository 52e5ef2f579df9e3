"""
drgn plugin: the ``%balloon`` command
-------------------------------------

Registered through the ``drgn.plugins`` entry point (see pyproject.toml):
importing this module registers the ``balloon`` command, so in a drgn
session on a Linux kernel ``%balloon`` prints the report (``%balloon
--json``; ``%balloon -h`` for the options; ``%balloon --drgn`` prints the
helper code that does exactly what the command does). The command returns
the :class:`~drgn_balloon.report.Report` (``_`` in the interactive session,
the return value of ``drgn.commands.run_command(prog, "balloon")``). drgn
before 0.1.0 has no command framework; there the helpers are imported by
hand instead.
"""

import argparse
from typing import Any, List, Optional

from drgn import Program, ProgramFlags

from .cli import REPORT_OPTIONS, as_balloon_error, build_report, one_line, print_report

__all__: List[str] = []


def _enabled(prog: Program) -> bool:
    # Offered in every Linux kernel: vmw_balloon is x86 only
    # (drivers/misc/Kconfig: "depends on X86 && HYPERVISOR_GUEST"), but
    # virtio_balloon exists on every architecture, hv_balloon and the Xen
    # balloon on x86 and arm64, the CMM on ppc64.
    return bool(prog.flags & ProgramFlags.IS_LINUX_KERNEL)


def drgn_code(prog: Program, args: argparse.Namespace) -> str:
    """The helper code that does what ``%balloon`` does with *args* (built
    with drgn's ``DrgnCodeBuilder``)."""
    from drgn.commands import DrgnCodeBuilder

    symbols: List[str] = list(args.symbols)
    renderer = "render_json" if args.json else "render_text"
    btf = ", btf=True" if args.btf else ""  # --btf: the kernel's BTF and kallsyms
    code = DrgnCodeBuilder(prog)
    code.add_from_import("drgn_balloon", "balloon_report", "check_program", renderer)
    code.append(
        "# Load what is missing and check that the debug info is the dump's.\n"
        f"debuginfo = check_program(prog, {symbols!r}{btf})\n"
        "# On a live kernel, balloon_report() walks again while the balloon "
        "moves.\n"
        "report = balloon_report(\n"
        "    prog,\n"
        f"    verify={bool(args.verify)!r},\n"
        f"    fast={bool(args.fast)!r},\n"
        f"    rss={bool(args.rss)!r},\n"
        f"    debug_files={symbols!r},\n"
        "    debuginfo=debuginfo,\n"
        ")\n"
        f'print({renderer}(report), end="")\n'
    )
    return str(code.get())


def _cmd_balloon(
    prog: Program,
    name: str,
    args: argparse.Namespace,
    *,
    parser: Optional[argparse.ArgumentParser] = None,
    **kwargs: Any,
) -> Any:
    from drgn.commands import CommandError

    if args.help:
        if parser is not None:
            parser.print_help()
        return None
    if args.drgn:
        print(drgn_code(prog, args), end="")
        return None
    try:
        report = build_report(prog, args)
    except Exception as e:  # noqa: BLE001 - one line, as drgn's commands do
        raise CommandError(one_line(as_balloon_error(e).message)) from e
    print_report(report, args.json)
    return report


try:
    from drgn.commands import argument, drgn_argument
    from drgn.commands.linux import linux_kernel_command
except ImportError:  # drgn < 0.1.0: no commands
    pass
else:
    _cmd_balloon = linux_kernel_command(
        description="where did my memory go? every balloon driver, verified",
        long_description="Find the balloons of every hypervisor's driver "
        "(vmw_balloon, virtio_balloon, hv_balloon, the Xen balloon, the pseries "
        "CMM), verify their pages one by one and compare them with the kernel's "
        "page accounting (MemTotal against the memory the guest has). "
        "Outside the interactive session run it with "
        'drgn.commands.run_command(prog, "balloon --json"); it returns the '
        "report.",
        arguments=(
            argument("-h", "--help", action="store_true", help="show this help"),
        )
        + tuple(argument(*flags, **kwargs) for flags, kwargs in REPORT_OPTIONS)
        + (drgn_argument,),
        enabled=_enabled,
    )(_cmd_balloon)
