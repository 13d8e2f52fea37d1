"""A remote archive read as a file: the read-only transport.

One HEAD at open gives the size and the version (ETag, else size and
modification time), which keys saved indexes and makes every later GET
conditional where the store allows (``backends.py``). Reads go through a
``BlockCache``. With ``-v`` every read that needed the network logs what
it cost, and closing logs what the whole mount cost.
"""

import logging
import time
from typing import Optional

from archfs.engine.fileaccess import Identity
from archfs.engine.sharing import Shared
from archfs.engine.transports.blockcache import BlockCache
from archfs.engine.transports.netstats import describe, size_text

log = logging.getLogger("archfs.remote")


class RemoteFile(Shared):
    _closed_message = "archive file already closed"
    is_local = False
    atomic = False
    writable = False

    def __init__(self, backend, cache_bytes: int, info=None):
        self.backend = backend
        self.stats = backend.stats
        self._opened = time.monotonic()
        self._info = info if info is not None else backend.stat()
        self.cache = BlockCache(self._fetch, self._info.size, capacity=cache_bytes)

    @property
    def location(self) -> str:
        return self.backend.url

    @property
    def etag(self) -> Optional[str]:
        return self._info.etag

    @property
    def published(self):
        return self

    @property
    def why_read_only(self) -> Optional[str]:
        return None if self.writable else self.backend.why_read_only

    def _fetch(self, start: int, end: int) -> bytes:
        return self.backend.get(start, end, self._info.etag)

    # -- reading ----------------------------------------------------------------

    def pread(self, size: int, pos: int) -> bytes:
        with self.stats.measure() as cost:
            data = self.cache.read(size, pos)
        if cost.requests:
            log.debug("%s: read of %d bytes at %d: %d request%s, %s, %.0f ms", self.location,
                      size, pos, cost.requests, "" if cost.requests == 1 else "s",
                      size_text(cost.bytes), cost.seconds * 1000)
        return data

    def size(self) -> int:
        return self._info.size

    def identity(self) -> Identity:
        return Identity(0, 0, self._info.size, self._info.mtime_ns)

    def cache_key(self) -> dict:
        """A saved index fits this object on any machine while its version holds."""
        key = {"url": self.location, "size": self._info.size}
        if self._info.etag:
            key["etag"] = self._info.etag
        else:
            key["mtime_ns"] = self._info.mtime_ns
        return key

    def will_read(self, pos: int, size: int) -> None:
        self.cache.will_read(pos, size)

    def cost(self) -> str:
        """What the archive cost since it was opened, for the log."""
        return "%s in %.2f s" % (describe(self.stats.snapshot()),
                                 time.monotonic() - self._opened)

    # -- sharing ----------------------------------------------------------------

    def close(self) -> None:
        self.cache.close()
        log.info("%s: %s", self.location, self.cost())
        self.backend.close()
