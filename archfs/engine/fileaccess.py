"""Access to the archive file: the one interface engines read and write through.

A *transport* presents an archive wherever it lives as a file with
positions. ``ArchiveFile`` is the local-file transport; the remote ones
(``archfs.engine.transports``: fsspec, HTTP, S3 with write-back) implement
the same methods, so every format reads through every transport:

- ``pread(size, pos)`` (no shared file position, so any number of threads
  read at once), ``size()``, ``identity()`` (what tells a changed or
  replaced file from the one opened), ``location`` (a path or URL, for
  messages and saved indexes), ``cache_key()`` (what a saved index must
  match), ``will_read(pos, size)`` (a hint: this range is read next);
- when ``writable``: ``pwrite``, ``sync``, ``truncate``,
  ``lock_for_writing()`` and ``check_unchanged(identity)`` (why writing
  must stop, or None);
- ``atomic``: whether ``sync`` publishes what was written all at once, so
  no reader ever sees a state between two syncs (S3). An engine then needs
  no crash protocol, and must call ``sync`` only when the file is complete.
  ``published`` reads the last synced state (for an atomic transport, the
  bytes before this round of writes); ``replace_with(fd)`` makes a local
  file the whole new content (published at the next ``sync``).
- readers ``retain`` it and ``release`` it when done, so a file swapped out
  by an atomic rewrite stays open for the readers that still use it.

The module's functions (``pread_exact``, ``pwrite_all``, ``copy_range``)
take a transport or a plain descriptor, for code that opens its own files.
"""

import io
import os
from typing import NamedTuple, Optional

from archfs.engine.sharing import Shared
from archfs.errors import ArchiveBusy

WRITE_CHUNK = 1 << 20


class Identity(NamedTuple):
    dev: int
    ino: int
    size: int
    mtime_ns: int


class ArchiveFile(Shared):
    """A local archive file opened once and shared (see the module docstring)."""

    atomic = False
    is_local = True
    _closed_message = "archive file already closed"

    def __init__(self, path: str, writable: bool = False):
        flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0)
        self.fd = os.open(path, flags)
        self.path = path
        self.writable = writable

    @property
    def location(self) -> str:
        return self.path

    @property
    def published(self) -> "ArchiveFile":
        return self

    # -- reading ------------------------------------------------------------

    def pread(self, size: int, pos: int) -> bytes:
        data = os.pread(self.fd, size, pos)
        while 0 < len(data) < size:  # a short read before EOF: ask again
            more = os.pread(self.fd, size - len(data), pos + len(data))
            if not more:
                break
            data += more
        return data

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def identity(self) -> Identity:
        st = os.fstat(self.fd)
        return Identity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def cache_key(self) -> dict:
        st = os.fstat(self.fd)
        return {"path": os.path.realpath(self.path), "dev": st.st_dev, "ino": st.st_ino,
                "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def will_read(self, pos: int, size: int) -> None:
        """A hint that [pos, pos+size) is read next (the page cache needs none)."""

    def read_ahead(self, pos: int, size: int) -> None:
        """Have the disk read [pos, pos+size) now, for a reader that goes through it
        in order while it decodes: the kernel's own readahead can be smaller than
        one of its reads (128 KiB here), and each read then waits for the disk
        between two spells of decoding instead of finding its bytes cached."""
        try:
            os.posix_fadvise(self.fd, pos, size, os.POSIX_FADV_WILLNEED)
        except (OSError, AttributeError):   # a file system or platform without it
            pass

    # -- writing ------------------------------------------------------------

    def pwrite(self, data, pos: int) -> int:
        """Write all of ``data`` at ``pos``; returns the position after it."""
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, pos)
            view = view[n:]
            pos += n
        return pos

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def lock_for_writing(self) -> bool:
        """Take the one-writer lock; False if another process holds it."""
        import fcntl
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def check_unchanged(self, known: Identity) -> Optional[str]:
        """Why the file is no longer the one written through this object
        (removed, replaced or changed by another program), or None."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "the archive file was removed"
        if (st.st_dev, st.st_ino) != (known.dev, known.ino):
            return "the archive file was replaced by another program"
        own = os.fstat(self.fd)
        if (own.st_size, own.st_mtime_ns) != (known.size, known.mtime_ns):
            return "the archive file was changed by another program"
        return None

    # -- sharing (retain, release: engine.sharing) ---------------------------

    def close(self) -> None:
        """Only through the last ``release``."""
        os.close(self.fd)


def lock_for_writing(archive: ArchiveFile) -> None:
    """One writer per archive: a second archfs writing it would corrupt it."""
    if not archive.lock_for_writing():
        raise ArchiveBusy("%s: already open for writing by another archfs" % archive.path)


def fsync_dir(path: str) -> None:
    """Make a rename or creation in the directory holding ``path`` durable."""
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -- a transport or a descriptor ------------------------------------------------

def pread_exact(f, size: int, pos: int) -> bytes:
    """``size`` bytes at ``pos`` (fewer only at the end of the file)."""
    if not isinstance(f, int):
        return f.pread(size, pos)
    data = os.pread(f, size, pos)
    while len(data) < size:
        more = os.pread(f, size - len(data), pos + len(data))
        if not more:
            break
        data += more
    return data


def pwrite_all(f, data, pos: int) -> int:
    """Write all of ``data`` at ``pos``; returns the position after it."""
    if not isinstance(f, int):
        return f.pwrite(data, pos)
    view = memoryview(data)
    while view:
        n = os.pwrite(f, view, pos)
        pos += n
        view = view[n:]
    return pos


def _fd(f) -> Optional[int]:
    if isinstance(f, int):
        return f
    return getattr(f, "fd", None) if getattr(f, "is_local", False) else None


def copy_range(src, src_pos: int, dst, dst_pos: int, count: int) -> None:
    """Copy ``count`` bytes; in the kernel when both sides are local files."""
    src_fd, dst_fd = _fd(src), _fd(dst)
    while count > 0:
        n = 0
        if src_fd is not None and dst_fd is not None:
            try:
                n = os.copy_file_range(src_fd, dst_fd, min(count, 1 << 30), src_pos, dst_pos)
            except OSError as exc:
                if exc.errno not in (18, 22, 38, 95):   # EXDEV EINVAL ENOSYS EOPNOTSUPP
                    raise
                n = 0
        if n == 0:
            data = pread_exact(src, min(count, WRITE_CHUNK), src_pos)
            if not data:
                raise OSError("archive ended while copying a member")
            pwrite_all(dst, data, dst_pos)
            n = len(data)
        src_pos += n
        dst_pos += n
        count -= n


def file_size(f) -> int:
    return os.fstat(f).st_size if isinstance(f, int) else f.size()


def will_read(f, pos: int, size: int) -> None:
    if not isinstance(f, int):
        f.will_read(pos, size)


class Reader(io.RawIOBase):
    """A transport as a read-only, seekable Python file object, for libraries
    that read a file object rather than a path (decompressors of a remote
    archive). It holds the transport until closed."""

    def __init__(self, transport):
        super().__init__()
        self._t = transport.retain()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._t.size())[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        data = self._t.pread(len(buffer), self._pos)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._t.size() - self._pos)
        data = self._t.pread(size, self._pos)
        self._pos += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self._t.release()
        super().close()
