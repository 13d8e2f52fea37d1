"""Writing tars through a real mount, plain and compressed: afterwards GNU tar
(-tvf, -xf then diff -r), bsdtar and Python's tarfile agree with what was
done, and the compressors' own tests pass."""

import filecmp
import os
import shutil
import subprocess
import sys

import pytest

from archfs.archives import open_archive
from tar_builders import gnu_tar, make_source

TESTERS = {"": None, ".gz": ["gzip", "-t"], ".bz2": ["bzip2", "-t"], ".xz": ["xz", "-t"],
           ".zst": ["zstd", "-q", "-t"]}


def same_trees(a, b):
    """diff -r, plus symlink targets and file modes."""
    result = subprocess.run(["diff", "-r", "--no-dereference", str(a), str(b)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for root, dirs, files in os.walk(a):
        for name in files:
            p = os.path.join(root, name)
            q = os.path.join(b, os.path.relpath(p, a))
            if not os.path.islink(p):
                assert os.stat(p).st_mode & 0o777 == os.stat(q).st_mode & 0o777, p


def check_with_tools(archive, expected, tmp_path, suffix):
    run = lambda *cmd: subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    listing = run("tar", "-tvf", archive)
    assert listing.returncode == 0, listing.stderr
    out = tmp_path / "gnu-x"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    extracted = run("tar", "-xf", archive, "-C", out)
    assert extracted.returncode == 0, extracted.stderr
    same_trees(expected, out)
    assert run("bsdtar", "-tf", archive).returncode == 0
    if suffix != ".zst":           # Python's tarfile has no zstd before 3.14
        result = run(sys.executable, "-m", "tarfile", "-t", archive)
        assert result.returncode == 0, result.stderr
    if TESTERS[suffix]:
        result = run(*TESTERS[suffix], archive)
        assert result.returncode == 0, result.stderr


BIG = os.urandom(3 << 20)


def do_changes(root):
    """The same changes, applied to a mount and to a plain directory."""
    (root / "new").mkdir()
    (root / "new" / "hello.txt").write_bytes(b"hello\n" * 1000)
    (root / "new" / "big.bin").write_bytes(BIG)
    (root / "a.txt").write_bytes(b"replaced\n")
    os.chmod(root / "a.txt", 0o600)
    (root / "bin" / "data.bin").unlink()
    os.rename(root / "unicode", root / "renamed-dir")
    os.symlink("new/hello.txt", root / "to-hello")
    with open(root / "empty.dat", "ab") as f:
        f.write(b"appended")


@pytest.mark.parametrize("suffix", list(TESTERS))
def test_changes_through_mount(tmp_path, mounter, suffix):
    source = make_source(tmp_path / "src")
    os.unlink(source / "fifo")          # diff -r cannot compare FIFOs
    archive = gnu_tar(source, tmp_path / "t.tar", "gnu", suffix)
    expected = tmp_path / "expected"
    shutil.copytree(source, expected, symlinks=True)
    mount = mounter(archive, kind="tar")
    do_changes(mount.path)
    do_changes(expected)
    (mount.path / "later.txt").write_bytes(b"after a commit\n")
    (expected / "later.txt").write_bytes(b"after a commit\n")
    mount.unmount()
    check_with_tools(archive, expected, tmp_path, suffix)
    # the mount shows the same after a remount
    again = mounter(archive, "ro", kind="tar")
    assert filecmp.cmp(again / "new" / "big.bin", expected / "new" / "big.bin", shallow=False)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tar.zst"])
def test_new_archive(tmp_path, mounter, suffix):
    archive = tmp_path / ("made" + suffix)
    mount = mounter(archive, kind="tar")
    (mount.path / "d").mkdir()
    (mount.path / "d" / "f.txt").write_bytes(b"content\n")
    mount.unmount()
    expected = tmp_path / "exp"
    (expected / "d").mkdir(parents=True)
    (expected / "d" / "f.txt").write_bytes(b"content\n")
    check_with_tools(archive, expected, tmp_path, suffix[4:])


def test_append_costs_the_change_not_the_archive(tmp_path):
    """Adding a small file to an archive archfs wrote grows it by about the file."""
    for suffix in ("", ".gz", ".zst"):
        archive = tmp_path / ("grow.tar" + suffix)
        with open_archive(archive, "a") as a:
            for i in range(40):
                a.writedata("f%02d.bin" % i, os.urandom(1 << 20))
        before = archive.stat().st_size
        with open_archive(archive, "a") as a:
            a.writedata("small.txt", b"x" * 1024)
        grown = archive.stat().st_size - before
        assert 0 <= grown < 16 << 10, (suffix, grown)
