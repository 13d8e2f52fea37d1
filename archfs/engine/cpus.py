"""Which CPUs a thread may run on.

Python runs one thread at a time (the GIL). A read-write mount serves
requests on two threads that take turns: ``cp -r`` sends a file's
asynchronous release while the next file's lookup is already being served.
Spread over CPUs, every turn is a wake-up on another CPU (in a virtual
machine: of a virtual CPU that may have halted meanwhile) and the
interpreter's working set moves between caches; on one CPU the same turns
are plain context switches. Measured on ``cp -r`` of 10,000 small files into
a mounted zip, cold caches as ``scripts/bench`` runs it, alternating runs:
4.04-4.95 s against 4.81-6.23 s spread (medians 4.37 and 5.05 s), the
daemon using 9-25% less CPU time.

The committer and the helpers that work without the GIL (compressing tar
segments, prefetching members) go back to every CPU the mount started
with: their compression runs beside the requests, not between their turns
(committer spread or pinned measured alike on the small files above,
medians 4.47 and 4.82 s over 8 alternating pairs). Nothing
is pinned where the process may use one CPU only, or where the system does
not say which CPU a thread is on.
"""

import os
from typing import FrozenSet, Optional

_home: Optional[int] = None                 # the CPU the request threads share
_everywhere: Optional[FrozenSet[int]] = None  # what the mount started with


def _current_cpu() -> Optional[int]:
    """The CPU this thread last ran on (field 39 of its stat line)."""
    try:
        with open("/proc/thread-self/stat", "rb") as f:
            line = f.read()
        return int(line[line.rindex(b")") + 2:].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def choose_home() -> Optional[int]:
    """Pick the CPU this thread runs on now as the request threads' home
    (once); None where there is nothing to choose."""
    global _home, _everywhere
    if _home is not None:
        return _home
    try:
        allowed = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    cpu = _current_cpu()
    if len(allowed) < 2 or cpu not in allowed:
        return None
    _everywhere, _home = allowed, cpu
    return cpu


def pin_here() -> None:
    """Keep this thread on the home CPU (if one was chosen)."""
    if _home is not None:
        _set(frozenset((_home,)))


def spread_here() -> None:
    """Let this thread (one that compresses without the GIL) use every CPU
    the mount started with."""
    if _everywhere is not None:
        _set(_everywhere)


def _set(cpus: FrozenSet[int]) -> None:
    try:
        os.sched_setaffinity(0, cpus)
    except OSError:     # a CPU taken offline or out of the cpuset: stay as is
        pass
