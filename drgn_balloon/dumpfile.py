"""
Dump files
----------

The ``drgn_balloon.dumpfile`` module checks, before anything is read, that a
dump file is whole. A truncated dump opens (its headers are at the start) but
then fails on whatever page is missing, far from the cause; the check reads
only headers and says so at once, the way crash reports a truncated vmcore.
It reads the file and never writes to it.
"""

import os
import struct
from typing import BinaryIO, List, Optional, Tuple

__all__ = ["truncation", "vmcoreinfo"]

# makedumpfile's diskdump_mod.h: struct disk_dump_header on 64-bit hosts.
_KDUMP_SIGNATURE = b"KDUMP   "
_KDUMP_BLOCK_SIZE_OFFSET = 428  # block_size, sub_hdr_size, bitmap_blocks
_PAGE_DESC = struct.Struct("<qIIQ")  # offset, size, flags, page_flags


def _elf_program_headers(f: BinaryIO) -> Tuple[int, List[Tuple[int, int, int]]]:
    # (where the program header table ends, [(p_type, p_offset, p_filesz)])
    # of a 64-bit little-endian ELF file; (0, []) for anything else, and no
    # headers if the file ends inside the table.
    head = f.read(64)
    if len(head) < 64 or head[4] != 2 or head[5] != 1:  # ELFCLASS64, little endian
        return 0, []
    phoff: int = struct.unpack_from("<Q", head, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", head, 54)
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    if len(table) < phentsize * phnum:
        return phoff + phentsize * phnum, []
    headers = []
    for i in range(phnum):
        p_type, _, offset, _, _, filesz = struct.unpack_from(
            "<IIQQQQ", table, i * phentsize
        )
        headers.append((p_type, offset, filesz))
    return phoff + phentsize * phnum, headers


def _elf_end(f: BinaryIO, size: int) -> Optional[int]:
    table_end, headers = _elf_program_headers(f)
    if not table_end:
        return None
    if table_end > size:
        return table_end
    return max((offset + filesz for _, offset, filesz in headers), default=0)


def _popcount(data: bytes) -> int:
    return (
        int.from_bytes(data, "little").bit_count()
        if hasattr(int, "bit_count")
        else bin(int.from_bytes(data, "little")).count("1")
    )


def _kdump_end(f: BinaryIO, size: int) -> Optional[int]:
    f.seek(_KDUMP_BLOCK_SIZE_OFFSET)
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    block_size, sub_hdr_size, bitmap_blocks = struct.unpack("<iiI", f.read(12))
    if block_size <= 0 or sub_hdr_size < 0:
        return None
    bitmap_start = (1 + sub_hdr_size) * block_size
    bitmap_len = bitmap_blocks * block_size
    if bitmap_start + bitmap_len > size:
        return bitmap_start + bitmap_len
    # The second half of the bitmap marks the pages that were dumped; one
    # page descriptor follows the bitmaps for each of them.
    f.seek(bitmap_start + bitmap_len // 2)
    dumped = 0
    remaining = bitmap_len // 2
    while remaining:
        chunk = f.read(min(remaining, 1 << 20))
        if not chunk:
            return bitmap_start + bitmap_len
        dumped += _popcount(chunk)
        remaining -= len(chunk)
    descs = bitmap_start + bitmap_len
    table_end = descs + dumped * _PAGE_DESC.size
    if table_end > size:
        return table_end
    last = max(dumped - 64, 0)
    f.seek(descs + last * _PAGE_DESC.size)
    data = f.read((dumped - last) * _PAGE_DESC.size)
    end: int = table_end
    for offset, length, _, _ in _PAGE_DESC.iter_unpack(data):
        end = max(end, int(offset) + int(length))
    return end


def truncation(path: str) -> Optional[str]:
    """
    Say why *path* is truncated, or return ``None`` if it is whole (or of a
    format this check does not know, which drgn then judges alone).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            magic = f.read(8)
            f.seek(0)
            if magic[:4] == b"\x7fELF":
                end = _elf_end(f, size)
            elif magic == _KDUMP_SIGNATURE:
                end = _kdump_end(f, size)
            else:
                return None
    except (OSError, struct.error):
        return None
    if end is not None and end > size:
        return (
            f"{path} is truncated: it is {size:,} bytes, but its own headers "
            f"need at least {end:,}"
        )
    return None


def _elf_vmcoreinfo(f: BinaryIO) -> Optional[bytes]:
    for p_type, offset, filesz in _elf_program_headers(f)[1]:
        if p_type != 4:  # PT_NOTE
            continue
        f.seek(offset)
        notes = f.read(min(filesz, 1 << 20))
        pos = 0
        while pos + 12 <= len(notes):
            namesz, descsz, _ = struct.unpack_from("<III", notes, pos)
            name = notes[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            desc_at = pos + 12 + ((namesz + 3) & ~3)
            if name == b"VMCOREINFO":
                return notes[desc_at : desc_at + descsz]
            pos = desc_at + ((descsz + 3) & ~3)
    return None


def _kdump_vmcoreinfo(f: BinaryIO) -> Optional[bytes]:
    # struct kdump_sub_header (one block in): offset_vmcoreinfo at 32,
    # size_vmcoreinfo at 40 (header_version >= 3).
    f.seek(8)
    header_version = struct.unpack("<i", f.read(4))[0]
    if header_version < 3:
        return None
    f.seek(_KDUMP_BLOCK_SIZE_OFFSET)
    block_size = struct.unpack("<i", f.read(4))[0]
    f.seek(block_size + 32)
    offset, size = struct.unpack("<qQ", f.read(16))
    if offset <= 0 or not 0 < size < (1 << 20):
        return None
    f.seek(offset)
    return f.read(size)


def vmcoreinfo(path: str) -> bytes:
    """The VMCOREINFO note of a dump file, read from the file itself (for
    drgn versions that do not expose it), or ``b""``."""
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
            f.seek(0)
            if magic[:4] == b"\x7fELF":
                data = _elf_vmcoreinfo(f)
            elif magic == _KDUMP_SIGNATURE:
                data = _kdump_vmcoreinfo(f)
            else:
                data = None
    except (OSError, struct.error):
        data = None
    return data or b""
