"""archfs's binding of libfuse's low-level API (archfs/mount/lowlevel.py).

Every mount test runs through it (it is the default where libfuse 3 is
loaded); here: the structures it packs by hand against their ctypes
declarations, the inode table, the readdirplus policy,
and the same workload through both bindings giving the same result.
"""

import os
import stat
import struct

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
