"""The request threads of a read-write mount share one CPU; the committer,
the helpers that compress without the GIL, and read-only mounts keep every
CPU (archfs/engine/cpus.py)."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from mount_fixtures import mounter  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, os, sys
if len(sys.argv) > 1:
    os.sched_setaffinity(0, {int(sys.argv[1])})
before = sorted(os.sched_getaffinity(0))
from archfs.engine import cpus
home = cpus.choose_home()
again = cpus.choose_home()
cpus.pin_here()
pinned = sorted(os.sched_getaffinity(0))
cpus.spread_here()
print(json.dumps({"before": before, "home": home, "again": again, "pinned": pinned,
                  "spread": sorted(os.sched_getaffinity(0))}))
"""


def _probe(*args):
    out = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _allowed(pid, tid=None):
    """A thread's (or the main thread's) allowed CPUs, from /proc."""
    path = "/proc/%d/task/%d/status" % (pid, tid or pid)
    with open(path) as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return _parse_list(line.split(":", 1)[1].strip())
    raise AssertionError("no Cpus_allowed_list in " + path)


def _parse_list(text):
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def _threads(pid):
    return [int(t) for t in os.listdir("/proc/%d/task" % pid)]


def test_home_is_the_current_cpu_and_spread_restores_the_start_set():
    got = _probe()
    if len(got["before"]) < 2:      # one CPU: nothing to choose, nothing changes
        assert got["home"] is None and got["pinned"] == got["before"]
        return
    assert got["home"] in got["before"]
    assert got["again"] == got["home"]          # chosen once
    assert got["pinned"] == [got["home"]]
    assert got["spread"] == got["before"]


def test_a_process_on_one_cpu_pins_nothing():
    cpu = sorted(os.sched_getaffinity(0))[0]
    got = _probe(cpu)
    assert got["before"] == [cpu]
    assert got["home"] is None
    assert got["pinned"] == [cpu] and got["spread"] == [cpu]


def _zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.txt", "hello\n")
    return path


def test_read_write_mount_keeps_its_threads_on_one_cpu(tmp_path, mounter):  # noqa: F811
    everywhere = os.sched_getaffinity(0)
    m = mounter(_zip(tmp_path / "rw.zip"))
    for i in range(20):                    # the committer is running by now
        (m / ("f%d" % i)).write_bytes(b"x" * 1000)
    sets = [_allowed(m.pid, tid) for tid in _threads(m.pid)]
    assert len(sets) >= 3, "expected the main, request and committer threads"
    if len(everywhere) < 2:
        assert all(s == everywhere for s in sets)
        return
    pinned = [s for s in sets if len(s) == 1]
    # the main thread and the request threads share one CPU ...
    assert len(pinned) >= 3 and len({frozenset(s) for s in pinned}) == 1, sets
    assert _allowed(m.pid) == pinned[0]
    # ... the committer, which compresses without the GIL, keeps them all
    assert any(s == everywhere for s in sets), sets
    m.unmount()
    with zipfile.ZipFile(m.archive) as z:
        assert len([n for n in z.namelist() if n.startswith("f")]) == 20


def test_read_only_mount_pins_nothing(tmp_path, mounter):  # noqa: F811
    everywhere = os.sched_getaffinity(0)
    m = mounter(_zip(tmp_path / "ro.zip"), "ro")
    assert (m / "a.txt").read_text() == "hello\n"
    for tid in _threads(m.pid):
        assert _allowed(m.pid, tid) == everywhere


def test_segment_compressors_use_every_cpu():
    """A compressed tar's segment pool: its threads start spread again even
    when the thread that made the pool was pinned."""
    script = r"""
import io, json, os
from archfs.engine import cpus, segments
home = cpus.choose_home()
cpus.pin_here()
sink = segments.SegmentSink(io.BytesIO(), None, 0, 0, threads=2)
worker = sink._pool.submit(lambda: sorted(os.sched_getaffinity(0))).result()
sink._pool.shutdown()
print(json.dumps({"home": home, "worker": worker, "here": sorted(os.sched_getaffinity(0))}))
"""
    got = json.loads(subprocess.run([sys.executable, "-c", script], cwd=REPO,
                                    capture_output=True, text=True, check=True).stdout)
    everywhere = sorted(os.sched_getaffinity(0))
    if got["home"] is None:
        assert got["worker"] == everywhere
        return
    assert got["here"] == [got["home"]]
    assert got["worker"] == everywhere
