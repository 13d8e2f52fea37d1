"""WriteFileIO: the copy-back pattern every written member goes through.

A written member lives in a local temporary file; ``sync()`` copies it into
the archive through the plugin's ``replace_localfile``, and ``close()`` does a
last sync and deletes the local file. The mount uses one of these per file
open for writing, so the archive only ever sees whole, finished contents.
"""

import io
import os
from typing import Optional

from archfs.archives.abstractarchive import member_name


class WriteFileIO(io.FileIO):
    """A readable, writable local file that is stored in ``archive`` as ``member``.

    ``dirty`` says whether the content differs from what the archive holds;
    a clean file is not copied back. ``mode`` (permission bits) and
    ``mtime_ns`` are recorded on copy-back; an ``mtime_ns`` of None takes the
    local file's own mtime, so ``os.utime`` on ``self.name`` works too.
    """

    def __init__(self, archive, member, local_file, *, dirty: bool = True,
                 mode: Optional[int] = None, mtime_ns: Optional[int] = None):
        path = getattr(local_file, "name", local_file)  # a path or a NamedTemporaryFile
        super().__init__(path, mode="r+b" if os.path.exists(path) else "w+b")
        if path is not local_file and not getattr(local_file, "delete", True):
            local_file.close()  # NamedTemporaryFile(delete=False): the path is ours now
        self.archive = archive
        self.member = member_name(member)
        self.dirty = dirty
        self.mode_bits = mode
        self.mtime_ns = mtime_ns

    def write(self, data):
        self.dirty = True
        return super().write(data)

    def truncate(self, size=None):
        self.dirty = True
        return super().truncate(size)

    def sync(self) -> bool:
        """Copy the content into the archive now if it changed; True if copied."""
        if not self.dirty:
            return False
        self.flush()
        self.archive.replace_localfile(self.name, self.member,
                                       mode=self.mode_bits, mtime_ns=self.mtime_ns)
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
