"""The driver: options, workloads, interleaved repetitions, report."""
from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import signal
import sys
import time
import traceback
from pathlib import Path

from benchlib import install, machine, measurements, preflight, reference, report, rows
from benchlib import tarworkloads
from benchlib import workloads as wl
from benchlib.mounts import cleanup_all, mounted
from benchlib.settings import BENCH_DIR, FULL, QUICK, results_dir
from benchlib.tools import ALL_TOOLS, make_tool

GROUP_HELP = """row groups (for --only):
  tree-tiny     mount / second mount / find over the 1,000,000-entry archive
  tree-small    the same over the 100,000-file archive
  read-small    grep -r and tar cf - reading every file of it, cold and warm
  seq-stored    sequential read of the 1 GiB stored member, cold and warm
  seq-deflated  sequential read of the 1 GiB deflated member, then random reads
  random-fresh  random 4 KiB reads in the deflated member on a fresh mount
  add-mixed     add a 1 KiB file to the ~120 MiB mixed archive, until saved
  add-big       add a 1 KiB file to a copy of the 1 GiB archive, until saved
  copy-in       cp -r of 10,000 small files into a mounted archive, then save
  tar-small, tar-small-gz, tar-small-zst
                the 100,000-file tree as .tar, .tar.gz, .tar.zst: mount, remount, find
  tar-seq, tar-seq-gz, tar-seq-zst
                the 1 GiB text member in a .tar, .tar.gz, .tar.zst: sequential and
                random reads after indexing
  tar-add-big   add a 1 KiB file to a copy of a 1 GiB plain tar, until saved
  tar-add-gz    the same for a 1 GiB .tar.gz that archfs wrote before
  tar-add-gz-first
                the same for the 1 GiB .tar.gz gzip made: archfs's first write to it
  edit-tiny     100 fsynced 1 KiB edits (new and changed files) in the 1,000,000-entry
                archive, then unmount: fsync time, bytes added per fsync, unmount time,
                size after, mount time before and after; the result is checked with
                unzip -t, 7zz t and Python's zipfile
  remote-mount  mount the 100,000-file archive from S3 (a loopback SeaweedFS):
                time, requests and bytes on the wire, and a second mount
  remote-seq    sequential read of the 1 GiB stored member from S3, against a
                plain ranged get_object of the same bytes

Workloads are cached in .bench/ (set ARCHFS_BENCH_DIR to use another place);
a full run needs about 3.5 GiB there and takes about an hour with all peers.
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
    p.add_argument("--peers-from", type=Path, metavar="JSON",
                   help="reuse the peers' runs from an earlier JSON of the same size "
                   "class instead of measuring them again (archfs is still measured; "
                   "the output says so)")
    p.add_argument("--report-from", type=Path, metavar="JSON",
                   help="only print the report of an earlier run's JSON; measure nothing")
    p.add_argument("--install-peers", action="store_true",
                   help="install fuse-zip, archivemount (apt) and ratarmount "
                   "(pip, .bench/peers-venv) first, then run")
    return p.parse_args(argv)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_held_locks = []


def hold_lock() -> None:
    """One bench at a time: runs share mountpoints and scratch files."""
    lock = open(BENCH_DIR / "bench.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SystemExit("another scripts/bench run is in progress (.bench/bench.lock)")
    _held_locks.append(lock)   # kept open (and locked) until the process exits


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class Run:
    """The state of one bench run: what was measured so far, and its report."""

    def __init__(self, args):
        self.sizes = QUICK if args.quick else FULL
        self.reps = args.reps or self.sizes.reps
        self.groups = [g for g in rows.GROUP_ORDER if not args.only or g in args.only]
        self.json_path = args.json or results_dir() / (
            f"bench-{self.sizes.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
        self.host = machine.describe(BENCH_DIR)
        self.tools = [make_tool(name) for name in ALL_TOOLS if name in args.tools]
        self.unavailable = {t.name: t.unavailable_reason() for t in self.tools
                            if t.unavailable_reason()}
        self.workloads = wl.Workloads(self.sizes, log=say)
        self.ctx = measurements.Context(self.sizes, self.workloads)
        self.versions = {t.name: None if t.name in self.unavailable else t.version()
                         for t in self.tools}
        self.runs: list[dict] = []
        self.refs: list[dict] = []
        self.header_notes: list[str] = []
        self.reused: set[str] = set()
        if args.peers_from:
            self.reuse_peers(args.peers_from)
        self.interrupted = False
        self.started = time.monotonic()

    def reuse_peers(self, path: Path) -> None:
        data = json.loads(path.read_text())
        if data["sizes"]["name"] != self.sizes.name:
            raise SystemExit(f"{path} holds a {data['sizes']['name']} run, not "
                             f"{self.sizes.name}")
        for tool in self.tools:
            if tool.name == "archfs":
                continue
            runs = [r for r in data["runs"]
                    if r["tool"] == tool.name and r["group"] in self.groups]
            if runs:
                self.reused.add(tool.name)
                self.runs += [{**r, "reused_from": str(path)} for r in runs]
                self.versions[tool.name] = data["versions"].get(tool.name)
        if self.reused:
            when = datetime.datetime.fromtimestamp(path.stat().st_mtime)
            when = data.get("finished_at") or when.isoformat(timespec="seconds")
            self.header_notes.append(
                f"{', '.join(sorted(self.reused))}: NOT measured in this run; "
                f"numbers reused from {path} (written {when})")

    def preflight(self) -> None:
        for t in self.tools:
            if mounted(self.ctx.mnt(t).resolve()):
                raise SystemExit(f"{self.ctx.mnt(t)} is still mounted from an earlier "
                                 f"run: unmount it first (fusermount -u {self.ctx.mnt(t)})")
        preflight.check_disk(self.sizes, self.workloads, self.groups, say)

    def execute(self) -> None:
        needed = sorted({w for g in self.groups for w in measurements.NEEDS[g]})
        self.workloads.ensure([w for w in needed if ".tar" not in w])
        tarworkloads.ensure(self.workloads, [w for w in needed if ".tar" in w], say)
        for t in self.tools:
            if t.name == "archfs" and t.name not in self.unavailable:
                reason = preflight.probe_archfs(t, self.ctx)
                if reason:
                    self.unavailable[t.name] = reason
        active = [t for t in self.tools
                  if t.name not in self.unavailable and t.name not in self.reused]
        for name, why in self.unavailable.items():
            say(f"skipping {name}: {why}")
        for rep in range(self.reps):
            say(f"repetition {rep + 1}/{self.reps}: references")
            self.refs.append(reference.run_all(self.ctx, self.groups, measurements.NEEDS))
            for group in self.groups:
                for tool in active:
                    self.measure(rep, group, tool)
                    self.save()

    def measure(self, rep: int, group: str, tool) -> None:
        say(f"rep {rep + 1}/{self.reps} {group} {tool.name} ...")
        t0 = time.monotonic()
        try:
            out = measurements.GROUPS[group](self.ctx, tool)
        except Exception as exc:   # one tool failing must not end the run
            out = measurements.Outcome(error=f"{type(exc).__name__}: {exc}")
            with open(self.ctx.log(tool), "a") as log:
                traceback.print_exc(file=log)
        self.runs.append({"rep": rep, "group": group, "tool": tool.name,
                          "seconds": round(time.monotonic() - t0, 2), **out.__dict__})
        say(f"  done in {time.monotonic() - t0:.1f} s"
            + (f"; ERROR {out.error}" if out.error else "")
            + "".join(f"; {n}" for n in out.notes))

    def summary(self) -> report.Summary:
        table_rows = [r for r in rows.table_rows(self.sizes) if r.group in self.groups]
        return report.Summary(self.runs, table_rows, [t.name for t in self.tools],
                              self.unavailable)

    def save(self) -> None:
        """Write the JSON (also after every step, so a killed run keeps its data)."""
        workloads = {name: {**m, "facts": {k: v for k, v in m["facts"].items()
                                           if k != "random_digests"}}
                     for name, m in self.workloads.manifests.items()}
        report.write_json(self.json_path, {
            "machine": self.host, "versions": self.versions,
            "unavailable": self.unavailable, "sizes": self.sizes.__dict__,
            "reps": self.reps, "groups": self.groups,
            "caches_dropped": self.ctx.cold_ok, "interrupted": self.interrupted,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "workloads": workloads, "references": self.refs, "runs": self.runs,
            "medians": self.summary().as_json(),
            "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "reused_peers": sorted(self.reused)})

    def finish(self) -> None:
        report.print_report(self.host, self.versions, self.unavailable,
                            self.header_notes, self.sizes, self.reps, self.summary(), self.refs, self.runs,
                            self.ctx.cold_ok, self.interrupted,
                            time.monotonic() - self.started)
        self.save()
        print(f"\nraw numbers: {self.json_path}")


def reprint(path: Path) -> int:
    """The report of a saved run, e.g. after the report format changed."""
    data = json.loads(path.read_text())
    sizes = QUICK if data["sizes"]["name"] == QUICK.name else FULL
    table_rows = [r for r in rows.table_rows(sizes) if r.group in data["groups"]]
    tools = list(data["versions"])
    summary = report.Summary(data["runs"], table_rows, tools, data["unavailable"])
    notes = ([f"{', '.join(data['reused_peers'])}: numbers reused from an earlier run"]
             if data.get("reused_peers") else [])
    report.print_report(data["machine"], data["versions"], data["unavailable"], notes,
                        sizes, data["reps"], summary, data["references"], data["runs"],
                        data["caches_dropped"], data["interrupted"], data["elapsed_s"])
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.report_from:
        return reprint(args.report_from)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    hold_lock()
    if args.install_peers:
        install.install_peers()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    run = Run(args)
    run.preflight()
    try:
        run.execute()
    except KeyboardInterrupt:
        run.interrupted = True
        say("interrupted: cleaning up and reporting what was measured")
    finally:
        cleanup_all()
        run.ctx.close_remote()
    run.finish()
    return 130 if run.interrupted else 0
