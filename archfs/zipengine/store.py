"""ZipStore: one zip archive, read and changed in place without ever
rewriting it whole, and never left unreadable.

On-disk protocol
----------------
The archive is always ``[prefix][members...][central directory][end records]``
as far as its last committed end record, and archfs only ever writes after
that point, with two exceptions: the atomic rename of a compaction, and the
space of a dead first member, which the last committed central directory
no longer lists, reused for a filler entry (see ``_fill_first_hole``).

1. A change appends at once: a new or replaced member's local header and
   data go after the current end (past the last end record); a removal or
   rename only changes the in-memory table. Nothing before the end moves.
2. ``commit()`` first copies renamed members under a new local header (a
   reader requires local and central names to agree), ``fdatasync``s the
   appended data, then appends a complete new central directory and end
   records and ``fdatasync``s again. The moment that second sync returns,
   the file ends with a valid end record describing every member: the
   commit is durable. The old central directory is now dead space.
3. A crash anywhere before that leaves the previous end record followed by
   an unfinished tail. Opening the archive (or ``archfs repair``) scans back
   to the newest end record whose central directory parses (see
   ``recovery.py``) and cuts the tail off. Earlier commits are never at risk:
   their bytes are not written again.
4. Compaction writes a fresh archive of the live members beside the old one
   (``.NAME.archfs-compact-*``), fsyncs it, renames it over the original and
   fsyncs the directory: at every instant the path names a complete archive.
   It runs on demand and when dead space exceeds ``compact_ratio`` of the file
   (and ``compact_min`` bytes).
5. Another program changing or replacing the file is noticed before every
   write (inode, size and mtime are compared); the store then refuses
   writes (ArchiveChangedError) rather than corrupt either side.

Locks: ``_meta`` guards the table and tree and is held only briefly;
``_append`` serializes writers, commits and compaction, so a long append
never blocks a stat or a read.
"""

import fcntl
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from archfs.errors import (
    NotSupported,
    ArchiveBusy,
    ArchiveChangedError,
    CorruptArchiveError,
    CorruptMemberError,
    DirectoryNotEmpty,
    FileAlreadyExistsError,
    InvalidArgument,
    InvalidMove,
    IsADirectory,
    NoSuchFile,
    NotADirectory,
    NotAnArchiveError,
    PasswordRequired,
    ReadOnlyError,
    UnsupportedFeature,
)
from archfs.zipengine import compaction, format as fmt, indexcache, recovery, writer
from archfs.zipengine.archivefile import ArchiveFile, fsync_dir
from archfs.zipengine.centraldir import (
    EndRecord,
    describe_unreadable,
    read_central_directory,
    read_end,
)
from archfs.zipengine.codecs import check_method
from archfs.zipengine.entries import NO_OWNER
from archfs.zipengine.memberreader import MemberInfo, MemberReader, SeekIndexCache, Verdicts
from archfs.zipengine.names import is_valid_new_name
from archfs.zipengine.tree import DIR_MODE
from archfs.zipengine.zipcrypto import HEADER_SIZE as CRYPT_HEADER, open_decrypter

log = logging.getLogger("archfs.zip")

LOCAL_OVERHEAD = fmt.LOCAL_HEADER.size + 50   # header plus typical name/extra, for accounting
MOVE_LIMIT = 1 << 20          # a member this small is moved to keep the first entry listed
SMALL_ARCHIVE = 64 << 20      # an archive this small is rewritten rather than left with a gap


@dataclass
class StoreOptions:
    level: int = 6                     # deflate level for new members; 0 stores
    password: Optional[bytes] = None   # for traditional PKWARE encryption
    compact_ratio: float = 0.5
    compact_min: int = 8 << 20
    progress: Optional[Callable[[str, int, int], None]] = None
    index_cache: bool = True           # save/load the member index of big archives
    index_dir: Optional[str] = None    # default: $XDG_CACHE_HOME/archfs/index


