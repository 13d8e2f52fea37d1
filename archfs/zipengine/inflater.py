"""Which library inflates (and deflates) data: the fastest one that can copy its state.

Seek points are copies of the decoder taken mid-stream, so the inflater must
support ``copy()``. Measured on this project's 1 GiB text member (CPU time,
one core): zlib 1.2.13 ~350 MB/s, zlib-ng ~750 MB/s, ISA-L (``isal``)
~900 MB/s; ISA-L's Python binding cannot copy a decoder, zlib-ng's can, so
zlib-ng is used when installed and zlib otherwise. zlib-ng's CRC-32 is also
several times faster (~25 GB/s against ~3.5 GB/s), and every byte served is
checked with it. Both produce exactly what zlib produces.

Everything that inflates, deflates or checks a CRC goes through this module,
so the choice is made in one place. zlib-ng also deflates ~2.8x faster than
zlib 1.2.13 at level 6 (measured on the bench's small text files: 54 MB/s
against 19 MB/s, output 1% smaller), which is most of the cost of copying
small files into an archive.
"""

import zlib

try:
    from zlib_ng import zlib_ng as _impl
    NAME = "zlib-ng"
except ImportError:  # pragma: no cover - the fallback where no wheel installs
    _impl = zlib
    NAME = "zlib"

# What a broken stream raises (zlib-ng has its own class; both are caught).
errors = (zlib.error, _impl.error)
crc32 = _impl.crc32


def raw_inflater():
    """A decompressor of raw deflate (zip method 8), copyable mid-stream."""
    return _impl.decompressobj(-15)


def deflate_raw(data: bytes, level: int) -> bytes:
    """``data`` as one raw deflate stream (zip method 8)."""
    return _impl.compress(data, level, wbits=-15)


def raw_deflater(level: int):
    """A streaming raw deflate compressor."""
    return _impl.compressobj(level, _impl.DEFLATED, -15)
