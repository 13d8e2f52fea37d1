"""Helpers for the zip tests: archives built byte by byte, and the outside
tools (unzip, 7zz, bsdtar, Python's zipfile) that judge what archfs writes.

The builder here is written independently of ``archfs.zipengine.format`` on
purpose: a test that built its input with the engine's own packing code
could not catch a misreading of the format that both share.
"""

import bz2
import io
import lzma
import os
import shutil
import stat
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from archfs.zipengine.store import StoreOptions, ZipStore

# 7-Zip as Debian 12 / Ubuntu 24.04 ship it (7zz), or p7zip on older releases (7z)
SEVEN_ZIP = shutil.which("7zz") or shutil.which("7z") or "7zz"

STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
UNIX, MSDOS = 3, 0

# A fixed MS-DOS time: 2021-03-04 05:06:08 local time.
DOS_DATE = ((2021 - 1980) << 9) | (3 << 5) | 4
DOS_TIME = (5 << 11) | (6 << 5) | (8 // 2)

TOOL_ENV = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
TOOL_ENV.pop("LANGUAGE", None)


# -- extra fields, packed here independently of the engine --------------------

def extra_block(tag: int, data: bytes) -> bytes:
    return struct.pack("<HH", tag, len(data)) + data


def unicode_path_extra(raw_name: bytes, text: str, crc_of: Optional[bytes] = None) -> bytes:
    """Info-ZIP Unicode Path (0x7075): version 1, CRC-32 of the raw name, UTF-8 name."""
    crc = zlib.crc32(raw_name if crc_of is None else crc_of)
    return extra_block(0x7075, b"\x01" + struct.pack("<L", crc) + text.encode("utf-8"))


def timestamp_extra(mtime_s: int) -> bytes:
    """Info-ZIP extended timestamp (0x5455) holding the mtime only."""
    return extra_block(0x5455, b"\x01" + struct.pack("<l", mtime_s))


def ntfs_extra(mtime_ns: int) -> bytes:
    """NTFS extra (0x000a): reserved, then tag 1 with mtime, atime, ctime in 100 ns ticks."""
    ticks = (mtime_ns + 11644473600 * 10**9) // 100
    times = struct.pack("<QQQ", ticks, ticks, ticks)
    return extra_block(0x000A, b"\0" * 4 + struct.pack("<HH", 1, 24) + times)


def parse_extras(extra: bytes) -> Dict[int, bytes]:
    out, pos = {}, 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        out.setdefault(tag, extra[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out


# -- compression as zip stores it ------------------------------------------------

def compress(method: int, data: bytes) -> bytes:
    if method == STORED:
        return data
    if method == DEFLATED:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()
    if method == BZIP2:
        return bz2.compress(data, 1)
    if method == LZMA:
        lc, lp, pb, dict_size = 3, 0, 2, 1 << 20
        c = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[
            {"id": lzma.FILTER_LZMA1, "preset": 0, "dict_size": dict_size, "lc": lc, "lp": lp,
             "pb": pb}])
        props = bytes(((pb * 5 + lp) * 9 + lc,)) + struct.pack("<L", dict_size)
        return b"\x09\x14" + struct.pack("<H", len(props)) + props + c.compress(data) + c.flush()
    raise ValueError(method)


# -- the hand builder ----------------------------------------------------------

@dataclass
class Entry:
    """One member of a hand-built archive. ``name`` may be raw bytes."""

    name: object
    data: bytes = b""
    method: int = STORED
    flags: int = 0
    extra: bytes = b""                    # local and central, unless central_extra given
    central_extra: Optional[bytes] = None
    create_system: int = UNIX
    external_attr: Optional[int] = None   # default: unix 0644 file / 0755 dir
    date: int = DOS_DATE
    time: int = DOS_TIME
    crc: Optional[int] = None             # override the recorded CRC
    usize: Optional[int] = None           # override the recorded uncompressed size
    descriptor: bool = False              # sizes and CRC in a data descriptor
    comment: bytes = b""

    @property
    def raw_name(self) -> bytes:
        return self.name if isinstance(self.name, bytes) else self.name.encode("utf-8")


def build_zip(entries: Sequence[Entry], comment: bytes = b"", prefix: bytes = b"",
              adjust_offsets: bool = True, force_zip64_end: bool = False) -> bytes:
    """The bytes of an archive holding ``entries`` in order.

    ``prefix`` is prepended (a self-extractor stub); with ``adjust_offsets``
    the stored offsets count it (as ``zip -A`` leaves them), without it they
    are relative to the zip data (as plain ``cat stub a.zip`` leaves them).
    """
    out = bytearray(prefix)
    base = 0 if adjust_offsets else len(prefix)
    central = bytearray()
    for e in entries:
        raw = e.raw_name
        payload = compress(e.method, e.data)
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        usize = len(e.data) if e.usize is None else e.usize
        flags = e.flags | (0x08 if e.descriptor else 0) | (0x02 if e.method == LZMA else 0)
        version = {STORED: 10, DEFLATED: 20, BZIP2: 46, LZMA: 63}[e.method]
        offset = len(out) - base
        l_crc, l_csize, l_usize = (0, 0, 0) if e.descriptor else (crc, len(payload), usize)
        out += struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", version, flags, e.method,
                           e.time, e.date, l_crc, l_csize, l_usize, len(raw), len(e.extra))
        out += raw + e.extra + payload
        if e.descriptor:
            out += struct.pack("<4sLLL", b"PK\x07\x08", crc, len(payload), usize)
        is_dir = raw.endswith(b"/")
        attr = e.external_attr
        if attr is None:
            attr = ((stat.S_IFDIR | 0o755) << 16 | 0x10) if is_dir else (stat.S_IFREG | 0o644) << 16
        cextra = e.extra if e.central_extra is None else e.central_extra
        central += struct.pack("<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", (e.create_system << 8) | 30,
                               version, flags, e.method, e.time, e.date, crc, len(payload), usize,
                               len(raw), len(cextra), len(e.comment), 0, 0, attr, offset)
        central += raw + cextra + e.comment
    cd_start = len(out) - base
    out += central
    out += end_records(len(entries), len(central), cd_start, comment, force_zip64_end,
                       zip64_at=len(out) - base)
    return bytes(out)


def end_records(count: int, cd_size: int, cd_start: int, comment: bytes = b"",
                zip64: bool = False, zip64_at: int = 0) -> bytes:
    """[zip64 end record and locator] and the classic end record."""
    out = b""
    if zip64 or count >= 0xFFFF or cd_start >= 0xFFFFFFFF:
        out += struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, (UNIX << 8) | 45, 45, 0, 0,
                           count, count, cd_size, cd_start)
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1)
        count16, start32 = 0xFFFF, 0xFFFFFFFF
    else:
        count16, start32 = count, cd_start
    out += struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, count16, count16, cd_size,
                       start32, len(comment))
    return out + comment


