"""WinZip AES encryption (AE-1 and AE-2; 128, 192 and 256-bit keys), reading.

A member marked with method 99 carries an 0x9901 extra field naming the
version (AE-1 keeps the CRC, AE-2 records 0 instead), the key strength and
the real compression method. Its data is ``salt, 2-byte password check,
ciphertext, 10-byte authentication code``: keys come from PBKDF2-HMAC-SHA1
(1000 rounds) of the password and salt, the ciphertext is AES in counter
mode with a little-endian counter starting at 1, and the code is the first
10 bytes of HMAC-SHA1 over the ciphertext.

The reader checks the code over the whole ciphertext before it serves any
byte (``authenticate``), so a wrong password that passes the 2-byte check
(1 in 65,536) or a tampered member gives an error, never data. Counter mode
decrypts at any offset, so an AES member keeps the random access of its
compression method.
"""

import hashlib
import hmac
from typing import NamedTuple, Optional, Tuple

from archfs.errors import CorruptMemberError, PasswordRequired, UnsupportedFeature
from archfs.zipengine import format as fmt

_CRYPTO: list = []


def _crypto():
    """(AES, Counter) from pycryptodomex, or (None, None); imported at the
    first AES member, not with the zip engine (it loads several shared
    objects: a tenth of a zip mount's start-up)."""
    if not _CRYPTO:
        try:
            from Cryptodome.Cipher import AES
            from Cryptodome.Util import Counter
        except ImportError:            # pragma: no cover - a dependency; kept optional
            AES = Counter = None
        _CRYPTO[:] = [AES, Counter]
    return _CRYPTO[0], _CRYPTO[1]

SALT_SIZE = {1: 8, 2: 12, 3: 16}
KEY_SIZE = {1: 16, 2: 24, 3: 32}
CHECK_SIZE = 2
MAC_SIZE = 10
ROUNDS = 1000
BLOCK = 16
AUTH_CHUNK = 1 << 20


class AesField(NamedTuple):
    """The 0x9901 extra field."""

    version: int      # 1: AE-1 (CRC kept), 2: AE-2 (CRC is 0)
    strength: int     # 1, 2, 3: 128, 192, 256-bit keys
    method: int       # the compression method under the encryption

    @property
    def header_size(self) -> int:
        return SALT_SIZE[self.strength] + CHECK_SIZE

    @property
    def bits(self) -> int:
        return KEY_SIZE[self.strength] * 8


def parse_field(extras: bytes, name: str) -> AesField:
    """The AES extra field among a record's extras, or CorruptMemberError."""
    for tag, data in fmt.iter_extras(extras):
        if tag == fmt.EXTRA_AES:
            if len(data) < 7 or data[2:4] != b"AE":
                break
            version = int.from_bytes(data[0:2], "little")
            strength = data[4]
            if strength not in SALT_SIZE:
                raise CorruptMemberError("%s: AES key strength %d is not 1, 2 or 3"
                                         % (name, strength))
            if version not in (1, 2):
                raise UnsupportedFeature("%s: AES version AE-%d is not supported" % (name, version))
            return AesField(version, strength, int.from_bytes(data[5:7], "little"))
    raise CorruptMemberError("%s: marked AES-encrypted but has no valid AES extra field" % name)


class AesDecrypter:
    """AES-CTR positioned at ``pos`` bytes into the ciphertext."""

    __slots__ = ("_key", "_pos", "_cipher")

    def __init__(self, key: bytes, pos: int = 0):
        self._key = key
        self._pos = pos
        self._cipher = None

    def decrypt(self, data: bytes) -> bytes:
        cipher = self._cipher
        if cipher is None:
            block, skip = divmod(self._pos, BLOCK)
            aes, counters = _crypto()
            counter = counters.new(128, initial_value=block + 1, little_endian=True)
            cipher = self._cipher = aes.new(self._key, aes.MODE_CTR, counter=counter)
            if skip:
                cipher.encrypt(bytes(skip))
        self._pos += len(data)
        return cipher.encrypt(data)

    def copy(self) -> "AesDecrypter":
        return AesDecrypter(self._key, self._pos)

    def rewound(self, count: int) -> Optional["AesDecrypter"]:
        """A decrypter ``count`` bytes earlier in the ciphertext."""
        return AesDecrypter(self._key, self._pos - count) if count <= self._pos else None


def derive(password: bytes, salt: bytes, strength: int) -> Tuple[bytes, bytes, bytes]:
    """(encryption key, authentication key, 2-byte password check)."""
    size = KEY_SIZE[strength]
    material = hashlib.pbkdf2_hmac("sha1", password, salt, ROUNDS, 2 * size + CHECK_SIZE)
    return material[:size], material[size:2 * size], material[2 * size:]


def open_member(password: bytes, header: bytes, field: AesField, name: str):
    """(decrypter at the ciphertext's start, authentication key), or
    PasswordRequired when the password check fails."""
    if _crypto()[0] is None:
        raise UnsupportedFeature("%s: AES-encrypted member: needs the Python package "
                                 "pycryptodomex" % name)
    salt_size = SALT_SIZE[field.strength]
    if len(header) != salt_size + CHECK_SIZE:
        raise CorruptMemberError("%s: AES member is too short" % name)
    key, mac_key, check = derive(password, header[:salt_size], field.strength)
    if not hmac.compare_digest(check, header[salt_size:]):
        raise PasswordRequired("%s: wrong password for this AES-encrypted member" % name)
    return AesDecrypter(key), mac_key


def authenticate(pread, start: int, length: int, mac_key: bytes, name: str) -> None:
    """Check the authentication code after ``length`` bytes of ciphertext at
    ``start``; CorruptMemberError if it does not match (tampered, damaged,
    or a wrong password that passed the 2-byte check)."""
    mac = hmac.new(mac_key, digestmod=hashlib.sha1)
    pos, end = start, start + length
    while pos < end:
        chunk = pread(min(AUTH_CHUNK, end - pos), pos)
        if not chunk:
            raise CorruptMemberError("%s: archive ends inside the member's data" % name)
        mac.update(chunk)
        pos += len(chunk)
    stored = pread(MAC_SIZE, end)
    if len(stored) != MAC_SIZE or not hmac.compare_digest(mac.digest()[:MAC_SIZE], stored):
        raise CorruptMemberError("%s: AES authentication code does not match: the member "
                                 "was changed, is damaged, or the password is wrong" % name)
