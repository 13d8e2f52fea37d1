"""One open or unsaved path (``Entry``) and one open(2) of it (``Handle``).

An entry carries what the archive will be told at copy-back besides the
content: permission bits, times and owner. Its ``stat`` is what getattr
shows while the entry holds content the archive does not have yet, or
after the path was unlinked while still open.
"""

import re
import stat as _stat
import threading
import time
from typing import Optional

from archfs.archives.abstractarchive import MemberStat

# libfuse renames a file that is unlinked (or renamed over) while open to
# such a name in the same directory, and unlinks that at the last close.
_HIDDEN = re.compile(r"(?:^|/)\.fuse_hidden[0-9a-f]{16}$")


def is_hidden_name(path: str) -> bool:
    """Whether ``path`` is a name libfuse gives an unlinked open file."""
    return _HIDDEN.search(path) is not None


class Entry:
    """One path that is open or has unsaved content."""

    def __init__(self, path: str, mode_bits: int, in_archive: bool):
        self.path = path
        self.lock = threading.RLock()
        self.fd_lock = threading.Lock()
        self.handles = 0          # open FUSE handles, readers and writers
        self.writers = 0
        self.wfile = None     # a WriteFileIO or SpooledWriteFileIO
        self.mode_bits = mode_bits
        self.mtime_ns: Optional[int] = None  # set by utimens on unsaved content
        self.atime_ns: Optional[int] = None  # set by utimens; None: as the archive says
        self.ctime_ns: Optional[int] = None  # last attribute change; None: the mtime
        self.uid: Optional[int] = None       # the owner to record (None: the archive's)
        self.gid: Optional[int] = None
        self.snapshot: Optional[MemberStat] = None  # the member, once it is gone
        self.in_archive = in_archive         # a member of this name exists
        self.unlinked = False                # removed while open: discard at release
        self.retired = False                 # out of the table, local file gone
        self.failure: Optional[str] = None   # last copy-back error, logged once

    @property
    def dirty(self) -> bool:
        wfile = self.wfile
        return wfile is not None and not wfile.closed and wfile.dirty

    def changed(self) -> None:
        """An attribute changed now (chmod, chown, utimens, rename)."""
        self.ctime_ns = time.time_ns()

    def owner(self):
        """(uid, gid) to record, or None to keep the archive's."""
        return None if self.uid is None else (self.uid, self.gid)

    def stat(self, base: Optional[MemberStat] = None) -> Optional[MemberStat]:
        """What getattr shows from the entry's own state; None when the
        archive's member says it better (nothing local, still linked)."""
        wfile = self.wfile
        if wfile is not None:
            with self.fd_lock:
                wfile = self.wfile
                if wfile.closed:
                    return None
                size = wfile.size()
                mtime = self.mtime_ns if self.mtime_ns is not None else wfile.local_mtime_ns()
            mode = _stat.S_IFREG | self.mode_bits
        else:
            base = self.snapshot if base is None else base
            if base is None or not self.unlinked:
                return None
            size = base.size
            mtime = base.mtime_ns if self.mtime_ns is None else self.mtime_ns
            mode = _stat.S_IFMT(base.mode) | self.mode_bits
        ctime = mtime if self.ctime_ns is None else max(self.ctime_ns, mtime)
        atime = self.atime_ns
        if atime is None:
            atime = self.snapshot.atime_ns if self.snapshot is not None and \
                self.snapshot.atime_ns is not None and self.mtime_ns is None else mtime
        return MemberStat(mode, size, mtime, self.uid, self.gid, nlink=1, atime_ns=atime,
                          ctime_ns=ctime)

    def __repr__(self):
        return "Entry(%r)" % self.path


class Handle:
    """One open(2) of a path: the entry plus, for reads before any write, the
    plugin's reader, kept for the life of the open file."""

    def __init__(self, entry: Entry, writable: bool, append: bool):
        self.entry = entry
        self.writable = writable
        self.append = append
        self.reader = None
        self.lock = threading.Lock()
