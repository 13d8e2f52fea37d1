"""FIFOs and device nodes made through a tar mount are stored as tar types
6, 3 and 4 (with the device numbers): GNU tar, bsdtar and Python's tarfile
read them back, a remount shows them; a socket is refused (tar has no type
for it) and nothing else changes."""

import errno
import os
import stat
import subprocess
import tarfile

import pytest

DEVICE = os.makedev(1, 3)         # like /dev/null


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_mkfifo_and_mknod_through_a_mount(tmp_path, mounter, suffix):
    archive = tmp_path / ("specials" + suffix)
    mount = mounter(archive, kind="tar")
    os.mkfifo(mount.path / "pipe", 0o640)
    (mount.path / "dev").mkdir()
    if os.geteuid() == 0:
        os.mknod(mount.path / "dev" / "null", 0o666 | stat.S_IFCHR, DEVICE)
        os.mknod(mount.path / "dev" / "block", 0o600 | stat.S_IFBLK, os.makedev(7, 1))
    with pytest.raises(OSError) as refused:
        os.mknod(mount.path / "sock", 0o600 | stat.S_IFSOCK)
    assert refused.value.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)
    assert not os.path.lexists(mount.path / "sock")
    st = os.lstat(mount.path / "pipe")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    os.chmod(mount.path / "pipe", 0o600)           # a new header for a FIFO too
    mount.unmount()

    with tarfile.open(archive) as t:
        members = {m.name: m for m in t.getmembers()}
    assert members["pipe"].isfifo() and members["pipe"].mode & 0o777 == 0o600
    listing = subprocess.run(["tar", "-tvf", str(archive)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[-1]: line for line in listing.stdout.splitlines()}
    assert lines["pipe"].startswith("prw-------")
    assert subprocess.run(["bsdtar", "-tvf", str(archive)],
                          capture_output=True).returncode == 0
    out = tmp_path / "x"
    out.mkdir()
    extracted = subprocess.run(["tar", "-xf", str(archive), "-C", str(out)],
                               capture_output=True, text=True)
    assert extracted.returncode == 0, extracted.stderr
    assert stat.S_ISFIFO(os.lstat(out / "pipe").st_mode)
    if os.geteuid() == 0:
        null, block = members["dev/null"], members["dev/block"]
        assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
        assert block.isblk() and (block.devmajor, block.devminor) == (7, 1)
        mask = os.umask(0)
        os.umask(mask)
        assert null.mode & 0o777 == 0o666 & ~mask       # mknod(2) applies the umask
        assert lines["dev/null"].startswith("c")
        got = os.lstat(out / "dev" / "null")
        assert stat.S_ISCHR(got.st_mode) and got.st_rdev == DEVICE

    again = mounter(archive, "ro", kind="tar")
    assert stat.S_ISFIFO(os.lstat(again.path / "pipe").st_mode)
    if os.geteuid() == 0:
        st = os.lstat(again.path / "dev" / "null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == DEVICE
