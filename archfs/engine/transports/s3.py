"""S3 (and S3-compatible stores): conditional reads, and atomic write-back.

``S3File`` presents the object as a writable file. Bytes below the first one
changed since the last publish come from the object (through the block
cache); everything written since lives in a local staging file
(``staging.py``). ``sync()`` publishes all of it at once:

- an object under 5 MiB is sent whole with one PutObject;
- otherwise one multipart upload: unchanged ranges copied server-side
  (UploadPartCopy with a byte range, each conditional on the ETag the mount
  read), changed ones sent, planned by ``parts.py``;
- the upload completes only if the object still has that ETag (If-Match;
  If-None-Match for a new object). Until it completes the object is
  unchanged; a stale ETag means another writer got there first: the publish
  fails with ArchiveChangedError, the staged bytes stay readable (so the
  engine can save what it could not store) and every later write is refused.

A failed publish aborts its upload; one left behind by a daemon that died
mid-commit is aborted by the next read-write mount of the object.
Credentials and endpoint come the usual AWS way (AWS_* variables, config
and credentials files, AWS_ENDPOINT_URL), or ``-o endpoint_url=``.
"""

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional

from archfs.engine.fileaccess import Identity
from archfs.engine.transports import parts as partplan
from archfs.engine.transports.backends import FsspecBackend, Info, error_code, translate
from archfs.engine.transports.netstats import size_text
from archfs.engine.transports.remote import RemoteFile
from archfs.engine.transports.staging import Staging
from archfs.errors import ArchiveChangedError, ObjectChanged

log = logging.getLogger("archfs.remote")

PART_WORKERS = 4
STAGING_KEEP = 64 << 20       # staged bytes kept after a publish, as a cache


class S3Backend(FsspecBackend):
    """Requests through s3fs's client (its credentials and retries)."""

    writable = True
    why_read_only = None
    conditional = True

    def __init__(self, fs, path: str, url: str):
        super().__init__(fs, path, url)
        self.bucket, self.key, _version = fs.split_path(path)

    def _call(self, kind: str, method: str, what: str, sent: int = 0, **kwargs):
        return self._timed(kind, what, lambda: self.fs.call_s3(method, Bucket=self.bucket,
                                                               Key=self.key, **kwargs), sent)

    def stat(self) -> Info:
        try:
            head = self._call("HEAD", "head_object", "")
        except Exception as exc:
            raise translate(exc, self.url, "looking it up") from None
        return Info(int(head["ContentLength"]), head.get("ETag"),
                    int(head["LastModified"].timestamp() * 1e9) if head.get("LastModified")
                    else 0)

    def _get(self, start: int, end: int, etag: Optional[str]) -> bytes:
        from fsspec.asyn import sync
        kwargs = {"Range": "bytes=%d-%d" % (start, end - 1)}
        if etag:
            kwargs["IfMatch"] = etag

        async def get():
            response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key,
                                              **kwargs)
            body = response["Body"]
            try:
                return await body.read()
            finally:
                body.close()
        return sync(self.fs.loop, get)

    # -- writing ----------------------------------------------------------------

    def put(self, data: bytes, etag: Optional[str]) -> str:
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            response = self._call("PUT", "put_object", "%s whole" % size_text(len(data)),
                                  sent=len(data), Body=data, **condition)
        except Exception as exc:
            raise translate(exc, self.url, "writing the object") from None
        return response["ETag"]

    def multipart(self, plan: List[partplan.Part], read: Callable[[int, int], bytes],
                  etag: Optional[str]) -> str:
        try:
            upload = self._call("POST", "create_multipart_upload", "start upload")["UploadId"]
        except Exception as exc:
            raise translate(exc, self.url, "starting an upload") from None
        try:
            with ThreadPoolExecutor(PART_WORKERS, thread_name_prefix="archfs-put") as pool:
                etags = list(pool.map(lambda item: self._part(upload, item[0], item[1], read,
                                                              etag), enumerate(plan, 1)))
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            done = self._call("POST", "complete_multipart_upload", "complete %d parts"
                              % len(plan), UploadId=upload, MultipartUpload={"Parts": [
                                  {"PartNumber": n, "ETag": e} for n, e in
                                  enumerate(etags, 1)]}, **condition)
        except BaseException as exc:
            self._abort(upload)
            if isinstance(exc, Exception):
                raise translate(exc, self.url, "uploading") from None
            raise
        return done["ETag"]

    def _part(self, upload: str, number: int, part: partplan.Part, read, etag) -> str:
        if part.copy:
            condition = {"CopySourceIfMatch": etag} if etag else {}
            response = self._call("PUT", "upload_part_copy", "part %d: copy bytes %d-%d"
                                  % (number, part.start, part.end - 1), UploadId=upload,
                                  PartNumber=number,
                                  CopySource={"Bucket": self.bucket, "Key": self.key},
                                  CopySourceRange="bytes=%d-%d" % (part.start, part.end - 1),
                                  **condition)
            return response["CopyPartResult"]["ETag"]
        body = read(part.size, part.start)
        if len(body) != part.size:
            raise OSError(5, "staged bytes %d-%d could not be read" % (part.start, part.end - 1))
        response = self._call("PUT", "upload_part", "part %d: %s" % (number, size_text(len(body))),
                              sent=len(body), UploadId=upload, PartNumber=number, Body=body)
        return response["ETag"]

    def _abort(self, upload: str) -> None:
        try:
            self._call("DELETE", "abort_multipart_upload", "abort upload", UploadId=upload)
        except Exception as exc:       # the next read-write mount aborts it
            log.warning("%s: could not abort an unfinished upload: %s", self.url, exc)

    def abort_stale_uploads(self) -> int:
        """Abort uploads of this object left by a daemon that died mid-commit."""
        try:
            listing = self._timed("GET", "list uploads", lambda: self.fs.call_s3(
                "list_multipart_uploads", Bucket=self.bucket, Prefix=self.key))
        except Exception as exc:
            log.info("%s: cannot list unfinished uploads: %s", self.url, exc)
            return 0
        aborted = 0
        for upload in listing.get("Uploads") or []:
            if upload.get("Key") != self.key:
                continue
            self._abort(upload["UploadId"])
            aborted += 1
            log.warning("%s: aborted an unfinished upload started %s (a commit that never "
                        "completed; the object was left as it was)", self.url,
                        upload.get("Initiated"))
        return aborted


