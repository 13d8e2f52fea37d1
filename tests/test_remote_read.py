"""Remote archives read through real servers on 127.0.0.1: every workload
mounted from S3 (SeaweedFS) and from HTTP reads exactly as the local mount;
opening a big zip costs O(1) requests, counted on the wire; a second mount
loads the saved index; -v logs what mounts and reads cost, and nothing
secret reaches a log or the mount table."""

import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from mount_fixtures import archfs, build_archive
from tar_builders import gnu_tar, make_source
from zip_builders import build_many, pseudo_random

ZIP_PASSWORD = "s3cret-pw"
ARCHIVE_TIME = 1_000_000_007_000_000_000   # the local copy's mtime, to recognize it


def walk(root: Path) -> dict:
    """Everything a reader of the mount sees: names, types, modes, times,
    contents and link targets (a FIFO is not opened)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            kind = stat.S_IFMT(st.st_mode)
            entry = [kind, stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_nlink]
            if stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                entry += [st.st_size, path.read_bytes()]
            out[rel] = tuple(entry)
    return out


# -- the workloads: what the local tests mount, a representative set ---------------

def _sample_zip(where: Path) -> Path:
    return build_archive("zip", where)       # Info-ZIP: symlink, empty dir and file


def _methods_zip(where: Path) -> Path:
    path = where / "methods.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("stored.bin", (2020, 1, 2, 3, 4, 6)),
                    pseudo_random(70000, 1), zipfile.ZIP_STORED)
        zf.writestr("deflated/big.txt", pseudo_random(3 << 20, 2, alphabet=16),
                    zipfile.ZIP_DEFLATED)
        zf.writestr("deflated/small.txt", b"small\n" * 100, zipfile.ZIP_DEFLATED)
        zf.writestr("bzip2.txt", pseudo_random(200000, 3, alphabet=8), zipfile.ZIP_BZIP2)
        zf.writestr("lzma.txt", pseudo_random(200000, 4, alphabet=8), zipfile.ZIP_LZMA)
        zf.writestr("dir/", b"")
    return path


def _encrypted_zip(where: Path) -> Path:
    src = where / "enc-src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "secret.txt").write_bytes(b"encrypted member\n" * 300)
    (src / "plain.bin").write_bytes(pseudo_random(5000, 5))
    path = where / "encrypted.zip"
    subprocess.run(["zip", "-qr", "-P", ZIP_PASSWORD, str(path), "."], cwd=src, check=True)
    return path


def _many_zip(where: Path) -> Path:
    path = where / "many.zip"
    build_many(path, 600)
    return path


def _tar(suffix: str):
    def build(where: Path) -> Path:
        src = make_source(where / "tar-src")
        return gnu_tar(src, where / "source.tar", "posix", suffix)
    return build


WORKLOADS = {
    "sample.zip": (_sample_zip, ()),
    "methods.zip": (_methods_zip, ()),
    "encrypted.zip": (_encrypted_zip, ("password=" + ZIP_PASSWORD,)),
    "many.zip": (_many_zip, ()),
    "posix.tar": (_tar(""), ()),
    "posix.tar.gz": (_tar(".gz"), ()),
    "posix.tar.bz2": (_tar(".bz2"), ()),
    "posix.tar.xz": (_tar(".xz"), ()),
    "posix.tar.zst": (_tar(".zst"), ()),
}


def api_walk(archive) -> dict:
    """What the plugin API says of everything in an archive (what a mount
    serves): stat of every entry, content of every file, link targets."""
    out = {}
    todo = [""]
    while todo:
        top = todo.pop()
        for item in archive.listdir(top):
            path = item[0] if not top else top + "/" + item[0]
            st = archive.stat(path)
            entry = [st.mode, st.mtime_ns, st.uid, st.gid, st.nlink, st.ino, st.rdev]
            if stat.S_ISDIR(st.mode):
                todo.append(path)
            elif stat.S_ISLNK(st.mode):
                entry.append(archive.readlink(path))
            elif stat.S_ISREG(st.mode):
                with archive.open(path) as f:
                    entry += [st.size, f.read()]
            out[path] = tuple(entry)
    return out


def _place(workload, tmp_path, s3, http_server):
    """The workload built, as a local file and on both servers: (local path,
    its URLs, its -o options)."""
    build, options = WORKLOADS[workload]
    (tmp_path / "build").mkdir()
    archive = build(tmp_path / "build")
    name = "w-" + workload           # the suffix names the format, as locally
    local = tmp_path / name
    shutil.copyfile(archive, local)
    s3.put_file(name, local)
    shutil.copyfile(local, http_server.root / name)
    os.utime(local, ns=(ARCHIVE_TIME, ARCHIVE_TIME))
    return local, (s3.url(name), "%s/%s" % (http_server.url, name)), options


def _same(seen: dict, expected: dict, where: str, time_at: int) -> None:
    assert seen.keys() == expected.keys(), where
    for path, entry in expected.items():
        got = seen[path]
        if stat.S_ISDIR(entry[0]) and entry[time_at] == ARCHIVE_TIME:
            # a directory the archive only implies shows the archive's own time,
            # which differs between a local copy and the object
            entry = entry[:time_at] + entry[time_at + 1:]
            got = got[:time_at] + got[time_at + 1:]
        assert got == entry, (where, path)


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_every_workload_reads_the_same_from_s3_and_http(workload, tmp_path, s3, http_server):
    """Through the plugin API: every byte, name, mode and time as from the local file."""
    import archfs
    local, urls, options = _place(workload, tmp_path, s3, http_server)
    opts = dict(o.split("=", 1) for o in options)
    with archfs.open_archive(str(local), **opts) as archive:
        expected = api_walk(archive)
    assert len(expected) >= 3
    for url in urls:
        with archfs.open_archive(url, **opts) as archive:
            assert not archive.transport.is_local
            _same(api_walk(archive), expected, url, 1)


@pytest.mark.parametrize("workload", ["sample.zip", "methods.zip", "posix.tar.gz"])
def test_s3_and_http_mounts_read_exactly_as_the_local_mount(workload, tmp_path, s3,
                                                            http_server, mounter):
    local, urls, options = _place(workload, tmp_path, s3, http_server)
    expected = walk(mounter(local, "ro", *options).path)
    assert len(expected) >= 3
    for url in urls:
        remote = mounter(url, "ro", *options)
        _same(walk(remote.path), expected, url, 2)
        remote.unmount()


def test_opening_a_100000_member_zip_costs_one_head_and_at_most_4_gets(tmp_path, s3,
                                                                        s3_proxy, mounter):
    """Counted on the wire, by a proxy in front of the store."""
    path = tmp_path / "many.zip"
    names = build_many(path, 100_000)
    s3.put_file("many.zip", path)
    s3_proxy.reset()
    m = mounter(s3.url("many.zip"), "ro")
    heads, gets = s3_proxy.count("HEAD"), s3_proxy.count("GET")
    assert heads == 1 and gets <= 4, s3_proxy.log
    assert s3_proxy.count() == heads + gets, s3_proxy.log      # nothing else either
    got = s3_proxy.log[:]
    assert (m / names[77_777]).read_bytes() == b"77777"
    assert sorted(os.listdir(m / "d42"))[:2] == ["f42000", "f42001"]
    m.unmount()
    assert "opened with %d requests" % len(got) in m.log()
    # a second mount (any machine sharing the cache directory) loads the saved index
    s3_proxy.reset()
    again = mounter(s3.url("many.zip"), "ro")
    assert s3_proxy.count("HEAD") == 1 and s3_proxy.count("GET") <= 2, s3_proxy.log
    data = path.read_bytes()
    eocd = data.rindex(b"PK\x05\x06")
    directory = int.from_bytes(data[eocd + 12:eocd + 16], "little")
    received = sum(entry[3] for entry in s3_proxy.log)
    assert received < directory / 2, (received, directory)      # the directory stayed there
    assert (again / names[5]).read_bytes() == b"5"
    again.unmount()


def test_verbose_logs_requests_per_mount_and_per_read_and_no_secret(tmp_path, s3, mounter,
                                                                    monkeypatch,
                                                                    http_server):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    path = _methods_zip(tmp_path)
    s3.put_file("v.zip", path)
    log_file = tmp_path / "verbose.log"
    point = tmp_path / "vmnt"
    point.mkdir()
    result = archfs("mount", "-v", "--log-file", log_file, s3.url("v.zip"), point)
    assert result.returncode == 0, result.stderr
    try:
        data = (point / "deflated" / "big.txt").read_bytes()
    finally:
        assert archfs("unmount", point).returncode == 0
    assert len(data) == 3 << 20
    text = log_file.read_text()
    assert "opened with" in text and "requests (" in text          # per mount
    assert "read of" in text and "request" in text                 # per read
    assert "test-secret" not in text and "test-secret" not in result.stderr
    # a URL's password and query stay out of the log and of the mount table
    shutil.copyfile(path, http_server.root / "v.zip")
    url = http_server.url.replace("http://", "http://user:hunter2@") + "/v.zip?token=abc"
    log2 = tmp_path / "http.log"
    result = archfs("mount", "-v", "--log-file", log2, url, point)
    assert result.returncode == 0, result.stderr
    try:
        with open("/proc/self/mounts") as f:
            mounts = f.read()
        assert str(point) in mounts and "hunter2" not in mounts and "token=abc" not in mounts
        assert (point / "deflated" / "small.txt").read_bytes() == b"small\n" * 100
    finally:
        assert archfs("unmount", point).returncode == 0
    assert "hunter2" not in log2.read_text() and "token=abc" not in log2.read_text()


def test_http_mounts_read_only_with_a_one_line_notice(tmp_path, http_server, mounter):
    path = _methods_zip(tmp_path)
    shutil.copyfile(path, http_server.root / "a.zip")
    point = tmp_path / "mnt"
    point.mkdir()
    result = archfs("mount", "%s/a.zip" % http_server.url, point)
    try:
        assert result.returncode == 0, result.stderr
        warning = [line for line in result.stderr.splitlines() if "warning" in line]
        assert len(warning) == 1 and "read-only" in warning[0] and "HTTP" in warning[0]
        with pytest.raises(OSError) as info:
            (point / "new.txt").write_text("no")
        assert info.value.errno == 30        # EROFS
        assert (point / "lzma.txt").stat().st_size == 200000
    finally:
        assert archfs("unmount", point).returncode == 0


def test_an_object_changed_under_a_mount_fails_reads_instead_of_mixing(tmp_path, http_server,
                                                                       mounter):
    """Every GET is conditional on the ETag the mount saw."""
    served = http_server.root / "c.zip"
    with zipfile.ZipFile(served, "w") as zf:
        zf.writestr("first.txt", b"first\n", zipfile.ZIP_STORED)
        zf.writestr("big.bin", pseudo_random(6 << 20, 7), zipfile.ZIP_STORED)
    m = mounter("%s/c.zip" % http_server.url, "ro")
    assert (m / "first.txt").read_bytes() == b"first\n"
    with zipfile.ZipFile(served, "a") as zf:          # a new version of the object
        zf.writestr("added.txt", b"x")
    with pytest.raises(OSError) as info:
        (m / "big.bin").read_bytes()                     # its middle is not cached yet
    assert info.value.errno == 5                         # EIO, never bytes of two versions
    m.unmount()
    assert "changed by another writer" in m.log()


def test_remote_cli_browsing_with_endpoint_url(tmp_path, s3, monkeypatch):
    """ls / cat / info read through the same transports; -o endpoint_url
    names the store when AWS_ENDPOINT_URL does not."""
    path = _methods_zip(tmp_path)
    s3.put_file("b.zip", path)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    where = "endpoint_url=" + s3.endpoint
    listing = archfs("ls", "-R", "-o", where, s3.url("b.zip"), check=True).stdout.split()
    assert "deflated/big.txt" in listing and "lzma.txt" in listing
    assert archfs("cat", "-o", where, s3.url("b.zip"), "deflated/small.txt",
                  check=True).stdout == "small\n" * 100
    info = archfs("info", "--json", "-o", where, s3.url("b.zip"), check=True).stdout
    assert '"zip"' in info
    missing = archfs("ls", "-o", where, s3.url("nope.zip"))
    assert missing.returncode == 3 and "no such archive" in missing.stderr
