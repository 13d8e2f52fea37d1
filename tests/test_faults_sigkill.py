"""SIGKILL of the mount daemon in the middle of heavy writes.

Each seeded iteration mounts an archive read-write (with a commit interval
drawn from 0, 0.1 and 1 s), writes, replaces and removes files through the
mount from a thread, fsyncing some of them, and kills the daemon with
SIGKILL at a random moment. Then the archive is brought back, alternately
by ``archfs repair`` and by simply mounting it again, and must be a valid
zip holding, for every file, the version fsynced last before the kill or a
later one (never an older one, never a torn one).

Iterations: ``scaled(ITERATIONS)`` (see ``stress.py``).
"""

import os
import random
import signal
import threading
import time
import zipfile

from mount_fixtures import is_mounted
from stress import assert_valid_zip, repair, scaled

ITERATIONS = 10
NAMES = ["f%d" % i for i in range(12)] + ["dir/g%d" % i for i in range(6)]
SIZES = [0, 1, 300, 5000, 70_000, 400_000, 1_500_000]


class Workload:
    """Writes through the mount and records what the archive may hold.

    ``history[name]`` lists every state the file was given, in order (None:
    removed); ``durable[name]`` is the index of the last state an fsync
    confirmed (or, for a removal, that a later fsync of another file made
    durable is not assumed: removals only ever widen what is allowed).
    """

    def __init__(self, root, seed: int):
        self.root = root
        self.rng = random.Random(seed)
        self.history = {name: [] for name in NAMES}
        self.durable = {}
        self.stop = threading.Event()
        self.error = None
        self.fsyncs = 0

    def content(self, name: str) -> bytes:
        size = self.rng.choice(SIZES)
        head = ("%s v%d|" % (name, len(self.history[name]))).encode()
        if self.rng.random() < 0.5:
            return head + self.rng.randbytes(size)
        return head + bytes(self.rng.choice(b"abc\n") for _ in range(min(size, 2000))) * (
            1 + size // 2000)

    def run(self) -> None:
        try:
            os.makedirs(os.path.join(self.root, "dir"), exist_ok=True)
            while not self.stop.is_set():
                self.step()
        except OSError:
            pass     # the daemon was killed: ENOTCONN from here on
        except BaseException as exc:  # a bug in the workload itself
            self.error = exc

    def step(self) -> None:
        name = self.rng.choice(NAMES)
        path = os.path.join(self.root, name)
        if self.rng.random() < 0.1 and self.history[name] and self.history[name][-1] is not None:
            self.history[name].append(None)
            os.unlink(path)
            return
        data = self.content(name)
        self.history[name].append(data)
        with open(path, "wb") as f:
            f.write(data)
            if self.rng.random() < 0.4:
                f.flush()
                os.fsync(f.fileno())
                self.durable[name] = len(self.history[name]) - 1
                self.fsyncs += 1

    def check(self, found: dict) -> None:
        """``found``: name -> bytes of every file the archive holds now."""
        assert set(found) <= set(NAMES), set(found) - set(NAMES)
        for name in NAMES:
            states = self.history[name]
            allowed = states[self.durable[name]:] if name in self.durable else [None] + states
            now = found.get(name)
            assert now in allowed, "%s: the archive holds %s, allowed: %s" % (
                name, _describe(now), [_describe(s) for s in allowed])


def _describe(data):
    return "absent" if data is None else "%d bytes %r" % (len(data), data[:12])


def _wait_gone(mount, timeout=20):
    deadline = time.monotonic() + timeout
    while mount.daemon_running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not mount.daemon_running()


def _kill(mount):
    os.kill(mount.pid, signal.SIGKILL)
    _wait_gone(mount)
    mount.unmounted = True
    mount.force_cleanup()            # the dead mount: fusermount -u -z
    assert not is_mounted(mount.path)


def test_sigkill_during_heavy_writes(tmp_path, mounter):
    seeds = range(scaled(ITERATIONS))
    checked = 0
    for seed in seeds:
        rng = random.Random(seed)
        where = tmp_path / ("run%d" % seed)
        where.mkdir()
        archive = where / "archive.zip"
        interval = rng.choice(["0", "0.1", "1"])
        m = mounter(archive, "commit_interval=" + interval, mountpoint=where / "mnt")
        work = Workload(str(m.path), seed)
        writer = threading.Thread(target=work.run, daemon=True)
        writer.start()
        time.sleep(rng.uniform(0.3, 2.0))
        _kill(m)
        work.stop.set()
        writer.join(30)
        assert not writer.is_alive(), "the writer hangs on the dead mount"
        assert work.error is None, work.error

        if seed % 2 == 0:
            repair(archive)
            work.check(assert_valid_zip(archive))
        else:                        # the next mount recovers by itself
            again = mounter(archive, mountpoint=where / "mnt2")
            found = {}
            for dirpath, _dirs, files in os.walk(again.path):
                for name in files:
                    full = os.path.join(dirpath, name)
                    found[os.path.relpath(full, again.path)] = open(full, "rb").read()
            work.check(found)
            again.unmount()
            work.check(assert_valid_zip(archive))
        with zipfile.ZipFile(archive) as zf:
            assert zf.testzip() is None
        checked += len(work.durable)
    assert checked > len(seeds), "too few fsynced files to check: the workload did not run"
