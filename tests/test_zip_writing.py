"""Writing zip archives in place: appends that leave everything else alone,
compaction, archives every tool accepts, other programs touching the file,
and the recovery of an unfinished commit."""

import errno
import hashlib
import os
import stat
import subprocess
import sys
import time
import zipfile

import pytest

from archfs.archives.zipfilearchive import ZipfileArchive
from archfs.errors import ArchiveBusy, ArchiveChangedError, CorruptArchiveError
from archfs.zipengine import compaction
from archfs.zipengine.store import compacting as store_module
from zip_builders import (
    SEVEN_ZIP,
    Entry,
    assert_tools_accept,
    build_zero_member_zip,
    extract_with,
    names_by_tool,
    open_store,
    pseudo_random,
    read_all,
    sevenzip_test,
    tree_of,
    unzip_listing,
    write_zip,
    zipfile_contents,
)

BIG = pseudo_random(8 << 20, 31)        # incompressible: stored as is


def region_digest(path, start, length):
    with open(path, "rb") as f:
        f.seek(start)
        return hashlib.sha256(f.read(length)).hexdigest()


@pytest.fixture
def big_zip(tmp_path):
    """small, big (8 MiB stored), tail -- and where big's bytes lie."""
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("small-first.txt", b"first\n")
        z.writestr("big.bin", BIG)
        z.writestr("tail.txt", b"tail\n")
    info = zipfile.ZipFile(path).getinfo("big.bin")
    start = info.header_offset
    length = 30 + len(info.filename) + len(info.extra) + info.compress_size
    return path, start, length


# -- appending, never rewriting --------------------------------------------------------

@pytest.mark.parametrize("change", ["add", "replace", "replace-first", "remove-first", "rename",
                                    "mkdir"])
def test_one_change_leaves_the_large_member_alone(big_zip, change):
    path, start, length = big_zip
    digest = region_digest(path, start, length)
    before = os.stat(path)
    expected = {"small-first.txt": b"first\n", "big.bin": BIG, "tail.txt": b"tail\n"}
    with ZipfileArchive(url=str(path), mode="a") as archive:
        if change == "add":
            archive.writedata("added.txt", b"a" * 100)
            expected["added.txt"] = b"a" * 100
        elif change == "replace":
            archive.writedata("tail.txt", b"new tail\n")
            expected["tail.txt"] = b"new tail\n"
        elif change == "replace-first":
            archive.writedata("small-first.txt", b"new first\n")
            expected["small-first.txt"] = b"new first\n"
        elif change == "remove-first":
            archive.remove("small-first.txt")
            del expected["small-first.txt"]
        elif change == "rename":
            archive.rename("tail.txt", "renamed.txt")
            expected["renamed.txt"] = expected.pop("tail.txt")
        else:
            archive.mkdir("newdir")
    after = os.stat(path)
    assert after.st_ino == before.st_ino                 # not a rewritten copy
    assert region_digest(path, start, length) == digest
    assert after.st_size - before.st_size < 16 << 10     # far less than the 8 MiB
    assert zipfile_contents(path) == expected
    assert_tools_accept(path)


def test_replacing_a_tiny_first_member_of_a_big_archive(tmp_path, caplog):
    """No entry fits where a one-letter, empty first member was, the next
    member is 70 MiB and the archive too big to rewrite for one change: the
    engine leaves the gap (no rewrite, no big copy), every reader that goes
    by the central directory sees the new content, the log says 7-Zip may
    not and names the cure, and after ``compact()`` 7-Zip agrees too. This
    is the documented trade-off of the "never rewrite for one change" rule."""
    path = tmp_path / "big.zip"
    build_zero_member_zip(path, "x", b"", "zeros.bin", 70 << 20)
    before = os.stat(path)
    if before.st_blocks * 512 > 8 << 20:
        pytest.skip("the filesystem of tmp_path does not keep sparse files sparse")
    with caplog.at_level("WARNING", logger="archfs.zip"):
        with ZipfileArchive(url=str(path), mode="a") as archive:
            archive.writedata("x", b"replaced first")
    after = os.stat(path)
    assert after.st_ino == before.st_ino and after.st_blocks - before.st_blocks < 64
    assert zipfile.ZipFile(path).read("x") == b"replaced first"
    assert subprocess.run(["unzip", "-p", str(path), "x"], capture_output=True).stdout \
        == b"replaced first"
    assert any("7-Zip" in r.getMessage() and "archfs compact" in r.getMessage()
               for r in caplog.records)
    with ZipfileArchive(url=str(path), mode="a") as archive:
        archive.compact()
    seven = subprocess.run([SEVEN_ZIP, "e", "-so", str(path), "x"], capture_output=True)
    assert seven.stdout == b"replaced first"
    sevenzip_test(path)


