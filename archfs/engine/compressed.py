"""Compressed streams read as if they were plain, with random access.

``open_stream`` recognizes the compression from the file's first bytes and
returns an object with ``pread(size, pos)`` over the *decompressed* bytes,
plus ``seek_state()``/``load_seek_state()`` to save and restore its seek
points with the member index (so a second mount decodes nothing up front).

The libraries were chosen by measurement (a 157 MB tar on 2 busy cores;
``docs`` of this module's README section has the numbers): rapidgzip for
gzip (index pass 440 MB/s, random 4 KiB read 1.5 ms with 1 MiB chunks, the
index exports in gztool format; indexed_gzip indexed at 140-216 MB/s and
took 9-30 ms per random read, but keeps memory bounded: it reads what
rapidgzip should not, see ``GzipStream``), indexed_bzip2 for bzip2 (parallel block
decoding; its block offsets are the seek points), python-xz for xz
(random access by xz block, from the xz index in the file itself),
indexed_zstd for zstd (random access by zstd frame, frame offsets saved).
A stream that has one big block or frame (xz and zstd by default) decodes
from its start for a backward seek: archives archfs writes are made of
small independent frames, so they never have that cost.

Every stream object is used under its own lock: the libraries' file
objects keep a position.
"""

import io
import json
import os
import threading
from typing import Optional

from archfs.engine.sharing import Shared

GZIP, BZIP2, XZ, ZSTD, LZ4 = "gzip", "bzip2", "xz", "zstd", "lz4"

_MAGIC = (
    (b"\x1f\x8b", GZIP),
    (b"BZh", BZIP2),
    (b"\xfd7zXZ\x00", XZ),
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"\x04\x22\x4d\x18", LZ4),
)

SUFFIXES = {GZIP: (".gz", ".tgz", ".taz"), BZIP2: (".bz2", ".tbz", ".tbz2", ".tb2"),
            XZ: (".xz", ".txz"), ZSTD: (".zst", ".tzst", ".zstd"), LZ4: (".lz4",)}
GZIP_CHUNK = 1 << 20          # rapidgzip chunk: a random read decodes about this much
GZIP_THREADS = 1
BOMB_RATIO = 50               # gzip this compressible is read with bounded memory


def detect(head: bytes) -> Optional[str]:
    """The compression whose magic starts ``head``, or None."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            if kind == BZIP2 and not (len(head) >= 4 and head[3:4] in b"123456789"):
                continue
            return kind
    if len(head) >= 8 and head[:4] in (b"\x50\x2a\x4d\x18", b"\x5f\x2a\x4d\x18"):
        return ZSTD if _skippable_then_zstd(head) else None
    return None


def _skippable_then_zstd(head: bytes) -> bool:
    return 0x184D2A50 <= int.from_bytes(head[:4], "little") <= 0x184D2A5F


class PlainStream(Shared):
    """An uncompressed archive: reads go straight to the file (which it holds)."""

    kind = None

    def __init__(self, file):
        self._file = file.retain()

    def pread(self, size: int, pos: int) -> bytes:
        return self._file.pread(size, pos)

    def compressed_position(self, pos: int) -> int:
        return pos

    def seek_state(self) -> Optional[bytes]:
        return None

    def load_seek_state(self, state: bytes) -> None:
        pass

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.release()


class _LibraryStream(Shared):
    """A library's seekable file object behind a lock."""

    kind = ""

    def __init__(self, path: str):
        self._path = path
        self._lock = threading.Lock()
        self._opened = None
        self._closed = False

    @property
    def _f(self):
        """The library's file, opened at first use: a mount from a saved index
        that only lists never loads the library (a big shared object: most of
        a second mount's start-up from a cold cache)."""
        f = self._opened
        if f is None:
            f = self._opened = self._open()
            self._after_open(f)
        return f

    @_f.setter
    def _f(self, value) -> None:
        self._opened = value

    def _open(self):
        raise NotImplementedError

    def _after_open(self, f) -> None:
        pass

    def pread(self, size: int, pos: int) -> bytes:
        with self._lock:
            if self._closed:
                raise ValueError("stream is closed")
            if self._f.tell() != pos:
                self._f.seek(pos)
            return self._f.read(size)

    def compressed_position(self, pos: int) -> int:
        if self._opened is None:
            return 0
        tell = getattr(self._opened, "tell_compressed", None)
        if tell is None:
            return 0
        with self._lock:
            try:
                return tell() // 8 if self.kind == BZIP2 else tell()
            except Exception:
                return 0

    def seek_state(self) -> Optional[bytes]:
        return None

    def load_seek_state(self, state: bytes) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._opened is not None:
                    self._opened.close()
                if not isinstance(self._path, str):    # a remote archive's file object
                    self._path.close()


