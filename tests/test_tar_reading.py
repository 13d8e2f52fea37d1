"""Reading tars made by GNU tar (every --format), bsdtar and Python's tarfile,
plain and with each compression, byte for byte against GNU tar's extraction."""

import os
import stat
import tarfile

import pytest

from archfs.archives import archive_class, open_archive
from archfs.archives.tarfilearchive import TarfileArchive
from archfs.errors import NoSuchAttribute
from tar_builders import (
    COMPRESSORS,
    GNU_FORMATS,
    bsd_tar,
    extract_gnu,
    gnu_tar,
    make_source,
    python_tar,
    tree_of,
)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("tar-src") / "src")


def mounted_tree(archive) -> dict:
    """The same shape as tree_of, read through the plugin API."""
    out = {}
    todo = [""]
    while todo:
        directory = todo.pop()
        for entry in archive.listdir(directory):
            name, mode = entry[0], entry[1]
            path = directory + "/" + name if directory else name
            if stat.S_ISDIR(mode):
                out[path] = ("dir",)
                todo.append(path)
            elif stat.S_ISLNK(mode):
                out[path] = ("link", archive.readlink(path))
            elif stat.S_ISFIFO(mode):
                out[path] = ("fifo",)
            else:
                with archive.open(path) as f:
                    out[path] = ("file", f.read())
    return out


def check_against_gnu(archive_path, tmp_path):
    reference = tree_of(extract_gnu(archive_path, tmp_path / "gnu-extracted"))
    with open_archive(archive_path) as archive:
        assert isinstance(archive, TarfileArchive)
        got = mounted_tree(archive)
        assert sorted(got) == sorted(reference)
        for path, want in reference.items():
            assert got[path] == want, path
        return archive, got


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
@pytest.mark.parametrize("fmt", GNU_FORMATS)
def test_gnu_tar_every_format(source, tmp_path, fmt, suffix):
    archive = gnu_tar(source, tmp_path / ("t-%s.tar" % fmt), fmt, suffix)
    check_against_gnu(archive, tmp_path)


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_bsdtar(source, tmp_path, suffix):
    check_against_gnu(bsd_tar(source, tmp_path / "b.tar", suffix), tmp_path)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_python_tarfile(source, tmp_path, fmt):
    check_against_gnu(python_tar(source, tmp_path / "p.tar", fmt, ".gz"), tmp_path)


@pytest.mark.parametrize("version", ["0.0", "0.1", "1.0"])
def test_pax_sparse_versions(source, tmp_path, version):
    archive = gnu_tar(source, tmp_path / "s.tar", "posix", "",
                      extra=["--sparse-version=" + version])
    with open_archive(archive) as a:
        data = a.open("sparse.img").read()
        assert data == (source / "sparse.img").read_bytes()
        assert a.stat("sparse.img").size == 3 << 20


def test_metadata(source, tmp_path):
    archive = gnu_tar(source, tmp_path / "m.tar", "posix")
    with open_archive(archive) as a:
        st = a.stat("a.txt")
        assert st.mtime_ns == 1_600_000_000_123_456_789       # pax keeps nanoseconds
        assert stat.S_IMODE(st.mode) == stat.S_IMODE(os.stat(source / "a.txt").st_mode)
        assert st.uid == os.getuid() and st.gid == os.getgid()
        hard = a.stat("bin/hard.txt")
        assert hard.ino == st.ino and hard.nlink == st.nlink == 2
        assert a.stat("link").size == len("a.txt")
        assert stat.S_ISFIFO(a.stat("fifo").mode)
        inos = {a.stat(p).ino for p in ("", "bin", "emptydir", "a.txt", "link", "fifo")}
        assert len(inos) == 6


def test_xattrs_and_devices(tmp_path):
    archive = tmp_path / "x.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("f.txt")
        info.size = 3
        info.pax_headers = {"SCHILY.xattr.user.color": "blue", "SCHILY.xattr.user.bin": "\x01x"}
        import io
        tf.addfile(info, io.BytesIO(b"abc"))
        dev = tarfile.TarInfo("dev/null")
        dev.type = tarfile.CHRTYPE
        dev.devmajor, dev.devminor = 1, 3
        tf.addfile(dev)
    with open_archive(archive) as a:
        assert sorted(a.listxattr("f.txt")) == ["user.bin", "user.color"]
        assert a.getxattr("f.txt", "user.color") == b"blue"
        with pytest.raises(NoSuchAttribute):
            a.getxattr("f.txt", "user.none")
        st = a.stat("dev/null")
        assert stat.S_ISCHR(st.mode) and st.rdev == os.makedev(1, 3)


def test_lone_compressed_file(tmp_path):
    import gzip
    import lzma
    payload = os.urandom(100_000) * 3
    for name, opener in (("notes.txt.gz", gzip.open), ("notes.txt.xz", lzma.open)):
        path = tmp_path / name
        with opener(path, "wb") as f:
            f.write(payload)
        with open_archive(path) as a:
            assert a.getnames() == ["notes.txt"]
            assert a.open("notes.txt").read() == payload
            assert a.stat("notes.txt").size == len(payload)
        before = path.read_bytes()
        with open_archive(path, "a") as a:       # writing would make it a tar: refused
            assert not a.writable
        assert path.read_bytes() == before


def test_content_decides_not_the_name(source, tmp_path):
    archive = gnu_tar(source, tmp_path / "t.tar", "gnu", ".gz")
    disguised = tmp_path / "backup.zip"
    os.rename(archive, disguised)
    assert archive_class(disguised) is TarfileArchive
    plain = gnu_tar(source, tmp_path / "p.tar", "ustar")
    os.rename(plain, tmp_path / "noext")
    assert archive_class(tmp_path / "noext") is TarfileArchive


def test_second_open_uses_saved_index(source, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    archive = gnu_tar(source, tmp_path / "c.tar", "gnu", ".gz")
    with open_archive(archive) as a:
        first = mounted_tree(a)
    from archfs.tarengine import scanner
    calls = []
    real = scanner.scan
    monkeypatch.setattr("archfs.tarengine.store.scan", lambda *a, **k: calls.append(1) or real(*a, **k))
    with open_archive(archive) as a:
        assert mounted_tree(a) == first
    assert calls == []
    os.utime(archive, ns=(1, 1))            # changed: the saved index no longer fits
    with open_archive(archive) as a:
        assert mounted_tree(a) == first
    assert calls == [1]
