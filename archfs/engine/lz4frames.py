"""lz4 frames (python-lz4): a reader across concatenated and skippable frames,
and the segment codec archfs writes .tar.lz4 with.

python-lz4 decodes one frame per decompressor; a file may hold several (the
lz4 tool reads their concatenation as one stream) and skippable frames,
which archfs writes as fillers, as for zstd (``engine/segments``).
"""

import struct
from typing import List, Optional, Tuple

from archfs.engine.segcodecs import Codec, Segment, walk_frames

MAGIC = b"\x04\x22\x4d\x18"
_EMPTY_FRAME = bytes.fromhex("04224d1860408200000000")   # no content, checks right
_STEP = 1 << 16


def _skippable(magic: int) -> bool:
    return 0x184D2A50 <= magic <= 0x184D2A5F


class Lz4Reader:
    """``read(size)`` over the frames read from ``raw`` (memory bounded by ``size``)."""

    def __init__(self, raw):
        self._raw = raw
        self._pending = b""
        self._dec = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._dec = None

    def _start(self) -> bool:
        """At a frame's start: skip skippable frames; False at the end."""
        while True:
            head = self._read_exact(4)
            if not head:
                return False
            if len(head) < 4:
                raise EOFError("an lz4 file ends inside a frame header")
            magic = struct.unpack("<I", head)[0]
            if _skippable(magic):
                size = self._read_exact(4)
                if len(size) < 4:
                    raise EOFError("an lz4 skippable frame is cut short")
                left = struct.unpack("<I", size)[0]
                while left:
                    skipped = self._read_exact(min(left, 1 << 20))
                    if not skipped:
                        raise EOFError("an lz4 skippable frame is cut short")
                    left -= len(skipped)
                continue
            if head != MAGIC:
                raise ValueError("not an lz4 frame")
            import lz4.frame
            self._dec = lz4.frame.LZ4FrameDecompressor()
            self._pending = head + self._pending
            return True

    def _read_exact(self, n: int) -> bytes:
        out = bytearray(self._pending[:n])
        self._pending = self._pending[n:]
        while len(out) < n:
            more = self._raw.read(max(n - len(out), _STEP))
            if not more:
                break
            need = n - len(out)
            out += more[:need]
            self._pending += more[need:]
        return bytes(out)

    def read(self, size: int = -1) -> bytes:
        limit = size if size is not None and size >= 0 else 1 << 62
        parts: List[bytes] = []
        total = 0
        while total < limit:
            if self._dec is None and not self._start():
                break
            dec = self._dec
            feed = b""
            if dec.needs_input:
                feed, self._pending = self._pending or self._raw.read(_STEP), b""
                if not feed:
                    raise EOFError("an lz4 frame is cut short")
            data = dec.decompress(feed, min(limit - total, 1 << 20))
            parts.append(data)
            total += len(data)
            if dec.eof:
                self._pending = (dec.unused_data or b"") + self._pending
                self._dec = None
        return b"".join(parts)


class Lz4Codec(Codec):
    kind = "lz4"
    min_filler = 8

    def compress(self, data: bytes) -> bytes:
        import lz4.frame
        level = 0 if self.level in (None, 6) else min(self.level, 16)
        return lz4.frame.compress(data, compression_level=level, store_size=True,
                                  content_checksum=True, block_linked=False,
                                  block_size=lz4.frame.BLOCKSIZE_MAX4MB)

    def reader(self, raw):
        return Lz4Reader(raw)

    fills_start = False      # see ``filler``

    def filler(self, length: int) -> Optional[bytes]:
        """A skippable frame. Not an empty frame: libarchive (bsdtar) ends
        the stream at a frame that decodes to nothing; nor at the file's
        start, where tools look for lz4's magic (the writer rewrites a file
        whose end-of-archive segment is its first instead)."""
        if length < self.min_filler:
            return None
        return struct.pack("<II", 0x184D2A50, length - 8) + bytes(length - 8)

    def walk(self, pread, size: int) -> Optional[List[Segment]]:
        """Frames that record their content size, and skippable frames."""
        return walk_frames(pread, size, 19, _lz4_frame)


def _lz4_frame(pread, head: bytes, pos: int) -> Optional[Tuple[int, int]]:
    """An lz4 frame's end and content size, from its header and block sizes."""
    if head[:4] != MAGIC or len(head) < 7:
        return None
    flg = head[4]
    if flg >> 6 != 1:
        return None
    if flg & 0x08:
        if len(head) < 15:
            return None
        content = struct.unpack_from("<Q", head, 6)[0]
        at = 14
    elif _is_empty(head):
        content, at = 0, 6
    else:
        return None                  # no content size: would need decoding
    at += (4 if flg & 0x01 else 0) + 1
    block = pos + at
    while True:
        bh = pread(4, block)
        if len(bh) < 4:
            return None
        bsize = struct.unpack("<I", bh)[0]
        block += 4
        if bsize == 0:
            break
        block += (bsize & 0x7FFFFFFF) + (4 if flg & 0x10 else 0)
    return block + (4 if flg & 0x04 else 0), content


def _is_empty(head: bytes) -> bool:
    return head[:11] == _EMPTY_FRAME
