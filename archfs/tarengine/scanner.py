"""Reading a tar stream's headers into a member table, in one forward pass.

The stream is read in big chunks (a compressed stream is decoded once,
front to back); a member's data is skipped, not parsed. Every dialect of
``headers.py`` is understood, plus GNU and pax sparse files (old GNU ``S``
headers, pax 0.0, 0.1 and 1.0) and pax extended attributes.

Hostile input is bounded: an extended header (pax or GNU long name) over
``MAX_EXTENDED`` bytes, a sparse map over ``MAX_SPARSE`` entries, a bad
header checksum or a member running past the end stop the scan there or
mark that member damaged, with a reason; nothing grows without bound.
"""

import logging
import os
import stat
from typing import Callable, Dict, List, Optional, Tuple

from archfs.errors import NotAnArchiveError, UnsupportedFeature
from archfs.tarengine import headers as hd
from archfs.tarengine.names import decode, safe_path
from archfs.tarengine.table import TarTable

log = logging.getLogger("archfs.tar")

CHUNK = 1 << 20
MAX_EXTENDED = 8 << 20        # one pax header or GNU long name
MAX_SPARSE = 1 << 20          # entries in one member's sparse map

_TYPE_MODE = {
    hd.SYMLINK: stat.S_IFLNK, hd.CHARDEV: stat.S_IFCHR, hd.BLOCKDEV: stat.S_IFBLK,
    hd.DIRECTORY: stat.S_IFDIR, hd.FIFO: stat.S_IFIFO, hd.GNU_DUMPDIR: stat.S_IFDIR,
}


class ScanResult:
    def __init__(self, table: TarTable):
        self.table = table
        self.end = 0                  # offset of the end-of-archive blocks (or where it stopped)
        self.stream_end = 0           # bytes the stream holds, when the scan reached its end
        self.complete = True          # False: stopped at damage; ``problem`` says why
        self.problem: Optional[str] = None
        self.terminated = True        # ended with a zero block (False: the stream just ended)


class _Blocks:
    """Blocks of the stream, read ahead in chunks."""

    def __init__(self, pread: Callable[[int, int], bytes]):
        self._pread = pread
        self._buf = b""
        self._start = 0

    def read(self, pos: int, size: int) -> bytes:
        end = pos + size
        if self._start <= pos and end <= self._start + len(self._buf):
            return self._buf[pos - self._start:end - self._start]
        if size > CHUNK:
            return self._pread(size, pos)
        self._buf = self._pread(max(CHUNK, size), pos)
        self._start = pos
        return self._buf[:size]


def scan(pread: Callable[[int, int], bytes], progress: Optional[Callable[[int], None]] = None,
         start: int = 0, table: Optional[TarTable] = None, size_hint: int = -1) -> ScanResult:
    """Read every header from ``start``; ``pread(size, pos)`` reads the stream."""
    result = ScanResult(table if table is not None else TarTable())
    _Scanner(pread, result, progress, size_hint).run(start)
    return result


