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
import shutil
import stat as _stat
import tempfile
from typing import List, Optional, Tuple

from archfs import __version__
from archfs import optionspec
from archfs.optionspec import Option
from archfs.archives.abstractarchive import (
    AbstractArchive,
    Member,
    MemberStat,
    member_name,
    select_names,
)
from archfs.archives.writefileio import WriteFileIO
from archfs.engine import transports
from archfs.errors import InvalidArgument, NoSuchFile, ReadOnlyError, UnsupportedURL
from archfs.zipengine.codecs import WRITE_METHODS
from archfs.zipengine.repair import plan as plan_repair, repair as repair_zip
from archfs.zipengine.entries import NO_OWNER
from archfs.zipengine.store import StoreOptions, ZipStore
from archfs.zipengine.store.attributes import check_new_name

__all__ = ["ZipfileArchive", "WriteFileIO"]


def _local_path(url: str) -> str:
    path = transports.local_path(url)
    if path is None:
        raise UnsupportedURL("%s: repair works on local files only (copy it here first)"
                             % transports.redact(url))
    return path


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


class ZipfileArchive(AbstractArchive):
    """Read/write zip archives in place (see the module docstring)."""

    name = "zip"
    description = "Read and write zip archives in place, crash-safe."
    authors = "The archfs authors"
    version = __version__
    url = "https://github.com/archfs/archfs"
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
        super().__init__(self.name, self.description, self.authors, self.version, self.url,
                         self.mimetypes)
        if url is None:
            raise ValueError("url not given")
        opts = dict(opts or {})
        writable = mode[0] in "wa" or "+" in mode
        self.why_read_only = None
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
            index_cache=str(opts.get("index_cache", "1")).lower() not in ("0", "no", "off", "false"),
            checkpoint_idle=float(opts.get("checkpoint_idle", StoreOptions.checkpoint_idle)),
        )
        self._store = ZipStore(self._path, writable, options, transport)
        transports.log_opened(self._store.transport)
        self._tmpdir: Optional[str] = None
        self._extracted = {}        # member name -> row it was extracted from

    # -- seed API -------------------------------------------------------------

    def use_query(self):
        return False

    @property
    def transport(self):
        """The archive file's transport: the local file, or the remote one
        (``archfs.engine.transports``) every read and write goes through."""
        return self._store.transport

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
        """Extract the member under this archive's private temporary directory.

        Member names are already in safe spelling (no ``..``, no leading
        ``/``), and the resolved target is checked to lie inside that
        directory all the same. A member replaced since is extracted again.
        """
        name = member_name(member)
        root = os.path.realpath(os.path.join(self._scratch(), "members"))
        target = os.path.join(root, name)
        if os.path.commonpath([root, os.path.realpath(target)]) != root or not name:
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
        """Add a new member with the local file's content, mode and mtime."""
        self._check_writable()
        mode = _stat.S_IMODE(os.stat(local_file).st_mode)
        self._store.add_file(member_name(filename), local_file, mode=mode, replace=False)

    def writedata(self, filename, data, *, mode=None, mtime_ns=None, owner=None,
                  atime_ns=None, ctime_ns=None):
        self._check_writable()
        self._store.add_bytes(member_name(filename), bytes(data), mode=mode, mtime_ns=mtime_ns,
                              owner=owner, atime_ns=atime_ns, ctime_ns=ctime_ns)

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
        """A private temporary directory, beside the archive when possible."""
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
    def warnings(self) -> List[str]:
        """What a mount should tell the user once (a damaged archive read leniently)."""
        return list(self._store.warnings)

    def stat(self, path: str) -> MemberStat:
        a = self._store.attrs(member_name(path))
        return MemberStat(a.mode, a.size, a.mtime_ns, None if a.uid == NO_OWNER else a.uid,
                          None if a.gid == NO_OWNER else a.gid, nlink=a.nlink, rdev=a.rdev,
                          atime_ns=a.atime_ns, ctime_ns=a.ctime_ns)

    def listdir(self, path: str) -> List[Tuple[str, int]]:
        return self._store.listdir(member_name(path))

    def readlink(self, path: str) -> str:
        return self._store.readlink(member_name(path))

    def replace_localfile(self, local_file, filename, *, mode=None, mtime_ns=None, owner=None,
                          atime_ns=None, ctime_ns=None):
        self._check_writable()
        self._store.add_file(member_name(filename), local_file, mode=mode, mtime_ns=mtime_ns,
                             owner=owner, atime_ns=atime_ns, ctime_ns=ctime_ns)

    def remove(self, path):
        self._check_writable()
        self._store.remove(member_name(path))

    def mkdir(self, path, mode=0o755, owner=None):
        self._check_writable()
        self._store.mkdir(member_name(path), mode, owner=owner)

    def rmdir(self, path):
        self._check_writable()
        self._store.rmdir(member_name(path))

    def rename(self, old, new):
        self._check_writable()
        self._store.rename(member_name(old), member_name(new))

    def symlink(self, target, path, owner=None):
        self._check_writable()
        self._store.symlink(target, member_name(path), owner=owner)

    def mknod(self, path, mode, rdev=0, owner=None):
        """FIFOs, sockets and devices: the unix file type is kept in the
        external attributes, a device's number in a PKWARE unix extra field
        (major and minor, 32 bits each)."""
        self._check_writable()
        self._store.mknod(member_name(path), mode, rdev, owner=owner)

    def chmod(self, path, mode):
        self._check_writable()
        self._store.chmod(member_name(path), mode)

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

    def commit(self):
        """False when there was nothing to commit."""
        if self._store.writable:
            return self._store.commit()
        return False

    def compact(self) -> bool:
        """Reclaim dead space, crash-safely; False when there is too little
        (``compaction_detail`` says what was done, or why not)."""
        self._check_writable()
        return self._store.compact()

    @property
    def compaction_detail(self) -> str:
        return self._store.last_compaction
    def save_uncommitted(self, directory: str) -> List[str]:
        """After a commit failed for good: copy what it held into ``directory``."""
        return self._store.save_uncommitted(directory)

    @classmethod
    def repair(cls, url, progress=None) -> str:
        """Cut an unfinished commit off, or salvage members (see zipengine.repair)."""
        return repair_zip(_local_path(url), progress).detail

    @classmethod
    def repair_plan(cls, url) -> str:
        return plan_repair(_local_path(url))

    def summary(self) -> dict:
        """Counts, sizes, methods, encryption and dead space from the member table."""
        return self._store.summary()

    def _check_writable(self):
        if not self._store.writable:
            raise ReadOnlyError("%s is opened read-only" % self._path)

