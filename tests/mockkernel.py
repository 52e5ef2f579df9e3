"""
Mock kernels for the eras that cannot be built here.

Each era's ``struct vmballoon`` follows ``shared/docs/kernel-layouts.md``
(the section is named in :data:`LAYOUTS`), laid out with x86_64 natural
alignment. Members the tool never reads (work items, semaphores, sysinfo) are
opaque blobs of their x86_64 size, so offsets stay realistic. A mock kernel is
a ``drgn.Program`` with:

* types from a type finder (``struct vmballoon``, ``struct page``, ...);
* objects from an object finder: ``balloon`` (only for the filename of its
  era's driver), ``vmemmap``, ``max_pfn`` and, where the era's kernel has
  them, ``VMCOREINFO`` or ``PGTY_offline``;
* memory segments: the balloon, the memory map, and the stats block.

It is not a kernel: the tests using it only check what the layout document
states (where the lists are, what a 2 MiB page counts, which kernels mark
pages offline) and how the walk reacts to corruption.
"""

import random
import struct
from typing import Dict, List, Optional, Sequence, Tuple

from drgn import (
    Architecture,
    Object,
    Platform,
    PlatformFlags,
    Program,
    TypeEnumerator,
    TypeKind,
    TypeMember,
    sizeof,
)

PAGE_STRUCT_SIZE = 64
VMEMMAP = 0xFFFFEA0000000000
BALLOON_ADDR = 0xFFFFFFFFC0A00000
STATS_ADDR = 0xFFFF888004000000
VMCOREINFO_ADDR = 0xFFFFFFFF82000000

# Member lists per era: (name, type spec). Type specs: "uint", "ulong", "int",
# "bool", "ptr", "list", "atomic64", "enum", ("blob", size), ("struct", name),
# ("array", spec, n).
_STATS_A = [
    "timer",
    "alloc",
    "alloc_fail",
    "sleep_alloc",
    "sleep_alloc_fail",
    "refused_alloc",
    "refused_free",
    "free",
    "lock",
    "lock_fail",
    "unlock",
    "unlock_fail",
    "target",
    "target_fail",
    "start",
    "start_fail",
    "guest_type",
    "guest_type_fail",
]

