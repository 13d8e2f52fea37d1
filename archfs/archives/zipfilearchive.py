"""Read/write zip archives: the seed's ZipfileArchive over archfs's zip engine.

Every method is a thin translation onto ``archfs.zipengine.store.ZipStore``,
which reads members in place, appends changes and commits them crash-safely;
see that module for the on-disk protocol. Thread-safe: the mount calls it
from many threads at once.

Options (``opts``): ``password`` (str or bytes) or ``password_file`` (path;
first line) for traditional PKWARE encryption, else the environment variable
``ARCHFS_PASSWORD``; ``compression`` (the method of written members: store,
deflate (default), bzip2, lzma, zstd or xz); ``compression_level`` (0-9,
default 6; 0 stores);
``compact_ratio``; ``index_cache`` (``0`` not to save/load the member index of
big archives); ``checkpoint_idle`` (seconds without commits after which the
file is made a complete zip for other readers again; 0 never);
``progress`` (a callable ``(what, done, total)``).
Mode ``'r'`` opens read-only; ``'w'``, ``'a'`` or any mode with ``'+'`` opens
read-write and creates a missing archive (an existing one is never
truncated, unlike ``zipfile``'s ``'w'``).
"""

import os
from typing import List, Optional

from archfs import optionspec
from archfs.optionspec import Option
from archfs.archives.abstractarchive import MemberStat, member_name
from archfs.archives.storearchive import StoreArchive, flag, local_path
from archfs.archives.writefileio import WriteFileIO
from archfs.engine import transports
from archfs.errors import InvalidArgument
from archfs.zipengine.encoders import WRITE_METHODS
from archfs.zipengine.repair import plan as plan_repair, repair as repair_zip
from archfs.zipengine.entries import NO_OWNER
from archfs.zipengine.store import StoreOptions, ZipStore
from archfs.zipengine.store.changes import BytesItem
from archfs.zipengine.store.attributes import check_new_name

__all__ = ["ZipfileArchive", "WriteFileIO"]


def _password(opts: dict) -> Optional[bytes]:
    value = opts.get("password")
    if value is None and opts.get("password_file"):
        with open(opts["password_file"], "rb") as f:
            value = f.readline().rstrip(b"\r\n")
    if value is None:
        value = os.environ.get("ARCHFS_PASSWORD")
    if isinstance(value, str):
        value = value.encode("utf-8")
    return value or None


def write_method(name: Optional[str]) -> int:
    """The zip method of ``-o compression=NAME`` (deflate when not given)."""
    if name is None or name == "":
        return WRITE_METHODS["deflate"]
    method = WRITE_METHODS.get(str(name).lower())
    if method is None:
        raise InvalidArgument("compression=%s: archfs writes %s" % (name, ", ".join(WRITE_METHODS)))
    return method


def _write_method_name(value: str) -> str:
    """The check of -o compression= (the option parser's form of ``write_method``)."""
    if value.lower() not in WRITE_METHODS:
        raise ValueError("needs one of %s" % ", ".join(WRITE_METHODS))
    return value.lower()


