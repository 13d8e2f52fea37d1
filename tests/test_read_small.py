"""The whole-content shortcut for small members (``read_small``): the same
bytes and the same checks as a reader opened on them, without the reader."""

import zipfile

import pytest

import archfs
from archfs.errors import CorruptMemberError
from archfs.zipengine.memberreader import SMALL_MEMBER


def test_read_small_gives_what_a_reader_gives(tmp_path):
    path = tmp_path / "a.zip"
    members = {"d/deflated.txt": b"deflated text\n" * 300, "stored.bin": bytes(range(256)) * 9,
               "empty.txt": b""}
    big = b"x%07d\n" % 1 * (SMALL_MEMBER // 9 + 10)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data, zipfile.ZIP_STORED if name == "stored.bin"
                        else zipfile.ZIP_DEFLATED)
        zf.writestr("big.txt", big)
    archive = archfs.open_archive(str(path))
    try:
        for name, data in members.items():
            assert archive.read_small(name) == data
            with archive.open(name) as reader:
                assert reader.read() == data
        assert archive.read_small("big.txt") is None        # a reader is needed
        with pytest.raises(FileNotFoundError):
            archive.read_small("missing.txt")
    finally:
        archive.close()


def test_read_small_reports_damage_and_remembers_it(tmp_path):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bad.txt", b"soon damaged\n" * 100)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("bad.txt")
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    raw[info.header_offset + 30 + name_len + extra_len + info.compress_size - 1] ^= 0x5A
    path.write_bytes(bytes(raw))
    archive = archfs.open_archive(str(path))
    try:
        with pytest.raises(CorruptMemberError):
            archive.read_small("bad.txt")
        with pytest.raises(CorruptMemberError):     # the verdict stands for readers too
            archive.open("bad.txt")
        with pytest.raises(CorruptMemberError):
            archive.read_small("bad.txt")
    finally:
        archive.close()
