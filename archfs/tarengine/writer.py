"""Writing a plain tar in place, crash-safe; ``open_store`` picks reader or writer.

On-disk protocol
----------------
A committed archive is ``[members][end-of-archive: zero blocks to a 10 KiB
record]``; ``end`` is where its first zero block (the EOA) starts.

1. A new or replaced file, a directory, a symlink or a hard link is written
   at once after the members already appended, starting at ``end``, with one
   exception: the first block written at ``end`` (a header) is held in memory.
   The block at ``end`` stays zero, so every tar reader still stops there and
   sees the committed archive, whatever was appended after it.
2. ``commit()`` writes a fresh EOA after the last appended member, syncs,
   then writes the held block at ``end`` and syncs again. That one 512-byte
   block is the commit: before it the old archive stands, after it the new
   one, ending in a valid EOA. A replaced member stays in the file as an
   older version (GNU tar's "last one wins"; the mount shows the newest).
3. Removal, rename and rmdir cannot be said by appending: they change only
   the table until the commit, which then rewrites the archive from the
   first member that changed (``tailrewrite.py``: the new tail through an
   intent file beside it, so the cost is that of what follows the change),
   or, when that tail is most of the archive or a member in it is open for
   reading, writes the whole archive anew beside the old one (survivors
   copied with ``copy_file_range``, renamed members under new headers, no
   dead versions), syncs it, renames it over the archive and syncs the
   directory. Either way one commit pays this once however many removals it
   holds, and the dead versions of replaced members after that point go. A
   chmod or touch of a committed member appends a copy of it with the new
   header (cost: its size).
4. A crash before a commit's second sync leaves the old archive followed by
   a lone zero block and unfinished appends: readers stop at the zero block;
   the next read-write mount (or ``archfs repair``) zeroes and cuts the tail.
5. Another program changing the file is noticed before every write (inode,
   size, mtime); writes are then refused (ArchiveChangedError).
"""

import logging
import os
import stat
import threading
import time
from typing import Optional

from archfs.engine import compressed, indexcache
from archfs.engine.changeguard import ChangeGuard
from archfs.engine.compressed import PlainStream
from archfs.engine.fileaccess import ArchiveFile, fsync_dir, lock_for_writing
from archfs.engine.tree import DIR_MODE
from archfs.errors import (
    CorruptArchiveError,
    DirectoryNotEmpty,
    FileAlreadyExistsError,
    InvalidArgument,
    InvalidMove,
    IsADirectory,
    NoSuchFile,
    NotADirectory,
    NotSupported,
)
from archfs.tarengine import headers as hd
from archfs.tarengine import tailrewrite
from archfs.tarengine.names import encode, is_valid_new_name
from archfs.tarengine.store import INDEX_VERSION, StoreOptions, TarStore

log = logging.getLogger("archfs.tar")

COPY_CHUNK = 1 << 20
# the kinds of member written here (a hard link is a 0 turned into a 1)
_TYPEFLAGS = {stat.S_IFREG: b"0", stat.S_IFDIR: b"5", stat.S_IFLNK: b"2",
              stat.S_IFCHR: b"3", stat.S_IFBLK: b"4", stat.S_IFIFO: b"6"}


def open_store(path: str, writable: bool, progress=None, index_cache: bool = True,
               level: int = 6, transport=None):
    """``transport``: a remote archive's (``archfs.engine.transports``), read-only."""
    options = StoreOptions(progress=progress, index_cache=index_cache)
    if transport is None:
        tailrewrite.apply_pending(path)     # a rewrite a crash interrupted, before any read
    if not writable:
        return TarStore(path, False, options, transport)
    if not os.path.exists(path):
        _create_empty(path)
    with open(path, "rb") as f:
        kind = compressed.detect(f.read(8))
    if kind is not None:
        from archfs.tarengine.recompress import CompressedTarWriter
        return CompressedTarWriter(path, options, kind, level)
    return TarWriter(path, options)


def _create_empty(path: str) -> None:
    """A new archive: a plain tar is one record of zeros (as GNU tar makes
    it); a compressed one by its suffix is that record, compressed."""
    from archfs.tarengine.recompress import empty_archive_bytes
    data = empty_archive_bytes(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path)
    log.info("created new archive %s", path)


