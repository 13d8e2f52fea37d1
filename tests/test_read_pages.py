"""Read-only mounts hand a small member's content to the kernel at open.

A small member is decoded and checked when it is opened; the low-level
binding then puts it into the kernel's page cache, so reading it needs no
READ request (``lowlevel._push_pages``). What must hold: every byte read,
by read, pread or mmap, is the member's; a member that cannot be read is
still refused at open(2); larger members are read as before; and the daemon
really served no READ for the small ones (its closing log line counts them).
"""

import errno
import mmap
import os
import re
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


def test_small_members_are_read_without_read_requests(tmp_path, mounter):
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
            # a second open while one is held: nothing pushed again, same bytes
            assert (m.path / name).read_bytes() == data
            assert os.pread(fd, 17, 5) == data[5:22]
            assert os.pread(fd, 10, len(data)) == b""
            if data:
                with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as mapped:
                    assert mapped[:] == data
        finally:
            os.close(fd)
    m.unmount()
    assert _served_reads(m.log()) == 0


def test_larger_members_still_read_through_requests(tmp_path, mounter):
    archive = tmp_path / "big.zip"
    big = b"".join(b"%08d the larger member\n" % i for i in range(SMALL_MEMBER // 16))
    assert len(big) > SMALL_MEMBER
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.txt", big)
        zf.writestr("small.txt", _small(1))
    m = mounter(archive, "ro")
    assert (m.path / "big.txt").read_bytes() == big
    assert (m.path / "small.txt").read_bytes() == _small(1)
    m.unmount()
    assert _served_reads(m.log()) > 0


def test_members_that_cannot_be_read_are_still_refused_at_open(tmp_path, mounter):
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
    for _ in range(2):      # the second open knows the verdict already
        with pytest.raises(OSError) as exc:
            os.open(m.path / "bad.txt", os.O_RDONLY)
        assert exc.value.errno == errno.EIO
    assert (m.path / "good.txt").read_bytes() == _small(2)
    m.unmount()

    # an encrypted member with the wrong password
    case = hostile.make_zipcrypto(tmp_path)
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    m = mounter(case.path, "ro", "password_file=%s" % wrong)
    for name in case.good:
        for _ in range(2):
            with pytest.raises(PermissionError):
                os.open(m.path / name, os.O_RDONLY)
    m.unmount()


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
