"""A persisted index, so a second mount of a big unchanged archive is quick.

After parsing a large central directory the member table and tree are
saved as flat arrays under ``$XDG_CACHE_HOME/archfs/index`` (one file per
archive path). The file is only used when the archive's device, inode,
size, mtime and end record are exactly what they were when it was saved;
any change makes it stale and it is rebuilt. It holds no code (no pickle):
a damaged or foreign file fails to load and is ignored.
"""

import hashlib
import json
import logging
import os
import struct
import tempfile
from array import array
from typing import Optional

from archfs.zipengine.entries import EntryTable
from archfs.zipengine.tree import DirNode, Tree

log = logging.getLogger("archfs.zip")

MAGIC = b"ARCHFSIX"
VERSION = 5
MIN_MEMBERS = 20000            # smaller archives parse faster than a cache loads
_COLUMNS = ("offset", "csize", "usize", "crc", "method", "flags", "mtime_ns", "mode",
            "uid", "gid", "record_at", "record_len", "durable_at")
_LENGTH = struct.Struct("<Q")


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "archfs", "index")


def _cache_file(path: str, directory: Optional[str]) -> str:
    name = path if "://" in path else os.path.realpath(path)    # a URL names itself
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape"))
    return os.path.join(directory or cache_dir(), digest.hexdigest()[:32] + ".idx")


def _key(fd, path: str, end) -> dict:
    """What the archive must still be: a local file's device, inode, size and
    mtime; a remote object's URL and ETag (valid on any machine)."""
    if isinstance(fd, int):
        st = os.fstat(fd)
        key = {"path": os.path.realpath(path), "dev": st.st_dev, "ino": st.st_ino,
               "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    else:
        key = fd.cache_key()
    key.update(version=VERSION, eocd=end.eocd_pos, cd_start=end.cd_start, cd_size=end.cd_size)
    return key


def save(path: str, fd: int, end, table: EntryTable, tree: Tree, bad: dict,
         directory: Optional[str] = None, extra: Optional[dict] = None) -> None:
    """Write the index of an archive (silently skipped when it cannot be);
    ``extra`` is the store's own state, returned as it was by ``load``."""
    try:
        _save(path, fd, end, table, tree, bad, directory, extra or {})
    except (OSError, ValueError, UnicodeError) as exc:
        log.info("not saving the index of %s: %s", path, exc)


def _save(path, fd, end, table, tree, bad, directory, extra) -> None:
    target = _cache_file(path, directory)
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    dir_paths = list(tree.dirs)
    order = array("q")
    starts, counts, dir_rows, lives = array("q"), array("q"), array("q"), array("q")
    for p in dir_paths:
        node = tree.dirs[p]
        starts.append(len(order))
        order.extend(node.files)
        counts.append(len(node.files))
        dir_rows.append(node.row)
        lives.append(node.live)
    header = {
        "key": _key(fd, path, end), "rows": len(table),
        "bad": {str(r): why for r, why in bad.items()},
        "extras": {str(r): v.hex() for r, v in table.extras.items()},
        "comments": {str(r): v.hex() for r, v in table.comments.items()},
        "raw_dos": {str(r): list(v) for r, v in table.raw_dos.items()},
        "store": extra,
        "rdev": {str(r): v for r, v in table.rdev.items()},
    }
    # sections are written piece by piece so saving never holds a second copy
    sections = [[json.dumps(header).encode()], _joined(table.names), _joined(dir_paths),
                [table.dead], [table.relocate]]
    sections += [[getattr(table, name)] for name in _COLUMNS]
    sections += [[order], [starts], [counts], [dir_rows], [lives]]
    sections += [[table.atime_ns if table.atime_ns is not None else array("q")]]
    fd_out, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".idx-")
    try:
        with os.fdopen(fd_out, "wb") as out:
            out.write(MAGIC + _LENGTH.pack(len(sections)))
            for pieces in sections:
                _write_section(out, pieces)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def _joined(names, batch: int = 1 << 16):
    """The NUL-joined UTF-8 of ``names``, as a few pieces."""
    for i in range(0, len(names), batch):
        piece = "\x00".join(names[i:i + batch])
        yield (piece if i == 0 else "\x00" + piece).encode("utf-8", "surrogatepass")


