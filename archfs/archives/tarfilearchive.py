"""Tar archives (plain, gzip, bzip2, xz, zstd, lz4): the seed's TarfileArchive over
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
from typing import List

from archfs import optionspec
from archfs.archives.abstractarchive import MemberStat, member_name
from archfs.archives.storearchive import StoreArchive, flag, local_path
from archfs.engine import transports
from archfs.errors import NoSuchAttribute
from archfs.optionspec import Option
from archfs.tarengine.table import NO_OWNER

__all__ = ["TarfileArchive"]


class TarfileArchive(StoreArchive):
    """Tar archives, compressed or not (see the module docstring)."""

    name = "tar"
    description = "Read tar archives (gzip, bzip2, xz, zstd, lz4) and write them in place."
    mimetypes = ["application/x-tar", "application/x-gtar", "application/gzip",
                 "application/x-gzip", "application/x-compressed-tar", "application/x-bzip2",
                 "application/x-bzip-compressed-tar", "application/x-xz",
                 "application/x-xz-compressed-tar", "application/zstd",
                 "application/x-zstd-compressed-tar", "application/x-lz4",
                 "application/x-lz4-compressed-tar"]
    suffixes = (".tar", ".tar.gz", ".tgz", ".taz", ".tar.bz2", ".tbz", ".tbz2", ".tb2",
                ".tar.xz", ".txz", ".tar.zst", ".tzst", ".tar.zstd",
                ".tar.lz4", ".gz", ".bz2", ".xz", ".zst", ".lz4")
    options = {
        "compression_level": Option("compression_level", "N", "6",
                                    "compression level of members written to a compressed "
                                    "tar (gzip, bzip2, xz: 1-9; zstd: 1-19; lz4: 6 is its fast "
                                    "mode, others up to 16 its HC levels)",
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
        from archfs.tarengine.detect import is_tar_or_compressed
        return is_tar_or_compressed(head)

    def __init__(self, transport=None, url=None, mode="r", read_directory_only=False, opts=None):
        opts, writable = self._begin(url, mode, opts)
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
            self._path = os.path.abspath(local_path(url))
        from archfs.tarengine.writer import open_store
        self._store = open_store(self._path, writable, opts.get("progress"),
                                 flag(opts, "index_cache"),
                                 int(opts.get("compression_level", 6)), transport)
        transports.log_opened(self._store._file)

    # -- seed API -------------------------------------------------------------

    @property
    def transport(self):
        """The archive file's transport (local, or ``archfs.engine.transports``)."""
        return self._store._file

    def writedata(self, filename, data, *, mode=None, mtime_ns=None):
        self._check_writable()
        self._store.add_bytes(member_name(filename), bytes(data), mode=mode, mtime_ns=mtime_ns)

    # -- filesystem extensions -------------------------------------------------

    @property
    def uses_inodes(self) -> bool:
        return True

    def stat(self, path: str) -> MemberStat:
        mode, size, mtime_ns, uid, gid, nlink, ino, rdev = self._store.stat(member_name(path))
        return MemberStat(mode, size, mtime_ns, None if uid == NO_OWNER else uid,
                          None if gid == NO_OWNER else gid, nlink=nlink, ino=ino, rdev=rdev)

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

    def mkdir(self, path, mode=0o755):
        self._check_writable()
        self._store.mkdir(member_name(path), mode)

    def symlink(self, target, path):
        self._check_writable()
        self._store.symlink(target, member_name(path))

    def mknod(self, path, mode, rdev=0):
        """FIFOs and character and block devices (tar types 6, 3 and 4); a
        socket is refused (NotSupported): tar has no type for it."""
        self._check_writable()
        self._store.mknod(member_name(path), mode, rdev)

    def link(self, target, path):
        self._check_writable()
        self._store.link(member_name(target), member_name(path))

    def utime(self, path, mtime_ns):
        self._check_writable()
        self._store.utime(member_name(path), mtime_ns)

    @classmethod
    def repair(cls, url, progress=None) -> str:
        from archfs.tarengine.repairing import repair
        return repair(local_path(url), progress)
