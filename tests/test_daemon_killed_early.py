"""A daemon killed right after its mount is ready must die whole.

A thread of the daemon that waits on the daemon's own mount (a stat of the
mountpoint, say) cannot be ended by SIGKILL while its request is in flight:
the process then never finishes exiting, keeps /dev/fuse open, and every
access to the mount hangs instead of failing with ENOTCONN. This kills
daemons at the moment they report ready, where such waits happen, and
checks that each one is gone at once.
"""
import os
import signal
import subprocess
import time

import archfs
from archfs.mount.readahead import mount_device
from mount_fixtures import build_archive, is_mounted

ROUNDS = 40


def _threads_left(pid: int) -> int:
    """Threads of ``pid`` not yet dead (a zombie's are)."""
    left = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except (FileNotFoundError, ProcessLookupError):    # reaped meanwhile
        return 0
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if state not in ("Z", "X"):
            left += 1
    return left


def _all_gone(pid: int, timeout: float) -> bool:
    """Whether every thread of ``pid`` ends within ``timeout``. A thread the
    daemon was starting as it was killed is listed a moment after the
    others are gone (and then ends at once): gone means none left at two
    looks 50 ms apart."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _threads_left(pid):
            time.sleep(0.05)
            if not _threads_left(pid):
                return True
        time.sleep(0.01)
    return False


def _abort_connection(mountpoint: str) -> None:
    """Cleanup for a stuck mount: abort its FUSE connection through fusectl
    (mounted for the purpose if it is not, and unmounted again)."""
    device = mount_device(mountpoint)
    connections = "/sys/fs/fuse/connections"
    if device is None:
        return
    mounted_here = not os.listdir(connections) and subprocess.run(
        ["mount", "-t", "fusectl", "none", connections]).returncode == 0
    try:
        path = os.path.join(connections, device.split(":")[1], "abort")
        if os.path.exists(path):
            with open(path, "w") as f:
                f.write("1")
    finally:
        if mounted_here:
            subprocess.run(["umount", connections])


def test_a_daemon_killed_as_it_reports_ready_leaves_no_thread_behind(tmp_path):
    archive = build_archive("zip", tmp_path)
    stuck = []
    for i in range(ROUNDS):
        point = tmp_path / ("mnt%d" % i)
        point.mkdir()
        m = archfs.mount(archive, point, ro=(i % 2 == 1))
        os.kill(m.pid, signal.SIGKILL)
        if not _all_gone(m.pid, 10):
            stuck.append(i)
            _abort_connection(str(point))
        try:
            m.unmount()            # cleans up after a killed daemon (test_api checks how)
        except Exception:
            pass
        deadline = time.monotonic() + 10
        while is_mounted(point) and time.monotonic() < deadline:
            subprocess.run(["fusermount3", "-u", "-z", str(point)], capture_output=True)
            if is_mounted(point):
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
            time.sleep(0.05)
        assert not is_mounted(point), "%s is still mounted" % point
    assert not stuck, "daemons killed in rounds %s kept threads waiting on their own mount" % stuck
