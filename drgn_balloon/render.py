"""
Rendering the report
--------------------

The ``drgn_balloon.render`` module turns a :class:`~drgn_balloon.report.Report`
into a text report for people (tables built with tabulate), a JSON document
for machines (:func:`report_document`, schema in the README) and the
verdict in plain words. It reads only the report, never the program. Strings
that come from the dump (DMI, module versions) are untrusted: :func:`escape`
makes control characters and terminal escape sequences visible instead of
letting them reach the terminal; JSON escapes them by itself.
"""

import json
from typing import Any, Dict, List, Optional, Sequence, SupportsFloat

from tabulate import tabulate

from .report import SCHEMA_VERSION, Balloon, Report
from .walk import Finding, ListWalk

__all__ = [
    "binary_bytes",
    "escape",
    "render_json",
    "render_text",
    "report_document",
    "verdict",
]

try:
    from drgn.helpers.common.format import number_in_binary_units
except ImportError:  # not in drgn 0.0.22

    def number_in_binary_units(n: SupportsFloat, precision: int = 1) -> str:
        # The same as drgn's helper.
        value = float(n)
        prefix = "Y"
        for unit in ("", "K", "M", "G", "T", "P", "E", "Z"):
            if abs(value) < 1024:
                prefix = unit
                break
            value /= 1024.0
        if value.is_integer():
            precision = 0
        return f"{value:.{precision}f}{prefix}"


def binary_bytes(nbytes: int) -> str:
    """A size in binary units, e.g. ``"156.2 MiB"``, ``"4 KiB"``, ``"0 B"``."""
    text = number_in_binary_units(nbytes)
    if text[-1].isalpha():
        return f"{text[:-1]} {text[-1]}iB"
    return f"{text} B"


def escape(value: Optional[str]) -> str:
    """Make a string from the dump safe to print on a terminal (``-`` for
    ``None``): drgn's ``escape_ascii_string()`` of its UTF-8 bytes."""
    from drgn.helpers.common.format import escape_ascii_string

    if value is None:
        return "-"
    return escape_ascii_string(value.encode("utf-8"), escape_backslash=True)


def verdict(report: Report) -> str:
    """The verdict on the (first) balloon, in plain words."""
    b = report.balloon
    m = report.memory
    unaccounted = m.unaccounted * m.page_size
    v = b.verification
    if v is None:
        how = "not verified: the page walk was skipped"
    elif v.verified:
        how = "verified page by page"
    elif b.moved:
        how = "not verified: the lists changed while they were walked"
    else:
        n = len(v.findings)
        how = f"NOT verified: {n} finding{'s' if n != 1 else ''}, see below"
    if b.size_frames == 0:
        text = "The VMware balloon holds no memory"
        if b.vmware is not None and b.vmware.reset_required:
            text += (
                " and a reset is pending: the driver is loaded but the host "
                "has not (yet) answered it"
            )
        text += "."
        if unaccounted:
            text += (
                f" {binary_bytes(unaccounted)} in use is explained by no "
                "counter, and it is not the balloon's."
            )
        return text
    text = (
        f"The VMware balloon holds {binary_bytes(b.size_bytes)} "
        f"({b.size_frames:,} frames, {how})."
    )
    counted = b.counted_in_meminfo
    hidden = b.size_frames - counted
    if counted:
        text += " /proc/meminfo's Balloon: line counts " + (
            "all of them." if not hidden else f"{counted:,} of those frames."
        )
    if hidden and unaccounted:
        share = min(hidden * b.frame_size, unaccounted) / unaccounted
        text += (
            f" {'The rest' if counted else 'That'} is {share:.0%} of the "
            f"{binary_bytes(unaccounted)} that no counter explains."
        )
    elif unaccounted:
        text += (
            f" The {binary_bytes(unaccounted)} that no counter explains "
            "is not the balloon's."
        )
    text += (
        " This is expected on an overcommitted ESX host: the hypervisor "
        "reclaimed this memory from the guest through the balloon"
    )
    if b.size_frames > b.target_frames:
        text += (
            f". The balloon is deflating: the host lowered the target to "
            f"{binary_bytes(b.target_bytes)}, and the driver is giving "
            f"{binary_bytes(b.size_bytes - b.target_bytes)} back to the guest"
        )
    else:
        text += ", and it comes back when the host lowers the target"
    text += (
        ' (see Red Hat solution 43729, "Unaccounted memory usage when running '
        'Red Hat Enterprise Linux as a VMware guest").'
    )
    return text


