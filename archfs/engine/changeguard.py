"""Noticing another program changing the archive file, and refusing writes
then (or when read-only or closed) rather than corrupting either side.
What counts as a change is the transport's to say (``check_unchanged``):
a local file's inode, size and mtime; for S3, a publish refused because
another writer changed the object. Shared by every format's writer."""

import logging

from archfs.errors import ArchiveChangedError, ReadOnlyError


class ChangeGuard:
    """Mixin of a store: the file's identity, compared before every write.

    The store has ``path``, ``writable``, ``_file`` (its transport),
    ``_closed``, ``_broken`` (None, or why writes are refused for good)
    and ``_log`` (its format's logger)."""

    _log = logging.getLogger("archfs")

    def _remember_identity(self) -> None:
        self._known_identity = self._file.identity()

    def _check_unchanged(self) -> None:
        if self._broken:
            raise ArchiveChangedError(self._broken)
        why = self._file.check_unchanged(self._known_identity)
        if why:
            self._broken = "%s: %s; refusing further writes" % (self.path, why)
            self._log.error(self._broken)
            raise ArchiveChangedError(self._broken)

    def _check_writable(self) -> None:
        if not self.writable:
            raise ReadOnlyError("%s is opened read-only" % self.path)
        if self._closed:
            raise ValueError("archive is closed")
        if self._broken:
            raise ArchiveChangedError(self._broken)
