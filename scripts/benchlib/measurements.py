"""One function per row group: mount a tool, measure, unmount, verify.

Each returns an Outcome whose metric keys are the row ids of rows.py
without the group prefix. Times are wall-clock from this process's view:
what a user at a shell would wait for.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import statistics
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Callable

from benchlib import machine, workloads as wl
from benchlib.mounts import Mount
from benchlib.procs import PeakRss, tree_peak_since_start
from benchlib.settings import Sizes, log_dir, mount_root, scratch_dir, BENCH_DIR
from benchlib.tools import Tool

READ_CHUNK = 1 << 20
ADDED_NAME = "bench-added-1k.bin"
ADDED_DATA = bytes((i * 131 + 7) % 256 for i in range(1024))
MB = 1e6


@dataclasses.dataclass
class Outcome:
    metrics: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    na: dict = dataclasses.field(default_factory=dict)      # metric -> reason
    marks: dict = dataclasses.field(default_factory=dict)   # metric -> caveat
    error: str | None = None


@dataclasses.dataclass
class Context:
    sizes: Sizes
    workloads: wl.Workloads
    cold_ok: bool = True           # every drop_caches call succeeded

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


# -- primitives -------------------------------------------------------------
def _mb(nbytes: int | None) -> float | None:
    return None if nbytes is None else round(nbytes / MB, 1)


def _start(m: Mount, out: Outcome, prefix: str = "mount") -> None:
    out.metrics[f"{prefix}_s"] = m.start()
    out.metrics[f"{prefix}_rss_mb"] = _mb(tree_peak_since_start(m.pid))


def _find(mnt: Path, expected: int, out: Outcome, label: str) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(["find", str(mnt)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"find failed: {res.stderr.decode(errors='replace')[:200]}")
    seen = res.stdout.count(b"\n")
    if seen != expected:
        out.notes.append(f"{label}: find listed {seen:,} entries, expected {expected:,}")
    return elapsed


def _read_all(path: Path, expected: int, cap_s: float, out: Outcome,
              metric: str) -> float:
    """MB/s of open + sequential read to EOF, 1 MiB at a time.

    A tool slower than the cap is measured over what it read in that time.
    """
    buf = bytearray(READ_CHUNK)
    total = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
            if time.perf_counter() - t0 > cap_s:
                break
    elapsed = time.perf_counter() - t0
    if total < expected and n:
        out.marks[metric] = "capped"
        out.notes.append(f"{metric}: stopped after {total >> 20} of {expected >> 20} "
                         f"MiB (time cap {cap_s:.0f} s)")
    elif total != expected:
        raise RuntimeError(f"read {total} bytes of {path.name}, expected {expected}")
    return total / elapsed / MB


def _random_reads(path: Path, facts: dict, cap_s: float, out: Outcome,
                  prefix: str) -> None:
    block = facts["random_block"]
    digests = facts["random_digests"]
    latencies, wrong = [], 0
    t_start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        opened = time.perf_counter() - t_start
        for off in facts["random_offsets"]:
            t0 = time.perf_counter()
            data = os.pread(fd, block, off)
            latencies.append(time.perf_counter() - t0)
            if hashlib.sha256(data).hexdigest() != digests[str(off)]:
                wrong += 1
            if time.perf_counter() - t_start > cap_s:
                break
    finally:
        os.close(fd)
    total = time.perf_counter() - t_start
    planned = len(facts["random_offsets"])
    out.metrics[f"{prefix}_first_s"] = opened + latencies[0]
    out.metrics[f"{prefix}_median_ms"] = statistics.median(latencies) * 1000
    out.metrics[f"{prefix}_reads"] = len(latencies)
    if len(latencies) < planned:
        out.na[f"{prefix}_total_s"] = f">{cap_s:.0f} (capped)"
        out.marks[f"{prefix}_median_ms"] = "capped"
        out.notes.append(f"{prefix}: stopped after {len(latencies)} of {planned} "
                         f"reads (time cap {cap_s:.0f} s)")
    else:
        out.metrics[f"{prefix}_total_s"] = total
    if wrong:
        raise RuntimeError(f"{prefix}: {wrong} of {len(latencies)} random reads "
                           "returned wrong bytes")


def _scratch_copy(source: Path) -> Path:
    scratch_dir().mkdir(parents=True, exist_ok=True)
    target = scratch_dir() / f"write-{source.name}"
    shutil.copyfile(source, target)
    return target


def _saved_members(archive: Path, out: Outcome, tool: Tool, metric: str) -> dict:
    """Names in the saved archive (zip, or tar if the tool converted it)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = {i.filename.rstrip("/"): i for i in zf.infolist()}
            added = zf.read(ADDED_NAME) if ADDED_NAME in names else None
            return {"names": set(names), "added": added}
    if tarfile.is_tarfile(archive):
        out.notes.append(f"{tool.name} saved the zip as a tar archive")
        out.marks[metric] = "as tar"
        with tarfile.open(archive) as tf:
            members = {m.name.lstrip("./").rstrip("/"): m for m in tf.getmembers()}
            added = None
            if ADDED_NAME in members:
                added = tf.extractfile(members[ADDED_NAME]).read()
            return {"names": set(members), "added": added}
    raise RuntimeError(f"{tool.name} left {archive.name} in an unreadable format")


