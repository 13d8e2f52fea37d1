"""When the kernel may keep a file's cached pages across an open.

FUSE drops a file's page cache at every open unless the open sets
keep_cache. A global ``kernel_cache`` would keep pages even after the content
changed; instead each open asks whether the path's content is unchanged since
its previous open. Any write, truncate, create or removal of the path changes
it; a rename changes every path at once (it is rare, and the kernel moves
cached inodes along with names).
"""

import threading
from typing import Dict


class KernelCachePolicy:
    """Counts events; a path may keep its cache if it was opened after its
    last change and after the last rename."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tick = 0
        self._rename_tick = 0
        self._changed: Dict[str, int] = {}
        self._opened: Dict[str, int] = {}

    def changed(self, path: str) -> None:
        with self._lock:
            self._tick += 1
            self._changed[path] = self._tick

    def renamed(self) -> None:
        with self._lock:
            self._tick += 1
            self._rename_tick = self._tick
            self._changed.clear()  # everything older than a rename is invalid anyway
            self._opened.clear()

    def opened(self, path: str) -> bool:
        """Record an open of ``path``; True if the kernel may keep its cache."""
        with self._lock:
            last_open = self._opened.get(path)
            keep = (last_open is not None
                    and last_open > self._changed.get(path, 0)
                    and last_open > self._rename_tick)
            self._tick += 1
            self._opened[path] = self._tick
            return keep
