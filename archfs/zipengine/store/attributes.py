"""Unix attributes of members: mode, times, owner, special files, and the
names a zip archive can hold.

The mode lives only in the central record. Times and owner are also in the
local header (Info-ZIP's unzip restores them from there), so changing them
rewrites the local header: in place while the member is not yet committed
and the header keeps its length, else by copying the member at the next
commit. atime is kept where it differs from mtime (the local extended
timestamp and the NTFS field hold it); ctime lives while the archive is
open. FIFOs, sockets and devices are members without data whose unix file
type is in the external attributes; a device's number is in a PKWARE unix
extra field.
"""

import stat
import time
from typing import NamedTuple, Optional, Tuple

from archfs.errors import InvalidArgument, NameTooLong, NoSuchFile, NotSupported
from archfs.zipengine import format as fmt, writer
from archfs.zipengine.entries import NO_OWNER, UnixAttrs
from archfs.zipengine.names import NAME_MAX
from archfs.zipengine.tree import DIR_MODE


class MemberAttrs(NamedTuple):
    """Everything ``attrs`` tells about a member or directory."""

    mode: int
    size: int
    mtime_ns: int
    uid: int                  # NO_OWNER when the archive records none
    gid: int
    atime_ns: int
    ctime_ns: int             # last change of data or attributes (kept in memory)
    nlink: int                # 1; a directory: 2 plus its subdirectories
    rdev: int                 # device number of a character or block device, else 0


def check_new_name(path: str) -> None:
    """Refuse, with the reason, a name a zip archive cannot hold as given."""
    if "\x00" in path:
        raise InvalidArgument("%r: a name cannot hold a NUL byte" % path)
    if "\\" in path:
        raise InvalidArgument("%r: a backslash reads back as a directory separator in "
                              "a zip archive" % path)
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("%r: not valid UTF-8; a zip archive stores names as UTF-8"
                              % path) from None
    for part in raw.split(b"/"):
        if len(part) > NAME_MAX:
            raise NameTooLong("%s...: a name component of %d bytes (at most %d)"
                              % (part[:40].decode("utf-8", "replace"), len(part), NAME_MAX))
        if part in (b"", b".", b".."):
            raise InvalidArgument("%r: empty, '.' or '..' component" % path)
    if len(raw) >= fmt.MAX16:
        raise NameTooLong("%s...: a path of %d bytes (a zip name holds at most %d)"
                          % (path[:40], len(raw), fmt.MAX16 - 1))


