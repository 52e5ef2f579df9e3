"""
BTF parser
----------

The ``drgn_balloon.btf`` module reads the BPF Type Format: the type
information that distribution kernels carry in the kernel image itself
(``CONFIG_DEBUG_INFO_BTF``, between ``__start_BTF`` and ``__stop_BTF``) and,
split, in every module (``CONFIG_DEBUG_INFO_BTF_MODULES``, v5.11+). The
format is described in the kernel's ``Documentation/bpf/btf.rst`` and
``include/uapi/linux/btf.h``.

Parsing is lazy: :class:`Btf` walks the type section once to find where each
type record starts and which names exist (about 0.1 s for the 100,000 types
of a distribution vmlinux), and decodes a record only when it is asked for.

Damaged input raises :class:`BadBtf` (exit code 5, like any debug info
that cannot be used) with one line saying what is wrong: wrong magic,
truncated, a type ID out of range, a loop of typedefs, qualifiers,
pointers or arrays, a string offset past the string section.
"""

import struct
from itertools import accumulate
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from .errors import MissingDebugInfo

__all__ = [
    "BTF_MAGIC",
    "BadBtf",
    "Btf",
    "BtfEnumerator",
    "BtfMember",
    "BtfParam",
    "BtfType",
    "Kind",
    "unwrap_drgn_error",
]

BTF_MAGIC = 0xEB9F


class BadBtf(MissingDebugInfo):
    """The BTF is damaged or does not belong with its base (exit code 5)."""

    kind = "bad_btf"


