"""The timed primitives the row groups are built from: find, sequential
read, random reads, and checking what a tool saved.

Each records into an Outcome; times are wall-clock as a user at a shell
would wait for them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

from benchlib.settings import scratch_dir
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


def mb(nbytes: int | None) -> float | None:
    return None if nbytes is None else round(nbytes / MB, 1)


def find(mnt: Path, expected: int, out: Outcome, label: str) -> float:
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


def walk_read(mnt: Path, command: str, cap_s: float, out: Outcome, metric: str,
              check=None) -> float | None:
    """Seconds a shell command that reads every file below ``mnt`` takes
    (``{mnt}`` in it is replaced); None (marked capped) if it ran past the cap.

    ``check(stdout)`` returns a note when the output shows files were missed.
    """
    cmd = ["bash", "-o", "pipefail", "-c", command.format(mnt=shlex.quote(str(mnt)))]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=cap_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        out.na[metric] = f">{cap_s:.0f} (capped)"
        out.notes.append(f"{metric}: stopped after {cap_s:.0f} s (time cap)")
        return None
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):      # grep: 1 = no match, still read everything
        raise RuntimeError(f"{command.split()[0]} failed ({proc.returncode}): "
                           f"{stderr.decode(errors='replace')[:200]}")
    note = check(stdout) if check else None
    if note:
        out.notes.append(f"{metric}: {note}")
    return elapsed


def read_all(path: Path, expected: int, cap_s: float, out: Outcome,
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


def random_reads(path: Path, facts: dict, cap_s: float, out: Outcome,
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


def scratch_copy(source: Path) -> Path:
    scratch_dir().mkdir(parents=True, exist_ok=True)
    target = scratch_dir() / f"write-{source.name}"
    shutil.copyfile(source, target)
    return target


def saved_members(archive: Path, out: Outcome, tool: Tool, metric: str) -> dict:
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


def check_zip(archive: Path, expected: dict) -> list:
    """What unzip -t, 7zz t and Python's zipfile say is wrong with ``archive``
    (every member must test good; ``expected`` names hold these bytes)."""
    problems = []
    unzip = subprocess.run(["unzip", "-tqq", str(archive)], capture_output=True, text=True)
    if unzip.returncode != 0:
        problems.append(f"unzip -t: {(unzip.stdout + unzip.stderr).strip()[:200]}")
    seven = shutil.which("7zz") or shutil.which("7z")
    if seven:
        test = subprocess.run([seven, "t", str(archive)], capture_output=True, text=True)
        text = test.stdout + test.stderr
        if test.returncode != 0 or "Everything is Ok" not in text or "WARNING" in text.upper():
            problems.append(f"7z t: {text.strip()[-300:]}")
    else:
        problems.append("7z is not installed")
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                problems.append(f"zipfile: {bad} fails its CRC")
            for name, data in expected.items():
                if zf.read(name) != data:
                    problems.append(f"zipfile: {name} holds other bytes")
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        problems.append(f"zipfile: {exc}")
    return problems
