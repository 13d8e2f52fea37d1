"""The ``archfs`` command: help, mount and unmount, and the one-line errors."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from archfs.mount import preflight, statefiles
from archfs.mount.options import OptionError, parse_options
from mount_fixtures import archfs, build_archive, check_zip, is_mounted, run


def one_line_error(result, *words):
    """The command failed with exactly one line on stderr holding ``words``."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_help_shows_an_example():
    result = archfs("--help", check=True)
    assert "archfs mount photos.zip ~/photos" in result.stdout
    mount_help = archfs("mount", "--help", check=True).stdout
    assert "commit_interval" in mount_help and "archfs unmount ~/photos" in mount_help
    assert "log" in mount_help


def test_mount_returns_once_live_and_unmount_once_committed(kind, tmp_path):
    archive = build_archive(kind, tmp_path)
    point = tmp_path / "mnt"
    point.mkdir()
    result = archfs("mount", archive, point, check=True)
    try:
        assert result.stdout == "" and result.stderr == ""
        assert "readme.txt" in os.listdir(point)  # no waiting: live on return
        info = statefiles.read_running(str(point.resolve()))
        (point / "added.txt").write_bytes(b"added\n")
    finally:
        archfs("unmount", point, check=True)
    assert not is_mounted(point)
    assert not statefiles.process_running(info["pid"], info["start_time"])
    if kind == "zip":
        check_zip(archive)
        assert zipfile.ZipFile(archive).read("added.txt") == b"added\n"
    else:
        assert (archive / "added.txt").read_bytes() == b"added\n"


def test_missing_archive_is_created_read_write(tmp_path, mounter):
    archive = tmp_path / "new.zip"
    m = mounter(archive)
    (m / "first.txt").write_bytes(b"first\n")
    m.unmount()
    check_zip(archive)
    assert zipfile.ZipFile(archive).namelist() == ["first.txt"]


def test_missing_archive_read_only_is_an_error(tmp_path):
    (tmp_path / "mnt").mkdir()
    one_line_error(archfs("mount", "-o", "ro", tmp_path / "nope.zip", tmp_path / "mnt"),
                   "no such archive", "nope.zip")
    assert not is_mounted(tmp_path / "mnt")


@pytest.mark.parametrize("content", [b"this is not a zip file at all\n" * 10,
                                     b"PK\x03\x04" + b"\x00" * 40])
def test_not_a_zip_or_corrupt(tmp_path, content):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(content)
    (tmp_path / "mnt").mkdir()
    line = one_line_error(archfs("mount", bad, tmp_path / "mnt"))
    assert "bad.zip" in line or "zip" in line.lower()
    assert not is_mounted(tmp_path / "mnt")
    assert bad.read_bytes() == content  # a failed mount leaves the file alone


def test_bad_mountpoints(tmp_path):
    archive = build_archive("dir", tmp_path)
    one_line_error(archfs("mount", archive, tmp_path / "missing"), "does not exist")
    (tmp_path / "file").write_text("x")
    one_line_error(archfs("mount", archive, tmp_path / "file"), "not a directory")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    one_line_error(archfs("mount", archive, tmp_path / "full"), "not empty")
    one_line_error(archfs("mount", archive, archive / "emptydir"), "inside")


def test_bad_options(tmp_path):
    archive = build_archive("dir", tmp_path)
    (tmp_path / "mnt").mkdir()
    one_line_error(archfs("mount", "-o", "commit_interval=soon", archive, tmp_path / "mnt"),
                   "commit_interval")
    one_line_error(archfs("mount", "-o", "ro,frobnicate=3", archive, tmp_path / "mnt"),
                   "unknown option frobnicate")
    assert not is_mounted(tmp_path / "mnt")


def test_option_parsing():
    opts = parse_options(["ro,commit_interval=2.5", "tmpdir=/a\\,b,password_file=/p"])
    assert opts.read_only and opts.commit_interval == 2.5 and opts.tmpdir == "/a,b"
    assert opts.plugin == {"password_file": "/p"}
    assert not parse_options(["ro", "rw"]).read_only
    for bad in (["commit_interval=-1"], ["ro=1"], ["tmpdir"], ["allow_other,allow_root"]):
        with pytest.raises(OptionError):
            parse_options(bad)


