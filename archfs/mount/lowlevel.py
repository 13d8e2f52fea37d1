"""Serving the mount through libfuse's low-level API.

The same format-blind ``ArchiveOperations`` answers every request: this
module only turns inode-based requests into its path-based, mfusepy-style
calls (an inode table gives each inode's path) and its results into replies.
What the low-level API buys, measured on the bench's trees:

- a listing is built as one buffer in Python (``fuse_dirent`` records packed
  in bulk) instead of one libfuse filler call per entry, and opendir asks
  the kernel to keep it (``cache_readdir`` + ``keep_cache``): a second walk
  of a tree sends no readdir at all. The kernel drops a cached listing
  itself when the directory changes through the mount.
- lookup and create answer with the attributes in the same reply (libfuse's
  high-level API asks the file system again with getattr after create);
- a failed lookup is cached by the kernel for ``negative_timeout`` (also on
  read-write mounts: every change goes through the kernel, which drops the
  negative entry when it creates the name);
- readdirplus carries attributes only while walkers go on to look the
  listed files up (``_PlusPolicy``);
- on read-only mounts opendir answers ENOSYS: the kernel then opens
  directories without a request and caches every listing. (Files are not
  treated so: a member that cannot be read must fail open(2), which the
  kernel would no longer ask about.)
- no per-request path building, locking and dict-to-struct conversion in
  libfuse's high-level layer and mfusepy.

``LowLevelFUSE(operations, mountpoint, **options)`` takes the options
mfusepy's ``FUSE`` takes (mount options, timeouts) and serves until unmounted,
like mfusepy's ``FUSE``.
"""

import ctypes
import errno
import itertools
import logging
import os
import stat as _stat
import struct
import threading
from bisect import bisect_right
from collections import OrderedDict
from itertools import accumulate

from archfs.mount import fusell as ll
from archfs.mount.inodes import InodeTable

log = logging.getLogger("archfs.mount")

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
_NS = 1_000_000_000
# mfusepy options that only libfuse's high-level API knows (or that this
# binding takes as arguments); every other one is a mount option libfuse
# hands to the kernel (fsname, default_permissions, noexec, ...).
_NOT_MOUNT_OPTIONS = frozenset(("foreground", "nothreads", "raw_fi", "hard_remove", "use_ino",
                                "big_writes", "encoding", "errors", "entry_timeout",
                                "attr_timeout", "negative_timeout", "debug"))
_thread_state = threading.local()
# Worker threads. Python runs one at a time, so more threads add GIL
# hand-offs and context switches, not speed: measured on a grep -r, 10
# threads cost twice the CPU of 1 or 2. Two let one request wait (an fsync,
# a slow random read) while the other serves.
MAX_THREADS = 2
# ... except on read-only mounts of local archives, where nothing waits
# long (no fsync, no commit, no network): there one thread serves
# everything. A walker's close sends an asynchronous release that a second
# thread would serve while the first answers the next open, the two handing
# the GIL back and forth; measured on grep -r over 100,000 small files, one
# thread used 25-40% less CPU.
READ_ONLY_THREADS = 1
LISTINGS_KEPT = 16      # read-only mounts: listings kept for readdirs without opendir


def _pin_thread_state() -> None:
    """Keep this libfuse thread's Python thread state for the thread's life
    (ctypes would otherwise make and free one around every callback)."""
    if not getattr(_thread_state, "pinned", False):
        ctypes.pythonapi.PyGILState_Ensure()
        _thread_state.pinned = True


def _errno(exc: BaseException) -> int:
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    return code if isinstance(code, int) and code > 0 else errno.EIO


def _request(method):
    """A request handler: pins the thread state; any exception becomes the
    error reply (the handler replies itself only when it succeeds)."""
    def handler(self, req, *args):
        if not getattr(_thread_state, "pinned", False):
            _pin_thread_state()
        try:
            method(self, req, *args)
        except OSError as exc:
            ll.reply_err(req, _errno(exc))
        except BaseException:
            log.exception("FUSE request %s failed", method.__name__)
            ll.reply_err(req, errno.EIO)
    handler.__name__ = method.__name__
    return handler


