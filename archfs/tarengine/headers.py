"""Tar header blocks: reading every dialect, writing the one archfs uses.

A header is one 512-byte block. The dialects read here: v7 (no magic, a
trailing ``/`` marks a directory), ustar (``ustar\\0`` ``00``, a 155-byte
name prefix), GNU (``ustar `` `` \\0``: base-256 numbers, long names in
``L``/``K`` members, sparse maps in the header) and pax (``x``/``g``
members of ``LEN key=value\\n`` records that override header fields).

archfs writes ustar headers, preceded by a pax ``x`` member when a field
does not fit (long or non-ASCII names, big sizes, sub-second times, big
owners), which every current tar reads.
"""

import stat
import struct
import zlib
from typing import Dict, List, NamedTuple, Optional, Tuple

BLOCK = 512
RECORD = 20 * BLOCK           # GNU tar's default record: archives are padded to it
ZERO_BLOCK = bytes(BLOCK)

REGULAR = (b"0", b"\0", b"7")
HARDLINK, SYMLINK, CHARDEV, BLOCKDEV, DIRECTORY, FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
PAX_LOCAL, PAX_GLOBAL, SOLARIS_X = b"x", b"g", b"X"
GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE = b"L", b"K", b"S"
GNU_DUMPDIR, GNU_MULTIVOL, GNU_VOLHDR, GNU_NAMES = b"D", b"M", b"V", b"N"
# the kinds of member archfs writes (a hard link is a 0 turned into a 1)
TYPEFLAGS = {stat.S_IFREG: b"0", stat.S_IFDIR: b"5", stat.S_IFLNK: b"2",
             stat.S_IFCHR: b"3", stat.S_IFBLK: b"4", stat.S_IFIFO: b"6"}

USTAR_MAGIC = b"ustar\x0000"
GNU_MAGIC = b"ustar  \x00"


class TarFormatError(ValueError):
    """A header that is not a tar header (bad checksum, bad number)."""


class Header(NamedTuple):
    name: bytes          # name field (joined with the ustar prefix where there is one)
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    typeflag: bytes
    linkname: bytes
    uname: bytes
    gname: bytes
    devmajor: int
    devminor: int
    gnu: bool            # GNU magic: the prefix area holds GNU fields
    block: bytes         # the raw block, for dialect-specific fields


def is_zero(block: bytes) -> bool:
    return block == ZERO_BLOCK or not block.strip(b"\0")


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def number(field: bytes) -> int:
    """An octal ASCII number, or GNU/star base-256 (high bit of the first byte)."""
    if field and field[0] & 0x80:
        if field[0] == 0xFF:      # negative, two's complement
            return int.from_bytes(field, "big", signed=True)
        return int.from_bytes(field, "big") - (0x80 << (8 * (len(field) - 1)))
    try:
        return int(field.strip(b" \0") or b"0", 8)
    except ValueError:
        pass
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError("bad number %r in a header" % bytes(field)) from None


def checksum_ok(block: bytes) -> bool:
    """The header checksum: the sum of the block's bytes with the checksum
    field counted as spaces (some old tars summed signed chars)."""
    stored = block[148:156]
    try:
        want = number(stored)
    except TarFormatError:
        return False
    # adler32's low half is 1 + the byte sum modulo 65521: one C call; a
    # 512-byte block sums to at most 130560, so a match is confirmed below
    if (zlib.adler32(block) & 0xFFFF) == (1 + want + sum(stored) - 256) % 65521:
        if sum(block) - sum(stored) + 256 == want:
            return True
    unsigned = sum(block) - sum(stored) + 256
    signed = unsigned - 256 * sum(1 for b in block if b & 0x80) + 256 * sum(
        1 for b in stored if b & 0x80)
    return want == signed


_FIELDS = struct.Struct("100s8s8s8s12s12s8s1s100s8s32s32s8s8s155s12x")


