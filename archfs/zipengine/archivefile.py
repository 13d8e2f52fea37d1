"""The open archive file, shared by every reader and the writer.

Readers use ``pread`` only (no shared file position), so any number of
threads can read at once. After a compaction swaps in a new file, readers
opened before it keep the old descriptor, which stays valid until the last
of them is closed.
"""

import os
import threading


class ArchiveFile:
    def __init__(self, path: str, writable: bool):
        flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0)
        self.fd = os.open(path, flags)
        self.path = path
        self._users = 1
        self._lock = threading.Lock()

    def pread(self, size: int, pos: int) -> bytes:
        data = os.pread(self.fd, size, pos)
        while 0 < len(data) < size:  # a short read before EOF: ask again
            more = os.pread(self.fd, size - len(data), pos + len(data))
            if not more:
                break
            data += more
        return data

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
