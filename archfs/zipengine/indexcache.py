"""The zip engine's saved index (``archfs.engine.indexcache`` keeps the
file), so a second mount of a big unchanged archive is quick.

After parsing a large central directory the member table and tree are
saved as flat arrays. The index is only used while the archive's file (or
remote object) and its end record are exactly what they were when it was
saved; any change makes it stale and it is rebuilt.
"""

import logging
from array import array
from typing import Optional

from archfs.engine import indexcache as cache
from archfs.zipengine.entries import EntryTable
from archfs.zipengine.tree import DirNode, Tree

log = logging.getLogger("archfs.zip")

VERSION = 6
MIN_MEMBERS = 20000            # smaller archives parse faster than a cache loads
_COLUMNS = ("offset", "csize", "usize", "crc", "method", "flags", "mtime_ns", "mode",
            "uid", "gid", "record_at", "record_len", "durable_at")
_NAMES = "surrogatepass"       # zip names may hold any code point, lone surrogates too


def _key(fd, end) -> dict:
    """What the archive must still be: a local file's device, inode, size and
    mtime; a remote object's URL and ETag (valid on any machine); and the end
    record the table was read from."""
    key = cache.transport_key(fd, "zip", VERSION)
    key.update(eocd=end.eocd_pos, cd_start=end.cd_start, cd_size=end.cd_size)
    return key


def save(path: str, fd, end, table: EntryTable, tree: Tree, bad: dict,
         directory: Optional[str] = None, extra: Optional[dict] = None) -> None:
    """Write the index of an archive (silently skipped when it cannot be);
    ``extra`` is the store's own state, returned as it was by ``load``."""
    try:
        _save(path, fd, end, table, tree, bad, directory, extra or {})
    except (OSError, ValueError, UnicodeError) as exc:
        log.info("not saving the index of %s: %s", path, exc)


def _save(path, fd, end, table, tree, bad, directory, extra) -> None:
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
        "rows": len(table),
        "bad": {str(r): why for r, why in bad.items()},
        "extras": {str(r): v.hex() for r, v in table.extras.items()},
        "comments": {str(r): v.hex() for r, v in table.comments.items()},
        "raw_dos": {str(r): list(v) for r, v in table.raw_dos.items()},
        "store": extra,
        "rdev": {str(r): v for r, v in table.rdev.items()},
    }
    # sections are written piece by piece so saving never holds a second copy
    sections = [cache.joined(table.names, errors=_NAMES), cache.joined(dir_paths, errors=_NAMES),
                [table.dead], [table.relocate]]
    sections += [[getattr(table, name)] for name in _COLUMNS]
    sections += [[order], [starts], [counts], [dir_rows], [lives]]
    sections += [[table.atime_ns if table.atime_ns is not None else array("q")]]
    cache.save(path, _key(fd, end), header, sections, directory)


def load(path: str, fd, end, directory: Optional[str] = None):
    """(table, tree, bad, extra) from a valid saved index, or None."""
    try:
        key = _key(fd, end)
    except OSError as exc:
        log.info("ignoring the saved index of %s: %s", path, exc)
        return None
    return cache.load_with(path, key, _build, directory)


def _build(header: dict, _count: int, section):
    """The table and tree, section by section, so loading never holds the
    whole file at once."""
    rows = header["rows"]
    table = EntryTable()
    table.names = cache.split_names(section(), rows, _NAMES)
    dir_paths = section().decode("utf-8", _NAMES).split("\x00")
    table.dead = bytearray(section())
    table.relocate = bytearray(section())
    for name in _COLUMNS:
        column = getattr(table, name)
        column.frombytes(section())
        if len(column) != rows:
            raise ValueError("index column %s has %d rows, not %d" % (name, len(column), rows))
    if len(table.dead) != rows:
        raise ValueError("index is inconsistent")
    table.extras = {int(r): bytes.fromhex(v) for r, v in header["extras"].items()}
    table.comments = {int(r): bytes.fromhex(v) for r, v in header["comments"].items()}
    table.raw_dos = {int(r): tuple(v) for r, v in header["raw_dos"].items()}
    bad = {int(r): why for r, why in header["bad"].items()}
    tree = _load_tree(table, dir_paths, [section() for _ in range(5)])
    table.rdev = {int(r): v for r, v in header["rdev"].items()}
    atimes = section()
    if atimes:
        table.atime_ns = cache.typed(atimes, "q", rows)
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