class Kind:
    """``BTF_KIND_*`` (include/uapi/linux/btf.h)."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


KIND_NAMES = (
    "UNKN INT PTR ARRAY STRUCT UNION ENUM FWD TYPEDEF VOLATILE CONST RESTRICT "
    "FUNC FUNC_PROTO VAR DATASEC FLOAT DECL_TAG TYPE_TAG ENUM64"
).split()

# Bytes that follow struct btf_type for each kind: (fixed, per vlen item).
_EXTRA: Tuple[Optional[Tuple[int, int]], ...] = (
    None,  # UNKN: never a valid record
    (4, 0),  # INT: u32 encoding/offset/bits
    (0, 0),  # PTR
    (12, 0),  # ARRAY: struct btf_array
    (0, 12),  # STRUCT: struct btf_member
    (0, 12),  # UNION
    (0, 8),  # ENUM: struct btf_enum
    (0, 0),  # FWD
    (0, 0),  # TYPEDEF
    (0, 0),  # VOLATILE
    (0, 0),  # CONST
    (0, 0),  # RESTRICT
    (0, 0),  # FUNC
    (0, 8),  # FUNC_PROTO: struct btf_param
    (4, 0),  # VAR: struct btf_var
    (0, 12),  # DATASEC: struct btf_var_secinfo
    (0, 0),  # FLOAT
    (4, 0),  # DECL_TAG: struct btf_decl_tag
    (0, 0),  # TYPE_TAG
    (0, 12),  # ENUM64: struct btf_enum64
)

# Kinds looked up by name.
_NAMED_KINDS = frozenset(
    (
        Kind.INT,
        Kind.STRUCT,
        Kind.UNION,
        Kind.ENUM,
        Kind.FWD,
        Kind.TYPEDEF,
        Kind.FUNC,
        Kind.VAR,
        Kind.DATASEC,
        Kind.FLOAT,
        Kind.ENUM64,
    )
)

#: Kinds that refer to another type without a layout of their own: a chain
#: of them must end (a loop is damage).
CHAIN_KINDS = frozenset(
    (
        Kind.PTR,
        Kind.TYPEDEF,
        Kind.VOLATILE,
        Kind.CONST,
        Kind.RESTRICT,
        Kind.TYPE_TAG,
        Kind.ARRAY,
        Kind.VAR,
        Kind.FUNC,
        Kind.DECL_TAG,
    )
)

# Record layout by the top byte of info (kind_flag and kind): (fixed
# bytes, bytes per vlen item), None for an unknown kind.
_BY_TOP_BYTE: Tuple[Optional[Tuple[int, int]], ...] = tuple(
    _EXTRA[b & 0x1F] if (b & 0x1F) < len(_EXTRA) and not (b & 0x60) else None
    for b in range(256)
)

#: Longest chain of CHAIN_KINDS followed before the BTF is called damaged.
MAX_CHAIN = 64

# BTF_INT_ENCODING bits.
INT_SIGNED = 1 << 0
INT_CHAR = 1 << 1
INT_BOOL = 1 << 2


class BtfType(NamedTuple):
    """One type record (``struct btf_type``), decoded."""

    id: int
    kind: int
    name: str
    #: ``size`` for INT, ENUM, STRUCT, UNION, DATASEC, FLOAT, ENUM64;
    #: ``type`` (a type ID) for the others.
    size_or_type: int
    vlen: int
    kind_flag: bool
    #: Offset of the kind-specific data in :attr:`Btf.data`.
    offset: int


class BtfMember(NamedTuple):
    name: str
    type: int
    bit_offset: int
    #: 0 if not a bit field.
    bit_field_size: int


class BtfEnumerator(NamedTuple):
    name: str
    value: int


class BtfParam(NamedTuple):
    name: str
    type: int


class Btf:
    """
    BTF of vmlinux, or the split BTF of a module on top of *base*.

    :param data: the raw BTF (``/sys/kernel/btf/NAME``, or the bytes the
        kernel keeps in memory).
    :param base: vmlinux's :class:`Btf` for a module's split BTF.
    :param name: what the BTF belongs to ("vmlinux", a module name), for
        messages.
    :raises BadBtf: wrong magic, a header or section out of bounds, an
        unknown kind or a record cut short.
    """

    def __init__(
        self, data: bytes, base: "Optional[Btf]" = None, name: str = "vmlinux"
    ):
        self.data = bytes(data)
        self.base = base
        self.name = name
        what = f"{name} BTF"
        if len(self.data) < 24:
            raise BadBtf(f"{what} is truncated: {len(self.data)} bytes, no header")
        magic = struct.unpack_from("<H", self.data, 0)[0]
        if magic == BTF_MAGIC:
            self.endian = "<"
        elif magic == 0x9FEB:
            self.endian = ">"
        else:
            raise BadBtf(
                f"{what} has wrong magic {magic:#06x} (BTF starts with {BTF_MAGIC:#x})"
            )
        e = self.endian
        version, _flags, hdr_len = struct.unpack_from(e + "BBI", self.data, 2)
        if version != 1:
            raise BadBtf(f"{what} has version {version}; only version 1 is known")
        if hdr_len < 24 or hdr_len > len(self.data):
            raise BadBtf(f"{what} has a bad header length {hdr_len}")
        type_off, type_len, str_off, str_len = struct.unpack_from(
            e + "IIII", self.data, 8
        )
        end = len(self.data)
        if hdr_len + type_off + type_len > end or hdr_len + str_off + str_len > end:
            raise BadBtf(
                f"{what} is truncated: its header describes "
                f"{hdr_len + max(type_off + type_len, str_off + str_len)} bytes, "
                f"there are {end}"
            )
        if type_len % 4:
            raise BadBtf(
                f"{what} has a type section of {type_len} bytes (not 4-aligned)"
            )
        self.type_start = hdr_len + type_off
        self.type_end = self.type_start + type_len
        self.str_start = hdr_len + str_off
        self.str_end = self.str_start + str_len
        if base is None and str_len and self.data[self.str_start] != 0:
            raise BadBtf(f"{what}'s string section does not start with an empty string")
        if str_len and self.data[self.str_end - 1] != 0:
            raise BadBtf(f"{what}'s string section does not end with a NUL")
        if base is None:
            self.start_id = 1
            self.str_base = 0
        else:
            self.start_id = base.start_id + base.count
            self.str_base = base.str_base + (base.str_end - base.str_start)
        self._unpack3 = struct.Struct(e + "III").unpack_from
        self._offsets: List[int] = []
        self._index_: Optional[_Index] = None
        self._strtab: Optional[Tuple[Dict[bytes, int], Dict[bytes, List[int]]]] = None
        self._strings: Dict[int, str] = {}
        self._scan()

    def _scan(self) -> None:
        # One pass over the type section: where each record starts. The
        # kind (and kind_flag) is the top byte of info, vlen its low 16 bits.
        data = self.data
        if self.endian == "<":
            top, lo, hi = 7, 4, 5
        else:
            top, lo, hi = 4, 7, 6
        table = _BY_TOP_BYTE
        offsets = self._offsets
        append = offsets.append
        pos = self.type_start
        end = self.type_end
        while pos < end:
            if pos + 12 > end:
                raise BadBtf(
                    f"{self.name} BTF is truncated: type "
                    f"{self.start_id + len(offsets)} is cut short"
                )
            entry = table[data[pos + top]]
            if entry is None:
                raise BadBtf(
                    f"{self.name} BTF: type {self.start_id + len(offsets)} has "
                    f"unknown kind {data[pos + top] & 0x1F}"
                )
            fixed, per = entry
            append(pos)
            if per:
                pos += 12 + fixed + per * (data[pos + lo] | data[pos + hi] << 8)
            else:
                pos += 12 + fixed
        if pos != end:
            raise BadBtf(
                f"{self.name} BTF is truncated: type "
                f"{self.start_id + len(offsets) - 1} runs past the type section"
            )

    def _index(self) -> "_Index":
        if self._index_ is None:
            try:
                if self.count < 5000:  # a module: not worth importing NumPy
                    raise ImportError
                self._index_ = _NumpyIndex(self)
            except ImportError:
                self._index_ = _Index(self)
        return self._index_

    # -- strings -----------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of types in this BTF (not counting the base's or void)."""
        return len(self._offsets)

    @property
    def end_id(self) -> int:
        """One past the last type ID of this BTF."""
        return self.start_id + len(self._offsets)

    def string(self, offset: int) -> str:
        """The string at *offset* (split BTF: the base's below its length)."""
        if offset < self.str_base:
            assert self.base is not None
            return self.base.string(offset)
        s = self._strings.get(offset)
        if s is not None:
            return s
        start = self.str_start + offset - self.str_base
        if start >= self.str_end:
            raise BadBtf(
                f"{self.name} BTF: string offset {offset} is past the string "
                f"section ({self.str_base + self.str_end - self.str_start} bytes)"
            )
        stop = self.data.index(b"\0", start, self.str_end)  # ends with NUL
        s = self.data[start:stop].decode("utf-8", "replace")
        self._strings[offset] = s
        return s

    # -- types -------------------------------------------------------------

    def owner(self, type_id: int) -> "Btf":
        """The BTF (this one or its base) that holds *type_id*."""
        if type_id >= self.start_id:
            if type_id >= self.end_id:
                raise BadBtf(
                    f"{self.name} BTF: type ID {type_id} is out of range "
                    f"(last is {self.end_id - 1})"
                )
            return self
        if self.base is None or type_id <= 0:
            raise BadBtf(f"{self.name} BTF: type ID {type_id} is out of range")
        return self.base.owner(type_id)

    def type(self, type_id: int) -> BtfType:
        """Decode the record of *type_id* (not 0: void)."""
        btf = self.owner(type_id)
        pos = btf._offsets[type_id - btf.start_id]
        name_off, info, size_or_type = btf._unpack3(btf.data, pos)
        return BtfType(
            type_id,
            (info >> 24) & 0x1F,
            btf.string(name_off) if name_off else "",
            size_or_type,
            info & 0xFFFF,
            bool(info >> 31),
            pos + 12,
        )

    def ids_by_name(self, name: str, kinds: Iterable[int] = ()) -> List[int]:
        """Type IDs named *name* (of the given kinds, if any), the base's first."""
        wanted = frozenset(kinds)
        out = []
        for btf in self._chain():
            index = btf._index()
            for off in btf._string_offsets_local(name):
                for i in index.types_named(off):
                    if not wanted or index.kind(i) in wanted:
                        out.append(btf.start_id + i)
        return out

    def _chain(self) -> "List[Btf]":
        chain: List[Btf] = []
        btf: Optional[Btf] = self
        while btf is not None:
            chain.append(btf)
            btf = btf.base
        chain.reverse()
        return chain

    def _string_offsets_local(self, name: str) -> List[int]:
        # Offsets of *name* in this BTF's string section and its base's (a
        # split BTF's types may name base strings).
        key = name.encode()
        out = []
        btf: Optional[Btf] = self
        while btf is not None:
            first, more = btf._string_table()
            found = first.get(key)
            if found is not None:
                out.append(found)
                out.extend(more.get(key, ()))
            btf = btf.base
        return out

    def _string_table(self) -> Tuple[Dict[bytes, int], Dict[bytes, List[int]]]:
        # string -> its offset (pahole writes each string once; any further
        # copies go to the second dict).
        if self._strtab is None:
            parts = self.data[self.str_start : self.str_end].split(b"\0")
            offsets = list(
                accumulate((len(p) + 1 for p in parts), initial=self.str_base)
            )
            # Reversed, so that the first copy of a string is the one kept.
            first = dict(zip(reversed(parts), reversed(offsets[:-1])))
            more: Dict[bytes, List[int]] = {}
            if len(first) + parts.count(b"") - 1 != len(parts):
                for part, off in zip(parts, offsets):
                    if part and first[part] != off:
                        more.setdefault(part, []).append(off)
            self._strtab = (first, more)
        return self._strtab

    def ids_of_kind(self, kinds: Iterable[int]) -> List[int]:
        """All type IDs of this BTF (not the base's) of the given kinds."""
        return [self.start_id + i for i in self._index().of_kinds(kinds)]

    def enumerator(self, name: str) -> Optional[Tuple[int, int]]:
        """(enum type ID, value) of the enumerator *name* in this BTF's own
        types (not the base's), or ``None``."""
        index = self._index()
        for off in self._string_offsets_local(name):
            found = index.enumerator_named(off)
            if found is not None:
                i, n = found
                t = self.type(self.start_id + i)
                return t.id, self.enumerators(t)[n].value
        return None

    def _u32s(self, t: BtfType, n: int, fmt: str) -> Tuple[int, ...]:
        return struct.unpack_from(self.endian + fmt, self.owner(t.id).data, t.offset)

    def int_encoding(self, t: BtfType) -> Tuple[int, int, int]:
        """(encoding bits, bit offset, bits) of an INT."""
        (word,) = self._u32s(t, 1, "I")
        return (word >> 24) & 0xF, (word >> 16) & 0xFF, word & 0xFF

    def array(self, t: BtfType) -> Tuple[int, int, int]:
        """(element type, index type, number of elements) of an ARRAY."""
        elem, index, nelems = self._u32s(t, 3, "III")
        return elem, index, nelems

    def members(self, t: BtfType) -> List[BtfMember]:
        """Members of a STRUCT or UNION."""
        data = self.owner(t.id).data
        unpack = struct.Struct(self.endian + "III").unpack_from
        out = []
        for i in range(t.vlen):
            name_off, type_id, offset = unpack(data, t.offset + 12 * i)
            name = self.string(name_off) if name_off else ""
            if t.kind_flag:
                out.append(BtfMember(name, type_id, offset & 0xFFFFFF, offset >> 24))
            else:
                out.append(BtfMember(name, type_id, offset, 0))
        return out

    def enumerators(self, t: BtfType) -> List[BtfEnumerator]:
        """Enumerators of an ENUM or ENUM64 (signed if ``kind_flag``)."""
        data = self.owner(t.id).data
        out = []
        if t.kind == Kind.ENUM64:
            unpack = struct.Struct(self.endian + "III").unpack_from
            for i in range(t.vlen):
                name_off, lo, hi = unpack(data, t.offset + 12 * i)
                value = hi << 32 | lo
                if t.kind_flag and value >= 1 << 63:
                    value -= 1 << 64
                out.append(BtfEnumerator(self.string(name_off), value))
        else:
            fmt = self.endian + ("Ii" if t.kind_flag else "II")
            unpack = struct.Struct(fmt).unpack_from
            for i in range(t.vlen):
                name_off, value = unpack(data, t.offset + 8 * i)
                out.append(BtfEnumerator(self.string(name_off), value))
        return out

    def params(self, t: BtfType) -> List[BtfParam]:
        """Parameters of a FUNC_PROTO (a last one of type 0 means ``...``)."""
        data = self.owner(t.id).data
        unpack = struct.Struct(self.endian + "II").unpack_from
        out = []
        for i in range(t.vlen):
            name_off, type_id = unpack(data, t.offset + 8 * i)
            out.append(BtfParam(self.string(name_off) if name_off else "", type_id))
        return out

    def var_linkage(self, t: BtfType) -> int:
        """Linkage of a VAR (0 static, 1 global, 2 extern)."""
        (linkage,) = self._u32s(t, 1, "I")
        return int(linkage)

    def datasec(self, t: BtfType) -> List[Tuple[int, int, int]]:
        """(VAR type ID, offset, size) of each variable of a DATASEC."""
        data = self.owner(t.id).data
        unpack = struct.Struct(self.endian + "III").unpack_from
        return [unpack(data, t.offset + 12 * i) for i in range(t.vlen)]

    def resolve(self, type_id: int, through: Iterable[int] = ()) -> int:
        """
        Follow *type_id* through the kinds in *through* (e.g. TYPEDEF and
        qualifiers); return the first ID of another kind (0 for void).

        :raises BadBtf: on a loop or a chain longer than :data:`MAX_CHAIN`.
        """
        through = frozenset(through)
        seen: List[int] = []
        while type_id:
            t = self.type(type_id)
            if t.kind not in through:
                return type_id
            if type_id in seen or len(seen) >= MAX_CHAIN:
                raise self.loop_error(seen + [type_id])
            seen.append(type_id)
            type_id = t.size_or_type
        return 0

    def loop_error(self, chain: Sequence[int]) -> BadBtf:
        """The error for a loop (or a chain too long) of referring types."""
        shown = " -> ".join(str(i) for i in list(chain)[:8])
        return BadBtf(
            f"{self.name} BTF: a loop of typedefs/qualifiers/pointers at type "
            f"{chain[0]} ({shown}{' ...' if len(chain) > 8 else ''})"
        )

    def validate(self) -> None:
        """
        Check every record of this BTF (not the base): names within the
        string section, referenced type IDs in range, no loop of referring
        types. Costs a pass over all types; the lazy accessors check the
        same as they go.
        """
        for type_id in range(self.start_id, self.end_id):
            t = self.type(type_id)
            if t.kind in CHAIN_KINDS:
                self.resolve(type_id, CHAIN_KINDS)
            if t.kind == Kind.ARRAY:
                elem, index, _ = self.array(t)
                self._check_id(elem)
                self._check_id(index)
            elif t.kind in (Kind.STRUCT, Kind.UNION):
                for m in self.members(t):
                    self._check_id(m.type)
            elif t.kind in (Kind.ENUM, Kind.ENUM64):
                self.enumerators(t)
            elif t.kind == Kind.FUNC_PROTO:
                self._check_id(t.size_or_type)
                for p in self.params(t):
                    self._check_id(p.type)
            elif t.kind == Kind.DATASEC:
                for var, _, _ in self.datasec(t):
                    self._check_id(var)

    def _check_id(self, type_id: int) -> None:
        if type_id:
            self.owner(type_id)


