"""SIGKILL of the mount daemon in the middle of heavy writes.

Each seeded iteration mounts an archive read-write (with a commit interval
drawn from 0, 0.1 and 1 s), writes, replaces and removes files through the
mount from a thread, fsyncing some of them, and kills the daemon with
SIGKILL at a random moment. Then the archive is brought back, alternately
by ``archfs repair`` and by simply mounting it again, and must be a valid
zip holding, for every file, the version fsynced last before the kill or a
later one (never an older one, never a torn one).

A second test freezes the daemon (SIGSTOP) at many random moments instead
and copies the archive while it stands still: each copy is what a crash at
that instant would leave (between two system calls; a write torn by the
kill itself is what the first test adds), so one mount yields dozens of
crash points. Every copy must recover to a state the workload allows as of
that instant.

A third test does the first on a 200,000-member archive, where commits are
journal records and checkpoints move members over the last directory.

Iterations: ``scaled(ITERATIONS)``, ``scaled(FROZEN_RUNS)`` and
``scaled(BIG_ITERATIONS)`` (see ``stress.py``).
"""

import os
import random
import shutil
import signal
import struct
import threading
import time
import zipfile
import zlib
from collections import Counter

from mount_fixtures import is_mounted, run
from archfs.zipengine.repair import repair as repair_in_process
from stress import assert_valid_zip, repair, scaled

ITERATIONS = 10
FROZEN_RUNS = 3            # mounts; each is frozen about every 80 ms for FROZEN_SECONDS
FROZEN_SECONDS = 3.0
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
        self.ended_by = None     # the OSError the dead mount answered, and when
        self.ended_at = None
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
        except OSError as exc:
            self.ended_by, self.ended_at = exc, time.monotonic()  # checked by the test
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

    def snapshot(self):
        """(history, durable) as of now, for checking a copy taken now."""
        return {name: list(states) for name, states in self.history.items()}, dict(self.durable)

    def check(self, found: dict, snapshot=None) -> None:
        """``found``: name -> bytes of every file the archive holds (now, or
        when ``snapshot`` was taken)."""
        history, durable = snapshot or (self.history, self.durable)
        assert set(found) <= set(NAMES), set(found) - set(NAMES)
        for name in NAMES:
            states = history[name]
            allowed = states[durable[name]:] if name in durable else [None] + states
            now = found.get(name)
            assert now in allowed, "%s: the archive holds %s, allowed: %s" % (
                name, _describe(now), [_describe(s) for s in allowed])


def _describe(data):
    return "absent" if data is None else "%d bytes %r" % (len(data), data[:12])


