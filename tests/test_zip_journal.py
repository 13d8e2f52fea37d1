"""Commits that cost what they change: journal records, checkpoints, and
compaction that never makes an archive bigger.

An archive whose central directory is big gets a journal record per commit
instead of a whole new directory; the directory is written again (over the
space of the last one) at close, after an idle period, or once the
appended bytes reach its size. These tests build archives with a few
thousand members so the directory passes the 64 KiB from which the journal
is used (or set ``journal_from=0``).
"""

import logging
import os
import stat
import subprocess
import time
import zipfile

import pytest

from archfs.archives.zipfilearchive import ZipfileArchive
from archfs.zipengine import centraldir, journal
from zip_builders import (
    Entry,
    assert_tools_accept,
    open_store,
    pseudo_random,
    read_all,
    write_zip,
    zipfile_contents,
)

NEW = b"x" * 1024


def many_members(path, count, comment=b""):
    """An archive of ``count`` small members as Python's zipfile writes it
    (no extra fields), in 20 directories."""
    with zipfile.ZipFile(path, "w") as z:
        for d in range(20):
            z.writestr("dir%02d/" % d, b"")
        for i in range(count):
            z.writestr("dir%02d/member%05d.txt" % (i % 20, i), b"member %d\n" % i)
        z.comment = comment
    return str(path)


