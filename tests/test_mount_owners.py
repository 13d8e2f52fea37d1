"""Owners (issue 9): a root mount records who made what and lets chown work
with the POSIX rules (checked by the kernel against the owners archfs
reports); the owners survive unmount and ``unzip -X`` restores them. Other
users act through ``setpriv`` (util-linux). A mount by anyone else keeps the
old rule: everything shows as the mounting user's."""

import os
import shutil
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from archfs.archives.zipfilearchive import ZipfileArchive
from mount_fixtures import build_archive, run

NOBODY = 65534
OTHER = 65533       # a supplementary group of "nobody" below
STRANGER = 65532    # a group it is not in

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners are recorded by root mounts")

# Runs each line as one command and prints "ok" or the error text per line.
STEPS = r"""
while IFS= read -r line; do
  [ -n "$line" ] || continue
  if out=$(sh -c "$line" 2>&1); then echo "ok"; else echo "fail: ${out##*: }"; fi
done
"""


def as_user(cwd, commands, uid=NOBODY, gid=NOBODY, groups=(OTHER,)):
    """Run shell commands as another user (one result line per command)."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to act as another user"
    cmd = [setpriv, "--reuid=%d" % uid, "--regid=%d" % gid,
           "--groups=" + ",".join(map(str, groups)) if groups else "--clear-groups",
           "--", "/bin/sh", "-c", STEPS]
    result = subprocess.run(cmd, input="\n".join(commands) + "\n", cwd=cwd, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.fixture
def shared(tmp_path):
    """A directory other users can traverse (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="archfs-owners-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owner(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid


@pytest.mark.parametrize("kind", ["zip", "dir"])
def test_root_mount_records_creators_and_chown_follows_posix(kind, shared, mounter):
    archive = build_archive(kind, shared, {"root.txt": b"root's\n"}, (), None)
    m = mounter(archive, "allow_other", kind=kind, mountpoint=shared / "mnt")
    os.mkdir(m / "pub")
    os.chmod(m / "pub", 0o1777)            # sticky, world-writable
    (m / "open.txt").write_bytes(b"anyone may write\n")
    os.chmod(m / "open.txt", 0o666)
    assert owner(m / "root.txt") == (0, 0)
    results = as_user(m / "pub", [
        "echo mine > mine.txt",
        "mkdir sub",
        "ln -s mine.txt link",
        "mkfifo fifo",
        "chown 0 mine.txt",                  # only root gives files away
        "chgrp %d mine.txt" % OTHER,         # to one of its own groups: allowed
        "chgrp %d sub" % STRANGER,           # to another group: not allowed
        "rm ../root.txt",                    # not its directory
        "touch ../open.txt",                 # the time "now": anyone who may write
        "touch -d 2001-01-01 ../open.txt",   # a chosen time: the owner only
    ])
    assert results == ["ok", "ok", "ok", "ok", "fail: Operation not permitted", "ok",
                       "fail: Operation not permitted", "fail: Permission denied", "ok",
                       "fail: Operation not permitted"]
    assert owner(m / "pub/mine.txt") == (NOBODY, OTHER)
    assert owner(m / "pub/sub") == (NOBODY, NOBODY)
    assert owner(m / "pub/link") == (NOBODY, NOBODY)
    assert owner(m / "pub/fifo") == (NOBODY, NOBODY)
    # root gives a file away; lchown changes the link itself
    os.chown(m / "root.txt", 1234, 5678)
    os.lchown(m / "pub/link", 4321, 8765)
    assert owner(m / "root.txt") == (1234, 5678)
    assert owner(m / "pub/link") == (4321, 8765) and owner(m / "pub/mine.txt") == (NOBODY, OTHER)
    # sticky directory: another user may not remove nobody's file, nobody may
    assert as_user(m / "pub", ["rm -f mine.txt"], uid=4444, gid=4444, groups=()) == [
        "fail: Operation not permitted"]
    # a non-root chown clears setuid/setgid; so does a write by another user
    os.chmod(m / "pub/mine.txt", 0o6775)
    (m / "shared.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(m / "shared.sh", 0o6777)
    assert as_user(m / "pub", ["chgrp %d mine.txt" % NOBODY, "echo more >> ../shared.sh"]) \
        == ["ok", "ok"]
    assert stat.S_IMODE(os.stat(m / "pub/mine.txt").st_mode) == 0o775
    assert stat.S_IMODE(os.stat(m / "shared.sh").st_mode) == 0o777
    # a setgid directory passes its group on, and its setgid bit to subdirectories
    os.mkdir(m / "team")
    os.chown(m / "team", 0, OTHER)
    os.chmod(m / "team", 0o2777)
    assert as_user(m / "team", ["touch f", "mkdir d"]) == ["ok", "ok"]
    assert owner(m / "team/f") == (NOBODY, OTHER)
    assert owner(m / "team/d") == (NOBODY, OTHER)
    assert os.stat(m / "team/d").st_mode & stat.S_ISGID
    m.unmount()
    if kind == "dir":       # the reference plugin made real owners
        assert owner(archive / "pub/mine.txt") == (NOBODY, NOBODY)
        assert owner(archive / "root.txt") == (1234, 5678)
        return
    # the owners survive the unmount ...
    again = mounter(archive, kind=kind, mountpoint=shared / "mnt")
    assert owner(again / "pub/mine.txt") == (NOBODY, NOBODY)
    assert owner(again / "pub/link") == (4321, 8765)
    assert owner(again / "root.txt") == (1234, 5678)
    assert owner(again / "team/d") == (NOBODY, OTHER)
    again.unmount()
    # ... and unzip -X (as root) restores them from the archive
    out = shared / "unzipped"
    out.mkdir()
    run(["unzip", "-q", "-X", archive, "-d", out])
    assert owner(out / "pub/mine.txt") == (NOBODY, NOBODY)
    assert owner(out / "pub/link") == (4321, 8765)
    assert owner(out / "root.txt") == (1234, 5678)
    assert owner(out / "team/f") == (NOBODY, OTHER)


def test_owner_of_a_committed_member_changes_in_its_local_header(shared, mounter):
    """unzip reads owners from the local header: a chown after a commit
    rewrites the member's header (by copying it at the next commit)."""
    archive = shared / "a.zip"
    m = mounter(archive, "commit_interval=0", mountpoint=shared / "mnt")
    (m / "f.txt").write_bytes(b"data\n")
    os.sync()
    os.chown(m / "f.txt", 2000, 3000)
    os.utime(m / "f.txt", ns=(1_500_000_000_000_000_000, 1_600_000_000_000_000_000))
    m.unmount()
    out = shared / "unzipped"
    out.mkdir()
    run(["unzip", "-q", "-X", archive, "-d", out])
    st = os.lstat(out / "f.txt")
    assert (st.st_uid, st.st_gid) == (2000, 3000)
    assert (st.st_atime, st.st_mtime) == (1_500_000_000, 1_600_000_000)
    with ZipfileArchive(url=str(archive)) as z:
        assert (z.stat("f.txt").uid, z.stat("f.txt").gid) == (2000, 3000)


def test_non_root_mount_shows_everything_as_the_mounting_user(tmp_path, monkeypatch):
    """The rule for a mount by anyone else, checked on the operations."""
    from archfs.mount import operations
    from archfs.mount.options import MountOptions
    from archfs.mount.session import MountSession

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("f.txt")
        info.external_attr = 0o100644 << 16
        zf.writestr(info, b"x")
    with ZipfileArchive(url=str(archive), mode="a") as z:
        z.chown("f.txt", 1234, 5678)
    monkeypatch.setattr(operations.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(operations.os, "getuid", lambda: 1000)
    monkeypatch.setattr(operations.os, "getgid", lambda: 1000)
    session = MountSession(ZipfileArchive(url=str(archive), mode="a"), MountOptions())
    try:
        ops = operations.ArchiveOperations(session)
        attrs = ops.getattr("/f.txt")
        assert (attrs["st_uid"], attrs["st_gid"]) == (1000, 1000)
        assert ops.chown("/f.txt", 1000, -1) == 0           # a no-op passes
        with pytest.raises(PermissionError):
            ops.chown("/f.txt", 0, -1)
        ops.mkdir("/d", 0o755)
    finally:
        session.finish()
    with ZipfileArchive(url=str(archive)) as z:
        assert (z.stat("f.txt").uid, z.stat("f.txt").gid) == (1234, 5678)
        assert z.stat("d").uid is None            # no owner recorded


def test_unzip_restores_directories_touched_after_their_contents(shared, mounter):
    """tar x and cp -a set a directory's owner and times after filling it; the
    moved entry is listed before its contents so unzip -X restores it."""
    archive = shared / "tree.zip"
    m = mounter(archive, "commit_interval=0", mountpoint=shared / "mnt")
    os.makedirs(m / "top/inner")
    (m / "top/inner/f.txt").write_bytes(b"f\n")
    (m / "top/g.txt").write_bytes(b"g\n")
    for path, (uid, gid) in (("top/inner", (71, 72)), ("top", (81, 82))):
        os.chown(m / path, uid, gid)
        os.utime(m / path, ns=(1_300_000_000_000_000_000, 1_300_000_000_000_000_000))
    m.unmount()
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert names.index("top/") < names.index("top/inner/") < names.index("top/inner/f.txt")
    assert names.index("top/") < names.index("top/g.txt")
    out = shared / "unzipped"
    out.mkdir()
    run(["unzip", "-q", "-X", archive, "-d", out])
    assert owner(out / "top") == (81, 82) and owner(out / "top/inner") == (71, 72)
    assert os.stat(out / "top").st_mtime == 1_300_000_000
    run(["unzip", "-tq", archive])
    run(["7zz", "t", archive] if shutil.which("7zz") else ["7z", "t", archive])


def _listing(root):
    """path -> (type, mode, uid, gid, mtime in s) of everything below ``root``."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            mtime = None if stat.S_ISLNK(st.st_mode) else int(st.st_mtime)
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                st.st_uid, st.st_gid, mtime)
    return out


def test_cp_a_rsync_a_and_tar_x_as_root_keep_owners(shared, mounter, tmp_path):
    src = tmp_path / "src"
    (src / "d/sub").mkdir(parents=True)
    (src / "d/a").write_bytes(b"a\n")
    (src / "d/sub/b").write_bytes(b"b\n")
    os.symlink("a", src / "d/link")
    os.mkfifo(src / "d/fifo")
    for path in ("d", "d/sub", "d/a", "d/sub/b", "d/fifo"):
        os.chown(src / path, 1001, 1002)
    os.lchown(src / "d/link", 1003, 1004)
    os.chmod(src / "d/a", 0o4750)
    for path in ("d/sub", "d"):
        os.utime(src / path, (1_200_000_000, 1_200_000_000))
    want = _listing(src / "d")
    run(["tar", "-C", src, "-cf", tmp_path / "d.tar", "d"])
    archive = shared / "tools.zip"
    m = mounter(archive, mountpoint=shared / "mnt")
    os.mkdir(m / "t")
    run(["cp", "-a", src / "d", m / "cp"])
    run(["rsync", "-a", str(src / "d") + "/", m / "rsync"])
    run(["tar", "-C", m / "t", "-xf", tmp_path / "d.tar"])
    for top in ("cp", "rsync", "t/d"):
        assert _listing(m / top) == want, top
    m.unmount()
    out = shared / "unzipped"
    out.mkdir()
    run(["unzip", "-q", "-X", "-K", archive, "-d", out])     # -K: keep setuid
    got = _listing(out / "cp")
    # Info-ZIP's unzip makes FIFOs regular files; everything else comes back
    fifo = got.pop("fifo")
    assert fifo[0] == stat.S_IFREG and fifo[2:4] == (1001, 1002)
    assert got == {k: v for k, v in want.items() if k != "fifo"}
