"""Decoding ahead of a sequential reader, on another core.

Inflating is the cost of reading a compressed member; the rest (copying to
the kernel, Python's share of each FUSE request) is smaller but adds up.
Done one after the other they cost their sum; with the decoder on its own
thread they overlap, because zlib, bz2 and lzma release the GIL while they
work. A ``Prefetcher`` runs a ``DecodeStream`` at most ``AHEAD`` bytes past
the furthest byte asked for and keeps ``BEHIND`` bytes before it, so the
kernel's readahead requests, which arrive in parallel and out of order, are
all served from memory. At most ``MAX_ACTIVE`` run at once, which bounds
memory whatever the number of open files.
"""

import threading
from collections import deque
from typing import Optional

from archfs.engine import cpus

AHEAD = 8 << 20
BEHIND = 4 << 20                # the kernel's readahead runs at most 2 MiB out of order
CHUNK = 1 << 20
MAX_ACTIVE = 4

_slots = threading.BoundedSemaphore(MAX_ACTIVE)


class ChunkWindow:
    """Recent output as a run of chunks: appending and trimming copy nothing."""

    def __init__(self, start: int):
        self.chunks = deque()
        self.start = start
        self.end = start

    def append(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.end += len(chunk)

    def trim_before(self, offset: int) -> None:
        chunks = self.chunks
        while chunks and self.start + len(chunks[0]) <= offset:
            self.start += len(chunks.popleft())

    def get(self, offset: int, end: int) -> bytes:
        """Bytes [offset, end), which the window must hold."""
        parts = []
        at = self.start
        for chunk in self.chunks:
            chunk_end = at + len(chunk)
            if chunk_end > offset:
                lo, hi = max(offset - at, 0), min(end - at, len(chunk))
                if lo == 0 and hi == len(chunk):
                    parts.append(chunk)
                else:
                    parts.append(memoryview(chunk)[lo:hi])
                if chunk_end >= end:
                    break
            at = chunk_end
        if len(parts) == 1:
            part = parts[0]
            return part if isinstance(part, bytes) else part.tobytes()
        return b"".join(parts)


class Prefetcher:
    """Runs ``stream`` on a thread, ahead of the reads made through ``read``."""

    def __init__(self, stream, window: ChunkWindow, usize: int):
        self._stream = stream
        self._window = window
        self._usize = usize
        self._want = window.end          # furthest byte asked for
        self._done = stream.done
        self._need: Optional[int] = None  # the least a waiting reader needs decoded
        self._error: Optional[BaseException] = None
        self._stop = False
        self._cond = threading.Condition()
        stream.asks_elsewhere = True     # read() asks for its input (see DecodeStream)
        stream.ask_ahead()
        self._thread = threading.Thread(target=self._run, name="archfs-prefetch", daemon=True)
        self._thread.start()

    @staticmethod
    def acquire_slot() -> bool:
        return _slots.acquire(blocking=False)

    def _run(self) -> None:
        cpus.spread_here()      # it inflates without the GIL (see engine/cpus.py)
        stream, window, cond = self._stream, self._window, self._cond
        try:
            while True:
                with cond:
                    while not self._stop and window.end - self._want >= AHEAD:
                        cond.wait()
                    if self._stop:
                        return
                chunk = stream.next_chunk(CHUNK)      # the GIL is free while it inflates
                with cond:
                    if chunk:
                        window.append(chunk)
                        window.trim_before(self._want - AHEAD - BEHIND)
                    if stream.done:
                        self._done = True
                    # wake readers once what they wait for is there, not at
                    # every chunk (a 1 MiB read spans two or three)
                    need = self._need
                    if need is not None and (window.end >= need or self._done or not chunk):
                        self._need = None
                        cond.notify_all()
                if not chunk:
                    return
        except BaseException as exc:       # handed to the reader waiting for it
            with cond:
                self._error = exc
                cond.notify_all()
        finally:
            _slots.release()

    def read(self, offset: int, end: int) -> Optional[bytes]:
        """Bytes [offset, end), or None if ``offset`` is no longer kept."""
        self._stream.ask_ahead()
        cond, window = self._cond, self._window
        with cond:
            if offset < window.start or self._stop:
                return None
            if end > self._want:
                self._want = end
                cond.notify_all()
            final = end >= self._usize         # the last bytes wait for the CRC check
            while self._error is None and (window.end < end or (final and not self._done)):
                if self._done and window.end < end:
                    break
                if self._need is None or end < self._need:
                    self._need = end
                cond.wait()
            if self._error is not None:
                raise self._error
            if window.end < end:
                return None
            data = window.get(offset, end)
            window.trim_before(offset - BEHIND)
            return data

    def stop(self) -> None:
        """Stop and wait for the thread (at most one chunk): it reads the
        archive through a descriptor its owner is about to release."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()
