"""FilesystemArchive: the seed API, the filesystem extensions, and the root
boundary that no name may cross."""

import errno
import os
import shutil
import stat

import pytest

from archfs.archives import filesystemarchive
from archfs.archives.abstractarchive import Member
from archfs.archives.filesystemarchive import FilesystemArchive
from archfs.archives.writefileio import WriteFileIO
from archfs.errors import (
    ArchfsError,
    DirectoryNotEmpty,
    FileAlreadyExistsError,
    InvalidMove,
    IsADirectory,
    NoSuchFile,
    NotADirectory,
    NotSupported,
    ReadOnlyError,
    WriteOnFile,
)
from conftest import SAMPLE_FILES

ALL_NAMES = ["a.txt", "b.bin", "link-to-a", "sub/c.txt", "sub/deeper/d.txt", "zz/e.dat"]


def read(root, name):
    with open(os.path.join(root, name), "rb") as f:
        return f.read()


def no_temp_files(root):
    return [n for _, _, files in os.walk(root) for n in files if n.startswith(".archfs-")]


# -- opening -------------------------------------------------------------------

def test_plugin_identity(fs_archive, sample_root):
    assert fs_archive.name == "filesystem"
    assert fs_archive.mimetypes == ["*"]
    assert fs_archive.use_query() is False
    assert fs_archive.location == os.path.realpath(sample_root)
    assert FilesystemArchive(transport="t", url=sample_root).transport == "t"


def test_file_url_with_escapes(tmp_path):
    root = tmp_path / "with space"
    root.mkdir()
    (root / "f").write_bytes(b"x")
    for url in ("file://" + str(root).replace(" ", "%20"),
                "file://localhost" + str(root).replace(" ", "%20")):
        assert FilesystemArchive(url=url).getnames() == ["f"]


def test_bad_constructor_arguments(tmp_path):
    with pytest.raises(ValueError, match="needs a url"):
        FilesystemArchive()
    with pytest.raises(ValueError, match="mode"):
        FilesystemArchive(url=str(tmp_path), mode="x")
    with pytest.raises(ValueError, match="another host"):
        FilesystemArchive(url="file://elsewhere/tmp")


def test_missing_directory_read_mode(tmp_path):
    with pytest.raises(NoSuchFile, match="no such directory") as info:
        FilesystemArchive(url=str(tmp_path / "absent"))
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.errno == errno.ENOENT
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("mode", ["w", "a"])
def test_write_modes_create_directory(tmp_path, mode):
    target = tmp_path / "new" / "deeper"
    archive = FilesystemArchive(url=str(target), mode=mode)
    assert target.is_dir() and archive.writable
    archive.writedata("x", b"1")
    assert (target / "x").read_bytes() == b"1"


def test_write_mode_keeps_existing_content(sample_root):
    FilesystemArchive(url=sample_root, mode="w").close()
    assert read(sample_root, "a.txt") == SAMPLE_FILES["a.txt"]


def test_file_url_needs_read_directory_only_false(sample_root):
    path = os.path.join(sample_root, "a.txt")
    with pytest.raises(WriteOnFile) as info:
        FilesystemArchive(url=path)
    assert info.value.errno == errno.ENOTDIR


@pytest.mark.parametrize("mode", ["w", "a"])
def test_writing_onto_a_file_url(sample_root, mode):
    with pytest.raises(WriteOnFile, match="onto the file"):
        FilesystemArchive(url=os.path.join(sample_root, "a.txt"), mode=mode,
                          read_directory_only=False)
    assert read(sample_root, "a.txt") == SAMPLE_FILES["a.txt"]


