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

Here: appending and the commit of appends (1, 2, 4). Removal, rename, chmod
and touch are in ``namechanges``, the rewrite of 3 in ``rewriting``,
``archfs repair`` in ``repairing``.
"""

import logging
import os
import stat
import threading
import time
from typing import Optional

from archfs.engine import compressed, indexcache
from archfs.engine.changeguard import ChangeGuard
from archfs.engine.fileaccess import fsync_dir, lock_for_writing
from archfs.errors import (
    FileAlreadyExistsError,
    InvalidArgument,
    IsADirectory,
    NoSuchFile,
    NotADirectory,
    NotSupported,
)
from archfs.tarengine import headers as hd
from archfs.tarengine import tailrewrite
from archfs.tarengine.headers import TYPEFLAGS
from archfs.tarengine.namechanges import NameChanges
from archfs.tarengine.names import encode, is_valid_new_name
from archfs.tarengine.repairing import repair  # noqa: F401  (its old home: callers import it here)
from archfs.tarengine.rewriting import Rewriting
from archfs.tarengine.store import INDEX_VERSION, StoreOptions, TarStore

log = logging.getLogger("archfs.tar")

COPY_CHUNK = 1 << 20


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


def local_chunks(path: str, size: int, chunk: int):
    """``size`` bytes of a local file being added, in pieces of at most
    ``chunk``; a file shorter than that changed since it was measured."""
    with open(path, "rb") as f:
        done = 0
        while done < size:
            piece = f.read(min(chunk, size - done))
            if not piece:
                raise OSError("%s: shorter than expected" % path)
            yield piece
            done += len(piece)


class TarWriter(NameChanges, Rewriting, ChangeGuard, TarStore):
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
            for chunk in local_chunks(source, size, COPY_CHUNK):
                pos = self._file.pwrite(chunk, pos)
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
        typeflag = TYPEFLAGS.get(kind, b"0")
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

