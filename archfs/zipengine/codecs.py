"""Decoders of every compression method archfs reads, with one interface
(the encoders of the methods it writes are in ``encoders``).

A decoder takes compressed input a piece at a time (``decode(data,
max_out)``) and gives at most ``max_out`` bytes back, keeping what it did not
consume, so memory stays bounded whatever the member's size or compression
ratio. ``needs_input`` says it wants more input, ``eof`` that its data ended.

Random access (``snapshot``): a reader keeps seek points, each a decoder
that can go on from some output position. What each method gives:

- stored: any offset, at no cost (read in place, see ``memberreader.py``);
- deflate: a copy of the inflater state wherever all input is consumed,
  so a seek point every ``SEEK_SPACING`` bytes of output;
- zstd, xz, bzip2: a fresh decoder at each frame (zstd), stream (xz,
  bzip2) boundary; inside one frame a seek decodes from its start. Most
  tools write one frame per member, so in practice: from the start;
- deflate64, LZMA, implode, shrink, PPMd: no copyable state: a backward
  seek decodes again from the member's start (a forward one goes on).

Memory: deflate and deflate64 hold a window of at most 64 KiB; zstd frames
asking for a window over ``ZSTD_WINDOW_LOG_MAX`` are refused (zstd's own
default limit); LZMA and xz dictionaries are capped at the member's size
(a dictionary larger than the output is never used), and xz decoding is
limited to ``XZ_MEMLIMIT``; the pure-Python legacy decoders hold 8 KiB
(implode) or a bounded string table (shrink).

``make_decoder`` is the one place decoders are constructed, so another
inflater (e.g. a faster deflate) can be swapped in there alone.
"""

import bz2
import lzma
from typing import Callable, Optional

from archfs.errors import CorruptMemberError, UnsupportedFeature
from archfs.zipengine import format as fmt
from archfs.zipengine import inflater

_LIBRARIES: dict = {}


def library(name: str):
    """The zstd, inflate64 or pyppmd module (None when missing), imported at
    first use: inflate64 and pyppmd read their own version through
    importlib.metadata when imported, which a mount of a zip that holds no
    Deflate64 or PPMd member should not pay for at start-up."""
    if name not in _LIBRARIES:
        module = None
        try:
            if name == "zstd":
                try:                               # Python 3.14+
                    from compression import zstd as module  # type: ignore[import-not-found]
                except ImportError:                # pragma: no cover - by Python version
                    from backports import zstd as module  # type: ignore[no-redef]
            elif name == "inflate64":
                import inflate64 as module  # type: ignore[no-redef]
            else:
                import pyppmd as module  # type: ignore[no-redef]
        except ImportError:                        # pragma: no cover - dependencies
            module = None
        _LIBRARIES[name] = module
    return _LIBRARIES[name]


ZSTD_WINDOW_LOG_MAX = 27               # 128 MiB, zstd's default decoder limit
XZ_MEMLIMIT = 512 << 20
DEFLATE64_PIECE = 512                  # input per call: at most ~15 MB of output (ratio ~29000)


class ZlibDecoder:
    """Raw deflate (zip method 8)."""

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

    def snapshot(self):
        if self._tail:
            return None
        return ZlibDecoder(self._d.copy()), 0

    def copy(self) -> "ZlibDecoder":
        """An independent twin, unconsumed input included (``snapshot`` is
        what seek points use; this is for callers that want a copy anywhere)."""
        twin = ZlibDecoder(self._d.copy())
        twin._tail = self._tail
        return twin


class StoredDecoder:
    """Stored data (method 0) read as a stream: needed when it is encrypted."""

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

    def snapshot(self):
        return (StoredDecoder(), 0) if not self._tail else None


class _BufferedDecoder:
    """A bz2/lzma/zstd-style decompressor: it buffers unconsumed input itself
    and takes ``max_length``."""

    def __init__(self, inner, error_types, what: str):
        self._d = inner
        self._errors = error_types
        self._what = what

    def decode(self, data: bytes, max_out: int) -> bytes:
        try:
            return self._d.decompress(data, max_out)
        except self._errors as exc:
            raise CorruptMemberError("broken %s stream: %s" % (self._what, exc)) from None
        except EOFError:
            return b""

    @property
    def needs_input(self) -> bool:
        return self._d.needs_input

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def snapshot(self):
        return None


