"""The archive plugin registry: which plugin class opens which archive.

Plugins come from the entry-point group ``archfs.archives`` (so a third-party
package adds a format by declaring one), merged with archfs's own two so a
source checkout works without being installed. A plugin module is imported
only when the registry needs its class, and one that fails to import is left
out (the error says why) instead of breaking the others.
"""

import os
import sys
from importlib import import_module
from typing import Dict, List, NamedTuple, Optional

from archfs.archives.abstractarchive import AbstractArchive, Member, MemberStat  # noqa: F401
from archfs.errors import ArchivePluginNotFound, FileAlreadyExistsError, NoSuchFile

ENTRY_POINT_GROUP = "archfs.archives"

_BUILTINS = {
    "filesystem": "archfs.archives.filesystemarchive:FilesystemArchive",
    "zip": "archfs.archives.zipfilearchive:ZipfileArchive",
    "tar": "archfs.archives.tarfilearchive:TarfileArchive",
}

# First bytes that identify a format whose file lacks a known suffix.
_SIGNATURES = {
    b"PK\x03\x04": "zip",   # local file header
    b"PK\x05\x06": "zip",   # end of central directory: an empty zip
    b"PK\x07\x08": "zip",   # spanned-archive marker
}

# Builtins that recognize their files by content without importing their
# plugin (which for a tar mount would otherwise import the zip engine too):
# "module:function" of a light test, the same one the plugin's ``sniff`` uses.
_BUILTIN_SNIFF = {"tar": "archfs.tarengine.detect:is_tar_or_compressed"}

_registered: Dict[str, type] = {}     # register_plugin(): wins over everything
_loaded: Dict[str, type] = {}         # cache of imported entry points
_load_errors: Dict[str, str] = {}     # name -> why it could not be imported
_specs: Optional[Dict[str, str]] = None
entry_point_files: List[str] = []     # what entry_points read (archfs.startup reads it ahead)


class _EntryPoint(NamedTuple):
    name: str
    value: str
    group: str


def entry_points(group: str) -> List:
    """The installed entry points of ``group``, read straight from the
    ``entry_points.txt`` of each distribution on ``sys.path``. Importing
    ``importlib.metadata`` (email, csv, zipfile ...) and its scan cost a
    mount about 0.15 s from a cold cache; it is still asked where this
    reading could differ from it (a zip file on ``sys.path``)."""
    found: List[_EntryPoint] = []
    seen = set()
    for entry in sys.path:
        where = entry or "."
        if os.path.isfile(where):          # a zipped path entry: the library knows them
            from importlib.metadata import entry_points as library_entry_points
            return list(library_entry_points(group=group))
        try:
            names = sorted(os.listdir(where))
        except OSError:
            continue
        for name in names:
            stem, dot, kind = name.rpartition(".")
            if kind not in ("dist-info", "egg-info") or not dot:
                continue
            project = stem.partition("-")[0].lower().replace("-", "_").replace(".", "_")
            if project in seen:            # the first on the path wins, as in the library
                continue
            path = os.path.join(where, name, "entry_points.txt")
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                if os.path.isdir(os.path.join(where, name)):
                    seen.add(project)
                continue
            seen.add(project)
            if path not in entry_point_files:
                entry_point_files.append(path)
            found.extend(_EntryPoint(n, v, group) for n, v in _section(text, group))
    return found


