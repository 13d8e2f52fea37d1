"""Tar archives (plain, gzip, bzip2, xz, zstd): the seed's TarfileArchive over
archfs's tar engine.

Every method is a thin translation onto ``archfs.tarengine`` (reading:
``store.TarStore``; writing in place: ``writer.TarWriter``). A lone
compressed file (``notes.txt.gz``) mounts as a directory holding the
decompressed file. Thread-safe: the mount calls it from many threads.

Options (``opts``): ``index_cache`` (``0`` not to save/load the member
index and seek points), ``progress`` (a callable ``(what, done, total)``),
``compression_level``. Mode ``'r'`` opens read-only; ``'w'``, ``'a'`` or
any mode with ``'+'`` opens read-write and creates a missing archive (the
compression follows the suffix: ``.tar.gz`` makes a gzip-compressed tar).
"""

import os
import shutil
import stat as _stat
import tempfile
from typing import List, Optional, Tuple

from archfs import __version__, optionspec
from archfs.archives.abstractarchive import (
    AbstractArchive,
    Member,
    MemberStat,
    member_name,
    select_names,
)
from archfs.archives.writefileio import WriteFileIO
from archfs.engine import transports
from archfs.errors import NoSuchAttribute, NoSuchFile, ReadOnlyError, UnsupportedURL
from archfs.optionspec import Option
from archfs.tarengine.table import NO_OWNER

__all__ = ["TarfileArchive"]


def _local_path(url: str) -> str:
    path = transports.local_path(os.fspath(url))
    if path is None:
        raise UnsupportedURL("%s: repair works on local files only (copy it here first)"
                             % transports.redact(url))
    return path


def _flag(opts: dict, key: str, default: str = "1") -> bool:
    return str(opts.get(key, default)).lower() not in ("0", "no", "off", "false")


