"""A second mount's start (archfs/startup.py, the lazily split tar names,
the plain ``archfs mount`` read without argparse) and the rules of the saved
index it loads: never served when the archive changed, rebuilt when damaged.
No timing here: ``scripts/bench --only tar-small-gz`` measures the speed."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from archfs import cli, startup
from archfs.engine import indexcache
from archfs.mount import fuselib
from archfs.tarengine import store as tarstore
from mount_fixtures import archfs
from tar_builders import DEEP, gnu_tar, make_source


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tgz(tmp_path):
    return gnu_tar(make_source(tmp_path / "src"), tmp_path / "t.tar", "gnu", ".gz")


def _listing(store):
    out = {}
    todo = [""]
    while todo:
        path = todo.pop()
        for name, mode in store.listdir(path):
            full = path + "/" + name if path else name
            out[full] = store.stat(full)
            if stat.S_ISDIR(mode):
                todo.append(full)
    return out


def _count_scans(monkeypatch):
    calls = []
    real = tarstore.scan
    monkeypatch.setattr(tarstore, "scan", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


# -- the saved index -------------------------------------------------------------------

def test_loaded_names_are_split_at_first_use_and_serve_deep_paths(cache, tgz):
    first = tarstore.TarStore(str(tgz))
    want, names = _listing(first), first.names()
    first.close()
    second = tarstore.TarStore(str(tgz))
    try:
        assert "names" not in second.table.__dict__, "the names were split while loading"
        deep = DEEP + "/deep.txt"                     # first request: a deep path
        assert second.stat(deep) == want[deep]
        with second.open_member(deep) as member:
            assert member.pread(100, 0) == b"deep\n"
        assert _listing(second) == want
        assert second.names() == names
        assert len(second.table.names) == len(second.table)
    finally:
        second.close()


def test_a_top_directory_of_directories_lists_without_the_names(cache, tmp_path):
    src = tmp_path / "top"
    for d in range(3):
        (src / "top" / ("d%d" % d)).mkdir(parents=True)
        (src / "top" / ("d%d" % d) / "f.txt").write_bytes(b"x%d" % d)
    archive = gnu_tar(src, tmp_path / "dirs.tar", "gnu", ".gz")
    tarstore.TarStore(str(archive)).close()
    store = tarstore.TarStore(str(archive))
    try:
        assert [n for n, _ in store.listdir("")] == ["top"]
        assert sorted(n for n, _ in store.listdir("top")) == ["d0", "d1", "d2"]
        assert "names" not in store.table.__dict__
        with store.open_member("top/d2/f.txt") as member:
            assert member.pread(10, 0) == b"x2"
    finally:
        store.close()


def _index_of(archive):
    return Path(indexcache.cache_file(str(archive), None, "tar"))


@pytest.mark.parametrize("damage", ["truncated", "names", "garbage", "empty"])
def test_a_damaged_saved_index_is_rebuilt(cache, tgz, monkeypatch, damage):
    first = tarstore.TarStore(str(tgz))
    want = _listing(first)
    first.close()
    index = _index_of(tgz)
    data = index.read_bytes()
    if damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "names":                  # one NUL between names becomes a letter
        at = data.index(b"a.txt\x00")
        data = data[:at + 5] + b"x" + data[at + 6:]
    elif damage == "garbage":
        data = data[:16] + os.urandom(len(data) - 16)
    else:
        data = b""
    index.write_bytes(data)
    scans = _count_scans(monkeypatch)
    store = tarstore.TarStore(str(tgz))
    try:
        assert scans == [1], "a damaged index was used"
        assert _listing(store) == want
    finally:
        store.close()
    assert index.read_bytes() != data, "the rebuilt index was not saved over the damaged one"


def test_a_changed_archive_is_never_served_from_its_saved_index(cache, tgz, tmp_path,
                                                               monkeypatch):
    """The rule: device, inode, size and mtime to the nanosecond. Here even
    the same bytes count as a change when the mtime moved by 1 ns within the
    same second, or when another file (new inode) took the name."""
    tarstore.TarStore(str(tgz)).close()
    scans = _count_scans(monkeypatch)

    def open_close():
        store = tarstore.TarStore(str(tgz))
        try:
            return _listing(store)
        finally:
            store.close()

    want = open_close()
    assert scans == []
    st = os.stat(tgz)
    data = tgz.read_bytes()
    with open(tgz, "r+b") as f:          # rewritten in place, same size
        f.write(data)
    os.utime(tgz, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert open_close() == want and scans == [1]
    assert open_close() == want and scans == [1]      # the new index is used
    replacement = tmp_path / "replacement"
    replacement.write_bytes(data)
    now = os.stat(tgz)
    os.utime(replacement, ns=(now.st_atime_ns, now.st_mtime_ns))
    os.replace(replacement, tgz)         # same size and mtime, another inode
    assert open_close() == want
    assert scans == [1, 1], "a replaced archive was served from the saved index"


# -- the command line ------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["mount", "a.zip", "m"],
    ["mount", "-f", "a.zip", "m", "-o", "ro"],
    ["mount", "a", "-vv", "m", "-o", "ro", "-o", "x=1", "--log-file", "l", "-q"],
    ["mount", "-v", "--verbose", "a", "m", "--foreground", "--quiet"],
])
def test_plain_mount_is_read_as_argparse_reads_it(argv):
    fast = cli._plain_mount(argv)
    assert fast is not None
    assert vars(fast) == vars(cli.build_parser(only="mount").parse_args(argv))


@pytest.mark.parametrize("argv", [
    ["mount", "a"], ["mount", "a", "b", "c"], ["mount", "-oro", "a", "b"],
    ["mount", "-x", "a", "b"], ["mount", "a", "b", "-o"], ["mount", "--", "a", "b"],
    ["mount", "-h"], ["mount", "a", "b", "-o", "-f"], ["mount", "--log-file=x", "a", "b"],
    ["unmount", "m"],
])
def test_anything_else_goes_to_argparse(argv):
    assert cli._plain_mount(argv) is None


def test_a_mount_with_a_bad_option_still_fails_as_usage():
    result = archfs("mount", "-x", "a.zip", "m")
    assert result.returncode == 2 and "unrecognized arguments: -x" in result.stderr


# -- reading ahead ---------------------------------------------------------------------

def test_a_mount_records_what_it_loaded_and_the_next_one_reads_it(cache, tgz, tmp_path):
    point = tmp_path / "mnt"
    point.mkdir()
    listing = None
    for _ in range(2):                     # the first writes the list, the second uses it
        result = archfs("mount", tgz, point, "-o", "ro", timeout=120)
        assert result.returncode == 0, result.stderr
        try:
            listing = sorted(os.listdir(point))
            assert (point / "a.txt").read_bytes() == b"alpha\n"
            assert (point / DEEP / "deep.txt").read_bytes() == b"deep\n"
        finally:
            assert archfs("unmount", point, timeout=120).returncode == 0
    assert "a.txt" in listing
    lines = (cache / "archfs" / "startup-files").read_text().splitlines()
    assert lines[0] == startup._key()
    files = lines[1:]
    assert any(p.endswith(".pyc") and "/tarengine/" in p for p in files)
    assert any("libfuse" in p for p in files)
    assert any(p.endswith("entry_points.txt") for p in files), "the plugin registry's reads"
    assert all(os.path.isabs(p) and os.path.getsize(p) <= startup.MAX_SIZE for p in files)
    names = {os.path.basename(p).split(".")[0] for p in files}
    # a read-only tar mount from its saved index, on libfuse 3: neither mfusepy
    # nor what only writing, URLs, indexing or help text need
    unneeded = {"_hashlib", "hashlib", "argparse", "rapidgzip", "shutil", "subprocess",
                "tempfile", "parse", "bz2", "lzma", "thread", "base64", "fnmatch"}
    if fuselib.libfuse3() is not None:     # the low-level binding serves
        unneeded |= {"mfusepy", "inspect", "dis", "platform"}
    assert not names & unneeded, \
        "the mount loaded what it does not need before it was live: %s" % (names & unneeded)


def test_a_damaged_list_harms_nothing(cache, tgz, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)                        # opened for reading, it would wait forever
    (cache / "archfs").mkdir(parents=True)
    (cache / "archfs" / "startup-files").write_bytes(
        startup._key().encode() + b"\n" + str(fifo).encode() + b"\n/no/such.pyc\n"
        + str(tmp_path).encode() + b"\n\xff\xfe\x00garbage\nrelative.pyc\n")
    point = tmp_path / "mnt"
    point.mkdir()
    # stdout and stderr are pipes: a helper that kept them open would hang this
    result = archfs("mount", tgz, point, "-o", "ro", timeout=120)
    assert result.returncode == 0, result.stderr
    try:
        assert (point / "a.txt").read_bytes() == b"alpha\n"
    finally:
        assert archfs("unmount", point, timeout=120).returncode == 0


def test_the_helper_reads_ahead_and_ends(cache, tgz):
    """The helper's own work, run here: it must end (not wait on a FIFO) and
    find the saved index where the plugin saves it."""
    tarstore.TarStore(str(tgz)).close()
    assert str(_index_of(tgz)) in startup.index_files(str(tgz))
    assert indexcache.cache_file(str(tgz), None, "zip") in startup.index_files(str(tgz))
    code = ("import sys; from archfs import startup; startup.prefetch(sys.argv[1]); "
            "import os; pid = startup._helper[0]; _, status = os.waitpid(pid, 0); "
            "print(os.waitstatus_to_exitcode(status))")
    out = subprocess.run([sys.executable, "-c", code, str(tgz)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_the_mount_command_imports_without_the_collector_and_the_daemon_restores_it(
        monkeypatch, tmp_path):
    """gc is off from the command's start (imports make garbage-free young
    objects the collector would walk for nothing) until serve() has loaded
    the archive; then it is on again, as it is when serve() fails."""
    import gc

    from archfs.mount import daemon
    seen = []
    monkeypatch.setattr(startup, "prefetch", lambda source: None)
    monkeypatch.setattr(daemon, "run_background", lambda request: seen.append(
        gc.isenabled()) or 0)
    monkeypatch.setattr(sys, "argv", ["archfs", "mount", str(tmp_path / "no.tar"),
                                      str(tmp_path)])
    try:
        assert cli.main() == 0
        assert seen == [False]
    finally:
        gc.enable()
    from archfs.mount.options import parse_options
    request = daemon.MountRequest(str(tmp_path / "missing.tar"), str(tmp_path),
                                  parse_options(["ro"]), foreground=True)
    gc.disable()                       # serve() turns it back on, also on failure
    try:
        assert daemon.serve(request, daemon.Reporter()) != 0
        assert gc.isenabled()
    finally:
        gc.enable()
