"""
An independent reference for the page-by-page verification, built only on
drgn's own list helpers (validate_list_for_each_entry() checks that every
node's prev points back) and drgn Objects: no code of drgn_balloon.walk or
drgn_balloon.pages. The fast walk must agree with it.

List heads and offline marks per era, from shared/docs/kernel-layouts.md:
§0 (where the lists are), §1.C2 (PG_offline, v5.0 to v6.9: page_type is
~PG_offline = 0xfffffeff on a ballooned page, VMCOREINFO
PAGE_OFFLINE_MAPCOUNT_VALUE), §1.D (v6.10+: PGTY_offline in the top byte).
"""

import re
from itertools import islice
from typing import NamedTuple, Optional, Tuple

from drgn import FaultError, Object, Program
from drgn.helpers.linux.list import validate_list_for_each_entry

try:
    from drgn.helpers import ValidationError
except ImportError:  # pragma: no cover
    from drgn.helpers.linux.list import ValidationError  # type: ignore

LISTS = {
    "A0": ("pages", None),
    "A1": ("pages", None),
    "B1": ("pages", None),
    "B2": ("page_sizes[0].pages", "page_sizes[1].pages"),
    "C1": ("page_sizes[0].pages", "page_sizes[1].pages"),
    "C2": ("b_dev_info.pages", "huge_pages"),
    "D1": ("b_dev_info.pages", "huge_pages"),
    "D2": ("b_dev_info.pages", "huge_pages"),
}


class RefList(NamedTuple):
    pages: int
    #: validate_list_for_each_entry() went to the end without an error.
    valid: bool
    not_offline: int
    bad_private: int


class Reference(NamedTuple):
    lists: Tuple[RefList, ...]
    frames: int
    size: int

    @property
    def verified(self) -> bool:
        return (
            all(r.valid and not r.not_offline and not r.bad_private for r in self.lists)
            and self.frames == self.size
        )


def _path(obj: Object, path: str) -> Object:
    for part in path.split("."):
        m = re.fullmatch(r"(\w+)\[(\d+)\]", part)
        obj = obj.member_(m.group(1))[int(m.group(2))] if m else obj.member_(part)
    return obj


def _value(obj: Object) -> int:
    try:
        return obj.counter.value_()  # atomic64_t
    except AttributeError:
        return obj.value_()


def offline_test(prog: Program, era: str):
    """A function page_type -> offline?, or None where pages are not marked."""
    try:
        pgty = prog["PGTY_offline"].value_()
        return lambda t: t >> 24 == pgty
    except LookupError:
        pass
    try:
        info = prog["VMCOREINFO"].string_()
    except LookupError:
        info = b""
    m = re.search(rb"NUMBER\(PAGE_OFFLINE_MAPCOUNT_VALUE\)=(-?\d+)", info)
    if m:
        value = int(m.group(1)) & 0xFFFFFFFF
        if value & 0xFFFFFF == 0:
            return lambda t: t >> 24 == value >> 24
        return lambda t: t == value
    if era in ("C2", "D1", "D2"):
        return lambda t: t == 0xFFFFFEFF
    return None


def reference_walk(
    prog: Program, balloon: Object, era: str, max_pages: int
) -> Reference:
    is_offline = offline_test(prog, era)
    results = []
    frames = 0
    for kind, path in zip(("4k", "2m"), LISTS[era]):
        if path is None:
            continue
        head = _path(balloon, path).address_of_()
        expect_private = (
            balloon.b_dev_info.address_
            if kind == "4k" and era in ("C2", "D1", "D2")
            else None
        )
        pages = not_offline = bad_private = 0
        valid = True
        try:
            for page in islice(
                validate_list_for_each_entry("struct page", head, "lru"), max_pages + 1
            ):
                pages += 1
                if pages > max_pages:
                    valid = False  # more nodes than the memory map has pages
                    break
                if is_offline is not None:
                    for i in range(512 if kind == "2m" else 1):
                        if not is_offline(page[i].page_type.value_()):
                            not_offline += 1
                if (
                    expect_private is not None
                    and page.private.value_() != expect_private
                ):
                    bad_private += 1
        except (ValidationError, FaultError):
            valid = False
        results.append(RefList(pages, valid, not_offline, bad_private))
        frames += pages * (512 if kind == "2m" else 1)
    if era in ("C2", "D1", "D2"):
        frames += balloon.b_dev_info.isolated_pages.value_()
    return Reference(tuple(results), frames, _value(balloon.size))


def balloon_object(prog: Program) -> Optional[Object]:
    for filename in ("vmw_balloon.c", "vmware_balloon.c"):
        try:
            return prog.object("balloon", filename=filename)
        except LookupError:
            continue
    return None
