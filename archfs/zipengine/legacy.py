"""Decoders of PKZIP 1.x's two legacy methods, written from the APPNOTE.

Shrink (method 1) is LZW with codes of 9 to 13 bits and a "partial clear"
that frees the table's leaves; implode (method 6) is an LZ77 sliding window
of 4 or 8 KiB whose literals, lengths and distances are Shannon-Fano coded.
No maintained library decodes them, and 7-Zip and Info-ZIP still do, so
archives from the early 1990s still turn up. Both streams carry no end
marker: they stop when the member's recorded size has been produced.

Both decoders are streaming, with the interface of ``codecs.py``: the input
is taken in whatever pieces it comes, a symbol that does not fit in the
input received so far waits for more, and memory stays bounded (implode
keeps its 8 KiB window, shrink a string cache of at most ``SHRINK_CACHE``
bytes). They run in Python at a few to tens of MB/s.
"""

from typing import Dict, List, Optional

from archfs.errors import CorruptMemberError

SHRINK_CACHE = 8 << 20
_REFILL_BYTES = 6


class _Bits:
    """Bits read least significant first, refilled from a byte buffer."""

    __slots__ = ("buf", "pos", "bits", "count")

    def __init__(self):
        self.buf = b""
        self.pos = 0
        self.bits = 0
        self.count = 0

    def feed(self, data: bytes) -> None:
        if data:
            self.buf = self.buf[self.pos:] + data if self.pos < len(self.buf) else data
            self.pos = 0

    def exhausted(self) -> bool:
        return self.pos >= len(self.buf)


# -- implode -----------------------------------------------------------------------

def _sf_table(lengths: List[int]):
    """(lookup table, bits) for Shannon-Fano bit lengths, per APPNOTE 5.3.

    Codes are built from the longest to the shortest, left-aligned in 16
    bits, then bit-reversed because the stream is read least significant bit
    first. ``table[next bits]`` is ``value << 5 | code length``.
    """
    order = sorted(range(len(lengths)), key=lambda v: lengths[v])   # stable
    codes = [0] * len(lengths)
    code = increment = last = 0
    for v in reversed(order):
        code += increment
        if lengths[v] != last:
            last = lengths[v]
            increment = 1 << (16 - last)
        codes[v] = code
        if code >> 16:
            raise CorruptMemberError("broken implode stream: Shannon-Fano tree is over-full")
    width = max(lengths)
    size = 1 << width
    table = [31] * size                # a code an incomplete tree lacks: the CRC check fails
    for v, length in enumerate(lengths):
        rev = int(format(codes[v] >> (16 - length), "0%db" % length)[::-1], 2)
        entry = v << 5 | length
        for i in range(rev, size, 1 << length):
            table[i] = entry
    return table, width


