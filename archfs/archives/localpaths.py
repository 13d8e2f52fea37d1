"""FilesystemArchive's dealings with the local disk that need no archive:
OSError to archfs error, a path from a url, scandir types, its own
temporary files, and the set of paths a commit fsyncs.
"""

import errno
import os
import stat as _stat
import threading
import urllib.parse

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
)

COPY_CHUNK = 1 << 20
TEMP_PREFIX = ".archfs-"

# errno -> archfs class; anything else keeps its errno in a plain ArchfsError.
ERRNO_CLASSES = {
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


def archfs_error(exc: OSError, name: str, renaming: bool = False) -> ArchfsError:
    """The archfs error for an OSError raised while working on ``name``."""
    if isinstance(exc, ArchfsError):
        return exc
    message = "%s: %s" % (exc.strerror or exc, name)
    code = exc.errno
    if renaming and code == errno.EINVAL:
        return InvalidMove(message)
    if renaming and code == errno.EEXIST:  # some filesystems say EEXIST for ENOTEMPTY
        return DirectoryNotEmpty(message)
    cls = ERRNO_CLASSES.get(code)
    if cls is not None:
        return cls(message)
    return ArchfsError(code if code is not None else errno.EIO, message)


def path_from_url(url) -> str:
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


def entry_type(entry: os.DirEntry) -> int:
    """File-type bits of a scandir entry; a stat only for devices, fifos, sockets."""
    if entry.is_symlink():
        return _stat.S_IFLNK
    if entry.is_dir(follow_symlinks=False):
        return _stat.S_IFDIR
    if entry.is_file(follow_symlinks=False):
        return _stat.S_IFREG
    return _stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)


def is_temp(name: str) -> bool:
    """Our own copy-back files, which live beside their target until renamed."""
    return name.startswith(TEMP_PREFIX) and name.endswith(".tmp")


class PathSet:
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
