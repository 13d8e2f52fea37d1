"""Writing a complete central directory: in which order, and mostly by copying.

Order: the order of the last checkpoint's directory (rows sort by where
their durable record lies, so members committed through journal records
follow in commit order, and rows not yet committed come last by offset),
with one fix: every directory entry comes before its contents. ``unzip``
restores a directory's time only when the directory is listed before what
it holds (``rsync -a`` sets a directory's time after filling it, which
gives the directory a new, later entry).

Bytes: a row whose record has not changed since it was written (in the last
directory or in a journal record) is copied from there, in runs of adjacent
records (``copy_file_range``, no Python per byte); only new and changed rows
are encoded. At a million members the Python work is a few passes over
arrays that run in C.
"""

import itertools
import operator
import stat
from array import array
from typing import Dict, List, NamedTuple, Optional, Tuple

from archfs.zipengine import format as fmt, writer
from archfs.zipengine.centraldir import pread_exact
from archfs.zipengine.entries import EntryTable, flagged_rows
from archfs.zipengine.tree import Tree

NEW = 1 << 46              # sort key base of rows with no durable record: after all others
DEPTH = 4096               # composite key: key * DEPTH + depth (a directory moved ahead)
FRESH = -(1 << 50)         # marks a row to encode in the position arrays
NOT_DEAD = bytes((1,)) + bytes(255)   # translate table: dead 0 -> 1, 1 -> 0


class Plan(NamedTuple):
    order: array              # rows in directory order
    fresh: Dict[int, bytes]   # row -> its record, for rows that are encoded
    lengths: array            # record length of each row in order
    size: int                 # the directory's size in bytes
    ats: array                # where each verbatim record is now (taken at planning)


def is_dir(t: EntryTable, r: int) -> bool:
    return stat.S_ISDIR(t.mode[r])


def record_of(t: EntryTable, r: int, offset: Optional[int] = None) -> bytes:
    """Row ``r``'s central directory record (at ``offset`` if given)."""
    return writer.central_record(
        t.names[r], t.mode[r], t.flags[r], t.method[r], t.mtime_ns[r], t.crc[r], t.csize[r],
        t.usize[r], t.offset[r] if offset is None else offset, t.uid[r], t.gid[r],
        t.extras.get(r, b""), t.comments.get(r, b""), t.raw_dos.get(r), unix=t.unix(r))


def with_offset(record: bytes, offset: int) -> Optional[bytes]:
    """``record`` (a central record as it stands) pointing at ``offset``, all
    else byte for byte: a member moved verbatim keeps a record of the same
    size. None when the offset field cannot simply be replaced (zip64)."""
    old = int.from_bytes(record[42:46], "little")
    if old == fmt.MAX32 or offset >= fmt.MAX32 or record[:4] != fmt.CENTRAL_SIG:
        return None
    return record[:42] + offset.to_bytes(4, "little") + record[46:]


def moved_record(fd: int, t: EntryTable, r: int, offset: int, at: int) -> bytes:
    """Row ``r``'s record at a new ``offset``, from its record at ``at`` if any."""
    if at >= 0:
        patched = with_offset(pread_exact(fd, t.record_len[r], at), offset)
        if patched is not None:
            return patched
    return record_of(t, r, offset)


def live_rows(dead) -> array:
    return array("q", itertools.compress(range(len(dead)), dead.translate(NOT_DEAD)))


def order(t: EntryTable, tree: Tree, pending=(), dead=None) -> array:
    """Live rows in directory order (see the module docstring). ``pending``
    holds the rows added since the last commit (the only ones without a
    durable record); ``dead`` replaces the table's dead flags (the state
    as of the last commit, for a directory of exactly what is durable)."""
    dead = t.dead if dead is None else dead
    rows = live_rows(dead)
    key = array("q", t.durable_at)
    for r in pending:
        if key[r] < 0 and not t.dead[r]:
            key[r] = NEW + t.offset[r]
    ks = array("q", map(key.__getitem__, rows))
    if len(ks) and min(ks) < 0:       # no durable record and not listed as pending
        for i in flagged_rows(map((0).__gt__, ks)):
            key[rows[i]] = NEW + t.offset[rows[i]]
        ks = array("q", map(key.__getitem__, rows))
    ahead = _dirs_ahead(t, tree, key, dead)
    if not ahead:
        if all(map(operator.lt, ks, itertools.islice(ks, 1, None))):
            return rows
        return array("q", sorted(rows, key=key.__getitem__))
    composite = array("q", map(operator.add, map(operator.mul, key, itertools.repeat(DEPTH)),
                               itertools.repeat(DEPTH - 1)))
    for r, value in ahead.items():
        composite[r] = value
    return array("q", sorted(rows, key=composite.__getitem__))


