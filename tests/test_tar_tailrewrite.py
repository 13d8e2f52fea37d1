"""Removal and rename in a plain tar cost what follows the first changed
member (``tarengine/tailrewrite.py``): the archive is rewritten in place from
there (same inode, the bytes before untouched), GNU tar, bsdtar and Python's
tarfile extract what the mount showed, and an interrupted rewrite is finished
(or dropped) by the next open or ``archfs repair``."""

import os
import subprocess
import sys
import tarfile

import pytest

from archfs.archives import open_archive
from archfs.tarengine import tailrewrite
from test_tar_writing import same_trees


def build(path, count=40, size=32 << 10):
    """An archive of ``count`` files in three directories plus a hard link
    near the start; returns {name: content}."""
    files = {}
    with open_archive(str(path), "a") as a:
        for d in ("d0", "d1", "d2"):
            a._store.mkdir(d)
        for i in range(count):
            name = "d%d/f%03d.bin" % (i % 3, i)
            files[name] = bytes([i]) * (size + i)
            a.writedata(name, files[name])
        a._store.link("d0/f000.bin", "d0/link-to-f000")
        files["d0/link-to-f000"] = files["d0/f000.bin"]
    return files


def extract_and_compare(archive, files, tmp_path, dirs=("d0", "d1", "d2")):
    expected = tmp_path / "expected"
    for d in dirs:
        (expected / d).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (expected / name).parent.mkdir(parents=True, exist_ok=True)
        (expected / name).write_bytes(data)
    for tool in (["tar", "-xf"], ["bsdtar", "-xf"]):
        out = tmp_path / ("x-" + tool[0])
        out.mkdir()
        done = subprocess.run(tool + [str(archive), "-C", str(out)], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        for p in out.rglob("*"):               # modes are not what this test is about
            if p.is_file():
                os.chmod(p, (expected / p.relative_to(out)).stat().st_mode & 0o777)
        same_trees(expected, out)
    with tarfile.open(archive) as t:
        got = {m.name for m in t.getmembers() if not m.isdir()}
    assert got == set(files)
    listed = subprocess.run([sys.executable, "-m", "tarfile", "-t", str(archive)],
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr


def test_removal_near_the_end_rewrites_only_the_tail(tmp_path):
    archive = tmp_path / "a.tar"
    files = build(archive)
    before = archive.read_bytes()
    inode = archive.stat().st_ino
    with open_archive(str(archive), "a") as a:
        header = a._store.table.header[a._store.row_of("d1/f037.bin")]
        a.remove("d2/f038.bin")
        a._store.rename("d1/f037.bin", "d1/renamed-f037.bin")
        a.commit()
        assert a._store.end < len(before)
    del files["d2/f038.bin"]
    files["d1/renamed-f037.bin"] = files.pop("d1/f037.bin")
    assert archive.stat().st_ino == inode, "rewritten beside, not in place"
    assert archive.read_bytes()[:header] == before[:header]     # the start untouched
    assert not os.path.exists(tailrewrite.intent_path(str(archive)))
    extract_and_compare(archive, files, tmp_path)


def test_hard_link_and_dirs_in_the_tail(tmp_path):
    archive = tmp_path / "a.tar"
    files = build(archive, count=30)
    inode = archive.stat().st_ino
    with open_archive(str(archive), "a") as a:
        a._store.link("d1/f025.bin", "d2/link-to-f025")   # target before P, link after
        a.commit()
        a.remove("d1/f028.bin")                          # P after f025
        a._store.rename("d2", "moved")                   # a directory, in the tail too?
        a.commit()
    del files["d1/f028.bin"]
    files["moved/link-to-f025"] = files["d1/f025.bin"]
    for name in [n for n in files if n.startswith("d2/")]:
        files["moved/" + name[3:]] = files.pop(name)
    extract_and_compare(archive, files, tmp_path, dirs=("d0", "d1", "moved"))
    # d2 had a member near the start: that rename rewrote almost all, beside
    assert archive.stat().st_ino != inode
    with open_archive(str(archive)) as a:
        assert a._store.stat("moved/link-to-f025")[5] == 2       # still one inode


def test_an_open_member_after_the_change_keeps_reading(tmp_path):
    archive = tmp_path / "a.tar"
    files = build(archive)
    inode = archive.stat().st_ino
    with open_archive(str(archive), "a") as a:
        reader = a._store.open_member("d0/f039.bin")
        a.remove("d2/f038.bin")
        a.commit()                                 # beside: the reader's bytes must stay
        assert reader.pread(1 << 20, 0) == files["d0/f039.bin"]
        reader.close()
    assert archive.stat().st_ino != inode
    del files["d2/f038.bin"]
    extract_and_compare(archive, files, tmp_path)


CHILD = r"""
import os, sys
from archfs.archives import open_archive
from archfs.tarengine import tailrewrite
path, where, victim = sys.argv[1:4]
a = open_archive(path, "a")
if where == "applying it":
    def half_apply(intent_fd, archive_fd, start, length):
        tailrewrite.copy_range(intent_fd, archive_fd, length // 2, 0, start)
        os._exit(9)                           # killed halfway through the copy
    tailrewrite.apply = half_apply
elif where == "before applying":
    tailrewrite.apply = lambda *args: os._exit(9)
else:
    def partial(sink, *args):
        sink.write(b"x" * 5000)
        os._exit(9)                           # killed while writing the intent file
    a._store._write_rows = partial
a.remove(victim)
a.commit()
"""


def interrupted(archive, where, victim):
    done = subprocess.run([sys.executable, "-c", CHILD, str(archive), where, victim],
                          capture_output=True, text=True)
    assert done.returncode == 9, done.stderr


@pytest.mark.parametrize("where", ["writing the intent", "applying it"])
def test_interrupted_rewrite_is_finished_or_dropped(tmp_path, where):
    archive = tmp_path / "a.tar"
    files = build(archive)
    before = archive.read_bytes()
    interrupted(archive, where, "d2/f038.bin")
    intent = tailrewrite.intent_path(str(archive))
    assert os.path.exists(intent)
    if where == "applying it":
        assert archive.read_bytes() != before          # torn until the next open
        del files["d2/f038.bin"]
        result = subprocess.run([sys.executable, "-m", "archfs", "repair", str(archive)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "finished a rewrite" in result.stdout + result.stderr
    else:
        assert archive.read_bytes() == before          # not touched yet
        with open_archive(str(archive)) as again:      # the half-written intent is dropped
            assert sorted(again.getnames()) == sorted(files)
    assert not os.path.exists(intent)
    extract_and_compare(archive, files, tmp_path)


def test_a_complete_intent_is_applied_by_a_read_only_open(tmp_path):
    archive = tmp_path / "a.tar"
    files = build(archive)
    before = archive.read_bytes()
    interrupted(archive, "before applying", "d0/f039.bin")
    assert archive.read_bytes() == before
    del files["d0/f039.bin"]
    with open_archive(str(archive)) as again:          # read-only: finishes it first
        assert sorted(again.getnames()) == sorted(files)
    assert not os.path.exists(tailrewrite.intent_path(str(archive)))
    extract_and_compare(archive, files, tmp_path)


def test_a_link_whose_file_went_keeps_its_content_through_later_rewrites(tmp_path):
    archive = tmp_path / "a.tar"
    files = build(archive)
    with open_archive(str(archive), "a") as a:
        a._store.link("d1/f031.bin", "d2/keeps-f031")
        a._store.link("d1/f031.bin", "d0/also-f031")
        a.commit()
        a.remove("d1/f031.bin")          # the first link becomes the file, the other links it
        a.commit()
        a.remove("d0/f039.bin")          # a later rewrite in place must read the right bytes
        a.commit()
        a.remove("d1/f001.bin")          # and one of the whole archive
        a.commit()
    files["d2/keeps-f031"] = files["d0/also-f031"] = files.pop("d1/f031.bin")
    for name in ("d0/f039.bin", "d1/f001.bin"):
        del files[name]
    extract_and_compare(archive, files, tmp_path)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_random_changes_match_a_model(tmp_path, seed, suffix):
    """Random adds, replacements, removals, renames of files and directories
    and hard links, committed at random points; after each commit GNU tar
    extracts exactly the model."""
    import random
    import shutil
    rng = random.Random(seed)
    archive = tmp_path / ("m" + suffix)
    model, dirs = {}, {"x", "y"}
    a = open_archive(str(archive), "a")
    for d in sorted(dirs):
        a._store.mkdir(d)

    def check():
        a.commit()
        out = tmp_path / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        done = subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert got == model
    try:
        for step in range(50):
            names, op = sorted(model), rng.random()
            if op < 0.4 or not names:
                name = "%s/f%03d" % (rng.choice(sorted(dirs)), step)
                model[name] = os.urandom(rng.randint(0, 3000))
                a.writedata(name, model[name])
            elif op < 0.6:
                name = rng.choice(names)
                a.remove(name)
                del model[name]
            elif op < 0.75:
                name, new = rng.choice(names), "%s/r%03d" % (rng.choice(sorted(dirs)), step)
                a._store.rename(name, new)
                model[new] = model.pop(name)
            elif op < 0.85:
                name, new = rng.choice(names), "%s/l%03d" % (rng.choice(sorted(dirs)), step)
                a._store.link(name, new)
                model[new] = model[name]
            elif op < 0.9:
                old, new = rng.choice(sorted(dirs)), "z%03d" % step
                a._store.rename(old, new)
                dirs.discard(old)
                dirs.add(new)
                for name in [n for n in model if n.startswith(old + "/")]:
                    model[new + name[len(old):]] = model.pop(name)
            else:
                name = rng.choice(names)          # its own copy; other links keep theirs
                model[name] = os.urandom(rng.randint(0, 3000))
                a.writedata(name, model[name])
            if rng.random() < 0.4:
                check()
        check()
    finally:
        a.close()


def test_an_intent_for_an_earlier_file_of_that_name_is_dropped(tmp_path):
    """The archive was replaced (a backup restored) after a crash left a
    complete intent: applying it would corrupt the new file."""
    archive = tmp_path / "a.tar"
    files = build(archive)
    interrupted(archive, "before applying", "d0/f039.bin")
    restored = tmp_path / "restored.tar"
    restored.write_bytes(archive.read_bytes())
    os.replace(restored, archive)                  # another inode, the old content
    with open_archive(str(archive)) as again:
        assert sorted(again.getnames()) == sorted(files)
    assert not os.path.exists(tailrewrite.intent_path(str(archive)))
    extract_and_compare(archive, files, tmp_path)