class TarWriter(ChangeGuard, TarStore):
    """A plain tar opened read-write (see the module docstring)."""

    _log = log

    def __init__(self, path: str, options: StoreOptions):
        super().__init__(path, True, options)
        self._append = threading.Lock()
        self._broken: Optional[str] = None
        self._held: Optional[bytes] = None      # the first block at ``end``, until commit
        self._tail = self.end                   # where the next append goes
        self._rewrite = False                   # a removal or rename waits for the commit
        self._dirty = False
        self._renamed = {}                      # rows whose header must be rebuilt
        self._committed = False                 # a commit changed the file since opening
        try:
            lock_for_writing(self._file)
            if not self.writable_reason():
                self._recover()
        except BaseException:
            self.close()
            raise
        self._remember_identity()

    # -- opening ----------------------------------------------------------------

    def writable_reason(self) -> Optional[str]:
        """Why this archive must not be written (mounted read-only instead)."""
        if self.single:
            self.writable = False
            log.warning("%s: a lone compressed file is mounted read-only (writing would "
                        "turn it into a tar)", self.path)
            return "a lone compressed file"
        if self.scan_problem:
            self.writable = False
            log.warning("%s: mounted read-only: %s; 'archfs repair' makes it writable",
                        self.path, self.scan_problem)
            return self.scan_problem
        return None

    def _recover(self) -> None:
        """Zero and cut what an interrupted commit left after the EOA."""
        size = self._file.size()
        end = self.end
        after = self._file.pread(hd.BLOCK, end + hd.BLOCK)
        if after and not hd.is_zero(after):
            log.warning("%s: recovered: dropped %d bytes of an unfinished commit",
                        self.path, size - end)
            self._write_eoa(end)
            self._file.sync()
            return
        if size < end + 2 * hd.BLOCK:       # no full EOA (a stream cut after its last member)
            self._write_eoa(end)
            self._file.sync()

    def _write_eoa(self, at: int) -> int:
        """Zero blocks from ``at`` to a whole record (two at least); cuts the
        file there. Returns the new file size."""
        stop = -(-(at + 2 * hd.BLOCK) // hd.RECORD) * hd.RECORD
        self._file.pwrite(bytes(stop - at), at)
        if self._file.size() != stop:
            self._file.truncate(stop)
        return stop

    # -- appending ----------------------------------------------------------------

    def _check_new_name(self, path: str) -> None:
        if path == "":
            raise IsADirectory("/: is the root directory")
        if not is_valid_new_name(path):
            raise InvalidArgument("%r: not a name a tar archive can hold" % path)

    def _check_parent(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        tree = self._tree
        if parent in tree.dirs:
            return
        while parent and parent not in tree.dirs:
            if parent in tree.paths:
                raise NotADirectory("%s: not a directory" % parent)
            parent = parent.rpartition("/")[0]
        raise NoSuchFile("%s: no such directory" % path.rpartition("/")[0])

    def _write_member(self, headers: bytes, source, size: int) -> int:
        """Append header blocks and data at the tail; returns the header offset.

        ``source`` is a path, bytes, or (file, offset) to copy from."""
        at = self._tail
        pos = at
        try:
            if at == self.end and self._held is None:
                self._held = headers[:hd.BLOCK]
                pos = self._file.pwrite(headers[hd.BLOCK:], at + hd.BLOCK)
            else:
                pos = self._file.pwrite(headers, at)
            pos = self._copy_data(source, size, pos)
            pos = self._file.pwrite(bytes(hd.padding(size)), pos)
        except BaseException:
            if at == self.end:
                self._held = None
            self._remember_identity()
            raise
        self._tail = pos
        self._remember_identity()
        return at

    def _copy_data(self, source, size: int, pos: int) -> int:
        if size == 0:
            return pos
        if isinstance(source, (bytes, bytearray)):
            return self._file.pwrite(source, pos)
        if isinstance(source, str):
            with open(source, "rb") as f:
                done = 0
                while done < size:
                    chunk = f.read(min(COPY_CHUNK, size - done))
                    if not chunk:
                        raise OSError("%s: shorter than expected" % source)
                    pos = self._file.pwrite(chunk, pos)
                    done += len(chunk)
            return pos
        file, offset = source
        done = 0
        while done < size:
            n = os.copy_file_range(file.fd, self._file.fd, size - done, offset + done, pos)
            if n <= 0:
                raise OSError("copy_file_range copied nothing")
            done += n
            pos += n
        return pos

    def _add(self, path: str, kind: int, mode: int, mtime_ns: int, source, size: int,
             linkname: str = "", replace: bool = True, uid: Optional[int] = None,
             gid: Optional[int] = None, xattrs=None, rdev: int = 0) -> int:
        """Append one member and put it in the tree (checked before and after)."""
        self._check_writable()
        self._check_new_name(path)
        with self._meta:
            self._check_target(path, replace, kind)
        typeflag = _TYPEFLAGS.get(kind, b"0")
        if linkname and kind == stat.S_IFREG:
            typeflag = hd.HARDLINK
        uid = os.getuid() if uid is None else uid
        gid = os.getgid() if gid is None else gid
        extra = {"SCHILY.xattr." + n: v for n, v in (xattrs or ())}
        name = encode(path) + (b"/" if kind == stat.S_IFDIR else b"")
        device = rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0
        headers = hd.member_headers(name, mode, uid, gid, 0 if typeflag == hd.HARDLINK else size,
                                    mtime_ns, typeflag, encode(linkname),
                                    devmajor=os.major(device), devminor=os.minor(device),
                                    extra=extra)
        with self._append:
            self._check_unchanged()
            at = self._write_member(headers, source, 0 if typeflag == hd.HARDLINK else size)
            data = at + len(headers)
            with self._meta:
                t = self.table
                try:
                    self._check_target(path, replace, kind)
                except OSError:
                    self._rewrite = True       # the bytes are appended: drop them with a rewrite
                    raise
                shown = len(encode(linkname)) if kind == stat.S_IFLNK else size
                row = t.add(path, at, data, size if typeflag != hd.HARDLINK else 0, shown,
                            mtime_ns, kind | (mode & 0o7777), uid, gid)
                if xattrs:
                    t.xattrs[row] = list(xattrs)
                if device:
                    t.rdev[row] = device
                if kind == stat.S_IFLNK:
                    t.links[row] = linkname
                elif typeflag == hd.HARDLINK:
                    t.links[row] = linkname
                    target = self._tree.paths[linkname]
                    t.hardlink[row] = t.target(target)
                if kind == stat.S_IFDIR:
                    self._tree.put_dir(path, row)
                else:
                    old = self._tree.paths.get(path, -1)
                    self._tree.put_file(path, row)
                    if old >= 0 and old in t.hardlink.values():
                        pass
                self._count_links()
                self._dirty = True
                return row

    def _data_source(self, row: int):
        """Where ``_copy_data`` finds a member's stored bytes."""
        return (self._file, self.table.data[row])

    def _check_target(self, path: str, replace: bool, kind: int) -> None:
        node, row = self._tree.lookup(path)
        if node is not None or row >= 0:
            if kind == stat.S_IFDIR and node is not None and row < 0:
                return          # an implied directory gets its explicit entry
            if not replace:
                raise FileAlreadyExistsError("%s: file exists" % (path or "/"))
            if node is not None:
                raise IsADirectory("%s: is a directory" % (path or "/"))
        self._check_parent(path)

    def add_file(self, path: str, local_file: str, mode: Optional[int] = None,
                 mtime_ns: Optional[int] = None, replace: bool = True) -> None:
        st = os.stat(local_file)
        self._add(path, stat.S_IFREG, self._mode_for(path, mode), 
                  st.st_mtime_ns if mtime_ns is None else mtime_ns, local_file, st.st_size,
                  replace=replace)

    def add_bytes(self, path: str, data: bytes, mode: Optional[int] = None,
                  mtime_ns: Optional[int] = None, replace: bool = True) -> None:
        self._add(path, stat.S_IFREG, self._mode_for(path, mode),
                  time.time_ns() if mtime_ns is None else mtime_ns, data, len(data),
                  replace=replace)

    def _mode_for(self, path: str, mode: Optional[int]) -> int:
        if mode is not None:
            return mode & 0o7777
        with self._meta:
            row = self._tree.paths.get(path, -1)
            if row >= 0 and stat.S_ISREG(self.table.mode[row]):
                return self.table.mode[row] & 0o7777
        return 0o644

    def symlink(self, target: str, path: str) -> None:
        self._add(path, stat.S_IFLNK, 0o777, time.time_ns(), b"", 0, linkname=target,
                  replace=False)

    def link(self, target: str, path: str) -> None:
        with self._meta:
            row = self._file_row(target)
            t = self.table
            data_row = t.target(row)
            if not stat.S_ISREG(t.mode[data_row]):
                raise NotSupported("%s: only regular files can be hard-linked here" % target)
            mode, mtime = t.mode[data_row], t.mtime_ns[data_row]
            uid, gid = t.uid[data_row], t.gid[data_row]
        self._add(path, stat.S_IFREG, mode & 0o7777, mtime, b"", 0, linkname=target,
                  replace=False, uid=uid, gid=gid)

    def mknod(self, path: str, mode: int, rdev: int = 0) -> None:
        """A FIFO or a character or block device (``mode`` has the type); a
        tar has no type for sockets."""
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFSOCK:
            raise NotSupported("%s: a tar archive cannot hold a socket" % path)
        if kind not in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK):
            raise InvalidArgument("%s: mknod makes FIFOs and devices only" % path)
        if rdev and (os.major(rdev) >= 8 ** 7 or os.minor(rdev) >= 8 ** 7):
            raise InvalidArgument("%s: device number %d:%d is too big for a tar header"
                                  % (path, os.major(rdev), os.minor(rdev)))
        self._add(path, kind, mode & 0o7777, time.time_ns(), b"", 0, replace=False,
                  rdev=rdev)

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        with self._meta:
            if path in self._tree.dirs or path in self._tree.paths:
                raise FileAlreadyExistsError("%s: file exists" % (path or "/"))
        self._add(path, stat.S_IFDIR, mode & 0o7777, time.time_ns(), b"", 0, replace=False)

    # -- changes that need a rewrite ----------------------------------------------

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
            if path == "":
                raise InvalidMove("cannot remove the root directory")
            if path not in self._tree.dirs:
                if path in self._tree.paths:
                    raise NotADirectory("%s: not a directory" % path)
                raise NoSuchFile("%s: no such directory" % path)
            if not self._tree.is_empty(path):
                raise DirectoryNotEmpty("%s: directory not empty" % path)
            explicit = self._tree.dirs[path].row >= 0
            self._tree.remove_dir(path)
            if explicit:
                self._rewrite = self._dirty = True

    def rename(self, old: str, new: str) -> None:
        self._check_writable()
        self._check_new_name(new)
        with self._meta:
            tree, t = self._tree, self.table
            if old == "" or new == "":
                raise InvalidMove("cannot rename the root directory")
            old_node, old_row = tree.lookup(old)
            if old_node is None and old_row < 0:
                raise NoSuchFile("%s: no such file or directory" % old)
            if old == new:
                return
            moving = [old_row] if old_node is None else [
                r for d in tree.subtree_dirs(old) for r in tree.dirs[d].files.values()]
            if any(t.target(r) in t.sparse for r in moving):
                raise NotSupported("%s: renaming a sparse file is not supported "
                                   "(copy it instead)" % old)
            self._check_parent(new)
            new_node, new_row = tree.lookup(new)
            if old_node is not None:
                if new.startswith(old + "/"):
                    raise InvalidMove("cannot move %s into itself" % old)
                if new_node is None and new_row >= 0:
                    raise NotADirectory("%s: not a directory" % new)
                if new_node is not None:
                    if not tree.is_empty(new):
                        raise DirectoryNotEmpty("%s: directory not empty" % new)
                    tree.remove_dir(new)
                self._move_dir(old, new)
            else:
                if new_node is not None:
                    raise IsADirectory("%s: is a directory" % new)
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
                if kind not in _TYPEFLAGS or target in t.sparse or target in t.bad:
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

    # -- commit ---------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self._dirty

    def commit(self) -> bool:
        """Make every change durable (see the protocol); False if nothing to do."""
        self._check_writable()
        with self._append:
            if not self._dirty:
                return False
            self._check_unchanged()
            if self._rewrite:
                self._rewrite_archive()
            else:
                self._commit_appends()
            self._committed = True
            return True

    def _commit_appends(self) -> None:
        with self._meta:
            self._dirty = False
        tail = self._tail
        try:
            self._write_eoa(tail)
            self._file.sync()
            if self._held is not None:
                self._file.pwrite(self._held, self.end)
                self._file.sync()
        except BaseException:
            self._dirty = True
            self._remember_identity()
            raise
        self._held = None
        self.end = self._tail = tail
        self._remember_identity()

    def _rewrite_archive(self) -> None:
        """From the first changed member on, or the whole archive beside it."""
        with self._meta:
            plan = self._tail_plan()
            if plan is not None:
                self._rewrite_tail(*plan)
                return
        self._rewrite_whole()

    def _tail_plan(self):
        """(P, rows from P on, empty implied dirs, names of the hard-link
        targets before P) when rewriting from P costs less than the whole
        archive and no reader has a member after P open; else None."""
        t = self.table
        rows = self._rows_to_keep()
        keep = set(rows)
        start = self.end
        unchanged = {}
        for row in sorted((r for r in range(len(t)) if t.header[r] < self.end),
                          key=lambda r: (t.header[r], r)):
            target = t.hardlink.get(row)
            if row not in keep or self._renamed.get(row) or not self._raw_ok(row) or (
                    target is not None and (target not in unchanged
                                            or t.links.get(row) != t.names[target])):
                start = t.header[row]
                break
            unchanged[row] = t.names[row]
        if (self._tail - start) * 2 > self._tail:
            return None                       # most of it: once beside beats twice in place
        if any(offset >= start for offset, count in self._reading.items() if count):
            return None
        tail_rows = [r for r in rows if t.header[r] >= start]
        empty_dirs = [p for p, node in self._tree.dirs.items()
                      if p and node.row < 0 and not node.subdirs and not node.files]
        return start, tail_rows, empty_dirs, unchanged

    def _rewrite_tail(self, start: int, rows, empty_dirs, unchanged) -> None:
        """(Under ``_meta``: no member may be opened while its bytes move.)"""
        self._dirty = False
        started = time.monotonic()
        placed = {}

        def fill(sink):
            placed.update(self._write_rows(sink, rows, empty_dirs, dict(unchanged)))
        try:
            tailrewrite.rewrite(self.path, self._file.fd, start, fill)
        except BaseException:
            self._dirty = True
            if os.path.exists(tailrewrite.intent_path(self.path)):
                # the new tail is safe in the intent file; the next open applies it
                self._broken = ("%s: a rewrite was interrupted; mount it again to finish "
                                "it" % self.path)
            self._remember_identity()
            raise
        t = self.table
        for row, (header, data) in placed.items():
            if row >= 0:
                t.header[row], t.data[row] = header, data
        for row in range(len(t)):
            if t.header[row] >= start and row not in placed:
                t.dead[row] = 1
        self._adopt_materialized()
        self._renamed.clear()
        self.end = self._tail = placed[-1][0]
        self._held = None
        self._rewrite = False
        self._remember_identity()
        log.info("rewrote %s from offset %d (%d members) in %.1f s", self.path, start,
                 len(placed) - 1, time.monotonic() - started)

    def _rewrite_whole(self) -> None:
        """Write the live members to a new file beside the archive and rename it over."""
        with self._meta:
            self._dirty = False
            rows = self._rows_to_keep()
            empty_dirs = [p for p, node in self._tree.dirs.items()
                          if p and node.row < 0 and not node.subdirs and not node.files]
        started = time.monotonic()
        directory = os.path.dirname(self.path)
        import tempfile     # (imported here: start-up cost of a mount)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(self.path)
                                   + ".archfs-rewrite-")
        try:
            os.fchmod(fd, stat.S_IMODE(os.fstat(self._file.fd).st_mode))
            placed = self._write_rows(_PlainSink(fd, self._file.fd), rows, empty_dirs)
            os.fsync(fd)
            os.rename(tmp, self.path)
            fsync_dir(self.path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            with self._meta:
                self._dirty = True
            raise
        os.close(fd)
        new_file = ArchiveFile(self.path, True)
        lock_for_writing(new_file)
        with self._meta:
            t = self.table
            for row, (header, data) in placed.items():
                if row >= 0:
                    t.header[row], t.data[row] = header, data
            keep = set(placed)
            for row in range(len(t)):
                if row not in keep:
                    t.dead[row] = 1
            self._adopt_materialized()
            self._renamed.clear()
            old_file, old_stream = self._file, self.stream
            self._file = new_file
            self.stream = PlainStream(new_file)
            self.end = self._tail = placed.get(-1, (0, 0))[0]
            self._held = None
            self._rewrite = False
        old_stream.release()
        old_file.release()
        self._remember_identity()
        log.info("rewrote %s (%d members) in %.1f s", self.path, len(placed) - 1,
                 time.monotonic() - started)

    def _rows_to_keep(self):
        """Live rows in archive order; a hard link whose file is gone becomes a file."""
        t = self.table
        live = sorted(set(self._tree.paths.values()), key=lambda r: (t.header[r], r))
        return live

    def _write_rows(self, sink, rows, empty_dirs, written_data=None):
        """Write members through ``sink``; returns {row: (header, data)} and {-1: (end, 0)}.
        ``written_data``: data row -> name of members already in place before ``rows``."""
        t = self.table
        placed = {}
        progress = self.options.progress
        written_data = {} if written_data is None else written_data   # hard link targets
        self._materialized = {}   # vanished target -> the link written as that file
        if progress is not None:
            total = max(1, self._tail)
            sink.progress = lambda: progress("rewriting", min(sink.pos, total), total)
        for i, row in enumerate(rows):
            target = t.target(row)
            kind = stat.S_IFMT(t.mode[target])
            is_link = row in t.hardlink
            name = t.names[row]
            start = sink.pos
            if is_link and target in written_data:
                headers = self._headers_for(row, name, hardlink_to=written_data[target])
                size = 0
            elif not is_link and not self._renamed.get(row) and self._raw_ok(row):
                # unchanged member: its header blocks and data, copied verbatim
                sink.copy(t.header[row], t.end_of(row) - t.header[row])
                placed[row] = (start, start + t.data[row] - t.header[row])
                written_data[row] = name
                continue
            else:
                headers = self._headers_for(row, name)
                size = t.size[target] if kind == stat.S_IFREG else 0
                if is_link:
                    self._materialized[target] = row
            sink.write(headers)
            if size:
                sink.copy(t.data[target], size)
                sink.write(bytes(hd.padding(size)))
            placed[row] = (start, start + len(headers))
            if not is_link or target not in written_data:
                written_data[target] = name
        for path in empty_dirs:
            sink.write(hd.member_headers(encode(path) + b"/", 0o755, os.getuid(),
                                         os.getgid(), 0, time.time_ns(), b"5"))
        placed[-1] = (sink.pos, 0)
        sink.finish()
        return placed

    def _adopt_materialized(self) -> None:
        """After a rewrite (under ``_meta``): a hard link that was written as
        the file its vanished target was is that file now, and the other
        links to that target link to it (else the next rewrite would copy
        the target's old offset, in a file where other bytes are now)."""
        t = self.table
        for target, row in getattr(self, "_materialized", {}).items():
            for column in (t.size, t.usize, t.mtime_ns, t.mode, t.uid, t.gid):
                column[row] = column[target]
            t.hardlink.pop(row, None)
            t.links.pop(row, None)
            for extra in (t.xattrs, t.rdev):
                if target in extra:
                    extra[row] = extra[target]
            for link, linked in list(t.hardlink.items()):
                if linked == target:
                    t.hardlink[link] = row
                    t.links[link] = t.names[row]
        self._materialized = {}
        self._count_links()

    def _raw_ok(self, row: int) -> bool:
        """Whether a member's bytes can be copied as they are (not the one whose
        first block is still held in memory)."""
        return not (self._held is not None and self.table.header[row] == self.end)

    def _headers_for(self, row: int, name: str, hardlink_to: Optional[str] = None) -> bytes:
        t = self.table
        target = t.target(row)
        kind = stat.S_IFMT(t.mode[target])
        typeflag = {stat.S_IFREG: b"0", stat.S_IFDIR: b"5", stat.S_IFLNK: b"2",
                    stat.S_IFCHR: b"3", stat.S_IFBLK: b"4", stat.S_IFIFO: b"6"}.get(kind, b"0")
        linkname = t.links.get(row, "") if kind == stat.S_IFLNK else ""
        size = t.size[target] if kind == stat.S_IFREG else 0
        if hardlink_to is not None:
            typeflag, linkname, size = hd.HARDLINK, hardlink_to, 0
        if target in t.sparse:
            raise NotSupported("%s: sparse members cannot be moved yet" % name)
        rdev = t.rdev.get(target, 0)
        extra = {"SCHILY.xattr." + n: v for n, v in t.xattrs.get(target, ())}
        return hd.member_headers(encode(name) + (b"/" if kind == stat.S_IFDIR else b""),
                                 t.mode[target] & 0o7777, t.uid[target], t.gid[target], size,
                                 t.mtime_ns[target], typeflag, encode(linkname),
                                 devmajor=os.major(rdev), devminor=os.minor(rdev), extra=extra)

    def compact(self) -> bool:
        """Rewrite the archive without older versions of replaced members."""
        self._check_writable()
        with self._append:
            self._check_unchanged()
            self._rewrite_archive()
            self._committed = True
        return True

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        try:
            if getattr(self, "_append", None) is not None and self.writable and \
                    not self._broken:
                if self._dirty:
                    self.commit()
                if getattr(self, "_committed", False):   # the saved index is stale: save anew
                    self._save_after_commit()
        finally:
            super().close()

    def _save_after_commit(self) -> None:
        from archfs.tarengine.store import MIN_CACHED_MEMBERS
        if not self.options.index_cache or (self.compression is None
                                             and len(self.table) < MIN_CACHED_MEMBERS):
            return
        key = indexcache.file_key(self.path, self._file.identity(), "tar", INDEX_VERSION)
        self._save_index(key)


class _PlainSink:
    """Where a rewrite of a plain tar goes: ``copy`` moves member bytes from
    the old file without passing them through Python."""

    def __init__(self, fd: int, source_fd: int):
        self.fd, self.source_fd, self.pos = fd, source_fd, 0

    def write(self, data) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.pos)
            view = view[n:]
            self.pos += n

    progress = None

    def copy(self, offset: int, length: int) -> None:
        done = 0
        while done < length:
            n = os.copy_file_range(self.source_fd, self.fd, min(length - done, 64 << 20),
                                   offset + done, self.pos)
            if n <= 0:
                raise CorruptArchiveError("a member is cut short in the archive")
            done += n
            self.pos += n
            if self.progress is not None:
                self.progress()

    def finish(self) -> None:
        stop = -(-(self.pos + 2 * hd.BLOCK) // hd.RECORD) * hd.RECORD
        self.write(bytes(stop - self.pos))


def repair(path: str, progress=None) -> str:
    """Make an interrupted archive whole: cut an unfinished commit off, or
    end the archive at a damaged header (what follows is saved beside it)."""
    from archfs.tarengine.store import StoreOptions as _Options
    finished = tailrewrite.apply_pending(path)
    store = TarStore(path, False, _Options(progress=progress, index_cache=False))
    try:
        end, problem, kind = store.end, store.scan_problem, store.compression
        size = store._file.size()
        members = len(store.table)
    finally:
        store.close()
    if kind is not None:
        from archfs.tarengine.recompress import repair_compressed
        return repair_compressed(path, progress)
    with open(path, "r+b") as f:
        f.seek(end)
        tail = f.read(hd.BLOCK * 2)
        if problem is None and tail[:hd.BLOCK].strip(b"\0") == b"" and \
                tail[hd.BLOCK:].strip(b"\0") == b"" and size >= end + 2 * hd.BLOCK:
            return finished or "%s: nothing to repair (%d members)" % (path, members)
        saved = ""
        if problem is not None and size > end:
            keep = "%s.damaged-%s" % (path, time.strftime("%Y%m%d-%H%M%S"))
            with open(keep, "wb") as out:
                f.seek(end)
                while True:
                    chunk = f.read(COPY_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            saved = "; the %d bytes after it are saved in %s" % (size - end, keep)
        stop = -(-(end + 2 * hd.BLOCK) // hd.RECORD) * hd.RECORD
        f.seek(end)
        f.write(bytes(stop - end))
        f.truncate(stop)
        f.flush()
        os.fsync(f.fileno())
    why = problem or "an unfinished commit"
    return "%s: ended the archive after its %d good members (%s)%s" % (path, members, why,
                                                                      saved)
