"""The kernel's readahead for the mount, which sets how big reads are.

By default the kernel reads ahead 128 KiB on a FUSE mount, so a big file
arrives in 128 KiB requests, each a round trip through Python. With 1 MiB
it arrives in 1 MiB requests (libfuse 3 accepts up to 1 MiB): sequential
reads of a stored member run several times faster. The setting lives in
sysfs (``/sys/class/bdi/MAJOR:MINOR/read_ahead_kb``) and only root may
change it; for anyone else the kernel's default stays.
"""

import logging
import os
import threading
import time
from typing import Optional

log = logging.getLogger("archfs.mount")


def mount_device(mountpoint: str) -> Optional[str]:
    """``MAJOR:MINOR`` of the filesystem mounted at ``mountpoint``, from mountinfo."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.readlines()
    except OSError:
        return None
    found = None
    for line in lines:       # the last match is the topmost mount
        fields = line.split()
        if len(fields) > 4 and _unescape(fields[4]) == mountpoint:
            found = fields[2]
    return found


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def set_readahead_when_live(mountpoint: str, kib: int) -> None:
    """Set it once the kernel has finished setting up the mount.

    The kernel sets the readahead itself while it handles the reply to
    FUSE's init, which is sent after archfs's init callback returns; a stat
    of the mountpoint is answered only after that. The stat runs in a child
    process: a thread of the daemon must never wait on its own mount (killed
    during that wait, the daemon could not finish exiting, and every access
    to the mount would hang instead of failing with ENOTCONN).
    """
    def work():
        from archfs.mount.fuselib import _which
        stat = _which("stat")
        if stat is None:
            log.debug("readahead stays at the kernel's default (no stat program to wait with)")
            return
        if _run_quietly([stat, "-c", "%i", "--", mountpoint], WAIT_SECONDS) == 0:
            set_readahead(mountpoint, kib)

    threading.Thread(target=work, name="archfs-readahead", daemon=True).start()


WAIT_SECONDS = 60


def _run_quietly(argv, timeout: float):
    """The exit status of ``argv`` run with stdio on /dev/null, or None when
    it could not run or was killed after ``timeout`` seconds. (posix_spawn
    rather than subprocess, whose imports would compete with the mount's
    first requests for the interpreter.)"""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        pid = os.posix_spawn(argv[0], argv, os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)])
    except OSError:
        return None
    finally:
        os.close(null)
    deadline, pause = time.monotonic() + timeout, 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def set_readahead(mountpoint: str, kib: int) -> bool:
    """Set the mount's readahead; False (logged) when it cannot be."""
    device = mount_device(mountpoint)
    if device is None:
        log.debug("readahead: no mountinfo entry for %s", mountpoint)
        return False
    path = "/sys/class/bdi/%s/read_ahead_kb" % device
    try:
        with open(path, "w") as f:
            f.write(str(kib))
    except OSError as exc:
        log.debug("readahead stays at the kernel's default (%s: %s)", path, exc.strerror)
        return False
    log.debug("readahead set to %d KiB (%s)", kib, path)
    return True
