"""
drgn types from BTF
-------------------

The ``drgn_balloon.btf_types`` module turns BTF records into drgn
:class:`~drgn.Type`\\ s, lazily: a type is built the first time drgn asks
for it by name (through the type finder) or reaches it through a member,
parameter, pointer or array; members and parameters are built only when
they are read. vmlinux BTF has about 100,000 types and the report needs a
few hundred.

pahole writes a multi-dimensional array as one flat array (dwarves
``btf_encoder.c``: "TODO: Encode one dimension at a time", the length is the
product of the dimensions). :data:`RESHAPED` names the few such members the
report indexes in two dimensions, each with the declaration it comes from.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from drgn import (
    Object,
    Program,
    Qualifiers,
    Type,
    TypeEnumerator,
    TypeKind,
    TypeMember,
    TypeParameter,
)

from .btf import (
    CHAIN_KINDS,
    INT_BOOL,
    INT_SIGNED,
    MAX_CHAIN,
    BadBtf,
    Btf,
    BtfType,
    Kind,
)

__all__ = ["BtfTypes", "RESHAPED"]

#: (struct tag, member) -> (enumerators one of which gives the inner
#: dimension, plus one if the name is a LAST value; the dimension of the
#: source if the enum is missing).
#:
#: drivers/misc/vmw_balloon.c (v4.20 to v7.x), ``struct vmballoon_stats``:
#: ``atomic64_t page_stat[VMW_BALLOON_PAGE_STAT_NUM][VMW_BALLOON_NUM_PAGE_SIZES]``
#: (``VMW_BALLOON_NUM_PAGE_SIZES`` is ``VMW_BALLOON_LAST_SIZE + 1`` = 2) and
#: ``atomic64_t ops[VMW_BALLOON_CMD_NUM][VMW_BALLOON_OP_STAT_TYPES]`` (= 2);
#: kernel-layouts.md §1.C1.
RESHAPED: Dict[Tuple[str, str], Tuple[Tuple[Tuple[str, int], ...], int]] = {
    ("vmballoon_stats", "page_stat"): (
        (("VMW_BALLOON_NUM_PAGE_SIZES", 0), ("VMW_BALLOON_LAST_SIZE", 1)),
        2,
    ),
    ("vmballoon_stats", "ops"): ((("VMW_BALLOON_OP_STAT_TYPES", 0),), 2),
}

_QUALIFIERS = {
    Kind.CONST: Qualifiers.CONST,
    Kind.VOLATILE: Qualifiers.VOLATILE,
    Kind.RESTRICT: Qualifiers.RESTRICT,
}

# drgn kind -> BTF kinds that answer a lookup by name.
_BY_DRGN_KIND: Dict[TypeKind, Tuple[int, ...]] = {
    TypeKind.STRUCT: (Kind.STRUCT, Kind.FWD),
    TypeKind.UNION: (Kind.UNION, Kind.FWD),
    TypeKind.ENUM: (Kind.ENUM, Kind.ENUM64),
    TypeKind.TYPEDEF: (Kind.TYPEDEF,),
    TypeKind.INT: (Kind.INT,),
    TypeKind.BOOL: (Kind.INT,),
    TypeKind.FLOAT: (Kind.FLOAT,),
}

# Kinds a bit field's type may pass through on the way to its integer.
_TRANSPARENT = (Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG)

LazyType = Callable[[], Union[Type, Object]]


class BtfTypes:
    """
    Builds drgn types from vmlinux BTF and modules' split BTF.

    :param prog: the program the types belong to.
    :param vmlinux: vmlinux's BTF.
    """

    def __init__(self, prog: Program, vmlinux: Btf) -> None:
        self.prog = prog
        self.vmlinux = vmlinux
        #: Modules' split BTF by module name.
        self.modules: Dict[str, Btf] = {}
        self._cache: Dict[Tuple[int, int], Type] = {}
        self._building: List[int] = []

    def add_module(self, btf: Btf) -> None:
        """Add a module's split BTF (its base must be :attr:`vmlinux`)."""
        self.modules[btf.name] = btf

    # -- the type finder ---------------------------------------------------

    def find(
        self, prog: Program, kinds: object, name: str, filename: Optional[str]
    ) -> Optional[Type]:
        """drgn type finder: ``(prog, kinds, name, filename)``."""
        for kind in kinds:  # type: ignore[attr-defined]
            btf_kinds = _BY_DRGN_KIND.get(kind)
            if btf_kinds is None:
                continue
            found = self.lookup(kind, name, btf_kinds)
            if found is not None:
                return found
        return None

    def lookup(
        self, kind: TypeKind, name: str, btf_kinds: Sequence[int]
    ) -> Optional[Type]:
        """The type of drgn *kind* named *name*: vmlinux first, then modules.
        A complete definition wins over a forward declaration."""
        fwd: Optional[Tuple[Btf, int]] = None
        for btf in (self.vmlinux, *self.modules.values()):
            for type_id in btf.ids_by_name(name, btf_kinds):
                if type_id < btf.start_id and btf is not self.vmlinux:
                    continue  # vmlinux's, already looked at
                t = btf.type(type_id)
                if t.kind == Kind.FWD:
                    if t.kind_flag == (kind == TypeKind.UNION) and fwd is None:
                        fwd = (btf, type_id)
                    continue
                if t.kind == Kind.INT:
                    is_bool = bool(btf.int_encoding(t)[0] & INT_BOOL)
                    if is_bool != (kind == TypeKind.BOOL):
                        continue
                return self.type(btf, type_id)
        return self.type(*fwd) if fwd is not None else None

    # -- building ----------------------------------------------------------

    def type(self, btf: Btf, type_id: int) -> Type:
        """The drgn type of *type_id* in *btf* (0 is void)."""
        if type_id == 0:
            return self.prog.void_type()
        owner = btf.owner(type_id)
        key = (id(owner), type_id)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if type_id in self._building or len(self._building) >= MAX_CHAIN:
            start = self._building.index(type_id) if type_id in self._building else 0
            raise btf.loop_error(self._building[start:] + [type_id])
        self._building.append(type_id)
        try:
            result = self._build(btf, btf.type(type_id))
        finally:
            self._building.pop()
        self._cache[key] = result
        return result

    def _lazy(self, btf: Btf, type_id: int, bit_field_size: int = 0) -> LazyType:
        def build() -> Union[Type, Object]:
            t = self.type(btf, type_id)
            if bit_field_size:
                return Object(self.prog, t, bit_field_size=bit_field_size)
            return t

        return build

    def _build(self, btf: Btf, t: BtfType) -> Type:
        prog = self.prog
        kind = t.kind
        if kind == Kind.INT:
            encoding, _, bits = btf.int_encoding(t)
            if encoding & INT_BOOL:
                return prog.bool_type(t.name, t.size_or_type)
            if bits > t.size_or_type * 8 or t.size_or_type not in (1, 2, 4, 8, 16):
                raise BadBtf(
                    f"{btf.name} BTF: integer type {t.id} has size {t.size_or_type}"
                )
            return prog.int_type(t.name, t.size_or_type, bool(encoding & INT_SIGNED))
        if kind == Kind.FLOAT:
            return prog.float_type(t.name, t.size_or_type)
        if kind == Kind.PTR:
            return prog.pointer_type(self.type(btf, t.size_or_type))
        if kind in _QUALIFIERS:
            target = self.type(btf, t.size_or_type)
            return target.qualified(target.qualifiers | _QUALIFIERS[kind])
        if kind == Kind.TYPE_TAG:  # e.g. __user, __rcu: no meaning for drgn
            return self.type(btf, t.size_or_type)
        if kind == Kind.TYPEDEF:
            return prog.typedef_type(t.name, self.type(btf, t.size_or_type))
        if kind == Kind.ARRAY:
            elem, _, nelems = btf.array(t)
            return prog.array_type(self.type(btf, elem), nelems)
        if kind in (Kind.STRUCT, Kind.UNION):
            return self._compound(btf, t)
        if kind in (Kind.ENUM, Kind.ENUM64):
            return self._enum(btf, t)
        if kind == Kind.FWD:
            if t.kind_flag:
                return prog.union_type(t.name or None)
            return prog.struct_type(t.name or None)
        if kind == Kind.FUNC_PROTO:
            params = btf.params(t)
            variadic = bool(params) and params[-1].type == 0 and not params[-1].name
            if variadic:
                params = params[:-1]
            return prog.function_type(
                self.type(btf, t.size_or_type),
                [
                    TypeParameter(self._lazy(btf, p.type), p.name or None)
                    for p in params
                ],
                variadic,
            )
        if kind in (Kind.FUNC, Kind.VAR):
            return self.type(btf, t.size_or_type)
        raise BadBtf(f"{btf.name} BTF: type {t.id} of kind {kind} is not a type")

    def _compound(self, btf: Btf, t: BtfType) -> Type:
        members = []
        for m in btf.members(t):
            # Checked now, not when drgn builds the member lazily: an error
            # raised inside drgn's C code reaches Python as a bare Exception
            # on drgn 0.0.31.
            btf.resolve(m.type, CHAIN_KINDS)
            if m.bit_field_size:
                self._check_bit_field(btf, t, m.type, m.bit_field_size)
            lazy = self._lazy(btf, m.type, m.bit_field_size)
            shape = RESHAPED.get((t.name, m.name))
            if shape is not None:
                lazy = self._reshaped(btf, m.type, shape)
            members.append(TypeMember(lazy, m.name or None, m.bit_offset))
        make = self.prog.struct_type if t.kind == Kind.STRUCT else self.prog.union_type
        return make(t.name or None, t.size_or_type, members)

    @staticmethod
    def _check_bit_field(btf: Btf, t: BtfType, type_id: int, bits: int) -> None:
        # Checked here, from the records: drgn would refuse it later, inside
        # a lazy member, where the error is harder to report.
        base = btf.resolve(type_id, _TRANSPARENT)
        target = btf.type(base) if base else None
        if (
            target is None
            or target.kind not in (Kind.INT, Kind.ENUM, Kind.ENUM64)
            or bits > 8 * target.size_or_type
        ):
            raise BadBtf(
                f"{btf.name} BTF: struct {t.name or t.id} has a bit field of "
                f"{bits} bits of type {type_id}"
            )

    def _reshaped(
        self,
        btf: Btf,
        type_id: int,
        shape: Tuple[Tuple[Tuple[str, int], ...], int],
    ) -> LazyType:
        def build() -> Type:
            flat = self.type(btf, type_id)
            if flat.kind != TypeKind.ARRAY or flat.type.kind == TypeKind.ARRAY:
                return flat
            inner = shape[1]
            for name, plus in shape[0]:
                value = self.enumerator_value(name)
                if value is not None:
                    inner = value + plus
                    break
            length = flat.length or 0
            if inner <= 0 or length % inner:
                return flat
            return self.prog.array_type(
                self.prog.array_type(flat.type, inner), length // inner
            )

        return build

    def enumerator_value(self, name: str) -> Optional[int]:
        """The value of enumerator *name*, from any BTF, or ``None``."""
        for btf in (self.vmlinux, *self.modules.values()):
            found = btf.enumerator(name)
            if found is not None:
                return found[1]
        return None

    def _enum(self, btf: Btf, t: BtfType) -> Type:
        if t.vlen == 0 and t.size_or_type == 0:
            return self.prog.enum_type(t.name or None)
        signed = t.kind_flag
        enumerators = btf.enumerators(t)
        if not signed and any(e.value < 0 for e in enumerators):
            signed = True
        size = t.size_or_type
        if size not in (1, 2, 4, 8):
            raise BadBtf(f"{btf.name} BTF: enum type {t.id} has size {size}")
        names = {1: "char", 2: "short", 4: "int", 8: "long"}
        compatible = self.prog.int_type(
            ("" if signed else "unsigned ") + names[size], size, signed
        )
        return self.prog.enum_type(
            t.name or None,
            compatible,
            [
                TypeEnumerator(e.name, self._fit(e.value, size, signed))
                for e in enumerators
            ],
        )

    @staticmethod
    def _fit(value: int, size: int, signed: bool) -> int:
        bits = size * 8
        value &= (1 << bits) - 1
        if signed and value >= 1 << (bits - 1):
            value -= 1 << bits
        return value
