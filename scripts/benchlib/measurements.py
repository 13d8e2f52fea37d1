"""One function per row group: mount a tool, measure, unmount, verify.

Each returns an Outcome whose metric keys are the row ids of rows.py
without the group prefix.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Callable

from benchlib import machine, probes, workloads as wl
from benchlib.mounts import Mount
from benchlib.probes import Outcome
from benchlib.procs import PeakRss, tree_peak_since_start
from benchlib.settings import BENCH_DIR, Sizes, edit_files, log_dir, mount_root
from benchlib.tools import Tool


@dataclasses.dataclass
class Context:
    sizes: Sizes
    workloads: wl.Workloads
    cold_ok: bool = True           # every drop_caches call succeeded
    remote: object = None          # the S3 store of the remote rows, once started

    def remote_store(self):
        if self.remote is None:
            from benchlib.remote import RemoteStore
            self.remote = RemoteStore(self.workloads, print)
        return self.remote

    def close_remote(self) -> None:
        if self.remote is not None:
            self.remote.stop()

    def drop(self) -> None:
        if not machine.drop_caches():
            self.cold_ok = False

    def mnt(self, tool: Tool) -> Path:
        return mount_root() / tool.name

    def state(self, tool: Tool) -> Path:
        return BENCH_DIR / "state" / tool.name

    def log(self, tool: Tool) -> Path:
        log_dir().mkdir(parents=True, exist_ok=True)
        return log_dir() / f"{tool.name}.log"

    def mount(self, tool: Tool, archive: Path, writable: bool = False,
              fresh: bool = True) -> Mount:
        if fresh:
            tool.forget_state(archive, self.state(tool))
        self.drop()
        return Mount(tool, archive, self.mnt(tool), writable, self.state(tool),
                     self.log(tool))


def _start(m: Mount, out: Outcome, prefix: str = "mount") -> None:
    out.metrics[f"{prefix}_s"] = m.start()
    out.metrics[f"{prefix}_rss_mb"] = probes.mb(tree_peak_since_start(m.pid))



# -- row groups ---------------------------------------------------------------
def tree(ctx: Context, tool: Tool, name: str) -> Outcome:
    out = Outcome()
    archive = ctx.workloads.path(name)
    expected = ctx.workloads.manifest(name)["facts"]["tree_entries"]
    with ctx.mount(tool, archive) as m:
        _start(m, out)
        ctx.drop()
        with PeakRss(m.pid) as peak:
            out.metrics["find_cold_s"] = probes.find(m.mnt, expected, out, "cold")
            out.metrics["find_warm_s"] = probes.find(m.mnt, expected, out, "warm")
        out.metrics["find_rss_mb"] = probes.mb(peak.peak_bytes)
        m.unmount()
    with ctx.mount(tool, archive, fresh=False) as m:
        _start(m, out, "remount")
        m.unmount()
    return out


GREP = "grep -r --count --binary-files=text the {mnt}"
TAR = "tar cf - {mnt} | wc -c"


def read_every_file(ctx: Context, tool: Tool) -> Outcome:
    """grep -r and tar cf - over the 100,000-file tree, each on a fresh mount,
    cold then warm. A tool whose cold run hits the time cap is not run warm."""
    out = Outcome()
    archive = ctx.workloads.path(wl.SMALL)
    files = ctx.workloads.manifest(wl.SMALL)["facts"]["files"]
    content = wl.content_bytes(archive)

    def grep_check(stdout: bytes) -> str | None:
        seen = stdout.count(b"\n")
        return None if seen == files else f"grep read {seen:,} of {files:,} files"

    def tar_check(stdout: bytes) -> str | None:
        size = int(stdout.strip() or 0)
        return None if size >= content else f"tar wrote {size:,} bytes, less than the " \
            f"{content:,} bytes of content"

    peak_mb = 0.0
    for key, command, check in (("grep", GREP, grep_check), ("tar", TAR, tar_check)):
        with ctx.mount(tool, archive) as m:
            m.start()
            ctx.drop()
            with PeakRss(m.pid) as peak:
                cold = probes.walk_read(m.mnt, command, ctx.sizes.read_cap_s, out,
                                        f"{key}_cold_s", check)
                out.metrics[f"{key}_cold_s"] = cold
                if cold is None:
                    out.na[f"{key}_warm_s"] = "n/a (cold run capped)"
                else:
                    out.metrics[f"{key}_warm_s"] = probes.walk_read(
                        m.mnt, command, ctx.sizes.read_cap_s, out, f"{key}_warm_s", check)
            peak_mb = max(peak_mb, probes.mb(peak.peak_bytes) or 0.0)
            m.unmount()
    out.metrics["rss_mb"] = peak_mb or None
    return out


def sequential(ctx: Context, tool: Tool, name: str) -> Outcome:
    out = Outcome()
    facts = ctx.workloads.manifest(name)["facts"]
    with ctx.mount(tool, ctx.workloads.path(name)) as m:
        _start(m, out)
        member = m.mnt / facts["member"]
        ctx.drop()
        with PeakRss(m.pid) as peak:
            for metric in ("cold_mbs", "warm_mbs"):
                out.metrics[metric] = probes.read_all(member, facts["member_bytes"],
                                                ctx.sizes.read_cap_s, out, metric)
        out.metrics["rss_mb"] = probes.mb(peak.peak_bytes)
        if name.startswith(wl.DEFLATED):
            ctx.drop()
            with PeakRss(m.pid) as peak:
                probes.random_reads(member, facts, ctx.sizes.read_cap_s, out, "rand")
            out.metrics["rand_rss_mb"] = probes.mb(peak.peak_bytes)
        m.unmount()
    return out


def random_fresh(ctx: Context, tool: Tool) -> Outcome:
    out = Outcome()
    facts = ctx.workloads.manifest(wl.DEFLATED)["facts"]
    with ctx.mount(tool, ctx.workloads.path(wl.DEFLATED)) as m:
        _start(m, out)
        ctx.drop()
        with PeakRss(m.pid) as peak:
            probes.random_reads(m.mnt / facts["member"], facts, ctx.sizes.read_cap_s,
                          out, "rand")
        out.metrics["rand_rss_mb"] = probes.mb(peak.peak_bytes)
        m.unmount()
    return out


def add_small_file(ctx: Context, tool: Tool, name: str) -> Outcome:
    out = Outcome()
    if not tool.writes_back:
        out.na["total_s"] = tool.no_write_reason
        return out
    archive = probes.scratch_copy(ctx.workloads.path(name))
    try:
        before = probes.saved_members(archive, Outcome(), tool, "total_s")["names"]
        with ctx.mount(tool, archive, writable=True) as m:
            _start(m, out)
            t0 = time.perf_counter()
            with open(m.mnt / probes.ADDED_NAME, "wb") as f:
                f.write(probes.ADDED_DATA)
            out.metrics["write_s"] = time.perf_counter() - t0
            m.unmount()
            out.metrics["total_s"] = time.perf_counter() - t0
        saved = probes.saved_members(archive, out, tool, "total_s")
        if ".tar" in name:                  # a tar stays a tar: nothing to mark
            out.marks.pop("total_s", None)
            out.notes = [n for n in out.notes if "as a tar archive" not in n]
        if saved["added"] != probes.ADDED_DATA:
            raise RuntimeError("the added file is missing or wrong after the save")
        if saved["names"] != before | {probes.ADDED_NAME}:
            lost = len(before - saved["names"])
            out.notes.append(f"saved archive differs from original + 1 file "
                             f"({lost} original entries missing)")
    finally:
        archive.unlink(missing_ok=True)
    return out


def copy_in(ctx: Context, tool: Tool) -> Outcome:
    out = Outcome()
    if not tool.writes_back:
        for key in ("copy_s", "save_s", "total_s"):
            out.na[key] = tool.no_write_reason
        return out
    source = ctx.workloads.path(wl.COPY_SOURCE)
    archive = probes.scratch_copy(ctx.workloads.path(wl.MIXED))
    try:
        with ctx.mount(tool, archive, writable=True) as m:
            _start(m, out)
            t0 = time.perf_counter()
            res = subprocess.run(["cp", "-r", str(source), str(m.mnt / "imported")],
                                 capture_output=True, text=True)
            out.metrics["copy_s"] = time.perf_counter() - t0
            if res.returncode != 0:
                raise RuntimeError(f"cp -r failed: {res.stderr.strip()[:200]}")
            out.metrics["save_s"] = m.unmount()
            out.metrics["total_s"] = time.perf_counter() - t0
        saved = probes.saved_members(archive, out, tool, "total_s")["names"]
        copied = sum(1 for n in saved if n.startswith("imported/") and n.endswith(".txt"))
        if copied != ctx.sizes.copy_files:
            raise RuntimeError(f"saved archive holds {copied} of "
                               f"{ctx.sizes.copy_files} copied files")
    finally:
        archive.unlink(missing_ok=True)
    return out


def tar_only(measure: Callable[[Context, Tool], Outcome], metrics: list[str]):
    """A tar row group: tools that cannot read tar get n/a."""
    def run(ctx: Context, tool: Tool) -> Outcome:
        if getattr(tool, "reads_tar", True):
            return measure(ctx, tool)
        out = Outcome()
        for key in metrics:
            out.na[key] = "n/a (zip only)"
        return out
    return run


_TREE = ["mount_s", "mount_rss_mb", "remount_s", "find_cold_s", "find_warm_s", "find_rss_mb"]
_SEQ = ["cold_mbs", "warm_mbs", "rss_mb", "rand_first_s", "rand_median_ms", "rand_total_s",
        "rand_rss_mb"]

EDIT_DATA = bytes((i * 37 + 11) % 256 for i in range(1024))


def edit_run(ctx: Context, tool: Tool) -> Outcome:
    """The editing run on the 1,000,000-entry archive: a second mount (its
    saved index, if the tool keeps one), then N 1 KiB files written and
    fsynced one by one (half new, half replacing existing ones), unmount,
    and a mount of the result. What the tool saved is checked with unzip -t,
    7zz t and Python's zipfile."""
    out = Outcome()
    keys = ("fsync_median_ms", "fsync_max_ms", "commit_kib", "unmount_s", "size_ratio",
            "remount_before_s", "remount_after_s")
    if not tool.writes_back:
        for key in keys:
            out.na[key] = tool.no_write_reason
        return out
    archive = probes.scratch_copy(ctx.workloads.path(wl.TINY))
    try:
        size_before = archive.stat().st_size
        with ctx.mount(tool, archive, writable=True) as m:
            m.start()              # a first mount: builds what the tool keeps
            m.unmount()
        targets = wl.edit_targets(ctx.sizes, edit_files(ctx.sizes))
        with ctx.mount(tool, archive, writable=True, fresh=False) as m:
            out.metrics["remount_before_s"] = m.start()
            times, growth = [], []
            for name in targets:
                path = m.mnt / name
                path.parent.mkdir(parents=True, exist_ok=True)
                before = archive.stat().st_size
                with open(path, "wb") as f:
                    f.write(EDIT_DATA)
                    f.flush()
                    t0 = time.perf_counter()
                    os.fsync(f.fileno())
                    times.append(time.perf_counter() - t0)
                growth.append(archive.stat().st_size - before)
            out.metrics["fsync_median_ms"] = statistics.median(times) * 1000
            out.metrics["fsync_max_ms"] = max(times) * 1000
            out.metrics["commit_kib"] = max(growth) / 1024
            out.metrics["unmount_s"] = m.unmount()
        if not max(growth):
            out.notes.append("fsync did not reach the archive (saved at unmount only)")
            out.marks["fsync_median_ms"] = out.marks["fsync_max_ms"] = "not durable"
        out.metrics["size_ratio"] = archive.stat().st_size / size_before
        problems = probes.check_zip(archive, {name: EDIT_DATA for name in targets})
        if problems:
            raise RuntimeError("the saved archive fails a check: " + "; ".join(problems))
        with ctx.mount(tool, archive, fresh=False) as m:
            out.metrics["remount_after_s"] = m.start()
            if (m.mnt / targets[0]).read_bytes() != EDIT_DATA:
                raise RuntimeError("an edited file reads back wrong after the remount")
            m.unmount()
    finally:
        archive.unlink(missing_ok=True)
    return out