def ends_with_end_record(path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        return centraldir.read_end(fd, os.fstat(fd).st_size) is not None
    finally:
        os.close(fd)


def assert_directories_before_contents(path) -> list:
    """Every directory entry comes before the entries inside it (unzip
    restores a directory's time only when it comes first)."""
    with zipfile.ZipFile(path) as z:
        names = [i.filename for i in z.infolist()]
    for i, name in enumerate(names):
        parent = name.rstrip("/").rpartition("/")[0]
        while parent:
            assert parent + "/" in names[:i], (name, names)
            parent = parent.rpartition("/")[0]
    return names

def test_a_commit_costs_what_it_changes_and_close_leaves_a_zip(tmp_path):
    path = many_members(tmp_path / "many.zip", 5000)
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as z:
        directory = z.start_dir
    directory = size - directory
    assert directory > 64 << 10
    store = open_store(path, True, checkpoint_idle=0)
    sizes = [size]
    for i in range(20):
        store.add_bytes("new/file%02d.txt" % i, NEW)
        store.commit()
        sizes.append(os.path.getsize(path))
    store.chmod("dir01/member00001.txt", 0o600)
    store.remove("dir02/member00002.txt")
    store.rename("dir03/member00003.txt", "dir03/renamed.txt")
    store.commit()
    growth = [b - a for a, b in zip(sizes, sizes[1:])]
    assert max(growth) < 2048, growth           # a journal record, not a 300 KB directory
    assert not ends_with_end_record(path)       # the journal follows the last directory
    assert store.has_journal
    store.close()
    assert ends_with_end_record(path)
    final = os.path.getsize(path)
    assert final < size + 20 * 1200 + 1024      # the last directory's space was reused
    contents = zipfile_contents(path)
    assert len(contents) == 5000 + 20 - 1
    assert contents["new/file07.txt"] == NEW
    assert contents["dir03/renamed.txt"] == b"member 3\n"
    assert "dir02/member00002.txt" not in contents
    with zipfile.ZipFile(path) as z:
        mode = z.getinfo("dir01/member00001.txt").external_attr >> 16
    assert stat.S_IMODE(mode) == 0o600
    assert_tools_accept(path)
    store = open_store(path, False)
    assert read_all(store)["new/file19.txt"] == NEW
    store.close()


def test_journal_records_torn_at_every_byte_are_cut_cleanly(tmp_path):
    """The bytes of one commit (a member and its journal record) cut at every
    offset, and also with the rest zeroed as a crash leaves unwritten blocks:
    the archive opens as before that commit, and a writable open cuts the
    torn bytes off, exactly back to the previous record."""
    logging.disable(logging.CRITICAL)
    try:
        path = tmp_path / "j.zip"      # a directory bigger than what two commits append
        write_zip(path, [Entry("a", b"alpha"), Entry("d/b", b"beta" * 20)]
                  + [Entry("filler/%03d" % i, b"%d" % i) for i in range(40)])
        store = open_store(path, True, journal_from=0, checkpoint_idle=0)
        store.add_bytes("first", b"first commit")
        store.commit()
        one = os.path.getsize(path)
        expected_one = read_all(store)
        store.add_bytes("second", pseudo_random(300, 1))
        store.chmod("a", 0o600)
        store.remove("d/b")
        store.commit()
        expected_two = read_all(store)
        store._idle = None
        two = path.read_bytes()
        store._file.release()           # as a crash would: no checkpoint at close
        store._closed = True
        record = journal.read(os.open(path, os.O_RDONLY), store._last_record, len(two))
        assert record is not None and record.end == len(two) and record.seq == 2
        case = tmp_path / "case.zip"
        # every byte of the record; every 16th of the member data before it
        cuts = sorted(set(range(one, record.pos, 16)) | set(range(record.pos, len(two) + 1)))
        for cut in cuts:
            for data in (two[:cut], two[:cut] + bytes(len(two) - cut)):
                case.write_bytes(data)
                reader = open_store(case, False)
                got = read_all(reader)
                reader.close()
                want = expected_two if cut == len(two) else expected_one
                assert got == want, (cut, len(data))
                writer = open_store(case, True, checkpoint_idle=0)
                assert read_all(writer) == want
                writer._file.release()
                writer._closed = True
                assert os.path.getsize(case) == (len(two) if cut == len(two) else one), cut
    finally:
        logging.disable(logging.NOTSET)


def test_checkpoint_after_an_idle_period(tmp_path):
    path = many_members(tmp_path / "idle.zip", 3000)
    store = open_store(path, True, checkpoint_idle=0.3)
    try:
        store.add_bytes("new.txt", NEW)
        store.commit()
        assert not ends_with_end_record(path)
        deadline = time.monotonic() + 10
        while store.has_journal and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not store.has_journal
        assert ends_with_end_record(path)          # while still open
        assert zipfile_contents(path)["new.txt"] == NEW
        assert_tools_accept(path)
    finally:
        store.close()


def test_other_readers_see_the_last_checkpoint_meanwhile(tmp_path):
    """Between checkpoints, Python's zipfile (which looks for the end record
    in the last 64 KiB) reads the archive as of the last checkpoint."""
    path = many_members(tmp_path / "meanwhile.zip", 3000)
    store = open_store(path, True, checkpoint_idle=0)
    store.add_bytes("new.txt", NEW)
    store.commit()
    with zipfile.ZipFile(path) as z:
        assert "new.txt" not in z.namelist() and len(z.namelist()) == 3020
        assert z.testzip() is None
    store.close()
    with zipfile.ZipFile(path) as z:
        assert z.read("new.txt") == NEW


def test_index_is_saved_after_a_mount_that_wrote(tmp_path, monkeypatch):
    path = many_members(tmp_path / "indexed.zip", 21000)
    index = str(tmp_path / "index")
    store = open_store(path, True, index_dir=index, checkpoint_idle=0)
    store.add_bytes("new.txt", NEW)
    store.add_bytes("dir01/member00001.txt", b"replaced")      # dead rows in the index
    store.remove("dir02/member00002.txt")
    store.rename("dir03/member00003.txt", "dir04/moved.txt")
    store.commit()
    expected = read_all(store)
    listing = store.listdir("dir04")
    store.close()
    from archfs.zipengine.store import opening

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed the directory instead of loading the saved index")

    monkeypatch.setattr(opening, "read_central_directory", no_parsing)
    store = open_store(path, False, index_dir=index)
    assert read_all(store) == expected and expected["dir01/member00001.txt"] == b"replaced"
    assert len(store.names()) == 21000 and "dir02/member00002.txt" not in expected
    assert sorted(store.listdir("dir04")) == sorted(listing)
    store.close()


def test_directories_come_before_their_contents(tmp_path):
    """What ``rsync -a`` does: files first, then each directory's time, which
    gives the directory a new entry after its contents. The written central
    directory still lists every directory before what it holds, so
    ``unzip`` restores the directories' times."""
    path = tmp_path / "rsync.zip"
    times = {"pkg": 1_500_000_000 * 10**9, "pkg/sub": 1_400_000_000 * 10**9}
    for journal_from in (0, 1 << 30):
        path.unlink(missing_ok=True)
        store = open_store(path, True, journal_from=journal_from, checkpoint_idle=0)
        store.add_bytes("top.txt", b"top")
        store.commit()
        store.mkdir("pkg")
        store.mkdir("pkg/sub")
        store.add_bytes("pkg/sub/deep.txt", b"deep")
        store.add_bytes("pkg/file.txt", b"file")
        store.commit()
        store.utime("pkg/sub", times["pkg/sub"])
        store.commit()
        store.utime("pkg", times["pkg"])
        store.commit()
        store.close()
        names = assert_directories_before_contents(path)
        out = tmp_path / ("out%d" % journal_from)
        subprocess.run(["unzip", "-q", "-o", str(path), "-d", str(out)], check=True)
        for name, ns in times.items():
            assert int(os.stat(out / name).st_mtime) == ns // 10**9, (name, names)
        assert_tools_accept(str(path))


# -- compaction -------------------------------------------------------------------------

def test_compaction_never_makes_an_archive_bigger(tmp_path):
    """Members and records are carried over byte for byte: an archive from
    another tool (no extra fields) keeps its size, less what was dead."""
    path = many_members(tmp_path / "foreign.zip", 3000, comment=b"kept")
    before = os.path.getsize(path)
    store = open_store(path, True, checkpoint_idle=0)
    for i in range(0, 3000, 3):
        store.remove("dir%02d/member%05d.txt" % (i % 20, i))
    store.commit()
    assert store.compact(full=True) is True
    store.close()
    after = os.path.getsize(path)
    assert after < before * 0.8
    with zipfile.ZipFile(path) as z:
        assert z.comment == b"kept"
        assert len(z.namelist()) == 20 + 2000
        assert all(not i.extra for i in z.infolist())       # nothing added to the records
    assert_tools_accept(path)
    store = open_store(path, True)
    assert store.compact(full=True) is True                 # nothing dead: the same size
    store.close()
    assert os.path.getsize(path) == after


def test_compaction_with_nothing_to_reclaim_changes_nothing(tmp_path):
    from mount_fixtures import archfs
    path = many_members(tmp_path / "tight.zip", 2000)
    data = open(path, "rb").read()
    stamp = os.stat(path).st_mtime_ns
    with ZipfileArchive(url=path, mode="a") as archive:
        assert archive.compact() is False
        assert "nothing worth reclaiming" in archive.compaction_detail
    assert open(path, "rb").read() == data and os.stat(path).st_mtime_ns == stamp
    result = archfs("compact", path)
    assert result.returncode == 0, result.stderr
    assert "left as it is" in result.stdout and "nothing worth reclaiming" in result.stdout
    assert open(path, "rb").read() == data


def test_compaction_moves_only_what_follows_the_first_dead_region(tmp_path):
    """Dead space near the end (a replaced member, then the directories of
    several sessions) is reclaimed by moving the few members after it down:
    every byte before it stays where it was, and the file keeps its inode."""
    path = tmp_path / "tail.zip"
    head = pseudo_random(4 << 20, 1)
    write_zip(path, [Entry("head.bin", head), Entry("victim.bin", pseudo_random(1 << 20, 2))])
    store = open_store(path, True, checkpoint_idle=0)
    store.remove("victim.bin")
    for i in range(5):
        store.add_bytes("small%d" % i, pseudo_random(2000, 10 + i))
        store.commit()
    store.close()
    kept = open(path, "rb").read(len(head))
    inode = os.stat(path).st_ino
    before = os.path.getsize(path)
    with ZipfileArchive(url=str(path), mode="a") as archive:
        assert archive.compact() is True
        assert "moved" in archive.compaction_detail
    assert os.stat(path).st_ino == inode
    assert open(path, "rb").read(len(head)) == kept
    assert os.path.getsize(path) < before - (1 << 20)
    contents = zipfile_contents(path)
    assert contents["head.bin"] == head and len(contents) == 6
    assert_tools_accept(str(path))


@pytest.mark.parametrize("count", [1, 40])
def test_compaction_progress_shows_done_of_total(tmp_path, count):
    seen = []
    path = many_members(tmp_path / "p.zip", count)
    store = open_store(path, True, progress=lambda what, done, total: seen.append(
        (what, done, total)))
    store.compact(full=True)
    store.close()
    steps = [s for s in seen if s[0] == "compacting"]
    assert steps and all(total == count + 20 for _w, _d, total in steps)
    assert steps[-1][1] == count + 20


def test_repair_replays_the_journal_into_a_zip(tmp_path):
    """An archive left with journal records and a torn commit after them (a
    crash): ``archfs repair`` keeps every commit and makes it an ordinary zip."""
    from mount_fixtures import archfs
    path = many_members(tmp_path / "crashed.zip", 3000)
    store = open_store(path, True, checkpoint_idle=0)
    for i in range(3):
        store.add_bytes("kept%d.txt" % i, NEW)
        store.commit()
    store.remove("dir05/member00005.txt")
    store.commit()
    store.add_bytes("torn.txt", pseudo_random(5000, 1))      # appended, never committed
    store._file.release()
    store._closed = True
    with open(path, "r+b") as f:                             # and cut in the middle
        f.truncate(os.path.getsize(path) - 2000)
    assert not ends_with_end_record(path)
    result = archfs("repair", path)
    assert result.returncode == 0, result.stderr
    assert "replayed 4 journal records" in result.stdout
    assert ends_with_end_record(path)
    contents = zipfile_contents(path)
    assert all(contents["kept%d.txt" % i] == NEW for i in range(3))
    assert "torn.txt" not in contents and "dir05/member00005.txt" not in contents
    assert len(contents) == 3000 + 3 - 1
    assert_tools_accept(path)


def test_rsync_a_into_a_mount_keeps_directory_times_for_unzip(tmp_path, mounter):
    """rsync -a sets each directory's time after filling it, which gives an
    implied directory its own entry, after its contents; the central
    directory still lists it first, so unzip restores every directory's time."""
    from mount_fixtures import run
    source = tmp_path / "src"
    stamps = {"pkg": 1_400_000_000, "pkg/sub": 1_300_000_000, "pkg/sub/deeper": 1_200_000_000}
    for path in stamps:
        (source / path).mkdir(parents=True)
        (source / path / "file.txt").write_bytes(path.encode())
    for path, stamp in sorted(stamps.items(), key=lambda item: -len(item[0])):
        os.utime(source / path, (stamp, stamp))
    archive = tmp_path / "r.zip"       # the directories exist only as implied ones
    write_zip(archive, [Entry("pkg/sub/deeper/old.txt", b"already there")])
    m = mounter(archive, "commit_interval=0")
    run(["rsync", "-a", str(source) + "/", str(m.path) + "/"])
    m.unmount()
    names = assert_directories_before_contents(archive)
    out = tmp_path / "out"
    run(["unzip", "-q", str(archive), "-d", str(out)])
    for path, stamp in stamps.items():
        assert int(os.stat(out / path).st_mtime) == stamp, (path, names)