def dead_rows(dead, limit: Optional[int] = None) -> List[int]:
    """Rows marked dead (below ``limit``), found in C."""
    return flagged_rows(dead[:limit] if limit is not None else dead)


def _dirs_ahead(t: EntryTable, tree: Tree, key: array, dead) -> Dict[int, int]:
    """Directory rows that would come after one of their contents, with the
    composite key that puts them right before the earliest one (parents
    before children when several go to the same place)."""
    lowest: Dict[str, int] = {}
    ahead: Dict[int, int] = {}
    none = 1 << 62
    for path in sorted(tree.dirs, key=lambda p: p.count("/") + 1 if p else 0, reverse=True):
        node = tree.dirs[path]
        files = node.files
        if node.live != len(files) or dead is not t.dead:
            files = [r for r in files if not dead[r]]
        low = min(map(key.__getitem__, files)) if len(files) else none
        prefix = path + "/" if path else ""
        for name in node.subdirs:
            sub = lowest.get(prefix + name, none)
            if sub < low:
                low = sub
        row = node.row
        if row >= 0 and not dead[row]:
            own = key[row]
            if own > low:
                depth = path.count("/") if path else 0
                ahead[row] = low * DEPTH + min(depth, DEPTH - 2)
                own = low
            low = min(low, own)
        lowest[path] = low
    return ahead


def plan(t: EntryTable, rows: array, offsets: Optional[Dict[int, int]] = None,
         positions: Optional[array] = None, fd: int = -1) -> Plan:
    """What the directory of ``rows`` (in order) will hold. Rows whose record
    must be encoded (no verbatim copy in ``positions``, default
    ``record_at``, or a new offset in ``offsets``, patched into the record
    read from ``fd`` where it can be) get their bytes now; the others are
    copied at ``write`` time."""
    offsets = offsets or {}
    ats = array("q", map((t.record_at if positions is None else positions).__getitem__, rows))
    lengths = array("q", map(t.record_len.__getitem__, rows))
    fresh: Dict[int, bytes] = {}
    found = set()
    if len(ats) and min(ats) < 0:
        found.update(flagged_rows(map((0).__gt__, ats)))
    if offsets:
        found.update(flagged_rows(map(offsets.__contains__, rows)))
    for i in sorted(found):
        r = rows[i]
        if r in offsets and fd >= 0:
            data = moved_record(fd, t, r, offsets[r], ats[i])
        else:
            data = record_of(t, r, offsets.get(r))
        fresh[r] = data
        lengths[i] = len(data)
        ats[i] = FRESH
    return Plan(rows, fresh, lengths, sum(lengths), ats)


def write(fd: int, at: int, p: Plan, ats: Optional[array] = None,
          translate: Optional[Tuple[int, int, int]] = None, source=None) -> array:
    """Write the directory of plan ``p`` at ``at``; returns each record's
    position (and the end, last). ``ats`` replaces the plan's sources of
    verbatim records; ``translate`` = (lo, hi, delta): verbatim records lying
    in [lo, hi) are read ``delta`` bytes further on (a copy of that range);
    ``source``: where verbatim records are read (default ``fd``; a transport
    that publishes atomically reads them from its published version)."""
    source = fd if source is None else source
    rows = p.order
    n = len(rows)
    fresh = p.fresh
    if ats is None:
        ats = p.ats
    else:
        ats = array("q", ats)
        for i in flagged_rows(map(FRESH.__eq__, p.ats)):
            ats[i] = FRESH
    positions = array("q", itertools.accumulate(p.lengths, initial=at))
    ends = array("q", map(operator.add, ats, p.lengths))
    breaks = bytes(map(operator.ne, itertools.islice(ats, 1, None), ends))
    pos = at
    i = 0
    pending: List[bytes] = []
    buffered = 0
    while i < n:
        j = breaks.find(1, i)
        j = n if j < 0 else j + 1         # records i .. j-1 are adjacent
        if ats[i] == FRESH:
            data = fresh[rows[i]]
            pending.append(data)
            buffered += len(data)
            if buffered >= writer.WRITE_CHUNK:
                pos = writer.write_all(fd, b"".join(pending), pos)
                pending.clear()
                buffered = 0
        else:
            if pending:
                pos = writer.write_all(fd, b"".join(pending), pos)
                pending.clear()
                buffered = 0
            src = ats[i]
            length = ends[j - 1] - src
            if translate is not None and translate[0] <= src < translate[1]:
                src += translate[2]
            writer.copy_range(source, src, fd, pos, length)
            pos += length
        i = j
    if pending:
        pos = writer.write_all(fd, b"".join(pending), pos)
    assert pos == positions[n], (pos, positions[n])
    return positions


