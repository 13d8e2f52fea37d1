"""archfs ls, cat and info: an archive's content without mounting, through
the plugin API (so any format), fast on big archives (the saved index)."""

import json
import os
import stat
import subprocess
import zipfile


from archfs import cli
from archfs.archives import register_plugin, unregister_plugin
from archfs.archives.abstractarchive import AbstractArchive, MemberStat
from archfs.errors import NoSuchFile, NotADirectory
from archfs.zipengine import indexcache
from mount_fixtures import ARCHFS, SAMPLE, archfs, build_archive, run


def lines(result):
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_ls_plain_long_and_recursive(kind, tmp_path):
    archive = build_archive(kind, tmp_path)
    assert lines(archfs("ls", archive)) == ["data", "emptydir", "latest", "photos",
                                            "readme.txt"]
    assert lines(archfs("ls", archive, "/photos/2024/")) == ["notes.txt", "snow.jpg"]
    every = lines(archfs("ls", "-R", archive))
    expected_files = set(SAMPLE) | {"latest"}
    expected_dirs = {"data", "emptydir", "photos", "photos/2023", "photos/2024"}
    assert set(every) == expected_files | expected_dirs and len(every) == len(set(every))
    assert every.index("photos") < every.index("photos/2023") < every.index(
        "photos/2023/beach.jpg") < every.index("photos/2024")          # depth first, sorted
    assert lines(archfs("ls", "-R", archive, "photos")) == [
        "2023", "2023/beach.jpg", "2024", "2024/notes.txt", "2024/snow.jpg"]
    long = {line.split()[-1] if "->" not in line else line.split()[-3]: line
            for line in lines(archfs("ls", "-lR", archive))}
    snow = long["photos/2024/snow.jpg"].split()
    assert snow[0] == "-rw-r--r--" or snow[0].startswith("-rw")
    assert int(snow[1]) == len(SAMPLE["photos/2024/snow.jpg"])
    assert len(snow[2]) == 10 and len(snow[3]) == 5                   # date and time
    assert long["photos"].startswith("d")
    assert long["latest"].startswith("l") and long["latest"].endswith(
        "latest -> photos/2024/snow.jpg")
    one = lines(archfs("ls", "-l", archive, "readme.txt"))
    assert len(one) == 1 and one[0].endswith(" readme.txt") and " %d " % len(
        SAMPLE["readme.txt"]) in one[0]


def test_cat_prints_members_and_follows_symlinks(kind, tmp_path):
    archive = build_archive(kind, tmp_path)
    result = run(ARCHFS + ["cat", archive, "readme.txt", "/photos/2024/notes.txt"],
                 text=False)
    assert result.stdout == SAMPLE["readme.txt"] + SAMPLE["photos/2024/notes.txt"]
    result = run(ARCHFS + ["cat", archive, "latest"], text=False)
    assert result.stdout == SAMPLE["photos/2024/snow.jpg"]
    # like cat: a missing member is reported, the others are still printed
    result = run(ARCHFS + ["cat", archive, "readme.txt", "nosuch", "data/empty.dat"],
                 text=False, check=False)
    assert result.returncode == 3 and result.stdout == SAMPLE["readme.txt"]
    assert result.stderr.decode().strip() == "archfs: %s: nosuch: no such file or directory" % (
        archive,)


def test_cat_into_a_closed_pipe_is_quiet(tmp_path):
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", os.urandom(1 << 16) * 64)
    command = " ".join(map(str, ARCHFS)) + " cat %s big.bin | head -c 10 >/dev/null" % big
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""


