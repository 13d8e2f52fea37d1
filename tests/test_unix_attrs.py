"""Unix attributes in the plugin API and the zip engine (issue 9): owners,
atime, ctime, special files and their device numbers, directory link
counts, names an archive cannot hold, and the central directory's order
of directories before their contents. Both builtin plugins where the API
promises the same."""

import os
import stat
import struct
import time
import zipfile

import pytest

from archfs.archives.filesystemarchive import FilesystemArchive
from archfs.archives.zipfilearchive import ZipfileArchive
from archfs.errors import InvalidArgument, NameTooLong
from archfs.zipengine import format as fmt, indexcache
from zip_builders import assert_tools_accept, local_header_at, open_store, parse_extras

T1 = 1_500_000_000_123_456_700      # ns, representable in NTFS's 100 ns
T2 = 1_600_000_000_987_654_300

ROOT = os.geteuid() == 0


def _open(kind, tmp_path, mode="a"):
    if kind == "zip":
        return ZipfileArchive(url=str(tmp_path / "a.zip"), mode=mode)
    return FilesystemArchive(url=str(tmp_path / "tree"), mode=mode)


@pytest.fixture(params=["zip", "dir"])
def kind(request):
    return request.param


def test_plugins_keep_atime_owner_and_link_counts(kind, tmp_path):
    archive = _open(kind, tmp_path)
    archive.writedata("f.txt", b"data", mode=0o640, mtime_ns=T2, atime_ns=T1,
                      **({"owner": (1234, 5678)} if ROOT or kind == "zip" else {}))
    archive.mkdir("d")
    archive.mkdir("d/one")
    archive.mkdir("d/two")
    archive.utime("d", T2, T1)
    archive.close()
    archive = _open(kind, tmp_path)
    st = archive.stat("f.txt")
    assert (st.mtime_ns, st.atime_ns) == (T2, T1)
    if ROOT or kind == "zip":
        assert (st.uid, st.gid) == (1234, 5678)
    assert archive.stat("d").nlink == 4 and archive.stat("d/one").nlink == 2
    assert archive.stat("f.txt").nlink == 1
    d = archive.stat("d")
    assert (d.mtime_ns, d.atime_ns) == (T2, T1)
    archive.utime("f.txt", None, T2)          # atime only
    assert (archive.stat("f.txt").mtime_ns, archive.stat("f.txt").atime_ns) == (T2, T2)
    archive.utime("f.txt", T1)                # mtime only: atime stays
    assert (archive.stat("f.txt").mtime_ns, archive.stat("f.txt").atime_ns) == (T1, T2)
    archive.close()


def test_chmod_chown_utime_move_ctime_not_mtime(kind, tmp_path):
    archive = _open(kind, tmp_path)
    archive.writedata("f", b"x", mtime_ns=T1)
    before = time.time_ns() - 10_000_000
    archive.chmod("f", 0o600)
    st = archive.stat("f")
    assert st.mtime_ns == T1 and st.ctime_ns >= before
    if ROOT or kind == "zip":
        archive.chown("f", 42, None)
        st = archive.stat("f")
        assert st.uid == 42 and st.mtime_ns == T1
    archive.close()


@pytest.mark.parametrize("special", ["fifo", "socket", "char", "block"])
def test_special_files_round_trip(kind, tmp_path, special):
    if special in ("char", "block") and kind == "dir" and not ROOT:
        pytest.skip("device nodes on a real directory need root")
    mode = {"fifo": stat.S_IFIFO, "socket": stat.S_IFSOCK, "char": stat.S_IFCHR,
            "block": stat.S_IFBLK}[special] | 0o640
    rdev = os.makedev(259, 70000) if special in ("char", "block") else 0
    archive = _open(kind, tmp_path)
    archive.mknod("node", mode, rdev)
    archive.close()
    archive = _open(kind, tmp_path, "r")
    st = archive.stat("node")
    assert (st.mode, st.rdev, st.size) == (mode, rdev, 0)
    assert archive.listdir("") == [("node", stat.S_IFMT(mode))] or \
        stat.S_IFMT(dict(archive.listdir(""))["node"]) == stat.S_IFMT(mode)
    archive.close()
    if kind == "zip":
        with zipfile.ZipFile(tmp_path / "a.zip") as zf:
            info = zf.getinfo("node")
        assert info.external_attr >> 16 == mode
        extras = parse_extras(info.extra)
        if rdev:   # PKWARE unix field: atime, mtime, uid16, gid16, major, minor
            assert struct.unpack_from("<II", extras[fmt.EXTRA_PKWARE_UNIX], 12) == (259, 70000)
        assert_tools_accept(tmp_path / "a.zip")