class ZipStore:
    """An open zip archive (see the module docstring for the protocol)."""

    def __init__(self, path: str, writable: bool, options: Optional[StoreOptions] = None):
        self.path = os.path.abspath(path)
        self.writable = writable
        self.options = options or StoreOptions()
        self._meta = threading.RLock()
        self._append = threading.Lock()
        self._seek_cache = SeekIndexCache()
        self._verdicts = Verdicts()
        self._broken: Optional[str] = None
        self._readers_at: Dict[int, int] = {}   # local header offset -> open readers
        self._root = [DIR_MODE, 0]    # a zip has no entry for its root: kept in memory only
        self._dirty = False
        self._closed = False
        self._file = self._open_file()
        try:
            self._load()
        except BaseException:
            self._file.release()
            raise

    # -- opening --------------------------------------------------------------

    def _open_file(self) -> ArchiveFile:
        path = self.path
        if os.path.isdir(path):
            raise NotAnArchiveError("%s: is a directory, not a zip archive" % path)
        if not os.path.exists(path):
            if not self.writable:
                raise NoSuchFile("%s: no such archive" % path)
            _create_empty(path)
            log.info("created new archive %s", path)
        archive = ArchiveFile(path, self.writable)
        if self.writable:
            try:
                _lock_for_writing(archive)
            except BaseException:
                archive.release()
                raise
            compaction.remove_stale_temps(path)
        return archive

    def _load(self) -> None:
        fd = self._file.fd
        size = os.fstat(fd).st_size
        end = read_end(fd, size)
        if end is None and size == 0 and self.writable:
            log.warning("%s: empty file; it becomes a new, empty archive", self.path)
            writer.write_all(fd, writer.end_records(0, 0, 0, b""), 0)
            os.fsync(fd)
            size = os.fstat(fd).st_size
            end = read_end(fd, size)
        if end is None:
            end = self._recover(fd, size)
            size = os.fstat(fd).st_size
        started = time.monotonic()
        cached = None
        if self.options.index_cache and end.entries >= indexcache.MIN_MEMBERS:
            cached = indexcache.load(self.path, fd, end, self.options.index_dir)
        if cached is not None:
            self._table, self._tree, self._bad = cached
            how = "loaded the saved index of"
        else:
            parsed = read_central_directory(fd, size, end, self.path,
                                            self._progress_for("indexing", end.entries))
            self._table, self._tree, self._bad = parsed.table, parsed.tree, parsed.bad
            if self.options.index_cache and len(self._table) >= indexcache.MIN_MEMBERS:
                indexcache.save(self.path, fd, end, self._table, self._tree, self._bad,
                                self.options.index_dir)
            how = "indexed"
        elapsed = time.monotonic() - started
        if elapsed > 1:
            log.info("%s %d members of %s in %.1f s", how, len(self._table), self.path, elapsed)
        self._comment = end.comment
        self._committed_end = end.end
        self._end = end.end
        self._cd_start, self._cd_size = end.cd_start, end.cd_size
        table = self._table
        self._prefix = min(table.offset) if len(table) else end.cd_start
        self._listed_from = self._prefix   # the lowest offset the committed directory lists
        self._dead = max(0, end.cd_start - self._prefix - sum(table.csize)
                         - LOCAL_OVERHEAD * len(table))
        self._remember_identity()

    def _recover(self, fd: int, size: int) -> EndRecord:
        end = recovery.find_last_good_end(fd, size, self.path)
        if end is None:
            raise describe_unreadable(fd, size, self.path)
        tail = size - end.end
        if not self.writable:
            log.warning("%s: ignoring %d bytes after the last complete commit (read-only)",
                        self.path, tail)
            return end
        if not recovery.is_own_tail(fd, end.end, size):
            raise CorruptArchiveError(
                "%s: %d bytes of unknown data follow the end of the archive; "
                "mount it read-only, or run 'archfs repair' to cut them off" % (self.path, tail))
        recovery.cut_tail(fd, end.end)
        log.warning("%s: recovered: dropped %d bytes of an unfinished commit", self.path, tail)
        return end

    def _progress_for(self, what: str, total: int = 0):
        report = self.options.progress
        if report is None:
            return None
        return lambda done: report(what, done, total)

    # -- identity: noticing changes by other programs --------------------------

    def _remember_identity(self) -> None:
        st = os.fstat(self._file.fd)
        self._identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _check_unchanged(self) -> None:
        if self._broken:
            raise ArchiveChangedError(self._broken)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        own = os.fstat(self._file.fd)
        dev, ino, size, mtime_ns = self._identity
        why = None
        if st is None:
            why = "the archive file was removed"
        elif (st.st_dev, st.st_ino) != (dev, ino):
            why = "the archive file was replaced by another program"
        elif (own.st_size, own.st_mtime_ns) != (size, mtime_ns):
            why = "the archive file was changed by another program"
        if why:
            self._broken = "%s: %s; refusing further writes" % (self.path, why)
            log.error(self._broken)
            raise ArchiveChangedError(self._broken)

    def _check_writable(self) -> None:
        if not self.writable:
            raise ReadOnlyError("%s is opened read-only" % self.path)
        if self._closed:
            raise ValueError("archive is closed")
        if self._broken:
            raise ArchiveChangedError(self._broken)

    # -- queries ----------------------------------------------------------------

    def stat(self, path: str) -> Tuple[int, int, int, int, int]:
        """(mode, size, mtime_ns, uid, gid); uid/gid are NO_OWNER when not recorded."""
        t = self._table
        with self._meta:
            node, row = self._tree.lookup(path)
            if row >= 0:
                size = 0 if node is not None else t.usize[row]
                return t.mode[row], size, t.mtime_ns[row], t.uid[row], t.gid[row]
            if node is not None:
                if path == "":
                    mode, mtime_ns = self._root
                    return mode, 0, mtime_ns or self._identity[3], NO_OWNER, NO_OWNER
                return DIR_MODE, 0, self._identity[3], NO_OWNER, NO_OWNER
        raise NoSuchFile("%s: no such file or directory" % path)

    def listdir(self, path: str) -> List[Tuple[str, int]]:
        with self._meta:
            if path in self._tree.dirs:
                return self._tree.children(path)
            if path in self._tree.paths:
                raise NotADirectory("%s: not a directory" % path)
        raise NoSuchFile("%s: no such directory" % path)

    def names(self) -> List[str]:
        """Paths of all file and symlink members, in archive order."""
        with self._meta:
            t = self._table
            return [t.names[r] for r in t.live() if not stat.S_ISDIR(t.mode[r])]

    def members(self) -> List[Tuple[str, int]]:
        """(path, row) of every live member including directories, in archive order."""
        with self._meta:
            t = self._table
            return [(t.names[r], r) for r in t.live()]

    def row_of(self, path: str) -> int:
        with self._meta:
            return self._file_row(path)

    def _file_row(self, path: str) -> int:
        node, row = self._tree.lookup(path)
        if node is not None:
            raise IsADirectory("%s: is a directory" % path)
        if row < 0:
            raise NoSuchFile("%s: no such file" % path)
        return row

    @property
    def comment(self) -> bytes:
        return self._comment

    @property
    def dirty(self) -> bool:
        return self._dirty

    @property
    def dead_bytes(self) -> int:
        return self._dead

    def summary(self) -> dict:
        """Counts and sizes for ``archfs info`` (see ``zipengine/summary.py``)."""
        from archfs.zipengine.summary import summarize
        with self._meta:
            return summarize(self._table, len(self._tree.dirs) - 1, self._bad, self._dead,
                             os.fstat(self._file.fd).st_size, self._comment)

    # -- reading ----------------------------------------------------------------

    def open_member(self, path: str) -> MemberReader:
        """A seekable reader of a file or symlink member."""
        with self._meta:
            row = self._file_row(path)
            why = self._bad.get(row)
            if why:
                raise CorruptMemberError("%s: %s" % (path, why))
            r = self._table.row(row)
            source = self._file.retain()
            limit = self._end
            self._readers_at[r.offset] = self._readers_at.get(r.offset, 0) + 1
        try:
            info = self._member_info(source, r, limit)
            seek_index = self._seek_cache.get(info.key) if info.method != fmt.STORED else None
            return MemberReader(source, info, seek_index, self._verdicts,
                                on_close=lambda: self._reader_closed(r.offset))
        except BaseException:
            source.release()
            self._reader_closed(r.offset)
            raise

    def _reader_closed(self, offset: int) -> None:
        with self._meta:
            left = self._readers_at.get(offset, 0) - 1
            if left > 0:
                self._readers_at[offset] = left
            else:
                self._readers_at.pop(offset, None)

    def _member_info(self, source: ArchiveFile, r, limit: int) -> MemberInfo:
        if r.method == fmt.AES_MARKER:
            raise UnsupportedFeature("%s: AES-encrypted member (WinZip AE-x): "
                                     "not supported; decrypt it with 7z" % r.name)
        if r.flags & fmt.FLAG_STRONG_ENCRYPTION:
            raise UnsupportedFeature("%s: PKWARE strong encryption is not supported" % r.name)
        try:
            check_method(r.method)
        except UnsupportedFeature as exc:
            raise UnsupportedFeature("%s: %s" % (r.name, exc)) from None
        found = fmt.read_local_header(source.pread, r.offset)
        if found is None:
            raise CorruptMemberError("%s: local header is missing or damaged" % r.name)
        fields, data_start = found
        if data_start + r.csize > limit:
            raise CorruptMemberError("%s: member data runs past the end of the archive" % r.name)
        decrypter = None
        if r.flags & fmt.FLAG_ENCRYPTED:
            password = self.options.password
            if not password:
                raise PasswordRequired(
                    "%s: encrypted member; give the password with -o password_file=PATH "
                    "or ARCHFS_PASSWORD" % r.name)
            if r.csize < CRYPT_HEADER:
                raise CorruptMemberError("%s: encrypted member is too short" % r.name)
            local_time = fields[4]
            check = (local_time >> 8) & 0xFF if r.flags & fmt.FLAG_DESCRIPTOR else r.crc >> 24
            decrypter = open_decrypter(password, source.pread(CRYPT_HEADER, data_start),
                                       check, r.name)
        return MemberInfo(r.name, data_start, r.csize, r.usize, r.crc, r.method, decrypter)

    def readlink(self, path: str) -> str:
        with self._meta:
            row = self._file_row(path)
            if not stat.S_ISLNK(self._table.mode[row]):
                raise InvalidArgument("%s: not a symbolic link" % path)
        with self.open_member(path) as reader:
            return reader.read().decode("utf-8", "surrogateescape")

    # -- changes ----------------------------------------------------------------

    def _check_new_name(self, path: str) -> None:
        if path == "":
            raise IsADirectory("/: is the root directory")
        if not is_valid_new_name(path):
            raise InvalidArgument("%r: not a name a zip archive can hold "
                              "(backslashes read back as directory separators)" % path)

    def _check_parent(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        tree = self._tree
        while parent and parent not in tree.dirs:
            if parent in tree.paths:
                raise NotADirectory("%s: not a directory" % parent)
            parent = parent.rpartition("/")[0]

    def add_file(self, path: str, local_file: str, mode: Optional[int] = None,
                 mtime_ns: Optional[int] = None, replace: bool = True) -> None:
        """Store a local file as ``path``, replacing a file of that name."""
        if mtime_ns is None:
            mtime_ns = os.stat(local_file).st_mtime_ns
        self._store(path, mode, mtime_ns, replace, stat.S_IFREG,
                    lambda fd, at: writer.append_file(fd, at, path, local_file, mtime_ns,
                                                      self.options.level))

    def add_bytes(self, path: str, data: bytes, mode: Optional[int] = None,
                  mtime_ns: Optional[int] = None, replace: bool = True) -> None:
        if mtime_ns is None:
            mtime_ns = time.time_ns()
        self._store(path, mode, mtime_ns, replace, stat.S_IFREG,
                    lambda fd, at: writer.append_bytes(fd, at, path, data, mtime_ns,
                                                       self.options.level))

    def symlink(self, target: str, path: str) -> None:
        now = time.time_ns()
        data = target.encode("utf-8", "surrogateescape")
        self._store(path, 0o777, now, False, stat.S_IFLNK,
                    lambda fd, at: writer.append_bytes(fd, at, path, data, now, 0))

    def _store(self, path, mode, mtime_ns, replace, kind, append) -> None:
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
                if old >= 0:
                    self._dead += LOCAL_OVERHEAD + self._table.csize[old]
                    self._tree.replace_file(path, row)
                else:
                    self._tree.add_file(path, row)
                self._dirty = True

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
        fd = self._file.fd
        try:
            written = append(fd, self._end)
        except BaseException:
            try:
                os.ftruncate(fd, self._end)
            except OSError:
                log.exception("%s: could not cut off a failed append", self.path)
            self._remember_identity()
            raise
        self._end = written.end
        self._remember_identity()
        return written

    def mkdir(self, path: str, mode: int = 0o755) -> None:
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
        self._add_dir_entry(path, mode, time.time_ns(), must_be_new=True)

    def _add_dir_entry(self, path: str, mode: int, mtime_ns: int, must_be_new: bool) -> None:
        with self._append:
            self._check_unchanged()
            written = self._appending(lambda fd, at: writer.append_bytes(
                fd, at, path, b"", mtime_ns, 0, is_dir=True))
            with self._meta:
                node = self._tree.dirs.get(path)
                if (must_be_new and (node is not None or path in self._tree.paths)) or (
                        not must_be_new and node is None):
                    self._dead += written.end - written.offset
                    raise FileAlreadyExistsError("%s: file exists" % path)
                row = self._table.add(path, written.offset, 0, 0, 0, fmt.STORED, written.flags,
                                      mtime_ns, stat.S_IFDIR | (mode & 0o7777))
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
            if path == "":
                raise InvalidMove("cannot remove the root directory")
            if path not in self._tree.dirs:
                if path in self._tree.paths:
                    raise NotADirectory("%s: not a directory" % path)
                raise NoSuchFile("%s: no such directory" % path)
            if not self._tree.is_empty(path):
                raise DirectoryNotEmpty("%s: directory not empty" % path)
            self._tree.remove_dir(path)
            self._dirty = True

    def rename(self, old: str, new: str) -> None:
        """rename(2) semantics for files, symlinks and whole directories."""
        self._check_writable()
        self._check_new_name(new)
        with self._meta:
            tree, table = self._tree, self._table
            if old == "" or new == "":
                raise InvalidMove("cannot rename the root directory")
            old_node, old_row = tree.lookup(old)
            if old_node is None and old_row < 0:
                raise NoSuchFile("%s: no such file or directory" % old)
            if old == new:
                return
            self._check_parent(new)
            if new.rpartition("/")[0] not in tree.dirs:
                raise NoSuchFile("%s: no such directory" % new.rpartition("/")[0])
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
                moved = table.copy_as(old_row, new)
                tree.remove_file(old)
                if new_row >= 0:
                    self._dead += LOCAL_OVERHEAD + table.csize[new_row]
                    tree.replace_file(new, moved)
                else:
                    tree.add_file(new, moved)
            self._dirty = True

    def _move_dir(self, old: str, new: str) -> None:
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
                tree.add_dir(target, table.copy_as(row, target))
                table.dead[row] = 1
            else:
                tree.ensure_dir(target)
            for r in files:
                name = target + table.names[r][len(dir_path):]
                moved = table.copy_as(r, name)
                tree.add_file(name, moved)

    def chmod(self, path: str, mode: int) -> None:
        self._change(path, mode=mode & 0o7777)

    def utime(self, path: str, mtime_ns: int) -> None:
        self._change(path, mtime_ns=mtime_ns)

    def _change(self, path: str, mode: Optional[int] = None,
                mtime_ns: Optional[int] = None) -> None:
        """chmod/utime. The mode lives only in the central record; the time
        also in the local header, which unzip restores from, so a new time
        rewrites the local header: in place while the member is not yet
        committed, else by copying the member at the next commit."""
        self._check_writable()
        t = self._table
        if path == "":
            with self._meta:
                if mode is not None:
                    self._root[0] = stat.S_IFDIR | mode
                if mtime_ns is not None:
                    self._root[1] = mtime_ns
            return
        with self._append, self._meta:
            node, row = self._tree.lookup(path)
            if node is None and row < 0:
                raise NoSuchFile("%s: no such file or directory" % path)
            if row >= 0:
                if mtime_ns is not None and mtime_ns != t.mtime_ns[row]:
                    if row in t.raw_dos:
                        raise NotSupported("%s: the time of an encrypted member cannot "
                                           "change (its password check depends on it)" % path)
                    t.mtime_ns[row] = mtime_ns
                    if not self._retime_in_place(row):
                        t.relocate[row] = 1
                if mode is not None:
                    t.mode[row] = stat.S_IFMT(t.mode[row]) | mode
                t.touch(row)
                self._dirty = True
                return
        # an implied directory gets an explicit entry to hold the attribute
        current_mode, _size, current_mtime, _uid, _gid = self.stat(path)
        self._add_dir_entry(path, current_mode if mode is None else mode,
                            current_mtime if mtime_ns is None else mtime_ns, must_be_new=False)

    def _retime_in_place(self, row: int) -> bool:
        """Rewrite the local header of a not yet committed member with its new
        time; False if it is committed (its header must then not change)."""
        t = self._table
        if t.offset[row] < self._committed_end or t.relocate[row]:
            return False
        found = fmt.read_local_header(self._file.pread, t.offset[row])
        if found is None:
            return False
        fields, data_start = found
        r = t.row(row)
        zip64 = fields[7] == fmt.MAX32
        header = writer.local_header(writer.member_name_bytes(r.name, r.is_dir), r.method,
                                     fields[2], r.mtime_ns, r.crc, r.csize, r.usize, zip64)
        if len(header) != data_start - r.offset:
            return False
        writer.write_all(self._file.fd, header, r.offset)
        self._remember_identity()
        return True

    # -- commit and compaction -----------------------------------------------------

    def commit(self) -> bool:
        """Make every change durable (see the protocol); False if nothing to do."""
        self._check_writable()
        with self._append:
            if not self._dirty:
                return False
            self._check_unchanged()
            self._persist_empty_dirs()
            if self._committed_end == fmt.EOCD.size + len(self._comment) and self._cd_size == 0:
                # the first members of an empty archive: write it whole and
                # rename it in place, so it starts with a local header as
                # readers such as 7-Zip expect, not with the old empty end record
                return self._compact_locked()
            self._commit_locked()
            for _ in range(3):
                refill = self._fill_first_hole()
                if refill == "compact":
                    self._compact_locked()
                if refill in (False, "compact"):
                    break
                self._dirty = True
                self._commit_locked()   # lists the filler, or moves the first member away
            if self._dead > max(self.options.compact_min,
                                self.options.compact_ratio * self._committed_end):
                self._compact_locked()
            return True

    def _commit_locked(self) -> None:
        self._relocate_renamed()
        fd = self._file.fd
        os.fdatasync(fd)
        with self._meta:
            live = self._table.live()
            pieces, lengths = self._central_directory(live)
            listed_from = self._table.offset[live[0]] if live else self._end
            self._dirty = False      # changes from here on belong to the next commit
        cd_start = pos = self._end
        try:
            for piece in pieces:
                if isinstance(piece, tuple):
                    writer.copy_range(fd, piece[0], fd, pos, piece[1])
                    pos += piece[1]
                else:
                    pos = writer.write_all(fd, piece, pos)
            cd_size = pos - cd_start
            end = writer.write_all(fd, writer.end_records(cd_start, cd_size, len(live),
                                                          self._comment), pos)
            os.fdatasync(fd)
        except BaseException:
            self._dirty = True
            os.ftruncate(fd, self._end)
            self._remember_identity()
            raise
        with self._meta:
            t = self._table
            at = cd_start
            for r, length in zip(live, lengths):
                t.record_at[r], t.record_len[r] = at, length
                at += length
            self._dead += self._committed_end - self._cd_start
            self._cd_start, self._cd_size = cd_start, cd_size
            self._committed_end = self._end = end
            self._listed_from = listed_from
        self._remember_identity()

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
            live = t.live()
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
        fd = self._file.fd
        if kind == "dir":
            now = time.time_ns()
            written = writer.append_bytes(fd, start, value, b"", now, 0, is_dir=True,
                                          times=False)
            with self._meta:
                node = tree.dirs.get(value)
                if node is None:
                    self._dead += written.end - start
                    return False
                mode = t.mode[node.row] if node.row >= 0 else DIR_MODE
                mtime = t.mtime_ns[node.row] if node.row >= 0 else now
                row = t.add(value, start, 0, 0, 0, fmt.STORED, written.flags, mtime, mode)
                if node.row >= 0:
                    t.dead[node.row] = 1
                tree.add_dir(value, row)
            return True
        r = value
        found = fmt.read_local_header(self._file.pread, t.offset[r])
        if found is None:
            return "compact"
        row = t.row(r)
        written = writer.append_copy(fd, start, row.name, row.is_dir, fd, found[1], row.csize,
                                     row.usize, row.crc, row.method, row.flags, row.mtime_ns,
                                     times=False, dos=row.dos)
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
            if t.usize[r] >= writer.ZIP64_THRESHOLD:
                size += 20
            if size <= hole and (best is None or t.csize[r] < t.csize[best]):
                best = r
        return None if best is None else ("row", best)

    def _persist_empty_dirs(self) -> None:
        """An implied directory left empty needs an entry, or it would vanish."""
        with self._meta:
            empty = [p for p, node in self._tree.dirs.items()
                     if p and node.row < 0 and not node.subdirs and node.live == 0]
        for path in empty:
            now = time.time_ns()
            written = self._appending(lambda fd, at: writer.append_bytes(
                fd, at, path, b"", now, 0, is_dir=True))
            with self._meta:
                node = self._tree.dirs.get(path)
                if node is None or node.row >= 0:
                    continue
                row = self._table.add(path, written.offset, 0, 0, 0, fmt.STORED,
                                      written.flags, now, DIR_MODE)
                self._tree.add_dir(path, row)

    def _relocate_renamed(self) -> None:
        t = self._table
        with self._meta:
            todo = [(r, t.row(r)) for r in t.live() if t.relocate[r]]
        src = self._file
        for r, row in todo:
            found = fmt.read_local_header(src.pread, row.offset)
            if found is None:
                raise CorruptMemberError("%s: local header is missing or damaged; "
                                         "cannot move it" % row.name)
            data_start = found[1]
            written = self._appending(lambda fd, at: writer.append_copy(
                fd, at, row.name, row.is_dir, src.fd, data_start, row.csize, row.usize,
                row.crc, row.method, row.flags, row.mtime_ns, dos=row.dos))
            with self._meta:
                self._dead += LOCAL_OVERHEAD + row.csize
                if t.dead[r] or t.names[r] != row.name:
                    continue
                t.offset[r] = written.offset
                t.flags[r] = written.flags
                t.relocate[r] = 0
                t.touch(r)
                if r in self._bad:
                    del self._bad[r]

    def _central_directory(self, live: List[int]):
        """The new central directory as pieces, and each record's length.

        A piece is bytes (a rebuilt record) or (position, length) of a run of
        records that can be copied verbatim from the last central directory.
        """
        t = self._table
        pieces: list = []
        lengths: List[int] = []
        run_start = run_end = -1
        for r in live:
            at = t.record_at[r]
            if at >= 0:
                lengths.append(t.record_len[r])
                if at != run_end:
                    if run_start >= 0:
                        pieces.append((run_start, run_end - run_start))
                    run_start = at
                run_end = at + t.record_len[r]
                continue
            if run_start >= 0:
                pieces.append((run_start, run_end - run_start))
                run_start = run_end = -1
            record = writer.central_record(
                t.names[r], t.mode[r], t.flags[r], t.method[r], t.mtime_ns[r],
                t.crc[r], t.csize[r], t.usize[r], t.offset[r], t.uid[r], t.gid[r],
                t.extras.get(r, b""), t.comments.get(r, b""), t.raw_dos.get(r))
            pieces.append(record)
            lengths.append(len(record))
        if run_start >= 0:
            pieces.append((run_start, run_end - run_start))
        return pieces, lengths

    def compact(self) -> bool:
        """Rewrite the archive without dead space (committing pending changes)."""
        self._check_writable()
        with self._append:
            self._persist_empty_dirs()
            return self._compact_locked()

    def _compact_locked(self) -> bool:
        self._check_unchanged()
        with self._meta:
            if self._bad:
                log.warning("%s: not compacting: %d damaged members would be lost",
                            self.path, len(self._bad))
                return False
            self._dirty = False
            live = self._table.live()
            rows = [(r, self._table.row(r)) for r in live]
            extras = {r: (self._table.extras.get(r, b""), self._table.comments.get(r, b""))
                      for r in live}
        started = time.monotonic()
        try:
            result = compaction.rewrite(self.path, self._file, self._prefix, rows, extras,
                                        self._comment, self._progress_for("compacting"))
        except BaseException:
            with self._meta:
                self._dirty = True   # what it was to commit is still to be committed
            raise
        new_file = self._reopen_compacted()
        with self._meta:
            moved = result.offsets
            t = self._table
            written = bytearray(len(t))      # rows the new file holds under their name
            for r, _row in rows:
                written[r] = 1
            for r in range(len(t)):
                new_offset = moved.get(t.offset[r])
                if new_offset is None:
                    t.dead[r] = 1   # its data is not in the new file
                    continue
                t.offset[r] = new_offset
                t.record_at[r] = -1
                if written[r]:      # a row renamed meanwhile has the old name's header
                    t.relocate[r] = 0
            for r, at, length in result.records:
                if not t.dead[r]:
                    t.record_at[r], t.record_len[r] = at, length
            old_file, self._file = self._file, new_file
            self._cd_start, self._cd_size = result.cd_start, result.cd_size
            self._listed_from = self._prefix
            self._committed_end = self._end = result.end
            self._dead = 0
        old_file.release()
        self._remember_identity()
        log.info("compacted %s to %d bytes in %.1f s", self.path, result.end,
                 time.monotonic() - started)
        return True

    def _reopen_compacted(self) -> ArchiveFile:
        """The compacted file, now under the archive's name. Should it fail to
        open, the store still holds the replaced file, and writing there
        would be lost: writes are refused from then on."""
        new_file = None
        try:
            new_file = ArchiveFile(self.path, True)
            _lock_for_writing(new_file)
            return new_file
        except OSError as exc:
            if new_file is not None:
                new_file.release()
            self._broken = ("%s: compacted, but could not open the new file (%s); refusing "
                            "further writes" % (self.path, exc))
            log.error(self._broken)
            raise ArchiveChangedError(self._broken) from exc

    # -- closing ------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self.writable and self._dirty and not self._broken:
                self.commit()
                self._save_index()
        finally:
            self._closed = True
            self._file.release()

    def _save_index(self) -> None:
        """Keep the saved index in step with what the last commit wrote."""
        if not self.options.index_cache or len(self._table) < indexcache.MIN_MEMBERS:
            return
        fd = self._file.fd
        end = read_end(fd, os.fstat(fd).st_size)
        if end is not None:
            with self._meta:
                indexcache.save(self.path, fd, end, self._table, self._tree, self._bad,
                                self.options.index_dir)


def _create_empty(path: str) -> None:
    """Create a new archive holding nothing, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        writer.write_all(fd, writer.end_records(0, 0, 0, b""), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path)


def _lock_for_writing(archive: ArchiveFile) -> None:
    """One writer per archive: a second archfs writing it would corrupt it."""
    try:
        fcntl.flock(archive.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ArchiveBusy("%s: already open for writing by another archfs" % archive.path) from None
