"""Medians over repetitions, the markdown table, and the JSON file."""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from benchlib.rows import LOWER, Row

RATIO_TOOL = "archfs"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("MB/s", "MB", "requests"):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class Summary:
    """Per row and tool: median value, or the reason there is none."""

    def __init__(self, runs: list[dict], rows: list[Row], tools: list[str],
                 unavailable: dict[str, str]):
        self.rows, self.tools, self.unavailable = rows, tools, unavailable
        self.cells: dict[str, dict[str, dict]] = {}
        for row in rows:
            self.cells[row.id] = {}
            for tool in tools:
                mine = [r for r in runs if r["group"] == row.group and r["tool"] == tool]
                values = [r["metrics"][row.metric] for r in mine
                          if r["metrics"].get(row.metric) is not None]
                reasons = [r["na"][row.metric] for r in mine if row.metric in r["na"]]
                errors = [r["error"] for r in mine if r["error"]]
                marks = sorted({r.get("marks", {}).get(row.metric) for r in mine} - {None})
                self.cells[row.id][tool] = {
                    "median": _median(values), "n": len(values),
                    "values": values, "na": reasons[0] if reasons else None,
                    "errors": len(errors), "runs": len(mine), "marks": marks}

    def value(self, row_id: str, tool: str) -> float | None:
        return self.cells.get(row_id, {}).get(tool, {}).get("median")

    def text(self, row: Row, tool: str) -> str:
        if tool in self.unavailable:
            return "—"
        cell = self.cells[row.id][tool]
        if cell["median"] is not None:
            text = fmt(cell["median"], row.unit)
            if cell["errors"] or cell["na"]:
                text += f" ({cell['n']}/{cell['runs']} runs)"
            if cell["marks"]:
                text += f" ({', '.join(cell['marks'])})"
            return text
        if cell["na"]:
            return cell["na"]
        if cell["errors"]:
            return "error"
        return "—" if not cell["runs"] else "n/a"

    def ratio(self, row: Row) -> str:
        mine = self.value(row.id, RATIO_TOOL)
        peers = [self.value(row.id, t) for t in self.tools if t != RATIO_TOOL]
        peers = [p for p in peers if p is not None and p > 0]
        if mine is None or not peers:
            return "—"
        best = min(peers) if row.better == LOWER else max(peers)
        ratio = mine / best
        return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"

    def as_json(self) -> dict:
        return {row_id: {t: {k: v for k, v in c.items()} for t, c in per.items()}
                for row_id, per in self.cells.items()}


def table(summary: Summary) -> str:
    tools = summary.tools
    head = ["row", "unit", "better"] + tools + ["archfs ÷ best peer"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * (len(tools) + 1)) + "|"]
    for row in summary.rows:
        cells = [summary.text(row, t) for t in tools]
        if all(c == "—" for c in cells):
            continue
        lines.append("| " + " | ".join([row.label, row.unit, row.better] + cells
                                       + [summary.ratio(row)]) + " |")
    return "\n".join(lines)