class _Published:
    """The object as last published (the engine reads what a round of writes
    is about to replace, such as the old central directory)."""

    def __init__(self, owner: "S3File"):
        self._owner = owner

    def pread(self, size: int, pos: int) -> bytes:
        return self._owner.cache.read(size, pos)

    def size(self) -> int:
        return self._owner.cache.limit


class S3File(RemoteFile):
    """An S3 object as a writable file with an atomic ``sync`` (see the module docstring)."""

    writable = True
    atomic = True

    def __init__(self, backend: S3Backend, cache_bytes: int, staging_dir: Optional[str] = None,
                 info: Optional[Info] = None):
        if info is None:
            try:
                info = backend.stat()
            except FileNotFoundError:
                info = Info(0, None, 0)        # a new object, created by the first publish
        super().__init__(backend, cache_bytes, info)
        self.exists = info.etag is not None or info.size > 0
        self._staging = Staging(staging_dir)
        self._size = info.size
        self._valid = info.size       # the object's bytes below this are still current
        self._write_lock = threading.RLock()
        self._conflict: Optional[str] = None
        self._published_view = _Published(self)
        self._publishing = False
        self._publish_done = threading.Condition()
        self._local = threading.local()
        self.publishes = 0
        if self.exists:
            backend.abort_stale_uploads()

    @property
    def published(self) -> _Published:
        return self._published_view

    def _fetch(self, start: int, end: int) -> bytes:
        """A GET conditional on the version read; one that lost the race with
        this mount's own publish (the bytes it asks for are the same in both
        versions: changed ranges are read from the staging file) asks again."""
        etag = self._info.etag
        try:
            return self.backend.get(start, end, etag)
        except ObjectChanged:
            with self._publish_done:      # wait for a publish under way (not from inside it)
                if not getattr(self._local, "publishing", False):
                    self._publish_done.wait_for(lambda: not self._publishing, 600)
                current = self._info.etag
            if current == etag:
                raise
            return self.backend.get(start, end, current)

    def _read_for_upload(self, size: int, pos: int) -> bytes:
        self._local.publishing = True
        return self.pread(size, pos)

    # -- the staged view ----------------------------------------------------------

    def pread(self, size: int, pos: int) -> bytes:
        end = min(pos + size, self._size)
        if pos >= end:
            return b""
        pieces = []
        at = pos
        for a, b in self._staging.present.covering(pos, end) + [(end, end)]:
            if a > at:
                pieces.append(self._published_bytes(a - at, at))
            if b > a:
                pieces.append(self._staging.pread(b - a, a))
            at = max(at, b)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _published_bytes(self, size: int, pos: int) -> bytes:
        valid = min(pos + size, self._valid)
        data = super().pread(valid - pos, pos) if valid > pos else b""
        return data + bytes(size - len(data))

    def size(self) -> int:
        return self._size

    def identity(self) -> Identity:
        return Identity(0, 0, self._size, self._info.mtime_ns)

    def pwrite(self, data, pos: int) -> int:
        self._check()
        with self._write_lock:
            if pos > self._size:
                self._staging.zeros(self._size, pos)
            self._staging.pwrite(data, pos)
            self._size = max(self._size, pos + len(data))
        return pos + len(data)

    def truncate(self, size: int) -> None:
        with self._write_lock:
            if size < self._size:
                self._staging.truncate(size)
                self._valid = min(self._valid, size)
            else:
                self._staging.zeros(self._size, size)
            self._size = size

    def replace_with(self, fd: int) -> None:
        """The local file open as ``fd`` becomes the whole content (published
        by the next ``sync``)."""
        with self._write_lock:
            self.truncate(0)
            pos = 0
            while True:
                chunk = os.pread(fd, 1 << 20, pos)
                if not chunk:
                    break
                pos = self.pwrite(chunk, pos)

    def lock_for_writing(self) -> bool:
        return True     # one writer per machine is the mount's lock; across machines, If-Match

    def check_unchanged(self, known) -> Optional[str]:
        return self._conflict

    def _check(self) -> None:
        if self._conflict:
            raise ArchiveChangedError(self._conflict)

    # -- publishing ---------------------------------------------------------------

    def sync(self) -> None:
        """Publish every change at once (see the module docstring)."""
        self._check()
        with self._write_lock:
            changed = list(self._staging.dirty.items)
            size = self._size
            if not changed and size == self._info.size and self.exists:
                return
            started = time.monotonic()
            before = self.stats.snapshot()
            etag = self._info.etag if self.exists else None
            with self._publish_done:
                self._publishing = True
            try:
                if size < partplan.MIN_PART:
                    new_etag = self.backend.put(self._read_for_upload(size, 0), etag)
                    how = "whole"
                else:
                    plan = partplan.plan(size, changed, self._valid)
                    new_etag = self.backend.multipart(plan, self._read_for_upload, etag)
                    how = "%d parts, %s copied in place" % (
                        len(plan), size_text(sum(p.size for p in plan if p.copy)))
                first = min([a for a, _ in changed] + [self._valid])
                self.cache.invalidate(first)
                self.cache.limit = size
                self._info = Info(size, new_etag, time.time_ns())
            except ArchiveChangedError as exc:
                self._conflict = ("%s: another writer changed the object since this mount "
                                  "read it; these changes were not stored there, and writing "
                                  "stops" % self.location)
                log.error(self._conflict)
                raise ArchiveChangedError(self._conflict) from exc
            finally:
                self._local.publishing = False
                with self._publish_done:
                    self._publishing = False
                    self._publish_done.notify_all()
            self._valid = size
            self.exists = True
            self._staging.published(STAGING_KEEP)
            self.publishes += 1
            after = self.stats.snapshot()
            log.info("%s: published %s (%s; sent %s in %d requests, %.2f s)", self.location,
                     size_text(size), how, size_text(after["sent"] - before["sent"]),
                     sum(after["requests"].values()) - sum(before["requests"].values()),
                     time.monotonic() - started)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._staging.close()


__all__ = ["S3Backend", "S3File", "error_code"]