LAYOUTS: Dict[str, Dict[str, object]] = {
    "A0": {
        "source": "kernel-layouts.md §1.A0 (torvalds/linux v2.6.34 vmware_balloon.c)",
        "filename": "drivers/misc/vmware_balloon.c",
        "members": [
            ("pages", "list"),
            ("refused_pages", "list"),
            ("size", "uint"),
            ("target", "uint"),
            ("reset_required", "bool"),
            ("rate_alloc", "uint"),
            ("rate_free", "uint"),
            ("slow_allocation_cycles", "uint"),
            ("stats", ("struct", "vmballoon_stats")),
            ("dbg_entry", "ptr"),
            ("sysinfo", ("blob", 112)),
            ("dwork", ("blob", 88)),
        ],
        "stats": [(n, "uint") for n in _STATS_A],
    },
    "A1": {
        "source": "kernel-layouts.md §1.A1 (3.x vmw_balloon.c, 1.2.1.3-k)",
        "filename": "drivers/misc/vmw_balloon.c",
        "members": [
            ("pages", "list"),
            ("refused_pages", "list"),
            ("n_refused_pages", "uint"),
            ("size", "uint"),
            ("target", "uint"),
            ("reset_required", "bool"),
            ("rate_alloc", "uint"),
            ("rate_free", "uint"),
            ("slow_allocation_cycles", "uint"),
            ("stats", ("struct", "vmballoon_stats")),
            ("dbg_entry", "ptr"),
            ("sysinfo", ("blob", 112)),
            ("dwork", ("blob", 88)),
        ],
        "stats": [(n, "uint") for n in _STATS_A],
    },
    "B1": {
        "source": "kernel-layouts.md §1.B1 (halfline/rhel7 vmw_balloon.c, 1.3.4.0-k)",
        "filename": "drivers/misc/vmw_balloon.c",
        "members": [
            ("pages", "list"),
            ("refused_pages", "list"),
            ("n_refused_pages", "uint"),
            ("size", "uint"),
            ("target", "uint"),
            ("reset_required", "bool"),
            ("rate_alloc", "uint"),
            ("slow_allocation_cycles", "uint"),
            ("capabilities", "ulong"),
            ("batch_page", "ptr"),
            ("batch_max_pages", "uint"),
            ("page", "ptr"),
            ("ops", "ptr"),
            ("stats", ("struct", "vmballoon_stats")),
            ("dbg_entry", "ptr"),
            ("sysinfo", ("blob", 112)),
            ("dwork", ("blob", 88)),
        ],
        "stats": [(n, "uint") for n in _STATS_A],
    },
    "B2": {
        "source": "kernel-layouts.md §1.B2 (vmw_balloon.c 1.5.0.0-k, 4.15-4.18)",
        "filename": "drivers/misc/vmw_balloon.c",
        "members": [
            ("page_sizes", ("array", ("struct", "vmballoon_page_size"), 2)),
            ("supported_page_sizes", "uint"),
            ("size", "uint"),
            ("target", "uint"),
            ("reset_required", "bool"),
            ("rate_alloc", "uint"),
            ("slow_allocation_cycles", "uint"),
            ("capabilities", "ulong"),
            ("batch_page", "ptr"),
            ("batch_max_pages", "uint"),
            ("page", "ptr"),
            ("ops", "ptr"),
            ("stats", ("struct", "vmballoon_stats")),
            ("dbg_entry", "ptr"),
            ("sysinfo", ("blob", 112)),
            ("dwork", ("blob", 88)),
            ("vmci_doorbell", ("blob", 8)),
        ],
        "page_size_members": [
            ("pages", "list"),
            ("refused_pages", "list"),
            ("n_refused_pages", "uint"),
        ],
        "stats": [
            ("timer", "uint"),
            ("doorbell", "uint"),
            ("alloc", ("array", "uint", 2)),
            ("alloc_fail", ("array", "uint", 2)),
            ("sleep_alloc", "uint"),
            ("sleep_alloc_fail", "uint"),
            ("refused_alloc", ("array", "uint", 2)),
            ("refused_free", ("array", "uint", 2)),
            ("free", ("array", "uint", 2)),
            ("lock", ("array", "uint", 2)),
            ("lock_fail", ("array", "uint", 2)),
            ("unlock", ("array", "uint", 2)),
            ("unlock_fail", ("array", "uint", 2)),
            ("target", "uint"),
            ("target_fail", "uint"),
            ("start", "uint"),
            ("start_fail", "uint"),
            ("guest_type", "uint"),
            ("guest_type_fail", "uint"),
            ("doorbell_set", "uint"),
            ("doorbell_unset", "uint"),
        ],
    },
    "C1": {
        "source": "kernel-layouts.md §1.C1 (post-rewrite vmw_balloon.c, 4.20-5.2)",
        "filename": "drivers/misc/vmw_balloon.c",
        "members": [
            ("page_sizes", ("array", ("struct", "vmballoon_page_size"), 2)),
            ("max_page_size", "enum"),
            ("size", "atomic64"),
            ("target", "ulong"),
            ("reset_required", "bool"),
            ("capabilities", "ulong"),
            ("batch_page", "ptr"),
            ("batch_max_pages", "uint"),
            ("page", "ptr"),
            ("stats", "statsptr"),
            ("dbg_entry", "ptr"),
            ("dwork", ("blob", 88)),
            ("vmci_doorbell", ("blob", 8)),
            ("conf_sem", ("blob", 40)),
            ("comm_lock", "uint"),
        ],
        "page_size_members": [("pages", "list")],
    },
    "C2": {
        "source": "kernel-layouts.md §1.C2 (Debian linux-source-5.10 vmw_balloon.c)",
        "filename": "drivers/misc/vmw_balloon.c",
        "members": [
            ("max_page_size", "enum"),
            ("size", "atomic64"),
            ("target", "ulong"),
            ("reset_required", "bool"),
            ("capabilities", "ulong"),
            ("batch_page", "ptr"),
            ("batch_max_pages", "uint"),
            ("page", "ptr"),
            ("shrink_timeout", "ulong"),
            ("stats", "statsptr"),
            ("dbg_entry", "ptr"),
            ("b_dev_info", ("struct", "balloon_dev_info")),
            ("dwork", ("blob", 88)),
            ("huge_pages", "list"),
            ("vmci_doorbell", ("blob", 8)),
            ("conf_sem", ("blob", 40)),
            ("comm_lock", "uint"),
            ("shrinker", ("blob", 64)),
            ("shrinker_registered", "bool"),
        ],
        "dev_info": [
            ("isolated_pages", "ulong"),
            ("pages_lock", "uint"),
            ("pages", "list"),
            ("migratepage", "ptr"),
            ("inode", "ptr"),
        ],
    },
    "D1": {
        "source": "kernel-layouts.md §1.D1 (Debian linux-source-6.12 vmw_balloon.c)",
        "filename": "drivers/misc/vmw_balloon.c",
        "members": [
            ("max_page_size", "enum"),
            ("size", "atomic64"),
            ("target", "ulong"),
            ("reset_required", "bool"),
            ("capabilities", "ulong"),
            ("batch_page", "ptr"),
            ("batch_max_pages", "uint"),
            ("page", "ptr"),
            ("shrink_timeout", "ulong"),
            ("stats", "statsptr"),
            ("b_dev_info", ("struct", "balloon_dev_info")),
            ("dwork", ("blob", 88)),
            ("huge_pages", "list"),
            ("vmci_doorbell", ("blob", 8)),
            ("conf_sem", ("blob", 40)),
            ("comm_lock", "uint"),
            ("shrinker", "ptr"),
        ],
        "dev_info": [
            ("isolated_pages", "ulong"),
            ("pages_lock", "uint"),
            ("pages", "list"),
            ("migratepage", "ptr"),
        ],
    },
    "D2": {
        "source": "kernel-layouts.md §1.D2 (Debian linux-source-7.2 vmw_balloon.c)",
        "filename": "drivers/misc/vmw_balloon.c",
        "members": [
            ("max_page_size", "enum"),
            ("size", "atomic64"),
            ("target", "ulong"),
            ("reset_required", "bool"),
            ("capabilities", "ulong"),
            ("batch_page", "ptr"),
            ("batch_max_pages", "uint"),
            ("page", "ptr"),
            ("shrink_timeout", "ulong"),
            ("stats", "statsptr"),
            ("b_dev_info", ("struct", "balloon_dev_info")),
            ("dwork", ("blob", 88)),
            ("huge_pages", "list"),
            ("huge_pages_lock", "uint"),
            ("vmci_doorbell", ("blob", 8)),
            ("conf_sem", ("blob", 40)),
            ("comm_lock", "uint"),
            ("shrinker", "ptr"),
        ],
        "dev_info": [
            ("isolated_pages", "ulong"),
            ("pages", "list"),
            ("migratepage", "ptr"),
            ("adjust_managed_page_count", "bool"),
        ],
    },
}

