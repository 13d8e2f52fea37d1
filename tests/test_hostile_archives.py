"""Hostile and odd archives, through the plugin API and through real mounts.

Each archive of ``hostile_archives`` either is refused with one line naming
the problem, or mounts and serves safely: damaged members give EIO (or the
errno naming what is missing), the others read back exactly under their
safe spelling, nothing appears outside the mount, a read-only mount leaves
every byte of the archive as it was, a read-write mount leaves it a valid
zip that still serves the same, and the daemon keeps serving throughout.
"""

import errno
import os
import stat
import struct
import zipfile

import pytest

import hostile_archives as hostile
from archfs.archives.zipfilearchive import ZipfileArchive
from archfs.errors import ArchfsError
from mount_fixtures import archfs, is_mounted
from stress import digest, one_line_error, read_errno, repair
from zip_builders import Entry, build_zip, extra_block

CASES = {make.__name__[len("make_"):]: make for make in hostile.GENERIC}


def _files_below(root):
    """Relative paths of the regular files below ``root`` (walking the mount
    without recursion: a hostile archive may nest thousands of directories)."""
    found, stack = set(), [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                assert os.path.abspath(entry.path).startswith(str(root) + os.sep), entry.path
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    found.add(os.path.relpath(entry.path, root))
    return found


def _check_served(root, case):
    assert _files_below(root) == set(case.good) | set(case.failing)
    for name, data in case.good.items():
        assert (root / name).read_bytes() == data, name
    for name, code in case.failing.items():
        assert read_errno(root / name) == code, name
    for name, size in case.sizes.items():
        assert os.stat(root / name).st_size == size, name


def _refused(case, point, *options):
    """Mounting must fail with one line matching ``case.refuse``; a mount that
    went ahead all the same is undone before the test fails."""
    point.mkdir()
    args = ["mount"] + [a for option in options for a in ("-o", option)] + [case.path, point]
    result = archfs(*args)
    if result.returncode == 0 or is_mounted(point):
        archfs("unmount", point, timeout=120)
    one_line_error(result, case.refuse)
    assert not is_mounted(point)


def _neighbours(case):
    """What lies beside the archive (a mount must not add to it, but logs and mountpoints)."""
    return {n for n in os.listdir(case.path.parent) if not n.startswith(("mnt", "mount"))}


@pytest.mark.parametrize("name", sorted(CASES))
def test_through_the_plugin_api(name, tmp_path):
    case = CASES[name](tmp_path)
    before = digest(case.path)
    if case.refuse and not case.lenient:
        with pytest.raises(ArchfsError) as caught:
            ZipfileArchive(url=str(case.path), mode="r")
        message = str(caught.value)
        assert "\n" not in message
        assert __import__("re").search(case.refuse.split("zip: ", 1)[-1], message), message
    else:
        archive = ZipfileArchive(url=str(case.path), mode="r")
        try:
            assert set(archive.getnames()) == set(case.good) | set(case.failing)
            for member, data in case.good.items():
                with archive.open(member) as f:
                    assert f.read() == data
            for member, code in case.failing.items():
                with pytest.raises(OSError) as caught:
                    with archive.open(member) as f:
                        f.read()
                assert caught.value.errno == code, (member, caught.value)
                assert isinstance(caught.value, ArchfsError)
        finally:
            archive.close()
    assert digest(case.path) == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_read_only_mount(name, tmp_path, mounter):
    case = CASES[name](tmp_path)
    before, beside = digest(case.path), _neighbours(case)
    if case.refuse and not case.lenient:
        _refused(case, tmp_path / "mnt-refused", "ro")
    else:
        m = mounter(case.path, "ro")
        _check_served(m.path, case)
        _check_served(m.path, case)     # the errors left the daemon serving
        assert m.daemon_running()
        m.unmount()
    assert digest(case.path) == before
    assert _neighbours(case) == beside
    assert not os.path.exists("/etc/archfs-escaped.txt")


@pytest.mark.parametrize("name", sorted(CASES))
def test_read_write_mount_leaves_a_sound_archive(name, tmp_path, mounter):
    case = CASES[name](tmp_path)
    before = digest(case.path)
    if case.refuse and name != "empty_file":
        _refused(case, tmp_path / "mnt-refused")
        assert digest(case.path) == before
        return
    m = mounter(case.path)
    if name != "empty_file":
        _check_served(m.path, case)
    (m / "added.txt").write_bytes(b"added through the mount\n")
    m.unmount()
    # a 0-byte file mounted read-write is taken as a new, empty archive
    expected = hostile.Case(case.path, good=dict(case.good), failing=dict(case.failing),
                            sizes=dict(case.sizes))
    expected.good["added.txt"] = b"added through the mount\n"
    remount = mounter(case.path, "ro")
    _check_served(remount.path, expected)


def test_traditional_encryption_with_password_file_and_environment(tmp_path, mounter,
                                                                   monkeypatch):
    case = hostile.make_zipcrypto(tmp_path)
    before = digest(case.path)
    monkeypatch.delenv("ARCHFS_PASSWORD", raising=False)

    m = mounter(case.path, "ro")            # no password: EACCES, and the log says how
    assert read_errno(m / "secret.txt") == errno.EACCES
    assert os.stat(m / "secret.txt").st_size == len(case.good["secret.txt"])
    m.unmount()
    assert "password_file" in m.log()

    secret = tmp_path / "password"
    secret.write_text(hostile.PASSWORD + "\n")
    m = mounter(case.path, "ro", "password_file=%s" % secret)
    _check_served(m.path, case)
    m.unmount()

    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    m = mounter(case.path, "ro", "password_file=%s" % wrong)
    for name in case.good:
        assert read_errno(m / name) == errno.EACCES
    m.unmount()

    monkeypatch.setenv("ARCHFS_PASSWORD", hostile.PASSWORD)
    m = mounter(case.path)                  # read-write: other members can be added
    _check_served(m.path, case)
    (m / "plain.txt").write_bytes(b"not encrypted\n")
    m.unmount()
    monkeypatch.delenv("ARCHFS_PASSWORD")
    m = mounter(case.path, "ro", "password_file=%s" % secret)
    assert (m / "secret.txt").read_bytes() == case.good["secret.txt"]
    assert (m / "plain.txt").read_bytes() == b"not encrypted\n"
    m.unmount()
    assert digest(case.path) != before      # only the read-write mount changed it


def test_traditional_encryption_of_a_stored_member(tmp_path, mounter):
    case = hostile.make_zipcrypto_stored(tmp_path)
    secret = tmp_path / "password"
    secret.write_text(hostile.PASSWORD + "\n")
    m = mounter(case.path, "ro", "password_file=%s" % secret)
    _check_served(m.path, case)
    m.unmount()


def test_aes_is_read_and_unknown_methods_are_refused_by_name(tmp_path, mounter):
    aes = hostile.make_aes(tmp_path)
    m = mounter(aes.path, "ro", "password=%s" % hostile.PASSWORD)
    _check_served(m.path, aes)
    m.unmount()

    method = hostile.make_unsupported_method(tmp_path)
    m = mounter(method.path, "ro")
    _check_served(m.path, method)
    m.unmount()
    assert "compression method 97 (wavpack) is not supported" in m.log()


def test_100000_entries_with_a_comment(tmp_path, mounter, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # the saved index
    case = hostile.make_many_entries(tmp_path)
    m = mounter(case.path, "ro")
    count = sum(len(files) for _, _, files in os.walk(m.path))
    assert count == case.count
    _check_served_sample(m.path, case)
    m.unmount()

    m = mounter(case.path)
    (m / "new.txt").write_bytes(b"one more\n")
    m.unmount()
    with zipfile.ZipFile(case.path) as zf:
        assert zf.comment == case.comment
        assert len(zf.infolist()) == case.count + 1
        assert zf.read("new.txt") == b"one more\n"
        assert zf.read("d99/f99999") == b"99999"
    assert list((tmp_path / "cache").rglob("*.idx"))     # big archives keep an index


def _check_served_sample(root, case):
    for name, data in case.good.items():
        assert (root / name).read_bytes() == data


def test_many_members_of_one_name_open_promptly(tmp_path):
    """12,000 members named ``x`` (a 1 MB archive) must not take minutes to
    open: the child process opening it is given 30 s (a hang guard; it takes
    under a second when the backup spellings are found in linear time)."""
    import subprocess
    import sys
    case = hostile.make_many_duplicates(tmp_path)
    script = ("import sys; from archfs.archives.zipfilearchive import ZipfileArchive as Z\n"
              "a = Z(url=sys.argv[1]); print(len(a.getnames()))\n"
              "for n in sys.argv[2:]: print(n, a.open(n).read().decode())\n")
    try:
        result = subprocess.run([sys.executable, "-c", script, str(case.path), *case.good],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("opening 12,000 members of one name took over 30 s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "12000"
    assert dict(line.split(" ", 1) for line in lines[1:]) == {
        name: data.decode() for name, data in case.good.items()}


def _owner_extra(uid, gid, width=4):
    return extra_block(0x7875, bytes((1, width)) + uid.to_bytes(width, "little")
                       + bytes((width,)) + gid.to_bytes(width, "little"))


def test_extreme_sizes_owners_and_times_in_getattr(tmp_path, mounter):
    """Whatever an archive declares, getattr answers (no EIO) with values the
    kernel accepts: sizes up to off_t's maximum, any owner, any time."""
    ntfs_max = extra_block(0x000A, b"\0" * 4 + struct.pack("<HH", 1, 24) + b"\xff" * 24)
    members = {
        "size-2-63": (1 << 63) - 1, "size-2-64": (1 << 64) - 1,
    }
    entries = [Entry(name, b"tiny", usize=0xFFFFFFFF,
                     extra=extra_block(0x0001, struct.pack("<Q", size)))
               for name, size in members.items()]
    entries += [
        Entry("uid-max", b"u", extra=_owner_extra(0xFFFFFFFF, 0xFFFFFFFF)),
        Entry("uid-wide", b"w", extra=_owner_extra(1 << 63, (1 << 64) - 1, 8)),
        Entry("uid-big", b"b", extra=_owner_extra(3_000_000_000, 2_500_000_000)),
        Entry("time-ntfs-max", b"t", extra=ntfs_max),
        Entry("time-dos-zero", b"z", date=0, time=0),
        Entry("time-dos-garbage", b"g", date=0xFFFF, time=0xFFFF),
    ]
    path = tmp_path / "extremes.zip"
    path.write_bytes(build_zip(entries))
    m = mounter(path, "ro")
    names = sorted(os.listdir(m.path))
    assert names == sorted([e.name for e in entries])
    for name in names:
        st = os.stat(m / name)               # never EIO
        assert stat.S_ISREG(st.st_mode)
        assert 0 <= st.st_size <= (1 << 63) - 1
        assert st.st_uid == 0 and st.st_gid == 0 or name.startswith("uid-big")
    assert os.stat(m / "size-2-63").st_size == (1 << 63) - 1
    assert os.stat(m / "size-2-64").st_size == (1 << 63) - 1   # clamped, not wrapped
    assert os.stat(m / "time-ntfs-max").st_mtime > 2 ** 33    # far future, not wrapped
    for name in ("uid-max", "uid-wide", "time-dos-zero", "time-dos-garbage"):
        assert (m / name).read_bytes() in (b"u", b"w", b"z", b"g")
    assert read_errno(m / "size-2-64") == errno.EIO
    m.unmount()


def test_truncated_archive_is_salvaged_by_repair(tmp_path, mounter):
    """The refused truncated archive: ``archfs repair`` salvages what is
    intact, and the repaired archive mounts."""
    data = {"one.txt": b"one\n" * 100, "two.bin": bytes(range(256)) * 20}
    full = tmp_path / "full.zip"
    with zipfile.ZipFile(full, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in data.items():
            zf.writestr(name, content)
    raw = full.read_bytes()
    cut = raw[:hostile.central_records(raw)[0] + 5]    # the directory is lost
    path = tmp_path / "cut.zip"
    path.write_bytes(cut)
    repair(path)
    assert path.read_bytes().startswith(cut)          # no existing byte overwritten
    m = mounter(path, "ro")
    assert {n: (m / n).read_bytes() for n in os.listdir(m.path)} == data
    m.unmount()


class _Stream:
    """An unseekable output: zipfile then writes data descriptors."""

    def __init__(self):
        self.data = bytearray()

    def write(self, b):
        self.data += b
        return len(b)

    def flush(self):
        pass


def test_lost_directory_bzip2_member_with_descriptor_is_read_leniently(tmp_path):
    """A bzip2 member whose sizes are only in its data descriptor, with the
    central directory lost: the lenient reading finds where its stream ends
    even when it inflates to far more than it reads per step."""
    content = bytes(3 << 20)                     # bzip2 makes this a few dozen bytes
    out = _Stream()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("zeros.bin", content)
        zf.writestr("note.txt", b"after the big one\n")
    raw = bytes(out.data)
    assert raw[6] & 0x08                         # general purpose flag: data descriptor
    path = tmp_path / "lost.zip"
    path.write_bytes(raw[:hostile.central_records(raw)[0]])
    with ZipfileArchive(url=str(path), mode="r") as a:
        assert sorted(a.getnames()) == ["note.txt", "zeros.bin"]
        with a.open("zeros.bin") as f:
            assert f.read() == content
        with a.open("note.txt") as f:
            assert f.read() == b"after the big one\n"
