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


# -- one exit status per kind of problem, whatever the subcommand ------------

def _status_cases(tmp_path):
    """(argv, exit status, words in the one line) for each kind of problem."""
    archive = build_archive("zip", tmp_path)
    (tmp_path / "mnt").mkdir()
    (tmp_path / "plain").mkdir()
    notzip = tmp_path / "notzip.zip"
    notzip.write_bytes(b"this is not a zip file\n" * 20)
    missing = tmp_path / "missing.zip"
    mnt, nowhere = tmp_path / "mnt", tmp_path / "nowhere"
    usage = [(["mount", "--frobnicate", archive, mnt], "unrecognized arguments"),
             (["unmount"], "required"),
             (["ls", "-x", archive], "unrecognized arguments"),
             (["cat", archive], "required"),
             (["info"], "required"),
             (["repair", archive, "extra"], "unrecognized arguments"),
             (["compact"], "required"),
             (["nosuchcommand"], "invalid choice")]
    options = [["mount", "-o", "nosuch=1", archive, mnt],
               ["mount", "-o", "commit_interval=abc", archive, mnt],
               ["mount", "-o", "ro=1", archive, mnt],
               ["mount", "-o", "tmpdir", archive, mnt],
               ["mount", "-o", "compression_level=12", archive, mnt],
               [archive, mnt, "-o", "nosuch"],
               ["ls", "-o", "commit_interval=1", archive],
               ["info", "-o", "password", archive],
               ["cat", "-o", "nosuch=1", archive, "readme.txt"]]
    archive_problems = [
        (["mount", "-o", "ro", missing, mnt], "no such archive"),
        (["mount", notzip, mnt], "not a zip"),
        (["ls", missing], "no such archive"),
        (["ls", archive, "no/such/dir"], "no such file or directory"),
        (["cat", archive, "nosuch.txt"], "no such file or directory"),
        (["cat", archive, "photos"], "is a directory"),
        (["info", missing], "no such archive"),
        (["repair", missing], "no such archive"),
        (["compact", missing], "no such archive"),
        (["ls", notzip], "not a zip")]
    system = [(["mount", archive, nowhere], "mountpoint does not exist"),
              (["mount", archive, archive], "not a directory"),
              (["unmount", nowhere], "no such directory"),
              (["unmount", tmp_path / "plain"], "not mounted")]
    return ([(argv, 2, words) for argv, words in usage]
            + [(argv, 2, "option") for argv in options]
            + [(argv, 3, words) for argv, words in archive_problems]
            + [(argv, 4, words) for argv, words in system])


