"""The driver: options, workloads, interleaved repetitions, report."""
from __future__ import annotations

import argparse
import datetime
import signal
import sys
import time
import traceback
import zipfile
from pathlib import Path

from benchlib import install, machine, measurements, reference, report, rows
from benchlib import workloads as wl
from benchlib.mounts import Mount, cleanup_all, mounted
from benchlib.settings import (BENCH_DIR, FULL, GiB, QUICK, results_dir, scratch_dir)
from benchlib.tools import ALL_TOOLS, make_tool

GROUP_HELP = """row groups (for --only):
  tree-tiny     mount / second mount / find over the 1,000,000-entry archive
  tree-small    the same over the 100,000-file archive
  seq-stored    sequential read of the 1 GiB stored member, cold and warm
  seq-deflated  sequential read of the 1 GiB deflated member, then random reads
  random-fresh  random 4 KiB reads in the deflated member on a fresh mount
  add-mixed     add a 1 KiB file to the ~120 MiB mixed archive, until saved
  add-big       add a 1 KiB file to a copy of the 1 GiB archive, until saved
  copy-in       cp -r of 10,000 small files into a mounted archive, then save
"""


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="scripts/bench", description="Benchmark archfs against fuse-zip, "
        "archivemount and ratarmount. Prints a markdown table of medians and "
        "writes the raw numbers as JSON.", epilog=GROUP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small workloads, 1 repetition: a smoke test of the harness")
    p.add_argument("--only", nargs="+", metavar="GROUP", choices=rows.GROUP_ORDER,
                   help="run only these row groups")
    p.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    p.add_argument("--tools", nargs="+", metavar="TOOL", choices=ALL_TOOLS,
                   default=ALL_TOOLS, help="tools to compare (default: all installed)")
    p.add_argument("--json", type=Path, metavar="PATH",
                   help="raw results (default .bench/results/bench-DATE.json)")
    p.add_argument("--install-peers", action="store_true",
                   help="install fuse-zip, archivemount (apt) and ratarmount "
                   "(pip, .bench/peers-venv) first, then run")
    return p.parse_args(argv)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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


def run_references(ctx, groups) -> dict:
    out = {}
    needs = {w for g in groups for w in measurements.NEEDS[g]}
    if wl.DEFLATED in needs:
        facts = ctx.workloads.manifest(wl.DEFLATED)["facts"]
        path = ctx.workloads.path(wl.DEFLATED)
        out["zlib_inflate_mbs"] = reference.zlib_inflate_mbs(path, facts["member"])
        out["unzip_p_mbs"] = reference.unzip_pipe_mbs(path, facts["member"],
                                                      facts["member_bytes"])
        out["inflate_to_first_s"] = (facts["random_offsets"][0]
                                     / (out["zlib_inflate_mbs"] * 1e6))
    if wl.STORED in needs:
        out["disk_mbs"], out["disk_cold"] = reference.read_file_mbs(
            ctx.workloads.path(wl.STORED))
    return out


