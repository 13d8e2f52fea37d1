"""Open files and unsaved content: the mount's view on top of the archive.

Every path that is open, or holds written content not yet copied back, has
one ``Entry``; every writer of a path shares the entry's one local
``WriteFileIO``, and every reader of it reads that local file once it exists,
so a read sees what was written as soon as write(2) returned, from any
process. An entry leaves the table only when nothing has it open and its
content is in the archive; until then getattr and readdir answer from it.

Opening an existing member for writing copies nothing: the local file is
made from the member at the first write or truncate ("materialized").
Local files up to ``SPOOL_LIMIT`` live in memory (``SpooledWriteFileIO``),
so copying many small files in creates no scratch files at all.

Before a rename, unlink or rmdir touches a path, unsaved content at or below
it is copied back first, so the plugin, which does the operation, sees the
current state; entries are then moved or dropped to match.

Locks: ``Entry.lock`` guards content (writes, materializing, copy-back);
``Entry.fd_lock`` guards the local file's lifetime (stat versus close);
``OpenFiles._table_lock`` guards the table and handle counts and is taken
after an entry lock, never before. Namespace changes are serialized by
``OpenFiles._namespace``.
"""

import contextlib
import itertools
import logging
import os
import shutil
import stat as _stat
import threading
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from archfs.archives.abstractarchive import MemberStat
from archfs.archives.writefileio import SpooledWriteFileIO, WriteFileIO
from archfs.errors import (
    DirectoryNotEmpty,
    FileAlreadyExistsError,
    IsADirectory,
    ReadOnlyError,
)
from archfs.mount.kernelcache import KernelCachePolicy
from archfs.mount.scratch import Scratch

log = logging.getLogger("archfs.mount")

_COPY_CHUNK = 1 << 20
SPOOL_LIMIT = 256 << 10     # written files up to this size stay in memory until copied back


class Entry:
    """One path that is open or has unsaved content."""

    def __init__(self, path: str, mode_bits: int, in_archive: bool):
        self.path = path
        self.lock = threading.RLock()
        self.fd_lock = threading.Lock()
        self.handles = 0          # open FUSE handles, readers and writers
        self.writers = 0
        self.wfile = None     # a WriteFileIO or SpooledWriteFileIO
        self.mode_bits = mode_bits
        self.mtime_ns: Optional[int] = None  # set by utimens on unsaved content
        self.in_archive = in_archive         # a member of this name exists
        self.unlinked = False                # removed while open: discard at release
        self.retired = False                 # out of the table, local file gone
        self.failure: Optional[str] = None   # last copy-back error, logged once

    @property
    def dirty(self) -> bool:
        wfile = self.wfile
        return wfile is not None and not wfile.closed and wfile.dirty

    def __repr__(self):
        return "Entry(%r)" % self.path


class Handle:
    """One open(2) of a path: the entry plus, for reads before any write, the
    plugin's reader, kept for the life of the open file."""

    def __init__(self, entry: Entry, writable: bool, append: bool):
        self.entry = entry
        self.writable = writable
        self.append = append
        self.reader = None
        self.lock = threading.Lock()


def _below(path: str, top: str) -> bool:
    """Whether ``path`` is ``top`` or inside it (``""`` is the root)."""
    return top == "" or path == top or path.startswith(top + "/")


