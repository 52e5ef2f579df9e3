"""
Command line
------------

The ``drgn_balloon.cli`` module holds what the entry points share: the
arguments, the run function that builds the report and renders it, and the
error handling that turns every failure into one line on stderr and an exit
code (:mod:`drgn_balloon.errors`). :func:`main` is the ``balloon-report``
console script, which opens the vmcore (or the live kernel) itself.
"""

import argparse
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import (
    EXIT_CODES,
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    BadDump,
    BalloonError,
    MissingDebugInfo,
    NotRoot,
)

__all__ = ["REPORT_OPTIONS", "add_report_arguments", "main", "run_report", "guarded"]

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
            help="debug info file (vmlinux, vmw_balloon.ko) or "
            "directory to search; may be repeated",
        ),
    ),
)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add :data:`REPORT_OPTIONS` to a parser."""
    for flags, kwargs in REPORT_OPTIONS:
        parser.add_argument(*flags, **kwargs)


def _progress_printer() -> Optional[Callable[[str, int], None]]:
    if not sys.stderr.isatty():
        return None

    def progress(kind: str, pages: int) -> None:
        sys.stderr.write(f"\rwalking the {kind} list: {pages:,} pages")
        sys.stderr.flush()

    return progress


def run_report(prog: object, args: argparse.Namespace) -> int:
    """Build and print the report; return the exit code. May raise
    :class:`~drgn_balloon.errors.BalloonError`."""
    from .render import render_json, render_text
    from .report import balloon_report

    _check_dump_whole(prog)
    _check_kernel_debug_info(prog, args)
    progress = _progress_printer()
    report = balloon_report(
        prog,  # type: ignore[arg-type]
        verify=args.verify,
        fast=args.fast,
        rss=args.rss,
        debug_files=args.symbols,
        progress=progress,
    )
    if progress is not None:
        sys.stderr.write("\r\033[K")
    sys.stdout.write(render_json(report) if args.json else render_text(report))
    sys.stdout.flush()
    if report.findings:
        return EXIT_FINDINGS
    return EXIT_OK


def _check_dump_whole(prog: object) -> None:
    from .debuginfo import core_dump_path
    from .dumpfile import truncation

    path = core_dump_path(prog)  # type: ignore[arg-type]
    if path and os.path.isfile(path):
        problem = truncation(path)
        if problem:
            raise BadDump(problem)


def _check_kernel_debug_info(
    prog: object, args: Optional[argparse.Namespace] = None
) -> None:
    import re

    from .btf_debuginfo import record_dwarf_source, use_btf
    from .pages import _vmcoreinfo

    # DWARF when it is there, else (or with --btf) BTF and kallsyms.
    btf, symbols = getattr(args, "btf", False), getattr(args, "symbols", ())
    if use_btf(prog, btf, symbols):
        return

    try:
        prog.type("struct page")  # type: ignore[attr-defined]
    except LookupError:
        raise MissingDebugInfo(
            "no debug info for the kernel (vmlinux): install the kernel's debug "
            "info package (e.g. linux-image-*-dbg, kernel-debuginfo) or pass "
            "-s /path/to/vmlinux"
        )
    # The kernel wrote where init_uts_ns is into VMCOREINFO; debug info of
    # another build puts it elsewhere. (New drgn also checks the build ID; old
    # drgn takes any vmlinux.)
    info = _vmcoreinfo(prog)  # type: ignore[arg-type]
    match = re.search(rb"^SYMBOL\(init_uts_ns\)=([0-9a-f]+)$", info, re.M)
    release = re.search(rb"^OSRELEASE=(.*)$", info, re.M)
    if match:
        expected = int(match.group(1), 16)
        try:
            actual = prog["init_uts_ns"].address_  # type: ignore[index]
        except LookupError:
            actual = None
        if actual != expected:
            raise MissingDebugInfo(
                "the vmlinux debug info is of another kernel build than the dump "
                f"(init_uts_ns at {actual or 0:#x}, the dump says {expected:#x}): "
                "pass the vmlinux of kernel "
                + (release.group(1).decode("ascii", "replace") if release else "?")
            )
    record_dwarf_source(prog)


def _one_line(message: str) -> str:
    from .render import escape

    return escape(" ".join(str(message).split()))


def guarded(func: Callable[[], int], json_errors: bool = False) -> int:
    """
    Run *func*; turn every exception into one line on stderr and an exit
    code. With *json_errors*, also print a JSON error document on stdout.
    """
    try:
        return func()
    except BalloonError as e:
        code, kind, message = e.exit_code, e.kind, e.message
    except KeyboardInterrupt:
        code, kind, message = 130, "interrupted", "interrupted"
    except BrokenPipeError:
        return EXIT_OK
    except MemoryError:
        code, kind, message = EXIT_INTERNAL, "internal", "out of memory"
    except Exception as e:  # the promise: never a traceback
        import drgn

        from .btf import unwrap_drgn_error

        wrapped = unwrap_drgn_error(e)  # drgn 0.0.31 wraps errors of lazy types
        if wrapped is not None:
            code, kind, message = wrapped.exit_code, wrapped.kind, wrapped.message
        elif isinstance(e, drgn.FaultError):
            from .errors import Unreadable

            err: BalloonError = Unreadable(
                f"memory the report needs is not in the dump: {e}"
            )
            code, kind, message = err.exit_code, err.kind, err.message
        else:
            code, kind = EXIT_INTERNAL, "internal"
            message = f"internal error: {type(e).__name__}: {e}"
    sys.stderr.write(f"balloon-report: error: {_one_line(message)}\n")
    if json_errors:
        import json

        from .report import SCHEMA_VERSION

        sys.stdout.write(
            json.dumps(
                {
                    "schema_version": SCHEMA_VERSION,
                    "error": {"kind": kind, "exit_code": code, "message": message},
                }
            )
            + "\n"
        )
    return code


def _open_program(
    vmcore: Optional[str], symbols: Sequence[str], btf: bool = False
) -> object:
    import drgn

    prog = drgn.Program()
    if vmcore is not None:
        try:
            with open(vmcore, "rb"):
                pass
        except OSError as e:
            raise BadDump(f"cannot open {vmcore}: {e.strerror}")
        from .dumpfile import truncation

        # Before drgn opens it: libkdumpfile dies of SIGBUS on a kdump file
        # cut inside its headers.
        problem = truncation(vmcore)
        if problem:
            raise BadDump(problem)
        try:
            prog.set_core_dump(vmcore)
        except Exception as e:  # ValueError, OSError, drgn's own errors
            raise BadDump(f"{vmcore} is not a kernel dump drgn can read: {e}")
        from .debuginfo import remember_core_dump_path

        remember_core_dump_path(prog, vmcore)
    else:
        if os.geteuid() != 0:
            raise NotRoot(
                "reading the live kernel needs root (/proc/kcore): run it as root, "
                "e.g. sudo balloon-report"
            )
        try:
            prog.set_kernel()
        except Exception as e:
            raise BadDump(f"cannot open the live kernel: {e}")
    if btf:
        return prog  # --btf: no DWARF (run_report() loads BTF)
    paths = [
        p
        for p in symbols
        if not os.path.isdir(p) and "System.map" not in os.path.basename(p)
    ]
    # drgn logs a warning for every module without debug info; only vmlinux
    # and the balloon module matter, and run_report() says so in one line.
    import logging

    logger = logging.getLogger("drgn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        prog.load_debug_info(paths, default=True, main=True)
    except drgn.MissingDebugInfoError:
        pass  # judged in run_report()
    except Exception as e:
        raise MissingDebugInfo(f"cannot load debug info: {e}")
    finally:
        logger.setLevel(level)
    return prog


def main(argv: Optional[List[str]] = None) -> int:
    """The ``balloon-report`` console script."""
    if "--json-lines" in (sys.argv[1:] if argv is None else argv):
        from .fleet import main as fleet_main  # many dumps, one JSON line each

        return fleet_main(argv)
    parser = argparse.ArgumentParser(
        prog="balloon-report",
        description="Where did my memory go? Report the VMware balloon of a "
        "vmcore, or of the live kernel (as root) when no VMCORE is given.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("vmcore", nargs="?", help="kdump-compressed or ELF vmcore")
    add_report_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE

    if args.vmcore:
        # Module debug info next to the vmcore, as the user named it (drgn
        # may know the vmcore by its resolved path only).
        here = os.path.dirname(os.path.abspath(args.vmcore))
        args.symbols += [here, os.path.join(here, "debug")]

    def run() -> int:
        prog = _open_program(args.vmcore, args.symbols, args.btf)
        return run_report(prog, args)

    return guarded(run, json_errors=args.json)


if __name__ == "__main__":
    sys.exit(main())
