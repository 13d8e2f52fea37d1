"""Reading many files costs the same per file for the first and the last.

A walk such as ``grep -r`` opens every member once; any per-open work that
grows with what was opened before (a cache summed on each call, entries kept
for members that need none) turns it quadratic. These tests time batches of
opens on one mount by the daemon's CPU time and compare them as a ratio, so
a loaded machine does not fail them, while a cost that grows tenfold does.
"""

import os
import zipfile

from archfs.mount.kernelcache import KernelCachePolicy
from archfs.zipengine.memberreader import (
    SEEK_POINT_BYTES,
    SeekIndexCache,
    SeekPoint,
    SEEK_SPACING,
)

FIRST = 2_000       # timed on the fresh mount
OTHERS = 50_000     # read in between
LAST = 2_000        # timed after the others
RATIO = 3.0         # generous: a per-open cost that grows is 10x and more here


def _member(i: int) -> bytes:
    # a few KiB of text, deflated: every open decodes and checks it
    line = ("file %d: the quick brown fox jumps over the lazy dog %d\n" % (i, i * 7919)).encode()
    return line * (20 + i % 40)


def _build(path, count: int):
    names = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(count):
            name = "d%03d/f%05d.txt" % (i % 500, i)
            zf.writestr(name, _member(i))
            names.append(name)
    return names


def _read_all(root, names):
    for name in names:
        fd = os.open(os.path.join(root, name), os.O_RDONLY)
        try:
            while os.read(fd, 1 << 16):
                pass
        finally:
            os.close(fd)


def _daemon_cpu(pid) -> float:
    """Seconds of CPU the mount daemon used so far (user + system): unlike
    wall time, it hardly moves when other work loads the machine."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_reading(pid, root, names) -> float:
    before = _daemon_cpu(pid)
    _read_all(root, names)
    return _daemon_cpu(pid) - before


def test_per_open_cost_does_not_grow_with_files_opened(tmp_path, mounter):
    archive = tmp_path / "many.zip"
    names = _build(archive, FIRST + OTHERS + LAST)
    mount = mounter(archive, "ro")
    # interleaved sets, so both timed sets come from all over the archive
    first, last = names[0::26][:FIRST], names[1::26][:LAST]
    timed = set(first) | set(last)
    others = [n for n in names if n not in timed]
    before = _cpu_reading(mount.pid, mount.path, first)
    _read_all(mount.path, others)
    after = _cpu_reading(mount.pid, mount.path, last)
    slack = 3 / os.sysconf("SC_CLK_TCK")      # the clock's ticks are coarse
    assert after < RATIO * before + slack, (
        "the daemon spent %.0f ms of CPU opening %d files after %d others, %.0f ms on "
        "a fresh mount: the per-open cost grows with the files opened before"
        % (after * 1e3, LAST, len(others), before * 1e3))


def _point(at: int) -> SeekPoint:
    return SeekPoint(at, 0, 0, None, None)


def test_seek_index_cache_keeps_no_empty_indexes():
    cache = SeekIndexCache()
    held = [cache.get(("member", i)) for i in range(1000)]
    assert cache.get(("member", 7)) is held[7]      # readers of one member share it
    assert len(cache) == 0 and cache.used == 0
    held[3].add(_point(0))
    del held
    assert len(cache) == 1 and cache.used == SEEK_POINT_BYTES
    assert len(cache._empty) == 0                   # nothing left for the 999 others
    assert len(cache.get(("member", 3))) == 1


def test_seek_index_cache_running_total_and_eviction():
    cache = SeekIndexCache(budget=10 * SEEK_POINT_BYTES)
    first, second = cache.get("first"), cache.get("second")
    for i in range(6):
        assert first.add(_point(i * SEEK_SPACING))
    for i in range(4):
        assert second.add(_point(i * SEEK_SPACING))
    assert not first.add(_point(SEEK_SPACING // 2))    # too close to a point it has
    assert cache.used == 10 * SEEK_POINT_BYTES and len(cache) == 2
    cache.get("first")                                   # now the most recently used
    second.add(_point(4 * SEEK_SPACING))                 # over budget: the oldest goes
    assert len(cache) == 1 and cache.used == 5 * SEEK_POINT_BYTES
    assert cache.get("second") is second
    # an evicted index still held by a reader comes back when it grows
    first.add(_point(6 * SEEK_SPACING))
    assert cache.get("first") is first
    assert cache.used == sum(ix.charged for ix in (first, second)) <= 10 * SEEK_POINT_BYTES


def test_kernel_cache_policy_remembers_only_changes():
    policy = KernelCachePolicy()
    assert all(policy.opened("f%d" % i) for i in range(1000))   # unchanged: keep
    assert not policy._changed and policy._since_rename is None
    policy.changed("a")
    assert not policy.opened("a")        # changed since the kernel cached it
    assert policy.opened("a")
    policy.renamed()
    assert not policy.opened("a") and not policy.opened("b")
    assert policy.opened("a") and policy.opened("b")
    policy.changed("b")
    assert not policy.opened("b") and policy.opened("b")
