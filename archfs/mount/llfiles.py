"""Low-level requests on files: open, create, read, write, close, sync.

Read-only local mounts answer OPEN with ENOSYS (``no_open``): the kernel
then opens files without asking, sends no RELEASE, and keeps their pages
across opens (FOPEN_KEEP_CACHE is its default for such files); FLUSH,
answered ENOSYS as well, stops too. A walker that reads every file (grep -r,
tar) then costs one request per small file, its READ, where it cost an
OPEN and a RELEASE, and a second walk costs none. A READ comes without a
handle, so the file is found by its inode's path: a small member is decoded
and checked whole (``operations.content``), served and dropped; a larger
one keeps a reader in a short LRU for the reads that follow.

What the user sees change: a damaged member fails read(2) with EIO, as a
disk's bad sector does, where it failed open(2). Archives with encrypted
members keep OPEN, so a missing or wrong password is still refused at
open(2) with EACCES, the error a program expects there.
"""

import ctypes
import errno
import logging
import os
from collections import OrderedDict

from archfs.mount import fusell as ll
from archfs.mount.llcommon import request
from archfs.mount.pushahead import PushAhead

log = logging.getLogger("archfs.mount")

# readers kept for files read without an open (no_open): enough for a few
# big members read at once; each may hold a decode-ahead window (a reader
# read to its end is let go at once)
UNOPENED_READERS = 4


