"""A generated corpus: one small archive per case the conformance test judges.

Every compression method archfs reads, WinZip AES, every kind of damage the
lenient reading handles, odd names, and what stays unreadable. Built here
byte by byte (and by 7-Zip where it writes a method itself), independently
of ``archfs.zipengine``: the shrink and implode encoders below follow the
APPNOTE on their own, and 7-Zip, which reads both, is the judge of whether
they and archfs's decoders agree.

``CASES`` maps a case name to a builder ``build(directory) -> Case``.
"""

import hashlib
import lzma
import os
import random
import struct
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from zip_builders import SEVEN_ZIP, end_records

PASSWORD = "corpus pass"
LOCAL = struct.Struct("<4sHHHHHLLLHH")
CENTRAL = struct.Struct("<4sHHHHHHLLLHHHHHLL")
EOCD = struct.Struct("<4sHHHHLLH")
DOS_DATE = ((2022 - 1980) << 9) | (6 << 5) | 7
DOS_TIME = (8 << 11) | (9 << 5) | 5
FILE_ATTR = (0o100644 << 16)


def text(size: int, seed: int = 1) -> bytes:
    """Compressible text of ``size`` bytes (words, repeated unevenly)."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(400)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:size])


BINARY = bytes(random.Random(7).getrandbits(8) for _ in range(3000))


@dataclass
class Member:
    """One member: ``payload`` is the stored data as it goes in the archive."""

    name: bytes
    data: bytes
    method: int
    payload: bytes
    flags: int = 0
    extra: bytes = b""
    crc: Optional[int] = None
    descriptor: bool = False
    version: int = 63


@dataclass
class Case:
    path: Path
    password: Optional[str] = None
    names: Optional[Dict[str, bytes]] = None     # exact names and contents served
    lenient: bool = False                          # a warning says it was read leniently
    refused: bool = False                          # no reader reads it; the mount is refused
    failing: Dict[str, int] = field(default_factory=dict)   # name -> errno of a read


# -- packing ---------------------------------------------------------------------

def pack(members: Sequence[Member], comment: bytes = b"", prefix: bytes = b"",
         count: Optional[int] = None, base: int = 0, zip64_end: bool = False):
    """(archive bytes, central directory start, end record position).

    ``base`` is added to every recorded offset (negative: offsets that do
    not count a prefix); ``count`` overrides the member count of the end record.
    """
    out = bytearray(prefix)
    central = bytearray()
    for m in members:
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        offset = len(out) + base
        l_crc, l_csize, l_usize = (0, 0, 0) if m.descriptor else (crc, len(m.payload), len(m.data))
        flags = m.flags | (0x08 if m.descriptor else 0)
        out += LOCAL.pack(b"PK\x03\x04", m.version, flags, m.method, DOS_TIME, DOS_DATE, l_crc,
                          l_csize, l_usize, len(m.name), len(m.extra)) + m.name + m.extra
        out += m.payload
        if m.descriptor:
            out += struct.pack("<4sLLL", b"PK\x07\x08", crc, len(m.payload), len(m.data))
        central += CENTRAL.pack(b"PK\x01\x02", (3 << 8) | 63, m.version, flags, m.method,
                                DOS_TIME, DOS_DATE, crc, len(m.payload), len(m.data),
                                len(m.name), len(m.extra), 0, 0, 0, FILE_ATTR, offset)
        central += m.name + m.extra
    cd_start = len(out)
    out += central
    n = len(members) if count is None else count
    eocd_at = len(out) + (76 if zip64_end else 0)
    out += end_records(n, len(central), cd_start + base, comment, zip64_end,
                       zip64_at=len(out) + base)
    return bytes(out), cd_start, eocd_at


def member(name: str, data: bytes, method: int = 0, payload: Optional[bytes] = None,
           **kw) -> Member:
    if payload is None:
        payload = compress(method, data)
    if method == 14:
        kw["flags"] = kw.get("flags", 0) | 2      # the stream has an end marker
    return Member(name.encode(), data, method, payload, **kw)


def compress(method: int, data: bytes) -> bytes:
    if method == 0:
        return data
    if method == 8:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()
    if method == 9:
        import inflate64
        d = inflate64.Deflater()
        return d.deflate(data) + d.flush()
    if method == 12:
        import bz2
        return bz2.compress(data, 9)
    if method == 14:
        return lzma_zip(data)
    if method == 93:
        from backports import zstd
        return zstd.compress(data, 3)
    if method == 95:
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)
    if method == 6:
        return implode(data, large=True, literal_tree=True)
    if method == 1:
        return shrink(data)
    raise ValueError(method)


def lzma_zip(data: bytes, end_marker: bool = True) -> bytes:
    """Zip's LZMA: version, properties size, 5 property bytes, raw LZMA1.

    liblzma always ends a raw stream with an end marker; a stream without
    one is that stream cut to the shortest prefix still decoding to ``data``
    (what an encoder that knows the size writes ends about there too).
    """
    dict_size = 1 << 16
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": 3, "lp": 0, "pb": 2}]
    c = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=filters)
    stream = c.compress(data) + c.flush()
    if not end_marker:
        def decodes(n):
            d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
            try:
                return d.decompress(stream[:n], len(data)) == data
            except lzma.LZMAError:
                return False
        lo, hi = 1, len(stream)
        while lo < hi:
            mid = (lo + hi) // 2
            if decodes(mid):
                hi = mid
            else:
                lo = mid + 1
        stream = stream[:lo]
    props = bytes(((2 * 5 + 0) * 9 + 3,)) + struct.pack("<L", dict_size)
    return b"\x09\x14" + struct.pack("<H", len(props)) + props + stream


# -- shrink (method 1) and implode (method 6) encoders, from the APPNOTE -------------

class BitWriter:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value: int, bits: int) -> None:
        self.acc |= value << self.n
        self.n += bits
        while self.n >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.n -= 8

    def done(self) -> bytes:
        if self.n:
            self.out.append(self.acc & 0xFF)
        return bytes(self.out)


def shrink(data: bytes) -> bytes:
    """LZW with 9..13-bit codes, ``256,1`` to widen them and ``256,2`` to free
    the table's leaves once it is full."""
    w = BitWriter()
    width = 9
    table = {}                       # (prefix code, byte) -> code
    parent = {}                      # code -> (prefix code, byte)
    free = list(range(8191, 256, -1))   # pop() gives the lowest

    def emit(code):
        nonlocal width
        while code >= 1 << width:
            w.put(256, width)
            w.put(1, width)
            width += 1
        w.put(code, width)

    i = 0
    while i < len(data):
        code = data[i]
        i += 1
        while i < len(data) and (code, data[i]) in table:
            code = table[(code, data[i])]
            i += 1
        emit(code)
        if i >= len(data):
            break
        if not free:
            children = {p for p, _b in parent.values()}
            if code not in children and code > 256:
                continue              # it would be freed: clear at a later code
            w.put(256, width)
            w.put(2, width)
            for c in [c for c in parent if c not in children]:
                del table[parent.pop(c)]
            free = sorted(set(range(257, 8192)) - set(parent), reverse=True)
        new = free.pop()
        table[(code, data[i])] = new
        parent[new] = (code, data[i])
    return w.done()


