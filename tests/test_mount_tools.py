"""Standard Unix tools on a real mount, against a directory and a zip.

Each test works through the mount with the real tool, checks what the mount
shows, unmounts, and checks what the archive holds (a zip is first tested
with ``unzip -t`` and extracted with ``unzip``).
"""

import hashlib
import os
import stat
import threading
import time

from mount_fixtures import SAMPLE, SAMPLE_DIRS, SAMPLE_LINKS, extract, make_tree, run, tree_of

# A tree with binary and text files, nesting, an empty dir, a symlink and a
# file just over the kernel's 128 KiB read size.
COPY_FILES = {
    "top.txt": b"top level\n",
    "bin/random.bin": os.urandom(200_000),
    "bin/zeros.bin": bytes(70_000),
    "text/a/b/c/deep.txt": b"deep\n" * 1000,
    "text/space name.txt": b"spaces work\n",
    "text/unicode-\u00e9\u00e8.txt": "caf\u00e9\n".encode(),
}


def copy_source(tmp_path, name="source"):
    root = make_tree(tmp_path / name, COPY_FILES, dirs=["empty/inner"],
                     symlinks={"text/link": "a/b/c/deep.txt"})
    os.chmod(root / "top.txt", 0o600)
    os.chmod(root / "bin" / "random.bin", 0o755)
    os.utime(root, (1_000_000_000, 1_000_000_000))  # so rsync -a sets the mount root's time
    return root


def test_ls_lR_and_find_show_the_tree(sample_mount):
    listing = run(["ls", "-lR", sample_mount.path]).stdout
    assert "latest -> photos/2024/snow.jpg" in listing
    size = len(SAMPLE["photos/2024/snow.jpg"])
    assert any(line.split()[4:5] == [str(size)] and line.endswith("snow.jpg")
               for line in listing.splitlines())

    def find(*args):
        return set(run(["find", ".", *args], cwd=sample_mount.path).stdout.split("\n")) - {""}

    assert find("-type", "f") == {"./" + name for name in SAMPLE}
    assert find("-type", "l") == {"./" + name for name in SAMPLE_LINKS}
    assert find("-type", "d") == {".", "./data", "./photos", "./photos/2023",
                                  "./photos/2024", "./emptydir"}


def test_cat_reads_every_member(sample_mount):
    for name, data in SAMPLE.items():
        assert run(["cat", sample_mount / name], text=False).stdout == data
    latest = run(["cat", sample_mount / "latest"], text=False).stdout
    assert latest == SAMPLE["photos/2024/snow.jpg"]


def test_metadata_sizes_modes_owner_symlinks(sample_mount):
    st = os.lstat(sample_mount / "photos/2024/notes.txt")
    assert stat.S_ISREG(st.st_mode) and st.st_size == len(SAMPLE["photos/2024/notes.txt"])
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert stat.S_ISDIR(os.lstat(sample_mount / "emptydir").st_mode)
    assert os.listdir(sample_mount / "emptydir") == []
    assert os.readlink(sample_mount / "latest") == SAMPLE_LINKS["latest"]
    assert abs(st.st_mtime - time.time()) < 3600  # the sample was made just now
    fs = os.statvfs(sample_mount.path)
    assert fs.f_bsize > 0 and 0 < fs.f_namemax <= 255 and fs.f_bavail <= fs.f_blocks


def test_cp_r_into_the_mount_equals_what_unzip_extracts(empty_mount, kind, tmp_path):
    source = copy_source(tmp_path)
    run(["cp", "-r", source, empty_mount / "copied"])
    assert tree_of(empty_mount / "copied") == tree_of(source)
    empty_mount.unmount()
    assert tree_of(extract(kind, empty_mount.archive, tmp_path) / "copied") == tree_of(source)


def test_cp_r_out_of_the_mount(sample_mount, tmp_path):
    run(["cp", "-r", str(sample_mount.path) + "/.", tmp_path / "out"])
    expected = make_tree(tmp_path / "expected", SAMPLE, SAMPLE_DIRS, SAMPLE_LINKS)
    assert tree_of(tmp_path / "out", modes=False) == tree_of(expected, modes=False)


def test_mv_files_and_directories(sample_mount, kind, tmp_path):
    m = sample_mount
    run(["mv", m / "readme.txt", m / "README"])
    run(["mv", m / "photos", m / "pictures"])
    run(["mv", m / "data/numbers.bin", m / "pictures/2023/"])
    run(["mv", m / "pictures/2024/notes.txt", m / "data/empty.dat"])  # over an existing file
    assert sorted(os.listdir(m.path)) == ["README", "data", "emptydir", "latest", "pictures"]
    assert (m / "pictures/2023/numbers.bin").read_bytes() == SAMPLE["data/numbers.bin"]
    m.unmount()
    tree = tree_of(extract(kind, m.archive, tmp_path), modes=False)
    assert tree["README"][1] == SAMPLE["readme.txt"]
    assert tree["pictures/2024/snow.jpg"][1] == SAMPLE["photos/2024/snow.jpg"]
    assert tree["pictures/2023/numbers.bin"][1] == SAMPLE["data/numbers.bin"]
    assert tree["data/empty.dat"][1] == SAMPLE["photos/2024/notes.txt"]
    assert not any(name.startswith("photos") or name == "readme.txt" for name in tree)
    assert "pictures/2024/notes.txt" not in tree


