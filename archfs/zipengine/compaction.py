"""Compaction: rewriting an archive without its dead space, atomically.

The live members' compressed bytes are copied (never recompressed) into a
new file beside the archive, a fresh central directory is written, the file
is fsynced and renamed over the archive, and the directory is fsynced. A
crash at any point leaves either the old archive or the new one under the
archive's name, plus at worst a stray ``.NAME.archfs-compact-*`` file that
the next writable open removes.
"""

import os
import stat
from typing import Dict, List, NamedTuple, Tuple

from archfs.errors import CorruptMemberError
from archfs.zipengine import format as fmt, writer
from archfs.zipengine.archivefile import fsync_dir

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


def rewrite(path: str, src, prefix: int, rows, extras, comment: bytes, progress=None) -> Rewritten:
    """Write the live ``rows`` into a new archive and rename it over ``path``."""
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        _copy_owner_and_mode(src.fd, fd)
        pos = 0
        if prefix:
            writer.copy_range(src.fd, 0, fd, 0, prefix)
            pos = prefix
        offsets: Dict[int, int] = {}
        central = []
        for done, (r, row) in enumerate(rows):
            found = fmt.read_local_header(src.pread, row.offset)
            if found is None:
                raise CorruptMemberError("%s: local header is damaged; cannot compact" % row.name)
            written = writer.append_copy(fd, pos, row.name, row.is_dir, src.fd, found[1],
                                         row.csize, row.usize, row.crc, row.method, row.flags,
                                         row.mtime_ns, dos=row.dos)
            offsets[row.offset] = pos
            kept, comment_r = extras.get(r, (b"", b""))
            central.append((r, writer.central_record(
                row.name, row.mode, written.flags, row.method, row.mtime_ns,
                row.crc, row.csize, row.usize, pos, row.uid, row.gid, kept, comment_r,
                dos=row.dos)))
            pos = written.end
            if progress is not None and done % 4096 == 0:
                progress(done)
        cd_start = pos
        records = []
        for r, record in central:
            records.append((r, pos, len(record)))
            pos = writer.write_all(fd, record, pos)
        cd_size = pos - cd_start
        end = writer.write_all(fd, writer.end_records(cd_start, cd_size, len(central), comment), pos)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    fsync_dir(path)
    return Rewritten(offsets, records, cd_start, cd_size, end)


def _copy_owner_and_mode(src_fd: int, fd: int) -> None:
    st = os.fstat(src_fd)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except PermissionError:
        pass