class _DirStream:
    """One opendir: the listing as packed dirents, built at the first readdir
    (``entries`` keeps the listing itself for readdirplus)."""

    __slots__ = ("path", "records", "ends", "entries", "bare_plus")

    def __init__(self, path):
        self.path = path
        self.records = None
        self.ends = None
        self.entries = None
        self.bare_plus = None       # (records, ends) as fuse_direntplus without attributes


_DIRENT_STRUCTS = {}
_BARE_PLUS_STRUCTS = {}


def _dirent_struct(namelen: int) -> struct.Struct:
    """fuse_dirent header plus the name, zero-padded to 8 bytes."""
    s = _DIRENT_STRUCTS.get(namelen)
    if s is None:
        padded = (24 + namelen + 7) & ~7
        s = _DIRENT_STRUCTS[namelen] = struct.Struct("<QQII%ds" % (padded - 24))
    return s


def _bare_plus_struct(namelen: int) -> struct.Struct:
    """fuse_direntplus without attributes (a zero fuse_entry_out), then the dirent."""
    s = _BARE_PLUS_STRUCTS.get(namelen)
    if s is None:
        padded = (24 + namelen + 7) & ~7
        s = _BARE_PLUS_STRUCTS[namelen] = struct.Struct(
            "<%dxQQII%ds" % (ll.ENTRY_OUT.size, padded - 24))
    return s


def pack_dirents(entries, encoding="utf-8", errors="surrogateescape", plus=False):
    """(records, ends): each (name, st_mode) entry as a packed fuse_dirent
    (``plus``: a fuse_direntplus without attributes) whose offset is its
    index + 1, and the running end of each record."""
    records = []
    append = records.append
    unknown = ll.UNKNOWN_INO
    cached = _BARE_PLUS_STRUCTS if plus else _DIRENT_STRUCTS
    make = _bare_plus_struct if plus else _dirent_struct
    for index, entry in enumerate(entries, 1):
        name, mode = entry[0], entry[1]
        raw = name.encode(encoding, errors)
        n = len(raw)
        s = cached.get(n) or make(n)
        append(s.pack(entry[2] if len(entry) > 2 else unknown, index, n,
                      (mode & 0o170000) >> 12, raw))
    return records, list(accumulate(map(len, records)))


class _PlusPolicy:
    """Whether a readdirplus reply should carry attributes.

    Attributes cost a stat per entry; they pay when the walker then looks
    the files up (``ls -l``, ``grep -r`` and ``tar`` do; ``find`` looks up
    only directories, to descend). Listings go out bare while fewer than
    half of the files (not directories) listed bare are looked up afterwards; once more are, listings carry attributes, and
    every ``PROBE``-th directory still goes out bare to keep measuring.
    A plain (bare) reply to readdirplus is what the kernel gets from a
    readdir, so ``find`` costs what it would without readdirplus.
    """

    PROBE = 16
    WINDOW = 4096

    def __init__(self):
        self.bare = 0           # entries listed without attributes ...
        self.hits = 0           # ... and lookups below them afterwards
        self.recent = OrderedDict()     # directories listed bare lately
        self.count = 0

    learning = True

    def with_attributes(self, ino: int) -> bool:
        self.count += 1
        if self.bare < 32 or self.hits * 2 < self.bare:
            return False
        return self.count % self.PROBE != 0

    def listed_bare(self, ino: int, entries: int) -> None:
        self.bare += entries
        if self.bare > self.WINDOW:
            self.bare //= 2
            self.hits //= 2
        recent = self.recent
        recent[ino] = True
        recent.move_to_end(ino)
        if len(recent) > 256:
            recent.popitem(last=False)

    def looked_up(self, parent: int) -> None:
        if parent in self.recent:
            self.hits += 1


