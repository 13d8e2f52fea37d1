"""Journal commits: a change made durable by a record the size of the change.

The record (``journal.py``) lists the central records of the rows added or
changed since the last commit and the durable positions of the records
they supersede or remove; it is appended after the member data and
fdatasync'ed once that data is durable. What changed is found without a
pass over every row: the table keeps the rows added or touched
(``EntryTable.changed``), and rows that died are found by comparing the
dead flags with a copy taken at the last commit (only when their count
moved, and then in C).
"""

import logging
import zlib
from typing import List, Tuple

from archfs.zipengine import cdwrite, journal, writer
from archfs.zipengine.centraldir import EndRecord, pread_exact
from archfs.zipengine.entries import flagged_rows

log = logging.getLogger("archfs.zip")

ONE_SYNC = 1 << 20     # data up to this size is checked by the record's CRC, not synced first


class Journaling:
    """Part of ZipStore: the journal after the last checkpoint."""

    def _set_base(self, end: EndRecord, records: int) -> None:
        """The checkpoint ``end`` (its directory holding ``records`` records)
        is now the durable state, no journal after it."""
        self._base = end
        self._base_records = records
        self._base_skip: List[Tuple[int, int]] = []    # its records of rows dead at load
        self._cd_start, self._cd_size = end.cd_start, end.cd_size
        self._seq = 0
        self._last_record = 0
        self._committed_end = end.end
        # the next append goes after the end records; where a sync publishes
        # atomically (S3), over the directory, which every commit rewrites
        self._end = end.cd_start if self._file.atomic else end.end
        self._unpublished_from = self._end
        self._since_base_rows = set()          # rows a journal record listed since
        self._since_base_removed: List[Tuple[int, int]] = []   # its records superseded since
        self._journal_size = 0                 # bytes of journal records since
        self._snapshot_dead()

    def _snapshot_dead(self) -> None:
        self._durable_dead = bytes(self._table.dead)
        self._durable_dead_count = self._durable_dead.count(1)

    @property
    def journal_bytes(self) -> int:
        """Bytes after the last checkpoint (journal records and the data they list)."""
        return self._end - self._base.end

    def _newly_dead(self) -> List[int]:
        """Rows that were alive at the last commit and are dead now."""
        old = self._durable_dead
        n = len(old)
        dead = self._table.dead
        if dead.count(1, 0, n) == self._durable_dead_count:
            return []      # dead flags only ever go from 0 to 1: none changed
        diff = int.from_bytes(old, "little") ^ int.from_bytes(dead[:n], "little")
        return flagged_rows(diff.to_bytes(n, "little"))

    def _journal_commit_locked(self) -> None:
        """Append one journal record holding every change since the last
        commit. Up to ``ONE_SYNC`` bytes of data since the last record are
        covered by the record's data CRC and synced with it; more are synced
        first (see ``journal.py``)."""
        self._relocate_renamed()
        fd = self._file
        start, end = self._committed_end, self._end
        data_crc = None
        if end - start <= ONE_SYNC and not self._wrote_elsewhere:
            data_crc = zlib.crc32(pread_exact(fd, end - start, start))
        else:
            fd.sync()                          # the data before the record that lists it
            self._wrote_elsewhere = False
        t = self._table
        with self._meta:
            taken, t.changed = t.changed, set()
            died = self._newly_dead()
            snapshot = bytes(t.dead)
            where = self._pos.where
            gone = [(where(t.durable_at[r]), t.record_len[r]) for r in died]
            rows = []
            for r in sorted(taken):
                if t.dead[r]:
                    continue
                gone.append((where(t.durable_at[r]), t.record_len[r]))  # superseded, if any
                rows.append(r)
            gone = [g for g in gone if g[0] >= 0]
            removed = [at for at, _length in gone]
            records = [cdwrite.record_of(t, r) for r in rows]
            self._dirty = False
        if not removed and not rows and end == start:
            with self._meta:
                self._durable_dead, self._durable_dead_count = snapshot, snapshot.count(1)
            return
        data, cd_offset = journal.encode(self._seq + 1, self._base.eocd_pos, self._last_record,
                                         removed, records, data_crc)
        pos = self._end
        try:
            writer.write_all(fd, data, pos)
            fd.sync()
        except BaseException:
            with self._meta:
                t.changed |= taken
                self._dirty = True
            try:
                fd.truncate(pos)
            except OSError:
                log.exception("%s: could not cut off a failed journal record", self.path)
            self._remember_identity()
            raise
        with self._meta:
            at = pos + cd_offset
            for r, record in zip(rows, records):
                t.durable_at[r] = self._pos.address(at)
                t.record_len[r] = len(record)
                if r not in t.changed:        # unless touched again meanwhile
                    t.record_at[r] = t.durable_at[r]
                at += len(record)
            for r in died:
                t.durable_at[r] = -1
            base_lo, base_hi = self._cd_start, self._cd_start + self._cd_size
            self._since_base_removed.extend(g for g in gone if base_lo <= g[0] < base_hi)
            self._since_base_rows.update(rows)
            if rows:   # the durable state lists these now (the first-member filler must know)
                self._listed_from = min(self._listed_from, min(map(t.offset.__getitem__, rows)))
            self._durable_dead, self._durable_dead_count = snapshot, snapshot.count(1)
            self._seq += 1
            self._journal_size += len(data)
            self._last_record = pos
            self._committed_end = self._end = self._unpublished_from = pos + len(data)
        self._remember_identity()
        self._wrote = True
