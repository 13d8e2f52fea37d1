"""Local bytes of a remote object: what was written since the last publish.

A sparse temporary file in the object's own coordinates holds every byte
written (and keeps holding it after a publish, as a cache, up to a limit),
and two sets of ranges say which bytes it holds (``present``) and which
changed since the last publish (``dirty``). The file is unlinked from the
start: a daemon that dies leaves nothing behind (its changes were never
published, so the object is as it was).
"""

import os
import tempfile
import threading
from typing import List, Optional, Tuple


class Ranges:
    """Disjoint, sorted [start, end) ranges."""

    def __init__(self):
        self.items: List[Tuple[int, int]] = []

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        kept = []
        for a, b in self.items:
            if b < start or a > end:
                kept.append((a, b))
            else:
                start, end = min(a, start), max(b, end)
        kept.append((start, end))
        kept.sort()
        self.items = kept

    def cut(self, at: int) -> None:
        """Drop everything from ``at`` on."""
        self.items = [(a, min(b, at)) for a, b in self.items if a < at]

    def clear(self) -> None:
        self.items = []

    def covering(self, start: int, end: int) -> List[Tuple[int, int]]:
        """The parts of [start, end) inside the ranges."""
        return [(max(a, start), min(b, end)) for a, b in self.items if a < end and b > start]

    @property
    def first(self) -> Optional[int]:
        return self.items[0][0] if self.items else None

    @property
    def total(self) -> int:
        return sum(b - a for a, b in self.items)


class Staging:
    def __init__(self, directory: Optional[str] = None):
        self._dir = directory
        self._file = None
        self.present = Ranges()
        self.dirty = Ranges()
        self._lock = threading.Lock()

    def _fd(self) -> int:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="archfs-staging-", dir=self._dir)
        return self._file.fileno()

    def pwrite(self, data, pos: int) -> None:
        fd = self._fd()
        view = memoryview(data)
        at = pos
        while view:
            n = os.pwrite(fd, view, at)
            view = view[n:]
            at += n
        with self._lock:
            self.present.add(pos, at)
            self.dirty.add(pos, at)

    def pread(self, size: int, pos: int) -> bytes:
        data = os.pread(self._fd(), size, pos)
        if len(data) < size:        # a hole at the end of the sparse file reads as zeros
            data += bytes(size - len(data))
        return data

    def zeros(self, start: int, end: int) -> None:
        """[start, end) now holds zeros (a file grown by truncate or by a write
        past its end)."""
        if end <= start:
            return
        fd = self._fd()
        if os.fstat(fd).st_size > start:
            os.pwrite(fd, bytes(min(end, os.fstat(fd).st_size) - start), start)
        with self._lock:
            self.present.add(start, end)
            self.dirty.add(start, end)

    def truncate(self, size: int) -> None:
        if self._file is not None:
            os.ftruncate(self._fd(), size)
        with self._lock:
            self.present.cut(size)
            self.dirty.cut(size)

    def published(self, keep: int) -> None:
        """What was dirty is now in the object; forget the local copy once it
        holds more than ``keep`` bytes."""
        with self._lock:
            self.dirty.clear()
            if self.present.total > keep and self._file is not None:
                os.ftruncate(self._file.fileno(), 0)
                self.present.clear()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
