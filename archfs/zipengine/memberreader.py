"""Reading one member: stored bytes straight from the archive, compressed
ones decoded as a stream with seek points, every byte checked before it is
trusted.

- Stored members are read with ``pread`` at their offset: random access
  costs nothing.
- Compressed members are decoded forward from the nearest seek point. A
  member read in order is decoded ahead on another thread (``prefetch.py``).
  For
  deflate a seek point is a copy of the decoder state taken every
  ``SEEK_SPACING`` bytes of output while decoding, shared by all readers of
  the member, so once a member has been read through, a random read decodes
  at most ``SEEK_SPACING`` bytes. A window of recent output serves reads
  that arrive slightly out of order (the kernel's readahead does that).
- Verification: members up to ``SMALL_MEMBER`` are decoded and checked at
  open, so damage is reported before any byte is served. A larger member is
  checked when a read reaches its end: that read fails with EIO if the CRC
  or size does not match, and every later open of it fails at once. An AES
  member's authentication code is checked over all its data at open,
  before anything else (see ``aes.py``).
- Seek points are whatever the method's decoder can give (``codecs.py``
  says what each method gives): a copy of the deflate state, or a fresh
  decoder at a frame boundary of zstd, xz or bzip2. Methods without either
  decode again from the start on a backward seek.

Memory stays bounded: the window, one input chunk, and the seek points
(about 37 KB each) whatever the member's size or compression ratio.
"""

import bisect
import threading
import weakref
from collections import OrderedDict
from typing import NamedTuple, Optional

from archfs.engine.memberfile import MemberFile
from archfs.errors import CorruptMemberError, PasswordRequired
from archfs.zipengine import aes
from archfs.zipengine.codecs import make_decoder
from archfs.zipengine.inflater import crc32, errors as inflate_errors, raw_inflater
from archfs.zipengine.prefetch import ChunkWindow, Prefetcher

SMALL_MEMBER = 1 << 20
DEFLATED = 8
SEEK_SPACING = 2 << 20
WINDOW = 4 << 20                  # more than the kernel's readahead asks for at once
SEQUENTIAL_GAP = 256 << 10        # a read this close after the last one continues it
INPUT_CHUNK = 256 << 10
OUTPUT_CHUNK = 256 << 10
SKIP_CHUNK = 1 << 20              # decoding up to a far offset: bigger steps, fewer calls
SEEK_POINT_BYTES = 40 << 10       # what one deflate state copy costs
SEEK_BUDGET = 96 << 20            # all seek points of all members together


class MemberInfo(NamedTuple):
    """What a reader needs to know of a member; ``key`` identifies its data."""

    name: str
    data_start: int      # first byte after the local header
    csize: int
    usize: int
    crc: int
    method: int          # the compression method (under any encryption)
    decrypter: object = None   # ZipDecrypter or AesDecrypter, positioned at ``skip``
    flags: int = 0
    skip: int = 0        # encryption header before the compressed data
    trailer: int = 0     # AES authentication code after it
    check_crc: bool = True     # AE-2 records no CRC; its authentication code stands in
    mac_key: Optional[bytes] = None   # AES: the key of the authentication code
    # the same member as its local header describes it, where that disagrees
    # with the central record: whichever checks out is served
    alternative: Optional["MemberInfo"] = None

    @property
    def key(self):
        return (self.data_start, self.csize, self.crc)

    @property
    def data_end(self) -> int:
        """End of the compressed data, counted from ``data_start``."""
        return self.csize - self.trailer


class SeekPoint(NamedTuple):
    out_pos: int
    comp_pos: int
    crc: int
    decoder: object
    decrypter: object


