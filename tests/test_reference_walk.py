"""
The fast walk against an independent reference built on drgn's list helpers
(tests/reference_walk.py), on every real sample, on the damaged-list corpus
and on every mock era.
"""

import corruption
import pytest
import reference_walk
import samplelib
from mockkernel import LAYOUTS, MockKernel

from drgn_balloon.balloon import balloon_state
from drgn_balloon.errors import BalloonError
from drgn_balloon.verify import verify_balloon


def agree(prog, era, max_pfn):
    balloon = reference_walk.balloon_object(prog)
    ref = reference_walk.reference_walk(prog, balloon, era, max_pfn)
    ours = verify_balloon(prog, balloon_state(prog), fast=True)
    assert ours.verified == ref.verified, (ours.findings, ref)
    assert len(ours.lists) == len(ref.lists)
    for walk, r in zip(ours.lists, ref.lists):
        if r.valid and walk.complete:
            assert walk.pages == r.pages
            assert walk.not_offline == r.not_offline
        assert walk.complete == r.valid or not r.valid
    return ours, ref


def balloon_samples():
    return [
        n
        for n in samplelib.selected_names()
        if samplelib.manifest(n)["ground_truth"].get("vmmemctl") is not None
    ]


@pytest.mark.parametrize("name", balloon_samples())
def test_fast_walk_agrees_with_drgn_list_helpers_on_real_dump(name):
    prog = samplelib.open_sample_or_skip(name)
    try:
        state = balloon_state(prog)
    except BalloonError as e:
        pytest.skip(f"this drgn cannot read the sample: {e.message}")
    ours, ref = agree(prog, state.era.name, prog["max_pfn"].value_())
    assert ref.verified and ours.verified


LIST_DAMAGE = [
    "list-cyclic",
    "next-outside-memmap",
    "prev-disagrees",
    "page-not-in-dump",
    "run-not-offline",
    "run-bad-private",
    "run-next-high-half",
]


@pytest.mark.parametrize("case", LIST_DAMAGE)
def test_fast_walk_agrees_with_drgn_list_helpers_on_damaged_lists(case):
    if case == "page-not-in-dump" and not corruption.python_segments_can_fault():
        # The corpus fakes the hole with a Python memory reader.
        pytest.skip("this drgn cannot raise FaultError from a Python memory segment")
    c = {c.name: c for c in corruption.cases()}[case]
    prog = samplelib.open_sample(c.sample)
    c.damage(prog)
    state = balloon_state(prog)
    ours, ref = agree(prog, state.era.name, prog["max_pfn"].value_())
    assert not ref.verified and not ours.verified


@pytest.mark.parametrize("era", sorted(LAYOUTS))
def test_fast_walk_agrees_with_drgn_list_helpers_on_mock_eras(era):
    k = MockKernel(era, pages_4k=257, pages_2m=4, isolated=3)
    ours, ref = agree(k.prog, era, k.prog["max_pfn"].value_())
    assert ref.verified and ours.verified
    assert [r.pages for r in ref.lists] == [w.pages for w in ours.lists]