def test_replacing_a_tiny_first_member_moves_a_small_second(tmp_path):
    """The same gap, but the member after it is small: it is moved to the end
    to widen the gap, an entry is put at the start, nothing big is copied,
    and 7-Zip sees the new content without a warning."""
    path = tmp_path / "flat.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x", b"")
        z.writestr("second.txt", b"s" * 1000)
        z.writestr("big.bin", BIG)
    before = os.stat(path)
    with ZipfileArchive(url=str(path), mode="a") as archive:
        archive.writedata("x", b"replaced first")
    after = os.stat(path)
    assert after.st_ino == before.st_ino
    assert after.st_size - before.st_size < 16 << 10
    assert zipfile_contents(path) == {"x": b"replaced first", "second.txt": b"s" * 1000,
                                      "big.bin": BIG}
    seven = subprocess.run([SEVEN_ZIP, "e", "-so", str(path), "x"], capture_output=True)
    assert seven.stdout == b"replaced first"
    assert_tools_accept(path)


def test_many_small_commits_leave_the_large_member_alone(big_zip):
    path, start, length = big_zip
    digest = region_digest(path, start, length)
    before = os.stat(path)
    with ZipfileArchive(url=str(path), mode="a") as archive:
        for i in range(20):
            archive.writedata("counter", b"%d" % i)
            archive.writedata("log/%d" % i, b"entry %d" % i)
            archive.commit()
    assert os.stat(path).st_ino == before.st_ino
    assert region_digest(path, start, length) == digest
    assert os.stat(path).st_size - before.st_size < 256 << 10
    contents = zipfile_contents(path)
    assert contents["counter"] == b"19" and contents["big.bin"] == BIG and len(contents) == 24


# -- compaction ------------------------------------------------------------------------

def churn(store, name, rounds, size, seed):
    """Replace ``name`` ``rounds`` times, committing each time; returns the last content."""
    data = b""
    for i in range(rounds):
        data = pseudo_random(size, seed + i)
        store.add_bytes(name, data)
        store.commit()
    return data


def test_compact_reclaims_dead_space_and_keeps_everything(tmp_path):
    path = write_zip(tmp_path / "c.zip", [
        Entry("keep.txt", b"keep me\n", external_attr=(stat.S_IFREG | 0o600) << 16),
        Entry("with-comment", b"c", comment=b"a member comment",
              extra=b"\x34\x12\x03\x00abc"),            # a foreign extra field, carried over
        Entry("emptydir/"),
        Entry("link", b"keep.txt", external_attr=(stat.S_IFLNK | 0o777) << 16),
    ], comment=b"the archive comment")
    store = open_store(path, True)
    store.utime("keep.txt", 1_555_555_555_123_456_700)
    last = churn(store, "churn.bin", 4, 2 << 20, 100)
    dead = store.dead_bytes
    size_before = os.path.getsize(path)
    assert dead > 5 << 20
    assert store.compact() is True
    assert store.dead_bytes == 0
    size_after = os.path.getsize(path)
    assert size_after < size_before - (5 << 20)
    assert size_after < len(last) + (64 << 10)
    expected = {"keep.txt": b"keep me\n", "with-comment": b"c", "link": b"keep.txt",
                "churn.bin": last}
    assert read_all(store) == expected
    store.add_bytes("after-compaction", b"still writable")     # the store goes on
    store.commit()
    store.close()
    expected["after-compaction"] = b"still writable"
    store = open_store(path, False)
    assert read_all(store) == expected
    assert store.stat("keep.txt")[0] == stat.S_IFREG | 0o600
    assert store.stat("keep.txt")[2] == 1_555_555_555_123_456_700
    assert store.readlink("link") == "keep.txt"
    assert tree_of(store)["emptydir"] == "dir"
    with zipfile.ZipFile(path) as z:
        assert z.comment == b"the archive comment"
        assert z.getinfo("with-comment").comment == b"a member comment"
        assert b"\x34\x12\x03\x00abc" in z.getinfo("with-comment").extra
    assert_tools_accept(path)
    assert not [n for n in os.listdir(tmp_path) if "archfs-compact" in n]


