"""A member's bytes decoded in order from its start or a seek point, every
byte counted into the CRC and the size checked at the end: what both a
reader and a whole small member's check decode with.
"""

from typing import NamedTuple, Optional

from archfs.errors import CorruptMemberError
from archfs.zipengine.codecs import make_decoder
from archfs.zipengine.inflater import crc32
from archfs.zipengine.seekindex import SeekIndex, SeekPoint

# Compressed bytes per decoder call. Deflate's output from 128 KiB of text
# (~450 KB) stays in a core's L2 cache while it is written, checked and
# handed on; from 256 KiB it does not, and inflating the bench's 1 GiB member
# measured ~17% slower (zlib-ng, 1 MiB L2, medians of 7: 660 against 565 MB/s).
INPUT_CHUNK = 128 << 10
OUTPUT_CHUNK = 256 << 10
# compressed bytes asked of a local disk ahead of the decoder (see
# ArchiveFile.read_ahead); a member shorter than two input chunks asks nothing
READ_AHEAD = 8 << 20


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
        self._read_ahead = (getattr(source, "read_ahead", None)
                            if self.end - self.comp_pos > 2 * INPUT_CHUNK else None)
        self._asked = self.comp_pos      # compressed data asked for up to here
        # set when the thread that decodes is the critical one (a Prefetcher's):
        # its readers then make the requests, ~1 ms per 4 MiB of pages to set up
        self.asks_elsewhere = False

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
                if not self.asks_elsewhere or self.comp_pos + n > self._asked:
                    self.ask_ahead()      # (also where the readers fell behind)
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

    def ask_ahead(self) -> None:
        """Ask for the compressed data up to READ_AHEAD past the decoder once
        half of what was asked is used (from any thread)."""
        pos = self.comp_pos
        if self._read_ahead is None or pos + READ_AHEAD // 2 < self._asked:
            return
        start, asked = max(pos, self._asked), min(self.end, pos + READ_AHEAD)
        if asked > start:
            self._read_ahead(self.info.data_start + start, asked - start)
        self._asked = max(self._asked, asked)   # after asking: the other thread may too

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