class ZipfileArchive(StoreArchive):
    """Read/write zip archives in place (see the module docstring)."""

    name = "zip"
    description = "Read and write zip archives in place, crash-safe."
    mimetypes = ["application/zip", "application/x-zip-compressed"]
    suffixes = (".zip", ".jar", ".cbz")
    magic = (b"PK\x03\x04", b"PK\x05\x06")
    keeps_owners = True      # Info-ZIP "ux" extra field: unzip -X restores it
    # the -o options this plugin takes (archfs mount --help and the README list them)
    options = {
        "password": Option("password", "TEXT", "none",
                           "password of encrypted members, traditional PKWARE or WinZip AES "
                           "(ARCHFS_PASSWORD also gives it; a password on the command line "
                           "is visible to other users in ps)", optionspec.text),
        "password_file": Option("password_file", "PATH", "none",
                                "read the password from the first line of PATH",
                                optionspec.path),
        "compression": Option("compression", "METHOD", "deflate",
                              "method of written members: %s (7-Zip reads each)"
                              % ", ".join(WRITE_METHODS), _write_method_name),
        "compression_level": Option("compression_level", "N", "6",
                                    "level for written members, 0-9; 0 stores",
                                    optionspec.whole(0, 9)),
        "compact_ratio": Option("compact_ratio", "R", "0.5",
                                "a read-write mount compacts the archive once dead space "
                                "passes this share of the file (and 8 MiB)",
                                optionspec.fraction),
        "index_cache": Option("index_cache", "0/1", "1",
                              "save and load the member index of big archives in "
                              "$XDG_CACHE_HOME/archfs/index", optionspec.boolean),
        "checkpoint_idle": Option("checkpoint_idle", "S", "5",
                                  "after S seconds without commits, write the central "
                                  "directory so other programs read the archive whole; 0: "
                                  "only at unmount (see How writes reach the archive)",
                                  optionspec.seconds),
        **transports.OPTIONS,      # a remote archive's: endpoint_url, cache_mb, ...
    }

    def __init__(self, transport=None, url=None, mode="r", read_directory_only=False, opts=None):
        opts, writable = self._begin(url, mode, opts)
        if transport is None and transports.is_remote(url):
            transport = transports.open_remote(url, writable, opts)
        if transport is not None:
            self.why_read_only = writable and transport.why_read_only or None
            writable = writable and transport.writable
            self._path = transport.location
        else:
            self._path = os.path.abspath(transports.local_path(url))
        options = StoreOptions(
            level=int(opts.get("compression_level", 6)),
            method=write_method(opts.get("compression")),
            password=_password(opts),
            compact_ratio=float(opts.get("compact_ratio", 0.5)),
            progress=opts.get("progress"),
            index_cache=flag(opts, "index_cache"),
            checkpoint_idle=float(opts.get("checkpoint_idle", StoreOptions.checkpoint_idle)),
        )
        self._store = ZipStore(self._path, writable, options, transport)
        transports.log_opened(self._store.transport)

    # -- seed API -------------------------------------------------------------

    @property
    def transport(self):
        """The archive file's transport: the local file, or the remote one
        (``archfs.engine.transports``) every read and write goes through."""
        return self._store.transport

    def writedata(self, filename, data, *, mode=None, mtime_ns=None, owner=None,
                  atime_ns=None, ctime_ns=None):
        self._check_writable()
        self._store.add_bytes(member_name(filename), bytes(data), mode=mode, mtime_ns=mtime_ns,
                              owner=owner, atime_ns=atime_ns, ctime_ns=ctime_ns)

    def writedata_many(self, items) -> List[Optional[OSError]]:
        """``writedata`` for several members at once: ``items`` are
        (filename, data, keywords of writedata) triples; returns per item
        None (stored) or the error that refused it. The members are appended
        with one write (see ``ZipStore.add_bytes_many``): a mount copying
        back many small files saves two file checks and a write per file."""
        self._check_writable()
        return self._store.add_bytes_many([
            BytesItem(member_name(filename), bytes(data), **keywords)
            for filename, data, keywords in items])

    # -- filesystem extensions -------------------------------------------------

    @property
    def warnings(self) -> List[str]:
        """What a mount should tell the user once (a damaged archive read leniently)."""
        return list(self._store.warnings)

    def stat(self, path: str) -> MemberStat:
        return _member_stat(self._store.attrs(member_name(path)))

    def stat_or_none(self, path: str) -> Optional[MemberStat]:
        """``stat``, or None where nothing has the name (no exception)."""
        a = self._store.attrs_or_none(member_name(path))
        return None if a is None else _member_stat(a)

    def replace_localfile(self, local_file, filename, *, mode=None, mtime_ns=None, owner=None,
                          atime_ns=None, ctime_ns=None):
        self._check_writable()
        self._store.add_file(member_name(filename), local_file, mode=mode, mtime_ns=mtime_ns,
                             owner=owner, atime_ns=atime_ns, ctime_ns=ctime_ns)

    def mkdir(self, path, mode=0o755, owner=None):
        self._check_writable()
        self._store.mkdir(member_name(path), mode, owner=owner)

    def symlink(self, target, path, owner=None):
        self._check_writable()
        self._store.symlink(target, member_name(path), owner=owner)

    def mknod(self, path, mode, rdev=0, owner=None):
        """FIFOs, sockets and devices: the unix file type is kept in the
        external attributes, a device's number in a PKWARE unix extra field
        (major and minor, 32 bits each)."""
        self._check_writable()
        self._store.mknod(member_name(path), mode, rdev, owner=owner)

    def chown(self, path, uid, gid):
        self._check_writable()
        self._store.chown(member_name(path), uid, gid)

    def utime(self, path, mtime_ns, atime_ns=None):
        self._check_writable()
        self._store.utime(member_name(path), mtime_ns, atime_ns)

    def check_new_name(self, path: str) -> None:
        """Names are stored as UTF-8; a backslash would read back as a
        directory separator; components are at most 255 bytes."""
        check_new_name(member_name(path))

    @property
    def compaction_detail(self) -> str:
        return self._store.last_compaction

    def save_uncommitted(self, directory: str) -> List[str]:
        """After a commit failed for good: copy what it held into ``directory``."""
        return self._store.save_uncommitted(directory)

    @classmethod
    def repair(cls, url, progress=None) -> str:
        """Cut an unfinished commit off, or salvage members (see zipengine.repair)."""
        return repair_zip(local_path(url), progress).detail

    @classmethod
    def repair_plan(cls, url) -> str:
        return plan_repair(local_path(url))

    def has_encrypted_members(self) -> bool:
        return self._store.has_encrypted()

    def summary(self) -> dict:
        """Counts, sizes, methods, encryption and dead space from the member table."""
        return self._store.summary()


def _member_stat(a) -> MemberStat:
    return MemberStat(a.mode, a.size, a.mtime_ns, None if a.uid == NO_OWNER else a.uid,
                      None if a.gid == NO_OWNER else a.gid, nlink=a.nlink, rdev=a.rdev,
                      atime_ns=a.atime_ns, ctime_ns=a.ctime_ns)
