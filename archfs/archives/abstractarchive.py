"""The archive plugin API: what every archive format implements.

The first half is the seed API that archfs adopts name for name from the
``imagedata`` package (``AbstractArchive``, ``Member`` and the methods listed
in its docstring). The second half is what a filesystem needs beyond it:
stat, directory listings, symlinks, special files, remove, rename,
mkdir/rmdir, owners and times, replacing a member, and commit. The mount
speaks only this API.

Owners are ``(uid, gid)`` pairs. A plugin that can record them sets
``keeps_owners = True``; a mount by root then passes the creator's owner to
every call that makes a member (``owner=``) and forwards chown. Keyword
arguments added to the API over time (``owner``, ``atime_ns``, ``ctime_ns``)
are passed only when they carry a value, so a plugin written against an
older API keeps working where they are not needed.

Paths in the filesystem half are archive-relative, separated by ``/``, with no
leading slash; ``""`` is the root directory. Seed methods accept a ``Member``
or a plain name. A plugin that cannot do an operation raises ``NotSupported``
(the mount answers ENOTSUP); one opened read-only raises ``ReadOnlyError``
(EROFS). Every error is an ``archfs.errors`` exception, i.e. an ``OSError``
with its errno set.
"""

import posixpath
import stat as _stat
from abc import ABCMeta, abstractmethod
from typing import Iterable, List, NamedTuple, Optional, Tuple, Union

from archfs.errors import (  # noqa: F401  (seed names live here too)
    NoOtherInstance,
    NotSupported,
    ReadOnlyError,
    WriteMultipleArchives,
)


class Member:
    """Handle of one member of an archive (seed API)."""

    def __init__(self, filename, info=None, fh=None, local_file=None):
        self.filename = filename
        self.info = {} if info is None else info
        self.fh = fh
        self.local_file = local_file

    def __repr__(self):
        return "Member(%r)" % (self.filename,)

    def __eq__(self, other):
        return isinstance(other, Member) and other.filename == self.filename

    def __hash__(self):
        return hash(self.filename)


class MemberStat(NamedTuple):
    """What ``stat`` says of a member.

    ``mode`` is a full ``st_mode`` (type bits and permission bits).
    ``mtime_ns`` has the precision the archive holds. ``uid``/``gid`` are
    None unless the archive records an owner. ``nlink`` is the link count
    (0: the mount's default, 1 for a file, 2 for a directory; a plugin that
    knows better says 2 plus the subdirectories); ``ino`` the inode number,
    given by plugins whose ``uses_inodes`` is True (hard links share one);
    ``rdev`` the device number of a device file. ``atime_ns`` and
    ``ctime_ns`` (the last change of content or attributes) default to the
    mtime.
    """

    mode: int
    size: int
    mtime_ns: int
    uid: Optional[int] = None
    gid: Optional[int] = None
    nlink: int = 0
    ino: Optional[int] = None
    rdev: int = 0
    atime_ns: Optional[int] = None
    ctime_ns: Optional[int] = None

    @property
    def is_dir(self) -> bool:
        return _stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return _stat.S_ISLNK(self.mode)

    @property
    def is_file(self) -> bool:
        return _stat.S_ISREG(self.mode)


MemberRef = Union[Member, str]


def member_name(member: MemberRef) -> str:
    """The archive-relative name of a Member or a plain string."""
    name = member.filename if isinstance(member, Member) else member
    if not isinstance(name, str):
        raise TypeError("member must be a Member or a str, not %s" % type(name).__name__)
    return name.strip("/")


def select_names(names: Iterable[str], files=None) -> List[str]:
    """The seed's name matching, shared by every plugin.

    ``files`` is None (everything), one string or a list of fnmatch patterns;
    a pattern also matches everything below a directory of that name.
    Results keep the order of ``names``. Raises FileNotFoundError, naming the
    patterns, when a given pattern set matches nothing.
    """
    names = list(names)
    if files is None:
        return names
    patterns = [files] if isinstance(files, str) else list(files)
    if not patterns or patterns == ["*"]:
        return names
    import fnmatch       # (here: start-up cost of a mount)
    cleaned = [posixpath.normpath(p.strip("/")) for p in patterns]
    below = [p + "/*" for p in cleaned]
    chosen = [
        name for name in names
        if any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, b)
               for p, b in zip(cleaned, below))
    ]
    if not chosen:
        from archfs.errors import NoSuchFile
        raise NoSuchFile("No such file: %s" % ", ".join(map(str, patterns)))
    return chosen


