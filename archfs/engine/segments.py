"""Compressed files made of independent segments: read anywhere, append cheaply.

gzip members, zstd frames, xz streams and bzip2 streams may be concatenated,
and every standard tool reads the result as one stream. archfs writes
compressed archives that way, one segment per ``SEGMENT`` bytes of input,
so

- a read anywhere decodes at most one segment (the seek points are the
  segment boundaries: ``SegmentedStream``);
- an append adds segments after the end, and the segment holding the tar's
  end-of-archive blocks is replaced, in place, by an *empty* segment of
  exactly its length (``Codec.filler``: a gzip member with padding in its
  extra field, a zstd skippable frame, an xz stream with a padded block
  header, bzip2 empty streams), which every tool decodes to nothing.

A segment map is found without decoding where the format allows
(``Codec.walk``): archfs's gzip members carry their sizes in an extra field
(``AF``, as BGZF does), zstd frames record their content size and block
sizes, xz streams end in an index. It is also saved with the member index.
"""

import bisect
import io
import json
import struct
import threading
import zlib
from collections import OrderedDict
from typing import List, Optional, Tuple

# bz2, lzma and concurrent.futures are imported where they are used: a mount
# that loads a saved index needs none of them (start-up cost).

from archfs.engine.sharing import Shared

SEGMENT = 1 << 20              # input bytes per segment: a random read decodes at most this
BIG_SEGMENT = 16 << 20         # larger (foreign) segments are decoded as a stream
CACHE = 6                      # decoded segments kept

Segment = Tuple[int, int, int, int]     # (compressed offset, length, output offset, length)


class Codec:
    kind = ""
    min_filler = 0
    fills_start = True          # a filler may stand at the file's start

    def __init__(self, level: Optional[int] = None):
        self.level = level

    def compress(self, data: bytes) -> bytes:
        raise NotImplementedError

    def reader(self, raw: io.RawIOBase):
        """A file object decoding one segment read from ``raw``."""
        raise NotImplementedError

    def filler(self, length: int) -> Optional[bytes]:
        """An empty segment of exactly ``length`` bytes, or None."""
        return None

    def walk(self, pread, size: int) -> Optional[List[Segment]]:
        """The segments of a file, found without decoding, or None."""
        return None


class GzipCodec(Codec):
    kind = "gzip"
    min_filler = 38

    head: Optional[Tuple[int, int]] = None    # (length, output size) of a foreign head

    def compress(self, data: bytes) -> bytes:
        deflate = zlib.compressobj(6 if self.level is None else self.level, zlib.DEFLATED, -15)
        body = deflate.compress(data) + deflate.flush()
        hd = b"" if self.head is None else b"HD" + struct.pack("<HQQ", 16, *self.head)
        total = 24 + len(hd) + len(body) + 8
        header = (b"\x1f\x8b\x08\x04\0\0\0\0\0\xff" + struct.pack("<H", 12 + len(hd)) + b"AF"
                  + struct.pack("<HII", 8, total, len(data)) + hd)
        return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)

    def reader(self, raw):
        import gzip
        return gzip.GzipFile(fileobj=raw, mode="rb")

    def filler(self, length: int) -> Optional[bytes]:
        pad = length - 38
        if pad < 0 or pad > 65535 - 16:
            return None
        extra = b"AF" + struct.pack("<HII", 8, length, 0) + b"PD" + struct.pack("<H", pad) \
            + bytes(pad)
        return (b"\x1f\x8b\x08\x04\0\0\0\0\0\xff" + struct.pack("<H", len(extra)) + extra
                + b"\x03\x00" + struct.pack("<II", 0, 0))

    def walk(self, pread, size: int) -> Optional[List[Segment]]:
        """Members with sizes in their ``AF`` field; the file may start with a
        foreign member that a cut ended (``deflatecut``): its length and
        output size are then in an ``HD`` field of the members after it."""
        out = []
        pos = out_pos = 0
        if not _is_af(pread(16, 0)):
            head = _find_head(pread, size)
            if head is None:
                return None
            pos, out_pos = head
            out.append((0, pos, 0, out_pos))
        while pos < size:
            head = pread(24, pos)
            if len(head) < 24 or not _is_af(head):
                return None
            total, usize = struct.unpack_from("<II", head, 16)
            if total < 38 or pos + total > size:
                return None
            out.append((pos, total, out_pos, usize))
            pos += total
            out_pos += usize
        self.head = (out[0][1], out[0][3]) if out and not _is_af(pread(16, 0)) else None
        return out


