"""Facts about the host, and dropping the page cache when we may."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def filesystem_type(path: Path) -> str:
    out = subprocess.run(["df", "--output=fstype", str(path)],
                         capture_output=True, text=True)
    lines = out.stdout.split()
    return lines[-1] if out.returncode == 0 and lines else "unknown"


def describe(path: Path) -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_bytes() / (1 << 30), 1),
        "kernel": platform.release(),
        "bench_dir": str(path),
        "bench_fs": filesystem_type(path),
        "disk_free_gib": round(disk_free(path) / (1 << 30), 1),
        "python": platform.python_version(),
        "can_drop_caches": can_drop_caches(),
    }


def can_drop_caches() -> bool:
    return os.access(DROP_CACHES, os.W_OK)


def drop_caches() -> bool:
    """sync, then drop page cache, dentries and inodes (FUSE mounts' too).

    Returns False when not permitted (not root); callers then report their
    "cold" numbers as not truly cold.
    """
    os.sync()
    try:
        with open(DROP_CACHES, "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False