def parse(block: bytes) -> Header:
    """The fields of a header block; TarFormatError if it is not one."""
    if not checksum_ok(block):
        raise TarFormatError("header checksum mismatch")
    (name, mode, uid, gid, size, mtime, _chk, typeflag, linkname, magic, uname, gname,
     devmajor, devminor, prefix) = _FIELDS.unpack(block)
    gnu = magic == GNU_MAGIC
    name = _cstr(name)
    if not gnu and magic[:5] == b"ustar" and prefix[0]:
        name = _cstr(prefix) + b"/" + name
    device = typeflag in (CHARDEV, BLOCKDEV)
    return Header(name, number(mode), number(uid), number(gid), number(size), number(mtime),
                  typeflag, _cstr(linkname), _cstr(uname), _cstr(gname),
                  number(devmajor) if device else 0, number(devminor) if device else 0,
                  gnu, block)


def looks_like_tar(block: bytes) -> bool:
    """Whether a first block starts a tar archive (a valid header, or an
    empty archive's zero block)."""
    if len(block) < BLOCK:
        return False
    if is_zero(block[:BLOCK]):
        return True
    try:
        header = parse(block[:BLOCK])
    except TarFormatError:
        return False
    return bool(header.name) or header.typeflag in (PAX_GLOBAL, PAX_LOCAL, GNU_LONGNAME,
                                                  GNU_VOLHDR)


# -- GNU sparse maps in the header (old GNU format, typeflag S) ---------------

def gnu_sparse_header(block: bytes) -> Tuple[List[Tuple[int, int]], bool, int]:
    """(map entries, more extension blocks follow, real size) of an S header."""
    entries = _sparse_entries(block, 386, 4)
    return entries, block[482] != 0, number(block[483:495])


def gnu_sparse_extension(block: bytes) -> Tuple[List[Tuple[int, int]], bool]:
    return _sparse_entries(block, 0, 21), block[504] != 0


def _sparse_entries(block: bytes, at: int, count: int) -> List[Tuple[int, int]]:
    out = []
    for i in range(count):
        offset_field = block[at + 24 * i:at + 24 * i + 12]
        if not offset_field.strip(b"\0"):
            break
        out.append((number(offset_field), number(block[at + 24 * i + 12:at + 24 * i + 24])))
    return out


# -- pax records ------------------------------------------------------------

def pax_records(data: bytes) -> List[Tuple[str, bytes]]:
    """The ``LEN key=value\\n`` records of a pax header, in order."""
    records = []
    pos = 0
    n = len(data)
    while pos < n:
        if data[pos] == 0:        # padding after the last record
            break
        space = data.find(b" ", pos, pos + 24)
        if space < 0:
            raise TarFormatError("bad pax record length")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("bad pax record length") from None
        end = pos + length
        if length <= space - pos + 1 or end > n or data[end - 1] != 0x0A:
            raise TarFormatError("bad pax record")
        record = data[space + 1:end - 1]
        eq = record.find(b"=")
        if eq <= 0:
            raise TarFormatError("bad pax record")
        records.append((record[:eq].decode("utf-8", "surrogateescape"), record[eq + 1:]))
        pos = end
    return records


def pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("utf-8", "surrogateescape") + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


# -- writing ------------------------------------------------------------------

def _octal(value: int, width: int) -> Optional[bytes]:
    """``width`` bytes of zero-padded octal ending in NUL, or None if it does not fit."""
    text = b"%0*o" % (width - 1, value)
    return text + b"\0" if len(text) == width - 1 and value >= 0 else None