_GZIP_AF = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff"
HEAD_SEARCH = 4096             # the last member's header is in this much of the file's end


def _is_af(head: bytes) -> bool:
    return head[:10] == _GZIP_AF and head[12:16] == b"AF\x08\x00"


def _find_head(pread, size: int) -> Optional[Tuple[int, int]]:
    """(length, output size) of a cut foreign head, from the ``HD`` field of
    a member near the end, checked by walking from the head's end to that
    member. After a commit the last member is a small end-of-archive
    segment: one read of the file's last 4 KiB finds it (what a foreign
    .tar.gz costs at every open); after a crash, uncommitted segments may
    follow it: the last one's header is then within a segment's length."""
    if size < 46:
        return None
    start = max(0, size - HEAD_SEARCH)
    tail = pread(size - start, start)
    found = _search_head(pread, size, tail, start)
    if found is not None:
        return found
    last_isize = struct.unpack("<I", tail[-4:])[0]
    if last_isize > SEGMENT or start == 0:
        return None
    start = max(0, size - HEAD_SEARCH - last_isize - last_isize // 64 - 1024)
    return _search_head(pread, size, pread(size - start, start), start)


def _search_head(pread, size: int, tail: bytes, start: int) -> Optional[Tuple[int, int]]:
    at = tail.rfind(_GZIP_AF)
    while at >= 0:
        h = tail[at:at + 44]
        if len(h) == 44 and _is_af(h) and h[24:28] == b"HD\x10\x00":
            head_len, head_usize = struct.unpack_from("<QQ", h, 28)
            if 0 < head_len <= start + at and _chain_reaches(pread, head_len, start + at, size):
                return head_len, head_usize
        at = tail.rfind(_GZIP_AF, 0, at)
    return None


def _chain_reaches(pread, pos: int, target: int, size: int) -> bool:
    while pos < target:
        head = pread(24, pos)
        if len(head) < 24 or not _is_af(head):
            return False
        total = struct.unpack_from("<I", head, 16)[0]
        if total < 38 or pos + total > size:
            return False
        pos += total
    return pos == target


class ZstdCodec(Codec):
    kind = "zstd"
    min_filler = 17

    def compress(self, data: bytes) -> bytes:
        import zstandard
        return zstandard.ZstdCompressor(level=3 if self.level is None else min(self.level, 19),
                                        write_content_size=True,
                                        write_checksum=True).compress(data)

    def reader(self, raw):
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)

    def filler(self, length: int) -> Optional[bytes]:
        """An empty frame (so the file still starts with zstd's magic, which
        tools look for), then a skippable frame for the rest."""
        if length < 17:
            return None
        empty = struct.pack("<I", 0xFD2FB528) + b"\x20\x00" + b"\x01\x00\x00"
        rest = length - len(empty)
        return empty + struct.pack("<II", 0x184D2A50, rest - 8) + bytes(rest - 8)

    def walk(self, pread, size: int) -> Optional[List[Segment]]:
        out = []
        pos = out_pos = 0
        while pos < size:
            head = pread(18, pos)
            if len(head) < 8:
                return None
            magic = struct.unpack_from("<I", head)[0]
            if 0x184D2A50 <= magic <= 0x184D2A5F:
                length = 8 + struct.unpack_from("<I", head, 4)[0]
                out.append((pos, length, out_pos, 0))
                pos += length
                continue
            if magic != 0xFD2FB528:
                return None
            fhd = head[4]
            fcs_flag, single, checksum, dict_flag = fhd >> 6, fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3
            at = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
            fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
            if fcs_size == 0:
                return None          # no content size: would need decoding
            content = int.from_bytes(head[at:at + fcs_size], "little") + (
                256 if fcs_size == 2 else 0)
            block = pos + at + fcs_size
            while True:
                bh = pread(3, block)
                if len(bh) < 3:
                    return None
                value = int.from_bytes(bh, "little")
                last, btype, bsize = value & 1, value >> 1 & 3, value >> 3
                if btype == 3:
                    return None
                block += 3 + (1 if btype == 1 else bsize)
                if last:
                    break
            end = block + (4 if checksum else 0)
            if end > size:
                return None
            out.append((pos, end - pos, out_pos, content))
            out_pos += content
            pos = end
        return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: bytes, at: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


