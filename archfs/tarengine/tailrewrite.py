"""Removing or renaming in a plain tar at the cost of what follows the change.

A tar cannot say "this member is gone" (GNU tar and bsdtar know no
whiteout), so a removal or rename rewrites the archive from the first member
that changes; everything before it stays as it is. Crash-safe through an
intent file beside the archive (``.NAME.archfs-tail``):

1. The new tail (the surviving members from offset ``P`` on, renamed ones
   under new headers, then the end-of-archive blocks) is written to the
   intent file and synced; then a 512-byte trailer naming ``P``, the
   tail's length and the archive file (device and inode, with a CRC-32 of
   the trailer) is appended, and the file and its directory are synced.
2. The tail is copied over the archive at ``P``, the archive cut after it
   and synced.
3. The intent file is removed and the directory synced.

A crash in 1 leaves an intent file without a valid trailer: it is removed,
the archive was not touched. A crash in 2 or 3 leaves a complete intent
file: it is applied again (copying it is idempotent), unless the archive
is another file by now (restored from a backup: its device and inode, or
a size short of ``P``, say so) and the intent is dropped. ``apply_pending`` does
that before anything reads the archive: every open of a local tar, read-only
or not, and ``archfs repair``.

While the rewrite runs, another program reading the archive may see a torn
tail; a full rewrite beside and renamed over (``writer.py``) is used instead
when the tail is most of the archive, or when a member after ``P`` is open
for reading through the mount (its offsets would move under it).
"""

import logging
import os
import struct
import zlib
from typing import Optional

from archfs.engine.fileaccess import fsync_dir
from archfs.errors import CorruptArchiveError, ReadOnlyError

log = logging.getLogger("archfs.tar")

MAGIC = b"ARCHFS-TAR-TAIL1"
_TRAILER = struct.Struct("<16sQQQQ")      # magic, P, tail length, dev, ino; then a CRC-32
TRAILER_SIZE = 512
COPY_STEP = 64 << 20


def intent_path(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, "." + name + ".archfs-tail")


def trailer(start: int, length: int, dev: int, ino: int) -> bytes:
    body = _TRAILER.pack(MAGIC, start, length, dev, ino)
    body += struct.pack("<I", zlib.crc32(body))
    return body + bytes(TRAILER_SIZE - len(body))


def _read_trailer(fd: int) -> Optional[tuple]:
    """(P, length, dev, ino) of a complete intent file, or None. (The trailer
    is written after the tail was synced: a valid one vouches for the tail.)"""
    size = os.fstat(fd).st_size
    if size < TRAILER_SIZE:
        return None
    raw = os.pread(fd, TRAILER_SIZE, size - TRAILER_SIZE)
    body_len = _TRAILER.size
    if len(raw) != TRAILER_SIZE or raw[:16] != MAGIC:
        return None
    if struct.unpack_from("<I", raw, body_len)[0] != zlib.crc32(raw[:body_len]):
        return None
    _, start, length, dev, ino = _TRAILER.unpack_from(raw)
    if length + TRAILER_SIZE != size:
        return None
    return start, length, dev, ino


def copy_range(src_fd: int, dst_fd: int, length: int, src_pos: int, dst_pos: int) -> None:
    done = 0
    while done < length:
        n = os.copy_file_range(src_fd, dst_fd, min(COPY_STEP, length - done),
                               src_pos + done, dst_pos + done)
        if n <= 0:
            raise CorruptArchiveError("copying a tar's rewritten tail stopped short")
        done += n


def apply(intent_fd: int, archive_fd: int, start: int, length: int) -> None:
    """Steps 2 and 3's first half: the tail over the archive, cut, synced."""
    copy_range(intent_fd, archive_fd, length, 0, start)
    os.ftruncate(archive_fd, start + length)
    os.fsync(archive_fd)


def apply_pending(path: str) -> Optional[str]:
    """Finish or undo a tail rewrite a crash interrupted; a note for the
    log, or None when there was none (or a live writer holds the archive's
    lock: it is in the middle of one). Raises an OSError naming the problem
    when a complete one cannot be applied (the archive is not writable)."""
    import fcntl
    intent = intent_path(path)
    if not os.path.exists(intent):
        return None
    flags = getattr(os, "O_CLOEXEC", 0)
    try:
        archive_fd = os.open(path, os.O_RDWR | flags)
    except PermissionError:
        archive_fd = os.open(path, os.O_RDONLY | flags)
    try:
        try:
            fcntl.flock(archive_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None                    # its writer is alive and finishes it
        try:
            fd = os.open(intent, os.O_RDONLY | flags)
        except FileNotFoundError:
            return None
        try:
            found = _read_trailer(fd)
            st = os.fstat(archive_fd)
            if found is None:
                note = "%s: dropped an unfinished rewrite (the archive was not touched)" % path
            elif (found[2], found[3]) != (st.st_dev, st.st_ino) or st.st_size < found[0]:
                note = ("%s: dropped the intent of a rewrite of an earlier file of that name "
                        "(%s)" % (path, intent))
            else:
                start, length = found[:2]
                if _read_only(archive_fd):
                    raise ReadOnlyError(
                        "%s: a rewrite of its end was interrupted and cannot be "
                        "finished (the archive is not writable); make it writable and "
                        "mount it again, or run archfs repair" % path)
                apply(fd, archive_fd, start, length)
                note = "%s: finished a rewrite an interruption had left undone" % path
        finally:
            os.close(fd)
        os.unlink(intent)
        fsync_dir(intent)
    finally:
        os.close(archive_fd)            # (releases the lock)
    log.warning(note)
    return note


def _read_only(fd: int) -> bool:
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY


class IntentSink:
    """Where the new tail goes (step 1): positions are the archive's, from
    ``start``; ``copy`` moves member bytes from the archive without passing
    them through Python."""

    progress = None

    def __init__(self, fd: int, source_fd: int, start: int):
        self.fd, self.source_fd, self.start, self.pos = fd, source_fd, start, start

    def write(self, data) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.pos - self.start)
            view = view[n:]
            self.pos += n

    def copy(self, offset: int, length: int) -> None:
        copy_range(self.source_fd, self.fd, length, offset, self.pos - self.start)
        self.pos += length
        if self.progress is not None:
            self.progress()

    def finish(self) -> None:
        """The end-of-archive blocks, to a whole record of the archive."""
        stop = -(-(self.pos + 1024) // 10240) * 10240
        self.write(bytes(stop - self.pos))


def rewrite(path: str, archive_fd: int, start: int, fill) -> int:
    """Steps 1 to 3 for the archive at ``path`` (open read-write as
    ``archive_fd``, locked): ``fill(sink)`` writes the new tail into an
    ``IntentSink``. Returns the archive's new size."""
    intent = intent_path(path)
    fd = os.open(intent, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0),
                 0o600)
    try:
        sink = IntentSink(fd, archive_fd, start)
        fill(sink)
        length = sink.pos - start
        os.fdatasync(fd)
        st = os.fstat(archive_fd)
        os.pwrite(fd, trailer(start, length, st.st_dev, st.st_ino), length)
        os.fsync(fd)
        fsync_dir(intent)
        apply(fd, archive_fd, start, length)
    except BaseException:
        os.close(fd)
        if not os.path.exists(intent) or _read_trailer_of(intent) is None:
            _unlink_quietly(intent)            # the archive was not touched
        raise
    os.close(fd)
    os.unlink(intent)
    fsync_dir(intent)
    return start + length


def _read_trailer_of(path: str):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_trailer(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