def _walk_dict(w: ListWalk) -> Dict[str, Any]:
    return {
        "kind": w.kind,
        "head": w.head,
        "pages": w.pages,
        "frames": w.frames,
        "frames_per_page": w.frames_per_page,
        "complete": w.complete,
        "offline_checked": w.offline_checked,
        "not_offline": w.not_offline,
        "private_matches": w.private_matches,
        "finding_counts": dict(w.counts),
    }


def _finding_dict(f: Finding) -> Dict[str, Any]:
    return {
        "kind": f.kind,
        "list": f.list,
        "index": f.index,
        "address": f.address,
        "message": f.message,
    }


def _balloon_dict(b: Balloon) -> Dict[str, Any]:
    v = b.verification
    s = b.vmware
    names = None if s is None else s.capabilities_names
    return {
        "driver": b.driver,
        "module": None
        if b.module is None
        else {
            "name": b.module.name,
            "version": b.module.version,
            "srcversion": b.module.srcversion,
        },
        "builtin": b.module is None,
        "address": None if s is None else s.address,
        "era": None if s is None else s.era,
        "era_kernels": None if s is None else s.era_kernels,
        "size_frames": b.size_frames,
        "size_bytes": b.size_bytes,
        "target_frames": b.target_frames,
        "target_bytes": b.target_bytes,
        "frame_size": b.frame_size,
        "reset_required": None if s is None else s.reset_required,
        "capabilities": None if s is None else s.capabilities,
        "capabilities_names": None if names is None else list(names),
        "offered_capabilities": None if s is None else s.offered_capabilities,
        "max_page_size": None if s is None else s.max_page_size,
        "batch_max_pages": None if s is None else s.batch_max_pages,
        "shrinker_enabled": None if s is None else s.shrinker_enabled,
        "shrinker_registered": None if s is None else s.shrinker_registered,
        "stats": None if s is None or s.stats is None else dict(s.stats),
        "isolated_pages": b.isolated_pages,
        "counted_in_meminfo_frames": b.counted_in_meminfo,
        "pages_4k": v.pages("4k") if v else None,
        "pages_2m": v.pages("2m") if v else None,
        "frames_on_lists": v.frames if v else None,
        "verified": b.verified,
        "verification_skipped": v is None,
        "moved": b.moved,
        "lists": [_walk_dict(w) for w in v.lists] if v else [],
        "findings": [_finding_dict(f) for f in b.findings],
    }


def report_document(report: Report) -> Dict[str, Any]:
    """The JSON document (schema :data:`~drgn_balloon.report.SCHEMA_VERSION`)."""
    k = report.kernel
    m = report.memory
    return {
        "schema_version": SCHEMA_VERSION,
        "kernel": {
            "release": k.release,
            "live": k.live,
            "core_dump": k.core_dump,
            "hypervisor": k.hypervisor,
            "dmi_sys_vendor": k.dmi_sys_vendor,
            "dmi_product_name": k.dmi_product_name,
        },
        "debuginfo": {
            "source": report.debuginfo.source,
            "files": list(report.debuginfo.files),
            "notes": list(report.debuginfo.notes),
        },
        "balloon": _balloon_dict(report.balloon),
        "memory": {
            "page_size": m.page_size,
            "total_pages": m.total,
            "free_pages": m.free,
            "used_pages": m.used,
            "counters_pages": dict(m.counters),
            "explained_pages": m.explained,
            "unaccounted_pages": m.unaccounted,
            "rss_pages": m.rss,
            "processes": m.processes,
            "hugepages": [p._asdict() for p in m.hugepages],
            "free_kib": m.free_kib._asdict(),
        },
        "verdict": verdict(report),
    }


