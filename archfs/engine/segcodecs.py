"""The codecs of segmented files (``segments``): compressing a segment,
the empty segment (filler) that replaces an end-of-archive segment in
place, and finding the segments of a file without decoding it (``walk``).
Apart from the streams so that a format's framing is read in one place.
"""

import io
import struct
import zlib
from typing import List, Optional, Tuple

# bz2 and lzma are imported where they are used: a mount that loads a saved
# index needs neither (start-up cost).

SEGMENT = 1 << 20              # input bytes per segment: a random read decodes at most this

Segment = Tuple[int, int, int, int]     # (compressed offset, length, output offset, length)


class Codec:
    kind = ""
    min_filler = 0
    fills_start = True          # a filler may stand at the file's start

    def __init__(self, level: Optional[int] = None):
        self.level = level

    def compress(self, data: bytes) -> bytes:
        raise NotImplementedError

    def reader(self, raw: io.RawIOBase):
        """A file object decoding one segment read from ``raw``."""
        raise NotImplementedError

    def filler(self, length: int) -> Optional[bytes]:
        """An empty segment of exactly ``length`` bytes, or None."""
        return None

    def walk(self, pread, size: int) -> Optional[List[Segment]]:
        """The segments of a file, found without decoding, or None."""
        return None


def walk_frames(pread, size: int, head_len: int, measure) -> Optional[List[Segment]]:
    """Frames one after another, as zstd and lz4 lay them out: a skippable
    frame (magic 0x184D2A50-5F in both) spans 8 bytes and the length it
    records; any other frame ``measure(pread, head, pos)`` sizes as (end,
    content size), or None where only decoding could tell."""
    out = []
    pos = out_pos = 0
    while pos < size:
        head = pread(head_len, pos)
        if len(head) < 8:
            return None
        magic = struct.unpack_from("<I", head)[0]
        if 0x184D2A50 <= magic <= 0x184D2A5F:
            length = 8 + struct.unpack_from("<I", head, 4)[0]
            out.append((pos, length, out_pos, 0))
            pos += length
            continue
        frame = measure(pread, head, pos)
        if frame is None:
            return None
        end, content = frame
        if end > size:
            return None
        out.append((pos, end - pos, out_pos, content))
        out_pos += content
        pos = end
    return out


class GzipCodec(Codec):
    kind = "gzip"
    min_filler = 38

    head: Optional[Tuple[int, int]] = None    # (length, output size) of a foreign head

    def compress(self, data: bytes) -> bytes:
        deflate = zlib.compressobj(6 if self.level is None else self.level, zlib.DEFLATED, -15)
        body = deflate.compress(data) + deflate.flush()
        hd = b"" if self.head is None else b"HD" + struct.pack("<HQQ", 16, *self.head)
        total = 24 + len(hd) + len(body) + 8
        header = (b"\x1f\x8b\x08\x04\0\0\0\0\0\xff" + struct.pack("<H", 12 + len(hd)) + b"AF"
                  + struct.pack("<HII", 8, total, len(data)) + hd)
        return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)

    def reader(self, raw):
        import gzip
        return gzip.GzipFile(fileobj=raw, mode="rb")

    def filler(self, length: int) -> Optional[bytes]:
        pad = length - 38
        if pad < 0 or pad > 65535 - 16:
            return None
        extra = b"AF" + struct.pack("<HII", 8, length, 0) + b"PD" + struct.pack("<H", pad) \
            + bytes(pad)
        return (b"\x1f\x8b\x08\x04\0\0\0\0\0\xff" + struct.pack("<H", len(extra)) + extra
                + b"\x03\x00" + struct.pack("<II", 0, 0))

    def walk(self, pread, size: int) -> Optional[List[Segment]]:
        """Members with sizes in their ``AF`` field; the file may start with a
        foreign member that a cut ended (``deflatecut``): its length and
        output size are then in an ``HD`` field of the members after it."""
        out = []
        pos = out_pos = 0
        if not _is_af(pread(16, 0)):
            head = _find_head(pread, size)
            if head is None:
                return None
            pos, out_pos = head
            out.append((0, pos, 0, out_pos))
        while pos < size:
            head = pread(24, pos)
            if len(head) < 24 or not _is_af(head):
                return None
            total, usize = struct.unpack_from("<II", head, 16)
            if total < 38 or pos + total > size:
                return None
            out.append((pos, total, out_pos, usize))
            pos += total
            out_pos += usize
        self.head = (out[0][1], out[0][3]) if out and not _is_af(pread(16, 0)) else None
        return out


