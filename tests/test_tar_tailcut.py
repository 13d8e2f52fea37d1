"""Writing to a compressed tar costs the change, not the archive (``tarengine/tailcut``):
the first write to a .tar.gz that GNU tar, bsdtar or Python's tarfile made
re-encodes only what follows the last deflate checkpoint before its end (the
bytes before are left as they were), removals and renames rewrite from the
segment or checkpoint before the first change; the tools accept the result and
agree with archfs, and an interrupted cut is finished or dropped by the next open."""

import gzip
import io
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
import zlib

import pytest

from archfs.archives import open_archive
from archfs.engine import compressed, deflatecut
from archfs.tarengine import tailrewrite
from tar_builders import bsd_tar, gnu_tar, python_tar

CHUNK = compressed.GZIP_CHUNK
RNG = random.Random(12)


def make_files(root, count=10, text_only=False):
    """About 4 MiB of gzip: random files (incompressible) and text ones."""
    files = {}
    for i in range(count):
        name = "d%d/f%02d.%s" % (i % 2, i, "bin" if i % 2 else "txt")
        if i % 2 and not text_only:
            data = RNG.randbytes(800 << 10)
        else:
            data = b"".join(b"line %d of file %d\n" % (n, i) for n in range(20000))
        files[name] = data
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def foreign(tmp_path, maker="gnu", suffix=".gz"):
    src = tmp_path / "src"
    files = make_files(src, text_only=suffix == ".bz2")     # (bzip2 is slow)
    plain = tmp_path / ("a-%s.tar" % maker)
    if maker == "gnu":
        archive = gnu_tar(src, plain, "gnu", suffix)
    elif maker == "bsdtar":
        archive = bsd_tar(src, plain, suffix)
    else:
        archive = python_tar(src, plain, tarfile.PAX_FORMAT, suffix)
    os.unlink(plain)
    return archive, files


def common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:                  # (bisect on slices: fast for megabytes)
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_tools(archive, files, tmp_path):
    """gzip -t, GNU tar and bsdtar extract, Python's tarfile lists; all agree with ``files``."""
    run = lambda *cmd: subprocess.run([str(c) for c in cmd], capture_output=True)
    result = run("bzip2" if str(archive).endswith(".bz2") else "gzip", "-t", archive)
    assert result.returncode == 0, result.stderr
    for tool in ("tar", "bsdtar"):
        out = tmp_path / ("x-%s-%d" % (tool, time.monotonic_ns()))
        out.mkdir()
        result = run(tool, "-xf", archive, "-C", out)
        assert result.returncode == 0, (tool, result.stderr)
        got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
               if p.is_file()}
        assert got == files, tool
    result = run(sys.executable, "-m", "tarfile", "-t", archive)
    assert result.returncode == 0, result.stderr
    with open_archive(str(archive), "r", {"index_cache": "0"}) as a:
        names = {n for n in a.getnames()}
        assert names == set(files)
        for name, data in files.items():
            assert a.open(name).read() == data, name


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.mark.parametrize("maker,suffix", [("gnu", ".gz"), ("bsdtar", ".gz"), ("python", ".gz"),
                                          ("gnu", ".bz2")])
def test_first_write_to_a_foreign_archive_reencodes_only_its_tail(tmp_path, maker, suffix):
    archive, files = foreign(tmp_path, maker, suffix)
    before = archive.read_bytes()
    inode = archive.stat().st_ino
    with open_archive(str(archive), "a") as a:
        a.mkdir("added")
        a.writedata("added/new.txt", b"a new file\n" * 300)
    files["added/new.txt"] = b"a new file\n" * 300
    after = archive.read_bytes()
    kept = common_prefix(before, after)
    assert archive.stat().st_ino == inode                  # in place, not beside
    if suffix == ".gz":         # the last checkpoint: at most a chunk before the end
        assert len(before) > 3 * CHUNK
        assert kept >= len(before) - CHUNK - (256 << 10), (kept, len(before))
    else:                       # the last block: 900 kB of text, a tenth of it compressed
        assert kept >= len(before) - (200 << 10), (kept, len(before))
    assert len(after) - len(before) < CHUNK // 2             # not the archive re-encoded
    check_tools(archive, files, tmp_path)
    # the head is found again: from the saved index, and without it
    for opts in (None, {"index_cache": "0"}):
        snapshot = archive.read_bytes()
        with open_archive(str(archive), "a", opts) as a:
            assert a.open("d1/f01.bin").read() == files["d1/f01.bin"]
            name = "added/again-%d.txt" % len(files)
            a.writedata(name, name.encode())
            files[name] = name.encode()
        # (a bzip2 archive opened without its saved index is cut again: one block)
        slack = 200 if suffix == ".gz" or opts is None else 1 << 20
        assert common_prefix(snapshot, archive.read_bytes()) >= len(snapshot) - slack
    check_tools(archive, files, tmp_path)