def test_single_file_archive(sample_root):
    archive = FilesystemArchive(url=os.path.join(sample_root, "sub", "c.txt"),
                                read_directory_only=False)
    assert archive.getnames() == ["c.txt"]
    assert [m.filename for m in archive.getmembers()] == ["c.txt"]
    with archive.open("c.txt") as f:
        assert f.read() == SAMPLE_FILES["sub/c.txt"]
    assert archive.is_file("c.txt") and not archive.is_file("other")
    assert archive.listdir("") == [("c.txt", stat.S_IFREG)]
    assert archive.location == os.path.realpath(os.path.join(sample_root, "sub"))
    assert not archive.writable
    with pytest.raises(NoSuchFile):
        archive.open("deeper/d.txt")  # beside the file, but not a member
    with pytest.raises(NoSuchFile):
        archive.stat("deeper")
    with pytest.raises(NotADirectory):
        archive.listdir("c.txt")
    with pytest.raises(ReadOnlyError):
        archive.writedata("c.txt", b"no")


# -- names and patterns (seed semantics) ------------------------------------

def test_getnames_walk_order(ro_archive):
    assert ro_archive.getnames() == ALL_NAMES


@pytest.mark.parametrize("files, expected", [
    (None, ALL_NAMES),
    ("*", ALL_NAMES),
    ([], ALL_NAMES),
    ("a.txt", ["a.txt"]),
    ("/a.txt", ["a.txt"]),
    ("*.txt", ["a.txt", "sub/c.txt", "sub/deeper/d.txt"]),
    ("sub", ["sub/c.txt", "sub/deeper/d.txt"]),
    ("sub/", ["sub/c.txt", "sub/deeper/d.txt"]),
    ("sub/deeper", ["sub/deeper/d.txt"]),
    (["zz", "a.txt"], ["a.txt", "zz/e.dat"]),  # archive order, not pattern order
    (["b.?in", "nothing*"], ["b.bin"]),
    ("[ab].*", ["a.txt", "b.bin"]),
])
def test_getnames_patterns(ro_archive, files, expected):
    assert ro_archive.getnames(files) == expected
    assert ro_archive.getmembers(files) == [Member(n) for n in expected]


@pytest.mark.parametrize("files", ["nothing", ["no", "match*"], "A.TXT", "su"])
def test_getnames_no_match(ro_archive, files):
    with pytest.raises(FileNotFoundError, match="No such file"):
        ro_archive.getnames(files)
    with pytest.raises(NoSuchFile):
        ro_archive.getmembers(files)


def test_empty_directories_are_not_members(ro_archive):
    assert "empty" not in ro_archive.getnames()
    with pytest.raises(NoSuchFile):
        ro_archive.getnames("empty")


def test_basename_and_member_objects(ro_archive):
    member = ro_archive.getmembers("sub/deeper/d.txt")[0]
    assert ro_archive.basename(member) == "d.txt"
    assert ro_archive.basename("sub/c.txt") == "c.txt"
    assert ro_archive.is_file(member)
    with ro_archive.open(member) as f:
        assert f.read() == SAMPLE_FILES["sub/deeper/d.txt"]


# -- open / to_localfile / is_file ------------------------------------------

def test_open_read_is_seekable(ro_archive):
    with ro_archive.open("b.bin", "rb") as f:
        f.seek(200)
        assert f.read(3) == bytes([200, 201, 202])
        f.seek(-1, os.SEEK_END)
        assert f.read() == b"\xff"


def test_open_read_errors(ro_archive):
    with pytest.raises(NoSuchFile):
        ro_archive.open("missing")
    with pytest.raises(IsADirectory):
        ro_archive.open("sub")
    with pytest.raises(ValueError, match="'rb' or 'wb'"):
        ro_archive.open("a.txt", "r")


def test_open_follows_inner_symlink(ro_archive):
    with ro_archive.open("link-to-a") as f:
        assert f.read() == SAMPLE_FILES["a.txt"]


def test_open_write_stores_on_close(fs_archive, sample_root):
    f = fs_archive.open("new/dir/n.txt", "wb")
    assert isinstance(f, WriteFileIO)
    f.write(b"hello ")
    f.write(b"world")
    assert not os.path.exists(os.path.join(sample_root, "new/dir/n.txt"))
    f.close()
    assert read(sample_root, "new/dir/n.txt") == b"hello world"
    assert not os.path.exists(f.name)


