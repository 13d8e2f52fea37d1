"""Baselines measured in the same run, with no FUSE involved.

- zlib inflate: Python's zlib (the library archfs falls back to; it
  inflates with zlib-ng where installed) decompressing the deflated member's
  raw stream, already in memory, on one core. This is the reference for the
  deflated sequential-read row: pure inflate cost, no I/O, no CRC. Each
  piece of output (~3.6 MB) is a new object; with glibc's default settings
  every one is mmapped and faulted in page by page, which made the
  reference swing between ~250 and ~430 MB/s on one machine within an hour
  (1.76 million page faults per three runs). It is measured with those
  blocks kept for reuse (``_keep_freed_memory``), as the archfs daemon
  keeps them: 350-440 MB/s over a day's runs on the same machine.
- unzip -p to /dev/null: Info-ZIP's own inflate plus CRC and a pipe; shown
  for context only.
- local disk: reading the stored archive from the local file system after
  the page cache was dropped.
"""
from __future__ import annotations

import ctypes
import struct
import subprocess
import time
import zipfile
import zlib
from pathlib import Path

from benchlib import machine, workloads as wl

CHUNK = 1 << 20


def raw_member_stream(archive: Path, member: str) -> bytes:
    """The member's compressed bytes, located via its local header."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    with open(archive, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        return f.read(info.compress_size)


def _keep_freed_memory() -> None:
    """glibc: serve blocks up to 64 MiB from the heap and keep freed heap.
    (What archfs.engine.heap does for the daemon; the harness imports
    nothing of the code it measures, so a broken archfs cannot move the
    reference.)"""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(-3, 64 << 20)        # M_MMAP_THRESHOLD
    mallopt(-1, 128 << 20)       # M_TRIM_THRESHOLD


def zlib_inflate_mbs(archive: Path, member: str) -> float:
    _keep_freed_memory()
    raw = raw_member_stream(archive, member)
    view = memoryview(raw)
    out = 0
    t0 = time.perf_counter()
    d = zlib.decompressobj(-15)
    for i in range(0, len(raw), CHUNK):
        out += len(d.decompress(view[i:i + CHUNK]))
    out += len(d.flush())
    elapsed = time.perf_counter() - t0
    return out / elapsed / 1e6


def unzip_pipe_mbs(archive: Path, member: str, size: int) -> float | None:
    try:
        with open("/dev/null", "wb") as null:
            t0 = time.perf_counter()
            code = subprocess.run(["unzip", "-p", str(archive), member],
                                  stdout=null).returncode
            elapsed = time.perf_counter() - t0
    except OSError:
        return None
    return size / elapsed / 1e6 if code == 0 else None


def read_file_mbs(path: Path) -> tuple[float, bool]:
    """Sequential read speed of a local file; (MB/s, cache was dropped)."""
    cold = machine.drop_caches()
    buf = bytearray(CHUNK)
    total = 0
    with open(path, "rb", buffering=0) as f:
        t0 = time.perf_counter()
        while n := f.readinto(buf):
            total += n
        elapsed = time.perf_counter() - t0
    return total / elapsed / 1e6, cold


def run_all(ctx, groups, needs_of) -> dict:
    """Every baseline the selected groups need, for one repetition."""
    out = {}
    needs = {w for g in groups for w in needs_of[g]}
    if wl.DEFLATED in needs:
        facts = ctx.workloads.manifest(wl.DEFLATED)["facts"]
        path = ctx.workloads.path(wl.DEFLATED)
        out["zlib_inflate_mbs"] = zlib_inflate_mbs(path, facts["member"])
        out["unzip_p_mbs"] = unzip_pipe_mbs(path, facts["member"],
                                            facts["member_bytes"])
        out["inflate_to_first_s"] = (facts["random_offsets"][0]
                                     / (out["zlib_inflate_mbs"] * 1e6))
    if wl.STORED in needs:
        out["disk_mbs"], out["disk_cold"] = read_file_mbs(ctx.workloads.path(wl.STORED))
    if "remote-seq" in groups:
        from benchlib.remote import get_object_mbs
        out["get_object_mbs"] = get_object_mbs(ctx)
    return out
