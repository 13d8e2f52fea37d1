"""SIGKILL while writing a tar: after the next read-write open (what a mount
does) or ``archfs repair``, GNU tar and bsdtar read the archive, and every
file whose commit returned is there with its content."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from archfs.archives import open_archive
from stress import scaled

WRITER = r"""
import os, sys, random
from archfs.archives import open_archive
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
a = open_archive(path, "a")
i = 0
present = []
while True:
    name = "f%05d.bin" % i
    data = bytes([i % 251]) * rng.randint(0, 300000)
    a.writedata(name, data)
    present.append(name)
    if rng.random() < 0.15 and i > 2:
        a.remove(present.pop(rng.randrange(len(present) - 1)))   # a rewrite in this commit
        print("removed", flush=True)
    a.commit()
    print("committed", name, len(data), flush=True)
    i += 1
"""


def committed(output: str):
    """{name: size} of files whose commit returned (removals make it a lower bound)."""
    done = {}
    for line in output.splitlines():
        parts = line.split()
        if parts[:1] == ["committed"] and len(parts) == 3:
            done[parts[1]] = int(parts[2])
    return done


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
def test_sigkill_while_writing(tmp_path, suffix):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    for iteration in range(scaled(3)):
        archive = tmp_path / ("crash%d.tar%s" % (iteration, suffix))
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(archive), str(iteration)],
                                stdout=subprocess.PIPE, text=True, env=env)
        time.sleep(random.Random(iteration).uniform(0.6, 2.0))
        proc.send_signal(signal.SIGKILL)
        output = proc.communicate()[0]
        done = committed(output)
        removed = output.count("removed")
        if iteration == 0:
            result = subprocess.run([sys.executable, "-m", "archfs", "repair", str(archive)],
                                    capture_output=True, text=True, env=env)
            assert result.returncode == 0, result.stderr
        else:
            open_archive(archive, "a").close()       # recovery as a mount does it
        for tool in (["tar", "-tf"], ["bsdtar", "-tf"]):
            listing = subprocess.run(tool + [str(archive)], capture_output=True, text=True)
            assert listing.returncode == 0, (tool, listing.stderr)
        with open_archive(archive) as a:
            names = set(a.getnames())
            missing = [n for n in done if n not in names]
            assert len(missing) <= removed, missing
            for name, size in done.items():
                if name in names:
                    data = a.open(name).read()
                    index = int(name[1:6])
                    assert data == bytes([index % 251]) * size, name
