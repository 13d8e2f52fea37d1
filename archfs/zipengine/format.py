"""The zip format's structures, spelled out once (PKWARE APPNOTE 6.3.x).

Every fixed-size record is a ``struct.Struct`` here, with the field order of
the APPNOTE; every extra field archfs reads or writes has one parse and one
build function. Nothing else in archfs packs or unpacks zip bytes by hand.
"""

import struct
import time
import zlib
from typing import Dict, Iterator, Optional, Tuple

# -- signatures -------------------------------------------------------------

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
EOCD_SIG = b"PK\x05\x06"
ZIP64_EOCD_SIG = b"PK\x06\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
DESCRIPTOR_SIG = b"PK\x07\x08"

# -- fixed records ----------------------------------------------------------

# local file header: sig, version needed, flags, method, dos time, dos date,
# crc32, compressed size, uncompressed size, name length, extra length
LOCAL_HEADER = struct.Struct("<4sHHHHHLLLHH")
# central directory header: sig, version made by, version needed, flags,
# method, dos time, dos date, crc32, compressed size, uncompressed size,
# name length, extra length, comment length, disk start, internal attributes,
# external attributes, local header offset
CENTRAL_HEADER = struct.Struct("<4sHHHHHHLLLHHHHHLL")
# end of central directory: sig, this disk, cd disk, entries on this disk,
# entries total, cd size, cd offset, comment length
EOCD = struct.Struct("<4sHHHHLLH")
# zip64 end of central directory: sig, size of the rest, version made by,
# version needed, this disk, cd disk, entries on this disk, entries total,
# cd size, cd offset
ZIP64_EOCD = struct.Struct("<4sQHHLLQQQQ")
# zip64 locator: sig, disk of the zip64 eocd, its offset, total disks
ZIP64_LOCATOR = struct.Struct("<4sLQL")

MAX_COMMENT = 0xFFFF
MAX16 = 0xFFFF
MAX32 = 0xFFFFFFFF

# -- flags, methods, versions, hosts ---------------------------------------

FLAG_ENCRYPTED = 0x0001
FLAG_DESCRIPTOR = 0x0008
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800
FLAG_MASKED_HEADERS = 0x2000

STORED = 0
SHRUNK = 1
IMPLODED = 6
DEFLATED = 8
DEFLATE64 = 9
BZIP2 = 12
LZMA = 14
ZSTD_OLD = 20
ZSTD = 93
XZ = 95
PPMD = 98
AES_MARKER = 99

METHOD_NAMES = {
    0: "stored", 1: "shrunk", 2: "reduced-1", 3: "reduced-2", 4: "reduced-3",
    5: "reduced-4", 6: "imploded", 8: "deflated", 9: "deflate64",
    10: "PKWARE implode", 12: "bzip2", 14: "lzma", 16: "IBM z/OS CMPSC",
    18: "IBM TERSE", 19: "IBM LZ77", 20: "zstd (deprecated id)", 93: "zstd",
    94: "mp3", 95: "xz", 96: "jpeg", 97: "wavpack", 98: "ppmd", 99: "AES",
}

HOST_MSDOS = 0
HOST_UNIX = 3
VERSION_MADE_BY = (HOST_UNIX << 8) | 63      # unix, APPNOTE 6.3
VERSION_DEFAULT = 20                          # deflate, directories
VERSION_ZIP64 = 45
VERSION_BZIP2 = 46
VERSION_LZMA = 63

DOS_DIRECTORY = 0x10
DOS_READONLY = 0x01

# -- extra fields -----------------------------------------------------------

EXTRA_ZIP64 = 0x0001
EXTRA_NTFS = 0x000A
EXTRA_PKWARE_UNIX = 0x000D    # PKWARE unix: times, 16-bit owner, device number
EXTRA_TIMESTAMP = 0x5455      # Info-ZIP extended timestamp ("UT")
EXTRA_UNIX_OWNER = 0x7875     # Info-ZIP new unix uid/gid ("ux")
EXTRA_UNICODE_PATH = 0x7075   # Info-ZIP unicode path ("up")
EXTRA_AES = 0x9901
# extras archfs rebuilds from its own fields on every write
REBUILT_EXTRAS = frozenset((EXTRA_ZIP64, EXTRA_NTFS, EXTRA_TIMESTAMP,
                            EXTRA_UNIX_OWNER, EXTRA_UNICODE_PATH))

_EXTRA_HEADER = struct.Struct("<HH")
_NTFS_EPOCH_OFFSET = 11644473600  # seconds from 1601-01-01 to 1970-01-01


