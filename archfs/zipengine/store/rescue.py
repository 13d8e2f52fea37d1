"""Saving what could not be committed, when the archive refuses it.

A commit can fail for good: another program changed the local file, or
another writer published a new version of a remote object first. The
members appended since the last commit are still readable through the
store (a remote archive keeps them in its local staging file), so they are
copied out as plain files, under their paths, for the user to look through.
"""

import logging
import os
import shutil
import stat
from typing import List

log = logging.getLogger("archfs.zip")


class Rescue:
    """Part of ZipStore: ``save_uncommitted``."""

    def save_uncommitted(self, directory: str) -> List[str]:
        """Copy each file and symlink changed since the last commit into
        ``directory``; returns their paths (one that cannot be read is logged
        and left out)."""
        with self._meta:
            t = self._table
            first = self._first_uncommitted()
            rows = [r for r in t.live()
                    if (t.offset[r] >= first or t.relocate[r])
                    and not stat.S_ISDIR(t.mode[r])]
            names = [(t.names[r], t.mode[r]) for r in rows]
        saved = []
        root = os.path.realpath(directory)
        for name, mode in names:
            target = os.path.join(root, name)
            if os.path.commonpath([root, os.path.realpath(target)]) != root:
                continue
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if stat.S_ISLNK(mode):
                    os.symlink(self.readlink(name), target)
                else:
                    with self.open_member(name) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    os.chmod(target, stat.S_IMODE(mode))
            except OSError as exc:
                log.error("%s: could not save /%s: %s", self.path, name, exc)
                continue
            saved.append(name)
        return saved
