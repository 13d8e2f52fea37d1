"""Opening a member for reading: method and encryption checks, the local
header (``memberinfo.py``), and a seekable MemberReader over the shared
archive file."""

import stat

from archfs.errors import CorruptMemberError, InvalidArgument
from archfs.zipengine import format as fmt, memberinfo
from archfs.zipengine.memberreader import SMALL_MEMBER, MemberReader, small_content
from archfs.zipengine.smallbatch import Plain


class Reading:
    """Part of ZipStore: members opened for reading, counted by offset so the
    space of a removed member is not reused while a reader still has it."""

    def _readable_row(self, path: str):
        """(Under ``_meta``.) The row of a file member and its record; a
        member the scan found damaged is refused here, before any read."""
        row = self._file_row(path)
        why = self._bad.get(row)
        if why:
            raise CorruptMemberError("%s: %s" % (path, why))
        return row, self._table.row(row)

    def open_member(self, path: str) -> MemberReader:
        """A seekable reader of a file or symlink member."""
        with self._meta:
            row, r = self._readable_row(path)
            extras = self._table.extras.get(row, b"")
            source = self._file.retain()
            limit = self._end
            self._readers_at[r.offset] = self._readers_at.get(r.offset, 0) + 1
        try:
            info = memberinfo.describe(source, r, extras, limit, self.options.password)
            seek_index = (self._seek_cache.get(info.key)
                          if info.method != fmt.STORED or info.decrypter is not None else None)
            return MemberReader(source, info, seek_index, self._verdicts,
                                on_close=lambda: self._reader_closed(r.offset))
        except BaseException:
            source.release()
            self._reader_closed(r.offset)
            raise

    def read_small(self, path: str):
        """A small member's whole content, decoded and checked, without a
        reader; None for a member that needs one (bigger than
        ``SMALL_MEMBER``, or a link)."""
        with self._meta:
            row, r = self._readable_row(path)
            if r.usize > SMALL_MEMBER or not stat.S_ISREG(self._table.mode[row]):
                return None
            extras = self._table.extras.get(row, b"")
            source = self._file.retain()
            limit = self._end
            counted = self.writable    # only a writer could reuse the member's space
            if counted:
                self._readers_at[r.offset] = self._readers_at.get(r.offset, 0) + 1
        try:
            info = memberinfo.describe(source, r, extras, limit, self.options.password)
            return small_content(source, info, self._verdicts)
        finally:
            source.release()
            if counted:
                self._reader_closed(r.offset)

    def small_plans(self, paths):
        """Read-ahead's batch for the decoder process (the plugin API's
        ``small_plans``): a ``smallbatch.FileDecoder`` on this archive's
        descriptor and a ``Plain`` tuple per member it may serve; None
        where the archive is no local file."""
        fd = getattr(self._file, "fd", None)
        plans = self._plain_members(paths) if fd is not None else None
        if plans is None:
            return None
        return (("archfs.zipengine.smallbatch", "FileDecoder", (fd, self._end), (fd,)),
                [None if p is None else tuple(p) for p in plans])

    def _plain_members(self, paths):
        """Plain of each path's member that ``smallbatch`` may serve, else
        None; None for all on a writable store (a writer could reuse a
        member's space under the read)."""
        if self.writable:
            return None
        table, bad = self._table, self._bad
        plain = []
        with self._meta:
            for path in paths:
                try:
                    row = self._file_row(path)
                except OSError:
                    plain.append(None)
                    continue
                method, usize = table.method[row], table.usize[row]
                if (row in bad or usize > SMALL_MEMBER or method not in (0, 8)
                        or table.flags[row] & fmt.FLAG_ENCRYPTED
                        or not stat.S_ISREG(table.mode[row])):
                    plain.append(None)
                    continue
                # (a member the ordinary path found damaged fails here too:
                # every check it makes on such a member is made here)
                plain.append(Plain(usize, table.offset[row], table.csize[row],
                                   table.crc[row], method))
        return plain

    def _reader_closed(self, offset: int) -> None:
        with self._meta:
            left = self._readers_at.get(offset, 0) - 1
            if left > 0:
                self._readers_at[offset] = left
            else:
                self._readers_at.pop(offset, None)

    def readlink(self, path: str) -> str:
        with self._meta:
            row = self._file_row(path)
            if not stat.S_ISLNK(self._table.mode[row]):
                raise InvalidArgument("%s: not a symbolic link" % path)
        with self.open_member(path) as reader:
            return reader.read().decode("utf-8", "surrogateescape")

