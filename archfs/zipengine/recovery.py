"""Finding the last durable state after a crash, and cutting off the rest.

The durable state of an archive is its last checkpoint (a complete central
directory and end record) plus the chain of intact journal records appended
after it (see ``journal.py`` and ``store/__init__.py``). A crash leaves that
state followed by an unfinished tail. ``find_state`` scans backward for
journal records and end records and takes the newest that checks out: a
journal record whose chain leads back to a checkpoint whose directory
parses, or an end record whose directory parses. ``replay`` applies the
chain to the checkpoint's table.

An end record found inside member data (a zip stored in the zip) is not
taken for the archive's own: its offsets only fit with a shift, and the
only shift accepted is that of a self-extracting stub, which puts the
archive's first local header exactly at the shift.
"""

import bisect
import os
import zlib
from typing import Dict, List, NamedTuple, Optional, Tuple

from archfs.errors import CorruptArchiveError
from archfs.zipengine import extents, format as fmt, journal, records
from archfs.zipengine.centraldir import (
    EndRecord,
    check_end,
    first_local_header,
    parse_guarded,
    parse_records,
    pread_exact,
)
from archfs.zipengine.entries import EntryTable
from archfs.zipengine.writer import PLACEHOLDER_SIG

SCAN_BLOCK = 1 << 20
# what an unfinished commit of archfs can begin with: a member, a member
# whose header is not yet final, a central directory, end records, a journal record
OWN_TAIL_SIGS = (fmt.LOCAL_SIG, PLACEHOLDER_SIG, fmt.CENTRAL_SIG, fmt.ZIP64_EOCD_SIG,
                 fmt.EOCD_SIG, journal.MAGIC)


class State(NamedTuple):
    base: EndRecord                  # the checkpoint
    records: List[journal.Record]    # the journal chain after it, oldest first
    end: int                         # first byte after the state
    parsed: Optional[Tuple[EntryTable, Dict[int, str]]]   # the checkpoint's table, if parsed


def find_state(fd: int, file_size: int, path: str = "", progress=None) -> Optional[State]:
    """The newest durable state in the file, or None if there is none."""
    stub: List[int] = []
    checked: Dict[int, object] = {}      # EOCD position -> (EndRecord, parsed) or None
    hi = file_size
    while hi > 0:
        lo = max(0, hi - SCAN_BLOCK)
        block = pread_exact(fd, min(hi + len(journal.MAGIC) - 1, file_size) - lo, lo)
        hits = _positions(block, fmt.EOCD_SIG, lo, hi) + _positions(block, journal.MAGIC, lo, hi)
        for pos in sorted(hits, reverse=True):
            if pread_exact(fd, 4, pos) == fmt.EOCD_SIG:
                found = _checkpoint(fd, file_size, pos, path, stub, checked, progress)
                if found is not None:
                    return State(found[0], [], found[0].end, found[1])
                continue
            record = journal.read(fd, pos, file_size)
            if record is None:
                continue
            chain = journal.chain(fd, record, file_size)
            if chain is None:
                continue
            found = _checkpoint(fd, file_size, record.base, path, stub, checked, progress)
            if found is not None and _framed(fd, found[0].end, chain):
                return State(found[0], chain, record.end, found[1])
        hi = lo
    return None


def _framed(fd: int, start: int, chain: List[journal.Record]) -> bool:
    """Whether each record begins exactly where the members appended before
    it end, walking their local headers from the checkpoint. A record-like
    block inside member data (or after a member whose header was never
    finished) is thereby never taken for one of archfs's own."""
    window = extents.Window(fd)
    pos = start
    for record in chain:
        first = pos
        while pos < record.pos:
            length = _walk(window, pos)
            if length is None:
                return False
            pos += length
        if pos != record.pos:
            return False
        if record.data_crc is not None and _crc(fd, first, record.pos) != record.data_crc:
            return False         # synced with its data in one go, and the data did not land
        pos = record.end
    return True


def _crc(fd: int, start: int, end: int) -> int:
    crc = 0
    while start < end:
        chunk = pread_exact(fd, min(SCAN_BLOCK, end - start), start)
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        start += len(chunk)
    return crc