GROUPS: dict[str, Callable[[Context, Tool], Outcome]] = {
    "tree-tiny": lambda c, t: tree(c, t, wl.TINY),
    "tree-small": lambda c, t: tree(c, t, wl.SMALL),
    "seq-stored": lambda c, t: sequential(c, t, wl.STORED),
    "seq-deflated": lambda c, t: sequential(c, t, wl.DEFLATED),
    "read-small": read_every_file,
    "random-fresh": random_fresh,
    "add-mixed": lambda c, t: add_small_file(c, t, wl.MIXED),
    "add-big": lambda c, t: add_small_file(c, t, wl.STORED),
    "copy-in": copy_in,
    "tar-small": tar_only(lambda c, t: tree(c, t, "small.tar"), _TREE),
    "tar-small-gz": tar_only(lambda c, t: tree(c, t, "small.tar.gz"), _TREE),
    "tar-small-zst": tar_only(lambda c, t: tree(c, t, "small.tar.zst"), _TREE),
    "tar-seq": tar_only(lambda c, t: sequential(c, t, "deflated.tar"), _SEQ),
    "tar-seq-gz": tar_only(lambda c, t: sequential(c, t, "deflated.tar.gz"), _SEQ),
    "tar-seq-zst": tar_only(lambda c, t: sequential(c, t, "deflated.tar.zst"), _SEQ),
    "tar-add-big": tar_only(lambda c, t: add_small_file(c, t, "stored.tar"), ["total_s"]),
    "tar-add-gz": tar_only(lambda c, t: add_small_file(c, t, "deflated-archfs.tar.gz"),
                           ["total_s"]),
    "tar-add-gz-first": tar_only(lambda c, t: add_small_file(c, t, "deflated.tar.gz"),
                                 ["total_s"]),
    "edit-tiny": edit_run,
    "remote-mount": lambda c, t: _remote().remote_mount(c, t),
    "remote-seq": lambda c, t: _remote().remote_sequential(c, t),
}


def _remote():
    from benchlib import remote
    return remote


NEEDS = {  # workloads each group reads
    "tree-tiny": [wl.TINY], "tree-small": [wl.SMALL], "read-small": [wl.SMALL],
    "seq-stored": [wl.STORED],
    "seq-deflated": [wl.DEFLATED], "random-fresh": [wl.DEFLATED],
    "add-mixed": [wl.MIXED], "add-big": [wl.STORED],
    "copy-in": [wl.MIXED, wl.COPY_SOURCE],
    "tar-small": ["small.tar"], "tar-small-gz": ["small.tar.gz"],
    "tar-small-zst": ["small.tar.zst"], "tar-seq": ["deflated.tar"],
    "tar-seq-gz": ["deflated.tar.gz"], "tar-seq-zst": ["deflated.tar.zst"],
    "tar-add-big": ["stored.tar"], "tar-add-gz": ["deflated-archfs.tar.gz"],
    "tar-add-gz-first": ["deflated.tar.gz"],
    "edit-tiny": [wl.TINY],
    "remote-mount": [wl.SMALL], "remote-seq": [wl.STORED],
}
