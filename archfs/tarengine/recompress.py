"""Writing compressed tars: new segments after the end, the old end replaced.

An archive archfs wrote is a run of independent segments (``engine/segments``)
whose last one holds only the end-of-archive blocks. A change appends, as
for a plain tar, but compressed: new members go into segments written after
the file's end (1 MiB of tar per segment, small files batched together), and
``commit()`` then

1. writes a new end-of-archive segment after them, syncs;
2. overwrites the old end-of-archive segment, in place, with an empty
   segment of exactly its length (every gzip/zstd/xz/bzip2 reader decodes it
   to nothing), syncs. That write is the commit point: before it, readers
   stop at the old end-of-archive blocks; after it they read on into the new
   members. Cost: the change, compressed, plus about 100 bytes.

The first write to an archive archfs did not make (one big gzip member, a
zstd file of one frame, ...) re-encodes it once into segments, written
beside it and renamed over it (with a progress bar); so does every removal
or rename, as for a plain tar. After a crash before step 2 the segments
after the old end are cut off at the next read-write mount.
"""

import logging
import os
import stat
import time
from typing import List, Optional

from archfs.engine import compressed
from archfs.engine.fileaccess import ArchiveFile, fsync_dir
from archfs.engine.segments import (
    CODECS,
    SEGMENT,
    HeadedStream,
    SegmentedStream,
    SegmentSink,
    eoa_segment,
)
from archfs.errors import CorruptArchiveError
from archfs.tarengine import headers as hd
from archfs.tarengine import tailcut
from archfs.tarengine.store import StoreOptions
from archfs.tarengine.writer import TarWriter, local_chunks, lock_for_writing

log = logging.getLogger("archfs.tar")


def kind_for_suffix(path: str) -> Optional[str]:
    lowered = path.lower()
    for kind, suffixes in compressed.SUFFIXES.items():
        if lowered.endswith(suffixes):
            return kind
    return None


def empty_archive_bytes(path: str) -> bytes:
    """A new, empty archive: one record of zeros, compressed by the suffix."""
    kind = kind_for_suffix(path)
    if kind is None:
        return bytes(hd.RECORD)
    return eoa_segment(CODECS[kind](), hd.RECORD)[0]


class _Source:
    """A member's bytes for a copy (chmod, utime), found when the copy
    runs: the first write to a foreign archive re-encodes it before the
    copy, which gives the writer a new stream and the member a new offset."""

    def __init__(self, writer, row: int):
        self.writer, self.row = writer, row


