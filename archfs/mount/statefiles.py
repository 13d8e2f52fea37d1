"""Where a running mount leaves notes for ``archfs unmount`` and for the user.

Per mountpoint (keyed by its real path) the daemon writes, in a private
per-user directory ($XDG_RUNTIME_DIR/archfs, else /tmp/archfs-UID):

- ``KEY.json`` while it runs: pid, start time, archive, log file, the
  fusermount helper; ``archfs unmount`` uses it to wait for that daemon;
- ``KEY.exit`` when it ends: exit status and what went wrong, if anything;
- ``KEY.log``: the log of a background mount without --log-file.

Per archive it holds ``archive-KEY.lock`` so that one archive is not written
by two mounts at once.
"""

import errno
import fcntl
import json
import os
import re
import stat as _stat
from typing import List, Optional

from archfs.engine.digest import sha256


def state_dir(create: bool = True) -> str:
    """The per-user state directory; checked to be ours and private."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        path = os.path.join(runtime, "archfs")
    else:
        path = "/tmp/archfs-%d" % os.getuid()
    if not create:
        return path
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not _stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(errno.EACCES, "state directory %s is not a directory owned "
                                            "by you" % path)
    if _stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def key_for(path: str) -> str:
    """A file name for a real path: readable tail plus a hash of the whole."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", path.strip("/"))[-60:].strip("-") or "root"
    digest = sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return "%s-%s" % (tail, digest)


def _path(mountpoint: str, suffix: str, create: bool = True) -> str:
    return os.path.join(state_dir(create), key_for(mountpoint) + suffix)


def log_path(mountpoint: str) -> str:
    return _path(mountpoint, ".log")


def log_path_hint() -> str:
    """For --help: where background logs go."""
    return os.path.join(state_dir(create=False), "MOUNTPOINT-KEY.log")


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def process_start_time(pid: int) -> Optional[int]:
    """The start time of ``pid`` (clock ticks after boot), None if gone."""
    fields = _stat_fields("/proc/%d/stat" % pid)
    return None if fields is None else int(fields[19])


def process_running(pid: int, start_time: Optional[int] = None) -> bool:
    """Whether ``pid`` runs and is the same process. A zombie has finished,
    unless only its main thread has: after SIGKILL the main thread is a
    zombie while the others still end, holding the archive open."""
    fields = _stat_fields("/proc/%d/stat" % pid)
    if fields is None:
        return False
    if fields[0] in _ENDED and not _other_threads_run(pid):
        return False
    return start_time is None or int(fields[19]) == start_time


_ENDED = ("Z", "X")


def _stat_fields(path: str) -> Optional[List[str]]:
    """The fields of a /proc stat file after the command name, or None."""
    try:
        with open(path) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _other_threads_run(pid: int) -> bool:
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return False
    for tid in tasks:
        fields = _stat_fields("/proc/%d/task/%s/stat" % (pid, tid))
        if fields is not None and fields[0] not in _ENDED:
            return True
    return False


def write_running(mountpoint: str, info: dict) -> None:
    pid = os.getpid()
    data = dict(info, pid=pid, start_time=process_start_time(pid), mountpoint=mountpoint)
    try:
        os.unlink(_path(mountpoint, ".exit"))
    except FileNotFoundError:
        pass
    _write_json(_path(mountpoint, ".json"), data)


def read_running(mountpoint: str) -> Optional[dict]:
    return _read_json(_path(mountpoint, ".json", create=False))


def write_exit(mountpoint: str, status: int, problem: Optional[str]) -> None:
    """Record how the daemon ended, then forget that it runs."""
    _write_json(_path(mountpoint, ".exit"),
                {"pid": os.getpid(), "status": status, "problem": problem})
    try:
        os.unlink(_path(mountpoint, ".json"))
    except FileNotFoundError:
        pass


def forget(mountpoint: str, running: Optional[dict] = None) -> None:
    """Remove the notes of a daemon that died without cleaning up: its
    running note and, when no mount holds it, its archive's lock file."""
    try:
        os.unlink(_path(mountpoint, ".json", create=False))
    except FileNotFoundError:
        pass
    archive = (running or {}).get("archive")
    if not archive:
        return
    from archfs.sources import lock_key
    path = os.path.join(state_dir(create=False), "archive-%s.lock" % key_for(lock_key(archive)))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
    except OSError:
        pass   # held by a live mount (or already gone): leave it
    finally:
        os.close(fd)


def pop_exit(mountpoint: str, pid: Optional[int] = None) -> Optional[dict]:
    """How the daemon (of ``pid``, if given) ended; the note is removed."""
    path = _path(mountpoint, ".exit", create=False)
    data = _read_json(path)
    if data is None or (pid is not None and data.get("pid") != pid):
        return None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return data


def lock_archive(archive: str, exclusive: bool) -> int:
    """Hold a lock on ``archive`` for this process's life; returns its fd.

    Raises BlockingIOError when another mount holds a conflicting lock. The
    lock file is removed by ``unlock_archive``; a lock taken on a file that
    was removed meanwhile is retried on the new one.
    """
    path = os.path.join(state_dir(), "archive-%s.lock" % key_for(archive))
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            current = os.stat(path)
        except (BlockingIOError, FileNotFoundError) as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise
            continue
        held = os.fstat(fd)
        if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
            return fd
        os.close(fd)


def unlock_archive(archive: str, fd: int) -> None:
    """Release the lock; remove its file unless another mount shares it."""
    path = os.path.join(state_dir(), "archive-%s.lock" % key_for(archive))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # a read-only mount shares it: leave the file
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    os.close(fd)
