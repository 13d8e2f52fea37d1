"""``archfs repair``: make a damaged archive readable again, losing nothing.

Three cases, tried in order:

1. The archive is clean: nothing is done.
2. A complete commit is followed by other bytes (an unfinished commit, or
   data some other program appended): the bytes after the newest durable
   state (a checkpoint and the journal records after it) are cut off. Bytes
   that do not look like archfs's own unfinished commit are first copied to
   ``ARCHIVE.archfs-tail-N`` so nothing is lost. Journal records after the
   last central directory are replayed and a new directory is written, so
   the file is an ordinary zip again.
3. No end record checks out at all (a truncated download, a broken disk):
   members are salvaged by walking the local headers from the start. A
   member counts only if its data decodes and its CRC matches; a new central
   directory listing those members is appended at the end of the file, so
   no existing byte is overwritten.
"""

import os
import zlib
from typing import Callable, List, NamedTuple, Optional

from archfs.errors import CorruptArchiveError, NotAnArchiveError
from archfs.zipengine import format as fmt, recovery, writer
from archfs.zipengine.centraldir import (local_members, pread_exact,
                                         read_central_directory, read_end)
from archfs.zipengine.entries import NO_OWNER
from archfs.zipengine.localheader import measure_stream, read_local_member
from archfs.zipengine.names import safe_path

SCAN = 1 << 20


class Outcome(NamedTuple):
    action: str          # "clean", "cut", "replayed", "salvaged"
    detail: str
    members: int


class Salvaged(NamedTuple):
    name: str
    offset: int
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    mtime_ns: int


def repair(path: str, progress: Optional[Callable[[str, int, int], None]] = None) -> Outcome:
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        end = read_end(fd, size)
        if end is not None and _directory_sound(fd, size, end, path):
            return Outcome("clean", "%s: nothing to repair" % path, -1)
        state = recovery.find_state(fd, size, path)
        if state is None:
            return _salvage(fd, path, size, progress)
        cut = _cut(fd, path, state.end, size) if state.end < size or not state.records else None
        if not state.records:
            return cut
    finally:
        os.close(fd)
    return _checkpoint(path, state, cut)