def write_zip(path, entries: Sequence[Entry], **kw) -> str:
    with open(path, "wb") as f:
        f.write(build_zip(entries, **kw))
    return str(path)


def build_many(path, count: int) -> List[str]:
    """An archive of ``count`` tiny stored members (zip64 end records when needed).

    Member i is ``d<i//1000>/f<i>`` holding ``str(i)``. Returns the names.
    """
    local = bytearray()
    central = bytearray()
    names = []
    pack_local = struct.Struct("<4sHHHHHLLLHH").pack
    pack_central = struct.Struct("<4sHHHHHHLLLHHHHHLL").pack
    attr = (stat.S_IFREG | 0o644) << 16
    for i in range(count):
        name = "d%d/f%d" % (i // 1000, i)
        raw = name.encode()
        data = str(i).encode()
        crc = zlib.crc32(data)
        offset = len(local)
        local += pack_local(b"PK\x03\x04", 10, 0, 0, DOS_TIME, DOS_DATE, crc, len(data),
                            len(data), len(raw), 0) + raw + data
        central += pack_central(b"PK\x01\x02", (UNIX << 8) | 30, 10, 0, 0, DOS_TIME, DOS_DATE,
                                crc, len(data), len(data), len(raw), 0, 0, 0, 0, attr,
                                offset) + raw
        names.append(name)
    with open(path, "wb") as f:
        f.write(local)
        f.write(central)
        f.write(end_records(count, len(central), len(local), zip64_at=len(local) + len(central)))
    return names


# -- a > 4 GiB member without writing 4 GiB ----------------------------------------

def crc32_of_zeros(n: int) -> int:
    """CRC-32 of ``n`` zero bytes in O(log n).

    Feeding a zero bit into the (reflected) CRC register is a linear map over
    GF(2); a byte is that map applied eight times, and ``n`` bytes its
    ``n``-th power, found by repeated squaring.
    """
    def apply(matrix, vector):
        result, i = 0, 0
        while vector:
            if vector & 1:
                result ^= matrix[i]
            vector >>= 1
            i += 1
        return result

    def square(matrix):
        return [apply(matrix, column) for column in matrix]

    op = [0xEDB88320] + [1 << (i - 1) for i in range(1, 32)]   # one zero bit
    for _ in range(3):
        op = square(op)                                        # one zero byte
    register = 0xFFFFFFFF
    while n:
        if n & 1:
            register = apply(op, register)
        op = square(op)
        n >>= 1
    return register ^ 0xFFFFFFFF


def build_sparse_zip64(path, big_name: str, big_size: int, after: Dict[str, bytes]) -> int:
    """A zip whose first member is ``big_size`` stored zeros left as a sparse hole,
    followed by small stored members ``after`` (at offsets past 4 GiB).

    Zip64 local and central extras and zip64 end records, as Info-ZIP writes
    them. Returns the offset of the big member's data.
    """
    crc_big = crc32_of_zeros(big_size)
    raw = big_name.encode()
    local_extra = extra_block(0x0001, struct.pack("<QQ", big_size, big_size))
    header = struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", 45, 0, STORED, DOS_TIME, DOS_DATE,
                         crc_big, 0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(local_extra))
    central = bytearray()
    attr = (stat.S_IFREG | 0o644) << 16
    central += struct.pack("<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", (UNIX << 8) | 45, 45, 0,
                           STORED, DOS_TIME, DOS_DATE, crc_big, 0xFFFFFFFF, 0xFFFFFFFF,
                           len(raw), len(local_extra), 0, 0, 0, attr, 0) + raw + local_extra
    data_start = len(header) + len(raw) + len(local_extra)
    with open(path, "wb") as f:
        f.write(header + raw + local_extra)
        pos = data_start + big_size
        f.truncate(pos)           # the member's data: a hole reading as zeros
        f.seek(pos)
        for name, data in after.items():
            nraw = name.encode()
            crc = zlib.crc32(data)
            f.write(struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", 10, 0, STORED, DOS_TIME,
                                DOS_DATE, crc, len(data), len(data), len(nraw), 0) + nraw + data)
            z64 = extra_block(0x0001, struct.pack("<Q", pos))
            central += struct.pack("<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", (UNIX << 8) | 45, 45,
                                   0, STORED, DOS_TIME, DOS_DATE, crc, len(data), len(data),
                                   len(nraw), len(z64), 0, 0, 0, attr, 0xFFFFFFFF) + nraw + z64
            pos += 30 + len(nraw) + len(data)
        f.write(central)
        f.write(end_records(1 + len(after), len(central), pos, zip64=True,
                            zip64_at=pos + len(central)))
    return data_start


