"""Access to the archive file: the one interface engines read and write through.

``ArchiveFile`` is the local-file transport: ``pread`` (no shared file
position, so any number of threads read at once), ``size``, ``identity``
(what tells a changed or replaced file from the one opened), and for a
writable file ``pwrite``, ``sync`` and ``truncate``. Readers ``retain`` it and
``release`` it when done, so a file swapped out by an atomic rewrite stays
open for the readers that still use it. Another transport (issue 13: fsspec)
implements the same methods.
"""

import os
import threading
from typing import NamedTuple


class Identity(NamedTuple):
    dev: int
    ino: int
    size: int
    mtime_ns: int


class ArchiveFile:
    """A local archive file opened once and shared (see the module docstring)."""

    def __init__(self, path: str, writable: bool = False):
        flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0)
        self.fd = os.open(path, flags)
        self.path = path
        self.writable = writable
        self._users = 1
        self._lock = threading.Lock()

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

    # -- sharing ------------------------------------------------------------

    def retain(self) -> "ArchiveFile":
        with self._lock:
            if self._users <= 0:
                raise ValueError("archive file already closed")
            self._users += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            os.close(self.fd)


def fsync_dir(path: str) -> None:
    """Make a rename or creation in the directory holding ``path`` durable."""
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
