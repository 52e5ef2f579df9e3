"""
The out-of-tree vmmemctl.ko (RHEL 5 era) on mock memory laid out by the
offsets of shared/docs/kernel-layouts.md §4 (open-vm-tools' Balloon and
BalloonChunk, x86_64): the reader keeps the layout whose chunks add up to
nPages.
"""

import struct

import pytest
from drgn import Architecture, Platform, PlatformFlags, Program

from drgn_balloon.pages import PageGeometry
from drgn_balloon.vmmemctl import VARIANTS, read_vmmemctl

VMEMMAP = 0xFFFFEA0000000000
BALLOON = 0xFFFFFFFFA0002000
CHUNKS = 0xFFFF888010000000
GEOMETRY = PageGeometry(VMEMMAP, 64, 1 << 18, 8, 40, 48, None)


def program(segments):
    prog = Program(
        Platform(
            Architecture.X86_64,
            PlatformFlags.IS_64_BIT | PlatformFlags.IS_LITTLE_ENDIAN,
        )
    )
    for address, data in segments:
        data = bytes(data)
        prog.add_memory_segment(
            address, len(data), lambda a, c, o, p, d=data: d[o : o + c]
        )
    return prog


def build(variant, per_list, n_pages=None, target=7777, reset=0, bad_entry=False):
    """globalBalloon and its chunks for one variant; per_list = pages per list."""
    v = {x.name: x for x in VARIANTS}[variant]
    balloon = bytearray(400)
    segments = [(BALLOON, balloon)]
    pfn = 1000
    chunk_addr = CHUNKS
    for list_index, count in enumerate(per_list):
        head = BALLOON + v.heads[list_index]
        chunks = []
        while count > 0:
            n = min(count, 1000)
            chunk = bytearray(8032)
            for i in range(n):
                struct.pack_into("<Q", chunk, 8 * i, VMEMMAP + 64 * pfn)
                pfn += 512 if list_index else 1
            if bad_entry and not chunks and list_index == 0:
                struct.pack_into("<Q", chunk, 0, 0xDEADBEEF)
            struct.pack_into("<I", chunk, v.chunk_count, n)
            chunks.append((chunk_addr, chunk))
            chunk_addr += 0x4000
            count -= n
        if v.list_kind == "null":
            struct.pack_into(
                "<Q", balloon, v.heads[list_index], chunks[0][0] if chunks else 0
            )
            for i, (_addr, chunk) in enumerate(chunks):
                nxt = chunks[i + 1][0] if i + 1 < len(chunks) else 0
                struct.pack_into("<Q", chunk, v.link, nxt)
        else:
            nodes = [head] + [addr + v.link for addr, _ in chunks]
            for i, node in enumerate(nodes):
                prev, nxt = nodes[i - 1], nodes[(i + 1) % len(nodes)]
                if node == head:
                    struct.pack_into("<QQ", balloon, v.heads[list_index], prev, nxt)
                else:
                    chunk = dict(chunks)[node - v.link]
                    struct.pack_into("<QQ", chunk, v.link, prev, nxt)
        segments += chunks
    frames = per_list[0] + 512 * sum(per_list[1:])
    fmt = "<i" if v.counter_size == 4 else "<q"
    struct.pack_into(fmt, balloon, v.n_pages, frames if n_pages is None else n_pages)
    struct.pack_into(fmt, balloon, v.target, target)
    struct.pack_into("<I", balloon, v.reset, reset)
    return program(segments)


@pytest.mark.parametrize(
    "variant,per_list",
    [
        ("vmmemctl-a", [2500]),
        ("vmmemctl-b", [2500]),
        ("vmmemctl-c", [2500, 3]),
        ("vmmemctl-a", [0]),
        ("vmmemctl-c", [999, 0]),
    ],
)
def test_layout_found_by_its_chunks(variant, per_list):
    prog = build(variant, per_list)
    walk, rejected = read_vmmemctl(prog, GEOMETRY, BALLOON)
    assert walk is not None, rejected
    frames = per_list[0] + 512 * sum(per_list[1:])
    assert walk.n_pages == frames == walk.frames
    assert walk.target == 7777
    assert walk.pages[: len(per_list)] == tuple(per_list)
    if sum(per_list):
        assert walk.variant.name == variant


@pytest.mark.parametrize("variant", ["vmmemctl-a", "vmmemctl-b", "vmmemctl-c"])
def test_pages_that_do_not_add_up_fit_no_layout(variant):
    prog = build(variant, [1500] + ([1] if variant.endswith("c") else []), n_pages=42)
    walk, rejected = read_vmmemctl(prog, GEOMETRY, BALLOON)
    assert walk is None
    assert len(rejected) == 3


