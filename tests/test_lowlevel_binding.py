"""archfs's binding of libfuse's low-level API (archfs/mount/lowlevel.py).

Every mount test runs through it (it is the default where libfuse 3 is
loaded); here: the structures it packs by hand against their ctypes
declarations, the inode table, the readdirplus policy,
and the same workload through both bindings giving the same result.
"""

import ctypes
import os
import stat
import struct
import threading
from collections import OrderedDict

import pytest

from archfs.mount import binding, fusell as ll
from archfs.mount.inodes import ROOT, InodeTable
from archfs.mount.lowlevel import _PlusPolicy, pack_dirents
from mount_fixtures import build_archive, tree_of


def test_the_low_level_binding_is_the_default_here(monkeypatch):
    monkeypatch.delenv("ARCHFS_FUSE_API", raising=False)
    assert binding.chosen() == "low"
    monkeypatch.setenv("ARCHFS_FUSE_API", "high")
    assert binding.chosen() == "high"


def test_stat_and_entry_packing_match_the_ctypes_structures():
    assert ll.STAT_FIELDS == ll.STAT_ORDER
    values = (77, 2, stat.S_IFREG | 0o640, 1000, 1001, 0x0801, 123456789, 241123,
              1_700_000_001, 1, 1_700_000_002, 2, 1_700_000_003, 3)
    st = ll.c_stat.from_buffer_copy(ll.STAT.pack(*values))
    assert (st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, st.st_rdev, st.st_size,
            st.st_blocks) == values[:8]
    assert (st.st_atimespec.tv_sec, st.st_atimespec.tv_nsec, st.st_mtimespec.tv_sec,
            st.st_mtimespec.tv_nsec, st.st_ctimespec.tv_sec,
            st.st_ctimespec.tv_nsec) == values[8:]
    entry = ll.fuse_entry_param.from_buffer_copy(ll.ENTRY.pack(9, 0, *values, 1.5, 60.0))
    assert entry.ino == 9 and entry.attr.st_size == 123456789
    assert entry.attr_timeout == 1.5 and entry.entry_timeout == 60.0
    assert ll.ENTRY_OUT.size == 128        # fuse_entry_out of the kernel protocol


def _parse(buffer: bytes, plus: bool):
    out, at = [], 0
    while at < len(buffer):
        if plus:
            assert buffer[at:at + 128] == bytes(128)   # no attributes: nodeid 0
            at += 128
        ino, off, namelen, kind = struct.unpack_from("<QQII", buffer, at)
        name = buffer[at + 24:at + 24 + namelen]
        size = (24 + namelen + 7) & ~7
        assert buffer[at + 24 + namelen:at + size] == bytes(size - 24 - namelen)
        out.append((ino, off, name, kind))
        at += size
    return out


@pytest.mark.parametrize("plus", [False, True])
def test_dirents_are_packed_as_the_kernel_reads_them(plus):
    entries = [(".", stat.S_IFDIR), ("..", stat.S_IFDIR), ("a", stat.S_IFREG),
               ("dir-name", stat.S_IFDIR), ("l\u00e9nk", stat.S_IFLNK),
               ("bad-\udcff", stat.S_IFREG, 4242)]    # the plugin's inode number
    packed = pack_dirents(entries, plus=plus)
    assert packed.ends[-1] == len(packed.blob) and all(e % 8 == 0 for e in packed.ends)
    assert packed.dirs == [0, 1, 3]
    parsed = _parse(packed.blob, plus)
    assert [p[2] for p in parsed] == [b".", b"..", b"a", b"dir-name", "lénk".encode(),
                                      b"bad-\xff"]
    assert [p[1] for p in parsed] == [1, 2, 3, 4, 5, 6]     # offset of the next entry
    assert [p[3] for p in parsed] == [4, 4, 8, 4, 10, 8]    # DT_DIR, DT_REG, DT_LNK
    assert parsed[-1][0] == 4242 and parsed[0][0] == ll.UNKNOWN_INO


