"""Where each member's bytes end: its local header, data and data descriptor.

Moving a member verbatim (compaction, the checkpoint that reuses a dead
central directory's space) and counting dead bytes exactly both need a
member's full extent, which the central directory does not give: the local
header's extra field has its own length, and a data descriptor may follow
the data. Headers are read through a window that serves neighbouring
members from one read, so a million small members cost a sequential pass
over the file, not a million system calls.
"""

from typing import Iterable, List, Optional, Tuple

from archfs.zipengine import format as fmt
from archfs.zipengine.centraldir import pread_exact

WINDOW = 1 << 20


class Window:
    """``pread`` through a read-ahead buffer, for mostly ascending positions."""

    def __init__(self, fd: int, size: int = WINDOW):
        self.fd = fd
        self.size = size
        self.start = 0
        self.data = b""

    def __call__(self, n: int, pos: int) -> bytes:
        if not (self.start <= pos and pos + n <= self.start + len(self.data)):
            if n > self.size:
                return pread_exact(self.fd, n, pos)
            # a jump past big members reads a little; a run of small ones a lot
            far = pos > self.start + len(self.data) + self.size
            self.start = pos
            self.data = pread_exact(self.fd, max(n, 4096) if far else self.size, pos)
        at = pos - self.start
        return self.data[at:at + n]


def member_length(pread, offset: int, csize: int, usize: int) -> Optional[int]:
    """Bytes from the local header at ``offset`` to the end of the member
    (descriptor included), or None if no local header is there."""
    found = fmt.read_local_header(pread, offset)
    if found is None:
        return None
    fields, data_start = found
    end = data_start + csize
    if fields[2] & fmt.FLAG_DESCRIPTOR:
        zip64 = fields[7] == fmt.MAX32 or fields[8] == fmt.MAX32 or max(csize, usize) >= fmt.MAX32
        signed = pread(4, end) == fmt.DESCRIPTOR_SIG
        end += (4 if signed else 0) + 4 + (16 if zip64 else 8)
    return end - offset


def lengths(fd: int, members: Iterable[Tuple[int, int, int]]) -> List[Optional[int]]:
    """``member_length`` of each (offset, csize, usize), best in ascending order."""
    window = Window(fd)
    return [member_length(window, offset, csize, usize) for offset, csize, usize in members]
