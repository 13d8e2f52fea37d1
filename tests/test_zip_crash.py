"""Crash safety: at every instant the archive is a valid zip holding every
completed commit, or becomes one through the engine's own recovery at the
next open.

Two ways of crashing: a child process SIGKILLed at seeded random moments
while it commits (and compacts) in a loop, and a deterministic replay that
captures the archive after every single write the engine makes (and after
half of each write) and opens each of those states.
"""

import logging
import os
import random
import signal
import time
import zipfile

import pytest

from archfs.zipengine import compaction
from archfs.zipengine.store import StoreOptions, ZipStore
from zip_builders import (
    Entry,
    assert_tools_accept,
    open_store,
    pseudo_random,
    read_all,
    tree_of,
    write_zip,
)

# -- the workload: commit k is a deterministic function of k and the state ------------


def content(k: int, tag: str) -> bytes:
    size = 150_000 if k % 7 == 0 else (k * 37) % 4000
    return (b"%s-%d:" % (tag.encode(), k)) + pseudo_random(size, k * 31 + len(tag), alphabet=12)


def ops_for(k: int, files):
    """The changes of commit ``k`` given the current file names."""
    ops = [("put", "f%d" % k, content(k, "new"))]
    if k % 3 == 0 and "f%d" % (k - 2) in files:
        ops.append(("put", "f%d" % (k - 2), content(k, "replaced")))
    if k % 4 == 0 and "f%d" % (k - 3) in files:
        ops.append(("remove", "f%d" % (k - 3)))
    if k % 5 == 0 and "f%d" % (k - 1) in files:
        ops.append(("rename", "f%d" % (k - 1), "dir/g%d" % (k - 1)))
    if k % 11 == 0 and "first" in files:
        ops.append(("remove", "first"))
    ops.append(("put", "counter", b"%d" % k))
    return ops


def initial_state():
    return {"first": b"the first member", "dir/keep": b"keep", "counter": b"0"}


def model_after(commit: int):
    files = initial_state()
    for k in range(1, commit + 1):
        for op in ops_for(k, files):
            if op[0] == "put":
                files[op[1]] = op[2]
            elif op[0] == "remove":
                del files[op[1]]
            else:
                files[op[2]] = files.pop(op[1])
    return files


def apply(store: ZipStore, k: int) -> None:
    files = set(store.names())
    for op in ops_for(k, files):
        if op[0] == "put":
            store.add_bytes(op[1], op[2])
        elif op[0] == "remove":
            store.remove(op[1])
        else:
            store.rename(op[1], op[2])


def child_loop(path: str, report: str, compact_every: int) -> None:
    """Runs in the forked child until it is killed; never returns."""
    status = 1
    try:
        logging.disable(logging.CRITICAL)
        store = ZipStore(path, True, StoreOptions(compact_ratio=0.5, compact_min=256 << 10))
        with store.open_member("counter") as f:
            k = int(f.read())
        fd = os.open(report, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        while True:
            k += 1
            apply(store, k)
            store.commit()
            if compact_every and k % compact_every == 0:
                store.compact()
            os.write(fd, b"%d\n" % k)      # only after commit() returned
            os.fsync(fd)
    except BaseException:
        import traceback
        with open(report + ".error", "a") as f:
            f.write(traceback.format_exc())
    finally:
        os._exit(status)


def last_reported(report: str) -> int:
    try:
        with open(report) as f:
            lines = [line for line in f.read().split("\n") if line.strip()]
    except FileNotFoundError:
        return 0
    return int(lines[-1]) if lines else 0


def seconds_per_commit(tmp_path) -> float:
    """How long one round of the child's loop takes here and now."""
    path = str(tmp_path / "timing.zip")
    store = open_store(path, True)
    for name, data in initial_state().items():
        store.add_bytes(name, data)
    store.commit()
    started = time.monotonic()
    for k in range(1, 9):
        apply(store, k)
        store.commit()
    elapsed = (time.monotonic() - started) / 8
    store.close()
    os.unlink(path)
    return elapsed


def test_sigkill_at_random_moments(tmp_path):
    path = str(tmp_path / "crash.zip")
    report = str(tmp_path / "report")
    store = open_store(path, True)
    for name, data in initial_state().items():
        store.add_bytes(name, data)
    store.commit()
    store.close()
    window = max(0.06, 8 * seconds_per_commit(tmp_path))   # a loaded machine commits slower
    rng = random.Random(20240611)
    iterations = 40
    reported = 0
    commit = 0
    seen = set()
    for i in range(iterations):
        pid = os.fork()
        if pid == 0:
            child_loop(path, report, compact_every=4)
        time.sleep(rng.uniform(0.0, window))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), "the child died by itself: %s" % (
            open(report + ".error").read() if os.path.exists(report + ".error") else status)
        now = last_reported(report)
        assert now >= reported
        reported = now
        # the child went on from the last state seen; every commit it
        # reported returned before the kill, and at most one more can be in
        floor = max(reported, commit)
        store = open_store(path, True)            # recovers what the kill left
        try:
            got = read_all(store)
        finally:
            store.close()
        commit = int(got["counter"])
        assert commit in (floor, floor + 1), (i, commit, floor)
        assert got == model_after(commit), (i, commit)
        seen.add(commit)
    assert reported > 10 and len(seen) > 10      # the loop really made progress
    assert not [n for n in os.listdir(tmp_path) if compaction.TEMP_MARK in n]
    assert_tools_accept(path)


