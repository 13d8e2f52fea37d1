"""The change operations: appending new and replaced members, and the
in-memory changes (remove, rename, mkdir, chmod, utime, chown) that the
next commit makes durable. New members carry their unix attributes
(``UnixAttrs``: owner, atime, device number) in their headers."""

import logging
import os
import stat
import time
from typing import List, NamedTuple, Optional, Sequence, Tuple

from archfs.errors import (
    FileAlreadyExistsError,
    InvalidArgument,
    IsADirectory,
    NoSuchFile,
    NotADirectory,
)
from archfs.zipengine import format as fmt, writer
from archfs.zipengine.entries import NO_OWNER, NO_UNIX, UnixAttrs
from archfs.zipengine.names import is_valid_new_name
from archfs.zipengine.store.attributes import check_new_name
from archfs.zipengine.store.options import LOCAL_OVERHEAD

log = logging.getLogger("archfs.zip")


class BytesItem(NamedTuple):
    """One file for ``add_bytes_many``: what ``add_bytes`` takes."""

    path: str
    data: bytes
    mode: Optional[int] = None
    mtime_ns: Optional[int] = None
    owner: Optional[Tuple[int, int]] = None
    atime_ns: Optional[int] = None
    ctime_ns: Optional[int] = None


class Changes:
    """Part of ZipStore: every method that changes the archive's contents."""

    def _check_new_name(self, path: str) -> None:
        if path == "":
            raise IsADirectory("/: is the root directory")
        if not is_valid_new_name(path):
            check_new_name(path)
            raise InvalidArgument("%r: not a name a zip archive can hold" % path)

    def _check_parent(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        tree = self._tree
        while parent and parent not in tree.dirs:
            if parent in tree.paths:
                raise NotADirectory("%s: not a directory" % parent)
            parent = parent.rpartition("/")[0]

    def add_file(self, path: str, local_file: str, mode: Optional[int] = None,
                 mtime_ns: Optional[int] = None, replace: bool = True,
                 owner: Optional[Tuple[int, int]] = None, atime_ns: Optional[int] = None,
                 ctime_ns: Optional[int] = None) -> None:
        """Store a local file as ``path``, replacing a file of that name.
        ``owner`` (uid, gid) defaults to the replaced member's."""
        if mtime_ns is None:
            mtime_ns = os.stat(local_file).st_mtime_ns
        unix = self._unix_for(path, owner, atime_ns)
        self._store(path, mode, mtime_ns, replace, stat.S_IFREG,
                    lambda fd, at: writer.append_file(fd, at, path, local_file, mtime_ns,
                                                      self.options.level,
                                                      method=self.options.method, unix=unix),
                    unix, ctime_ns)

    def add_bytes(self, path: str, data: bytes, mode: Optional[int] = None,
                  mtime_ns: Optional[int] = None, replace: bool = True,
                  owner: Optional[Tuple[int, int]] = None, atime_ns: Optional[int] = None,
                  ctime_ns: Optional[int] = None) -> None:
        if mtime_ns is None:
            mtime_ns = time.time_ns()
        unix = self._unix_for(path, owner, atime_ns)
        self._store(path, mode, mtime_ns, replace, stat.S_IFREG,
                    lambda fd, at: writer.append_bytes(fd, at, path, data, mtime_ns,
                                                       self.options.level,
                                                       method=self.options.method, unix=unix),
                    unix, ctime_ns)

    def symlink(self, target: str, path: str, owner: Optional[Tuple[int, int]] = None) -> None:
        now = time.time_ns()
        data = target.encode("utf-8", "surrogateescape")
        unix = self._unix_for(path, owner or (NO_OWNER, NO_OWNER))
        self._store(path, 0o777, now, False, stat.S_IFLNK,
                    lambda fd, at: writer.append_bytes(fd, at, path, data, now, 0, unix=unix),
                    unix)

    def _store(self, path, mode, mtime_ns, replace, kind, append,
               unix: UnixAttrs = NO_UNIX, ctime_ns: Optional[int] = None) -> None:
        """Append a member of ``kind`` and put it at ``path`` (checked twice:
        before the append, and again once it is written, for races)."""
        self._check_writable()
        self._check_new_name(path)
        with self._meta:
            self._check_target(path, replace)
        with self._append:
            self._check_unchanged()
            written = self._appending(append)
            with self._meta:
                self._place(path, mode, mtime_ns, replace, kind, written, unix, ctime_ns)

    def _place(self, path, mode, mtime_ns, replace, kind, written: writer.Written,
               unix: UnixAttrs, ctime_ns: Optional[int]) -> None:
        """(caller holds _append and _meta) Put an appended member at ``path``,
        checking the target again (for races); if that fails the member is dead."""
        try:
            self._check_target(path, replace)
        except OSError:
            self._dead += written.end - written.offset
            raise
        old = self._tree.paths.get(path, -1)
        if mode is None:    # keep a replaced file's permissions, not a link's 0o777
            same_kind = old >= 0 and stat.S_IFMT(self._table.mode[old]) == kind
            mode = self._table.mode[old] & 0o7777 if same_kind else 0o644
        row = self._table.add(path, written.offset, written.csize, written.usize,
                              written.crc, written.method, written.flags, mtime_ns,
                              kind | (mode & 0o7777))
        self._table.set_unix(row, unix)
        if ctime_ns is not None:
            self._table.set_ctime(row, max(ctime_ns, mtime_ns))
        if old >= 0:
            self._dead += LOCAL_OVERHEAD + self._table.csize[old]
            self._tree.replace_file(path, row)
        else:
            self._tree.add_file(path, row)
        self._dirty = True

    def add_bytes_many(self, items: Sequence[BytesItem]) -> List[Optional[OSError]]:
        """Store several in-memory files (``BytesItem``s, each as
        ``add_bytes`` would, replacing a file of that name) with one append:
        one check for another program's change and one write for all, where
        ``add_bytes`` costs both per file. Returns, per item, None when it
        was stored or the error that refused it (a bad name or target refuses
        that item alone; a failed write refuses them all)."""
        self._check_writable()
        results: List[Optional[OSError]] = [None] * len(items)
        todo = []
        for i, item in enumerate(items):
            try:
                self._check_new_name(item.path)
                with self._meta:
                    self._check_target(item.path, True)
            except OSError as exc:
                results[i] = exc
                continue
            mtime_ns = time.time_ns() if item.mtime_ns is None else item.mtime_ns
            todo.append((i, mtime_ns, self._unix_for(item.path, item.owner, item.atime_ns)))
        if not todo:
            return results
        level, method = self.options.level, self.options.method
        encoded = [writer.encode_member(items[i].path, items[i].data, mtime_ns, level,
                                        method=method, unix=unix)
                   for i, mtime_ns, unix in todo]
        written: List[writer.Written] = []

        def append(fd, at):
            written.extend(writer.append_encoded(fd, at, encoded))
            return written[-1]      # its end is the batch's end
        with self._append:
            self._check_unchanged()
            self._appending(append)
            with self._meta:
                for (i, mtime_ns, unix), member in zip(todo, written):
                    item = items[i]
                    try:
                        self._place(item.path, item.mode, mtime_ns, True, stat.S_IFREG,
                                    member, unix, item.ctime_ns)
                    except OSError as exc:
                        results[i] = exc
        return results

    def _check_target(self, path: str, replace: bool) -> None:
        node, row = self._tree.lookup(path)
        if node is not None or row >= 0:
            if not replace:
                raise FileAlreadyExistsError("%s: file exists" % (path or "/"))
            if node is not None:
                raise IsADirectory("%s: is a directory" % (path or "/"))
        self._check_parent(path)

    def _appending(self, append) -> writer.Written:
        """Run an append at the end; on failure cut the partial bytes off again."""
        fd = self._file
        try:
            written = append(fd, self._end)
        except BaseException:
            try:
                fd.truncate(self._end)
            except OSError:
                log.exception("%s: could not cut off a failed append", self.path)
            self._remember_identity()
            raise
        self._end = written.end
        self._remember_identity()
        return written

    def mkdir(self, path: str, mode: int = 0o755,
              owner: Optional[Tuple[int, int]] = None) -> None:
        """Create a directory; its parent must exist (as with mkdir(2))."""
        self._check_writable()
        with self._meta:
            if path in self._tree.dirs or path in self._tree.paths:
                raise FileAlreadyExistsError("%s: file exists" % (path or "/"))
        self._check_new_name(path)
        with self._meta:
            self._check_parent(path)
            parent = path.rpartition("/")[0]
            if parent not in self._tree.dirs:
                raise NoSuchFile("%s: no such directory" % parent)
        self._add_dir_entry(path, mode, time.time_ns(), must_be_new=True,
                            unix=self._unix_for(path, owner or (NO_OWNER, NO_OWNER)))

    def _add_dir_entry(self, path: str, mode: int, mtime_ns: int, must_be_new: bool,
                       unix: UnixAttrs = NO_UNIX, ctime_ns: Optional[int] = None) -> None:
        with self._append:
            self._check_unchanged()
            written = self._appending(lambda fd, at: writer.append_bytes(
                fd, at, path, b"", mtime_ns, 0, is_dir=True, unix=unix))
            with self._meta:
                node = self._tree.dirs.get(path)
                if (must_be_new and (node is not None or path in self._tree.paths)) or (
                        not must_be_new and node is None):
                    self._dead += written.end - written.offset
                    raise FileAlreadyExistsError("%s: file exists" % path)
                row = self._table.add(path, written.offset, 0, 0, 0, fmt.STORED, written.flags,
                                      mtime_ns, stat.S_IFDIR | (mode & 0o7777))
                self._table.set_unix(row, unix)
                if ctime_ns is not None:
                    self._table.set_ctime(row, ctime_ns)
                if node is not None and node.row >= 0:
                    self._table.dead[node.row] = 1
                self._tree.add_dir(path, row)
                self._dirty = True

    def remove(self, path: str) -> None:
        self._check_writable()
        with self._meta:
            row = self._file_row(path)
            self._tree.remove_file(path)
            self._dead += LOCAL_OVERHEAD + self._table.csize[row]
            self._dirty = True

    def rmdir(self, path: str) -> None:
        self._check_writable()
        with self._meta:
            self._tree.check_rmdir(path)
            self._tree.remove_dir(path)
            self._dirs_removed = True
            self._dirty = True

    def rename(self, old: str, new: str) -> None:
        """rename(2) semantics for files, symlinks and whole directories."""
        self._check_writable()
        self._check_new_name(new)
        with self._meta:
            tree, table = self._tree, self._table
            old_node, old_row = tree.rename_source(old, new)
            if old == new:
                return
            self._check_parent(new)
            if new.rpartition("/")[0] not in tree.dirs:
                raise NoSuchFile("%s: no such directory" % new.rpartition("/")[0])
            new_node, new_row = tree.lookup(new)
            tree.clear_rename_target(old, new, old_node, new_node, new_row)
            if old_node is not None:
                self._move_dir(old, new)
            else:
                moved = table.copy_as(old_row, new)
                table.set_ctime(moved, time.time_ns())
                tree.remove_file(old)
                if new_row >= 0:
                    self._dead += LOCAL_OVERHEAD + table.csize[new_row]
                    tree.replace_file(new, moved)
                else:
                    tree.add_file(new, moved)
            self._dirty = True

    def _move_dir(self, old: str, new: str) -> None:
        self._dirs_removed = True
        tree, table = self._tree, self._table
        cut = len(old)
        moves = []
        for dir_path in tree.subtree_dirs(old):
            node = tree.dirs[dir_path]
            files = [r for r in node.files if not table.dead[r]]
            moves.append((dir_path, node.row, files))
        for dir_path, _row, _files in reversed(moves):
            for r in _files:
                tree.remove_file(table.names[r])
            tree.dirs.pop(dir_path)
            tree.paths.pop(dir_path, None)
        parent, _, base = old.rpartition("/")
        tree.dirs[parent].subdirs.pop(base, None)
        for dir_path, row, files in moves:
            target = new + dir_path[cut:]
            if row >= 0:
                moved = table.copy_as(row, target)
                if dir_path == old:
                    table.set_ctime(moved, time.time_ns())
                tree.add_dir(target, moved)
                table.dead[row] = 1
            else:
                tree.ensure_dir(target)
            for r in files:
                name = target + table.names[r][len(dir_path):]
                moved = table.copy_as(r, name)
                tree.add_file(name, moved)
