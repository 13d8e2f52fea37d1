"""The pieces of the remote transports, without a server: the multipart plan
keeps S3's rules, the block cache fetches few, big, parallel ranges and
stays bounded, the staged view of a written object reads what was written."""

import random
import threading
import time

import pytest

from archfs.engine.transports import parts
from archfs.engine.transports.blockcache import BlockCache
from archfs.engine.transports.staging import Ranges, Staging

M = 1 << 20


def check_plan(size, changed, valid, **limits):
    plan = parts.plan(size, changed, valid, **limits)
    least = limits.get("min_part", parts.MIN_PART)
    pos = 0
    for i, part in enumerate(plan):
        assert part.start == pos and part.end > part.start
        if i != len(plan) - 1:
            assert part.size >= least, (plan, changed)
        if part.copy:                    # only bytes that are the same in the old object
            assert part.end <= valid and part.size <= limits.get("max_copy", parts.MAX_COPY)
            assert all(part.end <= a or part.start >= b for a, b in changed)
        pos = part.end
    assert pos == size and len(plan) <= limits.get("max_parts", parts.MAX_PARTS)
    return plan


def test_plans_keep_s3s_part_rules_whatever_changed():
    rnd = random.Random(13)
    for _ in range(3000):
        size = rnd.randint(1, 4000)
        changed = []
        for _ in range(rnd.randint(0, 5)):
            a = rnd.randint(0, size)
            changed.append((a, min(size, a + rnd.randint(1, 300))))
        try:
            check_plan(size, changed, rnd.randint(0, size), min_part=100,
                       max_copy=rnd.choice([250, 10 ** 9]), upload_part=200,
                       max_parts=rnd.choice([8, 10000]))
        except ValueError as exc:        # too many parts: refused, never a bad plan
            assert "parts" in str(exc)


def test_an_append_copies_the_prefix_and_sends_only_the_tail():
    plan = check_plan(100 * M + 5000, [(100 * M - 3000, 100 * M + 5000)], 100 * M - 3000)
    assert [p.copy for p in plan] == [True, False]
    assert sum(p.size for p in plan if not p.copy) == 8000
    small = check_plan(3 * M, [(10, 20)], 3 * M)
    assert small == [parts.Part(False, 0, 3 * M)]           # under 5 MiB: sent whole
    front = check_plan(100 * M, [(10, 20)], 100 * M)         # a change at the start
    assert not front[0].copy and front[0].size == parts.MIN_PART and front[1].copy
    huge = check_plan(12 << 30, [((12 << 30) - 10, 12 << 30)], (12 << 30) - 10)
    assert all(p.size <= parts.MAX_COPY for p in huge if p.copy) and len(huge) == 4


class FakeStore:
    """A remote object in memory that counts ranged GETs and how many run at once."""

    def __init__(self, size, delay=0.01):
        self.data = random.Random(1).randbytes(size)
        self.gets = []
        self.delay = delay
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def fetch(self, start, end):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.gets.append((start, end))
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        return self.data[start:end]


def test_block_cache_reads_sequentially_in_few_big_parallel_gets():
    store = FakeStore(48 * M)
    cache = BlockCache(store.fetch, len(store.data), capacity=64 * M)
    out = bytearray()
    pos = 0
    while pos < len(store.data):
        out += cache.read(128 << 10, pos)
        pos += 128 << 10
    cache.close()
    assert bytes(out) == store.data
    assert len(store.gets) <= 20, len(store.gets)        # 384 reads of 128 KiB
    assert store.most >= 2                               # readahead in parallel
    fetched = sum(b - a for a, b in store.gets)
    assert fetched <= len(store.data) + 4 * M            # nothing read twice


def test_block_cache_stays_bounded_and_serves_random_reads():
    store = FakeStore(40 * M, delay=0)
    cache = BlockCache(store.fetch, len(store.data), capacity=8 * M)
    rnd = random.Random(2)
    for _ in range(300):
        pos = rnd.randrange(len(store.data))
        size = rnd.randint(1, 300000)
        assert cache.read(size, pos) == store.data[pos:pos + size]
        assert cache.held <= 8 * M
    assert cache.read(10, len(store.data) - 3) == store.data[-3:]
    assert cache.read(10, len(store.data) + 5) == b""
    cache.close()


def test_an_announced_range_comes_in_one_get():
    store = FakeStore(20 * M, delay=0)
    cache = BlockCache(store.fetch, len(store.data), capacity=64 * M)
    cache.will_read(3 * M + 17, 9 * M)
    pos = 3 * M + 17
    while pos < 12 * M + 17:               # a parser reading the announced range
        assert cache.read(65536, pos) == store.data[pos:pos + 65536]
        pos += 65536
    assert len(store.gets) == 1, store.gets
    cache.close()


def test_two_readers_of_one_block_wait_for_one_get():
    store = FakeStore(4 * M, delay=0.2)
    cache = BlockCache(store.fetch, len(store.data))
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.read(100, 5000)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [store.data[5000:5100]] * 4 and len(store.gets) == 1
    cache.close()


def test_a_failed_get_fails_the_read_and_is_not_cached():
    calls = []

    def fetch(start, end):
        calls.append(start)
        if len(calls) == 1:
            raise OSError(5, "connection reset")
        return bytes(end - start)

    cache = BlockCache(fetch, 3 * M)
    with pytest.raises(OSError):
        cache.read(10, 0)
    assert cache.read(10, 0) == bytes(10)
    cache.close()


def test_ranges_and_staging(tmp_path):
    r = Ranges()
    for a, b in [(10, 20), (30, 40), (15, 32), (50, 60)]:
        r.add(a, b)
    assert r.items == [(10, 40), (50, 60)] and r.total == 40
    assert r.covering(0, 55) == [(10, 40), (50, 55)]
    r.cut(35)
    assert r.items == [(10, 35)]
    staging = Staging(str(tmp_path))
    staging.pwrite(b"abc", 100)
    staging.zeros(200, 210)
    assert staging.pread(3, 100) == b"abc" and staging.pread(10, 200) == bytes(10)
    assert staging.dirty.items == [(100, 103), (200, 210)]
    staging.published(keep=1 << 20)
    assert staging.dirty.items == [] and staging.present.items == [(100, 103), (200, 210)]
    staging.published(keep=0)
    assert staging.present.items == []
    staging.close()
