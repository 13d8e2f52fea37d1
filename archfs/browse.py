"""``archfs ls``, ``cat`` and ``info``: an archive's content without mounting.

Everything goes through the plugin API (``open_archive``, ``listdir``,
``stat``, ``open``, ``summary``), so every format reads the same way, and a
big zip opens from its saved index. Output is bytes in UTF-8 whatever the
locale; on a terminal, control characters in names are shown escaped.
"""

import json
import os
import posixpath
import shutil
import stat as _stat
import time
from typing import BinaryIO, Iterable, Iterator, List, Optional, Tuple

from archfs import sources
from archfs.archives.abstractarchive import AbstractArchive, MemberStat
from archfs.errors import ArchfsError, InvalidArgument, IsADirectory, NoSuchFile

MAX_LINKS = 40    # symlinks followed inside the archive for cat, as the kernel does


def open_source(source: str, option_texts: Iterable[str] = ()) -> AbstractArchive:
    """The archive at ``source`` opened read-only with its plugin's -o options."""
    from archfs.archives import archive_class

    url = sources.normalize(source)
    if not sources.is_url(url) and not os.path.lexists(url):
        raise NoSuchFile("no such archive: %s" % url)
    cls = archive_class(url, "r")
    return cls(url=url, mode="r", opts=_plugin_options(option_texts, cls))


def _plugin_options(option_texts: Iterable[str], cls) -> dict:
    """-o options for browsing: only the plugin's make sense (``ro`` is allowed)."""
    from archfs.mount import options

    given = options.MountOptions()
    for text in option_texts:
        for item in options.split_option_text(text):
            name, has_value, value = item.partition("=")
            if name == "ro":
                continue
            if name in options.KNOWN or options.generic_effect(name, item):
                raise options.OptionError("option %s applies to mounts only" % name)
            given.plugin[name] = value if has_value else None
    return options.plugin_options(given, cls)


def _member_error(exc: ArchfsError, source: str, member: str) -> ArchfsError:
    """The plugin's error about a member, in the same words for every plugin,
    with the archive's name in front."""
    if isinstance(exc, NoSuchFile):
        return NoSuchFile("%s: %s: no such file or directory" % (source, member))
    try:
        return type(exc)("%s: %s" % (source, exc))
    except TypeError:
        return exc


class Printer:
    """Lines of names to a binary stream; escapes control characters on a tty."""

    def __init__(self, out: BinaryIO, tty: bool):
        self.out = out
        self.tty = tty

    def name(self, text: str) -> str:
        if not self.tty:
            return text
        return "".join(c if c.isprintable() or c == " " else "\\x%02x" % ord(c)
                       if ord(c) < 0x100 else "\\u%04x" % ord(c) for c in text)

    def line(self, text: str) -> None:
        self.out.write(text.encode("utf-8", "surrogateescape") + b"\n")


# -- ls -----------------------------------------------------------------------

def _children(archive: AbstractArchive, directory: str) -> Iterator[Tuple[str, int]]:
    """(name, st_mode) sorted by name; a plugin may add fields after the two."""
    return iter(sorted((entry[0], entry[1]) for entry in archive.listdir(directory)))


def _walk(archive: AbstractArchive, top: str, recursive: bool) -> Iterator[Tuple[str, int]]:
    """(path relative to top, st_mode), sorted by name; with ``recursive``
    each directory is followed by everything below it (as find prints)."""
    stack = [_children(archive, top)]
    prefixes = [""]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            prefixes.pop()
            continue
        name, mode = entry
        rel = prefixes[-1] + name
        yield rel, mode
        if recursive and _stat.S_ISDIR(mode):
            stack.append(_children(archive, top + "/" + rel if top else rel))
            prefixes.append(rel + "/")


def _long_line(printer: Printer, archive: AbstractArchive, path: str, shown: str,
               st: MemberStat, width: int) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.mtime_ns / 1e9))
    text = "%s %*d %s %s" % (_stat.filemode(st.mode), width, st.size, when, printer.name(shown))
    if st.is_symlink:
        try:
            text += " -> " + printer.name(archive.readlink(path))
        except OSError:
            pass
    return text


def ls(archive: AbstractArchive, source: str, path: str = "", long: bool = False,
       recursive: bool = False, out: Optional[BinaryIO] = None, tty: bool = False) -> None:
    """List ``path`` (a directory: its entries; a file: itself) like ls -1 / -l / -R."""
    printer = Printer(out, tty)
    top = path.strip("/")
    try:
        st = archive.stat(top)
    except ArchfsError as exc:
        raise _member_error(exc, source, path) from None
    if not st.is_dir:
        entries = [(top, st.mode)]
        base = ""
    else:
        entries = _walk(archive, top, recursive)
        base = top + "/" if top else ""
    if not long:
        for rel, _ in entries:
            printer.line(printer.name(rel))
        return
    # -l: stat each entry; sizes are aligned per batch of lines
    batch: List[Tuple[str, str, MemberStat]] = []

    def flush() -> None:
        width = max(len(str(st.size)) for _, _, st in batch)
        for full, rel, st in batch:
            printer.line(_long_line(printer, archive, full, rel, st, width))
        batch.clear()

    for rel, _ in entries:
        full = rel if not st.is_dir else base + rel
        batch.append((full, rel, archive.stat(full)))
        if len(batch) >= 4096:
            flush()
    if batch:
        flush()


