"""archfs: mount archives as ordinary directories.

The Python API (see the README's "Python API"):

- ``archfs.mount(source, mountpoint, **options)`` mounts and returns a
  handle that is a context manager; leaving the block (or ``.unmount()``)
  returns once everything is committed.
- ``archfs.open_archive(url, mode="r", **options)`` opens an archive through
  its plugin, for code that wants members without FUSE.

Failures raise ``archfs.errors`` exceptions (``OSError`` subclasses with an
errno), with the same one-line messages as the ``archfs`` command.
"""

__version__ = "0.1.0"

from archfs import mount  # noqa: E402  (the package is callable: archfs.mount(...))


def open_archive(url, mode: str = "r", opts=None, **options):
    """Open the archive at ``url`` (a path, ``file://`` or another URL a
    plugin reads) with the plugin that fits it; returns the plugin instance
    (``AbstractArchive``: ``getnames``, ``open``, ``listdir``, ``stat``, ...),
    which is a context manager. ``mode`` is ``'r'`` or ``'a'`` (read-write,
    created when missing); ``options`` are the plugin's ``-o`` options as
    keywords (``password="..."``), checked as the command checks them."""
    from archfs import sources
    from archfs.archives import archive_class
    from archfs.errors import NoSuchFile
    from archfs.mount.options import MountOptions, plugin_options

    source = sources.normalize(url)
    if mode == "r" and not sources.is_url(source) and not _exists(source):
        raise NoSuchFile("no such archive: %s" % source)
    cls = archive_class(source, mode)
    given = MountOptions(plugin={name: None if value is True else str(value)
                                 for name, value in options.items()
                                 if value is not None and value is not False})
    checked = plugin_options(given, cls)
    checked.update(opts or {})
    return cls(url=source, mode=mode, opts=checked)


def _exists(path: str) -> bool:
    import os
    return os.path.lexists(path)


_LAZY = {"Mount": "archfs.mount.handle", "MountError": "archfs.mount.preflight",
         "OptionError": "archfs.mount.options"}


def __getattr__(name):   # the API's classes, imported only when asked for
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError("module 'archfs' has no attribute %r" % name)


__all__ = ["mount", "open_archive", "Mount", "MountError", "OptionError", "__version__"]
