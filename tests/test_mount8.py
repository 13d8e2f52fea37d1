"""The real mount(8): ``mount -t fuse.archfs`` and an fstab line, through
mount.fuse3, then ``umount`` (which does not wait for the commit) followed
by ``archfs unmount`` (which does).

mount(8) runs helpers with a clean PATH (the shell's default), so archfs is
put where the README says to put it: a symlink in /usr/local/sbin, first on
that PATH, for the length of a test (root only, like mount(8) without
fstab's ``user``). A lock keeps two checkouts' test runs from using the
symlink at once. Every mount is undone, also when a test fails.
"""

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import time
import zipfile
from pathlib import Path

import pytest

from archfs.mount import statefiles
from mount_fixtures import archfs, build_archive, check_zip, is_mounted, run

SYSTEM_DIR = Path("/usr/local/sbin")   # first in the shell's default PATH
LOCK = Path("/tmp/archfs-mount8-test.lock")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                                reason="mount(8) of a FUSE filesystem without fstab needs root")


@contextlib.contextmanager
def archfs_on_system_path():
    script = Path(sys.executable).with_name("archfs")
    assert script.exists(), "the archfs console script is missing beside %s" % sys.executable
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made_dir = not SYSTEM_DIR.exists()
        SYSTEM_DIR.mkdir(parents=True, exist_ok=True)
        link = SYSTEM_DIR / "archfs"
        if link.is_symlink() and not link.exists():
            link.unlink()               # left by a killed run of this test
        if link.exists() or link.is_symlink():
            pytest.fail("%s exists and is not this test's; remove it to run the mount(8) "
                        "tests" % link)
        os.symlink(script, link)
        try:
            yield
        finally:
            link.unlink()
            if made_dir:
                SYSTEM_DIR.rmdir()


def mount_flags(point):
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == str(Path(point).resolve()):
                return fields[2], set(fields[3].split(","))
    return None, set()


def wait_for_daemon_end(pid, start_time, timeout=60):
    deadline = time.monotonic() + timeout
    while statefiles.process_running(pid, start_time):
        assert time.monotonic() < deadline, "the daemon did not end after umount"
        time.sleep(0.02)


@contextlib.contextmanager
def undone(point):
    """Whatever happens, nothing stays mounted on ``point``."""
    try:
        yield
    finally:
        if is_mounted(point):
            info = statefiles.read_running(os.path.realpath(point)) or {}
            if archfs("unmount", point, timeout=120).returncode != 0:
                run(["umount", "-l", point], check=False)
                pid = info.get("pid")
                if pid and statefiles.process_running(pid, info.get("start_time")):
                    os.kill(pid, signal.SIGKILL)


def test_mount_t_fuse_archfs_read_only(tmp_path):
    archive = build_archive("zip", tmp_path)
    before = archive.read_bytes()
    point = tmp_path / "mnt"
    point.mkdir()
    with archfs_on_system_path(), undone(point):
        result = run(["mount", "-t", "fuse.archfs", archive, point, "-o", "ro,noexec"],
                     check=False)
        assert result.returncode == 0, result.stderr
        fstype, flags = mount_flags(point)
        assert fstype == "fuse.archfs"
        assert {"ro", "noexec", "nosuid", "nodev"} <= flags
        assert (point / "photos/2024/notes.txt").read_bytes() == b"cold\nwhite\n"
        with pytest.raises(OSError):
            (point / "new.txt").write_bytes(b"x")
        info = statefiles.read_running(str(point.resolve()))
        assert run(["umount", point], check=False).returncode == 0
        wait_for_daemon_end(info["pid"], info["start_time"])
        # umount already detached it; archfs unmount reports how the daemon ended
        result = archfs("unmount", point)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    assert archive.read_bytes() == before


def test_fstab_line_read_write_then_umount_and_archfs_unmount(tmp_path):
    archive = build_archive("zip", tmp_path)
    point = tmp_path / "mnt"
    point.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text("# the README's line, with what systemd and archfs add\n"
                     "%s %s fuse.archfs rw,noauto,user,noatime,_netdev,nofail,"
                     "x-systemd.automount,commit_interval=30 0 0\n" % (archive, point))
    payload = os.urandom(300_000)
    with archfs_on_system_path(), undone(point):
        result = run(["mount", "--fstab", fstab, point], check=False)
        assert result.returncode == 0, result.stderr
        fstype, flags = mount_flags(point)
        assert fstype == "fuse.archfs"
        # `user` implies noexec,nosuid,nodev; noatime goes to the kernel
        assert {"rw", "noatime", "noexec", "nosuid", "nodev"} <= flags
        (point / "from-fstab.bin").write_bytes(payload)
        info = statefiles.read_running(str(point.resolve()))
        assert run(["umount", point], check=False).returncode == 0
        assert not is_mounted(point)
        # commit_interval=30: only the daemon's end commits it; archfs unmount
        # waits for that and says how it went
        result = archfs("unmount", point, timeout=120)
        assert result.returncode == 0, result.stderr
        assert not statefiles.process_running(info["pid"], info["start_time"])
    check_zip(archive)
    assert zipfile.ZipFile(archive).read("from-fstab.bin") == payload
