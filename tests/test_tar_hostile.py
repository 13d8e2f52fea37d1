"""Hostile tars: a one-line refusal or a safe mount, never an escape, a hang,
unbounded memory or wrong bytes."""

import gzip
import io
import os
import tarfile

import pytest

from archfs.archives import open_archive
from archfs.errors import CorruptMemberError, NotAnArchiveError, UnsupportedFeature
from archfs.tarengine import headers as hd


def build(path, members):
    """members: (TarInfo, bytes or None)."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def info(name, kind=tarfile.REGTYPE, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    return ti


def test_dot_dot_and_absolute_names_stay_inside(tmp_path):
    path = build(tmp_path / "h.tar", [
        (info("../../etc/evil"), b"1"), (info("/abs/olute"), b"2"), (info("a/../../b"), b"3"),
        (info("./ok"), b"4")])
    with open_archive(path) as a:
        assert sorted(a.getnames()) == ["a/b", "abs/olute", "etc/evil", "ok"]
        assert a.open("etc/evil").read() == b"1"
        local = a.to_localfile("etc/evil")
        assert os.path.realpath(local).startswith(os.path.realpath(a._scratch()))


def test_member_through_a_symlinked_directory(tmp_path):
    path = build(tmp_path / "s.tar", [
        (info("link", tarfile.SYMTYPE, "/etc"), None), (info("link/passwd"), b"owned")])
    with open_archive(path) as a:
        assert [e[0] for e in a.listdir("")] == ["link"]
        assert a.stat("link").is_dir            # the directory takes the name
        assert a.open("link/passwd").read() == b"owned"
        local = a.to_localfile("link/passwd")
        assert os.path.realpath(local).startswith(os.path.realpath(a._scratch()))


def _header(name: bytes, size: int, typeflag=b"0") -> bytes:
    """A header block; a size over 8 GiB in GNU base-256."""
    header = bytearray(hd.build(name, 0o644, 0, 0, 0, 0, typeflag))
    if size >= 8 ** 11:
        header[124:136] = b"\x80" + size.to_bytes(11, "big")
    else:
        header[124:136] = b"%011o\0" % size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _raw_member(name: bytes, size_field: int, data: bytes, typeflag=b"0") -> bytes:
    return _header(name, size_field, typeflag) + data + bytes(hd.padding(len(data)))


def test_declared_size_beyond_the_file(tmp_path):
    good = _raw_member(b"good", 3, b"abc")
    bad = _raw_member(b"huge", 1 << 40, b"x" * 512)
    path = tmp_path / "b.tar"
    path.write_bytes(good + bad)
    with open_archive(path) as a:
        assert a.open("good").read() == b"abc"
        with pytest.raises(CorruptMemberError):
            a.open("huge")


def test_bad_checksum_stops_the_listing_there(tmp_path):
    one = _raw_member(b"one", 3, b"111")
    two = bytearray(_raw_member(b"two", 3, b"222"))
    two[0:3] = b"TWO"                        # checksum no longer matches
    path = tmp_path / "c.tar"
    path.write_bytes(one + bytes(two) + _raw_member(b"three", 1, b"3") + bytes(1024))
    with open_archive(path) as a:
        assert a.getnames() == ["one"]
        assert a.open("one").read() == b"111"


def test_truncated(tmp_path):
    data = os.urandom(100_000)
    full = tmp_path / "full.tar"
    build(full, [(info("first"), b"first"), (info("big"), data)])
    cut = tmp_path / "cut.tar"
    cut.write_bytes(full.read_bytes()[:60_000])
    with open_archive(cut) as a:
        assert a.open("first").read() == b"first"
        with pytest.raises(CorruptMemberError):
            a.open("big").read()
    cutgz = tmp_path / "cut.tar.gz"
    cutgz.write_bytes(gzip.compress(full.read_bytes())[:30_000])
    with open_archive(cutgz) as a:
        assert a.open("first").read() == b"first"
        with pytest.raises(CorruptMemberError):
            a.open("big").read()


def test_oversized_extended_headers(tmp_path):
    pax = _header(b"././@PaxHeader", 1 << 33, b"x")
    path = tmp_path / "p.tar"
    path.write_bytes(_raw_member(b"before", 1, b"b") + pax + bytes(4096))
    with open_archive(path) as a:
        assert a.getnames() == ["before"]
    longname = _header(b"././@LongLink", 1 << 30, b"L")
    path.write_bytes(_raw_member(b"before", 1, b"b") + longname + bytes(4096))
    with open_archive(path) as a:
        assert a.getnames() == ["before"]


def test_endless_sparse_map(tmp_path):
    header = bytearray(hd.build(b"sparse", 0o644, 0, 0, 0, 0, b"S"))
    header[482] = 1                         # "more sparse map blocks follow"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    extension = bytearray(512)
    for i in range(21):
        extension[24 * i:24 * i + 12] = b"%011o\0" % (i * 10)
        extension[24 * i + 12:24 * i + 24] = b"%011o\0" % 1
    extension[504] = 1                      # ... and more, for ever
    path = tmp_path / "sp.tar"
    with open(path, "wb") as f:
        f.write(_raw_member(b"before", 1, b"b") + bytes(header))
        for _ in range(60_000):             # 1.26 million entries: over the limit
            f.write(bytes(extension))
    with open_archive(path) as a:
        assert a.getnames() == ["before"]


def test_multivolume_refused(tmp_path):
    path = tmp_path / "m.tar"
    path.write_bytes(_raw_member(b"cont", 1, b"x", typeflag=b"M") + bytes(1024))
    with pytest.raises(UnsupportedFeature, match="multi-volume"):
        open_archive(path)


def test_not_a_tar(tmp_path):
    path = tmp_path / "junk.tar"
    path.write_bytes(os.urandom(4096))
    with pytest.raises((NotAnArchiveError, OSError)):
        open_archive(path)
    gz = tmp_path / "junk.tar.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(2000))
    with pytest.raises(OSError):
        with open_archive(gz) as a:
            a.getnames()


def test_decompression_bomb_reads_in_bounded_memory(tmp_path):
    import resource
    path = tmp_path / "bomb.tar.gz"
    size = 256 << 20
    with gzip.open(path, "wb", compresslevel=1) as f, tarfile.open(fileobj=f, mode="w") as tf:
        ti = tarfile.TarInfo("zeros")
        ti.size = size

        class Zeros(io.RawIOBase):
            left = size

            def readinto(self, b):
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n
        tf.addfile(ti, Zeros())
    assert path.stat().st_size < size // 100
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open_archive(path) as a, a.open("zeros") as member:
        total = 0
        while True:
            chunk = member.read(1 << 20)
            if not chunk:
                break
            assert not chunk.strip(b"\0")
            total += len(chunk)
    assert total == size
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    assert grown < 96 << 20
