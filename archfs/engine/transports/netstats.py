"""Counting what a remote archive costs: requests by kind, bytes each way.

Every request a transport makes is counted once, in the object's totals
and in the calling thread's running count, so a read can report what it
alone cost (``Counter.measure``). ``-v`` logs both (see ``remote.py``).
"""

import threading
import time
from collections import Counter as _Tally
from typing import Dict


class Counter:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Dict[str, int] = _Tally()
        self.received = 0
        self.sent = 0
        self._local = threading.local()

    def count(self, kind: str, received: int = 0, sent: int = 0) -> None:
        with self._lock:
            self.requests[kind] += 1
            self.received += received
            self.sent += sent
        mine = getattr(self._local, "tally", None)
        if mine is not None:
            mine[0] += 1
            mine[1] += received + sent

    def snapshot(self) -> dict:
        with self._lock:
            return {"requests": dict(self.requests), "received": self.received,
                    "sent": self.sent}

    def measure(self) -> "Measure":
        """``with counter.measure() as m:`` -> m.requests, m.bytes of this thread."""
        return Measure(self._local)


class Measure:
    def __init__(self, local):
        self._local = local
        self.requests = 0
        self.bytes = 0
        self.seconds = 0.0

    def __enter__(self):
        self._outer = getattr(self._local, "tally", None)
        self._local.tally = [0, 0]
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.requests, self.bytes = self._local.tally
        self.seconds = time.monotonic() - self._started
        self._local.tally = self._outer
        if self._outer is not None:
            self._outer[0] += self.requests
            self._outer[1] += self.bytes
        return False


def describe(snapshot: dict) -> str:
    """``3 requests (1 HEAD, 2 GET), 9.8 MiB received, 0 B sent``"""
    requests = snapshot["requests"]
    total = sum(requests.values())
    kinds = ", ".join("%d %s" % (n, kind) for kind, n in sorted(requests.items()))
    text = "%d request%s" % (total, "" if total == 1 else "s")
    if kinds:
        text += " (%s)" % kinds
    return "%s, %s received, %s sent" % (text, size_text(snapshot["received"]),
                                         size_text(snapshot["sent"]))


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return "%.1f %s" % (n / scale, unit)
    return "%d B" % n