def iter_extras(extra: bytes) -> Iterator[Tuple[int, bytes]]:
    """(id, data) of each extra block; a truncated last block is dropped."""
    pos, end = 0, len(extra)
    while pos + 4 <= end:
        tag, size = _EXTRA_HEADER.unpack_from(extra, pos)
        pos += 4
        if pos + size > end:
            return
        yield tag, extra[pos:pos + size]
        pos += size


def build_extra(tag: int, data: bytes) -> bytes:
    return _EXTRA_HEADER.pack(tag, len(data)) + data


def parse_zip64(data: bytes, usize: int, csize: int, offset: int,
                disk: int = 0) -> Tuple[int, int, int]:
    """Replace the 0xFFFFFFFF fields by the zip64 extra's 8-byte values, in order."""
    values = []
    pos = 0
    for value, width in ((usize, 8), (csize, 8), (offset, 8)):
        if value == MAX32:
            if pos + width > len(data):
                raise ValueError("zip64 extra field is too short")
            value = int.from_bytes(data[pos:pos + width], "little")
            pos += width
        values.append(value)
    return values[0], values[1], values[2]


def build_zip64(*values: int) -> bytes:
    return build_extra(EXTRA_ZIP64, b"".join(v.to_bytes(8, "little") for v in values))


def parse_timestamp(data: bytes) -> Optional[int]:
    """mtime in seconds from an extended-timestamp block, if it holds one."""
    if len(data) >= 5 and data[0] & 1:
        return int.from_bytes(data[1:5], "little")  # unsigned: 1970..2106
    return None


def parse_ntfs_mtime_ns(data: bytes) -> Optional[int]:
    """mtime in ns from an NTFS block (tag 1 holds mtime, atime, ctime)."""
    times = parse_ntfs_times_ns(data)
    return None if times is None else times[0]


def parse_ntfs_times_ns(data: bytes) -> Optional[Tuple[int, Optional[int]]]:
    """(mtime, atime or None) in ns from an NTFS block."""
    pos = 4  # reserved
    while pos + 4 <= len(data):
        tag, size = _EXTRA_HEADER.unpack_from(data, pos)
        pos += 4
        if tag == 1 and size >= 8 and pos + 8 <= len(data):
            mtime = ntfs_to_ns(int.from_bytes(data[pos:pos + 8], "little"))
            atime = None
            if size >= 16 and pos + 16 <= len(data):
                ticks = int.from_bytes(data[pos + 8:pos + 16], "little")
                atime = ntfs_to_ns(ticks) if ticks else None     # 0: not recorded
            return mtime, atime
        pos += size
    return None


def ntfs_to_ns(ticks: int) -> int:
    return clamp_ns(ticks * 100 - _NTFS_EPOCH_OFFSET * 1_000_000_000)


MAX_NS = (1 << 63) - 1


def clamp_ns(ns: int) -> int:
    """A time in ns that fits st_mtime (signed 64 bits), whatever an archive says."""
    return max(-MAX_NS, min(MAX_NS, ns))


_NTFS_OFFSET_NS = _NTFS_EPOCH_OFFSET * 1_000_000_000
_MAX64 = (1 << 64) - 1


