"""Reference counting of what several readers hold at once (the archive
file, a decompressed stream): each open member reader holds the object it
was opened on, so an archive replaced by an atomic rewrite keeps serving
them from the old file until the last one closes."""

import threading


class Shared:
    """Mixin: ``retain`` for each holder, ``release`` when done; the last
    release calls ``close``."""

    _users = 1
    _count_lock = threading.Lock()      # brief, and taken once per member opened
    _closed_message = "stream is closed"

    def retain(self):
        with self._count_lock:
            if self._users <= 0:
                raise ValueError(self._closed_message)
            self._users += 1
        return self

    def release(self) -> None:
        with self._count_lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.close()

    def close(self) -> None:
        raise NotImplementedError
