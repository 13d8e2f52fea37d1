"""POSIX behaviour through real mounts: files open after unlink, names the
archive cannot hold, special files, fallocate, times, link counts, hard
links (issue 9). Owners are in test_mount_owners.py."""

import ctypes
import errno
import os
import stat
import subprocess
import time
import zipfile

import pytest

from mount_fixtures import extract, run

LONG = "n" * 256          # one byte over NAME_MAX
LONGEST = "m" * 255


@pytest.fixture(params=["low", "high"])
def fuse_api(request, monkeypatch):
    """The FUSE binding the mount is served by (archfs/mount/binding.py): a
    file open after unlink takes a different road through each."""
    monkeypatch.setenv("ARCHFS_FUSE_API", request.param)
    return request.param


def test_tmpfile_style_unlink_while_open(fuse_api, empty_mount, kind, tmp_path):
    """open, unlink, then fstat/ftruncate/fchmod/futimens/write/read on the
    descriptor until close, as on a local disk; nothing is left behind."""
    m = empty_mount
    (m / "keep.txt").write_bytes(b"kept\n")
    fd = os.open(m / "tmpfile", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"scratch data")
        os.unlink(m / "tmpfile")
        assert not (m / "tmpfile").exists()
        st = os.fstat(fd)
        assert (st.st_size, st.st_nlink, stat.S_IMODE(st.st_mode)) == (12, 0, 0o600)
        os.ftruncate(fd, 7)
        assert os.fstat(fd).st_size == 7
        os.pwrite(fd, b"!", 7)
        os.fchmod(fd, 0o640)
        os.utime(fd, ns=(1_000_000_000_123, 2_000_000_000_456))
        st = os.fstat(fd)
        assert (st.st_size, stat.S_IMODE(st.st_mode)) == (8, 0o640)
        assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_000_123, 2_000_000_000_456)
        assert os.pread(fd, 100, 0) == b"scratch!"
        assert os.listdir(m.path) == ["keep.txt"]     # the hidden name is not listed
        os.mkdir(m / "sub")
        os.rmdir(m / "sub")
    finally:
        os.close(fd)
    # a file read while it is removed: `exec 7<f; rm f; cat <&7`
    out = run(["sh", "-c", 'exec 7<keep.txt; rm keep.txt; cat <&7; stat -L -c %s /dev/fd/7'],
              cwd=m.path).stdout
    assert out == "kept\n5\n"
    assert os.listdir(m.path) == []
    m.unmount()
    if kind == "zip":
        with zipfile.ZipFile(m.archive) as zf:
            assert zf.namelist() == []
    else:
        assert os.listdir(m.archive) == []


def test_open_file_renamed_over_keeps_its_content(fuse_api, sample_mount, kind, tmp_path):
    m = sample_mount
    with open(m / "readme.txt", "r+b") as old:
        (m / "new.txt").write_bytes(b"replacement\n")
        os.rename(m / "new.txt", m / "readme.txt")
        assert old.read() == b"an archive mounted as a folder\n"
        old.seek(0)
        old.write(b"AN")                       # goes to the replaced file only
        os.fchmod(old.fileno(), 0o600)
        assert os.fstat(old.fileno()).st_nlink == 0
    assert (m / "readme.txt").read_bytes() == b"replacement\n"
    m.unmount()
    root = extract(kind, m.archive, tmp_path)
    assert (root / "readme.txt").read_bytes() == b"replacement\n"
    assert not [n for n in os.listdir(root) if n.startswith(".fuse_hidden")]


def test_unlinked_open_file_in_a_renamed_directory(fuse_api, empty_mount):
    m = empty_mount
    os.mkdir(m / "d")
    fd = os.open(m / "d/f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"abc")
        os.unlink(m / "d/f")
        os.rename(m / "d", m / "e")
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 2)
        st = os.fstat(fd)
        assert (st.st_size, stat.S_IMODE(st.st_mode), st.st_nlink) == (2, 0o600, 0)
        assert os.pread(fd, 10, 0) == b"ab"
        assert os.listdir(m / "e") == []
    finally:
        os.close(fd)
    os.rmdir(m / "e")


