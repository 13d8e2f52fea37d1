"""Noticing another program changing the archive file, and refusing writes
then (or when read-only or closed) rather than corrupting either side."""

import logging
import os

from archfs.errors import ArchiveChangedError, ReadOnlyError

log = logging.getLogger("archfs.zip")


class Identity:
    """Part of ZipStore: inode, size and mtime, compared before every write."""

    def _remember_identity(self) -> None:
        st = os.fstat(self._file.fd)
        self._identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _check_unchanged(self) -> None:
        if self._broken:
            raise ArchiveChangedError(self._broken)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        own = os.fstat(self._file.fd)
        dev, ino, size, mtime_ns = self._identity
        why = None
        if st is None:
            why = "the archive file was removed"
        elif (st.st_dev, st.st_ino) != (dev, ino):
            why = "the archive file was replaced by another program"
        elif (own.st_size, own.st_mtime_ns) != (size, mtime_ns):
            why = "the archive file was changed by another program"
        if why:
            self._broken = "%s: %s; refusing further writes" % (self.path, why)
            log.error(self._broken)
            raise ArchiveChangedError(self._broken)

    def _check_writable(self) -> None:
        if not self.writable:
            raise ReadOnlyError("%s is opened read-only" % self.path)
        if self._closed:
            raise ValueError("archive is closed")
        if self._broken:
            raise ArchiveChangedError(self._broken)