def _ticks(ns: int) -> int:
    return max(0, min((ns + _NTFS_OFFSET_NS) // 100, _MAX64))


# An extended timestamp block ("UT": flags, mtime, and atime in a local
# header) then an NTFS block (reserved, tag 1 of 24 bytes: mtime, atime,
# and mtime again where Windows reads the creation time), packed at once.
_TIMES = struct.Struct("<HHBI" "HHIHHQQQ")
_TIMES_ATIME = struct.Struct("<HHBII" "HHIHHQQQ")


def build_times(mtime_ns: int, atime_ns: Optional[int], local: bool) -> bytes:
    """The time extras of a member: atime in the timestamp block only where
    ``local`` (Info-ZIP's unzip restores it from a local header), in the
    NTFS block always (mtime when not given)."""
    t = _ticks(mtime_ns)
    a = t if atime_ns is None else _ticks(atime_ns)
    mtime_s = (mtime_ns // 1_000_000_000) & MAX32
    if local and atime_ns is not None:
        return _TIMES_ATIME.pack(EXTRA_TIMESTAMP, 9, 3, mtime_s,
                                 (atime_ns // 1_000_000_000) & MAX32,
                                 EXTRA_NTFS, 32, 0, 1, 24, t, a, t)
    return _TIMES.pack(EXTRA_TIMESTAMP, 5, 1, mtime_s, EXTRA_NTFS, 32, 0, 1, 24, t, a, t)


def parse_unix_owner(data: bytes) -> Optional[Tuple[int, int]]:
    """(uid, gid) from an Info-ZIP new unix block."""
    if len(data) < 3 or data[0] != 1:
        return None
    usize = data[1]
    if len(data) < 2 + usize + 1:
        return None
    uid = int.from_bytes(data[2:2 + usize], "little")
    gsize = data[2 + usize]
    gid_bytes = data[3 + usize:3 + usize + gsize]
    if len(gid_bytes) != gsize:
        return None
    return uid, int.from_bytes(gid_bytes, "little")


def build_unix_owner(uid: int, gid: int) -> bytes:
    return build_extra(EXTRA_UNIX_OWNER, bytes((1, 4)) + uid.to_bytes(4, "little")
                       + bytes((4,)) + gid.to_bytes(4, "little"))


def build_pkware_unix(atime_s: int, mtime_s: int, uid: int, gid: int,
                      major: int, minor: int) -> bytes:
    """A PKWARE unix block for a character or block device: 32-bit times,
    16-bit owner (0xFFFF when it does not fit; the "ux" block has the real
    one), then the device's major and minor number, 32 bits each (the layout
    fuse-zip reads and writes)."""
    def short(value: int) -> int:
        return value if 0 <= value < 0xFFFF else 0xFFFF
    return build_extra(EXTRA_PKWARE_UNIX, struct.pack(
        "<IIHHII", atime_s & MAX32, mtime_s & MAX32, short(uid), short(gid),
        major & MAX32, minor & MAX32))


def parse_pkware_unix_device(data: bytes) -> Optional[Tuple[int, int]]:
    """(major, minor) from a PKWARE unix block of a device member."""
    if len(data) < 20:
        return None
    return struct.unpack_from("<II", data, 12)


def parse_unicode_path(data: bytes, raw_name: bytes) -> Optional[str]:
    """The UTF-8 name of an Info-ZIP unicode path block, if it matches raw_name."""
    if len(data) < 5 or data[0] != 1:
        return None
    if int.from_bytes(data[1:5], "little") != zlib.crc32(raw_name):
        return None  # stale: the name was changed by a tool unaware of the block
    try:
        return data[5:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def split_extras(extra: bytes) -> Tuple[Dict[int, bytes], bytes]:
    """The extras archfs interprets, by id, and the others kept verbatim."""
    known: Dict[int, bytes] = {}
    kept = []
    for tag, data in iter_extras(extra):
        if tag in REBUILT_EXTRAS or tag == EXTRA_AES:
            known.setdefault(tag, data)
            if tag == EXTRA_AES:
                kept.append(build_extra(tag, data))
        else:
            kept.append(build_extra(tag, data))
    return known, b"".join(kept)


# -- MS-DOS date and time ---------------------------------------------------

_dos_cache: Dict[int, int] = {}


def dos_to_ns(date: int, dtime: int) -> int:
    """Local-time MS-DOS date/time (2 s precision) to epoch nanoseconds."""
    key = (date << 16) | dtime
    cached = _dos_cache.get(key)
    if cached is not None:
        return cached
    year = 1980 + (date >> 9)
    month = min(max((date >> 5) & 0xF, 1), 12)
    day = min(max(date & 0x1F, 1), 31)
    hour, minute, sec = (dtime >> 11) & 0x1F, (dtime >> 5) & 0x3F, (dtime & 0x1F) * 2
    try:
        value = int(time.mktime((year, month, day, hour, minute, sec, 0, 0, -1))) * 1_000_000_000
    except (OverflowError, ValueError):
        value = 0
    if len(_dos_cache) < 1 << 16:
        _dos_cache[key] = value
    return value


_to_dos_cache: Dict[int, Tuple[int, int]] = {}


def ns_to_dos(mtime_ns: int) -> Tuple[int, int]:
    """Epoch nanoseconds to local-time MS-DOS (date, time), clamped to 1980..2107."""
    secs = mtime_ns // 1_000_000_000
    cached = _to_dos_cache.get(secs)
    if cached is not None:
        return cached
    value = _ns_to_dos(secs)
    if len(_to_dos_cache) < 1 << 16:
        _to_dos_cache[secs] = value
    return value


def _ns_to_dos(secs: int) -> Tuple[int, int]:
    try:
        t = time.localtime(secs)
    except (OverflowError, OSError, ValueError):
        t = time.localtime(0)
    year = t.tm_year
    if year < 1980:
        return (0 << 9) | (1 << 5) | 1, 0
    if year > 2107:
        return (127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29
    date = ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    dtime = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    return date, dtime


def read_local_header(pread, offset: int) -> Optional[Tuple[tuple, int]]:
    """(LOCAL_HEADER fields, data start) of the header at ``offset``, or None."""
    raw = pread(LOCAL_HEADER.size, offset)
    if len(raw) < LOCAL_HEADER.size or raw[:4] != LOCAL_SIG:
        return None
    fields = LOCAL_HEADER.unpack(raw)
    return fields, offset + LOCAL_HEADER.size + fields[9] + fields[10]
