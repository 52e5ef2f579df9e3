"""
The BTF parser and the drgn types built from it: a BTF written by the tests
(tests/btfgen.py, from the format's definition), the running kernel's BTF
against pahole's reading of it, damaged BTF, and a seeded fuzz.
"""

import os
import random
import re
import shutil
import struct
import subprocess

import drgn
import pytest
from btfgen import BtfWriter, sample_btf
from drgn import TypeKind, offsetof, sizeof

from drgn_balloon.btf import BadBtf, Btf, Kind, parse_split
from drgn_balloon.btf_types import BtfTypes
from drgn_balloon.errors import EXIT_NO_DEBUG_INFO

HOST_BTF = "/sys/kernel/btf/vmlinux"


def program_for(btf):
    prog = drgn.Program(
        drgn.Platform(
            drgn.Architecture.X86_64,
            drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN,
        )
    )
    types = BtfTypes(prog, btf)
    try:
        prog.register_type_finder("btf", types.find, enable_index=0)
    except AttributeError:  # drgn < 0.0.27: the older hook
        prog.add_type_finder(
            lambda kind, name, file: types.find(prog, {kind}, name, file)
        )
    return prog, types


def test_sample_types():
    data, ids = sample_btf()
    btf = Btf(data)
    btf.validate()
    prog, _ = program_for(btf)
    thing = prog.type("struct thing")
    assert sizeof(thing) == 88
    assert [m.name for m in thing.members] == [
        "list",
        "name",
        "counts",
        "color",
        "f",
        "ok",
    ]
    assert offsetof(thing, "counts") == 24
    assert offsetof(thing, "color") == 72
    assert thing.member("counts").type.length == 6
    assert str(thing.member("name").type) == "const char *"
    lh = prog.type("struct list_head")
    # A loop through a structure is fine.
    assert lh.member("next").type.type.member("prev").type.type.tag == "list_head"
    flags = prog.type("struct flags")
    assert [(m.name, m.bit_offset, m.bit_field_size) for m in flags.members] == [
        ("a", 0, 3),
        ("b", 3, 5),
        ("c", 8, 24),
    ]
    color = prog.type("enum color")
    assert [(e.name, e.value) for e in color.enumerators] == [
        ("RED", 0),
        ("GREEN", 1),
        ("NR_COLORS", 2),
    ]
    assert btf.enumerator("NR_COLORS") == (ids["enum color"], 2)
    assert prog.type("unsigned long").size == 8  # "long unsigned int" in BTF
    assert prog.type("_Bool").kind == TypeKind.BOOL
    assert not prog.type("struct opaque").is_complete()
    assert prog.type("atomic64_t").kind == TypeKind.TYPEDEF
    with pytest.raises(LookupError):
        prog.type("struct nothing")


def test_lazy():
    # Only what is looked up (and what it reaches when read) is built.
    data, _ = sample_btf()
    prog, types = program_for(Btf(data))
    prog.type("struct thing")
    built = len(types._cache)
    assert built == 1
    _ = prog.type("struct thing").members[2].type
    assert len(types._cache) > built


def test_split_btf():
    data, ids = sample_btf()
    base = Btf(data)
    # A module's BTF on top: IDs continue after the base's, strings too.
    split = BtfWriter(base=_writer_like(base, data))
    balloon = split.struct(
        "vmballoon",
        24,
        [("size", ids["atomic64_t"], 0, 0), ("pages", ids["struct list_head"], 64, 0)],
    )
    mod_btf = parse_split(split.build(), base, "vmw_balloon", base.count + 1)
    assert balloon == base.count + 1
    prog, types = program_for(base)
    types.add_module(mod_btf)
    t = prog.type("struct vmballoon")
    assert offsetof(t, "pages") == 8
    assert t.member("size").type.type_name() == "atomic64_t"
    with pytest.raises(BadBtf, match="does not match"):
        parse_split(split.build(), base, "vmw_balloon", base.count + 7)


def _writer_like(base_btf, data):
    # A writer whose IDs and strings are those of *data* (to build split BTF).
    w = BtfWriter()
    w.types = [b""] * base_btf.count
    w.strings = bytearray(data[base_btf.str_start : base_btf.str_end])
    text = bytes(w.strings)
    pos = 0
    for s in text.split(b"\0"):
        if s:
            w.str_index.setdefault(s.decode(), pos)
        pos += len(s) + 1
    return w


# -- damaged BTF -------------------------------------------------------------


def bad(data, match):
    with pytest.raises(BadBtf, match=match) as info:
        btf = Btf(data)
        btf.validate()
        prog, types = program_for(btf)
        for type_id in range(1, btf.end_id):
            if btf.type(type_id).kind not in (Kind.DATASEC, Kind.DECL_TAG):
                types.type(btf, type_id).type_name()
    assert info.value.exit_code == EXIT_NO_DEBUG_INFO
    assert "\n" not in info.value.message
    return info.value


def test_wrong_magic():
    data, _ = sample_btf()
    bad(b"\x9f\xec" + data[2:], "wrong magic")


def test_truncated():
    data, _ = sample_btf()
    bad(data[:10], "truncated")
    bad(data[: len(data) - 5], "truncated")
    # A header that claims less type data than the records need.
    type_len = struct.unpack_from("<I", data, 12)[0]
    cut = bytearray(data)
    struct.pack_into("<I", cut, 12, type_len - 4)
    bad(bytes(cut), "truncated|unknown kind|past")


def test_type_id_out_of_range():
    w = BtfWriter()
    i = w.int("int", 4, True)
    w.struct("s", 8, [("x", i, 0, 0), ("y", 999, 32, 0)])
    bad(w.build(), "type ID 999 is out of range")


