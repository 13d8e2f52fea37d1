"""FilesystemArchive's writes: every change a plain POSIX call on a checked
local path, file contents written to a temporary file beside the target,
fsynced and renamed over it. Apart from the reading side, which a
read-only mount uses alone.
"""

import errno
import os
import shutil
import stat as _stat
import tempfile
import time

from archfs.archives.abstractarchive import member_name
from archfs.archives.localpaths import COPY_CHUNK, TEMP_PREFIX, archfs_error
from archfs.errors import (
    ArchfsError,
    FileAlreadyExistsError,
    InvalidMove,
    IsADirectory,
    NotADirectory,
    NotSupported,
)


class FilesystemChanges:
    """Part of ``FilesystemArchive``: the write half of the plugin contract."""

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
            raise archfs_error(exc, os.fspath(local_file)) from None
        with src:
            if mtime_ns is None:
                mtime_ns = os.fstat(src.fileno()).st_mtime_ns
            self._store(name, path, lambda out: shutil.copyfileobj(src, out, COPY_CHUNK),
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
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=parent)
        except OSError as exc:
            raise archfs_error(exc, name) from None
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
                raise archfs_error(exc, name) from None
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
            raise archfs_error(exc, name) from None
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
            raise archfs_error(exc, label, renaming=True) from None
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
            raise archfs_error(exc, name) from None
