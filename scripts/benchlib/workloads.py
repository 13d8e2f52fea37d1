"""Deterministic benchmark archives, built once and cached under .bench/.

Each archive has a manifest (NAME.json) holding the parameters it was built
from plus facts the measurements check against (member sizes, tree entry
count, digests of the blocks the random-read row fetches). A cached archive
is reused only when its manifest's parameters match and its size is right.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import zipfile
from pathlib import Path

from benchlib import textgen
from benchlib.settings import SEED, Sizes, workload_dir

FORMAT_VERSION = 1          # bump when a generator changes its output
FIXED_TIME = (2024, 1, 1, 12, 0, 0)
RANDOM_BLOCK = 4096
TEXT_RATIO_ESTIMATE = 3.5   # used only to size the mixed archive

STORED = "stored"
DEFLATED = "deflated"
SMALL = "small"
TINY = "tiny"
MIXED = "mixed"
COPY_SOURCE = "copy-source"

STORED_MEMBER = "big/noise.bin"
DEFLATED_MEMBER = "big/text.txt"


def _file_info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = compress
    info.external_attr = 0o100644 << 16
    return info


def _dir_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name.rstrip("/") + "/", date_time=FIXED_TIME)
    info.external_attr = (0o40755 << 16) | 0x10
    return info


def _tree_entries(names: list[str]) -> int:
    """Lines `find MOUNTPOINT` prints for these member names (root included)."""
    paths = set()
    for name in names:
        parts = name.rstrip("/").split("/")
        for i in range(1, len(parts) + 1):
            paths.add("/".join(parts[:i]))
    return len(paths) + 1


_CONTENT_BYTES: dict[Path, int] = {}


def content_bytes(archive: Path) -> int:
    """Total uncompressed size of an archive's members (from its directory)."""
    if archive not in _CONTENT_BYTES:
        with zipfile.ZipFile(archive) as zf:
            _CONTENT_BYTES[archive] = sum(i.file_size for i in zf.infolist())
    return _CONTENT_BYTES[archive]


def _leaf_dirs(prefix: str, count: int) -> list[str]:
    """`count` leaf directories, at most 100 per parent, as `zip -r` lays out."""
    tops = max(1, math.ceil(count / 100))
    return [f"{prefix}/g{i % tops:03d}/d{i // tops:03d}" for i in range(count)]


def edit_targets(sizes: Sizes, count: int) -> list[str]:
    """Names for the editing run on the tiny archive: every other one an
    existing member (spread over the archive), the others new files."""
    leaves = _leaf_dirs("tiny", sizes.tiny_dirs)
    per_dir = math.ceil(sizes.tiny_files / len(leaves))
    names = []
    for k in range(count):
        if k % 2:
            i = (k * 7919 * 104729) % sizes.tiny_files
            names.append(f"{leaves[i // per_dir]}/{i:07d}")
        else:
            names.append(f"edits/e{k // 10:02d}/new{k:04d}.bin")
    return names