def test_open_write_truncates_and_empty_is_stored(fs_archive, sample_root):
    fs_archive.open("a.txt", "wb").close()
    assert read(sample_root, "a.txt") == b""


def test_open_write_errors(fs_archive, ro_archive):
    with pytest.raises(ReadOnlyError) as info:
        ro_archive.open("a.txt", "wb")
    assert isinstance(info.value, PermissionError) and info.value.errno == errno.EROFS
    with pytest.raises(IsADirectory):
        fs_archive.open("sub", "wb")
    with pytest.raises(IsADirectory):
        fs_archive.open("", "wb")


def test_to_localfile(ro_archive, sample_root):
    path = ro_archive.to_localfile("sub/c.txt")
    assert path == os.path.join(os.path.realpath(sample_root), "sub", "c.txt")
    with open(path, "rb") as f:
        assert f.read() == SAMPLE_FILES["sub/c.txt"]
    assert ro_archive.to_localfile("link-to-a").endswith("/a.txt")
    assert ro_archive.to_localfile("sub") == os.path.realpath(os.path.join(sample_root, "sub"))
    with pytest.raises(NoSuchFile):
        ro_archive.to_localfile("missing")


def test_is_file(ro_archive):
    assert ro_archive.is_file("a.txt")
    assert ro_archive.is_file("link-to-a")
    assert not ro_archive.is_file("sub")
    assert not ro_archive.is_file("")
    assert not ro_archive.is_file("missing")


# -- add_localfile / writedata -----------------------------------------------

def test_add_localfile(fs_archive, sample_root, tmp_path):
    local = tmp_path / "script.sh"
    local.write_bytes(b"#!/bin/sh\n")
    local.chmod(0o750)
    fs_archive.add_localfile(str(local), "bin/script.sh")
    st = os.stat(os.path.join(sample_root, "bin/script.sh"))
    assert stat.S_IMODE(st.st_mode) == 0o750
    assert st.st_mtime_ns == local.stat().st_mtime_ns
    assert read(sample_root, "bin/script.sh") == b"#!/bin/sh\n"
    assert local.exists()  # added, not moved


@pytest.mark.parametrize("name", ["a.txt", "link-to-a", "sub", "empty"])
def test_add_localfile_existing_name(fs_archive, sample_root, tmp_path, name):
    local = tmp_path / "l"
    local.write_bytes(b"new")
    with pytest.raises(FileAlreadyExistsError) as info:
        fs_archive.add_localfile(str(local), name)
    assert info.value.errno == errno.EEXIST
    assert read(sample_root, "a.txt") == SAMPLE_FILES["a.txt"]


def test_add_localfile_errors(fs_archive, ro_archive, tmp_path):
    with pytest.raises(NoSuchFile, match="absent"):
        fs_archive.add_localfile(str(tmp_path / "absent"), "x")
    local = tmp_path / "l"
    local.write_bytes(b"")
    with pytest.raises(ReadOnlyError):
        ro_archive.add_localfile(str(local), "x")


def test_writedata_creates_and_replaces(fs_archive, sample_root):
    fs_archive.writedata("fresh/f.bin", b"\x00\x01")
    assert read(sample_root, "fresh/f.bin") == b"\x00\x01"
    assert stat.S_IMODE(os.stat(os.path.join(sample_root, "fresh/f.bin")).st_mode) == 0o644
    os.chmod(os.path.join(sample_root, "a.txt"), 0o600)
    fs_archive.writedata("a.txt", bytearray(b"replaced"))
    assert read(sample_root, "a.txt") == b"replaced"
    assert stat.S_IMODE(os.stat(os.path.join(sample_root, "a.txt")).st_mode) == 0o600
    assert no_temp_files(sample_root) == []


