"""A member found by its local header alone (no central record): what both
the lenient reader and ``archfs repair`` learn from the header and its
extra fields before each decides, by its own rules, whether to trust it."""

import bz2
import lzma
import zlib
from typing import NamedTuple, Optional, Tuple

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


def measure_stream(fd, start: int, limit: int, method: int) -> Optional[Tuple[int, int, int]]:
    """(end, size, CRC-32) of the output of the deflate or bzip2 stream at
    ``start``, which ends by itself before ``limit``; None if it does not,
    or is damaged. Output is counted in bounded pieces, never held whole."""
    if method == fmt.DEFLATED:
        decoder = zlib.decompressobj(-15)
    elif method == fmt.BZIP2:
        decoder = bz2.BZ2Decompressor()
    else:
        return None
    pos, usize, crc = start, 0, 0
    try:
        while pos < limit:
            chunk = pread_exact(fd, min(SCAN_BLOCK, limit - pos), pos)
            if not chunk:
                return None
            pending = chunk
            while True:
                out = decoder.decompress(pending, SCAN_BLOCK)
                usize += len(out)
                crc = zlib.crc32(out, crc)
                if decoder.eof:
                    return pos + len(chunk) - len(decoder.unused_data), usize, crc
                if method == fmt.DEFLATED:
                    pending = decoder.unconsumed_tail
                    if not pending:
                        break
                else:
                    if decoder.needs_input:
                        break
                    pending = b""
            pos += len(chunk)
    except (zlib.error, OSError, ValueError, EOFError, lzma.LZMAError):
        return None
    return None
