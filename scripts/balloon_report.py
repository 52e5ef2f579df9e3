#!/usr/bin/env drgn
"""
Report the VMware balloon of a vmcore or of the live kernel.

    drgn -c VMCORE [-s vmlinux -s vmw_balloon.ko] scripts/balloon_report.py [--json]
    drgn scripts/balloon_report.py [--json]        # live kernel, as root

Exit codes are listed by --help (and in drgn_balloon/errors.py).
"""

import os
import sys

if __name__ == "__main__":
    # Run from a checkout without installing: the package is next to scripts/.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    from drgn_balloon.cli import script_main

    sys.exit(script_main(globals().get("prog"), sys.argv[1:]))
