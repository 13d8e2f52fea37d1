"""Finding the end record and reading the central directory into the table.

``read_end`` locates the end-of-central-directory record (and its zip64
companions) of the archive as it stands; ``check_end`` says whether an end
record at a given position describes a central directory that really is
there; ``read_central_directory`` parses the directory into an
``EntryTable`` and a ``Tree``. Damage is reported as CorruptArchiveError with
a message naming what is wrong; a damaged member is recorded in ``bad`` so
only that member fails to read.
"""

import os
import stat
from typing import Dict, NamedTuple, Optional

from archfs.errors import CorruptArchiveError, NotAnArchiveError
from archfs.zipengine import format as fmt
from archfs.zipengine.entries import NO_OWNER, EntryTable
from archfs.zipengine.names import decode_name, safe_path
from archfs.zipengine.tree import Tree

TAIL_SEARCH = fmt.EOCD.size + fmt.MAX_COMMENT


class EndRecord(NamedTuple):
    """Where the central directory is, as one end record describes it."""

    eocd_pos: int        # position of the EOCD record
    end: int             # first byte after the EOCD and its comment
    cd_start: int        # absolute position of the first central record
    cd_size: int
    entries: int
    comment: bytes
    shift: int           # bytes prepended after the offsets were written (SFX)


def pread_exact(fd: int, size: int, pos: int) -> bytes:
    data = os.pread(fd, size, pos)
    while len(data) < size:
        more = os.pread(fd, size - len(data), pos + len(data))
        if not more:
            break
        data += more
    return data


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
    if sig != fmt.EOCD_SIG or disk != 0 or cd_disk != 0:
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
            dir_end, entries, cd_size, cd_offset = found
    cd_start = dir_end - cd_size
    shift = cd_start - cd_offset
    if cd_start < 0 or (shift != 0 and not allow_shift) or shift < 0:
        return None
    if entries:
        if pread_exact(fd, 4, cd_start) != fmt.CENTRAL_SIG:
            return None
    elif cd_size != 0:
        return None
    comment = pread_exact(fd, comment_len, eocd_pos + fmt.EOCD.size) if comment_len else b""
    return EndRecord(eocd_pos, end, cd_start, cd_size, entries, comment, shift)


def _read_zip64(fd, locator_pos, z64_pos, allow_shift):
    """(directory end, entries, cd size, cd offset) from a zip64 end record."""
    # the zip64 record sits right before the locator unless a prefix shifted it
    for pos in (z64_pos, locator_pos - fmt.ZIP64_EOCD.size):
        if pos < 0:
            continue
        raw = pread_exact(fd, fmt.ZIP64_EOCD.size, pos)
        if len(raw) < fmt.ZIP64_EOCD.size or raw[:4] != fmt.ZIP64_EOCD_SIG:
            continue
        (_sig, rest, _made, _need, disk, cd_disk, _n_here, entries, cd_size,
         cd_offset) = fmt.ZIP64_EOCD.unpack(raw)
        if disk != 0 or cd_disk != 0:
            return None
        if pos != z64_pos and not allow_shift:
            return None
        if pos + 12 + rest != locator_pos:
            return None
        return pos, entries, cd_size, cd_offset
    return None


def read_end(fd: int, file_size: int) -> Optional[EndRecord]:
    """The end record of a clean archive: the last one, ending at end of file."""
    if file_size < fmt.EOCD.size:
        return None
    start = max(0, file_size - TAIL_SEARCH)
    tail = pread_exact(fd, file_size - start, start)
    pos = tail.rfind(fmt.EOCD_SIG)
    while pos >= 0:
        if pos + fmt.EOCD.size <= len(tail):
            comment_len = int.from_bytes(tail[pos + 20:pos + 22], "little")
            if start + pos + fmt.EOCD.size + comment_len == file_size:
                found = check_end(fd, file_size, start + pos, tail[pos:pos + fmt.EOCD.size], True)
                if found is not None:
                    return found
        pos = tail.rfind(fmt.EOCD_SIG, 0, pos)
    return None


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
    if end.cd_start + end.cd_size > end.eocd_pos or end.cd_start < 0:
        raise CorruptArchiveError(
            "%s: central directory (offset %d, %d bytes) lies outside the file (%d bytes)"
            % (path, end.cd_start, end.cd_size, file_size))
    cd = pread_exact(fd, end.cd_size, end.cd_start)
    if len(cd) != end.cd_size:
        raise CorruptArchiveError("%s: central directory is cut short" % path)
    table = EntryTable()
    bad: Dict[int, str] = {}
    _parse_records(cd, end, table, bad, path, progress)
    tree = Tree(table)
    for row in range(len(table)):
        if not table.dead[row]:
            tree.insert(row)
    _mark_overlaps(table, bad, end.cd_start)
    return Parsed(table, tree, bad)


