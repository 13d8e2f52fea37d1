"""A member found by its local header alone (no central record): what both
the lenient reader and ``archfs repair`` learn from the header and its
extra fields before each decides, by its own rules, whether to trust it."""

from typing import NamedTuple, Optional

from archfs.zipengine import format as fmt
from archfs.zipengine.centraldir import SCAN_BLOCK, pread_exact
from archfs.zipengine.names import decode_name


class LocalMember(NamedTuple):
    name: str                  # decoded, not yet made safe
    name_length: int
    flags: int
    method: int
    crc: int
    csize: int                 # 0 (and crc 0) when a data descriptor follows
    usize: int
    mtime_ns: int
    data_start: int


def read_local_member(fd, at: int, limit: int) -> Optional[LocalMember]:
    """The member whose local header is at ``at``; None if there is none, or
    its data would start after ``limit``. Zip64 sizes, the extended
    timestamp and the Info-ZIP Unicode path extra field are applied."""
    found = fmt.read_local_header(lambda n, p: pread_exact(fd, n, p), at)
    if found is None:
        return None
    fields, data_start = found
    (_sig, _need, flags, method, dtime, ddate, crc, csize, usize, nlen, xlen) = fields
    if data_start > limit:
        return None
    raw = pread_exact(fd, nlen, at + fmt.LOCAL_HEADER.size)
    extra = pread_exact(fd, xlen, at + fmt.LOCAL_HEADER.size + nlen)
    mtime_ns = fmt.dos_to_ns(ddate, dtime)
    unicode_path = None
    for tag, data in fmt.iter_extras(extra):
        if tag == fmt.EXTRA_ZIP64 and (csize == fmt.MAX32 or usize == fmt.MAX32) \
                and len(data) >= 16:
            usize = int.from_bytes(data[0:8], "little")
            csize = int.from_bytes(data[8:16], "little")
        elif tag == fmt.EXTRA_TIMESTAMP and fmt.parse_timestamp(data) is not None:
            mtime_ns = fmt.parse_timestamp(data) * 1_000_000_000
        elif tag == fmt.EXTRA_UNICODE_PATH:
            unicode_path = fmt.parse_unicode_path(data, raw)
    name = decode_name(raw, bool(flags & fmt.FLAG_UTF8), unicode_path)
    return LocalMember(name, nlen, flags, method, crc, csize, usize, mtime_ns, data_start)


def next_local_signature(fd, pos: int, limit: int) -> int:
    """Where the next local header signature at or after ``pos`` starts
    (before ``limit``), or -1: the search of salvage and lenient reading."""
    while pos < limit:
        block = pread_exact(fd, min(SCAN_BLOCK + 3, limit - pos), pos)
        hit = block.find(fmt.LOCAL_SIG)
        if hit >= 0:
            return pos + hit
        pos += SCAN_BLOCK
    return -1
