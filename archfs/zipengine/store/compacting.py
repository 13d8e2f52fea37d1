"""Compaction as the store runs it: a rewrite of the live members beside
the archive (``compaction.rewrite``), then the table pointed at the new file."""

import logging
import time
from typing import NamedTuple

from archfs.engine.fileaccess import ArchiveFile, lock_for_writing
from archfs.errors import ArchiveChangedError
from archfs.zipengine import cdwrite, compaction, extents, format as fmt
from archfs.zipengine.centraldir import EndRecord, pread_exact
from archfs.zipengine.positions import Positions
from archfs.zipengine.store import inplace

log = logging.getLogger("archfs.zip")

NOTHING_BELOW = 512         # dead bytes not worth a compaction (nor 1% of the file)


def _count(n: int) -> str:
    return "{:,}".format(n)


class Survey(NamedTuple):
    """Where an archive's dead space is, measured exactly."""

    size: int             # of the file
    dead: int             # bytes no member, directory or end record uses
    first_dead: int       # where the first dead byte is
    in_place: int         # what moving the members after it down would reclaim
    start_dead: bool      # the archive's first entry is dead (7-Zip then misreads it)
    start_filled: bool    # moving members down would put one at the start
    stale_start: bool     # an entry nothing lists lies before the first member


class Compacting:
    """Part of ZipStore: compact() and the automatic compaction after a commit."""

    last_compaction = ""     # what the last compact() did, in a sentence

    def compact(self, full: bool = False) -> bool:
        """Reclaim dead space, committing pending changes. False (and a
        sentence in ``last_compaction``) when there is too little to reclaim.
        ``full`` rewrites the whole archive whatever its dead space."""
        self._check_writable()
        with self._append:
            self._check_unchanged()
            if self._dirty:
                self._persist_empty_dirs()
            return self._compact_locked(force=full)

    def _compact_locked(self, force: bool = False) -> bool:
        """In place when the dead space lies near the end (cost: the bytes
        after it), else a rewrite of the whole archive beside it."""
        self._check_unchanged()
        with self._meta:
            if self._bad:
                log.warning("%s: not compacting: %d damaged members would be lost",
                            self.path, len(self._bad))
                self.last_compaction = "not compacted: %d damaged members would be lost" % (
                    len(self._bad))
                return False
        if not force:
            if self._dirty:
                self._commit_locked(checkpoint=False, compact=False)
            survey = self._survey()
            if survey.dead <= max(NOTHING_BELOW, survey.size // 100) and not (
                    survey.start_dead or survey.stale_start):
                self.last_compaction = ("nothing worth reclaiming: %s dead bytes in %s"
                                        % (_count(survey.dead), _count(survey.size)))
                log.info("%s: %s", self.path, self.last_compaction)
                return False
            if survey.in_place >= 0.9 * survey.dead and (
                    survey.start_filled or not survey.start_dead) and \
                    self._checkpoint_in_place_locked(hole=survey.first_dead, everything=True):
                self._dead = 0
                self.last_compaction = "moved the members after the first dead byte down"
                return True
        return self._rewrite_locked()

    def _survey(self) -> Survey:
        """Measure the dead space exactly: every live member's extent (a
        sequential pass over the headers), the directory and end records."""
        fd = self._file
        size = fd.size()
        t = self._table
        with self._meta:
            dead_view = self._durable_dead + b"\x01" * (len(t) - len(self._durable_dead))
            rows = sorted(cdwrite.live_rows(dead_view), key=t.offset.__getitem__)
            members = [(t.offset[r], t.csize[r], t.usize[r]) for r in rows]
        lengths = extents.lengths(fd, members)
        live = self._prefix + (self._base.end - self._cd_start)
        first_dead = None
        cursor = self._prefix
        spans = []
        for (offset, _c, _u), length, r in zip(members, lengths, rows):
            length = length or 0
            if first_dead is None and offset > cursor:
                first_dead = cursor
            if offset >= cursor:
                live += length
            elif offset + length > cursor:
                live += offset + length - cursor
            cursor = max(cursor, offset + length)
            spans.append((offset, length, r))
        if first_dead is None:
            first_dead = cursor
        dead = max(0, size - live)
        placed = inplace.place(first_dead, size, [s for s in spans if s[0] >= first_dead])
        in_place = 0
        # the first entry is dead, or an entry nothing lists lies before the
        # first member: 7-Zip then reads old contents until the archive is
        # compacted, even with little dead space
        start_dead = bool(members) and first_dead == self._prefix
        stale_start = self._prefix > 0 and pread_exact(fd, 4, 0) == fmt.LOCAL_SIG
        filled = False
        if placed is not None:
            tail = placed[1] + (self._base.end - self._cd_start)
            in_place = max(0, size - tail)
            filled = first_dead in placed[0].values()
        return Survey(size, dead, first_dead, in_place, start_dead, filled, stale_start)

    def _rewrite_locked(self) -> bool:
        t = self._table
        fd = self._file
        local = fd.is_local
        with self._meta:
            if not local and self._readers_at:
                # a remote archive is rewritten under the same transport:
                # open readers would read the new layout at old offsets
                log.info("%s: compaction waits until no member is being read", self.path)
                self.last_compaction = "postponed: members are being read"
                return False
            taken, t.changed = t.changed, set()
            self._dirty = False
            live = t.live()
            where = self._pos.where
            spots = [(r, t.row(r), where(t.record_at[r]), t.record_len[r], bool(t.relocate[r]),
                      (t.extras.get(r, b""), t.comments.get(r, b""))) for r in live]
        started = time.monotonic()
        try:
            sizes = extents.lengths(fd, [(row.offset, row.csize, row.usize)
                                         for _r, row, _a, _l, _m, _e in spots])
            items = [compaction.Item(r, row, 0 if moved or n is None else n,
                                     pread_exact(fd, length, at) if at >= 0 else b"", extras)
                     for (r, row, at, length, moved, extras), n in zip(spots, sizes)]
            progress = self._progress_for("compacting", len(items))
            if local:
                result = compaction.rewrite(self.path, self._file, self._prefix, items,
                                            self._comment, progress)
            else:       # made locally, then published in one go
                result = compaction.rewrite_through(self._file, self._prefix, items,
                                                    self._comment, progress)
        except BaseException as exc:
            with self._meta:
                t.changed |= taken
                self._dirty = True   # what it was to commit is still to be committed
            if not local:           # the staged content may be half replaced
                self._broken = "%s: compaction failed (%s); refusing further writes" % (
                    self.path, exc)
                log.error(self._broken)
            raise
        new_file = self._reopen_compacted() if local else self._file
        with self._meta:
            moved = result.offsets
            written = bytearray(len(t))      # rows the new file holds under their name
            for item in items:
                written[item.row] = 1
            for r in range(len(t)):
                new_offset = moved.get(t.offset[r])
                t.record_at[r] = t.durable_at[r] = -1
                if new_offset is None:
                    t.dead[r] = 1   # its data is not in the new file
                    continue
                t.offset[r] = new_offset
                if written[r]:      # a row renamed meanwhile has the old name's header
                    t.relocate[r] = 0
            self._pos = Positions()          # plain positions from here on
            for r, at, length in result.records:
                t.durable_at[r], t.record_len[r] = at, length
                if not t.dead[r]:
                    t.record_at[r] = at
            for r in t.changed:
                t.record_at[r] = -1
            self._cd_dir_first = True
            old_file, self._file = self._file, new_file
            eocd = result.end - fmt.EOCD.size - len(self._comment)
            self._set_base(EndRecord(eocd, result.end, result.cd_start, result.cd_size,
                                     len(result.records), self._comment, 0), len(result.records))
            self._durable_dead = bytes(written).translate(cdwrite.NOT_DEAD)  # not written: dead
            self._durable_dead_count = self._durable_dead.count(1)
            self._listed_from = self._prefix
            self._dead = 0
        if old_file is not new_file:
            old_file.release()
        else:     # published now; should that fail, the next commit publishes it
            try:
                new_file.sync()
            except BaseException:
                with self._meta:
                    self._dirty = True
                    self._reencode_all = True   # the published directory is the old one
                raise
        self._remember_identity()
        self._wrote = True
        self.last_compaction = "rewrote the archive"
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

