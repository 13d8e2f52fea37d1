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

Namespace changes (mkdir, unlink, rename, ...) are in ``namespace.py``.
A file unlinked or renamed over while open is renamed by libfuse to a
hidden name (``.fuse_hidden...``, see ``entry.is_hidden_name``); that rename
becomes ``hide``: the member leaves the archive, the entry stays in the
table under the hidden name, never listed and never copied back, so
fstat, ftruncate, fchmod, futimens, read and write go on working until the
last close, after which libfuse unlinks the hidden name and the entry goes.

Owners, times and link counts follow POSIX: new files, directories, links
and special files get the creator's owner when the mount records owners
(``records_owners``), ctime moves with every change of content or
attributes, and a directory's mtime and ctime move when a name in it is
made or removed (kept in ``_dir_times`` while mounted).

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
import stat as _stat
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from archfs.archives.abstractarchive import MemberStat
from archfs.archives.writefileio import SpooledWriteFileIO, WriteFileIO, accepted
from archfs.errors import FileAlreadyExistsError, IsADirectory, ReadOnlyError
from archfs.mount.entry import Entry, Handle
from archfs.mount.kernelcache import KernelCachePolicy
from archfs.mount.namespace import Namespace
from archfs.mount.scratch import Scratch

log = logging.getLogger("archfs.mount")

_COPY_CHUNK = 1 << 20
SPOOL_LIMIT = 256 << 10     # written files up to this size stay in memory until copied back
BATCH_FILES = 64            # copy_back_many: files stored with one archive write ...
BATCH_BYTES = 1 << 20       # ... and their bytes, at most


