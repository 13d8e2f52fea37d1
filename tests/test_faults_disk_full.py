"""The disk holding the archive fills up while archfs commits.

The archive lives on a small tmpfs this test mounts (root needed); written
files wait in a scratch directory elsewhere (``-o tmpdir``), so write(2)
succeeds and the full disk is met by the commit: fsync must fail with
ENOSPC or EIO, the archive must be byte for byte what it was, reads go on,
and once space is back the same file commits and everything is there.
``append``: a commit appending to a non-empty archive. ``rewrite``: the
first commit to an empty archive, which writes a new file and renames it.
(A full disk at write(2) is ``test_mount_semantics.test_no_space_left_shows_at_write``.)
"""

import errno
import os

import pytest

from mount_fixtures import run
from stress import assert_valid_zip, digest

OLD = {"keep/one.txt": b"one\n" * 1000, "two.bin": bytes(range(256)) * 40}
BIG = os.urandom(1 << 20)      # incompressible: needs a megabyte in the archive


def _mount_tmpfs(path, size):
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    result = run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path], check=False)
    assert result.returncode == 0, "cannot mount a tmpfs as root: %s" % result.stderr


def _fill(directory):
    """Fill the filesystem of ``directory``; returns the filler's path."""
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\xff" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("case", ["append", "rewrite"])
def test_disk_full_during_commit(case, tmp_path, mounter):
    small = tmp_path / "small"
    _mount_tmpfs(small, "3m")
    try:
        archive = small / "archive.zip"
        if case == "append":
            import zipfile
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, data in OLD.items():
                    zf.writestr(name, data)
            old = OLD
        else:
            archive.write_bytes(b"PK\x05\x06" + bytes(18))
            old = {}
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        m = mounter(archive, "tmpdir=%s" % scratch, "commit_interval=0")
        filler = _fill(small)
        before = digest(archive)

        with pytest.raises(OSError) as caught:
            with open(m / "big.bin", "wb") as f:
                f.write(BIG)                 # lands in the scratch directory
                f.flush()
                os.fsync(f.fileno())         # the commit meets the full disk
        assert caught.value.errno in (errno.ENOSPC, errno.EIO)
        assert digest(archive) == before
        assert assert_valid_zip(archive) == old
        assert sorted(n for n in os.listdir(small) if n != "filler") == ["archive.zip"]
        for name, data in old.items():      # the mount keeps serving
            assert (m / name).read_bytes() == data
        assert (m / "big.bin").read_bytes() == BIG

        os.unlink(filler)                    # space is back
        with open(m / "big.bin", "r+b") as f:
            os.fsync(f.fileno())
        (m / "after.txt").write_bytes(b"written once space was back\n")
        m.unmount()
        assert "big.bin" in m.log() and ("No space left" in m.log() or "ENOSPC" in m.log())
        expected = dict(old, **{"big.bin": BIG, "after.txt": b"written once space was back\n"})
        assert assert_valid_zip(archive) == expected
    finally:
        run(["umount", "-l", small], check=False)


def test_disk_full_during_archfs_compact(tmp_path):
    """``archfs compact`` writes the new archive beside the old one: on a full
    disk it fails with one line, and the archive and directory are as before."""
    from mount_fixtures import archfs
    from stress import one_line_error
    small = tmp_path / "small"
    _mount_tmpfs(small, "2m")
    try:
        from archfs.archives.zipfilearchive import ZipfileArchive
        archive = small / "archive.zip"
        with ZipfileArchive(url=str(archive), mode="a") as writing:
            writing.writedata("first.bin", os.urandom(300_000))
            writing.writedata("second.bin", os.urandom(300_000))
            writing.commit()
            writing.writedata("first.bin", os.urandom(300_000))  # the old one is dead space
        filler = _fill(small)
        before, listing = digest(archive), sorted(os.listdir(small))
        one_line_error(archfs("compact", archive, timeout=120), r"archive.zip|[Ss]pace")
        assert digest(archive) == before
        assert sorted(os.listdir(small)) == listing
        os.unlink(filler)
        result = archfs("compact", archive, timeout=120)
        assert result.returncode == 0, result.stderr
        assert os.path.getsize(archive) < 700_000
    finally:
        run(["umount", "-l", small], check=False)