def build_zero_member_zip(path, first_name: str, first_data: bytes, zero_name: str,
                          zero_size: int) -> None:
    """A small stored first member, then ``zero_size`` stored zeros left as a
    sparse hole (classic headers: ``zero_size`` must stay below 4 GiB)."""
    attr = (stat.S_IFREG | 0o644) << 16
    local = struct.Struct("<4sHHHHHLLLHH").pack
    central = struct.Struct("<4sHHHHHHLLLHHHHHLL").pack
    members = [(first_name.encode(), zlib.crc32(first_data), len(first_data), first_data),
               (zero_name.encode(), crc32_of_zeros(zero_size), zero_size, None)]
    cd = b""
    with open(path, "wb") as f:
        pos = 0
        for raw, crc, size, data in members:
            cd += central(b"PK\x01\x02", (UNIX << 8) | 30, 10, 0, STORED, DOS_TIME, DOS_DATE,
                          crc, size, size, len(raw), 0, 0, 0, 0, attr, pos) + raw
            f.write(local(b"PK\x03\x04", 10, 0, STORED, DOS_TIME, DOS_DATE, crc, size, size,
                          len(raw), 0) + raw)
            pos += 30 + len(raw)
            if data is None:
                pos += size
                f.truncate(pos)
                f.seek(pos)
            else:
                f.write(data)
                pos += size
        f.write(cd)
        f.write(end_records(len(members), len(cd), pos))


# -- the engine, opened the way tests need it -------------------------------------

def open_store(path, writable: bool = True, **options) -> ZipStore:
    return ZipStore(str(path), writable, StoreOptions(**options))


def read_all(store: ZipStore) -> Dict[str, bytes]:
    """name -> content of every file and symlink member."""
    out = {}
    for name in store.names():
        with store.open_member(name) as f:
            out[name] = f.read()
    return out


def tree_of(store: ZipStore, path: str = "") -> Dict[str, str]:
    """path -> "dir" / "file" / "link" for everything below ``path``, by listdir."""
    out = {}
    for name, mode in store.listdir(path):
        child = path + "/" + name if path else name
        if stat.S_ISDIR(mode):
            out[child] = "dir"
            out.update(tree_of(store, child))
        else:
            out[child] = "link" if stat.S_ISLNK(mode) else "file"
    return out


def zipfile_contents(path) -> Dict[str, bytes]:
    """name -> content per Python's zipfile (directories left out)."""
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}


def local_header_at(path, offset: int):
    """(flags, name bytes, extra bytes) of the local header at ``offset``."""
    with open(path, "rb") as f:
        f.seek(offset)
        fixed = f.read(30)
        sig, _ver, flags, *_rest, nlen, xlen = struct.unpack("<4sHHHHHLLLHH", fixed)
        assert sig == b"PK\x03\x04", "no local header at %d" % offset
        name = f.read(nlen)
        return flags, name, f.read(xlen)


