"""Finding the last complete commit after a crash, and cutting off the rest.

A commit appends after the archive's end and finishes with a new end
record (see ``store/__init__.py``), so a crash leaves the last good end record
followed by an unfinished tail. ``find_last_good_end`` scans backward for
end records and takes the newest whose central directory parses completely.
An end record found inside member data (a zip stored in the zip) is not
taken for the archive's own: its offsets only fit with a shift, and the
only shift accepted is that of a self-extracting stub, which puts the
archive's first local header exactly at the shift.
"""

import os
from typing import Optional

from archfs.errors import CorruptArchiveError
from archfs.zipengine import format as fmt
from archfs.zipengine.centraldir import (
    EndRecord,
    check_end,
    first_local_header,
    pread_exact,
    read_central_directory,
)

SCAN_BLOCK = 1 << 20
OWN_TAIL_SIGS = (fmt.LOCAL_SIG, fmt.CENTRAL_SIG, fmt.ZIP64_EOCD_SIG, fmt.EOCD_SIG)


def find_last_good_end(fd: int, file_size: int, path: str = "") -> Optional[EndRecord]:
    """The newest end record whose central directory checks out completely."""
    stub = None
    hi = file_size
    while hi > 0:
        lo = max(0, hi - SCAN_BLOCK)
        block = pread_exact(fd, min(hi + 3, file_size) - lo, lo)
        found = block.rfind(fmt.EOCD_SIG)
        while found >= 0:
            pos = lo + found
            if pos < hi:
                record = pread_exact(fd, fmt.EOCD.size, pos)
                if len(record) == fmt.EOCD.size:
                    end = check_end(fd, file_size, pos, record, allow_shift=True)
                    if end is not None and end.shift:
                        if stub is None:
                            stub = first_local_header(fd, file_size)
                        if end.shift != stub:
                            end = None
                    if end is not None and _parses(fd, file_size, end, path):
                        return end
            found = block.rfind(fmt.EOCD_SIG, 0, found)
        hi = lo
    return None


def _parses(fd: int, file_size: int, end: EndRecord, path: str) -> bool:
    try:
        read_central_directory(fd, file_size, end, path)
    except (CorruptArchiveError, ValueError, UnicodeError):
        return False
    return True


def is_own_tail(fd: int, start: int, file_size: int) -> bool:
    """Whether the bytes after the last good end look like an unfinished commit.

    archfs's tails begin with a local header, a central header or an end
    record; a crash can also leave zeros where the data had not reached the
    disk. Anything else is somebody else's data and is not cut without being
    asked (``archfs repair``).
    """
    head = pread_exact(fd, min(4096, file_size - start), start)
    if not head.strip(b"\x00"):
        return True
    sig = head[:4].rstrip(b"\x00")   # a signature may be cut short, followed by zeros
    return any(own.startswith(sig) for own in OWN_TAIL_SIGS)


def cut_tail(fd: int, end: int) -> None:
    """Truncate the archive to ``end`` and make that durable."""
    os.ftruncate(fd, end)
    os.fsync(fd)
