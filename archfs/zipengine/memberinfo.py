"""What a reader needs to open one member: where its data starts, its
method, and the decryption set up (traditional PKWARE or WinZip AES).

Kept apart from the store so that every way of finding members (the central
directory, or a scan of local headers in a lenient mount) opens them alike.
"""

from typing import Optional

from archfs.errors import CorruptMemberError, PasswordRequired, UnsupportedFeature
from archfs.zipengine import aes, format as fmt
from archfs.zipengine.codecs import check_method
from archfs.zipengine.memberreader import MemberInfo
from archfs.zipengine.zipcrypto import HEADER_SIZE as CRYPT_HEADER, open_decrypter

NO_PASSWORD = ("%s: encrypted member; give the password with -o password_file=PATH, "
               "-o password=... or ARCHFS_PASSWORD")


def describe(source, r, extras: bytes, limit: int, password: Optional[bytes]) -> MemberInfo:
    """The MemberInfo of table row ``r`` (an ``entries.Row``) whose central
    extras are ``extras``; ``limit`` is where the archive's members end."""
    method = r.method
    field = None
    if method == fmt.AES_MARKER:
        field = aes.parse_field(extras, r.name)
        method = field.method
    if r.flags & fmt.FLAG_STRONG_ENCRYPTION:
        raise UnsupportedFeature("%s: PKWARE strong encryption is not supported" % r.name)
    try:
        check_method(method)
    except UnsupportedFeature as exc:
        raise UnsupportedFeature("%s: %s" % (r.name, exc)) from None
    found = fmt.read_local_header(source.pread, r.offset)
    if found is None:
        raise CorruptMemberError("%s: local header is missing or damaged" % r.name)
    fields, data_start = found
    if data_start + r.csize > limit:
        raise CorruptMemberError("%s: member data runs past the end of the archive" % r.name)
    if field is None and not r.flags & fmt.FLAG_ENCRYPTED:
        info = MemberInfo(r.name, data_start, r.csize, r.usize, r.crc, method, flags=r.flags)
        local = _local_variant(info, fields, limit)
        return info._replace(alternative=local) if local is not None else info
    if not password:
        raise PasswordRequired(NO_PASSWORD % r.name)
    if field is not None:
        head = field.header_size
        if r.csize < head + aes.MAC_SIZE:
            raise CorruptMemberError("%s: AES member is too short" % r.name)
        decrypter, mac_key = aes.open_member(password, source.pread(head, data_start),
                                             field, r.name)
        return MemberInfo(r.name, data_start, r.csize, r.usize, r.crc, method, decrypter,
                          r.flags, head, aes.MAC_SIZE, field.version == 1, mac_key)
    if r.csize < CRYPT_HEADER:
        raise CorruptMemberError("%s: encrypted member is too short" % r.name)
    local_time = fields[4]
    check = (local_time >> 8) & 0xFF if r.flags & fmt.FLAG_DESCRIPTOR else r.crc >> 24
    decrypter = open_decrypter(password, source.pread(CRYPT_HEADER, data_start), check, r.name)
    return MemberInfo(r.name, data_start, r.csize, r.usize, r.crc, method, decrypter,
                      r.flags, CRYPT_HEADER)


def _local_variant(info: MemberInfo, fields, limit: int) -> Optional[MemberInfo]:
    """The member as its local header describes it, when that disagrees with
    the central record (7-Zip reads such members by the local header)."""
    (_sig, _need, flags, method, _t, _d, crc, csize, usize, _n, _x) = fields
    if flags & fmt.FLAG_DESCRIPTOR or fmt.MAX32 in (csize, usize) or flags & fmt.FLAG_ENCRYPTED:
        return None
    if (method, crc, csize, usize) == (info.method, info.crc, info.csize, info.usize):
        return None
    if info.data_start + csize > limit:
        return None
    try:
        check_method(method)
    except UnsupportedFeature:
        return None
    return info._replace(method=method, crc=crc, csize=csize, usize=usize, flags=flags)
