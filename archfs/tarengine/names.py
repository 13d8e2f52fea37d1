"""Member names: the bytes a tar stores, and the safe spelling archfs shows.

Names are bytes; they are shown as UTF-8 with undecodable bytes kept
(``surrogateescape``), so they round-trip exactly. The safe spelling drops
a leading ``/``, empty components, ``.`` and ``..`` (``../x`` is ``x``,
``a/../../b`` is ``a/b``) so nothing can point outside the mount, and cuts a
component longer than 255 bytes to end in ``~`` plus the CRC-32 of the
whole component. Unlike zip, a backslash is an ordinary character.
"""

import zlib

NAME_MAX = 255


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def encode(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def safe_path(name: str) -> str:
    """The safe relative spelling of a decoded member name ("" for the root)."""
    if not name.startswith(("/", "./", "../")) and "//" not in name and "/." not in name \
            and name not in (".", "..") and len(name) <= NAME_MAX:
        return name.rstrip("/") if name.endswith("/") else name
    parts = [_fit(p) for p in name.split("/") if p not in ("", ".", "..")]
    return "/".join(parts)


def _fit(part: str) -> str:
    raw = encode(part)
    if len(raw) <= NAME_MAX:
        return part
    tag = "~%08x" % zlib.crc32(raw)
    return decode(raw[:NAME_MAX - len(tag)]) + tag


def is_valid_new_name(path: str) -> bool:
    """Whether a path given by a user is in safe spelling and fits a member."""
    return bool(path) and safe_path(path) == path
