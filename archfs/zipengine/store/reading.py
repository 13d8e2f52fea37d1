"""Opening a member for reading: method and encryption checks, the local
header, and a seekable MemberReader over the shared archive file."""

import stat

from archfs.errors import (
    CorruptMemberError,
    InvalidArgument,
    PasswordRequired,
    UnsupportedFeature,
)
from archfs.zipengine import format as fmt
from archfs.zipengine.archivefile import ArchiveFile
from archfs.zipengine.codecs import check_method
from archfs.zipengine.memberreader import MemberInfo, MemberReader
from archfs.zipengine.zipcrypto import HEADER_SIZE as CRYPT_HEADER, open_decrypter


class Reading:
    """Part of ZipStore: members opened for reading, counted by offset so the
    space of a removed member is not reused while a reader still has it."""

    def open_member(self, path: str) -> MemberReader:
        """A seekable reader of a file or symlink member."""
        with self._meta:
            row = self._file_row(path)
            why = self._bad.get(row)
            if why:
                raise CorruptMemberError("%s: %s" % (path, why))
            r = self._table.row(row)
            source = self._file.retain()
            limit = self._end
            self._readers_at[r.offset] = self._readers_at.get(r.offset, 0) + 1
        try:
            info = self._member_info(source, r, limit)
            seek_index = self._seek_cache.get(info.key) if info.method != fmt.STORED else None
            return MemberReader(source, info, seek_index, self._verdicts,
                                on_close=lambda: self._reader_closed(r.offset))
        except BaseException:
            source.release()
            self._reader_closed(r.offset)
            raise

    def _reader_closed(self, offset: int) -> None:
        with self._meta:
            left = self._readers_at.get(offset, 0) - 1
            if left > 0:
                self._readers_at[offset] = left
            else:
                self._readers_at.pop(offset, None)

    def _member_info(self, source: ArchiveFile, r, limit: int) -> MemberInfo:
        if r.method == fmt.AES_MARKER:
            raise UnsupportedFeature("%s: AES-encrypted member (WinZip AE-x): "
                                     "not supported; decrypt it with 7z" % r.name)
        if r.flags & fmt.FLAG_STRONG_ENCRYPTION:
            raise UnsupportedFeature("%s: PKWARE strong encryption is not supported" % r.name)
        try:
            check_method(r.method)
        except UnsupportedFeature as exc:
            raise UnsupportedFeature("%s: %s" % (r.name, exc)) from None
        found = fmt.read_local_header(source.pread, r.offset)
        if found is None:
            raise CorruptMemberError("%s: local header is missing or damaged" % r.name)
        fields, data_start = found
        if data_start + r.csize > limit:
            raise CorruptMemberError("%s: member data runs past the end of the archive" % r.name)
        decrypter = None
        if r.flags & fmt.FLAG_ENCRYPTED:
            password = self.options.password
            if not password:
                raise PasswordRequired(
                    "%s: encrypted member; give the password with -o password_file=PATH "
                    "or ARCHFS_PASSWORD" % r.name)
            if r.csize < CRYPT_HEADER:
                raise CorruptMemberError("%s: encrypted member is too short" % r.name)
            local_time = fields[4]
            check = (local_time >> 8) & 0xFF if r.flags & fmt.FLAG_DESCRIPTOR else r.crc >> 24
            decrypter = open_decrypter(password, source.pread(CRYPT_HEADER, data_start),
                                       check, r.name)
        return MemberInfo(r.name, data_start, r.csize, r.usize, r.crc, r.method, decrypter)

    def readlink(self, path: str) -> str:
        with self._meta:
            row = self._file_row(path)
            if not stat.S_ISLNK(self._table.mode[row]):
                raise InvalidArgument("%s: not a symbolic link" % path)
        with self.open_member(path) as reader:
            return reader.read().decode("utf-8", "surrogateescape")

