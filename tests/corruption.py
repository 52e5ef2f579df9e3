"""
The corruption corpus: damaged variants of the real sample dumps.

Memory-level damage is injected without editing any file, by overlaying
memory segments on the opened program (``Program.add_memory_segment``; a
later segment takes precedence over the dump). File-level damage (truncated
dumps, a file that is not a dump, another kernel's debug info) is made by
copying. Every case says what a correct tool must answer: an exit code and,
for reports, the finding kinds it must flag. ``scripts/corruption_corpus.py``
runs them all and prints the table; tests/test_corruption.py asserts it.
"""

import io
import random
import struct
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import drgn
import samplelib

from drgn_balloon.balloon import balloon_state
from drgn_balloon.errors import (
    EXIT_FINDINGS,
    EXIT_NO_DRIVER,
    EXIT_NOT_VMWARE,
    EXIT_OK,
)
from drgn_balloon.layout import balloon_lists


def overlay(prog: drgn.Program, address: int, data: bytes) -> None:
    """Make *data* appear at *address*, over whatever the dump holds."""
    data = bytes(data)
    prog.add_memory_segment(address, len(data), lambda a, c, o, p: data[o : o + c])


def hole(prog: drgn.Program, address: int, size: int) -> None:
    """Make *size* bytes at *address* read as missing from the dump."""

    def read(a, c, o, p):
        raise drgn.FaultError("excluded from the dump (corruption corpus)", a)

    prog.add_memory_segment(address, size, read)


def python_segments_can_fault() -> bool:
    """Whether this drgn passes a FaultError raised by a Python memory reader
    on as a FaultError (old drgn wraps it in a plain Exception)."""
    prog = drgn.Program(drgn.host_platform)

    def read(a, c, o, p):
        raise drgn.FaultError("probe", a)

    prog.add_memory_segment(0x1000, 16, read)
    try:
        drgn.Object(prog, prog.int_type("long", 8, True), address=0x1000).value_()
    except drgn.FaultError:
        return True
    except Exception:  # noqa: BLE001 - old drgn: a plain Exception
        return False
    return False


def list_nodes(prog: drgn.Program, head: int, count: int) -> List[int]:
    """Addresses of the first *count* nodes after a list head."""
    nodes = []
    node = prog.read_u64(head)
    while node != head and len(nodes) < count:
        nodes.append(node)
        node = prog.read_u64(node)
    return nodes


class Outcome(NamedTuple):
    code: int
    stdout: str
    stderr: str
    findings: Tuple[str, ...]


def outcome(prog: drgn.Program, json_output: bool = False) -> Outcome:
    """Run what the entry points run, in process, and collect the result."""
    import argparse

    from drgn_balloon.cli import guarded, print_report

    args = argparse.Namespace(
        json=json_output, verify=True, fast=True, rss=False, symbols=[], btf=False
    )
    out, err = io.StringIO(), io.StringIO()
    findings: List[str] = []

    def run() -> int:
        from drgn_balloon.cli import build_report

        report = build_report(prog, args)
        findings.extend(f.kind for f in report.findings)
        return print_report(report, args.json)

    with redirect_stdout(out), redirect_stderr(err):
        code = guarded(run, "balloon-report", json_errors=json_output)
    return Outcome(code, out.getvalue(), err.getvalue(), tuple(findings))


class Case(NamedTuple):
    name: str
    description: str
    sample: str
    #: Damages an opened program (of *sample*, module debug info loaded
    #: unless the name says otherwise).
    damage: Callable[[drgn.Program], None]
    codes: Sequence[int]
    #: Finding kinds the report must contain (for EXIT_FINDINGS).
    findings: Sequence[str] = ()
    load_module: bool = True


def _state(prog):
    return balloon_state(prog)


def _heads(prog):
    s = _state(prog)
    return s, {e.kind: e.head.address_ for e in balloon_lists(s.balloon, s.era)}


def _zero_balloon(prog):
    s = _state(prog)
    overlay(prog, s.balloon.address_, bytes(drgn.sizeof(s.balloon)))


def _garbage_sizes(prog):
    s = _state(prog)
    size = s.balloon.size
    overlay(prog, size.address_, struct.pack("<q", 1 << 40))  # 4 PiB of frames
    overlay(prog, s.balloon.target.address_, struct.pack("<q", -1))  # negative