def test_inode_table_follows_renames_and_removals():
    table = InodeTable()
    d = table.remember(ROOT, "d")
    f = table.remember(d, "f")
    assert table.path(f) == "/d/f" and table.child_path(ROOT, "x") == "/x"
    assert table.remember(d, "f") == f                     # a second lookup, same inode
    table.moved(ROOT, "d", ROOT, "e")                       # the directory moves ...
    assert table.path(f) == "/e/f"                         # ... with what is below it
    other = table.remember(ROOT, "o")
    table.moved(ROOT, "o", d, "f")                          # replaces /e/f
    assert table.path(other) == "/e/f" and table.path(f) is None
    table.unlinked(d, "f")
    assert table.path(other) is None and table.peek(d, "f") == 0
    assert not table.forget(f, 1) and table.forget(f, 1)   # two lookups, two forgets
    again = table.remember(d, "f")
    assert again not in (f, other)                          # numbers are never reused
    assert not table.forget(ROOT, 1) and table.path(ROOT) == "/"


def test_readdirplus_carries_attributes_only_when_walkers_look_files_up():
    find = _PlusPolicy()
    for ino in range(2, 200):               # find: lists 100 files per directory,
        assert not find.with_attributes(ino)   # looks up directories only
        find.listed_bare(ino, 100)
    grep = _PlusPolicy()
    grep.listed_bare(2, 100)
    for _ in range(100):                    # grep -r: every file listed is opened
        grep.looked_up(2)
    answers = [grep.with_attributes(ino) for ino in range(3, 3 + 2 * _PlusPolicy.PROBE)]
    assert answers.count(False) == 2        # one probe in PROBE still goes out bare
    grep.looked_up(5)                       # a lookup below a directory not listed bare
    assert grep.hits == 100


