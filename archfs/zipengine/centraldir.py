"""Finding the end record and reading the central directory into the table.

``read_end`` locates the end-of-central-directory record (and its zip64
companions) of the archive as it stands; ``check_end`` says whether an end
record at a given position describes a central directory that really is
there; ``read_central_directory`` parses the directory into an
``EntryTable`` and a ``Tree``. Damage is reported as CorruptArchiveError with
a message naming what is wrong; a damaged member is recorded in ``bad`` so
only that member fails to read.
"""

import struct
from typing import Dict, NamedTuple, Optional

from archfs.engine import fileaccess
from archfs.errors import CorruptArchiveError, NotAnArchiveError
from archfs.zipengine import format as fmt, records
from archfs.zipengine.entries import EntryTable
from archfs.zipengine.tree import Tree

TAIL_SEARCH = fmt.EOCD.size + fmt.MAX_COMMENT
SCAN_BLOCK = 1 << 20


class EndRecord(NamedTuple):
    """Where the central directory is, as one end record describes it."""

    eocd_pos: int        # position of the EOCD record
    end: int             # first byte after the EOCD and its comment
    cd_start: int        # absolute position of the first central record
    cd_size: int
    entries: int
    comment: bytes
    shift: int           # bytes prepended after the offsets were written (SFX)
    disk: int = 0        # the disk number every record names (a "split" archive of one file)


def pread_exact(fd, size: int, pos: int) -> bytes:
    """Read from a descriptor or a transport (``archfs.engine.fileaccess``)."""
    return fileaccess.pread_exact(fd, size, pos)


def check_end(fd: int, file_size: int, eocd_pos: int, record: bytes,
              allow_shift: bool) -> Optional[EndRecord]:
    """The EndRecord of an EOCD at ``eocd_pos`` if its directory checks out.

    ``record`` holds at least the 22 EOCD bytes (more is ignored). The
    central directory must end right where the EOCD (or the zip64 record)
    starts and begin with a central header; with ``allow_shift`` the stored
    offsets may be off by a prefix (self-extracting archives).
    """
    (sig, disk, cd_disk, _n_here, entries, cd_size, cd_offset,
     comment_len) = fmt.EOCD.unpack_from(record, 0)
    if sig != fmt.EOCD_SIG:
        return None
    end = eocd_pos + fmt.EOCD.size + comment_len
    if end > file_size:
        return None
    dir_end = eocd_pos
    locator_pos = eocd_pos - fmt.ZIP64_LOCATOR.size
    if locator_pos >= 0:
        loc = pread_exact(fd, fmt.ZIP64_LOCATOR.size, locator_pos)
        if loc[:4] == fmt.ZIP64_LOCATOR_SIG:
            _sig, _disk, z64_pos, _total = fmt.ZIP64_LOCATOR.unpack(loc)
            found = _read_zip64(fd, locator_pos, z64_pos, allow_shift)
            if found is None:
                return None
            # the zip64 record's numbers stand (the end record may hold 0xFFFF)
            dir_end, entries, cd_size, cd_offset, disk, cd_disk = found
    if disk != cd_disk:
        return None            # the directory starts on another disk: a real split archive
    cd_start = dir_end - cd_size
    shift = cd_start - cd_offset
    if cd_start < 0 or (shift != 0 and not allow_shift) or shift < 0:
        return None
    if shift and not entries:
        return None    # an empty directory said to lie elsewhere: a torn or stray record
    if entries:
        if pread_exact(fd, 4, cd_start) != fmt.CENTRAL_SIG:
            return None
    elif cd_size != 0:
        return None
    comment = pread_exact(fd, comment_len, eocd_pos + fmt.EOCD.size) if comment_len else b""
    return EndRecord(eocd_pos, end, cd_start, cd_size, entries, comment, shift, disk)


def _read_zip64(fd, locator_pos, z64_pos, allow_shift):
    """(directory end, entries, cd size, cd offset, disk, cd disk) from a zip64
    end record (disk fields of 0xFFFFFFFF, placeholders some writers leave, read as 0)."""
    # the zip64 record sits right before the locator unless a prefix shifted it
    for pos in (z64_pos, locator_pos - fmt.ZIP64_EOCD.size):
        if pos < 0:
            continue
        raw = pread_exact(fd, fmt.ZIP64_EOCD.size, pos)
        if len(raw) < fmt.ZIP64_EOCD.size or raw[:4] != fmt.ZIP64_EOCD_SIG:
            continue
        (_sig, rest, _made, _need, disk, cd_disk, _n_here, entries, cd_size,
         cd_offset) = fmt.ZIP64_EOCD.unpack(raw)
        if (disk, cd_disk) == (fmt.MAX32, fmt.MAX32):
            disk = cd_disk = 0
        if pos != z64_pos and not allow_shift:
            return None
        if pos + 12 + rest != locator_pos:
            return None
        return pos, entries, cd_size, cd_offset, disk, cd_disk
    return None


def read_end(fd: int, file_size: int) -> Optional[EndRecord]:
    """The end record of a clean archive: one whose record and comment end
    exactly at the end of the file. Of several such, the first: the others
    lie inside its comment (a zip stored in the archive comment)."""
    if file_size < fmt.EOCD.size:
        return None
    start = max(0, file_size - TAIL_SEARCH)
    tail = pread_exact(fd, file_size - start, start)
    pos = tail.find(fmt.EOCD_SIG)
    while pos >= 0:
        if pos + fmt.EOCD.size <= len(tail):
            comment_len = int.from_bytes(tail[pos + 20:pos + 22], "little")
            if start + pos + fmt.EOCD.size + comment_len == file_size:
                found = check_end(fd, file_size, start + pos, tail[pos:pos + fmt.EOCD.size], True)
                if found is not None and (not found.shift or _shift_fits(fd, found)):
                    return found
        pos = tail.find(fmt.EOCD_SIG, pos + 1)
    return None