@pytest.mark.parametrize("change", ["rename-file", "rename-dir", "remove"])
def test_namespace_change_during_a_compaction(tmp_path, monkeypatch, change):
    """Renames and removals take no commit lock, so they can land while a
    compaction copies members (another thread's rename(2)). A member renamed
    then still has a local header under its old name in the new file, and
    the next commit must copy it under the new one: readers such as zipfile
    refuse a local name that differs from the central one."""
    big = pseudo_random(300_000, 3)
    path = write_zip(tmp_path / "c.zip", [Entry("a.txt", b"alpha\n"), Entry("d/b.txt", b"beta\n"),
                                          Entry("gone", pseudo_random(100_000, 2)),
                                          Entry("big", big), Entry("keep.txt", b"keep\n")])
    store = open_store(path, True)
    store.remove("gone")      # dead space that only a rewrite reclaims: "big" does not fit in it
    store.commit()
    real_rewrite = compaction.rewrite

    def rewrite_while_renaming(*args, **kwargs):
        result = real_rewrite(*args, **kwargs)
        {"rename-file": lambda: store.rename("a.txt", "moved.txt"),
         "rename-dir": lambda: store.rename("d", "e"),
         "remove": lambda: store.remove("a.txt")}[change]()
        return result

    monkeypatch.setattr(compaction, "rewrite", rewrite_while_renaming)
    assert store.compact() is True
    monkeypatch.setattr(compaction, "rewrite", real_rewrite)
    store.commit()
    expected = {"rename-file": {"moved.txt": b"alpha\n", "d/b.txt": b"beta\n"},
                "rename-dir": {"a.txt": b"alpha\n", "e/b.txt": b"beta\n"},
                "remove": {"d/b.txt": b"beta\n"}}[change]
    expected["keep.txt"] = b"keep\n"
    expected["big"] = big
    assert read_all(store) == expected
    store.close()
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()} == expected
    assert_tools_accept(path)


