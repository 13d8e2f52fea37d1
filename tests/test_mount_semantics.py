"""What a mount promises beyond the tools: read-your-writes, durability at
fsync, at the commit interval and at unmount or a signal, errno, caching."""

import errno
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from archfs.mount import statefiles
from mount_fixtures import SAMPLE, build_archive, check_zip, extract, is_mounted, run

NEVER = "commit_interval=3600"  # nothing reaches the archive unless forced


def stored(kind, archive, name):
    """The content the archive file on disk holds for ``name``, or None."""
    if kind == "dir":
        path = Path(archive) / name
        return path.read_bytes() if path.exists() else None
    with zipfile.ZipFile(archive) as zf:
        return zf.read(name) if name in zf.namelist() else None


def wait_until(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_read_your_writes_before_copy_back(kind, sample, mounter, tmp_path):
    m = mounter(sample, NEVER, kind=kind)
    with open(m / "photos/new.txt", "wb") as f:
        f.write(b"written just now\n")
    with open(m / "readme.txt", "r+b") as f:  # overwrite the start of a member
        f.write(b"AN")
    # another process, right after close(2): sees the new content and size
    assert run(["cat", m / "photos/new.txt"]).stdout == "written just now\n"
    assert run(["cat", m / "readme.txt"]).stdout == "AN archive mounted as a folder\n"
    assert run(["stat", "-c", "%s", m / "photos/new.txt"]).stdout.strip() == "17"
    assert "new.txt" in run(["ls", m / "photos"]).stdout
    # ... while the archive on disk does not have it yet
    assert stored(kind, sample, "photos/new.txt") is None
    assert stored(kind, sample, "readme.txt") == SAMPLE["readme.txt"]
    m.unmount()
    assert stored(kind, sample, "photos/new.txt") == b"written just now\n"
    assert stored(kind, sample, "readme.txt") == b"AN archive mounted as a folder\n"


def test_fsync_commits_to_the_archive_on_disk(kind, sample, mounter):
    m = mounter(sample, NEVER, kind=kind)
    with open(m / "data/synced.bin", "wb") as f:
        f.write(b"durable" * 1000)
        os.fsync(f.fileno())
        if kind == "zip":
            check_zip(sample)  # a valid archive while the file is still open
        assert stored(kind, sample, "data/synced.bin") == b"durable" * 1000
        f.write(b"+more")
    m.unmount()
    assert stored(kind, sample, "data/synced.bin") == b"durable" * 1000 + b"+more"


def test_closed_files_are_committed_within_the_interval(kind, sample, mounter):
    m = mounter(sample, "commit_interval=0.2", kind=kind)
    for i in range(20):
        (m / ("batch-%d.txt" % i)).write_bytes(b"%d\n" % i)
    assert wait_until(lambda: all(stored(kind, sample, "batch-%d.txt" % i) == b"%d\n" % i
                                  for i in range(20)))
    if kind == "zip":
        check_zip(sample)
    m.unmount()
    commits = int(re.search(r"commits=(\d+)", m.log()).group(1))
    assert 1 <= commits < 20  # batched, not one commit per file


def test_commit_interval_zero_commits_at_every_release(kind, sample, mounter):
    m = mounter(sample, "commit_interval=0", kind=kind)
    (m / "now.txt").write_bytes(b"at once\n")
    assert wait_until(lambda: stored(kind, sample, "now.txt") == b"at once\n")
    m.unmount()


def test_unmount_commits_everything(kind, sample, mounter, tmp_path):
    m = mounter(sample, NEVER, kind=kind)
    for i in range(200):
        (m / ("many/%03d.txt" % i)).parent.mkdir(exist_ok=True)
        (m / ("many/%03d.txt" % i)).write_bytes(b"file %d\n" % i)
    m.unmount()
    root = extract(kind, sample, tmp_path)
    assert sorted(os.listdir(root / "many")) == ["%03d.txt" % i for i in range(200)]
    assert (root / "many/199.txt").read_bytes() == b"file 199\n"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_commits_and_unmounts(kind, sample, mounter, signum):
    m = mounter(sample, NEVER, kind=kind)
    (m / "before-signal.txt").write_bytes(b"keep me\n")
    os.kill(m.pid, signum)
    assert wait_until(lambda: not m.daemon_running())
    m.unmounted = True
    assert not is_mounted(m.path)
    ending = statefiles.pop_exit(os.path.realpath(m.path), m.pid)
    assert ending is not None and ending["status"] == 0, ending
    assert stored(kind, sample, "before-signal.txt") == b"keep me\n"
    if kind == "zip":
        check_zip(sample)


def test_errno_a_user_expects(sample_mount):
    m = sample_mount
    cases = [
        (errno.ENOENT, lambda: open(m / "missing.txt", "rb")),
        (errno.EEXIST, lambda: os.mkdir(m / "photos")),
        (errno.EEXIST, lambda: os.open(m / "readme.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY)),
        (errno.EISDIR, lambda: open(m / "photos", "wb")),
        (errno.ENOTDIR, lambda: os.listdir(m / "readme.txt")),
        (errno.ENOTDIR, lambda: open(m / "readme.txt/inner", "rb")),
        (errno.ENOTEMPTY, lambda: os.rmdir(m / "photos")),
        (errno.EISDIR, lambda: os.rename(m / "readme.txt", m / "emptydir")),
        (errno.ENOTDIR, lambda: os.rename(m / "emptydir", m / "readme.txt")),
        (errno.ENOTEMPTY, lambda: os.rename(m / "emptydir", m / "photos")),
        (errno.EINVAL, lambda: os.rename(m / "photos", m / "photos/2024/inside")),
    ]
    for expected, action in cases:
        with pytest.raises(OSError) as caught:
            action()
        assert caught.value.errno == expected, (expected, caught.value)


def test_read_only_mount_answers_erofs(kind, sample, mounter):
    m = mounter(sample, "ro", kind=kind)
    assert (m / "readme.txt").read_bytes() == SAMPLE["readme.txt"]
    for action in (lambda: open(m / "new.txt", "wb"), lambda: open(m / "readme.txt", "r+b"),
                   lambda: os.mkdir(m / "d"), lambda: os.unlink(m / "readme.txt"),
                   lambda: os.chmod(m / "readme.txt", 0o600)):
        with pytest.raises(OSError) as caught:
            action()
        assert caught.value.errno == errno.EROFS
    m.unmount()
    assert stored(kind, sample, "readme.txt") == SAMPLE["readme.txt"]


def test_corrupt_member_reads_as_eio_and_is_logged(tmp_path, mounter):
    archive = tmp_path / "corrupt.zip"
    payload = b"0123456789" * 1000
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("good.txt", b"fine\n")
        zf.writestr("bad.bin", payload)
    raw = bytearray(archive.read_bytes())
    at = raw.index(payload)
    raw[at + 5000] ^= 0xFF  # damage the data, not the headers: the CRC no longer fits
    archive.write_bytes(bytes(raw))
    m = mounter(archive, "ro", kind="zip")
    assert (m / "good.txt").read_bytes() == b"fine\n"
    with pytest.raises(OSError) as caught:
        (m / "bad.bin").read_bytes()
    assert caught.value.errno == errno.EIO
    m.unmount()
    assert re.search(r"ERROR .*bad\.bin", m.log())


def test_no_space_left_shows_at_write(kind, tmp_path, mounter):
    """The local copies live beside the archive, so a full disk is ENOSPC at write(2)."""
    small = tmp_path / "small"
    small.mkdir()
    result = run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", small], check=False)
    if result.returncode != 0:
        pytest.skip("needs permission to mount a small tmpfs (root): %s" % result.stderr.strip())
    m = None
    try:
        archive = build_archive(kind, small, {"a.txt": b"a\n"}, (), None)
        m = mounter(archive, kind=kind)
        with pytest.raises(OSError) as caught:
            with open(m / "big.bin", "wb") as f:
                for _ in range(64):
                    f.write(os.urandom(64 * 1024))
                    f.flush()
        assert caught.value.errno == errno.ENOSPC
        os.unlink(m / "big.bin")
        (m / "b.txt").write_bytes(b"still works\n")
        m.unmount()
        assert stored(kind, archive, "b.txt") == b"still works\n"
        if kind == "zip":
            check_zip(archive)
    finally:
        if m is not None and not m.unmounted:
            m.unmount()
        run(["umount", "-l", small], check=False)


def test_second_read_is_served_by_the_kernel_cache(kind, sample, mounter):
    m = mounter(sample, kind=kind)
    name = "photos/2024/snow.jpg"
    for _ in range(3):
        assert (m / name).read_bytes() == SAMPLE[name]
    # a change must not be hidden by the cache: same size, new bytes
    changed = bytes(b ^ 0xFF for b in SAMPLE[name])
    with open(m / name, "r+b") as f:
        f.write(changed)
    assert run(["cat", m / name], text=False).stdout == changed
    m.unmount()
    reads = int(re.search(r"read_bytes=(\d+)", m.log()).group(1))
    # the first read and the read after the change; the two repeats cost nothing
    assert reads == 2 * len(SAMPLE[name])


def test_unlinked_open_file_keeps_working(sample_mount, kind, tmp_path):
    m = sample_mount
    with open(m / "photos/2024/snow.jpg", "rb") as reader, open(m / "scratch.txt", "w+b") as w:
        w.write(b"temporary")
        os.unlink(m / "photos/2024/snow.jpg")
        os.unlink(m / "scratch.txt")
        assert reader.read() == SAMPLE["photos/2024/snow.jpg"]
        w.seek(0)
        assert w.read() == b"temporary"
        run(["rm", "-r", m / "photos"])  # nothing hidden keeps the directory busy
    assert sorted(os.listdir(m.path)) == ["data", "emptydir", "latest", "readme.txt"]
    m.unmount()
    tree = set(os.listdir(extract(kind, m.archive, tmp_path)))
    assert tree == {"data", "emptydir", "latest", "readme.txt"}


def test_rename_while_open_for_writing(sample_mount, kind, tmp_path):
    m = sample_mount
    with open(m / "draft.txt", "wb") as f:
        f.write(b"first half, ")
        f.flush()
        os.rename(m / "draft.txt", m / "data/final.txt")
        f.write(b"second half")
    assert (m / "data/final.txt").read_bytes() == b"first half, second half"
    assert not (m / "draft.txt").exists()
    run(["mv", "-n", m / "readme.txt", m / "data/final.txt"])  # no clobbering
    assert (m / "data/final.txt").read_bytes() == b"first half, second half"
    m.unmount()
    root = extract(kind, m.archive, tmp_path)
    assert (root / "data/final.txt").read_bytes() == b"first half, second half"
    assert not (root / "draft.txt").exists()


def test_opening_for_write_without_truncation_keeps_content(sample_mount, kind, tmp_path):
    m = sample_mount
    with open(m / "data/numbers.bin", "r+b") as f:
        f.seek(100)
        f.write(b"XYZ")
    expected = bytearray(SAMPLE["data/numbers.bin"])
    expected[100:103] = b"XYZ"
    with open(m / "readme.txt", "ab"):
        pass  # opened for writing, nothing written: nothing changes
    assert (m / "data/numbers.bin").read_bytes() == bytes(expected)
    m.unmount()
    root = extract(kind, m.archive, tmp_path)
    assert (root / "data/numbers.bin").read_bytes() == bytes(expected)
    assert (root / "readme.txt").read_bytes() == SAMPLE["readme.txt"]


def test_foreground_mount_runs_until_unmounted(kind, sample, tmp_path):
    point = tmp_path / "fg"
    point.mkdir()
    daemon = subprocess.Popen([sys.executable, "-m", "archfs", "mount", "-f", str(sample),
                               str(point)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: is_mounted(point) or daemon.poll() is not None)
        assert daemon.poll() is None, daemon.communicate()
        (point / "fg.txt").write_bytes(b"foreground\n")
        run([sys.executable, "-m", "archfs", "unmount", point])
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            run(["fusermount3", "-u", "-z", point], check=False)
            daemon.wait(timeout=30)
    assert stored(kind, sample, "fg.txt") == b"foreground\n"
    assert "mounted" in daemon.stderr.read()


def test_copy_back_failure_is_reported_and_nothing_is_lost(kind, tmp_path, mounter):
    """The archive's disk is full but the local copies are elsewhere: fsync
    says ENOSPC, unmount fails with one line naming where the content is."""
    small = tmp_path / "small"
    small.mkdir()
    result = run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", small], check=False)
    if result.returncode != 0:
        pytest.skip("needs permission to mount a small tmpfs (root): %s" % result.stderr.strip())
    payload = os.urandom(600 * 1024)
    try:
        archive = build_archive(kind, small, {"a.txt": b"a\n"}, (), None)
        m = mounter(archive, "tmpdir=%s" % (tmp_path / "scratch"), kind=kind)
        (m / "big.bin").write_bytes(payload)
        (m / "small.txt").write_bytes(b"fits\n")
        fd = os.open(m / "big.bin", os.O_RDONLY)
        try:
            with pytest.raises(OSError) as caught:
                os.fsync(fd)
            assert caught.value.errno == errno.ENOSPC
        finally:
            os.close(fd)
        m.unmounted = True
        ending = run([sys.executable, "-m", "archfs", "unmount", m.path], check=False)
        assert ending.returncode == 3 and not is_mounted(m.path)   # archive problem
        line = ending.stderr.strip()
        assert len(line.splitlines()) == 1 and "big.bin" in line and "kept in" in line
        places = line.split("kept in ", 1)[1].split(", ")
        found = [p for place in places for p in Path(place).rglob("*")
                 if p.is_file() and p.read_bytes() == payload]
        assert found, "the unsaved content is not where the message says"
        assert stored(kind, archive, "small.txt") == b"fits\n"
        if kind == "zip":
            check_zip(archive)
    finally:
        run(["umount", "-l", small], check=False)


def test_writers_of_one_path_share_its_content(sample_mount, kind, tmp_path):
    m = sample_mount
    path = m / "data/numbers.bin"
    reader = open(path, "rb")  # opened before any write: must see the writes too
    try:
        first = os.open(path, os.O_WRONLY)
        second = os.open(path, os.O_RDWR)
        os.pwrite(first, b"AAAA", 0)
        os.pwrite(second, b"BBBB", 8)
        assert os.pread(second, 12, 0) == b"AAAA" + SAMPLE["data/numbers.bin"][4:8] + b"BBBB"
        os.ftruncate(second, 16)  # truncate through an open file
        os.close(first)
        assert reader.read() == (b"AAAA" + SAMPLE["data/numbers.bin"][4:8] + b"BBBB"
                                 + SAMPLE["data/numbers.bin"][12:16])
        os.close(second)
    finally:
        reader.close()
    assert os.stat(path).st_size == 16
    m.unmount()
    root = extract(kind, m.archive, tmp_path)
    assert (root / "data/numbers.bin").read_bytes() == (
        b"AAAA" + SAMPLE["data/numbers.bin"][4:8] + b"BBBB" + SAMPLE["data/numbers.bin"][12:16])


def test_parallel_writers_of_different_files(empty_mount, kind, tmp_path):
    import threading
    m = empty_mount
    contents = {"w%02d/file.bin" % i: os.urandom(150_000 + i) for i in range(12)}
    errors = []

    def writer(name, data):
        try:
            (m / name).parent.mkdir()
            with open(m / name, "wb") as f:
                for start in range(0, len(data), 10_000):
                    f.write(data[start:start + 10_000])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=item) for item in contents.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert all((m / name).read_bytes() == data for name, data in contents.items())
    m.unmount()
    root = extract(kind, m.archive, tmp_path)
    assert {name: (root / name).read_bytes() for name in contents} == contents
