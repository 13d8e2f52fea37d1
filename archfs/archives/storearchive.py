"""What the plugins over archfs's own engines share: the seed API and the
filesystem calls that are the same translation for every format (names,
opening, extraction, listing, removal, renaming, commit). Each format's
plugin adds what only its engine can store (owners, devices, xattrs...).

The engine's store is ``self._store``; it offers ``names``, ``open_member``,
``row_of``, ``add_file``, ``stat``, ``listdir``, ``readlink``, ``remove``,
``rmdir``, ``rename``, ``chmod``, ``commit``, ``compact``, ``close`` and
``writable``.
"""

import os
import stat as _stat
from typing import List, Optional, Tuple

from archfs import __version__
from archfs.archives.abstractarchive import AbstractArchive, Member, member_name, select_names
from archfs.archives.writefileio import WriteFileIO
from archfs.engine import transports
from archfs.errors import NoSuchFile, ReadOnlyError, UnsupportedURL


def local_path(url: str) -> str:
    """The local file ``url`` names; repair needs one."""
    path = transports.local_path(os.fspath(url))
    if path is None:
        raise UnsupportedURL("%s: repair works on local files only (copy it here first)"
                             % transports.redact(url))
    return path


def flag(opts: dict, key: str, default: str = "1") -> bool:
    """A boolean ``-o`` option as the option parser left it."""
    return str(opts.get(key, default)).lower() not in ("0", "no", "off", "false")


class StoreArchive(AbstractArchive):
    """A plugin over one of archfs's engines (see the module docstring)."""

    authors = "The archfs authors"
    version = __version__
    url = "https://github.com/archfs/archfs"

    def _begin(self, url, mode: str, opts) -> Tuple[dict, bool]:
        """The first steps of ``__init__``: (a copy of ``opts``, whether
        ``mode`` asks for writing)."""
        super().__init__(self.name, self.description, self.authors, self.version, self.url,
                         self.mimetypes)
        if url is None:
            raise ValueError("url not given")
        self.why_read_only = None
        self._tmpdir: Optional[str] = None
        self._extracted = {}        # member name -> row it was extracted from
        return dict(opts or {}), mode[0] in "wa" or "+" in mode

    # -- seed API -------------------------------------------------------------

    def use_query(self):
        return False

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
            import tempfile     # (here and below: start-up cost of a mount)
            local = tempfile.NamedTemporaryFile(dir=self._scratch(), delete=False)
            local.close()
            return WriteFileIO(self, name, local.name)
        raise ValueError("unknown mode %r" % (mode,))

    def read_small(self, member):
        read = getattr(self._store, "read_small", None)    # stores that have it
        return read(member_name(member)) if read is not None else None

    def small_plans(self, members):
        plans = getattr(self._store, "small_plans", None)
        return plans([member_name(m) for m in members]) if plans is not None else None

    def to_localfile(self, member):
        """Extract the member under this archive's private temporary directory.

        Member names are already in safe spelling (no ``..``, no leading
        ``/``), and the resolved target is checked to lie inside that
        directory all the same. A member replaced since is extracted again.
        """
        name = member_name(member)
        root = os.path.realpath(os.path.join(self._scratch(), "members"))
        target = os.path.join(root, name)
        if not name or os.path.commonpath([root, os.path.realpath(target)]) != root:
            raise NoSuchFile("%s: name leaves the extraction directory" % name)
        version = self._store.row_of(name)
        if self._extracted.get(name) != version or not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with self._store.open_member(name) as src, open(target + ".part", "wb") as dst:
                import shutil
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(target + ".part", target)
            self._extracted[name] = version
        return target

    def add_localfile(self, local_file, filename):
        """Add a new member with the local file's content, mode and mtime."""
        self._check_writable()
        mode = _stat.S_IMODE(os.stat(local_file).st_mode)
        self._store.add_file(member_name(filename), local_file, mode=mode, replace=False)

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
                import shutil
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None

    def _scratch(self) -> str:
        """A private temporary directory, beside the archive when possible."""
        if self._tmpdir is None:
            parent = os.path.dirname(self._path)
            base = parent if os.access(parent, os.W_OK) and self.transport.is_local else None
            import tempfile
            self._tmpdir = tempfile.mkdtemp(prefix=".archfs-", dir=base)
        return self._tmpdir

    # -- filesystem extensions -------------------------------------------------

    @property
    def writable(self) -> bool:
        return self._store.writable

    @property
    def location(self) -> str:
        return self._path

    def listdir(self, path: str) -> List[Tuple[str, int]]:
        return self._store.listdir(member_name(path))

    def readlink(self, path: str) -> str:
        return self._store.readlink(member_name(path))

    def remove(self, path):
        self._check_writable()
        self._store.remove(member_name(path))

    def rmdir(self, path):
        self._check_writable()
        self._store.rmdir(member_name(path))

    def rename(self, old, new):
        self._check_writable()
        self._store.rename(member_name(old), member_name(new))

    def chmod(self, path, mode):
        self._check_writable()
        self._store.chmod(member_name(path), mode)

    def commit(self):
        """False when there was nothing to commit."""
        if self._store.writable:
            return self._store.commit()
        return False

    def compact(self) -> bool:
        """Reclaim dead space; False when there is too little."""
        self._check_writable()
        return self._store.compact()

    def _check_writable(self):
        if not self._store.writable:
            raise ReadOnlyError("%s is opened read-only" % self._path)
