"""Memory stays bounded for every compression method archfs reads.

One archive holds a member of about 1 GiB of zeros for each method (and one
AES-encrypted), each read to its end through a read-only mount; the daemon's
peak resident memory (VmHWM) may grow by far less than one member.

The compressed streams are built cheaply instead of compressing 1 GiB each:
a piece that encodes a run of zeros is repeated (deflate blocks after a full
flush, zstd frames, xz and bzip2 streams), or the bit stream is written by
hand (Deflate64's longest matches, implode's and shrink's codes). Only LZMA,
which has no such unit, is compressed whole (a few seconds); PPMd, whose
encoder runs at tens of MB/s, gets a 64 MiB member.
"""

import bz2
import hashlib
import hmac
import lzma
import os
import struct
import time
import zlib

from zip_builders import crc32_of_zeros, end_records
from zip_corpus_builders import BitWriter

GIB = 1 << 30
MIB = 1 << 20
GROWTH_LIMIT = 64 << 20
LOCAL = struct.Struct("<4sHHHHHLLLHH")
CENTRAL = struct.Struct("<4sHHHHHHLLLHHHHHLL")


def _repeat(unit: bytes, times: int, head: bytes = b"", tail: bytes = b""):
    yield head
    block = unit * max(1, (4 * MIB) // max(1, len(unit)))
    per_block = len(block) // len(unit)
    while times >= per_block:
        yield block
        times -= per_block
    yield unit * times
    yield tail


def deflate_zeros():
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(bytes(MIB)) + c.flush(zlib.Z_FULL_FLUSH)
    unit = c.compress(bytes(MIB)) + c.flush(zlib.Z_FULL_FLUSH)
    assert first == unit                      # a full flush forgets the history
    return GIB, _repeat(unit, 1024, tail=b"\x03\x00")   # then an empty final block


def deflate64_zeros():
    """One fixed-Huffman block: a literal 0, then matches at distance 1 of
    Deflate64's longest length (code 285 with 16 extra bits: 65538 bytes)."""
    w = BitWriter()
    w.put(1, 1)                  # BFINAL
    w.put(1, 2)                  # fixed Huffman
    def code(value, bits):       # Huffman codes go most significant bit first
        w.put(int(format(value, "0%db" % bits)[::-1], 2), bits)
    code(0x30, 8)                # literal 0
    matches = (GIB - 1) // 65538
    for _ in range(matches):
        code(0xC0 + 5, 8)        # length code 285
        w.put(65538 - 3, 16)
        code(0, 5)               # distance code 0: distance 1
    rest = GIB - 1 - matches * 65538
    code(0xC0 + 5, 8)
    w.put(rest - 3, 16)
    code(0, 5)
    code(0, 7)                   # end of block (256)
    return GIB, iter([w.done()])


def bzip2_zeros():
    unit = bz2.compress(bytes(64 * MIB), 9)
    return GIB, _repeat(unit, 16)             # 16 bzip2 streams one after the other


def lzma_zeros():
    dict_size = MIB
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": 3, "lp": 0, "pb": 2,
                "mode": lzma.MODE_FAST, "nice_len": 273, "mf": lzma.MF_HC4}]
    c = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=filters)
    zeros = bytes(16 * MIB)
    parts = [b"\x09\x14\x05\x00" + bytes((93,)) + struct.pack("<L", dict_size)]
    parts += [c.compress(zeros) for _ in range(64)]
    parts.append(c.flush())
    return GIB, iter(parts)


def zstd_zeros():
    from backports import zstd
    return GIB, _repeat(zstd.compress(bytes(MIB)), 1024)


def xz_zeros():
    return GIB, _repeat(lzma.compress(bytes(MIB), format=lzma.FORMAT_XZ, preset=1), 1024)


def ppmd_zeros():
    import pyppmd
    size = 64 * MIB
    order, mem_mb = 6, 16
    encoder = pyppmd.Ppmd8Encoder(order, mem_mb << 20, restore_method=0)
    body = encoder.encode(bytes(size)) + encoder.flush()
    head = struct.pack("<H", (order - 1) | ((mem_mb - 1) << 4))
    return size, iter([head, body])


def implode_zeros():
    """8 KiB window, no literal tree: a literal 0, then matches at distance 1
    of the longest length (2 + 63 + 255); 8 matches are 28 whole bytes."""
    trees = bytes((3, 0xF5, 0xF5, 0xF5, 0xF5)) * 2   # 64 codes of 6 bits, twice
    groups = GIB // (8 * 320)
    w = BitWriter()
    w.put(1, 1)
    w.put(0, 8)
    for _ in range(16):
        w.put(0, 1)
        w.put(0, 7)                 # low distance bits
        w.put(0b111111, 6)          # distance 0: the last code of the uniform tree, reversed
        w.put(0, 6)                 # length 63: the first code, all zeros
        w.put(255, 8)
    sample = w.done()
    unit = sample[2:30]
    assert sample[30:58] == unit
    return 1 + groups * 8 * 320, _repeat(unit, groups, head=trees + sample[:2])


