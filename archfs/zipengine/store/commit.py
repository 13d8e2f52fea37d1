"""Making changes durable: copying renamed members under their new name,
then a new central directory and end records after the appended data,
each step fdatasync'ed (see the protocol in ``__init__.py``)."""

import os
import time
from typing import List

from archfs.zipengine import format as fmt, indexcache, writer
from archfs.zipengine.centraldir import read_end
from archfs.errors import CorruptMemberError
from archfs.zipengine.store.options import LOCAL_OVERHEAD
from archfs.zipengine.tree import DIR_MODE


class Commit:
    """Part of ZipStore: commit() and what it writes."""

    def commit(self) -> bool:
        """Make every change durable (see the protocol); False if nothing to do."""
        self._check_writable()
        with self._append:
            if not self._dirty:
                return False
            self._check_unchanged()
            self._persist_empty_dirs()
            if self._committed_end == fmt.EOCD.size + len(self._comment) and self._cd_size == 0:
                # the first members of an empty archive: write it whole and
                # rename it in place, so it starts with a local header as
                # readers such as 7-Zip expect, not with the old empty end record
                return self._compact_locked()
            self._commit_locked()
            for _ in range(3):
                refill = self._fill_first_hole()
                if refill == "compact":
                    self._compact_locked()
                if refill in (False, "compact"):
                    break
                self._dirty = True
                self._commit_locked()   # lists the filler, or moves the first member away
            if self._dead > max(self.options.compact_min,
                                self.options.compact_ratio * self._committed_end):
                self._compact_locked()
            return True

    def _commit_locked(self) -> None:
        self._relocate_renamed()
        fd = self._file.fd
        os.fdatasync(fd)
        with self._meta:
            live = self._table.live()
            pieces, lengths = self._central_directory(live)
            listed_from = self._table.offset[live[0]] if live else self._end
            self._dirty = False      # changes from here on belong to the next commit
        cd_start = pos = self._end
        try:
            for piece in pieces:
                if isinstance(piece, tuple):
                    writer.copy_range(fd, piece[0], fd, pos, piece[1])
                    pos += piece[1]
                else:
                    pos = writer.write_all(fd, piece, pos)
            cd_size = pos - cd_start
            end = writer.write_all(fd, writer.end_records(cd_start, cd_size, len(live),
                                                          self._comment), pos)
            os.fdatasync(fd)
        except BaseException:
            self._dirty = True
            os.ftruncate(fd, self._end)
            self._remember_identity()
            raise
        with self._meta:
            t = self._table
            at = cd_start
            for r, length in zip(live, lengths):
                t.record_at[r], t.record_len[r] = at, length
                at += length
            self._dead += self._committed_end - self._cd_start
            self._cd_start, self._cd_size = cd_start, cd_size
            self._committed_end = self._end = end
            self._listed_from = listed_from
        self._remember_identity()


    def _persist_empty_dirs(self) -> None:
        """An implied directory left empty needs an entry, or it would vanish."""
        with self._meta:
            empty = [p for p, node in self._tree.dirs.items()
                     if p and node.row < 0 and not node.subdirs and node.live == 0]
        for path in empty:
            now = time.time_ns()
            written = self._appending(lambda fd, at: writer.append_bytes(
                fd, at, path, b"", now, 0, is_dir=True))
            with self._meta:
                node = self._tree.dirs.get(path)
                if node is None or node.row >= 0:
                    continue
                row = self._table.add(path, written.offset, 0, 0, 0, fmt.STORED,
                                      written.flags, now, DIR_MODE)
                self._tree.add_dir(path, row)

    def _relocate_renamed(self) -> None:
        t = self._table
        with self._meta:
            todo = [(r, t.row(r)) for r in t.live() if t.relocate[r]]
        src = self._file
        for r, row in todo:
            found = fmt.read_local_header(src.pread, row.offset)
            if found is None:
                raise CorruptMemberError("%s: local header is missing or damaged; "
                                         "cannot move it" % row.name)
            data_start = found[1]
            written = self._appending(lambda fd, at: writer.append_copy(
                fd, at, row.name, row.is_dir, src.fd, data_start, row.csize, row.usize,
                row.crc, row.method, row.flags, row.mtime_ns, dos=row.dos))
            with self._meta:
                self._dead += LOCAL_OVERHEAD + row.csize
                if t.dead[r] or t.names[r] != row.name:
                    continue
                t.offset[r] = written.offset
                t.flags[r] = written.flags
                t.relocate[r] = 0
                t.touch(r)
                if r in self._bad:
                    del self._bad[r]

    def _central_directory(self, live: List[int]):
        """The new central directory as pieces, and each record's length.

        A piece is bytes (a rebuilt record) or (position, length) of a run of
        records that can be copied verbatim from the last central directory.
        """
        t = self._table
        pieces: list = []
        lengths: List[int] = []
        run_start = run_end = -1
        for r in live:
            at = t.record_at[r]
            if at >= 0:
                lengths.append(t.record_len[r])
                if at != run_end:
                    if run_start >= 0:
                        pieces.append((run_start, run_end - run_start))
                    run_start = at
                run_end = at + t.record_len[r]
                continue
            if run_start >= 0:
                pieces.append((run_start, run_end - run_start))
                run_start = run_end = -1
            record = writer.central_record(
                t.names[r], t.mode[r], t.flags[r], t.method[r], t.mtime_ns[r],
                t.crc[r], t.csize[r], t.usize[r], t.offset[r], t.uid[r], t.gid[r],
                t.extras.get(r, b""), t.comments.get(r, b""), t.raw_dos.get(r))
            pieces.append(record)
            lengths.append(len(record))
        if run_start >= 0:
            pieces.append((run_start, run_end - run_start))
        return pieces, lengths


    def _save_index(self) -> None:
        """Keep the saved index in step with what the last commit wrote."""
        if not self.options.index_cache or len(self._table) < indexcache.MIN_MEMBERS:
            return
        fd = self._file.fd
        end = read_end(fd, os.fstat(fd).st_size)
        if end is not None:
            with self._meta:
                indexcache.save(self.path, fd, end, self._table, self._tree, self._bad,
                                self.options.index_dir)


