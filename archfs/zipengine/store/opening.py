"""Opening the archive: creating a missing one, taking the writer's lock,
loading the member index (saved, or parsed from the central directory)
and recovering from an unfinished commit."""

import fcntl
import logging
import os
import time

from archfs.errors import ArchiveBusy, CorruptArchiveError, NoSuchFile, NotAnArchiveError
from archfs.zipengine import compaction, indexcache, lenient, recovery, writer
from archfs.zipengine.archivefile import ArchiveFile, fsync_dir
from archfs.zipengine.centraldir import (
    EndRecord,
    describe_unreadable,
    read_central_directory,
    read_end,
)
from archfs.zipengine.store.options import LOCAL_OVERHEAD

log = logging.getLogger("archfs.zip")


class Opening:
    """Part of ZipStore: from a path to a loaded table."""

    def _open_file(self) -> ArchiveFile:
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
            fd = self._file.fd
            try:
                found = lenient.read_leniently(fd, os.fstat(fd).st_size, self.path)
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
        size = os.fstat(self._file.fd).st_size
        self._table, self._tree, self._bad = found.table, found.tree, found.bad
        self._comment = found.comment
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
        fd = self._file.fd
        size = os.fstat(fd).st_size
        end = read_end(fd, size)
        if end is None and size == 0 and self.writable:
            log.warning("%s: empty file; it becomes a new, empty archive", self.path)
            writer.write_all(fd, writer.end_records(0, 0, 0, b""), 0)
            os.fsync(fd)
            size = os.fstat(fd).st_size
            end = read_end(fd, size)
        if end is None:
            end = self._recover(fd, size)
            size = os.fstat(fd).st_size
        started = time.monotonic()
        cached = None
        if self.options.index_cache and end.entries >= indexcache.MIN_MEMBERS:
            cached = indexcache.load(self.path, fd, end, self.options.index_dir)
        if cached is not None:
            self._table, self._tree, self._bad = cached
            how = "loaded the saved index of"
        else:
            parsed = read_central_directory(fd, size, end, self.path,
                                            self._progress_for("indexing", end.entries))
            self._table, self._tree, self._bad = parsed.table, parsed.tree, parsed.bad
            if self.options.index_cache and len(self._table) >= indexcache.MIN_MEMBERS:
                indexcache.save(self.path, fd, end, self._table, self._tree, self._bad,
                                self.options.index_dir)
            how = "indexed"
        elapsed = time.monotonic() - started
        if elapsed > 1:
            log.info("%s %d members of %s in %.1f s", how, len(self._table), self.path, elapsed)
        self._comment = end.comment
        self._committed_end = end.end
        self._end = end.end
        self._cd_start, self._cd_size = end.cd_start, end.cd_size
        table = self._table
        self._prefix = min(table.offset) if len(table) else end.cd_start
        self._listed_from = self._prefix   # the lowest offset the committed directory lists
        self._dead = max(0, end.cd_start - self._prefix - sum(table.csize)
                         - LOCAL_OVERHEAD * len(table))
        self._remember_identity()

    def _recover(self, fd: int, size: int) -> EndRecord:
        end = recovery.find_last_good_end(fd, size, self.path)
        if end is None:
            raise describe_unreadable(fd, size, self.path)
        tail = size - end.end
        if not self.writable:
            log.warning("%s: ignoring %d bytes after the last complete commit (read-only)",
                        self.path, tail)
            return end
        if not recovery.is_own_tail(fd, end.end, size):
            raise CorruptArchiveError(
                "%s: %d bytes of unknown data follow the end of the archive; "
                "mount it read-only, or run 'archfs repair' to cut them off" % (self.path, tail))
        recovery.cut_tail(fd, end.end)
        log.warning("%s: recovered: dropped %d bytes of an unfinished commit", self.path, tail)
        return end


def create_empty(path: str) -> None:
    """Create a new archive holding nothing, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        writer.write_all(fd, writer.end_records(0, 0, 0, b""), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path)


def lock_for_writing(archive: ArchiveFile) -> None:
    """One writer per archive: a second archfs writing it would corrupt it."""
    try:
        fcntl.flock(archive.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ArchiveBusy("%s: already open for writing by another archfs" % archive.path) from None
