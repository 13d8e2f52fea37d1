"""Compaction by rewriting: the live members into a new file, atomically.

The live members are copied byte for byte (local headers included, never
recompressed) into a new file beside the archive, their central records
follow with only the offsets changed, the file is fsynced and renamed over
the archive, and the directory is fsynced. A crash at any point leaves
either the old archive or the new one under the archive's name, plus at
worst a stray ``.NAME.archfs-compact-*`` file that the next writable open
removes. (When the dead space lies near the end, the store moves the few
members after it in place instead: ``store/inplace.py``.)
"""

import os
import stat
from typing import Dict, List, NamedTuple, Tuple

from archfs.engine.fileaccess import fsync_dir
from archfs.errors import CorruptMemberError
from archfs.zipengine import cdwrite, format as fmt, writer
from archfs.zipengine.entries import Row

TEMP_MARK = ".archfs-compact-"


class Rewritten(NamedTuple):
    offsets: Dict[int, int]                 # old local header offset -> new
    records: List[Tuple[int, int, int]]     # (row, record position, record length)
    cd_start: int
    cd_size: int
    end: int


def temp_path(path: str) -> str:
    head, base = os.path.split(path)
    return os.path.join(head, "." + base + TEMP_MARK + str(os.getpid()))


def remove_stale_temps(path: str) -> None:
    """Delete compaction files a crashed archfs left beside ``path``."""
    head, base = os.path.split(path)
    prefix = "." + base + TEMP_MARK
    for name in os.listdir(head or "."):
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(head, name))
            except OSError:
                pass


class Item(NamedTuple):
    """One live member to carry into the new file."""

    row: int
    entry: Row            # its fields
    length: int           # bytes from its local header to its end; 0: write a new header
    record: bytes         # its central record as it stands (any offset), or b"": encode one
    extras: Tuple[bytes, bytes]   # kept extra fields and comment, for an encoded record


def rewrite(path: str, src, prefix: int, items: List[Item], comment: bytes,
            progress=None) -> Rewritten:
    """Write the live ``items`` into a new archive and rename it over ``path``.

    Members are copied byte for byte, local header included, and each keeps
    its central record with only the offset changed, so the new file is
    never bigger than the live part of the old one. Only a member whose name
    changed gets a new local header (and record).
    """
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        _copy_owner_and_mode(src.fd, fd)
        result = write_compacted(fd, src, prefix, items, comment, progress)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    fsync_dir(path)
    if progress is not None:
        progress(len(items))
    return result


def rewrite_through(src, prefix: int, items: List[Item], comment: bytes,
                    progress=None) -> Rewritten:
    """The same for a transport that publishes atomically (a remote archive):
    the new archive is made in a local temporary file, which then becomes the
    transport's whole content, published by its next ``sync``."""
    import tempfile
    with tempfile.TemporaryFile(prefix="archfs-compact-") as tmp:
        result = write_compacted(tmp.fileno(), src, prefix, items, comment, progress)
        src.replace_with(tmp.fileno())
    if progress is not None:
        progress(len(items))
    return result


def write_compacted(fd: int, src, prefix: int, items: List[Item], comment: bytes,
                    progress=None) -> Rewritten:
    """The live ``items`` of ``src`` (a transport) written to ``fd`` from 0."""
    pos = 0
    if prefix:
        writer.copy_range(src, 0, fd, 0, prefix)
        pos = prefix
    offsets: Dict[int, int] = {}
    central = []
    for done, item in enumerate(items):
        row = item.entry
        if item.length:
            writer.copy_range(src, row.offset, fd, pos, item.length)
            end, flags = pos + item.length, row.flags
        else:
            found = fmt.read_local_header(src.pread, row.offset)
            if found is None:
                raise CorruptMemberError("%s: local header is damaged; cannot compact"
                                         % row.name)
            written = writer.append_copy(fd, pos, row.name, row.is_dir, src, found[1],
                                         row.csize, row.usize, row.crc, row.method,
                                         row.flags, row.mtime_ns, dos=row.dos,
                                         unix=row.unix, mode=row.mode,
                                         src_header_at=row.offset)
            end, flags = written.end, written.flags
        offsets[row.offset] = pos
        record = cdwrite.with_offset(item.record, pos) if item.record and item.length else None
        if record is None:
            kept, comment_r = item.extras
            record = writer.central_record(
                row.name, row.mode, flags, row.method, row.mtime_ns, row.crc, row.csize,
                row.usize, pos, row.uid, row.gid, kept, comment_r, dos=row.dos,
                unix=row.unix)
        central.append((item.row, record, row.name, row.is_dir))
        pos = end
        if progress is not None and done % 4096 == 0:
            progress(done)
    # every directory entry before its contents: directories first, parents first
    central.sort(key=lambda entry: (0, entry[2].count("/")) if entry[3] else (1, 0))
    cd_start = pos
    records = []
    chunk: List[bytes] = []
    at = pos
    for r, record, _name, _is_dir in central:
        records.append((r, at, len(record)))
        at += len(record)
        chunk.append(record)
        if at - pos >= writer.WRITE_CHUNK:
            pos = writer.write_all(fd, b"".join(chunk), pos)
            chunk.clear()
    pos = writer.write_all(fd, b"".join(chunk), pos)
    cd_size = pos - cd_start
    end = writer.write_all(fd, writer.end_records(cd_start, cd_size, len(central), comment), pos)
    return Rewritten(offsets, records, cd_start, cd_size, end)


def _copy_owner_and_mode(src_fd: int, fd: int) -> None:
    st = os.fstat(src_fd)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except PermissionError:
        pass

