"""The Python API of a mount: ``archfs.mount(source, mountpoint, **options)``.

It starts the same daemon as ``archfs mount`` (a new process, so the
caller's threads do not matter) and returns once the mount is live, with a
``Mount`` handle; leaving its ``with`` block, or ``unmount()``, returns once
everything is committed and the daemon has exited. Every failure raises the
exception the command would report, with the same one-line message: the
``archfs.errors`` classes (``NoSuchFile``, ``NotAnArchiveError``,
``ArchiveBusy``, ...), ``OptionError`` for an option, ``MountError`` for
FUSE and mountpoint problems. All are ``OSError`` with an errno.
"""

import errno
import logging
import os
from pathlib import Path
from typing import List, Optional

from archfs import errors, sources
from archfs.mount.options import OptionError, items_from_keywords, parse_items
from archfs.mount.preflight import MountError

log = logging.getLogger("archfs")


def _exception(problem: dict) -> OSError:
    """The exception the daemon reported, rebuilt from its class name."""
    from archfs.mount.unmount import UnmountError
    name, message = problem.get("type"), problem["message"]
    number = problem.get("errno")
    if name == "OptionError":
        return OptionError(message)
    if name in ("MountError", "UnmountError"):
        cls = MountError if name == "MountError" else UnmountError
        exc = cls(message, number or errno.EIO)
        exc.exit_code = problem["exit"]
        return exc
    cls = getattr(errors, name or "", None)
    if isinstance(cls, type) and issubclass(cls, errors.ArchfsError):
        try:
            return cls(message)
        except TypeError:
            pass
    if problem.get("exit") == 1:       # a bug in the daemon: not an OSError
        return RuntimeError(message)   # type: ignore[return-value]
    return OSError(number or errno.EIO, message)


class Mount:
    """A live mount made by ``archfs.mount``; a context manager.

    ``path`` is the mountpoint (a ``pathlib.Path``), ``source`` the archive,
    ``read_only`` whether it is mounted read-only (asked for, or the archive
    is not writable: see ``warnings``), ``pid`` the daemon's process id.
    """

    def __init__(self, source: str, mountpoint: str, read_only: bool, pid: int,
                 log_file: str, warnings: List[str]):
        self.source = source
        self.path = Path(mountpoint)
        self.read_only = read_only
        self.pid = pid
        self.log_file = log_file
        self.warnings = warnings
        self.unmounted = False

    def __repr__(self):
        return "<archfs.Mount %s on %s%s>" % (self.source, self.path,
                                              " (unmounted)" if self.unmounted else "")

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name) -> Path:
        return self.path / name

    @property
    def mounted(self) -> bool:
        from archfs.mount import mounttable
        return not self.unmounted and mounttable.is_archfs(
            mounttable.mount_type(str(self.path)))

    def unmount(self, lazy: bool = False, timeout: Optional[float] = None) -> None:
        """Unmount and return once everything is committed and the daemon has
        exited. ``lazy`` detaches even while files are open (the daemon
        commits when the last one closes, and this waits for that)."""
        from archfs.mount import daemon
        from archfs.mount.unmount import unmount
        if self.unmounted:
            return
        try:
            for warning in unmount(str(self.path), lazy=lazy, timeout=timeout, quiet=True,
                                   notify=None):
                log.warning("%s", warning)
            self.unmounted = True
        finally:
            daemon.reap()

    def __enter__(self) -> "Mount":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.unmount()
            return
        # the block failed: unmount all the same without hiding its exception
        try:
            self.unmount()
        except OSError as problem:
            log.warning("unmounting %s after an error: %s", self.path, problem)
            if not self.unmounted:
                try:
                    self.unmount(lazy=True)
                except OSError as again:
                    log.warning("lazy unmount of %s failed too: %s", self.path, again)


def mount(source, mountpoint, *, log_file=None, verbose: int = 0, **options) -> Mount:
    """Mount ``source`` (an archive file, a directory, or a URL a plugin reads)
    on the empty directory ``mountpoint``; returns once the mount is live.

    ``options`` are the ``-o`` options as keywords: ``ro=True``,
    ``commit_interval=0.5``, ``password_file="pw.txt"``, ``allow_other=True``;
    ``log_file`` is where the daemon logs (default: as ``archfs mount``).
    """
    from archfs.mount.daemon import MountRequest, start_detached

    opts = parse_items(items_from_keywords(options))
    mountpoint = os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(mountpoint))))
    request = MountRequest(
        archive=sources.normalize(source), mountpoint=mountpoint, options=opts,
        verbose=verbose, log_file=os.path.abspath(os.fspath(log_file)) if log_file else None)
    started = start_detached(request)
    if not started.ok:
        raise _exception(started.problem)
    for warning in started.warnings:
        log.warning("%s", warning)
    read_only = opts.read_only or any("read-only" in w for w in started.warnings)
    return Mount(request.archive, mountpoint, read_only, started.pid, request.log_file,
                 started.warnings)
