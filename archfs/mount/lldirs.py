"""Low-level requests on directories: listings as packed dirents, with
attributes in readdirplus replies where walkers use them."""

import errno
import struct
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from itertools import accumulate

from archfs.mount import fusell as ll
from archfs.mount.llcommon import log, request

LISTINGS_KEPT = 16      # read-only mounts: listings kept for readdirs without opendir
SIBLINGS_KEPT = 1 << 18     # read-only mounts: subdirectory order remembered for walkers
_TYPE = 0o170000


class _DirStream:
    """One opendir: the listing (``entries``, from the operations class) and
    its packed forms, each built at the first readdir that needs it."""

    __slots__ = ("path", "entries", "plain", "bare")

    def __init__(self, path):
        self.path = path
        self.entries = None
        self.plain = None       # Packed fuse_dirents
        self.bare = None        # Packed fuse_direntplus without attributes


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


_PLAIN_PACKS = [_dirent_struct(n).pack for n in range(256)]
_PLUS_PACKS = [_bare_plus_struct(n).pack for n in range(256)]


class Packed:
    """A listing packed for the kernel: ``blob`` holds every entry's record
    (the offset in each is its index + 1), ``ends`` the running end of each
    record, ``dirs`` the indexes of directory entries (``.`` and ``..``
    included) in order."""

    __slots__ = ("blob", "ends", "dirs")

    def __init__(self, blob: bytes, ends: list, dirs: list):
        self.blob, self.ends, self.dirs = blob, ends, dirs

    def cut(self, offset: int, size: int):
        """(start, end, stop): the bytes of the records from index ``offset``
        on that fit in ``size``, and the index after the last of them."""
        ends = self.ends
        start = ends[offset - 1] if offset > 0 else 0
        stop = bisect_right(ends, start + size, offset)
        return start, (ends[stop - 1] if stop > offset else start), stop


def pack_dirents(entries, encoding="utf-8", errors="surrogateescape", plus=False) -> Packed:
    """Each (name, st_mode[, ino]) entry as a fuse_dirent (``plus``: a
    fuse_direntplus without attributes) whose offset is its index + 1."""
    packs = _PLUS_PACKS if plus else _PLAIN_PACKS
    unknown = ll.UNKNOWN_INO
    records, dirs = [], []
    append = records.append
    index = 0
    try:        # the common case, in the tightest loop: (name, mode), names < 256 bytes
        for name, mode in entries:
            raw = name.encode(encoding, errors)
            n = len(raw)
            kind = mode >> 12 & 15
            index += 1
            append(packs[n](unknown, index, n, kind, raw))
            if kind == 4:
                dirs.append(index - 1)
    except (ValueError, IndexError):
        return _pack_any(entries, encoding, errors, plus)
    return Packed(b"".join(records), list(accumulate(map(len, records))), dirs)


def _pack_any(entries, encoding, errors, plus) -> Packed:
    """pack_dirents for entries with the plugin's inode numbers or long names."""
    records, dirs = [], []
    make = _bare_plus_struct if plus else _dirent_struct
    for index, entry in enumerate(entries, 1):
        kind = (entry[1] & _TYPE) >> 12
        raw = entry[0].encode(encoding, errors)
        records.append(make(len(raw)).pack(entry[2] if len(entry) > 2 else ll.UNKNOWN_INO,
                                           index, len(raw), kind, raw))
        if kind == 4:
            dirs.append(index - 1)
    return Packed(b"".join(records), list(accumulate(map(len, records))), dirs)