def build(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
          typeflag: bytes, linkname: bytes = b"", uname: bytes = b"", gname: bytes = b"",
          devmajor: int = 0, devminor: int = 0) -> bytes:
    """One ustar header block. Fields must fit (``needs_pax`` says when not)."""
    block = bytearray(BLOCK)
    block[0:len(name)] = name
    for at, width, value in ((100, 8, mode & 0o7777), (108, 8, uid), (116, 8, gid),
                             (124, 12, size), (136, 12, mtime), (329, 8, devmajor),
                             (337, 8, devminor)):
        field = _octal(value, width)
        if field is None:
            raise ValueError("header field does not fit: %d" % value)
        block[at:at + width] = field
    block[156:157] = typeflag
    block[157:157 + len(linkname)] = linkname
    block[257:265] = USTAR_MAGIC
    block[265:265 + len(uname)] = uname
    block[297:297 + len(gname)] = gname
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def padding(size: int) -> int:
    """Zero bytes after ``size`` bytes of data, up to the next block."""
    return -size % BLOCK


def split_ustar_name(name: bytes) -> Optional[Tuple[bytes, bytes]]:
    """(prefix, name) for a ustar header, or None if it needs a pax path."""
    if len(name) <= 100:
        return b"", name
    cut = name.rfind(b"/", 0, 156)
    while cut > 0:
        if len(name) - cut - 1 <= 100 and cut <= 155:
            return name[:cut], name[cut + 1:]
        cut = name.rfind(b"/", 0, cut)
    return None


def member_headers(name: bytes, mode: int, uid: int, gid: int, size: int, mtime_ns: int,
                   typeflag: bytes, linkname: bytes = b"", uname: bytes = b"",
                   gname: bytes = b"", devmajor: int = 0, devminor: int = 0,
                   extra: Optional[Dict[str, bytes]] = None) -> bytes:
    """The header blocks of one member: a pax ``x`` member when needed, then ustar."""
    pax: Dict[str, bytes] = dict(extra or {})
    seconds, fraction = divmod(mtime_ns, 10 ** 9)
    if fraction or seconds < 0 or seconds >= 8 ** 11:
        pax["mtime"] = _pax_time(mtime_ns)
    split = split_ustar_name(name) if name.isascii() else None
    if split is None:
        pax["path"] = name
        split = (b"", _ascii_stub(name, 100))
    if len(linkname) > 100 or not linkname.isascii():
        pax["linkpath"] = linkname
        linkname = _ascii_stub(linkname, 100)
    if size >= 8 ** 11:
        pax["size"] = b"%d" % size
    for key, value, width in (("uid", uid, 8), ("gid", gid, 8)):
        if value >= 8 ** (width - 1):
            pax[key] = b"%d" % value
    for key, value in (("uname", uname), ("gname", gname)):
        if len(value) > 31 or not value.isascii():
            pax[key] = value
    prefix, short = split
    header = bytearray(build(short, mode, min(uid, 0o7777777), min(gid, 0o7777777),
                             size if size < 8 ** 11 else 0, max(0, min(seconds, 8 ** 11 - 1)),
                             typeflag, linkname, uname[:31] if uname.isascii() else b"",
                             gname[:31] if gname.isascii() else b"", devmajor, devminor))
    if prefix:
        header[345:345 + len(prefix)] = prefix
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % sum(header)
    if not pax:
        return bytes(header)
    records = b"".join(pax_record(k, v) for k, v in pax.items())
    stub = b"PaxHeaders/" + _ascii_stub(split[1], 88)
    x = build(stub, 0o644, 0, 0, len(records), max(0, min(seconds, 8 ** 11 - 1)), PAX_LOCAL)
    return x + records + bytes(padding(len(records))) + bytes(header)


def _pax_time(mtime_ns: int) -> bytes:
    seconds, fraction = divmod(mtime_ns, 10 ** 9)
    if not fraction:
        return b"%d" % seconds
    text = b"%d.%09d" % (seconds, fraction)
    return text.rstrip(b"0")


def _ascii_stub(name: bytes, width: int) -> bytes:
    """A short ASCII stand-in for a name carried in a pax record."""
    text = name.decode("utf-8", "replace").encode("ascii", "replace")
    return text[-width:]