#: How each era's kernel marks ballooned pages offline (kernel-layouts.md
#: §1.C2 "PG_offline", §1.D1 "PageOffline encoding"): None before v5.0.
OFFLINE_MARKING = {
    "A0": None,
    "A1": None,
    "B1": None,
    "B2": None,
    # 4.20 has no PG_offline; it came with v5.0 (same series as vmw marking).
    "C1": None,
    "C2": ("vmcoreinfo", -257),  # ~PG_offline, PG_offline = 0x100
    "D1": ("vmcoreinfo", 0xF1 << 24),  # PGTY_offline << 24 (v6.10+)
    "D2": ("enum", 0xF1),  # PGTY_offline in the DWARF
}


class MockKernel:
    """A Program with one era's balloon and a memory map."""

    def __init__(
        self,
        era: str,
        *,
        max_pfn: int = 1 << 16,
        pages_4k: int = 300,
        pages_2m: int = 3,
        isolated: int = 0,
        size: Optional[int] = None,
        target: Optional[int] = None,
        with_stats: bool = False,
        seed: int = 1,
        initialised: bool = True,
    ) -> None:
        self.era = era
        self.layout = LAYOUTS[era]
        self.max_pfn = max_pfn
        self.prog = Program(
            Platform(
                Architecture.X86_64,
                PlatformFlags.IS_64_BIT | PlatformFlags.IS_LITTLE_ENDIAN,
            )
        )
        self._build_types()
        rng = random.Random(seed)
        has_2m = any(
            n == "huge_pages" or n == "page_sizes" for n, _ in self.layout["members"]
        )  # type: ignore[union-attr]
        if not has_2m:
            pages_2m = 0
        self.pfns_2m = sorted(
            rng.sample(range(1, max_pfn // 512 // 2), pages_2m), reverse=True
        )
        self.pfns_2m = [p * 512 for p in self.pfns_2m]
        low = max_pfn // 2
        self.pfns_4k = rng.sample(range(low, max_pfn), pages_4k)
        if not any(n == "b_dev_info" for n, _ in self.layout["members"]):  # type: ignore[union-attr]
            isolated = 0  # isolated_pages came with compaction (v5.3)
        self.isolated = isolated
        frames = pages_4k + isolated + 512 * pages_2m
        self.size = frames if size is None else size
        self.target = self.size if target is None else target
        self.memmap = bytearray(max_pfn * PAGE_STRUCT_SIZE)
        self.balloon = bytearray(self.types["struct vmballoon"].size)
        self.with_stats = with_stats
        self.stats = bytearray(8 * (5 + 10 + 22))
        # Every page starts "free-ish": page_type/_mapcount = -1.
        for pfn in range(max_pfn):
            struct.pack_into("<I", self.memmap, pfn * 64 + 48, 0xFFFFFFFF)
        if initialised:
            self._populate()
        self._register()

    # ----------------------------------------------------------------- types
    def _build_types(self) -> None:
        prog = self.prog
        self.types: Dict[str, object] = {}
        uint = prog.int_type("unsigned int", 4, False)
        ulong = prog.int_type("unsigned long", 8, False)
        long_ = prog.int_type("long", 8, True)
        int_ = prog.int_type("int", 4, True)
        bool_ = prog.bool_type("_Bool", 1)
        char = prog.int_type("char", 1, True)
        void_p = prog.pointer_type(prog.void_type())

        # struct list_head { struct list_head *next, *prev; }: the pointers
        # refer to the complete type itself (lazily), as in the kernel's DWARF.
        def lp():
            return prog.pointer_type(list_head)

        list_head = prog.struct_type(
            "list_head", 16, (TypeMember(lp, "next", 0), TypeMember(lp, "prev", 64))
        )
        atomic64 = prog.typedef_type(
            "atomic64_t", prog.struct_type(None, 8, (TypeMember(long_, "counter", 0),))
        )
        atomic = prog.typedef_type(
            "atomic_t", prog.struct_type(None, 4, (TypeMember(int_, "counter", 0),))
        )
        page_members = [
            TypeMember(ulong, "flags", 0),
            TypeMember(list_head, "lru", 64),
            TypeMember(void_p, "mapping", 192),
            TypeMember(ulong, "index", 256),
            TypeMember(ulong, "private", 320),
        ]
        if OFFLINE_MARKING[self.era] is None:
            page_members.append(TypeMember(atomic, "_mapcount", 384))
        else:
            page_members.append(TypeMember(uint, "page_type", 384))
        page_members.append(TypeMember(atomic, "_refcount", 416))
        page_members.append(TypeMember(ulong, "memcg_data", 448))
        page = prog.struct_type("page", PAGE_STRUCT_SIZE, page_members)
        enum_size = prog.enum_type(
            "vmballoon_page_size_type",
            uint,
            (
                TypeEnumerator("VMW_BALLOON_4K_PAGE", 0),
                TypeEnumerator("VMW_BALLOON_2M_PAGE", 1),
            ),
        )
        scalars = {
            "uint": uint,
            "ulong": ulong,
            "int": int_,
            "bool": bool_,
            "ptr": void_p,
            "list": list_head,
            "atomic64": atomic64,
            "enum": enum_size,
        }
        self.types.update(
            {
                "struct page": page,
                "struct list_head": list_head,
                "atomic64_t": atomic64,
                "unsigned long": ulong,
                "unsigned int": uint,
                "char": char,
                "enum vmballoon_page_size_type": enum_size,
            }
        )
        if OFFLINE_MARKING[self.era] and OFFLINE_MARKING[self.era][0] == "enum":
            self.types["enum pagetype"] = prog.enum_type(
                "pagetype",
                uint,
                (
                    TypeEnumerator("PGTY_buddy", 0xF0),
                    TypeEnumerator("PGTY_offline", 0xF1),
                ),
            )

        def build(name: str, members: Sequence[Tuple[str, object]]):
            offset = 0
            align_max = 1
            out = []
            for mname, spec in members:
                t = resolve(spec)
                align = alignment(t)
                offset = (offset + align - 1) // align * align
                out.append(TypeMember(t, mname, offset * 8))
                offset += sizeof(t)
                align_max = max(align_max, align)
            size = (offset + align_max - 1) // align_max * align_max
            return prog.struct_type(name, size, out)

        def alignment(t) -> int:
            if t.kind == TypeKind.ARRAY:
                return alignment(t.type)
            if t.kind in (TypeKind.TYPEDEF, TypeKind.ENUM):
                return alignment(t.type)
            if t.kind == TypeKind.STRUCT:
                return max([alignment(m.type) for m in t.members] or [1])
            return t.size

        def resolve(spec):
            if isinstance(spec, str):
                if spec == "statsptr":
                    return prog.pointer_type(self.types["struct vmballoon_stats"])
                return scalars[spec]
            kind = spec[0]
            if kind == "blob":
                return prog.array_type(ulong, spec[1] // 8)
            if kind == "struct":
                return self.types["struct " + spec[1]]
            if kind == "array":
                return prog.array_type(resolve(spec[1]), spec[2])
            raise ValueError(spec)

        layout = self.layout
        if "page_size_members" in layout:
            self.types["struct vmballoon_page_size"] = build(
                "vmballoon_page_size", layout["page_size_members"]
            )  # type: ignore[arg-type]
        if "dev_info" in layout:
            self.types["struct balloon_dev_info"] = build(
                "balloon_dev_info", layout["dev_info"]
            )  # type: ignore[arg-type]
        if "stats" in layout:
            self.types["struct vmballoon_stats"] = build(
                "vmballoon_stats", layout["stats"]
            )  # type: ignore[arg-type]
        else:
            a64 = atomic64
            self.types["struct vmballoon_stats"] = prog.struct_type(
                "vmballoon_stats",
                8 * (5 + 10 + 22),
                (
                    TypeMember(prog.array_type(a64, 5), "general_stat", 0),
                    TypeMember(
                        prog.array_type(prog.array_type(a64, 2), 5), "page_stat", 5 * 64
                    ),
                    TypeMember(
                        prog.array_type(prog.array_type(a64, 2), 11), "ops", 15 * 64
                    ),
                ),
            )
        self.types["struct vmballoon"] = build("vmballoon", layout["members"])  # type: ignore[arg-type]

    def offset(self, path: str) -> int:
        """Byte offset of a member path such as ``b_dev_info.pages``."""
        t = self.types["struct vmballoon"]
        off = 0
        for part in path.split("."):
            index = None
            if "[" in part:
                part, idx = part[:-1].split("[")
                index = int(idx)
            for m in t.members:
                if m.name == part:
                    off += m.bit_offset // 8
                    t = m.type
                    break
            else:
                raise KeyError(path)
            while t.kind == TypeKind.TYPEDEF:
                t = t.type
            if index is not None:
                off += index * t.type.size
                t = t.type
        return off

    # ---------------------------------------------------------------- memory
    def page_addr(self, pfn: int) -> int:
        return VMEMMAP + pfn * PAGE_STRUCT_SIZE

    def lru_addr(self, pfn: int) -> int:
        return self.page_addr(pfn) + 8

    def list_paths(self) -> Tuple[str, Optional[str]]:
        names = [n for n, _ in self.layout["members"]]  # type: ignore[union-attr]
        if "b_dev_info" in names:
            return "b_dev_info.pages", "huge_pages"
        if "page_sizes" in names:
            return "page_sizes[0].pages", "page_sizes[1].pages"
        return "pages", None

    def _link(self, head_off: int, pfns: Sequence[int]) -> None:
        head = BALLOON_ADDR + head_off
        nodes = [head] + [self.lru_addr(p) for p in pfns]
        for i, node in enumerate(nodes):
            nxt = nodes[(i + 1) % len(nodes)]
            prv = nodes[i - 1]
            self.write_node(node, nxt, prv)

    def write_node(self, node: int, nxt: int, prv: int) -> None:
        if node >= VMEMMAP and node < VMEMMAP + len(self.memmap):
            struct.pack_into("<QQ", self.memmap, node - VMEMMAP, nxt, prv)
        else:
            struct.pack_into("<QQ", self.balloon, node - BALLOON_ADDR, nxt, prv)

    def set_page_type(self, pfn: int, value: int) -> None:
        struct.pack_into("<I", self.memmap, pfn * 64 + 48, value & 0xFFFFFFFF)

    def set_private(self, pfn: int, value: int) -> None:
        struct.pack_into("<Q", self.memmap, pfn * 64 + 40, value)

    def offline_value(self) -> Optional[int]:
        marking = OFFLINE_MARKING[self.era]
        if marking is None:
            return None
        if marking[0] == "enum" or marking[1] > 0:
            value = marking[1]
            return value if value > 0xFF else value << 24
        return marking[1] & 0xFFFFFFFF  # ~PG_offline

    def _populate(self) -> None:
        b = self.balloon
        l4, l2 = self.list_paths()
        self._link(self.offset(l4), self.pfns_4k)
        if l2 is not None:
            self._link(self.offset(l2), self.pfns_2m)
        if "page_sizes" in l4:
            self._link(
                self.offset("page_sizes[0].refused_pages"), []
            ) if self.era == "B2" else None
        elif l4 == "pages":
            self._link(self.offset("refused_pages"), [])
        offline = self.offline_value()
        dev_info = None
        if l4.startswith("b_dev_info"):
            dev_info = BALLOON_ADDR + self.offset("b_dev_info")
            struct.pack_into(
                "<Q", b, self.offset("b_dev_info.isolated_pages"), self.isolated
            )
        for pfn in self.pfns_4k:
            if offline is not None:
                self.set_page_type(pfn, offline)
            if dev_info is not None:
                self.set_private(pfn, dev_info)
        for pfn in self.pfns_2m:
            for k in range(512):
                if offline is not None:
                    self.set_page_type(pfn + k, offline)
        t = self.types["struct vmballoon"]
        size_t = [m for m in t.members if m.name == "size"][0].type
        fmt = "<q" if sizeof(size_t) == 8 else "<I"
        struct.pack_into(fmt, b, self.offset("size"), self.size)
        target_t = [m for m in t.members if m.name == "target"][0].type
        struct.pack_into(
            "<Q" if sizeof(target_t) == 8 else "<I",
            b,
            self.offset("target"),
            self.target,
        )
        names = [m.name for m in t.members]
        if "capabilities" in names:
            struct.pack_into("<Q", b, self.offset("capabilities"), 0x3E)
        if "max_page_size" in names:
            struct.pack_into("<I", b, self.offset("max_page_size"), 1)
        if (
            self.with_stats
            and any(n == "stats" for n in names)
            and LAYOUTS[self.era].get("stats") is None
        ):
            struct.pack_into("<Q", b, self.offset("stats"), STATS_ADDR)
            for i in range(5 + 10 + 22):
                struct.pack_into("<Q", self.stats, i * 8, 1000 + i)

    # -------------------------------------------------------------- finders
    def _register(self) -> None:
        prog = self.prog
        types = self.types

        def find_type(prog_, kinds, name, filename):
            for key in (name, "struct " + name, "enum " + name):
                t = types.get(key)
                if t is not None and t.kind in kinds:
                    return t
            return None

        vmcoreinfo = b""
        marking = OFFLINE_MARKING[self.era]
        if marking and marking[0] == "vmcoreinfo":
            vmcoreinfo = (
                b"OSRELEASE=mock\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=%d\n" % marking[1]
            )
        else:
            vmcoreinfo = b"OSRELEASE=mock\n"
        vmcoreinfo += b"\0"
        self.vmcoreinfo = vmcoreinfo
        balloon_file = self.layout["filename"]

        def find_object(prog_, name, flags, filename):
            if name == "balloon":
                if filename is not None and not str(balloon_file).endswith(filename):
                    return None
                return Object(prog_, types["struct vmballoon"], address=BALLOON_ADDR)
            if name == "vmemmap":
                return Object(prog_, prog_.pointer_type(types["struct page"]), VMEMMAP)
            if name == "max_pfn":
                return Object(prog_, types["unsigned long"], self.max_pfn)
            if name == "VMCOREINFO":
                return Object(
                    prog_,
                    prog_.array_type(types["char"], len(vmcoreinfo)),
                    address=VMCOREINFO_ADDR,
                )
            if name == "PGTY_offline" and "enum pagetype" in types:
                return Object(prog_, types["enum pagetype"], 0xF1)
            return None

        try:
            prog.register_type_finder("mock", find_type, enable_index=0)
            prog.register_object_finder("mock", find_object, enable_index=0)
        except AttributeError:  # drgn < 0.0.27
            prog.add_type_finder(
                lambda kind, name, filename: find_type(prog, {kind}, name, filename)
            )
            prog.add_object_finder(find_object)

        def reader(buf):
            def read(address, count, offset, physical):
                return bytes(buf[offset : offset + count])

            return read

        self.segments: List[Tuple[int, bytearray]] = [
            (BALLOON_ADDR, self.balloon),
            (VMEMMAP, self.memmap),
            (STATS_ADDR, self.stats),
        ]
        prog.add_memory_segment(BALLOON_ADDR, len(self.balloon), reader(self.balloon))
        prog.add_memory_segment(STATS_ADDR, len(self.stats), reader(self.stats))
        prog.add_memory_segment(
            VMCOREINFO_ADDR, len(vmcoreinfo), reader(bytearray(vmcoreinfo))
        )
        if not hasattr(self, "missing"):
            self.missing: List[Tuple[int, int]] = []
        self._add_memmap()

    def _add_memmap(self) -> None:
        # The memory map as segments around the ranges missing from the
        # "dump", so reads there fault the way drgn faults on a real dump.
        memmap = self.memmap
        start = VMEMMAP
        end = VMEMMAP + len(memmap)
        holes = sorted(self.missing)
        pieces = []
        cur = start
        for lo, hi in holes:
            if lo > cur:
                pieces.append((cur, lo))
            cur = max(cur, hi)
        if cur < end:
            pieces.append((cur, end))
        for lo, hi in pieces:

            def read(address, count, offset, physical, lo=lo):
                base = lo - VMEMMAP + offset
                return bytes(memmap[base : base + count])

            self.prog.add_memory_segment(lo, hi - lo, read)

    def drop_pages(self, first_pfn: int, count: int = 1) -> None:
        """Make struct pages missing from the "dump" (reads fault)."""
        start = self.page_addr(first_pfn)
        self.missing.append((start, start + count * PAGE_STRUCT_SIZE))
        # Segments cannot be removed from a Program: build a new one.
        self.prog = Program(
            Platform(
                Architecture.X86_64,
                PlatformFlags.IS_64_BIT | PlatformFlags.IS_LITTLE_ENDIAN,
            )
        )
        self._build_types()
        self._register()