def test_sigkill_during_compaction(tmp_path):
    path = str(tmp_path / "compacting.zip")
    big = pseudo_random(24 << 20, 5)
    store = open_store(path, True)
    store.add_bytes("small", b"small member")
    store.add_bytes("big", big)
    store.add_bytes("x", b"0")
    store.commit()
    store.close()
    rng = random.Random(77)
    caught = 0
    for i in range(6):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            status = 1
            try:
                logging.disable(logging.CRITICAL)

                def progress(what, done, total):
                    if what == "compacting":
                        os.write(write_end, b"c")

                s = ZipStore(path, True, StoreOptions(progress=progress))
                n = 0
                while True:
                    n += 1
                    s.add_bytes("x", b"%d" % n)
                    s.compact(full=True)      # a rewrite, whatever the dead space
            finally:
                os._exit(status)
        os.close(write_end)
        assert os.read(read_end, 1) == b"c"         # the rewrite has begun
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        if [n for n in os.listdir(tmp_path) if compaction.TEMP_MARK in n]:
            caught += 1                              # killed in the middle of the rewrite
        store = open_store(path, True)
        try:
            got = read_all(store)
        finally:
            store.close()
        assert got["big"] == big and got["small"] == b"small member", i
        assert int(got["x"]) >= 0
        assert not [n for n in os.listdir(tmp_path) if compaction.TEMP_MARK in n]
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None
    assert caught >= 1
    assert_tools_accept(path)


# -- deterministic: every intermediate state of the file ---------------------------------