@pytest.mark.parametrize("suffix", [".gz", ".bz2"])
def test_removal_near_the_end_of_a_foreign_archive(tmp_path, suffix):
    archive, files = foreign(tmp_path, "gnu", suffix)
    before = archive.read_bytes()
    with open_archive(str(archive), "a") as a:
        last = a.getnames()[-1]
        a.remove(last)
        renamed = a.getnames()[-1]
        a.rename(renamed, "renamed.txt")
    with tarfile.open(archive) as t:     # (the order the tools list them)
        order = [m.name.removeprefix("./") for m in t.getmembers() if m.isfile()]
    changed = len(files[last]) + len(files[renamed])      # (at most this compressed)
    del files[last]
    files["renamed.txt"] = files.pop(renamed)
    assert order[-1] == "renamed.txt"
    kept = common_prefix(before, archive.read_bytes())
    assert kept >= len(before) - changed - CHUNK - (64 << 10), (kept, len(before), changed)
    check_tools(archive, files, tmp_path)


@pytest.mark.parametrize("suffix", [".gz", ".zst", ".xz", ".bz2"])
def test_removal_in_an_archive_archfs_wrote_rewrites_from_its_segment(tmp_path, suffix):
    archive = tmp_path / ("made.tar" + suffix)
    files = {}
    with open_archive(str(archive), "a") as a:
        for i in range(8):
            files["f%d.bin" % i] = RNG.randbytes(600 << 10)
            a.writedata("f%d.bin" % i, files["f%d.bin" % i])
    before = archive.read_bytes()
    inode = archive.stat().st_ino
    with open_archive(str(archive), "a") as a:
        a.remove("f7.bin")
        a.rename("f6.bin", "six.bin")
    files.pop("f7.bin")
    files["six.bin"] = files.pop("f6.bin")
    after = archive.read_bytes()
    assert archive.stat().st_ino == inode
    # f6 starts in the segment before the last 1.2 MiB of tar: the rest is kept
    assert common_prefix(before, after) >= len(before) * 0.6, suffix
    tester = {".gz": "gzip", ".zst": "zstd", ".xz": "xz", ".bz2": "bzip2"}[suffix]
    assert subprocess.run([tester, "-t", str(archive)], capture_output=True).returncode == 0
    for tool in ("tar", "bsdtar"):
        listed = subprocess.run([tool, "-tf", str(archive)], capture_output=True, text=True)
        assert listed.returncode == 0, listed.stderr
        assert sorted(listed.stdout.split()) == sorted(files)
    with open_archive(str(archive), "r", {"index_cache": "0"}) as a:
        assert sorted(a.getnames()) == sorted(files)
        assert all(a.open(n).read() == d for n, d in files.items())


def test_a_reader_before_the_cut_keeps_reading(tmp_path):
    archive, files = foreign(tmp_path)
    with open_archive(str(archive), "a") as a:
        first = a.getnames()[0]
        reader = a._store.open_member(first)
        a.writedata("x.txt", b"x")
        a.commit()
        assert reader.pread(len(files[first]) + 10, 0) == files[first]
        reader.close()
    files["x.txt"] = b"x"
    check_tools(archive, files, tmp_path)


CHILD = r"""
import os, sys
from archfs.archives import open_archive
from archfs.tarengine import tailrewrite, tailcut
path, where = sys.argv[1:3]
if where == "applying it":
    def half_apply(intent_fd, archive_fd, start, length):
        tailrewrite.copy_range(intent_fd, archive_fd, length // 2, 0, start)
        os._exit(9)
    tailrewrite.apply = half_apply
elif where == "before applying":
    tailrewrite.apply = lambda *args: os._exit(9)
elif where == "writing the intent":
    class Dying(tailcut.SegmentRows):
        def copy(self, offset, length):
            os._exit(9)
    tailcut.SegmentRows = Dying
a = open_archive(path, "a")
a.writedata("new.txt", b"new\n")
a.commit()
os._exit(3)
"""


