"""Cutting a bzip2 stream at a block boundary, without decoding what precedes it.

bzip2 blocks are independent and bit-aligned (bits are read from each
byte's high end). A stream ends with a 48-bit end-of-stream magic and the
stream's CRC, a fold of its blocks' CRCs (each in its block's header:
``crc = rotl(crc, 1) ^ block_crc``). So a stream is ended early at the start
of block B by writing that magic and the fold of the CRCs of the blocks
before B at B's bit offset, then padding to a byte. The blocks' offsets come
from the seek index (indexed_bzip2's); each is checked for the block magic,
their CRCs must fold to the stream's own end CRC (no block missed), and the
block at the cut is decoded alone and compared with what the index's decoder
reads at its output offset (the offsets are right).
"""

import bz2
import re
from typing import List, Tuple

from archfs.errors import CorruptArchiveError

BLOCK_MAGIC = 0x314159265359
EOS_MAGIC = 0x177245385090
MAX_BLOCK = 1 << 20          # compressed bits of a block are at most ~ its 900 kB input


def _bits_at(pread, bit: int, count: int) -> int:
    """``count`` bits of the file from bit offset ``bit`` (high bit first)."""
    start = bit // 8
    stop = (bit + count + 7) // 8
    data = pread(stop - start, start)
    if len(data) != stop - start:
        raise CorruptArchiveError("a bzip2 block lies past the end of the file")
    return _bits(data, bit - start * 8, count)


def _bits(data: bytes, bit: int, count: int) -> int:
    """``count`` bits of ``data`` from bit ``bit``."""
    stop = (bit + count + 7) // 8
    value = int.from_bytes(data[bit // 8:stop], "big")
    return (value >> (stop * 8 - bit - count)) & ((1 << count) - 1)


def _fold(crcs: List[int]) -> int:
    combined = 0
    for crc in crcs:
        combined = (((combined << 1) | (combined >> 31)) & 0xFFFFFFFF) ^ crc
    return combined


def is_block(pread, bit: int) -> bool:
    try:
        return _bits_at(pread, bit, 48) == BLOCK_MAGIC
    except CorruptArchiveError:
        return False


class Plan:
    """How to end a stream at a block: ``closing`` replaces the file from
    ``bit // 8``; ``block`` is that block's content, decoded alone."""

    def __init__(self, closing: bytes, block: bytes):
        self.closing, self.block = closing, block


def plan(pread, offsets: List[Tuple[int, int]], bit: int) -> Plan:
    """End the stream holding the block at ``bit`` there. ``offsets``: the
    index's (bit offset, output offset) entries (blocks and stream ends)."""
    stream, blocks, eos = None, [], None
    for b, _ in sorted(offsets):
        magic = _bits_at(pread, b, 48)
        if magic == EOS_MAGIC:
            if b > bit and stream is not None:
                eos = b
                break
            stream, blocks = None, []
            continue
        if magic != BLOCK_MAGIC:
            raise CorruptArchiveError("a bzip2 checkpoint is no block (bit %d)" % b)
        if stream is None:
            stream = b - 32
            if stream % 8 or not re.fullmatch(rb"BZh[1-9]", pread(4, stream // 8)):
                raise CorruptArchiveError("a bzip2 stream does not start with its header")
        blocks.append((b, _bits_at(pread, b + 48, 32)))
    if eos is None or bit not in [b for b, _ in blocks]:
        raise CorruptArchiveError("the cut is no block of a bzip2 stream the index ends")
    if _fold([crc for _, crc in blocks]) != _bits_at(pread, eos + 48, 32):
        raise CorruptArchiveError("the index misses blocks of the bzip2 stream")
    shift = bit % 8
    high = pread(1, bit // 8)[0] >> (8 - shift) if shift else 0
    value = (((high << 48) | EOS_MAGIC) << 32) | _fold([c for b, c in blocks if b < bit])
    closing = _pad(value, shift + 80)
    end = min([b for b, _ in blocks if b > bit] + [eos])
    if end - bit > 8 * MAX_BLOCK:
        raise CorruptArchiveError("a bzip2 block is bigger than bzip2 makes them")
    level = pread(4, stream // 8)[3:4]
    return Plan(closing, _block_alone(pread, level, bit, end))


def _pad(value: int, nbits: int) -> bytes:
    pad = -nbits % 8
    return (value << pad).to_bytes((nbits + pad) // 8, "big")


def _block_alone(pread, level: bytes, bit: int, end: int) -> bytes:
    """The block from bit ``bit`` to ``end``, decoded as a stream of its own."""
    count = end - bit
    crc = _bits_at(pread, bit + 48, 32)
    value = (((_bits_at(pread, bit, count) << 48) | EOS_MAGIC) << 32) | crc
    try:
        return bz2.decompress(b"BZh" + level + _pad(value, count + 80))
    except (OSError, ValueError) as exc:
        raise CorruptArchiveError("the bzip2 block at the cut does not decode (%s)" % exc) \
            from None
