"""Writing back to S3 (SeaweedFS on 127.0.0.1): the object stays a zip every
tool accepts, a commit sends what changed (counted on the wire), a second
writer makes the commit fail cleanly with nothing lost, a daemon killed in
the middle of a commit leaves the object as it was."""

import io
import os
import signal
import threading
import time
import zipfile

import pytest

from mount_fixtures import SAMPLE, archfs, build_archive, is_mounted, run
from zip_builders import assert_tools_accept, pseudo_random

NEVER = "commit_interval=3600"    # only fsync and unmount commit


def object_zip(s3, name, tmp_path) -> dict:
    """The object's members (name -> bytes) after unzip -t, 7zz t and zipfile
    all accepted it."""
    path = tmp_path / ("got-%d.zip" % time.monotonic_ns())
    path.write_bytes(s3.get(name))
    assert_tools_accept(path)
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


def cd_size(data: bytes) -> int:
    """The central directory's size, from the end record."""
    eocd = data.rindex(b"PK\x05\x06")
    return int.from_bytes(data[eocd + 12:eocd + 16], "little")


def test_create_replace_remove_rename_through_an_s3_mount(tmp_path, s3, mounter):
    s3.put_file("a.zip", build_archive("zip", tmp_path))
    m = mounter(s3.url("a.zip"), NEVER)
    (m / "new.txt").write_bytes(b"created through S3\n")
    (m / "readme.txt").write_bytes(b"replaced\n")
    os.remove(m / "data" / "numbers.bin")
    os.rename(m / "photos" / "2024" / "notes.txt", m / "notes-moved.txt")
    os.rename(m / "photos" / "2023", m / "photos" / "old")
    os.mkdir(m / "fresh")
    (m / "fresh" / "big.bin").write_bytes(pseudo_random(3 << 20, 9))
    os.symlink("new.txt", m / "link-new")
    m.unmount()
    got = object_zip(s3, "a.zip", tmp_path)
    assert got["new.txt"] == b"created through S3\n"
    assert got["readme.txt"] == b"replaced\n"
    assert "data/numbers.bin" not in got and "photos/2024/notes.txt" not in got
    assert got["notes-moved.txt"] == SAMPLE["photos/2024/notes.txt"]
    assert got["photos/old/beach.jpg"] == SAMPLE["photos/2023/beach.jpg"]
    assert got["fresh/big.bin"] == pseudo_random(3 << 20, 9)
    assert got["link-new"] == b"new.txt"
    assert got["photos/2024/snow.jpg"] == SAMPLE["photos/2024/snow.jpg"]
    # and a mount of the new version reads it all back
    again = mounter(s3.url("a.zip"), "ro")
    assert os.readlink(again / "link-new") == "new.txt"
    assert (again / "photos" / "old" / "beach.jpg").read_bytes() == SAMPLE["photos/2023/beach.jpg"]


def test_a_missing_object_is_created_and_fsync_commits(tmp_path, s3, mounter):
    m = mounter(s3.url("fresh.zip"), NEVER)
    with open(m / "first.txt", "wb") as f:
        f.write(b"one\n")
        f.flush()
        os.fsync(f.fileno())            # committed: the object exists now
        assert object_zip(s3, "fresh.zip", tmp_path) == {"first.txt": b"one\n"}
    (m / "second.txt").write_bytes(b"two\n")
    m.unmount()
    assert object_zip(s3, "fresh.zip", tmp_path) == {"first.txt": b"one\n",
                                                     "second.txt": b"two\n"}


def test_a_commit_adding_1_kib_to_a_100_mib_object_sends_less_than_1_mib_plus_the_directory(
        tmp_path, s3, s3_proxy, mounter):
    path = tmp_path / "big.zip"
    block = pseudo_random(1 << 20, 11)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(100):
            zf.writestr("part%03d.bin" % i, block[i:] + block[:i])
        for i in range(2000):                  # a directory of some size
            zf.writestr("small/%04d.txt" % i, b"%d\n" % i)
    assert path.stat().st_size > 100 << 20
    s3.put_file("big.zip", path)
    m = mounter(s3.url("big.zip"), NEVER)
    s3_proxy.reset()
    with open(m / "added.txt", "wb") as f:
        f.write(pseudo_random(1024, 12))
        f.flush()
        os.fsync(f.fileno())
    sent = s3_proxy.sent()
    copies = [e for e in s3_proxy.log if e[0] == "PUT" and "partNumber" in e[1] and e[2] == 0]
    data = s3.get("big.zip")
    directory = cd_size(data)
    assert sent < (1 << 20) + directory, (sent, directory, s3_proxy.log)
    assert copies, "the unchanged 100 MiB were not copied server-side"
    m.unmount()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("added.txt") == pseudo_random(1024, 12)
        assert zf.read("part042.bin") == block[42:] + block[:42]
        assert zf.testzip() is None


