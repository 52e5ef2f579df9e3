#!/usr/bin/env python3
"""
Run the report on a bundled sample dump, the way a user runs it on a vmcore:

    python3 scripts/sample_report.py 6.1-4k [--json] [other report options]

It decompresses the sample's debug files (vmlinux, vmw_balloon.ko) once into
~/.cache/drgn-balloon/kernels/RELEASE/, prints the drgn command line (which
can be copied and run again), and runs it:
``drgn -c VMCORE -s vmlinux -s vmw_balloon.ko scripts/balloon_report.py``
(for a stock kernel's sample, which has no debug files:
``drgn --no-default-symbols -c VMCORE scripts/balloon_report.py``, read
through the kernel's own BTF and kallsyms). Without a sample name it lists
the samples.
"""

import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import samplelib  # noqa: E402


def readable(path: str) -> str:
    """*path* relative to the current directory when under it, else with ~."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    if not rel.startswith(".."):
        return rel
    home = os.path.expanduser("~")
    if path.startswith(home + os.sep):
        return "~" + path[len(home) :]
    return path


def _quote(arg: str) -> str:
    # Quote for the shell, keeping a leading ~/ expandable.
    if arg.startswith("~/"):
        return "~/" + shlex.quote(arg[2:])
    return shlex.quote(arg)


def _drgn_has_main_symbols() -> bool:
    # drgn >= 0.1.0: --main-symbols loads vmlinux and the -s files only, so
    # drgn does not warn about the other modules' missing debug info.
    import drgn

    version = tuple(int(x) for x in drgn.__version__.split(".")[:3] if x.isdigit())
    return version >= (0, 1, 0)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        for name in samplelib.sample_names():
            print(f"{name:20} {samplelib.manifest(name).get('description', '')}")
        return 0
    try:
        name = samplelib.find(sys.argv[1])
    except ValueError as e:
        print(f"sample_report.py: error: {e}", file=sys.stderr)
        return 2
    files = samplelib.debug_files(name)
    if not files:
        # A stock kernel's sample: no debug files, the report reads the
        # kernel's own BTF and kallsyms (drgn would only warn about vmlinux).
        args = ["--no-default-symbols"]
    elif _drgn_has_main_symbols():
        args = ["--main-symbols"]
    else:
        args = []
    args += ["-c", samplelib.vmcore(name)]
    for path in files:
        args += ["-s", path]
    args += [os.path.join(HERE, "balloon_report.py")] + sys.argv[2:]
    shown = [a if a.startswith("-") else readable(a) for a in args]
    print("$ drgn " + " ".join(_quote(a) for a in shown), file=sys.stderr)
    # "python3 -m drgn" is the drgn command of the Python running this.
    return subprocess.call([sys.executable, "-m", "drgn"] + args)


if __name__ == "__main__":
    sys.exit(main())