class SeekIndex:
    """The seek points of one member, in output order."""

    def __init__(self, key=None, cache: Optional["SeekIndexCache"] = None):
        self.key = key
        self.positions = []
        self.points = []
        self.lock = threading.Lock()
        self.charged = 0         # bytes the cache counts for it (under the cache's lock)
        self._cache = cache

    def add(self, point: SeekPoint) -> bool:
        added = self._add(point)
        if added and self._cache is not None:
            self._cache.grew(self)
        return added

    def _add(self, point: SeekPoint) -> bool:
        with self.lock:
            if self.positions and point.out_pos < self.positions[-1] + SEEK_SPACING:
                i = bisect.bisect_right(self.positions, point.out_pos)
                before = self.positions[i - 1] if i else -SEEK_SPACING
                after = self.positions[i] if i < len(self.positions) else None
                if point.out_pos < before + SEEK_SPACING or (
                        after is not None and after < point.out_pos + SEEK_SPACING):
                    return False
                self.positions.insert(i, point.out_pos)
                self.points.insert(i, point)
                return True
            self.positions.append(point.out_pos)
            self.points.append(point)
            return True

    def wants(self, out_pos: int) -> bool:
        """Whether a point at out_pos would be added (cheap check before copying)."""
        i = bisect.bisect_right(self.positions, out_pos)
        if i and out_pos < self.positions[i - 1] + SEEK_SPACING:
            return False
        return i == len(self.positions) or self.positions[i] >= out_pos + SEEK_SPACING

    def best(self, offset: int) -> Optional[SeekPoint]:
        with self.lock:
            i = bisect.bisect_right(self.positions, offset)
            return self.points[i - 1] if i else None

    def __len__(self):
        return len(self.points)


class SeekIndexCache:
    """Seek indexes by member, the least recently used dropped past the budget.

    Every call costs the same however many members were opened before: the
    bytes held are a running total, kept up to date as indexes gain points,
    and an index without points (a member read only at its start, or too
    small to get any) is not kept once no reader holds it.
    """

    def __init__(self, budget: int = SEEK_BUDGET):
        self._indexes = OrderedDict()      # key -> SeekIndex with points, oldest first
        self._empty = weakref.WeakValueDictionary()   # key -> SeekIndex a reader holds
        self._budget = budget
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key) -> SeekIndex:
        with self._lock:
            index = self._indexes.get(key)
            if index is not None:
                self._indexes.move_to_end(key)
                return index
            index = self._empty.get(key)
            if index is None:
                index = self._empty[key] = SeekIndex(key, self)
            return index

    def grew(self, index: SeekIndex) -> None:
        """(called by ``index`` after it gained a point) Count it, keep it, evict."""
        with self._lock:
            held = self._indexes.get(index.key)
            if held is not index:
                if held is not None:
                    self._used -= held.charged
                    held.charged = 0
                self._indexes[index.key] = index
                self._empty.pop(index.key, None)
            else:
                self._indexes.move_to_end(index.key)
            self._used += SEEK_POINT_BYTES
            index.charged += SEEK_POINT_BYTES
            while self._used > self._budget and len(self._indexes) > 1:
                _, dropped = self._indexes.popitem(last=False)
                self._used -= dropped.charged
                dropped.charged = 0

    @property
    def used(self) -> int:
        """Bytes of seek points held (an estimate: SEEK_POINT_BYTES each)."""
        return self._used

    def __len__(self):
        """Indexes held with points (the empty ones are not counted)."""
        return len(self._indexes)


class Verdicts:
    """Which members were found good or damaged, so damage is reported once
    found and good members are not checked again.

    The good ones are forgotten in bulk past ``GOOD_KEPT`` (forgetting costs
    one more check, nothing else), so a walk through a million members does
    not leave a million verdicts behind."""

    GOOD_KEPT = 1 << 16

    def __init__(self):
        self._bad = {}
        self._good = set()
        self._authentic = set()

    def bad(self, key) -> Optional[Exception]:
        """A fresh error to raise for a member found damaged before, or None."""
        found = self._bad.get(key)
        return None if found is None else found[0](found[1])

    def is_good(self, key) -> bool:
        return key in self._good

    def mark_bad(self, key, exc: Exception) -> None:
        self._bad[key] = (type(exc), str(exc))
        self._good.discard(key)

    def mark_good(self, key) -> None:
        good = self._good
        if len(good) >= self.GOOD_KEPT:
            good.clear()
        good.add(key)

    def is_authentic(self, key) -> bool:
        return key in self._authentic

    def mark_authentic(self, key) -> None:
        self._authentic.add(key)


