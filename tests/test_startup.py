"""What a mount's start-up loads: the second mount of a big tar should cost
little more than loading its saved index. These tests look at which modules
a fresh interpreter imports (no timing): the format is told from the file's
content without importing every plugin, a compressed tar opened from its
saved index loads no decompression library until a member is read, and
``archfs unmount`` imports none of the mount machinery."""

import json
import subprocess
import sys

import archfs.archives as registry
from tar_builders import gnu_tar, make_source


def _run(code: str, *args, env=None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


OPEN_TAR = r"""
import json, sys
from archfs.archives import archive_class
cls = archive_class(sys.argv[1], "r")
before = set(sys.modules)
archive = cls(url=sys.argv[1], mode="r", opts={})
names = sorted(name for name, _ in archive._store.listdir(""))
loaded_by_listing = sorted(m for m in set(sys.modules) - before)
data = archive._store.open_member("a.txt").pread(1 << 20, 0)
libraries = sorted(m for m in sys.modules if m in ("rapidgzip", "indexed_gzip"))
archive.close()
print(json.dumps({"plugin": cls.__name__, "names": names, "data": data.decode(),
                  "zip": sorted(m for m in sys.modules if m.startswith("archfs.zipengine")),
                  "metadata": "importlib.metadata" in sys.modules,
                  "listing": loaded_by_listing, "libraries": libraries}))
"""


def test_second_mount_of_a_tar_loads_only_what_it_needs(tmp_path, monkeypatch):
    import os
    source = make_source(tmp_path / "src-root")
    archive = gnu_tar(source, tmp_path / "t.tar", "gnu", ".gz")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    first = _run(OPEN_TAR, archive, env=env)          # indexes and saves the index
    second = _run(OPEN_TAR, archive, env=env)         # loads the saved index
    for got in (first, second):
        assert got["plugin"] == "TarfileArchive"
        assert got["zip"] == [], "a tar mount imported the zip engine"
        assert not got["metadata"], "plugin discovery imported importlib.metadata"
        assert got["data"] == "alpha\n"
        assert got["libraries"] == ["rapidgzip"]       # reading a member loads it
    assert second["names"] == first["names"]
    assert not any(m.startswith(("rapidgzip", "indexed_gzip")) for m in second["listing"])


def test_unmount_command_imports_no_mount_machinery():
    got = _run(r"""
import json, sys
from archfs import cli
try:
    cli.main(["unmount", "/nonexistent-archfs-mountpoint"])
finally:
    print(json.dumps(sorted(m for m in sys.modules
                            if m.startswith(("archfs.", "mfusepy", "hashlib", "logging",
                                             "ctypes", "argparse")))))
""")
    assert "archfs.mount.unmount" in got
    for heavy in ("mfusepy", "archfs.mount.daemon", "archfs.archives", "hashlib", "logging",
                  "ctypes", "argparse"):
        assert heavy not in got, heavy


def test_entry_point_scan_agrees_with_importlib_metadata():
    """The registry reads entry_points.txt itself (importlib.metadata is slow
    to import); it must find what the library finds."""
    from importlib.metadata import entry_points as library
    for group in (registry.ENTRY_POINT_GROUP, "console_scripts", "pytest11"):
        ours = sorted((ep.name, ep.value) for ep in registry.entry_points(group=group))
        theirs = sorted({(ep.name, ep.value) for ep in library(group=group)})
        assert ours == theirs, group
    assert any(ep.name == "tar" for ep in registry.entry_points(group=registry.ENTRY_POINT_GROUP))


def test_zip_open_loads_no_decoder_library_until_a_member_needs_it(tmp_path):
    import zipfile
    archive = tmp_path / "z.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", "alpha\n" * 100)
    got = _run(r"""
import json, sys
from archfs.archives import open_archive
with open_archive(sys.argv[1]) as a:
    data = a.open("a.txt").read()
print(json.dumps({"data": data.decode()[:6],
                  "loaded": sorted(m for m in sys.modules
                                   if m.split(".")[0] in ("Cryptodome", "pyppmd", "inflate64",
                                                          "backports"))
                  + sorted(m for m in sys.modules if m == "importlib.metadata")}))
""", archive)
    assert got["data"] == "alpha\n"
    assert got["loaded"] == []
