"""Encoders of the compression methods archfs writes, with one interface
(``compress``, ``finish``), and the choice of whether compressing pays.
Apart from the decoders (``codecs``): a read-only mount needs none of this.
"""

import bz2
import lzma

from archfs.errors import UnsupportedFeature
from archfs.zipengine import codecs
from archfs.zipengine import format as fmt
from archfs.zipengine import inflater

# -o compression=NAME -> zip method
WRITE_METHODS = {"store": fmt.STORED, "deflate": fmt.DEFLATED, "bzip2": fmt.BZIP2,
                 "lzma": fmt.LZMA, "zstd": fmt.ZSTD, "xz": fmt.XZ}
LZMA_WRITE_DICT = 1 << 23             # 8 MiB, as xz -6 and 7-Zip's default


class Deflater:
    """Raw deflate at a given level, for members archfs writes."""

    def __init__(self, level: int):
        self._c = inflater.raw_deflater(level)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def finish(self) -> bytes:
        return self._c.flush()


class _Wrapped:
    """A compressor with ``compress``/``flush``, and bytes to put first."""

    def __init__(self, inner, head: bytes = b""):
        self._c = inner
        self._head = head

    def compress(self, data: bytes) -> bytes:
        out = self._c.compress(data)
        if self._head:
            out, self._head = self._head + out, b""
        return out

    def finish(self) -> bytes:
        out = self._c.flush()
        if self._head:
            out, self._head = self._head + out, b""
        return out


def lzma_zip_header(dict_size: int = LZMA_WRITE_DICT, lc: int = 3, lp: int = 0,
                    pb: int = 2) -> bytes:
    """The 9 bytes zip puts before a raw LZMA1 stream: the LZMA SDK version
    that wrote it (9.20, as 7-Zip records), the properties size, the properties."""
    props = bytes(((pb * 5 + lp) * 9 + lc,)) + dict_size.to_bytes(4, "little")
    return bytes((9, 20)) + len(props).to_bytes(2, "little") + props


def make_encoder(method: int, level: int):
    """A compressor for ``method`` at ``level`` (1-9, for zstd too)."""
    level = max(1, min(9, level))
    if method == fmt.DEFLATED:
        return Deflater(level)
    if method == fmt.BZIP2:
        return _Wrapped(bz2.BZ2Compressor(level))
    if method == fmt.LZMA:
        # liblzma's raw LZMA1 encoder ends the stream with an end marker
        # (flag bit 1 says so in the headers, see ``method_flags``)
        filters = [{"id": lzma.FILTER_LZMA1, "preset": level, "dict_size": LZMA_WRITE_DICT,
                    "lc": 3, "lp": 0, "pb": 2}]
        return _Wrapped(lzma.LZMACompressor(lzma.FORMAT_RAW, filters=filters), lzma_zip_header())
    if method == fmt.XZ:
        return _Wrapped(lzma.LZMACompressor(lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=level))
    if method == fmt.ZSTD:
        if codecs.library("zstd") is None:
            raise codecs.library_missing(method, "backports.zstd")
        return _Wrapped(_ZstdWriter(codecs.library("zstd").ZstdCompressor(level=level)))
    raise UnsupportedFeature("archfs does not write compression method %d" % method)


class _ZstdWriter:
    def __init__(self, inner):
        self._c = inner

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush(codecs.library("zstd").ZstdCompressor.FLUSH_FRAME)


def method_flags(method: int) -> int:
    """General-purpose flag bits a method's members carry (LZMA: end marker used)."""
    return 0x0002 if method == fmt.LZMA else 0


def compress_bytes(method: int, level: int, data: bytes) -> bytes:
    """``data`` compressed whole with ``method``."""
    if method == fmt.DEFLATED:
        return inflater.deflate_raw(data, level)
    encoder = make_encoder(method, level)
    return encoder.compress(data) + encoder.finish()


def worth_compressing(sample: bytes, level: int) -> bool:
    """Whether deflate saves at least 3% on a sample (already-compressed data does not)."""
    if level <= 0 or not sample:
        return False
    return len(inflater.deflate_raw(sample, 1)) < len(sample) * 0.97
