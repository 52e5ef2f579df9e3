#!/usr/bin/env python3
"""
Run the report on a bundled sample dump, the way a user runs it on a vmcore:

    python3 scripts/sample_report.py 6.1-4k [--json] [other report options]

It decompresses the sample's debug files (vmlinux, vmw_balloon.ko) once into
~/.cache/drgn-balloon, prints the drgn command line, and runs it:
``drgn -c VMCORE -s vmlinux -s vmw_balloon.ko scripts/balloon_report.py``.
Without a sample name it lists the samples.
"""

import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from drgn_balloon import _samples  # noqa: E402


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        for name in _samples.sample_names():
            print(f"{name:20} {_samples.manifest(name).get('description', '')}")
        return 0
    name = _samples.find(sys.argv[1])
    # "python3 -m drgn" is the drgn command of the Python running this.
    cmd = [sys.executable, "-m", "drgn", "-c", _samples.vmcore(name)]
    for path in _samples.debug_files(name):
        cmd += ["-s", path]
    script = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "balloon_report.py"
    )
    cmd += [script] + sys.argv[2:]
    print("$ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
