"""What a source names: a local path, or a URL that a plugin or transport reads.

Commands take a source as typed; a local path is made absolute at once
(the mount daemon leaves the working directory), a ``file://`` URL becomes
its path, and any other URL (``s3://bucket/a.zip``, ``https://...``) is
passed on untouched for the plugin to open, never taken for a file name.
"""

import os


def is_url(source: str) -> bool:
    """Whether ``source`` is a URL (``scheme://...``) rather than a local path."""
    scheme, sep, _ = str(source).partition("://")
    return (bool(sep) and len(scheme) > 1 and scheme[0].isalpha()
            and all(c.isalnum() or c in "+-." for c in scheme))


def normalize(source) -> str:
    """An absolute local path, or the URL as given."""
    source = os.fspath(source)
    if is_url(source):
        import urllib.parse      # here: only URLs need it (start-up cost)
        parts = urllib.parse.urlsplit(source)
        if parts.scheme.lower() != "file":
            return source
        source = urllib.parse.unquote(parts.path)
    return os.path.abspath(os.path.expanduser(source))


def lock_key(source: str) -> str:
    """What identifies one archive for the one-writer lock."""
    return source if is_url(source) else os.path.realpath(source)