def _parse_records(cd: bytes, end: EndRecord, table: EntryTable, bad, path, progress) -> None:
    unpack = fmt.CENTRAL_HEADER.unpack_from
    header_size = fmt.CENTRAL_HEADER.size
    shift, base = end.shift, end.cd_start
    limit = len(cd)
    pos = 0
    count = 0
    tick = 1 << 16
    add = table.add
    while pos < limit:
        if pos + header_size > limit:
            raise CorruptArchiveError("%s: central directory record %d is cut short" % (path, count))
        (sig, made_by, _needed, flags, method, dtime, ddate, crc, csize, usize,
         nlen, xlen, clen, disk, _iattr, eattr, offset) = unpack(cd, pos)
        if sig != fmt.CENTRAL_SIG:
            raise CorruptArchiveError(
                "%s: central directory record %d has a bad signature" % (path, count))
        name_end = pos + header_size + nlen
        rec_end = name_end + xlen + clen
        if rec_end > limit:
            raise CorruptArchiveError("%s: central directory record %d is cut short" % (path, count))
        raw = cd[pos + header_size:name_end]
        ascii_name = raw.isascii()
        mtime_ns = None
        uid = gid = NO_OWNER
        unicode_path = None
        # a record is kept verbatim when its name needs no flag change: plain
        # ASCII reads the same either way, and setting the flag on the central
        # record alone would contradict the local header (unzip -t warns)
        canonical = ascii_name or bool(flags & fmt.FLAG_UTF8)
        if xlen:
            extra = cd[name_end:name_end + xlen]
            kept = []
            for tag, data in fmt.iter_extras(extra):
                if tag == fmt.EXTRA_ZIP64:
                    try:
                        usize, csize, offset = fmt.parse_zip64(data, usize, csize, offset)
                    except ValueError:
                        bad[len(table)] = "broken zip64 extra field"
                elif tag == fmt.EXTRA_TIMESTAMP:
                    secs = fmt.parse_timestamp(data)
                    if secs is not None and mtime_ns is None:
                        mtime_ns = secs * 1_000_000_000
                elif tag == fmt.EXTRA_NTFS:
                    ns = fmt.parse_ntfs_mtime_ns(data)
                    if ns is not None:
                        mtime_ns = ns
                elif tag == fmt.EXTRA_UNIX_OWNER:
                    owner = fmt.parse_unix_owner(data)
                    if owner is not None:
                        uid, gid = owner
                elif tag == fmt.EXTRA_UNICODE_PATH:
                    if not ascii_name and not flags & fmt.FLAG_UTF8:
                        unicode_path = fmt.parse_unicode_path(data, raw)
                else:
                    kept.append(fmt.build_extra(tag, data))
            if kept:
                table.extras[len(table)] = b"".join(kept)
        name = decode_name(raw, bool(flags & fmt.FLAG_UTF8), unicode_path)
        spath, is_dir = safe_path(name)
        if mtime_ns is None:
            mtime_ns = fmt.dos_to_ns(ddate, dtime)
        mode = _mode(made_by >> 8, eattr, is_dir)
        if clen:
            table.comments[len(table)] = cd[rec_end - clen:rec_end]
        # the local header must carry the name we will write: same bytes, and
        # decoded the same way by readers that ignore the Unicode Path field
        relocate = spath != name.rstrip("/") or not (ascii_name or canonical)
        row = add(spath, offset + shift, csize, usize, crc, method, flags, mtime_ns, mode,
                  uid, gid, base + pos if (canonical and not shift and not relocate) else -1,
                  rec_end - pos, relocate)
        if disk != 0:
            bad[row] = "member on another disk of a split archive"
        elif offset + shift >= end.cd_start:
            bad[row] = "local header offset points past the member data"
        pos = rec_end
        count += 1
        if progress is not None and count % tick == 0:
            progress(count)
    if count % 65536 != end.entries % 65536:  # some writers store the count modulo 2**16
        raise CorruptArchiveError("%s: central directory holds %d records, end record says %d"
                                  % (path, count, end.entries))


def _mode(host: int, eattr: int, is_dir: bool) -> int:
    unix = eattr >> 16 if host == fmt.HOST_UNIX else 0
    kind = stat.S_IFMT(unix)
    if kind == stat.S_IFLNK:
        return unix
    if is_dir or kind == stat.S_IFDIR or eattr & fmt.DOS_DIRECTORY:
        perm = unix & 0o7777 if unix else 0o755
        return stat.S_IFDIR | (perm or 0o755)
    if unix:
        return stat.S_IFREG | (unix & 0o7777)
    return stat.S_IFREG | (0o444 if eattr & fmt.DOS_READONLY else 0o644)


def _mark_overlaps(table: EntryTable, bad: Dict[int, str], cd_start: int) -> None:
    """Members whose data runs into another member's header (a zip bomb trick)."""
    rows = [r for r in range(len(table)) if not table.dead[r] and r not in bad]
    offsets, csizes = table.offset, table.csize
    if any(offsets[a] > offsets[b] for a, b in zip(rows, rows[1:])):
        rows.sort(key=offsets.__getitem__)
    for a, b in zip(rows, rows[1:]):
        if offsets[a] == offsets[b] or offsets[a] + fmt.LOCAL_HEADER.size + csizes[a] > offsets[b]:
            bad[a] = "member data overlaps another member"
            bad[b] = "member data overlaps another member"
    if rows:
        last = rows[-1]
        if offsets[last] + fmt.LOCAL_HEADER.size + csizes[last] > cd_start:
            bad[last] = "member data runs into the central directory"
