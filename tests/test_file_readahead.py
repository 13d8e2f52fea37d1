"""Read-ahead across files on read-only mounts (``mount/pushahead.py``).

Once a program reads a file at the start of a directory, the files listed
after it are decoded ahead and put into the kernel's page cache, so a walk
in listing order (grep -r, tar) finds them there and sends no READ. What
must hold: every byte read is the member's, by read, pread and mmap, also
for a file pushed before its first open; a walk that keeps pace sends far
fewer READs than it reads files; a damaged member is never pushed and still
fails read(2) with EIO; ``-o file_readahead=0`` turns it off.
"""

import errno
import mmap
import os
import re
import time
import zipfile

import pytest

from archfs.mount import fusell, lowlevel

pytestmark = pytest.mark.skipif(
    not lowlevel.available() or fusell.notify_store is None,
    reason="needs libfuse 3's low-level API with notify_store")

DIRS, PER_DIR = 4, 90


def _body(d: int, i: int) -> bytes:
    return ("dir %d file %d, decoded ahead of the reader\n" % (d, i)).encode() * (1 + i % 70)


def _counts(log: str) -> dict:
    found = re.findall(r"file requests: (.*)", log)
    assert found, "no file request counts in the log:\n" + log
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found[-1])}


def _archive(tmp_path, damaged=None):
    archive = tmp_path / "walk.zip"
    members = {"d%d/f%03d.txt" % (d, i): _body(d, i)
               for d in range(DIRS) for i in range(PER_DIR)}
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    if damaged is not None:
        with zipfile.ZipFile(archive) as zf:
            info = zf.getinfo(damaged)
        raw = bytearray(archive.read_bytes())
        at = info.header_offset
        data_at = (at + 30 + int.from_bytes(raw[at + 26:at + 28], "little")
                   + int.from_bytes(raw[at + 28:at + 30], "little"))
        raw[data_at + info.compress_size - 1] ^= 0x5A      # its CRC fails now
        archive.write_bytes(bytes(raw))
    return archive, members


def _walk(root, members, pause=0.0, skip=()):
    """Read every file in listing order, as grep -r does; check the bytes."""
    files = 0
    for top in sorted(os.listdir(root)):
        with os.scandir(root / top) as listing:
            names = [entry.name for entry in listing]
        for name in names:
            rel = "%s/%s" % (top, name)
            if rel in skip:
                continue
            os.lstat(root / rel)
            assert (root / rel).read_bytes() == members[rel], rel
            files += 1
            if pause:
                time.sleep(pause)
    return files


def test_a_walk_in_listing_order_finds_the_files_cached(tmp_path, mounter):
    archive, members = _archive(tmp_path)
    m = mounter(archive, "ro")
    # paced so the read-ahead keeps up whatever the machine's load
    files = _walk(m.path, members, pause=0.004)
    # pushed files read every way: pread at offsets, mmap, a second open
    for rel in ("d1/f050.txt", "d2/f089.txt"):
        fd = os.open(m.path / rel, os.O_RDONLY)
        try:
            data = members[rel]
            assert os.pread(fd, 33, 7) == data[7:40]
            with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as mapped:
                assert mapped[:] == data
        finally:
            os.close(fd)
    m.unmount()
    counts = _counts(m.log())
    assert files == DIRS * PER_DIR
    assert counts["pushed"] > files // 2, counts
    # the first directory goes out without attributes (the listing policy has
    # not yet seen the walker look files up), so the kernel has no inodes to
    # store into before each open; after it, a window that doubles costs a
    # handful of READs per directory, not one per file
    assert counts["read"] <= PER_DIR + (files - PER_DIR) // 4, counts


def test_files_pushed_before_their_first_open_read_right_at_any_pace(tmp_path, mounter):
    """Unpaced: the walker may overtake the read-ahead; both then serve
    files, and every byte is still the member's."""
    archive, members = _archive(tmp_path)
    m = mounter(archive, "ro")
    assert _walk(m.path, members) == DIRS * PER_DIR
    assert _walk(m.path, members) == DIRS * PER_DIR     # from the page cache
    m.unmount()
    counts = _counts(m.log())
    assert counts["read"] + counts["pushed"] >= DIRS * PER_DIR - 2


def test_a_damaged_member_is_never_pushed_and_fails_at_read(tmp_path, mounter):
    bad = "d1/f010.txt"
    archive, members = _archive(tmp_path, damaged=bad)
    m = mounter(archive, "ro")
    _walk(m.path, members, pause=0.004, skip={bad})
    fd = os.open(m.path / bad, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            os.read(fd, 4096)
        assert exc.value.errno == errno.EIO
    finally:
        os.close(fd)
    m.unmount()
    assert _counts(m.log())["pushed"] > 0


def test_file_readahead_0_turns_it_off(tmp_path, mounter):
    archive, members = _archive(tmp_path)
    m = mounter(archive, "ro", "file_readahead=0")
    files = _walk(m.path, members)
    m.unmount()
    counts = _counts(m.log())
    assert "pushed" not in counts
    assert counts["read"] == files


def _decoder_pids(daemon_pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == daemon_pid and b"archfs.mount.decoderproc" in cmdline:
            found.append(int(entry))
    return found


def test_the_decoder_processes_end_with_the_mount(tmp_path, mounter):
    archive, members = _archive(tmp_path)
    m = mounter(archive, "ro")
    _walk(m.path, members, pause=0.002)
    deadline = time.monotonic() + 10
    while not _decoder_pids(m.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    from archfs.mount.decoderproc import DECODERS
    children = _decoder_pids(m.pid)
    assert len(children) == DECODERS, "decoder processes under the daemon %s: %s" % (
        m.pid, children)
    m.unmount()
    deadline = time.monotonic() + 10
    while any(os.path.exists("/proc/%d" % c) for c in children) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists("/proc/%d" % c) for c in children), \
        "a decoder process outlived the mount"


def test_read_write_mounts_push_nothing(tmp_path, mounter):
    archive, members = _archive(tmp_path)
    m = mounter(archive)
    assert _walk(m.path, members, pause=0.002) == DIRS * PER_DIR
    m.unmount()
    assert "pushed" not in _counts(m.log())
