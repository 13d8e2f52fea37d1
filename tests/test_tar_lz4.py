"""lz4 tars (``engine/lz4frames``): read from archives ``tar -I lz4`` made,
written as frames archfs appends; lz4 -t, GNU tar (through lz4) and bsdtar
agree with the mount afterwards."""

import os
import subprocess

from archfs.archives import open_archive


def run(*cmd):
    return subprocess.run([str(c) for c in cmd], capture_output=True)


def extracted(archive, where):
    where.mkdir()
    result = run("tar", "-I", "lz4", "-xf", archive, "-C", where)
    assert result.returncode == 0, result.stderr
    return {p.relative_to(where).as_posix(): p.read_bytes() for p in where.rglob("*")
            if p.is_file()}


def check(archive, files, tmp_path, tag):
    assert run("lz4", "-t", archive).returncode == 0
    assert extracted(archive, tmp_path / ("x-" + tag)) == files
    listed = run("bsdtar", "-tf", archive)
    assert listed.returncode == 0, listed.stderr
    assert sorted(n for n in listed.stdout.decode().split() if not n.endswith("/")) == \
        sorted(files)
    with open_archive(str(archive), "r", {"index_cache": "0"}) as a:
        assert sorted(a.getnames()) == sorted(files)
        assert all(a.open(n).read() == d for n, d in files.items())


def test_a_foreign_tar_lz4_reads_and_takes_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    files = {"d/random.bin": os.urandom(3 << 20),
             "d/text.txt": b"".join(b"%d\n" % i for i in range(200000)),
             "top.txt": b"top\n"}
    for name, data in files.items():
        (src / name).write_bytes(data)
    archive = tmp_path / "a.tar.lz4"
    assert run("tar", "-I", "lz4", "-cf", archive, "-C", src, "d", "top.txt").returncode == 0
    with open_archive(str(archive)) as a:
        assert a.open("d/random.bin").read() == files["d/random.bin"]
        reader = a._store.open_member("d/text.txt")     # backward seeks decode from the start
        assert reader.pread(100, 500000) == files["d/text.txt"][500000:500100]
        assert reader.pread(100, 10) == files["d/text.txt"][10:110]
        reader.close()
    with open_archive(str(archive), "a") as a:
        a.writedata("new.txt", b"new\n")
        a.remove("top.txt")
        a.rename("d/text.txt", "d/renamed.txt")
    files["new.txt"] = b"new\n"
    del files["top.txt"]
    files["d/renamed.txt"] = files.pop("d/text.txt")
    check(archive, files, tmp_path, "1")
    size = archive.stat().st_size
    with open_archive(str(archive), "a") as a:            # appended: frames after the end
        a.writedata("later.txt", b"later\n" * 100)
    files["later.txt"] = b"later\n" * 100
    assert archive.stat().st_size - size < 4096
    check(archive, files, tmp_path, "2")


def test_a_new_tar_lz4_through_a_mount(tmp_path, mounter):
    archive = tmp_path / "made.tar.lz4"
    mount = mounter(archive, kind="tar")
    files = {}
    for i in range(3):
        name = "f%d.txt" % i
        with open(mount.path / name, "wb") as f:
            f.write(name.encode() * 1000)
            f.flush()
            os.fsync(f.fileno())
        files[name] = name.encode() * 1000
    mount.unmount()
    check(archive, files, tmp_path, "m")


def test_a_lone_lz4_file_mounts_as_its_content(tmp_path):
    data = os.urandom(5000) * 20
    plain = tmp_path / "notes.txt"
    plain.write_bytes(data)
    assert run("lz4", "-q", plain, str(plain) + ".lz4").returncode == 0
    with open_archive(str(plain) + ".lz4") as a:
        assert a.getnames() == ["notes.txt"]
        assert a.open("notes.txt").read() == data