def test_a_closed_file_renamed_to_a_hidden_looking_name_is_kept(empty_mount):
    m = empty_mount
    (m / "f").write_bytes(b"kept")
    hidden = ".fuse_hidden000000aa00000001"     # libfuse's spelling, chosen by a user
    os.rename(m / "f", m / hidden)
    assert (m / hidden).read_bytes() == b"kept"
    assert os.listdir(m.path) == [hidden]


def _errno_of(call):
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno


def test_256_byte_name_is_refused_at_every_entry_point(empty_mount, kind, tmp_path):
    m = empty_mount
    (m / "file").write_bytes(b"x")
    (m / "dir").mkdir()
    calls = {
        "create": lambda: os.close(os.open(m / LONG, os.O_CREAT | os.O_WRONLY, 0o644)),
        "mknod": lambda: os.mkfifo(m / LONG),
        "mkdir": lambda: os.mkdir(m / LONG),
        "symlink": lambda: os.symlink("file", m / LONG),
        "link": lambda: os.link(m / "file", m / LONG),
        "rename file": lambda: os.rename(m / "file", m / LONG),
        "rename dir": lambda: os.rename(m / "dir", m / "dir" / ".." / LONG),
        "deep create": lambda: open(m / "dir" / LONG, "wb").close(),
        "stat": lambda: os.stat(m / LONG),
    }
    for what, call in calls.items():
        assert _errno_of(call) == errno.ENAMETOOLONG, what
    # 255 bytes is fine everywhere
    (m / LONGEST).write_bytes(b"longest")
    os.mkdir(m / "dir" / LONGEST)
    assert sorted(os.listdir(m.path)) == sorted(["file", "dir", LONGEST])
    m.unmount()
    root = extract(kind, m.archive, tmp_path)
    assert sorted(os.listdir(root)) == sorted(["file", "dir", LONGEST])
    assert (root / LONGEST).read_bytes() == b"longest"


def test_names_a_zip_cannot_hold_are_refused_at_once_with_the_reason(tmp_path, mounter):
    m = mounter(tmp_path / "names.zip")
    for name in ("back\\slash", b"latin1-\xe9".decode("utf-8", "surrogateescape")):
        path = os.fsencode(m.path) + b"/" + os.fsencode(name)
        assert _errno_of(lambda: open(path, "wb").close()) == errno.EINVAL
        assert _errno_of(lambda: os.mkdir(path)) == errno.EINVAL
    (m / "ok.txt").write_bytes(b"ok")
    assert _errno_of(lambda: os.rename(m / "ok.txt", m / "a\\b")) == errno.EINVAL
    assert os.listdir(m.path) == ["ok.txt"]
    m.unmount()     # nothing is left over that the archive cannot store
    log = m.log()
    assert "backslash reads back as a directory separator" in log
    assert "not valid UTF-8" in log
    with zipfile.ZipFile(m.archive) as zf:
        assert zf.namelist() == ["ok.txt"]