def plan(path: str) -> str:
    """What ``repair`` would do to ``path``, in one line; changes nothing."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        end = read_end(fd, size)
        if end is not None and _directory_sound(fd, size, end, path):
            return "nothing to repair"
        state = recovery.find_state(fd, size, path)
        if state is None:
            return ("no usable central directory: it would salvage every intact member "
                    "into a new one")
        steps = []
        if state.records:
            steps.append("replay %d journal record%s after the last central directory and "
                         "write a new one" % (len(state.records),
                                              "" if len(state.records) == 1 else "s"))
        tail = size - state.end
        if tail and recovery.is_own_tail(fd, state.end, size):
            steps.insert(0, "cut off %s bytes of an unfinished commit after the last "
                         "complete one" % "{:,}".format(tail))
        elif tail:
            steps.insert(0, "cut off %s bytes that follow the last complete commit, saving "
                         "them to %s-N first" % ("{:,}".format(tail), os.path.basename(path)
                                                 + ".archfs-tail"))
        return "it would " + ", then ".join(steps)
    finally:
        os.close(fd)


def _directory_sound(fd: int, size: int, end, path: str) -> bool:
    """Whether the central directory the end record describes reads strictly
    (a wrong count or a damaged record sends the archive to salvage)."""
    try:
        read_central_directory(fd, size, end, path)
    except CorruptArchiveError:
        return False
    return True


def _checkpoint(path: str, state, cut: Optional[Outcome]) -> Outcome:
    """Replay the journal after the last checkpoint and write a new one."""
    from archfs.zipengine.store import StoreOptions, ZipStore
    store = ZipStore(path, True, StoreOptions(index_cache=False, checkpoint_idle=0))
    try:
        store.checkpoint()
    finally:
        store.close()
    detail = "%s: replayed %d journal record%s after the last central directory and " \
             "wrote a new one" % (path, len(state.records), "" if len(state.records) == 1 else "s")
    if cut is not None:
        detail += "; " + cut.detail.split(": ", 1)[1]
    return Outcome("replayed", detail, -1)


def _cut(fd: int, path: str, end_at: int, size: int) -> Outcome:
    tail = size - end_at
    kept = ""
    if not recovery.is_own_tail(fd, end_at, size):
        side = _free_name(path + ".archfs-tail")
        with open(side, "xb") as out:
            writer.copy_range(fd, end_at, out.fileno(), 0, tail)
            out.flush()
            os.fsync(out.fileno())
        kept = "; they were saved to %s" % side
    recovery.cut_tail(fd, end_at)
    return Outcome("cut", "%s: removed %d bytes after the last complete commit%s"
                   % (path, tail, kept), -1)


def _free_name(base: str) -> str:
    n = 1
    while os.path.exists("%s-%d" % (base, n)):
        n += 1
    return "%s-%d" % (base, n)


def _salvage(fd: int, path: str, size: int, progress) -> Outcome:
    found: List[Salvaged] = []
    for _at, (entry, next_pos) in local_members(fd, size, _member_at):
        found.append(entry)
        if progress is not None:
            progress("salvaging", next_pos, size)
    if not found:
        raise NotAnArchiveError("%s: no intact member found; nothing to salvage" % path)
    names = set()
    records = []
    for entry in found:
        name, is_dir = safe_path(entry.name)
        name = name or "unnamed"
        while name in names:
            name += ".~1~"
        names.add(name)
        mode = (0o40755 if is_dir else 0o100644)
        records.append(writer.central_record(
            name, mode, entry.flags, entry.method, entry.mtime_ns, entry.crc, entry.csize, entry.usize, entry.offset,
            NO_OWNER, NO_OWNER))
    cd_start = size
    pos = cd_start
    for record in records:
        pos = writer.write_all(fd, record, pos)
    writer.write_all(fd, writer.end_records(cd_start, pos - cd_start, len(records), b""), pos)
    os.fsync(fd)
    return Outcome("salvaged", "%s: salvaged %d member%s into a new central directory"
                   % (path, len(records), "" if len(records) == 1 else "s"), len(records))


def _member_at(fd: int, at: int, size: int):
    """(Salvaged, position after it) for an intact member at ``at``, else None."""
    member = read_local_member(fd, at, size)
    if member is None or member.flags & fmt.FLAG_ENCRYPTED:
        return None
    name, _nlen, flags, method, crc, csize, usize, mtime_ns, data_start = member
    if flags & fmt.FLAG_DESCRIPTOR:
        if method == fmt.STORED:
            measured = _stored_with_descriptor(fd, data_start, size)
        else:
            measured = _measure(fd, data_start, size, method)
        if measured is None:
            return None
        csize, usize, crc, after = measured
        descriptor = pread_exact(fd, 16, after)
        skip = 4 if descriptor[:4] == fmt.DESCRIPTOR_SIG else 0
        if int.from_bytes(descriptor[skip:skip + 4], "little") != crc:
            return None
        return Salvaged(name, at, flags, method, crc, csize, usize, mtime_ns), after + skip + 12
    if data_start + csize > size:
        return None
    measured = _measure(fd, data_start, data_start + csize, method)
    if measured is None or measured[0] != csize or measured[1] != usize or measured[2] != crc:
        return None
    return Salvaged(name, at, flags, method, crc, csize, usize, mtime_ns), data_start + csize


def _measure(fd: int, start: int, limit: int, method: int):
    """(csize, usize, crc, end) of the member data at ``start``.

    A compressed stream ends by itself; a stored one with known size ends at
    ``limit``. Output is counted in bounded pieces, never held whole.
    """
    if method == fmt.STORED:
        crc = 0
        pos = start
        while pos < limit:
            chunk = pread_exact(fd, min(SCAN, limit - pos), pos)
            if not chunk:
                return None
            crc = zlib.crc32(chunk, crc)
            pos += len(chunk)
        return limit - start, limit - start, crc, limit
    measured = measure_stream(fd, start, limit, method)
    if measured is None:
        return None
    end, usize, crc = measured
    return end - start, usize, crc, end


def _stored_with_descriptor(fd: int, data_start: int, size: int):
    """(csize, usize, crc, end of data) of a stored member whose sizes are only
    in its data descriptor: the first descriptor whose size and CRC fit."""
    pos = data_start
    while pos < size:
        block = pread_exact(fd, min(SCAN + 16, size - pos), pos)
        hit = block.find(fmt.DESCRIPTOR_SIG)
        while hit >= 0:
            at = pos + hit
            fields = pread_exact(fd, 16, at)
            crc = int.from_bytes(fields[4:8], "little")
            csize = int.from_bytes(fields[8:12], "little")
            if csize == at - data_start:
                measured = _measure(fd, data_start, at, fmt.STORED)
                if measured is not None and measured[2] == crc:
                    return csize, csize, crc, at
            hit = block.find(fmt.DESCRIPTOR_SIG, hit + 1)
        pos += SCAN
    return None
