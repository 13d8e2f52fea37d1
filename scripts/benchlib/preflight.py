"""Checks before measuring: enough disk, and whether archfs mounts yet."""
from __future__ import annotations

import zipfile

from benchlib import machine
from benchlib.mounts import Mount
from benchlib.settings import BENCH_DIR, GiB, scratch_dir


def probe_archfs(tool, ctx) -> str | None:
    """None when archfs can mount a small zip and read it back, else why not."""
    scratch_dir().mkdir(parents=True, exist_ok=True)
    probe = scratch_dir() / "archfs-probe.zip"
    with zipfile.ZipFile(probe, "w") as zf:
        zf.writestr("probe/hello.txt", b"hello archfs\n")
    try:
        with Mount(tool, probe, ctx.mnt(tool), False, ctx.state(tool),
                   ctx.log(tool)) as m:
            m.start()
            data = (m.mnt / "probe" / "hello.txt").read_bytes()
            m.unmount()
        if data != b"hello archfs\n":
            return "archfs mounted the probe zip but returned wrong bytes"
        return None
    except Exception as exc:
        return f"archfs mount does not work yet: {str(exc)[:300]}"
    finally:
        probe.unlink(missing_ok=True)


def check_disk(sizes, workloads, groups, log) -> None:
    need = workloads.missing_bytes_estimate() + 256 * (1 << 20)
    if "add-big" in groups:
        need += sizes.big_member
    if {"add-mixed", "copy-in"} & set(groups):
        need += 2 * sizes.mixed_bytes
    if "tree-tiny" in groups:
        need += sizes.tiny_files * 300   # ratarmount's sqlite index
    if "edit-tiny" in groups:
        need += 3 * sizes.tiny_files * 140   # a copy of the archive, rewritten at unmount
    free = machine.disk_free(BENCH_DIR)
    log(f"disk: about {need / GiB:.1f} GiB needed in {BENCH_DIR}, "
        f"{free / GiB:.1f} GiB free")
    if free < need:
        raise SystemExit(f"not enough disk space in {BENCH_DIR}: need about "
                         f"{need / GiB:.1f} GiB, have {free / GiB:.1f} GiB")
