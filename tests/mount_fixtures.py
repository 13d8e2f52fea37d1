"""Real FUSE mounts for tests, made through the real ``archfs`` command.

``mounter`` mounts in a subprocess (``python -m archfs mount``, background
mode, as a user would) and unmounts every mount at teardown, also when the
test failed: ``archfs unmount`` (which waits for the daemon to commit and
exit), then a lazy unmount and, as a last resort, SIGKILL to that daemon's
pid. A daemon that ended badly fails the test.

``kind`` parametrizes a test over the two plugins: ``dir`` (a directory,
the filesystem plugin) and ``zip`` (a zip file). ``extract`` turns an
unmounted archive into a plain directory to compare: for a zip it first
checks ``unzip -t`` and then extracts with ``unzip``.
"""

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from archfs.mount import mounttable, statefiles

# conftest star-imports this module: only the fixtures go there.
__all__ = ["kind", "mounter", "sample", "sample_mount", "empty_mount"]

ARCHFS = [sys.executable, "-m", "archfs"]
KINDS = ["dir", "zip"]

SAMPLE = {
    "readme.txt": b"an archive mounted as a folder\n",
    "data/numbers.bin": bytes(range(256)) * 64,
    "data/empty.dat": b"",
    "photos/2023/beach.jpg": b"\xff\xd8\xff\xe0 not really a jpeg " * 100,
    "photos/2024/snow.jpg": b"\xff\xd8\xff\xe0 snow " * 500,
    "photos/2024/notes.txt": b"cold\nwhite\n",
}
SAMPLE_DIRS = ["emptydir"]
SAMPLE_LINKS = {"latest": "photos/2024/snow.jpg"}


