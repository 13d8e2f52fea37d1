"""WriteFileIO: the copy-back pattern every written member goes through.

A written member lives in a local temporary file; ``sync()`` copies it into
the archive through the plugin's ``replace_localfile``, and ``close()`` does a
last sync and deletes the local file. The mount uses one of these per file
open for writing, so the archive only ever sees whole, finished contents.

``SpooledWriteFileIO`` is the same with the local file kept in memory while
it is small (copied back with ``writedata``) and moved to a real temporary
file once it grows: copying ten thousand small files into a mount then
creates and deletes no scratch files.
"""

import functools
import io
import os
import threading
import time
from typing import Callable, Optional

from archfs.archives.abstractarchive import member_name


class _ToBecome:
    """What a file being written knows of the member it becomes, in both
    kinds of write file: the archive, the name, whether it changed since the
    last copy-back, and the attributes that copy-back passes on."""

    def _become(self, archive, member, dirty: bool, mode: Optional[int],
                mtime_ns: Optional[int]) -> None:
        self.archive = archive
        self.member = member_name(member)
        self.dirty = dirty
        self.mode_bits = mode
        self.mtime_ns = mtime_ns
        self.owner = None
        self.atime_ns = None
        self.ctime_ns = None


class WriteFileIO(_ToBecome, io.FileIO):
    """A readable, writable local file that is stored in ``archive`` as ``member``.

    ``dirty`` says whether the content differs from what the archive holds;
    a clean file is not copied back. ``mode`` (permission bits) and
    ``mtime_ns`` are recorded on copy-back; an ``mtime_ns`` of None takes the
    local file's own mtime, so ``os.utime`` on ``self.name`` works too.
    ``owner``, ``atime_ns`` and ``ctime_ns``, when set, are passed on too.
    """

    def __init__(self, archive, member, local_file, *, dirty: bool = True,
                 mode: Optional[int] = None, mtime_ns: Optional[int] = None):
        path = getattr(local_file, "name", local_file)  # a path or a NamedTemporaryFile
        super().__init__(path, mode="r+b" if os.path.exists(path) else "w+b")
        if path is not local_file and not getattr(local_file, "delete", True):
            local_file.close()  # NamedTemporaryFile(delete=False): the path is ours now
        self._become(archive, member, dirty, mode, mtime_ns)

    def write(self, data):
        self.dirty = True
        return super().write(data)

    def truncate(self, size=None):
        self.dirty = True
        return super().truncate(size)

    # -- positioned access, shared with SpooledWriteFileIO ----------------------

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fileno(), size, offset)

    def pwrite(self, data, offset: int) -> int:
        self.dirty = True
        return os.pwrite(self.fileno(), data, offset)

    def size(self) -> int:
        return os.fstat(self.fileno()).st_size

    def allocate(self, offset: int, length: int) -> bool:
        """posix_fallocate: reserve the bytes up to ``offset + length`` on
        disk, growing the file with zeros; True if the size changed."""
        before = self.size()
        os.posix_fallocate(self.fileno(), offset, length)
        if self.size() != before:
            self.dirty = True
            return True
        return False

    def local_mtime_ns(self) -> int:
        """When the content last changed (the local file's mtime)."""
        return os.fstat(self.fileno()).st_mtime_ns

    def save_copy(self, target: str) -> None:
        """Copy the content to ``target`` (to rescue it when copy-back failed)."""
        self.flush()
        import shutil
        shutil.copyfile(self.name, target)

    def sync(self) -> bool:
        """Copy the content into the archive now if it changed; True if copied."""
        if not self.dirty:
            return False
        self.flush()
        self.archive.replace_localfile(self.name, self.member, mode=self.mode_bits,
                                       mtime_ns=self.mtime_ns,
                                       **attrs_of(self, self.archive.replace_localfile))
        self.dirty = False
        return True

    def close(self):
        """Copy back if changed, close, then delete the local file.

        If the copy-back fails the local file is kept (its path stays in
        ``self.name``) and the error is raised, so no written data is lost.
        """
        if self.closed:
            return
        try:
            self.sync()
        except BaseException:
            super().close()
            raise
        super().close()
        try:
            os.unlink(self.name)
        except FileNotFoundError:
            pass

    def discard(self):
        """Close and delete the local file without copying it back."""
        if not self.closed:
            super().close()
            try:
                os.unlink(self.name)
            except FileNotFoundError:
                pass


