"""Reading zip members: every compression method, random and backward
seeks, damage detection, zip64, data descriptors, archive comments and
self-extracting prefixes."""

import errno
import os
import random
import shutil
import struct
import subprocess
import zipfile
import zlib

import pytest

from archfs.engine import fileaccess
from archfs.archives.zipfilearchive import ZipfileArchive
from archfs.errors import CorruptMemberError
from archfs.zipengine import memberreader
from zip_builders import (
    SEVEN_ZIP,
    BZIP2,
    DEFLATED,
    LZMA,
    STORED,
    Entry,
    assert_tools_accept,
    build_many,
    build_sparse_zip64,
    build_zip,
    open_store,
    pseudo_random,
    read_all,
    run,
    write_zip,
    zipfile_contents,
)

METHODS = {"stored": STORED, "deflated": DEFLATED, "bzip2": BZIP2, "lzma": LZMA}


def read_member(store, name) -> bytes:
    with store.open_member(name) as f:
        return f.read()


@pytest.fixture
def count_preads(monkeypatch):
    """Counts the bytes the engine reads from archive files."""
    counter = {"bytes": 0}
    original = fileaccess.ArchiveFile.pread

    def counting(self, size, pos):
        counter["bytes"] += size
        return original(self, size, pos)

    monkeypatch.setattr(fileaccess.ArchiveFile, "pread", counting)
    return counter


# -- methods -------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS.values(), ids=METHODS.keys())
def test_small_members_of_every_method(tmp_path, method):
    members = {"empty": b"", "one": b"x", "text": b"hello zip\n" * 300,
               "binary": pseudo_random(5000, 1)}
    path = write_zip(tmp_path / "m.zip", [Entry(n, d, method) for n, d in members.items()])
    assert zipfile_contents(path) == members            # the builder is right
    store = open_store(path, False)
    assert read_all(store) == members
    for name, data in members.items():
        assert store.stat(name)[1] == len(data)


