"""The directory tree over a table of members, for any format.

``paths`` maps the path of every file, symlink and explicit directory entry
to its row; ``dirs`` maps every directory path (``""`` is the root) to a
``DirNode`` holding its children by name, so a listing needs no stat per
child. Directories that only member names imply have no row (-1).

The table is anything with ``names`` (list of str), ``mode`` (st_mode per
row) and ``dead`` (bytearray): rows are never moved, a dead row is simply
not in the tree.
"""

import stat
from array import array
from operator import itemgetter
from typing import Dict, List, Optional, Tuple

from archfs.errors import (
    DirectoryNotEmpty,
    InvalidMove,
    IsADirectory,
    NoSuchFile,
    NotADirectory,
)

DIR_MODE = stat.S_IFDIR | 0o755


class BaseTree:
    """What every format's tree does alike: ``dirs`` maps each directory path
    to a node with ``subdirs`` (names, in order) and ``row``; ``table.dead``
    marks rows that left the tree. A format says in ``_take_name`` what
    becomes of a non-directory standing where a directory is needed, and
    gives its node class as ``node_type``."""

    node_type: type
    table: object
    dirs: dict

    def subtree_dirs(self, path: str) -> List[str]:
        """Directory paths at and below ``path``, parents before children."""
        out = [path]
        i = 0
        while i < len(out):
            p = out[i]
            for name in self.dirs[p].subdirs:
                out.append(p + "/" + name if p else name)
            i += 1
        return out

    def ensure_dir(self, path: str):
        """The node of ``path``, creating it and its parents as implied dirs."""
        node = self.dirs.get(path)
        if node is not None:
            return node
        missing = [path]                   # iterative: names may have thousands of parts
        parent_path = path.rpartition("/")[0]
        while parent_path not in self.dirs:
            missing.append(parent_path)
            parent_path = parent_path.rpartition("/")[0]
        parent = self.dirs[parent_path]
        for dir_path in reversed(missing):
            base = dir_path.rpartition("/")[2]
            self._take_name(dir_path, parent, base)
            node = self.dirs[dir_path] = self.node_type()
            parent.subdirs[base] = None
            parent = node
        return node

    def file_row(self, path: str) -> int:
        """The row of the non-directory at ``path`` (else EISDIR or ENOENT)."""
        node, row = self.lookup(path)
        if node is not None:
            raise IsADirectory("%s: is a directory" % path)
        if row < 0:
            raise NoSuchFile("%s: no such file" % path)
        return row

    def check_rmdir(self, path: str) -> None:
        """rmdir(2)'s checks, the same for every format."""
        if path == "":
            raise InvalidMove("cannot remove the root directory")
        if path not in self.dirs:
            if path in self.paths:
                raise NotADirectory("%s: not a directory" % path)
            raise NoSuchFile("%s: no such directory" % path)
        if not self.is_empty(path):
            raise DirectoryNotEmpty("%s: directory not empty" % path)

    def rename_source(self, old: str, new: str):
        """rename(2)'s checks of the names, the same for every format: the
        (node, row) of ``old``."""
        if old == "" or new == "":
            raise InvalidMove("cannot rename the root directory")
        old_node, old_row = self.lookup(old)
        if old_node is None and old_row < 0:
            raise NoSuchFile("%s: no such file or directory" % old)
        return old_node, old_row

    def clear_rename_target(self, old: str, new: str, old_node, new_node, new_row: int) -> None:
        """rename(2)'s checks of what stands at ``new``; an empty directory
        there, which a directory may replace, is removed."""
        if old_node is None:
            if new_node is not None:
                raise IsADirectory("%s: is a directory" % new)
            return
        if new.startswith(old + "/"):
            raise InvalidMove("cannot move %s into itself" % old)
        if new_node is None and new_row >= 0:
            raise NotADirectory("%s: not a directory" % new)
        if new_node is not None:
            if not self.is_empty(new):
                raise DirectoryNotEmpty("%s: directory not empty" % new)
            self.remove_dir(new)

    def _take_name(self, dir_path: str, parent, base: str) -> None:
        """Make way for directory ``dir_path`` (``base`` in ``parent``)."""
        raise NotImplementedError

    def remove_dir(self, path: str) -> None:
        node = self.dirs.pop(path)
        if node.row >= 0:
            self.table.dead[node.row] = 1
            self.paths.pop(path, None)
        parent, _, base = path.rpartition("/")
        self.dirs[parent].subdirs.pop(base, None)


class DirNode:
    __slots__ = ("_files", "_saved", "subdirs", "row")

    def __init__(self, row: int = -1):
        self._files: Dict[str, int] = {}      # name -> row of a non-directory
        self._saved = None                    # (table, rows, cut) until first use
        self.subdirs: Dict[str, None] = {}    # names of subdirectories, in order
        self.row = row                        # explicit entry, or -1 if implied

    @property
    def files(self) -> Dict[str, int]:
        """name -> row of each non-directory child. A tree restored from a
        saved index builds a directory's dict when it is first used: a
        second mount then costs per directory, not per member."""
        saved = self._saved
        if saved is not None:
            table, rows, cut = saved
            if len(rows):             # (a loaded tar table splits its names now)
                names = table.names
                self._files = dict(zip(map(cut, map(names.__getitem__, rows)), rows))
            self._saved = None
        return self._files

    @files.setter
    def files(self, value: Dict[str, int]) -> None:
        self._files = value
        self._saved = None


