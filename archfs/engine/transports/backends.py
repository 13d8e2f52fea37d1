"""The requests a remote archive is read with: one object per store kind.

A backend answers ``stat()`` (one HEAD: size, ETag, modification time) and
``get(start, end, etag)`` (one ranged GET; with an ETag it asks the server
to answer only while the object still has it, so a mount never mixes bytes
of two versions). ``FsspecBackend`` serves any fsspec URL; ``HttpBackend``
adds HTTP's conditional and range checks; the S3 backend (``s3.py``) also
writes. Every request is counted (``netstats``) and logged at debug level.
"""

import logging
import time
from typing import NamedTuple, Optional

from archfs.engine.transports.netstats import Counter, size_text
from archfs.errors import (
    ArchiveChangedError,
    NoSuchFile,
    ObjectChanged,
    RemoteAccessDenied,
    RemoteError,
)

log = logging.getLogger("archfs.remote")

READ_ATTEMPTS = 3


class Info(NamedTuple):
    size: int
    etag: Optional[str]
    mtime_ns: int


def redact(url: str) -> str:
    """A URL fit for logs and mount tables: no user or password, no query
    (a presigned URL's query is a credential)."""
    if url.startswith("/"):          # a local path: no scheme (nor urllib's import)
        return url
    import urllib.parse
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path,
                                    "..." if parts.query else "", ""))


def _mtime_ns(value) -> int:
    """Seconds, a datetime or an HTTP date, as nanoseconds (0 when unknown)."""
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return int(value * 1e9)
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1e9)
    try:
        from email.utils import parsedate_to_datetime
        return int(parsedate_to_datetime(str(value)).timestamp() * 1e9)
    except (TypeError, ValueError):
        return 0


def error_code(exc: BaseException) -> Optional[str]:
    """The S3 error code behind a (possibly translated) exception."""
    for e in (exc, exc.__cause__, exc.__context__):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
        status = getattr(e, "status", None)
        if status == 412:
            return "PreconditionFailed"
    return None


def translate(exc: BaseException, url: str, what: str) -> OSError:
    """An archfs error for a failed request, with one line saying what failed."""
    code = error_code(exc)
    if code in ("PreconditionFailed", "412"):
        return ArchiveChangedError("%s: the object was changed by another writer while "
                                   "mounted" % url)
    if isinstance(exc, FileNotFoundError) or code in ("NoSuchKey", "404", "NotFound"):
        return NoSuchFile("no such archive: %s" % url)
    if any(type(e).__name__ == "NoCredentialsError" for e in (exc, exc.__cause__)):
        return RemoteAccessDenied("%s: no credentials found: set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials (-o anon for "
                                  "a public bucket)" % url)
    if isinstance(exc, PermissionError) or code in ("AccessDenied", "403", "Forbidden"):
        return RemoteAccessDenied("%s: access denied (%s); check the credentials"
                                  % (url, what))
    if isinstance(exc, (RemoteError, ArchiveChangedError, NoSuchFile)):
        return exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RemoteError("%s: %s failed: %s" % (url, what, text))


class FsspecBackend:
    """Any fsspec filesystem: ``info`` and ``cat_file`` with a range."""

    writable = False
    why_read_only = "this kind of store cannot take atomic writes"
    conditional = False        # whether GETs are checked against the ETag

    def __init__(self, fs, path: str, url: str):
        self.fs = fs
        self.path = path
        self.url = redact(url)
        self.stats = Counter()

    def _timed(self, kind: str, what: str, call, sent: int = 0):
        started = time.monotonic()
        try:
            result = call()
        except Exception as exc:
            self.stats.count(kind, sent=sent)
            log.debug("%s %s %s failed after %.0f ms: %s", kind, self.url, what,
                      (time.monotonic() - started) * 1000, exc)
            raise
        got = len(result) if isinstance(result, (bytes, bytearray)) else 0
        self.stats.count(kind, received=got, sent=sent)
        log.debug("%s %s %s: %s in %.0f ms", kind, self.url, what, size_text(got or sent),
                  (time.monotonic() - started) * 1000)
        return result

    def stat(self) -> Info:
        try:
            info = self._timed("HEAD", "", lambda: self.fs.info(self.path))
        except Exception as exc:
            raise translate(exc, self.url, "looking it up") from None
        if info.get("type") == "directory":
            raise NoSuchFile("%s: is a directory, not an archive" % self.url)
        size = info.get("size")
        if size is None:
            raise RemoteError("%s: the server does not say how big it is" % self.url)
        etag = info.get("ETag") or info.get("etag") or None
        mtime = (info.get("LastModified") or info.get("Last-Modified") or info.get("mtime")
                 or info.get("last_modified") or info.get("created"))
        return Info(int(size), etag, _mtime_ns(mtime))

    def get(self, start: int, end: int, etag: Optional[str]) -> bytes:
        what = "bytes=%d-%d" % (start, end - 1)
        for attempt in range(READ_ATTEMPTS):
            try:
                data = self._timed("GET", what, lambda: self._get(start, end, etag))
            except Exception as exc:
                error = translate(exc, self.url, "reading %s" % what)
                if isinstance(error, ArchiveChangedError):
                    error = ObjectChanged("%s: the object was changed by another writer since "
                                          "it was mounted; remount it to read the new version"
                                          % self.url)
                if not isinstance(error, RemoteError) or attempt + 1 == READ_ATTEMPTS:
                    raise error from None
                time.sleep(0.2 * (attempt + 1))
                continue
            if len(data) != end - start:
                raise RemoteError("%s: asked for %d bytes at %d, got %d (the server does "
                                  "not serve byte ranges?)" % (self.url, end - start, start,
                                                               len(data)))
            return data
        raise AssertionError("unreachable")

    def _get(self, start: int, end: int, etag: Optional[str]) -> bytes:
        return self.fs.cat_file(self.path, start=start, end=end)

    def close(self) -> None:
        pass


class HttpBackend(FsspecBackend):
    """HTTP(S): ranged GETs, each conditional on the ETag the mount saw."""

    why_read_only = "HTTP servers take no writes"
    conditional = True

    def _get(self, start: int, end: int, etag: Optional[str]) -> bytes:
        headers = {"Range": "bytes=%d-%d" % (start, end - 1)}
        if etag and not etag.startswith("W/"):    # a weak ETag never matches If-Match
            headers["If-Match"] = etag
        return self.fs.cat_file(self.path, headers=headers)