class OpenFiles(Namespace):
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
        # Pass owners to the plugin (a root mount of a plugin that keeps them).
        self.records_owners = False
        self._dir_times: Dict[str, int] = {}   # directory -> last change of its names

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
                entry.uid, entry.gid = st.uid, st.gid
                if st.ctime_ns is not None and st.ctime_ns != st.mtime_ns:
                    entry.ctime_ns = st.ctime_ns
                if st.atime_ns is not None and st.atime_ns != st.mtime_ns:
                    entry.atime_ns = st.atime_ns     # writes do not change atime
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
        elif not self.archive.writable:
            return self._open_read_only(path), True
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

    def _open_read_only(self, path: str) -> int:
        """An open of a read-only archive: nothing can change, so the handle
        gets an entry of its own, outside the table (no stat, no locks), and
        the kernel may always keep its cached pages."""
        entry = Entry(path, 0, in_archive=True)
        entry.handles = 1
        entry.retired = True        # never in the table: release has nothing to drop
        handle = Handle(entry, False, False)
        handle.reader = self.archive.open(path, "rb")
        return self._register(handle)

    def loaded(self, fh: int) -> Optional[bytes]:
        """An open file's whole content, if its reader has it in memory
        (a plugin reader says so with ``loaded()``); None otherwise."""
        handle = self._handles.get(fh)
        if handle is None or handle.reader is None or handle.entry.wfile is not None:
            return None
        loaded = getattr(handle.reader, "loaded", None)
        return loaded() if loaded is not None else None

    def create(self, path: str, mode: int, flags: int, owner=None) -> int:
        """open(2) with O_CREAT: a new file, or the existing one (cut only
        with O_TRUNC) when another process made it first. ``owner`` is the
        new file's (uid, gid), None where the mount records no owners."""
        self._check_writable()
        with self._namespace:
            with self._table_lock:
                entry = self._table.get(path)
                if entry is not None:
                    self._count(entry, True, +1)
            if entry is None:
                st = self._archive_stat_or_none(path)
                if st is not None:
                    if flags & os.O_EXCL:
                        raise FileAlreadyExistsError("exists already: %s" % path)
                    entry = self._acquire(path, writable=True)
                else:
                    entry = Entry(path, mode & 0o7777, in_archive=False)
                    if owner is not None:
                        entry.uid, entry.gid = owner
                    entry.handles = entry.writers = 1
                    entry.wfile = SpooledWriteFileIO(
                        self.archive, path, self._spill_target(path), dirty=True,
                        mode=entry.mode_bits)
                    with self._table_lock:
                        self._table[path] = entry
                    self._touch_parent(path)
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
        if not handle.entry.retired:
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

    def allocate(self, fh: int, offset: int, length: int) -> None:
        """fallocate mode 0 / posix_fallocate: the file grows to at least
        ``offset + length`` bytes, the new ones zeros, and the space is
        reserved in the local copy where it lives on disk."""
        handle = self.handle(fh)
        if not handle.writable:
            raise OSError(9, "file is not open for writing")  # EBADF
        entry = handle.entry
        with entry.lock:
            wfile = self._materialize(entry)
            if wfile.allocate(offset, length):
                entry.mtime_ns = None
        self.cache.changed(entry.path)

    def truncate_open(self, fh: int, length: int) -> None:
        """ftruncate through an open handle (its name may be gone)."""
        handle = self.handle(fh)
        if not handle.writable:
            raise OSError(9, "file is not open for writing")  # EBADF
        self._truncate_entry(handle.entry, length)

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
                        import shutil
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
        self._pass_attributes(entry, wfile)
        self.on_change()
        wfile.sync()
        entry.in_archive = True
        entry.failure = None
        return True

    def copy_back_many(self, entries: List[Entry],
                       force: bool = False) -> List[Tuple[Entry, object]]:
        """``copy_back`` of several entries; per entry True (copied), False
        (nothing to copy) or the exception that stopped it. Content held in
        memory goes to a plugin that stores several members at once
        (``writedata_many``) in groups of up to ``BATCH_FILES`` files and
        ``BATCH_BYTES`` bytes: one archive write per group, not per file."""
        many = getattr(self.archive, "writedata_many", None)
        results: List[Tuple[Entry, object]] = []
        group: List[Entry] = []
        size = 0
        for entry in entries:
            wfile = entry.wfile
            if many is None or getattr(wfile, "pending", None) is None:
                results.append((entry, self._copy_back_guarded(entry, force)))
                continue
            group.append(entry)
            size += wfile.size()
            if len(group) >= BATCH_FILES or size >= BATCH_BYTES:
                results += self._copy_back_group(group, many, force)
                group, size = [], 0
        if group:
            results += self._copy_back_group(group, many, force)
        return results

    def _copy_back_guarded(self, entry: Entry, force: bool):
        try:
            return self.copy_back(entry, force)
        except Exception as exc:
            return exc

    def _copy_back_group(self, group: List[Entry], many, force: bool):
        """(see copy_back_many) The entries are locked in path order, as
        namespace changes lock them, while their content is stored."""
        results = []
        with self._locked(sorted(group, key=lambda e: e.path)):
            ready, items = [], []
            for entry in group:
                if entry.unlinked or entry.retired or not entry.dirty or \
                        (entry.writers and not force):
                    results.append((entry, False))
                    continue
                wfile = entry.wfile
                self._pass_attributes(entry, wfile)
                item = wfile.pending()
                if item is None:        # moved to a local file meanwhile
                    results.append((entry, self._copy_back_guarded(entry, force)))
                    continue
                ready.append(entry)
                items.append(item)
            if not items:
                return results
            try:
                self.on_change()
                outcomes = many(items)
            except Exception as exc:
                return results + [(entry, exc) for entry in ready]
            for entry, exc in zip(ready, outcomes):
                if exc is None:
                    entry.wfile.stored()
                    entry.in_archive = True
                    entry.failure = None
                results.append((entry, True if exc is None else exc))
        return results

    def _pass_attributes(self, entry: Entry, wfile) -> None:
        """What copy-back records besides the content, from the entry."""
        wfile.mode_bits = entry.mode_bits
        wfile.mtime_ns = entry.mtime_ns
        wfile.owner = entry.owner() if self.records_owners else None
        wfile.atime_ns = entry.atime_ns
        wfile.ctime_ns = entry.ctime_ns

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
        st = self.stat_or_none(path)
        return st if st is not None else self.archive.stat(path)   # raises the plugin's error

    def stat_or_none(self, path: str) -> Optional[MemberStat]:
        """``stat``, or None where nothing has the name."""
        entry = self._live_entry(path)
        if entry is not None:
            shown = entry.stat()
            if shown is not None:
                return shown
        st = self._archive_stat_or_none(path)
        if st is not None and entry is not None and entry.ctime_ns is not None:
            st = st._replace(ctime_ns=max(entry.ctime_ns, st.ctime_ns or st.mtime_ns))
        return st

    def _archive_stat_or_none(self, path: str) -> Optional[MemberStat]:
        """The archive's stat of ``path`` or None, without an exception where
        the plugin can say so (``stat_or_none``)."""
        quiet = getattr(self.archive, "stat_or_none", None)
        if quiet is not None:
            return quiet(path)
        try:
            return self.archive.stat(path)
        except FileNotFoundError:
            return None

    def dir_changed(self, path: str) -> Optional[int]:
        """When a name in directory ``path`` was last made or removed through
        the mount (None: not since it was mounted); getattr shows it as the
        directory's mtime and ctime when it is later than the archive's."""
        return self._dir_times.get(path)

    def is_unlinked(self, path: str) -> bool:
        """Whether ``path`` is an open file's hidden name (see ``hide``)."""
        entry = self._live_entry(path)
        return entry is not None and entry.unlinked

    def stat_entry(self, entry: Entry) -> MemberStat:
        shown = entry.stat()
        return shown if shown is not None else self.archive.stat(entry.path)

    def stat_handle(self, fh: int) -> MemberStat:
        """getattr of an open file whose name is gone (unlinked while open)."""
        return self.stat_entry(self.handle(fh).entry)

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

    def _set_attr(self, path: str, on_archive: Callable[[], None],
                  on_entry: Callable[[Entry], None]) -> None:
        """Apply an attribute change to the archive's member and/or to the
        open entry: the archive when it holds the current content, the entry
        always (its values go to the archive at copy-back)."""
        self._check_writable()
        entry = self._live_entry(path)
        if entry is None:
            self.on_change()
            on_archive()
            return
        with entry.lock:
            if entry.in_archive and not entry.dirty and not entry.unlinked:
                self.on_change()
                on_archive()
            on_entry(entry)
            entry.changed()

    def _set_attr_open(self, fh: int, on_entry: Callable[[Entry], None]) -> None:
        """An attribute change through an open handle: to its entry alone
        when its name is gone (the archive has no member for it), else as
        by path."""
        entry = self.handle(fh).entry
        with entry.lock:
            if not entry.unlinked:
                raise OSError(116, "open file %s still has a name" % entry.path)  # ESTALE
            on_entry(entry)
            entry.changed()

    def chmod_open(self, fh: int, mode: int) -> None:
        self._set_attr_open(fh, lambda e: setattr(e, "mode_bits", mode & 0o7777))

    def chown_open(self, fh: int, uid: int, gid: int) -> None:
        def on_entry(entry):
            entry.uid, entry.gid = uid, gid
        self._set_attr_open(fh, on_entry)

    def utime_open(self, fh: int, mtime_ns: Optional[int], atime_ns: Optional[int]) -> None:
        def on_entry(entry):
            shown = self.stat_entry(entry)
            entry.atime_ns = shown.atime_ns if atime_ns is None else atime_ns
            if mtime_ns is not None:
                entry.mtime_ns = mtime_ns
        self._set_attr_open(fh, on_entry)

    def chmod(self, path: str, mode: int) -> None:
        def on_entry(entry):
            entry.mode_bits = mode & 0o7777
        self._set_attr(path, lambda: self.archive.chmod(path, mode & 0o7777), on_entry)

    def chown(self, path: str, uid: int, gid: int) -> None:
        """Record a new owner (the kernel checked the caller may)."""
        def on_entry(entry):
            entry.uid, entry.gid = uid, gid
        self._set_attr(path, lambda: self.archive.chown(path, uid, gid), on_entry)

    def utime(self, path: str, mtime_ns: Optional[int], atime_ns: Optional[int] = None) -> None:
        """Set mtime and/or atime (None leaves one as it is). A plugin whose
        utime takes no atime keeps none: the atime asked for is dropped."""
        if atime_ns is not None and not accepted(self.archive.utime, {"atime_ns": 1}):
            atime_ns = None
            if mtime_ns is None:
                return

        def on_archive():
            if atime_ns is None:
                self.archive.utime(path, mtime_ns)
            else:
                self.archive.utime(path, mtime_ns, atime_ns)

        def on_entry(entry):
            if atime_ns is None and entry.atime_ns is None:
                entry.atime_ns = self.stat_entry(entry).atime_ns   # keep what was shown
            if mtime_ns is not None:
                entry.mtime_ns = mtime_ns
            if atime_ns is not None:
                entry.atime_ns = atime_ns
        self._set_attr(path, on_archive, on_entry)
        if mtime_ns is not None:
            self._dir_times.pop(path, None)   # a directory's explicit mtime wins

    def _touch_parent(self, path: str) -> None:
        """A name in ``path``'s directory was made or removed just now."""
        self._dir_times[path.rpartition("/")[0]] = time.time_ns()


def _copy_at_most(src, dst, limit: int) -> None:
    while limit > 0:
        chunk = src.read(min(_COPY_CHUNK, limit))
        if not chunk:
            return
        dst.write(chunk)
        limit -= len(chunk)