def render_json(report: Report) -> str:
    """The JSON document (see the README for the schema)."""
    return json.dumps(report_document(report), indent=2) + "\n"


def _bytes(n: Optional[int]) -> str:
    return "-" if n is None else binary_bytes(n)


def _yes(value: Optional[bool]) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str] = ()) -> str:
    return str(
        tabulate(
            rows,
            headers=headers,
            tablefmt="plain",
            disable_numparse=True,
            colalign=None,
        )
    )


def _module_text(b: Balloon) -> str:
    if b.module is None:
        return "(built in)"
    if b.module.version is None and b.module.srcversion is None:
        return "(the module declares no version)"
    return (
        escape(b.module.version or "(none declared)")
        + " / srcversion "
        + escape(b.module.srcversion or "(none)")
    )


def _debuginfo_text(report: Report) -> str:
    # "dwarf", or "btf (kallsyms (VMCOREINFO), vmlinux BTF (memory, ...))":
    # where BTF mode found the kernel's symbols and types.
    d = report.debuginfo
    if d.source == "dwarf" or not d.files:
        return d.source
    return f"{d.source} ({', '.join(escape(f) for f in d.files)})"


def _offline_text(w: ListWalk) -> str:
    if not w.offline_checked:
        return "not marked by this kernel"
    return f"{w.not_offline:,} not offline" if w.not_offline else "all offline"