def _workload(root, api):
    """Namespace and content changes through a mount; returns what it saw."""
    seen = {}
    os.makedirs(root / "new/deeper")
    (root / "new/deeper/f.txt").write_bytes(b"one\n")
    seen["listed"] = sorted(os.listdir(root / "new/deeper"))
    (root / "new/deeper/g.txt").write_bytes(b"two\n")       # a cached listing changes
    seen["listed again"] = sorted(os.listdir(root / "new/deeper"))
    os.rename(root / "new/deeper", root / "moved")
    seen["after rename"] = sorted(os.listdir(root / "moved"))
    with open(root / "moved/f.txt", "r+b") as f:
        os.unlink(root / "moved/f.txt")                       # removed while open
        f.write(b"ONE")
        f.flush()
        if api == "low":    # libfuse's high-level API answers ESTALE here
            assert os.fstat(f.fileno()).st_size == 4
        f.seek(0)
        seen["read of unlinked"] = f.read()
    os.chmod(root / "moved/g.txt", 0o600)
    os.truncate(root / "moved/g.txt", 2)
    os.utime(root / "moved/g.txt", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    st = os.stat(root / "moved/g.txt")
    seen["g"] = (stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns)
    os.symlink("g.txt", root / "moved/link")
    seen["link"] = os.readlink(root / "moved/link")
    for name in ("missing", "moved/missing"):
        seen[name] = os.path.exists(root / name)
    seen["statvfs"] = os.statvfs(root).f_namemax
    return seen


def test_both_bindings_serve_the_same(tmp_path, mounter, monkeypatch):
    results = {}
    for api in ("low", "high"):
        monkeypatch.setenv("ARCHFS_FUSE_API", api)
        archive = build_archive("zip", tmp_path / api)
        m = mounter(archive, "commit_interval=0.2")
        results[api] = _workload(m.path, api)
        results[api + " tree"] = tree_of(m.path)
        m.unmount()
        ro = mounter(archive, "ro")
        results[api + " saved"] = tree_of(ro.path)
        ro.unmount()
    assert results["low"] == results["high"]
    assert results["low tree"] == results["high tree"] == results["low saved"] \
        == results["high saved"]
    assert results["low"]["read of unlinked"] == b"ONE\n"
    assert results["low"]["listed again"] == ["f.txt", "g.txt"]


class _Tree:
    """Operations over a fixed tree, recording which listings were read."""

    def __init__(self, listing):
        self.listing, self.read = listing, []

    def readdir(self, path, fh):
        self.read.append(path)
        return [(".", stat.S_IFDIR), ("..", stat.S_IFDIR)] + [
            (n, stat.S_IFDIR if k == "d" else stat.S_IFREG) for n, k in self.listing[path]]

    def getattr(self, path, fh=None):
        parent, _, name = path.rpartition("/")
        kind = dict(self.listing[parent or "/"])[name]
        return {"st_mode": (stat.S_IFDIR | 0o755) if kind == "d" else (stat.S_IFREG | 0o644),
                "st_size": len(path), "st_mtime": 1_700_000_000 * 10**9}


def _replies(monkeypatch):
    sent = []
    monkeypatch.setattr(ll, "reply_buf", lambda req, data, size: sent.append(data) or 0)
    return sent


def _plus_records(buffer: bytes):
    """[(name, nodeid, st_mode, off)] of a readdirplus reply."""
    out, at = [], 0
    while at < len(buffer):
        head = ll.ENTRY_OUT.unpack_from(buffer, at)
        ino, off, namelen, kind = struct.unpack_from("<QQII", buffer, at + 128)
        out.append((buffer[at + 152:at + 152 + namelen].decode(), head[0], head[15], off))
        at += 128 + ((24 + namelen + 7) & ~7)
    return out


def _binding(ops):
    from archfs.mount.lowlevel import LowLevelFUSE
    fs = LowLevelFUSE.__new__(LowLevelFUSE)     # no mount: the request methods only
    fs.operations, fs.encoding, fs.errors = ops, "utf-8", "surrogateescape"
    fs.inodes = InodeTable()
    fs._no_opendir = True
    fs._listings, fs._listings_lock, fs._next_sibling = OrderedDict(), threading.Lock(), {}
    fs._plus = _PlusPolicy()
    fs._valid = (60, 60, 0, 0)
    fs._uid = fs._gid = 0
    fs._dirs = {}
    return fs


def test_readdirplus_gives_subdirectories_attributes_and_prepares_the_next_listing(
        monkeypatch):
    ops = _Tree({"/": [("a", "d"), ("f1", "f"), ("b", "d")], "/a": [("x", "f"), ("s", "d")],
                 "/a/s": [("y", "f")], "/b": [("z", "f")]})
    fs = _binding(ops)
    sent = _replies(monkeypatch)
    fi = ctypes.pointer(ll.fuse_file_info())

    def listing(ino, size=32768):
        offset, records = 0, []
        while True:
            fs._readdirplus(None, ino, size, offset, fi)
            got = _plus_records(sent[-1])
            if not got:
                return records
            records.extend(got)
            offset = got[-1][3]

    root = listing(ROOT)
    assert [r[0] for r in root] == [".", "..", "a", "f1", "b"]
    assert [r[3] for r in root] == [1, 2, 3, 4, 5]
    a, b = fs.inodes.peek(ROOT, "a"), fs.inodes.peek(ROOT, "b")
    assert a and b and [r[1] for r in root] == [0, 0, a, 0, b]   # files go bare
    assert stat.S_ISDIR(root[2][2]) and root[3][2] == 0
    assert ops.read == ["/", "/a"]      # at the end of /, its first subdirectory was read
    assert [r[0] for r in listing(a)] == [".", "..", "x", "s"]
    s = fs.inodes.peek(a, "s")
    assert ops.read == ["/", "/a", "/a/s"]
    assert [r[0] for r in listing(s)] == [".", "..", "y"]
    assert ops.read[-1] == "/b"         # /a/s has no subdirectory, /a no next one: /b
    assert [r[0] for r in listing(b)] == [".", "..", "z"]
    assert ops.read.count("/b") == 1
    # a reply split record by record, resumed at each offset, is the same listing
    fs._listings.clear()
    assert [r[:1] + r[2:] for r in listing(ROOT, size=170)] == [r[:1] + r[2:] for r in root]
    # every directory given with attributes counts as a lookup, once per reply
    assert fs.inodes.forget(a, 1) is False and fs.inodes.forget(a, 1) is True