def _sf_codes(lengths: List[int]) -> List[int]:
    """Shannon-Fano codes (bit-reversed, ready to write least significant bit
    first) from bit lengths, by the APPNOTE's algorithm."""
    order = sorted(range(len(lengths)), key=lambda v: lengths[v])
    codes = [0] * len(lengths)
    code = increment = last = 0
    for v in reversed(order):
        code += increment
        if lengths[v] != last:
            last = lengths[v]
            increment = 1 << (16 - last)
        codes[v] = code
    return [int(format(codes[v] >> (16 - lengths[v]), "0%db" % lengths[v])[::-1], 2)
            for v in range(len(lengths))]


def _tree_bytes(lengths: List[int]) -> bytes:
    runs = bytearray()
    i = 0
    while i < len(lengths):
        j = i
        while j < len(lengths) and lengths[j] == lengths[i] and j - i < 16:
            j += 1
        runs.append(((j - i - 1) << 4) | (lengths[i] - 1))
        i = j
    return bytes((len(runs) - 1,)) + bytes(runs)


def implode(data: bytes, large: bool, literal_tree: bool) -> bytes:
    """Greedy LZ77 over a 4 or 8 KiB window with uneven Shannon-Fano trees."""
    # literals: the 64 most common bytes get 7 bits, the next 64 8, the rest 9
    by_count = sorted(range(256), key=lambda b: -data.count(bytes((b,))))
    lit_len = [9] * 256
    for rank, b in enumerate(by_count):
        lit_len[b] = 7 if rank < 64 else 8 if rank < 128 else 9
    # lengths and distances: the small values get the short codes (each tree complete)
    len_len = [5] * 16 + [6] * 16 + [7] * 32
    dist_len = [5] * 16 + [6] * 16 + [7] * 32
    lit_codes, len_codes, dist_codes = _sf_codes(lit_len), _sf_codes(len_len), _sf_codes(dist_len)
    w = BitWriter()
    head = (_tree_bytes(lit_len) if literal_tree else b"") + _tree_bytes(len_len) \
        + _tree_bytes(dist_len)
    low_bits = 7 if large else 6
    window = 8192 if large else 4096
    min_match = 3 if literal_tree else 2
    longest = min_match + 63 + 255
    heads: Dict[bytes, int] = {}
    i = 0
    while i < len(data):
        best_len = best_dist = 0
        key = data[i:i + 3]
        if len(key) == 3 and key in heads and i - heads[key] <= window:
            j = heads[key]
            n = 0
            while i + n < len(data) and n < longest and data[j + n] == data[i + n]:
                n += 1
            if n >= min_match:
                best_len, best_dist = n, i - j
        if len(key) == 3:
            heads[key] = i
        if best_len:
            d = best_dist - 1
            w.put(0, 1)
            w.put(d & ((1 << low_bits) - 1), low_bits)
            high = d >> low_bits
            w.put(dist_codes[high], dist_len[high])
            length = best_len - min_match
            code = min(length, 63)
            w.put(len_codes[code], len_len[code])
            if code == 63:
                w.put(length - 63, 8)
            for k in range(i + 1, min(i + best_len, len(data) - 2)):
                heads[data[k:k + 3]] = k
            i += best_len
        else:
            w.put(1, 1)
            if literal_tree:
                w.put(lit_codes[data[i]], lit_len[data[i]])
            else:
                w.put(data[i], 8)
            i += 1
    return head + w.done()


