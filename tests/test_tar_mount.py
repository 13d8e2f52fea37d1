"""Tar archives through a real mount: the FUSE layer stays format-blind, and
what tar holds beyond files shows as on a disk (hard links, xattrs, FIFOs)."""

import os
import stat
import subprocess
import tarfile
import io

from tar_builders import extract_gnu, gnu_tar, make_source, tree_of


def test_mount_compressed_tar_read_only(tmp_path, mounter):
    source = make_source(tmp_path / "src")
    archive = gnu_tar(source, tmp_path / "t.tar", "posix", ".gz")
    reference = tree_of(extract_gnu(archive, tmp_path / "ref"))
    mount = mounter(archive, "ro", kind="tar")
    assert tree_of(mount.path) == reference
    a, hard = os.stat(mount / "a.txt"), os.stat(mount / "bin" / "hard.txt")
    assert a.st_ino == hard.st_ino and a.st_nlink == hard.st_nlink == 2
    assert a.st_mtime_ns == 1_600_000_000_123_456_789
    assert stat.S_ISFIFO(os.lstat(mount / "fifo").st_mode)
    listed = subprocess.run(["ls", "-i", str(mount.path)], capture_output=True, text=True, check=True)
    assert "a.txt" in listed.stdout and " 0 " not in " " + listed.stdout
    inodes = [int(line.split()[0]) for line in listed.stdout.splitlines()]
    assert len(set(inodes)) == len(inodes)


def test_mount_shows_xattrs(tmp_path, mounter):
    archive = tmp_path / "x.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("f.txt")
        info.size = 3
        info.pax_headers = {"SCHILY.xattr.user.color": "blue"}
        tf.addfile(info, io.BytesIO(b"abc"))
    mount = mounter(archive, "ro", kind="tar")
    assert os.listxattr(mount / "f.txt") == ["user.color"]
    assert os.getxattr(mount / "f.txt", "user.color") == b"blue"