class FrameDecoder:
    """Independent frames one after another (zstd frames, xz and bzip2
    streams): a new inner decoder per frame, and a seek point at each
    boundary. ``eof`` means the input so far ends exactly at a frame end;
    the reader stops there only when the member's data is used up."""

    frames = True

    def __init__(self, factory: Callable[[], _BufferedDecoder], padding: bool = False):
        self._factory = factory
        self._padding = padding        # xz: zero bytes may pad between streams
        self._inner: Optional[_BufferedDecoder] = None
        self._pending = b""
        self._frames = 0

    def decode(self, data: bytes, max_out: int) -> bytes:
        if data:
            self._pending = self._pending + data if self._pending else data
        while True:
            inner = self._inner
            if inner is not None and inner.eof:
                rest = inner.unused_data
                self._pending = rest + self._pending if rest else self._pending
                self._inner = inner = None
                self._frames += 1
            if inner is None:
                if self._padding and self._pending[:1] == b"\x00":
                    self._pending = self._pending.lstrip(b"\x00")
                if not self._pending:
                    return b""
                self._inner = inner = self._factory()
            data, self._pending = self._pending, b""
            out = inner.decode(data, max_out)
            if out or not inner.eof:
                return out

    @property
    def needs_input(self) -> bool:
        inner = self._inner
        if self._pending:
            return False
        if inner is None:
            return True
        if inner.eof:
            return not inner.unused_data
        return inner.needs_input

    @property
    def eof(self) -> bool:
        inner = self._inner
        if self._pending:
            return False
        if inner is None:
            return self._frames > 0
        return inner.eof and not inner.unused_data

    def snapshot(self):
        inner = self._inner
        if inner is None or inner.eof:
            lag = len(self._pending) + (len(inner.unused_data) if inner is not None else 0)
            twin = FrameDecoder(self._factory, self._padding)
            twin._frames = self._frames + (1 if inner is not None else 0)
            return twin, lag
        return None


class LzmaDecoder:
    """Zip's LZMA (method 14): a 4-byte version/size header, the 5-byte
    LZMA1 properties, then a raw LZMA1 stream. Without an end marker (flag
    bit 1 clear) the stream stops once ``usize`` bytes came out: its last
    bytes would decode into more, which is not data."""

    def __init__(self, usize: int, end_marker: bool = True):
        self._usize = usize
        self._sized = not end_marker and usize >= 0
        self._out = 0
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
            try:
                inner = lzma.LZMADecompressor(lzma.FORMAT_RAW,
                                              filters=[lzma1_filter(props, self._usize)])
            except (lzma.LZMAError, ValueError) as exc:
                raise CorruptMemberError("invalid LZMA properties: %s" % exc) from None
            self._inner = _BufferedDecoder(inner, (lzma.LZMAError,), "LZMA")
            data = rest
        if self._sized:
            max_out = min(max_out, self._usize - self._out)
            if max_out <= 0:
                return b""
        out = self._inner.decode(data, max_out)
        self._out += len(out)
        return out

    @property
    def needs_input(self) -> bool:
        return self._inner is None or self._inner.needs_input

    @property
    def eof(self) -> bool:
        inner = self._inner
        if inner is None:
            return False
        if self._sized:
            return self._out >= self._usize
        return inner.eof or (self._out >= self._usize and inner.needs_input)

    def snapshot(self):
        return None


def lzma1_filter(props: bytes, usize: int = -1) -> dict:
    """The LZMA1 filter of 5 property bytes; the dictionary is capped at the
    member's size (it is never used past the output), so a forged 4 GiB
    dictionary costs nothing."""
    d = props[0]
    if d >= 9 * 5 * 5:
        raise CorruptMemberError("invalid LZMA properties")
    lc, d = d % 9, d // 9
    lp, pb = d % 5, d // 5
    dict_size = int.from_bytes(props[1:5], "little")
    if usize >= 0:
        dict_size = min(dict_size, max(usize, 4096))
    return {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": lp, "pb": pb,
            "dict_size": max(dict_size, 4096)}


class Deflate64Decoder:
    """Deflate64 (method 9) through ``inflate64``. Its ``inflate`` has no
    output limit, so input goes in pieces, smaller while the ratio is high
    (down to 16 bytes, at most ~0.5 MB of output at Deflate64's worst
    ratio of ~29000), and output beyond ``max_out`` is kept for the next call."""

    def __init__(self):
        self._d = library("inflate64").Inflater()
        self._input = b""
        self._at = 0
        self._output = b""
        self._out_at = 0
        self._piece = 64                   # grows while the ratio stays low

    def decode(self, data: bytes, max_out: int) -> bytes:
        if data:
            self._input = self._input[self._at:] + data if self._at < len(self._input) else data
            self._at = 0
        if self._out_at < len(self._output):
            end = self._out_at + max_out
            out = self._output[self._out_at:end]
            self._out_at = end
            return out
        parts = []
        size = 0
        while size < max_out and self._at < len(self._input) and not self._d.eof:
            piece = self._input[self._at:self._at + self._piece]
            self._at += len(piece)
            try:
                got = self._d.inflate(piece)
            except ValueError as exc:
                raise CorruptMemberError("broken deflate64 stream: %s" % exc) from None
            if len(got) > 2 * max_out and self._piece > 16:
                self._piece //= 2
            elif len(got) < max_out // 8 and self._piece < DEFLATE64_PIECE:
                self._piece *= 2
            parts.append(got)
            size += len(got)
        out = b"".join(parts) if len(parts) != 1 else parts[0]
        if len(out) > max_out:
            self._output, self._out_at = out, max_out
            return out[:max_out]
        return out

    @property
    def needs_input(self) -> bool:
        return self._out_at >= len(self._output) and (self._at >= len(self._input) or self._d.eof)

    @property
    def eof(self) -> bool:
        return self._d.eof and self._out_at >= len(self._output)

    def snapshot(self):
        return None