class Workloads:
    """Builds or reuses every archive of one size class; gives their facts."""

    def __init__(self, sizes: Sizes, log=print):
        self.sizes = sizes
        self.dir = workload_dir(sizes)
        self.log = log
        self.manifests: dict[str, dict] = {}

    # -- public -------------------------------------------------------------
    def path(self, name: str) -> Path:
        if name == COPY_SOURCE:
            return self.dir / COPY_SOURCE
        if ".tar" in name:             # tar workloads are named with their suffix
            return self.dir / name
        return self.dir / f"{name}.zip"

    def manifest(self, name: str) -> dict:
        return self.manifests[name]

    def missing_bytes_estimate(self) -> int:
        """Disk the archives not yet cached will take (rough, for the df check)."""
        s = self.sizes
        estimates = {
            STORED: s.big_member,
            DEFLATED: int(s.big_member / TEXT_RATIO_ESTIMATE),
            SMALL: s.small_files * 1_100,
            TINY: s.tiny_files * 140,
            MIXED: s.mixed_bytes,
            COPY_SOURCE: s.copy_files * 4096,
        }
        return sum(v for k, v in estimates.items() if not self._cached(k))

    def ensure(self, names: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        builders = {
            STORED: self._build_stored, DEFLATED: self._build_deflated,
            SMALL: self._build_small, TINY: self._build_tiny,
            MIXED: self._build_mixed, COPY_SOURCE: self._build_copy_source,
        }
        for name in names:
            if self._cached(name):
                self.manifests[name] = self._read_manifest(name)
                continue
            self.log(f"building workload {name} in {self.path(name)} ...")
            t0 = time.monotonic()
            facts = builders[name]()
            facts["build_seconds"] = round(time.monotonic() - t0, 1)
            if name != COPY_SOURCE:
                facts["archive_bytes"] = self.path(name).stat().st_size
            manifest = {"params": self._params(name), "facts": facts}
            tmp = self._manifest_path(name).with_suffix(".json.tmp")
            tmp.write_text(json.dumps(manifest, indent=1))
            os.replace(tmp, self._manifest_path(name))
            self.manifests[name] = manifest
            self.log(f"  built in {facts['build_seconds']} s")

    # -- cache --------------------------------------------------------------
    def _manifest_path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _params(self, name: str) -> dict:
        return {"format": FORMAT_VERSION, "seed": SEED, "workload": name,
                "sizes": self.sizes.__dict__}

    def _read_manifest(self, name: str) -> dict:
        return json.loads(self._manifest_path(name).read_text())

    def _cached(self, name: str) -> bool:
        try:
            manifest = self._read_manifest(name)
        except (OSError, ValueError):
            return False
        if manifest.get("params") != json.loads(json.dumps(self._params(name))):
            return False
        if name == COPY_SOURCE:
            return self.path(name).is_dir()
        try:
            return self.path(name).stat().st_size == manifest["facts"]["archive_bytes"]
        except OSError:
            return False

    def _writer(self, name: str) -> tuple[zipfile.ZipFile, Path]:
        tmp = self.path(name).with_suffix(".zip.tmp")
        return zipfile.ZipFile(tmp, "w", allowZip64=True), tmp

    def _finish(self, name: str, zf: zipfile.ZipFile, tmp: Path) -> None:
        zf.close()
        os.replace(tmp, self.path(name))

    # -- builders -----------------------------------------------------------
    def _build_stored(self) -> dict:
        size = self.sizes.big_member
        zf, tmp = self._writer(STORED)
        zf.writestr(_dir_info("big/"), b"")
        info = _file_info(STORED_MEMBER, zipfile.ZIP_STORED)
        info.file_size = size
        with zf.open(info, "w") as out:
            for chunk in textgen.noise_chunks(size, SEED + 1):
                out.write(chunk)
        self._finish(STORED, zf, tmp)
        return {"member": STORED_MEMBER, "member_bytes": size}

    def _build_deflated(self) -> dict:
        size = self.sizes.big_member
        offsets = textgen.random_offsets(size, self.sizes.random_reads,
                                         RANDOM_BLOCK, SEED + 2)
        digests = textgen.BlockDigests(offsets, RANDOM_BLOCK)
        stream = textgen.TextStream(textgen.text_pool(SEED), SEED + 3)
        zf, tmp = self._writer(DEFLATED)
        zf.writestr(_dir_info("big/"), b"")
        info = _file_info(DEFLATED_MEMBER, zipfile.ZIP_DEFLATED)  # level 6
        info.file_size = size
        with zf.open(info, "w") as out:
            for chunk in stream.chunks(size):
                digests.feed(chunk)
                out.write(chunk)
        self._finish(DEFLATED, zf, tmp)
        compressed = zipfile.ZipFile(self.path(DEFLATED)).getinfo(
            DEFLATED_MEMBER).compress_size
        return {"member": DEFLATED_MEMBER, "member_bytes": size,
                "compressed_bytes": compressed,
                "ratio": round(size / compressed, 2),
                "random_block": RANDOM_BLOCK, "random_offsets": offsets,
                "random_digests": digests.digests()}

    def _build_small(self) -> dict:
        s = self.sizes
        rng = random.Random(SEED + 4)
        stream = textgen.TextStream(textgen.text_pool(SEED), SEED + 5)
        leaves = _leaf_dirs("small", s.small_dirs)
        zf, tmp = self._writer(SMALL)
        names = self._write_dirs(zf, leaves)
        per_dir = math.ceil(s.small_files / len(leaves))
        for i in range(s.small_files):
            name = f"{leaves[i // per_dir]}/f{i:06d}.txt"
            zf.writestr(_file_info(name, zipfile.ZIP_DEFLATED),
                        stream.take(rng.randint(1024, 4096)))
            names.append(name)
        self._finish(SMALL, zf, tmp)
        return {"files": s.small_files, "tree_entries": _tree_entries(names)}

    def _build_tiny(self) -> dict:
        s = self.sizes
        leaves = _leaf_dirs("tiny", s.tiny_dirs)
        zf, tmp = self._writer(TINY)
        names = self._write_dirs(zf, leaves)
        per_dir = math.ceil(s.tiny_files / len(leaves))
        for i in range(s.tiny_files):
            name = f"{leaves[i // per_dir]}/{i:07d}"
            zf.writestr(_file_info(name, zipfile.ZIP_STORED), b"%d\n" % i)
            names.append(name)
        self._finish(TINY, zf, tmp)
        return {"files": s.tiny_files, "tree_entries": _tree_entries(names)}

    def _build_mixed(self) -> dict:
        s = self.sizes
        rng = random.Random(SEED + 6)
        kinds = ["bin" if rng.random() < 0.4 else "txt" for _ in range(s.mixed_files)]
        raw = [math.exp(rng.uniform(math.log(1024), math.log(1536 * 1024)))
               for _ in range(s.mixed_files)]
        on_disk = sum(r if k == "bin" else r / TEXT_RATIO_ESTIMATE
                      for r, k in zip(raw, kinds))
        scale = s.mixed_bytes / on_disk
        stream = textgen.TextStream(textgen.text_pool(SEED), SEED + 7)
        leaves = [f"mixed/d{i:02d}" for i in range(max(1, s.mixed_files // 50))]
        zf, tmp = self._writer(MIXED)
        names = self._write_dirs(zf, leaves)
        for i, (r, kind) in enumerate(zip(raw, kinds)):
            size = max(1, int(r * scale))
            name = f"{leaves[i % len(leaves)]}/file{i:04d}.{kind}"
            if kind == "bin":
                data = b"".join(textgen.noise_chunks(size, SEED + 1000 + i))
                info = _file_info(name, zipfile.ZIP_STORED)
            else:
                data = b"".join(stream.chunks(size))
                info = _file_info(name, zipfile.ZIP_DEFLATED)
            zf.writestr(info, data)
            names.append(name)
        self._finish(MIXED, zf, tmp)
        return {"files": s.mixed_files, "tree_entries": _tree_entries(names)}

    def _build_copy_source(self) -> dict:
        s = self.sizes
        rng = random.Random(SEED + 8)
        stream = textgen.TextStream(textgen.text_pool(SEED), SEED + 9)
        target = self.path(COPY_SOURCE)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        dirs = max(1, s.copy_files // 100)
        for d in range(dirs):
            (tmp / f"c{d:03d}").mkdir(parents=True)
        for i in range(s.copy_files):
            (tmp / f"c{i % dirs:03d}" / f"n{i:05d}.txt").write_bytes(
                stream.take(rng.randint(1024, 4096)))
        os.replace(tmp, target)
        return {"files": s.copy_files, "dirs": dirs}

    @staticmethod
    def _write_dirs(zf: zipfile.ZipFile, leaves: list[str]) -> list[str]:
        names = []
        seen = set()
        for leaf in leaves:
            parts = leaf.split("/")
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i]) + "/"
                if d not in seen:
                    seen.add(d)
                    zf.writestr(_dir_info(d), b"")
                    names.append(d)
        return names
