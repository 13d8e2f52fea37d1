"""Reading one member: a seekable file over a range of the tar stream.

A plain member is the range [data, data + size) of the stream; a sparse one
maps its apparent offsets onto the stored pieces and reads holes as zeros
(so a 1 TiB sparse file with 4 KiB of data costs 4 KiB of reading). Reads
that fail in the decompressor or run past the end of the stream are EIO.
"""

import bisect
import threading
from typing import List, Optional, Tuple

from archfs.engine.compressed import library_error
from archfs.engine.memberfile import MemberFile
from archfs.errors import CorruptMemberError

ZEROS = bytes(1 << 16)


class MemberReader(MemberFile):
    def __init__(self, name: str, stream, data: int, size: int, usize: int,
                 sparse: Optional[List[Tuple[int, int]]] = None, on_close=None):
        super().__init__()
        self._name = name
        self._stream = stream
        self._data = data
        self._stored = size
        self._usize = usize
        self._pos = 0
        self._lock = threading.Lock()
        self._on_close = on_close
        self._map = None
        if sparse is not None:
            starts, stored_at = [], []
            at = 0
            for offset, length in sparse:
                starts.append(offset)
                stored_at.append(at)
                at += length
            self._map = (starts, [length for _, length in sparse], stored_at)

    @property
    def name(self):
        return self._name

    @property
    def size(self) -> int:
        return self._usize

    def pread(self, size: int, offset: int) -> bytes:
        if size <= 0 or offset >= self._usize:
            return b""
        end = min(self._usize, offset + size)
        if self._map is None:
            return self._read_stored(offset, end - offset)
        return self._read_sparse(offset, end)

    def _read_stored(self, offset: int, size: int) -> bytes:
        try:
            data = self._stream.pread(size, self._data + offset)
        except Exception as exc:
            if isinstance(exc, OSError) or library_error(exc):
                raise CorruptMemberError("%s: cannot read the member's data (%s)"
                                         % (self._name, exc)) from None
            raise
        if len(data) < size:
            raise CorruptMemberError("%s: the archive ends inside the member's data" % self._name)
        return data

    def _read_sparse(self, offset: int, end: int) -> bytes:
        starts, lengths, stored_at = self._map
        parts = []
        pos = offset
        i = max(0, bisect.bisect_right(starts, pos) - 1)
        while pos < end:
            if i < len(starts) and starts[i] <= pos < starts[i] + lengths[i]:
                take = min(end, starts[i] + lengths[i]) - pos
                parts.append(self._read_stored(stored_at[i] + pos - starts[i], take))
                pos += take
                i += 1
                continue
            if i < len(starts) and starts[i] + lengths[i] <= pos:
                i += 1
                continue
            hole_end = min(end, starts[i] if i < len(starts) else end)
            while pos < hole_end:
                take = min(hole_end - pos, len(ZEROS))
                parts.append(ZEROS[:take])
                pos += take
        return b"".join(parts)

    # -- io.RawIOBase (the rest is engine.memberfile's) ---------------------

    def close(self):
        if not self.closed:
            with self._lock:
                on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()
        super().close()
