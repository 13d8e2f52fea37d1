"""The member table of a tar archive: one row per member, column by column.

Offsets are positions in the tar stream (the decompressed stream for a
compressed archive). ``header`` is where a member's first header block is
(including pax and GNU long-name members before it), ``data`` where its data
starts, ``size`` the bytes stored there and ``usize`` the size it shows
(larger for a sparse file). The rare fields live in dicts by row: link
targets, device numbers, sparse maps, extended attributes, damage.
"""

import stat
import threading
from array import array
from typing import Dict, List, Tuple

NO_OWNER = 0xFFFFFFFF


class _SavedNames:
    """``TarTable.names`` of a table loaded from a saved index: split from
    the saved NUL-joined text at first use, not while the mount starts
    (splitting 100,000 names is a good part of loading the index, and a
    listing of the top directory needs none of them). Once split, the list
    sits in the instance and this descriptor is out of the way."""

    _lock = threading.Lock()

    def __get__(self, table, owner=None):
        if table is None:
            return self
        with self._lock:
            names = table.__dict__.get("names")
            if names is None:
                data, count = table._saved_names
                names = data.decode("utf-8", "surrogateescape").split("\x00") if count else []
                table.__dict__["names"] = names
                table._saved_names = None
        return names


class TarTable:
    names = _SavedNames()

    def __init__(self):
        self.names: List[str] = []
        self.header = array("Q")
        self.data = array("Q")
        self.size = array("Q")
        self.usize = array("Q")
        self.mtime_ns = array("q")
        self.mode = array("I")
        self.uid = array("I")
        self.gid = array("I")
        self.dead = bytearray()
        self.links: Dict[int, str] = {}        # symlink target, or hard link target path
        self.hardlink: Dict[int, int] = {}     # hard link row -> the row it names
        self.rdev: Dict[int, int] = {}
        self.sparse: Dict[int, List[Tuple[int, int]]] = {}  # row -> [(offset, length)]
        self.xattrs: Dict[int, List[Tuple[str, bytes]]] = {}
        self.bad: Dict[int, str] = {}          # row -> why its data cannot be read

    def __len__(self) -> int:
        return len(self.mode)

    def set_saved_names(self, data: bytes, count: int) -> None:
        """The names as an index saved them (``count`` NUL-joined UTF-8
        names), split when first used. The count is checked now, so a
        damaged index is refused while loading, not at first use."""
        if (data.count(b"\x00") + 1 if count else len(data)) != count:
            raise ValueError("index holds a different number of names than %d" % count)
        self.__dict__.pop("names", None)
        self._saved_names = (bytes(data), count)

    def add(self, name: str, header: int, data: int, size: int, usize: int,
            mtime_ns: int, mode: int, uid: int = NO_OWNER, gid: int = NO_OWNER) -> int:
        self.names.append(name)
        self.header.append(header)
        self.data.append(data)
        self.size.append(size)
        self.usize.append(usize)
        self.mtime_ns.append(mtime_ns)
        self.mode.append(mode)
        self.uid.append(uid & 0xFFFFFFFF)
        self.gid.append(gid & 0xFFFFFFFF)
        self.dead.append(0)
        return len(self.names) - 1

    def target(self, row: int) -> int:
        """The row holding the data and inode of ``row`` (itself unless a hard link)."""
        return self.hardlink.get(row, row)

    def is_dir(self, row: int) -> bool:
        return stat.S_ISDIR(self.mode[row])

    def live(self) -> List[int]:
        dead = self.dead
        return [r for r in range(len(dead)) if not dead[r]]

    def end_of(self, row: int) -> int:
        """Where the member's data ends, padded to a whole block."""
        return self.data[row] + (self.size[row] + 511) // 512 * 512
