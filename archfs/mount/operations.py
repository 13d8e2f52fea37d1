"""The FUSE operations: each one a thin translation to the archive plugin.

No archive format is known here: paths become archive-relative names,
calls go to ``OpenFiles`` (open files and unsaved content over the plugin)
or straight to the plugin, and results become the dicts mfusepy wants.
Exceptions become errno in ``errnomap`` and nowhere else.

mfusepy runs with ``raw_fi=True`` (so open can set keep_cache); ``fi`` below
is a ``fuse_file_info`` and ``fi.fh`` the handle number.

Permissions are checked by the kernel (``default_permissions``) against
the modes and owners getattr reports, except where root mounts without
allow_other or allow_root: every caller is then root, whom no check refuses,
and the kernel asks ``access`` only (see ``daemon._kernel_checks_permissions``); that
covers chown's and utimensat's rules, sticky directories and the clearing
of setuid/setgid on chown and on writes by others (the kernel then sends a
chmod). What archfs decides itself:

- Owners. When root mounts an archive whose plugin records owners
  (``keeps_owners``), everything made through the mount belongs to the
  calling process (its fsuid and fsgid, or the directory's group under a
  setgid directory, which a new directory also inherits), chown is
  recorded, and the archive's owners are shown (a member without one shows
  as root's). Any other mount shows everything as the mounting user's and
  refuses chown to another owner (EPERM), as tar does.
- Names. A component over 255 bytes is ENAMETOOLONG at every call; a name
  the archive cannot hold is refused (with the reason in the log) at the
  call that would introduce it: create, mknod, mkdir, symlink, link, rename.
- Hard links: EPERM ("the filesystem does not support hard links", as
  link(2) documents), after the checks for a bad name, a missing source and
  an existing target.
- fallocate: mode 0 (and posix_fallocate) grows the file with zeros; other
  modes are EOPNOTSUPP and change nothing.
"""

import errno
import logging
import os
import stat as _stat
import time

from archfs.archives.abstractarchive import AbstractArchive, MemberStat
from archfs.errors import NameTooLong, NotSupported, ReadOnlyError
from archfs.mount.entry import is_hidden_name
from archfs.mount.errnomap import fuse_errors

try:                      # hashlib's own blake2b, without hashlib's OpenSSL (start-up cost)
    from _blake2 import blake2b as _blake2b
except ImportError:       # pragma: no cover  (an interpreter without the module)
    from hashlib import blake2b as _blake2b

log = logging.getLogger("archfs.mount")

# The kernel refuses (EIO) any size beyond off_t; a crafted archive may declare one.
MAX_SIZE = (1 << 63) - 1
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


NAME_MAX = 255


def _name(path: str) -> str:
    """FUSE path -> archive name: ``/a/b`` -> ``a/b``, ``/`` -> ``""``.
    A component longer than NAME_MAX bytes is ENAMETOOLONG here, for every
    call (the kernel lets FUSE names up to 1024 bytes through)."""
    name = path.strip("/")
    if len(name) > NAME_MAX // 4:
        for part in name.split("/"):
            if len(part) > NAME_MAX // 4 and \
                    len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
                raise NameTooLong("a name component of %d bytes (at most %d)"
                                  % (len(part.encode("utf-8", "surrogateescape")), NAME_MAX))
    return name