class CompressedTarWriter(TarWriter):
    """A gzip, zstd, xz or bzip2 tar opened read-write (see the module docstring)."""

    def __init__(self, path: str, options: StoreOptions, kind: str, level: int):
        self.codec = CODECS[kind](level if kind != "zstd" or level != 6 else None)
        self._sink: Optional[SegmentSink] = None
        self._eoa = None                 # (file offset, length) of the committed EOA segment
        self._segments: Optional[List] = None
        super().__init__(path, options)

    # -- opening --------------------------------------------------------------------

    def _recover(self) -> None:
        """Find the segments; cut what an interrupted commit appended."""
        size = self._file.size()
        segments = self.codec.walk(self._file.pread, size)
        if segments is None and isinstance(self.stream, SegmentedStream):
            segments = self.stream.segments         # from the saved index (bzip2)
        if isinstance(self.stream, HeadedStream):
            self.codec.head = self.stream.codec.head    # new segments name the head
        if segments is None:
            return                          # foreign: converted at the first write
        eoa = [i for i, s in enumerate(segments) if s[3] > 0 and s[2] == self.end]
        if not eoa:
            return                          # the EOA shares a segment with data: converted
        i = eoa[0]
        c_off, c_len = segments[i][0], segments[i][1]
        if c_off + c_len < size:
            log.warning("%s: recovered: dropped %d bytes of an unfinished commit",
                        self.path, size - c_off - c_len)
            self._file.truncate(c_off + c_len)
            self._file.sync()
            segments = segments[:i + 1]
        if self.codec.filler(c_len) is None:
            return
        self._use_segments(segments)
        self._eoa = (c_off, c_len)

    def _use_segments(self, segments, keep_head: bool = True) -> None:
        old = self.stream
        if keep_head and isinstance(old, HeadedStream) and segments and segments[0][0] == 0 \
                and segments[0][1] == old.segments[0][1]:
            stream = HeadedStream(self._file, self.codec, segments, old.head.retain())
        else:
            self.codec.head = None
            stream = SegmentedStream(self._file, self.codec, segments)
        self.stream = stream
        old.release()
        self._segments = list(segments)

    # -- appending --------------------------------------------------------------------

    def _prepare(self) -> None:
        """Make the archive appendable: segments, the EOA alone in the last one."""
        if self._sink is not None:
            return
        if self._eoa is None:
            self._convert()
        stream = self.stream
        # the old EOA segment stops counting now; it becomes a filler at the commit
        segments = [s if s[0] != self._eoa[0] else (s[0], s[1], s[2], 0)
                    for s in self._segments]
        stream.set_segments(segments)
        stream.pending_start = self.end
        stream.pending = bytearray()
        self._sink = SegmentSink(self._file, self.codec, self._file.size(), self.end)
        self._sink.buffer = stream.pending       # reads see what waits to be compressed

    def _write_member(self, headers: bytes, source, size: int) -> int:
        self._prepare()
        sink = self._sink
        at = sink.out_pos
        sink.mark()
        try:
            self._sink_write(headers)
            self._copy_into(self._sink_write, source, size)
            self._sink_write(bytes(hd.padding(size)))
        except BaseException:
            self._take_back()
            self._remember_identity()
            raise
        self._tail = sink.out_pos
        self._remember_identity()
        return at

    def _take_back(self) -> None:
        """A member failed halfway: none of it stays (``SegmentSink.rewind``)."""
        sink, stream = self._sink, self.stream
        try:
            with stream._lock:
                dropped = sink.rewind()
                if dropped:
                    stream.set_segments(stream.segments[:-dropped])
                self._publish(len(sink.segments))
        except Exception:       # the member's own error is the one to report
            log.exception("%s: could not take back a member that failed halfway", self.path)

    def _sink_write(self, data) -> None:
        """Into the sink, under the stream's lock: a reader never sees the
        buffer and the segment list out of step."""
        sink = self._sink
        with self.stream._lock:
            before = len(sink.segments)
            sink.write(data)
            self._publish(before)

    def _publish(self, before: int) -> None:
        """Segments the sink wrote become readable; the buffer follows them."""
        sink, stream = self._sink, self.stream
        if len(sink.segments) != before:
            stream.set_segments(stream.segments + sink.segments[before:])
        stream.pending_start = sink.out_pos - len(sink.buffer)

    def _copy_into(self, write, source, size: int) -> None:
        if size == 0:
            return
        if isinstance(source, (bytes, bytearray)):
            write(source)
            return
        if isinstance(source, str):
            for chunk in local_chunks(source, size, SEGMENT):
                write(chunk)
            return
        stream, offset = source.writer.stream, source.writer.table.data[source.row]
        done = 0
        while done < size:
            chunk = stream.pread(min(SEGMENT, size - done), offset + done)
            if not chunk:
                raise CorruptArchiveError("member data is cut short")
            write(chunk)
            done += len(chunk)

    def _data_source(self, row: int):
        return _Source(self, row)

    # -- commit -------------------------------------------------------------------------

    def _commit_appends(self) -> None:
        if self._sink is not None and self._eoa[0] == 0 and not self.codec.fills_start:
            self._rewrite_archive()     # a new lz4 archive: its first segment is the EOA
            return
        with self._meta:
            self._dirty = False
        sink = self._sink
        if sink is None:
            return
        try:
            tail = sink.out_pos
            with self.stream._lock:
                before = len(sink.segments)
                eoa = sink.write_eoa(hd.RECORD)
                self._publish(before)
            self._file.sync()
            old_at, old_len = self._eoa
            self._file.pwrite(self.codec.filler(old_len), old_at)
            self._file.sync()
        except BaseException:
            self._dirty = True
            self._remember_identity()
            raise
        sink.close()
        stream = self.stream
        stream.pending = bytearray()
        self._segments = list(stream.segments)
        stream.set_segments(self._segments)
        stream.pending_start = stream.end
        self._sink = None
        self._eoa = eoa
        self.end = self._tail = tail
        self._held = None
        self._remember_identity()

    def _rewrite_archive(self) -> None:
        """From a cut point before the first change (``tailcut``), or the
        whole archive anew, as segments, beside it, renamed over it."""
        if self._sink is not None:
            with self.stream._lock:
                before = len(self._sink.segments)
                self._sink.flush()
                self._publish(before)
            self._remember_identity()
        with self._meta:
            plan = self._tail_plan()
            if plan is not None and self._rewrite_from_cut(*plan):
                return
        self._rewrite_whole()

    def _rewrite_from_cut(self, start: int, rows, empty_dirs, unchanged) -> bool:
        """(Under ``_meta``.) False when there is no cut point to use."""
        cut = tailcut.find_cut(self, start)
        if cut is None or tailcut.readers_after(self, cut.out):
            return False
        self._dirty = False
        try:
            placed = tailcut.rewrite_from(self, cut, start, rows, empty_dirs, unchanged)
        except BaseException:
            self._tail_rewrite_failed()
            raise
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        self._adopt_tail(placed, start)
        return True

    def _rewrite_whole(self) -> None:
        rows, empty_dirs = self._whole_plan()
        started = time.monotonic()
        fd, tmp = self._rewrite_temp()
        out = None
        try:
            os.fchmod(fd, stat.S_IMODE(os.fstat(self._file.fd).st_mode))
            os.close(fd)
            fd = -1
            out = ArchiveFile(tmp, True)
            sink = tailcut.SegmentRows(SegmentSink(out, self.codec, 0, 0), self.stream)
            placed = self._write_rows(sink, rows, empty_dirs)
            os.fsync(out.fd)
            os.rename(tmp, self.path)
            out.path = self.path        # its name now, which the change guard checks
            fsync_dir(self.path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            if out is not None:
                out.release()
            self._whole_rewrite_failed(tmp)
            raise
        lock_for_writing(out)
        with self._meta:
            self._adopt_rows(placed)
            old_file = self._file
            self._file = out
            if self._sink is not None:
                self._sink.close()
                self._sink = None
            self._use_segments(sink.segments, keep_head=False)
            self._eoa = sink.eoa
            self.end = self._tail = placed[-1][0]
            self._held = None
            self._rewrite = False
        old_file.release()
        self._remember_identity()
        log.info("rewrote %s (%d members) as %s segments in %.1f s", self.path, len(placed) - 1,
                 self.codec.kind, time.monotonic() - started)

    def _convert(self) -> None:
        """A foreign compressed archive made appendable: its tail re-encoded
        from a cut point (gzip), else the whole of it, once, as segments."""
        if self._rewrite:               # removals wait too: one rewrite for both
            self._rewrite_archive()
            self._dirty = True
            return
        with self._meta:
            if self._rewrite_from_cut(self.end, [], [], {}):
                log.info("%s: re-encoded its end so that changes can be appended", self.path)
                self._dirty = True
                return
        log.info("%s: re-encoding it once so that changes can be appended", self.path)
        self._rewrite_whole()
        self._dirty = True

    def _raw_ok(self, row: int) -> bool:
        return True

def repair_compressed(path: str, progress=None) -> str:
    """Cut what an interrupted commit appended after the committed end."""
    writer = CompressedTarWriter.__new__(CompressedTarWriter)
    options = StoreOptions(progress=progress, index_cache=False)
    with open(path, "rb") as f:
        kind = compressed.detect(f.read(8))
    before = os.path.getsize(path)
    CompressedTarWriter.__init__(writer, path, options, kind, 6)
    try:
        after = writer._file.size()
        members = len(writer.table)
    finally:
        writer.close()
    if after < before:
        return "%s: cut off %d bytes of an unfinished commit (%d members)" % (
            path, before - after, members)
    return "%s: nothing to repair (%d members)" % (path, members)