def test_compacted_file_that_cannot_be_opened_stops_writes(tmp_path, monkeypatch):
    """After the rename, the store must write to the new file; if that cannot
    be opened, writing on to the replaced one would be lost, so writes are
    refused with a message that says what happened."""
    path = write_zip(tmp_path / "c.zip", [Entry("a.txt", b"alpha\n"), Entry("b.txt", b"beta\n")])
    store = open_store(path, True)
    store.remove("a.txt")
    real_open = store_module.ArchiveFile

    def no_descriptors(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(store_module, "ArchiveFile", no_descriptors)
    with pytest.raises(ArchiveChangedError, match="compacted, but could not open"):
        store.compact(full=True)
    monkeypatch.setattr(store_module, "ArchiveFile", real_open)
    with pytest.raises(ArchiveChangedError, match="compacted, but could not open"):
        store.add_bytes("c.txt", b"would be lost")
    store.close()
    assert zipfile_contents(path) == {"b.txt": b"beta\n"}
    assert_tools_accept(path)


def test_plugin_compact(tmp_path):
    path = tmp_path / "p.zip"
    with ZipfileArchive(url=str(path), mode="w") as archive:
        for i in range(3):
            archive.writedata("data", pseudo_random(1 << 20, i))
            archive.commit()
        size_before = os.path.getsize(path)
        assert archive.compact() is True
        assert os.path.getsize(path) < size_before - (1 << 20)
        with archive.open("data") as f:
            assert f.read() == pseudo_random(1 << 20, 2)
    assert zipfile_contents(path) == {"data": pseudo_random(1 << 20, 2)}
    assert_tools_accept(path)


def count_compactions(monkeypatch, store):
    """The compactions ``store`` runs from now on (in place or rewritten)."""
    calls = []
    original = store._compact_locked

    def spy(*args, **kwargs):
        done = original(*args, **kwargs)
        if done:
            calls.append(os.path.getsize(store.path))
        return done

    monkeypatch.setattr(store, "_compact_locked", spy)
    return calls


def test_automatic_compaction_past_the_threshold(tmp_path, monkeypatch):
    path = tmp_path / "auto.zip"
    store = open_store(path, True, compact_ratio=0.5, compact_min=0)
    store.add_bytes("stable", b"stable content")
    store.commit()
    calls = count_compactions(monkeypatch, store)
    sizes = []
    for i in range(8):
        churn(store, "churn", 1, 200_000, i)
        sizes.append(os.path.getsize(path))
        assert store.dead_bytes <= 0.5 * os.path.getsize(path)
    assert len(calls) >= 2                       # it compacted, more than once
    assert max(sizes) < 4 * 200_000              # and the file never grew without bound
    store.close()
    assert zipfile_contents(path) == {"stable": b"stable content",
                                      "churn": pseudo_random(200_000, 7)}
    assert_tools_accept(path)


def test_no_automatic_compaction_below_the_minimum(tmp_path, monkeypatch):
    path = tmp_path / "small.zip"
    store = open_store(path, True)               # default: at least 8 MiB dead
    store.add_bytes("x", b"0")
    store.commit()
    calls = count_compactions(monkeypatch, store)
    churn(store, "churn", 10, 50_000, 0)
    assert calls == []
    assert store.dead_bytes > 400_000
    store.close()


def test_automatic_compaction_through_the_plugin_option(tmp_path):
    path = tmp_path / "opt.zip"
    big = 9 << 20
    with ZipfileArchive(url=str(path), mode="w", opts={"compact_ratio": 0.3}) as archive:
        archive.writedata("big", pseudo_random(big, 1))
        archive.commit()
        archive.writedata("big", pseudo_random(big, 2))
        archive.commit()        # 9 MiB dead of 18: past 0.3, so compacted at once
        assert os.path.getsize(path) < big + (64 << 10)
    assert zipfile_contents(path) == {"big": pseudo_random(big, 2)}


def test_reader_open_across_a_compaction(tmp_path):
    path = tmp_path / "r.zip"
    store = open_store(path, True)
    old = pseudo_random(2 << 20, 1)
    store.add_bytes("m", old)
    store.add_bytes("other", b"o")
    store.commit()
    reader = store.open_member("m")
    assert reader.read(1000) == old[:1000]
    store.add_bytes("m", b"new content")
    store.commit()
    store.compact()
    reader.seek(1 << 20)
    assert reader.read(1000) == old[1 << 20:(1 << 20) + 1000]     # the old file stays open
    reader.close()
    assert read_all(store) == {"m": b"new content", "other": b"o"}
    store.close()


# -- a good citizen: every tool accepts what archfs writes -------------------------------

def test_every_tool_accepts_every_commit(tmp_path):
    path = tmp_path / "citizen.zip"
    local = tmp_path / "local.bin"
    local.write_bytes(pseudo_random(3 << 20, 8, alphabet=20))      # > 1 MiB, compressible
    with ZipfileArchive(url=str(path), mode="w") as archive:
        steps = [
            lambda: archive.writedata("first.txt", b"first"),
            lambda: archive.replace_localfile(str(local), "dir/big-compressible.bin",
                                              mode=0o640, mtime_ns=1_600_000_000_000_000_000),
            lambda: archive.writedata("dir/random.bin", pseudo_random(1_500_000, 9)),
            lambda: archive.writedata("empty", b""),
            lambda: archive.symlink("dir/random.bin", "link"),
            lambda: archive.mkdir("emptydir", 0o700),
            lambda: archive.writedata("first.txt", b"replaced first"),
            lambda: archive.rename("dir", "moved"),
            lambda: archive.remove("empty"),
            lambda: archive.chmod("moved/random.bin", 0o755),
            lambda: archive.rename("first.txt", "moved/first.txt"),
            lambda: archive.compact(),
            lambda: archive.writedata("after-compact", b"x"),
        ]
        for step in steps:
            step()
            archive.commit()
            assert_tools_accept(path)
            listed = names_by_tool(path)
            assert all(v == listed["zipfile"] for v in listed.values()), listed
    perms = unzip_listing(path)
    assert perms["moved/big-compressible.bin"] == "-rw-r-----"
    assert perms["moved/random.bin"] == "-rwxr-xr-x"
    assert perms["emptydir/"] == "drwx------"
    assert perms["link"].startswith("l")
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("moved/big-compressible.bin")
        assert info.external_attr >> 16 == stat.S_IFREG | 0o640
        assert info.date_time == time.localtime(1_600_000_000)[:6]
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert z.read(info) == local.read_bytes()


@pytest.mark.parametrize("tool", ["unzip", "7z", "bsdtar", "zipfile"])
def test_every_tool_extracts_what_archfs_shows(tmp_path, tool):
    """Replacing and removing members, the first one included, must not let
    any extractor find old contents (7-Zip walks local headers when the
    archive's first member is not in the central directory)."""
    path = write_zip(tmp_path / "x.zip", [Entry("first", b"old first"), Entry("second", b"2"),
                                          Entry("third", b"old third"), Entry("d/f", b"df")])
    with ZipfileArchive(url=str(path), mode="a") as archive:
        archive.remove("first")
        archive.writedata("third", b"new third")
        archive.rename("d", "e")
        archive.writedata("fourth", b"4")
    store = open_store(path, False)
    shown = read_all(store)
    assert shown == {"second": b"2", "third": b"new third", "e/f": b"df", "fourth": b"4"}
    assert extract_with(tool, path, tmp_path / ("out-" + tool)) == shown
    assert_tools_accept(path)


def test_first_commit_to_a_new_archive(tmp_path):
    path = tmp_path / "fresh.zip"
    with ZipfileArchive(url=str(path), mode="w") as archive:
        archive.writedata("a", b"1")
        archive.mkdir("d")
    with open(path, "rb") as f:
        assert f.read(4) == b"PK\x03\x04"          # a member first, as 7-Zip expects
    assert_tools_accept(path)
    assert extract_with("7z", path, tmp_path / "out") == {"a": b"1"}


def test_failed_first_commit_is_retried_by_the_next(tmp_path, monkeypatch):
    """The first commit to a new archive rewrites it (a compaction). If that
    fails (a full disk), the members are still to be committed: the next
    commit, and closing, must not take the archive for clean."""
    path = tmp_path / "fresh.zip"
    with ZipfileArchive(url=str(path), mode="w") as archive:
        archive.writedata("a", b"1")
        real_rewrite = compaction.rewrite

        def full_disk(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(compaction, "rewrite", full_disk)
        with pytest.raises(OSError):
            archive.commit()
        monkeypatch.setattr(compaction, "rewrite", real_rewrite)
        assert archive.commit() is True
    assert zipfile_contents(path) == {"a": b"1"}
    assert_tools_accept(path)


# -- other programs ---------------------------------------------------------------------

def test_another_program_appending_stops_writes(tmp_path):
    path = write_zip(tmp_path / "shared.zip", [Entry("a", b"1")])
    archive = ZipfileArchive(url=str(path), mode="a")
    archive.writedata("b", b"2")
    archive.commit()
    with open(path, "ab") as f:
        f.write(b"appended by someone else")
    theirs = open(path, "rb").read()
    with pytest.raises(ArchiveChangedError) as info:
        archive.writedata("c", b"3")
    assert info.value.errno == errno.EROFS
    assert "another program" in str(info.value)
    with pytest.raises(ArchiveChangedError):       # and it stays refused
        archive.mkdir("d")
    archive.close()
    assert open(path, "rb").read() == theirs


def test_another_program_replacing_the_file_stops_writes(tmp_path):
    path = write_zip(tmp_path / "shared.zip", [Entry("a", b"1")])
    archive = ZipfileArchive(url=str(path), mode="a")
    archive.writedata("pending", b"not yet committed")
    replacement = tmp_path / "replacement.zip"
    write_zip(replacement, [Entry("theirs", b"their content")])
    os.replace(replacement, path)
    theirs = open(path, "rb").read()
    with pytest.raises(ArchiveChangedError):
        archive.writedata("c", b"3")
    with pytest.raises(ArchiveChangedError):
        archive.commit()
    archive.close()
    assert open(path, "rb").read() == theirs
    assert zipfile_contents(path) == {"theirs": b"their content"}


def test_another_program_changing_bytes_in_place(tmp_path):
    path = write_zip(tmp_path / "shared.zip", [Entry("a", b"1" * 100)])
    archive = ZipfileArchive(url=str(path), mode="a")
    archive.writedata("b", b"2")
    with open(path, "r+b") as f:           # same size, same inode, new bytes
        f.seek(0, os.SEEK_END)
        f.write(b"grown")
    theirs = open(path, "rb").read()
    with pytest.raises(ArchiveChangedError):
        archive.commit()
    archive.close()
    assert open(path, "rb").read() == theirs


def test_archive_removed_while_open(tmp_path):
    path = write_zip(tmp_path / "gone.zip", [Entry("a", b"1")])
    archive = ZipfileArchive(url=str(path), mode="a")
    os.unlink(path)
    with pytest.raises(ArchiveChangedError):
        archive.writedata("b", b"2")
    archive.close()
    assert not os.path.exists(path)


def test_second_writer_is_refused(tmp_path):
    path = write_zip(tmp_path / "busy.zip", [Entry("a", b"1")])
    first = ZipfileArchive(url=str(path), mode="a")
    with pytest.raises(ArchiveBusy) as info:
        ZipfileArchive(url=str(path), mode="a")
    assert info.value.errno == errno.EBUSY
    reader = ZipfileArchive(url=str(path), mode="r")        # readers are welcome
    assert reader.getnames() == ["a"]
    reader.close()
    first.writedata("b", b"2")
    first.close()
    second = ZipfileArchive(url=str(path), mode="a")          # free again
    second.writedata("c", b"3")
    second.close()
    assert zipfile_contents(path) == {"a": b"1", "b": b"2", "c": b"3"}


def test_second_writer_in_another_process_is_refused(tmp_path):
    path = write_zip(tmp_path / "busy.zip", [Entry("a", b"1")])
    holder = ZipfileArchive(url=str(path), mode="a")
    code = ("import sys\n"
            "from archfs.errors import ArchiveBusy\n"
            "from archfs.zipengine.store import ZipStore\n"
            "try:\n"
            "    ZipStore(sys.argv[1], True)\n"
            "except ArchiveBusy as exc:\n"
            "    print('busy:', exc)\n"
            "    sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    holder.close()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "already open for writing" in proc.stdout


# -- junk and unfinished commits ------------------------------------------------------------

def test_foreign_junk_after_the_archive(tmp_path):
    path = write_zip(tmp_path / "junk.zip", [Entry("a", b"1"), Entry("d/b", b"2")])
    with open(path, "ab") as f:
        f.write(b"this is not part of any zip archive\n" * 30)
    junked = open(path, "rb").read()
    with ZipfileArchive(url=str(path), mode="r") as archive:
        assert archive.getnames() == ["a", "d/b"]
        with archive.open("d/b") as f:
            assert f.read() == b"2"
    with pytest.raises(CorruptArchiveError, match="archfs repair") as info:
        ZipfileArchive(url=str(path), mode="a")
    assert info.value.errno == errno.EIO
    assert open(path, "rb").read() == junked


def test_unfinished_commit_is_recovered(tmp_path):
    path = tmp_path / "crash.zip"
    store = open_store(path, True)
    store.add_bytes("committed", b"safe")
    store.commit()
    store.add_bytes("pending", pseudo_random(100_000, 1))       # appended, not committed
    store.rename("committed", "renamed-pending")
    crashed = tmp_path / "crashed.zip"
    crashed.write_bytes(path.read_bytes())                      # the disk at a crash
    store.close()
    ro = open_store(crashed, False)                             # read-only: ignores the tail
    assert read_all(ro) == {"committed": b"safe"}
    ro.close()
    size = os.path.getsize(crashed)
    recovered = open_store(crashed, True)
    assert read_all(recovered) == {"committed": b"safe"}
    committed_end = os.path.getsize(crashed)
    assert committed_end < size - 100_000                       # the tail is cut off
    recovered.add_bytes("after", b"recovery")
    recovered.close()
    assert zipfile_contents(crashed) == {"committed": b"safe", "after": b"recovery"}
    assert_tools_accept(crashed)


def test_every_cut_of_a_commit_recovers(tmp_path):
    """Cut the file at every byte of a commit's tail (and zero its end, as
    blocks read that never reached the disk): each opens read-write, with
    neither error nor loss, to the previous commit -- or to the new one when
    what is left of it is complete. (The first member stays, so the commit
    writes nothing but its tail; test_zip_crash covers the other writes.)"""
    path = tmp_path / "cuts.zip"
    store = open_store(path, True)
    store.add_bytes("a.txt", b"alpha " * 20)
    store.add_bytes("d/b.txt", b"beta")
    store.add_bytes("gone.txt", b"to be removed")
    store.add_bytes("r.txt", b"to be replaced")
    store.mkdir("e")
    store.commit()
    old_state = read_all(store)
    old_bytes = path.read_bytes()
    old_end = len(old_bytes)
    store.add_bytes("c.txt", b"gamma " * 30)
    store.add_bytes("r.txt", b"replaced")
    store.rename("d", "d2")
    store.remove("gone.txt")
    store.commit()
    new_state = read_all(store)
    store.close()
    data = path.read_bytes()
    assert data[:old_end] == old_bytes            # the commit only appended
    new_end = len(data)
    assert new_end - old_end > 150
    case = tmp_path / "case.zip"
    for cut in range(old_end, new_end + 1):
        for zero_fill in (False, True):
            if zero_fill and cut == new_end:
                continue
            case.write_bytes(data[:cut] + (bytes(new_end - cut) if zero_fill else b""))
            s = open_store(case, True)
            try:
                got = read_all(s)
            finally:
                s.close()
            if cut == new_end:
                assert got == new_state
            else:
                assert got in (old_state, new_state), (cut, zero_fill, sorted(got))
            size = os.path.getsize(case)
            assert size == (old_end if got == old_state else new_end), (cut, zero_fill)
    assert_tools_accept(case)


def two_commits(path):
    """An archive after two commits; (state 1, end of commit 1, state 2)."""
    store = open_store(path, True)
    store.add_bytes("a.txt", b"alpha " * 20)
    store.add_bytes("b.txt", b"beta")
    store.commit()
    first, first_end = read_all(store), os.path.getsize(path)
    store.add_bytes("c.txt", b"gamma " * 30)
    store.commit()
    second = read_all(store)
    store.close()
    return first, first_end, second


def test_torn_end_record_is_not_taken_for_an_empty_archive(tmp_path):
    """The newest end record's signature reached the disk, its fields did not
    (zeros): that describes an empty central directory at offset 0, which must
    not be believed -- neither as an empty archive nor as a self-extractor
    whose stub is the whole archive."""
    path = tmp_path / "torn.zip"
    first, _first_end, second = two_commits(path)
    data = path.read_bytes()
    eocd = data.rindex(b"PK\x05\x06")
    for keep in (4, 8, 12, 16):            # signature plus some fields, the rest zeros
        torn = data[:eocd + keep] + bytes(len(data) - eocd - keep)
        case = tmp_path / "case.zip"
        case.write_bytes(torn)
        for writable in (False, True):
            store = open_store(case, writable)
            try:
                got = read_all(store)
            finally:
                store.close()
            assert got in (first, second), (keep, writable, sorted(got))


def test_torn_signature_at_the_start_of_a_tail(tmp_path):
    """A crash that left the first bytes of the next local header's signature
    and zeros after them is an unfinished commit like any other."""
    path = tmp_path / "torn.zip"
    first, first_end, _second = two_commits(path)
    data = path.read_bytes()
    for kept in (1, 2, 3):
        case = tmp_path / "case.zip"
        case.write_bytes(data[:first_end + kept] + bytes(len(data) - first_end - kept))
        store = open_store(case, True)
        try:
            assert read_all(store) == first
        finally:
            store.close()
        assert os.path.getsize(case) == first_end
