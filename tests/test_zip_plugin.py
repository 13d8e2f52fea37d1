"""ZipfileArchive: the seed API, its errors, the registry lookups, and the
filesystem extensions (stat, directories, remove, rename, mkdir/rmdir,
replace, commit) as the mount uses them."""

import errno
import io
import os
import stat
import time
import zipfile

import pytest

import archfs.archives as registry
from archfs.archives.abstractarchive import Member
from archfs.archives.writefileio import WriteFileIO
from archfs.archives.zipfilearchive import ZipfileArchive
from archfs.errors import (
    ArchfsError,
    CorruptArchiveError,
    DirectoryNotEmpty,
    FileAlreadyExistsError,
    InvalidArgument,
    InvalidMove,
    IsADirectory,
    NoSuchFile,
    NotADirectory,
    NotAnArchiveError,
    ReadOnlyError,
)
from zip_builders import (
    DEFLATED,
    MSDOS,
    Entry,
    assert_tools_accept,
    extra_block,
    names_by_tool,
    ntfs_extra,
    parse_extras,
    timestamp_extra,
    unzip_listing,
    write_zip,
    zipfile_contents,
)

LINK_ATTR = (stat.S_IFLNK | 0o777) << 16

# The sample archive, in archive order (deliberately not sorted).
SAMPLE = [
    Entry("zz/e.dat", b""),
    Entry("a.txt", b"alpha\n"),
    Entry("sub/", external_attr=((stat.S_IFDIR | 0o750) << 16) | 0x10),
    Entry("sub/c.txt", b"gamma\n" * 50, DEFLATED),
    Entry("b.bin", bytes(range(256)), external_attr=(stat.S_IFREG | 0o600) << 16),
    Entry("sub/deeper/d.txt", b"delta\n"),
    Entry("link-to-a", b"a.txt", external_attr=LINK_ATTR),
    Entry("empty/"),
]
CONTENT = {e.name: e.data for e in SAMPLE if not e.name.endswith("/")}
ORDER = ["zz/e.dat", "a.txt", "sub/c.txt", "b.bin", "sub/deeper/d.txt", "link-to-a"]


@pytest.fixture
def zip_path(tmp_path):
    return write_zip(tmp_path / "sample.zip", SAMPLE)


@pytest.fixture
def ro(zip_path):
    archive = ZipfileArchive(url=zip_path, mode="r")
    yield archive
    archive.close()


@pytest.fixture
def rw(zip_path):
    archive = ZipfileArchive(url=zip_path, mode="a")
    yield archive
    archive.close()


def reopen(archive, mode="a"):
    archive.close()
    return ZipfileArchive(url=archive.location, mode=mode)


def content(archive, name):
    with archive.open(name) as f:
        return f.read()


