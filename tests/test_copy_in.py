"""Copying many small files in: grouped copy-back (one archive write per
group of files), fsync while other requests are served, and what
``cp -r`` / ``cp -a`` leave behind."""

import errno
import os
import random
import signal
import stat
import subprocess
import threading
import time
import zipfile

import pytest

from archfs.archives.writefileio import SpooledWriteFileIO
from archfs.archives.zipfilearchive import ZipfileArchive
from archfs.errors import ArchiveBusy, IsADirectory
from archfs.mount import openfiles as openfiles_module
from archfs.mount.committer import Committer
from archfs.mount.kernelcache import KernelCachePolicy
from archfs.mount.openfiles import OpenFiles
from archfs.mount.scratch import Scratch
from archfs.zipengine.store.changes import BytesItem
from mount_fixtures import check_zip, run
from zip_conformance import SEVEN_ZIP


def _texts(count, seed=1):
    rng = random.Random(seed)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"\x00\xff", b"zeta\n"]
    return [b" ".join(rng.choice(words) for _ in range(rng.randint(0, 800)))
            for _ in range(count)]


def _new_zip(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("keep.txt", b"kept")
        zf.writestr("sub/", b"")
    return str(path)


# -- the store -------------------------------------------------------------------


def test_add_bytes_many_stores_each_file_as_add_bytes_would(tmp_path):
    archive = _new_zip(tmp_path / "a.zip")
    datas = _texts(40)
    with ZipfileArchive(url=archive, mode="a") as zf:
        zf.chmod("keep.txt", 0o600)
        store = zf._store
        end_before = store._end
        items = [BytesItem("sub/f%02d.txt" % i, data, mode=0o640 if i % 2 else None,
                           mtime_ns=1_700_000_000_000_000_000 + i)
                 for i, data in enumerate(datas)]
        items.append(BytesItem("keep.txt", b"replaced"))     # keeps the 0o600 it had
        results = store.add_bytes_many(items)
        assert results == [None] * len(items)
        # appended back to back: the file grew by exactly the members' bytes
        assert store._end > end_before
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
        for i, data in enumerate(datas):
            info = zf.getinfo("sub/f%02d.txt" % i)
            assert zf.read(info) == data
            assert (info.external_attr >> 16) & 0o7777 == (0o640 if i % 2 else 0o644)
        assert zf.read("keep.txt") == b"replaced"
        assert (zf.getinfo("keep.txt").external_attr >> 16) & 0o7777 == 0o600
    check_zip(archive)


def test_add_bytes_many_refuses_a_bad_item_alone(tmp_path):
    archive = _new_zip(tmp_path / "a.zip")
    with ZipfileArchive(url=archive, mode="a") as zf:
        results = zf.writedata_many([
            ("one.txt", b"1", {}),
            ("sub", b"a directory is there", {}),
            ("keep.txt/under", b"a file is there", {}),
            ("two.txt", b"2", {"mode": 0o600}),
        ])
        assert results[0] is None and results[3] is None
        assert isinstance(results[1], IsADirectory)
        assert isinstance(results[2], OSError)
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("one.txt") == b"1" and zf.read("two.txt") == b"2"
        assert "keep.txt/under" not in zf.namelist()
        assert zf.testzip() is None


# -- the mount layer: grouped copy-back ------------------------------------------


class _Counting(ZipfileArchive):
    """Counts calls of the one-file and the many-file copy-back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.single_calls = 0
        self.group_sizes = []
        self.refuse = set()

    def writedata(self, filename, data, **kwargs):
        self.single_calls += 1
        return super().writedata(filename, data, **kwargs)

    def writedata_many(self, items):
        self.group_sizes.append(len(items))
        results = super().writedata_many([i for i in items if i[0] not in self.refuse])
        results = iter(results)
        return [OSError(28, "refused for the test") if i[0] in self.refuse else next(results)
                for i in items]


def _files(archive, tmp_path):
    return OpenFiles(archive, Scratch(str(tmp_path / "scratch")), KernelCachePolicy())


def _write_new(files, path, data, keep_open=False):
    fh = files.create(path, 0o644, os.O_CREAT | os.O_WRONLY)
    files.write(fh, data, 0)
    if not keep_open:
        files.release(fh)
    return fh


def test_copy_back_groups_files_held_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(openfiles_module, "BATCH_FILES", 8)
    archive = _Counting(url=_new_zip(tmp_path / "a.zip"), mode="a")
    files = _files(archive, tmp_path)
    committer = Committer(archive, files, interval=1000)
    datas = _texts(30, seed=2)
    for i, data in enumerate(datas):
        _write_new(files, "sub/n%02d" % i, data)
    big = os.urandom(openfiles_module.SPOOL_LIMIT + 1)     # on disk, copied back alone
    _write_new(files, "big.bin", big)
    open_fh = _write_new(files, "open.txt", b"still open", keep_open=True)
    assert committer.close() == []      # copies back everything, also the open file
    assert archive.group_sizes == [8, 8, 8, 7]     # the big file does not cut a group
    assert archive.single_calls == 0    # the spilled file went through replace_localfile
    files.release(open_fh)
    archive.close()
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert zf.testzip() is None
        for i, data in enumerate(datas):
            assert zf.read("sub/n%02d" % i) == data
        assert zf.read("big.bin") == big
        assert zf.read("open.txt") == b"still open"


def test_a_refused_file_of_a_group_stays_unsaved_and_the_others_are_stored(tmp_path):
    archive = _Counting(url=_new_zip(tmp_path / "a.zip"), mode="a")
    archive.refuse = {"sub/b"}
    files = _files(archive, tmp_path)
    for name in ("sub/a", "sub/b", "sub/c"):
        _write_new(files, name, name.encode())
    entries = files.unsaved()
    outcomes = dict((e.path, o) for e, o in files.copy_back_many(entries))
    assert outcomes["sub/a"] is True and outcomes["sub/c"] is True
    assert isinstance(outcomes["sub/b"], OSError)
    assert [e.path for e in files.unsaved()] == ["sub/b"]     # kept, retried later
    assert files.read(files.open("sub/b", os.O_RDONLY)[0], 10, 0) == b"sub/b"
    archive.refuse = set()
    assert [o for _, o in files.copy_back_many(files.unsaved())] == [True]
    assert files.unsaved() == []
    archive.close()
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert {n: zf.read(n) for n in ("sub/a", "sub/b", "sub/c")} == {
            "sub/a": b"sub/a", "sub/b": b"sub/b", "sub/c": b"sub/c"}


def test_a_file_written_again_during_a_group_keeps_its_new_content(tmp_path):
    """Only a forced copy-back (fsync, unmount) takes a file a writer has
    open; a write after it marks the file unsaved again, and the newer
    bytes are stored by the next one."""
    archive = ZipfileArchive(url=_new_zip(tmp_path / "a.zip"), mode="a")
    files = _files(archive, tmp_path)
    _write_new(files, "x.txt", b"first")
    fh, _ = files.open("x.txt", os.O_WRONLY)
    entries = files.unsaved()
    # a writer has it open: only a forced copy-back (fsync, unmount) takes it
    assert [o for _, o in files.copy_back_many(entries)] == [False]
    assert [o for _, o in files.copy_back_many(entries, force=True)] == [True]
    assert files.unsaved() == []
    files.write(fh, b"second", 0)
    assert [e.path for e in files.unsaved()] == ["x.txt"]
    files.release(fh)
    assert [o for _, o in files.copy_back_many(files.unsaved())] == [True]
    archive.close()
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert zf.read("x.txt") == b"second"


def test_pending_is_none_once_spilled_or_clean(tmp_path):
    archive = ZipfileArchive(url=_new_zip(tmp_path / "a.zip"), mode="a")
    spill = lambda: str(tmp_path / "spilled")      # noqa: E731
    small = SpooledWriteFileIO(archive, "s.txt", spill, limit=16)
    small.pwrite(b"0123456789", 0)
    member, data, keywords = small.pending()
    assert (member, data) == ("s.txt", b"0123456789") and "mtime_ns" in keywords
    small.stored()
    assert small.pending() is None              # clean
    small.pwrite(b"x" * 32, 0)                  # past the limit: on disk now
    assert small.pending() is None and small.name == str(tmp_path / "spilled")
    small.discard()
    archive.close()


# -- through a mount -------------------------------------------------------------


def _source_tree(root, count=300):
    rng = random.Random(5)
    datas = {}
    for i, data in enumerate(_texts(count, seed=3)):
        rel = "d%02d/f%03d.txt" % (i % 12, i)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        mode = rng.choice([0o644, 0o600, 0o755, 0o640])
        os.chmod(path, mode)
        stamp = 1_600_000_000 + rng.randint(0, 10 ** 8)
        os.utime(path, (stamp, stamp))
        datas[rel] = (data, mode, stamp)
    return datas


def _check_tools(archive):
    check_zip(archive)
    result = subprocess.run([SEVEN_ZIP, "t", str(archive)], capture_output=True, text=True)
    assert result.returncode == 0 and "Everything is Ok" in result.stdout, result.stdout


def test_cp_r_and_cp_a_of_many_small_files_read_back_identical(tmp_path, mounter):
    source = tmp_path / "src"
    datas = _source_tree(source)
    archive = _new_zip(tmp_path / "a.zip")
    mnt = mounter(archive)
    run(["cp", "-r", str(source), str(mnt.path / "plain")])
    run(["cp", "-a", str(source), str(mnt.path / "kept")])
    for rel, (data, mode, stamp) in list(datas.items())[::37]:     # while mounted
        assert (mnt.path / "plain" / rel).read_bytes() == data
        st = (mnt.path / "kept" / rel).stat()
        assert (st.st_mode & 0o7777, int(st.st_mtime)) == (mode, stamp)
    mnt.unmount()
    _check_tools(archive)
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        for rel, (data, mode, stamp) in datas.items():
            assert zf.read("plain/" + rel) == data
            kept = zf.getinfo("kept/" + rel)
            assert zf.read(kept) == data
            assert (kept.external_attr >> 16) & 0o7777 == mode
        assert "keep.txt" in names
    again = mounter(archive)
    for rel, (data, mode, stamp) in datas.items():
        st = (again.path / "kept" / rel).stat()
        assert (st.st_mode & 0o7777, int(st.st_mtime)) == (mode, stamp)
        assert (again.path / "plain" / rel).read_bytes() == data


def test_fsync_commits_while_others_are_served(tmp_path, mounter):
    """fsync returns only once the file is durable, and requests from
    another process are served meanwhile."""
    archive = _new_zip(tmp_path / "a.zip")
    mnt = mounter(archive)
    stop = threading.Event()
    seen = []

    def browse():
        while not stop.is_set():
            seen.append(len(os.listdir(mnt.path)))
    browser = threading.Thread(target=browse)
    browser.start()
    try:
        for i in range(20):
            fd = os.open(mnt.path / ("s%02d.txt" % i), os.O_CREAT | os.O_WRONLY, 0o644)
            try:
                os.write(fd, b"synced %d" % i)
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        stop.set()
        browser.join()
    assert seen
    # fsync made them durable: kill the daemon, the archive still has them
    os.kill(mnt.pid, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 30
        while mnt.daemon_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not mnt.daemon_running()
    finally:
        mnt.unmounted = True
        mnt.force_cleanup()         # the dead mount: fusermount -u -z
    with _open_when_unlocked(archive) as zf:
        for i in range(20):
            with zf.open("s%02d.txt" % i) as member:
                assert member.read() == b"synced %d" % i


def _open_when_unlocked(archive, timeout=30):
    """The archive opened for writing once the killed daemon's lock is gone:
    its main thread shows as a zombie (daemon_running is False) while a
    thread that was inside a syscall (an fsync) still holds the files."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ZipfileArchive(url=archive, mode="a")
        except ArchiveBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("count", [1, 130])
def test_grouped_copy_back_is_equal_to_one_by_one(tmp_path, count):
    """The same files copied back in groups and one by one give archives
    that list and read the same."""
    datas = _texts(count, seed=count)
    results = {}
    for how in ("many", "single"):
        path = _new_zip(tmp_path / ("%s.zip" % how))
        archive = ZipfileArchive(url=path, mode="a")
        if how == "single":
            archive.writedata_many = None      # OpenFiles then copies back one by one
        files = _files(archive, tmp_path / how)
        for i, data in enumerate(datas):
            _write_new(files, "sub/g%03d" % i, data)
        assert all(o is True for _, o in files.copy_back_many(files.unsaved()))
        archive.close()
        with zipfile.ZipFile(path) as zf:
            assert zf.testzip() is None
            results[how] = {n: zf.read(n) for n in zf.namelist()}
    assert results["many"] == results["single"]
    assert len(results["many"]) == count + 2



def test_lookup_of_a_missing_name_is_none_and_other_answers_are_getattrs(tmp_path):
    """cp -r looks up every name it makes: a missing one is None (the
    binding answers with a negative entry, no exception on the way), an
    existing one gets getattr's attributes, a bad name still its error."""
    from archfs.mount.operations import ArchiveOperations
    from archfs.mount.options import MountOptions
    from archfs.mount.session import MountSession

    archive = _new_zip(tmp_path / "a.zip")
    session = MountSession(ZipfileArchive(url=archive, mode="a"), MountOptions())
    try:
        ops = ArchiveOperations(session)
        assert ops.lookup("/missing.txt") is None
        assert ops.lookup("/sub/missing.txt") is None
        assert ops.lookup("/keep.txt") == ops.getattr("/keep.txt")
        assert ops.lookup("/keep.txt")["st_size"] == 4
        assert stat.S_ISDIR(ops.lookup("/sub")["st_mode"])
        with pytest.raises(OSError) as err:
            ops.lookup("/" + "x" * 300)
        assert err.value.errno == errno.ENAMETOOLONG
    finally:
        session.finish()


def test_stat_or_none_answers_as_stat_does(tmp_path):
    """The exception-free stat that lookups and creates use: None exactly
    where stat raises FileNotFoundError, stat's answer everywhere else, for
    the zip plugin and, through the fallback, for one without it."""
    from archfs.archives.filesystemarchive import FilesystemArchive

    archive = ZipfileArchive(url=_new_zip(tmp_path / "a.zip"), mode="a")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "keep.txt").write_bytes(b"kept")
    folder = FilesystemArchive(url=str(tmp_path / "d"), mode="a")
    try:
        archive.writedata("deep/er/file.txt", b"x")     # "deep" exists only implicitly
        names = ["", "keep.txt", "sub", "deep", "deep/er", "deep/er/file.txt",
                 "missing", "sub/missing", "keep.txt/below", "deep/missing/x"]
        for plugin in (archive, folder):
            assert (getattr(plugin, "stat_or_none", None) is not None) == (plugin is archive)
            files = OpenFiles(plugin, Scratch(str(tmp_path / "scratch")), KernelCachePolicy())
            for name in names:
                try:
                    expected = plugin.stat(name)
                except FileNotFoundError:
                    expected = None
                except OSError as exc:      # another error stays that error
                    with pytest.raises(type(exc)):
                        files.stat_or_none(name)
                    continue
                if plugin is archive:
                    assert plugin.stat_or_none(name) == expected, name
                assert files.stat_or_none(name) == expected, (plugin, name)
        assert archive.stat_or_none("missing") is None
        assert archive.stat_or_none("deep").is_dir
    finally:
        archive.close()
        folder.close()
