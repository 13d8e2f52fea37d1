"""Nothing an archive names ever lands outside archfs's own directories.

Member names with ``..``, a leading ``/``, backslashes, NUL, and a symlink
member pointing out of the archive: ``to_localfile`` extracts each under
the plugin's private temporary directory (and a symlink as a plain file
holding its target, never as a link to follow); a mount shows each inside
the mount. Nothing else in the test's directory changes, and the private
directory is gone after ``close``.
"""

import os
import stat
from pathlib import Path

from archfs.archives.zipfilearchive import ZipfileArchive
from zip_builders import Entry, build_zip

HOSTILE_NAMES = [b"../../escaped-1.txt", b"/tmp/archfs-escaped-2.txt", b"..\\..\\escaped-3.txt",
                 b"a/../../../escaped-4.txt", b"./././escaped-5.txt", b"nul\x00/../escaped-6",
                 b"ok/normal.txt"]


def _hostile_zip(path):
    entries = [Entry(name, b"payload of %r\n" % name) for name in HOSTILE_NAMES]
    link_mode = (stat.S_IFLNK | 0o777) << 16
    entries.append(Entry("link-out", b"../../../../../etc", external_attr=link_mode))
    entries.append(Entry("abs-link", b"/etc/passwd", external_attr=link_mode))
    Path(path).write_bytes(build_zip(entries))


def _everything_below(top):
    found = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            found.add(os.path.join(dirpath, name))
    return found


def _no_escapes_anywhere():
    for i in range(1, 7):
        for where in ("/tmp", "/", "/etc"):
            assert not os.path.lexists(os.path.join(where, "escaped-%d.txt" % i))
    assert not os.path.lexists("/tmp/archfs-escaped-2.txt")


def test_to_localfile_stays_in_the_private_directory(tmp_path):
    archive_path = tmp_path / "inner" / "hostile.zip"
    archive_path.parent.mkdir()
    _hostile_zip(archive_path)
    before = _everything_below(tmp_path)
    archive = ZipfileArchive(url=str(archive_path), mode="r")
    private = None
    try:
        names = archive.getnames()
        assert len(names) == len(HOSTILE_NAMES) + 2
        for name in names:
            local = archive.to_localfile(name)
            real = os.path.realpath(local)
            top = os.path.realpath(os.path.dirname(local))
            while not os.path.basename(top).startswith(".archfs-"):
                assert top != "/", "%s -> %s is outside any .archfs- directory" % (name, local)
                top = os.path.dirname(top)
            private = private or top
            assert top == private
            assert os.path.commonpath([real, private]) == private, (name, real)
            assert not os.path.islink(local)
            with archive.open(name) as f:
                assert Path(local).read_bytes() == f.read()
        added = _everything_below(tmp_path) - before
        assert private in added
        assert all(os.path.commonpath([p, private]) == private for p in added), added
    finally:
        archive.close()
    assert private is not None and not os.path.exists(private)
    assert _everything_below(tmp_path) == before
    _no_escapes_anywhere()


def test_a_mount_shows_every_name_inside_it(tmp_path, mounter):
    archive = tmp_path / "hostile.zip"
    _hostile_zip(archive)
    before = _everything_below(tmp_path)
    m = mounter(archive, "ro")
    shown = set()
    for dirpath, dirnames, filenames in os.walk(m.path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            assert os.path.commonpath([os.path.abspath(full), str(m.path)]) == str(m.path)
            shown.add(os.path.relpath(full, m.path))
    assert {"escaped-1.txt", "tmp/archfs-escaped-2.txt", "escaped-3.txt",
            "a/%2E%2E/%2E%2E/%2E%2E/escaped-4.txt", "escaped-5.txt", "ok/normal.txt", "link-out", "abs-link"} <= shown
    assert os.readlink(m / "link-out") == "../../../../../etc"    # shown, not followed
    m.unmount()
    assert _everything_below(tmp_path) - before <= {str(m.path), str(m.log_file)}
    _no_escapes_anywhere()
