"""``archfs unmount``: detach the mount, then wait until the daemon has
committed everything and exited, and report how it ended.

The daemon commits after the kernel lets go of the mount (in FUSE's
destroy), so returning right after fusermount would let a caller read an
archive that is still being written. The daemon is found through the state
file it wrote for the mountpoint; its start time guards against a reused pid.
"""

import os
import shutil
import subprocess
import sys
import time
from typing import Optional

from archfs.mount import mounttable, statefiles


class UnmountError(Exception):
    """One line for the user."""


def _detach(mountpoint: str, lazy: bool, helper: Optional[str]) -> None:
    candidates = [helper] if helper and os.path.exists(helper) else []
    candidates += [p for p in (shutil.which("fusermount3"), shutil.which("fusermount")) if p]
    if candidates:
        command = [candidates[0], "-u"] + (["-z"] if lazy else []) + [mountpoint]
    elif os.geteuid() == 0 and shutil.which("umount"):
        command = ["umount"] + (["-l"] if lazy else []) + [mountpoint]
    else:
        raise UnmountError("fusermount3 not found: install fuse3")
    result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        message = lines[-1] if lines else "exit status %d" % result.returncode
        if "busy" in message.lower():
            raise UnmountError("%s is busy (a process has a file or directory open there); "
                               "close it, or use archfs unmount --lazy" % mountpoint)
        raise UnmountError("cannot unmount %s: %s" % (mountpoint, message))


def _wait_for(pid: int, start_time: Optional[int], timeout: Optional[float], quiet: bool) -> bool:
    """Wait until the daemon has exited; False on timeout."""
    began = time.monotonic()
    told = False
    while statefiles.process_running(pid, start_time):
        waited = time.monotonic() - began
        if timeout is not None and waited > timeout:
            return False
        if not told and waited > 2 and not quiet:
            print("archfs: waiting for the daemon (pid %d) to finish committing..." % pid,
                  file=sys.stderr)
            told = True
        time.sleep(0.02 if waited < 1 else 0.1)
    return True


def unmount(mountpoint: str, lazy: bool = False, timeout: Optional[float] = None,
            quiet: bool = False) -> int:
    """Returns the exit status for the command; raises UnmountError."""
    real = os.path.realpath(os.path.abspath(os.path.expanduser(mountpoint)))
    running = statefiles.read_running(real)
    pid = running.get("pid") if running else None
    start = running.get("start_time") if running else None
    alive = pid is not None and statefiles.process_running(pid, start)
    fstype = mounttable.mount_type(real)
    if fstype is None and not alive:
        raise UnmountError("not mounted: %s" % real)
    if fstype is not None:
        if not mounttable.is_archfs(fstype) and not alive:
            raise UnmountError("%s is not an archfs mount (it is %s)" % (real, fstype))
        _detach(real, lazy, running.get("fusermount") if running else None)
    if alive and not _wait_for(pid, start, timeout, quiet):
        raise UnmountError("the daemon (pid %d) is still committing after %gs; see %s"
                           % (pid, timeout, running.get("log_file") or "its log"))
    if pid is None:
        return 0
    ending = statefiles.pop_exit(real, pid)
    if ending is None:
        raise UnmountError("the daemon (pid %d) ended without reporting; see %s"
                           % (pid, running.get("log_file") or "its log"))
    if ending.get("status"):
        raise UnmountError("unmounted, but %s" % (ending.get("problem") or "the daemon failed"))
    return 0
