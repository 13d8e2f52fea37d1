"""Keeping a listed entry at the start of the archive.

7-Zip checks the member at the archive's start against the central
directory; when the first member is replaced or removed, an entry that
fits its space is written there, or a small member is moved out of the way.
"""

import logging
import time
from typing import List

from archfs.zipengine import format as fmt, writer
from archfs.zipengine.entries import NO_UNIX, UnixAttrs
from archfs.zipengine.tree import DIR_MODE

log = logging.getLogger("archfs.zip")

MOVE_LIMIT = 1 << 20          # a member this small is moved to keep the first entry listed
SMALL_ARCHIVE = 64 << 20      # an archive this small is rewritten rather than left with a gap


AES_EXTRA_SIZE = 11     # the AES extra block a copied AES member's header keeps


class FirstEntry:
    """Part of ZipStore: the filler of a dead first member's space."""

    def _fill_first_hole(self):
        """Put a live member back at the start of the archive after the first died.

        7-Zip checks the member at the archive's start against the central
        directory and, if it is not listed there, reads the archive as a
        sequence of local headers instead, finding old contents. Once a
        commit has made the first member's space dead, an entry that fits is
        written there (a directory entry, else a copy of a small member), to
        be listed by one more commit. When nothing fits, the first live member
        is marked to be moved to the end, which widens the gap for the next
        try, if that member is small. Returns True when it wrote an entry,
        "grow" when it marked a member to move, "compact" when the archive has
        no live member or is small enough to rewrite, False when nothing is
        needed, it must wait, or it would cost too much (logged).
        """
        t, tree = self._table, self._tree
        with self._meta:
            start = self._prefix
            first = getattr(self, "_first_row", -1)
            if (0 <= first < len(t) and not t.dead[first] and t.offset[first] == start
                    and self._listed_from <= start):
                return False          # the first member is alive where it was: no hole
            live = t.live()
            if live and t.offset[live[0]] == start:
                self._first_row = live[0]
            if not live:
                return "compact" if self._cd_start > self._prefix else False
            start = self._prefix
            # dead in the table is not enough: a removal made since the last
            # commit is still listed on disk, and a crash before the next
            # commit must find that member's bytes intact
            hole = min(t.offset[live[0]], self._listed_from) - start
            if hole <= 0 or any(start <= at < start + hole for at in self._readers_at):
                return False    # a process still reads a removed member there
            choice = self._hole_filler(live, hole)
            if choice is None:
                first = live[0]
                if first in self._bad or t.offset[first] in self._readers_at:
                    return False
                if t.csize[first] <= max(MOVE_LIMIT, self._committed_end // 100):
                    t.relocate[first] = 1     # cheap to move: widen the gap with its space
                    t.touch(first)
                    return "grow"
                if self._committed_end <= SMALL_ARCHIVE:
                    return "compact"
                log.warning("%s: no entry fits where the first member was and moving the "
                            "next one costs %d bytes; 7-Zip may list stale members until "
                            "'archfs compact'", self.path, t.csize[first])
                return False
        kind, value = choice
        fd = self._file
        self._wrote_elsewhere = True       # the next journal record syncs this first
        if kind == "dir":
            now = time.time_ns()
            with self._meta:   # the entry carries the directory's own time and owner
                node = tree.dirs.get(value)
                explicit = node is not None and node.row >= 0
                unix = t.unix(node.row) if explicit else NO_UNIX
                stamp = t.mtime_ns[node.row] if explicit else now
            written = writer.append_bytes(fd, start, value, b"", stamp, 0, is_dir=True,
                                          times=_full_header_fits(value, True, 0, 0, stamp, unix,
                                                                  DIR_MODE, hole), unix=unix)
            with self._meta:
                node = tree.dirs.get(value)
                if node is None:
                    self._dead += written.end - start
                    return False
                mode = t.mode[node.row] if node.row >= 0 else DIR_MODE
                mtime = t.mtime_ns[node.row] if node.row >= 0 else now
                row = t.add(value, start, 0, 0, 0, fmt.STORED, written.flags, mtime, mode)
                if node.row >= 0:
                    t.set_unix(row, t.unix(node.row))
                    t.set_ctime(row, t.ctime(node.row))
                    t.dead[node.row] = 1
                tree.add_dir(value, row)
            return True
        r = value
        found = fmt.read_local_header(self._file.pread, t.offset[r])
        if found is None:
            return "compact"
        row = t.row(r)
        # the full header (times, owner: what unzip restores from) where it fits
        kept = AES_EXTRA_SIZE if row.method == fmt.AES_MARKER else 0
        times = _full_header_fits(row.name, row.is_dir, row.csize, row.usize, row.mtime_ns,
                                  row.unix, row.mode, hole - kept)
        written = writer.append_copy(fd, start, row.name, row.is_dir, fd, found[1], row.csize,
                                     row.usize, row.crc, row.method, row.flags, row.mtime_ns,
                                     times=times, dos=row.dos, unix=row.unix, mode=row.mode,
                                     src_header_at=t.offset[r])
        with self._meta:
            if t.dead[r]:
                return False
            t.offset[r] = start
            t.flags[r] = written.flags
            t.relocate[r] = 0
            t.touch(r)
        return True

    def _hole_filler(self, live: List[int], hole: int):
        """("dir", path) or ("row", row) of an entry that fits in ``hole`` bytes."""
        t = self._table
        overhead = fmt.LOCAL_HEADER.size       # fillers get headers without extras
        dirs = [p for p in self._tree.dirs if p and len(p.encode()) + 1 + overhead <= hole]
        if dirs:
            return "dir", min(dirs, key=len)
        best = None
        for r in live:
            if r in self._bad or t.flags[r] & fmt.FLAG_DESCRIPTOR:
                continue
            size = overhead + len(t.names[r].encode()) + t.csize[r]
            if t.method[r] == fmt.AES_MARKER:
                size += AES_EXTRA_SIZE
            if t.usize[r] >= writer.ZIP64_THRESHOLD:
                size += 20
            if size <= hole and (best is None or t.csize[r] < t.csize[best]):
                best = r
        return None if best is None else ("row", best)


def _full_header_fits(name: str, is_dir: bool, csize: int, usize: int, mtime_ns: int,
                      unix: UnixAttrs, mode: int, hole: int) -> bool:
    """Whether a member with its full local header (timestamps, owner) fits
    in ``hole`` bytes; a filler otherwise gets the bare header."""
    zip64 = max(csize, usize) >= writer.ZIP64_THRESHOLD
    header = writer.local_header(writer.member_name_bytes(name, is_dir), fmt.STORED, 0,
                                 mtime_ns, 0, csize, usize, zip64, True, unix=unix, mode=mode)
    return len(header) + csize <= hole