def _wait_gone(mount, timeout=20):
    """Until the daemon and all its threads are gone: its main thread shows
    as a zombie while another thread may still finish a write."""
    deadline = time.monotonic() + timeout
    while (mount.daemon_running() or _threads_left(mount.pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not mount.daemon_running() and not _threads_left(mount.pid)


def _threads_left(pid) -> bool:
    try:
        return len(os.listdir("/proc/%d/task" % pid)) > 1
    except FileNotFoundError:
        return False


def _wait_stopped(pid, timeout=10):
    """Until every thread of ``pid`` has stopped: kill(2) returns before that,
    and a thread still running could answer one more request."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                    states.append(f.read().rpartition(")")[2].split()[0])
            except FileNotFoundError:
                continue        # a thread that just ended
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise AssertionError("the daemon did not stop within %s s" % timeout)


def _kill(mount, work, writer):
    """SIGKILL the daemon, let the writer run into the dead mount, unmount.

    The dead mount stays attached until the lazy unmount, so every call the
    writer makes meanwhile fails; after the unmount the same path names the
    bare directory underneath, where a write and its fsync would succeed and
    be taken for durable ones. So the writer must have stopped first.
    """
    killed_at = time.monotonic()
    os.kill(mount.pid, signal.SIGKILL)
    try:
        _wait_gone(mount)
        writer.join(30)
        assert not writer.is_alive(), "the writer hangs on the dead mount"
        assert work.error is None, work.error
        # ENOTCONN, ECONNABORTED or EIO, depending on where the kill caught
        # the request; an error from before the kill is one the live daemon gave
        assert work.ended_by is not None, "the writer stopped without an error"
        assert work.ended_at >= killed_at, "the live mount failed: %r" % work.ended_by
    finally:
        mount.unmounted = True
        mount.force_cleanup()        # the dead mount: fusermount -u -z
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
        _kill(m, work, writer)

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


def test_frozen_daemon_copies_recover(tmp_path, mounter):
    runs = scaled(FROZEN_RUNS)
    copies = 0
    for run_no in range(runs):
        rng = random.Random(1000 + run_no)
        where = tmp_path / ("frozen%d" % run_no)
        where.mkdir()
        archive = where / "archive.zip"
        interval = ["0", "0.1", "1"][run_no % 3]
        m = mounter(archive, "commit_interval=" + interval, mountpoint=where / "mnt")
        work = Workload(str(m.path), 1000 + run_no)
        writer = threading.Thread(target=work.run, daemon=True)
        writer.start()
        taken = []
        deadline = time.monotonic() + FROZEN_SECONDS
        while time.monotonic() < deadline and writer.is_alive():
            time.sleep(rng.uniform(0.01, 0.15))
            os.kill(m.pid, signal.SIGSTOP)
            try:
                _wait_stopped(m.pid)
                state = work.snapshot()
                copy = where / ("copy%d.zip" % len(taken))
                shutil.copyfile(archive, copy)
            finally:
                os.kill(m.pid, signal.SIGCONT)
            taken.append((copy, state))
        work.stop.set()
        writer.join(60)
        assert not writer.is_alive(), "the writer hangs"
        assert work.error is None and work.ended_by is None, work.error or work.ended_by
        m.unmount()
        work.check(assert_valid_zip(archive))
        for copy, state in taken:
            repair_in_process(str(copy))
            try:
                work.check(assert_valid_zip(copy), state)
            except AssertionError as exc:
                raise AssertionError("%s (commit interval %s): %s" % (copy, interval, exc))
            copy.unlink()
        copies += len(taken)
        assert work.fsyncs > 10, "the workload hardly ran"
    assert copies >= 10 * runs


# -- a big archive: commits are journal records, checkpoints move members ----------------

BIG_MEMBERS = 200_000
BIG_ITERATIONS = 3


def _many_members(path, count) -> None:
    """``count`` stored members (100 directories, tiny files), written
    directly: Python's zipfile takes tens of seconds for this many."""
    local = struct.Struct("<4sHHHHHLLLHH")
    central = struct.Struct("<4sHHHHHHLLLHHHHHLL")
    out, directory, pos = [], [], 0
    for i in range(count):
        if i < 100:
            name, data, attr = b"d%02d/" % i, b"", (0o40755 << 16) | 0x10
        else:
            name, data, attr = b"d%02d/m%06d" % (i % 100, i), b"%d\n" % i, 0o100644 << 16
        crc = zlib.crc32(data)
        out.append(local.pack(b"PK\x03\x04", 20, 0, 0, 0, 0x5021, crc, len(data), len(data),
                              len(name), 0) + name + data)
        directory.append(central.pack(b"PK\x01\x02", 0x031E, 20, 0, 0, 0, 0x5021, crc,
                                      len(data), len(data), len(name), 0, 0, 0, 0, attr,
                                      pos) + name)
        pos += local.size + len(name) + len(data)
    cd = b"".join(directory)
    zip64 = struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count,
                        len(cd), pos)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, pos + len(cd), 1)
    end = struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(cd), pos, 0)
    with open(path, "wb") as f:
        f.write(b"".join(out) + cd + zip64 + locator + end)


