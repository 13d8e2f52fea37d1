"""The Python API: archfs.mount(...) as a context manager, archfs.open_archive,
and failures raised as the plugin API's exceptions with the command's words."""

import errno
import logging
import os
import signal
import threading
import time
import zipfile

import pytest

import archfs
from archfs import errors
from archfs.mount import statefiles
from mount_fixtures import archfs as archfs_command, build_archive, check_zip, is_mounted

SNOW = b"\xff\xd8\xff\xe0 snow " * 500


@pytest.fixture
def point(tmp_path):
    """A mountpoint that no test leaves mounted."""
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    if is_mounted(path):
        info = statefiles.read_running(os.path.realpath(path)) or {}
        if archfs_command("unmount", "--lazy", path, timeout=120).returncode != 0 and \
                info.get("pid"):
            os.kill(info["pid"], signal.SIGKILL)
        pytest.fail("the test left %s mounted" % path)


def test_mount_is_a_context_manager_that_commits_on_leaving(kind, tmp_path, point):
    archive = build_archive(kind, tmp_path)
    threading.Thread(target=time.sleep, args=(0.5,)).start()   # a threaded caller is fine
    with archfs.mount(archive, point, commit_interval=3600) as m:
        assert m.mounted and not m.read_only and m.path == point.resolve()
        assert (m.path / "photos/2024/snow.jpg").read_bytes() == SNOW
        (m / "from-python.txt").write_bytes(b"written from Python\n")
        pid = m.pid
    # commit_interval=3600: only the unmount commits, and it has returned
    assert not m.mounted and not is_mounted(point)
    assert not statefiles.process_running(pid)
    if kind == "zip":
        check_zip(archive)
        assert zipfile.ZipFile(archive).read("from-python.txt") == b"written from Python\n"
    else:
        assert (archive / "from-python.txt").read_bytes() == b"written from Python\n"


def test_unmount_method_and_read_only(tmp_path, point):
    archive = build_archive("zip", tmp_path)
    before = archive.read_bytes()
    m = archfs.mount(str(archive), str(point), ro=True, attr_timeout=5)
    try:
        assert m.read_only and m.mounted
        with pytest.raises(OSError) as caught:
            (point / "x.txt").write_bytes(b"x")
        assert caught.value.errno == errno.EROFS
    finally:
        m.unmount()
    m.unmount()                                   # a second time does nothing
    assert not is_mounted(point) and archive.read_bytes() == before


def test_the_block_raising_still_unmounts_and_keeps_its_exception(tmp_path, point):
    archive = build_archive("zip", tmp_path)
    with pytest.raises(KeyError):
        with archfs.mount(archive, point) as m:
            (m / "before-the-error.txt").write_bytes(b"kept\n")
            handle = open(m / "still-open.txt", "wb")   # busy: a plain unmount fails
            handle.write(b"open\n")
            try:
                raise KeyError("the caller's own error")
            finally:
                threading.Timer(0.5, handle.close).start()
    deadline = time.monotonic() + 60
    while statefiles.process_running(m.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_mounted(point)
    assert zipfile.ZipFile(archive).read("before-the-error.txt") == b"kept\n"
    assert zipfile.ZipFile(archive).read("still-open.txt") == b"open\n"


def _command_line(*args):
    result = archfs_command(*args)
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


def test_failures_raise_the_plugin_api_exceptions_with_the_commands_words(tmp_path, point):
    archive = build_archive("zip", tmp_path)
    notzip = tmp_path / "notzip.zip"
    notzip.write_bytes(b"not a zip at all\n" * 10)
    cases = [
        ((notzip, point), {}, errors.NotAnArchiveError, ("mount", notzip, point)),
        ((tmp_path / "missing.zip", point), {"ro": True}, errors.NoSuchFile,
         ("mount", "-o", "ro", tmp_path / "missing.zip", point)),
        ((archive, point), {"nosuch": 1}, archfs.OptionError,
         ("mount", "-o", "nosuch=1", archive, point)),
        ((archive, point), {"compression_level": "high"}, archfs.OptionError,
         ("mount", "-o", "compression_level=high", archive, point)),
        ((archive, tmp_path / "nowhere"), {}, archfs.MountError,
         ("mount", archive, tmp_path / "nowhere")),
    ]
    for args, options, cls, command in cases:
        with pytest.raises(cls) as caught:
            archfs.mount(*args, **options)
        assert isinstance(caught.value, OSError) and caught.value.errno
        assert _command_line(*command) == "archfs: %s" % caught.value
    with pytest.raises(ValueError):             # an option error is also a ValueError
        archfs.mount(archive, point, commit_interval="soon")
    assert not is_mounted(point)


def test_a_second_read_write_mount_is_archive_busy(tmp_path, point):
    archive = build_archive("zip", tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    with archfs.mount(archive, point):
        with pytest.raises(errors.ArchiveBusy) as caught:
            archfs.mount(archive, other)
        assert caught.value.errno == errno.EBUSY and "already mounted" in str(caught.value)
    assert not is_mounted(other)


def test_unmount_of_a_killed_daemon_warns_and_succeeds(tmp_path, point, caplog):
    archive = build_archive("zip", tmp_path)
    m = archfs.mount(archive, point)
    os.kill(m.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while statefiles.process_running(m.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    with caplog.at_level(logging.WARNING, logger="archfs"):
        m.unmount()
    assert not is_mounted(point)
    assert any("ended without unmounting" in r.getMessage() for r in caplog.records)


def test_open_archive_reads_and_writes_without_fuse(tmp_path):
    archive = build_archive("zip", tmp_path)
    with archfs.open_archive(archive) as a:
        assert a.name == "zip" and "photos/2024/snow.jpg" in a.getnames()
        with a.open("photos/2024/snow.jpg") as f:
            assert f.read() == SNOW
        assert a.stat("photos").is_dir
    with archfs.open_archive("file://" + str(archive), "a", compression_level=0) as a:
        a.writedata("added.txt", b"added through the plugin API\n")
    check_zip(archive)
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("added.txt") == b"added through the plugin API\n"
        assert zf.getinfo("added.txt").compress_type == zipfile.ZIP_STORED
    with pytest.raises(errors.NoSuchFile, match="no such archive"):
        archfs.open_archive(tmp_path / "missing.zip")
    with pytest.raises(archfs.OptionError, match="unknown option"):
        archfs.open_archive(archive, nosuch="1")
    with archfs.open_archive(build_archive("dir", tmp_path)) as a:
        assert a.name == "filesystem" and "readme.txt" in a.getnames()
