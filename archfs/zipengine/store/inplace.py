"""The checkpoint that reuses the space of the last central directory.

Appending a complete directory at every checkpoint would leave the last
one as dead space (60 MB at a million members). Instead the members
written since (usually small, and few) are moved down into the dead space
that begins at the last directory, and the new directory is written right
after them; the file is then cut there. Bytes the durable state still
needs are never overwritten, so a crash at any instant leaves a state that
recovery finds whole:

1. A copy of the last directory and its end records is written beyond
   everything the result will occupy, followed by one journal record that
   holds every change since (the records of the journal so far, which lie
   where members will move). fdatasync. The copy is now the checkpoint;
   the old directory and journal are dead space.
2. Each member moves into a dead gap below it that it fits in whole, from
   the highest down; the first that fits nowhere stays, with everything
   below it. No target touches a byte the durable state lists. fdatasync.
3. A journal record lists the moved members at their new offsets.
   fdatasync. Their old bytes are now dead too.
4. The new directory goes right after the last member, fdatasync, then
   its end records, fdatasync.
5. The file is truncated after them, and fsync'ed: one complete zip again.

A crash before 5 leaves the copy and its journal at the end of the file:
recovery takes the newest intact journal record (or the copy itself) and
the next checkpoint starts again. Members a reader has open are never
moved or overwritten: the checkpoint is then appended instead.
"""

import logging
import os
from typing import Dict, List, Optional, Tuple

from archfs.zipengine import cdwrite, extents, journal, writer
from archfs.zipengine.centraldir import EndRecord, pread_exact
from archfs.zipengine.store.options import REUSE_ALWAYS

log = logging.getLogger("archfs.zip")

MAX_GAPS_TRIED = 64