_GZIP_AF = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff"
HEAD_SEARCH = 4096             # the last member's header is in this much of the file's end


def _is_af(head: bytes) -> bool:
    return head[:10] == _GZIP_AF and head[12:16] == b"AF\x08\x00"


def _find_head(pread, size: int) -> Optional[Tuple[int, int]]:
    """(length, output size) of a cut foreign head, from the ``HD`` field of
    a member near the end, checked by walking from the head's end to that
    member. After a commit the last member is a small end-of-archive
    segment: one read of the file's last 4 KiB finds it (what a foreign
    .tar.gz costs at every open); after a crash, uncommitted segments may
    follow it: the last one's header is then within a segment's length."""
    if size < 46:
        return None
    start = max(0, size - HEAD_SEARCH)
    tail = pread(size - start, start)
    found = _search_head(pread, size, tail, start)
    if found is not None:
        return found
    last_isize = struct.unpack("<I", tail[-4:])[0]
    if last_isize > SEGMENT or start == 0:
        return None
    start = max(0, size - HEAD_SEARCH - last_isize - last_isize // 64 - 1024)
    return _search_head(pread, size, pread(size - start, start), start)


def _search_head(pread, size: int, tail: bytes, start: int) -> Optional[Tuple[int, int]]:
    at = tail.rfind(_GZIP_AF)
    while at >= 0:
        h = tail[at:at + 44]
        if len(h) == 44 and _is_af(h) and h[24:28] == b"HD\x10\x00":
            head_len, head_usize = struct.unpack_from("<QQ", h, 28)
            if 0 < head_len <= start + at and _chain_reaches(pread, head_len, start + at, size):
                return head_len, head_usize
        at = tail.rfind(_GZIP_AF, 0, at)
    return None


def _chain_reaches(pread, pos: int, target: int, size: int) -> bool:
    while pos < target:
        head = pread(24, pos)
        if len(head) < 24 or not _is_af(head):
            return False
        total = struct.unpack_from("<I", head, 16)[0]
        if total < 38 or pos + total > size:
            return False
        pos += total
    return pos == target


class ZstdCodec(Codec):
    kind = "zstd"
    min_filler = 17

    def compress(self, data: bytes) -> bytes:
        import zstandard
        return zstandard.ZstdCompressor(level=3 if self.level is None else min(self.level, 19),
                                        write_content_size=True,
                                        write_checksum=True).compress(data)

    def reader(self, raw):
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)

    def filler(self, length: int) -> Optional[bytes]:
        """An empty frame (so the file still starts with zstd's magic, which
        tools look for), then a skippable frame for the rest."""
        if length < 17:
            return None
        empty = struct.pack("<I", 0xFD2FB528) + b"\x20\x00" + b"\x01\x00\x00"
        rest = length - len(empty)
        return empty + struct.pack("<II", 0x184D2A50, rest - 8) + bytes(rest - 8)

    def walk(self, pread, size: int) -> Optional[List[Segment]]:
        return walk_frames(pread, size, 18, _zstd_frame)


def _zstd_frame(pread, head: bytes, pos: int) -> Optional[Tuple[int, int]]:
    """A zstd frame's end and content size, from its header and block headers."""
    if struct.unpack_from("<I", head)[0] != 0xFD2FB528:
        return None
    fhd = head[4]
    fcs_flag, single, checksum, dict_flag = fhd >> 6, fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3
    at = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if fcs_size == 0:
        return None          # no content size: would need decoding
    content = int.from_bytes(head[at:at + fcs_size], "little") + (
        256 if fcs_size == 2 else 0)
    block = pos + at + fcs_size
    while True:
        bh = pread(3, block)
        if len(bh) < 3:
            return None
        value = int.from_bytes(bh, "little")
        last, btype, bsize = value & 1, value >> 1 & 3, value >> 3
        if btype == 3:
            return None
        block += 3 + (1 if btype == 1 else bsize)
        if last:
            break
    return block + (4 if checksum else 0), content


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: bytes, at: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


