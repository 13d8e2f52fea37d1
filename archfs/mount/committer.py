"""Copy-back and commit: when written content reaches the archive on disk.

A file whose last writer closed it is copied back into the archive by a
background thread, and the archive is committed, at most ``interval``
seconds after the first change since the previous commit: copying ten
thousand small files then costs a few commits, not ten thousand. fsync
copies back that one file and commits before it returns, and reports the
error if either fails. With an interval of 0 every release and every change
commits at once. ``close`` (at unmount) copies back everything and commits.

A copy-back or commit that fails is logged (once per file and cause) and
retried, no sooner than ``retry_delay`` seconds later.
"""

import logging
import threading
import time
from typing import Dict, List, Optional, Tuple

from archfs.deadline import wait_due
from archfs.engine import cpus
from archfs.mount.openfiles import Entry, OpenFiles

log = logging.getLogger("archfs.mount")


class Committer:
    """Owns the background thread and the archive's commit calls."""

    def __init__(self, archive, files: OpenFiles, interval: float, retry_delay: float = 5.0):
        self.archive = archive
        self.files = files
        self.interval = max(0.0, float(interval))
        self.retry_delay = max(retry_delay, self.interval)
        self._cond = threading.Condition()
        self._queue: Dict[Entry, None] = {}   # ordered set of entries to copy back
        self._due: Optional[float] = None     # when the next round runs
        self._stopping = False
        self._commit_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self.copy_backs = 0
        self.commits = 0
        files.on_unsaved = self.unsaved
        files.on_change = self.note_change

    # -- events from the mount -------------------------------------------------

    def note_change(self) -> None:
        """The archive is about to change, or just did: a commit is due
        within the interval."""
        with self._cond:
            self._schedule(self.interval)

    def _schedule(self, delay: float) -> None:
        """(caller holds _cond) Make sure a round runs within ``delay``."""
        due = time.monotonic() + delay
        if self._due is None or due < self._due:
            self._due = due
            self._cond.notify()

    def unsaved(self, entry: Entry) -> None:
        """The last writer of ``entry`` closed it with unsaved content."""
        if self.interval == 0:
            self._round([entry])
            return
        with self._cond:
            self._queue[entry] = None
            self._schedule(self.interval)

    def after_change(self) -> None:
        """A namespace change was made: with interval 0 commit it now,
        otherwise within the interval (again: a round that ran between the
        notice before the change and the change itself did not include it)."""
        if self.interval == 0:
            self.commit()
        else:
            self.note_change()

    def fsync(self, entry: Optional[Entry]) -> None:
        """Copy back ``entry`` (even if open) and commit; raises on failure."""
        if entry is not None:
            try:
                if self.files.copy_back(entry, force=True):
                    self.copy_backs += 1
            except Exception:
                if entry.writers == 0 and self.interval > 0:
                    self.unsaved(entry)  # its last writer has gone: retry in the background
                raise
        self.commit()

    def commit(self) -> None:
        """Commit the archive; raises on failure.

        Always asks the plugin, which knows whether anything changed since
        its last commit (the zip store's commit of an unchanged index costs
        nothing). A flag kept here would be cleared by a commit that started
        just before a change landed, and an fsync after that change would
        then return without making it durable.
        """
        with self._commit_lock:
            if self.archive.commit() is not False:
                self.commits += 1

    # -- the background thread -------------------------------------------------

    def start(self) -> None:
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="archfs-committer",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # it compresses without the GIL: beside the request threads, which
        # share one CPU (engine/cpus.py), not between their turns
        cpus.spread_here()
        while True:
            with self._cond:
                if not wait_due(self._cond, lambda: self._due, lambda: self._stopping):
                    return
                self._due = None
                batch = list(self._queue)
                self._queue.clear()
            self._round(batch)

    def _round(self, batch: List[Entry]) -> None:
        """Copy back ``batch``, commit, and schedule a retry of what failed."""
        failed = []
        for entry, outcome in self.files.copy_back_many(batch):
            if isinstance(outcome, Exception):
                failed.append(entry)
                self._report(entry, outcome)
                continue
            if outcome:
                self.copy_backs += 1
            self.files.maybe_retire(entry)
        try:
            self.commit()
        except Exception as exc:
            log.error("commit of the archive failed (will retry): %s", exc,
                      exc_info=not isinstance(exc, OSError))
            with self._cond:
                self._schedule(self.retry_delay)
        if failed:
            with self._cond:
                for entry in failed:
                    self._queue[entry] = None
                self._schedule(self.retry_delay)

    @staticmethod
    def _report(entry: Entry, exc: Exception) -> None:
        text = "%s: %s" % (type(exc).__name__, exc)
        if entry.failure != text:
            entry.failure = text
            log.error("copy-back of /%s failed (will retry): %s", entry.path, exc,
                      exc_info=not isinstance(exc, OSError))

    # -- unmount ---------------------------------------------------------------

    def close(self) -> List[Tuple[Entry, str]]:
        """Stop the thread, copy back everything, commit.

        Returns the entries whose content could not be stored, with the
        reason; an empty list means everything is in the archive.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        lost = []
        for entry, outcome in self.files.copy_back_many(self.files.unsaved(), force=True):
            if isinstance(outcome, Exception):
                exc = outcome
                log.error("copy-back of /%s failed at unmount: %s", entry.path, exc,
                          exc_info=not isinstance(exc, OSError))
                text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                lost.append((entry, "/%s: %s" % (entry.path, text)))
                continue
            if outcome:
                self.copy_backs += 1
            self.files.maybe_retire(entry)
        try:
            self.commit()
        except Exception as exc:
            log.error("final commit failed: %s", exc, exc_info=not isinstance(exc, OSError))
            lost.append((None, "final commit failed: %s" % exc))
        return lost