def test_writedata_errors(fs_archive, ro_archive, sample_root):
    with pytest.raises(TypeError, match="bytes"):
        fs_archive.writedata("a.txt", "text")
    with pytest.raises(IsADirectory):
        fs_archive.writedata("sub", b"x")
    with pytest.raises(NotADirectory):
        fs_archive.writedata("a.txt/inner", b"x")
    with pytest.raises(ReadOnlyError):
        ro_archive.writedata("a.txt", b"x")
    assert read(sample_root, "a.txt") == SAMPLE_FILES["a.txt"]


def test_writedata_on_symlink_replaces_the_link(fs_archive, sample_root):
    fs_archive.writedata("link-to-a", b"own content")
    assert not os.path.islink(os.path.join(sample_root, "link-to-a"))
    assert read(sample_root, "link-to-a") == b"own content"
    assert read(sample_root, "a.txt") == SAMPLE_FILES["a.txt"]


def test_close_and_context_manager(sample_root):
    with FilesystemArchive(url=sample_root, mode="a") as archive:
        archive.writedata("x", b"1")
    assert not archive.writable
    with pytest.raises(ValueError, match="closed"):
        archive.getnames()
    with pytest.raises(ValueError, match="closed"):
        archive.open("x")
    archive.close()  # twice is harmless


# -- stat / listdir / readlink ------------------------------------------------

def test_stat_file(ro_archive, sample_root):
    path = os.path.join(sample_root, "b.bin")
    os.chmod(path, 0o640)
    st = ro_archive.stat("b.bin")
    real = os.lstat(path)
    assert st.is_file and not st.is_dir
    assert st.mode == real.st_mode and stat.S_IMODE(st.mode) == 0o640
    assert st.size == 256
    assert st.mtime_ns == real.st_mtime_ns
    assert (st.uid, st.gid) == (real.st_uid, real.st_gid)


def test_stat_dir_root_and_symlink(ro_archive):
    assert ro_archive.stat("sub").is_dir
    assert ro_archive.stat("").is_dir
    link = ro_archive.stat("link-to-a")
    assert link.is_symlink and link.size == len("a.txt")


def test_stat_errors(ro_archive):
    with pytest.raises(NoSuchFile):
        ro_archive.stat("missing")
    with pytest.raises(NotADirectory) as info:
        ro_archive.stat("a.txt/below")
    assert info.value.errno == errno.ENOTDIR


def test_listdir(ro_archive, sample_root):
    os.mkfifo(os.path.join(sample_root, "sub", "fifo"))
    assert ro_archive.listdir("") == [
        ("a.txt", stat.S_IFREG), ("b.bin", stat.S_IFREG), ("empty", stat.S_IFDIR),
        ("link-to-a", stat.S_IFLNK), ("sub", stat.S_IFDIR), ("zz", stat.S_IFDIR)]
    assert ro_archive.listdir("sub") == [
        ("c.txt", stat.S_IFREG), ("deeper", stat.S_IFDIR), ("fifo", stat.S_IFIFO)]
    assert ro_archive.listdir("empty") == []


def test_listdir_errors(ro_archive):
    with pytest.raises(NoSuchFile):
        ro_archive.listdir("missing")
    with pytest.raises(NotADirectory):
        ro_archive.listdir("a.txt")


def test_readlink(fs_archive):
    assert fs_archive.readlink("link-to-a") == "a.txt"
    with pytest.raises(ArchfsError) as info:
        fs_archive.readlink("a.txt")
    assert info.value.errno == errno.EINVAL
    with pytest.raises(NoSuchFile):
        fs_archive.readlink("missing")


# -- replace_localfile -------------------------------------------------------

def test_replace_localfile_keeps_mode_and_sets_mtime(fs_archive, sample_root, tmp_path):
    target = os.path.join(sample_root, "a.txt")
    os.chmod(target, 0o604)
    local = tmp_path / "l"
    local.write_bytes(b"new content")
    os.utime(local, ns=(1_000_000_000, 1_234_567_890_123_456_789))
    fs_archive.replace_localfile(str(local), "a.txt")
    st = os.stat(target)
    assert read(sample_root, "a.txt") == b"new content"
    assert stat.S_IMODE(st.st_mode) == 0o604
    assert st.st_mtime_ns == 1_234_567_890_123_456_789


