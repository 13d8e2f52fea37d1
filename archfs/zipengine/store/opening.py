"""Opening the archive: creating a missing one, taking the writer's lock,
loading the member index (saved, or parsed from the central directory)
and recovering from an unfinished commit."""

import bisect
import logging
import os
import time

from archfs.engine.fileaccess import ArchiveFile, fsync_dir, lock_for_writing
from archfs.errors import ArchiveBusy, CorruptArchiveError, NoSuchFile, NotAnArchiveError
from archfs.zipengine import cdwrite, compaction, format as fmt, indexcache, lenient, recovery, writer
from archfs.zipengine.centraldir import (
    EndRecord,
    describe_unreadable,
    mark_overlaps,
    pread_exact,
    read_central_directory,
    read_end,
)
from archfs.zipengine.positions import Positions
from archfs.zipengine.store.options import LOCAL_OVERHEAD
from archfs.zipengine.tree import Tree

log = logging.getLogger("archfs.zip")


class Opening:
    """Part of ZipStore: from a path to a loaded table."""

    def _open_file(self, transport=None):
        """The archive's transport: the one given (a remote archive), else the
        local file, created when missing and locked for a writer."""
        if transport is not None:
            if self.writable and not transport.lock_for_writing():
                raise ArchiveBusy("%s: already open for writing by another archfs"
                                  % self.path)
            return transport
        path = self.path
        if os.path.isdir(path):
            raise NotAnArchiveError("%s: is a directory, not a zip archive" % path)
        if not os.path.exists(path):
            if not self.writable:
                raise NoSuchFile("%s: no such archive" % path)
            create_empty(path)
            log.info("created new archive %s", path)
        archive = ArchiveFile(path, self.writable)
        if self.writable:
            try:
                lock_for_writing(archive)
            except BaseException:
                archive.release()
                raise
            compaction.remove_stale_temps(path)
        return archive

    def _load(self) -> None:
        """Read the member table; a damaged archive is read leniently when
        read-only (see ``lenient.py``) and refused, naming the way out, when not."""
        try:
            self._load_strict()
        except CorruptArchiveError as exc:
            fd = self._file
            try:
                found = lenient.read_leniently(fd, fd.size(), self.path)
            except NotAnArchiveError:
                raise exc from None
            except CorruptArchiveError as why:     # it found members, none readable
                raise why from None
            if self.writable:
                why = str(exc).replace(self.path + ": ", "", 1).replace(
                    " (archfs repair can salvage its members)", "")
                raise CorruptArchiveError(
                    "%s: damaged zip (%s): mount it read-only (-o ro) to read what is intact, "
                    "or run 'archfs repair %s' to make it whole" % (self.path, why, self.path)
                ) from None
            self._use_lenient(found)

    def _use_lenient(self, found) -> None:
        size = self._file.size()
        self._table, self._tree, self._bad = found.table, found.tree, found.bad
        self._comment = found.comment
        self._pos = Positions()
        self._cd_dir_first = False
        self._set_base(EndRecord(size, size, found.cd_start, 0, len(found.table),
                                 found.comment, 0), len(found.table))
        self._committed_end = self._end = size
        self._cd_start, self._cd_size = found.cd_start, 0
        table = self._table
        self._prefix = self._listed_from = min(table.offset) if len(table) else 0
        self._dead = 0
        self._remember_identity()
        self.warnings.append("%s: damaged zip, read leniently: %s; %d member%s"
                             % (self.path, "; ".join(found.notes), len(table),
                                "" if len(table) == 1 else "s"))
        log.warning(self.warnings[-1])

    def _load_strict(self) -> None:
        fd = self._file
        size = fd.size()
        end = read_end(fd, size)
        if end is None and size == 0 and self.writable:
            if fd.is_local:
                log.warning("%s: empty file; it becomes a new, empty archive", self.path)
            else:
                log.info("creating new archive %s", self.path)
            writer.write_all(fd, writer.end_records(0, 0, 0, b""), 0)
            fd.sync()
            size = fd.size()
            end = read_end(fd, size)
        state = None
        if end is None:
            state = self._recover(fd, size)
            end = state.base
            size = fd.size()
        started = time.monotonic()
        if state is not None:
            how = self._load_state(fd, state)
        else:
            try:
                how = self._load_checkpoint(fd, size, end)
            except CorruptArchiveError:
                # an end record that reached the disk before all of its
                # directory (a crash between the two): the state before it
                state = self._recover(fd, size)
                if state.base.eocd_pos == end.eocd_pos:
                    raise
                end = state.base
                how = self._load_state(fd, state)
        elapsed = time.monotonic() - started
        if elapsed > 1:
            log.info("%s %d members of %s in %.1f s", how, len(self._table), self.path, elapsed)
        self._comment = end.comment
        table = self._table
        table.changed = set()             # what was loaded is durable
        skip = self._base_skip_loaded
        self._set_base(end, self._base_rows if self._base_records_loaded < 0
                       else self._base_records_loaded)
        removed = set()
        if state is not None and state.records:
            last = state.records[-1]
            self._seq, self._last_record = last.seq, last.pos
            self._journal_size = sum(r.end - r.pos for r in state.records)
            self._committed_end = self._end = self._unpublished_from = last.end
            base_end = end.cd_start + end.cd_size
            durable = table.durable_at
            for record in state.records:
                for p in record.removed:
                    if end.cd_start <= p < base_end:
                        row = bisect.bisect_left(durable, p, 0, self._base_rows)
                        self._since_base_removed.append((p, table.record_len[row]))
                        removed.add(p)
            self._since_base_rows.update(r for r in range(self._base_rows, len(table))
                                         if not table.dead[r])
        if skip is None:       # records of rows dead from the start (duplicates)
            skip = [(table.durable_at[r], table.record_len[r])
                    for r in cdwrite.dead_rows(table.dead, self._base_rows)
                    if table.durable_at[r] not in removed]
        self._base_skip = skip
        lowest = min(table.offset) if len(table) else end.cd_start
        self._listed_from = lowest         # the lowest offset the committed state lists
        self._prefix = lowest
        if len(table):
            first = table.offset.index(lowest)
            self._first_row = -1 if table.dead[first] else first
        if lowest > 0 and self._unlisted_filler(fd, lowest):
            # an entry archfs put at the start that nothing lists (a crash
            # between the filler of a dead first member and the commit
            # listing it), not a stub: 7-Zip needs it listed or replaced
            self._prefix = 0
            self._dirty = self.writable
        self._dead = max(0, end.cd_start - self._prefix - sum(table.csize)
                         - LOCAL_OVERHEAD * len(table))
        self._remember_identity()

    def _unlisted_filler(self, fd, lowest: int) -> bool:
        """Whether the bytes before the first listed member begin with an
        entry archfs wrote (every local header it writes is UTF-8 flagged)
        that ends inside the gap: a filler of ``firstentry.py`` whose commit
        did not happen, or a removed first member the filler had not yet
        replaced. A self-extracting stub, or another tool's zip in front,
        is kept as it is."""
        found = fmt.read_local_header(lambda n, p: pread_exact(fd, n, p), 0)
        if found is None:
            return False
        fields, data_start = found
        return bool(fields[2] & fmt.FLAG_UTF8) and data_start + fields[7] <= lowest

    def _load_checkpoint(self, fd: int, size: int, end: EndRecord) -> str:
        """The table of a clean archive: the saved index, or a parse."""
        cached = None
        if self.options.index_cache and end.entries >= indexcache.MIN_MEMBERS:
            cached = indexcache.load(self.path, fd, end, self.options.index_dir)
        if cached is not None:
            self._table, self._tree, self._bad, extra = cached
            self._base_rows = len(self._table)
            try:
                self._pos = Positions.from_state(extra["positions"])
                self._base_records_loaded = int(extra["records"])
                self._base_skip_loaded = [tuple(v) for v in extra["skip"]]
                self._cd_dir_first = bool(extra["dir_first"])
            except (KeyError, TypeError, ValueError):
                self._pos = Positions()
                self._base_records_loaded = -1
                self._base_skip_loaded = None
                self._cd_dir_first = False
            return "loaded the saved index of"
        fd.will_read(end.cd_start, end.cd_size)     # a remote file: one or a few GETs
        parsed = read_central_directory(fd, size, end, self.path,
                                        self._progress_for("indexing", end.entries))
        self._table, self._tree, self._bad = parsed.table, parsed.tree, parsed.bad
        self._base_rows = len(self._table)
        self._pos = Positions()
        self._base_records_loaded = -1
        self._base_skip_loaded = None
        self._cd_dir_first = False
        if self.options.index_cache and len(self._table) >= indexcache.MIN_MEMBERS:
            skip = [(self._table.durable_at[r], self._table.record_len[r])
                    for r in cdwrite.dead_rows(self._table.dead, self._base_rows)]
            indexcache.save(self.path, fd, end, self._table, self._tree, self._bad,
                            self.options.index_dir,
                            {"positions": self._pos.state(), "records": self._base_rows,
                             "skip": skip, "dir_first": False})
        return "indexed"

    def _load_state(self, fd: int, state: recovery.State) -> str:
        """The table of a checkpoint followed by journal records, replayed."""
        table, bad = state.parsed
        self._base_rows = len(table)
        self._pos = Positions()
        self._base_records_loaded = -1
        self._base_skip_loaded = None
        self._cd_dir_first = False
        recovery.replay(fd, state.records, table, bad, self.path)
        self._table, self._bad = table, bad
        mark_overlaps(table, bad, state.records[-1].pos if state.records else state.base.cd_start)
        self._tree = Tree.build(table)
        return "replayed %d journal records over" % len(state.records)

    def _recover(self, fd: int, size: int) -> recovery.State:
        state = recovery.find_state(fd, size, self.path, self._progress_for("indexing"))
        if state is None:
            raise describe_unreadable(fd, size, self.path)
        tail = size - state.end
        if not tail:
            return state
        if not self.writable:
            log.warning("%s: ignoring %d bytes after the last complete commit (read-only)",
                        self.path, tail)
            return state
        if not recovery.is_own_tail(fd, state.end, size):
            raise CorruptArchiveError(
                "%s: %d bytes of unknown data follow the end of the archive; "
                "mount it read-only, or run 'archfs repair' to cut them off" % (self.path, tail))
        recovery.cut_tail(fd, state.end)
        log.warning("%s: recovered: dropped %d bytes of an unfinished commit", self.path, tail)
        return state


def create_empty(path: str) -> None:
    """Create a new archive holding nothing, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        writer.write_all(fd, writer.end_records(0, 0, 0, b""), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path)
