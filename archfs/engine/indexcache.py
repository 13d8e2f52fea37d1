"""Saved indexes: a second mount of a big unchanged archive loads instead of parsing.

One file per archive path under ``$XDG_CACHE_HOME/archfs/index`` (or the
directory given): a JSON header, then sections of raw bytes (typed arrays,
joined names, a decompressor's seek points). It is used only when the
archive's device, inode, size and mtime are exactly what they were when it
was saved, and the format's own ``kind`` and version match; anything else
makes it stale. No code is ever loaded from it (no pickle): a damaged or
foreign file fails to load and is ignored.
"""

import json
import logging
import os
import struct
from array import array
from typing import Callable, Iterable, List, Optional, Tuple, TypeVar

from archfs.engine.digest import sha256

log = logging.getLogger("archfs.index")

MAGIC = b"ARCHFSIX"
_LENGTH = struct.Struct("<Q")
T = TypeVar("T")


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "archfs", "index")


def cache_file(path: str, directory: Optional[str], kind: str) -> str:
    name = path if "://" in path else os.path.realpath(path)    # a URL names itself
    digest = sha256(name.encode("utf-8", "surrogateescape"))
    suffix = ".idx" if kind == "zip" else "." + kind + ".idx"
    return os.path.join(directory or cache_dir(), digest.hexdigest()[:32] + suffix)


def file_key(path: str, identity, kind: str, version: int) -> dict:
    return {"kind": kind, "version": version, "path": os.path.realpath(path),
            "dev": identity.dev, "ino": identity.ino, "size": identity.size,
            "mtime_ns": identity.mtime_ns}


def transport_key(transport, kind: str, version: int) -> dict:
    """The key of an archive read through a transport: for a local file the
    same as ``file_key``; for a remote object its URL and ETag, so the index
    serves every machine that shares the cache directory."""
    return dict(transport.cache_key(), kind=kind, version=version)


def joined(names: List[str], batch: int = 1 << 16,
           errors: str = "surrogateescape") -> Iterable[bytes]:
    """The NUL-joined UTF-8 of ``names``, as a few pieces (``errors``: how
    the format's names keep what is not UTF-8)."""
    for i in range(0, len(names), batch):
        piece = "\x00".join(names[i:i + batch])
        yield (piece if i == 0 else "\x00" + piece).encode("utf-8", errors)


def split_names(data: bytes, count: int, errors: str = "surrogateescape") -> List[str]:
    names = data.decode("utf-8", errors).split("\x00") if count else []
    if len(names) != count:
        raise ValueError("index holds %d names, not %d" % (len(names), count))
    return names


def save(path: str, key: dict, header: dict, sections: List[Iterable],
         directory: Optional[str] = None) -> None:
    """Write an index (silently skipped when it cannot be). Each section is
    an iterable of bytes-like pieces, written without joining them."""
    import tempfile

    target = cache_file(path, directory, key["kind"])
    try:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        fd_out, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".idx-")
        try:
            with os.fdopen(fd_out, "wb") as out:
                out.write(MAGIC + _LENGTH.pack(len(sections) + 1))
                _write_section(out, [json.dumps({"key": key, "header": header}).encode()])
                for pieces in sections:
                    _write_section(out, pieces)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, ValueError, UnicodeError) as exc:
        log.info("not saving the index of %s: %s", path, exc)


def _write_section(out, pieces) -> None:
    start = out.tell()
    out.write(_LENGTH.pack(0))
    for piece in pieces:
        out.write(memoryview(piece).cast("B") if isinstance(piece, array) else piece)
    end = out.tell()
    out.seek(start)
    out.write(_LENGTH.pack(end - start - 8))
    out.seek(end)


def load(path: str, key: dict, directory: Optional[str] = None
         ) -> Optional[Tuple[dict, List[bytes]]]:
    """(header, sections) of a valid saved index for exactly this file, or None."""
    return load_with(path, key, lambda header, count, section: (
        header, [section() for _ in range(count)]), directory)


def load_with(path: str, key: dict, build: Callable[[dict, int, Callable[[], bytes]], T],
              directory: Optional[str] = None) -> Optional[T]:
    """What ``build(header, count, section)`` makes of a valid saved index
    for exactly this file, or None. ``section()`` reads the next of the
    ``count`` sections, so a big index is never held whole; whatever
    ``build`` raises of a damaged index (ValueError, KeyError...) makes it
    ignored."""
    target = cache_file(path, directory, key["kind"])
    try:
        with open(target, "rb") as f:
            head = f.read(16)
            if head[:8] != MAGIC:
                raise ValueError("not an archfs index")
            remaining = _LENGTH.unpack_from(head, 8)[0] - 1
            first = json.loads(_read_section(f))
            if first.get("key") != key:
                return None

            def section() -> bytes:
                nonlocal remaining
                if remaining <= 0:
                    raise ValueError("index is cut short")
                remaining -= 1
                return _read_section(f)

            return build(first["header"], remaining, section)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, UnicodeError, struct.error) as exc:
        log.info("ignoring the saved index of %s: %s", path, exc)
        return None


def _read_section(f) -> bytes:
    size = _LENGTH.unpack(f.read(8))[0]
    if size > os.fstat(f.fileno()).st_size - f.tell():   # a damaged length: no huge read
        raise ValueError("index is cut short")
    data = f.read(size)
    if len(data) != size:
        raise ValueError("index is cut short")
    return data


def forget(path: str, kind: str, directory: Optional[str] = None) -> None:
    try:
        os.unlink(cache_file(path, directory, kind))
    except OSError:
        pass


def typed(data: bytes, code: str, count: int) -> array:
    """A typed array from saved bytes; ``count`` rows (-1: any number)."""
    column = array(code)
    column.frombytes(data)
    if count >= 0 and len(column) != count:
        raise ValueError("index column has %d rows, not %d" % (len(column), count))
    return column
