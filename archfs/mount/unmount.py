"""``archfs unmount``: detach the mount, then wait until the daemon has
committed everything and exited, and report how it ended.

The daemon commits after the kernel lets go of the mount (in FUSE's
destroy), so returning right after fusermount (or umount(8)) would let a
caller read an archive that is still being written. The daemon is found
through the state file it wrote for the mountpoint; its start time guards
against a reused pid.

A mount whose daemon was killed is still attached ("Transport endpoint is
not connected"); unmounting it detaches it, forgets the daemon's notes and
succeeds with a warning: nothing else can be done for it, and the archive
recovers its last commit at the next mount (or with ``archfs repair``).
"""

import errno
import os
import subprocess
import sys
import time
from typing import Callable, List, Optional

from archfs import exitcodes
from archfs.mount import mounttable, statefiles
from archfs.mount.preflight import MountError


BUSY_GRACE = 1.0   # seconds a busy mount is retried before the unmount is refused


class UnmountError(MountError):
    """One line for the user; exit status 4 unless the daemon's note says
    the archive could not take everything (3)."""


def _detach(mountpoint: str, lazy: bool, helper: Optional[str]) -> None:
    import shutil
    candidates = [helper] if helper and os.path.exists(helper) else []
    if not candidates:
        candidates = [p for p in (shutil.which("fusermount3"), shutil.which("fusermount")) if p]
    if candidates:
        command = [candidates[0], "-u"] + (["-z"] if lazy else []) + [mountpoint]
    elif os.geteuid() == 0 and shutil.which("umount"):
        command = ["umount"] + (["-l"] if lazy else []) + [mountpoint]
    else:
        raise UnmountError("fusermount3 not found: install fuse3", errno.ENOENT)
    deadline = time.monotonic() + BUSY_GRACE
    while True:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        # a passing visitor (a find, a file manager) keeps a mount busy for a moment
        if (result.returncode == 0 or "busy" not in result.stderr.lower()
                or time.monotonic() > deadline):
            break
        time.sleep(0.1)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        message = lines[-1] if lines else "exit status %d" % result.returncode
        if "busy" in message.lower():
            raise UnmountError("%s is busy (a process has a file or directory open there); "
                               "close it, or use archfs unmount --lazy" % mountpoint,
                               errno.EBUSY)
        raise UnmountError("cannot unmount %s: %s" % (mountpoint, message))


def _say(text: str) -> None:
    print("archfs: %s" % text, file=sys.stderr)


def _pidfd(pid: int, start_time: Optional[int]) -> Optional[int]:
    """A pidfd of the daemon (Linux 5.3 and later), which becomes readable the
    moment it exits; None where there is none (then the wait polls)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd = opener(pid)
    except OSError:
        return None
    if not statefiles.process_running(pid, start_time):   # gone, or the pid reused
        os.close(fd)
        return None
    return fd


def _wait_for(pid: int, start_time: Optional[int], timeout: Optional[float],
              notify: Optional[Callable[[str], None]], pidfd: Optional[int] = None) -> bool:
    """Wait until the daemon has exited; False on timeout."""
    import select
    began = time.monotonic()
    told = False
    while statefiles.process_running(pid, start_time):
        waited = time.monotonic() - began
        if timeout is not None and waited > timeout:
            return False
        if not told and waited > 2 and notify is not None:
            notify("waiting for the daemon (pid %d) to finish committing..." % pid)
            told = True
        if pidfd is None:
            time.sleep(0.02 if waited < 1 else 0.1)
            continue
        nap = 1.0 if told or notify is None else 2.05 - waited
        if timeout is not None:
            nap = min(nap, timeout - waited + 0.01)
        select.select([pidfd], [], [], max(0.0, nap))
    return True


def unmount(mountpoint: str, lazy: bool = False, timeout: Optional[float] = None,
            quiet: bool = False, notify: Optional[Callable[[str], None]] = _say) -> List[str]:
    """Unmount and wait for the daemon; returns warnings, raises UnmountError.

    ``notify`` is told once when the wait grows long (not when ``quiet``).
    """
    given = os.path.abspath(os.path.expanduser(mountpoint))
    real = os.path.realpath(given)
    running = statefiles.read_running(real)
    pid = running.get("pid") if running else None
    start = running.get("start_time") if running else None
    alive = pid is not None and statefiles.process_running(pid, start)
    pidfd = _pidfd(pid, start) if alive else None   # opened before the daemon may end
    try:
        return _unmount(given, real, running, alive, lazy, timeout,
                        None if quiet else notify, pidfd)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _unmount(given: str, real: str, running: Optional[dict], alive: bool, lazy: bool,
             timeout: Optional[float], notify, pidfd: Optional[int]) -> List[str]:
    pid = running.get("pid") if running else None
    start = running.get("start_time") if running else None
    fstype = mounttable.mount_type(real)
    if fstype is None and not alive:
        if running:
            statefiles.forget(real, running)   # the note of a daemon that died unmounted
        if not os.path.lexists(given):
            raise UnmountError("no such directory: %s" % given, errno.ENOENT)
        ending = statefiles.pop_exit(real)
        if ending is None:
            raise UnmountError("not mounted: %s" % real, errno.EINVAL)
        # unmounted by umount(8) or fusermount, and the daemon has finished since
        _check_ending(ending)
        return []
    if fstype is not None:
        if not mounttable.is_archfs(fstype) and not alive:
            raise UnmountError("%s is not an archfs mount (it is %s)" % (real, fstype),
                               errno.EINVAL)
        _detach(real, lazy, running.get("fusermount") if running else None)
    warnings = []
    if pid is None:
        warnings.append("no archfs daemon of yours is recorded for %s: detached it without "
                        "waiting for a commit" % real)
        return warnings
    if not alive:
        statefiles.forget(real, running)
        warnings.append(
            "the daemon of %s (pid %d) had ended without unmounting (killed or crashed); "
            "removed the dead mount. Changes it had not committed are lost; %s recovers its "
            "last commit at the next mount, or with archfs repair"
            % (real, pid, running.get("archive") or "the archive"))
        return warnings
    if not _wait_for(pid, start, timeout, notify, pidfd):
        raise UnmountError("the daemon (pid %d) is still committing after %gs; see %s"
                           % (pid, timeout, running.get("log_file") or "its log"),
                           errno.ETIMEDOUT)
    ending = statefiles.pop_exit(real, pid)
    if ending is None:
        statefiles.forget(real, running)
        raise UnmountError("the daemon (pid %d) ended without saying whether everything was "
                           "committed (was it killed?); see %s" % (
                               pid, running.get("log_file") or "its log"))
    _check_ending(ending)
    return warnings


def _check_ending(ending: dict) -> None:
    """Raise when the daemon's exit note says not everything was committed."""
    if ending.get("status"):
        error = UnmountError("unmounted, but %s" % (ending.get("problem")
                                                     or "the daemon failed"))
        if ending["status"] in (exitcodes.ARCHIVE, exitcodes.SYSTEM):
            error.exit_code = ending["status"]
        raise error
