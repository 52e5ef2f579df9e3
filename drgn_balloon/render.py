"""
Rendering the report
--------------------

The ``drgn_balloon.render`` module turns a :class:`~drgn_balloon.report.Report`
into a text report for people (tables built with tabulate) or a JSON
document for machines. Strings that come from the dump (DMI, module
versions) are untrusted: :func:`escape` makes control characters and
terminal escape sequences visible instead of letting them reach the terminal;
JSON escapes them by itself.
"""

import json
from typing import Any, List, Optional, Sequence

from tabulate import tabulate

from .report import Report, human_bytes

__all__ = ["escape", "render_json", "render_text"]


def escape(value: Optional[str]) -> str:
    """Make a string from the dump safe to print on a terminal."""
    if value is None:
        return "-"
    out = []
    for ch in value:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or 0x7F <= code < 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _bytes(n: Optional[int]) -> str:
    return "-" if n is None else human_bytes(n)


def _yes(value: Optional[bool]) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str] = ()) -> str:
    return tabulate(
        rows, headers=headers, tablefmt="plain", disable_numparse=True, colalign=None
    )


def render_text(report: Report) -> str:
    """The human-readable report."""
    d = report.to_dict()
    k, b, m = d["kernel"], d["balloon"], d["memory"]
    page = m["page_size"]
    out: List[str] = []
    out.append("VMware balloon report")
    out.append("=====================")
    out.append(
        _table(
            [
                ["kernel", escape(k["release"])],
                [
                    "source",
                    "live kernel" if k["live"] else escape(k["core_dump"] or "vmcore"),
                ],
                ["hypervisor", escape(k["hypervisor"])],
                ["DMI vendor", escape(k["dmi_sys_vendor"])],
                ["DMI product", escape(k["dmi_product_name"])],
                [
                    "balloon driver",
                    escape(b["driver"]) + (" (built in)" if b["builtin"] else ""),
                ],
                [
                    "module version",
                    escape((b["module"] or {}).get("version"))
                    + " / srcversion "
                    + escape((b["module"] or {}).get("srcversion")),
                ],
                ["layout", f"{b['era']} ({b['era_kernels']})"],
            ]
        )
    )
    out.append("")
    out.append("Balloon")
    out.append("-------")
    caps = b["capabilities"]
    rows = [
        ["size", f"{b['size_frames']:,} frames", _bytes(b["size_bytes"])],
        ["target", f"{b['target_frames']:,} frames", _bytes(b["target_bytes"])],
        ["reset pending", _yes(b["reset_required"]), ""],
        [
            "capabilities used",
            "-" if caps is None else f"{caps:#x}",
            " ".join(b["capabilities_names"] or []),
        ],
        [
            "capabilities offered",
            "-"
            if b["offered_capabilities"] is None
            else f"{b['offered_capabilities']:#x}",
            "",
        ],
        ["max page size", b["max_page_size"] or "-", ""],
        [
            "shrinker",
            "enabled"
            if b["shrinker_enabled"]
            else ("disabled" if b["shrinker_enabled"] is False else "-"),
            ""
            if b["shrinker_registered"] is None
            else ("registered" if b["shrinker_registered"] else "not registered"),
        ],
    ]
    out.append(_table(rows))
    out.append("")
    out.append("Verification")
    out.append("------------")
    if b["verification_skipped"]:
        out.append("skipped (--no-verify)")
    else:
        vrows = []
        for w in b["lists"]:
            vrows.append(
                [
                    "4 KiB pages" if w["kind"] == "4k" else "2 MiB pages",
                    f"{w['pages']:,}",
                    f"{w['frames']:,}",
                    "yes" if w["complete"] else "NO",
                    (
                        f"{w['not_offline']:,} not offline"
                        if w["not_offline"]
                        else "all offline"
                    )
                    if w["offline_checked"]
                    else "not marked by this kernel",
                ]
            )
        if b["isolated_pages"]:
            vrows.append(
                [
                    "isolated (migration)",
                    f"{b['isolated_pages']:,}",
                    f"{b['isolated_pages']:,}",
                    "",
                    "",
                ]
            )
        vrows.append(["total", "", f"{b['frames_on_lists']:,}", "", ""])
        vrows.append(["balloon.size", "", f"{b['size_frames']:,}", "", ""])
        out.append(
            _table(vrows, ["list", "pages", "frames", "walked to end", "offline"])
        )
        out.append("")
        out.append("verified: " + ("yes" if b["verified"] else "NO"))
        for f in b["findings"]:
            out.append(
                f"  [{f['kind']}] {f['list'] + ': ' if f['list'] else ''}{f['message']}"
            )
    if b["stats"]:
        out.append("")
        out.append("Driver statistics (as debugfs vmmemctl shows them)")
        out.append("-" * 50)
        items = [(key, f"{value:,}") for key, value in b["stats"].items()]
        half = (len(items) + 1) // 2
        rows2 = [
            list(items[i])
            + (list(items[i + half]) if i + half < len(items) else ["", ""])
            for i in range(half)
        ]
        out.append(_table(rows2))
    else:
        out.append("")
        out.append(
            "Driver statistics: not collected (balloon.stats is NULL until "
            "debugfs vmmemctl is first read)"
        )
    out.append("")
    out.append("Memory (what /proc/meminfo would show)")
    out.append("--------------------------------------")
    mrows = [
        ["MemTotal", f"{m['total_pages']:,}", _bytes(m["total_pages"] * page)],
        ["MemFree", f"{m['free_pages']:,}", _bytes(m["free_pages"] * page)],
        [
            "used (MemTotal - MemFree)",
            f"{m['used_pages']:,}",
            _bytes(m["used_pages"] * page),
        ],
    ]
    for name, value in m["counters_pages"].items():
        if value is None:
            continue
        mrows.append([f"  {name}", f"{value:,}", _bytes(value * page)])
    mrows.append(
        [
            "explained by the counters",
            f"{m['explained_pages']:,}",
            _bytes(m["explained_pages"] * page),
        ]
    )
    mrows.append(
        [
            "unexplained",
            f"{m['unaccounted_pages']:,}",
            _bytes(m["unaccounted_pages"] * page),
        ]
    )
    mrows.append(["VMware balloon", f"{b['size_frames']:,}", _bytes(b["size_bytes"])])
    if m["rss_pages"] is not None:
        mrows.append(
            [
                f"processes' RSS ({m['processes']} processes, ps aux)",
                f"{m['rss_pages']:,}",
                _bytes(m["rss_pages"] * page),
            ]
        )
    out.append(_table(mrows, ["", "pages", "size"]))
    out.append(
        "(Shmem and SReclaimable are parts of Cached and Slab, not added again.)"
    )
    pools = m["hugepages"]
    if pools:
        out.append(
            "HugePages: "
            + ", ".join(
                f"{p['total']} x {p['size_kib']} kB ({p['free']} free)" for p in pools
            )
        )
    else:
        out.append("HugePages: none")
    out.append("")
    fk = m["free_kib"]
    out.append("free (KiB)")
    out.append(
        _table(
            [
                [
                    "Mem:",
                    fk["total"],
                    fk["used"],
                    fk["free"],
                    fk["shared"],
                    fk["buff_cache"],
                ]
            ],
            ["", "total", "used", "free", "shared", "buff/cache"],
        )
    )
    out.append("")
    out.append("Verdict")
    out.append("-------")
    out.append(d["verdict"])
    return "\n".join(out) + "\n"


def render_json(report: Report) -> str:
    """The JSON document (see the README for the schema)."""
    return json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n"
