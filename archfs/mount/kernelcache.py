"""When the kernel may keep a file's cached pages across an open.

FUSE drops a file's page cache at every open unless the open sets
keep_cache. A global ``kernel_cache`` would keep pages even after the content
changed; instead each open asks whether the path's content changed since
the kernel could last have cached it. Any write, truncate, create or removal
of the path changes it; a rename changes every path at once (it is rare, and
the kernel moves cached inodes along with names).

What is remembered is only what differs from "unchanged": the paths changed
since their last open, and after a rename the paths opened since it. A
read-only mount remembers nothing, however many files are opened.
"""

import threading
from typing import Optional, Set


LIMIT = 65536


class KernelCachePolicy:
    def __init__(self, limit: int = LIMIT):
        self._limit = limit
        self._lock = threading.Lock()
        self._changed: Set[str] = set()            # changed since their last open
        self._since_rename: Optional[Set[str]] = None   # opened since the last rename

    def changed(self, path: str) -> None:
        with self._lock:
            self._changed.add(path)
            if len(self._changed) > self._limit:
                self._changed.clear()
                self._since_rename = set()

    def renamed(self) -> None:
        with self._lock:
            self._changed.clear()   # everything is stale now: covered by _since_rename
            self._since_rename = set()

    def opened(self, path: str) -> bool:
        """Record an open of ``path``; True if the kernel may keep its cache."""
        with self._lock:
            keep = path not in self._changed
            if not keep:
                self._changed.discard(path)
            since = self._since_rename
            if since is not None and path not in since:
                if len(since) >= self._limit:
                    since = self._since_rename = set()
                since.add(path)
                keep = False
            return keep