class SmallFiles:
    """Writes small new files through the mount, each fsynced, sometimes
    replacing one written before and sometimes pausing (so a checkpoint
    after an idle period can run, and be killed)."""

    def __init__(self, root, seed: int):
        self.root = root
        self.rng = random.Random(seed)
        self.seed = seed
        self.durable = {}          # name -> bytes an fsync confirmed
        self.later = {}            # name -> versions written after that (fsync unconfirmed)
        self.ended_by = self.ended_at = self.error = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                if self.durable and self.rng.random() < 0.2:
                    name = self.rng.choice(sorted(self.durable))
                else:
                    name = "w%d/f%04d" % (self.seed, n)
                data = ("%s #%d " % (name, n)).encode() + self.rng.randbytes(
                    self.rng.choice([10, 1000, 3000]))
                path = os.path.join(self.root, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                self.later.setdefault(name, []).append(data)
                with open(path, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                self.durable[name] = data
                self.later[name] = []
                if self.rng.random() < 0.1:
                    time.sleep(self.rng.uniform(0.1, 0.4))
        except OSError as exc:
            self.ended_by, self.ended_at = exc, time.monotonic()
        except BaseException as exc:
            self.error = exc


def test_sigkill_while_fsyncing_small_files_into_a_big_archive(tmp_path, mounter):
    """A 200,000-member archive: every fsync is a journal record (no central
    directory), and a pause sets off a checkpoint that moves the new members
    down over the last directory. SIGKILL at a random moment: after the
    next mount or ``archfs repair`` every fsynced file is there, whole."""
    archive = tmp_path / "big.zip"
    _many_members(archive, BIG_MEMBERS)
    durable = {}         # name -> the versions the archive may hold: fsynced last, or later
    for seed in range(scaled(BIG_ITERATIONS)):
        rng = random.Random(500 + seed)
        interval = rng.choice(["0", "0.1", "1"])
        m = mounter(archive, "commit_interval=" + interval, "checkpoint_idle=0.15",
                    mountpoint=tmp_path / ("mnt%d" % seed))
        work = SmallFiles(str(m.path), seed)
        writer = threading.Thread(target=work.run, daemon=True)
        writer.start()
        time.sleep(rng.uniform(0.3, 2.5))
        _kill(m, work, writer)
        assert work.error is None, work.error
        for name, data in work.durable.items():
            durable[name] = [data] + work.later[name]
        maybe = {name: versions for name, versions in work.later.items()
                 if name not in work.durable}      # written, but no fsync returned
        if seed % 2:
            repair(archive)
        again = mounter(archive, mountpoint=tmp_path / ("check%d" % seed))
        for name, allowed in durable.items():
            found = (again.path / name).read_bytes()
            assert found in allowed, (seed, name)
            durable[name] = [found]      # what the next round starts from
        for name, allowed in maybe.items():
            if (again.path / name).exists():
                found = (again.path / name).read_bytes()
                assert found in allowed, (seed, name)
                durable[name] = [found]
        again.unmount()                  # the checkpoint at unmount
    assert len(durable) > 3 * scaled(BIG_ITERATIONS), "the writer hardly fsynced anything"
    with zipfile.ZipFile(archive) as zf:         # a zip again, nothing else in it
        assert all(zf.read(name) == found for name, (found,) in durable.items())
        dirs = {os.path.dirname(name) + "/" for name in durable}
        names = zf.namelist()
        twice = sorted(n for n, k in Counter(names).items() if k > 1)
        strange = sorted(n for n in names if n not in durable and n not in dirs
                         and not n.startswith("d"))
        assert len(names) == BIG_MEMBERS + len(durable) + len(dirs), (twice, strange)
    result = run(["unzip", "-tqq", archive], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_process_whose_main_thread_ended_still_runs_until_its_threads_do(tmp_path):
    """After SIGKILL the main thread is a zombie first while the others end
    (holding the archive open): unmount and the tests wait for those too."""
    import subprocess
    import sys
    from archfs.mount import statefiles
    flag = tmp_path / "release"
    code = ("import ctypes, os, threading, time\n"
            "def wait():\n"
            "    while not os.path.exists(%r): time.sleep(0.02)\n"
            "threading.Thread(target=wait).start()\n"
            "ctypes.CDLL(None).pthread_exit(None)\n" % str(flag))
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open("/proc/%d/stat" % child.pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.02)
        else:
            raise AssertionError("the main thread did not end")
        assert statefiles.process_running(child.pid)      # its other thread runs
        flag.write_text("")
        deadline = time.monotonic() + 30
        while statefiles.process_running(child.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not statefiles.process_running(child.pid)
    finally:
        flag.write_text("")
        child.wait(timeout=30)