class GzipStream(_LibraryStream):
    """gzip through rapidgzip, or indexed_gzip where rapidgzip would not do.

    rapidgzip decodes a whole chunk (1 MiB of compressed data) at once,
    which for data compressed 1000:1 means hundreds of MB; a file whose
    recorded size says it is that compressible, or whose data rapidgzip
    cannot decode (a damaged or cut stream, where the good part must still
    read), goes through indexed_gzip instead: zlib with saved windows,
    streaming, memory bounded, slower.
    """

    kind = GZIP

    def __init__(self, path):
        self._bounded = _gzip_ratio(path) > BOMB_RATIO
        self._pending_state: Optional[bytes] = None
        super().__init__(path)

    def _open(self):
        return self._open_backend()

    def _open_backend(self):
        if self._bounded:
            import indexed_gzip
            where = ({"filename": self._path} if isinstance(self._path, str)
                     else {"fileobj": self._path})
            return indexed_gzip.IndexedGzipFile(spacing=GZIP_CHUNK, readbuf_size=4 << 20,
                                                buffer_size=4 << 20, **where)
        import rapidgzip
        # one decoding thread: on 2 cores the second held twice the memory
        # (250 MB against 140 MB indexing 100,000 files) for no gain under load
        return rapidgzip.RapidgzipFile(self._path, parallelization=GZIP_THREADS,
                                       chunk_size=GZIP_CHUNK)

    def _pread_checked(self, size: int, pos: int) -> bytes:
        try:
            return super().pread(size, pos)
        except Exception as exc:
            if self._bounded or not library_error(exc):
                raise
        with self._lock:        # rapidgzip failed: the bounded decoder reads up to the damage
            self._f.close()
            self._bounded = True
            self._f = self._open_backend()
        return super().pread(size, pos)

    def seek_state(self) -> Optional[bytes]:
        if self._pending_state is not None:
            return self._pending_state
        with self._lock:
            out = io.BytesIO()      # the libraries write from the file's start
            if self._bounded:
                self._f.export_index(fileobj=out)
                return b"I" + out.getvalue()
            import rapidgzip          # gztool's format keeps the windows compressed
            self._f.export_index(out, rapidgzip.IndexFormat.GZTOOL)
            return b"R" + out.getvalue()

    def load_seek_state(self, state: bytes) -> None:
        """Kept until the first read: a mount that only lists never needs it."""
        self._pending_state = state

    def checkpoints(self):
        """[(bit offset, output offset)] of the deflate blocks the index starts
        at, sorted; None where the decoder does not tell (indexed_gzip)."""
        self._take_pending()
        with self._lock:
            if self._bounded:
                return None
            offsets = self._f.block_offsets()
        return sorted((int(b), int(o)) for b, o in offsets.items())

    def _take_pending(self) -> None:
        if self._pending_state is not None:
            with self._lock:        # one reader imports; the others wait for it
                state, self._pending_state = self._pending_state, None
                if state is not None:
                    self._import(state)

    def pread(self, size: int, pos: int) -> bytes:
        self._take_pending()
        return self._pread_checked(size, pos)

    def _import(self, state: bytes) -> None:
        """Seek points saved by ``seek_state``; called under ``self._lock``."""
        bounded = state[:1] == b"I"
        if bounded != self._bounded:
            if self._opened is not None:
                self._opened.close()
                self._opened = None
            self._bounded = bounded
        if bounded:
            self._f.import_index(fileobj=io.BytesIO(state[1:]))
        else:
            self._f.import_index(io.BytesIO(state[1:]))


def _gzip_ratio(path) -> float:
    """Decompressed to compressed size, as the last member's trailer says
    (a hint only: it counts modulo 4 GiB and one member). ``path`` may be a
    file object (a remote archive)."""
    if not isinstance(path, str):
        size = path.seek(0, 2)
        if size < 18:
            return 0.0
        path.seek(size - 4)
        isize = int.from_bytes(path.read(4), "little")
        path.seek(0)
        return isize / size
    size = os.path.getsize(path)
    if size < 18:
        return 0.0
    with open(path, "rb") as f:
        f.seek(size - 4)
        isize = int.from_bytes(f.read(4), "little")
    return isize / size