def test_fifo_passes_data_between_two_processes(empty_mount, kind, mounter):
    m = empty_mount
    os.mkfifo(m / "pipe", 0o644)
    os.chmod(m / "pipe", 0o620)
    st = os.lstat(m / "pipe")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    reader = subprocess.Popen(["cat", str(m / "pipe")], stdout=subprocess.PIPE)
    try:
        run(["sh", "-c", 'printf "through the mount\\n" > "$1"', "sh", m / "pipe"], timeout=30)
        out, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert out == b"through the mount\n"
    os.rename(m / "pipe", m / "renamed")
    assert [(e.name, e.is_file()) for e in os.scandir(m.path)] == [("renamed", False)]
    m.unmount()
    again = mounter(m.archive, kind=kind)
    assert stat.S_ISFIFO(os.lstat(again / "renamed").st_mode)
    os.unlink(again / "renamed")
    assert os.listdir(again.path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_device_nodes_keep_type_and_number(empty_mount, kind, mounter):
    m = empty_mount
    os.mknod(m / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(m / "loop", 0o600 | stat.S_IFBLK, os.makedev(7, 300))
    os.mknod(m / "sock", 0o644 | stat.S_IFSOCK)
    with pytest.raises(PermissionError):
        open(m / "null", "rb")          # the mount is nodev: devices never open
    m.unmount()
    again = mounter(m.archive, kind=kind)
    null, loop, sock = (os.lstat(again / n) for n in ("null", "loop", "sock"))
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 300)
    assert stat.S_IMODE(loop.st_mode) == 0o600
    assert stat.S_ISSOCK(sock.st_mode)
    again.unmount()
    if kind == "zip":       # the file type is in the external attributes
        with zipfile.ZipFile(m.archive) as zf:
            kinds = {i.filename: stat.S_IFMT(i.external_attr >> 16) for i in zf.infolist()}
        assert kinds == {"null": stat.S_IFCHR, "loop": stat.S_IFBLK, "sock": stat.S_IFSOCK}


def test_fallocate_grows_with_zeros_and_refuses_other_modes(empty_mount, kind, tmp_path):
    m = empty_mount
    with open(m / "grown", "wb") as f:
        f.write(b"head")
        os.posix_fallocate(f.fileno(), 0, 300_000)      # past the in-memory limit
        os.posix_fallocate(f.fileno(), 10, 20)          # inside: nothing changes
    assert os.stat(m / "grown").st_size == 300_000
    run(["fallocate", "-l", "5000", m / "new"])         # fallocate(1) makes the file
    fd = os.open(m / "new", os.O_RDWR)
    try:   # keep size, punch hole, zero range, collapse range, insert range
        for mode in (0x01, 0x01 | 0x02, 0x10, 0x08, 0x20):
            assert _fallocate(fd, mode, 0, 4096) == errno.EOPNOTSUPP, mode
    finally:
        os.close(fd)
    assert os.stat(m / "new").st_size == 5000
    m.unmount()
    root = extract(kind, m.archive, tmp_path)
    assert (root / "grown").read_bytes() == b"head" + bytes(300_000 - 4)
    assert (root / "new").read_bytes() == bytes(5000)


def _fallocate(fd, mode, offset, length):
    """errno of fallocate(2) with ``mode`` (0 on success)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return 0 if libc.fallocate(fd, mode, offset, length) == 0 else ctypes.get_errno()


def test_atime_ctime_and_directory_link_counts(empty_mount, kind, mounter):
    m = empty_mount
    os.makedirs(m / "top/a")
    os.mkdir(m / "top/b")
    (m / "top/file").write_bytes(b"f")
    assert os.stat(m / "top").st_nlink == 4               # 2 + two subdirectories
    assert os.stat(m.path).st_nlink == 3
    os.utime(m / "top/file", ns=(1_100_000_000_000_000_000, 1_200_000_000_000_000_000))
    before = time.time_ns()
    os.chmod(m / "top/file", 0o600)
    st = os.stat(m / "top/file")
    assert st.st_atime_ns == 1_100_000_000_000_000_000
    assert st.st_mtime_ns == 1_200_000_000_000_000_000
    assert st.st_ctime_ns >= before - 10_000_000           # ctime moved; mtime did not
    dir_before = os.stat(m / "top").st_mtime_ns
    time.sleep(0.01)
    (m / "top/another").write_bytes(b"")
    assert os.stat(m / "top").st_mtime_ns > dir_before     # a new name changes the directory
    m.unmount()
    again = mounter(m.archive, kind=kind)
    st = os.stat(again / "top/file")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_100_000_000_000_000_000,
                                                 1_200_000_000_000_000_000)
    assert os.stat(again / "top").st_nlink == 4
    with open(again / "top/file", "ab") as f:      # a write leaves atime alone
        f.write(b"more")
    st = os.stat(again / "top/file")
    assert st.st_atime_ns == 1_100_000_000_000_000_000
    assert st.st_mtime_ns > 1_200_000_000_000_000_000


def test_hard_links_are_refused_with_eperm(sample_mount, kind):
    m = sample_mount
    assert _errno_of(lambda: os.link(m / "readme.txt", m / "hard")) == errno.EPERM
    assert _errno_of(lambda: os.link(m / "missing", m / "hard")) == errno.ENOENT
    assert _errno_of(lambda: os.link(m / "readme.txt", m / "latest")) == errno.EEXIST
    result = run(["ln", m / "readme.txt", m / "hard"], check=False)
    assert result.returncode == 1 and "Operation not permitted" in result.stderr
    result = run(["cp", "-al", m / "data", m / "copy"], check=False)
    assert result.returncode == 1 and "Operation not permitted" in result.stderr
    assert not (m / "hard").exists()