class Attributes:
    """Part of ZipStore: attributes of members, and special files."""

    def attrs(self, path: str) -> MemberAttrs:
        """``stat`` plus atime, ctime, link count and device number."""
        found = self.attrs_or_none(path)
        if found is None:
            raise NoSuchFile("%s: no such file or directory" % path)
        return found

    def attrs_or_none(self, path: str) -> Optional[MemberAttrs]:
        """``attrs``, or None for a missing name (the usual answer before a
        file is made: no exception to build and unwind)."""
        t = self._table
        with self._meta:
            node, row = self._tree.lookup(path)
            nlink = 2 + len(node.subdirs) if node is not None else 1
            if row >= 0:
                size = 0 if node is not None else t.usize[row]
                mtime = t.mtime_ns[row]
                atime = t.atime(row)
                return MemberAttrs(t.mode[row], size, mtime, t.uid[row], t.gid[row],
                                   mtime if atime is None else atime, t.ctime(row), nlink,
                                   t.rdev.get(row, 0))
            if node is not None:
                if path == "":
                    mode, mtime, uid, gid, ctime = self._root
                    mtime = mtime or self._known_identity.mtime_ns
                    return MemberAttrs(mode, 0, mtime, uid, gid, mtime, max(ctime, mtime),
                                       nlink, 0)
                mtime = self._known_identity.mtime_ns
                return MemberAttrs(DIR_MODE, 0, mtime, NO_OWNER, NO_OWNER, mtime, mtime, nlink, 0)
        return None

    def _unix_for(self, path: str, owner: Optional[Tuple[int, int]],
                  atime_ns: Optional[int] = None, rdev: Optional[int] = None) -> UnixAttrs:
        """The unix attributes of a member about to be stored at ``path``:
        the owner given, else that of the member it replaces."""
        if owner is None:
            with self._meta:
                old = self._tree.paths.get(path, -1)
                if old >= 0 and not self._table.dead[old]:
                    owner = (self._table.uid[old], self._table.gid[old])
        uid, gid = owner if owner is not None else (NO_OWNER, NO_OWNER)
        return UnixAttrs(atime_ns, uid & 0xFFFFFFFF, gid & 0xFFFFFFFF, rdev)

    def mknod(self, path: str, mode: int, rdev: int = 0,
              owner: Optional[Tuple[int, int]] = None) -> None:
        """A FIFO, socket, character or block device (``mode`` has the type)."""
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
            raise InvalidArgument("%s: mknod makes FIFOs, sockets and devices only" % path)
        now = time.time_ns()
        device = rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else None
        unix = self._unix_for(path, owner or (NO_OWNER, NO_OWNER), rdev=device)
        self._store(path, mode & 0o7777, now, False, kind,
                    lambda fd, at: writer.append_bytes(fd, at, path, b"", now, 0, unix=unix,
                                                       mode=mode),
                    unix)

    def chmod(self, path: str, mode: int) -> None:
        self._change(path, mode=mode & 0o7777)

    def utime(self, path: str, mtime_ns: Optional[int], atime_ns: Optional[int] = None) -> None:
        """Set mtime and/or atime (None leaves one as it is)."""
        self._change(path, mtime_ns=mtime_ns, atime_ns=atime_ns)

    def chown(self, path: str, uid: Optional[int], gid: Optional[int]) -> None:
        """Record an owner (None leaves a part as it is)."""
        self._change(path, uid=uid, gid=gid)

    def _change(self, path: str, mode: Optional[int] = None, mtime_ns: Optional[int] = None,
                atime_ns: Optional[int] = None, uid: Optional[int] = None,
                gid: Optional[int] = None) -> None:
        """chmod/utime/chown (see the module docstring for what is rewritten)."""
        self._check_writable()
        t = self._table
        now = time.time_ns()
        if path == "":
            with self._meta:
                root = self._root
                if mode is not None:
                    root[0] = stat.S_IFDIR | mode
                if mtime_ns is not None:
                    root[1] = mtime_ns
                if uid is not None:
                    root[2] = uid
                if gid is not None:
                    root[3] = gid
                root[4] = now
            return
        with self._append, self._meta:
            node, row = self._tree.lookup(path)
            if node is None and row < 0:
                raise NoSuchFile("%s: no such file or directory" % path)
            if row >= 0:
                header = False
                old_atime = t.atime(row)
                old_atime = t.mtime_ns[row] if old_atime is None else old_atime
                new_atime = old_atime if atime_ns is None else atime_ns
                if mtime_ns is not None and mtime_ns != t.mtime_ns[row]:
                    if row in t.raw_dos:
                        raise NotSupported("%s: the time of an encrypted member cannot "
                                           "change (its password check depends on it)" % path)
                    t.mtime_ns[row] = mtime_ns
                    header = True
                if new_atime != old_atime or header:
                    t.set_atime(row, new_atime)
                    header = True
                for column, value in ((t.uid, uid), (t.gid, gid)):
                    if value is not None and value & 0xFFFFFFFF != column[row]:
                        column[row] = value & 0xFFFFFFFF
                        header = True
                if t.uid[row] != NO_OWNER and t.gid[row] == NO_OWNER:
                    t.gid[row] = 0          # "ux" holds both: an owner without a group is root's
                if mode is not None:
                    t.mode[row] = stat.S_IFMT(t.mode[row]) | mode
                if header and not self._retime_in_place(row):
                    t.relocate[row] = 1
                t.set_ctime(row, now)
                t.touch(row)
                self._dirty = True
                return
        # an implied directory gets an explicit entry to hold the attribute
        current = self.attrs(path)
        owner = (current.uid if uid is None else uid, current.gid if gid is None else gid)
        if owner == (NO_OWNER, NO_OWNER):
            owner = None
        elif NO_OWNER in owner:
            owner = tuple(0 if part == NO_OWNER else part for part in owner)
        self._add_dir_entry(path, current.mode if mode is None else mode,
                            current.mtime_ns if mtime_ns is None else mtime_ns, must_be_new=False,
                            unix=self._unix_for(path, owner or (NO_OWNER, NO_OWNER), atime_ns),
                            ctime_ns=now)

    def _retime_in_place(self, row: int) -> bool:
        """Rewrite the local header of a not yet committed member with its new
        times and owner; False if it is committed (its header must then not
        change) or the new header has another length."""
        t = self._table
        if t.offset[row] < self._first_uncommitted() or t.relocate[row]:
            return False
        found = fmt.read_local_header(self._file.pread, t.offset[row])
        if found is None:
            return False
        fields, data_start = found
        r = t.row(row)
        zip64 = fields[7] == fmt.MAX32
        header = writer.local_header(writer.member_name_bytes(r.name, r.is_dir), r.method,
                                     fields[2], r.mtime_ns, r.crc, r.csize, r.usize, zip64,
                                     dos=r.dos, unix=r.unix, mode=r.mode)
        if len(header) != data_start - r.offset:
            return False
        writer.write_all(self._file, header, r.offset)
        self._remember_identity()
        return True

    def _first_uncommitted(self) -> int:
        """Where the bytes written since the last commit begin: after the
        durable state, or (atomic transport) where the directory began."""
        return self._unpublished_from if self._file.atomic else self._committed_end