class _Scanner:
    def __init__(self, pread, result: ScanResult, progress, size_hint: int):
        self.blocks = _Blocks(pread)
        self.result = result
        self.table = result.table
        self.progress = progress
        self.size_hint = size_hint
        self.globals: Dict[str, bytes] = {}

    def stop(self, pos: int, why: str) -> None:
        self.result.complete = False
        self.result.problem = why
        self.result.end = pos

    def run(self, pos: int) -> None:
        result, table = self.result, self.table
        pax: Dict[str, bytes] = {}
        longname = longlink = None
        member_start = pos
        count = 0
        while True:
            block = self.blocks.read(pos, hd.BLOCK)
            if len(block) < hd.BLOCK:
                result.end = result.stream_end = pos + len(block)
                result.terminated = False
                if block or pax or longname is not None:
                    self.stop(pos, "the archive ends inside a header at offset %d" % pos)
                break
            if hd.is_zero(block):
                result.end = pos
                break
            try:
                h = hd.parse(block)
            except hd.TarFormatError as exc:
                if pos == 0:
                    raise NotAnArchiveError("not a tar archive (%s)" % exc) from None
                self.stop(pos, "bad header at offset %d (%s); members after it are not shown"
                          % (pos, exc))
                break
            kind = h.typeflag
            data = pos + hd.BLOCK
            if kind in (hd.PAX_LOCAL, hd.SOLARIS_X, hd.PAX_GLOBAL, hd.GNU_LONGNAME,
                        hd.GNU_LONGLINK):
                if h.size > MAX_EXTENDED or h.size < 0:
                    self.stop(pos, "extended header of %d bytes at offset %d is over the "
                              "limit of %d; members after it are not shown"
                              % (h.size, pos, MAX_EXTENDED))
                    break
                raw = self.blocks.read(data, h.size)
                if len(raw) < h.size:
                    self.stop(pos, "the archive ends inside a header at offset %d" % pos)
                    break
                if kind in (hd.GNU_LONGNAME, hd.GNU_LONGLINK):
                    value = raw.split(b"\0", 1)[0]
                    if kind == hd.GNU_LONGNAME:
                        longname = value
                    else:
                        longlink = value
                else:
                    try:
                        records = hd.pax_records(raw)
                    except hd.TarFormatError as exc:
                        self.stop(pos, "bad pax header at offset %d (%s)" % (pos, exc))
                        break
                    target = self.globals if kind == hd.PAX_GLOBAL else pax
                    for key, value in records:
                        if key == "GNU.sparse.offset":     # pax 0.0: pairs repeat
                            target.setdefault("\0sparse", []).append([int(value), None])
                        elif key == "GNU.sparse.numbytes":
                            pairs = target.get("\0sparse")
                            if not pairs or pairs[-1][1] is not None:
                                self.stop(pos, "bad sparse map at offset %d" % pos)
                                return
                            pairs[-1][1] = int(value)
                        elif value == b"" and key in target and kind == hd.PAX_LOCAL:
                            del target[key]
                        else:
                            target[key] = value
                    if len(target.get("\0sparse", ())) > MAX_SPARSE:
                        self.stop(pos, "sparse map over %d entries at offset %d"
                                  % (MAX_SPARSE, pos))
                        break
                pos = data + h.size + hd.padding(h.size)
                continue
            if kind == hd.GNU_MULTIVOL:
                raise UnsupportedFeature(
                    "multi-volume tar archives are not supported (member continued from "
                    "another volume at offset %d); join the volumes with GNU tar first" % pos)
            if kind in (hd.GNU_VOLHDR, hd.GNU_NAMES):
                pos = data + h.size + hd.padding(h.size)
                member_start = pos
                continue
            try:
                pos = self.member(h, member_start, data, pax, longname, longlink)
            except (ValueError, OverflowError) as exc:
                self.stop(member_start, "bad member at offset %d (%s); members after it are "
                          "not shown" % (member_start, exc))
                break
            if pos < 0:
                break
            pax = {}
            longname = longlink = None
            member_start = pos
            count += 1
            if self.progress is not None and count % 4096 == 0:
                self.progress(pos)
        if result.stream_end and self.size_hint < 0:
            self._mark_truncated(result.stream_end)

    def _mark_truncated(self, stream_end: int) -> None:
        t = self.table
        for r in range(len(t) - 1, -1, -1):
            if t.data[r] + t.size[r] <= stream_end:
                break
            t.bad.setdefault(r, "member data runs past the end of the archive")

    def member(self, h: hd.Header, start: int, data: int, pax: Dict[str, bytes],
               longname: Optional[bytes], longlink: Optional[bytes]) -> int:
        """Add one member; returns the position of the next header (-1: stop)."""
        if not pax and not self.globals and longname is None and h.typeflag in (b"0", b"5") \
                and self.size_hint < 0:
            return self.plain_member(h, start, data)
        if self.globals:
            fields = dict(self.globals)
            fields.update(pax)
        else:
            fields = pax
        name = h.name
        if longname is not None:
            name = longname
        if "path" in fields:
            name = fields["path"]
        linkname = longlink if longlink is not None else h.linkname
        if "linkpath" in fields:
            linkname = fields["linkpath"]
        size = int(fields["size"]) if "size" in fields else h.size
        if size < 0:
            raise ValueError("negative size")
        kind = h.typeflag
        file_type = _TYPE_MODE.get(kind, stat.S_IFREG)
        if kind in (b"0", b"\0", b"7") or kind not in _TYPE_MODE and kind != hd.HARDLINK:
            file_type = stat.S_IFREG
            if name.endswith(b"/") and kind in (b"0", b"\0"):
                file_type = stat.S_IFDIR      # v7 directories
        uid = int(fields["uid"]) if "uid" in fields else h.uid
        gid = int(fields["gid"]) if "gid" in fields else h.gid
        mtime_ns = _pax_time(fields["mtime"]) if "mtime" in fields else h.mtime * 10 ** 9
        usize = size
        sparse = None
        next_pos = data + size + hd.padding(size)
        if kind == hd.GNU_SPARSE:
            sparse, data, usize = self.old_gnu_sparse(h, data)
            next_pos = data + size + hd.padding(size)
        elif "GNU.sparse.major" in fields or "GNU.sparse.map" in fields or "\0sparse" in fields:
            if "GNU.sparse.name" in fields:
                name = fields["GNU.sparse.name"]
            usize = int(fields.get("GNU.sparse.realsize", fields.get("GNU.sparse.size", b"0")))
            if fields.get("GNU.sparse.major") == b"1":
                sparse, skip = self.pax1_sparse(data, size)
                data += skip
                size -= skip
            elif "GNU.sparse.map" in fields:
                numbers = [int(x) for x in fields["GNU.sparse.map"].split(b",") if x]
                if len(numbers) % 2 or len(numbers) > 2 * MAX_SPARSE:
                    raise ValueError("bad sparse map")
                sparse = list(zip(numbers[0::2], numbers[1::2]))
            else:
                sparse = [tuple(p) for p in fields["\0sparse"]]
        path = safe_path(decode(name))
        if not path:
            return next_pos       # an entry for the archive's root ("./")
        t = self.table
        mode = file_type | (h.mode & 0o7777)
        if kind == hd.HARDLINK:
            mode = stat.S_IFREG | (h.mode & 0o7777)
        row = t.add(path, start, data, size, usize, mtime_ns, mode, uid, gid)
        if kind == hd.SYMLINK:
            t.links[row] = decode(linkname)
            t.usize[row] = len(linkname)      # a symlink's size is its target's length
        elif kind == hd.HARDLINK:
            t.links[row] = safe_path(decode(linkname))
        elif kind in (hd.CHARDEV, hd.BLOCKDEV):
            major = int(fields.get("SCHILY.devmajor", h.devmajor))
            minor = int(fields.get("SCHILY.devminor", h.devminor))
            t.rdev[row] = os.makedev(major & 0xFFFFFFFF, minor & 0xFFFFFFFF)
        if sparse is not None:
            why = _check_sparse(sparse, usize, size)
            if why:
                t.bad[row] = why
            else:
                t.sparse[row] = sparse
        xattrs = _xattrs(fields)
        if xattrs:
            t.xattrs[row] = xattrs
        if self.size_hint >= 0 and data + size > self.size_hint:
            t.bad[row] = "member data runs past the end of the archive"
            self.result.stream_end = self.size_hint
            self.result.end = start
            self.result.terminated = False
            self.result.complete = False
            self.result.problem = "the archive is cut short inside %s" % path
            return -1
        return next_pos

    def plain_member(self, h: hd.Header, start: int, data: int) -> int:
        """The common case, kept short: a file or directory with no extensions."""
        path = safe_path(decode(h.name))
        size = h.size
        if path:
            file_type = stat.S_IFDIR if h.typeflag == b"5" or h.name.endswith(b"/") \
                else stat.S_IFREG
            self.table.add(path, start, data, size, size, h.mtime * 1_000_000_000,
                           file_type | (h.mode & 0o7777), h.uid, h.gid)
        return data + size + (-size % 512)

    def old_gnu_sparse(self, h: hd.Header, data: int) -> Tuple[List[Tuple[int, int]], int, int]:
        entries, extended, realsize = hd.gnu_sparse_header(h.block)
        while extended:
            block = self.blocks.read(data, hd.BLOCK)
            if len(block) < hd.BLOCK:
                raise ValueError("sparse map cut short")
            more, extended = hd.gnu_sparse_extension(block)
            entries.extend(more)
            data += hd.BLOCK
            if len(entries) > MAX_SPARSE:
                raise ValueError("sparse map over %d entries" % MAX_SPARSE)
        return entries, data, realsize

    def pax1_sparse(self, data: int, size: int) -> Tuple[List[Tuple[int, int]], int]:
        """The map at the start of a pax 1.0 sparse member's data, and its length."""
        numbers: List[int] = []
        pos = data
        want = None
        text = b""
        while want is None or len(numbers) < want:
            if pos - data >= size:
                raise ValueError("sparse map runs past the member")
            block = self.blocks.read(pos, hd.BLOCK)
            if len(block) < hd.BLOCK:
                raise ValueError("sparse map cut short")
            pos += hd.BLOCK
            text += block
            lines = text.split(b"\n")
            text = lines.pop()
            for line in lines:
                numbers.append(int(line))
                if want is None:
                    want = 1 + 2 * numbers[0]
                    if numbers[0] > MAX_SPARSE or numbers[0] < 0:
                        raise ValueError("sparse map over %d entries" % MAX_SPARSE)
                if len(numbers) >= want:
                    break
            if len(text) > 64 and (want is None or len(numbers) < want):
                raise ValueError("bad sparse map")
        pairs = numbers[1:want]
        return list(zip(pairs[0::2], pairs[1::2])), pos - data


def _check_sparse(sparse, usize: int, stored: int) -> Optional[str]:
    end = 0
    total = 0
    for offset, length in sparse:
        if offset < end or length < 0 or offset + length > usize:
            return "bad sparse map"
        end = offset + length
        total += length
    if total > stored:
        return "sparse map holds more data than the member stores"
    return None


def _pax_time(value: bytes) -> int:
    text = value.decode("ascii")
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(".")
    ns = int(whole or "0") * 10 ** 9 + int((fraction + "000000000")[:9])
    return -ns if negative else ns


def _xattrs(fields: Dict[str, bytes]) -> List[Tuple[str, bytes]]:
    found: Dict[str, bytes] = {}
    for key, value in fields.items():
        if key.startswith("SCHILY.xattr."):
            found[key[13:]] = value
        elif key.startswith("LIBARCHIVE.xattr."):
            import urllib.parse
            name = urllib.parse.unquote(key[17:], errors="surrogateescape")
            if name not in found:
                try:
                    import base64
                    found[name] = base64.b64decode(value + b"=" * (-len(value) % 4))
                except ValueError:
                    continue
    return list(found.items())
