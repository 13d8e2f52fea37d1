"""ZipStore: one zip archive, read and changed in place (the protocol is in
the package docstring, ``__init__.py``). This module holds the state every
part shares, the queries and closing; each mixin holds one concern."""

import os
import stat
import logging
import threading
from typing import Dict, List, Optional, Tuple

from archfs.engine.changeguard import ChangeGuard
from archfs.errors import NoSuchFile, NotADirectory
from archfs.zipengine.entries import NO_OWNER
from archfs.zipengine.memberreader import SeekIndexCache, Verdicts
from archfs.zipengine.store.attributes import Attributes
from archfs.zipengine.store.changes import Changes
from archfs.zipengine.store.commit import Commit
from archfs.zipengine.store.directory import DirectoryPlanning
from archfs.zipengine.store.compacting import Compacting
from archfs.zipengine.store.firstentry import FirstEntry
from archfs.zipengine.store.idle import IdleCheckpoints
from archfs.zipengine.store.inplace import InPlace
from archfs.zipengine.store.journaling import Journaling
from archfs.zipengine.store.opening import Opening
from archfs.zipengine.store.options import StoreOptions
from archfs.zipengine.store.reading import Reading
from archfs.zipengine.store.rescue import Rescue
from archfs.zipengine.tree import DIR_MODE


class ZipStore(Opening, ChangeGuard, Reading, Changes, Attributes, Journaling, DirectoryPlanning,
               Commit, InPlace, FirstEntry, Compacting, Rescue):
    """An open zip archive (see the package docstring for the protocol).

    State shared by the parts (set here, in ``Opening._load`` and in
    ``Journaling._set_base``): ``_file`` the open ArchiveFile; ``_table``,
    ``_tree``, ``_bad`` the members; ``_end`` where the next append goes;
    ``_committed_end`` the end of the durable state (last checkpoint or
    journal record); ``_base`` the last checkpoint's end record and
    ``_cd_start``/``_cd_size`` its directory; ``_seq``/``_last_record`` the
    journal after it; ``_durable_dead`` the dead flags as of the last
    commit; ``_prefix`` the first member's offset; ``_listed_from`` the
    lowest offset the checkpoint lists; ``_dead`` an estimate of unreachable
    bytes; ``_dirty`` whether a commit is due.

    Locks: ``_meta`` guards the table and tree and is held only briefly;
    ``_append`` serializes writers, commits and compaction, so a long append
    never blocks a stat or a read.
    """

    _log = logging.getLogger("archfs.zip")

    def __init__(self, path: str, writable: bool, options: Optional[StoreOptions] = None,
                 transport=None):
        """``transport``: the archive's file elsewhere (``archfs.engine.transports``),
        which the store then owns; without one, ``path`` is a local file."""
        self.path = transport.location if transport is not None else os.path.abspath(path)
        self.writable = writable
        self.options = options or StoreOptions()
        self._meta = threading.RLock()
        self._append = threading.Lock()
        self._seek_cache = SeekIndexCache()
        self._verdicts = Verdicts()
        self._broken: Optional[str] = None
        self._readers_at: Dict[int, int] = {}   # local header offset -> open readers
        # a zip has no entry for its root: mode, mtime, owner, ctime kept in memory only
        self._root = [DIR_MODE, 0, NO_OWNER, NO_OWNER, 0]
        self._dirty = False
        self._closed = False
        self.warnings: List[str] = []    # said once at mount (a damaged archive read leniently)
        self._wrote = False            # a commit of this store changed the file
        self._dirs_removed = False     # a directory went since the last commit
        self._first_row = -1           # the member at the archive's start, when known
        self._wrote_elsewhere = False  # wrote before the end since the last commit (filler)
        self._reencode_all = False     # the next directory is encoded whole (see compacting)
        self._file = self._open_file(transport)
        try:
            self._load()
        except BaseException:
            self._file.release()
            raise
        delay = self.options.checkpoint_idle
        self._idle = IdleCheckpoints(self, delay) if writable and delay > 0 else None

    def _progress_for(self, what: str, total: int = 0):
        report = self.options.progress
        if report is None:
            return None
        return lambda done: report(what, done, total)

    # -- queries ----------------------------------------------------------------

    def stat(self, path: str) -> Tuple[int, int, int, int, int]:
        """(mode, size, mtime_ns, uid, gid); uid/gid are NO_OWNER when not recorded."""
        t = self._table
        with self._meta:
            node, row = self._tree.lookup(path)
            if row >= 0:
                size = 0 if node is not None else t.usize[row]
                return t.mode[row], size, t.mtime_ns[row], t.uid[row], t.gid[row]
            if node is not None:
                if path == "":
                    mode, mtime_ns, uid, gid, _ctime = self._root
                    return mode, 0, mtime_ns or self._known_identity.mtime_ns, uid, gid
                return DIR_MODE, 0, self._known_identity.mtime_ns, NO_OWNER, NO_OWNER
        raise NoSuchFile("%s: no such file or directory" % path)

    def listdir(self, path: str) -> List[Tuple[str, int]]:
        with self._meta:
            if path in self._tree.dirs:
                return self._tree.children(path)
            if path in self._tree.paths:
                raise NotADirectory("%s: not a directory" % path)
        raise NoSuchFile("%s: no such directory" % path)

    def names(self) -> List[str]:
        """Paths of all file and symlink members, in archive order."""
        with self._meta:
            t = self._table
            return [t.names[r] for r in t.live() if not stat.S_ISDIR(t.mode[r])]

    def members(self) -> List[Tuple[str, int]]:
        """(path, row) of every live member including directories, in archive order."""
        with self._meta:
            t = self._table
            return [(t.names[r], r) for r in t.live()]

    def row_of(self, path: str) -> int:
        with self._meta:
            return self._file_row(path)

    def _file_row(self, path: str) -> int:
        return self._tree.file_row(path)

    @property
    def transport(self):
        """The archive file's transport (``archfs.engine.fileaccess``)."""
        return self._file

    @property
    def comment(self) -> bytes:
        return self._comment

    @property
    def dirty(self) -> bool:
        return self._dirty

    @property
    def dead_bytes(self) -> int:
        return self._dead

    def has_encrypted(self) -> bool:
        """Whether a member (live or dead: it is not worth telling) is encrypted."""
        from archfs.zipengine.summary import any_encrypted
        with self._meta:
            return any_encrypted(self._table)

    def summary(self) -> dict:
        """Counts and sizes for ``archfs info`` (see ``zipengine/summary.py``)."""
        from archfs.zipengine.summary import summarize
        with self._meta:
            return summarize(self._table, len(self._tree.dirs) - 1, self._bad, self._dead,
                             self._file.size(), self._comment)

    # -- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Commit, checkpoint (the file is a complete zip again) and save the
        index of a big archive if this store wrote to it."""
        if self._closed:
            return
        try:
            if self._idle is not None:
                self._idle.stop()
            if self.writable and not self._broken:
                if self._dirty or self.has_journal:
                    self.checkpoint()
                if self._wrote and not self.has_journal:
                    self._save_index()
        finally:
            self._closed = True
            self._file.release()

