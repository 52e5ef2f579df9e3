#!/usr/bin/env python3
"""
Benchmark the whole report, vmcore to verdict, read through DWARF and
through the kernel's own BTF and kallsyms, on the same dump.

    python3 scripts/bench_btf.py VMCORE [-s vmlinux -s vmw_balloon.ko]
        [--repeat N] [--json]

Each run is a process of its own (``balloon-report`` as a user runs it,
stdout discarded), so that start-up and peak RSS are honest:

dwarf   ``balloon-report VMCORE -s FILE...`` (needs the debug files)
btf     ``balloon-report VMCORE --btf`` (no debug files)

For each mode it prints the median wall time over ``--repeat`` runs, the
fastest, and the peak RSS of the process. Without ``-s`` only BTF mode is
measured.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(cmd: List[str]) -> Dict[str, float]:
    """Wall time and peak RSS (os.wait4's rusage of this child alone)."""
    env = dict(os.environ, PYTHONPATH=REPO)
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):
            err.seek(0)
            raise SystemExit(
                f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode()}"
            )
    return {"seconds": seconds, "rss_mib": usage.ru_maxrss / 1024}


def measure(cmd: List[str], repeat: int) -> Dict[str, Any]:
    runs = [run_once(cmd) for _ in range(repeat)]
    times = [r["seconds"] for r in runs]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": len(times),
        "peak_rss_mib": max(r["rss_mib"] for r in runs),
        "command": cmd,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vmcore")
    parser.add_argument("-s", "--symbols", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = [sys.executable, "-m", "drgn_balloon.cli", args.vmcore, "--json"]
    results: Dict[str, Any] = {}
    modes = {"btf": base + ["--btf"]}
    if args.symbols:
        modes["dwarf"] = base + [a for s in args.symbols for a in ("-s", s)]
    for mode, cmd in modes.items():
        try:
            results[mode] = measure(cmd, args.repeat)
        except SystemExit as e:  # that mode cannot read this dump: say why
            results[mode] = {"error": str(e)}
    import drgn

    meta = {
        "vmcore": args.vmcore,
        "drgn": drgn.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=1))
        return 0
    print(f"{args.vmcore} (drgn {meta['drgn']}, Python {meta['python']})")
    print(f"{'mode':<6} {'median':>8} {'min':>8} {'peak RSS':>10}")
    for mode, r in results.items():
        if "error" in r:
            print(f"{mode:<6} {r['error']}")
            continue
        print(
            f"{mode:<6} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s "
            f"{r['peak_rss_mib']:>7.1f} MiB"
        )
    if all("median_s" in results.get(m, {}) for m in ("btf", "dwarf")):
        ratio = results["btf"]["median_s"] / results["dwarf"]["median_s"]
        print(f"btf/dwarf time: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
