"""
Command line
------------

The ``drgn_balloon.cli`` module holds what the entry points share: the
arguments, the run function that checks the debug info
(:func:`~drgn_balloon.program.check_program`), builds the report and renders
it, and the error handling that turns every failure into one line on stderr
and an exit code (:mod:`drgn_balloon.errors`). :func:`main` is the
``balloon-report`` console script, which opens the vmcore (or the live
kernel) itself; :func:`script_main` is ``scripts/balloon_report.py``.
"""

import argparse
import os
import sys
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
)

from drgn import Program

from .errors import (
    EXIT_CODES,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_USAGE,
    BadDump,
    BalloonError,
    InternalError,
    Interrupted,
    NotRoot,
    Unreadable,
    Usage,
)
from .program import check_program, set_core_dump_path

if TYPE_CHECKING:
    from .report import Report

__all__ = [
    "REPORT_OPTIONS",
    "UsageError",
    "add_report_arguments",
    "as_balloon_error",
    "build_report",
    "guarded",
    "main",
    "make_parser",
    "open_program",
    "print_report",
    "run_report",
    "script_main",
]

_EPILOG = "exit codes:\n" + "\n".join(
    f"  {code:>3}  {text}" for code, text in sorted(EXIT_CODES.items())
)


#: The options every entry point takes: (flags, argparse keywords). The
#: console script and the drgn script add them to their parsers, the drgn
#: command turns them into drgn.commands.argument()s.
REPORT_OPTIONS: Tuple[Tuple[Tuple[str, ...], Dict[str, Any]], ...] = (
    (
        ("--json",),
        dict(
            action="store_true", help="print a JSON document instead of the text report"
        ),
    ),
    (
        ("--no-verify",),
        dict(
            dest="verify",
            action="store_false",
            help="skip the page-by-page walk of the balloon's lists",
        ),
    ),
    (
        ("--slow-walk",),
        dict(
            dest="fast",
            action="store_false",
            help="walk with one drgn Object per page (the reference "
            "implementation; slower)",
        ),
    ),
    (
        ("--no-rss",),
        dict(dest="rss", action="store_false", help="do not add up the processes' RSS"),
    ),
    (
        ("--btf",),
        dict(
            action="store_true",
            help="read the kernel through its own BTF and kallsyms even when "
            "DWARF debug info is there (the default without it)",
        ),
    ),
    (
        ("-s", "--symbols"),
        dict(
            action="append",
            default=[],
            metavar="FILE",
            help="debug info file (vmlinux, vmw_balloon.ko, virtio_balloon.ko...), "
            "System.map (BTF mode, kernels before 6.0) or directory to search; "
            "may be repeated",
        ),
    ),
)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add :data:`REPORT_OPTIONS` to a parser."""
    for flags, kwargs in REPORT_OPTIONS:
        parser.add_argument(*flags, **kwargs)


class UsageError(Exception):
    """A command-line argument the parser rejected (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; we want one line, and a JSON error
    # document with --json (see guarded()).
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def make_parser(name: str, description: str, vmcore: bool) -> argparse.ArgumentParser:
    """The parser of the console script (*vmcore*: a VMCORE argument) and of
    the drgn script."""
    parser = _Parser(
        prog=name,
        description=description,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if vmcore:
        parser.add_argument("vmcore", nargs="?", help="kdump-compressed or ELF vmcore")
    add_report_arguments(parser)
    return parser


def _progress_printer() -> Optional[Callable[[str, int], None]]:
    if not sys.stderr.isatty():
        return None

    def progress(kind: str, pages: int) -> None:
        sys.stderr.write(f"\rwalking the {kind} list: {pages:,} pages")
        sys.stderr.flush()

    return progress


def build_report(
    prog: Program, args: argparse.Namespace, *, load_default: bool = False
) -> "Report":
    """
    Check the program's debug info (:func:`~drgn_balloon.program.check_program`)
    and build the report with the options of *args*.

    :raises BalloonError: what is wrong, in one line.
    """
    from .report import balloon_report

    debuginfo = check_program(
        prog, args.symbols, load_default=load_default, btf=args.btf
    )
    progress = _progress_printer()
    try:
        return balloon_report(
            prog,
            verify=args.verify,
            fast=args.fast,
            rss=args.rss,
            debug_files=args.symbols,
            debuginfo=debuginfo,
            progress=progress,
        )
    finally:
        if progress is not None:
            sys.stderr.write("\r\033[K")


def print_report(report: "Report", json_output: bool) -> int:
    """Print the report; return the exit code (1 when there are findings)."""
    from .render import render_json, render_text

    sys.stdout.write(render_json(report) if json_output else render_text(report))
    sys.stdout.flush()
    return EXIT_FINDINGS if report.findings else EXIT_OK


def run_report(
    prog: Program, args: argparse.Namespace, *, load_default: bool = False
) -> int:
    """Build and print the report; return the exit code. May raise
    :class:`~drgn_balloon.errors.BalloonError`."""
    return print_report(build_report(prog, args, load_default=load_default), args.json)


def one_line(message: str) -> str:
    """A message as one line, safe to print on a terminal."""
    from .render import escape

    return escape(" ".join(str(message).split()))


def as_balloon_error(e: Exception) -> BalloonError:
    """Turn an exception escaping the report into a :class:`BalloonError`."""
    import drgn

    from .btf import unwrap_drgn_error

    if isinstance(e, BalloonError):
        return e
    wrapped = unwrap_drgn_error(e)  # drgn 0.0.31 wraps errors of lazy BTF types
    if wrapped is not None:
        return wrapped
    if isinstance(e, drgn.FaultError):
        return Unreadable(f"memory the report needs is not in the dump: {e}")
    if isinstance(e, MemoryError):
        return InternalError("out of memory")
    return InternalError(f"internal error: {type(e).__name__}: {e}")


def guarded(func: Callable[[], int], name: str, json_errors: bool = False) -> int:
    """
    Run *func*; turn every exception into one line on stderr (``NAME: error:
    ...``) and an exit code. With *json_errors*, also print a JSON error
    document on stdout.
    """
    try:
        return func()
    except KeyboardInterrupt:
        err: BalloonError = Interrupted("interrupted")
    except BrokenPipeError:
        return EXIT_OK
    except UsageError as e:
        err = Usage(str(e))
    except Exception as e:  # noqa: BLE001 - the promise: never a traceback
        err = as_balloon_error(e)
    sys.stderr.write(f"{name}: error: {one_line(err.message)}\n")
    if json_errors:
        import json

        from .report import SCHEMA_VERSION

        sys.stdout.write(
            json.dumps(
                {
                    "schema_version": SCHEMA_VERSION,
                    "error": {
                        "kind": err.kind,
                        "exit_code": err.exit_code,
                        "message": err.message,
                    },
                }
            )
            + "\n"
        )
    return err.exit_code


def open_program(vmcore: Optional[str]) -> Program:
    """Open a vmcore, or the live kernel (as root) when *vmcore* is ``None``."""
    import drgn

    prog = drgn.Program()
    if vmcore is not None:
        try:
            with open(vmcore, "rb"):
                pass
        except OSError as e:
            raise BadDump(f"cannot open {vmcore}: {e.strerror}") from e
        from .dumpfile import truncation

        # Before drgn opens it: libkdumpfile dies of SIGBUS on a kdump file
        # cut inside its headers.
        problem = truncation(vmcore)
        if problem:
            raise BadDump(problem)
        try:
            prog.set_core_dump(vmcore)
        except (OSError, ValueError, drgn.MissingDebugInfoError) as e:
            raise BadDump(f"{vmcore} is not a kernel dump drgn can read: {e}") from e
        set_core_dump_path(prog, vmcore)
    else:
        if os.geteuid() != 0:
            raise NotRoot(
                "reading the live kernel needs root (/proc/kcore): run it as root, "
                "e.g. sudo balloon-report"
            )
        try:
            prog.set_kernel()
        except (OSError, ValueError, drgn.MissingDebugInfoError) as e:
            raise BadDump(f"cannot open the live kernel: {e}") from e
    return prog


def main(argv: Optional[List[str]] = None) -> int:
    """The ``balloon-report`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if "--json-lines" in argv:
        from .fleet import main as fleet_main  # many dumps, one JSON line each

        return fleet_main(list(argv))
    parser = make_parser(
        "balloon-report",
        "Where did my memory go? Report the balloons (VMware, virtio, Hyper-V, "
        "Xen, pseries CMM) of a vmcore, or of the live kernel (as root) when no "
        "VMCORE is given.",
        vmcore=True,
    )

    def run() -> int:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help
            return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
        prog = open_program(args.vmcore)
        return run_report(prog, args, load_default=True)

    return guarded(run, "balloon-report", json_errors="--json" in argv)


def _note_drgn_core_dump(prog: Program) -> None:
    # drgn < 0.1.0 does not say which file it opened; in script mode it is the
    # -c/--core argument of drgn's own command line.
    from .program import core_dump_path

    if core_dump_path(prog) is not None:
        return
    argv = list(getattr(sys, "orig_argv", []))
    for i, arg in enumerate(argv):
        if arg in ("-c", "--core") and i + 1 < len(argv):
            set_core_dump_path(prog, argv[i + 1])
            return
        if arg.startswith("--core="):
            set_core_dump_path(prog, arg.split("=", 1)[1])
            return


def script_main(prog: Optional[Program], argv: Sequence[str]) -> int:
    """``drgn [-c VMCORE] scripts/balloon_report.py [options]``."""
    name = "balloon_report.py"
    parser = make_parser(
        name, "Report the balloons of every driver (run it with drgn).", False
    )

    def run() -> int:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help
            return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
        if prog is None:
            raise UsageError(
                "run it with drgn: drgn -c VMCORE scripts/balloon_report.py"
            )
        _note_drgn_core_dump(prog)
        return run_report(prog, args)

    return guarded(run, name, json_errors="--json" in argv)


if __name__ == "__main__":
    sys.exit(main())
