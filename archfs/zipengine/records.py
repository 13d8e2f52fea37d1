"""Parsing central directory records into the member table, fast.

A million records parsed one ``struct.unpack`` at a time take many seconds
of Python. Here the directory is read in chunks, the record boundaries are
found in one tight loop, and every fixed-size field is then pulled out for
the whole chunk at once as a column (byte planes copied with slice
assignment, which runs in C). Names are decoded with one ``decode`` and one
``split`` per chunk, and when every record of a chunk has the same layout of
extra fields (one tool wrote them all), timestamps and owners are pulled out
as columns too.

Anything irregular (non-ASCII names, odd names, zip64 fields, unknown extra
fields, comments) sends that chunk down ``_parse_one``, the plain reference
parser, record by record. Both paths fill the table identically.
"""

import bisect
import itertools
import os
import stat
import struct
from array import array
from typing import Dict

from archfs.errors import CorruptArchiveError
from archfs.zipengine import format as fmt
from archfs.zipengine.entries import NO_OWNER, NO_TIME, SPECIAL_TYPES, EntryTable
from archfs.zipengine.names import NAME_MAX, decode_name, has_odd_names, safe_path

HEAD = fmt.CENTRAL_HEADER.size      # 46
CHUNK = 8 << 20
_LENGTHS = struct.Struct("<HHH")
NS = 1_000_000_000
_NTFS_EPOCH_NS = 11644473600 * NS


class Cursor:
    """Where parsing stands across chunks."""

    def __init__(self, cd_start: int, shift: int, path: str, progress, disk: int = 0):
        self.cd_start = cd_start
        self.shift = shift
        self.disk = disk          # the one disk of a "split" archive that is one file
        self.path = path
        self.progress = progress
        self.count = 0
        self.mode_cache: Dict[tuple, int] = {}


def parse_chunk(data: bytes, base: int, final: bool, table: EntryTable, bad: Dict[int, str],
                cur: Cursor) -> int:
    """Parse the complete records in ``data`` (which starts at file position
    ``base``); returns how many bytes were consumed."""
    positions, nlens, used = _boundaries(data, final, cur)
    k = len(positions)
    if not k:
        return used
    heads = memoryview(b"".join([data[p:p + HEAD] for p in positions]))
    if bytes(heads[0::HEAD]) != b"P" * k or bytes(heads[1::HEAD]) != b"K" * k or \
            bytes(heads[2::HEAD]) != b"\x01" * k or bytes(heads[3::HEAD]) != b"\x02" * k:
        first = next(i for i in range(k) if data[positions[i]:positions[i] + 4] != fmt.CENTRAL_SIG)
        raise CorruptArchiveError("%s: central directory record %d has a bad signature"
                                  % (cur.path, cur.count + first))
    if _parse_fast(data, base, positions, nlens, heads, table, cur):
        _check_offsets(table, bad, len(table) - k, cur)
    else:
        for p in positions:
            _parse_one(data, p, base, table, bad, cur)
    cur.count += k
    if cur.progress is not None:
        cur.progress(cur.count)
    return used


def _boundaries(data: bytes, final: bool, cur: Cursor):
    """(record start positions, name lengths, bytes used) of the complete records."""
    lengths = _LENGTHS.unpack_from
    positions = array("q")
    nlens = array("H")
    pos, end = 0, len(data)
    while pos + HEAD <= end:
        nlen, xlen, clen = lengths(data, pos + 28)
        nxt = pos + HEAD + nlen + xlen + clen
        if nxt > end:
            break
        positions.append(pos)
        nlens.append(nlen)
        pos = nxt
    if final and pos != end:
        raise CorruptArchiveError("%s: central directory record %d is cut short"
                                  % (cur.path, cur.count + len(positions)))
    return positions, nlens, pos