def _walk(pread, pos: int) -> Optional[int]:
    """Length of the member whose local header is at ``pos`` (sizes taken
    from that header), or None if no finished local header is there."""
    found = fmt.read_local_header(pread, pos)
    if found is None:
        return None
    fields, data_start = found
    csize, usize = fields[7], fields[8]
    if fmt.MAX32 in (csize, usize):
        extra = pread(fields[10], pos + fmt.LOCAL_HEADER.size + fields[9])
        for tag, data in fmt.iter_extras(extra):
            if tag == fmt.EXTRA_ZIP64:
                try:
                    usize, csize, _ = fmt.parse_zip64(data, usize, csize, 0)
                except ValueError:
                    return None
    return extents.member_length(pread, pos, csize, usize)


def find_last_good_end(fd: int, file_size: int, path: str = "") -> Optional[EndRecord]:
    """The newest checkpoint (ignoring journal records after it)."""
    state = find_state(fd, file_size, path)
    return None if state is None else state.base


def _positions(block: bytes, sig: bytes, lo: int, hi: int) -> List[int]:
    found = []
    at = block.rfind(sig)
    while at >= 0:
        if lo + at < hi:
            found.append(lo + at)
        at = block.rfind(sig, 0, at)
    return found


def _checkpoint(fd, file_size, pos, path, stub, checked, progress):
    """(EndRecord, (table, bad)) of a checkpoint at ``pos`` whose directory parses."""
    if pos in checked:
        return checked[pos]
    checked[pos] = None
    record = pread_exact(fd, fmt.EOCD.size, pos)
    if len(record) != fmt.EOCD.size:
        return None
    end = check_end(fd, file_size, pos, record, allow_shift=True)
    if end is not None and end.shift:
        if not stub:
            stub.append(first_local_header(fd, file_size))
        if end.shift != stub[0]:
            end = None
    if end is None:
        return None
    try:
        parsed = parse_records(fd, file_size, end, path, progress)
    except (CorruptArchiveError, ValueError, UnicodeError):
        return None
    checked[pos] = (end, parsed)
    return checked[pos]


def replay(fd: int, records_: List[journal.Record], table: EntryTable, bad: Dict[int, str],
           path: str = "") -> None:
    """Apply journal records to the checkpoint's table: rows whose record a
    journal record supersedes die, its central records become new rows.

    ``durable_at`` grows with the row number (the checkpoint's records in
    order, then each journal record's), so a superseded position is found
    by bisection.
    """
    durable = table.durable_at
    for rec in records_:
        for pos in rec.removed:
            row = bisect.bisect_left(durable, pos)
            if row >= len(durable) or durable[row] != pos:
                raise CorruptArchiveError("%s: journal record %d supersedes no record at %d"
                                          % (path, rec.seq, pos))
            table.dead[row] = 1
        first = len(table)
        cursor = records.Cursor(rec.pos, 0, path, None)
        parse_guarded(fd, rec.cd_start, rec.cd_size, table, bad, cursor,
                      lambda: "%s: damaged journal record %d" % (path, rec.seq))
        if cursor.count != rec.count:
            raise CorruptArchiveError("%s: journal record %d holds %d records, not %d"
                                      % (path, rec.seq, cursor.count, rec.count))
        for row in range(first, len(table)):
            if table.durable_at[row] < 0:
                table.durable_at[row] = table.record_at[row]


def is_own_tail(fd: int, start: int, file_size: int) -> bool:
    """Whether the bytes after the last durable state look like an unfinished commit.

    archfs's tails begin with a local header (possibly a placeholder), a
    central header, an end record or a journal record; a crash can also
    leave zeros where the data had not reached the disk. Anything else is
    somebody else's data and is not cut without being asked (``archfs
    repair``).
    """
    head = pread_exact(fd, min(4096, file_size - start), start)
    if not head.strip(b"\x00"):
        return True
    sig = head[:8].rstrip(b"\x00")   # a signature may be cut short, followed by zeros
    return any(own.startswith(sig[:len(own)]) for own in OWN_TAIL_SIGS)


def cut_tail(fd, end: int) -> None:
    """Truncate the archive (a descriptor or a transport) to ``end`` and make
    that durable."""
    if not isinstance(fd, int):
        fd.truncate(end)
        fd.sync()
        return
    os.ftruncate(fd, end)
    os.fsync(fd)