def test_entry_that_is_not_a_struct_page_is_counted():
    prog = build("vmmemctl-b", [1200], bad_entry=True)
    walk, rejected = read_vmmemctl(prog, GEOMETRY, BALLOON)
    assert walk.variant.name == "vmmemctl-b"
    assert walk.bad_entries == 1


MODULES = 0xFFFFFFFF82100000
MODULE = 0xFFFFFFFFA0000000


def vmmemctl_kernel(variant, per_list):
    """A mock kernel where vmmemctl.ko (no debug info) is the only balloon:
    the module list names it and globalBalloon is in its symbols."""
    from drgn import Object, Symbol, SymbolBinding, SymbolKind, TypeMember

    prog = build(variant, per_list)
    u64 = prog.int_type("unsigned long", 8, False)
    char = prog.int_type("char", 1, True)
    # The members point back to the struct: lazily built types.
    list_head = prog.struct_type(
        "list_head",
        16,
        (
            TypeMember(lambda: prog.pointer_type(list_head), "next", 0),
            TypeMember(lambda: prog.pointer_type(list_head), "prev", 64),
        ),
    )
    module = prog.struct_type(
        "module",
        88,
        (
            TypeMember(u64, "state", 0),
            TypeMember(list_head, "list", 64),
            TypeMember(prog.array_type(char, 56), "name", 192),
            TypeMember(prog.pointer_type(char), "version", 640),
            TypeMember(prog.pointer_type(char), "srcversion", 640 + 64),
        ),
    )
    page = prog.struct_type(
        "page",
        64,
        (
            TypeMember(u64, "flags", 0),
            TypeMember(list_head, "lru", 64),
            TypeMember(u64, "private", 320),
            TypeMember(prog.int_type("unsigned int", 4, False), "page_type", 384),
        ),
    )
    types = {
        "struct list_head": list_head,
        "struct module": module,
        "struct page": page,
    }

    def find_type(prog_, kinds, name, filename):
        return types.get(name if name.startswith("struct ") else "struct " + name)

    def find_object(prog_, name, flags, filename):
        if name == "modules":
            return Object(prog_, list_head, address=MODULES)
        if name == "vmemmap":
            return Object(prog_, prog_.pointer_type(page), VMEMMAP)
        if name == "max_pfn":
            return Object(prog_, u64, GEOMETRY.max_pfn)
        return None

    def find_symbol(prog_, name, address, one):
        if name == "globalBalloon":
            return [
                Symbol(
                    "globalBalloon",
                    BALLOON,
                    400,
                    SymbolBinding.LOCAL,
                    SymbolKind.OBJECT,
                )
            ]
        return []

    prog.register_type_finder("mock", find_type, enable_index=0)
    prog.register_object_finder("mock", find_object, enable_index=0)
    prog.register_symbol_finder("mock", find_symbol, enable_index=0)
    heads = bytearray(16)
    struct.pack_into("<QQ", heads, 0, MODULE + 8, MODULE + 8)
    mod = bytearray(104)
    struct.pack_into("<QQ", mod, 8, MODULES, MODULES)
    mod[24 : 24 + 9] = b"vmmemctl\0"
    for address, data in ((MODULES, heads), (MODULE, mod)):
        data = bytes(data)
        prog.add_memory_segment(
            address, len(data), lambda a, c, o, p, d=data: d[o : o + c]
        )
    return prog


@pytest.mark.skipif(
    not hasattr(Program, "register_symbol_finder"),
    reason="drgn < 0.0.27 cannot register a symbol finder",
)
@pytest.mark.parametrize(
    "variant,per_list",
    [("vmmemctl-a", [1500]), ("vmmemctl-b", [2100]), ("vmmemctl-c", [1200, 2])],
)
def test_found_through_the_module_list_and_verified(variant, per_list):
    from drgn_balloon.balloon import balloon_state
    from drgn_balloon.verify import verify_balloon

    prog = vmmemctl_kernel(variant, per_list)
    state = balloon_state(prog)
    assert state.driver == "vmmemctl" and state.module.name == "vmmemctl"
    assert state.era.name == variant
    assert state.size_frames == per_list[0] + 512 * sum(per_list[1:])
    assert state.target_frames == 7777
    v = verify_balloon(prog, state)
    assert v.verified
    assert v.pages("4k") == per_list[0]
    assert v.pages("2m") == sum(per_list[1:])
