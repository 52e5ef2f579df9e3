#!/usr/bin/env python3
"""
Check that the three walks give identical results on samples too large for the
test suite (the benchmark samples of scripts/bench_walk.py): the bulk walk with
NumPy, the bulk walk without it, and the drgn-Object walk; clean, then with
random damage of the 4 KiB list (next or prev pointers, offline marks, private),
half of it at the edges of runs of evenly spaced pages.

    python3 scripts/compare_walks.py [--damaged N] [--seed S] SAMPLE...

Samples are looked up in vmcore-samples/ and $DRGN_BALLOON_CACHE/large/.
Exit status 1 if any two walks differ.
"""

import argparse
import os
import random
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import corruption  # noqa: E402  (tests/corruption.py: overlays on a program)
from bench_walk import _sample_dir  # noqa: E402

from drgn_balloon import _samples, walk  # noqa: E402
from drgn_balloon.balloon import balloon_state  # noqa: E402
from drgn_balloon.pages import page_geometry  # noqa: E402
from drgn_balloon.verify import verify_balloon  # noqa: E402


def damage(prog, rng):
    _, heads = corruption._heads(prog)
    g = page_geometry(prog)
    nodes = corruption.list_nodes(prog, heads["4k"], 6000)
    edges = [
        i
        for i in range(2, len(nodes) - 1)
        if nodes[i] - nodes[i - 1] != nodes[i - 1] - nodes[i - 2]
    ]
    done = []
    for _ in range(rng.randint(1, 3)):
        pool = edges if edges and rng.random() < 0.5 else range(1, len(nodes) - 1)
        i = rng.choice(list(pool))
        kind = rng.choice(["next", "prev", "offline", "private"])
        if kind == "next":
            data = struct.pack("<Q", rng.choice(nodes))
            corruption.overlay(prog, nodes[i], data)
        elif kind == "prev":
            corruption.overlay(prog, nodes[i] + 8, struct.pack("<Q", rng.choice(nodes)))
        elif kind == "offline":
            page = nodes[i] - g.lru
            corruption.overlay(prog, page + g.page_type, struct.pack("<I", 0xFFFFFFFF))
        else:
            corruption.overlay(prog, nodes[i] - g.lru + g.private, bytes(8))
        done.append(f"{kind}@{i}")
    return done


REPO_SAMPLES = _samples.SAMPLES


def compare(name, rng, damaged):
    _samples.SAMPLES = REPO_SAMPLES
    _samples.SAMPLES = _sample_dir(name) or REPO_SAMPLES
    prog = _samples.open_sample(name)
    what = damage(prog, rng) if damaged else ["clean"]
    state = balloon_state(prog)
    start = time.perf_counter()
    fast = verify_balloon(prog, state)
    mid = time.perf_counter()
    objects = verify_balloon(prog, state, fast=False)
    numpy = walk.np
    walk.np = None
    try:
        plain = verify_balloon(prog, state)
    finally:
        walk.np = numpy
    same = fast == objects == plain
    kinds = ",".join(sorted({f.kind for f in fast.findings})) or "-"
    print(
        f"{name}: {' '.join(what)}: {kinds}, {fast.frames} frames, "
        f"{'identical' if same else 'DIFFERENT'} ({mid - start:.2f} s bulk)"
    )
    return same


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("samples", nargs="+")
    parser.add_argument("--damaged", type=int, default=0, help="damaged runs each")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    ok = True
    for name in args.samples:
        ok &= compare(name, rng, False)
        for _ in range(args.damaged):
            ok &= compare(name, rng, True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
