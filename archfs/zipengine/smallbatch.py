"""Many small members decoded in one go, for read-ahead across files.

A walk through a directory (grep -r, tar) reads its files in listing order,
and a zip mostly holds them side by side. ``decode_batch`` reads a run of
neighbouring members with one pread and decodes each with no per-member
state: a few microseconds of Python each instead of the tens the general
path (``memberinfo.describe`` then ``memberreader.small_content``) costs.

It serves only members with nothing unusual: stored or deflated, not
encrypted, a local header that agrees with the central record. Anything
else, and anything that fails a check, comes back None and is read the
ordinary way, where damage is reported and remembered; so this path never
decides that a member is bad, and a None is never an error.
"""

from typing import List, NamedTuple, Optional

from archfs.engine.fileaccess import pread_exact
from archfs.zipengine import format as fmt
from archfs.zipengine.inflater import crc32, errors as inflate_errors, raw_inflater

RUN_GAP = 64 << 10          # members further apart than this start a new read
RUN_MOST = 4 << 20          # bytes read at once at most
HEADER_SLACK = 30 + 512     # a local header, its name and a modest extra field


class Plain(NamedTuple):
    """A member ``decode_batch`` may serve, from its central record (the
    content size first, as the plugin API's ``small_plans`` wants)."""
    usize: int
    offset: int         # of its local header
    csize: int
    crc: int
    method: int         # 0 or 8


def decode_batch(pread, members: List[Optional[Plain]], limit: int) -> List[Optional[bytes]]:
    """The content of each member (None where it was not served); ``limit``
    is where the archive's members end."""
    out: List[Optional[bytes]] = [None] * len(members)
    order = sorted((m.offset, i) for i, m in enumerate(members) if m is not None)
    k = 0
    while k < len(order):
        start = order[k][0]
        end, j = start, k
        while j < len(order):
            m = members[order[j][1]]
            stop = m.offset + HEADER_SLACK + m.csize
            if m.offset > end + RUN_GAP or stop - start > RUN_MOST:
                break
            end = max(end, stop)
            j += 1
        if j == k:      # one member bigger than RUN_MOST: not for this path
            k += 1
            continue
        buf = pread(min(end, limit) - start, start)
        for _, i in order[k:j]:
            out[i] = _decode(buf, members[i], start, limit)
        k = j
    return out


def _decode(buf: bytes, m: Plain, base: int, limit: int) -> Optional[bytes]:
    at = m.offset - base
    if buf[at:at + 4] != fmt.LOCAL_SIG or at + fmt.LOCAL_HEADER.size > len(buf):
        return None
    (_sig, _need, flags, method, _t, _d, crc, csize, usize, n, x) = \
        fmt.LOCAL_HEADER.unpack_from(buf, at)
    if flags & fmt.FLAG_ENCRYPTED or method != m.method:
        return None
    if not flags & fmt.FLAG_DESCRIPTOR and fmt.MAX32 not in (csize, usize) \
            and (crc, csize, usize) != (m.crc, m.csize, m.usize):
        return None     # the ordinary path decides which reading holds
    begin = at + fmt.LOCAL_HEADER.size + n + x
    end = begin + m.csize
    if end > len(buf) or base + end > limit:
        return None
    if method == 0:
        data = buf[begin:end]
        if len(data) != m.usize:
            return None
    else:
        inflater = raw_inflater()
        try:
            data = inflater.decompress(buf[begin:end], m.usize + 1)
        except inflate_errors:
            return None
        if len(data) != m.usize or not inflater.eof:
            return None
    return data if crc32(data) == m.crc else None


class FileDecoder:
    """``decode_batch`` over an open archive file descriptor, for a process
    that holds nothing else of the archive (``mount/decoderproc.py``)."""

    def __init__(self, fd: int, limit: int):
        self.fd, self.limit = fd, limit

    def decode(self, plans) -> List[Optional[bytes]]:
        return decode_batch(lambda size, pos: pread_exact(self.fd, size, pos),
                            [None if p is None else Plain(*p) for p in plans], self.limit)
