"""The directory tree over the member table.

Zip has no directories, only names; this module gives every name its parent
directories (explicit ``dir/`` entries and the ones member names imply) and
lists a directory's children without a stat per child. ``paths`` maps a
member's path to its row; ``dirs`` maps each directory path (``""`` is the
root) to its node.

Clashes are settled here as ``names.py`` documents: a later member of the
same spelling takes the name from an earlier one, and a directory takes the
name from a file.
"""

import stat
import sys
from array import array
from collections import Counter
from itertools import groupby
from operator import itemgetter
from sys import intern
from typing import Dict, List, Optional, Tuple

from archfs.engine.tree import DIR_MODE, BaseTree
from archfs.zipengine.entries import EntryTable, flagged_rows
from archfs.zipengine.names import backup_spelling


class DirNode:
    """One directory: its file rows, its subdirectory names, its own row."""

    __slots__ = ("files", "subdirs", "row", "live")

    def __init__(self, row: int = -1):
        self.files = array("q")       # rows of files and symlinks; may hold dead rows
        self.subdirs: Dict[str, None] = {}
        self.row = row                # explicit directory entry, or -1 if implied
        self.live = 0                 # live rows in ``files``


class Tree(BaseTree):
    """The tree of zip names: clashes are settled by respelling."""

    node_type = DirNode

    def __init__(self, table: EntryTable):
        self.table = table
        self.paths: Dict[str, int] = {}
        self.dirs: Dict[str, DirNode] = {"": DirNode()}
        self._next_backup: Dict[str, int] = {}

    # -- building -----------------------------------------------------------

    @classmethod
    def build(cls, table: EntryTable) -> "Tree":
        """The tree of every live row.

        When no two names clash (the usual case) this runs in a few passes
        that Python executes in C: rows are grouped by parent directory with
        one stable sort, so each directory's rows are a slice, in archive order.
        """
        tree = cls(table)
        names, modes, dead = table.names, table.mode, table.dead
        n = len(names)
        paths = dict(zip(names, range(n)))
        if len(paths) != n or "" in paths or dead.count(1):
            for row in range(n):
                if not dead[row]:
                    tree.insert(row)
            return tree
        tree.paths = paths
        parents = [intern(name.rpartition("/")[0]) for name in names]
        for row in _directory_rows(modes):
            tree.ensure_dir(names[row]).row = row
            parents[row] = "\x00"     # sorts first; directories are not files of a parent
        counts = Counter(parents)
        if sum(1 for _ in groupby(parents)) == len(counts):   # directories already adjacent
            at = 0
            for parent, group in groupby(parents):
                count = sum(1 for _ in group)
                if parent != "\x00":
                    node = tree.ensure_dir(parent)
                    node.files = array("q", range(at, at + count))
                    node.live = count
                at += count
            return tree
        order = array("q", sorted(range(n), key=parents.__getitem__))
        del parents
        at = 0
        for parent in sorted(counts):
            count = counts[parent]
            if parent != "\x00":
                node = tree.ensure_dir(parent)
                node.files = order[at:at + count]
                node.live = count
            at += count
        return tree

    def insert(self, row: int) -> None:
        """Place a row under its (safe) name, settling clashes."""
        table = self.table
        path = table.names[row]
        if stat.S_ISDIR(table.mode[row]):
            self._insert_dir(path, row)
            return
        if not path:
            path = table.names[row] = "unnamed"
            table.relocate[row] = 1
            table.touch(row)
        if path in self.dirs:
            path = self._respell(row, path)
        old = self.paths.get(path)
        if old is not None:
            if stat.S_ISDIR(table.mode[old]):   # an explicit dir entry
                path = self._respell(row, path)
            else:
                self._respell(old, path)          # the later member keeps the name
        self._attach_file(path, row)

    def _insert_dir(self, path: str, row: int) -> None:
        if path == "":
            self.table.dead[row] = 1    # an entry for the root ("./"): nothing to show
            return
        node = self.ensure_dir(path)
        if node.row >= 0 and node.row != row:
            self.table.dead[node.row] = 1      # duplicate dir entry: keep the later
        node.row = row
        self.paths[path] = row

    def _respell(self, row: int, path: str) -> str:
        """Give ``row`` (at ``path`` or not yet placed) a free backup spelling.

        It stays in the same directory, so the directory's row list is unchanged.
        """
        number = self._next_backup.get(path, 1)   # thousands of clashes stay linear
        while True:
            candidate = backup_spelling(path, number)
            number += 1
            if candidate not in self.paths and candidate not in self.dirs:
                break
        self._next_backup[path] = number
        if self.paths.get(path) == row:
            del self.paths[path]
            self.paths[candidate] = row
        self.table.names[row] = candidate
        self.table.relocate[row] = 1
        self.table.touch(row)
        return candidate

    def _take_name(self, dir_path: str, parent: DirNode, base: str) -> None:
        """A file standing where a directory is needed yields its name."""
        clash = self.paths.get(dir_path)
        if clash is not None and not stat.S_ISDIR(self.table.mode[clash]):
            self._respell(clash, dir_path)     # a directory takes the name from a file

    def _attach_file(self, path: str, row: int) -> None:
        parent = self.ensure_dir(path.rpartition("/")[0])
        parent.files.append(row)
        parent.live += 1
        self.paths[path] = row

    def _detach_file(self, path: str, row: int) -> None:
        del self.paths[path]
        node = self.dirs[path.rpartition("/")[0]]
        node.live -= 1
        if len(node.files) > 64 and len(node.files) > 4 * node.live:
            self._prune(node, exclude=row)

    def _prune(self, node: DirNode, exclude: int) -> None:
        dead = self.table.dead
        node.files = array("q", (r for r in node.files if not dead[r] and r != exclude))

    # -- queries ------------------------------------------------------------

    def lookup(self, path: str) -> Tuple[Optional[DirNode], int]:
        """(node, row) for a directory, (None, row) for a file, (None, -1) if absent."""
        node = self.dirs.get(path)
        if node is not None:
            return node, node.row
        return None, self.paths.get(path, -1)

    def children(self, path: str) -> List[Tuple[str, int]]:
        """(name, st_mode) of each child of directory ``path``.

        Built with ``map`` so the per-child work runs in C: a walk of a
        million-member archive lists every name once.
        """
        node = self.dirs[path]
        table = self.table
        prefix = path + "/" if path else ""
        out = [(name, table.mode[sub.row] if sub.row >= 0 else DIR_MODE)
               for name, sub in ((n, self.dirs[prefix + n]) for n in node.subdirs)]
        rows = node.files
        if node.live != len(rows):     # rows detached from a directory are dead
            dead = table.dead
            rows = [r for r in rows if not dead[r]]
        names = map(table.names.__getitem__, rows)
        if prefix:
            names = map(itemgetter(slice(len(prefix), None)), names)
        out.extend(zip(names, map(table.mode.__getitem__, rows)))
        return out

    def is_empty(self, path: str) -> bool:
        node = self.dirs[path]
        return not node.subdirs and node.live == 0

    # -- changes ------------------------------------------------------------

    def add_file(self, path: str, row: int) -> None:
        """Attach a new file row at ``path`` (the caller checked it is free)."""
        self._attach_file(path, row)

    def remove_file(self, path: str) -> int:
        row = self.paths[path]
        self._detach_file(path, row)
        self.table.dead[row] = 1
        return row

    def replace_file(self, path: str, row: int) -> None:
        """Put ``row`` at ``path`` where a file stands now; the old row dies."""
        old = self.paths[path]
        self._detach_file(path, old)
        self.table.dead[old] = 1
        self._attach_file(path, row)

    def add_dir(self, path: str, row: int) -> None:
        node = self.ensure_dir(path)
        node.row = row
        self.paths[path] = row


def _directory_rows(modes: array) -> List[int]:
    """Rows whose mode is a directory, found without a Python loop over all rows."""
    high = modes.tobytes()[1::2] if sys.byteorder == "little" else modes.tobytes()[0::2]
    return flagged_rows(high.translate(_IS_DIR_HIGH_BYTE))


_IS_DIR_HIGH_BYTE = bytes(1 if (b << 8) & 0o170000 == stat.S_IFDIR else 0 for b in range(256))
