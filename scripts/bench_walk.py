#!/usr/bin/env python3
"""
Benchmark the page-by-page verification on a dump.

    python3 scripts/bench_walk.py SAMPLE            # a sample in vmcore-samples/
    python3 scripts/bench_walk.py --vmcore FILE -s vmlinux -s vmw_balloon.ko
    ... [--json] [--repeat N]

It measures, each in a process of its own so that peak RSS figures are
honest (every process first opens the dump and loads the same debug info):

ours         verify_balloon(fast=True): bulk reads of the memory map, all checks
baseline     what a drgn user would write for the same checks:
             list_for_each_entry over the same lists, reading each page's
             page_type (and, for 2 MiB pages, every subpage's) and private as
             drgn Objects
count_only   the bare list_for_each_entry count, for reference
limit        just reading the struct page bytes of the memory-map blocks the
             walk needs (the same bulk reads, no parsing)
summary      size, target, accounting and verdict without the walk

and prints them side by side with the ratios baseline/ours and ours/limit.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(
    0,
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"),
)

MODES = ("ours", "baseline", "count_only", "limit", "summary")


def _open(args: argparse.Namespace) -> Any:
    import drgn
    import samplelib

    if args.sample:
        name = samplelib.find(args.sample)
        return samplelib.open_sample(name)
    prog = drgn.Program()
    prog.set_core_dump(args.vmcore)
    try:
        prog.load_debug_info(args.symbols, default=True, main=True)
    except drgn.MissingDebugInfoError:
        pass
    return prog


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _baseline(prog: Any, state: Any, count_only: bool) -> int:
    # What a drgn user writes: no cycle guard, one Object per page.
    from drgn.helpers.linux.list import list_for_each_entry

    from drgn_balloon.layout import balloon_lists

    pages = 0
    t = prog.type("struct page")
    pt = "page_type" if t.has_member("page_type") else None
    for entry in balloon_lists(state.balloon, state.era):
        for page in list_for_each_entry("struct page", entry.head.address_of_(), "lru"):
            pages += 1
            if count_only:
                continue
            page.private.value_()
            if pt is None:
                continue
            if entry.frames_per_page == 1:
                page.page_type.value_()
            else:
                for i in range(entry.frames_per_page):
                    page[i].page_type.value_()
    return pages


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    import drgn

    from drgn_balloon.balloon import balloon_state
    from drgn_balloon.pages import page_geometry
    from drgn_balloon.verify import verify_balloon

    prog = _open(args)
    mode = args.measure
    out: Dict[str, Any] = {"mode": mode}
    if mode == "summary":
        from drgn_balloon.render import verdict
        from drgn_balloon.report import balloon_report

        start = time.perf_counter()
        verdict(balloon_report(prog, verify=False))
        out["seconds"] = time.perf_counter() - start
        out["peak_rss_mb"] = _rss_mb()
        return out
    state = balloon_state(prog)
    # The same geometry verify_balloon() uses (offline rule included).
    geometry = page_geometry(prog, compaction_era=state.era.dev_info)
    if mode == "limit":
        # The blocks the bulk reader loads for this balloon (found first,
        # untimed), then read again without parsing.
        from drgn_balloon import walk as walk_mod

        blocks = set()
        real_load = walk_mod.BulkPageReader._load

        def spy(self: Any, block: int) -> Any:
            blocks.add(block)
            return real_load(self, block)

        walk_mod.BulkPageReader._load = spy  # type: ignore[assignment]
        verify_balloon(prog, state, geometry=geometry)
        walk_mod.BulkPageReader._load = real_load  # type: ignore[assignment]
        reader = walk_mod.BulkPageReader(prog, geometry)
        g = geometry
        start = time.perf_counter()
        total = 0
        for block in sorted(blocks):
            first = block * reader.block_pages
            count = min(reader.block_pages, g.max_pfn - first)
            try:
                total += len(
                    prog.read(g.vmemmap + first * g.page_size, count * g.page_size)
                )
            except drgn.FaultError:
                pass  # a block the dump lacks
        out["seconds"] = time.perf_counter() - start
        out["bytes"] = total
        out["peak_rss_mb"] = _rss_mb()
        return out
    before = _rss_mb()
    start = time.perf_counter()
    if mode == "ours":
        v = verify_balloon(prog, state, geometry=geometry)
        out["pages"] = v.pages("4k") + v.pages("2m")
        out["frames"] = v.frames
        out["verified"] = v.verified
    else:
        out["pages"] = _baseline(prog, state, mode == "count_only")
    out["seconds"] = time.perf_counter() - start
    out["rss_before_mb"] = before
    out["peak_rss_mb"] = _rss_mb()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("sample", nargs="?", help="sample name in vmcore-samples/")
    parser.add_argument("--vmcore", help="a vmcore instead of a sample")
    parser.add_argument("-s", "--symbols", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each measurement; the fastest is kept",
    )
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.sample and not args.vmcore:
        parser.error("give a sample name or --vmcore")
    if args.measure:
        print(json.dumps(measure(args)))
        return 0

    results: Dict[str, Dict[str, Any]] = {}
    base = [sys.executable, os.path.abspath(__file__)]
    base += [args.sample] if args.sample else ["--vmcore", args.vmcore]
    for s in args.symbols:
        base += ["-s", s]
    for mode in MODES:
        runs: List[Dict[str, Any]] = []
        for _ in range(args.repeat):
            out = subprocess.run(
                base + ["--measure", mode], check=True, capture_output=True, text=True
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        best = min(runs, key=lambda r: r["seconds"])
        best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        results[mode] = best
    ours, baseline = results["ours"], results["baseline"]
    figures = {
        "pages": ours["pages"],
        "frames": ours["frames"],
        "verified": ours["verified"],
        "ours_s": round(ours["seconds"], 3),
        "baseline_s": round(baseline["seconds"], 3),
        "count_only_s": round(results["count_only"]["seconds"], 3),
        "limit_s": round(results["limit"]["seconds"], 3),
        "limit_bytes": results["limit"]["bytes"],
        "summary_s": round(results["summary"]["seconds"], 3),
        "pages_per_s": round(ours["pages"] / ours["seconds"])
        if ours["seconds"]
        else None,
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "baseline_peak_rss_mb": round(baseline["peak_rss_mb"], 1),
        "baseline_over_ours": round(baseline["seconds"] / ours["seconds"], 2),
        "ours_over_limit": round(ours["seconds"] / results["limit"]["seconds"], 2)
        if results["limit"]["seconds"]
        else None,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }
    import drgn

    figures["drgn"] = drgn.__version__
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    from tabulate import tabulate

    rows = [
        [
            "ours (bulk reads)",
            figures["ours_s"],
            figures["pages_per_s"],
            figures["peak_rss_mb"],
        ],
        [
            "baseline (list_for_each_entry + Objects)",
            figures["baseline_s"],
            round(ours["pages"] / baseline["seconds"]),
            figures["baseline_peak_rss_mb"],
        ],
        [
            "count only (list_for_each_entry)",
            figures["count_only_s"],
            round(ours["pages"] / results["count_only"]["seconds"]),
            round(results["count_only"]["peak_rss_mb"], 1),
        ],
        [
            f"limit (read {figures['limit_bytes'] / 2**20:.0f} MiB of struct page)",
            figures["limit_s"],
            "",
            round(results["limit"]["peak_rss_mb"], 1),
        ],
        [
            "summary path (no walk)",
            figures["summary_s"],
            "",
            round(results["summary"]["peak_rss_mb"], 1),
        ],
    ]
    print(
        f"{figures['pages']:,} pages, {figures['frames']:,} frames, "
        f"verified={figures['verified']}; drgn {figures['drgn']}; {figures['machine']}"
    )
    print(tabulate(rows, headers=["", "seconds", "pages/s", "peak RSS MB"]))
    print(
        f"baseline/ours = {figures['baseline_over_ours']}x, "
        f"ours/limit = {figures['ours_over_limit']}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