def unwrap_drgn_error(e: BaseException) -> Optional[BadBtf]:
    """
    The :class:`BadBtf` that drgn 0.0.31 turned into a bare ``Exception``
    ("BadBtf: message") when it was raised while drgn's C code built a type
    lazily (a member of a member), or ``None``.
    """
    if type(e) is Exception and e.args and isinstance(e.args[0], str):
        kind, _, message = e.args[0].partition(": ")
        if kind in ("BadBtf", "MissingDebugInfo") and message:
            return BadBtf(message)
    return None


def parse_split(
    data: bytes, base: Btf, name: str, start_id: Optional[int] = None
) -> Btf:
    """
    Parse a module's split BTF on top of *base*.

    :param start_id: the first type ID the kernel gave the module's types
        (``struct btf.start_id``), checked against *base*.
    :raises BadBtf: if the data is damaged or was made for another vmlinux.
    """
    btf = Btf(data, base, name)
    if start_id is not None and start_id != btf.start_id:
        raise BadBtf(
            f"{name}'s BTF does not match vmlinux's: its types start at ID "
            f"{start_id}, vmlinux BTF has {base.count} types"
        )
    return btf


class _Index:
    """Which types have which name offsets and kinds, and where each
    enumerator's name is: with NumPy (sorted arrays) or without (dicts)."""

    def __init__(self, btf: Btf) -> None:
        data = btf.data
        offsets = btf._offsets
        unpack = struct.Struct(btf.endian + "II").unpack_from
        self.kinds = bytearray(len(offsets))
        by_name: Dict[int, List[int]] = {}
        enums: Dict[int, Tuple[int, int]] = {}
        for i, pos in enumerate(offsets):
            name_off, info = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            self.kinds[i] = kind
            if name_off:
                found = by_name.get(name_off)
                if found is None:
                    by_name[name_off] = [i]
                else:
                    found.append(i)
            if kind == Kind.ENUM or kind == Kind.ENUM64:
                step = 12 if kind == Kind.ENUM64 else 8
                for n in range(info & 0xFFFF):
                    (enum_off,) = struct.unpack_from(
                        btf.endian + "I", data, pos + 12 + step * n
                    )
                    if enum_off not in enums:
                        enums[enum_off] = (i, n)
        self.by_name = by_name
        self.enums = enums

    def types_named(self, name_off: int) -> List[int]:
        return self.by_name.get(name_off, [])

    def kind(self, i: int) -> int:
        return self.kinds[i]

    def of_kinds(self, kinds: Iterable[int]) -> List[int]:
        wanted = frozenset(kinds)
        return [i for i, k in enumerate(self.kinds) if k in wanted]

    def enumerator_named(self, name_off: int) -> Optional[Tuple[int, int]]:
        return self.enums.get(name_off)


