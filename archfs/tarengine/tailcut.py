"""Rewriting a compressed tar from a cut point: the cost of the change, not the archive.

A compressed tar can only be rewritten from a point where its compressed data
can end and start again:

- in an archive of segments (``engine/segments``): the start of the segment
  holding the first changed byte;
- in a foreign gzip member (one member for the whole archive, as gzip, GNU tar
  and Python's tarfile make it) or the head such a member left: a deflate
  block boundary at or before that byte, one of the seek index's checkpoints.
  The member is ended there (``engine/deflatecut``); what followed is
  re-encoded as segments. So the first write to a foreign .tar.gz re-encodes
  about one checkpoint interval (1 MiB of compressed data), not the archive;
- in a foreign bzip2 stream: a block boundary (``engine/bzip2cut``), the
  same way: the stream is ended there, what followed is re-encoded.

The new bytes from the cut on (what closes the head, the segments of the
unchanged tar bytes between the cut and the change, the surviving members,
the end-of-archive segment) go through ``tailrewrite``'s intent file, so a
crash at any moment leaves the old archive or, after the next open or
``archfs repair``, the new one.

A zstd file of several frames that record their sizes is read as segments
and cut at a frame. A single xz block or zstd frame from end to end (what
xz and zstd make by default) has no cut point: such an archive is rewritten
whole, beside it, at its first write (``recompress``); so is an archive whose
first change is in its first segment or checkpoint interval.
"""

import logging
import time
from typing import Optional

from archfs.engine import bzip2cut, deflatecut
from archfs.engine.compressed import Bzip2Stream, GzipStream, open_stream
from archfs.engine.segments import (
    CODECS,
    SEGMENT,
    HeadedStream,
    SegmentedStream,
    SegmentSink,
    cut_head_state,
)
from archfs.errors import CorruptArchiveError
from archfs.tarengine import headers as hd
from archfs.tarengine import tailrewrite

log = logging.getLogger("archfs.tar")

MAX_CUT_TAIL = 64 << 20     # compressed bytes after a checkpoint, and bytes they decode to
VERIFY_STEP = 1 << 20


class Cut:
    """Where a rewrite starts: the file offset ``at``, the bytes that end what
    stays before it (``closing``), the tar offset ``out`` the new data starts
    at, and the head the file keeps (``head``: (length, output size), or None)
    with its seek state (``head_state``, None to keep the current head stream)."""

    def __init__(self, at: int, closing: bytes, out: int, head=None, head_state=None,
                 new_head: bool = False):
        self.at, self.closing, self.out = at, closing, out
        self.head, self.head_state, self.new_head = head, head_state, new_head


def find_cut(writer, start: int) -> Optional[Cut]:
    """The last cut point at or before tar offset ``start``, or None."""
    stream = writer.stream
    if isinstance(stream, SegmentedStream):
        return _segment_cut(writer, stream, start)
    if isinstance(stream, GzipStream):
        return _deflate_cut(writer, stream, start, writer._file.size())
    if isinstance(stream, Bzip2Stream):
        return _bzip2_cut(writer, stream, start)
    return None     # (indexed_zstd stops at an empty frame: a zstd head is not kept)


def _segment_cut(writer, stream: SegmentedStream, start: int) -> Optional[Cut]:
    headed = isinstance(stream, HeadedStream)
    head = (stream.segments[0][1], stream.segments[0][3]) if headed else None
    last_at = last_out = 0
    for seg in sorted(stream.segments):
        if seg[3] <= 0:
            continue
        if seg[2] + seg[3] > start:
            if headed and seg[0] == 0:
                if stream.codec.kind == "bzip2":
                    return _bzip2_cut(writer, stream.head, start, headed=stream)
                return _deflate_cut(writer, stream.head, start, seg[1], headed=stream)
            if seg[2] == 0:
                return None     # all of it: written beside and renamed costs less
            return Cut(seg[0], b"", seg[2], head)
        last_at, last_out = seg[0] + seg[1], seg[2] + seg[3]
    return Cut(last_at, b"", last_out, head)


