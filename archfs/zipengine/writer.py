"""Writing zip structures: members appended after the current end of the
archive, central directory records, and the end records.

Everything here writes at an explicit offset with ``pwrite`` and never
touches bytes before that offset, which is what the commit protocol in
``store/__init__.py`` relies on. Names are always written as UTF-8 with the flag
set; every member gets an extended timestamp (seconds, what Info-ZIP reads)
and an NTFS timestamp (100 ns, what 7-Zip and Windows read).

Unix attributes beyond the mode (``UnixAttrs``) go into the local header as
well as the central record, since Info-ZIP's unzip restores them from the
local header: the owner as an Info-ZIP "ux" block (``unzip -X`` as root),
an atime that differs from mtime in both timestamp blocks (the extended
timestamp's atime slot exists only in local headers), and the device number
of a character or block device in a PKWARE unix block.
"""

import os
import stat
from typing import Dict, NamedTuple, Optional, Tuple

from archfs.engine import fileaccess
from archfs.engine.fileaccess import pread_exact, pwrite_all
from archfs.errors import CorruptMemberError
from archfs.zipengine import format as fmt, inflater
from archfs.zipengine.encoders import compress_bytes, make_encoder, method_flags, worth_compressing
from archfs.zipengine.entries import NO_OWNER, NO_UNIX, UnixAttrs

WRITE_CHUNK = 1 << 20
SMALL_FILE = 1 << 20
ZIP64_THRESHOLD = 0xF0000000     # leave room for deflate overhead below 4 GiB
MAX_EXTRA = 0xFFFF
PLACEHOLDER_SIG = b"PK\x00\x00"     # a local header not yet final


class Written(NamedTuple):
    """A member as it now stands in the archive."""

    offset: int
    csize: int
    usize: int
    crc: int
    method: int
    flags: int
    end: int          # first byte after the member


def member_name_bytes(path: str, is_dir: bool) -> bytes:
    return (path + "/" if is_dir else path).encode("utf-8")


def _needed_version(method: int, zip64: bool) -> int:
    version = fmt.VERSION_DEFAULT
    if method == fmt.BZIP2:
        version = fmt.VERSION_BZIP2
    elif method in (fmt.LZMA, fmt.ZSTD, fmt.XZ):
        version = fmt.VERSION_LZMA
    return max(version, fmt.VERSION_ZIP64) if zip64 else version


def _unix_extras(mode: Optional[int], mtime_ns: int, unix: UnixAttrs,
                 uid: int, gid: int) -> bytes:
    """The owner block, and for a device its number."""
    extra = b"" if uid == NO_OWNER else _owner_block(uid, gid)
    if unix.rdev is not None and mode is not None and stat.S_IFMT(mode) in (stat.S_IFCHR,
                                                                            stat.S_IFBLK):
        atime = unix.atime_ns if unix.atime_ns is not None else mtime_ns
        extra += fmt.build_pkware_unix(atime // 1_000_000_000, mtime_ns // 1_000_000_000,
                                       uid, gid, os.major(unix.rdev), os.minor(unix.rdev))
    return extra


_owner_blocks: Dict[Tuple[int, int], bytes] = {}


def _owner_block(uid: int, gid: int) -> bytes:
    """The "ux" block of an owner (a few owners write most members: kept)."""
    block = _owner_blocks.get((uid, gid))
    if block is None:
        block = fmt.build_unix_owner(uid, gid)
        if len(_owner_blocks) < 4096:
            _owner_blocks[(uid, gid)] = block
    return block



