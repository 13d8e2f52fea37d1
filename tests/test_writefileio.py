"""WriteFileIO: the copy-back every written member goes through."""

import errno
import os
import stat

import pytest

from archfs.archives.filesystemarchive import FilesystemArchive
from archfs.archives.writefileio import WriteFileIO
from archfs.errors import ArchfsError


class CountingArchive(FilesystemArchive):
    """A FilesystemArchive that records each copy-back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.copies = []

    def replace_localfile(self, local_file, filename, *, mode=None, mtime_ns=None):
        self.copies.append((filename, mode, mtime_ns))
        super().replace_localfile(local_file, filename, mode=mode, mtime_ns=mtime_ns)


@pytest.fixture
def archive(tmp_path):
    arch = CountingArchive(url=str(tmp_path / "root"), mode="w")
    yield arch
    arch.close()


@pytest.fixture
def local(tmp_path):
    return str(tmp_path / "local-copy")


def member_bytes(archive, name):
    with archive.open(name) as f:
        return f.read()


def test_close_copies_back_and_deletes_local_file(archive, local):
    f = WriteFileIO(archive, "dir/m.txt", local)
    f.write(b"content")
    assert archive.copies == []  # nothing reaches the archive before close
    f.close()
    assert member_bytes(archive, "dir/m.txt") == b"content"
    assert archive.copies == [("dir/m.txt", None, None)]
    assert not os.path.exists(local)
    assert f.closed
    f.close()  # a second close copies nothing
    assert len(archive.copies) == 1


def test_sync_copies_while_open(archive, local):
    f = WriteFileIO(archive, "m", local)
    f.write(b"first")
    assert f.sync() is True
    assert member_bytes(archive, "m") == b"first"
    assert f.sync() is False  # unchanged since: no second copy
    f.seek(0)
    f.write(b"FIRST and more")
    assert f.sync() is True
    assert member_bytes(archive, "m") == b"FIRST and more"
    assert f.read() == b""  # the file stays usable, position kept
    f.close()
    assert len(archive.copies) == 2  # close had nothing new to copy


def test_clean_file_is_not_copied(archive, local):
    with open(local, "wb") as f:
        f.write(b"as in the archive")
    wf = WriteFileIO(archive, "m", local, dirty=False)
    assert wf.read() == b"as in the archive"  # existing content kept, not truncated
    wf.close()
    assert archive.copies == []
    assert archive.getnames() == []
    assert not os.path.exists(local)


def test_truncate_marks_dirty(archive, local):
    with open(local, "wb") as f:
        f.write(b"0123456789")
    wf = WriteFileIO(archive, "m", local, dirty=False)
    wf.truncate(4)
    wf.close()
    assert member_bytes(archive, "m") == b"0123"


def test_discard_drops_changes(archive, local):
    archive.writedata("m", b"original")
    wf = WriteFileIO(archive, "m", local)
    wf.write(b"unwanted")
    wf.discard()
    assert wf.closed and not os.path.exists(local)
    assert archive.copies == []
    assert member_bytes(archive, "m") == b"original"
    wf.discard()  # twice is harmless


def test_mode_and_mtime_are_recorded(archive, local):
    wf = WriteFileIO(archive, "m", local, mode=0o640, mtime_ns=3_000_000_000)
    wf.write(b"x")
    wf.close()
    st = archive.stat("m")
    assert stat.S_IMODE(st.mode) == 0o640
    assert st.mtime_ns == 3_000_000_000


def test_mtime_defaults_to_the_local_files(archive, local):
    wf = WriteFileIO(archive, "m", local)
    wf.write(b"x")
    wf.flush()
    os.utime(wf.name, ns=(1, 4_000_000_000))
    wf.close()
    assert archive.stat("m").mtime_ns == 4_000_000_000


def test_named_temporary_file_object(archive, tmp_path):
    import tempfile
    tmp = tempfile.NamedTemporaryFile(dir=str(tmp_path), delete=False)
    wf = WriteFileIO(archive, "m", tmp)
    assert tmp.closed  # WriteFileIO owns the path now
    wf.write(b"via tempfile")
    wf.close()
    assert member_bytes(archive, "m") == b"via tempfile"
    assert not os.path.exists(tmp.name)


def test_failed_copy_back_raises(tmp_path, local):
    ro = FilesystemArchive(url=str(tmp_path), mode="r")
    wf = WriteFileIO(ro, "m", local)
    wf.write(b"x")
    with pytest.raises(ArchfsError) as info:
        wf.close()
    assert info.value.errno == errno.EROFS
    assert wf.closed