def _section(text: str, group: str) -> List[tuple]:
    """(name, value) of each line of ``[group]`` in an entry_points.txt."""
    out, inside = [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            out.append((name.strip(), value.strip()))
    return out


def _plugin_specs() -> Dict[str, str]:
    """name -> "module:attribute": the builtins, overridden by entry points."""
    global _specs
    if _specs is None:
        specs = dict(_BUILTINS)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            specs[ep.name] = ep.value
        _specs = specs
    return _specs


def _load(name: str) -> Optional[type]:
    if name in _registered:
        return _registered[name]
    if name in _loaded:
        return _loaded[name]
    spec = _plugin_specs().get(name)
    if spec is None or name in _load_errors:
        return None
    module_name, _, attr = spec.partition(":")
    try:
        cls = import_module(module_name)
        for part in attr.split(".") if attr else ():
            cls = getattr(cls, part)
    except Exception as exc:  # a broken plugin must not break the others
        _load_errors[name] = "%s: %s" % (type(exc).__name__, exc)
        return None
    _loaded[name] = cls
    return cls


def register_plugin(cls: type) -> type:
    """Register a plugin class under ``cls.name`` (usable as a decorator).

    It takes precedence over an entry point or builtin of the same name.
    """
    if not (isinstance(cls, type) and issubclass(cls, AbstractArchive)):
        raise TypeError("a plugin must be an AbstractArchive subclass, not %r" % (cls,))
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError("plugin class %s needs a class attribute 'name'" % cls.__name__)
    _registered[name] = cls
    return cls


def unregister_plugin(name: str) -> None:
    """Forget a class given to register_plugin (entry points stay)."""
    _registered.pop(name, None)


def reload_plugins() -> None:
    """Forget cached entry points and import errors (after installing a plugin)."""
    global _specs
    _specs = None
    _loaded.clear()
    _load_errors.clear()


def plugins() -> Dict[str, type]:
    """Every plugin class that can be loaded, by name."""
    names = list(_plugin_specs()) + [n for n in _registered if n not in _plugin_specs()]
    found = {}
    for name in names:
        cls = _load(name)
        if cls is not None:
            found[name] = cls
    return found


def _known() -> str:
    """The plugin names for an error message, with the reason for broken ones."""
    names = sorted(plugins())
    broken = ["%s (%s)" % (n, _load_errors[n]) for n in sorted(_load_errors)
              if n not in _registered]
    text = "known plugins: %s" % (", ".join(names) or "none")
    if broken:
        text += "; failed to load: %s" % "; ".join(broken)
    return text


def _instantiate(cls: type, url, mode, opts):
    return cls(url=url, mode=mode, opts=opts)


def plugin_class(name: str) -> type:
    """The plugin class called ``name``; ArchivePluginNotFound if none."""
    cls = _load(name)
    if cls is None:
        raise ArchivePluginNotFound("no archive plugin named %r; %s" % (name, _known()))
    return cls


def find_plugin(name: str, url, mode: str = "r", opts=None) -> AbstractArchive:
    """Open ``url`` with the plugin called ``name``."""
    return _instantiate(plugin_class(name), url, mode, opts)


def find_mimetype_plugin(mimetype: Optional[str], url, mode: str = "r",
                         opts=None) -> AbstractArchive:
    """Open ``url`` with the plugin listing ``mimetype``; None means filesystem.

    ``'*'`` in a plugin's list is not a wildcard here, so an unknown type is
    an error rather than silently a directory.
    """
    if mimetype is None:
        return find_plugin("filesystem", url, mode, opts)
    for cls in plugins().values():
        if mimetype in getattr(cls, "mimetypes", ()):
            return _instantiate(cls, url, mode, opts)
    raise ArchivePluginNotFound("no archive plugin for MIME type %r; %s" % (mimetype, _known()))


def _local_path(url) -> str:
    url = os.fspath(url)
    if url.startswith("file:"):
        import urllib.parse      # here and below: only URLs need it (start-up cost)
        return urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return url


def _suffix_class(path: str) -> Optional[type]:
    """The plugin whose longest suffix ends ``path`` (case-insensitive)."""
    lowered = path.lower()
    best, best_len = None, 0
    for cls in plugins().values():
        for suffix in getattr(cls, "suffixes", ()):
            if suffix and lowered.endswith(suffix.lower()) and len(suffix) > best_len:
                best, best_len = cls, len(suffix)
    return best


def find_suffix_plugin(url, mode: str = "r", opts=None) -> AbstractArchive:
    """Open ``url`` with the plugin for its file suffix; a directory gets filesystem."""
    path = _local_path(url)
    if os.path.isdir(path):
        return find_plugin("filesystem", url, mode, opts)
    cls = _suffix_class(path)
    if cls is None:
        raise ArchivePluginNotFound("no archive plugin for the suffix of %s; %s"
                                    % (path, _known()))
    return _instantiate(cls, url, mode, opts)


SNIFF_BYTES = 512      # what a plugin's ``sniff`` sees of a file


def _sniff_class(path: str, head: Optional[bytes] = None) -> Optional[type]:
    """The plugin that recognizes the file's content, if any.

    Signatures are the registry's own table plus a plugin's optional
    ``magic`` class attribute (a tuple of byte prefixes); then each plugin's
    optional ``sniff(head)`` class method, given the first ``SNIFF_BYTES``
    bytes (a tar is recognized by its header, not by a prefix).
    """
    if head is None:
        try:
            with open(path, "rb") as f:
                head = f.read(SNIFF_BYTES)
        except OSError:
            return None
    if not _registered and _plugin_specs() == _BUILTINS:
        return _builtin_sniff(head)
    table = dict(_SIGNATURES)
    found = plugins()
    for name, cls in found.items():
        for prefix in getattr(cls, "magic", ()):
            table[bytes(prefix)] = name
    longest = max(len(p) for p in table)
    if len(head) == SNIFF_BYTES and longest > SNIFF_BYTES and path is not None:
        try:
            with open(path, "rb") as f:
                head = f.read(longest)
        except OSError:
            pass
    for prefix, name in sorted(table.items(), key=lambda kv: -len(kv[0])):
        if head.startswith(prefix):
            return plugin_class(name)
    for name, cls in found.items():
        sniff = getattr(cls, "sniff", None)
        if sniff is not None:
            try:
                if sniff(head):
                    return cls
            except Exception:  # a broken plugin must not break the others
                continue
    return None


def _builtin_sniff(head: bytes) -> Optional[type]:
    """What ``_sniff_class`` finds when only archfs's own plugins exist,
    importing only the plugin that matches."""
    for prefix, name in sorted(_SIGNATURES.items(), key=lambda kv: -len(kv[0])):
        if head.startswith(prefix):
            return plugin_class(name)
    for name, spec in _BUILTIN_SNIFF.items():
        module_name, _, attr = spec.partition(":")
        try:
            if getattr(import_module(module_name), attr)(head):
                return plugin_class(name)
        except Exception:  # as with a plugin's own sniff: not this format
            continue
    return None


def _remote_class(url: str, mode: str) -> type:
    """A remote archive's plugin: by the suffix of its URL's path (its content
    would cost requests), else by its first bytes."""
    import urllib.parse
    from archfs.engine import transports
    cls = _suffix_class(urllib.parse.urlsplit(url).path)
    if cls is not None:
        return cls
    transport = transports.open_remote(url)      # raises NoSuchFile when missing
    try:
        cls = _sniff_class(url, transport.pread(SNIFF_BYTES, 0))
    finally:
        transport.release()
    if cls is None:
        raise ArchivePluginNotFound("cannot tell the archive format of %s; %s"
                                    % (transports.redact(url), _known()))
    return cls


def archive_class(url, mode: str = "r") -> type:
    """The plugin class for whatever ``url`` is: a directory, a file whose
    content a plugin recognizes, else a file with a known suffix; a remote
    URL (``s3://``, ``https://``, ...) by its suffix, else its content."""
    from archfs.engine.transports import is_remote
    if is_remote(url):
        return _remote_class(os.fspath(url), mode)
    path = _local_path(url)
    if os.path.isdir(path):
        return plugin_class("filesystem")
    cls = None
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        cls = _sniff_class(path)      # the content decides, whatever the name says
    if cls is None:
        cls = _suffix_class(path)     # a new or empty file, or content no plugin knows
    if cls is None:
        if not os.path.exists(path) and mode == "r":
            raise NoSuchFile("no such archive: %s" % path)
        raise ArchivePluginNotFound("cannot tell the archive format of %s; %s"
                                    % (path, _known()))
    return cls


def open_archive(url, mode: str = "r", opts=None) -> AbstractArchive:
    """Open ``url`` with the plugin ``archive_class`` chooses for it."""
    return _instantiate(archive_class(url, mode), url, mode, opts)


__all__ = [
    "AbstractArchive", "Member", "MemberStat", "ArchivePluginNotFound",
    "FileAlreadyExistsError", "ENTRY_POINT_GROUP", "register_plugin",
    "unregister_plugin", "reload_plugins", "plugins", "plugin_class", "find_plugin",
    "find_mimetype_plugin", "find_suffix_plugin", "archive_class", "open_archive",
]