def test_no_fuse_device(tmp_path):
    archive = build_archive("dir", tmp_path)
    (tmp_path / "mnt").mkdir()
    env = dict(os.environ, ARCHFS_FUSE_DEVICE=str(tmp_path / "no-such-fuse"))
    result = subprocess.run([sys.executable, "-m", "archfs", "mount", str(archive),
                             str(tmp_path / "mnt")], env=env, capture_output=True, text=True,
                            timeout=60)
    one_line_error(result, "no-such-fuse", "does not exist")


def test_no_fusermount_for_an_unprivileged_user(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(preflight.MountError, match="fusermount.* not found"):
        preflight.check_fusermount(is_root=False)
    preflight.check_fusermount(is_root=True)  # root mounts without it


def _nobody_can_run_archfs():
    probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-c", "import archfs.cli"]
    return shutil.which("setpriv") and subprocess.run(probe, capture_output=True).returncode == 0


def test_permission_denied(tmp_path, monkeypatch):
    if os.geteuid() != 0:  # an unwritable mountpoint
        archive = build_archive("dir", tmp_path)
        point = tmp_path / "mnt"
        point.mkdir()
        os.chmod(point, 0o555)
        one_line_error(archfs("mount", archive, point), "permission denied")
        assert not is_mounted(point)
    elif _nobody_can_run_archfs():  # root may do anything: mount as nobody instead
        import tempfile
        shared = Path(tempfile.mkdtemp(prefix="archfs-perm-"))
        try:
            os.chmod(shared, 0o755)
            archive = build_archive("dir", shared)
            (shared / "mnt").mkdir()
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                       sys.executable, "-m", "archfs", "mount", str(archive), str(shared / "mnt")]
            env = dict(os.environ, XDG_RUNTIME_DIR="", HOME=str(shared))
            result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
            one_line_error(result, "permission denied")
            assert not is_mounted(shared / "mnt")
        finally:
            shutil.rmtree(shared)
    else:  # nobody cannot read this checkout: check the decision as a non-root user
        point = tmp_path / "mnt"
        point.mkdir()
        monkeypatch.setattr(preflight, "_is_root", lambda: False)
        monkeypatch.setattr(preflight.os, "access", lambda path, mode: False)
        with pytest.raises(preflight.MountError, match="permission denied: no write access"):
            preflight.check_mountpoint(str(point))


def test_unwritable_archive_mounts_read_only_with_a_warning(tmp_path, mounter):
    archive = build_archive("zip", tmp_path)
    holder = tmp_path / "ro-view"
    holder.mkdir()
    if os.geteuid() == 0:  # root writes any file: show it a read-only filesystem
        run(["mount", "--bind", tmp_path, holder])
        run(["mount", "-o", "remount,ro,bind", holder])
        view = holder / "archive.zip"
    else:
        os.chmod(archive, 0o444)
        view = archive
    try:
        point = tmp_path / "mnt"
        point.mkdir()
        result = archfs("mount", view, point)
        try:
            assert result.returncode == 0, result.stderr
            assert "not writable" in result.stderr and "read-only" in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
            with pytest.raises(OSError):
                (point / "x.txt").write_bytes(b"x")
            assert (point / "readme.txt").read_bytes()
        finally:
            archfs("unmount", point, check=True)
    finally:
        if os.geteuid() == 0:
            run(["umount", holder], check=False)


def test_same_archive_twice_read_write_is_refused(kind, tmp_path, mounter):
    archive = build_archive(kind, tmp_path)
    mounter(archive, kind=kind)
    (tmp_path / "second").mkdir()
    one_line_error(archfs("mount", archive, tmp_path / "second"), "already mounted")


def test_unmount_errors(tmp_path):
    (tmp_path / "plain").mkdir()
    one_line_error(archfs("unmount", tmp_path / "plain"), "not mounted")


def test_verbose_log_file(kind, tmp_path):
    archive = build_archive(kind, tmp_path)
    point, log = tmp_path / "mnt", tmp_path / "archfs.log"
    point.mkdir()
    archfs("mount", "-v", "--log-file", log, archive, point, check=True)
    try:
        with pytest.raises(FileNotFoundError):
            open(point / "missing")
    finally:
        archfs("unmount", point, check=True)
    text = log.read_text()
    assert "DEBUG" in text and "missing" in text and "everything is committed" in text


def test_python_dash_m_and_console_script_agree():
    script = Path(sys.executable).with_name("archfs")
    if not script.exists():
        pytest.fail("the archfs console script is not installed next to %s" % sys.executable)
    assert run([script, "--version"]).stdout == archfs("--version", check=True).stdout
