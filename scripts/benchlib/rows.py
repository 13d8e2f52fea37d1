"""The table's rows: id (group:metric), label, unit and which way is better."""
from __future__ import annotations

import dataclasses

from benchlib.settings import Sizes, edit_files

LOWER, HIGHER = "lower", "higher"


@dataclasses.dataclass(frozen=True)
class Row:
    id: str
    label: str
    unit: str
    better: str

    @property
    def group(self) -> str:
        return self.id.split(":", 1)[0]

    @property
    def metric(self) -> str:
        return self.id.split(":", 1)[1]


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def table_rows(s: Sizes) -> list[Row]:
    big = human_bytes(s.big_member)
    tiny = f"{s.tiny_files:,} entries"
    small = f"{s.small_files:,} files"
    rr = f"{s.random_reads} random 4 KiB reads, {big} deflated"
    rows = []
    for group, what in (("tree-tiny", tiny), ("tree-small", small)):
        rows += [
            Row(f"{group}:mount_s", f"mount {what}: until usable", "s", LOWER),
            Row(f"{group}:mount_rss_mb", f"mount {what}: daemon peak RSS", "MB", LOWER),
            Row(f"{group}:remount_s", f"second mount {what}, unchanged archive", "s", LOWER),
            Row(f"{group}:find_cold_s", f"find over {what}, cold", "s", LOWER),
            Row(f"{group}:find_warm_s", f"find over {what}, warm", "s", LOWER),
            Row(f"{group}:find_rss_mb", f"find over {what}: daemon peak RSS", "MB", LOWER),
        ]
    rows += [
        Row("read-small:grep_cold_s", f"grep -r over {small}, cold", "s", LOWER),
        Row("read-small:grep_warm_s", f"grep -r over {small}, warm", "s", LOWER),
        Row("read-small:tar_cold_s", f"tar cf - of {small} into wc -c, cold", "s", LOWER),
        Row("read-small:tar_warm_s", f"tar cf - of {small} into wc -c, warm", "s", LOWER),
        Row("read-small:rss_mb", f"reading every file of {small}: daemon peak RSS", "MB",
            LOWER),
    ]
    for group, what in (("seq-stored", f"{big} stored"), ("seq-deflated", f"{big} deflated")):
        rows += [
            Row(f"{group}:cold_mbs", f"sequential read {what}, cold", "MB/s", HIGHER),
            Row(f"{group}:warm_mbs", f"sequential read {what}, warm", "MB/s", HIGHER),
            Row(f"{group}:rss_mb", f"sequential read {what}: daemon peak RSS", "MB", LOWER),
        ]
    for group, when in (("random-fresh", "fresh mount"),
                        ("seq-deflated", "after one read-through")):
        rows += [
            Row(f"{group}:rand_first_s", f"{rr} ({when}): open + first read", "s", LOWER),
            Row(f"{group}:rand_median_ms", f"{rr} ({when}): median read", "ms", LOWER),
            Row(f"{group}:rand_total_s", f"{rr} ({when}): total incl. open", "s", LOWER),
            Row(f"{group}:rand_rss_mb", f"{rr} ({when}): daemon peak RSS", "MB", LOWER),
        ]
    edits = f"{edit_files(s)} fsynced 1 KiB edits, {tiny}"
    rows += [
        Row("edit-tiny:fsync_median_ms", f"{edits}: fsync, median", "ms", LOWER),
        Row("edit-tiny:fsync_max_ms", f"{edits}: fsync, slowest", "ms", LOWER),
        Row("edit-tiny:commit_kib", f"{edits}: bytes added to the archive per fsync, most",
            "KiB", LOWER),
        Row("edit-tiny:unmount_s", f"{edits}: then unmount until saved", "s", LOWER),
        Row("edit-tiny:size_ratio", f"{edits}: archive size after ÷ before", "×", LOWER),
        Row("edit-tiny:remount_before_s", f"{edits}: second mount before the edits", "s",
            LOWER),
        Row("edit-tiny:remount_after_s", f"{edits}: mount after the edits", "s", LOWER),
    ]
    mixed = human_bytes(s.mixed_bytes)
    rows += [
        Row("add-mixed:total_s", f"add 1 KiB to the {mixed} archive, until saved", "s", LOWER),
        Row("add-big:total_s", f"add 1 KiB to a {big} archive, until saved", "s", LOWER),
        Row("copy-in:copy_s", f"cp -r {s.copy_files:,} small files into a mount", "s", LOWER),
        Row("copy-in:save_s", "... then unmount until saved", "s", LOWER),
        Row("copy-in:total_s", f"cp -r {s.copy_files:,} files + save, total", "s", LOWER),
        Row("remote-mount:mount_s", f"mount {small} from S3 (loopback): until usable", "s",
            LOWER),
        Row("remote-mount:requests", f"mount {small} from S3: requests on the wire",
            "requests", LOWER),
        Row("remote-mount:received_mb", f"mount {small} from S3: bytes received", "MB",
            LOWER),
        Row("remote-mount:remount_s", f"second mount {small} from S3, unchanged object", "s",
            LOWER),
        Row("remote-mount:remount_requests", f"second mount {small} from S3: requests",
            "requests", LOWER),
        Row("remote-seq:mbs", f"sequential read {big} stored from S3 (loopback), fresh mount",
            "MB/s", HIGHER),
        Row("remote-seq:rss_mb", f"sequential read {big} stored from S3: daemon peak RSS",
            "MB", LOWER),
    ]
    for group, what in (("tar-small", small + " .tar"), ("tar-small-gz", small + " .tar.gz"),
                        ("tar-small-zst", small + " .tar.zst")):
        rows += [
            Row(f"{group}:mount_s", f"mount {what}: until usable", "s", LOWER),
            Row(f"{group}:mount_rss_mb", f"mount {what}: daemon peak RSS", "MB", LOWER),
            Row(f"{group}:remount_s", f"second mount {what}, unchanged archive", "s", LOWER),
            Row(f"{group}:find_cold_s", f"find over {what}, cold", "s", LOWER),
            Row(f"{group}:find_warm_s", f"find over {what}, warm", "s", LOWER),
        ]
    for group, what in (("tar-seq", ".tar"), ("tar-seq-gz", ".tar.gz"),
                        ("tar-seq-zst", ".tar.zst")):
        rows += [
            Row(f"{group}:mount_s", f"mount the {big} text member's {what}: until usable",
                "s", LOWER),
            Row(f"{group}:cold_mbs", f"sequential read {big} text in {what}, cold", "MB/s",
                HIGHER),
            Row(f"{group}:warm_mbs", f"sequential read {big} text in {what}, warm", "MB/s",
                HIGHER),
            Row(f"{group}:rss_mb", f"sequential read {big} in {what}: daemon peak RSS", "MB",
                LOWER),
            Row(f"{group}:rand_median_ms", f"{s.random_reads} random 4 KiB reads in {what} "
                "after indexing: median read", "ms", LOWER),
        ]
    rows += [
        Row("tar-add-big:total_s", f"add 1 KiB to a {big} .tar, until saved", "s", LOWER),
        Row("tar-add-gz:total_s", f"add 1 KiB to a {big} .tar.gz archfs wrote, until saved",
            "s", LOWER),
        Row("tar-add-gz-first:total_s", f"add 1 KiB to a {big} .tar.gz GNU gzip made (the "
            "first write), until saved", "s", LOWER),
    ]
    return rows


GROUP_ORDER = ["tree-tiny", "tree-small", "read-small", "seq-stored", "seq-deflated",
               "random-fresh", "add-mixed", "add-big", "copy-in",
               "tar-small", "tar-small-gz", "tar-small-zst", "tar-seq", "tar-seq-gz",
               "tar-seq-zst", "tar-add-big", "tar-add-gz", "tar-add-gz-first", "edit-tiny",
               "remote-mount", "remote-seq"]
