"""
Mock kernels for the balloon drivers that cannot run here: hv_balloon, the Xen
balloon and the pseries CMM (ppc64, big-endian, 64 KiB pages).

Each builds a ``drgn.Program`` with the driver's structures laid out with
natural alignment from its source (cited per layout below), opaque blobs of
their x86_64/ppc64 size for members the readers never read, a memory map of
64-byte ``struct page`` (flags, lru, mapping, index, private, page_type) and
the driver's globals. Offline marks follow the kernel era named by
``offline``: ``"mask"`` (v5.0-v6.9, VMCOREINFO PAGE_OFFLINE_MAPCOUNT_VALUE =
~PG_offline, PG_offline = 0x100) or ``"pgty"`` (v6.10+, PGTY_offline = 0xf1
in the page_type's top byte).
"""

import struct
from typing import Dict, List, Optional, Sequence, Tuple

from drgn import (
    Architecture,
    Object,
    Platform,
    PlatformFlags,
    Program,
    Type,
    TypeEnumerator,
    TypeKind,
    TypeMember,
    sizeof,
)

VMEMMAP = 0xFFFFEA0000000000
GLOBALS = 0xFFFFFFFFC0A00000
HEAP = 0xFFFF888004000000
VMCOREINFO_ADDR = 0xFFFFFFFF82000000
PAGE_STRUCT = 64
LRU, PRIVATE, PAGE_TYPE = 8, 40, 48

# ---------------------------------------------------------------- layouts
# drivers/xen/balloon.c + include/xen/balloon.h (v5.10 .. v7.2: the same
# ten unsigned longs; target_unpopulated since v5.9).
XEN_BALLOON_STATS = [
    ("current_pages", "ulong"),
    ("target_pages", "ulong"),
    ("target_unpopulated", "ulong"),
    ("balloon_low", "ulong"),
    ("balloon_high", "ulong"),
    ("total_pages", "ulong"),
    ("schedule_delay", "ulong"),
    ("max_schedule_delay", "ulong"),
    ("retry_count", "ulong"),
    ("max_retry_count", "ulong"),
]

# drivers/hv/hv_balloon.c struct hv_dynmem_device: v5.10 ends at version;
# v6.1 (and v6.12, v7.2) add pr_dev_info and max_dynamic_page_count.
# Blob sizes are x86_64's: struct completion 32, balloon_state 40 (u32 +
# work_struct 32), hot_add_wrk 48 (2 x u64 ranges + work_struct), spinlock 4,
# page_reporting_dev_info 104 (checked against Debian 6.1.0-57 DWARF).
HV_DM_5_10 = [
    ("dev", "ptr"),
    ("state", "enum_dm"),
    ("host_event", ("blob", 32)),
    ("config_event", ("blob", 32)),
    ("num_pages_ballooned", "uint"),
    ("num_pages_onlined", "uint"),
    ("num_pages_added", "uint"),
    ("balloon_wrk", ("blob", 40)),
    ("ha_wrk", ("blob", 48)),
    ("host_specified_ha_region", "bool"),
    ("ol_waitevent", ("blob", 32)),
    ("thread", "ptr"),
    ("ha_lock", ("blob4", 4)),
    ("ha_region_list", "list"),
    ("next_version", "uint"),
    ("version", "uint"),
]
HV_DM_6_1 = HV_DM_5_10 + [
    ("pr_dev_info", ("blob", 104)),
    ("max_dynamic_page_count", "ulong"),
]
# v7.2: page_reporting_dev_info grew to 112 bytes (Debian 7.2.13 DWARF).
HV_DM_7 = HV_DM_5_10 + [
    ("pr_dev_info", ("blob", 112)),
    ("max_dynamic_page_count", "ulong"),
]
HV_HOTADD_STATE = [
    ("list", "list"),
    ("start_pfn", "ulong"),
    ("covered_start_pfn", "ulong"),
    ("covered_end_pfn", "ulong"),
    ("ha_end_pfn", "ulong"),
    ("end_pfn", "ulong"),
    ("gap_list", "list"),
]
HV_HOTADD_GAP = [("list", "list"), ("start_pfn", "ulong"), ("end_pfn", "ulong")]

