"""
A small BTF writer for the tests, written from the format's definition
(the kernel's Documentation/bpf/btf.rst and include/uapi/linux/btf.h), not
from drgn_balloon.btf: the types a test expects are spelled out here.
"""

import struct
from typing import Dict, List, Optional, Sequence, Tuple

KIND = {
    "INT": 1,
    "PTR": 2,
    "ARRAY": 3,
    "STRUCT": 4,
    "UNION": 5,
    "ENUM": 6,
    "FWD": 7,
    "TYPEDEF": 8,
    "VOLATILE": 9,
    "CONST": 10,
    "RESTRICT": 11,
    "FUNC": 12,
    "FUNC_PROTO": 13,
    "VAR": 14,
    "DATASEC": 15,
    "FLOAT": 16,
    "DECL_TAG": 17,
    "TYPE_TAG": 18,
    "ENUM64": 19,
}


class BtfWriter:
    def __init__(self, base: "Optional[BtfWriter]" = None) -> None:
        self.base = base
        self.strings = bytearray() if base else bytearray(b"\0")
        self.str_index: Dict[str, int] = {}
        self.types: List[bytes] = []

    @property
    def first_id(self) -> int:
        return 1 if self.base is None else self.base.first_id + len(self.base.types)

    @property
    def str_base(self) -> int:
        return 0 if self.base is None else self.base.str_base + len(self.base.strings)

    def s(self, name: str) -> int:
        if not name:
            return 0
        if self.base is not None:
            found = self.base.find_string(name)
            if found is not None:
                return found
        if name not in self.str_index:
            self.str_index[name] = self.str_base + len(self.strings)
            self.strings += name.encode() + b"\0"
        return self.str_index[name]

    def find_string(self, name: str) -> Optional[int]:
        if name in self.str_index:
            return self.str_index[name]
        return self.base.find_string(name) if self.base else None

    def add(
        self,
        kind: str,
        name: str,
        size_or_type: int,
        vlen: int = 0,
        kind_flag: bool = False,
        extra: bytes = b"",
    ) -> int:
        info = (KIND[kind] << 24) | vlen | (int(kind_flag) << 31)
        self.types.append(struct.pack("<III", self.s(name), info, size_or_type) + extra)
        return self.first_id + len(self.types) - 1

    def int(
        self, name: str, size: int, signed: bool = False, bool_: bool = False
    ) -> int:
        enc = (1 if signed else 0) | (4 if bool_ else 0)
        return self.add(
            "INT", name, size, extra=struct.pack("<I", enc << 24 | size * 8)
        )

    def ptr(self, target: int) -> int:
        return self.add("PTR", "", target)

    def typedef(self, name: str, target: int) -> int:
        return self.add("TYPEDEF", name, target)

    def const(self, target: int) -> int:
        return self.add("CONST", "", target)

    def array(self, elem: int, index: int, n: int) -> int:
        return self.add("ARRAY", "", 0, extra=struct.pack("<III", elem, index, n))

    def struct(
        self,
        name: str,
        size: int,
        members: Sequence[Tuple[str, int, int, int]],
        union: bool = False,
    ) -> int:
        """members: (name, type, bit offset, bit field size)."""
        bitfields = any(m[3] for m in members)
        extra = b"".join(
            struct.pack("<III", self.s(n), t, (bits << 24 | off) if bitfields else off)
            for n, t, off, bits in members
        )
        return self.add(
            "UNION" if union else "STRUCT", name, size, len(members), bitfields, extra
        )

    def enum(
        self,
        name: str,
        size: int,
        values: Sequence[Tuple[str, int]],
        signed: bool = False,
    ) -> int:
        extra = b"".join(
            struct.pack("<Ii", self.s(n), v)
            if signed
            else struct.pack("<II", self.s(n), v & 0xFFFFFFFF)
            for n, v in values
        )
        return self.add("ENUM", name, size, len(values), signed, extra)

    def func_proto(self, ret: int, params: Sequence[Tuple[str, int]]) -> int:
        extra = b"".join(struct.pack("<II", self.s(n), t) for n, t in params)
        return self.add("FUNC_PROTO", "", ret, len(params), extra=extra)

    def fwd(self, name: str, union: bool = False) -> int:
        return self.add("FWD", name, 0, kind_flag=union)

    def var(self, name: str, type_id: int) -> int:
        return self.add("VAR", name, type_id, extra=struct.pack("<I", 1))

    def datasec(
        self, name: str, size: int, vars_: Sequence[Tuple[int, int, int]]
    ) -> int:
        extra = b"".join(struct.pack("<III", *v) for v in vars_)
        return self.add("DATASEC", name, size, len(vars_), extra=extra)

    def raw_type(self, record: bytes) -> int:
        self.types.append(record)
        return self.first_id + len(self.types) - 1

    def build(self) -> bytes:
        types = b"".join(self.types)
        header = struct.pack(
            "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(self.strings)
        )
        return header + types + bytes(self.strings)


def sample_btf() -> Tuple[bytes, Dict[str, int]]:
    """A little vmlinux-like BTF and the IDs of its types by name."""
    w = BtfWriter()
    ids: Dict[str, int] = {}
    ids["int"] = w.int("int", 4, signed=True)
    ids["unsigned long"] = w.int("long unsigned int", 8)
    ids["char"] = w.int("char", 1, signed=True)
    ids["_Bool"] = w.int("_Bool", 1, bool_=True)
    ids["u8"] = w.int("unsigned char", 1)
    lh = w.first_id + len(w.types)  # list_head, then the pointer to it
    w.struct("list_head", 16, [("next", lh + 1, 0, 0), ("prev", lh + 1, 64, 0)])
    w.ptr(lh)
    ids["struct list_head"] = lh
    ids["struct opaque"] = w.fwd("opaque")
    ids["atomic64_t"] = w.typedef(
        "atomic64_t", w.struct("", 8, [("counter", w.int("s64", 8, signed=True), 0, 0)])
    )
    ids["enum color"] = w.enum("color", 4, [("RED", 0), ("GREEN", 1), ("NR_COLORS", 2)])
    ids["const char"] = w.const(ids["char"])
    arr = w.array(ids["atomic64_t"], ids["int"], 6)
    flags = w.struct(
        "flags",
        4,
        [("a", ids["u8"], 0, 3), ("b", ids["u8"], 3, 5), ("c", ids["int"], 8, 24)],
    )
    ids["struct flags"] = flags
    ids["struct thing"] = w.struct(
        "thing",
        88,
        [
            ("list", lh, 0, 0),
            ("name", w.ptr(ids["const char"]), 128, 0),
            ("counts", arr, 192, 0),
            ("color", ids["enum color"], 576, 0),
            ("f", flags, 608, 0),
            ("ok", ids["_Bool"], 640, 0),
        ],
    )
    ids["func"] = w.func_proto(ids["int"], [("x", ids["int"]), ("", 0)])
    ids["pcpu var"] = w.var("my_percpu", ids["unsigned long"])
    w.datasec(".data..percpu", 8, [(ids["pcpu var"], 0, 8)])
    return w.build(), ids
