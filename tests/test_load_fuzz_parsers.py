"""The central-directory and local-header parsers, fuzzed on mutated real archives.

Real archives (from Info-ZIP ``zip``, from Python's zipfile with bzip2, lzma
and zip64 records, and a hand-built one with data descriptors and a
self-extractor stub) get hypothesis-chosen mutations: bytes and fields
overwritten with boundary values, cuts, insertions and deletions, aimed at
the end records, the central directory and the local headers. Then the
archive is opened read-only and every member is read to its end, and a copy
is opened read-write (recovery) and repaired. The only acceptable outcome
is success or an archfs error (an ``OSError`` from ``archfs.errors``):
never another exception, never more than ``EXAMPLE_SECONDS`` for one
example, and never more than ``MEMORY_LIMIT`` bytes allocated at once.

Examples: ``scaled(EXAMPLES)``; derandomized, so a run is reproducible.
"""

import os
import shutil
import signal
import stat
import struct
import subprocess
import tracemalloc
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from archfs.errors import ArchfsError
from archfs.zipengine.repair import repair
from archfs.zipengine.store import StoreOptions, ZipStore
from stress import scaled
from zip_builders import BZIP2, DEFLATED, LZMA, STORED, Entry, build_zip

EXAMPLES = 250
EXAMPLE_SECONDS = 20
MEMORY_LIMIT = 64 << 20
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF,
               1 << 62]
FIELD_SIZES = {1: "<B", 2: "<H", 4: "<L", 8: "<Q"}


def _info_zip(where):
    source = where / "src"
    (source / "dir").mkdir(parents=True)
    (source / "dir" / "text.txt").write_bytes(b"some text\n" * 300)
    (source / "random.bin").write_bytes(os.urandom(3000))
    (source / "empty").write_bytes(b"")
    (source / "na\u00efve.txt").write_bytes(b"unicode name")
    os.symlink("dir/text.txt", source / "link")
    path = where / "infozip.zip"
    subprocess.run(["zip", "-qry", str(path), "."], cwd=source, check=True)
    return path.read_bytes()


def _python_zip(where):
    path = where / "python.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.comment = b"a comment"
        zf.writestr("bz.txt", b"bzip2 " * 500, zipfile.ZIP_BZIP2)
        zf.writestr("xz.txt", b"lzma " * 500, zipfile.ZIP_LZMA)
        with zf.open("z64.bin", "w", force_zip64=True) as f:
            f.write(b"zip64 member" * 100)
        zf.writestr("stored.txt", b"stored")
    return path.read_bytes()


def _hand_built(_where):
    return build_zip([Entry("desc.txt", b"descriptor " * 100, method=DEFLATED, descriptor=True),
                      Entry("stored-desc", b"stored with descriptor", method=STORED,
                            descriptor=True),
                      Entry("bz", b"b" * 1000, method=BZIP2),
                      Entry("lz", b"l" * 1000, method=LZMA),
                      Entry("dir/", b"")], prefix=b"#!/bin/sh\nexit 0\n", comment=b"sfx")


def _hot_spots(data):
    """Offsets where the structures are: signatures and the bytes after them."""
    spots = []
    for sig in (b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07",
                b"PK\x07\x08"):
        at = data.find(sig)
        while at >= 0:
            spots.append(at)
            at = data.find(sig, at + 1)
    return sorted(spots)


@st.composite
def mutations(draw, size, spots):
    """A list of edits; positions near structures more often than anywhere."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        if spots and draw(st.booleans()):
            pos = draw(st.sampled_from(spots)) + draw(st.integers(0, 60))
        else:
            pos = draw(st.integers(0, max(0, size - 1)))
        kind = draw(st.sampled_from(["field", "field", "byte", "cut", "insert", "delete"]))
        if kind == "field":
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, size + 100)))
            edits.append(("field", pos, width, value))
        elif kind == "byte":
            edits.append(("byte", pos, draw(st.integers(0, 255))))
        elif kind == "insert":
            edits.append(("insert", pos, draw(st.binary(min_size=1, max_size=40))))
        else:
            edits.append((kind, pos, draw(st.integers(1, 200))))
    return edits


def _apply(data, edits):
    data = bytearray(data)
    for edit in edits:
        pos = min(edit[1], len(data))
        if edit[0] == "field":
            width, value = edit[2], edit[3]
            packed = struct.pack(FIELD_SIZES[width], value & ((1 << (8 * width)) - 1))
            data[pos:pos + width] = packed[:max(0, len(data) - pos)] if pos < len(data) else b""
        elif edit[0] == "byte" and pos < len(data):
            data[pos] = edit[2]
        elif edit[0] == "cut":
            del data[pos:]
        elif edit[0] == "insert":
            data[pos:pos] = edit[2]
        elif edit[0] == "delete":
            del data[pos:pos + edit[2]]
    return bytes(data)


def _exercise(path):
    """Open, list, stat and read everything; archfs errors are fine."""
    try:
        store = ZipStore(str(path), False, StoreOptions(index_cache=False))
    except ArchfsError:
        return
    try:
        stack = [""]
        while stack:
            directory = stack.pop()
            try:
                children = store.listdir(directory)
            except ArchfsError:
                continue
            for name, mode in children:
                child = directory + "/" + name if directory else name
                try:
                    store.stat(child)
                except ArchfsError:
                    pass
                if stat.S_ISDIR(mode):
                    stack.append(child)
        for name in store.names():
            try:
                with store.open_member(name) as reader:
                    while reader.read(1 << 20):
                        pass
                    reader.seek(max(0, reader.size // 2))
                    reader.read(4096)
            except ArchfsError:
                pass
    finally:
        store.close()


def _recover_and_repair(path):
    try:
        ZipStore(str(path), True, StoreOptions(index_cache=False)).close()
    except ArchfsError:
        pass
    try:
        repair(str(path))
    except ArchfsError:
        pass


class ExampleTooSlow(Exception):
    pass


def _alarm(_signum, _frame):
    raise ExampleTooSlow("one example took over %d s: a hang" % EXAMPLE_SECONDS)


@pytest.mark.parametrize("source", [_info_zip, _python_zip, _hand_built],
                         ids=["infozip", "python-zipfile", "hand-built"])
def test_parsers_fail_only_cleanly(source, tmp_path):
    original = source(tmp_path)
    spots = _hot_spots(original)
    work = tmp_path / "fuzz"
    work.mkdir()
    previous = signal.signal(signal.SIGALRM, _alarm)

    @settings(max_examples=scaled(EXAMPLES), deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutations(len(original), spots))
    def run(edits):
        data = _apply(original, edits)
        path = work / "mutated.zip"
        path.write_bytes(data)
        tracemalloc.start()
        signal.alarm(EXAMPLE_SECONDS)
        try:
            _exercise(path)
            shutil.copyfile(path, work / "copy.zip")
            _recover_and_repair(work / "copy.zip")
        finally:
            signal.alarm(0)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < MEMORY_LIMIT, "peak allocation %d bytes" % peak
        for leftover in work.iterdir():
            leftover.unlink()

    try:
        run()
    finally:
        signal.signal(signal.SIGALRM, previous)