class DecodeStream:
    """A member's output decoded in order from some point, with its CRC so far."""

    def __init__(self, source, info: MemberInfo, seek_index: Optional[SeekIndex],
                 start: Optional[SeekPoint] = None):
        self.source = source
        self.info = info
        self.seek_index = seek_index
        self.end = info.data_end
        if start is None:
            self.decoder = make_decoder(info.method, info.flags, info.usize)
            self.decrypter = info.decrypter.copy() if info.decrypter else None
            self.comp_pos = info.skip
            self.out_pos = 0
            self.crc = 0
        else:
            snap = start.decoder.snapshot()
            self.decoder = snap[0]
            self.decrypter = start.decrypter.copy() if start.decrypter else None
            self.comp_pos, self.out_pos, self.crc = start.comp_pos, start.out_pos, start.crc
        self.done = False

    def next_chunk(self, max_out: int) -> bytes:
        """Up to max_out more bytes; b"" once the member ended and checked out."""
        info = self.info
        decoder = self.decoder
        frames = getattr(decoder, "frames", False)
        stalls = 0
        while not self.done:
            # a single stream ends at its end (bytes after it are not data);
            # frames end where the member's data does
            if decoder.eof and (not frames or (decoder.needs_input and self.comp_pos >= self.end)):
                self._check_end()
                return b""
            if decoder.needs_input:
                if self.comp_pos >= self.end:
                    if info.method == 0:      # stored data simply ends with its bytes
                        self._check_end()
                        return b""
                    raise CorruptMemberError("%s: compressed data ends before the member does"
                                             % info.name)
                n = min(INPUT_CHUNK, self.end - self.comp_pos)
                data = self.source.pread(n, info.data_start + self.comp_pos)
                if len(data) < n:
                    raise CorruptMemberError("%s: archive ends inside the member's data" % info.name)
                if self.decrypter is not None:
                    data = self.decrypter.decrypt(data)
                self.comp_pos += n
            else:
                data = b""
                stalls += 1
                if stalls > 64:     # a decoder that neither wants input nor gives output
                    raise CorruptMemberError("%s: compressed data does not decode" % info.name)
            limit = min(max_out, info.usize - self.out_pos + 1)
            out = decoder.decode(data, max(limit, 1))
            if out:
                self.out_pos += len(out)
                self.crc = crc32(out, self.crc)
                if self.out_pos > info.usize:
                    raise CorruptMemberError("%s: member is larger than its recorded size %d"
                                             % (info.name, info.usize))
                self._offer_seek_point()
                return out
        return b""

    def _offer_seek_point(self) -> None:
        index = self.seek_index
        if index is None or not index.wants(self.out_pos):
            return
        snap = self.decoder.snapshot()
        if snap is None:
            return
        twin, lag = snap
        decrypter = None
        if self.decrypter is not None:
            decrypter = self.decrypter.rewound(lag)
            if decrypter is None:
                return
        # the point keeps the snapshot; each restart from it takes a fresh one
        index.add(SeekPoint(self.out_pos, self.comp_pos - lag, self.crc, twin, decrypter))

    def _check_end(self) -> None:
        info = self.info
        if self.out_pos != info.usize:
            raise CorruptMemberError("%s: member is %d bytes, its record says %d"
                                     % (info.name, self.out_pos, info.usize))
        if info.check_crc and self.crc != info.crc:
            raise CorruptMemberError("%s: CRC mismatch (stored %08x, data %08x)"
                                     % (info.name, info.crc, self.crc))
        self.done = True

    def finish(self) -> None:
        """Decode to the end, checking size and CRC."""
        while not self.done:
            if not self.next_chunk(OUTPUT_CHUNK) and not self.done:
                raise CorruptMemberError("%s: member ends early" % self.info.name)


