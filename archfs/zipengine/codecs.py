"""Decompressors with one interface, and the compressor archfs writes with.

Each decoder takes compressed input a piece at a time and gives at most
``max_out`` bytes back, keeping what it did not consume, so memory stays
bounded whatever the member's size or compression ratio. Only deflate can
be copied mid-stream (``zlib`` supports it), which is what makes seek
points possible; the others restart from the member's start on a backward
seek.
"""

import bz2
import lzma
import zlib
from typing import Optional

from archfs.errors import CorruptMemberError, UnsupportedFeature
from archfs.zipengine import format as fmt
from archfs.zipengine import inflater


class ZlibDecoder:
    """Raw deflate (zip method 8)."""

    copyable = True

    def __init__(self, inner=None):
        self._d = inner if inner is not None else inflater.raw_inflater()
        self._tail = b""

    def decode(self, data: bytes, max_out: int) -> bytes:
        if self._tail:
            data = self._tail + data if data else self._tail
        try:
            out = self._d.decompress(data, max_out)
        except inflater.errors as exc:
            raise CorruptMemberError("broken deflate stream: %s" % exc) from None
        self._tail = self._d.unconsumed_tail
        return out

    @property
    def needs_input(self) -> bool:
        return not self._tail

    @property
    def eof(self) -> bool:
        return self._d.eof

    def copy(self) -> "ZlibDecoder":
        twin = ZlibDecoder(self._d.copy())
        twin._tail = self._tail
        return twin


class _BufferedDecoder:
    """bz2 and lzma: the decompressor buffers unconsumed input itself."""

    copyable = False

    def __init__(self, inner, error_types):
        self._d = inner
        self._errors = error_types

    def decode(self, data: bytes, max_out: int) -> bytes:
        try:
            return self._d.decompress(data, max_out)
        except self._errors as exc:
            raise CorruptMemberError("broken compressed stream: %s" % exc) from None
        except EOFError:
            return b""

    @property
    def needs_input(self) -> bool:
        return self._d.needs_input

    @property
    def eof(self) -> bool:
        return self._d.eof


class LzmaDecoder:
    """Zip's LZMA (method 14): a 4-byte version/size header, the 5-byte
    LZMA1 properties, then a raw LZMA1 stream."""

    copyable = False

    def __init__(self):
        self._header = b""
        self._inner: Optional[_BufferedDecoder] = None

    def decode(self, data: bytes, max_out: int) -> bytes:
        if self._inner is None:
            self._header += data
            if len(self._header) < 4:
                return b""
            props_size = int.from_bytes(self._header[2:4], "little")
            if len(self._header) < 4 + props_size:
                return b""
            if props_size != 5:
                raise CorruptMemberError("LZMA properties of %d bytes (5 expected)" % props_size)
            props = self._header[4:9]
            rest = self._header[9:]
            self._header = b""
            self._inner = _BufferedDecoder(
                lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[_lzma1_filter(props)]),
                (lzma.LZMAError,))
            data = rest
        return self._inner.decode(data, max_out)

    @property
    def needs_input(self) -> bool:
        return self._inner is None or self._inner.needs_input

    @property
    def eof(self) -> bool:
        return self._inner is not None and self._inner.eof


def _lzma1_filter(props: bytes) -> dict:
    d = props[0]
    if d >= 9 * 5 * 5:
        raise CorruptMemberError("invalid LZMA properties")
    lc, d = d % 9, d // 9
    lp, pb = d % 5, d // 5
    return {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": lp, "pb": pb,
            "dict_size": int.from_bytes(props[1:5], "little")}


class StoredDecoder:
    """Stored data (method 0) read as a stream: needed when it is encrypted."""

    copyable = True

    def __init__(self):
        self._tail = b""
        self.eof = False

    def decode(self, data: bytes, max_out: int) -> bytes:
        data = self._tail + data if self._tail else data
        self._tail = data[max_out:]
        return data[:max_out]

    @property
    def needs_input(self) -> bool:
        return not self._tail

    def copy(self) -> "StoredDecoder":
        twin = StoredDecoder()
        twin._tail = self._tail
        return twin


def make_decoder(method: int):
    """A fresh decoder for a compression method."""
    if method == fmt.STORED:
        return StoredDecoder()
    if method == fmt.DEFLATED:
        return ZlibDecoder()
    if method == fmt.BZIP2:
        return _BufferedDecoder(bz2.BZ2Decompressor(), (OSError, ValueError))
    if method == fmt.LZMA:
        return LzmaDecoder()
    raise UnsupportedFeature("compression method %d (%s) is not supported"
                             % (method, fmt.METHOD_NAMES.get(method, "unknown")))


def check_method(method: int) -> None:
    """Raise UnsupportedFeature for a method archfs cannot read."""
    if method != fmt.STORED:
        make_decoder(method)


class Deflater:
    """Raw deflate at a given level, for members archfs writes."""

    def __init__(self, level: int):
        self._c = zlib.compressobj(level, zlib.DEFLATED, -15)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def finish(self) -> bytes:
        return self._c.flush()


def worth_compressing(sample: bytes, level: int) -> bool:
    """Whether deflate saves at least 3% on a sample (already-compressed data does not)."""
    if level <= 0 or not sample:
        return False
    return len(zlib.compress(sample, 1)) < len(sample) * 0.97