def test_a_second_writer_makes_the_commit_fail_cleanly_with_nothing_lost(tmp_path, s3, mounter):
    s3.put_file("shared.zip", build_archive("zip", tmp_path))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    m = mounter(s3.url("shared.zip"), NEVER, "tmpdir=%s" % scratch)
    (m / "mine.txt").write_bytes(b"my change\n")
    (m / "readme.txt").write_bytes(b"my version of readme\n")
    # meanwhile another machine publishes its own version of the object
    theirs = io.BytesIO()
    with zipfile.ZipFile(theirs, "w") as zf:
        zf.writestr("theirs.txt", b"their change\n")
    s3.put("shared.zip", theirs.getvalue())
    with open(m / "late.txt", "wb") as f:
        f.write(b"written after the conflict\n")
        f.flush()
        with pytest.raises(OSError):         # the commit fails, and says so
            os.fsync(f.fileno())
    result = archfs("unmount", m.path, timeout=120)
    m.unmounted = True
    assert result.returncode != 0
    assert "another writer" in result.stderr + m.log()
    assert s3.get("shared.zip") == theirs.getvalue()        # their version is untouched
    rescued = {}
    for top, _dirs, files in os.walk(scratch):
        for name in files:
            full = os.path.join(top, name)
            where, _, rel = os.path.relpath(full, scratch).partition("/")
            if ".unsaved-" in where:
                rescued[rel] = open(full, "rb").read()
    assert rescued.get("mine.txt") == b"my change\n", rescued
    assert rescued.get("readme.txt") == b"my version of readme\n", rescued
    assert rescued.get("late.txt") == b"written after the conflict\n", rescued


def test_killing_the_daemon_mid_commit_leaves_the_object_as_it_was(tmp_path, s3, s3_proxy,
                                                                   mounter):
    path = tmp_path / "k.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("base.bin", pseudo_random(6 << 20, 13), zipfile.ZIP_STORED)
        zf.writestr("notes.txt", b"before\n")
    s3.put_file("k.zip", path)
    before = s3.get("k.zip")
    m = mounter(s3.url("k.zip"), NEVER)
    (m / "notes.txt").write_bytes(b"after\n")
    s3_proxy.hold(lambda method, target: method == "PUT" and "partNumber=" in target)
    committing = threading.Thread(target=_fsync_quietly, args=(m / "notes.txt",), daemon=True)
    committing.start()
    assert s3_proxy.arrived.wait(60), "no upload started"
    os.kill(m.pid, signal.SIGKILL)                          # in the middle of the upload
    s3_proxy.release()
    committing.join(60)
    m.force_cleanup()
    m.unmounted = True
    assert not is_mounted(m.path)
    assert s3.get("k.zip") == before                        # the object is as it was
    assert s3.uploads("k.zip"), "the killed commit left no upload behind?"
    again = mounter(s3.url("k.zip"), NEVER)                 # aborts the unfinished upload
    assert s3.uploads("k.zip") == []
    assert "aborted an unfinished upload" in again.log()
    assert (again / "notes.txt").read_bytes() == b"before\n"
    again.unmount()
    assert s3.get("k.zip") == before


def _fsync_quietly(path) -> None:
    try:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    except OSError:
        pass      # the daemon was killed under it


def test_tar_on_s3_mounts_read_only_with_a_notice(tmp_path, s3):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    run(["tar", "-cf", tmp_path / "t.tar", "-C", src, "."])
    s3.put_file("t.tar", tmp_path / "t.tar")
    point = tmp_path / "mnt"
    point.mkdir()
    result = archfs("mount", s3.url("t.tar"), point)
    try:
        assert result.returncode == 0, result.stderr
        assert "read-only" in result.stderr and "tar" in result.stderr
        assert (point / "a.txt").read_text() == "alpha\n"
    finally:
        assert archfs("unmount", point).returncode == 0


def test_archfs_compact_of_an_s3_object(tmp_path, s3):
    """Compaction rewrites a remote archive whole, in one publish."""
    from archfs import open_archive
    path = tmp_path / "c.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("big.bin", pseudo_random(6 << 20, 21), zipfile.ZIP_STORED)
        zf.writestr("keep.txt", b"kept\n")
    s3.put_file("c.zip", path)
    with open_archive(s3.url("c.zip"), mode="a", compact_ratio="1") as archive:
        archive.remove("big.bin")
        archive.writedata("new.txt", b"new\n")
        assert archive.commit()
    assert len(s3.get("c.zip")) > 6 << 20                  # the dead member is still there
    result = archfs("compact", s3.url("c.zip"), timeout=120)
    assert result.returncode == 0, result.stderr
    data = s3.get("c.zip")
    assert len(data) < 4096, len(data)
    assert object_zip(s3, "c.zip", tmp_path) == {"keep.txt": b"kept\n", "new.txt": b"new\n"}