def _shift_fits(fd: int, end: EndRecord) -> bool:
    """Whether a prefix shift is a self-extracting stub: the archive's first
    local header sits exactly at the shift. (A zip stored inside a cut zip
    has a shift too, but the outer archive's headers come before it.)"""
    return first_local_header(fd, end.eocd_pos) == end.shift


def first_local_header(fd: int, limit: int) -> int:
    """Position of the first local header signature before ``limit``, or -1."""
    return next_local_signature(fd, 0, limit)


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


def local_members(fd, limit: int, member_at):
    """(offset, ``member_at(fd, offset, limit)``) for each local header
    before ``limit`` that ``member_at`` can read (None: it cannot; the
    search goes on one byte later); the search goes on where the member
    ends, the second item of what ``member_at`` returns."""
    pos = 0
    while True:
        at = next_local_signature(fd, pos, limit)
        if at < 0:
            return
        member = member_at(fd, at, limit)
        if member is None:
            pos = at + 1
            continue
        yield at, member
        pos = max(member[1], at + 1)


def parse_guarded(fd, start: int, size: int, table: EntryTable, bad: Dict[int, str],
                  cursor, where) -> None:
    """``records.parse_all`` over the file ``fd``. Every check the parser
    makes raises CorruptArchiveError itself; this is the net for a crafted
    record no check foresaw, named by ``where()``."""
    try:
        records.parse_all(lambda n, pos: pread_exact(fd, n, pos), start, size, table, bad,
                          cursor)
    except (struct.error, IndexError, ValueError, OverflowError) as exc:
        raise CorruptArchiveError("%s (%s)" % (where(), exc)) from None


def describe_unreadable(fd: int, file_size: int, path: str) -> Exception:
    """The error for a file with no usable end record: what it looks like."""
    if file_size == 0:
        return NotAnArchiveError("%s: empty file, not a zip archive" % path)
    head = pread_exact(fd, 4, 0)
    if head == fmt.LOCAL_SIG:
        return CorruptArchiveError(
            "%s: truncated or damaged zip: no valid end of central directory "
            "(archfs repair can salvage its members)" % path)
    return NotAnArchiveError("%s: not a zip archive" % path)


class Parsed(NamedTuple):
    table: EntryTable
    tree: Tree
    bad: Dict[int, str]      # row -> why it cannot be read


def read_central_directory(fd: int, file_size: int, end: EndRecord, path: str,
                           progress=None) -> Parsed:
    """Parse the central directory described by ``end``."""
    table, bad = parse_records(fd, file_size, end, path, progress)
    mark_overlaps(table, bad, end.cd_start)    # before the tree respells duplicate names
    tree = Tree.build(table)
    return Parsed(table, tree, bad)


def parse_records(fd: int, file_size: int, end: EndRecord, path: str, progress=None):
    """(table, bad) of the central directory described by ``end``, no tree yet."""
    if end.cd_start + end.cd_size > end.eocd_pos or end.cd_start < 0:
        raise CorruptArchiveError(
            "%s: central directory (offset %d, %d bytes) lies outside the file (%d bytes)"
            % (path, end.cd_start, end.cd_size, file_size))
    table = EntryTable()
    bad: Dict[int, str] = {}
    cursor = records.Cursor(end.cd_start, end.shift, path, progress, end.disk)
    parse_guarded(fd, end.cd_start, end.cd_size, table, bad, cursor,
                  lambda: "%s: damaged central directory record %d" % (path, cursor.count))
    if cursor.count % 65536 != end.entries % 65536:  # some writers store the count modulo 2**16
        raise CorruptArchiveError("%s: central directory holds %d records, end record says %d"
                                  % (path, cursor.count, end.entries))
    return table, bad


def mark_overlaps(table: EntryTable, bad: Dict[int, str], cd_start: int) -> None:
    """Members whose data runs into another member's header (a zip bomb trick).
    A record repeated whole (same name, same data) is one member listed twice."""
    offsets, csizes, dead = table.offset, table.csize, table.dead
    rows = range(len(table))
    if dead.count(1) or bad or any(a > b for a, b in zip(offsets, offsets[1:])):
        # a row already unreadable (on another disk, say) overlaps nothing
        rows = sorted((r for r in rows if not dead[r] and r not in bad),
                      key=offsets.__getitem__)
    header = fmt.LOCAL_HEADER.size
    names, crcs = table.names, table.crc
    prev, prev_end = -1, 0
    for r in rows:
        start = offsets[r]
        if prev >= 0 and start == offsets[prev] and names[r] == names[prev] \
                and csizes[r] == csizes[prev] and crcs[r] == crcs[prev]:
            continue        # one member listed twice under its name: no overlap
        if prev >= 0 and start < prev_end:
            why = "member data overlaps another member"
            bad.setdefault(prev, why)
            bad.setdefault(r, why)
        end = start + header + csizes[r]
        if end > prev_end or prev < 0:
            prev, prev_end = r, end
    if prev >= 0 and prev_end > cd_start and prev not in bad:
        bad[prev] = "member data runs into the central directory"


_mark_overlaps = mark_overlaps     # the name lenient.py imports