def _cyclic(prog):
    _, heads = _heads(prog)
    nodes = list_nodes(prog, heads["4k"], 40)
    # node 30's next goes back to node 10; its prev stays right.
    overlay(prog, nodes[30], struct.pack("<QQ", nodes[10], nodes[29]))


def _next_outside(prog):
    _, heads = _heads(prog)
    nodes = list_nodes(prog, heads["4k"], 10)
    overlay(prog, nodes[5], struct.pack("<QQ", 0xFFFF888000123458, nodes[4]))


def _prev_disagrees(prog):
    _, heads = _heads(prog)
    nodes = list_nodes(prog, heads["4k"], 10)
    overlay(prog, nodes[7] + 8, struct.pack("<Q", nodes[2]))


def _pages_missing(prog):
    from drgn_balloon.pages import page_geometry

    s, heads = _heads(prog)
    g = page_geometry(prog)
    nodes = list_nodes(prog, heads["4k"], 20)
    page = nodes[15] - g.lru
    hole(prog, page, g.page_size)


def _in_run(prog, index, offset, data):
    # Overwrite a field of the struct page of list node *index* (the samples'
    # lists are long runs of adjacent struct pages: this lands inside one).
    from drgn_balloon.pages import page_geometry

    _, heads = _heads(prog)
    node = list_nodes(prog, heads["4k"], index + 1)[index]
    overlay(prog, node - page_geometry(prog).lru + offset, data)


def _run_page_type(prog):
    from drgn_balloon.pages import page_geometry

    _in_run(prog, 100, page_geometry(prog).page_type, struct.pack("<I", 0xFFFFFFFF))


def _run_private(prog):
    from drgn_balloon.pages import page_geometry

    _in_run(
        prog, 200, page_geometry(prog).private, struct.pack("<Q", 0xFFFF888012345678)
    )


def _run_high_half(prog):
    # A next pointer right in its low 32 bits, wrong in its high 32 bits.
    _, heads = _heads(prog)
    nodes = list_nodes(prog, heads["4k"], 160)
    wrong = nodes[151] ^ (1 << 40)
    overlay(prog, nodes[150], struct.pack("<Q", wrong))


def _never_initialised(prog):
    s, heads = _heads(prog)
    for head in heads.values():
        overlay(prog, head, bytes(16))


def _no_driver(prog):
    # The module list no longer names vmw_balloon: as if it were not loaded.
    from drgn_balloon.system import find_loaded_module

    mod = find_loaded_module(prog, "vmw_balloon")
    name = mod.module.name
    overlay(prog, name.address_, b"not_balloon\0")


def _dmi_escapes(prog):
    table = prog.object("dmi_ident", filename="dmi_scan.c")
    # Each fits in the string it replaces ("VMware, Inc.", "VMware Virtual
    # Platform"), so neither runs into the other.
    for field, text in DMI_ESCAPES.items():
        ptr = table[prog[field].value_()].value_()
        overlay(prog, ptr, text.encode("latin-1") + b"\0")


DMI_ESCAPES = {
    "DMI_SYS_VENDOR": "\x1b[31mVM\r\n\x07",
    "DMI_PRODUCT_NAME": "\x1b]0;pwned\x07\x1b[2J",
}