def run(command, timeout=60, check=True, text=True, **kwargs):
    """Run a command; on failure the assertion shows its output."""
    result = subprocess.run([str(c) for c in command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text,
                            timeout=timeout, **kwargs)
    if check:
        assert result.returncode == 0, "%s -> %d\nstdout: %s\nstderr: %s" % (
            " ".join(map(str, command)), result.returncode, result.stdout, result.stderr)
    return result


def archfs(*args, timeout=60, check=False):
    return run(ARCHFS + list(args), timeout=timeout, check=check)


def make_tree(root, files, dirs=(), symlinks=None):
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name in dirs:
        (root / name).mkdir(parents=True, exist_ok=True)
    for name, target in (symlinks or {}).items():
        os.symlink(target, root / name)
    return root


def build_archive(kind, where, files=SAMPLE, dirs=SAMPLE_DIRS, symlinks=SAMPLE_LINKS):
    """An archive of ``kind`` holding the tree; zips are made by Info-ZIP ``zip``."""
    where = Path(where)
    if kind == "dir":
        return make_tree(where / "archive", files, dirs, symlinks)
    source = make_tree(where / "zip-source", files, dirs, symlinks)
    archive = where / "archive.zip"
    if files or dirs or symlinks:
        run(["zip", "-qry", archive, "."], cwd=source)
    else:
        zipfile.ZipFile(archive, "w").close()
    return archive


def empty_archive(kind, where):
    return build_archive(kind, where, {}, (), None)


def check_zip(archive):
    """unzip -t must find no error (an empty zip is fine too)."""
    with zipfile.ZipFile(archive) as zf:
        if not zf.namelist():
            return
    result = run(["unzip", "-t", archive], check=False)
    assert result.returncode == 0 and "No errors detected" in result.stdout, (
        "unzip -t %s failed:\n%s%s" % (archive, result.stdout, result.stderr))


def extract(kind, archive, where):
    """The archive's content as a plain directory (checks a zip first)."""
    if kind == "dir":
        return Path(archive)
    check_zip(archive)
    out = Path(where) / ("extracted-%d" % time.monotonic_ns())
    out.mkdir()
    with zipfile.ZipFile(archive) as zf:
        empty = not zf.namelist()
    if not empty:
        run(["unzip", "-q", archive, "-d", out])
    return out


def tree_of(root, modes=True):
    """{relative path: description} of everything below ``root``."""
    root = Path(root)
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir",)
            else:
                mode = stat.S_IMODE(st.st_mode) if modes else None
                result[rel] = ("file", path.read_bytes(), mode)
    return result


class Mount:
    """One live mount made by ``mounter``."""

    def __init__(self, kind, archive, path, log_file):
        self.kind = kind
        self.archive = Path(archive)
        self.path = Path(path)
        self.log_file = Path(log_file)
        self.unmounted = False
        info = statefiles.read_running(os.path.realpath(self.path)) or {}
        self.pid = info.get("pid")
        self.start_time = info.get("start_time")

    def __truediv__(self, name):
        return self.path / name

    def log(self):
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def daemon_running(self):
        return self.pid is not None and statefiles.process_running(self.pid, self.start_time)

    def unmount(self):
        """archfs unmount; asserts it succeeded and the daemon is gone."""
        result = archfs("unmount", self.path, timeout=120)
        self.unmounted = True
        assert result.returncode == 0, "unmount failed: %s\nlog:\n%s" % (
            result.stderr, self.log())
        assert not is_mounted(self.path)
        assert not self.daemon_running(), "daemon still running after unmount returned"
        return result

    def force_cleanup(self):
        """Last resort after a failed unmount: lazy unmount, then kill our daemon."""
        if is_mounted(self.path):
            run(["fusermount3" if shutil.which("fusermount3") else "fusermount", "-u", "-z",
                 self.path], check=False)
        deadline = time.monotonic() + 20
        while self.daemon_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.daemon_running():
            os.kill(self.pid, signal.SIGKILL)


def is_mounted(path):
    return mounttable.mount_type(os.path.realpath(path)) is not None


@pytest.fixture(params=KINDS)
def kind(request):
    """The plugin a mount test runs against: a directory or a zip."""
    return request.param


@pytest.fixture
def mounter(tmp_path):
    """``mounter(archive, *options)`` -> Mount; every mount is undone at teardown."""
    mounts = []

    def mount(archive, *options, kind=None, mountpoint=None):
        index = len(mounts)
        point = Path(mountpoint) if mountpoint else tmp_path / ("mnt%d" % index)
        point.mkdir(exist_ok=True)
        log_file = tmp_path / ("mount%d.log" % index)
        args = ["mount", archive, point, "--log-file", log_file]
        for option in options:
            args += ["-o", option]
        result = archfs(*args, timeout=60)
        the_kind = kind or ("dir" if Path(archive).is_dir() else "zip")
        mounted = Mount(the_kind, archive, point, log_file)
        if result.returncode == 0 or is_mounted(point) or mounted.daemon_running():
            mounts.append(mounted)
        assert result.returncode == 0, "mount failed: %s\nlog:\n%s" % (
            result.stderr, mounted.log())
        assert is_mounted(point)
        return mounted

    yield mount

    problems = []
    for mounted in reversed(mounts):
        if mounted.unmounted:
            continue
        try:
            mounted.unmount()
        except Exception as exc:  # clean up anyway, then report
            problems.append("%s: %s" % (mounted.path, exc))
            mounted.force_cleanup()
    if problems:
        pytest.fail("unmount at teardown failed:\n" + "\n".join(problems))


@pytest.fixture
def sample(kind, tmp_path):
    """The SAMPLE tree as an archive of ``kind``."""
    return build_archive(kind, tmp_path)


@pytest.fixture
def sample_mount(kind, sample, mounter):
    """The SAMPLE archive, mounted read-write."""
    return mounter(sample, kind=kind)


@pytest.fixture
def empty_mount(kind, tmp_path, mounter):
    """An empty archive of ``kind``, mounted read-write."""
    return mounter(empty_archive(kind, tmp_path), kind=kind)
