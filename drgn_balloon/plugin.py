"""
drgn plugin
-----------

Registered through the ``drgn.plugins`` entry point (see pyproject.toml):
importing this module registers the ``balloon`` command, so in a drgn
session on a kernel ``%balloon`` prints the report (``%balloon --json``,
``%balloon --drgn`` for the equivalent helper code). drgn before 0.1.0 has
no command framework; there the helpers are imported by hand instead.
"""

import argparse
from typing import Any

__all__ = []  # type: ignore[var-annotated]

try:
    from drgn.commands import argument, drgn_argument
    from drgn.commands.linux import linux_kernel_command
except ImportError:  # drgn < 0.1.0: no commands
    linux_kernel_command = None  # type: ignore[assignment]


def _drgn_code(prog: Any, args: argparse.Namespace) -> None:
    from drgn.commands import DrgnCodeBuilder

    code = DrgnCodeBuilder(prog)
    code.add_from_import(
        "drgn_balloon", "balloon_state", "memory_accounting", "verify_balloon"
    )
    code.append("state = balloon_state()\n")
    code.append("size_frames = state.size_frames\n")
    code.append("target_frames = state.target_frames\n")
    if args.verify:
        code.append("verification = verify_balloon(prog, state)\n")
        code.append("pages_4k = verification.pages('4k')\n")
        code.append("pages_2m = verification.pages('2m')\n")
        code.append("verified = verification.verified\n")
    code.append(f"memory = memory_accounting(rss={bool(args.rss)!r})\n")
    code.append("unaccounted_pages = memory.unaccounted\n")
    code.print()


def _cmd_balloon(prog: Any, name: str, args: argparse.Namespace, **kwargs: Any) -> int:
    from .cli import guarded, run_report

    if args.drgn:
        _drgn_code(prog, args)
        return 0
    return guarded(lambda: run_report(prog, args), json_errors=args.json)


if linux_kernel_command is not None:
    from .cli import REPORT_OPTIONS

    _cmd_balloon = linux_kernel_command(
        description="where did my memory go? the VMware balloon, verified",
        long_description="Find the VMware balloon (vmw_balloon), verify its "
        "pages one by one and compare it with the kernel's page accounting.",
        arguments=tuple(argument(*flags, **kwargs) for flags, kwargs in REPORT_OPTIONS)
        + (drgn_argument,),
    )(_cmd_balloon)