class ImplodeDecoder:
    """Method 6. Flag bit 1: 8 KiB window (else 4 KiB); bit 2: a literal
    tree is present (else literals are plain bytes)."""

    def __init__(self, flags: int, usize: int):
        self._large = bool(flags & 2)
        self._literals = bool(flags & 4)
        self._usize = usize
        self._done = 0
        self._in = _Bits()
        self._trees = None
        self._window = bytearray(8192)     # before the start the window reads as zeros
        self._emit = 8192                  # first byte of the window not yet returned
        self._mark = 8192                  # window length after the last call
        self._made = 0                     # bytes decoded so far
        self.eof = usize == 0

    def _read_trees(self) -> bool:
        """Parse the stored trees once their bytes are all there."""
        bits = self._in
        data, at = bits.buf, bits.pos
        trees = []
        for size in ([256] if self._literals else []) + [64, 64]:
            if at >= len(data):
                return False
            count = data[at] + 1
            if at + 1 + count > len(data):
                return False
            lengths = []
            for byte in data[at + 1:at + 1 + count]:
                lengths += [(byte & 0xF) + 1] * ((byte >> 4) + 1)
            if len(lengths) != size:
                raise CorruptMemberError("broken implode stream: a tree of %d codes, not %d"
                                         % (len(lengths), size))
            trees.append(_sf_table(lengths))
            at += 1 + count
        bits.pos = at
        if not self._literals:
            trees.insert(0, None)
        self._trees = trees
        return True

    def decode(self, data: bytes, max_out: int) -> bytes:
        self._in.feed(data)
        if self.eof:
            return b""
        if self._trees is None and not self._read_trees():
            return b""
        lit, lengths, dists = self._trees
        lit_table, lit_width = lit if lit is not None else (None, 0)
        len_table, len_width = lengths
        dist_table, dist_width = dists
        low_bits = 7 if self._large else 6
        low_mask = (1 << low_bits) - 1
        lit_mask, len_mask, dist_mask = (1 << lit_width) - 1, (1 << len_width) - 1, \
            (1 << dist_width) - 1
        min_match = 3 if self._literals else 2
        long_length = 63 + min_match
        src = self._in
        buf, pos, bits, count = src.buf, src.pos, src.bits, src.count
        window = self._window
        start = self._emit
        goal = start + max_out
        left = self._usize - self._made + len(window)   # window length at the member's end
        goal = min(goal, left)
        while len(window) < goal:
            if count < 48 and pos < len(buf):
                bits |= int.from_bytes(buf[pos:pos + _REFILL_BYTES], "little") << count
                taken = min(_REFILL_BYTES, len(buf) - pos)
                pos += taken
                count += 8 * taken
            if bits & 1:
                if lit_table is not None:
                    entry = lit_table[(bits >> 1) & lit_mask]
                    used = 1 + (entry & 31)
                    value = entry >> 5
                else:
                    used = 9
                    value = (bits >> 1) & 0xFF
                if used > count:
                    break
                bits >>= used
                count -= used
                window.append(value)
                continue
            low = (bits >> 1) & low_mask
            used = 1 + low_bits
            entry = dist_table[(bits >> used) & dist_mask]
            used += entry & 31
            distance = ((entry >> 5) << low_bits | low) + 1
            entry = len_table[(bits >> used) & len_mask]
            used += entry & 31
            length = (entry >> 5) + min_match
            if length == long_length:
                length += (bits >> used) & 0xFF
                used += 8
            if used > count:
                break
            bits >>= used
            count -= used
            at = len(window) - distance
            if distance >= length:
                window += window[at:at + length]
            else:
                piece = window[at:]
                window += (piece * (length // distance + 1))[:length]
        src.pos, src.bits, src.count = pos, bits, count
        self._made += len(window) - self._mark
        if len(window) > left:           # a match past the recorded size: dropped
            self._made -= len(window) - left
            del window[left:]
        end = min(len(window), start + max_out)
        out = bytes(window[start:end])
        drop = max(0, end - 8192)
        del window[:drop]
        self._emit = end - drop
        self._mark = len(window)
        self._done += len(out)
        if self._done >= self._usize:
            self.eof = True
        return out

    @property
    def needs_input(self) -> bool:
        return not self.eof and self._in.exhausted()

    def snapshot(self):
        return None


# -- shrink --------------------------------------------------------------------------

_FIRST_FREE = 257
_CODES = 8192


class ShrinkDecoder:
    """Method 1: LZW, codes 9..13 bits, 256 then 1 widens the codes, 256
    then 2 frees every leaf of the table (reused lowest code first)."""

    def __init__(self, usize: int):
        self._usize = usize
        self._done = 0
        self._in = _Bits()
        self._width = 9
        self._prefix: List[int] = [-1] * _CODES     # -1: free
        self._suffix = bytearray(_CODES)
        self._free: List[int] = list(range(_CODES - 1, _FIRST_FREE - 1, -1))  # pop() = lowest
        self._cache: Dict[int, bytes] = {}
        self._cached = 0
        self._previous: Optional[int] = None
        self._control = False
        self._held = b""                             # output produced beyond max_out
        self.eof = usize == 0

    def _string(self, code: int) -> bytes:
        if code < 256:
            return bytes((code,))
        found = self._cache.get(code)
        if found is not None:
            return found
        tail = []
        c = code
        while c >= 256:
            found = self._cache.get(c)
            if found is not None:
                break
            tail.append(self._suffix[c])
            c = self._prefix[c]
            if c < 0 or len(tail) > _CODES:
                raise CorruptMemberError("broken shrink stream: a code refers to a free entry")
        head = found if c >= 256 else bytes((c,))
        tail.reverse()
        value = head + bytes(tail)
        self._remember(code, value)
        return value

    def _remember(self, code: int, value: bytes) -> None:
        if self._cached + len(value) > SHRINK_CACHE:
            self._cache.clear()
            self._cached = 0
        self._cache[code] = value
        self._cached += len(value)

    def _partial_clear(self) -> None:
        prefix = self._prefix
        used_as_prefix = set(prefix[_FIRST_FREE:])
        freed = [c for c in range(_FIRST_FREE, _CODES)
                 if prefix[c] >= 0 and c not in used_as_prefix]
        for c in freed:
            prefix[c] = -1
            self._cache.pop(c, None)
        self._free = sorted(set(self._free).union(freed), reverse=True)

    def decode(self, data: bytes, max_out: int) -> bytes:
        src = self._in
        src.feed(data)
        if self.eof:
            return b""
        out = [self._held] if self._held else []
        size = len(self._held)
        self._held = b""
        goal = min(max_out, self._usize - self._done)
        buf, pos, bits, count = src.buf, src.pos, src.bits, src.count
        prefix, suffix, free = self._prefix, self._suffix, self._free
        while size < goal:
            width = self._width
            if count < width:
                if pos >= len(buf):
                    break
                bits |= int.from_bytes(buf[pos:pos + _REFILL_BYTES], "little") << count
                taken = min(_REFILL_BYTES, len(buf) - pos)
                pos += taken
                count += 8 * taken
                continue
            code = bits & ((1 << width) - 1)
            bits >>= width
            count -= width
            if self._control:
                self._control = False
                if code == 1:
                    if self._width >= 13:
                        raise CorruptMemberError("broken shrink stream: codes wider than 13 bits")
                    self._width += 1
                elif code == 2:
                    self._partial_clear()
                    free = self._free
                else:
                    raise CorruptMemberError("broken shrink stream: unknown control code %d" % code)
                continue
            if code == 256:
                self._control = True
                continue
            previous = self._previous
            if previous is None:
                if code > 255:
                    raise CorruptMemberError("broken shrink stream: first code is not a byte")
                value = bytes((code,))
            elif code < 256 or prefix[code] >= 0:
                value = self._string(code)
                if free:
                    new = free.pop()
                    prefix[new], suffix[new] = previous, value[0]
            elif free and code == free[-1]:     # the entry being defined: KwKwK
                head = self._string(previous)
                value = head + head[:1]
                free.pop()
                prefix[code], suffix[code] = previous, head[0]
                self._remember(code, value)
            else:
                raise CorruptMemberError("broken shrink stream: code %d is not defined" % code)
            self._previous = code
            out.append(value)
            size += len(value)
        src.pos, src.bits, src.count = pos, bits, count
        joined = b"".join(out)
        if len(joined) > goal:
            self._held = joined[goal:]
            joined = joined[:goal]
        self._done += len(joined)
        if self._done >= self._usize:
            self.eof = True
        return joined

    @property
    def needs_input(self) -> bool:
        return not self.eof and not self._held and self._in.exhausted() \
            and self._in.count < self._width

    def snapshot(self):
        return None
