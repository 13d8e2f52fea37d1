"""The checkpoint after an idle period.

Between checkpoints the file ends with journal records, which other zip
readers do not understand (see the protocol in ``__init__.py``). Once no
commit has come for ``delay`` seconds, a checkpoint makes the file a
complete zip again, at a moment when its cost disturbs no one.
"""

import logging
import threading
import time
from typing import Optional

from archfs.deadline import wait_due

log = logging.getLogger("archfs.zip")


class IdleCheckpoints:
    """A thread that checkpoints the store ``delay`` seconds after the last poke."""

    def __init__(self, store, delay: float):
        self.store = store
        self.delay = delay
        self._cond = threading.Condition()
        self._due: Optional[float] = None
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    def poke(self) -> None:
        """A commit left journal records: checkpoint after ``delay`` of quiet."""
        with self._cond:
            if self._stopping:
                return
            self._due = time.monotonic() + self.delay
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="archfs-checkpoint",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not wait_due(self._cond, lambda: self._due, lambda: self._stopping):
                    return
                self._due = None
            try:
                if self.store.has_journal:
                    self.store.checkpoint()
            except Exception as exc:     # a closed or broken store: the next commit says so
                log.warning("%s: idle checkpoint failed: %s", self.store.path, exc)