class InPlace:
    """Part of ZipStore: the checkpoint written over the last directory."""

    def _checkpoint_in_place_locked(self, hole: Optional[int] = None, everything=False) -> bool:
        """Steps 1-5 above; False when it cannot (or need not) be done now.

        ``hole`` is where reusable space begins (default: the last
        directory); with ``everything`` every member after it may move, not
        only those written since the checkpoint (compaction). Lists what is
        durable (the last commit's state): changes made meanwhile by other
        threads stay pending for the next commit."""
        base = self._base
        if not self._file.is_local:
            return False     # (a remote archive rewrites its directory in place at every commit)
        if base.shift or not base.cd_size or (hole is None and not self._reuse_pays()):
            return False
        start = base.cd_start if hole is None else hole
        fd = self._file.fd
        t = self._table
        where = self._pos.where
        lo, hi = base.cd_start, base.cd_start + base.cd_size
        with self._meta:
            if any(at >= start for at in self._readers_at):
                return False       # a reader would see bytes change under it
            n0 = len(self._durable_dead)
            dead = self._durable_dead + b"\x01" * (len(t) - n0)
            if everything:
                rows = [r for r in cdwrite.live_rows(dead) if t.offset[r] >= start]
            else:
                rows = [r for r in self._since_base_rows if not dead[r] and t.offset[r] >= start]
            members = sorted((t.offset[r], r, t.csize[r], t.usize[r]) for r in rows)
        sizes = extents.lengths(fd, ((o, c, u) for o, _r, c, u in members))
        if any(n is None for n in sizes):
            return False
        placed = place(start, self._end, [(o, n, r) for (o, r, _c, _u), n in zip(members, sizes)])
        if placed is None:
            return False
        moves, tail_end = placed
        sources = {r: (o, n) for (o, r, _c, _u), n in zip(members, sizes) if r in moves}
        with self._meta:
            holes = list(self._since_base_removed)
            for r in moves:                      # members of the last directory that move
                at = where(t.durable_at[r])
                if lo <= at < hi:
                    holes.append((at, t.record_len[r]))
            rows = self._since_base_rows | set(moves)
            fresh = {r: cdwrite.moved_record(fd, t, r, target, where(t.durable_at[r]))
                     for r, target in moves.items()}
            planned = self._plan_directory(dead, rows, holes, lambda r: where(t.durable_at[r]),
                                           fresh)
            if planned is None:
                return False
        end_size = len(writer.end_records(tail_end, planned.directory.size, planned.count,
                                          self._comment))
        final_end = tail_end + planned.directory.size + end_size
        old_end = self._end
        if final_end >= old_end:
            return False           # nothing to reclaim: appending costs less
        copy = self._copy_checkpoint(fd, max(old_end, final_end))
        try:
            self._move(fd, moves, sources)
            self._record_moves(fd, copy, moves, sources, fresh, n0)
            with self._meta:
                if any(at >= tail_end for at in self._readers_at):
                    self._settle_on_copy(copy)
                    return False
                again = self._plan_directory(dead, rows, holes, lambda r: where(t.durable_at[r]))
            if again is None or again.directory.size != planned.directory.size \
                    or again.count != planned.count:
                raise OSError("the directory planned before the moves no longer fits")
            cd_end = cdwrite.write_pieces(fd, tail_end, again.directory.pieces,
                                          translate=copy.translate)
            os.fdatasync(fd)
            end = writer.write_all(fd, writer.end_records(tail_end, again.directory.size,
                                                          again.count, self._comment), cd_end)
            os.fdatasync(fd)
            os.ftruncate(fd, end)
            os.fsync(fd)
        except BaseException:
            self._settle_on_copy(copy)
            raise
        with self._meta:
            self._directory_written(tail_end, again)
            reclaimed = old_end - end
            self._set_base(EndRecord(cd_end + end_size - 22 - len(self._comment), end, tail_end,
                                     again.directory.size, again.count, self._comment, 0),
                           again.count)
            self._durable_dead = dead[:n0]       # rows dying meanwhile are still listed
            self._durable_dead_count = self._durable_dead.count(1)
            self._dead = max(0, self._dead - reclaimed)
            self._listed_from = self._lowest_listed(dead)
        self._remember_identity()
        self._wrote = True
        log.debug("%s: checkpoint in place, %d members moved, %d bytes reclaimed",
                  self.path, len(moves), reclaimed)
        return True

    def _reuse_pays(self) -> bool:
        """Whether the space a checkpoint in place reclaims (the last
        directory and the journal, at least) is worth its syncs: a share of
        the file (``reuse_from``), or several MiB."""
        reclaimable = self._base.end - self._cd_start + self._journal_size
        return reclaimable >= min(REUSE_ALWAYS, self.options.reuse_from * self._end)

    # -- the steps ---------------------------------------------------------------

    def _copy_checkpoint(self, fd: int, at: int) -> "_Copy":
        """Step 1: the last directory copied to ``at``, its end records, and a
        journal record of everything since. Durable when this returns."""
        base, t = self._base, self._table
        lo, hi = base.cd_start, base.cd_start + base.cd_size
        delta = at - lo
        where = self._pos.where
        with self._meta:
            rows = sorted(r for r in self._since_base_rows if t.durable_at[r] >= 0)
            spots = [(where(t.durable_at[r]), t.record_len[r]) for r in rows]
            removed = [(p + delta, length) for p, length in self._since_base_removed]
        records = [pread_exact(fd, length, pos) for pos, length in spots]
        ends = writer.end_records(at, base.cd_size, self._base_records, self._comment)
        eocd = at + base.cd_size + len(ends) - 22 - len(self._comment)
        record, cd_offset = journal.encode(1, eocd, 0, [p for p, _n in removed], records)
        record_at = at + base.cd_size + len(ends)
        try:
            writer.copy_range(fd, lo, fd, at, base.cd_size)
            writer.write_all(fd, ends + record, at + base.cd_size)
            os.fdatasync(fd)
        except BaseException:
            os.ftruncate(fd, self._end)
            self._remember_identity()
            raise
        copy = _Copy(EndRecord(eocd, record_at, at, base.cd_size, self._base_records,
                               self._comment, 0),
                     (lo, hi, delta), record_at, record_at + len(record), removed, rows)
        with self._meta:
            pos = record_at + cd_offset
            for r, data in zip(rows, records):
                t.durable_at[r] = self._pos.address(pos)
                if t.record_at[r] >= 0:
                    t.record_at[r] = t.durable_at[r]
                pos += len(data)
            self._end = self._committed_end = copy.end
        self._remember_identity()
        return copy

    def _move(self, fd: int, moves: Dict[int, int], sources) -> None:
        """Step 2: each member's bytes copied to its target. Durable on return."""
        progress = self._progress_for("compacting", len(moves)) if len(moves) > 4096 else None
        for done, (r, target) in enumerate(sorted(moves.items(), key=lambda item: item[1])):
            src, length = sources[r]
            writer.copy_range(fd, src, fd, target, length)
            if progress is not None and done % 4096 == 0:
                progress(done)
        os.fdatasync(fd)
        if progress is not None:
            progress(len(moves))

    def _record_moves(self, fd, copy: "_Copy", moves, sources, fresh, n0: int) -> None:
        """Step 3: the journal record of the moves; then the table follows them."""
        t = self._table
        rows = sorted(moves)
        if not rows:
            return
        with self._meta:
            removed = [copy.position(self._pos.where(t.durable_at[r])) for r in rows]
        records = [fresh[r] for r in rows]
        record, cd_offset = journal.encode(2, copy.base.eocd_pos, copy.record_at, removed, records)
        writer.write_all(fd, record, copy.end)
        os.fdatasync(fd)
        old = {sources[r][0]: moves[r] for r in rows}
        with self._meta:
            pos = copy.end + cd_offset
            for r, data in zip(rows, records):
                t.offset[r] = moves[r]
                t.durable_at[r] = self._pos.address(pos)
                t.record_len[r] = len(data)
                if t.record_at[r] >= 0:
                    t.record_at[r] = t.durable_at[r]
                pos += len(data)
            for r in range(n0, len(t)):      # rows made meanwhile from a moved one (rename)
                target = old.get(t.offset[r])
                if target is not None:
                    t.offset[r] = target
            copy.moved_rows = rows
            copy.records = 2
            copy.last = copy.end
            copy.end += len(record)
            self._end = self._committed_end = copy.end
        self._remember_identity()

    def _settle_on_copy(self, copy: "_Copy") -> None:
        """The checkpoint stopped after step 1 or 3: the durable state is the
        copy and its journal, so the store goes on from there."""
        lo, hi, delta = copy.translate
        with self._meta:
            # the last directory's records are found in the copy; the journal
            # records after it stay where they are
            self._pos.advance([(lo, hi, lo + delta), (copy.record_at, copy.end, copy.record_at)])
            self._base = copy.base
            self._cd_start, self._cd_size = copy.base.cd_start, copy.base.cd_size
            self._seq = copy.records
            self._last_record = copy.last
            self._journal_size = copy.end - copy.record_at
            self._since_base_rows = set(copy.rows) | set(copy.moved_rows)
            self._since_base_removed = list(copy.removed)
            self._base_skip = [(p + delta, n) for p, n in self._base_skip]
            self._end = self._committed_end = copy.end
        try:
            os.ftruncate(self._file.fd, copy.end)
        except OSError:
            pass
        self._remember_identity()


