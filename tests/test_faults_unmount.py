"""Unmounting while a file is still open for writing.

A plain ``archfs unmount`` is refused with one line (the mount is busy) and
the mount goes on working; a lazy unmount (``fusermount -u -z`` or ``archfs
unmount --lazy``) detaches the name at once, the open file keeps working,
and when it is closed the daemon commits everything and exits cleanly.
"""

import os
import time

import pytest

from archfs.mount import statefiles
from mount_fixtures import archfs, is_mounted, run
from stress import assert_valid_zip, fusermount, one_line_error


def test_plain_unmount_of_a_busy_mount_is_refused(tmp_path, mounter):
    m = mounter(tmp_path / "archive.zip")
    with open(m / "open.txt", "wb") as f:
        f.write(b"first part\n")
        one_line_error(archfs("unmount", m.path), "busy")
        assert is_mounted(m.path)
        f.write(b"second part\n")
    (m / "later.txt").write_bytes(b"the mount still works\n")
    m.unmount()
    assert assert_valid_zip(m.archive) == {"open.txt": b"first part\nsecond part\n",
                                           "later.txt": b"the mount still works\n"}


def _wait_for_exit(m, timeout=60):
    deadline = time.monotonic() + timeout
    while m.daemon_running():
        assert time.monotonic() < deadline, "the daemon did not finish after the last close"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["fusermount", "archfs"])
def test_lazy_unmount_with_a_file_open_for_writing(how, tmp_path, mounter):
    m = mounter(tmp_path / "archive.zip", "commit_interval=1")
    (m / "closed.txt").write_bytes(b"closed before the unmount\n")
    f = open(m / "open.txt", "wb")
    try:
        f.write(b"fsynced|")
        f.flush()
        os.fsync(f.fileno())
        f.write(b"written before the unmount|")
        f.flush()
        if how == "fusermount":
            run([fusermount(), "-u", "-z", m.path])
        else:
            run([*__import__("mount_fixtures").ARCHFS, "unmount", "--lazy", "--timeout", "0.5",
                 m.path], check=False)   # returns (with a timeout) while the file is open
        m.unmounted = True
        assert not is_mounted(m.path)
        assert m.daemon_running()          # still serving the open file
        f.write(b"written after the unmount")
        f.flush()
        os.fsync(f.fileno())
    finally:
        f.close()
    _wait_for_exit(m)
    ending = statefiles.pop_exit(os.path.realpath(m.path), m.pid)
    assert ending is not None and ending.get("status") == 0, (ending, m.log())
    assert assert_valid_zip(m.archive) == {
        "closed.txt": b"closed before the unmount\n",
        "open.txt": b"fsynced|written before the unmount|written after the unmount"}
