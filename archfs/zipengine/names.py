"""Member names: decoding the stored bytes, and the safe spelling archfs shows.

Decoding: the UTF-8 flag (bit 11), else a matching Info-ZIP Unicode Path
extra field (0x7075; Info-ZIP ``zip`` on Linux writes it and leaves the flag
unset), else the raw bytes when they are valid UTF-8, else cp437 (the
APPNOTE's default), which maps every byte and so never fails.

Safe spelling: a name is turned into a relative path that cannot leave the
mount and that Linux accepts:

- backslashes are directory separators (old Windows tools wrote them);
- a leading ``/`` and empty components are dropped, and so are ``.`` and
  ``..`` before the first real component: ``../x`` and ``./x`` are ``x``,
  as extractors (``unzip``, 7-Zip) place them;
- ``.`` and ``..`` after a real component are shown as ``%2E`` and
  ``%2E%2E``, so ``a/./b`` is ``a/%2E/b`` and ``a/../b`` is ``a/%2E%2E/b``:
  distinct from each other and from ``a/b``, the same at every mount
  whatever the order of the members, and never a way out of the mount;
- NUL becomes U+FFFD;
- a component longer than 255 bytes is cut and ends in ``~`` plus 8 hex
  digits of the CRC-32 of the full component, so distinct long names stay
  distinct;
- a name left empty shows as ``unnamed``.

Clashes are settled when the tree is built (see ``tree.py``): of several
members with one spelling the last in the archive keeps it and the earlier
ones appear as ``NAME.~1~``, ``NAME.~2~`` (GNU backup numbering); when a file
and a directory clash, the directory keeps the name. archfs writes every name
back in its safe spelling, so a committed archive has none of these oddities.
"""

import re
import zlib
from typing import Optional, Tuple

NAME_MAX = 255
DOT_SPELLING = {".": "%2E", "..": "%2E%2E"}    # a dot component inside a name
_ODD = re.compile(r"[\\\x00]|//|^/|(?:^|/)\.\.?(?:/|$)")
# the same test over many names joined with NUL (substring tests run in C,
# a regex over megabytes of names does not), plus empty names
_ODD_INSIDE = ("\\", "//", "\x00/", "\x00\x00") + tuple(
    a + dots + b for a in "/\x00" for b in "/\x00" for dots in (".", ".."))
_ODD_START = ("/", "./", "../", ".\x00", "..\x00", "\x00")
_ODD_END = ("/.", "/..", "\x00.", "\x00..", "\x00")


def decode_name(raw: bytes, utf8_flag: bool, unicode_path: Optional[str] = None) -> str:
    """The text of a stored name (see the module docstring for the order)."""
    if raw.isascii():
        return raw.decode("ascii")
    if utf8_flag:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("cp437")
    if unicode_path is not None:
        return unicode_path
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")


def has_odd_names(joined: str) -> bool:
    """Whether any of the NUL-joined names needs ``safe_path`` or is empty."""
    if not joined or joined in (".", "..") or joined.startswith(_ODD_START) \
            or joined.endswith(_ODD_END):
        return True
    return any(odd in joined for odd in _ODD_INSIDE)


def safe_path(name: str) -> Tuple[str, bool]:
    """(safe relative path, names a directory) for a decoded member name."""
    is_dir = name.endswith("/") or name.endswith("\\")
    if _ODD.search(name) is None and (len(name) <= 63 or _components_fit(name)):
        return name.rstrip("/"), is_dir
    name = name.replace("\\", "/").replace("\x00", "\ufffd")
    parts = []
    for part in name.split("/"):
        if part in ("", ".", ".."):
            if part and parts:
                parts.append(DOT_SPELLING[part])
            continue
        parts.append(_fit_component(part))
    return "/".join(parts), is_dir


def _components_fit(name: str) -> bool:
    return all(len(p.encode("utf-8")) <= NAME_MAX for p in name.split("/"))


def _fit_component(part: str) -> str:
    raw = part.encode("utf-8")
    if len(raw) <= NAME_MAX:
        return part
    tag = "~%08x" % zlib.crc32(raw)
    cut = raw[:NAME_MAX - len(tag)].decode("utf-8", "ignore")
    return cut + tag


def backup_spelling(path: str, number: int) -> str:
    """The spelling of the ``number``-th clashing member of ``path``."""
    suffix = ".~%d~" % number
    head, _, base = path.rpartition("/")
    base = _fit_component(base + suffix)
    return head + "/" + base if head else base


def is_valid_new_name(path: str) -> bool:
    """Whether a path given by a user is already in safe spelling."""
    if not path or path.endswith("/") or _ODD.search(path) is not None:
        return False
    return _components_fit(path)
