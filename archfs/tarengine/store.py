"""TarStore: one tar archive (plain or compressed), its member table and tree.

Opening reads every header once (``scanner.py``), or loads the saved index
when the archive is unchanged since it was saved (``engine/indexcache``):
for a compressed archive the index also holds the decompressor's seek
points, so a second mount decodes nothing. The tree shows the newest
member of each name (tar's own rule: the last one wins).

Writing is in ``writer.py`` (plain tar in place) on top of this class.
"""

import logging
import os
import stat
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from archfs.engine import compressed, indexcache
from archfs.engine.fileaccess import ArchiveFile
from archfs.engine.segments import CODECS, SegmentedStream, open_headed, stream_from_state
from archfs.engine.tree import DIR_MODE, Tree
from archfs.errors import (
    CorruptMemberError,
    InvalidArgument,
    NoSuchFile,
    NotADirectory,
    NotAnArchiveError,
)
from archfs.tarengine import headers as hd
from archfs.tarengine.reader import MemberReader
from archfs.tarengine.scanner import ScanResult, scan
from archfs.tarengine.table import NO_OWNER, TarTable

log = logging.getLogger("archfs.tar")

INDEX_VERSION = 2
MIN_CACHED_MEMBERS = 2000      # plain tars with fewer members scan faster than a cache loads
IMPLIED_INO_BASE = 1 << 48
MAX_WALKED_SEGMENT = 64 << 20  # a bigger frame or stream reads better through a library


class StoreOptions:
    """(A plain class: dataclasses imports inspect, a mount's start-up cost.)"""

    def __init__(self, progress: Optional[Callable[[str, int, int], None]] = None,
                 index_cache: bool = True, index_dir: Optional[str] = None):
        self.progress = progress
        self.index_cache = index_cache
        self.index_dir = index_dir


class MemberInfo(tuple):
    """(mode, size, mtime_ns, uid, gid, nlink, ino, rdev)"""


_TAR_SUFFIXES = (".tgz", ".taz", ".tbz", ".tbz2", ".tb2", ".txz", ".tzst")


def _strip_suffix(path: str, kind: str) -> str:
    """The name a lone compressed file shows its content under."""
    base = os.path.basename(path)
    lowered = base.lower()
    for suffix in sorted(compressed.SUFFIXES[kind], key=len, reverse=True):
        if lowered.endswith(suffix) and len(base) > len(suffix):
            return base[:-len(suffix)] + (".tar" if suffix in _TAR_SUFFIXES else "")
    return base + ".out"


