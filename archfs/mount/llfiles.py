"""Low-level requests on files: open, create, read, write, close, sync."""

import ctypes
import errno
import logging
import queue
import threading

from archfs.mount import fusell as ll
from archfs.mount.llcommon import errno_of, request

log = logging.getLogger("archfs.mount")


class FileRequests:
    """Mixed into LowLevelFUSE."""

    @request
    def _open(self, req, ino, fi):
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
        data = self.operations.read(None, size, offset, fi.contents)
        ll.reply_buf(req, data, len(data))

    @request
    def _write(self, req, ino, buf, size, offset, fi):
        written = self.operations.write(None, ctypes.string_at(buf, size), offset, fi.contents)
        ll.reply_write(req, written)

    @request
    def _flush(self, req, ino, fi):
        self.operations.flush(self.inodes.path(ino), fi.contents)
        ll.reply_err(req, 0)

    @request
    def _release(self, req, ino, fi):
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
        path = self.inodes.path(ino)
        worker = self._fsync_worker
        if worker is not None:
            # fi is libfuse's until this returns: the worker gets a copy
            info = ll.fuse_file_info()
            ctypes.pointer(info)[0] = fi.contents
            worker.submit(req, lambda: self.operations.fsync(path, datasync, info))
            return
        self.operations.fsync(path, datasync, fi.contents)
        ll.reply_err(req, 0)


class FsyncWorker:
    """Serves fsync requests in a thread of its own, replying when done,
    so that the mount's one libfuse thread goes on with other requests
    while a file is copied back and committed (libfuse's low-level API
    lets any thread reply). Requests are served in order."""

    def __init__(self):
        self._queue = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="archfs-fsync", daemon=True)
        self._thread.start()

    def submit(self, req, call) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((req, call))

    def drain(self) -> None:
        """Wait until every fsync submitted has been answered (before the
        session that replies go to is destroyed)."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)

    def _run(self) -> None:
        while True:
            req, call = self._queue.get()
            try:
                call()
            except OSError as exc:
                ll.reply_err(req, errno_of(exc))
            except BaseException:
                log.exception("FUSE request fsync failed")
                ll.reply_err(req, errno.EIO)
            else:
                ll.reply_err(req, 0)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