def test_replace_localfile_explicit_mode_and_mtime(fs_archive, sample_root, tmp_path):
    local = tmp_path / "l"
    local.write_bytes(b"x")
    fs_archive.replace_localfile(str(local), "a.txt", mode=stat.S_IFREG | 0o711,
                                 mtime_ns=5_000_000_000)
    st = os.stat(os.path.join(sample_root, "a.txt"))
    assert stat.S_IMODE(st.st_mode) == 0o711
    assert st.st_mtime_ns == 5_000_000_000


def test_replace_keeps_owner_and_setuid(fs_archive, sample_root, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another owner")
    target = os.path.join(sample_root, "a.txt")
    os.chown(target, 1234, 5678)
    local = tmp_path / "l"
    local.write_bytes(b"x")
    fs_archive.replace_localfile(str(local), "a.txt", mode=0o4755)
    st = os.stat(target)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert stat.S_IMODE(st.st_mode) == 0o4755  # chown did not clear setuid


def test_replace_localfile_new_member_gets_0644(fs_archive, sample_root, tmp_path):
    local = tmp_path / "l"
    local.write_bytes(b"x")
    local.chmod(0o700)
    fs_archive.replace_localfile(str(local), "p/q/new")
    assert stat.S_IMODE(os.stat(os.path.join(sample_root, "p/q/new")).st_mode) == 0o644


def test_replace_localfile_errors(fs_archive, ro_archive, sample_root, tmp_path):
    local = tmp_path / "l"
    local.write_bytes(b"x")
    with pytest.raises(IsADirectory):
        fs_archive.replace_localfile(str(local), "sub")
    with pytest.raises(IsADirectory):
        fs_archive.replace_localfile(str(local), "")
    with pytest.raises(ReadOnlyError):
        ro_archive.replace_localfile(str(local), "a.txt")
    with pytest.raises(NoSuchFile):
        fs_archive.replace_localfile(str(tmp_path / "absent"), "a.txt")
    assert read(sample_root, "a.txt") == SAMPLE_FILES["a.txt"]


def test_replace_failure_keeps_old_content(fs_archive, sample_root, tmp_path, monkeypatch):
    local = tmp_path / "l"
    local.write_bytes(b"never lands")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(filesystemarchive.os, "replace", full_disk)
    with pytest.raises(ArchfsError) as info:
        fs_archive.replace_localfile(str(local), "a.txt")
    assert info.value.errno == errno.ENOSPC
    assert read(sample_root, "a.txt") == SAMPLE_FILES["a.txt"]
    assert no_temp_files(sample_root) == []


# -- remove / mkdir / rmdir ---------------------------------------------------

def test_remove(fs_archive, sample_root):
    fs_archive.remove("link-to-a")
    assert not os.path.lexists(os.path.join(sample_root, "link-to-a"))
    assert os.path.exists(os.path.join(sample_root, "a.txt"))
    fs_archive.remove("sub/c.txt")
    assert not os.path.exists(os.path.join(sample_root, "sub/c.txt"))


def test_remove_errors(fs_archive, ro_archive, sample_root):
    with pytest.raises(IsADirectory):
        fs_archive.remove("empty")
    with pytest.raises(IsADirectory):
        fs_archive.remove("")
    with pytest.raises(NoSuchFile):
        fs_archive.remove("missing")
    with pytest.raises(ReadOnlyError):
        ro_archive.remove("a.txt")
    assert os.path.isdir(os.path.join(sample_root, "empty"))


def test_mkdir_exact_mode(fs_archive, sample_root):
    old_umask = os.umask(0o077)
    try:
        fs_archive.mkdir("sub/new", 0o755)
    finally:
        os.umask(old_umask)
    st = os.stat(os.path.join(sample_root, "sub/new"))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755


def test_mkdir_errors(fs_archive, ro_archive):
    for name in ("sub", "a.txt", "link-to-a", ""):
        with pytest.raises(FileAlreadyExistsError):
            fs_archive.mkdir(name)
    with pytest.raises(NoSuchFile):
        fs_archive.mkdir("no/parent")
    with pytest.raises(NotADirectory):
        fs_archive.mkdir("a.txt/child")
    with pytest.raises(ReadOnlyError):
        ro_archive.mkdir("x")


def test_rmdir(fs_archive, sample_root):
    fs_archive.rmdir("empty")
    assert not os.path.exists(os.path.join(sample_root, "empty"))


def test_rmdir_errors(fs_archive, ro_archive, sample_root):
    with pytest.raises(DirectoryNotEmpty) as info:
        fs_archive.rmdir("sub")
    assert info.value.errno == errno.ENOTEMPTY
    with pytest.raises(NotADirectory):
        fs_archive.rmdir("a.txt")
    with pytest.raises(NotADirectory):
        fs_archive.rmdir("link-to-a")
    with pytest.raises(NoSuchFile):
        fs_archive.rmdir("missing")
    with pytest.raises(ArchfsError) as info:
        fs_archive.rmdir("")
    assert info.value.errno == errno.EBUSY
    with pytest.raises(ReadOnlyError):
        ro_archive.rmdir("empty")
    assert os.path.isdir(os.path.join(sample_root, "sub"))


# -- rename: rename(2) semantics ---------------------------------------------

def test_rename_file(fs_archive, sample_root):
    fs_archive.rename("a.txt", "sub/moved.txt")
    assert read(sample_root, "sub/moved.txt") == SAMPLE_FILES["a.txt"]
    assert not os.path.exists(os.path.join(sample_root, "a.txt"))


def test_rename_file_replaces_file(fs_archive, sample_root):
    fs_archive.rename("a.txt", "b.bin")
    assert read(sample_root, "b.bin") == SAMPLE_FILES["a.txt"]
    assert fs_archive.getnames("*.txt") == ["sub/c.txt", "sub/deeper/d.txt"]


def test_rename_directory_moves_subtree(fs_archive, sample_root):
    fs_archive.rename("sub", "zz/sub2")
    assert read(sample_root, "zz/sub2/deeper/d.txt") == SAMPLE_FILES["sub/deeper/d.txt"]
    assert not os.path.exists(os.path.join(sample_root, "sub"))


def test_rename_directory_replaces_empty_directory(fs_archive, sample_root):
    fs_archive.rename("zz", "empty")
    assert read(sample_root, "empty/e.dat") == b""


def test_rename_same_name_is_a_no_op(fs_archive, sample_root):
    fs_archive.rename("a.txt", "a.txt")
    assert read(sample_root, "a.txt") == SAMPLE_FILES["a.txt"]


def test_rename_symlink_moves_the_link(fs_archive, sample_root):
    fs_archive.rename("link-to-a", "sub/link")
    assert os.readlink(os.path.join(sample_root, "sub/link")) == "a.txt"


@pytest.mark.parametrize("old, new, error", [
    ("a.txt", "sub", IsADirectory),          # file onto directory
    ("sub", "a.txt", NotADirectory),          # directory onto file
    ("zz", "sub", DirectoryNotEmpty),         # onto a non-empty directory
    ("sub", "sub/deeper/inside", InvalidMove),  # directory into itself
    ("missing", "x", NoSuchFile),
    ("a.txt", "no/parent/x", NoSuchFile),
    ("a.txt", "b.bin/x", NotADirectory),
    ("", "x", InvalidMove),
    ("a.txt", "", InvalidMove),
])
def test_rename_errors(fs_archive, sample_root, old, new, error):
    before = sorted(os.walk(sample_root))
    with pytest.raises(error):
        fs_archive.rename(old, new)
    assert sorted(os.walk(sample_root)) == before


def test_rename_read_only(ro_archive):
    with pytest.raises(ReadOnlyError):
        ro_archive.rename("a.txt", "b")


# -- symlink / chmod / utime --------------------------------------------------

def test_symlink(fs_archive, sample_root):
    fs_archive.symlink("../a.txt", "sub/up")
    assert fs_archive.readlink("sub/up") == "../a.txt"
    assert fs_archive.stat("sub/up").is_symlink
    with fs_archive.open("sub/up") as f:
        assert f.read() == SAMPLE_FILES["a.txt"]


def test_symlink_errors(fs_archive, ro_archive):
    with pytest.raises(FileAlreadyExistsError):
        fs_archive.symlink("x", "a.txt")
    with pytest.raises(NoSuchFile):
        fs_archive.symlink("x", "no/parent/link")
    with pytest.raises(ReadOnlyError):
        ro_archive.symlink("x", "l")


def test_chmod(fs_archive, sample_root):
    fs_archive.chmod("a.txt", stat.S_IFREG | 0o4751)
    assert stat.S_IMODE(os.stat(os.path.join(sample_root, "a.txt")).st_mode) == 0o4751
    fs_archive.chmod("sub", 0o700)
    assert stat.S_IMODE(os.stat(os.path.join(sample_root, "sub")).st_mode) == 0o700


def test_chmod_errors(fs_archive, ro_archive, sample_root):
    before = os.stat(os.path.join(sample_root, "a.txt")).st_mode
    with pytest.raises(NotSupported):
        fs_archive.chmod("link-to-a", 0o777)
    assert os.stat(os.path.join(sample_root, "a.txt")).st_mode == before
    with pytest.raises(NoSuchFile):
        fs_archive.chmod("missing", 0o777)
    with pytest.raises(ReadOnlyError):
        ro_archive.chmod("a.txt", 0o777)


def test_utime(fs_archive, sample_root):
    path = os.path.join(sample_root, "a.txt")
    atime = os.stat(path).st_atime_ns
    fs_archive.utime("a.txt", 7_000_000_001)
    st = os.stat(path)
    assert st.st_mtime_ns == 7_000_000_001 and st.st_atime_ns == atime
    fs_archive.utime("link-to-a", 9_000_000_000)
    assert os.lstat(os.path.join(sample_root, "link-to-a")).st_mtime_ns == 9_000_000_000
    assert os.stat(path).st_mtime_ns == 7_000_000_001  # the target is untouched


def test_utime_errors(fs_archive, ro_archive):
    with pytest.raises(NoSuchFile):
        fs_archive.utime("missing", 0)
    with pytest.raises(ReadOnlyError):
        ro_archive.utime("a.txt", 0)


# -- commit / writable / statvfs ---------------------------------------------

def test_commit_fsyncs_changed_directories(fs_archive, sample_root, monkeypatch):
    synced = []
    monkeypatch.setattr(filesystemarchive, "_fsync_path", synced.append)
    real = os.path.realpath(sample_root)
    fs_archive.rename("a.txt", "sub/a.txt")
    fs_archive.chmod("b.bin", 0o600)
    fs_archive.commit()
    assert set(synced) == {real, os.path.join(real, "sub"), os.path.join(real, "b.bin")}
    synced.clear()
    fs_archive.commit()
    assert synced == []


def test_commit_skips_paths_removed_behind_its_back(fs_archive, sample_root, monkeypatch):
    fs_archive.writedata("t/x", b"1")  # t/ is now pending
    shutil.rmtree(os.path.join(sample_root, "t"))
    synced = []
    real_fsync = filesystemarchive._fsync_path
    monkeypatch.setattr(filesystemarchive, "_fsync_path",
                        lambda p: (real_fsync(p), synced.append(p)))
    fs_archive.commit()  # must not raise for the vanished t/
    assert synced == [os.path.realpath(sample_root)]


def test_read_only_commit_is_a_no_op(ro_archive):
    ro_archive.commit()
    assert ro_archive.writable is False


def test_statvfs(ro_archive):
    figures = ro_archive.statvfs()
    assert figures["f_bsize"] > 0 and figures["f_namemax"] > 0


# -- the root boundary ------------------------------------------------------

ESCAPES = ["../outside/secret", "a/../../outside/secret", "sub/../../outside/secret",
           "sub/../../../etc/passwd", "..", "sub/..", "./../outside/secret"]


@pytest.fixture
def escaping_archive(sample_root, outside):
    """The sample tree plus symlinks that lead out of it."""
    os.symlink(os.path.join(outside, "secret"), os.path.join(sample_root, "abs-out"))
    os.symlink("../outside/secret", os.path.join(sample_root, "rel-out"))
    os.symlink(outside, os.path.join(sample_root, "dir-out"))
    archive = FilesystemArchive(url=sample_root, mode="a")
    yield archive
    archive.close()


def _outside_untouched(outside):
    assert sorted(os.listdir(outside)) == ["secret"]
    assert read(outside, "secret") == b"do not leak\n"


@pytest.mark.parametrize("name", ESCAPES + ["abs-out", "rel-out", "dir-out/secret"])
def test_reading_never_leaves_the_root(escaping_archive, outside, name):
    for call in (escaping_archive.to_localfile, escaping_archive.open):
        with pytest.raises(NoSuchFile):
            call(name)
    _outside_untouched(outside)


@pytest.mark.parametrize("name", ESCAPES + ["dir-out/secret", "dir-out/new"])
def test_every_method_refuses_escaping_names(escaping_archive, outside, tmp_path, name):
    archive = escaping_archive
    local = tmp_path / "l"
    local.write_bytes(b"intruder")
    calls = [
        lambda: archive.stat(name),
        lambda: archive.listdir(name),
        lambda: archive.readlink(name),
        lambda: archive.is_file(name),
        lambda: archive.open(name, "wb"),
        lambda: archive.writedata(name, b"intruder"),
        lambda: archive.add_localfile(str(local), name),
        lambda: archive.replace_localfile(str(local), name),
        lambda: archive.remove(name),
        lambda: archive.mkdir(name),
        lambda: archive.rmdir(name),
        lambda: archive.rename("a.txt", name),
        lambda: archive.rename(name, "stolen"),
        lambda: archive.symlink("a.txt", name),
        lambda: archive.chmod(name, 0o777),
        lambda: archive.utime(name, 0),
    ]
    for call in calls:
        with pytest.raises(NoSuchFile):
            call()
    _outside_untouched(outside)
    assert archive.to_localfile("a.txt")  # still there, not renamed out


def test_links_pointing_out_are_members_but_not_followed(escaping_archive, outside):
    assert escaping_archive.stat("abs-out").is_symlink
    assert escaping_archive.readlink("rel-out") == "../outside/secret"
    assert not escaping_archive.is_file("abs-out")
    assert ("dir-out", stat.S_IFLNK) in escaping_archive.listdir("")
    with pytest.raises(NoSuchFile):
        escaping_archive.listdir("dir-out")
    escaping_archive.remove("abs-out")  # removing the link itself is fine
    with pytest.raises(NoSuchFile):
        escaping_archive.stat("abs-out")
    _outside_untouched(outside)


def test_leading_slash_is_archive_relative(ro_archive):
    assert ro_archive.to_localfile("/a.txt") == ro_archive.to_localfile("a.txt")
    with pytest.raises(NoSuchFile):
        ro_archive.to_localfile("/etc/passwd")  # root/etc/passwd, which is absent


def test_nul_in_name_is_refused(fs_archive):
    with pytest.raises(NoSuchFile, match="NUL"):
        fs_archive.writedata("a\0b", b"x")


def test_dot_components_are_ignored(ro_archive):
    assert ro_archive.to_localfile("./sub//c.txt") == ro_archive.to_localfile("sub/c.txt")


def test_inner_absolute_symlink_is_followed(sample_root):
    os.symlink(os.path.join(sample_root, "sub"), os.path.join(sample_root, "abs-in"))
    archive = FilesystemArchive(url=sample_root)
    with archive.open("abs-in/c.txt") as f:
        assert f.read() == SAMPLE_FILES["sub/c.txt"]
    assert archive.listdir("abs-in")[0] == ("c.txt", stat.S_IFREG)
