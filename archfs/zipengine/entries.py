"""The member table: one row per member, stored column by column.

A million ``ZipInfo`` objects cost hundreds of megabytes; a row here costs
about 60 bytes of typed arrays plus its name. Rows are never moved or
deleted while the archive is open: a removed member is marked dead, and a
renamed or replaced one gets a new row, so an index held by a reader or by
the tree always means the same member.
"""

import stat
from array import array
from typing import Dict, List, NamedTuple, Optional, Tuple

NO_OWNER = 0xFFFFFFFF      # (uid_t)-1: never a real owner
NO_TIME = -(1 << 63)       # in the atime/ctime columns: "the same as mtime"
SPECIAL_TYPES = frozenset((stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK))


def flagged_rows(marks) -> List[int]:
    """The indexes of the 1 bytes of ``marks`` (a flag byte per row), found
    by ``bytes.find`` in C, not by a Python loop over every row."""
    marks = bytes(marks)
    found = []
    at = marks.find(1)
    while at >= 0:
        found.append(at)
        at = marks.find(1, at + 1)
    return found


class UnixAttrs(NamedTuple):
    """What a member records beyond name, mode and mtime, for the extra
    fields written with it: atime (extended timestamp and NTFS fields),
    owner (Info-ZIP "ux") and a device number (PKWARE unix field)."""

    atime_ns: Optional[int] = None     # None: the same as mtime
    uid: int = NO_OWNER
    gid: int = NO_OWNER
    rdev: Optional[int] = None         # character and block devices only


NO_UNIX = UnixAttrs()


class Row(NamedTuple):
    """One member's fields, for code that handles members one at a time."""

    name: str
    offset: int       # of the local header
    csize: int
    usize: int
    crc: int
    method: int
    flags: int
    mtime_ns: int
    mode: int         # full st_mode
    uid: int          # NO_OWNER when the archive records none
    gid: int
    dos: Optional[Tuple[int, int]] = None   # stored MS-DOS (date, time), kept when it matters
    atime_ns: Optional[int] = None          # None: the same as mtime
    rdev: Optional[int] = None              # device number of a character or block device

    @property
    def unix(self) -> UnixAttrs:
        return UnixAttrs(self.atime_ns, self.uid, self.gid, self.rdev)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