def test_names_an_archive_cannot_hold(tmp_path):
    zip_archive = ZipfileArchive(url=str(tmp_path / "a.zip"), mode="a")
    with pytest.raises(NameTooLong, match="256 bytes"):
        zip_archive.check_new_name("d/" + "x" * 256)
    with pytest.raises(InvalidArgument, match="backslash"):
        zip_archive.check_new_name("a\\b")
    with pytest.raises(InvalidArgument, match="UTF-8"):
        zip_archive.check_new_name(b"caf\xe9".decode("utf-8", "surrogateescape"))
    with pytest.raises(NameTooLong, match="path of"):
        zip_archive.check_new_name("/".join(["y" * 200] * 330))
    zip_archive.check_new_name("x" * 255 + "/" + "é" * 127)        # 254 bytes: fine
    with pytest.raises(InvalidArgument, match="backslash"):      # and writing it says why
        zip_archive.writedata("a\\b", b"")
    zip_archive.close()
    directory = FilesystemArchive(url=str(tmp_path / "tree"), mode="a")
    with pytest.raises(NameTooLong):
        directory.check_new_name("z" * 256)
    directory.check_new_name("a\\b")       # a directory holds backslashes
    directory.close()


def _local_extras(path, name):
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo(name).header_offset
    return parse_extras(local_header_at(path, offset)[2])


def test_owner_and_atime_are_in_the_local_header_for_unzip(tmp_path):
    """unzip -X and unzip's time restore read the local header."""
    path = tmp_path / "a.zip"
    store = open_store(path)
    store.add_bytes("f", b"content", mtime_ns=T2, owner=(1001, 1002), atime_ns=T1)
    store.commit()
    local = _local_extras(path, "f")
    assert fmt.parse_unix_owner(local[fmt.EXTRA_UNIX_OWNER]) == (1001, 1002)
    assert local[fmt.EXTRA_TIMESTAMP][0] == 3       # mtime and atime
    assert struct.unpack_from("<II", local[fmt.EXTRA_TIMESTAMP], 1) == (T2 // 10**9, T1 // 10**9)
    # a change of owner after the commit reaches the local header at the next one
    store.chown("f", 2001, None)
    store.commit()
    local = _local_extras(path, "f")
    assert fmt.parse_unix_owner(local[fmt.EXTRA_UNIX_OWNER]) == (2001, 1002)
    store.close()
    assert_tools_accept(path)


def test_ctime_lives_while_open_and_atime_survives_the_index_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(indexcache, "MIN_MEMBERS", 3)
    path = tmp_path / "a.zip"
    cache = str(tmp_path / "index")
    store = open_store(path, index_dir=cache)
    for i in range(4):
        store.add_bytes("f%d" % i, b"x", mtime_ns=T2, atime_ns=T1 if i == 2 else None)
    store.mknod("dev", stat.S_IFCHR | 0o600, os.makedev(4, 5))
    store.chmod("f1", 0o600)
    assert store.attrs("f1").ctime_ns > T2
    store.close()
    for _ in range(2):      # parsed, then loaded from the saved index
        store = open_store(path, writable=False, index_dir=cache)
        assert store.attrs("f2").atime_ns == T1 and store.attrs("f1").atime_ns == T2
        assert store.attrs("f1").ctime_ns == T2
        assert store.attrs("dev").rdev == os.makedev(4, 5)
        store.close()
    assert os.listdir(cache)


def test_directories_are_listed_before_their_contents(tmp_path):
    """unzip restores a directory's owner and times only from an entry listed
    before its contents (the store's directory order, cdwrite.py)."""
    path = tmp_path / "a.zip"
    store = open_store(path)
    store.add_bytes("first", b"stays at the start")
    store.mkdir("top")
    store.mkdir("top/inner")
    store.add_bytes("top/inner/f", b"f")
    store.add_bytes("top/g", b"g")
    store.commit()
    store.chown("top", 5, 6)                 # committed: the entry moves to the end
    store.utime("top/inner", T1)
    store.commit()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        offsets = {i.filename: i.header_offset for i in zf.infolist()}
    assert offsets["top/"] > offsets["top/g"]                  # the data is appended ...
    assert names.index("top/") < names.index("top/inner/") < names.index("top/inner/f")
    assert names.index("top/") < names.index("top/g")          # ... but listed first
    store.compact()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert names.index("top/") < names.index("top/inner/") < names.index("top/inner/f")
    assert store.attrs("top").uid == 5
    store.close()
    assert_tools_accept(path)