class _PlusPolicy:
    """Whether a readdirplus reply should carry the files' attributes.

    Attributes cost a stat per entry; they pay when the walker then looks
    the files up (``ls -l``, ``grep -r`` and ``tar`` do; ``find`` looks up
    only directories, to descend). Listings go out bare while fewer than
    half of the files (not directories) listed bare are looked up
    afterwards; once more are, listings carry attributes, and every
    ``PROBE``-th directory still goes out bare to keep measuring.
    Subdirectories carry attributes in either case: every walker descends
    into them, and the kernel then needs no lookup to do so.
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
        if self.bare_now():
            return False
        return self.count % self.PROBE != 0

    def bare_now(self) -> bool:
        """Whether listings go out bare at present (without counting a listing)."""
        return self.bare < 32 or self.hits * 2 < self.bare

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
        if self._no_opendir:        # no opendir, so no handle: fh is 0
            listings = self._listings
            stream = listings.get(ino)
            if stream is not None:
                try:
                    listings.move_to_end(ino)
                    return stream
                except KeyError:        # another thread dropped it meanwhile
                    pass
            with self._listings_lock:
                stream = listings.get(ino)
                if stream is not None:
                    return stream
                stream = listings[ino] = _DirStream(self._path(ino))
                if len(listings) > LISTINGS_KEPT:
                    listings.popitem(last=False)
                return stream
        stream = self._dirs.get(fi.contents.fh)
        if stream is None:
            raise OSError(errno.EBADF, "bad directory handle")
        return stream

    def _entries(self, stream: _DirStream, offset: int, fi) -> list:
        """The stream's listing; read again when a read-write mount's
        directory is read from the start (it may have changed)."""
        if stream.entries is None or (offset == 0 and not self._no_opendir):
            stream.entries = self.operations.readdir(stream.path, fi.contents)
            stream.plain = stream.bare = None
        return stream.entries

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
        entries = self._entries(stream, offset, fi)
        if stream.plain is None:
            stream.plain = pack_dirents(entries, self.encoding, self.errors)
        packed = stream.plain
        start, end, _stop = packed.cut(offset, size)
        data = packed.blob[start:end]
        ll.reply_buf(req, data, len(data))

    def _plus_record(self, parent: int, base: str, entry, index: int, raw=None):
        """(fuse_direntplus with attributes, its inode) for ``entry``, the
        inode's lookup count raised; None where the entry is gone meanwhile."""
        name, mode = entry[0], entry[1]
        try:
            attrs = self.operations.getattr(base + name)
        except OSError:
            return None
        child = self.inodes.remember(parent, name)
        entry_s, attr_s, entry_ns, attr_ns = self._valid
        (st_ino, nlink, st_mode, uid, gid, rdev, st_size, blocks, a_s, a_ns, m_s, m_ns,
         c_s, c_ns) = self._stat_fields(attrs, child)
        if raw is None:
            raw = name.encode(self.encoding, self.errors)
        return ll.ENTRY_OUT.pack(
            child, 0, entry_s, attr_s, entry_ns, attr_ns, st_ino, st_size, blocks, a_s, m_s,
            c_s, a_ns, m_ns, c_ns, st_mode, nlink, uid, gid, rdev & 0xFFFFFFFF, 0, 0
        ) + _dirent_struct(len(raw)).pack(st_ino, index + 1, len(raw),
                                          (mode & _TYPE) >> 12, raw), child

    def _reply_plus(self, req, data: bytes, given: list) -> None:
        """Send a readdirplus reply; the kernel did not get the inodes in
        ``given`` if the request was interrupted."""
        if ll.reply_buf(req, data, len(data)) != 0:
            forget = self.inodes.forget
            for child in given:
                forget(child, 1)

    @request
    def _readdirplus(self, req, ino, size, offset, fi):
        """A listing, with each entry's attributes when walkers go on to
        look entries up (ls -l, grep -r, tar: the kernel then needs no lookup
        for them), else with only the subdirectories' (find)."""
        stream = self._stream(ino, fi)
        entries = self._entries(stream, offset, fi)
        policy = self._plus
        if offset >= len(entries):      # the end: every listing ends with one of these
            ll.reply_buf(req, b"", 0)
            if self._pusher is not None and not policy.bare_now():
                self._pusher.listed(ino)
            if self._no_opendir and policy.bare_now():
                try:
                    self._prepare_next(ino, stream)
                except Exception:       # replied already: nothing may escape now
                    log.debug("preparing the next listing failed", exc_info=True)
            return
        base = stream.path if stream.path.endswith("/") else stream.path + "/"
        if policy.with_attributes(ino):
            self._reply_full(req, ino, base, entries, size, offset)
            return
        if stream.bare is None:
            stream.bare = pack_dirents(entries, self.encoding, self.errors, plus=True)
        packed = stream.bare
        start, end, stop = packed.cut(offset, size)
        dirs = packed.dirs
        first, last = bisect_left(dirs, offset), bisect_left(dirs, stop)
        given = []
        if first == last:
            data = packed.blob[start:end]
        else:
            # subdirectories with attributes: records of the same size
            blob, ends = packed.blob, packed.ends
            parts, at = [], start
            for index in dirs[first:last]:
                entry = entries[index]
                if entry[0] == "." or entry[0] == "..":
                    continue
                made = self._plus_record(ino, base, entry, index)
                if made is None:
                    continue
                parts.append(blob[at:ends[index - 1] if index else 0])
                parts.append(made[0])
                given.append(made[1])
                at = ends[index]
            parts.append(blob[at:end])
            data = b"".join(parts)
            if self._no_opendir and given:
                self._note_siblings(given)
        self._reply_plus(req, data, given)
        if policy.learning:
            policy.listed_bare(ino, (stop - offset) - (last - first))

    # -- walkers' next listing (read-only mounts) ---------------------------------
    #
    # find and grep -r read directories in listing order, depth first. While
    # the walker takes in the end of one listing (a request for the end, then
    # closing it, opening the next), the one thread of a read-only mount is
    # idle: it packs the listing the walker will most likely ask next, the
    # directory's first subdirectory or else the next subdirectory after it
    # or after one of its parents.

    def _note_siblings(self, children: list) -> None:
        """Subdirectory inodes given in one reply, in listing order."""
        after = self._next_sibling
        if len(after) > SIBLINGS_KEPT:
            after.clear()
        for before, child in zip(children, children[1:]):
            after[before] = child
        last = children[-1]
        if last not in after:
            after[last] = 0

    def _prepare_next(self, ino: int, stream: _DirStream) -> None:
        packed = stream.bare
        nxt = 0
        if packed is not None:
            for index in packed.dirs:
                name = stream.entries[index][0]
                if name != "." and name != "..":
                    nxt = self.inodes.peek(ino, name)
                    break
        at, after, parent_of = ino, self._next_sibling, self.inodes.parent
        for _ in range(64):
            if nxt or not at:
                break
            nxt = after.get(at, 0)
            at = parent_of(at)
        if not nxt or nxt in self._listings:
            return
        path = self.inodes.path(nxt)
        if path is None:
            return
        try:
            entries = self.operations.readdir(path, None)
        except OSError:         # the walker's own request will say what is wrong
            return
        bare = pack_dirents(entries, self.encoding, self.errors, plus=True)
        with self._listings_lock:
            if nxt in self._listings:
                return
            ahead = self._listings[nxt] = _DirStream(path)
            ahead.entries, ahead.bare = entries, bare
            if len(self._listings) > LISTINGS_KEPT:
                self._listings.popitem(last=False)

    def _reply_full(self, req, ino: int, base: str, entries, size: int, offset: int) -> None:
        """Every entry from ``offset`` on with its attributes, as many as fit."""
        parts, given, used = [], [], 0
        plus_record = self._plus_record
        encoding, errors = self.encoding, self.errors
        for index in range(offset, len(entries)):
            entry = entries[index]
            name = entry[0]
            raw = name.encode(encoding, errors)
            bare = _bare_plus_struct(len(raw))
            if used + bare.size > size:
                break
            made = None if name == "." or name == ".." else plus_record(ino, base, entry, index,
                                                                         raw)
            if made is None:        # dots, and entries gone meanwhile: bare
                parts.append(bare.pack(entry[2] if len(entry) > 2 else ll.UNKNOWN_INO,
                                       index + 1, len(raw), (entry[1] & _TYPE) >> 12, raw))
            else:
                parts.append(made[0])
                given.append(made[1])
            used += bare.size
        self._reply_plus(req, b"".join(parts), given)

    @request
    def _releasedir(self, req, ino, fi):
        self._dirs.pop(fi.contents.fh, None)
        ll.reply_err(req, 0)

    @request
    def _fsyncdir(self, req, ino, datasync, fi):
        self.operations.fsyncdir(self.inodes.path(ino), datasync, fi.contents)
        ll.reply_err(req, 0)