def _parse_fast(data, base, positions, nlens, heads, table: EntryTable, cur: Cursor) -> bool:
    """The column-wise parse; False (having changed nothing) if the chunk is irregular."""
    k = len(positions)
    if cur.shift:
        return False
    xlens = _plane(heads, k, HEAD, 30, 2, "H")
    clens = _plane(heads, k, HEAD, 32, 2, "H")
    if max(clens):
        return False
    csize = _plane(heads, k, HEAD, 20, 4, "I")
    usize = _plane(heads, k, HEAD, 24, 4, "I")
    offset = _plane(heads, k, HEAD, 42, 4, "I")
    if fmt.MAX32 in (max(csize), max(usize), max(offset)):
        return False          # zip64 values live in the extra fields
    if max(_plane(heads, k, HEAD, 34, 2, "H")):
        return False          # a member on another disk
    if any(f & fmt.FLAG_ENCRYPTED for f in bytes(heads[8::HEAD])):
        return False          # encrypted: its stored MS-DOS time is kept
    raw = b"\x00".join([data[p + HEAD:p + HEAD + n] for p, n in zip(positions, nlens)])
    if not raw.isascii() or raw.count(0) != k - 1:
        return False
    text = raw.decode("ascii")
    if has_odd_names(text):
        return False
    if max(nlens) > NAME_MAX and any(
            len(part) > NAME_MAX for n, p in zip(nlens, positions) if n > NAME_MAX
            for part in data[p + HEAD:p + HEAD + n].split(b"/")):
        return False
    xlen = xlens[0]
    if min(xlens) != max(xlens):
        return False
    times = _extra_columns(data, positions, nlens, xlen, k)
    if times is None:
        return False
    ut, ntfs, uid, gid, ntfs_atime = times
    names = text.split("\x00")
    modes = _modes(heads, k, names, text, cur)
    atimes = None
    if ntfs is not None:
        if max(ntfs) >= (fmt.MAX_NS + _NTFS_EPOCH_NS) // 100 or (
                ntfs_atime is not None and max(ntfs_atime) >= (fmt.MAX_NS + _NTFS_EPOCH_NS) // 100):
            return False      # a time past year 2262: clamp it record by record
        mtimes = array("q", [t * 100 - _NTFS_EPOCH_NS for t in ntfs])
        if ntfs_atime is not None and ntfs_atime != ntfs:
            atimes = array("q", [NO_TIME if a == t or not a else a * 100 - _NTFS_EPOCH_NS
                                 for t, a in zip(ntfs, ntfs_atime)])
    elif ut is not None:
        mtimes = array("q", [t * NS for t in ut])
    else:
        dates = _plane(heads, k, HEAD, 14, 2, "H")
        dtimes = _plane(heads, k, HEAD, 12, 2, "H")
        mtimes = array("q", map(fmt.dos_to_ns, dates, dtimes))
    table.names.extend(names)
    table.offset.extend(offset.tolist())
    table.csize.extend(csize.tolist())
    table.usize.extend(usize.tolist())
    table.crc.extend(_plane(heads, k, HEAD, 16, 4, "I"))
    table.method.extend(_plane(heads, k, HEAD, 10, 2, "H"))
    table.flags.extend(_plane(heads, k, HEAD, 8, 2, "H"))
    table.mtime_ns.extend(mtimes)
    table.mode.extend(modes)
    table.uid.extend(uid if uid is not None else array("I", [NO_OWNER]) * k)
    table.gid.extend(gid if gid is not None else array("I", [NO_OWNER]) * k)
    table.record_at.extend(array("q", map(base.__add__, positions)))
    table.durable_at.extend(table.record_at[-k:])
    table.record_len.extend(array("I", map((HEAD + xlen).__add__, nlens)))
    table.dead.extend(bytes(k))
    table.relocate.extend(bytes(k))
    if atimes is not None and table.atime_ns is None:
        table.atime_ns = array("q", [NO_TIME]) * (len(table) - k)
    if table.atime_ns is not None:
        table.atime_ns.extend(atimes if atimes is not None else array("q", [NO_TIME]) * k)
    return True


def _modes(heads: memoryview, k: int, names, text: str, cur: Cursor) -> array:
    """st_mode of each record; strips the trailing slash of directory names."""
    hosts = bytes(heads[5::HEAD])
    eattrs = _plane(heads, k, HEAD, 38, 4, "I")
    host = hosts[0]
    if hosts.count(host) != k:
        modes = array("H", map(unix_mode, hosts, eattrs, [n.endswith("/") for n in names]))
    else:
        by_attr = {e: unix_mode(host, e, False) for e in set(eattrs)}
        modes = array("H", map(by_attr.__getitem__, eattrs))
        # names ending in "/" are directories whatever their attributes say
        if text.endswith("/"):
            _mark_dir(names, modes, k - 1, host, eattrs)
        at = text.find("/\x00")
        if at >= 0:
            starts = _name_index(text)
            while at >= 0:
                _mark_dir(names, modes, bisect.bisect_right(starts, at) - 1, host, eattrs)
                at = text.find("/\x00", at + 2)
        return modes
    for i, name in enumerate(names):
        if name.endswith("/"):
            names[i] = name.rstrip("/")
    return modes


def _mark_dir(names, modes, i: int, host: int, eattrs) -> None:
    names[i] = names[i].rstrip("/")
    modes[i] = unix_mode(host, eattrs[i], True)


def _name_index(text: str) -> array:
    """Start offset of each NUL-separated name in ``text``."""
    lengths = map(len, text.split("\x00"))
    starts = array("q", [0])
    starts.extend(itertools.accumulate(n + 1 for n in lengths))
    return starts