class StateRecorder:
    """Every state a crash could leave the archive file in.

    In order: the bytes after every write, truncation, copy and rename made
    anywhere in the process, and after the first half of each pwrite (a
    torn write). Out of order: between two syncs of the archive the kernel
    may write its pages back in any order, so for each such interval with
    several writes the recorder also keeps, from the bytes at the last sync,
    each write alone and every write but one (``reordered``). Each state is
    kept with ``mark``, the number of commits that had returned when it
    was made."""

    def __init__(self, monkeypatch, path):
        self.path = str(path)
        self.states = []
        self.reordered = []
        self.mark = 0
        self._seen = set()
        self._active = False
        self._synced = b""
        self._pending = []
        for name in ("pwrite", "ftruncate", "copy_file_range", "rename", "fsync", "fdatasync"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))

    @property
    def active(self):
        return self._active

    @active.setter
    def active(self, value):
        if value and not self._active:
            self._synced = self._read()
            self._pending = []
        self._active = value

    def _read(self):
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def _is_archive(self, fd):
        try:
            a, b = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def _keep(self, target, data):
        if data not in self._seen:
            self._seen.add(data)
            target.append((data, self.mark))

    def capture(self):
        if self._active:
            self._keep(self.states, self._read())

    def _sync(self):
        ops = self._pending
        if len(ops) > 1:
            for j in range(len(ops)):
                self._keep(self.reordered, _apply(self._synced, [ops[j]]))
                self._keep(self.reordered, _apply(self._synced, ops[:j] + ops[j + 1:]))
        self._synced = self._read()
        self._pending = []

    def _wrap(self, name, real):
        def wrapper(*args):
            mine = self._active and name not in ("rename",) and self._is_archive(args[
                1 if name == "copy_file_range" else 0])
            if name == "pwrite" and mine and len(args[1]) > 1:
                fd, data, pos = args
                half = len(data) // 2
                first = real(fd, data[:half], pos)
                self.capture()
                rest = real(fd, data[first:], pos + first)
                self.capture()
                self._pending.append(("write", pos, bytes(data[:first + rest])))
                return first + rest
            result = real(*args)
            if mine and name == "pwrite":
                self._pending.append(("write", args[2], bytes(args[1][:result])))
            elif mine and name == "copy_file_range" and result:
                with open(self.path, "rb") as f:
                    f.seek(args[4])
                    self._pending.append(("write", args[4], f.read(result)))
            elif mine and name == "ftruncate":
                self._pending.append(("truncate", args[1]))
            if mine and name in ("fsync", "fdatasync"):
                self._sync()
            elif name == "rename" and self._active and os.path.abspath(args[1]) == self.path:
                self.capture()
                self._synced, self._pending = self._read(), []     # fsynced before the rename
            else:
                self.capture()
            return result
        return wrapper


def _apply(base: bytes, ops) -> bytes:
    data = bytearray(base)
    for op in ops:
        if op[0] == "truncate":
            del data[op[1]:]
            data.extend(bytes(op[1] - len(data)))
        else:
            _kind, pos, chunk = op
            if len(data) < pos + len(chunk):
                data.extend(bytes(pos + len(chunk) - len(data)))
            data[pos:pos + len(chunk)] = chunk
    return bytes(data)


def state_of(path):
    """Contents, tree, and the mode and time of every file (a directory entry
    may be written at the start as a filler, with a new time: see firstentry.py)."""
    store = open_store(path, True)
    try:
        attrs = {name: store.stat(name)[:3:2] for name in store.names()}
        return read_all(store), tree_of(store), attrs
    finally:
        store.close()


OPERATIONS = {
    "add": lambda s: s.add_bytes("added", b"new member"),
    "replace-first": lambda s: s.add_bytes("a-first", b"replaced first member"),
    "remove-first": lambda s: s.remove("a-first"),
    "rename-dir": lambda s: s.rename("d", "d-renamed"),
    "mkdir-and-remove": lambda s: (s.mkdir("newdir"), s.remove("d/two")),
    "chmod-and-utime": lambda s: (s.chmod("d/one", 0o600), s.utime("b-middle", 10**18)),
    "compact": lambda s: (s.remove("b-middle"), s.compact(full=True)),
    "compact-in-place": lambda s: (s.remove("big"), s.add_bytes("added", b"new member"),
                                   s.commit(), s.compact()),
    "replace-big": lambda s: s.add_bytes("big", pseudo_random(300_000, 2)),
}

# a directory this small is written at every commit by default; journal_from=0
# makes every commit a journal record and leaves the directory to the close,
# reuse_from=0 has the close write it over the last one
MODES = {"directory": {}, "journal": {"journal_from": 0, "checkpoint_idle": 0, "reuse_from": 0}}


def starting_archive(path):
    write_zip(path, [Entry("a-first", b"first member, tiny"), Entry("b-middle", b"middle"),
                     Entry("d/one", b"one" * 50), Entry("d/two", b"two"),
                     Entry("big", pseudo_random(300_000, 1))])