def local_header(name: bytes, method: int, flags: int, mtime_ns: int, crc: int,
                 csize: int, usize: int, zip64: bool, times: bool = True,
                 dos: Optional[Tuple[int, int]] = None, unix: UnixAttrs = NO_UNIX,
                 mode: Optional[int] = None) -> bytes:
    """A local header; ``times=False`` leaves out the timestamp and unix
    extras (the central record carries them anyway) for the smallest
    possible header; ``dos`` keeps a member's stored MS-DOS time instead of
    deriving it; ``unix`` and ``mode`` give the unix attributes (see above)."""
    date, dtime = dos or fmt.ns_to_dos(mtime_ns)
    extra = (fmt.build_times(mtime_ns, unix.atime_ns, True)
             + _unix_extras(mode, mtime_ns, unix, unix.uid, unix.gid)) if times else b""
    if zip64:
        extra = fmt.build_zip64(usize, csize) + extra
        csize = usize = fmt.MAX32
    return fmt.LOCAL_HEADER.pack(
        fmt.LOCAL_SIG, _needed_version(method, zip64), flags | fmt.FLAG_UTF8, method,
        dtime, date, crc, csize, usize, len(name), len(extra)) + name + extra


class _Sink:
    """Buffers output and writes it with pwrite from a start offset (to a
    descriptor or a transport, see ``archfs.engine.fileaccess``)."""

    def __init__(self, fd, pos: int):
        self.fd, self.pos = fd, pos
        self.buf = bytearray()
        self.total = 0

    def write(self, data: bytes) -> None:
        self.buf += data
        self.total += len(data)
        if len(self.buf) >= WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.pos = pwrite_all(self.fd, bytes(self.buf), self.pos)
        self.buf.clear()


def append_bytes(fd: int, at: int, path: str, data: bytes, mtime_ns: int, level: int,
                 is_dir: bool = False, times: bool = True,
                 method: int = fmt.DEFLATED, unix: UnixAttrs = NO_UNIX,
                 mode: Optional[int] = None) -> Written:
    """Append a member whose whole content is in memory, compressed with
    ``method`` when that makes it smaller (else stored)."""
    encoded = encode_member(path, data, mtime_ns, level, is_dir, times, method, unix, mode)
    sink = _Sink(fd, at)
    sink.write(encoded.header)
    sink.write(encoded.payload)
    sink.flush()
    return encoded.written(at)


class Encoded(NamedTuple):
    """A member built in memory, not yet placed: its local header and data."""

    header: bytes
    payload: bytes
    usize: int
    crc: int
    method: int
    flags: int

    @property
    def size(self) -> int:
        return len(self.header) + len(self.payload)

    def written(self, at: int) -> Written:
        return Written(at, len(self.payload), self.usize, self.crc, self.method,
                       fmt.FLAG_UTF8 | self.flags, at + self.size)


def append_encoded(fd, at: int, members) -> "list[Written]":
    """Append ``Encoded`` members one after the other with one write."""
    placed, parts, pos = [], [], at
    for member in members:
        placed.append(member.written(pos))
        parts += (member.header, member.payload)
        pos += member.size
    pwrite_all(fd, b"".join(parts), at)
    return placed


def encode_member(path: str, data: bytes, mtime_ns: int, level: int, is_dir: bool = False,
                  times: bool = True, method: int = fmt.DEFLATED, unix: UnixAttrs = NO_UNIX,
                  mode: Optional[int] = None) -> Encoded:
    """A member whose whole content is in memory, compressed with ``method``
    when that makes it smaller (else stored), as the bytes to append."""
    name = member_name_bytes(path, is_dir)
    crc = inflater.crc32(data)
    used, payload = fmt.STORED, data
    if level > 0 and data and not is_dir and method != fmt.STORED:
        packed = compress_bytes(method, level, data)
        if len(packed) < len(data):
            used, payload = method, packed
    flags = method_flags(used)
    zip64 = len(data) >= ZIP64_THRESHOLD
    header = local_header(name, used, flags, mtime_ns, crc, len(payload), len(data), zip64,
                          times, unix=unix, mode=mode)
    return Encoded(header, payload, len(data), crc, used, flags)