def _extra_columns(data, positions, nlens, xlen, k):
    """(ut, ntfs, uid, gid, ntfs atime) columns when every record's extras
    share one layout.

    Each is None when absent; the whole result is None when the layout varies
    or holds a field that must be read record by record.
    """
    if xlen == 0:
        return None, None, None, None, None
    blob = memoryview(b"".join([data[p + HEAD + n:p + HEAD + n + xlen]
                                for p, n in zip(positions, nlens)]))
    first = bytes(blob[:xlen])
    layout = []
    pos = 0
    while pos + 4 <= xlen:
        tag = int.from_bytes(first[pos:pos + 2], "little")
        size = int.from_bytes(first[pos + 2:pos + 4], "little")
        if pos + 4 + size > xlen:
            return None
        layout.append((tag, pos + 4, size))
        pos += 4 + size
    if pos != xlen:
        return None
    for tag, start, size in layout:
        for j in range(4):   # the tag and size bytes must be the same in every record
            if bytes(blob[start - 4 + j::xlen]) != bytes((first[start - 4 + j],)) * k:
                return None
    ut = ntfs = uid = gid = ntfs_atime = None
    for tag, start, size in layout:
        if tag == fmt.EXTRA_TIMESTAMP and size >= 5:
            if bytes(blob[start::xlen]).count(first[start]) != k or not first[start] & 1:
                return None
            ut = _plane(blob, k, xlen, start + 1, 4, "I")
        elif tag == fmt.EXTRA_NTFS and size == 32 and first[start + 4:start + 8] == b"\x01\x00\x18\x00":
            for j in range(4, 8):
                if bytes(blob[start + j::xlen]) != bytes((first[start + j],)) * k:
                    return None
            ntfs = _plane(blob, k, xlen, start + 8, 8, "Q")
            # atime: only when some record's differs from its mtime (archfs
            # writes them equal unless told otherwise)
            if any(bytes(blob[start + 8 + j::xlen]) != bytes(blob[start + 16 + j::xlen])
                   for j in range(8)):
                ntfs_atime = _plane(blob, k, xlen, start + 16, 8, "Q")
        elif tag == fmt.EXTRA_UNIX_OWNER and size == 11 and first[start:start + 2] == b"\x01\x04" \
                and first[start + 6] == 4:
            for j in (0, 1, 6):
                if bytes(blob[start + j::xlen]) != bytes((first[start + j],)) * k:
                    return None
            uid = _plane(blob, k, xlen, start + 2, 4, "I")
            gid = _plane(blob, k, xlen, start + 7, 4, "I")
        else:
            return None   # zip64, unicode path, unknown fields: record by record
    return ut, ntfs, uid, gid, ntfs_atime


def _plane(blob: memoryview, k: int, stride: int, offset: int, width: int, typecode: str) -> array:
    planes = bytearray(k * width)
    for j in range(width):
        planes[j::width] = blob[offset + j::stride]
    out = array(typecode)
    out.frombytes(bytes(planes))
    return out


def _check_offsets(table: EntryTable, bad, first_row: int, cur: Cursor) -> None:
    offsets = table.offset
    limit = cur.cd_start
    if max(offsets[first_row:]) < limit:
        return
    for r in range(first_row, len(table)):
        if offsets[r] >= limit:
            bad[r] = "local header offset points past the member data"


def unix_mode(host: int, eattr: int, is_dir: bool) -> int:
    """st_mode from the host system and external attributes of a record."""
    unix = eattr >> 16 if host == fmt.HOST_UNIX else 0
    kind = stat.S_IFMT(unix)
    if kind == stat.S_IFLNK or (kind in SPECIAL_TYPES and not is_dir):
        return unix
    # a unix file type wins over the MS-DOS attribute bits beside it
    if is_dir or kind == stat.S_IFDIR or (kind != stat.S_IFREG and eattr & fmt.DOS_DIRECTORY):
        perm = unix & 0o7777 if unix else 0o755
        return stat.S_IFDIR | (perm or 0o755)
    if unix:
        return stat.S_IFREG | (unix & 0o7777)
    return stat.S_IFREG | (0o444 if eattr & fmt.DOS_READONLY else 0o644)