class SpooledWriteFileIO(_ToBecome):
    """A member being written: bytes in memory up to ``limit``, then a
    ``WriteFileIO`` on the path ``spill()`` hands out.

    All spooled files together hold at most ``MEMORY_BUDGET`` bytes in memory;
    past it new content goes to disk at once. Same interface as WriteFileIO
    for ``pread``, ``pwrite``, ``truncate``, ``size``, ``local_mtime_ns``,
    ``sync``, ``close``, ``discard``, ``dirty``, ``member``, ``mode_bits``,
    ``mtime_ns`` and ``closed``.
    """

    MEMORY_BUDGET = 64 << 20
    _held = 0
    _held_lock = threading.Lock()

    def __init__(self, archive, member, spill: Callable[[], str], *, initial: bytes = b"",
                 dirty: bool = True, mode: Optional[int] = None,
                 mtime_ns: Optional[int] = None, limit: int = 256 << 10):
        self._become(archive, member, dirty, mode, mtime_ns)
        self.closed = False
        self._spill = spill
        self._limit = limit
        self._buffer: Optional[bytearray] = bytearray(initial)
        self._file: Optional[WriteFileIO] = None
        self._reserved = 0          # bytes of the shared budget this file holds
        self._changed_ns = time.time_ns()
        self._hold(len(initial))

    @classmethod
    def _reserve(cls, delta: int) -> bool:
        with cls._held_lock:
            if delta > 0 and cls._held + delta > cls.MEMORY_BUDGET:
                return False
            cls._held += delta
            return True

    def _hold(self, size: int) -> None:
        """Make room for ``size`` bytes in memory, or move to disk."""
        if self._buffer is None:
            return
        need = size - self._reserved
        if size > self._limit or (need > 0 and not self._reserve(need)):
            self._to_disk()
        elif need > 0:
            self._reserved += need

    def _to_disk(self) -> None:
        if self._buffer is None:
            return
        path = self._spill()
        try:
            local = WriteFileIO(self.archive, self.member, path, dirty=self.dirty,
                                mode=self.mode_bits, mtime_ns=self.mtime_ns)
            local.write(self._buffer)
            local.dirty = self.dirty
        except BaseException:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        self._file = local          # set before the buffer goes: readers do not lock
        self._reserve(-self._reserved)
        self._reserved = 0
        self._buffer = None

    @property
    def name(self) -> Optional[str]:
        """The local file's path, once there is one."""
        return self._file.name if self._file is not None else None

    def pread(self, size: int, offset: int) -> bytes:
        buffer = self._buffer
        if buffer is not None:
            return bytes(buffer[offset:offset + size])
        return self._file.pread(size, offset)

    def pwrite(self, data, offset: int) -> int:
        end = offset + len(data)
        if self._file is None:
            self._hold(max(end, len(self._buffer)))
        self.dirty = True
        self._changed_ns = time.time_ns()
        if self._file is not None:
            return self._file.pwrite(data, offset)
        buffer = self._buffer
        if offset > len(buffer):
            buffer.extend(bytes(offset - len(buffer)))
        buffer[offset:end] = data
        return len(data)

    def truncate(self, size: int) -> int:
        self.dirty = True
        self._changed_ns = time.time_ns()
        if self._file is None:
            self._hold(size)
        if self._file is not None:
            return self._file.truncate(size)
        if size < len(self._buffer):
            del self._buffer[size:]
        else:
            self._buffer.extend(bytes(size - len(self._buffer)))
        return size

    def size(self) -> int:
        return self._file.size() if self._file is not None else len(self._buffer)

    def allocate(self, offset: int, length: int) -> bool:
        """As ``WriteFileIO.allocate``; in memory the file just grows."""
        end = offset + length
        if self._file is None:
            if end <= len(self._buffer):
                return False
            self._hold(end)
        if self._file is not None:
            return self._file.allocate(offset, length) and self._changed()
        self._buffer.extend(bytes(end - len(self._buffer)))
        return self._changed()

    def _changed(self) -> bool:
        self.dirty = True
        self._changed_ns = time.time_ns()
        return True

    def save_copy(self, target: str) -> None:
        if self._file is not None:
            self._file.save_copy(target)
            return
        with open(target, "wb") as out:
            out.write(self._buffer)

    def keep_on_disk(self) -> Optional[str]:
        """Move in-memory content to its local file; the path, or None if that fails."""
        try:
            self._to_disk()
        except OSError:
            return None
        return self.name

    def local_mtime_ns(self) -> int:
        return self._file.local_mtime_ns() if self._file is not None else self._changed_ns

    def sync(self) -> bool:
        """Copy the content into the archive now if it changed; True if copied."""
        if not self.dirty:
            return False
        if self._file is not None:
            self._file.mode_bits, self._file.mtime_ns = self.mode_bits, self.mtime_ns
            self._file.owner, self._file.atime_ns = self.owner, self.atime_ns
            self._file.ctime_ns = self.ctime_ns
            self._file.member = self.member
            copied = self._file.sync()
        else:
            self.archive.writedata(self.member, bytes(self._buffer), mode=self.mode_bits,
                                   mtime_ns=self._changed_ns if self.mtime_ns is None
                                   else self.mtime_ns,
                                   **attrs_of(self, self.archive.writedata))
            copied = True
        self.dirty = False
        return copied

    def pending(self):
        """What ``sync`` would store, while the content is in memory and
        changed: (member, bytes, keywords of ``writedata``), for a plugin
        that stores several at once (``writedata_many``); None otherwise.
        ``stored()`` then says they were stored."""
        if not self.dirty or self._buffer is None or self.closed:
            return None
        keywords = {"mode": self.mode_bits,
                    "mtime_ns": self._changed_ns if self.mtime_ns is None else self.mtime_ns}
        keywords.update(attrs_of(self, self.archive.writedata))
        return self.member, bytes(self._buffer), keywords

    def stored(self) -> None:
        self.dirty = False

    def close(self) -> None:
        """Copy back if changed, then let go of the content (kept if that fails)."""
        if self.closed:
            return
        self.sync()
        self.discard()

    def discard(self) -> None:
        """Let go of the content without copying it back."""
        if self.closed:
            return
        self.closed = True
        if self._file is not None:
            self._file.discard()
        self._reserve(-self._reserved)
        self._reserved = 0
        self._buffer = None


def attrs_of(wfile, method) -> dict:
    """The optional copy-back keywords (owner, atime_ns, ctime_ns) that are
    set and that the plugin's ``method`` takes: a plugin written before them
    keeps working."""
    wanted = {}
    if wfile.owner is not None:
        wanted["owner"] = wfile.owner
    if wfile.atime_ns is not None:
        wanted["atime_ns"] = wfile.atime_ns
    if wfile.ctime_ns is not None:
        wanted["ctime_ns"] = wfile.ctime_ns
    return accepted(method, wanted) if wanted else wanted


def accepted(method, keywords: dict) -> dict:
    """Those of ``keywords`` that ``method`` accepts."""
    names = _keyword_names(getattr(method, "__func__", method))
    if names is None or names.issuperset(keywords):
        return keywords
    return {k: v for k, v in keywords.items() if k in names}


@functools.lru_cache(maxsize=64)
def _keyword_names(func):
    """The keyword names ``func`` takes; None when it takes any (``**kw``)."""
    import inspect        # here: inspect imports ast and dis, a mount's start-up cost
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