def test_typedef_loop():
    w = BtfWriter()
    w.typedef("a", 2)
    w.typedef("b", 3)
    w.const(1)
    bad(w.build(), "loop")


def test_pointer_loop():
    w = BtfWriter()
    w.ptr(1)
    bad(w.build(), "loop")


def test_string_offset_past_the_section():
    w = BtfWriter()
    w.int("int", 4, True)
    w.raw_type(struct.pack("<III", 100000, Kind.TYPEDEF << 24, 1))
    bad(w.build(), "string offset 100000 is past the string section")


def test_unknown_kind():
    w = BtfWriter()
    w.raw_type(struct.pack("<III", 0, 25 << 24, 0))
    bad(w.build(), "unknown kind 25")


def test_fuzz():
    # Seeded: the same 400 damaged BTFs every run. Anything but BadBtf (or
    # a result) is a bug; so is a hang (no loop in the parser is unbounded).
    data, _ = sample_btf()
    rng = random.Random(0xB7F)
    outcomes = {"ok": 0, "bad": 0}
    for case in range(400):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            what = rng.random()
            pos = rng.randrange(len(buf))
            if what < 0.6:
                buf[pos] = rng.randrange(256)
            elif what < 0.8 and len(buf) >= 4:
                struct.pack_into(
                    "<I",
                    buf,
                    pos - pos % 4 if pos + 4 <= len(buf) else 0,
                    rng.choice([0, 1, 2, 0xFFFF, 0xFFFFFFFF, rng.getrandbits(32)]),
                )
            elif what < 0.9:
                del buf[pos:]
            else:
                buf[pos:pos] = bytes(
                    rng.randrange(256) for _ in range(rng.randint(1, 16))
                )
        try:
            btf = Btf(bytes(buf))
            btf.validate()
            prog, types = program_for(btf)
            for type_id in range(1, btf.end_id):
                if btf.type(type_id).kind in (Kind.DATASEC, Kind.DECL_TAG):
                    continue  # not types
                t = types.type(btf, type_id)
                if t.kind != TypeKind.FUNCTION:  # drgn 0.0.31 cannot format one
                    str(t)
                if t.kind in (TypeKind.STRUCT, TypeKind.UNION) and t.is_complete():
                    for m in t.members:
                        _ = m.type
            for name in ("thing", "list_head", "color", "NR_COLORS"):
                btf.ids_by_name(name)
                btf.enumerator(name)
            outcomes["ok"] += 1
        except BadBtf as e:
            assert "\n" not in e.message, (case, e.message)
            outcomes["bad"] += 1
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"case {case}: {type(e).__name__}: {e}") from e
    assert outcomes["ok"] > 20 and outcomes["bad"] > 100, outcomes


# -- the running kernel's BTF, against pahole --------------------------------


@pytest.mark.skipif(
    not os.path.exists(HOST_BTF), reason="no /sys/kernel/btf/vmlinux here"
)
@pytest.mark.skipif(shutil.which("pahole") is None, reason="pahole is not installed")
def test_host_btf_against_pahole():
    with open(HOST_BTF, "rb") as f:
        btf = Btf(f.read())
    out = subprocess.run(
        ["pahole", "-F", "btf", "--sizes", HOST_BTF],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = {}
    for line in out.splitlines():
        name, size, _ = line.split("\t")
        theirs.setdefault(name, set()).add(int(size))
    ours = {}
    for type_id in btf.ids_of_kind((Kind.STRUCT,)):
        t = btf.type(type_id)
        if t.name:
            ours.setdefault(t.name, set()).add(t.size_or_type)
    common = set(ours) & set(theirs)
    assert len(common) > 1000
    assert {n: ours[n] for n in common} == {n: theirs[n] for n in common}
    prog, _ = program_for(btf)
    # Members against pahole's layout of a few structures.
    for name in ("list_head", "page", "module", "zone"):
        layout = subprocess.run(
            ["pahole", "-F", "btf", "-C", name, HOST_BTF],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        t = prog.type("struct " + name)
        assert f"/* size: {sizeof(t)}," in layout
        # Top-level members (one tab in): "\tTYPE NAME...; /* OFFSET SIZE */".
        seen = 0
        for line in layout.splitlines():
            m = re.match(
                r"^\t[^\t].*?\b(\w+)\)?(?:\(.*\))?(?:\[\d*\])*;"
                r"\s*/\*\s*(\d+)\s+(\d+)\s*\*/",
                line,
            )
            if m and ":" not in line.split("/*")[0] and "__attribute__" not in line:
                assert offsetof(t, m.group(1)) == int(m.group(2)), (name, line)
                seen += 1
        assert seen >= 2, (name, layout)


def test_damage_deep_in_a_type_is_one_line(capsys):
    # A damaged type met while drgn builds a member's type lazily: still
    # exit code 5 and one line (drgn 0.0.31 wraps the error in a bare
    # Exception; the entry points unwrap it).
    from drgn import Object

    from drgn_balloon.cli import guarded

    w = BtfWriter()
    inner = w.struct("inner", 8, [("bad", 999, 0, 0)])
    w.struct("outer", 8, [("in", inner, 0, 0)])
    prog, _ = program_for(Btf(w.build()))
    outer = prog.type("struct outer")

    def run():
        Object(prog, outer, address=0x1000).member_("in").member_("bad")
        return 0

    assert guarded(run, "balloon-report") == EXIT_NO_DEBUG_INFO
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "type ID 999 is out of range" in err
