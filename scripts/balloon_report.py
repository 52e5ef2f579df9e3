#!/usr/bin/env drgn
"""
Report the VMware balloon of a vmcore or of the live kernel.

    drgn -c VMCORE [-s vmlinux -s vmw_balloon.ko] scripts/balloon_report.py [--json]
    drgn scripts/balloon_report.py [--json]        # live kernel, as root

Exit codes are listed by --help (and in drgn_balloon/errors.py).
"""

import argparse
import os
import sys

if __name__ == "__main__":
    # Run from a checkout without installing: the package is next to scripts/.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    from drgn_balloon.cli import _EPILOG, add_report_arguments, guarded, run_report

    parser = argparse.ArgumentParser(
        prog="balloon_report.py",
        description="Report the VMware balloon (run it with drgn).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_arguments(parser)
    args = parser.parse_args(sys.argv[1:])
    prog = globals().get("prog")
    if prog is None:
        sys.stderr.write(
            "balloon_report.py: error: run it with drgn: "
            "drgn -c VMCORE scripts/balloon_report.py\n"
        )
        sys.exit(2)
    sys.exit(guarded(lambda: run_report(prog, args), json_errors=args.json))