@pytest.mark.parametrize("suffix", [".gz", ".bz2"])
@pytest.mark.parametrize("where", ["writing the intent", "before applying", "applying it"])
def test_an_interrupted_cut_is_finished_or_dropped(tmp_path, where, suffix):
    archive, files = foreign(tmp_path, "gnu", suffix)
    before = archive.read_bytes()
    done = subprocess.run([sys.executable, "-c", CHILD, str(archive), where],
                          capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    intent = tailrewrite.intent_path(str(archive))
    if where == "writing the intent":
        assert archive.read_bytes() == before
    if where == "applying it":
        assert archive.read_bytes() != before          # torn until the next open
        result = subprocess.run([sys.executable, "-m", "archfs", "repair", str(archive)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    else:
        with open_archive(str(archive), "a") as a:     # what a mount does first
            assert sorted(a.getnames()) == sorted(files)
    assert not os.path.exists(intent)
    check_tools(archive, files, tmp_path)              # the new file was never committed
    with open_archive(str(archive), "a") as a:         # and it goes on appending
        a.writedata("later.txt", b"later\n")
    files["later.txt"] = b"later\n"
    check_tools(archive, files, tmp_path)


WRITER = r"""
import sys
from archfs.archives import open_archive
a = open_archive(sys.argv[1], "a")
i = 0
while True:
    name = "w%04d.txt" % i
    a.writedata(name, name.encode() * 100)
    a.commit()
    print("committed", name, flush=True)
    i += 1
"""


def test_sigkill_around_the_first_write(tmp_path):
    for iteration, delay in enumerate((0.4, 0.8, 1.4)):
        base = tmp_path / ("it%d" % iteration)
        base.mkdir()
        archive, files = foreign(base)
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(archive)],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        output = proc.communicate()[0]
        committed = [line.split()[1] for line in output.splitlines()
                     if line.startswith("committed")]
        open_archive(str(archive), "a").close()      # recovery, as a mount does
        with open_archive(str(archive), "r", {"index_cache": "0"}) as a:
            names = set(a.getnames())
        assert set(committed) <= names
        assert set(files) <= names
        for name in names - set(files):
            files[name] = name.encode() * 100
        check_tools(archive, files, tmp_path)


@pytest.mark.parametrize("suffix,damage", [(".gz", "bit"), (".gz", "offset"), (".bz2", "offset"),
                                           (".bz2", "missing")])
def test_wrong_checkpoints_are_refused(tmp_path, monkeypatch, suffix, damage, caplog):
    """Checkpoints that are no block boundary, name the wrong output offset
    or miss a block: the cut is refused and the archive rewritten whole, correctly."""
    archive, files = foreign(tmp_path, "gnu", suffix)
    cls = compressed.GzipStream if suffix == ".gz" else compressed.Bzip2Stream
    real = cls.checkpoints

    def wrong(self):
        points = real(self)
        if damage == "bit":
            return [(b + 5, o) for b, o in points]
        if damage == "missing":
            return points[:1] + points[2:]
        return [(b, o + 4096 if o else 0) for b, o in points]
    monkeypatch.setattr(cls, "checkpoints", wrong)
    inode = archive.stat().st_ino
    with open_archive(str(archive), "a") as a:
        a.writedata("new.txt", b"n")
    files["new.txt"] = b"n"
    assert "cannot cut the" in caplog.text
    assert archive.stat().st_ino != inode                # rewritten beside instead
    check_tools(archive, files, tmp_path)


# -- the deflate cut on its own ------------------------------------------------------


def test_crc_of_a_prefix_from_the_whole_and_the_rest():
    for _ in range(50):
        a = RNG.randbytes(RNG.randint(0, 3000))
        b = RNG.randbytes(RNG.randint(0, 3000))
        assert deflatecut.crc32_unappend(zlib.crc32(a + b), zlib.crc32(b), len(b)) == \
            zlib.crc32(a)
        assert deflatecut.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == \
            zlib.crc32(a + b)


def test_a_member_cut_at_each_checkpoint_is_a_valid_gzip(tmp_path):
    import rapidgzip
    data = b"".join(RNG.randbytes(300) * RNG.randint(1, 40) for _ in range(2000))
    path = tmp_path / "d.gz"
    subprocess.run(["gzip", "-c"], input=data, stdout=open(path, "wb"), check=True)
    raw = path.read_bytes()
    with rapidgzip.RapidgzipFile(str(path), parallelization=1, chunk_size=128 << 10) as f:
        f.seek(len(data) + 1)
        points = sorted(f.block_offsets().items())
    shifts = set()
    assert len(points) > 4
    for bit, out in points[1:-1]:
        tail = deflatecut.inflate_tail(raw, 0, bit, data[max(0, out - 32768):out],
                                       len(raw), out_start=out)
        assert tail.data == data[out:]
        head = raw[:bit // 8] + deflatecut.closed_member_end(raw[bit // 8], bit, tail)
        assert gzip.decompress(head) == data[:out]
        with gzip.GzipFile(fileobj=io.BytesIO(head + gzip.compress(b"more"))) as g:
            assert g.read() == data[:out] + b"more"
        shifts.add(bit % 8)
    assert len(shifts) > 1
    with pytest.raises(Exception):      # a bit offset that is no block boundary
        bit, out = points[2]
        deflatecut.inflate_tail(raw, 0, bit + 3, data[out - 32768:out], len(raw),
                                out_start=out)


def test_a_bzip2_stream_cut_at_each_block_is_valid():
    import indexed_bzip2
    from archfs.engine import bzip2cut
    import bz2
    first = RNG.randbytes(1200 << 10)
    second = b"".join(b"%d\n" % n for n in range(300000))
    data = first + second
    blob = subprocess.run(["bzip2", "-c"], input=first, capture_output=True,
                          check=True).stdout + bz2.compress(second)
    with indexed_bzip2.IndexedBzip2File(io.BytesIO(blob), parallelization=1) as f:
        f.seek(len(data) + 1)
        points = sorted(f.block_offsets().items())
    pread = lambda n, at: blob[at:at + n]
    cuts = 0
    for bit, out in points:
        if not bzip2cut.is_block(pread, bit):
            continue
        plan = bzip2cut.plan(pread, points, bit)
        assert plan.block == data[out:out + len(plan.block)]
        head = blob[:bit // 8] + plan.closing
        assert bz2.decompress(head) == data[:out]
        assert subprocess.run(["bzip2", "-t"], input=head + bz2.compress(b"x"),
                              capture_output=True).returncode == 0
        cuts += 1
    assert cuts >= 4
    with pytest.raises(Exception):
        bzip2cut.plan(pread, points, points[1][0] + 1)


@pytest.mark.parametrize("sizes", [True, False])
def test_a_zstd_archive_of_several_frames(tmp_path, sizes):
    """Frames that record their sizes are cut at; without them (indexed_zstd
    would read the file) the archive is rewritten whole, and nothing is lost."""
    import zstandard
    src = tmp_path / "src"
    files = make_files(src, count=6)
    tar = subprocess.run(["tar", "-cf", "-", "-C", str(src), "."], capture_output=True,
                         check=True).stdout
    c = zstandard.ZstdCompressor(write_content_size=sizes, write_checksum=True)
    archive = tmp_path / "frames.tar.zst"
    archive.write_bytes(b"".join(c.compress(tar[i:i + (1 << 20)])
                                 for i in range(0, len(tar), 1 << 20)))
    before = archive.read_bytes()
    for round in range(3):
        with open_archive(str(archive), "a", {"index_cache": "0"} if round == 1 else None) as a:
            a.writedata("r%d.txt" % round, b"round %d\n" % round)
        files["r%d.txt" % round] = b"round %d\n" % round
        if round == 0 and sizes:
            assert common_prefix(before, archive.read_bytes()) >= len(before) - (1 << 20) - 4096
        assert subprocess.run(["zstd", "-q", "-t", str(archive)]).returncode == 0
        with open_archive(str(archive), "r", {"index_cache": "0"}) as a:
            assert sorted(a.getnames()) == sorted(files)
            assert all(a.open(n).read() == d for n, d in files.items())
    out = tmp_path / "x"
    out.mkdir()
    assert subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(out)]).returncode == 0
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file()} == files


UNCOMMITTED = r"""
import os, sys
from archfs.archives import open_archive
a = open_archive(sys.argv[1], "a")
a.writedata("new.txt", b"new\n")
a.commit()
a.writedata("big.bin", os.urandom(3 << 20))       # segments written, never committed
a._store._sink.flush()
os._exit(9)
"""


@pytest.mark.parametrize("cache", [True, False])
def test_uncommitted_segments_after_a_cut_head_are_cut_off(tmp_path, cache):
    archive, files = foreign(tmp_path)
    done = subprocess.run([sys.executable, "-c", UNCOMMITTED, str(archive)],
                          capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    files["new.txt"] = b"new\n"
    grown = archive.stat().st_size
    with open_archive(str(archive), "a", None if cache else {"index_cache": "0"}) as a:
        assert sorted(a.getnames()) == sorted(files)
    assert archive.stat().st_size < grown - (2 << 20)        # the unfinished commit is gone
    check_tools(archive, files, tmp_path)


@pytest.mark.parametrize("maker,suffix", [("gnu", ".gz"), ("bsdtar", ".gz"), ("gnu", ".bz2"),
                                          ("gnu", ".xz")])
def test_chmod_and_utime_as_the_first_write_keep_the_members_data(tmp_path, maker, suffix):
    """A changed mode or time appends the member again with a copy of its
    data. As the first write to a foreign archive it first re-encodes the
    archive's end (gzip, bzip2) or all of it (xz), which moves the member:
    the copy must read it where it is then, not where it was."""
    if suffix == ".xz":
        src = tmp_path / "src"
        files = make_files(src, count=4, text_only=True)
        archive = gnu_tar(src, tmp_path / "a.tar", "gnu", ".xz")
    else:
        archive, files = foreign(tmp_path, maker, suffix)
    last = sorted(files)[-1]
    with open_archive(str(archive), "a") as a:
        a.chmod(last, 0o600)
        a.utime("d0/f00.txt", 1_600_000_000 * 10**9)
    with open_archive(str(archive), "r", {"index_cache": "0"}) as a:
        assert a.stat(last).mode & 0o777 == 0o600
        assert a.stat("d0/f00.txt").mtime_ns // 10**9 == 1_600_000_000
    if suffix == ".xz":
        assert subprocess.run(["xz", "-t", str(archive)]).returncode == 0
        out = tmp_path / "x"
        out.mkdir()
        subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)
        got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
               if p.is_file()}
        assert got == files
    else:
        check_tools(archive, files, tmp_path)