def test_info_of_a_zip(tmp_path):
    archive = tmp_path / "mixed.zip"
    source = tmp_path / "src"
    source.mkdir()
    (source / "plain.txt").write_bytes(b"plain text " * 100)
    (source / "secret.txt").write_bytes(b"secret " * 100)
    run(["zip", "-q", "-j", archive, source / "plain.txt"])
    run(["zip", "-q", "-j", "-P", "pw", archive, source / "secret.txt"])
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("stored.bin", b"\0" * 1000, zipfile.ZIP_STORED)
        zf.writestr("dir/sub/", b"")
    import archfs as api
    with api.open_archive(archive, "a") as a:       # replacing a member leaves dead space
        a.writedata("plain.txt", b"replaced " * 1000)
    text = lines(archfs("info", archive))
    facts = dict(line.split(":", 1) for line in text)
    facts = {key.strip(): value.strip() for key, value in facts.items()}
    assert facts["format"].startswith("zip")
    assert facts["members"] == "3 files, 2 directories, 0 symlinks"
    assert facts["encryption"] == "1 member ZipCrypto"
    assert "deflated 2" in facts["compression"] and "stored 1" in facts["compression"]
    assert facts["archive size"] == "{:,} bytes".format(archive.stat().st_size)
    data = json.loads(archfs("info", "--json", archive, check=True).stdout)
    assert data["dead_bytes"] > 500 and facts["dead space"].startswith(
        "{:,} bytes".format(data["dead_bytes"]))
    assert data["size"] == 9000 + 700 + 1000 and data["encrypted"] == {"ZipCrypto": 1}
    assert data["repair"] == "nothing to repair" == facts["repair"]
    assert data["damaged"] == {}


def test_info_says_what_a_repair_would_do(tmp_path):
    archive = build_archive("zip", tmp_path)
    with open(archive, "ab") as f:                     # an unfinished commit
        f.write(b"PK\x03\x04" + b"\0" * 200)
    result = archfs("info", archive)
    assert result.returncode == 0, result.stderr
    assert "cut off 204 bytes of an unfinished commit" in result.stdout
    clean = archive.read_bytes()[:-204]
    archive.write_bytes(clean + b"somebody else's bytes")
    assert "saving them to archive.zip.archfs-tail-N" in archfs("info", archive).stdout
    broken = tmp_path / "broken.zip"
    data = clean
    broken.write_bytes(data[:data.rfind(b"PK\x01\x02")])   # central directory cut off
    result = archfs("info", broken)
    assert result.returncode == 0                      # read leniently, and it says so
    assert "damaged zip, read leniently" in result.stderr
    assert "salvage every intact member" in result.stdout
    assert broken.read_bytes() == data[:data.rfind(b"PK\x01\x02")]    # nothing changed


def test_info_of_a_directory_uses_the_default_summary(tmp_path):
    archive = build_archive("dir", tmp_path)
    data = json.loads(archfs("info", "--json", archive, check=True).stdout)
    assert data["format"] == "filesystem"
    assert (data["files"], data["directories"], data["symlinks"]) == (6, 5, 1)
    assert data["size"] == sum(len(v) for v in SAMPLE.values())
    assert data["repair"] == "filesystem archives have no repair"


def test_browse_errors(tmp_path):
    archive = build_archive("zip", tmp_path)
    result = archfs("ls", archive, "no/such")
    assert result.returncode == 3
    assert result.stderr.strip() == "archfs: %s: no/such: no such file or directory" % archive
    result = archfs("cat", archive, "photos")
    assert result.returncode == 3 and "photos: is a directory" in result.stderr


