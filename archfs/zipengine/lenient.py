"""Reading a damaged archive, read-only: what other readers still find.

``read_leniently`` is used when the strict reading (``centraldir.py``)
refuses an archive and the mount is read-only. It changes nothing in the
file and keeps nothing but the member table, and tries in turn:

1. an end record anywhere in the last 64 KiB, whatever its disk numbers,
   record counts or comment length say (a truncated comment is cut);
2. the central directory where the end record puts it, else where its
   size puts it (the offsets of a prefixed archive count from the wrong
   base), else the chain of central records that ends nearest the end
   record; member offsets are taken from whichever base puts a local
   header where the first records point;
3. central records one by one: a record with a damaged signature or a
   wrong comment length is kept when its neighbours fix its bounds;
4. without a usable central directory, or when some records were lost, a
   scan of the local headers from the start (as ``archfs repair`` does,
   but in memory): members with their sizes in the local header, or whose
   data descriptor can be found.

Nothing here is trusted for content: every member read is still checked
against its CRC (or AES code) and fails with EIO otherwise. What was
repaired is summed up in one line for the mount's warning.
"""

import struct
from typing import Dict, List, NamedTuple, Optional, Tuple

from archfs.errors import CorruptArchiveError
from archfs.zipengine import format as fmt, records
from archfs.zipengine.centraldir import (
    SCAN_BLOCK,
    TAIL_SEARCH,
    _mark_overlaps,
    describe_unreadable,
    first_local_header,
    local_members,
    pread_exact,
)
from archfs.zipengine.entries import EntryTable
from archfs.zipengine.localheader import measure_stream, read_local_member
from archfs.zipengine.names import decode_name, safe_path
from archfs.zipengine.tree import Tree

HEAD = fmt.CENTRAL_HEADER.size
RESYNC = 1 << 16          # how far a record's end is looked for past where it claims to end
MAX_CHAIN_CANDIDATES = 4096


class Found(NamedTuple):
    table: EntryTable
    tree: Tree
    bad: Dict[int, str]
    cd_start: int         # where member data must end (the directory, or the file's end)
    comment: bytes
    notes: List[str]      # what was wrong, for the warning


class _End(NamedTuple):
    eocd_pos: int
    dir_end: int          # where the central directory should end
    entries: int
    cd_size: int
    cd_offset: int
    comment: bytes
    comment_len: int      # as recorded (more than ``comment`` holds when cut short)
    disk: int


def read_leniently(fd: int, size: int, path: str) -> Found:
    """The members that can be found, or the strict reader's error when none."""
    notes: List[str] = []
    table = EntryTable()
    bad: Dict[int, str] = {}
    comment = b""
    cd_start = size
    lost = True
    for end in _end_records(fd, size):
        located = _locate_directory(fd, end)
        if located is None:
            continue
        start, stop, base, how = located
        count, fixed = _parse(fd, start, stop, base, end.disk, path, table, bad)
        moved = _find_moved_members(fd, start, table) if count else 0
        first = first_local_header(fd, start)
        if not count or (first >= 0 and _local_name(fd, first) not in
                         {table.names[r] for r in range(len(table)) if table.offset[r] == first}):
            # none, or the directory of a zip stored inside this one (the
            # archive's own first member is not in it): not this archive's
            table, bad = EntryTable(), {}
            continue
        notes += how
        if fixed:
            notes.append("%d damaged central record%s read around" % (fixed, "s"[:fixed > 1]))
        if count != end.entries:
            notes.append("the end record counts %d members, the directory holds %d"
                         % (end.entries, count))
        if len(end.comment) < end.comment_len:
            notes.append("the archive comment is cut short")
        elif end.eocd_pos + fmt.EOCD.size + len(end.comment) < size:
            notes.append("%d bytes follow the end record"
                         % (size - end.eocd_pos - fmt.EOCD.size - len(end.comment)))
        comment = end.comment
        cd_start = start
        lost = fixed > 0
        if moved:
            notes.append("%d member%s found away from where the directory puts %s"
                         % (moved, "s"[:moved > 1], "them" if moved > 1 else "it"))
        break
    else:
        notes.append("no usable central directory")
    if lost:
        added = _scan_local_headers(fd, size if not len(table) else cd_start, table, bad)
        if added:
            notes.append("%d member%s found by their local headers" % (added, "s"[:added > 1]))
    if not len(table):
        raise describe_unreadable(fd, size, path)
    if len(bad) == len(table):
        reasons = sorted(set(bad.values()))
        raise CorruptArchiveError("%s: damaged zip: no member can be read (%s)"
                                  % (path, "; ".join(reasons[:3])))
    if not notes:
        notes.append("its end records contradict the central directory")
    _mark_overlaps(table, bad, cd_start)
    tree = Tree.build(table)
    return Found(table, tree, bad, cd_start, comment, notes)


