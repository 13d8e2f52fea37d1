"""One mount's parts wired together, and its orderly end.

``finish`` runs once, from FUSE's destroy or, if the mount never got that
far, from the daemon: it copies back and commits everything, closes the
archive and removes the scratch directory. Content that could not be stored
is not thrown away: it is moved to a rescue directory beside the archive and
the failure becomes the daemon's exit status.
"""

import contextlib
import logging
import os
import threading
import time
from typing import Callable, Optional

from archfs.mount.committer import Committer
from archfs.mount.kernelcache import KernelCachePolicy
from archfs.mount.openfiles import OpenFiles
from archfs.mount.options import MountOptions, commit_interval
from archfs.mount.scratch import Scratch, choose_base

log = logging.getLogger("archfs.mount")


class MountSession:
    def __init__(self, archive, options: MountOptions,
                 on_ready: Callable[[], None] = lambda: None):
        self.archive = archive
        self.options = options
        self.scratch = Scratch(choose_base(archive.location, options.tmpdir))
        self.files = OpenFiles(archive, self.scratch, KernelCachePolicy())
        self.committer = Committer(archive, self.files, commit_interval(options))
        self._on_ready = on_ready
        self._lock = threading.Lock()
        self.live = False
        self.finished = False
        self.problem: Optional[str] = None  # why the end was not clean

    def mounted(self) -> None:
        self.live = True
        self._on_ready()

    def finish(self, stats: Optional[dict] = None) -> None:
        with self._lock:
            if self.finished:
                return
            self.finished = True
        lost = self.committer.close()
        keep_scratch = False
        if lost:
            self.problem, keep_scratch = self._rescue(lost)
        try:
            self.archive.close()
        except Exception as exc:
            log.error("closing the archive failed: %s", exc, exc_info=not isinstance(exc, OSError))
            self.problem = self.problem or "closing the archive failed: %s" % exc
        if not keep_scratch:
            self.scratch.remove()
        if stats is not None:
            log.info("served reads=%d read_bytes=%d writes=%d write_bytes=%d "
                     "copy_backs=%d commits=%d", stats["reads"], stats["read_bytes"],
                     stats["writes"], stats["write_bytes"], self.committer.copy_backs,
                     self.committer.commits)

    def _rescue(self, lost):
        """Copy unsaved local files where the user can find them.

        Returns the problem to report and whether the scratch directory must
        stay (a file that could not be copied out is kept where it is).
        """
        files = [entry for entry, _ in lost if entry is not None]
        reasons = "; ".join(reason for _, reason in lost)
        location = self.archive.location.rstrip("/")
        rescue = "%s.unsaved-%s" % (location, time.strftime("%Y%m%d-%H%M%S"))
        if "://" in location or not os.access(os.path.dirname(location) or "/", os.W_OK):
            rescue = os.path.join(self.scratch.base, os.path.basename(rescue))
        # a commit that failed for good (another writer changed the archive)
        # leaves content in the archive's own store that never reached it
        stored = []
        save = getattr(self.archive, "save_uncommitted", None)
        if len(files) < len(lost) and save is not None:
            try:
                stored = save(rescue)
            except OSError as exc:
                log.error("could not save the uncommitted changes: %s", exc)
            for path in stored:
                log.error("uncommitted content of /%s kept in %s", path,
                          os.path.join(rescue, path))
        if not files and not stored:
            return "not everything was committed: %s" % reasons, True
        places, keep_scratch = set([rescue] if stored else []), False
        for entry in files:
            target = os.path.join(rescue, entry.path)
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                entry.wfile.save_copy(target)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(target)
                local = getattr(entry.wfile, "keep_on_disk", lambda: entry.wfile.name)()
                log.error("could not copy /%s to %s (%s); it stays in %s", entry.path, target,
                          exc, local or "memory, and is lost")
                if local:
                    places.add(os.path.dirname(local))
                keep_scratch = True
                continue
            log.error("unsaved content of /%s kept in %s", entry.path, target)
            places.add(rescue)
        _remove_empty_tree(rescue)
        return ("%d file(s) could not be stored in the archive (%s); their content is kept "
                "in %s" % (len(files) + len(stored), reasons, ", ".join(sorted(places)))), \
            keep_scratch


def _remove_empty_tree(top: str) -> None:
    for dirpath, _, _ in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