def snapshot(root):
    """Every path below ``root`` with its content (files) or None (dirs)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.join(dirpath, d)] = None
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                out[full] = f.read()
    return out


# -- identity and opening ----------------------------------------------------------

def test_plugin_identity(ro, zip_path):
    assert ro.name == "zip"
    assert "application/zip" in ro.mimetypes
    assert ".zip" in ZipfileArchive.suffixes
    assert ro.use_query() is False
    assert ro.location == os.path.abspath(zip_path)
    assert ro.writable is False
    assert ro.transport.location == os.path.abspath(zip_path) and ro.transport.is_local
    assert ro.description and ro.authors and ro.url
    assert ro.version.count(".") == 2
    from archfs.engine.fileaccess import ArchiveFile
    given = ArchiveFile(str(zip_path))
    with ZipfileArchive(transport=given, url=zip_path) as with_transport:
        assert with_transport.transport is given     # every read goes through it
        assert with_transport.getnames() == ro.getnames()
    with pytest.raises(ValueError):
        ZipfileArchive()
    with pytest.raises(ValueError, match="scheme"):
        ZipfileArchive(url="nosuchscheme://example.com/a.zip")


@pytest.mark.parametrize("mode", ["a", "w", "r+", "a+"])
def test_writing_modes_are_writable_and_keep_content(zip_path, mode):
    with ZipfileArchive(url=zip_path, mode=mode) as archive:
        assert archive.writable
        assert archive.getnames() == ORDER      # 'w' never truncates, unlike zipfile's
    assert zipfile_contents(zip_path) == CONTENT


def test_file_url(zip_path):
    with ZipfileArchive(url="file://" + zip_path) as archive:
        assert archive.getnames() == ORDER


def test_missing_archive_read_mode(tmp_path):
    with pytest.raises(NoSuchFile) as info:
        ZipfileArchive(url=str(tmp_path / "absent.zip"))
    assert info.value.errno == errno.ENOENT
    assert not (tmp_path / "absent.zip").exists()


@pytest.mark.parametrize("mode", ["w", "a", "r+"])
def test_missing_archive_write_mode_creates_valid_empty_zip(tmp_path, mode):
    path = tmp_path / "new.zip"
    with ZipfileArchive(url=str(path), mode=mode) as archive:
        assert archive.getnames() == []
        assert archive.listdir("") == []
    assert path.exists()
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == []
    assert_tools_accept(path, unzip=False)     # unzip exits 1 on an empty zip by design
    with ZipfileArchive(url=str(path), mode="a") as archive:
        archive.writedata("first.txt", b"1")
    assert zipfile_contents(path) == {"first.txt": b"1"}
    assert_tools_accept(path)


def test_not_an_archive(tmp_path):
    text = tmp_path / "notes.zip"
    text.write_bytes(b"just some text, no zip here\n" * 10)
    with pytest.raises(NotAnArchiveError, match="not a zip"):
        ZipfileArchive(url=str(text))
    with pytest.raises(NotAnArchiveError, match="directory"):
        ZipfileArchive(url=str(tmp_path))
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(NotAnArchiveError, match="empty"):
        ZipfileArchive(url=str(empty))


def test_truncated_archive_names_repair(zip_path, tmp_path):
    """Read-write, a truncated archive is refused naming the ways out;
    read-only, it is read leniently with a warning."""
    data = open(zip_path, "rb").read()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(CorruptArchiveError, match="archfs repair") as info:
        ZipfileArchive(url=str(cut), mode="a")
    assert info.value.errno == errno.EIO and "-o ro" in str(info.value)
    assert cut.read_bytes() == data[:len(data) // 2]
    with ZipfileArchive(url=str(cut)) as archive:
        assert archive.getnames() and "read leniently" in archive.warnings[0]


# -- registry -----------------------------------------------------------------------

def test_registry_by_name(zip_path):
    assert registry.plugin_class("zip") is ZipfileArchive
    assert registry.plugins()["zip"] is ZipfileArchive
    with registry.find_plugin("zip", zip_path) as archive:
        assert isinstance(archive, ZipfileArchive) and archive.getnames() == ORDER


@pytest.mark.parametrize("mimetype", ["application/zip", "application/x-zip-compressed"])
def test_registry_by_mimetype(zip_path, mimetype):
    with registry.find_mimetype_plugin(mimetype, zip_path) as archive:
        assert isinstance(archive, ZipfileArchive) and archive.getnames() == ORDER


@pytest.mark.parametrize("suffix", [".zip", ".jar", ".cbz", ".ZIP"])
def test_registry_by_suffix(zip_path, tmp_path, suffix):
    path = tmp_path / ("copy" + suffix)
    path.write_bytes(open(zip_path, "rb").read())
    with registry.find_suffix_plugin(str(path)) as archive:
        assert isinstance(archive, ZipfileArchive) and archive.getnames() == ORDER
    with registry.open_archive(str(path)) as archive:
        assert isinstance(archive, ZipfileArchive)


def test_registry_sniffs_zip_without_suffix(zip_path, tmp_path):
    path = tmp_path / "no-suffix"
    path.write_bytes(open(zip_path, "rb").read())
    with registry.open_archive(str(path)) as archive:
        assert isinstance(archive, ZipfileArchive) and archive.getnames() == ORDER
    ZipfileArchive(url=str(tmp_path / "e.zip"), mode="w").close()   # starts PK\5\6
    os.rename(tmp_path / "e.zip", tmp_path / "empty-archive")
    with registry.open_archive(str(tmp_path / "empty-archive")) as archive:
        assert isinstance(archive, ZipfileArchive) and archive.getnames() == []


def test_registry_creates_new_zip_in_write_mode(tmp_path):
    path = tmp_path / "made-by-registry.zip"
    with registry.find_suffix_plugin(str(path), mode="w") as archive:
        assert isinstance(archive, ZipfileArchive)
        archive.writedata("x", b"y")
    assert zipfile_contents(path) == {"x": b"y"}


# -- getnames / getmembers: the seed's pattern semantics ---------------------------

def test_getnames_keep_archive_order(ro):
    assert ro.getnames() == ORDER
    assert ro.getmembers() == [Member(n) for n in ORDER]
    assert all(isinstance(m, Member) for m in ro.getmembers())


@pytest.mark.parametrize("files, expected", [
    (None, ORDER),
    ("*", ORDER),
    ([], ORDER),
    ("a.txt", ["a.txt"]),
    ("/a.txt", ["a.txt"]),
    ("*.txt", ["a.txt", "sub/c.txt", "sub/deeper/d.txt"]),
    ("sub", ["sub/c.txt", "sub/deeper/d.txt"]),
    ("sub/", ["sub/c.txt", "sub/deeper/d.txt"]),
    ("sub/deeper", ["sub/deeper/d.txt"]),
    ("zz", ["zz/e.dat"]),
    (["sub/deeper", "zz"], ["zz/e.dat", "sub/deeper/d.txt"]),   # archive order
    (["b.?in", "nothing*"], ["b.bin"]),
    ("[ab].*", ["a.txt", "b.bin"]),
    ("link-*", ["link-to-a"]),
])
def test_getnames_patterns(ro, files, expected):
    assert ro.getnames(files) == expected
    assert ro.getmembers(files) == [Member(n) for n in expected]


@pytest.mark.parametrize("files", ["nothing", ["no", "match*"], "A.TXT", "su", "empty"])
def test_getnames_no_match(ro, files):
    with pytest.raises(FileNotFoundError, match="No such file"):
        ro.getnames(files)
    with pytest.raises(NoSuchFile):
        ro.getmembers(files)


def test_getnames_follow_changes(rw):
    rw.writedata("new.txt", b"n")
    rw.remove("a.txt")
    assert rw.getnames() == [n for n in ORDER if n != "a.txt"] + ["new.txt"]
    assert rw.getnames("new*") == ["new.txt"]


def test_basename(ro):
    member = ro.getmembers("sub/deeper/d.txt")[0]
    assert ro.basename(member) == "d.txt"
    assert ro.basename("sub/c.txt") == "c.txt"


# -- open ------------------------------------------------------------------------------

def test_open_read_is_a_seekable_binary_file(ro):
    with ro.open("b.bin", "rb") as f:
        assert f.readable() and f.seekable()
        assert f.read(4) == b"\x00\x01\x02\x03"
        assert f.seek(200) == 200 and f.tell() == 200
        assert f.read(3) == bytes([200, 201, 202])
        f.seek(-2, io.SEEK_END)
        assert f.read() == b"\xfe\xff"
        assert f.read() == b""
        f.seek(-10, io.SEEK_CUR)
        assert f.read(1) == bytes([246])
        f.seek(1000)
        assert f.read(5) == b""
    with ro.open(Member("sub/c.txt")) as f:
        buffered = io.BufferedReader(f)
        assert buffered.readline() == b"gamma\n"
        assert buffered.read() == b"gamma\n" * 49


def test_open_every_member(ro):
    for name in ORDER:
        assert content(ro, name) == CONTENT[name]


def test_open_errors(ro):
    with pytest.raises(NoSuchFile):
        ro.open("missing")
    with pytest.raises(IsADirectory):
        ro.open("sub")
    with pytest.raises(IsADirectory):
        ro.open("")
    with pytest.raises(ValueError, match="mode"):
        ro.open("a.txt", "rt")


def test_open_write_stores_on_close(rw):
    f = rw.open("new/dir/n.txt", "wb")
    assert isinstance(f, WriteFileIO)
    f.write(b"hello ")
    f.write(b"world")
    with pytest.raises(NoSuchFile):
        rw.open("new/dir/n.txt")        # not stored before close
    f.close()
    assert not os.path.exists(f.name)
    assert content(rw, "new/dir/n.txt") == b"hello world"
    rw = reopen(rw)
    assert content(rw, "new/dir/n.txt") == b"hello world"
    rw.close()


def test_open_write_on_existing_member_replaces_it(rw):
    with rw.open("a.txt", "wb") as f:
        f.write(b"new")
    rw.commit()
    assert content(rw, "a.txt") == b"new"
    with zipfile.ZipFile(rw.location) as z:
        assert [i.filename for i in z.infolist()].count("a.txt") == 1


def test_open_write_read_only(ro, zip_path):
    before = open(zip_path, "rb").read()
    with pytest.raises(ReadOnlyError) as info:
        ro.open("a.txt", "wb")
    assert isinstance(info.value, PermissionError) and info.value.errno == errno.EROFS
    assert open(zip_path, "rb").read() == before


# -- to_localfile ---------------------------------------------------------------------

def test_to_localfile(ro, tmp_path):
    path = ro.to_localfile("sub/c.txt")
    assert os.path.isfile(path) and not os.path.islink(path)
    with open(path, "rb") as f:
        assert f.read() == CONTENT["sub/c.txt"]
    assert path.endswith("sub/c.txt")
    assert os.path.commonpath([path, str(tmp_path)]) == str(tmp_path)
    other = ro.to_localfile(Member("b.bin"))
    with open(other, "rb") as f:
        assert f.read() == CONTENT["b.bin"]
    with pytest.raises(NoSuchFile):
        ro.to_localfile("missing")
    scratch = os.path.dirname(os.path.dirname(os.path.dirname(path)))
    ro.close()
    assert not os.path.exists(path) and not os.path.exists(scratch)


def test_to_localfile_follows_replacement(rw):
    first = rw.to_localfile("a.txt")
    with open(first, "rb") as f:
        assert f.read() == b"alpha\n"
    rw.writedata("a.txt", b"second version")
    second = rw.to_localfile("a.txt")
    with open(second, "rb") as f:
        assert f.read() == b"second version"


HOSTILE = [b"../x", b"/abs", b"a/../../b", b"..\\..\\w", b"c/./d", b"../../../../tmp/evil",
           b"./../e"]


def test_to_localfile_never_writes_outside_its_directory(tmp_path):
    archive_dir = tmp_path / "arch"
    archive_dir.mkdir()
    path = write_zip(archive_dir / "hostile.zip",
                     [Entry(n, b"payload %d" % i) for i, n in enumerate(HOSTILE)])
    before = snapshot(str(tmp_path))
    with ZipfileArchive(url=path) as archive:
        names = archive.getnames()
        assert sorted(names) == sorted(["x", "abs", "a/%2E%2E/%2E%2E/b", "w", "c/%2E/d",
                                        "tmp/evil", "e"])
        for name in names:
            local = archive.to_localfile(name)
            scratch = archive._scratch()
            assert os.path.commonpath([os.path.realpath(local), scratch]) == scratch
        for raw in HOSTILE:            # the raw spellings, asked for directly
            try:
                local = archive.to_localfile(raw.decode())
            except (NoSuchFile, InvalidArgument):
                continue
            assert os.path.commonpath([os.path.realpath(local), archive._scratch()]) \
                == archive._scratch()
        created = set(snapshot(str(tmp_path))) - set(before)
        assert all(p.startswith(archive._scratch()) for p in created), created
    assert snapshot(str(tmp_path)) == before


# -- add_localfile / writedata / is_file ------------------------------------------------

def test_add_localfile(rw, tmp_path):
    local = tmp_path / "script.sh"
    local.write_bytes(b"#!/bin/sh\necho hi\n")
    os.utime(local, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_700))
    rw.add_localfile(str(local), "bin/script.sh")
    assert local.exists()
    assert content(rw, "bin/script.sh") == b"#!/bin/sh\necho hi\n"
    rw = reopen(rw)
    assert content(rw, "bin/script.sh") == b"#!/bin/sh\necho hi\n"
    assert rw.stat("bin/script.sh").mtime_ns == 1_600_000_000_123_456_700
    rw.close()


def test_add_localfile_keeps_the_local_mode(rw, tmp_path):
    local = tmp_path / "tool"
    local.write_bytes(b"#!/bin/sh\n")
    local.chmod(0o750)
    rw.add_localfile(str(local), "tool")
    assert stat.S_IMODE(rw.stat("tool").mode) == 0o750


@pytest.mark.parametrize("name", ["a.txt", "link-to-a", "sub", "empty", "zz"])
def test_add_localfile_existing_name(rw, tmp_path, name):
    local = tmp_path / "l"
    local.write_bytes(b"new")
    with pytest.raises(FileAlreadyExistsError) as info:
        rw.add_localfile(str(local), name)
    assert info.value.errno == errno.EEXIST
    assert content(rw, "a.txt") == CONTENT["a.txt"]
    rw.commit()
    assert zipfile_contents(rw.location) == CONTENT


def test_add_localfile_errors(rw, ro, tmp_path):
    with pytest.raises(FileNotFoundError):
        rw.add_localfile(str(tmp_path / "absent"), "x")
    local = tmp_path / "l"
    local.write_bytes(b"")
    with pytest.raises(ReadOnlyError):
        ro.add_localfile(str(local), "x")
    with pytest.raises(NotADirectory):
        rw.add_localfile(str(local), "a.txt/inner")
    assert "x" not in rw.getnames()


def test_writedata_creates_and_replaces(rw):
    rw.writedata("fresh/f.bin", b"\x00\x01")
    assert content(rw, "fresh/f.bin") == b"\x00\x01"
    assert stat.S_IMODE(rw.stat("fresh/f.bin").mode) == 0o644
    rw.writedata("b.bin", bytearray(b"replaced"))
    assert content(rw, "b.bin") == b"replaced"
    assert stat.S_IMODE(rw.stat("b.bin").mode) == 0o600      # the old member's mode
    rw.commit()
    with zipfile.ZipFile(rw.location) as z:
        names = z.namelist()
        assert names.count("b.bin") == 1 and z.read("b.bin") == b"replaced"
        assert z.getinfo("b.bin").external_attr >> 16 == stat.S_IFREG | 0o600


def test_writedata_errors(rw, ro):
    with pytest.raises(TypeError):
        rw.writedata("a.txt", "text")
    with pytest.raises(IsADirectory):
        rw.writedata("sub", b"x")
    with pytest.raises(NotADirectory):
        rw.writedata("a.txt/inner", b"x")
    with pytest.raises(ReadOnlyError):
        ro.writedata("a.txt", b"x")
    assert content(rw, "a.txt") == CONTENT["a.txt"]


def test_is_file(ro):
    assert ro.is_file("a.txt") and ro.is_file(Member("zz/e.dat"))
    assert not ro.is_file("sub") and not ro.is_file("empty") and not ro.is_file("")
    assert not ro.is_file("missing")


def test_close_commits_and_context_manager(zip_path):
    with ZipfileArchive(url=zip_path, mode="a") as archive:
        archive.writedata("x", b"1")
    assert zipfile_contents(zip_path)["x"] == b"1"
    archive.close()   # twice is harmless
    with pytest.raises(ValueError):
        archive.open("x")


READ_ONLY_CALLS = [
    ("writedata", ("a.txt", b"x")),
    ("remove", ("a.txt",)),
    ("rename", ("a.txt", "b.txt")),
    ("mkdir", ("newdir",)),
    ("rmdir", ("empty",)),
    ("symlink", ("a.txt", "l2")),
    ("chmod", ("a.txt", 0o600)),
    ("utime", ("a.txt", 0)),
    ("compact", ()),
]


@pytest.mark.parametrize("method, args", READ_ONLY_CALLS, ids=[c[0] for c in READ_ONLY_CALLS])
def test_every_change_on_read_only_raises(ro, zip_path, method, args):
    before = open(zip_path, "rb").read()
    with pytest.raises(ReadOnlyError) as info:
        getattr(ro, method)(*args)
    assert info.value.errno == errno.EROFS
    ro.commit()      # nothing to commit: not an error
    assert open(zip_path, "rb").read() == before


def test_replace_localfile_read_only(ro, tmp_path, zip_path):
    local = tmp_path / "l"
    local.write_bytes(b"x")
    with pytest.raises(ReadOnlyError):
        ro.replace_localfile(str(local), "a.txt")
    with pytest.raises(ReadOnlyError):
        ro.add_localfile(str(local), "new")


# -- stat -------------------------------------------------------------------------------

def test_stat_files_dirs_symlinks(ro):
    st = ro.stat("b.bin")
    assert st.is_file and st.size == 256 and stat.S_IMODE(st.mode) == 0o600
    assert ro.stat("sub/c.txt").size == 300
    explicit = ro.stat("sub")
    assert explicit.is_dir and stat.S_IMODE(explicit.mode) == 0o750
    implied = ro.stat("sub/deeper")
    assert implied.is_dir and implied.size == 0
    assert ro.stat("zz").is_dir and ro.stat("").is_dir and ro.stat("empty").is_dir
    link = ro.stat("link-to-a")
    assert link.is_symlink and link.size == len("a.txt")
    assert ro.readlink("link-to-a") == "a.txt"
    local_2021 = time.mktime((2021, 3, 4, 5, 6, 8, 0, 0, -1))
    assert ro.stat("a.txt").mtime_ns == int(local_2021) * 10**9


def test_stat_errors(ro):
    with pytest.raises(NoSuchFile):
        ro.stat("missing")
    with pytest.raises(NoSuchFile):
        ro.stat("a.txt/below")
    with pytest.raises(ArchfsError) as info:
        ro.readlink("a.txt")
    assert info.value.errno == errno.EINVAL
    with pytest.raises(NoSuchFile):
        ro.readlink("missing")


def test_stat_mtime_precision_from_extras(tmp_path):
    exact_s = 1_700_000_001          # odd: MS-DOS time cannot hold it
    exact_ns = 1_700_000_001_234_567_800
    path = write_zip(tmp_path / "times.zip", [
        Entry("dos-only", b"1"),
        Entry("ut", b"2", extra=timestamp_extra(exact_s)),
        Entry("ntfs", b"3", extra=ntfs_extra(exact_ns)),
        Entry("both", b"4", extra=timestamp_extra(exact_s) + ntfs_extra(exact_ns)),
        Entry("both-reversed", b"5", extra=ntfs_extra(exact_ns) + timestamp_extra(exact_s)),
    ])
    with ZipfileArchive(url=path) as archive:
        dos = int(time.mktime((2021, 3, 4, 5, 6, 8, 0, 0, -1))) * 10**9
        assert archive.stat("dos-only").mtime_ns == dos
        assert archive.stat("ut").mtime_ns == exact_s * 10**9
        assert archive.stat("ntfs").mtime_ns == exact_ns
        assert archive.stat("both").mtime_ns == exact_ns
        assert archive.stat("both-reversed").mtime_ns == exact_ns


def test_stat_mode_from_external_attributes(tmp_path):
    path = write_zip(tmp_path / "modes.zip", [
        Entry("unix-0640", b"", external_attr=(stat.S_IFREG | 0o640) << 16),
        Entry("unix-setuid", b"", external_attr=(stat.S_IFREG | 0o4755) << 16),
        Entry("dos-readonly", b"", create_system=MSDOS, external_attr=0x01),
        Entry("dos-plain", b"", create_system=MSDOS, external_attr=0x20),
        Entry("dos-dir-no-slash", b"", create_system=MSDOS, external_attr=0x10),
        Entry("unix-no-attr", b"", external_attr=0),
        Entry("a-link", b"target/x", external_attr=LINK_ATTR),
    ])
    with ZipfileArchive(url=path) as archive:
        assert archive.stat("unix-0640").mode == stat.S_IFREG | 0o640
        assert archive.stat("unix-setuid").mode == stat.S_IFREG | 0o4755
        assert archive.stat("dos-readonly").mode == stat.S_IFREG | 0o444
        assert archive.stat("dos-plain").mode == stat.S_IFREG | 0o644
        assert archive.stat("dos-dir-no-slash").is_dir
        assert archive.stat("unix-no-attr").mode == stat.S_IFREG | 0o644
        assert archive.stat("a-link").mode == stat.S_IFLNK | 0o777
        assert archive.readlink("a-link") == "target/x"


def test_stat_owner_from_unix_extra(tmp_path):
    ux = extra_block(0x7875, bytes((1, 4)) + (1234).to_bytes(4, "little")
                     + bytes((4,)) + (5678).to_bytes(4, "little"))
    path = write_zip(tmp_path / "owner.zip", [Entry("owned", b"x", extra=ux), Entry("plain", b"")])
    with ZipfileArchive(url=path) as archive:
        st = archive.stat("owned")
        assert (st.uid, st.gid) == (1234, 5678)
        assert (archive.stat("plain").uid, archive.stat("plain").gid) == (None, None)


def test_written_member_keeps_mode_and_mtime(rw, tmp_path):
    local = tmp_path / "l"
    local.write_bytes(b"exec me")
    mtime_ns = 1_650_000_001_987_654_321
    rw.replace_localfile(str(local), "tools/run", mode=0o751, mtime_ns=mtime_ns)
    rw.symlink("run", "tools/alias")
    rw = reopen(rw, "r")
    st = rw.stat("tools/run")
    assert st.mode == stat.S_IFREG | 0o751
    assert st.mtime_ns == mtime_ns // 100 * 100          # NTFS time: 100 ns units
    assert rw.readlink("tools/alias") == "run" and rw.stat("tools/alias").is_symlink
    rw.close()
    with zipfile.ZipFile(rw.location) as z:
        info = z.getinfo("tools/run")
        assert info.external_attr >> 16 == stat.S_IFREG | 0o751
        assert info.date_time == time.localtime(mtime_ns // 10**9)[:5] + (
            time.localtime(mtime_ns // 10**9).tm_sec // 2 * 2,)
        ut = parse_extras(info.extra)[0x5455]
        assert int.from_bytes(ut[1:5], "little") == mtime_ns // 10**9
        assert z.getinfo("tools/alias").external_attr >> 16 == stat.S_IFLNK | 0o777
    perms = unzip_listing(rw.location)
    assert perms["tools/run"] == "-rwxr-x--x"
    assert perms["tools/alias"].startswith("l")


# -- listdir ------------------------------------------------------------------------------

def test_listdir(ro):
    assert sorted(ro.listdir("")) == sorted([
        ("zz", stat.S_IFDIR | 0o755), ("a.txt", stat.S_IFREG | 0o644),
        ("sub", stat.S_IFDIR | 0o750), ("b.bin", stat.S_IFREG | 0o600),
        ("link-to-a", stat.S_IFLNK | 0o777), ("empty", stat.S_IFDIR | 0o755)])
    assert sorted(n for n, _ in ro.listdir("sub")) == ["c.txt", "deeper"]
    assert ro.listdir("sub/deeper") == [("d.txt", stat.S_IFREG | 0o644)]
    assert ro.listdir("empty") == []
    with pytest.raises(NoSuchFile):
        ro.listdir("missing")
    with pytest.raises(NotADirectory):
        ro.listdir("a.txt")


# -- remove ----------------------------------------------------------------------------------

def test_remove(rw):
    rw.remove("link-to-a")
    rw.remove("sub/deeper/d.txt")
    assert "link-to-a" not in rw.getnames()
    rw = reopen(rw)
    assert rw.getnames() == ["zz/e.dat", "a.txt", "sub/c.txt", "b.bin"]
    assert rw.stat("sub/deeper").is_dir      # a directory does not vanish with its last file
    rw.close()
    assert_tools_accept(rw.location)


def test_remove_errors(rw):
    with pytest.raises(IsADirectory):
        rw.remove("sub")
    with pytest.raises(IsADirectory):
        rw.remove("")
    with pytest.raises(NoSuchFile):
        rw.remove("missing")
    assert rw.getnames() == ORDER


# -- mkdir / rmdir ----------------------------------------------------------------------------

def test_mkdir_persists_empty_directory(rw):
    rw.mkdir("newdir", 0o700)
    rw.mkdir("sub/deeper/inner")
    assert rw.stat("newdir").mode == stat.S_IFDIR | 0o700
    rw = reopen(rw)
    assert rw.stat("newdir").mode == stat.S_IFDIR | 0o700
    assert rw.listdir("sub/deeper/inner") == []
    rw.close()
    assert "newdir/" in zipfile.ZipFile(rw.location).namelist()
    assert_tools_accept(rw.location)


def test_mkdir_errors(rw):
    for name in ("sub", "a.txt", "link-to-a", "zz", "empty"):
        with pytest.raises(FileAlreadyExistsError):
            rw.mkdir(name)
    with pytest.raises(NotADirectory):
        rw.mkdir("a.txt/child")
    with pytest.raises(NoSuchFile):
        rw.mkdir("no/parent")


def test_rmdir(rw):
    rw.rmdir("empty")
    with pytest.raises(NoSuchFile):
        rw.stat("empty")
    rw.remove("sub/deeper/d.txt")
    rw.rmdir("sub/deeper")             # an implied directory, emptied
    rw = reopen(rw)
    for gone in ("empty", "sub/deeper"):
        with pytest.raises(NoSuchFile):
            rw.stat(gone)
    rw.close()
    assert not any(n.startswith(("empty", "sub/deeper"))
                   for n in zipfile.ZipFile(rw.location).namelist())


def test_rmdir_errors(rw):
    with pytest.raises(DirectoryNotEmpty) as info:
        rw.rmdir("sub")
    assert info.value.errno == errno.ENOTEMPTY
    with pytest.raises(DirectoryNotEmpty):
        rw.rmdir("zz")                    # implied, holding a file
    with pytest.raises(NotADirectory):
        rw.rmdir("a.txt")
    with pytest.raises(NotADirectory):
        rw.rmdir("link-to-a")
    with pytest.raises(NoSuchFile):
        rw.rmdir("missing")
    with pytest.raises(ArchfsError):
        rw.rmdir("")
    assert rw.stat("sub").is_dir and rw.getnames() == ORDER


# -- rename: rename(2) semantics --------------------------------------------------------------

def test_rename_file(rw):
    rw.rename("a.txt", "sub/moved.txt")
    assert content(rw, "sub/moved.txt") == CONTENT["a.txt"]
    with pytest.raises(NoSuchFile):
        rw.stat("a.txt")
    rw = reopen(rw)
    assert content(rw, "sub/moved.txt") == CONTENT["a.txt"]
    assert "a.txt" not in rw.getnames()
    rw.close()
    assert_tools_accept(rw.location)


def test_rename_file_replaces_file(rw):
    rw.rename("a.txt", "b.bin")
    assert content(rw, "b.bin") == CONTENT["a.txt"]
    rw.commit()
    with zipfile.ZipFile(rw.location) as z:
        assert z.namelist().count("b.bin") == 1 and "a.txt" not in z.namelist()
        assert z.read("b.bin") == CONTENT["a.txt"]


def test_rename_directory_moves_subtree(rw):
    rw.rename("sub", "zz/sub2")
    assert content(rw, "zz/sub2/deeper/d.txt") == CONTENT["sub/deeper/d.txt"]
    assert rw.stat("zz/sub2").mode == stat.S_IFDIR | 0o750     # the explicit entry moved
    with pytest.raises(NoSuchFile):
        rw.stat("sub")
    rw = reopen(rw)
    assert sorted(rw.getnames("zz")) == ["zz/e.dat", "zz/sub2/c.txt", "zz/sub2/deeper/d.txt"]
    assert not any(n.startswith("sub/") for n in rw.getnames())
    rw.close()
    names = names_by_tool(rw.location)
    assert all(v == names["zipfile"] for v in names.values()), names
    assert not any(n == "sub" or n.startswith("sub/") for n in names["zipfile"])
    assert_tools_accept(rw.location)


def test_rename_implied_directory(rw):
    rw.rename("sub/deeper", "deep")
    assert content(rw, "deep/d.txt") == CONTENT["sub/deeper/d.txt"]
    rw = reopen(rw)
    assert "deep/d.txt" in rw.getnames() and "sub/deeper/d.txt" not in rw.getnames()
    assert rw.listdir("sub") == [("c.txt", stat.S_IFREG | 0o644)]
    rw.close()


def test_rename_directory_replaces_empty_directory(rw):
    rw.rename("zz", "empty")
    assert content(rw, "empty/e.dat") == b""
    with pytest.raises(NoSuchFile):
        rw.stat("zz")
    rw = reopen(rw)
    assert rw.getnames("empty") == ["empty/e.dat"]
    rw.close()


def test_rename_same_name_and_symlink(rw):
    rw.rename("a.txt", "a.txt")
    assert content(rw, "a.txt") == CONTENT["a.txt"]
    rw.rename("link-to-a", "sub/link")
    assert rw.readlink("sub/link") == "a.txt"


@pytest.mark.parametrize("old, new, error", [
    ("a.txt", "sub", IsADirectory),
    ("a.txt", "empty", IsADirectory),
    ("sub", "a.txt", NotADirectory),
    ("zz", "sub", DirectoryNotEmpty),
    ("sub", "sub/deeper/x", InvalidMove),
    ("sub", "sub/new", InvalidMove),
    ("missing", "x", NoSuchFile),
    ("a.txt", "nodir/x", NoSuchFile),
    ("a.txt", "b.bin/x", NotADirectory),
    ("", "x", InvalidMove),
])
def test_rename_errors(rw, old, new, error):
    with pytest.raises(error):
        rw.rename(old, new)
    assert rw.getnames() == ORDER
    rw.commit()
    assert zipfile_contents(rw.location) == CONTENT


# -- replace / commit --------------------------------------------------------------------------

def test_replace_never_leaves_two_entries_of_one_name(rw, tmp_path):
    local = tmp_path / "l"
    for i in range(3):
        local.write_bytes(b"version %d" % i)
        rw.replace_localfile(str(local), "a.txt")
        rw.writedata("sub/c.txt", b"v%d" % i)
        rw.commit()
    listed = zipfile.ZipFile(rw.location).namelist()
    assert len(listed) == len(set(listed))
    assert zipfile_contents(rw.location)["a.txt"] == b"version 2"
    assert zipfile_contents(rw.location)["sub/c.txt"] == b"v2"
    names = names_by_tool(rw.location)
    assert all(v == names["zipfile"] for v in names.values()), names
    assert_tools_accept(rw.location)


def test_replace_localfile_errors(rw, tmp_path):
    local = tmp_path / "l"
    local.write_bytes(b"x")
    with pytest.raises(IsADirectory):
        rw.replace_localfile(str(local), "sub")
    with pytest.raises(IsADirectory):
        rw.replace_localfile(str(local), "")
    with pytest.raises(FileNotFoundError):
        rw.replace_localfile(str(tmp_path / "absent"), "a.txt")
    assert content(rw, "a.txt") == CONTENT["a.txt"]


def test_commit_makes_changes_visible_to_other_readers(rw):
    rw.writedata("c1", b"one")
    rw.commit()
    assert zipfile_contents(rw.location)["c1"] == b"one"      # while still open
    rw.writedata("c2", b"two")
    assert "c2" not in zipfile_contents(rw.location)           # not before the commit
    rw.commit()
    assert zipfile_contents(rw.location)["c2"] == b"two"
    assert_tools_accept(rw.location)


def test_chmod_and_utime(rw):
    rw.chmod("a.txt", 0o600)
    rw.utime("a.txt", 1_500_000_000_000_000_000)
    rw.chmod("zz", 0o700)            # an implied directory gets an entry to hold it
    rw = reopen(rw)
    assert rw.stat("a.txt").mode == stat.S_IFREG | 0o600
    assert rw.stat("a.txt").mtime_ns == 1_500_000_000_000_000_000
    assert rw.stat("zz").mode == stat.S_IFDIR | 0o700
    assert content(rw, "zz/e.dat") == b""
    rw.close()
    with zipfile.ZipFile(rw.location) as z:
        assert z.getinfo("a.txt").external_attr >> 16 == stat.S_IFREG | 0o600
    assert_tools_accept(rw.location)
