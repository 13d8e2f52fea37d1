"""Read-ahead across files: a walker's next small files put into the
kernel's page cache before it opens them.

grep -r, tar and cp -r read a directory's files in listing order. On a
read-only mount each small file then costs one READ round trip, decoded
while the walker waits. Once a file of a directory is read, this thread
asks the plugin to describe the files listed after it (``small_plans``)
and hands them to the decoder processes (``decoderproc.py``), which decode
them on other cores and store them into the page cache: the walker finds
them there and asks nothing. The window starts small (a program reading one
file wastes little), doubles each time the walker catches up with it, and
carries over to the next directory of a walk that read the last one whole;
such a walk's next directory is started as soon as it has been listed,
before the walker reads its first file.

Safety: the store is made by another process, never by the thread serving
requests, so a READ waiting for a page lock the store needs is always
answered (the store waits for it, never the reverse); inode numbers are
never reused, so content cannot land in another file; a member that does
not decode cleanly is not stored and is read (and its damage reported)
the ordinary way.
"""

import logging
import threading

from archfs.mount import fusell as ll
from archfs.mount.decoderproc import DECODERS, DecoderProcess

log = logging.getLogger("archfs.mount")

FIRST_WINDOW = 8            # files pushed after the first read in a directory
MOST_FILES = 512            # the window's cap, in files ...
MOST_BYTES = 16 << 20       # ... and in bytes decoded ahead of the walker
LEAD = 2                    # files left to a walker that caught up, while this gets ahead
BATCH = 16                  # files per message to the decoder process


class PushAhead:
    """One thread following the walker, processes decoding for it."""

    def __init__(self, se, inodes, operations):
        self._inodes, self._ops = inodes, operations
        self._cond = threading.Condition()
        self._asked = None          # (parent inode, name) of the newest READ at 0
        self._stopping = False
        self._dir = None            # parent inode whose listing is below
        self._names = []            # that directory's names, in listing order
        self._index = {}            # name -> position in _names
        self._frontier = 0          # positions below it were pushed or skipped
        self._window = FIRST_WINDOW
        self._latest = -1           # position of the newest file the walker read
        self.pushed = 0
        self._process = DecoderProcess(ll.session_fd(se))
        self._thread = threading.Thread(target=self._run, name="archfs-pushahead", daemon=True)
        self._thread.start()

    def read_started(self, ino: int) -> None:
        """(serving thread) ``ino`` was just read from its start: never waits
        on this thread's work."""
        node = self._inodes.node(ino)
        if node is None or not node.parent:
            return
        with self._cond:
            self._asked = (node.parent, node.name)
            self._cond.notify()

    def listed(self, ino: int) -> None:
        """(serving thread) The directory ``ino`` was just listed to its end
        with attributes, so the kernel has its files' inodes: if the walker
        read the last directory through, start on this one now, a head
        start on the walker, which reads its first file only after its
        listing."""
        names = self._names
        if self._dir is None or self._frontier < len(names) - LEAD - 1:
            return
        with self._cond:
            if self._asked is None:
                self._asked = (ino, None)
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=10)
        self._process.close()

    # -- the following thread ----------------------------------------------------

    def _run(self) -> None:
        # (the decoder processes start with the first batch: a mount that
        # is only listed, or not at once, pays nothing for them)
        while True:
            with self._cond:
                while self._asked is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                parent, name = self._asked
                self._asked = None
            try:
                self._follow(parent, name)
            except Exception:       # a hint only: the walker's READs still work
                log.debug("read-ahead stopped in a directory", exc_info=True)

    def _follow(self, parent: int, name: str) -> None:
        """Move the window to just after ``name`` and push what it covers."""
        if parent != self._dir and not self._listing(parent):
            return
        if name is None:        # (from ``listed``) the start of a new listing
            if self._latest < 0 and self._frontier == 0:
                self._frontier = self._push(parent, 0, self._window)
            return
        at = self._index.get(name)
        if at is None:
            return
        start = max(self._frontier, at + 1)
        if at < self._latest or at > self._frontier + self._window:
            self._window = FIRST_WINDOW         # not a walk in order: start small
        elif at >= self._frontier:
            # it caught up: a bigger window, and a jump past the next files
            # (the walker reads those itself meanwhile) rather than racing
            # it for the very file it is waiting for
            self._window = min(self._window * 2, MOST_FILES)
            start = at + 1 + LEAD
        self._latest = at
        self._frontier = self._push(parent, start, at + 1 + self._window)

    def _listing(self, parent: int) -> bool:
        path = self._inodes.path(parent)
        if path is None:
            return False
        names = [entry[0] for entry in self._ops.readdir(path, None)]
        # a walker that went through the last directory to its end keeps
        # its window: it will most likely go through this one too
        walked = self._dir is not None and self._frontier >= len(self._names) - LEAD - 1
        self._dir, self._names = parent, names
        self._index = {n: i for i, n in enumerate(names)}
        self._frontier, self._latest = 0, -1
        if not walked:
            self._window = FIRST_WINDOW
        return True

    def _push(self, parent: int, start: int, stop: int) -> int:
        """Push the files at positions [start, stop), a batch at a time, the
        next batch sent before the last one's answer is read; returns where
        it ended."""
        inodes, names = self._inodes, self._names
        base = inodes.path(parent)
        if base is None:
            return start
        prefix = "/" if base == "/" else base + "/"
        budget = MOST_BYTES
        in_flight = 0
        at, stop = start, min(stop, len(names))
        while at < stop and budget > 0:
            if self._asked is not None or self._stopping:
                break                   # the walker moved: follow it instead
            end = min(at + BATCH, stop)
            batch = []
            for name in names[at:end]:
                ino = inodes.unstored(parent, name)
                if ino:                 # else: no inode yet, or stored already
                    batch.append((ino, name))
            at = end
            if not batch:
                continue
            sent = self._send(batch, prefix)
            if sent is None:
                break                   # nothing to send this to
            budget -= sent
            if sent:
                in_flight += 1
            if in_flight == 2 * DECODERS:
                self._receive()
                in_flight -= 1
        for _ in range(in_flight):
            self._receive()
        return at

    def _send(self, batch, prefix: str):
        """Send ``batch`` ((inode, name) pairs) to the decoder process; the
        bytes planned (enough for the budget), 0 if nothing of it was sent
        (no plan: not small), None if the plugin or the process cannot."""
        planned = self._ops.small_plans([prefix + name for _, name in batch])
        if planned is None:
            return None
        decoder, plans = planned
        inos = [ino for (ino, _), plan in zip(batch, plans) if plan is not None]
        plans = [plan for plan in plans if plan is not None]
        if not plans:
            return 0
        if not self._process.send(decoder, inos, plans):
            return None
        return max(1, sum(plan[0] for plan in plans))     # each plan starts with its size

    def _receive(self) -> None:
        stored = self._process.receive()
        if stored:
            for ino in stored:
                self._inodes.mark_stored(ino)
            self.pushed += len(stored)
