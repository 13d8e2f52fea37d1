"""Cutting a gzip member at a deflate block boundary, without decoding what precedes it.

A foreign .tar.gz is one gzip member; to append to it cheaply, archfs ends that
member early, at a block boundary B (a seek checkpoint of the index) at or
before the tar's end-of-archive blocks, and writes what followed as new members:

- the bits before B are kept as they are: whole blocks, none of them final;
- at B an empty *final* stored block (3 bits, padding, LEN 0, NLEN 0xFFFF)
  ends the deflate stream;
- the member's trailer then needs the CRC-32 and size of the data before the
  cut. The size is the old size less what follows the cut; the CRC comes from
  the old trailer's CRC and the CRC of the data that follows the cut (CRC-32
  is linear: crc(A+B) = crc(A) * x^(8|B|) + crc(B) modulo the polynomial, and
  x is invertible there), so only the tail is decoded.

The tail after B is decoded here with zlib from the checkpoint: the bits are
shifted to a byte boundary and the 32 KiB before the cut given as the
dictionary. The caller compares that with what the index's decoder reads at
the same offsets, so a wrong checkpoint (a bit offset that is no block
boundary, a wrong output offset) is refused instead of written.
"""

import struct
import zlib
from typing import List, Optional, Tuple

from archfs.errors import CorruptArchiveError

_POLY = 0xEDB88320          # CRC-32, bit-reflected as zlib computes it
WINDOW = 32768


def _multmodp(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial (reflected: x^0 is bit 31)."""
    m = 1 << 31
    p = 0
    while a:
        if a & m:
            p ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _x8n(n: int) -> int:
    """x^(8n) modulo the polynomial."""
    p = 1 << 31
    power = 1 << 23             # x^8 (x^k is bit 31 - k)
    while n:
        if n & 1:
            p = _multmodp(power, p)
        power = _multmodp(power, power)
        n >>= 1
    return p


def _solve(a: int, target: int) -> int:
    """The v with a * v == target (multiplication by a is linear over GF(2)
    and invertible, a being a power of x): Gaussian elimination on 32 bits."""
    rows = []                   # (image, preimage) pairs, reduced
    for i in range(32):
        image, pre = _multmodp(a, 1 << i), 1 << i
        for r_image, r_pre in rows:
            if image ^ r_image < image:
                image ^= r_image
                pre ^= r_pre
        if image:
            rows.append((image, pre))
            rows.sort(reverse=True)
    value = 0
    for r_image, r_pre in rows:
        if target ^ r_image < target:
            target ^= r_image
            value ^= r_pre
    if target:
        raise ValueError("CRC system is singular")
    return value


def crc32_unappend(crc_ab: int, crc_b: int, len_b: int) -> int:
    """crc32(A) from crc32(A + B), crc32(B) and len(B)."""
    return _solve(_x8n(len_b), crc_ab ^ crc_b)


def crc32_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    return _multmodp(_x8n(len_b), crc_a) ^ crc_b


def closing_bytes(first_byte: int, shift: int) -> bytes:
    """The bytes from the cut's byte on: the ``shift`` low bits of the byte
    that holds the boundary kept, then an empty final stored block."""
    byte = (first_byte & ((1 << shift) - 1)) | (1 << shift)   # BFINAL=1, BTYPE=00
    head = bytes([byte]) + (b"\0" if shift + 3 > 8 else b"")
    return head + b"\x00\x00\xff\xff"


class Tail:
    """What follows a cut: the decoded rest of its member and where that member ends."""

    def __init__(self, data: bytes, member_end: int, crc: int, isize: int):
        self.data, self.member_end, self.crc, self.isize = data, member_end, crc, isize


def inflate_tail(raw: bytes, base: int, bit: int, window: bytes, file_size: int,
                 out_start: Optional[int] = None, max_out: int = 64 << 20) -> Tail:
    """Decode the deflate data from bit offset ``bit`` of the file to the end
    of its member. ``raw``: the file's bytes from ``base`` (at or before
    ``bit // 8``) to its end. ``out_start``: the member's output offset of
    the cut, when known (the first member of a file: the cut's output offset),
    to pick the trailer where the end's byte is ambiguous."""
    byte, shift = divmod(bit, 8)
    rel = byte - base
    if rel < 0 or rel > len(raw):
        raise CorruptArchiveError("a gzip checkpoint lies outside the data read for it")
    view = raw[rel:]
    if shift:
        view = (int.from_bytes(view, "little") >> shift).to_bytes(len(view), "little")
    d = zlib.decompressobj(-15, zdict=window[-WINDOW:]) if window else zlib.decompressobj(-15)
    try:
        data = d.decompress(view, max_out)
    except zlib.error as exc:
        raise CorruptArchiveError("the gzip data does not decode from its checkpoint (%s)"
                                  % exc) from None
    if not d.eof:
        raise CorruptArchiveError("the gzip stream does not end within %d bytes after its "
                                  "checkpoint" % max_out)
    consumed = len(view) - len(d.unused_data)
    # the stream's last bit is in shifted byte consumed-1: the trailer starts at
    # byte + consumed, or one later when the last bits spilled past it
    candidates = [byte + consumed] + ([byte + consumed + 1] if shift else [])
    found = []
    for at in candidates:
        trailer = raw[at - base:at - base + 8]
        if len(trailer) != 8:
            continue
        after = raw[at - base + 8:at - base + 10]
        if at + 8 != file_size and after != b"\x1f\x8b":
            continue
        crc, isize = struct.unpack("<II", trailer)
        if out_start is not None and isize != (out_start + len(data)) & 0xFFFFFFFF:
            continue
        found.append((at, crc, isize))
    if len(found) != 1:
        raise CorruptArchiveError("cannot tell where the gzip member ends after its checkpoint")
    at, crc, isize = found[0]
    return Tail(data, at + 8, crc, isize)


def closed_member_end(raw_byte: int, bit: int, tail: Tail) -> bytes:
    """The bytes that replace the file from ``bit // 8`` to the member's end:
    the final empty block and a trailer for the data before the cut."""
    prefix_crc = crc32_unappend(tail.crc, zlib.crc32(tail.data), len(tail.data))
    prefix_size = (tail.isize - len(tail.data)) & 0xFFFFFFFF
    return closing_bytes(raw_byte, bit % 8) + struct.pack("<II", prefix_crc, prefix_size)


# -- rapidgzip's index (gztool's format): kept up to a cut -------------------------

_GZTOOL_MAGIC = b"\0" * 8 + b"gzipindx"


def gztool_points(index: bytes) -> Optional[List[Tuple[int, int, int, int]]]:
    """[(output offset, input byte, bits, start of the point's record)] or None."""
    if index[:16] != _GZTOOL_MAGIC or len(index) < 32:
        return None
    have = struct.unpack_from(">Q", index, 16)[0]
    at = 32
    points = []
    for _ in range(have):
        if at + 24 > len(index):
            return None
        out, inp, bits, wsize = struct.unpack_from(">QQII", index, at)
        points.append((out, inp, bits, at))
        at += 24 + wsize
    points.append((-1, -1, -1, at))
    return points


def gztool_cut(index: bytes, upto: int) -> Optional[bytes]:
    """The index with its points at output offsets up to ``upto`` (the rest
    describe bytes a cut replaced); None if it is not in gztool's format."""
    points = gztool_points(index)
    if points is None:
        return None
    keep = [p for p in points[:-1] if p[0] <= upto]
    if not keep:
        return None
    stop = points[len(keep)][3]
    return (index[:16] + struct.pack(">QQ", len(keep), len(keep)) + index[32:stop]
            + struct.pack(">Q", upto))
