"""Transports for archives that live elsewhere: S3, HTTP(S), any fsspec URL.

``open_remote(url, writable, opts)`` gives a transport with the interface
of ``archfs.engine.fileaccess`` (which documents it): the plugins hand it to
their engine, so every format reads through every transport.

- ``s3://bucket/key`` (and ``s3a://``): ``s3.S3File``, read-write, each
  commit published atomically (needs s3fs: ``pip install 'archfs[s3]'``);
- ``http://``, ``https://``: read-only (``backends.HttpBackend``);
- any other URL fsspec knows (``gs://``, ``ftp://``, ``memory://``, ...):
  read-only through that filesystem.

Reads go through a bounded block cache with readahead (``blockcache.py``);
requests and bytes are counted (``netstats.py``) and logged with ``-v``.
"""

import logging
from typing import Optional

from archfs import optionspec
from archfs.engine.transports.backends import redact
from archfs.errors import UnsupportedURL
from archfs.optionspec import Option

log = logging.getLogger("archfs.remote")

S3_SCHEMES = ("s3", "s3a")
HTTP_SCHEMES = ("http", "https")

# -o options of every remote archive, whatever its format
OPTIONS = {
    "endpoint_url": Option(
        "endpoint_url", "URL", "AWS_ENDPOINT_URL, else AWS",
        "address of the S3-compatible store holding s3:// archives (MinIO, Ceph, SeaweedFS, "
        "R2, ...); credentials come from the AWS_* variables or the AWS config files",
        optionspec.text),
    "anon": Option("anon", None, "off", "read s3:// archives without credentials (public "
                   "buckets)"),
    "cache_mb": Option("cache_mb", "MIB", "64",
                       "memory for the block cache of a remote archive (s3://, http(s)://...)",
                       optionspec.whole(4)),
}

DEFAULT_CACHE_MB = 64


def scheme(source) -> str:
    text = str(source)
    return text.partition("://")[0].lower() if "://" in text else ""


def is_remote(source) -> bool:
    """Whether ``source`` is a URL a transport reads (not a local path or file://)."""
    from archfs.sources import is_url
    return is_url(str(source)) and scheme(source) != "file"


def _storage_options(kind: str, opts: dict) -> dict:
    options = {}
    if kind in S3_SCHEMES:
        if opts.get("endpoint_url"):
            options["endpoint_url"] = str(opts["endpoint_url"])
        if _flag(opts.get("anon")):
            options["anon"] = True
    return options


def _flag(value) -> bool:
    return value is not None and value is not False and str(value).lower() not in (
        "0", "no", "off", "false")


def _filesystem(url: str, kind: str, opts: dict):
    try:
        import fsspec
    except ImportError:
        raise UnsupportedURL("%s: remote archives need fsspec: pip install 'archfs[s3]'"
                             % redact(url)) from None
    try:
        return fsspec.core.url_to_fs(url, **_storage_options(kind, opts))
    except ImportError as exc:
        package = {"s3": "s3fs", "s3a": "s3fs", "http": "aiohttp", "https": "aiohttp"}.get(
            kind, getattr(exc, "name", None) or "its fsspec backend")
        raise UnsupportedURL("%s: %s:// archives need %s: pip install 'archfs[s3]'"
                             % (redact(url), kind, package)) from None
    except ValueError as exc:
        raise UnsupportedURL("%s: unsupported URL scheme %r (%s)"
                             % (redact(url), kind, exc)) from None


def open_remote(url: str, writable: bool = False, opts: Optional[dict] = None,
                staging_dir: Optional[str] = None):
    """The transport for ``url`` (one HEAD request). A read-write open of a
    store that cannot take atomic writes gives a read-only transport whose
    ``why_read_only`` says why; a missing S3 object opened read-write is
    created by the first ``sync``."""
    from archfs.engine.transports.backends import FsspecBackend, HttpBackend
    from archfs.engine.transports.remote import RemoteFile

    opts = dict(opts or {})
    kind = scheme(url)
    fs, path = _filesystem(url, kind, opts)
    cache_bytes = int(opts.get("cache_mb") or DEFAULT_CACHE_MB) << 20
    if kind in S3_SCHEMES:
        from archfs.engine.transports.s3 import S3Backend, S3File
        backend = S3Backend(fs, path, url)
        if writable:
            return S3File(backend, cache_bytes, staging_dir)
        return RemoteFile(backend, cache_bytes)
    backend = (HttpBackend if kind in HTTP_SCHEMES else FsspecBackend)(fs, path, url)
    return RemoteFile(backend, cache_bytes)


def log_opened(transport) -> None:
    """One line, for a remote archive, on what opening it cost."""
    if not getattr(transport, "is_local", True):
        log.info("%s: opened with %s", transport.location, transport.cost())


def local_path(url) -> Optional[str]:
    """The path a local source names (a path or ``file://``), else None."""
    text = str(url)
    if not is_remote(text):
        if scheme(text) == "file":
            import urllib.parse
            return urllib.parse.unquote(urllib.parse.urlsplit(text).path)
        return text
    return None


__all__ = ["OPTIONS", "is_remote", "open_remote", "local_path", "redact", "scheme"]