def shrink_zeros():
    """LZW over zeros: 0, then 257, 258, ... (each the last string and one
    more zero) until the table is full, then its longest code, 8191, again and again."""
    w = BitWriter()
    width = 9
    size = 1
    w.put(0, 9)
    for c in range(257, 8192):
        while c >= 1 << width:
            w.put(256, width)
            w.put(1, width)
            width += 1
        w.put(c, width)
        size += c - 255
    longest = 8191 - 255
    while w.n:                      # more longest codes until the bits are byte-aligned
        w.put(8191, 13)
        size += longest
    head = w.done()
    unit_writer = BitWriter()
    for _ in range(8):              # 8 codes of 13 bits are 13 whole bytes
        unit_writer.put(8191, 13)
    groups = (GIB - size) // (8 * longest)
    return size + groups * 8 * longest, _repeat(unit_writer.done(), groups, head=head)


def aes_deflate_zeros():
    from Cryptodome.Cipher import AES
    from Cryptodome.Util import Counter
    usize, parts = deflate_zeros()
    plain = b"".join(parts)
    salt = bytes(range(16))
    material = hashlib.pbkdf2_hmac("sha1", b"pw", salt, 1000, 66)
    key, mac_key, check = material[:32], material[32:64], material[64:]
    body = AES.new(key, AES.MODE_CTR, counter=Counter.new(128, initial_value=1,
                                                          little_endian=True)).encrypt(plain)
    mac = hmac.new(mac_key, body, "sha1").digest()[:10]
    return usize, iter([salt + check + body + mac])


METHODS = [  # name, method, flags, builder
    ("stored", 0, 0, None),
    ("deflate", 8, 0, deflate_zeros),
    ("deflate64", 9, 0, deflate64_zeros),
    ("bzip2", 12, 0, bzip2_zeros),
    ("lzma", 14, 2, lzma_zeros),
    ("zstd", 93, 0, zstd_zeros),
    ("xz", 95, 0, xz_zeros),
    ("ppmd", 98, 0, ppmd_zeros),
    ("implode", 6, 2, implode_zeros),
    ("shrink", 1, 0, shrink_zeros),
    ("aes-deflate", 99, 1, aes_deflate_zeros),
]


def build(path) -> dict:
    """The archive; returns name -> size of each member."""
    sizes = {}
    central = bytearray()
    with open(path, "wb") as f:
        for name, method, flags, builder in METHODS:
            raw = name.encode()
            extra = struct.pack("<HHH2sBH", 0x9901, 7, 2, b"AE", 3, 8) if method == 99 else b""
            offset = f.tell()
            f.seek(offset + LOCAL.size + len(raw) + len(extra))
            if builder is None:
                usize = csize = GIB
                f.truncate(f.tell() + GIB)      # a hole: reads as zeros, costs no disk
                f.seek(GIB, os.SEEK_CUR)
            else:
                usize, parts = builder()
                csize = 0
                for part in parts:
                    f.write(part)
                    csize += len(part)
            end = f.tell()
            crc = 0 if method == 99 else crc32_of_zeros(usize)
            version = 51 if method == 99 else 63
            f.seek(offset)
            f.write(LOCAL.pack(b"PK\x03\x04", version, flags, method, 0, 0x21, crc, csize, usize,
                               len(raw), len(extra)) + raw + extra)
            f.seek(end)
            central += CENTRAL.pack(b"PK\x01\x02", (3 << 8) | 63, version, flags, method, 0,
                                    0x21, crc, csize, usize, len(raw), len(extra), 0, 0, 0,
                                    0o100644 << 16, offset) + raw + extra
            sizes[name] = usize
        cd_start = f.tell()
        f.write(central)
        f.write(end_records(len(METHODS), len(central), cd_start))
    return sizes


def _peak_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM for pid %d" % pid)


def test_a_1gib_member_of_every_method_through_a_mount(tmp_path, mounter):
    """Each member is read by a mount of its own, so each method's peak is its own."""
    archive = tmp_path / "methods.zip"
    sizes = build(archive)
    assert os.stat(archive).st_blocks * 512 < 64 * MIB      # the streams really are small
    report = []
    for name, size in sizes.items():
        m = mounter(archive, "ro", "password=pw", mountpoint=tmp_path / ("mnt-%s" % name))
        os.stat(m / name)
        before = _peak_rss(m.pid)
        started = time.monotonic()
        fd = os.open(m / name, os.O_RDONLY)
        try:
            total = 0
            while True:
                data = os.read(fd, 1 << 20)
                if not data:
                    break
                assert not data.strip(b"\0"), name
                total += len(data)
        finally:
            os.close(fd)
        growth = _peak_rss(m.pid) - before
        m.unmount()
        assert total == size, (name, total, size)
        report.append("%s %.1fs +%dMiB" % (name, time.monotonic() - started, growth >> 20))
        assert growth < GROWTH_LIMIT, "reading %s grew the daemon by %d MiB" % (name, growth >> 20)
    print(", ".join(report))
