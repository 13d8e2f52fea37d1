"""Directory listings through the low-level binding (archfs/mount/lldirs.py).

A listing goes to the kernel as packed records, split over as many readdir
or readdirplus requests as it takes; subdirectories carry their attributes
(the kernel then needs no lookup to descend), files carry them only when
walkers look them up. What a program sees must not depend on any of that:
here, huge directories split over many requests, reads resumed in the
middle of a listing with tiny getdents buffers, names that are not UTF-8,
ls -l right after a find, and read-write mounts whose directories change
after being listed with attributes.
"""

import ctypes
import os
import platform
import stat
import subprocess
import zipfile

import pytest

from mount_fixtures import make_tree

# Enough entries that one listing takes dozens of readdirplus requests.
FILES = 3000
SUBDIRS = 40
_SYS_GETDENTS64 = {"x86_64": 217, "aarch64": 61, "arm64": 61}.get(platform.machine())
_DT = {4: "dir", 8: "file", 10: "link"}


def _huge_zip(path):
    """One directory of FILES files (long and short names) with SUBDIRS
    subdirectories among them, each holding one file; returns {name: kind}."""
    expected = {}
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(FILES):
            name = ("f%05d" % i) + ("-" + "x" * (i % 90) if i % 3 else "")
            zf.writestr("big/" + name, b"%d\n" % i)
            expected[name] = "file"
            if i % (FILES // SUBDIRS) == 0:
                sub = "sub%03d" % (i // (FILES // SUBDIRS))
                zf.writestr("big/%s/inner.txt" % sub, sub.encode())
                expected[sub] = "dir"
    return expected


def _getdents(fd, size):
    """[(name bytes, d_type)] from one getdents64 call with a ``size``-byte buffer."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(size)
    n = libc.syscall(_SYS_GETDENTS64, fd, buf, size)
    if n < 0:
        raise OSError(ctypes.get_errno(), "getdents64")
    raw, out, at = buf.raw[:n], [], 0
    while at < n:
        reclen = int.from_bytes(raw[at + 16:at + 18], "little")
        d_type = raw[at + 18]
        name = raw[at + 19:at + reclen].split(b"\0", 1)[0]
        out.append((name, d_type))
        at += reclen
    return out


def _read_all(path, size):
    """A whole listing through getdents64 calls of ``size`` bytes each (the
    kernel asks the file system again from the middle of what it replied)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entries, calls = [], 0
        while True:
            got = _getdents(fd, size)
            calls += 1
            if not got:
                return entries, calls
            entries.extend(got)
    finally:
        os.close(fd)


def _check_listing(entries, expected):
    names = [n.decode() for n, _ in entries]
    assert sorted(names) == sorted(list(expected) + [".", ".."])
    assert len(names) == len(set(names))            # nothing twice across requests
    kinds = {n.decode(): _DT.get(t, t) for n, t in entries}
    assert {n: kinds[n] for n in expected} == expected


def test_a_huge_listing_split_over_many_requests_is_the_tree(tmp_path, mounter):
    archive = tmp_path / "big.zip"
    expected = _huge_zip(archive)
    m = mounter(archive, "ro")
    big = m.path / "big"
    # find: names and types only (readdirplus without files' attributes)
    found = subprocess.run(["find", str(big), "-type", "d"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert sorted(found) == sorted([str(big)] + [str(big / n) for n, k in expected.items()
                                                 if k == "dir"])
    with os.scandir(big) as it:
        scanned = {e.name: "dir" if e.is_dir(follow_symlinks=False) else "file" for e in it}
    assert scanned == expected
    if _SYS_GETDENTS64 is not None:
        # buffers of a few records: every call resumes mid-reply
        entries, calls = _read_all(big, 256)
        _check_listing(entries, expected)
        assert calls > 100
    # descending needs the subdirectories' attributes, given in the listing
    for name, kind in expected.items():
        if kind == "dir":
            assert (big / name / "inner.txt").read_bytes() == name.encode()
            assert stat.S_ISDIR(os.stat(big / name).st_mode)


def test_ls_l_right_after_a_find_shows_every_attribute(tmp_path, mounter):
    archive = tmp_path / "a.zip"
    sizes = {}
    with zipfile.ZipFile(archive, "w") as zf:
        for d in range(6):
            for i in range(60):
                data = b"y" * (d * 100 + i)
                zf.writestr("d%d/f%03d" % (d, i), data)
                sizes["d%d/f%03d" % (d, i)] = len(data)
    m = mounter(archive, "ro")
    subprocess.run(["find", str(m.path)], capture_output=True, check=True)
    # ls -l (or a walker that stats every file) after a bare find: the
    # listings were cached without attributes; lookups fill them in, and
    # later listings (not cached yet) come with the attributes
    for d in range(6):
        out = subprocess.run(["ls", "-ln", str(m.path / ("d%d" % d))], capture_output=True,
                             text=True, check=True).stdout.splitlines()[1:]
        shown = {line.split()[-1]: int(line.split()[4]) for line in out}
        assert shown == {k.split("/")[1]: v for k, v in sizes.items()
                         if k.startswith("d%d/" % d)}
    for d in range(6):       # files statted before any listing of theirs
        assert os.stat(m.path / ("d%d" % d) / "f007").st_size == d * 100 + 7


def test_attributes_in_readdirplus_follow_the_policy_and_stay_right(tmp_path, mounter):
    """grep -r-like walkers (stat every file listed) switch listings to full
    attributes; the attributes given there are the archive's."""
    archive = tmp_path / "g.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for d in range(12):
            for i in range(50):
                info = zipfile.ZipInfo("d%02d/f%02d" % (d, i), (2001, 2, 3, 4, 5, 6))
                info.external_attr = (stat.S_IFREG | 0o640) << 16
                zf.writestr(info, b"z" * (d + i))
    m = mounter(archive, "ro")
    for d in range(12):
        base = m.path / ("d%02d" % d)
        names = sorted(os.listdir(base))
        assert names == ["f%02d" % i for i in range(50)]
        for i, name in enumerate(names):
            st = os.stat(base / name)
            assert st.st_size == d + i and stat.S_IMODE(st.st_mode) == 0o640
            assert stat.S_ISREG(st.st_mode)


def test_names_that_are_not_utf8_list_as_their_bytes(tmp_path, mounter):
    names = [b"plain", b"caf\xe9", b"\xff\xfe-raw", b"ok-\xc3\xa9"] + \
        [b"n%04d-\xff" % i for i in range(400)]
    root = tmp_path / "src"
    make_tree(root, {})
    for name in names:
        with open(os.path.join(os.fsencode(root), name), "wb") as f:
            f.write(name)
    os.mkdir(os.path.join(os.fsencode(root), b"dir-\xfe"))
    m = mounter(root, "ro", kind="dir")
    listed = os.listdir(os.fsencode(m.path))
    assert sorted(listed) == sorted(names + [b"dir-\xfe"])
    if _SYS_GETDENTS64 is not None:
        entries, _ = _read_all(m.path, 200)
        assert sorted(n for n, _ in entries) == sorted(names + [b"dir-\xfe", b".", b".."])
    for name in names[:6]:
        with open(os.path.join(os.fsencode(m.path), name), "rb") as f:
            assert f.read() == name
    assert stat.S_ISDIR(os.stat(os.path.join(os.fsencode(m.path), b"dir-\xfe")).st_mode)


def test_read_write_listings_follow_changes_to_directories_listed_with_attributes(
        tmp_path, mounter):
    archive = tmp_path / "rw.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for d in range(30):
            zf.writestr("top/d%02d/f.txt" % d, b"%d" % d)
    m = mounter(archive, "commit_interval=0.2")
    top = m.path / "top"
    assert sorted(os.listdir(top)) == ["d%02d" % d for d in range(30)]
    os.rename(top / "d03", top / "moved")             # listed with attributes, then moved
    os.mkdir(top / "new")
    (top / "new" / "g.txt").write_bytes(b"new")
    os.remove(top / "d05" / "f.txt")
    os.rmdir(top / "d05")
    listed = sorted(os.listdir(top))
    assert "d03" not in listed and "d05" not in listed
    assert "moved" in listed and "new" in listed and len(listed) == 30
    assert (top / "moved" / "f.txt").read_bytes() == b"3"
    assert not os.path.exists(top / "d03")
    with os.scandir(top) as it:
        kinds = {e.name: e.is_dir() for e in it}
    assert all(kinds.values()) and len(kinds) == 30
    # a second walk through the same (kernel-cached) directories still agrees
    found = subprocess.run(["find", str(top), "-type", "f"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert len(found) == 30 and str(top / "new" / "g.txt") in found
    m.unmount()
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    assert "top/moved/f.txt" in names and "top/new/g.txt" in names
    assert "top/d03/f.txt" not in names and "top/d05/f.txt" not in names


@pytest.mark.parametrize("api", ["low"])
def test_readdir_offsets_resume_at_the_right_entry(api, tmp_path, mounter):
    """A read-write mount (opendir, no kernel-cached listing bypass): a
    listing read in tiny steps is the same listing."""
    archive = tmp_path / "o.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(700):
            zf.writestr("o/%s%04d" % ("long-name-" * (i % 4), i), b"")
        for i in range(10):
            zf.writestr("o/sub%d/x" % i, b"")
    m = mounter(archive)
    expected = {("long-name-" * (i % 4)) + "%04d" % i: "file" for i in range(700)}
    expected.update({"sub%d" % i: "dir" for i in range(10)})
    if _SYS_GETDENTS64 is not None:
        entries, calls = _read_all(m.path / "o", 128)
        _check_listing(entries, expected)
        assert calls > 50
    assert sorted(os.listdir(m.path / "o")) == sorted(expected)


def test_find_over_a_nested_tree_lists_every_path_once(tmp_path, mounter):
    """Walkers read listings depth first; a read-only mount packs the one
    they will most likely ask next (a first subdirectory, a next sibling, a
    parent's next sibling) while they take in the end of the last."""
    archive = tmp_path / "n.zip"
    expected = set()
    with zipfile.ZipFile(archive, "w") as zf:
        for a in range(4):
            for b in range(a + 1):              # uneven fan-out: some leaves early
                for c in range(3):
                    name = "t/a%d/b%d/c%d.txt" % (a, b, c)
                    zf.writestr(name, name.encode())
                    expected.add(name)
            zf.writestr("t/a%d/top.txt" % a, b"")
            expected.add("t/a%d/top.txt" % a)
        zf.writestr("t/a1/b0/deep/er/x.txt", b"x")
        expected.add("t/a1/b0/deep/er/x.txt")
    dirs = {p.rsplit("/", k)[0] for p in expected for k in range(1, p.count("/") + 1)}
    m = mounter(archive, "ro")
    for _ in range(2):      # the second walk: listings the kernel keeps
        out = subprocess.run(["find", str(m.path)], capture_output=True, text=True,
                             check=True).stdout.split()
        rel = [os.path.relpath(p, m.path) for p in out[1:]]
        assert sorted(rel) == sorted(expected | dirs)
    assert (m.path / "t/a1/b0/deep/er/x.txt").read_bytes() == b"x"
    for d in sorted(dirs):
        names = set(os.listdir(m.path / d))
        assert names == {p[len(d) + 1:].split("/")[0] for p in expected | dirs
                         if p.startswith(d + "/")}