class _OffsetsStream(_LibraryStream):
    """Libraries whose seek points are a {compressed offset: offset} map."""

    _offsets: Optional[dict] = None     # loaded, given to the library when it opens

    def seek_state(self) -> Optional[bytes]:
        with self._lock:
            if self._opened is None and self._offsets is not None:
                offsets = self._offsets
            else:
                offsets = self._f.block_offsets()
        return json.dumps(sorted(offsets.items())).encode()

    def load_seek_state(self, state: bytes) -> None:
        offsets = {int(a): int(b) for a, b in json.loads(state)}
        with self._lock:
            if self._opened is None:
                self._offsets = offsets
            else:
                self._opened.set_block_offsets(offsets)

    def _after_open(self, f) -> None:
        if self._offsets is not None:
            f.set_block_offsets(self._offsets)

    def checkpoints(self):
        """[(compressed offset, output offset)] sorted (bits for bzip2, bytes for zstd)."""
        with self._lock:
            if self._opened is None and self._offsets is not None:
                offsets = self._offsets
            else:
                offsets = self._f.block_offsets()
        return sorted((int(a), int(b)) for a, b in offsets.items())


class Bzip2Stream(_OffsetsStream):
    kind = BZIP2

    def _open(self):
        import indexed_bzip2
        return indexed_bzip2.IndexedBzip2File(self._path,
                                              parallelization=min(2, os.cpu_count() or 1))


class ZstdStream(_OffsetsStream):
    kind = ZSTD

    def _open(self):
        import indexed_zstd
        return indexed_zstd.IndexedZstdFile(self._path)


class ForwardZstdStream(_LibraryStream):
    """zstd without a library that reads file objects (a remote archive whose
    frames do not record their sizes): decoded forward, from the start again
    for a backward seek."""

    kind = ZSTD

    def _open(self):
        return _Forward(self._path)


class _Forward:
    def __init__(self, raw):
        self._raw = raw
        self._restart()

    def _restart(self):
        import zstandard
        self._raw.seek(0)
        self._reader = zstandard.ZstdDecompressor().stream_reader(self._raw,
                                                                  read_across_frames=True)
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int) -> None:
        if pos < self._pos:
            self._restart()
        while self._pos < pos:
            skipped = self._reader.read(min(1 << 20, pos - self._pos))
            if not skipped:
                break
            self._pos += len(skipped)

    def read(self, size: int) -> bytes:
        data = self._reader.read(size)
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._reader.close()


class Lz4Stream(_LibraryStream):
    """lz4 (python-lz4), decoded forward across frames, from the start again
    for a backward seek: the lz4 tool writes one frame. Archives archfs
    wrote are read by segment instead (``engine/segments``)."""

    kind = LZ4

    def _open(self):
        raw = open(self._path, "rb") if isinstance(self._path, str) else self._path
        return _ForwardLz4(raw, owns=isinstance(self._path, str))


class _ForwardLz4(_Forward):
    def __init__(self, raw, owns: bool):
        self._owns = owns
        super().__init__(raw)

    def _restart(self):
        from archfs.engine.lz4frames import Lz4Reader
        self._raw.seek(0)
        self._reader = Lz4Reader(self._raw)
        self._pos = 0

    def close(self) -> None:
        if self._owns:
            self._raw.close()


class XzStream(_LibraryStream):
    kind = XZ

    def _open(self):
        import xz
        return xz.open(self._path, "rb")


_CLASSES = {GZIP: GzipStream, BZIP2: Bzip2Stream, XZ: XzStream, ZSTD: ZstdStream,
            LZ4: Lz4Stream}


def open_stream(file, path: str, kind: Optional[str]):
    """A ``pread``-able stream over the archive file's (decompressed) content.
    A remote archive (``file`` not local) is handed to the library as a file
    object reading through its transport."""
    if kind is None:
        return PlainStream(file)
    if getattr(file, "is_local", True):
        return _CLASSES[kind](path)
    from archfs.engine.fileaccess import Reader
    cls = ForwardZstdStream if kind == ZSTD else _CLASSES[kind]
    return cls(Reader(file))


def library_error(exc: BaseException) -> bool:
    """Whether an exception from a decompression library means damaged data."""
    if isinstance(exc, (EOFError, ValueError, RuntimeError)):
        return True
    name = type(exc).__name__
    return name in ("LZMAError", "XZError", "ZstdError", "BadGzipFile", "LZ4FrameError")
