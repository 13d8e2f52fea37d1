"""Counts and sizes of an open zip for ``archfs info``, from the member
table alone (no member data is read).

A million-member table is summed column by column with one-byte-per-row
masks (``itertools.compress`` and ``Counter`` run in C), not row by row in
Python: ``archfs info`` on such an archive costs little more than loading
its index.
"""

import stat
import sys
from collections import Counter
from itertools import compress

from archfs.zipengine import format as fmt
from archfs.zipengine.entries import EntryTable

ENCRYPTED_FLAG = 0x0001
_NOT = bytes([1]) + bytes(255)                           # 0 -> 1, 1 -> 0
_BIT0 = bytes(i & ENCRYPTED_FLAG for i in range(256))    # low flag byte -> encrypted


def _and(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") & int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _kinds(modes) -> bytes:
    """One byte a row: its file type bits >> 12 (S_IFREG -> 8, S_IFDIR -> 4, ...)."""
    kind = {m: stat.S_IFMT(m) >> 12 for m in set(modes)}
    return bytes(map(kind.__getitem__, modes))


def _is(kind: int) -> bytes:
    return bytes(int(i == kind >> 12) for i in range(256))


def any_encrypted(table: EntryTable) -> bool:
    low = table.flags.tobytes()[0 if sys.byteorder == "little" else 1::2]
    return low.translate(_BIT0).count(1) > 0


def summarize(table: EntryTable, directories: int, bad: dict, dead_bytes: int,
              file_size: int, comment: bytes) -> dict:
    """The keys of ``AbstractArchive.summary`` for the live rows of ``table``;
    ``directories`` counts those only implied by member names too."""
    live = bytes(table.dead).translate(_NOT)
    kinds = _kinds(table.mode)
    files = _and(kinds.translate(_is(stat.S_IFREG)), live)
    links = _and(kinds.translate(_is(stat.S_IFLNK)), live)
    data = _and(kinds.translate(_is(stat.S_IFDIR)).translate(_NOT), live)
    low = table.flags.tobytes()[0 if sys.byteorder == "little" else 1::2]
    encrypted_rows = _and(low.translate(_BIT0), data)
    methods = Counter(compress(table.method, data))
    encrypted = Counter("AES" if m == fmt.AES_MARKER else "ZipCrypto"
                        for m in compress(table.method, encrypted_rows))
    facts = {
        "files": files.count(1), "directories": directories, "symlinks": links.count(1),
        "size": sum(compress(table.usize, files)), "archive_bytes": file_size,
        "compressed_bytes": sum(compress(table.csize, data)), "dead_bytes": dead_bytes,
        "methods": {_method_name(m): count for m, count in methods.most_common()},
        "encrypted": dict(encrypted),
        "damaged": {table.names[r]: why for r, why in sorted(bad.items())
                    if not table.dead[r]},
    }
    if comment:
        facts["comment"] = comment.decode("utf-8", "replace")
    return facts


def _method_name(method: int) -> str:
    if method == fmt.AES_MARKER:
        return "AES (encrypted)"
    return fmt.METHOD_NAMES.get(method, "method %d" % method)