def _bzip2_cut(writer, lib: Bzip2Stream, start: int,
               headed: Optional[HeadedStream] = None) -> Optional[Cut]:
    """End the bzip2 stream holding tar offset ``start`` at the block it is in."""
    path = writer.path
    pread = writer._file.pread
    try:
        points = lib.checkpoints()
        if headed is not None:
            points = [p for p in points if p[1] <= headed.segments[0][3]
                      and p[0] < headed.segments[0][1] * 8]
        found = next((p for p in reversed(points) if 0 < p[1] <= start
                      and bzip2cut.is_block(pread, p[0])), None)
        if found is None:
            return None
        bit, out = found
        plan = bzip2cut.plan(pread, points, bit)
        if lib.pread(len(plan.block), out) != plan.block:
            raise CorruptArchiveError("the block at the cut differs from the stream's")
    except (CorruptArchiveError, EOFError, ValueError, RuntimeError) as exc:
        log.warning("%s: cannot cut the bzip2 stream at a block: %s; rewriting it whole",
                    path, exc)
        return None
    byte = bit // 8
    state = cut_head_state("bzip2", lib.seek_state(), byte + len(plan.closing), out)
    return Cut(byte, plan.closing, out, (byte + len(plan.closing), out), state, new_head=True)


def _deflate_cut(writer, lib: GzipStream, start: int, limit: int,
                 headed: Optional[HeadedStream] = None) -> Optional[Cut]:
    """Cut the gzip member that starts the file at the last checkpoint at or
    before ``start``; ``limit``: where that member ends at the latest."""
    path = writer.path
    try:
        points = lib.checkpoints()
    except Exception as exc:            # a damaged index: the caller rewrites whole
        log.warning("%s: no gzip checkpoints to cut at (%s)", path, exc)
        return None
    if headed is not None:
        points = [p for p in (points or ()) if p[1] <= headed.segments[0][3]]
    points = [p for p in (points or ()) if 0 < p[1] <= start and p[0] >= 80]
    if not points:
        return None
    bit, out = points[-1]
    byte = bit // 8
    if limit - byte > MAX_CUT_TAIL:
        log.info("%s: %d bytes after the last gzip checkpoint: rewriting whole", path,
                 limit - byte)
        return None
    try:
        raw = writer._file.pread(limit - byte, byte)
        window = lib.pread(min(out, deflatecut.WINDOW), out - min(out, deflatecut.WINDOW))
        tail = deflatecut.inflate_tail(raw, byte, bit, window, limit, out_start=out,
                                       max_out=MAX_CUT_TAIL)
        _verify(lib, out, tail.data)
        closing = deflatecut.closed_member_end(raw[0], bit, tail)
        if headed is not None:
            _check_headed_tail(headed, out, tail)
    except (CorruptArchiveError, EOFError, ValueError, RuntimeError) as exc:
        log.warning("%s: cannot cut the gzip stream at its checkpoint (bit %d): %s; "
                    "rewriting it whole", path, bit, exc)
        return None
    head_state = cut_head_state("gzip", lib.seek_state(), byte + len(closing), out)
    return Cut(byte, closing, out, (byte + len(closing), out), head_state, new_head=True)


def _verify(lib, out: int, data: bytes) -> None:
    """What zlib decoded from the checkpoint is what the index's decoder reads there."""
    for at in range(0, len(data), VERIFY_STEP):
        part = data[at:at + VERIFY_STEP]
        if lib.pread(len(part), out + at) != part:
            raise CorruptArchiveError("the data decoded from the checkpoint differs from "
                                      "the stream's at offset %d" % (out + at))


