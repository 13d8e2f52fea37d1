"""FilesystemArchive: a local directory served through the archive plugin API.

It is the reference plugin (every method of the contract maps onto a plain
POSIX call) and what the mount tests compare the zip plugin against. Every
name is checked before it touches the disk: ``..`` components are refused and
every directory on the way must resolve inside the root, so no method ever
reads or writes outside it; operations that follow a final symlink refuse one
that points out of the root.
"""

import errno
import os
import shutil
import stat as _stat
import tempfile
import threading
import time
import urllib.parse
from typing import List, Optional, Tuple

from archfs.archives.abstractarchive import (
    AbstractArchive,
    Member,
    MemberStat,
    member_name,
    select_names,
)
from archfs.archives.writefileio import WriteFileIO
from archfs.errors import (
    ArchfsError,
    DirectoryNotEmpty,
    FileAlreadyExistsError,
    InvalidMove,
    IsADirectory,
    NameTooLong,
    NoSuchFile,
    NotADirectory,
    NotSupported,
    ReadOnlyError,
    WriteOnFile,
)

_COPY_CHUNK = 1 << 20
_TEMP_PREFIX = ".archfs-"

# errno -> archfs class; anything else keeps its errno in a plain ArchfsError.
_ERRNO_CLASSES = {
    errno.ENOENT: NoSuchFile,
    errno.EEXIST: FileAlreadyExistsError,
    errno.ENOTEMPTY: DirectoryNotEmpty,
    errno.EISDIR: IsADirectory,
    errno.ENOTDIR: NotADirectory,
    errno.EROFS: ReadOnlyError,
    errno.ENAMETOOLONG: NameTooLong,
    errno.EOPNOTSUPP: NotSupported,
    errno.ENOTSUP: NotSupported,
}


def _archfs_error(exc: OSError, name: str, renaming: bool = False) -> ArchfsError:
    """The archfs error for an OSError raised while working on ``name``."""
    if isinstance(exc, ArchfsError):
        return exc
    message = "%s: %s" % (exc.strerror or exc, name)
    code = exc.errno
    if renaming and code == errno.EINVAL:
        return InvalidMove(message)
    if renaming and code == errno.EEXIST:  # some filesystems say EEXIST for ENOTEMPTY
        return DirectoryNotEmpty(message)
    cls = _ERRNO_CLASSES.get(code)
    if cls is not None:
        return cls(message)
    return ArchfsError(code if code is not None else errno.EIO, message)


