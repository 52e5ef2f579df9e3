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
from typing import Any, Dict, List, Optional, Sequence, SupportsFloat, Tuple

from tabulate import tabulate

from .report import SCHEMA_VERSION, VMWARE_DRIVERS, Balloon, Report
from .walk import Finding, ListWalk

__all__ = [
    "balloon_name",
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


#: How the report names each driver's balloon.
_NAMES = {
    "vmw_balloon": "VMware balloon",
    "vmware_balloon": "VMware balloon",
    "vmmemctl": "VMware balloon",
    "virtio_balloon": "virtio balloon",
    "hv_balloon": "Hyper-V balloon (hv_balloon)",
    "xen_balloon": "Xen balloon",
    "pseries_cmm": "pseries CMM balloon",
}


#: Who reclaimed the memory, and when it comes back, per driver.
_HOSTS = {
    "virtio_balloon": (
        "The host (QEMU/KVM) reclaimed this memory through the balloon",
        "it comes back when the host lowers the balloon's target",
    ),
    "hv_balloon": (
        "Hyper-V (dynamic memory) reclaimed this memory through the balloon",
        "it comes back when Hyper-V asks the guest to deflate",
    ),
    "xen_balloon": (
        "Xen reclaimed this memory through the balloon: the domain's memory "
        "target (xenstore memory/target) was lowered",
        "it comes back when the target is raised",
    ),
    "pseries_cmm": (
        "The PowerVM hypervisor reclaimed this memory through the CMM (loaned pages)",
        "it comes back when the hypervisor lowers loaned_pages_target",
    ),
}


def balloon_name(b: Balloon) -> str:
    """``"virtio balloon (virtio0)"``, ``"VMware balloon"``..."""
    name = _NAMES.get(b.driver, f"{b.driver} balloon")
    return f"{name} ({escape(b.device)})" if b.device else name


def _how(b: Balloon) -> str:
    v = b.verification
    if v is None:
        return "not verified: the page walk was skipped"
    if v.verified:
        if v.census is not None:
            return "verified against the pages marked offline"
        return "verified page by page"
    if b.moved:
        return "not verified: the lists changed while they were walked"
    if v.census is not None and not v.census.checked and not v.findings:
        return "not verified: no offline census of this memory map"
    n = len(v.findings)
    return f"NOT verified: {n} finding{'s' if n != 1 else ''}, see below"


def _vmware_verdict(report: Report, b: Balloon) -> str:
    m = report.memory
    unaccounted = m.unaccounted * m.page_size
    how = _how(b)
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
    if b.target_frames is not None and b.size_frames > b.target_frames:
        text += (
            f". The balloon is deflating: the host lowered the target to "
            f"{binary_bytes(b.target_frames * b.frame_size)}, and the driver is "
            f"giving {binary_bytes((b.size_frames - b.target_frames) * b.frame_size)}"
            " back to the guest"
        )
    else:
        text += ", and it comes back when the host lowers the target"
    text += (
        ' (see Red Hat solution 43729, "Unaccounted memory usage when running '
        'Red Hat Enterprise Linux as a VMware guest").'
    )
    return text


def _memtotal_gap(report: Report) -> Optional[int]:
    """Bytes the guest has (present pages) that MemTotal does not count."""
    z = report.zones
    if z is None:
        return None
    return max(z.present_pages - report.memory.total, 0) * report.memory.page_size


def _other_verdict(report: Report, b: Balloon) -> str:
    m = report.memory
    name = "The " + balloon_name(b)
    how = _how(b)
    unit = binary_bytes(b.frame_size)
    if b.size_frames == 0:
        text = f"{name} holds no memory ({how})."
    else:
        text = (
            f"{name} holds {binary_bytes(b.size_bytes)} "
            f"({b.size_frames:,} pages of {unit}, {how})."
        )
    gap = _memtotal_gap(report)
    present = None if report.zones is None else report.zones.present_pages
    figures = ""
    if present is not None and gap is not None:
        figures = (
            f"the guest has {binary_bytes(present * m.page_size)} (present pages, "
            f"from its zones), MemTotal is {binary_bytes(m.total * m.page_size)}"
        )
    if b.adjusts_managed:
        text += (
            f" {b.adjusts_managed_reason.rstrip('.')}, so `free` shows less "
            "memory than the VM has"
        )
        if figures and gap is not None:
            text += f": {figures}, {binary_bytes(gap)} less."
            if b.size_frames and gap:
                share = min(b.size_bytes, gap) / gap
                text += (
                    f" The balloon holds {share:.0%} of that difference; the "
                    "rest is memory reserved at boot (the kernel image, the "
                    "memory map, a crashkernel area and the like), which is "
                    "never in MemTotal."
                )
        else:
            text += "."
        if m.unaccounted:
            text += (
                f" The {binary_bytes(m.unaccounted * m.page_size)} in use that "
                "no counter explains is not the balloon's (it is not in "
                "MemTotal)."
            )
    elif b.adjusts_managed is False:
        unaccounted = m.unaccounted * m.page_size
        hidden = b.size_frames - b.counted_in_meminfo
        text += (
            f" {b.adjusts_managed_reason.rstrip('.')}: its pages are counted in "
            "MemTotal and as used"
            + (
                ", and /proc/meminfo's Balloon: line names "
                + ("all of them." if not hidden else f"{b.counted_in_meminfo:,}.")
                if b.counted_in_meminfo
                else ", and no /proc/meminfo line names them."
            )
        )
        if hidden and unaccounted:
            share = min(hidden * b.frame_size, unaccounted) / unaccounted
            text += (
                f" {'The rest' if b.counted_in_meminfo else 'That'} is "
                f"{share:.0%} of the {binary_bytes(unaccounted)} that no "
                "counter explains."
            )
        elif unaccounted:
            text += (
                f" The {binary_bytes(unaccounted)} that no counter explains is "
                "not the balloon's."
            )
    else:
        reason = b.adjusts_managed_reason
        text += f" Whether it takes its pages out of MemTotal is {reason}."
        if figures and gap is not None:
            text += (
                f" Both ways are in the figures: {figures} ({binary_bytes(gap)} "
                f"less), and {binary_bytes(m.unaccounted * m.page_size)} in use is "
                "explained by no counter."
            )
    if b.size_frames:
        host, back = _HOSTS.get(
            b.driver,
            ("The hypervisor reclaimed this memory", "it comes back when it lowers"),
        )
        text += f" {host}"
        if b.virtio is not None and b.virtio.deflate_on_oom:
            text += (
                "; with DEFLATE_ON_OOM the driver also gives pages back when the "
                "guest runs out of memory"
            )
        if b.target_frames is not None and b.size_frames > b.target_frames:
            text += (
                f"; the balloon is deflating towards "
                f"{binary_bytes(b.target_frames * b.frame_size)}"
            )
        else:
            text += f"; {back}"
        text += "."
    if b.target_frames is None and b.virtio is not None:
        text += (
            " The host's target is not in the dump (it is in the device's "
            "configuration space)."
        )
    return text


def _no_balloon_verdict(report: Report) -> str:
    m = report.memory
    k = report.kernel
    text = "No balloon holds memory in this guest."
    there = [p for p in report.drivers if p.present]
    for p in there:
        text += f" {p.driver}: {p.note.rstrip('.')}."
    vmw = [p for p in report.drivers if p.driver in VMWARE_DRIVERS]
    if k.hypervisor == "VMware" and vmw and not vmw[0].present:
        text += (
            " The kernel detected VMware, but no VMware balloon driver is "
            "loaded: the host cannot balloon this guest (load vmw_balloon)."
        )
    elif k.hypervisor:
        text += f" The kernel detected hypervisor: {k.hypervisor}."
    unaccounted = m.unaccounted * m.page_size
    if unaccounted:
        text += (
            f" {binary_bytes(unaccounted)} in use is explained by no counter, "
            "and it is not a balloon's."
        )
    return text


def verdict(report: Report) -> str:
    """The verdict in plain words: on each balloon, or on why there is none."""
    if not report.balloons:
        return _no_balloon_verdict(report)
    return " ".join(
        _vmware_verdict(report, b) if b.is_vmware else _other_verdict(report, b)
        for b in report.balloons
    )


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


def _plain(value: Any) -> Any:
    # NamedTuples of the readers as JSON: objects, lists, numbers, strings.
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _driver_state(b: Balloon) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if b.virtio is not None:
        virtio = _plain(b.virtio)
        virtio["stats"] = dict(b.virtio.stats)
        out["virtio"] = virtio
    for key in ("hv", "xen", "cmm"):
        state = getattr(b, key)
        if state is not None:
            out[key] = _plain(state)
    return out


def _balloon_dict(b: Balloon) -> Dict[str, Any]:
    v = b.verification
    s = b.vmware
    names = None if s is None else s.capabilities_names
    small = b.frame_size == 4096
    out = {
        "driver": b.driver,
        "device": b.device,
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
        "target_note": b.target_note or None,
        "frame_size": b.frame_size,
        "adjusts_managed": b.adjusts_managed,
        "adjusts_managed_reason": b.adjusts_managed_reason,
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
        "pages_4k": v.pages("4k") if v and small else None,
        "pages_2m": v.pages("2m") if v and small else None,
        "pages_on_lists": sum(w.pages for w in v.lists) if v else None,
        "frames_on_lists": v.frames if v else None,
        "offline_census": None if v is None or v.census is None else _plain(v.census),
        "verified": b.verified,
        "verification_skipped": v is None,
        "moved": b.moved,
        "lists": [_walk_dict(w) for w in v.lists] if v else [],
        "findings": [_finding_dict(f) for f in b.findings],
        "problems": list(b.problems),
    }
    out.update(_driver_state(b))
    return out


def report_document(report: Report) -> Dict[str, Any]:
    """The JSON document (schema :data:`~drgn_balloon.report.SCHEMA_VERSION`)."""
    k = report.kernel
    m = report.memory
    z = report.zones
    first = report.balloon
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
        "balloon": None if first is None else _balloon_dict(first),
        "balloons": [_balloon_dict(b) for b in report.balloons],
        "drivers": [p._asdict() for p in report.drivers],
        "memory": {
            "page_size": m.page_size,
            "total_pages": m.total,
            "free_pages": m.free,
            "used_pages": m.used,
            "present_pages": None if z is None else z.present_pages,
            "managed_pages": None if z is None else z.managed_pages,
            "not_in_memtotal_pages": None
            if z is None
            else max(z.present_pages - m.total, 0),
            "balloons_outside_memtotal_pages": sum(
                b.size_bytes // m.page_size
                for b in report.balloons
                if b.adjusts_managed
            ),
            "zones": [] if z is None else [_plain(zone) for zone in z.zones],
            "counters_pages": dict(m.counters),
            "explained_pages": m.explained,
            "pcp_free_pages": m.pcp_free,
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


def _vmware_rows(b: Balloon) -> List[List[str]]:
    s = b.vmware
    if s is None:
        return []
    caps = s.capabilities
    return [
        ["reset pending", _yes(s.reset_required), ""],
        [
            "capabilities used",
            "-" if caps is None else f"{caps:#x}",
            " ".join(s.capabilities_names or ()),
        ],
        [
            "capabilities offered",
            "-" if s.offered_capabilities is None else f"{s.offered_capabilities:#x}",
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


def _driver_rows(b: Balloon) -> List[List[str]]:
    rows: List[List[str]] = []
    if b.virtio is not None:
        vb = b.virtio
        rows += [
            ["device", escape(vb.device), f"struct virtio_balloon at {vb.address:#x}"],
            ["features", f"{vb.features:#x}", " ".join(vb.feature_names)],
            ["deflate on OOM", _yes(vb.deflate_on_oom), ""],
            ["page migration", _yes(vb.migration), ""],
        ]
    if b.hv is not None:
        hb = b.hv
        rows += [
            ["state", hb.state_name, f"protocol version {hb.version:#x}"],
            ["pages onlined", f"{hb.num_pages_onlined:,}", ""],
            ["pages hot-added", f"{hb.num_pages_added:,}", ""],
            ["hot-add regions", f"{len(hb.regions)}", ""],
        ]
        if hb.max_dynamic_page_count is not None:
            rows.append(["max dynamic pages", f"{hb.max_dynamic_page_count:,}", ""])
    if b.xen is not None:
        xb = b.xen
        rows += [
            ["current pages", f"{xb.current_pages:,}", "balloon_stats.current_pages"],
            ["target pages", f"{xb.target_pages:,}", "the domain's target"],
            ["low / high", f"{xb.balloon_low:,} / {xb.balloon_high:,}", ""],
        ]
    if b.cmm is not None:
        cb = b.cmm
        rows += [
            ["page migration", _yes(cb.migration), ""],
            [
                "freed on OOM",
                "-" if cb.oom_freed_pages is None else f"{cb.oom_freed_pages:,}",
                "",
            ],
        ]
    return rows


def _verification_lines(b: Balloon) -> List[str]:
    out: List[str] = []
    v = b.verification
    if v is None:
        return ["skipped (--no-verify)"]
    if v.census is not None:
        c = v.census
        if c.checked:
            out.append(
                f"offline census: {c.offline_pages:,} pages marked offline among "
                f"{c.scanned_pages:,} ({c.unreadable_pages:,} not in the dump); "
                f"the driver holds {b.size_frames:,} (it keeps no list of them)"
            )
        else:
            out.append(
                "offline census: not taken (the kernel does not mark offline "
                "pages, or the memory map is too large)"
            )
    else:
        vrows: List[List[str]] = []
        for w in v.lists:
            if b.is_vmware:
                label = "4 KiB pages" if w.kind == "4k" else "2 MiB pages"
            else:
                label = escape(b.device or b.driver) + " list"
            vrows.append(
                [
                    label,
                    f"{w.pages:,}",
                    f"{w.frames:,}",
                    "yes" if w.complete else "NO",
                    _offline_text(w),
                ]
            )
        if b.isolated_pages:
            n = f"{b.isolated_pages:,}"
            vrows.append(["isolated (migration)", "", n, "", ""])
        vrows.append(["total", "", f"{v.frames:,}", "", ""])
        count = "balloon.size" if b.is_vmware else "driver's count"
        vrows.append([count, "", f"{b.size_frames:,}", "", ""])
        out.append(
            _table(vrows, ["list", "pages", "frames", "walked to end", "offline"])
        )
        out.append("")
    out.append("verified: " + ("yes" if v.verified else "NO"))
    for f in b.findings:
        out.append(f"  [{f.kind}] {f.list + ': ' if f.list else ''}{f.message}")
    return out


def _balloon_section(b: Balloon) -> List[str]:
    out: List[str] = []
    title = "Balloon" if b.is_vmware else balloon_name(b)
    out.append(title[0].upper() + title[1:])
    out.append("-" * len(title))
    unit = (
        "frames" if b.frame_size == 4096 else f"pages of {binary_bytes(b.frame_size)}"
    )
    rows = [
        ["size", f"{b.size_frames:,} {unit}", _bytes(b.size_bytes)],
        [
            "target",
            "-" if b.target_frames is None else f"{b.target_frames:,} {unit}",
            _bytes(b.target_bytes)
            if b.target_frames is not None
            else "not in the dump",
        ],
    ]
    rows += _vmware_rows(b)
    if not b.is_vmware:
        rows += _driver_rows(b)
        rows.append(
            [
                "out of MemTotal",
                _yes(b.adjusts_managed),
                "",
            ]
        )
    out.append(_table(rows))
    if not b.is_vmware:
        out.append(f"MemTotal: {b.adjusts_managed_reason}.")
        if b.target_frames is None and b.target_note:
            out.append(f"Target: {b.target_note}.")
        for problem in b.problems:
            out.append(f"Problem: {escape(problem)}")
    out.append("")
    out.append("Verification" if b.is_vmware else f"Verification ({b.driver})")
    out.append("-" * len(out[-1]))
    out += _verification_lines(b)
    s = b.vmware
    if s is not None and s.stats:
        out.append("")
        out.append("Driver statistics (as debugfs vmmemctl shows them)")
        out.append("-" * 50)
        items = [(key, f"{value:,}") for key, value in s.stats.items()]
        out.append(_two_columns(items))
    elif s is not None:
        out.append("")
        out.append(
            "Driver statistics: not collected (balloon.stats is NULL until "
            "debugfs vmmemctl is first read)"
        )
    if b.virtio is not None and b.virtio.stats:
        out.append("")
        out.append("Statistics the driver last sent the host (bytes or events)")
        out.append("-" * 58)
        out.append(_two_columns([(k, f"{v:,}") for k, v in b.virtio.stats]))
    out.append("")
    return out


def _two_columns(items: Sequence[Tuple[str, str]]) -> str:
    half = (len(items) + 1) // 2
    rows = [
        list(items[i]) + (list(items[i + half]) if i + half < len(items) else ["", ""])
        for i in range(half)
    ]
    return _table(rows)


def _drivers_section(report: Report) -> List[str]:
    if not report.drivers:
        return []
    rows = [
        [
            p.driver,
            _yes(p.present),
            _yes(p.initialised) if p.present else "",
            f"{p.pages:,}" if p.present else "",
            escape(p.note),
        ]
        for p in report.drivers
    ]
    return [
        "Balloon drivers",
        "---------------",
        _table(rows, ["driver", "there", "initialised", "pages", ""]),
        "",
    ]


def render_text(report: Report) -> str:
    """The human-readable report."""
    k = report.kernel
    b = report.balloon
    s = None if b is None else b.vmware
    m = report.memory
    z = report.zones
    page = m.page_size
    out: List[str] = []
    vmware_only = bool(report.balloons) and all(x.is_vmware for x in report.balloons)
    title = "VMware balloon report" if vmware_only else "Balloon report"
    out.append(title)
    out.append("=" * len(title))
    drivers = ", ".join(
        escape(x.driver) + (f" ({escape(x.device)})" if x.device else "")
        for x in report.balloons
    )
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
                ["balloon driver", drivers or "none"],
                ["module version", "-" if b is None else _module_text(b)],
                ["layout", "-" if s is None else f"{s.era} ({s.era_kernels})"],
            ]
        )
    )
    out.append("")
    if not vmware_only:
        out += _drivers_section(report)
    for x in report.balloons:
        out += _balloon_section(x)
    out.append("Memory (what /proc/meminfo would show)")
    out.append("--------------------------------------")
    mrows = []
    if z is not None:
        mrows.append(
            [
                "present (the zones)",
                f"{z.present_pages:,}",
                _bytes(z.present_pages * page),
            ]
        )
    mrows += [
        ["MemTotal", f"{m.total:,}", _bytes(m.total * page)],
    ]
    if z is not None and not vmware_only:
        gap = max(z.present_pages - m.total, 0)
        mrows.append(["present - MemTotal", f"{gap:,}", _bytes(gap * page)])
    mrows += [
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
    if m.pcp_free:
        mrows.append(
            [
                "free on per-CPU lists (not in MemFree)",
                f"{m.pcp_free:,}",
                _bytes(m.pcp_free * page),
            ]
        )
    mrows.append(["unexplained", f"{m.unaccounted:,}", _bytes(m.unaccounted * page)])
    for x in report.balloons:
        label = "VMware balloon" if x.is_vmware else balloon_name(x)
        if x.adjusts_managed:
            label += " (not in MemTotal)"
        pages = x.size_bytes // page
        mrows.append([label, f"{pages:,}", _bytes(x.size_bytes)])
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
    for x in report.balloons:
        if not x.counted_in_meminfo:
            continue
        if x.is_vmware:
            hidden = x.size_frames - x.counted_in_meminfo
            out.append(
                f"(The Balloon: line already counts {x.counted_in_meminfo:,} of "
                "the balloon's frames (its 4 KiB pages, v6.16+), so they are "
                "among the explained pages"
                + (
                    f"; the other {hidden:,} (2 MiB pages) are in the "
                    "unexplained line.)"
                    if hidden
                    else "; the unexplained line is not the balloon's.)"
                )
            )
        elif x.adjusts_managed:
            out.append(
                f"(The Balloon: line counts {x.counted_in_meminfo:,} pages of "
                f"{balloon_name(x)}, which are not in MemTotal: they are "
                "not among the explained pages.)"
            )
        else:
            out.append(
                f"(The Balloon: line counts {x.counted_in_meminfo:,} pages of "
                f"{balloon_name(x)}: they are among the explained pages.)"
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
