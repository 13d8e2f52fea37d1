"""Decompression is streamed: memory stays bounded whatever the ratio.

A deflate member of 256 MiB of zeros (about 1000:1) is read to its end
through a mount, sequentially and at random offsets; the daemon's peak
resident memory (VmHWM) may grow by far less than the member's size. The
same member read through the plugin API allocates a few MiB at most.
"""

import os
import random
import struct
import tracemalloc
import zlib

from archfs.archives.zipfilearchive import ZipfileArchive
from zip_builders import crc32_of_zeros, end_records

SIZE = 256 << 20
GROWTH_LIMIT = 64 << 20


def _bomb(path, size=SIZE):
    """One deflated member of ``size`` zeros, written as a stream."""
    name = b"zeros.bin"
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    with open(path, "wb") as f:
        f.seek(30 + len(name))
        csize = 0
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            out = compressor.compress(chunk)
            csize += len(out)
            f.write(out)
        out = compressor.flush()
        csize += len(out)
        f.write(out)
        crc = crc32_of_zeros(size)
        header = struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, csize,
                             size, len(name), 0)
        central = struct.pack("<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", (3 << 8) | 20, 20, 0, 8,
                              0, 0x21, crc, csize, size, len(name), 0, 0, 0, 0,
                              0o100644 << 16, 0) + name
        cd_start = 30 + len(name) + csize
        f.write(central)
        f.write(end_records(1, len(central), cd_start))
        f.seek(0)
        f.write(header + name)
    return csize


def _peak_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM for pid %d" % pid)


def test_a_high_ratio_member_through_a_mount(tmp_path, mounter):
    archive = tmp_path / "bomb.zip"
    assert _bomb(archive) < SIZE // 500
    m = mounter(archive, "ro")
    os.stat(m / "zeros.bin")
    before = _peak_rss(m.pid)
    fd = os.open(m / "zeros.bin", os.O_RDONLY)
    try:
        total = 0
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            assert not data.strip(b"\0")
            total += len(data)
        assert total == SIZE
        rng = random.Random(5)
        for _ in range(20):
            offset = rng.randrange(SIZE)
            assert os.pread(fd, 65536, offset) == bytes(min(65536, SIZE - offset))
    finally:
        os.close(fd)
    growth = _peak_rss(m.pid) - before
    m.unmount()
    assert growth < GROWTH_LIMIT, "the daemon grew by %d MiB" % (growth >> 20)


def test_a_high_ratio_member_through_the_api(tmp_path):
    archive_path = tmp_path / "bomb.zip"
    _bomb(archive_path, 64 << 20)
    archive = ZipfileArchive(url=str(archive_path), mode="r")
    try:
        tracemalloc.start()
        with archive.open("zeros.bin") as f:
            total = 0
            while True:
                data = f.read(1 << 20)
                if not data:
                    break
                total += len(data)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        archive.close()
    assert total == 64 << 20
    assert peak < 16 << 20, "peak allocation %d MiB" % (peak >> 20)
