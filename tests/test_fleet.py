"""
Fleet triage: ``balloon-report DUMP... --json-lines --jobs N`` prints one
JSON object per dump; a dump that fails gives its error object and the
others are still reported.
"""

import json
import os
import subprocess
import sys

import samplelib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-m", "drgn_balloon.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_fleet_reports_each_dump_and_survives_bad_ones(tmp_path):
    good = samplelib.vmcore("6.1-4k")
    files = samplelib.debug_files("6.1-4k")
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\0" * 100)
    with open(good, "rb") as f:
        head = f.read(4096)
    cut = tmp_path / "cut"
    cut.write_bytes(head)  # a kdump file cut inside its headers
    missing = str(tmp_path / "missing")
    dumps = [good, str(junk), str(cut), missing, good]
    symbols = [a for f in files for a in ("-s", f)]
    proc = run(*dumps, "--json-lines", "--jobs", "2", *symbols)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == len(dumps)
    by_dump = {}
    for obj in lines:
        by_dump.setdefault(obj["dump"], []).append(obj)
    assert sorted(by_dump) == sorted(set(dumps))
    for obj in by_dump[good]:
        assert obj["exit_code"] == 0
        assert obj["balloon"]["size_frames"] == 40000
    for bad in (str(junk), str(cut), missing):
        (obj,) = by_dump[bad]
        assert obj["error"]["kind"] == "bad_dump"
        assert obj["exit_code"] == obj["error"]["exit_code"] == 6
    assert proc.returncode == 6  # the largest of the dumps' codes


def test_fleet_usage_error():
    proc = run("--json-lines")
    assert proc.returncode == 2
    assert proc.stdout == ""