def render_text(report: Report) -> str:
    """The human-readable report."""
    k = report.kernel
    b = report.balloon
    s = b.vmware
    m = report.memory
    page = m.page_size
    out: List[str] = []
    out.append("VMware balloon report")
    out.append("=====================")
    out.append(
        _table(
            [
                ["kernel", escape(k.release)],
                [
                    "source",
                    "live kernel" if k.live else escape(k.core_dump or "vmcore"),
                ],
                ["debug info", _debuginfo_text(report)],
                *(["debug info note", escape(n)] for n in report.debuginfo.notes),
                ["hypervisor", escape(k.hypervisor)],
                ["DMI vendor", escape(k.dmi_sys_vendor)],
                ["DMI product", escape(k.dmi_product_name)],
                ["balloon driver", escape(b.driver)],
                ["module version", _module_text(b)],
                ["layout", "-" if s is None else f"{s.era} ({s.era_kernels})"],
            ]
        )
    )
    out.append("")
    out.append("Balloon")
    out.append("-------")
    rows = [
        ["size", f"{b.size_frames:,} frames", _bytes(b.size_bytes)],
        ["target", f"{b.target_frames:,} frames", _bytes(b.target_bytes)],
    ]
    if s is not None:
        caps = s.capabilities
        rows += [
            ["reset pending", _yes(s.reset_required), ""],
            [
                "capabilities used",
                "-" if caps is None else f"{caps:#x}",
                " ".join(s.capabilities_names or ()),
            ],
            [
                "capabilities offered",
                "-"
                if s.offered_capabilities is None
                else f"{s.offered_capabilities:#x}",
                "",
            ],
            ["max page size", s.max_page_size or "-", ""],
            [
                "shrinker",
                "enabled"
                if s.shrinker_enabled
                else ("disabled" if s.shrinker_enabled is False else "-"),
                ""
                if s.shrinker_registered is None
                else ("registered" if s.shrinker_registered else "not registered"),
            ],
        ]
    out.append(_table(rows))
    out.append("")
    out.append("Verification")
    out.append("------------")
    v = b.verification
    if v is None:
        out.append("skipped (--no-verify)")
    else:
        vrows: List[List[str]] = []
        for w in v.lists:
            vrows.append(
                [
                    "4 KiB pages" if w.kind == "4k" else "2 MiB pages",
                    f"{w.pages:,}",
                    f"{w.frames:,}",
                    "yes" if w.complete else "NO",
                    _offline_text(w),
                ]
            )
        if b.isolated_pages:
            n = f"{b.isolated_pages:,}"
            vrows.append(["isolated (migration)", n, n, "", ""])
        vrows.append(["total", "", f"{v.frames:,}", "", ""])
        vrows.append(["balloon.size", "", f"{b.size_frames:,}", "", ""])
        out.append(
            _table(vrows, ["list", "pages", "frames", "walked to end", "offline"])
        )
        out.append("")
        out.append("verified: " + ("yes" if v.verified else "NO"))
        for f in b.findings:
            out.append(f"  [{f.kind}] {f.list + ': ' if f.list else ''}{f.message}")
    if s is not None and s.stats:
        out.append("")
        out.append("Driver statistics (as debugfs vmmemctl shows them)")
        out.append("-" * 50)
        items = [(key, f"{value:,}") for key, value in s.stats.items()]
        half = (len(items) + 1) // 2
        rows2 = [
            list(items[i])
            + (list(items[i + half]) if i + half < len(items) else ["", ""])
            for i in range(half)
        ]
        out.append(_table(rows2))
    elif s is not None:
        out.append("")
        out.append(
            "Driver statistics: not collected (balloon.stats is NULL until "
            "debugfs vmmemctl is first read)"
        )
    out.append("")
    out.append("Memory (what /proc/meminfo would show)")
    out.append("--------------------------------------")
    mrows = [
        ["MemTotal", f"{m.total:,}", _bytes(m.total * page)],
        ["MemFree", f"{m.free:,}", _bytes(m.free * page)],
        ["used (MemTotal - MemFree)", f"{m.used:,}", _bytes(m.used * page)],
    ]
    for name, value in m.counters.items():
        if value is None:
            continue
        mrows.append([f"  {name}", f"{value:,}", _bytes(value * page)])
    mrows.append(
        ["explained by the counters", f"{m.explained:,}", _bytes(m.explained * page)]
    )
    mrows.append(["unexplained", f"{m.unaccounted:,}", _bytes(m.unaccounted * page)])
    mrows.append(["VMware balloon", f"{b.size_frames:,}", _bytes(b.size_bytes)])
    if m.rss is not None:
        mrows.append(
            [
                f"processes' RSS ({m.processes} processes, ps aux)",
                f"{m.rss:,}",
                _bytes(m.rss * page),
            ]
        )
    out.append(_table(mrows, ["", "pages", "size"]))
    out.append(
        "(Shmem and SReclaimable are parts of Cached and Slab, not added again.)"
    )
    if b.counted_in_meminfo:
        hidden = b.size_frames - b.counted_in_meminfo
        out.append(
            f"(The Balloon: line already counts {b.counted_in_meminfo:,} of the "
            "balloon's frames (its 4 KiB pages, v6.16+), so they are among the "
            "explained pages"
            + (
                f"; the other {hidden:,} (2 MiB pages) are in the unexplained line.)"
                if hidden
                else "; the unexplained line is not the balloon's.)"
            )
        )
    if m.hugepages:
        out.append(
            "HugePages: "
            + ", ".join(
                f"{p.total} x {p.size_kib} kB ({p.free} free)" for p in m.hugepages
            )
        )
    else:
        out.append("HugePages: none")
    out.append("")
    fk = m.free_kib
    out.append("free (KiB)")
    out.append(
        _table(
            [["Mem:", fk.total, fk.used, fk.free, fk.shared, fk.buff_cache]],
            ["", "total", "used", "free", "shared", "buff/cache"],
        )
    )
    out.append("")
    out.append("Verdict")
    out.append("-------")
    out.append(verdict(report))
    return "\n".join(out) + "\n"