# -- 1. end records --------------------------------------------------------------

def _end_records(fd: int, size: int):
    """Every end record in the tail, the last first, read leniently."""
    start = max(0, size - TAIL_SEARCH)
    tail = pread_exact(fd, size - start, start)
    pos = tail.rfind(fmt.EOCD_SIG)
    while pos >= 0:
        raw = tail[pos:pos + fmt.EOCD.size]
        if len(raw) == fmt.EOCD.size:
            (_sig, disk, _cd_disk, _here, entries, cd_size, cd_offset,
             comment_len) = fmt.EOCD.unpack(raw)
            at = start + pos
            comment = tail[pos + fmt.EOCD.size:pos + fmt.EOCD.size + comment_len]
            dir_end = at
            z64 = _zip64(fd, at)
            if z64 is not None:
                dir_end, entries, cd_size, cd_offset = z64
            yield _End(at, dir_end, entries, cd_size, cd_offset, comment, comment_len,
                       disk if disk != fmt.MAX16 else 0)
        pos = tail.rfind(fmt.EOCD_SIG, 0, pos)


def _zip64(fd: int, eocd_pos: int):
    locator_pos = eocd_pos - fmt.ZIP64_LOCATOR.size
    if locator_pos < 0:
        return None
    loc = pread_exact(fd, fmt.ZIP64_LOCATOR.size, locator_pos)
    if loc[:4] != fmt.ZIP64_LOCATOR_SIG:
        return None
    z64_pos = fmt.ZIP64_LOCATOR.unpack(loc)[2]
    for pos in (z64_pos, locator_pos - fmt.ZIP64_EOCD.size):
        if 0 <= pos < locator_pos:
            raw = pread_exact(fd, fmt.ZIP64_EOCD.size, pos)
            if raw[:4] == fmt.ZIP64_EOCD_SIG and len(raw) == fmt.ZIP64_EOCD.size:
                fields = fmt.ZIP64_EOCD.unpack(raw)
                return pos, fields[7], fields[8], fields[9]
    return None


# -- 2. where the central directory is -------------------------------------------------

def _locate_directory(fd: int, end: _End):
    """(start, stop, member offset base, notes) of the directory, or None."""
    dir_end = end.dir_end
    declared = end.cd_offset
    by_size = dir_end - end.cd_size
    tried = []
    for start, note in ((declared, None),
                        (by_size, "the central directory is not where its end record says")):
        if 0 <= start < dir_end and start not in tried:
            tried.append(start)
            stop = _chain_end(fd, start, dir_end)
            if stop is not None and dir_end - stop <= RESYNC:
                notes = [note] if note else []
                if stop != dir_end:
                    notes.append("%d stray bytes before the end record" % (dir_end - stop))
                if start == declared and end.cd_size != stop - start:
                    notes.append("the end record gives the directory's size wrong")
                return start, stop, _base(fd, start, declared), notes
    found = _search_chain(fd, dir_end)
    if found is None:
        return None
    start, stop = found
    notes = ["the central directory was found by searching for it"]
    if stop != dir_end:
        notes.append("%d stray bytes before the end record" % (dir_end - stop))
    return start, stop, _base(fd, start, declared), notes


def _chain_end(fd: int, start: int, dir_end: int) -> Optional[int]:
    """Where a chain of central records starting at ``start`` ends (None if
    ``start`` holds no central record)."""
    data = pread_exact(fd, dir_end - start, start)
    spans, _fixed = _split(data, 0)
    if not spans:
        return None
    return start + spans[-1][1]


