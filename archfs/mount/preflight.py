"""Checks before mounting, each failing with the one line a user needs.

They run before libfuse is asked to mount, because libfuse's own messages
(or a silent hang on a bad mountpoint) are much harder to act on.
"""

import errno
import os
import stat as _stat
from typing import List, Tuple

from archfs import exitcodes
from archfs.errors import ArchfsError, NoSuchFile
from archfs.mount import fuselib, mounttable


class MountError(ArchfsError):
    """Mounting or unmounting cannot go ahead; ``str()`` is the line shown to
    the user. An OSError with the errno that fits; exit status 4 (mount or
    system problem), or 3 when ``archive`` says the archive is the problem."""

    exit_code = exitcodes.SYSTEM

    def __init__(self, message: str, errno_value: int = errno.EIO, archive: bool = False):
        super().__init__(errno_value, message)
        if archive:
            self.exit_code = exitcodes.ARCHIVE


def _is_root() -> bool:
    return os.geteuid() == 0


def check_fuse_device(device: str = None) -> None:
    device = device or os.environ.get("ARCHFS_FUSE_DEVICE", "/dev/fuse")
    try:
        st = os.stat(device)
    except FileNotFoundError:
        raise MountError("%s does not exist: load the fuse kernel module (modprobe fuse) "
                         "or, in a container, pass the device in" % device,
                         errno.ENODEV) from None
    except OSError as exc:
        raise MountError("cannot use %s: %s" % (device, exc.strerror), exc.errno) from None
    if not _stat.S_ISCHR(st.st_mode):
        raise MountError("%s is not a character device" % device, errno.ENODEV)
    if not os.access(device, os.R_OK | os.W_OK):
        raise MountError("permission denied: cannot open %s for reading and writing" % device,
                         errno.EACCES)


def check_fusermount(is_root: bool = None) -> None:
    """Unprivileged mounts go through fusermount; root mounts directly."""
    if (_is_root() if is_root is None else is_root):
        return
    if fuselib.find_fusermount() is None:
        raise MountError("%s not found: install fuse3 (it provides fusermount3)"
                         % " or ".join(fuselib.fusermount_names()), errno.ENOENT)


def check_mountpoint(path: str) -> None:
    """``path`` is a real, absolute path."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MountError("mountpoint does not exist: %s" % path, errno.ENOENT) from None
    except PermissionError:
        raise MountError("permission denied: cannot reach mountpoint %s" % path,
                         errno.EACCES) from None
    except OSError as exc:
        if mounttable.mount_type(path):
            raise MountError("mountpoint %s is a broken mount (%s): run archfs unmount %s"
                             % (path, exc.strerror, path), exc.errno) from None
        raise MountError("cannot use mountpoint %s: %s" % (path, exc.strerror),
                         exc.errno) from None
    if not _stat.S_ISDIR(st.st_mode):
        raise MountError("mountpoint is not a directory: %s" % path, errno.ENOTDIR)
    if mounttable.mount_type(path):
        raise MountError("something is already mounted on %s" % path, errno.EBUSY)
    try:
        with os.scandir(path) as entries:
            if next(entries, None) is not None:
                raise MountError("mountpoint is not empty: %s" % path, errno.ENOTEMPTY)
    except PermissionError:
        raise MountError("permission denied: cannot read mountpoint %s" % path,
                         errno.EACCES) from None
    if not _is_root() and not os.access(path, os.W_OK):
        raise MountError("permission denied: no write access to mountpoint %s" % path,
                         errno.EACCES)


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def check_archive(archive: str, mountpoint: str, read_only: bool) -> Tuple[bool, List[str]]:
    """Whether to mount read-only, and warnings to show.

    ``archive`` and ``mountpoint`` are real, absolute paths.
    """
    warnings = []
    if _inside(archive, mountpoint):
        raise MountError("the archive %s lies inside the mountpoint %s" % (archive, mountpoint),
                         errno.EINVAL)
    if os.path.isdir(archive) and _inside(mountpoint, archive):
        raise MountError("the mountpoint %s lies inside the directory being mounted"
                         % mountpoint, errno.EINVAL)
    if not os.path.exists(archive):
        if os.path.lexists(archive):
            raise NoSuchFile("the archive is a broken symlink: %s" % archive)
        if read_only:
            raise NoSuchFile("no such archive: %s" % archive)
        parent = os.path.dirname(archive)
        if not os.path.isdir(parent):
            raise NoSuchFile("cannot create %s: directory %s does not exist" % (archive, parent))
        if not os.access(parent, os.W_OK | os.X_OK):
            raise MountError("permission denied: cannot create %s" % archive, errno.EACCES,
                             archive=True)
        return read_only, warnings
    wanted = os.R_OK | (os.X_OK if os.path.isdir(archive) else 0)
    if not os.access(archive, wanted):
        raise MountError("permission denied: cannot read %s" % archive, errno.EACCES,
                         archive=True)
    if not read_only and not os.access(archive, os.W_OK):
        warnings.append("%s is not writable: mounting it read-only" % archive)
        read_only = True
    return read_only, warnings