class ArchiveOperations:
    """Serves one archive plugin through a ``MountSession``."""

    use_ns = True
    # libfuse2: call read/write/getattr... of a file unlinked while open with
    # path None (we use the handle) instead of failing them with ENOENT.
    flag_nullpath_ok = True

    def __init__(self, session):
        self.session = session
        self.archive = session.archive
        self.files = session.files
        self.committer = session.committer
        self.uid = os.getuid()
        self.gid = os.getgid()
        # Like tar: only root keeps the owners an archive records; for anyone
        # else a member made on another machine would be unwritable.
        self.keep_owners = os.geteuid() == 0
        # the plugin numbers inodes (hard links share one); paths it does not
        # number (files not copied back yet) get a number from their path
        self.uses_inodes = bool(getattr(self.archive, "uses_inodes", False))
        # ... and only then are owners recorded (see the module docstring)
        self.own = self.keep_owners and getattr(self.archive, "keeps_owners", False)
        self.files.records_owners = self.own
        # who made the current request: libfuse's high-level context unless
        # the binding serving the mount sets another (lowlevel.py does)
        self.caller_context = None
        self.stats = {"reads": 0, "read_bytes": 0, "writes": 0, "write_bytes": 0}
        # whether the plugin keeps extended attributes at all (one that does
        # overrides getxattr); a binding may tell the kernel there are none
        self.xattrs = type(self.archive).getxattr is not AbstractArchive.getxattr
        # reads of a remote archive wait on the network: a binding keeps
        # several threads for them
        self.remote = not getattr(getattr(self.archive, "transport", None), "is_local", True)

    # -- life cycle ----------------------------------------------------------

    def init_with_config(self, conn_info, config_3):
        if self.archive.writable:
            self.committer.start()
        self.session.mounted()

    def destroy(self, path):
        self.session.finish(self.stats)

    # -- metadata ------------------------------------------------------------

    def _attrs(self, st: MemberStat, path=None) -> dict:
        size = min(st.size, MAX_SIZE)
        mtime = st.mtime_ns
        uid, gid = self._owner(st)
        attrs = {
            "st_mode": st.mode,
            "st_nlink": st.nlink or (2 if st.is_dir else 1),
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_mtime": mtime,
            "st_ctime": mtime if st.ctime_ns is None else st.ctime_ns,
            "st_atime": mtime if st.atime_ns is None else st.atime_ns,
            "st_uid": uid,
            "st_gid": gid,
        }
        if st.ino is not None:
            attrs["st_ino"] = st.ino
        elif self.uses_inodes:      # a file not in the archive yet
            attrs["st_ino"] = path_ino(path or "")
        if st.rdev:
            attrs["st_rdev"] = st.rdev
        return attrs

    def _owner(self, st: MemberStat):
        """(uid, gid) as shown: the archive's for root, else the mounting user's."""
        if not self.keep_owners:
            return self.uid, self.gid
        return (self.uid if st.uid is None else st.uid,
                self.gid if st.gid is None else st.gid)

    def _creator(self, name: str):
        """The owner of a new ``name``: the caller, with the group of a setgid
        parent directory; None where owners are not recorded."""
        if not self.own:
            return None
        uid, gid, _pid = (self.caller_context or _fuse_get_context)()
        parent = self.files.stat(name.rpartition("/")[0])
        if parent.mode & _stat.S_ISGID:
            gid = self._owner(parent)[1]
        return uid, gid

    def _check_new(self, name: str) -> None:
        """Refuse a name the archive cannot hold before anything is made."""
        try:
            self.archive.check_new_name(name)
        except OSError as exc:
            log.warning("refusing the name /%s: %s", name[:300], exc)
            raise

    @fuse_errors
    def getattr(self, path, fh=None):
        if path is None:  # an open file whose name was removed
            return self._unlinked(self._attrs(self.files.stat_handle(fh.fh)))
        name = _name(path)
        return self._shown(name, self.files.stat(name))

    def _shown(self, name: str, st) -> dict:
        """getattr's answer for ``name`` whose stat is ``st``."""
        attrs = self._attrs(st, name)
        if st.is_dir:
            changed = self.files.dir_changed(name)
            if changed is not None:
                attrs["st_mtime"] = max(attrs["st_mtime"], changed)
                attrs["st_ctime"] = max(attrs["st_ctime"], changed)
        elif ".fuse_hidden" in name and is_hidden_name(name) and self.files.is_unlinked(name):
            return self._unlinked(attrs)
        return attrs

    @fuse_errors
    def lookup(self, path):
        """getattr of a name being looked up, or None where nothing has it.
        A missing name is the usual answer before a file is made (cp -r
        looks up every name it creates): it then costs no exception, and is
        logged only where debug lines are kept (-v)."""
        name = _name(path)
        st = self.files.stat_or_none(name)
        if st is None:
            log.debug("lookup %s: no such file or directory", path)
            return None
        return self._shown(name, st)

    @staticmethod
    def _unlinked(attrs: dict) -> dict:
        attrs["st_nlink"] = 0     # an open file whose name is gone, as fstat shows it
        return attrs

    @fuse_errors
    def readdir(self, path, fh):
        """(name, st_mode) pairs; only the mode's type bits reach the kernel."""
        return _DOTS + self.files.listdir(_name(path))

    @fuse_errors
    def readlink(self, path):
        return self.archive.readlink(_name(path))

    @fuse_errors
    def listxattr(self, path):
        name = _name(path)
        if not self.xattrs:     # also for a file not copied back yet
            self.files.stat(name)
            return []
        return self.archive.listxattr(name)

    @fuse_errors
    def getxattr(self, path, name, position=0):
        return self.archive.getxattr(_name(path), name)

    @fuse_errors
    def statfs(self, path):
        figures = dict(self.archive.statvfs())
        figures["f_namemax"] = min(figures.get("f_namemax", 255) or 255, 255)
        return figures

    @fuse_errors
    def access(self, path, amode):
        """Asked only where the kernel does not check permissions, that is
        for root (see the module's docstring): root may do anything but run
        a file that has no x bit."""
        st = self.files.stat(_name(path))
        if amode & os.W_OK and not self.archive.writable:
            raise ReadOnlyError("the archive is mounted read-only")
        if amode & os.X_OK and not _stat.S_ISDIR(st.mode) and not st.mode & 0o111:
            raise PermissionError(errno.EACCES, "no execute permission")
        return 0

    @fuse_errors
    def chmod(self, path, mode, fh=None):
        """``fh``: for a file whose name is gone (fchmod after unlink), the
        open handle, from a binding that has no path for it."""
        if path is None:
            self.files.chmod_open(fh.fh, mode)
            return 0
        self.files.chmod(_name(path), mode)
        self.committer.after_change()
        return 0

    @fuse_errors
    def chown(self, path, uid, gid, fh=None):
        """Recorded where owners are (the kernel checked the caller may);
        elsewhere only a no-op passes. ``fh`` as for chmod."""
        name = None if path is None else _name(path)
        shown_uid, shown_gid = self._owner(self.files.stat(name) if name is not None
                                           else self.files.stat_handle(fh.fh))
        uid = shown_uid if uid == -1 else uid
        gid = shown_gid if gid == -1 else gid
        if (uid, gid) == (shown_uid, shown_gid) and not self.own:
            return 0
        if not self.own:
            raise PermissionError(errno.EPERM, "owners are recorded only when root mounts")
        if name is None:
            self.files.chown_open(fh.fh, uid, gid)
            return 0
        self.files.chown(name, uid, gid)
        self.committer.after_change()
        return 0

    @fuse_errors
    def utimens(self, path, times=None, fh=None):
        """``fh`` as for chmod."""
        now = time.time_ns()
        atime, mtime = (now, now) if times is None else times
        atime = None if atime == UTIME_OMIT else now if atime == UTIME_NOW else atime
        mtime = None if mtime == UTIME_OMIT else now if mtime == UTIME_NOW else mtime
        if atime is None and mtime is None:
            return 0
        if path is None:
            self.files.utime_open(fh.fh, mtime, atime)
            return 0
        self.files.utime(_name(path), mtime, atime)
        self.committer.after_change()
        return 0

    # -- files ---------------------------------------------------------------

    @fuse_errors
    def open(self, path, fi):
        fi.fh, keep = self.files.open(_name(path), fi.flags)
        fi.keep_cache = 1 if keep else 0
        _skip_flush(fi)
        return 0

    @fuse_errors
    def content(self, path):
        """A small file's whole content read at once, with no handle (the
        kernel serves files without OPEN on read-only mounts), or None
        where it must be read through ``open``."""
        if self.archive.writable:
            return None
        return self.archive.read_small(_name(path))

    def small_plans(self, paths):
        """Read-ahead's work for the decoder process (the plugin API's
        ``small_plans``); None where the plugin offers none."""
        if self.archive.writable:
            return None
        return self.archive.small_plans([_name(p) for p in paths])

    def opens_may_be_refused(self) -> bool:
        """Whether opening a file can fail where reading it would not (a
        member that needs a password): the binding must then ask at open."""
        return self.archive.has_encrypted_members()

    def loaded(self, fi):
        """The whole content of an open file if its reader holds it in
        memory already (else None): the binding may hand it to the kernel."""
        return self.files.loaded(fi.fh)

    @fuse_errors
    def create(self, path, mode, fi):
        name = _name(path)
        self._check_new(name)
        fi.fh = self.files.create(name, mode, fi.flags, self._creator(name))
        _skip_flush(fi)
        return 0

    @fuse_errors
    def created_attrs(self, path, fi):
        """getattr of the file ``create`` just made and opened as ``fi``:
        what its open entry shows, without looking the name up again."""
        return self._attrs(self.files.stat_handle(fi.fh), _name(path))

    @fuse_errors
    def mknod(self, path, mode, dev):
        """FIFOs and sockets for anyone, devices for root (the kernel checks);
        S_IFREG makes an empty file."""
        name = _name(path)
        self._check_new(name)
        owner = self._creator(name)
        kind = _stat.S_IFMT(mode)
        if kind in (0, _stat.S_IFREG):
            fh = self.files.create(name, mode, os.O_CREAT | os.O_EXCL | os.O_WRONLY, owner)
            self.files.release(fh)
        elif kind in (_stat.S_IFIFO, _stat.S_IFSOCK, _stat.S_IFCHR, _stat.S_IFBLK):
            self.files.mknod(name, mode, dev, owner)
        else:
            raise OSError(errno.EINVAL, "mknod of an unknown file type %o" % kind)
        self.committer.after_change()
        return 0

    @fuse_errors
    def fallocate(self, path, mode, offset, length, fi):
        """Mode 0 grows the file with zeros; nothing else is honoured."""
        if mode != 0:
            raise OSError(errno.EOPNOTSUPP, "fallocate mode %#x is not supported" % mode)
        self.files.allocate(fi.fh, offset, length)
        return 0

    @fuse_errors
    def read(self, path, size, offset, fi):
        data = self.files.read(fi.fh, size, offset)
        self.stats["reads"] += 1
        self.stats["read_bytes"] += len(data)
        return data

    @fuse_errors
    def write(self, path, data, offset, fi):
        written = self.files.write(fi.fh, data, offset)
        self.stats["writes"] += 1
        self.stats["write_bytes"] += written
        return written

    @fuse_errors
    def truncate(self, path, length, fh=None):
        if path is None:  # ftruncate of a file whose name was removed
            self.files.truncate_open(fh.fh, length)
            return 0
        self.files.truncate(_name(path), length)
        return 0

    @fuse_errors
    def flush(self, path, fi):
        """Only reached where libfuse cannot pass ``noflush`` (see _skip_flush)."""
        self.files.handle(fi.fh)  # data is in the local file already
        return 0

    @fuse_errors
    def fsync(self, path, datasync, fi):
        self.committer.fsync(self.files.handle(fi.fh).entry)
        return 0

    @fuse_errors
    def fsyncdir(self, path, datasync, fh):
        self.committer.fsync(None)
        return 0

    @fuse_errors
    def release(self, path, fi):
        self.files.release(fi.fh)
        return 0

    # -- names ---------------------------------------------------------------

    @fuse_errors
    def unlink(self, path):
        self.files.unlink(_name(path))
        self.committer.after_change()
        return 0

    @fuse_errors
    def mkdir(self, path, mode):
        name = _name(path)
        self._check_new(name)
        owner = self._creator(name)
        if owner is not None and self.files.stat(name.rpartition("/")[0]).mode & _stat.S_ISGID:
            mode |= _stat.S_ISGID       # a setgid directory's subdirectories inherit it
        self.files.mkdir(name, mode, owner)
        self.committer.after_change()
        return 0

    @fuse_errors
    def rmdir(self, path):
        self.files.rmdir(_name(path))
        self.committer.after_change()
        return 0

    @fuse_errors
    def rename(self, old, new, flags=0):
        if flags & RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, "rename with RENAME_EXCHANGE is not supported")
        old_name, new_name = _name(old), _name(new)
        if ".fuse_hidden" in new_name and is_hidden_name(new_name) and not flags:
            self.files.hide(old_name, new_name)   # libfuse: unlinked while open
        else:
            self._check_new(new_name)
            self.files.rename(old_name, new_name, noreplace=bool(flags & RENAME_NOREPLACE))
        self.committer.after_change()
        return 0

    @fuse_errors
    def symlink(self, path, target):
        """mfusepy order: the link's own path first, then what it points to."""
        name = _name(path)
        self._check_new(name)
        self.files.symlink(target, name, self._creator(name))
        self.committer.after_change()
        return 0

    @fuse_errors
    def link(self, path, target):
        """mfusepy order: the new name first, then the existing file. A plugin
        without hard links (zip has no portable way to store one) makes it
        EPERM, what link(2) answers on a filesystem without them (ln and
        cp -al report it as such)."""
        name = _name(path)
        self._check_new(name)
        self.files.stat(_name(target))
        try:
            self.files.link(_name(target), name)
        except NotSupported as exc:
            raise PermissionError(errno.EPERM, str(exc)) from None
        self.committer.after_change()
        return 0


def _fuse_get_context():
    """libfuse's high-level caller of the request (the low-level binding sets
    ``caller_context`` instead): mfusepy is imported only where it serves."""
    from archfs.mount import fuselib
    return fuselib.load().fuse_get_context()


def path_ino(path: str) -> int:
    """An inode number for a path the plugin does not number: a 62-bit hash
    with bit 62 set, apart from any plugin's own numbers."""
    digest = _blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return (int.from_bytes(digest, "little") & ((1 << 62) - 1)) | (1 << 62)


def _skip_flush(fi) -> None:
    """Ask the kernel not to send FLUSH at close(2): written data is in the
    local file as soon as write returns, so flush has nothing to do, and
    without it a close costs no round trip to the daemon (a ``cp -r`` of
    small files closes once per file). libfuse 3.11+ only."""
    if hasattr(type(fi), "noflush"):
        fi.noflush = 1


_DOTS = [(".", _stat.S_IFDIR), ("..", _stat.S_IFDIR)]
