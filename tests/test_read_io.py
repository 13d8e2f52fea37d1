"""How reading a member uses the disk and memory: compressed data is asked of
the disk ahead of the decoder, and the decoder's buffers are reused instead of
being faulted in again for every chunk."""

import os
import subprocess
import sys
import threading
import zipfile

import pytest

from archfs.engine import fileaccess
from archfs.zipengine import decodestream, prefetch
from zip_builders import DEFLATED, Entry, open_store, pseudo_random, write_zip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _member_range(path, name):
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        head = f.read(4)
    start = info.header_offset + 30 + int.from_bytes(head[:2], "little") \
        + int.from_bytes(head[2:], "little")
    return start, start + info.compress_size


def test_long_member_asks_the_disk_ahead_of_its_decoder(tmp_path, monkeypatch):
    data = pseudo_random(40 << 20, 11, alphabet=16)
    path = write_zip(tmp_path / "a.zip", [Entry("big", data, DEFLATED),
                                          Entry("small", data[:100_000], DEFLATED)])
    start, end = _member_range(path, "big")
    assert end - start > 2 * decodestream.READ_AHEAD
    events = []
    original = fileaccess.ArchiveFile.pread
    monkeypatch.setattr(fileaccess.ArchiveFile, "read_ahead",
                        lambda self, pos, size: events.append(("ask", pos, pos + size)))

    def pread(self, size, pos):
        events.append(("read", pos, pos + size))
        return original(self, size, pos)

    monkeypatch.setattr(fileaccess.ArchiveFile, "pread", pread)
    store = open_store(path, False)
    events.clear()
    with store.open_member("big") as f:
        assert f.read() == data
    asks = [(a, b) for kind, a, b in events if kind == "ask"]
    # together exactly the member's data, without gaps (two threads may ask
    # for the same range at once: overlaps are allowed)
    asks.sort()
    assert asks[0][0] == start and max(b for _, b in asks) == end
    covered = start
    for a, b in asks:
        assert a <= covered, (a, covered)
        covered = max(covered, b)
    # a few big hints, not one per read
    reads = [e for e in events if e[0] == "read" and start <= e[1] < end]
    assert len(asks) <= 4 * (end - start) // decodestream.READ_AHEAD + 2 < len(reads) // 4
    # every read of the member's data was asked for before it was made, and
    # nothing was asked more than READ_AHEAD beyond the read that asked
    asked_to = start
    for kind, a, b in events:
        if kind == "ask":
            asked_to = max(asked_to, b)
        elif start <= a < end:
            assert b <= asked_to
    events.clear()
    with store.open_member("small") as f:
        assert f.read() == data[:100_000]
    assert not [e for e in events if e[0] == "ask"]


def test_read_ahead_asks_the_kernel(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "posix_fadvise", lambda *a: calls.append(a))
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    f = fileaccess.ArchiveFile(str(path), False)
    try:
        f.read_ahead(10, 50)
        assert calls == [(f.fd, 10, 50, os.POSIX_FADV_WILLNEED)]
    finally:
        f.close()


_DECODE = """
import resource, sys
from archfs.engine import heap
from archfs.zipengine.decodestream import DecodeStream
from zip_builders import open_store
if sys.argv[2] == "kept":
    assert heap.keep_freed_memory()
store = open_store(sys.argv[1], False)
with store.open_member("big") as reader:
    stream = DecodeStream(reader._source, reader._info, None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out = 0
    while chunk := stream.next_chunk(1 << 20):
        out += len(chunk)
    print(out, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _decode_faults(path, mode):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
    done = subprocess.run([sys.executable, "-c", _DECODE, path, mode], env=env, check=True,
                          capture_output=True, text=True)
    out, faults = map(int, done.stdout.split())
    return out, faults


def test_decoding_reuses_freed_memory(tmp_path):
    """Without keep_freed_memory glibc maps and unmaps the decoder's buffers,
    and every chunk is faulted in page by page (~250 faults per MiB here)."""
    data = pseudo_random(64 << 20, 12, alphabet=16)
    path = write_zip(tmp_path / "m.zip", [Entry("big", data, DEFLATED)])
    out, faults = _decode_faults(path, "kept")
    assert out == len(data)
    assert faults < 16 * (len(data) >> 20), faults


@pytest.mark.timeout(120)
def test_readers_out_of_order_all_get_their_bytes(tmp_path, monkeypatch):
    """The kernel sends a sequential reader's reads from several threads, a
    little out of order: every read gets its bytes and none waits forever
    for a wake-up the decoding thread skipped."""
    data = pseudo_random(48 << 20, 13, alphabet=16)
    path = write_zip(tmp_path / "p.zip", [Entry("big", data, DEFLATED)])
    started = []
    original = prefetch.Prefetcher.__init__

    def counting(self, *args):
        started.append(self)
        original(self, *args)

    monkeypatch.setattr(prefetch.Prefetcher, "__init__", counting)
    store = open_store(path, False)
    step = 1 << 20
    offsets = list(range(0, len(data), step))
    wrong = []
    with store.open_member("big") as f:
        def reader(mine):
            for off in mine:
                if f.pread(step, off) != data[off:off + step]:
                    wrong.append(off)
        threads = [threading.Thread(target=reader, args=(offsets[i::3],)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert wrong == []
    assert started, "the reads never ran ahead on the decoding thread"