class XzCodec(Codec):
    kind = "xz"
    min_filler = 48

    def compress(self, data: bytes) -> bytes:
        import lzma
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                             preset=6 if self.level is None else min(self.level, 9))

    def reader(self, raw):
        import lzma
        return lzma.LZMAFile(raw, "rb")

    def filler(self, length: int) -> Optional[bytes]:
        """A stream with one block decoding to nothing, its header padded to fit."""
        if length % 4:
            return None
        flags = b"\x00\x00"                 # no check
        head = b"\xfd7zXZ\x00" + flags + struct.pack("<I", zlib.crc32(flags))
        for size in range(12, 1025, 4):
            body = b"\x00" + _varint(1) + _varint(size + 1) + _varint(0)
            body += bytes(-len(body) % 4)
            index = body + struct.pack("<I", zlib.crc32(body))
            if 12 + size + 4 + len(index) + 12 == length:
                break
        else:
            return None
        block_header = bytes([size // 4 - 1, 0x00]) + b"\x21\x01\x00"
        block_header += bytes(size - 4 - len(block_header))
        block_header += struct.pack("<I", zlib.crc32(block_header))
        footer_body = struct.pack("<I", len(index) // 4 - 1) + flags
        footer = struct.pack("<I", zlib.crc32(footer_body)) + footer_body + b"YZ"
        return head + block_header + b"\x00\x00\x00\x00" + index + footer

    def walk(self, pread, size: int) -> Optional[List[Segment]]:
        """Streams from the end backward: footer, index, stream header."""
        streams = []
        end = size
        try:
            while end > 0:
                tail = pread(12, end - 12)
                if tail == bytes(12) or tail[-4:] == b"\0\0\0\0":
                    end -= 4               # stream padding
                    continue
                if len(tail) < 12 or tail[10:12] != b"YZ":
                    return None
                index_size = (struct.unpack_from("<I", tail, 4)[0] + 1) * 4
                index = pread(index_size, end - 12 - index_size)
                if len(index) != index_size or index[0] != 0:
                    return None
                count, at = _read_varint(index, 1)
                blocks = usize = 0
                for _ in range(count):
                    unpadded, at = _read_varint(index, at)
                    uncompressed, at = _read_varint(index, at)
                    blocks += -(-unpadded // 4) * 4
                    usize += uncompressed
                start = end - 12 - index_size - blocks - 12
                if start < 0 or pread(6, start) != b"\xfd7zXZ\x00":
                    return None
                streams.append((start, end - start, usize))
                end = start
        except ValueError:
            return None
        out = []
        out_pos = 0
        for start, length, usize in reversed(streams):
            out.append((start, length, out_pos, usize))
            out_pos += usize
        return out


class Bzip2Codec(Codec):
    kind = "bzip2"
    min_filler = 14

    def compress(self, data: bytes) -> bytes:
        import bz2
        return bz2.compress(data, 9 if self.level is None else max(1, min(self.level, 9)))

    def reader(self, raw):
        import bz2
        return bz2.BZ2File(raw, "rb")

    def filler(self, length: int) -> Optional[bytes]:
        if length % 14:
            return None
        import bz2
        return bz2.compress(b"") * (length // 14)


class _LazyCodecs(dict):
    """The codecs by kind; lz4's module is imported when it is first asked for."""

    def __missing__(self, kind: str):
        if kind == "lz4":
            from archfs.engine.lz4frames import Lz4Codec
            self[kind] = Lz4Codec
            return Lz4Codec
        raise KeyError(kind)


CODECS = _LazyCodecs(gzip=GzipCodec, zstd=ZstdCodec, xz=XzCodec, bzip2=Bzip2Codec)


def eoa_segment(codec: Codec, zeros: int) -> Tuple[bytes, int]:
    """A segment of at least ``zeros`` zero bytes that a filler can replace
    later: (segment, how many zero bytes it decodes to)."""
    sizes = list(range(zeros, zeros + 40 * 512, 512)) + list(range(1024, zeros, 512))
    for size in sizes:          # two zero blocks are enough; a record is usual
        data = codec.compress(bytes(size))
        if len(data) >= codec.min_filler and codec.filler(len(data)) is not None:
            return data, size
    return codec.compress(bytes(zeros)), zeros
