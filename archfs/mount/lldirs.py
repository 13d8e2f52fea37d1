"""Low-level requests on directories: listings as packed dirents, with
attributes in readdirplus replies when walkers use them."""

import errno
import struct
from bisect import bisect_right
from collections import OrderedDict
from itertools import accumulate

from archfs.mount import fusell as ll
from archfs.mount.llcommon import request

LISTINGS_KEPT = 16      # read-only mounts: listings kept for readdirs without opendir


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


class DirRequests:
    """Mixed into LowLevelFUSE."""

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

    @request
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

    @request
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

    @request
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

    @request
    def _releasedir(self, req, ino, fi):
        self._dirs.pop(fi.contents.fh, None)
        ll.reply_err(req, 0)

    @request
    def _fsyncdir(self, req, ino, datasync, fi):
        self.operations.fsyncdir(self.inodes.path(ino), datasync, fi.contents)
        ll.reply_err(req, 0)
