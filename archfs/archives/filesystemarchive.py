"""FilesystemArchive: a local directory served through the archive plugin API.

It is the reference plugin (every method of the contract maps onto a plain
POSIX call) and what the mount tests compare the zip plugin against. Every
name is checked before it touches the disk: ``..`` components are refused and
every directory on the way must resolve inside the root, so no method ever
reads or writes outside it; operations that follow a final symlink refuse one
that points out of the root.

Here: opening, names to local paths, reading, commit. The writes are in
``filesystemchanges``, the disk helpers in ``localpaths``.
"""

import os
import stat as _stat
import tempfile
import time
from typing import List, Optional, Tuple

from archfs.archives.abstractarchive import (
    AbstractArchive,
    Member,
    MemberStat,
    member_name,
    select_names,
)
from archfs.archives.filesystemchanges import FilesystemChanges
from archfs.archives.localpaths import (
    TEMP_PREFIX,
    PathSet,
    archfs_error,
    entry_type,
    is_temp,
    path_from_url,
)
from archfs.archives.writefileio import WriteFileIO
from archfs.errors import (
    FileAlreadyExistsError,
    IsADirectory,
    NoSuchFile,
    NotADirectory,
    WriteOnFile,
)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemArchive(FilesystemChanges, AbstractArchive):
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
        self._unsynced = PathSet()  # local paths whose metadata or entries changed
        path = path_from_url(url)
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
                raise archfs_error(exc, path) from None
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
            raise archfs_error(exc, name) from None

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
                elif not is_temp(entry.name):
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
                raise archfs_error(exc, name) from None
        if mode == "wb":
            name, path = self._writable_path(member)
            st = self._lstat(path, name)
            if st is not None and _stat.S_ISDIR(st.st_mode):
                raise IsADirectory("is a directory: %s" % name)
            fd, local = tempfile.mkstemp(prefix=TEMP_PREFIX)
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
            raise archfs_error(exc, os.fspath(local_file)) from None
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
                entries = [(e.name, entry_type(e)) for e in it if not is_temp(e.name)]
        except OSError as exc:
            raise archfs_error(exc, name) from None
        return sorted(entries)

    def readlink(self, path: str) -> str:
        """Target of a symlink member (EINVAL error if it is not one)."""
        name = member_name(path)
        try:
            return os.readlink(self._local(name))
        except OSError as exc:
            raise archfs_error(exc, name) from None

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
                raise archfs_error(exc, path) from None

    def __repr__(self):
        return "FilesystemArchive(%r, mode=%r)" % (self._root, self._mode)