class LowLevelFUSE:
    """Mounts ``operations`` at ``mountpoint`` and serves until unmounted."""

    def __init__(self, operations, mountpoint, raw_fi=True, foreground=True,
                 nothreads=False, encoding="utf-8", errors="surrogateescape",
                 entry_timeout=1.0, attr_timeout=1.0, negative_timeout=0.0, **options):
        self.operations = operations
        self.encoding, self.errors = encoding, errors
        self.entry_timeout = float(entry_timeout)
        self.attr_timeout = float(attr_timeout)
        self.negative_timeout = float(negative_timeout)
        self.read_only = bool(options.get("ro"))
        self.inodes = InodeTable()
        self._no_opendir = False        # set in init where the kernel allows it
        self._listings = OrderedDict()  # inode -> _DirStream, without opendir
        self._listings_lock = threading.Lock()
        self._plus = _PlusPolicy()
        self._valid = (int(self.entry_timeout), int(self.attr_timeout),
                       int(self.entry_timeout % 1 * _NS), int(self.attr_timeout % 1 * _NS))
        self._dirs = {}
        self._handles = {}      # inode -> open file handles (for an unlinked inode's stat)
        self._open_count = {}   # read-only mounts: inode -> open handles
        self._store_pages = False   # push small files' content at open (see _push_pages)
        self._se = None
        self._vec = ll.fuse_bufvec(1, 0, 0)
        self._dir_fh = itertools.count(1)
        self._uid, self._gid = os.getuid(), os.getgid()
        self._callbacks = []
        self._negative = ll.ENTRY.pack(0, 0, *([0] * len(ll.STAT_ORDER)), 0.0,
                                       self.negative_timeout)
        # who makes a file: libfuse's high-level fuse_get_context() knows
        # nothing in the low-level API, so the requests that make names
        # record their caller here (``_caller``) for ArchiveOperations
        self._request_caller = threading.local()
        operations.caller_context = self._caller_context
        self._serve(os.fsencode(mountpoint), self._mount_args(options), nothreads)

    # -- session ---------------------------------------------------------------

    @staticmethod
    def _mount_args(options):
        opts = []
        for key, value in options.items():
            if key in _NOT_MOUNT_OPTIONS:
                continue
            if value is True:
                opts.append(key)
            elif value not in (None, False):
                opts.append("%s=%s" % (key, value))
        return [b"archfs"] + ([b"-o", ",".join(opts).encode()] if opts else [])

    def _ops(self):
        ops = ll.fuse_lowlevel_ops()
        for name, kind in ll.CALLBACK_TYPES.items():
            method = getattr(self, "_" + name, None)
            if method is None:
                continue
            callback = kind(method)
            self._callbacks.append(callback)       # libfuse holds raw pointers
            setattr(ops, name, ctypes.cast(callback, ctypes.c_void_p))
        return ops

    def _serve(self, mountpoint: bytes, argv, nothreads: bool) -> None:
        args = ll.fuse_args(len(argv), (ctypes.c_char_p * len(argv))(*argv), 0)
        ops = self._ops()
        se = ll.session_new(ctypes.byref(args), ctypes.byref(ops), ctypes.sizeof(ops), None)
        if not se:
            raise RuntimeError("libfuse could not start a session (bad mount options?)")
        status = 0
        try:
            if ll.set_signal_handlers(se) != 0:
                raise RuntimeError("libfuse could not install its signal handlers")
            try:
                if ll.session_mount(se, mountpoint) != 0:
                    raise RuntimeError("libfuse could not mount %s" % os.fsdecode(mountpoint))
                try:
                    single = nothreads or (self.read_only and READ_ONLY_THREADS == 1
                                           and not getattr(self.operations, "remote", False))
                    self._se = se
                    self._store_pages = (single and self.read_only
                                         and ll.notify_store is not None)
                    status = self._loop(se, single)
                finally:
                    ll.session_unmount(se)
            finally:
                ll.remove_signal_handlers(se)
        finally:
            ll.session_destroy(se)      # calls destroy (the final commit) if init ran
        if status != 0:
            raise RuntimeError(status)

    @staticmethod
    def _loop(se, nothreads: bool) -> int:
        if nothreads:
            return ll.session_loop(se)
        if ll.loop_mt_312 is not None and ll.loop_cfg_create is not None:
            cfg = ll.loop_cfg_create()
            try:
                ll.loop_cfg_set_idle(cfg, MAX_THREADS)
                if ll.loop_cfg_set_max is not None:
                    ll.loop_cfg_set_max(cfg, MAX_THREADS)
                return ll.loop_mt_312(se, cfg)
            finally:
                ll.loop_cfg_destroy(cfg)
        config = ll.fuse_loop_config_v1(0, MAX_THREADS)
        return ll.loop_mt_32(se, ctypes.byref(config))

    # -- helpers -----------------------------------------------------------------

    def _stat_fields(self, attrs: dict, ino: int):
        """In STAT_ORDER. st_ino is the plugin's number where it numbers
        inodes (hard links share one), else the kernel's inode number."""
        mtime = attrs.get("st_mtime", 0)
        atime = attrs.get("st_atime", mtime)
        ctime = attrs.get("st_ctime", mtime)
        return (attrs.get("st_ino", ino), attrs.get("st_nlink", 1), attrs["st_mode"],
                attrs.get("st_uid", self._uid), attrs.get("st_gid", self._gid),
                attrs.get("st_rdev", 0), attrs.get("st_size", 0), attrs.get("st_blocks", 0),
                atime // _NS, atime % _NS, mtime // _NS, mtime % _NS, ctime // _NS, ctime % _NS)

    def _entry(self, parent: int, name: str, attrs: dict):
        """(inode, packed fuse_entry_param); the inode's lookup count is raised."""
        ino = self.inodes.remember(parent, name)
        return ino, ll.ENTRY.pack(ino, 0, *self._stat_fields(attrs, ino),
                                  self.attr_timeout, self.entry_timeout)

    def _reply_entry(self, req, parent: int, name: str, attrs: dict) -> None:
        ino, entry = self._entry(parent, name, attrs)
        if ll.reply_entry(req, entry) != 0:        # the request was interrupted
            self.inodes.forget(ino, 1)

    def _name(self, raw: bytes) -> str:
        return raw.decode(self.encoding, self.errors)

    def _path(self, ino: int) -> str:
        path = self.inodes.path(ino)
        if path is None:
            raise FileNotFoundError(errno.ENOENT, "no such inode %d" % ino)
        return path

    def _child(self, parent: int, name: str) -> str:
        path = self.inodes.child_path(parent, name)
        if path is None:
            raise FileNotFoundError(errno.ENOENT, "no such directory inode %d" % parent)
        return path

    @staticmethod
    def _fi(fi):
        return fi.contents if fi else None

    def _caller(self, req) -> None:
        ctx = ll.req_ctx(req).contents
        self._request_caller.ctx = (ctx.uid, ctx.gid, ctx.pid)

    def _caller_context(self):
        """(uid, gid, pid) of the request this thread serves."""
        return getattr(self._request_caller, "ctx", (self._uid, self._gid, 0))

    def _fi_of(self, ino: int, fi):
        """The request's file info, or for an inode whose name is gone (fstat
        of a removed file comes without one) one of its open handles."""
        if fi:
            return fi.contents
        handles = self._handles.get(ino)
        if handles:
            info = ll.fuse_file_info()
            info.fh = next(iter(handles))
            return info
        return None

    def _opened(self, ino: int, fh: int) -> None:
        self._handles.setdefault(ino, set()).add(fh)

    def _closed(self, ino: int, fh: int) -> None:
        handles = self._handles.get(ino)
        if handles is not None:
            handles.discard(fh)
            if not handles:
                self._handles.pop(ino, None)

    # -- life cycle ----------------------------------------------------------------

    def _init(self, userdata, conn):
        _pin_thread_state()
        c = conn.contents
        want = c.want
        # every listing is asked with readdirplus; _PlusPolicy decides
        # whether it carries attributes
        want |= ll.CAP_READDIRPLUS
        want &= ~ll.CAP_READDIRPLUS_AUTO
        want &= ~(ll.CAP_SPLICE_READ | ll.CAP_SPLICE_WRITE | ll.CAP_SPLICE_MOVE)
        c.want = want
        if self.read_only and c.capable & ll.CAP_NO_OPENDIR_SUPPORT:
            self._no_opendir = True
        try:
            self.operations.init_with_config(None, None)
        except BaseException:
            log.exception("init failed")

    def _destroy(self, userdata):
        _pin_thread_state()
        try:
            self.operations.destroy(None)
        except BaseException:
            log.exception("destroy failed")

    # -- names -----------------------------------------------------------------

    @_request
    def _lookup(self, req, parent, raw):
        name = self._name(raw)
        path = self._child(parent, name)
        try:
            attrs = self.operations.getattr(path)
        except FileNotFoundError:
            if self.negative_timeout > 0:
                ll.reply_entry(req, self._negative)
                return
            raise
        except OSError as exc:
            if exc.errno == errno.ENOENT and self.negative_timeout > 0:
                ll.reply_entry(req, self._negative)
                return
            raise
        self._reply_entry(req, parent, name, attrs)
        if not _stat.S_ISDIR(attrs["st_mode"]):
            self._plus.looked_up(parent)

    def _forget(self, req, ino, nlookup):
        if not getattr(_thread_state, "pinned", False):
            _pin_thread_state()
        self.inodes.forget(ino, nlookup)
        ll.reply_none(req)

    def _forget_multi(self, req, count, forgets):
        if not getattr(_thread_state, "pinned", False):
            _pin_thread_state()
        forget = self.inodes.forget
        for i in range(count):
            item = forgets[i]
            forget(item.ino, item.nlookup)
        ll.reply_none(req)

    @_request
    def _getattr(self, req, ino, fi):
        path = self.inodes.path(ino)
        fh = self._fi_of(ino, fi) if path is None else self._fi(fi)
        if path is None and fh is None:
            raise FileNotFoundError(errno.ENOENT, "no such inode %d" % ino)
        attrs = self.operations.getattr(path, fh)
        ll.reply_attr(req, ll.STAT.pack(*self._stat_fields(attrs, ino)), self.attr_timeout)

    @_request
    def _setattr(self, req, ino, attr, to_set, fi):
        ops = self.operations
        path = self.inodes.path(ino)
        fh = self._fi_of(ino, fi)
        if path is None and fh is None:
            raise FileNotFoundError(errno.ENOENT, "no such inode %d" % ino)
        st = attr.contents
        # an inode whose name is gone (fchmod, fchown, futimens of a removed
        # file) is changed through its open handle
        by_handle = () if path is not None else (fh,)
        if to_set & ll.SET_ATTR_MODE:
            ops.chmod(path, st.st_mode, *by_handle)
        if to_set & (ll.SET_ATTR_UID | ll.SET_ATTR_GID):
            ops.chown(path, st.st_uid if to_set & ll.SET_ATTR_UID else -1,
                      st.st_gid if to_set & ll.SET_ATTR_GID else -1, *by_handle)
        if to_set & ll.SET_ATTR_SIZE:
            ops.truncate(path, st.st_size, fh)
        if to_set & (ll.SET_ATTR_ATIME | ll.SET_ATTR_MTIME):
            ops.utimens(path, (self._time(st.st_atimespec, to_set, ll.SET_ATTR_ATIME,
                                          ll.SET_ATTR_ATIME_NOW),
                               self._time(st.st_mtimespec, to_set, ll.SET_ATTR_MTIME,
                                          ll.SET_ATTR_MTIME_NOW)), *by_handle)
        attrs = ops.getattr(path, fh)
        ll.reply_attr(req, ll.STAT.pack(*self._stat_fields(attrs, ino)), self.attr_timeout)

    @staticmethod
    def _time(ts, to_set, given, now):
        """What mfusepy passes utimens: ns, or UTIME_NOW / UTIME_OMIT."""
        if to_set & now:
            return UTIME_NOW
        if to_set & given:
            return ts.tv_sec * _NS + ts.tv_nsec
        return UTIME_OMIT

    @_request
    def _readlink(self, req, ino):
        target = self.operations.readlink(self._path(ino))
        ll.reply_readlink(req, target.encode(self.encoding, self.errors))

    @_request
    def _mkdir(self, req, parent, raw, mode):
        name = self._name(raw)
        path = self._child(parent, name)
        self._caller(req)
        self.operations.mkdir(path, mode)
        self._reply_entry(req, parent, name, self.operations.getattr(path))

    @_request
    def _mknod(self, req, parent, raw, mode, rdev):
        name = self._name(raw)
        path = self._child(parent, name)
        self._caller(req)
        self.operations.mknod(path, mode, rdev)
        self._reply_entry(req, parent, name, self.operations.getattr(path))

    @_request
    def _symlink(self, req, target, parent, raw):
        name = self._name(raw)
        path = self._child(parent, name)
        self._caller(req)
        self.operations.symlink(path, self._name(target))
        self._reply_entry(req, parent, name, self.operations.getattr(path))

    @_request
    def _link(self, req, ino, new_parent, raw):
        name = self._name(raw)
        path = self._child(new_parent, name)
        self.operations.link(path, self._path(ino))     # mfusepy order: new name first
        self._reply_entry(req, new_parent, name, self.operations.getattr(path))

    @_request
    def _unlink(self, req, parent, raw):
        name = self._name(raw)
        self.operations.unlink(self._child(parent, name))
        self.inodes.unlinked(parent, name)
        ll.reply_err(req, 0)

    @_request
    def _rmdir(self, req, parent, raw):
        name = self._name(raw)
        self.operations.rmdir(self._child(parent, name))
        self.inodes.unlinked(parent, name)
        ll.reply_err(req, 0)

    @_request
    def _rename(self, req, parent, raw, new_parent, new_raw, flags):
        name, new_name = self._name(raw), self._name(new_raw)
        self.operations.rename(self._child(parent, name), self._child(new_parent, new_name),
                               flags)
        self.inodes.moved(parent, name, new_parent, new_name)
        ll.reply_err(req, 0)

    # -- files -------------------------------------------------------------------

    @_request
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

    @_request
    def _create(self, req, parent, raw, mode, fi):
        name = self._name(raw)
        path = self._child(parent, name)
        ops = self.operations
        info = fi.contents
        self._caller(req)
        ops.create(path, mode, info)
        try:
            attrs = ops.getattr(path, info)
        except BaseException:
            ops.release(path, info)
            raise
        ino, entry = self._entry(parent, name, attrs)
        self._opened(ino, info.fh)
        if ll.reply_create(req, entry, fi) != 0:   # interrupted: the kernel drops it
            self.inodes.forget(ino, 1)
            self._closed(ino, info.fh)
            ops.release(path, info)

    @_request
    def _read(self, req, ino, size, offset, fi):
        data = self.operations.read(None, size, offset, fi.contents)
        ll.reply_buf(req, data, len(data))

    @_request
    def _write(self, req, ino, buf, size, offset, fi):
        written = self.operations.write(None, ctypes.string_at(buf, size), offset, fi.contents)
        ll.reply_write(req, written)

    @_request
    def _flush(self, req, ino, fi):
        self.operations.flush(self.inodes.path(ino), fi.contents)
        ll.reply_err(req, 0)

    @_request
    def _release(self, req, ino, fi):
        info = fi.contents
        if self.read_only:
            self._closed_read_only(ino)
        else:
            self._closed(ino, info.fh)
        self.operations.release(None, info)
        ll.reply_err(req, 0)

    @_request
    def _fallocate(self, req, ino, mode, offset, length, fi):
        self.operations.fallocate(self.inodes.path(ino), mode, offset, length, fi.contents)
        ll.reply_err(req, 0)

    @_request
    def _fsync(self, req, ino, datasync, fi):
        self.operations.fsync(self.inodes.path(ino), datasync, fi.contents)
        ll.reply_err(req, 0)

    # -- directories -------------------------------------------------------------

    def _stream(self, ino: int, fi) -> _DirStream:
        """The listing a readdir continues: its opendir's, or on a read-only
        mount without opendir requests the inode's (listings never change)."""
        fh = fi.contents.fh
        if fh == 0 and self._no_opendir:
            with self._listings_lock:
                stream = self._listings.get(ino)
                if stream is not None:
                    self._listings.move_to_end(ino)
                    return stream
                stream = self._listings[ino] = _DirStream(self._path(ino))
                if len(self._listings) > LISTINGS_KEPT:
                    self._listings.popitem(last=False)
                return stream
        stream = self._dirs.get(fh)
        if stream is None:
            raise OSError(errno.EBADF, "bad directory handle")
        return stream

    @_request
    def _opendir(self, req, ino, fi):
        if self._no_opendir:
            # read-only: the kernel takes ENOSYS as "directories open without
            # a request" from now on, and caches every listing it reads
            ll.reply_err(req, errno.ENOSYS)
            return
        path = self._path(ino)
        info = fi.contents
        fh = next(self._dir_fh)
        self._dirs[fh] = _DirStream(path)
        info.fh = fh
        # Let the kernel keep listings; it drops one itself when the
        # directory changes through the mount.
        info.cache_readdir = 1
        info.keep_cache = 1
        if ll.reply_open(req, fi) != 0:
            self._dirs.pop(fh, None)

    @_request
    def _readdir(self, req, ino, size, offset, fi):
        stream = self._stream(ino, fi)
        if stream.records is None or (offset == 0 and not self._no_opendir):
            entries = self.operations.readdir(stream.path, fi.contents)
            stream.records, stream.ends = pack_dirents(entries, self.encoding, self.errors)
        self._reply_listing(req, (stream.records, stream.ends), size, offset)

    @staticmethod
    def _reply_listing(req, listing, size: int, offset: int) -> int:
        """Reply with the records from ``offset`` on that fit in ``size``
        bytes; returns the index after the last one sent."""
        records, ends = listing
        start = ends[offset - 1] if offset > 0 else 0
        stop = bisect_right(ends, start + size, offset)
        data = b"".join(records[offset:stop])
        ll.reply_buf(req, data, len(data))
        return stop

    @_request
    def _readdirplus(self, req, ino, size, offset, fi):
        """A listing, with each entry's attributes when walkers go on to
        look entries up (ls -l, grep -r, tar: the kernel then needs no lookup
        for them), as plain entries when they do not (find)."""
        stream = self._stream(ino, fi)
        ops = self.operations
        if stream.entries is None or (offset == 0 and not self._no_opendir):
            stream.entries = ops.readdir(stream.path, fi.contents)
            stream.bare_plus = None
        if not self._plus.with_attributes(ino):
            if stream.bare_plus is None:
                stream.bare_plus = pack_dirents(stream.entries, self.encoding, self.errors,
                                                plus=True)
            stop = self._reply_listing(req, stream.bare_plus, size, offset)
            if self._plus.learning:
                entries = stream.entries
                self._plus.listed_bare(ino, sum(1 for i in range(offset, stop)
                                                if entries[i][1] & 0o170000 != 0o040000))
            return
        base = stream.path if stream.path.endswith("/") else stream.path + "/"
        entry_s, attr_s, entry_ns, attr_ns = self._valid
        pack = ll.ENTRY_OUT.pack
        remember = self.inodes.remember
        parts, used = [], 0
        entries = stream.entries
        for index in range(offset, len(entries)):
            name, mode = entries[index][0], entries[index][1]
            raw = name.encode(self.encoding, self.errors)
            dirent = _dirent_struct(len(raw))
            if used + 128 + dirent.size > size:
                break
            attrs = None
            if name not in (".", ".."):
                try:
                    attrs = ops.getattr(base + name)
                except OSError:
                    attrs = None        # gone meanwhile: a bare entry
            if attrs is None:
                head = pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, mode, 0, 0, 0, 0, 0, 0)
                child = ll.UNKNOWN_INO
            else:
                child = remember(ino, name)
                (st_ino, nlink, st_mode, uid, gid, rdev, st_size, blocks, a_s, a_ns, m_s, m_ns,
                 c_s, c_ns) = self._stat_fields(attrs, child)
                head = pack(child, 0, entry_s, attr_s, entry_ns, attr_ns, st_ino, st_size,
                            blocks, a_s, m_s, c_s, a_ns, m_ns, c_ns, st_mode, nlink, uid, gid,
                            rdev & 0xFFFFFFFF, 0, 0)
            parts.append(head)
            parts.append(dirent.pack(child if attrs is None else st_ino, index + 1, len(raw),
                                     (mode & 0o170000) >> 12, raw))
            used += 128 + dirent.size
        data = b"".join(parts)
        ll.reply_buf(req, data, len(data))

    @_request
    def _releasedir(self, req, ino, fi):
        self._dirs.pop(fi.contents.fh, None)
        ll.reply_err(req, 0)

    @_request
    def _fsyncdir(self, req, ino, datasync, fi):
        self.operations.fsyncdir(self.inodes.path(ino), datasync, fi.contents)
        ll.reply_err(req, 0)

    # -- the rest ----------------------------------------------------------------

    @_request
    def _statfs(self, req, ino):
        figures = self.operations.statfs(self.inodes.path(ino) or "/")
        st = ll.c_statvfs()
        for key, value in figures.items():
            if hasattr(st, key):
                setattr(st, key, value)
        ll.reply_statfs(req, ctypes.byref(st))

    @_request
    def _access(self, req, ino, mask):
        self.operations.access(self._path(ino), mask)
        ll.reply_err(req, 0)

    @staticmethod
    def _reply_sized(req, value: bytes, size: int) -> None:
        """getxattr/listxattr: the length when asked with size 0, else the bytes."""
        if size == 0:
            ll.reply_xattr(req, len(value))
        elif len(value) > size:
            ll.reply_err(req, errno.ERANGE)
        else:
            ll.reply_buf(req, value, len(value))

    @_request
    def _getxattr(self, req, ino, raw, size):
        if not self.operations.xattrs:
            # ENOSYS: the kernel stops asking for the rest of the mount. It
            # asks for security.capability before every write to a file it
            # has not checked yet, one round trip per file a cp -r makes.
            ll.reply_err(req, errno.ENOSYS)
            return
        value = self.operations.getxattr(self._path(ino), self._name(raw))
        self._reply_sized(req, value, size)

    @_request
    def _listxattr(self, req, ino, size):
        names = self.operations.listxattr(self._path(ino))
        self._reply_sized(req, b"".join(n.encode(self.encoding, self.errors) + b"\0"
                                        for n in names), size)


def available() -> bool:
    """Whether the low-level binding can run on the loaded libfuse."""
    return ll.VERSION[0] == 3 and (ll.loop_mt_312 is not None or ll.loop_mt_32 is not None)