def append_file(fd: int, at: int, path: str, source: str, mtime_ns: int, level: int,
                method: int = fmt.DEFLATED, unix: UnixAttrs = NO_UNIX) -> Written:
    """Append the content of a local file, compressed as a stream with
    ``method`` unless a sample shows it does not compress."""
    with open(source, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        if size <= SMALL_FILE:
            return append_bytes(fd, at, path, src.read(), mtime_ns, level, method=method,
                                unix=unix)
        first = src.read(WRITE_CHUNK)
        if method == fmt.STORED or not worth_compressing(first[:1 << 16], level):
            method = fmt.STORED
        flags = method_flags(method)
        zip64 = size >= ZIP64_THRESHOLD
        name = member_name_bytes(path, False)
        # until the data is written, the header carries no local header
        # signature: recovery walks members by their headers, and must stop here
        placeholder = PLACEHOLDER_SIG + local_header(name, method, flags, mtime_ns, 0, 0, 0,
                                                     zip64, unix=unix)[4:]
        pwrite_all(fd, placeholder, at)
        sink = _Sink(fd, at + len(placeholder))
        encoder = make_encoder(method, level) if method != fmt.STORED else None
        crc = usize = 0
        chunk = first
        while chunk:
            crc = inflater.crc32(chunk, crc)
            usize += len(chunk)
            sink.write(encoder.compress(chunk) if encoder else chunk)
            chunk = src.read(WRITE_CHUNK)
        if encoder:
            sink.write(encoder.finish())
        sink.flush()
    if usize >= ZIP64_THRESHOLD and not zip64:
        raise OSError("file grew past 4 GiB while being stored")
    header = local_header(name, method, flags, mtime_ns, crc, sink.total, usize, zip64,
                          unix=unix)
    pwrite_all(fd, header, at)
    return Written(at, sink.total, usize, crc, method, fmt.FLAG_UTF8 | flags, sink.pos)


def append_copy(fd: int, at: int, path: str, is_dir: bool, src_fd: int, data_start: int,
                csize: int, usize: int, crc: int, method: int, flags: int,
                mtime_ns: int, times: bool = True,
                dos: Optional[Tuple[int, int]] = None, unix: UnixAttrs = NO_UNIX,
                mode: Optional[int] = None, src_header_at: Optional[int] = None) -> Written:
    """Append an existing member's compressed bytes under a new local header.

    Used when a member's name changes: readers require the local header's
    name to match the central one. An encrypted member keeps its data
    descriptor flag, since its password check byte depends on it, and an
    AES member its AES extra field (the real method and key strength, which
    readers of local headers need), read from its old header at ``src_header_at``.
    """
    keep_descriptor = bool(flags & fmt.FLAG_ENCRYPTED and flags & fmt.FLAG_DESCRIPTOR)
    flags = (flags & ~fmt.FLAG_DESCRIPTOR) | (fmt.FLAG_DESCRIPTOR if keep_descriptor else 0)
    flags |= fmt.FLAG_UTF8
    zip64 = usize >= ZIP64_THRESHOLD or csize >= ZIP64_THRESHOLD
    header = local_header(member_name_bytes(path, is_dir), method, flags, mtime_ns, crc,
                          csize, usize, zip64, times, dos, unix, mode)
    if method == fmt.AES_MARKER:
        header = _with_extra(header, _aes_extra(src_fd, src_header_at))
    pwrite_all(fd, header, at)
    pos = at + len(header)
    copy_range(src_fd, data_start, fd, pos, csize)
    pos += csize
    if keep_descriptor:
        if zip64:
            tail = fmt.DESCRIPTOR_SIG + crc.to_bytes(4, "little") + csize.to_bytes(8, "little") \
                + usize.to_bytes(8, "little")
        else:
            tail = fmt.DESCRIPTOR_SIG + crc.to_bytes(4, "little") + csize.to_bytes(4, "little") \
                + usize.to_bytes(4, "little")
        pwrite_all(fd, tail, pos)
        pos += len(tail)
    return Written(at, csize, usize, crc, method, flags, pos)


def _aes_extra(src, header_at: int) -> bytes:
    """The AES extra block of the local header at ``header_at``."""
    fields, data_start = fmt.read_local_header(lambda n, p: pread_exact(src, n, p), header_at)
    extra = pread_exact(src, fields[10], data_start - fields[10])
    for tag, data in fmt.iter_extras(extra):
        if tag == fmt.EXTRA_AES:
            return fmt.build_extra(tag, data)
    raise CorruptMemberError("AES member without its AES extra field in the local header")


def _with_extra(header: bytes, extra: bytes) -> bytes:
    """A local header with one more extra block at the end of its extras."""
    fields = list(fmt.LOCAL_HEADER.unpack_from(header))
    fields[10] += len(extra)
    return fmt.LOCAL_HEADER.pack(*fields) + header[fmt.LOCAL_HEADER.size:] + extra


def copy_range(src_fd, src_pos: int, dst_fd, dst_pos: int, count: int) -> None:
    """Copy bytes between descriptors or transports (in the kernel when both
    are local files)."""
    fileaccess.copy_range(src_fd, src_pos, dst_fd, dst_pos, count)


def central_record(path: str, mode: int, flags: int, method: int, mtime_ns: int, crc: int,
                   csize: int, usize: int, offset: int, uid: int, gid: int,
                   kept_extras: bytes = b"", comment: bytes = b"",
                   dos: Optional[Tuple[int, int]] = None, unix: UnixAttrs = NO_UNIX) -> bytes:
    """One central directory record in archfs's canonical form.

    ``flags`` must be those of the member's local header: readers compare
    them. Every member archfs writes has the UTF-8 flag set; a member kept
    from elsewhere keeps its flags, which is only allowed for ASCII names.
    """
    is_dir = stat.S_ISDIR(mode)
    name = member_name_bytes(path, is_dir)
    big = []
    usize_f, csize_f, offset_f = usize, csize, offset
    if usize >= fmt.MAX32:
        big.append(usize)
        usize_f = fmt.MAX32
    if csize >= fmt.MAX32:
        big.append(csize)
        csize_f = fmt.MAX32
    if offset >= fmt.MAX32:
        big.append(offset)
        offset_f = fmt.MAX32
    extra = (fmt.build_zip64(*big) if big else b"") + fmt.build_times(mtime_ns, unix.atime_ns, False)
    extra += _unix_extras(mode, mtime_ns, unix, uid, gid)
    if len(extra) + len(kept_extras) <= MAX_EXTRA:
        extra += kept_extras
    date, dtime = dos or fmt.ns_to_dos(mtime_ns)
    attrs = (mode & 0xFFFF) << 16
    if is_dir:
        attrs |= fmt.DOS_DIRECTORY
    if not mode & 0o200:
        attrs |= fmt.DOS_READONLY
    return fmt.CENTRAL_HEADER.pack(
        fmt.CENTRAL_SIG, fmt.VERSION_MADE_BY, _needed_version(method, bool(big)),
        flags, method, dtime, date, crc, csize_f, usize_f, len(name),
        len(extra), len(comment[:fmt.MAX16]), 0, 0, attrs, offset_f) + name + extra + comment[:fmt.MAX16]


def end_records(cd_start: int, cd_size: int, count: int, comment: bytes) -> bytes:
    """The zip64 end record and locator when needed, then the classic EOCD."""
    out = b""
    if count >= fmt.MAX16 or cd_size >= fmt.MAX32 or cd_start >= fmt.MAX32:
        out += fmt.ZIP64_EOCD.pack(fmt.ZIP64_EOCD_SIG, fmt.ZIP64_EOCD.size - 12,
                                   fmt.VERSION_MADE_BY, fmt.VERSION_ZIP64, 0, 0,
                                   count, count, cd_size, cd_start)
        out += fmt.ZIP64_LOCATOR.pack(fmt.ZIP64_LOCATOR_SIG, 0, cd_start + cd_size, 1)
    comment = comment[:fmt.MAX_COMMENT]
    out += fmt.EOCD.pack(fmt.EOCD_SIG, 0, 0, min(count, fmt.MAX16), min(count, fmt.MAX16),
                         min(cd_size, fmt.MAX32), min(cd_start, fmt.MAX32), len(comment))
    return out + comment


def write_all(fd, data: bytes, at: int) -> int:
    """pwrite all of ``data`` at ``at``; returns the end position."""
    return pwrite_all(fd, data, at)

