"""Workload sizes and on-disk locations, in one place so --quick is a swap."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30

REPO_ROOT = Path(__file__).resolve().parents[2]
# Workloads, mounts, scratch copies and results; ARCHFS_BENCH_DIR moves them
# (e.g. to another disk). The peers' venv always stays in the repository.
BENCH_DIR = Path(os.environ.get("ARCHFS_BENCH_DIR") or REPO_ROOT / ".bench").resolve()
PEERS_VENV = REPO_ROOT / ".bench" / "peers-venv"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every size knob of a run; the name keys the workload cache directory."""

    name: str
    big_member: int          # bytes of the stored and of the deflated member
    small_files: int         # files of 1-4 KiB ...
    small_dirs: int          # ... spread over this many leaf directories
    tiny_files: int          # tiny members ...
    tiny_dirs: int           # ... spread over this many leaf directories
    mixed_files: int         # files of the write-target archive ...
    mixed_bytes: int         # ... whose archive is about this big
    copy_files: int          # files that `cp -r` copies into a mount
    random_reads: int        # 4 KiB reads at seeded offsets
    reps: int                # default repetitions
    read_cap_s: float        # stop a random-read series after this long


FULL = Sizes(
    name="full", big_member=GiB, small_files=100_000, small_dirs=1_000,
    tiny_files=1_000_000, tiny_dirs=10_000, mixed_files=1_000,
    mixed_bytes=120 * MiB, copy_files=10_000, random_reads=200, reps=3,
    read_cap_s=120.0,
)

QUICK = Sizes(
    name="quick", big_member=32 * MiB, small_files=2_000, small_dirs=20,
    tiny_files=20_000, tiny_dirs=200, mixed_files=100, mixed_bytes=8 * MiB,
    copy_files=500, random_reads=50, reps=1, read_cap_s=20.0,
)

SEED = 20240601  # every generator derives its random stream from this


def edit_files(sizes: Sizes) -> int:
    """Fsynced 1 KiB edits of the edit-tiny rows (half new files, half changed);
    not a Sizes field, so that adding it left the cached workloads valid."""
    return 20 if sizes.name == QUICK.name else 100


def workload_dir(sizes: Sizes) -> Path:
    return BENCH_DIR / f"workloads-{sizes.name}"


def scratch_dir() -> Path:
    return BENCH_DIR / "scratch"


def mount_root() -> Path:
    return BENCH_DIR / "mnt"


def log_dir() -> Path:
    return BENCH_DIR / "logs"


def results_dir() -> Path:
    return BENCH_DIR / "results"