def _path_from_url(url) -> str:
    """A local path from a plain path or a ``file://`` URL."""
    if url is None:
        raise ValueError("FilesystemArchive needs a url (a directory path or file:// URL)")
    url = os.fspath(url)
    if url.startswith("file:"):
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError("file URL names another host: %s" % url)
        url = urllib.parse.unquote(parts.path)
    if not url:
        raise ValueError("FilesystemArchive url is empty")
    return os.path.abspath(os.path.expanduser(url))


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemArchive(AbstractArchive):
    """Read/write the files below a local directory (seed API plus extensions).

    ``url`` is a directory path or ``file://`` URL. Mode ``'r'`` reads, ``'w'``
    and ``'a'`` also write and create the directory if missing (neither removes
    anything). With ``read_directory_only=False`` the url may name one file:
    its directory is the root and that file the only member, read-only.
    """

    name = "filesystem"
    description = "Read and write the files of a local directory."
    authors = "archfs developers"
    version = "0.1.0"
    url = ""  # no public site yet
    mimetypes = ["*"]
    suffixes = ()
    keeps_owners = True      # real chown; only root may give files away

    def __init__(self, transport=None, url=None, mode="r", read_directory_only=True,
                 opts=None):
        super().__init__(self.name, self.description, self.authors, self.version,
                         self.url, self.mimetypes)
        self._transport = transport
        self.opts = {} if opts is None else dict(opts)
        if mode not in ("r", "w", "a"):
            raise ValueError("FilesystemArchive mode must be 'r', 'w' or 'a', not %r" % (mode,))
        self._mode = mode
        self._closed = False
        self._unsynced = _PathSet()  # local paths whose metadata or entries changed
        path = _path_from_url(url)
        self._single = None  # the one member when the url names a file
        if os.path.isfile(path):
            if mode != "r":
                raise WriteOnFile("cannot write a directory archive onto the file %s" % path)
            if read_directory_only:
                raise WriteOnFile("%s is a file, not a directory" % path)
            self._single = os.path.basename(path)
            path = os.path.dirname(path)
        elif not os.path.exists(path):
            if mode == "r":
                raise NoSuchFile("no such directory: %s" % path)
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                raise _archfs_error(exc, path) from None
        elif not os.path.isdir(path):
            raise WriteOnFile("%s is not a directory" % path)
        self._root = os.path.realpath(path)

    # -- names -> local paths --------------------------------------------------

    def _parts(self, member) -> List[str]:
        if self._closed:
            raise ValueError("archive %s is closed" % self._root)
        name = member_name(member)
        if "\0" in name:
            raise NoSuchFile("invalid member name (NUL byte): %r" % name)
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise NoSuchFile("member name escapes the archive root: %s" % name)
        return parts

    def _inside(self, real: str) -> bool:
        return real == self._root or real.startswith(self._root.rstrip("/") + "/")

    def _local(self, member, follow: bool = False) -> str:
        """The local path of ``member``.

        The parent must resolve inside the root; with ``follow`` the member
        itself is resolved too (symlinks followed) and must stay inside.
        """
        parts = self._parts(member)
        if self._single is not None and parts not in ([], [self._single]):
            raise NoSuchFile("no such member: %s" % "/".join(parts))
        path = os.path.join(self._root, *parts)
        if not parts:
            return path
        if not self._inside(os.path.realpath(os.path.dirname(path))):
            raise NoSuchFile("member path leaves the archive root: %s" % "/".join(parts))
        if follow:
            real = os.path.realpath(path)
            if not self._inside(real):
                raise NoSuchFile("symlink points outside the archive root: %s" % "/".join(parts))
            return real
        return path

    @staticmethod
    def _lstat(path: str, name: str) -> Optional[os.stat_result]:
        """lstat, None when missing; other errors mapped."""
        try:
            return os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _archfs_error(exc, name) from None

    def _existing_for_change(self, path: str) -> Tuple[str, str, os.stat_result]:
        """(name, local path, lstat) of a member about to change; the archive
        must be writable and the member exist."""
        self._check_writable()
        name = member_name(path)
        local = self._local(name)
        st = self._lstat(local, name)
        if st is None:
            raise NoSuchFile("no such member: %s" % name)
        return name, local, st

    def _writable_path(self, member) -> Tuple[str, str]:
        """Check the archive is writable and ``member`` is not the root."""
        self._check_writable()
        name = member_name(member)
        path = self._local(name)
        if path == self._root:
            raise IsADirectory("the archive root cannot be replaced")
        return name, path

    # -- seed API --------------------------------------------------------------

    def use_query(self):
        """No: a local directory needs no ?query part."""
        return False

    def _walk(self) -> List[str]:
        """Non-directory names in walk order: a directory's files (sorted), then
        each subdirectory (sorted); symlinked directories are not entered."""
        if self._single is not None:
            return [self._single]
        names = []

        def visit(local, prefix):
            try:
                entries = sorted(os.scandir(local), key=lambda e: e.name)
            except OSError:
                return
            subdirs = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry)
                elif not _is_temp(entry.name):
                    names.append(prefix + entry.name)
            for entry in subdirs:
                visit(entry.path, prefix + entry.name + "/")

        visit(self._root, "")
        return names

    def getnames(self, files=None):
        """Names of the non-directory members (files, symlinks) matching ``files``.

        Raises NoSuchFile (a FileNotFoundError) when ``files`` matches nothing.
        """
        if self._closed:
            raise ValueError("archive %s is closed" % self._root)
        return select_names(self._walk(), files)

    def getmembers(self, files=None):
        """``Member`` objects for ``getnames(files)``."""
        return [Member(name) for name in self.getnames(files)]

    def open(self, member, mode="rb"):
        """``'rb'``: the file itself, seekable; ``'wb'``: a WriteFileIO that
        stores its content as ``member`` on close (empty at start)."""
        if mode == "rb":
            name = member_name(member)
            path = self._local(name, follow=True)
            try:
                return open(path, "rb")
            except OSError as exc:
                raise _archfs_error(exc, name) from None
        if mode == "wb":
            name, path = self._writable_path(member)
            st = self._lstat(path, name)
            if st is not None and _stat.S_ISDIR(st.st_mode):
                raise IsADirectory("is a directory: %s" % name)
            fd, local = tempfile.mkstemp(prefix=_TEMP_PREFIX)
            os.close(fd)
            return WriteFileIO(self, name, local, dirty=True)
        raise ValueError("open mode must be 'rb' or 'wb', not %r" % (mode,))

    def to_localfile(self, member):
        """The member's real path, always inside the root (no copy is made)."""
        name = member_name(member)
        path = self._local(name, follow=True)
        if not os.path.exists(path):
            raise NoSuchFile("no such member: %s" % name)
        return path

    def add_localfile(self, local_file, filename):
        """Copy ``local_file`` in as a new member, keeping its permission bits.

        Raises FileAlreadyExistsError if ``filename`` exists.
        """
        name, path = self._writable_path(filename)
        if self._lstat(path, name) is not None:
            raise FileAlreadyExistsError("member exists already: %s" % name)
        try:
            st = os.stat(local_file)
        except OSError as exc:
            raise _archfs_error(exc, os.fspath(local_file)) from None
        self.replace_localfile(local_file, name, mode=_stat.S_IMODE(st.st_mode))

    def writedata(self, filename, data, *, mode=None, mtime_ns=None, owner=None,
                  atime_ns=None, ctime_ns=None):
        """Store ``data`` (bytes-like) as ``filename``, replacing any such member.
        (``ctime_ns`` is accepted and ignored: the directory keeps real ctimes.)"""
        if isinstance(data, str):
            raise TypeError("writedata needs bytes, not str")
        name, path = self._writable_path(filename)
        self._store(name, path, lambda out: out.write(data), mode,
                    time.time_ns() if mtime_ns is None else mtime_ns, owner=owner,
                    atime_ns=atime_ns)

    def is_file(self, member):
        """Whether ``member`` is a regular file (following symlinks inside the
        root); False when it is missing or a symlink pointing outside."""
        if self._single is not None and self._parts(member) != [self._single]:
            return False
        path = self._local(member)  # refuses names that leave the root
        real = os.path.realpath(path)
        return self._inside(real) and os.path.isfile(real)

    def close(self):
        """Commit and stop serving; later calls raise ValueError."""
        if self._closed:
            return
        self.commit()
        self._closed = True

    # -- filesystem extensions -------------------------------------------------

    @property
    def writable(self) -> bool:
        return self._mode != "r" and not self._closed

    @property
    def location(self) -> str:
        """The root directory (for a single-file url: the file's directory)."""
        return self._root

    def stat(self, path: str) -> MemberStat:
        """lstat of the member: a symlink is reported as the link itself."""
        local = self._local(path)
        st = self._lstat(local, member_name(path))
        if st is None:
            raise NoSuchFile("no such member: %s" % member_name(path))
        return MemberStat(st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, st.st_gid,
                          nlink=st.st_nlink, rdev=st.st_rdev, atime_ns=st.st_atime_ns,
                          ctime_ns=st.st_ctime_ns)

    def listdir(self, path: str) -> List[Tuple[str, int]]:
        """Sorted ``(name, st_mode)`` children; the mode is the type bits,
        taken from d_type where the filesystem gives it (no stat)."""
        name = member_name(path)
        local = self._local(name, follow=True)
        if self._single is not None:
            if local != self._root:
                raise NotADirectory("not a directory: %s" % name)
            st = os.lstat(os.path.join(self._root, self._single))
            return [(self._single, _stat.S_IFMT(st.st_mode))]
        try:
            with os.scandir(local) as it:
                entries = [(e.name, _entry_type(e)) for e in it if not _is_temp(e.name)]
        except OSError as exc:
            raise _archfs_error(exc, name) from None
        return sorted(entries)

    def readlink(self, path: str) -> str:
        """Target of a symlink member (EINVAL error if it is not one)."""
        name = member_name(path)
        try:
            return os.readlink(self._local(name))
        except OSError as exc:
            raise _archfs_error(exc, name) from None

    def replace_localfile(self, local_file, filename, *, mode=None, mtime_ns=None, owner=None,
                          atime_ns=None, ctime_ns=None):
        """Atomically store a copy of ``local_file`` as ``filename``.

        Copies into a temporary file beside the target, fsyncs it and renames
        it over the target, so a crash leaves the old or the new content, never
        a mix. Missing parent directories are created.
        """
        name, path = self._writable_path(filename)
        old = self._lstat(path, name)
        try:
            src = open(local_file, "rb")
        except OSError as exc:
            raise _archfs_error(exc, os.fspath(local_file)) from None
        with src:
            if mtime_ns is None:
                mtime_ns = os.fstat(src.fileno()).st_mtime_ns
            self._store(name, path, lambda out: shutil.copyfileobj(src, out, _COPY_CHUNK),
                        mode, mtime_ns, old, owner=owner, atime_ns=atime_ns)

    def _store(self, name, path, fill, mode, mtime_ns, old=None, owner=None, atime_ns=None):
        """Write a temp file in the target's directory with ``fill``, fsync it,
        then rename it over ``path``. The temp file never survives a failure.
        The owner given is set, else the old member's where we may; the old
        member's mode unless one is given."""
        if old is None:
            old = self._lstat(path, name)
        if old is not None and _stat.S_ISDIR(old.st_mode):
            raise IsADirectory("is a directory: %s" % name)
        if mode is None:
            mode = _stat.S_IMODE(old.st_mode) if old is not None and _stat.S_ISREG(old.st_mode) \
                else 0o644
        parent = os.path.dirname(path)
        self._make_parents(parent, name)
        try:
            fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=parent)
        except OSError as exc:
            raise _archfs_error(exc, name) from None
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                if owner is not None:   # before fchmod: chown clears setuid/setgid bits
                    os.fchown(out.fileno(), owner[0], owner[1])
                elif old is not None and (old.st_uid, old.st_gid) != (os.geteuid(),
                                                                      os.getegid()):
                    try:
                        os.fchown(out.fileno(), old.st_uid, old.st_gid)
                    except PermissionError:
                        pass  # only root may give a file away; keep ours
                os.fchmod(out.fileno(), mode & 0o7777)
                os.fsync(out.fileno())
            os.utime(tmp, ns=(time.time_ns() if atime_ns is None else atime_ns, mtime_ns))
            os.replace(tmp, path)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if isinstance(exc, OSError):
                raise _archfs_error(exc, name) from None
            raise
        self._unsynced.add(parent)

    def _make_parents(self, parent: str, name: str) -> None:
        """Create the missing directories above a member (they are implied)."""
        if os.path.isdir(parent):
            return
        try:
            os.makedirs(parent, mode=0o755)
        except FileExistsError:
            raise NotADirectory("a parent of %s is not a directory" % name) from None
        except OSError as exc:
            raise _archfs_error(exc, name) from None
        self._unsynced.add(os.path.dirname(parent))

    def remove(self, path: str) -> None:
        """Unlink a file or symlink; IsADirectory for a directory."""
        name, local = self._writable_path(path)
        st = self._lstat(local, name)
        if st is not None and _stat.S_ISDIR(st.st_mode):
            raise IsADirectory("is a directory: %s" % name)
        self._call(os.unlink, name, local)
        self._unsynced.add(os.path.dirname(local))

    def mkdir(self, path: str, mode: int = 0o755, owner=None) -> None:
        """Create one directory with exactly ``mode`` (the parent must exist)."""
        self._check_writable()
        name = member_name(path)
        local = self._local(name)
        if local == self._root:
            raise FileAlreadyExistsError("the archive root exists already")
        self._call(os.mkdir, name, local, mode & 0o7777)
        self._set_owner(name, local, owner)
        self._call(os.chmod, name, local, mode & 0o7777)  # mkdir applied the umask
        self._unsynced.add(os.path.dirname(local))

    def mknod(self, path: str, mode: int, rdev: int = 0, owner=None) -> None:
        """A FIFO, socket or device node (devices need root), mode as given."""
        self._check_writable()
        name = member_name(path)
        local = self._local(name)
        if local == self._root:
            raise FileAlreadyExistsError("the archive root exists already")
        self._call(os.mknod, name, local, mode, rdev)
        self._set_owner(name, local, owner)
        self._call(os.chmod, name, local, mode & 0o7777)  # mknod applied the umask
        self._unsynced.add(os.path.dirname(local))

    def _set_owner(self, name: str, local: str, owner) -> None:
        if owner is not None:
            self._call(os.chown, name, local, owner[0], owner[1], follow_symlinks=False)

    def rmdir(self, path: str) -> None:
        """Remove an empty directory (DirectoryNotEmpty, NotADirectory otherwise)."""
        self._check_writable()
        name = member_name(path)
        local = self._local(name)
        if local == self._root:
            raise ArchfsError(errno.EBUSY, "the archive root cannot be removed")
        self._call(os.rmdir, name, local)
        self._unsynced.discard(local)
        self._unsynced.add(os.path.dirname(local))

    def rename(self, old: str, new: str) -> None:
        """rename(2) on the two local paths; its errors mapped to archfs classes."""
        self._check_writable()
        old_local, new_local = self._local(old), self._local(new)
        if self._root in (old_local, new_local):
            raise InvalidMove("the archive root cannot be renamed or replaced")
        label = "%s -> %s" % (member_name(old), member_name(new))
        try:
            os.rename(old_local, new_local)
        except OSError as exc:
            raise _archfs_error(exc, label, renaming=True) from None
        self._unsynced.update((os.path.dirname(old_local), os.path.dirname(new_local)))

    def symlink(self, target: str, path: str, owner=None) -> None:
        """Create symlink ``path`` -> ``target``; the target is stored as given
        (it may point anywhere, but this plugin never follows it out of the root)."""
        self._check_writable()
        name = member_name(path)
        local = self._local(name)
        if local == self._root:
            raise FileAlreadyExistsError("the archive root exists already")
        self._call(os.symlink, name, target, local)
        self._set_owner(name, local, owner)
        self._unsynced.add(os.path.dirname(local))

    def chmod(self, path: str, mode: int) -> None:
        """Set permission bits; NotSupported on a symlink (Linux has no lchmod)."""
        name, local, st = self._existing_for_change(path)
        if _stat.S_ISLNK(st.st_mode):
            raise NotSupported("cannot chmod a symlink: %s" % name)
        self._call(os.chmod, name, local, mode & 0o7777)
        self._mark_metadata(local, st)

    def utime(self, path: str, mtime_ns, atime_ns=None) -> None:
        """Set mtime and/or atime (of a symlink itself, not its target)."""
        name, local, st = self._existing_for_change(path)
        self._call(os.utime, name, local,
                   ns=(st.st_atime_ns if atime_ns is None else atime_ns,
                       st.st_mtime_ns if mtime_ns is None else mtime_ns),
                   follow_symlinks=False)
        self._mark_metadata(local, st)

    def chown(self, path: str, uid, gid) -> None:
        """Change the owner (of a symlink itself); None keeps that part."""
        name, local, st = self._existing_for_change(path)
        self._call(os.chown, name, local, -1 if uid is None else uid,
                   -1 if gid is None else gid, follow_symlinks=False)
        self._mark_metadata(local, st)

    def commit(self) -> None:
        """fsync the directories and files changed since the last commit.

        File contents are fsynced as they are written (before the rename that
        publishes them); this makes the renames, creations, removals and
        metadata changes durable too.
        """
        for path in sorted(self._unsynced.take_all()):
            try:
                _fsync_path(path)
            except (FileNotFoundError, PermissionError):
                continue  # removed again since, or chmod'ed unreadable
            except OSError as exc:
                raise _archfs_error(exc, path) from None

    def _mark_metadata(self, local: str, st: os.stat_result) -> None:
        """Remember a changed inode for commit; only files and directories can
        be opened for fsync without side effects (not fifos, devices, links)."""
        if _stat.S_ISREG(st.st_mode) or _stat.S_ISDIR(st.st_mode):
            self._unsynced.add(local)

    @staticmethod
    def _call(func, name, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            raise _archfs_error(exc, name) from None

    def __repr__(self):
        return "FilesystemArchive(%r, mode=%r)" % (self._root, self._mode)


def _entry_type(entry: os.DirEntry) -> int:
    """File-type bits of a scandir entry; a stat only for devices, fifos, sockets."""
    if entry.is_symlink():
        return _stat.S_IFLNK
    if entry.is_dir(follow_symlinks=False):
        return _stat.S_IFDIR
    if entry.is_file(follow_symlinks=False):
        return _stat.S_IFREG
    return _stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)


def _is_temp(name: str) -> bool:
    """Our own copy-back files, which live beside their target until renamed."""
    return name.startswith(_TEMP_PREFIX) and name.endswith(".tmp")


class _PathSet:
    """A set of paths that many threads add to while commit takes it whole."""

    def __init__(self):
        self._paths = set()
        self._lock = threading.Lock()

    def add(self, path: str) -> None:
        with self._lock:
            self._paths.add(path)

    def update(self, paths) -> None:
        with self._lock:
            self._paths.update(paths)

    def discard(self, path: str) -> None:
        with self._lock:
            self._paths.discard(path)

    def take_all(self) -> set:
        with self._lock:
            taken, self._paths = self._paths, set()
        return taken
