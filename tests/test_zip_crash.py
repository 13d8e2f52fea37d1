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


def test_sigkill_at_random_moments(tmp_path):
    path = str(tmp_path / "crash.zip")
    report = str(tmp_path / "report")
    store = open_store(path, True)
    for name, data in initial_state().items():
        store.add_bytes(name, data)
    store.commit()
    store.close()
    rng = random.Random(20240611)
    iterations = 40
    reported = 0
    commit = 0
    seen = set()
    for i in range(iterations):
        pid = os.fork()
        if pid == 0:
            child_loop(path, report, compact_every=4)
        time.sleep(rng.uniform(0.0, 0.06))
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
                    s.compact()
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
    """Captures the archive file's bytes after every write, truncate, copy and
    rename anywhere in the process, and after the first half of each pwrite
    (a torn write)."""

    def __init__(self, monkeypatch, path):
        self.path = str(path)
        self.states = []
        self.active = False
        for name in ("pwrite", "ftruncate", "copy_file_range", "rename"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))

    def capture(self):
        if not self.active:
            return
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        if not self.states or self.states[-1] != data:
            self.states.append(data)

    def _wrap(self, name, real):
        def wrapper(*args):
            if name == "pwrite" and self.active and len(args[1]) > 1:
                fd, data, pos = args
                half = len(data) // 2
                first = real(fd, data[:half], pos)
                self.capture()
                rest = real(fd, data[first:], pos + first)
                self.capture()
                return first + rest
            result = real(*args)
            self.capture()
            return result
        return wrapper


def state_of(path):
    store = open_store(path, True)
    try:
        return read_all(store), tree_of(store)
    finally:
        store.close()


OPERATIONS = {
    "add": lambda s: s.add_bytes("added", b"new member"),
    "replace-first": lambda s: s.add_bytes("a-first", b"replaced first member"),
    "remove-first": lambda s: s.remove("a-first"),
    "rename-dir": lambda s: s.rename("d", "d-renamed"),
    "mkdir-and-remove": lambda s: (s.mkdir("newdir"), s.remove("d/two")),
    "compact": lambda s: (s.remove("b-middle"), s.compact()),
    "replace-big": lambda s: s.add_bytes("big", pseudo_random(300_000, 2)),
}


@pytest.mark.parametrize("operation", OPERATIONS.keys())
def test_every_intermediate_state_recovers(tmp_path, monkeypatch, operation):
    logging.disable(logging.CRITICAL)
    try:
        path = tmp_path / "a.zip"
        write_zip(path, [Entry("a-first", b"first member, tiny"), Entry("b-middle", b"middle"),
                         Entry("d/one", b"one" * 50), Entry("d/two", b"two"),
                         Entry("big", pseudo_random(300_000, 1))])
        before = state_of(path)
        recorder = StateRecorder(monkeypatch, path)
        store = open_store(path, True)
        recorder.active = True
        OPERATIONS[operation](store)
        store.commit()
        recorder.active = False
        store.close()
        after = state_of(path)
        assert after != before
        assert recorder.states and recorder.states[-1] == path.read_bytes()
        case = tmp_path / "case.zip"
        for n, data in enumerate(recorder.states):
            case.write_bytes(data)
            got = state_of(case)
            assert got in (before, after), "state %d of %d: %r" % (
                n, len(recorder.states), sorted(got[0]))
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
    for n, data in enumerate(recorder.states):
        case.write_bytes(data)
        files = state_of(case)[0]
        assert files in (before[0], committed_first, after[0]), "state %d of %d: %r" % (
            n, len(recorder.states), sorted(files))
    assert_tools_accept(path)