class EntryTable:
    """Columns of member metadata plus per-row bookkeeping for commits.

    ``record_at`` is where a row's central-directory record can be copied
    verbatim from the last committed central directory or journal record
    (-1: rebuild it); ``durable_at`` is where the record describing the
    row's last committed state starts (-1: none), which a journal record
    names when it supersedes or removes the row; ``changed`` holds the rows
    added or touched since the last commit;
    ``relocate`` marks rows whose local header no longer matches the name
    archfs will write, so their data must be copied under a new header.
    ``extras`` and ``comments`` hold the rare foreign extra fields and file
    comments that a commit carries over; ``rdev`` the device numbers of the
    rare device members.

    ``atime_ns`` and ``ctime_ns`` are made only once a row needs one that
    differs from its mtime (NO_TIME elsewhere), so an archive nobody
    touches pays nothing for them. atime is stored in the archive; ctime
    (the last change of data or attributes) lives while the archive is
    open, and a row without one reports its mtime.
    """

    def __init__(self):
        self.names: List[str] = []
        self.offset = array("Q")
        self.csize = array("Q")
        self.usize = array("Q")
        self.crc = array("I")
        self.method = array("H")
        self.flags = array("H")
        self.mtime_ns = array("q")
        self.mode = array("H")        # st_mode fits in 16 bits
        self.uid = array("I")
        self.gid = array("I")
        self.record_at = array("q")
        self.record_len = array("I")
        self.durable_at = array("q")
        self.changed: set = set()
        self.dead = bytearray()
        self.relocate = bytearray()
        self.extras: Dict[int, bytes] = {}
        self.comments: Dict[int, bytes] = {}
        # the stored MS-DOS time of encrypted members: with a data descriptor
        # their password check byte is taken from it, so it must never change
        self.raw_dos: Dict[int, Tuple[int, int]] = {}
        self.rdev: Dict[int, int] = {}
        self.atime_ns: Optional[array] = None
        self.ctime_ns: Optional[array] = None

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, offset: int, csize: int, usize: int, crc: int,
            method: int, flags: int, mtime_ns: int, mode: int,
            uid: int = NO_OWNER, gid: int = NO_OWNER,
            record_at: int = -1, record_len: int = 0, relocate: bool = False,
            durable_at: int = -1) -> int:
        """Append a row and return its index."""
        self.names.append(name)
        self.offset.append(offset)
        self.csize.append(csize)
        self.usize.append(usize)
        self.crc.append(crc)
        self.method.append(method)
        self.flags.append(flags)
        self.mtime_ns.append(mtime_ns)
        self.mode.append(mode)
        self.uid.append(uid)
        self.gid.append(gid)
        self.record_at.append(record_at)
        self.record_len.append(record_len)
        self.durable_at.append(durable_at)
        self.dead.append(0)
        self.relocate.append(1 if relocate else 0)
        if self.atime_ns is not None:
            self.atime_ns.append(NO_TIME)
        if self.ctime_ns is not None:
            self.ctime_ns.append(NO_TIME)
        row = len(self.names) - 1
        self.changed.add(row)
        return row

    def row(self, i: int) -> Row:
        return Row(self.names[i], self.offset[i], self.csize[i], self.usize[i],
                   self.crc[i], self.method[i], self.flags[i], self.mtime_ns[i],
                   self.mode[i], self.uid[i], self.gid[i], self.raw_dos.get(i),
                   self.atime(i), self.rdev.get(i))

    def unix(self, i: int) -> UnixAttrs:
        return UnixAttrs(self.atime(i), self.uid[i], self.gid[i], self.rdev.get(i))

    # -- the optional columns ----------------------------------------------

    def atime(self, i: int) -> Optional[int]:
        """The row's atime when it differs from its mtime, else None."""
        column = self.atime_ns
        if column is None or column[i] == NO_TIME:
            return None
        return column[i]

    def ctime(self, i: int) -> int:
        column = self.ctime_ns
        if column is None or column[i] == NO_TIME:
            return self.mtime_ns[i]
        return column[i]

    def set_atime(self, i: int, ns: Optional[int]) -> None:
        if ns is None or ns == self.mtime_ns[i]:
            if self.atime_ns is not None:
                self.atime_ns[i] = NO_TIME
            return
        if self.atime_ns is None:
            self.atime_ns = array("q", [NO_TIME]) * len(self.names)
        self.atime_ns[i] = ns

    def set_ctime(self, i: int, ns: int) -> None:
        if self.ctime_ns is None:
            if ns == self.mtime_ns[i]:
                return
            self.ctime_ns = array("q", [NO_TIME]) * len(self.names)
        self.ctime_ns[i] = ns

    def set_unix(self, i: int, unix: UnixAttrs) -> None:
        """Record atime, owner and device number of a new row."""
        self.set_atime(i, unix.atime_ns)
        self.uid[i], self.gid[i] = unix.uid, unix.gid
        if unix.rdev is not None and stat.S_IFMT(self.mode[i]) in (stat.S_IFCHR, stat.S_IFBLK):
            self.rdev[i] = unix.rdev

    def copy_as(self, i: int, new_name: str) -> int:
        """A new row for member ``i`` under another name (rename); ``i`` dies."""
        j = self.add(new_name, self.offset[i], self.csize[i], self.usize[i],
                     self.crc[i], self.method[i], self.flags[i], self.mtime_ns[i],
                     self.mode[i], self.uid[i], self.gid[i], relocate=True)
        self._carry_sparse(i, j)
        self.dead[i] = 1
        return j

    def _carry_sparse(self, i: int, j: int) -> None:
        if i in self.extras:
            self.extras[j] = self.extras[i]
        if i in self.comments:
            self.comments[j] = self.comments[i]
        if i in self.raw_dos:
            self.raw_dos[j] = self.raw_dos[i]
        if i in self.rdev:
            self.rdev[j] = self.rdev[i]
        if self.atime_ns is not None:
            self.atime_ns[j] = self.atime_ns[i]
        if self.ctime_ns is not None:
            self.ctime_ns[j] = self.ctime_ns[i]

    def touch(self, i: int) -> None:
        """Row ``i`` changed in place: its central record must be rebuilt."""
        self.record_at[i] = -1
        self.changed.add(i)

    def live(self) -> List[int]:
        """Indices of live rows in archive order (by local header offset)."""
        dead = self.dead
        rows = [i for i in range(len(dead)) if not dead[i]]
        offsets = self.offset
        rows.sort(key=offsets.__getitem__)
        return rows