def check_disk(sizes, workloads, groups) -> None:
    need = workloads.missing_bytes_estimate() + 256 * (1 << 20)
    if "add-big" in groups:
        need += sizes.big_member
    if {"add-mixed", "copy-in"} & set(groups):
        need += 2 * sizes.mixed_bytes
    if "tree-tiny" in groups:
        need += sizes.tiny_files * 300   # ratarmount's sqlite index
    free = machine.disk_free(BENCH_DIR)
    say(f"disk: about {need / GiB:.1f} GiB needed in {BENCH_DIR}, "
        f"{free / GiB:.1f} GiB free")
    if free < need:
        raise SystemExit(f"not enough disk space in {BENCH_DIR}: need about "
                         f"{need / GiB:.1f} GiB, have {free / GiB:.1f} GiB")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sizes = QUICK if args.quick else FULL
    reps = args.reps or sizes.reps
    groups = [g for g in rows.GROUP_ORDER if not args.only or g in args.only]
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    json_path = args.json or results_dir() / (
        f"bench-{sizes.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    if args.install_peers:
        install.install_peers()

    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)

    host = machine.describe(BENCH_DIR)
    tools = [make_tool(name) for name in ALL_TOOLS if name in args.tools]
    unavailable = {t.name: t.unavailable_reason() for t in tools
                   if t.unavailable_reason()}
    workloads = wl.Workloads(sizes, log=say)
    ctx = measurements.Context(sizes, workloads)
    for t in tools:
        if mounted(ctx.mnt(t).resolve()):
            raise SystemExit(f"{ctx.mnt(t)} is still mounted from an earlier run: "
                             f"unmount it first (fusermount -u {ctx.mnt(t)})")
    check_disk(sizes, workloads, groups)
    versions = {t.name: (t.version() if t.name not in unavailable else None) for t in tools}

    runs: list[dict] = []
    refs: list[dict] = []
    interrupted = False
    started = time.monotonic()
    try:
        workloads.ensure(sorted({w for g in groups for w in measurements.NEEDS[g]}))
        for t in tools:
            if t.name == "archfs" and t.name not in unavailable:
                reason = probe_archfs(t, ctx)
                if reason:
                    unavailable[t.name] = reason
        active = [t for t in tools if t.name not in unavailable]
        for name, why in unavailable.items():
            say(f"skipping {name}: {why}")
        for rep in range(reps):
            say(f"repetition {rep + 1}/{reps}: references")
            refs.append(run_references(ctx, groups))
            for group in groups:
                for tool in active:
                    say(f"rep {rep + 1}/{reps} {group} {tool.name} ...")
                    t0 = time.monotonic()
                    try:
                        out = measurements.GROUPS[group](ctx, tool)
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:
                        out = measurements.Outcome(error=f"{type(exc).__name__}: {exc}")
                        with open(ctx.log(tool), "a") as log:
                            traceback.print_exc(file=log)
                    runs.append({"rep": rep, "group": group, "tool": tool.name,
                                 "seconds": round(time.monotonic() - t0, 2),
                                 **out.__dict__})
                    say(f"  done in {time.monotonic() - t0:.1f} s"
                        + (f"; ERROR {out.error}" if out.error else "")
                        + "".join(f"; {n}" for n in out.notes))
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: cleaning up and reporting what was measured")
    finally:
        cleanup_all()

    table_rows = [r for r in rows.table_rows(sizes) if r.group in groups]
    summary = report.Summary(runs, table_rows, [t.name for t in tools], unavailable)
    elapsed = time.monotonic() - started
    print_report(host, versions, unavailable, sizes, reps, summary, refs, runs,
                 ctx.cold_ok, interrupted, elapsed)
    payload = {
        "machine": host, "versions": versions, "unavailable": unavailable,
        "sizes": sizes.__dict__, "reps": reps, "groups": groups,
        "caches_dropped": ctx.cold_ok, "interrupted": interrupted,
        "elapsed_s": round(elapsed, 1),
        "workloads": {k: v for k, v in workloads.manifests.items()},
        "references": refs, "runs": runs, "medians": summary.as_json(),
    }
    for manifest in payload["workloads"].values():   # keep the JSON readable
        manifest["facts"].pop("random_digests", None)
    report.write_json(json_path, payload)
    print(f"\nraw numbers: {json_path}")
    return 130 if interrupted else 0


def print_report(host, versions, unavailable, sizes, reps, summary, refs, runs,
                 cold_ok, interrupted, elapsed) -> None:
    print(f"## archfs benchmark ({sizes.name}, {reps} repetition(s), "
          f"{elapsed / 60:.1f} min{', INTERRUPTED' if interrupted else ''})\n")
    print(f"- machine: {host['cpu']}, {host['cores']} cores, {host['memory_gib']} GiB RAM, "
          f"kernel {host['kernel']}, {host['bench_fs']} with {host['disk_free_gib']} GiB free")
    for name, version in versions.items():
        print(f"- {name}: {version or 'not installed'}"
              + (f" — not run: {unavailable[name]}" if name in unavailable else ""))
    print("- page cache: " + ("dropped before every cold step (sync; echo 3 > "
          "/proc/sys/vm/drop_caches), FUSE mounts' caches included" if cold_ok else
          "NOT dropped (not permitted): 'cold' rows are warm"))
    print("- values are medians; MB = 10^6 bytes; RSS is the daemon's (process "
          "tree's) peak resident memory")
    print("- ratio = archfs ÷ best peer on that row: on 'lower' rows below 1 "
          "means archfs is better, on 'higher' rows above 1 does\n")
    print(report.table(summary))
    ref_lines = report.references_text(refs, summary)
    if ref_lines:
        print("\nReferences measured in the same run:")
        print("\n".join(ref_lines))
    problems = [f"- rep {r['rep'] + 1} {r['group']} {r['tool']}: "
                + (r["error"] or "; ".join(r["notes"]))
                for r in runs if r["error"] or r["notes"]]
    if problems:
        print("\nErrors and notes:")
        print("\n".join(problems))