class PpmdDecoder:
    """PPMd variant I rev 1 (method 98) through ``pyppmd``: a 2-byte header
    (order, memory, restore method), then the model's stream; it ends at
    ``usize`` bytes."""

    def __init__(self, usize: int):
        self._usize = usize
        self._out = 0
        self._header = b""
        self._d = None

    def decode(self, data: bytes, max_out: int) -> bytes:
        if self._d is None:
            self._header += data
            if len(self._header) < 2:
                return b""
            word = int.from_bytes(self._header[:2], "little")
            order, mem_mb, restore = (word & 0xF) + 1, ((word >> 4) & 0xFF) + 1, word >> 12
            if order < 2 or restore > 2:
                raise CorruptMemberError("invalid PPMd parameters")
            data, self._header = self._header[2:], b""
            try:
                self._d = library("pyppmd").Ppmd8Decoder(order, mem_mb << 20,
                                                          restore_method=restore)
            except (ValueError, MemoryError) as exc:
                raise CorruptMemberError("invalid PPMd parameters: %s" % exc) from None
        want = min(max_out, self._usize - self._out)
        if want <= 0:
            return b""
        try:
            out = self._d.decode(data, want)
        except Exception as exc:   # pyppmd raises plain exceptions on bad data
            raise CorruptMemberError("broken PPMd stream: %s" % exc) from None
        self._out += len(out)
        return out

    @property
    def needs_input(self) -> bool:
        return self._d is None or (self._d.needs_input and self._out < self._usize)

    @property
    def eof(self) -> bool:
        return self._out >= self._usize

    def snapshot(self):
        return None


def _zstd_frame() -> _BufferedDecoder:
    zstd = library("zstd")
    options = {zstd.DecompressionParameter.window_log_max: ZSTD_WINDOW_LOG_MAX}
    return _BufferedDecoder(zstd.ZstdDecompressor(options=options), (zstd.ZstdError,), "zstd")


def _xz_stream() -> _BufferedDecoder:
    return _BufferedDecoder(lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT),
                            (lzma.LZMAError,), "xz")


def _bzip2_stream() -> _BufferedDecoder:
    return _BufferedDecoder(bz2.BZ2Decompressor(), (OSError, ValueError), "bzip2")


def library_missing(method: int, package: str):
    return UnsupportedFeature("compression method %d (%s) needs the Python package %s"
                              % (method, fmt.METHOD_NAMES.get(method, "unknown"), package))


def make_decoder(method: int, flags: int = 0, usize: int = -1):
    """A fresh decoder for a compression method (``flags`` and ``usize``
    matter to the methods whose streams do not say where they end)."""
    if method == fmt.STORED:
        return StoredDecoder()
    if method == fmt.DEFLATED:
        return ZlibDecoder()
    if method == fmt.BZIP2:
        return FrameDecoder(_bzip2_stream)
    if method == fmt.LZMA:
        return LzmaDecoder(usize, bool(flags & 0x0002))
    if method == fmt.ZSTD or method == fmt.ZSTD_OLD:
        if library("zstd") is None:
            raise library_missing(method, "backports.zstd")
        return FrameDecoder(_zstd_frame)
    if method == fmt.XZ:
        return FrameDecoder(_xz_stream, padding=True)
    if method == fmt.DEFLATE64:
        if library("inflate64") is None:
            raise library_missing(method, "inflate64")
        return Deflate64Decoder()
    if method == fmt.PPMD:
        if library("pyppmd") is None:
            raise library_missing(method, "pyppmd")
        return PpmdDecoder(usize)
    if method in (fmt.IMPLODED, fmt.SHRUNK):
        from archfs.zipengine import legacy
        if method == fmt.IMPLODED:
            return legacy.ImplodeDecoder(flags, usize)
        return legacy.ShrinkDecoder(usize)
    raise UnsupportedFeature("compression method %d (%s) is not supported"
                             % (method, fmt.METHOD_NAMES.get(method, "unknown")))


def check_method(method: int) -> None:
    """Raise UnsupportedFeature for a method archfs cannot read."""
    if method != fmt.STORED and method != fmt.DEFLATED:    # those two always are
        make_decoder(method, 0, 0)   # builds nothing costly: inner decoders start lazily


_MOVED = ("WRITE_METHODS", "LZMA_WRITE_DICT", "Deflater", "lzma_zip_header", "make_encoder",
          "method_flags", "compress_bytes", "worth_compressing")


def __getattr__(name: str):
    """The encoders' names from their old home, for callers that import them
    here; imported on first use, as a reader needs none of them."""
    if name in _MOVED:
        from archfs.zipengine import encoders
        return getattr(encoders, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
