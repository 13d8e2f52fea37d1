"""Shared fixtures, and the CI rule that a skipped test fails the run.

tests/ is on sys.path (pyproject: pythonpath = ["tests"]), so helper modules
here import by their plain name.
"""

import os
import tempfile

import pytest

# Saved member indexes (archives of 20,000+ members) go to a private cache for
# the run, not to the user's ~/.cache; mount daemons inherit it.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="archfs-test-cache-")

from archfs.archives.filesystemarchive import FilesystemArchive
from ci_skip_rule import (  # noqa: F401  (pytest finds hooks by name)
    pytest_collectreport,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_terminal_summary,
)

# A small tree: files at two depths, an empty directory, an inner symlink.
SAMPLE_FILES = {
    "a.txt": b"alpha\n",
    "b.bin": bytes(range(256)),
    "sub/c.txt": b"gamma\n",
    "sub/deeper/d.txt": b"delta\n",
    "zz/e.dat": b"",
}


def make_tree(root, files, dirs=(), symlinks=None):
    """Create ``files`` (name -> bytes), empty ``dirs`` and ``symlinks``
    (name -> target) below ``root``; returns root as a str."""
    root = str(root)
    os.makedirs(root, exist_ok=True)
    for name, data in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    for name in dirs:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for name, target in (symlinks or {}).items():
        os.symlink(target, os.path.join(root, name))
    return root


@pytest.fixture
def sample_root(tmp_path):
    """A directory holding SAMPLE_FILES, an empty dir and an inner symlink."""
    return make_tree(tmp_path / "root", SAMPLE_FILES, dirs=["empty"],
                     symlinks={"link-to-a": "a.txt"})


@pytest.fixture
def outside(tmp_path):
    """A directory beside the archive root holding a secret file."""
    return make_tree(tmp_path / "outside", {"secret": b"do not leak\n"})


@pytest.fixture
def fs_archive(sample_root):
    """The sample tree as a writable FilesystemArchive, closed afterwards."""
    archive = FilesystemArchive(url=sample_root, mode="a")
    yield archive
    archive.close()


@pytest.fixture
def ro_archive(sample_root):
    """The sample tree opened read-only."""
    archive = FilesystemArchive(url=sample_root, mode="r")
    yield archive
    archive.close()


# ---- mount fixtures: the mount helper adds its one import line below -------
from mount_fixtures import *  # noqa
# ---- remote archives: a session's SeaweedFS, an HTTP server ----------------
from remote_fixtures import *  # noqa
