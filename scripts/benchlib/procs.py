"""Peak resident memory of a daemon and of whatever it forks.

The kernel keeps VmHWM (peak RSS) per process and lets the owner reset it
(`5` into /proc/PID/clear_refs), so a phase's peak is exact for the main
process. Helpers a daemon forks (ratarmount can) are covered by sampling
the summed VmRSS of the whole process tree every few milliseconds.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

SAMPLE_SECONDS = 0.02


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            kids.extend(int(x) for x in text.split())
    except OSError:
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def tree_peak_since_start(pid: int | None) -> int | None:
    """Bytes: the kernel's peak RSS of each process in the tree, summed."""
    if pid is None:
        return None
    return sum(_status_kib(p, "VmHWM") for p in process_tree(pid)) * 1024


def reset_peak(pid: int) -> None:
    for p in process_tree(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            pass


class PeakRss:
    """Context manager measuring the peak RSS (bytes) of a process tree.

    Use `reset=True` to measure one phase of a long-lived daemon; with
    reset=False the kernel's peak since process start is included.
    """

    def __init__(self, pid: int | None, reset: bool = True):
        self.pid = pid
        self.reset = reset
        self.sampled_kib = 0
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakRss":
        if self.pid is None:
            return self
        if self.reset:
            reset_peak(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        tree = process_tree(self.pid)
        n = 0
        while not self._stop.is_set():
            if n % 50 == 0:
                tree = process_tree(self.pid)
            total = sum(_status_kib(p, "VmRSS") for p in tree)
            self.sampled_kib = max(self.sampled_kib, total)
            n += 1
            self._stop.wait(SAMPLE_SECONDS)

    def read_now(self) -> int | None:
        """Peak so far, without stopping the sampler."""
        if self.pid is None:
            return None
        hwm = _status_kib(self.pid, "VmHWM")
        return max(hwm, self.sampled_kib) * 1024

    def __exit__(self, *exc) -> None:
        if self.pid is None:
            return
        self.peak_bytes = self.read_now()
        self._stop.set()
        if self._thread:
            self._thread.join()
