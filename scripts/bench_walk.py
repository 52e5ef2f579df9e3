#!/usr/bin/env python3
"""
Benchmark the page-by-page verification on every shape of balloon.

    python3 scripts/bench_walk.py                   # the three benchmark shapes
    python3 scripts/bench_walk.py SAMPLE...         # samples by name
    python3 scripts/bench_walk.py --vmcore FILE -s vmlinux -s vmw_balloon.ko
    ... [--json] [--json-out FILE] [--repeat N]

The three shapes (issue 11) are samples generated on demand, not committed:

reference    6.12-large4k: 946,176 4 KiB + 200 2 MiB pages, 6 GiB guest
2m-heavy     6.12-large: 332,000 4 KiB + 1,500 2 MiB pages, 6 GiB guest
fragmented   6.12-fragmented: 400,000 4 KiB pages in a 3 GiB guest whose memory
             was fragmented before the driver loaded (every other page free)

Make them with ``scripts/samples/build_kernel.sh 6.12`` and
``scripts/samples/make_sample.py 6.12 large4k|large|fragmented``; they are
written to ``$DRGN_BALLOON_CACHE/large/`` (default
``/var/tmp/drgn-balloon-build/large/``), where this script looks for samples
not in ``vmcore-samples/``.

Each figure comes from a process of its own, so that peak RSS figures are
honest (every process first opens the dump and loads the same debug info):

ours         verify_balloon(fast=True): bulk reads of the memory map, all checks
baseline     what a drgn user would write for the same checks: drgn's
             validate_list_for_each_entry over the same lists (links both
             ways, cycles), reading each page's page_type (and, for 2 MiB
             pages, every subpage's) and private as drgn Objects
unchecked    the same with list_for_each_entry: no link or cycle checks (the
             baseline of issues 3 and 11 before this script checked them)
count_only   the bare list_for_each_entry count, for reference
limit        just reading the struct page bytes of the memory-map blocks the
             walk reads (the same bulk reads, no parsing)
summary      size, target, accounting and verdict without the walk

Times are CPU seconds of the measuring process (``time.process_time``: the
machine this runs on is shared, and every measured step runs on one CPU), the
fastest of ``--repeat`` runs; wall seconds are in the JSON too. The targets
of issue 11 are checked for each shape: ours at least 5x faster than the
baseline, at most 1.5x the limit, peak RSS at most the baseline's + 64 MB.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(
    0,
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"),
)

MODES = ("ours", "baseline", "unchecked", "count_only", "limit", "summary")
SHAPES = {
    "reference": "6.12-large4k",
    "2m-heavy": "6.12-large",
    "fragmented": "6.12-fragmented",
}
LARGE = os.path.join(
    os.environ.get("DRGN_BALLOON_CACHE", "/var/tmp/drgn-balloon-build"), "large"
)
TARGET_SPEEDUP = 5.0
TARGET_LIMIT = 1.5
TARGET_RSS_MB = 64.0


def _sample_dir(name: str) -> Optional[str]:
    import samplelib

    for root in (samplelib.SAMPLES, LARGE):
        if os.path.isfile(os.path.join(root, name, "manifest.json")):
            return root
    return None


def _open(args: argparse.Namespace) -> Any:
    import drgn
    import samplelib

    if args.sample:
        root = _sample_dir(args.sample)
        if root is None:
            raise SystemExit(f"no sample {args.sample}")
        samplelib.SAMPLES = root
        return samplelib.open_sample(args.sample)
    prog = drgn.Program()
    prog.set_core_dump(args.vmcore)
    try:
        prog.load_debug_info(args.symbols, default=True, main=True)
    except drgn.MissingDebugInfoError:
        pass
    return prog


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _baseline(prog: Any, state: Any, mode: str) -> int:
    # What a drgn user writes for the same checks: drgn's own
    # validate_list_for_each_entry (links back, cycles: Brent's algorithm),
    # reading each page's page_type (every subpage's for a 2 MiB page) and
    # private as Objects. count_only: the bare list_for_each_entry.
    from drgn.helpers.linux.list import (
        list_for_each_entry,
        validate_list_for_each_entry,
    )

    from drgn_balloon.layout import balloon_lists

    pages = 0
    t = prog.type("struct page")
    pt = "page_type" if t.has_member("page_type") else None
    count_only = mode == "count_only"
    walk = validate_list_for_each_entry if mode == "baseline" else list_for_each_entry
    for entry in balloon_lists(state.balloon, state.era):
        for page in walk("struct page", entry.head.address_of_(), "lru"):
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


def _shape(prog: Any, state: Any, geometry: Any) -> Dict[str, Any]:
    # How scattered the 4 KiB list is: the share of neighbours on the list
    # that are not adjacent struct pages (untimed).
    from drgn_balloon.layout import balloon_lists

    out: Dict[str, Any] = {"memmap_bytes": geometry.max_pfn * geometry.page_size}
    for entry in balloon_lists(state.balloon, state.era):
        if entry.frames_per_page != 1:
            continue
        head = entry.head.address_
        node = prog.read_u64(head)
        prev = None
        pairs = apart = 0
        while node != head and pairs < geometry.max_pfn:
            if prev is not None:
                pairs += 1
                apart += abs(node - prev) != geometry.page_size
            prev = node
            node = prog.read_u64(node)
        out["neighbours_apart"] = round(apart / pairs, 3) if pairs else None
    return out


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

        start, cpu = time.perf_counter(), time.process_time()
        verdict(balloon_report(prog, verify=False))
        out["seconds"] = time.process_time() - cpu
        out["wall_seconds"] = time.perf_counter() - start
        state = balloon_state(prog)
        out["peak_rss_mb"] = _rss_mb()
        out.update(
            _shape(prog, state, page_geometry(prog, compaction_era=state.era.dev_info))
        )
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
            blocks.add((self.block_pages, block))
            return real_load(self, block)

        walk_mod.BulkPageReader._load = spy  # type: ignore[method-assign]
        verify_balloon(prog, state, geometry=geometry)
        walk_mod.BulkPageReader._load = real_load  # type: ignore[method-assign]
        g = geometry
        start, cpu = time.perf_counter(), time.process_time()
        total = 0
        for block_pages, block in sorted(blocks):
            first = block * block_pages
            count = min(block_pages, g.max_pfn - first)
            try:
                total += len(
                    prog.read(g.vmemmap + first * g.page_size, count * g.page_size)
                )
            except drgn.FaultError:
                pass  # a block the dump lacks
        out["seconds"] = time.process_time() - cpu
        out["wall_seconds"] = time.perf_counter() - start
        out["bytes"] = total
        out["peak_rss_mb"] = _rss_mb()
        return out
    before = _rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "ours":
        v = verify_balloon(prog, state, geometry=geometry)
        out["pages"] = v.pages("4k") + v.pages("2m")
        out["pages_4k"] = v.pages("4k")
        out["pages_2m"] = v.pages("2m")
        out["frames"] = v.frames
        out["verified"] = v.verified
    else:
        out["pages"] = _baseline(prog, state, mode)
    out["seconds"] = time.process_time() - cpu
    out["wall_seconds"] = time.perf_counter() - start
    out["rss_before_mb"] = before
    out["peak_rss_mb"] = _rss_mb()
    return out


def bench(base: List[str], repeat: int) -> Dict[str, Any]:
    results: Dict[str, Dict[str, Any]] = {}
    for mode in MODES:
        runs: List[Dict[str, Any]] = []
        for _ in range(repeat):
            out = subprocess.run(
                base + ["--measure", mode], check=True, capture_output=True, text=True
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        best = min(runs, key=lambda r: r["seconds"])
        best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        results[mode] = best
    ours, baseline, limit = results["ours"], results["baseline"], results["limit"]
    f: Dict[str, Any] = {
        "pages": ours["pages"],
        "pages_4k": ours["pages_4k"],
        "pages_2m": ours["pages_2m"],
        "frames": ours["frames"],
        "verified": ours["verified"],
        "neighbours_apart": results["summary"].get("neighbours_apart"),
        "memmap_bytes": results["summary"]["memmap_bytes"],
    }
    for mode in MODES:
        f[f"{mode}_s"] = round(results[mode]["seconds"], 3)
        f[f"{mode}_wall_s"] = round(results[mode]["wall_seconds"], 3)
        f[f"{mode}_peak_rss_mb"] = round(results[mode]["peak_rss_mb"], 1)
    f["limit_bytes"] = limit["bytes"]
    f["pages_per_s"] = (
        round(ours["pages"] / ours["seconds"]) if ours["seconds"] else None
    )
    f["baseline_over_ours"] = round(baseline["seconds"] / ours["seconds"], 2)
    f["unchecked_over_ours"] = round(
        results["unchecked"]["seconds"] / ours["seconds"], 2
    )
    f["ours_over_limit"] = (
        round(ours["seconds"] / limit["seconds"], 2) if limit["seconds"] else None
    )
    f["rss_over_baseline_mb"] = round(ours["peak_rss_mb"] - baseline["peak_rss_mb"], 1)
    f["targets_met"] = {
        "speedup": f["baseline_over_ours"] >= TARGET_SPEEDUP,
        "limit": f["ours_over_limit"] is not None
        and f["ours_over_limit"] <= TARGET_LIMIT,
        "rss": f["rss_over_baseline_mb"] <= TARGET_RSS_MB,
    }
    return f


def table(name: str, f: Dict[str, Any]) -> str:
    from tabulate import tabulate

    rows = [
        ["ours (chase, then checks)", "ours"],
        ["baseline (validate_list_for_each_entry + Objects)", "baseline"],
        ["unchecked (list_for_each_entry + Objects)", "unchecked"],
        ["count only (list_for_each_entry)", "count_only"],
        [f"limit (read {f['limit_bytes'] / 2**20:.0f} MiB of struct page)", "limit"],
        ["summary path (no walk)", "summary"],
    ]
    body = [
        [label, f[f"{m}_s"], f[f"{m}_wall_s"], f[f"{m}_peak_rss_mb"]]
        for label, m in rows
    ]
    apart = f["neighbours_apart"]
    met = f["targets_met"]
    return (
        f"{name}: {f['pages']:,} pages ({f['pages_4k']:,} 4 KiB + {f['pages_2m']:,} "
        f"2 MiB), {f['frames']:,} frames, verified={f['verified']}"
        + (f", {apart:.0%} of 4 KiB neighbours apart" if apart is not None else "")
        + f"; memory map {f['memmap_bytes'] / 2**20:.0f} MiB\n"
        + str(tabulate(body, headers=["", "CPU s", "wall s", "peak RSS MB"]))
        + f"\nbaseline/ours = {f['baseline_over_ours']}x"
        f" ({'met' if met['speedup'] else 'MISSED'}),"
        f" ours/limit = {f['ours_over_limit']}x"
        f" ({'met' if met['limit'] else 'MISSED'}),"
        f" RSS ours - baseline = {f['rss_over_baseline_mb']:+} MB"
        f" ({'met' if met['rss'] else 'MISSED'});"
        f" unchecked/ours = {f['unchecked_over_ours']}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument(
        "samples", nargs="*", help="sample names (default: the three shapes)"
    )
    parser.add_argument("--vmcore", help="a vmcore instead of samples")
    parser.add_argument("-s", "--symbols", action="append", default=[])
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--json-out", help="also write the JSON to this file")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each measurement; the fastest is kept",
    )
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--sample", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return 0

    me = [sys.executable, os.path.abspath(__file__)]
    runs: Dict[str, List[str]] = {}
    if args.vmcore:
        base = me + ["--vmcore", args.vmcore]
        for s in args.symbols:
            base += ["-s", s]
        runs[args.vmcore] = base
    else:
        names = args.samples or list(SHAPES.values())
        missing = [n for n in names if _sample_dir(n) is None]
        if missing:
            raise SystemExit(
                "missing samples: "
                + ", ".join(missing)
                + f" (looked in vmcore-samples/ and {LARGE}); make them with "
                "scripts/samples/build_kernel.sh 6.12 and "
                "scripts/samples/make_sample.py 6.12 large4k|large|fragmented"
            )
        for n in names:
            runs[n] = me + ["--sample", n]
    shape_of = {v: k for k, v in SHAPES.items()}
    figures: Dict[str, Any] = {}
    for name, base in runs.items():
        f = bench(base, args.repeat)
        f["shape"] = shape_of.get(name)
        figures[name] = f
    import drgn

    doc = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "drgn": drgn.__version__,
        "targets": {
            "baseline_over_ours_min": TARGET_SPEEDUP,
            "ours_over_limit_max": TARGET_LIMIT,
            "rss_over_baseline_mb_max": TARGET_RSS_MB,
        },
        "samples": figures,
    }
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump(doc, out, indent=2)
            out.write("\n")
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"drgn {doc['drgn']}; {doc['machine']}; CPU seconds, fastest of {args.repeat}"
    )
    for name, f in figures.items():
        label = f"{name} [{f['shape']}]" if f["shape"] else name
        print()
        print(table(label, f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
