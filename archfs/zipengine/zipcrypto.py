"""Traditional PKWARE encryption ("ZipCrypto"), decryption only.

It is weak and archfs never writes it, but many old archives use it, so
reading it with a password is supported. It is a byte-at-a-time stream
cipher, so this pure-Python version is slow (a few MB/s); the state is three
integers, which lets a reader snapshot it at seek points like a decoder.
"""

from typing import Tuple

from archfs.errors import PasswordRequired

HEADER_SIZE = 12


def _crc_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


class ZipDecrypter:
    """Decrypts a member's bytes in order; ``keys`` is its whole state."""

    def __init__(self, password: bytes, keys: Tuple[int, int, int] = None):
        if keys is not None:
            self.keys = keys
            return
        self.keys = (0x12345678, 0x23456789, 0x34567890)
        for byte in password:
            self._update(byte)

    def _update(self, byte: int) -> None:
        k0, k1, k2 = self.keys
        k0 = _CRC[(k0 ^ byte) & 0xFF] ^ (k0 >> 8)
        k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = _CRC[(k2 ^ (k1 >> 24)) & 0xFF] ^ (k2 >> 8)
        self.keys = (k0, k1, k2)

    def decrypt(self, data: bytes) -> bytes:
        k0, k1, k2 = self.keys
        crc = _CRC
        out = bytearray(len(data))
        for i, c in enumerate(data):
            t = (k2 | 2) & 0xFFFF
            p = c ^ (((t * (t ^ 1)) >> 8) & 0xFF)
            out[i] = p
            k0 = crc[(k0 ^ p) & 0xFF] ^ (k0 >> 8)
            k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
            k2 = crc[(k2 ^ (k1 >> 24)) & 0xFF] ^ (k2 >> 8)
        self.keys = (k0, k1, k2)
        return bytes(out)

    def copy(self) -> "ZipDecrypter":
        return ZipDecrypter(b"", self.keys)

    def rewound(self, count: int):
        """A decrypter ``count`` bytes back: only possible for 0 (the state
        cannot run backwards)."""
        return self.copy() if count == 0 else None


def open_decrypter(password: bytes, header: bytes, check_byte: int, name: str) -> ZipDecrypter:
    """A decrypter past the 12-byte encryption header, or PasswordRequired."""
    dec = ZipDecrypter(password)
    plain = dec.decrypt(header)
    if plain[-1] != check_byte:
        raise PasswordRequired("%s: wrong password for this encrypted member" % name)
    return dec