# -- the outside tools -----------------------------------------------------------------

def run(args, ok=(0,)) -> str:
    """Run a tool in a UTF-8 locale; its stdout+stderr. Fails on an unexpected exit code."""
    proc = subprocess.run(args, env=TOOL_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=120)
    text = proc.stdout.decode("utf-8", "surrogateescape")
    assert proc.returncode in ok, "%s exited %d:\n%s" % (" ".join(map(str, args)),
                                                       proc.returncode, text)
    return text


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def unzip_test(path) -> str:
    """``unzip -t``: exit 0, every member OK, no warning."""
    text = run(["unzip", "-t", str(path)])
    assert "No errors detected" in text, text
    assert "warning" not in text.lower(), text
    return text


SFX_WARNING = "The archive is open with offset"   # 7-Zip on any prepended stub


def sevenzip_test(path, sfx: bool = False) -> str:
    """``7zz t``: Everything is Ok, and no warning or error anywhere in its output.

    With ``sfx`` the one warning 7-Zip gives every archive with a stub in
    front is allowed (with its "WARNING:" header and summary line).
    """
    text = run([SEVEN_ZIP, "t", str(path)])
    assert "Everything is Ok" in text, text
    checked = text
    if sfx:
        checked = checked.replace(SFX_WARNING, "").replace("Archives with Warnings: 1", "")
        checked = checked.replace("WARNING:", "").replace("Warning:", "")
    lowered = checked.lower()
    assert "warning" not in lowered and "error" not in lowered, text
    return text


def bsdtar_names(path) -> List[str]:
    return run(["bsdtar", "tf", str(path)]).splitlines()


def zipfile_test(path) -> None:
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None


def assert_tools_accept(path, unzip: bool = True, sfx: bool = False) -> None:
    """Every tool finds the archive sound. ``unzip=False`` for an empty
    archive, which unzip reports with exit code 1 by design; ``sfx`` for an
    archive with a stub in front (see sevenzip_test)."""
    if unzip:
        unzip_test(path)
    sevenzip_test(path, sfx)
    bsdtar_names(path)
    zipfile_test(path)


def names_by_tool(path) -> Dict[str, List[str]]:
    """Sorted entry names (directories without their slash) as each tool lists them."""
    def clean(names):
        return sorted(n[:-1] if n.endswith("/") else n for n in names)

    seven = run([SEVEN_ZIP, "l", "-slt", str(path)])
    listing = seven.split("\n----------\n", 1)[1]
    seven_names = [line[len("Path = "):] for line in listing.splitlines()
                   if line.startswith("Path = ")]
    with zipfile.ZipFile(path) as z:
        py_names = z.namelist()
    return {
        "unzip": clean(run(["unzip", "-Z1", str(path)]).splitlines()),
        "7zz": clean(seven_names),
        "bsdtar": clean(bsdtar_names(path)),
        "zipfile": clean(py_names),
    }


def unzip_listing(path) -> Dict[str, str]:
    """name -> permission string from ``unzip -Z`` (e.g. ``-rwxr-x---``)."""
    out = {}
    for line in run(["unzip", "-Z", str(path)]).splitlines():
        # -rw-r--r--  6.3 unx     1234 bx defN 21-Mar-04 05:06 name with spaces
        parts = line.split(None, 8)
        if len(parts) == 9 and len(parts[0]) == 10 and parts[0][0] in "-dl":
            out[parts[8]] = parts[0]
    return out


def extract_with(tool: str, path, dest) -> Dict[str, bytes]:
    """Extract with ``tool`` into ``dest``; relative path -> content of each regular file."""
    dest = str(dest)
    os.makedirs(dest, exist_ok=True)
    if tool == "unzip":
        run(["unzip", "-qq", "-o", str(path), "-d", dest])
    elif tool == "7z":
        run([SEVEN_ZIP, "x", "-y", "-o" + dest, str(path)])
    elif tool == "bsdtar":
        run(["bsdtar", "xf", str(path), "-C", dest])
    elif tool == "zipfile":
        with zipfile.ZipFile(path) as z:
            z.extractall(dest)
    else:
        raise ValueError(tool)
    out = {}
    for root, _dirs, files in os.walk(dest):
        for name in files:
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    out[os.path.relpath(full, dest)] = f.read()
    return out


def pseudo_random(size: int, seed: int, alphabet: int = 256) -> bytes:
    """Reproducible bytes; a small ``alphabet`` makes them compressible."""
    import random
    data = random.Random(seed).randbytes(size)
    if alphabet >= 256:
        return data
    table = bytes(ord("a") + (i % alphabet) for i in range(256))
    return data.translate(table)


def zipfile_bytes(members: Dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()
