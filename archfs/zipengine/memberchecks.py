"""What an open of a member checks (the variant that checks out, the AES
code, a small member's whole content) and the verdicts that make damage
found once fail every later open at once. ``small_content`` is the same
check for a caller that wants only the bytes, without a reader.
"""

from typing import Optional

from archfs.errors import CorruptMemberError, PasswordRequired
from archfs.zipengine import aes
from archfs.zipengine.decodestream import OUTPUT_CHUNK, DecodeStream, MemberInfo
from archfs.zipengine.inflater import crc32, errors as inflate_errors, raw_inflater

DEFLATED = 8


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


def small_content(source, info: MemberInfo, verdicts: Verdicts) -> bytes:
    """The whole content of a member of at most ``SMALL_MEMBER`` bytes,
    decoded and checked exactly as a ``MemberReader`` does at open, with
    none of a reader's state: a walk over many small files reads them so."""
    known = verdicts.bad(info.key)
    if known is not None:
        raise known
    if info.alternative is not None:
        info = checked_variant(source, info, verdicts)
    if info.mac_key is not None and not verdicts.is_authentic(info.key):
        guarded(info, verdicts, authenticate_member, source, info, verdicts)
    return guarded(info, verdicts, read_whole, source, info, verdicts)


def guarded(info: MemberInfo, verdicts: Verdicts, work, *args):
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


def checked_variant(source, info: MemberInfo, verdicts: Verdicts) -> MemberInfo:
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


def authenticate_member(source, info: MemberInfo, verdicts: Verdicts) -> None:
    aes.authenticate(source.pread, info.data_start + info.skip,
                     info.data_end - info.skip, info.mac_key, info.name)
    verdicts.mark_authentic(info.key)


def read_whole(source, info: MemberInfo, verdicts: Verdicts) -> bytes:
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