def _search_chain(fd: int, dir_end: int) -> Optional[Tuple[int, int]]:
    """The chain of central records ending nearest before ``dir_end``."""
    starts = []
    hi = dir_end
    while hi > 0 and len(starts) < MAX_CHAIN_CANDIDATES:
        lo = max(0, hi - SCAN_BLOCK)
        block = pread_exact(fd, min(hi + 3, dir_end) - lo, lo)
        at = block.rfind(fmt.CENTRAL_SIG)
        while at >= 0 and len(starts) < MAX_CHAIN_CANDIDATES:
            if lo + at < hi:
                starts.append(lo + at)
            at = block.rfind(fmt.CENTRAL_SIG, 0, at)
        hi = lo
    best = None
    for start in sorted(starts):
        stop = _chain_end(fd, start, dir_end)
        if stop is None or dir_end - stop > RESYNC:
            continue
        if best is None or stop > best[1]:
            best = (start, stop)
    return best


def _base(fd: int, start: int, declared: int) -> int:
    """What to add to the records' local header offsets: 0, or the distance
    the directory moved (a prefix the offsets do not count): whichever puts
    a local header of the first record's name where that record points."""
    shift = start - declared
    first = pread_exact(fd, HEAD, start)
    if len(first) < HEAD or first[:4] != fmt.CENTRAL_SIG:
        return 0
    fields = fmt.CENTRAL_HEADER.unpack(first)
    flags, nlen, offset = fields[3], fields[10], fields[16]
    name = safe_path(decode_name(pread_exact(fd, nlen, start + HEAD),
                                 bool(flags & fmt.FLAG_UTF8)))[0]
    candidates = (0, shift) if shift else (0,)
    for base in candidates:
        if offset + base >= 0 and _local_name(fd, offset + base) == name:
            return base
    for base in candidates:
        if offset + base >= 0 and pread_exact(fd, 4, offset + base) == fmt.LOCAL_SIG:
            return base
    return 0


# -- 3. central records one by one ---------------------------------------------------

def _split(data: bytes, pos: int):
    """([(start, end)] of the records in ``data`` from ``pos``, how many needed fixing).

    A record's signature may be damaged, or its comment length wrong, when
    the records around it say where it really ends.
    """
    spans = []
    fixed = 0
    end = len(data)
    while pos + HEAD <= end:
        good_sig = data[pos:pos + 4] == fmt.CENTRAL_SIG
        nlen, xlen, clen = struct.unpack_from("<HHH", data, pos + 28)
        body = pos + HEAD + nlen + xlen
        claimed = body + clen
        if claimed == end or (claimed < end and data[claimed:claimed + 4] == fmt.CENTRAL_SIG):
            if not good_sig:
                if not spans and claimed != end:
                    break            # nothing before vouches for it
                fixed += 1
            spans.append((pos, claimed))
            pos = claimed
            continue
        if not good_sig or body > end:
            break
        # the comment length is wrong: the record ends where the next begins
        nxt = data.find(fmt.CENTRAL_SIG, body, min(end, claimed + RESYNC))
        stop = nxt if nxt >= 0 else (end if end - body <= RESYNC else -1)
        if stop < 0:
            break
        fixed += 1
        spans.append((pos, stop))
        pos = stop
    return spans, fixed


def _parse(fd: int, start: int, stop: int, base: int, disk: int, path: str,
           table: EntryTable, bad: Dict[int, str]) -> Tuple[int, int]:
    """Parse the records between ``start`` and ``stop`` into the table;
    (records parsed, records that needed fixing)."""
    data = pread_exact(fd, stop - start, start)
    spans, fixed = _split(data, 0)
    cursor = records.Cursor(start, base, path, None, disk)
    for a, b in spans:
        record = bytearray(data[a:b])
        nlen, xlen = struct.unpack_from("<HH", record, 28)
        comment_len = b - a - HEAD - nlen - xlen
        if comment_len < 0:
            continue
        record[0:4] = fmt.CENTRAL_SIG
        struct.pack_into("<H", record, 32, comment_len)
        try:
            records.parse_one(bytes(record), 0, start + a, table, bad, cursor)
        except (struct.error, IndexError, ValueError, OverflowError, CorruptArchiveError):
            continue
        cursor.count += 1
    return cursor.count, fixed