@pytest.mark.parametrize("method", METHODS.values(), ids=METHODS.keys())
def test_large_member_random_and_backward_seeks(tmp_path, method):
    size = 9 << 20 if method in (STORED, DEFLATED) else (3 << 19)
    data = pseudo_random(size, 7, alphabet=16)
    path = write_zip(tmp_path / "big.zip", [Entry("big", data, method)])
    store = open_store(path, False)
    rng = random.Random(method)
    spacing = memberreader.SEEK_SPACING
    with store.open_member("big") as f:
        assert f.seekable()
        whole = bytearray()
        while True:           # in pieces that do not line up with anything
            piece = f.read(rng.randrange(1, 300_000))
            if not piece:
                break
            whole += piece
        assert bytes(whole) == data
        spots = [(0, 100), (size - 50, 50), (size - 1, 10), (1, 1)]
        spots += [(k * spacing - 777, 2000) for k in range(1, size // spacing + 1)]
        spots += [(rng.randrange(size), rng.randrange(1, 200_000))
                  for _ in range(12 if method in (STORED, DEFLATED) else 2)]
        for offset, length in spots + spots[::-1]:      # forward, then backward
            f.seek(offset)
            assert f.read(length) == data[offset:offset + length], (offset, length)
        f.seek(size)
        assert f.read(10) == b""


def test_stored_member_is_read_in_place(tmp_path, count_preads):
    data = pseudo_random(8 << 20, 3)
    path = write_zip(tmp_path / "s.zip", [Entry("s", data, STORED)])
    store = open_store(path, False)
    with store.open_member("s") as f:
        count_preads["bytes"] = 0
        f.seek(6 << 20)
        assert f.read(4096) == data[6 << 20:(6 << 20) + 4096]
        assert count_preads["bytes"] < 64 << 10     # not the 6 MiB before it


def test_deflated_member_seeks_from_seek_points(tmp_path, count_preads):
    size = 12 << 20
    data = pseudo_random(size, 5, alphabet=16)
    path = write_zip(tmp_path / "d.zip", [Entry("d", data, DEFLATED)])
    csize = zipfile.ZipFile(path).getinfo("d").compress_size
    store = open_store(path, False)
    with store.open_member("d") as f:
        assert f.read() == data                      # lays down the seek points
        for offset in (size - 100_000, 3 << 20, 9 << 20, 1 << 20):
            count_preads["bytes"] = 0
            f.seek(offset)
            assert f.read(1000) == data[offset:offset + 1000]
            # decoding restarts at the nearest seek point, not at the start
            assert count_preads["bytes"] < csize * 0.4, (offset, count_preads["bytes"], csize)


def test_two_readers_of_one_member_do_not_disturb_each_other(tmp_path):
    data = pseudo_random(4 << 20, 9, alphabet=16)
    path = write_zip(tmp_path / "d.zip", [Entry("d", data, DEFLATED)])
    store = open_store(path, False)
    with store.open_member("d") as a, store.open_member("d") as b:
        a.seek(3 << 20)
        b.seek(10)
        assert a.read(1000) == data[3 << 20:(3 << 20) + 1000]
        assert b.read(1000) == data[10:1010]
        assert a.read(1000) == data[(3 << 20) + 1000:(3 << 20) + 2000]


# -- damage -------------------------------------------------------------------------

SMALL = b"small member content " * 40


@pytest.mark.parametrize("method", [STORED, DEFLATED, BZIP2, LZMA], ids=METHODS.keys())
def test_small_member_with_bad_crc_fails_at_open(tmp_path, method):
    path = write_zip(tmp_path / "bad.zip", [Entry("good", b"fine", method),
                                            Entry("bad", SMALL, method, crc=0x12345678)])
    store = open_store(path, False)
    with pytest.raises(CorruptMemberError, match="bad") as info:
        store.open_member("bad")
    assert info.value.errno == errno.EIO
    assert "crc" in str(info.value).lower()
    with pytest.raises(CorruptMemberError):
        store.open_member("bad")                  # again: still refused
    assert read_member(store, "good") == b"fine"  # the others stay readable


@pytest.mark.parametrize("method", [STORED, DEFLATED], ids=["stored", "deflated"])
@pytest.mark.parametrize("recorded", [len(SMALL) + 10, len(SMALL) - 10])
def test_small_member_with_wrong_size_fails_at_open(tmp_path, method, recorded):
    path = write_zip(tmp_path / "bad.zip", [Entry("bad", SMALL, method, usize=recorded)])
    store = open_store(path, False)
    with pytest.raises(CorruptMemberError):
        with store.open_member("bad") as f:
            f.read()


def test_small_member_with_damaged_data_fails_at_open(tmp_path):
    raw = bytearray(build_zip([Entry("d", pseudo_random(20000, 2, alphabet=8), DEFLATED),
                               Entry("s", SMALL, STORED)]))
    raw[30 + 1 + 500] ^= 0xFF                   # inside d's deflate stream
    at = raw.index(b"small member")
    raw[at + 3] ^= 0x01                          # inside s's stored data
    path = tmp_path / "flipped.zip"
    path.write_bytes(bytes(raw))
    store = open_store(path, False)
    for name in ("d", "s"):
        with pytest.raises(CorruptMemberError):
            with store.open_member(name) as f:
                f.read()


@pytest.mark.parametrize("method", [STORED, DEFLATED, BZIP2], ids=["stored", "deflated", "bzip2"])
def test_large_member_with_bad_crc_fails_its_final_read(tmp_path, method):
    data = pseudo_random(3 << (20 if method != BZIP2 else 19), 11, alphabet=16)
    path = write_zip(tmp_path / "bad.zip", [Entry("big", data, method, crc=zlib.crc32(data) ^ 1)])
    store = open_store(path, False)
    f = store.open_member("big")               # too large to check at open
    got = bytearray()
    with pytest.raises(CorruptMemberError, match="CRC"):
        while True:
            piece = f.read(256 << 10)
            if not piece:
                break
            got += piece
    assert len(got) < len(data)                 # the end was never served as good
    f.close()
    with pytest.raises(CorruptMemberError):     # known bad: refused at once now
        with store.open_member("big") as again:
            again.read()


def test_large_member_read_whole_fails(tmp_path):
    data = pseudo_random(2 << 20, 12)
    path = write_zip(tmp_path / "bad.zip", [Entry("big", data, STORED, crc=1)])
    with ZipfileArchive(url=path) as archive:
        with pytest.raises(CorruptMemberError):
            with archive.open("big") as f:
                shutil.copyfileobj(f, open(os.devnull, "wb"))
        with pytest.raises(CorruptMemberError):
            archive.to_localfile("big")


def test_large_member_shorter_than_recorded(tmp_path):
    data = pseudo_random(3 << 20, 13, alphabet=16)
    path = write_zip(tmp_path / "bad.zip", [Entry("big", data, DEFLATED, usize=len(data) + 5000)])
    store = open_store(path, False)
    with pytest.raises(CorruptMemberError):
        with store.open_member("big") as f:
            while f.read(1 << 20):
                pass


def test_member_running_into_the_central_directory(tmp_path):
    raw = bytearray(build_zip([Entry("a", b"aaaa"), Entry("b", b"bbbbbbbb")]))
    # raise b's compressed size in both headers so its data overlaps the directory
    cd = raw.index(b"PK\x01\x02")
    second_cd = raw.index(b"PK\x01\x02", cd + 1)
    second_local = raw.index(b"PK\x03\x04", 1)
    struct.pack_into("<L", raw, second_local + 18, 500)
    struct.pack_into("<L", raw, second_cd + 20, 500)
    path = tmp_path / "overlap.zip"
    path.write_bytes(bytes(raw))
    store = open_store(path, False)
    assert read_member(store, "a") == b"aaaa"
    with pytest.raises(CorruptMemberError):
        read_member(store, "b")


# -- zip64 --------------------------------------------------------------------------

BIG = (1 << 32) + 123_457           # past 4 GiB


@pytest.fixture
def huge_zip(tmp_path):
    path = tmp_path / "huge.zip"
    data_start = build_sparse_zip64(path, "huge.bin", BIG, {"after.txt": b"after the hole\n"})
    if os.stat(path).st_blocks * 512 > 64 << 20:
        pytest.skip("the filesystem of tmp_path does not keep sparse files sparse")
    return path, data_start


def test_zip64_member_over_4gib(huge_zip):
    path, _ = huge_zip
    with zipfile.ZipFile(path) as z:             # the builder is right
        assert z.getinfo("huge.bin").file_size == BIG
        assert z.read("after.txt") == b"after the hole\n"
    store = open_store(path, False)
    assert store.names() == ["huge.bin", "after.txt"]
    assert store.stat("huge.bin")[1] == BIG
    assert read_member(store, "after.txt") == b"after the hole\n"
    with store.open_member("huge.bin") as f:
        for offset in (0, (1 << 32) - 3, BIG - 10, 12345):
            f.seek(offset)
            assert f.read(8) == bytes(min(8, BIG - offset))
        f.seek(BIG)
        assert f.read(1) == b""


def test_zip64_archive_takes_a_new_member_without_rewriting(huge_zip, tmp_path):
    path, data_start = huge_zip
    before = os.stat(path)
    with ZipfileArchive(url=str(path), mode="a") as archive:
        archive.writedata("new.txt", b"appended past 4 GiB")
    after = os.stat(path)
    assert after.st_ino == before.st_ino
    assert after.st_size - before.st_size < 4096
    assert after.st_blocks - before.st_blocks < 64      # still sparse: nothing copied
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["huge.bin", "after.txt", "new.txt"]
        info = z.getinfo("new.txt")
        assert info.header_offset > 1 << 32
        assert z.read("new.txt") == b"appended past 4 GiB"
        assert z.read("after.txt") == b"after the hole\n"
    assert run(["unzip", "-Z1", str(path)]).split() == ["huge.bin", "after.txt", "new.txt"]
    text = run(["unzip", "-t", str(path), "new.txt", "after.txt"])
    assert "No errors detected" in text and "warning" not in text.lower()
    text = run([SEVEN_ZIP, "t", str(path), "new.txt", "after.txt"])
    assert "Everything is Ok" in text and "warning" not in text.lower()
    store = open_store(path, False)
    assert store.stat("huge.bin")[1] == BIG
    assert read_member(store, "new.txt") == b"appended past 4 GiB"


def test_archive_of_more_than_65535_entries(tmp_path):
    count = 66_000
    path = tmp_path / "many.zip"
    names = build_many(path, count)
    store = open_store(path, True)
    assert store.names() == names
    for i in (0, 65534, 65535, 65536, count - 1):
        assert read_member(store, names[i]) == str(i).encode()
    assert len(store.listdir("d65")) == 1000 and len(store.listdir("")) == 66
    store.add_bytes("extra.txt", b"one more")
    store.remove(names[5])
    store.commit()
    store.close()
    with open(path, "rb") as f:
        f.seek(-200, os.SEEK_END)
        assert b"PK\x06\x06" in f.read()          # zip64 end record
    with zipfile.ZipFile(path) as z:
        listed = z.namelist()
        assert len(listed) == count and listed[-1] == "extra.txt" and names[5] not in listed
        assert z.read("extra.txt") == b"one more" and z.read(names[65600]) == b"65600"
    assert run(["unzip", "-Z1", str(path)]).count("\n") == count


# -- data descriptors ----------------------------------------------------------------

def test_data_descriptor_from_zip_on_a_pipe(tmp_path):
    path = tmp_path / "dd.zip"
    with open(path, "wb") as out:
        zip_proc = subprocess.Popen(["zip", "-q", "-", "-"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE)
        cat = subprocess.Popen(["cat"], stdin=zip_proc.stdout, stdout=out)
        zip_proc.stdout.close()
        zip_proc.communicate(b"x" * 5000 + b"streamed\n")
        assert cat.wait() == 0 and zip_proc.returncode == 0
    info = zipfile.ZipFile(path).getinfo("-")
    assert info.flag_bits & 0x08                 # zip wrote a data descriptor
    store = open_store(path, False)
    assert read_member(store, "-") == b"x" * 5000 + b"streamed\n"
    with ZipfileArchive(url=str(path), mode="a") as archive:
        archive.writedata("second", b"2")
    assert zipfile_contents(path) == {"-": b"x" * 5000 + b"streamed\n", "second": b"2"}
    assert_tools_accept(path)


def test_printf_into_zip_file(tmp_path):
    path = tmp_path / "dd.zip"
    subprocess.run("printf x | zip -q %s -" % path, shell=True, check=True)
    store = open_store(path, False)
    assert read_all(store) == {"-": b"x"}


@pytest.mark.parametrize("method", [STORED, DEFLATED], ids=["stored", "deflated"])
def test_hand_built_data_descriptors(tmp_path, method):
    members = {"one": b"first " * 100, "two": pseudo_random(3000, 4), "three": b""}
    path = write_zip(tmp_path / "dd.zip",
                     [Entry(n, d, method, descriptor=True) for n, d in members.items()])
    assert zipfile_contents(path) == members
    store = open_store(path, True)
    assert read_all(store) == members
    store.rename("two", "renamed")     # the member is copied under a new local header
    store.add_bytes("four", b"4")
    store.commit()
    store.close()
    expected = {"one": members["one"], "renamed": members["two"], "three": b"", "four": b"4"}
    assert zipfile_contents(path) == expected
    assert_tools_accept(path)


# -- comments ---------------------------------------------------------------------------

def test_archive_comment_is_read_and_kept(tmp_path):
    comment = b"archive comment: kept through commits and compaction"
    path = write_zip(tmp_path / "c.zip", [Entry("a", b"1"), Entry("b", b"2")], comment=comment)
    store = open_store(path, True)
    assert store.comment == comment
    store.add_bytes("c", b"3")
    store.commit()
    assert zipfile.ZipFile(path).comment == comment
    store.remove("a")
    store.compact()
    store.close()
    assert zipfile.ZipFile(path).comment == comment
    assert zipfile_contents(path) == {"b": b"2", "c": b"3"}
    assert comment.decode() in run(["unzip", "-z", str(path)])
    assert_tools_accept(path)


def test_comment_made_by_zip_command(tmp_path):
    src = tmp_path / "f.txt"
    src.write_bytes(b"f\n")
    path = tmp_path / "zc.zip"
    subprocess.run(["zip", "-q", "-j", "-z", str(path), str(src)], input=b"from zip -z\n.\n",
                   check=True)
    store = open_store(path, False)
    assert store.comment.startswith(b"from zip -z")
    assert read_all(store) == {"f.txt": b"f\n"}


def test_member_comments_survive_a_commit(tmp_path):
    path = write_zip(tmp_path / "mc.zip", [Entry("a", b"1", comment=b"about a"),
                                           Entry("b", b"2")])
    store = open_store(path, True)
    store.rename("a", "a2")
    store.add_bytes("c", b"3")
    store.commit()
    store.close()
    assert zipfile.ZipFile(path).getinfo("a2").comment == b"about a"


# -- prepended data (self-extractors) -----------------------------------------------

STUB = b"#!/bin/sh\necho 'self-extracting stub'\nexit 0\n" + pseudo_random(3000, 21)


@pytest.mark.parametrize("adjusted", [False, True], ids=["plain-cat", "zip-A"])
def test_prepended_stub(tmp_path, adjusted):
    members = {"x.txt": b"inside the sfx\n" * 20, "d/y.bin": pseudo_random(5000, 22)}
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    path = tmp_path / "sfx.zip"
    path.write_bytes(STUB + plain.read_bytes())
    if adjusted:
        run(["zip", "-q", "-A", str(path)])
        first_offset = zipfile.ZipFile(path).infolist()[0].header_offset
        assert first_offset == len(STUB)           # zip -A counted the stub
    store = open_store(path, False)
    assert read_all(store) == members
    store = open_store(path, True)
    store.add_bytes("added.txt", b"added to the sfx")
    store.rename("x.txt", "x2.txt")
    store.commit()
    store.close()
    assert path.read_bytes()[:len(STUB)] == STUB
    expected = {"x2.txt": members["x.txt"], "d/y.bin": members["d/y.bin"],
                "added.txt": b"added to the sfx"}
    assert zipfile_contents(path) == expected
    assert_tools_accept(path, sfx=True)
    store = open_store(path, True)
    store.remove("d/y.bin")
    store.compact()
    store.close()
    assert path.read_bytes()[:len(STUB)] == STUB
    del expected["d/y.bin"]
    assert zipfile_contents(path) == expected
    assert_tools_accept(path, sfx=True)


def test_hand_built_prepended_stub_with_unadjusted_offsets_and_zip64_end(tmp_path):
    members = {"a": b"A" * 100, "b": b"B" * 7}
    path = write_zip(tmp_path / "s.zip", [Entry(n, d, DEFLATED) for n, d in members.items()],
                     prefix=STUB, adjust_offsets=False, force_zip64_end=True)
    assert zipfile_contents(path) == members
    store = open_store(path, False)
    assert read_all(store) == members