class TarfileArchive(AbstractArchive):
    """Tar archives, compressed or not (see the module docstring)."""

    name = "tar"
    description = "Read tar archives (gzip, bzip2, xz, zstd) and write them in place."
    authors = "The archfs authors"
    version = __version__
    url = "https://github.com/archfs/archfs"
    mimetypes = ["application/x-tar", "application/x-gtar", "application/gzip",
                 "application/x-gzip", "application/x-compressed-tar", "application/x-bzip2",
                 "application/x-bzip-compressed-tar", "application/x-xz",
                 "application/x-xz-compressed-tar", "application/zstd",
                 "application/x-zstd-compressed-tar"]
    suffixes = (".tar", ".tar.gz", ".tgz", ".taz", ".tar.bz2", ".tbz", ".tbz2", ".tb2",
                ".tar.xz", ".txz", ".tar.zst", ".tzst", ".tar.zstd",
                ".gz", ".bz2", ".xz", ".zst")
    options = {
        "compression_level": Option("compression_level", "N", "6",
                                    "compression level of members written to a compressed "
                                    "tar (gzip, bzip2, xz: 1-9; zstd: 1-19)",
                                    optionspec.whole(1, 19)),
        "index_cache": Option("index_cache", "0/1", "1",
                              "save and load the member index and seek points of "
                              "compressed or big tars in $XDG_CACHE_HOME/archfs/index",
                              optionspec.boolean),
        **transports.OPTIONS,      # a remote archive's: endpoint_url, cache_mb, ...
    }

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Whether a file starting with ``head`` (at least 512 bytes when the
        file has them) is this plugin's: a compressed stream or a tar."""
        from archfs.engine.compressed import detect
        from archfs.tarengine.headers import looks_like_tar
        if detect(head) is not None:
            return True
        return len(head) >= 512 and not head[:512].strip(b"\0") == b"" and looks_like_tar(head)

    def __init__(self, transport=None, url=None, mode="r", read_directory_only=False, opts=None):
        super().__init__(self.name, self.description, self.authors, self.version, self.url,
                         self.mimetypes)
        if url is None:
            raise ValueError("url not given")
        opts = dict(opts or {})
        writable = mode[0] in "wa" or "+" in mode
        self.why_read_only = None
        if transport is not None and transport.is_local:
            url = transport.location     # the writers open the local file themselves
            transport.release()
            transport = None
        if transport is None and transports.is_remote(url):
            transport = transports.open_remote(url, False, opts)
        if transport is not None:
            if writable:
                self.why_read_only = ("tar archives are written back to local files only "
                                      "(remote write-back is for zip)")
                writable = False
            self._path = transport.location
        else:
            self._path = os.path.abspath(_local_path(url))
        from archfs.tarengine.writer import open_store
        self._store = open_store(self._path, writable, opts.get("progress"),
                                 _flag(opts, "index_cache"),
                                 int(opts.get("compression_level", 6)), transport)
        transports.log_opened(self._store._file)
        self._tmpdir: Optional[str] = None
        self._extracted = {}

    # -- seed API -------------------------------------------------------------

    def use_query(self):
        return False

    @property
    def transport(self):
        """The archive file's transport (local, or ``archfs.engine.transports``)."""
        return self._store._file

    def getnames(self, files=None):
        return select_names(self._store.names(), files)

    def getmembers(self, files=None):
        return [Member(n) for n in self.getnames(files)]

    def open(self, member, mode="rb"):
        name = member_name(member)
        if mode in ("r", "rb"):
            return self._store.open_member(name)
        if mode in ("w", "wb"):
            self._check_writable()
            local = tempfile.NamedTemporaryFile(dir=self._scratch(), delete=False)
            local.close()
            return WriteFileIO(self, name, local.name)
        raise ValueError("unknown mode %r" % (mode,))

    def to_localfile(self, member):
        """Extract the member under this archive's private temporary directory
        (names are in safe spelling; the resolved target is checked all the same)."""
        name = member_name(member)
        root = os.path.realpath(os.path.join(self._scratch(), "members"))
        target = os.path.join(root, name)
        if not name or os.path.commonpath([root, os.path.realpath(target)]) != root:
            raise NoSuchFile("%s: name leaves the extraction directory" % name)
        version = self._store.row_of(name)
        if self._extracted.get(name) != version or not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with self._store.open_member(name) as src, open(target + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(target + ".part", target)
            self._extracted[name] = version
        return target

    def add_localfile(self, local_file, filename):
        self._check_writable()
        mode = _stat.S_IMODE(os.stat(local_file).st_mode)
        self._store.add_file(member_name(filename), local_file, mode=mode, replace=False)

    def writedata(self, filename, data, *, mode=None, mtime_ns=None):
        self._check_writable()
        self._store.add_bytes(member_name(filename), bytes(data), mode=mode, mtime_ns=mtime_ns)

    def is_file(self, member):
        try:
            return _stat.S_ISREG(self._store.stat(member_name(member))[0])
        except FileNotFoundError:
            return False

    def close(self):
        try:
            self._store.close()
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None

    def _scratch(self) -> str:
        if self._tmpdir is None:
            parent = os.path.dirname(self._path)
            base = parent if os.access(parent, os.W_OK) and self.transport.is_local else None
            self._tmpdir = tempfile.mkdtemp(prefix=".archfs-", dir=base)
        return self._tmpdir

    # -- filesystem extensions -------------------------------------------------

    @property
    def writable(self) -> bool:
        return self._store.writable

    @property
    def location(self) -> str:
        return self._path

    @property
    def uses_inodes(self) -> bool:
        return True

    def stat(self, path: str) -> MemberStat:
        mode, size, mtime_ns, uid, gid, nlink, ino, rdev = self._store.stat(member_name(path))
        return MemberStat(mode, size, mtime_ns, None if uid == NO_OWNER else uid,
                          None if gid == NO_OWNER else gid, nlink=nlink, ino=ino, rdev=rdev)

    def listdir(self, path: str) -> List[Tuple[str, int]]:
        return self._store.listdir(member_name(path))

    def readlink(self, path: str) -> str:
        return self._store.readlink(member_name(path))

    def inodes(self, path: str):
        return self._store.child_inodes(member_name(path))

    def listxattr(self, path: str) -> List[str]:
        return [name for name, _value in self._store.xattrs(member_name(path))]

    def getxattr(self, path: str, name: str) -> bytes:
        for key, value in self._store.xattrs(member_name(path)):
            if key == name:
                return value
        raise NoSuchAttribute("%s: no extended attribute %s" % (path, name))

    def replace_localfile(self, local_file, filename, *, mode=None, mtime_ns=None):
        self._check_writable()
        self._store.add_file(member_name(filename), local_file, mode=mode, mtime_ns=mtime_ns)

    def remove(self, path):
        self._check_writable()
        self._store.remove(member_name(path))

    def mkdir(self, path, mode=0o755):
        self._check_writable()
        self._store.mkdir(member_name(path), mode)

    def rmdir(self, path):
        self._check_writable()
        self._store.rmdir(member_name(path))

    def rename(self, old, new):
        self._check_writable()
        self._store.rename(member_name(old), member_name(new))

    def symlink(self, target, path):
        self._check_writable()
        self._store.symlink(target, member_name(path))

    def link(self, target, path):
        self._check_writable()
        self._store.link(member_name(target), member_name(path))

    def chmod(self, path, mode):
        self._check_writable()
        self._store.chmod(member_name(path), mode)

    def utime(self, path, mtime_ns):
        self._check_writable()
        self._store.utime(member_name(path), mtime_ns)

    def commit(self):
        if self._store.writable:
            return self._store.commit()
        return False

    def compact(self) -> bool:
        self._check_writable()
        return self._store.compact()

    @classmethod
    def repair(cls, url, progress=None) -> str:
        from archfs.tarengine.writer import repair
        return repair(_local_path(url), progress)

    def _check_writable(self):
        if not self._store.writable:
            raise ReadOnlyError("%s is opened read-only" % self._path)