class TarStore:
    def __init__(self, path: str, writable: bool = False,
                 options: Optional[StoreOptions] = None, transport=None):
        """``transport``: the archive's file elsewhere (``archfs.engine.transports``),
        which the store then owns; without one, ``path`` is a local file."""
        self.path = transport.location if transport is not None else os.path.abspath(path)
        self.writable = writable
        self.options = options or StoreOptions()
        self._meta = threading.RLock()
        self._reading: Dict[int, int] = {}     # header offset -> readers open on it
        self._closed = False
        self._file = transport if transport is not None else ArchiveFile(self.path, writable)
        self.stream = None
        try:
            head = self._file.pread(8, 0)
            self.compression = compressed.detect(head)
            self.stream = self._open_stream()
            self._load()
        except BaseException:
            if self.stream is not None:
                self.stream.release()
            self._file.release()
            raise

    # -- opening --------------------------------------------------------------

    def _open_stream(self):
        """The decompressed content: by segments where the file is made of small
        independent ones (archives archfs wrote), else through a library."""
        if self.compression is not None:
            codec = CODECS[self.compression]()
            segments = codec.walk(self._file.pread, self._file.size())
            if segments and getattr(codec, "head", None) is not None:
                return open_headed(self._file, self.path, codec, segments)
            if segments and max(s[3] for s in segments) <= MAX_WALKED_SEGMENT:
                return SegmentedStream(self._file, codec, segments)
        return compressed.open_stream(self._file, self.path, self.compression)

    def _progress(self, what: str):
        report = self.options.progress
        if report is None:
            return None
        total = self._file.size()
        stream = self.stream
        return lambda pos: report(what, min(total, stream.compressed_position(pos)), total)

    def _load(self) -> None:
        identity = self._file.identity()
        key = indexcache.transport_key(self._file, "tar", INDEX_VERSION)
        started = time.monotonic()
        loaded = None
        if self.options.index_cache:
            loaded = self._load_index(key)
        self._implied_ino: Dict[str, int] = {}
        if loaded is None:
            self._scan()
            self._build_tree()
            how = "indexed"
            if self.options.index_cache and (self.compression is not None
                                             or len(self.table) >= MIN_CACHED_MEMBERS):
                self._save_index(key)
        else:
            how = "loaded the saved index of"
            self._count_links()
        elapsed = time.monotonic() - started
        if elapsed > 1:
            log.info("%s %d members of %s in %.1f s", how, len(self.table), self.path, elapsed)
        if self.scan_problem:
            log.warning("%s: %s", self.path, self.scan_problem)
        self._identity = identity

    def _scan(self) -> None:
        stream = self.stream
        try:
            first = stream.pread(hd.BLOCK, 0)
        except Exception as exc:
            if self.compression is not None and compressed.library_error(exc):
                raise NotAnArchiveError("%s: not a %s stream, or a damaged one (%s)"
                                        % (self.path, self.compression,
                                           str(exc).splitlines()[0] if str(exc) else exc)
                                        ) from None
            raise
        self.single = False
        if self.compression is not None and not hd.looks_like_tar(first):
            self._scan_single()
            return
        if self.compression is None and first and not hd.looks_like_tar(first):
            raise NotAnArchiveError("%s: not a tar archive (nor a compressed file)" % self.path)
        size_hint = self._file.size() if self.compression is None else -1
        try:
            result = scan(self._read_stream, self._progress("indexing"), size_hint=size_hint)
        except Exception as exc:
            if compressed.library_error(exc):
                raise NotAnArchiveError("%s: the %s data is damaged (%s)"
                                        % (self.path, self.compression, exc)) from None
            raise
        self._take(result)
        if not first:
            self.end = 0
        _ = stream

    def _read_stream(self, size: int, pos: int) -> bytes:
        try:
            return self.stream.pread(size, pos)
        except Exception as exc:
            if self.compression is not None and compressed.library_error(exc):
                # damaged compressed data: the scan ends where it stops decoding
                log.warning("%s: %s data is damaged near offset %d: %s",
                            self.path, self.compression, pos, exc)
                return b""
            raise

    def _take(self, result: ScanResult) -> None:
        self.table = result.table
        self.end = result.end
        self.scan_problem = result.problem
        self.terminated = result.terminated

    def _scan_single(self) -> None:
        """A lone compressed file: one member, the decompressed content."""
        self.single = True
        progress = self._progress("decompressing")
        pos = 0
        step = 4 << 20
        while True:
            chunk = self._read_stream(step, pos)
            pos += len(chunk)
            if progress is not None:
                progress(pos)
            if len(chunk) < step:
                break
        table = TarTable()
        if self._file.is_local:
            st = os.fstat(self._file.fd)
            mtime_ns, mode = st.st_mtime_ns, st.st_mode & 0o666
        else:
            mtime_ns, mode = self._file.identity().mtime_ns, 0o644
        name = _strip_suffix(self.path.partition("?")[0], self.compression)
        table.add(name, 0, 0, pos, pos, mtime_ns, stat.S_IFREG | mode)
        self.table = table
        self.end = pos
        self.scan_problem = None
        self.terminated = True

    # -- the saved index ------------------------------------------------------

    def _save_index(self, key: dict) -> None:
        t = self.table
        header = {
            "rows": len(t), "end": self.end, "single": self.single,
            "problem": self.scan_problem, "terminated": self.terminated,
            "links": t.links, "hardlink": t.hardlink, "rdev": t.rdev,
            "sparse": t.sparse, "bad": t.bad,
            "xattrs": {r: [[n, v.hex()] for n, v in x] for r, x in t.xattrs.items()},
        }
        state = self.stream.seek_state() if self.compression is not None else None
        dir_paths, dir_rows, order, counts = self._tree.export()
        sections = [indexcache.joined(t.names), [t.header], [t.data], [t.size], [t.usize],
                    [t.mtime_ns], [t.mode], [t.uid], [t.gid], [t.dead], [state or b""],
                    indexcache.joined(dir_paths), [dir_rows], [order], [counts]]
        indexcache.save(self.path, key, header, sections, self.options.index_dir)

    def _load_index(self, key: dict) -> Optional[bool]:
        found = indexcache.load(self.path, key, self.options.index_dir)
        if found is None:
            return None
        header, sections = found
        try:
            n = header["rows"]
            t = TarTable()
            t.set_saved_names(sections[0], n)
            for i, (name, code) in enumerate((("header", "Q"), ("data", "Q"), ("size", "Q"),
                                              ("usize", "Q"), ("mtime_ns", "q"), ("mode", "I"),
                                              ("uid", "I"), ("gid", "I"))):
                setattr(t, name, indexcache.typed(sections[1 + i], code, n))
            t.dead = bytearray(sections[9])
            t.links = {int(r): v for r, v in header["links"].items()}
            t.hardlink = {int(r): int(v) for r, v in header["hardlink"].items()}
            t.rdev = {int(r): int(v) for r, v in header["rdev"].items()}
            t.sparse = {int(r): [tuple(p) for p in v] for r, v in header["sparse"].items()}
            t.bad = {int(r): v for r, v in header["bad"].items()}
            t.xattrs = {int(r): [(a, bytes.fromhex(b)) for a, b in v]
                        for r, v in header["xattrs"].items()}
            if len(t.dead) != n:
                raise ValueError("index is inconsistent")
            dir_paths = sections[11].decode("utf-8", "surrogateescape").split("\x00")
            columns = [indexcache.typed(sections[12 + i], "q", -1) for i in range(3)]
            tree = Tree.restore(t, dir_paths, *columns)
            state = sections[10]
            if self.compression is not None and state[:1] == b"S":
                if not isinstance(self.stream, SegmentedStream):
                    stream = stream_from_state(self._file, self.path,
                                               CODECS[self.compression](), state)
                    self.stream.release()
                    self.stream = stream
                else:
                    self.stream.load_seek_state(state)
            elif self.compression is not None and state:
                if isinstance(self.stream, SegmentedStream):
                    raise ValueError("saved seek points are of another kind")
                self.stream.load_seek_state(state)
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            log.info("ignoring the saved index of %s: %s", self.path, exc)
            return None
        self.table = t
        self._tree = tree
        self.end = header["end"]
        self.single = header["single"]
        self.scan_problem = header["problem"]
        self.terminated = header["terminated"]
        return True

    # -- the tree ---------------------------------------------------------------

    def _build_tree(self) -> None:
        t = self.table
        tree = self._tree = Tree(t)
        names, modes, dead, links, hardlink = t.names, t.mode, t.dead, t.links, t.hardlink
        resolve = not hardlink and links
        for row in range(len(names)):
            if dead[row]:
                continue
            if stat.S_ISDIR(modes[row]):
                tree.put_dir(names[row], row)
                continue
            if resolve and row in links and not stat.S_ISLNK(modes[row]):
                target = tree.paths.get(links[row], -1)
                if target < 0 or stat.S_ISDIR(modes[target]):
                    t.bad[row] = "hard link to %s, which the archive does not hold" % links[row]
                else:
                    hardlink[row] = t.target(target)
            tree.put_file(names[row], row)
        self._count_links()

    def _count_links(self) -> None:
        t = self.table
        counts: Dict[int, int] = {}
        for row, target in t.hardlink.items():
            if not t.dead[row]:
                counts[target] = counts.get(target, 1 if not t.dead[target] else 0) + 1
        self._nlink = counts

    # -- queries ------------------------------------------------------------------

    def stat(self, path: str) -> tuple:
        """(mode, size, mtime_ns, uid, gid, nlink, ino, rdev)."""
        t = self.table
        with self._meta:
            node, row = self._tree.lookup(path)
            if row >= 0:
                target = t.hardlink.get(row, row)
                size = 0 if node is not None else t.usize[target]
                nlink = 0 if node is not None else self._nlink.get(target, 1)
                return (t.mode[target] if target != row else t.mode[row], size,
                        t.mtime_ns[target], t.uid[target], t.gid[target], nlink, target + 2,
                        t.rdev.get(target, 0))
            if node is not None:
                return (DIR_MODE, 0, self._identity.mtime_ns, NO_OWNER, NO_OWNER, 0,
                        self._dir_ino(path), 0)
        raise NoSuchFile("%s: no such file or directory" % path)

    def listdir(self, path: str) -> List[Tuple[str, int]]:
        """(name, st_mode) of each child."""
        with self._meta:
            tree = self._tree
            if path in tree.dirs:
                return tree.children(path)
            if tree.lookup(path)[1] >= 0:
                raise NotADirectory("%s: not a directory" % path)
        raise NoSuchFile("%s: no such directory" % path)

    def child_inodes(self, path: str) -> Dict[str, int]:
        """{name: inode number} of each child of a directory."""
        with self._meta:
            tree = self._tree
            node = tree.dirs.get(path)
            if node is None:
                return {}
            t = self.table
            hardlink = t.hardlink
            prefix = path + "/" if path else ""
            out = {}
            for name in node.subdirs:
                sub = prefix + name
                row = tree.dirs[sub].row
                out[name] = row + 2 if row >= 0 else self._dir_ino(sub)
            if hardlink:
                out.update((name, hardlink.get(row, row) + 2) for name, row in node.files.items())
            else:
                out.update(zip(node.files, [r + 2 for r in node.files.values()]))
            return out

    def _dir_ino(self, path: str) -> int:
        """The inode number of a directory only names imply (the root is 1)."""
        if path == "":
            return 1
        ino = self._implied_ino.get(path)
        if ino is None:
            ino = self._implied_ino[path] = IMPLIED_INO_BASE + len(self._implied_ino)
        return ino

    def names(self) -> List[str]:
        """Paths of every file, symlink and special file, in archive order."""
        with self._meta:
            t = self.table
            return [t.names[r] for r in sorted(self._tree.paths.values())
                    if not stat.S_ISDIR(t.mode[r])]

    def _file_row(self, path: str) -> int:
        return self._tree.file_row(path)

    def row_of(self, path: str) -> int:
        with self._meta:
            return self._file_row(path)

    def readlink(self, path: str) -> str:
        with self._meta:
            row = self._file_row(path)
            if not stat.S_ISLNK(self.table.mode[row]):
                raise InvalidArgument("%s: not a symbolic link" % path)
            return self.table.links.get(row, "")

    def xattrs(self, path: str) -> List[Tuple[str, bytes]]:
        with self._meta:
            node, row = self._tree.lookup(path)
            if node is None and row < 0:
                raise NoSuchFile("%s: no such file or directory" % path)
            if row < 0:
                return []
            return list(self.table.xattrs.get(self.table.target(row), ()))

    def open_member(self, path: str) -> MemberReader:
        t = self.table
        with self._meta:
            row = self._file_row(path)
            target = t.target(row)
            why = t.bad.get(row) or t.bad.get(target)
            if why:
                raise CorruptMemberError("%s: %s" % (path, why))
            mode = t.mode[target]
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                return _BytesReader(path, b"")
            if stat.S_ISLNK(mode):
                data = self.table.links.get(row, "").encode("utf-8", "surrogateescape")
                return _BytesReader(path, data)
            stream = self.stream.retain()
            offset = t.header[target]
            self._reading[offset] = self._reading.get(offset, 0) + 1

            def closed():
                with self._meta:      # a rewrite in place waits for none after its start
                    self._reading[offset] -= 1
                    if not self._reading[offset]:
                        del self._reading[offset]
                stream.release()
            return MemberReader(path, stream, t.data[target], t.size[target],
                                t.usize[target], t.sparse.get(target), on_close=closed)

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.stream.release()
        finally:
            self._file.release()


class _BytesReader(MemberReader):
    """A symlink's target read as its content (as the zip plugin does)."""

    def __init__(self, name: str, data: bytes):
        super().__init__(name, None, 0, len(data), len(data))
        self._bytes = data

    def pread(self, size: int, offset: int) -> bytes:
        return self._bytes[offset:offset + max(0, size)]