# -- WinZip AES, written with the same library archfs reads it with ----------------------

def aes_member(name: str, data: bytes, method: int, strength: int, version: int,
               password: str = PASSWORD, tamper: bool = False) -> Member:
    import hmac

    from Cryptodome.Cipher import AES
    from Cryptodome.Util import Counter
    key_size = {1: 16, 2: 24, 3: 32}[strength]
    salt = hashlib.sha256(name.encode() + bytes((strength, version))).digest()[:key_size // 2]
    material = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, 1000, 2 * key_size + 2)
    key, mac_key, check = material[:key_size], material[key_size:2 * key_size], material[-2:]
    plain = compress(method, data)
    cipher = AES.new(key, AES.MODE_CTR, counter=Counter.new(128, initial_value=1,
                                                            little_endian=True))
    body = bytearray(cipher.encrypt(plain))
    mac = hmac.new(mac_key, bytes(body), "sha1").digest()[:10]
    if tamper:
        body[len(body) // 2] ^= 0x01
    extra = struct.pack("<HHH2sBH", 0x9901, 7, version, b"AE", strength, method)
    return Member(name.encode(), data, 99, salt + check + bytes(body) + mac, flags=1,
                  extra=extra, crc=0 if version == 2 else None, version=51)


# -- the cases -----------------------------------------------------------------------------

def _write(directory, name: str, data: bytes) -> Path:
    path = Path(directory) / name
    path.write_bytes(data)
    return path


def _sevenzip(directory, name: str, files: Dict[str, bytes], *switches) -> Path:
    src = Path(directory) / (name + "-src")
    src.mkdir()
    for n, d in files.items():
        (src / n).write_bytes(d)
    path = Path(directory) / name
    subprocess.run([SEVEN_ZIP, "a", "-tzip", *switches, str(path), *files], cwd=src,
                   check=True, stdout=subprocess.DEVNULL)
    return path


SMALL = text(5000)
LARGE = text(3 << 20, seed=3)          # past the size decoded whole at open


def _method_case(method: int, data: bytes = SMALL, **kw):
    def build(directory):
        m = member("packed.bin", data, method, **kw)
        archive, _cd, _eocd = pack([m, member("plain.txt", b"beside it\n")])
        return Case(_write(directory, "method-%d.zip" % method, archive),
                    names={"packed.bin": data, "plain.txt": b"beside it\n"})
    return build


def build_lzma_without_end_marker(directory):
    m = Member(b"noeos.txt", SMALL, 14, lzma_zip(SMALL, end_marker=False))
    archive, _cd, _eocd = pack([m])
    return Case(_write(directory, "lzma-no-eos.zip", archive), names={"noeos.txt": SMALL})


def build_zstd_frames(directory):
    from backports import zstd
    payload = b"".join(zstd.compress(LARGE[i:i + (1 << 20)]) for i in range(0, len(LARGE), 1 << 20))
    archive, _cd, _eocd = pack([Member(b"frames.txt", LARGE, 93, payload)])
    return Case(_write(directory, "zstd-frames.zip", archive), names={"frames.txt": LARGE})


def build_xz_streams(directory):
    payload = b"".join(lzma.compress(LARGE[i:i + (1 << 20)], format=lzma.FORMAT_XZ)
                       for i in range(0, len(LARGE), 1 << 20))
    archive, _cd, _eocd = pack([Member(b"streams.txt", LARGE, 95, payload)])
    return Case(_write(directory, "xz-streams.zip", archive), names={"streams.txt": LARGE})


def build_implode_variants(directory):
    data = text(40000, seed=5) + BINARY
    members = [Member(b"4k-2trees.txt", data, 6, implode(data, False, False)),
               Member(b"8k-2trees.txt", data, 6, implode(data, True, False), flags=2),
               Member(b"4k-3trees.txt", data, 6, implode(data, False, True), flags=4),
               Member(b"8k-3trees.txt", data, 6, implode(data, True, True), flags=6)]
    archive, _cd, _eocd = pack(members)
    return Case(_write(directory, "implode.zip", archive),
                names={m.name.decode(): data for m in members})


def build_shrink_with_clears(directory):
    data = text(120000, seed=9) + BINARY      # fills the table: partial clears
    archive, _cd, _eocd = pack([Member(b"shrunk.txt", data, 1, shrink(data))])
    return Case(_write(directory, "shrink.zip", archive), names={"shrunk.txt": data})


def build_7zip_methods(directory):
    """Deflate64 and PPMd members as 7-Zip writes them."""
    files = {"d64.txt": text(70000, seed=11), "ppmd.txt": text(60000, seed=12)}
    src = Path(directory) / "7z-methods-src"
    src.mkdir()
    for n, d in files.items():
        (src / n).write_bytes(d)
    path = Path(directory) / "7z-methods.zip"
    for switch, name in (("-mm=Deflate64", "d64.txt"), ("-mm=PPMd", "ppmd.txt")):
        subprocess.run([SEVEN_ZIP, "a", "-tzip", switch, str(path), name], cwd=src, check=True,
                       stdout=subprocess.DEVNULL)
    return Case(path, names=files)


def build_aes(directory):
    data = text(20000, seed=13)
    members = [aes_member("ae1-128.txt", data, 8, 1, 1), aes_member("ae1-192.txt", data, 0, 2, 1),
               aes_member("ae2-256.txt", data, 8, 3, 2), aes_member("ae2-128-stored.txt", data, 0, 1, 2),
               aes_member("ae1-256-big.txt", LARGE, 93, 3, 1)]
    archive, _cd, _eocd = pack(members)
    names = {m.name.decode(): m.data for m in members}
    return Case(_write(directory, "aes.zip", archive), password=PASSWORD, names=names)


def build_aes_by_7zip(directory):
    files = {"seven.txt": text(30000, seed=14), "seven-big.bin": LARGE}
    return Case(_sevenzip(directory, "7z-aes.zip", files, "-mem=AES256", "-p" + PASSWORD),
                password=PASSWORD, names=files)


def build_aes_tampered(directory):
    m = aes_member("tampered.txt", text(9000, seed=15), 8, 3, 2, tamper=True)
    archive, _cd, _eocd = pack([m, member("plain.txt", b"fine\n")])
    return Case(_write(directory, "aes-tampered.zip", archive), password=PASSWORD,
                names={"plain.txt": b"fine\n"}, failing={"tampered.txt": 5})


def _sample_members():
    return [member("one.txt", SMALL, 8), member("two/bin.dat", BINARY),
            member("three.txt", text(9000, seed=2), 12)]


def _sample_names():
    return {"one.txt": SMALL, "two/bin.dat": BINARY, "three.txt": text(9000, seed=2)}


def _damaged(name: str, change: Callable[[bytes, int, int], bytes], **case):
    def build(directory):
        archive, cd, eocd = pack(_sample_members(), **case.pop("pack", {}))
        data = change(archive, cd, eocd)
        return Case(_write(directory, name + ".zip", data), lenient=True, **case)
    return build


def _set_eocd(field_index: int, value: int):
    def change(data: bytes, _cd: int, eocd: int) -> bytes:
        fields = list(EOCD.unpack_from(data, eocd))
        fields[field_index] = value
        return data[:eocd] + EOCD.pack(*fields) + data[eocd + EOCD.size:]
    return change


def _cut_in_directory(data, cd, _eocd):
    return data[:cd + 30]


def _cut_in_member(data, cd, _eocd):
    return data[:cd - 100]          # the last member is cut; the first two are whole


def _comment_cut(data, _cd, _eocd):
    return data[:-20]               # the end record's comment is 30 bytes; 10 remain


def _offset_wrong(data, cd, eocd):
    return _set_eocd(6, cd + 7)(data, cd, eocd)


def _size_small(data, cd, eocd):
    return _set_eocd(5, (eocd - cd) // 2)(data, cd, eocd)


def _size_large(data, cd, eocd):
    return _set_eocd(5, (eocd - cd) + 40)(data, cd, eocd)


def _bad_eocd_sig(data, _cd, eocd):
    return data[:eocd] + b"PK\x05\x07" + data[eocd + 4:]


def _bad_central_sig(data, cd, _eocd):
    second = cd + CENTRAL.size + len(b"one.txt")
    return data[:second] + b"PX\x01\x02" + data[second + 4:]


def _central_comment_wrong(data, cd, _eocd):
    pos = cd + 32                   # comment length of the first record
    return data[:pos] + struct.pack("<H", 9) + data[pos + 2:]


def _gap_before_eocd(data, _cd, eocd):
    return data[:eocd] + b"\0" * 11 + data[eocd:]


def _junk_after(data, _cd, _eocd):
    return data + b"some trailing junk"


def _multidisk(data, cd, eocd):
    data = _set_eocd(1, 1)(data, cd, eocd)
    data = _set_eocd(2, 1)(data, cd, eocd)
    pos = cd
    out = bytearray(data)
    for _ in range(3):              # every record says disk 1
        struct.pack_into("<H", out, pos + 34, 1)
        nlen, xlen, clen = struct.unpack_from("<HHH", out, pos + 28)
        pos += CENTRAL.size + nlen + xlen + clen
    return bytes(out)


def build_prefixed_wrong_base(directory):
    """A stub in front, offsets counting from the zip data (``cat stub a.zip``)."""
    archive, _cd, _eocd = pack(_sample_members(), prefix=b"#!/bin/sh\necho stub\n" * 40,
                               base=-800)
    return Case(_write(directory, "prefixed-wrong-base.zip", archive), names=_sample_names())


def build_zip64_ffff_disks(directory):
    archive, cd, eocd = pack(_sample_members(), zip64_end=True)
    data = bytearray(archive)
    struct.pack_into("<HH", data, eocd + 4, 0xFFFF, 0xFFFF)    # the zip64 record holds 0
    return Case(_write(directory, "zip64-ffff-disks.zip", bytes(data)), names=_sample_names())


def build_descriptor_offsets_off(directory):
    """Stored members with data descriptors whose recorded offsets leave the
    descriptors out, so later members are not where the directory says."""
    members = [member("a.xml", text(700, seed=21), descriptor=True),
               member("b.xml", text(300, seed=22), descriptor=True)]
    archive, cd, _eocd = pack(members)
    data = bytearray(archive)
    second = cd + CENTRAL.size + 5
    offset, = struct.unpack_from("<L", data, second + 42)
    struct.pack_into("<L", data, second + 42, offset - 16)
    z = data.rfind(b"PK\x05\x06")
    struct.pack_into("<L", data, z + 16, cd - 32)
    return Case(_write(directory, "descriptor-offsets-off.zip", bytes(data)), lenient=True,
                names={"a.xml": text(700, seed=21), "b.xml": text(300, seed=22)})


def build_descriptor_contradicts(directory):
    """A deflated member whose data descriptor gives other sizes than the
    central record (which is right)."""
    m = member("dd.txt", SMALL, 8, descriptor=True)
    archive, cd, _eocd = pack([m, member("after.txt", b"after\n")])
    data = bytearray(archive)
    desc = data.rfind(b"PK\x07\x08", 0, cd)
    struct.pack_into("<LL", data, desc + 8, 12345, 54321)
    return Case(_write(directory, "descriptor-contradicts.zip", bytes(data)),
                names={"dd.txt": SMALL, "after.txt": b"after\n"})


def build_local_disagrees(directory):
    """The local header says stored, the central record deflated: the data
    is deflated and checks out by the central record."""
    m = member("disagree.txt", SMALL, 8)
    archive, _cd, _eocd = pack([m])
    data = bytearray(archive)
    struct.pack_into("<H", data, 8, 0)
    return Case(_write(directory, "local-disagrees.zip", bytes(data)),
                names={"disagree.txt": SMALL})


def build_dot_names(directory):
    members = [member("a/../b", b"dotdot\n"), member("a/./b", b"dot\n"), member("a/b", b"plain\n"),
               member("../../up.txt", b"up\n"), member("c\\d.txt", b"backslash\n")]
    archive, _cd, _eocd = pack(members)
    return Case(_write(directory, "dot-names.zip", archive),
                names={"a/%2E%2E/b": b"dotdot\n", "a/%2E/b": b"dot\n", "a/b": b"plain\n",
                       "up.txt": b"up\n", "c/d.txt": b"backslash\n"})


def build_not_a_zip(directory):
    return Case(_write(directory, "not-a-zip.zip", b"this is plain text, " * 50), refused=True)


def build_split_segment(directory):
    """The last segment of a real split archive: its members lie on disk 0."""
    archive, cd, eocd = pack(_sample_members())
    data = _set_eocd(1, 2)(archive, cd, eocd)
    data = _set_eocd(2, 2)(data, cd, eocd)
    return Case(_write(directory, "split-segment.zip", data[cd:]), refused=True)


CASES: Dict[str, Callable] = {
    "stored": _method_case(0),
    "deflate": _method_case(8, LARGE),
    "deflate64": _method_case(9, LARGE),
    "bzip2": _method_case(12),
    "lzma": _method_case(14, LARGE),
    "lzma-no-end-marker": build_lzma_without_end_marker,
    "zstd": _method_case(93, LARGE),
    "zstd-frames": build_zstd_frames,
    "xz": _method_case(95),
    "xz-streams": build_xz_streams,
    "implode": build_implode_variants,
    "shrink": build_shrink_with_clears,
    "7zip-deflate64-ppmd": build_7zip_methods,
    "aes": build_aes,
    "aes-by-7zip": build_aes_by_7zip,
    "aes-tampered": build_aes_tampered,
    "truncated-in-directory": _damaged("truncated-cd", _cut_in_directory),
    "truncated-in-member": _damaged("truncated-member", _cut_in_member),
    "comment-truncated": _damaged("comment-cut", _comment_cut, pack={"comment": b"c" * 30}),
    "cd-offset-wrong": _damaged("cd-offset", _offset_wrong),
    "cd-size-small": _damaged("cd-size-small", _size_small),
    "cd-size-large": _damaged("cd-size-large", _size_large),
    "count-high": _damaged("count-high", _set_eocd(4, 9)),
    "count-low": _damaged("count-low", _set_eocd(4, 1)),
    "eocd-bad-signature": _damaged("eocd-sig", _bad_eocd_sig),
    "central-bad-signature": _damaged("central-sig", _bad_central_sig),
    "central-comment-length": _damaged("central-comment", _central_comment_wrong),
    "gap-before-eocd": _damaged("gap", _gap_before_eocd),
    "trailing-junk": _damaged("junk", _junk_after),
    "single-file-multidisk": _damaged("multidisk", _multidisk),
    "prefixed-wrong-base": build_prefixed_wrong_base,
    "zip64-ffff-disks": build_zip64_ffff_disks,
    "descriptor-offsets-off": build_descriptor_offsets_off,
    "descriptor-contradicts": build_descriptor_contradicts,
    "local-disagrees": build_local_disagrees,
    "dot-names": build_dot_names,
    "not-a-zip": build_not_a_zip,
    "split-segment": build_split_segment,
}

# cases whose strict reading works (no warning expected) though built by _damaged
NOT_LENIENT = {"trailing-junk", "single-file-multidisk"}


def build(name: str, directory) -> Case:
    case = CASES[name](directory)
    if name in NOT_LENIENT:
        case.lenient = False
    return case


def all_names() -> List[str]:
    return list(CASES)


def everything(directory) -> Dict[str, Case]:
    os.makedirs(directory, exist_ok=True)
    return {name: build(name, directory) for name in CASES}