class FileRequests:
    """Mixed into LowLevelFUSE."""

    _no_open = False            # set in init (``_init_files``)
    _unopened_readers = None
    _pusher = None              # PushAhead on no_open mounts (see pushahead.py)

    def _init_files(self, conn) -> None:
        """(from init) Serve files without OPEN where that is safe: a
        read-only mount served by one thread (so a kept reader is never
        closed under another thread's read) whose members all open without
        a password."""
        self.file_requests = {"open": 0, "release": 0, "flush": 0, "read": 0}
        self._unopened_readers = OrderedDict()
        self._no_open = bool(self.read_only and self._store_pages
                             and conn.capable & ll.CAP_NO_OPEN_SUPPORT
                             and not self.operations.opens_may_be_refused())
        if self._no_open and self.file_readahead:
            self._pusher = PushAhead(self._se, self.inodes, self.operations)

    @request
    def _open(self, req, ino, fi):
        self.file_requests["open"] += 1
        if self._no_open:
            ll.reply_err(req, errno.ENOSYS)    # and the kernel asks no more
            return
        info = fi.contents
        self.operations.open(self._path(ino), info)
        if self.read_only:
            # nothing is unlinked while open on a read-only mount: no
            # handle bookkeeping for fstat of a removed file, only a count
            count = self._open_count.get(ino, 0)
            if count == 0 and self._store_pages and self.inodes.mark_stored(ino):
                self._push_pages(ino, info)
            self._open_count[ino] = count + 1
            if ll.reply_open(req, fi) != 0:
                self._closed_read_only(ino)
                self.operations.release(None, info)
            return
        self._opened(ino, info.fh)
        if ll.reply_open(req, fi) != 0:        # interrupted: no release will come
            self._closed(ino, info.fh)
            self.operations.release(None, info)

    def _push_pages(self, ino: int, info) -> None:
        """Put a just opened file's content into the kernel's page cache
        when the plugin has it in memory already (a small zip member is
        decoded and checked at open): the reads that follow need no READ
        request, which for a walk that reads every small file (grep -r,
        tar) is one round trip in three.

        Done before the open is answered, by the only thread, and only for
        an inode nobody else has open: no READ of it can then be waiting
        for this thread while holding the page locks the store needs."""
        data = self.operations.loaded(info)
        if not data:
            return
        vec = self._vec
        buf = vec.buf[0]
        buf.size = len(data)
        buf.mem = ctypes.cast(data, ctypes.c_void_p).value
        vec.idx = vec.off = 0
        if ll.notify_store(self._se, ino, 0, ctypes.byref(vec), 0) != 0:
            log.debug("could not store the pages of inode %d", ino)
        buf.mem = None

    def _closed_read_only(self, ino: int) -> None:
        count = self._open_count.pop(ino, 0) - 1
        if count > 0:
            self._open_count[ino] = count

    @request
    def _create(self, req, parent, raw, mode, fi):
        name = self._name(raw)
        path = self._child(parent, name)
        ops = self.operations
        info = fi.contents
        self._caller(req)
        ops.create(path, mode, info)
        try:
            attrs = ops.created_attrs(path, info)
        except BaseException:
            ops.release(path, info)
            raise
        ino, entry = self._entry(parent, name, attrs)
        self._opened(ino, info.fh)
        if ll.reply_create(req, entry, fi) != 0:   # interrupted: the kernel drops it
            self.inodes.forget(ino, 1)
            self._closed(ino, info.fh)
            ops.release(path, info)

    @request
    def _read(self, req, ino, size, offset, fi):
        self.file_requests["read"] += 1
        if not self._no_open:
            data = self.operations.read(None, size, offset, fi.contents)
            ll.reply_buf(req, data, len(data))
            return
        data = self._read_unopened(self._path(ino), size, offset)
        ll.reply_buf(req, data, len(data))
        if offset == 0 and self._pusher is not None:
            self._pusher.read_started(ino)

    def _read_unopened(self, path: str, size: int, offset: int) -> bytes:
        """A READ of a file the kernel opened without asking (no_open)."""
        kept = self._unopened_readers.get(path)
        if kept is not None:
            self._unopened_readers.move_to_end(path)
        else:
            ops = self.operations
            whole = ops.content(path)           # a small file: no handle at all
            if whole is None:
                info = ll.fuse_file_info()
                info.flags = os.O_RDONLY
                ops.open(path, info)
                whole = ops.loaded(info)
                if whole is None:
                    kept = (info, None)
                else:
                    ops.release(None, info)
            if kept is None:
                if offset + size >= len(whole):     # the usual case: all of it
                    return whole[offset:offset + size]
                kept = (None, whole)
            self._keep_unopened(path, kept)
        info, whole = kept
        if whole is not None:
            return whole[offset:offset + size]
        data = self.operations.read(None, size, offset, info)
        if len(data) < size:
            # the end: a reader read through is let go (its decode-ahead
            # thread and window with it); a later read opens it again
            del self._unopened_readers[path]
            self.operations.release(None, info)
        return data

    def _keep_unopened(self, path: str, kept) -> None:
        readers = self._unopened_readers
        readers[path] = kept
        while len(readers) > UNOPENED_READERS:
            _, (info, _whole) = readers.popitem(last=False)
            if info is not None:
                try:
                    self.operations.release(None, info)
                except OSError:     # logged there; this READ is not its business
                    pass

    def _files_done(self) -> None:
        """(at destroy) Close the kept readers; log the file requests served."""
        if self._pusher is not None:
            self._pusher.stop()
            self.file_requests["pushed"] = self._pusher.pushed
            self._pusher = None
        if self._unopened_readers is None:
            return
        log.info("file requests: %s%s", " ".join("%s=%d" % kv for kv in
                                                 self.file_requests.items()),
                 " (served without open)" if self._no_open else "")
        readers, self._unopened_readers = self._unopened_readers, OrderedDict()
        for info, _whole in readers.values():
            if info is not None:
                try:
                    self.operations.release(None, info)
                except OSError:
                    pass

    @request
    def _write(self, req, ino, buf, size, offset, fi):
        written = self.operations.write(None, ctypes.string_at(buf, size), offset, fi.contents)
        ll.reply_write(req, written)

    @request
    def _flush(self, req, ino, fi):
        self.file_requests["flush"] += 1
        if self._no_open:
            ll.reply_err(req, errno.ENOSYS)    # nothing to flush: stop asking
            return
        self.operations.flush(self.inodes.path(ino), fi.contents)
        ll.reply_err(req, 0)

    @request
    def _release(self, req, ino, fi):
        self.file_requests["release"] += 1
        info = fi.contents
        if self.read_only:
            self._closed_read_only(ino)
        else:
            self._closed(ino, info.fh)
        self.operations.release(None, info)
        ll.reply_err(req, 0)

    @request
    def _fallocate(self, req, ino, mode, offset, length, fi):
        self.operations.fallocate(self.inodes.path(ino), mode, offset, length, fi.contents)
        ll.reply_err(req, 0)

    @request
    def _fsync(self, req, ino, datasync, fi):
        self.operations.fsync(self.inodes.path(ino), datasync, fi.contents)
        ll.reply_err(req, 0)