def _check_headed_tail(headed: HeadedStream, out: int, tail) -> None:
    if out + len(tail.data) != headed.segments[0][3]:
        raise CorruptArchiveError("the head's rest does not end where its segments start")


def readers_after(writer, out: int) -> bool:
    """Whether a member open for reading has bytes at or after tar offset ``out``."""
    reading = [offset for offset, count in writer._reading.items() if count]
    if not reading:
        return False
    wanted = set(reading)
    t = writer.table
    return any(t.header[r] in wanted and t.end_of(r) > out for r in range(len(t)))


class _IntentFile:
    """A ``SegmentSink``'s file: its writes go to the intent file, in order."""

    def __init__(self, sink):
        self.sink = sink

    def pwrite(self, data, at: int) -> int:
        if at != self.sink.pos:
            raise RuntimeError("segments out of order")
        self.sink.write(data)
        return at + len(data)


class SegmentRows:
    """``_write_rows``' sink when the tar goes into segments: tar bytes
    compressed by ``segments``, member bytes read from ``stream``; the
    end-of-archive segment last (where it is, in ``eoa``)."""

    progress = None

    def __init__(self, segments: SegmentSink, stream):
        self.sink, self.stream, self.eoa = segments, stream, None

    @property
    def pos(self) -> int:
        return self.sink.out_pos

    @property
    def segments(self):
        return self.sink.segments

    def write(self, data) -> None:
        self.sink.write(data)

    def copy(self, offset: int, length: int) -> None:
        done = 0
        while done < length:
            chunk = self.stream.pread(min(SEGMENT, length - done), offset + done)
            if not chunk:
                raise CorruptArchiveError("a member is cut short in the archive")
            self.sink.write(chunk)
            done += len(chunk)
            if self.progress is not None:
                self.progress()

    def finish(self) -> None:
        self.eoa = self.sink.write_eoa(hd.RECORD)
        self.sink.close()


def rewrite_from(writer, cut: Cut, start: int, rows, empty_dirs, unchanged) -> dict:
    """Write the archive anew from ``cut`` (through the intent file), the
    tar bytes between the cut and ``start`` unchanged, then ``rows``; point
    ``writer`` at the result. Returns ``_write_rows``' placement."""
    started = time.monotonic()
    codec = CODECS[writer.codec.kind](writer.codec.level)
    codec.head = cut.head
    placed = {}
    sinks = []

    def fill(intent_sink):
        intent_sink.write(cut.closing)
        segments = SegmentSink(_IntentFile(intent_sink), codec, intent_sink.pos, cut.out)
        sink = SegmentRows(segments, writer.stream)
        sinks.append(sink)
        try:
            sink.copy(cut.out, start - cut.out)
            placed.update(writer._write_rows(sink, rows, empty_dirs, dict(unchanged)))
        finally:
            segments.close()
    tailrewrite.rewrite(writer.path, writer._file.fd, cut.at, fill)
    sink = sinks[0]
    kept = [s for s in writer.stream.segments if s[0] + s[1] <= cut.at] \
        if isinstance(writer.stream, SegmentedStream) else []
    if cut.new_head:
        kept = [(0, cut.head[0], 0, cut.head[1])]
    segments = sorted(kept) + sink.sink.segments
    writer.codec = codec
    if cut.head is not None:
        if cut.new_head:
            head = open_stream(writer._file, writer.path, codec.kind)
            if cut.head_state is not None:
                head.load_seek_state(cut.head_state)
        else:
            head = writer.stream.head.retain()
        stream = HeadedStream(writer._file, codec, segments, head)
    else:
        stream = SegmentedStream(writer._file, codec, segments)
    old, writer.stream = writer.stream, stream
    old.release()
    writer._segments = list(segments)
    writer._eoa = sink.eoa
    log.info("rewrote %s from tar offset %d (file offset %d, %d members) in %.1f s",
             writer.path, cut.out, cut.at, len(placed) - 1, time.monotonic() - started)
    return placed