def check_states(tmp_path, recorder, allowed):
    """Every recorded state (in order and reordered) opens as an allowed one:
    ``allowed[mark]`` or ``allowed[mark + 1]``."""
    case = tmp_path / "case.zip"
    checked = 0
    for kind, states in (("state", recorder.states), ("reordered state", recorder.reordered)):
        for n, (data, mark) in enumerate(states):
            case.write_bytes(data)
            got = state_of(case)
            assert got in allowed[mark:mark + 2], "%s %d of %d (after %d commits): %r" % (
                kind, n, len(states), mark, sorted(got[0]))
            checked += 1
    return checked


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("operation", OPERATIONS.keys())
def test_every_intermediate_state_recovers(tmp_path, monkeypatch, operation, mode):
    """One change, committed and closed (the close writes the directory in
    journal mode, over the space of the last one): every state of the file
    on the way opens as the archive before or after."""
    logging.disable(logging.CRITICAL)
    try:
        path = tmp_path / "a.zip"
        starting_archive(path)
        before = state_of(path)
        recorder = StateRecorder(monkeypatch, path)
        store = open_store(path, True, **MODES[mode])
        recorder.active = True
        OPERATIONS[operation](store)
        store.commit()
        store.close()
        recorder.active = False
        after = state_of(path)
        assert after != before
        assert recorder.states and recorder.states[-1][0] == path.read_bytes()
        assert check_states(tmp_path, recorder, [before, after]) >= 2
        assert_tools_accept(path)
    finally:
        logging.disable(logging.NOTSET)


JOURNAL_SESSION = [
    lambda s: s.add_bytes("added", b"new member"),
    lambda s: (s.chmod("d/one", 0o600), s.mkdir("e")),
    lambda s: s.rename("d", "e/d"),
    lambda s: (s.remove("a-first"), s.add_bytes("big", pseudo_random(200_000, 3))),
    lambda s: s.utime("e", 10**18),
    lambda s: s.compact(),
]


def test_every_intermediate_state_of_a_journal_session(tmp_path, monkeypatch):
    """Several journal commits, each of which may be the last before a
    crash, then the checkpoint at close: every state of the file opens as
    the archive after the last commit that had returned, or the next."""
    logging.disable(logging.CRITICAL)
    try:
        path = tmp_path / "a.zip"
        starting_archive(path)
        models = [state_of(path)]
        copies = tmp_path / "models"
        copies.mkdir()
        recorder = StateRecorder(monkeypatch, path)
        store = open_store(path, True, **MODES["journal"])
        recorder.active = True
        for step in JOURNAL_SESSION:
            step(store)
            store.commit()
            recorder.active = False
            snapshot = copies / ("%d.zip" % len(models))
            snapshot.write_bytes(path.read_bytes())
            models.append(state_of(snapshot))
            recorder.mark += 1
            recorder.active = True
        store.close()
        recorder.active = False
        models.append(models[-1])       # the close changes the bytes, not the contents
        assert state_of(path) == models[-1]
        assert check_states(tmp_path, recorder, models) > 20
        assert_tools_accept(path)
    finally:
        logging.disable(logging.NOTSET)


def test_removal_during_a_commit_keeps_the_member_on_disk(tmp_path, monkeypatch):
    """A removal that lands after a commit wrote its directory but before the
    commit reuses the space of a dead first member (another thread may
    remove at any time) must not let that space be overwritten: the
    directory on disk still lists the member until the next commit."""
    path = tmp_path / "a.zip"
    write_zip(path, [Entry("a-first", b"first member, tiny"), Entry("b-middle", b"middle"),
                     Entry("d/one", b"one" * 50)])
    before = state_of(path)
    recorder = StateRecorder(monkeypatch, path)
    store = open_store(path, True)
    fill = store._fill_first_hole
    raced = []

    def remove_first_then_fill():
        if not raced:
            raced.append(True)
            store.remove("a-first")      # as another thread would, holding no commit lock
        return fill()

    monkeypatch.setattr(store, "_fill_first_hole", remove_first_then_fill)
    recorder.active = True
    store.add_bytes("added", b"new member")
    store.commit()
    store.commit()                       # the removal, if the first commit left it pending
    recorder.active = False
    store.close()
    after = state_of(path)
    assert raced and "a-first" not in after[0] and after[0]["added"] == b"new member"
    committed_first = {**before[0], "added": b"new member"}
    case = tmp_path / "case.zip"
    for n, (data, _mark) in enumerate(recorder.states + recorder.reordered):
        case.write_bytes(data)
        files = state_of(case)[0]
        assert files in (before[0], committed_first, after[0]), "state %d of %d: %r" % (
            n, len(recorder.states), sorted(files))
    assert_tools_accept(path)