# -- row groups ---------------------------------------------------------------
def tree(ctx: Context, tool: Tool, name: str) -> Outcome:
    out = Outcome()
    archive = ctx.workloads.path(name)
    expected = ctx.workloads.manifest(name)["facts"]["tree_entries"]
    with ctx.mount(tool, archive) as m:
        _start(m, out)
        ctx.drop()
        with PeakRss(m.pid) as peak:
            out.metrics["find_cold_s"] = _find(m.mnt, expected, out, "cold")
            out.metrics["find_warm_s"] = _find(m.mnt, expected, out, "warm")
        out.metrics["find_rss_mb"] = _mb(peak.peak_bytes)
        m.unmount()
    with ctx.mount(tool, archive, fresh=False) as m:
        _start(m, out, "remount")
        m.unmount()
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
                out.metrics[metric] = _read_all(member, facts["member_bytes"],
                                                ctx.sizes.read_cap_s, out, metric)
        out.metrics["rss_mb"] = _mb(peak.peak_bytes)
        if name == wl.DEFLATED:
            ctx.drop()
            with PeakRss(m.pid) as peak:
                _random_reads(member, facts, ctx.sizes.read_cap_s, out, "rand")
            out.metrics["rand_rss_mb"] = _mb(peak.peak_bytes)
        m.unmount()
    return out


def random_fresh(ctx: Context, tool: Tool) -> Outcome:
    out = Outcome()
    facts = ctx.workloads.manifest(wl.DEFLATED)["facts"]
    with ctx.mount(tool, ctx.workloads.path(wl.DEFLATED)) as m:
        _start(m, out)
        ctx.drop()
        with PeakRss(m.pid) as peak:
            _random_reads(m.mnt / facts["member"], facts, ctx.sizes.read_cap_s,
                          out, "rand")
        out.metrics["rand_rss_mb"] = _mb(peak.peak_bytes)
        m.unmount()
    return out


def add_small_file(ctx: Context, tool: Tool, name: str) -> Outcome:
    out = Outcome()
    if not tool.writes_back:
        out.na["total_s"] = tool.no_write_reason
        return out
    archive = _scratch_copy(ctx.workloads.path(name))
    try:
        with zipfile.ZipFile(archive) as zf:
            before = {i.filename.rstrip("/") for i in zf.infolist()}
        with ctx.mount(tool, archive, writable=True) as m:
            _start(m, out)
            t0 = time.perf_counter()
            with open(m.mnt / ADDED_NAME, "wb") as f:
                f.write(ADDED_DATA)
            out.metrics["write_s"] = time.perf_counter() - t0
            m.unmount()
            out.metrics["total_s"] = time.perf_counter() - t0
        saved = _saved_members(archive, out, tool, "total_s")
        if saved["added"] != ADDED_DATA:
            raise RuntimeError("the added file is missing or wrong after the save")
        if saved["names"] != before | {ADDED_NAME}:
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
    archive = _scratch_copy(ctx.workloads.path(wl.MIXED))
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
        saved = _saved_members(archive, out, tool, "total_s")["names"]
        copied = sum(1 for n in saved if n.startswith("imported/") and n.endswith(".txt"))
        if copied != ctx.sizes.copy_files:
            raise RuntimeError(f"saved archive holds {copied} of "
                               f"{ctx.sizes.copy_files} copied files")
    finally:
        archive.unlink(missing_ok=True)
    return out


GROUPS: dict[str, Callable[[Context, Tool], Outcome]] = {
    "tree-tiny": lambda c, t: tree(c, t, wl.TINY),
    "tree-small": lambda c, t: tree(c, t, wl.SMALL),
    "seq-stored": lambda c, t: sequential(c, t, wl.STORED),
    "seq-deflated": lambda c, t: sequential(c, t, wl.DEFLATED),
    "random-fresh": random_fresh,
    "add-mixed": lambda c, t: add_small_file(c, t, wl.MIXED),
    "add-big": lambda c, t: add_small_file(c, t, wl.STORED),
    "copy-in": copy_in,
}

NEEDS = {  # workloads each group reads
    "tree-tiny": [wl.TINY], "tree-small": [wl.SMALL], "seq-stored": [wl.STORED],
    "seq-deflated": [wl.DEFLATED], "random-fresh": [wl.DEFLATED],
    "add-mixed": [wl.MIXED], "add-big": [wl.STORED],
    "copy-in": [wl.MIXED, wl.COPY_SOURCE],
}
