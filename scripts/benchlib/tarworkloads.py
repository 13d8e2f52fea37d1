"""Tar workloads: the zip workloads' contents as .tar, .tar.gz and .tar.zst.

Each is converted from its zip (same names, same bytes, so the zip's
manifest facts hold: tree entries, member sizes, the random-read digests),
then compressed by the standard tools (``gzip -6``, ``zstd -3``: one stream,
as users make them). ``deflated-archfs.tar.gz`` is the .tar.gz after archfs
wrote to it once (re-encoded into segments), for the "archive archfs has
written before" row.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

from benchlib import workloads as wl
from benchlib.settings import REPO_ROOT

TAR_FORMAT_VERSION = 1
COMPRESSORS = {".tar": None, ".tar.gz": ["gzip", "-6", "-c"], ".tar.zst": ["zstd", "-3", "-q", "-c"]}
ARCHFS_WRITTEN = "deflated-archfs.tar.gz"


def tar_name(base: str, suffix: str) -> str:
    return base + suffix


def tar_path(workloads: wl.Workloads, name: str) -> Path:
    return workloads.dir / name


def _manifest_path(workloads: wl.Workloads, name: str) -> Path:
    return workloads.dir / (name + ".json")


def _params(workloads: wl.Workloads, name: str, source: str) -> dict:
    return {"tar_format": TAR_FORMAT_VERSION, "source": source,
            "source_bytes": workloads.manifest(source)["facts"]["archive_bytes"]}


def ensure(workloads: wl.Workloads, names: list[str], log=print) -> None:
    """Build the tar workloads ``names`` (the zip workloads must be ensured first)."""
    for name in names:
        source = name.split(".", 1)[0].replace("-archfs", "")
        workloads.ensure([source])
        params = _params(workloads, name, source)
        path = tar_path(workloads, name)
        try:
            manifest = json.loads(_manifest_path(workloads, name).read_text())
            if manifest["params"] == params and path.stat().st_size == \
                    manifest["facts"]["archive_bytes"]:
                workloads.manifests[name] = manifest
                continue
        except (OSError, ValueError, KeyError):
            pass
        log(f"building workload {name} ...")
        t0 = time.monotonic()
        if name == ARCHFS_WRITTEN:
            _archfs_written(workloads, path, log)
        else:
            suffix = name[len(source):]
            plain = tar_path(workloads, source + ".tar")
            if suffix != ".tar":
                ensure(workloads, [source + ".tar"], log)
            else:
                _zip_to_tar(workloads.path(source), plain)
            if COMPRESSORS[suffix]:
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "wb") as out:
                    subprocess.run(COMPRESSORS[suffix] + [str(plain)], stdout=out, check=True)
                os.replace(tmp, path)
        facts = dict(workloads.manifest(source)["facts"])
        facts["archive_bytes"] = path.stat().st_size
        facts["build_seconds"] = round(time.monotonic() - t0, 1)
        manifest = {"params": params, "facts": facts}
        _manifest_path(workloads, name).write_text(json.dumps(manifest, indent=1))
        workloads.manifests[name] = manifest
        log(f"  built in {facts['build_seconds']} s")


def _zip_to_tar(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(source) as zf, tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tf:
        for info in zf.infolist():
            ti = tarfile.TarInfo(info.filename.rstrip("/"))
            ti.mtime = time.mktime(info.date_time + (0, 0, -1))
            if info.is_dir():
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
                continue
            ti.size, ti.mode = info.file_size, 0o644
            with zf.open(info) as member:
                tf.addfile(ti, member)
    os.replace(tmp, target)


def _archfs_written(workloads: wl.Workloads, path: Path, log) -> None:
    """The .tar.gz after one write through archfs (so it is made of segments)."""
    source = tar_path(workloads, "deflated.tar.gz")
    ensure(workloads, ["deflated.tar.gz"], log)
    tmp = path.with_name(path.name + ".tmp.tar.gz")
    shutil.copyfile(source, tmp)
    python = REPO_ROOT / ".venv" / "bin" / "python"
    subprocess.run([str(python) if python.exists() else sys.executable, "-c",
                    "import sys; from archfs.archives import open_archive\n"
                    "a = open_archive(sys.argv[1], 'a', {'index_cache': '0'})\n"
                    "a.writedata('bench-converted.txt', b'x')\na.close()", str(tmp)],
                   check=True)
    os.replace(tmp, path)
