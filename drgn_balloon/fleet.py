"""
Fleet triage
------------

``balloon-report DUMP [DUMP...] --json-lines [--jobs N]`` reports many dumps,
of any kernels, with no debug files (each read through DWARF if it is found,
else through the kernel's own BTF and kallsyms): one JSON object per line
and per dump, as each finishes, each with ``"dump"`` (the path) and
``"exit_code"``. A dump that fails gives its error object (``"error"``:
kind, exit code, message), as the single-dump ``--json`` does, and the
others go on.

Each dump is read in a process of its own (``python -m drgn_balloon.fleet
--one DUMP``), at most ``--jobs`` at a time: a dump that crashes its reader
(libkdumpfile can die of SIGBUS on a damaged file) takes only itself down.
The exit code is the largest of the dumps' exit codes (0: every dump
reported and verified).
"""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Dict, List, Optional

from .errors import EXIT_CODES, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE

__all__ = ["main", "report_one"]


def _parser() -> argparse.ArgumentParser:
    from .cli import add_report_arguments

    parser = argparse.ArgumentParser(
        prog="balloon-report",
        description="Report the balloons of many vmcores, one JSON object per line.",
        epilog="exit code: the largest of the dumps' exit codes:\n"
        + "\n".join(f"  {c:>3}  {t}" for c, t in sorted(EXIT_CODES.items())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dumps", nargs="+", metavar="DUMP", help="vmcore files")
    parser.add_argument(
        "--json-lines",
        action="store_true",
        required=True,
        help="one JSON object per dump and per line",
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=os.cpu_count() or 1,
        help="dumps read at the same time (default: the number of CPUs)",
    )
    add_report_arguments(parser)
    return parser


def _error(dump: str, kind: str, code: int, message: str) -> Dict[str, Any]:
    from .report import SCHEMA_VERSION

    return {
        "dump": dump,
        "schema_version": SCHEMA_VERSION,
        "exit_code": code,
        "error": {"kind": kind, "exit_code": code, "message": message},
    }


def report_one(dump: str, args: argparse.Namespace) -> Dict[str, Any]:
    """The JSON object of one dump (its report, or its error)."""
    from .cli import as_balloon_error, build_report, open_program
    from .errors import EXIT_FINDINGS
    from .render import report_document

    try:
        prog = open_program(dump)
        report = build_report(prog, args, load_default=True)
    except Exception as e:  # noqa: BLE001 (one dump's bug must not stop the rest)
        err = as_balloon_error(e)
        return _error(dump, err.kind, err.exit_code, err.message)
    out: Dict[str, Any] = {"dump": dump}
    out.update(report_document(report))
    out["exit_code"] = EXIT_FINDINGS if report.findings else EXIT_OK
    return out


def _run_child(dump: str, argv: List[str]) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "drgn_balloon.fleet", "--one", dump, *argv]
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    except OSError as e:
        return _error(dump, "internal", EXIT_INTERNAL, f"cannot start a reader: {e}")
    for line in proc.stdout.splitlines()[::-1]:
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and found.get("dump") == dump:
            return found
    if proc.returncode < 0:
        message = f"the reader died of signal {-proc.returncode} (damaged dump?)"
    else:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        message = f"the reader failed: {last}"
    return _error(dump, "internal", EXIT_INTERNAL, message)


def _child_argv(argv: List[str], dumps: List[str]) -> List[str]:
    # The options (not the dumps, --jobs or --json-lines) for each reader.
    out: List[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--jobs", "-j"):
            skip = True
            continue
        if arg.startswith("--jobs=") or arg == "--json-lines" or arg in dumps:
            continue
        out.append(arg)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """``balloon-report DUMP... --json-lines [--jobs N]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--one"] and len(argv) >= 2:
        return _main_one(argv[1], argv[2:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if args.jobs < 1:
        sys.stderr.write("balloon-report: error: --jobs must be at least 1\n")
        return EXIT_USAGE
    child = _child_argv(argv, args.dumps)
    worst = EXIT_OK
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(_run_child, dump, child) for dump in args.dumps]
        for future in as_completed(futures):
            result = future.result()
            worst = max(worst, int(result.get("exit_code", EXIT_INTERNAL)))
            sys.stdout.write(json.dumps(result, sort_keys=False) + "\n")
            sys.stdout.flush()
    return worst


def _main_one(dump: str, argv: List[str]) -> int:
    from .cli import add_report_arguments

    parser = argparse.ArgumentParser(prog="balloon-report")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    result = report_one(dump, args)
    sys.stdout.write(json.dumps(result) + "\n")
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