@pytest.mark.parametrize("suffix", [".gz", ".bz2"])
@pytest.mark.parametrize("fail_after", [100 << 10, (5 << 20) // 2], ids=["in-buffer", "2-segments"])
def test_a_copy_that_fails_halfway_leaves_no_partial_member(tmp_path, monkeypatch, suffix,
                                                            fail_after):
    """chmod copies a member; when the copy fails halfway (here: a write
    error after ``fail_after`` bytes, past segment boundaries or not) none
    of it stays in the archive: the next member follows the one before,
    the commit publishes a valid archive, and the member keeps its mode."""
    from archfs.tarengine.recompress import CompressedTarWriter
    src = tmp_path / "src"
    files = make_files(src, count=4, text_only=True)
    files["big.bin"] = RNG.randbytes(3 << 20)
    (src / "big.bin").write_bytes(files["big.bin"])
    archive = gnu_tar(src, tmp_path / "a.tar", "gnu", suffix)
    copy_into = CompressedTarWriter._copy_into

    def failing(self, write, source, size):
        done = [0]

        def limited(data):
            if done[0] + len(data) > fail_after:
                raise OSError(5, "injected write error")
            done[0] += len(data)
            write(data)
        return copy_into(self, limited, source, size)

    with open_archive(str(archive), "a") as a:
        a.writedata("first.txt", b"written before the failure\n")
        mode = a.stat("big.bin").mode
        monkeypatch.setattr(CompressedTarWriter, "_copy_into", failing)
        with pytest.raises(OSError):
            a.chmod("big.bin", 0o600)
        monkeypatch.setattr(CompressedTarWriter, "_copy_into", copy_into)
        a.writedata("after.txt", b"written after it\n")
        assert a.open("after.txt").read() == b"written after it\n"
        assert a.open("big.bin").read() == files["big.bin"]
    files["first.txt"] = b"written before the failure\n"
    files["after.txt"] = b"written after it\n"
    with open_archive(str(archive), "r", {"index_cache": "0"}) as a:
        assert a.stat("big.bin").mode == mode
    check_tools(archive, files, tmp_path)