def test_rm_r_mkdir_p_rmdir(sample_mount, kind, tmp_path):
    m = sample_mount
    run(["rm", "-r", m / "photos"])
    run(["mkdir", "-p", m / "new/deeper/deepest"])
    run(["rmdir", m / "emptydir"])
    run(["rm", m / "latest"])
    assert sorted(os.listdir(m.path)) == ["data", "new", "readme.txt"]
    m.unmount()
    tree = tree_of(extract(kind, m.archive, tmp_path), modes=False)
    assert sorted(tree) == ["data", "data/empty.dat", "data/numbers.bin", "new", "new/deeper",
                            "new/deeper/deepest", "readme.txt"]


def test_touch_chmod_truncate_append(sample_mount, kind, tmp_path):
    m = sample_mount
    run(["touch", m / "fresh.txt"])
    run(["touch", "-d", "2001-02-03 04:05:06", m / "readme.txt"])
    run(["chmod", "600", m / "photos/2024/notes.txt"])
    run(["chmod", "750", m / "photos/2023"])
    run(["truncate", "-s", "10", m / "data/numbers.bin"])
    run(["truncate", "-s", "1000", m / "data/empty.dat"])
    run(["sh", "-c", 'echo appended >> "$1"; echo again >> "$1"', "sh",
         m / "photos/2024/notes.txt"])
    expected_notes = SAMPLE["photos/2024/notes.txt"] + b"appended\nagain\n"
    mtime = time.mktime((2001, 2, 3, 4, 5, 6, 0, 0, -1))

    def check(root):
        assert (root / "fresh.txt").read_bytes() == b""
        assert abs(os.stat(root / "readme.txt").st_mtime - mtime) <= 2
        assert stat.S_IMODE(os.stat(root / "photos/2024/notes.txt").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(root / "photos/2023").st_mode) == 0o750
        assert (root / "data/numbers.bin").read_bytes() == SAMPLE["data/numbers.bin"][:10]
        assert (root / "data/empty.dat").read_bytes() == bytes(1000)
        assert (root / "photos/2024/notes.txt").read_bytes() == expected_notes

    check(m.path)
    m.unmount()
    check(extract(kind, m.archive, tmp_path))


def test_editor_style_save_and_sed_i(sample_mount, kind, tmp_path):
    m = sample_mount
    target = m / "photos/2024/notes.txt"
    temporary = m / "photos/2024/.notes.txt.swp"
    with open(temporary, "wb") as f:  # what an editor does: write aside, rename over
        f.write(b"edited by an editor\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(temporary, 0o640)
    os.rename(temporary, target)
    assert target.read_bytes() == b"edited by an editor\n"
    run(["sed", "-i", "s/cold/warm/", m / "readme.txt"])  # sed -i: the same pattern
    run(["sed", "-i", "s/folder/directory/", m / "readme.txt"])
    assert (m / "readme.txt").read_bytes() == b"an archive mounted as a directory\n"
    assert sorted(os.listdir(m / "photos/2024")) == ["notes.txt", "snow.jpg"]
    m.unmount()
    root = extract(kind, m.archive, tmp_path)
    assert (root / "photos/2024/notes.txt").read_bytes() == b"edited by an editor\n"
    assert stat.S_IMODE(os.stat(root / "photos/2024/notes.txt").st_mode) == 0o640
    assert (root / "readme.txt").read_bytes() == b"an archive mounted as a directory\n"
    assert sorted(os.listdir(root / "photos/2024")) == ["notes.txt", "snow.jpg"]


def test_rsync_a_into_the_mount(empty_mount, kind, tmp_path):
    source = copy_source(tmp_path)
    run(["rsync", "-a", str(source) + "/", str(empty_mount.path) + "/"])
    assert tree_of(empty_mount.path) == tree_of(source)
    again = run(["rsync", "-a", "--itemize-changes", "--checksum",
                 str(source) + "/", str(empty_mount.path) + "/"])
    assert not [line for line in again.stdout.splitlines() if line.startswith(">f")]
    empty_mount.unmount()
    assert tree_of(extract(kind, empty_mount.archive, tmp_path)) == tree_of(source)


def test_grep_r_and_tar_both_ways(sample_mount, kind, tmp_path):
    m = sample_mount
    found = run(["grep", "-r", "-l", "cold", m.path]).stdout.split()
    assert found == [str(m / "photos/2024/notes.txt")]
    run(["tar", "-cf", tmp_path / "out.tar", "-C", m.path, "."])
    run(["mkdir", m / "restored"])
    run(["tar", "-xf", tmp_path / "out.tar", "-C", m / "restored", "--exclude=./restored"])
    expected = make_tree(tmp_path / "expected", SAMPLE, SAMPLE_DIRS, SAMPLE_LINKS)
    assert tree_of(m / "restored", modes=False) == tree_of(expected, modes=False)
    m.unmount()
    root = extract(kind, m.archive, tmp_path)
    assert tree_of(root / "restored", modes=False) == tree_of(expected, modes=False)


def test_parallel_readers_get_the_right_bytes(kind, tmp_path, mounter):
    from mount_fixtures import build_archive
    files = {"f%d.bin" % i: os.urandom(300_000 + i) for i in range(8)}
    archive = build_archive(kind, tmp_path, files, (), None)
    m = mounter(archive, kind=kind)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    results, errors = [], []

    def reader(name):
        try:
            with open(m / name, "rb") as f:
                chunks = []
                while True:
                    chunk = f.read(7001)  # odd sizes: reads cross FUSE request bounds
                    if not chunk:
                        break
                    chunks.append(chunk)
            results.append((name, hashlib.sha256(b"".join(chunks)).hexdigest()))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(name,)) for name in files for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 16
    assert all(digest == digests[name] for name, digest in results)
    outputs = run(["sh", "-c", "for f in *.bin; do sha256sum \"$f\" & done; wait"],
                  cwd=m.path).stdout.split("\n")
    assert {line.split()[1]: line.split()[0] for line in outputs if line} == digests