class AbstractArchive(metaclass=ABCMeta):
    """Base class of archive plugins (seed API plus filesystem extensions).

    A plugin sets the class attributes ``name``, ``description``, ``authors``,
    ``version``, ``url``, ``mimetypes`` and ``suffixes`` (file endings such as
    ``".zip"``, used by the registry), and implements the abstract methods.
    """

    plugin_type = "archive"
    suffixes: Tuple[str, ...] = ()
    keeps_owners = False     # True: owner= and chown are recorded (see the module docstring)
    name_max = 255           # bytes in one path component

    def __init__(self, name, description, authors, version, url, _mimetypes):
        self.__name = name
        self.__description = description
        self.__authors = authors
        self.__version = version
        self.__url = url
        self.__mimetypes = _mimetypes
        self._transport = None

    # -- seed properties ----------------------------------------------------

    @property
    def name(self):
        """Plugin name: a single word."""
        return self.__name

    @property
    def description(self):
        """One line describing the format."""
        return self.__description

    @property
    def authors(self):
        """The plugin's author(s)."""
        return self.__authors

    @property
    def version(self):
        """Plugin version, ``major.minor.patch``."""
        return self.__version

    @property
    def url(self):
        """URL of the plugin's site or authors."""
        return self.__url

    @property
    def mimetypes(self):
        """List of MIME types this plugin reads."""
        return self.__mimetypes

    @property
    def transport(self):
        """Underlying transport (archfs reads local paths only; kept for the seed API)."""
        return self._transport

    # -- seed methods -------------------------------------------------------

    @abstractmethod
    def use_query(self):
        """Does the plugin need the ?query part of the url?"""

    @abstractmethod
    def getnames(self, files=None):
        """Names of the file members matching ``files``, in archive order."""

    @abstractmethod
    def getmembers(self, files=None):
        """Members matching ``files`` as ``Member`` objects, in archive order."""

    def basename(self, filehandle):
        """Basename of a member."""
        return posixpath.basename(member_name(filehandle))

    @abstractmethod
    def open(self, member, mode="rb"):
        """A seekable binary file: ``'rb'`` reads the member, ``'wb'`` returns a
        ``WriteFileIO`` whose close() stores the content as that member."""

    @abstractmethod
    def to_localfile(self, member):
        """A real local path holding the member's content; never outside the
        plugin's own temporary directory (or, for directories, the root)."""

    @abstractmethod
    def add_localfile(self, local_file, filename):
        """Add a local file as a new member; FileAlreadyExistsError if it exists."""

    @abstractmethod
    def writedata(self, filename, data, *, mode: Optional[int] = None,
                  mtime_ns: Optional[int] = None):
        """Write bytes as the named member, replacing any member of that name.

        ``mode`` and ``mtime_ns`` as for ``replace_localfile`` (default: keep
        the old member's permission bits, else 0o644; now); so are the
        optional ``owner``, ``atime_ns`` and ``ctime_ns``."""

    @abstractmethod
    def is_file(self, member):
        """Whether the member is a regular file."""

    @abstractmethod
    def close(self):
        """Commit what is pending and release the archive."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.close()

    # -- filesystem extensions ---------------------------------------------

    @property
    def writable(self) -> bool:
        """False when every change would raise ReadOnlyError."""
        return False

    @property
    def location(self) -> str:
        """Local path of the archive (file or directory); used for statvfs."""
        raise NotSupported("%s has no local location" % self.name)

    def stat(self, path: str) -> MemberStat:
        """Metadata of a member or directory (``""`` is the root).

        Directories include those only implied by member names.
        Raises NoSuchFile.
        """
        raise NotSupported("stat is not supported by %s" % self.name)

    def listdir(self, path: str) -> List[Tuple[str, int]]:
        """Children of a directory as ``(name, st_mode)`` pairs.

        The mode carries at least the file type, so a directory walk needs no
        stat per entry. Raises NoSuchFile or NotADirectory.
        """
        raise NotSupported("listdir is not supported by %s" % self.name)

    def readlink(self, path: str) -> str:
        """Target of a symbolic link member."""
        raise NotSupported("symlinks are not supported by %s" % self.name)

    @property
    def uses_inodes(self) -> bool:
        """True when ``stat`` gives every path an inode number (``ino``),
        unique except between hard links of one file."""
        return False

    def inodes(self, path: str) -> dict:
        """{name: inode number} of a directory's children, for a plugin whose
        ``uses_inodes`` is True (a listing then shows the numbers stat gives)."""
        return {}

    def listxattr(self, path: str) -> List[str]:
        """Names of the member's extended attributes (none by default)."""
        self.stat(path)
        return []

    def getxattr(self, path: str, name: str) -> bytes:
        """Value of one extended attribute; NoSuchAttribute (ENODATA) if absent."""
        from archfs.errors import NoSuchAttribute
        self.stat(path)
        raise NoSuchAttribute("%s: no extended attribute %s" % (path, name))

    def link(self, target: str, path: str) -> None:
        """Create ``path`` as a hard link to the file ``target``."""
        raise NotSupported("hard links are not supported by %s" % self.name)

    def replace_localfile(self, local_file: str, filename: str, *,
                          mode: Optional[int] = None,
                          mtime_ns: Optional[int] = None, **attrs) -> None:
        """Store a local file as ``filename``, replacing a member of that name.

        An archive never holds two members of one name. ``mode`` is the
        permission bits to record (default: keep the old member's, else 0o644);
        ``mtime_ns`` defaults to the local file's mtime. Missing parent
        directories are implied. Raises IsADirectory if ``filename`` is a
        directory. Optional ``attrs``: ``owner`` (default: the old member's),
        ``atime_ns`` (default: the mtime), ``ctime_ns`` (when the content or
        attributes last changed, if the plugin reports ctime).
        """
        raise NotSupported("replace is not supported by %s" % self.name)

    def remove(self, path: str) -> None:
        """Remove a file or symlink member (IsADirectory for directories)."""
        raise NotSupported("remove is not supported by %s" % self.name)

    def mkdir(self, path: str, mode: int = 0o755, **attrs) -> None:
        """Create a directory; FileAlreadyExistsError if the name is taken.
        Optional ``owner``."""
        raise NotSupported("mkdir is not supported by %s" % self.name)

    def rmdir(self, path: str) -> None:
        """Remove an empty directory (DirectoryNotEmpty otherwise)."""
        raise NotSupported("rmdir is not supported by %s" % self.name)

    def rename(self, old: str, new: str) -> None:
        """Move a file, symlink or whole directory, with rename(2) semantics.

        A file replaces an existing file; a directory replaces an empty
        directory. File onto directory: IsADirectory; directory onto file:
        NotADirectory; onto a non-empty directory: DirectoryNotEmpty; a
        directory into itself: InvalidMove.
        """
        raise NotSupported("rename is not supported by %s" % self.name)

    def symlink(self, target: str, path: str, **attrs) -> None:
        """Create a symbolic link ``path`` pointing at ``target``. Optional ``owner``."""
        raise NotSupported("symlinks are not supported by %s" % self.name)

    def mknod(self, path: str, mode: int, rdev: int = 0, **attrs) -> None:
        """Create a FIFO, socket, character or block device (``mode`` carries
        the file type; ``rdev`` the device number). Optional ``owner``."""
        raise NotSupported("special files are not supported by %s" % self.name)

    def chmod(self, path: str, mode: int) -> None:
        """Set the permission bits (``mode & 0o7777``)."""
        raise NotSupported("chmod is not supported by %s" % self.name)

    def chown(self, path: str, uid: Optional[int], gid: Optional[int]) -> None:
        """Record a new owner (None leaves that part as it is); the caller
        has checked the permission. Only for plugins with ``keeps_owners``."""
        raise NotSupported("owners are not recorded by %s" % self.name)

    def utime(self, path: str, mtime_ns: Optional[int], atime_ns: Optional[int] = None) -> None:
        """Set the modification time and, where the plugin keeps one, the
        access time (None leaves either as it is)."""
        raise NotSupported("utime is not supported by %s" % self.name)

    def check_new_name(self, path: str) -> None:
        """Refuse a name this archive cannot hold, before anything is made
        under it: NameTooLong (ENAMETOOLONG) for a component longer than
        ``name_max`` bytes, InvalidArgument (EINVAL) for other names, each
        with the reason in its message. The default checks the length only."""
        for part in path.split("/"):
            size = len(part.encode("utf-8", "surrogateescape"))
            if size > self.name_max:
                from archfs.errors import NameTooLong
                raise NameTooLong("%s...: a name component of %d bytes (at most %d)"
                                  % (part[:40], size, self.name_max))

    def commit(self):
        """Make every change so far durable in the archive on disk. Called
        often (at every fsync): cheap when nothing changed; may return False
        to say there was nothing to commit."""
        if self.writable:
            raise NotSupported("commit is not supported by %s" % self.name)

    def compact(self) -> bool:
        """Reclaim the space of replaced and removed members; False if none."""
        raise NotSupported("compaction is not supported by %s" % self.name)

    @classmethod
    def repair(cls, url, progress=None) -> str:
        """Make a damaged archive at ``url`` readable again without losing
        data; returns one line saying what was done. ``progress`` is called
        as ``progress(what, done, total)``."""
        raise NotSupported("%s archives cannot be repaired" % cls.name)

    def read_small(self, member):
        """A small file's whole content, checked, read at once (a walk
        through many small files reads them so); None where the plugin
        reads it through ``open`` only (the default), or for a big file."""
        return None

    def small_plans(self, members):
        """Read-ahead across files, done by another process: None (the
        default: not offered), or (decoder, plans). ``decoder`` is (module,
        class name, args, descriptors): the process imports the class,
        makes it with ``args`` (it inherits ``descriptors`` under the same
        numbers) and calls its ``decode(plans)``, which returns for each
        plan the member's whole content, or None where it is better read
        the ordinary way (a None is never an error). ``plans`` holds for
        each member None (not offered: small files only) or a tuple of
        plain data (numbers, bytes, str) whose first item is the content's
        size."""
        return None

    def has_encrypted_members(self) -> bool:
        """Whether some member needs a password to be read (so opening it
        may be refused): a read-only mount then has every open checked."""
        return False

    def summary(self) -> dict:
        """Facts for ``archfs info``, from what the plugin holds in memory
        (its index): no member data is read, so it is quick on big archives.

        Every plugin gives ``files``, ``directories`` and ``symlinks``
        (counts) and ``size`` (bytes of file content); the default walks
        ``listdir`` and ``stat``. A plugin may add ``archive_bytes`` (the
        archive's own size), ``compressed_bytes``, ``dead_bytes`` (what a
        compaction would reclaim), ``methods`` and ``encrypted`` ({name:
        members}), ``damaged`` ({path: why it cannot be read}), ``comment``
        and ``notes`` (lines worth showing).
        """
        counts = {"files": 0, "directories": 0, "symlinks": 0, "size": 0}
        pending = [""]
        while pending:
            top = pending.pop()
            for entry in self.listdir(top):
                name, mode = entry[0], entry[1]
                path = name if not top else top + "/" + name
                if _stat.S_ISDIR(mode):
                    counts["directories"] += 1
                    pending.append(path)
                elif _stat.S_ISLNK(mode):
                    counts["symlinks"] += 1
                else:
                    counts["files"] += 1
                    counts["size"] += self.stat(path).size
        return counts

    @classmethod
    def repair_plan(cls, url) -> str:
        """One line saying what ``repair`` would do to the archive at ``url``,
        changing nothing (for ``archfs info``)."""
        if getattr(cls.repair, "__func__", None) is AbstractArchive.repair.__func__:
            return "%s archives have no repair" % cls.name
        return "archfs repair may change it; what it would do is not known in advance"

    def statvfs(self) -> dict:
        """Space figures for statfs: the keys of ``os.statvfs_result``.

        The default reports the filesystem holding ``location``.
        """
        import os
        st = os.statvfs(self.location)
        return {key: getattr(st, key) for key in (
            "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
            "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

    def _check_writable(self):
        if not self.writable:
            raise ReadOnlyError("%s is opened read-only" % self.name)