# -- cat ----------------------------------------------------------------------

def _resolve(archive: AbstractArchive, path: str) -> Tuple[str, MemberStat]:
    """Follow symlinks inside the archive, as cat on a mount would."""
    for _ in range(MAX_LINKS):
        st = archive.stat(path)
        if not st.is_symlink:
            return path, st
        target = archive.readlink(path)
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if target.startswith("/") or joined == ".." or joined.startswith("../"):
            raise NoSuchFile("%s: the symlink points outside the archive (%s)" % (path, target))
        path = joined
    raise InvalidArgument("%s: too many levels of symbolic links" % path)


def cat(archive: AbstractArchive, source: str, member: str, out: BinaryIO) -> None:
    """Copy one member's content to ``out``."""
    name = member.strip("/")
    try:
        name, st = _resolve(archive, name)
        if st.is_dir:
            raise IsADirectory("%s: is a directory" % member)
        with archive.open(name, "rb") as data:
            shutil.copyfileobj(data, out, 1 << 20)
    except ArchfsError as exc:
        raise _member_error(exc, source, member) from None


# -- info ---------------------------------------------------------------------

def _count(n: int) -> str:
    return "{:,}".format(n)


def _plural(n: int, one: str, many: str) -> str:
    return "%s %s" % (_count(n), one if n == 1 else many)


def _share(part: int, whole: int) -> str:
    return "%.1f%%" % (100.0 * part / whole) if whole else "0%"


def facts(source: str, option_texts: Iterable[str] = ()) -> dict:
    """Everything ``archfs info`` shows, as plain data (also for --json)."""
    from archfs.archives import archive_class
    url = sources.normalize(source)
    if not sources.is_url(url) and not os.path.lexists(url):
        raise NoSuchFile("no such archive: %s" % url)
    cls = archive_class(url, "r")
    result = {"archive": url, "format": cls.name, "description": getattr(cls, "description", "")}
    try:
        archive = open_source(source, option_texts)
    except ArchfsError as exc:
        if isinstance(exc, InvalidArgument) and isinstance(exc, ValueError):
            raise               # a bad -o option: the user's to fix, not the archive's
        result["error"] = str(exc)
    else:
        with archive:
            result.update(archive.summary())
    if "archive_bytes" not in result and not sources.is_url(url) and os.path.isfile(url):
        result["archive_bytes"] = os.path.getsize(url)
    try:
        result["repair"] = cls.repair_plan(url)
    except OSError as exc:
        result["repair"] = "cannot tell: %s" % exc
    return result


def info_lines(data: dict) -> List[str]:
    """``facts`` as aligned lines for people."""
    rows = [("archive", data["archive"]),
            ("format", "%s (%s)" % (data["format"], data["description"])
             if data.get("description") else data["format"])]
    size = data.get("archive_bytes")
    if size is not None:
        rows.append(("archive size", "%s bytes" % _count(size)))
    if "error" in data:
        rows.append(("cannot open", data["error"]))
    if "files" in data:
        rows.append(("members", ", ".join((
            _plural(data["files"], "file", "files"),
            _plural(data["directories"], "directory", "directories"),
            _plural(data["symlinks"], "symlink", "symlinks")))))
        content = "%s bytes" % _count(data["size"])
        if data.get("compressed_bytes") is not None:
            content += ", %s compressed (%s)" % (_count(data["compressed_bytes"]),
                                                 _share(data["compressed_bytes"], data["size"]))
        rows.append(("content", content))
    if data.get("methods"):
        rows.append(("compression", ", ".join("%s %s" % (name, _count(n))
                                              for name, n in data["methods"].items())))
    if "dead_bytes" in data:
        dead = data["dead_bytes"]
        text = "%s bytes" % _count(dead)
        if size:
            text += " (%s of the file)" % _share(dead, size)
        if dead:
            text += "; archfs compact reclaims it"
        rows.append(("dead space", text))
    if "encrypted" in data:
        enc = data["encrypted"]
        rows.append(("encryption", "none" if not enc else ", ".join(
            "%s %s" % (_plural(n, "member", "members"), name) for name, n in enc.items())))
    if "damaged" in data:
        bad = data["damaged"]
        if not bad:
            rows.append(("damaged", "none listed"))
        else:
            shown = ["%s (%s)" % (path, why) for path, why in list(bad.items())[:5]]
            more = len(bad) - len(shown)
            rows.append(("damaged", "%s: %s%s" % (
                _plural(len(bad), "member", "members"), "; ".join(shown),
                "; and %s more" % _count(more) if more else "")))
    if data.get("comment"):
        rows.append(("comment", data["comment"].replace("\n", " / ")))
    for note in data.get("notes", ()):
        rows.append(("note", note))
    rows.append(("repair", data.get("repair", "")))
    width = max(len(label) for label, _ in rows) + 1
    return ["%-*s %s" % (width, label + ":", value) for label, value in rows]


def info(source: str, option_texts: Iterable[str], out: BinaryIO, as_json: bool,
         tty: bool = False) -> bool:
    """Print the facts; False when the archive could not be opened."""
    data = facts(source, option_texts)
    printer = Printer(out, tty)
    if as_json:
        printer.line(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for line in info_lines(data):
            printer.line(printer.name(line))
    return "error" not in data
