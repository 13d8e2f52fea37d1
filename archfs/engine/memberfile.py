"""A member read as a seekable binary file, for every format.

A format's reader gives ``pread(size, offset)`` (thread-safe, no shared
position: what the mount calls) and ``size``; the file interface the
plugin API hands out (``read``, ``seek``, ``readinto``...) is the same
translation onto them for every format, so it lives here, off the hot path.
"""

import io


class MemberFile(io.RawIOBase):
    """``io.RawIOBase`` over ``pread`` and ``size`` (see the module docstring)."""

    _pos = 0

    @property
    def size(self) -> int:
        raise NotImplementedError

    def pread(self, size: int, offset: int) -> bytes:
        raise NotImplementedError

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, buffer) -> int:
        data = self.pread(len(buffer), self._pos)
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def read(self, size=-1) -> bytes:
        if size is None or size < 0:
            size = max(0, self.size - self._pos)
        data = self.pread(size, self._pos)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self.size
        if offset < 0:
            raise ValueError("negative seek position %d" % offset)
        self._pos = offset
        return offset

    def tell(self):
        return self._pos
