"""Making changes durable: a journal record, or a checkpoint when it pays.

``commit()`` appends a journal record (``journaling.py``) unless the bytes
appended since the last checkpoint have reached the size of a central
directory, or that directory is small (under ``journal_from``, 64 KiB): then
a complete directory is appended instead (an *append checkpoint*), so the
dead directory it leaves behind is never more than what was written since,
and a small archive is a complete zip after every commit, as before.
``checkpoint()`` (unmount, idle, ``archfs repair``) writes the directory over
the space of the last one instead (``inplace.py``) when the space that
reclaims is worth it, else appends it. Each step is fdatasync'ed (see the
protocol in ``__init__.py``).
"""

import logging
import time

from archfs.errors import ArchiveChangedError, CorruptMemberError
from archfs.zipengine import cdwrite, format as fmt, indexcache, writer
from archfs.zipengine.centraldir import EndRecord, read_end
from archfs.zipengine.store.options import LOCAL_OVERHEAD
from archfs.zipengine.tree import DIR_MODE

log = logging.getLogger("archfs.zip")


class Commit:
    """Part of ZipStore: commit(), checkpoint() and what they write."""

    def commit(self) -> bool:
        """Make every change durable (see the protocol); False if nothing to do."""
        return self._commit(checkpoint=False)

    def checkpoint(self) -> bool:
        """Commit, and leave the file a complete zip for every other reader,
        reusing the space of the last central directory where it can."""
        return self._commit(checkpoint=True)

    @property
    def has_journal(self) -> bool:
        """Whether journal records follow the last checkpoint."""
        return self._committed_end != self._base.end

    def _commit(self, checkpoint: bool) -> bool:
        self._check_writable()
        with self._append:
            return self._commit_locked(checkpoint)

    def _commit_locked(self, checkpoint: bool, compact: bool = True) -> bool:
        if not self._dirty and not (checkpoint and self.has_journal):
            return False
        self._check_unchanged()
        if self._dirty:
            self._persist_empty_dirs()
        if (self._committed_end == fmt.EOCD.size + len(self._comment) and self._cd_size == 0
                and not self._file.atomic):   # (atomic: the members went at 0 already)
            # the first members of an empty archive: write it whole and
            # rename it in place, so it starts with a local header as
            # readers such as 7-Zip expect, not with the old empty end record
            return self._compact_locked(force=True)
        self._commit_once(checkpoint)
        for _ in range(3):
            refill = self._fill_first_hole()
            if refill == "compact":
                self._compact_locked(force=True)
            if refill in (False, "compact"):
                break
            self._dirty = True
            self._commit_once(checkpoint)   # lists the filler, or moves the first member away
        if compact and self._dead > max(self.options.compact_min,
                                        self.options.compact_ratio * self._committed_end):
            self._compact_locked()
        if self.has_journal and self._idle is not None:
            self._idle.poke()
        return True

    def _commit_once(self, checkpoint: bool) -> None:
        if self._file.atomic:
            # each sync publishes the whole file at once: a complete directory
            # at every commit, written where the last one began (no journal)
            if self._dirty:
                self._append_checkpoint_locked()
            return
        if checkpoint:
            self._checkpoint_locked()
        elif self._directory_pays():
            self._append_checkpoint_locked()
        else:
            self._journal_commit_locked()

    def _directory_pays(self) -> bool:
        """Whether a commit appends a whole directory: it costs no more than
        the data appended since the last, or it is small."""
        return self.journal_bytes >= self._cd_size or self._cd_size < self.options.journal_from

    def _checkpoint_locked(self) -> None:
        """In place when it pays (``inplace.py``), else appended. A failure
        after the changes are durable in the journal is logged, not raised:
        nothing is lost, and the next checkpoint tries again."""
        if self._dirty and (self._directory_pays() or not self._reuse_pays()):
            self._append_checkpoint_locked()      # as a plain commit would
            return
        if self._dirty:
            self._journal_commit_locked()
        try:
            if self._checkpoint_in_place_locked():
                return
        except OSError as exc:
            log.warning("%s: could not write the central directory in place (%s); "
                        "appending it", self.path, exc)
        try:
            self._append_checkpoint_locked()
        except OSError as exc:
            if self._dirty:
                raise
            log.error("%s: checkpoint failed (%s); every change is durable in the journal "
                      "and the next mount replays it", self.path, exc)

    def _append_checkpoint_locked(self) -> None:
        """A complete central directory and end records after the data."""
        self._relocate_renamed()
        fd = self._file
        if not fd.atomic:     # an atomic sync publishes: only a complete archive
            fd.sync()
        # verbatim records come from the last directory as it was published
        # (an atomic transport's appends were written over it)
        source = fd.published
        t = self._table
        where = self._pos.where
        with self._meta:
            taken, t.changed = t.changed, set()
            died = self._newly_dead()
            snapshot = bytes(t.dead)
            lo, hi = self._cd_start, self._cd_start + self._cd_size
            holes = list(self._since_base_removed)
            for r in set(died) | {r for r in taken if not t.dead[r]}:
                at = where(t.durable_at[r])
                if lo <= at < hi:
                    holes.append((at, t.record_len[r]))
            planned = self._plan_directory(t.dead, self._since_base_rows | taken, holes,
                                           lambda r: where(t.record_at[r]))
            if self._reencode_all:     # the published directory is not the last one
                planned = None
                for r in range(len(t)):
                    t.record_at[r] = -1
            if planned is None:
                full = self._full_directory(t.dead, taken)
            listed_from = self._lowest_listed(t.dead)
            self._dirty = False      # changes from here on belong to the next commit
        cd_start = self._end
        try:
            if planned is not None:
                cd_end = cdwrite.write_pieces(fd, cd_start, planned.directory.pieces,
                                              source=source)
                count = planned.count
            else:
                rows, plan = full
                positions = cdwrite.write(fd, cd_start, plan, source=source)
                cd_end, count = positions[-1], len(rows)
            # one sync for the directory and its end records: they are written
            # past the end into fresh blocks, so an end record that reaches the
            # disk before its directory finds zeros there, and the open that
            # parses it falls back to the state before (Opening._load)
            end = writer.write_all(fd, writer.end_records(cd_start, cd_end - cd_start, count,
                                                          self._comment), cd_end)
            if fd.size() > end:    # a directory rewritten shorter (atomic)
                fd.truncate(end)
            fd.sync()
        except BaseException as exc:
            with self._meta:
                t.changed |= taken
                self._dirty = True
            fd.truncate(self._end)
            self._remember_identity()
            if isinstance(exc, ArchiveChangedError):    # another writer won: for good
                self._broken = str(exc)
            raise
        self._reencode_all = False
        with self._meta:
            if planned is not None:
                self._directory_written(cd_start, planned)
            else:
                cdwrite.record_positions(t, rows, positions, plan.lengths,
                                         keep_pending=t.changed)
            if not fd.atomic:      # else the old directory was written over
                self._dead += self._base.end - self._cd_start + self._journal_size
            self._set_base(EndRecord(cd_end + self._zip64_size(cd_start, cd_end, count),
                                     end, cd_start, cd_end - cd_start, count,
                                     self._comment, 0), count)
            self._durable_dead, self._durable_dead_count = snapshot, snapshot.count(1)
            self._listed_from = listed_from
        self._remember_identity()
        self._wrote = True

    def _directory_written(self, cd_start: int, planned) -> None:
        """(holding _meta) The directory of ``planned`` is now at ``cd_start``:
        the records it copied are found there from now on."""
        t = self._table
        d = planned.directory
        self._pos.advance([(a, b, cd_start + off) for a, b, off in d.runs])
        pending = t.changed
        for row, off, length in d.placed:
            address = self._pos.address(cd_start + off)
            t.durable_at[row] = address
            t.record_len[row] = length
            t.record_at[row] = -1 if row in pending else address
        self._cd_dir_first = True
        if self._pos.crowded():
            self._pos.materialize(t.durable_at, t.record_at)

    def _full_directory(self, dead, pending):
        """(holding _meta) Every live row in order, each record rebuilt or
        copied: when the last directory cannot simply be carried over. The
        columns then hold plain positions again."""
        t = self._table
        self._pos.materialize(t.durable_at, t.record_at)
        rows = cdwrite.order(t, self._tree, pending, dead=dead)
        self._cd_dir_first = True
        return rows, cdwrite.plan(t, rows)

    def _lowest_listed(self, dead) -> int:
        """(holding _meta) The lowest offset a directory of the rows alive in
        ``dead`` lists (the first-member filler must not write below it)."""
        t = self._table
        first = self._first_row
        if 0 <= first < len(t) and not dead[first] and t.offset[first] == self._prefix:
            return self._prefix
        rows = cdwrite.live_rows(dead)
        return min(map(t.offset.__getitem__, rows)) if len(rows) else self._end

    @staticmethod
    def _zip64_size(cd_start: int, cd_end: int, count: int) -> int:
        """Bytes of zip64 end records that ``end_records`` puts before the EOCD."""
        return len(writer.end_records(cd_start, cd_end - cd_start, count, b"")) - fmt.EOCD.size

    def _persist_empty_dirs(self) -> None:
        """An implied directory left empty needs an entry, or it would vanish.
        Only a removal can leave one, so the directories are looked at only
        when rows died or directories went since the last commit."""
        with self._meta:
            if self._table.dead.count(1) == self._durable_dead_count and not self._dirs_removed:
                return
            self._dirs_removed = False
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
        """Copy members whose local header no longer carries their name (found
        with a scan of the relocate flags that runs in C)."""
        t = self._table
        with self._meta:
            marks = t.relocate
            todo = []
            r = marks.find(1)
            while r >= 0:
                if not t.dead[r]:
                    todo.append((r, t.row(r)))
                r = marks.find(1, r + 1)
        src = self._file
        for r, row in todo:
            found = fmt.read_local_header(src.pread, row.offset)
            if found is None:
                raise CorruptMemberError("%s: local header is missing or damaged; "
                                         "cannot move it" % row.name)
            data_start = found[1]
            written = self._appending(lambda fd, at: writer.append_copy(
                fd, at, row.name, row.is_dir, src, data_start, row.csize, row.usize,
                row.crc, row.method, row.flags, row.mtime_ns, dos=row.dos, unix=row.unix,
                mode=row.mode, src_header_at=row.offset))
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

    def _save_index(self) -> None:
        """Keep the saved index in step with what the last checkpoint wrote."""
        if not self.options.index_cache or len(self._table) < indexcache.MIN_MEMBERS:
            return
        fd = self._file
        end = read_end(fd, fd.size())
        if end is not None and end.eocd_pos == self._base.eocd_pos:
            with self._meta:
                indexcache.save(self.path, fd, end, self._table, self._tree, self._bad,
                                self.options.index_dir,
                                {"positions": self._pos.state(), "records": self._base_records,
                                 "skip": self._base_skip, "dir_first": self._cd_dir_first})