class MemberReader(MemberFile):
    """A seekable, thread-safe binary file over one member (``pread`` + ``read``)."""

    def __init__(self, source, info: MemberInfo, seek_index: Optional[SeekIndex],
                 verdicts: Verdicts, on_close=None):
        super().__init__()
        self._on_close = on_close
        self._source = source
        self._info = info
        self._seek_index = seek_index
        self._verdicts = verdicts
        self._lock = threading.Lock()
        self._pos = 0
        self._stream: Optional[DecodeStream] = None
        self._window = ChunkWindow(0)
        self._prefetch: Optional[Prefetcher] = None
        self._last_end = 0          # where the previous read ended: sequential reads prefetch
        self._small: Optional[bytes] = None
        self._crc_front = 0
        self._crc = 0
        self._stored = info.method == 0 and info.decrypter is None
        try:
            known = verdicts.bad(info.key)
            if known is not None:
                raise known
            if info.alternative is not None:
                info = self._info = _checked_variant(source, info, verdicts)
                self._stored = info.method == 0 and info.decrypter is None
            if info.mac_key is not None and not verdicts.is_authentic(info.key):
                _guarded(info, verdicts, _authenticate, source, info, verdicts)
            if info.usize <= SMALL_MEMBER and not (self._stored and verdicts.is_good(info.key)):
                self._small = _guarded(info, verdicts, _read_whole, source, info, verdicts)
        except BaseException:
            self._source = self._on_close = None   # the opener releases what it gave us
            raise

    @property
    def name(self):
        return self._info.name

    def loaded(self) -> Optional[bytes]:
        """The member's whole content when it was decoded and checked at
        open (small members), else None."""
        return self._small

    @property
    def size(self) -> int:
        return self._info.usize

    def _guard(self, work, *args):
        return _guarded(self._info, self._verdicts, work, *args)

    # -- the one read primitive --------------------------------------------

    def pread(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; b"" at or past the end."""
        info = self._info
        if size <= 0 or offset >= info.usize:
            return b""
        end = min(info.usize, offset + size)
        if self._small is not None:
            return self._small[offset:end]
        if self._stored:
            return self._guard(self._pread_stored, offset, end)
        with self._lock:
            return self._guard(self._pread_decoded, offset, end)

    def _pread_stored(self, offset: int, end: int) -> bytes:
        info = self._info
        data = self._source.pread(end - offset, info.data_start + offset)
        if len(data) != end - offset:
            raise CorruptMemberError("%s: archive ends inside the member's data" % info.name)
        with self._lock:
            if offset == self._crc_front:   # an in-order read: extend the running CRC
                self._crc = crc32(data, self._crc)
                self._crc_front = end
                if end == info.usize:
                    if self._crc != info.crc:
                        raise CorruptMemberError("%s: CRC mismatch (stored %08x, data %08x)"
                                                 % (info.name, info.crc, self._crc))
                    self._verdicts.mark_good(info.key)
        return data

    def _pread_decoded(self, offset: int, end: int) -> bytes:
        sequential = 0 <= offset - self._last_end <= SEQUENTIAL_GAP
        self._last_end = end
        if self._prefetch is not None:
            data = self._prefetch.read(offset, end)
            if data is not None:
                if end == self._info.usize:
                    self._verdicts.mark_good(self._info.key)
                return data
            self._stop_prefetch()       # a read behind what it kept: back to on demand
        stream = self._stream
        window = self._window
        if stream is None or offset < window.start:
            stream = self._restart(offset)
        elif offset > stream.out_pos + SEEK_SPACING and self._seek_index is not None:
            point = self._seek_index.best(offset)
            if point is not None and point.out_pos > stream.out_pos:
                stream = self._restart(offset)
        window = self._window
        if (sequential and offset >= window.start and end - offset < WINDOW
                and self._info.usize - end > WINDOW and Prefetcher.acquire_slot()):
            self._prefetch = Prefetcher(stream, window, self._info.usize)
            self._stream = None         # the prefetcher owns them now
            self._window = ChunkWindow(0)
            return self._pread_decoded(offset, end)
        while stream.out_pos < end:
            chunk = stream.next_chunk(SKIP_CHUNK if stream.out_pos < offset - WINDOW
                                      else OUTPUT_CHUNK)
            if not chunk:
                raise CorruptMemberError("%s: member ends before its recorded size" % self._info.name)
            window.append(chunk)
            window.trim_before(min(offset, window.end - WINDOW))   # bounded while it skips
        window.trim_before(min(offset, end - WINDOW))
        if end == self._info.usize and not stream.done:
            stream.finish()     # verify before the last bytes go out
            self._verdicts.mark_good(self._info.key)
        return window.get(offset, end)

    def _restart(self, offset: int) -> DecodeStream:
        point = self._seek_index.best(offset) if self._seek_index is not None else None
        self._stream = DecodeStream(self._source, self._info, self._seek_index, point)
        self._window = ChunkWindow(self._stream.out_pos)
        return self._stream

    def _stop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.stop()
            self._prefetch = None

    # -- io.RawIOBase (the rest is engine.memberfile's) ---------------------

    def close(self):
        if not self.closed and self._source is not None:
            self._stop_prefetch()
            self._source.release()
            self._source = None
            if self._on_close is not None:
                self._on_close()
            self._stream = None
            self._window = ChunkWindow(0)
            self._small = None
        super().close()


# -- what an open of a member checks, and a small member's whole content ------
# (module functions: ``small_content`` does the same for a caller that wants
# only the bytes, without a reader)

def small_content(source, info: MemberInfo, verdicts: Verdicts) -> bytes:
    """The whole content of a member of at most ``SMALL_MEMBER`` bytes,
    decoded and checked exactly as a ``MemberReader`` does at open, with
    none of a reader's state: a walk over many small files reads them so."""
    known = verdicts.bad(info.key)
    if known is not None:
        raise known
    if info.alternative is not None:
        info = _checked_variant(source, info, verdicts)
    if info.mac_key is not None and not verdicts.is_authentic(info.key):
        _guarded(info, verdicts, _authenticate, source, info, verdicts)
    return _guarded(info, verdicts, _read_whole, source, info, verdicts)


def _guarded(info: MemberInfo, verdicts: Verdicts, work, *args):
    """Run ``work``; damage found is recorded, so later opens fail at once."""
    try:
        return work(*args)
    except CorruptMemberError as exc:
        if info.decrypter is not None and info.mac_key is None:
            # the one-byte password check passes for 1 wrong password in 256
            exc = PasswordRequired("%s: wrong password, or the member is damaged (%s)"
                                   % (info.name, exc))
        verdicts.mark_bad(info.key, exc)
        raise exc from None


def _checked_variant(source, info: MemberInfo, verdicts: Verdicts) -> MemberInfo:
    """The central record's reading of the member if it checks out, else
    the local header's; the first one's error if neither does."""
    first = None
    for candidate in (info, info.alternative):
        candidate = candidate._replace(alternative=None)
        if verdicts.is_good(candidate.key):
            return candidate
        try:
            DecodeStream(source, candidate, None).finish()
        except CorruptMemberError as exc:
            first = first or exc
            continue
        verdicts.mark_good(candidate.key)
        return candidate
    verdicts.mark_bad(info.key, first)
    raise first


def _authenticate(source, info: MemberInfo, verdicts: Verdicts) -> None:
    aes.authenticate(source.pread, info.data_start + info.skip,
                     info.data_end - info.skip, info.mac_key, info.name)
    verdicts.mark_authentic(info.key)


def _read_whole(source, info: MemberInfo, verdicts: Verdicts) -> bytes:
    if info.method == 0 and info.decrypter is None:
        data = source.pread(info.usize, info.data_start)
        if len(data) != info.usize:
            raise CorruptMemberError("%s: archive ends inside the member's data" % info.name)
        if crc32(data) != info.crc:
            raise CorruptMemberError("%s: CRC mismatch" % info.name)
    elif info.method == DEFLATED and info.decrypter is None:
        data = _inflate_whole(source, info)
    else:
        stream = DecodeStream(source, info, None)
        parts = []
        while not stream.done:
            parts.append(stream.next_chunk(OUTPUT_CHUNK))
        data = b"".join(parts)
    verdicts.mark_good(info.key)
    return data


def _inflate_whole(source, info: MemberInfo) -> bytes:
    """A small deflated member in one read and one inflate call (what a
    walk over many small files mostly opens), checked as DecodeStream
    checks: the stream must end, give exactly the recorded size and CRC;
    bytes after the stream's end are not data."""
    packed = source.pread(info.csize, info.data_start)
    if len(packed) != info.csize:
        raise CorruptMemberError("%s: archive ends inside the member's data" % info.name)
    inflater = raw_inflater()
    try:
        data = inflater.decompress(packed, info.usize + 1)
    except inflate_errors as exc:
        raise CorruptMemberError("%s: broken deflate stream: %s" % (info.name, exc)) from None
    if len(data) > info.usize:
        raise CorruptMemberError("%s: member is larger than its recorded size %d"
                                 % (info.name, info.usize))
    if not inflater.eof:
        raise CorruptMemberError("%s: compressed data ends before the member does"
                                 % info.name)
    if len(data) != info.usize:
        raise CorruptMemberError("%s: member is %d bytes, its record says %d"
                                 % (info.name, len(data), info.usize))
    if crc32(data) != info.crc:
        raise CorruptMemberError("%s: CRC mismatch (stored %08x, data %08x)"
                                 % (info.name, info.crc, crc32(data)))
    return data
