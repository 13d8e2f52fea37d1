"""Tar archives for the tests, made by the real tools: GNU tar (every
``--format``), bsdtar and Python's ``tarfile``, with each compression.

``make_source`` writes a tree with what tar can hold: files (empty,
binary, larger than a chunk), long and non-ASCII names, a symlink, a hard
link, a FIFO, an empty directory and a sparse file. ``extract_gnu`` is the
reference: what GNU tar extracts from an archive.
"""

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

COMPRESSORS = {"": None, ".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}
GNU_FORMATS = ["v7", "oldgnu", "gnu", "ustar", "posix"]
LONG = "long-" + "n" * 120          # over ustar's 100-byte name field
DEEP = "/".join(["level%02d" % i for i in range(20)])   # a path over 155 bytes


def make_source(root: Path) -> Path:
    root.mkdir(parents=True)
    files = {
        "a.txt": b"alpha\n",
        "empty.dat": b"",
        "bin/data.bin": bytes(range(256)) * 1000,
        "bin/random.bin": os.urandom(1 << 20) + b"tail",
        LONG + ".txt": b"a long name\n",
        DEEP + "/deep.txt": b"deep\n",
        "unicode/caf\u00e9-\u65e5\u672c.txt": b"unicode\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.utime(root / "a.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.symlink("a.txt", root / "link")
    os.link(root / "a.txt", root / "bin" / "hard.txt")
    os.mkfifo(root / "fifo")
    (root / "emptydir").mkdir()
    with open(root / "sparse.img", "wb") as f:
        f.truncate(3 << 20)
        f.seek(1 << 20)
        f.write(b"in the middle")
        f.seek((3 << 20) - 5)
        f.write(b"end!!")
    return root


def compress(path: Path, suffix: str) -> Path:
    tool = COMPRESSORS[suffix]
    if tool is None:
        return path
    out = Path(str(path) + suffix)
    with open(out, "wb") as f:
        subprocess.run([tool, "-c", str(path)], stdout=f, check=True)
    return out


def gnu_tar(src: Path, out: Path, fmt: str, suffix: str = "", extra=()) -> Path:
    # v7 and ustar cannot hold every name of the tree: GNU tar leaves those
    # out and exits 2; the archive holds the rest, and its extraction is the reference
    sparse = ["-S"] if fmt in ("gnu", "oldgnu", "posix") else []
    done = subprocess.run(["tar", "--format=" + fmt, *sparse, "-cf", str(out), *extra, "-C",
                           str(src), "."], capture_output=True)
    assert done.returncode in (0, 2) and out.exists(), done.stderr
    return compress(out, suffix)


def bsd_tar(src: Path, out: Path, suffix: str = "") -> Path:
    subprocess.run(["bsdtar", "-cf", str(out), "-C", str(src), "."], check=True,
                   capture_output=True)
    return compress(out, suffix)


def python_tar(src: Path, out: Path, fmt, suffix: str = "", pax_headers=None) -> Path:
    with tarfile.open(out, "w", format=fmt, pax_headers=pax_headers) as tf:
        for entry in sorted(src.rglob("*")):
            rel = entry.relative_to(src).as_posix()
            if fmt == tarfile.USTAR_FORMAT and (len(rel) > 100 and "/" not in rel
                                                or not rel.isascii()):
                continue
            if entry.is_fifo() and fmt == tarfile.USTAR_FORMAT:
                continue
            tf.add(str(entry), arcname=rel, recursive=False)
    return compress(out, suffix)


def extract_gnu(archive: Path, where: Path) -> Path:
    where.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(where)], check=True,
                   capture_output=True)
    return where


def tree_of(root: Path) -> dict:
    """{path: ("file", bytes) | ("link", target) | ("dir",) | ("fifo",)} of a directory."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            elif path.is_fifo():
                out[rel] = ("fifo",)
            else:
                out[rel] = ("file", path.read_bytes())
    return out


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
