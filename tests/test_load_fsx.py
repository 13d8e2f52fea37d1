"""Random file operations through a mount, checked against an in-memory model
(in the spirit of fsx).

A few files are kept open and given seeded random reads, writes at random
offsets (also past the end, leaving holes), truncations up and down,
appends through O_APPEND, mmap reads, fsyncs, and reopens (some with
O_TRUNC). Every read and every size is checked against the model. Halfway
the archive is unmounted, checked and mounted again, so the second half
reads members back from the committed archive. At the end the archive
must hold exactly the model.

Operations: ``scaled(OPERATIONS)``; the seed is in the failure message.
"""

import mmap
import os
import random

from stress import assert_valid_zip, scaled

OPERATIONS = 3000
FILES = ["one.bin", "sub/two.bin", "three.bin"]
MAX_SIZE = 300_000


class Fsx:
    def __init__(self, root, seed):
        self.root = root
        self.rng = random.Random(seed)
        self.model = {name: bytearray() for name in FILES}
        self.fds = {}
        self.trail = []          # the last operations, for the failure message

    def path(self, name):
        return os.path.join(self.root, name)

    def open_all(self):
        os.makedirs(self.path("sub"), exist_ok=True)
        for name in FILES:
            self.fds[name] = os.open(self.path(name), os.O_RDWR | os.O_CREAT, 0o644)

    def close_all(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def note(self, *what):
        self.trail = (self.trail + [what])[-25:]

    def fail(self, text):
        raise AssertionError("%s\nlast operations:\n%s" % (
            text, "\n".join(map(repr, self.trail))))

    def data(self, size):
        if self.rng.random() < 0.5:
            return self.rng.randbytes(size)
        return bytes([self.rng.randrange(256)]) * size

    # -- the operations -------------------------------------------------------

    def op_read(self, name):
        model = self.model[name]
        offset = self.rng.randrange(len(model) + 100)
        size = self.rng.randrange(1, 70_000)
        self.note("read", name, offset, size)
        got = os.pread(self.fds[name], size, offset)
        if got != bytes(model[offset:offset + size]):
            self.fail("%s: read of %d at %d differs from the model" % (name, size, offset))

    def op_write(self, name):
        model = self.model[name]
        offset = self.rng.randrange(min(len(model) + 20_000, MAX_SIZE))
        data = self.data(self.rng.randrange(1, 40_000))
        self.note("write", name, offset, len(data))
        assert os.pwrite(self.fds[name], data, offset) == len(data)
        if offset > len(model):
            model.extend(bytes(offset - len(model)))
        model[offset:offset + len(data)] = data

    def op_append(self, name):
        data = self.data(self.rng.randrange(1, 20_000))
        self.note("append", name, len(data))
        fd = os.open(self.path(name), os.O_WRONLY | os.O_APPEND)
        try:
            assert os.write(fd, data) == len(data)
        finally:
            os.close(fd)
        self.model[name].extend(data)

    def op_truncate(self, name):
        model = self.model[name]
        length = self.rng.randrange(min(len(model) * 2 + 1000, MAX_SIZE))
        self.note("truncate", name, length)
        os.ftruncate(self.fds[name], length)
        if length < len(model):
            del model[length:]
        else:
            model.extend(bytes(length - len(model)))

    def op_mapread(self, name):
        model = self.model[name]
        if not model:
            return
        self.note("mapread", name)
        with mmap.mmap(self.fds[name], len(model), prot=mmap.PROT_READ) as mapped:
            offset = self.rng.randrange(len(model))
            end = min(len(model), offset + self.rng.randrange(1, 50_000))
            if mapped[offset:end] != bytes(model[offset:end]):
                self.fail("%s: mmap read %d..%d differs from the model" % (name, offset, end))

    def op_fsync(self, name):
        self.note("fsync", name)
        os.fsync(self.fds[name])

    def op_reopen(self, name):
        truncate = self.rng.random() < 0.1
        self.note("reopen", name, truncate)
        os.close(self.fds[name])
        flags = os.O_RDWR | (os.O_TRUNC if truncate else 0)
        self.fds[name] = os.open(self.path(name), flags)
        if truncate:
            self.model[name].clear()

    def op_stat(self, name):
        self.note("stat", name)
        size = os.stat(self.path(name)).st_size
        if size != len(self.model[name]):
            self.fail("%s: stat says %d bytes, the model %d" % (name, size, len(self.model[name])))

    OPS = [("read", 30), ("write", 25), ("append", 6), ("truncate", 6), ("mapread", 6),
           ("fsync", 4), ("reopen", 6), ("stat", 8)]

    def step(self):
        name = self.rng.choice(FILES)
        op = self.rng.choices([o for o, _ in self.OPS], [w for _, w in self.OPS])[0]
        getattr(self, "op_" + op)(name)

    def expected(self):
        return {name: bytes(data) for name, data in self.model.items()}


def test_random_operations_against_a_model(tmp_path, mounter):
    seed = 20240611
    archive = tmp_path / "fsx.zip"
    fsx = Fsx(None, seed)
    total = scaled(OPERATIONS)
    for half in range(2):
        m = mounter(archive, "commit_interval=0.2")
        fsx.root = str(m.path)
        fsx.open_all()
        try:
            for _ in range(total // 2):
                fsx.step()
            for name in FILES:
                fsx.op_stat(name)
        except AssertionError as exc:
            raise AssertionError("seed %d: %s" % (seed, exc)) from None
        finally:
            fsx.close_all()
        m.unmount()
        assert assert_valid_zip(archive) == fsx.expected(), "seed %d, half %d" % (seed, half)
