"""The private directory that holds written files until they are copied back.

It sits beside the archive when that directory is writable, so the local
copies use the archive's own disk: a full disk shows up as ENOSPC at write(2)
rather than later, at copy-back. Otherwise it goes to $TMPDIR. It is created
on the first write (a read-only mount never makes one) and removed at
unmount. Local files are named after their member, so that the directory of
a daemon that died (or that kept files it could not store) can be searched by
hand; the next mount removes such a directory only if it is empty, and
otherwise warns about it.
"""

import os
import re
import threading
from typing import List, Optional

PREFIX = ".archfs-scratch-"
_STALE = re.compile(r"^\.archfs-scratch-(\d+)-")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def choose_base(archive_location: str, override: Optional[str] = None) -> str:
    """Where the scratch directory goes (see the module docstring)."""
    if override:
        return os.path.abspath(override)
    if "://" not in archive_location:  # not a remote archive (s3://, https://...)
        beside = os.path.dirname(os.path.abspath(archive_location.rstrip("/")) or "/")
        if os.access(beside, os.W_OK | os.X_OK):
            return beside
    import tempfile       # here and below: tempfile and shutil are a mount's start-up cost
    return tempfile.gettempdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(base: str) -> List[str]:
    """Remove empty scratch directories of daemons that no longer run; return
    the others (they hold content that never reached an archive)."""
    try:
        names = os.listdir(base)
    except OSError:
        return []
    kept = []
    for name in sorted(names):
        match = _STALE.match(name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            path = os.path.join(base, name)
            try:
                os.rmdir(path)
            except OSError:
                kept.append(path)
    return kept


class Scratch:
    """Hands out fresh local files in one lazily created private directory."""

    def __init__(self, base: str):
        self.base = base
        self._dir: Optional[str] = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Optional[str]:
        return self._dir

    def new_file(self, member: str = "") -> str:
        """Path of a new empty file only this process uses, named after ``member``."""
        import tempfile
        with self._lock:
            if self._dir is None:
                os.makedirs(self.base, exist_ok=True)
                self._dir = tempfile.mkdtemp(prefix="%s%d-" % (PREFIX, os.getpid()),
                                             dir=self.base)
        hint = _UNSAFE.sub("_", os.path.basename(member))[:80]
        fd, path = tempfile.mkstemp(prefix=(hint + ".") if hint else "tmp", dir=self._dir)
        os.close(fd)
        return path

    def remove(self) -> None:
        """Delete the directory and whatever is left in it."""
        with self._lock:
            if self._dir is not None:
                import shutil
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