class OpenFiles:
    """The table of entries and handles over one archive plugin."""

    def __init__(self, archive, scratch: Scratch, cache: KernelCachePolicy):
        self.archive = archive
        self.scratch = scratch
        self.cache = cache
        self._table: Dict[str, Entry] = {}
        self._table_lock = threading.Lock()
        self._namespace = threading.RLock()
        self._handles: Dict[int, Handle] = {}
        self._fh = itertools.count(1)
        # Called with an entry whose last writer left unsaved content behind.
        self.on_unsaved: Callable[[Entry], None] = lambda entry: None
        # Called before the archive is changed (a copy-back or namespace change).
        self.on_change: Callable[[], None] = lambda: None

    # -- handles -------------------------------------------------------------

    def handle(self, fh: int) -> Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise OSError(9, "bad file handle %d" % fh) from None  # EBADF

    def _check_writable(self):
        if not self.archive.writable:
            raise ReadOnlyError("the archive is mounted read-only")

    def _acquire(self, path: str, writable: bool) -> Entry:
        """The entry of an existing file, with one more handle on it."""
        with self._table_lock:
            entry = self._table.get(path)
            if entry is not None:
                self._count(entry, writable, +1)
                return entry
        st = self.archive.stat(path)
        if st.is_dir:
            raise IsADirectory("is a directory: %s" % path)
        with self._table_lock:
            entry = self._table.get(path)
            if entry is None:
                entry = Entry(path, _stat.S_IMODE(st.mode), in_archive=True)
                self._table[path] = entry
            self._count(entry, writable, +1)
            return entry

    @staticmethod
    def _count(entry: Entry, writable: bool, delta: int) -> None:
        entry.handles += delta
        if writable:
            entry.writers += delta

    def _register(self, handle: Handle) -> int:
        fh = next(self._fh)
        self._handles[fh] = handle
        return fh

    def open(self, path: str, flags: int) -> Tuple[int, bool]:
        """Open an existing file; returns (fh, whether the kernel may keep
        its cached pages)."""
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable:
            self._check_writable()
        entry = self._acquire(path, writable)
        handle = Handle(entry, writable, bool(flags & os.O_APPEND))
        try:
            if writable and flags & os.O_TRUNC:
                self._truncate_entry(entry, 0)
            elif not writable and entry.wfile is None:
                handle.reader = self.archive.open(path, "rb")
        except BaseException:
            self._release_entry(entry, writable)
            raise
        keep = self.cache.opened(path)
        return self._register(handle), keep

    def create(self, path: str, mode: int, flags: int) -> int:
        """open(2) with O_CREAT: a new file, or the existing one (cut only
        with O_TRUNC) when another process made it first."""
        self._check_writable()
        with self._namespace:
            with self._table_lock:
                entry = self._table.get(path)
                if entry is not None:
                    self._count(entry, True, +1)
            if entry is None:
                try:
                    st = self.archive.stat(path)
                except FileNotFoundError:
                    st = None
                if st is not None:
                    if flags & os.O_EXCL:
                        raise FileAlreadyExistsError("exists already: %s" % path)
                    entry = self._acquire(path, writable=True)
                else:
                    entry = Entry(path, mode & 0o7777, in_archive=False)
                    entry.handles = entry.writers = 1
                    entry.wfile = SpooledWriteFileIO(
                        self.archive, path, self._spill_target(path), dirty=True,
                        mode=entry.mode_bits)
                    with self._table_lock:
                        self._table[path] = entry
                    flags &= ~os.O_TRUNC  # already empty
            elif flags & os.O_EXCL:
                self._release_entry(entry, True)
                raise FileAlreadyExistsError("exists already: %s" % path)
            if flags & os.O_TRUNC:
                try:
                    self._truncate_entry(entry, 0)
                except BaseException:
                    self._release_entry(entry, True)
                    raise
        self.cache.changed(path)
        self.cache.opened(path)
        return self._register(Handle(entry, True, bool(flags & os.O_APPEND)))

    def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if handle is None:
            return
        if handle.reader is not None:
            with handle.lock:
                try:
                    handle.reader.close()
                except Exception as exc:  # a reader that cannot close loses nothing
                    log.warning("closing the reader of /%s: %s", handle.entry.path, exc)
        self._release_entry(handle.entry, handle.writable)

    def _release_entry(self, entry: Entry, writable: bool) -> None:
        with self._table_lock:
            self._count(entry, writable, -1)
            last_writer = writable and entry.writers == 0
        if entry.unlinked:
            self.maybe_retire(entry)
        elif last_writer and entry.dirty:
            self.on_unsaved(entry)
        else:
            self.maybe_retire(entry)

    def maybe_retire(self, entry: Entry) -> None:
        """Drop an entry that nothing has open and that has nothing unsaved."""
        with entry.lock:
            with self._table_lock:
                if entry.handles or entry.retired or (entry.dirty and not entry.unlinked):
                    return
                if self._table.get(entry.path) is entry:
                    del self._table[entry.path]
                entry.retired = True
            self._drop_local(entry)

    @staticmethod
    def _drop_local(entry: Entry) -> None:
        with entry.fd_lock:
            if entry.wfile is not None:
                entry.wfile.discard()

    # -- content -------------------------------------------------------------

    def read(self, fh: int, size: int, offset: int) -> bytes:
        handle = self.handle(fh)
        entry = handle.entry
        wfile = entry.wfile
        if wfile is not None:
            return wfile.pread(size, offset)
        with handle.lock:
            if handle.reader is None:
                handle.reader = self.archive.open(entry.path, "rb")
            handle.reader.seek(offset)
            chunks, wanted = [], size
            while wanted > 0:  # a short read would look like end of file
                chunk = handle.reader.read(wanted)
                if not chunk:
                    break
                chunks.append(chunk)
                wanted -= len(chunk)
            return b"".join(chunks)

    def write(self, fh: int, data: bytes, offset: int) -> int:
        handle = self.handle(fh)
        if not handle.writable:
            raise OSError(9, "file is not open for writing")  # EBADF
        entry = handle.entry
        with entry.lock:
            wfile = self._materialize(entry)
            if handle.append:
                offset = wfile.size()
            written = wfile.pwrite(data, offset)
            entry.mtime_ns = None
        self.cache.changed(entry.path)
        return written

    def truncate(self, path: str, length: int) -> None:
        self._check_writable()
        entry = self._acquire(path, writable=True)
        try:
            self._truncate_entry(entry, length)
        finally:
            self._release_entry(entry, True)

    def _truncate_entry(self, entry: Entry, length: int) -> None:
        with entry.lock:
            wfile = self._materialize(entry, keep=length)
            wfile.truncate(length)
            entry.mtime_ns = None
        self.cache.changed(entry.path)

    def _materialize(self, entry: Entry, keep: Optional[int] = None) -> WriteFileIO:
        """The entry's local file, made from the member on first use (only the
        first ``keep`` bytes are copied when the file is about to be cut)."""
        if entry.wfile is not None:
            return entry.wfile
        if keep == 0 or self.archive.stat(entry.path).size <= SPOOL_LIMIT:
            initial = b""
            if keep != 0:
                with self.archive.open(entry.path, "rb") as src:
                    initial = src.read()
            entry.wfile = SpooledWriteFileIO(self.archive, entry.path,
                                             self._spill_target(entry.path), initial=initial,
                                             dirty=False, mode=entry.mode_bits,
                                             limit=SPOOL_LIMIT)
            return entry.wfile
        local = self.scratch.new_file(entry.path)
        try:
            if keep != 0:
                with self.archive.open(entry.path, "rb") as src, open(local, "wb") as dst:
                    if keep is None:
                        shutil.copyfileobj(src, dst, _COPY_CHUNK)
                    else:
                        _copy_at_most(src, dst, keep)
            wfile = WriteFileIO(self.archive, entry.path, local, dirty=False,
                                mode=entry.mode_bits)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(local)
            raise
        entry.wfile = wfile
        return wfile

    def _spill_target(self, path: str):
        """Where a spooled file goes once it grows: a new scratch file."""
        return lambda: self.scratch.new_file(path)

    # -- copy-back -----------------------------------------------------------

    def copy_back(self, entry: Entry, force: bool = False) -> bool:
        """Store the entry's unsaved content in the archive; True if it did.

        Without ``force`` an entry that a writer has open again is left for
        that writer's release.
        """
        with entry.lock:
            return self._copy_back_locked(entry, force)

    def _copy_back_locked(self, entry: Entry, force: bool = False) -> bool:
        if entry.unlinked or entry.retired or not entry.dirty:
            return False
        if entry.writers and not force:
            return False
        wfile = entry.wfile
        wfile.mode_bits = entry.mode_bits
        wfile.mtime_ns = entry.mtime_ns
        self.on_change()
        wfile.sync()
        entry.in_archive = True
        entry.failure = None
        return True

    def unsaved(self) -> List[Entry]:
        """Entries holding content the archive does not have yet."""
        with self._table_lock:
            return [e for e in self._table.values() if e.dirty and not e.unlinked]

    # -- metadata ------------------------------------------------------------

    def _live_entry(self, path: str) -> Optional[Entry]:
        entry = self._table.get(path)
        return None if entry is None or entry.retired else entry

    def stat(self, path: str) -> MemberStat:
        """What getattr shows: unsaved content first, else the archive."""
        entry = self._live_entry(path)
        if entry is not None and entry.wfile is not None:
            with entry.fd_lock:
                wfile = entry.wfile
                if not wfile.closed:
                    return MemberStat(_stat.S_IFREG | entry.mode_bits, wfile.size(),
                                      entry.mtime_ns if entry.mtime_ns is not None
                                      else wfile.local_mtime_ns())
        return self.archive.stat(path)

    def stat_handle(self, fh: int) -> MemberStat:
        """getattr of an open file whose name is gone (unlinked while open)."""
        entry = self.handle(fh).entry
        if entry.wfile is None:
            return self.archive.stat(entry.path)
        with entry.fd_lock:
            wfile = entry.wfile
            size, mtime_ns = wfile.size(), wfile.local_mtime_ns()
        return MemberStat(_stat.S_IFREG | entry.mode_bits, size,
                          entry.mtime_ns if entry.mtime_ns is not None else mtime_ns)

    def listdir(self, path: str) -> List[Tuple[str, int]]:
        """The archive's listing (in archive order) plus new files not
        copied back yet."""
        listing = self.archive.listdir(path)
        prefix = path + "/" if path else ""
        with self._table_lock:
            new = [p[len(prefix):] for p, e in self._table.items()
                   if not e.in_archive and not e.unlinked and p.startswith(prefix)
                   and "/" not in p[len(prefix):]] if self._table else []
        if new:
            known = {name for name, _ in listing}
            listing = list(listing)
            listing.extend((name, _stat.S_IFREG) for name in new if name not in known)
        return listing

    def chmod(self, path: str, mode: int) -> None:
        self._check_writable()
        entry = self._live_entry(path)
        if entry is None:
            self.on_change()
            self.archive.chmod(path, mode & 0o7777)
            return
        with entry.lock:
            if not (entry.dirty or not entry.in_archive):
                self.on_change()
                self.archive.chmod(path, mode & 0o7777)
            entry.mode_bits = mode & 0o7777

    def utime(self, path: str, mtime_ns: int) -> None:
        self._check_writable()
        entry = self._live_entry(path)
        if entry is None:
            self.on_change()
            self.archive.utime(path, mtime_ns)
            return
        with entry.lock:
            if not (entry.dirty or not entry.in_archive):
                self.on_change()
                self.archive.utime(path, mtime_ns)
            entry.mtime_ns = mtime_ns

    # -- namespace -----------------------------------------------------------

    def _entries_below(self, top: str) -> List[Entry]:
        with self._table_lock:
            return sorted((e for p, e in self._table.items() if _below(p, top)),
                          key=lambda e: e.path)

    @contextlib.contextmanager
    def _locked(self, entries: List[Entry]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for entry in entries:
                stack.enter_context(entry.lock)
            yield

    def _keep_content(self, entry: Entry) -> None:
        """(caller holds the entry's lock) Before the archive loses the member
        of an open entry, copy it locally: its handles must go on working."""
        if entry.handles and entry.wfile is None and entry.in_archive:
            self._materialize(entry)

    def _detach(self, entry: Entry) -> None:
        """Take an entry out of the table as removed (caller holds its lock);
        open handles keep working on it until released."""
        with self._table_lock:
            if self._table.get(entry.path) is entry:
                del self._table[entry.path]
            entry.unlinked = True
            idle = entry.handles == 0
            if idle:
                entry.retired = True
        if idle:
            self._drop_local(entry)

    def mkdir(self, path: str, mode: int) -> None:
        self._check_writable()
        with self._namespace:
            if self._live_entry(path) is not None:
                raise FileAlreadyExistsError("exists already: %s" % path)
            self.on_change()
            self.archive.mkdir(path, mode & 0o7777)

    def symlink(self, target: str, path: str) -> None:
        self._check_writable()
        with self._namespace:
            if self._live_entry(path) is not None:
                raise FileAlreadyExistsError("exists already: %s" % path)
            self.on_change()
            self.archive.symlink(target, path)

    def link(self, target: str, path: str) -> None:
        """A hard link: unsaved content of ``target`` is copied back first."""
        self._check_writable()
        with self._namespace:
            if self._exists(path):
                raise FileAlreadyExistsError("exists already: %s" % path)
            entry = self._live_entry(target)
            if entry is not None:
                with entry.lock:
                    if entry.dirty and not entry.unlinked:
                        self._copy_back_locked(entry, force=True)
            self.on_change()
            self.archive.link(target, path)
        self.cache.changed(path)

    def unlink(self, path: str) -> None:
        self._check_writable()
        with self._namespace:
            entry = self._live_entry(path)
            if entry is None:
                self.on_change()
                self.archive.remove(path)
            else:
                with entry.lock:  # waits for a copy-back under way
                    if entry.in_archive:
                        self._keep_content(entry)
                        self.on_change()
                        self.archive.remove(path)
                    self._detach(entry)
        self.cache.changed(path)

    def rmdir(self, path: str) -> None:
        self._check_writable()
        with self._namespace:
            for entry in self._entries_below(path):
                if entry.path != path and not entry.unlinked:
                    if not entry.in_archive:
                        raise DirectoryNotEmpty("directory not empty: %s" % path)
            self.on_change()
            self.archive.rmdir(path)

    def _exists(self, path: str) -> bool:
        if self._live_entry(path) is not None:
            return True
        try:
            self.archive.stat(path)
        except FileNotFoundError:
            return False
        return True

    def rename(self, old: str, new: str, noreplace: bool = False) -> None:
        """rename(2): settle both sides, let the plugin move, then follow."""
        self._check_writable()
        with self._namespace:
            if noreplace and self._exists(new):
                raise FileAlreadyExistsError("exists already: %s" % new)
            moving = self._entries_below(old)
            replaced = [e for e in self._entries_below(new) if not _below(e.path, old)]
            with self._locked(sorted(moving + replaced, key=lambda e: e.path)):
                for entry in moving + replaced:
                    if entry.dirty and not entry.unlinked:
                        self._copy_back_locked(entry, force=True)
                for entry in replaced:
                    self._keep_content(entry)
                self.on_change()
                self.archive.rename(old, new)
                for entry in replaced:
                    self._detach(entry)
                with self._table_lock:
                    for entry in moving:
                        if self._table.get(entry.path) is entry:
                            del self._table[entry.path]
                    for entry in moving:
                        entry.path = new + entry.path[len(old):]
                        if entry.wfile is not None:
                            entry.wfile.member = entry.path
                        if not entry.unlinked and not entry.retired:
                            self._table[entry.path] = entry
        self.cache.renamed()


def _copy_at_most(src, dst, limit: int) -> None:
    while limit > 0:
        chunk = src.read(min(_COPY_CHUNK, limit))
        if not chunk:
            return
        dst.write(chunk)
        limit -= len(chunk)
