"""The next central directory, planned from the last one and what changed.

The new directory is the last checkpoint's directory with the records of
removed and changed rows cut out (runs copied verbatim), the changed and
new directory entries first (with the entries of their parent directories,
moved ahead of them), and the changed and new files last, in archive order:
every directory entry still comes before its contents, and the work done
is proportional to the change (``cdwrite.assemble``, ``positions.py``).

That relies on the last directory listing every directory before its
contents. A directory archfs wrote does; one written by another tool is
checked once, from the row numbers (which follow its order) at the first
checkpoint, and rewritten in full order if it does not (``cdwrite.order``).
"""

import logging
from typing import Dict, List, NamedTuple, Optional, Set

from archfs.zipengine import cdwrite
from archfs.zipengine.cdwrite import Entry

log = logging.getLogger("archfs.zip")


class Planned(NamedTuple):
    directory: cdwrite.Directory
    count: int             # records in the new directory
    placed_rows: Set[int]  # rows placed one by one (their records move)


class DirectoryPlanning:
    """Part of ZipStore: what the next checkpoint's directory holds."""

    def _plan_directory(self, dead, rows: Set[int], holes: List, source,
                        fresh: Optional[Dict[int, bytes]] = None) -> Optional[Planned]:
        """(caller holds _meta) The directory listing the rows alive in
        ``dead``: the last one less ``holes`` ((position, length) of its
        records that go), plus ``rows`` placed one by one, each copied from
        ``source(row)`` (a position) or encoded (``fresh``, else from the
        table). None when it cannot be assembled that way."""
        t, tree, where = self._table, self._tree, self._pos.where
        lo, hi = self._cd_start, self._cd_start + self._cd_size
        if self._base.shift or (not self._cd_dir_first and not self._check_dir_first()):
            return None          # offsets relative to a stub, or out of order: all anew
        fresh = fresh or {}
        holes = list(holes) + list(self._base_skip)
        rows = {r for r in rows if not dead[r]}
        dirs = [r for r in rows if cdwrite.is_dir(t, r)]
        ahead: Set[int] = set()
        for r in dirs:
            parent = t.names[r].rpartition("/")[0]
            while parent:
                node = tree.dirs.get(parent)
                if node is not None and node.row >= 0 and node.row not in rows \
                        and node.row not in ahead and not dead[node.row]:
                    at = where(t.durable_at[node.row])
                    if lo <= at < hi:
                        ahead.add(node.row)
                        holes.append((at, t.record_len[node.row]))
                parent = parent.rpartition("/")[0]
        in_front = set(dirs) | ahead
        front = sorted(in_front, key=lambda r: (t.names[r].count("/"), t.names[r]))
        back = sorted((r for r in rows if r not in in_front), key=t.offset.__getitem__)
        entries = []
        for group in (front, back):
            placed = []
            for r in group:
                data = fresh.get(r)
                at = -1
                if data is None:
                    at = source(r) if r not in ahead else where(t.durable_at[r])
                    if at < 0:
                        data = cdwrite.record_of(t, r)
                placed.append(Entry(r, at, data, len(data) if data is not None else
                                    t.record_len[r]))
            entries.append(placed)
        holes.sort()
        count = self._base_records - len(holes) + len(front) + len(back)
        if count != len(dead) - dead.count(1) or any(
                b[0] < a[0] + a[1] for a, b in zip(holes, holes[1:])):
            log.debug("%s: the directory cannot be assembled from the last one "
                      "(%d records counted); writing it in full", self.path, count)
            return None
        directory = cdwrite.assemble(lo, hi, holes, entries[0], entries[1])
        return Planned(directory, count, set(front) | set(back))

    def _check_dir_first(self) -> bool:
        """Whether the last directory (parsed: row numbers follow its order)
        lists every directory entry before its contents."""
        t, tree = self._table, self._tree
        n = self._base_records
        dead = t.dead
        lowest: Dict[str, int] = {}
        ok = True
        for path in sorted(tree.dirs, key=lambda p: p.count("/") + 1 if p else 0, reverse=True):
            node = tree.dirs[path]
            low = min(node.files) if len(node.files) else n
            prefix = path + "/" if path else ""
            for name in node.subdirs:
                low = min(low, lowest.get(prefix + name, n))
            row = node.row
            if 0 <= row < n and not dead[row]:
                if row > low:
                    ok = False
                    break
                low = row
            lowest[path] = low
        self._cd_dir_first = ok
        if not ok:
            log.info("%s: the central directory lists a directory after its contents; "
                     "it is written in order at this checkpoint", self.path)
        return ok