class _Copy:
    """The copied checkpoint of step 1 and the journal after it."""

    def __init__(self, base: EndRecord, translate: Tuple[int, int, int], record_at: int,
                 end: int, removed: List[Tuple[int, int]], rows: List[int]):
        self.base = base
        self.translate = translate
        self.record_at = record_at      # the journal record of step 1
        self.last = record_at           # the newest journal record
        self.end = end
        self.removed = removed
        self.rows = rows
        self.moved_rows: List[int] = []
        self.records = 1

    def position(self, at: int) -> int:
        """Where a durable record now lies (records of the old directory moved)."""
        lo, hi, delta = self.translate
        return at + delta if lo <= at < hi else at


def place(start: int, file_end: int, members: List[Tuple[int, int, int]]):
    """Targets for members (offset, length, row) in dead gaps after ``start``.

    Gaps are the spaces between the members from ``start`` to the end of
    the file; a member moves into the lowest gap below it that holds it
    whole, the highest member first; the first that fits nowhere stays with
    everything below it. Members keep their order within a gap. Returns ({row: target}, end of the last member),
    or None if members overlap (left alone)."""
    gaps: List[List[int]] = []
    cursor = start
    for offset, length, _row in members:
        if offset < cursor:
            return None
        if offset > cursor:
            gaps.append([cursor, offset])
        cursor = offset + length
    origins = [g[0] for g in gaps]
    spots: Dict[int, int] = {}            # row -> its gap
    moves: Dict[int, int] = {}
    staying_end = start
    first_open = 0
    for offset, length, row in reversed(members):
        spot = None
        tried = 0
        for g in range(first_open, len(gaps)):
            gap_start, gap_end = gaps[g]
            if gap_start >= offset or tried >= MAX_GAPS_TRIED:
                break
            tried += 1
            if gap_start + length <= gap_end:
                spot = g
                break
        if spot is None:
            staying_end = offset + length
            break
        spots[row] = spot
        gaps[spot][0] += length
        while first_open < len(gaps) and gaps[first_open][0] >= gaps[first_open][1]:
            first_open += 1
    length_of = {row: length for _offset, length, row in members}
    cursors = list(origins)
    for _offset, _length, row in members:   # in each gap, in their order in the archive
        if row in spots:
            moves[row] = cursors[spots[row]]
            cursors[spots[row]] += length_of[row]
    tail_end = max([staying_end] + [target + length_of[row] for row, target in moves.items()])
    return moves, tail_end
