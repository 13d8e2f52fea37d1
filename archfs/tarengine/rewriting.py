"""The tar writer's commit of removals and renames: the archive rewritten
from the first changed member (``tailrewrite``'s intent file) or, when that
costs more or a reader holds a member after it, whole, beside the archive,
renamed over it. Apart from ``writer`` because appending needs none of it."""

import logging
import os
import stat
import time
from typing import Optional

from archfs.engine.compressed import PlainStream
from archfs.engine.fileaccess import ArchiveFile, fsync_dir, lock_for_writing
from archfs.errors import CorruptArchiveError, NotSupported
from archfs.tarengine import headers as hd
from archfs.tarengine import tailrewrite
from archfs.tarengine.headers import TYPEFLAGS
from archfs.tarengine.names import encode

log = logging.getLogger("archfs.tar")


class Rewriting:
    """Part of ``TarWriter``: the rewrite a removal or rename waits for."""

    def _rewrite_archive(self) -> None:
        """From the first changed member on, or the whole archive beside it."""
        with self._meta:
            plan = self._tail_plan()
            if plan is not None:
                self._rewrite_tail(*plan)
                return
        self._rewrite_whole()

    def _tail_plan(self):
        """(P, rows from P on, empty implied dirs, names of the hard-link
        targets before P) when rewriting from P costs less than the whole
        archive and no reader has a member after P open; else None."""
        t = self.table
        rows = self._rows_to_keep()
        keep = set(rows)
        start = self.end
        unchanged = {}
        for row in sorted((r for r in range(len(t)) if t.header[r] < self.end),
                          key=lambda r: (t.header[r], r)):
            target = t.hardlink.get(row)
            if row not in keep or self._renamed.get(row) or not self._raw_ok(row) or (
                    target is not None and (target not in unchanged
                                            or t.links.get(row) != t.names[target])):
                start = t.header[row]
                break
            unchanged[row] = t.names[row]
        if (self._tail - start) * 2 > self._tail:
            return None                       # most of it: once beside beats twice in place
        if any(offset >= start for offset, count in self._reading.items() if count):
            return None
        tail_rows = [r for r in rows if t.header[r] >= start]
        empty_dirs = [p for p, node in self._tree.dirs.items()
                      if p and node.row < 0 and not node.subdirs and not node.files]
        return start, tail_rows, empty_dirs, unchanged

    def _rewrite_tail(self, start: int, rows, empty_dirs, unchanged) -> None:
        """(Under ``_meta``: no member may be opened while its bytes move.)"""
        self._dirty = False
        started = time.monotonic()
        placed = {}

        def fill(sink):
            placed.update(self._write_rows(sink, rows, empty_dirs, dict(unchanged)))
        try:
            tailrewrite.rewrite(self.path, self._file.fd, start, fill)
        except BaseException:
            self._tail_rewrite_failed()
            raise
        self._adopt_tail(placed, start)
        log.info("rewrote %s from offset %d (%d members) in %.1f s", self.path, start,
                 len(placed) - 1, time.monotonic() - started)

    def _tail_rewrite_failed(self) -> None:
        """(Under ``_meta``, as a tail rewrite fails.) Once the new tail is
        safe in the intent file only the next open may apply it: until then
        the archive is refused."""
        self._dirty = True
        if os.path.exists(tailrewrite.intent_path(self.path)):
            self._broken = ("%s: a rewrite was interrupted; mount it again to finish "
                            "it" % self.path)
        self._remember_identity()

    def _adopt_tail(self, placed, start: int) -> None:
        """(Under ``_meta``.) The table after a rewrite from ``start``: the
        members ``placed`` where they now stand, the rest after ``start`` dead."""
        self._adopt_rows(placed, start)
        self.end = self._tail = placed[-1][0]
        self._held = None
        self._rewrite = False
        self._remember_identity()

    def _adopt_rows(self, placed, start: int = 0) -> None:
        """(Under ``_meta``.) The table after a rewrite from ``start`` (0: of
        the whole archive): the members ``placed`` where they now stand, the
        other rows from ``start`` on dead."""
        t = self.table
        for row, (header, data) in placed.items():
            if row >= 0:
                t.header[row], t.data[row] = header, data
        for row in range(len(t)):
            if t.header[row] >= start and row not in placed:
                t.dead[row] = 1
        self._adopt_materialized()
        self._renamed.clear()

    def _whole_plan(self):
        """(rows, empty implied dirs) for a whole rewrite; the changes made
        from here on wait for the next commit."""
        with self._meta:
            self._dirty = False
            rows = self._rows_to_keep()
            empty_dirs = [p for p, node in self._tree.dirs.items()
                          if p and node.row < 0 and not node.subdirs and not node.files]
        return rows, empty_dirs

    def _rewrite_temp(self):
        """(fd, path) of the new file beside the archive, renamed over it at the end."""
        import tempfile     # (imported here: start-up cost of a mount)
        return tempfile.mkstemp(dir=os.path.dirname(self.path),
                                prefix="." + os.path.basename(self.path) + ".archfs-rewrite-")

    def _whole_rewrite_failed(self, tmp: str) -> None:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        with self._meta:
            self._dirty = True

    def _rewrite_whole(self) -> None:
        """Write the live members to a new file beside the archive and rename it over."""
        rows, empty_dirs = self._whole_plan()
        started = time.monotonic()
        fd, tmp = self._rewrite_temp()
        try:
            os.fchmod(fd, stat.S_IMODE(os.fstat(self._file.fd).st_mode))
            placed = self._write_rows(_PlainSink(fd, self._file.fd), rows, empty_dirs)
            os.fsync(fd)
            os.rename(tmp, self.path)
            fsync_dir(self.path)
        except BaseException:
            os.close(fd)
            self._whole_rewrite_failed(tmp)
            raise
        os.close(fd)
        new_file = ArchiveFile(self.path, True)
        lock_for_writing(new_file)
        with self._meta:
            self._adopt_rows(placed)
            old_file, old_stream = self._file, self.stream
            self._file = new_file
            self.stream = PlainStream(new_file)
            self.end = self._tail = placed.get(-1, (0, 0))[0]
            self._held = None
            self._rewrite = False
        old_stream.release()
        old_file.release()
        self._remember_identity()
        log.info("rewrote %s (%d members) in %.1f s", self.path, len(placed) - 1,
                 time.monotonic() - started)

    def _rows_to_keep(self):
        """Live rows in archive order; a hard link whose file is gone becomes a file."""
        t = self.table
        live = sorted(set(self._tree.paths.values()), key=lambda r: (t.header[r], r))
        return live

    def _write_rows(self, sink, rows, empty_dirs, written_data=None):
        """Write members through ``sink``; returns {row: (header, data)} and {-1: (end, 0)}.
        ``written_data``: data row -> name of members already in place before ``rows``."""
        t = self.table
        placed = {}
        progress = self.options.progress
        written_data = {} if written_data is None else written_data   # hard link targets
        self._materialized = {}   # vanished target -> the link written as that file
        if progress is not None:
            total = max(1, self._tail)
            sink.progress = lambda: progress("rewriting", min(sink.pos, total), total)
        for i, row in enumerate(rows):
            target = t.target(row)
            kind = stat.S_IFMT(t.mode[target])
            is_link = row in t.hardlink
            name = t.names[row]
            start = sink.pos
            if is_link and target in written_data:
                headers = self._headers_for(row, name, hardlink_to=written_data[target])
                size = 0
            elif not is_link and not self._renamed.get(row) and self._raw_ok(row):
                # unchanged member: its header blocks and data, copied verbatim
                sink.copy(t.header[row], t.end_of(row) - t.header[row])
                placed[row] = (start, start + t.data[row] - t.header[row])
                written_data[row] = name
                continue
            else:
                headers = self._headers_for(row, name)
                size = t.size[target] if kind == stat.S_IFREG else 0
                if is_link:
                    self._materialized[target] = row
            sink.write(headers)
            if size:
                sink.copy(t.data[target], size)
                sink.write(bytes(hd.padding(size)))
            placed[row] = (start, start + len(headers))
            if not is_link or target not in written_data:
                written_data[target] = name
        for path in empty_dirs:
            sink.write(hd.member_headers(encode(path) + b"/", 0o755, os.getuid(),
                                         os.getgid(), 0, time.time_ns(), b"5"))
        placed[-1] = (sink.pos, 0)
        sink.finish()
        return placed

    def _adopt_materialized(self) -> None:
        """After a rewrite (under ``_meta``): a hard link that was written as
        the file its vanished target was is that file now, and the other
        links to that target link to it (else the next rewrite would copy
        the target's old offset, in a file where other bytes are now)."""
        t = self.table
        for target, row in getattr(self, "_materialized", {}).items():
            for column in (t.size, t.usize, t.mtime_ns, t.mode, t.uid, t.gid):
                column[row] = column[target]
            t.hardlink.pop(row, None)
            t.links.pop(row, None)
            for extra in (t.xattrs, t.rdev):
                if target in extra:
                    extra[row] = extra[target]
            for link, linked in list(t.hardlink.items()):
                if linked == target:
                    t.hardlink[link] = row
                    t.links[link] = t.names[row]
        self._materialized = {}
        self._count_links()

    def _raw_ok(self, row: int) -> bool:
        """Whether a member's bytes can be copied as they are (not the one whose
        first block is still held in memory)."""
        return not (self._held is not None and self.table.header[row] == self.end)

    def _headers_for(self, row: int, name: str, hardlink_to: Optional[str] = None) -> bytes:
        t = self.table
        target = t.target(row)
        kind = stat.S_IFMT(t.mode[target])
        typeflag = TYPEFLAGS.get(kind, b"0")
        linkname = t.links.get(row, "") if kind == stat.S_IFLNK else ""
        size = t.size[target] if kind == stat.S_IFREG else 0
        if hardlink_to is not None:
            typeflag, linkname, size = hd.HARDLINK, hardlink_to, 0
        if target in t.sparse:
            raise NotSupported("%s: sparse members cannot be moved yet" % name)
        rdev = t.rdev.get(target, 0)
        extra = {"SCHILY.xattr." + n: v for n, v in t.xattrs.get(target, ())}
        return hd.member_headers(encode(name) + (b"/" if kind == stat.S_IFDIR else b""),
                                 t.mode[target] & 0o7777, t.uid[target], t.gid[target], size,
                                 t.mtime_ns[target], typeflag, encode(linkname),
                                 devmajor=os.major(rdev), devminor=os.minor(rdev), extra=extra)

    def compact(self) -> bool:
        """Rewrite the archive without older versions of replaced members."""
        self._check_writable()
        with self._append:
            self._check_unchanged()
            self._rewrite_archive()
            self._committed = True
        return True



class _PlainSink:
    """Where a rewrite of a plain tar goes: ``copy`` moves member bytes from
    the old file without passing them through Python."""

    def __init__(self, fd: int, source_fd: int):
        self.fd, self.source_fd, self.pos = fd, source_fd, 0

    def write(self, data) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.pos)
            view = view[n:]
            self.pos += n

    progress = None

    def copy(self, offset: int, length: int) -> None:
        done = 0
        while done < length:
            n = os.copy_file_range(self.source_fd, self.fd, min(length - done, 64 << 20),
                                   offset + done, self.pos)
            if n <= 0:
                raise CorruptArchiveError("a member is cut short in the archive")
            done += n
            self.pos += n
            if self.progress is not None:
                self.progress()

    def finish(self) -> None:
        stop = -(-(self.pos + 2 * hd.BLOCK) // hd.RECORD) * hd.RECORD
        self.write(bytes(stop - self.pos))
