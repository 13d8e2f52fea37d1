"""Read-only mounts serve files without OPEN (``llfiles``: no_open).

The kernel opens files without asking and keeps their pages across opens;
a small member is decoded at its first READ, larger ones read through a
kept reader. What must hold: every byte read, by read, pread or mmap, is the
member's; the daemon served no OPEN, RELEASE or FLUSH beyond the first of
each (its closing log line counts them) and each small file at most once; a
member that cannot be read fails read(2) with EIO; archives with encrypted
members keep OPEN, so a wrong password is still refused at open(2);
read-write mounts are unchanged.
"""

import errno
import io
import mmap
import os
import re
import tarfile
import zipfile

import pytest

import hostile_archives as hostile
from archfs.mount import fusell, lowlevel
from archfs.zipengine.memberreader import SMALL_MEMBER

pytestmark = pytest.mark.skipif(
    not lowlevel.available() or fusell.notify_store is None,
    reason="needs libfuse 3's low-level API with notify_store")


def _small(i: int) -> bytes:
    return ("member %d: pages put into the kernel at open\n" % i).encode() * (3 + i % 50)


def _served_reads(log: str) -> int:
    found = re.findall(r"served reads=(\d+)", log)
    assert found, "no closing statistics in the log:\n" + log
    return int(found[-1])


def _file_requests(log: str) -> dict:
    """The binding's closing count of file requests, and whether it served
    files without open."""
    found = re.findall(r"file requests: (.*)", log)
    assert found, "no file request counts in the log:\n" + log
    line = found[-1]
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    counts["no_open"] = "served without open" in line
    return counts


def test_small_members_are_read_without_open_requests(tmp_path, mounter):
    archive = tmp_path / "small.zip"
    members = {"d%d/f%03d.txt" % (i % 4, i): _small(i) for i in range(60)}
    members["stored.txt"] = b"stored, not compressed\n" * 30
    members["empty.txt"] = b""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data, zipfile.ZIP_STORED if name == "stored.txt"
                        else zipfile.ZIP_DEFLATED)
    m = mounter(archive, "ro")
    for name, data in members.items():
        path = m.path / name
        assert path.read_bytes() == data
        fd = os.open(path, os.O_RDONLY)
        try:
            # a second open while one is held: the same bytes, from the cache
            assert (m.path / name).read_bytes() == data
            assert os.pread(fd, 17, 5) == data[5:22]
            assert os.pread(fd, 10, len(data)) == b""
            if data:
                with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as mapped:
                    assert mapped[:] == data
        finally:
            os.close(fd)
    m.unmount()
    counts = _file_requests(m.log())
    assert counts["no_open"]
    # the first open is answered ENOSYS, and the first close's flush: then
    # the kernel asks no more; no release at all
    assert counts["open"] <= 1 and counts["flush"] <= 1 and counts["release"] == 0
    # each non-empty file is fetched once, its pages kept across opens
    assert 0 < counts["read"] <= len([d for d in members.values() if d])