def references_text(refs: list[dict], summary: Summary) -> list[str]:
    def med(key):
        return _median([r[key] for r in refs if r.get(key) is not None])

    zlib_mbs = med("zlib_inflate_mbs")
    lines = []
    if zlib_mbs:
        lines.append(f"- single-core zlib inflate (Python zlib on the deflated member's raw "
                     f"stream, in memory; the reference for the deflated row): "
                     f"{fmt(zlib_mbs, 'MB/s')} MB/s")
    if med("unzip_p_mbs"):
        lines.append(f"- `unzip -p` of the deflated member to /dev/null (inflate + CRC + "
                     f"pipe, context only): {fmt(med('unzip_p_mbs'), 'MB/s')} MB/s")
    if med("disk_mbs"):
        cold = all(r.get("disk_cold") for r in refs)
        lines.append(f"- local disk, stored archive read {'cold' if cold else 'WARM (could not drop caches)'}: "
                     f"{fmt(med('disk_mbs'), 'MB/s')} MB/s")
    if med("inflate_to_first_s") is not None:
        lines.append(f"- inflating up to the first random offset at that zlib speed: "
                     f"{fmt(med('inflate_to_first_s'), 's')} s")
    archfs_deflated = summary.value("seq-deflated:cold_mbs", RATIO_TOOL)
    if zlib_mbs and archfs_deflated:
        lines.append(f"- archfs deflated cold read ÷ zlib inflate: "
                     f"{archfs_deflated / zlib_mbs:.2f}×")
    if med("get_object_mbs"):
        lines.append(f"- plain ranged `get_object` of the stored member from the loopback "
                     f"S3 store, 1 MiB reads (the reference for the S3 read row): "
                     f"{fmt(med('get_object_mbs'), 'MB/s')} MB/s")
        remote = summary.value("remote-seq:mbs", RATIO_TOOL)
        if remote:
            lines.append(f"- archfs sequential read from S3 ÷ plain get_object: "
                         f"{remote / med('get_object_mbs'):.2f}×")
    big = summary.value("add-big:total_s", RATIO_TOOL)
    small = summary.value("add-mixed:total_s", RATIO_TOOL)
    if big and small:
        lines.append(f"- archfs add 1 KiB, big archive ÷ mixed archive: {big / small:.2f}×")
    return lines


def print_report(host, versions, unavailable, header_notes, sizes, reps, summary,
                 refs, runs, cold_ok, interrupted, elapsed) -> None:
    print(f"## archfs benchmark ({sizes.name}, {reps} repetition(s), "
          f"{elapsed / 60:.1f} min{', INTERRUPTED' if interrupted else ''})\n")
    print(f"- machine: {host['cpu']}, {host['cores']} cores, {host['memory_gib']} GiB RAM, "
          f"kernel {host['kernel']}, {host['bench_fs']} with {host['disk_free_gib']} GiB free")
    for name, version in versions.items():
        print(f"- {name}: {version or 'not installed'}"
              + (f" — not run: {unavailable[name]}" if name in unavailable else ""))
    for note in header_notes:
        print(f"- {note}")
    print("- page cache: " + ("dropped before every cold step (sync; echo 3 > "
          "/proc/sys/vm/drop_caches), FUSE mounts' caches included" if cold_ok else
          "NOT dropped (not permitted): 'cold' rows are warm"))
    print("- values are medians; MB = 10^6 bytes; RSS is the daemon's (process "
          "tree's) peak resident memory")
    print("- ratio = archfs ÷ best peer on that row: on 'lower' rows below 1 "
          "means archfs is better, on 'higher' rows above 1 does\n")
    print(table(summary))
    ref_lines = references_text(refs, summary)
    if ref_lines:
        print("\nReferences measured in the same run:")
        print("\n".join(ref_lines))
    problems = merged_notes(runs)
    if problems:
        print("\nErrors and notes:")
        print("\n".join(f"- {line}" for line in problems))


def merged_notes(runs: list[dict]) -> list[str]:
    """One line per kind of note: its numbers shown as ranges over the reps."""
    kinds: dict[tuple, list[tuple[int, list[int]]]] = {}
    for r in runs:
        for text in ([r["error"]] if r["error"] else []) + r["notes"]:
            parts = re.split(r"(\d+)", f"{r['group']} {r['tool']}: {text}")
            key = tuple(p if i % 2 == 0 else "#" for i, p in enumerate(parts))
            numbers = [int(p) for p in parts[1::2]]
            kinds.setdefault(key, []).append((r["rep"] + 1, numbers))
    lines = []
    for key, seen in kinds.items():
        text = ""
        for i, piece in enumerate(key):
            if piece != "#":
                text += piece
                continue
            values = [numbers[i // 2] for _, numbers in seen]
            lo, hi = min(values), max(values)
            text += str(lo) if lo == hi else f"{lo}–{hi}"
        reps = sorted({rep for rep, _ in seen})
        lines.append(f"{text} (rep {', '.join(map(str, reps))})")
    return lines

def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    tmp.replace(path)
