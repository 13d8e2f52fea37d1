"""Compaction as the store runs it: a rewrite of the live members beside
the archive (``compaction.rewrite``), then the table pointed at the new file."""

import logging
import time

from archfs.errors import ArchiveChangedError
from archfs.zipengine import compaction
from archfs.zipengine.archivefile import ArchiveFile
from archfs.zipengine.store.opening import lock_for_writing

log = logging.getLogger("archfs.zip")


class Compacting:
    """Part of ZipStore: compact() and the automatic compaction after a commit."""

    def compact(self) -> bool:
        """Rewrite the archive without dead space (committing pending changes)."""
        self._check_writable()
        with self._append:
            self._persist_empty_dirs()
            return self._compact_locked()

    def _compact_locked(self) -> bool:
        self._check_unchanged()
        with self._meta:
            if self._bad:
                log.warning("%s: not compacting: %d damaged members would be lost",
                            self.path, len(self._bad))
                return False
            self._dirty = False
            live = self._table.live()
            rows = [(r, self._table.row(r)) for r in live]
            extras = {r: (self._table.extras.get(r, b""), self._table.comments.get(r, b""))
                      for r in live}
        started = time.monotonic()
        try:
            result = compaction.rewrite(self.path, self._file, self._prefix, rows, extras,
                                        self._comment, self._progress_for("compacting"))
        except BaseException:
            with self._meta:
                self._dirty = True   # what it was to commit is still to be committed
            raise
        new_file = self._reopen_compacted()
        with self._meta:
            moved = result.offsets
            t = self._table
            written = bytearray(len(t))      # rows the new file holds under their name
            for r, _row in rows:
                written[r] = 1
            for r in range(len(t)):
                new_offset = moved.get(t.offset[r])
                if new_offset is None:
                    t.dead[r] = 1   # its data is not in the new file
                    continue
                t.offset[r] = new_offset
                t.record_at[r] = -1
                if written[r]:      # a row renamed meanwhile has the old name's header
                    t.relocate[r] = 0
            for r, at, length in result.records:
                if not t.dead[r]:
                    t.record_at[r], t.record_len[r] = at, length
            old_file, self._file = self._file, new_file
            self._cd_start, self._cd_size = result.cd_start, result.cd_size
            self._listed_from = self._prefix
            self._committed_end = self._end = result.end
            self._dead = 0
        old_file.release()
        self._remember_identity()
        log.info("compacted %s to %d bytes in %.1f s", self.path, result.end,
                 time.monotonic() - started)
        return True

    def _reopen_compacted(self) -> ArchiveFile:
        """The compacted file, now under the archive's name. Should it fail to
        open, the store still holds the replaced file, and writing there
        would be lost: writes are refused from then on."""
        new_file = None
        try:
            new_file = ArchiveFile(self.path, True)
            lock_for_writing(new_file)
            return new_file
        except OSError as exc:
            if new_file is not None:
                new_file.release()
            self._broken = ("%s: compacted, but could not open the new file (%s); refusing "
                            "further writes" % (self.path, exc))
            log.error(self._broken)
            raise ArchiveChangedError(self._broken) from exc