class _NumpyIndex(_Index):
    """:class:`_Index` on sorted NumPy arrays (about 10x faster to build)."""

    def __init__(self, btf: Btf) -> None:
        import numpy as np

        data = btf.data
        words = np.frombuffer(data, dtype=btf.endian + "u4", count=len(data) // 4)
        pos = np.asarray(btf._offsets, dtype=np.int64)
        if len(pos) and int(pos[0]) % 4:
            raise ImportError  # not 4-aligned: take the slow path
        word = pos // 4
        names = words[word]
        info = words[word + 1]
        self.kinds = ((info >> 24) & 0x1F).astype(np.uint8).tobytes()  # type: ignore[assignment]
        order = np.argsort(names, kind="stable")
        self._name_order = order
        self._names_sorted = names[order]
        # Every enumerator's name offset: ENUM has 2 words per item, ENUM64 3.
        kinds = (info >> 24) & 0x1F
        enum_i = np.flatnonzero((kinds == Kind.ENUM) | (kinds == Kind.ENUM64))
        vlen = (info[enum_i] & 0xFFFF).astype(np.int64)
        step = np.where(kinds[enum_i] == Kind.ENUM64, 3, 2).astype(np.int64)
        total = int(vlen.sum())
        owner = np.repeat(np.arange(len(enum_i)), vlen)
        within = np.arange(total, dtype=np.int64) - np.repeat(
            np.cumsum(vlen) - vlen, vlen
        )
        enum_words = word[enum_i][owner] + 3 + within * step[owner]
        enum_names = words[enum_words]
        eorder = np.argsort(enum_names, kind="stable")
        self._enum_sorted = enum_names[eorder]
        self._enum_type = enum_i[owner][eorder]
        self._enum_n = within[eorder]
        self._np = np

    def types_named(self, name_off: int) -> List[int]:
        lo = int(self._np.searchsorted(self._names_sorted, name_off, "left"))
        hi = int(self._np.searchsorted(self._names_sorted, name_off, "right"))
        return [int(i) for i in self._name_order[lo:hi]]

    def of_kinds(self, kinds: Iterable[int]) -> List[int]:
        np = self._np
        array = np.frombuffer(self.kinds, dtype=np.uint8)
        return [int(i) for i in np.flatnonzero(np.isin(array, list(kinds)))]

    def enumerator_named(self, name_off: int) -> Optional[Tuple[int, int]]:
        i = int(self._np.searchsorted(self._enum_sorted, name_off, "left"))
        if i < len(self._enum_sorted) and int(self._enum_sorted[i]) == name_off:
            return int(self._enum_type[i]), int(self._enum_n[i])
        return None