class XzCodec(Codec):
    kind = "xz"
    min_filler = 48

    def compress(self, data: bytes) -> bytes:
        import lzma
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                             preset=6 if self.level is None else min(self.level, 9))

    def reader(self, raw):
        import lzma
        return lzma.LZMAFile(raw, "rb")

    def filler(self, length: int) -> Optional[bytes]:
        """A stream with one block decoding to nothing, its header padded to fit."""
        if length % 4:
            return None
        flags = b"\x00\x00"                 # no check
        head = b"\xfd7zXZ\x00" + flags + struct.pack("<I", zlib.crc32(flags))
        for size in range(12, 1025, 4):
            body = b"\x00" + _varint(1) + _varint(size + 1) + _varint(0)
            body += bytes(-len(body) % 4)
            index = body + struct.pack("<I", zlib.crc32(body))
            if 12 + size + 4 + len(index) + 12 == length:
                break
        else:
            return None
        block_header = bytes([size // 4 - 1, 0x00]) + b"\x21\x01\x00"
        block_header += bytes(size - 4 - len(block_header))
        block_header += struct.pack("<I", zlib.crc32(block_header))
        footer_body = struct.pack("<I", len(index) // 4 - 1) + flags
        footer = struct.pack("<I", zlib.crc32(footer_body)) + footer_body + b"YZ"
        return head + block_header + b"\x00\x00\x00\x00" + index + footer

    def walk(self, pread, size: int) -> Optional[List[Segment]]:
        """Streams from the end backward: footer, index, stream header."""
        streams = []
        end = size
        try:
            while end > 0:
                tail = pread(12, end - 12)
                if tail == bytes(12) or tail[-4:] == b"\0\0\0\0":
                    end -= 4               # stream padding
                    continue
                if len(tail) < 12 or tail[10:12] != b"YZ":
                    return None
                index_size = (struct.unpack_from("<I", tail, 4)[0] + 1) * 4
                index = pread(index_size, end - 12 - index_size)
                if len(index) != index_size or index[0] != 0:
                    return None
                count, at = _read_varint(index, 1)
                blocks = usize = 0
                for _ in range(count):
                    unpadded, at = _read_varint(index, at)
                    uncompressed, at = _read_varint(index, at)
                    blocks += -(-unpadded // 4) * 4
                    usize += uncompressed
                start = end - 12 - index_size - blocks - 12
                if start < 0 or pread(6, start) != b"\xfd7zXZ\x00":
                    return None
                streams.append((start, end - start, usize))
                end = start
        except ValueError:
            return None
        out = []
        out_pos = 0
        for start, length, usize in reversed(streams):
            out.append((start, length, out_pos, usize))
            out_pos += usize
        return out


class Bzip2Codec(Codec):
    kind = "bzip2"
    min_filler = 14

    def compress(self, data: bytes) -> bytes:
        import bz2
        return bz2.compress(data, 9 if self.level is None else max(1, min(self.level, 9)))

    def reader(self, raw):
        import bz2
        return bz2.BZ2File(raw, "rb")

    def filler(self, length: int) -> Optional[bytes]:
        if length % 14:
            return None
        import bz2
        return bz2.compress(b"") * (length // 14)


class _LazyCodecs(dict):
    """The codecs by kind; lz4's module is imported when it is first asked for."""

    def __missing__(self, kind: str):
        if kind == "lz4":
            from archfs.engine.lz4frames import Lz4Codec
            self[kind] = Lz4Codec
            return Lz4Codec
        raise KeyError(kind)


CODECS = _LazyCodecs(gzip=GzipCodec, zstd=ZstdCodec, xz=XzCodec, bzip2=Bzip2Codec)


def eoa_segment(codec: Codec, zeros: int) -> Tuple[bytes, int]:
    """A segment of at least ``zeros`` zero bytes that a filler can replace
    later: (segment, how many zero bytes it decodes to)."""
    sizes = list(range(zeros, zeros + 40 * 512, 512)) + list(range(1024, zeros, 512))
    for size in sizes:          # two zero blocks are enough; a record is usual
        data = codec.compress(bytes(size))
        if len(data) >= codec.min_filler and codec.filler(len(data)) is not None:
            return data, size
    return codec.compress(bytes(zeros)), zeros


class _Range(io.RawIOBase):
    """A range of a file read through ``pread``."""

    def __init__(self, pread, start: int, length: int):
        super().__init__()
        self._pread, self._pos, self._end = pread, start, start + length

    def readable(self):
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._end - self._pos, 1 << 20)
        if n <= 0:
            return 0
        data = self._pread(n, self._pos)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


class SegmentedStream(Shared):
    """Reads the decompressed content of a segmented file (see the module doc).

    ``pending``: bytes appended after the last segment, not compressed yet
    (a writer's buffer), served as the stream's continuation.
    """

    kind = "segments"

    def __init__(self, file, codec: Codec, segments: List[Segment]):
        self._file = file.retain()
        self.codec = codec
        self._lock = threading.Lock()
        self.set_segments(segments)
        self._cache: "OrderedDict[int, bytes]" = OrderedDict()
        self._cursor = None          # (segment index, reader, position) for big segments
        self.pending_start = self.end
        self.pending = bytearray()

    def set_segments(self, segments: List[Segment]) -> None:
        live = [s for s in segments if s[3] > 0]
        self.segments = list(segments)
        self._starts = [s[2] for s in live]
        self._live = live
        self.end = (live[-1][2] + live[-1][3]) if live else 0

    # -- sharing (as engine.compressed streams) --------------------------------

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.release()

    # -- reading -----------------------------------------------------------------

    def pread(self, size: int, pos: int) -> bytes:
        parts = []
        end = pos + size
        with self._lock:
            while pos < end:
                if pos >= self.end:
                    if pos >= self.pending_start:
                        at = pos - self.pending_start
                        parts.append(bytes(self.pending[at:at + end - pos]))
                    break
                i = bisect.bisect_right(self._starts, pos) - 1
                if i < 0:
                    break
                seg = self._live[i]
                take = min(end, seg[2] + seg[3]) - pos
                parts.append(self._segment_bytes(i, seg, pos - seg[2], take))
                pos += take
        return b"".join(parts)

    def _segment_bytes(self, i: int, seg: Segment, offset: int, size: int) -> bytes:
        if seg[3] <= BIG_SEGMENT:
            data = self._cache.get(seg[0])
            if data is None:
                with self.codec.reader(_Range(self._file.pread, seg[0], seg[1])) as r:
                    data = r.read()
                if len(data) != seg[3]:
                    raise EOFError("a %s segment decodes to %d bytes, not %d"
                                   % (self.codec.kind, len(data), seg[3]))
                self._cache[seg[0]] = data
                while len(self._cache) > CACHE:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(seg[0])
            return data[offset:offset + size]
        cursor = self._cursor
        if cursor is None or cursor[0] != i or cursor[2] > offset:
            reader = self.codec.reader(_Range(self._file.pread, seg[0], seg[1]))
            cursor = [i, reader, 0]
            self._cursor = cursor
        reader = cursor[1]
        while cursor[2] < offset:
            skipped = reader.read(min(1 << 20, offset - cursor[2]))
            if not skipped:
                raise EOFError("%s segment ends early" % self.codec.kind)
            cursor[2] += len(skipped)
        data = reader.read(size)
        cursor[2] += len(data)
        return data

    def compressed_position(self, pos: int) -> int:
        i = bisect.bisect_right(self._starts, pos) - 1
        return self._live[i][0] if i >= 0 else 0

    # -- saved with the member index --------------------------------------------

    def seek_state(self) -> bytes:
        return b"S" + json.dumps({"kind": self.codec.kind, "segments": self.segments}).encode()

    def load_seek_state(self, state: bytes) -> None:
        self.set_segments(segments_from_state(state))


def segments_from_state(state: bytes) -> List[Segment]:
    found = json.loads(state[1:])
    return [tuple(int(x) for x in s) for s in found["segments"]]


class HeadedStream(SegmentedStream):
    """Segments after a foreign gzip member or bzip2 stream that a cut ended
    (``deflatecut``, ``bzip2cut``): the first segment, the head, is read
    through ``head`` (a library stream over the file, with the seek points it
    had before the cut up to it)."""

    def __init__(self, file, codec: Codec, segments: List[Segment], head):
        self.head = head
        codec.head = (segments[0][1], segments[0][3])
        super().__init__(file, codec, segments)

    def _segment_bytes(self, i: int, seg: Segment, offset: int, size: int) -> bytes:
        if seg[0] == 0:
            data = self.head.pread(size, offset)
            if len(data) != size:
                raise EOFError("the gzip head ends early")
            return data
        return super()._segment_bytes(i, seg, offset, size)

    def close(self) -> None:
        head, self.head = self.head, None
        super().close()
        if head is not None:
            head.release()

    def seek_state(self) -> bytes:
        state = {"kind": self.codec.kind, "segments": self.segments, "headed": True}
        head = cut_head_state(self.codec.kind, self.head.seek_state(), self.segments[0][1],
                              self.segments[0][3])
        if head is not None:
            state["head"] = head.hex()
        return b"S" + json.dumps(state).encode()

    def load_seek_state(self, state: bytes) -> None:
        super().load_seek_state(state)
        found = json.loads(state[1:]).get("head")
        if found:
            self.head.load_seek_state(bytes.fromhex(found))


def cut_head_state(kind: str, state: Optional[bytes], length: int, out: int) -> Optional[bytes]:
    """A head's seek state (its library's) without the points past its cut:
    ``length`` bytes of file, ``out`` bytes of output."""
    if not state:
        return None
    if kind == "gzip":
        from archfs.engine.deflatecut import gztool_cut
        kept = gztool_cut(state[1:], out) if state[:1] == b"R" else None
        return b"R" + kept if kept is not None else None
    if kind == "bzip2":
        points = [(b, o) for b, o in json.loads(state) if o <= out and b < length * 8]
        return json.dumps(points).encode()
    return None


def stream_from_state(file, path: str, codec: Codec, state: bytes) -> SegmentedStream:
    """The stream a saved seek state (``seek_state``) describes."""
    segments = segments_from_state(state)
    if not json.loads(state[1:]).get("headed"):
        return SegmentedStream(file, codec, segments)
    from archfs.engine import compressed
    stream = HeadedStream(file, codec, segments, compressed.open_stream(file, path, codec.kind))
    stream.load_seek_state(state)
    return stream


def open_headed(file, path: str, codec: Codec, segments: List[Segment]) -> HeadedStream:
    """A stream over a file whose walk found a foreign head."""
    from archfs.engine import compressed
    return HeadedStream(file, codec, segments, compressed.open_stream(file, path, "gzip"))


class SegmentSink:
    """Writes bytes as segments at the end of ``file`` (compressing on 2 threads)."""

    def __init__(self, file, codec: Codec, at: int, out_pos: int, threads: int = 2):
        self.file = file
        self.codec = codec
        self.at = at                   # where the next segment goes in the file
        self.out_pos = out_pos         # output offset of the next byte
        self.buffer = bytearray()
        self.segments: List[Segment] = []
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(threads)
        else:
            self._pool = None
        self._inflight = []
        self._emit_out = out_pos       # output offset of the next segment to emit

    def write(self, data) -> int:
        self.buffer += data
        self.out_pos += len(data)
        while len(self.buffer) >= SEGMENT:
            self._emit(bytes(self.buffer[:SEGMENT]))
            del self.buffer[:SEGMENT]
        return self.out_pos

    def _emit(self, chunk: bytes) -> None:
        out = self._emit_out
        self._emit_out += len(chunk)
        if self._pool is None:
            self._place(chunk, out, self.codec.compress(chunk))
            return
        self._inflight.append((chunk, out, self._pool.submit(self.codec.compress, chunk)))
        while len(self._inflight) > 4:
            self._drain_one()

    def _drain_one(self) -> None:
        chunk, out, future = self._inflight.pop(0)
        self._place(chunk, out, future.result())

    def _place(self, chunk: bytes, out: int, data: bytes) -> None:
        self.file.pwrite(data, self.at)
        self.segments.append((self.at, len(data), out, len(chunk)))
        self.at += len(data)

    def flush(self) -> None:
        """Compress what is buffered into a last (short) segment."""
        if self.buffer:
            self._emit(bytes(self.buffer))
            self.buffer.clear()
        while self._inflight:
            self._drain_one()

    def write_eoa(self, zeros: int) -> Tuple[int, int]:
        """The end-of-archive segment; returns (its file offset, its length)."""
        self.flush()
        self._emit_out += zeros
        data, decoded = eoa_segment(self.codec, zeros)
        at = self.at
        self.file.pwrite(data, at)
        self.segments.append((at, len(data), self.out_pos, decoded))
        self.at += len(data)
        self.out_pos += decoded
        self._emit_out = self.out_pos
        return at, len(data)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
