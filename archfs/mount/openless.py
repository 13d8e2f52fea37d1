"""Reads without open and release requests, for read-only mounts.

Reading a small file costs the daemon four requests: lookup, open, read,
release. When open answers ENOSYS, the kernel stops sending open and
release for the whole mount ("zero-message open", Linux 4.20+) and keeps
every file's cached pages across opens; each read then arrives with no
handle. On a read-only mount nothing can change, so that is safe, and a
``grep -r`` costs two requests per file instead of four.

The reads still go through ``ArchiveOperations``: ``OpenlessReads`` opens a
file there on its first read and keeps the handle for the next reads of the
same inode (a big file is read in many requests, with decoding ahead), the
least recently used beyond ``KEPT`` closed. An error opening the member
(damage, a missing password) is the read's error.
"""

import os
import threading
from collections import OrderedDict

KEPT = 32


class _Open:
    __slots__ = ("path", "fi", "users", "dropped")

    def __init__(self, path, fi):
        self.path = path
        self.fi = fi
        self.users = 0
        self.dropped = False


class OpenlessReads:
    def __init__(self, operations, new_file_info, kept: int = KEPT):
        self._ops = operations
        self._new_fi = new_file_info
        self._kept = kept
        self._open = OrderedDict()      # inode -> _Open, least recently used first
        self._lock = threading.Lock()

    def read(self, ino: int, path: str, size: int, offset: int) -> bytes:
        handle = self._acquire(ino, path)
        try:
            return self._ops.read(path, size, offset, handle.fi)
        finally:
            self._put(handle)

    def _acquire(self, ino: int, path: str) -> _Open:
        with self._lock:
            handle = self._open.get(ino)
            if handle is not None:
                self._open.move_to_end(ino)
                handle.users += 1
                return handle
        fi = self._new_fi()
        fi.flags = os.O_RDONLY
        self._ops.open(path, fi)
        handle = _Open(path, fi)
        handle.users = 1
        late = []
        with self._lock:
            other = self._open.get(ino)
            if other is not None:       # another thread opened it meanwhile
                other.users += 1
                handle.dropped, handle.users = True, 0
                late.append(handle)
                handle = other
            else:
                self._open[ino] = handle
                while len(self._open) > self._kept:
                    _, old = self._open.popitem(last=False)
                    old.dropped = True
                    if old.users == 0:
                        late.append(old)
        self._close(late)
        return handle

    def _put(self, handle: _Open) -> None:
        with self._lock:
            handle.users -= 1
            done = handle.dropped and handle.users == 0
        if done:
            self._close([handle])

    def forget(self, ino: int) -> None:
        """The kernel forgot the inode: no more reads will come for it."""
        with self._lock:
            handle = self._open.pop(ino, None)
            if handle is None:
                return
            handle.dropped = True
            done = handle.users == 0
        if done:
            self._close([handle])

    def close_all(self) -> None:
        with self._lock:
            handles = [h for h in self._open.values()]
            self._open.clear()
            for h in handles:
                h.dropped = True
        self._close([h for h in handles if h.users == 0])

    def _close(self, handles) -> None:
        for handle in handles:
            try:
                self._ops.release(handle.path, handle.fi)
            except OSError:
                pass            # fuse_errors logged it; the handle is gone either way
