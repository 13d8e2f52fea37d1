"""Counts and sizes of an open zip for ``archfs info``, from the member
table alone (no member data is read)."""

import stat
from collections import Counter

from archfs.zipengine import format as fmt
from archfs.zipengine.entries import EntryTable

ENCRYPTED_FLAG = 0x0001


def summarize(table: EntryTable, directories: int, bad: dict, dead_bytes: int,
              file_size: int, comment: bytes) -> dict:
    """The keys of ``AbstractArchive.summary`` for the live rows of ``table``;
    ``directories`` counts those only implied by member names too."""
    files = symlinks = size = compressed = 0
    methods: Counter = Counter()
    encrypted: Counter = Counter()
    modes, usize, csize = table.mode, table.usize, table.csize
    method, flags = table.method, table.flags
    for r in table.live():
        kind = stat.S_IFMT(modes[r])
        if kind == stat.S_IFDIR:
            continue
        if kind == stat.S_IFLNK:
            symlinks += 1
        else:
            files += 1
            size += usize[r]
        compressed += csize[r]
        methods[method[r]] += 1
        if flags[r] & ENCRYPTED_FLAG:
            encrypted["AES" if method[r] == fmt.AES_MARKER else "ZipCrypto"] += 1
    facts = {
        "files": files, "directories": directories, "symlinks": symlinks, "size": size,
        "archive_bytes": file_size, "compressed_bytes": compressed,
        "dead_bytes": dead_bytes,
        "methods": {_method_name(m): n for m, n in methods.most_common()},
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
