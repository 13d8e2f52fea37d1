"""Another program changes or replaces the archive while it is mounted read-write.

archfs must notice before its next write to the file, refuse that write
(fsync fails with EROFS) with the reason in the log, leave the file exactly
as the other program made it, keep serving reads, and at unmount keep the
content it could not store in a rescue directory (the unmount reports it).
"""

import errno
import os
import zipfile

import pytest

from mount_fixtures import archfs
from stress import digest

ORIGINAL = {"a.txt": b"alpha\n", "b.txt": b"bravo\n" * 100}


def _replace(archive):
    """Another program writes a new archive and renames it over ours."""
    new = archive.with_name("new.zip")
    with zipfile.ZipFile(new, "w") as zf:
        zf.writestr("other.txt", b"the other program's archive\n")
    os.replace(new, archive)


def _append(archive):
    with open(archive, "ab") as f:
        f.write(b"bytes another program appended")


def _rewrite_in_place(archive):
    """Same size, other bytes: e.g. a tool patching a member in place."""
    data = bytearray(archive.read_bytes())
    at = data.index(b"bravo")
    data[at:at + 5] = b"BRAVO"
    with open(archive, "r+b") as f:
        f.write(data)


@pytest.mark.parametrize("change", [_replace, _append, _rewrite_in_place],
                         ids=["replace", "append", "rewrite-in-place"])
def test_external_change_stops_writes_and_loses_nothing(change, tmp_path, mounter):
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in ORIGINAL.items():
            zf.writestr(name, data)
    m = mounter(archive, "commit_interval=0")
    with open(m / "before.txt", "wb") as f:
        f.write(b"committed before the change\n")
        f.flush()
        os.fsync(f.fileno())
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("before.txt") == b"committed before the change\n"

    change(archive)
    theirs = digest(archive)
    with pytest.raises(OSError) as caught:
        with open(m / "after.txt", "wb") as f:
            f.write(b"written after the change\n")
            f.flush()
            os.fsync(f.fileno())
    assert caught.value.errno == errno.EROFS
    assert digest(archive) == theirs
    assert (m / "a.txt").read_bytes() == ORIGINAL["a.txt"]     # reads go on
    assert (m / "after.txt").read_bytes() == b"written after the change\n"
    with pytest.raises(OSError):
        (m / "before.txt").unlink()
        with open(m / "b.txt", "r+b") as f:
            os.fsync(f.fileno())
    assert m.daemon_running()

    result = archfs("unmount", m.path, timeout=120)
    m.unmounted = True
    assert result.returncode != 0
    assert "could not be stored" in result.stderr and ".unsaved-" in result.stderr
    assert digest(archive) == theirs
    assert "another program" in m.log() and "refusing further writes" in m.log()
    rescued = [p for p in tmp_path.iterdir() if p.name.startswith("archive.zip.unsaved-")]
    assert len(rescued) == 1
    assert (rescued[0] / "after.txt").read_bytes() == b"written after the change\n"
