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
import threading
from collections import OrderedDict
from typing import List, Optional, Tuple

from archfs.engine.segcodecs import (  # noqa: F401  (re-exported: callers import them from here)
    CODECS,
    SEGMENT,
    Codec,
    Segment,
    eoa_segment,
)
from archfs.engine import cpus
from archfs.engine.sharing import Shared

BIG_SEGMENT = 16 << 20         # larger (foreign) segments are decoded as a stream
CACHE = 6                      # decoded segments kept


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
        if threads > 1:     # (imported here: a mount loading a saved index needs none)
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(threads, initializer=cpus.spread_here)
        else:
            self._pool = None
        self._inflight = []
        self._emit_out = out_pos       # output offset of the next segment to emit
        self._mark = None              # see mark()
        self._before_mark = None

    def write(self, data) -> int:
        self.buffer += data
        self.out_pos += len(data)
        while len(self.buffer) >= SEGMENT:
            if self._mark is not None and self._before_mark is None:
                self._before_mark = bytes(self.buffer[:self._mark[1]])
            self._emit(bytes(self.buffer[:SEGMENT]))
            del self.buffer[:SEGMENT]
        return self.out_pos

    # -- taking back a member whose writing failed halfway ------------------------------

    def mark(self) -> None:
        """Remember this point: ``rewind`` takes back what is written after
        it. A member is marked before its header goes in, so a copy that
        fails halfway (a read error, a full disk) leaves no partial member
        for the next one to follow and the commit to publish."""
        self._mark = (self.out_pos, len(self.buffer), len(self.segments) + len(self._inflight),
                      self._emit_out)
        self._before_mark = None       # the buffer's bytes before the mark, once a segment took them

    def rewind(self) -> int:
        """Back to the mark: the segments made since are dropped (and cut off
        the file), the buffer holds what it held. Returns how many segments
        were dropped from ``segments``."""
        out_pos, kept, count, emit_out = self._mark
        self._mark = None
        while self._inflight and self._inflight[0][1] < emit_out:
            self._drain_one()          # made before the mark: kept
        for _chunk, _out, future in self._inflight:
            future.exception()         # made after it: waited for, never written
        self._inflight.clear()
        dropped = len(self.segments) - count
        if dropped:
            self.at = self.segments[count][0]
            del self.segments[count:]
        self.file.truncate(self.at)
        self._emit_out, self.out_pos = emit_out, out_pos
        if self._before_mark is not None:
            self.buffer[:] = self._before_mark      # in place: a stream serves this buffer
        else:
            del self.buffer[kept:]
        self._before_mark = None
        return dropped

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
