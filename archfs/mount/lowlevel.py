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
- readdirplus carries the subdirectories' attributes (walkers descend
  without a lookup), the files' only while walkers go on to look them up
  (``_PlusPolicy``); at the end of a listing a read-only mount packs the one
  a depth-first walker will ask next;
- on read-only mounts opendir answers ENOSYS: the kernel then opens
  directories without a request and caches every listing; open answers
  ENOSYS too unless a member needs a password (``llfiles``), so files are
  opened and closed without requests and read by one READ each.
- no per-request path building, locking and dict-to-struct conversion in
  libfuse's high-level layer and mfusepy.

``LowLevelFUSE(operations, mountpoint, **options)`` takes the options
mfusepy's ``FUSE`` takes (mount options, timeouts) and serves until unmounted,
like mfusepy's ``FUSE``.
"""

import ctypes
import errno
import itertools
import os
import threading
from collections import OrderedDict

from archfs.engine import cpus
from archfs.mount import fusell as ll
from archfs.mount.inodes import InodeTable
from archfs.mount.llcommon import _NS, log, pin_thread_state, request
from archfs.mount.lldirs import DirRequests, _PlusPolicy, pack_dirents  # noqa: F401 (tests)
from archfs.mount.llfiles import FileRequests
from archfs.mount.llnames import NameRequests

# mfusepy options that only libfuse's high-level API knows (or that this
# binding takes as arguments); every other one is a mount option libfuse
# hands to the kernel (fsname, default_permissions, noexec, ...).
_NOT_MOUNT_OPTIONS = frozenset(("foreground", "nothreads", "raw_fi", "hard_remove", "use_ino",
                                "big_writes", "encoding", "errors", "entry_timeout",
                                "attr_timeout", "negative_timeout", "debug",
                                "file_readahead"))
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
# Read-write mounts keep two: the second thread serves one file's release
# while the first takes the next file's requests, and a slow request (an
# fsync's commit, the first write to a big member, which copies it out)
# does not hold up every other. One thread, with fsync answered from a
# helper thread, was tried and removed: on cp -r of 10,000 small files it
# measured no better (alternating runs, 2026-12-03: 4.71 s against 4.22 s
# median, the same daemon CPU) and on a quiet machine worse (6.1-7.0 s
# against 5.5-5.8 s).


class LowLevelFUSE(NameRequests, FileRequests, DirRequests):
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
        self.file_readahead = bool(options.get("file_readahead", True))
        self.inodes = InodeTable()
        self._no_opendir = False        # set in init where the kernel allows it
        self._listings = OrderedDict()  # inode -> _DirStream, without opendir
        self._listings_lock = threading.Lock()
        self._next_sibling = {}         # subdirectory inode -> the next one listed
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
                    single = nothreads or self._one_thread()
                    self._se = se
                    self._store_pages = (single and self.read_only
                                         and ll.notify_store is not None)
                    if not self.read_only and cpus.choose_home() is not None:
                        cpus.pin_here()     # the loop's threads share it (engine/cpus.py)
                    status = self._loop(se, single)
                    cpus.spread_here()
                finally:
                    ll.session_unmount(se)
            finally:
                ll.remove_signal_handlers(se)
        finally:
            ll.session_destroy(se)      # calls destroy (the final commit) if init ran
        if status != 0:
            raise RuntimeError(status)

    def _one_thread(self) -> bool:
        """Whether one libfuse thread serves the mount (READ_ONLY_THREADS;
        read-write and remote mounts keep MAX_THREADS)."""
        if getattr(self.operations, "remote", False) or not self.read_only:
            return False
        return READ_ONLY_THREADS == 1

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
        pin_thread_state()
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
        self._init_files(c)
        try:
            self.operations.init_with_config(None, None)
        except BaseException:
            log.exception("init failed")

    def _destroy(self, userdata):
        pin_thread_state()
        self._files_done()
        try:
            self.operations.destroy(None)
        except BaseException:
            log.exception("destroy failed")

    # -- the rest ----------------------------------------------------------------

    @request
    def _statfs(self, req, ino):
        figures = self.operations.statfs(self.inodes.path(ino) or "/")
        st = ll.c_statvfs()
        for key, value in figures.items():
            if hasattr(st, key):
                setattr(st, key, value)
        ll.reply_statfs(req, ctypes.byref(st))

    @request
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

    @request
    def _getxattr(self, req, ino, raw, size):
        if not self.operations.xattrs:
            # ENOSYS: the kernel stops asking for the rest of the mount. It
            # asks for security.capability before every write to a file it
            # has not checked yet, one round trip per file a cp -r makes.
            ll.reply_err(req, errno.ENOSYS)
            return
        value = self.operations.getxattr(self._path(ino), self._name(raw))
        self._reply_sized(req, value, size)

    @request
    def _listxattr(self, req, ino, size):
        names = self.operations.listxattr(self._path(ino))
        self._reply_sized(req, b"".join(n.encode(self.encoding, self.errors) + b"\0"
                                        for n in names), size)


def available() -> bool:
    """Whether the low-level binding can run on the loaded libfuse."""
    return ll.VERSION[0] == 3 and (ll.loop_mt_312 is not None or ll.loop_mt_32 is not None)