def test_larger_members_still_read_through_requests(tmp_path, mounter):
    archive = tmp_path / "big.zip"
    big = b"".join(b"%08d the larger member\n" % i for i in range(SMALL_MEMBER // 16))
    assert len(big) > SMALL_MEMBER
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.txt", big)
        zf.writestr("small.txt", _small(1))
        zf.writestr("big2.txt", big[::-1])
    m = mounter(archive, "ro")
    assert (m.path / "big.txt").read_bytes() == big
    assert (m.path / "small.txt").read_bytes() == _small(1)
    # two big members read in turn, forwards and at random offsets, through
    # the readers kept by inode (no handle comes with a READ)
    with open(m.path / "big.txt", "rb", buffering=0) as one, \
            open(m.path / "big2.txt", "rb", buffering=0) as two:
        for offset in (0, 700_001, 65_536 * 3 + 17, len(big) - 100, 12):
            assert os.pread(two.fileno(), 5000, offset) == big[::-1][offset:offset + 5000]
            assert os.pread(one.fileno(), 5000, offset) == big[offset:offset + 5000]
    m.unmount()
    assert _served_reads(m.log()) > 0
    assert _file_requests(m.log())["no_open"]


def test_more_big_members_read_at_once_than_readers_kept(tmp_path, mounter):
    """Readers kept by inode are few (``UNOPENED_READERS``): reading more big
    members in turn evicts and reopens them, and every byte stays right."""
    from archfs.mount.llfiles import UNOPENED_READERS
    archive = tmp_path / "many-big.zip"
    count = UNOPENED_READERS + 2
    body = b"".join(b"%08d in a big member\n" % i for i in range(SMALL_MEMBER // 7))
    bigs = {"big%d.txt" % i: (b"member %d\n" % i) + body for i in range(count)}
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in bigs.items():
            zf.writestr(name, data)
    m = mounter(archive, "ro")
    files = {name: os.open(m.path / name, os.O_RDONLY) for name in bigs}
    try:
        for offset in (0, 2_500_000, 1_300_000, 100_000):   # not all in one readahead
            for name, fd in files.items():     # round robin: each read evicts a reader
                assert os.pread(fd, 3000, offset) == bigs[name][offset:offset + 3000]
    finally:
        for fd in files.values():
            os.close(fd)
    m.unmount()
    assert _file_requests(m.log())["no_open"]


def test_members_that_cannot_be_read_fail_at_read(tmp_path, mounter):
    # a damaged deflated member: its CRC no longer matches
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("good.txt", _small(2))
        zf.writestr("bad.txt", _small(3))
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("bad.txt")
    raw = bytearray(archive.read_bytes())
    header = info.header_offset
    name_len, extra_len = int.from_bytes(raw[header + 26:header + 28], "little"), \
        int.from_bytes(raw[header + 28:header + 30], "little")
    data_at = header + 30 + name_len + extra_len
    raw[data_at + info.compress_size - 1] ^= 0x5A
    archive.write_bytes(bytes(raw))
    m = mounter(archive, "ro")
    for _ in range(2):      # the second read knows the verdict already
        # the kernel opens without asking: the error comes at read(2), as
        # from a disk with a bad sector, and is never cached as content
        fd = os.open(m.path / "bad.txt", os.O_RDONLY)
        try:
            with pytest.raises(OSError) as exc:
                os.read(fd, 4096)
            assert exc.value.errno == errno.EIO
        finally:
            os.close(fd)
    assert (m.path / "good.txt").read_bytes() == _small(2)
    m.unmount()
    assert _file_requests(m.log())["no_open"]


def test_encrypted_archives_keep_open_so_a_wrong_password_fails_there(tmp_path, mounter):
    case = hostile.make_zipcrypto(tmp_path)
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    m = mounter(case.path, "ro", "password_file=%s" % wrong)
    for name in case.good:
        for _ in range(2):
            with pytest.raises(PermissionError):
                os.open(m.path / name, os.O_RDONLY)
    m.unmount()
    counts = _file_requests(m.log())
    assert not counts["no_open"] and counts["open"] >= 2 * len(case.good)

    right = tmp_path / "right"
    right.write_text(hostile.PASSWORD + "\n")
    m = mounter(case.path, "ro", "password_file=%s" % right)
    for name, data in case.good.items():
        assert (m.path / name).read_bytes() == data
    m.unmount()
    counts = _file_requests(m.log())
    assert not counts["no_open"] and counts["release"] == counts["open"] == len(case.good)


def test_read_write_mounts_still_open_and_release(tmp_path, mounter):
    archive = tmp_path / "rw.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(5):
            zf.writestr("f%d.txt" % i, _small(i))
    m = mounter(archive)
    for i in range(5):
        assert (m.path / ("f%d.txt" % i)).read_bytes() == _small(i)
    m.unmount()
    counts = _file_requests(m.log())
    assert not counts["no_open"]
    assert counts["open"] == counts["release"] == 5


def test_a_read_only_tar_mount_reads_without_open(tmp_path, mounter):
    """The tar plugin has no whole-content shortcut: READs go through
    readers kept by inode."""
    source = {"a/%d.txt" % i: _small(i) * (1 + 400 * (i % 2)) for i in range(8)}
    archive = tmp_path / "t.tar"
    with tarfile.open(archive, "w") as tf:
        for name, data in source.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    m = mounter(archive, "ro")
    for _ in range(2):
        for name, data in source.items():
            assert (m.path / name).read_bytes() == data
    m.unmount()
    counts = _file_requests(m.log())
    assert counts["no_open"] and counts["release"] == 0


def test_a_plugin_without_xattrs_tells_the_kernel_once(tmp_path, mounter):
    """getxattr answers ENOSYS where the plugin keeps no extended attributes,
    so the kernel stops asking (it asks before the first write to every
    file otherwise); users see EOPNOTSUPP, listxattr an empty list, also
    for a file written but not copied back yet."""
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("old.txt", b"old\n")
    m = mounter(archive, "commit_interval=60")
    (m.path / "new.txt").write_bytes(b"new\n")
    for name in ("old.txt", "new.txt"):
        with pytest.raises(OSError) as exc:
            os.getxattr(m.path / name, "user.comment")
        assert exc.value.errno == errno.EOPNOTSUPP
        assert os.listxattr(m.path / name) == []
    with pytest.raises(FileNotFoundError):
        os.listxattr(m.path / "missing.txt")
    assert (m.path / "new.txt").read_bytes() == b"new\n"
    m.unmount()
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("new.txt") == b"new\n"