def _find_moved_members(fd: int, limit: int, table: EntryTable) -> int:
    """Rows whose offset holds no local header get the offset of a local
    header of the same name that no other row uses (a writer that left the
    data descriptors out of its offsets); returns how many moved."""
    offsets = table.offset
    missing = [r for r in range(len(table))
               if pread_exact(fd, 4, offsets[r]) != fmt.LOCAL_SIG]
    if not missing:
        return 0
    used = set(offsets)
    by_name: Dict[str, List[int]] = {}
    pos = 0
    while pos < limit:
        block = pread_exact(fd, min(SCAN_BLOCK + 3, limit - pos), pos)
        hit = block.find(fmt.LOCAL_SIG)
        while hit >= 0:
            at = pos + hit
            if at < limit and at not in used:
                name = _local_name(fd, at)
                if name is not None:
                    by_name.setdefault(name, []).append(at)
            hit = block.find(fmt.LOCAL_SIG, hit + 1)
        pos += SCAN_BLOCK
    moved = 0
    for r in missing:
        candidates = by_name.get(table.names[r])
        if candidates:
            offsets[r] = candidates.pop(0)
            moved += 1
    return moved


def _local_name(fd: int, at: int) -> Optional[str]:
    found = fmt.read_local_header(lambda n, p: pread_exact(fd, n, p), at)
    if found is None:
        return None
    flags, nlen = found[0][2], found[0][9]
    raw = pread_exact(fd, nlen, at + fmt.LOCAL_HEADER.size)
    return safe_path(decode_name(raw, bool(flags & fmt.FLAG_UTF8)))[0]


# -- 4. local headers ---------------------------------------------------------------

def _scan_local_headers(fd: int, limit: int, table: EntryTable, bad: Dict[int, str]) -> int:
    """Add the members whose local headers lie before ``limit`` and that the
    table does not list yet; returns how many were added."""
    known = set(table.offset)
    added = 0
    for at, (row_fields, _next, why) in local_members(fd, limit, _member_at):
        if at not in known:
            row = table.add(*row_fields)
            if why:
                bad[row] = why
            added += 1
    return added


def _member_at(fd: int, at: int, limit: int):
    """(table row fields, where the next member may start, why it cannot be
    read or None) for the local header at ``at``; None if it is not one."""
    member = read_local_member(fd, at, limit)
    if member is None or member.name_length == 0:
        return None
    name, _nlen, flags, method, crc, csize, usize, mtime_ns, data_start = member
    path, is_dir = safe_path(name)
    mode = (0o40755 if is_dir else 0o100644)
    why = None
    after = data_start + csize
    if flags & fmt.FLAG_DESCRIPTOR and not (csize and crc):
        measured = _descriptor_sizes(fd, data_start, limit, method)
        if measured is None:     # listed, for what it is worth, but never served
            why = "the end of this member's data cannot be found (the archive is cut short?)"
            csize, after = 0, data_start
        else:
            csize, usize, crc, after = measured
    elif after > limit:
        why = "the archive ends inside this member"
        after = limit
    if method == fmt.AES_MARKER:
        why = why or "an AES member found without its central record (no key strength known)"
    row = (path or "unnamed", at, csize, usize, crc, method, flags, mtime_ns, mode)
    return row, after, why


def _descriptor_sizes(fd: int, start: int, limit: int, method: int):
    """(csize, usize, crc, end) of member data whose sizes are only in the
    data descriptor after it: stored data up to the first descriptor whose
    size fits, compressed data up to where its stream ends."""
    if method == fmt.STORED:
        pos = start
        while pos < limit:
            block = pread_exact(fd, min(SCAN_BLOCK + 16, limit - pos), pos)
            hit = block.find(fmt.DESCRIPTOR_SIG)
            while hit >= 0:
                at = pos + hit
                desc = pread_exact(fd, 16, at)
                if len(desc) == 16 and int.from_bytes(desc[8:12], "little") == at - start:
                    return at - start, at - start, int.from_bytes(desc[4:8], "little"), at + 16
                hit = block.find(fmt.DESCRIPTOR_SIG, hit + 1)
            pos += SCAN_BLOCK
        return None
    measured = measure_stream(fd, start, limit, method)
    if measured is None:
        return None
    end, usize, _crc = measured
    try:
        desc = pread_exact(fd, 16, end)
    except (OSError, ValueError):
        return None
    skip = 4 if desc[:4] == fmt.DESCRIPTOR_SIG else 0
    stored_crc = int.from_bytes(desc[skip:skip + 4], "little")
    return end - start, usize, stored_crc, end + skip + 12
