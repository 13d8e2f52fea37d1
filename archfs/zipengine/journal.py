"""Journal records: a commit that costs what it changes.

A central directory lists every member, so writing one per commit costs the
size of the archive's directory (60 MB at a million members) whatever the
change. A journal record lists only the change: the central directory
records of the members added or changed (byte for byte what a central
directory would hold, so a later checkpoint copies them verbatim) and the
positions of the durable records they supersede or remove. Records are
appended after the member data they describe, each built on the last
checkpoint (the newest complete central directory and end record) and
chained to the record before it:

    offset  size
    0       8     magic ``ARCHFSj1``
    8       8     length of the whole record, CRC included
    16      8     sequence number since the checkpoint (1, 2, ...)
    24      8     position of the checkpoint's end of central directory record
    32      8     position of the previous record (0 for the first)
    40      4     number of removed positions
    44      4     number of central directory records
    48      8     length of the central directory records
    56      4     flags: 1 = the next field covers the data before the record
    60      4     CRC-32 of the bytes from the previous record (or the
                  checkpoint) up to this one: the member data it lists
    64      8*n   removed positions: where the superseded records start
    ...           the central directory records
    -4      4     CRC-32 of everything before

A record counts only if its CRC matches and its chain leads back to a
checkpoint whose directory parses; anything after the last such record is an
unfinished commit. The data CRC lets a small commit make its data and its
record durable with one sync (a record whose data did not reach the disk
fails its check); a bigger one syncs the data first and sets no flag. The
signature does not start with ``PK``, so readers that walk local headers
stop at it as at any unknown block.
"""

import struct
import zlib
from typing import List, NamedTuple, Optional, Sequence

from archfs.zipengine.centraldir import pread_exact

MAGIC = b"ARCHFSj1"
HEADER = struct.Struct("<8sQQQQIIQII")        # 64 bytes
DATA_CRC = 1                                  # flag: data_crc covers the data before
POSITION = struct.Struct("<Q")
CRC = struct.Struct("<I")
MAX_RECORD = 1 << 40                          # a sanity bound, far above any real record


class Record(NamedTuple):
    pos: int              # where the record starts
    end: int              # first byte after it
    seq: int
    base: int             # EOCD position of the checkpoint it builds on
    prev: int             # position of the previous record, 0 if first
    removed: List[int]    # positions of superseded central records
    cd_start: int         # absolute position of its central records
    cd_size: int
    count: int            # number of central records
    data_crc: Optional[int]   # CRC-32 of the data between the previous record and this


def encode(seq: int, base: int, prev: int, removed: Sequence[int], records: Sequence[bytes],
           data_crc: Optional[int] = None):
    """(record bytes, offset of the central records within it)."""
    body = b"".join(records)
    flags = 0 if data_crc is None else DATA_CRC
    removed_bytes = b"".join(POSITION.pack(p) for p in removed)
    length = HEADER.size + len(removed_bytes) + len(body) + CRC.size
    head = HEADER.pack(MAGIC, length, seq, base, prev, len(removed), len(records), len(body),
                       flags, data_crc or 0)
    data = head + removed_bytes + body
    return data + CRC.pack(zlib.crc32(data)), len(head) + len(removed_bytes)


def read(fd: int, pos: int, file_size: int) -> Optional[Record]:
    """The intact record at ``pos``, or None (torn, damaged or not a record)."""
    head = pread_exact(fd, HEADER.size, pos)
    if len(head) < HEADER.size or head[:8] != MAGIC:
        return None
    (_magic, length, seq, base, prev, n_removed, count, cd_size, flags,
     data_crc) = HEADER.unpack(head)
    fixed = HEADER.size + POSITION.size * n_removed + cd_size + CRC.size
    if length != fixed or length > MAX_RECORD or pos + length > file_size:
        return None
    if base >= pos or prev >= pos or seq < 1 or (seq == 1) != (prev == 0):
        return None
    data = pread_exact(fd, length, pos)
    if len(data) != length or zlib.crc32(data[:-CRC.size]) != CRC.unpack_from(data, length - 4)[0]:
        return None
    at = HEADER.size
    removed = [POSITION.unpack_from(data, at + 8 * i)[0] for i in range(n_removed)]
    cd_start = pos + at + POSITION.size * n_removed
    return Record(pos, pos + length, seq, base, prev, removed, cd_start, cd_size, count,
                  data_crc if flags & DATA_CRC else None)


def chain(fd: int, last: Record, file_size: int) -> Optional[List[Record]]:
    """Every record from the first after the checkpoint to ``last``, in
    order, or None if the chain is broken (each must be intact, built on the
    same checkpoint, numbered one after another)."""
    records = [last]
    while records[-1].prev:
        record = read(fd, records[-1].prev, file_size)
        if record is None or record.base != last.base or record.seq != records[-1].seq - 1:
            return None
        records.append(record)
    records.reverse()
    return records
