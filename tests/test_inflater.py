"""The inflater choice: zlib-ng when installed (it is a dependency), zlib as
the fallback, and both give seek points that decode the same bytes."""

import importlib
import random
import sys
import zlib

import pytest

from archfs.zipengine import codecs, inflater


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@pytest.fixture
def zlib_only(monkeypatch):
    """The inflater module as it loads where zlib-ng cannot be imported."""
    monkeypatch.setitem(sys.modules, "zlib_ng", None)
    fallback = importlib.reload(inflater)
    yield fallback
    monkeypatch.delitem(sys.modules, "zlib_ng")
    importlib.reload(inflater)


def test_zlib_ng_is_the_inflater():
    assert inflater.NAME == "zlib-ng"
    assert inflater.crc32(b"archfs") == zlib.crc32(b"archfs")


def test_fallback_is_zlib(zlib_only):
    assert zlib_only.NAME == "zlib"
    d = zlib_only.raw_inflater()
    assert d.decompress(_raw_deflate(b"plain zlib")) == b"plain zlib"


@pytest.mark.parametrize("use_fallback", [False, True])
def test_copied_decoder_resumes_where_it_was(use_fallback, request):
    if use_fallback:
        request.getfixturevalue("zlib_only")
    rng = random.Random(7)
    data = b"".join(b"%d %s\n" % (i, bytes(rng.choices(b"abcdefgh ", k=60)))
                    for i in range(40_000))
    raw = _raw_deflate(data)
    decoder = codecs.make_decoder(8)
    out = decoder.decode(raw[:len(raw) // 3], 1 << 30)
    twin = decoder.copy()
    rest = raw[len(raw) // 3:]
    assert out + decoder.decode(rest, 1 << 30) == data
    assert out + twin.decode(rest, 1 << 30) == data
    broken = codecs.make_decoder(8)
    with pytest.raises(OSError):
        broken.decode(b"\xff" * 64, 1 << 20)


@pytest.mark.parametrize("use_fallback", [False, True])
def test_deflate_gives_raw_streams_any_inflater_reads(use_fallback, request):
    """Members archfs writes are deflated by the same library choice (zlib-ng
    is several times faster); zlib must read them back, whole and streamed."""
    if use_fallback:
        request.getfixturevalue("zlib_only")
    data = b"".join(b"line %d of a small text file\n" % i for i in range(3000))
    for level in (1, 6, 9):
        whole = codecs.compress_bytes(8, level, data)
        assert len(whole) < len(data) // 3
        assert zlib.decompress(whole, -15) == data
        encoder = codecs.make_encoder(8, level)
        streamed = b"".join(encoder.compress(data[i:i + 5000])
                            for i in range(0, len(data), 5000)) + encoder.finish()
        assert zlib.decompress(streamed, -15) == data
    assert codecs.worth_compressing(data, 6)
    assert not codecs.worth_compressing(bytes(random.Random(3).randbytes(4096)), 6)
