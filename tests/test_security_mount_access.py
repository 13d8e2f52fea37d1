"""A mount is private to the user who made it unless ``-o allow_other``.

Another user (``nobody``) can reach the directory holding the mountpoint
(the control) but gets EACCES on the mount itself; with ``allow_other`` the
same user can read a member the archive marks world-readable, and the
permissions recorded in the archive still decide (``default_permissions``).
Mounting as root lets the test switch users; it is skipped otherwise.
"""

import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

NOBODY = 65534

# /bin/sh and coreutils, since the test's Python may not be readable by nobody;
# each argument is d:DIR (list it) or f:FILE (read it)
PROBE = r"""
for arg in "$@"; do
  path=${arg#?:}
  case $arg in
    d:*) if ls "$path" >/dev/null 2>&1; then echo listed; else echo denied; fi ;;
    f:*) if cat "$path" >/dev/null 2>&1; then echo "read:$(wc -c < "$path")"; else echo denied; fi ;;
  esac
done
"""


def _as_nobody(*args):
    def become_nobody():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    result = subprocess.run(["/bin/sh", "-c", PROBE, "probe", *map(str, args)],
                            preexec_fn=become_nobody, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.fixture
def shared_dir():
    """A directory other users can traverse (pytest's tmp_path is private)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a probe as another user")
    path = Path(tempfile.mkdtemp(prefix="archfs-access-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _archive(where):
    path = where / "shared.zip"
    with zipfile.ZipFile(path, "w") as zf:
        public = zipfile.ZipInfo("public.txt")
        public.external_attr = 0o100644 << 16
        zf.writestr(public, b"anyone may read this\n")
        private = zipfile.ZipInfo("private.txt")
        private.external_attr = 0o100600 << 16
        zf.writestr(private, b"only the owner\n")
    path.chmod(0o644)
    return path


def test_private_by_default(shared_dir, mounter):
    archive = _archive(shared_dir)
    m = mounter(archive, "ro", mountpoint=shared_dir / "mnt")
    assert (m / "public.txt").read_bytes() == b"anyone may read this\n"
    assert _as_nobody("d:%s" % shared_dir, "d:%s" % m.path, "f:%s" % (m / "public.txt")) == [
        "listed", "denied", "denied"]
    m.unmount()


def test_allow_other_lets_others_in_with_the_archive_permissions(shared_dir, mounter):
    archive = _archive(shared_dir)
    m = mounter(archive, "ro", "allow_other", mountpoint=shared_dir / "mnt")
    assert _as_nobody("d:%s" % m.path, "f:%s" % (m / "public.txt"),
                      "f:%s" % (m / "private.txt")) == ["listed", "read:21", "denied"]
    m.unmount()
