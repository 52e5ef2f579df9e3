"""
Corrupt lists on mock kernels: every walk ends with a clear finding, never a
hang, and the bulk walk and the drgn-Object walk find the same thing.
"""

import pytest
from mockkernel import VMEMMAP, MockKernel

from drgn_balloon.balloon import balloon_state
from drgn_balloon.verify import verify_balloon

ERA = "D1"


def both(k):
    state = balloon_state(k.prog)
    fast = verify_balloon(k.prog, state, fast=True)
    slow = verify_balloon(k.prog, state, fast=False)
    assert fast == slow
    return fast


def kinds(v):
    return [f.kind for f in v.findings]


def test_cycle_stops_at_first_repeat():
    k = MockKernel(ERA, pages_4k=100)
    # node 50 points back to node 10 (and its prev stays consistent with 49).
    a, b = k.pfns_4k[50], k.pfns_4k[10]
    k.write_node(k.lru_addr(a), k.lru_addr(b), k.lru_addr(k.pfns_4k[49]))
    v = both(k)
    assert not v.verified
    assert "cycle" in kinds(v)
    assert v.lists[0].complete is False
    assert v.lists[0].pages == 51


def test_full_cycle_without_prev_mismatch():
    # A cycle whose prev pointers agree: only the PFN bitmap can catch it.
    k = MockKernel(ERA, pages_4k=20, pages_2m=0)
    pfns = k.pfns_4k
    nodes = [k.lru_addr(p) for p in pfns]
    for i, n in enumerate(nodes):
        k.write_node(n, nodes[(i + 1) % len(nodes)], nodes[i - 1])
    v = both(k)
    assert kinds(v).count("cycle") == 1
    assert v.lists[0].pages == 20


def test_next_outside_memory_map():
    k = MockKernel(ERA, pages_4k=30)
    p = k.pfns_4k[7]
    k.write_node(k.lru_addr(p), 0xFFFF888000123458, k.lru_addr(k.pfns_4k[6]))
    v = both(k)
    assert "bad_pointer" in kinds(v)
    assert v.lists[0].pages == 8


def test_next_not_on_struct_page_boundary():
    k = MockKernel(ERA, pages_4k=30)
    p = k.pfns_4k[3]
    k.write_node(k.lru_addr(p), VMEMMAP + 64 * 1000 + 24, k.lru_addr(k.pfns_4k[2]))
    assert "bad_pointer" in kinds(both(k))


def test_prev_that_disagrees():
    k = MockKernel(ERA, pages_4k=30)
    q = k.pfns_4k[6]
    k.write_node(k.lru_addr(q), k.lru_addr(k.pfns_4k[7]), k.lru_addr(k.pfns_4k[20]))
    v = both(k)
    assert kinds(v) == ["prev_mismatch"]
    assert v.lists[0].complete and v.lists[0].pages == 30


def test_page_missing_from_dump():
    k = MockKernel(ERA, pages_4k=30)
    k.drop_pages(k.pfns_4k[12])
    v = both(k)
    assert "not_in_dump" in kinds(v)
    assert v.lists[0].pages == 12


def test_page_not_offline():
    k = MockKernel(ERA, pages_4k=30, pages_2m=2)
    k.set_page_type(k.pfns_4k[4], 0xFFFFFFFF)
    k.set_page_type(k.pfns_2m[1] + 100, 0xFFFFFFFF)
    v = both(k)
    assert kinds(v).count("not_offline") == 2
    assert [w.not_offline for w in v.lists] == [1, 1]


def test_private_pointing_elsewhere():
    k = MockKernel(ERA, pages_4k=30)
    k.set_private(k.pfns_4k[9], 0xFFFF888012345678)
    assert kinds(both(k)) == ["bad_private"]


def test_misaligned_huge_page():
    k = MockKernel(ERA, pages_4k=5, pages_2m=2)
    # Move the second 2 MiB page one frame up (struct page moved too).
    old = k.pfns_2m[1]
    new = old + 1
    k.pfns_2m[1] = new
    k.set_page_type(old + 512, k.offline_value())
    k._link(k.offset("huge_pages"), k.pfns_2m)
    assert "misaligned" in kinds(both(k))


def test_size_that_disagrees_with_lists():
    k = MockKernel(ERA, pages_4k=30, pages_2m=1, size=12345)
    v = both(k)
    assert kinds(v) == ["size_mismatch"]
    assert v.frames == 30 + 512


def test_many_findings_are_counted_not_all_kept():
    k = MockKernel(ERA, pages_4k=200, pages_2m=0)
    for p in k.pfns_4k:
        k.set_page_type(p, 0xFFFFFFFF)
    v = both(k)
    assert v.lists[0].counts["not_offline"] == 200
    assert kinds(v).count("not_offline") == 10


@pytest.mark.parametrize("seed", range(3))
def test_walk_bounded_by_max_pfn(seed):
    # Whatever the links, a walk takes at most max_pfn steps.
    import random

    k = MockKernel(ERA, pages_4k=64, pages_2m=0, max_pfn=4096, seed=seed)
    rng = random.Random(seed)
    for p in k.pfns_4k:
        k.write_node(
            k.lru_addr(p),
            k.lru_addr(rng.choice(k.pfns_4k)),
            k.lru_addr(rng.choice(k.pfns_4k)),
        )
    v = both(k)
    # The walk passes each node once and stops at the first repeat: exactly
    # the distinct nodes reached from the head by next pointers, read here
    # word by word.
    head = balloon_state(k.prog).balloon.b_dev_info.pages.address_
    seen = set()
    node = k.prog.read_u64(head)
    while node != head and node not in seen:
        seen.add(node)
        node = k.prog.read_u64(node)
    assert v.lists[0].pages == len(seen) < 64
    assert not v.verified


@pytest.mark.parametrize("fast", [True, False])
def test_progress_reported_during_long_walks(monkeypatch, fast):
    from drgn_balloon import walk

    clock = iter(range(0, 10**6))
    monkeypatch.setattr(walk.time, "monotonic", lambda: next(clock))
    k = MockKernel(ERA, pages_4k=140000, pages_2m=0, max_pfn=1 << 19)
    state = balloon_state(k.prog)
    seen = []
    v = verify_balloon(
        k.prog, state, fast=fast, progress=lambda kind, n: seen.append((kind, n))
    )
    assert v.verified
    assert seen == [("4k", 65536), ("4k", 131072)]