def _parse_one(cd: bytes, pos: int, base: int, table: EntryTable, bad, cur: Cursor) -> None:
    """The reference parser: one record, every field and extra interpreted."""
    (_sig, made_by, _needed, flags, method, dtime, ddate, crc, csize, usize,
     nlen, xlen, clen, disk, _iattr, eattr, offset) = fmt.CENTRAL_HEADER.unpack_from(cd, pos)
    name_end = pos + HEAD + nlen
    rec_end = name_end + xlen + clen
    raw = cd[pos + HEAD:name_end]
    row = len(table)
    ascii_name = raw.isascii()
    mtime_ns = atime_ns = device = None
    uid = gid = NO_OWNER
    unicode_path = None
    if xlen:
        kept = []
        for tag, data in fmt.iter_extras(cd[name_end:name_end + xlen]):
            if tag == fmt.EXTRA_ZIP64:
                try:
                    usize, csize, offset = fmt.parse_zip64(data, usize, csize, offset)
                except ValueError:
                    bad[row] = "broken zip64 extra field"
            elif tag == fmt.EXTRA_TIMESTAMP:
                secs = fmt.parse_timestamp(data)
                if secs is not None and mtime_ns is None:
                    mtime_ns = secs * NS
            elif tag == fmt.EXTRA_NTFS:
                times = fmt.parse_ntfs_times_ns(data)
                if times is not None:
                    mtime_ns, atime_ns = times
            elif tag == fmt.EXTRA_UNIX_OWNER:
                owner = fmt.parse_unix_owner(data)
                if owner is not None and max(owner) < NO_OWNER:
                    uid, gid = owner
            elif tag == fmt.EXTRA_UNICODE_PATH:
                if not ascii_name and not flags & fmt.FLAG_UTF8:
                    unicode_path = fmt.parse_unicode_path(data, raw)
            elif tag == fmt.EXTRA_PKWARE_UNIX and stat.S_IFMT(eattr >> 16) in (
                    stat.S_IFCHR, stat.S_IFBLK) and made_by >> 8 == fmt.HOST_UNIX:
                device = fmt.parse_pkware_unix_device(data)   # rebuilt from rdev on write
                if device is None:
                    kept.append(fmt.build_extra(tag, data))
            else:
                kept.append(fmt.build_extra(tag, data))
        if kept:
            table.extras[row] = b"".join(kept)
    name = decode_name(raw, bool(flags & fmt.FLAG_UTF8), unicode_path)
    spath, is_dir = safe_path(name)
    if mtime_ns is None:
        mtime_ns = fmt.dos_to_ns(ddate, dtime)
    mode = unix_mode(made_by >> 8, eattr, is_dir)
    if clen:
        table.comments[row] = cd[rec_end - clen:rec_end]
    if flags & fmt.FLAG_ENCRYPTED:
        table.raw_dos[row] = (ddate, dtime)
    # a record is kept verbatim when its name needs no flag change: plain
    # ASCII reads the same either way, and setting the flag on the central
    # record alone would contradict the local header (unzip -t warns)
    canonical = ascii_name or bool(flags & fmt.FLAG_UTF8)
    # the local header must carry the name we will write: same bytes, and
    # decoded the same way by readers that ignore the Unicode Path field
    relocate = spath != name.rstrip("/") or not canonical
    shift = cur.shift
    start = offset + shift
    if start > fmt.MAX_NS:
        start = 0
        bad[row] = "local header offset %d is beyond any file size" % offset
    table.add(spath, start, csize, usize, crc, method, flags, mtime_ns, mode,
              uid, gid, base + pos if (canonical and not shift and not relocate) else -1,
              rec_end - pos, relocate, durable_at=base + pos)
    if atime_ns is not None:
        table.set_atime(row, atime_ns)
    if device is not None and stat.S_IFMT(mode) in (stat.S_IFCHR, stat.S_IFBLK):
        table.rdev[row] = os.makedev(*device)
    if row in bad:
        pass
    elif disk != cur.disk:
        bad[row] = "member on another disk of a split archive"
    elif start >= cur.cd_start:
        bad[row] = "local header offset points past the member data"
    elif usize > fmt.MAX_NS or csize > fmt.MAX_NS:
        bad[row] = "declared size %d is beyond any file size" % max(usize, csize)


def parse_all(read, cd_start: int, cd_size: int, table: EntryTable, bad, cur: Cursor) -> None:
    """Parse a whole central directory, ``read(size, pos)`` giving its bytes."""
    pos = cd_start
    end = cd_start + cd_size
    carry = b""
    carry_at = pos
    while pos < end or carry:
        want = min(CHUNK, end - pos)
        piece = read(want, pos) if want else b""
        if len(piece) != want:
            raise CorruptArchiveError("%s: central directory is cut short" % cur.path)
        data = carry + piece if carry else piece
        pos += want
        used = parse_chunk(data, carry_at, pos >= end, table, bad, cur)
        carry = data[used:]
        carry_at += used
        if pos >= end and carry:
            raise CorruptArchiveError("%s: central directory record %d is cut short"
                                      % (cur.path, cur.count))



parse_one = _parse_one     # for the lenient reader, which splits records itself
