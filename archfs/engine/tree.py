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
from typing import Dict, List, Optional, Tuple

DIR_MODE = stat.S_IFDIR | 0o755


class DirNode:
    __slots__ = ("files", "subdirs", "row")

    def __init__(self, row: int = -1):
        self.files: Dict[str, int] = {}       # name -> row of a non-directory
        self.subdirs: Dict[str, None] = {}    # names of subdirectories, in order
        self.row = row                        # explicit entry, or -1 if implied


class Tree:
    def __init__(self, table):
        self.table = table
        self.paths: Dict[str, int] = {}
        self.dirs: Dict[str, DirNode] = {"": DirNode()}

    # -- queries ------------------------------------------------------------

    def lookup(self, path: str) -> Tuple[Optional[DirNode], int]:
        """(node, row) for a directory, (None, row) for a file, (None, -1) if absent."""
        node = self.dirs.get(path)
        if node is not None:
            return node, node.row
        return None, self.paths.get(path, -1)

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

    # -- changes ------------------------------------------------------------

    def ensure_dir(self, path: str) -> DirNode:
        """The node of ``path``, creating it and its parents as implied dirs.

        A file standing where a directory is needed dies: a directory always
        takes the name (the member that implies it came later, or it holds
        members).
        """
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
            clash = parent.files.pop(base, None)
            if clash is not None:
                self.paths.pop(dir_path, None)
                self.table.dead[clash] = 1
            node = self.dirs[dir_path] = DirNode()
            parent.subdirs[base] = None
            parent = node
        return node

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

    def remove_dir(self, path: str) -> None:
        node = self.dirs.pop(path)
        if node.row >= 0:
            self.table.dead[node.row] = 1
            self.paths.pop(path, None)
        parent, _, base = path.rpartition("/")
        self.dirs[parent].subdirs.pop(base, None)