class Tree(BaseTree):
    """The tree of a format whose later member simply takes a name (tar)."""

    node_type = DirNode

    def __init__(self, table):
        self.table = table
        self._paths: Optional[Dict[str, int]] = {}
        self.dirs: Dict[str, DirNode] = {"": DirNode()}

    @property
    def paths(self) -> Dict[str, int]:
        """path -> row of every file and explicit directory entry (built on
        first use after ``restore``: a mount that only reads never needs it)."""
        paths = self._paths
        if paths is None:
            paths = {}
            for dir_path, node in self.dirs.items():
                prefix = dir_path + "/" if dir_path else ""
                paths.update(zip([prefix + name for name in node.files], node.files.values()))
                if node.row >= 0:
                    paths[dir_path] = node.row
            self._paths = paths
        return paths

    @paths.setter
    def paths(self, value: Dict[str, int]) -> None:
        self._paths = value

    # -- saving and restoring (with a saved index) ------------------------------

    def export(self):
        """(directory paths, their rows, all file rows grouped by directory,
        how many per directory): flat, for a saved index."""
        dir_paths = list(self.dirs)
        dir_rows, order, counts = array("q"), array("q"), array("q")
        for path in dir_paths:
            node = self.dirs[path]
            dir_rows.append(node.row)
            order.extend(node.files.values())
            counts.append(len(node.files))
        return dir_paths, dir_rows, order, counts

    @classmethod
    def restore(cls, table, dir_paths, dir_rows, order, counts) -> "Tree":
        """The tree ``export`` described, built with loops that run in C."""
        if not len(dir_paths) == len(dir_rows) == len(counts) or sum(counts) != len(order):
            raise ValueError("saved tree is inconsistent")
        tree = cls(table)
        dirs = tree.dirs
        at = 0
        for path, row, count in zip(dir_paths, dir_rows, counts):
            node = dirs.get(path)
            if node is None:
                node = dirs[path] = DirNode()
            node.row = row
            rows = order[at:at + count]
            at += count
            node._files = {}
            node._saved = (table, rows, itemgetter(slice(len(path) + 1 if path else 0, None)))
        for path in dir_paths:
            if path:
                parent, _, base = path.rpartition("/")
                dirs[parent].subdirs[base] = None
        tree._paths = None
        return tree

    # -- queries ------------------------------------------------------------

    def lookup(self, path: str) -> Tuple[Optional[DirNode], int]:
        """(node, row) for a directory, (None, row) for a file, (None, -1) if absent."""
        node = self.dirs.get(path)
        if node is not None:
            return node, node.row
        parent, _, base = path.rpartition("/")
        parent_node = self.dirs.get(parent)
        if parent_node is None:
            return None, -1
        return None, parent_node.files.get(base, -1)

    def children(self, path: str) -> List[Tuple[str, int]]:
        """(name, st_mode) of each child of directory ``path``."""
        node = self.dirs[path]
        modes = self.table.mode
        prefix = path + "/" if path else ""
        dirs = self.dirs
        out = []
        for name in node.subdirs:
            row = dirs[prefix + name].row
            out.append((name, modes[row] if row >= 0 else DIR_MODE))
        out.extend(zip(node.files, map(modes.__getitem__, node.files.values())))
        return out

    def is_empty(self, path: str) -> bool:
        node = self.dirs[path]
        return not node.subdirs and not node.files

    # -- changes ------------------------------------------------------------

    def _take_name(self, dir_path: str, parent: "DirNode", base: str) -> None:
        """A file standing where a directory is needed dies: a directory always
        takes the name (the member that implies it came later, or it holds
        members)."""
        clash = parent.files.pop(base, None)
        if clash is not None:
            self.paths.pop(dir_path, None)
            self.table.dead[clash] = 1

    def put_file(self, path: str, row: int) -> int:
        """Place a non-directory row at ``path``; the row it replaces dies.

        Returns the replaced row or -1. A directory there keeps the name
        unless it is an empty one, which the file replaces (as tar does).
        """
        parent_path, _, base = path.rpartition("/")
        node = self.dirs.get(path)
        if node is not None:
            if node.subdirs or node.files:
                self.table.dead[row] = 1
                return -1
            self.remove_dir(path)
        parent = self.ensure_dir(parent_path)
        old = parent.files.get(base, -1)
        if old >= 0:
            self.table.dead[old] = 1
        parent.files[base] = row
        self.paths[path] = row
        return old

    def put_dir(self, path: str, row: int) -> None:
        """Give directory ``path`` an explicit entry (the later one wins)."""
        node = self.ensure_dir(path)
        if node.row >= 0 and node.row != row:
            self.table.dead[node.row] = 1
        node.row = row
        self.paths[path] = row

    def remove_file(self, path: str) -> int:
        row = self.paths.pop(path)
        parent_path, _, base = path.rpartition("/")
        del self.dirs[parent_path].files[base]
        self.table.dead[row] = 1
        return row
