"""Readers, writers and a directory walker on one mount at the same time.

For a fixed time (``scaled(SECONDS)``): 8 threads read random ranges of 8
different members (compressed and stored, a few MB each) and check every
byte; 2 threads write, rewrite, rename and remove files of their own and
read them back; a loop runs ``find`` over the whole mount. No thread may
hang, no byte may be wrong, and after unmount the archive must be valid and
hold the original members plus exactly what the writers left.
"""

import os
import random
import subprocess
import threading
import time
import zipfile

from stress import assert_valid_zip, scaled

SECONDS = 6


def _member(i):
    rng = random.Random(i)
    pieces = []
    while sum(map(len, pieces)) < 2_500_000:
        pieces.append(rng.randbytes(rng.randrange(100, 5000)) if rng.random() < 0.3
                      else bytes([rng.randrange(256)]) * rng.randrange(100, 20_000))
    return b"".join(pieces)


def _reader(root, name, data, stop, errors, seed):
    rng = random.Random(seed)
    try:
        while not stop.is_set():
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                for _ in range(20):
                    offset = rng.randrange(len(data))
                    size = rng.randrange(1, 300_000)
                    got = os.pread(fd, size, offset)
                    if got != data[offset:offset + size]:
                        errors.append("%s: wrong bytes at %d+%d" % (name, offset, size))
                        return
            finally:
                os.close(fd)
    except Exception as exc:
        errors.append("reader of %s: %r" % (name, exc))


def _writer(root, tag, stop, errors, final, seed):
    rng = random.Random(seed)
    mine = {}
    directory = os.path.join(root, tag)
    try:
        os.mkdir(directory)
        while not stop.is_set():
            name = "%s/file%d" % (tag, rng.randrange(6))
            path = os.path.join(root, name)
            roll = rng.random()
            if roll < 0.15 and name in mine:
                other = "%s/file%d" % (tag, rng.randrange(6))
                os.rename(path, os.path.join(root, other))
                mine[other] = mine.pop(name)
            elif roll < 0.25 and name in mine:
                os.unlink(path)
                del mine[name]
            else:
                data = rng.randbytes(rng.randrange(0, 200_000))
                with open(path, "wb") as f:
                    f.write(data)
                    if rng.random() < 0.3:
                        f.flush()
                        os.fsync(f.fileno())
                mine[name] = data
            for check in rng.sample(sorted(mine), min(2, len(mine))):
                with open(os.path.join(root, check), "rb") as f:
                    if f.read() != mine[check]:
                        errors.append("%s: read back differs" % check)
                        return
        final.update(mine)
    except Exception as exc:
        errors.append("writer %s: %r" % (tag, exc))


def _walker(root, stop, errors, expected):
    try:
        while not stop.is_set():
            result = subprocess.run(["find", root], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, timeout=60)
            # a writer's file may vanish between readdir and stat: only that is allowed
            problems = [line for line in result.stderr.splitlines()
                        if "No such file or directory" not in line]
            if problems:
                errors.append("find: %s" % problems)
                return
            listed = set(result.stdout.split("\n"))
            missing = [n for n in expected if os.path.join(root, n) not in listed]
            if missing:
                errors.append("find did not list %s" % missing)
                return
    except Exception as exc:
        errors.append("find loop: %r" % exc)


def test_readers_writers_and_find_at_once(tmp_path, mounter):
    members = {("data/m%d.bin" % i if i % 2 else "m%d.bin" % i): _member(i) for i in range(8)}
    archive = tmp_path / "load.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, (name, data) in enumerate(members.items()):
            zf.writestr(name, data, zipfile.ZIP_DEFLATED if i % 4 else zipfile.ZIP_STORED)
    m = mounter(archive, "commit_interval=0.2")
    root = str(m.path)
    stop, errors, final = threading.Event(), [], {}
    threads = [threading.Thread(target=_reader, args=(root, name, data, stop, errors, i))
               for i, (name, data) in enumerate(members.items())]
    threads += [threading.Thread(target=_writer, args=(root, "w%d" % i, stop, errors, final,
                                                      100 + i)) for i in range(2)]
    threads.append(threading.Thread(target=_walker, args=(root, stop, errors, list(members))))
    for thread in threads:
        thread.daemon = True
        thread.start()
    time.sleep(scaled(SECONDS))
    stop.set()
    for thread in threads:
        thread.join(120)
    assert not [t for t in threads if t.is_alive()], "threads hang: %s" % errors
    assert not errors, errors
    m.unmount()
    assert assert_valid_zip(archive) == dict(members, **final)
