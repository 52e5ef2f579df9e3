"""
A live kernel's balloon moves under the walk. Simulated on a real dump: the
report is told the program is live, and balloon.size is made to change
between reads (a memory segment whose value moves, as an inflating balloon's
does). The report must retry, and never call a healthy list corrupt.
"""

import struct

import samplelib

from drgn_balloon import report as report_mod
from drgn_balloon.balloon import balloon_state
from drgn_balloon.render import verdict


def moving_size(prog, values):
    state = balloon_state(prog)
    address = state.balloon.size.address_
    reads = {"n": 0}

    def read(a, count, offset, physical):
        i = min(reads["n"], len(values) - 1)
        reads["n"] += 1
        return struct.pack("<q", values[i])[offset : offset + count]

    prog.add_memory_segment(address, 8, read)
    return state.size_frames


def test_retry_after_the_balloon_moved(monkeypatch):
    prog = samplelib.open_sample("6.1-4k")
    monkeypatch.setattr(report_mod, "_live", lambda prog: True)
    real = balloon_state(prog).size_frames
    # The first read sees the balloon mid-inflation, later reads see it still.
    moving_size(prog, [real - 512] + [real] * 1000)
    r = report_mod.balloon_report(prog, rss=False)
    assert r.balloon.verification.verified
    assert r.balloon.size_frames == real
    assert not r.balloon.moved


def test_balloon_that_never_stands_still_is_moved_not_corrupt(monkeypatch):
    prog = samplelib.open_sample("6.1-4k")
    monkeypatch.setattr(report_mod, "_live", lambda prog: True)
    monkeypatch.setattr(report_mod.time, "sleep", lambda s: None)
    real = balloon_state(prog).size_frames
    moving_size(prog, [real + i for i in range(0, 100000, 7)])
    r = report_mod.balloon_report(prog, rss=False)
    assert r.balloon.moved
    assert [f.kind for f in r.findings] == ["moved"]
    assert "changed while they were walked" in verdict(r)


def test_idle_but_corrupt_live_balloon_keeps_its_findings(monkeypatch):
    # The balloon stands still and a prev pointer is wrong: the second walk
    # finds the same, so it is reported as found, not as "moved".
    import corruption

    prog = samplelib.open_sample("6.1-4k")
    monkeypatch.setattr(report_mod, "_live", lambda prog: True)
    monkeypatch.setattr(report_mod.time, "sleep", lambda s: None)
    case = {c.name: c for c in corruption.cases()}["prev-disagrees"]
    case.damage(prog)
    r = report_mod.balloon_report(prog, rss=False)
    assert not r.balloon.moved
    assert [f.kind for f in r.findings] == ["prev_mismatch"]