def record_positions(t: EntryTable, rows: array, positions: array, lengths: array,
                     keep_pending=()) -> None:
    """After a directory was written: each row's record is now at its new
    position, durable and (unless changed meanwhile, ``keep_pending``) verbatim."""
    record_at, durable_at, record_len = t.record_at, t.durable_at, t.record_len
    n = len(rows)
    if not n:
        return
    steps = bytes(map(operator.ne, itertools.islice(rows, 1, None), map((1).__add__, rows)))
    i = 0
    while i < n:
        j = steps.find(1, i)
        j = n if j < 0 else j + 1          # rows[i:j] are consecutive row numbers
        lo, hi = rows[i], rows[i] + (j - i)
        new = positions[i:j]
        record_at[lo:hi] = new
        durable_at[lo:hi] = new
        record_len[lo:hi] = array("I", lengths[i:j])
        i = j
    for r in keep_pending:
        record_at[r] = -1


# -- a directory assembled from the last one, in time proportional to the change --------

class Entry(NamedTuple):
    """A record placed on its own: copied from ``at`` (a position) or ``data``."""

    row: int
    at: int
    data: Optional[bytes]
    length: int


class Directory(NamedTuple):
    pieces: list                       # (position, length) to copy, or bytes to write
    size: int
    count: int
    runs: List[Tuple[int, int, int]]   # (start, end, offset in the new one) of the old one
    placed: List[Tuple[int, int, int]]  # (row, offset in the new one, length)


def assemble(old_start: int, old_end: int, holes: List[Tuple[int, int]],
             front: List[Entry], back: List[Entry]) -> Directory:
    """The old directory [old_start, old_end) less the records at ``holes``
    ((position, length), sorted, inside it), with ``front`` before it and
    ``back`` after it."""
    pieces: list = []
    placed: List[Tuple[int, int, int]] = []
    runs: List[Tuple[int, int, int]] = []
    at = 0

    def place(entries: List[Entry]) -> None:
        nonlocal at
        for e in entries:
            pieces.append(e.data if e.data is not None else (e.at, e.length))
            placed.append((e.row, at, e.length))
            at += e.length

    place(front)
    cursor = old_start
    for pos, length in holes + [(old_end, 0)]:
        if pos > cursor:
            pieces.append((cursor, pos - cursor))
            runs.append((cursor, pos, at))
            at += pos - cursor
        cursor = max(cursor, pos + length)
    place(back)
    return Directory(pieces, at, len(front) + len(back), runs, placed)


def write_pieces(fd: int, at: int, pieces: list,
                 translate: Optional[Tuple[int, int, int]] = None, source=None) -> int:
    """Write ``pieces`` at ``at`` (adjacent copies merged, bytes batched);
    returns the end. ``translate`` and ``source`` as in ``write``."""
    source = fd if source is None else source
    pos = at
    pending: List[bytes] = []
    buffered = 0
    copy_from = copy_len = 0

    def flush_copy() -> None:
        nonlocal pos, copy_len
        if copy_len:
            src = copy_from
            if translate is not None and translate[0] <= src < translate[1]:
                src += translate[2]
            writer.copy_range(source, src, fd, pos, copy_len)
            pos += copy_len
            copy_len = 0

    def flush_bytes() -> None:
        nonlocal pos, buffered
        if pending:
            pos = writer.write_all(fd, b"".join(pending), pos)
            pending.clear()
            buffered = 0

    def side(src: int) -> bool:
        return translate is not None and translate[0] <= src < translate[1]

    for piece in pieces:
        if isinstance(piece, tuple):
            flush_bytes()
            src, length = piece
            if copy_len and src == copy_from + copy_len and side(src) == side(copy_from):
                copy_len += length
            else:
                flush_copy()
                copy_from, copy_len = src, length
        else:
            flush_copy()
            pending.append(piece)
            buffered += len(piece)
            if buffered >= writer.WRITE_CHUNK:
                flush_bytes()
    flush_copy()
    flush_bytes()
    return pos