def test_exit_status_is_one_per_kind_of_problem(tmp_path):
    for argv, status, words in _status_cases(tmp_path):
        result = archfs(*argv)
        assert result.returncode == status, (argv, result.returncode, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert words in last, (argv, result.stderr)
        if status != 2 or argv[0] not in ("unmount", "ls", "cat", "info", "repair",
                                           "compact", "nosuchcommand"):
            assert last.startswith("archfs"), result.stderr
        assert not is_mounted(tmp_path / "mnt")


def test_the_exit_status_table_is_documented():
    from archfs import exitcodes
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    help_text = archfs("--help", check=True).stdout
    for code, text in exitcodes.TABLE:
        assert "| %d | %s |" % (code, text) in readme
        assert str(code) in help_text and text.replace("`", "")[:40] in " ".join(
            help_text.split())


def test_mount8_form_is_archfs_mount():
    from archfs.cli import mount8_form
    assert mount8_form(["a.zip", "/mnt", "-o", "ro"]) == ["mount", "a.zip", "/mnt", "-o", "ro"]
    assert mount8_form(["-o", "ro,dev", "a.zip", "/mnt"])[0] == "mount"
    assert mount8_form(["s3://bucket/a.zip", "/mnt"])[0] == "mount"
    assert mount8_form(["ls", "a.zip", "dir"]) == ["ls", "a.zip", "dir"]
    assert mount8_form(["info", "a.zip"]) == ["info", "a.zip"]
    assert mount8_form(["a.zip"]) == ["a.zip"]           # one word: an unknown command
    assert mount8_form(["--help"]) == ["--help"]


def test_mount8_form_mounts(tmp_path):
    """What mount.fuse3 runs: options after the mountpoint, dev and suid added."""
    archive = build_archive("zip", tmp_path)
    point = tmp_path / "mnt"
    point.mkdir()
    result = archfs(archive, point, "-o", "ro,noexec,dev,suid,noauto,_netdev")
    try:
        assert result.returncode == 0, result.stderr
        assert (point / "readme.txt").read_bytes() == b"an archive mounted as a folder\n"
        with open("/proc/self/mounts") as f:
            line = next(line for line in f if line.split()[1] == str(point.resolve()))
        flags = line.split()[3].split(",")
        assert line.split()[2] == "fuse.archfs"
        assert {"ro", "noexec", "nosuid", "nodev"} <= set(flags)   # dev, suid: ignored
    finally:
        archfs("unmount", point, check=True)


def test_a_url_source_is_not_taken_for_a_file_name(tmp_path):
    from archfs import sources
    assert sources.normalize("s3://bucket/a.zip") == "s3://bucket/a.zip"
    assert sources.normalize("https://host/x.zip?sig=1") == "https://host/x.zip?sig=1"
    assert sources.normalize("file:///tmp/a%20b.zip") == "/tmp/a b.zip"
    assert sources.normalize("c:x") == os.path.abspath("c:x")
    (tmp_path / "mnt").mkdir()
    # (a scheme no transport reads: s3:// would go to the network)
    result = archfs("mount", "-o", "ro", "nosuchscheme://bucket/a.zip", tmp_path / "mnt")
    assert result.returncode == 3
    assert "nosuchscheme://bucket/a.zip" in result.stderr and str(tmp_path) not in result.stderr


def test_generic_mount8_options():
    opts = parse_options(["rw,nodev,nosuid,noexec,noatime,dev,suid,auto,noauto,user,users,"
                          "nouser,_netdev,nofail,defaults,x-systemd.automount,"
                          "x-systemd.idle-timeout=60,comment=x,user=alice,relatime"])
    assert not opts.read_only and opts.plugin == {}
    assert opts.kernel == ["noexec", "noatime", "relatime"]
    assert "x-systemd.idle-timeout=60" in opts.ignored and "user=alice" in opts.ignored
    assert parse_options(["sync"]).commit_interval == 0
    with pytest.raises(OptionError, match="takes no value"):
        parse_options(["noexec=1"])


def test_every_option_is_in_help_and_readme_with_its_default():
    from archfs.archives import plugins
    from archfs.mount import options
    from archfs.optionspec import declared
    mount_help = " ".join(archfs("mount", "--help", check=True).stdout.split())
    specs = list(options.ARCHFS)
    for cls in plugins().values():       # every plugin's options need a line of help
        specs += declared(getattr(cls, "options", ())).values()
    assert {"password", "password_file", "compression_level", "index_cache",
            "compact_ratio"} <= {spec.name for spec in specs}
    for spec in specs:
        assert spec.help != "(no description)", "%s has no help text" % spec.name
        assert "%s (default: %s)" % (" ".join(spec.help.split()), spec.default) in mount_help, \
            spec.name
        assert spec.label in mount_help
    for names, _, text in options.GENERIC:
        assert ", ".join(names) in mount_help
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = options.markdown_table()
    assert table in readme, (
        "the README's option table differs from the declared options; replace it with "
        "the output of python -m archfs.mount.options:\n" + table)


def test_unmount_of_a_dead_mount_cleans_up_with_a_warning(tmp_path, mounter):
    import signal
    import time
    archive = build_archive("zip", tmp_path)
    m = mounter(archive)
    with open(m / "kept.txt", "wb") as f:
        f.write(b"kept\n")
        f.flush()
        os.fsync(f.fileno())
    os.kill(m.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while m.daemon_running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert is_mounted(m.path)                     # the kernel keeps the dead mount
    with pytest.raises(OSError):
        os.listdir(m.path)
    result = archfs("unmount", m.path, timeout=60)
    m.unmounted = True
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("archfs: warning:"), result.stderr
    assert "ended without unmounting" in lines[0] and str(m.pid) in lines[0]
    assert not is_mounted(m.path)
    assert statefiles.read_running(os.path.realpath(m.path)) is None
    # nothing is left to clean: the archive mounts again at once, with what was fsynced
    again = mounter(archive, mountpoint=m.path)
    assert (again / "kept.txt").read_bytes() == b"kept\n"
    assert archfs("unmount", m.path).returncode == 0
    again.unmounted = True
    one_line_error(archfs("unmount", m.path), "not mounted")