def cases() -> List[Case]:
    names = samplelib.sample_names()
    inflated = [n for n in names if n.endswith("-4k")]
    base = "6.1-4k" if "6.1-4k" in names else inflated[0]
    out = [
        Case(
            "balloon-zeroed",
            "struct vmballoon balloon all zero",
            base,
            _zero_balloon,
            [EXIT_NOT_VMWARE],
        ),
        Case(
            "balloon-garbage-sizes",
            "size larger than RAM, target negative",
            base,
            _garbage_sizes,
            [EXIT_FINDINGS],
            ["implausible", "size_mismatch"],
        ),
        Case(
            "list-cyclic",
            "4 KiB list: node 30 links back to node 10",
            base,
            _cyclic,
            [EXIT_FINDINGS],
            ["cycle"],
        ),
        Case(
            "next-outside-memmap",
            "4 KiB list: a next pointer outside the memory map",
            base,
            _next_outside,
            [EXIT_FINDINGS],
            ["bad_pointer"],
        ),
        Case(
            "prev-disagrees",
            "4 KiB list: a prev pointer that disagrees",
            base,
            _prev_disagrees,
            [EXIT_FINDINGS],
            ["prev_mismatch"],
        ),
        Case(
            "page-not-in-dump",
            "struct page of a ballooned page missing from the dump",
            base,
            _pages_missing,
            [EXIT_FINDINGS],
            ["not_in_dump"],
        ),
        Case(
            "run-not-offline",
            "node 100, inside a run of adjacent pages, not offline",
            base,
            _run_page_type,
            [EXIT_FINDINGS],
            ["not_offline"],
        ),
        Case(
            "run-bad-private",
            "node 200, inside a run, private points elsewhere",
            base,
            _run_private,
            [EXIT_FINDINGS],
            ["bad_private"],
        ),
        Case(
            "run-next-high-half",
            "node 150's next: right low 32 bits, wrong high ones",
            base,
            _run_high_half,
            [EXIT_FINDINGS],
            ["bad_pointer"],
        ),
        Case(
            "never-initialised",
            "list heads NULL: module loaded, never initialised",
            base,
            _never_initialised,
            [EXIT_NOT_VMWARE],
        ),
        Case(
            "no-driver",
            "vmw_balloon not in the module list, no module debug info",
            base,
            _no_driver,
            [EXIT_NO_DRIVER],
            load_module=False,
        ),
        Case(
            "dmi-escape-sequences",
            "DMI strings carry terminal escape sequences",
            base,
            _dmi_escapes,
            [EXIT_OK],
        ),
    ]
    return out


def run_case(case: Case, json_output: bool = False) -> Outcome:
    prog = samplelib.open_sample(case.sample, load_module=case.load_module)
    case.damage(prog)
    return outcome(prog, json_output)


def fuzz_cases(count: int, seed: int) -> List[Tuple[int, List[Tuple[str, int, bytes]]]]:
    """
    Random damage, reproducible from *seed*: each case overwrites a random
    span of ``balloon`` or of one of the first list nodes (``lru`` and the
    words around it) with random bytes. Returns (case number, [(what,
    offset, bytes)]).
    """
    rng = random.Random(seed)
    out = []
    for i in range(count):
        edits = []
        for _ in range(rng.randint(1, 3)):
            what = rng.choice(["balloon", "balloon", "node0", "node1", "node2", "head"])
            offset = rng.randrange(0, 64 if what != "balloon" else 400)
            length = rng.choice([1, 4, 8, 8, 16, 32])
            data = bytes(rng.getrandbits(8) for _ in range(length))
            edits.append((what, offset, data))
        out.append((i, edits))
    return out


def apply_fuzz(prog: drgn.Program, edits) -> List[Tuple[int, bytes]]:
    """Apply the edits; return what undoes them (address, original bytes)."""
    s, heads = _heads(prog)
    size = drgn.sizeof(s.balloon)
    nodes = list_nodes(prog, heads["4k"], 3)
    undo = []
    for what, offset, data in edits:
        if what == "balloon":
            offset %= size
            address = s.balloon.address_ + offset
        elif what == "head":
            address = heads["4k"] + offset % 16
        else:
            node = nodes[int(what[-1]) % len(nodes)]
            address = node - 8 + offset % 32  # flags word, lru, mapping
        undo.append((address, prog.read(address, len(data))))
        overlay(prog, address, data)
    return undo[::-1]


def main(argv: Optional[Sequence[str]] = None) -> int:
    from tabulate import tabulate

    rows = []
    for case in cases():
        o = run_case(case)
        ok = o.code in case.codes and all(k in o.findings for k in case.findings)
        rows.append(
            [
                case.name,
                case.description,
                o.code,
                ",".join(sorted(set(o.findings))),
                "ok" if ok else "WRONG",
                (o.stderr.strip().splitlines() or [""])[-1][:70],
            ]
        )
    print(tabulate(rows, headers=["case", "damage", "exit", "findings", "", "stderr"]))
    return 0 if all(r[4] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