def _write_section(out, pieces) -> None:
    start = out.tell()
    out.write(_LENGTH.pack(0))
    for piece in pieces:
        out.write(memoryview(piece).cast("B") if isinstance(piece, array) else piece)
    end = out.tell()
    out.seek(start)
    out.write(_LENGTH.pack(end - start - 8))
    out.seek(end)


def load(path: str, fd: int, end, directory: Optional[str] = None):
    """(table, tree, bad, extra) from a valid saved index, or None."""
    target = _cache_file(path, directory)
    try:
        with open(target, "rb") as f:
            return _load(f, _key(fd, path, end))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, UnicodeError, struct.error) as exc:
        log.info("ignoring the saved index of %s: %s", path, exc)
        return None


def _load(f, key: dict):
    """Read section by section, so loading never holds the whole file at once."""
    head = f.read(16)
    if head[:8] != MAGIC:
        raise ValueError("not an archfs index")
    remaining = _LENGTH.unpack_from(head, 8)[0]

    def section() -> bytes:
        nonlocal remaining
        if remaining <= 0:
            raise ValueError("index is cut short")
        remaining -= 1
        size = _LENGTH.unpack(f.read(8))[0]
        data = f.read(size)
        if len(data) != size:
            raise ValueError("index is cut short")
        return data

    header = json.loads(section())
    if header["key"] != key:
        return None
    rows = header["rows"]
    table = EntryTable()
    names = section()
    table.names = names.decode("utf-8", "surrogatepass").split("\x00") if rows else []
    del names
    dir_paths = section().decode("utf-8", "surrogatepass").split("\x00")
    table.dead = bytearray(section())
    table.relocate = bytearray(section())
    for name in _COLUMNS:
        column = getattr(table, name)
        column.frombytes(section())
        if len(column) != rows:
            raise ValueError("index column %s has %d rows, not %d" % (name, len(column), rows))
    if len(table.names) != rows or len(table.dead) != rows:
        raise ValueError("index is inconsistent")
    table.extras = {int(r): bytes.fromhex(v) for r, v in header["extras"].items()}
    table.comments = {int(r): bytes.fromhex(v) for r, v in header["comments"].items()}
    table.raw_dos = {int(r): tuple(v) for r, v in header["raw_dos"].items()}
    bad = {int(r): why for r, why in header["bad"].items()}
    tree = _load_tree(table, dir_paths, [section() for _ in range(5)])
    table.rdev = {int(r): v for r, v in header["rdev"].items()}
    atimes = section()
    if atimes:
        table.atime_ns = array("q")
        table.atime_ns.frombytes(atimes)
        if len(table.atime_ns) != rows:
            raise ValueError("index column atime_ns has %d rows, not %d"
                             % (len(table.atime_ns), rows))
    return table, tree, bad, header.get("store", {})


def _paths(table: EntryTable) -> dict:
    """Path -> row of every live row. Built in C from all rows (a later row
    wins a name, as a replacement is later than what it replaced), then the
    dead rows that still hold a name are taken out: after a session that
    changed members the index holds their dead rows too."""
    names, dead = table.names, table.dead
    paths = dict(zip(names, range(len(names))))
    gone = dead.count(1)
    if gone:
        r = dead.find(1)
        while r >= 0:
            if paths.get(names[r]) == r:
                del paths[names[r]]
            r = dead.find(1, r + 1)
        if len(paths) != len(names) - gone:      # a dead row hid a live one: slowly
            paths = {name: r for r, name in enumerate(names) if not dead[r]}
    return paths


def _load_tree(table: EntryTable, dir_paths, sections) -> Tree:
    order, starts, counts, dir_rows, lives = (array("q") for _ in range(5))
    for column, section in zip((order, starts, counts, dir_rows, lives), sections):
        column.frombytes(section)
    if not len(dir_paths) == len(starts) == len(counts) == len(dir_rows) == len(lives):
        raise ValueError("index tree is inconsistent")
    tree = Tree(table)
    tree.paths = _paths(table)
    dirs = tree.dirs
    for path, start, count, row, live in zip(dir_paths, starts, counts, dir_rows, lives):
        node = dirs.get(path)
        if node is None:
            node = dirs[path] = DirNode()
        node.row = row
        node.files = order[start:start + count]
        node.live = live
    for path in dir_paths:
        if path:
            parent, _, base = path.rpartition("/")
            dirs[parent].subdirs[base] = None
    return tree