class MemoryArchive(AbstractArchive):
    """A made-up format: a JSON object {name: text} in a .memtest file. Only
    what the plugin API asks for, so archfs ls/cat/info must stay format-blind."""

    name = "memtest"
    description = "test format"
    suffixes = (".memtest",)
    options = {}

    def __init__(self, url=None, mode="r", opts=None):
        super().__init__(self.name, self.description, "tests", "1.0", "", [])
        with open(url) as f:
            self.files = {k: v.encode() for k, v in json.load(f).items()}
        parts = [n.split("/")[:-1] for n in self.files]
        self.dirs = {"/".join(p[:i]) for p in parts for i in range(len(p) + 1)}

    def use_query(self):
        return False

    def getnames(self, files=None):
        return list(self.files)

    def getmembers(self, files=None):
        return []

    def open(self, member, mode="rb"):
        import io
        return io.BytesIO(self.files[member])

    def to_localfile(self, member):
        raise NotImplementedError

    def add_localfile(self, local_file, filename):
        raise NotImplementedError

    def writedata(self, filename, data, *, mode=None, mtime_ns=None):
        raise NotImplementedError

    def is_file(self, member):
        return member in self.files

    def close(self):
        pass

    def stat(self, path):
        if path in self.dirs:
            return MemberStat(stat.S_IFDIR | 0o755, 0, 0)
        if path in self.files:
            return MemberStat(stat.S_IFREG | 0o644, len(self.files[path]), 10**18)
        raise NoSuchFile("%s: no such file or directory" % path)

    def listdir(self, path):
        if path in self.files:
            raise NotADirectory("%s: not a directory" % path)
        if path not in self.dirs:
            raise NoSuchFile("%s: no such file or directory" % path)
        prefix = path + "/" if path else ""
        names = {n[len(prefix):].split("/")[0] for n in list(self.files) + list(self.dirs)
                 if n.startswith(prefix) and n != path and n}
        # a third field, as a plugin may add (the tar plugin does): callers take two
        return [(n, self.stat(prefix + n).mode, 0) for n in names]


def test_ls_cat_info_are_format_blind(tmp_path, capsysbinary):
    archive = tmp_path / "a.memtest"
    archive.write_text(json.dumps({"top.txt": "top\n", "d/e/deep.txt": "deep\n"}))
    register_plugin(MemoryArchive)
    try:
        assert cli.main(["ls", "-R", str(archive)]) == 0
        assert capsysbinary.readouterr().out.decode().split() == [
            "d", "d/e", "d/e/deep.txt", "top.txt"]
        assert cli.main(["cat", str(archive), "d/e/deep.txt"]) == 0
        assert capsysbinary.readouterr().out == b"deep\n"
        assert cli.main(["info", "--json", str(archive)]) == 0
        data = json.loads(capsysbinary.readouterr().out)
        assert data["format"] == "memtest" and data["files"] == 2
        assert data["directories"] == 2 and data["size"] == 9
        assert cli.main(["cat", str(archive), "d"]) == 3
        assert b"d: is a directory" in capsysbinary.readouterr().err
    finally:
        unregister_plugin("memtest")


def test_a_big_zip_is_listed_from_its_saved_index(tmp_path, monkeypatch, capsysbinary):
    archive = tmp_path / "big.zip"
    count = indexcache.MIN_MEMBERS + 10
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(count):
            zf.writestr("d%02d/f%06d" % (i % 50, i), b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    loads = []
    real_load = indexcache.load

    def counting_load(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        loads.append(loaded is not None)
        return loaded

    monkeypatch.setattr(indexcache, "load", counting_load)
    assert cli.main(["ls", str(archive), "d07"]) == 0       # parses, saves the index
    first = capsysbinary.readouterr().out.split()
    assert cli.main(["ls", str(archive), "d07"]) == 0       # loads the saved index
    assert capsysbinary.readouterr().out.split() == first
    assert len(first) == len(range(7, count, 50))
    assert cli.main(["info", "--json", str(archive)]) == 0
    assert json.loads(capsysbinary.readouterr().out)["files"] == count
    assert loads == [False, True, True]


def test_ls_cat_info_of_a_tar(tmp_path):
    source = build_archive("dir", tmp_path)
    archive = tmp_path / "sample.tar"
    run(["tar", "cf", archive, "-C", source, "."])
    every = lines(archfs("ls", "-R", archive))
    assert set(SAMPLE) <= set(every) and "photos/2024" in every
    assert run(ARCHFS + ["cat", archive, "latest"], text=False).stdout == SAMPLE[
        "photos/2024/snow.jpg"]
    data = json.loads(archfs("info", "--json", archive, check=True).stdout)
    assert data["format"] == "tar" and data["files"] == len(SAMPLE) and data["symlinks"] == 1
