"""Random operations on a mount and on a plain directory must agree.

The commit interval is short, so background copy-backs and commits run
between (and during) the renames, removals and rewrites; some files stay
open across operations. After every step the two trees must be equal, and
after unmount the archive must hold the final tree.
"""

import errno
import os
import random

import pytest

from mount_fixtures import empty_archive, extract, tree_of

NAMES = ["a", "b", "c", "d/e", "d/f", "g/h/i"]


def _apply(root, step, open_files):
    """Apply one step below ``root``; return the errno it failed with, or 0."""
    kind, args = step
    path = lambda name: os.path.join(root, name)  # noqa: E731
    try:
        if kind == "write":
            name, data, flags = args
            fd = os.open(path(name), os.O_WRONLY | os.O_CREAT | flags, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        elif kind == "pwrite":
            name, data, offset = args
            fd = os.open(path(name), os.O_WRONLY)
            try:
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)
        elif kind == "truncate":
            os.truncate(path(args[0]), args[1])
        elif kind == "rename":
            os.rename(path(args[0]), path(args[1]))
        elif kind == "unlink":
            os.unlink(path(args[0]))
        elif kind == "mkdir":
            os.makedirs(path(args[0]), exist_ok=False)
        elif kind == "rmdir":
            os.rmdir(path(args[0]))
        elif kind == "hold":  # keep a file open for writing over the next steps
            fd = os.open(path(args[0]), os.O_RDWR)
            open_files.setdefault(root, []).append((fd, args[0]))
        elif kind == "write_held":
            held = open_files.get(root, [])
            if held:
                fd, _ = held[args[1] % len(held)]
                os.pwrite(fd, args[0], 0)
        elif kind == "close_held":
            held = open_files.get(root, [])
            if held:
                fd, _ = held.pop(0)
                os.close(fd)
        return 0
    except OSError as exc:
        return exc.errno


def _random_step(rng):
    name, other = rng.choice(NAMES), rng.choice(NAMES)
    data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 10, 300, 5000])))
    kind = rng.choice(["write", "write", "pwrite", "truncate", "rename", "rename", "unlink",
                       "mkdir", "rmdir", "hold", "write_held", "close_held"])
    if kind == "write":
        return kind, (name, data, rng.choice([os.O_TRUNC, os.O_APPEND, 0]))
    if kind == "pwrite":
        return kind, (name, data, rng.randrange(0, 6000))
    if kind == "truncate":
        return kind, (name, rng.choice([0, 5, 100, 7000]))
    if kind in ("rename",):
        return kind, (rng.choice(NAMES + ["d", "g", "g/h"]), rng.choice(NAMES + ["d", "g/x"]))
    if kind in ("mkdir", "rmdir"):
        return kind, (rng.choice(["d", "g", "g/h", "k", "d/m"]),)
    if kind == "write_held":
        return kind, (data, rng.randrange(10))
    return kind, (name,) if kind != "close_held" else (None,)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_operations_agree_with_a_plain_directory(kind, seed, tmp_path, mounter):
    rng = random.Random(seed)
    reference = tmp_path / "reference"
    reference.mkdir()
    m = mounter(empty_archive(kind, tmp_path), "commit_interval=0.05", kind=kind)
    open_files = {}
    try:
        for number in range(150):
            step = _random_step(rng)
            expected = _apply(str(reference), step, open_files)
            got = _apply(str(m.path), step, open_files)
            if expected == errno.EEXIST and got == errno.ENOTEMPTY or \
                    expected == errno.ENOTEMPTY and got == errno.EEXIST:
                got = expected  # rename(2) may answer either for a non-empty target
            assert got == expected, (number, step, os.strerror(expected), os.strerror(got))
            assert tree_of(m.path, modes=False) == tree_of(reference, modes=False), (number, step)
    finally:
        for root in list(open_files):
            for fd, _ in open_files[root]:
                os.close(fd)
    m.unmount()
    assert tree_of(extract(kind, m.archive, tmp_path), modes=False) == \
        tree_of(reference, modes=False)
