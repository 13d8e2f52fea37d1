"""The tar writer's changes that appending cannot say (removal, rename,
rmdir), made in the table only until the commit rewrites the archive
(``rewriting``), and chmod or touch, which append a copy of the member.
Apart from ``writer`` so that appending and renaming each read alone."""

import stat
import time
from typing import Optional

from archfs.errors import NoSuchFile, NotSupported
from archfs.tarengine.headers import TYPEFLAGS


class NameChanges:
    """Part of ``TarWriter``: removal, rename, rmdir, chmod and touch."""

    def remove(self, path: str) -> None:
        self._check_writable()
        with self._meta:
            self._file_row(path)
            self._tree.remove_file(path)
            self._count_links()
            self._rewrite = self._dirty = True

    def rmdir(self, path: str) -> None:
        self._check_writable()
        with self._meta:
            self._tree.check_rmdir(path)
            explicit = self._tree.dirs[path].row >= 0
            self._tree.remove_dir(path)
            if explicit:
                self._rewrite = self._dirty = True

    def rename(self, old: str, new: str) -> None:
        self._check_writable()
        self._check_new_name(new)
        with self._meta:
            tree, t = self._tree, self.table
            old_node, old_row = tree.rename_source(old, new)
            if old == new:
                return
            moving = [old_row] if old_node is None else [
                r for d in tree.subtree_dirs(old) for r in tree.dirs[d].files.values()]
            if any(t.target(r) in t.sparse for r in moving):
                raise NotSupported("%s: renaming a sparse file is not supported "
                                   "(copy it instead)" % old)
            self._check_parent(new)
            new_node, new_row = tree.lookup(new)
            tree.clear_rename_target(old, new, old_node, new_node, new_row)
            if old_node is not None:
                self._move_dir(old, new)
            else:
                moved = self._copy_row(old_row, new)
                tree.remove_file(old)
                tree.put_file(new, moved)
            self._count_links()
            self._rewrite = self._dirty = True

    def _copy_row(self, row: int, name: str) -> int:
        """A new row for member ``row`` under another name (its data stays put)."""
        t = self.table
        new = t.add(name, t.header[row], t.data[row], t.size[row], t.usize[row],
                    t.mtime_ns[row], t.mode[row], t.uid[row], t.gid[row])
        for column in (t.links, t.rdev, t.sparse, t.xattrs, t.bad):
            if row in column:
                column[new] = column[row]
        if row in t.hardlink:
            t.hardlink[new] = t.hardlink[row]
        for link, target in list(t.hardlink.items()):
            if target == row:
                t.hardlink[link] = new
        self._renamed[new] = True
        t.dead[row] = 1
        return new

    def _move_dir(self, old: str, new: str) -> None:
        tree = self._tree
        cut = len(old)
        moves = []
        for dir_path in tree.subtree_dirs(old):
            node = tree.dirs[dir_path]
            moves.append((dir_path, node.row, dict(node.files)))
        for dir_path, _row, files in reversed(moves):
            for name in files:
                tree.remove_file(dir_path + "/" + name)
            tree.remove_dir(dir_path)
        for dir_path, row, files in moves:
            target = new + dir_path[cut:]
            if row >= 0:
                tree.put_dir(target, self._copy_row(row, target))
            else:
                tree.ensure_dir(target)
            for name, file_row in files.items():
                path = target + "/" + name
                tree.put_file(path, self._copy_row(file_row, path))

    def chmod(self, path: str, mode: int) -> None:
        self._change(path, mode=mode & 0o7777)

    def utime(self, path: str, mtime_ns: int) -> None:
        self._change(path, mtime_ns=mtime_ns)

    def _change(self, path: str, mode: Optional[int] = None,
                mtime_ns: Optional[int] = None) -> None:
        """A new header for a member: appended with a copy of its data."""
        self._check_writable()
        t = self.table
        with self._meta:
            node, row = self._tree.lookup(path)
            if node is None and row < 0:
                raise NoSuchFile("%s: no such file or directory" % path)
            if path == "":
                return          # a tar has no entry for its root
            if row < 0:         # an implied directory: give it an entry
                new_mode = 0o755 if mode is None else mode
                new_time = time.time_ns() if mtime_ns is None else mtime_ns
                kind, size, source, linkname = stat.S_IFDIR, 0, b"", ""
                xattrs, rdev = None, 0
            else:
                target = t.target(row)
                kind = stat.S_IFMT(t.mode[target])
                new_mode = t.mode[target] & 0o7777 if mode is None else mode
                new_time = t.mtime_ns[target] if mtime_ns is None else mtime_ns
                if (new_mode, new_time) == (t.mode[target] & 0o7777, t.mtime_ns[target]):
                    return
                if kind not in TYPEFLAGS or target in t.sparse or target in t.bad:
                    raise NotSupported("%s: cannot change this kind of member" % path)
                size = t.size[target] if kind == stat.S_IFREG else 0
                source = self._data_source(target) if size else b""
                linkname = t.links.get(row, "") if kind == stat.S_IFLNK else ""
                xattrs = t.xattrs.get(target)
                rdev = t.rdev.get(target, 0)
        if kind == stat.S_IFDIR:
            self._add(path, kind, new_mode, new_time, b"", 0, xattrs=xattrs)
            return
        self._add(path, kind, new_mode, new_time, source, size, linkname=linkname,
                  xattrs=xattrs, rdev=rdev)