# include/linux/balloon_compaction.h v5.10/v6.1 struct balloon_dev_info
# (v5.10 also has struct inode *inode, dropped in v5.19; not read).
BALLOON_DEV_INFO = [
    ("isolated_pages", "ulong"),
    ("pages_lock", ("blob4", 4)),
    ("pages", "list"),
    ("migratepage", "ptr"),
]
# include/linux/balloon.h v7.2 (mm/balloon.c rework): the lock became the
# global balloon_pages_lock; adjust_managed_page_count says whether
# mm/balloon.c adjusts managed pages (cmm_init() sets it, cmm.c 7.2:543).
BALLOON_DEV_INFO_7 = [
    ("isolated_pages", "ulong"),
    ("pages", "list"),
    ("migratepage", "ptr"),
    ("adjust_managed_page_count", "bool"),
]


class MockProgram:
    """A Program with a memory map, typed globals and a heap."""

    def __init__(
        self,
        *,
        arch: str = "x86_64",
        max_pfn: int = 4096,
        page_size: int = 4096,
        offline: Optional[str] = "pgty",
    ) -> None:
        self.little = arch == "x86_64"
        self.order = "<" if self.little else ">"
        flags = PlatformFlags.IS_64_BIT
        if self.little:
            flags |= PlatformFlags.IS_LITTLE_ENDIAN
        self.prog = Program(
            Platform(Architecture.X86_64 if self.little else Architecture.PPC64, flags)
        )
        self.max_pfn = max_pfn
        self.page_size = page_size
        self.offline = offline
        self.memmap = bytearray(max_pfn * PAGE_STRUCT)
        for pfn in range(max_pfn):  # page_type -1: no type
            self.pack("I", self.memmap, pfn * PAGE_STRUCT + PAGE_TYPE, 0xFFFFFFFF)
        self.globals = bytearray(1 << 16)
        self.global_top = 0
        self.heap = bytearray(1 << 16)
        self.heap_top = 0
        self.types: Dict[str, Type] = {}
        self.objects: Dict[str, Tuple[Type, int]] = {}
        #: Constants by name: (type, value).
        self.enumerators: Dict[str, Tuple[Type, int]] = {}
        self._base_types()

    # ------------------------------------------------------------ helpers
    def pack(self, fmt: str, buf: bytearray, off: int, *values: int) -> None:
        struct.pack_into(self.order + fmt, buf, off, *values)

    def _buf(self, address: int) -> Tuple[bytearray, int]:
        for base, buf in (
            (VMEMMAP, self.memmap),
            (GLOBALS, self.globals),
            (HEAP, self.heap),
        ):
            if base <= address < base + len(buf):
                return buf, address - base
        raise ValueError(f"{address:#x} is not mock memory")

    def write(self, fmt: str, address: int, *values: int) -> None:
        buf, off = self._buf(address)
        self.pack(fmt, buf, off, *values)

    def page(self, pfn: int) -> int:
        return VMEMMAP + pfn * PAGE_STRUCT

    def offline_value(self) -> int:
        return 0xF1000000 if self.offline == "pgty" else 0xFFFFFEFF  # ~0x100

    def mark_offline(self, pfn: int) -> None:
        self.write("I", self.page(pfn) + PAGE_TYPE, self.offline_value())

    def link(self, head: int, pfns: Sequence[int], private: int = 0) -> None:
        """A circular list through each page's lru; marks pages offline."""
        nodes = [head] + [self.page(p) + LRU for p in pfns]
        for i, node in enumerate(nodes):
            self.write("QQ", node, nodes[(i + 1) % len(nodes)], nodes[i - 1])
        for p in pfns:
            if self.offline:
                self.mark_offline(p)
            if private:
                self.write("Q", self.page(p) + PRIVATE, private)

    def link_entries(self, head: int, entries: Sequence[int]) -> None:
        nodes = [head] + list(entries)
        for i, node in enumerate(nodes):
            self.write("QQ", node, nodes[(i + 1) % len(nodes)], nodes[i - 1])

    # -------------------------------------------------------------- types
    def _base_types(self) -> None:
        prog = self.prog
        t = self.types
        t["uint"] = prog.int_type("unsigned int", 4, False)
        t["ulong"] = prog.int_type("unsigned long", 8, False)
        t["long"] = prog.int_type("long", 8, True)
        t["int"] = prog.int_type("int", 4, True)
        t["bool"] = prog.bool_type("_Bool", 1)
        t["char"] = prog.int_type("char", 1, True)
        t["ptr"] = prog.pointer_type(prog.void_type())
        lh = prog.struct_type("list_head", 16, ())
        lp = prog.pointer_type(lh)
        t["list"] = prog.struct_type(
            "list_head", 16, (TypeMember(lp, "next", 0), TypeMember(lp, "prev", 64))
        )
        t["atomic_long"] = prog.typedef_type(
            "atomic_long_t",
            prog.struct_type(None, 8, (TypeMember(t["long"], "counter", 0),)),
        )
        t["enum_dm"] = prog.enum_type(
            "hv_dm_state",
            t["uint"],
            tuple(
                TypeEnumerator(n, i)
                for i, n in enumerate(
                    (
                        "DM_INITIALIZING",
                        "DM_INITIALIZED",
                        "DM_BALLOON_UP",
                        "DM_BALLOON_DOWN",
                        "DM_HOT_ADD",
                        "DM_INIT_ERROR",
                    )
                )
            ),
        )
        page = prog.struct_type(
            "page",
            PAGE_STRUCT,
            (
                TypeMember(t["ulong"], "flags", 0),
                TypeMember(t["list"], "lru", LRU * 8),
                TypeMember(t["ptr"], "mapping", 24 * 8),
                TypeMember(t["ulong"], "index", 32 * 8),
                TypeMember(t["ulong"], "private", PRIVATE * 8),
                TypeMember(t["uint"], "page_type", PAGE_TYPE * 8),
                TypeMember(t["int"], "_refcount", 52 * 8),
                TypeMember(t["ulong"], "memcg_data", 56 * 8),
            ),
        )
        t["struct page"] = page
        if self.offline == "pgty":
            t["enum pagetype"] = prog.enum_type(
                "pagetype",
                t["uint"],
                (
                    TypeEnumerator("PGTY_buddy", 0xF0),
                    TypeEnumerator("PGTY_offline", 0xF1),
                ),
            )

    def struct(self, name: str, members: Sequence[Tuple[str, object]]) -> Type:
        out = []
        offset = 0
        align_max = 1
        for mname, spec in members:
            typ = self._resolve(spec)
            align = self._align(typ)
            offset = (offset + align - 1) // align * align
            out.append(TypeMember(typ, mname, offset * 8))
            offset += sizeof(typ)
            align_max = max(align_max, align)
        size = (offset + align_max - 1) // align_max * align_max
        typ = self.prog.struct_type(name, size, out)
        self.types["struct " + name] = typ
        return typ

    def _resolve(self, spec: object) -> Type:
        if isinstance(spec, str):
            return self.types[spec]
        assert isinstance(spec, tuple)
        if spec[0] == "blob":
            return self.prog.array_type(self.types["ulong"], spec[1] // 8)
        if spec[0] == "blob4":
            return self.prog.array_type(self.types["uint"], spec[1] // 4)
        raise ValueError(spec)

    def _align(self, typ: Type) -> int:
        while typ.kind in (TypeKind.TYPEDEF, TypeKind.ENUM, TypeKind.ARRAY):
            typ = typ.type
        if typ.kind == TypeKind.STRUCT:
            return max([self._align(m.type) for m in typ.members] or [1])
        return typ.size

    def offset(self, typ: Type, path: str) -> int:
        off = 0
        for part in path.split("."):
            for m in typ.members:
                if m.name == part:
                    off += m.bit_offset // 8
                    typ = m.type
                    break
            else:
                raise KeyError(path)
            while typ.kind == TypeKind.TYPEDEF:
                typ = typ.type
        return off

    def add_global(self, name: str, typ: Type) -> int:
        address = GLOBALS + (self.global_top + 63) // 64 * 64
        self.global_top = address - GLOBALS + sizeof(typ)
        self.objects[name] = (typ, address)
        return address

    def alloc(self, typ: Type) -> int:
        address = HEAP + (self.heap_top + 63) // 64 * 64
        self.heap_top = address - HEAP + sizeof(typ)
        return address

    # --------------------------------------------------------- accounting
    def accounting(
        self,
        *,
        present: int,
        total: int,
        free: int,
        hypervisor: Optional[str] = None,
        pcp: Optional[Tuple[str, Sequence[int]]] = None,
    ) -> None:
        """
        What the report's accounting reads, for the entry points: one node
        (``contig_page_data``) with one zone of *present* pages of which
        *total* are managed (MemTotal, ``_totalram_pages``), ``NR_FREE_PAGES``
        in ``vm_zone_stat`` (include/linux/mmzone.h, mm/vmstat.c), and
        optionally ``x86_hyper_type`` (arch/x86/include/asm/hypervisor.h).

        *pcp*: (layout, per-CPU counts) of the zone's per-CPU free lists, one
        CPU each, possible in ``__cpu_possible_mask`` with ``__per_cpu_offset``
        (include/linux/mmzone.h): ``"per_cpu_pageset"`` (v5.14+: ``struct
        per_cpu_pages __percpu *per_cpu_pageset``, ``count``) or ``"pageset"``
        (v2.6.34 to v5.13: ``struct per_cpu_pageset __percpu *pageset``,
        ``pcp.count``).
        """
        t = self.types
        prog = self.prog
        t["charp"] = prog.pointer_type(t["char"])
        zone_members: List[Tuple[str, object]] = [
            ("managed_pages", "atomic_long"),
            ("present_pages", "ulong"),
            ("name", "charp"),
        ]
        if pcp is not None:
            pages_t = self.struct("per_cpu_pages", [("count", "int"), ("high", "int")])
            if pcp[0] == "pageset":
                set_t = self.struct(
                    "per_cpu_pageset", [("pcp", "struct per_cpu_pages")]
                )
            else:
                set_t = pages_t
            t["pcp_ptr"] = prog.pointer_type(set_t)
            zone_members.append((pcp[0], "pcp_ptr"))
        zone_t = self.struct("zone", zone_members)
        node_zones = prog.array_type(zone_t, 1)
        t["node_zones"] = node_zones
        pgdat_t = self.struct(
            "pglist_data", [("node_zones", "node_zones"), ("node_id", "int")]
        )
        pgdat = self.add_global("contig_page_data", pgdat_t)
        name = self.alloc(prog.array_type(t["char"], 8))
        self.heap[name - HEAP : name - HEAP + 7] = b"Normal\0"
        zone = pgdat + self.offset(pgdat_t, "node_zones")
        self.write("q", zone + self.offset(zone_t, "managed_pages"), total)
        self.write("Q", zone + self.offset(zone_t, "present_pages"), present)
        self.write("Q", zone + self.offset(zone_t, "name"), name)
        if pcp is not None:
            counts = pcp[1]
            # One copy of the per-CPU area per CPU; the zone points at the
            # first CPU's copy less its offset (0 here), as setup_per_cpu_areas().
            base = self.alloc(prog.array_type(set_t, len(counts)))
            for cpu, count in enumerate(counts):
                self.write("i", base + cpu * sizeof(set_t), count)
            self.write("Q", zone + self.offset(zone_t, pcp[0]), base)
            offsets = self.add_global(
                "__per_cpu_offset", prog.array_type(t["ulong"], len(counts))
            )
            for cpu in range(len(counts)):
                self.write("Q", offsets + 8 * cpu, cpu * sizeof(set_t))
            t["ulong[1]"] = prog.array_type(t["ulong"], 1)
            mask_t = self.struct("cpumask", [("bits", "ulong[1]")])
            mask = self.add_global("__cpu_possible_mask", mask_t)
            self.write("Q", mask, (1 << len(counts)) - 1)
            self.add_global("nr_cpu_ids", t["uint"])
            self.write("I", self.objects["nr_cpu_ids"][1], len(counts))
        totalram = self.add_global("_totalram_pages", t["atomic_long"])
        self.write("q", totalram, total)
        t["enum zone_stat_item"] = prog.enum_type(
            "zone_stat_item", t["uint"], (TypeEnumerator("NR_FREE_PAGES", 0),)
        )
        self.enumerators["NR_FREE_PAGES"] = (t["enum zone_stat_item"], 0)
        stat = self.add_global("vm_zone_stat", prog.array_type(t["atomic_long"], 1))
        self.write("q", stat, free)
        if hypervisor is not None:
            names = (
                "X86_HYPER_NATIVE",
                "X86_HYPER_VMWARE",
                "X86_HYPER_MS_HYPERV",
                "X86_HYPER_XEN_PV",
                "X86_HYPER_XEN_HVM",
                "X86_HYPER_KVM",
            )
            enum = prog.enum_type(
                "x86_hypervisor_type",
                t["uint"],
                tuple(TypeEnumerator(n, i) for i, n in enumerate(names)),
            )
            self.enumerators["x86_hyper_type"] = (enum, names.index(hypervisor))

    # ------------------------------------------------------------ finish
    def finish(self) -> Program:
        prog = self.prog
        types = self.types
        if self.offline == "mask":
            info = b"OSRELEASE=mock\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\n\0"
        else:
            info = b"OSRELEASE=mock\n\0"
        objects = dict(self.objects)
        values = {"max_pfn": self.max_pfn, "PAGE_SIZE": self.page_size}
        enumerators = dict(self.enumerators)

        def find_type(prog_, kinds, name, filename):  # type: ignore[no-untyped-def]
            for key in (name, "struct " + name, "enum " + name):
                typ = types.get(key)
                if typ is not None and typ.kind in kinds:
                    return typ
            return None

        def find_object(prog_, name, flags, filename):  # type: ignore[no-untyped-def]
            if name in objects:
                typ, address = objects[name]
                return Object(prog_, typ, address=address)
            if name in values:
                return Object(prog_, types["ulong"], values[name])
            if name in enumerators:
                typ, value = enumerators[name]
                return Object(prog_, typ, value)
            if name == "vmemmap":
                return Object(prog_, prog_.pointer_type(types["struct page"]), VMEMMAP)
            if name == "VMCOREINFO":
                return Object(
                    prog_,
                    prog_.array_type(types["char"], len(info)),
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

        def reader(buf: bytearray):  # type: ignore[no-untyped-def]
            def read(address, count, offset, physical):  # type: ignore[no-untyped-def]
                return bytes(buf[offset : offset + count])

            return read

        for base, buf in (
            (VMEMMAP, self.memmap),
            (GLOBALS, self.globals),
            (HEAP, self.heap),
            (VMCOREINFO_ADDR, bytearray(info)),
        ):
            prog.add_memory_segment(base, len(buf), reader(buf))
        return prog


# ------------------------------------------------------------------ drivers
class XenMock(MockProgram):
    """drivers/xen/balloon.c: balloon_stats + ballooned_pages (v5.10-v7.2)."""

    def __init__(
        self,
        *,
        low: Sequence[int] = (),
        initialised: bool = True,
        offline: Optional[str] = "pgty",
        **kw: object,
    ) -> None:
        super().__init__(offline=offline, **kw)  # type: ignore[arg-type]
        stats_t = self.struct("balloon_stats", XEN_BALLOON_STATS)
        self.stats = self.add_global("balloon_stats", stats_t)
        self.head = self.add_global("ballooned_pages", self.types["list"])
        self.stats_t = stats_t
        self.pfns = list(low)
        # static LIST_HEAD(ballooned_pages): points at itself from the start.
        self.link(self.head, self.pfns if initialised else [])
        if initialised:
            self.set("current_pages", self.max_pfn - len(self.pfns))
            self.set("target_pages", self.max_pfn - len(self.pfns))
            self.set("balloon_low", len(self.pfns))
            self.set("total_pages", self.max_pfn)
            self.set("schedule_delay", 1)
            self.set("max_schedule_delay", 32)

    def set(self, member: str, value: int) -> None:
        self.write("Q", self.stats + self.offset(self.stats_t, member), value)


class HvMock(MockProgram):
    """drivers/hv/hv_balloon.c dm_device (era "5.10" or "6.1")."""

    def __init__(
        self,
        *,
        era: str = "6.1",
        ballooned: Sequence[int] = (),
        regions: Sequence[
            Tuple[int, int, int, int, int, Sequence[Tuple[int, int]]]
        ] = (),
        initialised: bool = True,
        offline: Optional[str] = "pgty",
        **kw: object,
    ) -> None:
        super().__init__(offline=offline, **kw)  # type: ignore[arg-type]
        layout = {"5.10": HV_DM_5_10, "6.1": HV_DM_6_1, "7.x": HV_DM_7}[era]
        self.dm_t = self.struct("hv_dynmem_device", layout)
        self.has_t = self.struct("hv_hotadd_state", HV_HOTADD_STATE)
        self.gap_t = self.struct("hv_hotadd_gap", HV_HOTADD_GAP)
        self.dm = self.add_global("dm_device", self.dm_t)
        self.ballooned = list(ballooned)
        if not initialised:
            return  # static storage: all zero, lists NULL
        self.set("Q", "dev", HEAP + 0x8000)
        self.set("I", "state", 1)
        self.set("I", "num_pages_ballooned", len(self.ballooned))
        self.set("I", "version", 0x20000)
        if era != "5.10":
            self.set("Q", "max_dynamic_page_count", self.max_pfn * 2)
        for pfn in self.ballooned:
            if self.offline:
                self.mark_offline(pfn)
        entries = []
        added = onlined = 0
        for start, cstart, cend, haend, end, gaps in regions:
            a = self.alloc(self.has_t)
            for name, value in zip(
                (
                    "start_pfn",
                    "covered_start_pfn",
                    "covered_end_pfn",
                    "ha_end_pfn",
                    "end_pfn",
                ),
                (start, cstart, cend, haend, end),
            ):
                self.write("Q", a + self.offset(self.has_t, name), value)
            gap_nodes = []
            for gs, ge in gaps:
                g = self.alloc(self.gap_t)
                self.write("QQ", g + 16, gs, ge)
                gap_nodes.append(g)
            self.link_entries(a + self.offset(self.has_t, "gap_list"), gap_nodes)
            entries.append(a)
            added += haend - start
            onlined += cend - cstart
        self.link_entries(self.dm + self.offset(self.dm_t, "ha_region_list"), entries)
        self.set("I", "num_pages_added", added)
        self.set("I", "num_pages_onlined", onlined)

    def set(self, fmt: str, member: str, value: int) -> None:
        self.write(fmt, self.dm + self.offset(self.dm_t, member), value)


class CmmMock(MockProgram):
    """
    arch/powerpc/platforms/pseries/cmm.c (v5.6+ b_dev_info era; era "6.1"
    or "7.x" for struct balloon_dev_info) on ppc64 big-endian, 64 KiB pages.
    """

    def __init__(
        self,
        *,
        loaned: Sequence[int] = (),
        isolated: int = 0,
        target: Optional[int] = None,
        initialised: bool = True,
        migration: bool = True,
        era: str = "6.1",
        offline: Optional[str] = "mask",
        **kw: object,
    ) -> None:
        kw.setdefault("arch", "ppc64")
        kw.setdefault("page_size", 65536)
        super().__init__(offline=offline, **kw)  # type: ignore[arg-type]
        self.info_t = self.struct(
            "balloon_dev_info", BALLOON_DEV_INFO_7 if era == "7.x" else BALLOON_DEV_INFO
        )
        self.loaned_addr = self.add_global("loaned_pages", self.types["atomic_long"])
        self.target_addr = self.add_global("loaned_pages_target", self.types["ulong"])
        self.oom_addr = self.add_global("oom_freed_pages", self.types["ulong"])
        self.info = self.add_global("b_dev_info", self.info_t)
        self.pfns = list(loaned)
        if not initialised:
            return
        n = len(self.pfns) + isolated
        self.write("Q", self.loaned_addr, n)
        self.write("Q", self.target_addr, n if target is None else target)
        self.write(
            "Q", self.info + self.offset(self.info_t, "isolated_pages"), isolated
        )
        if migration:
            self.write("Q", self.info + self.offset(self.info_t, "migratepage"), 0xC0DE)
        if era == "7.x":
            off = self.offset(self.info_t, "adjust_managed_page_count")
            self.globals[self.info - GLOBALS + off] = 1
        self.link(
            self.info + self.offset(self.info_t, "pages"),
            self.pfns,
            private=self.info if migration else 0,
        )


def spread(n: int, max_pfn: int, first: int = 100) -> List[int]:
    """n distinct PFNs spread over the upper part of memory."""
    step = max(1, (max_pfn - first) // max(n, 1))
    return [first + i * step for i in range(n)]
